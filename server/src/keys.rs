//! API keys on the settings page and from the command line: making one
//! (its value shown once; only its SHA-256 is stored), listing and revoking
//! a person's own keys. Recognising a key on a request is `openai::auth`'s.

use crate::accounts::{current, password};
use crate::audit::{self, Target};
use crate::entity::audit::AuditAction;
use crate::entity::{api_key, project, user};
use crate::error::Result;
use crate::policy::{self, Action};
use crate::state::{now, Services};
use hone_app::api::{
    ApiKeyRow, AppError, KeyProject, KeysBackend, KeysPage, NewApiKey, RequestParts,
};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set, TransactionTrait,
};
use std::collections::HashMap;

impl Services {
    /// Makes a key for `user` in `project_id` (which they must be able to
    /// read) and returns it with its value — the only time the value exists
    /// outside the caller. Used by the settings page and `hone api-key`.
    #[tracing::instrument(skip_all, fields(user = %user.username, project_id = project_id))]
    pub async fn create_key(
        &self,
        user: &user::Model,
        project_id: i64,
        name: &str,
    ) -> Result<(api_key::Model, String)> {
        if user.disabled_at.is_some() {
            return Err(AppError::Conflict(format!(
                "The account {} is disabled: an administrator must enable it first.",
                user.username
            ))
            .into());
        }
        let p = self
            .project_with(user, project_id, Action::Read, "that project")
            .await?;
        let name = password::parse_name(name, "name", "key")?;
        let secret = crate::openai::auth::new_secret();
        let tx = self.db.begin().await?;
        let key = api_key::ActiveModel {
            user_id: Set(user.id),
            project_id: Set(p.id),
            name: Set(name),
            prefix: Set(secret.prefix),
            secret_hash: Set(secret.hash),
            created_at: Set(now()),
            ..Default::default()
        }
        .insert(&tx)
        .await?;
        audit::record(
            &tx,
            Some(user),
            AuditAction::ApiKeyCreated,
            Target {
                kind: "api_key",
                id: Some(key.id),
                label: &key.name,
            },
            serde_json::json!({ "project_id": p.id, "prefix": key.prefix }),
        )
        .await?;
        tx.commit().await?;
        // Never the value: the id and prefix are enough to find it again.
        tracing::info!(key_id = key.id, prefix = %key.prefix, "API key created");
        Ok((key, secret.key))
    }

    async fn keys_page(&self, req: &RequestParts) -> Result<KeysPage> {
        let u = self.require_user(req).await?;
        let teams = self.teams_of(u.id).await?;
        let team_names: HashMap<i64, String> =
            teams.iter().map(|t| (t.id, t.name.clone())).collect();
        // Every project of the user's teams, when their role may read them.
        let readable = if policy::may(u.role.into(), Action::Read) {
            project::Entity::find()
                .filter(project::Column::TeamId.is_in(teams.iter().map(|t| t.id)))
                .filter(project::Column::DeletedAt.is_null())
                .order_by_asc(project::Column::Name)
                .all(&self.db)
                .await?
        } else {
            Vec::new()
        };
        let keys = api_key::Entity::find()
            .filter(api_key::Column::UserId.eq(u.id))
            .order_by_desc(api_key::Column::CreatedAt)
            .order_by_desc(api_key::Column::Id)
            .all(&self.db)
            .await?;
        // A key's project may since have left the user's teams: its name is
        // still theirs to see on their own key.
        let names: HashMap<i64, String> = project::Entity::find()
            .filter(project::Column::Id.is_in(keys.iter().map(|k| k.project_id)))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|p| (p.id, p.name))
            .collect();
        Ok(KeysPage {
            user: current(&u),
            keys: keys
                .into_iter()
                .map(|k| ApiKeyRow {
                    id: k.id,
                    name: k.name,
                    project_id: k.project_id,
                    project_name: names.get(&k.project_id).cloned().unwrap_or_default(),
                    prefix: k.prefix,
                    created_at: k.created_at,
                    last_used_at: k.last_used_at,
                    revoked_at: k.revoked_at,
                })
                .collect(),
            projects: readable
                .into_iter()
                .map(|p| KeyProject {
                    id: p.id,
                    team: team_names.get(&p.team_id).cloned().unwrap_or_default(),
                    name: p.name,
                })
                .collect(),
        })
    }

    async fn create_api_key(
        &self,
        req: &RequestParts,
        project_id: i64,
        name: String,
    ) -> Result<NewApiKey> {
        let u = self.require_user(req).await?;
        let (key, value) = self.create_key(&u, project_id, &name).await?;
        Ok(NewApiKey {
            id: key.id,
            key: value,
        })
    }

    #[tracing::instrument(skip_all, fields(key_id = id))]
    async fn revoke_api_key(&self, req: &RequestParts, id: i64) -> Result<()> {
        let u = self.require_user(req).await?;
        // Someone else's key is not found, like another team's project.
        let key = api_key::Entity::find_by_id(id)
            .filter(api_key::Column::UserId.eq(u.id))
            .one(&self.db)
            .await?
            .ok_or_else(|| AppError::NotFound("that key".into()))?;
        if key.revoked_at.is_some() {
            return Ok(());
        }
        let prefix = key.prefix.clone();
        let tx = self.db.begin().await?;
        // Conditional: of two revocations at once, one records it.
        let done = api_key::Entity::update_many()
            .col_expr(api_key::Column::RevokedAt, Expr::value(now()))
            .filter(api_key::Column::Id.eq(key.id))
            .filter(api_key::Column::RevokedAt.is_null())
            .exec(&tx)
            .await?;
        if done.rows_affected == 0 {
            return Ok(());
        }
        audit::record(
            &tx,
            Some(&u),
            AuditAction::ApiKeyRevoked,
            Target {
                kind: "api_key",
                id: Some(key.id),
                label: &key.name,
            },
            serde_json::json!({ "project_id": key.project_id, "prefix": prefix }),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(user = %u.username, prefix = %prefix, "API key revoked");
        Ok(())
    }
}

#[async_trait::async_trait]
impl KeysBackend for Services {
    async fn keys_page(&self, req: &RequestParts) -> Result<KeysPage, AppError> {
        Ok(Services::keys_page(self, req).await?)
    }

    async fn create_api_key(
        &self,
        req: &RequestParts,
        project_id: i64,
        name: String,
    ) -> Result<NewApiKey, AppError> {
        Ok(Services::create_api_key(self, req, project_id, name).await?)
    }

    async fn revoke_api_key(&self, req: &RequestParts, id: i64) -> Result<(), AppError> {
        Ok(Services::revoke_api_key(self, req, id).await?)
    }
}
