//! Deleting dataset versions: allowed to the project's writers only,
//! refused with the reason while a job that has not ended or an approved
//! model version uses it, archived with its hashes kept, its files gone
//! from storage (not just hidden) unless another version shares the same
//! content, once however many deletions arrive together, and in the
//! audit log.

use crate::common::*;
use axum::http::StatusCode;
use hone_server::entity::audit::{self, AuditAction};
use hone_server::entity::dataset_version::{self, DatasetState};
use hone_server::entity::model_version;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

async fn signed_in<'a>(app: &'a TestApp, who: &str) -> Client<'a> {
    let mut c = Client::new(app);
    let r = c.login(who, PASSWORD).await;
    assert_eq!(r.status, StatusCode::OK, "{who}: {}", r.body);
    c
}

async fn delete(c: &mut Client<'_>, id: i64) -> Resp {
    c.call("delete_dataset", &[("id", &id.to_string())]).await
}

async fn row(app: &TestApp, id: i64) -> dataset_version::Model {
    dataset_version::Entity::find_by_id(id)
        .one(&app.services.db)
        .await
        .unwrap()
        .unwrap()
}

/// Examples that say who someone is: what must leave storage.
fn personal(n: usize) -> Vec<u8> {
    let mut s = String::new();
    for i in 0..n {
        s.push_str(&format!("{{\"messages\":[{{\"role\":\"user\",\"content\":\"Patient {i} of Dr Quimby asks when to call.\"}},{{\"role\":\"assistant\",\"content\":\"Call before {i} pm.\"}}]}}\n"));
    }
    s.into_bytes()
}

#[tokio::test]
async fn deleting_a_dataset_frees_its_files_unless_something_still_needs_them() {
    on_each_db(|app| async move {
        let w = world(&app).await;
        let data = save_dataset(&app, "expert", w.alpha_project, personal(30)).await;
        let before = row(&app, data).await;
        let keys = [
            before.train_key.clone(),
            before.validation_key.clone(),
            before.test_key.clone(),
        ];
        let mut expert = signed_in(&app, "expert").await;
        let mut reviewer = signed_in(&app, "reviewer").await;
        let mut outsider = signed_in(&app, "outsider").await;

        // Who may not.
        assert_eq!(
            delete(&mut reviewer, data).await.status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            delete(&mut outsider, data).await.status,
            StatusCode::NOT_FOUND
        );

        // A job that has not ended uses it: refused, naming the job.
        let r = expert
            .call(
                "launch_job",
                &[
                    ("dataset_id", &data.to_string()),
                    ("model", "hone-demo"),
                    ("config", "{}"),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let job = r.json().as_i64().unwrap();
        let refused = delete(&mut expert, data).await;
        assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
        assert!(
            refused.body.contains(&format!("job {job}")),
            "{}",
            refused.body
        );
        let cancelled = expert.call("cancel_job", &[("id", &job.to_string())]).await;
        assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);

        // Twice at once: archived once, its files gone.
        let mut again = signed_in(&app, "expert").await;
        let (a, b) = futures::join!(delete(&mut expert, data), delete(&mut again, data));
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert_eq!(b.status, StatusCode::OK, "{}", b.body);
        let freed = a.json().as_u64().unwrap() + b.json().as_u64().unwrap();
        assert_eq!(freed, 4, "the source file and three splits");
        let after = row(&app, data).await;
        assert_eq!(after.state, DatasetState::Archived);
        assert_eq!(after.train_sha256, before.train_sha256, "hashes kept");
        assert_eq!(after.train_key, "");
        for k in &keys {
            assert!(!app.services.blobs.exists(k).await.unwrap(), "{k} is gone");
        }
        // Not a byte of it is left anywhere in storage.
        for blob in app.services.blobs.list_blobs().await.unwrap() {
            let bytes = app.services.blobs.read(&blob.key).await.unwrap();
            assert!(
                !String::from_utf8_lossy(&bytes).contains("Dr Quimby"),
                "{} still holds the deleted data",
                blob.key
            );
        }
        let log = audit::Entity::find()
            .filter(audit::Column::Action.eq(AuditAction::DatasetDeleted))
            .all(&app.services.db)
            .await
            .unwrap();
        assert_eq!(log.len(), 1, "{}", app.db_name);
        // Gone from the project's list; its page says what happened.
        let project = expert
            .call("project", &[("id", &w.alpha_project.to_string())])
            .await
            .json();
        assert!(
            !project["datasets"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["id"] == data),
            "{project}"
        );
        let page = expert
            .call("dataset", &[("id", &data.to_string())])
            .await
            .json();
        assert_eq!(page["dataset"]["state"], "archived", "{page}");

        // Two versions of the same file share their blobs: deleting one
        // leaves the other whole.
        let one = save_dataset(&app, "expert", w.alpha_project, chat_examples(40)).await;
        let two = save_dataset(&app, "expert", w.alpha_project, chat_examples(40)).await;
        let r = delete(&mut expert, one).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.json(), 0, "every blob is shared with the other version");
        let split = expert
            .get(&format!("/api/datasets/{two}/train.jsonl"))
            .await;
        assert_eq!(split.status, StatusCode::OK);
        assert!(split.body.contains("plus one"));
    })
    .await;
}

