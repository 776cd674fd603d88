//! The trainer: AdamW, a warmup-then-decay learning-rate schedule, gradient
//! accumulation, clipping by global norm, epochs over seeded shuffles,
//! validation every `eval_steps` with early stopping, and one JSON progress
//! event per line. The settings (`TrainConfig`, Hugging Face
//! `TrainingArguments` / PEFT names) and the events are defined in
//! `hone-protocol` and re-exported here.

use crate::data::{Batch, Prepared, Sequence};
use crate::model::{causal_lm_loss, Model};
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

// The settings and the events are the job contract the server and the
// browser share; re-exported so the engine keeps its old paths.
pub use hone_protocol::event::{Cause, ComputeDtype, Event};
pub use hone_protocol::train_config::*;

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
    // Every example cut short is a setting too small for the data, not a
    // run worth its cost: say what to change instead.
    let examples = train.sequences.len() + train.empty;
    if train.truncated > 0 && train.truncated == examples {
        return Err(TrainError::AllTooLong {
            examples,
            longest: train.longest,
            max_seq_length: cfg.max_seq_length,
        });
    }
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
        total_steps: total as u64,
        examples: n as u64,
        trainable_params: model.trainable_params() as u64,
        truncated: train.truncated as u64,
        compute_dtype: if model.bf16 {
            ComputeDtype::Bfloat16
        } else {
            ComputeDtype::Float32
        },
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
                step: state.step as u64,
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
                    step: step as u64,
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
                        step: step as u64,
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
                        step: step as u64,
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
        step: step as u64,
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
    fn shuffles_are_seeded_permutations() {
        let a = shuffled(50, 7, 0);
        assert_eq!(a, shuffled(50, 7, 0));
        assert_ne!(a, shuffled(50, 7, 1));
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
    }
}
