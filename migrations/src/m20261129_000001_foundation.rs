//! The platform foundation: accounts, teams, projects, uploaded files,
//! sessions and login throttling.
//!
//! Timestamps are Unix seconds in BIGINT columns: the same type and the same
//! comparisons on SQLite and PostgreSQL, with no time-zone surprises.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Username,
    PasswordHash,
    Role,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Teams {
    Table,
    Id,
    Name,
    CreatedAt,
}

#[derive(DeriveIden)]
enum TeamMembers {
    Table,
    UserId,
    TeamId,
}

#[derive(DeriveIden)]
enum Projects {
    Table,
    Id,
    TeamId,
    Name,
    CreatedBy,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Files {
    Table,
    Id,
    ProjectId,
    Name,
    Size,
    Sha256,
    StorageKey,
    UploadedBy,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Id,
    Data,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum LoginThrottle {
    Table,
    Key,
    Failures,
    WindowStart,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Users::Table)
                .col(big_pk_auto(Users::Id))
                .col(string_uniq(Users::Username))
                .col(string(Users::PasswordHash))
                .col(string(Users::Role))
                .col(big_integer(Users::CreatedAt))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Teams::Table)
                .col(big_pk_auto(Teams::Id))
                .col(string_uniq(Teams::Name))
                .col(big_integer(Teams::CreatedAt))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(TeamMembers::Table)
                .col(big_integer(TeamMembers::UserId))
                .col(big_integer(TeamMembers::TeamId))
                .primary_key(
                    Index::create()
                        .col(TeamMembers::UserId)
                        .col(TeamMembers::TeamId),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(TeamMembers::Table, TeamMembers::UserId)
                        .to(Users::Table, Users::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(TeamMembers::Table, TeamMembers::TeamId)
                        .to(Teams::Table, Teams::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Projects::Table)
                .col(big_pk_auto(Projects::Id))
                .col(big_integer(Projects::TeamId))
                .col(string(Projects::Name))
                .col(big_integer(Projects::CreatedBy))
                .col(big_integer(Projects::CreatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(Projects::Table, Projects::TeamId)
                        .to(Teams::Table, Teams::Id),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(Projects::Table, Projects::CreatedBy)
                        .to(Users::Table, Users::Id),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("projects_team_name")
                .table(Projects::Table)
                .col(Projects::TeamId)
                .col(Projects::Name)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Files::Table)
                .col(big_pk_auto(Files::Id))
                .col(big_integer(Files::ProjectId))
                .col(string(Files::Name))
                .col(big_integer(Files::Size))
                .col(string(Files::Sha256))
                .col(string(Files::StorageKey))
                .col(big_integer(Files::UploadedBy))
                .col(big_integer(Files::CreatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(Files::Table, Files::ProjectId)
                        .to(Projects::Table, Projects::Id),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(Files::Table, Files::UploadedBy)
                        .to(Users::Table, Users::Id),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("files_project")
                .table(Files::Table)
                .col(Files::ProjectId)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Sessions::Table)
                .col(string(Sessions::Id).primary_key())
                .col(text(Sessions::Data))
                .col(big_integer(Sessions::ExpiresAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("sessions_expires_at")
                .table(Sessions::Table)
                .col(Sessions::ExpiresAt)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(LoginThrottle::Table)
                .col(string(LoginThrottle::Key).primary_key())
                .col(integer(LoginThrottle::Failures))
                .col(big_integer(LoginThrottle::WindowStart))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(LoginThrottle::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(Sessions::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(Files::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(Projects::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(TeamMembers::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(Teams::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(Users::Table).to_owned())
            .await
    }
}
