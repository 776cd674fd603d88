//! Dataset versions: the server re-checks and re-splits the uploaded file
//! with the same code as the browser, and refuses what does not agree.

use crate::common::*;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use hone_dataset::tokens::ChatTokenizer;
use hone_dataset::{check_bytes, Options, Ratios, SplitWriter};
use hone_server::entity::dataset_version;
use hone_server::models;
use sea_orm::EntityTrait;

fn sample() -> Vec<u8> {
    let mut s = String::new();
    for i in 0..20 {
        s.push_str(&format!("{{\"messages\":[{{\"role\":\"user\",\"content\":\"Question {i}\"}},{{\"role\":\"assistant\",\"content\":\"Answer {i}\"}}]}}\n"));
    }
    s.push_str("{\"messages\": [\n");
    s.into_bytes()
}

/// A file with no errors.
fn good_sample() -> Vec<u8> {
    let mut s = String::new();
    for i in 0..20 {
        s.push_str(&format!("{{\"messages\":[{{\"role\":\"user\",\"content\":\"Question {i}\"}},{{\"role\":\"assistant\",\"content\":\"Answer {i}\"}}]}}\n"));
    }
    s.into_bytes()
}

/// The demo model's tokenizer, as the browser loads it.
fn demo() -> (ChatTokenizer, Options) {
    let dir = tempfile::tempdir().unwrap();
    let files = models::tokenizer_files(dir.path(), models::DEMO).unwrap();
    let opts = Options {
        max_tokens: files.context_length,
        ..Options::default()
    };
    (models::chat_tokenizer(&files).unwrap(), opts)
}

/// What the browser computes before saving: split counts for seed and ratios.
fn browser_counts(bytes: &[u8], seed: u64) -> [u64; 3] {
    let (t, opts) = demo();
    let report = check_bytes(bytes, opts, Some(&t));
    hone_dataset::Report::split_counts(&report.plan(seed, Ratios::default()))
}

async fn post(c: &mut Client<'_>, project: i64, query: &str, bytes: Vec<u8>) -> Resp {
    c.send(
        Request::post(format!("/api/projects/{project}/datasets?{query}"))
            .header("x-file-name", "support.jsonl")
            .header("sec-fetch-site", "same-origin"),
        Body::from(bytes),
    )
    .await
}

