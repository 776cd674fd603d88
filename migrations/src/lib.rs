//! Hone's schema history. Every change to the database is a new migration
//! here; the server applies them at start, on SQLite and PostgreSQL alike.

pub use sea_orm_migration::prelude::*;

mod m20261129_000001_foundation;
mod m20261129_000002_dataset_versions;
mod m20261129_000003_dataset_model_stats;
mod m20261201_000004_jobs;
mod m20261202_000005_api;
mod m20261202_000006_hardening;
mod m20261202_000007_audit;
mod m20261202_000008_dataset_checks;
mod m20261202_000009_scheduling;
mod m20261202_000010_review;
mod m20261203_000011_publishing;
mod m20261204_000012_deletion;

/// The ordered list of migrations the server runs at start.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261129_000001_foundation::Migration),
            Box::new(m20261129_000002_dataset_versions::Migration),
            Box::new(m20261129_000003_dataset_model_stats::Migration),
            Box::new(m20261201_000004_jobs::Migration),
            Box::new(m20261202_000005_api::Migration),
            Box::new(m20261202_000006_hardening::Migration),
            Box::new(m20261202_000007_audit::Migration),
            Box::new(m20261202_000008_dataset_checks::Migration),
            Box::new(m20261202_000009_scheduling::Migration),
            Box::new(m20261202_000010_review::Migration),
            Box::new(m20261203_000011_publishing::Migration),
            Box::new(m20261204_000012_deletion::Migration),
        ]
    }
}
