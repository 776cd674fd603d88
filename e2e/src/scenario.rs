//! What the job tests and the job benchmark all start from: an expert
//! account made with `hone user create`, a project with a saved dataset
//! version of small chat examples, and launching with the launch page's
//! defaults — through the same API the pages call.

use crate::hone_binary;
use crate::http::Api;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

pub const PASSWORD: &str = "a long passphrase";

/// `hone user create` (an expert in team "Ops"), before the server starts.
pub fn create_user(data: &Path, name: &str) {
    create_user_as(data, name, "expert", "Ops");
}

/// `hone user create` with a role and team, before the server starts.
pub fn create_user_as(data: &Path, name: &str, role: &str, team: &str) {
    create_user_with(data, name, role, team, &[]);
}

/// [`create_user_as`] with more environment (e.g. a `DATABASE_URL`).
pub fn create_user_with(data: &Path, name: &str, role: &str, team: &str, env: &[(&str, &str)]) {
    let mut child = Command::new(hone_binary())
        .args([
            "user",
            "create",
            "--username",
            name,
            "--role",
            role,
            "--team",
            team,
        ])
        .env("HONE_DATA_DIR", data)
        .env_remove("DATABASE_URL")
        .env_remove("HONE_CONFIG")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    assert!(child.wait().unwrap().success(), "hone user create {name}");
}

/// `n` chat examples in the OpenAI `messages` format, one per line.
pub fn chat_examples(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| format!("{{\"messages\":[{{\"role\":\"user\",\"content\":\"What is {i} plus one?\"}},{{\"role\":\"assistant\",\"content\":\"It is {}.\"}}]}}\n", i + 1))
        .collect::<String>()
        .into_bytes()
}

pub fn login(api: &mut Api, name: &str) {
    let r = api.call("login", &[("username", name), ("password", PASSWORD)]);
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Signs in as `ada`, makes a project and saves a dataset version of `n`
/// examples the way the browser does (split counts from the same code:
/// `hone dataset split`); returns its id.
pub fn project_with_dataset(api: &mut Api, data: &Path, n: usize) -> i64 {
    project_with_dataset_as(api, data, n, "ada")
}

/// [`project_with_dataset`] as `user`, in their first team.
pub fn project_with_dataset_as(api: &mut Api, data: &Path, n: usize, user: &str) -> i64 {
    login(api, user);
    let team = api.call("dashboard", &[]).json()["teams"][0]["id"]
        .as_i64()
        .unwrap();
    let project = api
        .call(
            "create_project",
            &[("team_id", &team.to_string()), ("name", "Arithmetic")],
        )
        .json()
        .as_i64()
        .unwrap();
    save_dataset(api, data, project, n, user)
}

/// Saves `n` examples as a dataset version of `project` through the
/// browser's route (split counts from `hone dataset split`), as `user`
/// (signed in on `api`); its id once the server's check made it ready.
pub fn save_dataset(api: &mut Api, data: &Path, project: i64, n: usize, user: &str) -> i64 {
    let file = data.join(format!("examples-{user}-{n}.jsonl"));
    std::fs::write(&file, chat_examples(n)).unwrap();
    let split = Command::new(hone_binary())
        .args(["dataset", "split", "--seed", "42", "--out"])
        .arg(data.join(format!("splits-{user}-{n}")))
        .arg(&file)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&split.stdout);
    let counts: Vec<&str> = said
        .split(',')
        .map(|p| p.split_whitespace().next().unwrap())
        .collect();
    let saved = api.post(
        &format!(
            "/api/projects/{project}/datasets?name=Arithmetic&seed=42&ratios=80,10,10&expect={},{},{}",
            counts[0], counts[1], counts[2]
        ),
        "X-File-Name: examples.jsonl\r\n",
        &chat_examples(n),
    );
    assert_eq!(saved.status, 202, "{}", saved.body);
    let id = saved.json()["id"].as_i64().unwrap();
    let page = checked(api, id);
    assert_eq!(page["dataset"]["state"], "ready", "{page}");
    id
}

/// The dataset page once the server's check of the version is done
/// (ready or refused), asking again every 50 ms for at most two minutes.
pub fn checked(api: &mut Api, dataset: i64) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let page = api.call("dataset", &[("id", &dataset.to_string())]);
        assert_eq!(page.status, 200, "{}", page.body);
        let page = page.json();
        let state = page["dataset"]["state"].as_str().unwrap_or_default();
        if !matches!(state, "waiting" | "checking") {
            return page;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "dataset {dataset} still {state} after two minutes"
        );
        // Polling the server's state: the check runs in its own task.
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The launch page's defaults with `changes`, as the page would send them.
pub fn settings(api: &mut Api, dataset: i64, changes: serde_json::Value) -> String {
    let page = api.call("launch_page", &[("dataset_id", &dataset.to_string())]);
    assert_eq!(page.status, 200, "{}", page.body);
    let mut config = page.json()["defaults"].clone();
    for (k, v) in changes.as_object().unwrap() {
        config[k] = v.clone();
    }
    config.to_string()
}

pub fn launch(api: &mut Api, dataset: i64, config: &str) -> i64 {
    let r = api.call(
        "launch_job",
        &[
            ("dataset_id", &dataset.to_string()),
            ("model", "hone-demo"),
            ("config", config),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    r.json().as_i64().unwrap()
}

/// A state event of a final state: the job's stream ends after it.
pub fn is_final(e: &serde_json::Value) -> bool {
    e["kind"] == "state"
        && matches!(
            e["state"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        )
}

/// Follows job `id`'s events to its end; its final state.
pub fn final_state(api: &mut Api, id: i64) -> String {
    let mut state = String::new();
    let status = api.events(&format!("/api/jobs/{id}/events"), |data| {
        let e: serde_json::Value = serde_json::from_str(data).unwrap();
        if is_final(&e) {
            state = e["state"].as_str().unwrap().to_owned();
            return false;
        }
        true
    });
    assert_eq!(status, 200);
    state
}

/// A ustar archive's files, as Hone's downloads write them: `(path,
/// bytes)` in order.
pub fn untar(mut b: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    while b.len() >= 512 && b[..512].iter().any(|x| *x != 0) {
        let field = |r: std::ops::Range<usize>| {
            String::from_utf8(b[r].iter().take_while(|x| **x != 0).copied().collect()).unwrap()
        };
        let (name, prefix) = (field(0..100), field(345..500));
        let size = usize::from_str_radix(field(124..135).trim(), 8).unwrap();
        let path = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        out.push((path, b[512..512 + size].to_vec()));
        b = &b[512 + size.div_ceil(512) * 512..];
    }
    out
}
