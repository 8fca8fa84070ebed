//! [`Reactor`]: the event loop.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use deferred::{Deferred, ReactorTime, ScheduledCall};
use mio::{Events, Poll, Token, Waker};

use crate::errors::CannotListenError;
use crate::errors::{ReactorAlreadyRunning, ReactorNotRestartable, ReactorNotRunning, RunError};
use crate::interfaces::{
    Connector, ListeningPort, ReactorCore, ReactorDelayedCalls, ReactorExt, ReactorFromThreads,
    ReactorTcp, ReactorThreads,
};
use crate::loop_spin::LoopSpin;
use crate::protocol::{ClientFactory, Factory};
use crate::remote::LoopQueue;
use crate::shutdown::{ShutdownGate, ShutdownHold};
use crate::tcp::Io;
use crate::threadpool::{PoolConfigError, ThreadPool};
use crate::time::{monotonic_seconds, DelayedCall, Runner, TimerQueue};
use crate::triggers::{Phase, SystemEvents, TriggerError, TriggerFn, TriggerId};

const WAKE: Token = Token(0);
/// Twisted caps the poll timeout at this many seconds.
const MAX_TIMEOUT: f64 = 2_147_483.0;

#[derive(Debug, Clone, Copy, Default)]
struct RunState {
    started: bool,
    running: bool,
    stopped: bool,
    just_stopped: bool,
    started_before: bool,
    /// The `shutdown` event has fired (by `stop`, or by hand with
    /// `fire_system_event`): shutdown holds keep the loop turning.
    shutting_down: bool,
    /// `crash()` was called: the loop ends at once, holds or not.
    crashed: bool,
}

struct ReactorPool {
    pool: ThreadPool,
    start_id: Option<TriggerId>,
    shutdown_id: TriggerId,
}

pub(crate) struct Inner {
    poll: RefCell<Poll>,
    events: RefCell<Events>,
    queue: LoopQueue,
    timers: TimerQueue,
    triggers: Rc<SystemEvents>,
    state: Cell<RunState>,
    pool: RefCell<Option<ReactorPool>>,
    spin: LoopSpin,
    shutdown: Rc<ShutdownGate>,
    io: Io,
}

/// The event loop. Mirrors Twisted's reactor (`ReactorBase` on a poller).
///
/// The operations every reactor has (`call_when_running`, `call_later`,
/// `stop`, `call_from_thread`, `get_thread_pool`, `ensure_deferred`...) are
/// trait methods: `use reactor::prelude::*;`. The inherent methods here are
/// the ones only the real loop has (`run`, `iterate`, `crash`...).
///
/// One reactor per loop thread; it is `!Send`, and so is everything that
/// touches Deferreds. A `Reactor` is a cheap handle: clones share one loop, so
/// callbacks can capture a clone to call `stop`, `call_later` and so on.
/// Other threads reach the loop through
/// [`remote`](ReactorFromThreads::remote).
///
/// Each turn ([`iterate`](Self::iterate), or the loop inside
/// [`run`](Self::run)) runs the calls queued from threads (FIFO, those queued
/// when the turn began), then the timed calls that are due, then the shutdown
/// event if `stop` was called, then sends what TCP transports buffered (one
/// write per connection per turn) and delivers the `connection_lost`s owed,
/// then waits in `mio::Poll` until the next timer, a socket's readiness or a
/// wakeup from another thread, and handles the sockets that are ready (TCP:
/// [`ReactorTcp`], Twisted's `IReactorTCP`). At shutdown every connection
/// and listening port is closed, and every `connection_lost` delivered,
/// before `run` returns (Twisted's `disconnectAll`).
///
/// # Examples
///
/// ```
/// use reactor::prelude::*;
/// use reactor::{Phase, Reactor};
/// use std::{cell::RefCell, rc::Rc, time::Duration};
///
/// let reactor = Reactor::new().unwrap();
/// let log = Rc::new(RefCell::new(Vec::new()));
/// let (l1, l2, l3) = (log.clone(), log.clone(), log.clone());
/// reactor.call_when_running(move || l1.borrow_mut().push("running"));
/// reactor.add_system_event_trigger(Phase::Before, "shutdown", move || l2.borrow_mut().push("before shutdown"));
/// let r = reactor.clone();
/// reactor.call_later(Duration::from_millis(1), move || {
///     l3.borrow_mut().push("timer");
///     r.stop().unwrap();
/// });
/// reactor.run().unwrap();
/// assert_eq!(*log.borrow(), ["running", "timer", "before shutdown"]);
/// assert!(reactor.run().is_err()); // ReactorNotRestartable
/// ```
///
/// # Implementation notes
/// Exactly one `mio::Waker` per `Poll`. Other threads wake the loop only when
/// it announced it is going to sleep (see [`RemoteHandle`](crate::RemoteHandle)). While thread-pool
/// jobs are outstanding, the loop spins for a bounded time before sleeping,
/// because a result usually arrives sooner than a cross-core wakeup would
/// take: by default one and a half times its recent waits for a result,
/// between 20 µs and 200 µs, so a database round trip of tens of µs is
/// caught without sleeping and a few-µs SQLite job keeps the 20 µs
/// ([`set_spin`](Self::set_spin) fixes it).
#[derive(Clone)]
pub struct Reactor {
    inner: Rc<Inner>,
}

