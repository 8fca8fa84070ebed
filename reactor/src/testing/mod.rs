//! Test doubles, which Twisted ships too: [`Clock`] (Twisted's
//! `task.Clock`), [`FakeReactor`] (the `EventReactor` of Twisted's
//! `test_adbapi`, grown into a full fake), and thread pools that run their
//! jobs inline or when the test says ([`PoolMode`], [`TestPool`]; Twisted's
//! test `NonThreadPool`), and for protocols: [`StringTransport`] and
//! [`StringTransportWithDisconnection`] (Twisted's
//! `twisted.internet.testing` classes of those names) and [`MemoryReactor`]
//! (`MemoryReactorClock`), so a protocol, a factory or an endpoint is tested
//! without sockets.

mod memory_reactor;
mod string_transport;

pub use memory_reactor::{FakeConnector, FakePort, MemoryReactor, TcpClient, TcpServer};
pub use string_transport::{
    ProducerState, StringTransport, StringTransportWithDisconnection, DEFAULT_HOST, DEFAULT_PEER,
};

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use deferred::{ReactorTime, ScheduledCall};

use crate::errors::ReactorNotRunning;
use crate::interfaces::{ReactorCore, ReactorDelayedCalls, ReactorFromThreads, ReactorThreads};
use crate::remote::LoopQueue;
use crate::shutdown::{ShutdownGate, ShutdownHold};
use crate::threadpool::{PoolConfigError, ThreadPool};
use crate::time::{DelayedCall, Runner, TimerQueue};
use crate::triggers::{Phase, SystemEvents, TriggerError, TriggerFn, TriggerId};

/// How a pool runs its jobs: real threads, or one of the two test modes.
/// Pools of a [`FakeReactor`] use the mode it was made with; a lone pool
/// gets one from [`TestPool::with_mode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// Real worker threads (the normal mode).
    Threads,
    /// Every job runs synchronously on the submitting thread, like Twisted's
    /// test `NonThreadPool`. Results still reach Deferreds on a later turn,
    /// through the reactor's queue.
    Inline,
    /// Jobs wait until the test calls [`TestPool::run_pending`] or
    /// [`TestPool::run_one`] (or [`FakeReactor::run_jobs`]), which run them
    /// on the calling thread.
    Manual,
}

/// The test side of a [`ThreadPool`]: making a pool in a test mode and
/// running a [`PoolMode::Manual`] pool's jobs by hand. Implemented for
/// `ThreadPool` only.
///
/// # Examples
///
/// ```
/// use reactor::testing::{PoolMode, TestPool};
/// use reactor::ThreadPool;
/// use std::sync::{atomic::{AtomicUsize, Ordering}, Arc};
///
/// let pool = ThreadPool::with_mode(0, 1, "by-hand", PoolMode::Manual).unwrap();
/// let ran = Arc::new(AtomicUsize::new(0));
/// for _ in 0..2 {
///     let r = Arc::clone(&ran);
///     pool.call_in_thread(move || { r.fetch_add(1, Ordering::SeqCst); }).unwrap();
/// }
/// assert_eq!(ran.load(Ordering::SeqCst), 0); // queued, not run
/// assert!(pool.run_one());
/// assert_eq!(pool.run_pending(), 1);
/// assert_eq!(ran.load(Ordering::SeqCst), 2);
/// ```
pub trait TestPool: Sized {
    /// A pool that runs jobs the given way. Fails as `ThreadPool::new` does.
    fn with_mode(
        min: usize,
        max: usize,
        name: impl Into<String>,
        mode: PoolMode,
    ) -> Result<Self, PoolConfigError>;
    /// How the pool runs its jobs.
    fn mode(&self) -> PoolMode;
    /// Runs every job queued now on the calling thread, for
    /// [`PoolMode::Manual`] pools. Returns how many ran. On a pool with real
    /// threads it does nothing: the queue belongs to the workers.
    fn run_pending(&self) -> usize;
    /// Runs the oldest queued job on the calling thread; false if none, or
    /// if the pool has real threads.
    fn run_one(&self) -> bool;
}

