//! [`Cursor`]: PEP 249's `Cursor`, the same for every driver.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use super::{Column, DbConnection, DbError, DbResult, ErrorKind, ExecResult, Params, Row};

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
    pub(super) fn new(conn: DbConnection) -> Self {
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
        self.conn.begin_statement(sql)?;
        let params = params.into();
        let r = self.conn.with_driver(|d| d.execute(sql, &params))?;
        self.load(r);
        Ok(self)
    }

    /// Executes one statement as the whole of its transaction: the caller
    /// commits or rolls back right after (see
    /// [`DbConnection::execute_alone`]). Not in PEP 249.
    pub(crate) fn execute_alone(&mut self, sql: &str, params: Params) -> DbResult<&mut Self> {
        self.check()?;
        let r = self.conn.execute_alone(sql, &params)?;
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
        self.conn.begin_statement(sql)?;
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
