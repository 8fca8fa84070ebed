//! Shutdown under load (`ReactorBase.startRunning`, `stop` and `mainLoop`, Twisted's `_ThreePhaseEvent` (`twisted.internet.base`), `ReactorBase.getThreadPool` and `_stopThreadPool`; the reactor issue's
//! shutdown requirement), with `SystemEventTestsBuilder.test_stopShutDownEvents`
//! (`twisted/internet/test/test_core.py`) as the baseline: `stop()` with
//! timers pending, with jobs queued and running on the reactor's own pool,
//! and with a `before` trigger whose Deferred fires later. Every phase runs
//! once, in order, and `run()` returns.
//!
//! Unlike Twisted, which stops its pool in a blocking `during` trigger, the
//! reactor stops its pool in a `before` trigger that waits for queued and
//! running jobs without blocking the loop, so their Deferreds fire before
//! `run()` returns.

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::new_default_reactor;
use crossbeam_channel::unbounded;
use deferred::Deferred;
use reactor::prelude::*;
use reactor::{defer_to_thread, Phase, Reactor, ReactorFromThreads, RunError, ThreadPool};
use test_support::reactor::run_bounded;
use test_support::TIMEOUT;

type Log = Rc<RefCell<Vec<String>>>;

fn new_log() -> Log {
    Rc::new(RefCell::new(Vec::new()))
}

fn push(log: &Log, s: impl Into<String>) {
    log.borrow_mut().push(s.into());
}

/// Registers a trigger in each shutdown phase that logs its phase and
/// whether the reactor is running.
fn log_shutdown_phases(reactor: &Reactor, log: &Log) {
    for phase in [Phase::Before, Phase::During, Phase::After] {
        let (l, r) = (log.clone(), reactor.clone());
        reactor.add_system_event_trigger(phase, "shutdown", move || {
            push(&l, format!("{phase} running={}", r.running()));
        });
    }
}

// Twisted: SystemEventTestsBuilder.test_stopShutDownEvents
#[test]
fn test_stop_shut_down_events() {
    let reactor = new_default_reactor();
    let log = new_log();
    log_shutdown_phases(&reactor, &log);
    let r = reactor.clone();
    reactor.call_when_running(move || r.stop().unwrap());
    run_bounded(&reactor).expect("the reactor runs");
    assert_eq!(
        *log.borrow(),
        vec![
            "before running=true",
            "during running=false",
            "after running=false"
        ]
    );
    assert!(!reactor.running());
    assert_eq!(
        reactor.run(),
        Err(RunError::NotRestartable(reactor::ReactorNotRestartable))
    );
}

// Issue: stop() with timers pending.
#[test]
fn test_stop_with_timers_pending() {
    let reactor = new_default_reactor();
    let log = new_log();
    log_shutdown_phases(&reactor, &log);
    let far_ran = Rc::new(RefCell::new(false));
    let (l, r, f) = (log.clone(), reactor.clone(), far_ran.clone());
    let far = Rc::new(RefCell::new(None));
    let far2 = far.clone();
    reactor.call_when_running(move || {
        *far2.borrow_mut() = Some(r.call_later(Duration::from_secs(3600), move || {
            *f.borrow_mut() = true;
        }));
        let l1 = l.clone();
        r.call_later(Duration::ZERO, move || push(&l1, "due before stop"));
        r.stop().unwrap();
        let l2 = l.clone();
        r.call_later(Duration::ZERO, move || push(&l2, "due after stop"));
    });
    run_bounded(&reactor).expect("the reactor runs");
    // Timers due in the turn that fires shutdown run first (runUntilCurrent
    // runs them before the shutdown event); the far one never runs.
    assert_eq!(
        *log.borrow(),
        vec![
            "due before stop",
            "due after stop",
            "before running=true",
            "during running=false",
            "after running=false"
        ]
    );
    let far = far.borrow_mut().take().unwrap();
    assert!(far.active(), "still pending, never run");
    assert!(!*far_ran.borrow());
    assert!(reactor.run().is_err());
    assert!(!*far_ran.borrow());
}

