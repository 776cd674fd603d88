//! The admin's view of scheduling: every job across teams, the devices and
//! their workers, each team's quota and use, device weights, the usage
//! report and the audit log. Admins only.

use super::{AppError, CurrentUser, JobSummary};
use hone_protocol::{Device, LiveFigures};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// One job in the admin's queue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueueRow {
    pub job: JobSummary,
    pub team: String,
    /// The device it runs on (its name), while it runs.
    pub device: Option<String>,
    /// Runs on a borrowed device: may be asked to give it back.
    pub preemptible: bool,
    /// Weighted device-hours it has held so far.
    pub hours: f64,
}

/// One team's limits and use.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TeamQuota {
    pub team_id: i64,
    pub team: String,
    /// Devices it holds at once without being preempted.
    pub guaranteed_devices: u32,
    /// Weighted device-hours per calendar month (UTC); `None`: no limit.
    pub month_hours: Option<f64>,
    /// Jobs one person may run at once; `None`: no limit.
    pub per_person: Option<u32>,
    /// Weighted device-hours used this month, running jobs included.
    pub used_month_hours: f64,
    /// Jobs running now.
    pub running: u32,
    /// Jobs waiting.
    pub waiting: u32,
}

/// How an hour on a kind of device counts against budgets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceWeight {
    /// The device's name as its workers report it.
    pub name: String,
    pub weight: f64,
    /// Worker slots reporting a device of this name now.
    pub devices: u32,
}

/// One worker slot and its device.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerRow {
    pub id: String,
    pub host: String,
    pub device: Device,
    /// "ready", or why it cannot run jobs.
    pub status: String,
    /// It stopped reporting: its jobs go back to the queue.
    pub lost: bool,
    /// Milliseconds since its last heartbeat (the database's clock).
    pub heartbeat_age_ms: i64,
    pub live: Option<LiveFigures>,
    /// The job it runs: (project, job).
    pub running: Option<(i64, i64)>,
}

/// `/admin/queue`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueuePage {
    pub user: CurrentUser,
    /// Waiting (in the scheduler's order), paused and running jobs first,
    /// then the most recent others.
    pub jobs: Vec<QueueRow>,
    pub teams: Vec<TeamQuota>,
    pub weights: Vec<DeviceWeight>,
    pub workers: Vec<WorkerRow>,
}

/// One team's line of the usage report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TeamUsage {
    pub team: String,
    /// Weighted device-hours per day of the period.
    pub hours: Vec<f64>,
    /// The month's budget, for the quota line.
    pub month_hours: Option<f64>,
}

/// `/admin/usage`: device-hours per team and day (UTC).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UsageReport {
    pub user: CurrentUser,
    /// `YYYY-MM-DD`, inclusive.
    pub from: String,
    pub to: String,
    /// Each day of the period, `YYYY-MM-DD`.
    pub days: Vec<String>,
    pub teams: Vec<TeamUsage>,
}

/// One audit entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    /// Unix seconds.
    pub at: i64,
    pub actor: String,
    /// The action's name (`quota_changed`, `job_paused`, …).
    pub action: String,
    pub target_kind: String,
    pub target: String,
    /// The team it concerns, where it concerns one.
    pub team: Option<String>,
    /// JSON: what changed.
    pub detail: String,
}

/// `/admin/audit`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPage {
    pub user: CurrentUser,
    /// Newest first, at most 500.
    pub entries: Vec<AuditEntry>,
    /// The choices of the filters.
    pub actions: Vec<String>,
    pub people: Vec<String>,
    pub teams: Vec<String>,
}

#[cfg(feature = "ssr")]
pub use backend::QueueBackend;

#[cfg(feature = "ssr")]
mod backend {
    use super::*;
    use crate::api::RequestParts;

