//! Opening the database: SQLite in the data directory unless `DATABASE_URL`
//! names another (PostgreSQL), then every pending migration.

use anyhow::Context;
use hone_migrations::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement,
};
use std::path::Path;

/// Connects and migrates. SQLite gets WAL (readers never wait for the
/// writer) and foreign keys on every connection of the pool.
///
/// On SQLite the migrations run first on a connection of their own with
/// foreign keys off: some rebuild a table (SQLite cannot alter a column),
/// which its documented procedure does with them off. The keys are then
/// checked whole (`PRAGMA foreign_key_check`) before the pool opens.
pub async fn connect(url: Option<&str>, data_dir: &Path) -> anyhow::Result<DatabaseConnection> {
    let url = match url {
        Some(u) => u.to_owned(),
        None => format!("sqlite://{}?mode=rwc", data_dir.join("hone.db").display()),
    };
    let sqlite = url.starts_with("sqlite:");
    let options = |foreign_keys: bool| {
        let mut opts = ConnectOptions::new(url.clone());
        opts.sqlx_logging(false);
        if sqlite {
            if !foreign_keys {
                opts.max_connections(1).min_connections(1);
            }
            opts.map_sqlx_sqlite_opts(move |o| {
                o.foreign_keys(foreign_keys)
                    .journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                    .busy_timeout(std::time::Duration::from_secs(10))
            });
        }
        opts
    };
    let context = || format!("connecting to the database at {}", redact(&url));
    if sqlite {
        let migrating = Database::connect(options(false))
            .await
            .with_context(context)?;
        Migrator::up(&migrating, None)
            .await
            .context("applying database migrations")?;
        let broken = migrating
            .query_all_raw(Statement::from_string(
                DbBackend::Sqlite,
                "PRAGMA foreign_key_check",
            ))
            .await?;
        anyhow::ensure!(
            broken.is_empty(),
            "the database has {} rows whose references are broken after migrating",
            broken.len()
        );
        migrating.close().await?;
    }
    let db = Database::connect(options(true))
        .await
        .with_context(context)?;
    if !sqlite {
        Migrator::up(&db, None)
            .await
            .context("applying database migrations")?;
    }
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
    let url = match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    };
    // `?password=…` (and `sslpassword`, `pass`…) in the query too.
    match url.split_once('?') {
        Some((base, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if k.to_lowercase().contains("pass") => format!("{k}=***"),
                    _ => p.to_owned(),
                })
                .collect();
            format!("{base}?{}", params.join("&"))
        }
        None => url,
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
        assert_eq!(
            super::redact("postgres://db/hone?user=hone&password=s3cret&sslmode=require"),
            "postgres://db/hone?user=hone&password=***&sslmode=require"
        );
    }
}
