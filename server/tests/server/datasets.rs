//! Dataset versions: the server re-checks and re-splits the uploaded file
//! with the same code as the browser, and refuses what does not agree.

use crate::common::*;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use hone_dataset::tokens::ChatTokenizer;
use hone_dataset::{check_bytes, Options, Ratios, SplitWriter};
use hone_server::entity::dataset_version;
use hone_server::models;
use sea_orm::{EntityTrait, PaginatorTrait};

fn sample() -> Vec<u8> {
    let mut s = String::new();
    for i in 0..20 {
        s.push_str(&format!("{{\"messages\":[{{\"role\":\"user\",\"content\":\"Question {i}\"}},{{\"role\":\"assistant\",\"content\":\"Answer {i}\"}}]}}\n"));
    }
    s.push_str("{\"messages\": [\n");
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

        let refused = post(
            &mut c,
            w.alpha_project,
            &format!("name=Support&seed=7&ratios=80,10,10&expect={expect}"),
            bytes.clone(),
        )
        .await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            refused.body
        );
        assert_eq!(refused.json()["code"], "dataset_errors");
        assert_eq!(refused.json()["findings"][0]["code"], "invalid_json");

        let mismatch = post(
            &mut c,
            w.alpha_project,
            "name=Support&seed=7&ratios=80,10,10&drop_rejected=true&expect=1,1,1",
            bytes.clone(),
        )
        .await;
        assert_eq!(mismatch.status, StatusCode::CONFLICT, "{}", mismatch.body);
        assert_eq!(
            dataset_version::Entity::find()
                .count(&app.services.db)
                .await
                .unwrap(),
            0
        );

        let saved = post(
            &mut c,
            w.alpha_project,
            &format!("name=Support&seed=7&ratios=80,10,10&drop_rejected=true&expect={expect}"),
            bytes.clone(),
        )
        .await;
        assert_eq!(saved.status, StatusCode::CREATED, "{}", saved.body);
        let d = saved.json();
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
        let row = dataset_version::Entity::find()
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
    assert_eq!(empty.json()["code"], "no_examples", "{}", empty.body);
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
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.body
    );
    assert_eq!(refused.json()["findings"][0]["code"], "too_long");
    assert_eq!(refused.json()["findings"][0]["line"], 11);
    // With the demo model (2048 tokens) the same file has no errors.
    let [a, b, t] = browser_counts(file.as_bytes(), 1);
    let saved = post(
        &mut c,
        w.alpha_project,
        &format!("name=T&seed=1&ratios=80,10,10&expect={a},{b},{t}&model=hone-demo"),
        file.clone().into_bytes(),
    )
    .await;
    assert_eq!(saved.status, StatusCode::CREATED, "{}", saved.body);
    assert_eq!(saved.json()["base_model"], "hone-demo");
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
