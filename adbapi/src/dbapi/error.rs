//! PEP 249's exceptions as Rust error types.
//!
//! The hierarchy is kept as a chain of `source()`s, so [`Failure::check`]
//! (which walks the chain) matches a kind and its base, as Python's `except`
//! does:
//!
//! ```text
//! DbError ──source──▶ IntegrityError ──source──▶ DatabaseError ──source──▶ driver error
//! ```
//!
//! so `failure.check::<IntegrityError>()`, `failure.check::<DatabaseError>()`
//! and `failure.check::<rusqlite::Error>()` all find it. Errors are
//! returned as [`DbError`], which knows its [`ErrorKind`].
//!
//! [`Failure::check`]: deferred::Failure::check

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

/// Which PEP 249 exception an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// `Warning`: an important warning (not an `Error` in PEP 249).
    Warning,
    /// `InterfaceError`: a problem with the interface rather than the database.
    InterfaceError,
    /// `DatabaseError`: a problem with the database.
    DatabaseError,
    /// `DataError`: bad data (division by zero, value out of range, ...).
    DataError,
    /// `OperationalError`: the database's operation (lost connection, locked
    /// database, missing table in SQLite, ...).
    OperationalError,
    /// `IntegrityError`: relational integrity (a constraint failed).
    IntegrityError,
    /// `InternalError`: the database's internal state.
    InternalError,
    /// `ProgrammingError`: the program's fault (SQL syntax, wrong number of
    /// parameters, closed cursor, ...).
    ProgrammingError,
    /// `NotSupportedError`: a feature the database does not support.
    NotSupportedError,
}

impl ErrorKind {
    /// The Python class name, e.g. `"IntegrityError"`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Warning => "Warning",
            ErrorKind::InterfaceError => "InterfaceError",
            ErrorKind::DatabaseError => "DatabaseError",
            ErrorKind::DataError => "DataError",
            ErrorKind::OperationalError => "OperationalError",
            ErrorKind::IntegrityError => "IntegrityError",
            ErrorKind::InternalError => "InternalError",
            ErrorKind::ProgrammingError => "ProgrammingError",
            ErrorKind::NotSupportedError => "NotSupportedError",
        }
    }

    /// True for `DatabaseError` and its subclasses.
    pub fn is_database_error(self) -> bool {
        !matches!(self, ErrorKind::Warning | ErrorKind::InterfaceError)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What every database error carries.
#[derive(Debug, Clone)]
pub struct ErrorDetails {
    /// The message (the driver's, or ours).
    pub message: String,
    /// The SQL being executed, if any, as [`DbError::with_sql`] quotes it:
    /// at most its first 300 characters.
    pub sql: Option<String>,
    /// The driver's error code (SQLSTATE for PostgreSQL, the extended result
    /// code for SQLite).
    pub code: Option<String>,
    /// The driver's own error, if any.
    pub source: Option<Arc<dyn StdError + Send + Sync + 'static>>,
    /// True if the driver judged that the connection is gone (server closed
    /// it, network error); the pool treats such a connection as lost.
    pub connection_lost: bool,
}

impl ErrorDetails {
    fn source_ref(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

impl fmt::Display for ErrorDetails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(code) = &self.code {
            write!(f, " [code {code}]")?;
        }
        if let Some(sql) = &self.sql {
            // `with_sql` has shortened it already; SQL put in the public
            // field directly is shortened here, so a multi-megabyte
            // statement never reaches a log line whole.
            let slack = SQL_QUOTE_CHARS + 40;
            if sql.char_indices().nth(slack).is_some() {
                write!(f, " [SQL: {}]", quote_sql(sql))?;
            } else {
                write!(f, " [SQL: {sql}]")?;
            }
        }
        Ok(())
    }
}

/// How many characters of a statement an error quotes; the rest is counted,
/// not kept: `SELECT ... (12345 more characters)`. CPython's exceptions carry
/// no SQL at all; SQLAlchemy's `[SQL: ...]` is the model, with its length
/// limit. The same limit applies to each part of a driver's or server's
/// message (see [`shorten`]).
pub(crate) const SQL_QUOTE_CHARS: usize = 300;

/// `text` cut to its first [`SQL_QUOTE_CHARS`] characters (on a character
/// boundary), followed by `... (N more characters)` if there are more;
/// borrowed when nothing is cut.
///
/// `with_sql` quotes statements through it, and the drivers pass every part
/// of a driver's or server's message through it too: SQLite's
/// `unrecognized token: "..."` and PostgreSQL's `unterminated quoted string
/// at or near "..."` (and its DETAIL) quote the offending token whole, so a
/// 100 kB literal would otherwise come back whole in `message()`, `Display`
/// and every log line.
pub(crate) fn shorten(text: &str) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(SQL_QUOTE_CHARS) {
        None => std::borrow::Cow::Borrowed(text),
        Some((cut, _)) => {
            let more = text[cut..].chars().count();
            std::borrow::Cow::Owned(format!("{}... ({more} more characters)", &text[..cut]))
        }
    }
}

