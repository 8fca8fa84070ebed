//! Saved pool state: Twisted's `ConnectionPool.__getstate__` /
//! `__setstate__` ([`PoolState`], [`ConnectionPool::get_state`],
//! [`ConnectionPool::from_state`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::options::{Arg, IntoReactor, PoolConfig, PoolError};
use super::ConnectionPool;
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
/// let again = ConnectionPool::from_state_with_reactor(back, FakeReactor::new(false)).unwrap();
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

impl ConnectionPool {
    /// What Twisted pickles: module name, `min`, `max`, `noisy`,
    /// `reconnect`, `good_sql` and the connect arguments. Mirrors
    /// `__getstate__`.
    pub fn get_state(&self) -> PoolState {
        let core = self.shared();
        PoolState {
            dbapi_name: core.dbapi_name().to_owned(),
            min: self.inner.min,
            max: self.inner.max,
            noisy: core.noisy(),
            reconnect: core.reconnect(),
            good_sql: core.good_sql().map(str::to_owned),
            connargs: core.connect_args().args.clone(),
            connkw: core.connect_args().kwargs.clone(),
        }
    }

    /// A working pool rebuilt from a saved state, on this thread's default
    /// reactor; `cp_openfun` and `cp_name` are not part of the state. Mirrors
    /// `__setstate__`.
    pub fn from_state(state: PoolState) -> Result<ConnectionPool, PoolError> {
        Self::restore(state, None)
    }

    /// As [`from_state`](Self::from_state), on the given reactor (any
    /// reactor, or an `Rc<dyn AnyReactor>`: see
    /// [`IntoReactor`](crate::IntoReactor)).
    pub fn from_state_with_reactor(
        state: PoolState,
        reactor: impl IntoReactor,
    ) -> Result<ConnectionPool, PoolError> {
        Self::restore(state, Some(reactor.into_reactor()))
    }

    fn restore(
        state: PoolState,
        reactor: Option<std::rc::Rc<dyn reactor::AnyReactor>>,
    ) -> Result<ConnectionPool, PoolError> {
        let mut cfg = PoolConfig::new(&state.dbapi_name);
        cfg.args = state.connargs;
        for (k, v) in state.connkw {
            cfg.keyword(k, Arg::Value(v))?;
        }
        cfg.min = state.min;
        cfg.max = state.max;
        cfg.noisy = state.noisy;
        cfg.reconnect = state.reconnect;
        cfg.good_sql = state.good_sql;
        cfg.reactor = reactor;
        Self::from_config(cfg)
    }
}
