//! Values to and from PostgreSQL.
//!
//! # Parameters
//! Each [`Value`] is bound to the type the server inferred for its
//! placeholder: booleans, integers, floats, text and bytea go in binary;
//! every other type (numeric, date, time, timestamp, timestamptz, json,
//! jsonb, uuid, ...) goes as text in the text format, which the server parses
//! with the type's own input function, as it parses psycopg2's literals. So
//! `Value::Text("2024-05-01")` binds to a `date` column and
//! `Value::Text("12.50")` to a `numeric` one. `NULL` binds to anything.
//! `Bytes` binds only to `bytea` (anything else is a `DataError`, never
//! the bytes' hex text stored as a value).
//!
//! # Results
//!
//! | PostgreSQL | [`Value`] |
//! |---|---|
//! | `bool` | `Bool` |
//! | `int2`, `int4`, `int8`, `oid` | `Int` |
//! | `float4`, `float8` | `Float` |
//! | `numeric` | `Text`, the exact decimal (`"12.50"`, `"NaN"`, `"Infinity"`), no precision lost |
//! | `text`, `varchar`, `char(n)`, `name`, `"char"` | `Text` |
//! | `bytea` | `Bytes` |
//! | `json`, `jsonb` | `Text` (the JSON document) |
//! | `uuid` | `Text` (`8-4-4-4-12` hex) |
//! | `date` | `Text`, ISO `YYYY-MM-DD` (`"infinity"`, `... BC` as PostgreSQL prints them) |
//! | `time` | `Text`, `HH:MM:SS[.ffffff]` |
//! | `timestamp` | `Text`, `YYYY-MM-DD HH:MM:SS[.ffffff]` |
//! | `timestamptz` | `Text`, the same in UTC with `+00` appended |
//! | `void` (e.g. `pg_sleep`) | `Null` |
//! | `NULL` | `Null` |
//!
//! Any other column type is a `NotSupportedError` naming the column and its
//! type (cast it in the query, e.g. `col::text`).

use std::error::Error as StdError;
use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};
use postgres::types::{to_sql_checked, Format, IsNull, ToSql, Type};

use crate::dbapi::{DbError, DbResult, ErrorKind, Value};

type BoxError = Box<dyn StdError + Sync + Send>;

/// A parameter bound from a [`Value`].
#[derive(Debug)]
pub(crate) struct Param<'a>(pub(crate) &'a Value);

fn binary_kind(v: &Value, ty: &Type) -> bool {
    matches!(
        (v, ty),
        (Value::Bool(_), &Type::BOOL)
            | (
                Value::Int(_),
                &Type::INT2 | &Type::INT4 | &Type::INT8 | &Type::FLOAT4 | &Type::FLOAT8
            )
            | (Value::Float(_), &Type::FLOAT4 | &Type::FLOAT8)
            | (
                Value::Text(_),
                &Type::TEXT | &Type::VARCHAR | &Type::BPCHAR | &Type::NAME | &Type::UNKNOWN
            )
            | (Value::Bytes(_), &Type::BYTEA)
    )
}

fn out_of_range(v: i64, ty: &Type) -> BoxError {
    format!("integer {v} out of range for {ty}").into()
}

