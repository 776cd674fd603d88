//! Token counts as training sees them (feature `tokens`): the base model's
//! `tokenizer.json` through Hugging Face's `tokenizers` and its chat template
//! through `minijinja`, configured as transformers configures Jinja2
//! (`trim_blocks`, `lstrip_blocks`, Python string methods, `raise_exception`).
//! The browser, the server and the trainer all count with this type, so a
//! length shown on the page is the length the trainer will see.
//!
//! Assistant tokens are those inside an assistant message's content (messages
//! with `weight: 0` excluded), plus the end-of-turn token (`eos_token`) when
//! the template puts it right after the content — the tokens a fine-tune is
//! trained to produce.

use crate::check::Measure;
use crate::example::Example;
use serde_json::Value;
use std::sync::OnceLock;

/// Why a model's tokenizer files could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("tokenizer.json cannot be read: {0}")]
    Tokenizer(String),
    #[error("tokenizer_config.json is not valid: {0}")]
    Config(String),
    #[error(
        "the model has no chat template (neither `chat_template` in tokenizer_config.json nor a chat_template.jinja file)"
    )]
    NoTemplate,
    #[error("the chat template has a syntax error: {0}")]
    Template(String),
}

/// One example as token ids, with which of them training learns from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    /// Per id: whether it is an assistant token (the default loss mask).
    pub assistant: Vec<bool>,
}

/// A tokenizer with its chat template.
pub struct ChatTokenizer {
    tokenizer: tokenizers::Tokenizer,
    /// The template's environment, without fuel: copied into `fueled`.
    env: minijinja::Environment<'static>,
    /// The same environment per fuel budget: slot `k` is for examples of
    /// up to 2^k bytes ([`fuel`]), made when first needed. Fuel is set on
    /// an environment, not on a render, hence one per budget.
    fueled: Box<[OnceLock<minijinja::Environment<'static>>; 64]>,
    bos: Option<String>,
    eos: Option<String>,
}

impl std::fmt::Debug for ChatTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTokenizer")
            .field("vocab", &self.tokenizer.get_vocab_size(true))
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .finish()
    }
}

/// Fuel (minijinja's measure of template work: about one instruction, or
/// 64 bytes of data made) that one render may use: a fixed allowance for
/// the template's own text, plus some per byte of the example. A
/// Qwen3-style template (reasoning split off, messages walked twice) takes
/// about one per byte, so long conversations render; a template that loops
/// is stopped within a few milliseconds for a short example, and within
/// about a second per MiB for a long one.
const FUEL_BASE: u64 = 1 << 20;
const FUEL_PER_BYTE: u64 = 16;
/// What one render may write: a fixed allowance plus a multiple of the
/// example. Templates add a header per message and sometimes a default
/// system prompt, nothing near this.
const OUTPUT_BASE: usize = 1 << 20;
const OUTPUT_PER_BYTE: usize = 4;
/// Bytes an example counts as per message, for its markers and fields.
const MESSAGE_BYTES: usize = 64;

/// The example's size for the fuel and output allowances.
fn weight(example: &Example) -> usize {
    example.messages.iter().fold(0usize, |sum, m| {
        sum.saturating_add(MESSAGE_BYTES)
            .saturating_add(m.role.len())
            .saturating_add(m.name.as_deref().map_or(0, str::len))
            .saturating_add(text_len(m))
    })
}

/// The bytes of a message a template writes out: its content and its tool
/// calls (as JSON).
fn text_len(m: &crate::example::Message) -> usize {
    let extra = if m.extra.is_empty() {
        0
    } else {
        serde_json::to_string(&m.extra).map_or(0, |s| s.len())
    };
    m.content
        .as_deref()
        .map_or(0, str::len)
        .saturating_add(extra)
}

/// The fuel slot of an example of `weight` bytes: the smallest `k` with
/// 2^k ≥ weight. Rounding up to a power of two keeps the number of
/// environments small.
fn fuel_slot(weight: usize) -> usize {
    weight
        .max(1)
        .checked_next_power_of_two()
        .map_or(usize::BITS - 1, usize::trailing_zeros) as usize
}

/// The fuel of a slot.
fn fuel(slot: usize) -> u64 {
    let bytes = 1u64.checked_shl(slot as u32).unwrap_or(u64::MAX);
    FUEL_BASE.saturating_add(FUEL_PER_BYTE.saturating_mul(bytes))
}

