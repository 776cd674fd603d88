//! Generation with the key/value cache: the same logits as a full forward
//! pass, and transformers' greedy output on the llama fixture.
#![allow(clippy::unwrap_used)]

use burn::backend::Flex;
use burn::tensor::{Int, Tensor, TensorData};
use hone_gpu::generate::{generate, Sampling};
use hone_gpu::model::{KvCache, Model};
use hone_gpu::safetensors::Weights;
use hone_gpu::ModelConfig;
use std::path::Path;

fn llama() -> Model<Flex> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama");
    let config =
        ModelConfig::from_json(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    Model::load(&config, &Weights::open(&dir).unwrap(), &Default::default()).unwrap()
}

fn reference() -> (Vec<u32>, Vec<u32>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama/greedy.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let ids = |k: &str| -> Vec<u32> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    (ids("prompt"), ids("new"))
}

fn tensor(ids: &[u32]) -> Tensor<Flex, 2, Int> {
    let v: Vec<i64> = ids.iter().map(|t| i64::from(*t)).collect();
    Tensor::from_data(TensorData::new(v, [1, ids.len()]), &Default::default())
}

#[test]
fn the_cache_gives_the_same_logits_as_a_full_pass() {
    let model = llama();
    let (prompt, _) = reference();
    let full: Vec<f32> = model.forward(tensor(&prompt)).into_data().to_vec().unwrap();
    let mut cache = KvCache::new(model.layers.len());
    let mut stepped: Vec<f32> = model
        .forward_cached(tensor(&prompt[..5]), &mut cache)
        .into_data()
        .to_vec()
        .unwrap();
    for t in &prompt[5..] {
        let step: Vec<f32> = model
            .forward_cached(tensor(&[*t]), &mut cache)
            .into_data()
            .to_vec()
            .unwrap();
        stepped.extend(step);
    }
    assert_eq!(cache.len(), prompt.len());
    let diff = full
        .iter()
        .zip(&stepped)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert_eq!(full.len(), stepped.len());
    assert!(diff < 1e-5, "{diff}");
}

#[test]
fn greedy_generation_equals_transformers() {
    let model = llama();
    let (prompt, new) = reference();
    let s = Sampling {
        max_new_tokens: 12,
        ..Sampling::default()
    };
    assert_eq!(generate(&model, &prompt, &s, &Default::default()), new);
    // A stop token ends the answer (and is kept).
    let stop = Sampling {
        stop_ids: vec![new[0]],
        ..s.clone()
    };
    assert_eq!(
        generate(&model, &prompt, &stop, &Default::default()),
        vec![new[0]]
    );
}

#[test]
fn sampling_is_reproducible_for_a_seed() {
    let model = llama();
    let (prompt, _) = reference();
    let s = |seed| Sampling {
        max_new_tokens: 10,
        temperature: 1.5,
        top_p: 0.95,
        seed,
        ..Sampling::default()
    };
    let a = generate(&model, &prompt, &s(1), &Default::default());
    assert_eq!(a, generate(&model, &prompt, &s(1), &Default::default()));
    assert_eq!(a.len(), 10);
    assert!(a.iter().all(|t| *t < 512));
    let others: Vec<Vec<u32>> = (2..6)
        .map(|seed| generate(&model, &prompt, &s(seed), &Default::default()))
        .collect();
    assert!(
        others.iter().any(|o| *o != a),
        "different seeds should differ somewhere"
    );
}
