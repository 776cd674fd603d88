//! The `hone` subcommands that work without the web server.

pub mod api_key;
pub mod dataset;
