//! The inference service's speed: `hone-train serve` on a model (with an
//! adapter, applied per request as when serving a version), `c` requests
//! sent at once for each `c` of `--clients`, every answer `--tokens` new
//! tokens long (sampled, so none stops early). Prints one row per `c`:
//! output tokens per second over the whole burst, and the time to first
//! token (median and slowest) and per request.
//!
//!   cargo run --release -p hone-gpu --example bench_serve -- \
//!       --engine target/release/hone-train --model DIR [--adapter DIR] \
//!       [--clients 1,8,32] [--tokens 64]
//!
//! `scripts/bench-serve` runs it on the demo model and a ~100 M random
//! Llama. Quote figures from an idle machine (`uptime`).

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let engine =
        PathBuf::from(arg(&args, "--engine").unwrap_or_else(|| "target/release/hone-train".into()));
    let Some(model) = arg(&args, "--model") else {
        eprintln!("usage: bench_serve --engine BIN --model DIR [--adapter DIR] [--clients 1,8,32] [--tokens 64]");
        std::process::exit(2);
    };
    let adapter = arg(&args, "--adapter");
    let clients: Vec<usize> = arg(&args, "--clients")
        .unwrap_or_else(|| "1,8,32".into())
        .split(',')
        .map(|c| c.parse().unwrap())
        .collect();
    let tokens: usize = arg(&args, "--tokens").map_or(64, |t| t.parse().unwrap());

    let mut child = Command::new(&engine)
        .args(["--device", "cpu", "serve", "--model", &model])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", engine.display()));
    let mut input = child.stdin.take().unwrap();
    let mut output = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = move || -> serde_json::Value {
        serde_json::from_str(&output.next().unwrap().unwrap()).unwrap()
    };
    let ready = next();
    assert_eq!(ready["event"], "ready", "{ready}");

    println!(
        "model {model}{}; {tokens} new tokens per answer, sampled (temperature 1)",
        adapter
            .as_deref()
            .map(|a| format!(", adapter {a}"))
            .unwrap_or_default()
    );
    println!("| clients | output tokens/s | first token, median | first token, slowest | wall |");
    println!("| ---: | ---: | ---: | ---: | ---: |");
    // One warm-up answer: the adapter loads, caches fill.
    for (round, &c) in std::iter::once(&1).chain(&clients).enumerate() {
        let start = Instant::now();
        for i in 0..c {
            let request = serde_json::json!({
                "op": "generate",
                "id": format!("{round}-{i}"),
                "adapter": adapter,
                "messages": [{"role": "user", "content": format!("Tell me about the number {i}.")}],
                "max_tokens": tokens,
                "temperature": 1.0,
                "seed": i,
            });
            writeln!(input, "{request}").unwrap();
        }
        input.flush().unwrap();
        let mut first: Vec<Duration> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut produced = 0u64;
        let mut done = 0;
        while done < c {
            let r = next();
            let id = r["id"].as_str().unwrap_or_default().to_owned();
            match r["event"].as_str() {
                Some("delta") if seen.insert(id) => first.push(start.elapsed()),
                Some("done") => {
                    produced += r["completion_tokens"].as_u64().unwrap();
                    done += 1;
                }
                Some("error") => panic!("{r}"),
                _ => {}
            }
        }
        let wall = start.elapsed();
        if round == 0 {
            continue;
        }
        first.sort();
        let median = first[first.len() / 2];
        let slowest = first[first.len() - 1];
        println!(
            "| {c} | {:.0} | {:.3} s | {:.3} s | {:.2} s |",
            produced as f64 / wall.as_secs_f64(),
            median.as_secs_f64(),
            slowest.as_secs_f64(),
            wall.as_secs_f64()
        );
    }
    drop(input);
    let _ = child.wait();
}
