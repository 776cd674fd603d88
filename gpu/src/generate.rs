//! Text generation with a key/value cache: the prompt is run once, then
//! one token at a time. Greedy (temperature 0) or sampled with temperature
//! and top-p from a seeded generator; stops at a stop token (kept in the
//! output, as transformers keeps the EOS) or after `max_new_tokens`.

use crate::model::{KvCache, Model};
use crate::qlora::QuantBackend;
use burn::tensor::{Int, Tensor, TensorData};

#[derive(Clone, Debug, PartialEq)]
pub struct Sampling {
    pub max_new_tokens: usize,
    /// 0: greedy.
    pub temperature: f32,
    /// Nucleus sampling: the smallest set of tokens whose probability
    /// reaches `top_p` (1.0: all).
    pub top_p: f32,
    /// Token ids that end the answer (the model's EOS ids).
    pub stop_ids: Vec<u32>,
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            max_new_tokens: 256,
            temperature: 0.0,
            top_p: 1.0,
            stop_ids: Vec::new(),
            seed: 0,
        }
    }
}

/// The seeded stream sampling draws from (SplitMix64).
pub use hone_protocol::bootstrap::Rng;

/// The next token from one row of logits.
fn choose(logits: &[f32], s: &Sampling, rng: &mut Rng) -> u32 {
    let argmax = || {
        logits
            .iter()
            .enumerate()
            .fold((0usize, f32::NEG_INFINITY), |best, (i, &v)| {
                if v > best.1 {
                    (i, v)
                } else {
                    best
                }
            })
            .0 as u32
    };
    if s.temperature <= 0.0 {
        return argmax();
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut probs: Vec<(usize, f64)> = logits
        .iter()
        .enumerate()
        .map(|(i, &v)| (i, (f64::from(v - max) / f64::from(s.temperature)).exp()))
        .collect();
    let total: f64 = probs.iter().map(|p| p.1).sum();
    probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut kept = Vec::new();
    let mut mass = 0.0;
    for (i, p) in probs {
        kept.push((i, p / total));
        mass += p / total;
        if mass >= f64::from(s.top_p) {
            break;
        }
    }
    let mut r = rng.uniform() * mass;
    for (i, p) in &kept {
        if r < *p {
            return *i as u32;
        }
        r -= p;
    }
    kept.last().map_or_else(argmax, |(i, _)| *i as u32)
}

/// Generates after `prompt`; returns the new tokens only.
pub fn generate<B: QuantBackend>(
    model: &Model<B>,
    prompt: &[u32],
    s: &Sampling,
    device: &B::Device,
) -> Vec<u32> {
    let mut out = Vec::new();
    run(model, prompt, s, device, &mut |token| {
        out.push(token);
        true
    });
    out
}

/// Generates text after `prompt`, stopping at a stop token or as soon as
/// the text contains one of `stop_strings` (cut before it).
pub fn generate_text<B: QuantBackend>(
    model: &Model<B>,
    tokenizer: &hone_dataset::tokens::ChatTokenizer,
    prompt: &[u32],
    s: &Sampling,
    stop_strings: &[String],
    device: &B::Device,
) -> Result<String, String> {
    let mut tokens = Vec::new();
    let mut text = String::new();
    let mut failed = None;
    run(model, prompt, s, device, &mut |token| {
        tokens.push(token);
        match tokenizer.decode(&tokens) {
            Ok(t) => text = t,
            Err(e) => {
                failed = Some(e);
                return false;
            }
        }
        match stop_strings
            .iter()
            .filter_map(|stop| text.find(stop.as_str()))
            .min()
        {
            Some(cut) => {
                text.truncate(cut);
                false
            }
            None => true,
        }
    });
    match failed {
        Some(e) => Err(e),
        None => Ok(text),
    }
}

/// How [`stream_text`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// A stop token or a stop string.
    Stop,
    /// `max_new_tokens` reached.
    Length,
    /// `on_text` said stop.
    Cancelled,
}

