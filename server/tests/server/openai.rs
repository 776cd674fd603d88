//! The OpenAI-compatible API through the router: files and their checks,
//! jobs waiting on them, OpenAI's shapes and error body, and every bad
//! input the issue lists. (The official `openai` client drives a real
//! server in `e2e/tests/openai.rs`.)

use crate::common::{on_each_db, world, TestApp};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use hone_server::entity::{api_key, dataset_version, job, user};
use hone_server::openai::auth::new_secret;
use http_body_util::BodyExt;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use serde_json::{json, Value};
use tower::ServiceExt;

pub struct Answer {
    pub status: StatusCode,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// OpenAI's error body: its `code` and `param`.
    fn error(&self) -> (String, Option<String>) {
        let e = &self.json()["error"];
        assert!(
            e["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{}",
            self.body
        );
        assert!(e["type"].is_string(), "{}", self.body);
        (
            e["code"].as_str().unwrap_or_default().to_owned(),
            e["param"].as_str().map(str::to_owned),
        )
    }
}

/// A key for `username` in `project`, made as the keys page does.
pub async fn key_for(app: &TestApp, username: &str, project: i64) -> (i64, String) {
    let u = user::Entity::find()
        .filter(user::Column::Username.eq(username))
        .one(&app.services.db)
        .await
        .unwrap()
        .unwrap();
    let secret = new_secret();
    let row = api_key::ActiveModel {
        user_id: Set(u.id),
        project_id: Set(project),
        name: Set("test".into()),
        prefix: Set(secret.prefix),
        secret_hash: Set(secret.hash),
        created_at: Set(0),
        ..Default::default()
    }
    .insert(&app.services.db)
    .await
    .unwrap();
    (row.id, secret.key)
}

pub async fn send(
    app: &TestApp,
    key: Option<&str>,
    req: axum::http::request::Builder,
    body: Body,
) -> Answer {
    let mut req = req.header(header::HOST, "localhost");
    if let Some(k) = key {
        req = req.header(header::AUTHORIZATION, format!("Bearer {k}"));
    }
    let res = app
        .router
        .clone()
        .oneshot(req.body(body).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

pub async fn get(app: &TestApp, key: &str, path: &str) -> Answer {
    send(app, Some(key), Request::get(path), Body::empty()).await
}

pub async fn post_json(app: &TestApp, key: &str, path: &str, body: Value) -> Answer {
    send(
        app,
        Some(key),
        Request::post(path).header(header::CONTENT_TYPE, "application/json"),
        Body::from(body.to_string()),
    )
    .await
}

const BOUNDARY: &str = "hone-test-boundary";

pub fn multipart(purpose: &str, name: &str, content: &[u8]) -> Vec<u8> {
    let mut b = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n{purpose}\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    b.extend_from_slice(content);
    b.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    b
}

pub async fn upload(app: &TestApp, key: &str, purpose: &str, content: &[u8]) -> Answer {
    let body = multipart(purpose, "train.jsonl", content);
    send(
        app,
        Some(key),
        Request::post("/v1/files")
            .header(
                header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .header(header::CONTENT_LENGTH, body.len()),
        Body::from(body),
    )
    .await
}

pub fn examples(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| format!("{{\"messages\":[{{\"role\":\"user\",\"content\":\"What is {i} plus one?\"}},{{\"role\":\"assistant\",\"content\":\"It is {}.\"}}]}}\n", i + 1))
        .collect::<String>()
        .into_bytes()
}

/// Line 2 is not JSON; line 3 has no answer.
pub fn broken() -> Vec<u8> {
    let mut b = examples(1);
    b.extend_from_slice(b"{not json\n");
    b.extend_from_slice(b"{\"messages\":[{\"role\":\"user\",\"content\":\"Hello?\"}]}\n");
    b
}

pub fn job_request(file: &str) -> Value {
    json!({
        "training_file": file,
        "model": "hone-demo",
        "seed": 7,
        "suffix": "arith",
        "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": "auto"}}},
        "hone": {"lora_r": 4},
    })
}

