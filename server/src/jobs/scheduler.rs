//! The scheduler's loop: the one `hone serve` holding the leader lease
//! (a row of `scheduler_lease`, on the database's clock; another server
//! takes over once it lapses) reads the world — live worker slots and what
//! runs on them, the queue, each team's quota and device time — lets
//! [`schedule::decide`] choose, and writes the decisions: assignments
//! (job → worker slot; workers claim only their own, see
//! [`queue::claim`]), stop requests for borrowed runs a team within its
//! guarantee needs, and each waiting job's reason and position, in plain
//! words, for its page and the admin's queue.
//!
//! It also returns jobs whose worker stopped reporting to the queue
//! ([`queue::reap`]), so they resume elsewhere from their last checkpoint.

use super::queue;
use super::schedule::{self, Decision, Device, Kind, Plan, Queued, Quota, Running, Usage, Wait};
use super::{state_event, worker_stale_ms};
use crate::entity::job::{self, StopRequest, StoredState};
use crate::entity::{device_weight, job_usage, project, scheduler_lease, team, worker};
use crate::error::Result;
use crate::state::Services;
use crate::supervisor::Shutdown;
use hone_app::api::JobState;
use hone_protocol::DeviceKind;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The leader holds its lease this long past its last round.
pub const LEADER_LEASE_MS: i64 = 10_000;

/// A round at least this often (a job queued or a device freed here wakes
/// the scheduler at once; other servers' events are seen within this).
pub const ROUND_EVERY: Duration = Duration::from_secs(1);

/// Past device time counts half after this long, for fair share (Slurm's
/// `PriorityDecayHalfLife` default: 7 days).
pub const HALF_LIFE_MS: f64 = 7.0 * 24.0 * 3_600_000.0;

