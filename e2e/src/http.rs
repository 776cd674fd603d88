//! A small blocking HTTP client (HTTP/1.0: one request per connection,
//! bodies end with the connection, no chunking) for the tests that drive Hone's API
//! without a browser (as scripts do): the session cookie kept, and
//! Server-Sent Events read line by line.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

pub struct Api {
    /// `127.0.0.1:port`.
    addr: String,
    cookie: Option<String>,
}

pub struct Response {
    pub status: u16,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Clone for Api {
    /// Another connection with the same session (as another tab would be).
    fn clone(&self) -> Api {
        Api {
            addr: self.addr.clone(),
            cookie: self.cookie.clone(),
        }
    }
}

impl Api {
    /// `base`: `http://127.0.0.1:port`.
    pub fn new(base: &str) -> Api {
        Api {
            addr: base
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_owned(),
            cookie: None,
        }
    }

    fn send(&mut self, head: &str, body: &[u8]) -> BufReader<TcpStream> {
        let mut s = TcpStream::connect(&self.addr).expect("connecting to hone");
        let cookie = self
            .cookie
            .as_ref()
            .map(|c| format!("Cookie: {c}\r\n"))
            .unwrap_or_default();
        write!(
            s,
            "{head}Host: {}\r\n{cookie}Content-Length: {}\r\nSec-Fetch-Site: same-origin\r\nConnection: close\r\n\r\n",
            self.addr,
            body.len()
        )
        .unwrap();
        s.write_all(body).unwrap();
        BufReader::new(s)
    }

    /// Reads the status line and headers; keeps a new session cookie.
    fn head(&mut self, r: &mut BufReader<TcpStream>) -> u16 {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                return status;
            }
            if let Some(v) = l
                .strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
            {
                self.cookie = v.split(';').next().map(str::to_owned);
            }
        }
    }

    fn finish(&mut self, mut r: BufReader<TcpStream>) -> Response {
        let status = self.head(&mut r);
        let mut body = Vec::new();
        r.read_to_end(&mut body).unwrap();
        Response {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    /// Calls a server function as the page does (a form POST).
    pub fn call(&mut self, name: &str, form: &[(&str, &str)]) -> Response {
        let body: Vec<String> = form
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        let r = self.send(
            &format!("POST /api/{name} HTTP/1.0\r\nContent-Type: application/x-www-form-urlencoded\r\nAccept: application/json\r\n"),
            body.join("&").as_bytes(),
        );
        self.finish(r)
    }

    /// POSTs raw bytes with extra header lines (`Name: value\r\n` each).
    pub fn post(&mut self, path: &str, headers: &str, body: &[u8]) -> Response {
        let r = self.send(&format!("POST {path} HTTP/1.0\r\n{headers}"), body);
        self.finish(r)
    }

    /// A plain GET.
    pub fn get(&mut self, path: &str) -> Response {
        let r = self.send(&format!("GET {path} HTTP/1.0\r\n"), b"");
        self.finish(r)
    }

    /// A GET of a file, its body as bytes (downloads), with an optional
    /// `Range` header; the status and the body.
    pub fn download(&mut self, path: &str, range: Option<&str>) -> (u16, Vec<u8>) {
        let range = range.map(|r| format!("Range: {r}\r\n")).unwrap_or_default();
        let mut r = self.send(&format!("GET {path} HTTP/1.0\r\n{range}"), b"");
        let status = self.head(&mut r);
        let mut body = Vec::new();
        r.read_to_end(&mut body).unwrap();
        (status, body)
    }

    /// The session cookie (`name=value`), once signed in.
    pub fn cookie(&self) -> Option<&str> {
        self.cookie.as_deref()
    }

    /// Opens `path` as an event stream; `on_event` gets each `data:` line's
    /// text and says whether to go on. Returns the status. A stream that
    /// has not ended nor been left within ten minutes fails the test (a
    /// job that never moves is a failure, not a hang).
    pub fn events(&mut self, path: &str, mut on_event: impl FnMut(&str) -> bool) -> u16 {
        let mut r = self.send(
            &format!("GET {path} HTTP/1.0\r\nAccept: text/event-stream\r\n"),
            b"",
        );
        let status = self.head(&mut r);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
        let mut line = String::new();
        loop {
            line.clear();
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            assert!(
                !left.is_zero(),
                "{path}: nothing conclusive within ten minutes"
            );
            r.get_ref().set_read_timeout(Some(left)).unwrap();
            match r.read_line(&mut line) {
                Ok(0) => return status,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    panic!("{path}: nothing conclusive within ten minutes")
                }
                Err(_) => return status,
            }
            if let Some(data) = line.trim_end().strip_prefix("data: ") {
                if !on_event(data) {
                    return status;
                }
            }
        }
    }
}
