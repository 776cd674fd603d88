//! The Llama-family decoder (llama, mistral, qwen2) as transformers computes
//! it: RMSNorm, rotary embeddings with `rotate_half` (not Burn's interleaved
//! pairs), grouped-query attention with a causal mask, SwiGLU MLP, tied or
//! separate output head, Qwen2's q/k/v biases. Weights keep Hugging Face's
//! layout (`[out, in]`) and names.

use crate::config::{inverse_frequencies, ModelConfig};
use crate::qlora::{Nf4Weight, QuantBackend, QuantConfig};
use crate::safetensors::{Weights, WeightsError};
use burn::module::{Module, Param};
use burn::tensor::activation::{silu, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, Int, Tensor, TensorData};

/// `y = x·Wᵀ (+ b)` with `W` as `[out, in]`, plus a LoRA adapter when
/// one is attached. `W` is dense (`weight`) or, for QLoRA, frozen NF4
/// (`nf4`) — exactly one of the two.
#[derive(Module, Debug)]
pub struct Linear<B: Backend> {
    pub weight: Option<Param<Tensor<B, 2>>>,
    pub nf4: Option<Nf4Weight<B>>,
    pub bias: Option<Param<Tensor<B, 1>>>,
    pub lora: Option<Lora<B>>,
    /// `x·Wᵀ` in bf16 (see [`Model::with_bf16`]); bias and adapter in f32.
    pub bf16: bool,
}

/// `a·b` in bf16 when `bf16` (both cast, the product cast back to f32),
/// else in f32.
pub fn product<B: Backend, const D: usize>(
    a: Tensor<B, D>,
    b: Tensor<B, D>,
    bf16: bool,
) -> Tensor<B, D> {
    if bf16 {
        a.cast(FloatDType::BF16)
            .matmul(b.cast(FloatDType::BF16))
            .cast(FloatDType::F32)
    } else {
        a.matmul(b)
    }
}

/// A LoRA adapter, PEFT's layout: `A` is `[r, in]`, `B` is `[out, r]`.
/// Its output is `(x·Aᵀ)·Bᵀ·scale`: two thin products, never a dense
/// `[out, in]` weight nor a weight-shaped gradient, so memory grows with
/// `r`, not with the layer.
#[derive(Module, Debug)]
pub struct Lora<B: Backend> {
    pub a: Param<Tensor<B, 2>>,
    pub b: Param<Tensor<B, 2>>,
    /// `alpha / r`, or `alpha / √r` with rsLoRA.
    pub scale: f64,
    /// Dropout on the adapter's input while training.
    pub dropout: f64,
}

impl<B: Backend> Linear<B> {
    pub fn dense(weight: Param<Tensor<B, 2>>, bias: Option<Param<Tensor<B, 1>>>) -> Linear<B> {
        Linear {
            weight: Some(weight),
            nf4: None,
            bias,
            lora: None,
            bf16: false,
        }
    }

    /// `[out, in]`.
    pub fn dims(&self) -> [usize; 2] {
        match (&self.weight, &self.nf4) {
            (Some(w), _) => w.dims(),
            (None, Some(q)) => [q.out, q.inp],
            (None, None) => [0, 0],
        }
    }
}

impl<B: QuantBackend> Linear<B> {
    /// The weight as a dense f32 `[out, in]` tensor (dequantized when NF4).
    pub fn dense_weight(&self) -> Tensor<B, 2> {
        match (&self.weight, &self.nf4) {
            (Some(w), _) => w.val().cast(FloatDType::F32),
            (None, Some(q)) => B::nf4_dequantize(q, FloatDType::F32),
            (None, None) => unreachable!("a linear layer has a dense or an NF4 weight"),
        }
    }

    /// The layer's output; the adapter's dropout applies while training
    /// (under autodiff).
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let dropout = B::ad_enabled(&x.device());
        self.forward_with(x, dropout)
    }

    /// As [`Linear::forward`], with the adapter's dropout on or off
    /// (`dropout`) whatever the backend — a checkpointed layer recomputes
    /// on another backend and must draw the same masks.
    pub fn forward_with(&self, x: Tensor<B, 3>, dropout: bool) -> Tensor<B, 3> {
        let [b, s, d] = x.dims();
        let out = self.dims()[0];
        let x = x.reshape([b * s, d]);
        let mut y = self.base_product(x.clone());
        if let Some(bias) = &self.bias {
            y = y + bias.val().unsqueeze_dim(0);
        }
        if let Some(l) = &self.lora {
            let x = if l.dropout > 0.0 && dropout {
                // Inverted dropout, as torch's: keep with 1 − p, scale up.
                let keep = x
                    .random_like(burn::tensor::Distribution::Bernoulli(1.0 - l.dropout))
                    .div_scalar(1.0 - l.dropout);
                x * keep
            } else {
                x
            };
            y = y + x
                .matmul(l.a.val().transpose())
                .matmul(l.b.val().transpose())
                .mul_scalar(l.scale);
        }
        y.reshape([b, s, out])
    }

    /// `x·Wᵀ` for `x` as `[tokens, in]`, in f32 or bf16 by `self.bf16`; the
    /// result is f32 either way.
    pub fn base_product(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        match (&self.weight, &self.nf4) {
            (Some(w), _) => product(x, w.val().transpose(), self.bf16),
            (None, Some(q)) if self.bf16 => {
                B::nf4_matmul(x.cast(FloatDType::BF16), q).cast(FloatDType::F32)
            }
            (None, Some(q)) => B::nf4_matmul(x, q),
            (None, None) => unreachable!("a linear layer has a dense or an NF4 weight"),
        }
    }
}

