//! Training settings with the Hugging Face `TrainingArguments` / PEFT /
//! bitsandbytes names, in TOML or JSON, and the learning-rate schedule
//! they imply: one definition shared by the launch page that edits them,
//! the server that stores them and the engine that trains with them.

use crate::event::Cause;
use crate::settings::settings;
use serde::{Deserialize, Serialize};

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
/// fall back to a default). [`settings`] describes every field.
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
    /// Not TOML/JSON, a wrong type, or an unknown key.
    #[error("training config: {0}")]
    Parse(String),
    /// One setting's value is refused; `field` is its key.
    #[error("training config: {field} {message}")]
    Invalid { field: String, message: String },
    #[error("the training split has no usable examples")]
    NoData,
    /// Every training example is longer than `max_seq_length`, so every
    /// one would be cut: almost certainly a setting too small for the data.
    #[error("{}", too_long(*examples, *longest, *max_seq_length))]
    AllTooLong {
        examples: usize,
        longest: usize,
        max_seq_length: usize,
    },
    #[error("checkpoint: {0}")]
    Checkpoint(String),
}

/// [`TrainError::AllTooLong`] in plain words, with the fix.
fn too_long(examples: usize, longest: usize, max: usize) -> String {
    let what = match examples {
        1 => format!("the only training example is longer than max_seq_length ({max} tokens): it has {longest} tokens"),
        n => format!("all {n} training examples are longer than max_seq_length ({max} tokens); the longest has {longest} tokens"),
    };
    format!("{what}. Raise max_seq_length to at least {longest}, or shorten the examples")
}

impl TrainError {
    /// Whose move it is: settings and data the person chose (`User`), or
    /// the machine and the engine (`System`).
    pub fn cause(&self) -> Cause {
        match self {
            TrainError::Parse(_)
            | TrainError::Invalid { .. }
            | TrainError::NoData
            | TrainError::AllTooLong { .. } => Cause::User,
            TrainError::Checkpoint(_) => Cause::System,
        }
    }

    fn invalid(field: &str, message: impl Into<String>) -> TrainError {
        TrainError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Which projections get adapters: PEFT's `target_modules` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl Target {
    pub const ALL: [Target; 7] = [
        Target::Q,
        Target::K,
        Target::V,
        Target::O,
        Target::Gate,
        Target::Up,
        Target::Down,
    ];

    /// Every PEFT name, in [`Target::ALL`]'s order (for the settings table).
    pub const NAMES: [&'static str; 7] = [
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    ];

    /// The module name PEFT uses (`q_proj`, …).
    pub fn name(self) -> &'static str {
        match self {
            Target::Q => "q_proj",
            Target::K => "k_proj",
            Target::V => "v_proj",
            Target::O => "o_proj",
            Target::Gate => "gate_proj",
            Target::Up => "up_proj",
            Target::Down => "down_proj",
        }
    }

    /// The Hugging Face module the projection lives in.
    pub fn group(self) -> &'static str {
        match self {
            Target::Q | Target::K | Target::V | Target::O => "self_attn",
            Target::Gate | Target::Up | Target::Down => "mlp",
        }
    }

    pub fn from_name(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// LoRA settings, as PEFT names them.
#[derive(Clone, Debug, PartialEq)]
pub struct LoraConfig {
    pub r: usize,
    pub alpha: f64,
    pub dropout: f64,
    pub targets: Vec<Target>,
    /// Scale by `alpha / √r` instead of `alpha / r`.
    pub rslora: bool,
    /// Seeds the adapters' initial `A` (with each adapter's name), so the
    /// same settings always start from the same adapters.
    pub seed: u64,
}

/// How the base is quantized (bitsandbytes' `BitsAndBytesConfig` with
/// `bnb_4bit_quant_type="nf4"`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuantConfig {
    /// Values per absmax block (`blocksize`; 64 in QLoRA).
    pub block: usize,
    /// Quantize the block maxima too (`bnb_4bit_use_double_quant`).
    pub double: bool,
}

impl Default for QuantConfig {
    fn default() -> Self {
        QuantConfig {
            block: 64,
            double: true,
        }
    }
}

impl TrainConfig {
    /// TOML (`.toml`) or JSON text.
    pub fn parse(text: &str, json: bool) -> Result<TrainConfig, TrainError> {
        let c: TrainConfig = if json {
            serde_json::from_str(text).map_err(|e| TrainError::Parse(e.to_string()))?
        } else {
            toml::from_str(text).map_err(|e| TrainError::Parse(e.to_string()))?
        };
        c.validate()?;
        Ok(c)
    }

    /// The settings as TOML, the form a person edits.
    pub fn to_toml(&self) -> Result<String, TrainError> {
        toml::to_string(self).map_err(|e| TrainError::Parse(e.to_string()))
    }

