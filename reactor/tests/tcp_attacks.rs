//! Adversarial tests of the TCP layer on 127.0.0.1: orderings and re-entries
//! that the lifecycle tests do not exercise.
//!
//! Ports the guarantees of `twisted.internet.test.test_tcp`
//! (`TCPConnectionTests`, `StreamingProducerTests`-style pausing of reads:
//! `pauseProducing`/`resumeProducing` on the transport must not lose the
//! peer's EOF) and of `twisted.internet.base.BaseConnector` (a factory
//! callback never runs inside `connect`).

mod tcp_support;

use std::cell::Cell;
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::rc::Rc;
use std::time::{Duration, Instant};

use reactor::prelude::*;
use tcp_support::*;

/// Turns `reactor` until `cond` holds or 5 s pass; true if it held.
fn turn_for(reactor: &reactor::Reactor, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        if Instant::now() > deadline {
            return false;
        }
        reactor.iterate(Duration::from_millis(5));
    }
    true
}

/// The peer's data and FIN arrive while the protocol has paused reading;
/// after `resume_producing` the protocol must get the data and then its
/// `connection_lost` (the FIN raises no new readiness edge).
#[test]
fn a_fin_that_arrives_while_reading_is_paused_is_seen_after_resume() {
    let reactor = new_reactor();
    let server = Hooks::default()
        .on_made(|t, _| t.pause_producing())
        .factory();
    let port = listen(&reactor, server.clone()).get_host().port();
    let mut peer = TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert!(turn_for(&reactor, || !server.conns.borrow().is_empty()));
    peer.write_all(b"hello").unwrap();
    peer.shutdown(Shutdown::Write).unwrap();
    // Let the readiness events for the data and the FIN come and go while
    // reading is paused.
    for _ in 0..20 {
        reactor.iterate(Duration::from_millis(2));
    }
    assert!(
        server.conn(0).borrow().data.is_empty(),
        "paused: nothing read"
    );
    let t = server.conn(0).borrow().transport.clone().unwrap();
    t.resume_producing();
    let rec = server.conn(0);
    assert!(
        turn_for(&reactor, || !rec.borrow().lost.is_empty()),
        "connection_lost never came after resume (data so far: {:?})",
        rec.borrow().data
    );
    assert_eq!(rec.borrow().data, b"hello");
    assert_eq!(rec.borrow().lost_type(), "reactor::errors::ConnectionDone");
}

/// A peer that sends more than one turn's read budget and then closes: the
/// revisit on the next turn must still see the FIN.
#[test]
fn a_fin_after_more_than_a_turns_reads_is_seen() {
    const SIZE: usize = 2 * 1024 * 1024;
    let reactor = new_reactor();
    let server = Hooks::default().factory();
    let port = listen(&reactor, server.clone()).get_host().port();
    for round in 0..5 {
        let sender = std::thread::spawn(move || {
            let mut peer = TcpStream::connect(("127.0.0.1", port)).unwrap();
            peer.write_all(&vec![7u8; SIZE]).unwrap();
            peer.shutdown(Shutdown::Write).unwrap();
            // Keep the socket until the server closed: no RST.
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut peer, &mut sink);
        });
        assert!(turn_for(&reactor, || server.conns.borrow().len() > round));
        let rec = server.conn(round);
        assert!(
            turn_for(&reactor, || !rec.borrow().lost.is_empty()),
            "round {round}: connection_lost never came ({} of {SIZE} bytes read)",
            rec.borrow().data.len()
        );
        assert_eq!(rec.borrow().data.len(), SIZE);
        assert_eq!(rec.borrow().lost_type(), "reactor::errors::ConnectionDone");
        sender.join().unwrap();
    }
}

/// A factory that connects again from `client_connection_failed` must not be
/// re-entered from inside `connect` once the reactor has shut down (the
/// attempt fails at once then): that is unbounded recursion.
#[test]
fn connect_from_client_connection_failed_after_shutdown_is_not_reentrant() {
    let reactor = new_reactor();
    let r = reactor.clone();
    reactor.call_later(Duration::ZERO, move || {
        let _ = r.stop();
    });
    run(&reactor);
    let depth = Rc::new(Cell::new(0usize));
    let max_depth = Rc::new(Cell::new(0usize));
    let calls = Rc::new(Cell::new(0usize));
    let (d, m, n) = (depth.clone(), max_depth.clone(), calls.clone());
    let client = Hooks::default()
        .on_client_failed(move |c, _| {
            n.set(n.get() + 1);
            d.set(d.get() + 1);
            m.set(m.get().max(d.get()));
            // Bounded, so a broken build fails instead of overflowing.
            if n.get() < 50 {
                c.connect();
            }
            d.set(d.get() - 1);
        })
        .factory();
    let _c = connect(&reactor, closed_port(), client.clone());
    assert!(calls.get() >= 1, "the attempt after shutdown fails");
    assert_eq!(
        max_depth.get(),
        1,
        "client_connection_failed re-entered from inside connect()"
    );
}

