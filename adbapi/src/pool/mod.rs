//! The pool layer: [`ConnectionPool`], Twisted's `adbapi.ConnectionPool`,
//! and what it is made of, one concept per file:
//!
//! - here: the loop-thread side of a pool: construction, the `run_*`
//!   methods and the accessors;
//! - `lifecycle`: starting and closing a pool (`start`, `close`,
//!   `final_close`, its reactor triggers, refusing work once closed, and
//!   closing a pool whose last handle is dropped);
//! - `options`: [`Arg`], `args!`/`kwargs!`, [`CP_ARGS`], the parsing of the
//!   `cp_*` keywords, [`ConnectionPoolBuilder`], [`PoolError`], [`PoolClosed`];
//! - `shared`: [`SharedPool`], the state the worker threads share;
//! - `connection_map`: the per-thread connection map (`pool.connections`);
//! - `job`: running one job on a worker (`_runInteraction`,
//!   `_runWithConnection`), commit/rollback, and cancelling a running job;
//! - `connection`, `transaction`: Twisted's [`Connection`] and
//!   [`Transaction`] wrappers;
//! - `state`: [`PoolState`], `__getstate__`/`__setstate__`;
//! - `observe`, `status`, `metrics`, `named`, `queue_timeout`: the
//!   production extensions on the job path (timing and counting jobs,
//!   [`ConnectionPool::status`], the `metrics` feature, named interactions
//!   and the slow-job log, `cp_queue_timeout`).
//!
//! Twisted's object graph (`Connection(pool)`, `Transaction(pool, conn)`)
//! makes these files refer to each other; the cycle stays inside this folder.

mod connection;
mod connection_map;
mod counted;
mod job;
mod lifecycle;
mod lifetime;
mod metrics;
mod named;
mod observe;
mod options;
mod queue_timeout;
mod retry;
mod shared;
mod state;
mod status;
mod transaction;

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::ThreadId;

use deferred::{Deferred, Failure};
use reactor::prelude::*;
use reactor::{AnyReactor, ThreadPool, TriggerId};

pub use self::connection::{Connection, ConnectionLost, WrongConnectionForThread};
pub use self::lifetime::Clock;
pub use self::named::NamedInteraction;
pub use self::options::{Arg, ConnectionPoolBuilder, IntoReactor, PoolClosed, PoolError, CP_ARGS};
pub use self::queue_timeout::PoolTimeout;
pub use self::retry::{retry_reason, RetryPolicy};
pub use self::shared::{ConnectionFactory, OpenFun, SharedPool, TransactionFactory};
pub use self::state::PoolState;
pub use self::status::{DurationStats, PoolStatus};
pub use self::transaction::Transaction;

