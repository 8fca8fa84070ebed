//! The PostgreSQL driver (feature `postgres`), on the synchronous `postgres`
//! crate. Registered as `"psycopg2"` and `"postgres"`, so
//! `ConnectionPool::new("psycopg2", ...)` ports as is.
//!
//! # Connect arguments
//! As `psycopg2.connect(dsn=None, **kwargs)`:
//!
//! | argument | meaning |
//! |---|---|
//! | `dsn` (or the first positional argument) | a URL (`postgresql://user:pw@host:port/db?...`) or `key=value` string |
//! | `host`, `port`, `user`, `password` | the usual; `host` may be a Unix socket directory |
//! | `dbname` or `database` | the database |
//! | `connect_timeout` | seconds |
//! | `sslmode` | `disable`, `allow` or `prefer` (TLS is not built in: `require`/`verify-*` are a `NotSupportedError`) |
//! | `application_name` | shown in `pg_stat_activity` |
//! | `options` | server settings for the session, e.g. `-c search_path=app` |
//!
//! Keywords override the DSN. Without `host` the server's Unix socket in
//! `/var/run/postgresql` is used if present, else `localhost`; without `user`,
//! `$USER`. Anything else is a `ProgrammingError` naming the argument.
//!
//! # Parameters
//! `paramstyle` is `pyformat`: `%s` and `%(name)s` are translated to `$n`
//! (a `%s` inside a string literal, a quoted identifier, a comment or a
//! dollar-quoted string is not a parameter; `%%` is a `%`), and native `$1`
//! placeholders are accepted too. Values are always bound, never spliced.
//! See [`types`] for how values map both ways.
//!
//! # Transactions
//! As psycopg2: the first statement on a connection outside a transaction
//! begins one (`BEGIN`); `commit`/`rollback` end it. With
//! [`DbConnection::set_autocommit`](crate::dbapi::DbConnection::set_autocommit)
//! (psycopg2's `autocommit = True`) no transaction is begun.
//!
//! # A statement alone in one round trip
//! The pool's `run_query` and `run_operation` (Twisted's `runQuery` and
//! `runOperation`) run one statement as a whole transaction. Where that is
//! observably the same, the driver sends it without `BEGIN` and `COMMIT`
//! ([`DriverConnection::execute_alone`]): PostgreSQL runs a statement
//! outside a transaction block as a transaction of its own, atomic,
//! committed when it succeeds and rolled back when it fails, so the job is
//! one `Bind`/`Execute`/`Sync` round trip (its statement prepared once per
//! connection, as above) instead of three. Only when all of these hold:
//! the SQL is one statement whose first keyword is `SELECT`, `INSERT`,
//! `UPDATE`, `DELETE`, `WITH`, `VALUES` or `TABLE` (not transaction control,
//! `LOCK`, `DECLARE`, `VACUUM`...); the connection is not in autocommit
//! mode, not in a transaction, and known to be idle on the server (a
//! statement run in autocommit mode may have opened a block: the driver
//! waits for its own next `COMMIT` or `ROLLBACK`); no cancel request was
//! sent on it; and the server's text decodes as UTF-8 (not `SQL_ASCII`), so
//! no decoding error can follow the commit. Otherwise the job is `BEGIN`,
//! the statement, `COMMIT`, as psycopg2 sends it.
//!
//! Two consequences. The statement is its own commit, so a cancel (or
//! `add_timeout`) while it runs cannot report "nothing committed" at once:
//! the pool sends the cancel request and the Deferred fires once the server
//! has answered, with `CancelledError` if the statement was stopped (and
//! rolled back), with its result if it finished first. Only an error that
//! proves the statement committed nothing becomes `CancelledError` (the
//! driver marks it: the server's `ERROR` for the statement, or a statement
//! never sent); a result that fails to decode after the commit is reported
//! as that error, which says the work committed. And a connection lost
//! while the statement runs leaves the ambiguity of a lost `COMMIT`: the
//! error's message says the statement may have committed.
//!
//! # Prepared statements
//! Single statements are prepared once per connection and kept by their
//! text (at most 256; psycopg2 prepares nothing). When another session
//! changes a table so that a kept statement's result columns change, the
//! server refuses to run it (0A000 "cached plan must not change result
//! type"); 26000 "prepared statement does not exist" means it is gone
//! (`DEALLOCATE`, `DISCARD ALL`). Either way the driver drops it and, if it
//! was the first statement of its transaction (or ran in autocommit mode),
//! rolls back the transaction it began for it, prepares it again and runs
//! it once more. Later in a transaction the earlier statements are lost
//! with the aborted transaction, so that job fails with the error; the next
//! run prepares the statement anew.
//!
//! # Several statements in one query
//! As psycopg2, which sends every query as one simple `Query` message: SQL
//! holding several statements (separated by `;` outside literals, comments
//! and dollar quotes) and no parameters runs through the simple query
//! protocol; `rowcount`, `description` and the rows are the last
//! statement's, as libpq's `PQexec` reports them. Difference: those rows come
//! back as PostgreSQL's text (`Value::Text`, `NULL` as `Null`) and
//! `description`'s `type_code` is `None`, because the simple protocol does
//! not give column types; a single statement stays on the typed, prepared
//! path. With parameters, several statements are a `ProgrammingError` (a
//! prepared statement holds one). SQL holding no statement is psycopg2's
//! `ProgrammingError: can't execute an empty query`, and a NUL character in
//! the SQL a `ProgrammingError` before anything is sent.
//!
//! # Cancelling a statement
//! [`StatementCanceller::cancel`] sends PostgreSQL's `CancelRequest` on a new
//! connection. The server answers nothing: the postmaster's child for that
//! connection signals the backend (`SIGINT`, in PostgreSQL 15 through
//! `signal_child`, which signals the backend and then its process group) and
//! closes the socket. The `postgres` crate returns as soon as the request is
//! written, without waiting for the server to close that socket (libpq's
//! `PQcancel` waits for it precisely so that "we might issue another
//! command only to find that our cancel zaps that command instead"). So the
//! signal can reach the backend after the statement it was meant for has
//! ended, and cancel whatever runs then: the pool's `ROLLBACK` (leaving an
//! aborted transaction open) or the next job's statement. A backend that is
//! idle, reading the next command, ignores a cancel (`ProcessInterrupts`
//! drops it while `DoingCommandRead`), so the danger is a signal arriving
//! after the next command was read; and even a statement that failed with
//! 57014 does not prove that the second signal of the pair is not still on
//! its way.
//!
//! The driver therefore never starts another transaction on a connection a
//! cancel request was sent on: once a request was sent, `rollback` (the
//! pool always rolls back a cancelled job) and the first statement of a new
//! transaction close the session instead (the server rolls back what was
//! open) and fail with an `OperationalError` marked as a lost connection;
//! the pool then discards the connection and the worker's next job connects
//! afresh. One cancelled job costs one reconnect, and a cancel can only ever
//! interrupt the job it was sent for. (The pool sends at most one request per
//! job, and only before the job's own work is over.)
//!
//! # COMMIT and ROLLBACK as SQL
//! A `COMMIT`, `ROLLBACK`, `END`, `ABORT` or `PREPARE TRANSACTION` run as a
//! statement (alone or among several in one query; `ROLLBACK TO SAVEPOINT`
//! and `... AND CHAIN` excepted) ends the transaction the driver began, and
//! the driver notices: the next statement begins a new transaction, which
//! the job's `rollback` undoes, as the `sqlite3` driver behaves. (psycopg2
//! keeps believing its transaction is open, so there the next statements
//! run in autocommit.) The `postgres` crate does not expose the server's
//! transaction status, so the statements' leading keywords are read
//! (outside literals and comments); a `BEGIN` the driver sends into a
//! transaction it missed is only a server warning.
//!
//! # Failed COMMIT and ROLLBACK
//! The driver's idea of "in a transaction" is cleared only when `COMMIT` or
//! `ROLLBACK` succeeded. A failed `COMMIT` is followed by a `ROLLBACK` (the
//! transaction may still be open and aborted); a failed `ROLLBACK` closes
//! the session, as above, so no connection is left whose every later
//! statement fails with 25P02. If a transaction nonetheless is found open
//! and aborted where the driver begins one (25P02 at `BEGIN`, or at the
//! first statement in autocommit mode, e.g. after a hand-written `BEGIN`),
//! the driver rolls it back and tries once more. Inside a transaction it
//! began, 25P02 is the caller's (a retry would silently drop the
//! transaction's earlier statements).
//!
//! # Errors
//! Server errors map to PEP 249 kinds by SQLSTATE class, as psycopg2 maps
//! them: `23` → `IntegrityError`; `42`, `21`, `44`, `3D`, `3F`, `26`, `2F`
//! → `ProgrammingError`; `22` → `DataError`; `08`, `53`–`58` (including
//! `57014` query cancelled and `57P01` admin shutdown), `40`, `28`, `55`
//! → `OperationalError`; `0A` → `NotSupportedError`; `XX`, `25`, `2D`,
//! `38`, `39`, `P0` → `InternalError`. The SQLSTATE is the error's `code` and
//! the server's message its message. Class `08`, `57P01`–`57P03`, I/O errors
//! and a closed connection are marked as a lost connection.

