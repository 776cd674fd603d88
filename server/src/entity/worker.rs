//! The `workers` table: one row per worker slot (one device each), kept
//! fresh by its heartbeat.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "workers")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub host: String,
    /// `hone_protocol::Device` as JSON.
    #[sea_orm(column_type = "Text")]
    pub device: String,
    /// "ready", or why this worker cannot run jobs.
    #[sea_orm(column_type = "Text")]
    pub status: String,
    pub started_at: i64,
    /// The database's clock at its last heartbeat, Unix ms.
    pub heartbeat_ms: i64,
    /// `hone_protocol::LiveFigures` as JSON (NVIDIA GPUs, through NVML).
    #[sea_orm(column_type = "Text", nullable)]
    pub live: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
