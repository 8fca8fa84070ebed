//! How a pool is configured: the arguments of Twisted's
//! `ConnectionPool(dbapiName, *connargs, **connkw)` ([`Arg`], [`args!`],
//! [`kwargs!`], [`CP_ARGS`]), the parsing of the `cp_*` keywords, the typed
//! [`ConnectionPoolBuilder`], and why a pool could not be made
//! ([`PoolError`]) or no longer runs work ([`PoolClosed`]).

use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use deferred::Failure;
use reactor::AnyReactor;

use super::lifetime::{Clock, LifeConfig};
use super::shared::OpenFun;
use super::ConnectionPool;
use crate::dbapi::{DbConnection, Quoted, UnknownModule, Value};

/// A keyword argument of [`ConnectionPool::new`]: a plain value (for the
/// driver's `connect` or a `cp_*` option), Python's `None`, or one of the two
/// options whose value is not data: `cp_openfun` ([`Arg::openfun`]) and
/// `cp_reactor` ([`Arg::reactor`]). Plain values convert with `.into()`.
///
/// `Arg::None` is Python's `None` where a keyword takes it:
/// `kwargs! { "cp_good_sql" => Arg::None }` is `cp_good_sql=None` (no probe
/// query). It is the same as `Value::Null` (and as `None::<&str>`), without
/// having to import [`Value`] or name a type.
///
/// ```
/// use adbapi::{args, kwargs, Arg, ConnectionPool};
/// use reactor::testing::FakeReactor;
/// let pool = ConnectionPool::new(
///     "sqlite3",
///     args![":memory:"],
///     kwargs! { "cp_good_sql" => Arg::None, "cp_reactor" => Arg::reactor(FakeReactor::new(false)) },
/// )
/// .unwrap();
/// assert_eq!(pool.good_sql(), None);
/// // A reactor already shared (an `Rc<dyn AnyReactor>`) is passed the same way.
/// let again = ConnectionPool::builder("sqlite3")
///     .arg(":memory:")
///     .reactor(pool.reactor().clone())
///     .build()
///     .unwrap();
/// assert!(std::rc::Rc::ptr_eq(again.reactor(), pool.reactor()));
/// ```
pub enum Arg {
    /// A value.
    Value(Value),
    /// Python's `None`: the same as `Arg::Value(Value::Null)`.
    None,
    /// A `cp_openfun` callback.
    OpenFun(OpenFun),
    /// A `cp_reactor`.
    Reactor(Rc<dyn AnyReactor>),
}

/// Something that can be the reactor a pool runs on: [`Reactor`] or
/// [`FakeReactor`] by value, or any reactor already in an `Rc` (`Rc<R>`, or
/// `Rc<dyn AnyReactor>` as [`ConnectionPool::reactor`] returns it; a reactor
/// type of your own goes in as `Rc::new(mine)`). The one conversion behind
/// every way of passing a reactor: [`Arg::reactor`] (`cp_reactor`),
/// [`ConnectionPoolBuilder::reactor`] and
/// [`ConnectionPool::from_state_with_reactor`]. Mirrors passing Twisted's
/// `cp_reactor=reactor`.
///
/// (There is no blanket impl over every `R: AnyReactor`: it would overlap the
/// `Rc<dyn AnyReactor>` one, which the coherence rules forbid.)
///
/// [`Reactor`]: reactor::Reactor
/// [`FakeReactor`]: reactor::testing::FakeReactor
pub trait IntoReactor {
    /// The reactor, shared.
    fn into_reactor(self) -> Rc<dyn AnyReactor>;
}

impl IntoReactor for reactor::Reactor {
    fn into_reactor(self) -> Rc<dyn AnyReactor> {
        Rc::new(self)
    }
}

impl IntoReactor for reactor::testing::FakeReactor {
    fn into_reactor(self) -> Rc<dyn AnyReactor> {
        Rc::new(self)
    }
}

