//! Training jobs: launching (the launch page, its defaults, "does it fit?"
//! and "how long?"), a job's page, cancelling — and behind them the queue
//! (`queue`), the workers that run the engine (`worker`) and the event
//! stream to the browser (`events`).
//!
//! A job's life: `validating_files` (the dataset version and its splits
//! are checked to exist) → `queued` → `running` (claimed by a worker under
//! a lease) → `succeeded | failed | cancelled`, with `cancelling` while a
//! run checkpoints before stopping. Every transition is an event in the
//! job's log, with its time.

pub mod events;
pub mod launch;
pub mod nvml;
pub mod queue;
pub mod redact;
pub mod schedule;
pub mod scheduler;
pub mod worker;

use crate::accounts::current;
use crate::entity::job::{self, StoredState};
use crate::entity::{
    dataset_version, job_artifact, job_event, project, user, worker as worker_row,
};
use crate::error::{Error, Result};
use crate::policy::{self, Action};
use crate::state::{now, Services};
use hone_app::api::{
    AppError, Artifact, DeviceOffer, Failure, JobEvent, JobEventBody, JobPage, JobState,
    JobSummary, JobsBackend, LaunchCheck, LaunchPage, RequestParts,
};
use hone_protocol::{Cause, Device, DeviceKind, JobSpec, ModelConfig, TrainConfig, TrainError};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use std::collections::HashMap;

/// A job whose worker vanishes this many times fails instead of looping.
pub const MAX_ATTEMPTS: i32 = 3;

/// A worker that has not beaten its heart for this long is gone: a job's
/// lease (a running worker beats every third of it), and at least 6 s (an
/// idle one beats every 2 s).
pub fn worker_stale_ms(config: &crate::config::Config) -> i64 {
    (config.job_lease_ms as i64).max(6_000)
}

/// A job to record ([`Services::insert_job`]).
#[derive(Debug)]
pub(crate) struct NewJob {
    pub spec: JobSpec,
    /// `None` while an API job's files are being checked.
    pub dataset_version_id: Option<i64>,
    pub training_file_id: Option<i64>,
    pub validation_file_id: Option<i64>,
    pub seed: Option<u64>,
    pub suffix: Option<String>,
    pub api_request: Option<String>,
}

/// OpenAI's name for a fine-tuned model: `ft:{base}:{team}:{suffix}:ftjob-{id}`
/// (the team in lower case, `-` for anything but letters and digits).
pub fn fine_tuned_name(base: &str, team: &str, suffix: Option<&str>, id: i64) -> String {
    let team: String = team
        .to_lowercase()
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { '-' })
        .collect();
    format!("ft:{base}:{team}:{}:ftjob-{id}", suffix.unwrap_or(""))
}

/// A state change, as the job's log records it.
pub fn state_event(state: JobState, note: Option<String>) -> JobEventBody {
    JobEventBody::State { state, note }
}

/// What to do after a failure, in plain words (`device`: where it ran).
pub fn advice(cause: Cause, reason: &str, device: Option<&Device>) -> String {
    let lower = reason.to_lowercase();
    let oom = lower.contains("out of memory")
        || lower.contains("signal 9")
        || lower.contains("memory allocation")
        || lower.contains("cannot allocate");
    match cause {
        _ if oom => match device {
            Some(d) => format!(
                "Out of memory on {} ({}): try QLoRA, a batch size of 2, or gradient checkpointing.",
                d.name,
                launch::gib(d.memory_bytes)
            ),
            None => "Out of memory: try QLoRA, a batch size of 2, or gradient checkpointing.".into(),
        },
        Cause::User => "Change what the message names and launch again.".into(),
        Cause::System => "This is not a problem with your data: launch it again, and tell your administrator if it happens again.".into(),
    }
}

/// A setting refused by the engine's own rules, as a form error.
fn invalid(e: TrainError) -> AppError {
    match e {
        TrainError::Invalid { field, message } => {
            let text = format!("{field} {message}");
            AppError::invalid(&field, text)
        }
        other => AppError::invalid("config", other.to_string()),
    }
}