/// The first [`SQL_QUOTE_CHARS`] characters of `sql`, followed by
/// `... (N more characters)` if there are more.
fn quote_sql(sql: &str) -> String {
    shorten(sql).into_owned()
}

macro_rules! leaf_error {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name(pub ErrorDetails);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}: {}", stringify!($name), self.0)
            }
        }

        impl StdError for $name {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                self.0.source_ref()
            }
        }

        impl $name {
            /// The details: message, SQL, code, source. Mirrors the
            /// exception's attributes (psycopg2's `pgerror`, `pgcode`).
            pub fn details(&self) -> &ErrorDetails {
                &self.0
            }

            /// The message. Mirrors `str(e)` without the class name (CPython's
            /// `e.args[0]`).
            pub fn message(&self) -> &str {
                &self.details().message
            }

            /// The driver's error code: SQLSTATE for PostgreSQL (psycopg2's
            /// `pgcode`), the extended result code for SQLite
            /// (`sqlite_errorcode`).
            pub fn code(&self) -> Option<&str> {
                self.details().code.as_deref()
            }

            /// The SQL that failed, if known (at most its first 300
            /// characters).
            pub fn sql(&self) -> Option<&str> {
                self.details().sql.as_deref()
            }
        }
    };
}

leaf_error!(
    /// PEP 249 `Warning`.
    Warning
);
leaf_error!(
    /// PEP 249 `InterfaceError`.
    InterfaceError
);
leaf_error!(
    /// PEP 249 `DatabaseError`: the base of the kinds below. Matching it with
    /// `check::<DatabaseError>()` also matches every subclass.
    DatabaseError
);

macro_rules! database_error {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name(pub DatabaseError);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}: {}", stringify!($name), (self.0).0)
            }
        }

        impl StdError for $name {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }

        impl $name {
            /// The details: message, SQL, code, source. Mirrors the
            /// exception's attributes (psycopg2's `pgerror`, `pgcode`).
            pub fn details(&self) -> &ErrorDetails {
                self.0.details()
            }

            /// The message. Mirrors `str(e)` without the class name (CPython's
            /// `e.args[0]`).
            pub fn message(&self) -> &str {
                &self.details().message
            }

            /// The driver's error code: SQLSTATE for PostgreSQL (psycopg2's
            /// `pgcode`), the extended result code for SQLite
            /// (`sqlite_errorcode`).
            pub fn code(&self) -> Option<&str> {
                self.details().code.as_deref()
            }

            /// The SQL that failed, if known (at most its first 300
            /// characters).
            pub fn sql(&self) -> Option<&str> {
                self.details().sql.as_deref()
            }
        }
    };
}