impl<R: AnyReactor + 'static> IntoReactor for Rc<R> {
    fn into_reactor(self) -> Rc<dyn AnyReactor> {
        self
    }
}

impl IntoReactor for Rc<dyn AnyReactor> {
    fn into_reactor(self) -> Rc<dyn AnyReactor> {
        self
    }
}

impl Arg {
    /// A `cp_openfun` value: called with every new raw connection.
    pub fn openfun<F>(f: F) -> Arg
    where
        F: Fn(&DbConnection) -> Result<(), Failure> + Send + Sync + 'static,
    {
        Arg::OpenFun(Arc::new(f))
    }

    /// A `cp_reactor` value: the reactor (real or fake, by value or as an
    /// `Rc<dyn AnyReactor>`) the pool runs on.
    pub fn reactor(reactor: impl IntoReactor) -> Arg {
        Arg::Reactor(reactor.into_reactor())
    }

    fn describe(&self) -> String {
        match self {
            Arg::Value(v) => format!("{} {}", v.type_name(), Quoted(v)),
            Arg::None => "None".to_owned(),
            Arg::OpenFun(_) => "a function".to_owned(),
            Arg::Reactor(_) => "a reactor".to_owned(),
        }
    }
}

impl<T: Into<Value>> From<T> for Arg {
    fn from(v: T) -> Self {
        Arg::Value(v.into())
    }
}

impl fmt::Debug for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Keyword arguments for [`ConnectionPool::new`], Python style.
///
/// ```
/// use adbapi::{kwargs, Arg};
/// let kw = kwargs! { "database" => "app.db", "cp_max" => 1, "cp_noisy" => true,
///                    "cp_openfun" => Arg::openfun(|_conn| Ok(())) };
/// assert_eq!(kw.len(), 4);
/// ```
#[macro_export]
macro_rules! kwargs {
    ($($key:expr => $value:expr),* $(,)?) => {
        vec![$((::std::string::String::from($key), $crate::Arg::from($value))),*]
    };
}

/// Positional arguments for [`ConnectionPool::new`]: `args![":memory:"]`.
#[macro_export]
macro_rules! args {
    ($($value:expr),* $(,)?) => {
        vec![$($crate::dbapi::Value::from($value)),*]
    };
}

/// The `cp_*` keyword names. Mirrors `ConnectionPool.CP_ARGS`, plus
/// `cp_reactor` and the production extensions (not in Twisted; see the
/// README's "Running in production"): `cp_stats`, `cp_slow_job_threshold`,
/// `cp_queue_timeout`, `cp_statement_timeout`, `cp_max_lifetime`,
/// `cp_idle_timeout`, `cp_check_idle`.
pub const CP_ARGS: [&str; 15] = [
    "cp_min",
    "cp_max",
    "cp_name",
    "cp_noisy",
    "cp_openfun",
    "cp_reconnect",
    "cp_good_sql",
    "cp_reactor",
    // Production extensions: observability and queue timeout.
    "cp_stats",
    "cp_slow_job_threshold",
    "cp_queue_timeout",
    // Timeouts, lifetime and health (extensions, off by default).
    "cp_statement_timeout",
    "cp_max_lifetime",
    "cp_idle_timeout",
    "cp_check_idle",
];

/// Why a pool could not be made.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PoolError {
    /// No DB-API module of that name is registered (Twisted: `ImportError`).
    #[error(transparent)]
    UnknownModule(#[from] UnknownModule),
    /// A `cp_*` keyword that is not a pool option. Twisted would pass it to the
    /// driver's `connect`, where it fails at first use.
    #[error("unknown pool option {option:?}: the cp_* options are cp_min, cp_max, cp_name, cp_noisy, cp_openfun, cp_reconnect, cp_good_sql, cp_reactor, cp_stats, cp_slow_job_threshold, cp_queue_timeout, cp_statement_timeout, cp_max_lifetime, cp_idle_timeout and cp_check_idle")]
    UnknownOption {
        /// The keyword.
        option: String,
    },
    /// An option with a value of the wrong type or range. Twisted does not
    /// check them.
    #[error("invalid value for {option}: expected {expected}, got {got}")]
    InvalidOption {
        /// The keyword.
        option: String,
        /// What it takes.
        expected: &'static str,
        /// What it was given.
        got: String,
    },
}

