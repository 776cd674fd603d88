//! Serving approved models: this process's inference services. Each is a
//! `hone-train serve` child (the web server never links Burn) holding one
//! base model — a base from the models folder, or a full fine-tune's own
//! folder — and answering the requests this process routes to it over
//! JSON lines ([`hone_protocol::serve`]). A service starts on the first
//! request for its base and is started again after it dies; the requests
//! it was answering then end with an error.
//!
//! An approved LoRA version is served as its base plus its adapter folder,
//! which is written out of storage once (`data/serving/`) and applied by
//! the service per request.
//!
//! Not yet here (issue 17): services on GPU workers, dynamic batching,
//! merged deployments, rate and token limits, the playground.

use crate::entity::{job, job_artifact};
use crate::error::{Error, Result};
use crate::state::Services;
use hone_protocol::serve::{Generate, Reply, Request};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

/// How long a service may take to load its base.
const START_LIMIT: std::time::Duration = std::time::Duration::from_secs(300);

/// One running `hone-train serve`.
struct Engine {
    input: tokio::sync::Mutex<tokio::process::ChildStdin>,
    /// Open requests: where their replies go.
    pending: Mutex<HashMap<String, mpsc::UnboundedSender<Reply>>>,
    /// Requests being answered or waiting (at most `serve_queue`).
    inflight: AtomicUsize,
    alive: AtomicBool,
    _child: Mutex<tokio::process::Child>,
}

/// This process's services, by the folder of the base each holds.
#[derive(Default)]
pub struct Serving {
    engines: tokio::sync::Mutex<HashMap<PathBuf, Arc<Engine>>>,
    next_id: AtomicU64,
    /// Each API key's use in the current minute.
    pub limits: Limits,
}

/// One key's requests and tokens in one minute (fixed windows).
#[derive(Clone, Copy, Debug, Default)]
struct Window {
    minute: i64,
    requests: u64,
    tokens: u64,
}

/// Per-key request and token limits, per minute, in this process.
#[derive(Debug, Default)]
pub struct Limits {
    windows: Mutex<HashMap<i64, Window>>,
}

impl Limits {
    /// Admits one request of `key` at `now_ms`, or says how many seconds
    /// until its minute ends (when it has made `rpm` requests, or used
    /// `tpm` tokens, in it).
    pub fn admit(&self, key: i64, now_ms: i64, rpm: u64, tpm: u64) -> std::result::Result<(), u64> {
        let minute = now_ms.div_euclid(60_000);
        let Ok(mut w) = self.windows.lock() else {
            return Ok(());
        };
        // Old minutes are forgotten as they pass.
        if w.len() > 10_000 {
            w.retain(|_, v| v.minute == minute);
        }
        let e = w.entry(key).or_default();
        if e.minute != minute {
            *e = Window {
                minute,
                ..Window::default()
            };
        }
        if e.requests >= rpm || e.tokens >= tpm {
            let left_ms = (minute + 1) * 60_000 - now_ms;
            return Err((left_ms as u64).div_ceil(1000));
        }
        e.requests += 1;
        Ok(())
    }

    /// Counts `tokens` (prompt and answer) against `key`'s minute.
    pub fn spend(&self, key: i64, now_ms: i64, tokens: u64) {
        let minute = now_ms.div_euclid(60_000);
        if let Ok(mut w) = self.windows.lock() {
            let e = w.entry(key).or_default();
            if e.minute == minute {
                e.tokens += tokens;
            }
        }
    }
}

/// What a chat request runs on: a base folder and, for a LoRA version,
/// its adapter folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub base: PathBuf,
    pub adapter: Option<PathBuf>,
}

/// A request being answered: its replies, in order; dropped before its
/// end, it is cancelled (a client that went away frees the service).
pub struct Answering {
    pub replies: mpsc::UnboundedReceiver<Reply>,
    id: String,
    engine: Arc<Engine>,
    finished: bool,
}

