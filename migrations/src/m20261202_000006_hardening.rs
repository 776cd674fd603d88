//! Hardening: sign-in throttling by a not-before time (a failure is
//! recorded in one statement before the password is checked), a marker
//! that the first-run setup happened (its unique key makes two concurrent
//! setups one), and sessions that know their user and when they started
//! (to list and revoke them, and to end them at their absolute lifetime).
//!
//! The throttle's rows are short-lived counters: the old table is dropped
//! rather than converted.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum LoginThrottle {
    Table,
    Key,
    Failures,
    NotBeforeMs,
    UpdatedMs,
}

#[derive(DeriveIden)]
enum Instance {
    Table,
    Key,
    Value,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    UserId,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(LoginThrottle::Table).to_owned())
            .await?;
        m.create_table(
            Table::create()
                .table(LoginThrottle::Table)
                // `user:<name>` or `ip:<address>`.
                .col(string(LoginThrottle::Key).primary_key())
                // Failures in a row (reset by a successful sign-in).
                .col(integer(LoginThrottle::Failures))
                // No attempt before this (Unix ms): 1 s after the first
                // failure, doubling, at most 15 minutes.
                .col(big_integer(LoginThrottle::NotBeforeMs))
                .col(big_integer(LoginThrottle::UpdatedMs))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("login_throttle_updated")
                .table(LoginThrottle::Table)
                .col(LoginThrottle::UpdatedMs)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Instance::Table)
                // e.g. `setup`: inserted once, by the first-run setup.
                .col(string(Instance::Key).primary_key())
                .col(text(Instance::Value))
                .col(big_integer(Instance::CreatedAt))
                .to_owned(),
        )
        .await?;
        // An installation that already has people was set up before.
        m.get_connection()
            .execute_unprepared(
                "INSERT INTO instance (key, value, created_at) SELECT 'setup', 'before migration 6', 0 WHERE EXISTS (SELECT 1 FROM users)",
            )
            .await?;
        // One column per statement: SQLite alters one column at a time.
        for col in [Sessions::UserId, Sessions::CreatedAt] {
            m.alter_table(
                Table::alter()
                    .table(Sessions::Table)
                    .add_column(big_integer_null(col))
                    .to_owned(),
            )
            .await?;
        }
        m.create_index(
            Index::create()
                .name("sessions_user")
                .table(Sessions::Table)
                .col(Sessions::UserId)
                .to_owned(),
        )
        .await
    }
}
