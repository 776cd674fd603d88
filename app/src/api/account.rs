//! Settings → Account: changing one's password, and the places one is
//! signed in (each session can be signed out from here).

use super::{AppError, CurrentUser};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// One place the person is signed in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRow {
    /// An opaque handle (a hash of the session's id, never the id itself).
    pub id: String,
    /// When they signed in (Unix seconds).
    pub signed_in_at: Option<i64>,
    /// When the session was last used (Unix seconds).
    pub last_active: i64,
    /// The session this page was loaded with.
    pub current: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountPage {
    pub user: CurrentUser,
    /// Newest first.
    pub sessions: Vec<SessionRow>,
    /// A session ends this long after sign-in, however busy (hours).
    pub session_hours: i64,
    /// …and after this long unused (hours).
    pub idle_hours: i64,
}

#[cfg(feature = "ssr")]
pub use backend::AccountBackend;

#[cfg(feature = "ssr")]
mod backend {
    use super::*;
    use crate::api::RequestParts;

    #[async_trait::async_trait]
    pub trait AccountBackend: Send + Sync + 'static {
        async fn account_page(&self, req: &RequestParts) -> Result<AccountPage, AppError>;
        async fn change_password(
            &self,
            req: &RequestParts,
            current_password: String,
            new_password: String,
        ) -> Result<u64, AppError>;
        async fn revoke_session(&self, req: &RequestParts, id: String) -> Result<(), AppError>;
    }
}

#[server(prefix = "/api", endpoint = "account_page")]
pub async fn load_account() -> Result<AccountPage, AppError> {
    use std::sync::Arc;
    super::ssr::call(|b: Arc<dyn AccountBackend>, r| async move { b.account_page(&r).await }).await
}

/// Changes the signed-in person's password; answers how many other
/// sessions were signed out.
#[server(prefix = "/api", endpoint = "change_password")]
pub async fn change_password(
    current_password: String,
    new_password: String,
) -> Result<u64, AppError> {
    use std::sync::Arc;
    super::ssr::call(|b: Arc<dyn AccountBackend>, r| async move {
        b.change_password(&r, current_password, new_password).await
    })
    .await
}

#[server(prefix = "/api", endpoint = "revoke_session")]
pub async fn revoke_session(id: String) -> Result<(), AppError> {
    use std::sync::Arc;
    super::ssr::call(|b: Arc<dyn AccountBackend>, r| async move { b.revoke_session(&r, id).await })
        .await
}
