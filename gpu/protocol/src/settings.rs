//! What each training setting means, in words for a domain expert, with
//! its kind, allowed range and default: the launch page draws its form from
//! this table and [`TrainConfig::validate`](crate::train_config::TrainConfig::validate)
//! checks against the same ranges, so the page and the engine cannot
//! disagree about what is allowed.

use crate::train_config::{Method, Target};
use serde::Serialize;

/// One `TrainConfig` field, described.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Setting {
    /// The Hugging Face / PEFT / bitsandbytes name, as in the config file.
    pub key: &'static str,
    pub label: &'static str,
    /// One plain sentence for someone who knows their data, not ML.
    pub help: &'static str,
    pub kind: Kind,
    /// For numbers: the values `validate` accepts.
    pub range: Option<Range>,
    pub default: DefaultValue,
    /// May be left unset (the default is then [`DefaultValue::Unset`], and
    /// the help says what unset means).
    pub optional: bool,
    /// The methods the setting affects; a page hides it for the others and
    /// `validate` does not check it there.
    pub methods: &'static [Method],
}

impl Setting {
    pub fn applies_to(&self, method: Method) -> bool {
        self.methods.contains(&method)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Kind {
    /// A whole number ≥ 0.
    Integer,
    Float,
    Bool,
    /// One of `values`.
    Choice {
        values: &'static [&'static str],
    },
    /// A non-empty list of model parts, each one of `values`.
    Modules {
        values: &'static [&'static str],
    },
}

/// An interval; each end included or not.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Range {
    pub min: f64,
    pub min_inclusive: bool,
    pub max: f64,
    pub max_inclusive: bool,
}

impl Range {
    /// `[min, max]`.
    pub const fn closed(min: f64, max: f64) -> Range {
        Range {
            min,
            min_inclusive: true,
            max,
            max_inclusive: true,
        }
    }

    /// `(min, max]`.
    pub const fn above(min: f64, max: f64) -> Range {
        Range {
            min,
            min_inclusive: false,
            max,
            max_inclusive: true,
        }
    }

    /// `[min, max)`.
    pub const fn below(min: f64, max: f64) -> Range {
        Range {
            min,
            min_inclusive: true,
            max,
            max_inclusive: false,
        }
    }

    /// Whether `v` lies inside (never for NaN).
    pub fn contains(&self, v: f64) -> bool {
        let low = if self.min_inclusive {
            v >= self.min
        } else {
            v > self.min
        };
        let high = if self.max_inclusive {
            v <= self.max
        } else {
            v < self.max
        };
        low && high
    }

    /// The range in words, as an error message ends: "must be from 1 to
    /// 100", "must be above 0 and at most 1", ….
    pub fn describe(&self) -> String {
        let (min, max) = (self.min, self.max);
        match (self.min_inclusive, self.max_inclusive) {
            (true, true) => format!("must be from {min} to {max}"),
            (false, true) => format!("must be above {min} and at most {max}"),
            (true, false) => format!("must be at least {min} and below {max}"),
            (false, false) => format!("must be above {min} and below {max}"),
        }
    }
}

/// A setting's default, as it appears in JSON (`Unset` is `null`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum DefaultValue {
    Integer(u64),
    Float(f64),
    Bool(bool),
    Text(&'static str),
    List(&'static [&'static str]),
    Unset,
}

const ALL: &[Method] = &[Method::Full, Method::Lora, Method::Qlora];
const ADAPTERS: &[Method] = &[Method::Lora, Method::Qlora];
const QLORA: &[Method] = &[Method::Qlora];
const STEPS: Range = Range::closed(1.0, 1_000_000.0);

