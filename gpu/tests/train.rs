//! The trainer end to end on a fixture checkpoint with the demo tokenizer:
//! events, schedule, evaluation and early stopping.
#![allow(clippy::unwrap_used)]

use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::Backend;
use hone_dataset::tokens::ChatTokenizer;
use hone_gpu::data::{prepare, DataOptions, Prepared};
use hone_gpu::model::Model;
use hone_gpu::safetensors::Weights;
use hone_gpu::train::{train, Event, TrainConfig};
use hone_gpu::ModelConfig;
use std::path::Path;

type B = Autodiff<Flex>;

fn data(n: usize) -> Prepared {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let t = ChatTokenizer::from_files(
        &std::fs::read(root.join("models/hone-demo/tokenizer.json")).unwrap(),
        Some(&std::fs::read(root.join("models/hone-demo/tokenizer_config.json")).unwrap()),
        None,
    )
    .unwrap();
    let lines: String = (0..n)
        .map(|i| {
            format!(
                "{}\n",
                serde_json::json!({"messages": [
                    {"role": "user", "content": format!("What is {i} plus one?")},
                    {"role": "assistant", "content": format!("It is {}.", i + 1)},
                ]})
            )
        })
        .collect();
    prepare(
        &lines,
        &t,
        DataOptions {
            max_len: 64,
            all_tokens: false,
        },
    )
    .unwrap()
}

fn model(device: &burn::tensor::Device<B>, cfg: &TrainConfig) -> Model<B> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama");
    let config =
        ModelConfig::from_json(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    Model::load(&config, &Weights::open(&dir).unwrap(), device)
        .unwrap()
        .with_lora(&cfg.lora().unwrap(), device)
}

fn config() -> TrainConfig {
    TrainConfig {
        num_train_epochs: 3,
        per_device_train_batch_size: 4,
        gradient_accumulation_steps: 2,
        learning_rate: 5e-2,
        warmup_steps: 1,
        logging_steps: 1,
        eval_steps: 2,
        lora_r: 4,
        lora_alpha: 8.0,
        lora_dropout: 0.0,
        ..TrainConfig::default()
    }
}

#[test]
fn events_follow_the_schedule_and_validation_loss_falls() {
    let device = Default::default();
    B::seed(&device, 3);
    let cfg = config();
    let (train_split, valid) = (data(12), data(4));
    let mut events = Vec::new();
    train(
        model(&device, &cfg),
        &train_split,
        Some(&valid),
        &cfg,
        493,
        &device,
        &mut |e| events.push(e.clone()),
    )
    .unwrap();
    // 12 examples, batches of 4, 2 per step: 2 steps an epoch, 6 in all.
    assert!(
        matches!(
            events[0],
            Event::Started {
                total_steps: 6,
                examples: 12,
                ..
            }
        ),
        "{:?}",
        events[0]
    );
    let steps: Vec<(u64, f64, f64)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Step {
                step,
                learning_rate,
                loss,
                ..
            } => Some((*step, *learning_rate, *loss)),
            _ => None,
        })
        .collect();
    assert_eq!(
        steps.iter().map(|s| s.0).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6]
    );
    for (i, (_, lr, loss)) in steps.iter().enumerate() {
        assert_eq!(*lr, cfg.lr_at(i, 6));
        assert!(loss.is_finite());
    }
    let evals: Vec<f64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Eval {
                loss, perplexity, ..
            } => {
                assert!((perplexity - loss.exp()).abs() < 1e-9);
                Some(*loss)
            }
            _ => None,
        })
        .collect();
    assert_eq!(evals.len(), 3);
    assert!(
        evals[2] < evals[0],
        "validation loss should fall: {evals:?}"
    );
    assert!(
        matches!(events.last(), Some(Event::Finished { step: 6, reason, .. }) if reason == "completed")
    );
    // Every event is one JSON line with its kind.
    let line = serde_json::to_string(&events[1]).unwrap();
    assert!(line.starts_with("{\"event\":\"step\""), "{line}");
}

