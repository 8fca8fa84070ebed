//! The driver's errors: SQLSTATEs mapped onto PEP 249 kinds as psycopg2
//! maps them, `postgres` crate errors turned into [`DbError`]s (with the
//! server's text shortened as the SQL is), and the driver's own.

use std::fmt;

use crate::dbapi::{DbError, ErrorKind};

pub(super) fn closed() -> DbError {
    DbError::new(ErrorKind::InterfaceError, "connection already closed").with_connection_lost(true)
}

pub(super) fn programming(msg: impl Into<String>, sql: &str) -> DbError {
    DbError::new(ErrorKind::ProgrammingError, msg).with_sql(sql)
}

/// True for the errors of a cached prepared statement the server can no
/// longer run as prepared: 0A000 ("cached plan must not change result
/// type", after a table it reads changed) and 26000 ("prepared statement
/// does not exist"). psycopg2 prepares nothing, so it never meets them.
pub(super) fn is_stale_statement(e: &DbError) -> bool {
    matches!(e.code(), Some("0A000" | "26000"))
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
    let mut cut = false;
    let mut d = if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        // The server quotes the offending token whole ("unterminated quoted
        // string at or near ..."), in the message and again in the DETAIL:
        // each part is shortened as the SQL is.
        let mut shorten = |text: &str| {
            let short = DbError::shorten(text);
            cut |= matches!(short, std::borrow::Cow::Owned(_));
            short.into_owned()
        };
        let mut msg = shorten(db.message());
        if let Some(detail) = db.detail() {
            msg.push_str(" (");
            msg.push_str(&shorten(detail));
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
        // The crate's message names only the parameter's index; the reason
        // is its source.
        let why = std::error::Error::source(&e).map(ToString::to_string);
        let msg = match why {
            Some(w) if !e.to_string().contains(&w) => format!("{e}: {w}"),
            _ => e.to_string(),
        };
        DbError::new(ErrorKind::DataError, msg)
    } else {
        DbError::new(ErrorKind::OperationalError, e.to_string())
    };
    if let Some(s) = sql {
        d = d.with_sql(s);
    }
    if cut {
        // The crate's error displays the server's text whole through its
        // source (a traceback prints the chain), and cannot be rebuilt
        // shorter: the shortened message stands in for it.
        let short = ShortenedServerError(d.message().to_owned());
        return d.with_source(short);
    }
    d.with_source(e)
}

/// Maps an error of a statement sent as a transaction of its own (one
/// `Bind`/`Execute`/`Sync` round trip, see the driver's module docs),
/// marking it [`DbError::with_nothing_committed`] when it proves that the
/// statement committed nothing: the server answered with an `ERROR` (which
/// aborts the statement's implicit transaction, whether at the statement or
/// at its implicit commit), or the crate refused the parameters before
/// sending anything. A lost connection, a `FATAL`, or any other failure stays
/// unmarked: the server may have committed first.
pub(super) fn map_alone_error(e: postgres::Error, sql: &str) -> DbError {
    let refused = e.as_db_error().is_some_and(|db| {
        db.parsed_severity() == Some(postgres::error::Severity::Error)
            && !sqlstate_is_disconnect(db.code().code())
    });
    // The crate checks the parameter count and serializes every parameter
    // before it writes the Bind message (the texts `map_error` reads too).
    let unsent = e.as_db_error().is_none() && {
        let text = e.to_string();
        text.contains("parameters but") || text.starts_with("error serializing")
    };
    let d = map_error(e, Some(sql));
    if (refused || unsent) && !d.is_connection_lost() {
        d.with_nothing_committed()
    } else {
        d
    }
}

/// `e`, marked [`DbError::with_nothing_committed`] unless the connection was
/// lost: for a one-round-trip statement that failed before its `Execute`
/// was sent (its preparation, a result type the driver cannot decode), so
/// never ran.
pub(super) fn not_sent(e: DbError) -> DbError {
    if e.is_connection_lost() {
        e
    } else {
        e.with_nothing_committed()
    }
}

/// The error of a one-round-trip statement whose job's cancel request was
/// sent before the statement was: it is not sent, and reported as the
/// cancel the server would have answered with (57014), having committed
/// nothing.
pub(super) fn cancelled_before_sent(sql: &str) -> DbError {
    DbError::new(
        ErrorKind::OperationalError,
        "canceling statement due to user request (the cancel came before the statement was sent; it did not run)",
    )
    .with_code("57014")
    .with_sql(sql)
    .with_nothing_committed()
}

/// Stands in for a `postgres::Error` whose server message or detail was too
/// long to quote whole: it holds the shortened text only. No psycopg2
/// counterpart (psycopg2 keeps the server's text whole).
#[derive(Debug)]
struct ShortenedServerError(String);

impl fmt::Display for ShortenedServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "db error (shortened): {}", self.0)
    }
}

impl std::error::Error for ShortenedServerError {}
