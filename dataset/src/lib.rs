//! `hone-dataset`: the one definition of a valid training example.
//!
//! Formats (OpenAI chat JSONL, Alpaca, ShareGPT, CSV/TSV) are detected and
//! normalised to the OpenAI `messages` shape; every problem becomes a
//! [`Finding`] with a line, a plain-language message and a fix; statistics,
//! duplicate and personal-data checks and a seeded train/validation/test
//! split follow. Pure Rust with no IO and no clock: the browser (WASM), the
//! server and the trainer run exactly this code, so they agree byte for byte.

pub mod check;
pub mod example;
pub mod finding;
pub mod parse;
pub mod pii;
pub mod similar;
pub mod split;
pub mod stats;
#[cfg(feature = "tokens")]
pub mod tokens;
mod work;

pub use check::{check_bytes, Checker, Measure, Options, Report, SplitWriter};
pub use example::{Example, Message};
pub use finding::{Code, Finding, Severity};
pub use parse::{Columns, Format, Shape};
pub use split::{Ratios, Split};
