//! sea-orm entities, one per table created in `hone-migrations`.
//! Relations are joined by hand in the queries that need them.

pub mod api_key;
pub mod audit;
pub mod dataset_version;
pub mod device_weight;
pub mod download;
pub mod file;
pub mod instance;
pub mod job;
pub mod job_artifact;
pub mod job_checkpoint;
pub mod job_event;
pub mod job_usage;
pub mod login_throttle;
pub mod membership;
pub mod model_version;
pub mod notification;
pub mod project;
pub mod rating;
pub mod review;
pub mod scheduler_lease;
pub mod session;
pub mod team;
pub mod user;
pub mod worker;
