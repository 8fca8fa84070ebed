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
//! | `timeout` | seconds to wait on a locked database (busy timeout), default 5.0 |
//! | `detect_types` | accepted; only `0` is supported (values are returned as SQLite stores them) |
//! | `isolation_level` | `""`/`"DEFERRED"`, `"IMMEDIATE"`, `"EXCLUSIVE"`, or `None` for autocommit |
//! | `check_same_thread` | accepted and ignored: a connection is only ever used by one thread at a time, and the pool closes it on its own thread |
//! | `cached_statements` | size of the prepared-statement cache, default 128 |
//! | `uri` | open `database` as a URI |
//!
//! Anything else is an `InterfaceError` naming the argument.
//!
//! # Transactions
//! As Python's `sqlite3` (legacy `isolation_level` mode): a `BEGIN` is issued
//! implicitly before `INSERT`, `UPDATE`, `DELETE` and `REPLACE` when no
//! transaction is open; other statements run in autocommit mode. `commit` and
//! `rollback` do nothing when no transaction is open. So a read-only
//! `run_query` costs no `BEGIN`/`COMMIT`. With `isolation_level=None` no
//! implicit `BEGIN` is issued at all.
//!
//! # Parameters
//! `paramstyle` is `qmark` (`?`); named placeholders (`:name`, `@name`,
//! `$name`) take [`Params::Named`]. Values are always bound. The errors for a
//! wrong number of bindings or a missing name have Python's wording.
//!
//! # Errors
//! SQLite result codes map onto PEP 249 kinds as CPython's `sqlite3` maps them:
//! `SQLITE_CONSTRAINT`/`MISMATCH` → `IntegrityError`; `SQLITE_ERROR` (syntax
//! errors, missing tables), `BUSY`, `LOCKED`, `IOERR`, `CANTOPEN`, `READONLY`,
//! `FULL`, ... → `OperationalError`; `TOOBIG` → `DataError`; `INTERNAL`,
//! `NOTFOUND`, `NOMEM` → `InternalError`; `MISUSE`, `RANGE` → `InterfaceError`.
//! The extended result code is kept as the error's `code`.

use std::sync::Arc;
use std::time::Duration;

use rusqlite::ffi::ErrorCode;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{OpenFlags, ToSql};

use crate::dbapi::{
    Column, ConnectArgs, DbApiModule, DbError, DbResult, DriverConnection, ErrorKind, ExecResult,
    Params, Row, StatementCanceller, Value,
};

/// The `sqlite3` module. Registered under `"sqlite3"`.
#[derive(Debug, Default, Clone, Copy)]
pub struct SqliteModule;

const KNOWN_ARGS: [&str; 8] = [
    "database",
    "timeout",
    "detect_types",
    "isolation_level",
    "check_same_thread",
    "factory",
    "cached_statements",
    "uri",
];

fn arg_error(message: String) -> DbError {
    DbError::new(ErrorKind::InterfaceError, message)
}

fn number(v: &Value, name: &str) -> DbResult<f64> {
    match v {
        Value::Int(i) => i64_to_f64(*i),
        Value::Float(x) if x.is_finite() && *x >= 0.0 => Ok(*x),
        other => Err(arg_error(format!(
            "sqlite3.connect: argument '{name}' must be a non-negative number, got {} {other}",
            other.type_name()
        ))),
    }
}

fn i64_to_f64(i: i64) -> DbResult<f64> {
    if i < 0 {
        return Err(arg_error(format!("sqlite3.connect: negative number {i}")));
    }
    // Connect arguments are small; exactness beyond 2^53 is irrelevant.
    #[allow(clippy::cast_precision_loss)]
    Ok(i as f64)
}

fn boolean(v: &Value, name: &str) -> DbResult<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Int(i) => Ok(*i != 0),
        other => Err(arg_error(format!(
            "sqlite3.connect: argument '{name}' must be a bool, got {} {other}",
            other.type_name()
        ))),
    }
}

impl DbApiModule for SqliteModule {
    fn name(&self) -> &str {
        "sqlite3"
    }

    fn paramstyle(&self) -> &str {
        "qmark"
    }

