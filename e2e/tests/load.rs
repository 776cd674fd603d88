//! A load test on loopback, bounded in count and time: 1 000 sign-ins at
//! once (right and wrong passwords, one client address), then 100 dataset
//! saves at once, against the real `hone` binary. The server must stay
//! up and answer every request with a deliberate status — success, a
//! refusal, a wait (429) or "busy" (503) — never a 500 or a dropped
//! connection, and its peak memory (VmHWM) must stay bounded. The counts
//! and the peak are printed (`cargo test -p hone-e2e --test load --
//! --nocapture`).

// Tests fail loudly: unwrapping is the point here; the figures are printed.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use hone_e2e::http::Api;
use hone_e2e::scenario::{chat_examples, create_user, login, PASSWORD};
use hone_e2e::{hone_binary, start_server_with};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::Duration;

const SIGN_INS: usize = 1000;
const SAVES: usize = 100;
const USERS: usize = 10;

/// One request on its own connection, with timeouts: the status, or why
/// there was none.
fn request(addr: &str, head: &str, cookie: Option<&str>, body: &[u8]) -> Result<u16, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{head}Host: {addr}\r\n{cookie}Content-Length: {}\r\nSec-Fetch-Site: same-origin\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .map_err(|e| format!("write: {e}"))?;
    s.write_all(body).map_err(|e| format!("write: {e}"))?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&out);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            format!(
                "no status line in {:?}",
                text.chars().take(80).collect::<String>()
            )
        })
}

/// Runs `n` requests at once (a barrier releases them together); answers
/// how many got each status, and the errors.
fn burst(
    n: usize,
    make: impl Fn(usize) -> Result<u16, String> + Send + Sync + 'static,
) -> BTreeMap<String, usize> {
    let make = Arc::new(make);
    let gate = Arc::new(Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let (make, gate) = (make.clone(), gate.clone());
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    gate.wait();
                    make(i)
                })
                .unwrap()
        })
        .collect();
    let mut counts = BTreeMap::new();
    for t in threads {
        let key = match t.join().unwrap() {
            Ok(status) => status.to_string(),
            Err(e) => format!("error: {e}"),
        };
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

/// The server's peak resident memory so far (kB).
fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn only_deliberate(what: &str, counts: &BTreeMap<String, usize>, allowed: &[&str]) {
    for (status, n) in counts {
        assert!(
            allowed.contains(&status.as_str()),
            "{what}: {n} answered {status} (all: {counts:?})"
        );
    }
}

#[test]
fn a_thousand_sign_ins_and_a_hundred_saves_at_once_leave_the_server_up_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    for i in 0..USERS {
        create_user(data, &format!("user{i}"));
    }
    create_user(data, "ada");
    let (server, base) =
        start_server_with(data, &[("HONE_WORKERS", "0"), ("HONE_MAX_UPLOADS", "128")]);
    let addr = base.trim_start_matches("http://").to_owned();
    let pid = server.id();
    let idle = peak_kib(pid);

    // Ada's session and project, for the saves, before the crowd arrives
    // (their failures make every account and this address wait).
    let mut ada = Api::new(&base);
    login(&mut ada, "ada");
    let team = ada.call("dashboard", &[]).json()["teams"][0]["id"]
        .as_i64()
        .unwrap();
    let project = ada
        .call(
            "create_project",
            &[("team_id", &team.to_string()), ("name", "Load")],
        )
        .json()
        .as_i64()
        .unwrap();
    let cookie = ada.cookie().unwrap().to_owned();

    let started = std::time::Instant::now();
    let target = addr.clone();
    let sign_ins = burst(SIGN_INS, move |i| {
        let password = if i % 2 == 0 {
            PASSWORD
        } else {
            "a wrong guess"
        };
        let body = format!(
            "username=user{}&password={}",
            i % USERS,
            password.replace(' ', "+")
        );
        request(
            &target,
            "POST /api/login HTTP/1.0\r\nContent-Type: application/x-www-form-urlencoded\r\nAccept: application/json\r\n",
            None,
            body.as_bytes(),
        )
    });
    let sign_in_secs = started.elapsed().as_secs_f64();
    let after_sign_ins = peak_kib(pid);
    only_deliberate("sign-ins", &sign_ins, &["200", "401", "429"]);
    assert!(sign_ins.get("200").is_some_and(|n| *n >= 1), "{sign_ins:?}");

    // The browser's split counts for the examples, from the same code.
    let examples = chat_examples(200);
    let file = data.join("examples.jsonl");
    std::fs::write(&file, &examples).unwrap();
    let split = std::process::Command::new(hone_binary())
        .args(["dataset", "split", "--seed", "42", "--out"])
        .arg(data.join("splits"))
        .arg(&file)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&split.stdout).into_owned();
    let counts: Vec<String> = said
        .split(',')
        .map(|p| p.split_whitespace().next().unwrap().to_owned())
        .collect();
    let head = format!(
        "POST /api/projects/{project}/datasets?name=Load&seed=42&ratios=80,10,10&expect={}&model=hone-demo HTTP/1.0\r\nX-File-Name: examples.jsonl\r\n",
        counts.join(",")
    );
    let started = std::time::Instant::now();
    let target = addr.clone();
    let saves = burst(SAVES, move |_| {
        request(&target, &head, Some(&cookie), &examples)
    });
    let save_secs = started.elapsed().as_secs_f64();
    let peak = peak_kib(pid);
    only_deliberate("saves", &saves, &["202", "503"]);
    assert!(saves.get("202").is_some_and(|n| *n >= 1), "{saves:?}");
    // The accepted saves' checks drain, a few at a time, to ready.
    let api = &mut ada;
    let page = api.call("project", &[("id", &project.to_string())]);
    let ids: Vec<i64> = page.json()["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), saves["202"], "{saves:?}");
    let checked_from = std::time::Instant::now();
    for id in &ids {
        let page = hone_e2e::scenario::checked(api, *id);
        assert_eq!(page["dataset"]["state"], "ready", "{page}");
    }
    let check_secs = checked_from.elapsed().as_secs_f64();
    let peak = peak.max(peak_kib(pid));

    // Still up, and still answering.
    let mut probe = Api::new(&base);
    assert_eq!(probe.get("/readyz").status, 200);
    println!(
        "load: {SIGN_INS} sign-ins in {sign_in_secs:.1} s → {sign_ins:?}; {SAVES} saves in {save_secs:.1} s → {saves:?}, checked {check_secs:.1} s later; \
         server peak RSS {:.1} MiB (idle {:.1}, after the sign-ins {:.1})",
        peak as f64 / 1024.0,
        idle as f64 / 1024.0,
        after_sign_ins as f64 / 1024.0
    );
    assert!(
        peak < 1024 * 1024,
        "the server's peak memory passed 1 GiB: {peak} kB"
    );
    drop(server);
}