/// A `run_*` call on a closed pool. Twisted's Deferred never fires here
/// (twisted/twisted#2680); this one fails with `PoolClosed`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("connection pool for {dbapi_name:?} is closed; it runs no more work")]
pub struct PoolClosed {
    /// The pool's module name.
    pub dbapi_name: String,
}

/// Everything a pool is made from.
pub(super) struct PoolConfig {
    pub(super) dbapi_name: String,
    pub(super) args: Vec<Value>,
    pub(super) kwargs: BTreeMap<String, Value>,
    pub(super) min: usize,
    pub(super) max: usize,
    pub(super) name: Option<String>,
    pub(super) noisy: bool,
    pub(super) openfun: Option<OpenFun>,
    pub(super) reconnect: bool,
    pub(super) good_sql: Option<String>,
    pub(super) reactor: Option<Rc<dyn AnyReactor>>,
    // Production extensions: observability and queue timeout.
    pub(super) stats: bool,
    pub(super) slow_job_threshold: Option<Duration>,
    pub(super) queue_timeout: Option<Duration>,
    /// Timeouts, lifetime and health (`cp_statement_timeout` ...).
    pub(super) life: LifeConfig,
}

impl PoolConfig {
    /// Twisted's class-level defaults.
    pub(super) fn new(dbapi_name: &str) -> Self {
        PoolConfig {
            dbapi_name: dbapi_name.to_owned(),
            args: Vec::new(),
            kwargs: BTreeMap::new(),
            min: 3,
            max: 5,
            name: None,
            noisy: false,
            openfun: None,
            reconnect: false,
            good_sql: Some("select 1".to_owned()),
            reactor: None,
            stats: true,
            slow_job_threshold: None,
            queue_timeout: None,
            life: LifeConfig::default(),
        }
    }