use self::lifecycle::{upgrade, CloseState, PoolInner};
use self::observe::Observe;
use self::options::{check_duration, sql_is_blank, PoolConfig, SecondsRule};
use self::shared::SharedConfig;
use crate::dbapi::{lookup_module, ConnectArgs, DbConnection, Params, Row, Value};

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
/// # When results arrive ("a later turn")
///
/// The reactor's loop works in turns; in each it runs the timed calls that
/// are due and then the messages queued for the loop thread before the turn
/// began (results from workers, `call_from_thread`), oldest first. A `run_*`
/// Deferred never fires inside the call that made it, not even when it
/// fails at once (a closed pool's [`PoolClosed`]) or the worker was quick:
/// the result is queued, and the Deferred's callbacks run in a later turn,
/// one after the other. Anything a callback queues in turn (a `run_*` made
/// from a result callback, a `call_from_thread`) runs no earlier than the
/// next turn, after what was already queued; the code after that call in
/// the same callback always runs first. So a chain of queries, each issued
/// from the previous one's callback, takes at least one turn per query and
/// never starves timers or other work on the loop.
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
/// let _ = pool.run_operation("CREATE TABLE t (x INTEGER)", ())
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
    /// reactor this thread made, see [`reactor::try_default_reactor`]; and
    /// the production extensions, not in Twisted: `cp_stats` true,
    /// `cp_slow_job_threshold` none, `cp_queue_timeout` none, see
    /// [`status`](Self::status), [`named`](Self::named) and
    /// [`PoolTimeout`]); all others, and `args`, go to the
    /// module's `connect`. As in Twisted, `cp_min` is lowered to `cp_max` if it
    /// is larger. Unlike Twisted, options are checked here: an unknown `cp_*`
    /// name, a wrong type, `cp_max=0`, a `cp_name` with a NUL, a `cp_good_sql`
    /// with no statement in it, no `cp_reactor` on a thread with several
    /// live reactors, or a zero, negative, NaN or infinite duration is a
    /// [`PoolError`] naming the option.
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
        ConnectionPoolBuilder::new(dbapi_name)
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
        if let Some(t) = cfg.queue_timeout {
            // The builder's setter takes any Duration; a zero one is refused
            // here as the keyword's is.
            check_duration(
                "cp_queue_timeout",
                Some(t),
                format!("{t:?}"),
                SecondsRule::Positive,
            )?;
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
        if reactor.has_shut_down() {
            // Its startup will never fire again, so the pool would never
            // start and its jobs' Deferreds would never fire (Twisted's hang
            // silently).
            return Err(PoolError::InvalidOption {
                option: "cp_reactor".to_owned(),
                expected: "a reactor that has not shut down",
                got: "a reactor whose shutdown has begun: it would never start the pool".to_owned(),
            });
        }
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
        if let Some(idle) = cfg.life.idle_timeout {
            // Workers above cp_min retire after the idle timeout too, each
            // closing its connection (the exit hook below).
            threadpool.set_idle_timeout(Some(idle));
        }
        let shared = SharedPool::new(SharedConfig {
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
            life: cfg.life,
            observe: Observe {
                stats: cfg.stats,
                label: Arc::from(pool_name.as_str()),
                slow: cfg.slow_job_threshold,
                queue_timeout: cfg.queue_timeout,
            },
        });
        // Each worker closes its own connection as it exits (Twisted closes
        // them all from the reactor thread, twisted/twisted#3629). Weak: the
        // hook must not keep the pool's shared state alive.
        let (weak_shared, pool_id) = (Arc::downgrade(&shared), shared.id());
        threadpool.add_worker_exit_hook(Arc::new(move || match weak_shared.upgrade() {
            Some(shared) => shared.close_thread_connection(),
            None => connection_map::close_thread_records(pool_id),
        }));
        let pool = ConnectionPool {
            inner: Rc::new(PoolInner {
                shared,
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
        self.submit_interaction(None, interaction)
    }

    /// `run_interaction`, for a job named `name` or not.
    fn submit_interaction<T, F>(&self, name: Option<Arc<str>>, interaction: F) -> Deferred<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Transaction<'_>) -> Result<T, Failure> + Send + 'static,
    {
        if let Some(d) = self.refuse_named(name.as_ref()) {
            return d;
        }
        self.submit(name, move |shared, job| {
            shared.run_interaction_job(interaction, job)
        })
    }

    /// Runs `f` on a worker with its [`Connection`]; commits if it returns
    /// `Ok`, rolls back otherwise. Mirrors `runWithConnection`.
    pub fn run_with_connection<T, F>(&self, f: F) -> Deferred<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, Failure> + Send + 'static,
    {
        self.submit_with_connection(None, f)
    }

    /// `run_with_connection`, for a job named `name` or not.
    fn submit_with_connection<T, F>(&self, name: Option<Arc<str>>, f: F) -> Deferred<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, Failure> + Send + 'static,
    {
        if let Some(d) = self.refuse_named(name.as_ref()) {
            return d;
        }
        self.submit(name, move |shared, job| {
            shared.run_with_connection_job(f, job)
        })
    }

    /// [`refuse`](Self::refuse), with the job's name on the failure.
    pub(super) fn refuse_named<T: Send + 'static>(
        &self,
        name: Option<&Arc<str>>,
    ) -> Option<Deferred<T>> {
        let d = self.refuse(name)?;
        Some(match name {
            None => d,
            Some(name) => {
                let msg = format!(
                    "in interaction {name:?} of pool {:?}",
                    self.inner.shared.stats().observe.label
                );
                d.add_errback(move |f| Err(f.context(msg)))
            }
        })
    }

    /// Executes one statement and fires with every row (`cursor.fetchall()`).
    /// Mirrors `runQuery`.
    ///
    /// The statement is the whole transaction, so a driver may send it as
    /// the server's implicit single-statement transaction, in one round trip
    /// (the PostgreSQL driver does, for plain queries and DML: see
    /// `adbapi::drivers::postgres`, feature `postgres`); Twisted's `BEGIN`, statement, `COMMIT`
    /// is kept wherever that would not be the same.
    pub fn run_query(&self, sql: &str, params: impl Into<Params>) -> Deferred<Vec<Row>> {
        self.submit_interaction(None, query_job(sql, params.into()))
    }

    /// Executes one statement and fires with `()`. Mirrors `runOperation`.
    /// One round trip where the driver can, as [`run_query`](Self::run_query).
    pub fn run_operation(&self, sql: &str, params: impl Into<Params>) -> Deferred<()> {
        self.submit_interaction(None, operation_job(sql, params.into()))
    }

    /// This thread's raw connection, made if needed. Blocks; meant for
    /// workers, though Twisted's tests call it from the reactor thread too.
    /// Mirrors `connect()`.
    pub fn connect(&self) -> Result<DbConnection, Failure> {
        self.inner.shared.connect()
    }

    /// Closes and forgets this thread's connection. Mirrors `disconnect(conn)`.
    pub fn disconnect(&self, conn: Option<&DbConnection>) -> Result<(), WrongConnectionForThread> {
        self.inner.shared.disconnect(conn)
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
        self.inner.shared.noisy()
    }

    /// Mirrors `reconnect`.
    pub fn reconnect(&self) -> bool {
        self.inner.shared.reconnect()
    }

    /// Mirrors `good_sql`.
    pub fn good_sql(&self) -> Option<&str> {
        self.inner.shared.good_sql()
    }

    /// Mirrors `dbapiName`.
    pub fn dbapi_name(&self) -> &str {
        self.inner.shared.dbapi_name()
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
        self.inner.shared.connections()
    }

    /// The pool's worker threads. Mirrors `threadpool`.
    pub fn threadpool(&self) -> &ThreadPool {
        &self.inner.threadpool
    }

    /// The state shared with the worker threads: what Twisted's
    /// `Connection(pool)` and `Transaction(pool, connection)` are given, and
    /// `_close(conn)` ([`SharedPool::close_connection`]).
    pub fn shared(&self) -> &Arc<SharedPool> {
        &self.inner.shared
    }

    /// The reactor the pool runs on. Mirrors `_reactor`.
    pub fn reactor(&self) -> &Rc<dyn AnyReactor> {
        &self.inner.reactor
    }

    /// Replaces the connection factory. Mirrors assigning
    /// `pool.connectionFactory`.
    pub fn set_connection_factory(&self, f: ConnectionFactory) {
        self.inner.shared.set_connection_factory(f);
    }

    /// Replaces the transaction factory. Mirrors assigning
    /// `pool.transactionFactory`.
    pub fn set_transaction_factory(&self, f: TransactionFactory) {
        self.inner.shared.set_transaction_factory(f);
    }
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

/// The interaction of `run_query`: one statement, every row.
pub(super) fn query_job(
    sql: &str,
    params: Params,
) -> impl FnOnce(&mut Transaction<'_>) -> Result<Vec<Row>, Failure> + Send + 'static {
    let sql = sql.to_owned();
    move |txn| Ok(txn.execute_alone(&sql, params)?.fetchall()?)
}

/// The interaction of `run_operation`: one statement, no rows.
pub(super) fn operation_job(
    sql: &str,
    params: Params,
) -> impl FnOnce(&mut Transaction<'_>) -> Result<(), Failure> + Send + 'static {
    let sql = sql.to_owned();
    move |txn| {
        txn.execute_alone(&sql, params)?;
        Ok(())
    }
}
