//! Stress test of `call_from_thread` (the reactor issue's load requirement;
//! no Twisted counterpart beyond `test_wakerOverflow`): 8 threads each send
//! 100 000 calls while the loop runs. Every call must run exactly once, in
//! per-thread FIFO order, and the loop must then go idle.
//!
//! Each call carries `(thread, seq)`; the loop thread checks that `seq` is
//! the next one expected from that thread, so a lost, duplicated or
//! reordered call is caught where it happens. A lost wakeup would leave the
//! loop asleep forever: the watchdog aborts the process if the test hangs.

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::new_default_reactor;
use reactor::prelude::*;
use reactor::{default_reactor, ReactorFromThreads, RemoteHandle};
use test_support::bounded::Watchdog;
use test_support::reactor::SafetyNet;

const THREADS: usize = 8;
const PER_THREAD: u32 = 100_000;
const TOTAL: usize = THREADS * PER_THREAD as usize;

/// What the loop thread saw. Thread-local: the calls run on the loop thread,
/// and each test has its own thread.
#[derive(Default)]
struct Seen {
    next: Vec<u32>,
    total: usize,
    /// `(thread, seq, expected)` of every call that arrived out of turn.
    errors: Vec<(usize, u32, u32)>,
    /// Stop the default reactor once everything arrived (under `run`), or
    /// else queue a no-op so the turn being driven by `iterate` returns
    /// instead of sleeping on with nothing left to do.
    stop_when_done: bool,
}

thread_local! {
    static SEEN: RefCell<Seen> = RefCell::new(Seen::default());
}

fn reset_seen(stop_when_done: bool) {
    SEEN.with(|s| {
        *s.borrow_mut() = Seen {
            next: vec![0; THREADS],
            stop_when_done,
            ..Seen::default()
        }
    });
}

/// Runs on the loop thread, once per call.
fn record(thread: usize, seq: u32) {
    let done = SEEN.with(|s| {
        let mut s = s.borrow_mut();
        let expected = s.next[thread];
        if seq == expected {
            s.next[thread] += 1;
        } else {
            s.errors.push((thread, seq, expected));
            s.next[thread] = seq.max(expected) + 1;
        }
        s.total += 1;
        (s.total == TOTAL).then_some(s.stop_when_done)
    });
    match done {
        Some(true) => default_reactor().stop().unwrap(),
        Some(false) => default_reactor().call_from_thread(|| ()),
        None => {}
    }
}

fn check_seen() -> usize {
    SEEN.with(|s| {
        let s = s.borrow();
        let first_errors: Vec<_> = s.errors.iter().take(10).collect();
        assert!(
            s.errors.is_empty(),
            "{} calls out of per-thread FIFO order (thread, seq, expected): {first_errors:?}",
            s.errors.len()
        );
        assert_eq!(s.next, vec![PER_THREAD; THREADS], "calls per thread");
        s.total
    })
}

/// Starts the senders; they begin together so their calls interleave.
fn spawn_senders(remote: &RemoteHandle) -> Vec<thread::JoinHandle<()>> {
    let start = Arc::new(Barrier::new(THREADS));
    (0..THREADS)
        .map(|t| {
            let (remote, start) = (remote.clone(), start.clone());
            thread::Builder::new()
                .name(format!("sender-{t}"))
                .spawn(move || {
                    start.wait();
                    for seq in 0..PER_THREAD {
                        remote.call_from_thread(move || record(t, seq));
                    }
                })
                .unwrap()
        })
        .collect()
}

// Issue requirement: 8 x 100 000 call_from_thread under `run()`.
#[test]
fn test_stress_call_from_thread_under_run() {
    let _watchdog = Watchdog::start("stress under run", Duration::from_secs(120));
    let reactor = new_default_reactor();
    reset_seen(true);
    let remote = reactor.remote();
    let senders = Rc::new(RefCell::new(None));
    let s = senders.clone();
    reactor.call_when_running(move || *s.borrow_mut() = Some(spawn_senders(&remote)));
    // The net only reports a hang; the watchdog bounds it for real.
    let net = SafetyNet::arm_for(&reactor, Duration::from_secs(100));
    reactor.run().unwrap();
    net.disarm();
    for t in senders.borrow_mut().take().expect("senders started") {
        t.join().unwrap();
    }
    assert_eq!(check_seen(), TOTAL);
    // Every call ran and nothing is left behind.
    assert!(reactor.loop_queue().is_empty());
    assert_eq!(reactor.loop_queue().outstanding(), 0);
}

// Issue requirement: the same stress, then the loop goes idle. Turns are
// driven one by one with `iterate` (one turn of `run`'s loop) so they can be
// counted; the per-turn wait is an hour, so a lost wakeup hangs (and the
// watchdog aborts) rather than hiding behind a short timeout.
#[test]
fn test_stress_then_idle() {
    let _watchdog = Watchdog::start("stress then idle", Duration::from_secs(120));
    let reactor = new_default_reactor();
    reset_seen(false);
    reactor.start_running().unwrap();
    assert!(reactor.running());
    let senders = spawn_senders(&reactor.remote());
    let total = || SEEN.with(|s| s.borrow().total);
    let mut busy_turns = 0u64;
    while total() < TOTAL {
        reactor.iterate(Duration::from_secs(3600));
        busy_turns += 1;
    }
    for t in senders {
        t.join().unwrap();
    }
    assert_eq!(check_seen(), TOTAL);
    // Nothing is left behind but the no-op queued by the last call.
    assert_eq!(reactor.loop_queue().len(), 1);
    assert_eq!(reactor.loop_queue().outstanding(), 0);
    assert!(busy_turns >= 1);

    // Idle window: one timer 100 ms away and nothing else. An idle loop
    // sleeps in poll until it: about two turns (one more for the no-op queued
    // by the last call, one more if a sender's last wakeup raced with the
    // loop and left the waker set, one more per early return of poll). A
    // loop that keeps waking would make thousands.
    let window_over = Rc::new(Cell::new(false));
    let w = window_over.clone();
    let r = reactor.clone();
    reactor.call_later(Duration::from_millis(100), move || {
        w.set(true);
        // Wakes the loop out of the wait that follows this turn's timers.
        r.call_from_thread(|| ());
    });
    let mut idle_turns = 0u64;
    while !window_over.get() {
        reactor.iterate(Duration::from_secs(3600));
        idle_turns += 1;
        assert!(idle_turns <= 6, "the loop kept waking while idle");
    }
    assert!(idle_turns >= 1);

    // Shutdown still works afterwards.
    reactor.stop().unwrap();
    reactor.iterate(Duration::ZERO);
    assert!(!reactor.running());
}
