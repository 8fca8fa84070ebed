//! The worker side of a [`ThreadPool`](crate::ThreadPool): the messages on
//! its queue, the counters the pool handle and the workers share, and the
//! loop each worker thread runs. Mirrors the body of Twisted's
//! `ThreadPool._worker` (there, one `Queue.get` per job and the
//! `WorkerStop` sentinel; here `Msg::Quit`).
//!
//! Workers hold only the queue and the counters, never the pool handle, so
//! dropping the last handle closes the queue and the workers finish the
//! backlog and exit (see the notes in `threadpool/mod.rs`).

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use deferred::Failure;

use super::job_queue::{JobQueue, Next};
use super::{ExitHook, Job, ThreadSpawnError};
use crate::sync::{AtomicU64, AtomicUsize, Mutex, Ordering};

/// What travels on a pool's queue.
pub(super) enum Msg {
    /// Run this job.
    Run(Job),
    /// The worker that takes it leaves (the pool shrank).
    Quit,
}

thread_local! {
    /// Set while this thread drops jobs because no worker could be started,
    /// so a job's drop guard (see `threads.rs`) reports that instead of
    /// [`PoolStopped`].
    static UNRUN_REASON: RefCell<Option<ThreadSpawnError>> = const { RefCell::new(None) };
}

/// Why the jobs being dropped on this thread right now will never run, if
/// it is not that their pool stopped.
pub(crate) fn unrun_reason() -> Option<ThreadSpawnError> {
    UNRUN_REASON.with(|r| r.borrow().clone())
}

/// Drops jobs no thread will run, telling their guards why.
pub(super) fn drop_unrunnable(jobs: Vec<Msg>, why: Option<ThreadSpawnError>) {
    if jobs.is_empty() {
        return;
    }
    let previous = UNRUN_REASON.with(|r| r.replace(why));
    drop(jobs);
    UNRUN_REASON.with(|r| *r.borrow_mut() = previous);
}

/// What a pool handle and its workers share.
pub(super) struct Counters {
    pub(super) name: Arc<str>,
    /// Run by each worker as it exits, on its own thread, while its
    /// thread-locals are still alive.
    pub(super) exit_hooks: Mutex<Vec<ExitHook>>,
    pub(super) spin_nanos: AtomicU64,
    /// Live workers: started and neither asked to leave nor leaving (see the
    /// module notes). Raised only under the control lock.
    pub(super) workers: AtomicUsize,
    /// Threads waiting for a message, including any that will take a `Quit`.
    pub(super) idle: AtomicUsize,
    pub(super) busy: AtomicUsize,
    /// Jobs sent and not yet taken by a worker.
    pub(super) queued: AtomicUsize,
    /// Quit messages sent and not yet taken.
    pub(super) quits: AtomicUsize,
}

impl Counters {
    /// Idle threads that will take a job rather than a `Quit`, or fewer.
    /// `quits` is read first: a leaving thread stops being idle before it
    /// stops counting in `quits`, so this never counts it.
    pub(super) fn idle_for_jobs(&self) -> usize {
        let quits = self.quits.load(Ordering::Acquire);
        self.idle.load(Ordering::Acquire).saturating_sub(quits)
    }
}

pub(super) fn run_job(counters: &Counters, job: Job) {
    counters.busy.fetch_add(1, Ordering::AcqRel);
    if let Err(payload) = catch_unwind(AssertUnwindSafe(job)) {
        let f = Failure::from_panic(payload);
        tracing::error!(pool = %counters.name, failure = %f, "Unhandled error in thread pool job");
    }
    counters.busy.fetch_sub(1, Ordering::AcqRel);
}

fn next_message(queue: &JobQueue<Msg>, counters: &Counters) -> Option<Msg> {
    if let Some(m) = queue.try_pop() {
        return Some(m);
    }
    counters.idle.fetch_add(1, Ordering::AcqRel);
    let budget = Duration::from_nanos(counters.spin_nanos.load(Ordering::Relaxed));
    let next = queue.pop_blocking(budget);
    counters.idle.fetch_sub(1, Ordering::AcqRel);
    match next {
        Next::Msg(m) => Some(m),
        Next::Closed => None,
    }
}

/// The loop of one worker thread.
pub(super) fn worker(queue: &JobQueue<Msg>, counters: &Counters) {
    while let Some(msg) = next_message(queue, counters) {
        match msg {
            Msg::Run(job) => {
                counters.queued.fetch_sub(1, Ordering::AcqRel);
                run_job(counters, job);
            }
            Msg::Quit => {
                // Already out of the live count: `adjust_pool_size` took it
                // out when it queued this Quit.
                counters.quits.fetch_sub(1, Ordering::AcqRel);
                run_exit_hooks(counters);
                return;
            }
        }
    }
    // Closed: this worker was live until now.
    counters.workers.fetch_sub(1, Ordering::AcqRel);
    run_exit_hooks(counters);
}

fn run_exit_hooks(counters: &Counters) {
    let hooks: Vec<ExitHook> = counters
        .exit_hooks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    for hook in hooks {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| hook())) {
            let f = Failure::from_panic(payload);
            tracing::error!(pool = %counters.name, failure = %f, "Unhandled error in a worker exit hook");
        }
    }
}
