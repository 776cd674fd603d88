//! A worker slot: one device (a GPU or a CPU slot) that claims one job at a
//! time from the queue and runs the engine on it as a child process,
//! `hone-train train`. The worker downloads the job's splits (and its last
//! checkpoint, when resuming) from blob storage into a scratch folder,
//! streams the child's JSON events into the job's log, stores each
//! checkpoint and the final files back in blob storage — so a worker on
//! another machine works the same way — and renews the job's lease with its
//! heartbeat.
//!
//! Stopping a run is closing the child's standard input
//! (`--stop-on-stdin-eof`): the engine finishes its step, writes a
//! checkpoint and exits. The same happens when the worker dies, however it
//! dies, so the child never outlives it for long.
//!
//! Evaluation jobs run `hone-train evaluate` on the trained files instead
//! (`worker/evaluate.rs`).

mod evaluate;
mod export;

pub use evaluate::REPORT_PATH;
pub use export::GGUF_REFUSED_PATH;

use super::queue::{self, End, Progress};
use super::redact::Redact;
use super::state_event;
use crate::entity::job::{self, JobKind, StopRequest, StoredCause};
use crate::entity::{dataset_version, job_artifact, job_checkpoint, worker};
use crate::error::{Error, Result};
use crate::state::Services;
use crate::supervisor::Shutdown;
use hone_app::api::{JobEventBody, JobState};
use hone_protocol::{ArtifactFile, Cause, Device, DeviceKind, Event, JobSpec, Outcome};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

/// How workers run: where the engine is, where scratch files go, leases.
#[derive(Clone, Debug)]
pub struct Options {
    /// The `hone-train` binary.
    pub train_bin: PathBuf,
    /// Scratch folders for running jobs (emptied when a job ends).
    pub work_dir: PathBuf,
    /// Where the built-in demo model is written out for the engine.
    pub builtin_models: PathBuf,
    /// A claimed job is this worker's until this long after its last
    /// heartbeat; renewed every third of it.
    pub lease: Duration,
    /// How often an idle worker looks for queued jobs (a job launched on
    /// this server wakes it at once).
    pub poll: Duration,
    /// The most resident memory an export's engine may use
    /// (`HONE_EXPORT_MEMORY_LIMIT`); `None`: the machine's.
    pub export_memory_limit: Option<u64>,
}

impl Options {
    fn lease_ms(&self) -> i64 {
        self.lease.as_millis() as i64
    }
}

/// A worker's status when its engine cannot run, as people see it (the
/// path and the OS error are in the worker's log only).
pub const ENGINE_UNUSABLE: &str = "the training engine cannot be started on this machine; an administrator can find why in the worker's log";

/// `hone-train devices`: the machine's devices, or why they cannot be had.
pub async fn devices(train_bin: &Path) -> std::result::Result<Vec<Device>, String> {
    let out = tokio::process::Command::new(train_bin)
        .arg("devices")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| {
            format!(
                "the training engine cannot be started ({}: {e}); build it with `cargo build --release -p hone-gpu --bin hone-train` or set HONE_TRAIN_BIN",
                train_bin.display()
            )
        })?;
    if !out.status.success() {
        return Err(format!(
            "`{} devices` failed: {}",
            train_bin.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "`{} devices` printed something unexpected: {e}",
            train_bin.display()
        )
    })
}

/// The slots a machine offers: one per GPU, else one CPU slot; `count`
/// overrides how many (the first devices, or CPU slots when there is no
/// GPU).
pub fn slots(devices: &[Device], count: Option<usize>) -> Vec<Device> {
    let gpus: Vec<Device> = devices
        .iter()
        .filter(|d| d.kind == DeviceKind::Cuda)
        .cloned()
        .collect();
    let cpu = devices
        .iter()
        .find(|d| d.kind == DeviceKind::Cpu)
        .cloned()
        .unwrap_or_else(|| Device {
            kind: DeviceKind::Cpu,
            index: None,
            name: "CPU".into(),
            memory_bytes: 0,
        });
    match (gpus.is_empty(), count) {
        (false, None) => gpus,
        (false, Some(n)) => gpus.into_iter().cycle().take(n).collect(),
        (true, n) => vec![cpu; n.unwrap_or(1)],
    }
}

