//! Reading Hugging Face `safetensors` weights tensor by tensor: the JSON
//! header is parsed once, each tensor is read with a seek when asked for,
//! so a large checkpoint is never held in memory whole (QLoRA quantizes as
//! it reads). f32, f16 and bf16 become f32. Sharded checkpoints are found
//! through `model.safetensors.index.json`.

use serde_json::Value;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{path}: {why}")]
    Io { path: String, why: String },
    #[error("{path}: not a safetensors file ({why})")]
    Format { path: String, why: String },
    #[error("the checkpoint has no tensor {0:?}")]
    Missing(String),
    #[error("tensor {name}: dtype {dtype} is not supported (f32, f16 and bf16 are)")]
    Dtype { name: String, dtype: String },
    #[error(
        "{0} has no model.safetensors nor model.safetensors.index.json (Hone reads Hugging Face safetensors checkpoints)"
    )]
    NoWeights(String),
}

#[derive(Clone, Debug)]
struct Entry {
    file: usize,
    dtype: String,
    shape: Vec<usize>,
    start: u64,
    end: u64,
}

/// The tensors of a checkpoint folder, across its shards.
#[derive(Debug)]
pub struct Weights {
    files: Vec<PathBuf>,
    entries: BTreeMap<String, Entry>,
}

fn io(path: &Path, e: impl std::fmt::Display) -> WeightsError {
    WeightsError::Io {
        path: path.display().to_string(),
        why: e.to_string(),
    }
}

impl Weights {
    /// `model.safetensors`, or the shards `model.safetensors.index.json` names.
    pub fn open(dir: &Path) -> Result<Weights, WeightsError> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if single.exists() {
            vec![single]
        } else if index.exists() {
            let text = std::fs::read_to_string(&index).map_err(|e| io(&index, e))?;
            let v: Value = serde_json::from_str(&text).map_err(|e| WeightsError::Format {
                path: index.display().to_string(),
                why: e.to_string(),
            })?;
            let mut shards: Vec<String> = v
                .get("weight_map")
                .and_then(Value::as_object)
                .ok_or_else(|| WeightsError::Format {
                    path: index.display().to_string(),
                    why: "no weight_map".into(),
                })?
                .values()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect();
            shards.sort();
            shards.dedup();
            shards.iter().map(|s| dir.join(s)).collect()
        } else {
            return Err(WeightsError::NoWeights(dir.display().to_string()));
        };
        let mut entries = BTreeMap::new();
        for (i, path) in files.iter().enumerate() {
            for (name, mut e) in read_header(path)? {
                e.file = i;
                entries.insert(name, e);
            }
        }
        Ok(Weights { files, entries })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// A tensor's entry and raw bytes.
    fn raw(&self, name: &str) -> Result<(&Entry, Vec<u8>), WeightsError> {
        let e = self
            .entries
            .get(name)
            .ok_or_else(|| WeightsError::Missing(name.into()))?;
        let path = &self.files[e.file];
        let mut f = File::open(path).map_err(|x| io(path, x))?;
        f.seek(SeekFrom::Start(e.start)).map_err(|x| io(path, x))?;
        let mut bytes = vec![0u8; (e.end - e.start) as usize];
        f.read_exact(&mut bytes).map_err(|x| io(path, x))?;
        Ok((e, bytes))
    }

