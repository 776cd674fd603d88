//! Dataset versions: an uploaded source file, checked and split by the
//! server. A version is immutable: there is no update path for it.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum DatasetVersions {
    Table,
    Id,
    ProjectId,
    Name,
    SourceFileId,
    Format,
    Examples,
    Rejected,
    DroppedRejected,
    Errors,
    Warnings,
    FindingCounts,
    Seed,
    Ratios,
    TrainCount,
    ValidationCount,
    TestCount,
    TrainKey,
    ValidationKey,
    TestKey,
    TrainSha256,
    ValidationSha256,
    TestSha256,
    CreatedBy,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Projects {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Files {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(DatasetVersions::Table)
                .col(big_pk_auto(DatasetVersions::Id))
                .col(big_integer(DatasetVersions::ProjectId))
                .col(string(DatasetVersions::Name))
                .col(big_integer(DatasetVersions::SourceFileId))
                .col(string(DatasetVersions::Format))
                .col(big_integer(DatasetVersions::Examples))
                .col(big_integer(DatasetVersions::Rejected))
                .col(boolean(DatasetVersions::DroppedRejected))
                .col(big_integer(DatasetVersions::Errors))
                .col(big_integer(DatasetVersions::Warnings))
                .col(text(DatasetVersions::FindingCounts))
                // u64 seeds do not fit BIGINT: stored as decimal text.
                .col(string(DatasetVersions::Seed))
                .col(string(DatasetVersions::Ratios))
                .col(big_integer(DatasetVersions::TrainCount))
                .col(big_integer(DatasetVersions::ValidationCount))
                .col(big_integer(DatasetVersions::TestCount))
                .col(string(DatasetVersions::TrainKey))
                .col(string(DatasetVersions::ValidationKey))
                .col(string(DatasetVersions::TestKey))
                .col(string(DatasetVersions::TrainSha256))
                .col(string(DatasetVersions::ValidationSha256))
                .col(string(DatasetVersions::TestSha256))
                .col(big_integer(DatasetVersions::CreatedBy))
                .col(big_integer(DatasetVersions::CreatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(DatasetVersions::Table, DatasetVersions::ProjectId)
                        .to(Projects::Table, Projects::Id),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(DatasetVersions::Table, DatasetVersions::SourceFileId)
                        .to(Files::Table, Files::Id),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(DatasetVersions::Table, DatasetVersions::CreatedBy)
                        .to(Users::Table, Users::Id),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("dataset_versions_project")
                .table(DatasetVersions::Table)
                .col(DatasetVersions::ProjectId)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(DatasetVersions::Table).to_owned())
            .await
    }
}
