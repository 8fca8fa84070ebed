//! PEP 249 (DB-API 2.0) rendered in Rust.
//!
//! | PEP 249 | here |
//! |---|---|
//! | a driver module (`sqlite3`, `psycopg2`) | a [`DbApiModule`], found by name in the [`registry`](register_module) |
//! | `module.connect(*args, **kwargs)` | [`DbApiModule::connect`] with [`ConnectArgs`], or [`connect`] |
//! | `apilevel`, `threadsafety`, `paramstyle` | methods of [`DbApiModule`] |
//! | `Connection` (`cursor`, `commit`, `rollback`, `close`) | [`DbConnection`] |
//! | `Cursor` (`execute`, `executemany`, `fetchone`, `fetchmany`, `fetchall`, `rowcount`, `description`, `lastrowid`, `arraysize`, `close`) | [`Cursor`] |
//! | the exceptions | [`DbError`] with [`ErrorKind`], and one type per kind ([`IntegrityError`], ...) |
//! | rows (tuples) and values | [`Row`], [`Value`] |
//!
//! A driver implements two traits: [`DbApiModule`] (the module) and
//! [`DriverConnection`] (one open connection, executing one statement at a
//! time and returning every row at once). [`DbConnection`] and [`Cursor`]
//! add the PEP 249 surface on top, the same for every driver.

mod error;
mod registry;
mod value;

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

pub use error::{
    DataError, DatabaseError, DbError, DbResult, ErrorDetails, ErrorKind, IntegrityError,
    InterfaceError, InternalError, NotSupportedError, OperationalError, ProgrammingError, Warning,
};
pub use registry::{lookup_module, register_module, registered_modules, UnknownModule};
pub use value::{Column, ExecResult, FromValue, Params, Row, Value};

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
    /// [`ProgrammingError`]/[`InterfaceError`] naming the argument.
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

fn closed_database() -> DbError {
    DbError::new(
        ErrorKind::ProgrammingError,
        "Cannot operate on a closed database.",
    )
}

struct ConnInner {
    driver: Mutex<Option<Box<dyn DriverConnection>>>,
    module: String,
    id: u64,
    canceller: Option<Arc<dyn StatementCanceller>>,
    /// Set by `interrupt`: the next `execute` (or `commit`) fails instead of
    /// running.
    interrupted: AtomicBool,
    /// How many commits were begun, so a canceller can tell that a job has
    /// committed something and is past cancelling.
    commits: AtomicU64,
}

/// An open DB-API connection: the raw connection Twisted's pool keeps per
/// thread. Mirrors a Python DB-API `Connection`.
///
/// A cheap handle; clones are the same connection (compare with
/// [`ptr_eq`](Self::ptr_eq), as Twisted compares by identity). After
/// [`close`](Self::close) every operation fails with `ProgrammingError:
/// Cannot operate on a closed database.`, as in Python's `sqlite3`.
#[derive(Clone)]
pub struct DbConnection {
    inner: Arc<ConnInner>,
}

