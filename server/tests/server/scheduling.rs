//! The scheduler against the database: quotas, fair share, borrowing and
//! preemption, budgets, pause and resume, the admin's edits and their
//! audit, with simulated worker slots (CPU slots registered as workers
//! register; claims, renewals and ends through the queue's functions, as
//! the worker calls them). The engine end to end is `e2e/tests/training.rs`.

use crate::common::*;
use axum::http::StatusCode;
use hone_app::api::JobState;
use hone_server::entity::{job, job_usage, worker};
use hone_server::jobs::queue::{self, End};
use hone_server::jobs::scheduler;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use std::collections::{HashMap, HashSet};

/// Registers (or refreshes) CPU slot `id` as a worker does, on the
/// database's clock.
async fn slot(app: &TestApp, id: &str) {
    let now = queue::db_now_ms(&app.services.db).await.unwrap();
    let row = worker::ActiveModel {
        id: Set(id.into()),
        host: Set("test".into()),
        device: Set(
            r#"{"kind":"cpu","index":null,"name":"Test CPU","memory_bytes":8589934592}"#.into(),
        ),
        status: Set("ready".into()),
        started_at: Set(0),
        heartbeat_ms: Set(now),
        live: Set(None),
    };
    if worker::Entity::find_by_id(id.to_owned())
        .one(&app.services.db)
        .await
        .unwrap()
        .is_some()
    {
        row.update(&app.services.db).await.unwrap();
    } else {
        row.insert(&app.services.db).await.unwrap();
    }
}

async fn job_row(app: &TestApp, id: i64) -> job::Model {
    job::Entity::find_by_id(id)
        .one(&app.services.db)
        .await
        .unwrap()
        .unwrap()
}

