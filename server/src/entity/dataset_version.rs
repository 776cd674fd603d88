//! The `dataset_versions` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "dataset_versions")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub project_id: i64,
    pub name: String,
    pub source_file_id: i64,
    pub format: String,
    pub examples: i64,
    pub rejected: i64,
    pub dropped_rejected: bool,
    pub errors: i64,
    pub warnings: i64,
    /// JSON object: finding code → count.
    #[sea_orm(column_type = "Text")]
    pub finding_counts: String,
    pub seed: String,
    pub ratios: String,
    pub train_count: i64,
    pub validation_count: i64,
    pub test_count: i64,
    pub train_key: String,
    pub validation_key: String,
    pub test_key: String,
    pub train_sha256: String,
    pub validation_sha256: String,
    pub test_sha256: String,
    pub created_by: i64,
    pub created_at: i64,
    /// The model whose tokenizer counted the tokens (NULL: characters).
    pub base_model: Option<String>,
    /// JSON: `hone_dataset::check::Stats` as the server computed them.
    #[sea_orm(column_type = "Text", nullable)]
    pub stats: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
