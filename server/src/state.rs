//! What every request and background task shares: the database, blob
//! storage and configuration.

use crate::config::Config;
use crate::jobs::events::EventHub;
use crate::storage::BlobStore;
use sea_orm::DatabaseConnection;
use std::sync::Arc;
use tokio::sync::Notify;

#[derive(Clone, Debug)]
pub struct Services {
    pub db: DatabaseConnection,
    pub blobs: BlobStore,
    pub config: Config,
    /// New job events, to the open event streams.
    pub hub: Arc<EventHub>,
    /// Wakes this process's scheduler: a job was queued here, or a
    /// device came free.
    pub queue_wake: Arc<Notify>,
    /// Wakes this process's idle workers: the scheduler assigned jobs.
    pub assigned_wake: Arc<Notify>,
    /// Wakes the checks of files uploaded through the API.
    pub files_wake: Arc<Notify>,
    /// Wakes the checks of saved dataset versions.
    pub datasets_wake: Arc<Notify>,
    /// Saved versions checked at once (`dataset_checks`); the rest wait.
    pub dataset_checks: Arc<tokio::sync::Semaphore>,
    /// One API job is readied at a time in this process, so two callers
    /// (its creation, its file's check) do not split its data twice.
    pub readying: Arc<tokio::sync::Mutex<()>>,
    /// Password hashing (argon2id, ~19 MiB and tens of ms each) runs
    /// under this limit, about one per core: a burst of sign-ins waits
    /// instead of exhausting memory.
    pub hashing: Arc<tokio::sync::Semaphore>,
    /// Passwords checked since start (the throttle's tests count them).
    pub password_checks: Arc<std::sync::atomic::AtomicU64>,
    /// Required by the first-run setup when set (`hone serve` sets one
    /// when it listens beyond loopback and nobody has an account yet).
    pub setup_token: Option<String>,
    /// Uploads in progress (`max_uploads` at once; more get 503).
    pub uploads: Arc<tokio::sync::Semaphore>,
    /// This process's inference services (`hone-train serve` children).
    pub serving: Arc<crate::serving::Serving>,
}

impl Services {
    /// A slot for one upload, or a plain refusal when `max_uploads` are
    /// in progress (held until the returned permit drops).
    pub fn upload_slot(
        &self,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, hone_app::api::AppError> {
        self.uploads.clone().try_acquire_owned().map_err(|_| {
            hone_app::api::AppError::Busy(
                "The server is receiving as many uploads as it takes at once. Try again in a minute.".into(),
            )
        })
    }

    pub fn new(db: DatabaseConnection, blobs: BlobStore, config: Config) -> Services {
        let uploads = Arc::new(tokio::sync::Semaphore::new(config.max_uploads.max(1)));
        let dataset_checks = config.dataset_checks.max(1);
        let blobs = blobs.with_upload_idle(std::time::Duration::from_secs(config.upload_idle_secs));
        Services {
            db,
            blobs,
            config,
            hub: Arc::default(),
            queue_wake: Arc::default(),
            assigned_wake: Arc::default(),
            files_wake: Arc::default(),
            datasets_wake: Arc::default(),
            dataset_checks: Arc::new(tokio::sync::Semaphore::new(dataset_checks)),
            readying: Arc::default(),
            hashing: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )),
            password_checks: Arc::default(),
            setup_token: None,
            uploads,
            serving: Arc::default(),
        }
    }
}

/// Unix seconds: every stored timestamp.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