    fn connect(&self, args: &ConnectArgs) -> DbResult<Box<dyn DriverConnection>> {
        if args.args.len() > KNOWN_ARGS.len() {
            return Err(arg_error(format!(
                "sqlite3.connect takes at most {} positional arguments ({} given)",
                KNOWN_ARGS.len(),
                args.args.len()
            )));
        }
        for name in args.kwargs.keys() {
            let Some(pos) = KNOWN_ARGS.iter().position(|k| k == name) else {
                return Err(arg_error(format!(
                    "sqlite3.connect() got an unexpected keyword argument '{name}'"
                )));
            };
            if pos < args.args.len() {
                return Err(arg_error(format!(
                    "sqlite3.connect() got multiple values for argument '{name}'"
                )));
            }
        }
        let get = |i: usize| args.get(i, KNOWN_ARGS[i]);
        let database = match get(0) {
            Some(Value::Text(s)) => s.clone(),
            Some(other) => {
                return Err(arg_error(format!(
                    "sqlite3.connect: 'database' must be text, got {} {other}",
                    other.type_name()
                )))
            }
            None => {
                return Err(arg_error(
                    "sqlite3.connect() missing required argument 'database'".into(),
                ))
            }
        };
        let timeout = get(1)
            .map(|v| number(v, "timeout"))
            .transpose()?
            .unwrap_or(5.0);
        match get(2) {
            None | Some(Value::Int(0)) => {}
            Some(other) => {
                return Err(DbError::new(
                    ErrorKind::NotSupportedError,
                    format!("sqlite3.connect: detect_types={other} is not supported (only 0)"),
                ))
            }
        }
        let isolation = match get(3) {
            None => Some(String::new()),
            Some(Value::Null) => None,
            Some(Value::Text(s)) => {
                let upper = s.to_ascii_uppercase();
                if !["", "DEFERRED", "IMMEDIATE", "EXCLUSIVE"].contains(&upper.as_str()) {
                    return Err(arg_error(format!(
                        "sqlite3.connect: isolation_level must be None, '', 'DEFERRED', 'IMMEDIATE' or 'EXCLUSIVE', got {s:?}"
                    )));
                }
                Some(upper)
            }
            Some(other) => {
                return Err(arg_error(format!(
                    "sqlite3.connect: isolation_level must be text or None, got {} {other}",
                    other.type_name()
                )))
            }
        };
        if let Some(v) = get(4) {
            boolean(v, "check_same_thread")?;
        }
        match get(5) {
            None | Some(Value::Null) => {}
            Some(_) => {
                return Err(DbError::new(
                    ErrorKind::NotSupportedError,
                    "sqlite3.connect: 'factory' is not supported",
                ))
            }
        }
        let cached = match get(6) {
            None => 128,
            Some(Value::Int(n)) if *n >= 0 => usize::try_from(*n).unwrap_or(usize::MAX),
            Some(other) => {
                return Err(arg_error(format!(
                    "sqlite3.connect: cached_statements must be a non-negative int, got {} {other}",
                    other.type_name()
                )))
            }
        };
        let uri = get(7)
            .map(|v| boolean(v, "uri"))
            .transpose()?
            .unwrap_or(false);

        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if uri {
            flags |= OpenFlags::SQLITE_OPEN_URI;
        }
        let conn = rusqlite::Connection::open_with_flags(&database, flags).map_err(|e| {
            map_error(e, None).context(format!("unable to open database {database:?}"))
        })?;
        conn.busy_timeout(Duration::from_secs_f64(timeout))
            .map_err(|e| map_error(e, None))?;
        conn.set_prepared_statement_cache_capacity(cached);
        let interrupt = Arc::new(SqliteInterrupt(conn.get_interrupt_handle()));
        Ok(Box::new(SqliteConnection {
            conn: Some(conn),
            isolation,
            interrupt,
            descriptions: Descriptions::default(),
        }))
    }
}

/// One open SQLite connection.
struct SqliteConnection {
    conn: Option<rusqlite::Connection>,
    /// `None`: autocommit; otherwise the `BEGIN` flavour ("" = DEFERRED).
    isolation: Option<String>,
    interrupt: Arc<SqliteInterrupt>,
    descriptions: Descriptions,
}

