//! [`Connection`]: Twisted's wrapper around one worker's raw connection,
//! handed to `run_with_connection` functions; and the two errors of that
//! layer, [`ConnectionLost`] and [`WrongConnectionForThread`].

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use deferred::Failure;

use super::job::{catch, JobSlot};
use super::shared::SharedPool;
use crate::dbapi::{Cursor, DbConnection, DbResult};

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
    pool: Arc<SharedPool>,
    connection: Option<DbConnection>,
    /// The cancel slot of the job this wrapper serves, if any.
    pub(super) job: Option<Arc<JobSlot>>,
}

impl Connection {
    /// Wraps this thread's connection, creating it if needed. Mirrors
    /// `Connection(pool)`.
    pub fn new(pool: &Arc<SharedPool>) -> Result<Connection, Failure> {
        let mut c = Connection {
            pool: Arc::clone(pool),
            connection: None,
            job: None,
        };
        c.reconnect()?;
        Ok(c)
    }

    /// Wraps a given raw connection instead of this thread's (for custom
    /// connection factories).
    pub fn with_raw(pool: &Arc<SharedPool>, raw: DbConnection) -> Connection {
        Connection {
            pool: Arc::clone(pool),
            connection: Some(raw),
            job: None,
        }
    }

    /// The pool it belongs to. Mirrors `_pool`.
    pub fn pool(&self) -> &Arc<SharedPool> {
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
