//! `/v1/fine_tuning/jobs`: OpenAI's fine-tuning jobs over Hone's job
//! layer. Creating one translates the request (OpenAI's hyperparameters
//! and Hone's own settings under `hone`) and records a job through
//! [`Services::insert_job`]; once its files have passed their checks it is
//! split and queued like a job launched from the browser
//! ([`Services::ready_api_job`]). Reading answers from the job's row, its
//! event log and its checkpoints; cancelling is the pages' cancel.
//!
//! What `learning_rate_multiplier` multiplies: the method's usual starting
//! learning rate (2e-4 for LoRA and QLoRA, 2e-5 for full fine-tuning —
//! [`crate::jobs::launch::learning_rate`]).

use super::auth::ApiCaller;
use super::error::{ApiError, ApiResult};
use super::files::{self, file_id};
use crate::datasets::create::{version_from_file, FromFile};
use crate::entity::file::{STATUS_ERROR, STATUS_UPLOADED};
use crate::entity::job::{self, JobKind, StoredCause, StoredState};
use crate::entity::{dataset_version, file, job_checkpoint, job_event, project};
use crate::error::Result;
use crate::jobs::{launch, NewJob};
use crate::policy::Action;
use crate::state::{now, Services};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use hone_app::api::{JobEventBody, JobState};
use hone_dataset::Ratios;
use hone_protocol::{Event, JobSpec, TrainConfig, TrainError};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// Where OpenAI's hyperparameters sit in a request.
const HYPER: &str = "method.supervised.hyperparameters";

pub fn job_id(id: i64) -> String {
    format!("ftjob-{id}")
}

/// The `organization_id` and `owned_by` of a project's jobs and models:
/// its team, as Hone names it.
pub fn organization(p: &project::Model) -> String {
    format!("team-{}", p.team_id)
}

/// What a create request asked for, kept with the job (`api_request`)
/// and applied once its files are checked.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub n_epochs: Option<usize>,
    pub batch_size: Option<usize>,
    pub learning_rate_multiplier: Option<f64>,
    /// Hone's own settings: `TrainConfig`'s fields, as given.
    pub hone: Map<String, Value>,
    pub seed: u64,
}

/// A hyperparameter: absent or `"auto"` is `None`.
fn hyper(h: Option<&Value>, name: &str, integer: bool) -> ApiResult<Option<f64>> {
    let param = format!("{HYPER}.{name}");
    match h.and_then(|h| h.get(name)) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s == "auto" => Ok(None),
        Some(Value::Number(n)) => {
            let v = n.as_f64().unwrap_or(f64::NAN);
            if integer && (v.fract() != 0.0 || !(1.0..=1e9).contains(&v)) {
                return Err(ApiError::bad_request(
                    &param,
                    format!("{name} must be a whole number of at least 1, or \"auto\"."),
                ));
            }
            if !integer && (v <= 0.0 || !v.is_finite()) {
                return Err(ApiError::bad_request(
                    &param,
                    format!("{name} must be a number above 0, or \"auto\"."),
                ));
            }
            Ok(Some(v))
        }
        Some(_) => Err(ApiError::bad_request(
            &param,
            format!("{name} must be a number or \"auto\"."),
        )),
    }
}

impl Request {
    /// The settings: the data's defaults (as the launch page derives
    /// them), then OpenAI's hyperparameters, then Hone's own settings;
    /// checked against the engine's ranges. An error names the request
    /// field at fault.
    pub fn config(
        &self,
        train_examples: u64,
        stats: Option<&hone_dataset::check::Stats>,
        context: Option<u32>,
    ) -> ApiResult<TrainConfig> {
        let (defaults, _) = launch::defaults(train_examples, stats, context);
        let mut merged = serde_json::to_value(&defaults)?;
        for (k, v) in &self.hone {
            merged[k] = v.clone();
        }
        let mut c: TrainConfig = serde_json::from_value(merged).map_err(|e| {
            ApiError::bad_request("hone", format!("Hone's settings could not be read: {e}."))
        })?;
        let given = |k: &str| self.hone.contains_key(k);
        if !given("learning_rate") {
            c.learning_rate = launch::learning_rate(c.method);
        }
        if let Some(n) = self.n_epochs {
            c.num_train_epochs = n;
        }
        if let Some(n) = self.batch_size {
            c.per_device_train_batch_size = n;
        }
        if let Some(m) = self.learning_rate_multiplier {
            if given("learning_rate") {
                return Err(ApiError::bad_request(
                    &format!("{HYPER}.learning_rate_multiplier"),
                    "Give learning_rate_multiplier or hone.learning_rate, not both.",
                ));
            }
            c.learning_rate = launch::learning_rate(c.method) * m;
        }
        c.seed = self.seed;
        // How often to log, evaluate and save follows the run's length,
        // unless Hone's settings say.
        let given_pace = c.clone();
        launch::pace(&mut c, train_examples);
        for k in ["logging_steps", "eval_steps", "save_steps", "warmup_steps"] {
            if given(k) {
                match k {
                    "logging_steps" => c.logging_steps = given_pace.logging_steps,
                    "eval_steps" => c.eval_steps = given_pace.eval_steps,
                    "save_steps" => c.save_steps = given_pace.save_steps,
                    _ => c.warmup_steps = given_pace.warmup_steps,
                }
            }
        }
        c.validate().map_err(|e| self.refusal(e))?;
        Ok(c)
    }

