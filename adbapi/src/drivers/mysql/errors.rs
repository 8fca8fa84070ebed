//! MySQL/MariaDB errors mapped onto PEP 249 kinds, as pymysql's
//! `pymysql.err._map_error` and `raise_mysql_exception` map them.

use mysql::{DriverError, Error as MyError};

use crate::dbapi::{DbError, ErrorKind};

/// The PEP 249 kind for a MySQL error number: pymysql's `error_map`
/// (`pymysql/err.py`), and for numbers it does not list `InternalError`
/// below 1000 and `OperationalError` from 1000 on, as
/// `raise_mysql_exception` does.
pub fn kind_for_errno(code: u16) -> ErrorKind {
    match code {
        // DB_CREATE_EXISTS, SYNTAX_ERROR, PARSE_ERROR, NO_SUCH_TABLE,
        // WRONG_DB_NAME, WRONG_TABLE_NAME, FIELD_SPECIFIED_TWICE,
        // INVALID_GROUP_FUNC_USE, UNSUPPORTED_EXTENSION,
        // TABLE_MUST_HAVE_COLUMNS, CANT_DO_THIS_DURING_AN_TRANSACTION,
        // WRONG_COLUMN_NAME.
        1007 | 1149 | 1064 | 1146 | 1102 | 1103 | 1110 | 1111 | 1112 | 1113 | 1179 | 1166 => {
            ErrorKind::ProgrammingError
        }
        // WARN_DATA_TRUNCATED, WARN_NULL_TO_NOTNULL, WARN_DATA_OUT_OF_RANGE,
        // NO_DEFAULT, PRIMARY_CANT_HAVE_NULL, DATA_TOO_LONG,
        // DATETIME_FUNCTION_OVERFLOW, TRUNCATED_WRONG_VALUE_FOR_FIELD,
        // ILLEGAL_VALUE_FOR_TYPE.
        1265 | 1263 | 1264 | 1230 | 1171 | 1406 | 1441 | 1366 | 1367 => ErrorKind::DataError,
        // DUP_ENTRY, NO_REFERENCED_ROW, NO_REFERENCED_ROW_2,
        // ROW_IS_REFERENCED, ROW_IS_REFERENCED_2, CANNOT_ADD_FOREIGN,
        // BAD_NULL_ERROR.
        1062 | 1216 | 1452 | 1217 | 1451 | 1215 | 1048 => ErrorKind::IntegrityError,
        // WARNING_NOT_COMPLETE_ROLLBACK, NOT_SUPPORTED_YET, FEATURE_DISABLED,
        // UNKNOWN_STORAGE_ENGINE.
        1196 | 1235 | 1289 | 1286 => ErrorKind::NotSupportedError,
        // DBACCESS_DENIED_ERROR, ACCESS_DENIED_ERROR, CON_COUNT_ERROR,
        // TABLEACCESS_DENIED_ERROR, COLUMNACCESS_DENIED_ERROR,
        // CONSTRAINT_FAILED, LOCK_DEADLOCK.
        1044 | 1045 | 1040 | 1142 | 1143 | 4025 | 1213 => ErrorKind::OperationalError,
        c if c < 1000 => ErrorKind::InternalError,
        _ => ErrorKind::OperationalError,
    }
}

/// True for error numbers that mean the session is gone: the client's
/// CR_SERVER_GONE_ERROR (2006), CR_SERVER_LOST (2013), CR_CONN_HOST_ERROR
/// (2003), CR_SERVER_LOST_EXTENDED (2055), MySQL 8's
/// ER_CLIENT_INTERACTION_TIMEOUT (4031, `wait_timeout` expired), MariaDB's
/// ER_CONNECTION_KILLED (1927) and ER_SERVER_SHUTDOWN (1053).
pub fn errno_is_disconnect(code: u16) -> bool {
    matches!(code, 2006 | 2013 | 2003 | 2055 | 4031 | 1927 | 1053)
}

/// Maps a `mysql` crate error onto a PEP 249 kind; the MySQL error number
/// is the error's code.
pub(crate) fn map_error(e: MyError, sql: Option<&str>) -> DbError {
    let mut d = match &e {
        MyError::MySqlError(m) => DbError::new(
            kind_for_errno(m.code),
            format!("({}, {:?})", m.code, m.message),
        )
        .with_code(m.code.to_string())
        .with_connection_lost(errno_is_disconnect(m.code)),
        MyError::IoError(io) => {
            // pymysql: 2006 when the request could not be written, 2013 when
            // the answer could not be read.
            let code = match io.kind() {
                std::io::ErrorKind::BrokenPipe => 2006,
                _ => 2013,
            };
            let what = if code == 2006 {
                "MySQL server has gone away"
            } else {
                "Lost connection to MySQL server during query"
            };
            DbError::new(
                ErrorKind::OperationalError,
                format!("({code}, '{what} ({io})')"),
            )
            .with_code(code.to_string())
            .with_connection_lost(true)
        }
        MyError::CodecError(c) => DbError::new(
            ErrorKind::OperationalError,
            format!("(2013, 'Lost connection to MySQL server during query ({c})')"),
        )
        .with_code("2013")
        .with_connection_lost(true),
        MyError::DriverError(de) => match de {
            DriverError::ConnectTimeout | DriverError::CouldNotConnect(_) => DbError::new(
                ErrorKind::OperationalError,
                format!("(2003, \"Can't connect to MySQL server ({de})\")"),
            )
            .with_code("2003")
            .with_connection_lost(true),
            DriverError::MismatchedStmtParams(..)
            | DriverError::Params(_)
            | DriverError::MixedParams => DbError::new(ErrorKind::ProgrammingError, de.to_string()),
            // The stream can no longer be trusted: drop the session.
            DriverError::PacketOutOfSync | DriverError::UnexpectedPacket | DriverError::Timeout => {
                DbError::new(ErrorKind::OperationalError, de.to_string())
                    .with_code("2013")
                    .with_connection_lost(true)
            }
            DriverError::PacketTooLarge => {
                DbError::new(ErrorKind::OperationalError, de.to_string()).with_code("2020")
            }
            _ => DbError::new(ErrorKind::OperationalError, de.to_string()),
        },
        MyError::UrlError(u) => DbError::new(
            ErrorKind::ProgrammingError,
            format!("invalid MySQL URL: {u}"),
        ),
        MyError::FromValueError(_) | MyError::FromRowError(_) => {
            DbError::new(ErrorKind::DataError, e.to_string())
        }
    };
    if let Some(s) = sql {
        d = d.with_sql(s);
    }
    d.with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errnos_map_as_pymysql_maps_them() {
        for (code, kind) in [
            (1062, ErrorKind::IntegrityError),
            (1452, ErrorKind::IntegrityError),
            (1048, ErrorKind::IntegrityError),
            (1064, ErrorKind::ProgrammingError),
            (1146, ErrorKind::ProgrammingError),
            (1264, ErrorKind::DataError),
            (1406, ErrorKind::DataError),
            (1213, ErrorKind::OperationalError),
            (1205, ErrorKind::OperationalError),
            (1045, ErrorKind::OperationalError),
            (1235, ErrorKind::NotSupportedError),
            (1317, ErrorKind::OperationalError),
            (999, ErrorKind::InternalError),
        ] {
            assert_eq!(kind_for_errno(code), kind, "errno {code}");
        }
        for code in [2006, 2013, 2003, 4031] {
            assert!(errno_is_disconnect(code), "{code}");
        }
        assert!(!errno_is_disconnect(1062));
    }
}