impl<B: Backend> Linear<B> {
    /// Attaches a fresh adapter as PEFT initialises one: `A` uniform in
    /// ±1/√in (Kaiming with a = √5), `B` zero — so the model's output is
    /// unchanged until training moves `B`.
    fn attach(&mut self, c: &LoraConfig, name: &str, device: &B::Device) {
        let [out, inp] = self.dims();
        let bound = 1.0 / (inp as f64).sqrt();
        // SplitMix64 keyed by the seed and the adapter's name: independent
        // of the backend's global generator (and of other threads).
        let mut rng = crate::generate::Rng(c.seed ^ fnv1a(name));
        let values: Vec<f32> = (0..c.r * inp)
            .map(|_| ((rng.uniform() * 2.0 - 1.0) * bound) as f32)
            .collect();
        let a = Tensor::from_data(TensorData::new(values, [c.r, inp]), device);
        self.lora = Some(Lora {
            a: stable_param(&format!("{name}.lora_A"), a),
            b: stable_param(&format!("{name}.lora_B"), Tensor::zeros([out, c.r], device)),
            scale: if c.rslora {
                c.alpha / (c.r as f64).sqrt()
            } else {
                c.alpha / c.r as f64
            },
            dropout: c.dropout,
        });
    }
}

// Which projections get adapters, and the LoRA settings, are plain data
// the server and the browser share.
pub use hone_protocol::train_config::{LoraConfig, Target};

#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    pub weight: Param<Tensor<B, 1>>,
    pub eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let variance = x.clone().powi_scalar(2).mean_dim(2);
        let x = x * (variance + self.eps).sqrt().recip();
        x * self.weight.val().unsqueeze_dims::<3>(&[0, 1])
    }
}

#[derive(Module, Debug)]
pub struct Layer<B: Backend> {
    pub input_layernorm: RmsNorm<B>,
    pub q_proj: Linear<B>,
    pub k_proj: Linear<B>,
    pub v_proj: Linear<B>,
    pub o_proj: Linear<B>,
    pub post_attention_layernorm: RmsNorm<B>,
    pub gate_proj: Linear<B>,
    pub up_proj: Linear<B>,
    pub down_proj: Linear<B>,
}

#[derive(Module, Debug)]
pub struct Model<B: Backend> {
    pub embed_tokens: Param<Tensor<B, 2>>,
    pub layers: Vec<Layer<B>>,
    pub norm: RmsNorm<B>,
    /// `None` when the head shares the embedding (`tie_word_embeddings`).
    pub lm_head: Option<Linear<B>>,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Rotary inverse frequencies, `head_dim / 2`.
    pub inv_freq: Vec<f32>,
    /// Matrix products (projections, attention, head) in bf16; see
    /// [`Model::with_bf16`].
    pub bf16: bool,
}

/// A trainable parameter whose id is derived from its name, so a model
/// built again (after a crash) has the same ids and a saved optimizer
/// state fits it.
pub fn stable_param<B: Backend, const D: usize>(
    name: &str,
    value: Tensor<B, D>,
) -> Param<Tensor<B, D>> {
    Param::initialized(
        burn::module::ParamId::from(fnv1a(name)),
        value.require_grad(),
    )
}

fn fnv1a(name: &str) -> u64 {
    hone_dataset::similar::fnv1a(name.as_bytes())
}

/// The name an adapter's matrices are keyed by (`layers.3.q_proj`).
pub fn adapter_name(layer: usize, t: Target) -> String {
    format!("layers.{layer}.{}", t.name())
}

/// Keys and values of the positions seen so far, per layer (after the
/// rotary embedding, before the heads are repeated).
#[derive(Debug)]
pub struct KvCache<B: Backend> {
    layers: Vec<Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
    len: usize,
}

