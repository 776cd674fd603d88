//! The inference service behind `hone-train serve`: one base model held
//! for the service's life, LoRA adapters applied at run time (the base's
//! weights shared, never merged) and kept least recently used first out
//! within a budget, each answer streamed as it is generated with the
//! model's key/value cache. The protocol is [`hone_protocol::serve`].
//!
//! Requests are answered one at a time in arrival order; a `cancel` for
//! the one being answered stops it at the next token, one for a queued
//! request drops it. The service ends when its input closes, after the
//! answer under way.

use crate::generate::{stream_text, Ended, Sampling};
use crate::model::{LoraConfig, Model};
use crate::qlora::QuantBackend;
use hone_dataset::example::{Example, Message};
use hone_dataset::tokens::ChatTokenizer;
use hone_protocol::serve::{ErrorCode, Finish, Generate, Reply, Request};
use hone_protocol::ModelConfig;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, TryRecvError};

/// Reads an adapter folder's settings (`adapter_config.json`).
pub type LoraOf = dyn Fn(&Path) -> Result<LoraConfig, String>;

/// One adapter held, with its size (its file's) and when it was last used.
struct Held<B: QuantBackend> {
    dir: PathBuf,
    model: Model<B>,
    bytes: u64,
    used: u64,
}

/// The service's state: the base, the adapters held, the queue.
pub struct Service<'a, B: QuantBackend> {
    pub base: Model<B>,
    pub config: ModelConfig,
    pub tokenizer: ChatTokenizer,
    pub device: B::Device,
    /// The most adapter bytes held at once (at least one is always held).
    pub budget: u64,
    pub lora_of: &'a LoraOf,
    held: Vec<Held<B>>,
    clock: u64,
    queue: VecDeque<Generate>,
}

impl<'a, B: QuantBackend> Service<'a, B> {
    pub fn new(
        base: Model<B>,
        config: ModelConfig,
        tokenizer: ChatTokenizer,
        device: B::Device,
        budget: u64,
        lora_of: &'a LoraOf,
    ) -> Self {
        Service {
            base,
            config,
            tokenizer,
            device,
            budget,
            lora_of,
            held: Vec::new(),
            clock: 0,
            queue: VecDeque::new(),
        }
    }

    /// Adapter folders held now, most recently used first (for tests and
    /// the log).
    pub fn held(&self) -> Vec<PathBuf> {
        let mut h: Vec<_> = self.held.iter().collect();
        h.sort_by_key(|h| std::cmp::Reverse(h.used));
        h.into_iter().map(|h| h.dir.clone()).collect()
    }

    /// Answers requests from `input` until it closes, writing replies with
    /// `out`.
    pub fn run(&mut self, input: &Receiver<Request>, out: &mut dyn FnMut(&Reply)) {
        loop {
            let next = match self.queue.pop_front() {
                Some(g) => g,
                None => match input.recv() {
                    Ok(Request::Generate(g)) => g,
                    Ok(Request::Cancel { id }) => {
                        // Nothing of it is left here: it ended already.
                        tracing::debug!(%id, "cancel for a request that is not here");
                        continue;
                    }
                    Err(_) => return,
                },
            };
            self.answer(next, input, out);
        }
    }

    /// Where the model for `adapter` is: the base (`None`), or the base
    /// with the adapter among those held (loaded on first use, the least
    /// recently used dropped while over the budget).
    fn ensure(&mut self, adapter: Option<&Path>) -> Result<Option<usize>, String> {
        let Some(dir) = adapter else {
            return Ok(None);
        };
        self.clock += 1;
        let now = self.clock;
        if let Some(i) = self.held.iter().position(|h| h.dir == dir) {
            self.held[i].used = now;
            return Ok(Some(i));
        }
        let lora = (self.lora_of)(dir)?;
        let bytes = std::fs::metadata(dir.join("adapter_model.safetensors"))
            .map(|m| m.len())
            .map_err(|e| format!("{}: {e}", dir.join("adapter_model.safetensors").display()))?;
        let model = crate::export::load_adapter(self.base.clone(), &lora, dir, &self.device)
            .map_err(|e| e.to_string())?;
        while !self.held.is_empty()
            && self.held.iter().map(|h| h.bytes).sum::<u64>() + bytes > self.budget
        {
            let (i, _) = self
                .held
                .iter()
                .enumerate()
                .min_by_key(|(_, h)| h.used)
                .unwrap_or((0, &self.held[0]));
            let gone = self.held.remove(i);
            tracing::info!(adapter = %gone.dir.display(), "adapter dropped (least recently used)");
        }
        tracing::info!(adapter = %dir.display(), bytes, "adapter loaded");
        self.held.push(Held {
            dir: dir.to_path_buf(),
            model,
            bytes,
            used: now,
        });
        Ok(Some(self.held.len() - 1))
    }

