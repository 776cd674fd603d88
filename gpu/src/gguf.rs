//! GGUF export, for llama.cpp and Ollama: the model's weights (f16 or
//! q8_0; norms, biases and rope factors in f32), the architecture's
//! metadata, the tokenizer (tokens, types, merges, special ids) and the
//! chat template, written as llama.cpp's `convert_hf_to_gguf.py` writes
//! them — the same keys, tensor names, tensor types and the query/key row
//! permutation of the `llama` architecture. [`read`] parses a file back
//! (the tests check the layout with it; CI needs no Python).
//!
//! The file is streamed to a temporary name one tensor at a time, synced
//! and renamed: a crash never leaves half a file under the real name, and
//! memory holds one tensor beyond the model.
//!
//! Supported: `LlamaForCausalLM`, `MistralForCausalLM` (llama.cpp's
//! `llama` architecture) and `Qwen2ForCausalLM` (`qwen2`), with a
//! byte-level BPE tokenizer (GPT-2's, Llama 3's or Qwen2's pre-tokenizer).
//! Anything else is refused with its name: SentencePiece-style tokenizers
//! (Llama 2, Mistral v0.1: byte fallback) need llama.cpp's own converter
//! and its `tokenizer.model`.

use crate::model::{Model, Target};
use crate::qlora::QuantBackend;
use crate::ModelConfig;
use burn::tensor::{FloatDType, Tensor};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::Path;

/// The weights' type in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GgufType {
    F16,
    Q8_0,
}

impl GgufType {
    pub fn name(self) -> &'static str {
        match self {
            GgufType::F16 => "f16",
            GgufType::Q8_0 => "q8_0",
        }
    }

    /// `general.file_type`: llama.cpp's `LLAMA_FTYPE_MOSTLY_*`.
    fn file_type(self) -> u32 {
        match self {
            GgufType::F16 => 1,
            GgufType::Q8_0 => 7,
        }
    }
}

