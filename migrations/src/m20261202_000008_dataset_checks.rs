//! Dataset saves are checked off the request: a version is recorded at
//! once in state `checking` with the request's settings, and a supervised
//! task re-checks and splits it under a limit of concurrent checks, ending
//! `ready` (its split files written) or `refused` (its findings kept).
//!
//! Versions saved before this migration were checked during their save:
//! they are `ready`.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum DatasetVersions {
    Table,
    State,
    Request,
    Refusal,
    CheckStartedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one column at a time.
        let columns = [
            // `checking`, `ready` or `refused`.
            ColumnDef::new(DatasetVersions::State)
                .string()
                .not_null()
                .default("ready")
                .to_owned(),
            // JSON: the save's settings (name, seed, ratios, the browser's
            // counts, columns, model), read by the check.
            ColumnDef::new(DatasetVersions::Request)
                .text()
                .null()
                .to_owned(),
            // JSON: why the check refused the version, with its findings.
            ColumnDef::new(DatasetVersions::Refusal)
                .text()
                .null()
                .to_owned(),
            // Unix seconds a checker took the version (NULL: waiting).
            ColumnDef::new(DatasetVersions::CheckStartedAt)
                .big_integer()
                .null()
                .to_owned(),
        ];
        for column in columns {
            manager
                .alter_table(
                    Table::alter()
                        .table(DatasetVersions::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("dataset_versions_state")
                    .table(DatasetVersions::Table)
                    .col(DatasetVersions::State)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("dataset_versions_state")
                    .table(DatasetVersions::Table)
                    .to_owned(),
            )
            .await?;
        for column in [
            DatasetVersions::CheckStartedAt,
            DatasetVersions::Refusal,
            DatasetVersions::Request,
            DatasetVersions::State,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(DatasetVersions::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
