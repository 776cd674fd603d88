//! `GET /api/datasets/{id}/{split}.jsonl`: one split file of a version.

use crate::accounts::SignedIn;
use crate::error::Result;
use crate::state::Services;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use hone_app::api::AppError;
use std::sync::Arc;

/// For anyone who may read the version's project (the trainer's input,
/// and for people who want to look), once the server's check made them.
pub async fn download(
    State(s): State<Arc<Services>>,
    SignedIn(u): SignedIn,
    Path((id, file)): Path<(i64, String)>,
) -> Result<Response> {
    let (row, _) = s.ready_dataset(&u, id).await?;
    let (key, split) = match file.as_str() {
        "train.jsonl" => (&row.train_key, "train"),
        "validation.jsonl" => (&row.validation_key, "validation"),
        "test.jsonl" => (&row.test_key, "test"),
        _ => return Err(AppError::NotFound("that split".into()).into()),
    };
    let stream = s.blobs.stream(key).await?;
    let safe: String = row
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "application/jsonl; charset=utf-8".to_owned(),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{safe}-{split}.jsonl\""),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}