mod alone;
mod cancel;
mod connect;
mod errors;
mod timeout;
mod txn_control;
pub mod types;

use std::collections::HashMap;
use std::sync::Arc;

use postgres::{Client, NoTls, SimpleQueryMessage, Statement};

use crate::dbapi::{
    Column, ConnectArgs, DbApiModule, DbError, DbResult, DriverConnection, ErrorKind, ExecResult,
    Params, Row, StatementCanceller, Value,
};

use self::cancel::PgCanceller;
use self::errors::{
    cancelled_before_sent, closed, is_stale_statement, map_alone_error, map_error, not_sent,
    programming,
};
pub use self::errors::{kind_for_sqlstate, sqlstate_is_disconnect};
use self::types::{decode, supported, unsupported, Param, Raw};
use super::pyformat as paramstyle;

/// The PostgreSQL module, registered as `"psycopg2"` and `"postgres"`.
#[derive(Debug, Clone)]
pub struct PostgresModule {
    name: &'static str,
}

impl PostgresModule {
    /// The module under the name `name`.
    pub fn named(name: &'static str) -> Self {
        PostgresModule { name }
    }
}

impl DbApiModule for PostgresModule {
    fn name(&self) -> &str {
        self.name
    }

    fn threadsafety(&self) -> Option<i64> {
        Some(2)
    }