impl Services {
    /// The job and its project, if `u` may do `action` to it (the same 404
    /// for "absent" and "not yours").
    pub(crate) async fn job_with(
        &self,
        u: &user::Model,
        id: i64,
        action: Action,
    ) -> Result<(job::Model, project::Model)> {
        let what = "that job";
        let j = job::Entity::find_by_id(id)
            .filter(job::Column::DeletedAt.is_null())
            .one(&self.db)
            .await?
            .ok_or_else(|| AppError::NotFound(what.into()))?;
        let p = self.project_with(u, j.project_id, action, what).await?;
        Ok((j, p))
    }

    pub async fn readable_job(&self, u: &user::Model, id: i64) -> Result<job::Model> {
        Ok(self.job_with(u, id, Action::Read).await?.0)
    }

    /// Devices of workers that reported recently and can run jobs.
    async fn offers(&self) -> Result<Vec<DeviceOffer>> {
        let fresh = queue::db_now_ms(&self.db).await? - worker_stale_ms(&self.config);
        let rows = worker_row::Entity::find()
            .filter(worker_row::Column::HeartbeatMs.gte(fresh))
            .filter(worker_row::Column::Status.eq("ready"))
            .all(&self.db)
            .await?;
        let mut out: Vec<DeviceOffer> = Vec::new();
        for r in rows {
            let d: Device = serde_json::from_str(&r.device)?;
            match out.iter_mut().find(|o| o.device == d) {
                Some(o) => o.slots += 1,
                None => out.push(DeviceOffer {
                    device: d,
                    slots: 1,
                }),
            }
        }
        Ok(out)
    }

    /// Why a queued job waits, in plain words.
    async fn waiting_reason(&self, j: &job::Model) -> Result<String> {
        let fresh = queue::db_now_ms(&self.db).await? - worker_stale_ms(&self.config);
        let workers = worker_row::Entity::find()
            .filter(worker_row::Column::HeartbeatMs.gte(fresh))
            .all(&self.db)
            .await?;
        if workers.is_empty() {
            return Ok("No worker is running, so nothing can start. Hone's own workers start with `hone serve`; an administrator can check the server's log, or start one with `hone worker`.".into());
        }
        let ready = workers.iter().filter(|w| w.status == "ready").count();
        if ready == 0 {
            return Ok(format!("No worker can run jobs: {}", workers[0].status));
        }
        let ahead = job::Entity::find()
            .filter(job::Column::State.eq(StoredState::Queued))
            .filter(job::Column::Id.lt(j.id))
            .count(&self.db)
            .await?;
        let running = job::Entity::find()
            .filter(job::Column::State.is_in([StoredState::Running, StoredState::Cancelling]))
            .count(&self.db)
            .await?;
        Ok(match ahead {
            0 if running as usize >= ready => format!(
                "Waiting for a free device: all {ready} are busy. It starts as soon as one is free."
            ),
            0 => "Starting: a worker picks it up in a moment.".into(),
            n => format!("{n} job(s) ahead of it in the queue; {ready} device(s) work through them one job each."),
        })
    }

