//! [`ThreadPool`]: Twisted's `twisted.python.threadpool.ThreadPool`.
//!
//! # Implementation notes
//! Jobs go through one FIFO backlog (`job_queue.rs`). Before `start` no
//! thread exists and jobs wait. Workers are spawned at `start` (up to
//! `min`, plus enough for the backlog up to `max`) and on demand when a job
//! arrives and fewer workers are idle than jobs are queued. One idle worker
//! at a time spins for a bounded time (see `spin.rs`: a few hints, then
//! yields, so it does not starve a thread on the same core) before blocking:
//! a job arriving within that window starts without a cross-core wakeup,
//! which costs 20–25 µs on the target machine. The other idle workers block
//! at once, so two idle workers do not both compete with the loop for the
//! CPUs. Idle workers then block, so an idle pool uses no CPU.
//!
//! Workers hold only the queue and the counters, never the pool handle:
//! dropping the last [`ThreadPool`] handle closes the queue, and the workers
//! finish the backlog and exit (Twisted leaks them, #4284).
//!
//! Counting workers: `workers` counts the threads that will go on taking
//! jobs. Shrinking takes a worker out of that count when it queues its
//! `Quit`, not when some thread later takes it, so a thread that is leaving
//! (its `Quit` queued, or running its exit hooks) is never counted as live
//! and a second resize cannot ask one more thread to leave than it meant
//! to. A worker that leaves because the queue is closed (stop, last handle
//! dropped) was live until then and takes itself out of the count.
//! `quits` counts the `Quit`s not yet taken: an idle thread that will take
//! one is not idle for jobs.
//!
//! Stopping closes the queue under its lock: a `submit` either lands before
//! the close, and a live worker drains it, or is refused with
//! [`PoolStopped`]. Jobs that no thread will ever run (stopped with no live
//! worker, or no worker could be started) are dropped at once, so their
//! owners learn it (`defer_to_thread_pool` fails their Deferreds).

use std::cell::RefCell;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use deferred::Failure;

use crate::errors::PoolStopped;
use crate::job_queue::{JobQueue, Next};
use crate::sync::thread::{Builder, JoinHandle};
use crate::sync::{AtomicBool, AtomicU64, AtomicUsize, Mutex, MutexGuard, Ordering};

/// A job: any `FnOnce() + Send`.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

enum Msg {
    Run(Job),
    Quit,
}

/// How a pool runs its jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// Real worker threads (the normal mode).
    Threads,
    /// Every job runs synchronously on the submitting thread, like Twisted's
    /// test `NonThreadPool`. Results still reach Deferreds on a later turn,
    /// through the reactor's queue.
    Inline,
    /// Jobs wait until the test calls [`ThreadPool::run_pending`] or
    /// [`ThreadPool::run_one`], which run them on the calling thread.
    Manual,
}

/// `min > max` given to [`ThreadPool::new`] or
/// [`ThreadPool::adjust_pool_size`]. Twisted asserts "minimum is greater than
/// maximum".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("thread pool minimum {min} is greater than maximum {max}")]
pub struct PoolSizeError {
    /// The minimum given.
    pub min: usize,
    /// The maximum given.
    pub max: usize,
}

/// Why a pool could not be made: [`ThreadPool::new`],
/// [`ThreadPool::with_mode`] and `ReactorThreads::new_thread_pool`.
/// Twisted's `ThreadPool.__init__` asserts the sizes and takes any name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolConfigError {
    /// `min > max` (Twisted asserts "minimum is greater than maximum").
    #[error(transparent)]
    Size(#[from] PoolSizeError),
    /// The name cannot be part of a thread name: the OS (and
    /// `std::thread::Builder`) refuse a NUL byte in one. Twisted accepts any
    /// name, as Python threads are not named at the OS level.
    #[error("thread pool name {name:?} has a NUL byte at byte {position}; thread names cannot contain NUL")]
    InvalidName {
        /// The name given.
        name: String,
        /// The byte offset of the first NUL.
        position: usize,
    },
}

