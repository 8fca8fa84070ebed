//! Data over real connections on 127.0.0.1, and how connections end.
//!
//! Ports `twisted.internet.test.test_tcp` / `twisted.test.test_tcp`:
//! `LoopbackTests` (echo), `WriteDataTests` (`write`, `writeSequence`,
//! `test_writeAfterShutdownWithoutReading`), `LargeBufferTests` (a large
//! write flushed before `loseConnection` closes), `HalfCloseTests`
//! (`readConnectionLost`, `loseWriteConnection`, `writeConnectionLost`),
//! `AbortConnectionMixin` (`test_abortConnection*`: aborted connections
//! send nothing more and report `ConnectionAborted` on a later turn),
//! `ProperlyCloseFilesTests` (a reset peer, many clients) and
//! `ConnectionLostTests` (`connectionLost` exactly once), plus the
//! exception handling of `twisted.internet.test.test_tcp` `TCPConnectionTests`
//! (`test_dataReceivedThrows`: the connection is dropped, the server goes
//! on).

mod tcp_support;

use std::cell::Cell;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::rc::Rc;
use std::time::Duration;

use tcp_support::*;

fn echo_server() -> Rc<TestFactory> {
    Hooks::default().on_data(|t, d, _| t.write(d)).factory()
}

fn blocking_client(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

#[test]
fn echo_many_clients_at_once() {
    // LoopbackTests / ProperlyCloseFilesTests with 100 clients.
    const N: usize = 100;
    let reactor = new_reactor();
    let server = echo_server();
    let port = listen(&reactor, server.clone()).get_host().port();
    let client = Hooks::default()
        .on_made(|t, _| t.write_sequence(&[b"hello ", b"world"]))
        .on_data(|t, _, r| {
            if r.borrow().data.len() == 11 {
                t.lose_connection();
            }
        })
        .factory();
    for _ in 0..N {
        connect(&reactor, port, client.clone());
    }
    let (c, s) = (client.clone(), server.clone());
    stop_when(&reactor, move || {
        c.conns.borrow().len() == N
            && c.conns.borrow().iter().all(|r| !r.borrow().lost.is_empty())
            && s.conns.borrow().iter().all(|r| !r.borrow().lost.is_empty())
    });
    run(&reactor);
    for r in client.conns.borrow().iter() {
        assert_eq!(r.borrow().data, b"hello world");
        assert_eq!(r.borrow().lost_type(), "reactor::errors::ConnectionDone");
    }
    for r in server.conns.borrow().iter() {
        assert_eq!(r.borrow().lost_type(), "reactor::errors::ConnectionDone");
    }
    assert_eq!(server.conns.borrow().len(), N);
}

#[test]
fn a_large_write_is_flushed_before_lose_connection_closes() {
    // LargeBufferTests: 8 MiB written and lose_connection called at once.
    const SIZE: usize = 8 << 20;
    let reactor = new_reactor();
    let server = Hooks::default()
        .on_made(|t, _| {
            let data: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
            t.write(&data);
            t.lose_connection();
            t.write(b"!"); // still before the close: Twisted sends it too
        })
        .factory();
    let port = listen(&reactor, server.clone()).get_host().port();
    let client = Hooks::default().factory();
    connect(&reactor, port, client.clone());
    let c = client.clone();
    stop_when(&reactor, move || c.stopped.get() == 1);
    run(&reactor);
    let rec = client.conn(0);
    let rec = rec.borrow();
    assert_eq!(rec.data.len(), SIZE + 1);
    assert!(rec.data[..SIZE]
        .iter()
        .enumerate()
        .all(|(i, &b)| b == (i % 251) as u8));
    assert_eq!(rec.data[SIZE], b'!');
    assert_eq!(rec.lost_type(), "reactor::errors::ConnectionDone");
    assert_eq!(
        server.conn(0).borrow().lost_type(),
        "reactor::errors::ConnectionDone"
    );
}

#[test]
fn lose_connection_from_data_received_still_sends_the_reply() {
    let reactor = new_reactor();
    let server = Hooks::default()
        .on_data(|t, _, _| {
            t.write(b"bye");
            t.lose_connection();
            assert!(t.disconnecting());
        })
        .factory();
    let port = listen(&reactor, server.clone()).get_host().port();
    let h = std::thread::spawn(move || {
        let mut s = blocking_client(port);
        s.write_all(b"x").unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        out
    });
    turn_until(&reactor, || h.is_finished());
    assert_eq!(h.join().unwrap(), b"bye");
    turn_until(&reactor, || !server.conn(0).borrow().lost.is_empty());
    assert_eq!(
        server.conn(0).borrow().lost_type(),
        "reactor::errors::ConnectionDone"
    );
}

#[test]
fn abort_connection_drops_buffered_data_and_reports_aborted_on_a_later_turn() {
    let reactor = new_reactor();
    let aborted_in_call = Rc::new(Cell::new(false));
    let a = aborted_in_call.clone();
    let server = Hooks::default()
        .on_data(move |t, _, r| {
            t.write(&vec![b'z'; 1 << 20]);
            t.abort_connection();
            // Not synchronously.
            a.set(!r.borrow().lost.is_empty());
            t.write(b"after abort");
            t.lose_connection();
            t.abort_connection();
            assert!(t.disconnecting());
        })
        .factory();
    let port = listen(&reactor, server.clone()).get_host().port();
    let h = std::thread::spawn(move || {
        let mut s = blocking_client(port);
        s.write_all(b"x").unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out); // EOF or reset
        out
    });
    turn_until(&reactor, || {
        h.is_finished()
            && !server.conns.borrow().is_empty()
            && !server.conn(0).borrow().lost.is_empty()
    });
    assert!(
        !aborted_in_call.get(),
        "connection_lost is not called inside abort_connection"
    );
    let got = h.join().unwrap();
    assert!(
        got.is_empty(),
        "nothing is sent after abort ({} bytes came)",
        got.len()
    );
    assert_eq!(
        server.conn(0).borrow().lost_type(),
        "reactor::errors::ConnectionAborted"
    );
}

