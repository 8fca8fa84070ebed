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

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use deferred::Failure;

use crate::errors::PoolStopped;
use crate::job_queue::{JobQueue, Next};

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

/// Run by each worker thread of a pool just before it exits.
pub type ExitHook = Arc<dyn Fn() + Send + Sync>;

struct Counters {
    name: Arc<str>,
    /// Run by each worker as it exits, on its own thread, while its
    /// thread-locals are still alive.
    exit_hooks: Mutex<Vec<ExitHook>>,
    spin_nanos: AtomicU64,
    /// Live worker threads.
    workers: AtomicUsize,
    idle: AtomicUsize,
    busy: AtomicUsize,
    /// Jobs sent and not yet taken by a worker.
    queued: AtomicUsize,
    /// Quit messages sent and not yet taken.
    quits: AtomicUsize,
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
    /// `ThreadPool(minthreads, maxthreads, name)`.
    pub fn new(min: usize, max: usize, name: impl Into<String>) -> Result<Self, PoolSizeError> {
        Self::with_mode(min, max, name, PoolMode::Threads)
    }

    /// A pool that runs jobs the given way; see [`PoolMode`].
    pub fn with_mode(
        min: usize,
        max: usize,
        name: impl Into<String>,
        mode: PoolMode,
    ) -> Result<Self, PoolSizeError> {
        if min > max {
            return Err(PoolSizeError { min, max });
        }
        Ok(ThreadPool {
            inner: Arc::new(Inner {
                mode,
                queue: Arc::new(JobQueue::new()),
                counters: Arc::new(Counters {
                    name: Arc::from(name.into()),
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

    /// Live worker threads (idle and busy). Mirrors `workers`.
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
        let want = c.min.max(self.q_size().min(c.max));
        while self.workers() < want {
            if !self.spawn(&mut c) {
                break; // the OS refused: try again on the next job, not forever
            }
        }
        Ok(())
    }

    fn stopped_error(&self) -> PoolStopped {
        PoolStopped {
            name: self.name().to_owned(),
        }
    }

    /// Starts one worker; false if the OS refused a thread (logged).
    fn spawn(&self, c: &mut Control) -> bool {
        let counters = Arc::clone(&self.inner.counters);
        let queue = Arc::clone(&self.inner.queue);
        let name = format!("PoolThread-{}-{}", counters.name, c.names.len());
        counters.workers.fetch_add(1, Ordering::AcqRel);
        match std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || worker(&queue, &counters))
        {
            Ok(handle) => {
                c.threads.push(handle);
                c.names.push(name);
                true
            }
            Err(e) => {
                self.inner.counters.workers.fetch_sub(1, Ordering::AcqRel);
                tracing::error!(pool = %self.name(), error = %e, "could not start a pool thread");
                false
            }
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

    /// Queues a boxed job.
    pub fn submit(&self, job: Job) -> Result<(), PoolStopped> {
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
    /// pool is below `max`. The common cases return after two atomic loads.
    fn maybe_grow(&self) {
        let counters = &self.inner.counters;
        if counters.idle.load(Ordering::Acquire) >= counters.queued.load(Ordering::Acquire) {
            return;
        }
        let mut c = self.control();
        if !c.started || c.joined || self.workers() >= c.max {
            return;
        }
        if counters.idle.load(Ordering::Acquire) < counters.queued.load(Ordering::Acquire) {
            let _ = self.spawn(&mut c);
        }
    }

    /// Changes `min` and `max`. If the pool is running, grows to `min` and asks
    /// surplus workers above `max` to exit once idle. Mirrors
    /// `adjustPoolsize(minthreads, maxthreads)`.
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
        let live = self
            .workers()
            .saturating_sub(counters.quits.load(Ordering::Acquire));
        for _ in max..live {
            counters.quits.fetch_add(1, Ordering::AcqRel);
            let _ = self.inner.queue.push(Msg::Quit);
        }
        // Workers with a Quit queued are leaving: they do not count.
        while self
            .workers()
            .saturating_sub(counters.quits.load(Ordering::Acquire))
            < min
        {
            if !self.spawn(&mut c) {
                break;
            }
        }
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
        if c.threads.is_empty() || self.inner.mode != PoolMode::Threads {
            // Nobody will ever run the backlog: drop it now, so the jobs'
            // owners learn it (defer_to_thread_pool fails their Deferreds).
            let dropped = self.inner.queue.take_all();
            self.inner.counters.queued.store(0, Ordering::Release);
            drop(c);
            drop(dropped);
            return Vec::new();
        }
        // Quit messages queue behind the backlog: it is drained first.
        for _ in 0..c.threads.len() {
            self.inner.counters.quits.fetch_add(1, Ordering::AcqRel);
            let _ = self.inner.queue.push(Msg::Quit);
        }
        std::mem::take(&mut c.threads)
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
                counters.quits.fetch_sub(1, Ordering::AcqRel);
                break;
            }
        }
    }
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
    counters.workers.fetch_sub(1, Ordering::AcqRel);
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
