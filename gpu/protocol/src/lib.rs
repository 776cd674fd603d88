//! `hone-protocol`: the job contract that Hone's server, its training
//! engine (`hone-gpu`, run as `hone-train`) and the browser share — the
//! training settings with their ranges and help, `config.json` parsing,
//! the memory estimate, progress events, job specs and outcomes, devices,
//! the evaluation report.
//!
//! **Invariant:** no Burn and no IO (no files, clocks or processes), and it
//! builds for `wasm32-unknown-unknown`, so the browser can link it.

pub mod bootstrap;
pub mod device;
pub mod estimate;
pub mod evaluation;
pub mod event;
pub mod job;
pub mod model_config;
pub mod serve;
pub mod settings;
pub mod train_config;

pub use device::{check_inventory, Device, DeviceKind, LiveFigures};
pub use estimate::{estimate, Estimate};
pub use event::{Cause, ComputeDtype, Event};
pub use job::{ArtifactFile, JobSpec, Outcome};
pub use model_config::{inverse_frequencies, Architecture, ConfigError, ModelConfig, RopeScaling};
pub use settings::{settings, DefaultValue, Kind, Range, Setting};
pub use train_config::{
    LoraConfig, Method, QuantConfig, Schedule, Target, TrainConfig, TrainError,
};