    fn answer(&mut self, g: Generate, input: &Receiver<Request>, out: &mut dyn FnMut(&Reply)) {
        let error = |code, message: String| Reply::Error {
            id: g.id.clone(),
            code,
            message,
        };
        if !((0.0..=2.0).contains(&g.temperature) && g.top_p > 0.0 && g.top_p <= 1.0) {
            out(&error(
                ErrorCode::InvalidRequest,
                "temperature must be between 0 and 2 and top_p above 0 and at most 1".into(),
            ));
            return;
        }
        let example = Example {
            messages: g
                .messages
                .iter()
                .map(|m| Message {
                    role: m.role.clone(),
                    content: m.content.clone(),
                    name: None,
                    weight: None,
                    extra: Default::default(),
                })
                .collect(),
            category: None,
        };
        let prompt = match self
            .tokenizer
            .render_prompt(&example)
            .and_then(|text| self.tokenizer.encode_text(&text))
        {
            Ok(enc) => enc.get_ids().to_vec(),
            Err(e) => {
                out(&error(
                    ErrorCode::InvalidRequest,
                    format!("the model's chat template cannot render these messages: {e}"),
                ));
                return;
            }
        };
        let context = self.config.max_position_embeddings;
        let room = context.saturating_sub(prompt.len());
        let max = match g.max_tokens {
            Some(m) if prompt.len() + m > context => {
                out(&error(
                    ErrorCode::ContextLengthExceeded,
                    format!(
                        "This model's context is {context} tokens; the messages take {} and max_tokens asks for {m} more. Shorten the messages or ask for fewer tokens.",
                        prompt.len()
                    ),
                ));
                return;
            }
            Some(m) => m,
            None if room == 0 => {
                out(&error(
                    ErrorCode::ContextLengthExceeded,
                    format!(
                        "This model's context is {context} tokens; the messages take {}. Shorten them.",
                        prompt.len()
                    ),
                ));
                return;
            }
            None => room,
        };
        let sampling = Sampling {
            max_new_tokens: max,
            temperature: g.temperature,
            top_p: g.top_p,
            stop_ids: self.config.eos_token_ids.clone(),
            seed: g.seed,
        };
        let id = g.id.clone();
        let which = match self.ensure(g.adapter.as_deref()) {
            Ok(w) => w,
            Err(e) => {
                out(&error(
                    ErrorCode::AdapterUnusable,
                    format!("the adapter cannot be used with this base: {e}"),
                ));
                return;
            }
        };
        let model = match which {
            None => &self.base,
            Some(i) => &self.held[i].model,
        };
        out(&Reply::Started {
            id: id.clone(),
            prompt_tokens: prompt.len(),
        });
        let mut queue = Vec::new();
        let mut cancels = Vec::new();
        let mut cancelled = false;
        let result = stream_text(
            model,
            &self.tokenizer,
            &prompt,
            &sampling,
            &g.stop,
            &self.device,
            &mut |text| {
                // Requests that came meanwhile: a cancel of this one stops
                // it; the others wait their turn.
                loop {
                    match input.try_recv() {
                        Ok(Request::Cancel { id: c }) if c == id => cancelled = true,
                        Ok(Request::Cancel { id: c }) => cancels.push(c),
                        Ok(Request::Generate(q)) => queue.push(q),
                        Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                    }
                }
                if cancelled {
                    return false;
                }
                out(&Reply::Delta {
                    id: id.clone(),
                    text: text.to_owned(),
                });
                true
            },
        );
        self.queue.extend(queue);
        // Queued requests cancelled meanwhile: dropped, and said so.
        for c in cancels {
            if let Some(i) = self.queue.iter().position(|q| q.id == c) {
                self.queue.remove(i);
                out(&Reply::Done {
                    id: c,
                    finish_reason: Finish::Cancelled,
                    prompt_tokens: 0,
                    completion_tokens: 0,
                });
            }
        }
        match result {
            Ok((ended, tokens)) => out(&Reply::Done {
                id,
                finish_reason: match ended {
                    Ended::Stop => Finish::Stop,
                    Ended::Length => Finish::Length,
                    Ended::Cancelled => Finish::Cancelled,
                },
                prompt_tokens: prompt.len(),
                completion_tokens: tokens,
            }),
            Err(e) => out(&error(ErrorCode::Internal, e)),
        }
    }
}
