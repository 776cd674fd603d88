//! Model versions and their evaluation. Each training job that succeeds
//! becomes a version of its project's model (numbered 1, 2, … per
//! project), with the hashes a review is bound to — the dataset version's
//! splits, every setting, the trained files — and an evaluation job on the
//! same queue and workers (`jobs/worker/evaluate.rs`) that scores it on its
//! test split against the base model. The scheduler's leader opens them
//! ([`Services::open_versions`], each round): a crash between a training
//! job's end and its evaluation loses nothing, and the unique training job
//! per version makes a second opener's attempt a no-op.

use crate::entity::job::{self, JobKind, StoredState};
use crate::entity::review::{self, Decision};
use crate::entity::{dataset_version, job_artifact, model_version};
use crate::error::{Error, Result};
use crate::jobs::{queue, state_event, MAX_ATTEMPTS};
use crate::state::{now, Services};
use hone_app::api::{JobState, VersionRow, VersionState};
use hone_protocol::evaluation::EvalSpec;
use hone_protocol::{DeviceKind, JobSpec};

use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    TransactionTrait,
};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// Bootstrap resamples of every evaluation.
pub const RESAMPLES: u32 = 1000;

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// One hash for a set of files: SHA-256 over their `path sha256` lines,
/// sorted by path.
pub fn files_hash(files: &[(String, String)]) -> String {
    let mut lines: Vec<String> = files.iter().map(|(p, h)| format!("{p} {h}\n")).collect();
    lines.sort();
    sha256_hex(lines.concat().as_bytes())
}

/// Whether decision `r` was made on exactly what version `v` is now: its
/// data, settings and trained files, and the evaluation report whose
/// SHA-256 is `report`.
pub fn bound_to(r: &review::Model, v: &model_version::Model, report: &str) -> bool {
    r.dataset_sha256 == v.dataset_sha256
        && r.settings_sha256 == v.settings_sha256
        && r.artifact_sha256 == v.artifact_sha256
        && r.report_sha256 == report
}

/// A dataset version's hash: its three splits'.
pub fn dataset_hash(d: &dataset_version::Model) -> String {
    sha256_hex(
        format!(
            "train {}\nvalidation {}\ntest {}\n",
            d.train_sha256, d.validation_sha256, d.test_sha256
        )
        .as_bytes(),
    )
}

impl Services {
    /// Opens a version, with its evaluation queued, for every training job
    /// that succeeded and has none (at most 20 a call); returns how many.
    pub async fn open_versions(&self) -> Result<usize> {
        let sql = "SELECT * FROM jobs WHERE kind = 'train' AND state = 'succeeded' \
                   AND deleted_at IS NULL AND NOT EXISTS (SELECT 1 FROM model_versions v WHERE v.train_job_id = jobs.id) \
                   ORDER BY id LIMIT 20";
        let waiting = job::Entity::find()
            .from_raw_sql(queue::statement(&self.db, sql, vec![]))
            .all(&self.db)
            .await?;
        let mut opened = 0;
        for j in waiting {
            match self.open_version(&j).await {
                Ok(()) => opened += 1,
                // Another server's scheduler opened it first.
                Err(e) => {
                    tracing::warn!(job = j.id, error = %e, "a model version could not be opened")
                }
            }
        }
        if opened > 0 {
            self.hub.wake();
            self.queue_wake.notify_one();
        }
        Ok(opened)
    }