const SETTINGS: &[Setting] = &[
    Setting {
        key: "method",
        label: "Method",
        help: "How the model learns: LoRA trains small add-on weights and suits most projects, QLoRA does the same on a compressed copy of the model to fit smaller GPUs, and full retrains every weight and needs far more memory.",
        kind: Kind::Choice {
            values: &["full", "lora", "qlora"],
        },
        range: None,
        default: DefaultValue::Text("lora"),
        optional: false,
        methods: ALL,
    },
    Setting {
        key: "num_train_epochs",
        label: "Epochs",
        help: "How many times training reads through all of your examples; more passes learn more, but too many make the model repeat your examples word for word.",
        kind: Kind::Integer,
        // Up to 1000, not 100: tiny data sets (and the engine's own
        // interruption tests) run hundreds of passes.
        range: Some(Range::closed(1.0, 1000.0)),
        default: DefaultValue::Integer(3),
        optional: false,
        methods: ALL,
    },
    Setting {
        key: "per_device_train_batch_size",
        label: "Batch size",
        help: "How many examples the model studies together before each small correction; larger batches learn more steadily but need more memory.",
        kind: Kind::Integer,
        range: Some(Range::closed(1.0, 1024.0)),
        default: DefaultValue::Integer(8),
        optional: false,
        methods: ALL,
    },
    Setting {
        key: "gradient_accumulation_steps",
        label: "Accumulation steps",
        help: "How many batches are combined into one update, which gives the steadiness of a larger batch without needing its memory.",
        kind: Kind::Integer,
        range: Some(Range::closed(1.0, 1024.0)),
        default: DefaultValue::Integer(1),
        optional: false,
        methods: ALL,
    },
    Setting {
        key: "learning_rate",
        label: "Learning rate",
        help: "How big a step the model takes each time it corrects itself; too high and training goes haywire, too low and it learns almost nothing.",
        kind: Kind::Float,
        // 0 is allowed (nothing is learnt): a run that only measures the
        // base model's validation loss, which the engine's tests use.
        range: Some(Range::closed(0.0, 1.0)),
        default: DefaultValue::Float(2e-4),
        optional: false,
        methods: ALL,
    },
    Setting {
        key: "lr_scheduler_type",
        label: "Learning-rate schedule",
        help: "How the step size shrinks as training goes on: smoothly towards the end (cosine), evenly (linear), or not at all (constant).",
        kind: Kind::Choice {
            values: &["cosine", "linear", "constant"],
        },
        range: None,
        default: DefaultValue::Text("cosine"),
        optional: false,
        methods: ALL,
    },
    Setting {
        key: "warmup_steps",
        label: "Warm-up steps",
        help: "How many of the first updates ramp the step size up from zero, so that training does not start with a jolt.",
        kind: Kind::Integer,
        range: Some(Range::closed(0.0, 100_000.0)),
        default: DefaultValue::Integer(0),
        optional: false,
        methods: ALL,
    },
    Setting {
        key: "weight_decay",
        label: "Weight decay",
        help: "A gentle pull that keeps the learnt weights small, which can stop the model from memorising your examples; 0 turns it off.",
        kind: Kind::Float,
        range: Some(Range::closed(0.0, 1.0)),
        default: DefaultValue::Float(0.0),
        optional: false,
        methods: ALL,
    },
    Setting {
        key: "adam_beta1",
        label: "Adam beta 1",
        help: "How much each update keeps the direction of the earlier ones; the default suits almost every run.",
        kind: Kind::Float,
        range: Some(Range::below(0.0, 1.0)),
        default: DefaultValue::Float(0.9),
        optional: false,
        methods: ALL,
    },
    Setting {
        key: "adam_beta2",
        label: "Adam beta 2",
        help: "How much each update remembers the size of the earlier ones; the default suits almost every run.",
        kind: Kind::Float,
        range: Some(Range::below(0.0, 1.0)),
        default: DefaultValue::Float(0.999),
        optional: false,
        methods: ALL,
    },
    Setting {
        key: "adam_epsilon",
        label: "Adam epsilon",
        help: "A tiny number that keeps the update arithmetic from dividing by zero; there is rarely a reason to change it.",
        kind: Kind::Float,
        range: Some(Range::above(0.0, 1e-3)),
        default: DefaultValue::Float(1e-8),
        optional: false,
        methods: ALL,
    },
    Setting {
        key: "max_grad_norm",
        label: "Gradient clipping",
        help: "A cap on how large a single update may be, which protects training from sudden jumps caused by unusual examples; 0 turns the cap off.",
        kind: Kind::Float,
        range: Some(Range::closed(0.0, 1000.0)),
        default: DefaultValue::Float(1.0),
        optional: false,
        methods: ALL,
    },
    Setting {
        key: "logging_steps",
        label: "Report every",
        help: "How often, counted in updates, the progress chart gets a new point.",
        kind: Kind::Integer,
        range: Some(STEPS),
        default: DefaultValue::Integer(10),
        optional: false,
        methods: ALL,
    },
    Setting {
        key: "eval_steps",
        label: "Check every",
        help: "How often, counted in updates, the model is scored on your validation examples to see whether it still improves.",
        kind: Kind::Integer,
        range: Some(STEPS),
        default: DefaultValue::Integer(100),
        optional: false,
        methods: ALL,
    },
    Setting {
        key: "save_steps",
        label: "Save every",
        help: "How often, counted in updates, the run saves a checkpoint, so that an interrupted run continues from there instead of starting over.",
        kind: Kind::Integer,
        range: Some(STEPS),
        default: DefaultValue::Integer(100),
        optional: false,
        methods: ALL,
    },
    Setting {
        key: "save_total_limit",
        label: "Checkpoints kept",
        help: "How many of the most recent checkpoints stay on disk; the one with the best validation score is always kept as well.",
        kind: Kind::Integer,
        range: Some(Range::closed(1.0, 100.0)),
        default: DefaultValue::Integer(2),
        optional: false,
        methods: ALL,
    },
    Setting {
        key: "seed",
        label: "Random seed",
        help: "Any whole number: the same seed with the same examples and settings gives the same model, so a run can be repeated exactly.",
        kind: Kind::Integer,
        range: None,
        default: DefaultValue::Integer(42),
        optional: false,
        methods: ALL,
    },
    Setting {
        key: "max_seq_length",
        label: "Maximum length (tokens)",
        help: "The longest example the model reads, counted in tokens (pieces of words); longer examples are cut at the end, and a higher limit needs more memory.",
        kind: Kind::Integer,
        range: Some(Range::closed(2.0, 131_072.0)),
        default: DefaultValue::Integer(1024),
        optional: false,
        methods: ALL,
    },
    Setting {
        key: "train_on_all_tokens",
        label: "Learn from every message",
        help: "Also learn to write the user and system messages, not only the assistant's replies; usually left off.",
        kind: Kind::Bool,
        range: None,
        default: DefaultValue::Bool(false),
        optional: false,
        methods: ALL,
    },
    Setting {
        key: "early_stopping_patience",
        label: "Stop early after",
        help: "Stop training once the validation score has failed to improve this many checks in a row; leave it empty to always run to the end.",
        kind: Kind::Integer,
        range: Some(Range::closed(1.0, 1000.0)),
        default: DefaultValue::Unset,
        optional: true,
        methods: ALL,
    },
    Setting {
        key: "lora_r",
        label: "LoRA rank",
        help: "How much the add-on weights can learn: a higher rank captures more detail but uses more memory and can memorise your examples.",
        kind: Kind::Integer,
        range: Some(Range::closed(1.0, 1024.0)),
        default: DefaultValue::Integer(16),
        optional: false,
        methods: ADAPTERS,
    },
    Setting {
        key: "lora_alpha",
        label: "LoRA alpha",
        help: "How strongly the add-on weights change the model's behaviour; twice the rank is a common choice.",
        kind: Kind::Float,
        range: Some(Range::above(0.0, 4096.0)),
        default: DefaultValue::Float(32.0),
        optional: false,
        methods: ADAPTERS,
    },
    Setting {
        key: "lora_dropout",
        label: "LoRA dropout",
        help: "The share of the add-on weights switched off at random while training, which helps the model generalise instead of memorising.",
        kind: Kind::Float,
        range: Some(Range::below(0.0, 1.0)),
        default: DefaultValue::Float(0.05),
        optional: false,
        methods: ADAPTERS,
    },
    Setting {
        key: "target_modules",
        label: "Adapted parts",
        help: "Which parts of the model get add-on weights: the attention parts (q, k, v, o) are the usual choice, and adding the feed-forward parts (gate, up, down) learns more at a higher cost.",
        kind: Kind::Modules {
            values: &Target::NAMES,
        },
        range: None,
        default: DefaultValue::List(&["q_proj", "k_proj", "v_proj", "o_proj"]),
        optional: false,
        methods: ADAPTERS,
    },
    Setting {
        key: "use_rslora",
        label: "Rank-stabilised LoRA",
        help: "Scale the add-on weights so that a high rank trains as steadily as a low one; worth trying with ranks above 64.",
        kind: Kind::Bool,
        range: None,
        default: DefaultValue::Bool(false),
        optional: false,
        methods: ADAPTERS,
    },
    Setting {
        key: "bnb_4bit_use_double_quant",
        label: "Double compression",
        help: "Also compress the numbers that describe the compressed model, saving a little more memory at no cost in quality.",
        kind: Kind::Bool,
        range: None,
        default: DefaultValue::Bool(true),
        optional: false,
        methods: QLORA,
    },
    Setting {
        key: "bnb_4bit_block_size",
        label: "Compression block size",
        help: "How many weights share one scale when the model is compressed; smaller blocks are more faithful to the original but take more memory.",
        kind: Kind::Integer,
        range: Some(Range::closed(1.0, 4096.0)),
        default: DefaultValue::Integer(64),
        optional: false,
        methods: QLORA,
    },
    Setting {
        key: "bf16",
        label: "Half-size arithmetic (bf16)",
        help: "Compute with a faster number format half the usual size; left empty, Hone uses it on a GPU and not on the CPU.",
        kind: Kind::Bool,
        range: None,
        default: DefaultValue::Unset,
        optional: true,
        methods: ALL,
    },
    Setting {
        key: "bnb_4bit_compute_dtype",
        label: "Compute number format",
        help: "The same choice as half-size arithmetic under the name QLoRA recipes use (bfloat16 or float32); it must not contradict that setting.",
        kind: Kind::Choice {
            values: &["bfloat16", "float32"],
        },
        range: None,
        default: DefaultValue::Unset,
        optional: true,
        methods: ALL,
    },
    Setting {
        key: "gradient_checkpointing",
        label: "Save memory by recomputing",
        help: "Recompute parts of the model during training instead of keeping them in memory: far less memory for long examples, about a third slower.",
        kind: Kind::Bool,
        range: None,
        default: DefaultValue::Bool(false),
        optional: false,
        methods: ALL,
    },
];

