//! The `sqlite3` driver: Python's `sqlite3` module on rusqlite with bundled
//! SQLite (no system library needed).
//!
//! # Connect arguments
//! As `sqlite3.connect(database, timeout=5.0, detect_types=0,
//! isolation_level="", check_same_thread=True, factory=None,
//! cached_statements=128, uri=False)`, positional or by keyword:
//!
//! | argument | meaning here |
//! |---|---|
//! | `database` | file name, `":memory:"`, or a `file:` URI when `uri` is true (required) |
//! | `timeout` | seconds to wait on a database locked by another process (busy timeout), default 5.0; at most 2147483 (SQLite counts milliseconds in a C `int`) |
//! | `detect_types` | accepted; only `0` is supported (values are returned as SQLite stores them) |
//! | `isolation_level` | `""`/`"DEFERRED"`, `"IMMEDIATE"`, `"EXCLUSIVE"`, or `None` for autocommit |
//! | `check_same_thread` | accepted and ignored: a connection is only ever used by one thread at a time, and the pool closes it on its own thread |
//! | `cached_statements` | size of the prepared-statement cache, default 128 |
//! | `uri` | open `database` as a URI |
//!
//! Anything else is an `InterfaceError` naming the argument.
//!
//! # Transactions
//! As Python's `sqlite3` in its legacy `isolation_level` mode, with one
//! difference: whether a statement writes is SQLite's own verdict
//! (`sqlite3_stmt_readonly`), not its first keyword. A `BEGIN` (of the
//! `isolation_level` flavour) is issued implicitly before a statement that
//! writes when no transaction is open, so everything a pool interaction does
//! is one transaction that its failure rolls back: `WITH ... INSERT`,
//! `REPLACE`, upserts and statements behind comments included, which
//! CPython's keyword check lets autocommit.
//!
//! - Read-only statements never begin a transaction, so a read-only
//!   `run_query` costs no `BEGIN`/`COMMIT`.
//! - DDL (`CREATE`, `DROP`, `ALTER`, ...) writes, so it begins a transaction
//!   too and is rolled back with the rest: CPython 3.6+ no longer commits
//!   before DDL, and this is what its PEP 249 mode (`autocommit=False`,
//!   3.12) does; CPython's legacy mode would run DDL outside a transaction
//!   when none is open. Commit, as for any write.
//! - `VACUUM`, `ATTACH`, `DETACH` and `PRAGMA` never begin one: SQLite
//!   refuses the first three in a transaction and some pragmas fail or do
//!   nothing there (`journal_mode=WAL`, `foreign_keys=ON`). Outside a
//!   transaction they run in autocommit mode; inside one, in it.
//! - `BEGIN`, `COMMIT`, `ROLLBACK`, `SAVEPOINT`, `RELEASE` issued as SQL do
//!   what they say (SQLite calls them read-only; they begin nothing).
//! - `commit` and `rollback` do nothing when no transaction is open. With
//!   `isolation_level=None` no implicit `BEGIN` is issued at all.
//!
//! # Concurrent writers
//! Connections of this process to the same database file take turns to
//! write, first come first served (the `gate` module): a connection waits for its
//! turn before the first write of a transaction, and gives it back as soon as
//! the transaction ends. So writers of one pool never fail each other with
//! "database is locked": among writers, the `timeout` only applies to other
//! processes. Readers do not take the gate, so in rollback-journal mode a
//! writer's `COMMIT` (which needs the exclusive lock) still waits, up to
//! the `timeout`, for readers of this process to drop their shared locks:
//! each lasts one read statement outside a transaction, so with the default
//! timeout no `COMMIT` fails, but with `timeout=0` it can. In WAL mode
//! (`PRAGMA journal_mode=WAL`) readers do not hold a writer up: a reader
//! takes the write lock only for an instant, when it reads the WAL index
//! while a commit is updating it, so with the default timeout no write
//! fails, and with `timeout=0` one rarely can (about 1 in 300 commits among
//! two busy readers on a loaded machine). A
//! second connection to the same file on a thread whose first connection
//! has an open write transaction (opened inside an interaction, say) cannot
//! wait for it: its write fails at once with `OperationalError: database is
//! locked`, which SQLite would have said after the timeout.
//!
//! A shared-cache in-memory database (`file:NAME?mode=memory&cache=shared`
//! or `file::memory:?cache=shared`, with `uri=True`) is opened by every
//! connection of the process that names it, so its writers take turns on a
//! gate keyed on that name; a `cache=shared` URI of a file shares the file's
//! gate. Shared cache locks tables, not the file, and SQLite reports a
//! table lock held by another connection as `database table is locked`
//! (`SQLITE_LOCKED_SHAREDCACHE`, code 262) at once, without the busy
//! handler. So there: writers never fail each other; a statement outside a
//! transaction (a plain read, or a write in autocommit mode) that meets a
//! writer's table lock waits for that writer's turn to end and runs again;
//! but a write that meets a reader's table lock (a read running at that
//! moment, or one inside a transaction, which keeps its read locks until it
//! ends) fails at once, and so does a statement inside a transaction that
//! meets another's lock. Prefer a file (WAL) or one connection
//! (`cp_max=1`) for concurrent readers and writers of one database.
//!
//! # Statements
//! SQL containing a NUL character is a `ProgrammingError` ("the query
//! contains a null character"), as in CPython: SQLite would silently stop
//! reading at the NUL. More than one statement is a `ProgrammingError`
//! ("You can only execute one statement at a time."). Empty SQL (or only
//! whitespace and comments) does nothing and has no description, as in
//! CPython. Statements longer than [`CACHED_SQL_MAX`] bytes are prepared
//! afresh each time instead of being kept in the statement cache.
//! `executemany` prepares its statement before running any parameter set,
//! even with none (broken SQL is an error, as in CPython), and refuses a
//! read-only statement (as CPython) or one that returns rows (`INSERT ...
//! RETURNING`, which CPython refuses only after its first run wrote a row)
//! before anything runs.
//!
//! # Parameters and values
//! `paramstyle` is `qmark` (`?`); named placeholders (`:name`, `@name`,
//! `$name`) take [`Params::Named`]. Values are
//! always bound (a NUL inside a bound text is stored exactly). The errors for
//! a wrong number of bindings or a missing name have Python's wording. Text
//! that is not valid UTF-8 (e.g. `CAST(x'ff' AS TEXT)`) is an
//! `OperationalError` naming the column, as CPython's "Could not decode to
//! UTF-8"; read such a column `CAST(... AS BLOB)` to get its bytes.
//!
//! # Errors
//! SQLite result codes map onto PEP 249 kinds as CPython's `sqlite3` maps them:
//! `SQLITE_CONSTRAINT`/`MISMATCH` → `IntegrityError`; `SQLITE_ERROR` (syntax
//! errors, missing tables), `BUSY`, `LOCKED`, `IOERR`, `CANTOPEN`, `READONLY`,
//! `FULL`, ... → `OperationalError`; `TOOBIG` → `DataError`; `INTERNAL`,
//! `NOTFOUND`, `NOMEM` → `InternalError`; `MISUSE`, `RANGE` → `InterfaceError`.
//! The extended result code is kept as the error's `code`.