    /// An engine refusal, under the name the request used.
    fn refusal(&self, e: TrainError) -> ApiError {
        match e {
            TrainError::Invalid { field, message } => {
                let openai = match field.as_str() {
                    "num_train_epochs" if self.n_epochs.is_some() => Some("n_epochs"),
                    "per_device_train_batch_size" if self.batch_size.is_some() => {
                        Some("batch_size")
                    }
                    "learning_rate" if self.learning_rate_multiplier.is_some() => {
                        Some("learning_rate_multiplier")
                    }
                    _ => None,
                };
                match openai {
                    Some(name) => ApiError::bad_request(
                        &format!("{HYPER}.{name}"),
                        format!("{name}: the engine's {field} {message}."),
                    ),
                    None => ApiError::bad_request(
                        &format!("hone.{field}"),
                        format!("{field} {message}."),
                    ),
                }
            }
            other => ApiError::bad_request("hone", other.to_string()),
        }
    }
}

/// A create request, parsed: every field checked and named when wrong.
struct Create {
    model: String,
    training_file: file::Model,
    validation_file: Option<file::Model>,
    suffix: Option<String>,
    request: Request,
}

async fn parse_create(s: &Services, c: &ApiCaller, body: &[u8]) -> ApiResult<Create> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("The request body is not valid JSON: {e}."),
        )
    })?;
    let Some(o) = v.as_object() else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "The request body must be a JSON object.",
        ));
    };
    let text = |k: &str| -> ApiResult<Option<String>> {
        match o.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(t)) => Ok(Some(t.clone())),
            Some(_) => Err(ApiError::bad_request(k, format!("{k} must be a string."))),
        }
    };
    let model = text("model")?
        .ok_or_else(|| ApiError::bad_request("model", "Missing model: name a base model."))?;
    let names = crate::models::names(&s.config.models_dir);
    if !names.contains(&model) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "model_not_found",
            format!(
                "The model {model:?} does not exist or cannot be fine-tuned here. Available: {}.",
                names.join(", ")
            ),
        )
        .with_param("model"));
    }
    let training = text("training_file")?.ok_or_else(|| {
        ApiError::bad_request(
            "training_file",
            "Missing training_file: a file id (file-…).",
        )
    })?;
    let training_file = files::find(s, c, &training)
        .await
        .map_err(|e| e.with_param("training_file"))?;
    let validation_file = match text("validation_file")? {
        Some(id) => Some(
            files::find(s, c, &id)
                .await
                .map_err(|e| e.with_param("validation_file"))?,
        ),
        None => None,
    };
    let suffix = text("suffix")?.filter(|t| !t.is_empty());
    if let Some(t) = &suffix {
        let ok = t.len() <= 64
            && t.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_');
        if !ok {
            return Err(ApiError::bad_request(
                "suffix",
                "suffix is up to 64 letters, digits, - and _.",
            ));
        }
    }
    let seed = match o.get("seed") {
        None | Some(Value::Null) => files::DEFAULT_SEED,
        Some(v) => v.as_u64().ok_or_else(|| {
            ApiError::bad_request(
                "seed",
                "seed is a whole number from 0 to 18446744073709551615.",
            )
        })?,
    };
    // Each level is an object or absent; anything else is named.
    let object_at = |v: Option<&Value>, param: &str| -> ApiResult<Option<Map<String, Value>>> {
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m.clone())),
            Some(_) => Err(ApiError::bad_request(
                param,
                format!("{param} must be an object (see OpenAI's fine-tuning API)."),
            )),
        }
    };
    let method = object_at(o.get("method"), "method")?;
    if let Some(m) = &method {
        match m.get("type") {
            None | Some(Value::Null) => {}
            Some(Value::String(t)) if t == "supervised" => {}
            Some(Value::String(other)) => {
                return Err(ApiError::bad_request(
                    "method.type",
                    format!("Hone trains supervised fine-tunes only; {other:?} is not supported."),
                ))
            }
            Some(_) => {
                return Err(ApiError::bad_request(
                    "method.type",
                    "method.type must be the string \"supervised\".",
                ))
            }
        }
    }
    let supervised = object_at(
        method.as_ref().and_then(|m| m.get("supervised")),
        "method.supervised",
    )?;
    let nested = object_at(
        supervised.as_ref().and_then(|s| s.get("hyperparameters")),
        HYPER,
    )?;
    // OpenAI's current place for them, else the older top-level one.
    let legacy = object_at(o.get("hyperparameters"), "hyperparameters")?;
    let h = nested.or(legacy).map(Value::Object);
    let h = h.as_ref();
    let hone = match o.get("hone") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            return Err(ApiError::bad_request(
                "hone",
                "hone is an object of Hone's settings (see the README).",
            ))
        }
    };
    let request = Request {
        n_epochs: hyper(h, "n_epochs", true)?.map(|v| v as usize),
        batch_size: hyper(h, "batch_size", true)?.map(|v| v as usize),
        learning_rate_multiplier: hyper(h, "learning_rate_multiplier", false)?,
        hone,
        seed,
    };
    // The ranges are checked now, against placeholder data; the data's
    // own defaults come once the files are checked.
    request.config(1000, None, None)?;
    Ok(Create {
        model,
        training_file,
        validation_file,
        suffix,
        request,
    })
}