impl Answering {
    /// The next reply; `None` once the answer has ended.
    pub async fn next(&mut self) -> Option<Reply> {
        if self.finished {
            return None;
        }
        let r = self.replies.recv().await;
        if matches!(r, None | Some(Reply::Done { .. } | Reply::Error { .. })) {
            self.finished = true;
            self.engine.inflight.fetch_sub(1, Ordering::AcqRel);
        }
        r
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        self.engine.inflight.fetch_sub(1, Ordering::AcqRel);
        let engine = self.engine.clone();
        let id = self.id.clone();
        if let Ok(mut p) = engine.pending.lock() {
            p.remove(&id);
        }
        tokio::spawn(async move {
            let line =
                serde_json::to_string(&Request::Cancel { id: id.clone() }).unwrap_or_default();
            let mut input = engine.input.lock().await;
            let _ = input.write_all(format!("{line}\n").as_bytes()).await;
            let _ = input.flush().await;
            tracing::info!(request = %id, "generation cancelled: the client went away");
        });
    }
}

impl std::fmt::Debug for Serving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serving").finish_non_exhaustive()
    }
}

impl Services {
    /// Starts answering `g` on `target` (its `id` and `adapter` are set
    /// here); `Busy` while the service has `serve_queue` requests already.
    pub async fn generate(&self, target: &Target, mut g: Generate) -> Result<Answering> {
        let engine = self.engine_for(&target.base).await?;
        let limit = self.config.serve_queue.max(1);
        if engine.inflight.fetch_add(1, Ordering::AcqRel) >= limit {
            engine.inflight.fetch_sub(1, Ordering::AcqRel);
            return Err(hone_app::api::AppError::Busy(format!(
                "This model has {limit} requests waiting or being answered already: try again in a moment."
            ))
            .into());
        }
        // From here `Answering` owns the place in the queue.
        let mut answering = Answering {
            replies: mpsc::unbounded_channel().1,
            id: String::new(),
            engine: engine.clone(),
            finished: false,
        };
        let n = self.serving.next_id.fetch_add(1, Ordering::Relaxed);
        g.id = format!("r{n}");
        g.adapter.clone_from(&target.adapter);
        let (tx, rx) = mpsc::unbounded_channel();
        answering.replies = rx;
        answering.id.clone_from(&g.id);
        engine
            .pending
            .lock()
            .map_err(|_| Error::internal("serving: a lock was poisoned"))?
            .insert(g.id.clone(), tx);
        let line = serde_json::to_string(&Request::Generate(g.clone()))?;
        {
            let mut input = engine.input.lock().await;
            input
                .write_all(format!("{line}\n").as_bytes())
                .await
                .map_err(|e| {
                    Error::internal(format!("serving: the engine took no request: {e}"))
                })?;
            input.flush().await.map_err(|e| {
                Error::internal(format!("serving: the engine took no request: {e}"))
            })?;
        }
        Ok(answering)
    }

