//! Review: a model version's page (its evaluation report, training curves,
//! ratings and decisions), blind A/B rating of its test answers, the
//! approval gate, reviewers' work list and in-app notifications
//! ([`ReviewsBackend`]).
//!
//! A decision is bound to exactly what was reviewed: the version's data,
//! settings and trained-file hashes and the evaluation report's SHA-256
//! are copied into the decision's row. Reviewers and admins of the
//! project's team decide; nobody decides on (or rates) a version of a job
//! they launched. Only a version whose latest decision is an approval is
//! approved ([`Services::approved`]): the gate publishing and serving use.

use crate::accounts::current;
use crate::audit::{self, Target};
use crate::entity::audit::AuditAction;
use crate::entity::job::{self, StoredState};
use crate::entity::rating::{self, Choice as StoredChoice};
use crate::entity::review::{self, Decision as StoredDecision};
use crate::entity::{
    job_artifact, job_event, membership, model_version, notification, project, team, user,
};
use crate::error::{Error, Result};
use crate::jobs::worker::REPORT_PATH;
use crate::policy::{self, Action};
use crate::state::{now, Services};
use hone_app::api::{
    Agreement, AppError, AwaitingReview, Bound, Choice, Decision, JobEventBody, Notification,
    Notifications, RatingItem, RatingPage, Ratings, RequestParts, ReviewRow, ReviewsBackend,
    VersionPage, WinRate,
};
use hone_protocol::bootstrap::{self, mix, Series, Task};
use hone_protocol::evaluation::Report;
use hone_protocol::Event;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, TransactionTrait,
};
use std::collections::{BTreeMap, HashMap};

/// The longest comment a rating or a decision takes.
pub const MAX_COMMENT: usize = 4000;

/// Whether reviewer `reviewer` is shown the tuned model's answer as A on
/// test line `line` of version `version`: fixed per reviewer and example,
/// the same on every visit, half of the examples each way.
pub fn tuned_first(version: i64, reviewer: i64, line: u32) -> bool {
    mix(mix(mix(version as u64) ^ reviewer as u64) ^ u64::from(line)) & 1 == 1
}

/// A rating in the tuned model's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    TunedBetter,
    BaseBetter,
    Tie,
    BothBad,
}

pub fn verdict(choice: StoredChoice, tuned_first: bool) -> Verdict {
    match (choice, tuned_first) {
        (StoredChoice::A, true) | (StoredChoice::B, false) => Verdict::TunedBetter,
        (StoredChoice::A, false) | (StoredChoice::B, true) => Verdict::BaseBetter,
        (StoredChoice::Tie, _) => Verdict::Tie,
        (StoredChoice::BothBad, _) => Verdict::BothBad,
    }
}

/// The tuned model's win rate over `verdicts` (a tie counts a half; "both
/// bad" apart), with a seeded bootstrap 95 % interval.
pub fn win_rate(verdicts: &[Verdict], seed: u64) -> WinRate {
    let count = |v: Verdict| verdicts.iter().filter(|x| **x == v).count() as u32;
    let score = Series::mean(verdicts.iter().map(|v| match v {
        Verdict::TunedBetter => Some(1.0),
        Verdict::BaseBetter => Some(0.0),
        Verdict::Tie => Some(0.5),
        Verdict::BothBad => None,
    }));
    let rate = bootstrap::intervals(
        verdicts.len(),
        &[Task {
            tuned: &score,
            base: None,
            transform: bootstrap::identity,
        }],
        1000,
        seed,
    )[0]
    .map(|i| i.tuned);
    WinRate {
        rated: verdicts.len() as u32,
        wins: count(Verdict::TunedBetter),
        losses: count(Verdict::BaseBetter),
        ties: count(Verdict::Tie),
        both_bad: count(Verdict::BothBad),
        rate,
    }
}

/// Agreement between reviewers on the examples several rated: the share
/// of reviewer pairs with the same verdict, and Cohen's κ with chance
/// taken from all those verdicts pooled.
pub fn agreement(by_example: &BTreeMap<u32, Vec<Verdict>>) -> Option<Agreement> {
    let (mut pairs, mut agreed) = (0u32, 0u32);
    let mut pooled: HashMap<Verdict, u32> = HashMap::new();
    for vs in by_example.values().filter(|vs| vs.len() >= 2) {
        for (i, a) in vs.iter().enumerate() {
            for b in &vs[i + 1..] {
                pairs += 1;
                agreed += u32::from(a == b);
                *pooled.entry(*a).or_default() += 1;
                *pooled.entry(*b).or_default() += 1;
            }
        }
    }
    if pairs == 0 {
        return None;
    }
    let total = f64::from(2 * pairs);
    let chance: f64 = pooled
        .values()
        .map(|n| (f64::from(*n) / total).powi(2))
        .sum();
    let observed = f64::from(agreed) / f64::from(pairs);
    Some(Agreement {
        pairs,
        agreed: observed,
        kappa: (chance < 1.0).then(|| (observed - chance) / (1.0 - chance)),
    })
}

