//! Training jobs end to end on the demo model, with the real `hone`,
//! `hone worker` and `hone-train` processes: a worker killed with -9 in the
//! middle of a run, and a server stopped (SIGTERM) and killed (-9) in the
//! middle of one — the job finishes by itself each time, resuming from its
//! last stored checkpoint, and the resumed run's losses equal an
//! uninterrupted run's.
//!
//! Waits are on events (the job's event stream, process exits), never on
//! time.

// Tests fail loudly: unwrapping is the point here.
#![allow(clippy::unwrap_used)]

use hone_e2e::http::Api;
use hone_e2e::scenario::{
    create_user, create_user_as, create_user_with, is_final, launch, login, project_with_dataset,
    project_with_dataset_as, settings,
};
use hone_e2e::{start_server_with, start_worker};
use std::collections::BTreeMap;

/// A short lease, so a lost worker's job is reclaimed within seconds.
const LEASE: (&str, &str) = ("HONE_JOB_LEASE_MS", "4000");

/// Follows the job's event stream until `until` says stop; returns the
/// events seen.
fn follow(
    api: &mut Api,
    job: i64,
    mut until: impl FnMut(&serde_json::Value) -> bool,
) -> Vec<serde_json::Value> {
    let mut seen = Vec::new();
    let status = api.events(&format!("/api/jobs/{job}/events"), |data| {
        let e: serde_json::Value = serde_json::from_str(data).unwrap();
        let stop = until(&e);
        seen.push(e);
        !stop
    });
    assert_eq!(status, 200);
    seen
}

fn is_step_at_least(e: &serde_json::Value, step: u64) -> bool {
    e["kind"] == "engine"
        && e["event"]["event"] == "step"
        && e["event"]["step"].as_u64() >= Some(step)
}

/// The job's page data (state, events, artifacts).
fn job(api: &mut Api, id: i64) -> serde_json::Value {
    let r = api.call("job", &[("id", &id.to_string())]);
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

/// Each step's training loss; a step run twice (after a resume) counts as
/// its last run.
fn losses(page: &serde_json::Value) -> BTreeMap<u64, f64> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "engine" && e["event"]["event"] == "step")
        .map(|e| {
            (
                e["event"]["step"].as_u64().unwrap(),
                e["event"]["loss"].as_f64().unwrap(),
            )
        })
        .collect()
}

fn engine_events<'a>(
    page: &'a serde_json::Value,
    kind: &'a str,
) -> impl Iterator<Item = &'a serde_json::Value> + 'a {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(move |e| e["kind"] == "engine" && e["event"]["event"] == kind)
        .map(|e| &e["event"])
}

fn assert_same_losses(resumed: &BTreeMap<u64, f64>, straight: &BTreeMap<u64, f64>) {
    assert_eq!(
        resumed.keys().collect::<Vec<_>>(),
        straight.keys().collect::<Vec<_>>()
    );
    for (step, a) in resumed {
        let b = straight[step];
        assert!(
            (a - b).abs() < 1e-5,
            "step {step}: {a} resumed vs {b} uninterrupted"
        );
    }
}

/// 18 examples a pass, 6 steps an epoch: a run of a few hundred steps.
const LONG: usize = 60;