#[tokio::test]
async fn files_are_checked_off_the_request_and_become_dataset_versions() {
    on_each_db(|app| async move {
        let w = world(&app).await;
        let (_, key) = key_for(&app, "expert", w.alpha_project).await;
        let up = upload(&app, &key, "fine-tune", &examples(30)).await;
        assert_eq!(up.status, StatusCode::OK, "{}", up.body);
        let f = up.json();
        assert_eq!(f["object"], "file");
        assert_eq!(f["status"], "uploaded");
        assert_eq!(f["bytes"], examples(30).len());
        let id = f["id"].as_str().unwrap().to_owned();
        assert!(id.starts_with("file-"));

        let bad = upload(&app, &key, "fine-tune", &broken()).await;
        let bad_id = bad.json()["id"].as_str().unwrap().to_owned();
        assert_eq!(app.services.check_pending_files().await.unwrap(), 2);

        let f = get(&app, &key, &format!("/v1/files/{id}")).await.json();
        assert_eq!(f["status"], "processed", "{f}");
        // A dataset version of the key's project, like the browser's.
        let versions = dataset_version::Entity::find()
            .filter(dataset_version::Column::ProjectId.eq(w.alpha_project))
            .all(&app.services.db)
            .await
            .unwrap();
        assert_eq!(versions.len(), 1);
        assert_eq!(versions[0].examples, 30);
        assert_eq!(versions[0].name, "train");

        let e = get(&app, &key, &format!("/v1/files/{bad_id}")).await.json();
        assert_eq!(e["status"], "error");
        let details = e["status_details"].as_str().unwrap();
        assert!(details.contains("Line 2"), "{details}");
        assert!(details.contains("Line 3"), "{details}");

        let content = get(&app, &key, &format!("/v1/files/{id}/content")).await;
        assert_eq!(content.body.as_bytes(), examples(30));

        // Pagination: newest first, `after` a file id; an unknown cursor
        // is an empty page.
        let page = get(&app, &key, "/v1/files?limit=1").await.json();
        assert_eq!(page["data"][0]["id"], bad_id.as_str());
        assert_eq!(page["has_more"], true);
        let page = get(&app, &key, &format!("/v1/files?limit=1&after={bad_id}"))
            .await
            .json();
        assert_eq!(page["data"][0]["id"], id.as_str());
        assert_eq!(page["has_more"], false);
        let page = get(&app, &key, "/v1/files?after=file-999999").await.json();
        assert_eq!(page["data"], json!([]));

        let gone = send(
            &app,
            Some(&key),
            Request::delete(format!("/v1/files/{bad_id}")),
            Body::empty(),
        )
        .await;
        assert_eq!(gone.json()["deleted"], true, "{}", gone.body);
        let again = get(&app, &key, &format!("/v1/files/{bad_id}")).await;
        assert_eq!(again.status, StatusCode::NOT_FOUND);
        assert_eq!(again.error().0, "not_found");
    })
    .await;
}

