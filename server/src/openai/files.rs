//! `/v1/files`: OpenAI's file objects over Hone's files and dataset
//! versions. An upload is stored and answered at once (`uploaded`); the
//! dataset checks then run off the request ([`Services::check_files`]),
//! and the file becomes `processed` — a dataset version of the key's
//! project, seen in the browser like any other — or `error`, with the
//! findings line by line in `status_details`.
//!
//! Deleting hides a file and its content; the versions made from it keep
//! their own split files (blobs are shared by content, so none is removed
//! here).

use super::auth::ApiCaller;
use super::error::{ApiError, ApiResult};
use crate::datasets::create::{version_from_file, FromFile};
use crate::entity::file::{
    self, PURPOSE_FINE_TUNE, STATUS_ERROR, STATUS_PROCESSED, STATUS_UPLOADED,
};
use crate::entity::job::{self, StoredState};
use crate::error::Result;
use crate::policy::Action;
use crate::state::{now, Services};
use crate::supervisor::Shutdown;
use axum::body::Body;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::TryStreamExt;
use hone_dataset::{Finding, Ratios};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// The split an uploaded file's first version gets (a job asks for the
/// one it needs: its seed, 80/10/10 or 90/0/10).
pub const DEFAULT_SEED: u64 = 42;

/// How many findings `status_details` lists before "and N more".
const DETAILS_SHOWN: usize = 20;

pub fn file_id(id: i64) -> String {
    format!("file-{id}")
}

/// OpenAI's file object.
pub fn object(f: &file::Model) -> Value {
    json!({
        "id": file_id(f.id),
        "object": "file",
        "bytes": f.size,
        "created_at": f.created_at,
        "filename": f.name,
        "purpose": f.purpose.as_deref().unwrap_or(PURPOSE_FINE_TUNE),
        "status": f.status.as_deref().unwrap_or(STATUS_PROCESSED),
        "status_details": f.status_details,
        "expires_at": null,
    })
}

/// The findings, in plain language with line numbers.
pub fn details(message: &str, findings: &[Finding]) -> String {
    let mut out = vec![message.to_owned()];
    for f in findings.iter().take(DETAILS_SHOWN) {
        let at = match (f.line, &f.field) {
            (Some(l), Some(field)) => format!("Line {l} ({field})"),
            (Some(l), None) => format!("Line {l}"),
            (None, _) => "The file".to_owned(),
        };
        out.push(format!("{at}: {} {}", f.message, f.fix));
    }
    if findings.len() > DETAILS_SHOWN {
        out.push(format!(
            "…and {} more; the browser's check page lists them all.",
            findings.len() - DETAILS_SHOWN
        ));
    }
    out.join("\n")
}

/// A name for a file: what the client sent, within 255 bytes and printable.
fn clean_name(given: Option<&str>) -> String {
    let name: String = given
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim()
        .to_owned();
    let mut name = if name.is_empty() {
        "upload.jsonl".to_owned()
    } else {
        name
    };
    while name.len() > 255 {
        name.pop();
    }
    name
}

/// `POST /v1/files` (multipart: `purpose`, `file`).
#[tracing::instrument(skip_all, fields(project = c.project.id))]
pub async fn create(
    State(s): State<Arc<Services>>,
    c: ApiCaller,
    headers: HeaderMap,
    form: std::result::Result<Multipart, MultipartRejection>,
) -> ApiResult<Response> {
    s.project_with(&c.user, c.project.id, Action::Write, "that project")
        .await?;
    let _slot = s.upload_slot()?;
    let limit = s.config.max_upload_bytes;
    crate::http::check_declared_size(&headers, limit).map_err(crate::error::Error::from)?;
    let mut form = form.map_err(|e| {
        ApiError::bad_request("file", format!("The request is not a multipart form: {e}."))
    })?;
    let malformed = |e: axum::extract::multipart::MultipartError| {
        ApiError::bad_request(
            "file",
            format!("The multipart form could not be read: {e}."),
        )
    };
    let mut purpose: Option<String> = None;
    let mut stored: Option<(String, crate::storage::Stored)> = None;
    let outcome: ApiResult<()> = async {
        while let Some(field) = form.next_field().await.map_err(malformed)? {
            match field.name() {
                Some("purpose") => {
                    let text = field.text().await.map_err(malformed)?;
                    purpose = Some(text.chars().take(100).collect());
                }
                Some("file") if stored.is_none() => {
                    let name = clean_name(field.file_name());
                    let body = field.map_err(|e| e.to_string());
                    let blob = s.blobs.put_stream(Box::pin(body), limit).await?;
                    stored = Some((name, blob));
                }
                // OpenAI ignores fields it does not know; so does Hone.
                _ => {}
            }
        }
        Ok(())
    }
    .await;
    outcome?;
    match purpose.as_deref() {
        Some(PURPOSE_FINE_TUNE) => {}
        Some(other) => {
            return Err(ApiError::bad_request(
                "purpose",
                format!("Hone stores files for fine-tuning only: purpose must be \"fine-tune\", not {other:?}."),
            ))
        }
        None => {
            return Err(ApiError::bad_request(
                "purpose",
                "Missing purpose: send purpose=\"fine-tune\".",
            ))
        }
    }
    let Some((name, blob)) = stored else {
        return Err(ApiError::bad_request(
            "file",
            "Missing file: send the data as the multipart field \"file\".",
        ));
    };
    let row = file::ActiveModel {
        project_id: Set(c.project.id),
        name: Set(name),
        size: Set(blob.size as i64),
        sha256: Set(blob.sha256),
        storage_key: Set(blob.key),
        uploaded_by: Set(c.user.id),
        created_at: Set(now()),
        purpose: Set(Some(PURPOSE_FINE_TUNE.into())),
        status: Set(Some(STATUS_UPLOADED.into())),
        ..Default::default()
    }
    .insert(&s.db)
    .await?;
    tracing::info!(user = %c.user.username, key = c.key.id, file = row.id, size = row.size, "file uploaded through the API");
    s.files_wake.notify_one();
    Ok((StatusCode::OK, Json(object(&row))).into_response())
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    after: Option<String>,
    limit: Option<u64>,
    order: Option<String>,
    purpose: Option<String>,
}

