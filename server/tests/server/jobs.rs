//! Training jobs without the engine: launching (defaults, refusals that
//! name the field), cancelling, and the queue's guarantees — N concurrent
//! workers never run one job twice, expired leases are reclaimed, a
//! fenced-out worker's writes are refused, a job that keeps losing its
//! worker fails instead of looping. (The engine itself runs in the e2e
//! tests.)

use crate::common::*;
use axum::http::StatusCode;
use hone_app::api::{JobEventBody, JobState};
use hone_server::entity::{job, worker};
use hone_server::jobs::queue::{self, End};
use sea_orm::{ActiveModelTrait, EntityTrait, Set};
use std::collections::HashSet;

/// A CPU worker slot that reported just now, as `hone serve` registers one.
async fn cpu_worker(app: &TestApp, id: &str, memory_gib: u64) {
    worker::ActiveModel {
        id: Set(id.into()),
        host: Set("test".into()),
        device: Set(format!(
            r#"{{"kind":"cpu","index":null,"name":"Test CPU","memory_bytes":{}}}"#,
            memory_gib << 30
        )),
        status: Set("ready".into()),
        started_at: Set(0),
        heartbeat_ms: Set(queue::db_now_ms(&app.services.db).await.unwrap()),
        live: Set(None),
    }
    .insert(&app.services.db)
    .await
    .unwrap();
}

/// The world, a saved dataset in team Alpha, and its expert signed in.
async fn expert_with_dataset(app: &TestApp) -> (Client<'_>, i64) {
    let w = world(app).await;
    let dataset = save_dataset(app, "expert", w.alpha_project, chat_examples(30)).await;
    let mut expert = Client::new(app);
    expert.login("expert", PASSWORD).await;
    (expert, dataset)
}

async fn launch(c: &mut Client<'_>, dataset: i64, model: &str, config: &str) -> Resp {
    c.call(
        "launch_job",
        &[
            ("dataset_id", &dataset.to_string()),
            ("model", model),
            ("config", config),
        ],
    )
    .await
}

