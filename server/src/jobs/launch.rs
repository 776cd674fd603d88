//! The launch page's answers, as plain functions over values: settings
//! derived from the data, "does it fit?" (the engine's memory estimate
//! against each device the workers report, with a concrete suggestion when
//! it fits nowhere) and "how long?" (tokens × epochs ÷ a throughput
//! calibrated from finished jobs, shown as a range).

use hone_app::api::{DeviceFit, DeviceOffer, LaunchCheck, MethodInfo};
use hone_dataset::check::Stats;
use hone_protocol::{estimate, DeviceKind, Method, ModelConfig, TrainConfig, TrainError};

/// The methods, each in one plain sentence.
pub fn methods() -> Vec<MethodInfo> {
    [
        (
            Method::Lora,
            "LoRA",
            "Trains a small add-on to the model and leaves the model itself untouched: fast, light, and the right choice for most tasks.",
        ),
        (
            Method::Qlora,
            "QLoRA",
            "LoRA over a 4-bit copy of the model: needs about a third of the memory, runs a little slower. Pick it when LoRA does not fit.",
        ),
        (
            Method::Full,
            "Full fine-tuning",
            "Changes every weight of the model: needs several times the memory and much more data (thousands of examples). Pick it only when LoRA is not enough.",
        ),
    ]
    .into_iter()
    .map(|(method, label, help)| MethodInfo {
        method,
        label: label.into(),
        help: help.into(),
        learning_rate: learning_rate(method),
    })
    .collect()
}

/// The usual starting learning rate: adapters learn fast, full
/// fine-tuning needs a gentle one.
pub fn learning_rate(method: Method) -> f64 {
    match method {
        Method::Full => 2e-5,
        Method::Lora | Method::Qlora => 2e-4,
    }
}

/// Settings for a dataset: what the data says, with the reason for each.
/// `longest`: the longest example in tokens, when known; `context`: the
/// model's context length.
pub fn defaults(
    train_examples: u64,
    stats: Option<&Stats>,
    context: Option<u32>,
) -> (TrainConfig, Vec<String>) {
    let mut c = TrainConfig::default();
    let mut why = Vec::new();
    let tokens = stats.filter(|s| matches!(s.unit, Some(hone_dataset::check::Unit::Tokens)));
    if let Some(s) = tokens {
        let longest = s.length.max as usize;
        let mut len = longest.next_multiple_of(64).max(64);
        if let Some(ctx) = context {
            len = len.min(ctx as usize);
        }
        c.max_seq_length = len.max(2);
        why.push(format!(
            "Longest sequence {len} tokens: the longest example has {longest}, so nothing is cut."
        ));
    }
    c.per_device_train_batch_size = match c.max_seq_length {
        0..=512 => 8,
        513..=1024 => 4,
        1025..=2048 => 2,
        _ => 1,
    }
    .min(train_examples.max(1) as usize);
    why.push(format!(
        "Batch size {} for sequences of up to {} tokens.",
        c.per_device_train_batch_size, c.max_seq_length
    ));
    c.num_train_epochs = 3;
    why.push("3 passes over the data (epochs), the usual start.".into());
    c.lora_r = if train_examples < 1000 { 8 } else { 16 };
    why.push(format!(
        "LoRA rank {}: {} examples {} a larger add-on.",
        c.lora_r,
        train_examples,
        if train_examples < 1000 {
            "do not need"
        } else {
            "can use"
        }
    ));
    let total = pace(&mut c, train_examples);
    why.push(format!(
        "{total} training steps: progress every {} step(s), a checkpoint every {} so a crash loses little.",
        c.logging_steps, c.save_steps
    ));
    (c, why)
}

