//! Deleting what Hone stores, and the admins' purge.
//!
//! - A **dataset version** is deleted by archiving it: its source file
//!   and splits leave storage, its findings' text and statistics are
//!   cleared, and the row keeps only its name, counts and hashes, for the
//!   jobs and model cards that cite it. Refused while a job that has not
//!   ended uses it, or an approved model version was trained on it.
//! - A **job** (a training job that failed or was cancelled) is deleted
//!   with its checkpoints, artifacts, events and notifications; its row
//!   stays as a tombstone, for the device time it used. A job that made a
//!   model version is deleted with that version.
//! - A **model version** is deleted with its training, evaluation and
//!   export jobs, its downloads and its blind ratings (the reviews stay,
//!   as the record of who decided what). Refused while approved: a
//!   reviewer rejects it first.
//! - A **project** (its name typed to confirm) is deleted with every
//!   version, job, dataset and file in it; its API keys are revoked and
//!   its name is freed. Refused while a job in it has not ended or a
//!   version is approved.
//!
//! Deleted rows read as absent everywhere (404). Every deletion is in the
//! audit log, in the transaction that makes it; the blobs nothing else
//! refers to are removed at once after it commits (content-addressed
//! blobs shared with other rows stay), so deleted data is gone from
//! storage, not just hidden.

use crate::audit::{self, Target};
use crate::entity::audit::AuditAction;
use crate::entity::dataset_version::{self, DatasetState as Stored};
use crate::entity::job::{self, JobKind, StoredState};
use crate::entity::{
    api_key, download, file, job_artifact, job_checkpoint, job_event, model_version, notification,
    project, rating, team, user,
};
use crate::error::Result;
use crate::policy::Action;
use crate::state::{now, Services};
use hone_app::api::{AppError, JobState};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect, Set,
    TransactionTrait,
};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// What a deletion did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deleted {
    /// Blobs removed from storage (the others are shared with other rows).
    pub blobs_freed: Vec<String>,
}

/// What an admin's purge of a team's storage did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Purged {
    /// Checkpoints of the team's ended jobs dropped.
    pub checkpoints: u64,
    /// Blobs removed from storage (the purged checkpoints' and any blob
    /// nothing has referred to for [`PURGE_GRACE`]).
    pub blobs: u64,
    pub bytes: u64,
}

/// How old a blob nothing refers to must be before a purge removes it: a
/// save or checkpoint under way has written its blobs but not its row.
pub const PURGE_GRACE: Duration = Duration::from_secs(3600);

/// "training job", "evaluation" or "export", for messages.
fn kind_name(k: JobKind) -> &'static str {
    match k {
        JobKind::Train => "training job",
        JobKind::Evaluate => "evaluation",
        JobKind::Export => "export",
    }
}

fn ended(j: &job::Model) -> bool {
    JobState::from(j.state).is_final()
}

/// Marks job `j` deleted and removes what it stored, in `txn`; the blob
/// keys it referred to, or `None` when another deletion got there first.
async fn drop_job(
    txn: &DatabaseTransaction,
    j: &job::Model,
    t: i64,
) -> Result<Option<Vec<String>>> {
    let changed = job::Entity::update_many()
        .col_expr(job::Column::DeletedAt, Expr::value(t))
        .filter(job::Column::Id.eq(j.id))
        .filter(job::Column::DeletedAt.is_null())
        .exec(txn)
        .await?
        .rows_affected;
    if changed == 0 {
        return Ok(None);
    }
    let mut keys: Vec<String> = job_artifact::Entity::find()
        .select_only()
        .column(job_artifact::Column::StorageKey)
        .filter(job_artifact::Column::JobId.eq(j.id))
        .into_tuple()
        .all(txn)
        .await?;
    let manifests: Vec<String> = job_checkpoint::Entity::find()
        .select_only()
        .column(job_checkpoint::Column::Manifest)
        .filter(job_checkpoint::Column::JobId.eq(j.id))
        .into_tuple()
        .all(txn)
        .await?;
    // An unreadable manifest's blobs are left to the sweep, which removes
    // them once nothing refers to them.
    keys.extend(
        manifests
            .iter()
            .filter_map(|m| crate::retention::checkpoint_keys(m))
            .flatten(),
    );
    job_checkpoint::Entity::delete_many()
        .filter(job_checkpoint::Column::JobId.eq(j.id))
        .exec(txn)
        .await?;
    job_artifact::Entity::delete_many()
        .filter(job_artifact::Column::JobId.eq(j.id))
        .exec(txn)
        .await?;
    job_event::Entity::delete_many()
        .filter(job_event::Column::JobId.eq(j.id))
        .exec(txn)
        .await?;
    notification::Entity::delete_many()
        .filter(notification::Column::Link.eq(format!("/projects/{}/jobs/{}", j.project_id, j.id)))
        .exec(txn)
        .await?;
    Ok(Some(keys))
}

