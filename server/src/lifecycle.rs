//! Deleting what Hone stores. A dataset version is deleted by archiving
//! it: its source file and its splits are removed from storage (unless
//! another row shares the same content-addressed blob), its findings'
//! text and statistics are cleared, and the row keeps only its name,
//! counts and hashes, for the jobs and model cards that cite it. It is
//! refused, saying why, while a job that is not over trains or evaluates
//! on it, or while an approved model version was trained on it.
//!
//! Not yet here (issue 16, next): deleting jobs, model versions and
//! projects, the checkpoint retention rule and the admins' purge.

use crate::audit::{self, Target};
use crate::entity::audit::AuditAction;
use crate::entity::dataset_version::{self, DatasetState as Stored};
use crate::entity::job::{self, StoredState};
use crate::entity::{file, model_version, user};
use crate::error::Result;
use crate::state::{now, Services};
use hone_app::api::AppError;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set, TransactionTrait};
use std::collections::HashSet;

/// What deleting a dataset version did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deleted {
    /// Blobs removed from storage (the others are shared with other rows).
    pub blobs_freed: Vec<String>,
}

impl Services {
    /// Deletes dataset version `id` for `u` (who may write to its
    /// project), or says why not.
    pub async fn delete_dataset(&self, u: &user::Model, id: i64) -> Result<Deleted> {
        let (row, p) = self.readable_dataset(u, id).await?;
        self.project_with(u, p.id, crate::policy::Action::Write, "that dataset")
            .await?;
        if row.state == Stored::Archived {
            return Ok(Deleted {
                blobs_freed: Vec::new(),
            });
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
        let source = file::Entity::find_by_id(row.source_file_id)
            .one(&self.db)
            .await?;
        let keys: Vec<String> = [
            source.as_ref().map(|f| f.storage_key.clone()),
            Some(row.train_key.clone()),
            Some(row.validation_key.clone()),
            Some(row.test_key.clone()),
        ]
        .into_iter()
        .flatten()
        .filter(|k| !k.is_empty())
        .collect();
        let t = now();
        let txn = self.db.begin().await?;
        // Conditional on the state read above: a second deletion at once
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
            .filter(dataset_version::Column::Id.eq(id))
            .filter(dataset_version::Column::State.eq(row.state))
            .exec(&txn)
            .await?
            .rows_affected;
        if changed == 0 {
            return Ok(Deleted {
                blobs_freed: Vec::new(),
            });
        }
        if let Some(f) = &source {
            if f.deleted_at.is_none() {
                let mut a: file::ActiveModel = f.clone().into();
                a.deleted_at = Set(Some(t));
                a.update(&txn).await?;
            }
        }
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
        // Free what no other row refers to, now (not at the next sweep):
        // the data is gone, not just hidden.
        let (refs, _) = self.blob_references().await?;
        let still: HashSet<String> = refs.into_iter().map(|(_, k)| k).collect();
        let mut freed = Vec::new();
        for k in keys {
            if !still.contains(&k) && !freed.contains(&k) {
                self.blobs.delete(&k).await?;
                freed.push(k);
            }
        }
        tracing::info!(dataset = id, freed = freed.len(), "dataset version deleted");
        Ok(Deleted { blobs_freed: freed })
    }
}