    /// Takes one keyword: a `cp_*` option, or a driver argument.
    pub(super) fn keyword(&mut self, key: String, value: Arg) -> Result<(), PoolError> {
        let value = match value {
            Arg::None => Arg::Value(Value::Null),
            other => other,
        };
        let invalid = |expected: &'static str, got: &Arg| PoolError::InvalidOption {
            option: key.clone(),
            expected,
            got: got.describe(),
        };
        let count = |v: &Arg, expected| match v {
            Arg::Value(Value::Int(n)) if *n >= 0 => {
                usize::try_from(*n).map_err(|_| invalid(expected, v))
            }
            other => Err(invalid(expected, other)),
        };
        let flag = |v: &Arg| match v {
            Arg::Value(Value::Bool(b)) => Ok(*b),
            Arg::Value(Value::Int(i @ (0 | 1))) => Ok(*i == 1),
            other => Err(invalid("a bool", other)),
        };
        match key.as_str() {
            "cp_min" => self.min = count(&value, "a non-negative integer")?,
            "cp_max" => {
                let max = count(&value, "a positive integer")?;
                if max == 0 {
                    // Twisted accepts 0 and then never runs anything.
                    return Err(invalid(
                        "a positive integer (a pool of 0 threads never runs anything)",
                        &value,
                    ));
                }
                self.max = max;
            }
            "cp_name" => match &value {
                Arg::Value(Value::Text(s)) => self.name = Some(s.clone()),
                Arg::Value(Value::Null) => self.name = None,
                other => return Err(invalid("text or None", other)),
            },
            "cp_noisy" => self.noisy = flag(&value)?,
            "cp_reconnect" => self.reconnect = flag(&value)?,
            "cp_good_sql" => match &value {
                Arg::Value(Value::Text(s)) => self.good_sql = Some(s.clone()),
                Arg::Value(Value::Null) => self.good_sql = None,
                other => return Err(invalid("SQL text or None", other)),
            },
            "cp_openfun" => match value {
                Arg::OpenFun(f) => self.openfun = Some(f),
                Arg::Value(Value::Null) => self.openfun = None,
                other => return Err(invalid("Arg::openfun(..) or None", &other)),
            },
            "cp_reactor" => match value {
                Arg::Reactor(r) => self.reactor = Some(r),
                Arg::Value(Value::Null) => self.reactor = None,
                other => return Err(invalid("Arg::reactor(..) or None", &other)),
            },
            // Production extensions: observability and queue timeout.
            "cp_stats" => self.stats = flag(&value)?,
            "cp_slow_job_threshold" => {
                self.slow_job_threshold = seconds(&key, &value, SecondsRule::ZeroAllowed)?;
            }
            "cp_queue_timeout" => {
                self.queue_timeout = seconds(&key, &value, SecondsRule::Positive)?;
            }
            // Timeouts, lifetime and health: seconds, `None` (or 0) for off.
            "cp_statement_timeout" | "cp_max_lifetime" | "cp_idle_timeout" | "cp_check_idle" => {
                let secs = match &value {
                    Arg::Value(Value::Null) => None,
                    Arg::Value(Value::Int(n)) => Some(*n as f64),
                    Arg::Value(Value::Float(x)) => Some(*x),
                    other => return Err(invalid("a number of seconds or None", other)),
                };
                self.life
                    .set(&key, secs)
                    .map_err(|expected| invalid(expected, &value))?;
            }
            k if k.starts_with("cp_") => return Err(PoolError::UnknownOption { option: key }),
            _ => match value {
                Arg::Value(v) => {
                    self.kwargs.insert(key, v);
                }
                other => return Err(invalid("a plain value for the driver's connect()", &other)),
            },
        }
        Ok(())
    }
}

/// Whether a duration option may be zero.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum SecondsRule {
    /// Zero means "every job" (a slow-job threshold of 0 logs them all).
    ZeroAllowed,
    /// A zero timeout would race the workers for every job; rejected.
    Positive,
}

impl SecondsRule {
    fn expected(self) -> &'static str {
        match self {
            SecondsRule::ZeroAllowed => "a finite number of seconds >= 0, or None",
            SecondsRule::Positive => "a finite number of seconds > 0, or None",
        }
    }
}

/// A duration option in seconds (an int or a float, as in Twisted's
/// timeouts), or `None` for off.
fn seconds(key: &str, value: &Arg, rule: SecondsRule) -> Result<Option<Duration>, PoolError> {
    let secs = match value {
        Arg::Value(Value::Null) => return Ok(None),
        Arg::Value(Value::Int(n)) => *n as f64,
        Arg::Value(Value::Float(x)) => *x,
        other => {
            return Err(PoolError::InvalidOption {
                option: key.to_owned(),
                expected: rule.expected(),
                got: other.describe(),
            })
        }
    };
    check_duration(key, Duration::try_from_secs_f64(secs).ok(), secs, rule).map(Some)
}

/// Checks a duration option: it must exist (finite, not negative, not too
/// large for a `Duration`) and, for [`SecondsRule::Positive`], be above zero.
pub(super) fn check_duration(
    key: &str,
    d: Option<Duration>,
    shown: impl fmt::Display,
    rule: SecondsRule,
) -> Result<Duration, PoolError> {
    match d {
        Some(d) if !(rule == SecondsRule::Positive && d.is_zero()) => Ok(d),
        _ => Err(PoolError::InvalidOption {
            option: key.to_owned(),
            expected: rule.expected(),
            got: shown.to_string(),
        }),
    }
}

