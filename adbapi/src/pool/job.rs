//! One job of a pool on a worker thread: getting the job its [`Connection`]
//! and [`Transaction`] (through the pool's factories), running the caller's
//! function with panics turned into Failures, committing or rolling back
//! (Twisted's `_runInteraction` and `_runWithConnection`), and the job's
//! cancel slot, which lets a cancelled Deferred interrupt the statement the
//! job is running and never another job's.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use deferred::Failure;
use reactor::Interrupt;

use super::connection::{Connection, ConnectionLost};
use super::shared::SharedPool;
use super::transaction::Transaction;
use crate::dbapi::{DbConnection, DbError};

/// Runs `f`, turning a panic into a [`Failure`].
pub(crate) fn catch<T>(f: impl FnOnce() -> Result<T, Failure>) -> Result<T, Failure> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| Err(Failure::from_panic(p)))
}

/// Ties a cancel request to one job, so it interrupts that job's statement
/// and never the next job's on the same connection.
#[derive(Default)]
pub(super) struct JobSlot {
    state: Mutex<JobState>,
}

#[derive(Default)]
struct JobState {
    conn: Option<DbConnection>,
    /// `conn`'s commit and statement counts when the job got it.
    commits_at_attach: u64,
    statements_at_attach: u64,
    /// The job committed on a connection it has since left (a reconnect).
    committed_before: bool,
    cancelled: bool,
    /// The job's own work is over; the pool is committing or rolling back.
    finishing: bool,
    /// A cancel was asked for, taken or not: a retried job begins no other
    /// attempt.
    stop: bool,
    /// The job's statement was sent as a transaction of its own (one round
    /// trip, committed by the server as it succeeds): see
    /// [`SharedPool::settle_alone`].
    alone: bool,
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
        st.statements_at_attach = conn.statements_begun();
        Ok(())
    }

    /// True if the job may have made some of its work durable itself: it
    /// began a commit of its own (a `run_with_connection` function calling
    /// `commit()`), or a statement on a connection in autocommit mode. A
    /// cancel can then no longer mean "nothing committed".
    fn has_committed(st: &JobState) -> bool {
        st.committed_before
            || st.conn.as_ref().is_some_and(|c| {
                c.commits_begun() > st.commits_at_attach
                    || (c.autocommit() && c.statements_begun() > st.statements_at_attach)
            })
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
    pub(super) fn reattach(&self, conn: &DbConnection) {
        let mut st = self.lock();
        st.committed_before = Self::has_committed(&st);
        if let Some(old) = st.conn.replace(conn.clone()) {
            old.clear_interrupt();
        }
        st.commits_at_attach = conn.commits_begun();
        st.statements_at_attach = conn.statements_begun();
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
    ///
    /// A job that has already made part of its work durable (its own
    /// `commit()`, or statements in autocommit mode) is stopped all the same
    /// (its running statement is cancelled and the next one fails), but the
    /// cancel is declined: the Deferred reports the job's real outcome
    /// (usually the interrupted statement's error), not `CancelledError`.
    fn mark_cancelled(&self) -> CancelAction {
        let mut st = self.lock();
        st.stop = true;
        if st.finishing {
            return CancelAction::TooLate;
        }
        let conn = st.conn.clone();
        if let Some(c) = &conn {
            // Interrupt first, then look for work made durable: a commit or
            // statement that began before the interrupt is seen here, and one
            // that begins after it fails (see `DbConnection::commit` and
            // `begin_statement`).
            c.mark_interrupted();
            if Self::has_committed(&st) {
                return CancelAction::StopButReport(c.clone());
            }
        } else if st.committed_before {
            return CancelAction::TooLate;
        }
        st.cancelled = true;
        CancelAction::Cancelled(conn)
    }

    /// The job's function has returned: from now on every cancel is
    /// declined ([`Interrupt::TooLate`]), so its Deferred reports the
    /// returned result. Returns whether a cancel took before that (the
    /// Deferred then failed with `CancelledError` and the result is
    /// dropped): with the result, the job's outcome as its Deferred shows it.
    pub(super) fn seal(&self) -> bool {
        let mut st = self.lock();
        st.finishing = true;
        st.cancelled
    }

    /// A retried job's attempt failed and was rolled back: until the next
    /// attempt gets its connection, a cancel takes (nothing is left to
    /// commit). False if the job was asked to stop.
    pub(super) fn between_attempts(&self) -> bool {
        let mut st = self.lock();
        st.finishing = false;
        !st.cancelled && !st.stop
    }

    /// Whether a cancel was asked for.
    pub(super) fn stopped(&self) -> bool {
        self.lock().stop
    }

    /// The job's statement was counted as a commit begun and sent as a
    /// transaction of its own ([`Transaction::execute_alone`]).
    pub(super) fn ran_alone(&self) {
        self.lock().alone = true;
    }

    /// Whether a cancel was asked for a job whose statement ran alone.
    fn stopped_alone(&self) -> bool {
        let st = self.lock();
        st.alone && st.stop
    }

    /// Asks the driver to cancel the statement `conn` runs, if the job is
    /// still running on it (called off the loop thread).
    fn cancel_statement(&self, conn: &DbConnection) {
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
enum CancelAction {
    /// The job will not commit; the connection's running statement, if the
    /// job has one, should be cancelled at the driver too.
    Cancelled(Option<DbConnection>),
    /// The job had begun to finish: the cancel is declined.
    TooLate,
    /// The job made part of its work durable already: its running statement
    /// is cancelled at the driver too, but the cancel is declined, so the
    /// Deferred reports what happened.
    StopButReport(DbConnection),
}

/// A job's connection wrapper that detaches the job's cancel slot when it is
/// dropped, on every path (early returns and panics included), so a late
/// cancel can never reach the next job on the same connection.
struct JobConn(Connection);

impl JobConn {
    fn new(mut conn: Connection, job: Arc<JobSlot>) -> Result<JobConn, Failure> {
        job.attach(conn.raw())?;
        conn.job = Some(job);
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

/// A job's cancel slot, and the hook that cancels it if it is already
/// running: the job is marked cancelled at once, on the loop thread (so it
/// cannot commit after its Deferred reported `CancelledError`), and the
/// driver's cancel request for the running statement is sent: inline when
/// the driver's cancel does not block (SQLite's interrupt), else from a
/// short-lived thread (PostgreSQL's cancel is a network round trip). A cancel
/// that arrives once the job has begun to commit is declined
/// ([`Interrupt::TooLate`]): the Deferred then reports the job's outcome.
pub(super) fn job_slot() -> (Arc<JobSlot>, impl FnOnce() -> Interrupt + 'static) {
    let job = Arc::new(JobSlot::default());
    let slot = Arc::clone(&job);
    let interrupt = move || {
        let (conn, outcome) = match slot.mark_cancelled() {
            CancelAction::TooLate => return Interrupt::TooLate,
            CancelAction::Cancelled(None) => return Interrupt::Cancelled,
            CancelAction::Cancelled(Some(conn)) => (conn, Interrupt::Cancelled),
            CancelAction::StopButReport(conn) => (conn, Interrupt::TooLate),
        };
        if !conn.cancel_blocks() {
            slot.cancel_statement(&conn);
            return outcome;
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
        outcome
    };
    (job, interrupt)
}

impl SharedPool {
    /// The job's connection wrapper: from the connection factory if one was
    /// set, else [`Connection::new`].
    fn make_connection(self: &Arc<Self>) -> Result<Connection, Failure> {
        match self.custom_connection_factory() {
            Some(f) => f(self),
            None => Connection::new(self),
        }
    }

    /// The interaction's transaction: from the transaction factory if one
    /// was set, else [`Transaction::new`]. It is given this pool, as
    /// Twisted's `self.transactionFactory(self, conn)` is (a custom
    /// connection factory's connection may belong elsewhere).
    fn make_transaction<'c>(
        self: &'c Arc<Self>,
        conn: &'c mut Connection,
    ) -> Result<Transaction<'c>, Failure> {
        match self.custom_transaction_factory() {
            Some(f) => f(self, conn),
            None => Transaction::new(self, conn),
        }
    }

    /// Runs `interaction` in a transaction on this thread's connection:
    /// commit on `Ok`, rollback on `Err`, panic or cancel. Blocks; called on
    /// a worker. Mirrors `_runInteraction`.
    pub(super) fn run_interaction_job<T, F>(
        self: &Arc<Self>,
        interaction: F,
        job: Arc<JobSlot>,
    ) -> Result<T, Failure>
    where
        F: FnOnce(&mut Transaction<'_>) -> Result<T, Failure>,
    {
        // Lifetime and health (off by default): before the job, never in it.
        self.before_job();
        // Outside the protected part, as in Twisted: a failure to get a
        // connection or a cursor is not followed by a rollback.
        let mut conn = JobConn::new(catch(|| self.make_connection())?, job)?;
        let conn = &mut conn.0;
        let body = {
            let mut trans = catch(|| self.make_transaction(conn))?;
            catch(|| {
                let v = interaction(&mut trans)?;
                trans.close();
                Ok(v)
            })
        };
        let lost = matches!(&body, Err(f) if f.check::<DbError>().is_some_and(DbError::is_connection_lost));
        let result = self.finish(conn, body);
        let result = self.settle_alone(conn, result, lost);
        self.after_job(conn.raw(), &result);
        result
    }

    /// Settles a job whose statement ran as a transaction of its own (see
    /// [`Transaction::execute_alone`]) and was asked to stop. The statement
    /// was its commit, so the cancel was declined and only the driver's
    /// cancel request went out (the Deferred waits for the outcome).
    ///
    /// If the statement's error proves that it committed nothing
    /// ([`DbError::proves_nothing_committed`]: the server refused it, or it
    /// was never sent), the job fails with `CancelledError`, the cancel it is
    /// (`TimeoutError` under `add_timeout`). Any other failure stays the
    /// job's own, since the statement may have committed: a lost connection
    /// (`lost`) as it is, and an error the driver raised after the server
    /// committed (a result that does not decode) as that error, not wrapped
    /// in the [`ConnectionLost`] of the rollback that followed it (the
    /// driver refuses to roll back where a cancel request was sent, and its
    /// transaction was over anyway), so no caller retries committed work. If
    /// the statement succeeded first, the Deferred fires with its result.
    /// Either way the connection is replaced: the cancel request may still
    /// reach it, and it must never interrupt the next job.
    fn settle_alone<T>(
        &self,
        conn: &Connection,
        result: Result<T, Failure>,
        lost: bool,
    ) -> Result<T, Failure> {
        if !conn.job.as_ref().is_some_and(|j| j.stopped_alone()) {
            return result;
        }
        let raw = conn.raw().clone();
        if !raw.is_closed() {
            let _ = self.disconnect(Some(&raw));
        }
        match result {
            Err(f) if !lost && !f.is_panic() => match f.check::<DbError>() {
                Some(e) if e.proves_nothing_committed() => {
                    Err(Failure::new(deferred::CancelledError))
                }
                Some(e) if f.downcast_ref::<ConnectionLost>().is_some() => {
                    Err(Failure::new(e.clone()))
                }
                _ => Err(f),
            },
            other => other,
        }
    }

    /// Runs `f` on this thread's connection: commit on `Ok`, rollback on
    /// `Err`, panic or cancel. Blocks; called on a worker. Mirrors
    /// `_runWithConnection`.
    pub(super) fn run_with_connection_job<T, F>(
        self: &Arc<Self>,
        f: F,
        job: Arc<JobSlot>,
    ) -> Result<T, Failure>
    where
        F: FnOnce(&mut Connection) -> Result<T, Failure>,
    {
        self.before_job();
        let mut conn = JobConn::new(catch(|| self.make_connection())?, job)?;
        let conn = &mut conn.0;
        let body = catch(|| f(conn));
        let result = self.finish(conn, body);
        self.after_job(conn.raw(), &result);
        result
    }

    /// Commits after a successful body; otherwise rolls back and returns the
    /// original failure, or [`ConnectionLost`] around it if the rollback
    /// failed (the connection is then discarded, with or without
    /// `cp_reconnect`). A connection that saw a panic is discarded.
    fn finish<T>(&self, conn: &mut Connection, body: Result<T, Failure>) -> Result<T, Failure> {
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
                // connection is not this pool's to forget: `disconnect`
                // leaves a connection that is not this thread's alone.)
                // Closed already (by cp_reconnect's rollback, which also
                // forgot it, or by the job itself, which did not): forgotten
                // here if it is still this thread's.
                let raw = conn.raw().clone();
                let _ = self.disconnect(Some(&raw));
                Failure::new(ConnectionLost::from_failure(&err))
            }
        };
        if err.is_panic() {
            // Its state is unknown after a panic: the next job gets a fresh
            // connection. Already gone if the rollback found it lost.
            let raw = conn.raw().clone();
            let _ = self.disconnect(Some(&raw));
        }
        Err(err)
    }
}
