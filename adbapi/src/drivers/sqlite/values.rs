//! Binding [`Params`] to a statement and reading SQLite values back.

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::ToSql;

use super::errors::map_error;
use crate::dbapi::{DbError, ErrorKind, Params, Value};

/// Binds a [`Value`] without copying it. Text is bound with its length, so
/// a NUL inside a text parameter is stored and read back exactly.
struct Bind<'a>(&'a Value);

impl ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self.0 {
            Value::Null => ValueRef::Null,
            Value::Bool(b) => ValueRef::Integer(i64::from(*b)),
            Value::Int(i) => ValueRef::Integer(*i),
            Value::Float(x) => ValueRef::Real(*x),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Bytes(b) => ValueRef::Blob(b),
        }))
    }
}

/// Binds `params` to `stmt`, with CPython's wording for a wrong number of
/// bindings or a missing name (`pysqlite_statement_bind_parameters`).
pub(super) fn bind(
    stmt: &mut rusqlite::Statement<'_>,
    params: &Params,
    sql: &str,
) -> Result<(), DbError> {
    let count = stmt.parameter_count();
    match params {
        Params::None | Params::Positional(_) => {
            let values: &[Value] = match params {
                Params::Positional(v) => v,
                _ => &[],
            };
            if values.len() != count {
                return Err(DbError::new(
                    ErrorKind::ProgrammingError,
                    format!(
                        "Incorrect number of bindings supplied. The current statement uses {count}, and there are {} supplied.",
                        values.len()
                    ),
                )
                .with_sql(sql));
            }
            for (i, v) in values.iter().enumerate() {
                stmt.raw_bind_parameter(i + 1, Bind(v))
                    .map_err(|e| map_error(e, Some(sql)))?;
            }
        }
        Params::Named(pairs) => {
            for i in 1..=count {
                let Some(name) = stmt.parameter_name(i).map(str::to_owned) else {
                    return Err(DbError::new(
                        ErrorKind::ProgrammingError,
                        format!("Binding {i} has no name, but you supplied a dictionary (which has only names)."),
                    )
                    .with_sql(sql));
                };
                let bare = name.trim_start_matches([':', '@', '$']);
                let Some((_, v)) = pairs.iter().find(|(k, _)| k == bare) else {
                    return Err(DbError::new(
                        ErrorKind::ProgrammingError,
                        format!("You did not supply a value for binding parameter {name}."),
                    )
                    .with_sql(sql));
                };
                stmt.raw_bind_parameter(i, Bind(v))
                    .map_err(|e| map_error(e, Some(sql)))?;
            }
        }
    }
    Ok(())
}

/// The [`Value`] of column `col` (named `name`). Text that is not UTF-8
/// (SQLite stores whatever bytes it is given, e.g. `CAST(x'ff' AS TEXT)`)
/// is an `OperationalError`, as CPython's "Could not decode to UTF-8
/// column" (its default `text_factory`): never a panic, and never a lossy
/// replacement that would write back different bytes.
pub(super) fn value_of<'n>(
    v: ValueRef<'_>,
    col: usize,
    name: impl FnOnce() -> &'n str,
) -> Result<Value, DbError> {
    Ok(match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(x) => Value::Float(x),
        ValueRef::Text(t) => Value::Text(
            std::str::from_utf8(t)
                .map_err(|e| {
                    // A column named after a huge expression is quoted by
                    // its start only.
                    let name = name();
                    let name: String = if name.len() > 80 {
                        name.chars().take(60).chain("...".chars()).collect()
                    } else {
                        name.to_owned()
                    };
                    DbError::new(
                        ErrorKind::OperationalError,
                        format!(
                            "Could not decode to UTF-8 column {col} ('{name}'): invalid byte at offset {} of {}; read it as a BLOB (CAST(... AS BLOB)) to get the bytes",
                            e.valid_up_to(),
                            t.len()
                        ),
                    )
                    .with_source(e)
                })?
                .to_owned(),
        ),
        ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
    })
}
