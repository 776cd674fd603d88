//! What every request and background task shares: the database, blob
//! storage and configuration.

use crate::config::Config;
use crate::storage::BlobStore;
use sea_orm::DatabaseConnection;

#[derive(Clone, Debug)]
pub struct Services {
    pub db: DatabaseConnection,
    pub blobs: BlobStore,
    pub config: Config,
}

/// Unix seconds: every stored timestamp.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
