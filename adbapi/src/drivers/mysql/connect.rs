//! pymysql/MySQLdb connect arguments turned into the `mysql` crate's options
//! and the statements that set the session up.

use std::time::Duration;

use mysql::{Opts, OptsBuilder};

use crate::dbapi::{ConnectArgs, DbError, DbResult, ErrorKind, Value};

/// The keyword arguments understood, as pymysql's `Connection` and
/// MySQLdb's `connect` take them (plus `url`, see the module docs).
pub(crate) const KEYWORDS: [&str; 18] = [
    "url",
    "host",
    "port",
    "user",
    "password",
    "passwd",
    "database",
    "db",
    "unix_socket",
    "charset",
    "connect_timeout",
    "read_timeout",
    "write_timeout",
    "autocommit",
    "init_command",
    "sql_mode",
    "cursorclass",
    "use_unicode",
];

/// MySQLdb's positional order: `connect(host, user, passwd, db, port)`.
const POSITIONAL: [&str; 5] = ["host", "user", "passwd", "db", "port"];

/// What [`settings`] decided.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Options for `mysql::Conn::new`, including the session set-up.
    pub(crate) opts: Opts,
    /// Whether the session runs with `autocommit=1` (pymysql's default is
    /// off).
    pub(crate) autocommit: bool,
}

fn arg_error(module: &str, msg: impl std::fmt::Display) -> DbError {
    DbError::new(
        ErrorKind::ProgrammingError,
        format!("{module}.connect: {msg}"),
    )
}

fn text(module: &str, name: &str, v: &Value) -> DbResult<String> {
    match v {
        Value::Text(s) => Ok(s.clone()),
        Value::Int(i) if name == "port" => Ok(i.to_string()),
        other => Err(arg_error(
            module,
            format!(
                "argument '{name}' must be text, got {} {other}",
                other.type_name()
            ),
        )),
    }
}

