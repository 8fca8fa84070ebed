//! Which statements may run as PostgreSQL's implicit single-statement
//! transaction (one `Bind`/`Execute`/`Sync` round trip) instead of inside
//! `BEGIN` ... `COMMIT`, when the pool's `run_query`/`run_operation` runs one
//! statement as a whole transaction.
//!
//! Outside a transaction block the server runs each statement in a
//! transaction of its own: atomic, committed when it succeeds, rolled back
//! when it fails (PostgreSQL's "Multiple Statements in a Simple Query" and
//! extended-query `Sync` rules). For plain DML and queries that is what
//! `BEGIN`, the statement and `COMMIT` do, at a third of the round trips.
//! It is not the same for transaction control (`BEGIN`, `COMMIT`,
//! `SAVEPOINT`, `SET TRANSACTION`...), for statements that need a block
//! (`LOCK`, `DECLARE` a cursor), nor for those refused inside one (`VACUUM`,
//! `CREATE DATABASE`, `CREATE INDEX CONCURRENTLY`), so the rule is a
//! whitelist by the first keyword, read outside comments, literals and
//! dollar quotes by the paramstyle lexer.

use crate::drivers::pyformat::{statement_count, statement_heads, Dialect};

/// The first keywords of statements that behave the same in an implicit
/// transaction of their own as between `BEGIN` and `COMMIT`.
const ALONE: [&str; 7] = [
    "SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "VALUES", "TABLE",
];

/// True if `sql` is exactly one statement whose first keyword is on the
/// whitelist. A statement that opens with anything else (a parenthesis, a
/// keyword off the list) is not, so it keeps the `BEGIN`/`COMMIT` path; nor
/// is one that may change the client encoding (see
/// [`may_change_client_encoding`]).
pub(super) fn may_run_alone(sql: &str) -> bool {
    if sql.contains('\0') || statement_count(sql) != 1 || may_change_client_encoding(sql) {
        return false;
    }
    match statement_heads(sql, Dialect::Postgres, 1).as_slice() {
        [head] => head.first().is_some_and(|w| ALONE.contains(&w.as_str())),
        _ => false,
    }
}

/// True if `sql` may change the session's `client_encoding` (`SET
/// client_encoding`, `SET NAMES`, `set_config('client_encoding', ..)`,
/// `RESET`, `DISCARD`). The server then sends text in that encoding, which
/// may not decode as UTF-8, and a statement run as its own transaction has
/// committed before its rows are decoded: the driver stops running
/// statements alone on such a session. The `postgres` crate does not expose
/// the `ParameterStatus` the server reports, so the text is read instead,
/// erring towards yes.
pub(super) fn may_change_client_encoding(sql: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    lower.contains("client_encoding")
        || statement_heads(sql, Dialect::Postgres, 2).iter().any(|h| {
            match h.first().map(String::as_str) {
                Some("SET") => h.get(1).is_some_and(|w| w == "NAMES"),
                Some("RESET" | "DISCARD") => true,
                _ => false,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_dml_and_queries_run_alone() {
        for sql in [
            "SELECT 1",
            "select * from t where k = %s for update",
            "  -- look up\n /* the row */ SELECT x FROM t",
            "INSERT INTO t VALUES (1) RETURNING k",
            "update t set x = 1",
            "DELETE FROM t",
            "WITH d AS (DELETE FROM t RETURNING *) SELECT count(*) FROM d",
            "VALUES (1), (2)",
            "TABLE t",
            "SELECT 1;",
            "SELECT 'a; BEGIN'",
            "SELECT $$; COMMIT$$",
        ] {
            assert!(may_run_alone(sql), "{sql}");
        }
    }

    #[test]
    fn everything_else_keeps_begin_and_commit() {
        for sql in [
            "BEGIN",
            "START TRANSACTION",
            "COMMIT",
            "ROLLBACK",
            "END",
            "ABORT",
            "SAVEPOINT s",
            "RELEASE s",
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "SET LOCAL x = 1",
            "SET statement_timeout = 0",
            "LOCK TABLE t",
            "DECLARE c CURSOR FOR SELECT 1",
            "FETCH 1 FROM c",
            "VACUUM t",
            "ANALYZE t",
            "CREATE DATABASE d",
            "CREATE INDEX CONCURRENTLY i ON t (x)",
            "CREATE TABLE t (x int)",
            "CALL p()",
            "DO $$ BEGIN END $$",
            "COPY t FROM STDIN",
            "EXPLAIN ANALYZE DELETE FROM t",
            "PREPARE TRANSACTION 'x'",
            "(SELECT 1) UNION (SELECT 2)",
            "SELECT 1; SELECT 2",
            "SELECT 1; COMMIT",
            "INSERT INTO t VALUES (1); BEGIN",
            "",
            "   ",
            "-- SELECT 1",
            "SELECT '\0'",
            "SELECT set_config('client_encoding', 'LATIN1', false), chr(233)",
        ] {
            assert!(!may_run_alone(sql), "{sql}");
        }
    }
}
