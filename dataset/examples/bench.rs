//! Benchmark: native MB/s of parse + check on a generated JSONL file, fed
//! in 1 MiB chunks as the browser and CLI do; without a tokenizer, then with
//! the demo model's tokenizer and chat template (feature `tokens`).
//!
//! cargo run --release -p hone-dataset --features tokens --example bench [MEGABYTES]

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
    #[cfg(feature = "tokens")]
    let tokenizer = hone_dataset::tokens::ChatTokenizer::from_files(
        include_bytes!("../../models/hone-demo/tokenizer.json"),
        Some(include_bytes!(
            "../../models/hone-demo/tokenizer_config.json"
        )),
        None,
    )
    .ok();
    #[cfg(not(feature = "tokens"))]
    let tokenizer: Option<NoTokenizer> = None;
    let modes: Vec<(&str, Option<&dyn hone_dataset::Measure>)> = match &tokenizer {
        Some(t) => vec![("checks only", None), ("checks + tokens", Some(t))],
        None => vec![("checks only", None)],
    };
    // Alternated: A, B, A, B, A, B.
    for run in 1..=3 {
        for (label, measure) in &modes {
            bench(&data, run, label, *measure);
        }
    }
}

#[cfg(not(feature = "tokens"))]
struct NoTokenizer;

#[cfg(not(feature = "tokens"))]
impl hone_dataset::Measure for NoTokenizer {
    fn measure(&self, _: &hone_dataset::Example) -> Result<(u32, u32), String> {
        Ok((0, 0))
    }
}

#[allow(clippy::print_stdout)]
fn bench(data: &[u8], run: usize, label: &str, measure: Option<&dyn hone_dataset::Measure>) {
    {
        let start = Instant::now();
        let mut c = Checker::new(Options::default(), measure);
        for chunk in data.chunks(1 << 20) {
            c.feed(chunk);
        }
        let r = c.finish();
        let secs = start.elapsed().as_secs_f64();
        println!(
            "run {run}, {label}: {:.1} MB in {secs:.2} s = {:.1} MB/s ({} examples, {} findings)",
            data.len() as f64 / 1e6,
            data.len() as f64 / 1e6 / secs,
            r.examples,
            r.counts.values().sum::<u64>()
        );
    }
}
