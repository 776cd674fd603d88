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

fn jsonl(n: usize) -> String {
    (0..n)
        .map(|i| format!("{{\"messages\":[{{\"role\":\"user\",\"content\":\"Question number {i}?\"}},{{\"role\":\"assistant\",\"content\":\"Answer number {i}.\"}}]}}\n"))
        .collect()
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = hone().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn dataset_check_prints_findings_with_lines_and_exits_1_on_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        format!(
            "{}{{\"messages\": [\n{{\"messages\":[{{\"role\":\"user\",\"content\":\"Hi\"}}]}}\n",
            jsonl(3)
        ),
    )
    .unwrap();
    let (code, out, err) = run(&["dataset", "check", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("line 4: error [invalid_json]"), "{out}");
    assert!(out.contains("line 5: error [no_assistant]"), "{out}");
    assert!(out.contains("Length per example (tokens)"), "{out}");

    let (code, out, _) = run(&["dataset", "check", "--json", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["examples"], 3);
    assert_eq!(report["rejected"], 2);
    assert_eq!(report["counts"]["invalid_json"], 1);
    assert_eq!(report["stats"]["unit"], "tokens");

    let good = dir.path().join("good.jsonl");
    std::fs::write(&good, jsonl(3)).unwrap();
    let (code, out, err) = run(&["dataset", "check", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("0 errors"), "{out}");

    let (code, out, _) = run(&[
        "dataset",
        "check",
        "--characters",
        "--json",
        good.to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["stats"]["unit"], "characters");

    let (code, _, err) = run(&[
        "dataset",
        "check",
        dir.path().join("absent.jsonl").to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("absent.jsonl"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn dataset_check_counts_with_a_given_tokenizer_and_limit() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data.jsonl");
    std::fs::write(&file, jsonl(4)).unwrap();
    let tokenizer = repo().join("models/hone-demo/tokenizer.json");
    let (code, out, err) = run(&[
        "dataset",
        "check",
        "--json",
        "--tokenizer",
        tokenizer.to_str().unwrap(),
        "--max-tokens",
        "10",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["counts"]["too_long"], 4, "{out}");

    // A folder works too; its tokenizer_config.json gives the context (2048).
    let folder = repo().join("models/hone-demo");
    let (code, out, err) = run(&[
        "dataset",
        "check",
        "--json",
        "--tokenizer",
        folder.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let longest = report["stats"]["length"]["max"].as_u64().unwrap();
    assert!((10..100).contains(&longest), "{longest}");

    let broken = dir.path().join("tokenizer.json");
    std::fs::write(&broken, "{}").unwrap();
    let (code, _, err) = run(&[
        "dataset",
        "check",
        "--tokenizer",
        broken.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("tokenizer"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn dataset_split_writes_the_same_three_files_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data.jsonl");
    std::fs::write(&file, jsonl(50)).unwrap();
    let mut outputs = Vec::new();
    for run_no in 0..2 {
        let out_dir = dir.path().join(format!("out{run_no}"));
        let (code, out, err) = run(&[
            "dataset",
            "split",
            file.to_str().unwrap(),
            "--seed",
            "3",
            "--ratios",
            "80,10,10",
            "--out",
            out_dir.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("40 train, 5 validation, 5 test"), "{out}");
        let files: Vec<String> = ["train.jsonl", "validation.jsonl", "test.jsonl"]
            .iter()
            .map(|n| std::fs::read_to_string(out_dir.join(n)).unwrap())
            .collect();
        assert_eq!(files.iter().map(|f| f.lines().count()).sum::<usize>(), 50);
        outputs.push(files);
    }
    assert_eq!(outputs[0], outputs[1]);
    let (code, _, err) = run(&[
        "dataset",
        "split",
        file.to_str().unwrap(),
        "--ratios",
        "80,10",
        "--out",
        "x",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("ratios") || err.contains("three"), "{err}");
}
