//! Retrying an interaction that lost a race with another transaction: a
//! serialization failure or a deadlock, which the server resolves by
//! failing one of the transactions and which succeeds when run again
//! (Matrix Synapse's `runInteraction` retries these up to five times; JDBC
//! users write the same loop around `SQLTransactionRollbackException`).
//! Twisted's adbapi has no retry: an opt-in [`ConnectionPool`] method, with
//! `run_interaction` unchanged.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use deferred::{Deferred, Failure};

use super::job::JobSlot;
use super::shared::SharedPool;
use super::transaction::Transaction;
use super::ConnectionPool;
use crate::dbapi::DbError;

/// How [`ConnectionPool::run_interaction_with_retry`] retries: at most
/// `max_attempts` runs in all, with a pause before each retry that starts at
/// `initial_backoff` and doubles up to `max_backoff`. An extension (Synapse
/// retries five times, as the default here does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Runs in all, the first included (at least 1).
    pub max_attempts: u32,
    /// The pause before the first retry.
    pub initial_backoff: Duration,
    /// The longest pause.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// Five attempts, pauses of 10 ms, 20 ms, 40 ms, 80 ms.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_secs(1),
        }
    }
}

impl RetryPolicy {
    /// `max_attempts` runs at most (0 is taken as 1), default pauses.
    pub fn attempts(max_attempts: u32) -> Self {
        RetryPolicy {
            max_attempts: max_attempts.max(1),
            ..RetryPolicy::default()
        }
    }

    /// The same policy with other pauses.
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// The pause after failed attempt number `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(30);
        self.initial_backoff
            .saturating_mul(1 << doublings)
            .min(self.max_backoff)
    }
}

/// Why `failure` is worth retrying, if it is: a serialization failure or a
/// deadlock, which the server resolved by failing this transaction.
/// PostgreSQL `40001`/`40P01`, MySQL/MariaDB 1213 (deadlock) and 1205 (lock
/// wait timeout), and for `sqlite3` `SQLITE_BUSY` and its extended codes
/// (what is left of it after the writer gate: another process's lock, or
/// `SQLITE_BUSY_SNAPSHOT`). A lost connection, a cancel, a statement
/// timeout or a panic is not. `dbapi_name` is the pool's module (SQLite's
/// numeric codes would otherwise be confused with MySQL's).
pub fn retry_reason(dbapi_name: &str, failure: &Failure) -> Option<&'static str> {
    if failure.is_panic() || failure.check::<super::ConnectionLost>().is_some() {
        return None;
    }
    let e = failure.check::<DbError>()?;
    if e.is_connection_lost() {
        return None;
    }
    let code = e.code()?;
    match code {
        "40001" => Some("serialization failure (40001)"),
        "40P01" => Some("deadlock detected (40P01)"),
        "1213" => Some("deadlock (1213)"),
        "1205" => Some("lock wait timeout (1205)"),
        _ if dbapi_name == "sqlite3" => {
            const BUSY: i32 = 5;
            code.parse::<i32>()
                .is_ok_and(|c| c & 0xff == BUSY)
                .then_some("database is locked (SQLITE_BUSY)")
        }
        _ => None,
    }
}

/// Wakes the retry pauses of a pool when it closes or a job is cancelled,
/// so neither waits for a pause to run out.
#[derive(Debug, Default)]
pub(super) struct RetryWake {
    closing: AtomicBool,
    lock: Mutex<()>,
    cv: Condvar,
}

impl RetryWake {
    /// Wakes every pause, to look at its job and at the pool again.
    pub(super) fn wake_all(&self) {
        // Under the lock: a pause between its checks and its wait would
        // otherwise miss the wake-up.
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.cv.notify_all();
    }

