//! The protocol test doubles: ports of Twisted's
//! `twisted.internet.test.test_testing` `StringTransportTests` and
//! `ReactorTests` (the TCP parts), and of `twisted.test.test_protocols`
//! `StringTransportTests`, as `twisted.internet.testing.StringTransport`,
//! `StringTransportWithDisconnection` and `MemoryReactor(Clock)` implement
//! them.

use std::cell::Cell;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::time::Duration;

use deferred::Failure;
use reactor::prelude::*;
use reactor::testing::{
    MemoryReactor, ProducerState, StringTransport, StringTransportWithDisconnection, DEFAULT_HOST,
    DEFAULT_PEER,
};
use reactor::{Address, ConnectionLost, ProducerError, DEFAULT_BACKLOG, DEFAULT_CONNECT_TIMEOUT};

struct NoopProducer;
impl Producer for NoopProducer {
    fn resume_producing(&self) {}
    fn stop_producing(&self) {}
}

fn panics(f: impl FnOnce()) -> String {
    let e = catch_unwind(AssertUnwindSafe(f)).expect_err("should panic");
    e.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| e.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

// Ports StringTransportTests.test_registerProducer,
// test_disallowedRegisterProducer, test_unregisterProducer.
#[test]
fn test_register_producer() {
    let t = StringTransport::new();
    let p: Rc<dyn Producer> = Rc::new(NoopProducer);
    t.register_producer(Rc::clone(&p), true).unwrap();
    assert!(Rc::ptr_eq(&t.producer().unwrap(), &p));
    assert_eq!(t.streaming(), Some(true));
    assert_eq!(
        t.register_producer(Rc::new(NoopProducer), false),
        Err(ProducerError::AlreadyRegistered)
    );
    assert!(Rc::ptr_eq(&t.producer().unwrap(), &p));
    assert_eq!(t.streaming(), Some(true));
    t.unregister_producer();
    assert!(t.producer().is_none());
    assert_eq!(t.streaming(), None);
    // Twisted raises on unregistering nothing; the Transport contract says
    // it does nothing.
    t.unregister_producer();
}

// Ports test_initialProducerState, test_pauseProducing, test_resumeProducing,
// test_stopProducing.
#[test]
fn test_producer_state() {
    let t = StringTransport::new();
    assert_eq!(t.producer_state(), ProducerState::Producing);
    t.pause_producing();
    assert_eq!(t.producer_state(), ProducerState::Paused);
    t.resume_producing();
    assert_eq!(t.producer_state(), ProducerState::Producing);
    t.stop_producing();
    assert_eq!(t.producer_state(), ProducerState::Stopped);
}

// Ports test_stoppedTransportCannotPause, test_stoppedTransportCannotResume,
// test_disconnectingTransportCannotPause,
// test_disconnectingTransportCannotResume (Twisted's RuntimeError is a
// panic here); a lenient transport allows it after lose_connection.
#[test]
fn test_misuse_is_reported() {
    let t = StringTransport::new();
    t.stop_producing();
    assert_eq!(
        panics(|| t.pause_producing()),
        "Cannot resume a stopped producer"
    );
    assert_eq!(
        panics(|| t.resume_producing()),
        "Cannot resume a stopped producer"
    );
    let t = StringTransport::new();
    t.lose_connection();
    assert_eq!(
        panics(|| t.pause_producing()),
        "Cannot resume producing after loseConnection"
    );
    assert_eq!(
        panics(|| t.resume_producing()),
        "Cannot resume producing after loseConnection"
    );
    let t = StringTransport::lenient();
    t.lose_connection();
    t.pause_producing();
    t.resume_producing();
    assert_eq!(t.producer_state(), ProducerState::Producing);
}

// Ports test_loseConnectionSetsDisconnecting and the abortConnection
// behaviour (disconnected too).
#[test]
fn test_lose_and_abort() {
    let t = StringTransport::new();
    assert!(!t.disconnecting());
    t.lose_connection();
    assert!(t.disconnecting());
    assert!(!t.disconnected());
    assert_eq!(t.lose_connection_calls(), 1);
    let t = StringTransport::new();
    t.abort_connection();
    assert!(t.disconnecting() && t.disconnected());
    assert_eq!(t.lose_connection_calls(), 0);
}

// Ports test_specifiedHostAddress, test_specifiedPeerAddress,
// test_defaultHostAddress, test_defaultPeerAddress.
#[test]
fn test_addresses() {
    let t = StringTransport::new();
    assert_eq!(t.get_host(), DEFAULT_HOST);
    assert_eq!(
        t.get_host().to_string(),
        "IPv4Address(TCP, \"10.0.0.1\", 12345)"
    );
    assert_eq!(t.get_peer(), DEFAULT_PEER);
    assert_eq!(
        t.get_peer().to_string(),
        "IPv4Address(TCP, \"192.168.1.1\", 54321)"
    );
    let host = Address::IPv4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1));
    let peer = Address::IPv4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 2));
    let t = StringTransport::with_addresses(host, peer);
    assert_eq!((t.get_host(), t.get_peer()), (host, peer));
}