// Issue: stop() with thread-pool jobs queued and running on the reactor's
// pool: their Deferreds fire before run() returns, with the right results.
#[test]
fn test_stop_with_thread_pool_jobs_queued_and_running() {
    const RUNNING: u32 = 2;
    const QUEUED: u32 = 5;
    let reactor = new_default_reactor();
    reactor.suggest_thread_pool_size(RUNNING as usize);
    let pool = reactor.get_thread_pool();
    let log = new_log();
    log_shutdown_phases(&reactor, &log);
    let (l, r, p) = (log.clone(), reactor.clone(), pool.clone());
    reactor.call_when_running(move || {
        let (started_tx, started_rx) = unbounded();
        let (open_tx, open_rx) = unbounded::<()>();
        let mut deferreds = Vec::new();
        for i in 0..RUNNING {
            let (started, open) = (started_tx.clone(), open_rx.clone());
            deferreds.push(defer_to_thread(&r, move || {
                started.send(()).unwrap();
                // Released (by disconnection) from a timer during shutdown.
                let _ = open.recv_timeout(TIMEOUT);
                Ok(i * 10)
            }));
        }
        for _ in 0..RUNNING {
            started_rx.recv_timeout(TIMEOUT).unwrap();
        }
        for i in RUNNING..RUNNING + QUEUED {
            deferreds.push(defer_to_thread(&r, move || Ok(i * 10)));
        }
        assert_eq!(p.working(), RUNNING as usize);
        assert_eq!(p.q_size(), QUEUED as usize);
        for (i, d) in (0..).zip(deferreds) {
            let l = l.clone();
            let _ = d.add_callback(move |v: u32| push(&l, format!("job {i} = {v}")));
        }
        // The jobs can only finish if the loop keeps running while the
        // pool's before trigger waits for them.
        let r2 = r.clone();
        r.add_system_event_trigger(Phase::Before, "shutdown", move || {
            r2.call_later(Duration::from_millis(1), move || drop(open_tx));
        });
        r.stop().unwrap();
    });
    run_bounded(&reactor).expect("the reactor runs");
    let log = log.borrow().clone();
    let jobs: Vec<_> = log
        .iter()
        .filter(|e| e.starts_with("job "))
        .cloned()
        .collect();
    let mut sorted = jobs.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        (0..RUNNING + QUEUED)
            .map(|i| format!("job {i} = {}", i * 10))
            .collect::<Vec<_>>()
    );
    let n = jobs.len();
    assert_eq!(log[0], "before running=true");
    assert_eq!(&log[1..=n], &jobs[..], "every result before `during`");
    assert_eq!(
        &log[n + 1..],
        &["during running=false", "after running=false"]
    );
    assert!(pool.joined());
    assert_eq!(pool.workers(), 0);
    assert_eq!(reactor.loop_queue().outstanding(), 0);
}

// Issue: stop() with a before trigger whose Deferred fires later.
#[test]
fn test_stop_with_asynchronous_before_trigger() {
    let reactor = new_default_reactor();
    let log = new_log();
    let (l, r) = (log.clone(), reactor.clone());
    reactor.add_system_event_trigger(Phase::Before, "shutdown", move || {
        push(&l, "before");
        let (d, resolver) = Deferred::<()>::new();
        let l1 = l.clone();
        r.call_later(Duration::from_millis(20), move || {
            push(&l1, "before Deferred fires");
            resolver.callback(()).unwrap();
        });
        // The loop keeps running while the phase waits.
        let l2 = l.clone();
        r.call_later(Duration::from_millis(1), move || {
            push(&l2, "timer while waiting")
        });
        d
    });
    let l = log.clone();
    reactor.add_system_event_trigger(Phase::During, "shutdown", move || push(&l, "during"));
    let l = log.clone();
    reactor.add_system_event_trigger(Phase::After, "shutdown", move || push(&l, "after"));
    let r = reactor.clone();
    reactor.call_when_running(move || r.stop().unwrap());
    run_bounded(&reactor).expect("the reactor runs");
    assert_eq!(
        *log.borrow(),
        vec![
            "before",
            "timer while waiting",
            "before Deferred fires",
            "during",
            "after"
        ]
    );
}

// Twisted's `_ThreePhaseEvent` (`twisted.internet.base`): triggers appended to the phase being drained, or to a
// later phase, run in the same firing.
#[test]
fn test_during_trigger_added_from_before_trigger() {
    let reactor = new_default_reactor();
    let log = new_log();
    let (l, r) = (log.clone(), reactor.clone());
    reactor.add_system_event_trigger(Phase::Before, "shutdown", move || {
        push(&l, "before 1");
        let l1 = l.clone();
        r.add_system_event_trigger(Phase::During, "shutdown", move || {
            push(&l1, "during added by before")
        });
        let l2 = l.clone();
        r.add_system_event_trigger(Phase::After, "shutdown", move || {
            push(&l2, "after added by before")
        });
        let l3 = l.clone();
        r.add_system_event_trigger(Phase::Before, "shutdown", move || {
            push(&l3, "before added by before")
        });
    });
    let (l, r) = (log.clone(), reactor.clone());
    reactor.add_system_event_trigger(Phase::During, "shutdown", move || {
        push(&l, "during 1");
        // An earlier phase waits for a next firing, which never comes.
        let l1 = l.clone();
        r.add_system_event_trigger(Phase::Before, "shutdown", move || {
            push(&l1, "before added by during")
        });
    });
    let r = reactor.clone();
    reactor.call_when_running(move || r.stop().unwrap());
    run_bounded(&reactor).expect("the reactor runs");
    assert_eq!(
        *log.borrow(),
        vec![
            "before 1",
            "before added by before",
            "during 1",
            "during added by before",
            "after added by before"
        ]
    );
}