/// A factory that keeps its own listening port (to stop listening later,
/// say) makes a cycle with the port; a reactor dropped without running must
/// still close the listening socket.
#[test]
fn dropping_a_reactor_that_never_ran_closes_a_port_its_factory_holds() {
    use std::cell::RefCell;
    struct Holder {
        port: RefCell<Option<Rc<dyn ListeningPort>>>,
    }
    impl Factory for Holder {
        fn build_protocol(&self, _: &reactor::Address) -> Option<Box<dyn Protocol>> {
            None
        }
    }
    let reactor = new_reactor();
    let f = Rc::new(Holder {
        port: RefCell::new(None),
    });
    let port = reactor
        .listen_tcp(0, f.clone(), reactor::DEFAULT_BACKLOG, "127.0.0.1")
        .unwrap();
    let number = port.get_host().port();
    *f.port.borrow_mut() = Some(port);
    drop(f);
    drop(reactor);
    let err =
        TcpStream::connect(("127.0.0.1", number)).expect_err("the listening socket is closed");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
}

/// `stop_listening` from inside `build_protocol`: that connection is still
/// made and served, the port closes, `stop_factory` runs once and the
/// Deferred fires.
#[test]
fn stop_listening_from_inside_build_protocol_serves_that_connection() {
    use std::cell::RefCell;
    struct Once {
        port: RefCell<Option<Rc<dyn ListeningPort>>>,
        stopped: Rc<Cell<usize>>,
        fired: Rc<Cell<usize>>,
    }
    struct Echo(Option<Rc<dyn Transport>>);
    impl Protocol for Echo {
        fn connection_made(&mut self, t: Rc<dyn Transport>) {
            self.0 = Some(t);
        }
        fn data_received(&mut self, d: &[u8]) {
            self.0.as_ref().unwrap().write(d);
        }
    }
    impl Factory for Once {
        fn build_protocol(&self, _: &reactor::Address) -> Option<Box<dyn Protocol>> {
            if let Some(p) = self.port.borrow_mut().take() {
                let fired = self.fired.clone();
                let _ = p.stop_listening().add_callback(move |()| {
                    fired.set(fired.get() + 1);
                });
                // And again: nothing more happens.
                let _ = p.stop_listening();
            }
            Some(Box::new(Echo(None)))
        }
        fn stop_factory(&self) {
            self.stopped.set(self.stopped.get() + 1);
        }
    }
    let reactor = new_reactor();
    let (stopped, fired) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
    let f = Rc::new(Once {
        port: RefCell::new(None),
        stopped: stopped.clone(),
        fired: fired.clone(),
    });
    let port = reactor
        .listen_tcp(0, f.clone(), reactor::DEFAULT_BACKLOG, "127.0.0.1")
        .unwrap();
    let number = port.get_host().port();
    *f.port.borrow_mut() = Some(port);
    let mut peer = TcpStream::connect(("127.0.0.1", number)).unwrap();
    peer.set_nonblocking(true).unwrap();
    peer.write_all(b"ping").unwrap();
    let mut got = Vec::new();
    assert!(turn_for(&reactor, || {
        let mut b = [0u8; 16];
        if let Ok(n) = std::io::Read::read(&mut peer, &mut b) {
            got.extend_from_slice(&b[..n]);
        }
        got == b"ping" && fired.get() == 1
    }));
    assert_eq!(stopped.get(), 1);
    assert!(TcpStream::connect(("127.0.0.1", number)).is_err());
}

