//! The `model_versions` table: what a successful training job made, as
//! reviewers see it — numbered per project, with the hashes a review is
//! bound to, and the evaluation job that scores it. Its state (evaluating,
//! awaiting review, approved, rejected) follows from the evaluation job
//! and the reviews; it is not stored twice.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "model_versions")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub project_id: i64,
    /// 1, 2, … within the project.
    pub number: i32,
    #[sea_orm(unique)]
    pub train_job_id: i64,
    #[sea_orm(unique)]
    pub eval_job_id: Option<i64>,
    pub dataset_version_id: i64,
    /// The dataset version's splits (SHA-256 of its three split hashes).
    pub dataset_sha256: String,
    /// SHA-256 of the training job's spec (every setting, defaults filled).
    pub settings_sha256: String,
    /// SHA-256 over the trained files' `path sha256` lines, sorted.
    pub artifact_sha256: String,
    pub created_at: i64,
    /// The export job made once the version is approved.
    #[sea_orm(unique)]
    pub export_job_id: Option<i64>,
    /// When it was deleted (its jobs, downloads and ratings are gone; the
    /// number stays taken). Reads treat it as absent.
    pub deleted_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
