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
