//! [`Connection`] (Twisted's wrapper around one raw connection),
//! [`ConnectionLost`], and the per-thread connection map of [`PoolCore`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Weak};
use std::thread::{self, ThreadId};

use deferred::Failure;

use crate::dbapi::{Cursor, DbConnection, DbResult};
use crate::pool_core::PoolCore;

/// A database connection was lost; the client may retry. Mirrors
/// `twisted.enterprise.adbapi.ConnectionLost`.
///
/// Beyond Twisted (which logs it and hands the caller the driver's error,
/// twisted/twisted#4404), a `run_*` Deferred whose job lost its connection
/// fails with this error, so `failure.check::<ConnectionLost>()` tells the
/// caller to retry; the driver's error is its `source()`, so
/// `failure.check::<OperationalError>()` still finds it.
#[derive(Debug, Clone)]
pub struct ConnectionLost {
    /// The error that revealed the loss.
    pub original: Option<Arc<dyn StdError + Send + Sync + 'static>>,
}

impl ConnectionLost {
    /// A `ConnectionLost` caused by `failure`'s error.
    pub fn from_failure(failure: &Failure) -> Self {
        ConnectionLost {
            original: Some(failure.error_arc()),
        }
    }
}

impl fmt::Display for ConnectionLost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("database connection lost")?;
        if let Some(o) = &self.original {
            write!(f, ": {o}")?;
        }
        Ok(())
    }
}

impl StdError for ConnectionLost {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.original
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// `disconnect` was given a connection that is not the calling thread's.
/// Twisted raises a bare `Exception("wrong connection for thread")`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("wrong connection for thread")]
pub struct WrongConnectionForThread;

/// Runs `f`, turning a panic into a [`Failure`].
pub(crate) fn catch<T>(f: impl FnOnce() -> Result<T, Failure>) -> Result<T, Failure> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| Err(Failure::from_panic(p)))
}

/// The per-thread connection map: thread id → raw connection (Twisted's
/// `pool.connections`), plus a thread-local record on each thread that owns
/// one, which closes the connection on that thread when the thread exits.
pub(crate) struct ConnectionMap {
    map: std::sync::Mutex<HashMap<ThreadId, DbConnection>>,
}

struct Owned {
    pool_id: u64,
    /// The pool's epoch when recorded; a record from before `final_close`
    /// emptied the map is stale.
    epoch: u64,
    pool: Weak<PoolCore>,
    /// Always `Some` until dropped.
    conn: Option<DbConnection>,
    /// False once the pool itself took the connection back (disconnect): then
    /// dropping the record must not close it again.
    armed: bool,
}

impl Owned {
    /// Drops the record without closing its connection.
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Owned {
    fn conn(&self) -> &DbConnection {
        self.conn.as_ref().expect("present until dropped")
    }
}

impl Drop for Owned {
    /// The last resort, for threads that are not pool workers (a worker's exit
    /// hook closes its connection first, see `close_thread_records`). This may
    /// run during thread-local teardown, where anything that needs a
    /// thread-local of its own can panic (the postgres crate's runtime, a
    /// tracing subscriber's buffers), and a panic escaping a thread-local
    /// destructor aborts the process. So nothing here logs, the close is
    /// guarded, and a connection that could not be closed is leaked rather
    /// than dropped half-way.
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if !self.armed || conn.is_closed() {
            return;
        }
        let pool = self.pool.upgrade();
        let c = conn.clone();
        let closed = catch_unwind(AssertUnwindSafe(move || {
            if let Some(pool) = pool {
                pool.forget(&c);
            }
            c.close().is_ok()
        }));
        if closed.is_err() {
            std::mem::forget(conn);
        }
    }
}

/// Closes the calling thread's connections of pool `pool_id` whose pool is
/// already gone (a worker's exit hook, when the pool was dropped unclosed).
pub(crate) fn close_thread_records(pool_id: u64) {
    let records: Vec<Owned> = OWNED
        .try_with(|o| {
            o.borrow_mut()
                .extract_if(.., |e| e.pool_id == pool_id)
                .collect()
        })
        .unwrap_or_default();
    for mut r in records {
        r.armed = false;
        if let Some(c) = r.conn.take() {
            let _ = c.close();
        }
    }
}