#[tokio::test]
async fn a_dataset_an_approved_version_was_trained_on_is_kept() {
    on_each_db(|app| async move {
        let w = world(&app).await;
        let (version, _, _) = evaluated_version(&app, w.alpha_project, "expert").await;
        let v = model_version::Entity::find_by_id(version)
            .one(&app.services.db)
            .await
            .unwrap()
            .unwrap();
        let mut expert = signed_in(&app, "expert").await;
        let mut reviewer = signed_in(&app, "reviewer").await;
        let decide = |decision: &'static str, comment: &'static str| {
            vec![
                ("version_id", version.to_string()),
                ("decision", decision.to_owned()),
                ("comment", comment.to_owned()),
            ]
        };
        let args = decide("approved", "Fine.");
        let form: Vec<(&str, &str)> = args.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(reviewer.call("decide", &form).await.status, StatusCode::OK);
        let refused = delete(&mut expert, v.dataset_version_id).await;
        assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
        assert!(refused.body.contains("approved"), "{}", refused.body);
        assert_eq!(
            row(&app, v.dataset_version_id).await.state,
            DatasetState::Ready
        );

        // Rejected: it may go, and the card still cites its hashes.
        let args = decide("rejected", "Wrong on line 2.");
        let form: Vec<(&str, &str)> = args.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(reviewer.call("decide", &form).await.status, StatusCode::OK);
        let r = delete(&mut expert, v.dataset_version_id).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let card = app.services.model_card(&v).await.unwrap();
        assert!(card.contains(&v.dataset_sha256), "{card}");
        assert!(card.contains(&row(&app, v.dataset_version_id).await.train_sha256));
    })
    .await;
}

#[tokio::test]
async fn a_succeeded_job_keeps_its_best_and_last_checkpoints() {
    use hone_app::api::JobEventBody;
    use hone_protocol::Event;
    use hone_server::entity::job_checkpoint;
    use sea_orm::{ActiveModelTrait, Set};
    on_each_db(|app| async move {
        let w = world(&app).await;
        let data = save_dataset(&app, "expert", w.alpha_project, chat_examples(30)).await;
        let mut expert = signed_in(&app, "expert").await;
        let r = expert
            .call(
                "launch_job",
                &[
                    ("dataset_id", &data.to_string()),
                    ("model", "hone-demo"),
                    ("config", "{}"),
                ],
            )
            .await;
        let job = r.json().as_i64().unwrap();
        let db = &app.services.db;
        // Four checkpoints; validation loss lowest at step 20.
        for (step, loss) in [(10u64, 2.0), (20, 1.1), (30, 1.4), (40, 1.5)] {
            job_checkpoint::ActiveModel {
                job_id: Set(job),
                step: Set(step as i64),
                manifest: Set(r#"{"files":[]}"#.into()),
                created_at: Set(0),
                ..Default::default()
            }
            .insert(db)
            .await
            .unwrap();
            let e = Event::Eval {
                step,
                loss,
                perplexity: loss.exp(),
            };
            hone_server::jobs::queue::append(db, job, None, &JobEventBody::Engine { event: e })
                .await
                .unwrap();
        }
        // Not while it runs: only once it has succeeded.
        assert_eq!(app.services.prune_checkpoints().await.unwrap(), 0);
        run_to(&app, job, succeeded()).await;
        assert_eq!(app.services.prune_checkpoints().await.unwrap(), 2);
        assert_eq!(
            app.services.prune_checkpoints().await.unwrap(),
            0,
            "idempotent"
        );
        let steps: Vec<i64> = job_checkpoint::Entity::find()
            .filter(job_checkpoint::Column::JobId.eq(job))
            .all(db)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.step)
            .collect();
        assert_eq!(steps, vec![20, 40], "the best and the last");
    })
    .await;
}