#[test]
fn a_worker_killed_mid_run_loses_at_most_one_checkpoint_interval() {
    let data = tempfile::tempdir().unwrap();
    create_user(data.path(), "ada");
    // The server runs no workers itself: two `hone worker` processes do.
    let (_server, url) = start_server_with(data.path(), &[("HONE_WORKERS", "0"), LEASE]);
    let mut first = start_worker(data.path(), &[LEASE]);
    let mut api = Api::new(&url);
    let dataset = project_with_dataset(&mut api, data.path(), LONG);
    let config = settings(
        &mut api,
        dataset,
        serde_json::json!({"num_train_epochs": 30, "save_steps": 10, "eval_steps": 1000, "logging_steps": 1}),
    );
    let interrupted = launch(&mut api, dataset, &config);
    follow(&mut api, interrupted, |e| is_step_at_least(e, 25));
    // A second worker stands by; the first dies without a word.
    let _second = start_worker(data.path(), &[LEASE]);
    first.kill9();
    let seen = follow(&mut api, interrupted, is_final);
    assert_eq!(seen.last().unwrap()["state"], "succeeded", "{seen:?}");

    let page = job(&mut api, interrupted);
    // Checkpoints and resumes are named, not located on the worker.
    let here = data.path().display().to_string();
    assert!(!page.to_string().contains(&here), "a path in {page}");
    // Each resume (one for the kill; another only if a loaded machine
    // starved a worker past its lease) starts at most one `save_steps`
    // interval behind the highest step recorded before it.
    let events = page["events"].as_array().unwrap();
    let mut highest = 0;
    let mut resumes = Vec::new();
    for e in events.iter().filter(|e| e["kind"] == "engine") {
        let step = e["event"]["step"].as_u64().unwrap_or(0);
        match e["event"]["event"].as_str() {
            Some("step") => highest = highest.max(step),
            Some("resumed") => resumes.push((step, highest)),
            _ => {}
        }
    }
    assert!(!resumes.is_empty(), "the job never resumed");
    for (at, reached) in &resumes {
        assert!(
            reached - at <= 10,
            "resumed at {at} after reaching {reached}: more than one save_steps interval lost"
        );
    }
    let attempts: Vec<&str> = events
        .iter()
        .filter(|e| e["kind"] == "state" && e["state"] == "running")
        .map(|e| e["note"].as_str().unwrap())
        .collect();
    assert_eq!(attempts.len(), resumes.len() + 1, "{attempts:?}");
    assert!(attempts[1].contains("resuming"), "{attempts:?}");

    // The same settings without an interruption: the same losses.
    let straight = launch(&mut api, dataset, &config);
    let seen = follow(&mut api, straight, is_final);
    assert_eq!(seen.last().unwrap()["state"], "succeeded");
    let reference = job(&mut api, straight);
    assert_same_losses(&losses(&page), &losses(&reference));
    // Both left a PEFT adapter.
    for p in [&page, &reference] {
        let files: Vec<&str> = p["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["path"].as_str().unwrap())
            .collect();
        assert_eq!(
            files,
            [
                "adapter/adapter_config.json",
                "adapter/adapter_model.safetensors"
            ]
        );
    }
}

#[test]
fn a_server_stopped_or_killed_mid_run_resumes_the_job_when_it_is_back() {
    let data = tempfile::tempdir().unwrap();
    create_user(data.path(), "ada");
    let env = [LEASE];
    let (mut server, url) = start_server_with(data.path(), &env);
    let mut api = Api::new(&url);
    let dataset = project_with_dataset(&mut api, data.path(), LONG);
    let config = settings(
        &mut api,
        dataset,
        serde_json::json!({"num_train_epochs": 30, "save_steps": 10, "eval_steps": 1000}),
    );
    let id = launch(&mut api, dataset, &config);
    follow(&mut api, id, |e| is_step_at_least(e, 20));
    // SIGTERM: the run checkpoints, the job goes back to the queue, the
    // server exits cleanly.
    assert!(server.terminate(), "hone serve did not exit 0 on SIGTERM");
    let (mut server, url) = start_server_with(data.path(), &env);
    let mut api = Api::new(&url);
    login(&mut api, "ada");
    follow(&mut api, id, |e| is_step_at_least(e, 100));
    // kill -9: the lease runs out and the restarted server's worker takes
    // the job back.
    server.kill9();
    let (_server, url) = start_server_with(data.path(), &env);
    let mut api = Api::new(&url);
    login(&mut api, "ada");
    let seen = follow(&mut api, id, is_final);
    assert_eq!(seen.last().unwrap()["state"], "succeeded", "{seen:?}");
    let page = job(&mut api, id);
    let states: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "state")
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    // Stopped → queued → running again; killed → queued (the lease ran
    // out; the scheduler takes it back) → running again; then done. (A
    // worker starved past its lease on a loaded machine would add one more
    // queued → running and resume: allowed.)
    assert_eq!(
        states[..7],
        [
            "validating_files",
            "queued",
            "running",
            "queued",
            "running",
            "queued",
            "running"
        ],
        "{states:?}"
    );
    assert_eq!(states.last(), Some(&"succeeded"), "{states:?}");
    assert!(
        states[7..]
            .iter()
            .all(|s| matches!(*s, "queued" | "running" | "succeeded")),
        "{states:?}"
    );
    assert_eq!(
        engine_events(&page, "resumed").count(),
        states.iter().filter(|s| **s == "running").count() - 1
    );
    // The stop was graceful: it resumed exactly where it stopped.
    let straight = launch(&mut api, dataset, &config);
    follow(&mut api, straight, is_final);
    assert_same_losses(&losses(&page), &losses(&job(&mut api, straight)));
}

