//! `cp_statement_timeout` for MySQL and MariaDB, set once per session at
//! connect. The two servers spell it differently, so the server is asked
//! which it is: MariaDB's `max_statement_time` (seconds, every statement;
//! over it: error 1969 `ER_STATEMENT_TIMEOUT`), MySQL's `max_execution_time`
//! (milliseconds, read-only `SELECT`s only; over it: error 3024
//! `ER_QUERY_TIMEOUT`). Either way only the statement fails; the session
//! and its transaction stay, and the pool rolls the job back.

use std::time::Duration;

use mysql::prelude::Queryable;
use mysql::Conn;

use super::errors::map_error;
use crate::dbapi::DbResult;

/// Sets the session's limit (`None` or zero: none).
pub(super) fn apply(conn: &mut Conn, limit: Option<Duration>) -> DbResult<()> {
    const VERSION: &str = "SELECT @@version";
    let version: String = conn
        .query_first(VERSION)
        .map_err(|e| map_error(e, Some(VERSION)))?
        .unwrap_or_default();
    let sql = set_sql(version.contains("MariaDB"), limit);
    conn.query_drop(&sql).map_err(|e| map_error(e, Some(&sql)))
}

/// The `SET` for the server kind.
fn set_sql(mariadb: bool, limit: Option<Duration>) -> String {
    let limit = limit.unwrap_or(Duration::ZERO);
    if mariadb {
        // Microsecond precision is what the server keeps; rounded up, so a
        // sub-microsecond limit is not taken for 0, "no limit".
        let us = limit.as_nanos().div_ceil(1_000);
        format!(
            "SET SESSION max_statement_time = {}.{:06}",
            us / 1_000_000,
            us % 1_000_000
        )
    } else {
        let ms = u64::try_from(limit.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX);
        format!("SET SESSION max_execution_time = {ms}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_server_gets_its_own_variable() {
        let d = Some(Duration::from_millis(1500));
        assert_eq!(
            set_sql(true, d),
            "SET SESSION max_statement_time = 1.500000"
        );
        assert_eq!(set_sql(false, d), "SET SESSION max_execution_time = 1500");
        assert_eq!(set_sql(false, None), "SET SESSION max_execution_time = 0");
        assert_eq!(
            set_sql(false, Some(Duration::from_micros(1))),
            "SET SESSION max_execution_time = 1"
        );
    }

    #[test]
    fn a_sub_microsecond_limit_is_not_taken_for_no_limit_by_mariadb() {
        // 0 is MariaDB's "no limit": a limit it cannot express is rounded
        // up to its precision, as MySQL's and PostgreSQL's milliseconds are.
        assert_eq!(
            set_sql(true, Some(Duration::from_nanos(100))),
            "SET SESSION max_statement_time = 0.000001"
        );
        assert_eq!(
            set_sql(true, Some(Duration::from_nanos(1_500_001))),
            "SET SESSION max_statement_time = 0.001501"
        );
        assert_eq!(
            set_sql(true, Some(Duration::from_secs(2_147_483))),
            "SET SESSION max_statement_time = 2147483.000000"
        );
        assert_eq!(
            set_sql(true, None),
            "SET SESSION max_statement_time = 0.000000"
        );
    }
}
