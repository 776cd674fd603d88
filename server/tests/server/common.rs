//! `spawn_app()`: a fresh database, storage directory and router per test.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use hone_app::api::Role;
use hone_server::config::Config;
use hone_server::state::Services;
use hone_server::storage::BlobStore;
use http_body_util::BodyExt;
use sea_orm::ConnectionTrait;
use std::sync::Arc;
use tower::ServiceExt;

pub struct TestApp {
    pub router: Router,
    pub services: Arc<Services>,
    pub db_name: &'static str,
    _dir: tempfile::TempDir,
}

/// The databases every test runs on.
pub fn databases() -> Vec<&'static str> {
    let mut dbs = vec!["sqlite"];
    if std::env::var("HONE_TEST_POSTGRES").is_ok_and(|v| !v.is_empty()) {
        dbs.push("postgres");
    }
    dbs
}

/// Runs `test` once per database, each on a fresh app.
pub async fn on_each_db<F, Fut>(test: F)
where
    F: Fn(TestApp) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for db in databases() {
        test(spawn_app(db, 1024 * 1024).await).await;
    }
}

pub async fn spawn_app(db: &'static str, max_upload_bytes: u64) -> TestApp {
    spawn_app_with(db, max_upload_bytes, |_| {}).await
}

/// A fresh app whose services `adjust` changes first (configuration, the
/// setup token).
pub async fn spawn_app_with(
    db: &'static str,
    max_upload_bytes: u64,
    adjust: impl FnOnce(&mut Services),
) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let database_url = match db {
        "sqlite" => None,
        _ => {
            let admin_url = std::env::var("HONE_TEST_POSTGRES").unwrap();
            let admin = sea_orm::Database::connect(admin_url.as_str())
                .await
                .expect("connecting to HONE_TEST_POSTGRES");
            let name = format!("hone_test_{}", uuid::Uuid::new_v4().simple());
            admin
                .execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .unwrap();
            let base = admin_url.rsplit_once('/').unwrap().0;
            Some(format!("{base}/{name}"))
        }
    };
    let config = Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        database_url: database_url.clone(),
        max_upload_bytes,
        session_hours: 1,
        public_url: "http://localhost".into(),
        site_root: dir.path().join("site"),
        models_dir: dir.path().join("models"),
        workers: Some(0),
        train_bin: "hone-train".into(),
        job_lease_ms: 30_000,
        session_idle_hours: 1,
        trusted_proxies: Vec::new(),
        header_timeout_ms: 30_000,
        request_timeout_secs: 60,
        upload_idle_secs: 30,
        max_connections: 4096,
        max_uploads: 32,
        dataset_checks: 1,
        keep_checkpoints: hone_server::config::KeepCheckpoints::BestLast,
        export_memory_limit: None,
        serve_queue: 64,
        chat_requests_per_minute: 600,
        chat_tokens_per_minute: 200_000,
        chat_max_tokens: 4096,
        devices: None,
    };
    let dbc = hone_server::db::connect(database_url.as_deref(), dir.path())
        .await
        .unwrap();
    let blobs = BlobStore::local(&dir.path().join("files")).unwrap();
    let mut services = Services::new(dbc, blobs, config);
    adjust(&mut services);
    let services = Arc::new(services);
    TestApp {
        router: hone_server::router(services.clone()),
        services,
        db_name: db,
        _dir: dir,
    }
}

#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub location: Option<String>,
    pub body: String,
    /// The body as sent (downloads).
    pub bytes: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// A browser-like client: keeps the session cookie between requests.
pub struct Client<'a> {
    pub app: &'a TestApp,
    pub cookie: Option<String>,
    /// The peer address the server sees (none: "unknown", as with
    /// `oneshot`).
    pub peer: Option<std::net::SocketAddr>,
}

impl<'a> Client<'a> {
    pub fn new(app: &'a TestApp) -> Self {
        Client {
            app,
            cookie: None,
            peer: None,
        }
    }

