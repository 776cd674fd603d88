//! API keys: the settings page that lists a person's keys, makes a new one
//! (shown once) and revokes one. A key acts as its owner in one project.

use super::{AppError, CurrentUser};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRow {
    pub id: i64,
    pub name: String,
    pub project_id: i64,
    pub project_name: String,
    /// The key's first characters, to tell keys apart (never the whole key).
    pub prefix: String,
    /// Unix seconds.
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A project a key may be made for: one of the user's teams'.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyProject {
    pub id: i64,
    pub name: String,
    pub team: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysPage {
    pub user: CurrentUser,
    /// The user's own keys, newest first.
    pub keys: Vec<ApiKeyRow>,
    pub projects: Vec<KeyProject>,
}

/// A key just made: the only time its value leaves the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewApiKey {
    pub id: i64,
    pub key: String,
}

#[cfg(feature = "ssr")]
pub use backend::KeysBackend;

#[cfg(feature = "ssr")]
mod backend {
    use super::*;
    use crate::api::RequestParts;

    #[async_trait::async_trait]
    pub trait KeysBackend: Send + Sync + 'static {
        async fn keys_page(&self, req: &RequestParts) -> Result<KeysPage, AppError>;
        async fn create_api_key(
            &self,
            req: &RequestParts,
            project_id: i64,
            name: String,
        ) -> Result<NewApiKey, AppError>;
        async fn revoke_api_key(&self, req: &RequestParts, id: i64) -> Result<(), AppError>;
    }
}

#[server(prefix = "/api", endpoint = "keys_page")]
pub async fn load_keys() -> Result<KeysPage, AppError> {
    use std::sync::Arc;
    super::ssr::call(|b: Arc<dyn KeysBackend>, r| async move { b.keys_page(&r).await }).await
}

#[server(prefix = "/api", endpoint = "create_api_key")]
pub async fn create_api_key(project_id: i64, name: String) -> Result<NewApiKey, AppError> {
    use std::sync::Arc;
    super::ssr::call(|b: Arc<dyn KeysBackend>, r| async move {
        b.create_api_key(&r, project_id, name).await
    })
    .await
}

#[server(prefix = "/api", endpoint = "revoke_api_key")]
pub async fn revoke_api_key(id: i64) -> Result<(), AppError> {
    use std::sync::Arc;
    super::ssr::call(|b: Arc<dyn KeysBackend>, r| async move { b.revoke_api_key(&r, id).await })
        .await
}
