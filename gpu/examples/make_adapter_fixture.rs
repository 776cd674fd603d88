//! Writes `gpu/tests/fixtures/peft-adapter/`: a LoRA adapter on the `llama`
//! fixture with fixed, non-zero values, in PEFT's format, and
//! `fixtures/merged/`: the same adapter folded into the base. Run once, then
//! `python3 gpu/tests/make_fixtures.py` has PEFT load it and records its
//! logits; `tests/export.rs` checks both.
//!
//!   cargo run -p hone-gpu --example make_adapter_fixture

use burn::backend::Flex;
use hone_gpu::export::save_peft_adapter;
use hone_gpu::model::{fixed_adapter_values, Model};
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let dir = root.join("llama");
    let config =
        hone_gpu::ModelConfig::from_json(&std::fs::read_to_string(dir.join("config.json"))?)?;
    let device = Default::default();
    let weights = hone_gpu::safetensors::Weights::open(&dir)?;
    let lora = hone_gpu::model::LoraConfig {
        r: 4,
        alpha: 8.0,
        dropout: 0.0,
        targets: vec![
            hone_gpu::model::Target::Q,
            hone_gpu::model::Target::V,
            hone_gpu::model::Target::Down,
        ],
        rslora: false,
        seed: 0,
    };
    let model: Model<Flex> = fixed_adapter_values(
        Model::load(&config, &weights, &device)?.with_lora(&lora, &device),
        &device,
    );
    save_peft_adapter(&model, &lora, "../llama", &root.join("peft-adapter"))?;
    let merged = hone_gpu::export::merge_adapters(model);
    hone_gpu::export::save_merged(&merged, &dir, &root.join("merged"))?;
    Ok(())
}
