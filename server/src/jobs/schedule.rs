//! The scheduler's decision, as a pure function: the devices (and what
//! runs on them), the queue, each team's usage and quota in; which job
//! starts on which device, which borrowed run gives its device back, and
//! why every other job waits, out. No clock, database or I/O: the caller
//! passes `now` and stores the decisions; property tests check the rules
//! on generated cases.
//!
//! The rules (Slurm's GrpTRES, FairShare and priority aging, Kueue's
//! guaranteed quotas with borrowing):
//! - A team runs up to its *guaranteed* number of devices at once (CPU
//!   slots count as devices, so everything works without GPUs). Beyond it
//!   a job may *borrow* a device nobody within their guarantee wants; it
//!   runs *preemptible*, and gives the device back (checkpoint, requeue)
//!   when a team within its guarantee needs it.
//! - A job starts only if its team's weighted device-hours this month plus
//!   the upper bound of its run time × the device's weight stay within the
//!   month's budget (a spent budget starts nothing). A running job is never
//!   stopped for budget.
//! - An optional per-person limit on jobs running at once.
//! - A job starts only on a device with the memory the engine's estimate
//!   says it needs there.
//! - Order: a score of the job's priority, plus one point per
//!   [`AGING_SECS`] queued (so every job eventually outranks later
//!   arrivals: no starvation), minus a fair-share penalty of at most
//!   [`FAIR_SHARE_WEIGHT`] points for teams that used much of their share
//!   recently (the caller decays usage with a half-life). Ties: the older
//!   job, then the lower id.
//! - Work-conserving: a device is left idle only when no waiting job may
//!   run on it.

use std::collections::{HashMap, HashSet};

/// Queued this long, a job gains one point of priority.
pub const AGING_SECS: f64 = 600.0;

/// The largest fair-share penalty, in priority points: a team whose
/// recent use is far above its share waits at most this many aging
/// periods longer than a team that used nothing.
pub const FAIR_SHARE_WEIGHT: f64 = 20.0;

/// Whether a device is a GPU or a CPU slot (the engine's memory estimate
/// differs: bf16 on a GPU, f32 on the CPU).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Cpu,
    Gpu,
}

/// A job on a device.
#[derive(Clone, Debug, PartialEq)]
pub struct Running {
    pub job: i64,
    pub team: i64,
    pub person: i64,
    /// Borrowed beyond the team's guarantee: may be asked to give the
    /// device back.
    pub preemptible: bool,
}

/// One device a worker reports (one job at a time).
#[derive(Clone, Debug, PartialEq)]
pub struct Device {
    /// The worker slot's id.
    pub id: String,
    pub kind: Kind,
    pub memory_bytes: u64,
    /// Device-hours on it count this many times against budgets (an H200
    /// hour may count more than a T4 hour); 1 by default.
    pub weight: f64,
    pub running: Option<Running>,
}

/// A job waiting to start.
#[derive(Clone, Debug, PartialEq)]
pub struct Queued {
    pub job: i64,
    pub team: i64,
    pub person: i64,
    /// Set by admins; 0 by default.
    pub priority: i64,
    /// Unix seconds it (last) entered the queue.
    pub queued_at: i64,
    /// Memory the engine's estimate says the run needs on a CPU slot and
    /// on a GPU (`None`: it cannot run on that kind).
    pub needs_cpu: Option<u64>,
    pub needs_gpu: Option<u64>,
    /// Upper bound of the run's duration on a device of each kind, hours.
    pub hours_cpu: f64,
    pub hours_gpu: f64,
}

impl Queued {
    fn needs(&self, kind: Kind) -> Option<u64> {
        match kind {
            Kind::Cpu => self.needs_cpu,
            Kind::Gpu => self.needs_gpu,
        }
    }

    fn hours(&self, kind: Kind) -> f64 {
        match kind {
            Kind::Cpu => self.hours_cpu,
            Kind::Gpu => self.hours_gpu,
        }
    }

    fn fits(&self, d: &Device) -> bool {
        self.needs(d.kind).is_some_and(|n| n <= d.memory_bytes)
    }
}

/// A team's limits, as admins set them.
#[derive(Clone, Debug, PartialEq)]
pub struct Quota {
    /// Devices the team may hold at once without being preempted.
    pub guaranteed: u32,
    /// Weighted device-hours per calendar month (UTC); `None`: no limit.
    pub month_hours: Option<f64>,
    /// Jobs one person may run at once; `None`: no limit.
    pub per_person: Option<u32>,
}

/// What a team used.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Usage {
    /// Weighted device-hours this calendar month, running jobs included.
    pub month_hours: f64,
    /// Weighted device-hours, decayed with the fair-share half-life.
    pub recent_hours: f64,
}

/// Everything a decision is made from.
#[derive(Clone, Debug, Default)]
pub struct World {
    pub devices: Vec<Device>,
    pub queue: Vec<Queued>,
    pub quotas: HashMap<i64, Quota>,
    pub usage: HashMap<i64, Usage>,
    /// Unix seconds.
    pub now: i64,
}