// value(), clear(), write_sequence, empty writes.
#[test]
fn test_value_and_clear() {
    let t = StringTransport::new();
    t.write(b"");
    t.write(b"ab\0");
    t.write_sequence(&[b"c", b"", b"d"]);
    assert_eq!(t.value(), b"ab\0cd");
    t.clear();
    assert_eq!(t.value(), b"");
    t.write(b"x");
    assert_eq!(t.take_value(), b"x");
    assert_eq!(t.value(), b"");
}

#[derive(Default)]
struct Counting {
    data: Vec<u8>,
    lost: Vec<String>,
    transport: Option<Rc<dyn Transport>>,
}
impl Protocol for Counting {
    fn connection_made(&mut self, t: Rc<dyn Transport>) {
        self.transport = Some(t);
    }
    fn data_received(&mut self, data: &[u8]) {
        self.data.extend_from_slice(data);
        if data == b"abort" {
            self.transport.as_ref().unwrap().abort_connection();
        }
    }
    fn connection_lost(&mut self, reason: Failure) {
        self.lost.push(reason.error_message());
    }
}

// StringTransportWithDisconnection: connection_lost exactly once, with
// ConnectionAborted after an abort; no data after it; a loss asked for
// outside a callback is delivered by deliver_disconnection.
#[test]
fn with_disconnection_delivers_loss_once() {
    let c = StringTransportWithDisconnection::connect(Counting::default());
    assert!(c.data_received(b"abort"));
    assert!(!c.data_received(b"more"));
    assert!(!c.deliver_disconnection());
    assert!(!c.connection_lost(Failure::new(ConnectionLost { reason: "x".into() })));
    assert_eq!(c.protocol().data, b"abort");
    assert_eq!(
        c.protocol().lost,
        vec!["Connection was aborted locally using ITCPTransport.abortConnection.".to_string()]
    );

    let c = StringTransportWithDisconnection::connect(Counting::default());
    c.transport().lose_connection();
    assert!(c.connected());
    assert!(c.deliver_disconnection());
    assert!(!c.connected());
    assert_eq!(
        c.protocol().lost,
        vec!["Connection was closed cleanly.".to_string()]
    );

    let c = StringTransportWithDisconnection::connect(Counting::default());
    c.connection_lost(Failure::new(ConnectionLost {
        reason: "Connection reset by peer".into(),
    }));
    assert!(c.transport().disconnecting());
    assert_eq!(c.protocol().lost.len(), 1);
}

struct Client {
    started: Cell<usize>,
}
impl Factory for Client {
    fn build_protocol(&self, _: &Address) -> Option<Box<dyn Protocol>> {
        None
    }
}
impl ClientFactory for Client {
    fn started_connecting(&self, _: &Rc<dyn Connector>) {
        self.started.set(self.started.get() + 1);
    }
}

// Ports ReactorTests.test_connectDestination: the connector's destination
// is what was passed; the factory was told it started connecting.
#[test]
fn test_connect_destination() {
    let r = MemoryReactor::new();
    let f = Rc::new(Client {
        started: Cell::new(0),
    });
    let c = r.connect_tcp(
        "test.example.com",
        8321,
        f.clone(),
        DEFAULT_CONNECT_TIMEOUT,
        None,
    );
    assert_eq!(c.get_destination(), ("test.example.com".to_string(), 8321));
    assert_eq!(f.started.get(), 1);
    let rec = &r.tcp_clients()[0];
    assert_eq!(
        (rec.host.as_str(), rec.port, rec.timeout, rec.bind_address),
        ("test.example.com", 8321, Duration::from_secs(30), None)
    );
    c.stop_connecting().unwrap();
    c.disconnect();
    c.connect();
    let fake = &r.connectors()[0];
    assert!(fake.stopped_connecting() && fake.disconnected());
    assert_eq!(fake.connect_calls(), 1);
}

// Ports ReactorTests.test_listenDefaultHost: 0.0.0.0 and the port passed
// (an IPv6 interface gives an IPv6 address).
#[test]
fn test_listen_default_host() {
    let r = MemoryReactor::new();
    let f = Rc::new(Client {
        started: Cell::new(0),
    });
    let p = r.listen_tcp(8242, f.clone(), DEFAULT_BACKLOG, "").unwrap();
    assert_eq!(
        p.get_host().to_string(),
        "IPv4Address(TCP, \"0.0.0.0\", 8242)"
    );
    let p6 = r.listen_tcp(8243, f, DEFAULT_BACKLOG, "::1").unwrap();
    assert_eq!(p6.get_host().to_string(), "IPv6Address(TCP, \"::1\", 8243)");
    let fake = r.tcp_servers()[0].listening_port.clone();
    assert!(fake.listening());
    assert!(p.stop_listening().into_result().unwrap().is_ok());
    assert!(!fake.listening());
}

// MemoryReactorClock: the reactor's time is a Clock.
#[test]
fn memory_reactor_has_a_clock() {
    let r = MemoryReactor::new();
    let ran = Rc::new(Cell::new(false));
    let r2 = ran.clone();
    r.call_later(Duration::from_secs(2), move || r2.set(true));
    assert_eq!(r.get_delayed_calls().len(), 1);
    r.advance(1.0);
    assert!(!ran.get());
    r.advance(1.0);
    assert!(ran.get());
    assert_eq!(ReactorTime::seconds(&r), 2.0);
}
