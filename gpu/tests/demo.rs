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

fn chat_line(system: &str, q: &str, a: Option<&str>) -> String {
    let mut messages = vec![
        serde_json::json!({"role": "system", "content": system}),
        serde_json::json!({"role": "user", "content": q}),
    ];
    if let Some(a) = a {
        messages.push(serde_json::json!({"role": "assistant", "content": a}));
    }
    format!("{}\n", serde_json::json!({ "messages": messages }))
}

fn eval_options(config: &ModelConfig, seed: u64) -> hone_gpu::evaluate::EvalOptions {
    hone_gpu::evaluate::EvalOptions {
        max_len: 256,
        sampling: Sampling {
            max_new_tokens: 4,
            stop_ids: config.eos_token_ids.clone(),
            ..Sampling::default()
        },
        stop_strings: vec![],
        pad_id: 492,
        seed,
        resamples: 300,
    }
}

#[test]
fn evaluation_reports_scores_intervals_and_answers_of_both_models() {
    use hone_protocol::evaluation::{Metric, Structure};
    let (config, model) = load::<Flex>();
    let (_, base) = load::<Flex>();
    let jsonl: String = [
        chat_line("Answer briefly.", "Capital of France?", Some("Paris")),
        chat_line("Answer briefly.", "Capital of Italy?", Some("Rome")),
        chat_line("Answer briefly.", "2 + 2?", Some("4")),
        chat_line(
            "Code the visit.",
            "Cough, 3 days.",
            Some("ICD-10: J20.9\nCPT: 99213"),
        ),
        chat_line(
            "Code the visit.",
            "Cough, as JSON.",
            Some(r#"{"code": "J20.9"}"#),
        ),
        chat_line("Answer briefly.", "Nobody answered this.", None),
    ]
    .concat();
    let mut seen = Vec::new();
    let report = hone_gpu::evaluate::evaluate_split(
        &model,
        Some(&base),
        &tokenizer(),
        &jsonl,
        &eval_options(&config, 7),
        &Default::default(),
        &mut |done, total| seen.push((done, total)),
    )
    .unwrap();
    assert_eq!(seen, (1..=6).map(|d| (d, 6)).collect::<Vec<_>>());
    assert_eq!(
        (report.examples, report.answered, report.items.len()),
        (6, 5, 5)
    );
    assert!(report.notes[0].contains("1 of 6"), "{:?}", report.notes);
    let first = &report.items[0];
    assert_eq!((first.line, first.reference.as_str()), (1, "Paris"));
    assert!(
        first.prompt.ends_with("<|im_start|>assistant\n")
            && first.prompt.contains("Capital of France?")
    );
    assert!(
        !first.prompt.contains("Paris"),
        "the answer must not be in the prompt"
    );
    assert!(first.tuned.loss.is_some_and(f64::is_finite));
    // The same weights answer the same way, with the same loss.
    for item in &report.items {
        let base = item.base.as_ref().unwrap();
        assert_eq!((&base.text, base.loss), (&item.tuned.text, item.tuned.loss));
    }
    // The loss is the split's token-weighted mean, as training computes it
    // (the unanswered example counts in it).
    let data = prepare(
        &jsonl,
        &tokenizer(),
        DataOptions {
            max_len: 256,
            all_tokens: false,
        },
    )
    .unwrap();
    let split_loss = hone_gpu::train::mean_loss(&model, &data, 8, 492, &Default::default());
    let loss = report.metric(Metric::Loss).unwrap();
    assert!(
        (loss.tuned.value - split_loss).abs() < 1e-4,
        "{loss:?} vs {split_loss}"
    );
    let ppl = report.metric(Metric::Perplexity).unwrap();
    assert!((ppl.tuned.value - loss.tuned.value.exp()).abs() < 1e-9);
    for row in &report.metrics {
        let (t, d) = (row.tuned, row.difference.unwrap());
        assert!(t.low <= t.value && t.value <= t.high, "{row:?}");
        // Identical models: a difference of exactly zero on every resample.
        assert_eq!((d.value, d.low, d.high), (0.0, 0.0, 0.0), "{row:?}");
    }
    assert!(loss.tuned.high > loss.tuned.low, "{loss:?}");
    // Two structured references: label lines and a JSON object.
    assert_eq!(report.items[3].structure, Structure::Fields);
    assert_eq!(report.items[4].structure, Structure::Json);
    let names: Vec<&str> = report.items[3]
        .tuned
        .fields
        .iter()
        .map(|f| f.field.as_str())
        .collect();
    assert_eq!(names, ["ICD-10", "CPT"]);
    for m in [Metric::AllFieldsRight, Metric::FormatConformance] {
        assert_eq!(report.metric(m).unwrap().examples, 2, "{m:?}");
    }
    let fields: Vec<(&str, usize)> = report
        .fields
        .iter()
        .map(|f| (f.field.as_str(), f.examples))
        .collect();
    assert_eq!(fields, [("ICD-10", 1), ("CPT", 1), ("code", 1)]);
    assert_eq!(report.metric(Metric::ExactMatch).unwrap().examples, 5);

    // Deterministic for a seed; another seed draws other resamples.
    let again = |seed| {
        hone_gpu::evaluate::evaluate_split(
            &model,
            Some(&base),
            &tokenizer(),
            &jsonl,
            &eval_options(&config, seed),
            &Default::default(),
            &mut |_, _| {},
        )
        .unwrap()
    };
    assert_eq!(again(7), report);
    let other = again(8);
    assert_eq!(
        other.metric(Metric::Loss).unwrap().tuned.value,
        loss.tuned.value
    );
    assert_ne!(other.metric(Metric::Loss).unwrap().tuned, loss.tuned);
    // The JSON the server stores reads back the same.
    let json = serde_json::to_string(&report).unwrap();
    assert_eq!(
        serde_json::from_str::<hone_protocol::evaluation::Report>(&json).unwrap(),
        report
    );
}

#[test]
fn a_split_without_answers_is_evaluated_on_its_loss_alone() {
    use hone_protocol::evaluation::Metric;
    let (config, model) = load::<Flex>();
    let jsonl = [
        chat_line("Answer briefly.", "Capital of France?", None),
        chat_line("Answer briefly.", "Capital of Italy?", None),
    ]
    .concat();
    let report = hone_gpu::evaluate::evaluate_split(
        &model,
        None,
        &tokenizer(),
        &jsonl,
        &eval_options(&config, 0),
        &Default::default(),
        &mut |_, _| {},
    )
    .unwrap();
    assert!(
        report.notes[0].contains("no assistant answers"),
        "{:?}",
        report.notes
    );
    assert!(report.items.is_empty());
    let metrics: Vec<Metric> = report.metrics.iter().map(|m| m.metric).collect();
    assert_eq!(metrics, [Metric::Loss, Metric::Perplexity]);
    let loss = report.metric(Metric::Loss).unwrap();
    assert!(loss.tuned.value.is_finite() && loss.base.is_none() && loss.difference.is_none());
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
