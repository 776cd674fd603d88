//! The `jobs` table: one fine-tuning job, its lease and its progress.

use hone_app::api::JobState;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "jobs")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub project_id: i64,
    /// `None` only while an API job waits for its files' checks.
    pub dataset_version_id: Option<i64>,
    pub created_by: i64,
    pub base_model: String,
    pub method: StoredMethod,
    /// `hone_protocol::JobSpec` as JSON.
    #[sea_orm(column_type = "Text")]
    pub spec: String,
    pub state: StoredState,
    pub attempts: i32,
    pub max_attempts: i32,
    pub worker_id: Option<String>,
    pub lease_expires_ms: Option<i64>,
    /// `hone_protocol::Device` as JSON.
    #[sea_orm(column_type = "Text", nullable)]
    pub device: Option<String>,
    pub step: Option<i64>,
    pub total_steps: Option<i64>,
    pub checkpoint_step: Option<i64>,
    pub failure_cause: Option<StoredCause>,
    #[sea_orm(column_type = "Text", nullable)]
    pub failure_reason: Option<String>,
    /// `hone_protocol::Outcome` as JSON.
    #[sea_orm(column_type = "Text", nullable)]
    pub outcome: Option<String>,
    pub tokens_per_s: Option<f64>,
    pub created_at: i64,
    pub queued_at: Option<i64>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub updated_at: i64,
    /// API jobs: the files they were made from (`file-{id}`).
    pub training_file_id: Option<i64>,
    pub validation_file_id: Option<i64>,
    /// The validation file's version, used whole as the validation split.
    pub validation_dataset_version_id: Option<i64>,
    /// The split's seed, as given to the API (a decimal u64).
    pub seed: Option<String>,
    pub suffix: Option<String>,
    /// `ft:{base}:{team}:{suffix}:ftjob-{id}`, set on success.
    pub fine_tuned_model: Option<String>,
    /// `crate::openai::jobs::Request` as JSON: what the API asked for,
    /// applied once the files are checked.
    #[sea_orm(column_type = "Text", nullable)]
    pub api_request: Option<String>,
    /// Set by admins; higher goes first (0 by default).
    pub priority: i32,
    /// The worker slot the scheduler gave this queued job to.
    pub assigned_worker: Option<String>,
    /// Runs on a borrowed device: may be asked to give it back.
    pub preemptible: bool,
    /// A stop asked of the running job ([`StopRequest`]).
    pub stop_request: Option<StopRequest>,
    /// `crate::jobs::schedule::Wait` as the scheduler last wrote it (JSON).
    #[sea_orm(column_type = "Text", nullable)]
    pub wait_reason: Option<String>,
    /// Its place among the waiting jobs (0: next), as last decided.
    pub queue_position: Option<i32>,
    /// The engine's memory estimate per kind of device (NULL: cannot run
    /// there) and the ETA's upper bound in hours, fixed when queued.
    pub needs_cpu_bytes: Option<i64>,
    pub needs_gpu_bytes: Option<i64>,
    pub hours_cpu: Option<f64>,
    pub hours_gpu: Option<f64>,
    /// Training, or the evaluation of a trained model.
    pub kind: JobKind,
    /// An evaluation's training job.
    pub source_job_id: Option<i64>,
    /// When it was deleted (its checkpoints, artifacts and events are
    /// gone; the row stays for the device time it used). Reads treat a
    /// deleted job as absent.
    pub deleted_at: Option<i64>,
}

/// What a job runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum JobKind {
    /// `hone-train train`: [`hone_protocol::JobSpec`] in `spec`.
    #[sea_orm(string_value = "train")]
    Train,
    /// `hone-train evaluate` of the training job `source_job_id`:
    /// [`hone_protocol::evaluation::EvalSpec`] in `spec`.
    #[sea_orm(string_value = "evaluate")]
    Evaluate,
    /// `hone-train export` of an approved version's training job
    /// `source_job_id`: the merged folder and GGUF files;
    /// [`crate::publishing::ExportSpec`] in `spec`.
    #[sea_orm(string_value = "export")]
    Export,
}