/// A checkpoint of `job` whose one file holds `text`, stored as workers
/// store them; its blob's key.
async fn checkpoint_with(app: &TestApp, job: i64, step: i64, text: &str) -> String {
    use hone_server::entity::job_checkpoint;
    use sea_orm::{ActiveModelTrait, Set};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("adapter_model.safetensors");
    std::fs::write(&path, format!("{text} at step {step} of job {job}")).unwrap();
    let stored = app.services.blobs.put_file(&path).await.unwrap();
    job_checkpoint::ActiveModel {
        job_id: Set(job),
        step: Set(step),
        manifest: Set(serde_json::json!({"files": [{"path": "adapter_model.safetensors", "key": stored.key}]}).to_string()),
        created_at: Set(0),
        ..Default::default()
    }
    .insert(&app.services.db)
    .await
    .unwrap();
    stored.key
}

async fn launch(c: &mut Client<'_>, dataset: i64) -> i64 {
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
    r.json().as_i64().unwrap()
}

async fn audited(app: &TestApp, action: AuditAction) -> Vec<audit::Model> {
    audit::Entity::find()
        .filter(audit::Column::Action.eq(action))
        .all(&app.services.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_job_is_deleted_with_what_it_stored_once_it_has_ended() {
    use hone_server::entity::{job, job_checkpoint, job_event};
    on_each_db(|app| async move {
        let w = world(&app).await;
        let data = save_dataset(&app, "expert", w.alpha_project, chat_examples(30)).await;
        let mut expert = signed_in(&app, "expert").await;
        let mut reviewer = signed_in(&app, "reviewer").await;
        let mut outsider = signed_in(&app, "outsider").await;
        let id = launch(&mut expert, data).await;
        let key = checkpoint_with(&app, id, 10, "Patient 7 of Dr Quimby").await;
        let delete =
            async |c: &mut Client<'_>| c.call("delete_job", &[("id", &id.to_string())]).await;
        assert_eq!(delete(&mut reviewer).await.status, StatusCode::FORBIDDEN);
        assert_eq!(delete(&mut outsider).await.status, StatusCode::NOT_FOUND);
        let refused = delete(&mut expert).await;
        assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
        assert!(refused.body.contains("cancel it"), "{}", refused.body);
        assert!(app.services.blobs.exists(&key).await.unwrap());

        let cancelled = expert.call("cancel_job", &[("id", &id.to_string())]).await;
        assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
        // Twice at once: deleted once, its checkpoint's file gone.
        let mut again = signed_in(&app, "expert").await;
        // (The later one may read the job only once it is gone: 404.)
        let (a, b) = futures::join!(delete(&mut expert), delete(&mut again));
        let ok: Vec<_> = [&a, &b]
            .into_iter()
            .filter(|r| r.status == StatusCode::OK)
            .collect();
        for r in [&a, &b] {
            assert!(
                matches!(r.status, StatusCode::OK | StatusCode::NOT_FOUND),
                "{}",
                r.body
            );
        }
        assert!(!ok.is_empty());
        let freed: u64 = ok.iter().map(|r| r.json().as_u64().unwrap()).sum();
        assert_eq!(freed, 1, "the checkpoint's one file, once");
        assert!(!app.services.blobs.exists(&key).await.unwrap());
        let db = &app.services.db;
        let tomb = job::Entity::find_by_id(id).one(db).await.unwrap().unwrap();
        assert!(tomb.deleted_at.is_some(), "the row stays for its usage");
        for (what, n) in [
            (
                "checkpoints",
                job_checkpoint::Entity::find()
                    .filter(job_checkpoint::Column::JobId.eq(id))
                    .all(db)
                    .await
                    .unwrap()
                    .len(),
            ),
            (
                "events",
                job_event::Entity::find()
                    .filter(job_event::Column::JobId.eq(id))
                    .all(db)
                    .await
                    .unwrap()
                    .len(),
            ),
        ] {
            assert_eq!(n, 0, "{what} of the deleted job: {}", app.db_name);
        }
        assert_eq!(audited(&app, AuditAction::JobDeleted).await.len(), 1);
        // Absent everywhere.
        let page = expert.call("job", &[("id", &id.to_string())]).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{}", page.body);
        let project = expert
            .call("project", &[("id", &w.alpha_project.to_string())])
            .await
            .json();
        assert!(
            !project["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|j| j["id"] == id),
            "{project}"
        );

        // A job that made a version goes with the version.
        let (_, number, trained) = evaluated_version(&app, w.alpha_project, "expert").await;
        let r = expert
            .call("delete_job", &[("id", &trained.to_string())])
            .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
        assert!(r.body.contains(&format!("version {number}")), "{}", r.body);
    })
    .await;
}

#[tokio::test]
async fn a_version_is_deleted_with_its_jobs_unless_it_is_approved() {
    use hone_server::entity::{job, job_artifact};
    on_each_db(|app| async move {
        let w = world(&app).await;
        let (version, number, trained) = evaluated_version(&app, w.alpha_project, "expert").await;
        let v = model_version::Entity::find_by_id(version)
            .one(&app.services.db)
            .await
            .unwrap()
            .unwrap();
        let eval = v.eval_job_id.unwrap();
        let report_key = job_artifact::Entity::find()
            .filter(job_artifact::Column::JobId.eq(eval))
            .one(&app.services.db)
            .await
            .unwrap()
            .unwrap()
            .storage_key;
        assert!(app.services.blobs.exists(&report_key).await.unwrap());
        let mut expert = signed_in(&app, "expert").await;
        let mut reviewer = signed_in(&app, "reviewer").await;
        let delete = async |c: &mut Client<'_>| {
            c.call("delete_version", &[("version_id", &version.to_string())])
                .await
        };
        let decide = async |c: &mut Client<'_>, decision: &str, comment: &str| {
            let r = c
                .call(
                    "decide",
                    &[
                        ("version_id", &version.to_string()),
                        ("decision", decision),
                        ("comment", comment),
                    ],
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        };
        assert_eq!(delete(&mut reviewer).await.status, StatusCode::FORBIDDEN);
        decide(&mut reviewer, "approved", "Good.").await;
        let refused = delete(&mut expert).await;
        assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
        assert!(refused.body.contains("approved"), "{}", refused.body);
        decide(&mut reviewer, "rejected", "Line 2 is wrong.").await;

        let r = delete(&mut expert).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert!(r.json().as_u64().unwrap() >= 1, "{}", r.body);
        assert!(
            !app.services.blobs.exists(&report_key).await.unwrap(),
            "the evaluation report left storage"
        );
        for j in [trained, eval] {
            let row = job::Entity::find_by_id(j)
                .one(&app.services.db)
                .await
                .unwrap()
                .unwrap();
            assert!(row.deleted_at.is_some(), "job {j} went with its version");
        }
        let page = expert
            .call(
                "version",
                &[
                    ("project_id", &w.alpha_project.to_string()),
                    ("number", &number.to_string()),
                ],
            )
            .await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{}", page.body);
        let download = expert
            .get(&format!("/api/versions/{version}/downloads/adapter"))
            .await;
        assert_eq!(download.status, StatusCode::NOT_FOUND);
        let project = expert
            .call("project", &[("id", &w.alpha_project.to_string())])
            .await
            .json();
        assert_eq!(project["versions"], serde_json::json!([]), "{project}");
        let awaiting = reviewer.call("awaiting_review", &[]).await.json();
        assert_eq!(awaiting, serde_json::json!([]), "{awaiting}");
        let log = audited(&app, AuditAction::VersionDeleted).await;
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].actor, "expert");
        // A second deletion finds nothing.
        assert_eq!(delete(&mut expert).await.status, StatusCode::NOT_FOUND);
        // The next version takes the next number.
        let (_, next, _) = evaluated_version(&app, w.alpha_project, "expert").await;
        assert_eq!(next, number + 1);
    })
    .await;
}