/// `POST /v1/fine_tuning/jobs`.
#[tracing::instrument(skip_all, fields(project = c.project.id))]
pub async fn create(
    State(s): State<Arc<Services>>,
    c: ApiCaller,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let p = s
        .project_with(&c.user, c.project.id, Action::Train, "that project")
        .await?;
    let new = parse_create(&s, &c, &body).await?;
    let config = new.request.config(1000, None, None)?;
    let j = s
        .insert_job(
            &c.user,
            &p,
            NewJob {
                spec: JobSpec::new(new.model.clone(), 0, config),
                dataset_version_id: None,
                training_file_id: Some(new.training_file.id),
                validation_file_id: new.validation_file.as_ref().map(|f| f.id),
                seed: Some(new.request.seed),
                suffix: new.suffix.clone(),
                api_request: Some(serde_json::to_string(&new.request)?),
            },
        )
        .await?;
    tracing::info!(user = %c.user.username, key = c.key.id, job = j.id, "job created through the API");
    // Splitting may take minutes on a large file: the file-check task
    // readies the job, off this request.
    s.files_wake.notify_one();
    Ok(Json(s.job_object(&find_in(&s, &c, j.id).await?).await?))
}

/// Job `id` of the key's project.
async fn find_in(s: &Services, c: &ApiCaller, id: i64) -> ApiResult<job::Model> {
    s.project_with(&c.user, c.project.id, Action::Read, "that project")
        .await?;
    job::Entity::find_by_id(id)
        .filter(job::Column::ProjectId.eq(c.project.id))
        .filter(job::Column::Kind.eq(JobKind::Train))
        .filter(job::Column::DeletedAt.is_null())
        .one(&s.db)
        .await?
        .ok_or_else(|| ApiError::not_found("fine-tuning job").with_param("fine_tuning_job_id"))
}

async fn find(s: &Services, c: &ApiCaller, id: &str) -> ApiResult<job::Model> {
    let n = super::parse_id(id, "ftjob")
        .ok_or_else(|| ApiError::not_found("fine-tuning job").with_param("fine_tuning_job_id"))?;
    find_in(s, c, n).await
}

fn status(state: StoredState) -> &'static str {
    match state {
        StoredState::ValidatingFiles => "validating_files",
        StoredState::Queued => "queued",
        StoredState::Running => "running",
        StoredState::Cancelling => "cancelling",
        StoredState::Paused => "paused",
        StoredState::Succeeded => "succeeded",
        StoredState::Failed => "failed",
        StoredState::Cancelled => "cancelled",
    }
}

