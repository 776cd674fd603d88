//! Makes Hone's demo base model, deterministically (no download): a tiny
//! Llama-architecture checkpoint for the demo tokenizer in
//! `models/hone-demo/` (made by `scripts/make_demo_tokenizer.py`). Random
//! weights from a fixed seed — it learns, it does not know anything: it is
//! the offline default for trying Hone and for CI. Running it again gives
//! byte-identical files.
//!
//!   cargo run -p hone-gpu --example make_demo_model

use hone_gpu::export::{safetensors_bytes, write_atomic};
use std::path::Path;

const VOCAB: usize = 512; // the tokenizer's 495 tokens, rounded up
const HIDDEN: usize = 64;
const INTERMEDIATE: usize = 192;
const LAYERS: usize = 2;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = HIDDEN / HEADS;

/// Normal(0, std) values from SplitMix64 + Box–Muller, keyed by name.
fn normal(name: &str, n: usize, std: f64) -> Vec<f32> {
    let mut state = name.bytes().fold(0x4f1b_bcdc_6762_0a13u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let mut unit = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (((z ^ (z >> 31)) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            let (u1, u2) = (unit(), unit());
            ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos() * std) as f32
        })
        .collect()
}

fn main() -> std::io::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/hone-demo");
    let mut tensors = Vec::new();
    let mut matrix = |name: String, rows: usize, cols: usize| {
        let values = normal(&name, rows * cols, 0.02);
        tensors.push((name, vec![rows, cols], values));
    };
    matrix("model.embed_tokens.weight".into(), VOCAB, HIDDEN);
    for i in 0..LAYERS {
        let p = format!("model.layers.{i}");
        matrix(
            format!("{p}.self_attn.q_proj.weight"),
            HEADS * HEAD_DIM,
            HIDDEN,
        );
        matrix(
            format!("{p}.self_attn.k_proj.weight"),
            KV_HEADS * HEAD_DIM,
            HIDDEN,
        );
        matrix(
            format!("{p}.self_attn.v_proj.weight"),
            KV_HEADS * HEAD_DIM,
            HIDDEN,
        );
        matrix(
            format!("{p}.self_attn.o_proj.weight"),
            HIDDEN,
            HEADS * HEAD_DIM,
        );
        matrix(format!("{p}.mlp.gate_proj.weight"), INTERMEDIATE, HIDDEN);
        matrix(format!("{p}.mlp.up_proj.weight"), INTERMEDIATE, HIDDEN);
        matrix(format!("{p}.mlp.down_proj.weight"), HIDDEN, INTERMEDIATE);
    }
    let mut ones = |name: String| tensors.push((name, vec![HIDDEN], vec![1.0f32; HIDDEN]));
    for i in 0..LAYERS {
        ones(format!("model.layers.{i}.input_layernorm.weight"));
        ones(format!("model.layers.{i}.post_attention_layernorm.weight"));
    }
    ones("model.norm.weight".into());
    write_atomic(&dir.join("model.safetensors"), &safetensors_bytes(tensors))?;
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": VOCAB,
        "hidden_size": HIDDEN,
        "intermediate_size": INTERMEDIATE,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "head_dim": HEAD_DIM,
        "hidden_act": "silu",
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "tie_word_embeddings": true,
        "bos_token_id": null,
        "eos_token_id": 494,
        "pad_token_id": 492,
        "torch_dtype": "float32",
    });
    let text = serde_json::to_string_pretty(&config).unwrap_or_default() + "\n";
    write_atomic(&dir.join("config.json"), text.as_bytes())?;
    let generation = "{\n  \"eos_token_id\": 494,\n  \"pad_token_id\": 492\n}\n";
    write_atomic(&dir.join("generation_config.json"), generation.as_bytes())
}