    #[async_trait::async_trait]
    pub trait QueueBackend: Send + Sync + 'static {
        async fn queue_page(&self, req: &RequestParts) -> Result<QueuePage, AppError>;
        async fn set_quota(
            &self,
            req: &RequestParts,
            team_id: i64,
            guaranteed_devices: String,
            month_hours: String,
            per_person: String,
        ) -> Result<(), AppError>;
        async fn set_device_weight(
            &self,
            req: &RequestParts,
            name: String,
            weight: String,
        ) -> Result<(), AppError>;
        async fn set_job_priority(
            &self,
            req: &RequestParts,
            id: i64,
            priority: String,
        ) -> Result<(), AppError>;
        async fn pause_job(&self, req: &RequestParts, id: i64) -> Result<(), AppError>;
        async fn resume_job(&self, req: &RequestParts, id: i64) -> Result<(), AppError>;
        async fn admin_cancel_job(&self, req: &RequestParts, id: i64) -> Result<(), AppError>;
        async fn usage_report(
            &self,
            req: &RequestParts,
            from: String,
            to: String,
        ) -> Result<UsageReport, AppError>;
        async fn audit_page(
            &self,
            req: &RequestParts,
            person: String,
            team: String,
            action: String,
        ) -> Result<AuditPage, AppError>;
    }
}

#[server(prefix = "/api", endpoint = "queue")]
pub async fn load_queue() -> Result<QueuePage, AppError> {
    use std::sync::Arc;
    super::ssr::call(|b: Arc<dyn QueueBackend>, r| async move { b.queue_page(&r).await }).await
}

/// Sets a team's quota; empty `month_hours` / `per_person`: no limit.
#[server(prefix = "/api", endpoint = "set_quota")]
pub async fn set_quota(
    team_id: i64,
    guaranteed_devices: String,
    month_hours: String,
    per_person: String,
) -> Result<(), AppError> {
    use std::sync::Arc;
    super::ssr::call(|b: Arc<dyn QueueBackend>, r| async move {
        b.set_quota(&r, team_id, guaranteed_devices, month_hours, per_person)
            .await
    })
    .await
}

#[server(prefix = "/api", endpoint = "set_device_weight")]
pub async fn set_device_weight(name: String, weight: String) -> Result<(), AppError> {
    use std::sync::Arc;
    super::ssr::call(|b: Arc<dyn QueueBackend>, r| async move {
        b.set_device_weight(&r, name, weight).await
    })
    .await
}

#[server(prefix = "/api", endpoint = "set_job_priority")]
pub async fn set_job_priority(id: i64, priority: String) -> Result<(), AppError> {
    use std::sync::Arc;
    super::ssr::call(|b: Arc<dyn QueueBackend>, r| async move {
        b.set_job_priority(&r, id, priority).await
    })
    .await
}

#[server(prefix = "/api", endpoint = "pause_job")]
pub async fn pause_job(id: i64) -> Result<(), AppError> {
    use std::sync::Arc;
    super::ssr::call(|b: Arc<dyn QueueBackend>, r| async move { b.pause_job(&r, id).await }).await
}

#[server(prefix = "/api", endpoint = "resume_job")]
pub async fn resume_job(id: i64) -> Result<(), AppError> {
    use std::sync::Arc;
    super::ssr::call(|b: Arc<dyn QueueBackend>, r| async move { b.resume_job(&r, id).await }).await
}

#[server(prefix = "/api", endpoint = "admin_cancel_job")]
pub async fn admin_cancel_job(id: i64) -> Result<(), AppError> {
    use std::sync::Arc;
    super::ssr::call(|b: Arc<dyn QueueBackend>, r| async move { b.admin_cancel_job(&r, id).await })
        .await
}

/// Days `from` to `to` (`YYYY-MM-DD`, UTC; empty: this month so far).
#[server(prefix = "/api", endpoint = "usage_report")]
pub async fn load_usage(from: String, to: String) -> Result<UsageReport, AppError> {
    use std::sync::Arc;
    super::ssr::call(
        |b: Arc<dyn QueueBackend>, r| async move { b.usage_report(&r, from, to).await },
    )
    .await
}

/// Filters: empty means all.
#[server(prefix = "/api", endpoint = "audit_log")]
pub async fn load_audit(
    person: String,
    team: String,
    action: String,
) -> Result<AuditPage, AppError> {
    use std::sync::Arc;
    super::ssr::call(|b: Arc<dyn QueueBackend>, r| async move {
        b.audit_page(&r, person, team, action).await
    })
    .await
}
