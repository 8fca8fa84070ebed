//! Endpoints on a `MemoryReactor`: ports of the TCP parts of Twisted's
//! `twisted.internet.test.test_endpoints` (`ServerEndpointParseTests`,
//! `ServerStringTests`, `ClientStringTests`, `TCP4EndpointsTests` /
//! `WrappingFactoryTests` via `EndpointTestCaseMixin`: connect fires once
//! connected, fails on `clientConnectionFailed`, is cancellable, passes
//! `doStart`/`doStop` through, a factory returning no protocol), as
//! `twisted.internet.endpoints` implements them.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use deferred::{CancelledError, Failure};
use reactor::endpoints::{
    client_from_string, connect_protocol, server_from_string, ClientEndpoint,
    ConnectingCancelledError, EndpointParseError, NoProtocol, ServerEndpoint, StreamClientEndpoint,
    StreamServerEndpoint, TCP4ClientEndpoint, TCP4ServerEndpoint, TCP6ServerEndpoint,
};
use reactor::prelude::*;
use reactor::testing::{MemoryReactor, StringTransport, DEFAULT_PEER};
use reactor::{Address, CannotListenError, ConnectError, ConnectionDone};

/// The failure a fired Deferred holds.
fn failure<T: 'static>(d: deferred::Deferred<T>) -> Failure {
    match d.into_result() {
        Ok(Err(f)) => f,
        Ok(Ok(_)) => panic!("succeeded"),
        Err(_) => panic!("not fired"),
    }
}

fn mem() -> (MemoryReactor, Rc<dyn ReactorTcp>) {
    let r = MemoryReactor::new();
    let dyn_r: Rc<dyn ReactorTcp> = Rc::new(r.clone());
    (r, dyn_r)
}

#[derive(Default)]
struct Recording {
    made: bool,
    data: Vec<u8>,
    lost: Option<String>,
}
impl Protocol for Recording {
    fn connection_made(&mut self, _: Rc<dyn Transport>) {
        self.made = true;
    }
    fn data_received(&mut self, data: &[u8]) {
        self.data.extend_from_slice(data);
    }
    fn connection_lost(&mut self, reason: Failure) {
        self.lost = Some(reason.error_message());
    }
}

#[derive(Default)]
struct CountingFactory {
    starts: Cell<usize>,
    stops: Cell<usize>,
    refuse: bool,
    built: RefCell<Vec<Address>>,
}
impl Factory for CountingFactory {
    fn build_protocol(&self, addr: &Address) -> Option<Box<dyn Protocol>> {
        self.built.borrow_mut().push(*addr);
        if self.refuse {
            None
        } else {
            Some(Box::new(Recording::default()))
        }
    }
    fn start_factory(&self) {
        self.starts.set(self.starts.get() + 1);
    }
    fn stop_factory(&self) {
        self.stops.set(self.stops.get() + 1);
    }
}

// Ports ServerEndpointParseTests.test_simpleTCP, test_interfaceTCP,
// test_backlogTCP and ServerStringTests.test_tcp.
#[test]
fn server_tcp_strings() {
    let (_, r) = mem();
    let cases = [
        ("tcp:80", 80, "", 50),
        ("tcp:80:interface=127.0.0.1", 80, "127.0.0.1", 50),
        ("tcp:80:backlog=6", 80, "", 6),
        (
            "tcp:1234:backlog=12:interface=10.0.0.1",
            1234,
            "10.0.0.1",
            12,
        ),
        ("tcp:port=1079:interface=127.0.0.1", 1079, "127.0.0.1", 50),
        ("tcp:1079:127.0.0.1:7", 1079, "127.0.0.1", 7),
        ("TCP:0", 0, "", 50),
    ];
    for (s, port, interface, backlog) in cases {
        let ServerEndpoint::Tcp4(e) = server_from_string(r.clone(), s).unwrap() else {
            panic!("{s}: not tcp4")
        };
        assert_eq!(
            (e.port(), e.interface(), e.backlog()),
            (port, interface, backlog),
            "{s}"
        );
    }
    let ServerEndpoint::Tcp6(e) = server_from_string(r, "tcp6:1079").unwrap() else {
        panic!()
    };
    assert_eq!((e.port(), e.interface(), e.backlog()), (1079, "::", 50));
}

