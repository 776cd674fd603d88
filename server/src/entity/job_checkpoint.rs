//! The `job_checkpoints` table: checkpoint folders stored in blob storage,
//! so any worker can resume a job.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "job_checkpoints")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub job_id: i64,
    pub step: i64,
    /// JSON: `[{path, key, size, sha256}]`, paths relative to the folder.
    #[sea_orm(column_type = "Text")]
    pub manifest: String,
    pub created_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