/// `abort_connection` then the reactor's shutdown on the same turn, and
/// `lose_connection` then a peer reset: one `connection_lost` each.
#[test]
fn close_then_shutdown_or_reset_is_one_connection_lost() {
    let reactor = new_reactor();
    let server = Hooks::default()
        .on_data(|t, d, _| {
            if d == b"abort" {
                t.abort_connection();
                t.write(b"never");
            } else {
                // A large reply, so the close waits on the peer.
                t.write(&vec![0u8; 8 << 20]);
                t.lose_connection();
            }
        })
        .factory();
    let port = listen(&reactor, server.clone()).get_host().port();
    let mut a = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let b = TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert!(turn_for(&reactor, || server.conns.borrow().len() == 2));
    (&b).write_all(b"big").unwrap();
    assert!(turn_for(&reactor, || server.conn(0).borrow().data
        == b"big"
        || server.conn(1).borrow().data == b"big"));
    // Reset: close with unread data.
    socket2::SockRef::from(&b)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(b);
    a.write_all(b"abort").unwrap();
    let s = server.clone();
    let r = reactor.clone();
    reactor.call_later(Duration::ZERO, move || {
        // Stop on the turn the abort happens.
        let s2 = s.clone();
        let r2 = r.clone();
        stop_when(&r, move || {
            let aborted = s2
                .conns
                .borrow()
                .iter()
                .any(|c| c.borrow().data == b"abort");
            let _ = &r2;
            aborted
        });
    });
    run(&reactor);
    for i in 0..2 {
        let rec = server.conn(i);
        assert_eq!(rec.borrow().lost.len(), 1, "connection {i}");
    }
    drop(a);
}

/// A panic inside `connection_lost` is logged; the connector still hears
/// of the loss, and the server goes on accepting.
#[test]
fn a_panic_in_connection_lost_is_contained() {
    let reactor = new_reactor();
    let server = Hooks::default()
        .on_made(|t, _| t.lose_connection())
        .on_lost(|_, _| panic!("connection_lost blew up"))
        .factory();
    let port = listen(&reactor, server.clone()).get_host().port();
    let client = Hooks::default()
        .on_lost(|_, _| panic!("client connection_lost blew up"))
        .factory();
    connect(&reactor, port, client.clone());
    connect(&reactor, port, client.clone());
    assert!(turn_for(&reactor, || client.stopped.get() == 1
        && server.conns.borrow().len() == 2
        && server
            .conns
            .borrow()
            .iter()
            .all(|c| c.borrow().lost.len() == 1)));
    let ev = client.events();
    assert_eq!(
        ev.iter().filter(|e| e.starts_with("lost:")).count(),
        2,
        "{ev:?}"
    );
}

/// A protocol that aborts in `connection_made` and then writes: nothing is
/// sent and `connection_lost(ConnectionAborted)` comes once, later.
#[test]
fn abort_in_connection_made_then_write_sends_nothing() {
    let reactor = new_reactor();
    let server = Hooks::default()
        .on_made(|t, rec| {
            t.abort_connection();
            t.write(b"leak");
            t.write_sequence(&[b"a", b"", b"b"]);
            t.lose_connection();
            assert!(
                rec.borrow().lost.is_empty(),
                "not from inside connection_made"
            );
        })
        .factory();
    let port = listen(&reactor, server.clone()).get_host().port();
    let mut peer = TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert!(turn_for(&reactor, || server
        .conns
        .borrow()
        .first()
        .is_some_and(|c| !c.borrow().lost.is_empty())));
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    let _ = std::io::Read::read_to_end(&mut peer, &mut got);
    assert!(got.is_empty(), "sent {got:?}");
    assert_eq!(
        server.conn(0).borrow().lost_type(),
        "reactor::errors::ConnectionAborted"
    );
}

/// A client endpoint's `connect` Deferred fires exactly once even when the
/// user's `connection_made` panics: with that Failure (the connection is
/// dropped), instead of never.
#[test]
fn endpoint_connect_fires_when_connection_made_panics() {
    use reactor::endpoints::{StreamClientEndpoint, TCP4ClientEndpoint};
    struct Boom;
    impl Protocol for Boom {
        fn connection_made(&mut self, _: Rc<dyn Transport>) {
            panic!("connection_made blew up");
        }
        fn data_received(&mut self, _: &[u8]) {}
    }
    struct F;
    impl Factory for F {
        fn build_protocol(&self, _: &reactor::Address) -> Option<Box<dyn Protocol>> {
            Some(Box::new(Boom))
        }
    }
    let reactor = new_reactor();
    let server = Hooks::default().factory();
    let port = listen(&reactor, server.clone()).get_host().port();
    let r: Rc<dyn ReactorTcp> = Rc::new(reactor.clone());
    let d = TCP4ClientEndpoint::new(r, "127.0.0.1", port).connect(Rc::new(F));
    let result = Rc::new(std::cell::RefCell::new(None));
    let res = result.clone();
    let _ = d.add_both(move |r| {
        *res.borrow_mut() = Some(r.map(|_| ()));
        Ok(())
    });
    assert!(
        turn_for(&reactor, || result.borrow().is_some()),
        "connect's Deferred never fired"
    );
    let f = result.borrow_mut().take().unwrap().unwrap_err();
    assert!(f.to_string().contains("connection_made blew up"), "{f}");
    assert!(turn_for(&reactor, || server
        .conns
        .borrow()
        .first()
        .is_some_and(|c| !c.borrow().lost.is_empty())));
}

