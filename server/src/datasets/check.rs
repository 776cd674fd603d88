//! The dataset-check task: saved versions re-checked and split off the
//! request, at most `dataset_checks` at once.
//!
//! A save records its version in state `checking` with no checker
//! (`check_started_at` NULL: *waiting*) and wakes this task. The task takes
//! the oldest waiting version whenever a permit of [`Services::dataset_checks`]
//! is free, claiming it with a conditional `UPDATE` (so two servers never
//! check one version twice), and runs the same checks and split as the
//! browser did. The version ends `ready` — its split files written, its
//! counts and statistics recorded — or `refused`, with the findings that
//! stop it; a refused version's source file is hidden and its blob left
//! to the retention sweep. A stop mid-check leaves the version taken but
//! not finished: the task puts such versions back to waiting when it
//! starts. (A file whose check crashes the process would be taken again
//! at every start; the checker's caps on what one file can make it keep
//! are what stop that.)

use super::create::{check_blob, checked_columns, measure_for, parse, write_splits};
use super::create::{NewDataset, Recorded};
use crate::entity::dataset_version::{self, DatasetState};
use crate::entity::file;
use crate::error::{Error, Result};
use crate::state::{now, Services};
use crate::supervisor::Shutdown;
use hone_app::api::Refusal;
use hone_dataset::Report;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinSet;

/// "1 error", "3 errors".
fn plural(n: u64, thing: &str) -> String {
    if n == 1 {
        format!("1 {thing}")
    } else {
        format!("{n} {thing}s")
    }
}

/// Findings kept with a refused version (errors first).
const KEPT_FINDINGS: usize = 200;

/// How often the task looks for waiting versions without being woken (a
/// save on another server, or a dispatch that failed on the database).
const LOOK_EVERY: Duration = Duration::from_secs(30);

/// A version taken for checking, with the permit it holds.
#[derive(Debug)]
pub struct ClaimedCheck {
    pub id: i64,
    _permit: OwnedSemaphorePermit,
}

