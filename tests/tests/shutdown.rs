//! Shutdown guarantees of `ConnectionPool`, beyond Twisted's
//! (`twisted.enterprise.adbapi.ConnectionPool.finalClose`, and
//! twisted/twisted#2680 for `run*` after close):
//!
//! - every Deferred the pool hands out fires before `Reactor::run` returns,
//!   including a `run_*` refused during shutdown, jobs in flight, a
//!   shutdown fired by hand and nested `iterate()` calls from callbacks;
//! - `after`/`shutdown` triggers run only once the pool has closed (as in
//!   Twisted, where `finalClose` blocks the `during` phase);
//! - `crash()` still ends `run()` while a pool holds the shutdown, and a
//!   reactor dropped mid-shutdown frees its triggers;
//! - the same on a `FakeReactor` whose pools run jobs on demand or on real
//!   threads.
//!
//! Tests that drive a real reactor by hand run on their own thread under
//! `test_support::bounded::bounded`, so a hang fails them.
//!
//! Tests named `regression_*` are defects found in review (each failed
//! before its fix); `held_*` are attacks that held, kept so they keep
//! holding.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use adbapi::dbapi::connect;
use adbapi::{args, kwargs, Arg, ConnectionPool};
use crossbeam_channel::bounded as channel;
use deferred::Failure;
use integration_tests::harness::{TempDir, TIMEOUT};
use integration_tests::pools::{file_pool, ints, outcome, sqlite_pool, Log};
use reactor::prelude::*;
use reactor::testing::{FakeReactor, PoolMode};
use reactor::{stop_thread_pool, Phase, Reactor};
use test_support::bounded::bounded;

// ---------------------------------------------------------------------------
// Every Deferred fires before run() returns
// ---------------------------------------------------------------------------

/// Where each job of a test records its outcome.
type Outcomes = Rc<RefCell<Vec<Option<Result<i64, String>>>>>;

/// Every Deferred handed out fires before reactor shutdown completes
/// (documented difference: in Twisted, Deferreds of jobs in flight at
/// shutdown never fire). The jobs are held until the shutdown event's
/// `during` phase, after the pool's own trigger began closing it.
#[test]
fn every_deferred_fires_before_reactor_shutdown_completes() {
    const N: usize = 20;
    let dir = TempDir::new("shutdown");
    let reactor = Reactor::new().expect("a reactor");
    let pool = file_pool(&reactor, &dir, kwargs! { "cp_max" => 2 });
    let results: Outcomes = Rc::new(RefCell::new(vec![None; N]));
    let released = Rc::new(Cell::new(false));
    let stopped_with = Rc::new(Cell::new(usize::MAX));
    let (gate_tx, gate_rx) = crossbeam_channel::unbounded::<()>();

    let (p, r, res, rel, sw) = (
        pool.clone(),
        reactor.clone(),
        Rc::clone(&results),
        Rc::clone(&released),
        Rc::clone(&stopped_with),
    );
    reactor.call_when_running(move || {
        let _ = p
            .run_operation("create table t (x integer)", ())
            .add_callback(move |()| {
                for i in 0..N {
                    let gate = gate_rx.clone();
                    let slot = Rc::clone(&res);
                    let value = i64::try_from(i).expect("small");
                    let _ = p
                        .run_interaction(move |txn| {
                            gate.recv_timeout(TIMEOUT)
                                .map_err(|_| Failure::msg("the gate never opened"))?;
                            txn.execute("insert into t values (?)", (value,))?;
                            Ok(value)
                        })
                        .add_both(move |outcome| {
                            slot.borrow_mut()[i] = Some(outcome.map_err(|f| f.to_string()));
                            Ok(())
                        });
                }
                r.add_system_event_trigger(Phase::During, "shutdown", move || {
                    for _ in 0..N {
                        let _ = gate_tx.send(());
                    }
                    rel.set(true);
                });
                sw.set(res.borrow().iter().filter(|s| s.is_some()).count());
                r.stop().expect("stop");
            });
    });
    let r = reactor.clone();
    let net = reactor.call_later(TIMEOUT, move || {
        let _ = r.stop();
    });
    reactor.run().expect("run");
    if net.active() {
        let _ = net.cancel();
    }
    assert!(released.get(), "the shutdown event ran");
    assert_eq!(
        stopped_with.get(),
        0,
        "nothing had fired when stop() was called"
    );
    let expected: Vec<Option<Result<i64, String>>> = (0..N)
        .map(|i| Some(Ok(i64::try_from(i).expect("small"))))
        .collect();
    assert_eq!(*results.borrow(), expected);
    assert!(!pool.running());
    let check = connect("sqlite3", &[dir.file("test.db").into()], &[]).expect("connect");
    let rows = check
        .execute("select count(*) from t", ())
        .expect("count")
        .fetchall()
        .expect("rows");
    assert_eq!(ints(&rows), [i64::try_from(N).expect("small")]);
}