impl<B: Backend> KvCache<B> {
    pub fn new(layers: usize) -> KvCache<B> {
        KvCache {
            layers: (0..layers).map(|_| None).collect(),
            len: 0,
        }
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// `cat(-x₂, x₁)` over the last dimension.
fn rotate_half<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let d = x.dims()[3];
    let x1 = x.clone().narrow(3, 0, d / 2);
    let x2 = x.narrow(3, d / 2, d - d / 2);
    Tensor::cat(vec![x2.neg(), x1], 3)
}

/// What a decoder layer's forward needs besides its weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Matrix products in bf16.
    pub bf16: bool,
}

/// One decoder layer: `x + attention(norm(x))`, then `+ mlp(norm(·))`.
/// `rope_mask` is the rotary cos and sin and the attention mask;
/// `dropout`: the adapters' dropout applies; `cache`: the layer's keys
/// and values so far (generation).
pub fn layer_forward<B: QuantBackend>(
    dims: Dims,
    layer: &Layer<B>,
    x: Tensor<B, 3>,
    rope_mask: [&Tensor<B, 4>; 3],
    dropout: bool,
    cache: Option<&mut Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
) -> Tensor<B, 3> {
    let x = x.clone()
        + attention(
            dims,
            layer,
            layer.input_layernorm.forward(x),
            rope_mask,
            dropout,
            cache,
        );
    let h = layer.post_attention_layernorm.forward(x.clone());
    let gate = layer.gate_proj.forward_with(h.clone(), dropout);
    let up = layer.up_proj.forward_with(h, dropout);
    x + layer.down_proj.forward_with(silu(gate) * up, dropout)
}

fn attention<B: QuantBackend>(
    dims: Dims,
    layer: &Layer<B>,
    x: Tensor<B, 3>,
    [cos, sin, mask]: [&Tensor<B, 4>; 3],
    dropout: bool,
    cache: Option<&mut Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
) -> Tensor<B, 3> {
    let [b, s, _] = x.dims();
    let (h, kvh, d) = (dims.heads, dims.kv_heads, dims.head_dim);
    let split = |t: Tensor<B, 3>, n: usize| t.reshape([b, s, n, d]).swap_dims(1, 2);
    let q = split(layer.q_proj.forward_with(x.clone(), dropout), h);
    let k = split(layer.k_proj.forward_with(x.clone(), dropout), kvh);
    let v = split(layer.v_proj.forward_with(x, dropout), kvh);
    let q = q.clone() * cos.clone() + rotate_half(q) * sin.clone();
    let mut k = k.clone() * cos.clone() + rotate_half(k) * sin.clone();
    let mut v = v;
    if let Some(slot) = cache {
        if let Some((past_k, past_v)) = slot.take() {
            k = Tensor::cat(vec![past_k, k], 2);
            v = Tensor::cat(vec![past_v, v], 2);
        }
        *slot = Some((k.clone(), v.clone()));
    }
    let t = k.dims()[2];
    // Each key/value head serves `h / kvh` query heads, in order.
    let groups = h / kvh;
    let repeat = |x: Tensor<B, 4>| {
        x.unsqueeze_dim::<5>(2)
            .repeat_dim(2, groups)
            .reshape([b, h, t, d])
    };
    let (k, v) = (repeat(k), repeat(v));
    let scores = product(q, k.swap_dims(2, 3), dims.bf16) / (d as f64).sqrt() + mask.clone();
    let out = product(softmax(scores, 3), v, dims.bf16);
    layer
        .o_proj
        .forward_with(out.swap_dims(1, 2).reshape([b, s, h * d]), dropout)
}

impl<B: Backend> Layer<B> {
    /// The projection a LoRA target names.
    pub fn linear(&self, t: Target) -> &Linear<B> {
        match t {
            Target::Q => &self.q_proj,
            Target::K => &self.k_proj,
            Target::V => &self.v_proj,
            Target::O => &self.o_proj,
            Target::Gate => &self.gate_proj,
            Target::Up => &self.up_proj,
            Target::Down => &self.down_proj,
        }
    }

    pub fn linear_mut(&mut self, t: Target) -> &mut Linear<B> {
        self.target(t)
    }

    fn target(&mut self, t: Target) -> &mut Linear<B> {
        match t {
            Target::Q => &mut self.q_proj,
            Target::K => &mut self.k_proj,
            Target::V => &mut self.v_proj,
            Target::O => &mut self.o_proj,
            Target::Gate => &mut self.gate_proj,
            Target::Up => &mut self.up_proj,
            Target::Down => &mut self.down_proj,
        }
    }

    fn linears(&self) -> [&Linear<B>; 7] {
        [
            &self.q_proj,
            &self.k_proj,
            &self.v_proj,
            &self.o_proj,
            &self.gate_proj,
            &self.up_proj,
            &self.down_proj,
        ]
    }
}