/// True if `sql` holds no statement: only white space, `;` and comments.
pub(super) fn sql_is_blank(sql: &str) -> bool {
    let skip = |s: &str| {
        s.trim_start_matches(|c: char| c.is_whitespace() || c == ';')
            .to_owned()
    };
    let mut rest = skip(sql);
    loop {
        if rest.is_empty() {
            return true;
        }
        let after = if let Some(r) = rest.strip_prefix("--") {
            r.split_once('\n').map_or("", |(_, after)| after)
        } else if let Some(r) = rest.strip_prefix("/*") {
            r.split_once("*/").map_or("", |(_, after)| after)
        } else {
            return false;
        };
        rest = skip(after);
    }
}

/// Builds a [`ConnectionPool`] with typed setters; each documents its default.
///
/// ```
/// use adbapi::ConnectionPool;
/// use reactor::testing::FakeReactor;
/// let pool = ConnectionPool::builder("sqlite3")
///     .arg(":memory:")
///     .kwarg("timeout", 2.5)
///     .min(1)
///     .max(1)
///     .reconnect(true)
///     .reactor(FakeReactor::new(false))
///     .build()
///     .unwrap();
/// assert_eq!((pool.min(), pool.max(), pool.reconnect()), (1, 1, true));
/// ```
pub struct ConnectionPoolBuilder {
    cfg: PoolConfig,
    error: Option<PoolError>,
}

impl ConnectionPoolBuilder {
    pub(super) fn new(dbapi_name: &str) -> Self {
        ConnectionPoolBuilder {
            cfg: PoolConfig::new(dbapi_name),
            error: None,
        }
    }

    /// Adds a positional argument for the driver's `connect`.
    pub fn arg(mut self, v: impl Into<Value>) -> Self {
        self.cfg.args.push(v.into());
        self
    }

    /// Adds a keyword argument (a driver argument, or a `cp_*` option).
    pub fn kwarg(mut self, key: &str, v: impl Into<Arg>) -> Self {
        if self.error.is_none() {
            if let Err(e) = self.cfg.keyword(key.to_owned(), v.into()) {
                self.error = Some(e);
            }
        }
        self
    }

    /// Minimum worker threads (default 3; lowered to `max` if larger).
    pub fn min(mut self, n: usize) -> Self {
        self.cfg.min = n;
        self
    }

    /// Maximum worker threads and connections (default 5; at least 1).
    pub fn max(mut self, n: usize) -> Self {
        self.cfg.max = n;
        self
    }

    /// A name for the worker threads (default `adbapi-<module>`).
    pub fn name(mut self, name: &str) -> Self {
        self.cfg.name = Some(name.to_owned());
        self
    }

    /// Log connects, closes and reconnects at info level (default false).
    pub fn noisy(mut self, yes: bool) -> Self {
        self.cfg.noisy = yes;
        self
    }

    /// Called on every new raw connection (default none).
    pub fn openfun<F>(mut self, f: F) -> Self
    where
        F: Fn(&DbConnection) -> Result<(), Failure> + Send + Sync + 'static,
    {
        self.cfg.openfun = Some(Arc::new(f));
        self
    }

    /// Detect and replace lost connections (default false).
    pub fn reconnect(mut self, yes: bool) -> Self {
        self.cfg.reconnect = yes;
        self
    }

    /// The probe query after a rollback when reconnecting (default
    /// `Some("select 1")`; `None` skips the probe).
    pub fn good_sql(mut self, sql: Option<&str>) -> Self {
        self.cfg.good_sql = sql.map(str::to_owned);
        self
    }

    /// `cp_statement_timeout`: how long one statement may run, in seconds
    /// (default `None`, no limit; an extension). Mapped by each driver:
    /// PostgreSQL `statement_timeout`, MariaDB `max_statement_time`, MySQL
    /// `max_execution_time`, SQLite a progress handler. See
    /// [`DbError::is_statement_timeout`](crate::dbapi::DbError::is_statement_timeout).
    pub fn statement_timeout(self, secs: Option<f64>) -> Self {
        self.life_option("cp_statement_timeout", secs)
    }

