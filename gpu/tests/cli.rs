//! `hone-train` as the scheduler will run it: JSON events on stdout, a
//! SIGTERM that checkpoints and exits 0, a rerun that resumes, evaluation
//! and export, and clear errors.
#![allow(clippy::unwrap_used)]

use hone_protocol::{Cause, Device, DeviceKind, Event};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hone-train"))
}

fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/hone-demo")
}

fn split(dir: &Path) -> PathBuf {
    let lines: String = (0..8)
        .map(|i| {
            format!(
                "{}\n",
                serde_json::json!({"messages": [
                    {"role": "user", "content": format!("Say {i}.")},
                    {"role": "assistant", "content": format!("{i}")},
                ]})
            )
        })
        .collect();
    let path = dir.join("train.jsonl");
    std::fs::write(&path, lines).unwrap();
    path
}

/// The last line of a run's output, as the protocol's event.
fn last_event(stdout: &[u8]) -> Event {
    let text = String::from_utf8_lossy(stdout);
    let last = text.lines().last().unwrap_or("");
    Event::from_line(last).unwrap_or_else(|e| panic!("{e}: {last:?}"))
}

fn events(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn sigterm_checkpoints_and_a_rerun_resumes_then_evaluate_and_export() {
    let tmp = tempfile::tempdir().unwrap();
    let train = split(tmp.path());
    let config = tmp.path().join("train.toml");
    std::fs::write(
        &config,
        "num_train_epochs = 300\nper_device_train_batch_size = 4\nlogging_steps = 1\nsave_steps = 1000\nlora_r = 4\nlearning_rate = 1e-2\n",
    )
    .unwrap();
    let out = tmp.path().join("run");
    let model = demo();
    let args = [
        "train",
        "--model",
        model.to_str().unwrap(),
        "--train",
        train.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    let mut child = bin().args(args).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    // Wait for real progress, then ask it to stop as a scheduler would.
    for line in lines.by_ref() {
        let line = line.unwrap();
        let step = line.contains("\"event\":\"step\"");
        seen.push(line);
        if step {
            break;
        }
    }
    let status = Command::new("kill")
        .args(["-s", "TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    seen.extend(lines.map(Result::unwrap));
    assert!(child.wait().unwrap().success(), "SIGTERM must exit 0");
    let first = events(&seen.join("\n"));
    // No GPU here: the products default to f32.
    assert_eq!(first[0]["compute_dtype"], "float32", "{:?}", first[0]);
    let last = first.last().unwrap();
    assert_eq!(last["event"], "finished");
    assert_eq!(last["reason"], "cancelled", "{last}");
    let stopped_at = last["step"].as_u64().unwrap();
    assert!(
        stopped_at < 600,
        "it stopped early ({stopped_at} of 600 steps)"
    );
    assert!(first.iter().any(|e| e["event"] == "checkpoint"));

    // The same command again resumes and completes.
    let rerun = bin().args(args).output().unwrap();
    assert!(
        rerun.status.success(),
        "{}",
        String::from_utf8_lossy(&rerun.stderr)
    );
    let second = events(&String::from_utf8_lossy(&rerun.stdout));
    let resumed = second.iter().find(|e| e["event"] == "resumed").unwrap();
    assert_eq!(resumed["step"].as_u64().unwrap(), stopped_at);
    let done = second.last().unwrap();
    assert_eq!(
        (done["event"].as_str(), done["reason"].as_str()),
        (Some("finished"), Some("completed"))
    );
    assert_eq!(done["step"], 600);
    let adapter = out.join("adapter");
    assert!(adapter.join("adapter_model.safetensors").exists());

    // Evaluate with the adapter, against the base model.
    let report = bin()
        .args([
            "evaluate",
            "--model",
            demo().to_str().unwrap(),
            "--adapter",
            adapter.to_str().unwrap(),
        ])
        .args([
            "--test",
            train.to_str().unwrap(),
            "--base",
            "--max-new-tokens",
            "3",
            "--progress",
            "--report",
        ])
        .arg(tmp.path().join("report.json"))
        .output()
        .unwrap();
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    // Progress on standard output, one event per example; the report in
    // its file.
    let progress: Vec<serde_json::Value> = String::from_utf8_lossy(&report.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(progress.len(), 8);
    assert_eq!(
        (
            &progress[7]["event"],
            &progress[7]["done"],
            &progress[7]["total"]
        ),
        (&"evaluating".into(), &8.into(), &8.into())
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(report["items"].as_array().unwrap().len(), 8);
    let rows = report["metrics"].as_array().unwrap();
    let f1 = rows.iter().find(|r| r["metric"] == "token_f1").unwrap();
    assert!(f1["base"]["value"].is_number() && f1["difference"]["low"].is_number());

    // Export a merged model.
    let merged = tmp.path().join("merged");
    let export = bin()
        .args([
            "export",
            "--model",
            demo().to_str().unwrap(),
            "--adapter",
            adapter.to_str().unwrap(),
        ])
        .args(["--merged", merged.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    for f in [
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(merged.join(f).exists(), "{f}");
    }
}

#[test]
fn bad_input_is_named_and_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    let train = split(tmp.path());
    let missing = bin()
        .args([
            "train",
            "--model",
            "/nonexistent",
            "--train",
            train.to_str().unwrap(),
            "--out",
        ])
        .arg(tmp.path().join("o"))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent"));
    // A missing model folder is the operator's problem, not the user's.
    assert!(
        matches!(
            last_event(&missing.stdout),
            Event::Failed {
                cause: Cause::System,
                ..
            }
        ),
        "{}",
        String::from_utf8_lossy(&missing.stdout)
    );
    // One clear line says where it computes (no GPU support in this build,
    // or no driver here: the CPU).
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(stderr.matches("on the CPU").count(), 1, "{stderr}");
    // Asked for a GPU where there is none usable: an error, no CPU run.
    let cuda = bin()
        .args([
            "--device",
            "cuda",
            "estimate",
            "--model",
            demo().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(cuda.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&cuda.stderr);
    assert!(
        stderr.contains("--device cuda: no usable NVIDIA GPU"),
        "{stderr}"
    );
    let config = tmp.path().join("bad.toml");
    std::fs::write(&config, "learning_rat = 1\n").unwrap();
    let typo = bin()
        .args([
            "train",
            "--model",
            demo().to_str().unwrap(),
            "--train",
            train.to_str().unwrap(),
        ])
        .args(["--config", config.to_str().unwrap(), "--out"])
        .arg(tmp.path().join("o"))
        .output()
        .unwrap();
    assert_eq!(typo.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&typo.stderr).contains("learning_rat"));
    match last_event(&typo.stdout) {
        Event::Failed { reason, cause } => {
            assert_eq!(cause, Cause::User);
            assert!(reason.contains("learning_rat"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Out of range: the reason names the setting and its range.
    std::fs::write(
        &config,
        "lora_dropout = 1.5
",
    )
    .unwrap();
    let range = bin()
        .args([
            "train",
            "--model",
            demo().to_str().unwrap(),
            "--train",
            train.to_str().unwrap(),
        ])
        .args(["--config", config.to_str().unwrap(), "--out"])
        .arg(tmp.path().join("o"))
        .output()
        .unwrap();
    assert_eq!(range.status.code(), Some(1));
    assert_eq!(
        last_event(&range.stdout),
        Event::Failed {
            reason: "training config: lora_dropout must be at least 0 and below 1 (got 1.5)".into(),
            cause: Cause::User,
        }
    );
    std::fs::write(
        &config,
        "bf16 = false\nbnb_4bit_compute_dtype = \"bfloat16\"\n",
    )
    .unwrap();
    let contradiction = bin()
        .args(["estimate", "--model", demo().to_str().unwrap()])
        .args(["--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(contradiction.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&contradiction.stderr);
    assert!(
        stderr.contains("bf16 = false") && stderr.contains("bnb_4bit_compute_dtype"),
        "{stderr}"
    );
    let junk = tmp.path().join("junk.jsonl");
    std::fs::write(&junk, "not json\n").unwrap();
    let bad_data = bin()
        .args([
            "train",
            "--model",
            demo().to_str().unwrap(),
            "--train",
            junk.to_str().unwrap(),
            "--out",
        ])
        .arg(tmp.path().join("o"))
        .output()
        .unwrap();
    assert_eq!(bad_data.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad_data.stderr).contains("line 1"));
    let last = String::from_utf8_lossy(&bad_data.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .to_owned();
    let event: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert_eq!(event["event"], "failed");
    assert!(event["reason"].as_str().unwrap().contains("line 1"));
    assert_eq!(event["cause"], "user");
}

#[test]
fn examples_all_longer_than_max_seq_length_fail_with_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let train = split(tmp.path());
    let config = tmp.path().join("short.toml");
    std::fs::write(
        &config,
        "max_seq_length = 4
",
    )
    .unwrap();
    let run = bin()
        .args(["train", "--model", demo().to_str().unwrap(), "--train"])
        .arg(&train)
        .arg("--config")
        .arg(&config)
        .arg("--out")
        .arg(tmp.path().join("o"))
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    match last_event(&run.stdout) {
        Event::Failed { reason, cause } => {
            assert_eq!(cause, Cause::User);
            assert!(
                reason.starts_with("all 8 training examples are longer than max_seq_length (4 tokens); the longest has ")
                    && reason.contains("Raise max_seq_length to at least ")
                    && reason.ends_with(", or shorten the examples"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(!tmp.path().join("o").join("adapter").exists());
}

#[test]
fn devices_are_listed_as_the_protocol_says() {
    let out = bin().arg("devices").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let devices: Vec<Device> = serde_json::from_slice(&out.stdout).unwrap();
    let cpu = devices.last().unwrap();
    assert_eq!((cpu.kind, cpu.index), (DeviceKind::Cpu, None));
    assert!(!cpu.name.is_empty());
    // Linux reports the machine's memory.
    if Path::new("/proc/meminfo").exists() {
        assert!(cpu.memory_bytes > 1 << 20, "{cpu:?}");
    }
    for (i, gpu) in devices[..devices.len() - 1].iter().enumerate() {
        assert_eq!((gpu.kind, gpu.index), (DeviceKind::Cuda, Some(i as u32)));
    }
    // Listing chooses no device, so it logs no choice.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("on the CPU"), "{stderr}");
}

#[test]
fn qlora_trains_evaluates_on_nf4_exports_and_estimates() {
    let tmp = tempfile::tempdir().unwrap();
    let train = split(tmp.path());
    let config = tmp.path().join("qlora.toml");
    std::fs::write(
        &config,
        "method = \"qlora\"\nnum_train_epochs = 2\nper_device_train_batch_size = 4\nlogging_steps = 1\nlora_r = 4\nlearning_rate = 1e-2\ntarget_modules = [\"q_proj\", \"down_proj\"]\nbnb_4bit_compute_dtype = \"bfloat16\"\ngradient_checkpointing = true\n",
    )
    .unwrap();
    let out = tmp.path().join("run");
    // Trains (or resumes) and returns the events.
    let train_run = || -> Vec<serde_json::Value> {
        let run = bin()
            .args(["train", "--model", demo().to_str().unwrap(), "--train"])
            .arg(&train)
            .arg("--config")
            .arg(&config)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        events(&String::from_utf8_lossy(&run.stdout))
    };
    let first = train_run();
    let started = first.iter().find(|e| e["event"] == "started").unwrap();
    // r = 4 on q_proj (64→64) and down_proj (192→64) of 2 layers.
    assert_eq!(started["trainable_params"], 2 * (4 * 128 + 4 * 256));
    // bf16 products as asked, on the CPU too (the default there is f32).
    assert_eq!(started["compute_dtype"], "bfloat16");
    let losses: Vec<f64> = first
        .iter()
        .filter(|e| e["event"] == "step")
        .map(|e| e["loss"].as_f64().unwrap())
        .collect();
    assert!(
        losses.len() == 4 && losses.iter().all(|l| l.is_finite()),
        "{losses:?}"
    );
    let last = first.last().unwrap();
    assert_eq!(
        (last["event"].as_str(), last["step"].as_u64()),
        (Some("finished"), Some(4))
    );
    // The same command again: the last checkpoint (adapter + optimizer over
    // the NF4 base) loads and the run is already complete.
    let again = train_run();
    assert!(
        again
            .iter()
            .any(|e| e["event"] == "resumed" && e["step"] == 4),
        "{again:?}"
    );
    let adapter = out.join("adapter");
    let peft: serde_json::Value =
        serde_json::from_slice(&std::fs::read(adapter.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(peft["peft_type"], "LORA");

    let report = bin()
        .args(["evaluate", "--nf4", "--model", demo().to_str().unwrap()])
        .arg("--adapter")
        .arg(&adapter)
        .arg("--test")
        .arg(&train)
        .args(["--max-new-tokens", "2"])
        .output()
        .unwrap();
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(report["metrics"][0]["metric"], "loss");
    assert!(report["metrics"][0]["tuned"]["value"]
        .as_f64()
        .unwrap()
        .is_finite());

    let merged = tmp.path().join("merged");
    let export = bin()
        .args(["export", "--nf4", "--model", demo().to_str().unwrap()])
        .arg("--adapter")
        .arg(&adapter)
        .arg("--merged")
        .arg(&merged)
        .output()
        .unwrap();
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    assert!(merged.join("model.safetensors").exists());

    let estimate = bin()
        .args(["estimate", "--model", demo().to_str().unwrap()])
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        estimate.status.success(),
        "{}",
        String::from_utf8_lossy(&estimate.stderr)
    );
    let e: serde_json::Value = serde_json::from_slice(&estimate.stdout).unwrap();
    assert_eq!(e["method"], "qlora");
    assert_eq!(e["trainable_parameters"], 2 * (4 * 128 + 4 * 256));
    let per = e["nf4_bytes_per_parameter"].as_f64().unwrap();
    assert!(per > 0.5 && per <= 0.56, "{per}");
    assert!(e["total_bytes"].as_u64().unwrap() > e["base_bytes"].as_u64().unwrap());
}