/// Progress about 50 times a run, evaluation and a checkpoint 10 times,
/// warm-up over the first 5% (at most 100 steps); returns the steps.
pub fn pace(c: &mut TrainConfig, train_examples: u64) -> usize {
    let total = total_steps(c, train_examples);
    c.logging_steps = (total / 50).max(1);
    c.eval_steps = (total / 10).max(1);
    c.save_steps = (total / 10).max(1);
    c.warmup_steps = (total / 20).min(100);
    total
}

/// Optimizer steps a run of `c` takes over `examples`.
pub fn total_steps(c: &TrainConfig, examples: u64) -> usize {
    let micro = (examples as usize).div_ceil(c.per_device_train_batch_size.max(1));
    micro.div_ceil(c.gradient_accumulation_steps.max(1)) * c.num_train_epochs
}

/// Memory a job may use on a device: a GPU's memory, or most of a CPU
/// slot's RAM (the rest is the system's and the server's).
pub fn usable(d: &hone_protocol::Device) -> u64 {
    match d.kind {
        DeviceKind::Cuda => d.memory_bytes,
        DeviceKind::Cpu => d.memory_bytes / 10 * 8,
    }
}

pub fn needed(model: &ModelConfig, c: &TrainConfig, gpu: bool) -> Result<u64, TrainError> {
    Ok(estimate(model, c, c.bf16_compute(gpu)?)?.total_bytes)
}

/// Whether `c` fits each offered device, and what to change if it fits
/// none.
pub fn fit(
    model: &ModelConfig,
    c: &TrainConfig,
    devices: &[DeviceOffer],
) -> Result<(u64, Vec<DeviceFit>, Option<String>), TrainError> {
    let any_gpu = devices.iter().any(|d| d.device.kind == DeviceKind::Cuda);
    let need = needed(model, c, any_gpu)?;
    let fits: Vec<DeviceFit> = devices
        .iter()
        .map(|o| {
            let gpu = o.device.kind == DeviceKind::Cuda;
            let need = needed(model, c, gpu).unwrap_or(need);
            DeviceFit {
                device: o.device.clone(),
                available_bytes: usable(&o.device),
                fits: need <= usable(&o.device),
            }
        })
        .collect();
    let suggestion = if devices.is_empty() {
        Some("No worker is running, so nothing can be checked against a device yet.".into())
    } else if fits.iter().any(|f| f.fits) {
        None
    } else {
        Some(suggest(model, c, devices, need)?)
    };
    Ok((need, fits, suggestion))
}

/// The first of a few lighter variants that fits the largest device.
fn suggest(
    model: &ModelConfig,
    c: &TrainConfig,
    devices: &[DeviceOffer],
    need: u64,
) -> Result<String, TrainError> {
    let Some(best) = devices.iter().max_by_key(|o| usable(&o.device)) else {
        return Ok(String::new());
    };
    let room = usable(&best.device);
    let gpu = best.device.kind == DeviceKind::Cuda;
    let mut variants: Vec<(String, TrainConfig)> = Vec::new();
    let with = |f: &dyn Fn(&mut TrainConfig)| {
        let mut v = c.clone();
        f(&mut v);
        v
    };
    if !c.gradient_checkpointing {
        variants.push((
            "turn on gradient checkpointing".into(),
            with(&|v| v.gradient_checkpointing = true),
        ));
    }
    if c.method != Method::Qlora {
        variants.push((
            "use QLoRA".into(),
            with(&|v| {
                v.method = Method::Qlora;
                v.learning_rate = learning_rate(Method::Qlora);
            }),
        ));
    }
    if c.per_device_train_batch_size > 2 {
        let accum = c.gradient_accumulation_steps * c.per_device_train_batch_size / 2;
        variants.push((
            format!("use a batch size of 2 with gradient accumulation {accum}"),
            with(&|v| {
                v.per_device_train_batch_size = 2;
                v.gradient_accumulation_steps = accum;
            }),
        ));
    }
    variants.push((
        "use QLoRA, a batch size of 1 and gradient checkpointing".into(),
        with(&|v| {
            v.method = Method::Qlora;
            v.gradient_accumulation_steps *= v.per_device_train_batch_size;
            v.per_device_train_batch_size = 1;
            v.gradient_checkpointing = true;
        }),
    ));
    let what = format!(
        "It needs about {}, and the largest device ({}) has {}.",
        gib(need),
        best.device.name,
        gib(room)
    );
    for (label, v) in variants {
        let n = needed(model, &v, gpu)?;
        if n <= room {
            return Ok(format!(
                "{what} Try to {label}: that needs about {}.",
                gib(n)
            ));
        }
    }
    Ok(format!(
        "{what} Even the lightest settings do not fit: pick a smaller base model, or shorter sequences."
    ))
}

