//! What Hone stores and for whom: the blobs each project's rows refer to,
//! each team's storage use, and the sweep that removes blobs nothing
//! refers to (a dataset save that was refused, a checkpoint stored after
//! its job's lease was lost, an upload whose row never committed).
//!
//! Blobs are content-addressed and shared: one blob may serve several
//! rows and projects, so a blob is removed only when no row refers to it,
//! and only once it is older than a grace period — a save or checkpoint
//! still under way has written its blobs but not yet its row.

use crate::entity::{dataset_version, file, job, job_artifact, job_checkpoint, project, team};
use crate::error::Result;
use crate::state::Services;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// How old an unreferenced blob must be before the sweep removes it.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(24 * 3600);

/// How often the supervisor runs the sweep.
pub const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// A checkpoint's manifest, as far as storage is concerned.
#[derive(Deserialize)]
struct Manifest {
    files: Vec<ManifestFile>,
}

#[derive(Deserialize)]
struct ManifestFile {
    key: String,
}

/// The blob keys a checkpoint's manifest lists; `None` when it cannot
/// be read.
pub(crate) fn checkpoint_keys(manifest: &str) -> Option<Vec<String>> {
    serde_json::from_str::<Manifest>(manifest)
        .ok()
        .map(|m| m.files.into_iter().map(|f| f.key).collect())
}

/// One team's stored bytes (each blob counted once per team).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TeamUse {
    pub team_id: i64,
    pub team: String,
    pub bytes: u64,
    pub blobs: u64,
}

impl Services {
    /// Every (project, blob key) a row refers to, and whether the list is
    /// complete (false when a checkpoint's manifest cannot be read: the
    /// sweep then removes nothing).
    pub async fn blob_references(&self) -> Result<(Vec<(i64, String)>, bool)> {
        let mut complete = true;
        let mut refs = Vec::new();
        // A deleted file's content is gone (the API's DELETE, a refused
        // save's source): its blob is kept only for other rows sharing it.
        let files: Vec<(i64, String)> = file::Entity::find()
            .select_only()
            .column(file::Column::ProjectId)
            .column(file::Column::StorageKey)
            .filter(file::Column::DeletedAt.is_null())
            .into_tuple()
            .all(&self.db)
            .await?;
        refs.extend(files);
        let versions: Vec<(i64, String, String, String)> = dataset_version::Entity::find()
            .select_only()
            .column(dataset_version::Column::ProjectId)
            .column(dataset_version::Column::TrainKey)
            .column(dataset_version::Column::ValidationKey)
            .column(dataset_version::Column::TestKey)
            .into_tuple()
            .all(&self.db)
            .await?;
        for (p, a, b, c) in versions {
            // Empty until the version's check wrote its splits.
            refs.extend(
                [(p, a), (p, b), (p, c)]
                    .into_iter()
                    .filter(|(_, k)| !k.is_empty()),
            );
        }
        let job_project: HashMap<i64, i64> = job::Entity::find()
            .select_only()
            .column(job::Column::Id)
            .column(job::Column::ProjectId)
            .into_tuple::<(i64, i64)>()
            .all(&self.db)
            .await?
            .into_iter()
            .collect();
        let artifacts: Vec<(i64, String)> = job_artifact::Entity::find()
            .select_only()
            .column(job_artifact::Column::JobId)
            .column(job_artifact::Column::StorageKey)
            .into_tuple()
            .all(&self.db)
            .await?;
        for (j, key) in artifacts {
            refs.push((job_project.get(&j).copied().unwrap_or(0), key));
        }
        let checkpoints: Vec<(i64, String)> = job_checkpoint::Entity::find()
            .select_only()
            .column(job_checkpoint::Column::JobId)
            .column(job_checkpoint::Column::Manifest)
            .into_tuple()
            .all(&self.db)
            .await?;
        for (j, manifest) in checkpoints {
            let p = job_project.get(&j).copied().unwrap_or(0);
            match serde_json::from_str::<Manifest>(&manifest) {
                Ok(m) => refs.extend(m.files.into_iter().map(|f| (p, f.key))),
                Err(e) => {
                    tracing::error!(job_id = j, error = %e, "a checkpoint's manifest cannot be read");
                    complete = false;
                }
            }
        }
        Ok((refs, complete))
    }

    /// Removes blobs no row refers to that are older than `grace`;
    /// answers how many were removed.
    #[tracing::instrument(skip_all)]
    pub async fn sweep_orphans(&self, grace: Duration) -> Result<u64> {
        Ok(self.sweep_orphans_listed(grace).await?.len() as u64)
    }

    /// [`Services::sweep_orphans`], answering the blobs it removed.
    pub async fn sweep_orphans_listed(
        &self,
        grace: Duration,
    ) -> Result<Vec<crate::storage::BlobMeta>> {
        // Listed before the references are read: a blob stored (and
        // referenced) after this listing is not in it.
        let blobs = self.blobs.list_blobs().await?;
        let (refs, complete) = self.blob_references().await?;
        if !complete {
            // Unreadable references: keep everything rather than guess.
            tracing::warn!("the blob sweep skipped: a checkpoint's manifest cannot be read");
            return Ok(Vec::new());
        }
        let referenced: HashSet<String> = refs.into_iter().map(|(_, k)| k).collect();
        let cutoff = crate::state::now() - grace.as_secs() as i64;
        let mut removed = Vec::new();
        for b in blobs {
            if !referenced.contains(&b.key) && b.modified_unix <= cutoff {
                self.blobs.delete(&b.key).await?;
                tracing::info!(key = %b.key, size = b.size, "unreferenced blob removed");
                removed.push(b);
            }
        }
        Ok(removed)
    }

