//! The arguments of `sqlite3.connect(...)`, checked and typed.

use std::time::Duration;

use crate::dbapi::{ConnectArgs, DbError, ErrorKind, Quoted, Value};

/// The argument names of CPython's `sqlite3.connect`, in positional order.
const KNOWN_ARGS: [&str; 8] = [
    "database",
    "timeout",
    "detect_types",
    "isolation_level",
    "check_same_thread",
    "factory",
    "cached_statements",
    "uri",
];

/// The longest busy timeout SQLite takes: `sqlite3_busy_timeout` counts
/// milliseconds in a C `int`.
const MAX_TIMEOUT_MS: u64 = i32::MAX as u64;

/// What `sqlite3.connect` was asked for.
#[derive(Debug)]
pub(super) struct Options {
    pub(super) database: String,
    pub(super) timeout: Duration,
    /// `None`: autocommit; otherwise the `BEGIN` flavour ("" = DEFERRED).
    pub(super) isolation: Option<String>,
    pub(super) cached_statements: usize,
    pub(super) uri: bool,
}

fn arg_error(message: String) -> DbError {
    DbError::new(ErrorKind::InterfaceError, message)
}

/// The busy timeout from a `timeout` argument in seconds. Anything SQLite
/// cannot represent (NaN, infinities, negatives, more than `i32::MAX`
/// milliseconds) is refused rather than clamped, so a typo such as `5e9`
/// does not silently mean "about 25 days".
fn timeout(v: &Value) -> Result<Duration, DbError> {
    let bad = |why: &str| {
        arg_error(format!(
            "sqlite3.connect: argument 'timeout' must be {why}, got {} {}",
            v.type_name(),
            Quoted(v)
        ))
    };
    let ms = match v {
        Value::Int(i) => u64::try_from(*i)
            .ok()
            .and_then(|s| s.checked_mul(1000))
            .ok_or_else(|| bad("a non-negative number of seconds"))?,
        Value::Float(x) if x.is_nan() || *x < 0.0 => {
            return Err(bad("a non-negative number of seconds"))
        }
        Value::Float(x) if *x * 1000.0 > MAX_TIMEOUT_MS as f64 => {
            // Also catches +inf.
            return Err(bad(&format!("at most {} seconds", MAX_TIMEOUT_MS / 1000)));
        }
        // In range and non-negative: the cast cannot truncate or wrap.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Value::Float(x) => (*x * 1000.0) as u64,
        _ => return Err(bad("a number of seconds")),
    };
    if ms > MAX_TIMEOUT_MS {
        return Err(bad(&format!("at most {} seconds", MAX_TIMEOUT_MS / 1000)));
    }
    Ok(Duration::from_millis(ms))
}

fn boolean(v: &Value, name: &str) -> Result<bool, DbError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Int(i) => Ok(*i != 0),
        other => Err(arg_error(format!(
            "sqlite3.connect: argument '{name}' must be a bool, got {} {other}",
            other.type_name()
        ))),
    }
}

/// Checks `args` as `sqlite3.connect(database, timeout=5.0, detect_types=0,
/// isolation_level="", check_same_thread=True, factory=None,
/// cached_statements=128, uri=False)` binds them.
pub(super) fn parse(args: &ConnectArgs) -> Result<Options, DbError> {
    if args.args.len() > KNOWN_ARGS.len() {
        return Err(arg_error(format!(
            "sqlite3.connect takes at most {} positional arguments ({} given)",
            KNOWN_ARGS.len(),
            args.args.len()
        )));
    }
    for name in args.kwargs.keys() {
        let Some(pos) = KNOWN_ARGS.iter().position(|k| k == name) else {
            return Err(arg_error(format!(
                "sqlite3.connect() got an unexpected keyword argument '{name}'"
            )));
        };
        if pos < args.args.len() {
            return Err(arg_error(format!(
                "sqlite3.connect() got multiple values for argument '{name}'"
            )));
        }
    }
    let get = |i: usize| args.get(i, KNOWN_ARGS[i]);
    let database = match get(0) {
        // CPython: "ValueError: embedded null character". SQLite would
        // read the name only up to the NUL and open another file.
        Some(Value::Text(s)) if s.contains('\0') => {
            return Err(arg_error(format!(
                "sqlite3.connect: argument 'database' contains a null character: {s:?}"
            )))
        }
        Some(Value::Text(s)) => s.clone(),
        Some(other) => {
            return Err(arg_error(format!(
                "sqlite3.connect: 'database' must be text, got {} {other}",
                other.type_name()
            )))
        }
        None => {
            return Err(arg_error(
                "sqlite3.connect() missing required argument 'database'".into(),
            ))
        }
    };
    let timeout = get(1)
        .map(timeout)
        .transpose()?
        .unwrap_or(Duration::from_secs(5));
    match get(2) {
        None | Some(Value::Int(0)) => {}
        Some(other) => {
            return Err(DbError::new(
                ErrorKind::NotSupportedError,
                format!("sqlite3.connect: detect_types={other} is not supported (only 0)"),
            ))
        }
    }
    let isolation = match get(3) {
        None => Some(String::new()),
        Some(Value::Null) => None,
        Some(Value::Text(s)) => {
            let upper = s.to_ascii_uppercase();
            if !["", "DEFERRED", "IMMEDIATE", "EXCLUSIVE"].contains(&upper.as_str()) {
                return Err(arg_error(format!(
                    "sqlite3.connect: isolation_level must be None, '', 'DEFERRED', 'IMMEDIATE' or 'EXCLUSIVE', got {s:?}"
                )));
            }
            Some(upper)
        }
        Some(other) => {
            return Err(arg_error(format!(
                "sqlite3.connect: isolation_level must be text or None, got {} {other}",
                other.type_name()
            )))
        }
    };
    if let Some(v) = get(4) {
        boolean(v, "check_same_thread")?;
    }
    match get(5) {
        None | Some(Value::Null) => {}
        Some(_) => {
            return Err(DbError::new(
                ErrorKind::NotSupportedError,
                "sqlite3.connect: 'factory' is not supported",
            ))
        }
    }
    let cached_statements = match get(6) {
        None => 128,
        Some(Value::Int(n)) if *n >= 0 => usize::try_from(*n).unwrap_or(usize::MAX),
        Some(other) => {
            return Err(arg_error(format!(
                "sqlite3.connect: cached_statements must be a non-negative int, got {} {other}",
                other.type_name()
            )))
        }
    };
    let uri = get(7)
        .map(|v| boolean(v, "uri"))
        .transpose()?
        .unwrap_or(false);
    Ok(Options {
        database,
        timeout,
        isolation,
        cached_statements,
        uri,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_sqlite_cannot_take_are_refused() {
        assert_eq!(
            timeout(&Value::Float(0.05)).unwrap(),
            Duration::from_millis(50)
        );
        assert_eq!(timeout(&Value::Int(7)).unwrap(), Duration::from_secs(7));
        assert_eq!(
            timeout(&Value::Float(2_147_483.0)).unwrap(),
            Duration::from_secs(2_147_483)
        );
        for bad in [
            Value::Float(1e20),
            Value::Float(f64::NAN),
            Value::Float(f64::INFINITY),
            Value::Float(f64::NEG_INFINITY),
            Value::Float(-0.5),
            Value::Int(-1),
            Value::Int(i64::MAX),
            Value::Int(2_147_484),
            Value::Null,
        ] {
            let e = timeout(&bad).expect_err("refused");
            assert_eq!(e.kind(), ErrorKind::InterfaceError);
            assert!(e.message().contains("'timeout'"), "{e}");
        }
    }
}