/// Defect: a `run_query` issued from `close()`'s own callback in the same
/// turn as `reactor.stop()` never fired (its PoolClosed errback waited for a
/// turn that never came).
#[test]
fn run_refused_in_the_turn_of_stop_fires_before_run_returns() {
    bounded(|| {
        let dir = TempDir::new("shutdown-refused");
        let reactor = Reactor::new().unwrap();
        let pool = sqlite_pool(&reactor, &dir, 1, 1);
        let log: Log = Rc::default();
        let (p, r, l) = (pool.clone(), reactor.clone(), log.clone());
        reactor.call_when_running(move || {
            let p2 = p.clone();
            let _ = p.close().add_callback(move |()| {
                r.stop().unwrap();
                let l2 = l.clone();
                let _ = p2.run_query("select 1", ()).add_both(move |res| {
                    l2.borrow_mut().push(outcome(&res));
                    Ok(())
                });
            });
        });
        reactor.run().unwrap();
        assert_eq!(*log.borrow(), ["PoolClosed"]);
    });
}

/// Defect: a `run_*` on a pool that closed itself through its shutdown
/// trigger, issued from a later `during` trigger and from an `after`
/// trigger, never fired.
/// With `cp_min` 0 and no job ever run, the pool has no thread to wait for
/// and closes at once, so nothing held the loop for the refused calls.
#[test]
fn run_refused_from_shutdown_triggers_fires_before_run_returns() {
    for min in [0, 1] {
        refused_from_shutdown_triggers(min);
    }
}

fn refused_from_shutdown_triggers(min: i64) {
    bounded(move || {
        let dir = TempDir::new("shutdown-refused-trigger");
        let reactor = Reactor::new().unwrap();
        let pool = sqlite_pool(&reactor, &dir, min, 2);
        let log: Log = Rc::default();
        let (pool2, log2) = (pool.clone(), log.clone());
        let add = move |reactor: &Reactor, phase: Phase, label: &'static str| {
            let (p, l) = (pool2.clone(), log2.clone());
            reactor.add_system_event_trigger(phase, "shutdown", move || {
                let _ = p.run_operation("select 1", ()).add_both(move |res| {
                    l.borrow_mut().push(format!("{label}: {}", outcome(&res)));
                    Ok(())
                });
            });
        };
        // Before the pool's own trigger (registered when the pool starts):
        // the job is accepted and still runs.
        add(&reactor, Phase::During, "during, first");
        let r = reactor.clone();
        let add_later = move || {
            add(&r, Phase::During, "during, after the pool's");
            add(&r, Phase::After, "after");
            r.stop().unwrap();
        };
        reactor.call_when_running(add_later);
        reactor.run().unwrap();
        let mut got = log.borrow().clone();
        got.sort();
        assert_eq!(
            got,
            [
                "after: PoolClosed",
                "during, after the pool's: PoolClosed",
                "during, first: ok ()",
            ],
            "all fired before run() returned"
        );
    });
}

/// Found by the model test: `close()`, a `run_*` from close's callback, and
/// `stop()` right after `close()`: the refusal fires before the `after`
/// phase of shutdown, not only before `run()` returns.
#[test]
fn refusal_from_close_callback_fires_before_after_triggers() {
    bounded(|| {
        let dir = TempDir::new("shutdown-refused-close");
        let reactor = Reactor::new().unwrap();
        let pool = sqlite_pool(&reactor, &dir, 1, 1);
        let log: Log = Rc::default();
        let l = log.clone();
        reactor.add_system_event_trigger(Phase::After, "shutdown", move || {
            l.borrow_mut().push("after".into());
        });
        let (p, r, l) = (pool.clone(), reactor.clone(), log.clone());
        reactor.call_when_running(move || {
            let p2 = p.clone();
            let _ = p.close().add_callback(move |()| {
                let _ = p2.run_query("select 1", ()).add_both(move |res| {
                    l.borrow_mut().push(outcome(&res));
                    Ok(())
                });
            });
            r.stop().unwrap();
        });
        reactor.run().unwrap();
        assert_eq!(*log.borrow(), ["PoolClosed", "after"]);
    });
}

