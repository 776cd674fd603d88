//! Logits of each fixture checkpoint against transformers' (float32), made
//! by `gpu/tests/make_fixtures.py`: max |difference| ≤ 1e-4.
#![allow(clippy::unwrap_used)]

use burn::backend::Flex;
use burn::tensor::{Int, Tensor, TensorData};
use hone_gpu::model::Model;
use hone_gpu::safetensors::Weights;
use hone_gpu::ModelConfig;
use std::path::Path;

fn check(name: &str) -> f32 {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let config =
        ModelConfig::from_json(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let device = Default::default();
    let model: Model<Flex> = Model::load(&config, &Weights::open(&dir).unwrap(), &device).unwrap();
    let reference = Weights::open_file(&dir.join("reference.safetensors")).unwrap();
    let (ids, shape) = reference.read_i64("input_ids").unwrap();
    let (want, want_shape) = reference.read("logits").unwrap();
    let ids: Tensor<Flex, 2, Int> =
        Tensor::from_data(TensorData::new(ids, [shape[0], shape[1]]), &device);
    let logits = model.forward(ids);
    assert_eq!(logits.dims().to_vec(), want_shape);
    let got: Vec<f32> = logits.into_data().to_vec().unwrap();
    assert_eq!(got.len(), want.len());
    // NaN-aware: `f32::max` would silently skip a NaN.
    got.iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, |m: f32, d| {
            if d.is_nan() || m.is_nan() {
                f32::NAN
            } else {
                m.max(d)
            }
        })
}

#[test]
fn logits_match_transformers() {
    let diffs: Vec<(&str, f32)> = ["llama", "llama-bf16-sharded", "mistral", "qwen2"]
        .into_iter()
        .map(|name| (name, check(name)))
        .collect();
    assert!(
        diffs.iter().all(|(_, d)| *d <= 1e-4),
        "max |Δ| per checkpoint: {diffs:?}"
    );
}

#[test]
fn padding_leaves_real_positions_unchanged() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen2");
    let config =
        ModelConfig::from_json(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let device = Default::default();
    let model: Model<Flex> = Model::load(&config, &Weights::open(&dir).unwrap(), &device).unwrap();
    let short: Tensor<Flex, 2, Int> =
        Tensor::from_data(TensorData::new(vec![5i64, 17, 300, 42], [1, 4]), &device);
    let alone: Vec<f32> = model.forward(short).into_data().to_vec().unwrap();
    // The same sequence right-padded in a batch beside a longer one.
    let ids: Tensor<Flex, 2, Int> = Tensor::from_data(
        TensorData::new(vec![5i64, 17, 300, 42, 0, 0, 9, 8, 7, 6, 5, 4], [2, 6]),
        &device,
    );
    let attention: Tensor<Flex, 2> = Tensor::from_data(
        TensorData::new(
            vec![1f32, 1., 1., 1., 0., 0., 1., 1., 1., 1., 1., 1.],
            [2, 6],
        ),
        &device,
    );
    let batched: Vec<f32> = model
        .forward_masked(ids, Some(attention))
        .narrow(0, 0, 1)
        .narrow(1, 0, 4)
        .into_data()
        .to_vec()
        .unwrap();
    let diff = alone
        .iter()
        .zip(&batched)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(batched.iter().all(|v| v.is_finite()));
    assert!(diff < 1e-5, "{diff}");
}
