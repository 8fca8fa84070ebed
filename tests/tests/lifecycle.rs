//! Starting and closing a pool (Twisted's `ConnectionPool.start`, the
//! startup trigger its constructor registers, `close` and `finalClose`):
//! jobs queued before the reactor runs, a pool made on a running reactor,
//! closing twice, late or early, `run_*` and `start` after close
//! (twisted/twisted#2680), cancelling a `close()` Deferred, and dropping
//! the last handle, which closes the pool as `final_close` would (and a
//! reactor shutdown waits for that).
//!
//! Tests named `regression_*` are defects found in review (each failed
//! before its fix); `held_*` are attacks that held, kept so they keep
//! holding.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use adbapi::{args, kwargs, Arg, ConnectionPool, PoolClosed};
use crossbeam_channel::bounded as channel;
use deferred::{gather_results, Deferred, Failure};
use integration_tests::harness::{ensure, fake_wait, run_async, run_chain, TempDir, TIMEOUT};
use integration_tests::pools::{file_pool, inline_sqlite_pool, ints, outcome, sqlite_pool, Log};
use reactor::prelude::*;
use reactor::testing::FakeReactor;
use reactor::{Phase, Reactor};
use test_support::bounded::bounded;

// ---------------------------------------------------------------------------
// Starting
// ---------------------------------------------------------------------------

/// A job queued before the reactor runs waits in the backlog (no thread
/// exists) and runs once the reactor runs and starts the pool (Twisted's
/// constructor registers `reactor.callWhenRunning(self._start)`).
#[test]
fn run_before_the_reactor_starts_waits_for_startup() {
    let dir = TempDir::new("early-job");
    let reactor = Reactor::new().expect("a reactor");
    let pool = file_pool(&reactor, &dir, kwargs! {});
    let d = pool.run_query("select 41 + 1", ());
    assert!(!pool.running());
    assert_eq!(pool.threadpool().workers(), 0);
    assert_eq!(pool.threadpool().q_size(), 1, "waiting in the backlog");
    let rows = run_chain(&reactor, TIMEOUT, move || d).unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(ints(&rows), [42]);
}

/// A pool made while the reactor runs starts at once: no startup trigger,
/// a `during`/`shutdown` trigger, workers running.
#[test]
fn a_pool_made_on_a_running_reactor_starts_at_once() {
    let dir = TempDir::new("running");
    let reactor = Reactor::new().expect("a reactor");
    let r = reactor.clone();
    let db = dir.file("test.db");
    let rows = run_async(&reactor, TIMEOUT, move || async move {
        let pool = ConnectionPool::new(
            "sqlite3",
            args![],
            kwargs! { "database" => db, "cp_min" => 2, "cp_reactor" => Arg::reactor(r.clone()) },
        )?;
        ensure(pool.start_id().is_none(), "no startup trigger")?;
        ensure(pool.running(), "running")?;
        let id = pool
            .shutdown_id()
            .ok_or_else(|| Failure::msg("no shutdown trigger"))?;
        ensure(
            (id.phase(), id.event()) == (Phase::During, "shutdown"),
            format!("{id}"),
        )?;
        ensure(
            r.system_event_triggers("shutdown", Phase::During)
                .contains(&id),
            "registered with the reactor",
        )?;
        ensure(pool.threadpool().workers() == 2, "cp_min workers")?;
        let rows = pool.run_query("select 5", ()).await?;
        pool.close().await?;
        Ok(rows)
    })
    .unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(ints(&rows), [5]);
}

// ---------------------------------------------------------------------------
// Closing
// ---------------------------------------------------------------------------

/// Closing twice is harmless and both Deferreds fire (documented
/// difference: Twisted's second `close()` raises `AlreadyQuit`).
#[test]
fn double_close_is_harmless() {
    let dir = TempDir::new("double-close");
    let reactor = Reactor::new().expect("a reactor");
    let pool = file_pool(&reactor, &dir, kwargs! { "cp_max" => 2 });
    let p = pool.clone();
    let fired = run_async(&reactor, TIMEOUT, move || async move {
        p.run_query("select 1", ()).await?;
        let first = p.close();
        let second = p.close();
        gather_results(vec![first, second], false).await?;
        // A third, after both fired, fires too.
        p.close().await?;
        Ok(())
    });
    fired.unwrap_or_else(|f| panic!("{f}"));
    assert!(!pool.running());
    assert_eq!(pool.threadpool().workers(), 0);
    assert!(pool.connections().is_empty());
}

