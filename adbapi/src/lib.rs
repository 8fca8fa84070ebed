//! Twisted's `twisted.enterprise.adbapi` for Rust: an asynchronous pool of
//! connections to DB-API style databases, with results as Deferreds.
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
//! The pool runs on a reactor from the `reactor` crate (`cp_reactor`, or
//! this thread's default reactor), uses its own worker threads, and fires
//! every Deferred on the reactor's loop thread.
//!
//! # Examples
//!
//! See [`ConnectionPool`] for a complete program, and `examples/` in the
//! repository.

pub mod dbapi;
pub mod drivers;

mod connection;
mod pool;
mod pool_core;
mod state;
mod transaction;

pub use crate::connection::{Connection, ConnectionLost, WrongConnectionForThread};
pub use crate::dbapi::{Params, Row, Value};
pub use crate::pool::{Arg, ConnectionPool, ConnectionPoolBuilder, PoolClosed, PoolError, CP_ARGS};
pub use crate::pool_core::{ConnectionFactory, OpenFun, PoolCore, TransactionFactory};
pub use crate::state::PoolState;
pub use crate::transaction::Transaction;
