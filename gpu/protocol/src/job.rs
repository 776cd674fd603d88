//! What the server asks the engine to do (`JobSpec`) and what came of it
//! (`Outcome`): serde types the server stores beside a job and the browser
//! shows, so neither has to understand the event stream to know the result.

use crate::event::Cause;
use crate::train_config::{Method, TrainConfig, TrainError};
use serde::{Deserialize, Serialize};

/// One fine-tuning job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// The base model's name as the server knows it (a folder under its
    /// models directory, or a Hugging Face id).
    pub base_model: String,
    /// The dataset version whose splits are trained on.
    pub dataset_version: i64,
    /// The same as `config.method`, at the top for listings and queries.
    pub method: Method,
    /// Every setting, defaults filled in.
    pub config: TrainConfig,
}

impl JobSpec {
    pub fn new(base_model: impl Into<String>, dataset_version: i64, config: TrainConfig) -> Self {
        JobSpec {
            base_model: base_model.into(),
            dataset_version,
            method: config.method,
            config,
        }
    }

    /// The settings are valid and `method` agrees with them.
    pub fn validate(&self) -> Result<(), TrainError> {
        if self.method != self.config.method {
            return Err(TrainError::Invalid {
                field: "method".into(),
                message: format!(
                    "of the job ({:?}) differs from the settings' method ({:?})",
                    self.method, self.config.method
                ),
            });
        }
        self.config.validate()
    }
}

/// How a job ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Succeeded {
        /// Optimizer steps done.
        steps: u64,
        final_train_loss: Option<f64>,
        best_eval_loss: Option<f64>,
        /// What the run left behind (the adapter or the model).
        files: Vec<ArtifactFile>,
    },
    Failed {
        cause: Cause,
        reason: String,
    },
    /// Stopped on request after `step`; the checkpoint there resumes it.
    Cancelled {
        step: u64,
    },
}

/// One file a job produced, with what is needed to check a copy of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactFile {
    /// Relative to the job's output folder, `/`-separated.
    pub path: String,
    pub size: u64,
    /// Lower-case hex.
    pub sha256: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_round_trips_and_checks_its_method() {
        let spec = JobSpec::new(
            "hone-demo",
            7,
            TrainConfig {
                method: Method::Qlora,
                ..TrainConfig::default()
            },
        );
        assert_eq!(spec.method, Method::Qlora);
        spec.validate().unwrap();
        let json = serde_json::to_string(&spec).unwrap();
        assert!(json.starts_with(r#"{"base_model":"hone-demo","dataset_version":7,"method":"qlora","config":{"method":"qlora","#), "{json}");
        assert_eq!(serde_json::from_str::<JobSpec>(&json).unwrap(), spec);
        let mismatch = JobSpec {
            method: Method::Full,
            ..spec
        };
        assert!(mismatch
            .validate()
            .unwrap_err()
            .to_string()
            .contains("method"));
        // The settings may be partial: the rest are defaults.
        let short: JobSpec = serde_json::from_str(
            r#"{"base_model":"m","dataset_version":1,"method":"lora","config":{"lora_r":8}}"#,
        )
        .unwrap();
        assert_eq!(short.config.lora_r, 8);
        assert_eq!(
            short.config.num_train_epochs,
            TrainConfig::default().num_train_epochs
        );
    }

    #[test]
    fn outcomes_round_trip() {
        let all = [
            Outcome::Succeeded {
                steps: 600,
                final_train_loss: Some(0.25),
                best_eval_loss: None,
                files: vec![ArtifactFile {
                    path: "adapter/adapter_model.safetensors".into(),
                    size: 1234,
                    sha256: "ab".repeat(32),
                }],
            },
            Outcome::Failed {
                cause: Cause::User,
                reason: "the training split has no usable examples".into(),
            },
            Outcome::Cancelled { step: 17 },
        ];
        for o in all {
            let json = serde_json::to_string(&o).unwrap();
            assert_eq!(serde_json::from_str::<Outcome>(&json).unwrap(), o, "{json}");
        }
        assert_eq!(
            serde_json::to_string(&Outcome::Cancelled { step: 17 }).unwrap(),
            r#"{"outcome":"cancelled","step":17}"#
        );
    }
}
