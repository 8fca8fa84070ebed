//! DB-API modules for tests, registered under unique names.
//!
//! A [`TestModule`] either fakes every connection (each operation
//! succeeds and returns no rows unless told to fail, like the fake
//! connection classes of `test_adbapi.py`) or wraps the real `sqlite3`
//! module (a spy). Either way it records every call with its connection
//! number and thread in a shared [`ModuleState`].

use std::error::Error as StdError;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

use adbapi::dbapi::{
    register_module, ConnectArgs, DbApiModule, DbError, DbResult, DriverConnection, ErrorKind,
    ExecResult, Params,
};
use adbapi::drivers::sqlite::SqliteModule;

/// Python's `RuntimeError`, as raised by the fakes of `test_adbapi.py`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeError(pub String);

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RuntimeError: {}", self.0)
    }
}

impl StdError for RuntimeError {}

/// Python's `ValueError`, as raised by the tests' functions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError(pub String);

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ValueError: {}", self.0)
    }
}

impl StdError for ValueError {}

/// `RuntimeError("problem!")` as a driver error: a [`DbError`] whose
/// source is the [`RuntimeError`], so `failure.check::<RuntimeError>()`
/// finds it and its text (in logs too) says `problem!`.
pub fn problem() -> DbError {
    DbError::new(ErrorKind::DatabaseError, "RuntimeError: problem!")
        .with_source(RuntimeError("problem!".to_owned()))
}

/// The error a faked `execute` fails with: the server went away.
pub fn server_gone() -> DbError {
    DbError::new(
        ErrorKind::OperationalError,
        "server closed the connection unexpectedly",
    )
    .with_connection_lost(true)
}

/// One recorded call.
#[derive(Debug, Clone)]
pub struct Call {
    /// The connection's number (1, 2, ... in connect order).
    pub conn: u64,
    /// `connect`, `cursor`, `execute <sql>`, `commit`, `rollback`,
    /// `close`.
    pub op: String,
    /// The calling thread.
    pub thread: ThreadId,
    /// Its name.
    pub thread_name: Option<String>,
}

/// What a [`TestModule`] records, and the failures it injects (set them
/// at any time; they apply to every connection of the module).
#[derive(Debug, Default)]
pub struct ModuleState {
    /// `rollback()` fails with [`problem`].
    pub fail_rollback: AtomicBool,
    /// `close()` fails with [`problem`] (the connection is closed anyway).
    pub fail_close: AtomicBool,
    /// `commit()` fails with `commit problem!`.
    pub fail_commit: AtomicBool,
    /// `execute()` fails with [`server_gone`].
    pub fail_execute: AtomicBool,
    /// How many of the next `cursor()` calls fail with [`problem`].
    pub cursor_failures: AtomicUsize,
    calls: Mutex<Vec<Call>>,
    serial: AtomicU64,
    open: AtomicI64,
}

impl ModuleState {
    fn record(&self, conn: u64, op: impl Into<String>) {
        let t = std::thread::current();
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Call {
                conn,
                op: op.into(),
                thread: t.id(),
                thread_name: t.name().map(str::to_owned),
            });
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The operations so far, in order.
    pub fn ops(&self) -> Vec<String> {
        self.calls().into_iter().map(|c| c.op).collect()
    }

    /// The operations on connection `conn`, in order.
    pub fn ops_of(&self, conn: u64) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| c.conn == conn)
            .map(|c| c.op)
            .collect()
    }

    /// How many calls had exactly this operation.
    pub fn count(&self, op: &str) -> usize {
        self.calls().iter().filter(|c| c.op == op).count()
    }

    /// Connections opened and not closed yet.
    pub fn open_connections(&self) -> i64 {
        self.open.load(Ordering::SeqCst)
    }

    /// Forgets the calls recorded so far.
    pub fn clear_calls(&self) {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// A registered test module; see the module docs.
pub struct TestModule {
    name: String,
    compliant: bool,
    wraps_sqlite: bool,
    state: Arc<ModuleState>,
}

impl fmt::Debug for TestModule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestModule")
            .field("name", &self.name)
            .field("compliant", &self.compliant)
            .field("wraps_sqlite", &self.wraps_sqlite)
            .finish()
    }
}

