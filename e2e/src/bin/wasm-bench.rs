//! Benchmark: the browser's dataset check (WASM, main thread, 4 MiB slices)
//! on a generated JSONL file in headless Chromium. Prints MB/s.
//!
//!   scripts/build-site release && cargo build --release -p hone-server
//!   HONE_BIN=target/release/hone cargo run --release -p hone-e2e --bin wasm-bench [MEGABYTES]

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

    let start = Instant::now();
    p.wait(Locator::Css("#check-file"))
        .await
        .send_keys(&file.display().to_string())
        .await
        .unwrap();
    p.c.wait()
        .at_most(Duration::from_secs(1800))
        .for_element(Locator::Css("#check-report"))
        .await
        .unwrap();
    let secs = start.elapsed().as_secs_f64();
    let examples = p.text_of("#card-examples").await;
    let heap =
        p.c.execute(
            "return performance.memory ? performance.memory.usedJSHeapSize : null",
            vec![],
        )
        .await
        .unwrap();
    println!(
        "browser check: {:.1} MB in {secs:.1} s = {:.1} MB/s ({examples} examples; JS heap {} MB)",
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / secs,
        heap.as_f64()
            .map_or("?".into(), |h| format!("{:.0}", h / 1e6))
    );
    p.c.close().await.unwrap();
}