impl ToSql for Param<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        let v = self.0;
        if matches!(v, Value::Null) {
            return Ok(IsNull::Yes);
        }
        if binary_kind(v, ty) {
            match (v, ty) {
                (Value::Bool(b), _) => out.put_u8(u8::from(*b)),
                (Value::Int(i), &Type::INT2) => {
                    out.put_i16(i16::try_from(*i).map_err(|_| out_of_range(*i, ty))?)
                }
                (Value::Int(i), &Type::INT4) => {
                    out.put_i32(i32::try_from(*i).map_err(|_| out_of_range(*i, ty))?)
                }
                (Value::Int(i), &Type::INT8) => out.put_i64(*i),
                #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
                (Value::Int(i), &Type::FLOAT4) => out.put_f32(*i as f32),
                #[allow(clippy::cast_precision_loss)]
                (Value::Int(i), _) => out.put_f64(*i as f64),
                #[allow(clippy::cast_possible_truncation)]
                (Value::Float(x), &Type::FLOAT4) => out.put_f32(*x as f32),
                (Value::Float(x), _) => out.put_f64(*x),
                (Value::Text(s), _) => out.put_slice(s.as_bytes()),
                (Value::Bytes(b), _) => out.put_slice(b),
                (Value::Null, _) => unreachable!("handled above"),
            }
            return Ok(IsNull::No);
        }
        // Text format: the server's input function for `ty` parses it.
        match v {
            Value::Bool(b) => out.put_slice(if *b { b"true" } else { b"false" }),
            Value::Int(i) => out.put_slice(i.to_string().as_bytes()),
            Value::Float(x) => out.put_slice(float_text(*x).as_bytes()),
            Value::Text(s) => out.put_slice(s.as_bytes()),
            Value::Bytes(_) if *ty != Type::BYTEA => {
                // Sending the hex text would store "\\x..." as the value, and
                // bytes are not text: psycopg2 sends them as bytea.
                return Err(format!(
                    "a bytes value can only be bound to a bytea parameter, not {ty} \
                     (cast the placeholder if the server cannot infer it: %s::bytea)"
                )
                .into());
            }
            Value::Bytes(b) => {
                let mut s = String::with_capacity(2 + 2 * b.len());
                s.push_str("\\x");
                for byte in b {
                    let _ = write!(s, "{byte:02x}");
                }
                out.put_slice(s.as_bytes());
            }
            Value::Null => unreachable!("handled above"),
        }
        Ok(IsNull::No)
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, ty: &Type) -> Format {
        if matches!(self.0, Value::Null) || binary_kind(self.0, ty) {
            Format::Binary
        } else {
            Format::Text
        }
    }

    to_sql_checked!();
}

fn float_text(x: f64) -> String {
    if x.is_nan() {
        "NaN".to_owned()
    } else if x.is_infinite() {
        if x > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
    } else {
        format!("{x:?}")
    }
}

/// The raw binary bytes of a result column (or `None` for NULL).
pub(crate) struct Raw<'a>(pub(crate) Option<&'a [u8]>);

impl<'a> postgres::types::FromSql<'a> for Raw<'a> {
    fn from_sql(_ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(Raw(Some(raw)))
    }
    fn from_sql_null(_ty: &Type) -> Result<Self, BoxError> {
        Ok(Raw(None))
    }
    fn accepts(_ty: &Type) -> bool {
        true
    }
}

fn bad(column: &str, ty: &Type, why: &str) -> DbError {
    DbError::new(
        ErrorKind::DataError,
        format!("could not decode column {column:?} of type {ty}: {why}"),
    )
}

fn fixed<const N: usize>(raw: &[u8], column: &str, ty: &Type) -> DbResult<[u8; N]> {
    raw.try_into().map_err(|_| {
        bad(
            column,
            ty,
            &format!("expected {N} bytes, got {}", raw.len()),
        )
    })
}

fn utf8(raw: &[u8], column: &str, ty: &Type) -> DbResult<String> {
    String::from_utf8(raw.to_vec()).map_err(|_| bad(column, ty, "not UTF-8"))
}

/// True if [`decode`] handles columns of type `ty`.
pub(crate) fn supported(ty: &Type) -> bool {
    [
        Type::BOOL,
        Type::INT2,
        Type::INT4,
        Type::INT8,
        Type::OID,
        Type::FLOAT4,
        Type::FLOAT8,
        Type::NUMERIC,
        Type::TEXT,
        Type::VARCHAR,
        Type::BPCHAR,
        Type::NAME,
        Type::CHAR,
        Type::UNKNOWN,
        Type::BYTEA,
        Type::JSON,
        Type::JSONB,
        Type::UUID,
        Type::DATE,
        Type::TIME,
        Type::TIMESTAMP,
        Type::TIMESTAMPTZ,
        Type::VOID,
    ]
    .contains(ty)
}

