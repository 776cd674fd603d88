//! Publishing: a model version's export job (the merged folder and GGUF
//! files, made once the version is approved) and its downloads — one row
//! per archive, with the archive's size, SHA-256 and the manifest of the
//! stored blobs it is streamed from.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum ModelVersions {
    Table,
    Id,
    ExportJobId,
}

#[derive(DeriveIden, Clone, Copy)]
enum Downloads {
    Table,
    Id,
    VersionId,
    Format,
    FileName,
    Size,
    Sha256,
    Manifest,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(ModelVersions::Table)
                .add_column(
                    ColumnDef::new(ModelVersions::ExportJobId)
                        .big_integer()
                        .null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("model_versions_export_job")
                .table(ModelVersions::Table)
                .col(ModelVersions::ExportJobId)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Downloads::Table)
                .col(big_pk_auto(Downloads::Id))
                .col(big_integer(Downloads::VersionId))
                // `adapter`, `merged`, `gguf-f16`, `gguf-q8_0`.
                .col(string(Downloads::Format))
                .col(string(Downloads::FileName))
                .col(big_integer(Downloads::Size))
                .col(string(Downloads::Sha256))
                // JSON: the archive's entries, each a name, a size and a
                // blob key.
                .col(text(Downloads::Manifest))
                .col(big_integer(Downloads::CreatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(Downloads::Table, Downloads::VersionId)
                        .to(ModelVersions::Table, ModelVersions::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("downloads_version_format")
                .table(Downloads::Table)
                .col(Downloads::VersionId)
                .col(Downloads::Format)
                .unique()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Downloads::Table).to_owned())
            .await?;
        m.drop_index(
            Index::drop()
                .name("model_versions_export_job")
                .table(ModelVersions::Table)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(ModelVersions::Table)
                .drop_column(ModelVersions::ExportJobId)
                .to_owned(),
        )
        .await
    }
}
