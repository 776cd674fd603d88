//! The normalised training example (the OpenAI chat `messages` shape) and
//! the rules that turn one raw record of each format into it.

use crate::finding::{quoted, Code, Finding};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// One chat message. Tool and function-call fields are kept as they came.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// 0 excludes an assistant message from the loss.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u8>,
    /// `tool_calls`, `tool_call_id`, `function_call`: sorted, kept verbatim.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Message {
    pub fn new(role: &str, content: impl Into<String>) -> Message {
        Message {
            role: role.into(),
            content: Some(content.into()),
            name: None,
            weight: None,
            extra: BTreeMap::new(),
        }
    }
}

/// One training example in the one shape everything downstream reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Example {
    pub messages: Vec<Message>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
}

impl Example {
    /// The normalised JSONL line (without the newline). Deterministic: the
    /// same example always gives the same bytes.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// All message text, for duplicate and personal-data checks.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for m in &self.messages {
            out.push_str(&m.role);
            out.push('\u{1f}');
            if let Some(c) = &m.content {
                out.push_str(c);
            }
            out.push('\u{1e}');
        }
        out
    }
}

pub const ROLES: [&str; 5] = ["system", "user", "assistant", "tool", "function"];
const MESSAGE_KEYS: [&str; 7] = [
    "role",
    "content",
    "name",
    "weight",
    "tool_calls",
    "tool_call_id",
    "function_call",
];

/// Findings kept per record; the rest are counted ([`Normalised::more`]),
/// so one line of thousands of broken messages cannot hold thousands of
/// findings in memory.
pub const MAX_FINDINGS_PER_RECORD: usize = 100;

/// The outcome of normalising one record: the example if nothing blocks
/// it, and every finding either way: the first
/// [`MAX_FINDINGS_PER_RECORD`] (then a `limit_reached` one) as they are,
/// the rest counted by code.
#[derive(Debug, Default)]
pub struct Normalised {
    pub example: Option<Example>,
    pub findings: Vec<Finding>,
    pub more: BTreeMap<Code, u64>,
}

impl Normalised {
    fn push(&mut self, line: u64, f: Finding) {
        match self.findings.len() {
            n if n < MAX_FINDINGS_PER_RECORD => self.findings.push(f.at(line)),
            MAX_FINDINGS_PER_RECORD => {
                *self.more.entry(f.code).or_insert(0) += 1;
                self.findings.push(
                    Finding::new(
                        Code::LimitReached,
                        format!("Line {line} has more than {MAX_FINDINGS_PER_RECORD} problems; the first {MAX_FINDINGS_PER_RECORD} are listed, and all are counted."),
                        "Fix the ones listed and check the file again to see the rest.",
                    )
                    .at(line),
                );
            }
            _ => *self.more.entry(f.code).or_insert(0) += 1,
        }
    }

    fn blocked(&self) -> bool {
        self.findings.iter().any(Finding::is_error)
            || self
                .more
                .keys()
                .any(|c| c.severity() == crate::Severity::Error)
    }
}

/// The category of a record, from `category` (or `label`, `topic`).
fn category_of(obj: &Map<String, Value>) -> Option<String> {
    ["category", "label", "topic"]
        .iter()
        .find_map(|k| match obj.get(*k) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        })
}