/// Why a job is not starting now, for its page and the queue.
#[derive(Clone, Debug, PartialEq)]
pub enum Wait {
    /// No device of any worker has the memory (the largest one's, and
    /// what the run needs).
    NoDeviceLargeEnough { largest: u64, needs: u64 },
    /// The team's budget for the month would be passed.
    Budget { used: f64, budget: f64 },
    /// The person runs as many jobs as they may at once.
    PersonLimit { running: u32, limit: u32 },
    /// The team holds its guaranteed devices and none is free to borrow.
    TeamAtGuarantee { using: u32, guaranteed: u32 },
    /// A borrowed device is being handed back to it.
    Preempting { device: String },
    /// Every device that could run it is busy; `ahead` jobs come first.
    Busy { ahead: usize },
}

/// One job's place in the decision.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    Start {
        job: i64,
        device: String,
        preemptible: bool,
    },
    Wait {
        job: i64,
        /// Its place in the order (0: first).
        position: usize,
        why: Wait,
    },
}

/// The decisions of one round.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// One per queued job, in the order they were considered.
    pub decisions: Vec<Decision>,
    /// Borrowed runs to stop (checkpoint and requeue) for a team within
    /// its guarantee.
    pub preempt: Vec<i64>,
}

impl Plan {
    pub fn starts(&self) -> impl Iterator<Item = (i64, &str, bool)> {
        self.decisions.iter().filter_map(|d| match d {
            Decision::Start {
                job,
                device,
                preemptible,
            } => Some((*job, device.as_str(), *preemptible)),
            Decision::Wait { .. } => None,
        })
    }
}

/// The fair-share penalty of a team: 0 for no recent use, approaching
/// [`FAIR_SHARE_WEIGHT`] as its recent use passes its share (Slurm's
/// classic factor, 2^(−usage/share)).
pub fn fair_share_penalty(recent_hours: f64, guaranteed: u32) -> f64 {
    let share = f64::from(guaranteed.max(1));
    let used = recent_hours.max(0.0) / share;
    FAIR_SHARE_WEIGHT * (1.0 - (-used).exp2())
}

/// The job's score at `now`: higher goes first.
pub fn score(q: &Queued, penalty: f64, now: i64) -> f64 {
    let waited = (now - q.queued_at).max(0) as f64;
    q.priority as f64 + waited / AGING_SECS - penalty
}

/// A team with no quota row: one guaranteed device, no budget, no
/// per-person limit.
pub fn default_quota() -> Quota {
    Quota {
        guaranteed: 1,
        month_hours: None,
        per_person: None,
    }
}

/// Counts while deciding: what runs and what this round starts.
struct Tally {
    /// Non-preemptible devices per team.
    held: HashMap<i64, u32>,
    /// Jobs per person.
    person: HashMap<i64, u32>,
    /// Weighted hours this round's starts reserve, per team.
    reserved: HashMap<i64, f64>,
}

impl Tally {
    fn of(devices: &[Device]) -> Tally {
        let mut t = Tally {
            held: HashMap::new(),
            person: HashMap::new(),
            reserved: HashMap::new(),
        };
        for r in devices.iter().filter_map(|d| d.running.as_ref()) {
            if !r.preemptible {
                *t.held.entry(r.team).or_default() += 1;
            }
            *t.person.entry(r.person).or_default() += 1;
        }
        t
    }
}