/// `close()` from an `after`/`shutdown` trigger with a job in flight: the
/// job and the close fire before `run()` returns.
#[test]
fn held_close_from_an_after_trigger_fires_before_run_returns() {
    bounded(|| {
        let dir = TempDir::new("review-after-close");
        let reactor = Reactor::new().unwrap();
        let a = sqlite_pool(&reactor, &dir, 1, 1);
        let b = ConnectionPool::new(
            "sqlite3",
            args![dir.file("t.db")],
            kwargs! { "cp_min" => 1, "cp_max" => 1, "cp_reactor" => Arg::reactor(reactor.clone()) },
        )
        .unwrap();
        let log: Log = Rc::default();
        let (l, bb) = (log.clone(), b.clone());
        reactor.add_system_event_trigger(Phase::After, "shutdown", move || {
            // b closed already (its during trigger): refused; a's pool too.
            let l2 = l.clone();
            let _ = bb.run_query("select 1", ()).add_both(move |r| {
                l2.borrow_mut().push(format!("late {}", outcome(&r)));
                Ok(())
            });
            let l3 = l.clone();
            let _ = bb.close().add_both(move |r| {
                l3.borrow_mut().push(format!("close {}", outcome(&r)));
                Ok(())
            });
        });
        let (r, l) = (reactor.clone(), log.clone());
        let pa = a.clone();
        reactor.call_when_running(move || {
            let l1 = l.clone();
            let _ = pa
                .run_interaction(|_t| {
                    std::thread::sleep(Duration::from_millis(30));
                    Ok(1)
                })
                .add_both(move |r| {
                    l1.borrow_mut().push(format!("job {}", outcome(&r)));
                    Ok(())
                });
            drop(pa);
            r.stop().unwrap();
        });
        drop(a);
        reactor.run().unwrap();
        let mut got = log.borrow().clone();
        got.sort();
        assert_eq!(got, ["close ok ()", "job ok 1", "late PoolClosed"]);
    });
}

/// Defect: firing `shutdown` by hand (`fire_system_event`, as Twisted
/// allows) while a pool job runs. The reactor's own `during` trigger
/// crashes the loop; `stopped` was never set, so `keep_turning` ignores the
/// pool's hold and the parked `after` phase, and `run()` returns before the
/// job's Deferred fired (and before the `after` triggers ran).
#[test]
fn regression_shutdown_fired_by_hand_waits_for_pool_deferreds() {
    bounded(|| {
        let dir = TempDir::new("review-manual-shutdown");
        let reactor = Reactor::new().unwrap();
        let pool = sqlite_pool(&reactor, &dir, 1, 1);
        let log: Log = Rc::default();
        let (p, r, l) = (pool.clone(), reactor.clone(), log.clone());
        reactor.call_when_running(move || {
            let l1 = l.clone();
            let _ = p
                .run_interaction(|_t| {
                    std::thread::sleep(Duration::from_millis(30));
                    Ok(1)
                })
                .add_both(move |r| {
                    l1.borrow_mut().push(format!("job {}", outcome(&r)));
                    Ok(())
                });
            r.fire_system_event("shutdown");
        });
        reactor.run().unwrap();
        assert_eq!(*log.borrow(), ["job ok 1"], "fired before run() returned");
        drop(pool);
    });
}

/// Nested `iterate()` from a job callback while the pool closes at
/// shutdown: no double borrow, no lost Deferred, `run()` returns.
#[test]
fn held_nested_iterate_from_a_callback_during_shutdown() {
    bounded(|| {
        let dir = TempDir::new("review-nested-iterate");
        let reactor = Reactor::new().unwrap();
        let pool = sqlite_pool(&reactor, &dir, 1, 2);
        let log: Log = Rc::default();
        let (p, r, l) = (pool.clone(), reactor.clone(), log.clone());
        reactor.call_when_running(move || {
            for i in 0..4 {
                let (l1, r1) = (l.clone(), r.clone());
                let _ = p
                    .run_interaction(move |_t| {
                        std::thread::sleep(Duration::from_millis(5));
                        Ok(i)
                    })
                    .add_both(move |res| {
                        l1.borrow_mut().push(outcome(&res));
                        for _ in 0..3 {
                            r1.iterate(Duration::from_millis(1));
                        }
                        Ok(())
                    });
            }
            let l2 = l.clone();
            let _ = p.close().add_both(move |res| {
                l2.borrow_mut().push(format!("close {}", outcome(&res)));
                Ok(())
            });
            r.stop().unwrap();
        });
        let l = log.clone();
        reactor.add_system_event_trigger(Phase::After, "shutdown", move || {
            l.borrow_mut().push("after".into());
        });
        reactor.run().unwrap();
        let got = log.borrow().clone();
        assert_eq!(got.len(), 6, "{got:?}");
        assert_eq!(got[4..], ["close ok ()", "after"], "{got:?}");
        drop(pool);
    });
}