/// OpenAI chat format: `{"messages": [{"role": ..., "content": ...}, ...]}`.
pub fn from_openai(obj: &Map<String, Value>, line: u64) -> Normalised {
    let mut out = Normalised::default();
    let list = match obj.get("messages") {
        None => {
            out.push(line, Finding::new(Code::MessagesMissing, "This example has no `messages` list.", "Put the conversation in a `messages` list: {\"messages\": [{\"role\": \"user\", \"content\": \"…\"}, {\"role\": \"assistant\", \"content\": \"…\"}]}.").field("messages"));
            return out;
        }
        Some(Value::Array(list)) if !list.is_empty() => list,
        Some(_) => {
            out.push(
                line,
                Finding::new(
                    Code::MessagesEmpty,
                    "`messages` is empty or is not a list.",
                    "Give `messages` at least one user message and one assistant reply.",
                )
                .field("messages"),
            );
            return out;
        }
    };
    let mut messages = Vec::with_capacity(list.len());
    for (i, raw) in list.iter().enumerate() {
        let field = |k: &str| format!("messages[{i}].{k}");
        let Value::Object(m) = raw else {
            out.push(
                line,
                Finding::new(
                    Code::MessageNotObject,
                    format!("Message {} is not an object.", i + 1),
                    "Write each message as {\"role\": \"…\", \"content\": \"…\"}.",
                )
                .field(format!("messages[{i}]")),
            );
            continue;
        };
        for k in m.keys() {
            if !MESSAGE_KEYS.contains(&k.as_str()) {
                let k = quoted(k);
                out.push(line, Finding::new(Code::UnknownMessageKey, format!("Message {} has a field `{k}` that chat fine-tuning does not know.", i + 1), "Remove it, or rename it to one of role, content, name, weight, tool_calls.").field(field(&k)));
            }
        }
        let role = match m.get("role") {
            None => {
                out.push(
                    line,
                    Finding::new(
                        Code::MissingRole,
                        format!("Message {} has no `role`.", i + 1),
                        "Add \"role\": \"system\", \"user\" or \"assistant\".",
                    )
                    .field(field("role")),
                );
                continue;
            }
            Some(Value::String(r)) if ROLES.contains(&r.as_str()) => r.clone(),
            Some(other) => {
                let other = quoted(&other.to_string()).into_owned();
                out.push(line, Finding::new(Code::UnknownRole, format!("Message {} has the role {other}, which is not one of system, user, assistant, tool.", i + 1), "Use \"system\", \"user\" or \"assistant\" (spelled exactly, lower case).").field(field("role")));
                continue;
            }
        };
        let calls_tool = m.contains_key("tool_calls") || m.contains_key("function_call");
        let content = match m.get("content") {
            Some(Value::String(s)) => {
                if s.trim().is_empty() && !calls_tool {
                    out.push(
                        line,
                        Finding::new(
                            Code::EmptyContent,
                            format!("The {role} message {} is empty.", i + 1),
                            "Write the text of the message, or remove the message.",
                        )
                        .field(field("content")),
                    );
                }
                Some(s.clone())
            }
            None | Some(Value::Null) if calls_tool => None,
            None | Some(Value::Null) => {
                out.push(
                    line,
                    Finding::new(
                        Code::MissingContent,
                        format!("The {role} message {} has no `content`.", i + 1),
                        "Add \"content\": \"…\" with the text of the message.",
                    )
                    .field(field("content")),
                );
                None
            }
            Some(_) => {
                out.push(
                    line,
                    Finding::new(
                        Code::ContentNotString,
                        format!("The content of message {} is not text.", i + 1),
                        "Write the content as a string in quotes, e.g. \"content\": \"Hello\".",
                    )
                    .field(field("content")),
                );
                None
            }
        };
        let name = match m.get("name") {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        let weight = match m.get("weight") {
            None => None,
            Some(w) if role == "assistant" && (w == 0 || w == 1) => w.as_u64().map(|w| w as u8),
            Some(_) => {
                out.push(line, Finding::new(Code::InvalidWeight, format!("Message {} has a `weight` that is not 0 or 1 on an assistant message.", i + 1), "Use \"weight\": 0 (do not learn from this reply) or 1, and only on assistant messages.").field(field("weight")));
                None
            }
        };
        let extra = m
            .iter()
            .filter(|(k, _)| matches!(k.as_str(), "tool_calls" | "tool_call_id" | "function_call"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        messages.push(Message {
            role,
            content,
            name,
            weight,
            extra,
        });
    }
    finish(out, messages, category_of(obj), line)
}

/// Role order and the presence of an assistant reply, shared by all formats.
fn finish(
    mut out: Normalised,
    messages: Vec<Message>,
    category: Option<String>,
    line: u64,
) -> Normalised {
    if !messages.is_empty() && !messages.iter().any(|m| m.role == "assistant") {
        out.push(line, Finding::new(Code::NoAssistant, "This example has no assistant message, so there is nothing to learn.", "Add the reply the model should give as {\"role\": \"assistant\", \"content\": \"…\"}.").field("messages"));
    }
    if let Some(i) = messages.iter().skip(1).position(|m| m.role == "system") {
        out.push(
            line,
            Finding::new(
                Code::SystemNotFirst,
                format!(
                    "Message {} is a system message, but only the first message may be one.",
                    i + 2
                ),
                "Move the system message to the start, or merge it into the first one.",
            )
            .field(format!("messages[{}]", i + 1)),
        );
    }
    let turns: Vec<&Message> = messages
        .iter()
        .filter(|m| m.role == "user" || m.role == "assistant")
        .collect();
    if turns.windows(2).any(|w| w[0].role == w[1].role) {
        out.push(
            line,
            Finding::new(
                Code::RolesNotAlternating,
                "Two user or two assistant messages follow each other.",
                "Alternate user and assistant messages; merge consecutive ones.",
            )
            .field("messages"),
        );
    }
    if let Some(last) = messages.last() {
        if last.role != "assistant" && messages.iter().any(|m| m.role == "assistant") {
            out.push(line, Finding::new(Code::LastNotAssistant, "The conversation does not end with an assistant reply; the last turn teaches nothing.", "End each example with the assistant's reply, or remove the trailing messages.").field("messages"));
        }
    }
    if !out.blocked() {
        out.example = Some(Example { messages, category });
    }
    out
}

fn string_field<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    required: bool,
    line: u64,
    out: &mut Normalised,
) -> Option<&'a str> {
    match obj.get(key) {
        Some(Value::String(s)) => {
            if required && s.trim().is_empty() {
                out.push(
                    line,
                    Finding::new(
                        Code::EmptyContent,
                        format!("`{key}` is empty."),
                        format!("Write the {key} text."),
                    )
                    .field(key),
                );
            }
            Some(s)
        }
        None | Some(Value::Null) => {
            if required {
                out.push(
                    line,
                    Finding::new(
                        Code::MissingField,
                        format!("This example has no `{key}`."),
                        format!("Add \"{key}\": \"…\"."),
                    )
                    .field(key),
                );
            }
            None
        }
        Some(_) => {
            out.push(
                line,
                Finding::new(
                    Code::FieldNotString,
                    format!("`{key}` is not text."),
                    format!("Write \"{key}\" as a string in quotes."),
                )
                .field(key),
            );
            None
        }
    }
}

/// Alpaca: `instruction`, optional `input`, `output`, optional `system`.
pub fn from_alpaca(obj: &Map<String, Value>, line: u64) -> Normalised {
    let mut out = Normalised::default();
    let instruction = string_field(obj, "instruction", true, line, &mut out);
    let input = string_field(obj, "input", false, line, &mut out);
    let output = string_field(obj, "output", true, line, &mut out);
    let system = string_field(obj, "system", false, line, &mut out);
    for k in obj.keys() {
        if !matches!(
            k.as_str(),
            "instruction" | "input" | "output" | "system" | "category" | "label" | "topic"
        ) {
            let k = quoted(k);
            out.push(
                line,
                Finding::new(
                    Code::UnknownField,
                    format!("The field `{k}` is not part of the Alpaca format and is ignored."),
                    "Remove it, or leave it: it is not used for training.",
                )
                .field(k),
            );
        }
    }
    let (Some(instruction), Some(output)) = (instruction, output) else {
        return out;
    };
    let mut messages = Vec::with_capacity(3);
    if let Some(s) = system.filter(|s| !s.trim().is_empty()) {
        messages.push(Message::new("system", s));
    }
    let prompt = match input.filter(|s| !s.trim().is_empty()) {
        Some(input) => format!("{instruction}\n\n{input}"),
        None => instruction.to_owned(),
    };
    messages.push(Message::new("user", prompt));
    messages.push(Message::new("assistant", output));
    finish(out, messages, category_of(obj), line)
}

/// ShareGPT: `conversations` of `{"from": "human"|"gpt"|"system", "value": …}`.
pub fn from_sharegpt(obj: &Map<String, Value>, line: u64) -> Normalised {
    let mut out = Normalised::default();
    let list = match obj.get("conversations") {
        Some(Value::Array(list)) if !list.is_empty() => list,
        Some(_) => {
            out.push(
                line,
                Finding::new(
                    Code::MessagesEmpty,
                    "`conversations` is empty or is not a list.",
                    "Give `conversations` at least one human and one gpt turn.",
                )
                .field("conversations"),
            );
            return out;
        }
        None => {
            out.push(line, Finding::new(Code::MessagesMissing, "This example has no `conversations` list.", "Put the turns in a `conversations` list of {\"from\": \"human\"|\"gpt\", \"value\": \"…\"}.").field("conversations"));
            return out;
        }
    };
    let mut messages = Vec::with_capacity(list.len());
    for (i, raw) in list.iter().enumerate() {
        let Value::Object(m) = raw else {
            out.push(
                line,
                Finding::new(
                    Code::MessageNotObject,
                    format!("Turn {} is not an object.", i + 1),
                    "Write each turn as {\"from\": \"human\", \"value\": \"…\"}.",
                )
                .field(format!("conversations[{i}]")),
            );
            continue;
        };
        let role = match m.get("from").and_then(Value::as_str) {
            Some("human" | "user") => "user",
            Some("gpt" | "assistant") => "assistant",
            Some("system") => "system",
            Some("tool" | "observation" | "function_response") => "tool",
            None => {
                out.push(
                    line,
                    Finding::new(
                        Code::MissingRole,
                        format!("Turn {} has no `from`.", i + 1),
                        "Add \"from\": \"human\" or \"gpt\".",
                    )
                    .field(format!("conversations[{i}].from")),
                );
                continue;
            }
            Some(other) => {
                let other = quoted(other);
                out.push(
                    line,
                    Finding::new(
                        Code::UnknownRole,
                        format!(
                            "Turn {} is from \"{other}\", which is not human, gpt or system.",
                            i + 1
                        ),
                        "Use \"from\": \"human\", \"gpt\" or \"system\".",
                    )
                    .field(format!("conversations[{i}].from")),
                );
                continue;
            }
        };
        match m.get("value") {
            Some(Value::String(v)) => {
                if v.trim().is_empty() {
                    out.push(
                        line,
                        Finding::new(
                            Code::EmptyContent,
                            format!("Turn {} is empty.", i + 1),
                            "Write the text of the turn, or remove it.",
                        )
                        .field(format!("conversations[{i}].value")),
                    );
                }
                messages.push(Message::new(role, v.clone()));
            }
            None => out.push(
                line,
                Finding::new(
                    Code::MissingContent,
                    format!("Turn {} has no `value`.", i + 1),
                    "Add \"value\": \"…\" with the text.",
                )
                .field(format!("conversations[{i}].value")),
            ),
            Some(_) => out.push(
                line,
                Finding::new(
                    Code::ContentNotString,
                    format!("The value of turn {} is not text.", i + 1),
                    "Write \"value\" as a string in quotes.",
                )
                .field(format!("conversations[{i}].value")),
            ),
        }
    }
    finish(out, messages, category_of(obj), line)
}

/// A CSV/TSV row with its prompt, response and optional category.
pub fn from_columns(prompt: &str, response: &str, category: Option<&str>, line: u64) -> Normalised {
    let mut out = Normalised::default();
    if prompt.trim().is_empty() {
        out.push(
            line,
            Finding::new(
                Code::EmptyContent,
                "The prompt cell is empty.",
                "Fill in the prompt, or delete the row.",
            )
            .field("prompt"),
        );
    }
    if response.trim().is_empty() {
        out.push(
            line,
            Finding::new(
                Code::EmptyContent,
                "The response cell is empty.",
                "Fill in the response, or delete the row.",
            )
            .field("response"),
        );
    }
    let messages = vec![
        Message::new("user", prompt),
        Message::new("assistant", response),
    ];
    let category = category
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned);
    finish(out, messages, category, line)
}
