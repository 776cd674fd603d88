//! Model versions: what each successful training job made, its automatic
//! evaluation and, from there, its review.

use super::AppError;
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// Where a model version stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionState {
    /// Its evaluation job is queued or running.
    Evaluating,
    /// Its evaluation failed or was cancelled.
    EvaluationFailed,
    /// Evaluated; no reviewer has decided yet.
    AwaitingReview,
    Approved,
    Rejected,
}

impl VersionState {
    pub fn as_str(self) -> &'static str {
        match self {
            VersionState::Evaluating => "evaluating",
            VersionState::EvaluationFailed => "evaluation_failed",
            VersionState::AwaitingReview => "awaiting_review",
            VersionState::Approved => "approved",
            VersionState::Rejected => "rejected",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            VersionState::Evaluating => "Evaluating",
            VersionState::EvaluationFailed => "Evaluation failed",
            VersionState::AwaitingReview => "Awaiting review",
            VersionState::Approved => "Approved",
            VersionState::Rejected => "Rejected",
        }
    }
}

/// One model version of a project.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRow {
    /// 1, 2, … within the project.
    pub number: u32,
    /// The training job that made it.
    pub train_job: i64,
    /// The job that evaluates it.
    pub eval_job: Option<i64>,
    pub state: VersionState,
    /// The evaluation's progress: test examples scored, of how many.
    pub progress: Option<(u64, u64)>,
}

/// A reviewer's decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approved,
    Rejected,
}

/// One decision on a version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReviewRow {
    pub reviewer: String,
    pub decision: Decision,
    pub comment: String,
    /// Unix seconds.
    pub at: i64,
}

/// The hashes a decision on the version is bound to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bound {
    pub dataset_sha256: String,
    pub settings_sha256: String,
    pub artifact_sha256: String,
    /// Once evaluated.
    pub report_sha256: Option<String>,
}

/// A blind A/B choice, in the shown order's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Choice {
    A,
    B,
    Tie,
    BothBad,
}

/// The tuned model's share of wins (a tie counts a half) over the rated
/// examples where one was better or both were equal; "both bad" is
/// counted apart.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WinRate {
    pub rated: u32,
    pub wins: u32,
    pub losses: u32,
    pub ties: u32,
    pub both_bad: u32,
    /// `None` until one example was rated other than "both bad".
    pub rate: Option<hone_protocol::evaluation::Interval>,
}

/// How often reviewers who rated the same examples agreed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    /// Example–reviewer-pair comparisons.
    pub pairs: u32,
    /// Share of them with the same verdict (tuned better, base better,
    /// tie, both bad).
    pub agreed: f64,
    /// Cohen's κ over those pairs (agreement beyond chance); `None` when
    /// chance agreement is 1.
    pub kappa: Option<f64>,
}

/// The blind ratings of a version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ratings {
    pub overall: WinRate,
    pub per_reviewer: Vec<(String, WinRate)>,
    /// `None` until two reviewers rated one example.
    pub agreement: Option<Agreement>,
    /// Examples the signed-in reviewer has rated.
    pub mine: u32,
}

/// `/projects/{id}/versions/{number}`: the evaluation report, the
/// training curves, the ratings and the decisions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VersionPage {
    pub user: super::CurrentUser,
    pub project_id: i64,
    pub project_name: String,
    pub version_id: i64,
    pub version: VersionRow,
    pub train_job: super::JobSummary,
    /// `(step, loss)` of the training run.
    pub train_loss: Vec<(f64, f64)>,
    pub valid_loss: Vec<(f64, f64)>,
    pub bound: Bound,
    pub report: Option<hone_protocol::evaluation::Report>,
    /// Oldest first; the last one decides.
    pub reviews: Vec<ReviewRow>,
    pub ratings: Ratings,
    /// The server's policy lets this user rate and decide here.
    pub can_review: bool,
    /// Why not, when a reviewer cannot (e.g. they launched the job).
    pub cannot_review: Option<String>,
    /// Publishing: once approved, the export and its downloads.
    pub publishing: Publishing,
    /// The person may delete this version (it is not approved).
    pub can_delete: bool,
}

