//! Listening ports, connectors and factories on real sockets (127.0.0.1,
//! and ::1 where the host has it).
//!
//! Ports `twisted.internet.test.test_tcp` / `twisted.test.test_tcp`:
//! `ListeningTests` (port 0, `getHost`, `stopListening` and
//! `startListening` again), `CannotBindTests` (`test_cannotBind`),
//! `LocalRemoteAddressTests` (`getHost`/`getPeer` of both ends),
//! `FactoryTests` (`doStart`/`doStop` counting, `buildProtocol` returning
//! `None`), `ConnectorTests` (`test_connectorIdentity`,
//! `test_userFail`, `test_reconnect`, refused connections, timeouts,
//! `bindAddress`), and the connector's notification order from
//! `twisted.test.test_tcp.ClientStartStopTests`.

// A skipped IPv6 test says so in the output.
#![allow(clippy::print_stderr)]

mod tcp_support;

use std::cell::{Cell, RefCell};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use reactor::prelude::*;
use reactor::{Address, CannotListenError, ConnectError, NotConnectingError};
use tcp_support::*;

#[test]
fn port_zero_picks_a_free_port_and_get_host_tells_it() {
    let reactor = new_reactor();
    let f = Hooks::default().factory();
    let port = listen(&reactor, f.clone());
    let host = port.get_host();
    assert_ne!(host.port(), 0);
    assert!(matches!(host, Address::IPv4(_)));
    assert_eq!(host.host(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    // The port really listens.
    std::net::TcpStream::connect(host.socket_addr()).expect("connect to the port");
    assert_eq!(f.started.get(), 1, "start_factory when listening starts");
}

#[test]
fn empty_interface_means_every_ipv4_interface() {
    let reactor = new_reactor();
    let port = reactor
        .listen_tcp(0, Hooks::default().factory(), 50, "")
        .unwrap();
    let host = port.get_host();
    assert_eq!(host.host(), IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    std::net::TcpStream::connect(("127.0.0.1", host.port())).expect("reachable on 127.0.0.1");
}

#[test]
fn ipv6_interface_listens_on_ipv6() {
    if !has_ipv6() {
        eprintln!("skipped: this host has no ::1");
        return;
    }
    let reactor = new_reactor();
    let server = Hooks::default().factory();
    let port = reactor.listen_tcp(0, server.clone(), 50, "::1").unwrap();
    let host = port.get_host();
    assert!(matches!(host, Address::IPv6(_)), "{host}");
    let client = Hooks::default()
        .on_made(|t, _| t.lose_connection())
        .factory();
    reactor.connect_tcp(
        "::1",
        host.port(),
        client.clone(),
        Duration::from_secs(30),
        None,
    );
    let c = client.clone();
    stop_when(&reactor, move || {
        c.events().iter().any(|e| e.starts_with("lost"))
    });
    run(&reactor);
    let peer = client
        .conn(0)
        .borrow()
        .transport
        .as_ref()
        .unwrap()
        .get_peer();
    assert_eq!(peer, host);
    assert!(matches!(server.addrs.borrow()[0], Address::IPv6(_)));
    // "::" (every IPv6 interface) is accepted too.
    reactor
        .listen_tcp(0, Hooks::default().factory(), 50, "::")
        .unwrap();
}

#[test]
fn a_host_name_as_interface_is_refused() {
    let reactor = new_reactor();
    let err: CannotListenError = reactor
        .listen_tcp(0, Hooks::default().factory(), 50, "localhost")
        .err()
        .expect("names are not resolved");
    assert_eq!(err.interface, "localhost");
    assert_eq!(err.source.kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn listening_on_a_port_in_use_fails_with_cannot_listen() {
    // CannotBindTests.test_cannotBind
    let reactor = new_reactor();
    let f = Hooks::default().factory();
    let port = listen(&reactor, f.clone());
    let n = port.get_host().port();
    let err = reactor
        .listen_tcp(n, Hooks::default().factory(), 50, "127.0.0.1")
        .err()
        .expect("port in use");
    assert_eq!(err.port, n);
    assert_eq!(err.source.kind(), std::io::ErrorKind::AddrInUse);
    assert!(err
        .to_string()
        .starts_with(&format!("Couldn't listen on 127.0.0.1:{n}")));
}

#[test]
fn local_and_remote_addresses_match_across_the_connection() {
    let reactor = new_reactor();
    let server = Hooks::default()
        .on_data(|t, _, _| t.lose_connection())
        .factory();
    let port = listen(&reactor, server.clone());
    let client = Hooks::default().on_made(|t, _| t.write(b"x")).factory();
    connect(&reactor, port.get_host().port(), client.clone());
    let c = client.clone();
    stop_when(&reactor, move || {
        c.events().iter().any(|e| e.starts_with("lost"))
    });
    run(&reactor);
    let s = server.conn(0);
    let c = client.conn(0);
    let (st, ct) = (
        s.borrow().transport.clone().unwrap(),
        c.borrow().transport.clone().unwrap(),
    );
    assert_eq!(st.get_host(), port.get_host());
    assert_eq!(ct.get_peer(), port.get_host());
    assert_eq!(st.get_peer(), ct.get_host());
    assert_eq!(
        server.addrs.borrow()[0],
        ct.get_host(),
        "build_protocol got the peer"
    );
    assert_eq!(client.addrs.borrow()[0], port.get_host());
    // After close the addresses are still there.
    assert!(st.disconnecting());
}

#[test]
fn start_and_stop_factory_are_counted_across_ports() {
    // FactoryTests: doStart/doStop through numPorts.
    let reactor = new_reactor();
    let f = Hooks::default().factory();
    let p1 = listen(&reactor, f.clone());
    let p2 = listen(&reactor, f.clone());
    assert_eq!((f.started.get(), f.stopped.get()), (1, 0));
    let fired = Rc::new(RefCell::new(Vec::new()));
    let (fa, fb) = (fired.clone(), fired.clone());
    let f1 = f.clone();
    let _ = p1.stop_listening().add_callback(move |()| {
        fa.borrow_mut().push(("p1", f1.stopped.get()));
    });
    let f2 = f.clone();
    let r = reactor.clone();
    let _ = p2.stop_listening().add_callback(move |()| {
        fb.borrow_mut().push(("p2", f2.stopped.get()));
        let _ = r.stop();
    });
    run(&reactor);
    assert_eq!(
        *fired.borrow(),
        vec![("p1", 0), ("p2", 1)],
        "stop_factory ran before the last Deferred fired"
    );
    assert_eq!(f.stopped.get(), 1);
    // Stopping again: fires at once, no second stop_factory.
    assert!(p1.stop_listening().has_result());
    assert_eq!(f.stopped.get(), 1);
}

#[test]
fn stop_listening_keeps_accepted_connections_and_start_listening_again_works() {
    let reactor = new_reactor();
    let server = Hooks::default().on_data(|t, d, _| t.write(d)).factory();
    let port = listen(&reactor, server.clone());
    let addr = port.get_host().socket_addr();
    // A client connected before stop_listening.
    let handle = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut buf = [0u8; 4];
        s.write_all(b"ping").unwrap();
        s.read_exact(&mut buf).unwrap();
        // Wait for the test to stop listening, then talk again.
        let mut go = [0u8; 1];
        s.read_exact(&mut go).unwrap();
        s.write_all(b"pong").unwrap();
        s.read_exact(&mut buf).unwrap();
        (buf, s)
    });
    let s2 = server.clone();
    turn_until(&reactor, || {
        s2.conns
            .borrow()
            .first()
            .is_some_and(|c| c.borrow().data == b"ping")
    });
    let stopped = Rc::new(Cell::new(false));
    let st = stopped.clone();
    let _ = port.stop_listening().add_callback(move |()| st.set(true));
    // Tell the client to go on: the connection still works.
    server
        .conn(0)
        .borrow()
        .transport
        .as_ref()
        .unwrap()
        .write(b"!");
    let s3 = server.clone();
    turn_until(&reactor, || {
        stopped.get() && s3.conn(0).borrow().data.ends_with(b"pong") && handle.is_finished()
    });
    let (echo, _client) = handle.join().unwrap();
    assert_eq!(&echo, b"pong");
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "no longer listening"
    );
    assert_eq!(server.stopped.get(), 1);
    assert!(
        server.conn(0).borrow().lost.is_empty(),
        "the accepted connection goes on"
    );
    // Listening again.
    port.start_listening().expect("listen again");
    assert_eq!(server.started.get(), 2);
    std::net::TcpStream::connect(port.get_host().socket_addr()).expect("listening again");
}

#[test]
fn connector_reports_started_then_lost_and_stops_its_factory() {
    let reactor = new_reactor();
    let server = Hooks::default()
        .on_made(|t, _| t.lose_connection())
        .factory();
    let port = listen(&reactor, server);
    let client = Hooks::default().factory();
    let connector = connect(&reactor, port.get_host().port(), client.clone());
    assert_eq!(
        client.events(),
        ["start_factory", "started"],
        "started_connecting at once"
    );
    assert_eq!(
        connector.get_destination(),
        ("127.0.0.1".to_owned(), port.get_host().port())
    );
    let c = client.clone();
    stop_when(&reactor, move || c.stopped.get() == 1);
    run(&reactor);
    assert_eq!(
        client.events(),
        [
            "start_factory",
            "started",
            "lost:ConnectionDone",
            "stop_factory"
        ]
    );
    let rec = client.conn(0);
    assert_eq!(rec.borrow().made, 1);
    assert_eq!(rec.borrow().lost_type(), "reactor::errors::ConnectionDone");
}

#[test]
fn refused_connection_fails_with_refused() {
    let reactor = new_reactor();
    let client = Hooks::default().factory();
    connect(&reactor, closed_port(), client.clone());
    let c = client.clone();
    stop_when(&reactor, move || c.stopped.get() == 1);
    run(&reactor);
    assert_eq!(
        client.events(),
        ["start_factory", "started", "failed:Refused", "stop_factory"]
    );
    assert!(client.conns.borrow().is_empty());
}

#[test]
fn connect_again_after_failure_and_after_loss() {
    // ConnectorTests.test_reconnect: ReconnectingClientFactory calls
    // connector.connect() from client_connection_failed / _lost.
    let reactor = new_reactor();
    let server = Hooks::default()
        .on_made(|t, _| t.lose_connection())
        .factory();
    let port = listen(&reactor, server.clone());
    let good = port.get_host().port();
    let lost = Rc::new(Cell::new(0));
    let l = lost.clone();
    let client = Hooks::default()
        .on_client_lost(move |c, _| {
            l.set(l.get() + 1);
            if l.get() < 3 {
                c.connect();
            }
        })
        .factory();
    connect(&reactor, good, client.clone());
    let c = client.clone();
    stop_when(&reactor, move || c.stopped.get() == 1);
    run(&reactor);
    assert_eq!(lost.get(), 3);
    assert_eq!(client.conns.borrow().len(), 3);
    assert_eq!(client.started.get(), 1, "do_start once while reconnecting");
    assert_eq!(client.stopped.get(), 1);
    assert_eq!(server.conns.borrow().len(), 3);

    // After failures.
    let reactor = new_reactor();
    let failed = Rc::new(Cell::new(0));
    let f = failed.clone();
    let client = Hooks::default()
        .on_client_failed(move |c, _| {
            f.set(f.get() + 1);
            if f.get() < 3 {
                c.connect();
            }
        })
        .factory();
    connect(&reactor, closed_port(), client.clone());
    let c = client.clone();
    stop_when(&reactor, move || c.stopped.get() == 1);
    run(&reactor);
    assert_eq!(failed.get(), 3);
    assert_eq!(
        client.events(),
        [
            "start_factory",
            "started",
            "failed:Refused",
            "started",
            "failed:Refused",
            "started",
            "failed:Refused",
            "stop_factory"
        ]
    );
}

#[test]
fn stop_connecting_fails_with_user_aborted_even_from_started_connecting() {
    // ConnectorTests.test_userFail
    let reactor = new_reactor();
    let hooks = Hooks {
        started_connecting: Some(Box::new(|c| c.stop_connecting().expect("connecting"))),
        ..Hooks::default()
    };
    let client = hooks.factory();
    let port = listen(&reactor, Hooks::default().factory());
    let connector = connect(&reactor, port.get_host().port(), client.clone());
    assert_eq!(
        client.events(),
        [
            "start_factory",
            "started",
            "failed:UserAborted",
            "stop_factory"
        ]
    );
    assert_eq!(connector.stop_connecting(), Err(NotConnectingError));
    // Nothing happens later: the abandoned attempt is gone.
    let r = reactor.clone();
    reactor.call_later(Duration::from_millis(50), move || {
        let _ = r.stop();
    });
    run(&reactor);
    assert_eq!(client.events().len(), 4);
    assert!(client.conns.borrow().is_empty());
}

#[test]
fn timeout_fails_with_timeout() {
    // A listener whose accept queue is full drops further SYNs, so the
    // attempt can only end by its timeout.
    let (addr, _keep) = black_hole();
    let reactor = new_reactor();
    let client = Hooks::default().factory();
    reactor.connect_tcp(
        "127.0.0.1",
        addr.port(),
        client.clone(),
        Duration::from_millis(200),
        None,
    );
    let c = client.clone();
    stop_when(&reactor, move || c.stopped.get() == 1);
    run(&reactor);
    let events = client.events();
    // If the kernel let it through anyway there is nothing to test here.
    if events.iter().any(|e| e.starts_with("lost")) {
        eprintln!("skipped: the kernel accepted beyond the backlog");
        return;
    }
    assert_eq!(
        events,
        ["start_factory", "started", "failed:Timeout", "stop_factory"]
    );
}

#[test]
fn zero_timeout_fails_before_the_connect_completes() {
    let reactor = new_reactor();
    let port = listen(&reactor, Hooks::default().factory());
    let client = Hooks::default().factory();
    reactor.connect_tcp(
        "127.0.0.1",
        port.get_host().port(),
        client.clone(),
        Duration::ZERO,
        None,
    );
    let c = client.clone();
    stop_when(&reactor, move || c.stopped.get() == 1);
    run(&reactor);
    assert_eq!(
        client.events(),
        ["start_factory", "started", "failed:Timeout", "stop_factory"]
    );
    let f = &client.failures.borrow()[0];
    assert_eq!(
        f.downcast_ref::<ConnectError>(),
        Some(&ConnectError::Timeout)
    );
}

#[test]
fn a_host_name_is_resolved_off_the_loop() {
    let reactor = new_reactor();
    let port = listen(&reactor, Hooks::default().factory());
    let client = Hooks::default()
        .on_made(|t, _| t.lose_connection())
        .factory();
    reactor.connect_tcp(
        "localhost",
        port.get_host().port(),
        client.clone(),
        Duration::from_secs(30),
        None,
    );
    let c = client.clone();
    stop_when(&reactor, move || c.stopped.get() == 1);
    run(&reactor);
    assert_eq!(
        client.events(),
        [
            "start_factory",
            "started",
            "lost:ConnectionDone",
            "stop_factory"
        ]
    );
    assert_eq!(client.addrs.borrow()[0].port(), port.get_host().port());
}

#[test]
fn bind_address_is_the_local_end() {
    let reactor = new_reactor();
    let server = Hooks::default().factory();
    let port = listen(&reactor, server.clone());
    let local = closed_port();
    let client = Hooks::default()
        .on_made(|t, _| t.lose_connection())
        .factory();
    reactor.connect_tcp(
        "127.0.0.1",
        port.get_host().port(),
        client.clone(),
        Duration::from_secs(30),
        Some(SocketAddr::from(([127, 0, 0, 1], local))),
    );
    let c = client.clone();
    stop_when(&reactor, move || c.stopped.get() == 1);
    run(&reactor);
    assert_eq!(server.addrs.borrow()[0].port(), local);
    assert_eq!(
        client
            .conn(0)
            .borrow()
            .transport
            .as_ref()
            .unwrap()
            .get_host()
            .port(),
        local
    );
}

#[test]
fn bind_address_in_use_fails_the_attempt() {
    let reactor = new_reactor();
    let port = listen(&reactor, Hooks::default().factory());
    let taken = listen(&reactor, Hooks::default().factory())
        .get_host()
        .socket_addr();
    let client = Hooks::default().factory();
    reactor.connect_tcp(
        "127.0.0.1",
        port.get_host().port(),
        client.clone(),
        Duration::from_secs(30),
        Some(taken),
    );
    let c = client.clone();
    stop_when(&reactor, move || c.stopped.get() == 1);
    run(&reactor);
    assert_eq!(
        client.events(),
        ["start_factory", "started", "failed:Other", "stop_factory"]
    );
}

#[test]
fn server_build_protocol_none_or_panic_closes_that_connection_only() {
    let logs = test_support::logs::LogCapture::start();
    let reactor = new_reactor();
    let refuse = Hooks {
        refuse: true,
        ..Hooks::default()
    }
    .factory();
    let boom = Hooks {
        panic_build: true,
        ..Hooks::default()
    }
    .factory();
    let good = Hooks::default().on_data(|t, d, _| t.write(d)).factory();
    let p_refuse = listen(&reactor, refuse);
    let p_boom = listen(&reactor, boom.clone());
    let p_good = listen(&reactor, good);
    let c1 = Hooks::default().factory();
    let c2 = Hooks::default().factory();
    let c3 = Hooks::default()
        .on_made(|t, _| t.write(b"hi"))
        .on_data(|t, _, r| {
            if r.borrow().data == b"hi" {
                t.lose_connection();
            }
        })
        .factory();
    connect(&reactor, p_refuse.get_host().port(), c1.clone());
    connect(&reactor, p_boom.get_host().port(), c2.clone());
    connect(&reactor, p_good.get_host().port(), c3.clone());
    let (a, b, c) = (c1.clone(), c2.clone(), c3.clone());
    stop_when(&reactor, move || {
        a.stopped.get() + b.stopped.get() + c.stopped.get() == 3
    });
    run(&reactor);
    assert!(
        c1.events().contains(&"lost:ConnectionDone".to_owned()),
        "{:?}",
        c1.events()
    );
    let e2 = c2.events();
    assert!(
        e2.iter().any(|e| e.starts_with("lost:Connection")),
        "{e2:?}"
    );
    assert_eq!(c3.conn(0).borrow().data, b"hi", "the server goes on");
    assert_eq!(boom.addrs.borrow().len(), 1);
    let errors = logs.errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0]
        .failure()
        .unwrap()
        .contains("build_protocol blew up"));
}

