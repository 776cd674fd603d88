//! The `files` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "files")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub project_id: i64,
    pub name: String,
    pub size: i64,
    pub sha256: String,
    pub storage_key: String,
    pub uploaded_by: i64,
    pub created_at: i64,
    /// `fine-tune` for files uploaded through the API (`/v1/files`);
    /// `None` for the browser's uploads.
    pub purpose: Option<String>,
    /// An API file's checks: [`STATUS_UPLOADED`], [`STATUS_PROCESSED`] or
    /// [`STATUS_ERROR`] (OpenAI's names).
    pub status: Option<String>,
    /// What the checks found, in plain language with line numbers.
    #[sea_orm(column_type = "Text", nullable)]
    pub status_details: Option<String>,
    /// Deleted through the API: hidden, its content gone; dataset
    /// versions made from it keep their own split files.
    pub deleted_at: Option<i64>,
}

pub const STATUS_UPLOADED: &str = "uploaded";
pub const STATUS_PROCESSED: &str = "processed";
pub const STATUS_ERROR: &str = "error";
pub const PURPOSE_FINE_TUNE: &str = "fine-tune";

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
