//! How much memory a training run needs, before it starts: the base
//! weights (f32, or NF4 for QLoRA), the trainable parameters with their
//! gradients and AdamW's two moments, and the activations the autodiff
//! graph keeps for one step of `per_device_train_batch_size` sequences of
//! `max_seq_length` tokens. Measured on the CPU engine (f32); with bf16
//! products (`bf16`) a frozen base is held in bf16, two bytes a value
//! (not yet checked against a GPU's measured peak). It is what a
//! scheduler checks against a machine before queueing a job.
//!
//! The activation terms count the tensors this engine's graph holds per
//! token and layer (norm inputs and outputs, projections, rotary copies,
//! the `heads × seq` score and probability matrices, the SwiGLU
//! intermediates) and the logits with their log-softmax; `RUNTIME_BYTES`
//! is the process itself (code, tokenizer, allocator). Checked against
//! measured peaks by `scripts/bench-qlora-memory`.
//!
//! Pure arithmetic on `config.json` and the settings, so the launch page
//! can show it as the settings change, before any job exists.

use crate::model_config::ModelConfig;
use crate::train_config::{Method, Target, TrainConfig, TrainError};
use serde::{Deserialize, Serialize};

/// The process before any model: binary, tokenizer, allocator arenas
/// (`hone-train` on the 131 k-parameter demo model peaks at 13 MB).
pub const RUNTIME_BYTES: u64 = 16 << 20;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub method: Method,
    pub parameters: u64,
    /// Parameters in the decoder's projections (what QLoRA quantizes).
    pub projection_parameters: u64,
    pub trainable_parameters: u64,
    /// Bytes of the base model as held (NF4 projections for QLoRA).
    pub base_bytes: u64,
    /// `base_bytes` per projection parameter for QLoRA's NF4 part.
    pub nf4_bytes_per_parameter: Option<f64>,
    /// Trainable weights, their gradients and AdamW's moments.
    pub trainable_bytes: u64,
    pub activation_bytes: u64,
    /// One dequantized projection (QLoRA) and the runtime.
    pub workspace_bytes: u64,
    pub total_bytes: u64,
}

/// NF4 storage of one `[out, in]` weight as the engine's `Nf4Weight`
/// holds it.
fn nf4_bytes(values: u64, block: u64, double: bool) -> u64 {
    let blocks = values.div_ceil(block);
    let codes = (blocks * block).div_ceil(8) * 4;
    let scales = if double {
        blocks.div_ceil(256) * 256 + blocks.div_ceil(256) * 4 + 4
    } else {
        blocks * 4
    };
    codes + scales
}