/// Registers a fake module (no database behind it) under a unique name
/// starting with `prefix`. Not `compliant`: `apilevel` and
/// `threadsafety` are absent, as for the module `test_adbapi.py` uses
/// as its own fake DB-API module.
pub fn register_fake_module(prefix: &str, compliant: bool) -> (String, Arc<ModuleState>) {
    register(prefix, compliant, false)
}

/// Registers a spy around `sqlite3` under a unique name starting with
/// `prefix`; it takes `sqlite3`'s connect arguments.
pub fn register_spy_module(prefix: &str) -> (String, Arc<ModuleState>) {
    register(prefix, true, true)
}

fn register(prefix: &str, compliant: bool, wraps_sqlite: bool) -> (String, Arc<ModuleState>) {
    let name = crate::harness::unique_name(prefix);
    let state = Arc::new(ModuleState::default());
    let module = TestModule {
        name: name.clone(),
        compliant,
        wraps_sqlite,
        state: Arc::clone(&state),
    };
    register_module(&name, Arc::new(module));
    (name, state)
}

impl DbApiModule for TestModule {
    fn name(&self) -> &str {
        &self.name
    }

    fn apilevel(&self) -> Option<&str> {
        self.compliant.then_some("2.0")
    }

    fn threadsafety(&self) -> Option<i64> {
        self.compliant.then_some(1)
    }

    fn paramstyle(&self) -> &str {
        "qmark"
    }

    fn connect(&self, args: &ConnectArgs) -> DbResult<Box<dyn DriverConnection>> {
        let inner = if self.wraps_sqlite {
            Some(SqliteModule.connect(args)?)
        } else {
            None
        };
        let serial = self.state.serial.fetch_add(1, Ordering::SeqCst) + 1;
        self.state.open.fetch_add(1, Ordering::SeqCst);
        self.state.record(serial, "connect");
        Ok(Box::new(TestConnection {
            serial,
            inner,
            closed: false,
            state: Arc::clone(&self.state),
        }))
    }
}

struct TestConnection {
    serial: u64,
    inner: Option<Box<dyn DriverConnection>>,
    closed: bool,
    state: Arc<ModuleState>,
}

impl DriverConnection for TestConnection {
    fn execute(&mut self, sql: &str, params: &Params) -> DbResult<ExecResult> {
        self.state.record(self.serial, format!("execute {sql}"));
        if self.state.fail_execute.load(Ordering::SeqCst) {
            return Err(server_gone().with_sql(sql));
        }
        match &mut self.inner {
            Some(c) => c.execute(sql, params),
            None => Ok(ExecResult {
                rowcount: -1,
                ..ExecResult::default()
            }),
        }
    }

    fn commit(&mut self) -> DbResult<()> {
        self.state.record(self.serial, "commit");
        if self.state.fail_commit.load(Ordering::SeqCst) {
            return Err(DbError::new(ErrorKind::OperationalError, "commit problem!"));
        }
        self.inner.as_mut().map_or(Ok(()), |c| c.commit())
    }

    fn rollback(&mut self) -> DbResult<()> {
        self.state.record(self.serial, "rollback");
        if self.state.fail_rollback.load(Ordering::SeqCst) {
            return Err(problem());
        }
        self.inner.as_mut().map_or(Ok(()), |c| c.rollback())
    }

    fn close(&mut self) -> DbResult<()> {
        self.state.record(self.serial, "close");
        if !self.closed {
            self.closed = true;
            self.state.open.fetch_sub(1, Ordering::SeqCst);
        }
        let r = self.inner.take().map_or(Ok(()), |mut c| c.close());
        if self.state.fail_close.load(Ordering::SeqCst) {
            return Err(problem());
        }
        r
    }

    fn check_cursor(&mut self) -> DbResult<()> {
        self.state.record(self.serial, "cursor");
        let failed = self
            .state
            .cursor_failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failed {
            return Err(problem());
        }
        self.inner.as_mut().map_or(Ok(()), |c| c.check_cursor())
    }
}
