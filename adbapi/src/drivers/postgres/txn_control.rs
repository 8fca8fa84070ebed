//! Which transaction-control statements a query holds, so the driver's idea
//! of "in a transaction" follows a `COMMIT`, `ROLLBACK`, `END` or `ABORT`
//! issued as SQL. The `postgres` crate does not expose the server's
//! transaction status (the `ReadyForQuery` indicator libpq's
//! `PQtransactionStatus` reports, which psycopg2 does not consult either),
//! so the statements' leading keywords are read instead, lexed by the
//! paramstyle translation's lexer.

use crate::drivers::pyformat::{statement_heads, Dialect};

/// What a statement with these leading keywords does to the session's
/// transaction: `Some(false)` ends it (`COMMIT`, `END`, `ROLLBACK`,
/// `ABORT`, `PREPARE TRANSACTION`), `Some(true)` leaves one open (`BEGIN`,
/// `START TRANSACTION`, `COMMIT AND CHAIN`, `ROLLBACK AND CHAIN`), `None`
/// nothing (`ROLLBACK TO SAVEPOINT`, `COMMIT PREPARED`, anything else).
fn effect(head: &[String]) -> Option<bool> {
    let word = |i: usize| head.get(i).map_or("", String::as_str);
    match word(0) {
        "BEGIN" | "START" => Some(true),
        "PREPARE" if word(1) == "TRANSACTION" => Some(false),
        "COMMIT" | "END" | "ROLLBACK" | "ABORT" => {
            // WORK and TRANSACTION are noise words.
            let rest: Vec<&str> = head[1..]
                .iter()
                .map(String::as_str)
                .filter(|w| !matches!(*w, "WORK" | "TRANSACTION"))
                .collect();
            match rest.as_slice() {
                ["TO", ..] | ["PREPARED", ..] => None,
                ["AND", "CHAIN", ..] => Some(true),
                _ => Some(false),
            }
        }
        _ => None,
    }
}

/// True if running `sql` (all its statements, successfully) leaves the
/// session outside a transaction because of a transaction-control statement
/// in it: the last such statement ends the transaction. Statements after a
/// `COMMIT` in one simple query run in an implicit transaction that ends
/// with the query, so they leave none open either.
pub(super) fn ends_transaction(sql: &str) -> bool {
    // Four words tell every form apart (`ROLLBACK WORK TO SAVEPOINT`).
    statement_heads(sql, Dialect::Postgres, 4)
        .iter()
        .rev()
        .find_map(|h| effect(h))
        == Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_ends_are_recognised() {
        for sql in [
            "COMMIT",
            "commit work",
            "  -- done\n /* really */ END",
            "ROLLBACK",
            "rollback transaction",
            "ABORT",
            "ROLLBACK AND NO CHAIN",
            "PREPARE TRANSACTION 'x'",
            "INSERT INTO t VALUES (1); COMMIT",
            "COMMIT; INSERT INTO t VALUES (1)",
            "BEGIN; COMMIT;",
        ] {
            assert!(ends_transaction(sql), "{sql}");
        }
        for sql in [
            "SELECT 'COMMIT'",
            "SELECT 1 -- COMMIT",
            "SELECT $$; COMMIT$$",
            "SELECT \"x;COMMIT\"",
            "ROLLBACK TO SAVEPOINT s",
            "rollback work to s",
            "COMMIT AND CHAIN",
            "COMMIT; BEGIN",
            "COMMIT PREPARED 'x'",
            "SAVEPOINT s",
            "INSERT INTO commit_log VALUES (1)",
            "",
        ] {
            assert!(!ends_transaction(sql), "{sql}");
        }
    }
}
