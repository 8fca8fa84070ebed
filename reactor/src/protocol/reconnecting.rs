//! [`ReconnectingClientFactory`]: a client factory that reconnects with
//! exponential back-off. Mirrors
//! `twisted.internet.protocol.ReconnectingClientFactory`.

use std::cell::{Cell, RefCell};
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::rc::{Rc, Weak};
use std::time::Duration;

use deferred::{Failure, ReactorTime, ScheduledCall};

use crate::address::Address;
use crate::interfaces::Connector;
use crate::protocol::{ClientFactory, Factory, Protocol};

/// Twisted's `maxDelay`: the longest wait between attempts, in seconds.
pub const MAX_DELAY: f64 = 3600.0;
/// Twisted's `initialDelay`, in seconds.
pub const INITIAL_DELAY: f64 = 1.0;
/// Twisted's `factor`, `2.7182818284590451` (e).
pub const FACTOR: f64 = std::f64::consts::E;
/// Twisted's `jitter`: the standard deviation of the delay, as a fraction
/// of it.
pub const JITTER: f64 = 0.119_626_565_582;

/// `random.normalvariate(mu, sigma)`: the source of the jitter.
pub type NormalVariate = Box<dyn FnMut(f64, f64) -> f64>;

struct State {
    max_delay: Cell<f64>,
    initial_delay: Cell<f64>,
    factor: Cell<f64>,
    jitter: Cell<f64>,
    delay: Cell<f64>,
    retries: Cell<u32>,
    max_retries: Cell<Option<u32>>,
    continue_trying: Cell<bool>,
    reset_on_build: Cell<bool>,
    connector: RefCell<Option<Rc<dyn Connector>>>,
    clock: RefCell<Option<Rc<dyn ReactorTime>>>,
    call_id: RefCell<Option<Box<dyn ScheduledCall>>>,
    normal: RefCell<NormalVariate>,
}

/// A [`ClientFactory`] that wraps the user's and, when a connection fails
/// or is lost, connects again after a delay that grows by [`FACTOR`] per
/// attempt (from [`INITIAL_DELAY`] up to [`MAX_DELAY`] seconds, with
/// [`JITTER`]), until [`stop_trying`](Self::stop_trying) or
/// `max_retries`. Mirrors `twisted.internet.protocol.ReconnectingClientFactory`.
///
/// Twisted's user subclasses it and calls `resetDelay()` once connected,
/// usually from `buildProtocol`; here the user's factory is wrapped and
/// [`set_reset_delay_on_build`](Self::set_reset_delay_on_build) does that
/// (or the protocol calls [`reset_delay`](Self::reset_delay) through an
/// `Rc` of this factory). The user's `client_connection_failed` /
/// `client_connection_lost` run first, then the retry is scheduled.
///
/// The clock defaults, as Twisted's, to the (default) reactor at the first
/// retry; [`set_clock`](Self::set_clock) injects another (a
/// [`MemoryReactor`](crate::testing::MemoryReactor) or a
/// [`Clock`](crate::testing::Clock) in tests).
///
/// # Examples
///
/// ```
/// use reactor::prelude::*;
/// use reactor::protocol::ReconnectingClientFactory;
/// use reactor::testing::MemoryReactor;
/// use reactor::{Address, ConnectError, DEFAULT_CONNECT_TIMEOUT};
/// use deferred::Failure;
/// use std::rc::Rc;
///
/// struct Client;
/// impl Factory for Client {
///     fn build_protocol(&self, _: &Address) -> Option<Box<dyn Protocol>> { None }
/// }
/// impl ClientFactory for Client {}
///
/// let reactor = MemoryReactor::new();
/// let factory = Rc::new(ReconnectingClientFactory::new(Client));
/// factory.set_clock(Rc::new(reactor.clone()));
/// factory.set_jitter(0.0);
/// let connector = reactor.connect_tcp("127.0.0.1", 1079, factory.clone(), DEFAULT_CONNECT_TIMEOUT, None);
/// factory.client_connection_failed(&connector, Failure::new(ConnectError::Timeout));
/// assert_eq!(factory.retries(), 1);
/// reactor.advance(factory.delay());
/// assert_eq!(reactor.connectors()[0].connect_calls(), 1);
/// ```
pub struct ReconnectingClientFactory<F> {
    inner: F,
    state: Rc<State>,
}

