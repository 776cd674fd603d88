//! Reading Hugging Face `safetensors` weights tensor by tensor: the JSON
//! header is parsed once, each tensor is read with a seek when asked for,
//! so a large checkpoint is never held in memory whole (QLoRA quantizes as
//! it reads). f32, f16 and bf16 become f32. Sharded checkpoints are found
//! through `model.safetensors.index.json`.
//!
//! Model folders come from outside, so every header is checked (`header`)
//! and every shard name kept inside the folder when the folder is opened,
//! before a tensor's worth of memory is allocated; shapes are checked
//! against `config.json` by the model before it reads (`model::check_shapes`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

pub mod header;

pub use header::{parse_header, Dtype, Header, HeaderError, TensorInfo, MAX_HEADER_LEN};

/// The largest `model.safetensors.index.json` read: one line per tensor,
/// so real ones are kilobytes to a few megabytes (DeepSeek-V3's ~9 MB).
pub const MAX_INDEX_LEN: u64 = 32 << 20;

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{path}: {why}")]
    Io { path: String, why: String },
    #[error("{path}: not a safetensors index ({why})")]
    Format { path: String, why: String },
    #[error("{path}: not a usable safetensors file: {problem}")]
    Header { path: String, problem: HeaderError },
    #[error("{index}: shard {shard:?} {why}")]
    Shard {
        index: String,
        shard: String,
        why: &'static str,
    },
    #[error("{index} puts tensor {tensor:?} in {shard:?}, which has no such tensor")]
    NotInShard {
        index: String,
        tensor: String,
        shard: String,
    },
    #[error("tensor {tensor:?} is in both {first} and {second}")]
    Duplicate {
        tensor: String,
        first: String,
        second: String,
    },
    #[error("the checkpoint has no tensor {0:?}")]
    Missing(String),
    #[error("{path}: tensor {tensor:?} has shape {found:?}, not {expected:?} ({rule})")]
    Shape {
        path: String,
        tensor: String,
        found: Vec<usize>,
        expected: Vec<usize>,
        rule: String,
    },
    #[error("config.json: {0} overflows")]
    ConfigOverflow(String),
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
    info: TensorInfo,
    /// Where the tensor's bytes start in its file.
    offset: u64,
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
    /// `model.safetensors`, or the shards `model.safetensors.index.json`
    /// names. Every header is read and checked here; no tensor is.
    pub fn open(dir: &Path) -> Result<Weights, WeightsError> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        if single.exists() {
            return Weights::open_file(&single);
        }
        if !index.exists() {
            return Err(WeightsError::NoWeights(dir.display().to_string()));
        }
        let weight_map = read_index(&index)?;
        let mut shards: Vec<&str> = weight_map.values().map(String::as_str).collect();
        shards.sort_unstable();
        shards.dedup();
        let files = shards
            .iter()
            .map(|s| shard_path(dir, &index, s))
            .collect::<Result<Vec<PathBuf>, _>>()?;
        let mut all: BTreeMap<String, Entry> = BTreeMap::new();
        for (i, path) in files.iter().enumerate() {
            for (name, entry) in entries(read_header(path)?, i) {
                if let Some(e) = all.get(&name) {
                    return Err(WeightsError::Duplicate {
                        tensor: name,
                        first: files[e.file].display().to_string(),
                        second: path.display().to_string(),
                    });
                }
                all.insert(name, entry);
            }
        }
        for (tensor, shard) in &weight_map {
            let found = all.get(tensor).map(|e| e.file);
            if found != shards.binary_search(&shard.as_str()).ok() {
                return Err(WeightsError::NotInShard {
                    index: index.display().to_string(),
                    tensor: tensor.clone(),
                    shard: shard.clone(),
                });
            }
        }
        Ok(Weights {
            files,
            entries: all,
        })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// A tensor's shape as its header gives it, without reading it.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.entries.get(name).map(|e| &e.info.shape[..])
    }

    /// Checks, before anything is read, that tensor `name` is there with
    /// shape `expected`; `rule` says where that shape comes from.
    pub fn check_shape(
        &self,
        name: &str,
        expected: &[usize],
        rule: &str,
    ) -> Result<(), WeightsError> {
        let e = self
            .entries
            .get(name)
            .ok_or_else(|| WeightsError::Missing(name.into()))?;
        if e.info.shape != expected {
            return Err(WeightsError::Shape {
                path: self.files[e.file].display().to_string(),
                tensor: name.into(),
                found: e.info.shape.clone(),
                expected: expected.to_vec(),
                rule: rule.into(),
            });
        }
        Ok(())
    }

    /// A tensor's entry and raw bytes: exactly the length its header
    /// promised (checked when the header was read).
    fn raw(&self, name: &str) -> Result<(&Entry, Vec<u8>), WeightsError> {
        let e = self
            .entries
            .get(name)
            .ok_or_else(|| WeightsError::Missing(name.into()))?;
        let path = &self.files[e.file];
        let mut f = File::open(path).map_err(|x| io(path, x))?;
        f.seek(SeekFrom::Start(e.offset)).map_err(|x| io(path, x))?;
        let mut bytes = vec![0u8; e.info.len()];
        f.read_exact(&mut bytes).map_err(|x| io(path, x))?;
        Ok((e, bytes))
    }

    /// A tensor as f32 values with its shape.
    pub fn read(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>), WeightsError> {
        let (e, bytes) = self.raw(name)?;
        // The header check made the byte length the shape's element count
        // times the dtype's size, so the values fill the shape exactly.
        let values: Vec<f32> = match e.info.dtype {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16))
                .collect(),
            other => {
                return Err(WeightsError::Dtype {
                    name: name.into(),
                    dtype: other.name().into(),
                })
            }
        };
        Ok((values, e.info.shape.clone()))
    }

    /// A `U8` tensor's bytes with its shape.
    pub fn read_u8(&self, name: &str) -> Result<(Vec<u8>, Vec<usize>), WeightsError> {
        self.expect_dtype(name, Dtype::U8)?;
        let (e, bytes) = self.raw(name)?;
        Ok((bytes, e.info.shape.clone()))
    }

    /// Integer tensors (e.g. reference input ids) as i64.
    pub fn read_i64(&self, name: &str) -> Result<(Vec<i64>, Vec<usize>), WeightsError> {
        self.expect_dtype(name, Dtype::I64)?;
        let (e, bytes) = self.raw(name)?;
        let values = bytes
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        Ok((values, e.info.shape.clone()))
    }

    /// Refuses a tensor of another dtype before reading it.
    fn expect_dtype(&self, name: &str, dtype: Dtype) -> Result<(), WeightsError> {
        match self.entries.get(name) {
            None => Err(WeightsError::Missing(name.into())),
            Some(e) if e.info.dtype != dtype => Err(WeightsError::Dtype {
                name: name.into(),
                dtype: e.info.dtype.name().into(),
            }),
            Some(_) => Ok(()),
        }
    }

    /// One file, for files that are not a model (reference tensors).
    pub fn open_file(path: &Path) -> Result<Weights, WeightsError> {
        Ok(Weights {
            entries: entries(read_header(path)?, 0).collect(),
            files: vec![path.to_owned()],
        })
    }
}

