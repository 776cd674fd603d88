//! The contract between the pages and the server: the values pages show, the
//! typed error every call can return, and the server functions themselves.
//!
//! Server function bodies only forward to a [`Backend`] that the server crate
//! provides as context, so `app` stays free of database and storage code and
//! builds for wasm32 with none of it.

use leptos::prelude::*;
use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

/// What a user may do. The order matters nowhere: checks name the roles.
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

    /// Experts and admins create projects and upload data; reviewers read.
    pub fn can_write_projects(self) -> bool {
        matches!(self, Role::Expert | Role::Admin)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentUser {
    pub id: i64,
    pub username: String,
    pub role: Role,
}

/// Who is signed in, and whether the instance still needs its first admin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub setup_needed: bool,
    pub user: Option<CurrentUser>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Team {
    pub id: i64,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSummary {
    pub id: i64,
    pub name: String,
    pub size: i64,
    pub sha256: String,
    pub uploaded_by: String,
    /// Unix seconds.
    pub uploaded_at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectSummary {
    pub id: i64,
    pub name: String,
    pub team: Team,
    pub files: Vec<FileSummary>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dashboard {
    pub user: CurrentUser,
    pub teams: Vec<Team>,
    pub projects: Vec<ProjectSummary>,
}

/// One immutable dataset version: a source file checked and split by the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetSummary {
    pub id: i64,
    pub name: String,
    pub source_name: String,
    pub format: String,
    pub examples: i64,
    pub rejected: i64,
    /// The person chose to leave the rejected examples out.
    pub dropped_rejected: bool,
    pub warnings: i64,
    pub seed: String,
    pub ratios: String,
    /// Examples in train, validation, test.
    pub counts: [i64; 3],
    /// The model whose tokenizer counted the tokens.
    pub base_model: Option<String>,
    pub created_by: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// One dataset version in full: `/projects/{project}/datasets/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetPage {
    pub user: CurrentUser,
    pub project_id: i64,
    pub project_name: String,
    pub dataset: DatasetSummary,
    pub source_sha256: String,
    /// SHA-256 of train.jsonl, validation.jsonl, test.jsonl.
    pub split_sha256: [String; 3],
    pub errors: i64,
    /// Findings per code as the server counted them, most frequent first.
    pub finding_counts: Vec<(String, u64)>,
    /// The server's statistics (absent for versions saved before they were kept).
    pub stats: Option<hone_dataset::check::Stats>,
}

/// A base model people can check data against and (later) fine-tune.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Its folder name in the models directory (`hone-demo` is built in).
    pub name: String,
    /// Tokens the model reads at most; longer examples are errors.
    pub context_length: Option<u32>,
}

/// A model's tokenizer files, as the browser needs them to count tokens:
/// `GET /api/models/{name}/tokenizer`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizerFiles {
    pub name: String,
    pub context_length: Option<u32>,
    /// `tokenizer.json`, verbatim.
    pub tokenizer: String,
    /// `tokenizer_config.json`, verbatim (special tokens, chat template).
    pub tokenizer_config: Option<String>,
    /// `chat_template.jinja`, when the folder has one.
    pub chat_template: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectPage {
    pub user: CurrentUser,
    pub project: ProjectSummary,
    pub datasets: Vec<DatasetSummary>,
    /// Base models, the default (built-in demo) first.
    pub models: Vec<ModelInfo>,
    /// The largest upload the server accepts, in bytes.
    pub max_upload_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub role: Role,
    pub teams: Vec<Team>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminOverview {
    pub user: CurrentUser,
    pub users: Vec<UserRow>,
    pub teams: Vec<Team>,
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
    #[error("Too many failed sign-in attempts. Wait {minutes} minute(s) and try again.")]
    TooManyAttempts { minutes: i64 },
    #[error("Something went wrong on the server. It has been logged; please try again.")]
    Internal,
    #[error("Could not reach the server: {0}")]
    Transport(String),
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
pub use ssr::{Backend, RequestParts};

#[cfg(feature = "ssr")]
mod ssr {
    use super::*;
    use std::sync::Arc;

    pub type RequestParts = http::request::Parts;

    /// What the server implements for the pages. Every method receives the
    /// request, authenticates it and checks authorisation itself: a page is
    /// never trusted to have hidden a button.
    #[async_trait::async_trait]
    pub trait Backend: Send + Sync + 'static {
        async fn session_info(&self, req: &RequestParts) -> Result<SessionInfo, AppError>;
        async fn setup_admin(
            &self,
            req: &RequestParts,
            username: String,
            password: String,
            team: String,
        ) -> Result<(), AppError>;
        async fn login(
            &self,
            req: &RequestParts,
            username: String,
            password: String,
        ) -> Result<(), AppError>;
        async fn logout(&self, req: &RequestParts) -> Result<(), AppError>;
        async fn dashboard(&self, req: &RequestParts) -> Result<Dashboard, AppError>;
        async fn create_project(
            &self,
            req: &RequestParts,
            team_id: i64,
            name: String,
        ) -> Result<i64, AppError>;
        async fn project(&self, req: &RequestParts, id: i64) -> Result<ProjectPage, AppError>;
        async fn dataset(&self, req: &RequestParts, id: i64) -> Result<DatasetPage, AppError>;
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
    }

    /// Runs one backend call for a server function: finds the backend and
    /// the request, and turns an error into the right HTTP status.
    pub(crate) async fn call<T, F, Fut>(f: F) -> Result<T, AppError>
    where
        F: FnOnce(Arc<dyn Backend>, RequestParts) -> Fut,
        Fut: std::future::Future<Output = Result<T, AppError>>,
    {
        let backend = use_context::<Arc<dyn Backend>>().ok_or(AppError::Internal)?;
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
        }
    }
}

#[server(prefix = "/api", endpoint = "session")]
pub async fn load_session() -> Result<SessionInfo, AppError> {
    ssr::call(|b, r| async move { b.session_info(&r).await }).await
}

#[server(prefix = "/api", endpoint = "setup")]
pub async fn setup_admin(username: String, password: String, team: String) -> Result<(), AppError> {
    ssr::call(|b, r| async move { b.setup_admin(&r, username, password, team).await }).await
}

#[server(prefix = "/api", endpoint = "login")]
pub async fn login(username: String, password: String) -> Result<(), AppError> {
    ssr::call(|b, r| async move { b.login(&r, username, password).await }).await
}

#[server(prefix = "/api", endpoint = "logout")]
pub async fn logout() -> Result<(), AppError> {
    ssr::call(|b, r| async move { b.logout(&r).await }).await
}

#[server(prefix = "/api", endpoint = "dashboard")]
pub async fn load_dashboard() -> Result<Dashboard, AppError> {
    ssr::call(|b, r| async move { b.dashboard(&r).await }).await
}

#[server(prefix = "/api", endpoint = "create_project")]
pub async fn create_project(team_id: i64, name: String) -> Result<i64, AppError> {
    ssr::call(|b, r| async move { b.create_project(&r, team_id, name).await }).await
}

#[server(prefix = "/api", endpoint = "project")]
pub async fn project(id: i64) -> Result<ProjectPage, AppError> {
    ssr::call(|b, r| async move { b.project(&r, id).await }).await
}

#[server(prefix = "/api", endpoint = "dataset")]
pub async fn dataset(id: i64) -> Result<DatasetPage, AppError> {
    ssr::call(|b, r| async move { b.dataset(&r, id).await }).await
}

#[server(prefix = "/api", endpoint = "admin_overview")]
pub async fn load_admin() -> Result<AdminOverview, AppError> {
    ssr::call(|b, r| async move { b.admin_overview(&r).await }).await
}

#[server(prefix = "/api", endpoint = "create_user")]
pub async fn create_user(
    username: String,
    password: String,
    role: String,
    team_id: i64,
) -> Result<(), AppError> {
    ssr::call(|b, r| async move { b.create_user(&r, username, password, role, team_id).await })
        .await
}

#[server(prefix = "/api", endpoint = "create_team")]
pub async fn create_team(name: String) -> Result<(), AppError> {
    ssr::call(|b, r| async move { b.create_team(&r, name).await }).await
}

#[server(prefix = "/api", endpoint = "set_role")]
pub async fn set_role(user_id: i64, role: String) -> Result<(), AppError> {
    ssr::call(|b, r| async move { b.set_role(&r, user_id, role).await }).await
}

#[server(prefix = "/api", endpoint = "set_membership")]
pub async fn set_membership(user_id: i64, team_id: i64, member: bool) -> Result<(), AppError> {
    ssr::call(|b, r| async move { b.set_membership(&r, user_id, team_id, member).await }).await
}
