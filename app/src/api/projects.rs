//! Projects: the dashboard, a new project, and one project's page.

use super::{AppError, CurrentUser, DatasetSummary, JobSummary, ModelInfo, Team};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

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
    /// The server's policy allows this user to create projects.
    pub can_create_projects: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectPage {
    pub user: CurrentUser,
    pub project: ProjectSummary,
    /// The server's policy allows this user to upload and save data here.
    pub can_write: bool,
    pub datasets: Vec<DatasetSummary>,
    /// Training jobs, newest first.
    pub jobs: Vec<JobSummary>,
    /// The versions the successful ones made, newest first.
    pub versions: Vec<super::VersionRow>,
    /// The server's policy allows this user to launch and cancel jobs.
    pub can_train: bool,
    /// Base models, the default (built-in demo) first.
    pub models: Vec<ModelInfo>,
    /// The largest upload the server accepts, in bytes.
    pub max_upload_bytes: u64,
}

#[cfg(feature = "ssr")]
pub use backend::ProjectsBackend;

#[cfg(feature = "ssr")]
mod backend {
    use super::*;
    use crate::api::RequestParts;

    #[async_trait::async_trait]
    pub trait ProjectsBackend: Send + Sync + 'static {
        async fn dashboard(&self, req: &RequestParts) -> Result<Dashboard, AppError>;
        async fn create_project(
            &self,
            req: &RequestParts,
            team_id: i64,
            name: String,
        ) -> Result<i64, AppError>;
        async fn project(&self, req: &RequestParts, id: i64) -> Result<ProjectPage, AppError>;
        async fn delete_project(
            &self,
            req: &RequestParts,
            id: i64,
            confirm: String,
        ) -> Result<u32, AppError>;
    }
}

#[server(prefix = "/api", endpoint = "dashboard")]
pub async fn load_dashboard() -> Result<Dashboard, AppError> {
    use std::sync::Arc;
    super::ssr::call(|b: Arc<dyn ProjectsBackend>, r| async move { b.dashboard(&r).await }).await
}

#[server(prefix = "/api", endpoint = "create_project")]
pub async fn create_project(team_id: i64, name: String) -> Result<i64, AppError> {
    use std::sync::Arc;
    super::ssr::call(|b: Arc<dyn ProjectsBackend>, r| async move {
        b.create_project(&r, team_id, name).await
    })
    .await
}

#[server(prefix = "/api", endpoint = "project")]
pub async fn project(id: i64) -> Result<ProjectPage, AppError> {
    use std::sync::Arc;
    super::ssr::call(|b: Arc<dyn ProjectsBackend>, r| async move { b.project(&r, id).await }).await
}

/// Deletes a project with every version, job, dataset and file in it
/// (`confirm` is its name, typed); how many stored files were freed.
/// Refused while a job in it has not ended or a version is approved.
#[server(prefix = "/api", endpoint = "delete_project")]
pub async fn delete_project(id: i64, confirm: String) -> Result<u32, AppError> {
    use std::sync::Arc;
    super::ssr::call(|b: Arc<dyn ProjectsBackend>, r| async move {
        b.delete_project(&r, id, confirm).await
    })
    .await
}
