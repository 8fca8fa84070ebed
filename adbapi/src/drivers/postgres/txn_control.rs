//! Which transaction-control statements a query holds, so the driver's idea
//! of "in a transaction" follows a `COMMIT`, `ROLLBACK`, `END` or `ABORT`
//! issued as SQL. The `postgres` crate does not expose the server's
//! transaction status (the `ReadyForQuery` indicator libpq's
//! `PQtransactionStatus` reports, which psycopg2 does not consult either),
//! so the statements' leading keywords are read instead.

/// The first few keywords of each statement of `sql`, upper-cased: pieces
/// between top-level `;`, lexed as the paramstyle translation lexes them (a
/// `;` or word inside a string literal, a quoted identifier, a comment or a
/// dollar-quoted string does not count). Collecting stops at the first
/// token of a statement that is not a keyword.
fn statement_heads(sql: &str) -> Vec<Vec<String>> {
    const HEAD: usize = 4;
    let b = sql.as_bytes();
    let mut heads = Vec::new();
    let mut head: Vec<String> = Vec::new();
    // Still reading the statement's leading keywords.
    let mut open = true;
    let is_ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\'' => {
                open = false;
                let escapes = i > 0
                    && (b[i - 1] == b'E' || b[i - 1] == b'e')
                    && (i < 2 || !is_ident(b[i - 2]));
                i += 1;
                while i < b.len() {
                    if escapes && b[i] == b'\\' {
                        i += 2;
                        continue;
                    }
                    if b[i] == b'\'' {
                        if b.get(i + 1) == Some(&b'\'') {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'"' => {
                open = false;
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += 1;
                }
                i += 1;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 1;
                i += 2;
                while i < b.len() && depth > 0 {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                    } else {
                        i += 1;
                    }
                }
            }
            b'$' => {
                open = false;
                let start = i;
                let mut j = i + 1;
                while j < b.len() && is_ident(b[j]) && !b[j].is_ascii_digit() {
                    j += 1;
                }
                if (i == 0 || !is_ident(b[i - 1])) && b.get(j) == Some(&b'$') {
                    let tag = &sql[start..=j];
                    match sql[j + 1..].find(tag) {
                        Some(end) => i = j + 1 + end + tag.len(),
                        None => i = b.len(),
                    }
                } else {
                    i += 1;
                }
            }
            b';' => {
                if !head.is_empty() {
                    heads.push(std::mem::take(&mut head));
                }
                open = true;
                i += 1;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (is_ident(b[i]) || b[i] == b'$') {
                    i += 1;
                }
                if open && head.len() < HEAD {
                    head.push(sql[start..i].to_ascii_uppercase());
                }
            }
            c => {
                if !c.is_ascii_whitespace() {
                    open = false;
                }
                i += 1;
            }
        }
    }
    if !head.is_empty() {
        heads.push(head);
    }
    heads
}

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
    statement_heads(sql).iter().rev().find_map(|h| effect(h)) == Some(false)
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
