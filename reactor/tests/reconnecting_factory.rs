//! `ReconnectingClientFactory` with a fake clock: ports of Twisted's
//! `twisted.test.test_factories` `ReconnectingFactoryTests` (the
//! serialization tests have no Rust counterpart), as
//! `twisted.internet.protocol.ReconnectingClientFactory` implements it; then
//! the back-off schedule, `max_retries` and `reset_delay`.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use deferred::Failure;
use reactor::prelude::*;
use reactor::protocol::{ReconnectingClientFactory, FACTOR, INITIAL_DELAY, JITTER, MAX_DELAY};
use reactor::testing::{Clock, MemoryReactor};
use reactor::{Address, ConnectError, ConnectionDone, NotConnectingError, DEFAULT_CONNECT_TIMEOUT};

#[derive(Default)]
struct Client {
    failed: Cell<usize>,
    lost: Cell<usize>,
}
impl Factory for Client {
    fn build_protocol(&self, _: &Address) -> Option<Box<dyn Protocol>> {
        struct P;
        impl Protocol for P {
            fn data_received(&mut self, _: &[u8]) {}
        }
        Some(Box::new(P))
    }
}
impl ClientFactory for Client {
    fn client_connection_failed(&self, _: &Rc<dyn Connector>, _: Failure) {
        self.failed.set(self.failed.get() + 1);
    }
    fn client_connection_lost(&self, _: &Rc<dyn Connector>, _: Failure) {
        self.lost.set(self.lost.get() + 1);
    }
}

/// Twisted's `FakeConnector`, recording calls.
#[derive(Default)]
struct FakeConnector {
    connects: Cell<usize>,
    stops: Cell<usize>,
    on_stop: RefCell<Option<Box<dyn Fn()>>>,
}
impl Connector for FakeConnector {
    fn stop_connecting(&self) -> Result<(), NotConnectingError> {
        self.stops.set(self.stops.get() + 1);
        if let Some(f) = self.on_stop.borrow().as_ref() {
            f();
        }
        Ok(())
    }
    fn disconnect(&self) {}
    fn connect(&self) {
        self.connects.set(self.connects.get() + 1);
    }
    fn get_destination(&self) -> (String, u16) {
        ("127.0.0.1".into(), 1079)
    }
}

fn done() -> Failure {
    Failure::new(ConnectionDone)
}

#[test]
fn twisted_constants() {
    assert_eq!(MAX_DELAY, 3600.0);
    assert_eq!(INITIAL_DELAY, 1.0);
    // Python's 2.7182818284590451 is this double.
    assert_eq!(FACTOR, std::f64::consts::E);
    assert_eq!(FACTOR.to_bits(), 0x4005_bf0a_8b14_5769);
    assert_eq!(JITTER, 0.119626565582);
    let f = ReconnectingClientFactory::new(Client::default());
    assert_eq!(f.delay(), 1.0);
    assert_eq!(f.retries(), 0);
    assert_eq!(f.max_retries(), None);
    assert!(f.continue_trying());
}

// Ports ReconnectingFactoryTests.test_stopTryingWhenConnected.
#[test]
fn test_stop_trying_when_connected() {
    struct NoConnect;
    impl Connector for NoConnect {
        fn stop_connecting(&self) -> Result<(), NotConnectingError> {
            panic!("Shouldn't be called, we're connected.");
        }
        fn disconnect(&self) {}
        fn connect(&self) {
            panic!("Shouldn't be reconnecting.");
        }
        fn get_destination(&self) -> (String, u16) {
            ("h".into(), 1)
        }
    }
    let clock = Clock::new();
    let f = ReconnectingClientFactory::new(Client::default());
    f.set_clock(Rc::new(clock.clone()));
    assert!(f.build_protocol(&reactor::testing::DEFAULT_PEER).is_some());
    f.stop_trying();
    let c: Rc<dyn Connector> = Rc::new(NoConnect);
    f.client_connection_lost(&c, done());
    assert!(!f.continue_trying());
    clock.advance(10_000.0);
    assert_eq!(f.inner().lost.get(), 1);
}

// Ports ReconnectingFactoryTests.test_stopTryingDoesNotReconnect: the
// connector's stop_connecting reports a failure back synchronously; no
// retry is scheduled.
#[test]
fn test_stop_trying_does_not_reconnect() {
    let clock = Clock::new();
    let f = Rc::new(ReconnectingClientFactory::new(Client::default()));
    f.set_clock(Rc::new(clock.clone()));
    let connector = Rc::new(FakeConnector::default());
    let dyn_c: Rc<dyn Connector> = connector.clone();
    let weak_f: Weak<ReconnectingClientFactory<Client>> = Rc::downgrade(&f);
    let weak_c = Rc::downgrade(&dyn_c);
    *connector.on_stop.borrow_mut() = Some(Box::new(move || {
        if let (Some(f), Some(c)) = (weak_f.upgrade(), weak_c.upgrade()) {
            f.client_connection_failed(&c, Failure::new(ConnectError::UserAborted));
        }
    }));
    // An active attempt: the factory knows the connector.
    f.client_connection_failed(&dyn_c, Failure::new(ConnectError::Timeout));
    assert!(f.retry_pending());
    f.stop_trying();
    assert_eq!(connector.stops.get(), 1);
    assert!(!f.retry_pending());
    assert!(clock.get_delayed_calls().is_empty());
    clock.advance(10_000.0);
    assert_eq!(connector.connects.get(), 0);
}

