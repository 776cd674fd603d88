//! OpenAI's error body, `{"error": {"message", "type", "param", "code"}}`,
//! which its client libraries turn into their typed exceptions
//! (`AuthenticationError`, `NotFoundError`, `BadRequestError`…). Every
//! `/v1` route answers its refusals in this shape; internals go to the log.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hone_app::api::AppError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// OpenAI's `type`: `invalid_request_error`, `server_error`…
    pub kind: &'static str,
    pub code: Option<String>,
    pub message: String,
    /// The request field at fault, dotted (`method.supervised.hyperparameters.n_epochs`).
    pub param: Option<String>,
    /// Seconds a client should wait before trying again (429s).
    pub retry_after: Option<u64>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind: if status.is_server_error() {
                "server_error"
            } else {
                "invalid_request_error"
            },
            code: Some(code.to_owned()),
            message: message.into(),
            param: None,
            retry_after: None,
        }
    }

    pub fn with_retry_after(mut self, secs: u64) -> ApiError {
        self.retry_after = Some(secs.max(1));
        self
    }

    pub fn with_param(mut self, param: impl Into<String>) -> ApiError {
        self.param = Some(param.into());
        self
    }

    pub fn unauthenticated(message: &str) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "invalid_api_key", message)
    }

    pub fn bad_request(param: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_value", message).with_param(param)
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("No such {what} in this API key's project."),
        )
    }

    /// A failure that is the server's: logged, and the client told so.
    pub fn from_internal(e: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %e, "internal error in the API");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "Something went wrong on the server. It has been logged; please try again.",
        )
    }
}

impl From<crate::error::Error> for ApiError {
    fn from(e: crate::error::Error) -> ApiError {
        use crate::error::Error;
        match e {
            Error::Storage(crate::storage::Error::TooLarge { limit }) => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "file_too_large",
                format!(
                    "The file is larger than this server's upload limit of {} ({limit} bytes).",
                    hone_app::format::bytes(limit as i64)
                ),
            ),
            Error::Storage(crate::storage::Error::Interrupted(why)) => {
                tracing::info!(error = %why, "API upload interrupted");
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "upload_interrupted",
                    "The upload was interrupted before it finished. Nothing was saved; please try again.",
                )
            }
            other => AppError::from(other).into(),
        }
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> ApiError {
        let message = e.to_string();
        match e {
            AppError::Unauthenticated | AppError::BadCredentials => {
                ApiError::unauthenticated(&message)
            }
            AppError::Forbidden => ApiError::new(
                StatusCode::FORBIDDEN,
                "permission_denied",
                "The API key's owner may not do that in this project (their role does not allow it).",
            ),
            AppError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", message),
            AppError::Invalid { field, message } => ApiError::bad_request(&field, message),
            AppError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            AppError::TooManyAttempts { .. } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded", message)
            }
            AppError::Busy(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server_busy", message)
            }
            AppError::Internal | AppError::Transport(_) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                message,
            ),
        }
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(e: sea_orm::DbErr) -> ApiError {
        crate::error::Error::from(e).into()
    }
}

impl From<crate::storage::Error> for ApiError {
    fn from(e: crate::storage::Error) -> ApiError {
        crate::error::Error::from(e).into()
    }
}

impl From<serde_json::Error> for ApiError {
    fn from(e: serde_json::Error) -> ApiError {
        crate::error::Error::from(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(serde_json::json!({
                "error": {
                    "message": self.message,
                    "type": self.kind,
                    "param": self.param,
                    "code": self.code,
                }
            })),
        )
            .into_response();
        // A refused upload's body is left unread: the connection cannot
        // carry another request, so say so (clients then open a new one).
        // Too many requests: OpenAI's clients wait this long and retry.
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(self.retry_after.unwrap_or(1)),
            );
        }
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        response
    }
}
