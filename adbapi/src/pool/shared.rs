//! [`SharedPool`]: the state of a `ConnectionPool` that its worker threads
//! share (what Twisted's `Connection` and `Transaction` call their "pool"):
//! the DB-API module, the connect arguments, the worker-side options, the
//! per-thread connection map ([`super::connection_map`]) and the two
//! factories. Running a job against it lives in [`super::job`].

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::ThreadId;

use deferred::Failure;

use super::connection::{Connection, WrongConnectionForThread};
use super::connection_map::ConnectionMap;
use super::job::catch;
use super::lifetime::{Life, LifeConfig};
use super::observe::Observe;
use super::retry::RetryWake;
use super::status::PoolStats;
use super::transaction::Transaction;
use crate::dbapi::{ConnectArgs, DbApiModule, DbConnection};

/// Called on every new raw connection before it is used (`cp_openfun`).
/// Mirrors the `cp_openfun` callable of Twisted's `ConnectionPool`.
pub type OpenFun = Arc<dyn Fn(&DbConnection) -> Result<(), Failure> + Send + Sync>;

/// Makes the [`Connection`] a job runs on. Mirrors `connectionFactory`
/// (default: [`Connection::new`]).
pub type ConnectionFactory =
    Arc<dyn Fn(&Arc<SharedPool>) -> Result<Connection, Failure> + Send + Sync>;

/// Makes the [`Transaction`] an interaction runs in. Mirrors
/// `transactionFactory` (default: [`Transaction::new`]).
pub type TransactionFactory = Arc<
    dyn for<'c> Fn(&'c Arc<SharedPool>, &'c mut Connection) -> Result<Transaction<'c>, Failure>
        + Send
        + Sync,
>;

/// The worker-side settings of a pool.
pub(super) struct SharedConfig {
    pub(super) dbapi_name: String,
    pub(super) dbapi: Arc<dyn DbApiModule>,
    pub(super) connect_args: ConnectArgs,
    pub(super) noisy: bool,
    pub(super) reconnect: bool,
    pub(super) good_sql: Option<String>,
    pub(super) openfun: Option<OpenFun>,
    /// Timeouts, lifetime and health (`cp_statement_timeout` ...).
    pub(super) life: LifeConfig,
    /// The observation settings (`cp_stats`, `cp_slow_job_threshold`,
    /// `cp_queue_timeout`, the pool's name in spans and metrics).
    pub(super) observe: Observe,
}

/// The thread-safe half of a [`ConnectionPool`](crate::ConnectionPool): what
/// worker threads, [`Connection`] and [`Transaction`] use (Twisted's
/// `Connection(pool)` and `Transaction(pool, connection)` get the pool
/// itself; here they get this part of it). Obtained from
/// [`ConnectionPool::shared`](crate::ConnectionPool::shared).
pub struct SharedPool {
    id: u64,
    cfg: SharedConfig,
    connections: ConnectionMap,
    /// Bumped when the map is emptied by `final_close`, so thread-local
    /// records made before are ignored.
    epoch: AtomicU64,
    connection_factory: RwLock<Option<ConnectionFactory>>,
    transaction_factory: RwLock<Option<TransactionFactory>>,
    /// Set once a factory is replaced; until then the per-job path takes no
    /// lock (a read lock is a write to a cache line every worker shares).
    custom_factories: AtomicBool,
    /// Connection lifetime and health; `None` when no such option is set.
    life: Option<Life>,
    /// Wakes retry pauses on cancel and close.
    retry_wake: RetryWake,
    /// The counters behind `ConnectionPool::status`.
    stats: PoolStats,
}

impl SharedPool {
    pub(super) fn new(mut cfg: SharedConfig) -> Arc<SharedPool> {
        static IDS: AtomicU64 = AtomicU64::new(1);
        let observe = std::mem::replace(&mut cfg.observe, Observe::off());
        Arc::new(SharedPool {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            life: Life::new(&cfg.life),
            retry_wake: RetryWake::default(),
            cfg,
            connections: ConnectionMap::new(),
            epoch: AtomicU64::new(0),
            connection_factory: RwLock::new(None),
            transaction_factory: RwLock::new(None),
            custom_factories: AtomicBool::new(false),
            stats: PoolStats::new(observe),
        })
    }

