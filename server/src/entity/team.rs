//! The `teams` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "teams")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub name: String,
    pub created_at: i64,
    /// Devices it holds at once without being preempted (quota).
    pub guaranteed_devices: i32,
    /// Weighted device-hours per calendar month (UTC); `None`: no limit.
    pub month_hours: Option<f64>,
    /// Jobs one person may run at once; `None`: no limit.
    pub per_person: Option<i32>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
