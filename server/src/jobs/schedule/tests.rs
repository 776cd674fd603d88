//! The scheduler's rules: worked cases computed by hand, then properties
//! over generated inventories, queues, usage and quotas.

use super::*;
use proptest::prelude::*;

const GB: u64 = 1 << 30;

fn device(id: &str, kind: Kind, gb: u64) -> Device {
    Device {
        id: id.into(),
        kind,
        memory_bytes: gb * GB,
        weight: 1.0,
        running: None,
    }
}

fn job(job: i64, team: i64, queued_at: i64) -> Queued {
    Queued {
        job,
        team,
        person: team * 100,
        priority: 0,
        queued_at,
        needs_cpu: Some(GB),
        needs_gpu: Some(GB),
        hours_cpu: 1.0,
        hours_gpu: 1.0,
    }
}

fn quota(guaranteed: u32) -> Quota {
    Quota {
        guaranteed,
        month_hours: None,
        per_person: None,
    }
}

fn why(plan: &Plan, id: i64) -> Option<&Wait> {
    plan.decisions.iter().find_map(|d| match d {
        Decision::Wait { job, why, .. } if *job == id => Some(why),
        _ => None,
    })
}

#[test]
fn fair_share_puts_the_team_that_used_less_first() {
    // Three teams, each guaranteed 2 of 4 CPU slots; queued in the order
    // A, B, C at the same second. A used 8 hours recently, B 2, C none:
    // penalties 20·(1−2^−4) = 18.75, 20·(1−2^−1) = 10, 0.
    let w = World {
        devices: (0..4)
            .map(|i| device(&format!("s{i}"), Kind::Cpu, 8))
            .collect(),
        queue: vec![
            job(1, 1, 0),
            job(2, 2, 0),
            job(3, 3, 0),
            job(4, 3, 0),
            job(5, 3, 0),
        ],
        quotas: [(1, quota(2)), (2, quota(2)), (3, quota(2))].into(),
        usage: [
            (
                1,
                Usage {
                    month_hours: 8.0,
                    recent_hours: 8.0,
                },
            ),
            (
                2,
                Usage {
                    month_hours: 2.0,
                    recent_hours: 2.0,
                },
            ),
        ]
        .into(),
        now: 0,
    };
    assert!((fair_share_penalty(8.0, 2) - 18.75).abs() < 1e-9);
    let plan = decide(&w);
    let starts: Vec<(i64, bool)> = plan.starts().map(|(j, _, p)| (j, p)).collect();
    // C's two within its guarantee, then B's, then A's; C's third would
    // borrow, but no slot is left.
    assert_eq!(starts, [(3, false), (4, false), (2, false), (1, false)]);
    assert_eq!(
        why(&plan, 5),
        Some(&Wait::TeamAtGuarantee {
            using: 2,
            guaranteed: 2
        })
    );
}

#[test]
fn aging_lets_an_old_job_pass_a_lighter_teams_new_ones() {
    // Team 1 used a lot (penalty ≈ 20); its job has waited 201 minutes:
    // 20.1 points of age, ahead of team 2's job queued just now.
    let w = World {
        devices: vec![device("s0", Kind::Cpu, 8)],
        queue: vec![job(1, 1, 0), job(2, 2, 201 * 60)],
        quotas: [(1, quota(1)), (2, quota(1))].into(),
        usage: [(
            1,
            Usage {
                month_hours: 1e6,
                recent_hours: 1e6,
            },
        )]
        .into(),
        now: 201 * 60,
    };
    let plan = decide(&w);
    assert_eq!(plan.starts().next().map(|s| s.0), Some(1));
    assert_eq!(why(&plan, 2), Some(&Wait::Busy { ahead: 0 }));
}

#[test]
fn a_borrower_gives_the_device_back_to_a_team_within_its_guarantee() {
    let mut busy = device("gpu0", Kind::Gpu, 80);
    busy.running = Some(Running {
        job: 9,
        team: 1,
        person: 100,
        preemptible: true,
    });
    let w = World {
        devices: vec![busy],
        queue: vec![job(2, 2, 0), job(3, 2, 0)],
        quotas: [(1, quota(0)), (2, quota(1))].into(),
        usage: HashMap::new(),
        now: 10,
    };
    let plan = decide(&w);
    assert_eq!(plan.preempt, [9]);
    assert_eq!(
        why(&plan, 2),
        Some(&Wait::Preempting {
            device: "gpu0".into()
        })
    );
    // One device handed back is the team's guarantee: the second job waits.
    assert_eq!(
        why(&plan, 3),
        Some(&Wait::TeamAtGuarantee {
            using: 1,
            guaranteed: 1
        })
    );
}

