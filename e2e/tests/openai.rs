//! Hone's OpenAI-compatible API (`/v1`) driven by the official `openai`
//! Python package: a real `hone serve` with a fresh data directory, the
//! accounts, projects and API keys made as an operator makes them (`hone
//! user create`, `hone api-key create`, the pages' server functions), then
//! `e2e/python/test_openai.py` under unittest against it.
//!
//! The Python interpreter is `HONE_PYTHON`: the virtual environment that
//! `scripts/setup --test` makes with `openai` from PyPI (`scripts/test`
//! exports it).

// Tests fail loudly: unwrapping is the point here; the Python suite's
// output (and its measured times) is printed for whoever runs it.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use hone_e2e::http::Api;
use hone_e2e::scenario::{final_state, login, untar};
use hone_e2e::{hone_binary, server_log, start_server_with, workspace_root};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The upload limit the server runs with (the 413 test sends more).
const MAX_UPLOAD: &str = "262144";

/// The Python suite's own waits end long before this.
const PYTHON_LIMIT: Duration = Duration::from_secs(20 * 60);

/// `hone api-key create` as a headless setup runs it; returns the key.
fn cli_key(data: &Path, user: &str, project: i64) -> String {
    let out = Command::new(hone_binary())
        .args(["api-key", "create", "--user", user, "--project"])
        .arg(project.to_string())
        .args(["--name", "python tests"])
        .env("HONE_DATA_DIR", data)
        .env_remove("DATABASE_URL")
        .env_remove("HONE_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "hone api-key create --user {user}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(
        key.starts_with("sk-hone-") && !key.contains(char::is_whitespace),
        "hone api-key create printed more than the key: {key:?}"
    );
    key
}

/// Signs in and makes a project in the user's (only) team; returns its id.
fn project(api: &mut Api, user: &str, name: &str) -> i64 {
    login(api, user);
    let team = api.call("dashboard", &[]).json()["teams"][0]["id"]
        .as_i64()
        .unwrap();
    let r = api.call(
        "create_project",
        &[("team_id", &team.to_string()), ("name", name)],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    r.json().as_i64().unwrap()
}

/// The status of `GET /v1{path}` with `key` (HTTP/1.0, one connection).
fn get_status(base: &str, path: &str, key: &str) -> (u16, String) {
    let addr = base.trim_start_matches("http://").trim_end_matches('/');
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /v1{path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad answer {text:?}"));
    (status, text)
}

#[test]
fn the_openai_python_client_drives_files_jobs_and_models() {
    let python = std::env::var("HONE_PYTHON").unwrap_or_else(|_| {
        panic!(
            "HONE_PYTHON is not set: run `scripts/setup --test` (it makes .venv with the `openai` \
             package from PyPI) and set HONE_PYTHON=$PWD/.venv/bin/python, or run scripts/test"
        )
    });
    let data = tempfile::tempdir().unwrap();
    hone_e2e::scenario::create_user_as(data.path(), "ada", "expert", "Ops");
    hone_e2e::scenario::create_user_as(data.path(), "rita", "reviewer", "Ops");
    hone_e2e::scenario::create_user_as(data.path(), "bob", "expert", "Lab");
    // API calls need no browser bundle. A running job learns of its
    // cancel at the worker's next lease renewal (a third of the lease, 10 s
    // by default): a short lease keeps the cancel tests quick.
    let (_server, url) = start_server_with(
        data.path(),
        &[
            ("HONE_SITE_ROOT", "/nonexistent-hone-site"),
            ("HONE_MAX_UPLOAD_BYTES", MAX_UPLOAD),
            ("HONE_JOB_LEASE_MS", "3000"),
        ],
    );

    let mut ada = Api::new(&url);
    let ops = project(&mut ada, "ada", "Arithmetic");
    let mut bob = Api::new(&url);
    let lab = project(&mut bob, "bob", "Lab work");

    let key = cli_key(data.path(), "ada", ops);
    let reader_key = cli_key(data.path(), "rita", ops);
    let other_team_key = cli_key(data.path(), "bob", lab);

    // A key made on the settings page, working, then revoked there.
    let r = ada.call(
        "create_api_key",
        &[("project_id", &ops.to_string()), ("name", "to revoke")],
    );
    assert_eq!(r.status, 200, "create_api_key: {}", r.body);
    let made = r.json();
    let revoked_key = made["key"].as_str().unwrap().to_owned();
    let (status, text) = get_status(&url, "/models", &revoked_key);
    assert_eq!(status, 200, "a new key refused: {text}");
    let r = ada.call(
        "revoke_api_key",
        &[("id", &made["id"].as_i64().unwrap().to_string())],
    );
    assert_eq!(r.status, 200, "revoke_api_key: {}", r.body);

    let started = Instant::now();
    let mut child = Command::new(&python)
        .args(["-m", "unittest", "-v", "test_openai.py"])
        .current_dir(workspace_root().join("e2e/python"))
        .env("HONE_API_BASE", format!("{url}/v1"))
        .env("HONE_API_KEY", &key)
        .env("HONE_API_KEY_READER", &reader_key)
        .env("HONE_API_KEY_OTHER_TEAM", &other_team_key)
        .env("HONE_API_KEY_REVOKED", &revoked_key)
        .env("HONE_MAX_UPLOAD_BYTES", MAX_UPLOAD)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        // Nothing of a developer's own OpenAI set-up leaks in.
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_ORG_ID")
        .env_remove("OPENAI_PROJECT_ID")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {python}: {e} (run scripts/setup --test)"));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).unwrap();
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).unwrap();
        s
    });
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(PYTHON_LIMIT) {
        Ok(status) => Some(status.unwrap()),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-s", "KILL", &pid.to_string()])
                .status();
            None
        }
    };
    let said = format!("{}{}", out.join().unwrap(), err.join().unwrap());
    println!("--- {python} -m unittest test_openai.py ---\n{said}");
    println!(
        "the OpenAI-client suite took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!(
            "the OpenAI-client suite failed ({s}); output above.\n--- server log (tail) ---\n{}",
            tail(&server_log(data.path()), 80)
        ),
        None => panic!("the OpenAI-client suite ran past {PYTHON_LIMIT:?} and was killed"),
    }

    // What the API made is the project's like anything made in the
    // browser: its checked uploads are dataset versions, its jobs are jobs.
    let page = ada.call("project", &[("id", &ops.to_string())]);
    assert_eq!(page.status, 200, "{}", page.body);
    let page = page.json();
    let sources: Vec<&str> = page["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["source_name"].as_str().unwrap())
        .collect();
    for name in ["good.jsonl", "train.jsonl"] {
        assert!(
            sources.contains(&name),
            "{name}, uploaded through the API, is no dataset version of the project: {sources:?}"
        );
    }
    let states: Vec<String> = page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["state"].to_string().to_lowercase())
        .collect();
    assert!(
        states.iter().any(|s| s.contains("succeeded")),
        "no succeeded job on the project page: {states:?}"
    );

    // No key ever reaches the log, not even the part after the prefix.
    let log = server_log(data.path());
    assert!(
        log.contains("job created through the API"),
        "the server log is not where it was expected"
    );
    for k in [&key, &reader_key, &other_team_key, &revoked_key] {
        assert!(
            !log.contains(&k["sk-hone-".len()..]),
            "an API key is in the server's log"
        );
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `GET /v1{path}`'s JSON body with `key`.
fn get_json(base: &str, path: &str, key: &str) -> serde_json::Value {
    let (status, text) = get_status(base, path, key);
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap()
}

/// A LoRA version of the demo model, approved by a reviewer, chatted with
/// through the official `openai` client (`e2e/python/test_chat.py`),
/// streaming and not: its greedy answer is `hone-train evaluate`'s for the
/// same prompt with the adapter as the version's download ships it; the
/// base model's is the engine's base answer; a version nobody approved is
/// not found; a stream the client drops is cancelled on the server.
#[test]
fn the_openai_python_client_chats_with_an_approved_version() {
    use hone_e2e::scenario::{create_user_as, launch, project_with_dataset, settings};
    let python = std::env::var("HONE_PYTHON")
        .unwrap_or_else(|_| panic!("HONE_PYTHON is not set: run `scripts/setup --test`"));
    let data = tempfile::tempdir().unwrap();
    create_user_as(data.path(), "ada", "expert", "Ops");
    create_user_as(data.path(), "rhea", "reviewer", "Ops");
    // A base whose chat template refuses system messages, as some
    // models' templates do (raise_exception).
    let models = data.path().join("models");
    let strict = models.join("strict-demo");
    std::fs::create_dir_all(&strict).unwrap();
    for f in std::fs::read_dir(workspace_root().join("models/hone-demo")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), strict.join(f.file_name())).unwrap();
    }
    let mut tc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(strict.join("tokenizer_config.json")).unwrap())
            .unwrap();
    let template = tc["chat_template"].as_str().unwrap().to_owned();
    tc["chat_template"] = serde_json::Value::String(format!(
        "{{%- for message in messages %}}{{%- if message['role'] == 'system' %}}{{{{ raise_exception('System messages are not supported by this model') }}}}{{%- endif %}}{{%- endfor %}}{template}"
    ));
    std::fs::write(strict.join("tokenizer_config.json"), tc.to_string()).unwrap();
    let models_dir = models.display().to_string();
    let (_server, url) = start_server_with(
        data.path(),
        &[
            ("HONE_MODELS_DIR", models_dir.as_str()),
            ("HONE_SITE_ROOT", "/nonexistent-hone-site"),
            ("HONE_JOB_LEASE_MS", "3000"),
            ("HONE_SERVE_QUEUE", "1"),
        ],
    );
    let mut ada = Api::new(&url);
    let dataset = project_with_dataset(&mut ada, data.path(), 30);
    let config = settings(
        &mut ada,
        dataset,
        serde_json::json!({"num_train_epochs": 3, "learning_rate": 0.02}),
    );
    let approved = launch(&mut ada, dataset, &config);
    let unapproved = launch(&mut ada, dataset, &config);
    assert_eq!(final_state(&mut ada, approved), "succeeded");
    assert_eq!(final_state(&mut ada, unapproved), "succeeded");
    let project = ada.call("job", &[("id", &approved.to_string())]).json()["project_id"]
        .as_i64()
        .unwrap();
    // Its version, evaluated, then approved by the reviewer.
    let deadline = Instant::now() + Duration::from_secs(120);
    let (number, eval) = loop {
        let page = ada.call("project", &[("id", &project.to_string())]).json();
        if let Some(v) = page["versions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["train_job"] == approved)
        {
            break (
                v["number"].as_u64().unwrap(),
                v["eval_job"].as_i64().unwrap(),
            );
        }
        assert!(Instant::now() < deadline, "no version: {page}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(final_state(&mut ada, eval), "succeeded");
    let version_page = |api: &mut Api| {
        api.call(
            "version",
            &[
                ("project_id", &project.to_string()),
                ("number", &number.to_string()),
            ],
        )
        .json()
    };
    let version = version_page(&mut ada)["version_id"].as_i64().unwrap();
    let mut rhea = Api::new(&url);
    login(&mut rhea, "rhea");
    let r = rhea.call(
        "decide",
        &[
            ("version_id", &version.to_string()),
            ("decision", "approved"),
            ("comment", "Fine."),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);

    // The adapter as its download ships it, and what the engine answers.
    let deadline = Instant::now() + Duration::from_secs(120);
    let href = loop {
        let page = version_page(&mut ada);
        if let Some(d) = page["publishing"]["downloads"]
            .as_array()
            .and_then(|d| d.iter().find(|d| d["format"] == "adapter"))
        {
            break d["href"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "no adapter download: {page}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let (status, tar) = ada.download(&href, None);
    assert_eq!(status, 200);
    let adapter = data.path().join("downloaded-adapter");
    std::fs::create_dir_all(&adapter).unwrap();
    for (path, bytes) in untar(&tar) {
        std::fs::write(adapter.join(path.rsplit('/').next().unwrap()), bytes).unwrap();
    }
    let test = data.path().join("ask.jsonl");
    std::fs::write(
        &test,
        "{\"messages\":[{\"role\":\"user\",\"content\":\"What is 3 plus one?\"},{\"role\":\"assistant\",\"content\":\"It is 4.\"}]}\n",
    )
    .unwrap();
    let run = Command::new(hone_e2e::train_binary())
        .args([
            "--device",
            "cpu",
            "evaluate",
            "--base",
            "--max-new-tokens",
            "12",
        ])
        .arg("--model")
        .arg(workspace_root().join("models/hone-demo"))
        .arg("--adapter")
        .arg(&adapter)
        .arg("--test")
        .arg(&test)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let expected = report["items"][0]["tuned"]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    let expected_base = report["items"][0]["base"]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    println!("the engine answers {expected:?} with the adapter, {expected_base:?} without");
    assert_ne!(expected, expected_base, "the adapter changes the answer");

    let key = cli_key(data.path(), "ada", project);
    let model_of = |id: i64| {
        get_json(&url, &format!("/fine_tuning/jobs/ftjob-{id}"), &key)["fine_tuned_model"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let out = Command::new(&python)
        .args(["-m", "unittest", "-v", "test_chat.py"])
        .current_dir(workspace_root().join("e2e/python"))
        .env("HONE_API_BASE", format!("{url}/v1"))
        .env("HONE_API_KEY", &key)
        .env("HONE_MODEL", model_of(approved))
        .env("HONE_UNAPPROVED_MODEL", model_of(unapproved))
        .env("HONE_EXPECTED", &expected)
        .env("HONE_EXPECTED_BASE", &expected_base)
        .env("HONE_STRICT_MODEL", "strict-demo")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("starting {python}: {e} (run scripts/setup --test)"));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("--- {python} -m unittest test_chat.py ---\n{said}");
    assert!(
        out.status.success(),
        "the chat suite failed; output above.\n--- server log (tail) ---\n{}",
        tail(&server_log(data.path()), 80)
    );
    assert!(
        server_log(data.path()).contains("generation cancelled"),
        "the dropped stream was not cancelled"
    );
}
