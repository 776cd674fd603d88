//! `POST /v1/chat/completions`: an approved fine-tuned model of the key's
//! project (its `ft:…` name), or a base model, answers a conversation, as
//! OpenAI's chat API answers: the whole message, or Server-Sent Events
//! chunks ending with `data: [DONE]`. The model's own chat template
//! renders the messages (in the inference service, [`crate::serving`]).
//!
//! Taken: `model`, `messages` (string content, or an array of text
//! parts), `temperature`, `top_p`, `max_tokens` / `max_completion_tokens`,
//! `stop` (a string or up to 4), `seed`, `n` (1 only), `stream`,
//! `stream_options.include_usage`. Other fields are ignored, as a server
//! that has no such feature would (tools, logprobs, response_format…).

use super::auth::ApiCaller;
use super::error::{ApiError, ApiResult};
use crate::entity::job::{self, JobKind, StoredState};
use crate::entity::model_version;
use crate::policy::Action;
use crate::serving::Target;
use crate::state::{now, Services};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use hone_protocol::serve::{ChatMessage, ErrorCode, Finish, Generate, Reply};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{json, Value};
use std::sync::Arc;

/// A request's parts Hone uses.
struct Chat {
    model: String,
    generate: Generate,
    stream: bool,
    include_usage: bool,
}

fn parse(body: &[u8]) -> ApiResult<Chat> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("The body is not JSON: {e}"),
        )
    })?;
    let model = v["model"]
        .as_str()
        .filter(|m| !m.is_empty())
        .ok_or_else(|| ApiError::bad_request("model", "model is required"))?
        .to_owned();
    let raw = v["messages"]
        .as_array()
        .filter(|m| !m.is_empty())
        .ok_or_else(|| ApiError::bad_request("messages", "messages must be a non-empty array"))?;
    let mut messages = Vec::with_capacity(raw.len());
    for (i, m) in raw.iter().enumerate() {
        let role = m["role"]
            .as_str()
            .filter(|r| matches!(*r, "system" | "developer" | "user" | "assistant"))
            .ok_or_else(|| {
                ApiError::bad_request(
                    &format!("messages[{i}].role"),
                    "role must be system, developer, user or assistant",
                )
            })?;
        let content = match &m["content"] {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            Value::Array(parts) => {
                let mut text = String::new();
                for (j, p) in parts.iter().enumerate() {
                    match (p["type"].as_str(), p["text"].as_str()) {
                        (Some("text"), Some(t)) => text.push_str(t),
                        _ => {
                            return Err(ApiError::bad_request(
                                &format!("messages[{i}].content[{j}]"),
                                "only text parts are taken: this model reads text",
                            ))
                        }
                    }
                }
                Some(text)
            }
            _ => {
                return Err(ApiError::bad_request(
                    &format!("messages[{i}].content"),
                    "content must be a string or an array of text parts",
                ))
            }
        };
        // OpenAI's `developer` is the newer name of `system`.
        let role = if role == "developer" { "system" } else { role };
        messages.push(ChatMessage {
            role: role.to_owned(),
            content,
        });
    }
    let number = |k: &str, lo: f64, hi: f64, default: f64| -> ApiResult<f64> {
        match &v[k] {
            Value::Null => Ok(default),
            n => n.as_f64().filter(|x| (lo..=hi).contains(x)).ok_or_else(|| {
                ApiError::bad_request(k, format!("{k} must be a number from {lo} to {hi}"))
            }),
        }
    };
    let temperature = number("temperature", 0.0, 2.0, 1.0)? as f32;
    let top_p = number("top_p", 0.0, 1.0, 1.0)? as f32;
    if top_p <= 0.0 {
        return Err(ApiError::bad_request("top_p", "top_p must be above 0"));
    }
    let max_tokens = match (&v["max_completion_tokens"], &v["max_tokens"]) {
        (Value::Null, Value::Null) => None,
        (Value::Null, m) | (m, _) => Some(m.as_u64().filter(|n| *n >= 1).ok_or_else(|| {
            ApiError::bad_request(
                "max_tokens",
                "max_tokens must be a whole number of at least 1",
            )
        })? as usize),
    };
    let stop = match &v["stop"] {
        Value::Null => Vec::new(),
        Value::String(s) => vec![s.clone()],
        Value::Array(a) if a.len() <= 4 && a.iter().all(Value::is_string) => a
            .iter()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .filter(|s| !s.is_empty())
            .collect(),
        _ => {
            return Err(ApiError::bad_request(
                "stop",
                "stop must be a string or an array of up to 4 strings",
            ))
        }
    };
    if !matches!(v["n"].as_u64(), None | Some(1)) && !v["n"].is_null() {
        return Err(ApiError::bad_request(
            "n",
            "n must be 1: Hone answers once per request",
        ));
    }
    let seed = match &v["seed"] {
        Value::Null => 0,
        s => s
            .as_i64()
            .ok_or_else(|| ApiError::bad_request("seed", "seed must be a whole number"))?
            as u64,
    };
    Ok(Chat {
        model,
        generate: Generate {
            id: String::new(),
            adapter: None,
            messages,
            max_tokens,
            temperature,
            top_p,
            seed,
            stop,
        },
        stream: v["stream"].as_bool().unwrap_or(false),
        include_usage: v["stream_options"]["include_usage"]
            .as_bool()
            .unwrap_or(false),
    })
}

