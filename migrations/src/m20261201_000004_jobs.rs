//! Training jobs and what they leave behind: the job (its spec, state with
//! a timestamp per transition, lease), its event log, the checkpoints and
//! final files stored in blob storage, and the workers that run them.
//!
//! Times are Unix seconds except where a column says `_ms` (leases,
//! heartbeats and events need finer steps than a second).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

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
}

#[derive(DeriveIden)]
enum JobEvents {
    Table,
    Id,
    JobId,
    AtMs,
    Body,
}

#[derive(DeriveIden)]
enum JobCheckpoints {
    Table,
    Id,
    JobId,
    Step,
    Manifest,
    CreatedAt,
}

#[derive(DeriveIden)]
enum JobArtifacts {
    Table,
    Id,
    JobId,
    Path,
    Size,
    Sha256,
    StorageKey,
}

#[derive(DeriveIden)]
enum Workers {
    Table,
    Id,
    Host,
    Device,
    Status,
    StartedAt,
    HeartbeatMs,
}

#[derive(DeriveIden)]
enum Projects {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum DatasetVersions {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

fn belongs_to_job(table: impl IntoIden, col: impl IntoIden) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(table, col)
        .to(Jobs::Table, Jobs::Id)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Jobs::Table)
                .col(big_pk_auto(Jobs::Id))
                .col(big_integer(Jobs::ProjectId))
                .col(big_integer(Jobs::DatasetVersionId))
                .col(big_integer(Jobs::CreatedBy))
                .col(string(Jobs::BaseModel))
                .col(string(Jobs::Method))
                // hone_protocol::JobSpec as JSON: every setting.
                .col(text(Jobs::Spec))
                .col(string(Jobs::State))
                .col(integer(Jobs::Attempts).default(0))
                .col(integer(Jobs::MaxAttempts))
                // The lease: who runs it and until when, unless renewed.
                .col(string_null(Jobs::WorkerId))
                .col(big_integer_null(Jobs::LeaseExpiresMs))
                // hone_protocol::Device as JSON.
                .col(text_null(Jobs::Device))
                .col(big_integer_null(Jobs::Step))
                .col(big_integer_null(Jobs::TotalSteps))
                .col(big_integer_null(Jobs::CheckpointStep))
                .col(string_null(Jobs::FailureCause))
                .col(text_null(Jobs::FailureReason))
                // hone_protocol::Outcome as JSON.
                .col(text_null(Jobs::Outcome))
                .col(double_null(Jobs::TokensPerS))
                .col(big_integer(Jobs::CreatedAt))
                .col(big_integer_null(Jobs::QueuedAt))
                .col(big_integer_null(Jobs::StartedAt))
                .col(big_integer_null(Jobs::FinishedAt))
                .col(big_integer(Jobs::UpdatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(Jobs::Table, Jobs::ProjectId)
                        .to(Projects::Table, Projects::Id),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(Jobs::Table, Jobs::DatasetVersionId)
                        .to(DatasetVersions::Table, DatasetVersions::Id),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(Jobs::Table, Jobs::CreatedBy)
                        .to(Users::Table, Users::Id),
                )
                .to_owned(),
        )
        .await?;
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

        m.create_table(
            Table::create()
                .table(JobEvents::Table)
                .col(big_pk_auto(JobEvents::Id))
                .col(big_integer(JobEvents::JobId))
                .col(big_integer(JobEvents::AtMs))
                // hone_app::api::JobEventBody as JSON.
                .col(text(JobEvents::Body))
                .foreign_key(&mut belongs_to_job(JobEvents::Table, JobEvents::JobId))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("job_events_job")
                .table(JobEvents::Table)
                .col(JobEvents::JobId)
                .col(JobEvents::Id)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(JobCheckpoints::Table)
                .col(big_pk_auto(JobCheckpoints::Id))
                .col(big_integer(JobCheckpoints::JobId))
                .col(big_integer(JobCheckpoints::Step))
                // The checkpoint folder's files: [{path, key, size, sha256}].
                .col(text(JobCheckpoints::Manifest))
                .col(big_integer(JobCheckpoints::CreatedAt))
                .foreign_key(&mut belongs_to_job(
                    JobCheckpoints::Table,
                    JobCheckpoints::JobId,
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("job_checkpoints_job")
                .table(JobCheckpoints::Table)
                .col(JobCheckpoints::JobId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(JobArtifacts::Table)
                .col(big_pk_auto(JobArtifacts::Id))
                .col(big_integer(JobArtifacts::JobId))
                .col(string(JobArtifacts::Path))
                .col(big_integer(JobArtifacts::Size))
                .col(string(JobArtifacts::Sha256))
                .col(string(JobArtifacts::StorageKey))
                .foreign_key(&mut belongs_to_job(
                    JobArtifacts::Table,
                    JobArtifacts::JobId,
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("job_artifacts_job")
                .table(JobArtifacts::Table)
                .col(JobArtifacts::JobId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Workers::Table)
                .col(string(Workers::Id).primary_key())
                .col(string(Workers::Host))
                // hone_protocol::Device as JSON: the one device of this slot.
                .col(text(Workers::Device))
                // "ready", or why the worker cannot run jobs.
                .col(text(Workers::Status))
                .col(big_integer(Workers::StartedAt))
                .col(big_integer(Workers::HeartbeatMs))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            JobArtifacts::Table.into_iden(),
            JobCheckpoints::Table.into_iden(),
            JobEvents::Table.into_iden(),
            Jobs::Table.into_iden(),
            Workers::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
