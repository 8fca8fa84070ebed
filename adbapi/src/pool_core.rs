//! [`PoolCore`]: the thread-safe half of a `ConnectionPool`.
//!
//! Worker threads run jobs against it; Twisted's `Connection` and
//! `Transaction` call it their "pool". It owns the DB-API module, the connect
//! arguments, the options that matter on the worker side, the per-thread
//! connection map and the two factories.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::ThreadId;

use deferred::Failure;

use crate::connection::{
    catch, Connection, ConnectionLost, ConnectionMap, WrongConnectionForThread,
};
use crate::dbapi::{ConnectArgs, DbApiModule, DbConnection};
use crate::transaction::Transaction;

/// Called on every new raw connection before it is used (`cp_openfun`).
pub type OpenFun = Arc<dyn Fn(&DbConnection) -> Result<(), Failure> + Send + Sync>;

/// Makes the [`Connection`] a job runs on. Mirrors `connectionFactory`
/// (default: [`Connection::new`]).
pub type ConnectionFactory =
    Arc<dyn Fn(&Arc<PoolCore>) -> Result<Connection, Failure> + Send + Sync>;

/// Makes the [`Transaction`] an interaction runs in. Mirrors
/// `transactionFactory` (default: [`Transaction::new`]).
pub type TransactionFactory = Arc<
    dyn for<'c> Fn(&Arc<PoolCore>, &'c mut Connection) -> Result<Transaction<'c>, Failure>
        + Send
        + Sync,
>;

/// Ties a cancel request to one job, so it interrupts that job's statement
/// and never the next job's on the same connection.
#[derive(Default)]
pub(crate) struct JobSlot {
    state: Mutex<JobState>,
}

#[derive(Default)]
struct JobState {
    conn: Option<DbConnection>,
    /// `conn`'s commit count when the job got it.
    commits_at_attach: u64,
    /// The job committed on a connection it has since left (a reconnect).
    committed_before: bool,
    cancelled: bool,
    /// The job's own work is over; the pool is committing or rolling back.
    finishing: bool,
}

impl JobSlot {
    fn lock(&self) -> std::sync::MutexGuard<'_, JobState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The job got its connection; fails if it was cancelled meanwhile.
    fn attach(&self, conn: &DbConnection) -> Result<(), Failure> {
        let mut st = self.lock();
        if st.cancelled {
            return Err(Failure::new(deferred::CancelledError));
        }
        st.conn = Some(conn.clone());
        st.commits_at_attach = conn.commits_begun();
        Ok(())
    }

    /// True if the job has begun a commit of its own (a `run_with_connection`
    /// function calling `commit()`): its work is partly durable, so a cancel
    /// can no longer mean "nothing committed".
    fn has_committed(st: &JobState) -> bool {
        st.committed_before
            || st
                .conn
                .as_ref()
                .is_some_and(|c| c.commits_begun() > st.commits_at_attach)
    }

    /// The job is over: a cancel request arriving now does nothing.
    fn detach(&self) {
        if let Some(c) = self.lock().conn.take() {
            c.clear_interrupt();
        }
    }

    /// The job moved to a new connection (a reconnect in the middle of it): a
    /// cancel must reach that one. If the job was cancelled already, the new
    /// connection starts interrupted, so the job's next statement fails.
    pub(crate) fn reattach(&self, conn: &DbConnection) {
        let mut st = self.lock();
        st.committed_before = Self::has_committed(&st);
        if let Some(old) = st.conn.replace(conn.clone()) {
            old.clear_interrupt();
        }
        st.commits_at_attach = conn.commits_begun();
        if st.cancelled {
            // Already cancelled: the job's next statement on the new
            // connection fails too.
            conn.mark_interrupted();
        }
    }

    /// The job's own work is over: from now on a cancel only marks it (the
    /// pool's rollback and `good_sql` probe must not be interrupted, or a
    /// cancel would look like a lost connection). Returns whether the job was
    /// cancelled, in which case the pool rolls back instead of committing.
    fn begin_finish(&self) -> bool {
        let mut st = self.lock();
        st.finishing = true;
        if let Some(c) = &st.conn {
            c.clear_interrupt();
        }
        st.cancelled
    }

