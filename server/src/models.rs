//! Base models: the built-in demo model (its tokenizer compiled into the
//! binary, so Hone works offline with nothing downloaded) and Hugging Face
//! folders in the models directory, one folder per model, named by it.
//!
//! This module reads the files the dataset checks need (`tokenizer.json`,
//! `tokenizer_config.json`, `chat_template.jinja`, and `config.json` for the
//! context length); the training engine reads the weights.

use hone_app::api::{ModelInfo, TokenizerFiles};
use hone_dataset::tokens::ChatTokenizer;
use std::path::{Path, PathBuf};

/// The built-in default model's name.
pub const DEMO: &str = "hone-demo";
const DEMO_TOKENIZER: &str = include_str!("../../models/hone-demo/tokenizer.json");
const DEMO_TOKENIZER_CONFIG: &str = include_str!("../../models/hone-demo/tokenizer_config.json");
/// The demo model's whole folder, written out for the engine on first use.
const DEMO_FILES: [(&str, &[u8]); 5] = [
    (
        "config.json",
        include_bytes!("../../models/hone-demo/config.json"),
    ),
    (
        "generation_config.json",
        include_bytes!("../../models/hone-demo/generation_config.json"),
    ),
    (
        "model.safetensors",
        include_bytes!("../../models/hone-demo/model.safetensors"),
    ),
    ("tokenizer.json", DEMO_TOKENIZER.as_bytes()),
    ("tokenizer_config.json", DEMO_TOKENIZER_CONFIG.as_bytes()),
];

/// A tokenizer file larger than this is refused (real ones are ≤ ~20 MB).
const MAX_FILE: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("no model named {0:?} (put its Hugging Face folder in the models directory)")]
    Unknown(String),
    #[error("model {model:?} has no {file} in {dir}")]
    Missing {
        model: String,
        file: &'static str,
        dir: String,
    },
    #[error("{path}: {why}")]
    Unreadable { path: String, why: String },
    #[error("model {model:?}: {why}")]
    Unusable { model: String, why: String },
}

/// A model folder's name: letters, digits, `.`, `_`, `-`; never a path.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The demo model first, then each folder with a `tokenizer.json`, by name.
pub fn list(models_dir: &Path) -> Vec<ModelInfo> {
    let mut out = vec![ModelInfo {
        name: DEMO.into(),
        context_length: context_length(None, Some(DEMO_TOKENIZER_CONFIG)),
    }];
    let Ok(entries) = std::fs::read_dir(models_dir) else {
        return out;
    };
    let mut found: Vec<ModelInfo> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            if !valid_name(&name) || name == DEMO || !e.path().join("tokenizer.json").is_file() {
                return None;
            }
            // Only the small files: the project page lists models on
            // every load, and tokenizer.json can be tens of megabytes.
            let small = |file: &str| read(&e.path().join(file)).ok().flatten();
            Some(ModelInfo {
                context_length: context_length(
                    small("config.json").as_deref(),
                    small("tokenizer_config.json").as_deref(),
                ),
                name,
            })
        })
        .collect();
    found.sort_by(|a, b| a.name.cmp(&b.name));
    out.extend(found);
    out
}

/// The tokenizer files of the model `name`.
pub fn tokenizer_files(models_dir: &Path, name: &str) -> Result<TokenizerFiles, ModelError> {
    if name == DEMO {
        return Ok(TokenizerFiles {
            name: DEMO.into(),
            context_length: context_length(None, Some(DEMO_TOKENIZER_CONFIG)),
            tokenizer: DEMO_TOKENIZER.into(),
            tokenizer_config: Some(DEMO_TOKENIZER_CONFIG.into()),
            chat_template: None,
        });
    }
    if !valid_name(name) {
        return Err(ModelError::Unknown(name.into()));
    }
    let dir = models_dir.join(name);
    if !dir.is_dir() {
        return Err(ModelError::Unknown(name.into()));
    }
    folder_files(&dir, name)
}

/// Reads a Hugging Face folder (the CLI's `--tokenizer` also takes one).
pub fn folder_files(dir: &Path, name: &str) -> Result<TokenizerFiles, ModelError> {
    let tokenizer = read(&dir.join("tokenizer.json"))?.ok_or_else(|| ModelError::Missing {
        model: name.into(),
        file: "tokenizer.json",
        dir: dir.display().to_string(),
    })?;
    let tokenizer_config = read(&dir.join("tokenizer_config.json"))?;
    let chat_template = read(&dir.join("chat_template.jinja"))?;
    let config = read(&dir.join("config.json"))?;
    Ok(TokenizerFiles {
        name: name.into(),
        context_length: context_length(config.as_deref(), tokenizer_config.as_deref()),
        tokenizer,
        tokenizer_config,
        chat_template,
    })
}

/// The files as a ready tokenizer.
pub fn chat_tokenizer(files: &TokenizerFiles) -> Result<ChatTokenizer, ModelError> {
    ChatTokenizer::from_files(
        files.tokenizer.as_bytes(),
        files.tokenizer_config.as_deref().map(str::as_bytes),
        files.chat_template.as_deref(),
    )
    .map_err(|e| ModelError::Unusable {
        model: files.name.clone(),
        why: e.to_string(),
    })
}