impl std::str::FromStr for GgufType {
    type Err = String;
    fn from_str(s: &str) -> Result<GgufType, String> {
        match s.to_ascii_lowercase().as_str() {
            "f16" => Ok(GgufType::F16),
            "q8_0" => Ok(GgufType::Q8_0),
            other => Err(format!(
                "GGUF type {other:?} is not offered; choose f16 or q8_0"
            )),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error(
        "llama.cpp does not know the architecture {0}: GGUF export supports \
         LlamaForCausalLM, MistralForCausalLM and Qwen2ForCausalLM; download the \
         merged Hugging Face folder instead"
    )]
    Architecture(String),
    #[error("GGUF export cannot write this tokenizer: {0}")]
    Tokenizer(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A tensor's type in a GGUF file (`ggml_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorType {
    F32,
    F16,
    Q8_0,
}

impl TensorType {
    pub fn id(self) -> u32 {
        match self {
            TensorType::F32 => 0,
            TensorType::F16 => 1,
            TensorType::Q8_0 => 8,
        }
    }

    fn from_id(id: u32) -> Option<TensorType> {
        match id {
            0 => Some(TensorType::F32),
            1 => Some(TensorType::F16),
            8 => Some(TensorType::Q8_0),
            _ => None,
        }
    }

    /// Bytes for `n` values.
    pub fn bytes(self, n: usize) -> usize {
        match self {
            TensorType::F32 => 4 * n,
            TensorType::F16 => 2 * n,
            TensorType::Q8_0 => n / Q8_BLOCK * (2 + Q8_BLOCK),
        }
    }
}

const Q8_BLOCK: usize = 32;
const ALIGNMENT: usize = 32;
const VERSION: u32 = 3;

/// A metadata value, as GGUF types them.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    StrArray(Vec<String>),
    I32Array(Vec<i32>),
    /// Any other type, read back but not written by Hone.
    Other(u32),
}

impl Value {
    pub fn as_u32(&self) -> Option<u32> {
        match self {
            Value::U32(v) => Some(*v),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// llama.cpp's architecture name for a `config.json`'s `architectures[0]`,
/// and whether its query and key rows are permuted (llama.cpp's `llama`
/// rotates interleaved pairs, Hugging Face's Llama rotates halves).
pub fn architecture(config_json: &Json) -> Result<(&'static str, bool), GgufError> {
    // Folders saved without `architectures` are named by `model_type`.
    let from_type = match config_json.get("model_type").and_then(Json::as_str) {
        Some("llama") => "LlamaForCausalLM",
        Some("mistral") => "MistralForCausalLM",
        Some("qwen2") => "Qwen2ForCausalLM",
        Some(other) => other,
        None => "(config.json names no architecture)",
    };
    let name = config_json
        .get("architectures")
        .and_then(|a| a.get(0))
        .and_then(Json::as_str)
        .unwrap_or(from_type);
    match name {
        "LlamaForCausalLM" | "MistralForCausalLM" => Ok(("llama", true)),
        "Qwen2ForCausalLM" => Ok(("qwen2", false)),
        other => Err(GgufError::Architecture(other.to_string())),
    }
}

/// Llama 3's pre-tokenizer regex, as its tokenizer.json writes it.
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's: Llama 3's with single digits.
const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// llama.cpp's `tokenizer.ggml.pre` for a tokenizer.json's pre-tokenizer.
fn pre_tokenizer(tok: &Json) -> Result<&'static str, GgufError> {
    let pre = &tok["pre_tokenizer"];
    let byte_level = |p: &Json| p["type"] == "ByteLevel";
    if byte_level(pre) && pre["use_regex"] != false {
        return Ok("gpt-2");
    }
    if pre["type"] == "Sequence" {
        let parts = pre["pretokenizers"].as_array().cloned().unwrap_or_default();
        let regex = parts
            .iter()
            .find(|p| p["type"] == "Split")
            .and_then(|p| p["pattern"]["Regex"].as_str());
        let ends_byte_level = parts.last().is_some_and(byte_level);
        match regex {
            Some(r) if ends_byte_level && r == LLAMA3_REGEX => return Ok("llama-bpe"),
            Some(r) if ends_byte_level && r == QWEN2_REGEX => return Ok("qwen2"),
            Some(r) => {
                return Err(GgufError::Tokenizer(format!(
                    "its pre-tokenizer splits with a regex llama.cpp is not known to use ({r:?})"
                )))
            }
            None => {}
        }
    }
    Err(GgufError::Tokenizer(format!(
        "its pre-tokenizer ({}) is not GPT-2's, Llama 3's or Qwen2's byte-level split",
        pre["type"].as_str().unwrap_or("none")
    )))
}

/// The tokenizer's metadata: `tokenizer.ggml.*` and the chat template.
fn tokenizer_metadata(
    base_dir: &Path,
    vocab_size: usize,
    config_json: &Json,
) -> Result<Vec<(String, Value)>, GgufError> {
    let read_json = |name: &str| -> Result<Option<Json>, GgufError> {
        let path = base_dir.join(name);
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| GgufError::Tokenizer(format!("{name} is not valid JSON: {e}")))
    };
    let tok = read_json("tokenizer.json")?
        .ok_or_else(|| GgufError::Tokenizer("the model folder has no tokenizer.json".into()))?;
    let tok_config = read_json("tokenizer_config.json")?.unwrap_or(Json::Null);
    let model = &tok["model"];
    if model["type"] != "BPE" {
        return Err(GgufError::Tokenizer(format!(
            "it is a {} tokenizer, not byte-level BPE",
            model["type"].as_str().unwrap_or("(typeless)")
        )));
    }
    if model["byte_fallback"] == true {
        return Err(GgufError::Tokenizer(
            "it is SentencePiece-style BPE with byte fallback (Llama 2, Mistral v0.1): \
             convert it with llama.cpp's convert_hf_to_gguf.py and its tokenizer.model"
                .into(),
        ));
    }
    let pre = pre_tokenizer(&tok)?;

    let mut tokens: Vec<Option<(String, i32)>> = vec![None; vocab_size];
    let mut place = |id: u64, text: &str, kind: i32| -> Result<(), GgufError> {
        let slot = tokens.get_mut(id as usize).ok_or_else(|| {
            GgufError::Tokenizer(format!(
                "token {text:?} has id {id}, beyond the model's vocab_size {vocab_size}"
            ))
        })?;
        *slot = Some((text.to_string(), kind));
        Ok(())
    };
    let vocab = model["vocab"]
        .as_object()
        .ok_or_else(|| GgufError::Tokenizer("tokenizer.json's model has no vocab".into()))?;
    for (text, id) in vocab {
        let id = id.as_u64().ok_or_else(|| {
            GgufError::Tokenizer(format!("token {text:?} has no integer id in the vocab"))
        })?;
        place(id, text, 1)?;
    }
    let mut specials = BTreeMap::new();
    for added in tok["added_tokens"].as_array().into_iter().flatten() {
        let (Some(id), Some(text)) = (added["id"].as_u64(), added["content"].as_str()) else {
            continue;
        };
        // convert_hf_to_gguf: special added tokens are control tokens,
        // the others user-defined.
        place(id, text, if added["special"] == true { 3 } else { 4 })?;
        specials.insert(text.to_string(), id as u32);
    }
    let mut texts = Vec::with_capacity(vocab_size);
    let mut types = Vec::with_capacity(vocab_size);
    for (i, t) in tokens.into_iter().enumerate() {
        let (text, kind) = t.unwrap_or_else(|| (format!("[PAD{i}]"), 5));
        texts.push(text);
        types.push(kind);
    }
    let merges: Vec<String> = model["merges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| match m {
            Json::String(s) => Some(s.clone()),
            Json::Array(pair) => Some(
                pair.iter()
                    .filter_map(Json::as_str)
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            _ => None,
        })
        .collect();

    let mut out = vec![
        (
            "tokenizer.ggml.model".to_string(),
            Value::Str("gpt2".into()),
        ),
        ("tokenizer.ggml.pre".into(), Value::Str(pre.into())),
        ("tokenizer.ggml.tokens".into(), Value::StrArray(texts)),
        ("tokenizer.ggml.token_type".into(), Value::I32Array(types)),
        ("tokenizer.ggml.merges".into(), Value::StrArray(merges)),
    ];
    // Special ids: config.json's, else tokenizer_config.json's token text.
    let token_id = |config_key: &str, text_key: &str| -> Option<u32> {
        let from_config = match &config_json[config_key] {
            Json::Number(n) => n.as_u64().map(|v| v as u32),
            Json::Array(a) => a.first().and_then(Json::as_u64).map(|v| v as u32),
            _ => None,
        };
        from_config.or_else(|| {
            let text = match &tok_config[text_key] {
                Json::String(s) => Some(s.as_str()),
                Json::Object(o) => o.get("content").and_then(Json::as_str),
                _ => None,
            }?;
            specials.get(text).copied()
        })
    };
    let bos = token_id("bos_token_id", "bos_token");
    for (key, id) in [
        ("tokenizer.ggml.bos_token_id", bos),
        (
            "tokenizer.ggml.eos_token_id",
            token_id("eos_token_id", "eos_token"),
        ),
        (
            "tokenizer.ggml.padding_token_id",
            token_id("pad_token_id", "pad_token"),
        ),
    ] {
        if let Some(id) = id {
            out.push((key.into(), Value::U32(id)));
        }
    }
    // Whether a BOS is prepended: tokenizer_config.json says so, else the
    // tokenizer's post-processor template starts with it.
    let add_bos = tok_config["add_bos_token"].as_bool().unwrap_or_else(|| {
        let first = &tok["post_processor"]["single"][0]["SpecialToken"]["id"];
        bos.is_some()
            && first
                .as_str()
                .is_some_and(|t| specials.get(t) == bos.as_ref())
    });
    out.push(("tokenizer.ggml.add_bos_token".into(), Value::Bool(add_bos)));
    let jinja = base_dir.join("chat_template.jinja");
    let template = if jinja.exists() {
        Some(std::fs::read_to_string(jinja)?)
    } else {
        match &tok_config["chat_template"] {
            Json::String(s) => Some(s.clone()),
            Json::Array(list) => list
                .iter()
                .find(|t| t["name"] == "default")
                .and_then(|t| t["template"].as_str())
                .map(str::to_string),
            _ => None,
        }
    };
    if let Some(t) = template {
        out.push(("tokenizer.chat_template".into(), Value::Str(t)));
    }
    Ok(out)
}

/// One tensor to write: its name, its shape in Hugging Face's order
/// (`[out, in]`), its type, and how to get its values.
struct Planned<'a> {
    name: String,
    shape: Vec<usize>,
    ty: TensorType,
    values: Box<dyn Fn() -> Vec<f32> + 'a>,
}

fn values<B: QuantBackend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.cast(FloatDType::F32).into_data().iter::<f32>().collect()
}

