//! Test support shared by every crate's tests (a `publish = false`
//! workspace crate, used as a dev-dependency).
//!
//! - [`logs`]: `tracing` capture, standing in for Twisted's log observers
//!   and trial's `flushLoggedErrors`; one global subscriber per test binary
//!   routes each event to the captures that want it (by thread).
//! - [`bounded`]: bounds on tests that could hang: a thread watchdog
//!   ([`bounded()`](bounded::bounded)) that fails a test, an aborting
//!   [`Watchdog`](bounded::Watchdog) for hangs nothing else can reach, and
//!   bounded polling ([`wait_until`](bounded::wait_until)); trial's
//!   per-test `timeout`.
//! - `reactor` (feature `reactor`): reactor runs under a safety net (trial's
//!   `ReactorBuilder.runReactor`, which crashes the reactor after a timeout),
//!   running a Deferred chain to its result, and waiting on a `FakeReactor`.
//!   Behind a feature because the `deferred` crate's tests use this crate
//!   and cannot depend on `reactor`.

#![forbid(unsafe_code)]

pub mod bounded;
pub mod logs;
#[cfg(feature = "reactor")]
pub mod reactor;

pub use bounded::TIMEOUT;
