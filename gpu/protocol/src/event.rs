//! The training engine's progress, one JSON object per line on
//! `hone-train train`'s standard output: the engine writes these events,
//! the server stores and forwards them, the browser draws them.

use serde::{Deserialize, Deserializer, Serialize};

/// One progress event; `"event"` names the kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Started {
        total_steps: u64,
        examples: u64,
        trainable_params: u64,
        truncated: u64,
        /// The dtype of the matrix products.
        compute_dtype: ComputeDtype,
    },
    Step {
        step: u64,
        #[serde(deserialize_with = "number")]
        epoch: f64,
        #[serde(deserialize_with = "number")]
        loss: f64,
        #[serde(deserialize_with = "number")]
        learning_rate: f64,
        #[serde(deserialize_with = "number")]
        grad_norm: f64,
        #[serde(deserialize_with = "number")]
        tokens_per_s: f64,
        #[serde(deserialize_with = "number")]
        eta_s: f64,
    },
    Eval {
        step: u64,
        #[serde(deserialize_with = "number")]
        loss: f64,
        #[serde(deserialize_with = "number")]
        perplexity: f64,
    },
    Checkpoint {
        step: u64,
        path: String,
    },
    Resumed {
        step: u64,
        path: String,
    },
    Finished {
        step: u64,
        /// `"completed"`, `"cancelled"` or why it stopped early.
        reason: String,
        best_eval_loss: Option<f64>,
    },
    /// `hone-train evaluate --progress`: test examples scored so far.
    Evaluating {
        done: u64,
        total: u64,
    },
    /// The last line of a run that could not finish.
    Failed {
        reason: String,
        cause: Cause,
    },
}

/// Who can fix a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The settings or the data: the person who launched the job can fix it
    /// (the reason says how).
    User,
    /// The machine, the model files or the engine: an operator's problem.
    System,
}

/// The dtype of a run's matrix products, as bitsandbytes names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComputeDtype {
    Bfloat16,
    Float32,
}

/// JSON has no NaN or infinity and serde_json writes them as `null` (a
/// diverged loss, an evaluation with nothing to score): read `null` back
/// as NaN so such a line still parses.
fn number<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

impl Event {
    /// One line of `hone-train train`'s output.
    pub fn from_line(line: &str) -> Result<Event, serde_json::Error> {
        serde_json::from_str(line)
    }

    /// Whether this is the last event of a run.
    pub fn is_final(&self) -> bool {
        matches!(self, Event::Finished { .. } | Event::Failed { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_kind() -> Vec<Event> {
        vec![
            Event::Started {
                total_steps: 600,
                examples: 8,
                trainable_params: 7_000_000_000,
                truncated: 1,
                compute_dtype: ComputeDtype::Bfloat16,
            },
            Event::Step {
                step: 3,
                epoch: 1.5,
                loss: 2.25,
                learning_rate: 2e-4,
                grad_norm: 0.5,
                tokens_per_s: 1000.0,
                eta_s: 12.0,
            },
            Event::Eval {
                step: 4,
                loss: 1.75,
                perplexity: 1.75f64.exp(),
            },
            Event::Checkpoint {
                step: 4,
                path: "runs/1/checkpoint-00000004".into(),
            },
            Event::Evaluating { done: 3, total: 40 },
            Event::Resumed {
                step: 4,
                path: "runs/1/checkpoint-00000004".into(),
            },
            Event::Finished {
                step: 6,
                reason: "completed".into(),
                best_eval_loss: Some(1.5),
            },
            Event::Finished {
                step: 6,
                reason: "cancelled".into(),
                best_eval_loss: None,
            },
            Event::Failed {
                reason: "the training split has no usable examples".into(),
                cause: Cause::User,
            },
            Event::Failed {
                reason: "checkpoint: disk full".into(),
                cause: Cause::System,
            },
        ]
    }

    #[test]
    fn every_event_round_trips() {
        for e in every_kind() {
            let line = serde_json::to_string(&e).unwrap();
            assert!(!line.contains('\n'));
            assert_eq!(Event::from_line(&line).unwrap(), e, "{line}");
        }
    }

    #[test]
    fn the_line_shapes_are_pinned() {
        let step = serde_json::to_string(&every_kind()[1]).unwrap();
        assert_eq!(
            step,
            r#"{"event":"step","step":3,"epoch":1.5,"loss":2.25,"learning_rate":0.0002,"grad_norm":0.5,"tokens_per_s":1000.0,"eta_s":12.0}"#
        );
        let failed = serde_json::to_string(&Event::Failed {
            reason: "training config: lora_dropout must be at least 0 and below 1 (got 1.5)".into(),
            cause: Cause::User,
        })
        .unwrap();
        assert_eq!(
            failed,
            r#"{"event":"failed","reason":"training config: lora_dropout must be at least 0 and below 1 (got 1.5)","cause":"user"}"#
        );
        let started = serde_json::to_string(&every_kind()[0]).unwrap();
        assert_eq!(
            started,
            r#"{"event":"started","total_steps":600,"examples":8,"trainable_params":7000000000,"truncated":1,"compute_dtype":"bfloat16"}"#
        );
    }

    #[test]
    fn a_diverged_loss_still_parses() {
        let e = Event::Step {
            step: 1,
            epoch: 0.1,
            loss: f64::NAN,
            learning_rate: 1e-3,
            grad_norm: f64::INFINITY,
            tokens_per_s: 10.0,
            eta_s: 1.0,
        };
        let line = serde_json::to_string(&e).unwrap();
        assert!(line.contains(r#""loss":null"#), "{line}");
        match Event::from_line(&line).unwrap() {
            Event::Step {
                loss, grad_norm, ..
            } => assert!(loss.is_nan() && grad_norm.is_nan()),
            other => panic!("{other:?}"),
        }
        let eval =
            Event::from_line(r#"{"event":"eval","step":2,"loss":null,"perplexity":null}"#).unwrap();
        assert!(matches!(eval, Event::Eval { loss, .. } if loss.is_nan()));
    }

    #[test]
    fn unknown_kinds_are_refused_and_final_events_known() {
        assert!(Event::from_line(r#"{"event":"exploded"}"#).is_err());
        let finals: Vec<bool> = every_kind().iter().map(Event::is_final).collect();
        assert_eq!(
            finals,
            [false, false, false, false, false, false, true, true, true, true]
        );
    }
}