impl Services {
    /// OpenAI's job object.
    pub async fn job_object(&self, j: &job::Model) -> ApiResult<Value> {
        let spec: JobSpec = serde_json::from_str(&j.spec)?;
        let c = &spec.config;
        let hyper = json!({
            "n_epochs": c.num_train_epochs,
            "batch_size": c.per_device_train_batch_size,
            "learning_rate_multiplier": c.learning_rate / launch::learning_rate(c.method),
        });
        let p = project::Entity::find_by_id(j.project_id)
            .one(&self.db)
            .await?
            .ok_or_else(|| ApiError::from_internal("a job's project is gone"))?;
        let version = match j.dataset_version_id {
            Some(id) => {
                dataset_version::Entity::find_by_id(id)
                    .one(&self.db)
                    .await?
            }
            None => None,
        };
        let succeeded = j.state == StoredState::Succeeded;
        let trained_tokens = match (&version, succeeded) {
            (Some(v), true) => {
                let stats = crate::datasets::stats_of(v)?;
                let mean = stats.map_or(0.0, |s| s.length.mean);
                Some((mean * v.train_count as f64).round() as u64 * c.num_train_epochs as u64)
            }
            _ => None,
        };
        let t = now();
        let estimated_finish = match (j.state, j.started_at, j.step, j.total_steps) {
            (StoredState::Running, Some(start), Some(step), Some(total)) if step > 0 => {
                let per = (t - start).max(0) as f64 / step as f64;
                Some(t + (per * (total - step).max(0) as f64).round() as i64)
            }
            _ => None,
        };
        let error = match (j.state, j.failure_cause, &j.failure_reason) {
            (StoredState::Failed, cause, reason) => {
                let before_start = j.started_at.is_none();
                let (code, param) = match cause {
                    Some(StoredCause::User) if before_start => {
                        ("invalid_training_file", Some("training_file"))
                    }
                    Some(StoredCause::User) => ("training_failed", None),
                    _ => ("server_error", None),
                };
                json!({
                    "code": code,
                    "message": reason.clone().unwrap_or_else(|| "The job failed.".into()),
                    "param": param,
                })
            }
            _ => Value::Null,
        };
        Ok(json!({
            "id": job_id(j.id),
            "object": "fine_tuning.job",
            "created_at": j.created_at,
            "finished_at": j.finished_at,
            "model": j.base_model,
            "fine_tuned_model": if succeeded { j.fine_tuned_model.clone() } else { None },
            "organization_id": organization(&p),
            "result_files": [],
            "status": status(j.state),
            "validation_file": j.validation_file_id.map(file_id),
            "training_file": j.training_file_id.map(file_id),
            "hyperparameters": hyper,
            "method": { "type": "supervised", "supervised": { "hyperparameters": hyper } },
            "trained_tokens": trained_tokens,
            "error": error,
            "user_provided_suffix": j.suffix,
            "seed": j.seed.as_deref().and_then(|s| s.parse::<u64>().ok()).unwrap_or(c.seed),
            "estimated_finish": estimated_finish,
            "integrations": [],
            "metadata": null,
            // Hone's own, for people and scripts that want more.
            "hone": {
                "project_id": j.project_id,
                "dataset_id": j.dataset_version_id,
                "method": c.method,
                "step": j.step,
                "total_steps": j.total_steps,
                "settings": c,
                "page": format!("{}/projects/{}/jobs/{}", self.config.public_url.trim_end_matches('/'), j.project_id, j.id),
            },
        }))
    }

    /// A version of `f` split with `seed` and `ratios`, counted with
    /// `model`'s tokenizer: the newest one that exists, else a new one.
    async fn version_for(
        &self,
        f: &file::Model,
        created_by: i64,
        seed: u64,
        ratios: Ratios,
        model: &str,
    ) -> Result<std::result::Result<dataset_version::Model, String>> {
        let text = format!("{},{},{}", ratios.0[0], ratios.0[1], ratios.0[2]);
        if let Some(v) = dataset_version::Entity::find()
            .filter(dataset_version::Column::SourceFileId.eq(f.id))
            .filter(dataset_version::Column::Seed.eq(seed.to_string()))
            .filter(dataset_version::Column::Ratios.eq(text.as_str()))
            .filter(dataset_version::Column::BaseModel.eq(model))
            .order_by_desc(dataset_version::Column::Id)
            .one(&self.db)
            .await?
        {
            return Ok(Ok(v));
        }
        let base = f.name.strip_suffix(".jsonl").unwrap_or(&f.name);
        let name: String = format!("{base} (seed {seed}, {})", text.replace(',', "/"))
            .chars()
            .take(100)
            .collect();
        let made = version_from_file(
            self,
            FromFile {
                file: f,
                created_by,
                name,
                seed,
                ratios,
                model: model.to_owned(),
            },
        )
        .await?;
        Ok(made.map_err(|r| files::details(&r.message, &r.findings)))
    }