fn default_normal_variate() -> NormalVariate {
    // A small generator, seeded from the standard library's per-process
    // random keys: the jitter needs spread, not cryptographic quality, and
    // this keeps the crate free of a random-number dependency.
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0x9e37_79b9_7f4a_7c15);
    let mut s = h.finish() | 1;
    let mut uniform = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    Box::new(move |mu, sigma| {
        // Box-Muller.
        let (u1, u2) = (uniform(), uniform());
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        mu + sigma * z
    })
}

impl<F: ClientFactory> ReconnectingClientFactory<F> {
    /// Wraps `inner` with Twisted's defaults: delay 1 s growing by e up to
    /// 3600 s, jitter 0.119626565582, no maximum number of retries.
    pub fn new(inner: F) -> Self {
        ReconnectingClientFactory {
            inner,
            state: Rc::new(State {
                max_delay: Cell::new(MAX_DELAY),
                initial_delay: Cell::new(INITIAL_DELAY),
                factor: Cell::new(FACTOR),
                jitter: Cell::new(JITTER),
                delay: Cell::new(INITIAL_DELAY),
                retries: Cell::new(0),
                max_retries: Cell::new(None),
                continue_trying: Cell::new(true),
                reset_on_build: Cell::new(false),
                connector: RefCell::new(None),
                clock: RefCell::new(None),
                call_id: RefCell::new(None),
                normal: RefCell::new(default_normal_variate()),
            }),
        }
    }

    /// The wrapped factory.
    pub fn inner(&self) -> &F {
        &self.inner
    }

    /// The clock for the retries. Mirrors assigning `clock`.
    pub fn set_clock(&self, clock: Rc<dyn ReactorTime>) {
        *self.state.clock.borrow_mut() = Some(clock);
    }

    /// Replaces `random.normalvariate` (for deterministic tests).
    pub fn set_normal_variate(&self, f: NormalVariate) {
        *self.state.normal.borrow_mut() = f;
    }

    /// Sets `maxDelay` (seconds).
    pub fn set_max_delay(&self, seconds: f64) {
        self.state.max_delay.set(seconds);
    }

    /// Sets `initialDelay` (seconds; also the current delay, as before any
    /// attempt).
    pub fn set_initial_delay(&self, seconds: f64) {
        self.state.initial_delay.set(seconds);
        self.state.delay.set(seconds);
    }

    /// Sets `factor`.
    pub fn set_factor(&self, factor: f64) {
        self.state.factor.set(factor);
    }

    /// Sets `jitter` (0 for none).
    pub fn set_jitter(&self, jitter: f64) {
        self.state.jitter.set(jitter);
    }

    /// Sets `maxRetries` (`None`: no limit).
    pub fn set_max_retries(&self, max_retries: Option<u32>) {
        self.state.max_retries.set(max_retries);
    }

    /// Calls [`reset_delay`](Self::reset_delay) whenever a protocol is
    /// built, i.e. once a connection is made: Twisted's documented idiom of
    /// calling `resetDelay()` from `buildProtocol`.
    pub fn set_reset_delay_on_build(&self, enabled: bool) {
        self.state.reset_on_build.set(enabled);
    }

    /// The current delay, in seconds. Mirrors `delay`.
    pub fn delay(&self) -> f64 {
        self.state.delay.get()
    }

    /// Consecutive attempts since the last reset. Mirrors `retries`.
    pub fn retries(&self) -> u32 {
        self.state.retries.get()
    }

    /// `maxRetries`.
    pub fn max_retries(&self) -> Option<u32> {
        self.state.max_retries.get()
    }

    /// False after [`stop_trying`](Self::stop_trying). Mirrors
    /// `continueTrying`.
    pub fn continue_trying(&self) -> bool {
        self.state.continue_trying.get()
    }

    /// The connector of the last failure or loss. Mirrors `connector`.
    pub fn connector(&self) -> Option<Rc<dyn Connector>> {
        self.state.connector.borrow().clone()
    }

    /// True while a retry is scheduled (Twisted's `_callID` is set).
    pub fn retry_pending(&self) -> bool {
        self.state
            .call_id
            .borrow()
            .as_ref()
            .is_some_and(|c| c.active())
    }

