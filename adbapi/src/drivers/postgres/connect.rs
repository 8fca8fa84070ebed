//! The arguments of `psycopg2.connect(...)`, checked and turned into a
//! `postgres::Config`.

use std::time::Duration;

use postgres::config::SslMode;
use postgres::Config;

use crate::dbapi::{ConnectArgs, DbError, DbResult, ErrorKind, Quoted, Value};

const KEYWORDS: [&str; 11] = [
    "dsn",
    "options",
    "host",
    "port",
    "user",
    "password",
    "dbname",
    "database",
    "connect_timeout",
    "sslmode",
    "application_name",
];

fn arg_error(msg: String) -> DbError {
    DbError::new(ErrorKind::ProgrammingError, msg)
}

fn text_arg<'a>(v: &'a Value, name: &str) -> DbResult<std::borrow::Cow<'a, str>> {
    match v {
        Value::Text(s) => Ok(std::borrow::Cow::Borrowed(s)),
        Value::Int(i) => Ok(std::borrow::Cow::Owned(i.to_string())),
        other => Err(arg_error(format!(
            "psycopg2.connect: argument '{name}' must be text, got {} {other}",
            other.type_name()
        ))),
    }
}

/// Builds a `postgres::Config` from psycopg2-style arguments.
pub(crate) fn config(args: &ConnectArgs) -> DbResult<Config> {
    if args.args.len() > 1 {
        return Err(arg_error(format!(
            "psycopg2.connect takes at most 1 positional argument (the dsn), {} given",
            args.args.len()
        )));
    }
    for k in args.kwargs.keys() {
        if !KEYWORDS.contains(&k.as_str()) {
            return Err(arg_error(format!(
                "invalid dsn: invalid connection option \"{k}\" (known: {})",
                KEYWORDS.join(", ")
            )));
        }
    }
    let mut cfg = match args.get(0, "dsn") {
        Some(Value::Null) | None => Config::new(),
        Some(v) => {
            let dsn = text_arg(v, "dsn")?;
            dsn.parse::<Config>()
                .map_err(|e| arg_error(format!("invalid dsn: {e}")).with_source(e))?
        }
    };
    let kw = |k: &str| args.kwargs.get(k).filter(|v| !v.is_null());
    if let Some(v) = kw("host") {
        cfg.host(&text_arg(v, "host")?);
    }
    if let Some(v) = kw("port") {
        let port = match v {
            Value::Int(p) => u16::try_from(*p).ok(),
            Value::Text(s) => s.parse().ok(),
            _ => None,
        }
        .ok_or_else(|| arg_error(format!("psycopg2.connect: invalid port {}", Quoted(v))))?;
        cfg.port(port);
    }
    if let Some(v) = kw("user") {
        cfg.user(&text_arg(v, "user")?);
    }
    if let Some(v) = kw("password") {
        cfg.password(text_arg(v, "password")?.as_bytes());
    }
    if let Some(v) = kw("dbname").or_else(|| kw("database")) {
        cfg.dbname(&text_arg(v, "dbname")?);
    }
    if let Some(v) = kw("connect_timeout") {
        let secs = match v {
            Value::Int(s) if *s >= 0 => u64::try_from(*s).unwrap_or(0),
            Value::Text(s) => s
                .parse()
                .map_err(|_| arg_error(format!("invalid connect_timeout {s:?}")))?,
            other => return Err(arg_error(format!("invalid connect_timeout {other}"))),
        };
        if secs > 0 {
            cfg.connect_timeout(Duration::from_secs(secs));
        }
    }
    if let Some(v) = kw("sslmode") {
        match text_arg(v, "sslmode")?.as_ref() {
            "disable" => cfg.ssl_mode(SslMode::Disable),
            "allow" | "prefer" => cfg.ssl_mode(SslMode::Prefer),
            other => {
                return Err(DbError::new(
                    ErrorKind::NotSupportedError,
                    format!("sslmode={other} needs TLS, which this build of the postgres driver does not include"),
                ))
            }
        };
    }
    if let Some(v) = kw("application_name") {
        cfg.application_name(&text_arg(v, "application_name")?);
    }
    if let Some(v) = kw("options") {
        cfg.options(&text_arg(v, "options")?);
    }
    if cfg.get_hosts().is_empty() {
        if std::path::Path::new("/var/run/postgresql").is_dir() {
            cfg.host_path("/var/run/postgresql");
        } else {
            cfg.host("localhost");
        }
    }
    if cfg.get_user().is_none() {
        cfg.user(&std::env::var("USER").unwrap_or_else(|_| "postgres".to_owned()));
    }
    Ok(cfg)
}
