//! The MySQL/MariaDB driver (feature `mysql`), on the synchronous, pure-Rust
//! `mysql` crate (no OpenSSL, no C build). Registered as `"pymysql"`,
//! `"MySQLdb"`, `"mysql.connector"` and `"mysql"`, so
//! `ConnectionPool::new("pymysql", ...)` ports as is.
//!
//! # Connect arguments
//! As pymysql's `Connection(**kwargs)` and MySQLdb's `connect(...)`:
//!
//! | argument | meaning |
//! |---|---|
//! | `host`, `port` | TCP; default `localhost:3306` |
//! | `user`, `password` (or `passwd`) | the account (default user: `$USER`) |
//! | `database` (or `db`) | the default database |
//! | `unix_socket` | a Unix socket path instead of TCP |
//! | `charset` | `utf8mb4` (default), `utf8` or `utf8mb3`; others are a `NotSupportedError` |
//! | `connect_timeout`, `read_timeout`, `write_timeout` | seconds, `> 0` (connect default 10, as pymysql) |
//! | `autocommit` | `False` (default, as pymysql) or `True` |
//! | `init_command` | SQL run once per new connection |
//! | `sql_mode` | the session's `sql_mode` |
//! | `cursorclass` | `Cursor` or `DictCursor` (see Rows) |
//! | `url` (or a first positional `mysql://user:pw@host:port/db`) | an extension: all of the above in one URL; keywords override it |
//!
//! Positional arguments follow MySQLdb: `host, user, passwd, db, port`.
//! Anything else is a `ProgrammingError` naming the argument.
//!
//! # Parameters
//! `paramstyle` is pymysql's `pyformat` (`format` for MySQLdb): `%s`,
//! `%(name)s`, `%%`, translated by the translator the PostgreSQL driver
//! shares to `?` placeholders of a **server-side prepared statement**
//! (the binary protocol); values are always bound, never spliced into the
//! SQL. Why prepared statements rather than pymysql's client-side escaping:
//! escaping is correct only for the session's charset and `sql_mode`
//! (`NO_BACKSLASH_ESCAPES` changes the rules), which an `init_command` or a
//! statement may change behind the driver's back; a bound value cannot be
//! misread whatever the session state. The `mysql` crate caches prepared
//! statements per connection. A statement without parameters goes as plain
//! text (`COM_QUERY`), as pymysql sends every statement, so statements MySQL
//! cannot prepare still run. Differences from pymysql: a `%s` inside a
//! string literal, a quoted identifier or a comment is not a parameter; a
//! `?` outside a literal is a `ProgrammingError` when parameters are given
//! (the server would take it for a placeholder); lexing follows the default
//! `sql_mode` (backslash escapes in `'..'` and `".."`, `` `ident` ``).
//!
//! A `Bytes` value is bound as a binary string (its placeholder is sent as
//! `CAST(? AS BINARY)`), as pymysql sends bytes as `_binary'...'`: `SELECT
//! %s` of bytes gives `Bytes` back, and bytes stored in a text column are
//! checked as that column's charset (with the default strict `sql_mode`,
//! bytes that are not UTF-8 are refused with 1366, a `DataError`).
//!
//! Several statements in one call are a `ProgrammingError` before anything
//! is sent (pymysql does not enable `CLIENT.MULTI_STATEMENTS` either, so the
//! server would refuse them); a NUL character in the SQL too. SQL holding no
//! statement (empty, whitespace, comments or semicolons only) is the
//! server's `OperationalError` 1065 "Query was empty", whatever the server
//! would make of it. A statement or a parameter larger than the session's
//! `max_allowed_packet` is an `OperationalError` 1153 naming the limit,
//! raised before anything is sent (the server would close the session).
//!
//! # Rows
//! Rows are the tuple-like [`Row`]; every row fetched through a cursor also
//! reads by column name ([`Row::get_by_name`]), which is what pymysql's
//! `cursorclass=DictCursor` gives. Both cursor classes are accepted and give
//! the same rows; the unbuffered `SSCursor`s are a `NotSupportedError`.
//! See [`values`] for the value mapping.
//!
//! # Transactions
//! As pymysql: the session runs with `autocommit=0` (unless `autocommit=True`),
//! so InnoDB opens a transaction at the first statement; `commit` sends
//! `COMMIT`, `rollback` `ROLLBACK`. MySQL commits implicitly around DDL
//! (`CREATE TABLE`...), which no driver can undo.
//!
//! # Cancelling a statement
//! [`StatementCanceller::cancel`] sends `KILL QUERY <connection id>` on a
//! side connection; the statement fails with 1317 (`ER_QUERY_INTERRUPTED`,
//! an `OperationalError`). Like PostgreSQL's cancel request, the kill is
//! asynchronous to the job: it may arrive after the statement it was meant
//! for has finished and land on whatever runs next on that session. So, as
//! the PostgreSQL driver does, a connection a kill was sent on never starts
//! another transaction: its `rollback` (the pool always rolls back a
//! cancelled job) and the first statement of a new transaction close the
//! session instead (the server rolls back what was open) and fail with an
//! `OperationalError` marked as a lost connection; the pool discards it and
//! connects afresh. One cancelled job costs one reconnect, and a kill can
//! only ever interrupt the job it was sent for.
//!
//! # Errors
//! Server errors map to PEP 249 kinds as pymysql's `_map_error` does (see
//! [`errors::kind_for_errno`]); the MySQL error number is the error's
//! `code`. 2006, 2013, 2003, 4031, MariaDB's 1927, I/O and protocol errors
//! mark the connection lost ([`errors::errno_is_disconnect`]); so does a
//! server that closed an idle session (`wait_timeout`), found at the next
//! statement.