    /// Cancels the job, at once and without blocking (on the loop thread).
    ///
    /// Before the job begins to finish, the cancel takes: a job that has not
    /// got its connection stops before it starts, and a running job's next
    /// statement fails and it is rolled back, never committed. The returned
    /// connection, if any, is the one whose running statement should also be
    /// cancelled at the driver (which may block: see
    /// [`cancel_statement`](Self::cancel_statement)).
    ///
    /// Once the job has begun to finish (its commit may be under way) it is
    /// too late: the cancel is declined, so that "cancelled" always means
    /// "nothing committed", and the job's Deferred reports what happened.
    pub(crate) fn mark_cancelled(&self) -> CancelAction {
        let mut st = self.lock();
        if st.finishing {
            return CancelAction::TooLate;
        }
        let conn = st.conn.clone();
        if let Some(c) = &conn {
            // Interrupt first, then look for a commit of the job's own: a
            // commit that began before the interrupt is seen here, and one
            // that begins after it fails (see `DbConnection::commit`).
            c.mark_interrupted();
            if Self::has_committed(&st) {
                c.clear_interrupt();
                return CancelAction::TooLate;
            }
        } else if st.committed_before {
            return CancelAction::TooLate;
        }
        st.cancelled = true;
        CancelAction::Cancelled(conn)
    }

    /// Asks the driver to cancel the statement `conn` runs, if the job is
    /// still running on it (called off the loop thread).
    pub(crate) fn cancel_statement(&self, conn: &DbConnection) {
        let st = self.lock();
        let current = st
            .conn
            .as_ref()
            .is_some_and(|c| DbConnection::ptr_eq(c, conn));
        if current && !st.finishing {
            if let Err(e) = conn.cancel_statement() {
                tracing::error!(error = %e, "could not cancel the running statement");
            }
        }
    }
}

/// What [`JobSlot::mark_cancelled`] decided.
pub(crate) enum CancelAction {
    /// The job will not commit; the connection's running statement, if the
    /// job has one, should be cancelled at the driver too.
    Cancelled(Option<DbConnection>),
    /// The job had begun to finish: the cancel is declined.
    TooLate,
}

/// A job's connection wrapper that detaches the job's cancel slot when it is
/// dropped, on every path (early returns and panics included), so a late
/// cancel can never reach the next job on the same connection.
struct JobConn(Connection);

impl JobConn {
    fn new(mut conn: Connection, job: Option<Arc<JobSlot>>) -> Result<JobConn, Failure> {
        if let Some(job) = job {
            job.attach(conn.raw())?;
            conn.job = Some(job);
        }
        Ok(JobConn(conn))
    }
}

impl Drop for JobConn {
    fn drop(&mut self) {
        if let Some(job) = self.0.job.take() {
            job.detach();
        }
    }
}

/// The worker-side settings of a pool.
pub(crate) struct CoreConfig {
    pub(crate) dbapi_name: String,
    pub(crate) dbapi: Arc<dyn DbApiModule>,
    pub(crate) connect_args: ConnectArgs,
    pub(crate) noisy: bool,
    pub(crate) reconnect: bool,
    pub(crate) good_sql: Option<String>,
    pub(crate) openfun: Option<OpenFun>,
}

/// The thread-safe half of a [`ConnectionPool`](crate::ConnectionPool): what
/// worker threads, [`Connection`] and [`Transaction`] use. Obtained from
/// [`ConnectionPool::core`](crate::ConnectionPool::core).
pub struct PoolCore {
    id: u64,
    cfg: CoreConfig,
    connections: ConnectionMap,
    /// Bumped when the map is emptied by `final_close`, so thread-local
    /// records made before are ignored.
    epoch: AtomicU64,
    connection_factory: RwLock<Option<ConnectionFactory>>,
    transaction_factory: RwLock<Option<TransactionFactory>>,
    /// Set once a factory is replaced; until then the per-job path takes no
    /// lock (a read lock is a write to a cache line every worker shares).
    custom_factories: std::sync::atomic::AtomicBool,
}

