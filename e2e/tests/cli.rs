//! The `hone` binary as an operator uses it: headless account creation,
//! probes on a real socket, and a clean stop on SIGTERM.

// Tests fail loudly: unwrapping is the point here.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn hone() -> Command {
    let bin = std::env::var("HONE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .unwrap()
                .to_path_buf();
            std::env::var("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|_| root.join("target"))
                .join("debug/hone")
        });
    let mut c = Command::new(bin);
    c.env_remove("DATABASE_URL").env_remove("HONE_CONFIG");
    c
}

fn create_user(data: &Path, username: &str, password: &str) -> Output {
    let mut child = hone()
        .args([
            "user",
            "create",
            "--username",
            username,
            "--role",
            "admin",
            "--team",
            "Ops",
        ])
        .env("HONE_DATA_DIR", data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn user_create_makes_accounts_and_explains_refusals() {
    let data = tempfile::tempdir().unwrap();
    let ok = create_user(data.path(), "ada", "a long passphrase");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        data.path().join("hone.db").exists(),
        "SQLite database created on first start"
    );

    let again = create_user(data.path(), "ada", "a long passphrase");
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already taken"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    let short = create_user(data.path(), "bob", "short");
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 12 characters"));
}

fn get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn serves_probes_and_stops_cleanly_on_sigterm() {
    let data = tempfile::tempdir().unwrap();
    let mut child = hone()
        .env("HONE_BIND", "127.0.0.1:0")
        .env("HONE_DATA_DIR", data.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("hone exited before listening").unwrap();
        if let Some(u) = line.strip_prefix("Hone is running at ") {
            break u.to_owned();
        }
    };
    let addr = url.trim_start_matches("http://");
    assert!(get(addr, "/healthz").starts_with("HTTP/1.1 200"));
    let ready = get(addr, "/readyz");
    assert!(
        ready.starts_with("HTTP/1.1 200") && ready.ends_with("ready"),
        "{ready}"
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit status {:?}\n{log}", out.status);
    assert!(log.contains("shutting down"), "{log}");
}
