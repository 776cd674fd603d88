//! The OpenAI-compatible API under `/v1`: files, fine-tuning jobs and
//! models, in OpenAI's shapes, so scripts written for OpenAI's fine-tuning
//! (and its client libraries) drive Hone with only `base_url` and
//! `api_key` changed. It is a second door onto the same features the
//! pages use — dataset checks and versions (`crate::datasets`), the job
//! layer (`crate::jobs`) and [`crate::policy`] — not a second
//! implementation: handlers here translate shapes and nothing else.
//!
//! Callers are API keys ([`auth`]); refusals are OpenAI's error body
//! ([`error`]). The README's "Using Hone from OpenAI's client" lists what
//! differs from OpenAI.

pub mod auth;
pub mod chat;
pub mod error;
pub mod files;
pub mod jobs;
pub mod models;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

/// JSON request bodies (job creation) are small.
const JSON_LIMIT: usize = 64 * 1024;

/// A chat request's body: the conversation so far.
const CHAT_LIMIT: usize = 1024 * 1024;

/// Every `/v1` route. `S` is the app's state (it holds the services).
/// Everything but uploading and downloading a file ends with 408 after
/// `timeout`.
pub fn router<S>(timeout: std::time::Duration) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<crate::state::Services>: axum::extract::FromRef<S>,
{
    let timed = Router::new()
        .route("/files", get(files::list))
        .route("/files/{id}", get(files::retrieve).delete(files::delete))
        .route(
            "/fine_tuning/jobs",
            post(jobs::create)
                .get(jobs::list)
                .layer(DefaultBodyLimit::max(JSON_LIMIT)),
        )
        .route("/fine_tuning/jobs/{id}", get(jobs::retrieve))
        .route("/fine_tuning/jobs/{id}/events", get(jobs::events))
        .route("/fine_tuning/jobs/{id}/checkpoints", get(jobs::checkpoints))
        .route("/fine_tuning/jobs/{id}/cancel", post(jobs::cancel))
        .route("/fine_tuning/jobs/{id}/pause", post(jobs::pause))
        .route("/fine_tuning/jobs/{id}/resume", post(jobs::resume))
        .route("/models", get(models::list))
        .route("/models/{id}", get(models::retrieve))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            timeout,
        ));
    Router::new()
        // Uploads count their own bytes against the configured limit.
        .route(
            "/files",
            post(files::create).layer(DefaultBodyLimit::disable()),
        )
        .route("/files/{id}/content", get(files::content))
        // Answers take as long as they take (streamed or not).
        .route(
            "/chat/completions",
            post(chat::create).layer(DefaultBodyLimit::max(CHAT_LIMIT)),
        )
        .merge(timed)
        .fallback(|| async {
            error::ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "unknown_url",
                "Hone's API has no such route. See the README's \"Using Hone from OpenAI's client\".",
            )
        })
}

/// A list in OpenAI's shape.
pub fn list_of(data: Vec<serde_json::Value>, has_more: bool) -> serde_json::Value {
    serde_json::json!({
        "object": "list",
        "first_id": data.first().and_then(|d| d.get("id")).cloned(),
        "last_id": data.last().and_then(|d| d.get("id")).cloned(),
        "data": data,
        "has_more": has_more,
    })
}

/// `prefix-{n}` → n (`file-12`, `ftjob-3`); anything else is not found.
pub fn parse_id(text: &str, prefix: &str) -> Option<i64> {
    text.strip_prefix(prefix)?
        .strip_prefix('-')?
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
}

/// `?limit=` within OpenAI's bounds.
pub fn limit(given: Option<u64>, default: u64, max: u64) -> Result<u64, error::ApiError> {
    match given {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(_) => Err(error::ApiError::bad_request(
            "limit",
            format!("limit must be between 1 and {max}."),
        )),
    }
}
