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
//! # Errors
//! Server errors map to PEP 249 kinds by SQLSTATE class, as psycopg2 maps
//! them: `23` → `IntegrityError`; `42`, `21`, `44`, `3D`, `3F`, `26`, `2F`
//! → `ProgrammingError`; `22` → `DataError`; `08`, `53`–`58` (including
//! `57014` query cancelled and `57P01` admin shutdown), `40`, `28`, `55`
//! → `OperationalError`; `0A` → `NotSupportedError`; `XX`, `25`, `2D`,
//! `38`, `39`, `P0` → `InternalError`. The SQLSTATE is the error's `code` and
//! the server's message its message. Class `08`, `57P01`–`57P03`, I/O errors
//! and a closed connection are marked as a lost connection.

pub(crate) mod paramstyle;
pub mod types;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use postgres::config::SslMode;
use postgres::{CancelToken, Client, Config, NoTls, Statement};

use crate::dbapi::{
    Column, ConnectArgs, DbApiModule, DbError, DbResult, DriverConnection, ErrorKind, ExecResult,
    Params, Row, StatementCanceller, Value,
};

use self::types::{decode, supported, unsupported, Param, Raw};

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

const KEYWORDS: [&str; 11] = [
    "dsn",
    "options",
    "host",
    "port",
    "user",
    "password",
    "dbname",
    "database",
    "connect_timeout",
    "sslmode",
    "application_name",
];

fn arg_error(msg: String) -> DbError {
    DbError::new(ErrorKind::ProgrammingError, msg)
}

fn text_arg<'a>(v: &'a Value, name: &str) -> DbResult<std::borrow::Cow<'a, str>> {
    match v {
        Value::Text(s) => Ok(std::borrow::Cow::Borrowed(s)),
        Value::Int(i) => Ok(std::borrow::Cow::Owned(i.to_string())),
        other => Err(arg_error(format!(
            "psycopg2.connect: argument '{name}' must be text, got {} {other}",
            other.type_name()
        ))),
    }
}

/// Builds a `postgres::Config` from psycopg2-style arguments.
pub(crate) fn config(args: &ConnectArgs) -> DbResult<Config> {
    if args.args.len() > 1 {
        return Err(arg_error(format!(
            "psycopg2.connect takes at most 1 positional argument (the dsn), {} given",
            args.args.len()
        )));
    }
    for k in args.kwargs.keys() {
        if !KEYWORDS.contains(&k.as_str()) {
            return Err(arg_error(format!(
                "invalid dsn: invalid connection option \"{k}\" (known: {})",
                KEYWORDS.join(", ")
            )));
        }
    }
    let mut cfg = match args.get(0, "dsn") {
        Some(Value::Null) | None => Config::new(),
        Some(v) => {
            let dsn = text_arg(v, "dsn")?;
            dsn.parse::<Config>()
                .map_err(|e| arg_error(format!("invalid dsn: {e}")).with_source(e))?
        }
    };
    let kw = |k: &str| args.kwargs.get(k).filter(|v| !v.is_null());
    if let Some(v) = kw("host") {
        cfg.host(&text_arg(v, "host")?);
    }
    if let Some(v) = kw("port") {
        let port = match v {
            Value::Int(p) => u16::try_from(*p).ok(),
            Value::Text(s) => s.parse().ok(),
            _ => None,
        }
        .ok_or_else(|| arg_error(format!("psycopg2.connect: invalid port {v}")))?;
        cfg.port(port);
    }
    if let Some(v) = kw("user") {
        cfg.user(&text_arg(v, "user")?);
    }
    if let Some(v) = kw("password") {
        cfg.password(text_arg(v, "password")?.as_bytes());
    }
    if let Some(v) = kw("dbname").or_else(|| kw("database")) {
        cfg.dbname(&text_arg(v, "dbname")?);
    }
    if let Some(v) = kw("connect_timeout") {
        let secs = match v {
            Value::Int(s) if *s >= 0 => u64::try_from(*s).unwrap_or(0),
            Value::Text(s) => s
                .parse()
                .map_err(|_| arg_error(format!("invalid connect_timeout {s:?}")))?,
            other => return Err(arg_error(format!("invalid connect_timeout {other}"))),
        };
        if secs > 0 {
            cfg.connect_timeout(Duration::from_secs(secs));
        }
    }
    if let Some(v) = kw("sslmode") {
        match text_arg(v, "sslmode")?.as_ref() {
            "disable" => cfg.ssl_mode(SslMode::Disable),
            "allow" | "prefer" => cfg.ssl_mode(SslMode::Prefer),
            other => {
                return Err(DbError::new(
                    ErrorKind::NotSupportedError,
                    format!("sslmode={other} needs TLS, which this build of the postgres driver does not include"),
                ))
            }
        };
    }
    if let Some(v) = kw("application_name") {
        cfg.application_name(&text_arg(v, "application_name")?);
    }
    if let Some(v) = kw("options") {
        cfg.options(&text_arg(v, "options")?);
    }
    if cfg.get_hosts().is_empty() {
        if std::path::Path::new("/var/run/postgresql").is_dir() {
            cfg.host_path("/var/run/postgresql");
        } else {
            cfg.host("localhost");
        }
    }
    if cfg.get_user().is_none() {
        cfg.user(&std::env::var("USER").unwrap_or_else(|_| "postgres".to_owned()));
    }
    Ok(cfg)
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
        let cfg = config(args)?;
        let client = cfg.connect(NoTls).map_err(|e| map_error(e, None))?;
        let token = client.cancel_token();
        Ok(Box::new(PgConnection {
            client: Some(client),
            in_transaction: false,
            autocommit: false,
            statements: HashMap::new(),
            canceller: Arc::new(PgCanceller { token }),
        }))
    }
}