    pub(crate) async fn summaries_of(&self, jobs: Vec<job::Model>) -> Result<Vec<JobSummary>> {
        let names = self.usernames(jobs.iter().map(|j| j.created_by)).await?;
        let datasets: HashMap<i64, String> = dataset_version::Entity::find()
            .select_only()
            .column(dataset_version::Column::Id)
            .column(dataset_version::Column::Name)
            .filter(
                dataset_version::Column::Id.is_in(jobs.iter().filter_map(|j| j.dataset_version_id)),
            )
            .into_tuple::<(i64, String)>()
            .all(&self.db)
            .await?
            .into_iter()
            .collect();
        let mut out = Vec::with_capacity(jobs.len());
        for j in jobs {
            let state: JobState = j.state.into();
            let waiting_reason = match state {
                JobState::Queued => Some(match &j.wait_reason {
                    Some(r) => r.clone(),
                    None => self.waiting_reason(&j).await?,
                }),
                JobState::Paused => Some(
                    "paused by an administrator: it keeps its place in the queue and continues from its last checkpoint when resumed".into(),
                ),
                _ => None,
            };
            let failure = match (state, j.failure_cause, &j.failure_reason) {
                (JobState::Failed, Some(cause), Some(reason)) => {
                    let device: Option<Device> = match j.device.as_deref() {
                        Some(d) => Some(serde_json::from_str(d)?),
                        None => None,
                    };
                    Some(Failure {
                        cause: cause.into(),
                        reason: reason.clone(),
                        advice: advice(cause.into(), reason, device.as_ref()),
                    })
                }
                _ => None,
            };
            out.push(JobSummary {
                id: j.id,
                project_id: j.project_id,
                dataset_id: j.dataset_version_id,
                dataset_name: j
                    .dataset_version_id
                    .and_then(|d| datasets.get(&d).cloned())
                    .unwrap_or_else(|| "(its files are being checked)".into()),
                base_model: j.base_model.clone(),
                method: j.method.into(),
                state,
                step: j.step.map(|s| s as u64),
                total_steps: j.total_steps.map(|s| s as u64),
                waiting_reason,
                queue_position: j.queue_position.map(|p| p.max(0) as u64),
                priority: i64::from(j.priority),
                failure,
                created_by: names.get(&j.created_by).cloned().unwrap_or_default(),
                created_at: j.created_at,
                evaluates: j.source_job_id,
            });
        }
        Ok(out)
    }

    /// The project's jobs, newest first.
    pub(crate) async fn jobs_of(&self, project_id: i64) -> Result<Vec<JobSummary>> {
        let jobs = job::Entity::find()
            .filter(job::Column::ProjectId.eq(project_id))
            .filter(job::Column::Kind.eq(job::JobKind::Train))
            .filter(job::Column::DeletedAt.is_null())
            .order_by_desc(job::Column::Id)
            .limit(100)
            .all(&self.db)
            .await?;
        self.summaries_of(jobs).await
    }

    /// The model's config.json, parsed; an unknown model is a form error
    /// that lists the available ones.
    pub(crate) async fn model_config(&self, name: &str) -> Result<ModelConfig> {
        let dir = self.config.models_dir.clone();
        let owned = name.to_owned();
        let text =
            tokio::task::spawn_blocking(move || crate::models::config_json(&dir, &owned)).await?;
        let text = match text {
            Ok(t) => t,
            Err(crate::models::ModelError::Unknown(_)) => {
                let names = crate::models::names(&self.config.models_dir).join(", ");
                return Err(AppError::invalid(
                    "model",
                    format!("There is no base model named {name:?}. Available: {names}."),
                )
                .into());
            }
            Err(e) => return Err(e.into()),
        };
        ModelConfig::from_json(&text).map_err(|e| {
            AppError::invalid(
                "model",
                format!("The model {name:?} cannot be trained: {e}"),
            )
            .into()
        })
    }

    /// Settings from the page: JSON with `TrainConfig`'s names, the rest
    /// defaults; checked against the engine's ranges (422 names the field).
    fn parse_config(text: &str) -> Result<TrainConfig> {
        let c: TrainConfig = serde_json::from_str(text).map_err(|e| {
            AppError::invalid("config", format!("The settings could not be read: {e}."))
        })?;
        c.validate().map_err(invalid)?;
        Ok(c)
    }

    /// Tokens one pass over the training split holds (from the server's
    /// statistics; the mean length times the examples).
    fn train_tokens(d: &dataset_version::Model) -> Result<u64> {
        let stats = crate::datasets::stats_of(d)?;
        let mean = stats.map_or(0.0, |s| s.length.mean);
        Ok((mean * d.train_count as f64).round() as u64)
    }

    /// Tokens/s of finished jobs of `model` on `kind` devices, newest first.
    async fn measured(&self, model: &str, kind: DeviceKind) -> Result<Vec<f64>> {
        let done = job::Entity::find()
            .filter(job::Column::Kind.eq(job::JobKind::Train))
            .filter(job::Column::BaseModel.eq(model))
            .filter(job::Column::State.eq(StoredState::Succeeded))
            .filter(job::Column::TokensPerS.is_not_null())
            .order_by_desc(job::Column::Id)
            .limit(20)
            .all(&self.db)
            .await?;
        Ok(done
            .into_iter()
            .filter(|j| {
                j.device
                    .as_deref()
                    .and_then(|d| serde_json::from_str::<Device>(d).ok())
                    .is_some_and(|d| d.kind == kind)
            })
            .filter_map(|j| j.tokens_per_s)
            .take(10)
            .collect())
    }

