//! A Hugging Face `config.json` for the Llama family — `model_type` llama,
//! mistral or qwen2 — read into the one shape the engine uses; here, not in
//! the engine, so the server and the browser refuse an unsupported model
//! with the same words before any job starts. Both ways
//! transformers writes rotary settings are understood: `rope_theta` with
//! `rope_scaling` (transformers 4) and `rope_parameters` (transformers 5).

use serde_json::Value;

/// What the engine needs to build a model.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub model_type: Architecture,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Grouped-query attention: fewer key/value heads than query heads.
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub max_position_embeddings: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: Option<RopeScaling>,
    pub tie_word_embeddings: bool,
    /// Biases on the q/k/v projections (Qwen2; Llama's `attention_bias`).
    pub attention_bias: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Architecture {
    Llama,
    Mistral,
    Qwen2,
}

/// How rotary frequencies are stretched for longer contexts.
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    /// Positions divided by `factor`.
    Linear { factor: f64 },
    /// Llama 3.1's frequency-dependent scaling.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("config.json is not valid JSON: {0}")]
    Json(String),
    #[error("config.json has no `model_type`; Hone reads Hugging Face model folders")]
    NoModelType,
    #[error(
        "model_type {0:?} is not supported yet; supported: llama, mistral, qwen2 (Llama-family decoders)"
    )]
    Unsupported(String),
    #[error("config.json: `{field}` {problem}")]
    Field {
        field: &'static str,
        problem: String,
    },
    #[error(
        "this checkpoint is already quantized ({0}); Hone needs the original f32/f16/bf16 weights (QLoRA quantizes them itself)"
    )]
    Prequantized(String),
    #[error("config.json: rope scaling type {0:?} is not supported (supported: linear, llama3)")]
    RopeType(String),
}

fn field<'a>(v: &'a Value, name: &'static str) -> Result<&'a Value, ConfigError> {
    v.get(name)
        .filter(|v| !v.is_null())
        .ok_or(ConfigError::Field {
            field: name,
            problem: "is missing".into(),
        })
}

fn positive(v: &Value, name: &'static str) -> Result<usize, ConfigError> {
    field(v, name)?
        .as_u64()
        .filter(|n| *n > 0)
        .map(|n| n as usize)
        .ok_or_else(|| ConfigError::Field {
            field: name,
            problem: "must be a whole number above 0".into(),
        })
}

fn number(v: &Value, name: &'static str) -> Result<f64, ConfigError> {
    field(v, name)?.as_f64().ok_or_else(|| ConfigError::Field {
        field: name,
        problem: "must be a number".into(),
    })
}