/// Recently built `cursor.description`s by SQL text, so a repeated query
/// shares one instead of allocating every column name again. An entry is
/// used only while the statement still has exactly those column names (a
/// schema change can change what `SELECT *` returns).
#[derive(Default)]
struct Descriptions {
    entries: Vec<(Box<str>, Arc<[Column]>)>,
    /// The entry replaced next once `entries` is full.
    next: usize,
}

/// Descriptions kept per connection.
const DESCRIPTIONS: usize = 16;

impl Descriptions {
    fn get(&mut self, sql: &str, stmt: &rusqlite::Statement<'_>) -> Arc<[Column]> {
        let same = |d: &[Column]| {
            d.len() == stmt.column_count()
                && d.iter().zip(stmt.column_names()).all(|(c, n)| c.name == n)
        };
        let slot = self.entries.iter().position(|(s, _)| &**s == sql);
        if let Some(i) = slot {
            if same(&self.entries[i].1) {
                return Arc::clone(&self.entries[i].1);
            }
        }
        let d: Arc<[Column]> = stmt
            .column_names()
            .map(|n| Column {
                name: n.to_owned(),
                type_code: None,
            })
            .collect();
        let entry = (Box::from(sql), Arc::clone(&d));
        match slot {
            Some(i) => self.entries[i] = entry,
            None if self.entries.len() < DESCRIPTIONS => self.entries.push(entry),
            None => {
                self.entries[self.next] = entry;
                self.next = (self.next + 1) % DESCRIPTIONS;
            }
        }
        d
    }
}

/// `sqlite3_interrupt` from any thread: the running statement fails with
/// `SQLITE_INTERRUPT` (an `OperationalError`).
struct SqliteInterrupt(rusqlite::InterruptHandle);

impl std::fmt::Debug for SqliteInterrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteInterrupt")
    }
}

impl StatementCanceller for SqliteInterrupt {
    fn cancel(&self) -> DbResult<()> {
        self.0.interrupt();
        Ok(())
    }
    /// `sqlite3_interrupt` only sets a flag: cheap enough for the loop thread.
    fn blocks(&self) -> bool {
        false
    }
}

/// Binds a [`Value`] without copying it.
struct Bind<'a>(&'a Value);

impl ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self.0 {
            Value::Null => ValueRef::Null,
            Value::Bool(b) => ValueRef::Integer(i64::from(*b)),
            Value::Int(i) => ValueRef::Integer(*i),
            Value::Float(x) => ValueRef::Real(*x),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Bytes(b) => ValueRef::Blob(b),
        }))
    }
}

/// The first keyword of `sql`, skipping whitespace and comments.
fn first_keyword(sql: &str) -> &str {
    let mut s = sql;
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix("--") {
            s = rest.find('\n').map_or("", |i| &rest[i + 1..]);
        } else if let Some(rest) = s.strip_prefix("/*") {
            s = rest.find("*/").map_or("", |i| &rest[i + 2..]);
        } else {
            break;
        }
    }
    let end = s
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(s.len());
    &s[..end]
}

fn is_dml(sql: &str) -> bool {
    let kw = first_keyword(sql);
    ["INSERT", "UPDATE", "DELETE", "REPLACE"]
        .iter()
        .any(|k| kw.eq_ignore_ascii_case(k))
}

fn closed() -> DbError {
    DbError::new(
        ErrorKind::ProgrammingError,
        "Cannot operate on a closed database.",
    )
}

