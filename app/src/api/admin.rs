//! The admin page: people, roles and teams.

use super::{AppError, CurrentUser, Role, Team};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub role: Role,
    pub teams: Vec<Team>,
    /// An admin disabled the account: no sign-in, no session, no API key.
    pub disabled: bool,
}

/// What one team stores: the distinct files its projects' uploads,
/// dataset versions, checkpoints and trained models take.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamStorage {
    pub team_id: i64,
    pub team: String,
    pub bytes: i64,
    pub files: i64,
}

/// What purging a team's storage removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeResult {
    pub team_id: i64,
    /// Checkpoints of ended jobs dropped.
    pub checkpoints: u64,
    /// Stored files removed.
    pub files: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminOverview {
    pub user: CurrentUser,
    pub users: Vec<UserRow>,
    pub teams: Vec<Team>,
    /// Largest first.
    pub storage: Vec<TeamStorage>,
}

#[cfg(feature = "ssr")]
pub use backend::AdminBackend;

#[cfg(feature = "ssr")]
mod backend {
    use super::*;
    use crate::api::RequestParts;

    #[async_trait::async_trait]
    pub trait AdminBackend: Send + Sync + 'static {
        async fn admin_overview(&self, req: &RequestParts) -> Result<AdminOverview, AppError>;
        async fn create_user(
            &self,
            req: &RequestParts,
            username: String,
            password: String,
            role: String,
            team_id: i64,
        ) -> Result<(), AppError>;
        async fn create_team(&self, req: &RequestParts, name: String) -> Result<(), AppError>;
        async fn set_role(
            &self,
            req: &RequestParts,
            user_id: i64,
            role: String,
        ) -> Result<(), AppError>;
        async fn set_membership(
            &self,
            req: &RequestParts,
            user_id: i64,
            team_id: i64,
            member: bool,
        ) -> Result<(), AppError>;
        async fn set_disabled(
            &self,
            req: &RequestParts,
            user_id: i64,
            disabled: bool,
        ) -> Result<(), AppError>;
        async fn reset_password(
            &self,
            req: &RequestParts,
            user_id: i64,
            password: String,
        ) -> Result<(), AppError>;
        async fn purge_storage(
            &self,
            req: &RequestParts,
            team_id: i64,
        ) -> Result<PurgeResult, AppError>;
    }
}

#[server(prefix = "/api", endpoint = "admin_overview")]
pub async fn load_admin() -> Result<AdminOverview, AppError> {
    use std::sync::Arc;
    super::ssr::call(|b: Arc<dyn AdminBackend>, r| async move { b.admin_overview(&r).await }).await
}

#[server(prefix = "/api", endpoint = "create_user")]
pub async fn create_user(
    username: String,
    password: String,
    role: String,
    team_id: i64,
) -> Result<(), AppError> {
    use std::sync::Arc;
    super::ssr::call(|b: Arc<dyn AdminBackend>, r| async move {
        b.create_user(&r, username, password, role, team_id).await
    })
    .await
}

#[server(prefix = "/api", endpoint = "create_team")]
pub async fn create_team(name: String) -> Result<(), AppError> {
    use std::sync::Arc;
    super::ssr::call(|b: Arc<dyn AdminBackend>, r| async move { b.create_team(&r, name).await })
        .await
}

#[server(prefix = "/api", endpoint = "set_role")]
pub async fn set_role(user_id: i64, role: String) -> Result<(), AppError> {
    use std::sync::Arc;
    super::ssr::call(
        |b: Arc<dyn AdminBackend>, r| async move { b.set_role(&r, user_id, role).await },
    )
    .await
}

#[server(prefix = "/api", endpoint = "set_membership")]
pub async fn set_membership(user_id: i64, team_id: i64, member: bool) -> Result<(), AppError> {
    use std::sync::Arc;
    super::ssr::call(|b: Arc<dyn AdminBackend>, r| async move {
        b.set_membership(&r, user_id, team_id, member).await
    })
    .await
}

#[server(prefix = "/api", endpoint = "set_disabled")]
pub async fn set_disabled(user_id: i64, disabled: bool) -> Result<(), AppError> {
    use std::sync::Arc;
    super::ssr::call(|b: Arc<dyn AdminBackend>, r| async move {
        b.set_disabled(&r, user_id, disabled).await
    })
    .await
}

/// Sets someone else's password (they forgot theirs); their sessions end.
#[server(prefix = "/api", endpoint = "reset_password")]
pub async fn reset_password(user_id: i64, password: String) -> Result<(), AppError> {
    use std::sync::Arc;
    super::ssr::call(|b: Arc<dyn AdminBackend>, r| async move {
        b.reset_password(&r, user_id, password).await
    })
    .await
}

/// Purges a team's storage: the checkpoints of its ended jobs (their
/// trained models stay) and every stored file nothing has referred to for
/// an hour.
#[server(prefix = "/api", endpoint = "purge_storage")]
pub async fn purge_storage(team_id: i64) -> Result<PurgeResult, AppError> {
    use std::sync::Arc;
    super::ssr::call(
        |b: Arc<dyn AdminBackend>, r| async move { b.purge_storage(&r, team_id).await },
    )
    .await
}