/// An approved version's way out of Hone.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Publishing {
    /// The model card (Markdown with YAML metadata) as it is shipped in
    /// every download; `None` until the version is approved and exported.
    pub card: Option<String>,
    pub downloads: Vec<DownloadRow>,
    /// The export job, once queued: its id and state.
    pub export_job: Option<(i64, super::JobState)>,
    /// Why there is no GGUF (an architecture or tokenizer llama.cpp does
    /// not know), when so.
    pub gguf_refused: Option<String>,
}

/// One archive to download.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadRow {
    /// `adapter`, `merged`, `gguf-f16`, `gguf-q8_0`.
    pub format: String,
    pub file_name: String,
    pub size: u64,
    pub sha256: String,
    /// `GET` this.
    pub href: String,
}

impl DownloadRow {
    /// What the archive holds, for people.
    pub fn label(&self) -> &'static str {
        match self.format.as_str() {
            "adapter" => "PEFT adapter",
            "merged" => "Merged model (Hugging Face folder)",
            "gguf-f16" => "GGUF f16 (llama.cpp, Ollama)",
            "gguf-q8_0" => "GGUF q8_0, 8-bit (llama.cpp, Ollama)",
            _ => "Archive",
        }
    }
}

/// One blind pair to rate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RatingItem {
    /// The example's line in the test split.
    pub line: u32,
    /// Its place among the version's examples (1-based), of `total`.
    pub index: u32,
    pub prompt: String,
    pub reference: String,
    pub a: String,
    pub b: String,
    /// This reviewer's earlier choice, when re-rating.
    pub choice: Option<Choice>,
    pub comment: Option<String>,
}

/// `/projects/{id}/versions/{number}/rate`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RatingPage {
    pub user: super::CurrentUser,
    pub project_id: i64,
    pub project_name: String,
    pub version_id: i64,
    pub number: u32,
    /// The pair asked for, else the first this reviewer has not rated;
    /// `None` when every example is rated.
    pub item: Option<RatingItem>,
    pub rated: u32,
    pub total: u32,
}

/// A version that awaits a reviewer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AwaitingReview {
    pub project_id: i64,
    pub project: String,
    pub team: String,
    pub number: u32,
    pub base_model: String,
    pub launched_by: String,
    /// Unix seconds since it has awaited review (its evaluation's end).
    pub since: i64,
}

/// One in-app notification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub id: i64,
    pub kind: String,
    pub message: String,
    pub link: String,
    /// Unix seconds.
    pub at: i64,
    pub read: bool,
}

/// `/notifications`, and the badge's count.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notifications {
    pub unread: u32,
    /// Newest first, at most 100.
    pub items: Vec<Notification>,
}

#[cfg(feature = "ssr")]
pub use backend::ReviewsBackend;

#[cfg(feature = "ssr")]
mod backend {
    use super::*;
    use crate::api::RequestParts;

    #[async_trait::async_trait]
    pub trait ReviewsBackend: Send + Sync + 'static {
        async fn version_page(
            &self,
            req: &RequestParts,
            project_id: i64,
            number: u32,
        ) -> Result<VersionPage, AppError>;
        async fn rating_page(
            &self,
            req: &RequestParts,
            version_id: i64,
            line: u32,
        ) -> Result<RatingPage, AppError>;
        async fn rate(
            &self,
            req: &RequestParts,
            version_id: i64,
            line: u32,
            choice: String,
            comment: String,
        ) -> Result<(), AppError>;
        async fn decide(
            &self,
            req: &RequestParts,
            version_id: i64,
            decision: String,
            comment: String,
        ) -> Result<(), AppError>;
        async fn delete_version(
            &self,
            req: &RequestParts,
            version_id: i64,
        ) -> Result<u32, AppError>;
        async fn awaiting_review(
            &self,
            req: &RequestParts,
        ) -> Result<Vec<AwaitingReview>, AppError>;
        async fn notifications(&self, req: &RequestParts) -> Result<Notifications, AppError>;
        async fn unread_notifications(&self, req: &RequestParts) -> Result<u32, AppError>;
        async fn mark_read(&self, req: &RequestParts, id: i64) -> Result<(), AppError>;
    }
}

