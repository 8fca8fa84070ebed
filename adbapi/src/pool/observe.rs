//! The observed job path: what a `run_*` call does around the job when any
//! of `cp_stats`, `cp_slow_job_threshold`, `cp_queue_timeout` or a job name
//! ([`ConnectionPool::named`]) asks for it. On the worker: the wait for a
//! worker and the run are timed into the pool's histograms, the job runs
//! inside a `tracing` span (`adbapi_job`, with the pool, the interaction,
//! `wait_ms` and `run_ms`), and a job slower than the threshold is logged at
//! WARN. On the loop thread: the job's outcome is counted as its Deferred
//! fires, and the queue timeout is armed ([`super::queue_timeout`]).
//!
//! With every one of those off, `run_*` takes Twisted's plain path
//! (`deferToThreadPool`) and none of this runs.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deferred::{CancelledError, Deferred, Failure};
use reactor::defer_to_thread_pool_with_interrupt;

use super::job::{job_slot, JobSlot};
use super::metrics::{self, Outcome};
use super::queue_timeout::PoolTimeout;
use super::status::PoolStats;
use super::{ConnectionPool, SharedPool};

/// The observation settings of a pool, fixed when it is made.
#[derive(Debug)]
pub(super) struct Observe {
    /// `cp_stats`: time jobs and count their outcomes.
    pub(super) stats: bool,
    /// The pool's name in spans, logs, metrics and errors: `cp_name`, else
    /// `adbapi-<module>` (the worker threads' name too).
    pub(super) label: Arc<str>,
    /// `cp_slow_job_threshold`.
    pub(super) slow: Option<Duration>,
    /// `cp_queue_timeout`.
    pub(super) queue_timeout: Option<Duration>,
}

impl Observe {
    /// True if a job without a name may take the plain path.
    pub(super) fn plain(&self) -> bool {
        !self.stats && self.slow.is_none() && self.queue_timeout.is_none()
    }
}

/// Where a job is between its submission and its worker. Exactly one
/// transition leaves `QUEUED` (a compare-and-swap), so the queued count
/// drops once and a job that timed out or was withdrawn never starts.
const QUEUED: u8 = 0;
const STARTED: u8 = 1;
/// The queue timeout fired first: the job never runs.
const TIMED_OUT: u8 = 2;
/// Withdrawn by a cancel, or dropped unrun by a stopped thread pool.
const GONE: u8 = 3;

/// One observed job, shared by the loop thread and its worker.
pub(super) struct JobTrack {
    state: AtomicU8,
    submitted: Instant,
    pub(super) name: Option<Arc<str>>,
    shared: Arc<SharedPool>,
}