/// Seconds as pymysql validates them: `> 0` and at most a year.
fn seconds(module: &str, name: &str, v: &Value) -> DbResult<Duration> {
    let secs = match v {
        Value::Int(i) => *i as f64,
        Value::Float(x) => *x,
        Value::Text(s) => s.trim().parse::<f64>().map_err(|_| {
            arg_error(
                module,
                format!("{name} must be a number of seconds, got {s:?}"),
            )
        })?,
        other => {
            return Err(arg_error(
                module,
                format!("{name} must be a number of seconds, got {other}"),
            ))
        }
    };
    if !(secs > 0.0 && secs <= 31_536_000.0) {
        return Err(arg_error(
            module,
            format!("{name} should be >0 and <=31536000, got {secs}"),
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn flag(module: &str, name: &str, v: &Value) -> DbResult<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Int(0) => Ok(false),
        Value::Int(1) => Ok(true),
        Value::Text(s) if s.eq_ignore_ascii_case("true") || s == "1" => Ok(true),
        Value::Text(s) if s.eq_ignore_ascii_case("false") || s == "0" => Ok(false),
        other => Err(arg_error(
            module,
            format!("{name} must be a boolean, got {other}"),
        )),
    }
}

/// Builds the options from pymysql/MySQLdb-style arguments. Keywords
/// override a URL; unknown or ill-typed arguments are a `ProgrammingError`
/// naming the argument.
pub(crate) fn settings(module: &str, args: &ConnectArgs) -> DbResult<Settings> {
    for k in args.kwargs.keys() {
        if !KEYWORDS.contains(&k.as_str()) {
            return Err(arg_error(
                module,
                format!("unknown argument '{k}' (known: {})", KEYWORDS.join(", ")),
            ));
        }
    }
    let mut kw: std::collections::BTreeMap<&str, &Value> = std::collections::BTreeMap::new();
    let mut positional = args.args.iter();
    let mut builder = OptsBuilder::new();
    // A first positional argument that is a URL stands for all of them.
    if let Some(Value::Text(s)) = args.args.first() {
        if s.contains("://") {
            positional.next();
            let url = match s.strip_prefix("mariadb://") {
                Some(rest) => format!("mysql://{rest}"),
                None => s.clone(),
            };
            let opts =
                Opts::from_url(&url).map_err(|e| arg_error(module, format!("invalid URL: {e}")))?;
            builder = OptsBuilder::from_opts(opts);
        }
    }
    if let Some(v) = args.kwargs.get("url") {
        let s = text(module, "url", v)?;
        let url = s
            .strip_prefix("mariadb://")
            .map_or_else(|| s.clone(), |r| format!("mysql://{r}"));
        let opts =
            Opts::from_url(&url).map_err(|e| arg_error(module, format!("invalid URL: {e}")))?;
        builder = OptsBuilder::from_opts(opts);
    }
    let rest: Vec<&Value> = positional.collect();
    if rest.len() > POSITIONAL.len() {
        return Err(arg_error(
            module,
            format!(
                "takes at most {} positional arguments ({}), {} given",
                POSITIONAL.len(),
                POSITIONAL.join(", "),
                rest.len()
            ),
        ));
    }
    for (name, v) in POSITIONAL.iter().zip(rest) {
        kw.insert(name, v);
    }
    for (k, v) in &args.kwargs {
        if !v.is_null() {
            kw.insert(k.as_str(), v);
        }
    }
    let pick = |a: &str, b: &str| kw.get(a).or_else(|| kw.get(b)).copied();
    if let Some(v) = kw.get("host") {
        builder = builder.ip_or_hostname(Some(text(module, "host", v)?));
    }
    if let Some(v) = kw.get("port") {
        let s = text(module, "port", v)?;
        let port: u16 = s
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| arg_error(module, format!("invalid port {s:?} (1-65535)")))?;
        builder = builder.tcp_port(port);
    }
    if let Some(v) = kw.get("user") {
        builder = builder.user(Some(text(module, "user", v)?));
    }
    if let Some(v) = pick("password", "passwd") {
        builder = builder.pass(Some(text(module, "password", v)?));
    }
    if let Some(v) = pick("database", "db") {
        builder = builder.db_name(Some(text(module, "database", v)?));
    }
    // pymysql connects where it is told: no switch to a local socket.
    builder = builder.prefer_socket(false);
    if let Some(v) = kw.get("unix_socket") {
        builder = builder
            .socket(Some(text(module, "unix_socket", v)?))
            .prefer_socket(true);
    }
    let timeout = match kw.get("connect_timeout") {
        Some(v) => seconds(module, "connect_timeout", v)?,
        None => Duration::from_secs(10), // pymysql's default
    };
    builder = builder.tcp_connect_timeout(Some(timeout));
    if let Some(v) = kw.get("read_timeout") {
        builder = builder.read_timeout(Some(seconds(module, "read_timeout", v)?));
    }
    if let Some(v) = kw.get("write_timeout") {
        builder = builder.write_timeout(Some(seconds(module, "write_timeout", v)?));
    }
    if let Some(v) = kw.get("use_unicode") {
        if !flag(module, "use_unicode", v)? {
            return Err(DbError::new(
                ErrorKind::NotSupportedError,
                format!("{module}.connect: use_unicode=False is not supported: text columns always come back as text"),
            ));
        }
    }
    if let Some(v) = kw.get("cursorclass") {
        let c = text(module, "cursorclass", v)?;
        let short = c.rsplit('.').next().unwrap_or(&c);
        match short {
            // Every row is readable by position and by name, so both
            // classes give the same rows.
            "Cursor" | "DictCursor" => {}
            "SSCursor" | "SSDictCursor" => {
                return Err(DbError::new(
                    ErrorKind::NotSupportedError,
                    format!("{module}.connect: cursorclass={c} (unbuffered, server-side rows) is not supported: rows are fetched eagerly"),
                ))
            }
            _ => {
                return Err(arg_error(
                    module,
                    format!("unknown cursorclass {c:?} (Cursor or DictCursor)"),
                ))
            }
        }
    }
    // The session set-up, in pymysql's order: charset, sql_mode,
    // init_command, then autocommit.
    let mut init = Vec::new();
    let charset = match kw.get("charset") {
        Some(v) => text(module, "charset", v)?,
        None => "utf8mb4".to_owned(),
    };
    match charset.to_ascii_lowercase().as_str() {
        "utf8mb4" | "utf8" | "utf8mb3" => init.push(format!("SET NAMES {}", charset.to_ascii_lowercase())),
        _ => {
            return Err(DbError::new(
                ErrorKind::NotSupportedError,
                format!("{module}.connect: charset={charset:?} is not supported (utf8mb4, utf8 or utf8mb3): text is exchanged as UTF-8"),
            ))
        }
    }
    if let Some(v) = kw.get("sql_mode") {
        let mode = text(module, "sql_mode", v)?;
        if !mode
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b',' || c == b' ')
        {
            return Err(arg_error(
                module,
                format!("sql_mode {mode:?} may hold only mode names separated by commas"),
            ));
        }
        init.push(format!("SET sql_mode = '{mode}'"));
    }
    if let Some(v) = kw.get("init_command") {
        init.push(text(module, "init_command", v)?);
    }
    let autocommit = match kw.get("autocommit") {
        Some(v) => flag(module, "autocommit", v)?,
        None => false,
    };
    init.push(format!("SET autocommit = {}", u8::from(autocommit)));
    builder = builder.init(init);
    if !kw.contains_key("user") && builder_user_missing(&builder) {
        builder = builder.user(Some(
            std::env::var("USER").unwrap_or_else(|_| "root".to_owned()),
        ));
    }
    Ok(Settings {
        opts: Opts::from(builder),
        autocommit,
    })
}