/// Bytes in GiB with one decimal, or MiB below 1 GiB.
pub fn gib(bytes: u64) -> String {
    let g = bytes as f64 / (1u64 << 30) as f64;
    if g >= 1.0 {
        format!("{g:.1} GiB")
    } else {
        format!("{:.0} MiB", bytes as f64 / (1u64 << 20) as f64)
    }
}

/// Device FLOP/s assumed before any job has finished on a kind of device
/// (conservative: the engine is untuned, see the README's benchmarks).
fn assumed_flops(kind: DeviceKind) -> f64 {
    match kind {
        DeviceKind::Cpu => 5e9,
        DeviceKind::Cuda => 3e13,
    }
}

/// "How long?": `tokens` to train on, and tokens/s of earlier jobs of this
/// model on this kind of device (`measured`), else a guess from its size.
pub fn eta(
    model: &ModelConfig,
    c: &TrainConfig,
    tokens: u64,
    kind: DeviceKind,
    measured: &[f64],
) -> (Option<f64>, Option<f64>, String) {
    let tokens = tokens as f64;
    let speeds: Vec<f64> = measured
        .iter()
        .copied()
        .filter(|s| s.is_finite() && *s > 0.0)
        .collect();
    if !speeds.is_empty() {
        let fast = speeds.iter().copied().fold(f64::MIN, f64::max);
        let slow = speeds.iter().copied().fold(f64::MAX, f64::min);
        // One job is one sample: allow a quarter either way.
        let (fast, slow) = if speeds.len() == 1 {
            (fast * 1.25, slow * 0.75)
        } else {
            (fast, slow)
        };
        return (
            Some(tokens / fast),
            Some(tokens / slow),
            format!(
                "Measured: {} finished job(s) of this model on a {} trained at {:.0}–{:.0} tokens/s.",
                speeds.len(),
                kind_name(kind),
                slow,
                fast
            ),
        );
    }
    let Ok(e) = estimate(model, c, false) else {
        return (None, None, "Unknown: the settings are not valid.".into());
    };
    // Forward and backward: ~6 FLOPs per parameter and token when every
    // weight trains, ~4 when only adapters do (no weight gradients).
    let per_token = e.parameters as f64 * if c.method.adapters() { 4.0 } else { 6.0 };
    let speed = assumed_flops(kind) / per_token.max(1.0);
    (
        Some(tokens / (speed * 2.0)),
        Some(tokens / (speed / 2.0)),
        format!(
            "A rough guess from the model's size: no job of this model has finished on a {} yet. It gets exact after the first one.",
            kind_name(kind)
        ),
    )
}

fn kind_name(kind: DeviceKind) -> &'static str {
    match kind {
        DeviceKind::Cpu => "CPU",
        DeviceKind::Cuda => "GPU",
    }
}

