//! Export in PEFT's format: `adapter_config.json` and
//! `adapter_model.safetensors` with PEFT's tensor names
//! (`base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight`, …),
//! which PEFT's `PeftModel.from_pretrained` loads. Files are written under a
//! temporary name, synced and renamed, so a crash never leaves half a file.
//! `load_adapter` reads such a folder back into a model.

use crate::model::{Lora, LoraConfig, Model, Target};
use crate::qlora::QuantBackend;
use crate::safetensors::{Weights, WeightsError};
use burn::module::Param;
use burn::tensor::{Tensor, TensorData};
use std::io::Write;
use std::path::Path;

/// PEFT's name for a projection's adapter matrix (`"A"` or `"B"`).
fn peft_name(layer: usize, t: Target, which: &str) -> String {
    format!(
        "base_model.model.model.layers.{layer}.{}.{}.lora_{which}.weight",
        t.group(),
        t.name()
    )
}

/// Writes `bytes` to `path` atomically: temporary file, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        // The rename itself is durable once the directory is synced.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// A safetensors file of f32 tensors, names sorted.
pub fn safetensors_bytes(mut tensors: Vec<(String, Vec<usize>, Vec<f32>)>) -> Vec<u8> {
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
    let mut offset = 0usize;
    for (name, shape, values) in &tensors {
        let end = offset + values.len() * 4;
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut head = serde_json::Value::Object(header).to_string().into_bytes();
    // Data aligned to 8 bytes, as the reference implementation writes it.
    while !head.len().is_multiple_of(8) {
        head.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + head.len() + offset);
    out.extend_from_slice(&(head.len() as u64).to_le_bytes());
    out.extend_from_slice(&head);
    for (_, _, values) in &tensors {
        for v in values {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

/// Writes the model's adapters as a PEFT adapter folder.
pub fn save_peft_adapter<B: QuantBackend>(
    model: &Model<B>,
    lora: &LoraConfig,
    base_model: &str,
    dir: &Path,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut tensors = Vec::new();
    for (i, layer) in model.layers.iter().enumerate() {
        for t in &lora.targets {
            let Some(l) = &layer.linear(*t).lora else {
                continue;
            };
            for (which, p) in [("A", &l.a), ("B", &l.b)] {
                let v = p.val();
                let shape = v.dims().to_vec();
                let values: Vec<f32> = v.into_data().iter::<f32>().collect();
                tensors.push((peft_name(i, *t, which), shape, values));
            }
        }
    }
    write_atomic(
        &dir.join("adapter_model.safetensors"),
        &safetensors_bytes(tensors),
    )?;
    let config = serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": lora.r,
        "lora_alpha": lora.alpha,
        "lora_dropout": lora.dropout,
        "target_modules": lora.targets.iter().map(|t| t.name()).collect::<Vec<_>>(),
        "use_rslora": lora.rslora,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "modules_to_save": null,
    });
    let text = serde_json::to_string_pretty(&config).unwrap_or_default();
    write_atomic(&dir.join("adapter_config.json"), text.as_bytes())
}

/// Attaches the adapters of a PEFT folder written by
/// [`save_peft_adapter`] (or by PEFT) to `model`.
pub fn load_adapter<B: QuantBackend>(
    mut model: Model<B>,
    lora: &LoraConfig,
    dir: &Path,
    device: &B::Device,
) -> Result<Model<B>, WeightsError> {
    let w = Weights::open_file(&dir.join("adapter_model.safetensors"))?;
    let scale = if lora.rslora {
        lora.alpha / (lora.r as f64).sqrt()
    } else {
        lora.alpha / lora.r as f64
    };
    // Every adapter's shape first (PEFT's `A` is `[r, in]`, `B` is
    // `[out, r]`), from the header alone, before anything is read.
    for (i, layer) in model.layers.iter().enumerate() {
        for t in &lora.targets {
            let [out, inp] = layer.linear(*t).dims();
            let rule = |r| format!("{r}: r from the LoRA settings, features from the base model");
            w.check_shape(
                &peft_name(i, *t, "A"),
                &[lora.r, inp],
                &rule("[r, in_features]"),
            )?;
            w.check_shape(
                &peft_name(i, *t, "B"),
                &[out, lora.r],
                &rule("[out_features, r]"),
            )?;
        }
    }
    for (i, layer) in model.layers.iter_mut().enumerate() {
        for t in &lora.targets {
            let read = |which: &str| -> Result<Param<Tensor<B, 2>>, WeightsError> {
                let (v, shape) = w.read(&peft_name(i, *t, which))?;
                Ok(crate::model::stable_param(
                    &format!("{}.lora_{which}", crate::model::adapter_name(i, *t)),
                    Tensor::from_data(TensorData::new(v, [shape[0], shape[1]]), device),
                ))
            };
            layer.linear_mut(*t).lora = Some(Lora {
                a: read("A")?,
                b: read("B")?,
                scale,
                dropout: lora.dropout,
            });
        }
    }
    Ok(model)
}

/// Folds every adapter into its base weight (`W + scale·B·A`) and drops
/// the adapters: a plain model with the adapted behaviour. An NF4 base
/// (QLoRA) is dequantized to f32 first, so the result is a dense model.
pub fn merge_adapters<B: QuantBackend>(mut model: Model<B>) -> Model<B> {
    for layer in &mut model.layers {
        for t in Target::ALL {
            let linear = layer.linear_mut(t);
            if let Some(l) = linear.lora.take() {
                let delta = l.b.val().matmul(l.a.val()).mul_scalar(l.scale);
                let merged = linear.dense_weight().add(delta);
                linear.weight = Some(Param::from_tensor(merged));
                linear.nf4 = None;
            }
        }
    }
    model
}

/// The dtype a merged folder's weights are written in: the base's
/// (`torch_dtype`, or transformers 5's `dtype`, in its config.json), f32
/// when it names none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveDtype {
    F32,
    F16,
    Bf16,
}

impl SaveDtype {
    pub fn of_config(config_json: &str) -> SaveDtype {
        let v: serde_json::Value = serde_json::from_str(config_json).unwrap_or_default();
        let name = v
            .get("torch_dtype")
            .or_else(|| v.get("dtype"))
            .and_then(serde_json::Value::as_str)
            .unwrap_or("float32");
        match name {
            "bfloat16" => SaveDtype::Bf16,
            "float16" => SaveDtype::F16,
            _ => SaveDtype::F32,
        }
    }

    fn name(self) -> &'static str {
        match self {
            SaveDtype::F32 => "F32",
            SaveDtype::F16 => "F16",
            SaveDtype::Bf16 => "BF16",
        }
    }

    fn size(self) -> usize {
        match self {
            SaveDtype::F32 => 4,
            _ => 2,
        }
    }

    fn encode(self, values: &[f32], out: &mut Vec<u8>) {
        out.reserve(values.len() * self.size());
        for v in values {
            match self {
                SaveDtype::F32 => out.extend_from_slice(&v.to_le_bytes()),
                SaveDtype::F16 => out.extend_from_slice(&half::f16::from_f32(*v).to_le_bytes()),
                SaveDtype::Bf16 => {
                    out.extend_from_slice(&half::bf16::from_f32(*v).to_le_bytes());
                }
            }
        }
    }
}

