//! The trainer: AdamW, a warmup-then-decay learning-rate schedule, gradient
//! accumulation, clipping by global norm, epochs over seeded shuffles,
//! validation every `eval_steps` with early stopping, and one JSON progress
//! event per line. Settings use the Hugging Face `TrainingArguments` / PEFT
//! names, in TOML or JSON.

use crate::data::{Batch, Prepared, Sequence};
use crate::model::{causal_lm_loss, LoraConfig, Model, Target};
use crate::qlora::{QuantBackend, TrainBackend};
use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// What a checkpoint records besides weights and optimizer state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Optimizer steps done.
    pub step: usize,
    pub tokens: usize,
    pub best_eval_loss: Option<f64>,
    pub since_best: usize,
    /// FNV-1a of `optimizer.bin`: a damaged file is refused, not decoded.
    pub optimizer_fnv: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Full,
    Lora,
    /// LoRA over a frozen NF4 base.
    Qlora,
}

impl Method {
    /// Whether only adapters train (LoRA and QLoRA).
    pub fn adapters(self) -> bool {
        matches!(self, Method::Lora | Method::Qlora)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    Cosine,
    Linear,
    Constant,
}

/// Training settings; unknown keys are refused (a typo must not silently
/// fall back to a default).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub method: Method,
    pub num_train_epochs: usize,
    pub per_device_train_batch_size: usize,
    pub gradient_accumulation_steps: usize,
    pub learning_rate: f64,
    pub lr_scheduler_type: Schedule,
    pub warmup_steps: usize,
    pub weight_decay: f64,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    pub adam_epsilon: f64,
    /// Clip gradients to this global L2 norm (0: no clipping).
    pub max_grad_norm: f64,
    pub logging_steps: usize,
    pub eval_steps: usize,
    pub save_steps: usize,
    /// Checkpoints kept besides the best one.
    pub save_total_limit: usize,
    pub seed: u64,
    pub max_seq_length: usize,
    /// Loss on every token instead of only the assistant's.
    pub train_on_all_tokens: bool,
    /// Stop after this many evaluations without a better validation loss.
    pub early_stopping_patience: Option<usize>,
    pub lora_r: usize,
    pub lora_alpha: f64,
    pub lora_dropout: f64,
    pub target_modules: Vec<String>,
    pub use_rslora: bool,
    /// QLoRA: quantize the block maxima too (bitsandbytes' name).
    pub bnb_4bit_use_double_quant: bool,
    /// QLoRA: values per NF4 block.
    pub bnb_4bit_block_size: usize,
    /// Matrix products in bf16 (transformers' `bf16`); unset: bf16 on a
    /// GPU, f32 on the CPU.
    pub bf16: Option<bool>,
    /// QLoRA's compute dtype as bitsandbytes names it (`"bfloat16"` or
    /// `"float32"`); the same switch as `bf16`, which it must not
    /// contradict.
    pub bnb_4bit_compute_dtype: Option<String>,
    /// Recompute each decoder layer in the backward pass instead of
    /// keeping its activations (transformers' name): much less memory for
    /// long sequences, about a third more compute.
    pub gradient_checkpointing: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            method: Method::Lora,
            num_train_epochs: 3,
            per_device_train_batch_size: 8,
            gradient_accumulation_steps: 1,
            learning_rate: 2e-4,
            lr_scheduler_type: Schedule::Cosine,
            warmup_steps: 0,
            weight_decay: 0.0,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_epsilon: 1e-8,
            max_grad_norm: 1.0,
            logging_steps: 10,
            eval_steps: 100,
            save_steps: 100,
            save_total_limit: 2,
            seed: 42,
            max_seq_length: 1024,
            train_on_all_tokens: false,
            early_stopping_patience: None,
            lora_r: 16,
            lora_alpha: 32.0,
            lora_dropout: 0.05,
            target_modules: ["q_proj", "k_proj", "v_proj", "o_proj"]
                .map(String::from)
                .to_vec(),
            use_rslora: false,
            bnb_4bit_use_double_quant: true,
            bnb_4bit_block_size: 64,
            bf16: None,
            bnb_4bit_compute_dtype: None,
            gradient_checkpointing: false,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TrainError {
    #[error("training config: {0}")]
    Config(String),
    #[error("the training split has no usable examples")]
    NoData,
    #[error("checkpoint: {0}")]
    Checkpoint(String),
}

impl TrainConfig {
    /// TOML (`.toml`) or JSON text.
    pub fn parse(text: &str, json: bool) -> Result<TrainConfig, TrainError> {
        let c: TrainConfig = if json {
            serde_json::from_str(text).map_err(|e| TrainError::Config(e.to_string()))?
        } else {
            toml::from_str(text).map_err(|e| TrainError::Config(e.to_string()))?
        };
        c.validate()?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |m: &str| Err(TrainError::Config(m.into()));
        if self.per_device_train_batch_size == 0 || self.gradient_accumulation_steps == 0 {
            return bad(
                "per_device_train_batch_size and gradient_accumulation_steps must be at least 1",
            );
        }
        if !(self.learning_rate >= 0.0 && self.learning_rate.is_finite()) {
            return bad("learning_rate must be a number ≥ 0");
        }
        if self.num_train_epochs == 0 {
            return bad("num_train_epochs must be at least 1");
        }
        if self.max_seq_length < 2 {
            return bad("max_seq_length must be at least 2");
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            return bad("lora_dropout must be in [0, 1)");
        }
        if self.method == Method::Qlora && !(1..=4096).contains(&self.bnb_4bit_block_size) {
            return bad("bnb_4bit_block_size must be between 1 and 4096");
        }
        self.bf16_compute(false)?;
        if self.method.adapters() {
            if self.lora_r == 0 {
                return bad("lora_r must be at least 1");
            }
            self.lora()?;
        }
        Ok(())
    }

