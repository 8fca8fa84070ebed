//! The job path of a pool that only counts (`cp_stats` on, the default,
//! with no `cp_slow_job_threshold` or `cp_queue_timeout`) for a job without
//! a name: the job times itself and counts its own outcome where that
//! outcome is decided, so counting adds no step to its Deferred's chain, no
//! allocation, and no reference-count traffic on the pool's shared state
//! (measured by the pool bench's `stats` section). Which end each job met comes from
//! [`reactor::defer_to_thread_pool_with_hooks`]: it ran (counted on its
//! worker), a cancel withdrew it from the queue (counted on the loop thread
//! as its Deferred fails), or its stopped pool dropped it unrun (a failure).

use quanta::Instant;
use std::rc::Rc;
use std::sync::Arc;

use deferred::{CancelledError, Deferred, Failure};
use reactor::{defer_to_thread_pool_with_hooks, Interrupt, ThreadPoolJob};

use super::job::JobSlot;
use super::metrics::{self, Outcome};
use super::observe::run_observed;
use super::status::PoolStats;
use super::{ConnectionPool, SharedPool};

impl ConnectionPool {
    /// The path of an unnamed job when only `cp_stats` is on (the default):
    /// timed and counted where its outcome is decided ([`CountedJob`]), with
    /// no step added to its Deferred's chain and no allocation of its own.
    /// On the loop thread only a cancel that withdrew it from the queue is
    /// counted.
    pub(super) fn submit_counted<T, W>(
        &self,
        job: Arc<JobSlot>,
        interrupt: impl FnOnce() -> Interrupt + 'static,
        shared: Arc<SharedPool>,
        work: W,
    ) -> Deferred<T>
    where
        T: Send + 'static,
        W: FnOnce(&Arc<SharedPool>, Arc<JobSlot>) -> Result<T, Failure> + Send + 'static,
    {
        let inner = &self.inner;
        PoolStats::bump(&inner.shared.stats().on_loop.submitted);
        let counted = CountedJob {
            submitted: Instant::now(),
            job,
            shared,
            work,
        };
        // Weak, and an Rc (no atomic traffic): a job in flight must not keep
        // a pool whose last handle was dropped from closing.
        let pool = Rc::downgrade(inner);
        let withdrawn = move || {
            if let Some(inner) = pool.upgrade() {
                let stats = inner.shared.stats();
                PoolStats::bump(&stats.on_loop.withdrawn);
                PoolStats::bump(&stats.on_loop.jobs_cancelled);
                metrics::job_outcome(&stats.observe.label, None, Outcome::Cancelled);
            }
        };
        defer_to_thread_pool_with_hooks(
            &*inner.reactor,
            &inner.threadpool,
            counted,
            interrupt,
            withdrawn,
        )
    }
}

/// An unnamed job of a pool that only counts: it times itself and counts
/// its own outcome on its worker, or, dropped unrun by a stopped pool, a
/// failure wherever it is dropped. It reaches the pool's counters through
/// the shared state the job holds anyway.
struct CountedJob<W> {
    submitted: Instant,
    /// The job's cancel slot: given to `work`, and read once the job is over
    /// to tell which outcome its Deferred shows.
    job: Arc<JobSlot>,
    shared: Arc<SharedPool>,
    work: W,
}

impl<T, W> ThreadPoolJob for CountedJob<W>
where
    T: Send + 'static,
    W: FnOnce(&Arc<SharedPool>, Arc<JobSlot>) -> Result<T, Failure> + Send + 'static,
{
    type Output = T;

    fn run(self) -> Result<T, Failure> {
        let CountedJob {
            submitted,
            job,
            shared,
            work,
        } = self;
        // Cloned here, not when the job was made: the boxed job stays small
        // (it is freed on another thread than the one that allocated it,
        // which glibc makes cheap only for small blocks).
        let slot = Arc::clone(&job);
        let stats = shared.stats();
        PoolStats::bump(&stats.shard().left);
        let r = run_observed(stats, submitted, None, || work(&shared, job));
        let outcome = match &r {
            // A job that returns Ok went through its commit, where a cancel
            // that took turns it into CancelledError and after which every
            // cancel is declined: its Deferred succeeds.
            Ok(_) => {
                debug_assert!(!slot.seal(), "a job returned Ok after a cancel took");
                Outcome::Completed
            }
            // A cancel that took before the job returned failed its Deferred
            // with CancelledError already; sealed, none can take any more,
            // and the Deferred reports this failure.
            Err(_) if slot.seal() => Outcome::Cancelled,
            Err(f) if f.check::<CancelledError>().is_some() => Outcome::Cancelled,
            Err(_) => Outcome::Failed,
        };
        count_on_worker(stats, outcome);
        r
    }

    fn unrun(self) {
        let stats = self.shared.stats();
        PoolStats::bump(&stats.shard().left);
        // Its Deferred fails with the pool's failure: a cancel arriving
        // before that failure reaches it is declined (the reactor's contract
        // for a job dropped unrun), and one arriving earlier withdrew the job,
        // which then is not dropped unrun.
        count_on_worker(stats, Outcome::Failed);
    }
}

/// Counts a job's outcome on the thread that decided it.
fn count_on_worker(stats: &PoolStats, outcome: Outcome) {
    let shard = stats.shard();
    let counter = match outcome {
        Outcome::Completed => &shard.completed,
        Outcome::Cancelled => &shard.cancelled,
        Outcome::Failed | Outcome::TimedOut => &shard.failed,
    };
    PoolStats::bump(counter);
    metrics::job_outcome(&stats.observe.label, None, outcome);
}