/// Marks version `v` deleted with its downloads and ratings, in `txn`
/// (its jobs are the caller's); false when another deletion got there
/// first.
async fn drop_version(txn: &DatabaseTransaction, v: &model_version::Model, t: i64) -> Result<bool> {
    let changed = model_version::Entity::update_many()
        .col_expr(model_version::Column::DeletedAt, Expr::value(t))
        .filter(model_version::Column::Id.eq(v.id))
        .filter(model_version::Column::DeletedAt.is_null())
        .exec(txn)
        .await?
        .rows_affected;
    if changed == 0 {
        return Ok(false);
    }
    download::Entity::delete_many()
        .filter(download::Column::VersionId.eq(v.id))
        .exec(txn)
        .await?;
    rating::Entity::delete_many()
        .filter(rating::Column::VersionId.eq(v.id))
        .exec(txn)
        .await?;
    notification::Entity::delete_many()
        .filter(
            notification::Column::Link
                .eq(format!("/projects/{}/versions/{}", v.project_id, v.number)),
        )
        .exec(txn)
        .await?;
    Ok(true)
}

/// Archives dataset version `row` in `txn`: the blob keys it referred to,
/// or `None` when it was archived meanwhile.
async fn archive_dataset(
    txn: &DatabaseTransaction,
    row: &dataset_version::Model,
    t: i64,
) -> Result<Option<Vec<String>>> {
    // Conditional on the state read before: a second deletion at once
    // changes nothing.
    let changed = dataset_version::Entity::update_many()
        .col_expr(
            dataset_version::Column::State,
            Expr::value(Stored::Archived),
        )
        .col_expr(dataset_version::Column::TrainKey, Expr::value(""))
        .col_expr(dataset_version::Column::ValidationKey, Expr::value(""))
        .col_expr(dataset_version::Column::TestKey, Expr::value(""))
        .col_expr(
            dataset_version::Column::Stats,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            dataset_version::Column::Refusal,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            dataset_version::Column::Request,
            Expr::value(Option::<String>::None),
        )
        .filter(dataset_version::Column::Id.eq(row.id))
        .filter(dataset_version::Column::State.eq(row.state))
        .exec(txn)
        .await?
        .rows_affected;
    if changed == 0 {
        return Ok(None);
    }
    let mut keys = vec![
        row.train_key.clone(),
        row.validation_key.clone(),
        row.test_key.clone(),
    ];
    if let Some(f) = file::Entity::find_by_id(row.source_file_id)
        .one(txn)
        .await?
    {
        keys.push(f.storage_key.clone());
        if f.deleted_at.is_none() {
            let mut a: file::ActiveModel = f.into();
            a.deleted_at = Set(Some(t));
            a.update(txn).await?;
        }
    }
    keys.retain(|k| !k.is_empty());
    Ok(Some(keys))
}

