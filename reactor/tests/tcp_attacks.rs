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
    let err = TcpStream::connect(("127.0.0.1", number))
        .err()
        .expect("the listening socket is closed");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
}