impl TestPool for ThreadPool {
    fn with_mode(
        min: usize,
        max: usize,
        name: impl Into<String>,
        mode: PoolMode,
    ) -> Result<Self, PoolConfigError> {
        ThreadPool::build(min, max, name, mode)
    }
    fn mode(&self) -> PoolMode {
        self.pool_mode()
    }
    fn run_pending(&self) -> usize {
        self.run_pending_here()
    }
    fn run_one(&self) -> bool {
        self.run_one_here()
    }
}

/// A fake clock whose time moves only when told. Mirrors
/// `twisted.internet.task.Clock`.
///
/// Time starts at 0.0. [`advance`](Self::advance) runs the calls that become
/// due, earliest first (FIFO for ties), including calls they schedule that are
/// due too; a panic in a call propagates, as Twisted lets exceptions escape
/// `advance`. Clones share the same time and calls.
#[derive(Clone)]
pub struct Clock {
    now: Rc<Cell<f64>>,
    timers: Rc<TimerQueue>,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    /// A clock at time 0.0.
    pub fn new() -> Clock {
        let now = Rc::new(Cell::new(0.0));
        let n = Rc::clone(&now);
        Clock {
            now,
            timers: Rc::new(TimerQueue::new(Box::new(move || n.get()))),
        }
    }

    /// The current fake time. Mirrors `seconds()`.
    pub fn seconds(&self) -> f64 {
        self.now.get()
    }

    /// Schedules `f` at `seconds() + delay`. Mirrors `callLater`.
    pub fn call_later<F: FnOnce() + 'static>(&self, delay: Duration, f: F) -> DelayedCall {
        self.timers.call_later(delay, Box::new(f))
    }

    /// Moves time forward by `amount` seconds and runs what became due.
    /// Mirrors `advance(amount)`.
    ///
    /// # Panics
    /// If `amount` is negative or not finite: fake time never goes back.
    pub fn advance(&self, amount: f64) {
        assert!(
            amount.is_finite() && amount >= 0.0,
            "Clock::advance: amount must be a finite, non-negative number of seconds, got {amount}"
        );
        self.now.set(self.now.get() + amount);
        self.timers
            .run_due(self.now.get(), false, Runner::Propagate);
    }

    /// Calls [`advance`](Self::advance) for each amount. Mirrors `pump`.
    pub fn pump(&self, timings: &[f64]) {
        for &t in timings {
            self.advance(t);
        }
    }

    /// Every pending call, earliest first. Mirrors `getDelayedCalls()`.
    pub fn get_delayed_calls(&self) -> Vec<DelayedCall> {
        self.timers.delayed_calls()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Clock({}s, {} calls)",
            self.seconds(),
            self.get_delayed_calls().len()
        )
    }
}

impl ReactorTime for Clock {
    fn seconds(&self) -> f64 {
        Clock::seconds(self)
    }
    fn call_later_boxed(&self, delay: Duration, f: Box<dyn FnOnce()>) -> Box<dyn ScheduledCall> {
        Box::new(self.timers.call_later(delay, f))
    }
}

struct FakeInner {
    running: Cell<bool>,
    stopped: Cell<bool>,
    clock: Clock,
    queue: LoopQueue,
    triggers: Rc<SystemEvents>,
    pool_mode: PoolMode,
    pools: RefCell<Vec<ThreadPool>>,
    default_pool: RefCell<Option<ThreadPool>>,
    shutdown: Rc<ShutdownGate>,
}