/// A pool could not start a worker thread, so it dropped a job no thread
/// would run: the job's Deferred fails with this (inside its `Failure`)
/// instead of waiting forever. Twisted's `ThreadPool.startAWorker` lets the
/// `thread.start()` error propagate and leaves the work queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("thread pool {name:?} could not start a worker thread ({reason}); the job was not run")]
pub struct ThreadSpawnError {
    /// The pool's name.
    pub name: String,
    /// What the OS (or `std::thread::Builder`) said.
    pub reason: String,
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
fn drop_unrunnable(jobs: Vec<Msg>, why: Option<ThreadSpawnError>) {
    if jobs.is_empty() {
        return;
    }
    let previous = UNRUN_REASON.with(|r| r.replace(why));
    drop(jobs);
    UNRUN_REASON.with(|r| *r.borrow_mut() = previous);
}

/// Run by each worker thread of a pool just before it exits.
pub type ExitHook = Arc<dyn Fn() + Send + Sync>;

struct Counters {
    name: Arc<str>,
    /// Run by each worker as it exits, on its own thread, while its
    /// thread-locals are still alive.
    exit_hooks: Mutex<Vec<ExitHook>>,
    spin_nanos: AtomicU64,
    /// Live workers: started and neither asked to leave nor leaving (see the
    /// module notes). Raised only under the control lock.
    workers: AtomicUsize,
    /// Threads waiting for a message, including any that will take a `Quit`.
    idle: AtomicUsize,
    busy: AtomicUsize,
    /// Jobs sent and not yet taken by a worker.
    queued: AtomicUsize,
    /// Quit messages sent and not yet taken.
    quits: AtomicUsize,
}

impl Counters {
    /// Idle threads that will take a job rather than a `Quit`, or fewer.
    /// `quits` is read first: a leaving thread stops being idle before it
    /// stops counting in `quits`, so this never counts it.
    fn idle_for_jobs(&self) -> usize {
        let quits = self.quits.load(Ordering::Acquire);
        self.idle.load(Ordering::Acquire).saturating_sub(quits)
    }
}

struct Control {
    min: usize,
    max: usize,
    started: bool,
    joined: bool,
    threads: Vec<JoinHandle<()>>,
    names: Vec<String>,
}

struct Inner {
    mode: PoolMode,
    queue: Arc<JobQueue<Msg>>,
    counters: Arc<Counters>,
    control: Mutex<Control>,
    joined: AtomicBool,
    /// Test hook: while set, starting a worker fails as if the OS refused.
    #[cfg(test)]
    fail_spawns: AtomicBool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle is gone: workers finish the backlog and exit.
        self.queue.close();
    }
}

/// A pool of worker threads with a FIFO backlog. Mirrors
/// `twisted.python.threadpool.ThreadPool(minthreads, maxthreads, name)`.
///
/// A cheap, `Send + Sync` handle; clones share the pool. Differences from
/// Twisted, each safer: submitting to a stopped pool returns [`PoolStopped`]
/// instead of dropping the job silently; a second `stop` does nothing
/// instead of raising `AlreadyQuit`; dropping the last handle lets the workers
/// finish the backlog and exit instead of leaking them.
///
/// # Examples
///
/// ```
/// use reactor::ThreadPool;
/// use std::sync::mpsc;
///
/// let pool = ThreadPool::new(1, 4, "example").unwrap();
/// let (tx, rx) = mpsc::channel();
/// pool.call_in_thread(move || tx.send(21 * 2).unwrap()).unwrap(); // queued: not started
/// pool.start().unwrap();
/// assert_eq!(rx.recv().unwrap(), 42);
/// pool.stop(); // waits for queued and running jobs, joins the threads
/// assert!(pool.call_in_thread(|| ()).is_err());
/// ```
#[derive(Clone)]
pub struct ThreadPool {
    inner: Arc<Inner>,
}