/// The rendered text, refused once it is longer than `cap`.
struct Capped {
    out: Vec<u8>,
    cap: usize,
    over: bool,
}

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.out.len() + buf.len() > self.cap {
            self.over = true;
            return Err(std::io::Error::other("the output cap is reached"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `8388608` → "8 MiB", `1536` → "1.5 KiB".
fn human(bytes: usize) -> String {
    let (value, unit) = match bytes {
        b if b >= 1 << 20 => (b as f64 / f64::from(1u32 << 20), "MiB"),
        b if b >= 1 << 10 => (b as f64 / 1024.0, "KiB"),
        b => return format!("{b} bytes"),
    };
    let rounded = (value * 10.0).round() / 10.0;
    format!("{rounded} {unit}")
}

/// The date `strftime_now` renders: the crate has no clock, and counts must
/// not change from one day to the next.
const TEMPLATE_DATE: &str = "26 Jul 2024";

impl ChatTokenizer {
    /// From a model folder's files: `tokenizer.json`, `tokenizer_config.json`
    /// (special tokens and, usually, `chat_template`) and the optional
    /// `chat_template.jinja`, which wins when both exist (transformers 5
    /// writes the template there).
    pub fn from_files(
        tokenizer_json: &[u8],
        tokenizer_config: Option<&[u8]>,
        chat_template: Option<&str>,
    ) -> Result<ChatTokenizer, LoadError> {
        let tokenizer = tokenizers::Tokenizer::from_bytes(tokenizer_json)
            .map_err(|e| LoadError::Tokenizer(e.to_string()))?;
        let config: Value = match tokenizer_config {
            Some(bytes) => {
                serde_json::from_slice(bytes).map_err(|e| LoadError::Config(e.to_string()))?
            }
            None => Value::Null,
        };
        let template = match chat_template {
            Some(t) => t.to_owned(),
            None => template_from_config(&config).ok_or(LoadError::NoTemplate)?,
        };
        let mut env = minijinja::Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| LoadError::Template(e.to_string()))?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    message,
                ))
            },
        );
        env.add_function("strftime_now", |_format: String| TEMPLATE_DATE.to_owned());
        env.add_template_owned("chat", template)
            .map_err(|e| LoadError::Template(e.to_string()))?;
        Ok(ChatTokenizer {
            tokenizer,
            env,
            fueled: Box::new([const { OnceLock::new() }; 64]),
            bos: special(&config, "bos_token"),
            eos: special(&config, "eos_token"),
        })
    }

    /// The end-of-turn token, when the model names one.
    pub fn eos_token(&self) -> Option<&str> {
        self.eos.as_deref()
    }

    /// The example as the chat template renders it for training (no
    /// generation prompt).
    pub fn render(&self, example: &Example) -> Result<String, String> {
        self.render_messages(example, false)
    }

    /// The conversation followed by the assistant's turn header, as for
    /// generation.
    pub fn render_prompt(&self, example: &Example) -> Result<String, String> {
        self.render_messages(example, true)
    }

    fn render_messages(&self, example: &Example, generation: bool) -> Result<String, String> {
        let messages: Vec<Value> = example
            .messages
            .iter()
            .map(|m| {
                let mut v = serde_json::to_value(m).unwrap_or(Value::Null);
                if let Value::Object(o) = &mut v {
                    // Templates test `message['content'] is none`.
                    o.entry("content").or_insert(Value::Null);
                }
                v
            })
            .collect();
        // The allowances follow the example's size, so results do not
        // depend on anything else (browser, server and trainer agree).
        let weight = weight(example);
        let slot = fuel_slot(weight);
        let env = self.fueled[slot].get_or_init(|| {
            let mut env = self.env.clone();
            env.set_fuel(Some(fuel(slot)));
            env
        });
        let template = env.get_template("chat").map_err(|e| e.to_string())?;
        let mut out = Capped {
            out: Vec::new(),
            cap: OUTPUT_BASE.saturating_add(OUTPUT_PER_BYTE.saturating_mul(weight)),
            over: false,
        };
        let rendered = template.render_captured_to(
            minijinja::context! {
                messages => minijinja::Value::from(minijinja::value::Serde(&messages)),
                add_generation_prompt => generation,
                bos_token => self.bos.clone().unwrap_or_default(),
                eos_token => self.eos.clone().unwrap_or_default(),
            },
            &mut out,
        );
        if out.over {
            return Err(format!(
                "the chat template writes more than {} for this example",
                human(out.cap)
            ));
        }
        if let Err(e) = rendered {
            return Err(match (e.kind(), e.detail()) {
                (minijinja::ErrorKind::OutOfFuel, _) => format!(
                    "the chat template does too much work for this example (more than {} steps): it may loop without end",
                    fuel(slot)
                ),
                (_, Some(detail)) => detail.to_owned(),
                (_, None) => e.to_string(),
            });
        }
        String::from_utf8(out.out).map_err(|e| e.to_string())
    }

    /// Text of generated ids, special tokens left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String, String> {
        self.tokenizer.decode(ids, true).map_err(|e| e.to_string())
    }

    /// Token ids of a rendered conversation (the template already wrote the
    /// special tokens, so none are added).
    pub fn encode_text(&self, text: &str) -> Result<tokenizers::Encoding, String> {
        self.tokenizer
            .encode(text, false)
            .map_err(|e| e.to_string())
    }

    /// The example's ids and assistant mask, exactly as training uses them.
    pub fn encode(&self, example: &Example) -> Result<Encoded, String> {
        let rendered = self.render(example)?;
        let encoding = self.encode_text(&rendered)?;
        let spans = self.assistant_spans(example, &rendered);
        Ok(Encoded {
            ids: encoding.get_ids().to_vec(),
            assistant: mark(encoding.get_offsets(), &spans),
        })
    }

    /// Byte ranges of trainable assistant text in `rendered`: each message's
    /// content is found in order; assistant ones (weight ≠ 0) count, with
    /// the end-of-turn token that directly follows. The ranges come by
    /// their start.
    fn assistant_spans(&self, example: &Example, rendered: &str) -> Vec<(usize, usize)> {
        let mut spans = Vec::new();
        let mut at = 0;
        // A content the template rewrote (reasoning templates drop the
        // reasoning of earlier replies) is not found, and looking for it
        // scans the rest of the text. Once such fruitless scans have read
        // the text 16 times, each content is looked for only as far as
        // the template's text between messages (`GAP`) and the messages
        // just before it (`BEHIND`, as the template may have rewritten
        // them) reach, so a long conversation costs linear time; until
        // then, as far as the end.
        const GAP: usize = 1 << 10;
        const BEHIND: usize = 4;
        let mut fruitless = 16 * rendered.len() + (64 << 10);
        let mut behind = [0usize; BEHIND];
        for (i, m) in example.messages.iter().enumerate() {
            let size = text_len(m);
            let reach = behind
                .iter()
                .fold(GAP.saturating_add(size), |r, b| r.saturating_add(*b));
            behind[i % BEHIND] = size;
            let Some(content) = m.content.as_deref().filter(|c| !c.is_empty()) else {
                continue;
            };
            let rest = rendered.get(at..).unwrap_or_default();
            let rest = if fruitless == 0 && reach < rest.len() {
                let mut end = reach;
                while !rest.is_char_boundary(end) {
                    end += 1;
                }
                &rest[..end]
            } else {
                rest
            };
            let Some(found) = rest.find(content) else {
                crate::work::add(rest.len());
                fruitless = fruitless.saturating_sub(rest.len());
                continue;
            };
            crate::work::add(found + content.len());
            let start = at + found;
            let mut end = start + content.len();
            at = end;
            if let Some(eos) = self.eos.as_deref().filter(|e| !e.is_empty()) {
                if rendered[end..].starts_with(eos) {
                    end += eos.len();
                }
            }
            if m.role == "assistant" && m.weight != Some(0) {
                spans.push((start, end));
            }
        }
        spans
    }
}

