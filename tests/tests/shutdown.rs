//! Shutdown guarantees of `ConnectionPool` on a real reactor, beyond
//! Twisted's (`twisted.enterprise.adbapi.ConnectionPool.finalClose`, and
//! twisted/twisted#2680 for `run*` after close):
//!
//! - every Deferred the pool hands out fires before `Reactor::run` returns,
//!   including a `run_*` refused during shutdown;
//! - dropping the last pool handle closes it as `final_close` would, and a
//!   shutdown waits for that;
//! - `after`/`shutdown` triggers run only once the pool has closed (as in
//!   Twisted, where `finalClose` blocks the `during` phase).
//!
//! Each test runs on its own thread under a watchdog, so a hang fails it.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::Duration;

use adbapi::{args, kwargs, Arg, ConnectionPool, PoolClosed};
use deferred::Failure;
use integration_tests::harness::{TempDir, TIMEOUT};
use reactor::prelude::*;
use reactor::{Phase, Reactor};

/// Runs `test` on a fresh thread; fails if it panics or takes longer than
/// [`TIMEOUT`] (a hang).
fn bounded(test: impl FnOnce() + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    let t = std::thread::spawn(move || {
        test();
        let _ = tx.send(());
    });
    match rx.recv_timeout(TIMEOUT) {
        Ok(()) => t.join().expect("the test thread"),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(p) = t.join() {
                std::panic::resume_unwind(p);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("the test hung for {TIMEOUT:?}"),
    }
}

fn file_pool(reactor: &Reactor, dir: &TempDir, max: i64) -> ConnectionPool {
    pool_sized(reactor, dir, 1, max)
}

fn pool_sized(reactor: &Reactor, dir: &TempDir, min: i64, max: i64) -> ConnectionPool {
    ConnectionPool::new(
        "sqlite3",
        args![dir.file("t.db")],
        kwargs! { "cp_min" => min, "cp_max" => max, "cp_reactor" => Arg::reactor(reactor.clone()) },
    )
    .expect("a pool")
}

type Log = Rc<RefCell<Vec<String>>>;

/// (jobs fired, queued, workers, open connections).
type Counts = (usize, usize, usize, usize);

fn outcome<T: std::fmt::Debug>(r: &Result<T, Failure>) -> String {
    match r {
        Ok(v) => format!("ok {v:?}"),
        Err(f) if f.check::<PoolClosed>().is_some() => "PoolClosed".to_owned(),
        Err(f) => format!("err {f}"),
    }
}

/// Defect: a `run_query` issued from `close()`'s own callback in the same
/// turn as `reactor.stop()` never fired (its PoolClosed errback waited for a
/// turn that never came).
#[test]
fn run_refused_in_the_turn_of_stop_fires_before_run_returns() {
    bounded(|| {
        let dir = TempDir::new("shutdown-refused");
        let reactor = Reactor::new().unwrap();
        let pool = file_pool(&reactor, &dir, 1);
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
        let pool = pool_sized(&reactor, &dir, min, 2);
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

/// Defect: dropping the last handle with a job in flight, then stopping,
/// let `run()` return at once; the job's Deferred fired only on a later
/// `iterate()`. Dropping now takes the path of `final_close`.
#[test]
fn dropped_pool_holds_shutdown_until_its_jobs_fired() {
    bounded(|| {
        let dir = TempDir::new("shutdown-dropped");
        let reactor = Reactor::new().unwrap();
        let pool = file_pool(&reactor, &dir, 2);
        let threadpool = pool.threadpool().clone();
        let log: Log = Rc::default();
        let (r, l) = (reactor.clone(), log.clone());
        let mut pool = Some(pool);
        reactor.call_when_running(move || {
            let p = pool.take().unwrap();
            for i in 0..5 {
                let l = l.clone();
                let _ = p
                    .run_interaction(move |_txn| {
                        std::thread::sleep(Duration::from_millis(20));
                        Ok(i)
                    })
                    .add_both(move |res| {
                        l.borrow_mut().push(outcome(&res));
                        Ok(())
                    });
            }
            drop(p); // the last handle
            r.stop().unwrap();
        });
        reactor.run().unwrap();
        let mut got = log.borrow().clone();
        got.sort();
        assert_eq!(
            got,
            ["ok 0", "ok 1", "ok 2", "ok 3", "ok 4"],
            "every job ran and its Deferred fired before run() returned"
        );
        assert_eq!(threadpool.workers(), 0, "the workers were stopped");
    });
}

/// A pool dropped while the reactor keeps running stops its workers too:
/// no thread is leaked.
#[test]
fn dropped_pool_stops_its_workers_while_running() {
    bounded(|| {
        let dir = TempDir::new("shutdown-dropped-running");
        let reactor = Reactor::new().unwrap();
        let pool = file_pool(&reactor, &dir, 2);
        let threadpool = pool.threadpool().clone();
        let fired: Log = Rc::default();
        let (r, f) = (reactor.clone(), fired.clone());
        let mut pool = Some(pool);
        reactor.call_when_running(move || {
            let p = pool.take().unwrap();
            let _ = p.run_query("select 42", ()).add_both(move |res| {
                f.borrow_mut().push(outcome(&res.map(|rows| rows.len())));
                Ok(())
            });
            drop(p);
            // Poll until the workers are gone, then stop.
            fn wait(r: Reactor, tp: reactor::ThreadPool) {
                if tp.workers() == 0 {
                    r.stop().unwrap();
                } else {
                    let r2 = r.clone();
                    r.call_later(Duration::from_millis(1), move || wait(r2, tp));
                }
            }
            wait(r, threadpool);
        });
        reactor.run().unwrap();
        assert_eq!(*fired.borrow(), ["ok 1"]);
    });
}

/// Defect: with 50 queued jobs, an `after`/`shutdown` trigger saw 50 queued
/// jobs and open connections. In Twisted `finalClose` has joined the workers
/// and closed the connections before any `after` trigger runs, and programs
/// rely on it (deleting the database file, printing final counts).
#[test]
fn after_shutdown_triggers_run_once_the_pool_has_closed() {
    bounded(|| {
        let dir = TempDir::new("shutdown-after");
        let reactor = Reactor::new().unwrap();
        let pool = file_pool(&reactor, &dir, 3);
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

/// Found by the model test: `close()`, a `run_*` from close's callback, and
/// `stop()` right after `close()`: the refusal fires before the `after`
/// phase of shutdown, not only before `run()` returns.
#[test]
fn refusal_from_close_callback_fires_before_after_triggers() {
    bounded(|| {
        let dir = TempDir::new("shutdown-refused-close");
        let reactor = Reactor::new().unwrap();
        let pool = file_pool(&reactor, &dir, 1);
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