impl ThreadPool {
    /// A pool of real threads, not yet started. Mirrors
    /// `ThreadPool(minthreads, maxthreads, name)`. Fails if `min > max` or
    /// the name has a NUL byte (it becomes part of the thread names).
    pub fn new(min: usize, max: usize, name: impl Into<String>) -> Result<Self, PoolConfigError> {
        Self::with_mode(min, max, name, PoolMode::Threads)
    }

    /// A pool that runs jobs the given way; see [`PoolMode`]. Fails as
    /// [`new`](Self::new) does.
    pub fn with_mode(
        min: usize,
        max: usize,
        name: impl Into<String>,
        mode: PoolMode,
    ) -> Result<Self, PoolConfigError> {
        if min > max {
            return Err(PoolSizeError { min, max }.into());
        }
        let name = name.into();
        if let Some(position) = name.find('\0') {
            return Err(PoolConfigError::InvalidName { name, position });
        }
        Ok(ThreadPool {
            inner: Arc::new(Inner {
                mode,
                queue: Arc::new(JobQueue::new()),
                counters: Arc::new(Counters {
                    name: Arc::from(name),
                    exit_hooks: Mutex::new(Vec::new()),
                    spin_nanos: AtomicU64::new(20_000),
                    workers: AtomicUsize::new(0),
                    idle: AtomicUsize::new(0),
                    busy: AtomicUsize::new(0),
                    queued: AtomicUsize::new(0),
                    quits: AtomicUsize::new(0),
                }),
                control: Mutex::new(Control {
                    min,
                    max,
                    started: false,
                    joined: false,
                    threads: Vec::new(),
                    names: Vec::new(),
                }),
                joined: AtomicBool::new(false),
                #[cfg(test)]
                fail_spawns: AtomicBool::new(false),
            }),
        })
    }

    /// Adds a hook every worker thread runs on itself just before it exits
    /// (after its last job, while its thread-locals still work): a per-thread
    /// resource such as a database connection is released by its own thread.
    /// A panic in a hook is logged.
    pub fn add_worker_exit_hook(&self, hook: ExitHook) {
        self.inner
            .counters
            .exit_hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(hook);
    }

    /// Sets how long an idle worker spins before it blocks (default 20 µs;
    /// one idle worker at a time spins, the others block at once). Zero
    /// makes workers block at once: slower round trips, no spinning.
    pub fn set_spin(&self, spin: Duration) {
        let nanos = u64::try_from(spin.as_nanos()).unwrap_or(u64::MAX);
        self.inner
            .counters
            .spin_nanos
            .store(nanos, Ordering::Relaxed);
    }

