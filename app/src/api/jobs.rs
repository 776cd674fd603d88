//! Training jobs: the launch page (models, methods, settings derived from
//! the data, "does it fit?" and "how long?"), launching, one job's page
//! with its events, and cancelling. Live progress arrives over
//! Server-Sent Events from `GET /api/jobs/{id}/events` (the same
//! [`JobEvent`] JSON per message).

use super::{AppError, CurrentUser, DatasetSummary, ModelInfo};
use hone_protocol::{Cause, Device, Event, Method, TrainConfig};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// A job's state, with OpenAI's fine-tuning names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    ValidatingFiles,
    Queued,
    Running,
    /// A cancel was asked for: the run is writing its checkpoint.
    Cancelling,
    /// Stopped by an administrator (checkpointed); keeps its place and
    /// goes back to the queue when resumed.
    Paused,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 8] = [
        JobState::ValidatingFiles,
        JobState::Queued,
        JobState::Running,
        JobState::Cancelling,
        JobState::Paused,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
    ];

    /// OpenAI's name (`validating_files`, `queued`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::ValidatingFiles => "validating_files",
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Cancelling => "cancelling",
            JobState::Paused => "paused",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|j| j.as_str() == s)
    }

    /// The words shown to people.
    pub fn label(self) -> &'static str {
        match self {
            JobState::ValidatingFiles => "Checking files",
            JobState::Queued => "Waiting",
            JobState::Running => "Training",
            JobState::Cancelling => "Stopping",
            JobState::Paused => "Paused",
            JobState::Succeeded => "Finished",
            JobState::Failed => "Failed",
            JobState::Cancelled => "Cancelled",
        }
    }

    /// No more changes come: succeeded, failed or cancelled.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

/// Why a job failed, who can fix it, and what to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub cause: Cause,
    pub reason: String,
    /// What to do next, in plain words.
    pub advice: String,
}

/// One job in a list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSummary {
    pub id: i64,
    pub project_id: i64,
    /// `None` while an API job's files are still being checked.
    pub dataset_id: Option<i64>,
    pub dataset_name: String,
    pub base_model: String,
    pub method: Method,
    pub state: JobState,
    /// Optimizer steps done and planned (once the run has started).
    pub step: Option<u64>,
    pub total_steps: Option<u64>,
    /// For a waiting job: why, in plain words.
    pub waiting_reason: Option<String>,
    /// Its place among the waiting jobs (0: next), as the scheduler last
    /// decided.
    pub queue_position: Option<u64>,
    /// Set by admins; higher goes first.
    pub priority: i64,
    pub failure: Option<Failure>,
    pub created_by: String,
    /// Unix seconds.
    pub created_at: i64,
    /// An evaluation job: the training job whose model it scores.
    pub evaluates: Option<i64>,
}

/// What happened in a job, in order: the engine's events and the job's
/// own state changes. `id` is the Server-Sent Events id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    pub id: i64,
    /// Unix milliseconds when the server recorded it.
    pub at_ms: i64,
    #[serde(flatten)]
    pub body: JobEventBody,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobEventBody {
    /// A line of `hone-train train`'s output.
    Engine { event: Event },
    /// The job moved to `state`; `note` says why where that helps.
    State {
        state: JobState,
        note: Option<String>,
    },
}

/// A file the job produced (the adapter, or the full model's folder).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// Relative to the output, e.g. `adapter/adapter_model.safetensors`.
    pub path: String,
    pub size: i64,
    pub sha256: String,
}

/// `/projects/{project}/jobs/{job}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobPage {
    pub user: CurrentUser,
    pub project_id: i64,
    pub project_name: String,
    pub job: JobSummary,
    /// Every setting the run uses.
    pub config: TrainConfig,
    /// Where it runs or ran.
    pub device: Option<Device>,
    pub can_cancel: bool,
    /// The person may delete this job once it failed or was cancelled (a
    /// training job: an evaluation or export goes with its version).
    pub can_delete: bool,
    /// Everything recorded so far; newer ones arrive over the event stream.
    pub events: Vec<JobEvent>,
    /// Filled once the job has succeeded.
    pub artifacts: Vec<Artifact>,
}

/// A training method, explained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MethodInfo {
    pub method: Method,
    pub label: String,
    /// One plain sentence: what it does and when to pick it.
    pub help: String,
    /// The learning rate to start from with this method.
    pub learning_rate: f64,
}

/// A device some worker offers, with how many of its kind are there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceOffer {
    pub device: Device,
    /// Workers (slots) offering this device.
    pub slots: u32,
}