fn comment_of(field: &str, text: &str) -> Result<String> {
    let text = text.trim();
    if text.chars().count() > MAX_COMMENT {
        return Err(AppError::invalid(
            field,
            format!("The comment is longer than {MAX_COMMENT} characters."),
        )
        .into());
    }
    Ok(text.to_owned())
}

impl Services {
    /// Version `id` with its project, if `u` may do `action` there.
    pub(crate) async fn version_with(
        &self,
        u: &user::Model,
        id: i64,
        action: Action,
    ) -> Result<(model_version::Model, project::Model)> {
        let what = "that model version";
        let v = model_version::Entity::find_by_id(id)
            .filter(model_version::Column::DeletedAt.is_null())
            .one(&self.db)
            .await?
            .ok_or_else(|| AppError::NotFound(what.into()))?;
        let p = self.project_with(u, v.project_id, action, what).await?;
        Ok((v, p))
    }

    /// The version's evaluation report as stored, and its SHA-256, once its
    /// evaluation succeeded.
    pub(crate) async fn report_of(
        &self,
        v: &model_version::Model,
    ) -> Result<Option<(Vec<u8>, String)>> {
        let Some(eval) = v.eval_job_id else {
            return Ok(None);
        };
        let done = job::Entity::find_by_id(eval)
            .filter(job::Column::State.eq(StoredState::Succeeded))
            .one(&self.db)
            .await?
            .is_some();
        if !done {
            return Ok(None);
        }
        let Some(a) = job_artifact::Entity::find()
            .filter(job_artifact::Column::JobId.eq(eval))
            .filter(job_artifact::Column::Path.eq(REPORT_PATH))
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        let bytes = self.blobs.read(&a.storage_key).await?;
        Ok(Some((bytes.to_vec(), a.sha256)))
    }

    async fn parsed_report(&self, v: &model_version::Model) -> Result<Option<(Report, String)>> {
        match self.report_of(v).await? {
            Some((bytes, sha)) => Ok(Some((serde_json::from_slice(&bytes)?, sha))),
            None => Ok(None),
        }
    }