#[test]
fn early_stopping_ends_training_when_validation_stops_improving() {
    let device = Default::default();
    let cfg = TrainConfig {
        learning_rate: 0.0,
        eval_steps: 1,
        early_stopping_patience: Some(2),
        ..config()
    };
    let mut events = Vec::new();
    train(
        model(&device, &cfg),
        &data(12),
        Some(&data(4)),
        &cfg,
        493,
        &device,
        &mut |e| events.push(e.clone()),
    )
    .unwrap();
    // lr 0: the first evaluation is the best; two more without improvement stop it.
    match events.last() {
        Some(Event::Finished { step, reason, .. }) => {
            assert_eq!(*step, 3);
            assert!(reason.starts_with("early stopping"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_empty_split_is_refused() {
    let device = Default::default();
    let cfg = config();
    let err = train(
        model(&device, &cfg),
        &Prepared::default(),
        None,
        &cfg,
        493,
        &device,
        &mut |_| {},
    );
    assert!(err.is_err());
}

fn step_losses(events: &[Event]) -> Vec<(u64, f64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Step { step, loss, .. } => Some((*step, *loss)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_cancelled_run_resumes_with_the_same_losses() {
    use hone_gpu::train::{train_in, Run};
    use std::sync::atomic::{AtomicBool, Ordering};
    let device = Default::default();
    // Dropout off: its masks come from the backend's process-wide
    // generator (reseeded per step), which tests running in parallel
    // threads of one process would share.
    let cfg = TrainConfig {
        save_steps: 2,
        ..config()
    };
    let (train_split, valid) = (data(12), data(4));
    let never = AtomicBool::new(false);

    // Straight through: 6 steps.
    let straight_dir = tempfile::tempdir().unwrap();
    let mut straight = Vec::new();
    let run = Run {
        dir: straight_dir.path(),
        cancel: &never,
    };
    train_in(
        model(&device, &cfg),
        &train_split,
        Some(&valid),
        &cfg,
        493,
        &device,
        Some(&run),
        &mut |e| straight.push(e.clone()),
    )
    .unwrap();
    let want = step_losses(&straight);
    assert_eq!(want.len(), 6);

    // Cancelled after step 3 (as on SIGTERM): a checkpoint, then out.
    let dir = tempfile::tempdir().unwrap();
    let cancel = AtomicBool::new(false);
    let mut first = Vec::new();
    let run = Run {
        dir: dir.path(),
        cancel: &cancel,
    };
    train_in(
        model(&device, &cfg),
        &train_split,
        Some(&valid),
        &cfg,
        493,
        &device,
        Some(&run),
        &mut |e| {
            if matches!(e, Event::Step { step: 3, .. }) {
                cancel.store(true, Ordering::SeqCst);
            }
            first.push(e.clone())
        },
    )
    .unwrap();
    assert!(
        matches!(first.last(), Some(Event::Finished { step: 3, reason, .. }) if reason == "cancelled")
    );
    assert!(dir
        .path()
        .join("checkpoint-00000003/optimizer.bin")
        .exists());
    assert!(dir
        .path()
        .join("checkpoint-00000003/adapter_model.safetensors")
        .exists());

    // A new process: fresh model, same folder — it resumes at step 3.
    let never = AtomicBool::new(false);
    let mut second = Vec::new();
    let run = Run {
        dir: dir.path(),
        cancel: &never,
    };
    train_in(
        model(&device, &cfg),
        &train_split,
        Some(&valid),
        &cfg,
        493,
        &device,
        Some(&run),
        &mut |e| second.push(e.clone()),
    )
    .unwrap();
    assert!(second
        .iter()
        .any(|e| matches!(e, Event::Resumed { step: 3, .. })));
    let mut got = step_losses(&first);
    got.extend(step_losses(&second));
    assert_eq!(got.len(), 6);
    for ((s1, a), (s2, b)) in got.iter().zip(&want) {
        assert_eq!(s1, s2);
        assert!(
            (a - b).abs() < 1e-5,
            "step {s1}: {a} resumed vs {b} straight"
        );
    }
    // Old checkpoints are pruned to save_total_limit (2) plus the best.
    let kept = std::fs::read_dir(dir.path()).unwrap().count();
    assert!(kept <= 3, "{kept} checkpoints kept");
}

#[test]
fn a_damaged_checkpoint_is_refused_with_its_path() {
    use hone_gpu::train::{train_in, Run};
    use std::sync::atomic::AtomicBool;
    let device = Default::default();
    let cfg = TrainConfig {
        num_train_epochs: 1,
        ..config()
    };
    let dir = tempfile::tempdir().unwrap();
    let never = AtomicBool::new(false);
    let run = Run {
        dir: dir.path(),
        cancel: &never,
    };
    train_in(
        model(&device, &cfg),
        &data(8),
        None,
        &cfg,
        493,
        &device,
        Some(&run),
        &mut |_| {},
    )
    .unwrap();
    let ckpt = dir.path().join("checkpoint-00000001");
    std::fs::write(ckpt.join("optimizer.bin"), b"garbage").unwrap();
    let err = train_in(
        model(&device, &cfg),
        &data(8),
        None,
        &cfg,
        493,
        &device,
        Some(&run),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("checkpoint-00000001") && err.to_string().contains("damaged"),
        "{err}"
    );
}