database_error!(
    /// PEP 249 `DataError`.
    DataError
);
database_error!(
    /// PEP 249 `OperationalError`.
    OperationalError
);
database_error!(
    /// PEP 249 `IntegrityError`.
    IntegrityError
);
database_error!(
    /// PEP 249 `InternalError`.
    InternalError
);
database_error!(
    /// PEP 249 `ProgrammingError`.
    ProgrammingError
);
database_error!(
    /// PEP 249 `NotSupportedError`.
    NotSupportedError
);

#[derive(Debug, Clone)]
enum Repr {
    Warning(Warning),
    Interface(InterfaceError),
    Database(DatabaseError),
    Data(DataError),
    Operational(OperationalError),
    Integrity(IntegrityError),
    Internal(InternalError),
    Programming(ProgrammingError),
    NotSupported(NotSupportedError),
}

/// A database error of any PEP 249 kind: what drivers, cursors and
/// connections return.
///
/// ```
/// use adbapi::dbapi::{DbError, ErrorKind, IntegrityError, DatabaseError};
/// use deferred::Failure;
///
/// let e = DbError::new(ErrorKind::IntegrityError, "UNIQUE constraint failed: t.x")
///     .with_sql("INSERT INTO t VALUES (?)");
/// assert_eq!(e.kind(), ErrorKind::IntegrityError);
/// let f = Failure::new(e);
/// assert!(f.check::<IntegrityError>().is_some());   // except IntegrityError
/// assert!(f.check::<DatabaseError>().is_some());    // except DatabaseError
/// let e = f.check::<IntegrityError>().unwrap();
/// assert_eq!(e.message(), "UNIQUE constraint failed: t.x");
/// assert_eq!(e.sql(), Some("INSERT INTO t VALUES (?)"));
/// assert_eq!(e.code(), None);
/// assert!(f.error_message().contains("INSERT INTO t"));
/// ```
#[derive(Debug, Clone)]
pub struct DbError {
    repr: Repr,
    /// See [`proves_nothing_committed`](Self::proves_nothing_committed).
    nothing_committed: bool,
}