/// Per token (byte offsets in the rendered text), whether it overlaps one
/// of `spans` (ordered by start). Overlapping spans are merged, so the
/// spans are disjoint and ordered; the tokens come in order too, and both
/// are walked together — linear, where testing each token against every
/// span was quadratic. A token that starts before the one before it (no
/// tokenizer in use does that) is placed by binary search.
fn mark(offsets: &[(usize, usize)], spans: &[(usize, usize)]) -> Vec<bool> {
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(spans.len());
    for &(a, b) in spans {
        crate::work::add(1);
        match merged.last_mut() {
            Some(last) if a < last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    let mut next = 0;
    let mut previous = 0;
    offsets
        .iter()
        .map(|&(s, e)| {
            crate::work::add(1);
            if s < previous {
                crate::work::add(merged.len().max(1).ilog2() as usize + 1);
                next = merged.partition_point(|&(_, b)| b <= s);
            }
            previous = s;
            // Spans that end before this token cannot overlap it or a later one.
            while merged.get(next).is_some_and(|&(_, b)| b <= s) {
                crate::work::add(1);
                next += 1;
            }
            // The first span that ends after the token's start: it overlaps
            // the token if any span does.
            merged.get(next).is_some_and(|&(a, b)| s < b && e > a)
        })
        .collect()
}

impl Measure for ChatTokenizer {
    fn measure(&self, example: &Example) -> Result<(u32, u32), String> {
        let e = self.encode(example)?;
        let assistant = e.assistant.iter().filter(|a| **a).count();
        Ok((e.ids.len() as u32, assistant as u32))
    }
}

/// `chat_template` is a string, or a list of `{name, template}` of which
/// "default" is the one for conversations.
fn template_from_config(config: &Value) -> Option<String> {
    match config.get("chat_template")? {
        Value::String(s) => Some(s.clone()),
        Value::Array(list) => {
            let named = |name: &str| {
                list.iter()
                    .find(|t| t.get("name").and_then(Value::as_str) == Some(name))
            };
            named("default")
                .or_else(|| list.first())
                .and_then(|t| t.get("template"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        }
        _ => None,
    }
}

/// A special token: a string, or an added-token object with `content`.
fn special(config: &Value, key: &str) -> Option<String> {
    match config.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

#[cfg(test)]
mod work_tests {
    use super::*;
    use crate::example::Message;

    const TOKENIZER: &[u8] = include_bytes!("../../models/hone-demo/tokenizer.json");
    const CONFIG: &[u8] = include_bytes!("../../models/hone-demo/tokenizer_config.json");

    fn conversation(turns: usize) -> Example {
        let messages = (0..turns)
            .flat_map(|i| {
                [
                    Message::new("user", format!("question {i}")),
                    Message::new("assistant", format!("answer {i}")),
                ]
            })
            .collect();
        Example {
            messages,
            category: None,
        }
    }

    /// Thousands of assistant turns: each token is matched against the
    /// spans by walking both in order, not against every span.
    #[test]
    fn assistant_masks_grow_linearly_with_tokens_and_turns() {
        let t = ChatTokenizer::from_files(TOKENIZER, Some(CONFIG), None).unwrap();
        let ex = conversation(2000);
        let rendered = t.render(&ex).unwrap();
        let (encoded, steps) = crate::work::count(|| t.encode(&ex).unwrap());
        // "answer N" and the end-of-turn token after it, in every turn.
        let expected: usize = (0..2000)
            .map(|i| {
                t.encode_text(&format!("answer {i}<|im_end|>"))
                    .unwrap()
                    .len()
            })
            .sum();
        assert_eq!(encoded.assistant.iter().filter(|a| **a).count(), expected);
        let bound = 10 * rendered.len() as u64;
        assert!(steps < bound, "{steps} steps for {} bytes", rendered.len());
    }

    #[test]
    fn allowances_grow_with_the_example_in_powers_of_two() {
        assert_eq!(
            [0, 1, 2, 3, 1024, 1025].map(fuel_slot),
            [0, 0, 1, 2, 10, 11]
        );
        assert_eq!(fuel_slot(usize::MAX), usize::BITS as usize - 1);
        assert_eq!(fuel(10), FUEL_BASE + 16 * 1024);
        assert_eq!(fuel(63), u64::MAX);
        assert_eq!(
            weight(&conversation(1)),
            2 * 64 + "user".len() + "question 0".len() + "assistant".len() + "answer 0".len()
        );
    }

    proptest::proptest! {
        /// The walk marks exactly the tokens that overlap some span, for
        /// overlapping spans, empty tokens and offsets that go back.
        #[test]
        fn the_walk_marks_what_testing_every_span_marks(
            starts in proptest::collection::vec((0usize..4, 1usize..6), 0..12),
            tokens in proptest::collection::vec((0usize..40, 0usize..5), 0..40),
            sorted: bool,
        ) {
            let mut spans = Vec::new();
            let mut at = 0;
            for (gap, len) in starts {
                at += gap + 1;
                spans.push((at, at + len));
            }
            let mut offsets: Vec<(usize, usize)> = tokens.iter().map(|&(s, l)| (s, s + l)).collect();
            if sorted {
                offsets.sort_unstable();
            }
            let naive: Vec<bool> = offsets
                .iter()
                .map(|&(s, e)| spans.iter().any(|&(a, b)| s < b && e > a))
                .collect();
            proptest::prop_assert_eq!(mark(&offsets, &spans), naive);
        }
    }

    /// A template that rewrites every message: no content is found, and
    /// looking for them does not scan the rest of the text each time.
    #[test]
    fn contents_a_template_rewrites_are_not_searched_for_without_end() {
        let template = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content | upper }}<|im_end|>\n{% endfor %}";
        let t = ChatTokenizer::from_files(TOKENIZER, Some(CONFIG), Some(template)).unwrap();
        let ex = conversation(2000);
        let rendered = t.render(&ex).unwrap();
        let (encoded, steps) = crate::work::count(|| t.encode(&ex).unwrap());
        assert!(encoded.assistant.iter().all(|a| !a));
        // The text, and the example (each message counts as 64 bytes).
        let size = rendered.len() + weight(&ex);
        let bound = 32 * size as u64;
        assert!(steps < bound, "{steps} steps for {size} bytes");
    }
}