/// (jobs fired, queued, workers, open connections).
type Counts = (usize, usize, usize, usize);

/// Defect: with 50 queued jobs, an `after`/`shutdown` trigger saw 50 queued
/// jobs and open connections. In Twisted `finalClose` has joined the workers
/// and closed the connections before any `after` trigger runs, and programs
/// rely on it (deleting the database file, printing final counts).
#[test]
fn after_shutdown_triggers_run_once_the_pool_has_closed() {
    bounded(|| {
        let dir = TempDir::new("shutdown-after");
        let reactor = Reactor::new().unwrap();
        let pool = sqlite_pool(&reactor, &dir, 1, 3);
        let fired = Rc::new(RefCell::new(0usize));
        let seen: Rc<RefCell<Option<Counts>>> = Rc::default();
        let (p, s, f) = (pool.clone(), seen.clone(), fired.clone());
        reactor.add_system_event_trigger(Phase::After, "shutdown", move || {
            *s.borrow_mut() = Some((
                *f.borrow(),
                p.threadpool().q_size(),
                p.threadpool().workers(),
                p.connections().len(),
            ));
        });
        let (p, r, f) = (pool.clone(), reactor.clone(), fired.clone());
        reactor.call_when_running(move || {
            for _ in 0..50 {
                let f = f.clone();
                let _ = p
                    .run_interaction(|_txn| {
                        std::thread::sleep(Duration::from_millis(1));
                        Ok(())
                    })
                    .add_both(move |res: Result<(), Failure>| {
                        res.expect("each job succeeds");
                        *f.borrow_mut() += 1;
                        Ok(())
                    });
            }
            r.stop().unwrap();
        });
        reactor.run().unwrap();
        assert_eq!(
            *seen.borrow(),
            Some((50, 0, 0, 0)),
            "(jobs fired, queued, workers, open connections) when the after trigger ran"
        );
    });
}

// ---------------------------------------------------------------------------
// crash() and dropped reactors
// ---------------------------------------------------------------------------

/// Defect: `crash()` is ignored while a shutdown hold is held. The real
/// reactor's own `during`/`shutdown` trigger calls `crash()`, so
/// `keep_turning` cannot tell a user's `crash()` from that one and keeps
/// turning (`stopped && pending`) until every hold is gone: a job stuck in
/// the database keeps `run()` from returning although the program crashed
/// the loop.
#[test]
fn regression_crash_during_a_shutdown_hold_leaves_run() {
    bounded(|| {
        let dir = TempDir::new("review-crash");
        let reactor = Reactor::new().unwrap();
        let pool = sqlite_pool(&reactor, &dir, 1, 1);
        let job_outlived_run = Arc::new(AtomicBool::new(false));
        let (release_tx, release_rx) = channel::<()>(1);
        let (started_tx, started_rx) = channel::<()>(1);
        let (p, r) = (pool.clone(), reactor.clone());
        let late = Arc::clone(&job_outlived_run);
        reactor.call_when_running(move || {
            let _ = p.run_interaction(move |_txn| {
                let _ = started_tx.send(());
                // Released as soon as run() returns; a timeout here means
                // run() waited for the job.
                if release_rx.recv_timeout(Duration::from_secs(15)).is_err() {
                    late.store(true, Ordering::SeqCst);
                }
                Ok(())
            });
            started_rx.recv_timeout(TIMEOUT).expect("the job started");
            r.stop().unwrap();
        });
        let r = reactor.clone();
        reactor.add_system_event_trigger(Phase::After, "startup", move || {
            // Registered after the pool's shutdown trigger: the pool holds
            // the shutdown by now.
            let r2 = r.clone();
            r.add_system_event_trigger(Phase::During, "shutdown", move || {
                let r3 = r2.clone();
                r2.call_later(Duration::from_millis(5), move || r3.crash());
            });
        });
        reactor.run().unwrap();
        let _ = release_tx.send(());
        assert!(
            !job_outlived_run.load(Ordering::SeqCst),
            "run() returned only once the held job ended: crash() was ignored"
        );
        drop(pool);
    });
}

