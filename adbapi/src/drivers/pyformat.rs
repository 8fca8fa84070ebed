//! The `format`/`pyformat` placeholders of psycopg2 and pymysql (`%s`,
//! `%(name)s`, `%%`), translated to the server's own placeholders: `$n` for
//! PostgreSQL, `?` for MySQL/MariaDB prepared statements. String literals,
//! quoted identifiers and comments are skipped, each as its dialect lexes
//! them, so a `%s` inside them is not a parameter. Both drivers share this
//! one translator.
//!
//! Kept whole although over 600 lines: one lexer ([`span_at`]) and all
//! that reads SQL through it (translation, statement counts, statement
//! heads), so a lexing fix lands in one place.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::dbapi::{DbError, DbResult, ErrorKind, Params, Value};

/// Whose SQL lexing and placeholders the translation follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// PostgreSQL: `'..'` (and `E'..'` with backslash escapes), `"ident"`,
    /// `-- comment`, nested `/* */`, dollar quotes; placeholders `$n`.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Postgres,
    /// MySQL/MariaDB (default `sql_mode`): `'..'` and `".."` strings with
    /// backslash escapes, `` `ident` ``, `-- ` and `#` comments, `/* */`;
    /// placeholders `?`.
    #[cfg_attr(not(feature = "mysql"), allow(dead_code))]
    MySql,
}

fn programming(msg: impl Into<String>, sql: &str) -> DbError {
    DbError::new(ErrorKind::ProgrammingError, msg).with_sql(sql)
}

type NamedValue = (String, Value);

/// The SQL to send and the values for its placeholders, in order.
#[derive(Debug)]
pub(crate) struct Translated<'a> {
    pub(crate) sql: Cow<'a, str>,
    pub(crate) values: Vec<&'a Value>,
}

/// What a lexed span is, for the callers that treat them differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Span {
    /// A string literal: the drivers' `%` formatting turns `%%` into `%` here.
    Literal,
    /// A quoted identifier or a dollar-quoted string: left as it is.
    Quoted,
    /// A comment: left as it is, and no statement by itself.
    Comment,
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The end of a quoted run starting at `i` (the opening quote), where a
/// doubled quote stands for itself and, if `escapes`, a backslash escapes
/// the next byte. Unterminated runs end at the end of the SQL.
fn quoted_end(b: &[u8], i: usize, quote: u8, escapes: bool) -> usize {
    let mut j = i + 1;
    while j < b.len() {
        if escapes && b[j] == b'\\' {
            j += 2;
            continue;
        }
        if b[j] == quote {
            if b.get(j + 1) == Some(&quote) {
                j += 2;
                continue;
            }
            return j + 1;
        }
        j += 1;
    }
    b.len()
}