    /// Each team's storage use, largest first: the bytes of the distinct
    /// blobs its projects refer to (a blob two teams share counts for both).
    pub async fn storage_use(&self) -> Result<Vec<TeamUse>> {
        let sizes: HashMap<String, u64> = self
            .blobs
            .list_blobs()
            .await?
            .into_iter()
            .map(|b| (b.key, b.size))
            .collect();
        let project_team: HashMap<i64, i64> = project::Entity::find()
            .select_only()
            .column(project::Column::Id)
            .column(project::Column::TeamId)
            .into_tuple::<(i64, i64)>()
            .all(&self.db)
            .await?
            .into_iter()
            .collect();
        let mut per_team: HashMap<i64, HashSet<String>> = HashMap::new();
        for (p, key) in self.blob_references().await?.0 {
            if let Some(t) = project_team.get(&p) {
                per_team.entry(*t).or_default().insert(key);
            }
        }
        let mut out: Vec<TeamUse> = team::Entity::find()
            .all(&self.db)
            .await?
            .into_iter()
            .map(|t| {
                let keys = per_team.remove(&t.id).unwrap_or_default();
                TeamUse {
                    team_id: t.id,
                    team: t.name,
                    bytes: keys.iter().filter_map(|k| sizes.get(k)).sum(),
                    blobs: keys.iter().filter(|k| sizes.contains_key(*k)).count() as u64,
                }
            })
            .collect();
        out.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.team.cmp(&b.team)));
        Ok(out)
    }
}

impl Services {
    /// Drops the checkpoints succeeded training jobs no longer need (see
    /// [`crate::config::KeepCheckpoints`]): their rows go now, their blobs
    /// with the next sweep (unless shared). Returns how many were dropped.
    /// Run by the scheduler's leader each round; idempotent.
    pub async fn prune_checkpoints(&self) -> Result<u64> {
        use crate::config::KeepCheckpoints;
        use crate::entity::job::{JobKind, StoredState};
        use crate::entity::job_event;
        use hone_app::api::JobEventBody;
        use hone_protocol::Event;
        use sea_orm::QueryOrder;
        let keep = self.config.keep_checkpoints;
        if keep == KeepCheckpoints::All {
            return Ok(0);
        }
        let limit: i64 = if keep == KeepCheckpoints::Last { 1 } else { 2 };
        let sql = format!(
            "SELECT * FROM jobs WHERE kind = 'train' AND state = 'succeeded' AND \
             (SELECT COUNT(*) FROM job_checkpoints c WHERE c.job_id = jobs.id) > {limit} \
             ORDER BY id LIMIT 20"
        );
        let jobs = job::Entity::find()
            .from_raw_sql(crate::jobs::queue::statement(&self.db, &sql, vec![]))
            .all(&self.db)
            .await?;
        let mut dropped = 0;
        for j in jobs {
            debug_assert!(j.kind == JobKind::Train && j.state == StoredState::Succeeded);
            let rows = job_checkpoint::Entity::find()
                .filter(job_checkpoint::Column::JobId.eq(j.id))
                .order_by_asc(job_checkpoint::Column::Step)
                .all(&self.db)
                .await?;
            let Some(last) = rows.last().map(|r| r.id) else {
                continue;
            };
            let mut kept = vec![last];
            if keep == KeepCheckpoints::BestLast {
                // The validation loss at each step, from the job's log.
                let mut losses: HashMap<i64, f64> = HashMap::new();
                for e in job_event::Entity::find()
                    .filter(job_event::Column::JobId.eq(j.id))
                    .all(&self.db)
                    .await?
                {
                    if let Ok(r) = crate::jobs::events::decode(e) {
                        if let JobEventBody::Engine {
                            event: Event::Eval { step, loss, .. },
                        } = r.event.body
                        {
                            losses.insert(step as i64, loss);
                        }
                    }
                }
                let best = rows
                    .iter()
                    .filter_map(|r| losses.get(&r.step).map(|l| (r.id, *l)))
                    .min_by(|a, b| a.1.total_cmp(&b.1));
                if let Some((id, _)) = best {
                    kept.push(id);
                }
            }
            let gone: Vec<i64> = rows
                .iter()
                .map(|r| r.id)
                .filter(|id| !kept.contains(id))
                .collect();
            if gone.is_empty() {
                continue;
            }
            dropped += job_checkpoint::Entity::delete_many()
                .filter(job_checkpoint::Column::Id.is_in(gone))
                .exec(&self.db)
                .await?
                .rows_affected;
            tracing::info!(
                job = j.id,
                kept = kept.len(),
                "checkpoints pruned after success"
            );
        }
        Ok(dropped)
    }
}
