//! [`ConnectionPool`]: Twisted's `adbapi.ConnectionPool`.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::thread::ThreadId;

use deferred::{succeed, Deferred, Failure, Resolver};
use reactor::prelude::*;
use reactor::{
    defer_to_thread_pool_with_interrupt, stop_thread_pool, Interrupt, Phase, ThreadPool, TriggerId,
};

use crate::connection::{Connection, WrongConnectionForThread};
use crate::dbapi::{lookup_module, ConnectArgs, DbConnection, Params, Row, UnknownModule, Value};
use crate::pool_core::{
    CancelAction, ConnectionFactory, CoreConfig, JobSlot, OpenFun, PoolCore, TransactionFactory,
};
use crate::state::PoolState;
use crate::transaction::Transaction;

/// A keyword argument of [`ConnectionPool::new`]: a plain value (for the
/// driver's `connect` or a `cp_*` option), or one of the two options whose
/// value is not data: `cp_openfun` ([`Arg::openfun`]) and `cp_reactor`
/// ([`Arg::reactor`]). Plain values convert with `.into()`.
pub enum Arg {
    /// A value.
    Value(Value),
    /// A `cp_openfun` callback.
    OpenFun(OpenFun),
    /// A `cp_reactor`.
    Reactor(Rc<dyn AnyReactor>),
}

impl Arg {
    /// A `cp_openfun` value: called with every new raw connection.
    pub fn openfun<F>(f: F) -> Arg
    where
        F: Fn(&DbConnection) -> Result<(), Failure> + Send + Sync + 'static,
    {
        Arg::OpenFun(Arc::new(f))
    }