impl Reactor {
    /// A new reactor for the current thread, not running. Fails only if the OS
    /// refuses an epoll instance or an eventfd.
    pub fn new() -> io::Result<Reactor> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKE)?;
        let registry = poll.registry().try_clone()?;
        let inner = Rc::new(Inner {
            poll: RefCell::new(poll),
            events: RefCell::new(Events::with_capacity(64)),
            queue: LoopQueue::new(Some(waker)),
            timers: TimerQueue::new(Box::new(monotonic_seconds)),
            triggers: Rc::new(SystemEvents::default()),
            state: Cell::new(RunState::default()),
            pool: RefCell::new(None),
            spin: LoopSpin::new(),
            shutdown: Rc::new(ShutdownGate::default()),
            io: Io::new(registry),
        });
        let reactor = Reactor { inner };
        crate::global::register(reactor.weak());
        let gate = Rc::clone(&reactor.inner.shutdown);
        reactor
            .inner
            .triggers
            .set_after_gate(Box::new(move |event| gate.gate(event)));
        // As Twisted's ReactorBase constructor: these come first, so they run
        // before any user `during` trigger.
        reactor.add_really_start_running();
        let weak = reactor.weak();
        reactor.add_system_event_trigger(Phase::During, "shutdown", move || {
            if let Some(r) = upgrade(&weak) {
                r.end_started();
                r.update(|s| s.shutting_down = true);
            }
        });
        // Twisted's `disconnectAll`, right after the reactor's own `during`
        // trigger: every connection gets `connection_lost` before `run`
        // returns.
        let weak = reactor.weak();
        reactor.add_system_event_trigger(Phase::During, "shutdown", move || {
            if let Some(r) = upgrade(&weak) {
                r.inner.io.disconnect_all(&r);
            }
        });
        Ok(reactor)
    }

    pub(crate) fn weak(&self) -> Weak<Inner> {
        Rc::downgrade(&self.inner)
    }

    pub(crate) fn io(&self) -> &Io {
        &self.inner.io
    }

    fn add_really_start_running(&self) {
        let weak = self.weak();
        self.add_system_event_trigger(Phase::During, "startup", move || {
            if let Some(r) = upgrade(&weak) {
                r.update(|s| s.running = true);
            }
        });
    }

    fn state(&self) -> RunState {
        self.inner.state.get()
    }

    fn update(&self, f: impl FnOnce(&mut RunState)) {
        let mut s = self.inner.state.get();
        f(&mut s);
        self.inner.state.set(s);
    }

    /// Fixes how long the loop spins waiting for thread results before it
    /// sleeps (zero disables spinning). By default the budget follows the
    /// workload: one and a half times the loop's recent waits for a result,
    /// between 20 µs and 200 µs (see the implementation notes above).
    pub fn set_spin(&self, spin: Duration) {
        self.inner.spin.set_fixed(spin);
    }

    /// Fires `startup` and runs the loop until `stop` (after the shutdown
    /// event's three phases) or `crash`. Mirrors `reactor.run()`; logs `Main
    /// loop terminated.` on the way out.
    pub fn run(&self) -> Result<(), RunError> {
        self.start_running()?;
        self.main_loop();
        if self.state().shutting_down {
            // Whatever was opened after `disconnect_all` (by a
            // `connection_lost` or a late trigger) is closed too.
            self.inner.io.disconnect_all(self);
        }
        tracing::info!("Main loop terminated.");
        Ok(())
    }

    /// Marks the reactor started and fires `startup`, without looping. Mirrors
    /// `startRunning()`; [`run`](Self::run) calls it.
    pub fn start_running(&self) -> Result<(), RunError> {
        let s = self.state();
        if s.started {
            return Err(ReactorAlreadyRunning.into());
        }
        if s.started_before {
            return Err(ReactorNotRestartable.into());
        }
        self.update(|s| {
            s.started = true;
            s.stopped = false;
            s.crashed = false;
            s.shutting_down = false;
        });
        self.fire_system_event("startup");
        Ok(())
    }

    /// True while the loop must keep turning: started; or shut down by `stop`
    /// with a [`ShutdownHold`] still held or the `after` phase of `shutdown`
    /// not yet run. Other calls still queued then are left behind, as in
    /// Twisted: whoever needs a result delivered during shutdown holds it.
    fn keep_turning(&self) -> bool {
        let s = self.state();
        s.started || (!s.crashed && (s.stopped || s.shutting_down) && self.inner.shutdown.pending())
    }

    fn main_loop(&self) {
        while self.keep_turning() {
            self.run_until_current();
            if !self.keep_turning() {
                break;
            }
            let timeout = self.timeout();
            self.do_iteration(timeout);
        }
    }

    /// Runs one turn's work: queued thread calls, due timers, and the shutdown
    /// event if `stop` was called. Mirrors `runUntilCurrent()`.
    pub fn run_until_current(&self) {
        self.inner.queue.drain();
        let now = self.seconds();
        self.inner.timers.run_due(now, true, Runner::CatchAndLog);
        if self.state().just_stopped {
            self.update(|s| s.just_stopped = false);
            self.fire_system_event("shutdown");
        }
        self.inner.shutdown.release();
    }

    /// Time until the next timed call, if any. Mirrors `timeout()`.
    pub fn timeout(&self) -> Option<Duration> {
        let next = self.inner.timers.next_time()?;
        let secs = (next - self.seconds()).clamp(0.0, MAX_TIMEOUT);
        // Times are kept finite; clamp leaves NaN alone, so be explicit.
        let secs = if secs.is_nan() { MAX_TIMEOUT } else { secs };
        Some(Duration::from_secs_f64(secs))
    }

    /// Delivers the I/O work owed from the last turn (deferred
    /// `connection_lost`s, buffered writes), then waits for I/O or wakeups
    /// for at most `timeout` (forever if `None`) and handles the I/O.
    ///
    /// Spinning for thread results (see [`set_spin`](Self::set_spin)) also
    /// polls the sockets without blocking, so it never delays I/O; and a
    /// turn with work still pending (queued calls, a source that used up its
    /// budget) polls without sleeping.
    fn do_iteration(&self, timeout: Option<Duration>) {
        let io = &self.inner.io;
        io.before_poll(self);
        let queue = &self.inner.queue;
        let has_io = io.has_sources();
        let busy = !queue.is_empty() || io.has_pending();
        if busy || timeout == Some(Duration::ZERO) {
            if has_io || io.has_pending() {
                self.poll_io(Some(Duration::ZERO));
            }
            return;
        }
        // While jobs are outstanding, how long the loop waits for a result
        // feeds its spin budget (see `loop_spin.rs`).
        let waiting = (queue.outstanding() > 0).then(Instant::now);
        if let Some(since) = waiting {
            // Never past the next timer: a spin is a wait too.
            let budget = match timeout {
                Some(t) => self.inner.spin.budget().min(t),
                None => self.inner.spin.budget(),
            };
            if has_io {
                let spun = crate::spin::spin_until(budget, || {
                    !queue.is_empty() || self.poll_events(Some(Duration::ZERO)) > 0
                });
                if spun {
                    if queue.result_queued() {
                        self.inner.spin.observed(since.elapsed());
                    }
                    self.dispatch_events();
                    return;
                }
            } else if crate::spin::spin_until(budget, || !queue.is_empty()) {
                if queue.result_queued() {
                    self.inner.spin.observed(since.elapsed());
                }
                return;
            }
        }
        if !queue.prepare_sleep() {
            if has_io {
                self.poll_io(Some(Duration::ZERO));
            }
            return;
        }
        // A spin was part of this wait: sleep for what is left of it, so a
        // timer due meanwhile is not made late by the spin (and `iterate`
        // waits at most its delay).
        let timeout = match (timeout, waiting) {
            (Some(t), Some(since)) => Some(t.saturating_sub(since.elapsed())),
            _ => timeout,
        };
        self.poll_events(timeout);
        queue.woke();
        if let Some(since) = waiting {
            let waited = since.elapsed();
            // A wait that ended with a result teaches the budget; so does
            // one longer than any spin that ended without one (a timer, a
            // call, a socket woke the loop): results are at least that slow,
            // so a long job outstanding does not keep the loop spinning on
            // an estimate learnt from earlier, faster ones. Shorter waits
            // without a result say nothing about the jobs.
            if queue.result_queued() || waited > crate::loop_spin::CAP {
                self.inner.spin.observed(waited);
            }
        }
        self.dispatch_events();
    }

    /// Polls, then handles what was polled.
    fn poll_io(&self, timeout: Option<Duration>) {
        self.poll_events(timeout);
        self.dispatch_events();
    }

    /// Polls into the events buffer; returns how many events arrived.
    fn poll_events(&self, timeout: Option<Duration>) -> usize {
        let mut events = self.inner.events.borrow_mut();
        match self.inner.poll.borrow_mut().poll(&mut events, timeout) {
            Ok(()) => events.iter().count(),
            Err(e) => {
                events.clear();
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(error = %e, "Unexpected error in main loop");
                }
                0
            }
        }
    }

    /// Runs the sources that the last poll reported (the waker needs no
    /// handling) and those left over from the last turn.
    fn dispatch_events(&self) {
        // Copied out first: a protocol may iterate the reactor from inside.
        let ready = self.inner.io.collect(&self.inner.events.borrow());
        self.inner.io.dispatch(self, ready);
    }

    /// One turn: the work that is due, then a wait of at most `delay`. Mirrors
    /// `reactor.iterate(delay)`.
    pub fn iterate(&self, delay: Duration) {
        self.run_until_current();
        let timeout = match self.timeout() {
            Some(t) if t < delay => t,
            _ => delay,
        };
        self.do_iteration(Some(timeout));
    }

    /// Leaves the loop after the current turn without firing `shutdown`;
    /// `run` may be called again. Mirrors `reactor.crash()`.
    ///
    /// A crash ends the loop even while shutdown holds are held (their work
    /// is abandoned, as everything else is by a crash).
    pub fn crash(&self) {
        self.update(|s| s.crashed = true);
        self.end_started();
    }

    /// What the `during`/`shutdown` trigger and `crash` share: the loop is
    /// no longer started (Twisted's shutdown trigger is `crash` itself).
    fn end_started(&self) {
        self.update(|s| {
            s.started = false;
            s.running = false;
        });
        self.add_really_start_running();
    }

    /// Ids of the triggers registered for `event` in `phase` that have not
    /// run, in order.
    pub fn system_event_triggers(&self, event: &str, phase: Phase) -> Vec<TriggerId> {
        self.inner.triggers.ids(event, phase)
    }

    /// The reactor's own pool (`ThreadPool(0, 10, "twisted.internet.reactor")`),
    /// created on first use and started when the reactor runs.
    ///
    /// At shutdown it is stopped in a `before` trigger that waits, without
    /// blocking the loop, for queued and running jobs, so their Deferreds still
    /// fire before `run` returns (Twisted stops it in `during`, blocking).
    fn reactor_pool(&self) -> ThreadPool {
        if let Some(p) = self.inner.pool.borrow().as_ref() {
            return p.pool.clone();
        }
        let pool = ThreadPool::new(0, 10, "twisted.internet.reactor").expect("0 <= 10");
        let starter = pool.clone();
        let start_id = self.call_when_running(move || {
            if let Err(e) = starter.start() {
                tracing::error!(error = %e, "could not start the reactor thread pool");
            }
        });
        let weak = self.weak();
        let shutdown_id = self.add_system_event_trigger(Phase::Before, "shutdown", move || {
            upgrade(&weak).and_then(|r| r.stop_thread_pool())
        });
        *self.inner.pool.borrow_mut() = Some(ReactorPool {
            pool: pool.clone(),
            start_id,
            shutdown_id,
        });
        pool
    }

    /// Stops and forgets the reactor's pool; the Deferred fires once every
    /// worker has exited.
    fn stop_thread_pool(&self) -> Option<Deferred<()>> {
        let rp = self.inner.pool.borrow_mut().take()?;
        if let Some(id) = &rp.start_id {
            let _ = self.remove_system_event_trigger(id);
        }
        let _ = self.remove_system_event_trigger(&rp.shutdown_id);
        Some(crate::threads::stop_thread_pool(self, &rp.pool))
    }
}

