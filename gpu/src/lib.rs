//! `hone-gpu`: the training engine. Core modules take tensors and configs;
//! file and process IO stays at the edge (loading a model folder, the CLI).
//!
//! Built so far: reading a Hugging Face model's `config.json` for the Llama
//! family (`config`), its safetensors weights (`safetensors`), the decoder's
//! forward pass (`model`) and choosing the compute device (`device`).
//!
//! The plain data a job is described by — `config.json` parsing, the
//! training settings, the memory estimate, the events — lives in
//! `hone-protocol`, shared with the server and the browser, and is
//! re-exported at its old paths (`config`, `train`, `estimate`).

pub mod checkpoint;
pub mod config;
pub mod data;
pub mod device;
pub mod estimate;
pub mod evaluate;
pub mod export;
pub mod generate;
pub mod gguf;
#[cfg(any(feature = "cuda", feature = "kernel-wgpu"))]
pub mod kernel;
pub mod model;
pub mod nf4;
mod nf4_tables;
pub mod qlora;
pub mod safetensors;
pub mod serve;
pub mod train;

pub use config::{ConfigError, ModelConfig, RopeScaling};