/// What `model` names for the key's project: an approved version's
/// training job, or a base model.
async fn target_of(s: &Services, c: &ApiCaller, model: &str) -> ApiResult<Target> {
    let unknown = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "model_not_found",
            format!("The model `{model}` does not exist, or is not approved for use: /v1/models lists those this key may use."),
        )
        .with_param("model")
    };
    if crate::models::names(&s.config.models_dir)
        .iter()
        .any(|n| n == model)
    {
        return Ok(Target {
            base: s.base_folder(model).await?,
            adapter: None,
        });
    }
    let Some(j) = job::Entity::find()
        .filter(job::Column::ProjectId.eq(c.project.id))
        .filter(job::Column::Kind.eq(JobKind::Train))
        .filter(job::Column::State.eq(StoredState::Succeeded))
        .filter(job::Column::DeletedAt.is_null())
        .filter(job::Column::FineTunedModel.eq(model))
        .one(&s.db)
        .await?
    else {
        return Err(unknown());
    };
    let Some(v) = model_version::Entity::find()
        .filter(model_version::Column::TrainJobId.eq(j.id))
        .filter(model_version::Column::DeletedAt.is_null())
        .one(&s.db)
        .await?
    else {
        return Err(unknown());
    };
    if !s.approved(&v).await? {
        return Err(unknown());
    }
    Ok(s.serving_target(&j).await?)
}

fn refusal(code: ErrorCode, message: String) -> ApiError {
    match code {
        ErrorCode::ContextLengthExceeded => {
            ApiError::new(StatusCode::BAD_REQUEST, "context_length_exceeded", message)
                .with_param("messages")
        }
        ErrorCode::InvalidRequest => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_value", message).with_param("messages")
        }
        ErrorCode::AdapterUnusable | ErrorCode::Internal => ApiError::from_internal(message),
    }
}

fn finish(f: Finish) -> &'static str {
    match f {
        Finish::Length => "length",
        Finish::Stop | Finish::Cancelled => "stop",
    }
}

fn usage(prompt: usize, completion: usize) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    })
}

