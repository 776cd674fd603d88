//! GGUF export against llama.cpp: the files Hone writes today are the
//! bytes `make_gguf_fixtures.py` gave llama.cpp (SHA-256), llama.cpp's f16
//! greedy ids equal Hone's, its q8_0 logits are within tolerance of
//! Hone's with ≥ 90 % top-1 agreement, its tokenizer's ids equal Hugging
//! Face's, and the layout (metadata, tensor names, types, shapes and
//! values) is what llama.cpp's converter writes.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use burn::backend::Flex;
use burn::tensor::{Int, Tensor, TensorData};
use hone_gpu::generate::{generate, Sampling};
use hone_gpu::gguf::{self, GgufType, TensorType, Value};
use hone_gpu::model::{Model, Target};
use hone_gpu::safetensors::Weights;
use hone_gpu::ModelConfig;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn fixture() -> serde_json::Value {
    let text = std::fs::read_to_string(root().join("gpu/tests/fixtures/gguf.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// The fixture checkpoint with the demo tokenizer copied in, as the
/// script prepares it.
fn folder(case: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let from = root().join("gpu/tests/fixtures").join(case);
    for e in std::fs::read_dir(&from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(root().join("models/hone-demo").join(f), dir.path().join(f)).unwrap();
    }
    dir
}

fn load(dir: &Path) -> (ModelConfig, Model<Flex>) {
    let config =
        ModelConfig::from_json(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let model = Model::load(&config, &Weights::open(dir).unwrap(), &Default::default()).unwrap();
    (config, model)
}

fn export(case: &str, ty: GgufType) -> (tempfile::TempDir, ModelConfig, Model<Flex>, Vec<u8>) {
    let dir = folder(case);
    let (config, model) = load(dir.path());
    let path = dir.path().join("out.gguf");
    gguf::write_gguf(&model, &config, dir.path(), &path, ty, case).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    (dir, config, model, bytes)
}

fn sha256(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

const CASES: [&str; 3] = ["llama", "qwen2", "mistral"];

#[test]
fn the_files_are_the_bytes_llama_cpp_ran_and_f16_greedy_ids_equal_hones() {
    let f = fixture();
    let prompt = ids(&f["prompt"]);
    for case in CASES {
        let (_dir, _, model, bytes) = export(case, GgufType::F16);
        let want = &f["cases"][case]["f16"];
        assert_eq!(sha256(&bytes), want["sha256"].as_str().unwrap(), "{case}");
        let greedy = generate(
            &model,
            &prompt,
            &Sampling {
                max_new_tokens: 32,
                temperature: 0.0,
                stop_ids: vec![],
                ..Sampling::default()
            },
            &Default::default(),
        );
        assert_eq!(greedy, ids(&want["greedy"]), "{case}: Hone's greedy ids");
    }
}

/// The tolerance on q8_0 logits: 8-bit weights move these tiny models'
/// logits by at most 0.003 (measured on the three fixtures; the logits
/// themselves span about ±0.5); 0.02 is the bound.
const Q8_TOLERANCE: f32 = 0.02;

#[test]
fn q8_0_logits_are_within_tolerance_of_hones_with_top_1_agreement() {
    let f = fixture();
    let prompt = ids(&f["prompt"]);
    for case in CASES {
        let (_dir, _, model, bytes) = export(case, GgufType::Q8_0);
        let want = &f["cases"][case]["q8_0"];
        assert_eq!(sha256(&bytes), want["sha256"].as_str().unwrap(), "{case}");
        let v: Vec<i64> = prompt.iter().map(|t| i64::from(*t)).collect();
        let input = Tensor::<Flex, 2, Int>::from_data(
            TensorData::new(v, [1, prompt.len()]),
            &Default::default(),
        );
        let ours: Vec<f32> = model.forward(input).into_data().to_vec().unwrap();
        let rows = want["logits"].as_array().unwrap();
        let vocab = ours.len() / prompt.len();
        let (mut worst, mut agree) = (0.0f32, 0);
        for (p, row) in rows.iter().enumerate() {
            let theirs: Vec<f32> = row
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            let mine = &ours[p * vocab..(p + 1) * vocab];
            for (a, b) in mine.iter().zip(&theirs) {
                worst = worst.max((a - b).abs());
            }
            let argmax = |x: &[f32]| (0..x.len()).max_by(|&i, &j| x[i].total_cmp(&x[j])).unwrap();
            agree += usize::from(argmax(mine) == argmax(&theirs));
        }
        println!(
            "{case} q8_0: max |Δlogit| {worst:.4}, top-1 agreement {agree}/{}",
            rows.len()
        );
        assert!(worst < Q8_TOLERANCE, "{case}: {worst}");
        assert!(
            agree * 10 >= rows.len() * 9,
            "{case}: {agree}/{}",
            rows.len()
        );
    }
}

#[test]
fn llama_cpps_tokenizer_gives_hugging_faces_ids() {
    let f = fixture();
    let demo = root().join("models/hone-demo");
    let tok = hone_dataset::tokens::ChatTokenizer::from_files(
        &std::fs::read(demo.join("tokenizer.json")).unwrap(),
        Some(&std::fs::read(demo.join("tokenizer_config.json")).unwrap()),
        None,
    )
    .unwrap();
    let cases = f["tokenizer"].as_array().unwrap();
    assert!(cases.len() >= 5);
    for c in cases {
        let text = c["text"].as_str().unwrap();
        let ours = tok.encode_text(text).unwrap().get_ids().to_vec();
        assert_eq!(ours, ids(&c["hugging_face"]), "{text:?}");
        assert_eq!(ours, ids(&c["llama_cpp"]), "{text:?}: llama.cpp differs");
    }
}

fn meta<'a>(g: &'a gguf::Gguf, key: &str) -> &'a Value {
    g.metadata.get(key).unwrap_or_else(|| panic!("no {key}"))
}

#[test]
fn the_layout_is_the_converters() {
    for case in CASES {
        for ty in [GgufType::F16, GgufType::Q8_0] {
            let (dir, config, model, bytes) = export(case, ty);
            let g = gguf::read(&bytes).unwrap();
            assert_eq!(g.version, 3);
            let arch = if case == "qwen2" { "qwen2" } else { "llama" };
            assert_eq!(meta(&g, "general.architecture").as_str(), Some(arch));
            assert_eq!(g.keys[0], "general.architecture");
            for (k, v) in [
                ("block_count", config.num_hidden_layers),
                ("embedding_length", config.hidden_size),
                ("feed_forward_length", config.intermediate_size),
                ("attention.head_count", config.num_attention_heads),
                ("attention.head_count_kv", config.num_key_value_heads),
                ("context_length", config.max_position_embeddings),
            ] {
                assert_eq!(
                    meta(&g, &format!("{arch}.{k}")).as_u32(),
                    Some(v as u32),
                    "{k}"
                );
            }
            assert_eq!(meta(&g, "tokenizer.ggml.model").as_str(), Some("gpt2"));
            assert_eq!(meta(&g, "tokenizer.ggml.pre").as_str(), Some("gpt-2"));
            let Value::StrArray(tokens) = meta(&g, "tokenizer.ggml.tokens") else {
                panic!()
            };
            assert_eq!(tokens.len(), config.vocab_size);
            assert_eq!(tokens[493], "<|im_start|>");
            assert_eq!(tokens[500], "[PAD500]");
            let Value::I32Array(types) = meta(&g, "tokenizer.ggml.token_type") else {
                panic!()
            };
            assert_eq!((types[0], types[493], types[500]), (1, 3, 5));
            let template = meta(&g, "tokenizer.chat_template").as_str().unwrap();
            assert!(template.contains("<|im_start|>"));
            // Tensors: names, types (1-D in f32), GGUF's innermost-first
            // dimensions, aligned offsets, and values that dequantize to
            // Hone's weights (query rows permuted for `llama`).
            let names: Vec<&str> = g.tensors.iter().map(|t| t.name.as_str()).collect();
            assert_eq!(names[0], "token_embd.weight");
            assert_eq!(names.contains(&"output.weight"), case == "mistral");
            assert_eq!(names.contains(&"blk.1.attn_q.bias"), case == "qwen2");
            let want_ty = match ty {
                GgufType::F16 => TensorType::F16,
                GgufType::Q8_0 => TensorType::Q8_0,
            };
            for t in &g.tensors {
                assert_eq!(t.offset % 32, 0, "{}", t.name);
                let expect = if t.dims.len() == 1 {
                    TensorType::F32
                } else {
                    want_ty
                };
                assert_eq!(t.ty, expect, "{}", t.name);
            }
            let q = g
                .tensors
                .iter()
                .find(|t| t.name == "blk.0.attn_q.weight")
                .unwrap();
            let [out, inp] = model.layers[0].linear(Target::Q).dims();
            assert_eq!(q.dims, vec![inp as u64, out as u64]);
            let got = g.values(&bytes, "blk.0.attn_q.weight").unwrap();
            let w: Vec<f32> = model.layers[0]
                .linear(Target::Q)
                .dense_weight()
                .into_data()
                .to_vec()
                .unwrap();
            let hd = config.head_dim;
            for row in 0..out {
                // llama: row h·hd + 2j + t holds Hugging Face's h·hd + t·hd/2 + j.
                let (h, r) = (row / hd, row % hd);
                let from = if arch == "llama" {
                    h * hd + (r % 2) * (hd / 2) + r / 2
                } else {
                    row
                };
                let source = &w[from * inp..(from + 1) * inp];
                // f16: half a unit in the last place; q8_0: half a step of
                // the block's scale (at most the row's max / 127), and the
                // scale's own f16 rounding.
                let step = source.iter().fold(0.0f32, |m, x| m.max(x.abs())) / 127.0;
                for (c, b) in source.iter().enumerate() {
                    let a = got[row * inp + c];
                    let tol = match ty {
                        GgufType::F16 => b.abs() / 1024.0 + 1e-7,
                        GgufType::Q8_0 => step * 0.51 + b.abs() / 1024.0,
                    };
                    assert!((a - b).abs() <= tol, "{case} {row},{c}: {a} {b}");
                }
            }
            let norm = g.values(&bytes, "output_norm.weight").unwrap();
            let want: Vec<f32> = model.norm.weight.val().into_data().to_vec().unwrap();
            assert_eq!(norm, want);
            drop(dir);
        }
    }
}

#[test]
fn an_unknown_architecture_or_tokenizer_is_refused_by_name_and_nothing_is_written() {
    let dir = folder("llama");
    let (config, model) = load(dir.path());
    let out = dir.path().join("out.gguf");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
            .unwrap();
    json["architectures"] = serde_json::json!(["PhiForCausalLM"]);
    std::fs::write(dir.path().join("config.json"), json.to_string()).unwrap();
    let e = gguf::write_gguf(&model, &config, dir.path(), &out, GgufType::F16, "x").unwrap_err();
    assert!(e.to_string().contains("PhiForCausalLM"), "{e}");
    assert!(!out.exists());

    let dir = folder("llama");
    let mut tok: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("tokenizer.json")).unwrap())
            .unwrap();
    tok["model"]["byte_fallback"] = serde_json::json!(true);
    std::fs::write(dir.path().join("tokenizer.json"), tok.to_string()).unwrap();
    let e = gguf::write_gguf(&model, &config, dir.path(), &out, GgufType::F16, "x").unwrap_err();
    assert!(e.to_string().contains("byte fallback"), "{e}");
    assert!(!dir.path().join("out.gguf").exists());
}
