//! The scheduler's decision time: `cargo bench -p hone-server --bench
//! schedule` prints a table for queues of 100 to 1 000 jobs on 64 devices
//! (16 large GPUs, 16 small ones, 32 CPU slots, half of them busy, ten
//! teams with guarantees, budgets and per-person limits).

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use hone_server::jobs::schedule::{decide, Device, Kind, Queued, Quota, Running, Usage, World};
use std::time::Instant;

const GB: u64 = 1 << 30;

/// A small deterministic generator (no dependency, same case every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn world(jobs: usize) -> World {
    let mut r = Lcg(42);
    let devices = (0..64)
        .map(|i| {
            let (kind, gb, weight) = match i {
                0..16 => (Kind::Gpu, 141, 2.0),
                16..32 => (Kind::Gpu, 24, 1.0),
                _ => (Kind::Cpu, 64, 0.1),
            };
            Device {
                id: format!("w{i}"),
                kind,
                memory_bytes: gb * GB,
                weight,
                running: (i % 2 == 0).then(|| Running {
                    job: 100_000 + i as i64,
                    team: r.next(10) as i64,
                    person: r.next(50) as i64,
                    preemptible: r.next(4) == 0,
                }),
            }
        })
        .collect();
    let queue = (0..jobs)
        .map(|j| Queued {
            job: j as i64,
            team: r.next(10) as i64,
            person: r.next(50) as i64,
            priority: r.next(5) as i64 - 2,
            queued_at: r.next(86_400) as i64,
            needs_cpu: Some((1 + r.next(60)) * GB),
            needs_gpu: Some((1 + r.next(120)) * GB),
            hours_cpu: 1.0 + r.next(48) as f64,
            hours_gpu: 0.1 + r.next(8) as f64,
        })
        .collect();
    let quotas = (0..10)
        .map(|t| {
            (
                t,
                Quota {
                    guaranteed: 1 + (t as u32 % 4),
                    month_hours: (t % 3 != 0).then_some(500.0),
                    per_person: (t % 2 == 0).then_some(2),
                },
            )
        })
        .collect();
    let usage = (0..10)
        .map(|t| {
            (
                t,
                Usage {
                    month_hours: r.next(600) as f64,
                    recent_hours: r.next(100) as f64,
                },
            )
        })
        .collect();
    World {
        devices,
        queue,
        quotas,
        usage,
        now: 86_400,
    }
}

fn main() {
    println!("| queued jobs | devices | decision median | p95 | starts | preemptions |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    for jobs in [100, 300, 1000] {
        let w = world(jobs);
        let mut times = Vec::new();
        let mut plan = decide(&w);
        for _ in 0..200 {
            let t = Instant::now();
            plan = std::hint::black_box(decide(std::hint::black_box(&w)));
            times.push(t.elapsed().as_secs_f64() * 1e6);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "| {jobs} | {} | {:.0} µs | {:.0} µs | {} | {} |",
            w.devices.len(),
            times[times.len() / 2],
            times[times.len() * 95 / 100],
            plan.starts().count(),
            plan.preempt.len()
        );
    }
}