/// The key's project's API file `id` (not deleted).
pub async fn find(s: &Services, c: &ApiCaller, id: &str) -> ApiResult<file::Model> {
    s.project_with(&c.user, c.project.id, Action::Read, "that project")
        .await?;
    let Some(n) = super::parse_id(id, "file") else {
        return Err(ApiError::not_found("file").with_param("file_id"));
    };
    file::Entity::find_by_id(n)
        .filter(file::Column::ProjectId.eq(c.project.id))
        .filter(file::Column::Purpose.is_not_null())
        .filter(file::Column::DeletedAt.is_null())
        .one(&s.db)
        .await?
        .ok_or_else(|| ApiError::not_found("file").with_param("file_id"))
}

/// `GET /v1/files`: newest first unless `order=asc`; `after` is a file id.
pub async fn list(
    State(s): State<Arc<Services>>,
    c: ApiCaller,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    s.project_with(&c.user, c.project.id, Action::Read, "that project")
        .await?;
    let limit = super::limit(q.limit, 10_000, 10_000)?;
    let ascending = match q.order.as_deref() {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(_) => {
            return Err(ApiError::bad_request(
                "order",
                "order is \"asc\" or \"desc\".",
            ))
        }
    };
    if q.purpose.as_deref().is_some_and(|p| p != PURPOSE_FINE_TUNE) {
        return Ok(Json(super::list_of(Vec::new(), false)));
    }
    let mut query = file::Entity::find()
        .filter(file::Column::ProjectId.eq(c.project.id))
        .filter(file::Column::Purpose.is_not_null())
        .filter(file::Column::DeletedAt.is_null());
    if let Some(after) = &q.after {
        // A cursor that names no file of this list ends it.
        let Ok(cursor) = find(&s, &c, after).await else {
            return Ok(Json(super::list_of(Vec::new(), false)));
        };
        query = query.filter(if ascending {
            file::Column::Id.gt(cursor.id)
        } else {
            file::Column::Id.lt(cursor.id)
        });
    }
    let query = if ascending {
        query.order_by_asc(file::Column::Id)
    } else {
        query.order_by_desc(file::Column::Id)
    };
    let mut rows = query.limit(limit + 1).all(&s.db).await?;
    let has_more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    Ok(Json(super::list_of(
        rows.iter().map(object).collect(),
        has_more,
    )))
}

pub async fn retrieve(
    State(s): State<Arc<Services>>,
    c: ApiCaller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(object(&find(&s, &c, &id).await?)))
}

/// `GET /v1/files/{id}/content`: the bytes as uploaded.
pub async fn content(
    State(s): State<Arc<Services>>,
    c: ApiCaller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let f = find(&s, &c, &id).await?;
    let stream = s.blobs.stream(&f.storage_key).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, f.size.to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// `DELETE /v1/files/{id}`: refused while a job that has not ended uses it.
#[tracing::instrument(skip_all, fields(project = c.project.id))]
pub async fn delete(
    State(s): State<Arc<Services>>,
    c: ApiCaller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    s.project_with(&c.user, c.project.id, Action::Write, "that project")
        .await?;
    let f = find(&s, &c, &id).await?;
    let users = job::Entity::find()
        .filter(
            sea_orm::Condition::any()
                .add(job::Column::TrainingFileId.eq(f.id))
                .add(job::Column::ValidationFileId.eq(f.id)),
        )
        .filter(job::Column::State.is_in([
            StoredState::ValidatingFiles,
            StoredState::Queued,
            StoredState::Running,
            StoredState::Cancelling,
        ]))
        .all(&s.db)
        .await?;
    if let Some(j) = users.first() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "file_in_use",
            format!(
                "The file is used by {}, which has not ended: cancel it or wait for it first.",
                super::jobs::job_id(j.id)
            ),
        )
        .with_param("file_id"));
    }
    file::Entity::update_many()
        .col_expr(file::Column::DeletedAt, Expr::value(now()))
        .filter(file::Column::Id.eq(f.id))
        .exec(&s.db)
        .await?;
    tracing::info!(user = %c.user.username, file = f.id, "file deleted through the API");
    Ok(Json(
        json!({ "id": file_id(f.id), "object": "file", "deleted": true }),
    ))
}