// Ports ServerStringTests.test_unknownType / ServerEndpointParseTests
// .test_unknownType and ClientStringTests.test_unknownType, with Twisted's
// message.
#[test]
fn unknown_type() {
    let (_, r) = mem();
    let e = server_from_string(r.clone(), "ftl:andromeda/carcosa/hali/2387").unwrap_err();
    assert_eq!(e.to_string(), "Unknown endpoint type: 'ftl'");
    let e = client_from_string(r.clone(), "ftl:andromeda/carcosa/hali/2387").unwrap_err();
    assert_eq!(e.to_string(), "Unknown endpoint type: 'ftl'");
    assert_eq!(
        server_from_string(r, "").unwrap_err(),
        EndpointParseError::UnknownType(String::new())
    );
}

// Bad server strings get a typed error naming the bad part.
#[test]
fn bad_server_strings() {
    let (_, r) = mem();
    let err = |s: &str| server_from_string(r.clone(), s).unwrap_err();
    assert!(matches!(
        err("tcp"),
        EndpointParseError::MissingArgument {
            argument: "port",
            ..
        }
    ));
    assert!(matches!(
        err("tcp:http"),
        EndpointParseError::InvalidValue { argument: "port", ref value, .. } if value == "http"
    ));
    assert!(matches!(
        err("tcp:70000"),
        EndpointParseError::InvalidValue {
            argument: "port",
            ..
        }
    ));
    assert!(matches!(
        err("tcp:-1"),
        EndpointParseError::InvalidValue {
            argument: "port",
            ..
        }
    ));
    assert!(matches!(
        err("tcp:80:backlog=-5"),
        EndpointParseError::InvalidValue {
            argument: "backlog",
            ..
        }
    ));
    assert!(matches!(
        err("tcp:80:colour=blue"),
        EndpointParseError::UnexpectedArgument { ref argument, .. } if argument == "colour"
    ));
    assert!(matches!(
        err("tcp:80:127.0.0.1:5:extra"),
        EndpointParseError::TooManyArguments { ref value, .. } if value == "extra"
    ));
    assert!(matches!(
        err("tcp:80:port=81"),
        EndpointParseError::DuplicateArgument {
            argument: "port",
            ..
        }
    ));
    assert!(matches!(
        err("tcp:80\\"),
        EndpointParseError::TrailingBackslash(_)
    ));
    let msg = err("tcp:80:backlog=lots").to_string();
    assert!(msg.contains("backlog") && msg.contains("lots"), "{msg}");
}

fn client(s: &str) -> TCP4ClientEndpoint {
    let (_, r) = mem();
    match client_from_string(r, s).unwrap() {
        ClientEndpoint::Tcp4(e) => e,
        other => panic!("{s}: {other:?}"),
    }
}

// Ports ClientStringTests.test_tcp, test_tcpPositionalArgs,
// test_tcpHostPositionalArg, test_tcpPortPositionalArg, test_tcpDefaults.
#[test]
fn client_tcp_strings() {
    let bind: SocketAddr = "10.0.0.2:0".parse().unwrap();
    for s in [
        "tcp:host=example.com:port=1234:timeout=7:bindAddress=10.0.0.2",
        "tcp:example.com:1234:timeout=7:bindAddress=10.0.0.2",
        "tcp:example.com:port=1234:timeout=7:bindAddress=10.0.0.2",
        "tcp:host=example.com:1234:timeout=7:bindAddress=10.0.0.2",
    ] {
        let e = client(s);
        assert_eq!(e.host(), "example.com", "{s}");
        assert_eq!(e.port(), 1234, "{s}");
        assert_eq!(e.timeout(), Duration::from_secs(7), "{s}");
        assert_eq!(e.bind_address(), Some(bind), "{s}");
    }
    let e = client("tcp:host=example.com:port=1234");
    assert_eq!(e.timeout(), Duration::from_secs(30));
    assert_eq!(e.bind_address(), None);
    // An IPv6 host's colons are escaped, as quote_string_argument does.
    let e = client(r"tcp:host=\:\:1:port=1079");
    assert_eq!((e.host(), e.port()), ("::1", 1079));
}

