//! Job events to the browser: `GET /api/jobs/{id}/events` as Server-Sent
//! Events, resumable with `Last-Event-ID`, with a keep-alive comment every
//! 15 s.
//!
//! One [`EventHub`] per server reads new rows of `job_events` in id order
//! and broadcasts them to every open stream: one query however many pages
//! are open, woken at once when a worker in this process appends an event
//! and otherwise every [`POLL`] (workers in other processes write to the
//! same database). A stream first sends what the log holds after the id it
//! was given, then what the hub broadcasts, skipping ids it has sent.

use crate::accounts::SignedIn;
use crate::entity::job_event;
use crate::error::Result;
use crate::state::Services;
use crate::supervisor::Shutdown;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use hone_app::api::{JobEvent, JobEventBody};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, Notify};

/// How often the hub looks for events written by other processes.
pub const POLL: Duration = Duration::from_millis(250);

/// Rows read per query; the hub loops while a read is full.
const BATCH: u64 = 500;

/// One recorded event with the job it belongs to.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub job_id: i64,
    pub event: JobEvent,
}

pub fn decode(row: job_event::Model) -> Result<Recorded> {
    let body: JobEventBody = serde_json::from_str(&row.body)?;
    Ok(Recorded {
        job_id: row.job_id,
        event: JobEvent {
            id: row.id,
            at_ms: row.at_ms,
            body,
        },
    })
}

/// Fans new events out to the open streams.
#[derive(Debug)]
pub struct EventHub {
    tx: broadcast::Sender<Arc<Recorded>>,
    wake: Notify,
    /// Set when the hub stops (the server is shutting down): open streams
    /// end, so the web server can drain.
    closed: tokio::sync::watch::Sender<bool>,
}

impl Default for EventHub {
    fn default() -> Self {
        EventHub {
            tx: broadcast::channel(4096).0,
            wake: Notify::new(),
            closed: tokio::sync::watch::channel(false).0,
        }
    }
}

impl EventHub {
    /// A worker of this process appended an event: read it now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Recorded>> {
        self.tx.subscribe()
    }

    /// Resolves once the hub has stopped.
    pub async fn closed(&self) {
        let mut rx = self.closed.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// The hub's loop (a supervised background task).
    pub async fn run(&self, db: DatabaseConnection, mut shutdown: Shutdown) {
        let mut cursor = match last_id(&db).await {
            Ok(id) => id,
            Err(e) => {
                tracing::error!(error = %e, "event hub: reading the log failed");
                return;
            }
        };
        loop {
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
                () = shutdown.wait() => {
                    let _ = self.closed.send(true);
                    return;
                }
            }
            loop {
                let rows = match after(&db, None, cursor, BATCH).await {
                    Ok(rows) => rows,
                    Err(e) => {
                        tracing::warn!(error = %e, "event hub: reading new events failed");
                        break;
                    }
                };
                let full = rows.len() as u64 == BATCH;
                for r in rows {
                    cursor = r.event.id;
                    // No receivers is fine: nobody is watching.
                    let _ = self.tx.send(Arc::new(r));
                }
                if !full {
                    break;
                }
            }
        }
    }
}

async fn last_id(db: &DatabaseConnection) -> Result<i64> {
    Ok(job_event::Entity::find()
        .order_by_desc(job_event::Column::Id)
        .one(db)
        .await?
        .map_or(0, |r| r.id))
}

/// Events after id `after` (of one job, or of all), oldest first. A row
/// that cannot be decoded is logged and skipped.
pub async fn after(
    db: &DatabaseConnection,
    job: Option<i64>,
    after: i64,
    limit: u64,
) -> Result<Vec<Recorded>> {
    let mut q = job_event::Entity::find().filter(job_event::Column::Id.gt(after));
    if let Some(job) = job {
        q = q.filter(job_event::Column::JobId.eq(job));
    }
    let rows = q
        .order_by_asc(job_event::Column::Id)
        .limit(limit)
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let id = r.id;
            decode(r)
                .inspect_err(|e| tracing::warn!(event = id, error = %e, "undecodable job event"))
                .ok()
        })
        .collect())
}

fn sse(e: &JobEvent) -> SseEvent {
    SseEvent::default()
        .id(e.id.to_string())
        .data(serde_json::to_string(e).unwrap_or_default())
}

/// Whether this event ends the job (its stream closes after it).
fn is_final(e: &JobEvent) -> bool {
    matches!(&e.body, JobEventBody::State { state, .. } if state.is_final())
}

/// `GET /api/jobs/{id}/events`.
#[tracing::instrument(skip_all, fields(job_id))]
pub async fn stream(
    State(s): State<Arc<Services>>,
    SignedIn(u): SignedIn,
    Path(job_id): Path<i64>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = std::result::Result<SseEvent, std::convert::Infallible>>>> {
    s.readable_job(&u, job_id).await?;
    let mut last: i64 = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    // Subscribe before reading the log, so nothing falls between the two.
    let mut live = s.hub.subscribe();
    let hub = s.hub.clone();
    let db = s.db.clone();
    let stream = async_stream(move |tx| async move {
        // The log so far, then live events.
        loop {
            let backlog = match after(&db, Some(job_id), last, BATCH).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "reading a job's events failed");
                    return;
                }
            };
            let full = backlog.len() as u64 == BATCH;
            for r in backlog {
                last = r.event.id;
                if tx.send(sse(&r.event)).await.is_err() || is_final(&r.event) {
                    return;
                }
            }
            if !full {
                break;
            }
        }
        loop {
            let received = tokio::select! {
                r = live.recv() => r,
                () = hub.closed() => return,
            };
            match received {
                Ok(r) if r.job_id == job_id && r.event.id > last => {
                    last = r.event.id;
                    if tx.send(sse(&r.event)).await.is_err() || is_final(&r.event) {
                        return;
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Too slow a reader: catch up from the log.
                    match after(&db, Some(job_id), last, BATCH).await {
                        Ok(rows) => {
                            for r in rows {
                                last = r.event.id;
                                if tx.send(sse(&r.event)).await.is_err() || is_final(&r.event) {
                                    return;
                                }
                            }
                        }
                        Err(_) => return,
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(
        KeepAlive::new()
            .interval(Duration::from_secs(15))
            .text("keep-alive"),
    ))
}

/// A stream fed by a task through a small channel (no extra crate for a
/// generator).
fn async_stream<F, Fut>(
    body: F,
) -> impl Stream<Item = std::result::Result<SseEvent, std::convert::Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<SseEvent>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let task = tokio::spawn(body(tx));
    // The task ends when the client goes away (a send fails) or the job
    // ends; the guard aborts it if the response is dropped first.
    let guard = AbortOnDrop(task);
    futures::stream::unfold((rx, guard), |(mut rx, guard)| async move {
        rx.recv().await.map(|e| (Ok(e), (rx, guard)))
    })
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