fn builder_user_missing(b: &OptsBuilder) -> bool {
    Opts::from(b.clone()).get_user().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(kwargs: &[(&str, Value)]) -> ConnectArgs {
        ConnectArgs {
            args: Vec::new(),
            kwargs: kwargs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        }
    }

    #[test]
    fn unknown_arguments_are_named() {
        let e = settings("pymysql", &args(&[("hots", "x".into())])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ProgrammingError);
        assert!(e.message().contains("'hots'"), "{e}");
    }

    #[test]
    fn arguments_reach_the_options() {
        let s = settings(
            "pymysql",
            &args(&[
                ("host", "127.0.0.1".into()),
                ("port", 3307.into()),
                ("user", "u".into()),
                ("passwd", "p".into()),
                ("db", "d".into()),
                ("connect_timeout", 2.into()),
                ("sql_mode", "STRICT_ALL_TABLES".into()),
                ("init_command", "SET @x = 1".into()),
            ]),
        )
        .unwrap();
        assert_eq!(s.opts.get_ip_or_hostname(), "127.0.0.1");
        assert_eq!(s.opts.get_tcp_port(), 3307);
        assert_eq!(s.opts.get_user(), Some("u"));
        assert_eq!(s.opts.get_pass(), Some("p"));
        assert_eq!(s.opts.get_db_name(), Some("d"));
        assert_eq!(
            s.opts.get_init(),
            vec![
                "SET NAMES utf8mb4",
                "SET sql_mode = 'STRICT_ALL_TABLES'",
                "SET @x = 1",
                "SET autocommit = 0"
            ]
        );
        assert!(!s.autocommit);
    }

    #[test]
    fn bad_values_say_which_argument() {
        for (k, v, what) in [
            ("connect_timeout", Value::Int(0), "connect_timeout"),
            ("port", Value::Text("x".into()), "port"),
            ("sql_mode", Value::Text("'; DROP".into()), "sql_mode"),
            ("autocommit", Value::Text("maybe".into()), "autocommit"),
            ("cursorclass", Value::Text("Nope".into()), "cursorclass"),
        ] {
            let e = settings("pymysql", &args(&[(k, v)])).unwrap_err();
            assert!(e.message().contains(what), "{k}: {e}");
        }
        let e = settings("pymysql", &args(&[("charset", "latin1".into())])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotSupportedError);
    }
}