// Issue: all three at once — timers pending, jobs queued and running on the
// reactor's pool, and a before trigger whose Deferred fires later.
#[test]
fn test_stop_with_everything_pending() {
    let reactor = new_default_reactor();
    reactor.suggest_thread_pool_size(1);
    let pool: ThreadPool = reactor.get_thread_pool();
    let log = new_log();
    log_shutdown_phases(&reactor, &log);
    let far_ran = Arc::new(AtomicBool::new(false));
    let (l, r, fr) = (log.clone(), reactor.clone(), far_ran.clone());
    reactor.call_when_running(move || {
        let (started_tx, started_rx) = unbounded();
        let (open_tx, open_rx) = unbounded::<()>();
        let l1 = l.clone();
        let _ = defer_to_thread(&r, move || {
            started_tx.send(()).unwrap();
            let _ = open_rx.recv_timeout(TIMEOUT);
            Ok("running job")
        })
        .add_callback(move |v| push(&l1, v));
        started_rx.recv_timeout(TIMEOUT).unwrap();
        let l2 = l.clone();
        let _ = defer_to_thread(&r, || Ok("queued job")).add_callback(move |v| push(&l2, v));
        r.call_later(Duration::from_secs(3600), move || {
            fr.store(true, Ordering::SeqCst)
        });
        let (r2, l3) = (r.clone(), l.clone());
        r.add_system_event_trigger(Phase::Before, "shutdown", move || {
            let (d, resolver) = Deferred::<()>::new();
            let l4 = l3.clone();
            r2.call_later(Duration::from_millis(5), move || {
                push(&l4, "release");
                drop(open_tx);
            });
            let l5 = l3.clone();
            r2.call_later(Duration::from_millis(10), move || {
                push(&l5, "before Deferred fires");
                resolver.callback(()).unwrap();
            });
            d
        });
        r.stop().unwrap();
    });
    run_bounded(&reactor).expect("the reactor runs");
    let log = log.borrow().clone();
    for phase in [
        "before running=true",
        "during running=false",
        "after running=false",
    ] {
        assert_eq!(log.iter().filter(|e| *e == phase).count(), 1, "{log:?}");
    }
    let pos = |s: &str| {
        log.iter()
            .position(|e| e == s)
            .unwrap_or_else(|| panic!("{s:?} missing from {log:?}"))
    };
    assert_eq!(pos("before running=true"), 0);
    assert!(pos("release") < pos("running job"));
    assert!(pos("running job") < pos("queued job"));
    assert!(pos("queued job") < pos("during running=false"));
    assert!(pos("before Deferred fires") < pos("during running=false"));
    assert_eq!(pos("during running=false") + 1, pos("after running=false"));
    assert_eq!(log.len(), 7, "{log:?}");
    assert!(!far_ran.load(Ordering::SeqCst));
    assert!(pool.joined());
    assert_eq!(pool.workers(), 0);
}

// `ReactorBase.callFromThread` and `runUntilCurrent`: "If the reactor never runs again (for example after
// shutdown), they never run."
#[test]
fn test_calls_queued_during_shutdown_never_run() {
    let reactor = new_default_reactor();
    let ran = Arc::new(AtomicBool::new(false));
    let (ra, r) = (ran.clone(), reactor.clone());
    reactor.add_system_event_trigger(Phase::After, "shutdown", move || {
        let ra = ra.clone();
        r.call_from_thread(move || ra.store(true, Ordering::SeqCst));
    });
    let r = reactor.clone();
    reactor.call_when_running(move || r.stop().unwrap());
    run_bounded(&reactor).expect("the reactor runs");
    assert_eq!(reactor.loop_queue().len(), 1, "queued, left behind");
    assert!(!ran.load(Ordering::SeqCst));
}
