//! Review probes (adversarial pass over the pool lifecycle on the new
//! reactor traits): pools created inside shutdown triggers or after `run()`
//! returned, `react()` returning while a pool holds shutdown, a fake
//! reactor's `stop()` with a pool holding shutdown, `final_close()` from a
//! startup trigger, `adjust_pool_size` during shutdown (Twisted's
//! `ConnectionPool.__init__`/`start`/`finalClose`, `task.react`).
//!
//! `regression_*` tests are defects an adversarial pass found (each failed
//! before its fix: pools made during or after shutdown were never started,
//! a `final_close` from a startup trigger logged an error); `held_*` are
//! attacks that held.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use adbapi::{args, kwargs, Arg, ConnectionPool};
use deferred::{Deferred, Failure};
use integration_tests::harness::TempDir;
use integration_tests::pools::{file_pool, outcome, Log};
use reactor::prelude::*;
use reactor::testing::{FakeReactor, PoolMode};
use reactor::{Phase, Reactor};
use test_support::logs::capture_logs;
use test_support::reactor::run_bounded;
use tracing::Level;

type Slot = Rc<RefCell<Option<String>>>;

fn record<T: std::fmt::Debug + 'static>(d: Deferred<T>, slot: &Slot) {
    let s = Rc::clone(slot);
    let _ = d.add_both(move |r| {
        *s.borrow_mut() = Some(outcome(&r));
        Ok(())
    });
}

/// Found here: a pool made inside a `during`/`shutdown` trigger registered
/// an `after`/`startup` trigger that never fires, so its job never fired.
/// Now the pool is refused (`PoolError` naming `cp_reactor`).
#[test]
fn regression_pool_made_in_a_during_shutdown_trigger_is_refused() {
    let reactor = Reactor::new().unwrap();
    let refused: Rc<RefCell<Option<String>>> = Rc::default();
    let (r, f) = (reactor.clone(), refused.clone());
    reactor.add_system_event_trigger(Phase::During, "shutdown", move || {
        let made = ConnectionPool::new(
            "sqlite3",
            args![":memory:"],
            kwargs! { "cp_reactor" => Arg::reactor(r.clone()) },
        );
        *f.borrow_mut() = made.err().map(|e| e.to_string());
    });
    let r = reactor.clone();
    reactor.call_when_running(move || r.stop().unwrap());
    run_bounded(&reactor).unwrap();
    let e = refused.borrow_mut().take().expect("refused, not made");
    assert!(e.contains("cp_reactor"), "{e}");
}

/// The same from an `after`/`shutdown` trigger.
#[test]
fn regression_pool_made_in_an_after_shutdown_trigger_is_refused() {
    let reactor = Reactor::new().unwrap();
    let refused: Rc<RefCell<Option<String>>> = Rc::default();
    let (r, f) = (reactor.clone(), refused.clone());
    reactor.add_system_event_trigger(Phase::After, "shutdown", move || {
        let made = ConnectionPool::new(
            "sqlite3",
            args![":memory:"],
            kwargs! { "cp_reactor" => Arg::reactor(r.clone()) },
        );
        *f.borrow_mut() = made.err().map(|e| e.to_string());
    });
    let r = reactor.clone();
    reactor.call_when_running(move || r.stop().unwrap());
    run_bounded(&reactor).unwrap();
    let e = refused.borrow_mut().take().expect("refused, not made");
    assert!(e.contains("cp_reactor"), "{e}");
}

