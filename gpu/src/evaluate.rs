//! Test-set evaluation: each example's loss under the fine-tuned model
//! (and the base model, when given), then each model's greedy answer to
//! the conversation up to its last assistant message, scored against that
//! message by exact match and token F1 (SQuAD's normalisation: lower case,
//! punctuation and English articles removed, whitespace collapsed), field
//! by field when the reference is structured (`fields.rs`), and every
//! metric with a seeded bootstrap interval (`bootstrap.rs`). The report
//! (`hone_protocol::evaluation::Report`) is what the review step shows;
//! nothing downstream recomputes a metric.

pub mod fields;

use crate::data::{prepare, DataOptions};
use crate::generate::{generate_text, Sampling};
use crate::model::Model;
use crate::qlora::QuantBackend;
use crate::train::mean_loss;
use hone_dataset::tokens::ChatTokenizer;
use hone_dataset::Example;
use hone_protocol::bootstrap::{self, identity, Series, Task, Transform};
use hone_protocol::evaluation::{
    auto_max_new_tokens, Answer, ExampleResult, FieldRow, Metric, MetricRow, Report, REPORT_FORMAT,
};

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

/// How to evaluate.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Longer examples are cut, as in training.
    pub max_len: usize,
    /// Decoding (greedy by default) and the model's stop tokens;
    /// `max_new_tokens` 0: per example, `auto_max_new_tokens` of its
    /// reference.
    pub sampling: Sampling,
    /// Answers also end at these strings.
    pub stop_strings: Vec<String>,
    pub pad_id: u32,
    /// The bootstrap's seed and number of resamples.
    pub seed: u64,
    pub resamples: u32,
}

/// One test line's per-model figures before aggregation.
struct Scored {
    /// Summed cross-entropy and token count of its loss tokens.
    nll: Option<(f64, f64)>,
    answer: Option<Answer>,
}

/// Summed cross-entropy of `line`'s loss tokens under `model`, and their
/// count; `None` when the example has none (or is cut to none).
fn example_nll<B: QuantBackend>(
    model: &Model<B>,
    line: &str,
    tokenizer: &ChatTokenizer,
    options: DataOptions,
    pad_id: u32,
    device: &B::Device,
) -> Result<Option<(f64, f64)>, String> {
    let data = prepare(line, tokenizer, options).map_err(|e| e.to_string())?;
    let Some(seq) = data.sequences.first() else {
        return Ok(None);
    };
    let tokens = seq.loss.iter().skip(1).filter(|l| **l).count() as f64;
    if tokens == 0.0 {
        return Ok(None);
    }
    let mean = mean_loss(model, &data, 1, pad_id, device);
    Ok(mean.is_finite().then_some((mean * tokens, tokens)))
}

/// Evaluates `model` (and `base`, if given) on a split file's text: each
/// example's loss under each model, each model's greedy answer to the
/// conversation up to its last assistant message scored against that
/// message, and every metric with its bootstrap interval. `progress` hears
/// (examples done, examples) after each.
pub fn evaluate_split<B: QuantBackend>(
    model: &Model<B>,
    base: Option<&Model<B>>,
    tokenizer: &ChatTokenizer,
    jsonl: &str,
    opts: &EvalOptions,
    device: &B::Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Report, String> {
    // Every line is checked before any model runs.
    let mut lines = Vec::new();
    for (i, line) in jsonl.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let ex: Example = serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        lines.push((i + 1, line, ex));
    }
    let answered = lines
        .iter()
        .filter(|(_, _, ex)| ex.messages.iter().any(|m| m.role == "assistant"))
        .count();
    let mut notes = Vec::new();
    // Without answers there is nothing to generate or score: the loss on
    // every token is all there is.
    let options = DataOptions {
        max_len: opts.max_len,
        all_tokens: answered == 0,
    };
    if lines.is_empty() {
        notes.push("The test split is empty: there is nothing to evaluate.".to_owned());
    } else if answered == 0 {
        notes.push(
            "The test split has no assistant answers: the report shows the loss (on every token) only."
                .to_owned(),
        );
    } else if answered < lines.len() {
        notes.push(format!(
            "{} of {} test examples have no assistant answer: they count in the loss only.",
            lines.len() - answered,
            lines.len()
        ));
    }
    let mut tuned_scores = Vec::new();
    let mut base_scores = Vec::new();
    let mut items = Vec::new();
    for (done, (line_no, line, ex)) in lines.iter().enumerate() {
        let nll = |m: &Model<B>| example_nll(m, line, tokenizer, options, opts.pad_id, device);
        let tuned_nll = nll(model)?;
        let base_nll = base.map(nll).transpose()?.flatten();
        let mut tuned_answer = None;
        let mut base_answer = None;
        if let Some(last) = ex.messages.iter().rposition(|m| m.role == "assistant") {
            let reference = ex.messages[last].content.clone().unwrap_or_default();
            let mut asked = ex.clone();
            asked.messages.truncate(last);
            let prompt = tokenizer.render_prompt(&asked)?;
            let ids = tokenizer.encode_text(&prompt)?.get_ids().to_vec();
            let parsed = fields::parse(&reference);
            let mut sampling = opts.sampling.clone();
            if sampling.max_new_tokens == 0 {
                let reference_tokens = tokenizer.encode_text(&reference)?.get_ids().len();
                sampling.max_new_tokens = auto_max_new_tokens(reference_tokens);
            }
            let answer = |m: &Model<B>, loss: Option<(f64, f64)>| -> Result<Answer, String> {
                let text =
                    generate_text(m, tokenizer, &ids, &sampling, &opts.stop_strings, device)?;
                let (format_ok, fields) = fields::score(&parsed, &text);
                Ok(Answer {
                    exact_match: exact_match(&text, &reference),
                    token_f1: token_f1(&text, &reference),
                    loss: loss.map(|(n, t)| n / t),
                    format_ok,
                    fields,
                    text,
                })
            };
            let tuned = answer(model, tuned_nll)?;
            let base = base.map(|b| answer(b, base_nll)).transpose()?;
            tuned_answer = Some(tuned.clone());
            base_answer = base.clone();
            items.push(ExampleResult {
                line: *line_no,
                prompt,
                reference,
                structure: parsed.structure,
                tuned,
                base,
            });
        }
        tuned_scores.push(Scored {
            nll: tuned_nll,
            answer: tuned_answer,
        });
        if base.is_some() {
            base_scores.push(Scored {
                nll: base_nll,
                answer: base_answer,
            });
        }
        progress(done + 1, lines.len());
    }
    let base_scores = base.is_some().then_some(base_scores);
    let (metrics, field_rows) = aggregate(&tuned_scores, base_scores.as_deref(), opts);
    Ok(Report {
        format: REPORT_FORMAT,
        seed: opts.seed,
        resamples: opts.resamples,
        examples: lines.len(),
        answered,
        max_new_tokens: (opts.sampling.max_new_tokens > 0).then_some(opts.sampling.max_new_tokens),
        notes,
        metrics,
        fields: field_rows,
        items,
    })
}

