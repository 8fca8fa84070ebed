//! How values map between [`Value`] and MySQL, both ways.
//!
//! | MySQL column | `Value` |
//! |---|---|
//! | `TINYINT`..`BIGINT`, `YEAR`, signed or unsigned | `Int` (a `BIGINT UNSIGNED` above `i64::MAX` as exact decimal `Text`) |
//! | `FLOAT`, `DOUBLE` | `Float` (a `FLOAT` as its shortest decimal text reads, as pymysql parses the server's text) |
//! | `DECIMAL` | `Text`, exact (pymysql gives `decimal.Decimal`) |
//! | `CHAR`, `VARCHAR`, `TEXT`, `ENUM`, `SET`, `JSON` | `Text` |
//! | `BINARY`, `VARBINARY`, `BLOB`, `BIT` | `Bytes` (as pymysql) |
//! | `DATE` | `Text` `YYYY-MM-DD` |
//! | `DATETIME`, `TIMESTAMP` | `Text` `YYYY-MM-DD HH:MM:SS[.ffffff]` (the column's fractional digits) |
//! | `TIME` | `Text` `[-]HH:MM:SS[.ffffff]`, hours may exceed 24 |
//! | `NULL` | `Null` |
//!
//! Other column types (`GEOMETRY`, `VECTOR`, ...) are a `NotSupportedError`
//! naming the column. The same text comes back whether the statement ran
//! prepared (binary protocol, with parameters) or as plain text (without).
//!
//! Parameters: `Null` → `NULL`, `Bool` → 0/1, `Int`, `Float` (NaN and
//! infinities are a `ProgrammingError`, as pymysql's `escape_float`
//! raises), `Text` (UTF-8), `Bytes`.

use mysql::consts::ColumnType;
use mysql::{Column, Value as MyValue};

use crate::dbapi::{DbError, DbResult, ErrorKind, Value};

/// The `binary` character set number: such string columns hold bytes.
const BINARY_CHARSET: u16 = 63;

/// The column's type as `description` reports it (`LONG`, `VAR_STRING`...).
pub(crate) fn type_name(c: &Column) -> String {
    let t = format!("{:?}", c.column_type());
    t.strip_prefix("MYSQL_TYPE_")
        .map(str::to_owned)
        .unwrap_or(t)
}

/// A `NotSupportedError` if the driver does not map the column's type.
pub(crate) fn check_supported(c: &Column) -> DbResult<()> {
    use ColumnType::*;
    match c.column_type() {
        MYSQL_TYPE_GEOMETRY | MYSQL_TYPE_TYPED_ARRAY | MYSQL_TYPE_VECTOR | MYSQL_TYPE_UNKNOWN => {
            Err(DbError::new(
                ErrorKind::NotSupportedError,
                format!(
                "column {:?} has MySQL type {}, which the mysql driver does not map to a Value; \
                 cast it in the query (e.g. ST_AsText(col), CAST(col AS CHAR))",
                c.name_str(),
                type_name(c)
            ),
            ))
        }
        _ => Ok(()),
    }
}

fn data_error(c: &Column, why: impl std::fmt::Display) -> DbError {
    DbError::new(
        ErrorKind::DataError,
        format!("column {:?}: {why}", c.name_str()),
    )
}

fn fraction(us: u32, decimals: u8) -> String {
    let digits = match decimals {
        1..=6 => usize::from(decimals),
        // No fractional digits declared (or unknown, 31): show any there are.
        _ if us != 0 => 6,
        _ => 0,
    };
    if digits == 0 {
        String::new()
    } else {
        format!(".{}", &format!("{us:06}")[..digits])
    }
}

fn text_of(c: &Column, b: Vec<u8>) -> DbResult<String> {
    String::from_utf8(b).map_err(|e| data_error(c, format!("not valid UTF-8 ({e})")))
}

fn int_of(c: &Column, s: &str) -> DbResult<Value> {
    if let Ok(i) = s.parse::<i64>() {
        return Ok(Value::Int(i));
    }
    match s.parse::<u64>() {
        Ok(_) => Ok(Value::Text(s.to_owned())),
        Err(e) => Err(data_error(c, format!("integer {s:?} unreadable ({e})"))),
    }
}