    /// Whether the matrix products run in bf16: `bf16` if set, else
    /// `bnb_4bit_compute_dtype` if set, else on a GPU (`gpu`) only.
    pub fn bf16_compute(&self, gpu: bool) -> Result<bool, TrainError> {
        let named = match self.bnb_4bit_compute_dtype.as_deref() {
            None => None,
            Some("bfloat16" | "bf16") => Some(true),
            Some("float32" | "fp32") => Some(false),
            Some(other) => {
                return Err(TrainError::Config(format!(
                    "bnb_4bit_compute_dtype: {other:?} is not supported; use \"bfloat16\" or \"float32\""
                )))
            }
        };
        match (self.bf16, named) {
            (Some(a), Some(b)) if a != b => Err(TrainError::Config(format!(
                "bf16 = {a} contradicts bnb_4bit_compute_dtype = {:?}; set one of them",
                self.bnb_4bit_compute_dtype.as_deref().unwrap_or_default()
            ))),
            (Some(a), _) => Ok(a),
            (None, Some(b)) => Ok(b),
            (None, None) => Ok(gpu),
        }
    }

    /// How the base is quantized: `Some` for QLoRA.
    pub fn quant(&self) -> Option<crate::qlora::QuantConfig> {
        (self.method == Method::Qlora).then_some(crate::qlora::QuantConfig {
            block: self.bnb_4bit_block_size,
            double: self.bnb_4bit_use_double_quant,
        })
    }