/// A deterministic reactor for tests: triggers are recorded and inspectable,
/// time is a [`Clock`], and thread-pool work runs inline or on demand. Mirrors
/// the `EventReactor` of Twisted's `test_adbapi` (and goes further: it can
/// really run pools and deliver their results).
///
/// - [`triggers`](Self::triggers) lists the registered system event triggers,
///   like `EventReactor.triggers`;
/// - pools made by [`new_thread_pool`](ReactorThreads::new_thread_pool) and
///   [`get_thread_pool`](ReactorThreads::get_thread_pool) run jobs synchronously
///   ([`PoolMode::Inline`], Twisted's `NonThreadPool`) or when the test calls
///   [`run_jobs`](Self::run_jobs) ([`PoolMode::Manual`]); either way
///   results reach Deferreds only when the test calls [`pump`](Self::pump),
///   which is one reactor turn;
/// - [`fire_startup`](Self::fire_startup) and [`stop`](ReactorCore::stop)
///   fire the startup and shutdown events, flipping `running` in their
///   `during` phase; `stop` fires `shutdown` at once (no turn in between,
///   unlike the real reactor).
///
/// Every reactor operation (`call_when_running`, `call_later` on the fake
/// clock, `stop`, `hold_shutdown`...) is a trait method: `use
/// reactor::prelude::*;`.
///
/// # Examples
///
/// ```
/// use reactor::prelude::*;
/// use reactor::{defer_to_thread_pool, testing::FakeReactor};
/// let reactor = FakeReactor::new(false);
/// let id = reactor.call_when_running(|| ()).unwrap();
/// assert_eq!(reactor.triggers(), vec![id]);
/// let pool = reactor.new_thread_pool(1, 1, "p").unwrap();
/// let d = defer_to_thread_pool(&reactor, &pool, || Ok(5));
/// assert!(!d.has_result()); // the job ran inline, the result waits for a turn
/// reactor.pump();
/// assert_eq!(d.into_result().unwrap().unwrap(), 5);
/// ```
#[derive(Clone)]
pub struct FakeReactor {
    inner: Rc<FakeInner>,
}

impl FakeReactor {
    /// A fake reactor, running or not, whose pools run jobs inline.
    pub fn new(running: bool) -> FakeReactor {
        Self::with_pool_mode(running, PoolMode::Inline)
    }

    /// A fake reactor whose pools run jobs the given way.
    pub fn with_pool_mode(running: bool, pool_mode: PoolMode) -> FakeReactor {
        let shutdown = Rc::new(ShutdownGate::default());
        let triggers = Rc::new(SystemEvents::default());
        let gate = Rc::clone(&shutdown);
        triggers.set_after_gate(Box::new(move |event| gate.gate(event)));
        FakeReactor {
            inner: Rc::new(FakeInner {
                running: Cell::new(running),
                stopped: Cell::new(false),
                clock: Clock::new(),
                queue: LoopQueue::new(None),
                triggers,
                pool_mode,
                pools: RefCell::new(Vec::new()),
                default_pool: RefCell::new(None),
                shutdown,
            }),
        }
    }

    /// The fake clock behind `seconds` and `call_later`.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// Sets `running` directly.
    pub fn set_running(&self, running: bool) {
        self.inner.running.set(running);
    }

    /// The registered triggers that have not run, in registration order.
    /// Mirrors `EventReactor.triggers`.
    pub fn triggers(&self) -> Vec<TriggerId> {
        self.inner.triggers.all_ids()
    }

    /// One reactor turn: runs the calls and results queued from threads (those
    /// queued when it began) and the timers due now. Returns how many queued
    /// items it ran.
    pub fn pump(&self) -> usize {
        let n = self.inner.queue.drain();
        self.inner
            .clock
            .timers
            .run_due(self.inner.clock.seconds(), true, Runner::Propagate);
        self.inner.shutdown.release();
        n
    }

    /// Runs jobs waiting in [`PoolMode::Manual`] pools made by this reactor.
    /// Pools with real threads are left to their workers (running their
    /// queue here would also swallow the workers' quit messages).
    pub fn run_jobs(&self) -> usize {
        let pools: Vec<ThreadPool> = self.inner.pools.borrow().clone();
        pools
            .iter()
            .filter(|p| p.pool_mode() == PoolMode::Manual)
            .map(ThreadPool::run_pending_here)
            .sum()
    }

    /// Runs jobs and turns until neither produces anything more. Returns the
    /// number of jobs and queued items run.
    pub fn run_until_idle(&self) -> usize {
        let mut total = 0;
        loop {
            let n = self.run_jobs() + self.pump();
            if n == 0 {
                return total;
            }
            total += n;
        }
    }

    /// Advances the clock by `amount` seconds (running due timers), then takes
    /// one turn.
    pub fn advance(&self, amount: f64) {
        self.inner.clock.advance(amount);
        self.pump();
    }