#[tokio::test]
async fn saving_a_dataset_rechecks_and_splits_on_the_server() {
    on_each_db(|app| async move {
        let w = world(&app).await;
        let mut c = Client::new(&app);
        c.login("expert", PASSWORD).await;
        let bytes = sample();
        let [a, b, t] = browser_counts(&bytes, 7);
        let expect = format!("{a},{b},{t}");

        // Errors the person did not choose to leave out: the save answers
        // at once, the check refuses it with its findings.
        let refused = post(
            &mut c,
            w.alpha_project,
            &format!("name=Support&seed=7&ratios=80,10,10&expect={expect}"),
            bytes.clone(),
        )
        .await;
        assert_eq!(refused.status, StatusCode::ACCEPTED, "{}", refused.body);
        assert_eq!(refused.json()["state"], "waiting");
        assert_eq!(refused.json()["ahead"], 0);
        let refused_id = refused.json()["id"].as_i64().unwrap();
        // Nothing to download or train on until the check is done.
        let early = c
            .get(&format!("/api/datasets/{refused_id}/train.jsonl"))
            .await;
        assert_eq!(early.status, StatusCode::CONFLICT, "{}", early.body);
        assert!(early.body.contains("still being checked"), "{}", early.body);
        let page = c.call("dataset", &[("id", &refused_id.to_string())]).await;
        assert_eq!(page.json()["dataset"]["state"], "waiting", "{}", page.body);
        assert_eq!(app.services.check_pending_datasets().await.unwrap(), 1);
        let page = c
            .call("dataset", &[("id", &refused_id.to_string())])
            .await
            .json();
        assert_eq!(page["dataset"]["state"], "refused");
        assert_eq!(page["refusal"]["code"], "dataset_errors");
        assert_eq!(page["refusal"]["findings"][0]["code"], "invalid_json");
        assert_eq!(page["refusal"]["findings"][0]["line"], 21);
        let late = c
            .get(&format!("/api/datasets/{refused_id}/train.jsonl"))
            .await;
        assert_eq!(late.status, StatusCode::CONFLICT, "{}", late.body);
        assert!(late.body.contains("refused"), "{}", late.body);
        // The refused save's source file is hidden (its blob is left to
        // the retention sweep).
        let project = c
            .call("project", &[("id", &w.alpha_project.to_string())])
            .await
            .json();
        assert_eq!(project["project"]["files"], serde_json::json!([]));

        let mismatch = post(
            &mut c,
            w.alpha_project,
            "name=Support&seed=7&ratios=80,10,10&drop_rejected=true&expect=1,1,1",
            bytes.clone(),
        )
        .await;
        assert_eq!(mismatch.status, StatusCode::ACCEPTED, "{}", mismatch.body);
        let mismatch_id = mismatch.json()["id"].as_i64().unwrap();
        assert_eq!(app.services.check_pending_datasets().await.unwrap(), 1);
        let page = c
            .call("dataset", &[("id", &mismatch_id.to_string())])
            .await
            .json();
        assert_eq!(page["dataset"]["state"], "refused");
        assert_eq!(page["refusal"]["code"], "split_mismatch");
        assert!(
            page["refusal"]["message"]
                .as_str()
                .unwrap()
                .contains(&format!("the server {a}/{b}/{t}")),
            "{page}"
        );

        let saved = post(
            &mut c,
            w.alpha_project,
            &format!("name=Support&seed=7&ratios=80,10,10&drop_rejected=true&expect={expect}"),
            bytes.clone(),
        )
        .await;
        assert_eq!(saved.status, StatusCode::ACCEPTED, "{}", saved.body);
        let saved_id = saved.json()["id"].as_i64().unwrap();
        assert_eq!(app.services.check_pending_datasets().await.unwrap(), 1);
        let d = c
            .call("dataset", &[("id", &saved_id.to_string())])
            .await
            .json()["dataset"]
            .clone();
        assert_eq!(d["state"], "ready");
        assert_eq!(
            (
                d["examples"].as_i64(),
                d["rejected"].as_i64(),
                d["dropped_rejected"].as_bool()
            ),
            (Some(20), Some(1), Some(true))
        );
        assert_eq!(d["counts"], serde_json::json!([a, b, t]));

        // The stored splits are byte-identical to what hone-dataset writes.
        let (t, opts) = demo();
        let report = check_bytes(&bytes, opts.clone(), Some(&t));
        let mut local = [String::new(), String::new(), String::new()];
        let mut writer = SplitWriter::new(opts, Some(&t), report.plan(7, Ratios::default()));
        writer.feed(&bytes, &mut |s, line| local[s as usize].push_str(line));
        writer.finish(&mut |s, line| local[s as usize].push_str(line));
        let row = dataset_version::Entity::find_by_id(saved_id)
            .one(&app.services.db)
            .await
            .unwrap()
            .unwrap();
        for (key, expected) in [&row.train_key, &row.validation_key, &row.test_key]
            .into_iter()
            .zip(&local)
        {
            let stored = app.services.blobs.read(key).await.unwrap();
            assert_eq!(std::str::from_utf8(&stored).unwrap(), expected);
        }
        assert_eq!(row.seed, "7");
        assert_eq!(row.base_model.as_deref(), Some("hone-demo"));
        let stats: serde_json::Value = serde_json::from_str(row.stats.as_deref().unwrap()).unwrap();
        assert_eq!(stats["unit"], "tokens");
        assert_eq!(stats["length"]["count"], 20);

        // The detail page and the split downloads.
        let detail = c.call("dataset", &[("id", &row.id.to_string())]).await;
        assert_eq!(detail.status, StatusCode::OK, "{}", detail.body);
        let detail = detail.json();
        assert_eq!(detail["dataset"]["name"], "Support");
        assert_eq!(detail["split_sha256"][0], row.train_sha256.as_str());
        assert_eq!(
            detail["finding_counts"][0],
            serde_json::json!(["invalid_json", 1])
        );
        assert_eq!(detail["stats"]["length"]["count"], 20);
        let train = c
            .get(&format!("/api/datasets/{}/train.jsonl", row.id))
            .await;
        assert_eq!(train.status, StatusCode::OK);
        assert_eq!(train.body, local[0]);
        assert_eq!(
            c.get(&format!("/api/datasets/{}/secrets.txt", row.id))
                .await
                .status,
            StatusCode::NOT_FOUND
        );
        let mut outsider = Client::new(&app);
        outsider.login("outsider", PASSWORD).await;
        assert_eq!(
            outsider
                .get(&format!("/api/datasets/{}/train.jsonl", row.id))
                .await
                .status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            outsider
                .call("dataset", &[("id", &row.id.to_string())])
                .await
                .status,
            StatusCode::NOT_FOUND
        );
        let mut anonymous = Client::new(&app);
        assert_eq!(
            anonymous
                .get(&format!("/api/datasets/{}/train.jsonl", row.id))
                .await
                .status,
            StatusCode::UNAUTHORIZED
        );

        let page = c
            .call("project", &[("id", &w.alpha_project.to_string())])
            .await
            .json();
        assert_eq!(page["datasets"][0]["name"], "Support");
        assert_eq!(page["datasets"][0]["source_name"], "support.jsonl");
        assert_eq!(page["project"]["files"][0]["name"], "support.jsonl");
    })
    .await;
}