/// `bf16`: the run's matrix products are in bf16 (see
/// [`TrainConfig::bf16_compute`]), so its frozen dense weights are held in
/// bf16.
pub fn estimate(
    model: &ModelConfig,
    train: &TrainConfig,
    bf16: bool,
) -> Result<Estimate, TrainError> {
    let h = model.hidden_size as u64;
    let i = model.intermediate_size as u64;
    let v = model.vocab_size as u64;
    let layers = model.num_hidden_layers as u64;
    let heads = model.num_attention_heads as u64;
    let kv = model.num_key_value_heads as u64;
    let d = model.head_dim as u64;
    // [out, in] of the seven projections.
    let shapes = [
        (heads * d, h),
        (kv * d, h),
        (kv * d, h),
        (h, heads * d),
        (i, h),
        (i, h),
        (h, i),
    ];
    let per_layer: u64 = shapes.iter().map(|(o, n)| o * n).sum();
    let projections = per_layer * layers;
    let biases = if model.attention_bias {
        (heads + 2 * kv) * d * layers
    } else {
        0
    };
    let embeddings = v * h * if model.tie_word_embeddings { 1 } else { 2 };
    let norms = (2 * layers + 1) * h;
    let dense = embeddings + norms + biases;
    let parameters = projections + dense;

    let (trainable, lora_r) = if train.method.adapters() {
        let lora = train.lora()?;
        let targets = Target::ALL;
        let per: u64 = lora
            .targets
            .iter()
            .map(|t| {
                let k = targets.iter().position(|x| x == t).unwrap_or(0);
                let (o, n) = shapes[k];
                lora.r as u64 * (o + n)
            })
            .sum();
        (per * layers, lora.r as u64)
    } else {
        (parameters, 0)
    };
    let quant = train.quant();
    // Bytes per frozen dense value (norms and biases stay f32: few).
    let frozen = if bf16 && train.method.adapters() {
        2
    } else {
        4
    };
    let dense_bytes = frozen * embeddings + 4 * (norms + biases);
    let base_bytes = match quant {
        Some(q) => {
            let per: u64 = shapes
                .iter()
                .map(|(o, n)| nf4_bytes(o * n, q.block as u64, q.double))
                .sum();
            per * layers + dense_bytes
        }
        None if train.method.adapters() => frozen * projections + dense_bytes,
        None => 4 * parameters,
    };
    let nf4_bytes_per_parameter =
        quant.map(|_| (base_bytes - dense_bytes) as f64 / projections as f64);
    // Weights (counted in base for full fine-tuning), gradient, two
    // moments; accumulation keeps a second gradient.
    let copies = if train.gradient_accumulation_steps > 1 {
        4
    } else {
        3
    };
    let trainable_bytes = 4
        * trainable
        * if train.method.adapters() {
            copies + 1
        } else {
            copies
        };

    let b = train.per_device_train_batch_size as u64;
    let s = train.max_seq_length.min(model.max_position_embeddings) as u64;
    let tokens = b * s;
    // Floats kept per token and layer.
    let attention = 4 * h + 3 * (heads + 2 * kv) * d + 2 * heads * d + 3 * heads * s;
    let mlp = 3 * h + 5 * i;
    let adapters = if lora_r > 0 { 2 * 7 * lora_r } else { 0 };
    let per_layer = attention + mlp + adapters;
    // Checkpointing keeps each layer's input; the head's graph (logits and
    // log-softmax) is differentiated and freed before the first layer is
    // recomputed, so the larger of the two is what adds to the inputs.
    let per_token = if train.gradient_checkpointing {
        layers * h + per_layer.max(3 * v)
    } else {
        layers * per_layer + 3 * v
    } + 4 * h;
    let activation_bytes = 4 * tokens * per_token;
    // The largest projection dequantized (f32), the copy of its codes and
    // what the allocator keeps around them: ~12 bytes per value measured.
    let largest = shapes.iter().map(|(o, n)| o * n).max().unwrap_or(0);
    let workspace_bytes = RUNTIME_BYTES + if quant.is_some() { 12 * largest } else { 0 };
    let total_bytes = base_bytes + trainable_bytes + activation_bytes + workspace_bytes;
    Ok(Estimate {
        method: train.method,
        parameters,
        projection_parameters: projections,
        trainable_parameters: trainable,
        base_bytes,
        nf4_bytes_per_parameter,
        trainable_bytes,
        activation_bytes,
        workspace_bytes,
        total_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> ModelConfig {
        ModelConfig::from_json(include_str!("../../../models/hone-demo/config.json"))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn parameters_match_the_demo_checkpoint_and_qlora_is_smaller() {
        let lora =
            estimate(&demo(), &TrainConfig::default(), false).unwrap_or_else(|e| panic!("{e}"));
        // make_demo_model writes 131 392 parameters.
        assert_eq!(lora.parameters, 131_392);
        assert_eq!(lora.base_bytes, 4 * 131_392);
        let qlora = estimate(
            &demo(),
            &TrainConfig {
                method: Method::Qlora,
                ..TrainConfig::default()
            },
            false,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(qlora.trainable_parameters, lora.trainable_parameters);
        let per = qlora.nf4_bytes_per_parameter.unwrap_or(1.0);
        assert!(per > 0.5 && per < 0.56, "{per}");
        assert!(qlora.base_bytes < lora.base_bytes / 2);
        let full = estimate(
            &demo(),
            &TrainConfig {
                method: Method::Full,
                ..TrainConfig::default()
            },
            true,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(full.trainable_parameters, full.parameters);
        assert!(full.trainable_bytes > lora.trainable_bytes);
        // Full fine-tuning keeps f32 master weights in bf16 too; a frozen
        // LoRA base halves.
        assert_eq!(full.base_bytes, 4 * 131_392);
        let half =
            estimate(&demo(), &TrainConfig::default(), true).unwrap_or_else(|e| panic!("{e}"));
        let checkpointed = estimate(
            &demo(),
            &TrainConfig {
                gradient_checkpointing: true,
                ..TrainConfig::default()
            },
            false,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(checkpointed.activation_bytes < lora.activation_bytes);
        assert_eq!(checkpointed.base_bytes, lora.base_bytes);
        // 2 bytes a value, but the (2·layers + 1)·hidden norm weights stay f32.
        assert_eq!(half.base_bytes, 2 * 131_392 + 2 * (2 * 2 + 1) * 64);
    }
}