#[tokio::test]
async fn a_job_waits_for_its_file_then_trains_on_the_split_it_asked_for() {
    on_each_db(|app| async move {
        let w = world(&app).await;
        let (_, key) = key_for(&app, "expert", w.alpha_project).await;
        let file = upload(&app, &key, "fine-tune", &examples(40)).await.json()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        // Created before the file is checked: it waits.
        let made = post_json(&app, &key, "/v1/fine_tuning/jobs", job_request(&file)).await;
        assert_eq!(made.status, StatusCode::OK, "{}", made.body);
        let j = made.json();
        assert_eq!(j["object"], "fine_tuning.job");
        assert_eq!(j["status"], "validating_files");
        assert_eq!(j["training_file"], file.as_str());
        assert_eq!(j["fine_tuned_model"], Value::Null);
        let id = j["id"].as_str().unwrap().to_owned();
        app.services.check_pending_files().await.unwrap();

        let j = get(&app, &key, &format!("/v1/fine_tuning/jobs/{id}"))
            .await
            .json();
        assert_eq!(j["status"], "queued", "{j}");
        assert_eq!(j["seed"], 7);
        assert_eq!(j["hyperparameters"]["n_epochs"], 2);
        assert_eq!(j["hyperparameters"]["batch_size"], 4);
        assert_eq!(j["hyperparameters"]["learning_rate_multiplier"], 1.0);
        assert_eq!(j["hone"]["settings"]["lora_r"], 4);
        assert_eq!(j["hone"]["settings"]["seed"], 7);
        // Its own split: seed 7, 80/10/10, beside the file's first version.
        let row = job::Entity::find_by_id(hone_server::openai::parse_id(&id, "ftjob").unwrap())
            .one(&app.services.db)
            .await
            .unwrap()
            .unwrap();
        let v = dataset_version::Entity::find_by_id(row.dataset_version_id.unwrap())
            .one(&app.services.db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((v.seed.as_str(), v.ratios.as_str()), ("7", "80,10,10"));
        assert_eq!(v.train_count + v.validation_count + v.test_count, 40);
        assert!(row
            .fine_tuned_model
            .unwrap()
            .starts_with("ft:hone-demo:alpha:arith:ftjob-"));

        // Events: OpenAI's objects, newest first.
        let ev = get(&app, &key, &format!("/v1/fine_tuning/jobs/{id}/events"))
            .await
            .json();
        let messages: Vec<&str> = ev["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["message"].as_str().unwrap())
            .collect();
        assert_eq!(messages, ["Job queued.", "Validating training file."]);
        assert_eq!(ev["data"][0]["object"], "fine_tuning.job.event");
        assert_eq!(ev["data"][0]["level"], "info");
        let after = ev["data"][0]["id"].as_str().unwrap();
        let older = get(
            &app,
            &key,
            &format!("/v1/fine_tuning/jobs/{id}/events?after={after}"),
        )
        .await
        .json();
        assert_eq!(older["data"].as_array().unwrap().len(), 1);

        // A validation file is used whole; the training file gives 90/0/10.
        let val = upload(&app, &key, "fine-tune", &examples(5)).await.json()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        app.services.check_pending_files().await.unwrap();
        let mut r = job_request(&file);
        r["validation_file"] = json!(val);
        let j = post_json(&app, &key, "/v1/fine_tuning/jobs", r)
            .await
            .json();
        // Answered at once; readied off the request.
        assert_eq!(j["status"], "validating_files", "{j}");
        app.services.ready_waiting_api_jobs().await.unwrap();
        let path = format!("/v1/fine_tuning/jobs/{}", j["id"].as_str().unwrap());
        let j = get(&app, &key, &path).await.json();
        assert_eq!(j["status"], "queued", "{j}");
        assert_eq!(j["validation_file"], val.as_str());
        let jid = hone_server::openai::parse_id(j["id"].as_str().unwrap(), "ftjob").unwrap();
        let row = job::Entity::find_by_id(jid)
            .one(&app.services.db)
            .await
            .unwrap()
            .unwrap();
        let v = dataset_version::Entity::find_by_id(row.dataset_version_id.unwrap())
            .one(&app.services.db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((v.ratios.as_str(), v.validation_count), ("90,0,10", 0));
        let whole = dataset_version::Entity::find_by_id(row.validation_dataset_version_id.unwrap())
            .one(&app.services.db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((whole.ratios.as_str(), whole.train_count), ("100,0,0", 5));

        // The file is in use: it cannot be deleted; after a cancel it can.
        let refused = send(
            &app,
            Some(&key),
            Request::delete(format!("/v1/files/{file}")),
            Body::empty(),
        )
        .await;
        assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
        assert_eq!(refused.error().0, "file_in_use");
        let list = get(&app, &key, "/v1/fine_tuning/jobs").await.json();
        for j in list["data"].as_array().unwrap() {
            let c = post_json(
                &app,
                &key,
                &format!("/v1/fine_tuning/jobs/{}/cancel", j["id"].as_str().unwrap()),
                json!({}),
            )
            .await;
            assert_eq!(c.json()["status"], "cancelled", "{}", c.body);
        }
        let deleted = send(
            &app,
            Some(&key),
            Request::delete(format!("/v1/files/{file}")),
            Body::empty(),
        )
        .await;
        assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);
    })
    .await;
}

#[tokio::test]
async fn a_job_on_a_file_with_errors_fails_with_its_findings() {
    on_each_db(|app| async move {
        let w = world(&app).await;
        let (_, key) = key_for(&app, "expert", w.alpha_project).await;
        let file = upload(&app, &key, "fine-tune", &broken()).await.json()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let id = post_json(&app, &key, "/v1/fine_tuning/jobs", job_request(&file))
            .await
            .json()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        app.services.check_pending_files().await.unwrap();
        let j = get(&app, &key, &format!("/v1/fine_tuning/jobs/{id}"))
            .await
            .json();
        assert_eq!(j["status"], "failed", "{j}");
        assert_eq!(j["error"]["code"], "invalid_training_file");
        assert_eq!(j["error"]["param"], "training_file");
        let message = j["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("Line 2") && message.contains(&file),
            "{message}"
        );
        // A job made once the file is known to be bad fails as soon as
        // it is looked at (off the request).
        let id = post_json(&app, &key, "/v1/fine_tuning/jobs", job_request(&file))
            .await
            .json()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        app.services.ready_waiting_api_jobs().await.unwrap();
        let j = get(&app, &key, &format!("/v1/fine_tuning/jobs/{id}"))
            .await
            .json();
        assert_eq!(j["status"], "failed", "{j}");
    })
    .await;
}

#[tokio::test]
async fn bad_input_gets_openai_errors_never_a_500() {
    on_each_db(|app| async move {
        let w = world(&app).await;
        let (_, key) = key_for(&app, "expert", w.alpha_project).await;
        let file = upload(&app, &key, "fine-tune", &examples(10)).await.json()["id"]
            .as_str()
            .unwrap()
            .to_owned();

        let r = upload(&app, &key, "assistants", &examples(2)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert_eq!(r.error().1.as_deref(), Some("purpose"));
        assert!(r.body.contains("assistants"));

        let r = send(
            &app,
            Some(&key),
            Request::post("/v1/files")
                .header(header::CONTENT_TYPE, "multipart/form-data; boundary=x"),
            Body::from("this is not multipart"),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        r.error();
        let r = send(
            &app,
            Some(&key),
            Request::post("/v1/files"),
            Body::from("{}"),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);

        let mut q = job_request(&file);
        q["model"] = json!("gpt-4o-mini");
        let r = post_json(&app, &key, "/v1/fine_tuning/jobs", q).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
        assert_eq!(r.error(), ("model_not_found".into(), Some("model".into())));
        assert!(
            r.body.contains("hone-demo"),
            "lists the available: {}",
            r.body
        );

        for (hyper, param) in [
            (json!({"n_epochs": 0}), "n_epochs"),
            (json!({"n_epochs": 100000}), "n_epochs"),
            (json!({"batch_size": "big"}), "batch_size"),
            (
                json!({"learning_rate_multiplier": -1}),
                "learning_rate_multiplier",
            ),
        ] {
            let mut q = job_request(&file);
            q["method"]["supervised"]["hyperparameters"] = hyper.clone();
            let r = post_json(&app, &key, "/v1/fine_tuning/jobs", q).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{hyper}: {}", r.body);
            assert_eq!(
                r.error().1.unwrap(),
                format!("method.supervised.hyperparameters.{param}")
            );
        }
        let mut q = job_request(&file);
        q["hone"] = json!({"max_seq_length": 1});
        let r = post_json(&app, &key, "/v1/fine_tuning/jobs", q).await;
        assert_eq!(
            r.error().1.as_deref(),
            Some("hone.max_seq_length"),
            "{}",
            r.body
        );
        for (method, param) in [
            (json!("lora"), "method"),
            (json!({"type": 5}), "method.type"),
            (
                json!({"type": "supervised", "supervised": 1}),
                "method.supervised",
            ),
            (
                json!({"type": "supervised", "supervised": {"hyperparameters": "fast"}}),
                "method.supervised.hyperparameters",
            ),
        ] {
            let mut q = job_request(&file);
            q["method"] = method.clone();
            let r = post_json(&app, &key, "/v1/fine_tuning/jobs", q).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{method}: {}", r.body);
            assert_eq!(r.error().1.as_deref(), Some(param), "{method}: {}", r.body);
        }
        let mut q = job_request(&file);
        q["method"] = json!({"type": "dpo"});
        let r = post_json(&app, &key, "/v1/fine_tuning/jobs", q).await;
        assert_eq!(r.error().1.as_deref(), Some("method.type"), "{}", r.body);
        let mut q = job_request(&file);
        q["training_file"] = json!("file-424242");
        let r = post_json(&app, &key, "/v1/fine_tuning/jobs", q).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(r.error().1.as_deref(), Some("training_file"));

        for body in ["{not json", "[1,2]", ""] {
            let r = send(
                &app,
                Some(&key),
                Request::post("/v1/fine_tuning/jobs")
                    .header(header::CONTENT_TYPE, "application/json"),
                Body::from(body),
            )
            .await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body:?}: {}", r.body);
            assert_eq!(r.error().0, "invalid_json");
        }
        let r = get(&app, &key, "/v1/fine_tuning/jobs?after=ftjob-99999")
            .await
            .json();
        assert_eq!(r["data"], json!([]));
        let r = get(&app, &key, "/v1/fine_tuning/jobs?limit=0").await;
        assert_eq!(r.error().1.as_deref(), Some("limit"));
        let r = get(&app, &key, "/v1/fine_tuning/jobs/not-a-job").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        let r = get(&app, &key, "/v1/no/such/route").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        r.error();
    })
    .await;
}

#[tokio::test]
async fn a_file_over_the_upload_limit_is_413_in_openai_shape() {
    let app = crate::common::spawn_app("sqlite", 1024).await;
    let w = world(&app).await;
    let (_, key) = key_for(&app, "expert", w.alpha_project).await;
    let r = upload(&app, &key, "fine-tune", &examples(100)).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
    assert_eq!(r.error().0, "file_too_large");
    // Without a declared length the stream is cut off at the limit too.
    let body = multipart("fine-tune", "big.jsonl", &examples(100));
    let r = send(
        &app,
        Some(&key),
        Request::post("/v1/files").header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={BOUNDARY}"),
        ),
        Body::from_stream(futures::stream::iter(
            body.chunks(256)
                .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
                .collect::<Vec<_>>(),
        )),
    )
    .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
}

#[tokio::test]
async fn keys_are_checked_and_bound_to_their_project() {
    on_each_db(|app| async move {
        let w = world(&app).await;
        let (key_id, key) = key_for(&app, "expert", w.alpha_project).await;
        let (_, outsider) = key_for(&app, "outsider", w.beta_project).await;
        let (_, reviewer) = key_for(&app, "reviewer", w.alpha_project).await;
        let file = upload(&app, &key, "fine-tune", &examples(10)).await.json()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let job = post_json(&app, &key, "/v1/fine_tuning/jobs", job_request(&file))
            .await
            .json()["id"]
            .as_str()
            .unwrap()
            .to_owned();

        for k in [None, Some("sk-hone-made-up"), Some("not even a key")] {
            let r = send(&app, k, Request::get("/v1/models"), Body::empty()).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{k:?}");
            assert_eq!(r.error().0, "invalid_api_key");
        }
        // Another team's key: their ids do not exist for it.
        for path in [
            format!("/v1/fine_tuning/jobs/{job}"),
            format!("/v1/files/{file}"),
        ] {
            let r = get(&app, &outsider, &path).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {}", r.body);
        }
        assert_eq!(
            get(&app, &outsider, "/v1/fine_tuning/jobs").await.json()["data"],
            json!([])
        );
        // A reviewer reads but does not train.
        assert_eq!(
            get(&app, &reviewer, &format!("/v1/fine_tuning/jobs/{job}"))
                .await
                .status,
            StatusCode::OK
        );
        let r = post_json(&app, &reviewer, "/v1/fine_tuning/jobs", job_request(&file)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
        assert_eq!(r.error().0, "permission_denied");

        let models = get(&app, &key, "/v1/models").await.json();
        assert_eq!(models["data"][0]["id"], "hone-demo");

        // Revoked: 401 at once.
        api_key::Entity::update_many()
            .col_expr(
                api_key::Column::RevokedAt,
                sea_orm::sea_query::Expr::value(1),
            )
            .filter(api_key::Column::Id.eq(key_id))
            .exec(&app.services.db)
            .await
            .unwrap();
        let r = get(&app, &key, "/v1/models").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        // A disabled owner's keys stop working at once.
        user::Entity::update_many()
            .col_expr(user::Column::DisabledAt, sea_orm::sea_query::Expr::value(1))
            .filter(user::Column::Username.eq("reviewer"))
            .exec(&app.services.db)
            .await
            .unwrap();
        let r = get(&app, &reviewer, "/v1/models").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    })
    .await;
}

#[tokio::test]
async fn a_file_the_server_cannot_read_is_an_error_and_holds_up_nothing() {
    on_each_db(|app| async move {
        let w = world(&app).await;
        let (_, key) = key_for(&app, "expert", w.alpha_project).await;
        let u = user::Entity::find()
            .filter(user::Column::Username.eq("expert"))
            .one(&app.services.db)
            .await
            .unwrap()
            .unwrap();
        // A row whose blob is gone (a lost disk, a bad restore).
        let lost = hone_server::entity::file::ActiveModel {
            project_id: Set(w.alpha_project),
            name: Set("lost.jsonl".into()),
            size: Set(10),
            sha256: Set("0".repeat(64)),
            storage_key: Set("blobs/no-such-blob".into()),
            uploaded_by: Set(u.id),
            created_at: Set(0),
            purpose: Set(Some("fine-tune".into())),
            status: Set(Some("uploaded".into())),
            ..Default::default()
        }
        .insert(&app.services.db)
        .await
        .unwrap();
        let good = upload(&app, &key, "fine-tune", &examples(10)).await.json()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(app.services.check_pending_files().await.unwrap(), 2);
        let f = get(&app, &key, &format!("/v1/files/file-{}", lost.id))
            .await
            .json();
        assert_eq!(f["status"], "error", "{f}");
        assert!(f["status_details"]
            .as_str()
            .unwrap()
            .contains("could not check"));
        let f = get(&app, &key, &format!("/v1/files/{good}")).await.json();
        assert_eq!(f["status"], "processed", "{f}");
    })
    .await;
}
