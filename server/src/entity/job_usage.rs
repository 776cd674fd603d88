//! The `job_usage` table: the device time a job held, as intervals on the
//! database's clock (one per attempt), each with the device's weight at
//! the time. Budgets, fair share and the usage report add them up.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "job_usage")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub job_id: i64,
    pub team_id: i64,
    pub worker_id: String,
    pub device_name: String,
    pub weight: f64,
    /// Unix ms, the database's clock.
    pub started_ms: i64,
    /// The last heartbeat of the run, or its end.
    pub ended_ms: i64,
    /// Still running (its end moves with each heartbeat).
    pub open: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
