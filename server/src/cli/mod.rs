//! The `hone` subcommands that work without the web server.

pub mod dataset;