/// The error for a result column of a type this driver does not map.
pub(crate) fn unsupported(column: &str, ty: &Type) -> DbError {
    DbError::new(
        ErrorKind::NotSupportedError,
        format!(
            "column {column:?} has PostgreSQL type {ty}, which the postgres driver does not map to a Value; \
             cast it in the query (for example {column}::text)"
        ),
    )
}

/// Decodes one binary result value.
pub(crate) fn decode(raw: Option<&[u8]>, ty: &Type, column: &str) -> DbResult<Value> {
    let Some(raw) = raw else {
        return Ok(Value::Null);
    };
    Ok(match *ty {
        // `void_send` writes nothing: there is no value, as psycopg2's None.
        Type::VOID => Value::Null,
        Type::BOOL => Value::Bool(fixed::<1>(raw, column, ty)?[0] != 0),
        Type::INT2 => Value::Int(i64::from(i16::from_be_bytes(fixed(raw, column, ty)?))),
        Type::INT4 => Value::Int(i64::from(i32::from_be_bytes(fixed(raw, column, ty)?))),
        Type::INT8 => Value::Int(i64::from_be_bytes(fixed(raw, column, ty)?)),
        Type::OID => Value::Int(i64::from(u32::from_be_bytes(fixed(raw, column, ty)?))),
        Type::FLOAT4 => Value::Float(f64::from(f32::from_be_bytes(fixed(raw, column, ty)?))),
        Type::FLOAT8 => Value::Float(f64::from_be_bytes(fixed(raw, column, ty)?)),
        Type::NUMERIC => {
            Value::Text(numeric(raw).ok_or_else(|| bad(column, ty, "malformed numeric"))?)
        }
        Type::TEXT
        | Type::VARCHAR
        | Type::BPCHAR
        | Type::NAME
        | Type::CHAR
        | Type::UNKNOWN
        | Type::JSON => Value::Text(utf8(raw, column, ty)?),
        Type::JSONB => match raw.split_first() {
            Some((1, doc)) => Value::Text(utf8(doc, column, ty)?),
            _ => return Err(bad(column, ty, "unknown jsonb version")),
        },
        Type::BYTEA => Value::Bytes(raw.to_vec()),
        Type::UUID => {
            let b: [u8; 16] = fixed(raw, column, ty)?;
            let mut s = String::with_capacity(36);
            for (i, byte) in b.iter().enumerate() {
                if matches!(i, 4 | 6 | 8 | 10) {
                    s.push('-');
                }
                let _ = write!(s, "{byte:02x}");
            }
            Value::Text(s)
        }
        Type::DATE => Value::Text(date(i32::from_be_bytes(fixed(raw, column, ty)?))),
        Type::TIME => Value::Text(time_of_day(i64::from_be_bytes(fixed(raw, column, ty)?))),
        Type::TIMESTAMP => Value::Text(timestamp(i64::from_be_bytes(fixed(raw, column, ty)?), "")),
        Type::TIMESTAMPTZ => Value::Text(timestamp(
            i64::from_be_bytes(fixed(raw, column, ty)?),
            "+00",
        )),
        _ => return Err(unsupported(column, ty)),
    })
}

/// PostgreSQL's binary `numeric`: ndigits, weight, sign, dscale, then
/// base-10000 digits.
fn numeric(raw: &[u8]) -> Option<String> {
    let word = |i: usize| {
        raw.get(2 * i..2 * i + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    let ndigits = usize::from(word(0)?);
    let weight = i32::from(word(1)? as i16);
    let sign = word(2)?;
    let dscale = usize::from(word(3)?);
    match sign {
        0xC000 => return Some("NaN".to_owned()),
        0xD000 => return Some("Infinity".to_owned()),
        0xF000 => return Some("-Infinity".to_owned()),
        0x0000 | 0x4000 => {}
        _ => return None,
    }
    let digits: Vec<u16> = (0..ndigits).map(|i| word(4 + i)).collect::<Option<_>>()?;
    let digit = |i: i32| -> u16 {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i))
            .copied()
            .unwrap_or(0)
    };
    let mut s = String::new();
    if sign == 0x4000 {
        s.push('-');
    }
    if weight < 0 {
        s.push('0');
    } else {
        for i in 0..=weight {
            if i == 0 {
                let _ = write!(s, "{}", digit(i));
            } else {
                let _ = write!(s, "{:04}", digit(i));
            }
        }
    }
    if dscale > 0 {
        let mut frac = String::new();
        let mut i = weight + 1;
        while frac.len() < dscale {
            let _ = write!(frac, "{:04}", digit(i));
            i += 1;
        }
        frac.truncate(dscale);
        s.push('.');
        s.push_str(&frac);
    }
    Some(s)
}

