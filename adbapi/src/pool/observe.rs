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
//! (`deferToThreadPool`) and none of this runs; an unnamed job of a pool
//! that only counts (`cp_stats`, the default) takes the cheaper path of
//! [`super::counted`].

use std::rc::Rc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

// Jobs are timed with a calibrated TSC read (a third of std's cost here).
use quanta::Instant;

use deferred::{CancelledError, Deferred, Failure};
use reactor::defer_to_thread_pool_with_interrupt;

use super::job::{job_slot, JobSlot};
use super::metrics::{self, Outcome};
use super::queue_timeout::PoolTimeout;
use super::status::PoolStats;
use super::{ConnectionPool, SharedPool};

/// The observation settings of a pool, fixed when it is made; kept in its
/// [`PoolStats`].
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
    /// Nothing observed (a placeholder while a config is taken apart).
    pub(super) fn off() -> Observe {
        Observe {
            stats: false,
            label: Arc::from(""),
            slow: None,
            queue_timeout: None,
        }
    }

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

/// One observed job, shared by the loop thread and its worker. It holds no
/// reference to the pool: both sides reach the pool's [`PoolStats`] through
/// what they already hold.
pub(super) struct JobTrack {
    state: AtomicU8,
    submitted: Instant,
    pub(super) name: Option<Arc<str>>,
}

