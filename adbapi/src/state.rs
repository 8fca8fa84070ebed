//! Saved pool state: Twisted's `__getstate__` / `__setstate__`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::dbapi::Value;

/// Exactly what Twisted pickles for a `ConnectionPool`: the module name,
/// `min`, `max`, `noisy`, `reconnect`, `good_sql` and the connect arguments
/// (`connargs`, `connkw` without the `cp_*` keys). Not included, as in
/// Twisted: `cp_openfun`, `cp_name`, the reactor, the factories, the
/// connections and the thread pool.
///
/// Produced by [`ConnectionPool::get_state`](crate::ConnectionPool::get_state);
/// [`ConnectionPool::from_state`](crate::ConnectionPool::from_state) rebuilds a
/// working pool from it. Serialisable with serde.
///
/// ```
/// use adbapi::{ConnectionPool, PoolState};
/// use reactor::testing::FakeReactor;
/// let pool = ConnectionPool::builder("sqlite3").arg(":memory:").min(1).max(2).noisy(true)
///     .reactor(FakeReactor::new(false)).build().unwrap();
/// let state = pool.get_state();
/// let json = serde_json::to_string(&state).unwrap();
/// let back: PoolState = serde_json::from_str(&json).unwrap();
/// assert_eq!(back, state);
/// let again = ConnectionPool::from_state_with_reactor(back, Some(std::rc::Rc::new(FakeReactor::new(false)))).unwrap();
/// assert_eq!((again.min(), again.max(), again.noisy()), (1, 2, true));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolState {
    /// Mirrors `dbapiName`.
    pub dbapi_name: String,
    /// Mirrors `min`.
    pub min: usize,
    /// Mirrors `max`.
    pub max: usize,
    /// Mirrors `noisy`.
    pub noisy: bool,
    /// Mirrors `reconnect`.
    pub reconnect: bool,
    /// Mirrors `good_sql`.
    pub good_sql: Option<String>,
    /// Mirrors `connargs`.
    pub connargs: Vec<Value>,
    /// Mirrors `connkw`.
    pub connkw: BTreeMap<String, Value>,
}