    /// Every numeric setting within its range in [`settings`] (for the
    /// settings that apply to the method), and the combinations checked.
    pub fn validate(&self) -> Result<(), TrainError> {
        // Looked up by key through serde, so the table and this check
        // cannot drift apart: a key the table names is the field's name.
        let values = serde_json::to_value(self).map_err(|e| TrainError::Parse(e.to_string()))?;
        for s in settings() {
            let Some(range) = s.range.filter(|_| s.applies_to(self.method)) else {
                continue;
            };
            // JSON has no NaN or infinity: serde writes them as null, as it
            // writes an unset optional setting, which has nothing to check.
            let Some(v) = values.get(s.key).and_then(serde_json::Value::as_f64) else {
                if s.optional {
                    continue;
                }
                return Err(TrainError::invalid(
                    s.key,
                    format!("{} (got a value that is not a number)", range.describe()),
                ));
            };
            if !range.contains(v) {
                return Err(TrainError::invalid(
                    s.key,
                    format!("{} (got {v})", range.describe()),
                ));
            }
        }
        self.bf16_compute(false)?;
        if self.method.adapters() {
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
                return Err(TrainError::invalid(
                    "bnb_4bit_compute_dtype",
                    format!("= {other:?} is not supported; use \"bfloat16\" or \"float32\""),
                ))
            }
        };
        match (self.bf16, named) {
            (Some(a), Some(b)) if a != b => Err(TrainError::invalid(
                "bf16",
                format!(
                    "= {a} contradicts bnb_4bit_compute_dtype = {:?}; set one of them",
                    self.bnb_4bit_compute_dtype.as_deref().unwrap_or_default()
                ),
            )),
            (Some(a), _) => Ok(a),
            (None, Some(b)) => Ok(b),
            (None, None) => Ok(gpu),
        }
    }

    /// How the base is quantized: `Some` for QLoRA.
    pub fn quant(&self) -> Option<QuantConfig> {
        (self.method == Method::Qlora).then_some(QuantConfig {
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
                    TrainError::invalid(
                        "target_modules",
                        format!(
                            "names {t:?}, which is not one of {}",
                            Target::NAMES.join(", ")
                        ),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if targets.is_empty() {
            return Err(TrainError::invalid(
                "target_modules",
                format!(
                    "is empty; name at least one of {}",
                    Target::NAMES.join(", ")
                ),
            ));
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
        assert!(
            matches!(&both, TrainError::Invalid { field, .. } if field == "bf16"),
            "{both:?}"
        );
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
        assert_eq!(typo.cause(), Cause::User);
        let bad = TrainConfig::parse("target_modules = [\"attn\"]\n", false).unwrap_err();
        assert!(bad.to_string().contains("attn"));
        let none = TrainConfig::parse("target_modules = []\n", false).unwrap_err();
        assert!(
            none.to_string().contains("target_modules is empty"),
            "{none}"
        );
        assert!(TrainConfig::parse("per_device_train_batch_size = 0\n", false).is_err());
        let q = TrainConfig::parse(
            "method = \"qlora\"\nbnb_4bit_use_double_quant = false\n",
            false,
        )
        .unwrap();
        assert_eq!(
            q.quant(),
            Some(QuantConfig {
                block: 64,
                double: false
            })
        );
        assert_eq!(TrainConfig::default().quant(), None);
        let zero =
            TrainConfig::parse("method = \"qlora\"\nbnb_4bit_block_size = 0\n", false).unwrap_err();
        assert!(zero.to_string().contains("bnb_4bit_block_size"), "{zero}");
        // Settings of another method are not checked: a full fine-tune's
        // unused LoRA rank does not block it.
        assert!(TrainConfig::parse("method = \"full\"\nlora_r = 0\n", false).is_ok());
    }

    #[test]
    fn toml_and_json_round_trip() {
        let c = TrainConfig {
            method: Method::Qlora,
            early_stopping_patience: Some(3),
            bf16: Some(true),
            bnb_4bit_compute_dtype: Some("bfloat16".into()),
            target_modules: vec!["q_proj".into(), "down_proj".into()],
            learning_rate: 1e-5,
            ..TrainConfig::default()
        };
        let toml = c.to_toml().unwrap();
        assert_eq!(TrainConfig::parse(&toml, false), Ok(c.clone()));
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(TrainConfig::parse(&json, true), Ok(c));
        let plain = TrainConfig::default();
        assert_eq!(
            TrainConfig::parse(&plain.to_toml().unwrap(), false),
            Ok(plain)
        );
    }

    #[test]
    fn errors_say_whose_move_it_is() {
        assert_eq!(TrainError::NoData.cause(), Cause::User);
        let long = TrainError::AllTooLong {
            examples: 8,
            longest: 2100,
            max_seq_length: 1024,
        };
        assert_eq!(long.cause(), Cause::User);
        assert_eq!(
            long.to_string(),
            "all 8 training examples are longer than max_seq_length (1024 tokens); the longest has 2100 tokens. Raise max_seq_length to at least 2100, or shorten the examples"
        );
        let one = TrainError::AllTooLong {
            examples: 1,
            longest: 16,
            max_seq_length: 4,
        };
        assert_eq!(
            one.to_string(),
            "the only training example is longer than max_seq_length (4 tokens): it has 16 tokens. Raise max_seq_length to at least 16, or shorten the examples"
        );
        assert_eq!(
            TrainError::Checkpoint("disk full".into()).cause(),
            Cause::System
        );
    }
}