    /// An API job in `validating_files` whose files are all checked: its
    /// splits made, its settings derived from the data, and queued; or
    /// failed (the person's to fix) when a file has errors or is gone.
    /// Waits (does nothing) while a file is still being checked.
    pub async fn ready_api_job(&self, id: i64) -> Result<()> {
        let _one = self.readying.lock().await;
        let Some(j) = job::Entity::find_by_id(id).one(&self.db).await? else {
            return Ok(());
        };
        let (Some(request), Some(training)) = (&j.api_request, j.training_file_id) else {
            return Ok(());
        };
        if j.state != StoredState::ValidatingFiles {
            return Ok(());
        }
        let request: Request = serde_json::from_str(request)?;
        let mut named = vec![("training", training)];
        named.extend(j.validation_file_id.map(|v| ("validation", v)));
        let mut rows = Vec::new();
        for (what, fid) in named {
            let f = file::Entity::find_by_id(fid)
                .one(&self.db)
                .await?
                .filter(|f| f.deleted_at.is_none());
            let Some(f) = f else {
                let why = format!(
                    "The {what} file {} was deleted before the job could start.",
                    file_id(fid)
                );
                return self.fail_validating(j.id, StoredCause::User, &why).await;
            };
            match f.status.as_deref() {
                Some(STATUS_UPLOADED) => return Ok(()),
                Some(STATUS_ERROR) => {
                    let why = format!(
                        "The {what} file {} did not pass the checks.\n{}",
                        file_id(fid),
                        f.status_details.clone().unwrap_or_default()
                    );
                    return self.fail_validating(j.id, StoredCause::User, &why).await;
                }
                _ => rows.push(f),
            }
        }
        let seed = request.seed;
        let with_validation = rows.len() > 1;
        // Without a validation file the training file gives all three
        // splits; with one, it gives train and test and the validation
        // file is used whole.
        let ratios = if with_validation {
            Ratios([90, 0, 10])
        } else {
            Ratios::default()
        };
        let train = match self
            .version_for(&rows[0], j.created_by, seed, ratios, &j.base_model)
            .await?
        {
            Ok(v) => v,
            Err(details) => {
                let why = format!(
                    "The training file {} cannot be trained on with {}.\n{details}",
                    file_id(rows[0].id),
                    j.base_model
                );
                return self.fail_validating(j.id, StoredCause::User, &why).await;
            }
        };
        let validation = if with_validation {
            match self
                .version_for(
                    &rows[1],
                    j.created_by,
                    seed,
                    Ratios([100, 0, 0]),
                    &j.base_model,
                )
                .await?
            {
                Ok(v) => Some(v),
                Err(details) => {
                    let why = format!(
                        "The validation file {} cannot be used with {}.\n{details}",
                        file_id(rows[1].id),
                        j.base_model
                    );
                    return self.fail_validating(j.id, StoredCause::User, &why).await;
                }
            }
        } else {
            None
        };
        let context = crate::models::list(&self.config.models_dir)
            .into_iter()
            .find(|m| m.name == j.base_model)
            .and_then(|m| m.context_length);
        let stats = crate::datasets::stats_of(&train)?;
        let config = match request.config(train.train_count as u64, stats.as_ref(), context) {
            Ok(c) => c,
            Err(e) => {
                let why = format!("The settings do not suit the data: {}", e.message);
                return self.fail_validating(j.id, StoredCause::User, &why).await;
            }
        };
        let spec = JobSpec::new(j.base_model.clone(), train.id, config);
        let changed = job::Entity::update_many()
            .col_expr(job::Column::DatasetVersionId, Expr::value(train.id))
            .col_expr(
                job::Column::ValidationDatasetVersionId,
                Expr::value(validation.as_ref().map(|v| v.id)),
            )
            .col_expr(
                job::Column::Method,
                Expr::value(crate::entity::job::StoredMethod::from(spec.method)),
            )
            .col_expr(
                job::Column::Spec,
                Expr::value(serde_json::to_string(&spec)?),
            )
            .filter(job::Column::Id.eq(j.id))
            .filter(job::Column::State.eq(StoredState::ValidatingFiles))
            .exec(&self.db)
            .await?
            .rows_affected;
        if changed == 0 {
            return Ok(());
        }
        if let Some(v) = &validation {
            if !self.blobs.exists(&v.train_key).await? {
                return self
                    .fail_validating(
                        j.id,
                        StoredCause::System,
                        "The validation file's split is missing from storage: upload it again.",
                    )
                    .await;
            }
        }
        self.enqueue(&j, &train).await
    }