/// If a literal, quoted identifier or comment starts at `i`, its kind and
/// the index just past it.
pub(crate) fn span_at(sql: &str, i: usize, d: Dialect) -> Option<(Span, usize)> {
    let b = sql.as_bytes();
    let line_end = |from: usize| {
        b[from..]
            .iter()
            .position(|&c| c == b'\n')
            .map_or(b.len(), |p| from + p)
    };
    match (d, b[i]) {
        (Dialect::Postgres, b'\'') => {
            // E'..' strings take backslash escapes; '' is a quote in both.
            let escapes =
                i > 0 && (b[i - 1] == b'E' || b[i - 1] == b'e') && (i < 2 || !is_ident(b[i - 2]));
            Some((Span::Literal, quoted_end(b, i, b'\'', escapes)))
        }
        (Dialect::Postgres, b'"') => Some((Span::Quoted, quoted_end(b, i, b'"', false))),
        (Dialect::Postgres, b'-') if b.get(i + 1) == Some(&b'-') => {
            Some((Span::Comment, line_end(i)))
        }
        (Dialect::Postgres, b'/') if b.get(i + 1) == Some(&b'*') => {
            let mut depth = 1;
            let mut j = i + 2;
            while j < b.len() && depth > 0 {
                if b[j] == b'/' && b.get(j + 1) == Some(&b'*') {
                    depth += 1;
                    j += 2;
                } else if b[j] == b'*' && b.get(j + 1) == Some(&b'/') {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            Some((Span::Comment, j.min(b.len())))
        }
        (Dialect::Postgres, b'$') => {
            // A dollar-quote tag: $tag$ ... $tag$ (tag may be empty).
            let mut j = i + 1;
            while j < b.len() && is_ident(b[j]) && !b[j].is_ascii_digit() {
                j += 1;
            }
            if (i == 0 || !is_ident(b[i - 1])) && b.get(j) == Some(&b'$') {
                let tag = &sql[i..=j];
                let end = sql[j + 1..]
                    .find(tag)
                    .map_or(b.len(), |e| j + 1 + e + tag.len());
                Some((Span::Quoted, end))
            } else {
                None
            }
        }
        // MySQL's default sql_mode: both quotes make strings, backslash
        // escapes in both (NO_BACKSLASH_ESCAPES and ANSI_QUOTES are not
        // followed: see the driver's module docs).
        (Dialect::MySql, q @ (b'\'' | b'"')) => Some((Span::Literal, quoted_end(b, i, q, true))),
        (Dialect::MySql, b'`') => Some((Span::Quoted, quoted_end(b, i, b'`', false))),
        // MySQL needs whitespace (or the end) after `--` for a comment.
        (Dialect::MySql, b'-')
            if b.get(i + 1) == Some(&b'-')
                && b.get(i + 2)
                    .is_none_or(|c| c.is_ascii_whitespace() || c.is_ascii_control()) =>
        {
            Some((Span::Comment, line_end(i)))
        }
        (Dialect::MySql, b'#') => Some((Span::Comment, line_end(i))),
        (Dialect::MySql, b'/') if b.get(i + 1) == Some(&b'*') => {
            let end = sql[i + 2..].find("*/").map_or(b.len(), |e| i + 2 + e + 2);
            Some((Span::Comment, end))
        }
        _ => None,
    }
}

/// Translates `sql` for `params` with PostgreSQL's lexing and `$n`.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn translate<'a>(sql: &'a str, params: &'a Params) -> DbResult<Translated<'a>> {
    translate_for(sql, params, Dialect::Postgres)
}

/// Translates `sql` for `params` in dialect `d`. With [`Params::None`] the
/// SQL is sent as it is (psycopg2 and pymysql do not format a query without
/// arguments). For PostgreSQL, native `$n` placeholders are passed through
/// with positional parameters; for MySQL a bare `?` (which the server would
/// take for a placeholder) is refused.
pub(crate) fn translate_for<'a>(
    sql: &'a str,
    params: &'a Params,
    d: Dialect,
) -> DbResult<Translated<'a>> {
    let (positional, named): (&[Value], Option<&[NamedValue]>) = match params {
        Params::None => {
            return Ok(Translated {
                sql: Cow::Borrowed(sql),
                values: Vec::new(),
            })
        }
        Params::Positional(v) => (v, None),
        Params::Named(v) => (&[], Some(v)),
    };
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 8);
    let mut values: Vec<&Value> = Vec::new();
    let mut names: HashMap<&str, usize> = HashMap::new();
    let (mut saw_pyformat, mut saw_native) = (false, false);
    let mut i = 0;
    let mut copied = 0; // bytes of `sql` already copied to `out`
    while i < b.len() {
        if let Some((span, end)) = span_at(sql, i, d) {
            if span == Span::Literal && sql[i..end].contains("%%") {
                // The drivers format the whole string: %% is % here too.
                out.push_str(&sql[copied..i]);
                out.push_str(&sql[i..end].replace("%%", "%"));
                copied = end;
            }
            i = end;
            continue;
        }
        match b[i] {
            b'$' if d == Dialect::Postgres
                && b.get(i + 1).is_some_and(u8::is_ascii_digit)
                && (i == 0 || !is_ident(b[i - 1])) =>
            {
                saw_native = true;
                i += 1;
            }
            b'?' if d == Dialect::MySql => {
                return Err(programming(
                    "a '?' outside a string literal would be taken for a placeholder by MySQL's prepared \
                     statements; this driver's paramstyle is format/pyformat: write %s or %(name)s",
                    sql,
                ));
            }
            b'%' => {
                out.push_str(&sql[copied..i]);
                match b.get(i + 1) {
                    Some(b'%') => {
                        out.push('%');
                        i += 2;
                    }
                    Some(b's') => {
                        saw_pyformat = true;
                        if named.is_some() {
                            return Err(programming(
                                "%s placeholder used with named parameters",
                                sql,
                            ));
                        }
                        let n = values.len();
                        let v = positional.get(n).ok_or_else(|| {
                            programming(
                                format!("not enough parameters: the query uses more than {n}, {n} supplied"),
                                sql,
                            )
                        })?;
                        values.push(v);
                        match d {
                            Dialect::Postgres => {
                                out.push('$');
                                out.push_str(&(n + 1).to_string());
                            }
                            Dialect::MySql => out.push('?'),
                        }
                        i += 2;
                    }
                    Some(b'(') => {
                        saw_pyformat = true;
                        let close = sql[i..]
                            .find(')')
                            .ok_or_else(|| programming("unterminated %(name)s placeholder", sql))?;
                        let name = &sql[i + 2..i + close];
                        if b.get(i + close + 1) != Some(&b's') {
                            return Err(programming(
                                format!("placeholder %({name}) must be followed by 's'"),
                                sql,
                            ));
                        }
                        let Some(named) = named else {
                            return Err(programming(
                                format!("%({name})s placeholder needs named parameters"),
                                sql,
                            ));
                        };
                        let find = || {
                            named
                                .iter()
                                .find(|(k, _)| k == name)
                                .map(|(_, v)| v)
                                .ok_or_else(|| {
                                    programming(format!("missing named parameter '{name}'"), sql)
                                })
                        };
                        match d {
                            Dialect::Postgres => {
                                let idx = match names.get(name) {
                                    Some(&k) => k,
                                    None => {
                                        values.push(find()?);
                                        names.insert(name, values.len());
                                        values.len()
                                    }
                                };
                                out.push('$');
                                out.push_str(&idx.to_string());
                            }
                            Dialect::MySql => {
                                // `?` placeholders are positional: a name used
                                // twice binds its value twice.
                                values.push(find()?);
                                out.push('?');
                            }
                        }
                        i += close + 2;
                    }
                    other => {
                        let c = other.map_or("end of query".to_owned(), |c| {
                            format!("'{}'", char::from(*c))
                        });
                        return Err(programming(
                            format!("unsupported format character {c} after % (write %% for a literal %)"),
                            sql,
                        ));
                    }
                }
                copied = i;
            }
            _ => i += 1,
        }
    }
    if saw_pyformat && saw_native {
        return Err(programming(
            "the query mixes %s-style and $n placeholders",
            sql,
        ));
    }
    if d == Dialect::MySql && !saw_pyformat {
        // pymysql formats `query % args`: a tuple with no placeholder to
        // take it is Python's "not all arguments converted"; a mapping is
        // simply not used.
        if !positional.is_empty() {
            return Err(programming(
                format!(
                    "not all parameters were used: the query has no placeholder, {} supplied",
                    positional.len()
                ),
                sql,
            ));
        }
        out.push_str(&sql[copied..]);
        return Ok(Translated {
            sql: if copied == 0 {
                Cow::Borrowed(sql)
            } else {
                Cow::Owned(out)
            },
            values: Vec::new(),
        });
    }
    if saw_native || !saw_pyformat {
        // Native $n (or no placeholder): positional values go as they are.
        if named.is_some() && !named.is_some_and(<[_]>::is_empty) && !saw_pyformat {
            return Err(programming(
                "named parameters need %(name)s placeholders",
                sql,
            ));
        }
        if copied == 0 {
            return Ok(Translated {
                sql: Cow::Borrowed(sql),
                values: positional.iter().collect(),
            });
        }
        out.push_str(&sql[copied..]);
        return Ok(Translated {
            sql: Cow::Owned(out),
            values: positional.iter().collect(),
        });
    }
    if named.is_none() && values.len() != positional.len() {
        return Err(programming(
            format!(
                "not all parameters were used: the query has {} placeholders, {} supplied",
                values.len(),
                positional.len()
            ),
            sql,
        ));
    }
    out.push_str(&sql[copied..]);
    Ok(Translated {
        sql: Cow::Owned(out),
        values,
    })
}