fn bind(stmt: &mut rusqlite::CachedStatement<'_>, params: &Params, sql: &str) -> DbResult<()> {
    let count = stmt.parameter_count();
    match params {
        Params::None | Params::Positional(_) => {
            let values: &[Value] = match params {
                Params::Positional(v) => v,
                _ => &[],
            };
            if values.len() != count {
                return Err(DbError::new(
                    ErrorKind::ProgrammingError,
                    format!(
                        "Incorrect number of bindings supplied. The current statement uses {count}, and there are {} supplied.",
                        values.len()
                    ),
                )
                .with_sql(sql));
            }
            for (i, v) in values.iter().enumerate() {
                stmt.raw_bind_parameter(i + 1, Bind(v))
                    .map_err(|e| map_error(e, Some(sql)))?;
            }
        }
        Params::Named(pairs) => {
            for i in 1..=count {
                let Some(name) = stmt.parameter_name(i).map(str::to_owned) else {
                    return Err(DbError::new(
                        ErrorKind::ProgrammingError,
                        format!("Binding {i} has no name, but you supplied a dictionary (which has only names)."),
                    )
                    .with_sql(sql));
                };
                let bare = name.trim_start_matches([':', '@', '$']);
                let Some((_, v)) = pairs.iter().find(|(k, _)| k == bare) else {
                    return Err(DbError::new(
                        ErrorKind::ProgrammingError,
                        format!("You did not supply a value for binding parameter {name}."),
                    )
                    .with_sql(sql));
                };
                stmt.raw_bind_parameter(i, Bind(v))
                    .map_err(|e| map_error(e, Some(sql)))?;
            }
        }
    }
    Ok(())
}

fn value_of(v: ValueRef<'_>, col: usize) -> DbResult<Value> {
    Ok(match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(x) => Value::Float(x),
        ValueRef::Text(t) => Value::Text(
            std::str::from_utf8(t)
                .map_err(|e| {
                    DbError::new(
                        ErrorKind::OperationalError,
                        format!("Could not decode to UTF-8 column {col}"),
                    )
                    .with_source(e)
                })?
                .to_owned(),
        ),
        ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
    })
}

impl SqliteConnection {
    fn conn(&self) -> DbResult<&rusqlite::Connection> {
        self.conn.as_ref().ok_or_else(closed)
    }

    fn begin_if_needed(&self, dml: bool) -> DbResult<()> {
        let conn = self.conn()?;
        if let Some(level) = &self.isolation {
            if dml && conn.is_autocommit() {
                let begin = if level.is_empty() {
                    "BEGIN".to_owned()
                } else {
                    format!("BEGIN {level}")
                };
                conn.execute_batch(&begin)
                    .map_err(|e| map_error(e, Some(&begin)))?;
            }
        }
        Ok(())
    }
}

impl DriverConnection for SqliteConnection {
    fn execute(&mut self, sql: &str, params: &Params) -> DbResult<ExecResult> {
        let dml = is_dml(sql);
        self.begin_if_needed(dml)?;
        let conn = self.conn.as_ref().ok_or_else(closed)?;
        let mut stmt = conn
            .prepare_cached(sql)
            .map_err(|e| map_error(e, Some(sql)))?;
        bind(&mut stmt, params, sql)?;
        let ncols = stmt.column_count();
        if ncols == 0 {
            let changed = stmt.raw_execute().map_err(|e| map_error(e, Some(sql)))?;
            return Ok(ExecResult {
                description: None,
                rows: Vec::new(),
                rowcount: if dml {
                    i64::try_from(changed).unwrap_or(i64::MAX)
                } else {
                    -1
                },
                lastrowid: dml.then(|| conn.last_insert_rowid()),
            });
        }
        let mut rows = Vec::new();
        let mut q = stmt.raw_query();
        while let Some(row) = q.next().map_err(|e| map_error(e, Some(sql)))? {
            // Counted after the step: a cached statement is recompiled by its
            // first step after a schema change, and `SELECT *` may have
            // gained or lost columns (CPython reads them after the step too).
            let ncols = row.as_ref().column_count();
            let mut values = Vec::with_capacity(ncols);
            for i in 0..ncols {
                let v = row.get_ref(i).map_err(|e| map_error(e, Some(sql)))?;
                values.push(value_of(v, i)?);
            }
            rows.push(Row::new(values));
        }
        drop(q);
        let description = self.descriptions.get(sql, &stmt);
        Ok(ExecResult {
            description: Some(description),
            rows,
            rowcount: -1,
            lastrowid: None,
        })
    }

