//! Integration tests: the whole router driven with `oneshot`, no socket.
//! Every test runs once on SQLite and, when `HONE_TEST_POSTGRES` names a
//! server (the test script starts one), once more on PostgreSQL.

mod authz;
mod common;
mod flows;
mod upload;