/// Starts this machine's worker slots under `supervisor`: one per GPU
/// (else one CPU slot), or `count`. When the engine cannot be run, one
/// slot is registered that says why (the queue shows it) and claims
/// nothing. Also starts nothing else: the event hub is the web server's.
pub async fn start_pool(
    supervisor: &mut crate::supervisor::Supervisor,
    services: &Arc<Services>,
    count: Option<usize>,
) -> usize {
    let config = &services.config;
    let options = Arc::new(Options {
        train_bin: config.train_bin.clone(),
        work_dir: config.data_dir.join("work"),
        builtin_models: config.data_dir.join("builtin-models"),
        lease: Duration::from_millis(config.job_lease_ms),
        poll: Duration::from_secs(2),
        export_memory_limit: config.export_memory_limit,
    });
    let found = match &config.devices {
        Some(declared) => Ok(declared.clone()),
        None => devices(&options.train_bin).await,
    };
    let (devices, unusable) = match found {
        Ok(d) => match hone_protocol::check_inventory(&d) {
            Ok(()) => (
                match &config.devices {
                    // Declared: one slot per device, as listed.
                    Some(_) if count.is_none() => d,
                    _ => slots(&d, count),
                },
                None,
            ),
            Err(why) => {
                tracing::error!(reason = %why, "the device inventory is refused; workers claim nothing");
                (
                    slots(&[], Some(1)),
                    Some(format!("device inventory refused: {why}")),
                )
            }
        },
        Err(why) => {
            // The details (the engine's path, the OS error) go to the log;
            // the status people see says what to do.
            tracing::error!(reason = %why, "workers cannot run jobs");
            (slots(&[], Some(1)), Some(ENGINE_UNUSABLE.to_owned()))
        }
    };
    let declared = config.devices.is_some();
    let live = if declared {
        None
    } else {
        super::nvml::Live::open().map(Arc::new)
    };
    let host = uuid::Uuid::new_v4().simple().to_string();
    for (i, device) in devices.iter().enumerate() {
        let (services, options, unusable, device, live) = (
            services.clone(),
            options.clone(),
            unusable.clone(),
            device.clone(),
            live.clone(),
        );
        let id = format!("{}-{host}-{i}", hostname());
        supervisor.spawn("worker", move |shutdown| {
            Worker {
                services: services.clone(),
                options: options.clone(),
                id: id.clone(),
                device: device.clone(),
                declared,
                unusable: unusable.clone(),
                live: live.clone(),
            }
            .run(shutdown)
        });
    }
    tracing::info!(slots = devices.len(), engine = %options.train_bin.display(), "workers started");
    devices.len()
}

/// One stored file of a checkpoint folder.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct StoredFile {
    path: String,
    key: String,
    size: u64,
    sha256: String,
}

/// A checkpoint as stored: its folder's name and files.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Manifest {
    folder: String,
    files: Vec<StoredFile>,
}

/// Why a run stopped before its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Cancel,
    Shutdown,
    /// Give the borrowed device back (the scheduler asked).
    Preempt,
    /// An administrator paused the job.
    Pause,
}

/// One worker slot.
#[derive(Debug)]
pub struct Worker {
    pub services: Arc<Services>,
    pub options: Arc<Options>,
    pub id: String,
    pub device: Device,
    /// The device is declared (`HONE_DEVICES`), not found: jobs run on the
    /// CPU whatever it says.
    pub declared: bool,
    /// Set when this worker cannot run jobs (the engine is missing…).
    pub unusable: Option<String>,
    /// NVML, for the heartbeat's live figures.
    pub live: Option<Arc<super::nvml::Live>>,
}