mod cancel;
mod connect;
pub mod errors;
mod timeout;
pub mod values;

use std::sync::Arc;

use mysql::prelude::Queryable;
use mysql::Conn;

use self::cancel::KillCanceller;
use self::errors::map_error;
use super::pyformat::{span_at, statement_count_for, translate_for, Dialect};
use crate::dbapi::{
    Column, ConnectArgs, DbApiModule, DbError, DbResult, DriverConnection, ErrorKind, ExecResult,
    Params, Row, StatementCanceller, Value,
};

/// The names the driver is registered under.
pub const MODULE_NAMES: [&str; 4] = ["pymysql", "MySQLdb", "mysql.connector", "mysql"];

/// The (name, module) pairs this driver registers, for the crate root's
/// registry.
pub(crate) fn modules() -> Vec<(&'static str, std::sync::Arc<dyn crate::dbapi::DbApiModule>)> {
    MODULE_NAMES
        .into_iter()
        .map(|name| {
            let module: std::sync::Arc<dyn crate::dbapi::DbApiModule> =
                std::sync::Arc::new(MysqlModule::named(name));
            (name, module)
        })
        .collect()
}

/// The MySQL/MariaDB module, registered under [`MODULE_NAMES`]. Mirrors
/// `pymysql` (and `MySQLdb`, `mysql.connector`).
#[derive(Debug, Clone)]
pub struct MysqlModule {
    name: &'static str,
}

impl MysqlModule {
    /// The module under the name `name`.
    pub fn named(name: &'static str) -> Self {
        MysqlModule { name }
    }
}

impl DbApiModule for MysqlModule {
    fn name(&self) -> &str {
        self.name
    }

    fn threadsafety(&self) -> Option<i64> {
        Some(1)
    }

    fn paramstyle(&self) -> &str {
        if self.name == "MySQLdb" {
            "format"
        } else {
            "pyformat"
        }
    }

    fn connect(&self, args: &ConnectArgs) -> DbResult<Box<dyn DriverConnection>> {
        let s = connect::settings(self.name, args)?;
        let conn = Conn::new(s.opts.clone()).map_err(|e| map_error(e, None))?;
        let canceller = Arc::new(KillCanceller::new(&s.opts, conn.connection_id()));
        let mut conn = conn;
        // The session value is read-only once connected, so one look is
        // exact for the connection's life.
        let max_packet = conn
            .query_first::<u64, _>("SELECT @@max_allowed_packet")
            .map_err(|e| map_error(e, Some("SELECT @@max_allowed_packet")))?
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(usize::MAX);
        Ok(Box::new(MyConnection {
            conn: Some(conn),
            max_packet,
            in_transaction: false,
            autocommit: s.autocommit,
            canceller,
        }))
    }
}