    /// The lifetime and health state, if any such option is set.
    pub(super) fn life(&self) -> Option<&Life> {
        self.life.as_ref()
    }

    /// The timeout, lifetime and health settings.
    pub(super) fn life_config(&self) -> &LifeConfig {
        &self.cfg.life
    }

    /// The retry pauses' wake-up.
    pub(super) fn retry_wake(&self) -> &RetryWake {
        &self.retry_wake
    }

    /// This thread's connection, if it has one (never connects).
    pub(super) fn current_connection(&self) -> Option<DbConnection> {
        self.connections.current(self)
    }

    /// A process-unique id.
    pub(super) fn id(&self) -> u64 {
        self.id
    }

    pub(super) fn stats(&self) -> &PoolStats {
        &self.stats
    }

    /// Counts a connection opened, closed or that failed to open.
    fn connection_event(&self, counter: &std::sync::atomic::AtomicU64, event: &'static str) {
        PoolStats::bump(counter);
        super::metrics::connection_event(&self.stats.observe.label, event);
    }

    pub(super) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The module name the pool was made with. Mirrors `dbapiName`.
    pub fn dbapi_name(&self) -> &str {
        &self.cfg.dbapi_name
    }

    /// The module. Mirrors `dbapi`.
    pub fn dbapi(&self) -> &Arc<dyn DbApiModule> {
        &self.cfg.dbapi
    }

    /// The arguments passed to the module's `connect`. Mirrors `connargs`
    /// and `connkw`.
    pub fn connect_args(&self) -> &ConnectArgs {
        &self.cfg.connect_args
    }

    /// Whether informational messages are logged. Mirrors `noisy`.
    pub fn noisy(&self) -> bool {
        self.cfg.noisy
    }

    /// Whether lost connections are detected and replaced. Mirrors `reconnect`.
    pub fn reconnect(&self) -> bool {
        self.cfg.reconnect
    }

    /// The probe query used after a rollback when reconnecting. Mirrors
    /// `good_sql`.
    pub fn good_sql(&self) -> Option<&str> {
        self.cfg.good_sql.as_deref()
    }

    /// The `cp_openfun` callback.
    pub fn openfun(&self) -> Option<&OpenFun> {
        self.cfg.openfun.as_ref()
    }

    /// Replaces the connection factory. Mirrors assigning
    /// `pool.connectionFactory`.
    pub fn set_connection_factory(&self, f: ConnectionFactory) {
        *self
            .connection_factory
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(f);
        self.custom_factories.store(true, Ordering::Release);
    }

    /// Replaces the transaction factory. Mirrors assigning
    /// `pool.transactionFactory`.
    pub fn set_transaction_factory(&self, f: TransactionFactory) {
        *self
            .transaction_factory
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(f);
        self.custom_factories.store(true, Ordering::Release);
    }