impl<B: QuantBackend> Model<B> {
    /// Freezes every base weight and attaches LoRA adapters to the target
    /// projections of every layer; only the adapters train.
    pub fn with_lora(self, c: &LoraConfig, device: &B::Device) -> Model<B> {
        let mut m = self.no_grad();
        for (i, layer) in m.layers.iter_mut().enumerate() {
            for t in &c.targets {
                layer.target(*t).attach(c, &adapter_name(i, *t), device);
            }
        }
        m
    }

    /// Runs every matrix product in bf16 (`on`) — the projections, the
    /// attention scores and values, the head — with f32 everywhere else:
    /// embeddings, norms, softmax, residual sums, biases, LoRA adapters,
    /// gradients of trainable weights and the optimiser's state (as
    /// transformers' `bf16=True` with PEFT's f32 adapters). Frozen dense
    /// weights (the base under LoRA) are stored in bf16, half their f32
    /// memory; trainable ones (full fine-tuning) stay f32 and are cast per
    /// product. NF4 weights dequantize straight to bf16.
    pub fn with_bf16(mut self, on: bool) -> Model<B> {
        // Trainable weights stay f32; frozen ones follow `on` (and go back
        // to f32 when it is off, so no product mixes dtypes).
        let store = |p: Param<Tensor<B, 2>>| {
            if on && !p.is_require_grad() {
                p.map(|t| t.cast(FloatDType::BF16))
            } else if p.val().dtype() != burn::tensor::DType::F32 {
                p.map(|t| t.cast(FloatDType::F32))
            } else {
                p
            }
        };
        self.bf16 = on;
        self.embed_tokens = store(self.embed_tokens);
        let layers = std::mem::take(&mut self.layers);
        self.layers = layers
            .into_iter()
            .map(|mut layer| {
                for t in Target::ALL {
                    let l = layer.target(t);
                    l.bf16 = on;
                    l.weight = l.weight.take().map(store);
                }
                layer
            })
            .collect();
        if let Some(head) = &mut self.lm_head {
            head.bf16 = on;
            head.weight = head.weight.take().map(store);
        }
        self
    }

    /// The shape of attention and the product dtype, for [`layer_forward`].
    pub fn dims(&self) -> Dims {
        Dims {
            heads: self.heads,
            kv_heads: self.kv_heads,
            head_dim: self.head_dim,
            bf16: self.bf16,
        }
    }

    /// Parameters the optimiser updates: the adapters' when there are any
    /// (the base is frozen), else all of them (full fine-tuning).
    pub fn trainable_params(&self) -> usize {
        let adapters: usize = self
            .layers
            .iter()
            .flat_map(|l| l.linears())
            .filter_map(|l| l.lora.as_ref())
            .map(|l| l.a.val().shape().num_elements() + l.b.val().shape().num_elements())
            .sum();
        if adapters > 0 {
            adapters
        } else {
            self.num_params()
        }
    }

