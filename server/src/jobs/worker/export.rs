//! An export job on a worker slot, queued once a version is approved
//! (`publishing::Services::open_exports`): the base model and the
//! training job's files are fetched, `hone-train export` folds the
//! adapter into the base (the merged Hugging Face folder, in the base's
//! dtype) and writes GGUF f16 and q8_0 from that folder; the model card is
//! written from the facts; each becomes a job artifact, and each download
//! (adapter, merged, GGUF) is recorded with its archive's SHA-256.
//!
//! The card and the adapter's download come first (the adapter is complete
//! already). The engine runs on the CPU (merging is a sum per weight; the
//! file is streamed), watched against the worker's
//! `HONE_EXPORT_MEMORY_LIMIT` when one is set. Killed for memory, the job
//! fails with the estimate and what to do; nothing half-written is
//! offered: the merged and GGUF downloads are recorded only after every
//! file is stored. An architecture or tokenizer llama.cpp
//! does not know leaves the GGUF downloads out, with the engine's reason
//! in the job's log and on the version's page.

use super::{exit_signal, Stop, Worker};
use crate::entity::job::{self, StopRequest};
use crate::entity::{job_artifact, model_version, project};
use crate::error::{Error, Result};
use crate::jobs::queue::{End, Progress};
use crate::jobs::redact::Redact;
use crate::jobs::{queue, state_event};
use crate::publishing::{self, ExportSpec};
use crate::supervisor::Shutdown;
use hone_app::api::JobState;
use hone_protocol::Outcome;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Why the GGUF files were not made, among the export's artifacts.
pub const GGUF_REFUSED_PATH: &str = "gguf/REFUSED.txt";

/// How one run of the engine ended.
enum Ran {
    Done,
    Stopped(Stop),
    Failed { how: String, last: String },
    Fenced,
}