mod connect;
mod descriptions;
mod errors;
mod gate;
mod sql;
mod statement;
mod timeout;
mod values;

use std::sync::Arc;

use rusqlite::OpenFlags;

use self::descriptions::Descriptions;
use self::errors::{check_sql, closed, is_busy, is_shared_cache_locked, map_error};
use self::gate::{Cancel, Gate, Writer};
use self::statement::{check_many, run};
use self::timeout::StatementTimer;
use crate::dbapi::{
    ConnectArgs, DbApiModule, DbResult, DriverConnection, ExecResult, Params, StatementCanceller,
};

/// Statements longer than this many bytes are not kept in the statement or
/// description caches: a cached statement keeps its text and its compiled
/// program (which holds every literal of the text), so a few distinct
/// multi-megabyte statements would otherwise pin gigabytes until the
/// connection closes. Preparing such a statement again costs little next to
/// parsing it.
pub const CACHED_SQL_MAX: usize = 16 * 1024;

/// The `sqlite3` module. Registered under `"sqlite3"`.
#[derive(Debug, Default, Clone, Copy)]
pub struct SqliteModule;

impl DbApiModule for SqliteModule {
    fn name(&self) -> &str {
        "sqlite3"
    }

    fn paramstyle(&self) -> &str {
        "qmark"
    }

    fn connect(&self, args: &ConnectArgs) -> DbResult<Box<dyn DriverConnection>> {
        let o = connect::parse(args)?;
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if o.uri {
            flags |= OpenFlags::SQLITE_OPEN_URI;
        }
        let database = &o.database;
        let conn = rusqlite::Connection::open_with_flags(database, flags).map_err(|e| {
            map_error(e, None).context(format!("unable to open database {database:?}"))
        })?;
        conn.busy_timeout(o.timeout)
            .map_err(|e| map_error(e, None))?;
        conn.set_prepared_statement_cache_capacity(o.cached_statements);
        let writer = Writer::new(connect::gate_key(&conn, &o).map(|p| Gate::for_file(&p)));
        let (cancel, gate) = writer.canceller();
        let interrupt = Arc::new(SqliteInterrupt {
            handle: conn.get_interrupt_handle(),
            cancel,
            gate,
        });
        Ok(Box::new(SqliteConnection {
            conn: Some(conn),
            writer,
            isolation: o.isolation,
            interrupt,
            descriptions: Descriptions::default(),
            timer: StatementTimer::default(),
        }))
    }
}

