//! The contract between the pages and the server: the values pages show, the
//! typed error every call can return, and the server functions themselves,
//! one module per feature.
//!
//! Server function bodies only forward to a backend trait (one per feature)
//! that the server crate implements and provides as context, so `app` stays
//! free of database and storage code and builds for wasm32 with none of it.
//! What a user may do is decided on the server (`server/src/policy.rs`);
//! pages only show what the server says is allowed (`can_write` flags).

use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

mod account;
mod admin;
mod datasets;
mod jobs;
mod keys;
mod projects;
mod queue;
mod reviews;
mod session;

pub use account::*;
pub use admin::*;
pub use datasets::*;
pub use jobs::*;
pub use keys::*;
pub use projects::*;
pub use queue::*;
pub use reviews::*;
pub use session::*;

/// A person's role. Checks name the roles; the order matters nowhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Expert,
    Reviewer,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Expert, Role::Reviewer, Role::Admin];

    /// The lower-case name stored in the database and used in forms and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Expert => "expert",
            Role::Reviewer => "reviewer",
            Role::Admin => "admin",
        }
    }

    /// The name shown to people.
    pub fn label(self) -> &'static str {
        match self {
            Role::Expert => "Domain expert",
            Role::Reviewer => "Reviewer",
            Role::Admin => "Admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentUser {
    pub id: i64,
    pub username: String,
    pub role: Role,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Team {
    pub id: i64,
    pub name: String,
}

/// Every way a call can fail, in words a person can act on. Internals never
/// travel to the client: the server logs them and sends `Internal`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    #[error("Please sign in first.")]
    Unauthenticated,
    #[error("You do not have permission to do that.")]
    Forbidden,
    #[error("Not found: {0}.")]
    NotFound(String),
    /// A form field is wrong; `field` names the input so the page can show the
    /// message beside it.
    #[error("{message}")]
    Invalid { field: String, message: String },
    #[error("{0}")]
    Conflict(String),
    #[error("Wrong username or password.")]
    BadCredentials,
    #[error("Too many failed sign-in attempts. Wait {} and try again.", wait_words(*seconds))]
    TooManyAttempts { seconds: i64 },
    /// The server is at a limit it keeps to stay up (uploads at once…).
    #[error("{0}")]
    Busy(String),
    #[error("Something went wrong on the server. It has been logged; please try again.")]
    Internal,
    #[error("Could not reach the server: {0}")]
    Transport(String),
}

/// A wait in words: "3 seconds", "2 minutes".
fn wait_words(seconds: i64) -> String {
    match seconds {
        ..=1 => "1 second".into(),
        2..=90 => format!("{seconds} seconds"),
        _ => format!("{} minutes", (seconds + 59) / 60),
    }
}

impl AppError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        AppError::Invalid {
            field: field.to_owned(),
            message: message.into(),
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            AppError::Unauthenticated | AppError::BadCredentials => 401,
            AppError::Forbidden => 403,
            AppError::NotFound(_) => 404,
            AppError::Invalid { .. } => 422,
            AppError::Conflict(_) => 409,
            AppError::TooManyAttempts { .. } => 429,
            AppError::Busy(_) => 503,
            AppError::Internal | AppError::Transport(_) => 500,
        }
    }

    /// A stable, machine-readable code (used by the HTTP API and tests).
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Unauthenticated => "unauthenticated",
            AppError::Forbidden => "forbidden",
            AppError::NotFound(_) => "not_found",
            AppError::Invalid { .. } => "invalid",
            AppError::Conflict(_) => "conflict",
            AppError::BadCredentials => "bad_credentials",
            AppError::TooManyAttempts { .. } => "too_many_attempts",
            AppError::Busy(_) => "busy",
            AppError::Internal => "internal",
            AppError::Transport(_) => "transport",
        }
    }

    /// The message for one form field, if this error is about it.
    pub fn for_field(&self, name: &str) -> Option<String> {
        match self {
            AppError::Invalid { field, message } if field == name => Some(message.clone()),
            _ => None,
        }
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        let error = match value {
            ServerFnErrorErr::Args(_) | ServerFnErrorErr::MissingArg(_) => {
                AppError::invalid("form", "The form was incomplete. Fill in every field.")
            }
            other => AppError::Transport(other.to_string()),
        };
        // On the server this runs before the function body could set a
        // status: without this a malformed form would be answered 500.
        #[cfg(feature = "ssr")]
        ssr::set_status(&error);
        error
    }
}

#[cfg(feature = "ssr")]
pub use ssr::RequestParts;

#[cfg(feature = "ssr")]
mod ssr {
    use super::AppError;
    use leptos::prelude::use_context;
    use std::sync::Arc;

    pub type RequestParts = http::request::Parts;

    /// Runs one backend call for a server function: finds the feature's
    /// backend (`B`, a trait object the server provides as context) and the
    /// request, and turns an error into the right HTTP status. Every backend
    /// method authenticates the request and checks authorisation itself: a
    /// page is never trusted to have hidden a button.
    pub(crate) async fn call<B, T, F, Fut>(f: F) -> Result<T, AppError>
    where
        B: ?Sized + Send + Sync + 'static,
        F: FnOnce(Arc<B>, RequestParts) -> Fut,
        Fut: std::future::Future<Output = Result<T, AppError>>,
    {
        let backend = use_context::<Arc<B>>().ok_or(AppError::Internal)?;
        let parts = use_context::<RequestParts>().ok_or(AppError::Internal)?;
        let result = f(backend, parts).await;
        if let Err(e) = &result {
            set_status(e);
        }
        result
    }

    /// Answers the current request with `error`'s HTTP status.
    pub(crate) fn set_status(error: &AppError) {
        if let Some(options) = use_context::<leptos_axum::ResponseOptions>() {
            if let Ok(status) = http::StatusCode::from_u16(error.status()) {
                options.set_status(status);
            }
            if let AppError::TooManyAttempts { seconds } = error {
                if let Ok(v) = http::HeaderValue::from_str(&seconds.to_string()) {
                    options.insert_header(http::header::RETRY_AFTER, v);
                }
            }
        }
    }
}
