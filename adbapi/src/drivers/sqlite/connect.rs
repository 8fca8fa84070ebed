//! The arguments of `sqlite3.connect(...)`, checked and typed, and the key
//! of the writer gate of the database they open.

use std::path::PathBuf;
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

/// The key of the database's writer gate: for a file, its canonical path;
/// for a shared-cache in-memory database (`file:NAME?mode=memory&cache=shared`
/// or `file::memory:?cache=shared` with `uri=True`), which every connection
/// of the process naming it opens, `file:NAME?mode=memory&cache=shared`
/// (no canonical path looks like that); `None` for a database no other
/// connection can open (`:memory:`, a private `mode=memory` URI, a
/// temporary one).
pub(super) fn gate_key(conn: &rusqlite::Connection, o: &Options) -> Option<PathBuf> {
    if o.uri {
        if let Some(name) = shared_memory_name(&o.database) {
            return Some(PathBuf::from(format!(
                "file:{name}?mode=memory&cache=shared"
            )));
        }
    }
    let path = conn.path().filter(|p| !p.is_empty())?;
    Some(std::fs::canonicalize(path).unwrap_or_else(|_| PathBuf::from(path)))
}

/// The name of the in-memory database a `file:` URI opens in shared-cache
/// mode, decoded as SQLite decodes it (`%HH` escapes; an authority, if
/// any, dropped), or `None` if the URI opens a file or a private in-memory
/// database. As SQLite (`sqlite3ParseUri`): `mode=memory` or the name
/// `:memory:` makes it in-memory, and `cache=shared` shares it among the
/// connections of the process that name it.
fn shared_memory_name(uri: &str) -> Option<String> {
    let rest = uri.strip_prefix("file:")?;
    let rest = rest.split('#').next().unwrap_or("");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let path = match path.strip_prefix("//") {
        Some(authority_and_path) => &authority_and_path[authority_and_path.find('/')?..],
        None => path,
    };
    let (mut memory, mut shared) = (false, false);
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("mode", v)) => memory = v == "memory",
            Some(("cache", v)) => shared = v == "shared",
            _ => {}
        }
    }
    let name = percent_decode(path);
    (shared && (memory || name == ":memory:")).then_some(name)
}

/// `%HH` escapes decoded; anything else (an invalid escape, bytes that are
/// not UTF-8 once decoded) kept as written.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| char::from(c).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'%'));
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_owned())
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

    /// Which URIs name a shared-cache in-memory database, and by what name.
    #[test]
    fn shared_memory_names() {
        let name = |u: &str| shared_memory_name(u);
        assert_eq!(
            name("file:db?mode=memory&cache=shared").as_deref(),
            Some("db")
        );
        assert_eq!(
            name("file:d%20b?cache=shared&mode=memory").as_deref(),
            Some("d b")
        );
        assert_eq!(
            name("file::memory:?cache=shared").as_deref(),
            Some(":memory:")
        );
        assert_eq!(
            name("file:///mem?mode=memory&cache=shared#x").as_deref(),
            Some("/mem")
        );
        assert_eq!(name("file:db?mode=memory"), None, "private");
        assert_eq!(name("file::memory:"), None, "private");
        assert_eq!(name("file:db?mode=memory&cache=private"), None);
        assert_eq!(name("file:db.sqlite?cache=shared"), None, "a file");
        assert_eq!(name("db?mode=memory&cache=shared"), None, "not a URI");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