// Bad client strings name the bad part.
#[test]
fn bad_client_strings() {
    let (_, r) = mem();
    let err = |s: &str| client_from_string(r.clone(), s).unwrap_err();
    assert!(matches!(
        err("tcp:host=h"),
        EndpointParseError::MissingArgument {
            argument: "port",
            ..
        }
    ));
    assert!(matches!(
        err("tcp:port=1"),
        EndpointParseError::MissingArgument {
            argument: "host",
            ..
        }
    ));
    assert!(matches!(
        err("tcp:h:1:timeout=soon"),
        EndpointParseError::InvalidValue {
            argument: "timeout",
            ..
        }
    ));
    assert!(matches!(
        err("tcp:h:1:bindAddress=localhost"),
        EndpointParseError::InvalidValue {
            argument: "bindAddress",
            ..
        }
    ));
    assert!(matches!(
        err("tcp:h:1:2"),
        EndpointParseError::TooManyArguments { ref value, .. } if value == "2"
    ));
    assert!(matches!(
        err("tcp:h:1:interface=x"),
        EndpointParseError::UnexpectedArgument { ref argument, .. } if argument == "interface"
    ));
}

// Ports TCP4EndpointsTests (EndpointTestCaseMixin.test_endpointListenSuccess
// and the listenTCP argument check): listen fires with the port and passes
// port, factory, backlog and interface to listen_tcp.
#[test]
fn listen_success() {
    let (mr, r) = mem();
    let factory = Rc::new(CountingFactory::default());
    let d = TCP4ServerEndpoint::new(r, 0)
        .with_backlog(10)
        .with_interface("127.0.0.1")
        .listen(factory.clone());
    let port = d.into_result().unwrap().unwrap();
    assert_eq!(port.get_host().port(), 0);
    let s = &mr.tcp_servers()[0];
    assert_eq!(
        (s.port, s.backlog, s.interface.as_str()),
        (0, 10, "127.0.0.1")
    );
    let given: Rc<dyn Factory> = factory;
    assert!(std::ptr::addr_eq(
        Rc::as_ptr(&s.factory),
        Rc::as_ptr(&given)
    ));
}

// Ports EndpointTestCaseMixin.test_endpointListenFailure: the Deferred fails
// with the CannotListenError.
#[test]
fn listen_failure() {
    let (mr, r) = mem();
    mr.fail_listen(Some((io::ErrorKind::AddrInUse, "address in use")));
    let d = TCP6ServerEndpoint::new(r, 1079).listen(Rc::new(CountingFactory::default()));
    let f = failure(d);
    let e = f.check::<CannotListenError>().expect("a CannotListenError");
    assert_eq!((e.interface.as_str(), e.port), ("::", 1079));
}

// Ports EndpointTestCaseMixin.test_endpointConnectSuccess and
// WrappingFactoryTests: connect calls connect_tcp with the endpoint's
// arguments, and fires (with the transport) once the wrapped protocol is
// connected; data and the loss then reach the user's protocol.
#[test]
fn connect_success() {
    let (mr, r) = mem();
    let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let endpoint = TCP4ClientEndpoint::new(r, "127.0.0.1", 1079)
        .with_timeout(Duration::from_secs(5))
        .with_bind_address(bind);
    let factory = Rc::new(CountingFactory::default());
    let d = endpoint.connect(factory.clone());
    let c = &mr.tcp_clients()[0];
    assert_eq!(
        (c.host.as_str(), c.port, c.timeout, c.bind_address),
        ("127.0.0.1", 1079, Duration::from_secs(5), Some(bind))
    );
    assert!(!d.has_result());
    let mut proto = c.factory.build_protocol(&DEFAULT_PEER).unwrap();
    assert_eq!(factory.built.borrow().as_slice(), &[DEFAULT_PEER]);
    let transport = Rc::new(StringTransport::new());
    proto.make_connection(transport.clone());
    let t = d.into_result().unwrap().unwrap();
    t.write(b"through the wrapper");
    assert_eq!(transport.value(), b"through the wrapper");
    proto.data_received(b"x");
    proto.connection_lost(Failure::new(ConnectionDone));
}

// Ports EndpointTestCaseMixin.test_endpointConnectFailure: a failed attempt
// fails the Deferred with the reason.
#[test]
fn connect_failure() {
    let (mr, r) = mem();
    let d = TCP4ClientEndpoint::new(r, "127.0.0.1", 1).connect(Rc::new(CountingFactory::default()));
    let c = &mr.tcp_clients()[0];
    let connector: Rc<dyn Connector> = c.connector.clone();
    c.factory.client_connection_failed(
        &connector,
        Failure::new(ConnectError::Refused {
            reason: "Connection refused".into(),
        }),
    );
    let f = failure(d);
    assert!(matches!(
        f.check::<ConnectError>(),
        Some(ConnectError::Refused { .. })
    ));
}

