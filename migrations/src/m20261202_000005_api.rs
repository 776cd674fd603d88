//! The OpenAI-compatible API: API keys (stored hashed, each bound to its
//! owner and one project), files uploaded through it (a purpose and the
//! state of their checks), users who can be disabled, and jobs that can
//! exist before their dataset version does — a job made on a file still
//! being checked waits in `validating_files` with no version yet.
//!
//! Making `jobs.dataset_version_id` nullable is an `ALTER COLUMN` on
//! PostgreSQL; SQLite cannot alter a column, so there the table is rebuilt
//! (SQLite's documented procedure: new table, copy, drop, rename). That
//! needs foreign keys off, which `hone_server::db::connect` arranges by
//! migrating on a connection of its own.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
    UserId,
    ProjectId,
    Name,
    Prefix,
    SecretHash,
    CreatedAt,
    LastUsedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    DisabledAt,
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
    Purpose,
    Status,
    StatusDetails,
    DeletedAt,
}

#[derive(DeriveIden)]
enum DatasetVersions {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Jobs {
    Table,
    Id,
    ProjectId,
    DatasetVersionId,
    CreatedBy,
    BaseModel,
    Method,
    Spec,
    State,
    Attempts,
    MaxAttempts,
    WorkerId,
    LeaseExpiresMs,
    Device,
    Step,
    TotalSteps,
    CheckpointStep,
    FailureCause,
    FailureReason,
    Outcome,
    TokensPerS,
    CreatedAt,
    QueuedAt,
    StartedAt,
    FinishedAt,
    UpdatedAt,
    // New here:
    TrainingFileId,
    ValidationFileId,
    ValidationDatasetVersionId,
    Seed,
    Suffix,
    FineTunedModel,
    ApiRequest,
}

#[derive(DeriveIden)]
enum JobsNew {
    Table,
}

/// The columns a job had before this migration, in order.
const OLD_COLUMNS: [Jobs; 25] = [
    Jobs::Id,
    Jobs::ProjectId,
    Jobs::DatasetVersionId,
    Jobs::CreatedBy,
    Jobs::BaseModel,
    Jobs::Method,
    Jobs::Spec,
    Jobs::State,
    Jobs::Attempts,
    Jobs::MaxAttempts,
    Jobs::WorkerId,
    Jobs::LeaseExpiresMs,
    Jobs::Device,
    Jobs::Step,
    Jobs::TotalSteps,
    Jobs::CheckpointStep,
    Jobs::FailureCause,
    Jobs::FailureReason,
    Jobs::Outcome,
    Jobs::TokensPerS,
    Jobs::CreatedAt,
    Jobs::QueuedAt,
    Jobs::StartedAt,
    Jobs::FinishedAt,
    Jobs::UpdatedAt,
];

fn fk(from: impl IntoIden, to: impl IntoIden, to_col: impl IntoIden) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(Jobs::Table, from)
        .to(to, to_col)
        .to_owned()
}

/// The jobs table as this migration leaves it (SQLite builds it whole).
fn jobs_table(name: impl IntoIden) -> TableCreateStatement {
    let name = name.into_iden();
    let fk = |from: Jobs, to: DynIden, col: DynIden| {
        ForeignKey::create()
            .from(name.clone(), from)
            .to(to, col)
            .to_owned()
    };
    Table::create()
        .table(name.clone())
        .col(big_pk_auto(Jobs::Id))
        .col(big_integer(Jobs::ProjectId))
        .col(big_integer_null(Jobs::DatasetVersionId))
        .col(big_integer(Jobs::CreatedBy))
        .col(string(Jobs::BaseModel))
        .col(string(Jobs::Method))
        .col(text(Jobs::Spec))
        .col(string(Jobs::State))
        .col(integer(Jobs::Attempts).default(0))
        .col(integer(Jobs::MaxAttempts))
        .col(string_null(Jobs::WorkerId))
        .col(big_integer_null(Jobs::LeaseExpiresMs))
        .col(text_null(Jobs::Device))
        .col(big_integer_null(Jobs::Step))
        .col(big_integer_null(Jobs::TotalSteps))
        .col(big_integer_null(Jobs::CheckpointStep))
        .col(string_null(Jobs::FailureCause))
        .col(text_null(Jobs::FailureReason))
        .col(text_null(Jobs::Outcome))
        .col(double_null(Jobs::TokensPerS))
        .col(big_integer(Jobs::CreatedAt))
        .col(big_integer_null(Jobs::QueuedAt))
        .col(big_integer_null(Jobs::StartedAt))
        .col(big_integer_null(Jobs::FinishedAt))
        .col(big_integer(Jobs::UpdatedAt))
        .col(big_integer_null(Jobs::TrainingFileId))
        .col(big_integer_null(Jobs::ValidationFileId))
        .col(big_integer_null(Jobs::ValidationDatasetVersionId))
        .col(string_null(Jobs::Seed))
        .col(string_null(Jobs::Suffix))
        .col(string_null(Jobs::FineTunedModel))
        .col(text_null(Jobs::ApiRequest))
        .foreign_key(&mut fk(
            Jobs::ProjectId,
            Projects::Table.into_iden(),
            Projects::Id.into_iden(),
        ))
        .foreign_key(&mut fk(
            Jobs::DatasetVersionId,
            DatasetVersions::Table.into_iden(),
            DatasetVersions::Id.into_iden(),
        ))
        .foreign_key(&mut fk(
            Jobs::CreatedBy,
            Users::Table.into_iden(),
            Users::Id.into_iden(),
        ))
        .foreign_key(&mut fk(
            Jobs::TrainingFileId,
            Files::Table.into_iden(),
            Files::Id.into_iden(),
        ))
        .foreign_key(&mut fk(
            Jobs::ValidationFileId,
            Files::Table.into_iden(),
            Files::Id.into_iden(),
        ))
        .foreign_key(&mut fk(
            Jobs::ValidationDatasetVersionId,
            DatasetVersions::Table.into_iden(),
            DatasetVersions::Id.into_iden(),
        ))
        .to_owned()
}

