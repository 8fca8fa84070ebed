//! `cp_queue_timeout`: a job that waited longer than that for a worker fails
//! with [`PoolTimeout`] and is never run (HikariCP's `connectionTimeout`,
//! sqlx's `acquire_timeout`, SQLAlchemy's `pool_timeout`; Twisted's adbapi
//! queues for ever).
//!
//! The deadline is a timer on the pool's reactor (so a `FakeReactor`'s clock
//! drives it), armed when the job is submitted. When it fires it tries to
//! move the job out of the queue (one compare-and-swap, see
//! [`JobTrack::time_out`]); if a worker took the job first, nothing happens
//! and the job runs to completion normally. If the timer won, the job's
//! Deferred is cancelled through the pool's ordinary cancel of a queued job
//! (the thread pool withdraws it; a worker that already popped it sees the
//! timeout and returns without running it), and the `CancelledError` is
//! replaced by the [`PoolTimeout`]. The caller's Deferred is a new one
//! chained to the job's, so it fires exactly once, and cancelling it cancels
//! the job as before.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use deferred::{CancelledError, Deferred, Failure};
use reactor::prelude::*;

use super::lifecycle::upgrade;
use super::observe::JobTrack;
use super::ConnectionPool;

/// A job waited longer than `cp_queue_timeout` for a worker; it was not run
/// and will not be. Not in Twisted; HikariCP's `SQLTransientConnectionException`
/// ("Connection is not available, request timed out after 30000ms (total=10,
/// active=10, idle=0, waiting=3)"). The message states the pool, its size and
/// load when the timer fired, and how long the job waited.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub struct PoolTimeout {
    /// The pool's name (`cp_name`, else `adbapi-<module>`).
    pub pool: String,
    /// The job's name, if it was run through [`ConnectionPool::named`].
    pub interaction: Option<String>,
    /// `cp_queue_timeout`.
    pub timeout: Duration,
    /// How long the job waited, by the reactor's clock.
    pub waited: Duration,
    /// `cp_min`.
    pub min: usize,
    /// `cp_max`.
    pub max: usize,
    /// Live worker threads when the timer fired.
    pub workers: usize,
    /// Workers running a job.
    pub busy: usize,
    /// Idle workers.
    pub idle: usize,
    /// Other jobs still waiting for a worker.
    pub queued: usize,
}

impl fmt::Display for PoolTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pool {:?}: ", self.pool)?;
        if let Some(i) = &self.interaction {
            write!(f, "interaction {i:?} ")?;
        } else {
            f.write_str("job ")?;
        }
        write!(
            f,
            "not run: no worker was free, request timed out after {}ms (cp_queue_timeout {}ms; \
             min={}, max={}, workers={}, busy={}, idle={}, queued={})",
            self.waited.as_millis(),
            self.timeout.as_millis(),
            self.min,
            self.max,
            self.workers,
            self.busy,
            self.idle,
            self.queued,
        )
    }
}

impl ConnectionPool {
    /// Returns the caller's Deferred for the job whose Deferred is `job`,
    /// failing with [`PoolTimeout`] if no worker took the job within
    /// `timeout` (see the module's doc).
    pub(super) fn arm_queue_timeout<T: 'static>(
        &self,
        job: Deferred<T>,
        track: Arc<JobTrack>,
        timeout: Duration,
    ) -> Deferred<T> {
        let reactor = &self.inner.reactor;
        let submitted_at = reactor.seconds();
        // The job's Deferred, kept to cancel it; taken by whichever of the
        // timer and the caller's cancel comes first.
        let handle: Rc<RefCell<Option<Deferred<()>>>> = Rc::new(RefCell::new(None));
        let error: Rc<RefCell<Option<PoolTimeout>>> = Rc::new(RefCell::new(None));

        let for_cancel = Rc::clone(&handle);
        let (outer, resolver) = Deferred::<T>::with_canceller(move |r| {
            let job = for_cancel.borrow_mut().take();
            if let Some(job) = job {
                job.cancel();
            }
            if !r.called() {
                // The job's cancel was declined (it is committing): so is
                // this one, and the Deferred reports the job's outcome.
                r.decline_cancel();
            }
        });

        let weak = Rc::downgrade(&self.inner);
        let (timer_handle, timer_error, timer_track) = (
            Rc::downgrade(&handle),
            Rc::clone(&error),
            Arc::clone(&track),
        );
        let timer = reactor.call_later(timeout, move || {
            let Some(pool) = upgrade(&weak) else { return };
            if !timer_track.time_out(pool.inner.shared.stats()) {
                return; // a worker took it first: it runs normally
            }
            let waited = pool.inner.reactor.seconds() - submitted_at;
            let waited = Duration::try_from_secs_f64(waited).unwrap_or(timeout);
            let st = pool.status();
            let e = PoolTimeout {
                pool: st.name,
                interaction: timer_track.name.as_deref().map(str::to_owned),
                timeout,
                waited,
                min: st.min,
                max: st.max,
                workers: st.workers,
                busy: st.busy,
                idle: st.idle,
                queued: st.queued,
            };
            *timer_error.borrow_mut() = Some(e);
            let job = timer_handle.upgrade().and_then(|h| h.borrow_mut().take());
            if let Some(job) = job {
                job.cancel();
            }
        });

        let chained = job.add_both(move |r: Result<T, Failure>| {
            // Fired: the timer has nothing left to do.
            if timer.active() {
                let _ = timer.cancel();
            }
            let r = match r {
                Err(f) if f.check::<CancelledError>().is_some() => {
                    match error.borrow_mut().take() {
                        Some(e) => Err(Failure::new(e)),
                        None => Err(f),
                    }
                }
                other => other,
            };
            let _ = resolver.resolve(r);
            Ok(())
        });
        *handle.borrow_mut() = Some(chained);
        outer
    }
}