/// How many statements `sql` holds (PostgreSQL lexing).
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn statement_count(sql: &str) -> usize {
    statement_count_for(sql, Dialect::Postgres)
}

/// How many statements `sql` holds: pieces between top-level `;` that have
/// anything but whitespace and comments in them. A `;` inside a string
/// literal, a quoted identifier or a comment does not separate statements
/// (the same lexing as [`translate_for`]).
pub(crate) fn statement_count_for(sql: &str, d: Dialect) -> usize {
    let b = sql.as_bytes();
    let (mut count, mut content) = (0, false);
    let mut i = 0;
    while i < b.len() {
        if let Some((span, end)) = span_at(sql, i, d) {
            if span != Span::Comment {
                content = true;
            }
            i = end;
            continue;
        }
        match b[i] {
            b';' => {
                if content {
                    count += 1;
                }
                content = false;
            }
            c if !c.is_ascii_whitespace() => content = true,
            _ => {}
        }
        i += 1;
    }
    count + usize::from(content)
}

/// The first `max` keywords of each statement of `sql`, upper-cased:
/// pieces between top-level `;`, lexed as [`translate_for`] lexes them (a
/// `;` or word inside a string literal, a quoted identifier, a comment or a
/// dollar-quoted string does not count). Collecting stops at the first
/// token of a statement that is not a keyword; comments are skipped.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn statement_heads(sql: &str, d: Dialect, max: usize) -> Vec<Vec<String>> {
    let b = sql.as_bytes();
    let mut heads = Vec::new();
    let mut head: Vec<String> = Vec::new();
    // Still reading the statement's leading keywords.
    let mut open = true;
    let mut i = 0;
    while i < b.len() {
        if let Some((span, end)) = span_at(sql, i, d) {
            if span != Span::Comment {
                open = false;
            }
            i = end;
            continue;
        }
        match b[i] {
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
                if open && head.len() < max {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(n: usize) -> Params {
        Params::Positional((0..n).map(|i| Value::Int(i as i64)).collect())
    }

    #[test]
    fn positional_placeholders_become_dollar_numbers() {
        let p = pos(2);
        let t = translate("SELECT * FROM t WHERE a = %s AND b = %s", &p).unwrap();
        assert_eq!(t.sql, "SELECT * FROM t WHERE a = $1 AND b = $2");
        assert_eq!(t.values.len(), 2);
    }

    #[test]
    fn literals_comments_and_dollar_quotes_are_skipped() {
        let p = pos(1);
        let t = translate(
            "SELECT '%s', \"a%s\", $$ %s $$, $f$ %s $f$ -- %s\n, x /* %s /* %s */ */ FROM t WHERE y = %s",
            &p,
        )
        .unwrap();
        assert_eq!(
            t.sql,
            "SELECT '%s', \"a%s\", $$ %s $$, $f$ %s $f$ -- %s\n, x /* %s /* %s */ */ FROM t WHERE y = $1"
        );
    }

    #[test]
    fn double_percent_is_a_literal_percent_even_in_strings() {
        let p = pos(1);
        let t = translate("SELECT x %% 2, 'a%%' FROM t WHERE y LIKE %s", &p).unwrap();
        assert_eq!(t.sql, "SELECT x % 2, 'a%' FROM t WHERE y LIKE $1");
    }

    #[test]
    fn named_placeholders_reuse_numbers() {
        let p = Params::named([("a", 1), ("b", 2)]);
        let t = translate("SELECT %(a)s, %(b)s, %(a)s", &p).unwrap();
        assert_eq!(t.sql, "SELECT $1, $2, $1");
        assert_eq!(t.values, vec![&Value::Int(1), &Value::Int(2)]);
    }

    #[test]
    fn no_params_means_no_formatting() {
        let t = translate("SELECT '%%', 100 % 7", &Params::None).unwrap();
        assert_eq!(t.sql, "SELECT '%%', 100 % 7");
    }

    #[test]
    fn native_placeholders_pass_through() {
        let p = pos(2);
        let t = translate("SELECT $1::int + $2", &p).unwrap();
        assert_eq!(t.sql, "SELECT $1::int + $2");
        assert_eq!(t.values.len(), 2);
    }

    #[test]
    fn errors_name_the_problem() {
        let e = translate("SELECT %s, %s", &pos(1)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ProgrammingError);
        assert!(e.message().contains("not enough parameters"), "{e}");
        let e = translate("SELECT %s", &pos(2)).unwrap_err();
        assert!(e.message().contains("not all parameters"), "{e}");
        let e = translate("SELECT %(x)s", &Params::named([("y", 1)])).unwrap_err();
        assert!(e.message().contains("'x'"), "{e}");
        let e = translate("SELECT %d", &pos(1)).unwrap_err();
        assert!(e.message().contains("'d'"), "{e}");
        let e = translate("SELECT %s, $1", &pos(1)).unwrap_err();
        assert!(e.message().contains("mixes"), "{e}");
    }

    #[test]
    fn escape_strings_take_backslashes() {
        let p = pos(1);
        let t = translate(r"SELECT E'it\'s %s' , %s", &p).unwrap();
        assert_eq!(t.sql, r"SELECT E'it\'s %s' , $1");
    }

    #[test]
    fn statements_are_counted_outside_literals_and_comments() {
        use super::statement_count as n;
        assert_eq!(n(""), 0);
        assert_eq!(n("  \n\t"), 0);
        assert_eq!(n("-- only a comment"), 0);
        assert_eq!(n("/* a /* nested */ comment */ ;;"), 0);
        assert_eq!(n("SELECT 1"), 1);
        assert_eq!(n("SELECT 1;"), 1);
        assert_eq!(n("SELECT 1; -- done"), 1);
        assert_eq!(n("SELECT ';', \";\", $$;$$, $t$ ; $t$ /* ; */"), 1);
        assert_eq!(n("SELECT E'\\';', 1"), 1);
        assert_eq!(n("SELECT 1; SELECT 2"), 2);
        assert_eq!(
            n("CREATE TABLE m (k text); INSERT INTO m VALUES ('a;b');"),
            2
        );
        assert_eq!(n("SELECT $1; SELECT 2"), 2);
    }
}

#[cfg(test)]
mod mysql_tests {
    use super::*;

    fn my<'a>(sql: &'a str, p: &'a Params) -> DbResult<Translated<'a>> {
        translate_for(sql, p, Dialect::MySql)
    }

    #[test]
    fn mysql_placeholders_become_question_marks() {
        let p = Params::Positional(vec![Value::Int(1), Value::Int(2)]);
        let t = my("SELECT * FROM t WHERE a = %s AND b = %s", &p).unwrap();
        assert_eq!(t.sql, "SELECT * FROM t WHERE a = ? AND b = ?");
        let p = Params::named([("a", 1), ("b", 2)]);
        let t = my("SELECT %(a)s, %(b)s, %(a)s", &p).unwrap();
        assert_eq!(t.sql, "SELECT ?, ?, ?");
        assert_eq!(
            t.values,
            vec![&Value::Int(1), &Value::Int(2), &Value::Int(1)]
        );
    }

    #[test]
    fn mysql_literals_identifiers_and_comments_are_skipped() {
        let p = Params::Positional(vec![Value::Int(1)]);
        let t = my(
            "SELECT '%s', \"%s\", 'it\\'s %s', `a%s``b`, x # %s ?\n, y -- %s ?\n, z /* %s ? */ FROM t WHERE w = %s",
            &p,
        )
        .unwrap();
        assert_eq!(
            t.sql,
            "SELECT '%s', \"%s\", 'it\\'s %s', `a%s``b`, x # %s ?\n, y -- %s ?\n, z /* %s ? */ FROM t WHERE w = ?"
        );
        // `--` without a space is two minus signs in MySQL, not a comment.
        let t = my("SELECT 1--%s", &p).unwrap();
        assert_eq!(t.sql, "SELECT 1--?");
        let t = my("SELECT '100%%', \"a%%\" LIKE %s", &p).unwrap();
        assert_eq!(t.sql, "SELECT '100%', \"a%\" LIKE ?");
    }

    #[test]
    fn mysql_errors_name_the_problem() {
        let p = Params::Positional(vec![Value::Int(1)]);
        let e = my("SELECT ? + %s", &p).unwrap_err();
        assert!(e.message().contains("'?'"), "{e}");
        let e = my("SELECT 1", &p).unwrap_err();
        assert!(e.message().contains("not all parameters"), "{e}");
        assert!(my("SELECT 1", &Params::named([("a", 1)]))
            .unwrap()
            .values
            .is_empty());
        assert_eq!(my("SELECT '?'", &Params::None).unwrap().sql, "SELECT '?'");
    }

    #[test]
    fn mysql_statements_are_counted() {
        let n = |s| statement_count_for(s, Dialect::MySql);
        assert_eq!(n(""), 0);
        assert_eq!(n("# only a comment"), 0);
        assert_eq!(n("SELECT ';', \";\", `;` /* ; */ # ;"), 1);
        assert_eq!(n("SELECT 'a\\';'; SELECT 2"), 2);
        assert_eq!(n("SELECT 1;"), 1);
    }
}