    /// Cos and sin tables `[seq, head_dim]` for positions
    /// `start..start + seq`.
    fn rotary(&self, start: usize, seq: usize, device: &B::Device) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(seq * half * 2);
        let mut sin = Vec::with_capacity(seq * half * 2);
        for p in start..start + seq {
            // As transformers: angles in f32, then duplicated halves.
            let angles: Vec<f32> = self.inv_freq.iter().map(|f| p as f32 * f).collect();
            for _ in 0..2 {
                cos.extend(angles.iter().map(|a| a.cos()));
                sin.extend(angles.iter().map(|a| a.sin()));
            }
        }
        let shape = [1, 1, seq, half * 2];
        (
            Tensor::from_data(TensorData::new(cos, shape), device),
            Tensor::from_data(TensorData::new(sin, shape), device),
        )
    }

    /// Logits `[batch, seq, vocab]` for token ids `[batch, seq]`.
    pub fn forward(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        self.forward_masked(ids, None)
    }

    /// As [`Model::forward`], with an attention mask `[batch, seq]` (1.0
    /// real, 0.0 padding) so padded batches give the same logits at real
    /// positions.
    pub fn forward_masked(
        &self,
        ids: Tensor<B, 2, Int>,
        attention: Option<Tensor<B, 2>>,
    ) -> Tensor<B, 3> {
        self.run(ids, attention, None)
    }

    /// Logits for `ids` following what `cache` holds (positions continue
    /// from it); the new keys and values are added to the cache. For
    /// generation: the prompt once, then one token at a time.
    pub fn forward_cached(&self, ids: Tensor<B, 2, Int>, cache: &mut KvCache<B>) -> Tensor<B, 3> {
        self.run(ids, None, Some(cache))
    }

    fn run(
        &self,
        ids: Tensor<B, 2, Int>,
        attention: Option<Tensor<B, 2>>,
        mut cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        let past = cache.as_ref().map_or(0, |c| c.len);
        let device = ids.device();
        let s = ids.dims()[1];
        let mut x = self.embed(ids);
        let [cos, sin, mask] = self.rope_mask(past, s, attention, &device);
        let dims = self.dims();
        let dropout = self.drops_out(&device);
        for (i, layer) in self.layers.iter().enumerate() {
            let rope_mask = [&cos, &sin, &mask];
            x = match cache.as_deref_mut() {
                Some(c) => layer_forward(dims, layer, x, rope_mask, false, Some(&mut c.layers[i])),
                None => {
                    let seed = dropout.then(|| crate::checkpoint::layer_seed::<B>(&device));
                    layer_forward(dims, layer, x, rope_mask, seed.is_some(), None)
                }
            };
        }
        if let Some(c) = cache {
            c.len += s;
        }
        self.head(x)
    }

    /// Whether the adapters' dropout applies: training (autodiff) and some
    /// adapter has it. Each layer then draws from its own seed
    /// (`checkpoint::layer_seed`), so a checkpointed layer can draw the same
    /// masks again — and the plain and checkpointed paths draw alike.
    pub fn drops_out(&self, device: &B::Device) -> bool {
        B::ad_enabled(device)
            && self
                .layers
                .iter()
                .flat_map(|l| l.linears())
                .any(|l| l.lora.as_ref().is_some_and(|a| a.dropout > 0.0))
    }

    /// The token embeddings `[batch, seq, hidden]` (f32).
    pub fn embed(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let [b, s] = ids.dims();
        let hidden = self.embed_tokens.dims()[1];
        self.embed_tokens
            .val()
            .select(0, ids.reshape([b * s]))
            .cast(FloatDType::F32)
            .reshape([b, s, hidden])
    }

    /// Rotary cos and sin for positions `past..past + s`, and the causal
    /// (plus padding) mask: what every layer shares.
    pub fn rope_mask(
        &self,
        past: usize,
        s: usize,
        attention: Option<Tensor<B, 2>>,
        device: &B::Device,
    ) -> [Tensor<B, 4>; 3] {
        let (cos, sin) = self.rotary(past, s, device);
        // Query i (position past + i) sees keys 0..=past + i; the future
        // gets f32::MIN, as in transformers.
        let keys = past + s;
        let causal: Vec<f32> = (0..s)
            .flat_map(|i| (0..keys).map(move |j| if j > past + i { f32::MIN } else { 0.0 }))
            .collect();
        let mut mask: Tensor<B, 4> =
            Tensor::from_data(TensorData::new(causal, [1, 1, s, keys]), device);
        if let Some(attention) = attention {
            let b = attention.dims()[0];
            let padding = attention.neg().add_scalar(1.0).mul_scalar(f32::MIN);
            mask = mask + padding.reshape([b, 1, 1, s]);
        }
        [cos, sin, mask]
    }

    /// The final norm and the output head: logits `[batch, seq, vocab]`.
    pub fn head(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, s, hidden] = x.dims();
        let x = self.norm.forward(x);
        match &self.lm_head {
            Some(head) => head.forward(x),
            None => {
                let vocab = self.embed_tokens.dims()[0];
                product(
                    x.reshape([b * s, hidden]),
                    self.embed_tokens.val().transpose(),
                    self.bf16,
                )
                .reshape([b, s, vocab])
            }
        }
    }

    /// Builds the model from a checkpoint's tensors (Hugging Face names).
    pub fn load(
        config: &ModelConfig,
        weights: &Weights,
        device: &B::Device,
    ) -> Result<Model<B>, WeightsError> {
        Model::load_quantized(config, weights, None, device)
    }

    /// As [`Model::load`]; with `quant`, the decoder's projections are
    /// quantized to NF4 one tensor at a time as they are read (QLoRA), so
    /// the whole model is never held unquantized. Embeddings, norms, biases
    /// and the output head stay dense, as in bitsandbytes.
    pub fn load_quantized(
        config: &ModelConfig,
        weights: &Weights,
        quant: Option<QuantConfig>,
        device: &B::Device,
    ) -> Result<Model<B>, WeightsError> {
        check_shapes(config, weights)?;
        let tensor2 = |name: &str| -> Result<Param<Tensor<B, 2>>, WeightsError> {
            let (v, shape) = weights.read(name)?;
            let [rows, cols] = shape[..] else {
                return Err(WeightsError::Missing(format!("{name} (2-D)")));
            };
            Ok(stable_param(
                name,
                Tensor::from_data(TensorData::new(v, [rows, cols]), device),
            ))
        };
        let tensor1 = |name: &str| -> Result<Param<Tensor<B, 1>>, WeightsError> {
            let (v, shape) = weights.read(name)?;
            Ok(stable_param(
                name,
                Tensor::from_data(
                    TensorData::new(v, [shape.iter().product::<usize>()]),
                    device,
                ),
            ))
        };
        let linear = |prefix: &str, bias: bool| -> Result<Linear<B>, WeightsError> {
            let bias = if bias {
                Some(tensor1(&format!("{prefix}.bias"))?)
            } else {
                None
            };
            Ok(Linear::dense(tensor2(&format!("{prefix}.weight"))?, bias))
        };
        let projection = |prefix: &str, bias: bool| -> Result<Linear<B>, WeightsError> {
            let Some(q) = quant else {
                return linear(prefix, bias);
            };
            let name = format!("{prefix}.weight");
            let (v, shape) = weights.read(&name)?;
            let [rows, cols] = shape[..] else {
                return Err(WeightsError::Missing(format!("{name} (2-D)")));
            };
            let nf4 = Nf4Weight::quantize(&v, rows, cols, q, device);
            drop(v);
            Ok(Linear {
                weight: None,
                nf4: Some(nf4),
                bias: if bias {
                    Some(tensor1(&format!("{prefix}.bias"))?)
                } else {
                    None
                },
                lora: None,
                bf16: false,
            })
        };
        let norm = |name: &str| -> Result<RmsNorm<B>, WeightsError> {
            Ok(RmsNorm {
                weight: tensor1(name)?,
                eps: config.rms_norm_eps,
            })
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let qkv_bias = config.attention_bias;
            layers.push(Layer {
                input_layernorm: norm(&format!("{p}.input_layernorm.weight"))?,
                q_proj: projection(&format!("{p}.self_attn.q_proj"), qkv_bias)?,
                k_proj: projection(&format!("{p}.self_attn.k_proj"), qkv_bias)?,
                v_proj: projection(&format!("{p}.self_attn.v_proj"), qkv_bias)?,
                o_proj: projection(&format!("{p}.self_attn.o_proj"), false)?,
                post_attention_layernorm: norm(&format!("{p}.post_attention_layernorm.weight"))?,
                gate_proj: projection(&format!("{p}.mlp.gate_proj"), false)?,
                up_proj: projection(&format!("{p}.mlp.up_proj"), false)?,
                down_proj: projection(&format!("{p}.mlp.down_proj"), false)?,
            });
        }
        let lm_head = if config.tie_word_embeddings && !weights.contains("lm_head.weight") {
            None
        } else {
            Some(linear("lm_head", false)?)
        };
        Ok(Model {
            embed_tokens: tensor2("model.embed_tokens.weight")?,
            layers,
            norm: norm("model.norm.weight")?,
            lm_head,
            heads: config.num_attention_heads,
            kv_heads: config.num_key_value_heads,
            head_dim: config.head_dim,
            inv_freq: inverse_frequencies(config)
                .iter()
                .map(|f| *f as f32)
                .collect(),
            bf16: false,
        })
    }
}