impl DbError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self::from_details(
            kind,
            ErrorDetails {
                message: message.into(),
                sql: None,
                code: None,
                source: None,
                connection_lost: false,
            },
        )
    }

    /// An error of `kind` from full details.
    pub fn from_details(kind: ErrorKind, d: ErrorDetails) -> Self {
        let repr = match kind {
            ErrorKind::Warning => Repr::Warning(Warning(d)),
            ErrorKind::InterfaceError => Repr::Interface(InterfaceError(d)),
            ErrorKind::DatabaseError => Repr::Database(DatabaseError(d)),
            ErrorKind::DataError => Repr::Data(DataError(DatabaseError(d))),
            ErrorKind::OperationalError => Repr::Operational(OperationalError(DatabaseError(d))),
            ErrorKind::IntegrityError => Repr::Integrity(IntegrityError(DatabaseError(d))),
            ErrorKind::InternalError => Repr::Internal(InternalError(DatabaseError(d))),
            ErrorKind::ProgrammingError => Repr::Programming(ProgrammingError(DatabaseError(d))),
            ErrorKind::NotSupportedError => Repr::NotSupported(NotSupportedError(DatabaseError(d))),
        };
        DbError {
            repr,
            nothing_committed: false,
        }
    }

    /// Which kind it is.
    pub fn kind(&self) -> ErrorKind {
        match &self.repr {
            Repr::Warning(_) => ErrorKind::Warning,
            Repr::Interface(_) => ErrorKind::InterfaceError,
            Repr::Database(_) => ErrorKind::DatabaseError,
            Repr::Data(_) => ErrorKind::DataError,
            Repr::Operational(_) => ErrorKind::OperationalError,
            Repr::Integrity(_) => ErrorKind::IntegrityError,
            Repr::Internal(_) => ErrorKind::InternalError,
            Repr::Programming(_) => ErrorKind::ProgrammingError,
            Repr::NotSupported(_) => ErrorKind::NotSupportedError,
        }
    }

    /// The details.
    pub fn details(&self) -> &ErrorDetails {
        match &self.repr {
            Repr::Warning(e) => &e.0,
            Repr::Interface(e) => &e.0,
            Repr::Database(e) => &e.0,
            Repr::Data(e) => &(e.0).0,
            Repr::Operational(e) => &(e.0).0,
            Repr::Integrity(e) => &(e.0).0,
            Repr::Internal(e) => &(e.0).0,
            Repr::Programming(e) => &(e.0).0,
            Repr::NotSupported(e) => &(e.0).0,
        }
    }

    fn details_mut(&mut self) -> &mut ErrorDetails {
        match &mut self.repr {
            Repr::Warning(e) => &mut e.0,
            Repr::Interface(e) => &mut e.0,
            Repr::Database(e) => &mut e.0,
            Repr::Data(e) => &mut (e.0).0,
            Repr::Operational(e) => &mut (e.0).0,
            Repr::Integrity(e) => &mut (e.0).0,
            Repr::Internal(e) => &mut (e.0).0,
            Repr::Programming(e) => &mut (e.0).0,
            Repr::NotSupported(e) => &mut (e.0).0,
        }
    }

    /// The message, without the kind's name. Mirrors CPython's `e.args[0]`.
    pub fn message(&self) -> &str {
        &self.details().message
    }

    /// The SQL that failed, if known, shortened as
    /// [`with_sql`](Self::with_sql) shortens it.
    pub fn sql(&self) -> Option<&str> {
        self.details().sql.as_deref()
    }

    /// The driver's error code: SQLSTATE for PostgreSQL (psycopg2's
    /// `pgcode`), the extended result code for SQLite.
    pub fn code(&self) -> Option<&str> {
        self.details().code.as_deref()
    }

    /// True if the driver judged the connection lost.
    pub fn is_connection_lost(&self) -> bool {
        self.details().connection_lost
    }

    /// True if the statement failed because it ran longer than the
    /// connection's statement timeout (`cp_statement_timeout`): PostgreSQL's
    /// `57014` *due to statement timeout* (not a cancel's *due to user
    /// request*, which has the same SQLSTATE), MariaDB's 1969
    /// (`ER_STATEMENT_TIMEOUT`), MySQL's 3024 (`ER_QUERY_TIMEOUT`) and 1907,
    /// and the SQLite driver's interrupt by its progress handler (code 9,
    /// `SQLITE_INTERRUPT`, which a cancel also gives: the message tells them
    /// apart). psycopg2 users test `e.pgcode == '57014'` and the message.
    pub fn is_statement_timeout(&self) -> bool {
        match self.code() {
            Some("1969" | "3024" | "1907") => true,
            Some("57014" | "9") => self.message().contains("statement timeout"),
            _ => false,
        }
    }

    /// Records the SQL that failed (kept if already set): its first 300
    /// characters, then `... (N more characters)` if it
    /// is longer. An error never holds a copy of a huge statement, and its
    /// `Display` quotes it short.
    pub fn with_sql(mut self, sql: &str) -> Self {
        let d = self.details_mut();
        if d.sql.is_none() {
            d.sql = Some(quote_sql(sql));
        }
        self
    }

    /// `text` as an error may quote it: its first 300 characters (cut on a
    /// character boundary), then `... (N more characters)` if it is longer;
    /// borrowed when nothing is cut. The helper behind
    /// [`with_sql`](Self::with_sql), for drivers to shorten the parts of a
    /// driver's or server's message that quote user input (SQLite's
    /// `unrecognized token: "..."`, PostgreSQL's `at or near "..."`).
    /// SQLAlchemy's `[SQL: ...]` quoting is the model; CPython's and
    /// psycopg2's exceptions keep the text whole.
    pub fn shorten(text: &str) -> std::borrow::Cow<'_, str> {
        shorten(text)
    }

    /// Records the driver's error code.
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.details_mut().code = Some(code.into());
        self
    }

    /// Records the driver's own error as the source.
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.details_mut().source = Some(Arc::new(source));
        self
    }

    /// Marks the connection as lost.
    pub fn with_connection_lost(mut self, lost: bool) -> Self {
        self.details_mut().connection_lost = lost;
        self
    }

    /// Marks the error as proof that the statement it reports committed
    /// nothing: the server refused it (rolling back the transaction it ran
    /// in, when that was the server's implicit one) or it was never sent.
    /// Only whoever raised the error can know that, so only the pool and the
    /// drivers set it; see
    /// [`proves_nothing_committed`](Self::proves_nothing_committed).
    pub(crate) fn with_nothing_committed(mut self) -> Self {
        self.nothing_committed = true;
        self
    }

    /// True if the error proves that the statement it reports committed
    /// nothing (see [`with_nothing_committed`](Self::with_nothing_committed)).
    /// False means "not known", never "committed": a lost connection, a
    /// result that failed to decode after the server committed it, any
    /// error a driver did not mark. The pool reads it to decide whether a
    /// stopped job whose statement was its own commit (PostgreSQL's
    /// one-round-trip `run_query`/`run_operation`) may report
    /// `CancelledError`, which promises that nothing of the job committed.
    /// No PEP 249 counterpart.
    pub(crate) fn proves_nothing_committed(&self) -> bool {
        self.nothing_committed
    }

    /// Prefixes the message with context.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        let d = self.details_mut();
        d.message = format!("{context}: {}", d.message);
        self
    }

    /// The typed error inside (`IntegrityError`, ...), as a `dyn Error`.
    fn inner(&self) -> &(dyn StdError + 'static) {
        match &self.repr {
            Repr::Warning(e) => e,
            Repr::Interface(e) => e,
            Repr::Database(e) => e,
            Repr::Data(e) => e,
            Repr::Operational(e) => e,
            Repr::Integrity(e) => e,
            Repr::Internal(e) => e,
            Repr::Programming(e) => e,
            Repr::NotSupported(e) => e,
        }
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind(), self.details())
    }
}

