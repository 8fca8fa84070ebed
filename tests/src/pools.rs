//! Small helpers the pool test files share: SQLite pools on real and fake
//! reactors, running a statement and reading integer rows back, and a
//! one-word rendering of a job's outcome for order assertions.

use std::cell::RefCell;
use std::rc::Rc;

use adbapi::dbapi::DbError;
use adbapi::{args, kwargs, Arg, ConnectionPool, PoolClosed, Row};
use deferred::{CancelledError, Failure};
use reactor::testing::FakeReactor;
use reactor::Reactor;

use crate::harness::{fake_wait, TempDir};

/// Keyword arguments for `ConnectionPool::new`.
pub type Kwargs = Vec<(String, Arg)>;

/// What a test's callbacks saw, in order.
pub type Log = Rc<RefCell<Vec<String>>>;

/// A running fake reactor (pools run jobs inline, on this thread) and an
/// in-memory SQLite pool on it (`cp_max=1`), with `extra` keyword arguments.
pub fn inline_sqlite_pool(extra: Kwargs) -> (FakeReactor, ConnectionPool) {
    let reactor = FakeReactor::new(true);
    let mut kw = kwargs! { "cp_max" => 1, "cp_reactor" => Arg::reactor(reactor.clone()) };
    kw.extend(extra);
    let pool = ConnectionPool::new("sqlite3", args![":memory:"], kw).expect("a sqlite3 pool");
    (reactor, pool)
}

/// A pool on a real reactor for the SQLite file `test.db` in `dir`, with
/// `extra` keyword arguments (Twisted's defaults otherwise).
pub fn file_pool(reactor: &Reactor, dir: &TempDir, extra: Kwargs) -> ConnectionPool {
    let mut kw = kwargs! {
        "database" => dir.file("test.db"),
        "cp_reactor" => Arg::reactor(reactor.clone()),
    };
    kw.extend(extra);
    ConnectionPool::new("sqlite3", args![], kw).expect("a sqlite3 pool")
}

/// A pool on a real reactor for the SQLite file `t.db` in `dir`, with
/// `cp_min=min` and `cp_max=max`.
pub fn sqlite_pool(reactor: &Reactor, dir: &TempDir, min: i64, max: i64) -> ConnectionPool {
    ConnectionPool::new(
        "sqlite3",
        args![dir.file("t.db")],
        kwargs! { "cp_min" => min, "cp_max" => max, "cp_reactor" => Arg::reactor(reactor.clone()) },
    )
    .expect("a pool")
}

/// The first column of every row, as integers.
///
/// # Panics
/// If a first column is not an integer.
pub fn ints(rows: &[Row]) -> Vec<i64> {
    rows.iter()
        .map(|r| r.get::<i64>(0).expect("an integer column"))
        .collect()
}

/// Runs a statement on the fake reactor's inline pool and waits for it.
///
/// # Panics
/// If the statement fails.
pub fn op(reactor: &FakeReactor, pool: &ConnectionPool, sql: &str) {
    fake_wait(reactor, pool.run_operation(sql, ())).unwrap_or_else(|f| panic!("{sql}: {f}"));
}

/// Runs a query on the fake reactor's inline pool and returns [`ints`] of
/// its rows.
///
/// # Panics
/// If the query fails.
pub fn query(reactor: &FakeReactor, pool: &ConnectionPool, sql: &str) -> Vec<i64> {
    ints(&fake_wait(reactor, pool.run_query(sql, ())).unwrap_or_else(|f| panic!("{sql}: {f}")))
}

/// The driver error a failure carries.
///
/// # Panics
/// If it carries none.
pub fn db_error(f: &Failure) -> &DbError {
    f.check::<DbError>()
        .unwrap_or_else(|| panic!("a DbError expected, got {f}"))
}

/// `ok <value>`, `PoolClosed`, `CancelledError` or `err <failure>`.
pub fn outcome<T: std::fmt::Debug>(r: &Result<T, Failure>) -> String {
    match r {
        Ok(v) => format!("ok {v:?}"),
        Err(f) if f.check::<PoolClosed>().is_some() => "PoolClosed".to_owned(),
        Err(f) if f.check::<CancelledError>().is_some() => "CancelledError".to_owned(),
        Err(f) => format!("err {f}"),
    }
}
