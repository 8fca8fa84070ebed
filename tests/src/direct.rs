//! Helpers for tests that use DB-API connections directly, outside any
//! pool: open a `sqlite3` connection, run a statement for its rows or its
//! error, count, and show an error as a traceback would.

use adbapi::dbapi::{self, DbConnection, DbError, Params, Row, Value};

/// A direct `sqlite3` connection to `path` with keyword arguments.
pub fn sqlite(path: &str, kwargs: &[(&str, Value)]) -> DbConnection {
    dbapi::connect("sqlite3", &[path.into()], kwargs)
        .unwrap_or_else(|e| panic!("connect {path}: {e}"))
}

/// The integer in the first column of the first row of `sql`.
pub fn count(c: &DbConnection, sql: &str) -> i64 {
    let mut cur = c.cursor().expect("cursor");
    cur.execute(sql, ())
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let rows = cur.fetchall().expect("fetchall");
    rows[0].get::<i64>(0).expect("an integer")
}

/// Executes `sql` (without committing) and returns its rows' values (none
/// for a statement without a description), or its error.
pub fn exec(c: &DbConnection, sql: &str, p: impl Into<Params>) -> Result<Vec<Vec<Value>>, DbError> {
    let mut cur = c.cursor()?;
    cur.execute(sql, p)?;
    if cur.description().is_none() {
        return Ok(Vec::new());
    }
    Ok(cur.fetchall()?.into_iter().map(Row::into_values).collect())
}

/// Every text an error shows, its own `Display` and each source's in the
/// chain (what a traceback prints), one per line, and the longest of them
/// in bytes (the typed errors of the chain repeat the message).
pub fn shown_with_sources(e: &DbError) -> (String, usize) {
    let mut shown = e.to_string();
    let mut longest = shown.len();
    let mut cur = std::error::Error::source(e);
    while let Some(s) = cur {
        let text = s.to_string();
        longest = longest.max(text.len());
        shown.push('\n');
        shown.push_str(&text);
        cur = s.source();
    }
    (shown, longest)
}