    async fn launch_page_for(&self, req: &RequestParts, dataset_id: i64) -> Result<LaunchPage> {
        let u = self.require_user(req).await?;
        let (d, p) = self.dataset_for_training(&u, dataset_id).await?;
        let models = crate::models::list(&self.config.models_dir);
        let default_model = d
            .base_model
            .clone()
            .filter(|m| models.iter().any(|x| &x.name == m))
            .unwrap_or_else(|| crate::models::DEMO.to_owned());
        let context = models
            .iter()
            .find(|m| m.name == default_model)
            .and_then(|m| m.context_length);
        let stats = crate::datasets::stats_of(&d)?;
        let (defaults, reasons) = launch::defaults(d.train_count as u64, stats.as_ref(), context);
        let source = crate::entity::file::Entity::find_by_id(d.source_file_id)
            .one(&self.db)
            .await?
            .map(|f| f.name)
            .unwrap_or_default();
        let by = self.usernames([d.created_by]).await?;
        Ok(LaunchPage {
            user: current(&u),
            project_id: p.id,
            project_name: p.name,
            dataset: crate::datasets::summary(
                &d,
                source,
                by.get(&d.created_by).cloned().unwrap_or_default(),
                None,
            ),
            models,
            default_model,
            methods: launch::methods(),
            defaults,
            reasons,
            devices: self.offers().await?,
        })
    }

    /// The dataset version, if `u` may train on it.
    async fn dataset_for_training(
        &self,
        u: &user::Model,
        dataset_id: i64,
    ) -> Result<(dataset_version::Model, project::Model)> {
        let what = "that dataset";
        let d = dataset_version::Entity::find_by_id(dataset_id)
            .one(&self.db)
            .await?
            .ok_or_else(|| AppError::NotFound(what.into()))?;
        let p = self
            .project_with(u, d.project_id, Action::Train, what)
            .await?;
        // Trains only on what the server's check passed.
        self.ready_dataset(u, d.id).await?;
        Ok((d, p))
    }

    async fn check_launch_for(
        &self,
        req: &RequestParts,
        dataset_id: i64,
        model: String,
        config: String,
    ) -> Result<LaunchCheck> {
        let u = self.require_user(req).await?;
        let (d, _) = self.dataset_for_training(&u, dataset_id).await?;
        let mc = self.model_config(&model).await?;
        let c = Self::parse_config(&config)?;
        let devices = self.offers().await?;
        let kind = if devices.iter().any(|o| o.device.kind == DeviceKind::Cuda) {
            DeviceKind::Cuda
        } else {
            DeviceKind::Cpu
        };
        let tokens = Self::train_tokens(&d)? * c.num_train_epochs as u64;
        let measured = self.measured(&model, kind).await?;
        launch::check(&mc, &c, &devices, tokens, &measured).map_err(|e| invalid(e).into())
    }

    #[tracing::instrument(skip_all, fields(dataset_id))]
    async fn launch(
        &self,
        req: &RequestParts,
        dataset_id: i64,
        model: String,
        config: String,
    ) -> Result<i64> {
        let u = self.require_user(req).await?;
        let (d, p) = self.dataset_for_training(&u, dataset_id).await?;
        self.model_config(&model).await?;
        let c = Self::parse_config(&config)?;
        let spec = JobSpec::new(model.clone(), d.id, c);
        spec.validate().map_err(invalid)?;
        let j = self
            .insert_job(
                &u,
                &p,
                NewJob {
                    spec,
                    dataset_version_id: Some(d.id),
                    training_file_id: None,
                    validation_file_id: None,
                    seed: None,
                    suffix: None,
                    api_request: None,
                },
            )
            .await?;
        self.enqueue(&j, &d).await?;
        tracing::info!(user = %u.username, job = j.id, dataset = d.id, "job launched");
        Ok(j.id)
    }