    /// A `cp_reactor` value: the reactor (real or fake) the pool runs on.
    pub fn reactor<R: AnyReactor + 'static>(reactor: R) -> Arg {
        Arg::Reactor(Rc::new(reactor))
    }

    fn describe(&self) -> String {
        match self {
            Arg::Value(v) => format!("{} {v}", v.type_name()),
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
/// `cp_reactor`.
pub const CP_ARGS: [&str; 8] = [
    "cp_min",
    "cp_max",
    "cp_name",
    "cp_noisy",
    "cp_openfun",
    "cp_reconnect",
    "cp_good_sql",
    "cp_reactor",
];

/// Why a pool could not be made.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PoolError {
    /// No DB-API module of that name is registered (Twisted: `ImportError`).
    #[error(transparent)]
    UnknownModule(#[from] UnknownModule),
    /// A `cp_*` keyword that is not a pool option. Twisted would pass it to the
    /// driver's `connect`, where it fails at first use.
    #[error("unknown pool option {option:?}: the cp_* options are cp_min, cp_max, cp_name, cp_noisy, cp_openfun, cp_reconnect, cp_good_sql and cp_reactor")]
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
struct PoolConfig {
    dbapi_name: String,
    args: Vec<Value>,
    kwargs: BTreeMap<String, Value>,
    min: usize,
    max: usize,
    name: Option<String>,
    noisy: bool,
    openfun: Option<OpenFun>,
    reconnect: bool,
    good_sql: Option<String>,
    reactor: Option<Rc<dyn AnyReactor>>,
}

impl PoolConfig {
    /// Twisted's class-level defaults.
    fn new(dbapi_name: &str) -> Self {
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
        }
    }

    /// Takes one keyword: a `cp_*` option, or a driver argument.
    fn keyword(&mut self, key: String, value: Arg) -> Result<(), PoolError> {
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

enum CloseState {
    Open,
    Closing(Vec<Resolver<()>>),
    Closed,
}

struct PoolInner {
    core: Arc<PoolCore>,
    reactor: Rc<dyn AnyReactor>,
    threadpool: ThreadPool,
    min: usize,
    max: usize,
    name: Option<String>,
    running: Cell<bool>,
    start_id: RefCell<Option<TriggerId>>,
    shutdown_id: RefCell<Option<TriggerId>>,
    close_state: RefCell<CloseState>,
}

impl PoolInner {
    /// Stops the workers without blocking: queued and running jobs finish
    /// and their Deferreds fire, each worker closes its connection as it
    /// exits, then the remaining connections are closed. Holds the reactor's
    /// shutdown (its loop keeps turning and its `after`/`shutdown` triggers
    /// wait) until then.
    fn stop_workers(&self) -> Deferred<()> {
        let hold = self.reactor.hold_shutdown();
        let core = Arc::clone(&self.core);
        stop_thread_pool(&*self.reactor, &self.threadpool).add_both(
            move |r: Result<(), Failure>| {
                core.close_all();
                drop(hold);
                r
            },
        )
    }
}

impl Drop for PoolInner {
    /// The last handle of a pool that was not closed: close it as
    /// `final_close` would, so its jobs still run, their Deferreds fire, its
    /// connections close, and a shutdown waits for all of that. (Twisted's
    /// shutdown trigger keeps the pool alive until shutdown; here the trigger
    /// holds the pool weakly, so dropping the last handle closes it.)
    fn drop(&mut self) {
        if !matches!(*self.close_state.get_mut(), CloseState::Open) {
            return;
        }
        for id in [
            self.shutdown_id.get_mut().take(),
            self.start_id.get_mut().take(),
        ]
        .into_iter()
        .flatten()
        {
            let _ = self.reactor.remove_system_event_trigger(&id);
        }
        drop(self.stop_workers());
    }
}

/// An asynchronous pool of database connections: Twisted's
/// `twisted.enterprise.adbapi.ConnectionPool`.
///
/// Work runs on the pool's own worker threads (`cp_min..=cp_max`), each with
/// one connection, made lazily the first time that thread needs it; results
/// come back as [`Deferred`]s fired on the reactor's loop thread. The pool
/// starts when the reactor runs (`call_when_running`) and closes at
/// shutdown (a `during`/`shutdown` trigger, [`shutdown_id`](Self::shutdown_id)).
///
/// A `ConnectionPool` is a cheap handle for the loop thread; clones share the
/// pool.
///
/// # Examples
///
/// ```
/// use adbapi::{args, kwargs, ConnectionPool};
/// use reactor::prelude::*;
/// use reactor::Reactor;
/// use std::{cell::RefCell, rc::Rc};
///
/// let reactor = Reactor::new().unwrap();
/// let dir = std::env::temp_dir().join(format!("adbapi-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let db = dir.join("pool.db");
/// let _ = std::fs::remove_file(&db);
/// let pool = ConnectionPool::new(
///     "sqlite3",
///     args![db.to_str().unwrap()],
///     kwargs! { "cp_max" => 1, "cp_reactor" => adbapi::Arg::reactor(reactor.clone()) },
/// )
/// .unwrap();
///
/// let out = Rc::new(RefCell::new(Vec::new()));
/// let (o, r) = (out.clone(), reactor.clone());
/// let p = pool.clone();
/// pool.run_operation("CREATE TABLE t (x INTEGER)", ())
///     .add_callback_deferred(move |()| {
///         p.run_interaction(|txn| {
///             txn.executemany("INSERT INTO t VALUES (?)", [(1,), (2,), (3,)])?;
///             Ok(txn.rowcount()?)
///         })
///     })
///     .add_callback_deferred(move |inserted| {
///         assert_eq!(inserted, 3);
///         pool.run_query("SELECT sum(x) FROM t", ())
///     })
///     .add_callback(move |rows| {
///         o.borrow_mut().push(rows[0].get::<i64>(0).unwrap());
///         r.stop().unwrap();
///     });
/// reactor.run().unwrap();
/// assert_eq!(*out.borrow(), [6]);
/// ```
#[derive(Clone)]
pub struct ConnectionPool {
    inner: Rc<PoolInner>,
}

impl ConnectionPool {
    /// Makes a pool for DB-API module `dbapi_name` (see
    /// [`register_module`](crate::dbapi::register_module)). Mirrors
    /// `ConnectionPool(dbapiName, *connargs, **connkw)`.
    ///
    /// Keyword arguments named in [`CP_ARGS`] configure the pool (defaults:
    /// `cp_min` 3, `cp_max` 5, `cp_name` none, `cp_noisy` false, `cp_openfun`
    /// none, `cp_reconnect` false, `cp_good_sql` `"select 1"`, `cp_reactor`
    /// this thread's default reactor: the installed one, else the one live
    /// reactor this thread made, see [`reactor::try_default_reactor`]); all
    /// others, and `args`, go to the
    /// module's `connect`. As in Twisted, `cp_min` is lowered to `cp_max` if it
    /// is larger. Unlike Twisted, options are checked here: an unknown `cp_*`
    /// name, a wrong type, `cp_max=0`, a `cp_name` with a NUL, a `cp_good_sql`
    /// with no statement in it, or no `cp_reactor` on a thread with several
    /// live reactors is a [`PoolError`] naming the option.
    pub fn new(
        dbapi_name: &str,
        args: Vec<Value>,
        kwargs: Vec<(String, Arg)>,
    ) -> Result<ConnectionPool, PoolError> {
        let mut cfg = PoolConfig::new(dbapi_name);
        cfg.args = args;
        for (k, v) in kwargs {
            cfg.keyword(k, v)?;
        }
        Self::from_config(cfg)
    }

    /// A typed builder with the same options, for code written fresh in Rust.
    pub fn builder(dbapi_name: &str) -> ConnectionPoolBuilder {
        ConnectionPoolBuilder {
            cfg: PoolConfig::new(dbapi_name),
            error: None,
        }
    }

    fn from_config(cfg: PoolConfig) -> Result<ConnectionPool, PoolError> {
        if cfg.max == 0 {
            // Every constructor (new, builder, from_state) checks it here.
            return Err(PoolError::InvalidOption {
                option: "cp_max".to_owned(),
                expected: "a positive integer (a pool of 0 threads never runs anything)",
                got: "0".to_owned(),
            });
        }
        if let Some(sql) = cfg.good_sql.as_deref() {
            if sql_is_blank(sql) {
                // A probe that runs nothing cannot tell a live connection from
                // a dead one: every ordinary error would become ConnectionLost.
                return Err(PoolError::InvalidOption {
                    option: "cp_good_sql".to_owned(),
                    expected: "a statement to probe the connection with, or None",
                    got: format!("{sql:?} (no statement)"),
                });
            }
        }
        let dbapi = lookup_module(&cfg.dbapi_name)?;
        // Both only log, as in Twisted.
        if dbapi.apilevel() != Some("2.0") {
            tracing::info!("DB API module not DB API 2.0 compliant.");
        }
        if dbapi.threadsafety().unwrap_or(0) < 1 {
            tracing::info!("DB API module not sufficiently thread-safe.");
        }
        let reactor: Rc<dyn AnyReactor> =
            match cfg.reactor {
                Some(r) => r,
                None => Rc::new(reactor::try_default_reactor().map_err(|e| {
                    PoolError::InvalidOption {
                        option: "cp_reactor".to_owned(),
                        expected: "the reactor to run on: this thread's default is ambiguous",
                        got: e.to_string(),
                    }
                })?),
            };
        // Twisted: min = min(min, max); max = max(min, max).
        let min = cfg.min.min(cfg.max);
        let max = cfg.max.max(min);
        let pool_name = cfg
            .name
            .clone()
            .unwrap_or_else(|| format!("adbapi-{}", cfg.dbapi_name));
        let threadpool = reactor
            .new_thread_pool(min, max, &pool_name)
            .map_err(|e| match e {
                reactor::PoolConfigError::InvalidName { .. } => PoolError::InvalidOption {
                    option: "cp_name".to_owned(),
                    expected: "a name without NUL characters (it names the worker threads)",
                    got: e.to_string(),
                },
                other => PoolError::InvalidOption {
                    option: "cp_min".to_owned(),
                    expected: "at most cp_max",
                    got: other.to_string(),
                },
            })?;
        let core = PoolCore::new(CoreConfig {
            dbapi_name: cfg.dbapi_name,
            dbapi,
            connect_args: ConnectArgs {
                args: cfg.args,
                kwargs: cfg.kwargs,
            },
            noisy: cfg.noisy,
            reconnect: cfg.reconnect,
            good_sql: cfg.good_sql,
            openfun: cfg.openfun,
        });
        // Each worker closes its own connection as it exits (Twisted closes
        // them all from the reactor thread, twisted/twisted#3629). Weak: the
        // hook must not keep the pool's core alive.
        let (weak_core, pool_id) = (Arc::downgrade(&core), core.id());
        threadpool.add_worker_exit_hook(Arc::new(move || match weak_core.upgrade() {
            Some(core) => core.close_thread_connection(),
            None => crate::connection::close_thread_records(pool_id),
        }));
        let pool = ConnectionPool {
            inner: Rc::new(PoolInner {
                core,
                reactor: Rc::clone(&reactor),
                threadpool,
                min,
                max,
                name: cfg.name,
                running: Cell::new(false),
                start_id: RefCell::new(None),
                shutdown_id: RefCell::new(None),
                close_state: RefCell::new(CloseState::Open),
            }),
        };
        let weak = Rc::downgrade(&pool.inner);
        // Runs `_start` now if the reactor is running (the id is then None).
        let start_id = reactor.call_when_running(move || {
            if let Some(p) = upgrade(&weak) {
                p.start_from_trigger();
            }
        });
        *pool.inner.start_id.borrow_mut() = start_id;
        Ok(pool)
    }

    /// Mirrors `_start`: forget the startup trigger id, then `start`.
    fn start_from_trigger(&self) {
        self.inner.start_id.borrow_mut().take();
        if let Err(e) = self.start() {
            tracing::error!(error = %e, "could not start the connection pool");
        }
    }

    /// Starts the worker threads and registers the `during`/`shutdown`
    /// trigger that closes the pool. Does nothing if already running; fails on
    /// a closed pool. Mirrors `start()`.
    pub fn start(&self) -> Result<(), PoolClosed> {
        if !matches!(*self.inner.close_state.borrow(), CloseState::Open) {
            return Err(self.closed_error());
        }
        if self.inner.running.get() {
            return Ok(());
        }
        self.inner
            .threadpool
            .start()
            .map_err(|_| self.closed_error())?;
        let weak = Rc::downgrade(&self.inner);
        let id =
            self.inner
                .reactor
                .add_system_event_trigger(Phase::During, "shutdown", move || {
                    if let Some(p) = upgrade(&weak) {
                        drop(p.final_close());
                    }
                });
        *self.inner.shutdown_id.borrow_mut() = Some(id);
        self.inner.running.set(true);
        Ok(())
    }

    fn closed_error(&self) -> PoolClosed {
        PoolClosed {
            dbapi_name: self.inner.core.dbapi_name().to_owned(),
        }
    }

    /// Closes the pool: removes its startup and shutdown triggers, then
    /// [`final_close`](Self::final_close). Closing twice is harmless (Twisted
    /// raises `AlreadyQuit`). Mirrors `close()`.
    pub fn close(&self) -> Deferred<()> {
        let reactor = &self.inner.reactor;
        if let Some(id) = self.inner.shutdown_id.borrow_mut().take() {
            let _ = reactor.remove_system_event_trigger(&id);
        }
        if let Some(id) = self.inner.start_id.borrow_mut().take() {
            let _ = reactor.remove_system_event_trigger(&id);
        }
        self.final_close()
    }

    /// Stops the pool: no new work is accepted; queued and running jobs finish
    /// and their Deferreds fire; each worker closes its connection on its own
    /// thread as it exits; then the remaining connections are closed and the
    /// returned Deferred fires. Mirrors `finalClose()`, which the shutdown
    /// trigger calls.
    ///
    /// Unlike Twisted's, it does not block the loop thread while jobs drain,
    /// and during reactor shutdown it holds the reactor
    /// ([`ReactorCore::hold_shutdown`](reactor::ReactorCore::hold_shutdown))
    /// until the jobs' Deferreds have fired.
    pub fn final_close(&self) -> Deferred<()> {
        {
            let mut st = self.inner.close_state.borrow_mut();
            match &mut *st {
                CloseState::Closed => return succeed(()),
                CloseState::Closing(waiters) => {
                    // Cancelling it cannot cut the close short either.
                    let (d, r) = Deferred::with_canceller(|r| r.decline_cancel());
                    waiters.push(r);
                    return d;
                }
                CloseState::Open => *st = CloseState::Closing(Vec::new()),
            }
        }
        // A later close() must not remove a trigger that already ran.
        self.inner.shutdown_id.borrow_mut().take();
        self.inner.running.set(false);
        // Strong, not weak: the continuation runs once, and the Deferreds of
        // later close() calls (parked in `close_state`) must fire even if the
        // last pool handle is dropped meanwhile.
        let inner = Rc::clone(&self.inner);
        self.inner
            .stop_workers()
            .add_both(move |r: Result<(), Failure>| {
                let waiters = match std::mem::replace(
                    &mut *inner.close_state.borrow_mut(),
                    CloseState::Closed,
                ) {
                    CloseState::Closing(w) => w,
                    _ => Vec::new(),
                };
                for w in waiters {
                    let _ = w.resolve(r.clone());
                }
                r
            })
    }

    fn refuse<T: Send + 'static>(&self) -> Option<Deferred<T>> {
        if matches!(*self.inner.close_state.borrow(), CloseState::Open) {
            return None;
        }
        // Held until it fires: a shutdown in progress (its `after` phase, and
        // `run()`) waits for the refusal too.
        let reactor = &self.inner.reactor;
        Some(reactor.loop_queue().resolve_later_holding(
            Err(Failure::new(self.closed_error())),
            reactor.hold_shutdown(),
        ))
    }

    /// Runs `interaction` on a worker, in a transaction on that worker's
    /// connection: committed if it returns `Ok`, rolled back if it returns
    /// `Err` or panics. The Deferred fires on the loop thread with its result.
    /// Mirrors `runInteraction`.
    ///
    /// Cancelling the Deferred (or a timeout from `add_timeout`) before the job
    /// started withdraws it; once it runs, the running statement is cancelled
    /// (PostgreSQL: a cancel request; SQLite: an interrupt), later statements
    /// of the job fail, and the Deferred fails with `CancelledError` at once,
    /// the job's late result being dropped. A panic in `interaction`
    /// fails the Deferred with the panic message and the connection is
    /// replaced. If the rollback finds the connection lost (with
    /// `cp_reconnect`), the failure is [`ConnectionLost`](crate::ConnectionLost)
    /// with the original error as its source.
    pub fn run_interaction<T, F>(&self, interaction: F) -> Deferred<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Transaction<'_>) -> Result<T, Failure> + Send + 'static,
    {
        if let Some(d) = self.refuse() {
            return d;
        }
        let core = Arc::clone(&self.inner.core);
        let (job, interrupt) = job_slot();
        defer_to_thread_pool_with_interrupt(
            &*self.inner.reactor,
            &self.inner.threadpool,
            move || core.run_interaction_in(interaction, Some(job)),
            interrupt,
        )
    }

    /// Runs `f` on a worker with its [`Connection`]; commits if it returns
    /// `Ok`, rolls back otherwise. Mirrors `runWithConnection`.
    pub fn run_with_connection<T, F>(&self, f: F) -> Deferred<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, Failure> + Send + 'static,
    {
        if let Some(d) = self.refuse() {
            return d;
        }
        let core = Arc::clone(&self.inner.core);
        let (job, interrupt) = job_slot();
        defer_to_thread_pool_with_interrupt(
            &*self.inner.reactor,
            &self.inner.threadpool,
            move || core.run_with_connection_in(f, Some(job)),
            interrupt,
        )
    }

    /// Executes one statement and fires with every row (`cursor.fetchall()`).
    /// Mirrors `runQuery`.
    pub fn run_query(&self, sql: &str, params: impl Into<Params>) -> Deferred<Vec<Row>> {
        let sql = sql.to_owned();
        let params = params.into();
        self.run_interaction(move |txn| Ok(txn.execute(&sql, params)?.fetchall()?))
    }

    /// Executes one statement and fires with `()`. Mirrors `runOperation`.
    pub fn run_operation(&self, sql: &str, params: impl Into<Params>) -> Deferred<()> {
        let sql = sql.to_owned();
        let params = params.into();
        self.run_interaction(move |txn| {
            txn.execute(&sql, params)?;
            Ok(())
        })
    }

    /// This thread's raw connection, made if needed. Blocks; meant for
    /// workers, though Twisted's tests call it from the reactor thread too.
    /// Mirrors `connect()`.
    pub fn connect(&self) -> Result<DbConnection, Failure> {
        self.inner.core.connect()
    }

    /// Closes and forgets this thread's connection. Mirrors `disconnect(conn)`.
    pub fn disconnect(&self, conn: Option<&DbConnection>) -> Result<(), WrongConnectionForThread> {
        self.inner.core.disconnect(conn)
    }

    /// True between `start` and `final_close`. Mirrors `running`.
    pub fn running(&self) -> bool {
        self.inner.running.get()
    }

    /// Minimum number of worker threads. Mirrors `min`.
    pub fn min(&self) -> usize {
        self.inner.min
    }

    /// Maximum number of worker threads, and so of connections. Mirrors `max`.
    pub fn max(&self) -> usize {
        self.inner.max
    }

    /// `cp_name`. Twisted ignores it; here it names the worker threads.
    pub fn name(&self) -> Option<&str> {
        self.inner.name.as_deref()
    }

    /// Mirrors `noisy`.
    pub fn noisy(&self) -> bool {
        self.inner.core.noisy()
    }

    /// Mirrors `reconnect`.
    pub fn reconnect(&self) -> bool {
        self.inner.core.reconnect()
    }

    /// Mirrors `good_sql`.
    pub fn good_sql(&self) -> Option<&str> {
        self.inner.core.good_sql()
    }

    /// Mirrors `dbapiName`.
    pub fn dbapi_name(&self) -> &str {
        self.inner.core.dbapi_name()
    }

    /// The id of the `during`/`shutdown` trigger while running. Mirrors
    /// `shutdownID`.
    pub fn shutdown_id(&self) -> Option<TriggerId> {
        self.inner.shutdown_id.borrow().clone()
    }

    /// The id of the `after`/`startup` trigger until the pool starts. Mirrors
    /// `startID`.
    pub fn start_id(&self) -> Option<TriggerId> {
        self.inner.start_id.borrow().clone()
    }

    /// Every (thread, raw connection) pair. Mirrors `connections`.
    pub fn connections(&self) -> Vec<(ThreadId, DbConnection)> {
        self.inner.core.connections()
    }

    /// The pool's worker threads. Mirrors `threadpool`.
    pub fn threadpool(&self) -> &ThreadPool {
        &self.inner.threadpool
    }

    /// The thread-safe half.
    pub fn core(&self) -> &Arc<PoolCore> {
        &self.inner.core
    }

    /// The reactor the pool runs on. Mirrors `_reactor`.
    pub fn reactor(&self) -> &Rc<dyn AnyReactor> {
        &self.inner.reactor
    }

    /// Replaces the connection factory. Mirrors assigning
    /// `pool.connectionFactory`.
    pub fn set_connection_factory(&self, f: ConnectionFactory) {
        self.inner.core.set_connection_factory(f);
    }

    /// Replaces the transaction factory. Mirrors assigning
    /// `pool.transactionFactory`.
    pub fn set_transaction_factory(&self, f: TransactionFactory) {
        self.inner.core.set_transaction_factory(f);
    }

    /// What Twisted pickles: module name, `min`, `max`, `noisy`,
    /// `reconnect`, `good_sql` and the connect arguments. Mirrors
    /// `__getstate__`.
    pub fn get_state(&self) -> PoolState {
        let core = &self.inner.core;
        PoolState {
            dbapi_name: core.dbapi_name().to_owned(),
            min: self.inner.min,
            max: self.inner.max,
            noisy: core.noisy(),
            reconnect: core.reconnect(),
            good_sql: core.good_sql().map(str::to_owned),
            connargs: core.connect_args().args.clone(),
            connkw: core.connect_args().kwargs.clone(),
        }
    }

    /// A working pool rebuilt from a saved state, on this thread's default
    /// reactor; `cp_openfun` and `cp_name` are not part of the state. Mirrors
    /// `__setstate__`.
    pub fn from_state(state: PoolState) -> Result<ConnectionPool, PoolError> {
        Self::from_state_with_reactor(state, None)
    }

    /// As [`from_state`](Self::from_state), on the given reactor.
    pub fn from_state_with_reactor(
        state: PoolState,
        reactor: Option<Rc<dyn AnyReactor>>,
    ) -> Result<ConnectionPool, PoolError> {
        let mut cfg = PoolConfig::new(&state.dbapi_name);
        cfg.args = state.connargs;
        for (k, v) in state.connkw {
            cfg.keyword(k, Arg::Value(v))?;
        }
        cfg.min = state.min;
        cfg.max = state.max;
        cfg.noisy = state.noisy;
        cfg.reconnect = state.reconnect;
        cfg.good_sql = state.good_sql;
        cfg.reactor = reactor;
        Self::from_config(cfg)
    }
}

/// A job's cancel slot, and the hook that cancels it if it is already
/// running: the job is marked cancelled at once, on the loop thread (so it
/// cannot commit after its Deferred reported `CancelledError`), and the
/// driver's cancel request for the running statement is sent: inline when
/// the driver's cancel does not block (SQLite's interrupt), else from a
/// short-lived thread (PostgreSQL's cancel is a network round trip). A cancel
/// that arrives once the job has begun to commit is declined
/// ([`Interrupt::TooLate`]): the Deferred then reports the job's outcome.
fn job_slot() -> (Arc<JobSlot>, impl FnOnce() -> Interrupt + 'static) {
    let job = Arc::new(JobSlot::default());
    let slot = Arc::clone(&job);
    let interrupt = move || {
        let conn = match slot.mark_cancelled() {
            CancelAction::TooLate => return Interrupt::TooLate,
            CancelAction::Cancelled(None) => return Interrupt::Cancelled,
            CancelAction::Cancelled(Some(conn)) => conn,
        };
        if !conn.cancel_blocks() {
            slot.cancel_statement(&conn);
            return Interrupt::Cancelled;
        }
        let s = Arc::clone(&slot);
        let c = conn.clone();
        if std::thread::Builder::new()
            .name("adbapi-cancel".to_owned())
            .spawn(move || s.cancel_statement(&c))
            .is_err()
        {
            slot.cancel_statement(&conn);
        }
        Interrupt::Cancelled
    };
    (job, interrupt)
}

/// True if `sql` holds no statement: only white space, `;` and comments.
fn sql_is_blank(sql: &str) -> bool {
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

fn upgrade(weak: &Weak<PoolInner>) -> Option<ConnectionPool> {
    weak.upgrade().map(|inner| ConnectionPool { inner })
}

impl fmt::Debug for ConnectionPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionPool")
            .field("dbapi_name", &self.dbapi_name())
            .field("min", &self.inner.min)
            .field("max", &self.inner.max)
            .field("running", &self.running())
            .field("threadpool", &self.inner.threadpool)
            .finish()
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

    /// The reactor to run on (default: this thread's default reactor).
    pub fn reactor<R: AnyReactor + 'static>(mut self, reactor: R) -> Self {
        self.cfg.reactor = Some(Rc::new(reactor));
        self
    }

    /// The reactor to run on, already shared.
    pub fn reactor_rc(mut self, reactor: Rc<dyn AnyReactor>) -> Self {
        self.cfg.reactor = Some(reactor);
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
