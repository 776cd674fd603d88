//! Measures the job pipeline on the demo model with the real processes:
//!
//! 1. time from "Launch" (the `launch_job` call) to the first `step` event
//!    on the job's event stream, one job at a time;
//! 2. event latency: from the worker reading the engine's line (the
//!    event's `at_ms`) to an event-stream client receiving it — median and
//!    p99 over every event of every stream;
//! 3. the server's memory (VmRSS of `hone`, the engines are children with
//!    their own) with 10 jobs running and 50 open event streams (5 per
//!    job, as 50 open job pages hold).
//!
//!   cargo run --release -p hone-e2e --bin job-bench [RUNS]
//!
//! Needs `hone` and `hone-train` built (HONE_BIN, HONE_TRAIN_BIN, or the
//! target folder); no browser.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use hone_e2e::http::Api;
use hone_e2e::scenario::{create_user, is_final, launch, project_with_dataset, settings};
use hone_e2e::start_server_with;
use std::time::Instant;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Count and summed VmRSS of the processes whose parent is `pid` (the
/// engines).
fn children_rss_kib(pid: u32) -> (usize, u64) {
    let kids: Vec<u32> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    let after = s.rsplit_once(')')?.1.split_whitespace().nth(1)?.to_owned();
                    after.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect();
    (kids.len(), kids.iter().map(|k| rss_kib(*k)).sum())
}

/// `epochs` passes, rare checkpoints and evaluations: the events are steps.
fn bench_settings(api: &mut Api, dataset: i64, epochs: u64) -> String {
    settings(
        api,
        dataset,
        serde_json::json!({"num_train_epochs": epochs, "save_steps": 50, "eval_steps": 1000}),
    )
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);

    // 1. Launch → first step, one job at a time, one worker slot.
    let data = tempfile::tempdir().unwrap();
    let (server, url) = start_server_with(data.path(), &[("HONE_WORKERS", "1")]);
    let mut api = Api::new(&url);
    create_user(data.path(), "ada");
    let dataset = project_with_dataset(&mut api, data.path(), 60);
    let short = bench_settings(&mut api, dataset, 3);
    let mut first_step = Vec::new();
    let mut latencies = Vec::new();
    for _ in 0..runs {
        let t0 = Instant::now();
        let id = launch(&mut api, dataset, &short);
        let mut to_first: Option<f64> = None;
        let mut stream = api.clone();
        let connected = now_ms();
        stream.events(&format!("/api/jobs/{id}/events"), |data| {
            let e: serde_json::Value = serde_json::from_str(data).unwrap();
            let at = e["at_ms"].as_i64().unwrap();
            // Only events recorded after the stream opened: the backlog
            // sent on connect is not latency.
            if at >= connected {
                latencies.push(now_ms() - at);
            }
            if to_first.is_none() && e["kind"] == "engine" && e["event"]["event"] == "step" {
                to_first = Some(t0.elapsed().as_secs_f64() * 1000.0);
            }
            !is_final(&e)
        });
        first_step.push(to_first.unwrap());
    }
    drop(server);
    first_step.sort_by(f64::total_cmp);
    latencies.sort_unstable();
    println!(
        "event latency, one job, one stream, {} events (ms): median {}, p99 {}, max {}",
        latencies.len(),
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(0)
    );
    println!("launch → first step event, {runs} jobs one at a time (ms): min {:.0}, median {:.0}, max {:.0}",
        first_step[0], first_step[first_step.len() / 2], first_step[first_step.len() - 1]);

    // 2 and 3. Ten jobs at once, 50 streams.
    let data = tempfile::tempdir().unwrap();
    let (server, url) = start_server_with(data.path(), &[("HONE_WORKERS", "10")]);
    let pid = server.id();
    let mut api = Api::new(&url);
    create_user(data.path(), "ada");
    let dataset = project_with_dataset(&mut api, data.path(), 60);
    let idle = rss_kib(pid);
    let long = bench_settings(&mut api, dataset, 40);
    let jobs: Vec<i64> = (0..10).map(|_| launch(&mut api, dataset, &long)).collect();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<i64>>();
    let mut threads = Vec::new();
    // One session for all 50 (one person's tabs): signing in is not what
    // is measured (each argon2 check takes ~19 MiB for a moment).
    for job in jobs.iter().cycle().take(50) {
        let (mut a, tx, job) = (api.clone(), tx.clone(), *job);
        threads.push(std::thread::spawn(move || {
            let mut lat = Vec::new();
            let connected = now_ms();
            a.events(&format!("/api/jobs/{job}/events"), |data| {
                let e: serde_json::Value = serde_json::from_str(data).unwrap();
                let at = e["at_ms"].as_i64().unwrap();
                if at >= connected {
                    lat.push(now_ms() - at);
                }
                !is_final(&e)
            });
            let _ = tx.send(lat);
        }));
    }
    drop(tx);
    // Sample memory while everything runs (until the first stream ends).
    let mut peak = 0;
    let mut engines = (0, 0);
    let started = Instant::now();
    let mut all = Vec::new();
    loop {
        match rx.recv_timeout(std::time::Duration::from_millis(200)) {
            Ok(lat) => {
                all.extend(lat);
                break;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                peak = peak.max(rss_kib(pid));
                let e = children_rss_kib(pid);
                if e.0 >= engines.0 {
                    engines = e;
                }
            }
            Err(_) => break,
        }
    }
    for lat in rx {
        all.extend(lat);
    }
    for t in threads {
        t.join().unwrap();
    }
    let streaming = started.elapsed().as_secs_f64();
    all.sort_unstable();
    println!(
        "event latency, 10 jobs on 10 engines (2 cores), 50 streams, {} events (ms): median {}, p99 {}, max {}",
        all.len(),
        percentile(&all, 50.0),
        percentile(&all, 99.0),
        all.last().copied().unwrap_or(0)
    );
    println!(
        "server memory (VmRSS of hone): idle {:.1} MiB; 10 jobs streaming to 50 streams: peak {:.1} MiB over {streaming:.0} s; the {} engines beside it: {:.1} MiB together",
        idle as f64 / 1024.0,
        peak as f64 / 1024.0,
        engines.0,
        engines.1 as f64 / 1024.0
    );
}
