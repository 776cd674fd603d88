//! Test-set evaluation: loss and perplexity on the split, then for each
//! example the fine-tuned model's answer (and the base model's, when given)
//! to the conversation up to its last assistant message, scored against
//! that message by exact match and token F1 (SQuAD's normalisation: lower
//! case, punctuation and English articles removed, whitespace collapsed).
//! The report is JSON for the review step.

use crate::data::{prepare, DataOptions};
use crate::generate::{generate_text, Sampling};
use crate::model::Model;
use crate::qlora::QuantBackend;
use crate::train::mean_loss;
use hone_dataset::tokens::ChatTokenizer;
use hone_dataset::Example;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExampleReport {
    pub line: usize,
    /// The conversation before the answer, as the chat template renders it.
    pub prompt: String,
    pub reference: String,
    pub base_answer: Option<String>,
    pub fine_tuned_answer: String,
    pub exact_match: bool,
    pub token_f1: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub loss: f64,
    pub perplexity: f64,
    /// Share of answers equal to the reference after normalisation.
    pub exact_match: f64,
    pub token_f1: f64,
    /// Base model's scores on the same examples, when it was evaluated.
    pub base_exact_match: Option<f64>,
    pub base_token_f1: Option<f64>,
    pub examples: Vec<ExampleReport>,
}

/// SQuAD's answer normalisation.
pub fn normalise(text: &str) -> Vec<String> {
    text.to_lowercase()
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c.is_whitespace() {
                c
            } else {
                ' '
            }
        })
        .collect::<String>()
        .split_whitespace()
        .filter(|w| !matches!(*w, "a" | "an" | "the"))
        .map(str::to_owned)
        .collect()
}

/// Token-overlap F1 between an answer and the reference.
pub fn token_f1(answer: &str, reference: &str) -> f64 {
    let (a, r) = (normalise(answer), normalise(reference));
    if a.is_empty() || r.is_empty() {
        return if a == r { 1.0 } else { 0.0 };
    }
    let mut counts = std::collections::HashMap::new();
    for w in &r {
        *counts.entry(w.as_str()).or_insert(0i32) += 1;
    }
    let mut common = 0;
    for w in &a {
        if let Some(n) = counts.get_mut(w.as_str()) {
            if *n > 0 {
                *n -= 1;
                common += 1;
            }
        }
    }
    if common == 0 {
        return 0.0;
    }
    let precision = f64::from(common) / a.len() as f64;
    let recall = f64::from(common) / r.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

pub fn exact_match(answer: &str, reference: &str) -> bool {
    normalise(answer) == normalise(reference)
}

/// Evaluates `model` (and `base`, if given) on a split file's text.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_split<B: QuantBackend>(
    model: &Model<B>,
    base: Option<&Model<B>>,
    tokenizer: &ChatTokenizer,
    jsonl: &str,
    max_len: usize,
    sampling: &Sampling,
    stop_strings: &[String],
    pad_id: u32,
    device: &B::Device,
) -> Result<Report, String> {
    let data = prepare(
        jsonl,
        tokenizer,
        DataOptions {
            max_len,
            all_tokens: false,
        },
    )
    .map_err(|e| e.to_string())?;
    let loss = mean_loss(model, &data, 8, pad_id, device);
    let mut examples = Vec::new();
    for (i, line) in jsonl.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut ex: Example =
            serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        let Some(last) = ex.messages.iter().rposition(|m| m.role == "assistant") else {
            continue;
        };
        let reference = ex.messages[last].content.clone().unwrap_or_default();
        ex.messages.truncate(last);
        let prompt = tokenizer.render_prompt(&ex)?;
        let ids = tokenizer.encode_text(&prompt)?.get_ids().to_vec();
        let answer = |m: &Model<B>| -> Result<String, String> {
            generate_text(m, tokenizer, &ids, sampling, stop_strings, device)
        };
        let fine_tuned_answer = answer(model)?;
        let base_answer = base.map(answer).transpose()?;
        examples.push(ExampleReport {
            line: i + 1,
            exact_match: exact_match(&fine_tuned_answer, &reference),
            token_f1: token_f1(&fine_tuned_answer, &reference),
            prompt,
            reference,
            base_answer,
            fine_tuned_answer,
        });
    }
    let n = examples.len().max(1) as f64;
    let share = |f: &dyn Fn(&ExampleReport) -> f64| examples.iter().map(f).sum::<f64>() / n;
    let base_scores = base.map(|_| {
        (
            share(&|e| {
                f64::from(u8::from(exact_match(
                    e.base_answer.as_deref().unwrap_or(""),
                    &e.reference,
                )))
            }),
            share(&|e| token_f1(e.base_answer.as_deref().unwrap_or(""), &e.reference)),
        )
    });
    Ok(Report {
        loss,
        perplexity: loss.exp(),
        exact_match: share(&|e| f64::from(u8::from(e.exact_match))),
        token_f1: share(&|e| e.token_f1),
        base_exact_match: base_scores.map(|s| s.0),
        base_token_f1: base_scores.map(|s| s.1),
        examples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squad_normalisation_and_f1() {
        assert!(exact_match("The Eiffel Tower!", "eiffel   tower"));
        assert!(!exact_match("Paris, France", "Paris"));
        assert_eq!(token_f1("Paris", "Paris"), 1.0);
        assert_eq!(token_f1("London", "Paris"), 0.0);
        // 1 common of 2 predicted and 1 reference: P = 0.5, R = 1, F1 = 2/3.
        assert!((token_f1("Paris France", "the Paris") - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(token_f1("", ""), 1.0);
        assert_eq!(token_f1("a", "Paris"), 0.0);
    }
}
