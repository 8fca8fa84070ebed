//! [`DbConnection`]: PEP 249's `Connection`, the same for every driver, on
//! top of a driver's [`DriverConnection`].

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{
    Cursor, DbError, DbResult, DriverConnection, ErrorKind, ExecResult, Params, StatementCanceller,
};

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
    /// How many statements were begun (counted like `commits`).
    statements: AtomicU64,
    /// The driver's autocommit mode, mirrored so the loop thread can read it
    /// without the driver's lock (a statement may be running).
    autocommit: AtomicBool,
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
        let autocommit = driver.autocommit();
        DbConnection {
            inner: Arc::new(ConnInner {
                driver: Mutex::new(Some(driver)),
                module: module.to_owned(),
                id: IDS.fetch_add(1, Ordering::Relaxed),
                canceller,
                interrupted: AtomicBool::new(false),
                commits: AtomicU64::new(0),
                statements: AtomicU64::new(0),
                autocommit: AtomicBool::new(autocommit),
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

    /// How many statements have been begun on this connection.
    pub(crate) fn statements_begun(&self) -> u64 {
        self.inner.statements.load(Ordering::SeqCst)
    }

    /// Whether the connection is in autocommit mode (as set at connect or
    /// with [`set_autocommit`](Self::set_autocommit); a mode changed by SQL,
    /// such as MySQL's `SET autocommit = 1`, is not seen).
    pub fn autocommit(&self) -> bool {
        self.inner.autocommit.load(Ordering::SeqCst)
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
        self.with_driver(|d| d.set_autocommit(on))?;
        self.inner.autocommit.store(on, Ordering::SeqCst);
        Ok(())
    }

    /// Limits how long each statement may run (`None`: no limit); see
    /// [`DriverConnection::set_statement_timeout`](super::DriverConnection::set_statement_timeout).
    /// An extension: psycopg2 users run `SET statement_timeout` themselves.
    pub fn set_statement_timeout(&self, limit: Option<std::time::Duration>) -> DbResult<()> {
        self.with_driver(|d| d.set_statement_timeout(limit))
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

    /// Executes `sql` as the only statement of its transaction (see
    /// [`DriverConnection::execute_alone`](super::DriverConnection::execute_alone)):
    /// the caller commits or rolls back right after. If the driver runs it
    /// as a transaction of its own, the statement is counted as a commit
    /// begun, before the interrupt check and in the order
    /// [`commit`](Self::commit) uses, so a canceller either stops it before
    /// it is sent or sees that something may commit. Not in PEP 249.
    pub(crate) fn execute_alone(&self, sql: &str, params: &Params) -> DbResult<ExecResult> {
        let mut guard = self.lock();
        let Some(d) = guard.as_mut() else {
            return Err(closed_database());
        };
        if d.commits_alone(sql) {
            self.inner.commits.fetch_add(1, Ordering::SeqCst);
            self.begin_statement(sql)?;
            d.execute_alone(sql, params)
        } else {
            self.begin_statement(sql)?;
            d.execute(sql, params)
        }
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

    /// Counts a statement as begun, then fails if the connection was
    /// interrupted (both SeqCst, the order `commit` uses, so a canceller
    /// either stops the statement or sees that it began).
    pub(super) fn begin_statement(&self, sql: &str) -> DbResult<()> {
        self.inner.statements.fetch_add(1, Ordering::SeqCst);
        self.check_interrupt(sql)
    }

    pub(super) fn check_interrupt(&self, sql: &str) -> DbResult<()> {
        // Sticky: every statement fails until `clear_interrupt`, so a
        // cancelled job cannot go on past the statement that was cancelled.
        // The statement is not sent: it committed nothing, even when it was
        // already counted as a commit begun (`execute_alone`).
        if self.inner.interrupted.load(Ordering::SeqCst) {
            return Err(DbError::new(
                ErrorKind::OperationalError,
                "canceling statement due to user request (the job was cancelled)",
            )
            .with_code("57014")
            .with_sql(sql)
            .with_nothing_committed());
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