#[tokio::test]
async fn only_writers_of_the_team_save_datasets_and_bad_settings_are_named() {
    let app = spawn_app("sqlite", 1024 * 1024).await;
    let w = world(&app).await;
    let q = "name=X&seed=1&ratios=80,10,10&drop_rejected=true&expect=16,2,2";
    for (who, want) in [("reviewer", 403), ("outsider", 404)] {
        let mut c = Client::new(&app);
        c.login(who, PASSWORD).await;
        assert_eq!(
            post(&mut c, w.alpha_project, q, sample())
                .await
                .status
                .as_u16(),
            want,
            "{who}"
        );
    }
    let mut c = Client::new(&app);
    c.login("expert", PASSWORD).await;
    let bad = post(
        &mut c,
        w.alpha_project,
        "name=X&seed=1&ratios=80,10,20&expect=1,1,1",
        sample(),
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bad.json()["message"]
            .as_str()
            .unwrap()
            .contains("add up to 110"),
        "{}",
        bad.body
    );
    let seed = post(
        &mut c,
        w.alpha_project,
        "name=X&seed=-1&ratios=80,10,10&expect=1,1,1",
        sample(),
    )
    .await;
    assert!(
        seed.json()["message"].as_str().unwrap().contains("seed"),
        "{}",
        seed.body
    );
    let empty = post(
        &mut c,
        w.alpha_project,
        "name=X&seed=1&ratios=80,10,10&expect=0,0,0",
        b"\n\n".to_vec(),
    )
    .await;
    assert_eq!(empty.status, StatusCode::ACCEPTED, "{}", empty.body);
    app.services.check_pending_datasets().await.unwrap();
    let page = c
        .call("dataset", &[("id", &empty.json()["id"].to_string())])
        .await
        .json();
    assert_eq!(page["refusal"]["code"], "no_examples", "{page}");
}

