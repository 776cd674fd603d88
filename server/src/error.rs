//! The server's one error type. Handlers and backends return
//! [`Result`]; database, storage, model and session failures convert into
//! it with `?`, and it converts once — into the pages' [`AppError`] (logging
//! internals, which never reach the client) or into an HTTP response.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hone_app::api::AppError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A failure the person can act on (bad input, not found, forbidden…).
    #[error(transparent)]
    App(#[from] AppError),
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error("storage: {0}")]
    Storage(#[from] crate::storage::Error),
    #[error("model files: {0}")]
    Model(#[from] crate::models::ModelError),
    #[error("session store: {0}")]
    Session(#[from] tower_sessions::session::Error),
    #[error("background task: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("stored data: {0}")]
    Json(#[from] serde_json::Error),
    /// Anything else that is the server's fault, described for the log.
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn internal(why: impl std::fmt::Display) -> Error {
        Error::Internal(why.to_string())
    }
}

impl From<Error> for AppError {
    fn from(e: Error) -> AppError {
        match e {
            Error::App(e) => e,
            Error::Model(crate::models::ModelError::Unknown(name)) => {
                AppError::NotFound(format!("model {name}"))
            }
            other => {
                tracing::error!(error = %other, "internal error");
                AppError::Internal
            }
        }
    }
}

/// A refusal in the JSON shape every plain HTTP route answers with.
pub fn refuse(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        Json(serde_json::json!({ "code": code, "message": message })),
    )
        .into_response()
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match self {
            Error::Storage(crate::storage::Error::TooLarge { limit }) => {
                let mut r = refuse(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!(
                        "The file is larger than the upload limit of {}.",
                        hone_app::format::bytes(limit as i64)
                    ),
                );
                // The rest of the body is left unread: this connection
                // cannot carry another request.
                r.headers_mut().insert(
                    axum::http::header::CONNECTION,
                    axum::http::HeaderValue::from_static("close"),
                );
                r
            }
            Error::Storage(crate::storage::Error::Interrupted(e)) => {
                tracing::info!(error = %e, "upload interrupted");
                refuse(
                    StatusCode::BAD_REQUEST,
                    "interrupted",
                    "The upload was interrupted before it finished. Nothing was saved; please try again.".into(),
                )
            }
            other => {
                let e = AppError::from(other);
                let status =
                    StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let mut body = serde_json::json!({ "code": e.code(), "message": e.to_string() });
                if let AppError::Invalid { field, .. } = &e {
                    body["field"] = field.clone().into();
                }
                (status, Json(body)).into_response()
            }
        }
    }
}