    /// A file's checks ended: the jobs waiting on it move on.
    pub async fn file_checked(&self, file: i64) -> Result<()> {
        let waiting = job::Entity::find()
            .filter(job::Column::State.eq(StoredState::ValidatingFiles))
            .filter(
                Condition::any()
                    .add(job::Column::TrainingFileId.eq(file))
                    .add(job::Column::ValidationFileId.eq(file)),
            )
            .all(&self.db)
            .await?;
        for j in waiting {
            self.ready_api_job(j.id).await?;
        }
        Ok(())
    }

    /// Every API job still in `validating_files` (after a restart).
    pub async fn ready_waiting_api_jobs(&self) -> Result<()> {
        let waiting = job::Entity::find()
            .filter(job::Column::State.eq(StoredState::ValidatingFiles))
            .filter(job::Column::ApiRequest.is_not_null())
            .all(&self.db)
            .await?;
        for j in waiting {
            self.ready_api_job(j.id).await?;
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
pub struct Page {
    after: Option<String>,
    limit: Option<u64>,
}

/// `GET /v1/fine_tuning/jobs`: newest first; `after` is a job id.
pub async fn list(
    State(s): State<Arc<Services>>,
    c: ApiCaller,
    Query(q): Query<Page>,
) -> ApiResult<Json<Value>> {
    s.project_with(&c.user, c.project.id, Action::Read, "that project")
        .await?;
    let limit = super::limit(q.limit, 20, 100)?;
    let mut query = job::Entity::find()
        .filter(job::Column::ProjectId.eq(c.project.id))
        .filter(job::Column::Kind.eq(JobKind::Train))
        .filter(job::Column::DeletedAt.is_null());
    if let Some(after) = &q.after {
        let Ok(cursor) = find(&s, &c, after).await else {
            return Ok(Json(super::list_of(Vec::new(), false)));
        };
        query = query.filter(job::Column::Id.lt(cursor.id));
    }
    let mut rows = query
        .order_by_desc(job::Column::Id)
        .limit(limit + 1)
        .all(&s.db)
        .await?;
    let has_more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    let mut data = Vec::with_capacity(rows.len());
    for j in &rows {
        data.push(s.job_object(j).await?);
    }
    Ok(Json(super::list_of(data, has_more)))
}

pub async fn retrieve(
    State(s): State<Arc<Services>>,
    c: ApiCaller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let j = find(&s, &c, &id).await?;
    Ok(Json(s.job_object(&j).await?))
}

/// `POST /v1/fine_tuning/jobs/{id}/cancel`: the pages' cancel; a running
/// job answers `cancelling` until its checkpoint is written.
#[tracing::instrument(skip_all, fields(project = c.project.id))]
pub async fn cancel(
    State(s): State<Arc<Services>>,
    c: ApiCaller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let j = find(&s, &c, &id).await?;
    s.cancel_as(&c.user, j.id).await?;
    let j = find_in(&s, &c, j.id).await?;
    Ok(Json(s.job_object(&j).await?))
}

/// `POST /v1/fine_tuning/jobs/{id}/pause` and `/resume`: OpenAI's pause
/// and resume. In Hone pausing is an administrator's decision (it frees a
/// device for someone else), so the key's owner must be an admin; others
/// get 403 in OpenAI's shape. A running job answers `running` until its
/// checkpoint is written, then `paused`.
#[tracing::instrument(skip_all, fields(project = c.project.id))]
pub async fn pause(
    State(s): State<Arc<Services>>,
    c: ApiCaller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    pause_or_resume(&s, &c, &id, true).await
}

#[tracing::instrument(skip_all, fields(project = c.project.id))]
pub async fn resume(
    State(s): State<Arc<Services>>,
    c: ApiCaller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    pause_or_resume(&s, &c, &id, false).await
}

async fn pause_or_resume(
    s: &Services,
    c: &ApiCaller,
    id: &str,
    pause: bool,
) -> ApiResult<Json<Value>> {
    let j = find(s, c, id).await?;
    crate::policy::check(
        c.user.role.into(),
        false,
        crate::policy::Action::Administer,
        "that job",
    )
    .map_err(crate::error::Error::from)?;
    if pause {
        s.pause_as(&c.user, j.clone()).await?;
    } else {
        s.resume_as(&c.user, j.clone()).await?;
    }
    let j = find_in(s, c, j.id).await?;
    Ok(Json(s.job_object(&j).await?))
}

/// One entry of the job's log as OpenAI's event: level, message, data.
fn event_object(row: &job_event::Model, body: &JobEventBody) -> Value {
    let (level, message, data, kind) = match body {
        JobEventBody::State { state, note } => {
            let level = match state {
                JobState::Failed => "error",
                JobState::Cancelled | JobState::Cancelling => "warn",
                _ => "info",
            };
            let said = match state {
                JobState::ValidatingFiles => "Validating training file.",
                JobState::Queued => "Job queued.",
                JobState::Running => "Job started.",
                JobState::Cancelling => "Cancelling: writing a checkpoint before stopping.",
                JobState::Paused => "The job was paused.",
                JobState::Succeeded => "The job has successfully completed.",
                JobState::Failed => "The job failed.",
                JobState::Cancelled => "The job was cancelled.",
            };
            let message = match note {
                Some(n) => format!("{said} {n}"),
                None => said.to_owned(),
            };
            (level, message, json!({ "status": status((*state).into()) }), "message")
        }
        JobEventBody::Engine { event } => match event {
            Event::Started { total_steps, examples, trainable_params, truncated, .. } => (
                "info",
                format!("Training started: {total_steps} steps over {examples} examples ({trainable_params} trainable parameters)."),
                json!({ "total_steps": total_steps, "examples": examples, "trainable_params": trainable_params, "truncated": truncated }),
                "message",
            ),
            Event::Step { step, epoch, loss, learning_rate, grad_norm, tokens_per_s, eta_s } => (
                "info",
                format!("Step {step}: training loss={loss:.4}"),
                json!({ "step": step, "train_loss": loss, "epoch": epoch, "learning_rate": learning_rate, "grad_norm": grad_norm, "tokens_per_s": tokens_per_s, "eta_s": eta_s }),
                "metrics",
            ),
            Event::Eval { step, loss, perplexity } => (
                "info",
                format!("Step {step}: validation loss={loss:.4}"),
                json!({ "step": step, "valid_loss": loss, "valid_perplexity": perplexity }),
                "metrics",
            ),
            Event::Checkpoint { step, .. } => (
                "info",
                format!("Checkpoint saved at step {step}."),
                json!({ "step": step }),
                "message",
            ),
            Event::Evaluating { done, total } => (
                "info",
                format!("Evaluating: {done} of {total} test examples scored."),
                json!({ "done": done, "total": total }),
                "message",
            ),
            Event::Resumed { step, .. } => (
                "warn",
                format!("Resumed from the checkpoint at step {step}."),
                json!({ "step": step }),
                "message",
            ),
            Event::Finished { step, reason, best_eval_loss } => (
                "info",
                format!("Training finished at step {step} ({reason})."),
                json!({ "step": step, "reason": reason, "best_valid_loss": best_eval_loss }),
                "message",
            ),
            Event::Failed { reason, .. } => (
                "error",
                format!("Training failed: {reason}"),
                json!({}),
                "message",
            ),
        },
    };
    json!({
        "id": format!("ftevent-{}", row.id),
        "object": "fine_tuning.job.event",
        "created_at": row.at_ms / 1000,
        "level": level,
        "message": message,
        "data": data,
        "type": kind,
    })
}

/// One page of a job's rows of `E` (events, checkpoints), newest first:
/// at most `limit`, and whether more follow. `after` is a cursor
/// (`{prefix}-{id}`) that must name one of this job's rows; `None` when it
/// names none (OpenAI answers an empty page then). `columns` are `E`'s
/// job id and id columns.
async fn job_page<E>(
    s: &Services,
    job_id: i64,
    after: Option<&str>,
    prefix: &str,
    limit: u64,
    (job_col, id_col): (E::Column, E::Column),
) -> ApiResult<Option<(Vec<E::Model>, bool)>>
where
    E: EntityTrait,
    E::Model: Sync,
{
    let mut query = E::find().filter(job_col.eq(job_id));
    if let Some(after) = after {
        let Some(cursor) = super::parse_id(after, prefix) else {
            return Ok(None);
        };
        let known = E::find()
            .filter(job_col.eq(job_id))
            .filter(id_col.eq(cursor))
            .one(&s.db)
            .await?
            .is_some();
        if !known {
            return Ok(None);
        }
        query = query.filter(id_col.lt(cursor));
    }
    let mut rows = query
        .order_by_desc(id_col)
        .limit(limit + 1)
        .all(&s.db)
        .await?;
    let has_more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    Ok(Some((rows, has_more)))
}

/// `GET /v1/fine_tuning/jobs/{id}/events`: newest first; `after` is an
/// event id.
pub async fn events(
    State(s): State<Arc<Services>>,
    c: ApiCaller,
    Path(id): Path<String>,
    Query(q): Query<Page>,
) -> ApiResult<Json<Value>> {
    let j = find(&s, &c, &id).await?;
    let limit = super::limit(q.limit, 20, 1000)?;
    let Some((rows, has_more)) = job_page::<job_event::Entity>(
        &s,
        j.id,
        q.after.as_deref(),
        "ftevent",
        limit,
        (job_event::Column::JobId, job_event::Column::Id),
    )
    .await?
    else {
        return Ok(Json(super::list_of(Vec::new(), false)));
    };
    let mut data = Vec::with_capacity(rows.len());
    for row in &rows {
        let body: JobEventBody = serde_json::from_str(&row.body)?;
        data.push(event_object(row, &body));
    }
    Ok(Json(super::list_of(data, has_more)))
}

/// `GET /v1/fine_tuning/jobs/{id}/checkpoints`: newest first, each with
/// the losses last reported at or before its step.
pub async fn checkpoints(
    State(s): State<Arc<Services>>,
    c: ApiCaller,
    Path(id): Path<String>,
    Query(q): Query<Page>,
) -> ApiResult<Json<Value>> {
    let j = find(&s, &c, &id).await?;
    let limit = super::limit(q.limit, 10, 100)?;
    let Some((rows, has_more)) = job_page::<job_checkpoint::Entity>(
        &s,
        j.id,
        q.after.as_deref(),
        "ftckpt",
        limit,
        (job_checkpoint::Column::JobId, job_checkpoint::Column::Id),
    )
    .await?
    else {
        return Ok(Json(super::list_of(Vec::new(), false)));
    };
    // The losses by step, from the engine's events.
    let mut train: Vec<(u64, f64)> = Vec::new();
    let mut valid: Vec<(u64, f64)> = Vec::new();
    let logged = job_event::Entity::find()
        .filter(job_event::Column::JobId.eq(j.id))
        .order_by_asc(job_event::Column::Id)
        .all(&s.db)
        .await?;
    for row in logged {
        if let Ok(JobEventBody::Engine { event }) = serde_json::from_str(&row.body) {
            match event {
                Event::Step { step, loss, .. } => train.push((step, loss)),
                Event::Eval { step, loss, .. } => valid.push((step, loss)),
                _ => {}
            }
        }
    }
    let at =
        |v: &[(u64, f64)], step: u64| v.iter().rev().find(|(s, _)| *s <= step).map(|(_, l)| *l);
    let base = j.fine_tuned_model.clone().unwrap_or_else(|| job_id(j.id));
    let data = rows
        .iter()
        .map(|r| {
            let step = r.step.max(0) as u64;
            json!({
                "id": format!("ftckpt-{}", r.id),
                "object": "fine_tuning.job.checkpoint",
                "created_at": r.created_at,
                "fine_tuned_model_checkpoint": format!("{base}:ckpt-step-{step}"),
                "fine_tuning_job_id": job_id(j.id),
                "step_number": step,
                "metrics": {
                    "step": step,
                    "train_loss": at(&train, step),
                    "valid_loss": at(&valid, step),
                },
            })
        })
        .collect();
    Ok(Json(super::list_of(data, has_more)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hone_protocol::Method;

    #[test]
    fn hyperparameters_map_onto_the_engine_and_name_their_field() {
        let r = Request {
            n_epochs: Some(2),
            batch_size: Some(4),
            learning_rate_multiplier: Some(0.5),
            seed: 7,
            ..Request::default()
        };
        let c = r.config(100, None, None).unwrap();
        assert_eq!(c.num_train_epochs, 2);
        assert_eq!(c.per_device_train_batch_size, 4);
        assert!((c.learning_rate - 1e-4).abs() < 1e-12);
        assert_eq!(c.seed, 7);
        // 100 examples / 4 = 25 steps an epoch, 2 epochs: 50 steps.
        assert_eq!(c.save_steps, 5);
        let too_many = Request {
            n_epochs: Some(100_000),
            ..Request::default()
        };
        let e = too_many.config(100, None, None).unwrap_err();
        assert_eq!(
            e.param.as_deref(),
            Some("method.supervised.hyperparameters.n_epochs")
        );
        let mut hone = Map::new();
        hone.insert("lora_r".into(), json!(0));
        let e = Request {
            hone,
            ..Request::default()
        }
        .config(100, None, None)
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("hone.lora_r"), "{}", e.message);
    }

    #[test]
    fn a_full_fine_tune_starts_from_its_own_learning_rate() {
        let mut hone = Map::new();
        hone.insert("method".into(), json!("full"));
        let c = Request {
            hone,
            learning_rate_multiplier: Some(2.0),
            ..Request::default()
        }
        .config(100, None, None)
        .unwrap();
        assert_eq!(c.method, Method::Full);
        assert!((c.learning_rate - 4e-5).abs() < 1e-15);
    }
}