    /// A tensor as f32 values with its shape.
    pub fn read(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>), WeightsError> {
        let (e, bytes) = self.raw(name)?;
        let path = &self.files[e.file];
        let values: Vec<f32> = match e.dtype.as_str() {
            "F32" => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            "F16" => bytes
                .chunks_exact(2)
                .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            "BF16" => bytes
                .chunks_exact(2)
                .map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16))
                .collect(),
            other => {
                return Err(WeightsError::Dtype {
                    name: name.into(),
                    dtype: other.into(),
                })
            }
        };
        if values.len() != e.shape.iter().product::<usize>() {
            return Err(WeightsError::Format {
                path: path.display().to_string(),
                why: format!("tensor {name} has the wrong byte length for its shape"),
            });
        }
        Ok((values, e.shape.clone()))
    }

    /// A `U8` tensor's bytes with its shape.
    pub fn read_u8(&self, name: &str) -> Result<(Vec<u8>, Vec<usize>), WeightsError> {
        let (e, bytes) = self.raw(name)?;
        if e.dtype != "U8" {
            return Err(WeightsError::Dtype {
                name: name.into(),
                dtype: e.dtype.clone(),
            });
        }
        Ok((bytes, e.shape.clone()))
    }

    /// Integer tensors (e.g. reference input ids) as i64.
    pub fn read_i64(&self, name: &str) -> Result<(Vec<i64>, Vec<usize>), WeightsError> {
        let (e, bytes) = self.raw(name)?;
        if e.dtype != "I64" {
            return Err(WeightsError::Dtype {
                name: name.into(),
                dtype: e.dtype.clone(),
            });
        }
        let values = bytes
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        Ok((values, e.shape.clone()))
    }

    /// One file, for files that are not a model (reference tensors).
    pub fn open_file(path: &Path) -> Result<Weights, WeightsError> {
        let entries = read_header(path)?.into_iter().collect();
        Ok(Weights {
            files: vec![path.to_owned()],
            entries,
        })
    }
}

/// The header: `u64` little-endian length, then JSON.
fn read_header(path: &Path) -> Result<Vec<(String, Entry)>, WeightsError> {
    let bad = |why: String| WeightsError::Format {
        path: path.display().to_string(),
        why,
    };
    let mut f = File::open(path).map_err(|e| io(path, e))?;
    let size = f.metadata().map_err(|e| io(path, e))?.len();
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|_| bad("shorter than its header".into()))?;
    let len = u64::from_le_bytes(len);
    if len > 100 * 1024 * 1024 || 8 + len > size {
        return Err(bad(format!("header length {len} does not fit the file")));
    }
    let mut header = vec![0u8; len as usize];
    f.read_exact(&mut header).map_err(|e| io(path, e))?;
    let v: Value = serde_json::from_slice(&header).map_err(|e| bad(e.to_string()))?;
    let obj = v
        .as_object()
        .ok_or_else(|| bad("header is not an object".into()))?;
    let data_start = 8 + len;
    let mut out = Vec::new();
    for (name, t) in obj {
        if name == "__metadata__" {
            continue;
        }
        let dtype = t
            .get("dtype")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned();
        let shape: Vec<usize> = t
            .get("shape")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_u64)
                    .map(|n| n as usize)
                    .collect()
            })
            .unwrap_or_default();
        let offsets: Vec<u64> = t
            .get("data_offsets")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        let [start, end] = offsets[..] else {
            return Err(bad(format!("tensor {name} has no data_offsets")));
        };
        if start > end || data_start + end > size {
            return Err(bad(format!("tensor {name} lies outside the file")));
        }
        out.push((
            name.clone(),
            Entry {
                file: 0,
                dtype,
                shape,
                start: data_start + start,
                end: data_start + end,
            },
        ));
    }
    Ok(out)
}

/// IEEE half to single precision.
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let frac = u32::from(h & 0x3ff);
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // Subnormal: normalise.
            let mut e = 127 - 15 + 1;
            let mut f = f;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            sign | (e << 23) | ((f & 0x3ff) << 13)
        }
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 127 - 15) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_converts_exactly() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert!(f16_to_f32(0x7c00).is_infinite());
    }

    #[test]
    fn shards_and_missing_files_are_handled() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let w = Weights::open(&root.join("llama-bf16-sharded")).unwrap();
        assert!(w.contains("lm_head.weight") && w.contains("model.embed_tokens.weight"));
        let (v, shape) = w.read("model.norm.weight").unwrap();
        assert_eq!((v.len(), shape), (64, vec![64]));
        assert!(matches!(w.read("nope"), Err(WeightsError::Missing(_))));
        let err = Weights::open(&root).unwrap_err();
        assert!(err.to_string().contains("model.safetensors"));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("model.safetensors"),
            b"\xff\xff\xff\xff\xff\xff\xff\x7fjunk",
        )
        .unwrap();
        assert!(matches!(
            Weights::open(dir.path()),
            Err(WeightsError::Format { .. })
        ));
    }
}