/// The scheduler task (supervised; every `hone serve` runs one, and the
/// one holding the lease decides).
pub async fn run(services: Arc<Services>, mut shutdown: Shutdown) {
    let me = format!(
        "{}-{}",
        super::worker::hostname(),
        uuid::Uuid::new_v4().simple()
    );
    let db = &services.db;
    let mut leading = false;
    loop {
        match lead(db, &me).await {
            Ok(now_leading) => {
                if now_leading != leading {
                    tracing::info!(scheduler = %me, leading = now_leading, "scheduler leadership changed");
                    leading = now_leading;
                }
                if leading {
                    if let Err(e) = round(&services).await {
                        tracing::warn!(error = %e, "a scheduling round failed");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "the scheduler's lease could not be read"),
        }
        tokio::select! {
            () = services.queue_wake.notified() => {}
            () = tokio::time::sleep(ROUND_EVERY) => {}
            () = shutdown.wait() => break,
        }
    }
    // Hand over at once rather than after the lease runs out.
    let _ = scheduler_lease::Entity::delete_many()
        .filter(scheduler_lease::Column::Holder.eq(me.as_str()))
        .exec(db)
        .await;
}

/// Takes or renews the leader lease for `me`; whether `me` leads now.
pub async fn lead(db: &DatabaseConnection, me: &str) -> Result<bool> {
    let now = queue::db_now(db);
    let sql = format!(
        "INSERT INTO scheduler_lease (id, holder, expires_ms) VALUES (1, $1, {now} + $2) \
         ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms \
         WHERE scheduler_lease.holder = excluded.holder OR scheduler_lease.expires_ms < {now}"
    );
    let n = db
        .execute_raw(queue::statement(
            db,
            &sql,
            vec![me.into(), LEADER_LEASE_MS.into()],
        ))
        .await?
        .rows_affected();
    Ok(n == 1)
}

/// The first instant of the calendar month (UTC) holding `ms`, and of the
/// next one, in Unix ms.
pub fn month_bounds(ms: i64) -> (i64, i64) {
    let t = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let start = time::Date::from_calendar_date(t.year(), t.month(), 1)
        .unwrap_or(time::Date::MIN)
        .midnight()
        .assume_utc();
    let (y, m) = match t.month() {
        time::Month::December => (t.year() + 1, time::Month::January),
        m => (t.year(), m.next()),
    };
    let next = time::Date::from_calendar_date(y, m, 1)
        .unwrap_or(time::Date::MAX)
        .midnight()
        .assume_utc();
    (start.unix_timestamp() * 1000, next.unix_timestamp() * 1000)
}

/// Weighted device-hours of `rows` inside `[from, to)` (ms).
pub fn weighted_hours(rows: &[job_usage::Model], from: i64, to: i64) -> f64 {
    rows.iter()
        .map(|r| {
            let held = (r.ended_ms.min(to) - r.started_ms.max(from)).max(0);
            held as f64 / 3_600_000.0 * r.weight
        })
        .sum()
}

/// Each team's usage at `now`: this month's weighted hours, and recent
/// hours decayed with [`HALF_LIFE_MS`].
pub fn usage_of(rows: &[job_usage::Model], now: i64) -> HashMap<i64, Usage> {
    let (month, _) = month_bounds(now);
    let mut out: HashMap<i64, Usage> = HashMap::new();
    for r in rows {
        let u = out.entry(r.team_id).or_default();
        u.month_hours += weighted_hours(std::slice::from_ref(r), month, now.max(r.ended_ms));
        let age = (now - r.ended_ms).max(0) as f64;
        u.recent_hours += weighted_hours(std::slice::from_ref(r), i64::MIN, i64::MAX)
            * (-age / HALF_LIFE_MS).exp2();
    }
    out
}

/// A stored device, as the scheduler sees it.
fn kind_of(d: &hone_protocol::Device) -> Kind {
    match d.kind {
        DeviceKind::Cuda => Kind::Gpu,
        DeviceKind::Cpu => Kind::Cpu,
    }
}

/// What the world looks like now, read from the database.
pub struct Snapshot {
    pub world: schedule::World,
    /// Worker slot id → its device's name (for reasons).
    pub names: HashMap<String, String>,
    /// Next month's first day (for budget reasons).
    pub resets: i64,
    /// Each waiting job's reason and position as stored now.
    pub shown: HashMap<i64, (Option<String>, Option<i32>)>,
}

/// Each project's team.
pub async fn project_teams(db: &DatabaseConnection) -> Result<HashMap<i64, i64>> {
    Ok(project::Entity::find()
        .select_only()
        .column(project::Column::Id)
        .column(project::Column::TeamId)
        .into_tuple::<(i64, i64)>()
        .all(db)
        .await?
        .into_iter()
        .collect())
}

/// Reads the world the decision is made from. `now` is the database's.
pub async fn snapshot(db: &DatabaseConnection, now: i64, stale_ms: i64) -> Result<Snapshot> {
    let workers = worker::Entity::find()
        .filter(worker::Column::HeartbeatMs.gte(now - stale_ms))
        .filter(worker::Column::Status.eq("ready"))
        .all(db)
        .await?;
    let weights: HashMap<String, f64> = device_weight::Entity::find()
        .all(db)
        .await?
        .into_iter()
        .map(|w| (w.name, w.weight))
        .collect();
    let teams = project_teams(db).await?;
    let active = job::Entity::find()
        .filter(job::Column::State.is_in([
            StoredState::Queued,
            StoredState::Running,
            StoredState::Cancelling,
        ]))
        .all(db)
        .await?;
    let mut devices = Vec::with_capacity(workers.len());
    let mut names = HashMap::new();
    for w in &workers {
        let d: hone_protocol::Device = match serde_json::from_str(&w.device) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(worker = %w.id, error = %e, "a worker's device could not be read; skipped");
                continue;
            }
        };
        // What holds it: a running job, or a job assigned and not yet
        // claimed.
        let running = active
            .iter()
            .find(|j| match j.state {
                StoredState::Queued => j.assigned_worker.as_deref() == Some(w.id.as_str()),
                _ => j.worker_id.as_deref() == Some(w.id.as_str()),
            })
            .map(|j| Running {
                job: j.id,
                team: teams.get(&j.project_id).copied().unwrap_or(0),
                person: j.created_by,
                preemptible: j.preemptible,
            });
        names.insert(w.id.clone(), d.name.clone());
        devices.push(Device {
            id: w.id.clone(),
            kind: kind_of(&d),
            memory_bytes: super::launch::usable(&d),
            weight: weights.get(&d.name).copied().unwrap_or(1.0),
            running,
        });
    }
    let queue = active
        .iter()
        .filter(|j| j.state == StoredState::Queued && j.assigned_worker.is_none())
        .map(|j| {
            // Jobs queued before sizing was recorded fit anywhere.
            let unknown = j.needs_cpu_bytes.is_none() && j.needs_gpu_bytes.is_none();
            let need = |n: Option<i64>| match n {
                Some(b) => Some(b.max(0) as u64),
                None if unknown => Some(0),
                None => None,
            };
            Queued {
                job: j.id,
                team: teams.get(&j.project_id).copied().unwrap_or(0),
                person: j.created_by,
                priority: i64::from(j.priority),
                queued_at: j.queued_at.unwrap_or(j.created_at),
                needs_cpu: need(j.needs_cpu_bytes),
                needs_gpu: need(j.needs_gpu_bytes),
                hours_cpu: j.hours_cpu.unwrap_or(0.0),
                hours_gpu: j.hours_gpu.unwrap_or(0.0),
            }
        })
        .collect();
    let quotas = team::Entity::find()
        .all(db)
        .await?
        .into_iter()
        .map(|t| {
            (
                t.id,
                Quota {
                    guaranteed: t.guaranteed_devices.max(0) as u32,
                    month_hours: t.month_hours,
                    per_person: t.per_person.map(|p| p.max(0) as u32),
                },
            )
        })
        .collect();
    // Device time that still counts: this month's, and four half-lives
    // of the past for fair share.
    let (month, resets) = month_bounds(now);
    let since = month.min(now - (4.0 * HALF_LIFE_MS) as i64);
    let rows = job_usage::Entity::find()
        .filter(job_usage::Column::EndedMs.gte(since))
        .all(db)
        .await?;
    let shown = active
        .iter()
        .filter(|j| j.state == StoredState::Queued)
        .map(|j| (j.id, (j.wait_reason.clone(), j.queue_position)))
        .collect();
    Ok(Snapshot {
        shown,
        world: schedule::World {
            devices,
            queue,
            quotas,
            usage: usage_of(&rows, now),
            now: now.div_euclid(1000),
        },
        names,
        resets,
    })
}

