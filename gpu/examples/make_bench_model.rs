//! Writes a random Llama checkpoint for benchmarks (no download): the demo
//! tokenizer, a `config.json` and f32 `model.safetensors` with normal(0,
//! 0.02) weights from a fixed seed. Sizes come from the command line:
//!
//!   cargo run --release -p hone-gpu --example make_bench_model -- DIR \
//!       [hidden] [layers] [intermediate] [heads] [kv_heads] [vocab]
//!
//! The defaults (768, 14, 2048, 12, 4, 8192) make a ~93 M-parameter model
//! (`scripts/bench-qlora-memory`).

use hone_gpu::export::{safetensors_bytes, write_atomic};
use std::path::{Path, PathBuf};

fn normal(seed: u64, n: usize, std: f64) -> Vec<f32> {
    let mut rng = hone_gpu::generate::Rng(seed);
    (0..n)
        .map(|_| {
            let (u1, u2) = (rng.uniform().max(1e-12), rng.uniform());
            ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos() * std) as f32
        })
        .collect()
}

#[allow(clippy::print_stdout)]
fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first().map(PathBuf::from) else {
        eprintln!("usage: make_bench_model DIR [hidden layers intermediate heads kv_heads vocab]");
        std::process::exit(2);
    };
    let n = |i: usize, d: usize| -> usize { args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d) };
    let (hidden, layers, inter, heads, kv, vocab) = (
        n(1, 768),
        n(2, 14),
        n(3, 2048),
        n(4, 12),
        n(5, 4),
        n(6, 8192),
    );
    let head_dim = hidden / heads;
    std::fs::create_dir_all(&dir)?;
    let mut tensors = Vec::new();
    let mut seed = 1u64;
    let mut matrix = |name: String, rows: usize, cols: usize| {
        seed += 1;
        tensors.push((name, vec![rows, cols], normal(seed, rows * cols, 0.02)));
    };
    matrix("model.embed_tokens.weight".into(), vocab, hidden);
    for i in 0..layers {
        let p = format!("model.layers.{i}");
        matrix(
            format!("{p}.self_attn.q_proj.weight"),
            heads * head_dim,
            hidden,
        );
        matrix(
            format!("{p}.self_attn.k_proj.weight"),
            kv * head_dim,
            hidden,
        );
        matrix(
            format!("{p}.self_attn.v_proj.weight"),
            kv * head_dim,
            hidden,
        );
        matrix(
            format!("{p}.self_attn.o_proj.weight"),
            hidden,
            heads * head_dim,
        );
        matrix(format!("{p}.mlp.gate_proj.weight"), inter, hidden);
        matrix(format!("{p}.mlp.up_proj.weight"), inter, hidden);
        matrix(format!("{p}.mlp.down_proj.weight"), hidden, inter);
    }
    for i in 0..layers {
        for norm in ["input_layernorm", "post_attention_layernorm"] {
            tensors.push((
                format!("model.layers.{i}.{norm}.weight"),
                vec![hidden],
                vec![1.0; hidden],
            ));
        }
    }
    tensors.push(("model.norm.weight".into(), vec![hidden], vec![1.0; hidden]));
    let params: usize = tensors.iter().map(|t| t.2.len()).sum();
    write_atomic(&dir.join("model.safetensors"), &safetensors_bytes(tensors))?;
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "head_dim": head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "tie_word_embeddings": true,
        "eos_token_id": 494,
        "pad_token_id": 492,
        "torch_dtype": "float32",
    });
    let text = serde_json::to_string_pretty(&config).unwrap_or_default() + "\n";
    write_atomic(&dir.join("config.json"), text.as_bytes())?;
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/hone-demo");
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(demo.join(f), dir.join(f))?;
    }
    println!("{} parameters in {}", params, dir.display());
    Ok(())
}
