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
    /// The pool's `min`, for workers deciding to retire (set under the
    /// control lock).
    pub(super) min: AtomicUsize,
    /// How long a worker above `min` waits for a job before it retires, in
    /// nanoseconds; 0: never.
    pub(super) idle_nanos: AtomicU64,
    /// Held by a worker while it decides to retire (it looks at the queue,
    /// then leaves the live count), and by the pool handle while it decides
    /// to start workers or stop (it looks at the live count). Without it a
    /// job pushed between the worker's look and its leaving met a pool that
    /// still counted the worker, so at `max` no worker was started for it,
    /// and the job waited for the next submission (or, at `stop`, for ever
    /// in a closed queue).
    pub(super) retiring: Mutex<()>,
    /// Run once by a worker that found the queue empty and is about to
    /// retire (tests only: it lets a test submit in that window).
    #[cfg(test)]
    pub(super) before_retire: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl Counters {
    /// Idle threads that will take a job rather than a `Quit`, or fewer.
    /// `quits` is read first: a leaving thread stops being idle before it
    /// stops counting in `quits`, so this never counts it.
    pub(super) fn idle_for_jobs(&self) -> usize {
        let quits = self.quits.load(Ordering::Acquire);
        // SeqCst, paired with `try_retire`: a submitter that pushed its job
        // either is seen by the retiring worker or sees it no longer idle.
        self.idle.load(Ordering::SeqCst).saturating_sub(quits)
    }

    /// A worker waited `idle_nanos` without a job: it leaves if the pool
    /// has more live workers than `min` and nothing is queued. Its `idle`
    /// count is already given back (SeqCst), and the queue is looked at
    /// after that (SeqCst), under `retiring`: a job pushed before this look
    /// is taken by this worker, which stays; a job pushed after it finds
    /// this worker not idle, and the submitter, which looks at the live
    /// count under `retiring` too, sees this worker gone and starts one if
    /// it needs one.
    fn try_retire(&self, queue: &JobQueue<Msg>) -> bool {
        let _decide = self.retiring.lock().unwrap_or_else(|p| p.into_inner());
        if queue.len() > 0 {
            return false;
        }
        #[cfg(test)]
        {
            let hook = self.before_retire.lock().unwrap().take();
            if let Some(hook) = hook {
                hook();
            }
        }
        let min = self.min.load(Ordering::SeqCst);
        self.workers
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| {
                (w > min).then(|| w - 1)
            })
            .is_ok()
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

/// What a worker got while it waited.
enum Got {
    Msg(Msg),
    /// The queue is closed and empty.
    Closed,
    /// Nothing came within the pool's idle timeout.
    Idle,
}

fn next_message(queue: &JobQueue<Msg>, counters: &Counters) -> Got {
    if let Some(m) = queue.try_pop() {
        return Got::Msg(m);
    }
    counters.idle.fetch_add(1, Ordering::AcqRel);
    let budget = Duration::from_nanos(counters.spin_nanos.load(Ordering::Relaxed));
    let idle = match counters.idle_nanos.load(Ordering::Relaxed) {
        0 => None,
        n => Some(Duration::from_nanos(n)),
    };
    let next = queue.pop_blocking_for(budget, idle);
    counters.idle.fetch_sub(1, Ordering::SeqCst);
    match next {
        Some(Next::Msg(m)) => Got::Msg(m),
        Some(Next::Closed) => Got::Closed,
        None => Got::Idle,
    }
}

/// The loop of one worker thread.
pub(super) fn worker(queue: &JobQueue<Msg>, counters: &Counters) {
    loop {
        let msg = match next_message(queue, counters) {
            Got::Msg(m) => m,
            Got::Closed => break,
            Got::Idle => {
                if counters.try_retire(queue) {
                    // Out of the live count already, as after a Quit.
                    run_exit_hooks(counters);
                    return;
                }
                continue;
            }
        };
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