/// Checks every tensor the decoder reads against the shape `config.json`
/// implies, from the headers alone, before any tensor is read: a
/// checkpoint that does not belong to its config fails at once, naming
/// the tensor, rather than halfway through loading or inside a product.
/// Layers are checked in order, so an absurd `num_hidden_layers` ends at
/// the first missing tensor instead of allocating for all of them.
pub fn check_shapes(config: &ModelConfig, weights: &Weights) -> Result<(), WeightsError> {
    let mul = |a: usize, b: usize, rule: &str| {
        a.checked_mul(b)
            .ok_or_else(|| WeightsError::ConfigOverflow(rule.into()))
    };
    let hidden = config.hidden_size;
    let vocab = config.vocab_size;
    let inter = config.intermediate_size;
    let q = mul(
        config.num_attention_heads,
        config.head_dim,
        "num_attention_heads × head_dim",
    )?;
    let kv = mul(
        config.num_key_value_heads,
        config.head_dim,
        "num_key_value_heads × head_dim",
    )?;
    let check = |name: &str, shape: &[usize], rule: &str| {
        weights.check_shape(name, shape, &format!("{rule} from config.json"))
    };
    check(
        "model.embed_tokens.weight",
        &[vocab, hidden],
        "[vocab_size, hidden_size]",
    )?;
    check("model.norm.weight", &[hidden], "[hidden_size]")?;
    if !config.tie_word_embeddings || weights.contains("lm_head.weight") {
        check(
            "lm_head.weight",
            &[vocab, hidden],
            "[vocab_size, hidden_size]",
        )?;
    }
    for i in 0..config.num_hidden_layers {
        let p = format!("model.layers.{i}");
        for norm in ["input_layernorm", "post_attention_layernorm"] {
            check(&format!("{p}.{norm}.weight"), &[hidden], "[hidden_size]")?;
        }
        let attention = [
            ("q_proj", q, "num_attention_heads × head_dim"),
            ("k_proj", kv, "num_key_value_heads × head_dim"),
            ("v_proj", kv, "num_key_value_heads × head_dim"),
        ];
        for (proj, out, what) in attention {
            let name = format!("{p}.self_attn.{proj}");
            check(
                &format!("{name}.weight"),
                &[out, hidden],
                &format!("[{what}, hidden_size]"),
            )?;
            if config.attention_bias {
                check(&format!("{name}.bias"), &[out], &format!("[{what}]"))?;
            }
        }
        check(
            &format!("{p}.self_attn.o_proj.weight"),
            &[hidden, q],
            "[hidden_size, num_attention_heads × head_dim]",
        )?;
        for proj in ["gate_proj", "up_proj"] {
            check(
                &format!("{p}.mlp.{proj}.weight"),
                &[inter, hidden],
                "[intermediate_size, hidden_size]",
            )?;
        }
        check(
            &format!("{p}.mlp.down_proj.weight"),
            &[hidden, inter],
            "[hidden_size, intermediate_size]",
        )?;
    }
    Ok(())
}

