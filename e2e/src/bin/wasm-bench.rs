//! Benchmark: the browser's dataset check (WASM in a Web Worker, 4 MiB
//! slices) on a generated JSONL file in headless Chromium. Prints MB/s of
//! the page's check (with the demo model's tokenizer), of one worker with
//! and without tokenization, and the tab's peak memory.
//!
//!   scripts/build-site release && cargo build --release -p hone-server
//!   HONE_BIN=target/release/hone cargo run --release -p hone-e2e --bin wasm-bench [MEGABYTES] [page]

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use fantoccini::Locator;
use hone_e2e::{browser, start_chromedriver, start_server, Page};
use std::io::Write;
use std::time::{Duration, Instant};

/// The same shape as `hone-dataset`'s native benchmark: varied chat examples.
fn generate(path: &std::path::Path, target: usize) -> usize {
    let words = [
        "please", "order", "refund", "password", "delivery", "invoice", "device", "support",
        "week", "email", "change", "address", "number", "help", "today",
    ];
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let (mut written, mut i) = (0usize, 0u64);
    while written < target {
        let mut sentence = |n: u64| {
            (0..n)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    words[(state % words.len() as u64) as usize]
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        let (q, a) = (sentence(12 + i % 20), sentence(30 + i % 60));
        let line = format!("{{\"messages\":[{{\"role\":\"system\",\"content\":\"You are a helpful support agent.\"}},{{\"role\":\"user\",\"content\":\"{q} #{i}\"}},{{\"role\":\"assistant\",\"content\":\"{a}\"}}],\"category\":\"c{}\"}}\n", i % 6);
        out.write_all(line.as_bytes()).unwrap();
        written += line.len();
        i += 1;
    }
    out.flush().unwrap();
    written
}

#[tokio::main]
async fn main() {
    let mb: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    // `page`: only the page's check (for the 1 GB memory figure).
    let page_only = std::env::args().nth(2).as_deref() == Some("page");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let file = tmp.path().join("bench.jsonl");
    let bytes = generate(&file, mb * 1_000_000);
    let (_server, base) = start_server(&data);
    let (_driver, port) = start_chromedriver();
    let p = Page {
        c: browser(port, &tmp.path().join("profile")).await,
        base,
    };

    p.open("/").await;
    p.fill("#username", "bench").await;
    p.fill("#password", "benchmark password").await;
    p.fill("#team", "Bench").await;
    p.click("#create-admin").await;
    p.wait(Locator::Css("#who")).await;
    p.hydrated().await;
    p.fill("#project-name", "Bench").await;
    p.click("#create-project").await;
    p.wait(Locator::LinkText("Bench"))
        .await
        .click()
        .await
        .unwrap();
    p.wait(Locator::Css("#check-file")).await;
    p.hydrated().await;

    // The tab's memory: proportional set size (shared pages divided among
    // their users) of the Chromium renderer processes of this profile (the
    // page and its workers), sampled every 100 ms.
    let profile = tmp.path().join("profile").display().to_string();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampling = {
        let (peak, profile) = (peak.clone(), profile.clone());
        tokio::spawn(async move {
            loop {
                let rss = renderer_rss(&profile);
                peak.fetch_max(rss, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let idle = renderer_rss(&profile);

    // 1. The page as people use it: file input → Web Worker with the demo
    // model's tokenizer → report.
    let start = Instant::now();
    p.wait(Locator::Css("#check-file"))
        .await
        .send_keys(&file.display().to_string())
        .await
        .unwrap();
    p.c.wait()
        .at_most(Duration::from_secs(3600))
        .for_element(Locator::Css("#check-report"))
        .await
        .unwrap();
    let secs = start.elapsed().as_secs_f64();
    let examples = p.text_of("#card-examples").await;
    let mb = bytes as f64 / 1e6;
    println!(
        "page check (worker, checks + demo tokenizer): {mb:.1} MB in {secs:.1} s = {:.2} MB/s ({examples} examples)",
        mb / secs
    );
    println!(
        "tab memory: renderer PSS {:.0} MB before, peak {:.0} MB during the check",
        idle as f64 / 1e6,
        peak.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e6
    );

    if page_only {
        sampling.abort();
        p.c.close().await.unwrap();
        return;
    }
    // 2. One worker driven directly, alternating: checks only, then checks
    // with tokens. The difference is the tokenizer's share.
    let mut rates = Vec::new();
    for run in 1..=2 {
        for tokens in [false, true] {
            let ms = worker_run(&p, tokens).await;
            let rate = mb / (ms / 1000.0);
            println!(
                "run {run}, one worker, {}: {:.1} s = {rate:.2} MB/s",
                if tokens {
                    "checks + tokens"
                } else {
                    "checks only"
                },
                ms / 1000.0
            );
            rates.push((tokens, ms));
        }
    }
    let avg = |t: bool| {
        let v: Vec<f64> = rates.iter().filter(|r| r.0 == t).map(|r| r.1).collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    let token_ms = avg(true) - avg(false);
    println!(
        "tokenization alone (difference): {:.2} MB/s per worker",
        mb / (token_ms / 1000.0)
    );
    sampling.abort();
    p.c.close().await.unwrap();
}

/// Runs the check worker on the file the page's input holds; milliseconds.
async fn worker_run(p: &Page, tokens: bool) -> f64 {
    let script = r#"
        const [tokens, done] = arguments;
        (async () => {
            const file = document.querySelector('#check-file').files[0];
            const tokenizer = tokens
                ? await (await fetch('/api/models/hone-demo/tokenizer')).json()
                : null;
            const request = JSON.stringify({ options: {}, tokenizer });
            const worker = new Worker('/pkg/check-worker.js', { type: 'module' });
            const began = performance.now();
            worker.onmessage = (e) => {
                if (e.data.kind === 'done' || e.data.kind === 'error') {
                    worker.terminate();
                    done(e.data.kind === 'done' ? performance.now() - began : -1);
                }
            };
            worker.postMessage({ file, request });
        })();
    "#;
    p.c.update_timeouts(fantoccini::wd::TimeoutConfiguration::new(
        Some(Duration::from_secs(3600)),
        None,
        None,
    ))
    .await
    .unwrap();
    let ms =
        p.c.execute_async(script, vec![serde_json::json!(tokens)])
            .await
            .unwrap()
            .as_f64()
            .unwrap();
    assert!(ms >= 0.0, "the worker failed");
    ms
}

/// Sum of the proportional set sizes (bytes) of the renderer processes
/// started with this profile.
fn renderer_rss(profile: &str) -> u64 {
    let mut total = 0;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    for entry in dir.flatten() {
        let path = entry.path();
        let Ok(cmdline) = std::fs::read(path.join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline);
        if !cmdline.contains("--type=renderer") || !cmdline.contains(profile) {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(path.join("smaps_rollup")) else {
            continue;
        };
        if let Some(kb) = status
            .lines()
            .find_map(|l| l.strip_prefix("Pss:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            total += kb * 1024;
        }
    }
    total
}
