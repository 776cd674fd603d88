//! Gradient checkpointing (transformers' `gradient_checkpointing`): one
//! training step's loss and gradients keeping only each decoder layer's
//! input, `[batch, seq, hidden]`, instead of every activation inside it.
//!
//! Forward: the embedding and the layers run on the inner backend (no
//! graph); each layer's input is kept. The final norm, the head and the
//! loss run on the autodiff backend from the last layer's output. Backward,
//! last layer first: the layer is rebuilt on a fresh autodiff graph from
//! its kept input and its weights, recomputed, and `Σ y·g` differentiated
//! (`g` the gradient arriving at its output), which gives the gradient at
//! its input and its parameters' gradients; the embedding's gradient comes
//! last. Each graph is differentiated on its own: Burn 0.21's autodiff
//! cannot start a backward pass inside another (its clean-up locks every
//! graph), so this is a loop over layers, not an operation in one graph.
//! It costs one more forward pass of the layers.
//!
//! **Invariant:** the recomputation sees exactly what the forward saw —
//! the same weights, and for LoRA dropout the same masks: each layer draws
//! a seed and reseeds the backend before its forward ([`layer_seed`], also
//! on the plain path, so both draw alike); its recomputation reseeds with
//! that seed.

use crate::model::{layer_forward, Layer, Linear, Lora, Model, RmsNorm, Target};
use crate::qlora::{Nf4Weight, TrainBackend};
use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, ElementConversion, Int, Tensor};

/// Draws a seed from the backend's generator and reseeds it with that
/// seed: what a layer's dropout draws next is then a function of the seed
/// alone, so a recomputation can draw it again.
pub fn layer_seed<B: Backend>(device: &B::Device) -> u64 {
    let draw: Vec<f32> = Tensor::<B, 1>::random([2], Distribution::Uniform(0.0, 1.0), device)
        .into_data()
        .convert::<f32>()
        .to_vec()
        .unwrap_or_default();
    let seed = draw
        .iter()
        .fold(0u64, |acc, v| (acc << 32) ^ u64::from(v.to_bits()));
    B::seed(device, seed);
    seed
}

/// `p` (inner backend) on a fresh autodiff graph, marked for gradients
/// when `like` (the model's own parameter) trains.
fn lift_param<B: TrainBackend, const D: usize>(
    p: &Param<Tensor<B::InnerBackend, D>>,
    like: &Param<Tensor<B, D>>,
) -> Param<Tensor<B, D>> {
    let t = Tensor::from_inner(p.val());
    Param::initialized(
        p.id,
        if like.is_require_grad() {
            t.require_grad()
        } else {
            t
        },
    )
}

/// `layer` (inner backend) on a fresh autodiff graph; what trains in
/// `like` (the model's own layer) is marked for gradients.
fn lift<B: TrainBackend>(l: &Layer<B::InnerBackend>, like: &Layer<B>) -> Layer<B> {
    let norm = |n: &RmsNorm<B::InnerBackend>, like: &RmsNorm<B>| RmsNorm {
        weight: lift_param(&n.weight, &like.weight),
        eps: n.eps,
    };
    let linear = |t: Target| {
        let (lin, like) = (l.linear(t), like.linear(t));
        Linear {
            weight: lin
                .weight
                .as_ref()
                .zip(like.weight.as_ref())
                .map(|(w, lw)| lift_param(w, lw)),
            nf4: lin.nf4.as_ref().map(|q| Nf4Weight {
                codes: Tensor::from_inner(q.codes.clone()),
                absmax: q.absmax.clone().map(Tensor::from_inner),
                absmax_codes: q.absmax_codes.clone().map(Tensor::from_inner),
                absmax_scales: q.absmax_scales.clone().map(Tensor::from_inner),
                offset: q.offset,
                out: q.out,
                inp: q.inp,
                block: q.block,
            }),
            bias: lin
                .bias
                .as_ref()
                .zip(like.bias.as_ref())
                .map(|(b, lb)| lift_param(b, lb)),
            lora: lin
                .lora
                .as_ref()
                .zip(like.lora.as_ref())
                .map(|(a, la)| Lora {
                    a: lift_param(&a.a, &la.a),
                    b: lift_param(&a.b, &la.b),
                    scale: a.scale,
                    dropout: a.dropout,
                }),
            bf16: lin.bf16,
        }
    };
    Layer {
        input_layernorm: norm(&l.input_layernorm, &like.input_layernorm),
        q_proj: linear(Target::Q),
        k_proj: linear(Target::K),
        v_proj: linear(Target::V),
        o_proj: linear(Target::O),
        post_attention_layernorm: norm(&l.post_attention_layernorm, &like.post_attention_layernorm),
        gate_proj: linear(Target::Gate),
        up_proj: linear(Target::Up),
        down_proj: linear(Target::Down),
    }
}