/// Mean cross-entropy of next-token prediction over the positions `mask`
/// marks (1.0: counts, 0.0: ignored), as transformers' causal-LM loss with
/// labels set to -100 where the mask is 0.
pub fn causal_lm_loss<B: Backend>(
    logits: Tensor<B, 3>,
    ids: Tensor<B, 2, Int>,
    mask: Tensor<B, 2>,
) -> Tensor<B, 1> {
    let [b, s, _] = logits.dims();
    let logp = burn::tensor::activation::log_softmax(logits.narrow(1, 0, s - 1), 2);
    let targets = ids.narrow(1, 1, s - 1).reshape([b, s - 1, 1]);
    let picked = logp.gather(2, targets).reshape([b, s - 1]);
    let mask = mask.narrow(1, 1, s - 1);
    let count = mask.clone().sum().clamp_min(1.0);
    (picked * mask).sum().neg() / count
}

/// Replaces every adapter's `A` and `B` with fixed non-zero values (a sine
/// and a cosine of the element's index, times 0.05): deterministic test
/// adapters whose effect is visible, the same on every machine.
pub fn fixed_adapter_values<B: Backend>(mut model: Model<B>, device: &B::Device) -> Model<B> {
    let fill = |dims: [usize; 2], f: fn(f32) -> f32| -> Tensor<B, 2> {
        let n = dims[0] * dims[1];
        let v: Vec<f32> = (0..n).map(|k| 0.05 * f(k as f32 * 0.37 + 0.1)).collect();
        Tensor::from_data(TensorData::new(v, dims), device)
    };
    for layer in &mut model.layers {
        for t in Target::ALL {
            if let Some(l) = &mut layer.linear_mut(t).lora {
                l.a = Param::from_tensor(fill(l.a.dims(), f32::sin));
                l.b = Param::from_tensor(fill(l.b.dims(), f32::cos));
            }
        }
    }
    model
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::safetensors_bytes;

    /// A tiny Qwen2 config (q/k/v biases, grouped-query attention):
    /// hidden 4, 2 heads of 2, 1 key/value head, intermediate 6, vocab 8.
    fn config(layers: &str) -> ModelConfig {
        ModelConfig::from_json(&format!(
            r#"{{"model_type":"qwen2","vocab_size":8,"hidden_size":4,"intermediate_size":6,
                "num_hidden_layers":{layers},"num_attention_heads":2,"num_key_value_heads":1,
                "max_position_embeddings":16,"tie_word_embeddings":true}}"#
        ))
        .unwrap()
    }

    /// The tensors `config("1")` needs, with their shapes; zero-filled.
    fn shapes() -> Vec<(String, Vec<usize>)> {
        let p = "model.layers.0";
        [
            ("model.embed_tokens.weight".to_string(), vec![8, 4]),
            ("model.norm.weight".to_string(), vec![4]),
            (format!("{p}.input_layernorm.weight"), vec![4]),
            (format!("{p}.post_attention_layernorm.weight"), vec![4]),
            (format!("{p}.self_attn.q_proj.weight"), vec![4, 4]),
            (format!("{p}.self_attn.q_proj.bias"), vec![4]),
            (format!("{p}.self_attn.k_proj.weight"), vec![2, 4]),
            (format!("{p}.self_attn.k_proj.bias"), vec![2]),
            (format!("{p}.self_attn.v_proj.weight"), vec![2, 4]),
            (format!("{p}.self_attn.v_proj.bias"), vec![2]),
            (format!("{p}.self_attn.o_proj.weight"), vec![4, 4]),
            (format!("{p}.mlp.gate_proj.weight"), vec![6, 4]),
            (format!("{p}.mlp.up_proj.weight"), vec![6, 4]),
            (format!("{p}.mlp.down_proj.weight"), vec![4, 6]),
        ]
        .into()
    }

    fn weights(shapes: Vec<(String, Vec<usize>)>) -> (tempfile::TempDir, Weights) {
        let tensors = shapes
            .into_iter()
            .map(|(n, s)| {
                let len = s.iter().product();
                (n, s, vec![0.0; len])
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("model.safetensors"),
            safetensors_bytes(tensors),
        )
        .unwrap();
        let w = Weights::open(dir.path()).unwrap();
        (dir, w)
    }

    fn with(name: &str, shape: Vec<usize>) -> Vec<(String, Vec<usize>)> {
        let mut all = shapes();
        let t = all.iter_mut().find(|(n, _)| n == name).unwrap();
        t.1 = shape;
        all
    }

    #[test]
    fn a_checkpoint_that_matches_its_config_loads() {
        let (_dir, w) = weights(shapes());
        check_shapes(&config("1"), &w).unwrap();
        let model = Model::<burn::backend::Flex>::load(&config("1"), &w, &Default::default());
        assert_eq!(model.unwrap().layers.len(), 1);
    }

    #[test]
    fn shapes_that_disagree_with_config_json_are_refused_before_reading() {
        let p = "model.layers.0";
        let cases = [
            (
                "model.embed_tokens.weight".to_string(),
                vec![9, 4],
                "[vocab_size, hidden_size]",
            ),
            (
                "model.embed_tokens.weight".to_string(),
                vec![4, 8],
                "[vocab_size, hidden_size]",
            ),
            ("model.norm.weight".to_string(), vec![1, 4], "[hidden_size]"),
            (
                format!("{p}.self_attn.q_proj.weight"),
                vec![4],
                "[num_attention_heads × head_dim, hidden_size]",
            ),
            (
                format!("{p}.self_attn.k_proj.weight"),
                vec![4, 4],
                "[num_key_value_heads × head_dim, hidden_size]",
            ),
            (
                format!("{p}.self_attn.v_proj.bias"),
                vec![4],
                "[num_key_value_heads × head_dim]",
            ),
            (
                format!("{p}.self_attn.o_proj.weight"),
                vec![4, 2],
                "[hidden_size, num_attention_heads × head_dim]",
            ),
            (
                format!("{p}.mlp.gate_proj.weight"),
                vec![4, 6],
                "[intermediate_size, hidden_size]",
            ),
            (
                format!("{p}.mlp.down_proj.weight"),
                vec![6, 4],
                "[hidden_size, intermediate_size]",
            ),
        ];
        for (name, shape, rule) in cases {
            let (_dir, w) = weights(with(&name, shape.clone()));
            let e = Model::<burn::backend::Flex>::load(&config("1"), &w, &Default::default())
                .err()
                .unwrap();
            assert!(
                matches!(&e, WeightsError::Shape { tensor, found, .. } if *tensor == name && *found == shape),
                "{name}: {e}"
            );
            let text = e.to_string();
            assert!(text.contains("model.safetensors"), "{text}");
            assert!(
                text.contains(&format!("({rule} from config.json)")),
                "{text}"
            );
        }
        // A separate head must match too.
        let mut all = shapes();
        all.push(("lm_head.weight".into(), vec![8, 5]));
        let (_dir, w) = weights(all);
        let e = check_shapes(&config("1"), &w).unwrap_err();
        assert!(
            matches!(&e, WeightsError::Shape { tensor, .. } if tensor == "lm_head.weight"),
            "{e}"
        );
    }

    #[test]
    fn an_absurd_layer_count_ends_at_the_first_missing_tensor() {
        let (_dir, w) = weights(shapes());
        let e = Model::<burn::backend::Flex>::load(
            &config("1000000000000000000"),
            &w,
            &Default::default(),
        )
        .err()
        .unwrap();
        assert!(
            matches!(&e, WeightsError::Missing(t) if t == "model.layers.1.input_layernorm.weight"),
            "{e}"
        );
    }

    #[test]
    fn head_counts_that_overflow_are_refused() {
        let mut c = config("1");
        c.head_dim = usize::MAX;
        let (_dir, w) = weights(shapes());
        let e = check_shapes(&c, &w).unwrap_err();
        assert!(matches!(e, WeightsError::ConfigOverflow(_)), "{e}");
    }
}
