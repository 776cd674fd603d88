//! A Hugging Face `config.json` read into the one shape the engine uses.
//! The parsing lives in `hone-protocol` (the server and the browser refuse
//! an unsupported model with the same words); it is re-exported here so
//! the engine keeps its old paths.

pub use hone_protocol::model_config::*;