/// A third team, Gamma, with an expert and a project.
async fn gamma(app: &TestApp) -> i64 {
    let s = &app.services;
    let gamma = s.ensure_team("Gamma").await.unwrap();
    s.insert_user("gamma", PASSWORD, hone_app::api::Role::Expert, gamma.id)
        .await
        .unwrap();
    let mut c = Client::new(app);
    c.login("gamma", PASSWORD).await;
    let r = c
        .call(
            "create_project",
            &[("team_id", &gamma.id.to_string()), ("name", "Gamma")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.json().as_i64().unwrap()
}

async fn team_id(app: &TestApp, name: &str) -> String {
    app.services.ensure_team(name).await.unwrap().id.to_string()
}

async fn set_quota(
    admin: &mut Client<'_>,
    team: &str,
    guaranteed: &str,
    hours: &str,
    person: &str,
) -> Resp {
    admin
        .call(
            "set_quota",
            &[
                ("team_id", team),
                ("guaranteed_devices", guaranteed),
                ("month_hours", hours),
                ("per_person", person),
            ],
        )
        .await
}

async fn launch_n(c: &mut Client<'_>, dataset: i64, n: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let r = c
            .call(
                "launch_job",
                &[
                    ("dataset_id", &dataset.to_string()),
                    ("model", "hone-demo"),
                    ("config", "{}"),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        ids.push(r.json().as_i64().unwrap());
    }
    ids
}

/// Past device time of a team: `hours` that ended `ago_ms` before now,
/// on job `job` (any of the team's).
async fn used(app: &TestApp, team: &str, job: i64, hours: f64, ago_ms: i64) {
    let now = queue::db_now_ms(&app.services.db).await.unwrap();
    let end = now - ago_ms;
    job_usage::ActiveModel {
        job_id: Set(job),
        team_id: Set(team.parse().unwrap()),
        worker_id: Set("long-gone".into()),
        device_name: Set("Test CPU".into()),
        weight: Set(1.0),
        started_ms: Set(end - (hours * 3_600_000.0) as i64),
        ended_ms: Set(end),
        open: Set(false),
        ..Default::default()
    }
    .insert(&app.services.db)
    .await
    .unwrap();
}

/// What the queue holds now: job → (state, assigned slot, preemptible).
async fn assigned(app: &TestApp) -> HashMap<i64, (Option<String>, bool)> {
    job::Entity::find()
        .filter(job::Column::AssignedWorker.is_not_null())
        .all(&app.services.db)
        .await
        .unwrap()
        .into_iter()
        .map(|j| (j.id, (j.assigned_worker, j.preemptible)))
        .collect()
}

#[tokio::test]
async fn fifty_submissions_from_three_teams_share_four_slots_as_the_quotas_say() {
    on_each_db(|app| async move {
        let w = world(&app).await;
        let gamma_project = gamma(&app).await;
        let (alpha, beta, gamma_team) = (
            team_id(&app, "Alpha").await,
            team_id(&app, "Beta").await,
            team_id(&app, "Gamma").await,
        );
        let mut admin = Client::new(&app);
        admin.login("admin", PASSWORD).await;
        for (team, g) in [(&alpha, "2"), (&beta, "1"), (&gamma_team, "1")] {
            let r = set_quota(&mut admin, team, g, "", "").await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        }
        let slots: Vec<String> = (0..4).map(|i| format!("slot-{i}")).collect();
        for s in &slots {
            slot(&app, s).await;
        }
        let data = [
            save_dataset(&app, "expert", w.alpha_project, chat_examples(30)).await,
            save_dataset(&app, "outsider", w.beta_project, chat_examples(30)).await,
            save_dataset(&app, "gamma", gamma_project, chat_examples(30)).await,
        ];
        // 50 submissions, the three teams at once.
        let (mut a, mut b, mut g) = (Client::new(&app), Client::new(&app), Client::new(&app));
        a.login("expert", PASSWORD).await;
        b.login("outsider", PASSWORD).await;
        g.login("gamma", PASSWORD).await;
        let (alpha_jobs, beta_jobs, gamma_jobs) = tokio::join!(
            launch_n(&mut a, data[0], 20),
            launch_n(&mut b, data[1], 15),
            launch_n(&mut g, data[2], 15),
        );
        // Recent use, for fair share: Alpha used a lot, Gamma a little,
        // Beta nothing (penalties ≈ 20, 8.7 and 0 points, far more than
        // the seconds between submissions age them).
        used(&app, &alpha, alpha_jobs[0], 30.0, 2 * 86_400_000).await;
        used(&app, &gamma_team, gamma_jobs[0], 1.0, 2 * 86_400_000).await;

        let plan = scheduler::round(&app.services).await.unwrap();
        // By hand: within their guarantees, in fair-share order (Beta,
        // Gamma, Alpha): Beta's first, Gamma's first, Alpha's first two.
        let started: HashSet<i64> = plan
            .starts()
            .map(|(j, _, p)| {
                assert!(!p, "nobody borrows while every slot is guaranteed");
                j
            })
            .collect();
        let want: HashSet<i64> = [beta_jobs[0], gamma_jobs[0], alpha_jobs[0], alpha_jobs[1]].into();
        assert_eq!(started, want, "{}", app.db_name);
        // The rest wait in that order: Beta's, then Gamma's, then Alpha's.
        let mut order: Vec<i64> = Vec::new();
        order.extend(&beta_jobs[1..]);
        order.extend(&gamma_jobs[1..]);
        order.extend(&alpha_jobs[2..]);
        for (position, id) in order.iter().enumerate() {
            let j = job_row(&app, *id).await;
            assert_eq!(j.queue_position, Some(position as i32), "job {id}");
        }
        let beta_waits = job_row(&app, beta_jobs[1]).await.wait_reason.unwrap();
        assert_eq!(
            beta_waits,
            "waiting: your team is using 1 of its 1 CPU slots, and no other is free to borrow"
        );
        let alpha_waits = job_row(&app, alpha_jobs[2]).await.wait_reason.unwrap();
        assert!(
            alpha_waits.contains("2 of its 2 CPU slots"),
            "{alpha_waits}"
        );
        // The job's page and the admin's queue say the same.
        let page = a
            .call("job", &[("id", &alpha_jobs[2].to_string())])
            .await
            .json();
        assert_eq!(page["job"]["waiting_reason"], alpha_waits.as_str());
        let queue = admin.call("queue", &[]).await.json();
        let row = queue["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["job"]["id"] == alpha_jobs[2])
            .unwrap();
        assert_eq!(row["job"]["waiting_reason"], alpha_waits.as_str());
        assert_eq!(row["team"], "Alpha");

        // Run to the end: each round, every slot claims what it was given,
        // then the runs end. Nothing starts twice, nothing beyond the
        // guarantees unless borrowed, and borrowing only when the others
        // have nothing waiting.
        let team_of: HashMap<i64, &str> = alpha_jobs
            .iter()
            .map(|j| (*j, "alpha"))
            .chain(beta_jobs.iter().map(|j| (*j, "beta")))
            .chain(gamma_jobs.iter().map(|j| (*j, "gamma")))
            .collect();
        let guarantee: HashMap<&str, usize> = [("alpha", 2), ("beta", 1), ("gamma", 1)].into();
        let mut ran: Vec<i64> = Vec::new();
        let mut borrowed = 0;
        let mut rounds = 0;
        loop {
            rounds += 1;
            assert!(rounds < 60, "the queue never drained");
            for s in &slots {
                slot(&app, s).await;
            }
            let given = assigned(&app).await;
            let mut running: Vec<(i64, String)> = Vec::new();
            for s in &slots {
                while let Some(j) = queue::claim(&app.services.db, s, "Test CPU", 60_000)
                    .await
                    .unwrap()
                {
                    assert_eq!(
                        given[&j.id].0.as_deref(),
                        Some(s.as_str()),
                        "claimed by its slot"
                    );
                    running.push((j.id, s.clone()));
                }
            }
            assert!(running.len() <= 4, "{running:?}");
            let mut held: HashMap<&str, usize> = HashMap::new();
            for (j, _) in &running {
                if !given[j].1 {
                    *held.entry(team_of[j]).or_default() += 1;
                }
            }
            if running.iter().any(|(j, _)| given[j].1) {
                borrowed += 1;
                // Borrowing only when every team still waiting holds its
                // guarantee: nobody within theirs was passed over.
                let waiting = job::Entity::find()
                    .filter(job::Column::State.eq(hone_server::entity::job::StoredState::Queued))
                    .all(&app.services.db)
                    .await
                    .unwrap();
                for w in &waiting {
                    let t = team_of[&w.id];
                    assert!(
                        held.get(t).copied().unwrap_or(0) >= guarantee[t],
                        "a slot was lent while {t} waited within its guarantee"
                    );
                }
            }
            for (team, n) in &held {
                assert!(*n <= guarantee[team], "{team} holds {n} guaranteed slots");
            }
            for (j, s) in &running {
                assert!(!ran.contains(j), "job {j} ran twice");
                ran.push(*j);
                // Ended as cancelled: a success would queue its model's
                // evaluation, and this case is the 50 submissions alone.
                assert!(queue::finish(
                    &app.services.db,
                    *j,
                    s,
                    End::Cancelled {
                        outcome: r#"{"outcome":"cancelled","step":1}"#.into(),
                    }
                )
                .await
                .unwrap());
            }
            if ran.len() == 50 {
                break;
            }
            scheduler::round(&app.services).await.unwrap();
        }
        let all: HashSet<i64> = team_of.keys().copied().collect();
        assert_eq!(ran.iter().copied().collect::<HashSet<_>>(), all);
        // Alpha ran out first (2 a round); Beta and Gamma then borrowed
        // the idle slots.
        assert!(borrowed > 0, "no job borrowed an idle slot");
        // Every run's device time was recorded, on the database's clock.
        let rows = job_usage::Entity::find()
            .filter(job_usage::Column::WorkerId.ne("long-gone"))
            .all(&app.services.db)
            .await
            .unwrap();
        assert_eq!(rows.len(), 50);
        assert!(rows.iter().all(|r| !r.open && r.ended_ms >= r.started_ms));
    })
    .await;
}

#[tokio::test]
async fn a_borrower_gives_its_device_back_to_a_team_within_its_guarantee() {
    on_each_db(|app| async move {
        let w = world(&app).await;
        let (alpha, beta) = (team_id(&app, "Alpha").await, team_id(&app, "Beta").await);
        let mut admin = Client::new(&app);
        admin.login("admin", PASSWORD).await;
        for team in [&alpha, &beta] {
            assert_eq!(
                set_quota(&mut admin, team, "1", "", "").await.status,
                StatusCode::OK
            );
        }
        for s in ["slot-0", "slot-1"] {
            slot(&app, s).await;
        }
        let alpha_data = save_dataset(&app, "expert", w.alpha_project, chat_examples(30)).await;
        let beta_data = save_dataset(&app, "outsider", w.beta_project, chat_examples(30)).await;
        let mut expert = Client::new(&app);
        expert.login("expert", PASSWORD).await;
        let mine = launch_n(&mut expert, alpha_data, 2).await;
        scheduler::round(&app.services).await.unwrap();
        let given = assigned(&app).await;
        // One within Alpha's guarantee, one borrowed.
        assert_eq!(given.len(), 2);
        let borrower = *given.iter().find(|(_, (_, p))| *p).unwrap().0;
        let slot_of = given[&borrower].0.clone().unwrap();
        for s in ["slot-0", "slot-1"] {
            queue::claim(&app.services.db, s, "Test CPU", 60_000)
                .await
                .unwrap()
                .unwrap();
        }
        let queued_at = job_row(&app, borrower).await.queued_at;

        // Beta, within its guarantee, needs a slot: the borrower is asked
        // to give its own back.
        let mut outsider = Client::new(&app);
        outsider.login("outsider", PASSWORD).await;
        let theirs = launch_n(&mut outsider, beta_data, 1).await[0];
        let plan = scheduler::round(&app.services).await.unwrap();
        assert_eq!(plan.preempt, vec![borrower]);
        let reason = job_row(&app, theirs).await.wait_reason.unwrap();
        assert!(reason.contains("being handed back"), "{reason}");
        let lease = queue::renew(&app.services.db, borrower, &slot_of, 60_000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            lease.stop,
            Some(hone_server::entity::job::StopRequest::Preempt)
        );
        // The other Alpha run is within the guarantee: left alone.
        let keeper = mine.iter().copied().find(|j| *j != borrower).unwrap();
        let keeper_slot = given[&keeper].0.clone().unwrap();
        let kept = queue::renew(&app.services.db, keeper, &keeper_slot, 60_000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(kept.stop, None);
        // The worker checkpoints and hands the job back: queued, its place
        // and its attempt kept.
        assert!(
            queue::finish(&app.services.db, borrower, &slot_of, End::Requeue)
                .await
                .unwrap()
        );
        let back = job_row(&app, borrower).await;
        assert_eq!(JobState::from(back.state), JobState::Queued);
        assert_eq!(
            (back.queued_at, back.attempts, back.preemptible),
            (queued_at, 0, false)
        );
        scheduler::round(&app.services).await.unwrap();
        let given = assigned(&app).await;
        assert_eq!(given[&theirs].0.as_deref(), Some(slot_of.as_str()));
        assert!(!given[&theirs].1, "within its guarantee: not preemptible");
        let reason = job_row(&app, borrower).await.wait_reason.unwrap();
        assert!(reason.contains("1 of its 1"), "{reason}");
    })
    .await;
}

#[tokio::test]
async fn quota_and_priority_edits_apply_at_the_next_decision_and_are_audited() {
    on_each_db(|app| async move {
        let w = world(&app).await;
        let alpha = team_id(&app, "Alpha").await;
        let mut admin = Client::new(&app);
        admin.login("admin", PASSWORD).await;
        slot(&app, "slot-0").await;
        let data = save_dataset(&app, "expert", w.alpha_project, chat_examples(30)).await;
        let mut expert = Client::new(&app);
        expert.login("expert", PASSWORD).await;

        // No budget left this month: the job waits, and says until when.
        let r = set_quota(&mut admin, &alpha, "1", "0", "").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let jobs = launch_n(&mut expert, data, 3).await;
        scheduler::round(&app.services).await.unwrap();
        assert!(assigned(&app).await.is_empty());
        let reason = job_row(&app, jobs[0]).await.wait_reason.unwrap();
        assert!(
            reason
                .starts_with("waiting: your team has used 0.0 of its 0.0 device-hours this month")
                && reason.contains("resets on 1 "),
            "{reason}"
        );
        // A higher priority goes first once the budget allows.
        let r = admin
            .call(
                "set_job_priority",
                &[("id", &jobs[2].to_string()), ("priority", "5")],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let r = set_quota(&mut admin, &alpha, "1", "", "").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        scheduler::round(&app.services).await.unwrap();
        let given = assigned(&app).await;
        assert_eq!(given.keys().copied().collect::<Vec<_>>(), vec![jobs[2]]);
        assert_eq!(job_row(&app, jobs[0]).await.queue_position, Some(0));

        // Pause a waiting job: it stops being scheduled; resumed, it is
        // back in its place.
        let r = admin
            .call("pause_job", &[("id", &jobs[0].to_string())])
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(
            JobState::from(job_row(&app, jobs[0]).await.state),
            JobState::Paused
        );
        let again = admin
            .call("pause_job", &[("id", &jobs[0].to_string())])
            .await;
        assert_eq!(again.status, StatusCode::CONFLICT);
        scheduler::round(&app.services).await.unwrap();
        assert_eq!(job_row(&app, jobs[1]).await.queue_position, Some(0));
        let r = admin
            .call("resume_job", &[("id", &jobs[0].to_string())])
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        scheduler::round(&app.services).await.unwrap();
        assert_eq!(job_row(&app, jobs[0]).await.queue_position, Some(0));

        // Pause a running job: its worker is asked to checkpoint and stop,
        // and then it is paused.
        queue::claim(&app.services.db, "slot-0", "Test CPU", 60_000)
            .await
            .unwrap()
            .unwrap();
        let r = admin
            .call("pause_job", &[("id", &jobs[2].to_string())])
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let lease = queue::renew(&app.services.db, jobs[2], "slot-0", 60_000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            lease.stop,
            Some(hone_server::entity::job::StopRequest::Pause)
        );
        assert!(
            queue::finish(&app.services.db, jobs[2], "slot-0", End::Paused)
                .await
                .unwrap()
        );
        assert_eq!(
            JobState::from(job_row(&app, jobs[2]).await.state),
            JobState::Paused
        );
        // The admin cancels a paused job.
        let r = admin
            .call("admin_cancel_job", &[("id", &jobs[2].to_string())])
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(
            JobState::from(job_row(&app, jobs[2]).await.state),
            JobState::Cancelled
        );

        // Bad input names the field and changes nothing.
        for (g, h, p, field) in [
            ("-1", "", "", "guaranteed_devices"),
            ("lots", "", "", "guaranteed_devices"),
            ("100000", "", "", "guaranteed_devices"),
            ("1", "-5", "", "month_hours"),
            ("1", "NaN", "", "month_hours"),
            ("1", "1e12", "", "month_hours"),
            ("1", "", "0", "per_person"),
        ] {
            let r = set_quota(&mut admin, &alpha, g, h, p).await;
            assert_eq!(
                r.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{g} {h} {p}: {}",
                r.body
            );
            assert!(r.body.contains(field), "{}", r.body);
        }
        for weight in ["0", "-2", "abc", "1e9", "inf"] {
            let r = admin
                .call(
                    "set_device_weight",
                    &[("name", "Test CPU"), ("weight", weight)],
                )
                .await;
            assert_eq!(
                r.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{weight}: {}",
                r.body
            );
            assert!(r.body.contains("weight"), "{}", r.body);
        }
        let r = admin
            .call(
                "set_job_priority",
                &[("id", &jobs[1].to_string()), ("priority", "99999")],
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(r.body.contains("priority"), "{}", r.body);
        let r = admin
            .call(
                "set_device_weight",
                &[("name", "Test CPU"), ("weight", "2.5")],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let page = admin.call("queue", &[]).await.json();
        let cpu = page["weights"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["name"] == "Test CPU")
            .unwrap();
        assert_eq!(cpu["weight"], 2.5);
        assert_eq!(cpu["devices"], 1);

        // Only admins: experts and reviewers are refused.
        for who in ["expert", "reviewer"] {
            let mut c = Client::new(&app);
            c.login(who, PASSWORD).await;
            assert_eq!(
                set_quota(&mut c, &alpha, "9", "", "").await.status,
                StatusCode::FORBIDDEN
            );
            let r = c.call("pause_job", &[("id", &jobs[1].to_string())]).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN);
        }

        // Every change is in the audit log, with its team, filterable.
        let log = admin
            .call(
                "audit_log",
                &[("person", "admin"), ("team", "Alpha"), ("action", "")],
            )
            .await
            .json();
        let actions: Vec<&str> = log["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        for a in [
            "quota_changed",
            "priority_changed",
            "job_paused",
            "job_resumed",
            "job_cancelled",
        ] {
            assert!(actions.contains(&a), "{a} missing from {actions:?}");
        }
        let quotas = admin
            .call(
                "audit_log",
                &[("person", ""), ("team", ""), ("action", "quota_changed")],
            )
            .await
            .json();
        assert_eq!(quotas["entries"].as_array().unwrap().len(), 2);
        let csv = admin
            .get("/api/admin/audit.csv?action=device_weight_changed")
            .await;
        assert_eq!(csv.status, StatusCode::OK);
        let lines: Vec<&str> = csv.body.lines().collect();
        assert_eq!(lines.len(), 2, "{}", csv.body);
        assert!(lines[1].contains("device_weight_changed") && lines[1].contains("Test CPU"));
        let bad = admin
            .call(
                "audit_log",
                &[("person", ""), ("team", ""), ("action", "nope")],
            )
            .await;
        assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    })
    .await;
}

#[tokio::test]
async fn device_time_is_reported_per_team_and_day_with_weights() {
    on_each_db(|app| async move {
        let w = world(&app).await;
        let alpha = team_id(&app, "Alpha").await;
        let data = save_dataset(&app, "expert", w.alpha_project, chat_examples(30)).await;
        let mut expert = Client::new(&app);
        expert.login("expert", PASSWORD).await;
        let job = launch_n(&mut expert, data, 1).await[0];
        // Three hours yesterday... as recorded intervals on the database's
        // clock (a day back from now, whatever the worker's clock said).
        used(&app, &alpha, job, 3.0, 86_400_000).await;
        let mut admin = Client::new(&app);
        admin.login("admin", PASSWORD).await;
        let report = admin
            .call("usage_report", &[("from", ""), ("to", "")])
            .await;
        assert_eq!(report.status, StatusCode::OK, "{}", report.body);
        let csv = admin
            .get("/api/admin/usage.csv?from=2026-01-01&to=2026-01-03")
            .await;
        assert_eq!(csv.status, StatusCode::OK);
        assert_eq!(
            csv.body.lines().next(),
            Some("day,team,device_hours,month_budget_hours")
        );
        // Three days × two teams.
        assert_eq!(csv.body.lines().count(), 1 + 3 * 2, "{}", csv.body);
        // The whole interval lies within the last two days: all of it is
        // counted over a period that covers them.
        let now = queue::db_now_ms(&app.services.db).await.unwrap();
        let day = |ms: i64| {
            let t = time::OffsetDateTime::from_unix_timestamp(ms / 1000)
                .unwrap()
                .date();
            format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
        };
        let (from, to) = (day(now - 3 * 86_400_000), day(now));
        let r = admin
            .call("usage_report", &[("from", &from), ("to", &to)])
            .await
            .json();
        let alpha_row = r["teams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["team"] == "Alpha")
            .unwrap();
        let total: f64 = alpha_row["hours"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_f64().unwrap())
            .sum();
        assert!((total - 3.0).abs() < 1e-6, "{total}");
        // Bad periods are refused naming the field.
        for (f, t, field) in [
            ("yesterday", "", "from"),
            ("2026-01-05", "2026-01-01", "to"),
            ("2020-01-01", "2026-01-01", "to"),
        ] {
            let r = admin.call("usage_report", &[("from", f), ("to", t)]).await;
            assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{f} {t}");
            assert!(r.body.contains(field), "{}", r.body);
        }
    })
    .await;
}

#[tokio::test]
async fn leases_and_device_time_use_the_database_clock_not_the_workers() {
    on_each_db(|app| async move {
        let w = world(&app).await;
        let data = save_dataset(&app, "expert", w.alpha_project, chat_examples(30)).await;
        let mut expert = Client::new(&app);
        expert.login("expert", PASSWORD).await;
        let job = launch_n(&mut expert, data, 1).await[0];
        slot(&app, "slot-0").await;
        scheduler::round(&app.services).await.unwrap();
        let db = &app.services.db;
        let before = queue::db_now_ms(db).await.unwrap();
        let j = queue::claim(db, "slot-0", "Test CPU", 60_000)
            .await
            .unwrap()
            .unwrap();
        let after = queue::db_now_ms(db).await.unwrap();
        // The lease runs a minute from the database's now: whatever this
        // process's clock says, it is not in it.
        let expires = j.lease_expires_ms.unwrap();
        assert!(
            expires >= before + 60_000 && expires <= after + 60_000,
            "{before} {expires} {after}"
        );
        // A second renewal moves the interval's end with the database's
        // clock; the interval never runs backwards or ahead of it.
        queue::renew(db, job, "slot-0", 60_000)
            .await
            .unwrap()
            .unwrap();
        let open = job_usage::Entity::find()
            .filter(job_usage::Column::JobId.eq(job))
            .one(db)
            .await
            .unwrap()
            .unwrap();
        let now = queue::db_now_ms(db).await.unwrap();
        assert!(open.open && open.started_ms >= before && open.ended_ms <= now);
        assert!(queue::finish(db, job, "slot-0", End::Requeue)
            .await
            .unwrap());
        let closed = job_usage::Entity::find_by_id(open.id)
            .one(db)
            .await
            .unwrap()
            .unwrap();
        assert!(!closed.open && closed.ended_ms >= open.ended_ms);
        assert!(closed.ended_ms <= queue::db_now_ms(db).await.unwrap());
    })
    .await;
}