impl ModelConfig {
    /// Parses `config.json` text.
    pub fn from_json(text: &str) -> Result<ModelConfig, ConfigError> {
        let v: Value = serde_json::from_str(text).map_err(|e| ConfigError::Json(e.to_string()))?;
        if let Some(q) = v.get("quantization_config").filter(|q| !q.is_null()) {
            let method = q
                .get("quant_method")
                .and_then(Value::as_str)
                .unwrap_or("unknown method");
            return Err(ConfigError::Prequantized(method.to_uppercase()));
        }
        let model_type = match v.get("model_type").and_then(Value::as_str) {
            None => return Err(ConfigError::NoModelType),
            Some("llama") => Architecture::Llama,
            Some("mistral") => Architecture::Mistral,
            Some("qwen2") => Architecture::Qwen2,
            Some(other) => return Err(ConfigError::Unsupported(other.into())),
        };
        let hidden_size = positive(&v, "hidden_size")?;
        let num_attention_heads = positive(&v, "num_attention_heads")?;
        let num_key_value_heads = match v.get("num_key_value_heads").filter(|x| !x.is_null()) {
            Some(_) => positive(&v, "num_key_value_heads")?,
            None => num_attention_heads,
        };
        if num_attention_heads % num_key_value_heads != 0 {
            return Err(ConfigError::Field {
                field: "num_key_value_heads",
                problem: format!("({num_key_value_heads}) must divide num_attention_heads ({num_attention_heads})"),
            });
        }
        let head_dim = match v.get("head_dim").filter(|x| !x.is_null()) {
            Some(_) => positive(&v, "head_dim")?,
            None if hidden_size % num_attention_heads == 0 => hidden_size / num_attention_heads,
            None => {
                return Err(ConfigError::Field {
                    field: "hidden_size",
                    problem: format!("({hidden_size}) is not a multiple of num_attention_heads ({num_attention_heads})"),
                })
            }
        };
        // transformers 5: `rope_parameters` holds theta and the scaling.
        let rope = v.get("rope_parameters").filter(|r| r.is_object());
        let rope_theta = match rope.and_then(|r| r.get("rope_theta")) {
            Some(t) => t.as_f64().ok_or(ConfigError::Field {
                field: "rope_parameters",
                problem: "has a rope_theta that is not a number".into(),
            })?,
            None if v.get("rope_theta").is_some() => number(&v, "rope_theta")?,
            None => 10_000.0,
        };
        let scaling = rope.or_else(|| v.get("rope_scaling").filter(|r| r.is_object()));
        let rope_scaling = match scaling {
            Some(s) => parse_scaling(s)?,
            None => None,
        };
        let eos_token_ids = match v.get("eos_token_id") {
            Some(Value::Number(n)) => n.as_u64().map(|n| vec![n as u32]).unwrap_or_default(),
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_u64)
                .map(|n| n as u32)
                .collect(),
            _ => Vec::new(),
        };
        Ok(ModelConfig {
            model_type,
            vocab_size: positive(&v, "vocab_size")?,
            hidden_size,
            intermediate_size: positive(&v, "intermediate_size")?,
            num_hidden_layers: positive(&v, "num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            max_position_embeddings: positive(&v, "max_position_embeddings")?,
            rms_norm_eps: match v.get("rms_norm_eps") {
                Some(_) => number(&v, "rms_norm_eps")?,
                None => 1e-6,
            },
            rope_theta,
            rope_scaling,
            tie_word_embeddings: v
                .get("tie_word_embeddings")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            attention_bias: model_type == Architecture::Qwen2
                || v.get("attention_bias")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            bos_token_id: v
                .get("bos_token_id")
                .and_then(Value::as_u64)
                .map(|n| n as u32),
            eos_token_ids,
        })
    }

    /// Query heads per key/value head.
    pub fn kv_groups(&self) -> usize {
        self.num_attention_heads / self.num_key_value_heads
    }
}

fn parse_scaling(s: &Value) -> Result<Option<RopeScaling>, ConfigError> {
    let kind = s
        .get("rope_type")
        .or_else(|| s.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let get = |name: &'static str| -> Result<f64, ConfigError> {
        s.get(name)
            .and_then(Value::as_f64)
            .ok_or(ConfigError::Field {
                field: "rope_scaling",
                problem: format!("needs a numeric `{name}`"),
            })
    };
    Ok(match kind {
        "default" => None,
        "linear" => Some(RopeScaling::Linear {
            factor: get("factor")?,
        }),
        "llama3" => Some(RopeScaling::Llama3 {
            factor: get("factor")?,
            low_freq_factor: get("low_freq_factor")?,
            high_freq_factor: get("high_freq_factor")?,
            original_max_position_embeddings: get("original_max_position_embeddings")?,
        }),
        other => return Err(ConfigError::RopeType(other.into())),
    })
}