    /// The pool is closing: no retry begins from now on.
    pub(super) fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.wake_all();
    }

    /// Sleeps `d`; false if the job was stopped or the pool began closing.
    fn pause(&self, job: &JobSlot, d: Duration) -> bool {
        let deadline = Instant::now().checked_add(d);
        let mut g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if self.closing.load(Ordering::SeqCst) || job.stopped() {
                return false;
            }
            let left = match deadline {
                Some(at) => at.saturating_duration_since(Instant::now()),
                None => Duration::MAX,
            };
            if left.is_zero() {
                return true;
            }
            g = self
                .cv
                .wait_timeout(g, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

impl ConnectionPool {
    /// [`run_interaction`](Self::run_interaction), retried when it fails
    /// with a serialization failure or a deadlock (see [`retry_reason`]):
    /// each failed attempt is rolled back, then after a pause
    /// ([`RetryPolicy::backoff`]) `interaction` runs again in a new
    /// transaction, up to `policy.max_attempts` runs. Other failures are
    /// not retried. The Deferred fires once, with the last attempt's
    /// outcome; a failure after retries says how many attempts were made
    /// (`gave up after N attempts`), and each retry is logged at warn level
    /// with its attempt number. Only the database work of a failed attempt
    /// is rolled back: anything else `interaction` does (state it mutates,
    /// messages it sends) happens again on every attempt.
    ///
    /// Cancelling the Deferred stops the attempts (the one running is
    /// cancelled as `run_interaction`'s is, and no other begins), and
    /// closing the pool lets the running attempt finish but begins no
    /// other. An extension; Twisted has no retry (Matrix Synapse wraps its
    /// `runInteraction` in the same loop).
    pub fn run_interaction_with_retry<T, F>(
        &self,
        policy: RetryPolicy,
        interaction: F,
    ) -> Deferred<T>
    where
        T: Send + 'static,
        F: FnMut(&mut Transaction<'_>) -> Result<T, Failure> + Send + 'static,
    {
        self.submit_with_retry(None, policy, interaction)
    }

    /// [`run_interaction_with_retry`](Self::run_interaction_with_retry) for
    /// a job named `name` (or none).
    pub(super) fn submit_with_retry<T, F>(
        &self,
        name: Option<Arc<str>>,
        policy: RetryPolicy,
        interaction: F,
    ) -> Deferred<T>
    where
        T: Send + 'static,
        F: FnMut(&mut Transaction<'_>) -> Result<T, Failure> + Send + 'static,
    {
        if let Some(d) = self.refuse_named(name.as_ref()) {
            return d;
        }
        // Through the observed path, so retried jobs are counted, timed
        // and queue-timed-out like any other.
        let mut interaction = interaction;
        self.submit_job(name, true, move |shared, job| {
            let r = run_with_retry(shared, policy, &mut interaction, &job);
            // Dropped once the last attempt has committed or rolled back: a
            // panic as what it holds is dropped cannot undo that, so it is
            // logged and the Deferred reports the job's outcome (a failure
            // would say that nothing committed).
            if let Err(f) = super::job::catch(move || {
                drop(interaction);
                Ok(())
            }) {
                tracing::error!(failure = %f, "a retried interaction panicked as it was dropped");
            }
            r
        })
    }
}

/// The attempts, on the worker.
fn run_with_retry<T, F>(
    shared: &Arc<SharedPool>,
    policy: RetryPolicy,
    interaction: &mut F,
    job: &Arc<JobSlot>,
) -> Result<T, Failure>
where
    F: FnMut(&mut Transaction<'_>) -> Result<T, Failure>,
{
    let max = policy.max_attempts.max(1);
    let mut attempt = 1;
    loop {
        let result = shared.run_interaction_job(&mut *interaction, Arc::clone(job));
        let failure = match result {
            Ok(v) => {
                if attempt > 1 {
                    tracing::info!(attempt, "interaction succeeded after retrying");
                }
                return Ok(v);
            }
            Err(f) => f,
        };
        let Some(why) = retry_reason(shared.dbapi().name(), &failure) else {
            return Err(failure);
        };
        if attempt >= max {
            tracing::warn!(attempts = attempt, why, "interaction failed; giving up");
            return Err(failure.context(format!("gave up after {attempt} attempts: {why}")));
        }
        let pause = policy.backoff(attempt);
        if !job.between_attempts() || !shared.retry_wake().pause(job, pause) {
            return Err(failure.context(format!(
                "stopped after {attempt} attempts (cancelled, or the pool is closing): {why}"
            )));
        }
        attempt += 1;
        tracing::warn!(attempt, max, why, ?pause, "retrying the interaction");
    }
}
