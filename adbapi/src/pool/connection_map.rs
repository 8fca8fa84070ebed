//! The per-thread connection map of a [`SharedPool`]: thread id → raw
//! connection (Twisted's `pool.connections`, keyed by
//! `threadable.getThreadID()`), plus a thread-local record on each thread
//! that owns a connection, so the thread finds its own without a lock and
//! the connection is closed on that thread when the thread exits.

use std::cell::RefCell;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Weak};
use std::thread::{self, ThreadId};

use super::connection::WrongConnectionForThread;
use super::shared::SharedPool;
use crate::dbapi::DbConnection;

/// The per-thread connection map: thread id → raw connection (Twisted's
/// `pool.connections`), plus a thread-local record on each thread that owns
/// one, which closes the connection on that thread when the thread exits.
pub(super) struct ConnectionMap {
    map: std::sync::Mutex<HashMap<ThreadId, DbConnection>>,
}

struct Owned {
    pool_id: u64,
    /// The pool's epoch when recorded; a record from before `final_close`
    /// emptied the map is stale.
    epoch: u64,
    pool: Weak<SharedPool>,
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
pub(super) fn close_thread_records(pool_id: u64) {
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
    pub(super) fn new() -> Self {
        ConnectionMap {
            map: std::sync::Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ThreadId, DbConnection>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This thread's connection for pool `pool_id`, from the thread-local
    /// record (no lock), else from the map.
    pub(super) fn current(&self, pool: &SharedPool) -> Option<DbConnection> {
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

    pub(super) fn insert(&self, pool: &Arc<SharedPool>, conn: &DbConnection) {
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
    pub(super) fn remove_current(
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
    pub(super) fn take_current(&self, pool_id: u64) -> Option<DbConnection> {
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
    pub(super) fn remove_conn(&self, conn: &DbConnection) -> bool {
        let mut map = self.lock();
        let key = map
            .iter()
            .find(|(_, c)| DbConnection::ptr_eq(c, conn))
            .map(|(k, _)| *k);
        key.and_then(|k| map.remove(&k)).is_some()
    }

    /// Every (thread, connection) pair.
    pub(super) fn snapshot(&self) -> Vec<(ThreadId, DbConnection)> {
        self.lock().iter().map(|(k, v)| (*k, v.clone())).collect()
    }

    /// Empties the map, returning what it held.
    pub(super) fn drain(&self) -> Vec<(ThreadId, DbConnection)> {
        self.lock().drain().collect()
    }
}
