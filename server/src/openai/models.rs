//! `GET /v1/models`: the base models this server can fine-tune, then the
//! fine-tuned versions of the key's project (`ft:…`), newest first.

use super::auth::ApiCaller;
use super::error::{ApiError, ApiResult};
use crate::entity::job::{self, StoredState};
use crate::policy::Action;
use crate::state::Services;
use axum::extract::{Path, State};
use axum::Json;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::{json, Value};
use std::sync::Arc;

/// Base models are Hone's (they live in its models directory).
fn base(name: &str) -> Value {
    json!({ "id": name, "object": "model", "created": 0, "owned_by": "hone" })
}

async fn all(s: &Services, c: &ApiCaller) -> ApiResult<Vec<Value>> {
    s.project_with(&c.user, c.project.id, Action::Read, "that project")
        .await?;
    let mut out: Vec<Value> = crate::models::names(&s.config.models_dir)
        .iter()
        .map(|n| base(n))
        .collect();
    let tuned = job::Entity::find()
        .filter(job::Column::ProjectId.eq(c.project.id))
        .filter(job::Column::Kind.eq(crate::entity::job::JobKind::Train))
        .filter(job::Column::State.eq(StoredState::Succeeded))
        .filter(job::Column::FineTunedModel.is_not_null())
        .filter(job::Column::DeletedAt.is_null())
        .order_by_desc(job::Column::Id)
        .all(&s.db)
        .await?;
    out.extend(tuned.into_iter().filter_map(|j| {
        Some(json!({
            "id": j.fine_tuned_model?,
            "object": "model",
            "created": j.finished_at.unwrap_or(j.created_at),
            "owned_by": super::jobs::organization(&c.project),
        }))
    }));
    Ok(out)
}

pub async fn list(State(s): State<Arc<Services>>, c: ApiCaller) -> ApiResult<Json<Value>> {
    Ok(Json(
        json!({ "object": "list", "data": all(&s, &c).await? }),
    ))
}

pub async fn retrieve(
    State(s): State<Arc<Services>>,
    c: ApiCaller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    all(&s, &c)
        .await?
        .into_iter()
        .find(|m| m["id"] == id.as_str())
        .map(Json)
        .ok_or_else(|| ApiError::not_found("model"))
}