    /// `cp_max_lifetime`: a connection older than this many seconds (less
    /// up to 2.5 % jitter, as HikariCP's `maxLifetime`) is closed and
    /// reopened when its worker takes its next job (default `None`, never;
    /// an extension).
    pub fn max_lifetime(self, secs: Option<f64>) -> Self {
        self.life_option("cp_max_lifetime", secs)
    }

    /// `cp_idle_timeout`: a connection unused for this many seconds is
    /// closed and reopened when its worker takes its next job, and a worker
    /// above `cp_min` idle that long retires, closing its connection
    /// (default `None`, never; an extension, HikariCP's `idleTimeout`).
    pub fn idle_timeout(self, secs: Option<f64>) -> Self {
        self.life_option("cp_idle_timeout", secs)
    }

    /// `cp_check_idle`: a connection idle longer than this many seconds is
    /// probed with `cp_good_sql` (or `select 1`) before its next job, and
    /// replaced if the probe fails; after a lost connection is detected,
    /// every connection opened before it is probed before its next job too
    /// (default `None`, no probe; `0`: before every job; an extension,
    /// HikariCP's `aliveBypassWindow` is 0.5 s).
    pub fn check_idle(self, secs: Option<f64>) -> Self {
        self.life_option("cp_check_idle", secs)
    }

    /// The clock lifetimes and idle times are measured with (default
    /// `Instant::now`): for tests that move time by hand. An extension.
    pub fn life_clock(mut self, clock: Clock) -> Self {
        self.cfg.life.clock = Some(clock);
        self
    }

    fn life_option(mut self, key: &str, secs: Option<f64>) -> Self {
        if self.error.is_none() {
            if let Err(expected) = self.cfg.life.set(key, secs) {
                self.error = Some(PoolError::InvalidOption {
                    option: key.to_owned(),
                    expected,
                    got: secs.map_or("None".to_owned(), |s| format!("float {s}")),
                });
            }
        }
        self
    }

    /// The reactor to run on (default: this thread's default reactor): a
    /// reactor by value or an `Rc<dyn AnyReactor>` (see [`IntoReactor`]).
    pub fn reactor(mut self, reactor: impl IntoReactor) -> Self {
        self.cfg.reactor = Some(reactor.into_reactor());
        self
    }

    // Production extensions: observability and queue timeout.

    /// Time jobs and count their outcomes for
    /// [`ConnectionPool::status`] and the `metrics` feature (default true;
    /// `cp_stats`). Off, `run_*` takes Twisted's plain path unless another
    /// extension needs the observed one. Not in Twisted.
    pub fn stats(mut self, yes: bool) -> Self {
        self.cfg.stats = yes;
        self
    }

    /// Log at WARN every job whose wait for a worker plus run took at least
    /// `threshold` (default `None`: off; `cp_slow_job_threshold`, in
    /// seconds). Not in Twisted; Synapse's slow transaction log.
    pub fn slow_job_threshold(mut self, threshold: Option<Duration>) -> Self {
        self.cfg.slow_job_threshold = threshold;
        self
    }

    /// Fail a job that waited longer than `timeout` for a worker with
    /// [`PoolTimeout`](crate::PoolTimeout), without running it (default
    /// `None`: wait for ever, as Twisted does; `cp_queue_timeout`, in
    /// seconds; must be above zero). HikariCP's `connectionTimeout`, sqlx's
    /// `acquire_timeout`.
    pub fn queue_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.cfg.queue_timeout = timeout;
        self
    }

    /// Makes the pool.
    pub fn build(self) -> Result<ConnectionPool, PoolError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        ConnectionPool::from_config(self.cfg)
    }
}

impl fmt::Debug for ConnectionPoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionPoolBuilder")
            .field("dbapi_name", &self.cfg.dbapi_name)
            .field("min", &self.cfg.min)
            .field("max", &self.cfg.max)
            .finish()
    }
}