    pub async fn send(&mut self, req: axum::http::request::Builder, body: Body) -> Resp {
        let mut req = req.header(header::HOST, "localhost");
        if let Some(peer) = self.peer {
            req = req.extension(axum::extract::ConnectInfo(peer));
        }
        if let Some(c) = &self.cookie {
            req = req.header(header::COOKIE, c.clone());
        }
        let res = self
            .app
            .router
            .clone()
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        for value in res.headers().get_all(header::SET_COOKIE) {
            let value = value.to_str().unwrap();
            let pair = value.split(';').next().unwrap().trim().to_owned();
            if value.contains("Max-Age=0") || pair.ends_with('=') {
                self.cookie = None;
            } else {
                self.cookie = Some(pair);
            }
        }
        let status = res.status();
        let headers = res.headers().clone();
        let location = res
            .headers()
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        Resp {
            status,
            headers,
            location,
            body: String::from_utf8_lossy(&bytes).into_owned(),
            bytes: bytes.to_vec(),
        }
    }

    pub async fn get(&mut self, path: &str) -> Resp {
        self.send(
            Request::get(path).header(header::ACCEPT, "text/html"),
            Body::empty(),
        )
        .await
    }

    /// Calls a server function the way the hydrated page does.
    pub async fn call(&mut self, name: &str, form: &[(&str, &str)]) -> Resp {
        let body = form
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.send(
            Request::post(format!("/api/{name}"))
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::ACCEPT, "application/json")
                .header(header::ORIGIN, "http://localhost")
                .header("sec-fetch-site", "same-origin"),
            Body::from(body),
        )
        .await
    }

    pub async fn upload(&mut self, project_id: i64, name: &str, bytes: Vec<u8>) -> Resp {
        self.send(
            Request::post(format!("/api/projects/{project_id}/files"))
                .header("x-file-name", name)
                .header(header::CONTENT_LENGTH, bytes.len())
                .header("sec-fetch-site", "same-origin"),
            Body::from(bytes),
        )
        .await
    }

    pub async fn login(&mut self, username: &str, password: &str) -> Resp {
        self.call("login", &[("username", username), ("password", password)])
            .await
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub const PASSWORD: &str = "correct horse battery";

/// The world most tests start from: an admin and an expert and a reviewer in
/// team "Alpha", an expert in team "Beta", and one project in each team.
pub struct World {
    pub alpha_project: i64,
    pub beta_project: i64,
}

pub async fn world(app: &TestApp) -> World {
    let s = &app.services;
    let alpha = s.ensure_team("Alpha").await.unwrap();
    let beta = s.ensure_team("Beta").await.unwrap();
    s.insert_user("admin", PASSWORD, Role::Admin, alpha.id)
        .await
        .unwrap();
    s.insert_user("expert", PASSWORD, Role::Expert, alpha.id)
        .await
        .unwrap();
    s.insert_user("reviewer", PASSWORD, Role::Reviewer, alpha.id)
        .await
        .unwrap();
    s.insert_user("outsider", PASSWORD, Role::Expert, beta.id)
        .await
        .unwrap();
    let mut expert = Client::new(app);
    assert_eq!(
        expert.login("expert", PASSWORD).await.status,
        StatusCode::OK
    );
    let alpha_project = expert
        .call(
            "create_project",
            &[
                ("team_id", &alpha.id.to_string()),
                ("name", "Alpha support bot"),
            ],
        )
        .await;
    assert_eq!(
        alpha_project.status,
        StatusCode::OK,
        "{}",
        alpha_project.body
    );
    let mut outsider = Client::new(app);
    assert_eq!(
        outsider.login("outsider", PASSWORD).await.status,
        StatusCode::OK
    );
    let beta_project = outsider
        .call(
            "create_project",
            &[
                ("team_id", &beta.id.to_string()),
                ("name", "Beta secret plans"),
            ],
        )
        .await;
    assert_eq!(beta_project.status, StatusCode::OK, "{}", beta_project.body);
    World {
        alpha_project: alpha_project.json().as_i64().unwrap(),
        beta_project: beta_project.json().as_i64().unwrap(),
    }
}

/// `n` small chat examples in the OpenAI `messages` format.
pub fn chat_examples(n: usize) -> Vec<u8> {
    let mut s = String::new();
    for i in 0..n {
        s.push_str(&format!("{{\"messages\":[{{\"role\":\"user\",\"content\":\"What is {i} plus one?\"}},{{\"role\":\"assistant\",\"content\":\"It is {}.\"}}]}}\n", i + 1));
    }
    s.into_bytes()
}

/// Saves `bytes` as a dataset version of `project` through the real route,
/// as the browser does (demo tokenizer, seed 42, 80/10/10), signed in as
/// `who`; returns its id.
pub async fn save_dataset(app: &TestApp, who: &str, project: i64, bytes: Vec<u8>) -> i64 {
    let files = hone_server::models::tokenizer_files(
        &app.services.config.models_dir,
        hone_server::models::DEMO,
    )
    .unwrap();
    let opts = hone_dataset::Options {
        max_tokens: files.context_length,
        ..hone_dataset::Options::default()
    };
    let tokenizer = hone_server::models::chat_tokenizer(&files).unwrap();
    let report = hone_dataset::check_bytes(&bytes, opts, Some(&tokenizer));
    let [a, b, t] =
        hone_dataset::Report::split_counts(&report.plan(42, hone_dataset::Ratios::default()));
    let mut c = Client::new(app);
    assert_eq!(c.login(who, PASSWORD).await.status, StatusCode::OK);
    let res = c
        .send(
            Request::post(format!(
                "/api/projects/{project}/datasets?name=Support&seed=42&ratios=80,10,10&expect={a},{b},{t}"
            ))
            .header("x-file-name", "support.jsonl")
            .header("sec-fetch-site", "same-origin"),
            Body::from(bytes),
        )
        .await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.body);
    assert_eq!(res.json()["state"], "waiting", "{}", res.body);
    let id = res.json()["id"].as_i64().unwrap();
    app.services.check_pending_datasets().await.unwrap();
    use sea_orm::EntityTrait;
    let row = hone_server::entity::dataset_version::Entity::find_by_id(id)
        .one(&app.services.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row.state,
        hone_server::entity::dataset_version::DatasetState::Ready,
        "{:?}",
        row.refusal
    );
    id
}