/// convert_hf_to_gguf's `LlamaModel.permute`: within each head, rows
/// `[first half; second half]` become interleaved pairs.
fn permute_rows(w: Vec<f32>, rows: usize, cols: usize, heads: usize) -> Vec<f32> {
    let head_dim = rows / heads;
    let half = head_dim / 2;
    let mut out = vec![0.0; w.len()];
    for h in 0..heads {
        for j in 0..half {
            for t in 0..2 {
                let to = h * head_dim + j * 2 + t;
                let from = h * head_dim + t * half + j;
                out[to * cols..(to + 1) * cols].copy_from_slice(&w[from * cols..(from + 1) * cols]);
            }
        }
    }
    out
}

/// Llama 3.1's rope factors (`rope_freqs.weight`), as convert_hf_to_gguf
/// computes them.
fn llama3_rope_factors(c: &ModelConfig) -> Option<Vec<f32>> {
    let crate::RopeScaling::Llama3 {
        factor,
        low_freq_factor,
        high_freq_factor,
        original_max_position_embeddings: old,
    } = c.rope_scaling.clone()?
    else {
        return None;
    };
    let dim = c.head_dim;
    let low_wavelen = old / low_freq_factor;
    let high_wavelen = old / high_freq_factor;
    Some(
        (0..dim / 2)
            .map(|i| {
                let freq = 1.0 / (c.rope_theta as f32).powf((2 * i) as f32 / dim as f32);
                let wavelen = 2.0 * std::f64::consts::PI / f64::from(freq);
                if wavelen < high_wavelen {
                    1.0
                } else if wavelen > low_wavelen {
                    factor as f32
                } else {
                    let smooth =
                        (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                    (1.0 / ((1.0 - smooth) / factor + smooth)) as f32
                }
            })
            .collect(),
    )
}

/// Writes `model` (adapters merged already) to `path` as GGUF.
/// `base_dir` is the folder its config.json and tokenizer come from;
/// `name` becomes `general.name`.
pub fn write_gguf<B: QuantBackend>(
    model: &Model<B>,
    config: &ModelConfig,
    base_dir: &Path,
    path: &Path,
    ty: GgufType,
    name: &str,
) -> Result<(), GgufError> {
    let config_json: Json =
        serde_json::from_str(&std::fs::read_to_string(base_dir.join("config.json"))?)
            .map_err(|e| GgufError::Io(std::io::Error::other(format!("config.json: {e}"))))?;
    let (arch, permute) = architecture(&config_json)?;
    let tokenizer = tokenizer_metadata(base_dir, config.vocab_size, &config_json)?;

    let a = |k: &str| format!("{arch}.{k}");
    let mut kv: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::Str(arch.into())),
        ("general.type".into(), Value::Str("model".into())),
        ("general.name".into(), Value::Str(name.into())),
        (
            a("block_count"),
            Value::U32(config.num_hidden_layers as u32),
        ),
        (
            a("context_length"),
            Value::U32(config.max_position_embeddings as u32),
        ),
        (a("embedding_length"), Value::U32(config.hidden_size as u32)),
        (
            a("feed_forward_length"),
            Value::U32(config.intermediate_size as u32),
        ),
        (
            a("attention.head_count"),
            Value::U32(config.num_attention_heads as u32),
        ),
        (
            a("attention.head_count_kv"),
            Value::U32(config.num_key_value_heads as u32),
        ),
        (a("rope.freq_base"), Value::F32(config.rope_theta as f32)),
        (
            a("attention.layer_norm_rms_epsilon"),
            Value::F32(config.rms_norm_eps as f32),
        ),
        (
            a("attention.key_length"),
            Value::U32(config.head_dim as u32),
        ),
        (
            a("attention.value_length"),
            Value::U32(config.head_dim as u32),
        ),
        ("general.file_type".into(), Value::U32(ty.file_type())),
    ];
    if arch == "llama" {
        kv.push((a("vocab_size"), Value::U32(config.vocab_size as u32)));
        kv.push((
            a("rope.dimension_count"),
            Value::U32(config.head_dim as u32),
        ));
    }
    if let Some(crate::RopeScaling::Linear { factor }) = &config.rope_scaling {
        kv.push((a("rope.scaling.type"), Value::Str("linear".into())));
        kv.push((a("rope.scaling.factor"), Value::F32(*factor as f32)));
    }
    kv.push(("general.quantization_version".into(), Value::U32(2)));
    kv.extend(tokenizer);

    // Weights in the chosen type where their rows split into whole
    // blocks, else f16 (as convert_hf_to_gguf falls back); 1-D in f32.
    let weight_type = |cols: usize| match ty {
        GgufType::Q8_0 if cols.is_multiple_of(Q8_BLOCK) => TensorType::Q8_0,
        _ => TensorType::F16,
    };
    let mut plan: Vec<Planned> = Vec::new();
    let [vocab, hidden] = model.embed_tokens.val().dims();
    plan.push(Planned {
        name: "token_embd.weight".into(),
        shape: vec![vocab, hidden],
        ty: weight_type(hidden),
        values: Box::new(|| values(model.embed_tokens.val())),
    });
    if let Some(factors) = llama3_rope_factors(config) {
        plan.push(Planned {
            name: "rope_freqs.weight".into(),
            shape: vec![factors.len()],
            ty: TensorType::F32,
            values: Box::new(move || factors.clone()),
        });
    }
    for (i, layer) in model.layers.iter().enumerate() {
        plan.push(Planned {
            name: format!("blk.{i}.attn_norm.weight"),
            shape: vec![hidden],
            ty: TensorType::F32,
            values: Box::new(|| values(layer.input_layernorm.weight.val())),
        });
        for t in Target::ALL {
            let linear = layer.linear(t);
            let [rows, cols] = linear.dims();
            let short = match t {
                Target::Q => "attn_q",
                Target::K => "attn_k",
                Target::V => "attn_v",
                Target::O => "attn_output",
                Target::Gate => "ffn_gate",
                Target::Up => "ffn_up",
                Target::Down => "ffn_down",
            };
            let heads = match t {
                Target::Q if permute => Some(config.num_attention_heads),
                Target::K if permute => Some(config.num_key_value_heads),
                _ => None,
            };
            plan.push(Planned {
                name: format!("blk.{i}.{short}.weight"),
                shape: vec![rows, cols],
                ty: weight_type(cols),
                values: Box::new(move || {
                    let w = values(linear.dense_weight());
                    match heads {
                        Some(h) => permute_rows(w, rows, cols, h),
                        None => w,
                    }
                }),
            });
            if let Some(bias) = &linear.bias {
                plan.push(Planned {
                    name: format!("blk.{i}.{short}.bias"),
                    shape: vec![rows],
                    ty: TensorType::F32,
                    values: Box::new(move || values(bias.val())),
                });
            }
            if t == Target::O {
                plan.push(Planned {
                    name: format!("blk.{i}.ffn_norm.weight"),
                    shape: vec![hidden],
                    ty: TensorType::F32,
                    values: Box::new(|| values(layer.post_attention_layernorm.weight.val())),
                });
            }
        }
    }
    plan.push(Planned {
        name: "output_norm.weight".into(),
        shape: vec![hidden],
        ty: TensorType::F32,
        values: Box::new(|| values(model.norm.weight.val())),
    });
    // A tied head is left out: llama.cpp then reads token_embd.
    if let Some(head) = &model.lm_head {
        plan.push(Planned {
            name: "output.weight".into(),
            shape: vec![vocab, hidden],
            ty: weight_type(hidden),
            values: Box::new(|| values(head.dense_weight())),
        });
    }

    let tmp = path.with_extension("gguf.tmp");
    let result = (|| -> std::io::Result<()> {
        let mut w = Counting {
            inner: BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?),
            written: 0,
        };
        w.write_all(b"GGUF")?;
        w.write_all(&VERSION.to_le_bytes())?;
        w.write_all(&(plan.len() as u64).to_le_bytes())?;
        w.write_all(&(kv.len() as u64).to_le_bytes())?;
        for (key, value) in &kv {
            write_str(&mut w, key)?;
            write_value(&mut w, value)?;
        }
        let mut offset = 0usize;
        for t in &plan {
            write_str(&mut w, &t.name)?;
            w.write_all(&(t.shape.len() as u32).to_le_bytes())?;
            // GGUF lists dimensions innermost first.
            for d in t.shape.iter().rev() {
                w.write_all(&(*d as u64).to_le_bytes())?;
            }
            w.write_all(&t.ty.id().to_le_bytes())?;
            w.write_all(&(offset as u64).to_le_bytes())?;
            offset +=
                t.ty.bytes(t.shape.iter().product())
                    .next_multiple_of(ALIGNMENT);
        }
        w.pad()?;
        for t in &plan {
            let v = (t.values)();
            let bytes = encode(&v, t.ty);
            w.write_all(&bytes)?;
            w.pad()?;
        }
        let mut file = w.inner.into_inner().map_err(|e| e.into_error())?;
        file.flush()?;
        file.sync_all()?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.into());
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// A writer that knows its position, to pad to the alignment.
struct Counting<W: Write> {
    inner: W,
    written: usize,
}

