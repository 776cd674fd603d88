//! The `reviews` table: a reviewer's decision on a model version, bound to
//! the hashes of exactly what was reviewed (data, settings, weights,
//! evaluation report).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "reviews")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub version_id: i64,
    pub reviewer_id: i64,
    pub decision: Decision,
    #[sea_orm(column_type = "Text")]
    pub comment: String,
    pub dataset_sha256: String,
    pub settings_sha256: String,
    pub artifact_sha256: String,
    pub report_sha256: String,
    pub created_at: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum Decision {
    #[sea_orm(string_value = "approved")]
    Approved,
    #[sea_orm(string_value = "rejected")]
    Rejected,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