impl Services {
    /// Checks every uploaded API file, oldest first, until none is left;
    /// then waits for the next upload. Runs as a supervised task; at start
    /// it picks up files a crash left unchecked.
    pub async fn check_files(&self, mut shutdown: Shutdown) {
        loop {
            // Registered before looking, so an upload meanwhile is not missed.
            let woken = self.files_wake.notified();
            if let Err(e) = self.check_pending_files().await {
                tracing::error!(error = %e, "checking uploaded files failed");
            }
            // Jobs a restart left waiting on files checked before it.
            if let Err(e) = self.ready_waiting_api_jobs().await {
                tracing::error!(error = %e, "readying API jobs failed");
            }
            tokio::select! {
                () = woken => {}
                () = shutdown.wait() => return,
            }
        }
    }

    /// Checks the files still `uploaded`; returns how many were checked.
    pub async fn check_pending_files(&self) -> Result<usize> {
        let mut done = 0;
        loop {
            let Some(f) = file::Entity::find()
                .filter(file::Column::Status.eq(STATUS_UPLOADED))
                .filter(file::Column::DeletedAt.is_null())
                .order_by_asc(file::Column::Id)
                .one(&self.db)
                .await?
            else {
                return Ok(done);
            };
            if let Err(e) = self.check_file(&f).await {
                // Never retried in a loop: one file the server cannot
                // read must not hold up every upload after it.
                tracing::error!(file = f.id, error = %e, "an uploaded file could not be checked");
                file::Entity::update_many()
                    .col_expr(file::Column::Status, Expr::value(STATUS_ERROR))
                    .col_expr(
                        file::Column::StatusDetails,
                        Expr::value("The server could not check this file (the problem is in its log). Upload it again; tell your administrator if it happens again."),
                    )
                    .filter(file::Column::Id.eq(f.id))
                    .filter(file::Column::Status.eq(STATUS_UPLOADED))
                    .exec(&self.db)
                    .await?;
                self.file_checked(f.id).await?;
            }
            done += 1;
        }
    }

    /// One file's checks: its first version, or its findings.
    #[tracing::instrument(skip_all, fields(file = f.id))]
    async fn check_file(&self, f: &file::Model) -> Result<()> {
        let made = version_from_file(
            self,
            FromFile {
                file: f,
                created_by: f.uploaded_by,
                name: dataset_name(&f.name),
                seed: DEFAULT_SEED,
                ratios: Ratios::default(),
                model: crate::models::DEMO.into(),
            },
        )
        .await?;
        let (status, details) = match &made {
            Ok(_) => (STATUS_PROCESSED, None),
            Err(refused) => (
                STATUS_ERROR,
                Some(details(&refused.message, &refused.findings)),
            ),
        };
        // Only from `uploaded`: another server that got there first wins.
        file::Entity::update_many()
            .col_expr(file::Column::Status, Expr::value(status))
            .col_expr(file::Column::StatusDetails, Expr::value(details))
            .filter(file::Column::Id.eq(f.id))
            .filter(file::Column::Status.eq(STATUS_UPLOADED))
            .exec(&self.db)
            .await?;
        tracing::info!(file = f.id, status, "uploaded file checked");
        self.file_checked(f.id).await
    }
}

/// A dataset version's name from a file's: within the 100 characters
/// names may have.
fn dataset_name(file: &str) -> String {
    let base = file.strip_suffix(".jsonl").unwrap_or(file);
    let mut name: String = base.chars().take(100).collect();
    if name.trim().is_empty() {
        name = "Uploaded through the API".into();
    }
    name
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_kept_printable_and_short() {
        assert_eq!(super::clean_name(Some(" a\u{7}b.jsonl ")), "ab.jsonl");
        assert_eq!(super::clean_name(None), "upload.jsonl");
        assert_eq!(super::clean_name(Some(&"é".repeat(200))).len(), 254);
        assert_eq!(super::dataset_name("train.jsonl"), "train");
    }
}
