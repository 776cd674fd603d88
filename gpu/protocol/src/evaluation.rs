//! The evaluation report `hone-train evaluate --report FILE` writes: the
//! fine-tuned model (and the base model) scored on the test split, every
//! metric with a seeded bootstrap 95 % interval, and each example's
//! answers. The engine computes every number; the server stores the
//! report as written (its SHA-256 is what a reviewer's decision is bound
//! to) and the browser shows it.

use crate::train_config::Method;
use serde::{Deserialize, Serialize};

/// What the server asks of an evaluation job: score the model training
/// job `train_job` made on the test split of its dataset version, against
/// the base model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSpec {
    pub base_model: String,
    pub dataset_version: i64,
    /// How it was trained: LoRA's adapter on the base, QLoRA's on the
    /// NF4 base, or a full fine-tune's own weights.
    pub method: Method,
    pub train_job: i64,
    pub seed: u64,
    pub resamples: u32,
    /// `None`: per example, enough for its reference answer (see
    /// [`auto_max_new_tokens`]).
    pub max_new_tokens: Option<usize>,
}

/// The answer budget for a reference of `reference_tokens` tokens when
/// none is set: the reference's length, a quarter more and 8 tokens, at
/// most 1 024 — room for a right answer, no room to ramble for long.
pub fn auto_max_new_tokens(reference_tokens: usize) -> usize {
    (reference_tokens + reference_tokens / 4 + 8).min(1024)
}

/// The report's layout version.
pub const REPORT_FORMAT: u32 = 1;

/// A metric's value on the test examples and its 95 % interval: the 2.5th
/// and 97.5th percentiles of the metric over bootstrap resamples of the
/// examples (the same resamples for the base, the tuned model and their
/// difference, so the difference's interval is paired).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

impl Interval {
    /// Both ends on the same side of zero: the difference is not noise at
    /// the 95 % level.
    pub fn excludes_zero(&self) -> bool {
        self.low > 0.0 || self.high < 0.0
    }
}

/// What a row of the metrics table measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Mean cross-entropy per answer token (lower is better).
    Loss,
    /// e^loss (lower is better).
    Perplexity,
    /// Share of answers equal to the reference after SQuAD's normalisation.
    ExactMatch,
    /// Mean token-overlap F1 with the reference (SQuAD's).
    TokenF1,
    /// Share of structured answers with every field of the reference right.
    AllFieldsRight,
    /// Share of structured answers whose structure (JSON or `Label: value`
    /// lines, the fields and their order) is the reference's.
    FormatConformance,
}

impl Metric {
    /// Lower is better (loss, perplexity).
    pub fn lower_is_better(self) -> bool {
        matches!(self, Metric::Loss | Metric::Perplexity)
    }

    /// The row's name on the report page.
    pub fn label(self) -> &'static str {
        match self {
            Metric::Loss => "Loss",
            Metric::Perplexity => "Perplexity",
            Metric::ExactMatch => "Exact match",
            Metric::TokenF1 => "Token F1",
            Metric::AllFieldsRight => "Every field right",
            Metric::FormatConformance => "Format conformance",
        }
    }
}

/// One row of the metrics table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricRow {
    pub metric: Metric,
    /// Examples the metric is computed over (structured ones only, for the
    /// field metrics).
    pub examples: usize,
    pub tuned: Interval,
    pub base: Option<Interval>,
    /// Tuned − base.
    pub difference: Option<Interval>,
}

/// Accuracy on one field of the structured answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldRow {
    /// The label (`ICD-10`) or JSON key, as the references write it.
    pub field: String,
    /// Examples whose reference has this field.
    pub examples: usize,
    pub tuned: Interval,
    pub base: Option<Interval>,
    pub difference: Option<Interval>,
}

/// How an answer is structured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Structure {
    /// A JSON object.
    Json,
    /// Every non-empty line is `Label: value`.
    Fields,
    /// Neither.
    Text,
}

/// One field of a reference, and what an answer said for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldResult {
    pub field: String,
    /// The reference's value.
    pub expected: String,
    /// The answer's value; `None`: the answer does not have the field.
    pub got: Option<String>,
    pub right: bool,
}

/// One model's answer to one test example, scored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub text: String,
    /// Mean cross-entropy of the example's assistant tokens (the
    /// reference answers) under this model; `None` when it has none left
    /// after the cut to the model's length.
    pub loss: Option<f64>,
    pub exact_match: bool,
    pub token_f1: f64,
    /// The answer's structure matches the reference's; `None` when the
    /// reference is plain text.
    pub format_ok: Option<bool>,
    /// Per field of the reference (empty when it is plain text).
    pub fields: Vec<FieldResult>,
}

/// One test example: the prompt, the reference and the answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExampleResult {
    /// Its line in the test split (1-based).
    pub line: usize,
    /// The conversation before the answer, as the chat template renders it.
    pub prompt: String,
    pub reference: String,
    pub structure: Structure,
    pub tuned: Answer,
    pub base: Option<Answer>,
}

/// `hone-train evaluate`'s report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`REPORT_FORMAT`].
    pub format: u32,
    /// The bootstrap's seed and number of resamples: the same report for
    /// the same seed.
    pub seed: u64,
    pub resamples: u32,
    /// Lines in the test split, and those with an assistant answer to
    /// score.
    pub examples: usize,
    pub answered: usize,
    /// Greedy decoding, at most this many new tokens per answer (`None`:
    /// per example, [`auto_max_new_tokens`] of its reference).
    pub max_new_tokens: Option<usize>,
    /// What the reader should know (e.g. "The test split has no assistant
    /// answers: loss only.").
    pub notes: Vec<String>,
    pub metrics: Vec<MetricRow>,
    pub fields: Vec<FieldRow>,
    pub items: Vec<ExampleResult>,
}

impl Report {
    pub fn metric(&self, m: Metric) -> Option<&MetricRow> {
        self.metrics.iter().find(|r| r.metric == m)
    }
}