impl Worker {
    /// Registers or refreshes this slot in `workers` (its device, status
    /// and live figures), stamped with the database's clock.
    pub async fn heartbeat(&self) -> Result<()> {
        let db = &self.services.db;
        let status = self.unusable.clone().unwrap_or_else(|| "ready".into());
        let live = self
            .live
            .as_ref()
            .and_then(|l| l.figures(&self.device))
            .map(|f| serde_json::to_string(&f))
            .transpose()?;
        let now = queue::db_now(db);
        let sql = format!(
            "INSERT INTO workers (id, host, device, status, started_at, heartbeat_ms, live) \
             VALUES ($1, $2, $3, $4, {now} / 1000, {now}, $5) ON CONFLICT (id) DO UPDATE SET \
             status = excluded.status, heartbeat_ms = excluded.heartbeat_ms, live = excluded.live"
        );
        db.execute_raw(queue::statement(
            db,
            &sql,
            vec![
                self.id.clone().into(),
                hostname().into(),
                serde_json::to_string(&self.device)?.into(),
                status.into(),
                live.into(),
            ],
        ))
        .await?;
        Ok(())
    }

    /// The worker's loop (a supervised task): heartbeat, reap expired
    /// leases, claim, run; until shutdown.
    pub async fn run(self, mut shutdown: Shutdown) {
        tracing::info!(worker = %self.id, device = %self.device.name, "worker started");
        loop {
            if let Err(e) = self.heartbeat().await {
                tracing::warn!(error = %e, "worker heartbeat failed");
            }
            if shutdown.is_stopping() {
                break;
            }
            let claimed = if self.unusable.is_none() {
                queue::claim(
                    &self.services.db,
                    &self.id,
                    &self.device.name,
                    self.options.lease_ms(),
                )
                .await
            } else {
                Ok(None)
            };
            match claimed {
                Ok(Some(job)) => {
                    let id = job.id;
                    if let Err(e) = self.run_job(job, shutdown.clone()).await {
                        tracing::error!(job = id, error = %e, "running a job failed");
                        let reason = "The server could not run the job (storage or database error; it has been logged).".to_string();
                        if let Ok(true) = queue::finish(
                            &self.services.db,
                            id,
                            &self.id,
                            End::Failed {
                                cause: StoredCause::System,
                                reason: reason.clone(),
                            },
                        )
                        .await
                        {
                            self.log_state(id, JobState::Failed, Some(reason)).await;
                        }
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "claiming a job failed"),
            }
            tokio::select! {
                () = self.services.assigned_wake.notified() => {}
                () = tokio::time::sleep(self.options.poll) => {}
                () = shutdown.wait() => break,
            }
        }
        let _ = worker::Entity::delete_by_id(self.id.clone())
            .exec(&self.services.db)
            .await;
        tracing::info!(worker = %self.id, "worker stopped");
    }

    async fn log_state(&self, job: i64, state: JobState, note: Option<String>) {
        if let Err(e) = queue::append(&self.services.db, job, None, &state_event(state, note)).await
        {
            tracing::warn!(job, error = %e, "recording a state change failed");
        }
        self.services.hub.wake();
    }

    /// Appends an event under this worker's lease; `false`: fenced out.
    async fn emit(&self, job: i64, body: &JobEventBody) -> Result<bool> {
        let ok = queue::append(&self.services.db, job, Some(&self.id), body)
            .await?
            .is_some();
        self.services.hub.wake();
        Ok(ok)
    }

    #[tracing::instrument(skip_all, fields(job = job.id, attempt = job.attempts))]
    async fn run_job(&self, job: job::Model, mut shutdown: Shutdown) -> Result<()> {
        let db = &self.services.db;
        let resuming = job.checkpoint_step.is_some();
        let note = match job.kind {
            JobKind::Evaluate => format!("Evaluating on {}", self.device.name),
            JobKind::Export => format!("Exporting on {}", self.device.name),
            JobKind::Train => format!(
                "Attempt {} on {}{}",
                job.attempts,
                self.device.name,
                if resuming {
                    ", resuming from the last checkpoint"
                } else {
                    ""
                }
            ),
        };
        if !self
            .emit(job.id, &state_event(JobState::Running, Some(note)))
            .await?
        {
            return Ok(());
        }
        queue::progress(
            db,
            job.id,
            &self.id,
            Progress {
                device: Some(serde_json::to_string(&self.device)?),
                ..Default::default()
            },
        )
        .await?;

        // One folder per attempt: an engine of a lost attempt may still be
        // writing its last checkpoint into its own.
        let dir = self
            .options
            .work_dir
            .join(format!("job-{}-{}", job.id, job.attempts));
        let _ = tokio::fs::remove_dir_all(&dir).await;
        let out = dir.join("out");
        tokio::fs::create_dir_all(&out)
            .await
            .map_err(|e| Error::internal(format!("{}: {e}", out.display())))?;
        let result = match job.kind {
            JobKind::Train => match serde_json::from_str::<JobSpec>(&job.spec) {
                Ok(spec) => self.run_in(&job, &spec, &dir, &out, &mut shutdown).await,
                Err(e) => Err(e.into()),
            },
            JobKind::Evaluate => self.run_evaluation(&job, &dir, &mut shutdown).await,
            JobKind::Export => self.run_export(&job, &dir, &mut shutdown).await,
        };
        let _ = tokio::fs::remove_dir_all(&dir).await;
        result
    }

    async fn run_in(
        &self,
        job: &job::Model,
        spec: &JobSpec,
        dir: &Path,
        out: &Path,
        shutdown: &mut Shutdown,
    ) -> Result<()> {
        let db = &self.services.db;
        let blobs = &self.services.blobs;
        let version = |id: Option<i64>| async move {
            let id = id.ok_or_else(|| Error::internal("a queued job has no dataset version"))?;
            dataset_version::Entity::find_by_id(id)
                .one(db)
                .await?
                .ok_or_else(|| Error::internal("the job's dataset version is gone"))
        };
        let data = version(job.dataset_version_id).await?;
        let train = dir.join("train.jsonl");
        blobs.get_file(&data.train_key, &train).await?;
        // An API job's validation file is used whole: its version put
        // every example in its training split.
        let validation = if job.validation_dataset_version_id.is_some() {
            let v = dir.join("validation.jsonl");
            let whole = version(job.validation_dataset_version_id).await?;
            blobs.get_file(&whole.train_key, &v).await?;
            Some(v)
        } else if data.validation_count > 0 {
            let v = dir.join("validation.jsonl");
            blobs.get_file(&data.validation_key, &v).await?;
            Some(v)
        } else {
            None
        };
        let config = dir.join("train-config.json");
        tokio::fs::write(&config, serde_json::to_vec_pretty(&spec.config)?)
            .await
            .map_err(|e| Error::internal(format!("{}: {e}", config.display())))?;
        if let Some(last) = job_checkpoint::Entity::find()
            .filter(job_checkpoint::Column::JobId.eq(job.id))
            .order_by_desc(job_checkpoint::Column::Step)
            .one(db)
            .await?
        {
            let m: Manifest = serde_json::from_str(&last.manifest)?;
            for f in &m.files {
                blobs
                    .get_file(&f.key, &out.join(&m.folder).join(&f.path))
                    .await?;
            }
        }
        let models_dir = self.services.config.models_dir.clone();
        let builtin = self.options.builtin_models.clone();
        let name = spec.base_model.clone();
        let model = tokio::task::spawn_blocking(move || {
            crate::models::engine_folder(&models_dir, &builtin, &name)
        })
        .await??;
        let redact = Redact::new(
            out,
            dir,
            &model,
            &spec.base_model,
            &[
                &self.options.work_dir,
                &self.options.builtin_models,
                &self.services.config.models_dir,
                &self.services.config.data_dir,
            ],
        );

        let mut cmd = tokio::process::Command::new(&self.options.train_bin);
        match (self.device.kind, self.device.index) {
            (DeviceKind::Cuda, Some(i)) if !self.declared => {
                cmd.arg("--device")
                    .arg("cuda")
                    .env("CUDA_VISIBLE_DEVICES", i.to_string());
            }
            _ => {
                cmd.arg("--device").arg("cpu");
            }
        }
        cmd.arg("train")
            .arg("--model")
            .arg(&model)
            .arg("--train")
            .arg(&train)
            .arg("--config")
            .arg(&config)
            .arg("--out")
            .arg(out)
            .arg("--stop-on-stdin-eof")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(v) = &validation {
            cmd.arg("--validation").arg(v);
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(engine = %self.options.train_bin.display(), error = %e, job_id = job.id, "the training engine could not be started");
                let reason = "The training engine could not be started on its worker. An administrator can find why in the worker's log.".to_owned();
                return self.fail_system(job.id, reason).await;
            }
        };
        let mut stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Error::internal("no stdout"))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| Error::internal("no stderr"))?;
        let mut lines = BufReader::new(stdout).lines();
        let mut errors = BufReader::new(stderr).lines();
        let mut stderr_open = true;
        let mut tail: VecDeque<String> = VecDeque::new();
        let mut beat = tokio::time::interval(self.options.lease / 3);
        beat.tick().await;
        let mut stop: Option<Stop> = None;
        let mut failed: Option<(Cause, String)> = None;
        let mut finished: Option<(u64, Option<f64>)> = None;
        // The engine stopped early without being asked (a signal from
        // outside): its checkpoint is stored, so the job goes back.
        let mut interrupted = false;
        let mut last_loss: Option<f64> = None;
        let mut speeds: Vec<f64> = Vec::new();

        loop {
            tokio::select! {
                line = lines.next_line() => {
                    let Ok(Some(line)) = line else { break };
                    let event = match Event::from_line(&line) {
                        Ok(e) => e,
                        Err(e) => {
                            tracing::warn!(error = %e, line = %line.chars().take(200).collect::<String>(), "malformed event line from the engine; skipped");
                            continue;
                        }
                    };
                    // People see it without this machine's paths.
                    if !self.emit(job.id, &JobEventBody::Engine { event: redact.event(&event) }).await? {
                        return self.fenced(&mut child).await;
                    }
                    let progress = match &event {
                        Event::Started { total_steps, .. } => Progress { total_steps: Some(*total_steps as i64), ..Default::default() },
                        Event::Step { step, loss, tokens_per_s, .. } => {
                            last_loss = Some(*loss);
                            if tokens_per_s.is_finite() && *tokens_per_s > 0.0 {
                                speeds.push(*tokens_per_s);
                            }
                            Progress { step: Some(*step as i64), ..Default::default() }
                        }
                        Event::Checkpoint { step, path } => {
                            if !self.store_checkpoint(job.id, *step, Path::new(path)).await? {
                                return self.fenced(&mut child).await;
                            }
                            continue;
                        }
                        Event::Finished { step, best_eval_loss, reason } => {
                            finished = Some((*step, *best_eval_loss));
                            interrupted = reason == "cancelled";
                            continue;
                        }
                        Event::Failed { reason, cause } => {
                            failed = Some((*cause, redact.text(reason)));
                            continue;
                        }
                        _ => continue,
                    };
                    if !queue::progress(db, job.id, &self.id, progress).await? {
                        return self.fenced(&mut child).await;
                    }
                }
                line = errors.next_line(), if stderr_open => match line {
                    Ok(Some(l)) => {
                        tracing::debug!(target: "hone_train", "{l}");
                        if tail.len() == 20 { tail.pop_front(); }
                        tail.push_back(l);
                    }
                    _ => stderr_open = false,
                },
                _ = beat.tick() => match self.beat(job.id).await {
                    Ok(None) => return self.fenced(&mut child).await,
                    Ok(Some(lease)) if stop.is_none() || (stop != Some(Stop::Cancel) && lease.state == JobState::Cancelling) => {
                        let asked = match (lease.state, lease.stop) {
                            (JobState::Cancelling, _) => Some(Stop::Cancel),
                            (_, Some(StopRequest::Preempt)) => Some(Stop::Preempt),
                            (_, Some(StopRequest::Pause)) => Some(Stop::Pause),
                            _ => None,
                        };
                        if let Some(asked) = asked {
                            tracing::info!(why = ?asked, "the run is asked to stop: it checkpoints first");
                            stop = Some(asked);
                            stdin = None;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "renewing the lease failed"),
                },
                () = shutdown.wait(), if stop.is_none() => {
                    tracing::info!("server stopping: the run checkpoints and goes back to the queue");
                    stop = Some(Stop::Shutdown);
                    stdin = None;
                }
            }
        }
        drop(stdin);
        // Whatever stderr still holds explains the exit.
        while stderr_open {
            match errors.next_line().await {
                Ok(Some(l)) => {
                    if tail.len() == 20 {
                        tail.pop_front();
                    }
                    tail.push_back(l);
                }
                _ => stderr_open = false,
            }
        }
        let status = child
            .wait()
            .await
            .map_err(|e| Error::internal(format!("waiting for the engine: {e}")))?;
        // A cancel asked for while the last lines came in still counts.
        if stop != Some(Stop::Cancel) {
            let lease = queue::renew(db, job.id, &self.id, self.options.lease_ms()).await?;
            if lease.is_some_and(|l| l.state == JobState::Cancelling) {
                stop = Some(Stop::Cancel);
            } else if stop.is_none() && interrupted {
                stop = Some(Stop::Shutdown);
            }
        }
        // A run that reached its end while being asked to stop for a
        // preemption, a pause or a shutdown is simply done.
        if matches!(stop, Some(Stop::Preempt | Stop::Pause | Stop::Shutdown))
            && finished.is_some()
            && !interrupted
            && status.success()
        {
            stop = None;
        }
        match (stop, failed, finished) {
            (_, Some((cause, reason)), _) => {
                // The advice is the page's to add (it knows the device).
                self.end(
                    job.id,
                    End::Failed {
                        cause: cause.into(),
                        reason: reason.clone(),
                    },
                    JobState::Failed,
                    Some(reason),
                )
                .await
            }
            (Some(Stop::Shutdown), None, _) => {
                self.end(
                    job.id,
                    End::Requeue,
                    JobState::Queued,
                    Some("Hone was restarting: the job continues from its last checkpoint.".into()),
                )
                .await
            }
            (Some(Stop::Preempt), None, _) => {
                self.end(
                    job.id,
                    End::Requeue,
                    JobState::Queued,
                    Some("Gave its borrowed device back to a team within its guaranteed share: the job keeps its place and continues from its last checkpoint.".into()),
                )
                .await
            }
            (Some(Stop::Pause), None, _) => {
                self.end(
                    job.id,
                    End::Paused,
                    JobState::Paused,
                    Some("Paused by an administrator after a checkpoint; it continues from there when resumed.".into()),
                )
                .await
            }
            (Some(Stop::Cancel), None, _) => {
                let step = finished.map_or(0, |(s, _)| s);
                let outcome = serde_json::to_string(&Outcome::Cancelled { step })?;
                self.end(
                    job.id,
                    End::Cancelled { outcome },
                    JobState::Cancelled,
                    Some(format!("Stopped at step {step}; its checkpoint is kept.")),
                )
                .await
            }
            (None, None, Some((step, best))) if status.success() => {
                let files = self.store_results(job.id, spec, out).await?;
                let outcome = serde_json::to_string(&Outcome::Succeeded {
                    steps: step,
                    final_train_loss: last_loss,
                    best_eval_loss: best,
                    files,
                })?;
                speeds.sort_by(f64::total_cmp);
                let median = speeds.get(speeds.len() / 2).copied();
                self.end(
                    job.id,
                    End::Succeeded {
                        outcome,
                        tokens_per_s: median,
                    },
                    JobState::Succeeded,
                    None,
                )
                .await
            }
            _ => {
                let how = match (status.code(), exit_signal(&status)) {
                    (Some(code), _) => format!("exit status {code}"),
                    (None, Some(9)) => {
                        "killed (signal 9, often the system running out of memory)".into()
                    }
                    (None, Some(sig)) => format!("killed by signal {sig}"),
                    (None, None) => "an unknown exit".into(),
                };
                let last = redact.text(tail.back().map_or("", String::as_str));
                let reason = format!("The training engine stopped unexpectedly ({how}). {last}");
                self.fail_system(job.id, reason.trim().to_owned())
                .await
            }
        }
    }

    /// While running: the slot's own heartbeat (it is busy, not gone) and
    /// the job's lease; see [`queue::renew`].
    async fn beat(&self, job: i64) -> Result<Option<queue::Lease>> {
        if let Err(e) = self.heartbeat().await {
            tracing::warn!(error = %e, "worker heartbeat failed");
        }
        queue::renew(&self.services.db, job, &self.id, self.options.lease_ms()).await
    }

    /// Writes the job's end (fenced), then logs the state change.
    async fn end(&self, job: i64, end: End, state: JobState, note: Option<String>) -> Result<()> {
        if queue::finish(&self.services.db, job, &self.id, end).await? {
            self.log_state(job, state, note).await;
            self.services.notify_job_end(job).await;
            // The device is free: the scheduler decides again.
            self.services.queue_wake.notify_one();
        }
        Ok(())
    }

    /// Ends `job` as failed by the system, with `reason` for people.
    async fn fail_system(&self, job: i64, reason: String) -> Result<()> {
        let end = End::Failed {
            cause: StoredCause::System,
            reason: reason.clone(),
        };
        self.end(job, end, JobState::Failed, Some(reason)).await
    }

    /// Lost the lease: stop the child at once, write nothing more.
    async fn fenced(&self, child: &mut tokio::process::Child) -> Result<()> {
        tracing::warn!(worker = %self.id, "this worker lost the job's lease; stopping the run");
        let _ = child.start_kill();
        let _ = child.wait().await;
        Ok(())
    }

    /// Stores a checkpoint folder's files and records it; `false`: fenced.
    async fn store_checkpoint(&self, job: i64, step: u64, folder: &Path) -> Result<bool> {
        let files = match self.store_folder(folder).await {
            Ok(files) => files,
            // The engine keeps only its last `save_total_limit` folders: on
            // a fast run it may remove this one while it is being copied.
            // A newer checkpoint exists then, and is stored next.
            Err(e) if !tokio::fs::try_exists(folder).await.unwrap_or(true) => {
                tracing::info!(job, step, error = %e, "checkpoint removed by the engine before it was stored; a newer one follows");
                return Ok(true);
            }
            Err(e) => return Err(e),
        };
        let manifest = Manifest {
            folder: folder
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            files,
        };
        queue::checkpoint(
            &self.services.db,
            job,
            &self.id,
            step as i64,
            &serde_json::to_string(&manifest)?,
        )
        .await
    }

    /// Every file under `folder`, stored, with paths relative to it.
    async fn store_folder(&self, folder: &Path) -> Result<Vec<StoredFile>> {
        let root = folder.to_path_buf();
        let paths = tokio::task::spawn_blocking(move || list_files(&root))
            .await?
            .map_err(|e| Error::internal(format!("{}: {e}", folder.display())))?;
        let mut out = Vec::with_capacity(paths.len());
        for rel in paths {
            let stored = self.services.blobs.put_file(&folder.join(&rel)).await?;
            out.push(StoredFile {
                path: rel,
                key: stored.key,
                size: stored.size,
                sha256: stored.sha256,
            });
        }
        Ok(out)
    }

    /// The trained adapter (LoRA/QLoRA) or model folder (full), stored and
    /// recorded as the job's artifacts.
    async fn store_results(
        &self,
        job: i64,
        spec: &JobSpec,
        out: &Path,
    ) -> Result<Vec<ArtifactFile>> {
        let folder = if spec.method.adapters() {
            "adapter"
        } else {
            "model"
        };
        self.store_outputs(job, out, folder).await
    }

    /// Stores `out/folder`'s files as the job's artifacts (`folder/…`).
    async fn store_outputs(&self, job: i64, out: &Path, folder: &str) -> Result<Vec<ArtifactFile>> {
        let files = self.store_folder(&out.join(folder)).await?;
        let mut listed = Vec::with_capacity(files.len());
        for f in files {
            let path = format!("{folder}/{}", f.path);
            job_artifact::ActiveModel {
                job_id: Set(job),
                path: Set(path.clone()),
                size: Set(f.size as i64),
                sha256: Set(f.sha256.clone()),
                storage_key: Set(f.key),
                ..Default::default()
            }
            .insert(&self.services.db)
            .await?;
            listed.push(ArtifactFile {
                path,
                size: f.size,
                sha256: f.sha256,
            });
        }
        Ok(listed)
    }
}

/// Files under `root`, relative `/`-separated paths, sorted.
fn list_files(root: &Path) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in std::fs::read_dir(root.join(&rel))? {
            let entry = entry?;
            let path = rel.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                stack.push(path);
            } else {
                out.push(path.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(unix)]
fn exit_signal(status: &std::process::ExitStatus) -> Option<i32> {
    std::os::unix::process::ExitStatusExt::signal(status)
}

#[cfg(not(unix))]
fn exit_signal(_: &std::process::ExitStatus) -> Option<i32> {
    None
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
