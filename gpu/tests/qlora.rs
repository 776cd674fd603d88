//! QLoRA on the fixture checkpoints: the projections load as NF4 (and
//! nothing else does), the on-the-fly dequantization's own backward gives
//! the same gradients as autodiff through the dequantized dense weights,
//! training moves only the adapters, and merging yields a dense model with
//! the same logits.
#![allow(clippy::unwrap_used)]

use burn::backend::{Autodiff, Flex};
use burn::module::Param;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::{Int, Tensor, TensorData};
use hone_gpu::export::{merge_adapters, save_merged, save_peft_adapter};
use hone_gpu::model::{causal_lm_loss, fixed_adapter_values, LoraConfig, Model, Target};
use hone_gpu::qlora::{QuantBackend, QuantConfig};
use hone_gpu::safetensors::Weights;
use hone_gpu::ModelConfig;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn config(dir: &Path) -> ModelConfig {
    ModelConfig::from_json(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

fn load<B: QuantBackend>(name: &str, quant: Option<QuantConfig>, device: &B::Device) -> Model<B> {
    let dir = fixture(name);
    Model::load_quantized(&config(&dir), &Weights::open(&dir).unwrap(), quant, device).unwrap()
}

/// The same model with every NF4 projection replaced by its dequantized
/// dense weight.
fn densified<B: QuantBackend>(mut model: Model<B>) -> Model<B> {
    for layer in &mut model.layers {
        for t in Target::ALL {
            let l = layer.linear_mut(t);
            if l.nf4.is_some() {
                l.weight = Some(Param::from_tensor(l.dense_weight()));
                l.nf4 = None;
            }
        }
    }
    model
}

fn ids<B: QuantBackend>(name: &str, device: &B::Device) -> Tensor<B, 2, Int> {
    let r = Weights::open_file(&fixture(name).join("reference.safetensors")).unwrap();
    let (ids, shape) = r.read_i64("input_ids").unwrap();
    Tensor::from_data(TensorData::new(ids, [shape[0], shape[1]]), device)
}

fn lora() -> LoraConfig {
    LoraConfig {
        r: 4,
        alpha: 8.0,
        dropout: 0.0,
        targets: Target::ALL.to_vec(),
        rslora: false,
        seed: 3,
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

fn values<B: QuantBackend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().to_vec().unwrap()
}

#[test]
fn projections_load_as_nf4_and_the_rest_stays_dense() {
    let device = Default::default();
    let model: Model<Flex> = load("llama", Some(QuantConfig::default()), &device);
    let (mut quantized, mut stored) = (0usize, 0usize);
    for layer in &model.layers {
        for t in Target::ALL {
            let l = layer.linear(t);
            let q = l.nf4.as_ref().expect("an NF4 projection");
            assert!(l.weight.is_none(), "{t:?} kept a dense copy");
            quantized += q.out * q.inp;
            stored += q.stored_bytes();
        }
    }
    let per = stored as f64 / quantized as f64;
    assert!(per <= 0.56, "{per} bytes per base parameter");
    // The tied head reads the embedding, which stays dense.
    assert!(model.lm_head.is_none());
    // Quantization error on a random Llama: logits close to the dense
    // model's, not equal.
    let dense: Model<Flex> = load("llama", None, &device);
    let ids = ids::<Flex>("llama", &device);
    let d = max_diff(
        &values(model.forward(ids.clone())),
        &values(dense.forward(ids)),
    );
    assert!(d > 0.0 && d < 0.5, "NF4 vs f32 logits: max |Δ| {d}");
}

#[test]
fn gradients_through_nf4_equal_autodiff_through_the_dequantized_weights() {
    type B = Autodiff<Flex>;
    let device = Default::default();
    // Block 48: 64×64 and 64×128 weights end in a partial block.
    let quant = QuantConfig {
        block: 48,
        double: true,
    };
    let q = fixed_adapter_values(
        load::<B>("qwen2", Some(quant), &device).with_lora(&lora(), &device),
        &device,
    );
    let d = fixed_adapter_values(
        densified(load::<B>("qwen2", Some(quant), &device)).with_lora(&lora(), &device),
        &device,
    );
    let batch = ids::<B>("qwen2", &device);
    let mask = Tensor::<B, 2>::ones(batch.dims(), &device);
    let loss_q = causal_lm_loss(q.forward(batch.clone()), batch.clone(), mask.clone());
    let loss_d = causal_lm_loss(d.forward(batch.clone()), batch, mask);
    let (lq, ld) = (loss_q.clone().into_scalar(), loss_d.clone().into_scalar());
    assert!((lq - ld).abs() <= 1e-5, "loss {lq} vs {ld}");
    let gq = GradientsParams::from_grads(loss_q.backward(), &q);
    let gd = GradientsParams::from_grads(loss_d.backward(), &d);
    let mut compared = 0;
    for (lq, ld) in q.layers.iter().zip(&d.layers) {
        for t in Target::ALL {
            let (aq, ad) = (
                lq.linear(t).lora.as_ref().unwrap(),
                ld.linear(t).lora.as_ref().unwrap(),
            );
            for (pq, pd) in [(&aq.a, &ad.a), (&aq.b, &ad.b)] {
                let a = values(gq.get::<Flex, 2>(pq.id).expect("an adapter gradient"));
                let b = values(gd.get::<Flex, 2>(pd.id).unwrap());
                let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
                assert!(scale > 0.0, "{t:?}: zero gradient");
                let diff = max_diff(&a, &b);
                assert!(
                    diff <= 1e-4 * scale,
                    "{t:?}: max |Δ| {diff} (scale {scale})"
                );
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 2 * 7 * 2);
}

#[test]
fn training_moves_only_the_adapters_and_lowers_the_loss() {
    type B = Autodiff<Flex>;
    let device = Default::default();
    let mut model: Model<B> =
        load::<B>("llama", Some(QuantConfig::default()), &device).with_lora(&lora(), &device);
    let codes = |m: &Model<B>| -> Vec<i32> {
        m.layers[1]
            .down_proj
            .nf4
            .as_ref()
            .unwrap()
            .codes
            .clone()
            .into_data()
            .to_vec()
            .unwrap()
    };
    let before = codes(&model);
    let batch = ids::<B>("llama", &device);
    let mask = Tensor::<B, 2>::ones(batch.dims(), &device);
    let mut optim = AdamWConfig::new()
        .with_weight_decay(0.0)
        .init::<B, Model<B>>();
    let mut losses = Vec::new();
    for _ in 0..25 {
        let loss = causal_lm_loss(model.forward(batch.clone()), batch.clone(), mask.clone());
        losses.push(loss.clone().into_scalar());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(3e-2, model, grads);
    }
    assert!(losses[24] < 0.97 * losses[0], "{losses:?}");
    assert_eq!(before, codes(&model), "the frozen NF4 base moved");
    let b = values(model.layers[0].q_proj.lora.as_ref().unwrap().b.val());
    assert!(b.iter().any(|v| *v != 0.0), "the adapter did not train");
    // PEFT's count for r = 4 on all seven projections of this model.
    assert_eq!(model.trainable_params(), 8192);
}

#[test]
fn merging_dequantizes_and_keeps_the_logits_and_the_adapter_export_is_loras() {
    let device = Default::default();
    let tmp = tempfile::tempdir().unwrap();
    let q: Model<Flex> = fixed_adapter_values(
        load::<Flex>("llama", Some(QuantConfig::default()), &device).with_lora(&lora(), &device),
        &device,
    );
    let ids = ids::<Flex>("llama", &device);
    let adapted = values(q.forward(ids.clone()));

    // The PEFT adapter is the same files as LoRA's on a dense base with
    // the same adapters.
    let dense = fixed_adapter_values(
        densified(load::<Flex>("llama", Some(QuantConfig::default()), &device))
            .with_lora(&lora(), &device),
        &device,
    );
    save_peft_adapter(&q, &lora(), "base", &tmp.path().join("qlora")).unwrap();
    save_peft_adapter(&dense, &lora(), "base", &tmp.path().join("lora")).unwrap();
    for file in ["adapter_model.safetensors", "adapter_config.json"] {
        assert_eq!(
            std::fs::read(tmp.path().join("qlora").join(file)).unwrap(),
            std::fs::read(tmp.path().join("lora").join(file)).unwrap(),
            "{file}"
        );
    }

    let merged = merge_adapters(q);
    for layer in &merged.layers {
        for t in Target::ALL {
            let l = layer.linear(t);
            assert!(l.nf4.is_none() && l.weight.is_some() && l.lora.is_none());
        }
    }
    let d = max_diff(&adapted, &values(merged.forward(ids.clone())));
    assert!(d <= 1e-5, "merged vs adapted: max |Δ| {d}");
    let out = tmp.path().join("merged");
    save_merged(&merged, &fixture("llama"), &out).unwrap();
    let reloaded: Model<Flex> =
        Model::load(&config(&out), &Weights::open(&out).unwrap(), &device).unwrap();
    let d = max_diff(&adapted, &values(reloaded.forward(ids)));
    assert!(d <= 1e-5, "saved merged vs adapted: max |Δ| {d}");
}

#[test]
fn a_sharded_bf16_checkpoint_quantizes_as_it_is_read() {
    let device = Default::default();
    let name = "llama-bf16-sharded";
    let q: Model<Flex> = load(name, Some(QuantConfig::default()), &device);
    assert!(q
        .layers
        .iter()
        .all(|l| Target::ALL.iter().all(|t| l.linear(*t).nf4.is_some())));
    let dense: Model<Flex> = load(name, None, &device);
    let ids = ids::<Flex>(name, &device);
    let d = max_diff(&values(q.forward(ids.clone())), &values(dense.forward(ids)));
    assert!(d > 0.0 && d < 0.5, "NF4 vs bf16 logits: max |Δ| {d}");
}

/// Relative L2 distance of `a` from `b`.
fn relative(a: &[f32], b: &[f32]) -> f32 {
    let d: f32 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let n: f32 = b.iter().map(|y| y * y).sum();
    (d / n).sqrt()
}

/// bf16 products (the default on a GPU), here on the CPU backend: frozen
/// dense weights are held in bf16, adapters and their gradients stay f32,
/// and loss and gradients are within bf16's precision of the f32 run —
/// for a dense (LoRA) and an NF4 (QLoRA) base.
#[test]
fn bf16_products_keep_f32_adapters_and_stay_close_to_f32() {
    use burn::tensor::DType;
    type B = Autodiff<Flex>;
    let device = Default::default();
    for quant in [None, Some(QuantConfig::default())] {
        let build = |bf16: bool| {
            fixed_adapter_values(
                load::<B>("llama", quant, &device).with_lora(&lora(), &device),
                &device,
            )
            .with_bf16(bf16)
        };
        let (f, h) = (build(false), build(true));
        let q = &h.layers[0].q_proj;
        match quant {
            None => assert_eq!(q.weight.as_ref().unwrap().val().dtype(), DType::BF16),
            Some(_) => assert!(q.nf4.is_some() && q.weight.is_none()),
        }
        assert_eq!(
            h.embed_tokens.val().dtype(),
            DType::BF16,
            "frozen embedding"
        );
        assert_eq!(h.layers[0].input_layernorm.weight.val().dtype(), DType::F32);
        let adapter = q.lora.as_ref().unwrap();
        assert_eq!(adapter.a.val().dtype(), DType::F32);
        let batch = ids::<B>("llama", &device);
        let mask = Tensor::<B, 2>::ones(batch.dims(), &device);
        let lf = causal_lm_loss(f.forward(batch.clone()), batch.clone(), mask.clone());
        let lh = causal_lm_loss(h.forward(batch.clone()), batch, mask);
        let (vf, vh) = (lf.clone().into_scalar(), lh.clone().into_scalar());
        assert_eq!(lh.dtype(), DType::F32);
        // Different (the products really ran in bf16), and close.
        assert!(
            vf != vh && (vf - vh).abs() <= 1e-3 * vf.abs(),
            "{quant:?}: loss f32 {vf}, bf16 {vh}"
        );
        let (gf, gh) = (lf.backward(), lh.backward());
        for (lf, lh) in f.layers.iter().zip(&h.layers) {
            for t in Target::ALL {
                let (af, ah) = (
                    lf.linear(t).lora.as_ref().unwrap(),
                    lh.linear(t).lora.as_ref().unwrap(),
                );
                for (pf, ph) in [(&af.a, &ah.a), (&af.b, &ah.b)] {
                    let g = ph.val().grad(&gh).unwrap();
                    assert_eq!(g.dtype(), DType::F32);
                    let r = relative(&values(g), &values(pf.val().grad(&gf).unwrap()));
                    assert!(r <= 3e-2, "{quant:?} {t:?}: relative gradient error {r}");
                }
            }
        }
    }
}

/// Full fine-tuning in bf16 keeps f32 master weights and f32 gradients
/// for them (the products cast per call, as autocast does).
#[test]
fn full_fine_tuning_in_bf16_keeps_f32_master_weights() {
    use burn::tensor::DType;
    type B = Autodiff<Flex>;
    let device = Default::default();
    let f = load::<B>("llama", None, &device);
    let h = load::<B>("llama", None, &device).with_bf16(true);
    let w = |m: &Model<B>| m.layers[1].up_proj.weight.clone().unwrap();
    assert_eq!(w(&h).val().dtype(), DType::F32);
    assert_eq!(h.embed_tokens.val().dtype(), DType::F32);
    let batch = ids::<B>("llama", &device);
    let mask = Tensor::<B, 2>::ones(batch.dims(), &device);
    let gf = causal_lm_loss(f.forward(batch.clone()), batch.clone(), mask.clone()).backward();
    let gh = causal_lm_loss(h.forward(batch.clone()), batch, mask).backward();
    let g = w(&h)
        .val()
        .grad(&gh)
        .expect("a gradient for the master weight");
    assert_eq!(g.dtype(), DType::F32);
    let r = relative(&values(g), &values(w(&f).val().grad(&gf).unwrap()));
    assert!(r > 0.0 && r <= 3e-2, "relative gradient error {r}");
}

/// Gradient checkpointing recomputes each layer in the backward pass: the
/// loss and every trainable gradient equal the plain run's — LoRA with
/// dropout (the recomputation draws the same masks), QLoRA in f32 and bf16,
/// and full fine-tuning (embedding, norms and projections of every layer).
#[test]
fn gradient_checkpointing_gives_the_plain_gradients() {
    use burn::module::{Module, ModuleVisitor, ParamId};
    use burn::tensor::backend::Backend;
    use hone_gpu::checkpoint::loss_and_grads;
    type B = Autodiff<Flex>;
    struct Ids<'a>(&'a mut Vec<(ParamId, usize)>);
    impl<BB: Backend> ModuleVisitor<BB> for Ids<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<BB, D>>) {
            self.0.push((p.id, D));
        }
    }
    let device = Default::default();
    let dropout = LoraConfig {
        dropout: 0.1,
        ..lora()
    };
    let cases: [(&str, Option<QuantConfig>, Option<&LoraConfig>); 4] = [
        ("lora, dropout 0.1", None, Some(&dropout)),
        ("qlora", Some(QuantConfig::default()), Some(&dropout)),
        ("qlora, bf16", Some(QuantConfig::default()), Some(&dropout)),
        ("full", None, None),
    ];
    for (name, quant, adapters) in cases {
        let base = load::<B>("llama", quant, &device);
        let model = match adapters {
            Some(c) => fixed_adapter_values(base.with_lora(c, &device), &device),
            None => base,
        }
        .with_bf16(name.ends_with("bf16"));
        let batch = ids::<B>("llama", &device);
        let [b, s] = batch.dims();
        // The last two positions of the second row are padding, and only
        // the second half of each row counts in the loss.
        let mut attention = vec![1.0f32; b * s];
        attention[b * s - 2..].fill(0.0);
        let attention = Tensor::<B, 2>::from_data(TensorData::new(attention, [b, s]), &device);
        let weights: Vec<f32> = (0..b * s)
            .map(|i| f32::from(u8::from(i % s >= s / 2)))
            .collect();
        let mask = Tensor::<B, 2>::from_data(TensorData::new(weights, [b, s]), &device)
            * attention.clone();
        B::seed(&device, 7);
        let loss = causal_lm_loss(
            model.forward_masked(batch.clone(), Some(attention.clone())),
            batch.clone(),
            mask.clone(),
        )
        .mul_scalar(0.5);
        let lp = f64::from(loss.clone().into_scalar());
        let mut gp = GradientsParams::from_grads(loss.backward(), &model);
        B::seed(&device, 7);
        let (lc, mut gc) = loss_and_grads(&model, batch, Some(attention), mask, 0.5);
        assert!((lp - lc).abs() <= 1e-6, "{name}: loss {lp} vs {lc}");
        let mut ids = Vec::new();
        model.visit(&mut Ids(&mut ids));
        let mut compared = 0;
        for (id, rank) in ids {
            let (a, b) = match rank {
                1 => (
                    gp.remove::<Flex, 1>(id).map(values),
                    gc.remove::<Flex, 1>(id).map(values),
                ),
                _ => (
                    gp.remove::<Flex, 2>(id).map(values),
                    gc.remove::<Flex, 2>(id).map(values),
                ),
            };
            let (a, b) = match (a, b) {
                (Some(a), Some(b)) => (a, b),
                (None, None) => continue,
                (a, b) => panic!(
                    "{name}: a gradient on one side only ({}, {})",
                    a.is_some(),
                    b.is_some()
                ),
            };
            let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
            let diff = max_diff(&a, &b);
            assert!(
                scale > 0.0 && diff <= 1e-5 * scale,
                "{name}: |Δ| {diff}, scale {scale}"
            );
            compared += 1;
        }
        let want = match adapters {
            Some(_) => 2 * 7 * 2,
            // Embedding, final norm, and per layer 2 norms + 7 projections.
            None => 2 + 2 * 9,
        };
        assert_eq!(compared, want, "{name}");
    }
}