impl<W: Write> Counting<W> {
    fn pad(&mut self) -> std::io::Result<()> {
        let n = self.written.next_multiple_of(ALIGNMENT) - self.written;
        self.write_all(&vec![0u8; n])
    }
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn write_str(w: &mut impl Write, s: &str) -> std::io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

fn write_value(w: &mut impl Write, v: &Value) -> std::io::Result<()> {
    let ty = |w: &mut dyn Write, id: u32| w.write_all(&id.to_le_bytes());
    match v {
        Value::U32(x) => {
            ty(w, 4)?;
            w.write_all(&x.to_le_bytes())
        }
        Value::I32(x) => {
            ty(w, 5)?;
            w.write_all(&x.to_le_bytes())
        }
        Value::F32(x) => {
            ty(w, 6)?;
            w.write_all(&x.to_le_bytes())
        }
        Value::Bool(x) => {
            ty(w, 7)?;
            w.write_all(&[u8::from(*x)])
        }
        Value::Str(s) => {
            ty(w, 8)?;
            write_str(w, s)
        }
        Value::StrArray(items) => {
            ty(w, 9)?;
            ty(w, 8)?;
            w.write_all(&(items.len() as u64).to_le_bytes())?;
            items.iter().try_for_each(|s| write_str(w, s))
        }
        Value::I32Array(items) => {
            ty(w, 9)?;
            ty(w, 5)?;
            w.write_all(&(items.len() as u64).to_le_bytes())?;
            items.iter().try_for_each(|x| w.write_all(&x.to_le_bytes()))
        }
        Value::Other(_) => Err(std::io::Error::other("Hone writes no such GGUF value")),
    }
}

/// Rounds half away from zero, as C's `roundf` (gguf-py's `np_roundf`);
/// Rust's `round` does the same.
fn roundf(x: f32) -> f32 {
    x.round()
}

/// One tensor's bytes. Q8_0 blocks (32 values of a row): the scale
/// `max|x| / 127` as f16, then `round(x / scale)` as i8 — gguf-py's
/// reference quantizer, dividing by the f32 scale.
pub fn encode(v: &[f32], ty: TensorType) -> Vec<u8> {
    match ty {
        TensorType::F32 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorType::F16 => v
            .iter()
            .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
            .collect(),
        TensorType::Q8_0 => {
            let mut out = Vec::with_capacity(ty.bytes(v.len()));
            for block in v.chunks(Q8_BLOCK) {
                let amax = block.iter().fold(0.0f32, |m, x| m.max(x.abs()));
                let d = amax / 127.0;
                out.extend_from_slice(&half::f16::from_f32(d).to_le_bytes());
                for x in block {
                    let q = if d == 0.0 { 0.0 } else { roundf(x / d) };
                    out.push(q as i8 as u8);
                }
            }
            out
        }
    }
}

/// A tensor of a GGUF file read back.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// Innermost first, as the file lists them.
    pub dims: Vec<u64>,
    pub ty: TensorType,
    /// From the start of the data section.
    pub offset: u64,
}