/// "GPUs", "CPU slots" or "devices": what the team's devices are.
fn devices_word(world: &schedule::World) -> &'static str {
    let gpus = world.devices.iter().filter(|d| d.kind == Kind::Gpu).count();
    match (gpus, world.devices.len()) {
        (_, 0) => "devices",
        (g, n) if g == n => "GPUs",
        (0, _) => "CPU slots",
        _ => "devices",
    }
}

/// A waiting job's reason, in the words its page shows.
pub fn reason(why: &Wait, snap: &Snapshot) -> String {
    let word = devices_word(&snap.world);
    match why {
        Wait::NoDeviceLargeEnough { largest: 0, needs } if snap.world.devices.is_empty() => {
            let _ = needs;
            "waiting: no worker is running, so nothing can start. Hone's own workers start with `hone serve`; an administrator can start more with `hone worker`.".into()
        }
        Wait::NoDeviceLargeEnough { largest, needs } => format!(
            "waiting: no device has {} free for it (this run needs about {}; the largest has {})",
            super::launch::gib(*needs),
            super::launch::gib(*needs),
            super::launch::gib(*largest)
        ),
        Wait::Budget { used, budget } => {
            let resets = time::OffsetDateTime::from_unix_timestamp(snap.resets / 1000)
                .map(|t| format!("{} {}", t.day(), t.month()))
                .unwrap_or_default();
            format!(
                "waiting: your team has used {used:.1} of its {budget:.1} device-hours this month, and this run could need more than is left (the budget resets on {resets})"
            )
        }
        Wait::PersonLimit { running, limit } => format!(
            "waiting: you are running {running} of the {limit} jobs one person may run at once in your team"
        ),
        Wait::TeamAtGuarantee { using, guaranteed } => format!(
            "waiting: your team is using {using} of its {guaranteed} {word}, and no other is free to borrow"
        ),
        Wait::Preempting { device } => format!(
            "waiting: {} is being handed back to your team by a job that borrowed it; it starts once that job has saved a checkpoint",
            snap.names.get(device).map_or("a device", String::as_str)
        ),
        Wait::Busy { ahead: 0 } => format!("waiting: every {word} that can run it is busy; it is next"),
        Wait::Busy { ahead } => format!(
            "waiting: {ahead} job{} ahead of yours",
            if *ahead == 1 { "" } else { "s" }
        ),
    }
}