/// Moves every gradient of `module`'s parameters from `from` into `into`,
/// adding to one already there (a tied embedding gets one from the head
/// and one from the lookup).
fn merge<B: TrainBackend, M: Module<B>>(
    module: &M,
    mut from: GradientsParams,
    into: &mut GradientsParams,
) {
    struct Move<'a, I: Backend> {
        from: &'a mut GradientsParams,
        into: &'a mut GradientsParams,
        inner: core::marker::PhantomData<I>,
    }
    impl<B: Backend, I: Backend> ModuleVisitor<B> for Move<'_, I> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            if let Some(g) = self.from.remove::<I, D>(p.id) {
                let g = match self.into.remove::<I, D>(p.id) {
                    Some(old) => old + g,
                    None => g,
                };
                self.into.register::<I, D>(p.id, g);
            }
        }
    }
    module.visit(&mut Move::<B::InnerBackend> {
        from: &mut from,
        into,
        inner: core::marker::PhantomData,
    });
}

/// The masked causal-LM loss of `ids` times `scale` (its value) and the
/// gradients of every trainable parameter, with gradient checkpointing —
/// what `causal_lm_loss(model.forward_masked(ids, attention), ids, mask)
/// .mul_scalar(scale).backward()` gives, within float rounding.
pub fn loss_and_grads<B: TrainBackend>(
    model: &Model<B>,
    ids: Tensor<B, 2, Int>,
    attention: Option<Tensor<B, 2>>,
    mask: Tensor<B, 2>,
    scale: f64,
) -> (f64, GradientsParams) {
    let device = ids.device();
    let s = ids.dims()[1];
    let inner = model.valid();
    let dims = model.dims();
    let dropout = model.drops_out(&device);
    let [cos, sin, rmask] = inner.rope_mask(0, s, attention.map(|a| a.inner()), &device);
    // Forward without a graph, keeping each layer's input.
    let mut x = inner.embed(ids.clone().inner());
    let mut kept = Vec::with_capacity(inner.layers.len());
    for layer in &inner.layers {
        let seed = dropout.then(|| layer_seed::<B::InnerBackend>(&device));
        let next = layer_forward(dims, layer, x.clone(), [&cos, &sin, &rmask], dropout, None);
        kept.push((std::mem::replace(&mut x, next), seed));
    }
    // Head and loss on a graph from the last output.
    let last = Tensor::<B, 3>::from_inner(x).require_grad();
    let loss =
        crate::model::causal_lm_loss(model.head(last.clone()), ids.clone(), mask).mul_scalar(scale);
    let value = loss.clone().into_scalar().elem::<f64>();
    let head = loss.backward();
    let mut g = last.grad(&head);
    let mut grads = GradientsParams::from_grads(head, model);
    let [cos, sin, rmask] = [cos, sin, rmask].map(Tensor::<B, 4>::from_inner);
    // Layers, last first.
    for ((layer, like), (input, seed)) in inner.layers.iter().zip(&model.layers).zip(kept).rev() {
        let Some(grad_out) = g.take() else {
            break;
        };
        if let Some(seed) = seed {
            B::seed(&device, seed);
        }
        let lifted = lift::<B>(layer, like);
        let input = Tensor::<B, 3>::from_inner(input).require_grad();
        let y = layer_forward(
            dims,
            &lifted,
            input.clone(),
            [&cos, &sin, &rmask],
            dropout,
            None,
        );
        let layer_grads = (y * Tensor::from_inner(grad_out)).sum().backward();
        g = input.grad(&layer_grads);
        merge(
            &lifted,
            GradientsParams::from_grads(layer_grads, &lifted),
            &mut grads,
        );
    }
    // The embedding, when it trains.
    if let (Some(grad_out), true) = (g, model.embed_tokens.is_require_grad()) {
        let e = model.embed(ids);
        let embed_grads = (e * Tensor::from_inner(grad_out)).sum().backward();
        merge(
            model,
            GradientsParams::from_grads(embed_grads, model),
            &mut grads,
        );
    }
    (value, grads)
}
