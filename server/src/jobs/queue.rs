//! The durable queue: jobs are claimed with a lease that the worker renews
//! with its heartbeat, and every write a worker makes is fenced by its id,
//! so a worker that lost its lease (stalled, cut off, presumed dead) can no
//! longer change the job once another has claimed it.
//!
//! The claim is one statement: `UPDATE … WHERE id = (SELECT … LIMIT 1)
//! RETURNING *`, with `FOR UPDATE SKIP LOCKED` in the subquery on
//! PostgreSQL (concurrent claimers skip each other's rows) and as it is on
//! SQLite (one writer at a time makes the statement atomic).

use crate::entity::job::{self, StoredCause, StoredState};
use crate::entity::{job_checkpoint, job_event};
use crate::error::Result;
use hone_app::api::{JobEventBody, JobState};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, Statement, Value};

/// Unix milliseconds: leases and events.
pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// `sql` written with `$1…` placeholders, for `db`'s backend (SQLite's
/// numbered form is `?1…`).
fn statement(db: &DatabaseConnection, sql: &str, values: Vec<Value>) -> Statement {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => sql.to_owned(),
        _ => sql.replace('$', "?"),
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// A job a worker may take: queued, or running under a lease that ran out
/// while it has attempts left (`$3`: now, in ms).
const CLAIMABLE: &str = "(state = 'queued' OR (state = 'running' AND lease_expires_ms < $3 AND attempts < max_attempts))";

/// States in which a job holds a lease.
const LEASED: &str = "('running', 'cancelling')";

/// Claims the oldest queued job, or one whose lease expired while it still
/// has attempts left, for `worker` until `now + lease_ms`.
pub async fn claim(
    db: &DatabaseConnection,
    worker: &str,
    lease_ms: i64,
) -> Result<Option<job::Model>> {
    let now = now_ms();
    let lock = match db.get_database_backend() {
        DbBackend::Postgres => "FOR UPDATE SKIP LOCKED",
        _ => "",
    };
    let sql = format!(
        "UPDATE jobs SET state = 'running', worker_id = $1, lease_expires_ms = $2, \
         attempts = attempts + 1, started_at = COALESCE(started_at, $4), updated_at = $4 \
         WHERE id = (SELECT id FROM jobs WHERE {CLAIMABLE} ORDER BY id LIMIT 1 {lock}) \
         AND {CLAIMABLE} RETURNING *"
    );
    let stmt = statement(
        db,
        &sql,
        vec![
            worker.into(),
            (now + lease_ms).into(),
            now.into(),
            (now / 1000).into(),
        ],
    );
    Ok(job::Entity::find().from_raw_sql(stmt).one(db).await?)
}

/// Extends `worker`'s lease on `job_id`. `None`: the lease is no longer
/// this worker's (fenced out: stop at once); otherwise the job's state,
/// so the worker sees a cancel request.
pub async fn renew(
    db: &DatabaseConnection,
    job_id: i64,
    worker: &str,
    lease_ms: i64,
) -> Result<Option<JobState>> {
    let now = now_ms();
    let stmt = statement(
        db,
        &format!(
            "UPDATE jobs SET lease_expires_ms = $1 WHERE id = $2 AND worker_id = $3 \
             AND state IN {LEASED} AND lease_expires_ms >= $4 RETURNING *"
        ),
        vec![
            (now + lease_ms).into(),
            job_id.into(),
            worker.into(),
            now.into(),
        ],
    );
    Ok(job::Entity::find()
        .from_raw_sql(stmt)
        .one(db)
        .await?
        .map(|j| j.state.into()))
}

/// Appends one event to a job's log. With `worker`, only while that worker
/// holds the job's lease (`None` back: fenced out). Returns the event id.
pub async fn append(
    db: &DatabaseConnection,
    job_id: i64,
    worker: Option<&str>,
    body: &JobEventBody,
) -> Result<Option<job_event::Model>> {
    let now = now_ms();
    let body = serde_json::to_string(body)?;
    let (sql, mut values): (String, Vec<Value>) = match worker {
        Some(w) => (
            format!(
                "INSERT INTO job_events (job_id, at_ms, body) SELECT $1, $2, $3 \
                 WHERE EXISTS (SELECT 1 FROM jobs WHERE id = $1 AND worker_id = $4 \
                 AND state IN {LEASED} AND lease_expires_ms >= $2) RETURNING *"
            ),
            vec![w.into()],
        ),
        None => (
            "INSERT INTO job_events (job_id, at_ms, body) VALUES ($1, $2, $3) RETURNING *".into(),
            vec![],
        ),
    };
    values.splice(0..0, [job_id.into(), now.into(), body.into()]);
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
             device = COALESCE($3, device), updated_at = $4 \
             WHERE id = $5 AND worker_id = $6 AND state IN {LEASED}"
        ),
        vec![
            p.step.into(),
            p.total_steps.into(),
            p.device.into(),
            (now_ms() / 1000).into(),
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
    let now = now_ms();
    let stmt = statement(
        db,
        &format!(
            "INSERT INTO job_checkpoints (job_id, step, manifest, created_at) \
             SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM jobs WHERE id = $1 \
             AND worker_id = $5 AND state IN {LEASED}) RETURNING *"
        ),
        vec![
            job_id.into(),
            step.into(),
            manifest.into(),
            (now / 1000).into(),
            worker.into(),
        ],
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
    /// Stopped for a shutdown: back to the queue, the attempt not counted.
    Requeue,
}

/// Ends `worker`'s run of `job_id`; `false`: fenced out, nothing written.
pub async fn finish(db: &DatabaseConnection, job_id: i64, worker: &str, end: End) -> Result<bool> {
    let now = now_ms() / 1000;
    let (sql, values): (String, Vec<Value>) = match end {
        End::Succeeded {
            outcome,
            tokens_per_s,
        } => (
            "UPDATE jobs SET state = 'succeeded', outcome = $1, tokens_per_s = $2, \
             finished_at = $3, updated_at = $3, lease_expires_ms = NULL"
                .into(),
            vec![outcome.into(), tokens_per_s.into(), now.into()],
        ),
        End::Failed { cause, reason } => (
            "UPDATE jobs SET state = 'failed', failure_cause = $1, failure_reason = $2, \
             finished_at = $3, updated_at = $3, lease_expires_ms = NULL"
                .into(),
            vec![
                sea_orm::ActiveEnum::to_value(&cause).into(),
                reason.into(),
                now.into(),
            ],
        ),
        End::Cancelled { outcome } => (
            "UPDATE jobs SET state = 'cancelled', outcome = $1, finished_at = $2, \
             updated_at = $2, lease_expires_ms = NULL"
                .into(),
            vec![outcome.into(), now.into()],
        ),
        End::Requeue => (
            // A cancel asked for meanwhile still wins.
            "UPDATE jobs SET state = CASE WHEN state = 'cancelling' THEN 'cancelled' ELSE 'queued' END, \
             attempts = attempts - 1, worker_id = NULL, lease_expires_ms = NULL, updated_at = $1"
                .into(),
            vec![now.into()],
        ),
    };
    let n = values.len();
    let sql = format!(
        "{sql} WHERE id = ${} AND worker_id = ${} AND state IN {LEASED}",
        n + 1,
        n + 2
    );
    let mut values = values;
    values.extend([job_id.into(), worker.into()]);
    Ok(db
        .execute_raw(statement(db, &sql, values))
        .await?
        .rows_affected()
        == 1)
}

/// Jobs whose lease ran out with no attempts left fail (system); those
/// that were being cancelled are cancelled. Returns the jobs changed, with
/// their new state, for their event logs.
pub async fn reap(db: &DatabaseConnection) -> Result<Vec<(i64, JobState)>> {
    let now = now_ms();
    let mut changed = Vec::new();
    for (from, to, extra) in [
        (
            "'running'",
            StoredState::Failed,
            ", failure_cause = 'system', failure_reason = $3",
        ),
        ("'cancelling'", StoredState::Cancelled, ""),
    ] {
        let cond = if to == StoredState::Failed {
            " AND attempts >= max_attempts"
        } else {
            ""
        };
        let to_name = sea_orm::ActiveEnum::to_value(&to);
        let sql = format!(
            "UPDATE jobs SET state = '{to_name}', worker_id = NULL, lease_expires_ms = NULL, \
             finished_at = $2, updated_at = $2{extra} \
             WHERE state = {from} AND lease_expires_ms < $1{cond} RETURNING *"
        );
        let mut values: Vec<Value> = vec![now.into(), (now / 1000).into()];
        if to == StoredState::Failed {
            values.push(LOST_TOO_OFTEN.into());
        }
        let rows = job::Entity::find()
            .from_raw_sql(statement(db, &sql, values))
            .all(db)
            .await?;
        changed.extend(rows.into_iter().map(|j| (j.id, j.state.into())));
    }
    Ok(changed)
}

/// The failure of a job whose worker kept disappearing.
pub const LOST_TOO_OFTEN: &str =
    "The worker running this job stopped responding on every attempt (it may have crashed or run out of memory). The job was not retried again.";