#[server(prefix = "/api", endpoint = "version")]
pub async fn load_version(project_id: i64, number: u32) -> Result<VersionPage, AppError> {
    use std::sync::Arc;
    super::ssr::call(|b: Arc<dyn ReviewsBackend>, r| async move {
        b.version_page(&r, project_id, number).await
    })
    .await
}

/// The pair on test line `line`; 0: the next one this reviewer has not
/// rated.
#[server(prefix = "/api", endpoint = "rating")]
pub async fn load_rating(version_id: i64, line: u32) -> Result<RatingPage, AppError> {
    use std::sync::Arc;
    super::ssr::call(|b: Arc<dyn ReviewsBackend>, r| async move {
        b.rating_page(&r, version_id, line).await
    })
    .await
}

/// `choice`: `a`, `b`, `tie` or `both_bad`, in the order shown.
#[server(prefix = "/api", endpoint = "rate")]
pub async fn rate(
    version_id: i64,
    line: u32,
    choice: String,
    comment: String,
) -> Result<(), AppError> {
    use std::sync::Arc;
    super::ssr::call(|b: Arc<dyn ReviewsBackend>, r| async move {
        b.rate(&r, version_id, line, choice, comment).await
    })
    .await
}

/// `decision`: `approved` or `rejected`.
#[server(prefix = "/api", endpoint = "decide")]
pub async fn decide(version_id: i64, decision: String, comment: String) -> Result<(), AppError> {
    use std::sync::Arc;
    super::ssr::call(|b: Arc<dyn ReviewsBackend>, r| async move {
        b.decide(&r, version_id, decision, comment).await
    })
    .await
}

/// Deletes a model version with its jobs, downloads and ratings; how many
/// stored files were freed. Refused while it is approved or one of its
/// jobs has not ended.
#[server(prefix = "/api", endpoint = "delete_version")]
pub async fn delete_version(version_id: i64) -> Result<u32, AppError> {
    use std::sync::Arc;
    super::ssr::call(|b: Arc<dyn ReviewsBackend>, r| async move {
        b.delete_version(&r, version_id).await
    })
    .await
}

#[server(prefix = "/api", endpoint = "awaiting_review")]
pub async fn load_awaiting_review() -> Result<Vec<AwaitingReview>, AppError> {
    use std::sync::Arc;
    super::ssr::call(|b: Arc<dyn ReviewsBackend>, r| async move { b.awaiting_review(&r).await })
        .await
}

#[server(prefix = "/api", endpoint = "notifications")]
pub async fn load_notifications() -> Result<Notifications, AppError> {
    use std::sync::Arc;
    super::ssr::call(|b: Arc<dyn ReviewsBackend>, r| async move { b.notifications(&r).await }).await
}

/// How many of the signed-in person's notifications are unread: the
/// header's badge (which needs nothing else).
#[server(prefix = "/api", endpoint = "unread_notifications")]
pub async fn load_unread_notifications() -> Result<u32, AppError> {
    use std::sync::Arc;
    super::ssr::call(
        |b: Arc<dyn ReviewsBackend>, r| async move { b.unread_notifications(&r).await },
    )
    .await
}

/// Marks notification `id` read; 0: all of them.
#[server(prefix = "/api", endpoint = "mark_read")]
pub async fn mark_read(id: i64) -> Result<(), AppError> {
    use std::sync::Arc;
    super::ssr::call(|b: Arc<dyn ReviewsBackend>, r| async move { b.mark_read(&r, id).await }).await
}