impl PoolCore {
    pub(crate) fn new(cfg: CoreConfig) -> Arc<PoolCore> {
        static IDS: AtomicU64 = AtomicU64::new(1);
        Arc::new(PoolCore {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            cfg,
            connections: ConnectionMap::new(),
            epoch: AtomicU64::new(0),
            connection_factory: RwLock::new(None),
            transaction_factory: RwLock::new(None),
            custom_factories: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// A process-unique id.
    pub fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn epoch(&self) -> u64 {
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

    /// The job's connection wrapper. The pool is handed over: on the
    /// default path no reference count is touched (a count every worker and
    /// the loop share is a contended cache line).
    fn make_connection(self: Arc<Self>) -> Result<Connection, Failure> {
        if !self.custom_factories.load(Ordering::Acquire) {
            return Connection::from_arc(self);
        }
        let custom = self
            .connection_factory
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match custom {
            Some(f) => f(&self),
            None => Connection::from_arc(self),
        }
    }

    /// The pool running a job, kept beside its connection only when custom
    /// factories are set (they receive it, as Twisted's
    /// `self.transactionFactory(self, conn)` does; the connection they make
    /// may belong elsewhere). Otherwise the connection carries the pool.
    fn runner(self: &Arc<Self>) -> Option<Arc<Self>> {
        self.custom_factories
            .load(Ordering::Acquire)
            .then(|| Arc::clone(self))
    }

    /// The interaction's transaction: from the running pool's factory if it
    /// has custom ones, else in the connection's own pool.
    fn make_transaction<'c>(
        runner: Option<&Arc<Self>>,
        conn: &'c mut Connection,
    ) -> Result<Transaction<'c>, Failure> {
        let Some(pool) = runner else {
            return Transaction::for_connection(conn);
        };
        let custom = pool
            .transaction_factory
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match custom {
            Some(f) => f(pool, conn),
            None => Transaction::new(pool, conn),
        }
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
        })?;
        let conn = DbConnection::new(&self.cfg.dbapi_name, driver);
        if let Some(openfun) = &self.cfg.openfun {
            if let Err(f) = catch(|| openfun(&conn)) {
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
        if let Err(f) = catch(|| conn.close().map_err(Failure::new)) {
            tracing::error!(failure = %f, "Connection close failed");
        }
    }

    /// Closes and forgets the calling thread's connection, if it has one. A
    /// pool's workers call it as they exit, so each connection is closed by
    /// the thread that owns it.
    pub fn close_thread_connection(&self) {
        if let Some(conn) = self.connections.take_current(self.id) {
            if !conn.is_closed() {
                self.close_connection(&conn);
            }
        }
    }

    /// Thread exit: the thread's connection leaves the map (the caller
    /// closes it, without logging).
    pub(crate) fn forget(&self, conn: &DbConnection) {
        self.connections.remove_conn(conn);
    }

    /// Every (thread, raw connection) pair. Mirrors `pool.connections`.
    pub fn connections(&self) -> Vec<(ThreadId, DbConnection)> {
        self.connections.snapshot()
    }

    /// Closes every connection still in the map (those of threads that are
    /// gone, or of the calling thread) and empties it.
    pub(crate) fn close_all(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for (_, conn) in self.connections.drain() {
            if !conn.is_closed() {
                self.close_connection(&conn);
            }
        }
    }

    /// Runs `interaction` in a transaction on this thread's connection:
    /// commit on `Ok`, rollback on `Err` or panic. Blocks. Mirrors
    /// `_runInteraction`.
    pub fn run_interaction_blocking<T, F>(self: &Arc<Self>, interaction: F) -> Result<T, Failure>
    where
        F: FnOnce(&mut Transaction<'_>) -> Result<T, Failure>,
    {
        Arc::clone(self).run_interaction_in(interaction, None)
    }

    pub(crate) fn run_interaction_in<T, F>(
        self: Arc<Self>,
        interaction: F,
        job: Option<Arc<JobSlot>>,
    ) -> Result<T, Failure>
    where
        F: FnOnce(&mut Transaction<'_>) -> Result<T, Failure>,
    {
        // Outside the protected part, as in Twisted: a failure to get a
        // connection or a cursor is not followed by a rollback.
        let runner = self.runner();
        let mut conn = JobConn::new(catch(|| self.make_connection())?, job)?;
        let conn = &mut conn.0;
        let body = {
            let mut trans = catch(|| Self::make_transaction(runner.as_ref(), conn))?;
            catch(|| {
                let v = interaction(&mut trans)?;
                trans.close();
                Ok(v)
            })
        };
        Self::finish(runner.as_deref(), conn, body)
    }

    /// Runs `f` on this thread's connection: commit on `Ok`, rollback on
    /// `Err` or panic. Blocks. Mirrors `_runWithConnection`.
    pub fn run_with_connection_blocking<T, F>(self: &Arc<Self>, f: F) -> Result<T, Failure>
    where
        F: FnOnce(&mut Connection) -> Result<T, Failure>,
    {
        Arc::clone(self).run_with_connection_in(f, None)
    }

    pub(crate) fn run_with_connection_in<T, F>(
        self: Arc<Self>,
        f: F,
        job: Option<Arc<JobSlot>>,
    ) -> Result<T, Failure>
    where
        F: FnOnce(&mut Connection) -> Result<T, Failure>,
    {
        let runner = self.runner();
        let mut conn = JobConn::new(catch(|| self.make_connection())?, job)?;
        let conn = &mut conn.0;
        let body = catch(|| f(conn));
        Self::finish(runner.as_deref(), conn, body)
    }

    /// Commits after a successful body; otherwise rolls back and returns the
    /// original failure, or [`ConnectionLost`] around it if the rollback
    /// failed (the connection is then discarded, with or without
    /// `cp_reconnect`). A connection that saw a panic is discarded.
    fn finish<T>(
        runner: Option<&PoolCore>,
        conn: &mut Connection,
        body: Result<T, Failure>,
    ) -> Result<T, Failure> {
        // A cancelled job never commits: its Deferred already failed with
        // CancelledError, so whatever it did is rolled back.
        let cancelled = conn.job.as_ref().is_some_and(|j| j.begin_finish());
        let body = match body {
            Ok(_) if cancelled => Err(Failure::new(deferred::CancelledError)),
            other => other,
        };
        let result = body.and_then(|v| catch(|| conn.commit().map_err(Failure::new)).map(|()| v));
        let Err(err) = result else { return result };
        let err = match catch(|| conn.rollback()) {
            Ok(()) => err,
            Err(rb) => {
                tracing::error!(failure = %rb, "Rollback failed");
                // Its transaction may still be open (and aborted) on the
                // server, so every later job would fail: the connection is
                // discarded with or without cp_reconnect, and the next job
                // on this thread reconnects. (With cp_reconnect the
                // rollback has already done it; a custom factory's foreign
                // connection is not this pool's to forget.)
                let raw = conn.raw().clone();
                if !raw.is_closed() {
                    let _ = runner.unwrap_or(conn.pool()).disconnect(Some(&raw));
                }
                Failure::new(ConnectionLost::from_failure(&err))
            }
        };
        if err.is_panic() {
            // Its state is unknown after a panic: the next job gets a fresh
            // connection. Already gone if the rollback found it lost.
            let raw = conn.raw().clone();
            let _ = runner.unwrap_or(conn.pool()).disconnect(Some(&raw));
        }
        Err(err)
    }
}

impl fmt::Debug for PoolCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolCore")
            .field("id", &self.id)
            .field("dbapi_name", &self.cfg.dbapi_name)
            .field("noisy", &self.cfg.noisy)
            .field("reconnect", &self.cfg.reconnect)
            .field("good_sql", &self.cfg.good_sql)
            .field("connections", &self.connections.snapshot().len())
            .finish()
    }
}