    fn paramstyle(&self) -> &str {
        "pyformat"
    }

    fn connect(&self, args: &ConnectArgs) -> DbResult<Box<dyn DriverConnection>> {
        let cfg = connect::config(args)?;
        let mut client = cfg.connect(NoTls).map_err(|e| map_error(e, None))?;
        let token = client.cancel_token();
        let text_is_utf8 = server_converts_to_utf8(&mut client);
        Ok(Box::new(PgConnection {
            client: Some(client),
            in_transaction: false,
            autocommit: false,
            idle_known: true,
            text_is_utf8,
            statements: HashMap::new(),
            canceller: Arc::new(PgCanceller::new(token)),
        }))
    }
}

/// Whether the server sends text as valid UTF-8: it converts every encoding
/// to the client's (UTF-8, which the `postgres` crate sets) except
/// `SQL_ASCII`, whose bytes go out unchecked and may not decode. A statement
/// that runs as its own transaction is committed before its rows are
/// decoded, so a decoding error then would report a failure for committed
/// work: such servers keep `BEGIN`/`COMMIT`. Unknown counts as no.
fn server_converts_to_utf8(client: &mut Client) -> bool {
    match client.simple_query("SHOW server_encoding") {
        Ok(messages) => messages.iter().any(|m| {
            matches!(m, SimpleQueryMessage::Row(r)
                if r.get(0).is_some_and(|e| !e.eq_ignore_ascii_case("SQL_ASCII")))
        }),
        Err(e) => {
            tracing::debug!(error = %e, "SHOW server_encoding failed");
            false
        }
    }
}

/// The most parameters a Bind message can carry (a 16-bit count).
const MAX_PARAMETERS: usize = u16::MAX as usize;