#[tokio::test]
async fn checks_run_a_few_at_a_time_and_the_rest_wait_their_turn() {
    on_each_db(|app| async move {
        let w = world(&app).await;
        let s = app.services.clone();
        let mut c = Client::new(&app);
        c.login("expert", PASSWORD).await;
        let bytes = good_sample();
        let [a, b, t] = browser_counts(&bytes, 42);
        let q = format!("name=Queued&seed=42&ratios=80,10,10&expect={a},{b},{t}");
        // Every checker busy (the test holds the one permit).
        let busy = s.dataset_checks.clone().acquire_owned().await.unwrap();
        let mut ids = Vec::new();
        for _ in 0..3 {
            let r = post(&mut c, w.alpha_project, &q, bytes.clone()).await;
            assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
            ids.push(r.json()["id"].as_i64().unwrap());
        }
        assert!(s.claim_waiting_checks().await.unwrap().is_empty());
        let states = |page: &serde_json::Value| -> Vec<(String, serde_json::Value)> {
            // Newest first on the page: reversed to the order of saving.
            let mut v: Vec<_> = page["datasets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| (d["state"].as_str().unwrap().to_owned(), d["ahead"].clone()))
                .collect();
            v.reverse();
            v
        };
        let project_id = w.alpha_project.to_string();
        let page = c.call("project", &[("id", &project_id)]).await.json();
        assert_eq!(
            states(&page),
            vec![
                ("waiting".into(), 0.into()),
                ("waiting".into(), 1.into()),
                ("waiting".into(), 2.into()),
            ]
        );
        // One checker frees up: the oldest save is taken, the others wait.
        drop(busy);
        let mut taken = s.claim_waiting_checks().await.unwrap();
        assert_eq!(taken.iter().map(|c| c.id).collect::<Vec<_>>(), [ids[0]]);
        let page = c.call("project", &[("id", &project_id)]).await.json();
        assert_eq!(
            states(&page),
            vec![
                ("checking".into(), serde_json::Value::Null),
                ("waiting".into(), 0.into()),
                ("waiting".into(), 1.into()),
            ]
        );
        // No permit while it runs.
        assert!(s.claim_waiting_checks().await.unwrap().is_empty());
        s.run_claimed(taken.pop().unwrap()).await;
        assert_eq!(s.check_pending_datasets().await.unwrap(), 2);
        let page = c.call("project", &[("id", &project_id)]).await.json();
        assert_eq!(
            states(&page),
            vec![("ready".into(), serde_json::Value::Null); 3]
        );
        for id in ids {
            let r = c.get(&format!("/api/datasets/{id}/train.jsonl")).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        }
    })
    .await;
}

#[tokio::test]
async fn a_check_a_stop_interrupted_runs_again_at_start() {
    let app = spawn_app("sqlite", 1024 * 1024).await;
    let w = world(&app).await;
    let s = app.services.clone();
    let mut c = Client::new(&app);
    c.login("expert", PASSWORD).await;
    let bytes = good_sample();
    let [a, b, t] = browser_counts(&bytes, 42);
    let r = post(
        &mut c,
        w.alpha_project,
        &format!("name=Again&seed=42&ratios=80,10,10&expect={a},{b},{t}"),
        bytes,
    )
    .await;
    let id = r.json()["id"].as_i64().unwrap();
    // A checker took it, and the server stopped before it finished.
    dataset_version::Entity::update_many()
        .col_expr(
            dataset_version::Column::CheckStartedAt,
            sea_orm::sea_query::Expr::value(1_i64),
        )
        .exec(&s.db)
        .await
        .unwrap();
    let page = c.call("dataset", &[("id", &id.to_string())]).await.json();
    assert_eq!(page["dataset"]["state"], "checking");
    // Taken: not checked again while it is someone's…
    assert_eq!(s.check_pending_datasets().await.unwrap(), 0);
    // …until the next start puts it back.
    assert_eq!(s.requeue_interrupted_checks().await.unwrap(), 1);
    assert_eq!(s.check_pending_datasets().await.unwrap(), 1);
    let page = c.call("dataset", &[("id", &id.to_string())]).await.json();
    assert_eq!(page["dataset"]["state"], "ready", "{page}");
    assert_eq!(page["dataset"]["counts"], serde_json::json!([a, b, t]));
}

/// A model folder whose context is `context` tokens, made from the demo
/// model's tokenizer.
fn install_model(app: &TestApp, name: &str, context: u32) {
    let dir = app.services.config.models_dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let demo = models::tokenizer_files(&dir, models::DEMO).unwrap();
    std::fs::write(dir.join("tokenizer.json"), demo.tokenizer).unwrap();
    std::fs::write(
        dir.join("tokenizer_config.json"),
        demo.tokenizer_config.unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("config.json"),
        format!("{{\"model_type\": \"llama\", \"max_position_embeddings\": {context}}}"),
    )
    .unwrap();
}

#[tokio::test]
async fn tokens_are_counted_with_the_chosen_models_tokenizer_and_context() {
    let app = spawn_app("sqlite", 1024 * 1024).await;
    let w = world(&app).await;
    install_model(&app, "tiny-context", 24);
    let mut anonymous = Client::new(&app);
    assert_eq!(
        anonymous
            .get("/api/models/hone-demo/tokenizer")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let mut c = Client::new(&app);
    c.login("reviewer", PASSWORD).await;
    let demo = c.get("/api/models/hone-demo/tokenizer").await;
    assert_eq!(demo.status, StatusCode::OK, "{}", demo.body);
    assert_eq!(demo.json()["context_length"], 2048);
    assert!(demo.json()["tokenizer"]
        .as_str()
        .unwrap()
        .contains("\"BPE\""));
    let tiny = c.get("/api/models/tiny-context/tokenizer").await.json();
    assert_eq!(tiny["context_length"], 24);
    for missing in [
        "/api/models/nope/tokenizer",
        "/api/models/..%2Fetc/tokenizer",
    ] {
        assert_eq!(
            c.get(missing).await.status,
            StatusCode::NOT_FOUND,
            "{missing}"
        );
    }
    let page = c
        .call("project", &[("id", &w.alpha_project.to_string())])
        .await
        .json();
    assert_eq!(page["models"][0]["name"], "hone-demo");
    assert_eq!(page["models"][1]["name"], "tiny-context");

    // One example is longer than 24 tokens with this model's chat template.
    let mut file = String::new();
    for i in 0..10 {
        file.push_str(&format!("{{\"messages\":[{{\"role\":\"user\",\"content\":\"Q{i}\"}},{{\"role\":\"assistant\",\"content\":\"A{i}\"}}]}}\n"));
    }
    file.push_str("{\"messages\":[{\"role\":\"user\",\"content\":\"Please tell me everything about the history of the quick brown fox\"},{\"role\":\"assistant\",\"content\":\"No.\"}]}\n");
    let mut c = Client::new(&app);
    c.login("expert", PASSWORD).await;
    let refused = post(
        &mut c,
        w.alpha_project,
        "name=T&seed=1&ratios=80,10,10&expect=8,1,1&model=tiny-context",
        file.clone().into_bytes(),
    )
    .await;
    assert_eq!(refused.status, StatusCode::ACCEPTED, "{}", refused.body);
    app.services.check_pending_datasets().await.unwrap();
    let refused = c
        .call("dataset", &[("id", &refused.json()["id"].to_string())])
        .await
        .json();
    assert_eq!(refused["refusal"]["findings"][0]["code"], "too_long");
    assert_eq!(refused["refusal"]["findings"][0]["line"], 11);
    // With the demo model (2048 tokens) the same file has no errors.
    let [a, b, t] = browser_counts(file.as_bytes(), 1);
    let saved = post(
        &mut c,
        w.alpha_project,
        &format!("name=T&seed=1&ratios=80,10,10&expect={a},{b},{t}&model=hone-demo"),
        file.clone().into_bytes(),
    )
    .await;
    assert_eq!(saved.status, StatusCode::ACCEPTED, "{}", saved.body);
    assert_eq!(saved.json()["base_model"], "hone-demo");
    app.services.check_pending_datasets().await.unwrap();
    let saved = c
        .call("dataset", &[("id", &saved.json()["id"].to_string())])
        .await
        .json();
    assert_eq!(saved["dataset"]["state"], "ready", "{saved}");
    let unknown = post(
        &mut c,
        w.alpha_project,
        "name=T&seed=1&ratios=80,10,10&expect=8,1,1&model=nope",
        file.into_bytes(),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(unknown.json()["field"], "model", "{}", unknown.body);
}