impl Services {
    /// Runs the dataset checks until `shutdown`. Supervised; at start it
    /// puts the versions a stop interrupted back to waiting.
    pub async fn check_datasets(self: Arc<Self>, mut shutdown: Shutdown) {
        match self.requeue_interrupted_checks().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(count = n, "dataset checks a stop interrupted wait again"),
            Err(e) => tracing::error!(error = %e, "requeueing interrupted dataset checks failed"),
        }
        let mut running = JoinSet::new();
        loop {
            // Registered before looking, so a save meanwhile is not missed.
            let woken = self.datasets_wake.notified();
            if let Err(e) = self.dispatch_dataset_checks(&mut running).await {
                tracing::error!(error = %e, "starting dataset checks failed");
            }
            tokio::select! {
                () = woken => {}
                // A check ended: its permit is free for the next one.
                Some(_) = running.join_next(), if !running.is_empty() => {}
                () = tokio::time::sleep(LOOK_EVERY) => {}
                () = shutdown.wait() => {
                    running.abort_all();
                    while running.join_next().await.is_some() {}
                    return;
                }
            }
        }
    }

    /// Versions taken by a checker that never finished (the server stopped
    /// mid-check) wait again; answers how many.
    pub async fn requeue_interrupted_checks(&self) -> Result<u64> {
        Ok(dataset_version::Entity::update_many()
            .col_expr(
                dataset_version::Column::CheckStartedAt,
                Expr::value(Option::<i64>::None),
            )
            .filter(dataset_version::Column::State.eq(DatasetState::Checking))
            .filter(dataset_version::Column::CheckStartedAt.is_not_null())
            .exec(&self.db)
            .await?
            .rows_affected)
    }

    /// Takes the waiting versions, oldest first, while a permit is free:
    /// each is this checker's (its `check_started_at` set) and holds its
    /// permit until [`Services::run_claimed`] ends.
    pub async fn claim_waiting_checks(&self) -> Result<Vec<ClaimedCheck>> {
        let mut claimed = Vec::new();
        loop {
            let Ok(permit) = self.dataset_checks.clone().try_acquire_owned() else {
                return Ok(claimed);
            };
            let Some(id) = self.waiting_checks().await?.first().copied() else {
                return Ok(claimed);
            };
            // False when another server took it first: look again.
            if self.claim_check(id).await? {
                claimed.push(ClaimedCheck {
                    id,
                    _permit: permit,
                });
            }
        }
    }

    /// Runs a claimed check to its end, then frees its permit.
    pub async fn run_claimed(&self, check: ClaimedCheck) {
        self.run_check(check.id).await;
    }

    /// Starts a check for each version [`Services::claim_waiting_checks`]
    /// takes; answers how many were started.
    pub async fn dispatch_dataset_checks(
        self: &Arc<Self>,
        running: &mut JoinSet<()>,
    ) -> Result<usize> {
        let claimed = self.claim_waiting_checks().await?;
        let started = claimed.len();
        for check in claimed {
            let s = self.clone();
            running.spawn(async move { s.run_claimed(check).await });
        }
        Ok(started)
    }

    /// Runs every waiting check to its end (under the same limit) and
    /// answers how many ran: for tests and tools that need the outcome.
    pub async fn check_pending_datasets(self: &Arc<Self>) -> Result<usize> {
        let mut running = JoinSet::new();
        let mut ran = 0;
        loop {
            ran += self.dispatch_dataset_checks(&mut running).await?;
            match running.join_next().await {
                Some(done) => done?,
                None => return Ok(ran),
            }
        }
    }

    /// The waiting versions' ids, oldest first.
    pub async fn waiting_checks(&self) -> Result<Vec<i64>> {
        Ok(dataset_version::Entity::find()
            .select_only()
            .column(dataset_version::Column::Id)
            .filter(dataset_version::Column::State.eq(DatasetState::Checking))
            .filter(dataset_version::Column::CheckStartedAt.is_null())
            .order_by_asc(dataset_version::Column::Id)
            .into_tuple()
            .all(&self.db)
            .await?)
    }

    /// How many saves wait ahead of version `id`, if it waits.
    pub async fn checks_ahead(&self, id: i64) -> Result<Option<u64>> {
        let waiting = self.waiting_checks().await?;
        Ok(waiting.iter().position(|w| *w == id).map(|n| n as u64))
    }

    /// Takes a waiting version for this checker; false when another took it.
    async fn claim_check(&self, id: i64) -> Result<bool> {
        let taken = dataset_version::Entity::update_many()
            .col_expr(dataset_version::Column::CheckStartedAt, Expr::value(now()))
            .filter(dataset_version::Column::Id.eq(id))
            .filter(dataset_version::Column::State.eq(DatasetState::Checking))
            .filter(dataset_version::Column::CheckStartedAt.is_null())
            .exec(&self.db)
            .await?;
        Ok(taken.rows_affected == 1)
    }

    /// One check, its failures included: a version the server cannot
    /// check is refused with a plain sentence (the details go to the log),
    /// never retried in a loop.
    #[tracing::instrument(skip(self))]
    async fn run_check(&self, id: i64) {
        let outcome = match self.check_version(id).await {
            Ok(state) => Ok(state),
            Err(e) => {
                tracing::error!(error = %e, "a saved dataset could not be checked");
                self.refuse_version(
                    id,
                    Refusal {
                        code: "check_failed".into(),
                        message: "The server could not check this dataset (the problem is in its log). Save it again; tell your administrator if it happens again.".into(),
                        findings: Vec::new(),
                    },
                )
                .await
            }
        };
        match outcome {
            Ok(state) => tracing::info!(?state, "saved dataset checked"),
            Err(e) => tracing::error!(error = %e, "recording a dataset check failed"),
        }
    }

    /// The checks and split of one saved version, as the browser ran them.
    async fn check_version(&self, id: i64) -> Result<DatasetState> {
        let row = dataset_version::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::internal(format!("dataset version {id} is gone")))?;
        let source = file::Entity::find_by_id(row.source_file_id)
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::internal(format!("dataset version {id} has no source file")))?;
        let request: NewDataset = serde_json::from_str(
            row.request
                .as_deref()
                .ok_or_else(|| Error::internal(format!("dataset version {id} has no request")))?,
        )?;
        let mut settings = parse(request)?;
        let (tokenizer, context_length) = match measure_for(self, &settings.model).await {
            Ok(found) => found,
            // Removed or broken since the save.
            Err(e) => {
                return self
                    .refuse_version(
                        id,
                        Refusal {
                            code: "model_unusable".into(),
                            message: e.to_string(),
                            findings: Vec::new(),
                        },
                    )
                    .await
            }
        };
        settings.options.max_tokens = context_length;
        let report = check_blob(
            self,
            &source.storage_key,
            &settings.options,
            tokenizer.clone(),
        )
        .await?;
        let mut findings = report.findings.clone();
        findings.sort_by_key(|f| !f.is_error());
        findings.truncate(KEPT_FINDINGS);
        let refused = |code: &str, message: String| Refusal {
            code: code.into(),
            message,
            findings: findings.clone(),
        };
        if report.examples == 0 {
            let r = refused("no_examples", "The file has no usable examples.".into());
            return self.refuse_version(id, r).await;
        }
        if report.has_errors() && !settings.drop_rejected {
            let r = refused("dataset_errors", format!("The server found {} in {}. Fix them, or save again choosing to leave those examples out.", plural(report.errors, "error"), plural(report.rejected, "example")));
            return self.refuse_version(id, r).await;
        }
        let plan = report.plan(settings.seed, settings.ratios);
        let counts = Report::split_counts(&plan);
        if counts != settings.expect {
            tracing::warn!(?counts, expect = ?settings.expect, "browser and server disagree on a split");
            let [a, b, c] = settings.expect;
            let [x, y, z] = counts;
            let r = Refusal {
                code: "split_mismatch".into(),
                message: format!("Your browser counted {a}/{b}/{c} examples for train/validation/test, the server {x}/{y}/{z}. Reload the page and save again."),
                findings: Vec::new(),
            };
            return self.refuse_version(id, r).await;
        }
        let splits = write_splits(
            self,
            &source.storage_key,
            &settings.options,
            tokenizer,
            plan,
        )
        .await?;
        let recorded = Recorded {
            name: settings.name,
            seed: settings.seed,
            ratios: settings.ratios,
            drop_rejected: settings.drop_rejected,
            model: settings.model,
        };
        let done = dataset_version::Entity::update_many()
            .set(checked_columns(&report, &recorded, counts, splits))
            .filter(dataset_version::Column::Id.eq(id))
            .filter(dataset_version::Column::State.eq(DatasetState::Checking))
            .exec(&self.db)
            .await?;
        if done.rows_affected == 0 {
            // Its split blobs are unreferenced: the sweep removes them.
            tracing::warn!("the version was no longer being checked when its check ended");
        }
        Ok(DatasetState::Ready)
    }

    /// Records why a version is refused, and hides its source file (its
    /// blob is left to the retention sweep: another row may share it).
    async fn refuse_version(&self, id: i64, why: Refusal) -> Result<DatasetState> {
        let tx = self.db.begin().await?;
        let refused = dataset_version::Entity::update_many()
            .col_expr(
                dataset_version::Column::State,
                Expr::value(DatasetState::Refused),
            )
            .col_expr(
                dataset_version::Column::Refusal,
                Expr::value(serde_json::to_string(&why)?),
            )
            .filter(dataset_version::Column::Id.eq(id))
            .filter(dataset_version::Column::State.eq(DatasetState::Checking))
            .exec(&tx)
            .await?;
        if refused.rows_affected == 1 {
            let source: Option<i64> = dataset_version::Entity::find_by_id(id)
                .select_only()
                .column(dataset_version::Column::SourceFileId)
                .into_tuple()
                .one(&tx)
                .await?;
            file::Entity::update_many()
                .col_expr(file::Column::DeletedAt, Expr::value(now()))
                .filter(file::Column::Id.is_in(source))
                .filter(file::Column::DeletedAt.is_null())
                .exec(&tx)
                .await?;
        }
        tx.commit().await?;
        tracing::info!(code = %why.code, "saved dataset refused");
        Ok(DatasetState::Refused)
    }
}
