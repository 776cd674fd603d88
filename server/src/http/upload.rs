//! `POST /api/projects/{id}/files`: the raw body is the file, `X-File-Name`
//! (percent-encoded) its name. Streams to storage; the database row is
//! written only after the blob is complete.

use crate::accounts::SignedIn;
use crate::entity::file;
use crate::error::Result;
use crate::state::{now, Services};
use crate::storage;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hone_app::api::{AppError, FileSummary};
use sea_orm::{ActiveModelTrait, Set};
use std::sync::Arc;

#[tracing::instrument(skip_all, fields(project_id))]
pub async fn upload(
    State(s): State<Arc<Services>>,
    SignedIn(u): SignedIn,
    Path(project_id): Path<i64>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let p = s.writable_project(&u, project_id).await?;
    let _slot = s.upload_slot()?;
    let limit = s.config.max_upload_bytes;
    let name = file_name(&headers)?;
    check_declared_size(&headers, limit)?;
    let stored = s.blobs.put_stream(body.into_data_stream(), limit).await?;
    let row = file::ActiveModel {
        project_id: Set(p.id),
        name: Set(name),
        size: Set(stored.size as i64),
        sha256: Set(stored.sha256),
        storage_key: Set(stored.key),
        uploaded_by: Set(u.id),
        created_at: Set(now()),
        ..Default::default()
    }
    .insert(&s.db)
    .await?;
    tracing::info!(user = %u.username, project = p.id, size = row.size, "file uploaded");
    let summary = FileSummary {
        id: row.id,
        name: row.name,
        size: row.size,
        sha256: row.sha256,
        uploaded_by: u.username,
        uploaded_at: row.created_at,
    };
    Ok((StatusCode::CREATED, Json(summary)).into_response())
}

/// The uploaded file's name from `X-File-Name` (percent-encoded).
pub fn file_name(headers: &HeaderMap) -> Result<String, AppError> {
    headers
        .get("x-file-name")
        .and_then(|v| v.to_str().ok())
        .and_then(percent_decode)
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty() && n.len() <= 255 && !n.chars().any(char::is_control))
        .ok_or_else(|| {
            AppError::invalid(
                "file",
                "Give the file a name (X-File-Name header, 1–255 bytes).",
            )
        })
}

/// 413 before reading a body whose `Content-Length` is over the limit.
pub fn check_declared_size(headers: &HeaderMap, limit: u64) -> Result<(), storage::Error> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > limit => Err(storage::Error::TooLarge { limit }),
        _ => Ok(()),
    }
}

/// Decodes `%XX` escapes (what `encodeURIComponent` produces).
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn decodes_browser_encoded_names() {
        assert_eq!(
            super::percent_decode("r%C3%A9sum%C3%A9%20v2.jsonl").as_deref(),
            Some("résumé v2.jsonl")
        );
        assert_eq!(super::percent_decode("bad%zz"), None);
        assert_eq!(super::percent_decode("cut%4"), None);
    }
}
