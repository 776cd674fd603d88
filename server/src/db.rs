//! Opening the database: SQLite in the data directory unless `DATABASE_URL`
//! names another (PostgreSQL), then every pending migration.

use anyhow::Context;
use hone_migrations::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement,
};
use std::path::Path;

/// Connects and migrates. SQLite gets WAL (readers never wait for the
/// writer) and foreign keys on every connection.
pub async fn connect(url: Option<&str>, data_dir: &Path) -> anyhow::Result<DatabaseConnection> {
    let url = match url {
        Some(u) => u.to_owned(),
        None => format!("sqlite://{}?mode=rwc", data_dir.join("hone.db").display()),
    };
    let mut opts = ConnectOptions::new(url.clone());
    opts.sqlx_logging(false);
    if url.starts_with("sqlite:") {
        opts.map_sqlx_sqlite_opts(|o| {
            o.foreign_keys(true)
                .journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .busy_timeout(std::time::Duration::from_secs(10))
        });
    }
    let db = Database::connect(opts)
        .await
        .with_context(|| format!("connecting to the database at {}", redact(&url)))?;
    Migrator::up(&db, None)
        .await
        .context("applying database migrations")?;
    Ok(db)
}

/// Whether the database answers a trivial query (`/readyz`).
pub async fn ping(db: &DatabaseConnection) -> bool {
    db.execute_raw(Statement::from_string(
        db.get_database_backend(),
        "SELECT 1",
    ))
    .await
    .is_ok()
}

/// The value of a SQLite pragma (tests check WAL and foreign keys).
pub async fn sqlite_pragma(db: &DatabaseConnection, name: &str) -> anyhow::Result<String> {
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Sqlite,
            format!("PRAGMA {name}"),
        ))
        .await?
        .context("pragma returned no row")?;
    Ok(match row.try_get_by_index::<String>(0) {
        Ok(s) => s,
        Err(_) => row.try_get_by_index::<i64>(0)?.to_string(),
    })
}

/// A database URL without its password, for logs and errors.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(
            super::redact("postgres://hone:s3cret@db/hone"),
            "postgres://hone:***@db/hone"
        );
        assert_eq!(
            super::redact("sqlite://data/hone.db?mode=rwc"),
            "sqlite://data/hone.db?mode=rwc"
        );
    }
}