/// A weak handle on a reactor, for the per-thread registry of reactors.
pub(crate) type ReactorWeak = Weak<Inner>;

impl Reactor {
    pub(crate) fn upgrade_weak(weak: &Weak<Inner>) -> Option<Reactor> {
        upgrade(weak)
    }

    /// True if both handles are the same reactor.
    pub fn ptr_eq(a: &Reactor, b: &Reactor) -> bool {
        Rc::ptr_eq(&a.inner, &b.inner)
    }
}

fn upgrade(weak: &Weak<Inner>) -> Option<Reactor> {
    weak.upgrade().map(|inner| Reactor { inner })
}

impl fmt::Debug for Reactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reactor")
            .field("state", &self.state())
            .field("queue", &self.inner.queue)
            .field("timers", &self.inner.timers)
            .field("triggers", &self.inner.triggers)
            .finish()
    }
}

impl ReactorCore for Reactor {
    fn running(&self) -> bool {
        self.state().running
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
    /// The `shutdown` event fires at the end of the current turn, and `run`
    /// returns after its `after` phase. Mirrors `reactor.stop()`.
    fn stop(&self) -> Result<(), ReactorNotRunning> {
        let s = self.state();
        if s.stopped || !s.started {
            return Err(ReactorNotRunning);
        }
        self.update(|s| {
            s.stopped = true;
            s.just_stopped = true;
            s.started_before = true;
        });
        Ok(())
    }
    fn hold_shutdown(&self) -> ShutdownHold {
        self.inner.shutdown.hold()
    }
    fn has_shut_down(&self) -> bool {
        self.state().shutting_down
    }
}

impl ReactorTime for Reactor {
    /// Seconds on the reactor's monotonic clock. Mirrors `seconds()`.
    fn seconds(&self) -> f64 {
        self.inner.timers.now()
    }
    fn call_later_boxed(&self, delay: Duration, f: Box<dyn FnOnce()>) -> Box<dyn ScheduledCall> {
        Box::new(self.inner.timers.call_later(delay, f))
    }
}

impl ReactorDelayedCalls for Reactor {
    fn delayed_call_boxed(&self, delay: Duration, f: Box<dyn FnOnce()>) -> DelayedCall {
        self.inner.timers.call_later(delay, f)
    }
    fn get_delayed_calls(&self) -> Vec<DelayedCall> {
        self.inner.timers.delayed_calls()
    }
}

impl ReactorFromThreads for Reactor {
    fn loop_queue(&self) -> &LoopQueue {
        &self.inner.queue
    }
}

impl ReactorThreads for Reactor {
    /// See [`Reactor`]'s notes: stopped at shutdown without blocking.
    fn get_thread_pool(&self) -> ThreadPool {
        self.reactor_pool()
    }
    fn new_thread_pool(
        &self,
        min: usize,
        max: usize,
        name: &str,
    ) -> Result<ThreadPool, PoolConfigError> {
        ThreadPool::new(min, max, name)
    }
}

impl ReactorTcp for Reactor {
    /// Binds now (so the port is known at once) and accepts on the loop.
    ///
    /// # Examples
    ///
    /// An echo server on a free port and a client that stops the reactor
    /// once its line came back:
    ///
    /// ```
    /// use reactor::prelude::*;
    /// use reactor::{Address, Reactor, DEFAULT_BACKLOG, DEFAULT_CONNECT_TIMEOUT};
    /// use std::{cell::RefCell, rc::Rc};
    ///
    /// struct Echo(Option<Rc<dyn Transport>>);
    /// impl Protocol for Echo {
    ///     fn connection_made(&mut self, t: Rc<dyn Transport>) { self.0 = Some(t); }
    ///     fn data_received(&mut self, data: &[u8]) { self.0.as_ref().unwrap().write(data); }
    /// }
    /// struct EchoFactory;
    /// impl Factory for EchoFactory {
    ///     fn build_protocol(&self, _: &Address) -> Option<Box<dyn Protocol>> { Some(Box::new(Echo(None))) }
    /// }
    ///
    /// struct Client { reactor: Reactor, got: Rc<RefCell<Vec<u8>>>, t: Option<Rc<dyn Transport>> }
    /// impl Protocol for Client {
    ///     fn connection_made(&mut self, t: Rc<dyn Transport>) { t.write(b"hello\r\n"); self.t = Some(t); }
    ///     fn data_received(&mut self, data: &[u8]) {
    ///         self.got.borrow_mut().extend_from_slice(data);
    ///         if self.got.borrow().ends_with(b"\r\n") { self.t.as_ref().unwrap().lose_connection(); }
    ///     }
    ///     fn connection_lost(&mut self, _: deferred::Failure) { let _ = self.reactor.stop(); }
    /// }
    /// struct ClientF { reactor: Reactor, got: Rc<RefCell<Vec<u8>>> }
    /// impl Factory for ClientF {
    ///     fn build_protocol(&self, _: &Address) -> Option<Box<dyn Protocol>> {
    ///         Some(Box::new(Client { reactor: self.reactor.clone(), got: self.got.clone(), t: None }))
    ///     }
    /// }
    /// impl ClientFactory for ClientF {}
    ///
    /// let reactor = Reactor::new().unwrap();
    /// let port = reactor.listen_tcp(0, Rc::new(EchoFactory), DEFAULT_BACKLOG, "127.0.0.1").unwrap();
    /// let got = Rc::new(RefCell::new(Vec::new()));
    /// let factory = Rc::new(ClientF { reactor: reactor.clone(), got: got.clone() });
    /// reactor.connect_tcp("127.0.0.1", port.get_host().port(), factory, DEFAULT_CONNECT_TIMEOUT, None);
    /// reactor.run().unwrap();
    /// assert_eq!(&*got.borrow(), b"hello\r\n");
    /// ```
    fn listen_tcp(
        &self,
        port: u16,
        factory: Rc<dyn Factory>,
        backlog: u32,
        interface: &str,
    ) -> Result<Rc<dyn ListeningPort>, CannotListenError> {
        crate::tcp::Port::listen(self, port, factory, backlog, interface)
            .map(|p| p as Rc<dyn ListeningPort>)
    }

    /// The attempt starts on the next turn (a name is resolved on the
    /// reactor's thread pool first); see [`listen_tcp`](Self::listen_tcp)
    /// for an example.
    fn connect_tcp(
        &self,
        host: &str,
        port: u16,
        factory: Rc<dyn ClientFactory>,
        timeout: Duration,
        bind_address: Option<SocketAddr>,
    ) -> Rc<dyn Connector> {
        crate::tcp::ConnectorImpl::start(self, host, port, factory, timeout, bind_address)
    }
}