    async fn open_version(&self, j: &job::Model) -> Result<()> {
        let spec: JobSpec = serde_json::from_str(&j.spec)?;
        let dataset = j
            .dataset_version_id
            .ok_or_else(|| Error::internal("a succeeded job has no dataset version"))?;
        let d = dataset_version::Entity::find_by_id(dataset)
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::internal("a trained dataset version is gone"))?;
        let files: Vec<(String, String)> = job_artifact::Entity::find()
            .filter(job_artifact::Column::JobId.eq(j.id))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|a| (a.path, a.sha256))
            .collect();
        let eval = EvalSpec {
            base_model: spec.base_model.clone(),
            dataset_version: dataset,
            method: spec.method,
            train_job: j.id,
            seed: j.id as u64,
            resamples: RESAMPLES,
            max_new_tokens: None,
        };
        let (needs_cpu, needs_gpu) = self.eval_sizing(&spec).await;
        let t = now();
        let txn = self.db.begin().await?;
        let last: Option<i32> = model_version::Entity::find()
            .select_only()
            .column_as(model_version::Column::Number.max(), "n")
            .filter(model_version::Column::ProjectId.eq(j.project_id))
            .into_tuple::<Option<i32>>()
            .one(&txn)
            .await?
            .flatten();
        let number = last.unwrap_or(0) + 1;
        let e = job::ActiveModel {
            project_id: Set(j.project_id),
            dataset_version_id: Set(Some(dataset)),
            created_by: Set(j.created_by),
            base_model: Set(j.base_model.clone()),
            method: Set(j.method),
            spec: Set(serde_json::to_string(&eval)?),
            state: Set(StoredState::Queued),
            attempts: Set(0),
            max_attempts: Set(MAX_ATTEMPTS),
            created_at: Set(t),
            queued_at: Set(Some(t)),
            updated_at: Set(t),
            priority: Set(j.priority),
            needs_cpu_bytes: Set(needs_cpu),
            needs_gpu_bytes: Set(needs_gpu),
            kind: Set(JobKind::Evaluate),
            source_job_id: Set(Some(j.id)),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
        model_version::ActiveModel {
            project_id: Set(j.project_id),
            number: Set(number),
            train_job_id: Set(j.id),
            eval_job_id: Set(Some(e.id)),
            dataset_version_id: Set(dataset),
            dataset_sha256: Set(dataset_hash(&d)),
            settings_sha256: Set(sha256_hex(j.spec.as_bytes())),
            artifact_sha256: Set(files_hash(&files)),
            created_at: Set(t),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
        txn.commit().await?;
        queue::append(
            &self.db,
            e.id,
            None,
            &state_event(
                JobState::Queued,
                Some(format!(
                    "Evaluating version {number} (job {}) on its test split, against {}.",
                    j.id, spec.base_model
                )),
            ),
        )
        .await?;
        tracing::info!(
            job = j.id,
            evaluation = e.id,
            version = number,
            "model version opened; its evaluation is queued"
        );
        Ok(())
    }

    /// The project's model versions, newest first, with their states.
    pub(crate) async fn versions_of(&self, project_id: i64) -> Result<Vec<VersionRow>> {
        let versions = model_version::Entity::find()
            .filter(model_version::Column::ProjectId.eq(project_id))
            .filter(model_version::Column::DeletedAt.is_null())
            .order_by_desc(model_version::Column::Number)
            .limit(100)
            .all(&self.db)
            .await?;
        let ids: Vec<i64> = versions.iter().map(|v| v.id).collect();
        let evals: HashMap<i64, job::Model> = job::Entity::find()
            .filter(job::Column::Id.is_in(versions.iter().filter_map(|v| v.eval_job_id)))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|j| (j.id, j))
            .collect();
        // The evaluation reports' hashes: a decision counts only while it
        // is bound to what the version still is.
        let reports: HashMap<i64, String> = job_artifact::Entity::find()
            .filter(job_artifact::Column::JobId.is_in(evals.keys().copied()))
            .filter(job_artifact::Column::Path.eq(crate::jobs::worker::REPORT_PATH))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|a| (a.job_id, a.sha256))
            .collect();
        // The latest decision on each version counts.
        let mut latest: HashMap<i64, review::Model> = HashMap::new();
        for r in review::Entity::find()
            .filter(review::Column::VersionId.is_in(ids))
            .order_by_asc(review::Column::Id)
            .all(&self.db)
            .await?
        {
            latest.insert(r.version_id, r);
        }
        let decided: HashMap<i64, Decision> = versions
            .iter()
            .filter_map(|v| {
                let r = latest.get(&v.id)?;
                let report = reports.get(&v.eval_job_id?)?;
                bound_to(r, v, report).then_some((v.id, r.decision))
            })
            .collect();
        Ok(versions
            .into_iter()
            .map(|v| {
                let eval = v.eval_job_id.and_then(|id| evals.get(&id));
                let state = match (eval.map(|e| e.state), decided.get(&v.id)) {
                    (Some(StoredState::Succeeded), Some(Decision::Approved)) => {
                        VersionState::Approved
                    }
                    (Some(StoredState::Succeeded), Some(Decision::Rejected)) => {
                        VersionState::Rejected
                    }
                    (Some(StoredState::Succeeded), None) => VersionState::AwaitingReview,
                    (Some(StoredState::Failed | StoredState::Cancelled), _) => {
                        VersionState::EvaluationFailed
                    }
                    _ => VersionState::Evaluating,
                };
                VersionRow {
                    number: v.number as u32,
                    train_job: v.train_job_id,
                    eval_job: v.eval_job_id,
                    state,
                    progress: eval.and_then(|e| Some((e.step? as u64, e.total_steps? as u64))),
                }
            })
            .collect())
    }

    /// An evaluation's memory on a CPU slot and on a GPU: the tuned and
    /// the base model held at once, the adapter, the runtime. `None` when
    /// the model cannot be read (it fits anywhere; the engine says why it
    /// cannot run).
    async fn eval_sizing(&self, spec: &JobSpec) -> (Option<i64>, Option<i64>) {
        let Ok(mc) = self.model_config(&spec.base_model).await else {
            return (None, None);
        };
        let need = |kind: DeviceKind| {
            let gpu = kind == DeviceKind::Cuda;
            let bf16 = spec.config.bf16_compute(gpu).ok()?;
            let e = hone_protocol::estimate(&mc, &spec.config, bf16).ok()?;
            Some((2 * e.base_bytes + e.trainable_bytes + e.workspace_bytes) as i64)
        };
        (need(DeviceKind::Cpu), need(DeviceKind::Cuda))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_of_files_has_one_hash_whatever_their_order() {
        let a = [
            ("adapter/adapter_config.json".to_owned(), "aa".to_owned()),
            (
                "adapter/adapter_model.safetensors".to_owned(),
                "bb".to_owned(),
            ),
        ];
        let mut b = a.clone();
        b.reverse();
        assert_eq!(files_hash(&a), files_hash(&b));
        let mut c = a.clone();
        c[1].1 = "bc".into();
        assert_ne!(files_hash(&a), files_hash(&c));
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
