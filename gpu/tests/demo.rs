//! The built-in demo base model (`models/hone-demo`, made by the
//! `make_demo_model` example): it loads with its tokenizer and chat
//! template, answers as transformers does, and fine-tunes.
#![allow(clippy::unwrap_used)]

use burn::backend::{Autodiff, Flex};
use hone_dataset::tokens::ChatTokenizer;
use hone_dataset::{Example, Message};
use hone_gpu::data::{prepare, DataOptions};
use hone_gpu::generate::{generate, Sampling};
use hone_gpu::model::Model;
use hone_gpu::safetensors::Weights;
use hone_gpu::train::{train, Event, TrainConfig};
use hone_gpu::ModelConfig;
use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/hone-demo")
}

fn tokenizer() -> ChatTokenizer {
    ChatTokenizer::from_files(
        &std::fs::read(dir().join("tokenizer.json")).unwrap(),
        Some(&std::fs::read(dir().join("tokenizer_config.json")).unwrap()),
        None,
    )
    .unwrap()
}

fn load<B: hone_gpu::qlora::QuantBackend>() -> (ModelConfig, Model<B>) {
    let config =
        ModelConfig::from_json(&std::fs::read_to_string(dir().join("config.json")).unwrap())
            .unwrap();
    let model = Model::load(
        &config,
        &Weights::open(&dir()).unwrap(),
        &Default::default(),
    )
    .unwrap();
    (config, model)
}

#[test]
fn the_demo_model_answers_as_transformers_does() {
    let (config, model) = load::<Flex>();
    assert_eq!(config.max_position_embeddings, 2048);
    assert_eq!(config.eos_token_ids, vec![494]);
    let t = tokenizer();
    let prompt = t
        .render_prompt(&Example {
            messages: vec![Message::new("user", "Hello")],
            category: None,
        })
        .unwrap();
    let ids = t.encode_text(&prompt).unwrap().get_ids().to_vec();
    let s = Sampling {
        max_new_tokens: 5,
        stop_ids: config.eos_token_ids.clone(),
        ..Sampling::default()
    };
    // transformers 5.24, greedy, same prompt (apply_chat_template).
    assert_eq!(
        generate(&model, &ids, &s, &Default::default()),
        vec![10, 10, 10, 10, 10]
    );
}

#[test]
fn the_demo_model_fine_tunes_with_lora() {
    type B = Autodiff<Flex>;
    let cfg = TrainConfig {
        num_train_epochs: 2,
        per_device_train_batch_size: 2,
        learning_rate: 1e-2,
        logging_steps: 1,
        lora_r: 4,
        lora_alpha: 8.0,
        ..TrainConfig::default()
    };
    let lines: String = ["Paris", "Rome", "Madrid", "Berlin"]
        .iter()
        .map(|city| {
            format!(
                "{}\n",
                serde_json::json!({"messages": [
                    {"role": "user", "content": "Name a capital city."},
                    {"role": "assistant", "content": city},
                ]})
            )
        })
        .collect();
    let data = prepare(
        &lines,
        &tokenizer(),
        DataOptions {
            max_len: 64,
            all_tokens: false,
        },
    )
    .unwrap();
    let (_, model) = load::<B>();
    let model = model.with_lora(&cfg.lora().unwrap(), &Default::default());
    let mut losses = Vec::new();
    train(
        model,
        &data,
        None,
        &cfg,
        492,
        &Default::default(),
        &mut |e| {
            if let Event::Step { loss, .. } = e {
                losses.push(*loss);
            }
        },
    )
    .unwrap();
    assert_eq!(losses.len(), 4);
    assert!(losses.iter().all(|l| l.is_finite()));
    assert!(losses[3] < losses[0], "{losses:?}");
}

#[test]
fn evaluation_reports_scores_and_answers_of_both_models() {
    let (config, model) = load::<Flex>();
    let (_, base) = load::<Flex>();
    let jsonl: String = [
        ("Capital of France?", "Paris"),
        ("Capital of Italy?", "Rome"),
        ("2 + 2?", "4"),
    ]
    .iter()
    .map(|(q, a)| {
        format!(
            "{}\n",
            serde_json::json!({"messages": [
                {"role": "system", "content": "Answer briefly."},
                {"role": "user", "content": q},
                {"role": "assistant", "content": a},
            ]})
        )
    })
    .collect();
    let s = Sampling {
        max_new_tokens: 4,
        stop_ids: config.eos_token_ids.clone(),
        ..Sampling::default()
    };
    let report = hone_gpu::evaluate::evaluate_split(
        &model,
        Some(&base),
        &tokenizer(),
        &jsonl,
        256,
        &s,
        &[],
        492,
        &Default::default(),
    )
    .unwrap();
    assert_eq!(report.examples.len(), 3);
    assert!(report.loss.is_finite() && (report.perplexity - report.loss.exp()).abs() < 1e-9);
    assert!((0.0..=1.0).contains(&report.exact_match) && (0.0..=1.0).contains(&report.token_f1));
    let first = &report.examples[0];
    assert_eq!((first.line, first.reference.as_str()), (1, "Paris"));
    assert!(
        first.prompt.ends_with("<|im_start|>assistant\n")
            && first.prompt.contains("Capital of France?")
    );
    assert!(
        !first.prompt.contains("Paris"),
        "the answer must not be in the prompt"
    );
    // The same weights answer the same way.
    assert_eq!(
        first.base_answer.as_deref(),
        Some(first.fine_tuned_answer.as_str())
    );
    assert_eq!(report.base_token_f1, Some(report.token_f1));
    let json = serde_json::to_value(&report).unwrap();
    for key in ["loss", "perplexity", "exact_match", "token_f1", "examples"] {
        assert!(json.get(key).is_some(), "{key}");
    }
}

#[test]
fn a_stop_string_cuts_the_answer() {
    let (_, model) = load::<Flex>();
    let t = tokenizer();
    let prompt = t
        .render_prompt(&Example {
            messages: vec![Message::new("user", "Hello")],
            category: None,
        })
        .unwrap();
    let ids = t.encode_text(&prompt).unwrap().get_ids().to_vec();
    let s = Sampling {
        max_new_tokens: 5,
        ..Sampling::default()
    };
    // Greedy gives five newlines (token 10); stopping at a blank line
    // ends after the second, with nothing before it.
    let full =
        hone_gpu::generate::generate_text(&model, &t, &ids, &s, &[], &Default::default()).unwrap();
    assert_eq!(full, "\n\n\n\n\n");
    let cut = hone_gpu::generate::generate_text(
        &model,
        &t,
        &ids,
        &s,
        &["\n\n".into()],
        &Default::default(),
    )
    .unwrap();
    assert_eq!(cut, "");
    let none = hone_gpu::generate::generate_text(
        &model,
        &t,
        &ids,
        &s,
        &["zzz".into()],
        &Default::default(),
    )
    .unwrap();
    assert_eq!(none, full);
}
