//! `hone-train serve` as a supervisor runs it: requests in, replies out,
//! one JSON line each. Its greedy answers equal `hone-train evaluate`'s for
//! the same prompt and adapter, for the base and for two adapters served
//! one after the other on the one base (the least recently used dropped
//! over the budget, loaded again when asked for); bad requests are named.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hone-train"))
}

fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/hone-demo")
}

/// Eight examples answering "Say {i}." with `answer(i)`.
fn split(path: &Path, answer: impl Fn(usize) -> String) {
    let lines: String = (0..8)
        .map(|i| {
            format!(
                "{}\n",
                serde_json::json!({"messages": [
                    {"role": "user", "content": format!("Say {i}.")},
                    {"role": "assistant", "content": answer(i)},
                ]})
            )
        })
        .collect();
    std::fs::write(path, lines).unwrap();
}

/// An adapter trained on `data`: its folder.
fn adapter(tmp: &Path, name: &str, data: &Path) -> PathBuf {
    let config = tmp.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        "num_train_epochs = 3\nper_device_train_batch_size = 4\nlora_r = 4\nlearning_rate = 5e-2\n",
    )
    .unwrap();
    let out = tmp.join(name);
    let run = bin()
        .args(["train", "--model", demo().to_str().unwrap(), "--train"])
        .arg(data)
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
    out.join("adapter")
}

/// `hone-train evaluate`'s answers (tuned, base) on `test`, greedy, at
/// most 12 new tokens.
fn evaluated(adapter: &Path, test: &Path) -> Vec<(String, String)> {
    let run = bin()
        .args(["evaluate", "--base", "--max-new-tokens", "12"])
        .arg("--model")
        .arg(demo())
        .arg("--adapter")
        .arg(adapter)
        .arg("--test")
        .arg(test)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    report["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["tuned"]["text"].as_str().unwrap().to_owned(),
                i["base"]["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

struct Served {
    child: std::process::Child,
    input: std::process::ChildStdin,
    output: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Served {
    fn start(budget: u64) -> Served {
        let mut child = bin()
            .args([
                "--device",
                "cpu",
                "serve",
                "--adapter-budget",
                &budget.to_string(),
            ])
            .arg("--model")
            .arg(demo())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let input = child.stdin.take().unwrap();
        let output = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut s = Served {
            child,
            input,
            output,
        };
        let ready = s.next();
        assert_eq!(ready["event"], "ready", "{ready}");
        assert_eq!(ready["model"], "hone-demo");
        s
    }

    fn next(&mut self) -> serde_json::Value {
        serde_json::from_str(&self.output.next().unwrap().unwrap()).unwrap()
    }

    fn send(&mut self, request: serde_json::Value) {
        writeln!(self.input, "{request}").unwrap();
        self.input.flush().unwrap();
    }

    /// Request `id`'s replies, through its last (`done` or `error`).
    fn replies(&mut self, id: &str) -> Vec<serde_json::Value> {
        let mut seen = Vec::new();
        loop {
            let r = self.next();
            assert_eq!(r["id"], id, "{r}");
            let last = matches!(r["event"].as_str(), Some("done" | "error"));
            seen.push(r);
            if last {
                return seen;
            }
        }
    }

    /// The streamed answer to "Say {i}." with `adapter`, and its `done`.
    fn answer(
        &mut self,
        id: &str,
        adapter: Option<&Path>,
        i: usize,
    ) -> (String, serde_json::Value) {
        self.send(serde_json::json!({
            "op": "generate",
            "id": id,
            "adapter": adapter,
            "messages": [{"role": "user", "content": format!("Say {i}.")}],
            "max_tokens": 12,
        }));
        let replies = self.replies(id);
        assert_eq!(replies[0]["event"], "started", "{replies:?}");
        let text: String = replies
            .iter()
            .filter(|r| r["event"] == "delta")
            .map(|r| r["text"].as_str().unwrap())
            .collect();
        (text, replies.last().unwrap().clone())
    }
}

#[test]
fn answers_equal_evaluate_for_the_base_and_two_adapters_on_one_base() {
    let tmp = tempfile::tempdir().unwrap();
    let digits = tmp.path().join("digits.jsonl");
    split(&digits, |i| format!("{i}"));
    let words = tmp.path().join("words.jsonl");
    split(&words, |_| "No, I will not.".into());
    let a = adapter(tmp.path(), "digits", &digits);
    let b = adapter(tmp.path(), "words", &words);
    let from_a = evaluated(&a, &digits);
    let from_b = evaluated(&b, &digits);
    assert_ne!(from_a[3].0, from_b[3].0, "two adapters, two answers");

    // A budget smaller than one adapter: one is held at a time.
    let mut s = Served::start(1);
    for (n, (adapter, want)) in [
        (Some(&a), &from_a),
        (Some(&b), &from_b),
        (None, &from_a),
        (Some(&a), &from_a),
    ]
    .into_iter()
    .enumerate()
    {
        for i in [3, 5] {
            let (text, done) = s.answer(&format!("r{n}-{i}"), adapter.map(PathBuf::as_path), i);
            let expected = if adapter.is_some() {
                &want[i].0
            } else {
                &want[i].1
            };
            assert_eq!(&text, expected, "request {n}, line {i}");
            assert!(
                matches!(done["finish_reason"].as_str(), Some("stop" | "length")),
                "{done}"
            );
            assert!(done["prompt_tokens"].as_u64().unwrap() > 0);
            assert!(done["completion_tokens"].as_u64().unwrap() <= 12);
        }
    }

    // Bad requests: named, and the service goes on.
    s.send(serde_json::json!({
        "op": "generate", "id": "long",
        "messages": [{"role": "user", "content": "Say 1."}],
        "max_tokens": 1_000_000,
    }));
    let r = s.replies("long");
    assert_eq!(r[0]["code"], "context_length_exceeded", "{r:?}");
    assert!(
        r[0]["message"].as_str().unwrap().contains("1000000"),
        "{r:?}"
    );
    s.send(serde_json::json!({
        "op": "generate", "id": "gone",
        "adapter": tmp.path().join("no-such-adapter"),
        "messages": [{"role": "user", "content": "Say 1."}],
    }));
    let r = s.replies("gone");
    assert_eq!(r[0]["code"], "adapter_unusable", "{r:?}");
    writeln!(s.input, "{{\"op\":\"generate\",\"id\":\"bad\"}}").unwrap();
    let r = s.replies("bad");
    assert_eq!(r[0]["code"], "invalid_request", "{r:?}");
    let (text, _) = s.answer("after", Some(&a), 3);
    assert_eq!(text, from_a[3].0);

    // Its input closed, it ends by itself; the log says adapters were
    // dropped over the budget.
    drop(s.input);
    let out = s.child.wait_with_output().unwrap();
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("adapter dropped"), "{log}");
}