/// Cached prepared statements per connection, at most this many.
const STATEMENT_CACHE: usize = 256;

struct PgConnection {
    /// `None` once closed or discarded.
    client: Option<Client>,
    /// Cleared only when `COMMIT` or `ROLLBACK` succeeded (the driver's, or
    /// one issued as SQL).
    in_transaction: bool,
    autocommit: bool,
    /// The server is known to be outside any transaction block whenever
    /// `in_transaction` is false. Lost when a statement runs in autocommit
    /// mode (it may be a `BEGIN` the driver does not follow); regained when
    /// the driver's own `COMMIT` or `ROLLBACK` succeeds.
    idle_known: bool,
    /// See [`server_converts_to_utf8`].
    text_is_utf8: bool,
    statements: HashMap<String, Statement>,
    canceller: Arc<PgCanceller>,
}

impl PgConnection {
    fn client(&mut self) -> DbResult<&mut Client> {
        match self.client.as_mut() {
            Some(c) if !c.is_closed() => Ok(c),
            _ => Err(closed()),
        }
    }

    /// Closes the session for good: the server rolls back whatever was open.
    /// Later calls fail with a lost-connection error, so the pool replaces it.
    fn discard(&mut self, why: &str) {
        tracing::warn!(why, "postgres connection discarded");
        self.statements.clear();
        self.in_transaction = false;
        if let Some(c) = self.client.take() {
            if !c.is_closed() {
                // Terminate is best effort: the session is dropped either way.
                let _ = c.close();
            }
        }
    }

