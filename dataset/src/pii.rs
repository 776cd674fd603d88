//! Suspected personal data: emails, phone numbers, US social security
//! numbers, card numbers that pass Luhn, IBANs that pass their checksum, IP
//! addresses. Matches are masked wherever they are shown.

use regex::Regex;
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Email,
    Phone,
    Ssn,
    Card,
    Iban,
    IpAddress,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Email => "an email address",
            Kind::Phone => "a phone number",
            Kind::Ssn => "a US social security number",
            Kind::Card => "a payment card number",
            Kind::Iban => "a bank account number (IBAN)",
            Kind::IpAddress => "an IP address",
        }
    }
}

/// One match: its kind and byte range in the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
}

// ASCII digits and ASCII word boundaries only: `\d` would also match other
// scripts' digits, which neither the checksums nor byte slicing expect, and
// ASCII `\b` keeps the regex engine on its fast DFA for any text.
struct Patterns {
    email: Regex,
    card: Regex,
    iban: Regex,
    ssn: Regex,
    ip: Regex,
    phone: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| {
        let re = |p: &str| Regex::new(p).unwrap_or_else(|e| panic!("built-in pattern {p}: {e}"));
        Patterns {
            email: re(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
            card: re(r"(?-u:\b)[0-9](?:[ -]?[0-9]){12,18}(?-u:\b)"),
            iban: re(r"(?-u:\b)[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}(?-u:\b)"),
            ssn: re(r"(?-u:\b)[0-9]{3}-[0-9]{2}-[0-9]{4}(?-u:\b)"),
            ip: re(r"(?-u:\b)(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?-u:\b)"),
            phone: re(
                r"(?:\+[0-9]{1,3}[ .-]?)?(?:\([0-9]{2,4}\)[ .-]?)?[0-9]{2,4}[ .-][0-9]{3,4}[ .-]?[0-9]{3,4}(?-u:\b)",
            ),
        }
    })
}

fn digits(s: &str) -> Vec<u32> {
    s.chars().filter_map(|c| c.to_digit(10)).collect()
}

