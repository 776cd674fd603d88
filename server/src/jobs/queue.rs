//! The durable queue: jobs are claimed with a lease that the worker renews
//! with its heartbeat, and every write a worker makes is fenced by its id,
//! so a worker that lost its lease (stalled, cut off, presumed dead) can no
//! longer change the job once another has claimed it.
//!
//! A worker claims only the jobs the scheduler assigned to it
//! (`jobs.assigned_worker`, see [`assign`] and `scheduler.rs`). The claim
//! is one statement: `UPDATE … WHERE id = (SELECT … LIMIT 1) RETURNING *`,
//! with `FOR UPDATE SKIP LOCKED` in the subquery on PostgreSQL (concurrent
//! claimers skip each other's rows) and as it is on SQLite (one writer at a
//! time makes the statement atomic).
//!
//! Leases, heartbeats and device time use the **database's clock**
//! ([`db_now`]), never a worker's: machines whose clocks disagree cannot
//! expire each other's leases early or count device time twice.

use crate::entity::job::{self, StopRequest, StoredCause, StoredState};
use crate::entity::{job_checkpoint, job_event};
use crate::error::Result;
use hone_app::api::{JobEventBody, JobState};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, Statement, Value};

/// The database's clock, Unix milliseconds, as an SQL expression.
pub fn db_now(db: &DatabaseConnection) -> &'static str {
    match db.get_database_backend() {
        DbBackend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        _ => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
    }
}

/// The database's clock, Unix seconds, as an SQL expression (the jobs'
/// `started_at`, `finished_at`… columns).
pub fn db_now_s(db: &DatabaseConnection) -> String {
    format!("({} / 1000)", db_now(db))
}

/// The database's clock now, Unix milliseconds.
pub async fn db_now_ms(db: &DatabaseConnection) -> Result<i64> {
    let stmt = statement(db, &format!("SELECT {} AS now", db_now(db)), vec![]);
    let row = db
        .query_one_raw(stmt)
        .await?
        .ok_or_else(|| crate::error::Error::internal("the database returned no time"))?;
    Ok(row.try_get::<i64>("", "now")?)
}

/// `sql` written with `$1…` placeholders, for `db`'s backend (SQLite's
/// numbered form is `?1…`).
pub(crate) fn statement(db: &DatabaseConnection, sql: &str, values: Vec<Value>) -> Statement {
    statement_for(db.get_database_backend(), sql, values)
}