    fn control(&self) -> MutexGuard<'_, Control> {
        // Nothing panics while holding the lock; recover from poison anyway.
        self.inner.control.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.inner.counters.name
    }

    /// The pool's name, shared (no copy).
    pub fn name_arc(&self) -> Arc<str> {
        Arc::clone(&self.inner.counters.name)
    }

    /// How it runs jobs.
    pub fn mode(&self) -> PoolMode {
        self.inner.mode
    }

    /// Minimum number of threads.
    pub fn min(&self) -> usize {
        self.control().min
    }

    /// Maximum number of threads.
    pub fn max(&self) -> usize {
        self.control().max
    }

    /// True between `start` and `stop`. Mirrors `started`.
    pub fn started(&self) -> bool {
        self.control().started
    }

    /// True once stopped. Mirrors `joined`.
    pub fn joined(&self) -> bool {
        self.inner.joined.load(Ordering::Acquire)
    }

    /// Live worker threads (idle and busy), not counting threads asked to
    /// leave by [`adjust_pool_size`](Self::adjust_pool_size) that are still
    /// on their way out. Mirrors `workers`.
    pub fn workers(&self) -> usize {
        self.inner.counters.workers.load(Ordering::Acquire)
    }

    /// Workers running a job. Mirrors `len(working)`.
    pub fn working(&self) -> usize {
        self.inner.counters.busy.load(Ordering::Acquire)
    }

    /// Idle workers. Mirrors `len(waiters)`.
    pub fn waiters(&self) -> usize {
        self.inner.counters.idle.load(Ordering::Acquire)
    }

    /// Jobs waiting in the backlog. Mirrors `q.qsize()`.
    pub fn q_size(&self) -> usize {
        self.inner.counters.queued.load(Ordering::Acquire)
    }

    /// The names of every thread this pool ever created, in creation order
    /// (`PoolThread-<name>-<n>`). Mirrors `threads`.
    pub fn thread_names(&self) -> Vec<String> {
        self.control().names.clone()
    }

    /// Logs the statistics at info level. Mirrors `dumpStats()`.
    pub fn dump_stats(&self) {
        tracing::info!(pool = %self.name(), "queue: {}", self.q_size());
        tracing::info!(pool = %self.name(), "waiters: {}", self.waiters());
        tracing::info!(pool = %self.name(), "workers: {}", self.workers());
    }

    /// Starts the pool: spawns `min` workers, and more for an existing backlog
    /// up to `max`. Idempotent while running. Fails on a stopped pool (Twisted
    /// raises `AlreadyQuit`). Mirrors `start()`.
    pub fn start(&self) -> Result<(), PoolStopped> {
        let mut c = self.control();
        if c.joined {
            return Err(self.stopped_error());
        }
        c.started = true;
        if self.inner.mode != PoolMode::Threads {
            return Ok(());
        }
        let unrunnable = self.grow(&mut c);
        drop(c);
        drop_unrunnable(unrunnable.0, unrunnable.1);
        Ok(())
    }

    /// Starts workers up to `min`, and more for the backlog up to `max`
    /// (Twisted's `adjustPoolsize` and `start` both do this). If a thread
    /// cannot be started and no live worker is left, takes the queued jobs
    /// out, for the caller to drop once it has released the lock.
    fn grow(&self, c: &mut Control) -> (Vec<Msg>, Option<ThreadSpawnError>) {
        let want = c.min.max(self.q_size().min(c.max));
        while self.workers() < want {
            if let Err(e) = self.spawn(c) {
                // Try again on the next job, not forever now.
                return (self.strand_check(), Some(e));
            }
        }
        (Vec::new(), None)
    }

    /// After a failed spawn: with no live worker, nothing will ever run the
    /// queued jobs, so they are taken out to be dropped. `Quit`s stay queued
    /// for the threads that are leaving.
    fn strand_check(&self) -> Vec<Msg> {
        if self.workers() > 0 {
            return Vec::new();
        }
        self.take_jobs()
    }

    /// Takes every queued job (not the `Quit`s) out of the queue.
    fn take_jobs(&self) -> Vec<Msg> {
        let jobs = self.inner.queue.take_matching(|m| matches!(m, Msg::Run(_)));
        self.inner
            .counters
            .queued
            .fetch_sub(jobs.len(), Ordering::AcqRel);
        jobs
    }

    fn stopped_error(&self) -> PoolStopped {
        PoolStopped {
            name: self.name().to_owned(),
        }
    }

    /// Starts one worker, or says why it could not (logged). Never panics:
    /// a panic in `Builder::spawn` (it panics on a name it cannot pass to
    /// the OS) is caught and reported like an OS refusal.
    fn spawn(&self, c: &mut Control) -> Result<(), ThreadSpawnError> {
        let counters = Arc::clone(&self.inner.counters);
        let queue = Arc::clone(&self.inner.queue);
        let name = format!("PoolThread-{}-{}", counters.name, c.names.len());
        // Counted before it exists: a worker that starts and meets a closed
        // queue at once takes itself out of the count.
        counters.workers.fetch_add(1, Ordering::AcqRel);
        let spawned = self.spawn_thread(name.clone(), move || worker(&queue, &counters));
        match spawned {
            Ok(handle) => {
                c.threads.push(handle);
                c.names.push(name);
                Ok(())
            }
            Err(reason) => {
                self.inner.counters.workers.fetch_sub(1, Ordering::AcqRel);
                tracing::error!(pool = %self.name(), error = %reason, "could not start a pool thread");
                Err(ThreadSpawnError {
                    name: self.name().to_owned(),
                    reason,
                })
            }
        }
    }

    fn spawn_thread(
        &self,
        name: String,
        body: impl FnOnce() + Send + 'static,
    ) -> Result<JoinHandle<()>, String> {
        #[cfg(test)]
        if self.inner.fail_spawns.load(Ordering::Acquire) {
            return Err("refused by the test hook".to_owned());
        }
        match catch_unwind(AssertUnwindSafe(|| Builder::new().name(name).spawn(body))) {
            Ok(Ok(handle)) => Ok(handle),
            Ok(Err(e)) => Err(e.to_string()),
            Err(payload) => Err(Failure::from_panic(payload).to_string()),
        }
    }

    /// Queues `f` to run on a worker. Mirrors `callInThread`. A panic in `f`
    /// is logged and the worker lives on.
    pub fn call_in_thread<F>(&self, f: F) -> Result<(), PoolStopped>
    where
        F: FnOnce() + Send + 'static,
    {
        self.submit(Box::new(f))
    }

    /// Queues `f` and calls `on_result(Ok(value))` or `on_result(Err(failure))`
    /// on the worker afterwards (a panic in `f` becomes the failure). Mirrors
    /// `callInThreadWithCallback`.
    pub fn call_in_thread_with_callback<T, F, C>(
        &self,
        on_result: C,
        f: F,
    ) -> Result<(), PoolStopped>
    where
        F: FnOnce() -> Result<T, Failure> + Send + 'static,
        C: FnOnce(Result<T, Failure>) + Send + 'static,
    {
        self.submit(Box::new(move || {
            let r =
                catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| Err(Failure::from_panic(p)));
            on_result(r);
        }))
    }

    /// Queues a boxed job. Once `stop` has begun (on any thread) the job is
    /// either run or refused with [`PoolStopped`], never accepted and lost.
    pub fn submit(&self, job: Job) -> Result<(), PoolStopped> {
        // A fast path only: the queue's own close is what makes it exact.
        if self.joined() {
            return Err(self.stopped_error());
        }
        let counters = &self.inner.counters;
        match self.inner.mode {
            PoolMode::Inline => {
                run_job(counters, job);
                return Ok(());
            }
            PoolMode::Manual | PoolMode::Threads => {
                counters.queued.fetch_add(1, Ordering::AcqRel);
                if self.inner.queue.push(Msg::Run(job)).is_err() {
                    counters.queued.fetch_sub(1, Ordering::AcqRel);
                    return Err(self.stopped_error());
                }
            }
        }
        if self.inner.mode == PoolMode::Threads {
            self.maybe_grow();
        }
        Ok(())
    }

    /// Spawns a worker if fewer workers are idle than jobs are queued and the
    /// pool is below `max`. The common cases return after three atomic loads.
    /// If no worker is live and none can be started, the backlog is dropped.
    fn maybe_grow(&self) {
        let counters = &self.inner.counters;
        if counters.idle_for_jobs() >= counters.queued.load(Ordering::Acquire) {
            return;
        }
        let mut c = self.control();
        if !c.started || c.joined || self.workers() >= c.max {
            return;
        }
        if counters.idle_for_jobs() < counters.queued.load(Ordering::Acquire) {
            if let Err(e) = self.spawn(&mut c) {
                let unrunnable = self.strand_check();
                drop(c);
                drop_unrunnable(unrunnable, Some(e));
            }
        }
    }

    /// Changes `min` and `max`. If the pool is running, grows to `min` (and
    /// for the backlog up to `max`) and asks surplus workers above `max` to
    /// exit once idle. Mirrors `adjustPoolsize(minthreads, maxthreads)`.
    pub fn adjust_pool_size(
        &self,
        min: Option<usize>,
        max: Option<usize>,
    ) -> Result<(), PoolSizeError> {
        let mut c = self.control();
        let (min, max) = (min.unwrap_or(c.min), max.unwrap_or(c.max));
        if min > max {
            return Err(PoolSizeError { min, max });
        }
        c.min = min;
        c.max = max;
        if !c.started || c.joined || self.inner.mode != PoolMode::Threads {
            return Ok(());
        }
        let counters = &self.inner.counters;
        // Live workers only rise under this lock, so this count cannot grow
        // under us; the thread that takes a Quit is out of it from now on.
        for _ in max..self.workers() {
            counters.workers.fetch_sub(1, Ordering::AcqRel);
            counters.quits.fetch_add(1, Ordering::AcqRel);
            if self.inner.queue.push(Msg::Quit).is_err() {
                // Closed only by `begin_stop`, which sets `joined` first.
                counters.quits.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let unrunnable = self.grow(&mut c);
        drop(c);
        drop_unrunnable(unrunnable.0, unrunnable.1);
        Ok(())
    }

    /// Runs every job queued now on the calling thread, for
    /// [`PoolMode::Manual`] pools. Returns how many ran. On a pool with real
    /// threads it does nothing: the queue belongs to the workers.
    pub fn run_pending(&self) -> usize {
        let n = self.inner.queue.len();
        let mut ran = 0;
        for _ in 0..n {
            if self.run_one() {
                ran += 1;
            }
        }
        ran
    }

    /// Runs the oldest queued job on the calling thread; false if none, or if
    /// the pool has real threads.
    pub fn run_one(&self) -> bool {
        if self.inner.mode == PoolMode::Threads {
            return false;
        }
        match self.inner.queue.try_pop() {
            Some(Msg::Run(job)) => {
                self.inner.counters.queued.fetch_sub(1, Ordering::AcqRel);
                run_job(&self.inner.counters, job);
                true
            }
            Some(Msg::Quit) => {
                self.inner.counters.quits.fetch_sub(1, Ordering::AcqRel);
                false
            }
            None => false,
        }
    }

    /// Stops the pool: no new jobs are accepted; the backlog and running jobs
    /// finish; then every worker exits and is joined. Blocks until then, as
    /// Twisted's does. A second call does nothing. Mirrors `stop()`.
    pub fn stop(&self) {
        let threads = self.begin_stop();
        for t in threads {
            if t.join().is_err() {
                tracing::error!(pool = %self.name(), "a pool thread panicked outside a job");
            }
        }
    }

    /// Marks the pool stopped and asks every worker to exit after the backlog;
    /// returns their join handles without waiting (a second call returns none).
    pub fn begin_stop(&self) -> Vec<JoinHandle<()>> {
        let mut c = self.control();
        if c.joined {
            return Vec::new();
        }
        c.joined = true;
        c.started = false;
        self.inner.joined.store(true, Ordering::Release);
        // From here every push is refused, so a job is either queued ahead of
        // the close (and drained by a live worker) or refused: workers leave
        // once the queue is closed and empty.
        self.inner.queue.close();
        let threads = std::mem::take(&mut c.threads);
        if self.inner.mode != PoolMode::Threads || self.workers() == 0 {
            // Nobody will ever run the backlog: drop it now, so the jobs'
            // owners learn it (defer_to_thread_pool fails their Deferreds).
            let dropped = self.take_jobs();
            drop(c);
            drop_unrunnable(dropped, None);
        }
        threads
    }
}

fn run_job(counters: &Counters, job: Job) {
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

fn worker(queue: &JobQueue<Msg>, counters: &Counters) {
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

impl fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPool")
            .field("name", &self.name())
            .field("mode", &self.inner.mode)
            .field("workers", &self.workers())
            .field("working", &self.working())
            .field("waiters", &self.waiters())
            .field("q_size", &self.q_size())
            .field("joined", &self.joined())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    //! Thread-spawn failures, through a hook that makes `spawn` fail as if the
    //! OS refused a thread (tracker issue 9, defect 14).

    use super::*;
    use crate::testing::FakeReactor;
    use crate::threads::defer_to_thread_pool;
    use std::sync::mpsc;

    fn failing_pool(min: usize, max: usize, name: &str) -> ThreadPool {
        let pool = ThreadPool::new(min, max, name).unwrap();
        pool.inner.fail_spawns.store(true, Ordering::Release);
        pool
    }

    fn spawn_error(d: deferred::Deferred<u32>) -> ThreadSpawnError {
        let f = d.into_result().expect("fired").unwrap_err();
        f.check::<ThreadSpawnError>()
            .unwrap_or_else(|| panic!("not a ThreadSpawnError: {f}"))
            .clone()
    }

    // The backlog queued before `start` is dropped, failing its Deferreds,
    // when `start` cannot start any worker: it used to wait forever.
    #[test]
    fn start_that_cannot_spawn_fails_the_backlog() {
        let fake = FakeReactor::new(true);
        let pool = failing_pool(1, 1, "spawn-fails-at-start");
        let d = defer_to_thread_pool(&fake, &pool, || Ok(1u32));
        pool.start().unwrap();
        assert_eq!(pool.workers(), 0);
        assert_eq!(pool.q_size(), 0);
        fake.pump();
        let e = spawn_error(d);
        assert_eq!(e.name, "spawn-fails-at-start");
        assert!(e.to_string().contains("could not start a worker thread"));
        pool.stop();
    }

    // A job submitted to a running pool with no live worker is failed, not
    // stranded, when no worker can be started; once threads can be started
    // again, the pool works.
    #[test]
    fn submit_that_cannot_spawn_fails_the_job_and_the_pool_recovers() {
        let fake = FakeReactor::new(true);
        let pool = failing_pool(0, 1, "spawn-fails-at-submit");
        pool.start().unwrap();
        let d = defer_to_thread_pool(&fake, &pool, || Ok(1u32));
        fake.pump();
        spawn_error(d);

        pool.inner.fail_spawns.store(false, Ordering::Release);
        let (tx, rx) = mpsc::channel();
        pool.call_in_thread(move || tx.send(5).unwrap()).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(30)), Ok(5));
        pool.stop();
    }

    // With a live worker, a failed spawn leaves the backlog to it.
    #[test]
    fn failed_spawn_with_a_live_worker_keeps_the_backlog() {
        // One worker: nothing else may take the job below.
        let pool = ThreadPool::new(1, 1, "spawn-fails-busy").unwrap();
        pool.start().unwrap();
        let (started_tx, started_rx) = mpsc::channel();
        let (open_tx, open_rx) = mpsc::channel::<()>();
        pool.call_in_thread(move || {
            started_tx.send(()).unwrap();
            let _ = open_rx.recv_timeout(Duration::from_secs(30));
        })
        .unwrap();
        started_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        pool.inner.fail_spawns.store(true, Ordering::Release);
        // Room for a second worker, which the next job will try to start.
        pool.adjust_pool_size(Some(1), Some(2)).unwrap();
        let (tx, rx) = mpsc::channel();
        pool.call_in_thread(move || tx.send(9).unwrap()).unwrap();
        assert_eq!(pool.q_size(), 1);
        open_tx.send(()).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(30)), Ok(9));
        pool.stop();
    }

    // A resize that cannot start its first worker fails the backlog too.
    #[test]
    fn adjust_that_cannot_spawn_fails_the_backlog() {
        let fake = FakeReactor::new(true);
        let pool = failing_pool(0, 0, "spawn-fails-at-adjust");
        pool.start().unwrap();
        let d = defer_to_thread_pool(&fake, &pool, || Ok(1u32));
        fake.pump();
        assert!(!d.has_result(), "max 0: the job waits for a resize");
        pool.adjust_pool_size(Some(1), Some(1)).unwrap();
        fake.pump();
        spawn_error(d);
        pool.stop();
    }
}