/// Generates after `prompt`, handing `on_text` each piece of new text as
/// it is decided: text that may be the start of a stop string, or half a
/// character, waits for the next tokens. `on_text` returns false to stop.
/// Returns how it ended and how many tokens it generated.
pub fn stream_text<B: QuantBackend>(
    model: &Model<B>,
    tokenizer: &hone_dataset::tokens::ChatTokenizer,
    prompt: &[u32],
    s: &Sampling,
    stop_strings: &[String],
    device: &B::Device,
    on_text: &mut dyn FnMut(&str) -> bool,
) -> Result<(Ended, usize), String> {
    let mut tokens = Vec::new();
    let mut sent = 0usize;
    let mut ended = Ended::Length;
    let mut failed = None;
    run(model, prompt, s, device, &mut |token| {
        tokens.push(token);
        let text = match tokenizer.decode(&tokens) {
            Ok(t) => t,
            Err(e) => {
                failed = Some(e);
                return false;
            }
        };
        if let Some(cut) = stop_strings
            .iter()
            .filter_map(|stop| text.find(stop.as_str()))
            .min()
        {
            ended = Ended::Stop;
            if cut > sent && !on_text(&text[sent..cut]) {
                ended = Ended::Cancelled;
            }
            return false;
        }
        let last = s.stop_ids.contains(&token);
        // At the end everything goes; before it, not what a stop string
        // may still claim, nor a character still being spelt.
        let upto = if last {
            text.len()
        } else {
            let mut upto = hone_protocol::serve::safe_prefix(&text, stop_strings);
            if text[..upto].ends_with('\u{fffd}') {
                upto -= '\u{fffd}'.len_utf8();
            }
            upto
        };
        if upto > sent {
            if !on_text(&text[sent..upto]) {
                ended = Ended::Cancelled;
                return false;
            }
            sent = upto;
        }
        if last {
            ended = Ended::Stop;
        }
        true
    });
    if let Some(e) = failed {
        return Err(e);
    }
    if ended == Ended::Length && tokens.len() < s.max_new_tokens {
        // The loop ended on an empty input: nothing more to generate.
        ended = Ended::Stop;
    }
    // What was held back for a stop string that never came.
    if ended == Ended::Length {
        if let Ok(text) = tokenizer.decode(&tokens) {
            if text.len() > sent && !on_text(&text[sent..]) {
                ended = Ended::Cancelled;
            }
        }
    }
    Ok((ended, tokens.len()))
}

/// The generation loop: `next(token)` receives each new token and says
/// whether to go on.
fn run<B: QuantBackend>(
    model: &Model<B>,
    prompt: &[u32],
    s: &Sampling,
    device: &B::Device,
    next: &mut dyn FnMut(u32) -> bool,
) {
    let mut cache = KvCache::new(model.layers.len());
    let mut rng = Rng(s.seed);
    let mut produced = 0;
    let mut input: Vec<i64> = prompt.iter().map(|t| i64::from(*t)).collect();
    while produced < s.max_new_tokens && !input.is_empty() {
        let n = input.len();
        let ids: Tensor<B, 2, Int> = Tensor::from_data(TensorData::new(input, [1, n]), device);
        let logits = model.forward_cached(ids, &mut cache);
        let vocab = logits.dims()[2];
        let last: Vec<f32> = logits
            .narrow(1, n - 1, 1)
            .reshape([vocab])
            .into_data()
            .iter::<f32>()
            .collect();
        let token = choose(&last, s, &mut rng);
        produced += 1;
        if !next(token) || s.stop_ids.contains(&token) {
            break;
        }
        input = vec![i64::from(token)];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_largest_and_top_p_limits_the_choice() {
        let logits = [0.1, 3.0, 2.9, -1.0];
        let mut rng = Rng(1);
        assert_eq!(choose(&logits, &Sampling::default(), &mut rng), 1);
        // top_p small: only the most likely token can be drawn.
        let s = Sampling {
            temperature: 1.0,
            top_p: 0.1,
            ..Sampling::default()
        };
        for _ in 0..50 {
            assert_eq!(choose(&logits, &s, &mut rng), 1);
        }
        // Full sampling reaches the runner-up too.
        let s = Sampling {
            temperature: 1.0,
            ..Sampling::default()
        };
        let drawn: std::collections::BTreeSet<u32> =
            (0..200).map(|_| choose(&logits, &s, &mut rng)).collect();
        assert!(drawn.contains(&1) && drawn.contains(&2));
    }
}