#[test]
fn abort_from_connection_made_on_the_client() {
    // AbortConnectionMixin.test_abortConnectionBeforeConnect-ish: abort at once.
    let reactor = new_reactor();
    let server = Hooks::default().factory();
    let port = listen(&reactor, server.clone()).get_host().port();
    let client = Hooks::default()
        .on_made(|t, _| {
            t.write(b"never");
            t.abort_connection();
        })
        .factory();
    connect(&reactor, port, client.clone());
    turn_until(&reactor, || {
        client.stopped.get() == 1
            && server
                .conns
                .borrow()
                .first()
                .is_some_and(|c| !c.borrow().lost.is_empty())
    });
    assert_eq!(client.events()[2], "lost:ConnectionAborted");
    assert_eq!(
        client.conn(0).borrow().lost_type(),
        "reactor::errors::ConnectionAborted"
    );
    assert!(server.conn(0).borrow().data.is_empty());
}

#[test]
fn a_peer_reset_is_one_connection_lost() {
    let reactor = new_reactor();
    let server = Hooks::default().factory();
    let port = listen(&reactor, server.clone()).get_host().port();
    let s = blocking_client(port);
    turn_until(&reactor, || !server.conns.borrow().is_empty());
    let sock = socket2::Socket::from(s);
    sock.set_linger(Some(Duration::ZERO)).unwrap();
    drop(sock); // RST
    turn_until(&reactor, || !server.conn(0).borrow().lost.is_empty());
    // More turns deliver nothing more.
    for _ in 0..5 {
        reactor.iterate(Duration::from_millis(2));
    }
    assert_eq!(
        server.conn(0).borrow().lost_type(),
        "reactor::errors::ConnectionLost"
    );
}

#[test]
fn writing_to_a_peer_that_went_away_is_one_connection_lost() {
    // WriteDataTests.test_writeAfterShutdownWithoutReading: the server does
    // not read (paused), so only its writes find out.
    let reactor = new_reactor();
    let server = Hooks::default()
        .on_made(|t, _| t.pause_producing())
        .factory();
    let port = listen(&reactor, server.clone()).get_host().port();
    let s = blocking_client(port);
    turn_until(&reactor, || !server.conns.borrow().is_empty());
    let sock = socket2::Socket::from(s);
    sock.set_linger(Some(Duration::ZERO)).unwrap();
    drop(sock);
    let t = server.conn(0).borrow().transport.clone().unwrap();
    turn_until(&reactor, || {
        t.write(&[0u8; 4096]);
        !server.conn(0).borrow().lost.is_empty()
    });
    for _ in 0..5 {
        t.write(b"more");
        reactor.iterate(Duration::from_millis(2));
    }
    assert_eq!(
        server.conn(0).borrow().lost_type(),
        "reactor::errors::ConnectionLost"
    );
}

#[test]
fn peer_close_is_connection_done() {
    let reactor = new_reactor();
    let server = Hooks::default().factory();
    let port = listen(&reactor, server.clone()).get_host().port();
    let mut s = blocking_client(port);
    s.write_all(b"last words").unwrap();
    drop(s);
    turn_until(&reactor, || {
        server
            .conns
            .borrow()
            .first()
            .is_some_and(|c| !c.borrow().lost.is_empty())
    });
    assert_eq!(server.conn(0).borrow().data, b"last words");
    assert_eq!(
        server.conn(0).borrow().lost_type(),
        "reactor::errors::ConnectionDone"
    );
}