#[test]
fn client_build_protocol_none_closes_the_connection() {
    let reactor = new_reactor();
    let port = listen(&reactor, Hooks::default().factory());
    let client = Hooks {
        refuse: true,
        ..Hooks::default()
    }
    .factory();
    connect(&reactor, port.get_host().port(), client.clone());
    let c = client.clone();
    stop_when(&reactor, move || c.stopped.get() == 1);
    run(&reactor);
    assert_eq!(
        client.events(),
        [
            "start_factory",
            "started",
            "lost:ConnectionDone",
            "stop_factory"
        ]
    );
}

#[test]
fn connector_disconnect_drops_the_connection() {
    let reactor = new_reactor();
    let server = Hooks::default().factory();
    let port = listen(&reactor, server.clone());
    let client = Hooks::default().factory();
    let connector = connect(&reactor, port.get_host().port(), client.clone());
    turn_until(&reactor, || {
        !client.conns.borrow().is_empty() && !server.conns.borrow().is_empty()
    });
    connector.disconnect();
    turn_until(&reactor, || {
        client.stopped.get() == 1 && !server.conn(0).borrow().lost.is_empty()
    });
    assert_eq!(
        client.conn(0).borrow().lost_type(),
        "reactor::errors::ConnectionDone"
    );
    assert_eq!(
        server.conn(0).borrow().lost_type(),
        "reactor::errors::ConnectionDone"
    );
}