    /// Fires `startup`; `running` becomes true when its `during` phase starts.
    pub fn fire_startup(&self) {
        let inner = Rc::downgrade(&self.inner);
        self.inner.triggers.fire_with(
            "startup",
            Some(Box::new(move || {
                if let Some(i) = inner.upgrade() {
                    i.running.set(true);
                }
            })),
        );
    }

    /// The fake's default pool (min 0, max 10), made like the others.
    fn default_pool(&self) -> ThreadPool {
        if let Some(p) = self.inner.default_pool.borrow().as_ref() {
            return p.clone();
        }
        let pool = self
            .make_pool(0, 10, "twisted.internet.reactor")
            .expect("0 <= 10");
        *self.inner.default_pool.borrow_mut() = Some(pool.clone());
        pool
    }

    fn make_pool(&self, min: usize, max: usize, name: &str) -> Result<ThreadPool, PoolConfigError> {
        let pool = ThreadPool::build(min, max, name, self.inner.pool_mode)?;
        self.inner.pools.borrow_mut().push(pool.clone());
        Ok(pool)
    }
}

impl fmt::Debug for FakeReactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeReactor")
            .field("running", &self.running())
            .field("clock", &self.inner.clock)
            .field("queue", &self.inner.queue)
            .field("triggers", &self.inner.triggers)
            .finish()
    }
}

impl ReactorCore for FakeReactor {
    fn running(&self) -> bool {
        self.inner.running.get()
    }
    fn call_when_running_boxed(&self, f: TriggerFn) -> Option<TriggerId> {
        self.inner.triggers.call_when_running(self.running(), f)
    }
    fn add_system_event_trigger_boxed(&self, phase: Phase, event: &str, f: TriggerFn) -> TriggerId {
        self.inner.triggers.add(phase, event, f)
    }
    fn remove_system_event_trigger(&self, id: &TriggerId) -> Result<(), TriggerError> {
        self.inner.triggers.remove(id)
    }
    fn fire_system_event(&self, event: &str) {
        self.inner.triggers.fire(event);
    }
    /// Fires `shutdown` at once (no turn in between, unlike the real
    /// reactor); `running` becomes false when its `during` phase starts.
    /// Fails if not running or already stopped.
    fn stop(&self) -> Result<(), ReactorNotRunning> {
        if !self.running() || self.inner.stopped.get() {
            return Err(ReactorNotRunning);
        }
        self.inner.stopped.set(true);
        let inner = Rc::downgrade(&self.inner);
        self.inner.triggers.fire_with(
            "shutdown",
            Some(Box::new(move || {
                if let Some(i) = inner.upgrade() {
                    i.running.set(false);
                }
            })),
        );
        Ok(())
    }
    /// As the real reactor's: while held, the `after` phase of `shutdown`
    /// waits; it runs at the first [`pump`](FakeReactor::pump) after the
    /// last hold is dropped.
    fn hold_shutdown(&self) -> ShutdownHold {
        self.inner.shutdown.hold()
    }
    fn has_shut_down(&self) -> bool {
        self.inner.stopped.get()
    }
}

impl ReactorTime for FakeReactor {
    fn seconds(&self) -> f64 {
        self.inner.clock.seconds()
    }
    fn call_later_boxed(&self, delay: Duration, f: Box<dyn FnOnce()>) -> Box<dyn ScheduledCall> {
        Box::new(self.inner.clock.timers.call_later(delay, f))
    }
}

impl ReactorDelayedCalls for FakeReactor {
    fn delayed_call_boxed(&self, delay: Duration, f: Box<dyn FnOnce()>) -> DelayedCall {
        self.inner.clock.timers.call_later(delay, f)
    }
    fn get_delayed_calls(&self) -> Vec<DelayedCall> {
        self.inner.clock.get_delayed_calls()
    }
}

impl ReactorFromThreads for FakeReactor {
    fn loop_queue(&self) -> &LoopQueue {
        &self.inner.queue
    }
}

impl ReactorThreads for FakeReactor {
    /// The fake's default pool (min 0, max 10), made like the others.
    fn get_thread_pool(&self) -> ThreadPool {
        self.default_pool()
    }
    fn new_thread_pool(
        &self,
        min: usize,
        max: usize,
        name: &str,
    ) -> Result<ThreadPool, PoolConfigError> {
        self.make_pool(min, max, name)
    }
}
