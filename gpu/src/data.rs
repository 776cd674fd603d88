//! Training data: the normalised chat JSONL the dataset step writes (one
//! OpenAI `messages` example per line), rendered with the model's chat
//! template and tokenized by `hone_dataset::tokens` — the same code that
//! counted the tokens in the browser — into ids and a loss mask.
//!
//! Loss mask: assistant tokens by default (messages with `weight: 0` are
//! excluded), or every token. Sequences longer than `max_len` are cut at
//! the end and counted, and the longest length is kept (the trainer
//! refuses a split whose every example would be cut). Batches are right-padded with an attention mask;
//! packing is not done.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use hone_dataset::tokens::ChatTokenizer;
use hone_dataset::Example;

/// One tokenized example.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sequence {
    pub ids: Vec<u32>,
    /// Per id: whether its prediction counts in the loss.
    pub loss: Vec<bool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataOptions {
    pub max_len: usize,
    /// Loss on every token instead of only the assistant's.
    pub all_tokens: bool,
}

/// A training split, ready for batching.
#[derive(Debug, Default)]
pub struct Prepared {
    pub sequences: Vec<Sequence>,
    /// Examples cut to `max_len`.
    pub truncated: usize,
    /// Tokens in the longest example before any cut (what `max_len` would
    /// have to be for none to be cut).
    pub longest: usize,
    /// Examples with nothing to learn from (no loss token), left out.
    pub empty: usize,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DataError {
    #[error("line {line}: not a normalised chat example ({why}); use the split files Hone wrote")]
    Line { line: usize, why: String },
    #[error("line {line}: the chat template failed: {why}")]
    Template { line: usize, why: String },
    #[error("max_len must be at least 2 tokens")]
    MaxLen,
}

/// Tokenizes a split file's text.
pub fn prepare(
    jsonl: &str,
    tokenizer: &ChatTokenizer,
    opts: DataOptions,
) -> Result<Prepared, DataError> {
    if opts.max_len < 2 {
        return Err(DataError::MaxLen);
    }
    let mut out = Prepared::default();
    for (i, line) in jsonl.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let example: Example = serde_json::from_str(line).map_err(|e| DataError::Line {
            line: line_no,
            why: e.to_string(),
        })?;
        let encoded = tokenizer
            .encode(&example)
            .map_err(|why| DataError::Template { line: line_no, why })?;
        let mut ids = encoded.ids;
        let mut loss = if opts.all_tokens {
            vec![true; ids.len()]
        } else {
            encoded.assistant
        };
        out.longest = out.longest.max(ids.len());
        if ids.len() > opts.max_len {
            ids.truncate(opts.max_len);
            loss.truncate(opts.max_len);
            out.truncated += 1;
        }
        // The first token is never predicted.
        if !loss.iter().skip(1).any(|l| *l) {
            out.empty += 1;
            continue;
        }
        out.sequences.push(Sequence { ids, loss });
    }
    Ok(out)
}

/// A right-padded batch.
#[derive(Debug, Clone)]
pub struct Batch<B: Backend> {
    pub ids: Tensor<B, 2, Int>,
    /// 1.0 for real tokens, 0.0 for padding.
    pub attention: Tensor<B, 2>,
    /// 1.0 where the token's prediction counts.
    pub loss: Tensor<B, 2>,
    /// Real (non-padding) tokens in the batch.
    pub tokens: usize,
}