    /// Records a new job in `validating_files` (the first entry of its
    /// log). The pages and the API both make jobs here.
    pub(crate) async fn insert_job(
        &self,
        u: &user::Model,
        p: &project::Model,
        new: NewJob,
    ) -> Result<job::Model> {
        let t = now();
        let team = crate::entity::team::Entity::find_by_id(p.team_id)
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::internal("a project's team is gone"))?;
        let mut j = job::ActiveModel {
            project_id: Set(p.id),
            dataset_version_id: Set(new.dataset_version_id),
            created_by: Set(u.id),
            base_model: Set(new.spec.base_model.clone()),
            method: Set(new.spec.method.into()),
            spec: Set(serde_json::to_string(&new.spec)?),
            state: Set(StoredState::ValidatingFiles),
            attempts: Set(0),
            max_attempts: Set(MAX_ATTEMPTS),
            created_at: Set(t),
            updated_at: Set(t),
            training_file_id: Set(new.training_file_id),
            validation_file_id: Set(new.validation_file_id),
            seed: Set(new.seed.map(|s| s.to_string())),
            suffix: Set(new.suffix.clone()),
            api_request: Set(new.api_request),
            ..Default::default()
        }
        .insert(&self.db)
        .await?;
        // Its name once it succeeds, fixed now: renaming the team later
        // does not rename what scripts already use.
        let name = fine_tuned_name(&j.base_model, &team.name, new.suffix.as_deref(), j.id);
        let mut m: job::ActiveModel = j.clone().into();
        m.fine_tuned_model = Set(Some(name.clone()));
        m.update(&self.db).await?;
        j.fine_tuned_model = Some(name);
        queue::append(
            &self.db,
            j.id,
            None,
            &state_event(JobState::ValidatingFiles, None),
        )
        .await?;
        Ok(j)
    }

    /// A `validating_files` job whose data is ready: queued, or failed if
    /// its split files are gone from storage. Only from
    /// `validating_files`: a cancel meanwhile wins.
    pub(crate) async fn enqueue(&self, j: &job::Model, d: &dataset_version::Model) -> Result<()> {
        // The splits were checked when the version was saved; what is left
        // to check is that their files are still there.
        let present =
            self.blobs.exists(&d.train_key).await? && self.blobs.exists(&d.validation_key).await?;
        if !present {
            return self
                .fail_validating(
                    j.id,
                    crate::entity::job::StoredCause::System,
                    "The dataset's split files are missing from storage: save the dataset again.",
                )
                .await;
        }
        let (needs_cpu, needs_gpu, hours_cpu, hours_gpu) = self.sizing(j, d).await;
        let t = now();
        let changed = job::Entity::update_many()
            .col_expr(job::Column::State, Expr::value(StoredState::Queued))
            .col_expr(job::Column::NeedsCpuBytes, Expr::value(needs_cpu))
            .col_expr(job::Column::NeedsGpuBytes, Expr::value(needs_gpu))
            .col_expr(job::Column::HoursCpu, Expr::value(hours_cpu))
            .col_expr(job::Column::HoursGpu, Expr::value(hours_gpu))
            .col_expr(job::Column::QueuedAt, Expr::value(t))
            .col_expr(job::Column::UpdatedAt, Expr::value(t))
            .filter(job::Column::Id.eq(j.id))
            .filter(job::Column::State.eq(StoredState::ValidatingFiles))
            .exec(&self.db)
            .await?
            .rows_affected;
        if changed > 0 {
            queue::append(&self.db, j.id, None, &state_event(JobState::Queued, None)).await?;
            self.hub.wake();
            self.queue_wake.notify_one();
        }
        Ok(())
    }

    /// What the scheduler needs to know of a job, fixed when it is
    /// queued: the engine's memory estimate on a CPU slot and on a GPU
    /// (`None`: it cannot run there), and the ETA's upper bound in hours
    /// on each. When the model cannot be read, nothing is known and the
    /// job fits anywhere (the engine refuses it with a clear reason).
    async fn sizing(
        &self,
        j: &job::Model,
        d: &dataset_version::Model,
    ) -> (Option<i64>, Option<i64>, Option<f64>, Option<f64>) {
        let known = async {
            let spec: JobSpec = serde_json::from_str(&j.spec)?;
            let mc = self.model_config(&spec.base_model).await?;
            let c = &spec.config;
            let tokens = Self::train_tokens(d)? * c.num_train_epochs as u64;
            let mut out = (None, None, None, None);
            for kind in [DeviceKind::Cpu, DeviceKind::Cuda] {
                let gpu = kind == DeviceKind::Cuda;
                let need = launch::needed(&mc, c, gpu).ok().map(|b| b as i64);
                let measured = self.measured(&spec.base_model, kind).await?;
                let hours = launch::eta(&mc, c, tokens, kind, &measured)
                    .1
                    .map(|s| s / 3600.0);
                if gpu {
                    (out.1, out.3) = (need, hours);
                } else {
                    (out.0, out.2) = (need, hours);
                }
            }
            Ok::<_, Error>(out)
        };
        match known.await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(job = j.id, error = %e, "the job's size could not be estimated; it may run on any device");
                (None, None, None, None)
            }
        }
    }

    /// Fails a job that never started (`validating_files` only).
    pub(crate) async fn fail_validating(
        &self,
        id: i64,
        cause: crate::entity::job::StoredCause,
        reason: &str,
    ) -> Result<()> {
        let t = now();
        let changed = job::Entity::update_many()
            .col_expr(job::Column::State, Expr::value(StoredState::Failed))
            .col_expr(job::Column::FailureCause, Expr::value(cause))
            .col_expr(job::Column::FailureReason, Expr::value(reason))
            .col_expr(job::Column::FinishedAt, Expr::value(t))
            .col_expr(job::Column::UpdatedAt, Expr::value(t))
            .filter(job::Column::Id.eq(id))
            .filter(job::Column::State.eq(StoredState::ValidatingFiles))
            .exec(&self.db)
            .await?
            .rows_affected;
        if changed > 0 {
            queue::append(
                &self.db,
                id,
                None,
                &state_event(JobState::Failed, Some(reason.to_owned())),
            )
            .await?;
            self.hub.wake();
        }
        Ok(())
    }

    async fn job_page_for(&self, req: &RequestParts, id: i64) -> Result<JobPage> {
        let u = self.require_user(req).await?;
        let (j, p) = self.job_with(&u, id, Action::Read).await?;
        // An evaluation (or an export) shows the settings of the model it
        // scores (or exports).
        let spec: JobSpec = match (j.kind, j.source_job_id) {
            (job::JobKind::Evaluate | job::JobKind::Export, Some(source)) => {
                let trained = job::Entity::find_by_id(source)
                    .one(&self.db)
                    .await?
                    .ok_or_else(|| Error::internal("an evaluated job is gone"))?;
                serde_json::from_str(&trained.spec)?
            }
            _ => serde_json::from_str(&j.spec)?,
        };
        let device: Option<Device> = match j.device.as_deref() {
            Some(d) => Some(serde_json::from_str(d)?),
            None => None,
        };
        let rows = job_event::Entity::find()
            .filter(job_event::Column::JobId.eq(j.id))
            .order_by_asc(job_event::Column::Id)
            .all(&self.db)
            .await?;
        let events: Vec<JobEvent> = rows
            .into_iter()
            .filter_map(|r| events::decode(r).ok().map(|r| r.event))
            .collect();
        let artifacts = job_artifact::Entity::find()
            .filter(job_artifact::Column::JobId.eq(j.id))
            .order_by_asc(job_artifact::Column::Path)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|a| Artifact {
                path: a.path,
                size: a.size,
                sha256: a.sha256,
            })
            .collect();
        let state: JobState = j.state.into();
        let can_cancel = policy::may(u.role.into(), Action::Train)
            && matches!(
                state,
                JobState::ValidatingFiles | JobState::Queued | JobState::Running
            );
        let can_delete = policy::may(u.role.into(), Action::Train) && j.kind == job::JobKind::Train;
        let job = self
            .summaries_of(vec![j])
            .await?
            .pop()
            .ok_or_else(|| Error::internal("a job vanished while its page was read"))?;
        Ok(JobPage {
            user: current(&u),
            project_id: p.id,
            project_name: p.name,
            job,
            config: spec.config,
            device,
            can_cancel,
            can_delete,
            events,
            artifacts,
        })
    }

    /// Cancels job `id` for `u` (the pages and the API).
    #[tracing::instrument(skip_all, fields(job_id = id))]
    pub(crate) async fn cancel_as(&self, u: &user::Model, id: i64) -> Result<()> {
        let (j, _) = self.job_with(u, id, Action::Train).await?;
        self.cancel_job_row(u, j).await
    }

    /// Cancels job `j` for `u`, who may (checked by the caller).
    pub(crate) async fn cancel_job_row(&self, u: &user::Model, mut j: job::Model) -> Result<()> {
        // A job moves on by itself (files checked, claimed by a worker): a
        // cancel that loses that race reads the new state and tries again.
        let mut tries = 0;
        let to = loop {
            let state: JobState = j.state.into();
            // A job no worker holds is cancelled at once; a running one is
            // asked to checkpoint and stop (its worker sees `cancelling`).
            let to = match state {
                JobState::ValidatingFiles | JobState::Queued | JobState::Paused => {
                    StoredState::Cancelled
                }
                JobState::Running => StoredState::Cancelling,
                JobState::Cancelling => return Ok(()),
                _ => {
                    return Err(AppError::Conflict(format!(
                        "The job has already {}.",
                        state.label().to_lowercase()
                    ))
                    .into())
                }
            };
            let t = now();
            // Only from the state just read: a worker that finished meanwhile wins.
            let changed = job::Entity::update_many()
                .col_expr(job::Column::State, Expr::value(to))
                .col_expr(job::Column::UpdatedAt, Expr::value(t))
                .col_expr(
                    job::Column::FinishedAt,
                    Expr::value((to == StoredState::Cancelled).then_some(t)),
                )
                .filter(job::Column::Id.eq(j.id))
                .filter(job::Column::State.eq(j.state))
                .exec(&self.db)
                .await?
                .rows_affected;
            if changed > 0 {
                break to;
            }
            tries += 1;
            if tries == 10 {
                return Err(AppError::Conflict(
                    "The job keeps changing state; try cancelling it again.".into(),
                )
                .into());
            }
            j = job::Entity::find_by_id(j.id)
                .one(&self.db)
                .await?
                .ok_or_else(|| AppError::NotFound("that job".into()))?;
        };
        let note = format!("Cancelled by {}.", u.username);
        queue::append(&self.db, j.id, None, &state_event(to.into(), Some(note))).await?;
        self.hub.wake();
        tracing::info!(user = %u.username, job = j.id, "cancel requested");
        Ok(())
    }
}