/// The metrics table and the per-field rows, with intervals from one set
/// of resamples.
fn aggregate(
    tuned: &[Scored],
    base: Option<&[Scored]>,
    opts: &EvalOptions,
) -> (Vec<MetricRow>, Vec<FieldRow>) {
    let loss = |s: &[Scored]| {
        let (num, den) = s.iter().map(|e| e.nll.unwrap_or((0.0, 0.0))).unzip();
        Series { num, den }
    };
    let mean = |s: &[Scored], f: &dyn Fn(&Answer) -> Option<f64>| {
        Series::mean(s.iter().map(|e| e.answer.as_ref().and_then(f)))
    };
    let flag = |b: bool| f64::from(u8::from(b));
    type Of = fn(&Answer) -> Option<f64>;
    let answer_metrics: [(Metric, Of); 4] = [
        (Metric::ExactMatch, |a| {
            Some(f64::from(u8::from(a.exact_match)))
        }),
        (Metric::TokenF1, |a| Some(a.token_f1)),
        (Metric::AllFieldsRight, |a| {
            (!a.fields.is_empty()).then(|| f64::from(u8::from(a.fields.iter().all(|f| f.right))))
        }),
        (Metric::FormatConformance, |a| {
            a.format_ok.map(|ok| f64::from(u8::from(ok)))
        }),
    ];
    let mut named: Vec<(Metric, Series, Option<Series>, Transform)> = vec![
        (
            Metric::Loss,
            loss(tuned),
            base.map(loss),
            identity as Transform,
        ),
        (
            Metric::Perplexity,
            loss(tuned),
            base.map(loss),
            f64::exp as Transform,
        ),
    ];
    for (m, of) in answer_metrics {
        named.push((m, mean(tuned, &of), base.map(|b| mean(b, &of)), identity));
    }
    // Fields in the order the references first name them.
    let mut names: Vec<String> = Vec::new();
    for a in tuned.iter().filter_map(|e| e.answer.as_ref()) {
        for f in &a.fields {
            if !names.contains(&f.field) {
                names.push(f.field.clone());
            }
        }
    }
    let field_series = |s: &[Scored], name: &str| {
        Series::mean(s.iter().map(|e| {
            e.answer
                .as_ref()
                .and_then(|a| a.fields.iter().find(|f| f.field == name))
                .map(|f| flag(f.right))
        }))
    };
    let fields: Vec<(Series, Option<Series>)> = names
        .iter()
        .map(|n| (field_series(tuned, n), base.map(|b| field_series(b, n))))
        .collect();
    let mut tasks: Vec<Task> = named
        .iter()
        .map(|(_, t, b, tr)| Task {
            tuned: t,
            base: b.as_ref(),
            transform: *tr,
        })
        .collect();
    tasks.extend(fields.iter().map(|(t, b)| Task {
        tuned: t,
        base: b.as_ref(),
        transform: identity,
    }));
    let got = bootstrap::intervals(tuned.len(), &tasks, opts.resamples, opts.seed);
    let (metric_ivs, field_ivs) = got.split_at(named.len());
    let metrics = named
        .iter()
        .zip(metric_ivs)
        .filter_map(|((m, t, _, _), iv)| {
            iv.map(|iv| MetricRow {
                metric: *m,
                examples: t.examples(),
                tuned: iv.tuned,
                base: iv.base,
                difference: iv.difference,
            })
        })
        .collect();
    let field_rows = names
        .into_iter()
        .zip(fields.iter().zip(field_ivs))
        .filter_map(|(field, ((t, _), iv))| {
            iv.map(|iv| FieldRow {
                field,
                examples: t.examples(),
                tuned: iv.tuned,
                base: iv.base,
                difference: iv.difference,
            })
        })
        .collect();
    (metrics, field_rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bootstrap_and_sampling_stream_is_the_dataset_crates_mixer() {
        for x in [0, 1, 42, u64::MAX] {
            assert_eq!(
                hone_protocol::bootstrap::mix(x),
                hone_dataset::similar::mix(x)
            );
        }
    }

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