/// The Luhn checksum used by payment cards.
pub fn luhn(number: &str) -> bool {
    let d = digits(number);
    if d.len() < 13 {
        return false;
    }
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            if i % 2 == 1 {
                if x * 2 > 9 {
                    x * 2 - 9
                } else {
                    x * 2
                }
            } else {
                x
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// ISO 13616 IBAN check: move the first four characters to the end, turn
/// letters into numbers (A=10…), and the result mod 97 must be 1.
pub fn iban_valid(iban: &str) -> bool {
    let s: String = iban.chars().filter(|c| !c.is_whitespace()).collect();
    if !(15..=34).contains(&s.len()) {
        return false;
    }
    let (head, tail) = s.split_at(4);
    let mut rem: u32 = 0;
    for c in tail.chars().chain(head.chars()) {
        let v = match c.to_digit(36) {
            Some(v) => v,
            None => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

fn ssn_valid(s: &str) -> bool {
    let area: u32 = s[0..3].parse().unwrap_or(0);
    let group = &s[4..6];
    let serial = &s[7..11];
    area != 0 && area != 666 && area < 900 && group != "00" && serial != "0000"
}

fn ip_valid(s: &str) -> bool {
    s.split('.')
        .all(|p| p.parse::<u16>().is_ok_and(|n| n <= 255) && (p == "0" || !p.starts_with('0')))
}

/// Every suspected item of personal data in `text`, without overlaps
/// (more specific kinds win: a card number is not also reported as a phone).
pub fn scan(text: &str) -> Vec<Hit> {
    let p = patterns();
    // The hits so far, by position and without overlaps. A pattern's
    // matches also come by position, so each is checked against the
    // earlier kinds' hits by walking both lists together: linear, where
    // comparing every match with every hit was quadratic.
    let mut hits: Vec<Hit> = Vec::new();
    let add = |kind: Kind, re: &Regex, ok: &dyn Fn(&str) -> bool, hits: &mut Vec<Hit>| {
        let mut found = Vec::new();
        let mut next = 0;
        for m in re.find_iter(text) {
            // Hits that end before this match cannot overlap it or a later one.
            while next < hits.len() && hits[next].end <= m.start() {
                crate::work::add(1);
                next += 1;
            }
            crate::work::add(1);
            let overlaps = hits.get(next).is_some_and(|h| h.start < m.end());
            if !overlaps && ok(m.as_str()) {
                found.push(Hit {
                    kind,
                    start: m.start(),
                    end: m.end(),
                });
            }
        }
        if !found.is_empty() {
            *hits = merge(std::mem::take(hits), found);
        }
    };
    add(Kind::Email, &p.email, &|_| true, &mut hits);
    add(Kind::Iban, &p.iban, &iban_valid, &mut hits);
    add(Kind::Card, &p.card, &luhn, &mut hits);
    add(Kind::Ssn, &p.ssn, &ssn_valid, &mut hits);
    add(Kind::IpAddress, &p.ip, &ip_valid, &mut hits);
    add(
        Kind::Phone,
        &p.phone,
        &|s| (9..=15).contains(&digits(s).len()),
        &mut hits,
    );
    hits
}

/// Two lists of hits, each by position, as one list by position.
fn merge(a: Vec<Hit>, b: Vec<Hit>) -> Vec<Hit> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        crate::work::add(1);
        let take_a = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => x.start <= y.start,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return out,
        };
        out.extend(if take_a { a.next() } else { b.next() });
    }
}

/// `text` with every hit replaced by `•` except its last two characters.
pub fn mask(text: &str, hits: &[Hit]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for h in hits {
        if h.start < at || h.end > text.len() {
            continue;
        }
        out.push_str(&text[at..h.start]);
        let matched: Vec<char> = text[h.start..h.end].chars().collect();
        let keep = matched.len().saturating_sub(2);
        out.extend(std::iter::repeat_n('•', keep));
        out.extend(&matched[keep..]);
        at = h.end;
    }
    out.push_str(&text[at..]);
    out
}

/// `text` with its personal data masked.
pub fn masked(text: &str) -> String {
    mask(text, &scan(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn kinds(text: &str) -> Vec<(Kind, &str)> {
        scan(text)
            .into_iter()
            .map(|h| (h.kind, &text[h.start..h.end]))
            .collect()
    }

    #[test]
    fn finds_each_kind() {
        let text = "Mail ada@example.org or call +44 20 7946 0958. SSN 123-45-6789, card 4111 1111 1111 1111, \
                    IBAN GB82 WEST 1234 5698 7654 32, server 192.168.1.20.";
        expect![[r#"
            [
                (
                    Email,
                    "ada@example.org",
                ),
                (
                    Phone,
                    "+44 20 7946 0958",
                ),
                (
                    Ssn,
                    "123-45-6789",
                ),
                (
                    Card,
                    "4111 1111 1111 1111",
                ),
                (
                    Iban,
                    "GB82 WEST 1234 5698 7654 32",
                ),
                (
                    IpAddress,
                    "192.168.1.20",
                ),
            ]
        "#]]
        .assert_debug_eq(&kinds(text));
    }

    #[test]
    fn checksums_rule_out_lookalikes() {
        assert!(kinds("order 4111 1111 1111 1112")
            .iter()
            .all(|(k, _)| *k != Kind::Card));
        assert!(kinds("ref GB82 WEST 1234 5698 7654 33")
            .iter()
            .all(|(k, _)| *k != Kind::Iban));
        assert!(kinds("version 999.1.2.3 and 300.1.1.1").is_empty());
        assert!(kinds("SSN 000-12-3456").is_empty());
    }

    #[test]
    fn masks_all_but_the_tail() {
        expect!["write to •••••••••••••rg today"]
            .assert_eq(&masked("write to ada@example.org today"));
    }
}

#[cfg(test)]
mod work_tests {
    /// Thousands of hits of two kinds in one text: each match is checked
    /// against the hits of the kinds before it by walking both in order,
    /// never against every earlier hit.
    #[test]
    fn overlap_checks_grow_linearly_with_the_hits() {
        let text: String = (0..2000)
            .map(|i| format!("u{i}@example.org 10.0.{}.{} ", i / 250, i % 250))
            .collect();
        let (hits, steps) = crate::work::count(|| super::scan(&text));
        assert_eq!(hits.len(), 4000);
        let bound = 10 * text.len() as u64;
        assert!(steps < bound, "{steps} steps for {} bytes", text.len());
    }

    /// The hits as the quadratic version found them: each match compared
    /// with every hit before it.
    fn naive(text: &str) -> Vec<super::Hit> {
        let p = super::patterns();
        let mut hits: Vec<super::Hit> = Vec::new();
        let mut add = |kind, re: &regex::Regex, ok: &dyn Fn(&str) -> bool| {
            for m in re.find_iter(text) {
                let overlaps = hits.iter().any(|h| m.start() < h.end && h.start < m.end());
                if !overlaps && ok(m.as_str()) {
                    hits.push(super::Hit {
                        kind,
                        start: m.start(),
                        end: m.end(),
                    });
                }
            }
        };
        use super::Kind::*;
        add(Email, &p.email, &|_| true);
        add(Iban, &p.iban, &super::iban_valid);
        add(Card, &p.card, &super::luhn);
        add(Ssn, &p.ssn, &super::ssn_valid);
        add(IpAddress, &p.ip, &super::ip_valid);
        add(Phone, &p.phone, &|s| {
            (9..=15).contains(&super::digits(s).len())
        });
        hits.sort_by_key(|h| h.start);
        hits
    }

    proptest::proptest! {
        /// Overlapping lookalikes (card numbers that are also phone
        /// numbers, IP addresses inside IBANs…) resolve as before.
        #[test]
        fn the_walk_finds_what_comparing_every_pair_found(parts in proptest::collection::vec(
            proptest::sample::select(vec![
                "ada@example.org", "4111 1111 1111 1111", "+44 20 7946 0958", "123-45-6789",
                "GB82 WEST 1234 5698 7654 32", "192.168.1.20", "020 7946 0958", "1", "22", ".",
                "-", " ", "@", "x", "GB82", "10.0.0.1", "555-123-4567",
            ]),
            0..40,
        )) {
            let text = parts.concat();
            proptest::prop_assert_eq!(super::scan(&text), naive(&text));
        }
    }
}

#[cfg(test)]
mod unicode_tests {
    /// Digits of other scripts are not ASCII digits: no match, no panic.
    #[test]
    fn non_ascii_digits_are_ignored_safely() {
        assert!(super::scan("رقم ١٢٣-٤٥-٦٧٨٩ و ٤١١١ ١١١١ ١١١١ ١١١١").is_empty());
    }
}