fn read(path: &PathBuf) -> Result<Option<String>, ModelError> {
    let unreadable = |why: String| ModelError::Unreadable {
        path: path.display().to_string(),
        why,
    };
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unreadable(e.to_string())),
        Ok(m) if m.len() > MAX_FILE => {
            return Err(unreadable(format!(
                "{} bytes is larger than expected",
                m.len()
            )))
        }
        Ok(_) => {}
    }
    std::fs::read_to_string(path)
        .map(Some)
        .map_err(|e| unreadable(e.to_string()))
}

/// `max_position_embeddings` from config.json, else a sensible
/// `model_max_length` from tokenizer_config.json (transformers writes a huge
/// placeholder when it does not know).
pub fn context_length(config: Option<&str>, tokenizer_config: Option<&str>) -> Option<u32> {
    let field = |text: Option<&str>, key: &str| {
        let v: serde_json::Value = serde_json::from_str(text?).ok()?;
        v.get(key)?
            .as_u64()
            .filter(|n| *n > 0 && *n <= 10_000_000)
            .map(|n| n as u32)
    };
    field(config, "max_position_embeddings").or_else(|| field(tokenizer_config, "model_max_length"))
}

/// The model's `config.json` (what the memory estimate reads).
pub fn config_json(models_dir: &Path, name: &str) -> Result<String, ModelError> {
    if name == DEMO {
        return Ok(String::from_utf8_lossy(DEMO_FILES[0].1).into_owned());
    }
    let dir = folder(models_dir, name)?;
    read(&dir.join("config.json"))?.ok_or_else(|| ModelError::Missing {
        model: name.into(),
        file: "config.json",
        dir: dir.display().to_string(),
    })
}

fn folder(models_dir: &Path, name: &str) -> Result<PathBuf, ModelError> {
    let dir = models_dir.join(name);
    if !valid_name(name) || !dir.is_dir() {
        return Err(ModelError::Unknown(name.into()));
    }
    Ok(dir)
}

/// The folder the engine loads `name` from. The demo model is written out
/// under `builtin_dir` the first time (file by file, each renamed into
/// place when complete, so a crash leaves no half-written weights).
pub fn engine_folder(
    models_dir: &Path,
    builtin_dir: &Path,
    name: &str,
) -> Result<PathBuf, ModelError> {
    if name != DEMO {
        return folder(models_dir, name);
    }
    let dir = builtin_dir.join(DEMO);
    let unwritable = |why: std::io::Error| ModelError::Unreadable {
        path: dir.display().to_string(),
        why: why.to_string(),
    };
    std::fs::create_dir_all(&dir).map_err(unwritable)?;
    for (file, bytes) in DEMO_FILES {
        let path = dir.join(file);
        if std::fs::read(&path).is_ok_and(|b| b == bytes) {
            continue;
        }
        let tmp = dir.join(format!(".{file}.{}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&tmp, bytes).map_err(unwritable)?;
        std::fs::rename(&tmp, &path).map_err(unwritable)?;
    }
    Ok(dir)
}

/// Names of the models people can pick, for "no such model" messages.
pub fn names(models_dir: &Path) -> Vec<String> {
    list(models_dir).into_iter().map(|m| m.name).collect()
}

/// `GET /api/models/{name}/tokenizer`: what the browser needs to count
/// tokens as training will. Any signed-in person may read it.
pub async fn tokenizer_route(
    axum::extract::State(s): axum::extract::State<std::sync::Arc<crate::state::Services>>,
    _: crate::accounts::SignedIn,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> crate::error::Result<axum::response::Response> {
    use axum::response::IntoResponse;
    let dir = s.config.models_dir.clone();
    let files = tokio::task::spawn_blocking(move || tokenizer_files(&dir, &name)).await??;
    Ok((
        [(axum::http::header::CACHE_CONTROL, "private, max-age=300")],
        axum::Json(files),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_model_is_built_in_and_usable() {
        let dir = tempfile::tempdir().unwrap();
        let list = list(dir.path());
        assert_eq!(list[0].name, DEMO);
        assert_eq!(list[0].context_length, Some(2048));
        let files = tokenizer_files(dir.path(), DEMO).unwrap();
        chat_tokenizer(&files).unwrap();
    }

    #[test]
    fn folders_are_listed_and_names_are_never_paths() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("my-model");
        std::fs::create_dir(&m).unwrap();
        std::fs::write(m.join("tokenizer.json"), DEMO_TOKENIZER).unwrap();
        std::fs::write(m.join("tokenizer_config.json"), DEMO_TOKENIZER_CONFIG).unwrap();
        std::fs::write(m.join("config.json"), r#"{"max_position_embeddings": 512}"#).unwrap();
        std::fs::create_dir(dir.path().join("no-tokenizer")).unwrap();
        let names: Vec<(String, Option<u32>)> = list(dir.path())
            .into_iter()
            .map(|m| (m.name, m.context_length))
            .collect();
        assert_eq!(
            names,
            [
                ("hone-demo".into(), Some(2048)),
                ("my-model".into(), Some(512))
            ]
        );
        assert!(matches!(
            tokenizer_files(dir.path(), "../etc"),
            Err(ModelError::Unknown(_))
        ));
        let err = tokenizer_files(dir.path(), "no-tokenizer").unwrap_err();
        assert!(err.to_string().contains("has no tokenizer.json"), "{err}");
        assert!(matches!(
            tokenizer_files(dir.path(), "absent"),
            Err(ModelError::Unknown(_))
        ));
    }
}