#[test]
fn half_close_read_side_keeps_the_connection_for_writing() {
    // HalfCloseTests.test_readConnectionLost / testReadHalfClose
    let reactor = new_reactor();
    let mut hooks = Hooks {
        half_close: true,
        ..Hooks::default()
    };
    hooks.read_lost = Some(Box::new(|t, r| {
        let n = r.borrow().data.len();
        t.write(format!("got {n}").as_bytes());
        t.lose_connection();
    }));
    let server = hooks.factory();
    let port = listen(&reactor, server.clone()).get_host().port();
    let h = std::thread::spawn(move || {
        let mut s = blocking_client(port);
        s.write_all(b"12345").unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    });
    turn_until(&reactor, || {
        h.is_finished()
            && server
                .conns
                .borrow()
                .first()
                .is_some_and(|c| !c.borrow().lost.is_empty())
    });
    assert_eq!(h.join().unwrap(), "got 5");
    let rec = server.conn(0);
    assert_eq!(rec.borrow().read_lost, 1);
    assert_eq!(rec.borrow().lost_type(), "reactor::errors::ConnectionDone");
}

#[test]
fn without_half_close_the_peer_shutting_its_write_side_ends_the_connection() {
    let reactor = new_reactor();
    let server = Hooks::default().factory();
    let port = listen(&reactor, server.clone()).get_host().port();
    let s = blocking_client(port);
    s.shutdown(std::net::Shutdown::Write).unwrap();
    turn_until(&reactor, || {
        server
            .conns
            .borrow()
            .first()
            .is_some_and(|c| !c.borrow().lost.is_empty())
    });
    assert_eq!(server.conn(0).borrow().read_lost, 0);
    assert_eq!(
        server.conn(0).borrow().lost_type(),
        "reactor::errors::ConnectionDone"
    );
}

#[test]
fn lose_write_connection_sends_eof_and_keeps_reading() {
    // HalfCloseTests.test_writeCloseNotification / testWriteHalfClose
    let reactor = new_reactor();
    let mut hooks = Hooks {
        half_close: true,
        ..Hooks::default()
    };
    // As Twisted's, a half-closed connection stays until the protocol
    // loses it, even once both directions are shut.
    hooks.read_lost = Some(Box::new(|t, _| t.lose_connection()));
    let server = hooks
        .on_made(|t, _| {
            t.write(b"all I have");
            t.lose_write_connection();
            // Still sent: the write side shuts once the buffer is flushed.
            t.write(b", and more");
        })
        .factory();
    let port = listen(&reactor, server.clone()).get_host().port();
    let h = std::thread::spawn(move || {
        let mut s = blocking_client(port);
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap(); // EOF from the server's half-close
        s.write_all(b"still listening?").unwrap();
        out
    });
    turn_until(&reactor, || {
        h.is_finished()
            && server
                .conns
                .borrow()
                .first()
                .is_some_and(|c| c.borrow().data.len() == 16)
    });
    assert_eq!(h.join().unwrap(), b"all I have, and more");
    let t = server.conn(0).borrow().transport.clone().unwrap();
    t.write(b"dropped: the write side is shut");
    let rec = server.conn(0);
    assert_eq!(rec.borrow().write_lost, 1);
    assert_eq!(rec.borrow().data, b"still listening?");
    turn_until(&reactor, || !rec.borrow().lost.is_empty());
    assert_eq!(rec.borrow().read_lost, 1);
    assert_eq!(rec.borrow().lost_type(), "reactor::errors::ConnectionDone");
}

#[test]
fn a_panic_in_data_received_drops_that_connection_and_the_server_goes_on() {
    let logs = test_support::logs::LogCapture::start();
    let reactor = new_reactor();
    let server = Hooks::default()
        .on_data(|t, d, _| {
            if d.starts_with(b"boom") {
                panic!("protocol blew up");
            }
            t.write(d);
        })
        .factory();
    let port = listen(&reactor, server.clone()).get_host().port();
    let bad = std::thread::spawn(move || {
        let mut s = blocking_client(port);
        s.write_all(b"boom").unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        out
    });
    turn_until(&reactor, || bad.is_finished());
    assert!(bad.join().unwrap().is_empty());
    let good = std::thread::spawn(move || {
        let mut s = blocking_client(port);
        s.write_all(b"fine").unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).unwrap();
        buf
    });
    turn_until(&reactor, || good.is_finished());
    assert_eq!(&good.join().unwrap(), b"fine");
    let rec = server.conn(0);
    let lost = &rec.borrow().lost;
    assert_eq!(lost.len(), 1, "connection_lost exactly once");
    assert!(lost[0].is_panic());
    assert!(lost[0].to_string().contains("protocol blew up"));
    let errors = logs.errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].failure().unwrap().contains("protocol blew up"));
}