/// `close()` after the shutdown trigger already closed the pool is harmless
/// and fires at once (documented difference: Twisted raises `AlreadyQuit`).
#[test]
fn close_after_the_shutdown_trigger_is_harmless() {
    let dir = TempDir::new("close-after-shutdown");
    let reactor = Reactor::new().expect("a reactor");
    let pool = file_pool(&reactor, &dir, kwargs! {});
    let p = pool.clone();
    run_chain(&reactor, TIMEOUT, move || p.run_query("select 1", ()))
        .unwrap_or_else(|f| panic!("{f}"));
    // The reactor stopped: its shutdown trigger closed the pool.
    assert!(!pool.running());
    assert_eq!(pool.shutdown_id(), None);
    let d = pool.close();
    assert_eq!(
        d.into_result().ok().map(|r| r.is_ok()),
        Some(true),
        "fired at once"
    );
}

/// A pool closed before the reactor ever ran: its startup trigger is gone,
/// so it never starts; with no worker and no job to wait for, its `close()`
/// Deferred has fired already (as Twisted's `close()` returns when done).
#[test]
fn close_before_the_reactor_ever_ran() {
    let dir = TempDir::new("close-early");
    let reactor = Reactor::new().expect("a reactor");
    let pool = file_pool(&reactor, &dir, kwargs! {});
    let start_id = pool.start_id().expect("a startup trigger");
    assert!(reactor
        .system_event_triggers("startup", Phase::After)
        .contains(&start_id));
    let closed = pool.close();
    assert!(!reactor
        .system_event_triggers("startup", Phase::After)
        .contains(&start_id));
    assert!(closed.has_result(), "nothing to wait for: fired in close()");
    let p = pool.clone();
    let after = run_chain(&reactor, TIMEOUT, move || {
        closed.add_callback_deferred(move |()| {
            assert!(!p.running(), "the startup did not start it");
            p.run_query("select 1", ())
        })
    });
    let f = after.expect_err("a closed pool runs nothing");
    assert!(f.check::<PoolClosed>().is_some(), "{f}");
    assert!(!pool.running());
    assert_eq!(pool.threadpool().workers(), 0);
    assert!(
        pool.threadpool().thread_names().is_empty(),
        "no thread ever"
    );
}

/// Every `run_*` on a closed pool fails with `PoolClosed` on a later turn:
/// not synchronously and not never (documented difference: Twisted's
/// Deferred never fires, twisted/twisted#2680).
#[test]
fn run_after_close_fails_with_pool_closed_on_a_later_turn() {
    let (reactor, pool) = inline_sqlite_pool(kwargs! {});
    fake_wait(&reactor, pool.close()).expect("close");
    let ds: Vec<Deferred<()>> = vec![
        pool.run_query("select 1", ()).add_callback(|_| ()),
        pool.run_operation("select 1", ()),
        pool.run_interaction(|_txn| Ok(())),
        pool.run_with_connection(|_conn| Ok(())),
    ];
    assert!(ds.iter().all(|d| !d.has_result()), "not synchronously");
    reactor.pump();
    for d in ds {
        let r = d.into_result().expect("fired on the next turn");
        let f = r.expect_err("PoolClosed");
        assert_eq!(
            f.check::<PoolClosed>(),
            Some(&PoolClosed {
                dbapi_name: "sqlite3".into()
            }),
            "{f}"
        );
    }
}

/// `start()` after `close()` fails with `PoolClosed` (Twisted: `AlreadyQuit`),
/// whether or not the pool had been started.
#[test]
fn start_after_close_fails() {
    for running in [false, true] {
        let reactor = FakeReactor::new(running);
        let pool = ConnectionPool::new(
            "sqlite3",
            args![":memory:"],
            kwargs! { "cp_reactor" => Arg::reactor(reactor.clone()) },
        )
        .expect("a pool");
        assert_eq!(pool.running(), running);
        fake_wait(&reactor, pool.close()).expect("close");
        assert_eq!(
            pool.start(),
            Err(PoolClosed {
                dbapi_name: "sqlite3".into()
            })
        );
        assert!(!pool.running());
        assert!(reactor.triggers().is_empty());
    }
}

/// A second `close()` fires even if every pool handle is dropped before the
/// close completes.
#[test]
fn second_close_fires_after_the_pool_is_dropped() {
    let dir = TempDir::new("close-dropped");
    let reactor = Reactor::new().expect("reactor");
    let p = sqlite_pool(&reactor, &dir, 1, 1);
    let fired = Rc::new(RefCell::new(Vec::new()));
    let f = fired.clone();
    run_chain(&reactor, TIMEOUT, move || {
        let warm = p.run_query("SELECT 1", ());
        warm.add_callback_deferred(move |_| {
            let (f1, f2) = (f.clone(), f.clone());
            let first = p
                .close()
                .add_callback(move |()| f1.borrow_mut().push("first"));
            let second = p
                .close()
                .add_callback(move |()| f2.borrow_mut().push("second"));
            drop(p);
            deferred::gather_results(vec![first, second], false)
        })
    })
    .expect("both closes fire");
    let mut fired = fired.borrow().clone();
    fired.sort_unstable();
    assert_eq!(fired, ["first", "second"]);
}

