//! PEFT export: the committed adapter (written by the `make_adapter_fixture`
//! example) is what `save_peft_adapter` writes, PEFT 0.21 loaded it and
//! computed the same logits as this engine, and it loads back.
#![allow(clippy::unwrap_used)]

use burn::backend::Flex;
use burn::tensor::{Int, Tensor, TensorData};
use hone_gpu::export::{load_adapter, save_peft_adapter};
use hone_gpu::model::{fixed_adapter_values, LoraConfig, Model, Target};
use hone_gpu::safetensors::Weights;
use hone_gpu::ModelConfig;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn base() -> Model<Flex> {
    let dir = root().join("llama");
    let config =
        ModelConfig::from_json(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    Model::load(&config, &Weights::open(&dir).unwrap(), &Default::default()).unwrap()
}

fn lora() -> LoraConfig {
    LoraConfig {
        r: 4,
        alpha: 8.0,
        dropout: 0.0,
        targets: vec![Target::Q, Target::V, Target::Down],
        rslora: false,
        seed: 0,
    }
}

fn logits(model: &Model<Flex>) -> Vec<f32> {
    let r = Weights::open_file(&root().join("llama/reference.safetensors")).unwrap();
    let (ids, shape) = r.read_i64("input_ids").unwrap();
    let ids: Tensor<Flex, 2, Int> = Tensor::from_data(
        TensorData::new(ids, [shape[0], shape[1]]),
        &Default::default(),
    );
    model.forward(ids).into_data().to_vec().unwrap()
}

#[test]
fn peft_loads_the_adapter_with_the_same_logits() {
    let device = Default::default();
    let model = fixed_adapter_values(base().with_lora(&lora(), &device), &device);
    let ours = logits(&model);
    let (peft, _) = Weights::open_file(&root().join("peft-adapter/peft_logits.safetensors"))
        .unwrap()
        .read("logits")
        .unwrap();
    let plain = logits(&base());
    let diff = ours
        .iter()
        .zip(&peft)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let effect = plain
        .iter()
        .zip(&peft)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        effect > 1e-3,
        "the adapter must change the logits ({effect})"
    );
    assert!(diff <= 1e-4, "max |Δ| against PEFT = {diff}");

    // What we write now is byte for byte what PEFT was given.
    let out = tempfile::tempdir().unwrap();
    save_peft_adapter(&model, &lora(), "../llama", out.path()).unwrap();
    for f in ["adapter_model.safetensors", "adapter_config.json"] {
        assert_eq!(
            std::fs::read(out.path().join(f)).unwrap(),
            std::fs::read(root().join("peft-adapter").join(f)).unwrap(),
            "{f}"
        );
    }
    assert!(!out.path().join("adapter_model.tmp").exists());

    // And it loads back onto the base model.
    let loaded = load_adapter(base(), &lora(), out.path(), &device).unwrap();
    assert_eq!(logits(&loaded), ours);
    let missing = load_adapter(base(), &lora(), &root().join("llama"), &device);
    assert!(missing.is_err());
}

#[test]
fn merged_models_load_in_transformers_with_the_adapted_logits() {
    let device = Default::default();
    let adapted = fixed_adapter_values(base().with_lora(&lora(), &device), &device);
    let with_adapter = logits(&adapted);
    let merged = hone_gpu::export::merge_adapters(adapted);
    assert!(merged.layers.iter().all(|l| l.q_proj.lora.is_none()));
    let folded = logits(&merged);
    let diff = folded
        .iter()
        .zip(&with_adapter)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff <= 1e-5, "merging changed the output by {diff}");

    let out = tempfile::tempdir().unwrap();
    hone_gpu::export::save_merged(&merged, &root().join("llama"), out.path()).unwrap();
    // Byte for byte the folder transformers loaded (fixtures/merged) …
    for f in ["model.safetensors", "config.json"] {
        assert_eq!(
            std::fs::read(out.path().join(f)).unwrap(),
            std::fs::read(root().join("merged").join(f)).unwrap(),
            "{f}"
        );
    }
    // … whose logits there match ours.
    let (theirs, _) = Weights::open_file(&root().join("merged/transformers_logits.safetensors"))
        .unwrap()
        .read("logits")
        .unwrap();
    let diff = folded
        .iter()
        .zip(&theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff <= 1e-4, "max |Δ| against transformers = {diff}");
    // And it reads back as a plain model.
    let config =
        ModelConfig::from_json(&std::fs::read_to_string(out.path().join("config.json")).unwrap())
            .unwrap();
    let reloaded: Model<Flex> =
        Model::load(&config, &Weights::open(out.path()).unwrap(), &device).unwrap();
    assert_eq!(logits(&reloaded), folded);
}

#[test]
fn a_merged_folder_keeps_the_bases_dtype() {
    let dir = root().join("llama-bf16-sharded");
    let config =
        ModelConfig::from_json(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let model =
        Model::<Flex>::load(&config, &Weights::open(&dir).unwrap(), &Default::default()).unwrap();
    let out = tempfile::tempdir().unwrap();
    hone_gpu::export::save_merged(&model, &dir, out.path()).unwrap();
    let bytes = std::fs::read(out.path().join("model.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let dtypes: std::collections::BTreeSet<&str> = header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(_, v)| v["dtype"].as_str().unwrap())
        .collect();
    assert_eq!(dtypes.into_iter().collect::<Vec<_>>(), ["BF16"]);
    // bf16 values written from bf16 weights come back bit for bit.
    let again = Weights::open(out.path()).unwrap();
    let original = Weights::open(&dir).unwrap();
    for name in [
        "model.embed_tokens.weight",
        "model.layers.1.mlp.down_proj.weight",
    ] {
        assert_eq!(
            again.read(name).unwrap(),
            original.read(name).unwrap(),
            "{name}"
        );
    }
}
