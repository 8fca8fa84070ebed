//! A randomized state-machine test of a TCP connection's ending: random
//! interleavings of `write`, `lose_connection`, `abort_connection`, the
//! peer closing or resetting, reading, loop turns and reactor shutdown.
//!
//! Invariants (Twisted's `ConnectionLostTests`, `AbortConnectionMixin`,
//! `LargeBufferTests` stated as properties): `connection_lost` exactly
//! once; the peer only ever receives a prefix of what was written, and
//! nothing written after `abort_connection`; when the connection ends by
//! `lose_connection` alone, everything written before it arrives.

mod tcp_support;

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::time::Duration;

use proptest::prelude::*;
use reactor::prelude::*;
use tcp_support::*;

#[derive(Debug, Clone)]
enum Op {
    Write(usize),
    Lose,
    Abort,
    PeerClose,
    PeerReset,
    PeerRead,
    Turn,
    Shutdown,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1usize..100_000).prop_map(Op::Write),
        1 => Just(Op::Lose),
        1 => Just(Op::Abort),
        1 => Just(Op::PeerClose),
        1 => Just(Op::PeerReset),
        3 => Just(Op::PeerRead),
        4 => Just(Op::Turn),
        1 => Just(Op::Shutdown),
    ]
}

fn pattern(from: usize, n: usize) -> Vec<u8> {
    (from..from + n).map(|i| (i % 251) as u8).collect()
}

/// Reads what is there without blocking; `false` once the stream ended.
fn read_some(s: &mut TcpStream, into: &mut Vec<u8>) -> bool {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => into.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum End {
    Lose,
    Abort,
    Peer,
    Shutdown,
}

fn check(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let reactor = new_reactor();
    let server = Hooks::default().factory();
    let port = listen(&reactor, server.clone()).get_host().port();
    let mut peer = Some(TcpStream::connect(("127.0.0.1", port)).unwrap());
    peer.as_ref().unwrap().set_nonblocking(true).unwrap();
    turn_until(&reactor, || !server.conns.borrow().is_empty());
    let rec = server.conn(0);
    let t = rec.borrow().transport.clone().unwrap();
    let mut written = 0usize;
    let mut written_before_lose = None;
    let mut written_before_abort = None;
    let mut first_end: Option<End> = None;
    let mut later_ends = Vec::new();
    let mut received = Vec::new();
    let mut peer_open = true;
    let mut end = |e: End, first: &mut Option<End>| {
        if first.is_none() {
            *first = Some(e);
        } else {
            later_ends.push(e);
        }
    };
    for op in ops {
        match op {
            Op::Write(n) => {
                let lost = !rec.borrow().lost.is_empty();
                t.write(&pattern(written, n));
                // Writes after the end (or after an abort) go nowhere.
                if !lost && written_before_abort.is_none() {
                    written += n;
                }
            }
            Op::Lose => {
                if written_before_lose.is_none() {
                    written_before_lose = Some(written);
                }
                t.lose_connection();
                end(End::Lose, &mut first_end);
            }
            Op::Abort => {
                if written_before_abort.is_none() {
                    written_before_abort = Some(written);
                }
                t.abort_connection();
                end(End::Abort, &mut first_end);
            }
            Op::PeerClose => {
                if peer.take().is_some() {
                    end(End::Peer, &mut first_end);
                }
            }
            Op::PeerReset => {
                if let Some(s) = peer.take() {
                    let s = socket2::Socket::from(s);
                    let _ = s.set_linger(Some(Duration::ZERO));
                    end(End::Peer, &mut first_end);
                }
            }
            Op::PeerRead => {
                if let Some(s) = peer.as_mut() {
                    if peer_open {
                        peer_open = read_some(s, &mut received);
                    }
                }
            }
            Op::Turn => reactor.iterate(Duration::ZERO),
            Op::Shutdown => {
                reactor.fire_system_event("shutdown");
                end(End::Shutdown, &mut first_end);
            }
        }
        prop_assert!(rec.borrow().lost.len() <= 1, "connection_lost at most once");
    }
    // Finish: the peer reads to the end (or closes if nothing else will).
    if first_end.is_none() {
        peer = None;
        first_end = Some(End::Peer);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        reactor.iterate(Duration::from_millis(1));
        if let Some(s) = peer.as_mut() {
            if peer_open {
                peer_open = read_some(s, &mut received);
            }
        }
        let done = !rec.borrow().lost.is_empty() && (peer.is_none() || !peer_open);
        if done {
            break;
        }
        prop_assert!(
            std::time::Instant::now() < deadline,
            "the connection never ended"
        );
    }
    for _ in 0..3 {
        reactor.iterate(Duration::ZERO);
    }
    let lost = rec.borrow().lost.clone();
    prop_assert_eq!(lost.len(), 1, "connection_lost exactly once");
    prop_assert!(received.len() <= written);
    prop_assert!(
        received == pattern(0, received.len()),
        "the peer got a prefix of the writes"
    );
    if let Some(w) = written_before_abort {
        prop_assert!(received.len() <= w, "nothing written after abort arrives");
    }
    let reason = lost[0].type_name();
    match first_end {
        Some(End::Abort) => prop_assert_eq!(reason, "reactor::errors::ConnectionAborted"),
        Some(End::Lose) if later_ends.is_empty() => {
            prop_assert_eq!(reason, "reactor::errors::ConnectionDone");
            let w = written_before_lose.unwrap();
            prop_assert!(
                received.len() >= w,
                "everything written before lose_connection arrives: {} < {}",
                received.len(),
                w
            );
        }
        _ => {}
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn connection_endings(ops in proptest::collection::vec(op(), 1..16)) {
        check(ops)?;
    }
}