/// Lets the sign-in throttle's waits run out, as time passing would.
pub async fn let_time_pass(app: &TestApp) {
    use hone_server::entity::login_throttle;
    use sea_orm::EntityTrait;
    login_throttle::Entity::update_many()
        .col_expr(
            login_throttle::Column::NotBeforeMs,
            sea_orm::sea_query::Expr::value(0),
        )
        .exec(&app.services.db)
        .await
        .unwrap();
}

/// Runs queued job `id` on a worker slot of its own and ends it with
/// `end`; a successful training job leaves two adapter files.
pub async fn run_to(app: &TestApp, id: i64, end: hone_server::jobs::queue::End) {
    use hone_server::entity::job_artifact;
    use hone_server::jobs::queue;
    use sea_orm::{ActiveModelTrait, Set};
    let db = &app.services.db;
    let me = format!("slot-{id}");
    assert!(queue::assign(db, id, &me, false).await.unwrap());
    let claimed = queue::claim(db, &me, "Test CPU", 60_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, id);
    let training = claimed.kind == hone_server::entity::job::JobKind::Train;
    if training && matches!(end, queue::End::Succeeded { .. }) {
        for (path, sha) in [
            ("adapter/adapter_config.json", "aa"),
            ("adapter/adapter_model.safetensors", "bb"),
        ] {
            job_artifact::ActiveModel {
                job_id: Set(id),
                path: Set(path.into()),
                size: Set(2),
                sha256: Set(format!("{sha}{id}")),
                storage_key: Set(format!("blobs/{sha}{id}")),
                ..Default::default()
            }
            .insert(db)
            .await
            .unwrap();
        }
    }
    assert!(queue::finish(db, id, &me, end).await.unwrap());
}