// Ports ReconnectingFactoryTests.test_parametrizedClock.
#[test]
fn test_parametrized_clock() {
    let clock = Clock::new();
    let f = ReconnectingClientFactory::new(Client::default());
    f.set_clock(Rc::new(clock.clone()));
    let c: Rc<dyn Connector> = Rc::new(FakeConnector::default());
    f.client_connection_lost(&c, done());
    assert_eq!(clock.get_delayed_calls().len(), 1);
}

// The delay grows by e per attempt up to max_delay; each retry reconnects
// the connector once its delay has passed; reset_delay starts over.
#[test]
fn back_off_schedule_and_reset() {
    let reactor = MemoryReactor::new();
    let f = Rc::new(ReconnectingClientFactory::new(Client::default()));
    f.set_clock(Rc::new(reactor.clone()));
    f.set_jitter(0.0);
    f.set_max_delay(100.0);
    let connector =
        reactor.connect_tcp("127.0.0.1", 1079, f.clone(), DEFAULT_CONNECT_TIMEOUT, None);
    let fake = reactor.connectors()[0].clone();
    let mut expected = 1.0;
    for attempt in 1..=6 {
        f.client_connection_failed(&connector, Failure::new(ConnectError::Timeout));
        expected = (expected * FACTOR).min(100.0);
        assert!((f.delay() - expected).abs() < 1e-9, "attempt {attempt}");
        assert_eq!(f.retries(), attempt);
        reactor.advance(expected - 1e-6);
        assert_eq!(fake.connect_calls(), attempt as usize - 1);
        reactor.advance(2e-6);
        assert_eq!(fake.connect_calls(), attempt as usize);
    }
    assert_eq!(f.delay(), 100.0);
    assert_eq!(f.inner().failed.get(), 6);
    f.reset_delay();
    assert_eq!((f.delay(), f.retries()), (1.0, 0));
}

// max_retries: the attempt past the limit is abandoned.
#[test]
fn max_retries_abandons() {
    let clock = Clock::new();
    let f = ReconnectingClientFactory::new(Client::default());
    f.set_clock(Rc::new(clock.clone()));
    f.set_max_retries(Some(2));
    let connector = Rc::new(FakeConnector::default());
    let c: Rc<dyn Connector> = connector.clone();
    for _ in 0..3 {
        f.client_connection_lost(&c, done());
        clock.advance(MAX_DELAY * 2.0);
    }
    assert_eq!(connector.connects.get(), 2);
    assert!(!f.retry_pending());
}

// Jitter: the delay is drawn from normalvariate(delay, delay * jitter),
// never negative.
#[test]
fn jitter_uses_normal_variate_and_is_clamped() {
    let f = ReconnectingClientFactory::new(Client::default());
    f.set_clock(Rc::new(Clock::new()));
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s = seen.clone();
    f.set_normal_variate(Box::new(move |mu, sigma| {
        s.borrow_mut().push((mu, sigma));
        -5.0
    }));
    let c: Rc<dyn Connector> = Rc::new(FakeConnector::default());
    f.client_connection_lost(&c, done());
    assert_eq!(seen.borrow()[0], (FACTOR, FACTOR * JITTER));
    assert_eq!(f.delay(), 0.0);
}

// The default jitter source spreads delays around the mean.
#[test]
fn default_jitter_spreads() {
    let f = ReconnectingClientFactory::new(Client::default());
    f.set_clock(Rc::new(Clock::new()));
    let c: Rc<dyn Connector> = Rc::new(FakeConnector::default());
    let mut delays = Vec::new();
    for _ in 0..200 {
        f.reset_delay();
        f.client_connection_lost(&c, done());
        delays.push(f.delay());
    }
    let mean = delays.iter().sum::<f64>() / delays.len() as f64;
    assert!((mean - FACTOR).abs() < 0.2, "mean {mean}");
    assert!(delays.iter().any(|&d| d != delays[0]));
}

// set_reset_delay_on_build: building a protocol (a connection was made)
// resets the back-off, Twisted's resetDelay-in-buildProtocol idiom.
#[test]
fn reset_delay_on_build() {
    let f = ReconnectingClientFactory::new(Client::default());
    f.set_clock(Rc::new(Clock::new()));
    f.set_reset_delay_on_build(true);
    let c: Rc<dyn Connector> = Rc::new(FakeConnector::default());
    f.client_connection_lost(&c, done());
    assert_eq!(f.retries(), 1);
    f.build_protocol(&reactor::testing::DEFAULT_PEER);
    assert_eq!((f.delay(), f.retries()), (1.0, 0));
}