type Source<'a> = Box<dyn Fn() -> Vec<f32> + 'a>;

/// Streams a safetensors file of `tensors` (names sorted, data aligned as
/// the reference writes it) to `path` atomically, one tensor in memory at
/// a time.
fn stream_safetensors(
    path: &Path,
    mut tensors: Vec<(String, Vec<usize>, Source)>,
    dtype: SaveDtype,
) -> std::io::Result<()> {
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
    let mut offset = 0usize;
    for (name, shape, _) in &tensors {
        let end = offset + shape.iter().product::<usize>() * dtype.size();
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype.name(), "shape": shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut head = serde_json::Value::Object(header).to_string().into_bytes();
    while !head.len().is_multiple_of(8) {
        head.push(b' ');
    }
    let tmp = path.with_extension("tmp");
    let written = (|| {
        let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
        f.write_all(&(head.len() as u64).to_le_bytes())?;
        f.write_all(&head)?;
        let mut buf = Vec::new();
        for (_, _, source) in &tensors {
            buf.clear();
            dtype.encode(&source(), &mut buf);
            f.write_all(&buf)?;
        }
        let f = f.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// The files of a model folder besides its weights, copied into exports.
pub const FOLDER_FILES: [&str; 7] = [
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "LICENSE",
];

/// Writes `model` (merge adapters first) as a Hugging Face model folder:
/// `model.safetensors` (Hugging Face names, in the base's dtype — see
/// [`SaveDtype`]) and, copied from the base folder, `config.json`,
/// `generation_config.json`, the tokenizer files with the chat template
/// and the licence. The weights are streamed, one tensor at a time.
pub fn save_merged<B: QuantBackend>(
    model: &Model<B>,
    base_dir: &Path,
    dir: &Path,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let dtype = SaveDtype::of_config(
        &std::fs::read_to_string(base_dir.join("config.json")).unwrap_or_default(),
    );
    fn flat<B: QuantBackend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
        t.cast(burn::tensor::FloatDType::F32)
            .into_data()
            .iter::<f32>()
            .collect()
    }
    let mut tensors: Vec<(String, Vec<usize>, Source)> = Vec::new();
    let hidden = model.embed_tokens.val().dims()[1];
    tensors.push((
        "model.embed_tokens.weight".into(),
        model.embed_tokens.val().dims().to_vec(),
        Box::new(|| flat(model.embed_tokens.val())),
    ));
    tensors.push((
        "model.norm.weight".into(),
        vec![hidden],
        Box::new(|| flat(model.norm.weight.val())),
    ));
    if let Some(head) = &model.lm_head {
        tensors.push((
            "lm_head.weight".into(),
            head.dims().to_vec(),
            Box::new(|| flat(head.dense_weight())),
        ));
    }
    for (i, layer) in model.layers.iter().enumerate() {
        let p = format!("model.layers.{i}");
        tensors.push((
            format!("{p}.input_layernorm.weight"),
            vec![hidden],
            Box::new(|| flat(layer.input_layernorm.weight.val())),
        ));
        tensors.push((
            format!("{p}.post_attention_layernorm.weight"),
            vec![hidden],
            Box::new(|| flat(layer.post_attention_layernorm.weight.val())),
        ));
        for t in Target::ALL {
            let group = t.group();
            let linear = layer.linear(t);
            tensors.push((
                format!("{p}.{group}.{}.weight", t.name()),
                linear.dims().to_vec(),
                Box::new(|| flat(linear.dense_weight())),
            ));
            if let Some(bias) = &linear.bias {
                tensors.push((
                    format!("{p}.{group}.{}.bias", t.name()),
                    vec![linear.dims()[0]],
                    Box::new(|| flat(bias.val())),
                ));
            }
        }
    }
    stream_safetensors(&dir.join("model.safetensors"), tensors, dtype)?;
    for f in FOLDER_FILES {
        let from = base_dir.join(f);
        if from.exists() {
            write_atomic(&dir.join(f), &std::fs::read(&from)?)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LoraConfig, Target};
    use crate::ModelConfig;

    type B = burn::backend::Flex;

    fn base() -> Model<B> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama");
        let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
        let config = ModelConfig::from_json(&text).unwrap();
        Model::load(&config, &Weights::open(&dir).unwrap(), &Default::default()).unwrap()
    }

    /// An adapter folder with q_proj adapters of the given shapes in both
    /// layers of the llama fixture (`q_proj` is `[64, 64]`).
    fn adapter(a: [&[usize]; 2], b: [&[usize]; 2]) -> tempfile::TempDir {
        let mut tensors = Vec::new();
        for layer in 0..2 {
            for (which, shape) in [("A", a[layer]), ("B", b[layer])] {
                let len = shape.iter().product();
                let name = peft_name(layer, Target::Q, which);
                tensors.push((name, shape.to_vec(), vec![0.0; len]));
            }
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("adapter_model.safetensors"),
            safetensors_bytes(tensors),
        )
        .unwrap();
        dir
    }

    #[test]
    fn adapters_whose_shapes_disagree_with_the_model_are_refused() {
        let lora = LoraConfig {
            r: 2,
            alpha: 4.0,
            dropout: 0.0,
            targets: vec![Target::Q],
            rslora: false,
            seed: 0,
        };
        let device = Default::default();
        let good = adapter([&[2, 64], &[2, 64]], [&[64, 2], &[64, 2]]);
        assert!(load_adapter(base(), &lora, good.path(), &device).is_ok());
        for (a, b, bad, rule) in [
            (
                [&[2, 64][..], &[64, 2]],
                [&[64, 2][..], &[64, 2]],
                1,
                "[r, in_features]",
            ),
            (
                [&[2, 64], &[2, 64]],
                [&[64, 2], &[128]],
                1,
                "[out_features, r]",
            ),
            (
                [&[4, 64], &[2, 64]],
                [&[64, 2], &[64, 2]],
                0,
                "[r, in_features]",
            ),
        ] {
            let dir = adapter(a, b);
            let e = load_adapter(base(), &lora, dir.path(), &device)
                .err()
                .unwrap();
            let which = if rule.starts_with("[r") { "A" } else { "B" };
            assert!(
                matches!(&e, WeightsError::Shape { tensor, .. } if *tensor == peft_name(bad, Target::Q, which)),
                "{e}"
            );
            assert!(e.to_string().contains("adapter_model.safetensors"), "{e}");
            assert!(e.to_string().contains(rule), "{e}");
        }
    }
}