/// Everything the launch page shows before "Launch".
pub fn check(
    model: &ModelConfig,
    c: &TrainConfig,
    devices: &[DeviceOffer],
    tokens: u64,
    measured: &[f64],
) -> Result<LaunchCheck, TrainError> {
    let (needed_bytes, devices_fit, suggestion) = fit(model, c, devices)?;
    let kind = if devices.iter().any(|d| d.device.kind == DeviceKind::Cuda) {
        DeviceKind::Cuda
    } else {
        DeviceKind::Cpu
    };
    let (eta_low_s, eta_high_s, eta_basis) = eta(model, c, tokens, kind, measured);
    Ok(LaunchCheck {
        needed_bytes,
        devices: devices_fit,
        suggestion,
        tokens,
        eta_low_s,
        eta_high_s,
        eta_basis,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hone_protocol::Device;

    fn demo() -> ModelConfig {
        ModelConfig::from_json(include_str!("../../../models/hone-demo/config.json"))
            .expect("the demo config parses")
    }

    fn offer(kind: DeviceKind, gib: u64) -> DeviceOffer {
        DeviceOffer {
            device: Device {
                kind,
                index: (kind == DeviceKind::Cuda).then_some(0),
                name: format!("{kind:?} {gib} GiB"),
                memory_bytes: gib << 30,
            },
            slots: 1,
        }
    }

    #[test]
    fn defaults_fit_the_longest_example_and_checkpoint_often() {
        let mut stats = Stats {
            unit: Some(hone_dataset::check::Unit::Tokens),
            ..Stats::default()
        };
        stats.length.max = 301;
        let (c, why) = defaults(80, Some(&stats), Some(2048));
        c.validate().expect("derived defaults are valid");
        assert_eq!(c.max_seq_length, 320);
        assert_eq!(c.per_device_train_batch_size, 8);
        assert_eq!(c.lora_r, 8);
        // 80 examples / 8 = 10 steps an epoch, 3 epochs.
        assert_eq!(total_steps(&c, 80), 30);
        assert_eq!(c.save_steps, 3);
        assert!(why[0].contains("longest example has 301"), "{why:?}");
        // The model's context caps it.
        let (c, _) = defaults(80, Some(&stats), Some(256));
        assert_eq!(c.max_seq_length, 256);
    }

    #[test]
    fn too_big_for_every_device_comes_with_a_concrete_suggestion() {
        // A 7 B-like model on one 16 GiB GPU: full fine-tuning is far too big.
        let big = ModelConfig::from_json(
            r#"{"model_type":"llama","hidden_size":4096,"intermediate_size":11008,"num_hidden_layers":32,"num_attention_heads":32,"num_key_value_heads":32,"vocab_size":32000,"max_position_embeddings":4096,"rms_norm_eps":1e-5}"#,
        )
        .expect("config parses");
        let c = TrainConfig {
            method: Method::Full,
            ..TrainConfig::default()
        };
        let (need, fits, suggestion) = fit(&big, &c, &[offer(DeviceKind::Cuda, 16)]).unwrap();
        assert!(need > 16 << 30);
        assert!(!fits[0].fits);
        let s = suggestion.expect("a suggestion");
        assert!(
            s.contains("Try to") || s.contains("Even the lightest"),
            "{s}"
        );
        // The demo model fits anywhere.
        let (_, fits, suggestion) = fit(
            &demo(),
            &TrainConfig::default(),
            &[offer(DeviceKind::Cpu, 8)],
        )
        .unwrap();
        assert!(fits[0].fits && suggestion.is_none());
    }

    #[test]
    fn eta_is_a_range_from_measurements_or_a_labelled_guess() {
        let c = TrainConfig::default();
        let (lo, hi, basis) = eta(&demo(), &c, 10_000, DeviceKind::Cpu, &[1000.0, 2000.0]);
        assert_eq!((lo, hi), (Some(5.0), Some(10.0)));
        assert!(basis.starts_with("Measured: 2"), "{basis}");
        let (lo, hi, basis) = eta(&demo(), &c, 10_000, DeviceKind::Cpu, &[]);
        let (lo, hi) = (lo.unwrap(), hi.unwrap());
        assert!(lo > 0.0 && (hi / lo - 4.0).abs() < 1e-9, "{lo} {hi}");
        assert!(basis.contains("rough guess"), "{basis}");
    }
}