/// Days since 2000-01-01 to (year, month, day), proleptic Gregorian
/// (H. Hinnant's `civil_from_days`).
fn civil(days_since_2000: i64) -> (i64, u32, u32) {
    let z = days_since_2000 + 10_957 + 719_468; // to days since 0000-03-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn ymd(days: i64) -> String {
    let (y, m, d) = civil(days);
    if y <= 0 {
        format!("{:04}-{m:02}-{d:02} BC", 1 - y)
    } else {
        format!("{y:04}-{m:02}-{d:02}")
    }
}

fn date(days: i32) -> String {
    match days {
        i32::MAX => "infinity".to_owned(),
        i32::MIN => "-infinity".to_owned(),
        d => ymd(i64::from(d)),
    }
}

fn time_of_day(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let mut s = format!(
        "{:02}:{:02}:{:02}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    );
    if frac != 0 {
        let f = format!("{frac:06}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    s
}

fn timestamp(micros: i64, zone: &str) -> String {
    match micros {
        i64::MAX => return "infinity".to_owned(),
        i64::MIN => return "-infinity".to_owned(),
        _ => {}
    }
    let days = micros.div_euclid(86_400_000_000);
    let rest = micros.rem_euclid(86_400_000_000);
    let day = ymd(days);
    // "... BC" goes after the time, as PostgreSQL prints it.
    match day.strip_suffix(" BC") {
        Some(d) => format!("{d} {}{zone} BC", time_of_day(rest)),
        None => format!("{day} {}{zone}", time_of_day(rest)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(ndigits: u16, weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut v = Vec::new();
        for w in [ndigits, weight as u16, sign, dscale]
            .into_iter()
            .chain(digits.iter().copied())
        {
            v.extend_from_slice(&w.to_be_bytes());
        }
        v
    }

    #[test]
    fn numerics_decode_exactly() {
        assert_eq!(numeric(&num(2, 0, 0, 2, &[12, 5000])).unwrap(), "12.50");
        assert_eq!(numeric(&num(1, -1, 0x4000, 4, &[5])).unwrap(), "-0.0005");
        assert_eq!(numeric(&num(2, 1, 0, 0, &[1, 0])).unwrap(), "10000");
        assert_eq!(numeric(&num(0, 0, 0, 0, &[])).unwrap(), "0");
        assert_eq!(numeric(&num(1, -2, 0, 8, &[1234])).unwrap(), "0.00001234");
        assert_eq!(numeric(&num(0, 0, 0xC000, 0, &[])).unwrap(), "NaN");
    }

    #[test]
    fn dates_and_times_print_like_postgres() {
        assert_eq!(date(0), "2000-01-01");
        assert_eq!(date(-1), "1999-12-31");
        assert_eq!(date(8887), "2024-05-01");
        assert_eq!(date(i32::MAX), "infinity");
        assert_eq!(date(-730_120), "0001-12-31 BC");
        assert_eq!(date(-730_119), "0001-01-01");
        assert_eq!(time_of_day(3_723_000_000), "01:02:03");
        assert_eq!(time_of_day(3_723_500_000), "01:02:03.5");
        assert_eq!(timestamp(0, ""), "2000-01-01 00:00:00");
        assert_eq!(timestamp(-1, "+00"), "1999-12-31 23:59:59.999999+00");
    }

    #[test]
    fn floats_keep_round_trip_precision_as_text() {
        assert_eq!(float_text(0.1), "0.1");
        assert_eq!(float_text(f64::NAN), "NaN");
        assert_eq!(float_text(f64::NEG_INFINITY), "-Infinity");
    }
}