/// A pool made inside a `before`/`shutdown` trigger: the reactor still runs,
/// so the pool starts at once and its `during`/`shutdown` trigger, added
/// while the event fires, runs in the same firing and closes it; the job
/// fires before `run()` returns.
#[test]
fn held_pool_made_in_a_before_shutdown_trigger_fires_its_job() {
    let dir = TempDir::new("before-made");
    let reactor = Reactor::new().unwrap();
    let keep: Rc<RefCell<Option<ConnectionPool>>> = Rc::default();
    let slot: Slot = Rc::default();
    let (r, k, s, db) = (
        reactor.clone(),
        keep.clone(),
        slot.clone(),
        dir.file("t.db"),
    );
    reactor.add_system_event_trigger(Phase::Before, "shutdown", move || {
        let pool = ConnectionPool::new(
            "sqlite3",
            args![db],
            kwargs! { "cp_reactor" => Arg::reactor(r.clone()) },
        )
        .unwrap();
        assert!(pool.running());
        record(pool.run_query("select 1", ()), &s);
        *k.borrow_mut() = Some(pool);
    });
    let r = reactor.clone();
    reactor.call_when_running(move || r.stop().unwrap());
    run_bounded(&reactor).unwrap();
    assert!(
        slot.borrow().as_deref().unwrap_or("").starts_with("ok"),
        "{:?}",
        slot.borrow()
    );
    keep.borrow_mut().take();
}

/// Found here: a pool made after `run()` returned was never started and its
/// job never fired. Now it is refused.
#[test]
fn regression_pool_made_after_run_returned_is_refused() {
    let dir = TempDir::new("post-run");
    let reactor = Reactor::new().unwrap();
    let r = reactor.clone();
    reactor.call_when_running(move || r.stop().unwrap());
    run_bounded(&reactor).unwrap();
    let made = ConnectionPool::new(
        "sqlite3",
        args![dir.file("t.db")],
        kwargs! { "cp_reactor" => Arg::reactor(reactor.clone()) },
    );
    let e = made.expect_err("refused, not made").to_string();
    assert!(e.contains("cp_reactor"), "{e}");
}

/// `react()`: `main` makes a pool, starts a slow job, and returns a quick
/// one; `react` stops the reactor as soon as the quick one fires, and must
/// not return before the slow job's Deferred (held by the pool's shutdown
/// hold) has fired.
#[test]
fn held_react_returns_only_after_a_holding_pools_jobs_fired() {
    let dir = TempDir::new("react-hold");
    let slow: Slot = Rc::default();
    let keep: Rc<RefCell<Option<ConnectionPool>>> = Rc::default();
    let (s, k, db) = (slow.clone(), keep.clone(), dir.file("t.db"));
    let code = reactor::react(move |r| {
        let pool = ConnectionPool::new(
            "sqlite3",
            args![db],
            kwargs! { "cp_min" => 2, "cp_max" => 2, "cp_reactor" => Arg::reactor(r.clone()) },
        )
        .unwrap();
        record(
            pool.run_interaction(|_txn| {
                std::thread::sleep(Duration::from_millis(200));
                Ok(7)
            }),
            &s,
        );
        let quick = pool.run_query("select 1", ());
        *k.borrow_mut() = Some(pool);
        quick
    });
    assert_eq!(code, 0);
    assert_eq!(
        slow.borrow().as_deref(),
        Some("ok 7"),
        "{:?}",
        slow.borrow()
    );
    keep.borrow_mut().take();
}

/// `FakeReactor::stop()` with a pool holding shutdown (Inline jobs whose
/// results wait for a turn): the `after`/`shutdown` trigger waits; one
/// `pump()` delivers the job, the close, then runs `after`, in that order.
#[test]
fn held_fake_stop_with_a_holding_pool_then_one_pump() {
    let reactor = FakeReactor::new(true);
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
            .push(format!("job {}", outcome(&r.map(|v| v.len()))));
        Ok(())
    });
    let l = log.clone();
    reactor.add_system_event_trigger(Phase::After, "shutdown", move || {
        l.borrow_mut().push("after".into());
    });
    reactor.stop().unwrap();
    assert!(log.borrow().is_empty(), "{:?}", log.borrow());
    assert!(!reactor.running());
    reactor.pump();
    assert_eq!(*log.borrow(), ["job ok 1", "after"]);
    assert!(reactor.stop().is_err());
    drop(pool);
}