    /// The connection factory, if one replaced the default. Without one no
    /// lock is taken: a read lock is a write to a cache line every worker
    /// shares.
    pub(super) fn custom_connection_factory(&self) -> Option<ConnectionFactory> {
        if !self.custom_factories.load(Ordering::Acquire) {
            return None;
        }
        self.connection_factory
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The transaction factory, if one replaced the default (lock-free
    /// without one, as above).
    pub(super) fn custom_transaction_factory(&self) -> Option<TransactionFactory> {
        if !self.custom_factories.load(Ordering::Acquire) {
            return None;
        }
        self.transaction_factory
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// This thread's raw connection, made (and passed to `cp_openfun`) if it
    /// has none. Blocks. Mirrors `ConnectionPool.connect()`.
    ///
    /// If `cp_openfun` fails, the new connection is closed and the failure
    /// returned (Twisted leaves it open and unreferenced).
    pub fn connect(self: &Arc<Self>) -> Result<DbConnection, Failure> {
        if let Some(c) = self.connections.current(self) {
            return Ok(c);
        }
        if self.cfg.noisy {
            tracing::info!("adbapi connecting: {}", self.cfg.dbapi_name);
        }
        let driver = catch(|| {
            self.cfg
                .dbapi
                .connect(&self.cfg.connect_args)
                .map_err(Failure::new)
        })
        .inspect_err(|_| {
            self.connection_event(&self.stats.on_workers.connections_failed, "failed")
        })?;
        self.connection_event(&self.stats.on_workers.connections_opened, "opened");
        let conn = DbConnection::new(&self.cfg.dbapi_name, driver);
        if let Err(f) = self.apply_statement_timeout(&conn) {
            self.close_connection(&conn);
            return Err(f);
        }
        if let Some(life) = &self.life {
            life.opened(&conn);
        }
        if let Some(openfun) = &self.cfg.openfun {
            if let Err(f) = catch(|| openfun(&conn)) {
                self.connection_event(&self.stats.on_workers.connections_failed, "failed");
                self.close_connection(&conn);
                return Err(f);
            }
        }
        self.connections.insert(self, &conn);
        Ok(conn)
    }

    /// Closes and forgets this thread's connection, which must be `conn`
    /// (`None` when the thread has none). Mirrors
    /// `ConnectionPool.disconnect(conn)`, including its
    /// `wrong connection for thread` error.
    pub fn disconnect(&self, conn: Option<&DbConnection>) -> Result<(), WrongConnectionForThread> {
        if let Some(c) = self.connections.remove_current(self.id, conn)? {
            self.close_connection(&c);
        }
        Ok(())
    }

    /// Closes a raw connection, logging `adbapi closing: <name>` if noisy and
    /// `Connection close failed` if closing fails. Mirrors `_close(conn)`.
    pub fn close_connection(&self, conn: &DbConnection) {
        if self.cfg.noisy {
            tracing::info!("adbapi closing: {}", self.cfg.dbapi_name);
        }
        if let Some(life) = &self.life {
            life.closed(conn);
        }
        // Counted even if something else closed it first (a job's own
        // `conn.raw().close()`): the pool lets go of a connection it opened
        // exactly once, here, so open == opened - closed stays true.
        self.connection_event(&self.stats.on_workers.connections_closed, "closed");
        if let Err(f) = catch(|| conn.close().map_err(Failure::new)) {
            tracing::error!(failure = %f, "Connection close failed");
        }
    }

    /// Closes and forgets the calling thread's connection, if it has one. A
    /// pool's workers call it as they exit, so each connection is closed by
    /// the thread that owns it.
    pub(super) fn close_thread_connection(&self) {
        if let Some(conn) = self.connections.take_current(self.id) {
            self.close_connection(&conn);
        }
    }

    /// Thread exit: the thread's connection leaves the map (the caller
    /// closes it, without logging).
    pub(super) fn forget(&self, conn: &DbConnection) {
        self.connections.remove_conn(conn);
    }

    /// Every (thread, raw connection) pair. Mirrors `pool.connections`.
    pub fn connections(&self) -> Vec<(ThreadId, DbConnection)> {
        self.connections.snapshot()
    }

    /// Closes every connection still in the map (those of threads that are
    /// gone, or of the calling thread) and empties it.
    pub(super) fn close_all(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for (_, conn) in self.connections.drain() {
            self.close_connection(&conn);
        }
    }
}

impl fmt::Debug for SharedPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedPool")
            .field("id", &self.id)
            .field("dbapi_name", &self.cfg.dbapi_name)
            .field("noisy", &self.cfg.noisy)
            .field("reconnect", &self.cfg.reconnect)
            .field("good_sql", &self.cfg.good_sql)
            .field("connections", &self.connections.snapshot().len())
            .finish()
    }
}