struct MyConnection {
    /// `None` once closed or discarded.
    conn: Option<Conn>,
    /// A statement ran since the last successful `COMMIT`/`ROLLBACK`.
    in_transaction: bool,
    autocommit: bool,
    canceller: Arc<KillCanceller>,
    /// The session's `max_allowed_packet`: no packet the driver sends, and
    /// no parameter sent in pieces, may be larger.
    max_packet: usize,
}

fn closed() -> DbError {
    DbError::new(
        ErrorKind::InterfaceError,
        "(0, '') connection already closed",
    )
    .with_connection_lost(true)
}

fn programming(msg: impl Into<String>, sql: &str) -> DbError {
    DbError::new(ErrorKind::ProgrammingError, msg).with_sql(sql)
}

impl MyConnection {
    fn conn(&mut self) -> DbResult<&mut Conn> {
        self.conn.as_mut().ok_or_else(closed)
    }

    /// Closes the session for good: the server rolls back whatever was open.
    /// Later calls fail with a lost-connection error, so the pool replaces it.
    fn discard(&mut self, why: &str) {
        tracing::warn!(why, "mysql connection discarded");
        self.in_transaction = false;
        // Dropping the crate's connection ends the session (COM_QUIT, best
        // effort on a broken socket).
        self.conn = None;
    }

    /// After an error: a lost session is dropped at once, so later calls
    /// fail fast instead of writing to a dead socket.
    fn after_error(&mut self, e: DbError) -> DbError {
        if e.is_connection_lost() {
            self.discard("the connection was lost");
        }
        e
    }

    /// Refuses, before anything is sent, a statement or parameter the server
    /// would not take. The server answers an oversized packet with 1153 and
    /// closes the session, and a parameter sent in pieces beyond the limit
    /// desynchronises the protocol; either way the worker would lose its
    /// connection to one bad value. pymysql lets the server refuse (1153, an
    /// `OperationalError`): the same kind and number here, the session kept.
    fn check_sizes(&self, sql: &str, sent: &str, values: &[mysql::Value]) -> DbResult<()> {
        let too_big = |what: String, len: usize| {
            DbError::new(
                ErrorKind::OperationalError,
                format!(
                    "{what} is {len} bytes, more than the server's max_allowed_packet ({} bytes): nothing was                      sent (raise max_allowed_packet on the server, or send the value in smaller pieces)",
                    self.max_packet
                ),
            )
            .with_code("1153")
            .with_sql(sql)
        };
        // COM_QUERY and COM_STMT_PREPARE: a command byte and the SQL.
        if sent.len() + 1 > self.max_packet {
            return Err(too_big("the statement".to_owned(), sent.len()));
        }
        if values.is_empty() {
            return Ok(());
        }
        // COM_STMT_EXECUTE as the `mysql` crate builds it: parameters go
        // inline unless the packet would exceed one protocol payload, then
        // every string parameter goes in pieces (COM_STMT_SEND_LONG_DATA),
        // each of which the server caps at max_allowed_packet.
        let data: u64 = values.iter().map(mysql::Value::bin_len).sum();
        let total = 11 + values.len().div_ceil(8) + 2 * values.len();
        let total = usize::try_from(data)
            .unwrap_or(usize::MAX)
            .saturating_add(total);
        if total <= mysql::consts::MAX_PAYLOAD_LEN {
            if total > self.max_packet {
                return Err(too_big(
                    format!("the statement's {} parameters together", values.len()),
                    total,
                ));
            }
            return Ok(());
        }
        for (i, v) in values.iter().enumerate() {
            if let mysql::Value::Bytes(b) = v {
                if b.len() > self.max_packet {
                    return Err(too_big(format!("parameter {}", i + 1), b.len()));
                }
            }
        }
        Ok(())
    }

    fn check_no_kill_in_flight(&mut self, sql: &str) -> DbResult<()> {
        if !self.canceller.was_sent() {
            return Ok(());
        }
        let why = "a KILL QUERY was sent for this connection and could land on a later statement, so the \
                   connection was closed (the server rolled back what was open); reconnect";
        self.discard(why);
        Err(DbError::new(ErrorKind::OperationalError, why)
            .with_sql(sql)
            .with_connection_lost(true))
    }

    fn simple(&mut self, sql: &str) -> DbResult<()> {
        let res = self.conn()?.query_drop(sql);
        res.map_err(|e| map_error(e, Some(sql)))
    }