/// Why a running job's worker is asked to stop it (checkpoint first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum StopRequest {
    /// It borrowed its device and a team within its guarantee needs it:
    /// back to the queue.
    #[sea_orm(string_value = "preempt")]
    Preempt,
    /// An administrator paused it: it waits, paused, until resumed.
    #[sea_orm(string_value = "pause")]
    Pause,
}

/// A job state as stored, with OpenAI's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum StoredState {
    #[sea_orm(string_value = "validating_files")]
    ValidatingFiles,
    #[sea_orm(string_value = "queued")]
    Queued,
    #[sea_orm(string_value = "running")]
    Running,
    #[sea_orm(string_value = "cancelling")]
    Cancelling,
    #[sea_orm(string_value = "paused")]
    Paused,
    #[sea_orm(string_value = "succeeded")]
    Succeeded,
    #[sea_orm(string_value = "failed")]
    Failed,
    #[sea_orm(string_value = "cancelled")]
    Cancelled,
}

impl From<StoredState> for JobState {
    fn from(s: StoredState) -> JobState {
        match s {
            StoredState::ValidatingFiles => JobState::ValidatingFiles,
            StoredState::Queued => JobState::Queued,
            StoredState::Running => JobState::Running,
            StoredState::Cancelling => JobState::Cancelling,
            StoredState::Paused => JobState::Paused,
            StoredState::Succeeded => JobState::Succeeded,
            StoredState::Failed => JobState::Failed,
            StoredState::Cancelled => JobState::Cancelled,
        }
    }
}

impl From<JobState> for StoredState {
    fn from(s: JobState) -> StoredState {
        match s {
            JobState::ValidatingFiles => StoredState::ValidatingFiles,
            JobState::Queued => StoredState::Queued,
            JobState::Running => StoredState::Running,
            JobState::Cancelling => StoredState::Cancelling,
            JobState::Paused => StoredState::Paused,
            JobState::Succeeded => StoredState::Succeeded,
            JobState::Failed => StoredState::Failed,
            JobState::Cancelled => StoredState::Cancelled,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum StoredMethod {
    #[sea_orm(string_value = "lora")]
    Lora,
    #[sea_orm(string_value = "qlora")]
    Qlora,
    #[sea_orm(string_value = "full")]
    Full,
}

impl From<StoredMethod> for hone_protocol::Method {
    fn from(m: StoredMethod) -> Self {
        match m {
            StoredMethod::Lora => hone_protocol::Method::Lora,
            StoredMethod::Qlora => hone_protocol::Method::Qlora,
            StoredMethod::Full => hone_protocol::Method::Full,
        }
    }
}

impl From<hone_protocol::Method> for StoredMethod {
    fn from(m: hone_protocol::Method) -> Self {
        match m {
            hone_protocol::Method::Lora => StoredMethod::Lora,
            hone_protocol::Method::Qlora => StoredMethod::Qlora,
            hone_protocol::Method::Full => StoredMethod::Full,
        }
    }
}

/// Who can fix a failure: the person's input, or the system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum StoredCause {
    #[sea_orm(string_value = "user")]
    User,
    #[sea_orm(string_value = "system")]
    System,
}

impl From<StoredCause> for hone_protocol::Cause {
    fn from(c: StoredCause) -> Self {
        match c {
            StoredCause::User => hone_protocol::Cause::User,
            StoredCause::System => hone_protocol::Cause::System,
        }
    }
}

impl From<hone_protocol::Cause> for StoredCause {
    fn from(c: hone_protocol::Cause) -> Self {
        match c {
            hone_protocol::Cause::User => StoredCause::User,
            hone_protocol::Cause::System => StoredCause::System,
        }
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
