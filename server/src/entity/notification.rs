//! The `notifications` table: in-app messages to one person (a job
//! finished or failed, a version awaits review, was approved or rejected).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "notifications")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub user_id: i64,
    /// `job_succeeded`, `job_failed`, `review_requested`, `approved`,
    /// `rejected`.
    pub kind: String,
    #[sea_orm(column_type = "Text")]
    pub message: String,
    /// Where it leads (a path of this site).
    pub link: String,
    pub created_at: i64,
    pub read_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