    fn executemany(&mut self, sql: &str, seq: &[Params]) -> DbResult<ExecResult> {
        let mut total = 0i64;
        let mut last = None;
        for p in seq {
            let r = self.execute(sql, p)?;
            if r.description.is_some() {
                return Err(DbError::new(
                    ErrorKind::ProgrammingError,
                    "executemany() can only execute DML statements.",
                )
                .with_sql(sql));
            }
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
        let conn = self.conn()?;
        if !conn.is_autocommit() {
            conn.execute_batch("COMMIT")
                .map_err(|e| map_error(e, Some("COMMIT")))?;
        }
        Ok(())
    }

    fn rollback(&mut self) -> DbResult<()> {
        let conn = self.conn()?;
        if !conn.is_autocommit() {
            conn.execute_batch("ROLLBACK")
                .map_err(|e| map_error(e, Some("ROLLBACK")))?;
        }
        Ok(())
    }

    fn close(&mut self) -> DbResult<()> {
        match self.conn.take() {
            Some(c) => c.close().map_err(|(_, e)| map_error(e, None)),
            None => Ok(()),
        }
    }

    fn canceller(&self) -> Option<Arc<dyn StatementCanceller>> {
        Some(Arc::clone(&self.interrupt) as Arc<dyn StatementCanceller>)
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

/// Maps a rusqlite error onto a PEP 249 kind, as CPython's `sqlite3` maps
/// SQLite result codes.
pub(crate) fn map_error(e: rusqlite::Error, sql: Option<&str>) -> DbError {
    use rusqlite::Error as E;
    let (kind, code) = match &e {
        E::SqliteFailure(f, _) => {
            let kind = match f.code {
                ErrorCode::ConstraintViolation | ErrorCode::TypeMismatch => {
                    ErrorKind::IntegrityError
                }
                ErrorCode::TooBig => ErrorKind::DataError,
                ErrorCode::InternalMalfunction | ErrorCode::NotFound | ErrorCode::OutOfMemory => {
                    ErrorKind::InternalError
                }
                ErrorCode::ApiMisuse | ErrorCode::ParameterOutOfRange => ErrorKind::InterfaceError,
                ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => ErrorKind::DatabaseError,
                _ => ErrorKind::OperationalError,
            };
            (kind, Some(f.extended_code.to_string()))
        }
        E::SqlInputError { error, .. } => (
            ErrorKind::OperationalError,
            Some(error.extended_code.to_string()),
        ),
        E::MultipleStatement => {
            let d = DbError::new(
                ErrorKind::ProgrammingError,
                "You can only execute one statement at a time.",
            );
            return match sql {
                Some(s) => d.with_sql(s),
                None => d,
            };
        }
        E::InvalidParameterCount(..) | E::InvalidParameterName(_) => {
            (ErrorKind::ProgrammingError, None)
        }
        E::InvalidColumnType(..)
        | E::IntegralValueOutOfRange(..)
        | E::FromSqlConversionFailure(..) => (ErrorKind::DataError, None),
        E::ToSqlConversionFailure(_) | E::NulError(_) | E::InvalidPath(_) => {
            (ErrorKind::InterfaceError, None)
        }
        _ => (ErrorKind::DatabaseError, None),
    };
    let message = match &e {
        E::SqliteFailure(_, Some(msg)) => msg.clone(),
        other => other.to_string(),
    };
    let mut d = DbError::new(kind, message);
    if let Some(c) = code {
        d = d.with_code(c);
    }
    if let Some(s) = sql {
        d = d.with_sql(s);
    }
    d.with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_keyword_skips_comments_and_space() {
        assert_eq!(first_keyword("  -- c\n /* x */ insert into t"), "insert");
        assert!(is_dml("\n\tUPDATE t SET x=1"));
        assert!(is_dml("replace into t values (1)"));
        assert!(!is_dml("SELECT 1"));
        assert!(!is_dml("create table t (x)"));
        assert!(!is_dml("-- only a comment"));
    }

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
        for i in 0..(DESCRIPTIONS * 2) {
            c.execute(&format!("SELECT a AS col{i} FROM t"), ())
                .unwrap();
            assert_eq!(names(&c), [format!("col{i}")]);
        }
        c.execute("SELECT * FROM t", ()).unwrap();
        assert_eq!(names(&c), ["a", "b", "c"]);
    }
}
