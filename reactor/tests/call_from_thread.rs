//! Ports Twisted's `callFromThread` tests: `CallFromThreadTests` and
//! `CallFromThreadStopsAndWakeUpTests` (`twisted/test/test_internet.py`),
//! `ReactorThreadsTests.test_callFromThread` and `test_wakerOverflow`
//! (`twisted/test/test_threads.py`), and the `callFromThread` / `isInIOThread`
//! tests of `ThreadTestsBuilder` (`twisted/internet/test/test_threads.py`),
//! plus the queue rules of `ReactorBase.callFromThread` and `runUntilCurrent`: FIFO, calls queued while draining
//! wait for the next turn without losing the wakeup, a panic is logged and
//! the loop goes on.
//!
//! Closures given to `call_from_thread` are `Send`, so they cannot capture
//! the `!Send` reactor; they reach it on the loop thread through the
//! per-thread [`default_reactor`].

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::{new_default_reactor, stop_default};
use reactor::prelude::*;
use reactor::{default_reactor, ReactorFromThreads, RemoteHandle};
use test_support::logs::{capture_logs, containing};
use test_support::reactor::{run_bounded, SafetyNet};
use test_support::TIMEOUT;
use tracing::Level;

type Shared<T> = Arc<Mutex<Vec<T>>>;

fn shared<T>() -> Shared<T> {
    Arc::new(Mutex::new(Vec::new()))
}

fn snapshot<T: Clone>(s: &Shared<T>) -> Vec<T> {
    s.lock().unwrap().clone()
}

