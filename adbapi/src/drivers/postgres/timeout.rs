//! `cp_statement_timeout` for PostgreSQL: the session's
//! `statement_timeout`, set once at connect (what Matrix Synapse does by
//! hand for every new connection). A statement over it fails with SQLSTATE
//! `57014` *canceling statement due to statement timeout*, and the
//! transaction is aborted (the pool's rollback ends it); the cancel
//! machinery ([`super::cancel`]) gives the same SQLSTATE with *due to user
//! request*, which [`DbError::is_statement_timeout`](crate::dbapi::DbError::is_statement_timeout)
//! does not count.

use std::time::Duration;

/// The `SET` for `limit` (`None` or zero: no limit, PostgreSQL's 0), in
/// whole milliseconds, rounded up so a sub-millisecond limit is not taken
/// for "no limit".
pub(super) fn set_sql(limit: Option<Duration>) -> String {
    let ms = limit.map_or(0, |d| {
        let ms = d.as_nanos().div_ceil(1_000_000);
        // PostgreSQL's limit for the setting (INT_MAX milliseconds); the
        // pool refuses longer limits before they get here.
        u64::try_from(ms).unwrap_or(u64::MAX).min(i32::MAX as u64)
    });
    format!("SET statement_timeout = {ms}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_become_whole_milliseconds_rounded_up() {
        assert_eq!(set_sql(None), "SET statement_timeout = 0");
        assert_eq!(
            set_sql(Some(Duration::from_micros(1))),
            "SET statement_timeout = 1"
        );
        assert_eq!(
            set_sql(Some(Duration::from_millis(1500))),
            "SET statement_timeout = 1500"
        );
        assert_eq!(
            set_sql(Some(Duration::from_secs(u64::MAX))),
            format!("SET statement_timeout = {}", i32::MAX)
        );
    }
}