    fn statement(&mut self, sql: &str) -> DbResult<Statement> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let res = self.client()?.prepare(sql);
        let stmt = res.map_err(|e| map_error(e, Some(sql)))?;
        if self.statements.len() >= STATEMENT_CACHE {
            self.statements.clear();
        }
        self.statements.insert(sql.to_owned(), stmt.clone());
        Ok(stmt)
    }

    fn simple(&mut self, sql: &str) -> DbResult<()> {
        let res = self.client()?.batch_execute(sql);
        res.map_err(|e| map_error(e, Some(sql)))
    }

    fn begin(&mut self) -> DbResult<()> {
        if self.in_transaction || self.autocommit {
            return Ok(());
        }
        match self.simple("BEGIN") {
            // The server still holds an aborted transaction the driver
            // thought was over: end it and begin again, once.
            Err(e) if e.code() == Some("25P02") => {
                tracing::warn!("BEGIN met an aborted transaction (25P02): rolling it back");
                self.simple("ROLLBACK")?;
                self.simple("BEGIN")?;
            }
            other => other?,
        }
        self.in_transaction = true;
        Ok(())
    }

    fn run(
        &mut self,
        sql: &str,
        t: &paramstyle::Translated<'_>,
        alone: bool,
    ) -> DbResult<ExecResult> {
        if !alone {
            self.begin()?;
        }
        // Alone, whatever fails before the Execute is sent never ran, and
        // the server's ERROR for the statement aborted its implicit
        // transaction: both are marked as having committed nothing, so a
        // stopped job may report them as its cancel. A decoding error after
        // that is not: the server committed before the rows were read.
        let unsent = |e: DbError| if alone { not_sent(e) } else { e };
        let refused = |e: postgres::Error| {
            if alone {
                map_alone_error(e, sql)
            } else {
                map_error(e, Some(sql))
            }
        };
        let stmt = self.statement(&t.sql).map_err(unsent)?;
        for c in stmt.columns() {
            if !supported(c.type_()) {
                return Err(unsent(unsupported(c.name(), c.type_()).with_sql(sql)));
            }
        }
        let bound: Vec<Param<'_>> = t.values.iter().map(|v| Param(v)).collect();
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = bound
            .iter()
            .map(|p| p as &(dyn postgres::types::ToSql + Sync))
            .collect();
        if stmt.columns().is_empty() {
            let res = self.client()?.execute(&stmt, &refs);
            let n = res.map_err(refused)?;
            return Ok(ExecResult {
                description: None,
                rows: Vec::new(),
                rowcount: i64::try_from(n).unwrap_or(i64::MAX),
                lastrowid: None,
            });
        }
        let res = self.client()?.query(&stmt, &refs);
        let rows = res.map_err(refused)?;
        let columns = stmt.columns();
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut values = Vec::with_capacity(columns.len());
            for (i, c) in columns.iter().enumerate() {
                let raw: Raw<'_> = row.try_get(i).map_err(|e| map_error(e, Some(sql)))?;
                let v = decode(raw.0, c.type_(), c.name()).map_err(|e| {
                    if !alone {
                        return e;
                    }
                    // Committed already: say so, and send no more statements
                    // alone on a session whose text does not decode.
                    self.text_is_utf8 = false;
                    let mut d = e.details().clone();
                    d.message = format!("{} ({COMMITTED_UNDECODED})", d.message);
                    DbError::from_details(e.kind(), d)
                })?;
                values.push(v);
            }
            out.push(Row::new(values));
        }
        Ok(ExecResult {
            description: Some(
                columns
                    .iter()
                    .map(|c| Column {
                        name: c.name().to_owned(),
                        type_code: Some(c.type_().name().to_owned()),
                    })
                    .collect(),
            ),
            rowcount: i64::try_from(out.len()).unwrap_or(i64::MAX),
            rows: out,
            lastrowid: None,
        })
    }

    /// Several statements in one simple Query message, as psycopg2 sends
    /// every query; the result is the last statement's, with values as text.
    fn run_many(&mut self, sql: &str) -> DbResult<ExecResult> {
        self.begin()?;
        let res = self.client()?.simple_query(sql);
        let messages = res.map_err(|e| map_error(e, Some(sql)))?;
        let mut last = ExecResult {
            description: None,
            rows: Vec::new(),
            rowcount: -1,
            lastrowid: None,
        };
        let mut description = None;
        let mut rows = Vec::new();
        for m in messages {
            match m {
                SimpleQueryMessage::RowDescription(cols) => {
                    description = Some(
                        cols.iter()
                            .map(|c| Column {
                                name: c.name().to_owned(),
                                type_code: None,
                            })
                            .collect(),
                    );
                }
                SimpleQueryMessage::Row(r) => rows.push(Row::new(
                    (0..r.len())
                        .map(|i| r.get(i).map_or(Value::Null, |s| Value::Text(s.to_owned())))
                        .collect(),
                )),
                SimpleQueryMessage::CommandComplete(n) => {
                    last = ExecResult {
                        description: description.take(),
                        rows: std::mem::take(&mut rows),
                        rowcount: i64::try_from(n).unwrap_or(i64::MAX),
                        lastrowid: None,
                    };
                }
                _ => {}
            }
        }
        Ok(last)
    }
}

impl PgConnection {
    /// See [`DriverConnection::commits_alone`]: only a whitelisted single
    /// statement, on a session known to be idle (not in a transaction block,
    /// not in autocommit mode, no cancel request in flight) whose text
    /// decodes.
    fn may_run_alone(&self, sql: &str) -> bool {
        !self.autocommit
            && !self.in_transaction
            && self.idle_known
            && self.text_is_utf8
            && !self.cancel_in_flight()
            && self.client.as_ref().is_some_and(|c| !c.is_closed())
            && alone::may_run_alone(sql)
    }