/// Cached prepared statements per connection, at most this many.
const STATEMENT_CACHE: usize = 256;

struct PgConnection {
    client: Option<Client>,
    in_transaction: bool,
    autocommit: bool,
    statements: HashMap<String, Statement>,
    canceller: Arc<PgCanceller>,
}

struct PgCanceller {
    token: CancelToken,
}

impl fmt::Debug for PgCanceller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PgCanceller")
    }
}

impl StatementCanceller for PgCanceller {
    fn cancel(&self) -> DbResult<()> {
        self.token
            .cancel_query(NoTls)
            .map_err(|e| map_error(e, None))
    }
}

fn closed() -> DbError {
    DbError::new(ErrorKind::InterfaceError, "connection already closed").with_connection_lost(true)
}

impl PgConnection {
    fn client(&mut self) -> DbResult<&mut Client> {
        match self.client.as_mut() {
            Some(c) if !c.is_closed() => Ok(c),
            _ => Err(closed()),
        }
    }

    fn statement(&mut self, sql: &str) -> DbResult<Statement> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let stmt = self
            .client()?
            .prepare(sql)
            .map_err(|e| map_error(e, Some(sql)))?;
        if self.statements.len() >= STATEMENT_CACHE {
            self.statements.clear();
        }
        self.statements.insert(sql.to_owned(), stmt.clone());
        Ok(stmt)
    }

    fn begin(&mut self) -> DbResult<()> {
        if !self.in_transaction && !self.autocommit {
            self.client()?
                .batch_execute("BEGIN")
                .map_err(|e| map_error(e, Some("BEGIN")))?;
            self.in_transaction = true;
        }
        Ok(())
    }

    fn end(&mut self, sql: &'static str) -> DbResult<()> {
        if !self.in_transaction {
            return Ok(());
        }
        // Whatever happens, the transaction is over (a failed COMMIT rolls back).
        self.in_transaction = false;
        self.client()?
            .batch_execute(sql)
            .map_err(|e| map_error(e, Some(sql)))
    }
}

impl DriverConnection for PgConnection {
    fn execute(&mut self, sql: &str, params: &Params) -> DbResult<ExecResult> {
        let t = paramstyle::translate(sql, params)?;
        self.begin()?;
        let stmt = self.statement(&t.sql)?;
        for c in stmt.columns() {
            if !supported(c.type_()) {
                return Err(unsupported(c.name(), c.type_()).with_sql(sql));
            }
        }
        let bound: Vec<Param<'_>> = t.values.iter().map(|v| Param(v)).collect();
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = bound
            .iter()
            .map(|p| p as &(dyn postgres::types::ToSql + Sync))
            .collect();
        let client = self.client()?;
        if stmt.columns().is_empty() {
            let n = client
                .execute(&stmt, &refs)
                .map_err(|e| map_error(e, Some(sql)))?;
            return Ok(ExecResult {
                description: None,
                rows: Vec::new(),
                rowcount: i64::try_from(n).unwrap_or(i64::MAX),
                lastrowid: None,
            });
        }
        let rows = client
            .query(&stmt, &refs)
            .map_err(|e| map_error(e, Some(sql)))?;
        let columns = stmt.columns();
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut values = Vec::with_capacity(columns.len());
            for (i, c) in columns.iter().enumerate() {
                let raw: Raw<'_> = row.try_get(i).map_err(|e| map_error(e, Some(sql)))?;
                values.push(decode(raw.0, c.type_(), c.name())?);
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

    fn commit(&mut self) -> DbResult<()> {
        self.end("COMMIT")
    }

    fn rollback(&mut self) -> DbResult<()> {
        self.end("ROLLBACK")
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
}

/// The PEP 249 kind for a SQLSTATE, as psycopg2 maps them.
pub fn kind_for_sqlstate(code: &str) -> ErrorKind {
    match code.get(..2).unwrap_or("") {
        "23" => ErrorKind::IntegrityError,
        "42" | "21" | "44" | "3D" | "3F" | "26" | "2F" => ErrorKind::ProgrammingError,
        "22" => ErrorKind::DataError,
        "08" | "53" | "54" | "55" | "57" | "58" | "40" | "28" | "HV" => ErrorKind::OperationalError,
        "0A" => ErrorKind::NotSupportedError,
        "XX" | "25" | "2D" | "38" | "39" | "P0" | "0B" | "0F" | "0L" | "0P" | "27" => {
            ErrorKind::InternalError
        }
        _ => ErrorKind::DatabaseError,
    }
}

/// True for SQLSTATEs that mean the session is gone.
pub fn sqlstate_is_disconnect(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
}

/// Maps a `postgres` error onto a PEP 249 kind.
pub(crate) fn map_error(e: postgres::Error, sql: Option<&str>) -> DbError {
    let mut d = if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        let mut msg = db.message().to_owned();
        if let Some(detail) = db.detail() {
            msg.push_str(" (");
            msg.push_str(detail);
            msg.push(')');
        }
        DbError::new(kind_for_sqlstate(code), msg)
            .with_code(code)
            .with_connection_lost(sqlstate_is_disconnect(code))
    } else if e.is_closed()
        || std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>())
    {
        DbError::new(ErrorKind::OperationalError, e.to_string()).with_connection_lost(true)
    } else if e.to_string().contains("parameters but") {
        DbError::new(ErrorKind::ProgrammingError, e.to_string())
    } else if e.to_string().starts_with("error serializing") {
        DbError::new(ErrorKind::DataError, e.to_string())
    } else {
        DbError::new(ErrorKind::OperationalError, e.to_string())
    };
    if let Some(s) = sql {
        d = d.with_sql(s);
    }
    d.with_source(e)
}