    /// The running service for `base`, started when there is none. The
    /// map stays locked while a service loads its base, so a burst of
    /// first requests starts one service, not many (other bases wait for
    /// that load too: one per process is the common case today).
    async fn engine_for(&self, base: &Path) -> Result<Arc<Engine>> {
        let mut engines = self.serving.engines.lock().await;
        if let Some(e) = engines.get(base) {
            if e.alive.load(Ordering::Acquire) {
                return Ok(e.clone());
            }
        }
        let mut child = tokio::process::Command::new(&self.config.train_bin)
            .args(["--device", "cpu", "serve", "--model"])
            .arg(base)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                tracing::error!(engine = %self.config.train_bin.display(), error = %e, "the inference service could not be started");
                Error::internal("the inference service could not be started")
            })?;
        let input = child
            .stdin
            .take()
            .ok_or_else(|| Error::internal("no stdin"))?;
        let mut lines = BufReader::new(
            child
                .stdout
                .take()
                .ok_or_else(|| Error::internal("no stdout"))?,
        )
        .lines();
        let ready = tokio::time::timeout(START_LIMIT, lines.next_line())
            .await
            .map_err(|_| Error::internal("the inference service did not load its model in time"))?
            .map_err(|e| Error::internal(format!("the inference service: {e}")))?;
        match ready.as_deref().map(serde_json::from_str::<Reply>) {
            Some(Ok(Reply::Ready { model, context })) => {
                tracing::info!(%model, context, "inference service ready");
            }
            other => {
                tracing::error!(?other, base = %base.display(), "the inference service did not start");
                return Err(Error::internal("the inference service did not start"));
            }
        }
        let engine = Arc::new(Engine {
            input: tokio::sync::Mutex::new(input),
            pending: Mutex::default(),
            inflight: AtomicUsize::new(0),
            alive: AtomicBool::new(true),
            _child: Mutex::new(child),
        });
        let reader = engine.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(reply) = serde_json::from_str::<Reply>(&line) else {
                    tracing::warn!(%line, "the inference service wrote a line that is not a reply");
                    continue;
                };
                let (id, last) = match &reply {
                    Reply::Ready { .. } => continue,
                    Reply::Started { id, .. } | Reply::Delta { id, .. } => (id.clone(), false),
                    Reply::Done { id, .. } | Reply::Error { id, .. } => (id.clone(), true),
                };
                if let Ok(mut p) = reader.pending.lock() {
                    if let Some(tx) = p.get(&id) {
                        let _ = tx.send(reply);
                    }
                    if last {
                        p.remove(&id);
                    }
                }
            }
            reader.alive.store(false, Ordering::Release);
            tracing::error!("the inference service ended; the next request starts it again");
            if let Ok(mut p) = reader.pending.lock() {
                for (id, tx) in p.drain() {
                    let _ = tx.send(Reply::Error {
                        id,
                        code: hone_protocol::serve::ErrorCode::Internal,
                        message: "the inference service stopped while answering".into(),
                    });
                }
            }
        });
        engines.insert(base.to_path_buf(), engine.clone());
        Ok(engine)
    }

    /// What training job `j` (succeeded) is served as: its base and its
    /// adapter folder, or its own folder (a full fine-tune), written out
    /// of storage the first time.
    pub async fn serving_target(&self, j: &job::Model) -> Result<Target> {
        let files = job_artifact::Entity::find()
            .filter(job_artifact::Column::JobId.eq(j.id))
            .all(&self.db)
            .await?;
        let adapter: Vec<_> = files
            .iter()
            .filter(|f| f.path.starts_with("adapter/"))
            .collect();
        let (prefix, chosen) = if adapter.is_empty() {
            (
                "model/",
                files
                    .iter()
                    .filter(|f| f.path.starts_with("model/"))
                    .collect::<Vec<_>>(),
            )
        } else {
            ("adapter/", adapter)
        };
        if chosen.is_empty() {
            return Err(Error::internal(format!(
                "job {} has no trained files to serve",
                j.id
            )));
        }
        let dir = self
            .config
            .data_dir
            .join("serving")
            .join(format!("job-{}", j.id));
        if !tokio::fs::try_exists(&dir).await.unwrap_or(false) {
            let tmp = self.config.data_dir.join("serving").join(format!(
                ".tmp-job-{}-{}",
                j.id,
                uuid::Uuid::new_v4().simple()
            ));
            for f in &chosen {
                let rel = f.path.trim_start_matches(prefix);
                self.blobs.get_file(&f.storage_key, &tmp.join(rel)).await?;
            }
            // Another request may have written it meanwhile: the same files.
            if tokio::fs::rename(&tmp, &dir).await.is_err() {
                let _ = tokio::fs::remove_dir_all(&tmp).await;
            }
        }
        if prefix == "model/" {
            return Ok(Target {
                base: dir,
                adapter: None,
            });
        }
        Ok(Target {
            base: self.base_folder(&j.base_model).await?,
            adapter: Some(dir),
        })
    }

    /// The folder the engine reads base model `name` from.
    pub async fn base_folder(&self, name: &str) -> Result<PathBuf> {
        let models = self.config.models_dir.clone();
        let builtin = self.config.data_dir.join("builtin-models");
        let name = name.to_owned();
        Ok(tokio::task::spawn_blocking(move || {
            crate::models::engine_folder(&models, &builtin, &name)
        })
        .await??)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_gets_its_requests_and_tokens_a_minute() {
        let l = Limits::default();
        let t = 10 * 60_000 + 15_000; // 15 s into a minute
        assert_eq!(l.admit(1, t, 2, 100), Ok(()));
        assert_eq!(l.admit(1, t, 2, 100), Ok(()));
        assert_eq!(
            l.admit(1, t, 2, 100),
            Err(45),
            "the third waits for the minute's end"
        );
        assert_eq!(l.admit(2, t, 2, 100), Ok(()), "another key has its own");
        assert_eq!(l.admit(1, t + 45_000, 2, 100), Ok(()), "a new minute");
        l.spend(2, t, 100);
        assert_eq!(l.admit(2, t + 1, 2, 100), Err(45), "its tokens are used up");
        assert_eq!(
            l.admit(2, t + 44_999, 2, 100),
            Err(1),
            "a millisecond left: one second"
        );
    }
}
