//! An evaluation job on a worker slot: the trained files of its training
//! job and the test split of its dataset version are fetched from
//! storage, `hone-train evaluate` scores the tuned model against the base
//! (its progress events go to the job's log), and the report it writes is
//! stored as the job's one artifact, `evaluation/report.json`, exactly as
//! written: its SHA-256 is what a review is bound to.
//!
//! An evaluation has no checkpoints: stopped for a shutdown, a preemption
//! or a pause, it starts again from the first example when it runs again.

use super::{exit_signal, Stop, Worker};
use crate::entity::job::{self, StopRequest};
use crate::entity::{dataset_version, job_artifact};
use crate::error::{Error, Result};
use crate::jobs::queue::{self, End, Progress};
use crate::jobs::redact::Redact;
use crate::supervisor::Shutdown;
use hone_app::api::{JobEventBody, JobState};
use hone_protocol::evaluation::EvalSpec;
use hone_protocol::{DeviceKind, Event, Method, Outcome};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use std::collections::VecDeque;
use std::path::Path;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The report's path among the job's artifacts.
pub const REPORT_PATH: &str = "evaluation/report.json";

impl Worker {
    pub(super) async fn run_evaluation(
        &self,
        job: &job::Model,
        dir: &Path,
        shutdown: &mut Shutdown,
    ) -> Result<()> {
        let db = &self.services.db;
        let spec: EvalSpec = serde_json::from_str(&job.spec)?;
        let data = dataset_version::Entity::find_by_id(spec.dataset_version)
            .one(db)
            .await?
            .ok_or_else(|| Error::internal("the evaluated dataset version is gone"))?;
        let test = dir.join("test.jsonl");
        self.services.blobs.get_file(&data.test_key, &test).await?;
        // The training job's files, at their paths (`adapter/…`, `model/…`).
        let trained = dir.join("trained");
        for f in job_artifact::Entity::find()
            .filter(job_artifact::Column::JobId.eq(spec.train_job))
            .all(db)
            .await?
        {
            self.services
                .blobs
                .get_file(&f.storage_key, &trained.join(&f.path))
                .await?;
        }
        let models_dir = self.services.config.models_dir.clone();
        let builtin = self.options.builtin_models.clone();
        let name = spec.base_model.clone();
        let base = tokio::task::spawn_blocking(move || {
            crate::models::engine_folder(&models_dir, &builtin, &name)
        })
        .await??;

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
        cmd.arg("evaluate");
        if spec.method.adapters() {
            cmd.arg("--model")
                .arg(&base)
                .arg("--adapter")
                .arg(trained.join("adapter"))
                .arg("--base");
            if spec.method == Method::Qlora {
                cmd.arg("--nf4");
            }
        } else {
            // A full fine-tune is its own model; the base is the other.
            cmd.arg("--model")
                .arg(trained.join("model"))
                .arg("--base-model")
                .arg(&base);
        }
        let report = dir.join("report.json");
        cmd.arg("--test")
            .arg(&test)
            .arg("--seed")
            .arg(spec.seed.to_string())
            .arg("--resamples")
            .arg(spec.resamples.to_string())
            .arg("--max-new-tokens")
            .arg(spec.max_new_tokens.unwrap_or(0).to_string())
            .arg("--progress")
            .arg("--report")
            .arg(&report)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(engine = %self.options.train_bin.display(), error = %e, job_id = job.id, "the engine could not be started");
                let reason = "The evaluation engine could not be started on its worker. An administrator can find why in the worker's log.".to_owned();
                return self.fail_system(job.id, reason).await;
            }
        };
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
        let mut done = 0u64;
        loop {
            tokio::select! {
                line = lines.next_line() => {
                    let Ok(Some(line)) = line else { break };
                    let Ok(event @ Event::Evaluating { done: d, total }) = Event::from_line(&line) else {
                        tracing::warn!(line = %line.chars().take(200).collect::<String>(), "unexpected line from the evaluation; skipped");
                        continue;
                    };
                    done = d;
                    if !self.emit(job.id, &JobEventBody::Engine { event }).await? {
                        return self.fenced(&mut child).await;
                    }
                    let p = Progress { step: Some(d as i64), total_steps: Some(total as i64), ..Default::default() };
                    if !queue::progress(db, job.id, &self.id, p).await? {
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
                    Ok(Some(lease)) if stop.is_none() => {
                        stop = match (lease.state, lease.stop) {
                            (JobState::Cancelling, _) => Some(Stop::Cancel),
                            (_, Some(StopRequest::Preempt)) => Some(Stop::Preempt),
                            (_, Some(StopRequest::Pause)) => Some(Stop::Pause),
                            _ => None,
                        };
                        if stop.is_some() {
                            // Nothing to save: the evaluation starts again.
                            let _ = child.start_kill();
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "renewing the lease failed"),
                },
                () = shutdown.wait(), if stop.is_none() => {
                    stop = Some(Stop::Shutdown);
                    let _ = child.start_kill();
                }
            }
        }
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
        match stop {
            Some(Stop::Cancel) => {
                let outcome = serde_json::to_string(&Outcome::Cancelled { step: done })?;
                return self
                    .end(
                        job.id,
                        End::Cancelled { outcome },
                        JobState::Cancelled,
                        Some("The evaluation was stopped.".into()),
                    )
                    .await;
            }
            Some(Stop::Shutdown | Stop::Preempt) => {
                return self
                    .end(
                        job.id,
                        End::Requeue,
                        JobState::Queued,
                        Some("The evaluation was interrupted: it starts again when a device is free.".into()),
                    )
                    .await;
            }
            Some(Stop::Pause) => {
                return self
                    .end(
                        job.id,
                        End::Paused,
                        JobState::Paused,
                        Some(
                            "Paused by an administrator; the evaluation starts again when resumed."
                                .into(),
                        ),
                    )
                    .await;
            }
            None => {}
        }
        let written = status.success() && tokio::fs::try_exists(&report).await.unwrap_or(false);
        if !written {
            let how = match (status.code(), exit_signal(&status)) {
                (Some(code), _) => format!("exit status {code}"),
                (None, Some(9)) => {
                    "killed (signal 9, often the system running out of memory)".into()
                }
                (None, Some(sig)) => format!("killed by signal {sig}"),
                (None, None) => "an unknown exit".into(),
            };
            let redact = Redact::new(
                &dir.join("out"),
                dir,
                &base,
                &spec.base_model,
                &[
                    &self.options.work_dir,
                    &self.options.builtin_models,
                    &self.services.config.models_dir,
                    &self.services.config.data_dir,
                ],
            );
            let last = redact.text(tail.back().map_or("", String::as_str));
            let reason = format!("The evaluation stopped unexpectedly ({how}). {last}")
                .trim()
                .to_owned();
            return self.fail_system(job.id, reason).await;
        }
        let out = dir.join("out");
        let folder = out.join("evaluation");
        tokio::fs::create_dir_all(&folder)
            .await
            .map_err(|e| Error::internal(format!("{}: {e}", folder.display())))?;
        tokio::fs::rename(&report, folder.join("report.json"))
            .await
            .map_err(|e| Error::internal(format!("{}: {e}", report.display())))?;
        let files = self.store_outputs(job.id, &out, "evaluation").await?;
        let outcome = serde_json::to_string(&Outcome::Succeeded {
            steps: done,
            final_train_loss: None,
            best_eval_loss: None,
            files,
        })?;
        self.end(
            job.id,
            End::Succeeded {
                outcome,
                tokens_per_s: None,
            },
            JobState::Succeeded,
            None,
        )
        .await
    }
}
