//! Twisted's `twisted.enterprise.adbapi` for Rust: an asynchronous pool of
//! connections to DB-API style databases, with results as Deferreds.
//!
//! ```
//! use adbapi::{args, kwargs, Arg, ConnectionPool};
//! use reactor::prelude::*;
//! use reactor::Reactor;
//!
//! let reactor = Reactor::new().unwrap();
//! // One worker, so every job sees the same in-memory database.
//! let pool = ConnectionPool::new(
//!     "sqlite3",
//!     args![":memory:"],
//!     kwargs! { "cp_min" => 1, "cp_max" => 1, "cp_reactor" => Arg::reactor(reactor.clone()) },
//! )
//! .unwrap();
//! let (p, r) = (pool.clone(), reactor.clone());
//! let _ = pool.run_interaction(|txn| {
//!     txn.execute("CREATE TABLE users (name TEXT, karma INTEGER)", ())?;
//!     txn.executemany("INSERT INTO users VALUES (?, ?)", [("ann", 3), ("bob", 5)])?;
//!     Ok(())
//! })
//! .add_callback_deferred(move |()| p.run_query("SELECT name FROM users WHERE karma > ?", (4,)))
//! .add_callback(move |rows| {
//!     assert_eq!(rows[0][0].to_string(), "bob"); // as Python's print(row[0])
//!     r.stop().unwrap();
//! });
//! reactor.run().unwrap(); // the pool closes with the reactor's shutdown
//! ```
//!
//! | Twisted | here |
//! |---|---|
//! | `adbapi.ConnectionPool(dbapiName, *args, **kwargs)` | [`ConnectionPool::new`] (`args!`, `kwargs!`), [`ConnectionPool::builder`] |
//! | `runInteraction`, `runWithConnection`, `runQuery`, `runOperation` | [`ConnectionPool::run_interaction`], [`run_with_connection`](ConnectionPool::run_with_connection), [`run_query`](ConnectionPool::run_query), [`run_operation`](ConnectionPool::run_operation) |
//! | `start`, `close`, `finalClose`, `connect`, `disconnect` | same names, snake_case |
//! | `Connection`, `Transaction`, `ConnectionLost` | [`Connection`], [`Transaction`], [`ConnectionLost`] |
//! | `__getstate__` / `__setstate__` | [`ConnectionPool::get_state`], [`ConnectionPool::from_state`], [`PoolState`] |
//! | a DB-API module (`sqlite3`, `psycopg2`) | [`dbapi`]: [`dbapi::DbApiModule`], [`dbapi::DbConnection`], [`dbapi::Cursor`], the PEP 249 errors |
//!
//! # Threads
//!
//! A [`ConnectionPool`] lives on the thread of the reactor it runs on
//! (`cp_reactor`, or this thread's default reactor): it is a cheap `Rc`
//! handle, not `Send`. Its work runs on the pool's own worker threads
//! (`cp_min..=cp_max`), each with one connection of its own, made the first
//! time that thread needs one; the function given to `run_interaction` or
//! `run_with_connection` must therefore be `Send`. Every Deferred fires on
//! the reactor's loop thread, on a later turn than the call that made it
//! (see [`ConnectionPool`], "When results arrive").
//!
//! # Errors
//!
//! Making a pool fails with a [`PoolError`] naming the option at fault.
//! Work fails through its Deferred with a [`deferred::Failure`]: the
//! driver's PEP 249 error (`failure.check::<dbapi::IntegrityError>()` is
//! `except IntegrityError`; every kind offers `message()`, `code()` and
//! `sql()`), [`ConnectionLost`] when the connection died under the job,
//! `CancelledError` after a cancel, [`PoolClosed`] after `close()`, or the
//! message of a panic in your function (the connection is then replaced).
//!
//! # Features
//!
//! - default: the `sqlite3` driver (rusqlite with SQLite bundled: no system
//!   library needed).
//! - `postgres`: the PostgreSQL driver, registered as `psycopg2` and
//!   `postgres` (`drivers::postgres`; the docs on docs.rs show it, marked with
//!   its feature).
//! - `metrics`: the pools' counters, gauges and histograms published through
//!   the `metrics` facade crate (see the README's "Running in production").
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

pub mod dbapi;
pub mod drivers;
mod pool;

use std::sync::Arc;

pub use crate::dbapi::{Params, Row, Value};
pub use crate::pool::{
    Arg, Connection, ConnectionFactory, ConnectionLost, ConnectionPool, ConnectionPoolBuilder,
    IntoReactor, OpenFun, PoolClosed, PoolError, PoolState, SharedPool, Transaction,
    TransactionFactory, WrongConnectionForThread, CP_ARGS,
};
// Timeouts, lifetime and retries (extensions for running in production).
pub use crate::pool::{retry_reason, Clock, RetryPolicy};
// Production extensions: observability and queue timeout.
pub use crate::pool::{DurationStats, NamedInteraction, PoolStatus, PoolTimeout};

/// The modules the registry starts with, by name: every built-in driver
/// lists its own names (`drivers::<name>::modules()`); a new driver adds one
/// line here, under its feature.
pub(crate) fn builtin_modules() -> Vec<(&'static str, Arc<dyn dbapi::DbApiModule>)> {
    #[allow(unused_mut)] // without optional drivers nothing is added
    let mut modules = drivers::sqlite::modules();
    #[cfg(feature = "postgres")]
    modules.extend(drivers::postgres::modules());
    #[cfg(feature = "mysql")]
    modules.extend(drivers::mysql::modules());
    modules
}