/// `/projects/{project}/datasets/{dataset}/train`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LaunchPage {
    pub user: CurrentUser,
    pub project_id: i64,
    pub project_name: String,
    pub dataset: DatasetSummary,
    pub models: Vec<ModelInfo>,
    /// The model the data was counted with, if it is available.
    pub default_model: String,
    pub methods: Vec<MethodInfo>,
    /// Settings derived from the data (epochs, learning rate, rank, batch
    /// size, `max_seq_length` from the longest example).
    pub defaults: TrainConfig,
    /// Why the defaults are what they are, one line each.
    pub reasons: Vec<String>,
    /// The devices the workers report; a job runs on one of them.
    pub devices: Vec<DeviceOffer>,
}

/// Whether a run fits one device.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceFit {
    pub device: Device,
    /// Memory a job may use there (GPU memory, or RAM for a CPU slot).
    pub available_bytes: u64,
    pub fits: bool,
}

/// The answers before launching: does it fit, and how long.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LaunchCheck {
    /// Memory the run needs (the engine's estimate).
    pub needed_bytes: u64,
    pub devices: Vec<DeviceFit>,
    /// When it fits nowhere: what to change, concretely.
    pub suggestion: Option<String>,
    /// Tokens trained on: the split's tokens × epochs.
    pub tokens: u64,
    /// A range for the training time, in seconds, with what it rests on.
    pub eta_low_s: Option<f64>,
    pub eta_high_s: Option<f64>,
    pub eta_basis: String,
}

#[cfg(feature = "ssr")]
pub use backend::JobsBackend;

#[cfg(feature = "ssr")]
mod backend {
    use super::*;
    use crate::api::RequestParts;

    #[async_trait::async_trait]
    pub trait JobsBackend: Send + Sync + 'static {
        async fn launch_page(
            &self,
            req: &RequestParts,
            dataset_id: i64,
        ) -> Result<LaunchPage, AppError>;
        async fn check_launch(
            &self,
            req: &RequestParts,
            dataset_id: i64,
            model: String,
            config: String,
        ) -> Result<LaunchCheck, AppError>;
        async fn launch_job(
            &self,
            req: &RequestParts,
            dataset_id: i64,
            model: String,
            config: String,
        ) -> Result<i64, AppError>;
        async fn job_page(&self, req: &RequestParts, id: i64) -> Result<JobPage, AppError>;
        async fn cancel_job(&self, req: &RequestParts, id: i64) -> Result<(), AppError>;
        async fn delete_job(&self, req: &RequestParts, id: i64) -> Result<u32, AppError>;
    }
}

#[server(prefix = "/api", endpoint = "launch_page")]
pub async fn load_launch_page(dataset_id: i64) -> Result<LaunchPage, AppError> {
    use std::sync::Arc;
    super::ssr::call(
        |b: Arc<dyn JobsBackend>, r| async move { b.launch_page(&r, dataset_id).await },
    )
    .await
}

/// `config`: the settings as JSON (`TrainConfig`'s field names; missing
/// ones take their defaults).
#[server(prefix = "/api", endpoint = "check_launch")]
pub async fn check_launch(
    dataset_id: i64,
    model: String,
    config: String,
) -> Result<LaunchCheck, AppError> {
    use std::sync::Arc;
    super::ssr::call(|b: Arc<dyn JobsBackend>, r| async move {
        b.check_launch(&r, dataset_id, model, config).await
    })
    .await
}

#[server(prefix = "/api", endpoint = "launch_job")]
pub async fn launch_job(dataset_id: i64, model: String, config: String) -> Result<i64, AppError> {
    use std::sync::Arc;
    super::ssr::call(|b: Arc<dyn JobsBackend>, r| async move {
        b.launch_job(&r, dataset_id, model, config).await
    })
    .await
}

#[server(prefix = "/api", endpoint = "job")]
pub async fn load_job(id: i64) -> Result<JobPage, AppError> {
    use std::sync::Arc;
    super::ssr::call(|b: Arc<dyn JobsBackend>, r| async move { b.job_page(&r, id).await }).await
}

#[server(prefix = "/api", endpoint = "cancel_job")]
pub async fn cancel_job(id: i64) -> Result<(), AppError> {
    use std::sync::Arc;
    super::ssr::call(|b: Arc<dyn JobsBackend>, r| async move { b.cancel_job(&r, id).await }).await
}

/// Deletes a training job that failed or was cancelled, with its
/// checkpoints, artifacts and log; how many stored files were freed. A
/// job that made a model version is deleted with that version.
#[server(prefix = "/api", endpoint = "delete_job")]
pub async fn delete_job(id: i64) -> Result<u32, AppError> {
    use std::sync::Arc;
    super::ssr::call(|b: Arc<dyn JobsBackend>, r| async move { b.delete_job(&r, id).await }).await
}