#[async_trait::async_trait]
impl JobsBackend for Services {
    async fn launch_page(
        &self,
        req: &RequestParts,
        dataset_id: i64,
    ) -> Result<LaunchPage, AppError> {
        Ok(self.launch_page_for(req, dataset_id).await?)
    }

    async fn check_launch(
        &self,
        req: &RequestParts,
        dataset_id: i64,
        model: String,
        config: String,
    ) -> Result<LaunchCheck, AppError> {
        Ok(self
            .check_launch_for(req, dataset_id, model, config)
            .await?)
    }

    async fn launch_job(
        &self,
        req: &RequestParts,
        dataset_id: i64,
        model: String,
        config: String,
    ) -> Result<i64, AppError> {
        Ok(self.launch(req, dataset_id, model, config).await?)
    }

    async fn job_page(&self, req: &RequestParts, id: i64) -> Result<JobPage, AppError> {
        Ok(self.job_page_for(req, id).await?)
    }

    async fn cancel_job(&self, req: &RequestParts, id: i64) -> Result<(), AppError> {
        let u = self.require_user(req).await?;
        Ok(self.cancel_as(&u, id).await?)
    }

    async fn delete_job(&self, req: &RequestParts, id: i64) -> Result<u32, AppError> {
        let u = self.require_user(req).await?;
        Ok(Services::delete_job(self, &u, id).await?.blobs_freed.len() as u32)
    }
}
