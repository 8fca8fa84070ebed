//! Shared code for the cross-crate integration tests, one file per role:
//!
//! - [`logs`]: the workspace's log capture (`test_support::logs`, Twisted's
//!   log observers and trial's `flushLoggedErrors`), re-exported; it also
//!   sees events from a pool's worker threads;
//! - [`harness`]: unique names, in-chain assertions, temporary directories,
//!   and the bounded reactor runs of `test_support::reactor` (a safety net
//!   fails a test that would hang; waiting on a
//!   [`FakeReactor`](reactor::testing::FakeReactor));
//! - [`backend`]: the [`Backend`](backend::Backend) trait, Twisted's
//!   `DBTestConnector` (flags, pool arguments, `startDB`/`stopDB`), and its
//!   SQLite3 implementation;
//! - [`pg`]: the PostgreSQL server of the tests and Twisted's
//!   `PsycopgConnector`; [`mysql`]: the same for MySQL/MariaDB;
//! - [`direct`]: helpers for tests on DB-API connections outside any pool
//!   (a `sqlite3` connection, rows or error of a statement, counts, an
//!   error shown with its sources);
//! - [`fakes`]: DB-API modules for tests: a fake that fails on demand (the
//!   fakes of `test_adbapi.py`) and a spy that wraps `sqlite3` and records
//!   every call with the calling thread;
//! - [`hostile`]: the hostile-input table runner of the PostgreSQL and
//!   MySQL hostile tests;
//! - [`suite`]: Twisted's `ADBAPITestBase.test_pool` and
//!   `ReconnectTestBase.test_pool`, written once against `&dyn Backend` so
//!   any database backend can run them;
//! - [`pools`]: small helpers the pool test files share (SQLite pools on
//!   real and fake reactors, integer rows, outcome rendering);
//! - [`chaos`]: the chaos harness of the PostgreSQL and MySQL chaos tests
//!   (inserts under killed sessions and a cancel storm), the killer a
//!   parameter;
//! - [`faults`]: a fault-injection DB-API module for the fault and load
//!   tests;
//! - [`model`]: per-job fault plans over [`faults`] for the model-based
//!   test of the pool (`tests/pool_model.rs`);
//! - [`readme`]: the README's code blocks, run as doctests.

pub mod backend;
pub mod chaos;
pub mod direct;
pub mod fakes;
pub mod faults;
pub mod harness;
pub mod hostile;
pub mod model;
pub mod mysql;
pub mod pg;
pub mod pools;
pub mod suite;

pub use test_support::logs;

/// The project's README.md: every Rust code block in it is compiled and run
/// as a doctest of this crate, so the README cannot rot.
#[doc = include_str!("../../README.md")]
pub mod readme {}
