//! Who is asking: the client's address for throttling and logs. Behind a
//! reverse proxy every request comes from the proxy, so `X-Forwarded-For`
//! is read — but only when the direct peer is a listed trusted proxy
//! (`HONE_TRUSTED_PROXIES`); from anyone else the header is a lie anyone
//! can tell, and is ignored.

use std::net::IpAddr;

/// An address or a network (`10.0.0.0/8`, `::1`, `fd00::/8`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Net {
    type Err = String;

    fn from_str(s: &str) -> Result<Net, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or network like 10.0.0.0/8"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
            None => max,
        };
        Ok(Net { addr, prefix })
    }
}

/// The client's address: the peer's, unless the peer is a trusted proxy,
/// then the last address in `X-Forwarded-For` that is not a trusted proxy
/// (each proxy appends the address it saw).
pub fn client_ip(peer: Option<IpAddr>, forwarded: Option<&str>, trusted: &[Net]) -> Option<IpAddr> {
    let peer = peer?;
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let Some(chain) = forwarded else {
        return Some(peer);
    };
    let mut last = peer;
    for hop in chain.rsplit(',') {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            // A malformed hop: trust nothing before it.
            return Some(last);
        };
        if !is_trusted(ip) {
            return Some(ip);
        }
        last = ip;
    }
    Some(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(s: &[&str]) -> Vec<Net> {
        s.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let ip = |s: &str| s.parse::<IpAddr>().ok();
        let proxies = nets(&["10.0.0.0/8", "::1"]);
        // A client claiming to be someone else, directly: ignored.
        assert_eq!(
            client_ip(ip("203.0.113.9"), Some("1.2.3.4"), &proxies),
            ip("203.0.113.9")
        );
        // Through the proxy: the address the proxy saw.
        assert_eq!(
            client_ip(ip("10.1.2.3"), Some("198.51.100.7"), &proxies),
            ip("198.51.100.7")
        );
        // A forged entry before the real one is skipped: the rightmost
        // untrusted address is the one the proxy saw.
        assert_eq!(
            client_ip(
                ip("10.1.2.3"),
                Some("6.6.6.6, 198.51.100.7, 10.9.9.9"),
                &proxies
            ),
            ip("198.51.100.7")
        );
        assert_eq!(client_ip(ip("::1"), None, &proxies), ip("::1"));
        assert_eq!(
            client_ip(ip("10.1.2.3"), Some("garbage"), &proxies),
            ip("10.1.2.3")
        );
        assert!("10.0.0.0/33".parse::<Net>().is_err());
        assert!("nonsense".parse::<Net>().is_err());
        assert!(nets(&["0.0.0.0/0"])[0].contains("8.8.8.8".parse().unwrap()));
    }
}