impl Services {
    /// Removes those of `keys` no row refers to any more, now; the ones
    /// removed.
    async fn free_unreferenced(&self, keys: Vec<String>) -> Result<Vec<String>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let (refs, _) = self.blob_references().await?;
        let still: HashSet<String> = refs.into_iter().map(|(_, k)| k).collect();
        let mut freed = Vec::new();
        for k in keys {
            if !still.contains(&k) && !freed.contains(&k) {
                self.blobs.delete(&k).await?;
                freed.push(k);
            }
        }
        Ok(freed)
    }

    /// Deletes dataset version `id` for `u` (who may write to its
    /// project), or says why not.
    pub async fn delete_dataset(&self, u: &user::Model, id: i64) -> Result<Deleted> {
        let (row, p) = self.readable_dataset(u, id).await?;
        self.project_with(u, p.id, Action::Write, "that dataset")
            .await?;
        if row.state == Stored::Archived {
            return Ok(Deleted::default());
        }
        let busy = job::Entity::find()
            .filter(
                sea_orm::Condition::any()
                    .add(job::Column::DatasetVersionId.eq(id))
                    .add(job::Column::ValidationDatasetVersionId.eq(id)),
            )
            .filter(job::Column::State.is_not_in([
                StoredState::Succeeded,
                StoredState::Failed,
                StoredState::Cancelled,
            ]))
            .one(&self.db)
            .await?;
        if let Some(j) = busy {
            return Err(AppError::Conflict(format!(
                "The dataset {:?} is used by job {}, which has not ended: cancel it or wait for it to end, then delete the dataset.",
                row.name, j.id
            ))
            .into());
        }
        for v in model_version::Entity::find()
            .filter(model_version::Column::DatasetVersionId.eq(id))
            .filter(model_version::Column::DeletedAt.is_null())
            .all(&self.db)
            .await?
        {
            if self.approved(&v).await? {
                return Err(AppError::Conflict(format!(
                    "The dataset {:?} trained version {} of {}, which is approved: its model card cites this data. Reject that version first to delete the dataset.",
                    row.name, v.number, p.name
                ))
                .into());
            }
        }
        let t = now();
        let txn = self.db.begin().await?;
        let Some(keys) = archive_dataset(&txn, &row, t).await? else {
            return Ok(Deleted::default());
        };
        let label = format!("{} / {}", p.name, row.name);
        audit::record(
            &txn,
            Some(u),
            AuditAction::DatasetDeleted,
            Target {
                kind: "dataset_version",
                id: Some(id),
                label: &label,
            },
            serde_json::json!({
                "examples": row.examples,
                "train_sha256": row.train_sha256,
                "validation_sha256": row.validation_sha256,
                "test_sha256": row.test_sha256,
            }),
        )
        .await?;
        txn.commit().await?;
        let freed = self.free_unreferenced(keys).await?;
        tracing::info!(dataset = id, freed = freed.len(), "dataset version deleted");
        Ok(Deleted { blobs_freed: freed })
    }

    /// Deletes training job `id` (failed or cancelled) for `u`, who may
    /// launch jobs in its project, with everything it stored; or says why
    /// not.
    pub async fn delete_job(&self, u: &user::Model, id: i64) -> Result<Deleted> {
        let (j, p) = self.job_with(u, id, Action::Train).await?;
        let version = model_version::Entity::find()
            .filter(
                sea_orm::Condition::any()
                    .add(model_version::Column::TrainJobId.eq(j.id))
                    .add(model_version::Column::EvalJobId.eq(j.id))
                    .add(model_version::Column::ExportJobId.eq(j.id)),
            )
            .filter(model_version::Column::DeletedAt.is_null())
            .one(&self.db)
            .await?;
        if let Some(v) = version {
            return Err(AppError::Conflict(format!(
                "Job {} is the {} of version {} of {}: delete that version to delete its jobs with it.",
                j.id,
                kind_name(j.kind),
                v.number,
                p.name
            ))
            .into());
        }
        if !ended(&j) {
            return Err(AppError::Conflict(format!(
                "Job {} is {}: cancel it, or wait for it to end, then delete it.",
                j.id,
                JobState::from(j.state).label().to_lowercase()
            ))
            .into());
        }
        if j.kind == JobKind::Train && j.state == StoredState::Succeeded {
            return Err(AppError::Conflict(format!(
                "Job {} succeeded and its model version is being opened: delete that version, once it is on the project's page, to delete the job with it.",
                j.id
            ))
            .into());
        }
        let t = now();
        let txn = self.db.begin().await?;
        let Some(keys) = drop_job(&txn, &j, t).await? else {
            return Ok(Deleted::default());
        };
        let label = format!("{} / job {}", p.name, j.id);
        audit::record(
            &txn,
            Some(u),
            AuditAction::JobDeleted,
            Target {
                kind: "job",
                id: Some(j.id),
                label: &label,
            },
            serde_json::json!({
                "state": JobState::from(j.state).as_str(),
                "base_model": j.base_model,
                "dataset_version_id": j.dataset_version_id,
            }),
        )
        .await?;
        txn.commit().await?;
        let freed = self.free_unreferenced(keys).await?;
        tracing::info!(job = j.id, freed = freed.len(), "job deleted");
        Ok(Deleted { blobs_freed: freed })
    }

    /// Deletes model version `id` for `u`, who may launch jobs in its
    /// project, with its jobs, downloads and ratings; or says why not.
    pub async fn delete_version(&self, u: &user::Model, id: i64) -> Result<Deleted> {
        let (v, p) = self.version_with(u, id, Action::Train).await?;
        if self.approved(&v).await? {
            return Err(AppError::Conflict(format!(
                "Version {} of {} is approved: its card and downloads are published. A reviewer must reject it before it can be deleted.",
                v.number, p.name
            ))
            .into());
        }
        let ids: Vec<i64> = [Some(v.train_job_id), v.eval_job_id, v.export_job_id]
            .into_iter()
            .flatten()
            .collect();
        let jobs = job::Entity::find()
            .filter(job::Column::Id.is_in(ids))
            .all(&self.db)
            .await?;
        if let Some(j) = jobs.iter().find(|j| !ended(j)) {
            return Err(AppError::Conflict(format!(
                "The {} of version {} (job {}) is {}: cancel it, or wait for it to end, then delete the version.",
                kind_name(j.kind),
                v.number,
                j.id,
                JobState::from(j.state).label().to_lowercase()
            ))
            .into());
        }
        let t = now();
        let txn = self.db.begin().await?;
        if !drop_version(&txn, &v, t).await? {
            return Ok(Deleted::default());
        }
        let mut keys = Vec::new();
        for j in &jobs {
            keys.extend(drop_job(&txn, j, t).await?.unwrap_or_default());
        }
        let label = format!("{} / version {}", p.name, v.number);
        audit::record(
            &txn,
            Some(u),
            AuditAction::VersionDeleted,
            Target {
                kind: "model_version",
                id: Some(v.id),
                label: &label,
            },
            serde_json::json!({
                "jobs": jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
                "artifact_sha256": v.artifact_sha256,
                "dataset_sha256": v.dataset_sha256,
            }),
        )
        .await?;
        txn.commit().await?;
        let freed = self.free_unreferenced(keys).await?;
        tracing::info!(version = v.id, freed = freed.len(), "model version deleted");
        Ok(Deleted { blobs_freed: freed })
    }

    /// Deletes project `id` for `u`, who may write to it and typed its
    /// name as `confirm`, with everything in it; or says why not.
    pub async fn delete_project(&self, u: &user::Model, id: i64, confirm: &str) -> Result<Deleted> {
        let p = self
            .project_with(u, id, Action::Write, "that project")
            .await?;
        if confirm.trim() != p.name {
            return Err(AppError::invalid(
                "confirm",
                format!("Type the project's name, {:?}, to delete it.", p.name),
            )
            .into());
        }
        let jobs = job::Entity::find()
            .filter(job::Column::ProjectId.eq(p.id))
            .filter(job::Column::DeletedAt.is_null())
            .all(&self.db)
            .await?;
        if let Some(j) = jobs.iter().find(|j| !ended(j)) {
            return Err(AppError::Conflict(format!(
                "The {} {} in {} is {}: cancel it, or wait for it to end, then delete the project.",
                kind_name(j.kind),
                j.id,
                p.name,
                JobState::from(j.state).label().to_lowercase()
            ))
            .into());
        }
        let versions = model_version::Entity::find()
            .filter(model_version::Column::ProjectId.eq(p.id))
            .filter(model_version::Column::DeletedAt.is_null())
            .all(&self.db)
            .await?;
        for v in &versions {
            if self.approved(v).await? {
                return Err(AppError::Conflict(format!(
                    "Version {} of {} is approved: a reviewer must reject it before the project can be deleted.",
                    v.number, p.name
                ))
                .into());
            }
        }
        let datasets = dataset_version::Entity::find()
            .filter(dataset_version::Column::ProjectId.eq(p.id))
            .filter(dataset_version::Column::State.ne(Stored::Archived))
            .all(&self.db)
            .await?;
        let t = now();
        let txn = self.db.begin().await?;
        // The name is freed for a new project; the audit log keeps it.
        let changed = project::Entity::update_many()
            .col_expr(project::Column::DeletedAt, Expr::value(t))
            .col_expr(
                project::Column::Name,
                Expr::value(format!("{} (deleted {})", p.name, p.id)),
            )
            .filter(project::Column::Id.eq(p.id))
            .filter(project::Column::DeletedAt.is_null())
            .exec(&txn)
            .await?
            .rows_affected;
        if changed == 0 {
            return Ok(Deleted::default());
        }
        let mut keys = Vec::new();
        for v in &versions {
            drop_version(&txn, v, t).await?;
        }
        for j in &jobs {
            keys.extend(drop_job(&txn, j, t).await?.unwrap_or_default());
        }
        for d in &datasets {
            keys.extend(archive_dataset(&txn, d, t).await?.unwrap_or_default());
        }
        let files = file::Entity::find()
            .filter(file::Column::ProjectId.eq(p.id))
            .filter(file::Column::DeletedAt.is_null())
            .all(&txn)
            .await?;
        keys.extend(files.iter().map(|f| f.storage_key.clone()));
        file::Entity::update_many()
            .col_expr(file::Column::DeletedAt, Expr::value(t))
            .filter(file::Column::ProjectId.eq(p.id))
            .filter(file::Column::DeletedAt.is_null())
            .exec(&txn)
            .await?;
        let revoked = api_key::Entity::update_many()
            .col_expr(api_key::Column::RevokedAt, Expr::value(t))
            .filter(api_key::Column::ProjectId.eq(p.id))
            .filter(api_key::Column::RevokedAt.is_null())
            .exec(&txn)
            .await?
            .rows_affected;
        notification::Entity::delete_many()
            .filter(notification::Column::Link.starts_with(format!("/projects/{}/", p.id)))
            .exec(&txn)
            .await?;
        audit::record(
            &txn,
            Some(u),
            AuditAction::ProjectDeleted,
            Target {
                kind: "project",
                id: Some(p.id),
                label: &p.name,
            },
            serde_json::json!({
                "jobs": jobs.len(),
                "versions": versions.len(),
                "datasets": datasets.len(),
                "files": files.len(),
                "api_keys_revoked": revoked,
            }),
        )
        .await?;
        txn.commit().await?;
        let freed = self.free_unreferenced(keys).await?;
        tracing::info!(project = p.id, freed = freed.len(), "project deleted");
        Ok(Deleted { blobs_freed: freed })
    }

    /// An admin's purge of team `team_id`'s storage: every checkpoint of
    /// its ended jobs (their adapters and models stay), then every blob
    /// nothing has referred to for [`PURGE_GRACE`]. The caller checked
    /// that `admin` is one.
    pub async fn purge_team(&self, admin: &user::Model, team_id: i64) -> Result<Purged> {
        let t = team::Entity::find_by_id(team_id)
            .one(&self.db)
            .await?
            .ok_or_else(|| AppError::NotFound("that team".into()))?;
        let sizes: HashMap<String, u64> = self
            .blobs
            .list_blobs()
            .await?
            .into_iter()
            .map(|b| (b.key, b.size))
            .collect();
        let projects: Vec<i64> = project::Entity::find()
            .select_only()
            .column(project::Column::Id)
            .filter(project::Column::TeamId.eq(team_id))
            .into_tuple()
            .all(&self.db)
            .await?;
        let jobs: Vec<i64> = job::Entity::find()
            .select_only()
            .column(job::Column::Id)
            .filter(job::Column::ProjectId.is_in(projects))
            .filter(job::Column::State.is_in([
                StoredState::Succeeded,
                StoredState::Failed,
                StoredState::Cancelled,
            ]))
            .into_tuple()
            .all(&self.db)
            .await?;
        let txn = self.db.begin().await?;
        let manifests: Vec<String> = job_checkpoint::Entity::find()
            .select_only()
            .column(job_checkpoint::Column::Manifest)
            .filter(job_checkpoint::Column::JobId.is_in(jobs.clone()))
            .into_tuple()
            .all(&txn)
            .await?;
        let keys: Vec<String> = manifests
            .iter()
            .filter_map(|m| crate::retention::checkpoint_keys(m))
            .flatten()
            .collect();
        let checkpoints = job_checkpoint::Entity::delete_many()
            .filter(job_checkpoint::Column::JobId.is_in(jobs))
            .exec(&txn)
            .await?
            .rows_affected;
        txn.commit().await?;
        let freed = self.free_unreferenced(keys).await?;
        let swept = self.sweep_orphans_listed(PURGE_GRACE).await?;
        let purged = Purged {
            checkpoints,
            blobs: (freed.len() + swept.len()) as u64,
            bytes: freed.iter().filter_map(|k| sizes.get(k)).sum::<u64>()
                + swept.iter().map(|b| b.size).sum::<u64>(),
        };
        audit::record(
            &self.db,
            Some(admin),
            AuditAction::StoragePurged,
            Target {
                kind: "team",
                id: Some(t.id),
                label: &t.name,
            },
            serde_json::json!({
                "checkpoints": purged.checkpoints,
                "blobs": purged.blobs,
                "bytes": purged.bytes,
            }),
        )
        .await?;
        tracing::info!(
            team = t.id,
            checkpoints,
            blobs = purged.blobs,
            bytes = purged.bytes,
            "storage purged"
        );
        Ok(purged)
    }
}
