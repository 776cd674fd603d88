//! Benchmark: native MB/s of parse + check (no tokenizer) on a generated
//! JSONL file, fed in 1 MiB chunks as the browser and CLI do.
//!
//! cargo run --release -p hone-dataset --example bench [MEGABYTES]

use hone_dataset::{Checker, Options};
use std::time::Instant;

/// A deterministic, varied chat dataset of about `target` bytes.
fn generate(target: usize) -> Vec<u8> {
    let topics = [
        "billing", "login", "shipping", "returns", "warranty", "account",
    ];
    let words = [
        "please", "order", "refund", "password", "delivery", "invoice", "device", "support",
        "week", "email", "change", "address", "number", "help", "today",
    ];
    let mut out = Vec::with_capacity(target + 1024);
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut i = 0u64;
    while out.len() < target {
        let mut sentence = |n: usize| {
            (0..n)
                .map(|_| words[(next() % words.len() as u64) as usize])
                .collect::<Vec<_>>()
                .join(" ")
        };
        let q = sentence(12 + (i % 20) as usize);
        let a = sentence(30 + (i % 60) as usize);
        let line = format!(
            "{{\"messages\":[{{\"role\":\"system\",\"content\":\"You are a helpful support agent.\"}},{{\"role\":\"user\",\"content\":\"{q} #{i}\"}},{{\"role\":\"assistant\",\"content\":\"{a}\"}}],\"category\":\"{}\"}}\n",
            topics[(i % 6) as usize]
        );
        out.extend_from_slice(line.as_bytes());
        i += 1;
    }
    out
}

#[allow(clippy::print_stdout)]
fn main() {
    let mb: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    let data = generate(mb * 1_000_000);
    for run in 1..=3 {
        let start = Instant::now();
        let mut c = Checker::new(Options::default(), None);
        for chunk in data.chunks(1 << 20) {
            c.feed(chunk);
        }
        let r = c.finish();
        let secs = start.elapsed().as_secs_f64();
        println!(
            "run {run}: {:.1} MB in {secs:.2} s = {:.1} MB/s ({} examples, {} findings)",
            data.len() as f64 / 1e6,
            data.len() as f64 / 1e6 / secs,
            r.examples,
            r.counts.values().sum::<u64>()
        );
    }
}
