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

/// Writes `model` (merge adapters first) as a Hugging Face model folder:
/// `model.safetensors` (f32, Hugging Face names) and, copied from the base
/// folder, `config.json`, `generation_config.json` and the tokenizer files
/// with the chat template.
pub fn save_merged<B: QuantBackend>(
    model: &Model<B>,
    base_dir: &Path,
    dir: &Path,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut tensors = Vec::new();
    let mut push = |name: String, t: Tensor<B, 2>| {
        let shape = t.dims().to_vec();
        tensors.push((name, shape, t.into_data().iter::<f32>().collect()));
    };
    push("model.embed_tokens.weight".into(), model.embed_tokens.val());
    push(
        "model.norm.weight".into(),
        model.norm.weight.val().unsqueeze_dim(0),
    );
    if let Some(head) = &model.lm_head {
        push("lm_head.weight".into(), head.dense_weight());
    }
    for (i, layer) in model.layers.iter().enumerate() {
        let p = format!("model.layers.{i}");
        push(
            format!("{p}.input_layernorm.weight"),
            layer.input_layernorm.weight.val().unsqueeze_dim(0),
        );
        push(
            format!("{p}.post_attention_layernorm.weight"),
            layer.post_attention_layernorm.weight.val().unsqueeze_dim(0),
        );
        for t in Target::ALL {
            let group = t.group();
            let linear = layer.linear(t);
            push(
                format!("{p}.{group}.{}.weight", t.name()),
                linear.dense_weight(),
            );
            if let Some(bias) = &linear.bias {
                push(
                    format!("{p}.{group}.{}.bias", t.name()),
                    bias.val().unsqueeze_dim(0),
                );
            }
        }
    }
    // 1-D tensors were pushed as [1, n]: give them their real shape.
    for (name, shape, _) in &mut tensors {
        if name.ends_with("norm.weight") || name.ends_with(".bias") {
            *shape = vec![shape[1]];
        }
    }
    write_atomic(&dir.join("model.safetensors"), &safetensors_bytes(tensors))?;
    for f in [
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "chat_template.jinja",
    ] {
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