#[tokio::test]
async fn a_project_is_deleted_with_everything_in_it_and_its_name_freed() {
    use hone_server::entity::project;
    on_each_db(|app| async move {
        let w = world(&app).await;
        let (_, _, _) = evaluated_version(&app, w.alpha_project, "expert").await;
        let data = save_dataset(&app, "expert", w.alpha_project, personal(20)).await;
        let (_, key) = crate::openai::key_for(&app, "expert", w.alpha_project).await;
        let (refs, _) = app.services.blob_references().await.unwrap();
        let keys: Vec<String> = refs
            .into_iter()
            .filter(|(p, _)| *p == w.alpha_project)
            .map(|(_, k)| k)
            .collect();
        assert!(keys.len() >= 8, "{keys:?}");
        let name = project::Entity::find_by_id(w.alpha_project)
            .one(&app.services.db)
            .await
            .unwrap()
            .unwrap()
            .name;
        let mut expert = signed_in(&app, "expert").await;
        let mut reviewer = signed_in(&app, "reviewer").await;
        let pid = w.alpha_project.to_string();
        let delete = async |c: &mut Client<'_>, confirm: &str| {
            c.call("delete_project", &[("id", &pid), ("confirm", confirm)])
                .await
        };
        assert_eq!(
            delete(&mut reviewer, &name).await.status,
            StatusCode::FORBIDDEN
        );
        let unconfirmed = delete(&mut expert, "yes").await;
        assert_eq!(unconfirmed.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(unconfirmed.body.contains(&name), "{}", unconfirmed.body);
        // A job that has not ended: refused, naming it.
        let running = launch(&mut expert, data).await;
        let busy = delete(&mut expert, &name).await;
        assert_eq!(busy.status, StatusCode::CONFLICT, "{}", busy.body);
        assert!(busy.body.contains(&running.to_string()), "{}", busy.body);
        let r = expert
            .call("cancel_job", &[("id", &running.to_string())])
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);

        let done = delete(&mut expert, &name).await;
        assert_eq!(done.status, StatusCode::OK, "{}", done.body);
        for k in &keys {
            assert!(!app.services.blobs.exists(k).await.unwrap(), "{k} is gone");
        }
        for blob in app.services.blobs.list_blobs().await.unwrap() {
            let bytes = app.services.blobs.read(&blob.key).await.unwrap();
            assert!(!String::from_utf8_lossy(&bytes).contains("Dr Quimby"));
        }
        let alpha_use = app
            .services
            .storage_use()
            .await
            .unwrap()
            .into_iter()
            .find(|t| t.team == "Alpha")
            .unwrap();
        assert_eq!(alpha_use.bytes, 0, "{alpha_use:?}");
        let page = expert.call("project", &[("id", &pid)]).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND);
        let dash = expert.call("dashboard", &[]).await.json();
        assert!(
            !dash["projects"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["id"] == w.alpha_project),
            "{dash}"
        );
        assert_eq!(row(&app, data).await.state, DatasetState::Archived);
        // Its API key no longer opens anything.
        let models = crate::openai::send(
            &app,
            Some(&key),
            axum::http::Request::get("/v1/models"),
            axum::body::Body::empty(),
        )
        .await;
        assert_eq!(models.status, StatusCode::UNAUTHORIZED);
        let log = audited(&app, AuditAction::ProjectDeleted).await;
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].target, name);
        // The name is free again.
        let team = dash["teams"][0]["id"].as_i64().unwrap().to_string();
        let again = expert
            .call("create_project", &[("team_id", &team), ("name", &name)])
            .await;
        assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    })
    .await;
}

