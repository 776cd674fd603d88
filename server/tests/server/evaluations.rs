//! Model versions and their evaluation jobs without the engine: a
//! training job's success opens one version (numbered per project, with
//! the hashes a review is bound to) and queues its evaluation, however
//! many schedulers race; the project page shows each version's state as
//! its evaluation moves; evaluation jobs stay out of the fine-tuning
//! job lists. (The engine's evaluation runs in the e2e tests.)

use crate::common::*;
use hone_protocol::evaluation::EvalSpec;
use hone_server::entity::job::{self, JobKind, StoredState};
use hone_server::entity::{dataset_version, model_version};
use hone_server::evaluations::{dataset_hash, files_hash, sha256_hex, RESAMPLES};
use hone_server::jobs::queue::End;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

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
    assert_eq!(r.status, axum::http::StatusCode::OK, "{}", r.body);
    r.json().as_i64().unwrap()
}

async fn versions(app: &TestApp, project: i64) -> Vec<model_version::Model> {
    model_version::Entity::find()
        .filter(model_version::Column::ProjectId.eq(project))
        .order_by_asc(model_version::Column::Number)
        .all(&app.services.db)
        .await
        .unwrap()
}

/// `(version number, state)` as the project page lists them.
async fn page_versions(c: &mut Client<'_>, project: i64) -> Vec<(u64, String)> {
    let page = c
        .call("project", &[("id", &project.to_string())])
        .await
        .json();
    page["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["number"].as_u64().unwrap(),
                v["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_trained_model_gets_one_version_and_its_evaluation_however_many_schedulers_race() {
    on_each_db(|app| async move {
        let w = world(&app).await;
        let dataset = save_dataset(&app, "expert", w.alpha_project, chat_examples(30)).await;
        let mut expert = Client::new(&app);
        expert.login("expert", PASSWORD).await;
        let trained = launch(&mut expert, dataset).await;
        let lost = launch(&mut expert, dataset).await;
        run_to(&app, trained, succeeded()).await;
        run_to(
            &app,
            lost,
            End::Failed {
                cause: job::StoredCause::User,
                reason: "no".into(),
            },
        )
        .await;

        // Four schedulers at once: one version, one evaluation job.
        let mut racers = Vec::new();
        for _ in 0..4 {
            let s = app.services.clone();
            racers.push(tokio::spawn(
                async move { s.open_versions().await.unwrap() },
            ));
        }
        let mut opened = 0;
        for r in racers {
            opened += r.await.unwrap();
        }
        assert_eq!(opened, 1, "{}", app.db_name);
        assert_eq!(app.services.open_versions().await.unwrap(), 0, "idempotent");
        let v = versions(&app, w.alpha_project).await;
        assert_eq!(
            v.len(),
            1,
            "{}: only the succeeded job is a version",
            app.db_name
        );
        let v = &v[0];
        assert_eq!((v.number, v.train_job_id), (1, trained));

        // Bound to the data, the settings and the trained files.
        let db = &app.services.db;
        let train_row = job::Entity::find_by_id(trained)
            .one(db)
            .await
            .unwrap()
            .unwrap();
        let d = dataset_version::Entity::find_by_id(dataset)
            .one(db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(v.dataset_sha256, dataset_hash(&d));
        assert_eq!(v.settings_sha256, sha256_hex(train_row.spec.as_bytes()));
        assert_eq!(
            v.artifact_sha256,
            files_hash(&[
                (
                    "adapter/adapter_model.safetensors".into(),
                    format!("bb{trained}")
                ),
                ("adapter/adapter_config.json".into(), format!("aa{trained}")),
            ])
        );

        // Its evaluation job: queued, scoring that job on that dataset.
        let eval = job::Entity::find_by_id(v.eval_job_id.unwrap())
            .one(db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                eval.kind,
                eval.state,
                eval.source_job_id,
                eval.dataset_version_id
            ),
            (
                JobKind::Evaluate,
                StoredState::Queued,
                Some(trained),
                Some(dataset)
            )
        );
        let spec: EvalSpec = serde_json::from_str(&eval.spec).unwrap();
        assert_eq!(
            (
                spec.train_job,
                spec.dataset_version,
                spec.resamples,
                spec.seed
            ),
            (trained, dataset, RESAMPLES, trained as u64)
        );
        assert!(
            eval.needs_cpu_bytes.is_some_and(|b| b > 0),
            "sized for the scheduler"
        );
        assert_eq!(
            page_versions(&mut expert, w.alpha_project).await,
            [(1, "evaluating".to_owned())]
        );

        // The project's job list and its models are the training jobs.
        let page = expert
            .call("project", &[("id", &w.alpha_project.to_string())])
            .await
            .json();
        let listed: Vec<i64> = page["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_i64().unwrap())
            .collect();
        assert_eq!(listed, [lost, trained]);
        // Its own page says what it evaluates.
        let eval_page = expert
            .call("job", &[("id", &eval.id.to_string())])
            .await
            .json();
        assert_eq!(eval_page["job"]["evaluates"], trained);

        // The evaluation ends: awaiting review. A second version's
        // evaluation fails: said so.
        run_to(&app, eval.id, succeeded()).await;
        let second = launch(&mut expert, dataset).await;
        run_to(&app, second, succeeded()).await;
        assert_eq!(app.services.open_versions().await.unwrap(), 1);
        let v2 = versions(&app, w.alpha_project).await.pop().unwrap();
        assert_eq!((v2.number, v2.train_job_id), (2, second));
        run_to(
            &app,
            v2.eval_job_id.unwrap(),
            End::Failed {
                cause: job::StoredCause::System,
                reason: "the engine died".into(),
            },
        )
        .await;
        assert_eq!(
            page_versions(&mut expert, w.alpha_project).await,
            [
                (2, "evaluation_failed".to_owned()),
                (1, "awaiting_review".to_owned())
            ]
        );
        // An evaluation succeeding opens no version of its own.
        assert_eq!(app.services.open_versions().await.unwrap(), 0);
    })
    .await;
}
