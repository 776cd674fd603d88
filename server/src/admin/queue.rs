//! The admin's queue, quotas, device weights, usage report and audit
//! page: [`QueueBackend`], and the CSV downloads. Admins only
//! ([`Action::Administer`]); every change is audited in its transaction
//! and applies at the scheduler's next round.

use crate::accounts::SignedIn;
use crate::audit::{self, Target};
use crate::entity::audit::{self as audit_row, AuditAction};
use crate::entity::job::{self, StopRequest, StoredState};
use crate::entity::{device_weight, job_usage, project, team, user, worker};
use crate::error::{Error, Result};
use crate::jobs::scheduler::{month_bounds, usage_of, weighted_hours};
use crate::jobs::{queue, state_event, worker_stale_ms};
use crate::policy::{self, Action};
use crate::state::{now, Services};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use hone_app::api::{
    AppError, AuditEntry, AuditPage, DeviceWeight, JobState, QueueBackend, QueuePage, QueueRow,
    RequestParts, TeamQuota, TeamUsage, UsageReport, WorkerRow,
};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    TransactionTrait,
};
use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// The most devices a team may be guaranteed, jobs one person may run,
/// and hours a month: far above any real fleet, below nonsense.
const MAX_DEVICES: i64 = 10_000;
const MAX_MONTH_HOURS: f64 = 10_000_000.0;
const MAX_WEIGHT: f64 = 1_000.0;
const MAX_PRIORITY: i64 = 1_000;

/// A whole number in `lo..=hi` for `field`, or a form error naming it.
fn whole(field: &str, text: &str, lo: i64, hi: i64) -> Result<i64> {
    let n: i64 = text.trim().parse().map_err(|_| {
        AppError::invalid(
            field,
            format!("{text:?} is not a whole number (allowed: {lo} to {hi})."),
        )
    })?;
    if !(lo..=hi).contains(&n) {
        return Err(AppError::invalid(field, format!("{n} is outside {lo} to {hi}.")).into());
    }
    Ok(n)
}

/// A number in `(lo, hi]` (or `[lo, hi]` when `zero_ok`) for `field`.
fn decimal(field: &str, text: &str, lo: f64, hi: f64, zero_ok: bool) -> Result<f64> {
    let x: f64 = text
        .trim()
        .parse()
        .ok()
        .filter(|x: &f64| x.is_finite())
        .ok_or_else(|| {
            AppError::invalid(
                field,
                format!("{text:?} is not a number (allowed: {lo} to {hi})."),
            )
        })?;
    let low_ok = if zero_ok { x >= lo } else { x > lo };
    if !low_ok || x > hi {
        let range = if zero_ok {
            format!("from {lo} to {hi}")
        } else {
            format!("above {lo}, up to {hi}")
        };
        return Err(AppError::invalid(field, format!("{x} is not {range}.")).into());
    }
    Ok(x)
}

/// `YYYY-MM-DD` as a date, or a form error naming `field`.
fn day(field: &str, text: &str) -> Result<time::Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text.trim(), &format).map_err(|_| {
        AppError::invalid(field, format!("{text:?} is not a date like 2026-12-01.")).into()
    })
}