/// A value the server sent, in column `c`, as a [`Value`].
pub(crate) fn decode(v: MyValue, c: &Column) -> DbResult<Value> {
    use ColumnType::*;
    Ok(match v {
        MyValue::NULL => Value::Null,
        MyValue::Int(i) => Value::Int(i),
        MyValue::UInt(u) => {
            i64::try_from(u).map_or_else(|_| Value::Text(u.to_string()), Value::Int)
        }
        // The f32's shortest decimal form read as f64: 0.1 stays 0.1.
        MyValue::Float(f) => Value::Float(f.to_string().parse::<f64>().unwrap_or(f64::from(f))),
        MyValue::Double(d) => Value::Float(d),
        MyValue::Date(y, mo, d, h, mi, s, us) => {
            if c.column_type() == MYSQL_TYPE_DATE || c.column_type() == MYSQL_TYPE_NEWDATE {
                Value::Text(format!("{y:04}-{mo:02}-{d:02}"))
            } else {
                Value::Text(format!(
                    "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}{}",
                    fraction(us, c.decimals())
                ))
            }
        }
        MyValue::Time(neg, days, h, mi, s, us) => {
            let hours = u64::from(days) * 24 + u64::from(h);
            let sign = if neg { "-" } else { "" };
            Value::Text(format!(
                "{sign}{hours:02}:{mi:02}:{s:02}{}",
                fraction(us, c.decimals())
            ))
        }
        MyValue::Bytes(b) => match c.column_type() {
            MYSQL_TYPE_TINY | MYSQL_TYPE_SHORT | MYSQL_TYPE_LONG | MYSQL_TYPE_INT24
            | MYSQL_TYPE_LONGLONG | MYSQL_TYPE_YEAR => int_of(c, &text_of(c, b)?)?,
            MYSQL_TYPE_FLOAT | MYSQL_TYPE_DOUBLE => {
                let s = text_of(c, b)?;
                Value::Float(
                    s.parse::<f64>()
                        .map_err(|e| data_error(c, format!("float {s:?} unreadable ({e})")))?,
                )
            }
            MYSQL_TYPE_BIT => Value::Bytes(b),
            MYSQL_TYPE_NULL => Value::Null,
            MYSQL_TYPE_DECIMAL
            | MYSQL_TYPE_NEWDECIMAL
            | MYSQL_TYPE_DATE
            | MYSQL_TYPE_NEWDATE
            | MYSQL_TYPE_TIME
            | MYSQL_TYPE_TIME2
            | MYSQL_TYPE_DATETIME
            | MYSQL_TYPE_DATETIME2
            | MYSQL_TYPE_TIMESTAMP
            | MYSQL_TYPE_TIMESTAMP2
            | MYSQL_TYPE_JSON
            | MYSQL_TYPE_ENUM
            | MYSQL_TYPE_SET => Value::Text(text_of(c, b)?),
            MYSQL_TYPE_VARCHAR
            | MYSQL_TYPE_VAR_STRING
            | MYSQL_TYPE_STRING
            | MYSQL_TYPE_TINY_BLOB
            | MYSQL_TYPE_MEDIUM_BLOB
            | MYSQL_TYPE_LONG_BLOB
            | MYSQL_TYPE_BLOB => {
                if c.character_set() == BINARY_CHARSET {
                    Value::Bytes(b)
                } else {
                    Value::Text(text_of(c, b)?)
                }
            }
            _ => {
                check_supported(c)?;
                Value::Bytes(b)
            }
        },
    })
}

/// A parameter as the `mysql` crate binds it.
pub(crate) fn encode(v: &Value) -> DbResult<MyValue> {
    Ok(match v {
        Value::Null => MyValue::NULL,
        Value::Bool(b) => MyValue::Int(i64::from(*b)),
        Value::Int(i) => MyValue::Int(*i),
        Value::Float(x) if x.is_finite() => MyValue::Double(*x),
        Value::Float(x) => {
            return Err(DbError::new(
                ErrorKind::ProgrammingError,
                format!("{x} can not be used with MySQL (no NaN or infinity in its FLOAT/DOUBLE)"),
            ))
        }
        Value::Text(s) => MyValue::Bytes(s.as_bytes().to_vec()),
        Value::Bytes(b) => MyValue::Bytes(b.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_follow_the_declared_digits() {
        assert_eq!(fraction(500_000, 3), ".500");
        assert_eq!(fraction(0, 0), "");
        assert_eq!(fraction(12, 0), ".000012");
        assert_eq!(fraction(123_456, 6), ".123456");
    }

    #[test]
    fn parameters_encode_or_say_why_not() {
        assert_eq!(encode(&Value::Bool(true)).unwrap(), MyValue::Int(1));
        assert_eq!(
            encode(&Value::Text("é".into())).unwrap(),
            MyValue::Bytes("é".as_bytes().to_vec())
        );
        let e = encode(&Value::Float(f64::NAN)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ProgrammingError);
    }
}