    async fn launcher_of(&self, v: &model_version::Model) -> Result<job::Model> {
        job::Entity::find_by_id(v.train_job_id)
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::internal("a version's training job is gone"))
    }

    /// Whether `u` may rate and decide on `v` (`None`), or why not.
    async fn review_refusal(
        &self,
        u: &user::Model,
        v: &model_version::Model,
    ) -> Result<Option<String>> {
        if !policy::may(u.role.into(), Action::Review) {
            return Ok(Some("Reviewers and admins review model versions.".into()));
        }
        let trained = self.launcher_of(v).await?;
        if policy::may_decide_on(u.id, trained.created_by).is_err() {
            return Ok(Some(
                "You launched this version's training job: another reviewer decides on it.".into(),
            ));
        }
        Ok(None)
    }

    /// Version `id` for rating or deciding by `u`: a reviewer or admin of
    /// its team who did not launch it.
    async fn reviewable(
        &self,
        u: &user::Model,
        id: i64,
    ) -> Result<(model_version::Model, project::Model)> {
        let (v, p) = self.version_with(u, id, Action::Review).await?;
        let trained = self.launcher_of(&v).await?;
        policy::may_decide_on(u.id, trained.created_by)?;
        Ok((v, p))
    }

    /// The latest decision on each of `versions`.
    async fn decisions_of(&self, versions: &[i64]) -> Result<HashMap<i64, review::Model>> {
        let mut out = HashMap::new();
        for r in review::Entity::find()
            .filter(review::Column::VersionId.is_in(versions.iter().copied()))
            .order_by_asc(review::Column::Id)
            .all(&self.db)
            .await?
        {
            out.insert(r.version_id, r);
        }
        Ok(out)
    }

    /// The version is approved now: its latest decision is an approval
    /// bound to the hashes it still has. What publishing and serving ask.
    pub async fn approved(&self, v: &model_version::Model) -> Result<bool> {
        let latest = self.decisions_of(&[v.id]).await?.remove(&v.id);
        let Some(r) = latest else { return Ok(false) };
        let report = self.report_of(v).await?.map(|(_, sha)| sha);
        Ok(r.decision == StoredDecision::Approved
            && report.is_some_and(|sha| crate::evaluations::bound_to(&r, v, &sha)))
    }

    pub(crate) async fn ratings_of(&self, v: &model_version::Model, me: i64) -> Result<Ratings> {
        let rows = rating::Entity::find()
            .filter(rating::Column::VersionId.eq(v.id))
            .order_by_asc(rating::Column::Id)
            .all(&self.db)
            .await?;
        let names = self.usernames(rows.iter().map(|r| r.reviewer_id)).await?;
        let mut by_reviewer: BTreeMap<String, Vec<Verdict>> = BTreeMap::new();
        let mut by_example: BTreeMap<u32, Vec<Verdict>> = BTreeMap::new();
        let mut all = Vec::new();
        for r in &rows {
            let v = verdict(r.choice, r.tuned_first);
            all.push(v);
            by_reviewer
                .entry(names.get(&r.reviewer_id).cloned().unwrap_or_default())
                .or_default()
                .push(v);
            by_example.entry(r.line as u32).or_default().push(v);
        }
        let seed = v.id as u64;
        Ok(Ratings {
            overall: win_rate(&all, seed),
            per_reviewer: by_reviewer
                .into_iter()
                .map(|(name, vs)| {
                    let w = win_rate(&vs, seed);
                    (name, w)
                })
                .collect(),
            agreement: agreement(&by_example),
            mine: rows.iter().filter(|r| r.reviewer_id == me).count() as u32,
        })
    }

    async fn version_page_for(
        &self,
        req: &RequestParts,
        project_id: i64,
        number: u32,
    ) -> Result<VersionPage> {
        let u = self.require_user(req).await?;
        let p = self.project_for(&u, project_id).await?;
        let v = model_version::Entity::find()
            .filter(model_version::Column::ProjectId.eq(p.id))
            .filter(model_version::Column::Number.eq(number as i32))
            .filter(model_version::Column::DeletedAt.is_null())
            .one(&self.db)
            .await?
            .ok_or_else(|| AppError::NotFound("that model version".into()))?;
        let row = self
            .versions_of(p.id)
            .await?
            .into_iter()
            .find(|r| r.number == number)
            .ok_or_else(|| Error::internal("a version vanished while its page was read"))?;
        let can_delete = policy::may(u.role.into(), Action::Train)
            && row.state != hone_app::api::VersionState::Approved;
        let trained = self.launcher_of(&v).await?;
        let train_job = self
            .summaries_of(vec![trained])
            .await?
            .pop()
            .ok_or_else(|| Error::internal("a job vanished while its page was read"))?;
        let (mut train_loss, mut valid_loss) = (Vec::new(), Vec::new());
        for r in job_event::Entity::find()
            .filter(job_event::Column::JobId.eq(v.train_job_id))
            .order_by_asc(job_event::Column::Id)
            .all(&self.db)
            .await?
        {
            let Ok(r) = crate::jobs::events::decode(r) else {
                continue;
            };
            if let JobEventBody::Engine { event } = r.event.body {
                match event {
                    Event::Step { step, loss, .. } => train_loss.push((step as f64, loss)),
                    Event::Eval { step, loss, .. } => valid_loss.push((step as f64, loss)),
                    _ => {}
                }
            }
        }
        let report = self.parsed_report(&v).await?;
        let reviews = review::Entity::find()
            .filter(review::Column::VersionId.eq(v.id))
            .order_by_asc(review::Column::Id)
            .all(&self.db)
            .await?;
        let names = self
            .usernames(reviews.iter().map(|r| r.reviewer_id))
            .await?;
        let cannot_review = self.review_refusal(&u, &v).await?;
        Ok(VersionPage {
            user: current(&u),
            project_id: p.id,
            project_name: p.name,
            version_id: v.id,
            version: row,
            train_job,
            train_loss,
            valid_loss,
            bound: Bound {
                dataset_sha256: v.dataset_sha256.clone(),
                settings_sha256: v.settings_sha256.clone(),
                artifact_sha256: v.artifact_sha256.clone(),
                report_sha256: report.as_ref().map(|(_, sha)| sha.clone()),
            },
            report: report.map(|(r, _)| r),
            reviews: reviews
                .into_iter()
                .map(|r| ReviewRow {
                    reviewer: names.get(&r.reviewer_id).cloned().unwrap_or_default(),
                    decision: match r.decision {
                        StoredDecision::Approved => Decision::Approved,
                        StoredDecision::Rejected => Decision::Rejected,
                    },
                    comment: r.comment,
                    at: r.created_at,
                })
                .collect(),
            ratings: self.ratings_of(&v, u.id).await?,
            can_review: cannot_review.is_none(),
            cannot_review,
            publishing: self.publishing_of(&v).await?,
            can_delete,
        })
    }

    async fn rating_page_for(&self, req: &RequestParts, id: i64, line: u32) -> Result<RatingPage> {
        let u = self.require_user(req).await?;
        let (v, p) = self.reviewable(&u, id).await?;
        let (report, _) = self
            .parsed_report(&v)
            .await?
            .ok_or_else(|| AppError::Conflict("This version has not been evaluated yet.".into()))?;
        let mine: HashMap<u32, rating::Model> = rating::Entity::find()
            .filter(rating::Column::VersionId.eq(v.id))
            .filter(rating::Column::ReviewerId.eq(u.id))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|r| (r.line as u32, r))
            .collect();
        let rateable: Vec<_> = report.items.iter().filter(|i| i.base.is_some()).collect();
        let pick = if line == 0 {
            rateable
                .iter()
                .position(|i| !mine.contains_key(&(i.line as u32)))
        } else {
            Some(
                rateable
                    .iter()
                    .position(|i| i.line as u32 == line)
                    .ok_or_else(|| {
                        AppError::invalid(
                            "line",
                            format!("There is no test example on line {line}."),
                        )
                    })?,
            )
        };
        let item = pick.map(|index| {
            let it = rateable[index];
            let l = it.line as u32;
            let tuned = it.tuned.text.clone();
            let base = it.base.as_ref().map(|b| b.text.clone()).unwrap_or_default();
            let (a, b) = if tuned_first(v.id, u.id, l) {
                (tuned, base)
            } else {
                (base, tuned)
            };
            let earlier = mine.get(&l);
            RatingItem {
                line: l,
                index: index as u32 + 1,
                prompt: it.prompt.clone(),
                reference: it.reference.clone(),
                a,
                b,
                choice: earlier.map(|r| match r.choice {
                    StoredChoice::A => Choice::A,
                    StoredChoice::B => Choice::B,
                    StoredChoice::Tie => Choice::Tie,
                    StoredChoice::BothBad => Choice::BothBad,
                }),
                comment: earlier.and_then(|r| r.comment.clone()),
            }
        });
        Ok(RatingPage {
            user: current(&u),
            project_id: p.id,
            project_name: p.name,
            version_id: v.id,
            number: v.number as u32,
            item,
            rated: mine.len() as u32,
            total: rateable.len() as u32,
        })
    }

    async fn rate_as(
        &self,
        req: &RequestParts,
        id: i64,
        line: u32,
        choice: &str,
        comment: &str,
    ) -> Result<()> {
        let u = self.require_user(req).await?;
        let (v, p) = self.reviewable(&u, id).await?;
        let choice = match choice {
            "a" => StoredChoice::A,
            "b" => StoredChoice::B,
            "tie" => StoredChoice::Tie,
            "both_bad" => StoredChoice::BothBad,
            other => {
                return Err(AppError::invalid(
                    "choice",
                    format!("{other:?} is not a choice: a, b, tie or both_bad."),
                )
                .into())
            }
        };
        let comment = comment_of("comment", comment)?;
        let (report, _) = self
            .parsed_report(&v)
            .await?
            .ok_or_else(|| AppError::Conflict("This version has not been evaluated yet.".into()))?;
        if !report
            .items
            .iter()
            .any(|i| i.line as u32 == line && i.base.is_some())
        {
            return Err(AppError::invalid(
                "line",
                format!("There is no test example on line {line} to rate."),
            )
            .into());
        }
        let shown = tuned_first(v.id, u.id, line);
        let t = now();
        let team = team::Entity::find_by_id(p.team_id).one(&self.db).await?;
        let txn = self.db.begin().await?;
        let backend = txn.get_database_backend();
        // One row per reviewer and example: a second rating replaces the
        // first (the unique index makes concurrent ones one row).
        let sql = "INSERT INTO ratings (version_id, reviewer_id, line, tuned_first, choice, comment, created_at, updated_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
                   ON CONFLICT (version_id, reviewer_id, line) DO UPDATE SET \
                   choice = excluded.choice, comment = excluded.comment, updated_at = excluded.updated_at";
        txn.execute_raw(crate::jobs::queue::statement_for(
            backend,
            sql,
            vec![
                v.id.into(),
                u.id.into(),
                i32::try_from(line).unwrap_or(i32::MAX).into(),
                shown.into(),
                sea_orm::ActiveEnum::to_value(&choice).into(),
                Some(comment.clone()).filter(|c| !c.is_empty()).into(),
                t.into(),
            ],
        ))
        .await?;
        let said = match verdict(choice, shown) {
            Verdict::TunedBetter => "tuned better",
            Verdict::BaseBetter => "base better",
            Verdict::Tie => "tie",
            Verdict::BothBad => "both bad",
        };
        audit::record(
            &txn,
            Some(&u),
            AuditAction::VersionRated,
            Target {
                kind: "model_version",
                id: Some(v.id),
                label: &format!("{} version {}", p.name, v.number),
            },
            serde_json::json!({
                "team": team.map(|t| t.name),
                "line": line,
                "verdict": said,
                "comment": comment,
            }),
        )
        .await?;
        txn.commit().await?;
        Ok(())
    }

    async fn decide_as(
        &self,
        req: &RequestParts,
        id: i64,
        decision: &str,
        comment: &str,
    ) -> Result<()> {
        let u = self.require_user(req).await?;
        let (v, p) = self.reviewable(&u, id).await?;
        let decision = match decision {
            "approved" => StoredDecision::Approved,
            "rejected" => StoredDecision::Rejected,
            other => {
                return Err(AppError::invalid(
                    "decision",
                    format!("{other:?} is not a decision: approved or rejected."),
                )
                .into())
            }
        };
        let comment = comment_of("comment", comment)?;
        if decision == StoredDecision::Rejected && comment.is_empty() {
            return Err(AppError::invalid(
                "comment",
                "Say why it is rejected: the person who trained it reads this.",
            )
            .into());
        }
        let (_, report_sha) = self
            .report_of(&v)
            .await?
            .ok_or_else(|| AppError::Conflict("This version has not been evaluated yet: it can be decided on once its evaluation report is there.".into()))?;
        let trained = self.launcher_of(&v).await?;
        let team = team::Entity::find_by_id(p.team_id).one(&self.db).await?;
        let txn = self.db.begin().await?;
        // Take the version's row first: concurrent decisions on it queue
        // here (a row lock on PostgreSQL, the write lock on SQLite), so the
        // check below sees the one before.
        model_version::Entity::update_many()
            .col_expr(
                model_version::Column::Id,
                Expr::col(model_version::Column::Id),
            )
            .filter(model_version::Column::Id.eq(v.id))
            .exec(&txn)
            .await?;
        let latest = review::Entity::find()
            .filter(review::Column::VersionId.eq(v.id))
            .order_by_desc(review::Column::Id)
            .one(&txn)
            .await?;
        let mine = review::Entity::find()
            .filter(review::Column::VersionId.eq(v.id))
            .filter(review::Column::ReviewerId.eq(u.id))
            .order_by_desc(review::Column::Id)
            .one(&txn)
            .await?;
        let bound_now = |r: &review::Model| crate::evaluations::bound_to(r, &v, &report_sha);
        // The same decision again, on the same evidence: recorded once.
        if latest
            .as_ref()
            .is_some_and(|l| l.reviewer_id == u.id && l.decision == decision && bound_now(l))
        {
            return Ok(());
        }
        if let Some(m) = &mine {
            if m.decision == StoredDecision::Rejected
                && decision == StoredDecision::Approved
                && (comment.is_empty() || comment == m.comment)
            {
                return Err(AppError::invalid(
                    "comment",
                    "You rejected this version: say what changed your mind in a new comment to approve it.",
                )
                .into());
            }
        }
        let t = now();
        review::ActiveModel {
            version_id: Set(v.id),
            reviewer_id: Set(u.id),
            decision: Set(decision),
            comment: Set(comment.clone()),
            dataset_sha256: Set(v.dataset_sha256.clone()),
            settings_sha256: Set(v.settings_sha256.clone()),
            artifact_sha256: Set(v.artifact_sha256.clone()),
            report_sha256: Set(report_sha.clone()),
            created_at: Set(t),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
        let (action, word) = match decision {
            StoredDecision::Approved => (AuditAction::VersionApproved, "approved"),
            StoredDecision::Rejected => (AuditAction::VersionRejected, "rejected"),
        };
        let label = format!("{} version {}", p.name, v.number);
        audit::record(
            &txn,
            Some(&u),
            action,
            Target {
                kind: "model_version",
                id: Some(v.id),
                label: &label,
            },
            serde_json::json!({
                "team": team.map(|t| t.name),
                "comment": comment,
                "dataset_sha256": v.dataset_sha256,
                "settings_sha256": v.settings_sha256,
                "artifact_sha256": v.artifact_sha256,
                "report_sha256": report_sha,
            }),
        )
        .await?;
        let said = if comment.is_empty() {
            String::new()
        } else {
            format!(": “{comment}”")
        };
        notify(
            &txn,
            trained.created_by,
            word,
            &format!(
                "{} {word} version {} of {}{said}",
                u.username, v.number, p.name
            ),
            &format!("/projects/{}/versions/{}", p.id, v.number),
        )
        .await?;
        txn.commit().await?;
        tracing::info!(version = v.id, reviewer = %u.username, decision = word, "model version decided");
        Ok(())
    }

    async fn awaiting_for(&self, req: &RequestParts) -> Result<Vec<AwaitingReview>> {
        let u = self.require_user(req).await?;
        if !policy::may(u.role.into(), Action::Review) {
            return Ok(Vec::new());
        }
        let teams: Vec<i64> = membership::Entity::find()
            .filter(membership::Column::UserId.eq(u.id))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|m| m.team_id)
            .collect();
        let projects: HashMap<i64, project::Model> = project::Entity::find()
            .filter(project::Column::TeamId.is_in(teams.clone()))
            .filter(project::Column::DeletedAt.is_null())
            .all(&self.db)
            .await?
            .into_iter()
            .map(|p| (p.id, p))
            .collect();
        let team_names: HashMap<i64, String> = team::Entity::find()
            .filter(team::Column::Id.is_in(teams))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|t| (t.id, t.name))
            .collect();
        let versions = model_version::Entity::find()
            .filter(model_version::Column::ProjectId.is_in(projects.keys().copied()))
            .filter(model_version::Column::DeletedAt.is_null())
            .all(&self.db)
            .await?;
        let decided = self
            .decisions_of(&versions.iter().map(|v| v.id).collect::<Vec<_>>())
            .await?;
        let evals: HashMap<i64, job::Model> = job::Entity::find()
            .filter(job::Column::Id.is_in(versions.iter().filter_map(|v| v.eval_job_id)))
            .filter(job::Column::State.eq(StoredState::Succeeded))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|j| (j.id, j))
            .collect();
        let trained: HashMap<i64, job::Model> = job::Entity::find()
            .filter(job::Column::Id.is_in(versions.iter().map(|v| v.train_job_id)))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|j| (j.id, j))
            .collect();
        let names = self
            .usernames(trained.values().map(|j| j.created_by))
            .await?;
        let mut out: Vec<AwaitingReview> = versions
            .iter()
            .filter(|v| !decided.contains_key(&v.id))
            .filter_map(|v| {
                let e = evals.get(&v.eval_job_id?)?;
                let t = trained.get(&v.train_job_id)?;
                let p = projects.get(&v.project_id)?;
                (t.created_by != u.id).then(|| AwaitingReview {
                    project_id: p.id,
                    project: p.name.clone(),
                    team: team_names.get(&p.team_id).cloned().unwrap_or_default(),
                    number: v.number as u32,
                    base_model: t.base_model.clone(),
                    launched_by: names.get(&t.created_by).cloned().unwrap_or_default(),
                    since: e.finished_at.unwrap_or(e.updated_at),
                })
            })
            .collect();
        out.sort_by_key(|a| a.since);
        Ok(out)
    }

    async fn notifications_for(&self, req: &RequestParts) -> Result<Notifications> {
        let u = self.require_user(req).await?;
        let items = notification::Entity::find()
            .filter(notification::Column::UserId.eq(u.id))
            .order_by_desc(notification::Column::Id)
            .limit(100)
            .all(&self.db)
            .await?;
        Ok(Notifications {
            unread: self.unread_of(&u).await?,
            items: items
                .into_iter()
                .map(|n| Notification {
                    id: n.id,
                    kind: n.kind,
                    message: n.message,
                    link: n.link,
                    at: n.created_at,
                    read: n.read_at.is_some(),
                })
                .collect(),
        })
    }

    async fn unread_of(&self, u: &user::Model) -> Result<u32> {
        let unread = notification::Entity::find()
            .filter(notification::Column::UserId.eq(u.id))
            .filter(notification::Column::ReadAt.is_null())
            .count(&self.db)
            .await?;
        Ok(u32::try_from(unread).unwrap_or(u32::MAX))
    }

    async fn mark_read_as(&self, req: &RequestParts, id: i64) -> Result<()> {
        let u = self.require_user(req).await?;
        let mut q = notification::Entity::update_many()
            .col_expr(notification::Column::ReadAt, Expr::value(now()))
            .filter(notification::Column::UserId.eq(u.id))
            .filter(notification::Column::ReadAt.is_null());
        if id != 0 {
            let mine = notification::Entity::find_by_id(id)
                .filter(notification::Column::UserId.eq(u.id))
                .one(&self.db)
                .await?
                .is_some();
            if !mine {
                return Err(AppError::NotFound("that notification".into()).into());
            }
            q = q.filter(notification::Column::Id.eq(id));
        }
        q.exec(&self.db).await?;
        Ok(())
    }

    /// Tells the people a finished job concerns: its launcher that it
    /// succeeded or failed; for an evaluation, its launcher and the
    /// reviewers of its team (who did not launch it) that the version
    /// awaits review. Best effort: a failure is logged, the job's end
    /// stands.
    pub async fn notify_job_end(&self, job_id: i64) {
        if let Err(e) = self.notify_job_end_inner(job_id).await {
            tracing::warn!(job = job_id, error = %e, "notifying a job's end failed");
        }
    }

    async fn notify_job_end_inner(&self, job_id: i64) -> Result<()> {
        let Some(j) = job::Entity::find_by_id(job_id).one(&self.db).await? else {
            return Ok(());
        };
        let Some(p) = project::Entity::find_by_id(j.project_id)
            .one(&self.db)
            .await?
        else {
            return Ok(());
        };
        let job_link = format!("/projects/{}/jobs/{}", p.id, j.id);
        match (j.kind, j.state) {
            (job::JobKind::Train, StoredState::Succeeded) => {
                let msg = format!(
                    "Your training job {} in {} finished: its model is being evaluated.",
                    j.id, p.name
                );
                notify(&self.db, j.created_by, "job_succeeded", &msg, &job_link).await
            }
            (job::JobKind::Train, StoredState::Failed) => {
                let msg = format!("Your training job {} in {} failed.", j.id, p.name);
                notify(&self.db, j.created_by, "job_failed", &msg, &job_link).await
            }
            (job::JobKind::Evaluate, StoredState::Failed) => {
                let msg = format!(
                    "The evaluation of job {} in {} failed.",
                    j.source_job_id.unwrap_or(0),
                    p.name
                );
                notify(&self.db, j.created_by, "job_failed", &msg, &job_link).await
            }
            (job::JobKind::Evaluate, StoredState::Succeeded) => {
                let Some(v) = model_version::Entity::find()
                    .filter(model_version::Column::EvalJobId.eq(j.id))
                    .one(&self.db)
                    .await?
                else {
                    return Ok(());
                };
                let link = format!("/projects/{}/versions/{}", p.id, v.number);
                let msg = format!(
                    "Version {} of {} is evaluated and awaits a reviewer.",
                    v.number, p.name
                );
                notify(&self.db, j.created_by, "evaluated", &msg, &link).await?;
                let members: Vec<i64> = membership::Entity::find()
                    .filter(membership::Column::TeamId.eq(p.team_id))
                    .all(&self.db)
                    .await?
                    .into_iter()
                    .map(|m| m.user_id)
                    .collect();
                for r in user::Entity::find()
                    .filter(user::Column::Id.is_in(members))
                    .filter(user::Column::DisabledAt.is_null())
                    .all(&self.db)
                    .await?
                {
                    if r.id != j.created_by && policy::may(r.role.into(), Action::Review) {
                        let msg = format!("Version {} of {} awaits your review.", v.number, p.name);
                        notify(&self.db, r.id, "review_requested", &msg, &link).await?;
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// Adds one notification for `user`.
async fn notify(
    db: &impl ConnectionTrait,
    user: i64,
    kind: &str,
    message: &str,
    link: &str,
) -> Result<()> {
    notification::ActiveModel {
        user_id: Set(user),
        kind: Set(kind.to_owned()),
        message: Set(message.to_owned()),
        link: Set(link.to_owned()),
        created_at: Set(now()),
        read_at: Set(None),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(())
}

/// `GET /api/versions/{id}/report.json`: the evaluation report as the
/// engine wrote it (its SHA-256 is the one decisions are bound to), for
/// anyone who may read the project.
pub async fn report_json(
    axum::extract::State(s): axum::extract::State<std::sync::Arc<Services>>,
    crate::accounts::SignedIn(u): crate::accounts::SignedIn,
    axum::extract::Path(id): axum::extract::Path<i64>,
) -> Result<axum::response::Response> {
    use axum::http::header;
    use axum::response::IntoResponse;
    let (v, p) = s.version_with(&u, id, Action::Read).await?;
    let (bytes, sha) = s
        .report_of(&v)
        .await?
        .ok_or_else(|| AppError::NotFound("that version's evaluation report".into()))?;
    let safe: String = p
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"{safe}-v{}-evaluation.json\"",
                    v.number
                ),
            ),
            (header::ETAG, format!("\"{sha}\"")),
        ],
        bytes,
    )
        .into_response())
}

#[async_trait::async_trait]
impl ReviewsBackend for Services {
    async fn version_page(
        &self,
        req: &RequestParts,
        project_id: i64,
        number: u32,
    ) -> std::result::Result<VersionPage, AppError> {
        Ok(self.version_page_for(req, project_id, number).await?)
    }

    async fn rating_page(
        &self,
        req: &RequestParts,
        version_id: i64,
        line: u32,
    ) -> std::result::Result<RatingPage, AppError> {
        Ok(self.rating_page_for(req, version_id, line).await?)
    }

    async fn rate(
        &self,
        req: &RequestParts,
        version_id: i64,
        line: u32,
        choice: String,
        comment: String,
    ) -> std::result::Result<(), AppError> {
        Ok(self
            .rate_as(req, version_id, line, &choice, &comment)
            .await?)
    }

    async fn decide(
        &self,
        req: &RequestParts,
        version_id: i64,
        decision: String,
        comment: String,
    ) -> std::result::Result<(), AppError> {
        Ok(self.decide_as(req, version_id, &decision, &comment).await?)
    }

    async fn delete_version(
        &self,
        req: &RequestParts,
        version_id: i64,
    ) -> std::result::Result<u32, AppError> {
        let u = self.require_user(req).await?;
        Ok(Services::delete_version(self, &u, version_id)
            .await?
            .blobs_freed
            .len() as u32)
    }

    async fn awaiting_review(
        &self,
        req: &RequestParts,
    ) -> std::result::Result<Vec<AwaitingReview>, AppError> {
        Ok(self.awaiting_for(req).await?)
    }

    async fn notifications(
        &self,
        req: &RequestParts,
    ) -> std::result::Result<Notifications, AppError> {
        Ok(self.notifications_for(req).await?)
    }

    async fn unread_notifications(&self, req: &RequestParts) -> std::result::Result<u32, AppError> {
        let u = self.require_user(req).await?;
        Ok(self.unread_of(&u).await?)
    }

    async fn mark_read(&self, req: &RequestParts, id: i64) -> std::result::Result<(), AppError> {
        Ok(self.mark_read_as(req, id).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blind_order_is_fixed_per_reviewer_and_example_and_balanced() {
        let firsts: Vec<bool> = (1..=400).map(|l| tuned_first(7, 3, l)).collect();
        assert_eq!(
            firsts,
            (1..=400).map(|l| tuned_first(7, 3, l)).collect::<Vec<_>>()
        );
        let n = firsts.iter().filter(|f| **f).count();
        assert!((150..=250).contains(&n), "{n} of 400 tuned-first");
        // Another reviewer sees another order.
        assert_ne!(
            firsts,
            (1..=400).map(|l| tuned_first(7, 4, l)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn choices_read_in_the_shown_order() {
        assert_eq!(verdict(StoredChoice::A, true), Verdict::TunedBetter);
        assert_eq!(verdict(StoredChoice::A, false), Verdict::BaseBetter);
        assert_eq!(verdict(StoredChoice::B, false), Verdict::TunedBetter);
        assert_eq!(verdict(StoredChoice::Tie, false), Verdict::Tie);
    }

    #[test]
    fn the_win_rate_counts_ties_as_halves_and_leaves_both_bad_out() {
        use Verdict::*;
        let w = win_rate(&[TunedBetter, TunedBetter, BaseBetter, Tie, BothBad], 1);
        assert_eq!(
            (w.rated, w.wins, w.losses, w.ties, w.both_bad),
            (5, 2, 1, 1, 1)
        );
        let r = w.rate.unwrap();
        assert!((r.value - 2.5 / 4.0).abs() < 1e-12);
        assert!(r.low <= r.value && r.value <= r.high && r.low >= 0.0 && r.high <= 1.0);
        assert_eq!(
            win_rate(&[TunedBetter, BaseBetter], 9),
            win_rate(&[TunedBetter, BaseBetter], 9)
        );
        assert!(win_rate(&[BothBad], 1).rate.is_none());
    }

    #[test]
    fn agreement_is_the_share_of_agreeing_pairs_and_kappa_corrects_for_chance() {
        use Verdict::*;
        let mut m = BTreeMap::new();
        m.insert(1, vec![TunedBetter, TunedBetter]);
        m.insert(2, vec![BaseBetter, TunedBetter]);
        m.insert(3, vec![Tie]);
        let a = agreement(&m).unwrap();
        assert_eq!(a.pairs, 2);
        assert!((a.agreed - 0.5).abs() < 1e-12);
        // Pooled: 3 tuned, 1 base of 4: chance 0.625; κ = (0.5 − 0.625) / 0.375.
        assert!((a.kappa.unwrap() - (0.5 - 0.625) / 0.375).abs() < 1e-12);
        m.clear();
        m.insert(1, vec![Tie, Tie]);
        let a = agreement(&m).unwrap();
        assert_eq!((a.agreed, a.kappa), (1.0, None));
        assert!(agreement(&BTreeMap::new()).is_none());
    }
}
