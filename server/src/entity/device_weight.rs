//! The `device_weights` table: how many times an hour on a device of this
//! name counts against budgets (Slurm's TRESBillingWeights); a name
//! without a row counts once.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "device_weights")]
pub struct Model {
    /// The device's name as its worker reports it ("NVIDIA H200", "CPU").
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    pub weight: f64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
