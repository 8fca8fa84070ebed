//! [`Transaction`]: Twisted's wrapper around one cursor, handed to
//! `run_interaction` functions.

use std::fmt;

use deferred::Failure;

use super::connection::Connection;
use super::job::catch;
use super::shared::SharedPool;
use crate::dbapi::{Column, Cursor, DbError, DbResult, ErrorKind, Params, Row};

/// Twisted's `Transaction`: a cursor on the pool's connection for this
/// thread, with the cursor methods relayed (`execute`, `fetchall`, ...).
///
/// Everything an interaction does runs in one database transaction: the pool
/// commits after the interaction returns `Ok`, and rolls back if it returns
/// `Err` or panics.
///
/// Difference from Twisted: [`close`](Self::close) may be called more than
/// once (Twisted's second `close()` raises `AttributeError`, which made an
/// interaction that closed its own transaction fail and roll back).
pub struct Transaction<'c> {
    /// The pool it was made in (for `cp_reconnect` and `cp_noisy`); borrowed,
    /// as the connection is, for as long as the transaction lives.
    pool: &'c SharedPool,
    connection: &'c mut Connection,
    cursor: Option<Cursor>,
}

fn no_cursor() -> DbError {
    DbError::new(
        ErrorKind::InterfaceError,
        "this Transaction has no cursor (it was closed); call reopen() first",
    )
}

impl<'c> Transaction<'c> {
    /// Opens a cursor on `connection`, reconnecting once if that fails and
    /// the pool has `cp_reconnect`. Mirrors `Transaction(pool, connection)`.
    pub fn new(pool: &'c SharedPool, connection: &'c mut Connection) -> Result<Self, Failure> {
        let mut t = Self::without_cursor(pool, connection);
        t.reopen()?;
        Ok(t)
    }

    /// A transaction that has not opened a cursor (for custom transaction
    /// factories and tests; Twisted's tests use a `DummyTransaction`).
    pub fn without_cursor(pool: &'c SharedPool, connection: &'c mut Connection) -> Self {
        Transaction {
            pool,
            connection,
            cursor: None,
        }
    }

    /// Closes the cursor, if one is open. Mirrors `Transaction.close()`
    /// (idempotent here).
    pub fn close(&mut self) {
        if let Some(mut c) = self.cursor.take() {
            c.close();
        }
    }

    /// Closes the cursor and opens a new one; if opening fails and the pool
    /// has `cp_reconnect`, logs `Cursor creation failed` (and, if noisy,
    /// `Connection lost, reconnecting`), reconnects and tries once more.
    /// Mirrors `Transaction.reopen()`.
    pub fn reopen(&mut self) -> Result<(), Failure> {
        self.close();
        let first = {
            let conn = &*self.connection;
            catch(|| conn.cursor().map_err(Failure::new))
        };
        match first {
            Ok(c) => {
                self.cursor = Some(c);
                return Ok(());
            }
            Err(f) if !self.pool.reconnect() => return Err(f),
            Err(f) => tracing::error!(failure = %f, "Cursor creation failed"),
        }
        if self.pool.noisy() {
            tracing::info!("Connection lost, reconnecting");
        }
        self.reconnect()?;
        let conn = &*self.connection;
        self.cursor = Some(catch(|| conn.cursor().map_err(Failure::new))?);
        Ok(())
    }

    /// Replaces the connection with a new one and forgets the cursor.
    /// Mirrors `Transaction.reconnect()`.
    pub fn reconnect(&mut self) -> Result<(), Failure> {
        self.connection.reconnect()?;
        self.cursor = None;
        Ok(())
    }

    /// The connection wrapper. Mirrors `_connection`.
    pub fn connection(&mut self) -> &mut Connection {
        self.connection
    }

    /// The current cursor. Mirrors `_cursor`.
    pub fn cursor(&mut self) -> DbResult<&mut Cursor> {
        self.cursor.as_mut().ok_or_else(no_cursor)
    }

    /// `cursor.execute(sql, params)`; returns the transaction for chaining
    /// (`txn.execute(...)?.fetchall()`).
    pub fn execute(&mut self, sql: &str, params: impl Into<Params>) -> DbResult<&mut Self> {
        self.cursor()?.execute(sql, params)?;
        Ok(self)
    }

    /// Executes `sql` as the whole of this transaction, for `run_query` and
    /// `run_operation`: a driver may then run it as the server's implicit
    /// single-statement transaction, in one round trip (see
    /// [`DriverConnection::execute_alone`](crate::dbapi::DriverConnection::execute_alone)).
    /// With a custom connection or transaction factory it is a plain
    /// [`execute`](Self::execute): what those add around the statement is
    /// not known.
    pub(crate) fn execute_alone(&mut self, sql: &str, params: Params) -> DbResult<&mut Self> {
        if self.pool.custom_transaction_factory().is_some()
            || self.pool.custom_connection_factory().is_some()
        {
            return self.execute(sql, params);
        }
        let raw = self.connection.raw().clone();
        let commits = raw.commits_begun();
        let r = self.cursor()?.execute_alone(sql, params).map(|_| ());
        if raw.commits_begun() != commits {
            if let Some(job) = &self.connection.job {
                job.ran_alone();
            }
        }
        r?;
        Ok(self)
    }

    /// `cursor.executemany(sql, seq)`.
    pub fn executemany<P: Into<Params>>(
        &mut self,
        sql: &str,
        seq: impl IntoIterator<Item = P>,
    ) -> DbResult<&mut Self> {
        self.cursor()?.executemany(sql, seq)?;
        Ok(self)
    }

    /// `cursor.fetchone()`.
    pub fn fetchone(&mut self) -> DbResult<Option<Row>> {
        self.cursor()?.fetchone()
    }

    /// `cursor.fetchmany(size)`.
    pub fn fetchmany(&mut self, size: Option<usize>) -> DbResult<Vec<Row>> {
        self.cursor()?.fetchmany(size)
    }

    /// `cursor.fetchall()`.
    pub fn fetchall(&mut self) -> DbResult<Vec<Row>> {
        self.cursor()?.fetchall()
    }

    /// `cursor.rowcount`.
    pub fn rowcount(&mut self) -> DbResult<i64> {
        Ok(self.cursor()?.rowcount())
    }

    /// `cursor.lastrowid`.
    pub fn lastrowid(&mut self) -> DbResult<Option<i64>> {
        Ok(self.cursor()?.lastrowid())
    }

    /// `cursor.description`.
    pub fn description(&mut self) -> DbResult<Option<Vec<Column>>> {
        Ok(self.cursor()?.description().map(<[Column]>::to_vec))
    }
}

impl fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction")
            .field("connection", &self.connection)
            .field("cursor", &self.cursor)
            .finish()
    }
}