impl StdError for DbError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(self.inner())
    }
}

/// The result type of DB-API operations.
pub type DbResult<T> = Result<T, DbError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_is_quoted_short() {
        let e = DbError::new(ErrorKind::ProgrammingError, "bad").with_sql("SELECT 1");
        assert_eq!(e.sql(), Some("SELECT 1"));
        assert_eq!(e.to_string(), "ProgrammingError: bad [SQL: SELECT 1]");
        let exact = "é".repeat(SQL_QUOTE_CHARS);
        let e = DbError::new(ErrorKind::ProgrammingError, "bad").with_sql(&exact);
        assert_eq!(e.sql(), Some(exact.as_str()), "nothing to cut");
        let long = format!("{exact}xyz");
        let e = DbError::new(ErrorKind::ProgrammingError, "bad").with_sql(&long);
        assert_eq!(
            e.sql(),
            Some(format!("{exact}... (3 more characters)").as_str())
        );
        let huge = "x".repeat(10_000_000);
        let shown = DbError::new(ErrorKind::OperationalError, "bad")
            .with_sql(&huge)
            .to_string();
        assert!(shown.len() < 400, "{} bytes", shown.len());
        assert!(shown.ends_with("... (9999700 more characters)]"), "{shown}");
        // SQL put in the public field directly is shortened by Display.
        let raw = DbError::from_details(
            ErrorKind::OperationalError,
            ErrorDetails {
                message: "bad".into(),
                sql: Some(huge),
                code: None,
                source: None,
                connection_lost: false,
            },
        );
        assert!(raw.to_string().len() < 400);
    }

    #[test]
    fn shorten_cuts_on_a_char_boundary_and_counts_the_rest() {
        assert!(matches!(
            shorten("short"),
            std::borrow::Cow::Borrowed("short")
        ));
        let exact = "é".repeat(SQL_QUOTE_CHARS);
        assert_eq!(shorten(&exact), exact.as_str());
        let long = format!("{exact}☃☃");
        assert_eq!(shorten(&long), format!("{exact}... (2 more characters)"));
    }
}