/// The index's `weight_map`: tensor name → shard file name.
fn read_index(index: &Path) -> Result<BTreeMap<String, String>, WeightsError> {
    let bad = |why: String| WeightsError::Format {
        path: index.display().to_string(),
        why,
    };
    let f = File::open(index).map_err(|e| io(index, e))?;
    let len = f.metadata().map_err(|e| io(index, e))?.len();
    if len > MAX_INDEX_LEN {
        return Err(bad(format!(
            "{len} bytes, more than the {MAX_INDEX_LEN}-byte limit"
        )));
    }
    let mut text = Vec::new();
    // The length can change after the check; `take` keeps the bound.
    f.take(MAX_INDEX_LEN + 1)
        .read_to_end(&mut text)
        .map_err(|e| io(index, e))?;
    // Typed, so `metadata` is skipped unkept and a map costs little more
    // than its text.
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: BTreeMap<String, String>,
    }
    let index: Index = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
    Ok(index.weight_map)
}

/// A shard's path, refused when its name leaves the model folder — a
/// parent or absolute path, or a link that resolves outside it.
fn shard_path(dir: &Path, index: &Path, shard: &str) -> Result<PathBuf, WeightsError> {
    let refuse = |why| WeightsError::Shard {
        index: index.display().to_string(),
        shard: shard.into(),
        why,
    };
    let name = Path::new(shard);
    if name
        .components()
        .any(|c| matches!(c, Component::RootDir | Component::Prefix(_)))
    {
        return Err(refuse(
            "is an absolute path; shards must lie in the model folder",
        ));
    }
    if name.components().any(|c| c == Component::ParentDir) {
        return Err(refuse("leaves the model folder (`..`)"));
    }
    if !name.components().any(|c| matches!(c, Component::Normal(_))) {
        return Err(refuse("is not a file name"));
    }
    let path = dir.join(name);
    let resolved = path.canonicalize().map_err(|_| refuse("does not exist"))?;
    let folder = dir.canonicalize().map_err(|e| io(dir, e))?;
    if !resolved.starts_with(&folder) {
        return Err(refuse("is a link to a file outside the model folder"));
    }
    Ok(path)
}