/// One open SQLite connection.
struct SqliteConnection {
    // Declared before `writer`, so a connection dropped unclosed ends its
    // transaction before its turn to write passes on.
    conn: Option<rusqlite::Connection>,
    writer: Writer,
    /// `None`: autocommit; otherwise the `BEGIN` flavour ("" = DEFERRED).
    isolation: Option<String>,
    interrupt: Arc<SqliteInterrupt>,
    descriptions: Descriptions,
    /// `cp_statement_timeout`'s progress handler.
    timer: StatementTimer,
}

/// `sqlite3_interrupt` from any thread: the running statement fails with
/// `SQLITE_INTERRUPT` (an `OperationalError`); a wait for the writer gate
/// gives up.
struct SqliteInterrupt {
    handle: rusqlite::InterruptHandle,
    cancel: Arc<Cancel>,
    gate: Option<Arc<Gate>>,
}

impl std::fmt::Debug for SqliteInterrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteInterrupt")
    }
}

impl StatementCanceller for SqliteInterrupt {
    fn cancel(&self) -> DbResult<()> {
        self.handle.interrupt();
        gate::cancel_wait(&self.cancel, self.gate.as_deref());
        Ok(())
    }
    /// `sqlite3_interrupt` sets a flag and the gate's wake-up notifies a
    /// condvar: cheap enough for the loop thread.
    fn blocks(&self) -> bool {
        false
    }
}

impl SqliteConnection {
    /// Gives the writer gate back if the connection is outside a
    /// transaction (committed, rolled back, ended by an error, autocommit).
    fn settle(&mut self) {
        if self
            .conn
            .as_ref()
            .is_none_or(rusqlite::Connection::is_autocommit)
        {
            self.writer.release();
        }
    }

    /// Runs `sql` (`COMMIT`/`ROLLBACK`) if a transaction is open.
    fn end_transaction(&mut self, sql: &str) -> DbResult<()> {
        let conn = self.conn.as_ref().ok_or_else(closed)?;
        let r = if conn.is_autocommit() {
            Ok(())
        } else {
            conn.execute_batch(sql).map_err(|e| map_error(e, Some(sql)))
        };
        self.settle();
        r
    }
}

impl DriverConnection for SqliteConnection {
    fn execute(&mut self, sql: &str, params: &Params) -> DbResult<ExecResult> {
        check_sql(sql)?;
        // Taken before anything else: a cancel landing while the statement
        // is prepared or bound must still stop its wait for the gate.
        let asked = self.writer.generation();
        let conn = self.conn.as_ref().ok_or_else(closed)?;
        self.timer.arm();
        let mut r = run(
            conn,
            self.isolation.as_deref(),
            &mut self.writer,
            &mut self.descriptions,
            sql,
            params,
            asked,
        );
        // A statement that found the file busy before it wrote anything
        // (preparing it read the schema, or a read needed its shared lock
        // while another connection was committing) is run once more in
        // this process's turn to write: then no connection of this process
        // holds a lock, and the busy timeout waits for other processes only.
        // Only outside a transaction, where this connection holds no lock a
        // waiting turn could be stuck behind. The same for a statement that
        // met another connection's table lock in shared-cache mode (a reader
        // meeting a writer's open transaction): in the turn no writer of
        // this process has a transaction open.
        if r.as_ref()
            .is_err_and(|e| is_busy(e) || is_shared_cache_locked(e))
            && conn.is_autocommit()
            && !self.writer.held()
            && self.writer.has_gate()
        {
            r = self
                .writer
                .acquire(asked)
                .map_err(|e| e.with_sql(sql))
                .and_then(|()| {
                    run(
                        conn,
                        self.isolation.as_deref(),
                        &mut self.writer,
                        &mut self.descriptions,
                        sql,
                        params,
                        asked,
                    )
                });
        }
        let r = self.timer.disarm(sql, r);
        self.settle();
        r
    }