/// One round: requeue lost runs, read the world, decide, write. Returns
/// the plan (tests and the bench read it).
pub async fn round(services: &Services) -> Result<Plan> {
    let db = &services.db;
    for (job, state) in queue::reap(db).await? {
        let note = match state {
            JobState::Failed => Some(queue::LOST_TOO_OFTEN.to_string()),
            JobState::Queued => Some(
                "Its worker stopped responding: the job went back to the queue and continues from its last checkpoint.".to_string(),
            ),
            _ => None,
        };
        tracing::warn!(job, state = state.as_str(), "a job's lease ran out");
        queue::append(db, job, None, &state_event(state, note)).await?;
        services.hub.wake();
        services.notify_job_end(job).await;
    }
    // Trained models get their version and evaluation job, scheduled in
    // this same round.
    services.open_versions().await?;
    // Approved versions get their export job.
    services.open_exports().await?;
    // Succeeded jobs keep only the checkpoints the retention rule keeps.
    services.prune_checkpoints().await?;
    let now = queue::db_now_ms(db).await?;
    let stale = worker_stale_ms(&services.config);
    // Assignments to slots that stopped reporting go back to the pool.
    let live: Vec<String> = worker::Entity::find()
        .select_only()
        .column(worker::Column::Id)
        .filter(worker::Column::HeartbeatMs.gte(now - stale))
        .filter(worker::Column::Status.eq("ready"))
        .into_tuple::<String>()
        .all(db)
        .await?;
    job::Entity::update_many()
        .col_expr(
            job::Column::AssignedWorker,
            Expr::value(Option::<String>::None),
        )
        .col_expr(job::Column::Preemptible, Expr::value(false))
        .filter(job::Column::State.eq(StoredState::Queued))
        .filter(job::Column::AssignedWorker.is_not_null())
        .filter(job::Column::AssignedWorker.is_not_in(live))
        .exec(db)
        .await?;

    let snap = snapshot(db, now, stale).await?;
    let plan = schedule::decide(&snap.world);
    let mut assigned = 0;
    for d in &plan.decisions {
        match d {
            Decision::Start {
                job,
                device,
                preemptible,
            } => {
                if queue::assign(db, *job, device, *preemptible).await? {
                    assigned += 1;
                }
            }
            Decision::Wait { job, position, why } => {
                let text = reason(why, &snap);
                let position = *position as i32;
                // Written only when it changed: a thousand waiting jobs
                // are not rewritten every second.
                let stored = snap.shown.get(job);
                if stored.is_some_and(|(r, p)| {
                    r.as_deref() == Some(text.as_str()) && *p == Some(position)
                }) {
                    continue;
                }
                job::Entity::update_many()
                    .col_expr(job::Column::WaitReason, Expr::value(text))
                    .col_expr(job::Column::QueuePosition, Expr::value(position))
                    .filter(job::Column::Id.eq(*job))
                    .filter(job::Column::State.eq(StoredState::Queued))
                    .exec(db)
                    .await?;
            }
        }
    }
    for victim in &plan.preempt {
        let asked = job::Entity::update_many()
            .col_expr(job::Column::StopRequest, Expr::value(StopRequest::Preempt))
            .filter(job::Column::Id.eq(*victim))
            .filter(job::Column::State.eq(StoredState::Running))
            .filter(job::Column::Preemptible.eq(true))
            .filter(job::Column::StopRequest.is_null())
            .exec(db)
            .await?
            .rows_affected;
        if asked > 0 {
            tracing::info!(
                job = victim,
                "a borrowed device is asked back for a team within its guarantee"
            );
        }
    }
    if assigned > 0 {
        services.assigned_wake.notify_waiters();
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(team: i64, started_ms: i64, ended_ms: i64, weight: f64) -> job_usage::Model {
        job_usage::Model {
            id: 0,
            job_id: 1,
            team_id: team,
            worker_id: "w".into(),
            device_name: "d".into(),
            weight,
            started_ms,
            ended_ms,
            open: false,
        }
    }

    #[test]
    fn months_are_calendar_months_in_utc() {
        // 2026-12-02T18:00:00Z.
        let now = 1_796_234_400_000;
        let (start, next) = month_bounds(now);
        assert_eq!(start, 1_796_083_200_000, "1 December 2026, 00:00 UTC");
        assert_eq!(next, 1_798_761_600_000, "1 January 2027, 00:00 UTC");
        assert_eq!(month_bounds(start), (start, next));
        assert_eq!(month_bounds(next - 1), (start, next));
    }

    #[test]
    fn usage_counts_this_months_part_of_a_run_weighted() {
        let (start, _) = month_bounds(1_796_234_400_000);
        let hour = 3_600_000;
        let rows = vec![
            // Two hours across the month's start: one counts this month.
            row(1, start - hour, start + hour, 1.0),
            // One hour at weight 2.5.
            row(1, start + 2 * hour, start + 3 * hour, 2.5),
            row(2, start + hour, start + 2 * hour, 1.0),
        ];
        let u = usage_of(&rows, start + 10 * hour);
        assert!((u[&1].month_hours - 3.5).abs() < 1e-9, "{:?}", u[&1]);
        assert!((u[&2].month_hours - 1.0).abs() < 1e-9);
        // Recent use decays (half in a week): a little below the total (4.5 h).
        assert!(
            u[&1].recent_hours > 4.2 && u[&1].recent_hours <= 4.5,
            "{:?}",
            u[&1]
        );
        let later = usage_of(&rows, start + 10 * hour + HALF_LIFE_MS as i64);
        assert!((later[&2].recent_hours - u[&2].recent_hours / 2.0).abs() < 1e-6);
    }
}