/// The same on a fake reactor whose pools run real threads: `pump()` until
/// `after` ran; the job fired first.
#[test]
fn held_fake_threads_stop_with_a_holding_pool_pumped() {
    let reactor = FakeReactor::with_pool_mode(true, PoolMode::Threads);
    let pool = ConnectionPool::new(
        "sqlite3",
        args![":memory:"],
        kwargs! { "cp_max" => 1, "cp_reactor" => Arg::reactor(reactor.clone()) },
    )
    .unwrap();
    let log: Log = Rc::default();
    let l = log.clone();
    let _ = pool
        .run_interaction(|_| {
            std::thread::sleep(Duration::from_millis(50));
            Ok(1)
        })
        .add_both(move |r| {
            l.borrow_mut().push(format!("job {}", outcome(&r)));
            Ok(())
        });
    let l = log.clone();
    reactor.add_system_event_trigger(Phase::After, "shutdown", move || {
        l.borrow_mut().push("after".into());
    });
    reactor.stop().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while log.borrow().len() < 2 && Instant::now() < deadline {
        reactor.pump();
        std::thread::yield_now();
    }
    assert_eq!(*log.borrow(), ["job ok 1", "after"]);
    drop(pool);
}

/// `final_close()` (not `close()`) from a `before`/`startup` trigger leaves
/// the pool's startup trigger registered (as Twisted's `finalClose`), which
/// then calls `start()` on the closed pool and logs an ERROR "could not
/// start the connection pool" for a legitimate sequence.
#[test]
fn regression_final_close_in_a_startup_trigger_logs_no_error() {
    let dir = TempDir::new("final-close-startup");
    let reactor = Reactor::new().unwrap();
    let pool = file_pool(&reactor, &dir, kwargs! {});
    let p = pool.clone();
    let closed: Slot = Rc::default();
    let c = closed.clone();
    reactor.add_system_event_trigger(Phase::Before, "startup", move || {
        record(p.final_close(), &c);
    });
    let r = reactor.clone();
    reactor.call_when_running(move || r.stop().unwrap());
    let ((), logs) = capture_logs(|| run_bounded(&reactor).unwrap());
    assert_eq!(closed.borrow().as_deref(), Some("ok ()"));
    let errors: Vec<_> = logs.iter().filter(|l| l.level == Level::ERROR).collect();
    assert!(errors.is_empty(), "{errors:?}");
}

/// `adjust_pool_size(0, 0)` from a `before`/`shutdown` trigger, then a job:
/// the only worker leaves, the job waits with no worker, and the close
/// (`during`) fails it with `PoolStopped` before `run()` returns: it fires.
#[test]
fn held_adjust_pool_size_to_zero_during_shutdown_still_fires_jobs() {
    let dir = TempDir::new("adjust-shutdown");
    let reactor = Reactor::new().unwrap();
    let pool = ConnectionPool::new(
        "sqlite3",
        args![dir.file("t.db")],
        kwargs! { "cp_min" => 1, "cp_max" => 1, "cp_reactor" => Arg::reactor(reactor.clone()) },
    )
    .unwrap();
    let slot: Slot = Rc::default();
    let (p, s) = (pool.clone(), slot.clone());
    reactor.add_system_event_trigger(Phase::Before, "shutdown", move || {
        p.threadpool().adjust_pool_size(Some(0), Some(0)).unwrap();
        record(p.run_query("select 1", ()), &s);
    });
    // And growing from a job callback while the pool is closing: refused
    // quietly (the pool has begun stopping), no thread is started.
    let (p, grown) = (pool.clone(), Rc::new(RefCell::new(None)));
    let g = grown.clone();
    let r = reactor.clone();
    reactor.call_when_running(move || {
        let p2 = p.clone();
        let _ = p.run_query("select 2", ()).add_both(move |_r| {
            r.stop().unwrap();
            *g.borrow_mut() = Some(p2.threadpool().workers());
            Ok::<(), Failure>(())
        });
    });
    run_bounded(&reactor).unwrap();
    let got = slot.borrow().clone();
    assert!(got.is_some(), "the job's Deferred never fired");
    assert!(grown.borrow().is_some());
    drop(pool);
}