/// A file's header, checked before any tensor is read: the length prefix
/// against the file's size, then the JSON against the data section.
fn read_header(path: &Path) -> Result<Header, WeightsError> {
    let bad = |problem| WeightsError::Header {
        path: path.display().to_string(),
        problem,
    };
    let mut f = File::open(path).map_err(|e| io(path, e))?;
    let size = f.metadata().map_err(|e| io(path, e))?.len();
    if size < 8 {
        return Err(bad(HeaderError::TooShort { len: size }));
    }
    let mut prefix = [0u8; 8];
    f.read_exact(&mut prefix).map_err(|e| io(path, e))?;
    let len = header::header_len(prefix, size).map_err(bad)?;
    // At most MAX_HEADER_LEN, and no more than the file holds.
    let mut json = vec![0u8; len as usize];
    f.read_exact(&mut json).map_err(|e| io(path, e))?;
    header::parse_json(&json, 8 + len, size - 8 - len).map_err(bad)
}

/// A header's tensors as entries of file number `file`.
fn entries(h: Header, file: usize) -> impl Iterator<Item = (String, Entry)> {
    h.tensors.into_iter().map(move |(name, info)| {
        // Within the file: the data section lies inside it (checked).
        let offset = h.data_start + info.start;
        (name, Entry { file, info, offset })
    })
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
    use serde_json::Value;

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
            Err(WeightsError::Header {
                problem: HeaderError::TooLong { .. },
                ..
            })
        ));
    }

    /// A file: the length prefix, `json`, then `data_len` zero bytes.
    fn file(json: &str, data_len: usize) -> Vec<u8> {
        let mut f = (json.len() as u64).to_le_bytes().to_vec();
        f.extend_from_slice(json.as_bytes());
        f.resize(f.len() + data_len, 0);
        f
    }

    /// One F32 tensor `[n]` per name, laid out one after another.
    fn tensors(names: &[&str], n: usize) -> Vec<u8> {
        let entries: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let (start, end) = (i * n * 4, (i + 1) * n * 4);
                format!(
                    r#""{name}":{{"dtype":"F32","shape":[{n}],"data_offsets":[{start},{end}]}}"#
                )
            })
            .collect();
        file(&format!("{{{}}}", entries.join(",")), names.len() * n * 4)
    }

    /// A folder with the given files.
    fn folder(files: &[(&str, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        dir
    }

    fn index(map: &[(&str, &str)]) -> Vec<u8> {
        let map: serde_json::Map<String, Value> = map
            .iter()
            .map(|(t, s)| (t.to_string(), Value::from(*s)))
            .collect();
        serde_json::json!({ "metadata": {}, "weight_map": map })
            .to_string()
            .into_bytes()
    }

    #[test]
    fn header_errors_name_the_file_and_the_tensor() {
        let bad = file(
            r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},
                "b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#,
            16,
        );
        let dir = folder(&[("model.safetensors", &bad)]);
        let e = Weights::open(dir.path()).unwrap_err().to_string();
        let path = dir.path().join("model.safetensors");
        assert!(e.starts_with(&path.display().to_string()), "{e}");
        assert!(
            e.contains(r#"tensors "a" (bytes 0..16) and "b" (bytes 8..16) overlap"#),
            "{e}"
        );
    }

    #[test]
    fn an_absurd_header_length_is_refused_before_reading_it() {
        // A sparse file larger than the cap: its header length is refused
        // by the cap, a shorter one by the file's end, neither read.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        for (len, size) in [
            (MAX_HEADER_LEN + 1, MAX_HEADER_LEN + 100),
            (1 << 40, 1 << 20),
        ] {
            let f = File::create(&path).unwrap();
            f.set_len(size).unwrap();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|mut f| std::io::Write::write_all(&mut f, &len.to_le_bytes()))
                .unwrap();
            let e = Weights::open_file(&path).unwrap_err();
            assert!(
                matches!(
                    e,
                    WeightsError::Header {
                        problem: HeaderError::TooLong { .. } | HeaderError::PastEnd { .. },
                        ..
                    }
                ),
                "{e}"
            );
        }
        std::fs::write(&path, b"\x01\0\0").unwrap();
        assert!(Weights::open_file(&path)
            .unwrap_err()
            .to_string()
            .contains("shorter than"));
    }

    #[test]
    fn a_truncated_file_is_an_error_when_read() {
        // The header promised 16 bytes; the file lost some after opening.
        let good = tensors(&["w"], 4);
        let dir = folder(&[("model.safetensors", &good)]);
        let w = Weights::open(dir.path()).unwrap();
        let path = dir.path().join("model.safetensors");
        std::fs::write(&path, &good[..good.len() - 4]).unwrap();
        assert!(matches!(w.read("w"), Err(WeightsError::Io { .. })));
    }

    #[test]
    fn shard_names_that_leave_the_folder_are_refused() {
        let shard = tensors(&["w"], 1);
        for (name, why) in [
            ("../outside.safetensors", "leaves the model folder"),
            ("sub/../../outside.safetensors", "leaves the model folder"),
            ("/etc/passwd", "absolute path"),
            ("", "not a file name"),
            (".", "not a file name"),
            ("missing.safetensors", "does not exist"),
        ] {
            let dir = folder(&[
                ("model.safetensors.index.json", &index(&[("w", name)])),
                ("sub/x", b""),
            ]);
            let e = Weights::open(dir.path()).unwrap_err();
            assert!(
                matches!(&e, WeightsError::Shard { shard, .. } if shard == name),
                "{name}: {e}"
            );
            assert!(e.to_string().contains(why), "{e}");
            assert!(
                e.to_string().contains("model.safetensors.index.json"),
                "{e}"
            );
        }
        // A sub-folder inside the model folder is fine.
        let dir = folder(&[
            (
                "model.safetensors.index.json",
                &index(&[("w", "./sub/a.safetensors")]),
            ),
            ("sub/a.safetensors", &shard),
        ]);
        assert!(Weights::open(dir.path()).unwrap().contains("w"));
    }

    #[cfg(unix)]
    #[test]
    fn shard_links_that_resolve_outside_the_folder_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("a.safetensors"), tensors(&["w"], 1)).unwrap();
        let dir = folder(&[(
            "model.safetensors.index.json",
            &index(&[("w", "a.safetensors")]),
        )]);
        std::os::unix::fs::symlink(
            outside.path().join("a.safetensors"),
            dir.path().join("a.safetensors"),
        )
        .unwrap();
        let e = Weights::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("outside the model folder"), "{e}");
        // A link that stays inside the folder is fine.
        std::fs::remove_file(dir.path().join("a.safetensors")).unwrap();
        std::fs::write(dir.path().join("real.safetensors"), tensors(&["w"], 1)).unwrap();
        std::os::unix::fs::symlink("real.safetensors", dir.path().join("a.safetensors")).unwrap();
        assert!(Weights::open(dir.path()).unwrap().contains("w"));
    }

    #[test]
    fn the_index_and_its_shards_must_agree() {
        let a = tensors(&["x", "y"], 2);
        let b = tensors(&["z"], 2);
        let good = [
            ("x", "a.safetensors"),
            ("y", "a.safetensors"),
            ("z", "b.safetensors"),
        ];
        let dir = folder(&[
            ("model.safetensors.index.json", &index(&good)),
            ("a.safetensors", &a),
            ("b.safetensors", &b),
        ]);
        let w = Weights::open(dir.path()).unwrap();
        assert_eq!(w.read("z").unwrap(), (vec![0.0; 2], vec![2]));
        // The index puts a tensor in a shard that does not hold it.
        let wrong = [
            ("x", "a.safetensors"),
            ("y", "b.safetensors"),
            ("z", "b.safetensors"),
        ];
        std::fs::write(
            dir.path().join("model.safetensors.index.json"),
            index(&wrong),
        )
        .unwrap();
        let e = Weights::open(dir.path()).unwrap_err();
        assert!(
            matches!(&e, WeightsError::NotInShard { tensor, shard, .. } if tensor == "y" && shard == "b.safetensors"),
            "{e}"
        );
        // One tensor in two shards.
        std::fs::write(dir.path().join("b.safetensors"), tensors(&["z", "x"], 2)).unwrap();
        std::fs::write(
            dir.path().join("model.safetensors.index.json"),
            index(&good),
        )
        .unwrap();
        let e = Weights::open(dir.path()).unwrap_err();
        assert!(
            matches!(&e, WeightsError::Duplicate { tensor, .. } if tensor == "x"),
            "{e}"
        );
        // A weight_map value that is not a file name.
        let text = br#"{"weight_map":{"x":["a.safetensors"]}}"#;
        std::fs::write(dir.path().join("model.safetensors.index.json"), text).unwrap();
        let e = Weights::open(dir.path()).unwrap_err();
        assert!(matches!(e, WeightsError::Format { .. }), "{e}");
    }

    #[test]
    fn an_oversized_index_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let f = File::create(dir.path().join("model.safetensors.index.json")).unwrap();
        f.set_len(MAX_INDEX_LEN + 1).unwrap();
        let e = Weights::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("limit"), "{e}");
    }

    #[test]
    fn shapes_are_checked_from_the_header_and_dtypes_before_reading() {
        let dir = folder(&[("model.safetensors", &tensors(&["w"], 3))]);
        let w = Weights::open(dir.path()).unwrap();
        assert_eq!(w.shape("w"), Some(&[3][..]));
        w.check_shape("w", &[3], "rule").unwrap();
        let e = w
            .check_shape("w", &[1, 3], "[a, b] from somewhere")
            .unwrap_err();
        assert!(
            e.to_string()
                .ends_with(r#"tensor "w" has shape [3], not [1, 3] ([a, b] from somewhere)"#),
            "{e}"
        );
        assert!(matches!(
            w.check_shape("v", &[3], ""),
            Err(WeightsError::Missing(_))
        ));
        assert!(matches!(w.read_i64("w"), Err(WeightsError::Dtype { .. })));
        assert!(matches!(w.read_u8("w"), Err(WeightsError::Dtype { .. })));
    }
}
