//! [`ThreadPool`]: Twisted's `twisted.python.threadpool.ThreadPool`.
//!
//! # Implementation notes
//! Jobs go through one FIFO backlog (`threadpool/job_queue.rs`); the
//! worker threads' loop and the counters they share are in
//! `threadpool/worker.rs`. Before `start` no
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

mod errors;
mod job_queue;
mod worker;

pub use errors::{PoolConfigError, PoolSizeError, ThreadSpawnError};

#[cfg(loom)]
pub(crate) use job_queue::{JobQueue, Next};
pub(crate) use worker::unrun_reason;

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use deferred::Failure;

use crate::errors::PoolStopped;
use crate::sync::thread::{Builder, JoinHandle};
use crate::sync::{AtomicBool, AtomicU64, AtomicUsize, Mutex, MutexGuard, Ordering};
use crate::testing::PoolMode;
use job_queue::JobQueue as Queue;
use worker::{drop_unrunnable, run_job, worker, Counters, Msg};

/// A job: any `FnOnce() + Send`.
pub(crate) type Job = Box<dyn FnOnce() + Send + 'static>;

/// Run by each worker thread of a pool just before it exits.
pub type ExitHook = Arc<dyn Fn() + Send + Sync>;

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
    queue: Arc<Queue<Msg>>,
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
        Self::build(min, max, name, PoolMode::Threads)
    }

    /// A pool that runs jobs the given way; see [`PoolMode`]. Fails as
    /// [`new`](Self::new) does. Test modes are reached through
    /// [`TestPool::with_mode`](crate::testing::TestPool::with_mode).
    pub(crate) fn build(
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
                queue: Arc::new(Queue::new()),
                counters: Arc::new(Counters {
                    name: Arc::from(name),
                    exit_hooks: Mutex::new(Vec::new()),
                    spin_nanos: AtomicU64::new(20_000),
                    workers: AtomicUsize::new(0),
                    idle: AtomicUsize::new(0),
                    busy: AtomicUsize::new(0),
                    queued: AtomicUsize::new(0),
                    quits: AtomicUsize::new(0),
                    min: AtomicUsize::new(min),
                    idle_nanos: AtomicU64::new(0),
                    retiring: Mutex::new(()),
                    #[cfg(test)]
                    before_retire: std::sync::Mutex::new(None),
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

    /// Lets workers above `min` retire once they have waited `idle`
    /// without a job (`None`, the default: they never do, as in Twisted).
    /// A retiring worker runs the exit hooks, as one leaving a shrinking
    /// pool does. An extension: HikariCP's `idleTimeout` for threads.
    pub fn set_idle_timeout(&self, idle: Option<Duration>) {
        let nanos = idle.map_or(0, |d| {
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
        });
        self.inner
            .counters
            .idle_nanos
            .store(nanos, Ordering::Relaxed);
    }

    fn control(&self) -> MutexGuard<'_, Control> {
        // Nothing panics while holding the lock; recover from poison anyway.
        self.inner.control.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Taken after [`control`](Self::control) to read the live count and
    /// act on it (start workers, send `Quit`s, drop a backlog nobody will
    /// run) while no idle worker is halfway through retiring (see
    /// `Counters::try_retire`).
    fn retiring(&self) -> MutexGuard<'_, ()> {
        self.inner
            .counters
            .retiring
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.inner.counters.name
    }

    /// The pool's name, shared (no copy).
    pub(crate) fn name_arc(&self) -> Arc<str> {
        Arc::clone(&self.inner.counters.name)
    }

    /// How it runs jobs.
    pub(crate) fn pool_mode(&self) -> PoolMode {
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
        let unrunnable = {
            let _r = self.retiring();
            self.grow(&mut c)
        };
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
                // Retired workers' handles would pile up in a long-lived
                // pool that grows and shrinks.
                #[cfg(not(loom))]
                c.threads.retain(|t| !t.is_finished());
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
    pub(crate) fn submit(&self, job: Job) -> Result<(), PoolStopped> {
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
        let r = self.retiring();
        if !c.started || c.joined || self.workers() >= c.max {
            return;
        }
        if counters.idle_for_jobs() < counters.queued.load(Ordering::Acquire) {
            if let Err(e) = self.spawn(&mut c) {
                let unrunnable = self.strand_check();
                drop(r);
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
        self.inner.counters.min.store(min, Ordering::SeqCst);
        if !c.started || c.joined || self.inner.mode != PoolMode::Threads {
            return Ok(());
        }
        let counters = &self.inner.counters;
        let r = self.retiring();
        // Live workers only rise under this lock, so this count cannot grow
        // under us, nor (under `retiring`) fall by a retirement; the thread
        // that takes a Quit is out of it from now on.
        for _ in max..self.workers() {
            counters.workers.fetch_sub(1, Ordering::AcqRel);
            counters.quits.fetch_add(1, Ordering::AcqRel);
            if self.inner.queue.push(Msg::Quit).is_err() {
                // Closed only by `begin_stop`, which sets `joined` first.
                counters.quits.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let unrunnable = self.grow(&mut c);
        drop(r);
        drop(c);
        drop_unrunnable(unrunnable.0, unrunnable.1);
        Ok(())
    }

    /// Runs every job queued now on the calling thread, for
    /// [`PoolMode::Manual`] pools. Returns how many ran. On a pool with real
    /// threads it does nothing: the queue belongs to the workers. Reached
    /// through [`TestPool::run_pending`](crate::testing::TestPool::run_pending).
    pub(crate) fn run_pending_here(&self) -> usize {
        let n = self.inner.queue.len();
        let mut ran = 0;
        for _ in 0..n {
            if self.run_one_here() {
                ran += 1;
            }
        }
        ran
    }

    /// Runs the oldest queued job on the calling thread; false if none, or if
    /// the pool has real threads.
    pub(crate) fn run_one_here(&self) -> bool {
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
    pub(crate) fn begin_stop(&self) -> Vec<JoinHandle<()>> {
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
        let r = self.retiring();
        if self.inner.mode != PoolMode::Threads || self.workers() == 0 {
            // Nobody will ever run the backlog: drop it now, so the jobs'
            // owners learn it (defer_to_thread_pool fails their Deferreds).
            let dropped = self.take_jobs();
            drop(r);
            drop(c);
            drop_unrunnable(dropped, None);
        }
        threads
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
mod tests;