impl DbConnection {
    /// Wraps an open driver connection made by module `module`.
    pub fn new(module: &str, driver: Box<dyn DriverConnection>) -> Self {
        static IDS: AtomicU64 = AtomicU64::new(1);
        let canceller = driver.canceller();
        DbConnection {
            inner: Arc::new(ConnInner {
                driver: Mutex::new(Some(driver)),
                module: module.to_owned(),
                id: IDS.fetch_add(1, Ordering::Relaxed),
                canceller,
                interrupted: AtomicBool::new(false),
                commits: AtomicU64::new(0),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Box<dyn DriverConnection>>> {
        // A panic inside a driver call poisons the lock; the connection is
        // then treated like any other: the pool's rollback/probe decides.
        self.inner.driver.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the open driver connection.
    pub fn with_driver<R>(
        &self,
        f: impl FnOnce(&mut dyn DriverConnection) -> DbResult<R>,
    ) -> DbResult<R> {
        let mut guard = self.lock();
        match guard.as_mut() {
            Some(d) => f(d.as_mut()),
            None => Err(closed_database()),
        }
    }

    /// Opens a cursor. Mirrors `connection.cursor()`.
    pub fn cursor(&self) -> DbResult<Cursor> {
        self.with_driver(|d| d.check_cursor())?;
        Ok(Cursor::new(self.clone()))
    }

    /// Commits. Mirrors `connection.commit()`. Fails without committing if
    /// the connection was interrupted (see [`interrupt`](Self::interrupt)).
    pub fn commit(&self) -> DbResult<()> {
        // Counted before the interrupt check (both SeqCst), so a canceller
        // that marks the connection interrupted and then reads the count
        // either stops this commit or sees that it began.
        self.inner.commits.fetch_add(1, Ordering::SeqCst);
        self.check_interrupt("COMMIT")?;
        self.with_driver(|d| d.commit())
    }

    /// How many commits have been begun on this connection.
    pub(crate) fn commits_begun(&self) -> u64 {
        self.inner.commits.load(Ordering::SeqCst)
    }

    /// Rolls back. Mirrors `connection.rollback()`.
    pub fn rollback(&self) -> DbResult<()> {
        self.with_driver(|d| d.rollback())
    }

    /// Turns autocommit on or off: with it on, no transaction is begun
    /// implicitly and every statement commits by itself (needed for
    /// statements such as `CREATE DATABASE` or `VACUUM`). Mirrors psycopg2's
    /// `connection.autocommit = True`.
    pub fn set_autocommit(&self, on: bool) -> DbResult<()> {
        self.with_driver(|d| d.set_autocommit(on))
    }

    /// Closes the connection; closing a closed connection does nothing.
    /// Mirrors `connection.close()`.
    pub fn close(&self) -> DbResult<()> {
        let driver = self.lock().take();
        match driver {
            Some(mut d) => d.close(),
            None => Ok(()),
        }
    }

    /// True once closed.
    pub fn is_closed(&self) -> bool {
        self.lock().is_none()
    }

    /// Opens a cursor and executes one statement on it (Python `sqlite3`'s
    /// `connection.execute` shortcut).
    pub fn execute(&self, sql: &str, params: impl Into<Params>) -> DbResult<Cursor> {
        let mut c = self.cursor()?;
        c.execute(sql, params)?;
        Ok(c)
    }

    /// The name of the module that made it.
    pub fn module(&self) -> &str {
        &self.inner.module
    }

    /// A process-unique number for logs and debugging.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// True if both handles are the same connection.
    pub fn ptr_eq(a: &DbConnection, b: &DbConnection) -> bool {
        Arc::ptr_eq(&a.inner, &b.inner)
    }

    /// Cancels the work in progress on this connection, from any thread: asks
    /// the driver to cancel the running statement (PostgreSQL sends a cancel
    /// request; SQLite interrupts), and makes the next `execute` on it fail
    /// with `OperationalError` until [`clear_interrupt`](Self::clear_interrupt).
    pub fn interrupt(&self) -> DbResult<()> {
        self.mark_interrupted();
        self.cancel_statement()
    }

    /// The non-blocking half of [`interrupt`](Self::interrupt): from now on
    /// `execute` fails, until [`clear_interrupt`](Self::clear_interrupt).
    pub fn mark_interrupted(&self) {
        self.inner.interrupted.store(true, Ordering::SeqCst);
    }

    /// The other half: asks the driver to cancel the statement running now
    /// (for PostgreSQL a network round trip, so call it off the loop thread).
    pub fn cancel_statement(&self) -> DbResult<()> {
        match &self.inner.canceller {
            Some(c) => c.cancel(),
            None => Ok(()),
        }
    }

    /// Whether [`cancel_statement`](Self::cancel_statement) may block; see
    /// [`StatementCanceller::blocks`]. False without a canceller.
    pub fn cancel_blocks(&self) -> bool {
        self.inner.canceller.as_ref().is_some_and(|c| c.blocks())
    }

    /// Forgets a pending [`interrupt`](Self::interrupt).
    pub fn clear_interrupt(&self) {
        self.inner.interrupted.store(false, Ordering::SeqCst);
    }

    fn check_interrupt(&self, sql: &str) -> DbResult<()> {
        // Sticky: every statement fails until `clear_interrupt`, so a
        // cancelled job cannot go on past the statement that was cancelled.
        if self.inner.interrupted.load(Ordering::SeqCst) {
            return Err(DbError::new(
                ErrorKind::OperationalError,
                "canceling statement due to user request (the job was cancelled)",
            )
            .with_code("57014")
            .with_sql(sql));
        }
        Ok(())
    }

    /// The driver's statement canceller, if it has one.
    pub fn canceller(&self) -> Option<Arc<dyn StatementCanceller>> {
        self.inner.canceller.clone()
    }
}

impl fmt::Debug for DbConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} connection #{}>", self.inner.module, self.inner.id)
    }
}

/// A DB-API cursor. Mirrors a Python DB-API `Cursor`.
///
/// `execute` runs the statement at once and keeps its rows; the `fetch*`
/// methods hand them out. Fetching when the last statement returned no rows
/// gives nothing, as Python's `sqlite3` does.
///
/// ```
/// use adbapi::dbapi::connect;
/// let conn = connect("sqlite3", &[":memory:".into()], &[]).unwrap();
/// let mut cur = conn.cursor().unwrap();
/// cur.execute("CREATE TABLE t (x INTEGER)", ()).unwrap();
/// cur.executemany("INSERT INTO t VALUES (?)", [(1,), (2,), (3,)]).unwrap();
/// assert_eq!(cur.rowcount(), 3);
/// cur.execute("SELECT x FROM t WHERE x >= ? ORDER BY x", (2,)).unwrap();
/// assert_eq!(cur.description().unwrap()[0].name, "x");
/// assert_eq!(cur.fetchone().unwrap().unwrap().get::<i64>(0).unwrap(), 2);
/// assert_eq!(cur.fetchall().unwrap().len(), 1);
/// assert!(cur.fetchone().unwrap().is_none());
/// conn.commit().unwrap();
/// ```
pub struct Cursor {
    conn: DbConnection,
    rows: VecDeque<Row>,
    description: Option<Arc<[Column]>>,
    rowcount: i64,
    lastrowid: Option<i64>,
    arraysize: usize,
    closed: bool,
}

impl Cursor {
    fn new(conn: DbConnection) -> Self {
        Cursor {
            conn,
            rows: VecDeque::new(),
            description: None,
            rowcount: -1,
            lastrowid: None,
            arraysize: 1,
            closed: false,
        }
    }

    fn check(&self) -> DbResult<()> {
        if self.closed {
            Err(DbError::new(
                ErrorKind::ProgrammingError,
                "Cannot operate on a closed cursor.",
            ))
        } else {
            Ok(())
        }
    }

    fn load(&mut self, r: ExecResult) {
        // Rows learn their columns' names, so any driver's rows can be read
        // by name (pymysql's DictCursor, sqlite3.Row).
        self.rows = match &r.description {
            Some(d) => r
                .rows
                .into_iter()
                .map(|row| row.with_columns(Arc::clone(d)))
                .collect(),
            None => VecDeque::from(r.rows),
        };
        self.description = r.description;
        self.rowcount = r.rowcount;
        if r.lastrowid.is_some() {
            self.lastrowid = r.lastrowid;
        }
    }

    /// Executes one statement with bound parameters. Mirrors `execute`.
    pub fn execute(&mut self, sql: &str, params: impl Into<Params>) -> DbResult<&mut Self> {
        self.check()?;
        self.conn.check_interrupt(sql)?;
        let params = params.into();
        let r = self.conn.with_driver(|d| d.execute(sql, &params))?;
        self.load(r);
        Ok(self)
    }

    /// Executes one statement once per parameter set. Mirrors `executemany`.
    pub fn executemany<P: Into<Params>>(
        &mut self,
        sql: &str,
        seq: impl IntoIterator<Item = P>,
    ) -> DbResult<&mut Self> {
        self.check()?;
        self.conn.check_interrupt(sql)?;
        let seq: Vec<Params> = seq.into_iter().map(Into::into).collect();
        let r = self.conn.with_driver(|d| d.executemany(sql, &seq))?;
        self.load(r);
        Ok(self)
    }

    /// The next row, or `None`. Mirrors `fetchone`.
    pub fn fetchone(&mut self) -> DbResult<Option<Row>> {
        self.check()?;
        Ok(self.rows.pop_front())
    }

    /// Up to `size` rows (`arraysize` if `None`). Mirrors `fetchmany`.
    pub fn fetchmany(&mut self, size: Option<usize>) -> DbResult<Vec<Row>> {
        self.check()?;
        let n = size.unwrap_or(self.arraysize).min(self.rows.len());
        Ok(self.rows.drain(..n).collect())
    }

    /// Every remaining row. Mirrors `fetchall`.
    pub fn fetchall(&mut self) -> DbResult<Vec<Row>> {
        self.check()?;
        Ok(Vec::from(std::mem::take(&mut self.rows)))
    }

    /// Rows changed by the last statement, or -1. Mirrors `rowcount`.
    pub fn rowcount(&self) -> i64 {
        self.rowcount
    }

    /// The columns of the last result, or `None`. Mirrors `description`.
    pub fn description(&self) -> Option<&[Column]> {
        self.description.as_deref()
    }

    /// The row id of the last inserted row, if any. Mirrors `lastrowid`.
    pub fn lastrowid(&self) -> Option<i64> {
        self.lastrowid
    }

    /// How many rows `fetchmany` returns by default (1). Mirrors `arraysize`.
    pub fn arraysize(&self) -> usize {
        self.arraysize
    }

    /// Sets `arraysize`.
    pub fn set_arraysize(&mut self, size: usize) {
        self.arraysize = size;
    }

    /// Closes the cursor; later operations fail. Idempotent. Mirrors `close`.
    pub fn close(&mut self) {
        self.closed = true;
        self.rows.clear();
    }

    /// True once closed.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The connection it belongs to. Mirrors `cursor.connection`.
    pub fn connection(&self) -> &DbConnection {
        &self.conn
    }
}

impl fmt::Debug for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cursor")
            .field("connection", &self.conn)
            .field("pending_rows", &self.rows.len())
            .field("rowcount", &self.rowcount)
            .field("closed", &self.closed)
            .finish()
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