    fn execute_as(&mut self, sql: &str, params: &Params, alone: bool) -> DbResult<ExecResult> {
        let (statements, t) =
            checked(sql, params).map_err(|e| if alone { not_sent(e) } else { e })?;
        if alone::may_change_client_encoding(sql) {
            // Text may no longer arrive as UTF-8: from now on every
            // statement keeps BEGIN/COMMIT, so a decoding error still rolls
            // its work back (see `server_converts_to_utf8`).
            self.text_is_utf8 = false;
        }
        if self.autocommit {
            // It may be a BEGIN: until the driver's own COMMIT or ROLLBACK,
            // "not in a transaction" is no longer known to be the server's.
            self.idle_known = false;
        }
        let fresh = !self.in_transaction;
        if alone && self.cancel_in_flight() {
            // As in `execute_alone`: the job's own stop sent it just now.
            return Err(cancelled_before_sent(sql));
        }
        if fresh {
            self.check_no_cancel_in_flight(sql)?;
        }
        let cached = statements == 1 && self.statements.contains_key(t.sql.as_ref());
        let run = |c: &mut Self| {
            let r = if statements > 1 {
                c.run_many(sql)
            } else {
                c.run(sql, &t, alone)
            };
            // A COMMIT, ROLLBACK, END or ABORT issued as SQL ended the
            // transaction the driver began: the next statement must begin
            // a new one, or it would run in autocommit and escape the
            // job's rollback.
            if r.is_ok() && c.in_transaction && txn_control::ends_transaction(sql) {
                c.in_transaction = false;
            }
            r
        };
        match run(self) {
            // First statement outside a driver-begun transaction (autocommit)
            // met an aborted transaction left on the server: end it, run
            // again, once. Inside a transaction the driver began, 25P02 is
            // the caller's to handle (a retry would drop earlier work).
            Err(e) if fresh && self.autocommit && e.code() == Some("25P02") => {
                tracing::warn!("a statement met an aborted transaction (25P02): rolling it back");
                self.simple("ROLLBACK")?;
                run(self)
            }
            Err(e) if cached && is_stale_statement(&e) => {
                // The cached statement no longer fits the schema (another
                // session altered a table it reads: 0A000 "cached plan
                // must not change result type") or is gone from the server
                // (26000, after DEALLOCATE or DISCARD): without this every
                // later run of the same text would fail the same way.
                self.statements.remove(t.sql.as_ref());
                if !fresh {
                    // Earlier statements of the transaction are aborted
                    // with it: this job fails, the next one prepares anew.
                    return Err(e);
                }
                tracing::info!(
                    code = e.code(),
                    "a cached prepared statement went stale: preparing it again"
                );
                if self.in_transaction {
                    // The transaction the driver began for this statement
                    // holds nothing else: roll it back and begin afresh.
                    if let Err(r) = self.simple("ROLLBACK") {
                        self.discard("ROLLBACK after a stale cached statement failed");
                        return Err(r.with_connection_lost(true));
                    }
                    self.in_transaction = false;
                    self.check_no_cancel_in_flight(sql)?;
                }
                run(self)
            }
            other => other,
        }
    }
}

/// The checks made before anything is sent: the SQL holds statements, no
/// NUL, parameters only for a single statement, and no more than the
/// protocol carries. Returns the statement count and the translated SQL.
fn checked<'a>(sql: &'a str, params: &'a Params) -> DbResult<(usize, paramstyle::Translated<'a>)> {
    if sql.contains('\0') {
        return Err(programming(
            "the query contains a NUL character (0x00), which PostgreSQL does not accept in SQL text",
            sql,
        ));
    }
    let statements = paramstyle::statement_count(sql);
    if statements == 0 {
        return Err(programming(
            "can't execute an empty query (the SQL holds no statement, only whitespace, comments or ';')",
            sql,
        ));
    }
    if statements > 1 && !matches!(params, Params::None) {
        return Err(programming(
            format!(
                "the query holds multiple statements ({statements}), which cannot take parameters \
                 (PostgreSQL prepares one statement at a time): execute them one by one, or pass no parameters"
            ),
            sql,
        ));
    }
    let t = paramstyle::translate(sql, params)?;
    if t.values.len() > MAX_PARAMETERS {
        return Err(programming(
            format!(
                "the query has {} parameters; PostgreSQL's protocol carries at most {MAX_PARAMETERS}",
                t.values.len()
            ),
            sql,
        ));
    }
    Ok((statements, t))
}

/// Appended to a lost connection's error when the statement ran as its own
/// transaction: as for a `COMMIT` whose answer never came, the server may
/// have committed it.
pub(crate) const MAY_HAVE_COMMITTED: &str =
    "the statement ran as a transaction of its own (no BEGIN/COMMIT) and the connection was lost \
     before its outcome arrived, so it may have committed";

/// Appended to a decoding error of a statement that ran as its own
/// transaction: unlike between `BEGIN` and `COMMIT`, its work stays.
pub(crate) const COMMITTED_UNDECODED: &str =
    "the statement ran as a transaction of its own (no BEGIN/COMMIT) and committed before its \
     result failed to decode";