/// Rotary inverse frequencies (`head_dim / 2` of them), scaled as the
/// config says — the same numbers as transformers' `_compute_*_parameters`.
pub fn inverse_frequencies(c: &ModelConfig) -> Vec<f64> {
    let half = c.head_dim / 2;
    let base: Vec<f64> = (0..half)
        .map(|i| 1.0 / c.rope_theta.powf((2 * i) as f64 / c.head_dim as f64))
        .collect();
    match &c.rope_scaling {
        None => base,
        Some(RopeScaling::Linear { factor }) => base.iter().map(|f| f / factor).collect(),
        Some(RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings: old,
        }) => {
            let low_wavelen = old / low_freq_factor;
            let high_wavelen = old / high_freq_factor;
            base.iter()
                .map(|&f| {
                    let wavelen = 2.0 * std::f64::consts::PI / f;
                    if wavelen > low_wavelen {
                        f / factor
                    } else if wavelen < high_wavelen {
                        f
                    } else {
                        let smooth = (old / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * f / factor + smooth * f
                    }
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The engine's test checkpoints (`gpu/tests/fixtures`), read at
    /// compile time: this crate does no IO.
    fn fixture(name: &str) -> String {
        match name {
            "llama" => include_str!("../../tests/fixtures/llama/config.json"),
            "llama-bf16-sharded" => {
                include_str!("../../tests/fixtures/llama-bf16-sharded/config.json")
            }
            "mistral" => include_str!("../../tests/fixtures/mistral/config.json"),
            "qwen2" => include_str!("../../tests/fixtures/qwen2/config.json"),
            other => panic!("no fixture {other}"),
        }
        .to_owned()
    }

    #[test]
    fn reads_each_supported_architecture() {
        let llama = ModelConfig::from_json(&fixture("llama")).unwrap();
        assert_eq!(llama.model_type, Architecture::Llama);
        assert_eq!(
            (
                llama.num_attention_heads,
                llama.num_key_value_heads,
                llama.head_dim
            ),
            (4, 2, 16)
        );
        assert_eq!(llama.kv_groups(), 2);
        assert!(llama.tie_word_embeddings && !llama.attention_bias);
        assert_eq!(llama.rope_theta, 500_000.0);
        assert!(
            matches!(llama.rope_scaling, Some(RopeScaling::Llama3 { factor, .. }) if factor == 8.0)
        );
        let sharded = ModelConfig::from_json(&fixture("llama-bf16-sharded")).unwrap();
        assert_eq!(
            sharded.rope_scaling,
            Some(RopeScaling::Linear { factor: 2.0 })
        );
        assert!(!sharded.tie_word_embeddings);
        let mistral = ModelConfig::from_json(&fixture("mistral")).unwrap();
        assert_eq!(mistral.model_type, Architecture::Mistral);
        let qwen = ModelConfig::from_json(&fixture("qwen2")).unwrap();
        assert!(qwen.attention_bias && qwen.tie_word_embeddings);
        assert_eq!(qwen.eos_token_ids, vec![2]);
    }

    #[test]
    fn transformers_4_rope_fields_are_read_too() {
        let c = ModelConfig::from_json(
            r#"{"model_type":"llama","vocab_size":10,"hidden_size":8,"intermediate_size":16,
                "num_hidden_layers":1,"num_attention_heads":2,"max_position_embeddings":32,
                "rope_theta":1000.0,"rope_scaling":{"type":"linear","factor":4.0}}"#,
        )
        .unwrap();
        assert_eq!(c.rope_theta, 1000.0);
        assert_eq!(c.num_key_value_heads, 2);
        assert_eq!(c.rope_scaling, Some(RopeScaling::Linear { factor: 4.0 }));
        let f = inverse_frequencies(&c);
        assert_eq!(f.len(), 2);
        assert!((f[0] - 0.25).abs() < 1e-12 && (f[1] - 1.0 / 1000f64.sqrt() / 4.0).abs() < 1e-12);
    }

    #[test]
    fn llama3_scaling_keeps_high_and_divides_low_frequencies() {
        let mut c = ModelConfig::from_json(&fixture("llama")).unwrap();
        let scaled = inverse_frequencies(&c);
        c.rope_scaling = None;
        let plain = inverse_frequencies(&c);
        assert_eq!(scaled[0], plain[0]);
        assert!((scaled[7] - plain[7] / 8.0).abs() < 1e-15);
    }

    #[test]
    fn bad_configs_name_the_problem() {
        let err = |t: &str| ModelConfig::from_json(t).unwrap_err().to_string();
        assert!(err(r#"{"model_type":"gpt2"}"#).contains("gpt2"));
        assert!(err(r#"{"hidden_size":8}"#).contains("model_type"));
        assert!(err("{").contains("not valid JSON"));
        assert!(err(r#"{"model_type":"llama","hidden_size":8}"#).contains("num_attention_heads"));
        let gptq =
            r#"{"model_type":"llama","quantization_config":{"quant_method":"gptq","bits":4}}"#;
        assert!(err(gptq).contains("GPTQ"), "{}", err(gptq));
        let awq = r#"{"model_type":"qwen2","quantization_config":{"quant_method":"awq"}}"#;
        assert!(err(awq).contains("AWQ"));
        let yarn = r#"{"model_type":"llama","vocab_size":10,"hidden_size":8,"intermediate_size":16,
            "num_hidden_layers":1,"num_attention_heads":2,"max_position_embeddings":32,
            "rope_scaling":{"rope_type":"yarn","factor":4.0}}"#;
        assert!(err(yarn).contains("yarn"));
        let gqa = r#"{"model_type":"llama","vocab_size":10,"hidden_size":12,"intermediate_size":16,
            "num_hidden_layers":1,"num_attention_heads":3,"num_key_value_heads":2,"max_position_embeddings":32}"#;
        assert!(err(gqa).contains("must divide"));
    }
}
