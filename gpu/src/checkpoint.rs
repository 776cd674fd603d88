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
use burn::module::{AutodiffModule, Param, ParamId};
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

/// A trainable parameter of a rebuilt layer: its id and tensor.
enum Trainable<B: Backend> {
    One(ParamId, Tensor<B, 1>),
    Two(ParamId, Tensor<B, 2>),
}

/// `layer` (inner backend) on a fresh autodiff graph; the parameters that
/// train in `like` (the model's own layer) are marked for gradients and
/// listed.
fn lift<B: TrainBackend>(
    l: &Layer<B::InnerBackend>,
    like: &Layer<B>,
) -> (Layer<B>, Vec<Trainable<B>>) {
    let mut trainable = Vec::new();
    let mut one = |p: &Param<Tensor<B::InnerBackend, 1>>, like: &Param<Tensor<B, 1>>| {
        let t = Tensor::from_inner(p.val());
        let t = if like.is_require_grad() {
            let t = t.require_grad();
            trainable.push(Trainable::One(p.id, t.clone()));
            t
        } else {
            t
        };
        Param::initialized(p.id, t)
    };
    let norms = [
        RmsNorm {
            weight: one(&l.input_layernorm.weight, &like.input_layernorm.weight),
            eps: l.input_layernorm.eps,
        },
        RmsNorm {
            weight: one(
                &l.post_attention_layernorm.weight,
                &like.post_attention_layernorm.weight,
            ),
            eps: l.post_attention_layernorm.eps,
        },
    ];
    let mut two = |p: &Param<Tensor<B::InnerBackend, 2>>, like: &Param<Tensor<B, 2>>| {
        let t = Tensor::from_inner(p.val());
        let t = if like.is_require_grad() {
            let t = t.require_grad();
            trainable.push(Trainable::Two(p.id, t.clone()));
            t
        } else {
            t
        };
        Param::initialized(p.id, t)
    };
    let mut linears: Vec<Linear<B>> = Vec::with_capacity(7);
    for t in Target::ALL {
        let (lin, like) = (l.linear(t), like.linear(t));
        let weight = match (&lin.weight, &like.weight) {
            (Some(w), Some(lw)) => Some(two(w, lw)),
            _ => None,
        };
        let lora = match (&lin.lora, &like.lora) {
            (Some(a), Some(la)) => Some(Lora {
                a: two(&a.a, &la.a),
                b: two(&a.b, &la.b),
                scale: a.scale,
                dropout: a.dropout,
            }),
            _ => None,
        };
        linears.push(Linear {
            weight,
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
            bias: None,
            lora,
            bf16: lin.bf16,
        });
    }
    // Biases (Qwen2's q/k/v) after the weights and adapters.
    for (k, t) in Target::ALL.into_iter().enumerate() {
        if let (Some(b), Some(lb)) = (&l.linear(t).bias, &like.linear(t).bias) {
            let v = Tensor::from_inner(b.val());
            let v = if lb.is_require_grad() {
                let v = v.require_grad();
                trainable.push(Trainable::One(b.id, v.clone()));
                v
            } else {
                v
            };
            linears[k].bias = Some(Param::initialized(b.id, v));
        }
    }
    let [input_layernorm, post_attention_layernorm] = norms;
    let mut it = linears.into_iter();
    let mut next = || {
        it.next()
            .unwrap_or_else(|| unreachable!("seven projections"))
    };
    let layer = Layer {
        input_layernorm,
        q_proj: next(),
        k_proj: next(),
        v_proj: next(),
        o_proj: next(),
        post_attention_layernorm,
        gate_proj: next(),
        up_proj: next(),
        down_proj: next(),
    };
    (layer, trainable)
}

/// Adds `g` to the gradient registered for `id` (a tied embedding gets
/// one from the head and one from the lookup).
fn add<B: Backend, const D: usize>(grads: &mut GradientsParams, id: ParamId, g: Tensor<B, D>) {
    let g = match grads.remove::<B, D>(id) {
        Some(old) => old + g,
        None => g,
    };
    grads.register::<B, D>(id, g);
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
        let (lifted, trainable) = lift::<B>(layer, like);
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
        for t in trainable {
            match t {
                Trainable::One(id, t) => {
                    if let Some(v) = t.grad(&layer_grads) {
                        add(&mut grads, id, v);
                    }
                }
                Trainable::Two(id, t) => {
                    if let Some(v) = t.grad(&layer_grads) {
                        add(&mut grads, id, v);
                    }
                }
            }
        }
    }
    // The embedding, when it trains.
    if let (Some(grad_out), true) = (g, model.embed_tokens.is_require_grad()) {
        let e = model.embed(ids);
        let embed_grads = (e * Tensor::from_inner(grad_out)).sum().backward();
        if let Some(v) = model.embed_tokens.val().grad(&embed_grads) {
            add(&mut grads, model.embed_tokens.id, v);
        }
    }
    (value, grads)
}
