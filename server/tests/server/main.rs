//! Integration tests: the whole router driven with `oneshot`, no socket.
//! Every test runs once on SQLite and, when `HONE_TEST_POSTGRES` names a
//! server (the test script starts one), once more on PostgreSQL.

// Tests fail loudly: unwrapping is the point here.
#![allow(clippy::unwrap_used)]

mod account;
mod authz;
mod authz_api;
mod common;
mod datasets;
mod evaluations;
mod flows;
mod hardening;
mod jobs;
mod keys;
mod lifecycle;
mod limits;
mod migrations;
mod openai;
mod publishing;
mod reviews;
mod scheduling;
mod upload;