    /// The LoRA settings, target names checked.
    pub fn lora(&self) -> Result<LoraConfig, TrainError> {
        let targets = self
            .target_modules
            .iter()
            .map(|t| {
                Target::from_name(t).ok_or_else(|| {
                    TrainError::Config(format!(
                        "target_modules: {t:?} is not one of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if targets.is_empty() {
            return Err(TrainError::Config("target_modules is empty".into()));
        }
        Ok(LoraConfig {
            r: self.lora_r,
            alpha: self.lora_alpha,
            dropout: self.lora_dropout,
            targets,
            rslora: self.use_rslora,
            seed: self.seed,
        })
    }

    /// The learning rate at optimizer step `step` (0-based) of `total`,
    /// as transformers' schedules with warmup compute it.
    pub fn lr_at(&self, step: usize, total: usize) -> f64 {
        let lr = self.learning_rate;
        if step < self.warmup_steps {
            return lr * step as f64 / self.warmup_steps.max(1) as f64;
        }
        let decay = (total.saturating_sub(self.warmup_steps)).max(1) as f64;
        let progress = (step - self.warmup_steps) as f64 / decay;
        match self.lr_scheduler_type {
            Schedule::Constant => lr,
            Schedule::Linear => lr * (1.0 - progress).max(0.0),
            Schedule::Cosine => {
                lr * (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0)
            }
        }
    }
}

/// One progress event, written as one JSON object per line.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Started {
        total_steps: usize,
        examples: usize,
        trainable_params: usize,
        truncated: usize,
        /// `"bfloat16"` or `"float32"`: the dtype of the matrix products.
        compute_dtype: &'static str,
    },
    Step {
        step: usize,
        epoch: f64,
        loss: f64,
        learning_rate: f64,
        grad_norm: f64,
        tokens_per_s: f64,
        eta_s: f64,
    },
    Eval {
        step: usize,
        loss: f64,
        perplexity: f64,
    },
    Checkpoint {
        step: usize,
        path: String,
    },
    Resumed {
        step: usize,
        path: String,
    },
    Finished {
        step: usize,
        reason: String,
        best_eval_loss: Option<f64>,
    },
}

/// A cheap deterministic shuffle (SplitMix64 keys), the same everywhere.
fn shuffled(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut keyed: Vec<(u64, usize)> = (0..n)
        .map(|i| {
            let x = seed ^ (epoch as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i as u64;
            (hone_dataset::similar::mix(x), i)
        })
        .collect();
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, i)| i).collect()
}

/// Sum of squared gradients of every parameter that has one.
struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    sum: f64,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            self.sum += g.powi_scalar(2).sum().into_scalar().elem::<f64>();
        }
    }
}

/// Multiplies every gradient by `factor`.
struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            self.grads.register(param.id, g.mul_scalar(self.factor));
        }
    }
}

/// Mean loss over a split, without gradients.
pub fn evaluate<B: TrainBackend>(
    model: &Model<B>,
    data: &Prepared,
    batch_size: usize,
    pad_id: u32,
    device: &B::Device,
) -> f64 {
    mean_loss(&model.valid(), data, batch_size, pad_id, device)
}

/// Mean loss per target token over a split, on any backend.
pub fn mean_loss<B: QuantBackend>(
    model: &Model<B>,
    data: &Prepared,
    batch_size: usize,
    pad_id: u32,
    device: &B::Device,
) -> f64 {
    let (mut total, mut weight) = (0.0, 0.0);
    for chunk in data.sequences.chunks(batch_size.max(1)) {
        let refs: Vec<&Sequence> = chunk.iter().collect();
        let batch = Batch::<B>::new(&refs, pad_id, device);
        let targets: f64 = batch
            .loss
            .clone()
            .narrow(1, 1, batch.loss.dims()[1] - 1)
            .sum()
            .into_scalar()
            .elem();
        let logits = model.forward_masked(batch.ids.clone(), Some(batch.attention.clone()));
        let loss: f64 = causal_lm_loss(logits, batch.ids, batch.loss)
            .into_scalar()
            .elem();
        total += loss * targets;
        weight += targets;
    }
    if weight > 0.0 {
        total / weight
    } else {
        f64::NAN
    }
}

/// Trains `model` on `train` without checkpoints; `emit` receives every
/// event.
pub fn train<B: TrainBackend>(
    model: Model<B>,
    train: &Prepared,
    valid: Option<&Prepared>,
    cfg: &TrainConfig,
    pad_id: u32,
    device: &B::Device,
    emit: &mut dyn FnMut(&Event),
) -> Result<Model<B>, TrainError> {
    train_in(model, train, valid, cfg, pad_id, device, None, emit)
}

/// Where a run keeps its checkpoints, and how it is asked to stop.
pub struct Run<'a> {
    pub dir: &'a Path,
    /// Set (e.g. by a SIGTERM handler or a cancel request): the current
    /// step finishes, a checkpoint is written, training returns.
    pub cancel: &'a AtomicBool,
}

