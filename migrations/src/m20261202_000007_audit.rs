//! The audit log: an append-only record of who did what to what, and
//! when — role and membership changes, accounts made, disabled and
//! enabled, passwords changed and reset, sessions and API keys revoked.
//!
//! Append-only is enforced by the database itself, not only by the code
//! that never updates it: a trigger refuses every `UPDATE` and `DELETE`
//! on the table, on SQLite and PostgreSQL alike.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    At,
    ActorId,
    Actor,
    Action,
    TargetKind,
    TargetId,
    Target,
    Detail,
}

const SQLITE_GUARDS: [&str; 2] = [
    "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log \
     BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
    "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log \
     BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
];

const POSTGRES_GUARDS: [&str; 2] = [
    "CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ \
     BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$",
    "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log \
     FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(AuditLog::Table)
                .col(big_pk_auto(AuditLog::Id))
                // Unix seconds.
                .col(big_integer(AuditLog::At))
                // Who (null: the command line or Hone itself), and their
                // name at the time, kept even if the account changes.
                .col(big_integer_null(AuditLog::ActorId))
                .col(string(AuditLog::Actor))
                // e.g. `role_changed`, `session_revoked`.
                .col(string(AuditLog::Action))
                // `user`, `team`, `api_key`, `session`…, its id and a label.
                .col(string(AuditLog::TargetKind))
                .col(big_integer_null(AuditLog::TargetId))
                .col(string(AuditLog::Target))
                // What changed, as JSON (e.g. `{"from":"expert","to":"admin"}`).
                .col(text(AuditLog::Detail))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("audit_log_at")
                .table(AuditLog::Table)
                .col(AuditLog::At)
                .to_owned(),
        )
        .await?;
        let guards = match m.get_database_backend() {
            sea_orm::DatabaseBackend::Postgres => &POSTGRES_GUARDS,
            _ => &SQLITE_GUARDS,
        };
        for sql in guards {
            m.get_connection().execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