/// Defect: only the first `close()` Deferred declines a cancel. A second
/// `close()` during the close parks a plain `Deferred::new()` in
/// `CloseState::Closing`; cancelling it fails it with `CancelledError` at
/// once, while a job still runs and the pool is not closed.
#[test]
fn regression_cancelling_a_second_close_deferred_does_not_cut_it_short() {
    bounded(|| {
        let dir = TempDir::new("review-close2");
        let reactor = Reactor::new().unwrap();
        let pool = sqlite_pool(&reactor, &dir, 1, 1);
        let log: Log = Rc::default();
        let (release_tx, release_rx) = channel::<()>(1);
        let (started_tx, started_rx) = channel::<()>(1);
        let (p, r, l) = (pool.clone(), reactor.clone(), log.clone());
        reactor.call_when_running(move || {
            let l1 = l.clone();
            let _ = p
                .run_interaction(move |_txn| {
                    let _ = started_tx.send(());
                    let _ = release_rx.recv_timeout(TIMEOUT);
                    Ok(())
                })
                .add_both(move |res| {
                    l1.borrow_mut().push(format!("job {}", outcome(&res)));
                    Ok(())
                });
            started_rx.recv_timeout(TIMEOUT).expect("the job started");
            let (l1, r1) = (l.clone(), r.clone());
            let _ = p.close().add_both(move |res| {
                l1.borrow_mut().push(format!("close1 {}", outcome(&res)));
                r1.stop().unwrap();
                Ok(())
            });
            let l2 = l.clone();
            let second = p.close().add_both(move |res| {
                l2.borrow_mut().push(format!("close2 {}", outcome(&res)));
                Ok(())
            });
            second.cancel();
            l.borrow_mut().push("cancelled close2".into());
            release_tx.send(()).unwrap();
        });
        reactor.run().unwrap();
        // The two close() Deferreds fire in either order, after the job.
        let mut got = log.borrow().clone();
        got[2..].sort();
        assert_eq!(
            got,
            [
                "cancelled close2",
                "job ok ()",
                "close1 ok ()",
                "close2 ok ()"
            ],
            "a cancelled close() Deferred must still mean 'the pool has closed'"
        );
    });
}

// ---------------------------------------------------------------------------
// Dropping the last handle
// ---------------------------------------------------------------------------

/// A pool dropped while the reactor keeps running stops its workers too:
/// no thread is leaked.
#[test]
fn dropped_pool_stops_its_workers_while_running() {
    bounded(|| {
        let dir = TempDir::new("shutdown-dropped-running");
        let reactor = Reactor::new().unwrap();
        let pool = sqlite_pool(&reactor, &dir, 1, 2);
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

/// Defect: dropping the last handle with a job in flight, then stopping,
/// let `run()` return at once; the job's Deferred fired only on a later
/// `iterate()`. Dropping now takes the path of `final_close`.
#[test]
fn dropped_pool_holds_shutdown_until_its_jobs_fired() {
    bounded(|| {
        let dir = TempDir::new("shutdown-dropped");
        let reactor = Reactor::new().unwrap();
        let pool = sqlite_pool(&reactor, &dir, 1, 2);
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

/// Dropping the last pool handle inside the pool's own job callback, while
/// the shutdown is in progress, neither panics nor hangs.
#[test]
fn held_drop_last_handle_in_own_callback_during_shutdown() {
    bounded(|| {
        let dir = TempDir::new("review-drop-in-cb");
        let reactor = Reactor::new().unwrap();
        let pool = sqlite_pool(&reactor, &dir, 1, 2);
        let threadpool = pool.threadpool().clone();
        let log: Log = Rc::default();
        let holder: Rc<RefCell<Option<ConnectionPool>>> = Rc::new(RefCell::new(Some(pool)));
        let (h, r, l) = (holder.clone(), reactor.clone(), log.clone());
        reactor.call_when_running(move || {
            let p = h.borrow().clone().unwrap();
            let (h2, l2) = (h.clone(), l.clone());
            let _ = p.run_query("select 1", ()).add_both(move |res| {
                l2.borrow_mut().push(outcome(&res));
                // The last handle: the pool's final_close continuation and
                // its Drop may both be on this stack.
                drop(h2.borrow_mut().take());
                Ok(())
            });
            drop(p);
            r.stop().unwrap();
        });
        reactor.run().unwrap();
        assert_eq!(log.borrow().len(), 1);
        assert_eq!(threadpool.workers(), 0);
    });
}
