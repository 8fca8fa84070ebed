//! Running one statement on a SQLite connection: preparing it (through the
//! statement cache unless it is huge), taking the writer gate and beginning
//! the transaction before a write, binding, stepping, and reading rows and
//! counts; and the checks `executemany` makes before anything runs.

use std::ops::{Deref, DerefMut};

use super::descriptions::Descriptions;
use super::errors::map_error;
use super::gate::Writer;
use super::sql::Shape;
use super::values::{bind, value_of};
use super::CACHED_SQL_MAX;
use crate::dbapi::{DbError, DbResult, ErrorKind, ExecResult, Params, Row};

/// A prepared statement, from the cache or not.
enum Prepared<'c> {
    Cached(rusqlite::CachedStatement<'c>),
    Fresh(rusqlite::Statement<'c>),
}

impl<'c> Deref for Prepared<'c> {
    type Target = rusqlite::Statement<'c>;

    fn deref(&self) -> &Self::Target {
        match self {
            Prepared::Cached(s) => s,
            Prepared::Fresh(s) => s,
        }
    }
}

impl DerefMut for Prepared<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match self {
            Prepared::Cached(s) => s,
            Prepared::Fresh(s) => s,
        }
    }
}

/// Prepares `sql`, through the statement cache unless it is longer than
/// [`CACHED_SQL_MAX`]. `None` for empty or comment-only SQL.
fn prepare<'c>(conn: &'c rusqlite::Connection, sql: &str) -> DbResult<Option<Prepared<'c>>> {
    let r = if sql.len() <= CACHED_SQL_MAX {
        conn.prepare_cached(sql).map(Prepared::Cached)
    } else {
        conn.prepare(sql).map(Prepared::Fresh)
    };
    match r {
        Ok(s) => Ok(Some(s)),
        Err(rusqlite::Error::Empty) => Ok(None),
        Err(e) => Err(map_error(e, Some(sql))),
    }
}

#[cfg(test)]
thread_local! {
    /// Whether the last statement prepared on this thread was one used
    /// before (SQLite's run counter of a fresh statement is 0).
    pub(super) static REUSED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `BEGIN` of the `isolation_level` flavour (`""` = deferred).
fn begin(conn: &rusqlite::Connection, level: &str) -> DbResult<()> {
    let begin = if level.is_empty() {
        "BEGIN".to_owned()
    } else {
        format!("BEGIN {level}")
    };
    conn.execute_batch(&begin)
        .map_err(|e| map_error(e, Some(&begin)))
}

/// Runs one statement: takes the writer gate and begins a transaction first
/// if it writes. `asked` is the cancel generation when the statement
/// started. The caller gives the gate back if the connection ends up outside
/// a transaction.
pub(super) fn run(
    conn: &rusqlite::Connection,
    isolation: Option<&str>,
    writer: &mut Writer,
    descriptions: &mut Descriptions,
    sql: &str,
    params: &Params,
    asked: u64,
) -> DbResult<ExecResult> {
    let Some(mut stmt) = prepare(conn, sql)? else {
        return Ok(ExecResult {
            description: None,
            rows: Vec::new(),
            rowcount: -1,
            lastrowid: None,
        });
    };
    #[cfg(test)]
    REUSED.with(|r| r.set(stmt.get_status(rusqlite::StatementStatus::Run) > 0));
    bind(&mut stmt, params, sql)?;
    let shape = Shape::of(sql);
    let writes = !stmt.readonly();
    if writes || shape.locks_for_writing {
        writer.acquire(asked).map_err(|e| e.with_sql(sql))?;
    }
    if writes && shape.implicit_begin && conn.is_autocommit() {
        if let Some(level) = isolation {
            begin(conn, level)?;
        }
    }
    let dml = writes && shape.dml;
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
        let row_stmt = row.as_ref();
        let ncols = row_stmt.column_count();
        let mut values = Vec::with_capacity(ncols);
        for i in 0..ncols {
            let v = row.get_ref(i).map_err(|e| map_error(e, Some(sql)))?;
            values.push(value_of(v, i, || row_stmt.column_name(i).unwrap_or("?"))?);
        }
        rows.push(Row::new(values));
    }
    drop(q);
    let description = descriptions.get(sql, &stmt);
    Ok(ExecResult {
        description: Some(description),
        rows,
        // `INSERT ... RETURNING` and the like: complete once every row is
        // read.
        rowcount: if dml {
            i64::try_from(conn.changes()).unwrap_or(i64::MAX)
        } else {
            -1
        },
        lastrowid: dml.then(|| conn.last_insert_rowid()),
    })
}

/// Prepares `sql` for `executemany` and refuses what it cannot run: a
/// read-only statement, as CPython refuses it (`sqlite3_stmt_readonly`,
/// same message), and one that returns rows (`INSERT ... RETURNING`), which
/// CPython refuses only when its first run returns a row, after writing it;
/// here nothing has run yet. Empty SQL passes (it does nothing).
pub(super) fn check_many(conn: &rusqlite::Connection, sql: &str) -> DbResult<()> {
    let Some(stmt) = prepare(conn, sql)? else {
        return Ok(());
    };
    if stmt.readonly() {
        return Err(DbError::new(
            ErrorKind::ProgrammingError,
            "executemany() can only execute DML statements.",
        )
        .with_sql(sql));
    }
    if stmt.column_count() > 0 {
        return Err(DbError::new(
            ErrorKind::ProgrammingError,
            "executemany() can only execute DML statements. This one returns rows (RETURNING): \
             run it with execute() once per parameter set",
        )
        .with_sql(sql));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dbapi::Value;

    /// Statements longer than `CACHED_SQL_MAX` are not kept by the statement
    /// cache (SQLite's run counter says each execution prepared a new one)
    /// nor by the description cache, while short ones still are.
    #[test]
    fn huge_statements_are_not_cached() {
        let conn = crate::dbapi::connect("sqlite3", &[Value::from(":memory:")], &[]).unwrap();
        let mut c = conn.cursor().unwrap();
        let reused = || REUSED.with(std::cell::Cell::get);
        let short = "SELECT 1 AS a";
        c.execute(short, ()).unwrap();
        assert!(!reused(), "first use");
        c.execute(short, ()).unwrap();
        assert!(reused(), "a short statement is cached");
        let huge = |i: usize| format!("SELECT '{}' AS big{i}", "x".repeat(CACHED_SQL_MAX));
        for round in 0..2 {
            for i in 0..40 {
                c.execute(&huge(i), ()).unwrap();
                assert!(!reused(), "round {round}: huge statement {i} was kept");
                assert_eq!(c.fetchall().unwrap()[0].len(), 1);
            }
        }
        c.execute(short, ()).unwrap();
        assert!(reused(), "the short statement is still cached");
        c.execute(&huge(0)[..CACHED_SQL_MAX], ()).unwrap_err();

        let raw = rusqlite::Connection::open_in_memory().unwrap();
        let mut d = Descriptions::default();
        let sql = huge(1);
        d.get(&sql, &raw.prepare(&sql).unwrap());
        assert_eq!(d.sql_bytes(), 0, "the description cache keeps no huge SQL");
        d.get(short, &raw.prepare(short).unwrap());
        assert_eq!(d.sql_bytes(), short.len());
    }
}
