//! Who is signed in: the first-run setup, sign-in and sign-out.

use super::{AppError, CurrentUser};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// Who is signed in, and whether the instance still needs its first admin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub setup_needed: bool,
    /// The setup needs the token from the server's log (the server is
    /// reachable beyond this machine).
    pub setup_token_required: bool,
    pub user: Option<CurrentUser>,
}

#[cfg(feature = "ssr")]
pub use backend::SessionBackend;

#[cfg(feature = "ssr")]
mod backend {
    use super::*;
    use crate::api::RequestParts;

    /// Sessions and accounts, as the server implements them.
    #[async_trait::async_trait]
    pub trait SessionBackend: Send + Sync + 'static {
        async fn session_info(&self, req: &RequestParts) -> Result<SessionInfo, AppError>;
        async fn setup_admin(
            &self,
            req: &RequestParts,
            username: String,
            password: String,
            team: String,
            token: String,
        ) -> Result<(), AppError>;
        async fn login(
            &self,
            req: &RequestParts,
            username: String,
            password: String,
        ) -> Result<(), AppError>;
        async fn logout(&self, req: &RequestParts) -> Result<(), AppError>;
    }
}

#[server(prefix = "/api", endpoint = "session")]
pub async fn load_session() -> Result<SessionInfo, AppError> {
    use std::sync::Arc;
    super::ssr::call(|b: Arc<dyn SessionBackend>, r| async move { b.session_info(&r).await }).await
}

#[server(prefix = "/api", endpoint = "setup")]
pub async fn setup_admin(
    username: String,
    password: String,
    team: String,
    #[server(default)] token: String,
) -> Result<(), AppError> {
    use std::sync::Arc;
    super::ssr::call(|b: Arc<dyn SessionBackend>, r| async move {
        b.setup_admin(&r, username, password, team, token).await
    })
    .await
}

#[server(prefix = "/api", endpoint = "login")]
pub async fn login(username: String, password: String) -> Result<(), AppError> {
    use std::sync::Arc;
    super::ssr::call(|b: Arc<dyn SessionBackend>, r| async move {
        b.login(&r, username, password).await
    })
    .await
}

#[server(prefix = "/api", endpoint = "logout")]
pub async fn logout() -> Result<(), AppError> {
    use std::sync::Arc;
    super::ssr::call(|b: Arc<dyn SessionBackend>, r| async move { b.logout(&r).await }).await
}