/// `POST /v1/chat/completions`.
#[tracing::instrument(skip_all, fields(project = c.project.id))]
pub async fn create(
    State(s): State<Arc<Services>>,
    c: ApiCaller,
    body: Bytes,
) -> ApiResult<Response> {
    s.project_with(&c.user, c.project.id, Action::Read, "that project")
        .await?;
    let chat = parse(&body)?;
    let cap = s.config.chat_max_tokens;
    match chat.generate.max_tokens {
        Some(m) if m as u64 > cap => {
            return Err(ApiError::bad_request(
                "max_tokens",
                format!("max_tokens is {m}; this server answers with at most {cap} new tokens"),
            ))
        }
        // Unset: up to the context's end, which bounds it.
        _ => {}
    }
    let started_ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    if let Err(wait) = s.serving.limits.admit(
        c.key.id,
        started_ms as i64,
        s.config.chat_requests_per_minute,
        s.config.chat_tokens_per_minute,
    ) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
            format!(
                "This API key has made {} requests or used {} tokens this minute, as many as this server allows: try again in {wait} s.",
                s.config.chat_requests_per_minute, s.config.chat_tokens_per_minute
            ),
        )
        .with_retry_after(wait));
    }
    let target = target_of(&s, &c, &chat.model).await?;
    let mut answering = match s.generate(&target, chat.generate).await {
        Ok(a) => a,
        Err(crate::error::Error::App(hone_app::api::AppError::Busy(message))) => {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_exceeded",
                message,
            ))
        }
        Err(e) => return Err(e.into()),
    };
    // The first reply says whether it runs at all.
    let prompt_tokens = match answering.next().await {
        Some(Reply::Started { prompt_tokens, .. }) => prompt_tokens,
        Some(Reply::Error { code, message, .. }) => return Err(refusal(code, message)),
        _ => {
            return Err(ApiError::from_internal(
                "the inference service answered nothing",
            ))
        }
    };
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let created = now();
    let key = c.key.id;
    let spend = {
        let s = s.clone();
        move |tokens: usize| {
            let now_ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
            s.serving.limits.spend(key, now_ms as i64, tokens as u64);
        }
    };
    tracing::info!(user = %c.user.username, key = c.key.id, model = %chat.model, stream = chat.stream, "chat completion");
    if !chat.stream {
        let mut text = String::new();
        loop {
            match answering.next().await {
                Some(Reply::Delta { text: t, .. }) => text.push_str(&t),
                Some(Reply::Done {
                    finish_reason,
                    completion_tokens,
                    ..
                }) => {
                    spend(prompt_tokens + completion_tokens);
                    return Ok(axum::Json(json!({
                        "id": id,
                        "object": "chat.completion",
                        "created": created,
                        "model": chat.model,
                        "choices": [{
                            "index": 0,
                            "message": {"role": "assistant", "content": text, "refusal": null},
                            "logprobs": null,
                            "finish_reason": finish(finish_reason),
                        }],
                        "usage": usage(prompt_tokens, completion_tokens),
                        "system_fingerprint": null,
                    }))
                    .into_response());
                }
                Some(Reply::Error { message, .. }) => return Err(ApiError::from_internal(message)),
                Some(_) => {}
                None => return Err(ApiError::from_internal("the inference service stopped")),
            }
        }
    }
    // One chunk's object; `usage` is null on each but the last when asked for.
    let chunk = move |delta: Value, finish_reason: Value| -> Value {
        let mut c = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": chat.model,
            "system_fingerprint": null,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
        });
        if chat.include_usage {
            c["usage"] = Value::Null;
        }
        c
    };
    let frame = |v: &Value| format!("data: {v}\n\n");
    let first = Bytes::from(frame(&chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )));
    // Dropping the stream (the client went away) drops `answering`, which
    // cancels the generation.
    let stream = futures::stream::unfold(
        (Some(answering), Some(first), chunk, spend),
        move |(answering, pending, chunk, spend)| async move {
            if let Some(b) = pending {
                return Some((
                    Ok::<Bytes, std::convert::Infallible>(b),
                    (answering, None, chunk, spend),
                ));
            }
            let mut answering = answering?;
            loop {
                match answering.next().await {
                    Some(Reply::Delta { text, .. }) => {
                        let b = Bytes::from(frame(&chunk(json!({"content": text}), Value::Null)));
                        return Some((Ok(b), (Some(answering), None, chunk, spend)));
                    }
                    Some(Reply::Done {
                        finish_reason,
                        completion_tokens,
                        ..
                    }) => {
                        spend(prompt_tokens + completion_tokens);
                        let done = chunk(json!({}), json!(finish(finish_reason)));
                        let mut out = frame(&done);
                        if chat.include_usage {
                            let mut last = done;
                            last["choices"] = json!([]);
                            last["usage"] = usage(prompt_tokens, completion_tokens);
                            out.push_str(&frame(&last));
                        }
                        out.push_str("data: [DONE]\n\n");
                        return Some((Ok(Bytes::from(out)), (None, None, chunk, spend)));
                    }
                    Some(Reply::Error { message, .. }) => {
                        tracing::error!(%message, "a streamed answer failed");
                        let e = json!({"error": {"message": "The answer stopped: the inference service failed.", "type": "server_error", "param": null, "code": null}});
                        let out = format!("data: {e}\n\ndata: [DONE]\n\n");
                        return Some((Ok(Bytes::from(out)), (None, None, chunk, spend)));
                    }
                    Some(_) => {}
                    None => return None,
                }
            }
        },
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_as_openai_sends_them_and_bad_ones_name_the_field() {
        let c = parse(br#"{"model":"m","messages":[{"role":"developer","content":[{"type":"text","text":"Be brief."}]},{"role":"user","content":"Hi"}],"max_completion_tokens":5,"stop":"\n","stream":true,"stream_options":{"include_usage":true},"logit_bias":{}}"#).unwrap();
        assert_eq!(c.generate.messages[0].role, "system");
        assert_eq!(c.generate.messages[0].content.as_deref(), Some("Be brief."));
        assert_eq!(c.generate.max_tokens, Some(5));
        assert_eq!(c.generate.stop, vec!["\n".to_owned()]);
        assert_eq!(c.generate.temperature, 1.0);
        assert!(c.stream && c.include_usage);
        for (body, param) in [
            (r#"{"messages":[{"role":"user","content":"x"}]}"#, "model"),
            (r#"{"model":"m","messages":[]}"#, "messages"),
            (
                r#"{"model":"m","messages":[{"role":"robot","content":"x"}]}"#,
                "messages[0].role",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":3}"#,
                "temperature",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"n":2}"#,
                "n",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":0}"#,
                "max_tokens",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stop":["a","b","c","d","e"]}"#,
                "stop",
            ),
        ] {
            let e = parse(body.as_bytes()).err().unwrap();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(e.param.as_deref(), Some(param), "{body}");
        }
    }
}
