//! SQLite result codes as PEP 249 exceptions, as CPython's `sqlite3` maps
//! them, and the checks CPython makes before SQLite sees a statement.

use std::borrow::Cow;

use rusqlite::ffi::ErrorCode;

use crate::dbapi::{DbError, ErrorKind};

/// CPython's `sqlite3` error for any use of a closed connection.
pub(super) fn closed() -> DbError {
    DbError::new(
        ErrorKind::ProgrammingError,
        "Cannot operate on a closed database.",
    )
}

/// Refuses SQL that SQLite would silently truncate. SQLite's parser stops at
/// the first NUL, so `UPDATE t SET v = 1\0 WHERE k = 1` would run as an
/// unconditional `UPDATE`. CPython's `sqlite3` refuses it the same way
/// (`ProgrammingError: the query contains a null character`, checked in
/// `pysqlite_statement_create`).
pub(super) fn check_sql(sql: &str) -> Result<(), DbError> {
    if sql.contains('\0') {
        return Err(DbError::new(
            ErrorKind::ProgrammingError,
            "the query contains a null character",
        )
        .with_sql(sql));
    }
    Ok(())
}

/// True for `SQLITE_BUSY` and its extended codes, except
/// `SQLITE_BUSY_SNAPSHOT` (a WAL read transaction that can no longer write:
/// trying again cannot help).
pub(super) fn is_busy(e: &DbError) -> bool {
    const BUSY: i32 = 5;
    const BUSY_SNAPSHOT: i32 = BUSY | (2 << 8);
    e.code()
        .and_then(|c| c.parse::<i32>().ok())
        .is_some_and(|c| c & 0xff == BUSY && c != BUSY_SNAPSHOT)
}

/// True for `SQLITE_LOCKED_SHAREDCACHE`: in shared-cache mode a table lock
/// held by another connection of the process (a writer's open transaction
/// holds the write lock of each table it wrote). SQLite fails at once there,
/// without calling the busy handler.
pub(super) fn is_shared_cache_locked(e: &DbError) -> bool {
    const LOCKED_SHAREDCACHE: i32 = 6 | (1 << 8);
    e.code()
        .and_then(|c| c.parse::<i32>().ok())
        .is_some_and(|c| c == LOCKED_SHAREDCACHE)
}

/// Maps a rusqlite error onto a PEP 249 kind, as CPython's `sqlite3` maps
/// SQLite result codes (`_pysqlite_seterror`).
pub(super) fn map_error(e: rusqlite::Error, sql: Option<&str>) -> DbError {
    use rusqlite::Error as E;
    // rusqlite copies the whole statement into a prepare error (and its
    // Display); the error quotes the SQL once, shortened, via `with_sql`.
    // SQLite's own message quotes the offending token whole ("unrecognized
    // token: ...", "no such table: ..."), so it is shortened as the SQL is,
    // in the kept source too (a traceback prints the source chain).
    let e = match e {
        E::SqlInputError { error, msg, .. } => {
            E::SqliteFailure(error, Some(DbError::shorten(&msg).into_owned()))
        }
        E::SqliteFailure(error, Some(msg)) => {
            let msg = match DbError::shorten(&msg) {
                Cow::Borrowed(_) => msg,
                Cow::Owned(short) => short,
            };
            E::SqliteFailure(error, Some(msg))
        }
        other => other,
    };
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
        other => DbError::shorten(&other.to_string()).into_owned(),
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