impl Worker {
    pub(super) async fn run_export(
        &self,
        job: &job::Model,
        dir: &Path,
        shutdown: &mut Shutdown,
    ) -> Result<()> {
        let db = &self.services.db;
        let spec: ExportSpec = serde_json::from_str(&job.spec)?;
        let v = model_version::Entity::find_by_id(spec.version_id)
            .one(db)
            .await?
            .ok_or_else(|| Error::internal("the exported version is gone"))?;
        let p = project::Entity::find_by_id(v.project_id)
            .one(db)
            .await?
            .ok_or_else(|| Error::internal("the exported version's project is gone"))?;
        let trained_files = job_artifact::Entity::find()
            .filter(job_artifact::Column::JobId.eq(spec.train_job))
            .all(db)
            .await?;
        let trained = dir.join("trained");
        for f in &trained_files {
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
        let need = self
            .services
            .model_config(&spec.base_model)
            .await
            .ok()
            .map(|c| publishing::merge_bytes(&c));
        let out = dir.join("out");
        let title = format!("{} v{}", p.name, v.number);

        // 0. The card, and the adapter's download: complete before any
        //    merge, so an export that fails later still offers the adapter
        //    (and nothing half-written). A run after an interruption starts
        //    from nothing.
        job_artifact::Entity::delete_many()
            .filter(job_artifact::Column::JobId.eq(job.id))
            .exec(db)
            .await?;
        let card = self.services.model_card(&v).await?;
        let card_dir = out.join("card");
        tokio::fs::create_dir_all(&card_dir)
            .await
            .map_err(|e| Error::internal(format!("{}: {e}", card_dir.display())))?;
        tokio::fs::write(card_dir.join("README.md"), card.as_bytes())
            .await
            .map_err(|e| Error::internal(format!("{}: {e}", card_dir.display())))?;
        let mut files = self.store_outputs(job.id, &out, "card").await?;
        let card_row = job_artifact::Entity::find()
            .filter(job_artifact::Column::JobId.eq(job.id))
            .filter(job_artifact::Column::Path.eq("card/README.md"))
            .one(db)
            .await?
            .ok_or_else(|| Error::internal("the card was not stored"))?;
        let t = crate::state::now();
        let manifest = |format: &str, files: Vec<(String, u64, String)>| {
            publishing::manifest(
                &p.name,
                v.number,
                format,
                t,
                &card_row.storage_key,
                card_row.size as u64,
                files,
            )
        };
        if spec.method.adapters() {
            self.services
                .package(
                    &v,
                    "adapter",
                    manifest(
                        "adapter",
                        publishing::files_under(&trained_files, "adapter"),
                    ),
                )
                .await?;
        }

        // 1. The merged folder (an adapter folded in; a full fine-tune is
        //    its own merged folder already).
        let merged: PathBuf = if spec.method.adapters() {
            let target = out.join("merged");
            let mut args: Vec<std::ffi::OsString> = vec![
                "--model".into(),
                base.clone().into(),
                "--adapter".into(),
                trained.join("adapter").into(),
                "--merged".into(),
                target.clone().into(),
            ];
            if spec.method == hone_protocol::Method::Qlora {
                args.push("--nf4".into());
            }
            match self.engine(job.id, &args, dir, &base, shutdown).await? {
                Ran::Done => target,
                other => return self.ended(job, other, need, "merge").await,
            }
        } else {
            trained.join("model")
        };
        self.note(job.id, "Merged; writing GGUF (f16, q8_0).")
            .await?;

        // 2. GGUF from the merged folder.
        let gguf_dir = out.join("gguf");
        tokio::fs::create_dir_all(&gguf_dir)
            .await
            .map_err(|e| Error::internal(format!("{}: {e}", gguf_dir.display())))?;
        let args: Vec<std::ffi::OsString> = vec![
            "--model".into(),
            merged.clone().into(),
            "--gguf".into(),
            gguf_dir.join("model-f16.gguf").into(),
            "--gguf-type".into(),
            "f16".into(),
            "--gguf".into(),
            gguf_dir.join("model-q8_0.gguf").into(),
            "--gguf-type".into(),
            "q8_0".into(),
            "--name".into(),
            title.clone().into(),
        ];
        match self.engine(job.id, &args, dir, &base, shutdown).await? {
            Ran::Done => {}
            Ran::Failed { last, .. }
                if last.contains("llama.cpp does not know")
                    || last.contains("GGUF export cannot") =>
            {
                // Not an error of the job: that format is not offered.
                for f in ["model-f16.gguf", "model-q8_0.gguf"] {
                    let _ = tokio::fs::remove_file(gguf_dir.join(f)).await;
                }
                let reason = last.trim_start_matches("Error: ").to_owned();
                tokio::fs::write(gguf_dir.join("REFUSED.txt"), &reason)
                    .await
                    .map_err(|e| Error::internal(format!("{}: {e}", gguf_dir.display())))?;
                self.note(job.id, &format!("No GGUF: {reason}")).await?;
            }
            other => return self.ended(job, other, need, "GGUF export").await,
        }

        // 3. Every file stored, then their downloads.
        if spec.method.adapters() {
            files.extend(self.store_outputs(job.id, &out, "merged").await?);
        }
        files.extend(self.store_outputs(job.id, &out, "gguf").await?);
        let mine = job_artifact::Entity::find()
            .filter(job_artifact::Column::JobId.eq(job.id))
            .all(db)
            .await?;
        let mut packages = Vec::new();
        if spec.method.adapters() {
            packages.push(("merged", publishing::files_under(&mine, "merged")));
        } else {
            packages.push(("merged", publishing::files_under(&trained_files, "model")));
        }
        for (format, file) in [
            ("gguf-f16", "model-f16.gguf"),
            ("gguf-q8_0", "model-q8_0.gguf"),
        ] {
            let f: Vec<_> = publishing::files_under(&mine, "gguf")
                .into_iter()
                .filter(|(path, _, _)| path == file)
                .collect();
            if !f.is_empty() {
                packages.push((format, f));
            }
        }
        for (format, f) in packages {
            self.services
                .package(&v, format, manifest(format, f))
                .await?;
        }
        let outcome = serde_json::to_string(&Outcome::Succeeded {
            steps: 0,
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
            Some("Exported: the downloads are on the version's page.".into()),
        )
        .await
    }

    async fn note(&self, job: i64, text: &str) -> Result<()> {
        queue::append(
            &self.services.db,
            job,
            Some(&self.id),
            &state_event(JobState::Running, Some(text.to_owned())),
        )
        .await?;
        Ok(())
    }

    /// The end of an export whose engine run did not finish.
    async fn ended(&self, job: &job::Model, ran: Ran, need: Option<u64>, what: &str) -> Result<()> {
        match ran {
            Ran::Done => Ok(()),
            Ran::Fenced => Ok(()),
            Ran::Stopped(Stop::Cancel) => {
                let outcome = serde_json::to_string(&Outcome::Cancelled { step: 0 })?;
                self.end(
                    job.id,
                    End::Cancelled { outcome },
                    JobState::Cancelled,
                    Some("The export was stopped.".into()),
                )
                .await
            }
            Ran::Stopped(Stop::Pause) => {
                self.end(
                    job.id,
                    End::Paused,
                    JobState::Paused,
                    Some(
                        "Paused by an administrator; the export starts again when resumed.".into(),
                    ),
                )
                .await
            }
            Ran::Stopped(_) => {
                self.end(
                    job.id,
                    End::Requeue,
                    JobState::Queued,
                    Some(
                        "The export was interrupted: it starts again when a device is free.".into(),
                    ),
                )
                .await
            }
            Ran::Failed { how, last } => {
                let killed = how.contains("signal 9");
                let reason = match (killed, need) {
                    (true, Some(bytes)) => format!(
                        "The {what} ran out of memory ({how}): it needs about {:.1} GiB (the model in f32 and one tensor being written). Run it on a worker with more memory, or download the adapter and merge it elsewhere.",
                        bytes as f64 / f64::from(1u32 << 30)
                    ),
                    _ => format!("The {what} stopped unexpectedly ({how}). {last}")
                        .trim()
                        .to_owned(),
                };
                self.fail_system(job.id, reason).await
            }
        }
    }

    /// Runs `hone-train --device cpu export ARGS`, renewing the lease and
    /// honouring cancel, pause, preemption and shutdown.
    async fn engine(
        &self,
        job: i64,
        args: &[std::ffi::OsString],
        dir: &Path,
        base: &Path,
        shutdown: &mut Shutdown,
    ) -> Result<Ran> {
        let mut cmd = tokio::process::Command::new(&self.options.train_bin);
        cmd.arg("--device")
            .arg("cpu")
            .arg("export")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(engine = %self.options.train_bin.display(), error = %e, job_id = job, "the engine could not be started");
                return Ok(Ran::Failed {
                    how: "the engine could not be started".into(),
                    last: "An administrator can find why in the worker's log.".into(),
                });
            }
        };
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| Error::internal("no stderr"))?;
        let mut errors = BufReader::new(stderr).lines();
        let mut tail: VecDeque<String> = VecDeque::new();
        let mut beat = tokio::time::interval(self.options.lease / 3);
        beat.tick().await;
        let mut stop: Option<Stop> = None;
        // This worker's limit on an export's memory: the engine's resident
        // size, looked at ten times a second.
        let limit = self.options.export_memory_limit;
        let mut watch = tokio::time::interval(std::time::Duration::from_millis(100));
        let mut over: Option<u64> = None;
        loop {
            tokio::select! {
                _ = watch.tick(), if limit.is_some() && over.is_none() && stop.is_none() => {
                    if let (Some(max), Some(rss)) = (limit, child.id().and_then(resident_bytes)) {
                        if rss > max {
                            over = Some(rss);
                            let _ = child.start_kill();
                        }
                    }
                }
                line = errors.next_line() => match line {
                    Ok(Some(l)) => {
                        tracing::debug!(target: "hone_train", "{l}");
                        if tail.len() == 20 { tail.pop_front(); }
                        tail.push_back(l);
                    }
                    _ => break,
                },
                _ = beat.tick() => match self.beat(job).await {
                    Ok(None) => {
                        self.fenced(&mut child).await?;
                        return Ok(Ran::Fenced);
                    }
                    Ok(Some(lease)) if stop.is_none() => {
                        stop = match (lease.state, lease.stop) {
                            (JobState::Cancelling, _) => Some(Stop::Cancel),
                            (_, Some(StopRequest::Preempt)) => Some(Stop::Preempt),
                            (_, Some(StopRequest::Pause)) => Some(Stop::Pause),
                            _ => None,
                        };
                        if stop.is_some() {
                            let _ = child.start_kill();
                        }
                        let _ = queue::progress(&self.services.db, job, &self.id, Progress::default()).await;
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
        let status = child
            .wait()
            .await
            .map_err(|e| Error::internal(format!("waiting for the engine: {e}")))?;
        if let Some(s) = stop {
            return Ok(Ran::Stopped(s));
        }
        if let (Some(rss), Some(max)) = (over, limit) {
            return Ok(Ran::Failed {
                how: format!(
                    "killed (signal 9) at {} MiB, over this worker's export memory limit of {} MiB",
                    rss >> 20,
                    max >> 20
                ),
                last: String::new(),
            });
        }
        if status.success() {
            return Ok(Ran::Done);
        }
        let how = match (status.code(), exit_signal(&status)) {
            (Some(code), _) => format!("exit status {code}"),
            (None, Some(9)) => "killed (signal 9, often the system running out of memory)".into(),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            (None, None) => "an unknown exit".into(),
        };
        let redact = Redact::new(
            &dir.join("out"),
            dir,
            base,
            "the base model",
            &[
                &self.options.work_dir,
                &self.options.builtin_models,
                &self.services.config.models_dir,
                &self.services.config.data_dir,
            ],
        );
        let last = redact.text(tail.back().map_or("", String::as_str));
        Ok(Ran::Failed { how, last })
    }
}

/// Process `pid`'s resident memory, from `/proc` (`None` elsewhere, or
/// once it has gone).
fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}