impl DriverConnection for PgConnection {
    fn execute(&mut self, sql: &str, params: &Params) -> DbResult<ExecResult> {
        self.execute_as(sql, params, false)
    }

    fn commits_alone(&mut self, sql: &str) -> bool {
        self.may_run_alone(sql)
    }

    fn execute_alone(&mut self, sql: &str, params: &Params) -> DbResult<ExecResult> {
        if self.cancel_in_flight() {
            // Only this job's own stop can have sent it: the pool counted the
            // statement as a commit begun, the stop came next, and a
            // connection a cancel was sent for never starts another job. The
            // statement is not sent, so it is reported as the cancel the
            // server would have answered with (the pool then discards the
            // connection), not as a lost connection that may have committed.
            return Err(cancelled_before_sent(sql));
        }
        if !self.may_run_alone(sql) {
            return self.execute(sql, params);
        }
        self.execute_as(sql, params, true).map_err(|e| {
            if !e.is_connection_lost() {
                // The server answered with an error: the statement's
                // implicit transaction was rolled back.
                return e;
            }
            let mut d = e.details().clone();
            d.message = format!("{} ({MAY_HAVE_COMMITTED})", d.message);
            DbError::from_details(e.kind(), d)
        })
    }

    fn commit(&mut self) -> DbResult<()> {
        if !self.in_transaction {
            return Ok(());
        }
        match self.simple("COMMIT") {
            Ok(()) => {
                self.in_transaction = false;
                self.idle_known = true;
                Ok(())
            }
            Err(e) => {
                // The transaction may still be open and aborted (a COMMIT
                // cancelled before it ran): end it now, or drop the session.
                if self.simple("ROLLBACK").is_ok() {
                    self.in_transaction = false;
                } else {
                    self.discard("COMMIT and the ROLLBACK after it failed");
                }
                Err(e)
            }
        }
    }

    fn rollback(&mut self) -> DbResult<()> {
        self.check_no_cancel_in_flight("ROLLBACK")?;
        if !self.in_transaction {
            return Ok(());
        }
        match self.simple("ROLLBACK") {
            Ok(()) => {
                self.in_transaction = false;
                self.idle_known = true;
                Ok(())
            }
            Err(e) => {
                // The server may still hold the transaction, aborted: every
                // later statement would fail with 25P02. Drop the session.
                self.discard("ROLLBACK failed");
                Err(e.with_connection_lost(true))
            }
        }
    }

    fn close(&mut self) -> DbResult<()> {
        self.statements.clear();
        match self.client.take() {
            Some(c) if !c.is_closed() => c.close().map_err(|e| map_error(e, None)),
            _ => Ok(()),
        }
    }

    fn check_cursor(&mut self) -> DbResult<()> {
        self.client().map(|_| ())
    }

    fn autocommit(&self) -> bool {
        self.autocommit
    }

    fn set_autocommit(&mut self, on: bool) -> DbResult<()> {
        if self.in_transaction {
            return Err(DbError::new(
                ErrorKind::ProgrammingError,
                "set_session cannot be used inside a transaction (commit or roll back first)",
            ));
        }
        self.autocommit = on;
        Ok(())
    }

    fn canceller(&self) -> Option<Arc<dyn StatementCanceller>> {
        Some(Arc::clone(&self.canceller) as Arc<dyn StatementCanceller>)
    }

    fn set_statement_timeout(&mut self, limit: Option<std::time::Duration>) -> DbResult<()> {
        // A plain SET outside the driver's transactions: inside one, a
        // rollback would undo it.
        self.simple(&timeout::set_sql(limit))
    }
}

/// The names this driver registers under: `psycopg2` (what Twisted users
/// pass) and `postgres`.
pub(crate) fn modules() -> Vec<(&'static str, Arc<dyn DbApiModule>)> {
    ["psycopg2", "postgres"]
        .into_iter()
        .map(|name| {
            let module: Arc<dyn DbApiModule> = Arc::new(PostgresModule::named(name));
            (name, module)
        })
        .collect()
}