async fn add_column(
    m: &SchemaManager<'_>,
    table: impl IntoIden,
    col: ColumnDef,
) -> Result<(), DbErr> {
    // One column per statement: SQLite alters one column at a time.
    m.alter_table(Table::alter().table(table).add_column(col).to_owned())
        .await
}

/// SQLite: rebuild `jobs` with the new shape and every row kept.
async fn rebuild_jobs_sqlite(m: &SchemaManager<'_>) -> Result<(), DbErr> {
    let db = m.get_connection();
    m.create_table(jobs_table(JobsNew::Table)).await?;
    let cols = OLD_COLUMNS
        .iter()
        .map(|c| format!("\"{}\"", c.to_string()))
        .collect::<Vec<_>>()
        .join(", ");
    db.execute_unprepared(&format!(
        "INSERT INTO \"jobs_new\" ({cols}) SELECT {cols} FROM \"jobs\""
    ))
    .await?;
    db.execute_unprepared("DROP TABLE \"jobs\"").await?;
    db.execute_unprepared("ALTER TABLE \"jobs_new\" RENAME TO \"jobs\"")
        .await?;
    Ok(())
}

/// PostgreSQL: the same shape by altering in place.
async fn alter_jobs_postgres(m: &SchemaManager<'_>) -> Result<(), DbErr> {
    m.get_connection()
        .execute_unprepared("ALTER TABLE jobs ALTER COLUMN dataset_version_id DROP NOT NULL")
        .await?;
    for c in [
        Jobs::TrainingFileId,
        Jobs::ValidationFileId,
        Jobs::ValidationDatasetVersionId,
    ] {
        add_column(m, Jobs::Table, big_integer_null(c)).await?;
    }
    for c in [Jobs::Seed, Jobs::Suffix, Jobs::FineTunedModel] {
        add_column(m, Jobs::Table, string_null(c)).await?;
    }
    add_column(m, Jobs::Table, text_null(Jobs::ApiRequest)).await?;
    for (col, table, to) in [
        (
            Jobs::TrainingFileId,
            Files::Table.into_iden(),
            Files::Id.into_iden(),
        ),
        (
            Jobs::ValidationFileId,
            Files::Table.into_iden(),
            Files::Id.into_iden(),
        ),
        (
            Jobs::ValidationDatasetVersionId,
            DatasetVersions::Table.into_iden(),
            DatasetVersions::Id.into_iden(),
        ),
    ] {
        m.create_foreign_key(fk(col, table, to)).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(ApiKeys::Table)
                .col(big_pk_auto(ApiKeys::Id))
                .col(big_integer(ApiKeys::UserId))
                .col(big_integer(ApiKeys::ProjectId))
                .col(string(ApiKeys::Name))
                // The key's first characters, shown so people can tell
                // keys apart; not enough to use it.
                .col(string(ApiKeys::Prefix))
                // SHA-256 of the whole key, hex: keys are 256 random bits,
                // so a fast hash is enough (no dictionary to guess from).
                .col(string(ApiKeys::SecretHash).unique_key())
                .col(big_integer(ApiKeys::CreatedAt))
                .col(big_integer_null(ApiKeys::LastUsedAt))
                .col(big_integer_null(ApiKeys::RevokedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(ApiKeys::Table, ApiKeys::UserId)
                        .to(Users::Table, Users::Id),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(ApiKeys::Table, ApiKeys::ProjectId)
                        .to(Projects::Table, Projects::Id),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("api_keys_user")
                .table(ApiKeys::Table)
                .col(ApiKeys::UserId)
                .to_owned(),
        )
        .await?;

        add_column(m, Users::Table, big_integer_null(Users::DisabledAt)).await?;
        // NULL purpose: uploaded in the browser. Status: "uploaded",
        // "processed" or "error" (OpenAI's names), for API files.
        add_column(m, Files::Table, string_null(Files::Purpose)).await?;
        add_column(m, Files::Table, string_null(Files::Status)).await?;
        add_column(m, Files::Table, text_null(Files::StatusDetails)).await?;
        add_column(m, Files::Table, big_integer_null(Files::DeletedAt)).await?;

        match m.get_database_backend() {
            sea_orm::DatabaseBackend::Sqlite => rebuild_jobs_sqlite(m).await?,
            _ => alter_jobs_postgres(m).await?,
        }
        // The rebuilt table lost its indexes on SQLite; PostgreSQL keeps them.
        if m.get_database_backend() == sea_orm::DatabaseBackend::Sqlite {
            for (name, col) in [
                ("jobs_state", Jobs::State),
                ("jobs_project", Jobs::ProjectId),
            ] {
                m.create_index(
                    Index::create()
                        .name(name)
                        .table(Jobs::Table)
                        .col(col)
                        .to_owned(),
                )
                .await?;
            }
        }
        for (name, col) in [
            ("jobs_training_file", Jobs::TrainingFileId),
            ("jobs_validation_file", Jobs::ValidationFileId),
        ] {
            m.create_index(
                Index::create()
                    .name(name)
                    .table(Jobs::Table)
                    .col(col)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