/// `stop()` from inside `data_received`, with connections open: some with
/// megabytes buffered for a peer that does not read, one reconnecting from
/// `client_connection_lost`. Before `run` returns every protocol has its one
/// `connection_lost`, both factories are stopped, and every server socket is
/// closed (each raw peer sees its end).
#[test]
fn stop_from_data_received_closes_everything_before_run_returns() {
    const RAW: usize = 10;
    let reactor = new_reactor();
    let r = reactor.clone();
    let server = Hooks::default()
        .on_data(move |t, d, _| {
            if d == b"stop" {
                let _ = r.stop();
            } else {
                t.write(&vec![1u8; 4 << 20]);
            }
        })
        .factory();
    let port = listen(&reactor, server.clone()).get_host().port();
    let mut raw = Vec::new();
    for _ in 0..RAW {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"flood me").unwrap();
        raw.push(s);
    }
    let client = Hooks::default()
        .on_client_lost(|c, _| c.connect())
        .factory();
    connect(&reactor, port, client.clone());
    let (srv, cl) = (server.clone(), client.clone());
    stop_when(&reactor, move || {
        let flooded = srv
            .conns
            .borrow()
            .iter()
            .filter(|c| c.borrow().data == b"flood me")
            .count();
        if flooded == RAW && cl.conns.borrow().len() == 1 {
            let t = cl.conn(0).borrow().transport.clone().unwrap();
            t.write(b"stop");
        }
        false
    });
    run(&reactor);
    for (i, c) in server.conns.borrow().iter().enumerate() {
        assert_eq!(c.borrow().lost.len(), 1, "server connection {i}");
    }
    for (i, c) in client.conns.borrow().iter().enumerate() {
        assert_eq!(c.borrow().lost.len(), 1, "client connection {i}");
    }
    assert_eq!(server.stopped.get(), 1);
    assert_eq!(client.stopped.get(), 1, "{:?}", client.events());
    for mut s in raw {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut sink = [0u8; 64 * 1024];
        loop {
            match std::io::Read::read(&mut s, &mut sink) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) => {
                    assert_ne!(e.kind(), std::io::ErrorKind::WouldBlock, "still open");
                    assert_ne!(e.kind(), std::io::ErrorKind::TimedOut, "still open");
                    break;
                }
            }
        }
    }
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

/// A `LineReceiver` that pauses in `line_received` and resumes from a
/// timer, on a real connection whose peer sends its lines and closes at
/// once: every line arrives, in order, and then the one `connection_lost`.
#[test]
fn line_receiver_paused_in_line_received_and_resumed_by_a_timer_sees_every_line_and_the_end() {
    use reactor::protocols::basic::{LineHandle, LineReceiver, LineReceiverProtocol};
    use std::cell::RefCell;
    type Log = Rc<RefCell<Vec<String>>>;
    struct Slow {
        reactor: reactor::Reactor,
        log: Log,
    }
    impl LineReceiver for Slow {
        fn line_received(&mut self, line: &[u8], conn: &LineHandle) {
            self.log
                .borrow_mut()
                .push(String::from_utf8_lossy(line).into_owned());
            conn.pause_producing();
            let c = conn.clone();
            self.reactor
                .call_later(Duration::from_millis(2), move || c.resume_producing());
        }
        fn connection_lost(&mut self, reason: deferred::Failure, _: &LineHandle) {
            self.log
                .borrow_mut()
                .push(format!("lost:{}", reason.type_name()));
        }
    }
    struct F(reactor::Reactor, Log);
    impl Factory for F {
        fn build_protocol(&self, _: &reactor::Address) -> Option<Box<dyn Protocol>> {
            Some(Box::new(LineReceiverProtocol::new(Slow {
                reactor: self.0.clone(),
                log: self.1.clone(),
            })))
        }
    }
    let reactor = new_reactor();
    let log: Log = Rc::default();
    let port = reactor
        .listen_tcp(
            0,
            Rc::new(F(reactor.clone(), log.clone())),
            reactor::DEFAULT_BACKLOG,
            "127.0.0.1",
        )
        .unwrap()
        .get_host()
        .port();
    let mut peer = TcpStream::connect(("127.0.0.1", port)).unwrap();
    peer.write_all(b"a\r\nb\r\nc\r\n").unwrap();
    peer.shutdown(Shutdown::Write).unwrap();
    assert!(
        turn_for(&reactor, || log.borrow().len() == 4),
        "{:?}",
        log.borrow()
    );
    assert_eq!(
        *log.borrow(),
        ["a", "b", "c", "lost:reactor::errors::ConnectionDone"]
    );
}