impl<B: Backend> Batch<B> {
    pub fn new(sequences: &[&Sequence], pad_id: u32, device: &B::Device) -> Batch<B> {
        let b = sequences.len().max(1);
        let len = sequences.iter().map(|s| s.ids.len()).max().unwrap_or(1);
        let mut ids = vec![i64::from(pad_id); b * len];
        let mut attention = vec![0f32; b * len];
        let mut loss = vec![0f32; b * len];
        let mut tokens = 0;
        for (row, s) in sequences.iter().enumerate() {
            for (j, (&id, &l)) in s.ids.iter().zip(&s.loss).enumerate() {
                ids[row * len + j] = i64::from(id);
                attention[row * len + j] = 1.0;
                loss[row * len + j] = if l { 1.0 } else { 0.0 };
            }
            tokens += s.ids.len();
        }
        Batch {
            ids: Tensor::from_data(TensorData::new(ids, [b, len]), device),
            attention: Tensor::from_data(TensorData::new(attention, [b, len]), device),
            loss: Tensor::from_data(TensorData::new(loss, [b, len]), device),
            tokens,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> ChatTokenizer {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/hone-demo");
        ChatTokenizer::from_files(
            &std::fs::read(root.join("tokenizer.json")).unwrap(),
            Some(&std::fs::read(root.join("tokenizer_config.json")).unwrap()),
            None,
        )
        .unwrap()
    }

    const TWO: &str = concat!(
        r#"{"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello there."}]}"#,
        "\n",
        r#"{"messages":[{"role":"user","content":"A"},{"role":"assistant","content":"B","weight":0},{"role":"user","content":"C"},{"role":"assistant","content":"D"}]}"#,
        "\n"
    );

    #[test]
    fn assistant_tokens_carry_the_loss_and_weight_0_is_left_out() {
        let t = demo();
        let opts = DataOptions {
            max_len: 512,
            all_tokens: false,
        };
        let p = prepare(TWO, &t, opts).unwrap();
        assert_eq!((p.sequences.len(), p.truncated, p.empty), (2, 0, 0));
        let first = &p.sequences[0];
        let decoded: Vec<u32> = first
            .ids
            .iter()
            .zip(&first.loss)
            .filter(|(_, l)| **l)
            .map(|(id, _)| *id)
            .collect();
        // "Hello there." plus <|im_end|>, as the dataset check counts them.
        let ex: Example = serde_json::from_str(TWO.lines().next().unwrap()).unwrap();
        let e = t.encode(&ex).unwrap();
        assert_eq!(decoded.len(), e.assistant.iter().filter(|a| **a).count());
        assert_eq!(decoded.last(), Some(&494), "ends with <|im_end|>");
        // The second: "B" (weight 0) is not learnt, "D" is.
        let second = &p.sequences[1];
        let learnt = second.loss.iter().filter(|l| **l).count();
        assert_eq!(learnt, 2, "D and <|im_end|>");

        let all = prepare(
            TWO,
            &t,
            DataOptions {
                max_len: 512,
                all_tokens: true,
            },
        )
        .unwrap();
        assert!(all.sequences[0].loss.iter().all(|l| *l));
    }

    #[test]
    fn long_examples_are_cut_and_counted_and_bad_lines_named() {
        let t = demo();
        let p = prepare(
            TWO,
            &t,
            DataOptions {
                max_len: 6,
                all_tokens: true,
            },
        )
        .unwrap();
        assert_eq!(p.truncated, 2);
        assert!(p.sequences.iter().all(|s| s.ids.len() == 6));
        assert!(p.longest > 6, "{}", p.longest);
        // Cut before the assistant speaks: nothing to learn, left out.
        let p = prepare(
            TWO,
            &t,
            DataOptions {
                max_len: 4,
                all_tokens: false,
            },
        )
        .unwrap();
        assert_eq!((p.sequences.len(), p.empty), (0, 2));
        let err = prepare(
            "{\"messages\":[]}\nnot json\n",
            &t,
            DataOptions {
                max_len: 8,
                all_tokens: false,
            },
        );
        assert!(
            matches!(err, Err(DataError::Line { line: 2, .. })),
            "{err:?}"
        );
        assert_eq!(
            prepare(
                TWO,
                &t,
                DataOptions {
                    max_len: 1,
                    all_tokens: false
                }
            )
            .unwrap_err(),
            DataError::MaxLen
        );
    }

    #[test]
    fn batches_are_right_padded_with_masks() {
        type B = burn::backend::Flex;
        let a = Sequence {
            ids: vec![5, 6, 7],
            loss: vec![false, true, true],
        };
        let b = Sequence {
            ids: vec![8],
            loss: vec![true],
        };
        let batch = Batch::<B>::new(&[&a, &b], 0, &Default::default());
        assert_eq!(batch.tokens, 4);
        let ids: Vec<i64> = batch.ids.into_data().iter::<i64>().collect();
        assert_eq!(ids, vec![5, 6, 7, 8, 0, 0]);
        let att: Vec<f32> = batch.attention.into_data().to_vec().unwrap();
        assert_eq!(att, vec![1.0, 1.0, 1.0, 1.0, 0.0, 0.0]);
        let loss: Vec<f32> = batch.loss.into_data().to_vec().unwrap();
        assert_eq!(loss, vec![0.0, 1.0, 1.0, 1.0, 0.0, 0.0]);
    }
}