    /// Schedules `connector.connect()` (or the last connector's) after the
    /// next delay, unless stopped or past `max_retries`. Returns false when
    /// no retry was scheduled. Mirrors `retry(connector=None)`, which
    /// raises `ValueError("no connector to retry")` when there is none; here
    /// that is logged and false.
    pub fn retry(&self, connector: Option<&Rc<dyn Connector>>) -> bool {
        let st = &self.state;
        let Some(connector) = connector.cloned().or_else(|| st.connector.borrow().clone()) else {
            if !st.continue_trying.get() {
                return false;
            }
            tracing::error!("ReconnectingClientFactory.retry: no connector to retry");
            return false;
        };
        let (host, port) = connector.get_destination();
        if !st.continue_trying.get() {
            tracing::info!(host, port, "abandoning connector on explicit request");
            return false;
        }
        st.retries.set(st.retries.get() + 1);
        if let Some(max) = st.max_retries.get() {
            if st.retries.get() > max {
                tracing::info!(
                    host,
                    port,
                    retries = st.retries.get(),
                    "abandoning connector after max retries"
                );
                return false;
            }
        }
        let mut delay = (st.delay.get() * st.factor.get()).min(st.max_delay.get());
        let jitter = st.jitter.get();
        if jitter != 0.0 {
            delay = (st.normal.borrow_mut())(delay, delay * jitter);
        }
        // A normal draw can (very rarely) be negative; a timer cannot wait a
        // negative time.
        if !delay.is_finite() || delay < 0.0 {
            delay = 0.0;
        }
        st.delay.set(delay);
        tracing::info!(host, port, delay, "will retry");
        let clock = st.clock.borrow().clone();
        let clock = clock.unwrap_or_else(|| {
            let r: Rc<dyn ReactorTime> = Rc::new(crate::global::default_reactor());
            *st.clock.borrow_mut() = Some(Rc::clone(&r));
            r
        });
        let weak: Weak<State> = Rc::downgrade(st);
        let call = clock.call_later_boxed(
            Duration::from_secs_f64(delay),
            Box::new(move || {
                if let Some(st) = weak.upgrade() {
                    st.call_id.borrow_mut().take();
                }
                connector.connect();
            }),
        );
        *st.call_id.borrow_mut() = Some(call);
        true
    }

    /// Cancels a scheduled retry, stops retrying, and stops the connector's
    /// attempt in progress (its `NotConnectingError` is ignored). Mirrors
    /// `stopTrying`.
    pub fn stop_trying(&self) {
        let st = &self.state;
        if let Some(call) = st.call_id.borrow_mut().take() {
            call.cancel();
        }
        st.continue_trying.set(false);
        // Not borrowed across the call: `stop_connecting` may report the
        // failure to this factory synchronously.
        let connector = st.connector.borrow().clone();
        if let Some(c) = connector {
            let _ = c.stop_connecting();
        }
    }

    /// Back to the initial delay, zero retries, trying again; call it once
    /// connected. Mirrors `resetDelay`.
    pub fn reset_delay(&self) {
        let st = &self.state;
        st.delay.set(st.initial_delay.get());
        st.retries.set(0);
        st.call_id.borrow_mut().take();
        st.continue_trying.set(true);
    }

    fn connection_ended(&self, connector: &Rc<dyn Connector>) {
        if self.state.continue_trying.get() {
            *self.state.connector.borrow_mut() = Some(Rc::clone(connector));
            self.retry(None);
        }
    }
}

impl<F: fmt::Debug> fmt::Debug for ReconnectingClientFactory<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReconnectingClientFactory")
            .field("inner", &self.inner)
            .field("delay", &self.state.delay.get())
            .field("retries", &self.state.retries.get())
            .field("max_retries", &self.state.max_retries.get())
            .field("continue_trying", &self.state.continue_trying.get())
            .finish()
    }
}

impl<F: ClientFactory> Factory for ReconnectingClientFactory<F> {
    fn build_protocol(&self, addr: &Address) -> Option<Box<dyn Protocol>> {
        if self.state.reset_on_build.get() {
            self.reset_delay();
        }
        self.inner.build_protocol(addr)
    }
    fn start_factory(&self) {
        self.inner.start_factory();
    }
    fn stop_factory(&self) {
        self.inner.stop_factory();
    }
}

impl<F: ClientFactory> ClientFactory for ReconnectingClientFactory<F> {
    fn started_connecting(&self, connector: &Rc<dyn Connector>) {
        self.inner.started_connecting(connector);
    }

    /// The user's `client_connection_failed`, then a retry (unless
    /// stopped). Mirrors `clientConnectionFailed`.
    fn client_connection_failed(&self, connector: &Rc<dyn Connector>, reason: Failure) {
        self.inner.client_connection_failed(connector, reason);
        self.connection_ended(connector);
    }

    /// The user's `client_connection_lost`, then a retry (unless stopped).
    /// Mirrors `clientConnectionLost`.
    fn client_connection_lost(&self, connector: &Rc<dyn Connector>, reason: Failure) {
        self.inner.client_connection_lost(connector, reason);
        self.connection_ended(connector);
    }
}
