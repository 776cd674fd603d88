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
    env: minijinja::Environment<'static>,
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
        let template = self.env.get_template("chat").map_err(|e| e.to_string())?;
        template
            .render(minijinja::context! {
                messages => minijinja::Value::from(minijinja::value::Serde(&messages)),
                add_generation_prompt => generation,
                bos_token => self.bos.clone().unwrap_or_default(),
                eos_token => self.eos.clone().unwrap_or_default(),
            })
            .map_err(|e| match e.detail() {
                Some(detail) => detail.to_owned(),
                None => e.to_string(),
            })
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
            let size = m.content.as_deref().map_or(0, str::len)
                + if m.extra.is_empty() {
                    0
                } else {
                    serde_json::to_string(&m.extra).map_or(0, |s| s.len())
                };
            let reach = GAP + size + behind.iter().sum::<usize>();
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
        let contents: usize = ex
            .messages
            .iter()
            .map(|m| 64 + m.content.as_ref().map_or(0, String::len))
            .sum();
        let size = rendered.len() + contents;
        let bound = 32 * size as u64;
        assert!(steps < bound, "{steps} steps for {size} bytes");
    }
}