/// How many of `tries` sequential connection attempts to `addr` complete
/// their handshake while nobody accepts.
fn handshakes_completed(addr: SocketAddr, tries: usize) -> (usize, Vec<socket2::Socket>) {
    let mut socks = Vec::new();
    for _ in 0..tries {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = s.connect(&addr.into());
        std::thread::sleep(Duration::from_millis(20));
        socks.push(s);
    }
    std::thread::sleep(Duration::from_millis(100));
    let done = socks.iter().filter(|s| s.peer_addr().is_ok()).count();
    (done, socks)
}

#[test]
fn the_backlog_is_honoured() {
    // Linux queues backlog + 1 completed connections; later SYNs are
    // dropped while the reactor does not turn (nobody accepts).
    let reactor = new_reactor();
    let small = reactor
        .listen_tcp(0, Hooks::default().factory(), 2, "127.0.0.1")
        .unwrap();
    let large = reactor
        .listen_tcp(0, Hooks::default().factory(), 6, "127.0.0.1")
        .unwrap();
    let (n_small, _a) = handshakes_completed(small.get_host().socket_addr(), 10);
    let (n_large, _b) = handshakes_completed(large.get_host().socket_addr(), 10);
    if cfg!(target_os = "linux") {
        assert_eq!((n_small, n_large), (3, 7));
    } else {
        assert!(n_small < n_large);
    }
}