async fn job_row(app: &TestApp, id: i64) -> job::Model {
    job::Entity::find_by_id(id)
        .one(&app.services.db)
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn launching_checks_the_settings_and_queues_the_job() {
    on_each_db(|app| async move {
        let w = world(&app).await;
        let dataset = save_dataset(&app, "expert", w.alpha_project, chat_examples(40)).await;
        cpu_worker(&app, "w1", 8).await;
        let mut expert = Client::new(&app);
        expert.login("expert", PASSWORD).await;

        // The launch page: settings derived from the data.
        let page = expert
            .call("launch_page", &[("dataset_id", &dataset.to_string())])
            .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let page = page.json();
        assert_eq!(page["default_model"], "hone-demo");
        let defaults = &page["defaults"];
        assert_eq!(defaults["num_train_epochs"], 3);
        assert!(
            defaults["max_seq_length"].as_u64().unwrap() <= 64,
            "{defaults}"
        );
        assert_eq!(page["devices"][0]["device"]["name"], "Test CPU");
        assert_eq!(page["methods"].as_array().unwrap().len(), 3);

        // Does it fit, how long: against the worker's CPU.
        let check = expert
            .call(
                "check_launch",
                &[
                    ("dataset_id", &dataset.to_string()),
                    ("model", "hone-demo"),
                    ("config", &defaults.to_string()),
                ],
            )
            .await;
        assert_eq!(check.status, StatusCode::OK, "{}", check.body);
        let check = check.json();
        assert_eq!(check["devices"][0]["fits"], true, "{check}");
        assert!(check["eta_low_s"].as_f64().unwrap() < check["eta_high_s"].as_f64().unwrap());
        assert!(check["tokens"].as_u64().unwrap() > 0);

        // A setting out of range: 422 naming the field and the range.
        let bad = launch(&mut expert, dataset, "hone-demo", r#"{"lora_r":0}"#).await;
        assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
        let err = bad.json();
        assert_eq!(err["Invalid"]["field"], "lora_r", "{err}");
        assert!(
            err["Invalid"]["message"].as_str().unwrap().contains("1"),
            "{err}"
        );
        // An unknown model: the available ones are listed.
        let bad = launch(&mut expert, dataset, "llama-9000", "{}").await;
        assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(bad.body.contains("hone-demo"), "{}", bad.body);
        // Unknown settings are refused, not ignored.
        let bad = launch(&mut expert, dataset, "hone-demo", r#"{"lora_rank":8}"#).await;
        assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);

        let ok = launch(&mut expert, dataset, "hone-demo", &defaults.to_string()).await;
        assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
        let id = ok.json().as_i64().unwrap();
        let row = job_row(&app, id).await;
        assert_eq!(JobState::from(row.state), JobState::Queued);
        assert!(row.queued_at.is_some());
        // Both transitions are in the log, in order.
        let page = expert.call("job", &[("id", &id.to_string())]).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let page: hone_app::api::JobPage = serde_json::from_str(&page.body).unwrap();
        let states: Vec<JobState> = page
            .events
            .iter()
            .filter_map(|e| match &e.body {
                JobEventBody::State { state, .. } => Some(*state),
                _ => None,
            })
            .collect();
        assert_eq!(states, [JobState::ValidatingFiles, JobState::Queued]);
        assert!(page.can_cancel);
        assert!(page.job.waiting_reason.is_some());

        // The project page lists it.
        let project = expert
            .call("project", &[("id", &w.alpha_project.to_string())])
            .await
            .json();
        assert_eq!(project["jobs"][0]["id"], id);
    })
    .await;
}

#[tokio::test]
async fn cancelling_a_queued_job_ends_it_and_a_running_one_asks_its_worker() {
    on_each_db(|app| async move {
        let (mut expert, dataset) = expert_with_dataset(&app).await;
        let a = launch(&mut expert, dataset, "hone-demo", "{}")
            .await
            .json()
            .as_i64()
            .unwrap();
        let b = launch(&mut expert, dataset, "hone-demo", "{}")
            .await
            .json()
            .as_i64()
            .unwrap();

        // The reviewer reads but may not cancel.
        let mut reviewer = Client::new(&app);
        reviewer.login("reviewer", PASSWORD).await;
        let res = reviewer.call("cancel_job", &[("id", &a.to_string())]).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN);

        // Queued: cancelled at once.
        let res = expert.call("cancel_job", &[("id", &a.to_string())]).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        assert_eq!(
            JobState::from(job_row(&app, a).await.state),
            JobState::Cancelled
        );
        let again = expert.call("cancel_job", &[("id", &a.to_string())]).await;
        assert_eq!(again.status, StatusCode::CONFLICT);

        // Running: `cancelling`, which the worker's next renewal sees.
        let db = &app.services.db;
        assert!(queue::assign(db, b, "w1", false).await.unwrap());
        let claimed = queue::claim(db, "w1", "Test CPU", 60_000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(claimed.id, b);
        let res = expert.call("cancel_job", &[("id", &b.to_string())]).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        assert_eq!(
            queue::renew(db, b, "w1", 60_000)
                .await
                .unwrap()
                .map(|l| l.state),
            Some(JobState::Cancelling)
        );
        assert!(queue::finish(
            db,
            b,
            "w1",
            End::Cancelled {
                outcome: "{}".into()
            }
        )
        .await
        .unwrap());
        assert_eq!(
            JobState::from(job_row(&app, b).await.state),
            JobState::Cancelled
        );
    })
    .await;
}

#[tokio::test]
async fn concurrent_workers_never_claim_one_job_twice() {
    on_each_db(|app| async move {
        let (mut expert, dataset) = expert_with_dataset(&app).await;
        let mut launched = Vec::new();
        for _ in 0..24 {
            let id = launch(&mut expert, dataset, "hone-demo", "{}")
                .await
                .json()
                .as_i64()
                .unwrap();
            launched.push(id);
        }
        let db = &app.services.db;
        // Two schedulers racing to assign each job to a different slot:
        // exactly one assignment holds.
        let mut races = Vec::new();
        for (i, id) in launched.iter().copied().enumerate() {
            for n in [i % 8, (i + 1) % 8] {
                let db = db.clone();
                races.push(tokio::spawn(async move {
                    queue::assign(&db, id, &format!("worker-{n}"), false)
                        .await
                        .unwrap()
                }));
            }
        }
        let mut won = 0;
        for r in races {
            won += usize::from(r.await.unwrap());
        }
        assert_eq!(won, 24, "{}: one assignment per job", app.db_name);
        // Eight workers claiming at once, two tasks per worker id: each
        // job is claimed once, by the worker it was assigned to.
        let mut tasks = Vec::new();
        for n in 0..16 {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                let me = format!("worker-{}", n % 8);
                let mut mine = Vec::new();
                while let Some(j) = queue::claim(&db, &me, "Test CPU", 60_000).await.unwrap() {
                    assert_eq!(j.worker_id.as_deref(), Some(me.as_str()));
                    mine.push((me.clone(), j.id));
                }
                mine
            }));
        }
        let mut claimed = Vec::new();
        for t in tasks {
            claimed.extend(t.await.unwrap());
        }
        let unique: HashSet<i64> = claimed.iter().map(|(_, j)| *j).collect();
        assert_eq!(claimed.len(), 24, "{} claims: {claimed:?}", app.db_name);
        assert_eq!(unique, launched.iter().copied().collect::<HashSet<_>>());
        for (me, j) in &claimed {
            let row = job_row(&app, *j).await;
            assert_eq!(row.worker_id.as_deref(), Some(me.as_str()));
            assert_eq!(row.assigned_worker, None);
        }
    })
    .await;
}