impl JobTrack {
    /// Moves the job out of `QUEUED` to `to`; true if this call did it.
    fn leave_queue(&self, to: u8) -> bool {
        self.state
            .compare_exchange(QUEUED, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// On the loop thread: the queue timeout fired. True if it won the race
    /// against a worker (the job then never runs).
    pub(super) fn time_out(&self, stats: &PoolStats) -> bool {
        let won = self.leave_queue(TIMED_OUT);
        if won {
            PoolStats::bump(&stats.on_loop.withdrawn);
        }
        won
    }

    pub(super) fn timed_out(&self) -> bool {
        self.state.load(Ordering::Acquire) == TIMED_OUT
    }
}

/// Travels with the job into the thread pool: if the job is dropped unrun
/// (withdrawn, or its pool stopped), it leaves the queued count.
struct QueuedGuard(Arc<JobTrack>, Arc<SharedPool>);

impl Drop for QueuedGuard {
    fn drop(&mut self) {
        if self.0.leave_queue(GONE) {
            PoolStats::bump(&self.1.stats().shard().left);
        }
    }
}

impl ConnectionPool {
    /// Submits `work` (given the pool's shared state and the job's cancel
    /// slot) to a worker, observed as the pool's settings ask, and returns
    /// its Deferred.
    pub(super) fn submit<T, W>(&self, name: Option<Arc<str>>, work: W) -> Deferred<T>
    where
        T: Send + 'static,
        W: FnOnce(&Arc<SharedPool>, Arc<JobSlot>) -> Result<T, Failure> + Send + 'static,
    {
        self.submit_job(name, false, work)
    }

    /// [`submit`](Self::submit); with `wakes_retries`, interrupting the job
    /// (cancel, close) also wakes the pool's retry pauses, so a job that
    /// sleeps between attempts stops at once.
    pub(super) fn submit_job<T, W>(
        &self,
        name: Option<Arc<str>>,
        wakes_retries: bool,
        work: W,
    ) -> Deferred<T>
    where
        T: Send + 'static,
        W: FnOnce(&Arc<SharedPool>, Arc<JobSlot>) -> Result<T, Failure> + Send + 'static,
    {
        let inner = &self.inner;
        let (job, interrupt) = job_slot();
        let waker = wakes_retries.then(|| Arc::clone(&inner.shared));
        let interrupt = move || {
            let outcome = interrupt();
            if let Some(shared) = &waker {
                shared.retry_wake().wake_all();
            }
            outcome
        };
        // The one reference to the shared state a job held before; the
        // observed path reaches its counters through it too.
        let shared = Arc::clone(&inner.shared);
        let observe = &inner.shared.stats().observe;
        if name.is_none() && observe.plain() {
            return defer_to_thread_pool_with_interrupt(
                &*inner.reactor,
                &inner.threadpool,
                move || work(&shared, job),
                interrupt,
            );
        }
        if name.is_none() && observe.slow.is_none() && observe.queue_timeout.is_none() {
            return self.submit_counted(job, interrupt, shared, work);
        }
        let track = Arc::new(JobTrack {
            state: AtomicU8::new(QUEUED),
            submitted: Instant::now(),
            name,
        });
        PoolStats::bump(&inner.shared.stats().on_loop.submitted);
        let guard = QueuedGuard(Arc::clone(&track), shared);
        let d = defer_to_thread_pool_with_interrupt(
            &*inner.reactor,
            &inner.threadpool,
            move || {
                let QueuedGuard(track, shared) = &guard;
                if !track.leave_queue(STARTED) {
                    // Timed out or withdrawn first: its Deferred has failed
                    // already and this result is dropped; the job never runs.
                    return Err(Failure::new(CancelledError));
                }
                let stats = shared.stats();
                PoolStats::bump(&stats.shard().left);
                let r = run_observed(stats, track.submitted, track.name.as_ref(), || {
                    work(shared, job)
                });
                if stats.observe.stats && r.is_ok() {
                    // Its Deferred will succeed: a job whose cancel was
                    // accepted returns CancelledError, and a declined cancel
                    // reports this.
                    PoolStats::bump(&stats.shard().completed);
                    metrics::job_outcome(
                        &stats.observe.label,
                        track.name.as_ref(),
                        Outcome::Completed,
                    );
                }
                r
            },
            interrupt,
        );
        let d = match observe.queue_timeout {
            Some(timeout) => self.arm_queue_timeout(d, Arc::clone(&track), timeout),
            None => d,
        };
        // Weak, and an Rc (no atomic traffic): a job in flight must not keep
        // a pool whose last handle was dropped from closing.
        let pool = Rc::downgrade(inner);
        let label = track.name.as_ref().map(|_| Arc::clone(&observe.label));
        // Failures only: a success is counted on its worker, so the common
        // case adds no step that re-boxes the result on the loop thread.
        d.add_errback(move |f: Failure| {
            let outcome = match pool.upgrade() {
                Some(inner) => count_failure(inner.shared.stats(), &track, &f),
                // Nobody can read the pool's status any more.
                None if track.timed_out() => Outcome::TimedOut,
                None => Outcome::Failed,
            };
            Err(match (&track.name, label) {
                // The caller learns which interaction failed (Synapse puts the
                // transaction's name in its errors); a PoolTimeout names it
                // already.
                (Some(name), Some(label)) if outcome != Outcome::TimedOut => {
                    f.context(format!("in interaction {name:?} of pool {label:?}"))
                }
                _ => f,
            })
        })
    }
}

/// Counts a failed job by kind, on the loop thread, and returns the kind.
fn count_failure(stats: &PoolStats, track: &JobTrack, f: &Failure) -> Outcome {
    let l = &stats.on_loop;
    let (outcome, counter) = if f.check::<PoolTimeout>().is_some() && track.timed_out() {
        (Outcome::TimedOut, &l.jobs_timed_out)
    } else if f.check::<CancelledError>().is_some() {
        // Withdrawn before a worker took it, if it was still queued.
        if track.leave_queue(GONE) {
            PoolStats::bump(&l.withdrawn);
        }
        (Outcome::Cancelled, &l.jobs_cancelled)
    } else {
        (Outcome::Failed, &l.jobs_failed)
    };
    let observe = &stats.observe;
    if observe.stats {
        PoolStats::bump(counter);
        metrics::job_outcome(&observe.label, track.name.as_ref(), outcome);
    }
    outcome
}

/// Runs one started job on its worker inside its span, timing it into the
/// pool's histograms (with `cp_stats`) and logging it if it was slow.
pub(super) fn run_observed<T>(
    stats: &PoolStats,
    submitted: Instant,
    name: Option<&Arc<str>>,
    work: impl FnOnce() -> Result<T, Failure>,
) -> Result<T, Failure> {
    let obs = &stats.observe;
    let started = Instant::now();
    let wait = started.saturating_duration_since(submitted);
    let interaction = name.map_or("", |n| &**n);
    let span = tracing::debug_span!(
        "adbapi_job",
        pool = &*obs.label,
        interaction,
        wait_ms = wait.as_secs_f64() * 1e3,
        run_ms = tracing::field::Empty,
    );
    // Caught here, not only around the whole job: a panic that escapes the
    // job's own guards (a value the caller's closure holds, dropped unrun)
    // must still be timed and counted, as a failure.
    let r = span.in_scope(|| super::job::catch(work));
    let run = started.elapsed();
    if !span.is_disabled() {
        span.record("run_ms", run.as_secs_f64() * 1e3);
    }
    if obs.stats {
        let shard = stats.shard();
        shard.wait.record(wait);
        shard.run.record(run);
        metrics::job_timed(&obs.label, name, wait, run);
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
