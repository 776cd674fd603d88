//! Dataset versions and the base models whose tokenizers count them.
//! (Saving a version and downloading its splits are plain HTTP routes:
//! `POST /api/projects/{id}/datasets`, `GET /api/datasets/{id}/{split}.jsonl`.)

use super::{AppError, CurrentUser};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// Where a saved version's server-side check is. A save answers at once;
/// the server re-checks and splits the file off the request, a few at a
/// time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetState {
    /// Saved; every checker is busy with earlier saves.
    Waiting,
    /// Being checked and split now.
    Checking,
    /// Checked and split: its files can be downloaded and trained on.
    Ready,
    /// The server's check found what stops it (see [`Refusal`]).
    Refused,
    /// Deleted: its files are gone; its hashes stay for the model cards
    /// that cite it.
    Archived,
}

impl DatasetState {
    /// Not yet decided: pages showing it follow it until it is.
    pub fn pending(self) -> bool {
        matches!(self, DatasetState::Waiting | DatasetState::Checking)
    }
}

/// Why the server refused a saved version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// `dataset_errors`, `no_examples`, `split_mismatch`, `model_unusable`
    /// or `check_failed` (the server could not read it).
    pub code: String,
    pub message: String,
    /// The findings that stop it, errors first (at most 200).
    pub findings: Vec<hone_dataset::Finding>,
}

/// One immutable dataset version: a source file checked and split by the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetSummary {
    pub id: i64,
    pub name: String,
    pub state: DatasetState,
    /// While waiting: the saves ahead of it.
    pub ahead: Option<u64>,
    pub source_name: String,
    pub format: String,
    pub examples: i64,
    pub rejected: i64,
    /// The person chose to leave the rejected examples out.
    pub dropped_rejected: bool,
    pub warnings: i64,
    pub seed: String,
    pub ratios: String,
    /// Examples in train, validation, test.
    pub counts: [i64; 3],
    /// The model whose tokenizer counted the tokens.
    pub base_model: Option<String>,
    pub created_by: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// One dataset version in full: `/projects/{project}/datasets/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetPage {
    pub user: CurrentUser,
    pub project_id: i64,
    pub project_name: String,
    pub dataset: DatasetSummary,
    pub source_sha256: String,
    /// SHA-256 of train.jsonl, validation.jsonl, test.jsonl.
    pub split_sha256: [String; 3],
    pub errors: i64,
    /// Findings per code as the server counted them, most frequent first.
    pub finding_counts: Vec<(String, u64)>,
    /// The server's statistics (absent for versions saved before they were
    /// kept, and until the check is done).
    pub stats: Option<hone_dataset::check::Stats>,
    /// Why the check refused it (state `Refused`).
    pub refusal: Option<Refusal>,
}

/// A base model people can check data against and fine-tune.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Its folder name in the models directory (`hone-demo` is built in).
    pub name: String,
    /// Tokens the model reads at most; longer examples are errors.
    pub context_length: Option<u32>,
}

/// A model's tokenizer files, as the browser needs them to count tokens:
/// `GET /api/models/{name}/tokenizer`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizerFiles {
    pub name: String,
    pub context_length: Option<u32>,
    /// `tokenizer.json`, verbatim.
    pub tokenizer: String,
    /// `tokenizer_config.json`, verbatim (special tokens, chat template).
    pub tokenizer_config: Option<String>,
    /// `chat_template.jinja`, when the folder has one.
    pub chat_template: Option<String>,
}

#[cfg(feature = "ssr")]
pub use backend::DatasetsBackend;

#[cfg(feature = "ssr")]
mod backend {
    use super::*;
    use crate::api::RequestParts;

    #[async_trait::async_trait]
    pub trait DatasetsBackend: Send + Sync + 'static {
        async fn dataset(&self, req: &RequestParts, id: i64) -> Result<DatasetPage, AppError>;
        async fn delete_dataset(&self, req: &RequestParts, id: i64) -> Result<u32, AppError>;
    }
}

#[server(prefix = "/api", endpoint = "dataset")]
pub async fn dataset(id: i64) -> Result<DatasetPage, AppError> {
    use std::sync::Arc;
    super::ssr::call(|b: Arc<dyn DatasetsBackend>, r| async move { b.dataset(&r, id).await }).await
}

/// Deletes a dataset version (its files leave storage; its hashes stay);
/// how many stored files were freed. Refused while a job or an approved
/// model version uses it.
#[server(prefix = "/api", endpoint = "delete_dataset")]
pub async fn delete_dataset(id: i64) -> Result<u32, AppError> {
    use std::sync::Arc;
    super::ssr::call(|b: Arc<dyn DatasetsBackend>, r| async move { b.delete_dataset(&r, id).await })
        .await
}