pub fn decide(w: &World) -> Plan {
    let quota = |team: i64| w.quotas.get(&team).cloned().unwrap_or_else(default_quota);
    let usage = |team: i64| w.usage.get(&team).cloned().unwrap_or_default();
    let penalties: HashMap<i64, f64> = w
        .queue
        .iter()
        .map(|q| q.team)
        .collect::<HashSet<_>>()
        .into_iter()
        .map(|t| {
            (
                t,
                fair_share_penalty(usage(t).recent_hours, quota(t).guaranteed),
            )
        })
        .collect();
    let mut order: Vec<&Queued> = w.queue.iter().collect();
    let scored = |q: &Queued| score(q, penalties[&q.team], w.now);
    order.sort_by(|a, b| {
        scored(b)
            .total_cmp(&scored(a))
            .then(a.queued_at.cmp(&b.queued_at))
            .then(a.job.cmp(&b.job))
    });

    let mut tally = Tally::of(&w.devices);
    // Devices free now, and those whose borrowed run is being stopped for
    // someone (not offered to anyone else this round).
    let mut free: Vec<&Device> = w.devices.iter().filter(|d| d.running.is_none()).collect();
    // Smallest first: a job takes the smallest device that fits it, so
    // large ones stay for large runs; then the cheapest.
    free.sort_by(|a, b| {
        a.memory_bytes
            .cmp(&b.memory_bytes)
            .then(a.weight.total_cmp(&b.weight))
            .then(a.id.cmp(&b.id))
    });
    let mut reclaiming: HashSet<&str> = HashSet::new();
    let largest_of = |k: Kind| {
        w.devices
            .iter()
            .filter(|d| d.kind == k)
            .map(|d| d.memory_bytes)
            .max()
            .unwrap_or(0)
    };

    let budget_ok = |tally: &Tally, q: &Queued, d: &Device| -> bool {
        match quota(q.team).month_hours {
            None => true,
            Some(budget) => {
                let used =
                    usage(q.team).month_hours + tally.reserved.get(&q.team).copied().unwrap_or(0.0);
                // A spent budget starts nothing, not even a run estimated
                // at no time at all.
                used < budget && used + q.hours(d.kind) * d.weight <= budget
            }
        }
    };
    let person_ok = |tally: &Tally, q: &Queued| -> bool {
        quota(q.team)
            .per_person
            .is_none_or(|limit| tally.person.get(&q.person).copied().unwrap_or(0) < limit)
    };

    let mut decided: HashMap<i64, Decision> = HashMap::new();
    let mut preempt = Vec::new();
    // Two passes: jobs within their team's guarantee first (in order),
    // then borrowers on what is left, so a borrower never takes a device
    // a team within its guarantee wanted this round.
    for borrowing in [false, true] {
        for q in &order {
            if decided.contains_key(&q.job) {
                continue;
            }
            let within = tally.held.get(&q.team).copied().unwrap_or(0) < quota(q.team).guaranteed;
            if within == borrowing || !person_ok(&tally, q) {
                continue;
            }
            let pick = free
                .iter()
                .position(|d| q.fits(d) && budget_ok(&tally, q, d));
            if let Some(i) = pick {
                let d = free.remove(i);
                if within {
                    *tally.held.entry(q.team).or_default() += 1;
                }
                *tally.person.entry(q.person).or_default() += 1;
                *tally.reserved.entry(q.team).or_default() += q.hours(d.kind) * d.weight;
                decided.insert(
                    q.job,
                    Decision::Start {
                        job: q.job,
                        device: d.id.clone(),
                        preemptible: !within,
                    },
                );
                continue;
            }
            if within {
                // A borrowed run of another team on a device that fits.
                let victim = w.devices.iter().find(|d| {
                    d.running
                        .as_ref()
                        .is_some_and(|r| r.preemptible && r.team != q.team)
                        && !reclaiming.contains(d.id.as_str())
                        && q.fits(d)
                        && budget_ok(&tally, q, d)
                });
                if let Some(d) = victim {
                    reclaiming.insert(d.id.as_str());
                    if let Some(r) = &d.running {
                        preempt.push(r.job);
                    }
                    // The device is its once handed back: counted now, so
                    // the team's guarantee is not promised twice.
                    *tally.held.entry(q.team).or_default() += 1;
                    decided.insert(
                        q.job,
                        Decision::Wait {
                            job: q.job,
                            position: 0,
                            why: Wait::Preempting {
                                device: d.id.clone(),
                            },
                        },
                    );
                }
            }
        }
    }

    // Every other job: why it waits, the most specific reason first.
    let mut decisions = Vec::with_capacity(order.len());
    let mut position = 0;
    for q in &order {
        if let Some(d) = decided.remove(&q.job) {
            decisions.push(match d {
                Decision::Wait { job, why, .. } => {
                    let p = position;
                    position += 1;
                    Decision::Wait {
                        job,
                        position: p,
                        why,
                    }
                }
                start => start,
            });
            continue;
        }
        let fits_somewhere = w.devices.iter().any(|d| q.fits(d));
        let why = if !fits_somewhere {
            let (largest, needs) = [(Kind::Gpu, q.needs_gpu), (Kind::Cpu, q.needs_cpu)]
                .into_iter()
                .filter_map(|(k, n)| Some((largest_of(k), n?)))
                .max_by_key(|(l, _)| *l)
                .unwrap_or((0, 0));
            Wait::NoDeviceLargeEnough { largest, needs }
        } else if !w
            .devices
            .iter()
            .any(|d| q.fits(d) && budget_ok(&tally, q, d))
        {
            Wait::Budget {
                used: usage(q.team).month_hours,
                budget: quota(q.team).month_hours.unwrap_or(0.0),
            }
        } else if !person_ok(&tally, q) {
            let limit = quota(q.team).per_person.unwrap_or(0);
            Wait::PersonLimit {
                running: tally.person.get(&q.person).copied().unwrap_or(0),
                limit,
            }
        } else {
            let held = tally.held.get(&q.team).copied().unwrap_or(0);
            let guaranteed = quota(q.team).guaranteed;
            if held >= guaranteed {
                Wait::TeamAtGuarantee {
                    using: held,
                    guaranteed,
                }
            } else {
                Wait::Busy { ahead: position }
            }
        };
        decisions.push(Decision::Wait {
            job: q.job,
            position,
            why,
        });
        position += 1;
    }
    Plan { decisions, preempt }
}

#[cfg(test)]
mod tests;