fn day_text(d: time::Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// Quotes a CSV field when it needs it, and defuses spreadsheet formulas.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

impl Services {
    /// The job `id` (any team) for an admin; 404 if there is none.
    async fn job_for_admin(
        &self,
        req: &RequestParts,
        id: i64,
    ) -> Result<(user::Model, job::Model)> {
        let u = self.require_admin(req).await?;
        let j = job::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or_else(|| AppError::NotFound("that job".into()))?;
        Ok((u, j))
    }

    async fn team_of_project(&self, project_id: i64) -> Result<team::Model> {
        let p = project::Entity::find_by_id(project_id)
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::internal("a job's project is gone"))?;
        team::Entity::find_by_id(p.team_id)
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::internal("a project's team is gone"))
    }

    async fn queue_page_for(&self, req: &RequestParts) -> Result<QueuePage> {
        let me = self.require_admin(req).await?;
        let db = &self.db;
        let now_ms = queue::db_now_ms(db).await?;
        let mut active = job::Entity::find()
            .filter(job::Column::State.is_in([
                StoredState::ValidatingFiles,
                StoredState::Queued,
                StoredState::Running,
                StoredState::Cancelling,
                StoredState::Paused,
            ]))
            .all(db)
            .await?;
        let rank = |j: &job::Model| match j.state {
            StoredState::Running | StoredState::Cancelling => 0,
            StoredState::Queued => 1,
            StoredState::Paused => 2,
            _ => 3,
        };
        active.sort_by_key(|j| (rank(j), j.queue_position.unwrap_or(i32::MAX), j.id));
        let recent = job::Entity::find()
            .filter(job::Column::State.is_in([
                StoredState::Succeeded,
                StoredState::Failed,
                StoredState::Cancelled,
            ]))
            .filter(job::Column::DeletedAt.is_null())
            .order_by_desc(job::Column::Id)
            .limit(50)
            .all(db)
            .await?;
        let jobs: Vec<job::Model> = active.into_iter().chain(recent).collect();

        let teams = team::Entity::find()
            .order_by_asc(team::Column::Name)
            .all(db)
            .await?;
        let team_names: HashMap<i64, String> =
            teams.iter().map(|t| (t.id, t.name.clone())).collect();
        let project_team = crate::jobs::scheduler::project_teams(db).await?;
        let (month, _) = month_bounds(now_ms);
        let usage_rows = job_usage::Entity::find()
            .filter(
                sea_orm::Condition::any()
                    .add(job_usage::Column::EndedMs.gte(month))
                    .add(job_usage::Column::JobId.is_in(jobs.iter().map(|j| j.id))),
            )
            .all(db)
            .await?;
        let mut job_hours: HashMap<i64, f64> = HashMap::new();
        for r in &usage_rows {
            *job_hours.entry(r.job_id).or_default() +=
                weighted_hours(std::slice::from_ref(r), i64::MIN, i64::MAX);
        }
        let month_rows: Vec<job_usage::Model> = usage_rows
            .iter()
            .filter(|r| r.ended_ms >= month)
            .cloned()
            .collect();
        let used = usage_of(&month_rows, now_ms);

        let mut counts: HashMap<i64, (u32, u32)> = HashMap::new();
        for j in &jobs {
            let t = project_team.get(&j.project_id).copied().unwrap_or(0);
            let c = counts.entry(t).or_default();
            match j.state {
                StoredState::Running | StoredState::Cancelling => c.0 += 1,
                StoredState::Queued | StoredState::Paused => c.1 += 1,
                _ => {}
            }
        }
        let quotas = teams
            .iter()
            .map(|t| {
                let (running, waiting) = counts.get(&t.id).copied().unwrap_or_default();
                TeamQuota {
                    team_id: t.id,
                    team: t.name.clone(),
                    guaranteed_devices: t.guaranteed_devices.max(0) as u32,
                    month_hours: t.month_hours,
                    per_person: t.per_person.map(|p| p.max(0) as u32),
                    used_month_hours: used.get(&t.id).map_or(0.0, |u| u.month_hours),
                    running,
                    waiting,
                }
            })
            .collect();

        let worker_rows = worker::Entity::find()
            .order_by_asc(worker::Column::Id)
            .all(db)
            .await?;
        let mut workers = Vec::with_capacity(worker_rows.len());
        let mut names: HashMap<String, u32> = HashMap::new();
        for w in worker_rows {
            let device: hone_protocol::Device = serde_json::from_str(&w.device)?;
            let lost = w.heartbeat_ms < now_ms - worker_stale_ms(&self.config);
            if !lost {
                *names.entry(device.name.clone()).or_default() += 1;
            }
            let running = jobs
                .iter()
                .find(|j| {
                    matches!(j.state, StoredState::Running | StoredState::Cancelling)
                        && j.worker_id.as_deref() == Some(w.id.as_str())
                })
                .map(|j| (j.project_id, j.id));
            workers.push(WorkerRow {
                id: w.id,
                host: w.host,
                device,
                status: w.status,
                lost,
                heartbeat_age_ms: (now_ms - w.heartbeat_ms).max(0),
                live: w.live.as_deref().and_then(|l| serde_json::from_str(l).ok()),
                running,
            });
        }
        let stored = device_weight::Entity::find().all(db).await?;
        let mut weight_names: BTreeSet<String> = names.keys().cloned().collect();
        weight_names.extend(stored.iter().map(|w| w.name.clone()));
        let weights = weight_names
            .into_iter()
            .map(|name| DeviceWeight {
                weight: stored
                    .iter()
                    .find(|w| w.name == name)
                    .map_or(1.0, |w| w.weight),
                devices: names.get(&name).copied().unwrap_or(0),
                name,
            })
            .collect();

        let summaries = self.summaries_of(jobs.clone()).await?;
        let rows = jobs
            .iter()
            .zip(summaries)
            .map(|(j, summary)| {
                let device = j
                    .device
                    .as_deref()
                    .and_then(|d| serde_json::from_str::<hone_protocol::Device>(d).ok())
                    .filter(|_| matches!(j.state, StoredState::Running | StoredState::Cancelling))
                    .map(|d| d.name);
                QueueRow {
                    team: project_team
                        .get(&j.project_id)
                        .and_then(|t| team_names.get(t))
                        .cloned()
                        .unwrap_or_default(),
                    device,
                    preemptible: j.preemptible,
                    hours: job_hours.get(&j.id).copied().unwrap_or(0.0),
                    job: summary,
                }
            })
            .collect();
        Ok(QueuePage {
            user: crate::accounts::current(&me),
            jobs: rows,
            teams: quotas,
            weights,
            workers,
        })
    }

    async fn set_quota_for(
        &self,
        req: &RequestParts,
        team_id: i64,
        guaranteed: String,
        month_hours: String,
        per_person: String,
    ) -> Result<()> {
        let me = self.require_admin(req).await?;
        let guaranteed = whole("guaranteed_devices", &guaranteed, 0, MAX_DEVICES)? as i32;
        let month_hours = match month_hours.trim() {
            "" => None,
            t => Some(decimal("month_hours", t, 0.0, MAX_MONTH_HOURS, true)?),
        };
        let per_person = match per_person.trim() {
            "" => None,
            t => Some(whole("per_person", t, 1, MAX_DEVICES)? as i32),
        };
        let tx = self.db.begin().await?;
        let t = team::Entity::find_by_id(team_id)
            .one(&tx)
            .await?
            .ok_or_else(|| AppError::NotFound("that team".into()))?;
        let before = json!({
            "guaranteed_devices": t.guaranteed_devices,
            "month_hours": t.month_hours,
            "per_person": t.per_person,
        });
        let mut m: team::ActiveModel = t.clone().into();
        m.guaranteed_devices = Set(guaranteed);
        m.month_hours = Set(month_hours);
        m.per_person = Set(per_person);
        m.update(&tx).await?;
        audit::record(
            &tx,
            Some(&me),
            AuditAction::QuotaChanged,
            Target {
                kind: "team",
                id: Some(t.id),
                label: &t.name,
            },
            json!({
                "team": t.name,
                "before": before,
                "after": {
                    "guaranteed_devices": guaranteed,
                    "month_hours": month_hours,
                    "per_person": per_person,
                },
            }),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(admin = %me.username, team = %t.name, guaranteed, ?month_hours, ?per_person, "quota changed");
        self.queue_wake.notify_one();
        Ok(())
    }

    async fn set_weight_for(&self, req: &RequestParts, name: String, weight: String) -> Result<()> {
        let me = self.require_admin(req).await?;
        let name = name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(AppError::invalid(
                "name",
                "Name the device as its workers report it (1 to 200 characters).",
            )
            .into());
        }
        let weight = decimal("weight", &weight, 0.0, MAX_WEIGHT, false)?;
        let tx = self.db.begin().await?;
        let before = device_weight::Entity::find_by_id(name.clone())
            .one(&tx)
            .await?
            .map_or(1.0, |w| w.weight);
        device_weight::Entity::insert(device_weight::ActiveModel {
            name: Set(name.clone()),
            weight: Set(weight),
            updated_at: Set(now()),
        })
        .on_conflict(
            sea_orm::sea_query::OnConflict::column(device_weight::Column::Name)
                .update_columns([
                    device_weight::Column::Weight,
                    device_weight::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec(&tx)
        .await?;
        audit::record(
            &tx,
            Some(&me),
            AuditAction::DeviceWeightChanged,
            Target {
                kind: "device",
                id: None,
                label: &name,
            },
            json!({ "before": before, "after": weight }),
        )
        .await?;
        tx.commit().await?;
        self.queue_wake.notify_one();
        Ok(())
    }

    /// Audits an admin's action on job `j`, with its team (looked up by the
    /// caller before its transaction: SQLite has one connection to write).
    async fn audit_job(
        &self,
        tx: &impl sea_orm::ConnectionTrait,
        me: &user::Model,
        action: AuditAction,
        j: &job::Model,
        team: &str,
        mut detail: serde_json::Value,
    ) -> Result<()> {
        detail["team"] = json!(team);
        audit::record(
            tx,
            Some(me),
            action,
            Target {
                kind: "job",
                id: Some(j.id),
                label: &format!("ftjob-{}", j.id),
            },
            detail,
        )
        .await
    }

    async fn set_priority_for(&self, req: &RequestParts, id: i64, priority: String) -> Result<()> {
        let (me, j) = self.job_for_admin(req, id).await?;
        let priority = whole("priority", &priority, -MAX_PRIORITY, MAX_PRIORITY)? as i32;
        let state: JobState = j.state.into();
        if state.is_final() {
            return Err(AppError::Conflict(format!(
                "The job has already {}: its priority no longer matters.",
                state.label().to_lowercase()
            ))
            .into());
        }
        let team = self.team_of_project(j.project_id).await?.name;
        let tx = self.db.begin().await?;
        job::Entity::update_many()
            .col_expr(job::Column::Priority, Expr::value(priority))
            .filter(job::Column::Id.eq(j.id))
            .exec(&tx)
            .await?;
        self.audit_job(
            &tx,
            &me,
            AuditAction::PriorityChanged,
            &j,
            &team,
            json!({ "before": j.priority, "after": priority }),
        )
        .await?;
        tx.commit().await?;
        self.queue_wake.notify_one();
        Ok(())
    }

    /// Pauses job `id` for admin `me`: a waiting job at once; a running one
    /// is asked to checkpoint and stop (its worker then marks it paused).
    pub(crate) async fn pause_as(&self, me: &user::Model, j: job::Model) -> Result<()> {
        let state: JobState = j.state.into();
        let team = self.team_of_project(j.project_id).await?.name;
        let tx = self.db.begin().await?;
        let changed = match state {
            JobState::Queued => {
                job::Entity::update_many()
                    .col_expr(job::Column::State, Expr::value(StoredState::Paused))
                    .col_expr(
                        job::Column::AssignedWorker,
                        Expr::value(Option::<String>::None),
                    )
                    .col_expr(job::Column::UpdatedAt, Expr::value(now()))
                    .filter(job::Column::Id.eq(j.id))
                    .filter(job::Column::State.eq(StoredState::Queued))
                    .exec(&tx)
                    .await?
                    .rows_affected
            }
            JobState::Running => {
                job::Entity::update_many()
                    .col_expr(job::Column::StopRequest, Expr::value(StopRequest::Pause))
                    .filter(job::Column::Id.eq(j.id))
                    .filter(job::Column::State.eq(StoredState::Running))
                    .exec(&tx)
                    .await?
                    .rows_affected
            }
            JobState::Paused => {
                return Err(AppError::Conflict("The job is already paused.".into()).into())
            }
            _ => 0,
        };
        if changed == 0 {
            return Err(AppError::Conflict(format!(
                "A job that is {} cannot be paused.",
                state.label().to_lowercase()
            ))
            .into());
        }
        self.audit_job(
            &tx,
            me,
            AuditAction::JobPaused,
            &j,
            &team,
            json!({ "from": state.as_str() }),
        )
        .await?;
        tx.commit().await?;
        if state == JobState::Queued {
            let note = format!("Paused by {}.", me.username);
            queue::append(
                &self.db,
                j.id,
                None,
                &state_event(JobState::Paused, Some(note)),
            )
            .await?;
        }
        self.hub.wake();
        self.queue_wake.notify_one();
        Ok(())
    }

    /// Resumes a paused job: back to the queue in its old place (its
    /// `queued_at` is kept); a pause not yet carried out is withdrawn.
    pub(crate) async fn resume_as(&self, me: &user::Model, j: job::Model) -> Result<()> {
        let state: JobState = j.state.into();
        let team = self.team_of_project(j.project_id).await?.name;
        let tx = self.db.begin().await?;
        let changed = match state {
            JobState::Paused => {
                job::Entity::update_many()
                    .col_expr(job::Column::State, Expr::value(StoredState::Queued))
                    .col_expr(job::Column::UpdatedAt, Expr::value(now()))
                    .filter(job::Column::Id.eq(j.id))
                    .filter(job::Column::State.eq(StoredState::Paused))
                    .exec(&tx)
                    .await?
                    .rows_affected
            }
            JobState::Running if j.stop_request == Some(StopRequest::Pause) => {
                job::Entity::update_many()
                    .col_expr(
                        job::Column::StopRequest,
                        Expr::value(Option::<StopRequest>::None),
                    )
                    .filter(job::Column::Id.eq(j.id))
                    .filter(job::Column::StopRequest.eq(StopRequest::Pause))
                    .exec(&tx)
                    .await?
                    .rows_affected
            }
            _ => 0,
        };
        if changed == 0 {
            return Err(AppError::Conflict(format!(
                "Only a paused job can be resumed; this one is {}.",
                state.label().to_lowercase()
            ))
            .into());
        }
        self.audit_job(&tx, me, AuditAction::JobResumed, &j, &team, json!({}))
            .await?;
        tx.commit().await?;
        if state == JobState::Paused {
            let note = format!(
                "Resumed by {}: back in its place in the queue.",
                me.username
            );
            queue::append(
                &self.db,
                j.id,
                None,
                &state_event(JobState::Queued, Some(note)),
            )
            .await?;
        }
        self.hub.wake();
        self.queue_wake.notify_one();
        Ok(())
    }

    async fn usage_for(&self, req: &RequestParts, from: String, to: String) -> Result<UsageReport> {
        let me = self.require_admin(req).await?;
        let (days, teams) = self.usage_table(&from, &to).await?;
        Ok(UsageReport {
            user: crate::accounts::current(&me),
            from: days.first().cloned().unwrap_or_default(),
            to: days.last().cloned().unwrap_or_default(),
            days,
            teams,
        })
    }

    /// Weighted device-hours per team and UTC day from `from` to `to`
    /// (inclusive; empty: this month up to today).
    async fn usage_table(&self, from: &str, to: &str) -> Result<(Vec<String>, Vec<TeamUsage>)> {
        let now_ms = queue::db_now_ms(&self.db).await?;
        let today = time::OffsetDateTime::from_unix_timestamp(now_ms / 1000)
            .map_err(|e| Error::internal(e.to_string()))?
            .date();
        let from = match from.trim() {
            "" => today
                .replace_day(1)
                .map_err(|e| Error::internal(e.to_string()))?,
            t => day("from", t)?,
        };
        let to = match to.trim() {
            "" => today,
            t => day("to", t)?,
        };
        if to < from {
            return Err(AppError::invalid("to", "The period ends before it starts.").into());
        }
        let span = (to - from).whole_days() + 1;
        if span > 366 {
            return Err(AppError::invalid(
                "to",
                format!("The period is {span} days; at most 366 can be shown."),
            )
            .into());
        }
        let start_ms = from.midnight().assume_utc().unix_timestamp() * 1000;
        let end_ms = start_ms + span * 86_400_000;
        let rows = job_usage::Entity::find()
            .filter(job_usage::Column::EndedMs.gte(start_ms))
            .filter(job_usage::Column::StartedMs.lt(end_ms))
            .all(&self.db)
            .await?;
        let teams = team::Entity::find()
            .order_by_asc(team::Column::Name)
            .all(&self.db)
            .await?;
        let days: Vec<String> = (0..span)
            .map(|i| day_text(from + time::Duration::days(i)))
            .collect();
        let out = teams
            .into_iter()
            .map(|t| {
                let mine: Vec<job_usage::Model> =
                    rows.iter().filter(|r| r.team_id == t.id).cloned().collect();
                TeamUsage {
                    hours: (0..span)
                        .map(|i| {
                            let a = start_ms + i * 86_400_000;
                            weighted_hours(&mine, a, a + 86_400_000)
                        })
                        .collect(),
                    month_hours: t.month_hours,
                    team: t.name,
                }
            })
            .collect();
        Ok((days, out))
    }

    /// Newest first, filtered; at most 500 (and the filters' choices).
    async fn audit_entries(
        &self,
        person: &str,
        team_name: &str,
        action: &str,
    ) -> Result<(Vec<AuditEntry>, Vec<String>, Vec<String>)> {
        let mut q = audit_row::Entity::find().order_by_desc(audit_row::Column::Id);
        if !person.is_empty() {
            q = q.filter(audit_row::Column::Actor.eq(person));
        }
        if !action.is_empty() {
            let a = <AuditAction as sea_orm::ActiveEnum>::try_from_value(&action.to_owned())
                .map_err(|_| {
                    AppError::invalid("action", format!("There is no action named {action:?}."))
                })?;
            q = q.filter(audit_row::Column::Action.eq(a));
        }
        let rows = q.limit(5000).all(&self.db).await?;
        let people: BTreeSet<String> = audit_row::Entity::find()
            .select_only()
            .column(audit_row::Column::Actor)
            .distinct()
            .into_tuple::<String>()
            .all(&self.db)
            .await?
            .into_iter()
            .collect();
        let teams: Vec<String> = team::Entity::find()
            .order_by_asc(team::Column::Name)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|t| t.name)
            .collect();
        let entries = rows
            .into_iter()
            .map(|r| {
                let detail: serde_json::Value =
                    serde_json::from_str(&r.detail).unwrap_or(serde_json::Value::Null);
                let team = detail
                    .get("team")
                    .and_then(|t| t.as_str())
                    .map(str::to_owned)
                    .or_else(|| (r.target_kind == "team").then(|| r.target.clone()));
                AuditEntry {
                    id: r.id,
                    at: r.at,
                    actor: r.actor,
                    action: sea_orm::ActiveEnum::to_value(&r.action),
                    target_kind: r.target_kind,
                    target: r.target,
                    team,
                    detail: r.detail,
                }
            })
            .filter(|e| team_name.is_empty() || e.team.as_deref() == Some(team_name))
            .take(500)
            .collect();
        Ok((entries, people.into_iter().collect(), teams))
    }
}

#[async_trait::async_trait]
impl QueueBackend for Services {
    async fn queue_page(&self, req: &RequestParts) -> Result<QueuePage, AppError> {
        Ok(self.queue_page_for(req).await?)
    }

    async fn set_quota(
        &self,
        req: &RequestParts,
        team_id: i64,
        guaranteed_devices: String,
        month_hours: String,
        per_person: String,
    ) -> Result<(), AppError> {
        Ok(self
            .set_quota_for(req, team_id, guaranteed_devices, month_hours, per_person)
            .await?)
    }

    async fn set_device_weight(
        &self,
        req: &RequestParts,
        name: String,
        weight: String,
    ) -> Result<(), AppError> {
        Ok(self.set_weight_for(req, name, weight).await?)
    }

    async fn set_job_priority(
        &self,
        req: &RequestParts,
        id: i64,
        priority: String,
    ) -> Result<(), AppError> {
        Ok(self.set_priority_for(req, id, priority).await?)
    }

    async fn pause_job(&self, req: &RequestParts, id: i64) -> Result<(), AppError> {
        let (me, j) = self.job_for_admin(req, id).await?;
        Ok(self.pause_as(&me, j).await?)
    }

    async fn resume_job(&self, req: &RequestParts, id: i64) -> Result<(), AppError> {
        let (me, j) = self.job_for_admin(req, id).await?;
        Ok(self.resume_as(&me, j).await?)
    }

    async fn admin_cancel_job(&self, req: &RequestParts, id: i64) -> Result<(), AppError> {
        let (me, j) = self.job_for_admin(req, id).await?;
        let from: JobState = j.state.into();
        let team = self.team_of_project(j.project_id).await?.name;
        self.cancel_job_row(&me, j.clone()).await?;
        // After the cancel (which retries against a job moving on by
        // itself): recorded once it took effect.
        self.audit_job(
            &self.db,
            &me,
            AuditAction::JobCancelled,
            &j,
            &team,
            json!({ "from": from.as_str() }),
        )
        .await?;
        Ok(())
    }

    async fn usage_report(
        &self,
        req: &RequestParts,
        from: String,
        to: String,
    ) -> Result<UsageReport, AppError> {
        Ok(self.usage_for(req, from, to).await?)
    }

    async fn audit_page(
        &self,
        req: &RequestParts,
        person: String,
        team: String,
        action: String,
    ) -> Result<AuditPage, AppError> {
        let me = self.require_admin(req).await?;
        let (entries, people, teams) = self.audit_entries(&person, &team, &action).await?;
        Ok(AuditPage {
            user: crate::accounts::current(&me),
            entries,
            actions: AuditAction::names(),
            people,
            teams,
        })
    }
}

/// The filters and period of the CSV downloads.
#[derive(Debug, Default, serde::Deserialize)]
pub struct CsvQuery {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    person: String,
    #[serde(default)]
    team: String,
    #[serde(default)]
    action: String,
}

fn csv_response(name: &str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response()
}

/// `GET /api/admin/usage.csv?from=&to=`: one line per team and day.
pub async fn usage_csv(
    State(s): State<Arc<Services>>,
    SignedIn(u): SignedIn,
    Query(q): Query<CsvQuery>,
) -> Result<Response> {
    policy::check(u.role.into(), false, Action::Administer, "that page")?;
    let (days, teams) = s.usage_table(&q.from, &q.to).await?;
    let mut out = String::from("day,team,device_hours,month_budget_hours\n");
    for t in &teams {
        for (d, h) in days.iter().zip(&t.hours) {
            out.push_str(&format!(
                "{d},{},{h:.4},{}\n",
                csv_field(&t.team),
                t.month_hours.map(|b| b.to_string()).unwrap_or_default()
            ));
        }
    }
    let name = format!(
        "hone-usage-{}-{}.csv",
        days.first().map_or("", String::as_str),
        days.last().map_or("", String::as_str)
    );
    Ok(csv_response(&name, out))
}

/// `GET /api/admin/audit.csv?person=&team=&action=`.
pub async fn audit_csv(
    State(s): State<Arc<Services>>,
    SignedIn(u): SignedIn,
    Query(q): Query<CsvQuery>,
) -> Result<Response> {
    policy::check(u.role.into(), false, Action::Administer, "that page")?;
    let (entries, _, _) = s.audit_entries(&q.person, &q.team, &q.action).await?;
    let mut out = String::from("id,at_utc,actor,action,target_kind,target,team,detail\n");
    for e in entries {
        let at = time::OffsetDateTime::from_unix_timestamp(e.at)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        out.push_str(&format!(
            "{},{at},{},{},{},{},{},{}\n",
            e.id,
            csv_field(&e.actor),
            e.action,
            csv_field(&e.target_kind),
            csv_field(&e.target),
            csv_field(e.team.as_deref().unwrap_or("")),
            csv_field(&e.detail)
        ));
    }
    Ok(csv_response("hone-audit.csv", out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_outside_their_range_are_refused_naming_the_field() {
        let e = whole("guaranteed_devices", "-1", 0, 10)
            .unwrap_err()
            .to_string();
        assert!(e.contains("guaranteed_devices") || e.contains("-1"), "{e}");
        assert!(whole("per_person", "lots", 1, 10).is_err());
        assert_eq!(whole("per_person", " 3 ", 1, 10).unwrap(), 3);
        assert!(decimal("weight", "0", 0.0, 1000.0, false).is_err());
        assert!(decimal("weight", "NaN", 0.0, 1000.0, false).is_err());
        assert!(decimal("weight", "inf", 0.0, 1000.0, false).is_err());
        assert!(decimal("month_hours", "1e99", 0.0, MAX_MONTH_HOURS, true).is_err());
        assert_eq!(decimal("month_hours", "0", 0.0, 10.0, true).unwrap(), 0.0);
    }

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("Alpha"), "Alpha");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
    }
}