pub fn succeeded() -> hone_server::jobs::queue::End {
    hone_server::jobs::queue::End::Succeeded {
        outcome: r#"{"outcome":"succeeded","steps":3,"final_train_loss":1.0,"best_eval_loss":null,"files":[]}"#.into(),
        tokens_per_s: None,
    }
}

/// An evaluation report of three test examples (lines 1–3), each with a
/// base and a tuned answer, as `hone-train evaluate` writes one.
pub fn small_report() -> hone_protocol::evaluation::Report {
    use hone_protocol::evaluation::*;
    let iv = |v: f64| Interval {
        value: v,
        low: v - 0.1,
        high: v + 0.1,
    };
    let answer = |text: &str, right: bool| Answer {
        text: text.into(),
        loss: Some(1.0),
        exact_match: right,
        token_f1: if right { 1.0 } else { 0.0 },
        format_ok: None,
        fields: vec![],
    };
    Report {
        format: REPORT_FORMAT,
        seed: 1,
        resamples: 1000,
        examples: 3,
        answered: 3,
        max_new_tokens: None,
        notes: vec![],
        metrics: vec![MetricRow {
            metric: Metric::ExactMatch,
            examples: 3,
            tuned: iv(0.6),
            base: Some(iv(0.3)),
            difference: Some(iv(0.3)),
        }],
        fields: vec![],
        items: (1..=3)
            .map(|line| ExampleResult {
                line,
                prompt: format!("What is {line} plus one?"),
                reference: format!("It is {}.", line + 1),
                structure: Structure::Text,
                tuned: answer(&format!("It is {}.", line + 1), true),
                base: Some(answer("I do not know.", false)),
            })
            .collect(),
    }
}

/// A dataset of `project`, a training job on it launched by `launcher`
/// that succeeded, its version opened and its evaluation succeeded with
/// [`small_report`] stored as the engine stores it. Returns the version's
/// id, its number and the training job's id.
pub async fn evaluated_version(app: &TestApp, project: i64, launcher: &str) -> (i64, u32, i64) {
    use hone_server::entity::{job_artifact, model_version};
    use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
    let dataset = save_dataset(app, launcher, project, chat_examples(30)).await;
    let mut c = Client::new(app);
    assert_eq!(c.login(launcher, PASSWORD).await.status, StatusCode::OK);
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
    let job = r.json().as_i64().unwrap();
    run_to(app, job, succeeded()).await;
    app.services.open_versions().await.unwrap();
    let v = model_version::Entity::find()
        .filter(model_version::Column::TrainJobId.eq(job))
        .one(&app.services.db)
        .await
        .unwrap()
        .unwrap();
    let eval = v.eval_job_id.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&small_report()).unwrap()).unwrap();
    let stored = app.services.blobs.put_file(&path).await.unwrap();
    let db = &app.services.db;
    let me = format!("slot-{eval}");
    assert!(hone_server::jobs::queue::assign(db, eval, &me, false)
        .await
        .unwrap());
    hone_server::jobs::queue::claim(db, &me, "Test CPU", 60_000)
        .await
        .unwrap()
        .unwrap();
    job_artifact::ActiveModel {
        job_id: Set(eval),
        path: Set(hone_server::jobs::worker::REPORT_PATH.into()),
        size: Set(stored.size as i64),
        sha256: Set(stored.sha256),
        storage_key: Set(stored.key),
        ..Default::default()
    }
    .insert(db)
    .await
    .unwrap();
    assert!(hone_server::jobs::queue::finish(db, eval, &me, succeeded())
        .await
        .unwrap());
    // As the worker does once a job has ended.
    app.services.notify_job_end(job).await;
    app.services.notify_job_end(eval).await;
    (v.id, v.number as u32, job)
}
