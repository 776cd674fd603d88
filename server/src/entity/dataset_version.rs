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
    /// Where its check is: the split keys and counts are empty until `Ready`.
    pub state: DatasetState,
    /// JSON: the save's settings, as the check reads them (`None` for
    /// versions made whole, off a request: the API's).
    #[sea_orm(column_type = "Text", nullable)]
    pub request: Option<String>,
    /// JSON: why the check refused the version (`Refusal`).
    #[sea_orm(column_type = "Text", nullable)]
    pub refusal: Option<String>,
    /// Unix seconds a checker took it; `None` while it waits for one.
    pub check_started_at: Option<i64>,
}

/// A version's check, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum DatasetState {
    /// Saved, waiting for a checker or being checked.
    #[sea_orm(string_value = "checking")]
    Checking,
    /// Checked and split: its files can be downloaded and trained on.
    #[sea_orm(string_value = "ready")]
    Ready,
    /// The check found what stops it (its findings are in `refusal`).
    #[sea_orm(string_value = "refused")]
    Refused,
    /// Deleted: its files are gone from storage; the row keeps its name,
    /// counts and hashes for the jobs and model cards that cite it.
    #[sea_orm(string_value = "archived")]
    Archived,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