#[test]
fn a_panic_in_connection_made_drops_the_connection() {
    let logs = test_support::logs::LogCapture::start();
    let reactor = new_reactor();
    let server = Hooks::default()
        .on_made(|_, _| panic!("made blew up"))
        .factory();
    let port = listen(&reactor, server.clone()).get_host().port();
    let h = std::thread::spawn(move || {
        let mut s = blocking_client(port);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
    });
    turn_until(&reactor, || {
        h.is_finished()
            && server
                .conns
                .borrow()
                .first()
                .is_some_and(|c| !c.borrow().lost.is_empty())
    });
    assert!(server.conn(0).borrow().lost[0].is_panic());
    assert_eq!(server.conn(0).borrow().lost.len(), 1);
    assert_eq!(logs.errors().len(), 1);
}

#[test]
fn transport_methods_after_close_do_nothing() {
    let reactor = new_reactor();
    let server = Hooks::default().factory();
    let port = listen(&reactor, server.clone()).get_host().port();
    drop(blocking_client(port));
    turn_until(&reactor, || {
        server
            .conns
            .borrow()
            .first()
            .is_some_and(|c| !c.borrow().lost.is_empty())
    });
    let t = server.conn(0).borrow().transport.clone().unwrap();
    t.write(b"x");
    t.write_sequence(&[b"a", b"b"]);
    t.lose_connection();
    t.abort_connection();
    t.lose_write_connection();
    t.pause_producing();
    t.resume_producing();
    t.stop_producing();
    t.unregister_producer();
    assert!(t.disconnecting());
    assert!(t.set_tcp_nodelay(true).is_err());
    for _ in 0..3 {
        reactor.iterate(Duration::from_millis(1));
    }
    assert_eq!(server.conn(0).borrow().lost.len(), 1);
}

#[test]
fn socket_options_and_pausing_reads() {
    let reactor = new_reactor();
    let server = Hooks::default()
        .on_made(|t, _| {
            t.set_tcp_nodelay(true).unwrap();
            assert!(t.get_tcp_nodelay().unwrap());
            t.set_tcp_keepalive(true).unwrap();
            assert!(t.get_tcp_keepalive().unwrap());
            t.set_tcp_keepalive(false).unwrap();
            assert!(!t.get_tcp_keepalive().unwrap());
            t.pause_producing();
        })
        .factory();
    let port = listen(&reactor, server.clone()).get_host().port();
    let mut s = blocking_client(port);
    s.write_all(b"while paused").unwrap();
    turn_until(&reactor, || !server.conns.borrow().is_empty());
    for _ in 0..20 {
        reactor.iterate(Duration::from_millis(1));
    }
    assert!(
        server.conn(0).borrow().data.is_empty(),
        "nothing delivered while paused"
    );
    server
        .conn(0)
        .borrow()
        .transport
        .as_ref()
        .unwrap()
        .resume_producing();
    turn_until(&reactor, || server.conn(0).borrow().data == b"while paused");
}

#[test]
fn a_busy_connection_does_not_starve_the_others() {
    // One peer floods; another's small message still gets through and is
    // answered while the flood goes on.
    let reactor = new_reactor();
    let server = echo_server();
    let port = listen(&reactor, server.clone()).get_host().port();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let flood = std::thread::spawn(move || {
        let mut s = blocking_client(port);
        let mut r = s.try_clone().unwrap();
        let drain = std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            while r.read(&mut buf).map(|n| n > 0).unwrap_or(false) {}
        });
        let chunk = vec![7u8; 1 << 16];
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            if s.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = s.shutdown(std::net::Shutdown::Both);
        let _ = drain.join();
    });
    turn_until(&reactor, || {
        server
            .conns
            .borrow()
            .first()
            .is_some_and(|c| c.borrow().data.len() > (1 << 20))
    });
    let small = std::thread::spawn(move || {
        let mut s = blocking_client(port);
        s.write_all(b"me too").unwrap();
        let mut buf = [0u8; 6];
        s.read_exact(&mut buf).unwrap();
        buf
    });
    turn_until(&reactor, || small.is_finished());
    assert_eq!(&small.join().unwrap(), b"me too");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    turn_until(&reactor, || flood.is_finished());
    flood.join().unwrap();
}
