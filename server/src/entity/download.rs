//! `downloads`: one archive of an approved model version.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "downloads")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub version_id: i64,
    /// `adapter`, `merged`, `gguf-f16` or `gguf-q8_0`.
    pub format: String,
    pub file_name: String,
    pub size: i64,
    pub sha256: String,
    /// JSON [`crate::publishing::Manifest`].
    pub manifest: String,
    pub created_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