/// Defect (leak): a reactor dropped while the `after` phase of `shutdown`
/// is parked at the gate is never freed. The parked Deferred's callback
/// holds `Rc<SystemEvents>`, which holds the gate closure, which holds
/// `Rc<ShutdownGate>`, which holds the parked resolver: a cycle, so every
/// trigger closure (and what it captures: pools, connections) leaks.
/// Reached on a `FakeReactor` (hold, `stop`, drop without a last `pump`)
/// and on a real one after `crash()` during a hold.
#[test]
fn regression_reactor_dropped_with_the_after_phase_parked_does_not_leak() {
    bounded(|| {
        let marker = Rc::new(());
        {
            let reactor = FakeReactor::new(true);
            let m = Rc::clone(&marker);
            reactor.add_system_event_trigger(Phase::After, "shutdown", move || drop(m));
            let hold = reactor.hold_shutdown();
            reactor.stop().unwrap();
            drop(hold);
            // No pump: the after phase stays parked; the test is done with
            // the reactor.
        }
        assert_eq!(
            Rc::strong_count(&marker),
            1,
            "the dropped reactor's triggers were leaked"
        );
    });
}

// ---------------------------------------------------------------------------
// Fake reactors
// ---------------------------------------------------------------------------

/// On a `FakeReactor` whose pool runs jobs on demand (`PoolMode::Manual`),
/// the `after`/`shutdown` phase waits for the pool's job Deferreds too.
/// (Held for the order; note the queued job is dropped with `PoolStopped`
/// where a real pool would run it: Manual mode's stop discards its queue.)
#[test]
fn held_fake_reactor_manual_pool_after_phase_waits_for_jobs() {
    bounded(|| {
        let reactor = FakeReactor::with_pool_mode(true, reactor::testing::PoolMode::Manual);
        let pool = ConnectionPool::new(
            "sqlite3",
            args![":memory:"],
            kwargs! { "cp_max" => 1, "cp_reactor" => Arg::reactor(reactor.clone()) },
        )
        .unwrap();
        let log: Log = Rc::default();
        let l = log.clone();
        let _ = pool.run_query("select 1", ()).add_both(move |r| {
            l.borrow_mut()
                .push(format!("job {}", outcome(&r.map(|rows| rows.len()))));
            Ok(())
        });
        let l = log.clone();
        let _ = pool.close().add_both(move |r| {
            l.borrow_mut().push(format!("close {}", outcome(&r)));
            Ok(())
        });
        let l = log.clone();
        reactor.add_system_event_trigger(Phase::After, "shutdown", move || {
            l.borrow_mut().push("after".into());
        });
        reactor.stop().unwrap();
        reactor.run_until_idle();
        reactor.run_until_idle();
        let got = log.borrow().clone();
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got[0].starts_with("job "), "{got:?}");
        assert_eq!(got[1..], ["close ok ()", "after"], "{got:?}");
        drop(pool);
    });
}

/// `FakeReactor::run_jobs` (and so `run_until_idle`) on a fake reactor whose
/// pools use real threads takes the quit messages meant for the workers:
/// a worker busy while `stop_thread_pool` queues its quit message misses
/// it, never exits, and the stop never completes.
#[test]
fn fake_reactor_run_jobs_leaves_real_workers_their_quit_messages() {
    let reactor = FakeReactor::with_pool_mode(true, PoolMode::Threads);
    let pool = ReactorThreads::new_thread_pool(&reactor, 1, 1, "steal").expect("a pool");
    pool.start().expect("start");
    let (started_tx, started_rx) = channel::<()>(1);
    let (release_tx, release_rx) = channel::<()>(1);
    pool.call_in_thread(move || {
        let _ = started_tx.send(());
        let _ = release_rx.recv_timeout(TIMEOUT);
    })
    .expect("submit");
    started_rx
        .recv_timeout(TIMEOUT)
        .expect("the worker is busy");
    let stopped = stop_thread_pool(&reactor, &pool);
    reactor.run_jobs(); // documented for Manual pools; no job is queued here
    release_tx.send(()).expect("release");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut d = stopped;
    loop {
        reactor.pump();
        match d.into_result() {
            Ok(r) => {
                r.expect("stopped");
                break;
            }
            Err(back) => d = back,
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the pool never stopped: its worker lost its quit message"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(pool.workers(), 0);
}