/// As [`train`], checkpointing into `run.dir` every `save_steps` and at
/// the end, and resuming from the latest complete checkpoint there.
#[allow(clippy::too_many_arguments)]
pub fn train_in<B: TrainBackend>(
    mut model: Model<B>,
    train: &Prepared,
    valid: Option<&Prepared>,
    cfg: &TrainConfig,
    pad_id: u32,
    device: &B::Device,
    run: Option<&Run<'_>>,
    emit: &mut dyn FnMut(&Event),
) -> Result<Model<B>, TrainError> {
    cfg.validate()?;
    let n = train.sequences.len();
    if n == 0 {
        return Err(TrainError::NoData);
    }
    let batch = cfg.per_device_train_batch_size;
    let accum = cfg.gradient_accumulation_steps;
    let micro_per_epoch = n.div_ceil(batch);
    let steps_per_epoch = micro_per_epoch.div_ceil(accum);
    let total = steps_per_epoch * cfg.num_train_epochs;
    emit(&Event::Started {
        total_steps: total,
        examples: n,
        trainable_params: model.trainable_params(),
        truncated: train.truncated,
        compute_dtype: if model.bf16 { "bfloat16" } else { "float32" },
    });
    let mut optim = AdamWConfig::new()
        .with_beta_1(cfg.adam_beta1 as f32)
        .with_beta_2(cfg.adam_beta2 as f32)
        .with_epsilon(cfg.adam_epsilon as f32)
        .with_weight_decay(cfg.weight_decay as f32)
        .init::<B, Model<B>>();
    let began = std::time::Instant::now();
    let mut state = State::default();
    if let Some(r) = run {
        if let Some((path, saved)) = checkpoint::latest(r.dir) {
            let (m, o) = checkpoint::load(model, optim, cfg, &path, &saved, device)
                .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", path.display())))?;
            model = m;
            optim = o;
            state = saved;
            emit(&Event::Resumed {
                step: state.step,
                path: path.display().to_string(),
            });
        }
    }
    let mut reason = String::from("completed");
    let (mut step, mut tokens) = (state.step, state.tokens);
    let (mut best, mut since_best) = (state.best_eval_loss, state.since_best);
    let groups_per_epoch = steps_per_epoch;
    // Where the saved run stopped: the next step's epoch and group.
    let (first_epoch, first_group) = (step / groups_per_epoch, step % groups_per_epoch);
    'epochs: for epoch in first_epoch..cfg.num_train_epochs {
        let order = shuffled(n, cfg.seed, epoch);
        let micro: Vec<&[usize]> = order.chunks(batch).collect();
        let skip = if epoch == first_epoch { first_group } else { 0 };
        for group in micro.chunks(accum).skip(skip) {
            // Randomness (LoRA dropout) is a function of the step, so a
            // resumed run draws what the uninterrupted one would have.
            B::seed(device, cfg.seed.wrapping_add(step as u64));
            let mut acc = GradientsAccumulator::<Model<B>>::new();
            let mut loss_sum = 0.0;
            for indices in group {
                let seqs: Vec<&Sequence> = indices.iter().map(|i| &train.sequences[*i]).collect();
                let b = Batch::<B>::new(&seqs, pad_id, device);
                tokens += b.tokens;
                let share = 1.0 / group.len() as f64;
                if cfg.gradient_checkpointing {
                    let (loss, grads) = crate::checkpoint::loss_and_grads(
                        &model,
                        b.ids,
                        Some(b.attention),
                        b.loss,
                        share,
                    );
                    loss_sum += loss;
                    acc.accumulate(&model, grads);
                } else {
                    let logits = model.forward_masked(b.ids.clone(), Some(b.attention.clone()));
                    let loss = causal_lm_loss(logits, b.ids, b.loss).mul_scalar(share);
                    loss_sum += loss.clone().into_scalar().elem::<f64>();
                    acc.accumulate(&model, GradientsParams::from_grads(loss.backward(), &model));
                }
            }
            let mut grads = acc.grads();
            let mut norm = SquaredNorm {
                grads: &grads,
                sum: 0.0,
            };
            model.visit(&mut norm);
            let grad_norm = norm.sum.sqrt();
            if cfg.max_grad_norm > 0.0 && grad_norm > cfg.max_grad_norm {
                let mut scale = Scale {
                    grads: &mut grads,
                    factor: cfg.max_grad_norm / (grad_norm + 1e-6),
                };
                model.visit(&mut scale);
            }
            let lr = cfg.lr_at(step, total);
            model = optim.step(lr, model, grads);
            step += 1;
            if step % cfg.logging_steps.max(1) == 0 || step == total {
                let secs = began.elapsed().as_secs_f64().max(1e-9);
                emit(&Event::Step {
                    step,
                    epoch: epoch as f64
                        + (step - epoch * steps_per_epoch) as f64 / steps_per_epoch as f64,
                    loss: loss_sum,
                    learning_rate: lr,
                    grad_norm,
                    tokens_per_s: tokens as f64 / secs,
                    eta_s: secs / step as f64 * (total - step) as f64,
                });
            }
            if let Some(v) = valid.filter(|v| !v.sequences.is_empty()) {
                if step % cfg.eval_steps.max(1) == 0 || step == total {
                    let loss = evaluate(&model, v, batch, pad_id, device);
                    emit(&Event::Eval {
                        step,
                        loss,
                        perplexity: loss.exp(),
                    });
                    if best.is_none_or(|b| loss < b) {
                        best = Some(loss);
                        since_best = 0;
                    } else {
                        since_best += 1;
                        if cfg.early_stopping_patience.is_some_and(|p| since_best >= p) {
                            reason = format!("early stopping: no better validation loss in {since_best} evaluations");
                            break 'epochs;
                        }
                    }
                }
            }
            let cancelled = run.is_some_and(|r| r.cancel.load(Ordering::SeqCst));
            if let Some(r) = run {
                if step % cfg.save_steps.max(1) == 0 || step == total || cancelled {
                    let state = State {
                        step,
                        tokens,
                        best_eval_loss: best,
                        since_best,
                        optimizer_fnv: 0,
                    };
                    let path = checkpoint::save(&model, &optim, cfg, &state, r.dir)
                        .map_err(|e| TrainError::Checkpoint(e.to_string()))?;
                    emit(&Event::Checkpoint {
                        step,
                        path: path.display().to_string(),
                    });
                }
            }
            if cancelled {
                reason = "cancelled".into();
                break 'epochs;
            }
        }
    }
    emit(&Event::Finished {
        step,
        reason,
        best_eval_loss: best,
    });
    Ok(model)
}