#[tokio::test]
async fn admins_purge_the_checkpoints_of_a_teams_ended_jobs() {
    on_each_db(|app| async move {
        let w = world(&app).await;
        let data = save_dataset(&app, "expert", w.alpha_project, chat_examples(30)).await;
        let mut expert = signed_in(&app, "expert").await;
        let mut admin = signed_in(&app, "admin").await;
        let ended = launch(&mut expert, data).await;
        let old = checkpoint_with(&app, ended, 10, "ended").await;
        let r = expert
            .call("cancel_job", &[("id", &ended.to_string())])
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let waiting = launch(&mut expert, data).await;
        let live = checkpoint_with(&app, waiting, 10, "waiting").await;
        // A file stored a moment ago with no row yet (a save under way).
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), "in flight").unwrap();
        let fresh = app
            .services
            .blobs
            .put_file(&dir.path().join("f"))
            .await
            .unwrap()
            .key;
        let team = w_team(&mut admin, "Alpha").await;
        let purge = async |c: &mut Client<'_>| c.call("purge_storage", &[("team_id", &team)]).await;
        assert_eq!(purge(&mut expert).await.status, StatusCode::FORBIDDEN);
        let r = purge(&mut admin).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let p = r.json();
        assert_eq!(p["checkpoints"], 1, "{p}");
        assert_eq!(p["files"], 1, "{p}");
        assert!(p["bytes"].as_u64().unwrap() > 0, "{p}");
        assert!(!app.services.blobs.exists(&old).await.unwrap());
        assert!(
            app.services.blobs.exists(&live).await.unwrap(),
            "a job not ended keeps its checkpoints"
        );
        assert!(
            app.services.blobs.exists(&fresh).await.unwrap(),
            "within the grace period"
        );
        let log = audited(&app, AuditAction::StoragePurged).await;
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].target, "Alpha");
        // Nothing left to purge.
        let again = purge(&mut admin).await.json();
        assert_eq!(again["checkpoints"], 0, "{again}");
    })
    .await;
}

/// Team `name`'s id, from the admin page.
async fn w_team(admin: &mut Client<'_>, name: &str) -> String {
    let page = admin.call("admin_overview", &[]).await.json();
    page["teams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap()["id"]
        .to_string()
}