#[test]
fn waits_say_what_they_wait_for() {
    let mut big = job(1, 1, 0);
    big.needs_gpu = Some(40 * GB);
    big.needs_cpu = None;
    let mut over = job(2, 2, 0);
    over.hours_gpu = 5.0;
    let mut mine = job(3, 3, 0);
    mine.person = 7;
    let mut running = device("gpu1", Kind::Gpu, 24);
    running.running = Some(Running {
        job: 8,
        team: 3,
        person: 7,
        preemptible: false,
    });
    let w = World {
        devices: vec![device("gpu0", Kind::Gpu, 24), running],
        queue: vec![big, over, mine],
        quotas: [
            (1, quota(1)),
            (
                2,
                Quota {
                    guaranteed: 1,
                    month_hours: Some(100.0),
                    per_person: None,
                },
            ),
            (
                3,
                Quota {
                    guaranteed: 2,
                    month_hours: None,
                    per_person: Some(1),
                },
            ),
        ]
        .into(),
        usage: [(
            2,
            Usage {
                month_hours: 96.0,
                recent_hours: 0.0,
            },
        )]
        .into(),
        now: 0,
    };
    let plan = decide(&w);
    assert_eq!(plan.starts().count(), 0, "{plan:?}");
    assert_eq!(
        why(&plan, 1),
        Some(&Wait::NoDeviceLargeEnough {
            largest: 24 * GB,
            needs: 40 * GB
        })
    );
    assert_eq!(
        why(&plan, 2),
        Some(&Wait::Budget {
            used: 96.0,
            budget: 100.0
        })
    );
    assert_eq!(
        why(&plan, 3),
        Some(&Wait::PersonLimit {
            running: 1,
            limit: 1
        })
    );
}

// ---- Properties ----------------------------------------------------------

fn world() -> impl Strategy<Value = World> {
    let devices = prop::collection::vec(
        (
            prop::bool::ANY,
            1u64..=8,
            prop::sample::select(vec![1.0, 2.0]),
            prop::option::of((0i64..4, 0i64..6, prop::bool::ANY)),
        ),
        1..8,
    );
    let queue = prop::collection::vec(
        (
            0i64..4,
            0i64..6,
            -3i64..=3,
            0i64..20_000,
            prop::option::of(1u64..=9),
            prop::option::of(1u64..=9),
            1u32..=8,
        ),
        0..30,
    );
    let quotas = prop::collection::vec(
        (
            0u32..=3,
            prop::option::of(0u32..=12),
            prop::option::of(1u32..=3),
        ),
        4,
    );
    let usage = prop::collection::vec((0u32..=12, 0u32..=40), 4);
    (devices, queue, quotas, usage).prop_map(|(devices, queue, quotas, usage)| {
        let mut job_id = 1000;
        let devices = devices
            .into_iter()
            .enumerate()
            .map(|(i, (gpu, gb, weight, running))| Device {
                id: format!("d{i}"),
                kind: if gpu { Kind::Gpu } else { Kind::Cpu },
                memory_bytes: gb * GB,
                weight,
                running: running.map(|(team, person, preemptible)| {
                    job_id += 1;
                    Running {
                        job: job_id,
                        team,
                        person: team * 10 + person,
                        preemptible,
                    }
                }),
            })
            .collect();
        let queue = queue
            .into_iter()
            .enumerate()
            .map(
                |(i, (team, person, priority, at, cpu, gpu, hours))| Queued {
                    job: i as i64,
                    team,
                    person: team * 10 + person,
                    priority,
                    queued_at: at,
                    needs_cpu: cpu.map(|g| g * GB),
                    needs_gpu: gpu.map(|g| g * GB),
                    hours_cpu: f64::from(hours),
                    hours_gpu: f64::from(hours) / 2.0,
                },
            )
            .collect();
        let quotas = quotas
            .into_iter()
            .enumerate()
            .map(|(t, (guaranteed, month, per_person))| {
                (
                    t as i64,
                    Quota {
                        guaranteed,
                        month_hours: month.map(f64::from),
                        per_person,
                    },
                )
            })
            .collect();
        let usage = usage
            .into_iter()
            .enumerate()
            .map(|(t, (month, recent))| {
                (
                    t as i64,
                    Usage {
                        month_hours: f64::from(month),
                        recent_hours: f64::from(recent),
                    },
                )
            })
            .collect();
        World {
            devices,
            queue,
            quotas,
            usage,
            now: 20_000,
        }
    })
}