    fn executemany(&mut self, sql: &str, seq: &[Params]) -> DbResult<ExecResult> {
        check_sql(sql)?;
        let asked = self.writer.generation();
        let conn = self.conn.as_ref().ok_or_else(closed)?;
        // Prepared before any parameter set runs (and checked even when
        // there are none), as CPython's `_pysqlite_query_execute` prepares
        // first: broken SQL is an error, and a statement that would return
        // rows is refused before anything is written. The runs below take
        // the same statement from the statement cache.
        let mut checked = check_many(conn, sql);
        if checked
            .as_ref()
            .is_err_and(|e| is_busy(e) || is_shared_cache_locked(e))
            && conn.is_autocommit()
            && !self.writer.held()
            && self.writer.has_gate()
        {
            // As in `execute`: preparing met another connection's lock;
            // try once more in this process's turn.
            checked = self
                .writer
                .acquire(asked)
                .map_err(|e| e.with_sql(sql))
                .and_then(|()| check_many(conn, sql));
        }
        if let Err(e) = checked {
            self.settle();
            return Err(e);
        }
        let mut total = 0i64;
        let mut last = None;
        for p in seq {
            let r = self.execute(sql, p)?;
            total += r.rowcount.max(0);
            last = r.lastrowid.or(last);
        }
        Ok(ExecResult {
            description: None,
            rows: Vec::new(),
            rowcount: total,
            lastrowid: last,
        })
    }

    fn commit(&mut self) -> DbResult<()> {
        self.end_transaction("COMMIT")
    }

    fn rollback(&mut self) -> DbResult<()> {
        self.end_transaction("ROLLBACK")
    }

    fn close(&mut self) -> DbResult<()> {
        let r = match self.conn.take() {
            Some(c) => c.close().map_err(|(_, e)| map_error(e, None)),
            None => Ok(()),
        };
        self.writer.release();
        r
    }

    fn canceller(&self) -> Option<Arc<dyn StatementCanceller>> {
        Some(Arc::clone(&self.interrupt) as Arc<dyn StatementCanceller>)
    }

    fn autocommit(&self) -> bool {
        self.isolation.is_none()
    }

    fn set_statement_timeout(&mut self, limit: Option<std::time::Duration>) -> DbResult<()> {
        let conn = self.conn.as_mut().ok_or_else(closed)?;
        self.timer.set(conn, limit)
    }

    fn set_autocommit(&mut self, on: bool) -> DbResult<()> {
        // Python's sqlite3: isolation_level None is autocommit; turning it on
        // commits an open transaction, as assigning isolation_level does.
        if on {
            self.commit()?;
            self.isolation = None;
        } else if self.isolation.is_none() {
            self.isolation = Some(String::new());
        }
        Ok(())
    }
}

/// The names this driver registers under: `sqlite3`.
pub(crate) fn modules() -> Vec<(&'static str, Arc<dyn DbApiModule>)> {
    vec![("sqlite3", Arc::new(SqliteModule))]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dbapi::Value;

    fn names(c: &crate::dbapi::Cursor) -> Vec<String> {
        c.description()
            .expect("a SELECT has a description")
            .iter()
            .map(|c| c.name.clone())
            .collect()
    }

    /// A cached description is shared by repeated queries, and is rebuilt
    /// when the statement's columns change under the same SQL text.
    #[test]
    fn descriptions_are_shared_and_follow_schema_changes() {
        let conn = crate::dbapi::connect("sqlite3", &[Value::from(":memory:")], &[]).unwrap();
        let mut c = conn.cursor().unwrap();
        c.execute("CREATE TABLE t (a INTEGER, b TEXT)", ()).unwrap();
        c.execute("INSERT INTO t VALUES (1, 'x')", ()).unwrap();
        c.execute("SELECT * FROM t", ()).unwrap();
        assert_eq!(names(&c), ["a", "b"]);
        let first = c.description().unwrap().as_ptr();
        c.execute("SELECT * FROM t", ()).unwrap();
        assert_eq!(
            c.description().unwrap().as_ptr(),
            first,
            "shared, not rebuilt"
        );
        c.execute("ALTER TABLE t ADD COLUMN c REAL", ()).unwrap();
        c.execute("SELECT * FROM t", ()).unwrap();
        assert_eq!(names(&c), ["a", "b", "c"]);
        let rows = c.fetchall().unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].len(), 3);
        c.execute("SELECT b AS renamed FROM t", ()).unwrap();
        assert_eq!(names(&c), ["renamed"]);
        // More distinct statements than the cache holds: each still gets
        // its own columns.
        for i in 0..(descriptions::DESCRIPTIONS * 2) {
            c.execute(&format!("SELECT a AS col{i} FROM t"), ())
                .unwrap();
            assert_eq!(names(&c), [format!("col{i}")]);
        }
        c.execute("SELECT * FROM t", ()).unwrap();
        assert_eq!(names(&c), ["a", "b", "c"]);
    }
}