/// [`statement`] for a backend (inside a transaction).
pub(crate) fn statement_for(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
    let sql = match backend {
        DbBackend::Postgres => sql.to_owned(),
        _ => sql.replace('$', "?"),
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// States in which a job holds a lease.
const LEASED: &str = "('running', 'cancelling')";

/// Gives queued job `job` to worker slot `worker` (the scheduler's
/// decision); `false` if it is no longer queued or already assigned.
pub async fn assign(
    db: &DatabaseConnection,
    job: i64,
    worker: &str,
    preemptible: bool,
) -> Result<bool> {
    let stmt = statement(
        db,
        "UPDATE jobs SET assigned_worker = $1, preemptible = $2, wait_reason = NULL, \
         queue_position = NULL WHERE id = $3 AND state = 'queued' AND assigned_worker IS NULL",
        vec![worker.into(), preemptible.into(), job.into()],
    );
    Ok(db.execute_raw(stmt).await?.rows_affected() == 1)
}

/// Claims the oldest queued job assigned to `worker`, leased to it until
/// `lease_ms` after the database's now, and opens its device-time
/// interval on `device` (its name; weighted as `device_weights` says).
pub async fn claim(
    db: &DatabaseConnection,
    worker: &str,
    device: &str,
    lease_ms: i64,
) -> Result<Option<job::Model>> {
    let lock = match db.get_database_backend() {
        DbBackend::Postgres => "FOR UPDATE SKIP LOCKED",
        _ => "",
    };
    let now = db_now(db);
    let now_s = db_now_s(db);
    let mine = "state = 'queued' AND assigned_worker = $1";
    let sql = format!(
        "UPDATE jobs SET state = 'running', worker_id = $1, lease_expires_ms = {now} + $2, \
         attempts = attempts + 1, started_at = COALESCE(started_at, {now_s}), updated_at = {now_s}, \
         assigned_worker = NULL, wait_reason = NULL, queue_position = NULL, stop_request = NULL \
         WHERE id = (SELECT id FROM jobs WHERE {mine} ORDER BY id LIMIT 1 {lock}) \
         AND {mine} RETURNING *"
    );
    let stmt = statement(db, &sql, vec![worker.into(), lease_ms.into()]);
    let Some(job) = job::Entity::find().from_raw_sql(stmt).one(db).await? else {
        return Ok(None);
    };
    let stmt = statement(
        db,
        &format!(
            "INSERT INTO job_usage (job_id, team_id, worker_id, device_name, weight, started_ms, ended_ms, open) \
             SELECT j.id, p.team_id, $1, $2, \
             COALESCE((SELECT weight FROM device_weights WHERE name = $2), 1.0), {now}, {now}, $4 \
             FROM jobs j JOIN projects p ON p.id = j.project_id WHERE j.id = $3"
        ),
        vec![worker.into(), device.into(), job.id.into(), true.into()],
    );
    db.execute_raw(stmt).await?;
    Ok(Some(job))
}

/// What a renewed lease says about the job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// `cancelling`: a cancel was asked for.
    pub state: JobState,
    /// A stop asked of the run: give a borrowed device back, or pause.
    pub stop: Option<StopRequest>,
}

/// Extends `worker`'s lease on `job_id` (and the end of its device-time
/// interval). `None`: the lease is no longer this worker's (fenced out:
/// stop at once); otherwise what the worker should know: a cancel, or a
/// stop asked of the run.
pub async fn renew(
    db: &DatabaseConnection,
    job_id: i64,
    worker: &str,
    lease_ms: i64,
) -> Result<Option<Lease>> {
    let now = db_now(db);
    let stmt = statement(
        db,
        &format!(
            "UPDATE jobs SET lease_expires_ms = {now} + $1 WHERE id = $2 AND worker_id = $3 \
             AND state IN {LEASED} AND lease_expires_ms >= {now} RETURNING *"
        ),
        vec![lease_ms.into(), job_id.into(), worker.into()],
    );
    let Some(j) = job::Entity::find().from_raw_sql(stmt).one(db).await? else {
        return Ok(None);
    };
    let stmt = statement(
        db,
        &format!(
            "UPDATE job_usage SET ended_ms = {now} WHERE job_id = $1 AND worker_id = $2 AND open = $3"
        ),
        vec![job_id.into(), worker.into(), true.into()],
    );
    db.execute_raw(stmt).await?;
    Ok(Some(Lease {
        state: j.state.into(),
        stop: j.stop_request,
    }))
}

/// Appends one event to a job's log. With `worker`, only while that worker
/// holds the job's lease (`None` back: fenced out). Returns the event id.
pub async fn append(
    db: &DatabaseConnection,
    job_id: i64,
    worker: Option<&str>,
    body: &JobEventBody,
) -> Result<Option<job_event::Model>> {
    let now = db_now(db);
    let body = serde_json::to_string(body)?;
    let (sql, mut values): (String, Vec<Value>) = match worker {
        Some(w) => (
            format!(
                "INSERT INTO job_events (job_id, at_ms, body) SELECT $1, {now}, $2 \
                 WHERE EXISTS (SELECT 1 FROM jobs WHERE id = $1 AND worker_id = $3 \
                 AND state IN {LEASED} AND lease_expires_ms >= {now}) RETURNING *"
            ),
            vec![w.into()],
        ),
        None => (
            format!(
                "INSERT INTO job_events (job_id, at_ms, body) VALUES ($1, {now}, $2) RETURNING *"
            ),
            vec![],
        ),
    };
    values.splice(0..0, [job_id.into(), body.into()]);
    let stmt = statement(db, &sql, values);
    Ok(job_event::Entity::find().from_raw_sql(stmt).one(db).await?)
}

/// What a fenced update of a leased job may set.
#[derive(Debug, Default)]
pub struct Progress {
    pub step: Option<i64>,
    pub total_steps: Option<i64>,
    pub device: Option<String>,
}

/// Records progress while `worker` holds the lease; `false`: fenced out.
pub async fn progress(
    db: &DatabaseConnection,
    job_id: i64,
    worker: &str,
    p: Progress,
) -> Result<bool> {
    let stmt = statement(
        db,
        &format!(
            "UPDATE jobs SET step = COALESCE($1, step), total_steps = COALESCE($2, total_steps), \
             device = COALESCE($3, device), updated_at = {} \
             WHERE id = $4 AND worker_id = $5 AND state IN {LEASED}",
            db_now_s(db)
        ),
        vec![
            p.step.into(),
            p.total_steps.into(),
            p.device.into(),
            job_id.into(),
            worker.into(),
        ],
    );
    Ok(db.execute_raw(stmt).await?.rows_affected() == 1)
}

/// Records a stored checkpoint while `worker` holds the lease.
pub async fn checkpoint(
    db: &DatabaseConnection,
    job_id: i64,
    worker: &str,
    step: i64,
    manifest: &str,
) -> Result<bool> {
    let stmt = statement(
        db,
        &format!(
            "INSERT INTO job_checkpoints (job_id, step, manifest, created_at) \
             SELECT $1, $2, $3, {} WHERE EXISTS (SELECT 1 FROM jobs WHERE id = $1 \
             AND worker_id = $4 AND state IN {LEASED}) RETURNING *",
            db_now_s(db)
        ),
        vec![job_id.into(), step.into(), manifest.into(), worker.into()],
    );
    let stored = job_checkpoint::Entity::find()
        .from_raw_sql(stmt)
        .one(db)
        .await?
        .is_some();
    if stored {
        let stmt = statement(
            db,
            "UPDATE jobs SET checkpoint_step = $1 WHERE id = $2 AND worker_id = $3",
            vec![step.into(), job_id.into(), worker.into()],
        );
        db.execute_raw(stmt).await?;
    }
    Ok(stored)
}

/// How a run ended, as the worker saw it.
#[derive(Debug)]
pub enum End {
    Succeeded {
        outcome: String,
        tokens_per_s: Option<f64>,
    },
    Failed {
        cause: StoredCause,
        reason: String,
    },
    Cancelled {
        outcome: String,
    },
    /// Stopped for a shutdown, or to give a borrowed device back: back to
    /// the queue, keeping its place (its `queued_at`), the attempt not
    /// counted.
    Requeue,
    /// Paused by an administrator: it waits, paused, until resumed.
    Paused,
}

/// Ends `worker`'s run of `job_id` and closes its device-time interval;
/// `false`: fenced out, nothing written.
pub async fn finish(db: &DatabaseConnection, job_id: i64, worker: &str, end: End) -> Result<bool> {
    let now = db_now_s(db);
    let release = "lease_expires_ms = NULL, stop_request = NULL, preemptible = $1";
    let (sql, values): (String, Vec<Value>) = match end {
        End::Succeeded {
            outcome,
            tokens_per_s,
        } => (
            format!(
                "UPDATE jobs SET state = 'succeeded', outcome = $2, tokens_per_s = $3, \
                 finished_at = {now}, updated_at = {now}, {release}"
            ),
            vec![outcome.into(), tokens_per_s.into()],
        ),
        End::Failed { cause, reason } => (
            format!(
                "UPDATE jobs SET state = 'failed', failure_cause = $2, failure_reason = $3, \
                 finished_at = {now}, updated_at = {now}, {release}"
            ),
            vec![sea_orm::ActiveEnum::to_value(&cause).into(), reason.into()],
        ),
        End::Cancelled { outcome } => (
            format!(
                "UPDATE jobs SET state = 'cancelled', outcome = $2, finished_at = {now}, \
                 updated_at = {now}, {release}"
            ),
            vec![outcome.into()],
        ),
        // A cancel asked for meanwhile still wins.
        End::Requeue => (
            format!(
                "UPDATE jobs SET state = CASE WHEN state = 'cancelling' THEN 'cancelled' ELSE 'queued' END, \
                 attempts = attempts - 1, worker_id = NULL, updated_at = {now}, {release}"
            ),
            vec![],
        ),
        End::Paused => (
            format!(
                "UPDATE jobs SET state = CASE WHEN state = 'cancelling' THEN 'cancelled' ELSE 'paused' END, \
                 attempts = attempts - 1, worker_id = NULL, updated_at = {now}, {release}"
            ),
            vec![],
        ),
    };
    let n = values.len() + 1;
    let sql = format!(
        "{sql} WHERE id = ${} AND worker_id = ${} AND state IN {LEASED}",
        n + 1,
        n + 2
    );
    let mut values = values;
    values.insert(0, false.into());
    values.extend([job_id.into(), worker.into()]);
    let ended = db
        .execute_raw(statement(db, &sql, values))
        .await?
        .rows_affected()
        == 1;
    if ended {
        close_usage(db, Some((job_id, worker))).await?;
    }
    Ok(ended)
}

/// Closes device-time intervals at the database's now: `worker`'s on
/// `job`, or (`None`) every open one whose run no longer holds its lease
/// (a lost worker's: it ends at its last heartbeat).
async fn close_usage(db: &DatabaseConnection, of: Option<(i64, &str)>) -> Result<()> {
    let now = db_now(db);
    let stmt = match of {
        Some((job, worker)) => statement(
            db,
            &format!(
                "UPDATE job_usage SET ended_ms = {now}, open = $1 \
                 WHERE job_id = $2 AND worker_id = $3 AND open = $4"
            ),
            vec![false.into(), job.into(), worker.into(), true.into()],
        ),
        None => statement(
            db,
            &format!(
                "UPDATE job_usage SET open = $1 WHERE open = $2 AND NOT EXISTS \
                 (SELECT 1 FROM jobs WHERE jobs.id = job_usage.job_id \
                 AND jobs.worker_id = job_usage.worker_id AND jobs.state IN {LEASED} \
                 AND jobs.lease_expires_ms >= {now})"
            ),
            vec![false.into(), true.into()],
        ),
    };
    db.execute_raw(stmt).await?;
    Ok(())
}

/// Jobs whose lease ran out on the database's clock: back to the queue
/// (keeping their place) while they have attempts left, else failed
/// (system); those that were being cancelled are cancelled. Returns the
/// jobs changed, with their new state, for their event logs.
pub async fn reap(db: &DatabaseConnection) -> Result<Vec<(i64, JobState)>> {
    let now = db_now(db);
    let mut changed = Vec::new();
    let now_s = db_now_s(db);
    let rounds: [(StoredState, &str, String, Vec<Value>); 3] = [
        (
            StoredState::Failed,
            "state = 'running' AND attempts >= max_attempts",
            format!(", failure_cause = 'system', failure_reason = $2, finished_at = {now_s}"),
            vec![false.into(), LOST_TOO_OFTEN.into()],
        ),
        (
            StoredState::Queued,
            "state = 'running' AND attempts < max_attempts",
            String::new(),
            vec![false.into()],
        ),
        (
            StoredState::Cancelled,
            "state = 'cancelling'",
            format!(", finished_at = {now_s}"),
            vec![false.into()],
        ),
    ];
    for (to, cond, extra, values) in rounds {
        let to_name = sea_orm::ActiveEnum::to_value(&to);
        let sql = format!(
            "UPDATE jobs SET state = '{to_name}', worker_id = NULL, lease_expires_ms = NULL, \
             stop_request = NULL, preemptible = $1, updated_at = {now_s}{extra} \
             WHERE {cond} AND lease_expires_ms < {now} RETURNING *"
        );
        let rows = job::Entity::find()
            .from_raw_sql(statement(db, &sql, values))
            .all(db)
            .await?;
        changed.extend(rows.into_iter().map(|j| (j.id, j.state.into())));
    }
    close_usage(db, None).await?;
    Ok(changed)
}

/// The failure of a job whose worker kept disappearing.
pub const LOST_TOO_OFTEN: &str =
    "The worker running this job stopped responding on every attempt (it may have crashed or run out of memory). The job was not retried again.";