thread_local! {
    static OWNED: RefCell<Vec<Owned>> = const { RefCell::new(Vec::new()) };
}

impl ConnectionMap {
    pub(crate) fn new() -> Self {
        ConnectionMap {
            map: std::sync::Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ThreadId, DbConnection>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This thread's connection for pool `pool_id`, from the thread-local
    /// record (no lock), else from the map.
    pub(crate) fn current(&self, pool: &PoolCore) -> Option<DbConnection> {
        let (id, epoch) = (pool.id(), pool.epoch());
        let local = OWNED
            .try_with(|o| {
                o.borrow()
                    .iter()
                    .find(|e| e.pool_id == id && e.epoch == epoch)
                    .map(|e| e.conn().clone())
            })
            .ok()
            .flatten();
        local.or_else(|| self.lock().get(&thread::current().id()).cloned())
    }

    pub(crate) fn insert(&self, pool: &Arc<PoolCore>, conn: &DbConnection) {
        self.lock().insert(thread::current().id(), conn.clone());
        let old = OWNED
            .try_with(|o| {
                let mut o = o.borrow_mut();
                let old: Vec<Owned> = o.extract_if(.., |e| e.pool_id == pool.id()).collect();
                o.push(Owned {
                    pool_id: pool.id(),
                    epoch: pool.epoch(),
                    pool: Arc::downgrade(pool),
                    conn: Some(conn.clone()),
                    armed: true,
                });
                old
            })
            .unwrap_or_default();
        drop(old);
    }

    /// Removes this thread's entry if it is `conn`.
    pub(crate) fn remove_current(
        &self,
        pool_id: u64,
        conn: Option<&DbConnection>,
    ) -> Result<Option<DbConnection>, WrongConnectionForThread> {
        let tid = thread::current().id();
        let mut map = self.lock();
        let removed = match (conn, map.get(&tid)) {
            (None, None) => return Ok(None),
            (Some(c), Some(m)) if DbConnection::ptr_eq(c, m) => map.remove(&tid),
            _ => return Err(WrongConnectionForThread),
        };
        drop(map);
        let gone: Vec<Owned> = OWNED
            .try_with(|o| {
                o.borrow_mut()
                    .extract_if(.., |e| e.pool_id == pool_id)
                    .collect()
            })
            .unwrap_or_default();
        // The caller closes it (with the noisy log); the records must not.
        gone.into_iter().for_each(Owned::disarm);
        Ok(removed)
    }

    /// Takes this thread's connection for pool `pool_id` out of the map and
    /// the thread-local record, for the caller to close.
    pub(crate) fn take_current(&self, pool_id: u64) -> Option<DbConnection> {
        let records: Vec<Owned> = OWNED
            .try_with(|o| {
                o.borrow_mut()
                    .extract_if(.., |e| e.pool_id == pool_id)
                    .collect()
            })
            .unwrap_or_default();
        records.into_iter().for_each(Owned::disarm);
        self.lock().remove(&thread::current().id())
    }

    /// Removes `conn` wherever it is in the map (used by thread-exit cleanup).
    pub(crate) fn remove_conn(&self, conn: &DbConnection) -> bool {
        let mut map = self.lock();
        let key = map
            .iter()
            .find(|(_, c)| DbConnection::ptr_eq(c, conn))
            .map(|(k, _)| *k);
        key.and_then(|k| map.remove(&k)).is_some()
    }

    /// Every (thread, connection) pair.
    pub(crate) fn snapshot(&self) -> Vec<(ThreadId, DbConnection)> {
        self.lock().iter().map(|(k, v)| (*k, v.clone())).collect()
    }

    /// Empties the map, returning what it held.
    pub(crate) fn drain(&self) -> Vec<(ThreadId, DbConnection)> {
        self.lock().drain().collect()
    }
}

/// Twisted's `Connection`: the pool's wrapper around this thread's raw
/// connection, handed to `run_with_connection` functions.
///
/// - [`close`](Self::close) does nothing (a pooled connection belongs to its
///   worker thread);
/// - [`rollback`](Self::rollback) with `cp_reconnect` also probes the
///   connection with `cp_good_sql` and, if anything fails, drops the
///   connection and fails with [`ConnectionLost`];
/// - [`reconnect`](Self::reconnect) replaces the raw connection;
/// - everything else goes to the raw connection ([`cursor`](Self::cursor),
///   [`commit`](Self::commit), [`raw`](Self::raw)).
pub struct Connection {
    pool: Arc<PoolCore>,
    connection: Option<DbConnection>,
    /// The cancel slot of the job this wrapper serves, if any.
    pub(crate) job: Option<Arc<crate::pool_core::JobSlot>>,
}

impl Connection {
    /// Wraps this thread's connection, creating it if needed. Mirrors
    /// `Connection(pool)`.
    pub fn new(pool: &Arc<PoolCore>) -> Result<Connection, Failure> {
        Self::from_arc(Arc::clone(pool))
    }

    /// [`new`](Self::new) with the pool handed over (no reference count
    /// touched).
    pub(crate) fn from_arc(pool: Arc<PoolCore>) -> Result<Connection, Failure> {
        let mut c = Connection {
            pool,
            connection: None,
            job: None,
        };
        c.reconnect()?;
        Ok(c)
    }

    /// Wraps a given raw connection instead of this thread's (for custom
    /// connection factories).
    pub fn with_raw(pool: &Arc<PoolCore>, raw: DbConnection) -> Connection {
        Connection {
            pool: Arc::clone(pool),
            connection: Some(raw),
            job: None,
        }
    }

    /// The pool it belongs to. Mirrors `_pool`.
    pub fn pool(&self) -> &Arc<PoolCore> {
        &self.pool
    }

    /// The raw connection. Mirrors `_connection`.
    pub fn raw(&self) -> &DbConnection {
        self.connection
            .as_ref()
            .expect("a Connection always holds a raw connection after construction")
    }

    /// Does nothing: closing a pooled connection would leave its worker with
    /// a dead connection. Mirrors `Connection.close()`.
    pub fn close(&mut self) {}

    /// Opens a cursor on the raw connection.
    pub fn cursor(&self) -> DbResult<Cursor> {
        self.raw().cursor()
    }

    /// Commits on the raw connection.
    pub fn commit(&self) -> DbResult<()> {
        self.raw().commit()
    }

    /// Rolls back. With `cp_reconnect`, then checks the connection with
    /// `cp_good_sql` and commits; if any step fails, logs `Rollback failed`,
    /// disconnects (closing the raw connection), logs `Connection lost.` if
    /// noisy, and fails with [`ConnectionLost`]. Mirrors
    /// `Connection.rollback()`. With `cp_good_sql` set to `None` the probe
    /// query is skipped (Twisted would execute `None` and fail).
    pub fn rollback(&mut self) -> Result<(), Failure> {
        let conn = self.raw().clone();
        if !self.pool.reconnect() {
            return catch(|| conn.rollback().map_err(Failure::new));
        }
        let good_sql = self.pool.good_sql().map(str::to_owned);
        let probe = catch(|| {
            conn.rollback()?;
            if let Some(sql) = &good_sql {
                let mut cur = conn.cursor()?;
                cur.execute(sql, ())?;
                cur.close();
            }
            conn.commit()?;
            Ok(())
        });
        let Err(failure) = probe else { return Ok(()) };
        tracing::error!(failure = %failure, "Rollback failed");
        self.pool.disconnect(Some(&conn))?;
        if self.pool.noisy() {
            tracing::info!("Connection lost.");
        }
        Err(Failure::new(ConnectionLost::from_failure(&failure)))
    }

    /// Drops the current raw connection (if any) and connects a new one for
    /// this thread. Mirrors `Connection.reconnect()`.
    pub fn reconnect(&mut self) -> Result<(), Failure> {
        // As Twisted: the old (now closed) connection stays in the wrapper if
        // connecting again fails, so later calls fail with a database error.
        if let Some(old) = &self.connection {
            self.pool.disconnect(Some(old))?;
        }
        let conn = self.pool.connect()?;
        if let Some(job) = &self.job {
            // A cancel of the running job must reach the new connection.
            job.reattach(&conn);
        }
        self.connection = Some(conn);
        Ok(())
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("pool", &self.pool.dbapi_name())
            .field("connection", &self.connection)
            .finish()
    }
}
