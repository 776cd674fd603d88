//! Deleting projects, jobs and model versions: each gets a `deleted_at`.
//! A deleted row stays as a tombstone (its id, its number, what it cost in
//! device time) while what it stored — checkpoints, artifacts, events,
//! downloads, ratings — is removed with it; reads treat it as absent.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Projects {
    Table,
    DeletedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Jobs {
    Table,
    DeletedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum ModelVersions {
    Table,
    DeletedAt,
}

fn add(table: impl IntoIden, col: impl IntoIden) -> TableAlterStatement {
    Table::alter()
        .table(table)
        .add_column(ColumnDef::new(col).big_integer().null())
        .to_owned()
}

fn drop(table: impl IntoIden, col: impl IntoIden) -> TableAlterStatement {
    Table::alter().table(table).drop_column(col).to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(add(Projects::Table, Projects::DeletedAt))
            .await?;
        m.alter_table(add(Jobs::Table, Jobs::DeletedAt)).await?;
        m.alter_table(add(ModelVersions::Table, ModelVersions::DeletedAt))
            .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(drop(ModelVersions::Table, ModelVersions::DeletedAt))
            .await?;
        m.alter_table(drop(Jobs::Table, Jobs::DeletedAt)).await?;
        m.alter_table(drop(Projects::Table, Projects::DeletedAt))
            .await
    }
}