    fn run(&mut self, sql: &str, sent: &str, values: Vec<mysql::Value>) -> DbResult<ExecResult> {
        let conn = self.conn()?;
        let mut columns: Vec<mysql::Column> = Vec::new();
        let mut raw: Vec<Vec<mysql::Value>> = Vec::new();
        let mut has_set = false;
        {
            let mut collect = |res: Result<mysql::Row, mysql::Error>| -> DbResult<()> {
                let row = res.map_err(|e| map_error(e, Some(sql)))?;
                raw.push(row.unwrap());
                Ok(())
            };
            if values.is_empty() {
                let mut result = conn.query_iter(sent).map_err(|e| map_error(e, Some(sql)))?;
                if let Some(set) = result.iter() {
                    columns = set.columns().as_ref().to_vec();
                    has_set = !columns.is_empty();
                    for r in set {
                        collect(r)?;
                    }
                };
            } else {
                let mut result = conn
                    .exec_iter(sent, mysql::Params::Positional(values))
                    .map_err(|e| map_error(e, Some(sql)))?;
                if let Some(set) = result.iter() {
                    columns = set.columns().as_ref().to_vec();
                    has_set = !columns.is_empty();
                    for r in set {
                        collect(r)?;
                    }
                };
            }
        }
        if !has_set {
            let n = conn.affected_rows();
            let id = conn.last_insert_id();
            return Ok(ExecResult {
                description: None,
                rows: Vec::new(),
                rowcount: i64::try_from(n).unwrap_or(i64::MAX),
                lastrowid: i64::try_from(id).ok().filter(|&i| i != 0),
            });
        }
        for c in &columns {
            values::check_supported(c).map_err(|e| e.with_sql(sql))?;
        }
        let mut rows = Vec::with_capacity(raw.len());
        for r in raw {
            let mut out = Vec::with_capacity(columns.len());
            for (v, c) in r.into_iter().zip(&columns) {
                out.push(values::decode(v, c).map_err(|e| e.with_sql(sql))?);
            }
            rows.push(Row::new(out));
        }
        Ok(ExecResult {
            description: Some(
                columns
                    .iter()
                    .map(|c| Column {
                        name: c.name_str().into_owned(),
                        type_code: Some(values::type_name(c)),
                    })
                    .collect(),
            ),
            rowcount: i64::try_from(rows.len()).unwrap_or(i64::MAX),
            rows,
            lastrowid: None,
        })
    }
}

/// `sent` (translated, with one `?` per value) with the placeholder of every
/// `Bytes` value written `CAST(? AS BINARY)`. The binary protocol types a
/// string parameter as text in the connection's charset, so `SELECT %s` of
/// bytes that are not UTF-8 came back as an unreadable text column; pymysql
/// sends bytes as `_binary'...'`, which the cast mirrors: the value is a
/// binary string wherever it appears (an expression's result comes back as
/// `Bytes`; stored in a text column it is checked as that column's
/// charset).
fn binary_placeholders<'a>(sent: &'a str, values: &[&Value]) -> std::borrow::Cow<'a, str> {
    if !values.iter().any(|v| matches!(v, Value::Bytes(_))) {
        return std::borrow::Cow::Borrowed(sent);
    }
    let b = sent.as_bytes();
    let mut out = String::with_capacity(sent.len() + 16 * values.len());
    let (mut i, mut copied, mut k) = (0, 0, 0);
    while i < b.len() {
        if let Some((_, end)) = span_at(sent, i, Dialect::MySql) {
            i = end;
            continue;
        }
        if b[i] == b'?' {
            // The translator refuses a bare `?`, so every one outside a
            // literal, quoted name or comment is the k-th placeholder.
            if matches!(values.get(k), Some(Value::Bytes(_))) {
                out.push_str(&sent[copied..i]);
                out.push_str("CAST(? AS BINARY)");
                copied = i + 1;
            }
            k += 1;
        }
        i += 1;
    }
    out.push_str(&sent[copied..]);
    std::borrow::Cow::Owned(out)
}