/// The counts a plan leaves: what runs, plus what it starts.
struct After<'a> {
    w: &'a World,
    starts: Vec<(&'a Queued, &'a Device, bool)>,
}

impl<'a> After<'a> {
    fn of(w: &'a World, plan: &Plan) -> After<'a> {
        let starts = plan
            .starts()
            .map(|(j, d, p)| {
                (
                    w.queue.iter().find(|q| q.job == j).unwrap(),
                    w.devices.iter().find(|x| x.id == d).unwrap(),
                    p,
                )
            })
            .collect();
        After { w, starts }
    }

    fn quota(&self, team: i64) -> Quota {
        self.w
            .quotas
            .get(&team)
            .cloned()
            .unwrap_or_else(default_quota)
    }

    fn reserved(&self, team: i64) -> f64 {
        self.starts
            .iter()
            .filter(|(q, _, _)| q.team == team)
            .map(|(q, d, _)| q.hours(d.kind) * d.weight)
            .sum()
    }

    fn running_of_person(&self, person: i64) -> u32 {
        let before = self
            .w
            .devices
            .iter()
            .filter_map(|d| d.running.as_ref())
            .filter(|r| r.person == person)
            .count();
        (before
            + self
                .starts
                .iter()
                .filter(|(q, _, _)| q.person == person)
                .count()) as u32
    }
}

fn within_budget(a: &After<'_>, q: &Queued, d: &Device) -> bool {
    let used = a.w.usage.get(&q.team).map_or(0.0, |u| u.month_hours);
    a.quota(q.team).month_hours.is_none_or(|b| {
        let so_far = used + a.reserved(q.team);
        so_far < b && so_far + q.hours(d.kind) * d.weight <= b
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn starts_go_to_free_devices_that_fit_once_each(w in world()) {
        let plan = decide(&w);
        let mut used = HashSet::new();
        for (j, d, _) in plan.starts() {
            let q = w.queue.iter().find(|q| q.job == j).unwrap();
            let dev = w.devices.iter().find(|x| x.id == d).unwrap();
            prop_assert!(dev.running.is_none(), "{d} is busy");
            prop_assert!(used.insert(d), "{d} given twice");
            prop_assert!(q.fits(dev), "job {j} does not fit {d}");
        }
        // Every queued job has exactly one decision.
        prop_assert_eq!(plan.decisions.len(), w.queue.len());
    }

    #[test]
    fn guarantees_budgets_and_person_limits_hold(w in world()) {
        let plan = decide(&w);
        let a = After::of(&w, &plan);
        for team in 0..4 {
            let held = w.devices.iter().filter_map(|d| d.running.as_ref())
                .filter(|r| r.team == team && !r.preemptible).count()
                + a.starts.iter().filter(|(q, _, p)| q.team == team && !p).count();
            let before = w.devices.iter().filter_map(|d| d.running.as_ref())
                .filter(|r| r.team == team && !r.preemptible).count();
            prop_assert!(held as u32 <= a.quota(team).guaranteed.max(before as u32),
                "team {team} holds {held} of {}", a.quota(team).guaranteed);
            if let Some(budget) = a.quota(team).month_hours {
                let used = w.usage.get(&team).map_or(0.0, |u| u.month_hours);
                let new = a.reserved(team);
                prop_assert!(new == 0.0 || used + new <= budget + 1e-9,
                    "team {team}: {used} + {new} > {budget}");
            }
        }
        for (q, _, _) in &a.starts {
            if let Some(limit) = a.quota(q.team).per_person {
                let before = w.devices.iter().filter_map(|d| d.running.as_ref())
                    .filter(|r| r.person == q.person).count() as u32;
                prop_assert!(a.running_of_person(q.person) <= limit.max(before));
            }
        }
    }

    #[test]
    fn no_device_idles_while_a_waiting_job_could_run_on_it(w in world()) {
        let plan = decide(&w);
        let a = After::of(&w, &plan);
        let taken: HashSet<&str> = plan.starts().map(|s| s.1).collect();
        for d in w.devices.iter().filter(|d| d.running.is_none() && !taken.contains(d.id.as_str())) {
            for q in &w.queue {
                if plan.starts().any(|s| s.0 == q.job) {
                    continue;
                }
                let person_ok = a.quota(q.team).per_person
                    .is_none_or(|l| a.running_of_person(q.person) < l);
                prop_assert!(
                    !(q.fits(d) && within_budget(&a, q, d) && person_ok),
                    "{} idles while job {} could run on it: {plan:?}", d.id, q.job
                );
            }
        }
    }

    #[test]
    fn only_borrowed_runs_are_preempted_and_each_for_a_waiting_job(w in world()) {
        let plan = decide(&w);
        let preempting = plan.decisions.iter()
            .filter(|d| matches!(d, Decision::Wait { why: Wait::Preempting { .. }, .. }))
            .count();
        prop_assert_eq!(plan.preempt.len(), preempting);
        for j in &plan.preempt {
            let r = w.devices.iter().filter_map(|d| d.running.as_ref()).find(|r| r.job == *j);
            prop_assert!(r.is_some_and(|r| r.preemptible), "{j} was not borrowed");
        }
        // Nothing is preempted while a free device fits the job it is for.
        let taken: HashSet<&str> = plan.starts().map(|s| s.1).collect();
        for d in &plan.decisions {
            if let Decision::Wait { job, why: Wait::Preempting { .. }, .. } = d {
                let q = w.queue.iter().find(|q| q.job == *job).unwrap();
                let a = After::of(&w, &plan);
                prop_assert!(!w.devices.iter().any(|x| x.running.is_none()
                    && !taken.contains(x.id.as_str()) && q.fits(x) && within_budget(&a, q, x)));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    /// No job waits forever. A simulation, a round a minute: a heavy team
    /// (recent use far above its share) queues one job at minute 0; a
    /// light team queues a job of priority `gap` higher every minute, more
    /// than the slots can run (a run takes 5 minutes). Aging bounds who
    /// may pass the heavy job: only light jobs queued within
    /// (gap + the largest penalty) aging periods after it — so it starts
    /// once those have, however long the light queue grows behind it.
    #[test]
    fn no_job_waits_forever(gap in 0i64..=5, slots in 1usize..=3) {
        let mut devices: Vec<Device> = (0..slots).map(|i| device(&format!("s{i}"), Kind::Cpu, 8)).collect();
        let mut ends: HashMap<String, i64> = HashMap::new();
        let mut queue = vec![job(1, 1, 0)];
        let quotas: HashMap<i64, Quota> = [(1, quota(slots as u32)), (2, quota(slots as u32))].into();
        let usage: HashMap<i64, Usage> = [(1, Usage { month_hours: 1e6, recent_hours: 1e6 })].into();
        let window = ((gap as f64 + FAIR_SHARE_WEIGHT) * AGING_SECS) as i64;
        // The light jobs that may pass, run `slots` at a time, 5 minutes each.
        let horizon = (window / 60 + 2) * 5 / slots as i64 + 10;
        let mut started = None;
        let mut passed_from = Vec::new();
        for minute in 0..=horizon {
            let now = minute * 60;
            for d in devices.iter_mut() {
                if ends.get(&d.id).is_some_and(|e| *e <= now) {
                    d.running = None;
                }
            }
            let mut light = job(minute + 2, 2, now);
            light.priority = gap;
            queue.push(light);
            let plan = decide(&World { devices: devices.clone(), queue: queue.clone(), quotas: quotas.clone(), usage: usage.clone(), now });
            for (j, d, p) in plan.starts() {
                let q = queue.iter().find(|q| q.job == j).unwrap().clone();
                if j == 1 {
                    started = Some(now);
                } else if started.is_none() {
                    passed_from.push(q.queued_at);
                }
                let dev = devices.iter_mut().find(|x| x.id == d).unwrap();
                dev.running = Some(Running { job: j, team: q.team, person: q.person, preemptible: p });
                ends.insert(d.to_owned(), now + 5 * 60);
            }
            let started_now: HashSet<i64> = plan.starts().map(|s| s.0).collect();
            queue.retain(|q| !started_now.contains(&q.job));
            if started.is_some() {
                break;
            }
        }
        prop_assert!(started.is_some(), "the heavy team's job never started in {horizon} minutes");
        let latest = passed_from.iter().max().copied().unwrap_or(0);
        prop_assert!(latest <= window + 60, "a job queued at {latest} s passed it (window {window} s)");
    }
}