// Ports EndpointTestCaseMixin.test_endpointConnectingCancelled: cancelling
// fails with ConnectingCancelledError naming the destination and stops the
// connector; a late failure report is ignored.
#[test]
fn connect_cancelled() {
    let (mr, r) = mem();
    let d =
        TCP4ClientEndpoint::new(r, "10.0.0.7", 1079).connect(Rc::new(CountingFactory::default()));
    d.cancel();
    let c = &mr.tcp_clients()[0];
    assert!(c.connector.stopped_connecting());
    let connector: Rc<dyn Connector> = c.connector.clone();
    c.factory
        .client_connection_failed(&connector, Failure::new(ConnectError::UserAborted));
    let f = failure(d);
    assert_eq!(
        f.check::<ConnectingCancelledError>(),
        Some(&ConnectingCancelledError {
            host: "10.0.0.7".into(),
            port: 1079
        })
    );
    assert!(f.check::<CancelledError>().is_none());
}

// Ports WrappingFactoryTests.test_doStart / test_doStop: the wrapping
// factory's start/stop reach the wrapped factory's counted start/stop.
#[test]
fn start_and_stop_pass_through() {
    let (mr, r) = mem();
    let factory = Rc::new(CountingFactory::default());
    let _d = TCP4ClientEndpoint::new(r, "h", 1).connect(factory.clone());
    let c = &mr.tcp_clients()[0];
    c.factory.start_factory();
    assert_eq!(factory.starts.get(), 1);
    c.factory.stop_factory();
    assert_eq!(factory.stops.get(), 1);
}

// Ports WrappingFactoryTests.test_failedBuildProtocol and the NoProtocol
// case: a factory that builds nothing fails connect with NoProtocol; one
// that panics fails it with the panic.
#[test]
fn factory_refusing_or_panicking() {
    let (mr, r) = mem();
    let d = TCP4ClientEndpoint::new(r.clone(), "h", 1).connect(Rc::new(CountingFactory {
        refuse: true,
        ..Default::default()
    }));
    assert!(mr.tcp_clients()[0]
        .factory
        .build_protocol(&DEFAULT_PEER)
        .is_none());
    let f = failure(d);
    assert!(f.check::<NoProtocol>().is_some());

    struct Panics;
    impl Factory for Panics {
        fn build_protocol(&self, _: &Address) -> Option<Box<dyn Protocol>> {
            panic!("factory bug");
        }
    }
    let d = TCP4ClientEndpoint::new(r, "h", 1).connect(Rc::new(Panics));
    assert!(mr.tcp_clients()[1]
        .factory
        .build_protocol(&DEFAULT_PEER)
        .is_none());
    let f = failure(d);
    assert!(f.is_panic());
}

// Ports ConnectProtocolTests: connect_protocol fires with the very protocol
// given, connected.
#[test]
fn connect_protocol_fires_with_the_protocol() {
    let (mr, r) = mem();
    let endpoint = client_from_string(r, "tcp:host=127.0.0.1:port=1079").unwrap();
    let d = connect_protocol(&endpoint, Recording::default());
    let mut proto = mr.tcp_clients()[0]
        .factory
        .build_protocol(&DEFAULT_PEER)
        .unwrap();
    proto.make_connection(Rc::new(StringTransport::new()));
    proto.data_received(b"abc");
    let shared = d.into_result().unwrap().unwrap();
    assert!(shared.borrow().made);
    assert_eq!(shared.borrow().data, b"abc");
    proto.connection_lost(Failure::new(ConnectionDone));
    assert_eq!(
        shared.borrow().lost.as_deref(),
        Some("Connection was closed cleanly.")
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    /// Any description, however mangled, parses or gets an
    /// `EndpointParseError`; the parser never panics.
    #[test]
    fn any_description_parses_or_is_refused_without_panicking(
        description in proptest::string::string_regex("(tcp6?|TCP|unix|)(:[a-zA-Z=\\\\:0-9. \u{e9}\u{0}-]{0,12}){0,5}").unwrap()
    ) {
        let reactor: Rc<dyn ReactorTcp> = Rc::new(MemoryReactor::new());
        let _ = reactor::endpoints::server_from_string(Rc::clone(&reactor), &description);
        let _ = reactor::endpoints::client_from_string(reactor, &description);
    }
}
