//! psycopg2's `pyformat` placeholders (`%s`, `%(name)s`, `%%`) translated to
//! PostgreSQL's `$n`, skipping string literals, quoted identifiers, comments
//! and dollar-quoted strings, so a `%s` inside them is not a parameter.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::dbapi::{DbError, DbResult, ErrorKind, Params, Value};

fn programming(msg: impl Into<String>, sql: &str) -> DbError {
    DbError::new(ErrorKind::ProgrammingError, msg).with_sql(sql)
}

type NamedValue = (String, Value);

/// The SQL to send and the values for `$1..$n`, in order.
#[derive(Debug)]
pub(crate) struct Translated<'a> {
    pub(crate) sql: Cow<'a, str>,
    pub(crate) values: Vec<&'a Value>,
}

/// Translates `sql` for `params`. With [`Params::None`] the SQL is sent as it
/// is (psycopg2 does not format a query without arguments). Native `$n`
/// placeholders are passed through with positional parameters.
pub(crate) fn translate<'a>(sql: &'a str, params: &'a Params) -> DbResult<Translated<'a>> {
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
        match b[i] {
            b'\'' => {
                // E'..' strings take backslash escapes; '' is a quote in both.
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
                    if b[i] == b'%' && b.get(i + 1) == Some(&b'%') {
                        // psycopg2 formats the whole string: %% is % here too.
                        out.push_str(&sql[copied..=i]);
                        i += 2;
                        copied = i;
                        continue;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'"' => {
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
                if b.get(i + 1).is_some_and(u8::is_ascii_digit) && (i == 0 || !is_ident(b[i - 1])) {
                    saw_native = true;
                    i += 1;
                    continue;
                }
                // A dollar-quote tag: $tag$ ... $tag$ (tag may be empty).
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
                        out.push('$');
                        out.push_str(&(n + 1).to_string());
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
                        let idx = match names.get(name) {
                            Some(&k) => k,
                            None => {
                                let v = named
                                    .iter()
                                    .find(|(k, _)| k == name)
                                    .map(|(_, v)| v)
                                    .ok_or_else(|| {
                                        programming(
                                            format!("missing named parameter '{name}'"),
                                            sql,
                                        )
                                    })?;
                                values.push(v);
                                names.insert(name, values.len());
                                values.len()
                            }
                        };
                        out.push('$');
                        out.push_str(&idx.to_string());
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

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// How many statements `sql` holds: pieces between top-level `;` that have
/// anything but whitespace and comments in them. A `;` inside a string
/// literal, a quoted identifier, a comment or a dollar-quoted string does not
/// separate statements (the same lexing as [`translate`]).
pub(crate) fn statement_count(sql: &str) -> usize {
    let b = sql.as_bytes();
    let (mut count, mut content) = (0, false);
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\'' => {
                let escapes = i > 0
                    && (b[i - 1] == b'E' || b[i - 1] == b'e')
                    && (i < 2 || !is_ident(b[i - 2]));
                content = true;
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
                content = true;
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
                content = true;
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
                if content {
                    count += 1;
                }
                content = false;
                i += 1;
            }
            c => {
                if !c.is_ascii_whitespace() {
                    content = true;
                }
                i += 1;
            }
        }
    }
    count + usize::from(content)
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
