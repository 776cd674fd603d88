//! Plain HTTP routes beside the pages: health probes, file upload, the
//! cross-origin guard, and the JSON error shape they share.

use crate::backend::{internal, now, Services};
use crate::entity::file;
use crate::storage;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hone_app::api::{AppError, FileSummary};
use sea_orm::{ActiveModelTrait, Set};
use std::sync::Arc;
use tower_sessions::Session;

/// `AppError` as an HTTP answer: a stable code and a human message, never
/// internals.
#[derive(Debug)]
pub struct ApiError(pub AppError);

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut body = serde_json::json!({ "code": self.0.code(), "message": self.0.to_string() });
        if let AppError::Invalid { field, .. } = &self.0 {
            body["field"] = field.clone().into();
        }
        (status, Json(body)).into_response()
    }
}

/// A refusal with its own status (413, 400) in the same JSON shape.
fn refuse(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        Json(serde_json::json!({ "code": code, "message": message })),
    )
        .into_response()
}

/// `GET /api/models/{name}/tokenizer`: what the browser needs to count
/// tokens as training will. Any signed-in person may read it.
pub async fn tokenizer(
    State(s): State<Arc<Services>>,
    session: Session,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    s.user_from_session(&session).await?;
    let dir = s.config.models_dir.clone();
    let files = tokio::task::spawn_blocking(move || crate::models::tokenizer_files(&dir, &name))
        .await
        .map_err(crate::backend::internal)?
        .map_err(|e| match e {
            crate::models::ModelError::Unknown(name) => AppError::NotFound(format!("model {name}")),
            other => {
                tracing::error!(error = %other, "a model's tokenizer files cannot be read");
                AppError::Internal
            }
        })?;
    Ok((
        [(axum::http::header::CACHE_CONTROL, "private, max-age=300")],
        axum::Json(files),
    )
        .into_response())
}

/// Liveness: the process answers.
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database answers too.
pub async fn readyz(State(s): State<Arc<Services>>) -> Response {
    if crate::db::ping(&s.db).await {
        "ready".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response()
    }
}

/// `POST /api/projects/{id}/files`: the raw body is the file, `X-File-Name`
/// (percent-encoded) its name. Streams to storage; the database row is
/// written only after the blob is complete.
#[tracing::instrument(skip_all, fields(project_id))]
pub async fn upload(
    State(s): State<Arc<Services>>,
    session: Session,
    Path(project_id): Path<i64>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let u = s.user_from_session(&session).await?;
    let p = s.writable_project(&u, project_id).await?;
    let limit = s.config.max_upload_bytes;
    let name = file_name(&headers)?;
    if let Some(refusal) = declared_too_large(&headers, limit) {
        return Ok(refusal);
    }
    let stored = match s.blobs.put_stream(body.into_data_stream(), limit).await {
        Ok(stored) => stored,
        Err(e) => return Ok(upload_refusal(e, limit)),
    };
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
    .await
    .map_err(internal)?;
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

fn too_large(limit: u64) -> Response {
    refuse(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!(
            "The file is larger than the upload limit of {}.",
            hone_app::format::bytes(limit as i64)
        ),
    )
}

/// 413 before reading a body whose `Content-Length` is over the limit.
pub fn declared_too_large(headers: &HeaderMap, limit: u64) -> Option<Response> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    declared
        .is_some_and(|n| n > limit)
        .then(|| too_large(limit))
}

/// The answer to a failed streamed upload (nothing was stored).
pub fn upload_refusal(e: storage::Error, limit: u64) -> Response {
    match e {
        storage::Error::TooLarge { .. } => too_large(limit),
        storage::Error::Interrupted(e) => {
            tracing::info!(error = %e, "upload interrupted");
            refuse(StatusCode::BAD_REQUEST, "interrupted", "The upload was interrupted before it finished. Nothing was saved; please try again.".into())
        }
        e => ApiError(internal(e)).into_response(),
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

/// Refuses state-changing requests that a browser marks as coming from
/// another site (`Sec-Fetch-Site`), or whose `Origin` is not this host.
/// Requests with neither header are not from a browser page and carry no
/// ambient cookies worth forging.
pub async fn same_origin_only(req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let h = req.headers();
    let site = h.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    let cross = match site {
        Some(site) => !matches!(site, "same-origin" | "none"),
        None => match (
            h.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
            h.get(header::HOST).and_then(|v| v.to_str().ok()),
        ) {
            (Some(origin), Some(host)) => {
                origin.split_once("://").map(|(_, rest)| rest) != Some(host)
            }
            (Some(_), None) => true,
            (None, _) => false,
        },
    };
    if cross {
        tracing::warn!(path = %req.uri().path(), "cross-origin request refused");
        return refuse(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "Requests from other sites are refused.".into(),
        );
    }
    next.run(req).await
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