impl JobTrack {
    fn leave_queue(&self, to: u8) -> bool {
        let left = self
            .state
            .compare_exchange(QUEUED, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if left {
            self.shared.stats().queued_left();
        }
        left
    }

    /// The queue timeout fired: true if it won the race against a worker
    /// (the job then never runs).
    pub(super) fn time_out(&self) -> bool {
        self.leave_queue(TIMED_OUT)
    }

    pub(super) fn timed_out(&self) -> bool {
        self.state.load(Ordering::Acquire) == TIMED_OUT
    }
}

/// Travels with the job into the thread pool: if the job is dropped unrun
/// (withdrawn, or its pool stopped), it leaves the queued count.
struct QueuedGuard(Arc<JobTrack>);

impl Drop for QueuedGuard {
    fn drop(&mut self) {
        self.0.leave_queue(GONE);
    }
}

impl ConnectionPool {
    /// Submits `work` (given the job's cancel slot) to a worker, observed as
    /// the pool's settings ask, and returns its Deferred.
    pub(super) fn submit<T, W>(&self, name: Option<Arc<str>>, work: W) -> Deferred<T>
    where
        T: Send + 'static,
        W: FnOnce(Arc<JobSlot>) -> Result<T, Failure> + Send + 'static,
    {
        let inner = &self.inner;
        let (job, interrupt) = job_slot();
        let observe = Arc::clone(&inner.observe);
        if name.is_none() && observe.plain() {
            return defer_to_thread_pool_with_interrupt(
                &*inner.reactor,
                &inner.threadpool,
                move || work(job),
                interrupt,
            );
        }
        let track = Arc::new(JobTrack {
            state: AtomicU8::new(QUEUED),
            submitted: Instant::now(),
            name,
            shared: Arc::clone(&inner.shared),
        });
        PoolStats::bump(&inner.shared.stats().queued);
        let guard = QueuedGuard(Arc::clone(&track));
        let obs = Arc::clone(&observe);
        let d = defer_to_thread_pool_with_interrupt(
            &*inner.reactor,
            &inner.threadpool,
            move || {
                let track = &guard.0;
                if !track.leave_queue(STARTED) {
                    // Timed out or withdrawn first: its Deferred has failed
                    // already and this result is dropped; the job never runs.
                    return Err(Failure::new(CancelledError));
                }
                run_observed(&obs, track, move || work(job))
            },
            interrupt,
        );
        let d = match observe.queue_timeout {
            Some(timeout) => self.arm_queue_timeout(d, Arc::clone(&track), timeout),
            None => d,
        };
        let d = d.add_both(move |r: Result<T, Failure>| {
            let outcome = match &r {
                Ok(_) => Outcome::Completed,
                Err(f) if f.check::<PoolTimeout>().is_some() && track.timed_out() => {
                    Outcome::TimedOut
                }
                Err(f) if f.check::<CancelledError>().is_some() => {
                    // Withdrawn before a worker took it.
                    track.leave_queue(GONE);
                    Outcome::Cancelled
                }
                Err(_) => Outcome::Failed,
            };
            if observe.stats {
                let s = track.shared.stats();
                PoolStats::bump(match outcome {
                    Outcome::Completed => &s.jobs_completed,
                    Outcome::Failed => &s.jobs_failed,
                    Outcome::Cancelled => &s.jobs_cancelled,
                    Outcome::TimedOut => &s.jobs_timed_out,
                });
                metrics::job_outcome(&observe.label, track.name.as_ref(), outcome);
            }
            match (r, &track.name) {
                // The caller learns which interaction failed (Synapse puts the
                // transaction's name in its errors).
                (Err(f), Some(name)) => Err(f.context(format!(
                    "in interaction {name:?} of pool {:?}",
                    observe.label
                ))),
                (r, _) => r,
            }
        });
        d
    }
}

/// Runs one started job on its worker inside its span, timing it.
fn run_observed<T>(
    obs: &Observe,
    track: &JobTrack,
    work: impl FnOnce() -> Result<T, Failure>,
) -> Result<T, Failure> {
    let started = Instant::now();
    let wait = started.saturating_duration_since(track.submitted);
    let interaction = track.name.as_deref().unwrap_or("");
    let span = tracing::debug_span!(
        "adbapi_job",
        pool = &*obs.label,
        interaction,
        wait_ms = wait.as_secs_f64() * 1e3,
        run_ms = tracing::field::Empty,
    );
    let r = span.in_scope(work);
    let run = started.elapsed();
    span.record("run_ms", run.as_secs_f64() * 1e3);
    if obs.stats {
        let s = track.shared.stats();
        s.wait.record(wait);
        s.run.record(run);
        metrics::job_timed(&obs.label, track.name.as_ref(), wait, run);
    }
    if let Some(threshold) = obs.slow {
        if wait + run >= threshold {
            tracing::warn!(
                pool = &*obs.label,
                interaction,
                wait_ms = wait.as_secs_f64() * 1e3,
                run_ms = run.as_secs_f64() * 1e3,
                threshold_ms = threshold.as_secs_f64() * 1e3,
                ok = r.is_ok(),
                "slow database job: {} waited {:.1} ms for a worker and ran {:.1} ms",
                if interaction.is_empty() {
                    "(unnamed)"
                } else {
                    interaction
                },
                wait.as_secs_f64() * 1e3,
                run.as_secs_f64() * 1e3,
            );
        }
    }
    r
}