#[test]
fn bad_engine_lines_are_skipped_and_data_too_long_fails_as_the_users_input() {
    let data = tempfile::tempdir().unwrap();
    create_user(data.path(), "ada");
    // The real engine, behind a wrapper that first prints a line that is
    // not an event (as a crashing library's stray output would be).
    let wrapper = data.path().join("hone-train-noisy");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\ncase \" $* \" in *\" train \"*) echo 'warning: not an event {{' ;; esac\nexec '{}' \"$@\"\n",
            hone_e2e::train_binary().display()
        ),
    )
    .unwrap();
    let mut perms = std::fs::metadata(&wrapper).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&wrapper, perms).unwrap();
    let (_server, url) = start_server_with(
        data.path(),
        &[LEASE, ("HONE_TRAIN_BIN", wrapper.to_str().unwrap())],
    );
    let mut api = Api::new(&url);
    let dataset = project_with_dataset(&mut api, data.path(), 30);

    let defaults = settings(&mut api, dataset, serde_json::json!({}));
    let ok = launch(&mut api, dataset, &defaults);
    let seen = follow(&mut api, ok, is_final);
    assert_eq!(seen.last().unwrap()["state"], "succeeded", "{seen:?}");
    assert!(hone_e2e::server_log(data.path()).contains("malformed event line from the engine"));

    // Every example is longer than 4 tokens: the person's settings, said so.
    let short = settings(&mut api, dataset, serde_json::json!({"max_seq_length": 4}));
    let failed = launch(&mut api, dataset, &short);
    let seen = follow(&mut api, failed, is_final);
    assert_eq!(seen.last().unwrap()["state"], "failed");
    let page = job(&mut api, failed);
    let failure = &page["job"]["failure"];
    assert_eq!(failure["cause"], "user", "{failure}");
    let reason = failure["reason"].as_str().unwrap();
    let here = data.path().display().to_string();
    assert!(!page.to_string().contains(&here), "a path in {page}");
    assert!(
        reason.contains("longer than max_seq_length")
            && reason.contains("Raise max_seq_length to at least"),
        "{reason}"
    );
}