/// Every `TrainConfig` field, in the struct's order.
pub fn settings() -> &'static [Setting] {
    SETTINGS
}

/// The setting named `key`.
pub fn setting(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.key == key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train_config::{TrainConfig, TrainError};
    use serde_json::{json, Value};

    fn defaults() -> serde_json::Map<String, Value> {
        match serde_json::to_value(TrainConfig::default()).unwrap() {
            Value::Object(m) => m,
            other => panic!("{other}"),
        }
    }

    /// The defaults with `key` set to `value`, for `method`, validated.
    fn with(method: Method, key: &str, value: Value) -> Result<TrainConfig, TrainError> {
        let mut m = defaults();
        m.insert("method".into(), serde_json::to_value(method).unwrap());
        m.insert(key.into(), value);
        let c: TrainConfig = serde_json::from_value(Value::Object(m)).unwrap();
        c.validate().map(|()| c)
    }

    #[test]
    fn the_table_describes_every_field_and_its_default() {
        let fields = defaults();
        let mut keys: Vec<&str> = settings().iter().map(|s| s.key).collect();
        keys.sort_unstable();
        let mut want: Vec<&str> = fields.keys().map(String::as_str).collect();
        want.sort_unstable();
        assert_eq!(keys, want, "one setting per TrainConfig field");
        for s in settings() {
            assert_eq!(
                serde_json::to_value(s.default).unwrap(),
                fields[s.key],
                "{}'s default",
                s.key
            );
            assert_eq!(s.optional, s.default == DefaultValue::Unset, "{}", s.key);
            assert!(!s.label.is_empty() && s.help.ends_with('.'), "{}", s.key);
            assert!(!s.methods.is_empty(), "{}", s.key);
            let numeric = matches!(s.kind, Kind::Integer | Kind::Float);
            assert!(
                s.range.is_none() || numeric,
                "{}: a range on a non-number",
                s.key
            );
        }
        TrainConfig::default().validate().unwrap();
    }

    #[test]
    fn validate_uses_the_tables_ranges() {
        for s in settings() {
            let Some(r) = s.range else { continue };
            let method = s.methods[0];
            let number = |v: f64| match s.kind {
                Kind::Integer => json!(v as u64),
                _ => json!(v),
            };
            let refused = |v: f64| {
                let err = with(method, s.key, number(v)).unwrap_err();
                match &err {
                    TrainError::Invalid { field, message } => {
                        assert_eq!(field, s.key);
                        assert!(message.contains(&r.describe()), "{err}");
                    }
                    other => panic!("{}: {other:?}", s.key),
                }
                let text = err.to_string();
                assert!(
                    text.contains(s.key)
                        && text.contains(&r.min.to_string())
                        && text.contains(&r.max.to_string()),
                    "{text}"
                );
            };
            let step = match s.kind {
                Kind::Integer => 1.0,
                _ => r.max.min(1.0) / 2.0,
            };
            if r.min_inclusive {
                with(method, s.key, number(r.min))
                    .unwrap_or_else(|e| panic!("{} at its minimum: {e}", s.key));
                if r.min - step >= 0.0 || s.kind == Kind::Float {
                    refused(r.min - step);
                }
            } else {
                refused(r.min);
                with(method, s.key, number(r.min + step / 1000.0))
                    .unwrap_or_else(|e| panic!("{} just above its minimum: {e}", s.key));
            }
            if r.max_inclusive {
                with(method, s.key, number(r.max))
                    .unwrap_or_else(|e| panic!("{} at its maximum: {e}", s.key));
                refused(r.max + step);
            } else {
                refused(r.max);
                with(method, s.key, number(r.max - step / 1000.0))
                    .unwrap_or_else(|e| panic!("{} just below its maximum: {e}", s.key));
            }
        }
    }

    #[test]
    fn every_listed_choice_is_accepted() {
        for s in settings() {
            match s.kind {
                Kind::Choice { values } => {
                    for v in values {
                        let method = s.methods[s.methods.len() - 1];
                        with(method, s.key, json!(v))
                            .unwrap_or_else(|e| panic!("{} = {v}: {e}", s.key));
                    }
                }
                Kind::Modules { values } => {
                    with(Method::Lora, s.key, json!(values)).unwrap();
                    for v in values {
                        with(Method::Lora, s.key, json!([v])).unwrap();
                    }
                }
                _ => {}
            }
        }
    }

    #[test]
    fn optional_numbers_are_checked_only_when_set() {
        assert!(with(Method::Lora, "early_stopping_patience", Value::Null).is_ok());
        let err = with(Method::Lora, "early_stopping_patience", json!(0)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "training config: early_stopping_patience must be from 1 to 1000 (got 0)"
        );
        let nan = TrainConfig {
            learning_rate: f64::NAN,
            ..TrainConfig::default()
        };
        assert!(nan.validate().is_err());
    }

    #[test]
    fn ranges_read_as_words() {
        assert_eq!(
            Range::closed(1.0, 100.0).describe(),
            "must be from 1 to 100"
        );
        assert_eq!(
            Range::above(0.0, 1e-3).describe(),
            "must be above 0 and at most 0.001"
        );
        assert_eq!(
            Range::below(0.0, 1.0).describe(),
            "must be at least 0 and below 1"
        );
        assert!(Range::below(0.0, 1.0).contains(0.0) && !Range::below(0.0, 1.0).contains(1.0));
        assert!(!Range::closed(0.0, 1.0).contains(f64::NAN));
    }

    #[test]
    fn the_table_serialises_for_a_page() {
        let s = setting("lora_dropout").unwrap();
        expect_test::expect![[r#"{"key":"lora_dropout","label":"LoRA dropout","help":"The share of the add-on weights switched off at random while training, which helps the model generalise instead of memorising.","kind":{"type":"float"},"range":{"min":0.0,"min_inclusive":true,"max":1.0,"max_inclusive":false},"default":0.05,"optional":false,"methods":["lora","qlora"]}"#]]
            .assert_eq(&serde_json::to_string(s).unwrap());
    }
}
