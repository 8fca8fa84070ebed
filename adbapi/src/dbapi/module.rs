//! The driver side of PEP 249: what a driver module implements
//! ([`DbApiModule`], [`DriverConnection`], [`StatementCanceller`]), the
//! arguments of `module.connect(*args, **kwargs)` ([`ConnectArgs`]) and
//! [`connect`] by module name.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{
    lookup_module, DbConnection, DbError, DbResult, ErrorKind, ExecResult, Params, UnknownModule,
    Value,
};

/// The arguments of `module.connect(*args, **kwargs)`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectArgs {
    /// Positional arguments.
    pub args: Vec<Value>,
    /// Keyword arguments, sorted by name.
    pub kwargs: BTreeMap<String, Value>,
}

impl ConnectArgs {
    /// The argument given by keyword `name`, or else at position `index`.
    pub fn get(&self, index: usize, name: &str) -> Option<&Value> {
        self.kwargs.get(name).or_else(|| self.args.get(index))
    }
}

/// A DB-API driver module. Mirrors a Python DB-API module such as `sqlite3`.
pub trait DbApiModule: Send + Sync + 'static {
    /// The name it is registered under.
    fn name(&self) -> &str;
    /// `apilevel`: `"2.0"` for a compliant module.
    fn apilevel(&self) -> Option<&str> {
        Some("2.0")
    }
    /// `threadsafety`: 1 or more means connections may be used from another
    /// thread than the one that made the module (what a pool needs).
    fn threadsafety(&self) -> Option<i64> {
        Some(1)
    }
    /// `paramstyle`: `qmark`, `named`, `format`, `pyformat` or `numeric`.
    fn paramstyle(&self) -> &str;
    /// `connect(*args, **kwargs)`. Unknown or ill-typed arguments are a
    /// [`ProgrammingError`](super::ProgrammingError)/[`InterfaceError`](super::InterfaceError) naming the argument.
    fn connect(&self, args: &ConnectArgs) -> DbResult<Box<dyn DriverConnection>>;
}

/// One open driver connection. Calls come from one thread at a time.
pub trait DriverConnection: Send + 'static {
    /// Executes one statement with bound parameters and returns all its rows.
    fn execute(&mut self, sql: &str, params: &Params) -> DbResult<ExecResult>;
    /// Executes one statement once per parameter set. The default runs
    /// [`execute`](Self::execute) in a loop and adds up `rowcount`.
    fn executemany(&mut self, sql: &str, seq: &[Params]) -> DbResult<ExecResult> {
        let mut total = 0;
        for p in seq {
            let r = self.execute(sql, p)?;
            if r.rowcount > 0 {
                total += r.rowcount;
            }
        }
        Ok(ExecResult {
            rowcount: total,
            ..ExecResult::default()
        })
    }
    /// Whether [`execute_alone`](Self::execute_alone) would run `sql` as a
    /// transaction of its own that the server commits as the statement
    /// succeeds (one round trip, no `BEGIN`/`COMMIT`). Asked right before
    /// `execute_alone`, under the same lock, so the answer still holds when
    /// it runs; the caller then counts the statement as a commit begun, so a
    /// cancel arriving while it runs is not reported as "nothing committed".
    /// The default says no. An extension: no DB-API module has it.
    fn commits_alone(&mut self, sql: &str) -> bool {
        let _ = sql;
        false
    }
    /// Executes `sql` as the only statement of its transaction: the caller
    /// commits (or rolls back) right after it, with nothing in between (the
    /// pool's `run_query` and `run_operation`, Twisted's `runQuery` and
    /// `runOperation`). Where [`commits_alone`](Self::commits_alone) says
    /// yes the driver may run it as the server's implicit single-statement
    /// transaction, committed by the time this returns, so the `commit`
    /// that follows has nothing to do. The default is
    /// [`execute`](Self::execute). An extension: no DB-API module has it.
    fn execute_alone(&mut self, sql: &str, params: &Params) -> DbResult<ExecResult> {
        self.execute(sql, params)
    }
    /// Commits the current transaction (if any).
    fn commit(&mut self) -> DbResult<()>;
    /// Rolls back the current transaction (if any).
    fn rollback(&mut self) -> DbResult<()>;
    /// Closes the connection.
    fn close(&mut self) -> DbResult<()>;
    /// Turns autocommit on or off (psycopg2's `connection.autocommit`; for
    /// `sqlite3`, `isolation_level = None`). The default refuses.
    fn set_autocommit(&mut self, on: bool) -> DbResult<()> {
        let _ = on;
        Err(DbError::new(
            ErrorKind::NotSupportedError,
            "this driver has no autocommit mode",
        ))
    }
    /// Called by `cursor()`: fails if a cursor cannot be opened (for example
    /// the server has gone). The default always succeeds.
    fn check_cursor(&mut self) -> DbResult<()> {
        Ok(())
    }
    /// Whether each statement commits by itself (autocommit mode: psycopg2's
    /// `autocommit = True`, pymysql's `autocommit=True`, `sqlite3`'s
    /// `isolation_level = None`). The pool uses it to tell a cancel that can
    /// still undo a job from one that comes after statements were committed.
    /// The default says no.
    fn autocommit(&self) -> bool {
        false
    }
    /// Limits how long each statement on this connection may run
    /// (`cp_statement_timeout`; `None` lifts the limit). The pool calls it
    /// once, right after connecting, outside any transaction. A statement
    /// over the limit fails with an error for which
    /// [`DbError::is_statement_timeout`] is true, and the connection stays
    /// usable. PostgreSQL maps it to `statement_timeout`, MariaDB to
    /// `max_statement_time`, MySQL to `max_execution_time`, SQLite to a
    /// progress handler. No DB-API module has it; the default refuses with
    /// `NotSupportedError`.
    fn set_statement_timeout(&mut self, limit: Option<Duration>) -> DbResult<()> {
        let _ = limit;
        Err(DbError::new(
            ErrorKind::NotSupportedError,
            "this driver has no statement timeout (cp_statement_timeout)",
        ))
    }
    /// A thread-safe way to cancel the statement running on this connection
    /// from another thread, if the driver has one (PostgreSQL does).
    fn canceller(&self) -> Option<Arc<dyn StatementCanceller>> {
        None
    }
}

/// Cancels the statement running on a connection, from any thread.
pub trait StatementCanceller: Send + Sync + fmt::Debug {
    /// Asks the server to cancel the running statement, if any.
    fn cancel(&self) -> DbResult<()>;
    /// Whether [`cancel`](Self::cancel) may block (a network round trip, as
    /// PostgreSQL's cancel request is); the pool then calls it off the loop
    /// thread. A flag-setting cancel such as SQLite's interrupt says `false`
    /// and is called inline. Defaults to `true`.
    fn blocks(&self) -> bool {
        true
    }
}

/// Opens a connection through the registered module `module` with
/// positional and keyword arguments: `sqlite3.connect(...)` in Python.
pub fn connect(
    module: &str,
    args: &[Value],
    kwargs: &[(&str, Value)],
) -> Result<DbConnection, ConnectError> {
    let m = lookup_module(module)?;
    let args = ConnectArgs {
        args: args.to_vec(),
        kwargs: kwargs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    };
    let driver = m.connect(&args)?;
    Ok(DbConnection::new(m.name(), driver))
}

/// Why [`connect`] failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectError {
    /// No such module.
    #[error(transparent)]
    UnknownModule(#[from] UnknownModule),
    /// The driver refused.
    #[error(transparent)]
    Db(#[from] DbError),
}