#[test]
fn a_full_fine_tune_leaves_a_hugging_face_folder() {
    let data = tempfile::tempdir().unwrap();
    create_user(data.path(), "ada");
    let (_server, url) = start_server_with(data.path(), &[LEASE]);
    let mut api = Api::new(&url);
    let dataset = project_with_dataset(&mut api, data.path(), 30);
    let config = settings(
        &mut api,
        dataset,
        serde_json::json!({"method": "full", "learning_rate": 2e-5, "num_train_epochs": 1}),
    );
    let id = launch(&mut api, dataset, &config);
    let seen = follow(&mut api, id, is_final);
    assert_eq!(seen.last().unwrap()["state"], "succeeded", "{seen:?}");
    let page = job(&mut api, id);
    assert_eq!(page["job"]["method"], "full");
    let files: Vec<&str> = page["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["path"].as_str().unwrap())
        .collect();
    for f in [
        "model/config.json",
        "model/model.safetensors",
        "model/tokenizer.json",
    ] {
        assert!(files.contains(&f), "{f} missing from {files:?}");
    }
    // Its evaluation scores the tuned model itself against the base.
    let project = page["project_id"].as_i64().unwrap();
    let (number, eval) = version_of(&mut api, project, id);
    assert_eq!(number, 1);
    let seen = follow(&mut api, eval, is_final);
    assert_eq!(seen.last().unwrap()["state"], "succeeded", "{seen:?}");
}

/// The version training job `job` made and its evaluation job, once the
/// scheduler has opened it (asking the project page every 50 ms, for at
/// most two minutes: the version is written by the scheduler's round).
fn version_of(api: &mut Api, project: i64, job: i64) -> (u64, i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let page = api.call("project", &[("id", &project.to_string())]);
        assert_eq!(page.status, 200, "{}", page.body);
        let page = page.json();
        if let Some(v) = page["versions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["train_job"] == job)
        {
            return (
                v["number"].as_u64().unwrap(),
                v["eval_job"].as_i64().unwrap(),
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no version of job {job} after two minutes: {page}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A stored file's bytes: local storage keeps blobs by their SHA-256.
fn blob(data: &std::path::Path, sha256: &str) -> Vec<u8> {
    let mut stack = vec![data.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.ends_with(format!("blobs/{sha256}")) {
                return std::fs::read(p).unwrap();
            }
        }
    }
    panic!("no stored blob {sha256} under {}", data.display())
}

/// A LoRA run's model is evaluated by itself on the test split, on the
/// same queue and workers; the report the server stores is byte for byte
/// what `hone-train evaluate` writes for the same adapter, split and seed
/// (the server computes no metric of its own). Prints the evaluation's
/// time per test example.
#[test]
fn a_trained_model_is_evaluated_by_itself_and_the_report_is_the_engines() {
    let data = tempfile::tempdir().unwrap();
    create_user(data.path(), "ada");
    let (_server, url) = start_server_with(data.path(), &[LEASE]);
    let mut api = Api::new(&url);
    let dataset = project_with_dataset(&mut api, data.path(), 40);
    let config = settings(
        &mut api,
        dataset,
        serde_json::json!({"num_train_epochs": 2}),
    );
    let id = launch(&mut api, dataset, &config);
    let seen = follow(&mut api, id, is_final);
    assert_eq!(seen.last().unwrap()["state"], "succeeded", "{seen:?}");
    let trained = job(&mut api, id);
    let project = trained["project_id"].as_i64().unwrap();
    let (number, eval) = version_of(&mut api, project, id);
    assert_eq!(number, 1);

    let seen = follow(&mut api, eval, is_final);
    assert_eq!(seen.last().unwrap()["state"], "succeeded", "{seen:?}");
    let test_split = std::fs::read_to_string(data.path().join("splits-ada-40/test.jsonl")).unwrap();
    let examples = test_split.lines().filter(|l| !l.trim().is_empty()).count() as u64;
    assert!(examples > 0);
    let progress: Vec<(u64, u64)> = seen
        .iter()
        .filter(|e| e["kind"] == "engine" && e["event"]["event"] == "evaluating")
        .map(|e| {
            (
                e["event"]["done"].as_u64().unwrap(),
                e["event"]["total"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        progress,
        (1..=examples).map(|d| (d, examples)).collect::<Vec<_>>()
    );
    let ran = |state: &str| {
        seen.iter()
            .find(|e| e["kind"] == "state" && e["state"] == state)
            .unwrap()["at_ms"]
            .as_i64()
            .unwrap()
    };
    #[allow(clippy::print_stdout)]
    {
        println!(
            "evaluation of {examples} test examples (tuned and base): {} ms",
            ran("succeeded") - ran("running")
        );
    }
    let page = job(&mut api, eval);
    assert_eq!(page["job"]["evaluates"], id);
    let artifacts = page["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    assert_eq!(artifacts[0]["path"], "evaluation/report.json");
    let stored = blob(data.path(), artifacts[0]["sha256"].as_str().unwrap());

    // The engine, run by hand on the same adapter, split and seed.
    let here = tempfile::tempdir().unwrap();
    for a in trained["artifacts"].as_array().unwrap() {
        let path = here.path().join(a["path"].as_str().unwrap());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, blob(data.path(), a["sha256"].as_str().unwrap())).unwrap();
    }
    let report = here.path().join("report.json");
    let out = std::process::Command::new(hone_e2e::train_binary())
        .args(["--device", "cpu", "evaluate", "--model"])
        .arg(hone_e2e::workspace_root().join("models/hone-demo"))
        .arg("--adapter")
        .arg(here.path().join("adapter"))
        .arg("--base")
        .arg("--test")
        .arg(data.path().join("splits-ada-40/test.jsonl"))
        .args(["--seed", &id.to_string(), "--resamples", "1000", "--report"])
        .arg(&report)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let by_hand = std::fs::read(&report).unwrap();
    assert!(
        stored == by_hand,
        "the stored report differs from the engine's:\n{}\n---\n{}",
        String::from_utf8_lossy(&stored),
        String::from_utf8_lossy(&by_hand)
    );
    let r: serde_json::Value = serde_json::from_slice(&stored).unwrap();
    assert_eq!(r["items"].as_array().unwrap().len() as u64, examples);
    assert_eq!(r["metrics"][0]["metric"], "loss");
    assert!(r["metrics"][0]["difference"]["low"].is_number(), "{r}");
}

/// Two CPU slots, two teams guaranteed one each (the default): Ops runs
/// one job within its guarantee and borrows the idle slot for a second;
/// when Lab's job arrives the borrower checkpoints, goes back to the queue
/// and later resumes from there, losing at most one save interval. Prints
/// the time from the slot coming free to Lab's first step.
#[test]
fn a_borrowed_slot_is_given_back_to_a_team_within_its_guarantee() {
    let data = tempfile::tempdir().unwrap();
    create_user(data.path(), "ada");
    create_user_as(data.path(), "bea", "expert", "Lab");
    let (_server, url) = start_server_with(data.path(), &[("HONE_WORKERS", "2"), LEASE]);
    let mut ada = Api::new(&url);
    let ops = project_with_dataset(&mut ada, data.path(), LONG);
    let long = settings(
        &mut ada,
        ops,
        serde_json::json!({"num_train_epochs": 30, "save_steps": 10, "eval_steps": 1000, "logging_steps": 1}),
    );
    let kept = launch(&mut ada, ops, &long);
    let borrower = launch(&mut ada, ops, &long);
    follow(&mut ada, borrower, |e| is_step_at_least(e, 12));
    let queue = ada.call("job", &[("id", &kept.to_string())]).json();
    assert_eq!(queue["job"]["state"], "running", "{queue}");

    let mut bea = Api::new(&url);
    let lab = project_with_dataset_as(&mut bea, data.path(), 30, "bea");
    let short = settings(&mut bea, lab, serde_json::json!({"num_train_epochs": 1}));
    let theirs = launch(&mut bea, lab, &short);
    // The borrower hands its slot back after a checkpoint.
    let seen = follow(&mut ada, borrower, |e| {
        e["kind"] == "state"
            && e["state"] == "queued"
            && e["note"].as_str().is_some_and(|n| n.contains("borrowed"))
    });
    let freed_at = seen.last().unwrap()["at_ms"].as_i64().unwrap();
    let reached = seen
        .iter()
        .filter(|e| is_step_at_least(e, 0))
        .filter_map(|e| e["event"]["step"].as_u64())
        .max()
        .unwrap();
    // Lab's job starts on it.
    let first = follow(&mut bea, theirs, |e| is_step_at_least(e, 1));
    let first_step_at = first.last().unwrap()["at_ms"].as_i64().unwrap();
    #[allow(clippy::print_stdout)]
    {
        println!(
            "capacity freed -> next job's first step: {} ms",
            first_step_at - freed_at
        );
    }
    let done = follow(&mut bea, theirs, is_final);
    assert_eq!(done.last().unwrap()["state"], "succeeded", "{done:?}");
    // The borrower comes back and finishes from its checkpoint.
    let done = follow(&mut ada, borrower, is_final);
    assert_eq!(done.last().unwrap()["state"], "succeeded", "{done:?}");
    let page = job(&mut ada, borrower);
    let resumed: Vec<u64> = engine_events(&page, "resumed")
        .map(|e| e["step"].as_u64().unwrap())
        .collect();
    assert!(!resumed.is_empty(), "the borrower never resumed");
    assert!(
        reached - resumed[0] <= 10,
        "resumed at {} after reaching {reached}: more than one save_steps interval lost",
        resumed[0]
    );
    let done = follow(&mut ada, kept, is_final);
    assert_eq!(done.last().unwrap()["state"], "succeeded");
    // Preemption never touched the job within its guarantee.
    let kept_page = job(&mut ada, kept);
    assert_eq!(engine_events(&kept_page, "resumed").count(), 0);
}

fn as_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// The test's clock (the database's machine's), Unix milliseconds.
fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Workers on machines whose clocks are a day ahead and a day behind,
/// against PostgreSQL (as an install with workers on other machines runs;
/// SQLite's clock is the one machine's that all its processes share).
/// Leases, heartbeats, event times and device time come from the
/// database's clock: the worker a day ahead that dies is not taken for
/// alive for a day, the one a day behind is not taken for lost, and the
/// device time counted is what the job really held — not a day more or
/// less, and not twice.
#[test]
fn workers_whose_clocks_are_off_neither_lose_nor_double_count_time() {
    let db = hone_e2e::postgres_database("clocks");
    let pg = ("DATABASE_URL", db.as_str());
    let ahead = hone_e2e::clock_off("+1d");
    let behind = hone_e2e::clock_off("-1d");
    let env = |clock: &[(&'static str, String); 3]| -> Vec<(&str, String)> {
        let mut env: Vec<(&str, String)> = clock.to_vec();
        env.extend([LEASE, pg].map(|(k, v)| (k, v.to_owned())));
        env
    };
    let (ahead, behind) = (env(&ahead), env(&behind));
    // The clocks really are off: `date` under the same environment.
    for (env, want) in [(&ahead, 86_400), (&behind, -86_400)] {
        let out = std::process::Command::new("date")
            .arg("+%s")
            .envs(as_refs(env))
            .output()
            .unwrap();
        let said: i64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        let off = said - wall_ms() / 1000;
        assert!((off - want).abs() < 60, "a clock {off} s off, not {want}");
    }

    let data = tempfile::tempdir().unwrap();
    create_user_with(data.path(), "ada", "expert", "Ops", &[pg]);
    create_user_with(data.path(), "root", "admin", "Ops", &[pg]);
    let (_server, url) = start_server_with(data.path(), &[("HONE_WORKERS", "0"), LEASE, pg]);
    let mut first = start_worker(data.path(), &as_refs(&ahead));
    let mut api = Api::new(&url);
    let dataset = project_with_dataset(&mut api, data.path(), LONG);
    let config = settings(
        &mut api,
        dataset,
        serde_json::json!({"num_train_epochs": 30, "save_steps": 10, "eval_steps": 1000, "logging_steps": 1}),
    );
    let began = wall_ms();
    let id = launch(&mut api, dataset, &config);
    follow(&mut api, id, |e| is_step_at_least(e, 12));
    // The worker a day ahead dies; its lease runs out on the database's
    // clock (on its own it would hold for a day) and the worker a day
    // behind takes the job over.
    first.kill9();
    let _second = start_worker(data.path(), &as_refs(&behind));
    let mut admin = Api::new(&url);
    login(&mut admin, "root");
    // Until the second worker's run has taken a step.
    let (mut runs, mut claimed_at) = (0, None);
    follow(&mut api, id, |e| {
        if e["kind"] == "state" && e["state"] == "running" {
            runs += 1;
            if runs == 2 {
                claimed_at = e["at_ms"].as_i64();
            }
        }
        claimed_at.is_some() && is_step_at_least(e, 0)
    });
    let claimed_at = claimed_at.unwrap();
    // While it runs, the worker a day behind is live, its heartbeat
    // recent on the database's clock.
    let queue = admin.call("queue", &[]);
    assert_eq!(queue.status, 200, "{}", queue.body);
    let queue = queue.json();
    let live: Vec<&serde_json::Value> = queue["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["running"][1] == id)
        .collect();
    assert_eq!(live.len(), 1, "{queue}");
    assert_eq!(live[0]["lost"], false, "{queue}");
    let age = live[0]["heartbeat_age_ms"].as_i64().unwrap();
    assert!(age < 6_000, "heartbeat {age} ms old: {queue}");

    let done = follow(&mut api, id, is_final);
    let ended = wall_ms();
    assert_eq!(done.last().unwrap()["state"], "succeeded", "{done:?}");
    // Every event time, the workers' included, is on the database's clock.
    let page = job(&mut api, id);
    for e in page["events"].as_array().unwrap() {
        let at = e["at_ms"].as_i64().unwrap();
        assert!(
            (began - 1_000..=ended + 1_000).contains(&at),
            "an event at {at}, outside {began}..{ended}: {e}"
        );
    }
    // Device time: no more than the time that passed, and at least the
    // second worker's whole run.
    let queue = admin.call("queue", &[]).json();
    let row = queue["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["job"]["id"] == id)
        .unwrap_or_else(|| panic!("job {id} not in the admin's queue: {queue}"));
    let held_ms = row["hours"].as_f64().unwrap() * 3_600_000.0;
    let second_run = done.last().unwrap()["at_ms"].as_i64().unwrap() - claimed_at;
    assert!(
        held_ms <= (ended - began) as f64,
        "{held_ms} ms of device time counted in {} ms",
        ended - began
    );
    assert!(
        held_ms >= (second_run - 1_000) as f64,
        "{held_ms} ms of device time counted, the second run alone took {second_run} ms"
    );
}

/// The version page's data.
fn version_page(api: &mut Api, project: i64, number: u64) -> serde_json::Value {
    let r = api.call(
        "version",
        &[
            ("project_id", &project.to_string()),
            ("number", &number.to_string()),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

/// An approved version's export on a worker that allows exports 1 MiB:
/// the engine is stopped in its merge, over the limit, and the job fails
/// with the merge's estimate and what to do. Nothing half-written is
/// offered: the adapter (complete before the merge began) downloads, the
/// merged folder and the GGUF files do not.
#[test]
fn a_merge_over_the_workers_memory_limit_fails_with_its_estimate_and_offers_only_the_adapter() {
    let data = tempfile::tempdir().unwrap();
    create_user(data.path(), "ada");
    create_user_as(data.path(), "rhea", "reviewer", "Ops");
    let (_server, url) =
        start_server_with(data.path(), &[LEASE, ("HONE_EXPORT_MEMORY_LIMIT", "1MiB")]);
    let mut api = Api::new(&url);
    let dataset = project_with_dataset(&mut api, data.path(), 30);
    let config = settings(
        &mut api,
        dataset,
        serde_json::json!({"num_train_epochs": 1}),
    );
    let id = launch(&mut api, dataset, &config);
    let seen = follow(&mut api, id, is_final);
    assert_eq!(seen.last().unwrap()["state"], "succeeded", "{seen:?}");
    let (project, number, version, export) = approved_export(&mut api, &url, id);
    let seen = follow(&mut api, export, is_final);
    assert_eq!(seen.last().unwrap()["state"], "failed", "{seen:?}");
    let failure = job(&mut api, export)["job"]["failure"].clone();
    let reason = failure["reason"].as_str().unwrap();
    for said in [
        "The merge ran out of memory",
        "over this worker's export memory limit of 1 MiB",
        "it needs about",
        "download the adapter and merge it elsewhere",
    ] {
        assert!(reason.contains(said), "{said:?} in {reason:?}");
    }
    assert_eq!(failure["cause"], "system", "{failure}");
    let page = version_page(&mut api, project, number);
    let formats: Vec<&str> = page["publishing"]["downloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["format"].as_str().unwrap())
        .collect();
    assert_eq!(formats, ["adapter"], "{page}");
    let (status, bytes) = api.download(
        page["publishing"]["downloads"][0]["href"].as_str().unwrap(),
        None,
    );
    assert_eq!(status, 200);
    assert!(!bytes.is_empty());
    let (status, _) = api.download(&format!("/api/versions/{version}/downloads/merged"), None);
    assert_eq!(status, 404);
}

/// Training job `id`'s version, evaluated, approved by the reviewer
/// `rhea`, and its export job once queued: `(project, number, version
/// id, export job)`.
fn approved_export(api: &mut Api, url: &str, id: i64) -> (i64, u64, i64, i64) {
    let project = job(api, id)["project_id"].as_i64().unwrap();
    let (number, eval) = version_of(api, project, id);
    let seen = follow(api, eval, is_final);
    assert_eq!(seen.last().unwrap()["state"], "succeeded", "{seen:?}");
    let version = version_page(api, project, number)["version_id"]
        .as_i64()
        .unwrap();
    let mut rhea = Api::new(url);
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
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let page = version_page(api, project, number);
        if let Some(e) = page["publishing"]["export_job"][0].as_i64() {
            return (project, number, version, e);
        }
        assert!(std::time::Instant::now() < deadline, "no export: {page}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A model whose tokenizer GGUF cannot carry (SentencePiece-style BPE
/// with byte fallback): it trains, and its export succeeds with the
/// adapter and the merged folder, without GGUF; the version page says why,
/// naming the tokenizer.
#[test]
fn a_tokenizer_gguf_cannot_carry_leaves_gguf_out_and_says_why() {
    let data = tempfile::tempdir().unwrap();
    let models = data.path().join("models");
    let folder = models.join("demo-fallback");
    std::fs::create_dir_all(&folder).unwrap();
    let demo = hone_e2e::workspace_root().join("models/hone-demo");
    for f in std::fs::read_dir(&demo).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), folder.join(f.file_name())).unwrap();
    }
    let mut tok: serde_json::Value =
        serde_json::from_slice(&std::fs::read(folder.join("tokenizer.json")).unwrap()).unwrap();
    tok["model"]["byte_fallback"] = serde_json::Value::Bool(true);
    std::fs::write(folder.join("tokenizer.json"), tok.to_string()).unwrap();
    create_user(data.path(), "ada");
    create_user_as(data.path(), "rhea", "reviewer", "Ops");
    let models_dir = models.display().to_string();
    let (_server, url) = start_server_with(
        data.path(),
        &[LEASE, ("HONE_MODELS_DIR", models_dir.as_str())],
    );
    let mut api = Api::new(&url);
    let dataset = project_with_dataset(&mut api, data.path(), 30);
    let config = settings(
        &mut api,
        dataset,
        serde_json::json!({"num_train_epochs": 1}),
    );
    let r = api.call(
        "launch_job",
        &[
            ("dataset_id", &dataset.to_string()),
            ("model", "demo-fallback"),
            ("config", &config),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.json().as_i64().unwrap();
    let seen = follow(&mut api, id, is_final);
    assert_eq!(seen.last().unwrap()["state"], "succeeded", "{seen:?}");
    let (project, number, _, export) = approved_export(&mut api, &url, id);
    let seen = follow(&mut api, export, is_final);
    assert_eq!(seen.last().unwrap()["state"], "succeeded", "{seen:?}");
    let page = version_page(&mut api, project, number);
    let formats: Vec<&str> = page["publishing"]["downloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["format"].as_str().unwrap())
        .collect();
    assert_eq!(formats, ["adapter", "merged"], "{page}");
    let why = page["publishing"]["gguf_refused"].as_str().unwrap();
    assert!(why.contains("byte fallback"), "{why}");
    assert!(why.contains("convert_hf_to_gguf.py"), "{why}");
}
