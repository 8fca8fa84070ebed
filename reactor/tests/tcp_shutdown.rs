//! Reactor shutdown with TCP open: every connection gets `connection_lost`
//! and every port is closed before `run` returns; attempts in progress fail.
//!
//! Ports the behaviour of `twisted.internet.base.ReactorBase.disconnectAll`
//! (the `during`/`shutdown` trigger) as `twisted.internet.test.test_tcp`'s
//! `TCPConnectionTests` / `ProperlyCloseFilesMixin` rely on it, and of
//! `twisted.test.test_tcp.ConnectionLostTests` (exactly once).

// A skipped test says so in the output.
#![allow(clippy::print_stderr)]
mod tcp_support;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use reactor::prelude::*;
use reactor::ConnectError;
use tcp_support::*;

#[test]
fn shutdown_closes_every_connection_and_port_before_run_returns() {
    const N: usize = 20;
    let reactor = new_reactor();
    let server = Hooks::default().on_data(|t, d, _| t.write(d)).factory();
    let port = listen(&reactor, server.clone()).get_host();
    let client = Hooks::default().on_made(|t, _| t.write(b"hi")).factory();
    for _ in 0..N {
        connect(&reactor, port.port(), client.clone());
    }
    // Abort one so its connection_lost is still owed when shutdown comes.
    let (c, s) = (client.clone(), server.clone());
    stop_when(&reactor, move || {
        let echoed = c
            .conns
            .borrow()
            .iter()
            .filter(|r| r.borrow().data == b"hi")
            .count();
        if echoed == N {
            let first = s.conn(0).borrow().transport.clone().unwrap();
            first.abort_connection();
            true
        } else {
            false
        }
    });
    run(&reactor);
    let all = |f: &TestFactory| {
        f.conns
            .borrow()
            .iter()
            .map(|r| r.borrow().lost.len())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        all(&server),
        vec![1; N],
        "server: connection_lost once each"
    );
    assert_eq!(
        all(&client),
        vec![1; N],
        "client: connection_lost once each"
    );
    assert_eq!(
        server.conn(0).borrow().lost_type(),
        "reactor::errors::ConnectionAborted"
    );
    assert_eq!(
        server.conn(1).borrow().lost_type(),
        "reactor::errors::ConnectionLost"
    );
    assert_eq!(server.stopped.get(), 1, "the port was closed: stop_factory");
    assert_eq!(client.stopped.get(), 1);
    assert!(std::net::TcpStream::connect(port.socket_addr()).is_err());
}

#[test]
fn an_attempt_in_progress_fails_at_shutdown() {
    let reactor = new_reactor();
    let client = Hooks::default().factory();
    // An attempt that cannot complete: the listener's accept queue is full.
    let (addr, _keep) = black_hole();
    reactor.connect_tcp(
        "127.0.0.1",
        addr.port(),
        client.clone(),
        Duration::from_secs(30),
        None,
    );
    let r = reactor.clone();
    reactor.call_later(Duration::from_millis(50), move || {
        let _ = r.stop();
    });
    run(&reactor);
    if client.events().iter().any(|e| e.starts_with("lost")) {
        eprintln!("skipped: the kernel accepted beyond the backlog");
        return;
    }
    assert_eq!(
        client.events(),
        [
            "start_factory",
            "started",
            "failed:ReactorStopped",
            "stop_factory"
        ]
    );
    let f = &client.failures.borrow()[0];
    assert_eq!(
        f.downcast_ref::<ConnectError>(),
        Some(&ConnectError::ReactorStopped)
    );
}

#[test]
fn a_pending_stop_listening_completes_at_shutdown() {
    let reactor = new_reactor();
    let server = Hooks::default().factory();
    let port = listen(&reactor, server.clone());
    let fired = Rc::new(Cell::new(false));
    let (f, r, p) = (fired.clone(), reactor.clone(), port.clone());
    reactor.call_when_running(move || {
        let _ = p.stop_listening().add_callback(move |()| f.set(true));
        let _ = r.stop();
    });
    run(&reactor);
    assert!(fired.get());
    assert_eq!(server.stopped.get(), 1);
}

#[test]
fn connecting_after_the_reactor_shut_down_fails_at_once() {
    let reactor = new_reactor();
    let r = reactor.clone();
    reactor.call_when_running(move || {
        let _ = r.stop();
    });
    run(&reactor);
    let client = Hooks::default().factory();
    reactor.connect_tcp(
        "127.0.0.1",
        closed_port(),
        client.clone(),
        Duration::from_secs(30),
        None,
    );
    assert_eq!(
        client.events(),
        [
            "start_factory",
            "started",
            "failed:ReactorStopped",
            "stop_factory"
        ]
    );
}
