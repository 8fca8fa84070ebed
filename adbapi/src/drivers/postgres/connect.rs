//! The arguments of `psycopg2.connect(...)`, checked and turned into a
//! `postgres::Config`.

use std::time::Duration;

use postgres::config::{Host, SslMode};
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
    // psycopg2 (libpq): a `host` or `port` keyword replaces the DSN's;
    // `Config::host`/`port` append to its lists, so drop those first.
    if kw("host").is_some() || kw("port").is_some() {
        cfg = without_hosts_or_ports(&cfg, kw("host").is_some(), kw("port").is_some());
    }
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

/// `cfg` without its hosts (and host addresses) if `hosts`, without its
/// ports if `ports`; every other setting kept.
fn without_hosts_or_ports(cfg: &Config, hosts: bool, ports: bool) -> Config {
    let mut out = Config::new();
    if let Some(u) = cfg.get_user() {
        out.user(u);
    }
    if let Some(p) = cfg.get_password() {
        out.password(p);
    }
    if let Some(d) = cfg.get_dbname() {
        out.dbname(d);
    }
    if let Some(o) = cfg.get_options() {
        out.options(o);
    }
    if let Some(a) = cfg.get_application_name() {
        out.application_name(a);
    }
    out.ssl_mode(cfg.get_ssl_mode());
    out.ssl_negotiation(cfg.get_ssl_negotiation());
    if !hosts {
        for h in cfg.get_hosts() {
            match h {
                Host::Tcp(name) => out.host(name),
                Host::Unix(path) => out.host_path(path),
            };
        }
        for a in cfg.get_hostaddrs() {
            out.hostaddr(*a);
        }
    }
    if !ports {
        for p in cfg.get_ports() {
            out.port(*p);
        }
    }
    if let Some(t) = cfg.get_connect_timeout() {
        out.connect_timeout(*t);
    }
    if let Some(t) = cfg.get_tcp_user_timeout() {
        out.tcp_user_timeout(*t);
    }
    out.keepalives(cfg.get_keepalives());
    out.keepalives_idle(cfg.get_keepalives_idle());
    if let Some(i) = cfg.get_keepalives_interval() {
        out.keepalives_interval(i);
    }
    if let Some(r) = cfg.get_keepalives_retries() {
        out.keepalives_retries(r);
    }
    out.target_session_attrs(cfg.get_target_session_attrs());
    out.channel_binding(cfg.get_channel_binding());
    out.load_balance_hosts(cfg.get_load_balance_hosts());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn connect_args(dsn: &str, kwargs: &[(&str, Value)]) -> ConnectArgs {
        let kwargs: BTreeMap<String, Value> = kwargs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        ConnectArgs {
            args: vec![Value::Text(dsn.to_owned())],
            kwargs,
        }
    }

    fn tcp_hosts(cfg: &Config) -> Vec<String> {
        cfg.get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(s) => s.clone(),
                Host::Unix(p) => p.display().to_string(),
            })
            .collect()
    }

    #[test]
    fn host_and_port_keywords_replace_the_dsns() {
        let dsn =
            "postgresql://app:secret@db.example:6543/appdb?application_name=x&connect_timeout=7";
        let cfg = config(&connect_args(
            dsn,
            &[
                ("host", Value::Text("127.0.0.1".into())),
                ("port", Value::Int(5432)),
            ],
        ))
        .unwrap();
        assert_eq!(tcp_hosts(&cfg), ["127.0.0.1"]);
        assert_eq!(cfg.get_ports(), [5432]);
        // Everything else the DSN said is kept.
        assert_eq!(cfg.get_user(), Some("app"));
        assert_eq!(cfg.get_password(), Some(&b"secret"[..]));
        assert_eq!(cfg.get_dbname(), Some("appdb"));
        assert_eq!(cfg.get_application_name(), Some("x"));
        assert_eq!(cfg.get_connect_timeout(), Some(&Duration::from_secs(7)));
    }

    #[test]
    fn a_port_keyword_alone_keeps_the_dsns_host_and_a_host_keyword_alone_its_port() {
        let dsn = "postgresql://app@db.example:6543/appdb";
        let cfg = config(&connect_args(dsn, &[("port", Value::Int(5433))])).unwrap();
        assert_eq!(
            (tcp_hosts(&cfg), cfg.get_ports().to_vec()),
            (vec!["db.example".to_owned()], vec![5433])
        );
        let cfg = config(&connect_args(dsn, &[("host", Value::Text("other".into()))])).unwrap();
        assert_eq!(
            (tcp_hosts(&cfg), cfg.get_ports().to_vec()),
            (vec!["other".to_owned()], vec![6543])
        );
        // Without keywords the DSN is taken as it is.
        let cfg = config(&connect_args(dsn, &[])).unwrap();
        assert_eq!(
            (tcp_hosts(&cfg), cfg.get_ports().to_vec()),
            (vec!["db.example".to_owned()], vec![6543])
        );
    }
}
