//! The little the driver reads of a statement's text itself. Whether a
//! statement writes is SQLite's call (`sqlite3_stmt_readonly`); the leading
//! keywords only pick out the statements whose transaction behaviour is
//! special.

/// The first `N` keywords of `sql`, skipping whitespace and comments; a
/// missing keyword is `""`.
fn keywords<const N: usize>(sql: &str) -> [&str; N] {
    let mut out = [""; N];
    let mut s = sql;
    for slot in &mut out {
        loop {
            s = s.trim_start();
            if let Some(rest) = s.strip_prefix("--") {
                s = rest.find('\n').map_or("", |i| &rest[i + 1..]);
            } else if let Some(rest) = s.strip_prefix("/*") {
                s = rest.find("*/").map_or("", |i| &rest[i + 2..]);
            } else {
                break;
            }
        }
        let end = s
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(s.len());
        *slot = &s[..end];
        if end == 0 {
            break;
        }
        s = &s[end..];
    }
    out
}

/// How the driver treats a statement, from its leading keywords.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Shape {
    /// It may get an implicit `BEGIN` if it writes. Not for transaction
    /// control (`BEGIN IMMEDIATE` writes by SQLite's account), nor for what
    /// SQLite refuses inside a transaction or treats differently there:
    /// `VACUUM` ("cannot VACUUM from within a transaction"),
    /// `ATTACH`/`DETACH`, and `PRAGMA` (`journal_mode=WAL` fails and
    /// `foreign_keys=ON` silently does nothing inside one). No non-DML
    /// statement gets one in CPython either.
    pub(super) implicit_begin: bool,
    /// `BEGIN IMMEDIATE`/`BEGIN EXCLUSIVE`: read-only by SQLite's account,
    /// but it takes the write lock at once.
    pub(super) locks_for_writing: bool,
    /// `INSERT`, `UPDATE`, `DELETE`, `REPLACE`, or a `WITH` that leads into
    /// one (when SQLite says it writes): `rowcount` and `lastrowid` are
    /// set, as CPython sets them for DML.
    pub(super) dml: bool,
}

impl Shape {
    /// The shape of `sql`.
    pub(super) fn of(sql: &str) -> Shape {
        let [first, second] = keywords::<2>(sql);
        let is = |k: &str, set: &[&str]| set.iter().any(|w| k.eq_ignore_ascii_case(w));
        Shape {
            implicit_begin: !is(
                first,
                &[
                    "VACUUM",
                    "ATTACH",
                    "DETACH",
                    "PRAGMA",
                    "BEGIN",
                    "COMMIT",
                    "END",
                    "ROLLBACK",
                    "SAVEPOINT",
                    "RELEASE",
                ],
            ),
            locks_for_writing: is(first, &["BEGIN"]) && is(second, &["IMMEDIATE", "EXCLUSIVE"]),
            dml: is(first, &["INSERT", "UPDATE", "DELETE", "REPLACE", "WITH"]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_skip_comments_and_space() {
        assert_eq!(
            keywords::<2>("  -- c\n /* x */ insert /* y */ into t"),
            ["insert", "into"]
        );
        assert_eq!(keywords::<2>("-- only a comment"), ["", ""]);
        assert_eq!(keywords::<2>("/* unterminated"), ["", ""]);
        assert_eq!(keywords::<2>("BEGIN;"), ["BEGIN", ""]);
        assert_eq!(keywords::<2>("é"), ["", ""]);
    }

    #[test]
    fn shapes() {
        assert!(!Shape::of("\n\tpragma journal_mode=WAL").implicit_begin);
        assert!(!Shape::of("/* */ VACUUM").implicit_begin);
        assert!(!Shape::of("BEGIN IMMEDIATE").implicit_begin);
        assert!(!Shape::of("savepoint x").implicit_begin);
        assert!(Shape::of("CREATE TABLE t (x)").implicit_begin);
        assert!(Shape::of("with x as (select 1) insert into t select * from x").implicit_begin);
        assert!(Shape::of("begin  immediate").locks_for_writing);
        assert!(Shape::of("BEGIN /* c */ EXCLUSIVE TRANSACTION").locks_for_writing);
        assert!(!Shape::of("BEGIN").locks_for_writing);
        assert!(!Shape::of("BEGIN TRANSACTION").locks_for_writing);
        assert!(Shape::of("with x as (select 1) delete from t").dml);
        assert!(Shape::of("REPLACE INTO t VALUES (1)").dml);
        assert!(!Shape::of("CREATE TABLE t (x)").dml);
    }
}