impl DriverConnection for MyConnection {
    fn execute(&mut self, sql: &str, params: &Params) -> DbResult<ExecResult> {
        if sql.contains('\0') {
            return Err(programming(
                "the query contains a NUL character (0x00); pass such data as a parameter",
                sql,
            ));
        }
        let statements = statement_count_for(sql, Dialect::MySql);
        if statements > 1 {
            return Err(programming(
                format!(
                    "the query holds multiple statements ({statements}); MySQL runs one statement per call \
                     (multi-statements are not enabled, as in pymysql): execute them one by one"
                ),
                sql,
            ));
        }
        let t = translate_for(sql, params, Dialect::MySql)?;
        // pymysql formats first, so wrong parameters are reported before an
        // empty query. MariaDB runs SQL holding only comments as a no-op and
        // refuses "" and ";;" with 1065: one answer for all of them. An
        // executable comment (`/*! ... */`, `/*M! ... */`) is SQL to the
        // server, though the lexer sees a comment.
        if statements == 0 && !sql.contains("/*!") && !sql.contains("/*M!") {
            return Err(DbError::new(
                ErrorKind::OperationalError,
                "(1065, 'Query was empty'): the SQL holds no statement, only whitespace, comments or semicolons",
            )
            .with_code("1065")
            .with_sql(sql));
        }
        let values = t
            .values
            .iter()
            .map(|v| values::encode(v))
            .collect::<DbResult<Vec<_>>>()
            .map_err(|e| e.with_sql(sql))?;
        let sent = binary_placeholders(&t.sql, &t.values);
        if values.len() > usize::from(u16::MAX) {
            return Err(programming(
                format!(
                    "the query has {} parameters; MySQL's protocol carries at most 65535",
                    values.len()
                ),
                sql,
            ));
        }
        self.check_sizes(sql, &sent, &values)?;
        if !self.in_transaction {
            self.check_no_kill_in_flight(sql)?;
        }
        self.in_transaction = true;
        let res = self.run(sql, &sent, values);
        res.map_err(|e| self.after_error(e))
    }

    fn commit(&mut self) -> DbResult<()> {
        if !self.in_transaction {
            return Ok(());
        }
        match self.simple("COMMIT") {
            Ok(()) => {
                self.in_transaction = false;
                Ok(())
            }
            Err(e) => {
                let e = self.after_error(e);
                if self.conn.is_some() && self.simple("ROLLBACK").is_ok() {
                    self.in_transaction = false;
                } else if self.conn.is_some() {
                    self.discard("COMMIT and the ROLLBACK after it failed");
                }
                Err(e)
            }
        }
    }

    fn rollback(&mut self) -> DbResult<()> {
        self.check_no_kill_in_flight("ROLLBACK")?;
        if !self.in_transaction {
            return Ok(());
        }
        match self.simple("ROLLBACK") {
            Ok(()) => {
                self.in_transaction = false;
                Ok(())
            }
            Err(e) => {
                self.discard("ROLLBACK failed");
                Err(e.with_connection_lost(true))
            }
        }
    }

    fn close(&mut self) -> DbResult<()> {
        self.in_transaction = false;
        self.conn = None;
        Ok(())
    }

    fn check_cursor(&mut self) -> DbResult<()> {
        self.conn().map(|_| ())
    }

    fn autocommit(&self) -> bool {
        self.autocommit
    }

    fn set_autocommit(&mut self, on: bool) -> DbResult<()> {
        let sql = if on {
            "SET autocommit = 1"
        } else {
            "SET autocommit = 0"
        };
        self.simple(sql).map_err(|e| self.after_error(e))?;
        // Turning autocommit on commits what was open, as the server does.
        if on {
            self.in_transaction = false;
        }
        self.autocommit = on;
        Ok(())
    }

    fn canceller(&self) -> Option<Arc<dyn StatementCanceller>> {
        Some(Arc::clone(&self.canceller) as Arc<dyn StatementCanceller>)
    }

    fn set_statement_timeout(&mut self, limit: Option<std::time::Duration>) -> DbResult<()> {
        let r = timeout::apply(self.conn()?, limit);
        r.map_err(|e| self.after_error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_placeholders_of_bytes_become_binary() {
        let (b, i) = (Value::Bytes(vec![0xff]), Value::Int(1));
        assert_eq!(
            binary_placeholders("SELECT ?, '?', `?`, ? /* ? */", &[&i, &b]),
            "SELECT ?, '?', `?`, CAST(? AS BINARY) /* ? */"
        );
        assert_eq!(binary_placeholders("SELECT ?", &[&i]), "SELECT ?");
    }
}