/// A GGUF file's header, metadata and tensor table.
#[derive(Debug)]
pub struct Gguf {
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    /// Keys in the order the file lists them.
    pub keys: Vec<String>,
    pub tensors: Vec<TensorInfo>,
    pub data_start: u64,
}

impl Gguf {
    /// A tensor's values, dequantized to f32.
    pub fn values(&self, file: &[u8], name: &str) -> Option<Vec<f32>> {
        let t = self.tensors.iter().find(|t| t.name == name)?;
        let n: u64 = t.dims.iter().product();
        let start = (self.data_start + t.offset) as usize;
        let bytes = file.get(start..start + t.ty.bytes(n as usize))?;
        Some(match t.ty {
            TensorType::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            TensorType::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            TensorType::Q8_0 => bytes
                .chunks_exact(2 + Q8_BLOCK)
                .flat_map(|b| {
                    let d = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
                    b[2..].iter().map(move |q| f32::from(*q as i8) * d)
                })
                .collect(),
        })
    }
}

/// Parses a GGUF file's header (version 3), metadata and tensor table.
pub fn read(file: &[u8]) -> Result<Gguf, String> {
    let mut r = Reader { b: file, at: 0 };
    if r.take(4)? != b"GGUF" {
        return Err("not a GGUF file (no GGUF magic)".into());
    }
    let version = r.u32()?;
    let n_tensors = r.u64()?;
    let n_kv = r.u64()?;
    let mut metadata = BTreeMap::new();
    let mut keys = Vec::new();
    for _ in 0..n_kv {
        let key = r.string()?;
        let ty = r.u32()?;
        let value = r.value(ty)?;
        keys.push(key.clone());
        metadata.insert(key, value);
    }
    let mut tensors = Vec::new();
    for _ in 0..n_tensors {
        let name = r.string()?;
        let n_dims = r.u32()?;
        let dims = (0..n_dims)
            .map(|_| r.u64())
            .collect::<Result<Vec<_>, _>>()?;
        let id = r.u32()?;
        let ty = TensorType::from_id(id).ok_or(format!("tensor {name} has type {id}"))?;
        let offset = r.u64()?;
        tensors.push(TensorInfo {
            name,
            dims,
            ty,
            offset,
        });
    }
    let data_start = r.at.next_multiple_of(ALIGNMENT) as u64;
    Ok(Gguf {
        version,
        metadata,
        keys,
        tensors,
        data_start,
    })
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let s = self.b.get(self.at..self.at + n).ok_or(format!(
            "GGUF file ends at byte {} inside its header",
            self.b.len()
        ))?;
        self.at += n;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().unwrap_or_default(),
        ))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().unwrap_or_default(),
        ))
    }
    fn string(&mut self) -> Result<String, String> {
        let n = self.u64()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|e| e.to_string())
    }
    fn value(&mut self, ty: u32) -> Result<Value, String> {
        Ok(match ty {
            4 => Value::U32(self.u32()?),
            5 => Value::I32(self.u32()? as i32),
            6 => Value::F32(f32::from_bits(self.u32()?)),
            7 => Value::Bool(self.take(1)?[0] != 0),
            8 => Value::Str(self.string()?),
            9 => {
                let elem = self.u32()?;
                let n = self.u64()?;
                match elem {
                    8 => Value::StrArray((0..n).map(|_| self.string()).collect::<Result<_, _>>()?),
                    5 => Value::I32Array(
                        (0..n)
                            .map(|_| self.u32().map(|v| v as i32))
                            .collect::<Result<_, _>>()?,
                    ),
                    other => return Err(format!("GGUF arrays of type {other} are not read")),
                }
            }
            0 | 1 => {
                self.take(1)?;
                Value::Other(ty)
            }
            2 | 3 => {
                self.take(2)?;
                Value::Other(ty)
            }
            10..=12 => {
                self.take(8)?;
                Value::Other(ty)
            }
            other => return Err(format!("unknown GGUF value type {other}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_0_blocks_are_the_reference_quantizer() {
        let v: Vec<f32> = (0..64).map(|i| (i as f32 - 20.5) * 0.37).collect();
        let bytes = encode(&v, TensorType::Q8_0);
        assert_eq!(bytes.len(), 2 * 34);
        let d = half::f16::from_le_bytes([bytes[0], bytes[1]]).to_f32();
        let amax = 20.5f32 * 0.37;
        assert!((d - amax / 127.0).abs() < 1e-4, "{d}");
        // The largest magnitude maps to ±127.
        assert_eq!(bytes[2] as i8, -127);
        assert_eq!(roundf(2.5), 3.0);
        assert_eq!(roundf(-2.5), -3.0);
        assert_eq!(roundf(-0.4), -0.0);
    }

    #[test]
    fn permutation_interleaves_the_halves_of_each_head() {
        // Two heads of four rows, one column: rows [0 1 2 3 | 4 5 6 7].
        let w: Vec<f32> = (0..8).map(|i| i as f32).collect();
        assert_eq!(
            permute_rows(w, 8, 1, 2),
            vec![0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]
        );
    }

    #[test]
    fn an_architecture_llama_cpp_does_not_know_is_refused_by_name() {
        let c = serde_json::json!({"architectures": ["GemmaForCausalLM"]});
        let e = architecture(&c).unwrap_err();
        assert!(e.to_string().contains("GemmaForCausalLM"), "{e}");
        let c = serde_json::json!({"architectures": ["MistralForCausalLM"]});
        assert_eq!(architecture(&c).unwrap(), ("llama", true));
    }
}
