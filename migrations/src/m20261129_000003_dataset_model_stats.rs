//! Dataset versions record the base model their tokens were counted with
//! and the statistics the server computed (JSON), for the detail page.
//! Older versions have neither (NULL).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum DatasetVersions {
    Table,
    BaseModel,
    Stats,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one column at a time.
        manager
            .alter_table(
                Table::alter()
                    .table(DatasetVersions::Table)
                    .add_column(ColumnDef::new(DatasetVersions::BaseModel).string().null())
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(DatasetVersions::Table)
                    .add_column(ColumnDef::new(DatasetVersions::Stats).text().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [DatasetVersions::Stats, DatasetVersions::BaseModel] {
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
