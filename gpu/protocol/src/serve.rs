//! `hone-train serve`'s protocol: one JSON object per line each way. The
//! supervisor writes [`Request`]s to the service's standard input; the
//! service writes [`Reply`]s to its standard output, each naming the
//! request it answers, in the order it produces them. The service loads
//! one base model, applies a request's LoRA adapter at run time (never
//! merged; adapters are kept, least recently used first out, within a
//! memory budget) and streams each answer's text as it is generated.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// One message of a conversation, as OpenAI's chat API takes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Answer a conversation.
    Generate(Generate),
    /// Stop request `id`'s answer now (the client went away); queued, it
    /// is dropped. Answered with `done`, `finish_reason` `cancelled`.
    Cancel { id: String },
}

/// A conversation to answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Generate {
    /// The supervisor's name for the request: every reply carries it.
    pub id: String,
    /// A PEFT adapter folder for the base model; `None`: the base itself.
    #[serde(default)]
    pub adapter: Option<PathBuf>,
    /// Rendered with the model's own chat template, with the assistant's
    /// turn opened.
    pub messages: Vec<ChatMessage>,
    /// New tokens at most; `None`: up to the context's end.
    #[serde(default)]
    pub max_tokens: Option<usize>,
    /// 0: greedy.
    #[serde(default)]
    pub temperature: f32,
    #[serde(default = "one")]
    pub top_p: f32,
    #[serde(default)]
    pub seed: u64,
    /// The answer ends before the first of these (not included).
    #[serde(default)]
    pub stop: Vec<String>,
}

fn one() -> f32 {
    1.0
}

/// Why an answer ended, in OpenAI's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    /// The model ended its turn, or a stop sequence came.
    Stop,
    /// `max_tokens` (or the context's end) was reached.
    Length,
    /// Cancelled by the supervisor.
    Cancelled,
}

/// Why a request was refused or failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The messages break the chat template, or a setting is out of range.
    InvalidRequest,
    /// The prompt (and `max_tokens`) do not fit the model's context.
    ContextLengthExceeded,
    /// The adapter folder cannot be read or does not fit the base.
    AdapterUnusable,
    /// Anything else: the service's fault.
    Internal,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Reply {
    /// The base is loaded: requests are taken from now on.
    Ready {
        model: String,
        /// The model's context, in tokens.
        context: usize,
    },
    /// Request `id` is being answered; its prompt's length in tokens.
    Started { id: String, prompt_tokens: usize },
    /// More of the answer's text.
    Delta { id: String, text: String },
    Done {
        id: String,
        finish_reason: Finish,
        prompt_tokens: usize,
        completion_tokens: usize,
    },
    Error {
        id: String,
        code: ErrorCode,
        message: String,
    },
}

/// How much of `text` can be sent without sending the beginning of a stop
/// sequence that the next tokens may complete: its length, less the
/// longest end of it that starts one of `stops`.
pub fn safe_prefix(text: &str, stops: &[String]) -> usize {
    let mut keep = text.len();
    for s in stops {
        for (i, _) in s.char_indices().skip(1) {
            if text.ends_with(&s[..i]) {
                keep = keep.min(text.len() - i);
            }
        }
    }
    // Never inside a character.
    while !text.is_char_boundary(keep) {
        keep -= 1;
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_read_and_write_as_documented() {
        let r: Request = serde_json::from_str(
            r#"{"op":"generate","id":"a","messages":[{"role":"user","content":"hi"}],"max_tokens":4}"#,
        )
        .unwrap();
        let Request::Generate(g) = r else {
            panic!("not a generate")
        };
        assert_eq!(g.top_p, 1.0);
        assert_eq!(g.temperature, 0.0);
        assert_eq!(g.adapter, None);
        let line = serde_json::to_string(&Reply::Done {
            id: "a".into(),
            finish_reason: Finish::Length,
            prompt_tokens: 3,
            completion_tokens: 4,
        })
        .unwrap();
        assert_eq!(
            line,
            r#"{"event":"done","id":"a","finish_reason":"length","prompt_tokens":3,"completion_tokens":4}"#
        );
    }

    #[test]
    fn text_that_may_start_a_stop_sequence_is_held_back() {
        let stops = vec!["\nUser:".to_owned()];
        assert_eq!(safe_prefix("It is 4.", &stops), 8);
        assert_eq!(safe_prefix("It is 4.\nUs", &stops), 8);
        assert_eq!(safe_prefix("It is 4.\n", &stops), 8);
        assert_eq!(safe_prefix("a\u{fffd}", &[]), 4);
        assert_eq!(safe_prefix("", &stops), 0);
    }
}