mod checkpoint {
    //! `checkpoint-NNNNNNNN/` folders: the adapter in PEFT's format (LoRA)
    //! or the whole model as a Burn record (full fine-tuning), the
    //! optimizer state, and `trainer_state.json`. Each is written into a
    //! temporary folder, synced, and renamed into place, so a crash leaves
    //! either the whole checkpoint or none; the last `save_total_limit` and
    //! the best are kept.

    use super::*;
    use crate::export::{load_adapter, save_peft_adapter, write_atomic};
    use burn::module::Module;
    use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
    use std::path::PathBuf;

    use hone_dataset::similar::fnv1a as fnv;

    fn name(step: usize) -> String {
        format!("checkpoint-{step:08}")
    }

    /// The newest complete checkpoint and its state.
    pub fn latest(dir: &Path) -> Option<(PathBuf, State)> {
        let mut found: Vec<(usize, PathBuf, State)> = std::fs::read_dir(dir)
            .ok()?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let path = e.path();
                let step = e
                    .file_name()
                    .to_str()?
                    .strip_prefix("checkpoint-")?
                    .parse()
                    .ok()?;
                let text = std::fs::read_to_string(path.join("trainer_state.json")).ok()?;
                let state: State = serde_json::from_str(&text).ok()?;
                Some((step, path, state))
            })
            .collect();
        found.sort_by_key(|f| f.0);
        found.pop().map(|(_, p, s)| (p, s))
    }

    pub fn save<B: TrainBackend, O: Optimizer<Model<B>, B>>(
        model: &Model<B>,
        optim: &O,
        cfg: &TrainConfig,
        state: &State,
        dir: &Path,
    ) -> std::io::Result<PathBuf> {
        let io = |e: burn::record::RecorderError| std::io::Error::other(e.to_string());
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".{}.tmp", name(state.step)));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        std::fs::create_dir_all(&tmp)?;
        let recorder = BinBytesRecorder::<FullPrecisionSettings>::default();
        match cfg.method {
            Method::Lora | Method::Qlora => {
                let lora = cfg
                    .lora()
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                save_peft_adapter(model, &lora, "", &tmp)?;
            }
            Method::Full => {
                let bytes = recorder
                    .record(model.clone().into_record(), ())
                    .map_err(io)?;
                write_atomic(&tmp.join("model.bin"), &bytes)?;
            }
        }
        let bytes = Recorder::<B>::record(&recorder, optim.to_record(), ()).map_err(io)?;
        write_atomic(&tmp.join("optimizer.bin"), &bytes)?;
        let state = State {
            optimizer_fnv: fnv(&bytes),
            ..state.clone()
        };
        let text = serde_json::to_string_pretty(&state).unwrap_or_default();
        write_atomic(&tmp.join("trainer_state.json"), text.as_bytes())?;
        let path = dir.join(name(state.step));
        if path.exists() {
            std::fs::remove_dir_all(&path)?;
        }
        std::fs::rename(&tmp, &path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        prune(dir, cfg.save_total_limit);
        Ok(path)
    }

    /// Keeps the newest `keep` checkpoints and the one with the best
    /// validation loss.
    fn prune(dir: &Path, keep: usize) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut all: Vec<(usize, PathBuf, Option<f64>)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let step = e
                    .file_name()
                    .to_str()?
                    .strip_prefix("checkpoint-")?
                    .parse()
                    .ok()?;
                let state: Option<State> =
                    std::fs::read_to_string(e.path().join("trainer_state.json"))
                        .ok()
                        .and_then(|t| serde_json::from_str(&t).ok());
                Some((step, e.path(), state.and_then(|s| s.best_eval_loss)))
            })
            .collect();
        all.sort_by_key(|a| a.0);
        // The checkpoint saved when the best loss was first reached.
        let best_step = all
            .iter()
            .filter_map(|(step, _, b)| b.map(|b| (*step, b)))
            .fold(None::<(usize, f64)>, |acc, (s, b)| match acc {
                Some((_, best)) if best <= b => acc,
                _ => Some((s, b)),
            })
            .map(|(s, _)| s);
        let cut = all.len().saturating_sub(keep.max(1));
        for (step, path, _) in all.into_iter().take(cut) {
            if Some(step) != best_step {
                let _ = std::fs::remove_dir_all(path);
            }
        }
    }

    pub fn load<B: TrainBackend, O: Optimizer<Model<B>, B>>(
        model: Model<B>,
        optim: O,
        cfg: &TrainConfig,
        path: &Path,
        state: &State,
        device: &B::Device,
    ) -> Result<(Model<B>, O), String> {
        let bytes = std::fs::read(path.join("optimizer.bin")).map_err(|e| e.to_string())?;
        if fnv(&bytes) != state.optimizer_fnv {
            return Err("optimizer.bin is damaged (checksum mismatch)".into());
        }
        let recorder = BinBytesRecorder::<FullPrecisionSettings>::default();
        let model = match cfg.method {
            Method::Lora | Method::Qlora => {
                let lora = cfg.lora().map_err(|e| e.to_string())?;
                load_adapter(model.no_grad(), &lora, path, device).map_err(|e| e.to_string())?
            }
            Method::Full => {
                let m = std::fs::read(path.join("model.bin")).map_err(|e| e.to_string())?;
                let record = recorder.load(m, device).map_err(|e| e.to_string())?;
                model.load_record(record)
            }
        };
        let record = Recorder::<B>::load(&recorder, bytes, device).map_err(|e| e.to_string())?;
        Ok((model, optim.load_record(record)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_match_transformers() {
        // get_cosine/linear_schedule_with_warmup(warmup 3, total 10), lr 2e-4.
        let cosine = [
            0.0,
            6.666666666666667e-05,
            0.00013333333333333334,
            0.0002,
            0.0001900968867902419,
            0.00016234898018587337,
            0.00012225209339563145,
            7.774790660436858e-05,
            3.7651019814126654e-05,
            9.903113209758096e-06,
        ];
        let linear = [
            0.0,
            6.666666666666667e-05,
            0.00013333333333333334,
            0.0002,
            0.00017142857142857143,
            0.00014285714285714287,
            0.00011428571428571428,
            8.571428571428571e-05,
            5.714285714285714e-05,
            2.857142857142857e-05,
        ];
        let mut c = TrainConfig {
            warmup_steps: 3,
            ..TrainConfig::default()
        };
        for (i, want) in cosine.iter().enumerate() {
            assert!((c.lr_at(i, 10) - want).abs() < 1e-15, "cosine step {i}");
        }
        c.lr_scheduler_type = Schedule::Linear;
        for (i, want) in linear.iter().enumerate() {
            assert!((c.lr_at(i, 10) - want).abs() < 1e-15, "linear step {i}");
        }
    }

    #[test]
    fn bf16_defaults_to_the_gpu_and_names_are_checked() {
        let parse = |t: &str| TrainConfig::parse(t, false);
        let default = TrainConfig::default();
        assert_eq!(default.bf16_compute(true), Ok(true));
        assert_eq!(default.bf16_compute(false), Ok(false));
        let off = parse("bf16 = false\n").unwrap();
        assert_eq!(off.bf16_compute(true), Ok(false));
        let on = parse("method = \"qlora\"\nbnb_4bit_compute_dtype = \"bfloat16\"\n").unwrap();
        assert_eq!(on.bf16_compute(false), Ok(true));
        let f16 = parse("bnb_4bit_compute_dtype = \"float16\"\n").unwrap_err();
        assert!(
            f16.to_string().contains("\"float16\" is not supported"),
            "{f16}"
        );
        let both = parse("bf16 = true\nbnb_4bit_compute_dtype = \"float32\"\n").unwrap_err();
        assert!(both.to_string().contains("contradicts"), "{both}");
    }

    #[test]
    fn configs_use_hugging_face_names_and_refuse_typos() {
        let c = TrainConfig::parse(
            "num_train_epochs = 2\nper_device_train_batch_size = 4\nlearning_rate = 1e-4\ntarget_modules = [\"q_proj\", \"down_proj\"]\n",
            false,
        )
        .unwrap();
        assert_eq!((c.num_train_epochs, c.per_device_train_batch_size), (2, 4));
        assert_eq!(c.lora().unwrap().targets, vec![Target::Q, Target::Down]);
        let json = TrainConfig::parse(r#"{"method": "full", "warmup_steps": 5}"#, true).unwrap();
        assert_eq!((json.method, json.warmup_steps), (Method::Full, 5));
        let typo = TrainConfig::parse("learning_rat = 1e-4\n", false).unwrap_err();
        assert!(typo.to_string().contains("learning_rat"), "{typo}");
        let bad = TrainConfig::parse("target_modules = [\"attn\"]\n", false).unwrap_err();
        assert!(bad.to_string().contains("attn"));
        assert!(TrainConfig::parse("per_device_train_batch_size = 0\n", false).is_err());
        let q = TrainConfig::parse(
            "method = \"qlora\"\nbnb_4bit_use_double_quant = false\n",
            false,
        )
        .unwrap();
        assert_eq!(
            q.quant(),
            Some(crate::qlora::QuantConfig {
                block: 64,
                double: false
            })
        );
        assert_eq!(TrainConfig::default().quant(), None);
        let zero =
            TrainConfig::parse("method = \"qlora\"\nbnb_4bit_block_size = 0\n", false).unwrap_err();
        assert!(zero.to_string().contains("bnb_4bit_block_size"), "{zero}");
    }

    #[test]
    fn shuffles_are_seeded_permutations() {
        let a = shuffled(50, 7, 0);
        assert_eq!(a, shuffled(50, 7, 0));
        assert_ne!(a, shuffled(50, 7, 1));
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
    }
}
