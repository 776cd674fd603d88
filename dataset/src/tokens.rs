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
        let assistant = encoding
            .get_offsets()
            .iter()
            .map(|&(s, e)| spans.iter().any(|&(a, b)| s < b && e > a))
            .collect();
        Ok(Encoded {
            ids: encoding.get_ids().to_vec(),
            assistant,
        })
    }

    /// Byte ranges of trainable assistant text in `rendered`: each message's
    /// content is found in order; assistant ones (weight ≠ 0) count, with
    /// the end-of-turn token that directly follows.
    fn assistant_spans(&self, example: &Example, rendered: &str) -> Vec<(usize, usize)> {
        let mut spans = Vec::new();
        let mut at = 0;
        for m in &example.messages {
            let Some(content) = m.content.as_deref().filter(|c| !c.is_empty()) else {
                continue;
            };
            let Some(found) = rendered.get(at..).and_then(|r| r.find(content)) else {
                continue;
            };
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