// Twisted: CallFromThreadTests.test_lotsOfThreadsAreScheduledCorrectly
#[test]
fn test_lots_of_threads_are_scheduled_correctly() {
    let reactor = new_default_reactor();
    let counter = Arc::new(AtomicUsize::new(0));
    let on_loop = Arc::new(AtomicUsize::new(0));
    let remote = reactor.remote();
    // 100 calls, each from its own thread, as Twisted schedules 100 calls.
    let threads: Vec<_> = (0..100)
        .map(|_| {
            let (remote, counter, on_loop) = (remote.clone(), counter.clone(), on_loop.clone());
            let r2 = remote.clone();
            thread::spawn(move || {
                remote.call_from_thread(move || {
                    if r2.is_loop_thread() {
                        on_loop.fetch_add(1, Ordering::SeqCst);
                    }
                    if counter.fetch_add(1, Ordering::SeqCst) + 1 == 100 {
                        stop_default();
                    }
                });
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    run_bounded(&reactor).expect("the reactor runs");
    assert_eq!(counter.load(Ordering::SeqCst), 100);
    assert_eq!(on_loop.load(Ordering::SeqCst), 100);
}

// Twisted: CallFromThreadTests.test_threadsAreRunInScheduledOrder
#[test]
fn test_threads_are_run_in_scheduled_order() {
    let reactor = new_default_reactor();
    let order = shared();
    let remote = reactor.remote();
    let o = order.clone();
    // From another thread, then from the loop thread: each sender's calls
    // keep their order, and the queue is one FIFO.
    thread::spawn(move || {
        for i in 1..=4 {
            let o = o.clone();
            remote.call_from_thread(move || o.lock().unwrap().push(i));
        }
    })
    .join()
    .unwrap();
    for i in 5..=8 {
        let o = order.clone();
        reactor.call_from_thread(move || o.lock().unwrap().push(i));
    }
    reactor.call_from_thread(stop_default);
    run_bounded(&reactor).expect("the reactor runs");
    assert_eq!(snapshot(&order), vec![1, 2, 3, 4, 5, 6, 7, 8]);
}

// Twisted: CallFromThreadTests.test_scheduledThreadsNotRunUntilReactorRuns
#[test]
fn test_scheduled_threads_not_run_until_reactor_runs() {
    let reactor = new_default_reactor();
    let events = shared();
    let remote = reactor.remote();
    let e = events.clone();
    thread::spawn(move || {
        remote.call_from_thread(move || e.lock().unwrap().push("queued call"));
    })
    .join()
    .unwrap();
    // The sender is done; nothing has run the call.
    assert!(snapshot(&events).is_empty());
    assert_eq!(reactor.loop_queue().len(), 1);
    // It runs in the first turn: after the startup triggers, before the timed
    // calls of that turn (`ReactorBase.runUntilCurrent`).
    let e = events.clone();
    reactor.call_when_running(move || e.lock().unwrap().push("call_when_running"));
    let e = events.clone();
    reactor.call_later(Duration::ZERO, move || {
        e.lock().unwrap().push("timer");
        stop_default();
    });
    run_bounded(&reactor).expect("the reactor runs");
    assert_eq!(
        snapshot(&events),
        vec!["call_when_running", "queued call", "timer"]
    );
}

// Twisted: CallFromThreadStopsAndWakeUpTests.testWakeUp
#[test]
fn test_wake_up() {
    let reactor = new_default_reactor();
    let arrived = Arc::new(AtomicUsize::new(0));
    let remote = reactor.remote();
    let a = arrived.clone();
    // The only timer is the safety net (30 s away), so the loop blocks in
    // poll; only the call's wakeup can bring it back in time.
    reactor.call_when_running(move || {
        thread::spawn(move || {
            // Give the loop time to fall asleep (as Twisted's 0.1 s): not
            // synchronisation, the assertion holds whenever the call arrives.
            thread::sleep(Duration::from_millis(100));
            remote.call_from_thread(move || {
                a.fetch_add(1, Ordering::SeqCst);
                stop_default();
            });
        });
    });
    run_bounded(&reactor).expect("the reactor runs");
    assert_eq!(arrived.load(Ordering::SeqCst), 1);
}

// Twisted: CallFromThreadStopsAndWakeUpTests.testCallFromThreadStops
#[test]
fn test_call_from_thread_stops() {
    // A call queued from inside a queued call does not starve the rest of the
    // loop: the timer scheduled alongside it runs first.
    let reactor = new_default_reactor();
    let events = shared();
    let e = events.clone();
    reactor.call_from_thread(move || {
        e.lock().unwrap().push("first");
        let r = default_reactor();
        let e2 = e.clone();
        r.call_from_thread(move || {
            e2.lock().unwrap().push("second");
            stop_default();
        });
        let e3 = e.clone();
        r.call_later(Duration::ZERO, move || e3.lock().unwrap().push("stopped"));
    });
    run_bounded(&reactor).expect("the reactor runs");
    assert_eq!(snapshot(&events), vec!["first", "stopped", "second"]);
}

// Twisted: ThreadTestsBuilder.test_delayedCallFromThread
#[test]
fn test_delayed_call_from_thread() {
    // callFromThread from a timer, i.e. after this turn's queue was drained,
    // must still wake the loop, which otherwise sleeps until the safety net.
    let reactor = new_default_reactor();
    let r = reactor.clone();
    reactor.call_later(Duration::ZERO, move || r.call_from_thread(stop_default));
    let net = SafetyNet::arm_for(&reactor, Duration::from_secs(60));
    reactor.run().unwrap();
    assert!(!net.fired(), "the call queued from a timer was not run");
    net.disarm();
}

// Twisted: ThreadTestsBuilder.test_callFromThread
#[test]
fn test_call_from_thread_runs_in_reactor_thread() {
    let reactor = new_default_reactor();
    let seen = shared();
    let r = reactor.clone();
    let s = seen.clone();
    reactor.call_later(Duration::ZERO, move || {
        let remote = r.remote();
        r.call_in_thread(move || {
            remote.call_from_thread(move || {
                s.lock().unwrap().push(thread::current().id());
                stop_default();
            });
        })
        .unwrap();
    });
    run_bounded(&reactor).expect("the reactor runs");
    assert_eq!(snapshot(&seen), vec![thread::current().id()]);
}

// Twisted: ReactorThreadsTests.test_callFromThread
#[test]
fn test_call_from_thread_from_reactor_and_other_thread() {
    let reactor = new_default_reactor();
    let seen = shared();
    let r = reactor.clone();
    let s = seen.clone();
    reactor.call_when_running(move || {
        let done = move |s: &Shared<&'static str>, who| {
            let mut v = s.lock().unwrap();
            assert!(default_reactor().is_in_io_thread());
            v.push(who);
            if v.len() == 2 {
                stop_default();
            }
        };
        let remote = r.remote();
        let s2 = s.clone();
        r.call_in_thread(move || {
            remote.call_from_thread(move || done(&s2, "other thread"));
        })
        .unwrap();
        r.call_from_thread(move || done(&s, "reactor thread"));
    });
    run_bounded(&reactor).expect("the reactor runs");
    let mut got = snapshot(&seen);
    got.sort_unstable();
    assert_eq!(got, vec!["other thread", "reactor thread"]);
}

// Twisted: ReactorThreadsTests.test_wakerOverflow
#[test]
fn test_waker_overflow() {
    // 100 000 calls queued from a thread while the loop thread is blocked (as
    // Twisted's test blocks the reactor on an Event): the sender never blocks
    // or fails, and every call runs once the loop is back.
    const N: usize = 100_000;
    let reactor = new_default_reactor();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = reactor.clone();
    let ran2 = ran.clone();
    reactor.call_when_running(move || {
        let remote = r.remote();
        let (tx, rx) = crossbeam_channel::bounded(1);
        let ran3 = ran2.clone();
        r.call_in_thread(move || {
            for _ in 0..N {
                let ran = ran3.clone();
                remote.call_from_thread(move || {
                    if ran.fetch_add(1, Ordering::SeqCst) + 1 == N {
                        stop_default();
                    }
                });
            }
            tx.send(()).unwrap();
        })
        .unwrap();
        rx.recv_timeout(TIMEOUT * 4)
            .expect("the sender finished without blocking on the waker");
        assert_eq!(ran2.load(Ordering::SeqCst), 0, "the loop was blocked");
        assert_eq!(r.loop_queue().len(), N);
    });
    run_bounded(&reactor).expect("the reactor runs");
    assert_eq!(ran.load(Ordering::SeqCst), N);
    assert!(reactor.loop_queue().is_empty());
}

// `ReactorBase.callFromThread` and `runUntilCurrent`: order `a, b, nested`
#[test]
fn test_nested_call_from_thread_runs_next_turn() {
    let reactor = new_default_reactor();
    let events = shared();
    let e = events.clone();
    reactor.call_from_thread(move || {
        e.lock().unwrap().push("a");
        let r = default_reactor();
        let e2 = e.clone();
        r.call_from_thread(move || {
            e2.lock().unwrap().push("nested");
            stop_default();
        });
        // A timer due now runs later in this same turn; the nested call only
        // in the next one.
        let e3 = e.clone();
        r.call_later(Duration::ZERO, move || {
            e3.lock().unwrap().push("timer of the same turn")
        });
    });
    let e = events.clone();
    reactor.call_from_thread(move || e.lock().unwrap().push("b"));
    // No timer but the safety net is left once the nested call is queued: a
    // lost wakeup would leave the loop asleep until the net fires.
    run_bounded(&reactor).expect("the reactor runs");
    assert_eq!(
        snapshot(&events),
        vec!["a", "b", "timer of the same turn", "nested"]
    );
}

// A call that iterates the reactor itself (a nested drain) must not let
// later calls overtake the older ones the outer drain has not reached yet.
#[test]
fn test_nested_iterate_keeps_fifo_order() {
    let reactor = new_default_reactor();
    let events = shared();
    let e = events.clone();
    reactor.call_from_thread(move || {
        e.lock().unwrap().push("1 start".to_owned());
        let r = default_reactor();
        let e2 = e.clone();
        r.call_from_thread(move || e2.lock().unwrap().push("queued by 1".to_owned()));
        r.iterate(Duration::ZERO);
        e.lock().unwrap().push("1 end".to_owned());
    });
    for i in 2..=4 {
        let e = events.clone();
        reactor.call_from_thread(move || e.lock().unwrap().push(i.to_string()));
    }
    reactor.call_from_thread(stop_default);
    run_bounded(&reactor).expect("the reactor runs");
    let got = snapshot(&events);
    // Whatever the nested turn ran, every call ran once and "queued by 1"
    // (queued last) came after 2, 3 and 4.
    let pos = |x: &str| {
        got.iter()
            .position(|e| e == x)
            .unwrap_or_else(|| panic!("{x} missing: {got:?}"))
    };
    assert_eq!(got.len(), 6, "{got:?}");
    assert!(
        pos("1 start") < pos("2") && pos("2") < pos("3") && pos("3") < pos("4"),
        "{got:?}"
    );
    assert!(pos("4") < pos("queued by 1"), "{got:?}");
}

// A call that iterates the reactor until a later, already queued call has
// run (Twisted code that spins the reactor waiting for a flag) must get it
// from the nested turn, not spin forever.
#[test]
fn test_nested_iterate_runs_older_queued_calls() {
    let reactor = new_default_reactor();
    let done = Arc::new(AtomicUsize::new(0));
    let turns = Arc::new(AtomicUsize::new(0));
    let (d, t) = (done.clone(), turns.clone());
    reactor.call_from_thread(move || {
        let r = default_reactor();
        while d.load(Ordering::SeqCst) == 0 && t.load(Ordering::SeqCst) < 1_000 {
            t.fetch_add(1, Ordering::SeqCst);
            r.iterate(Duration::from_millis(10));
        }
        stop_default();
    });
    let d = done.clone();
    reactor.call_from_thread(move || d.store(1, Ordering::SeqCst));
    run_bounded(&reactor).expect("the reactor runs");
    assert_eq!(done.load(Ordering::SeqCst), 1);
    assert!(
        turns.load(Ordering::SeqCst) <= 2,
        "the nested turn should run the queued call at once, took {} turns",
        turns.load(Ordering::SeqCst)
    );
}

// Calls queued after the reactor is gone are dropped (not run, not leaked),
// and calls still queued when it is dropped are dropped with it.
#[test]
fn test_calls_after_reactor_drop_are_dropped() {
    struct DropFlag(Arc<AtomicUsize>);
    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicUsize::new(0));
    let ran = Arc::new(AtomicUsize::new(0));
    let reactor = reactor::Reactor::new().unwrap();
    let remote = reactor.remote();
    let (flag, r) = (DropFlag(dropped.clone()), ran.clone());
    remote.call_from_thread(move || {
        let _keep = &flag;
        r.fetch_add(1, Ordering::SeqCst);
    });
    drop(reactor);
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        1,
        "queued call dropped with the reactor"
    );
    let (flag, r) = (DropFlag(dropped.clone()), ran.clone());
    thread::spawn(move || {
        remote.call_from_thread(move || {
            let _keep = &flag;
            r.fetch_add(1, Ordering::SeqCst);
        })
    })
    .join()
    .unwrap();
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        2,
        "late call dropped at once"
    );
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

// `ReactorBase.callFromThread` and `runUntilCurrent`: "Each exception is logged as 'while calling from thread';
// processing continues."
#[test]
fn test_call_from_thread_panic_is_logged() {
    let reactor = new_default_reactor();
    let events = shared();
    let remote = reactor.remote();
    let e = events.clone();
    thread::spawn(move || {
        let e1 = e.clone();
        remote.call_from_thread(move || e1.lock().unwrap().push("before"));
        remote.call_from_thread(|| panic!("queued call exploded"));
        let e2 = e.clone();
        remote.call_from_thread(move || e2.lock().unwrap().push("after"));
        remote.call_from_thread(stop_default);
    })
    .join()
    .unwrap();
    let ((), logs) = capture_logs(|| run_bounded(&reactor).expect("the reactor runs"));
    assert_eq!(snapshot(&events), vec!["before", "after"]);
    let logged = containing(&logs, "while calling from thread");
    assert_eq!(logged.len(), 1, "{logs:?}");
    assert_eq!(logged[0].level, Level::ERROR);
    assert!(
        logged[0]
            .field("failure")
            .is_some_and(|f| f.contains("queued call exploded")),
        "{:?}",
        logged[0]
    );
}

/// Compile-time check: the handle may be shared and moved across threads.
fn assert_send_sync_clone<T: Send + Sync + Clone + 'static>() {}

// RemoteHandle is Twisted's IReactorFromThreads: usable from any thread.
#[test]
fn test_remote_handle_is_send_sync_clone() {
    assert_send_sync_clone::<RemoteHandle>();
    let reactor = new_default_reactor();
    let remote = reactor.remote();
    let seen = shared();
    // One handle shared by reference among threads, clones moved into others.
    let shared_handle = Arc::new(remote.clone());
    let mut threads = Vec::new();
    for i in 0..4 {
        let (h, s) = (shared_handle.clone(), seen.clone());
        threads.push(thread::spawn(move || {
            h.call_from_thread(move || s.lock().unwrap().push(i));
        }));
        let (h, s) = (remote.clone(), seen.clone());
        threads.push(thread::spawn(move || {
            h.call_from_thread(move || s.lock().unwrap().push(i + 10));
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    reactor.call_from_thread(stop_default);
    run_bounded(&reactor).expect("the reactor runs");
    let mut got = snapshot(&seen);
    got.sort_unstable();
    assert_eq!(got, vec![0, 1, 2, 3, 10, 11, 12, 13]);
}

// Twisted: ThreadTestsBuilder.test_isInIOThread
#[test]
fn test_is_in_io_thread() {
    let reactor = new_default_reactor();
    let results = Rc::new(RefCell::new(Vec::new()));
    let (r, res) = (reactor.clone(), results.clone());
    reactor.call_when_running(move || {
        res.borrow_mut()
            .push((r.is_in_io_thread(), r.remote().is_loop_thread()));
        r.stop().unwrap();
    });
    run_bounded(&reactor).expect("the reactor runs");
    assert_eq!(*results.borrow(), vec![(true, true)]);
}

// Twisted: ThreadTestsBuilder.test_isNotInIOThread
#[test]
fn test_is_not_in_io_thread() {
    let reactor = new_default_reactor();
    let results = shared();
    let remote = reactor.remote();
    let res = results.clone();
    reactor
        .call_in_thread(move || {
            res.lock().unwrap().push(remote.is_loop_thread());
            remote.call_from_thread(stop_default);
        })
        .unwrap();
    run_bounded(&reactor).expect("the reactor runs");
    assert_eq!(snapshot(&results), vec![false]);
}