#[tokio::test]
async fn expired_leases_are_reclaimed_and_the_old_worker_is_fenced_out() {
    on_each_db(|app| async move {
        let (mut expert, dataset) = expert_with_dataset(&app).await;
        let id = launch(&mut expert, dataset, "hone-demo", "{}")
            .await
            .json()
            .as_i64()
            .unwrap();
        let db = &app.services.db;
        // A lease that has already run out, as if the worker had died.
        assert!(queue::assign(db, id, "old", false).await.unwrap());
        let first = queue::claim(db, "old", "Test CPU", -1)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((first.id, first.attempts), (id, 1));
        // Only its own assignments: another slot finds nothing.
        assert!(queue::claim(db, "new", "Test CPU", 60_000)
            .await
            .unwrap()
            .is_none());
        // The reaper puts it back in the queue; the scheduler gives it to
        // another slot.
        assert_eq!(queue::reap(db).await.unwrap(), vec![(id, JobState::Queued)]);
        assert!(queue::assign(db, id, "new", false).await.unwrap());
        let second = queue::claim(db, "new", "Test CPU", 60_000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((second.id, second.attempts), (id, 2));
        // Nothing the old worker writes is taken any more.
        let step = JobEventBody::State {
            state: JobState::Running,
            note: Some("old".into()),
        };
        assert_eq!(queue::renew(db, id, "old", 60_000).await.unwrap(), None);
        assert!(queue::append(db, id, Some("old"), &step)
            .await
            .unwrap()
            .is_none());
        assert!(!queue::progress(
            db,
            id,
            "old",
            queue::Progress {
                step: Some(9),
                ..Default::default()
            }
        )
        .await
        .unwrap());
        assert!(!queue::checkpoint(db, id, "old", 9, "{}").await.unwrap());
        assert!(!queue::finish(
            db,
            id,
            "old",
            End::Failed {
                cause: hone_server::entity::job::StoredCause::System,
                reason: "stale".into(),
            }
        )
        .await
        .unwrap());
        // The new one's are.
        assert!(queue::append(db, id, Some("new"), &step)
            .await
            .unwrap()
            .is_some());
        assert!(queue::progress(
            db,
            id,
            "new",
            queue::Progress {
                step: Some(3),
                ..Default::default()
            }
        )
        .await
        .unwrap());
        let row = job_row(&app, id).await;
        assert_eq!((row.step, row.worker_id.as_deref()), (Some(3), Some("new")));
        // A shutdown puts it back without counting the attempt.
        assert!(queue::finish(db, id, "new", End::Requeue).await.unwrap());
        let row = job_row(&app, id).await;
        assert_eq!(
            (JobState::from(row.state), row.attempts),
            (JobState::Queued, 1)
        );
    })
    .await;
}

#[tokio::test]
async fn a_job_that_keeps_losing_its_worker_fails_as_a_system_error() {
    on_each_db(|app| async move {
        let (mut expert, dataset) = expert_with_dataset(&app).await;
        let id = launch(&mut expert, dataset, "hone-demo", "{}")
            .await
            .json()
            .as_i64()
            .unwrap();
        let db = &app.services.db;
        for attempt in 1..=hone_server::jobs::MAX_ATTEMPTS {
            if attempt > 1 {
                assert_eq!(queue::reap(db).await.unwrap(), vec![(id, JobState::Queued)]);
            }
            let me = format!("dies-{attempt}");
            assert!(queue::assign(db, id, &me, false).await.unwrap());
            let j = queue::claim(db, &me, "Test CPU", -1)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(j.attempts, attempt);
        }
        // No attempts left: the reaper fails it instead of requeueing it.
        let reaped = queue::reap(db).await.unwrap();
        assert_eq!(reaped, vec![(id, JobState::Failed)]);
        let row = job_row(&app, id).await;
        assert_eq!(JobState::from(row.state), JobState::Failed);
        assert_eq!(
            row.failure_cause,
            Some(hone_server::entity::job::StoredCause::System)
        );
        assert_eq!(row.failure_reason.as_deref(), Some(queue::LOST_TOO_OFTEN));
    })
    .await;
}

#[tokio::test]
async fn a_missing_engine_is_said_and_the_job_waits() {
    on_each_db(|app| async move {
        let (mut expert, dataset) = expert_with_dataset(&app).await;
        let id = launch(&mut expert, dataset, "hone-demo", "{}")
            .await
            .json()
            .as_i64()
            .unwrap();
        let why =
            hone_server::jobs::worker::devices(std::path::Path::new("/nonexistent/hone-train"))
                .await
                .unwrap_err();
        assert!(
            why.contains("cannot be started") && why.contains("HONE_TRAIN_BIN"),
            "{why}"
        );
        // The slot registers with the reason and claims nothing.
        let slot = hone_server::jobs::worker::Worker {
            services: app.services.clone(),
            options: std::sync::Arc::new(hone_server::jobs::worker::Options {
                train_bin: "/nonexistent/hone-train".into(),
                work_dir: app.services.config.data_dir.join("work"),
                builtin_models: app.services.config.data_dir.join("builtin"),
                lease: std::time::Duration::from_secs(30),
                poll: std::time::Duration::from_secs(2),
                export_memory_limit: None,
            }),
            id: "broken".into(),
            device: hone_server::jobs::worker::slots(&[], None).remove(0),
            declared: false,
            unusable: Some(hone_server::jobs::worker::ENGINE_UNUSABLE.into()),
            live: None,
        };
        slot.heartbeat().await.unwrap();
        let page: hone_app::api::JobPage =
            serde_json::from_str(&expert.call("job", &[("id", &id.to_string())]).await.body)
                .unwrap();
        assert_eq!(page.job.state, JobState::Queued);
        let reason = page.job.waiting_reason.unwrap();
        assert!(
            reason.starts_with("No worker can run jobs:")
                && reason.contains(hone_server::jobs::worker::ENGINE_UNUSABLE)
                && !reason.contains("/nonexistent"),
            "{reason}"
        );
    })
    .await;
}

#[tokio::test]
async fn the_event_stream_resumes_after_last_event_id_and_ends_with_the_job() {
    on_each_db(|app| async move {
        let (mut expert, dataset) = expert_with_dataset(&app).await;
        let id = launch(&mut expert, dataset, "hone-demo", "{}")
            .await
            .json()
            .as_i64()
            .unwrap();
        expert.call("cancel_job", &[("id", &id.to_string())]).await;
        let path = format!("/api/jobs/{id}/events");
        // From the start: every state change, each with its SSE id.
        let all = expert.get(&path).await;
        assert_eq!(all.status, StatusCode::OK);
        let ids: Vec<i64> = all
            .body
            .lines()
            .filter_map(|l| l.strip_prefix("id: ")?.parse().ok())
            .collect();
        assert_eq!(ids.len(), 3, "{}", all.body);
        for state in ["validating_files", "queued", "cancelled"] {
            assert!(
                all.body.contains(&format!("\"state\":\"{state}\"")),
                "{}",
                all.body
            );
        }
        // A reconnect names the last id it saw: only what came after.
        let rest = expert
            .send(
                axum::http::Request::get(&path).header("last-event-id", ids[0].to_string()),
                axum::body::Body::empty(),
            )
            .await;
        assert_eq!(rest.status, StatusCode::OK);
        assert!(!rest.body.contains("validating_files"), "{}", rest.body);
        assert!(
            rest.body.contains("\"state\":\"cancelled\""),
            "{}",
            rest.body
        );
    })
    .await;
}
