//! Regression tests for defects found in review: a cancelled running job must
//! never commit, a cancel must not cost a `cp_reconnect` pool its connection,
//! a second `close()` fires even if the pool is dropped, every constructor
//! refuses `cp_max=0`, a failed reconnect keeps the old connection (typed
//! errors, no panic), and `DelayedCall::delay` keeps times finite.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use adbapi::{kwargs, Arg, ConnectionPool, PoolError};
use deferred::{CancelledError, Deferred, Failure};
use integration_tests::harness::{run_chain, TempDir};
use reactor::prelude::*;
use reactor::testing::Clock;
use reactor::{DelayedCallError, Reactor};

const LIMIT: Duration = Duration::from_secs(60);

thread_local! {
    /// The job under test, so a `call_from_thread` closure (which must be
    /// `Send`) can cancel it on the loop thread.
    static JOB: RefCell<Option<Deferred<()>>> = const { RefCell::new(None) };
}

fn pool(reactor: &Reactor, dir: &TempDir, reconnect: bool) -> ConnectionPool {
    ConnectionPool::new(
        "sqlite3",
        vec![dir.file("db").as_str().into()],
        kwargs! {
            "cp_min" => 1, "cp_max" => 1, "cp_reconnect" => reconnect,
            "cp_reactor" => Arg::reactor(reactor.clone()),
        },
    )
    .expect("pool")
}

struct MidJob {
    outcome: Result<(), Failure>,
    second_failed: bool,
    rows: i64,
    conn_before: u64,
    conn_after: u64,
}

/// A job inserts, is cancelled while it runs, then tries to insert again,
/// ignores the error and returns `Ok`. A count queued behind it on the only
/// worker runs once the job is over.
fn cancel_mid_job(reconnect: bool) -> MidJob {
    let dir = TempDir::new("cancel-mid-job");
    let reactor = Reactor::new().expect("reactor");
    let p = pool(&reactor, &dir, reconnect);
    let remote = reactor.remote();
    let outcome: Rc<RefCell<Option<Result<(), Failure>>>> = Rc::new(RefCell::new(None));
    let second_failed = Arc::new(AtomicBool::new(false));
    let (o, sf) = (outcome.clone(), second_failed.clone());
    let (rows, before, after) = run_chain(&reactor, LIMIT, move || {
        let p2 = p.clone();
        p.run_operation("CREATE TABLE t (x INTEGER)", ())
            .add_callback_deferred(move |()| {
                let before = p2.connections()[0].1.id();
                let job = p2
                    .run_interaction(move |txn| {
                        txn.execute("INSERT INTO t VALUES (1)", ())?;
                        let (go_tx, go_rx) = crossbeam_channel::bounded::<()>(1);
                        remote.call_from_thread(move || {
                            JOB.with(|j| j.borrow().as_ref().expect("the job").cancel());
                            let _ = go_tx.send(());
                        });
                        go_rx.recv_timeout(LIMIT).expect("cancelled in time");
                        let second = txn.execute("INSERT INTO t VALUES (2)", ());
                        sf.store(second.is_err(), Ordering::SeqCst);
                        Ok(())
                    })
                    .add_both(move |r| {
                        *o.borrow_mut() = Some(r);
                        Ok(())
                    });
                JOB.with(|j| *j.borrow_mut() = Some(job));
                let p3 = p2.clone();
                p2.run_query("SELECT count(*) FROM t", ())
                    .add_callback(move |rows| {
                        (
                            rows[0].get::<i64>(0).unwrap(),
                            before,
                            p3.connections()[0].1.id(),
                        )
                    })
            })
    })
    .expect("the chain");
    JOB.with(|j| j.borrow_mut().take());
    let outcome = outcome.borrow_mut().take().expect("the job fired");
    MidJob {
        outcome,
        second_failed: second_failed.load(Ordering::SeqCst),
        rows,
        conn_before: before,
        conn_after: after,
    }
}

/// A cancelled job's later statements fail and nothing it did is committed,
/// even if the interaction ignores the error and returns `Ok`.
#[test]
fn cancelled_running_job_never_commits() {
    let r = cancel_mid_job(false);
    assert!(
        r.outcome
            .as_ref()
            .unwrap_err()
            .check::<CancelledError>()
            .is_some(),
        "{:?}",
        r.outcome
    );
    assert!(r.second_failed, "statements after the cancel fail");
    assert_eq!(r.rows, 0, "the cancelled job was rolled back");
    assert_eq!(r.conn_before, r.conn_after);
}

/// With `cp_reconnect`, a cancel is not a lost connection: the rollback and
/// the `good_sql` probe run uninterrupted and the connection is kept.
#[test]
fn cancel_does_not_cost_a_reconnecting_pool_its_connection() {
    let r = cancel_mid_job(true);
    assert!(r
        .outcome
        .as_ref()
        .unwrap_err()
        .check::<CancelledError>()
        .is_some());
    assert_eq!(r.rows, 0);
    assert_eq!(
        r.conn_before, r.conn_after,
        "the connection was not thrown away"
    );
}

/// A second `close()` fires even if every pool handle is dropped before the
/// close completes.
#[test]
fn second_close_fires_after_the_pool_is_dropped() {
    let dir = TempDir::new("close-dropped");
    let reactor = Reactor::new().expect("reactor");
    let p = pool(&reactor, &dir, false);
    let fired = Rc::new(RefCell::new(Vec::new()));
    let f = fired.clone();
    run_chain(&reactor, LIMIT, move || {
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

/// `cp_max=0` is refused by every constructor, `from_state` included.
#[test]
fn every_constructor_refuses_a_pool_of_no_threads() {
    let reactor = reactor::testing::FakeReactor::new(false);
    let p = ConnectionPool::builder("sqlite3")
        .arg(":memory:")
        .reactor(reactor.clone())
        .build()
        .expect("pool");
    let mut state = p.get_state();
    state.max = 0;
    state.min = 0;
    let err = ConnectionPool::from_state_with_reactor(state, reactor).expect_err("refused");
    assert!(
        matches!(err, PoolError::InvalidOption { ref option, .. } if option == "cp_max"),
        "{err}"
    );
}

/// A reconnect whose connect fails keeps the old (closed) connection, so the
/// job fails with a typed database error, not a panic.
#[test]
fn failed_reconnect_keeps_the_old_connection() {
    let dir = TempDir::new("failed-reconnect");
    let reactor = Reactor::new().expect("reactor");
    let connects = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = connects.clone();
    let p = ConnectionPool::new(
        "sqlite3",
        vec![dir.file("db").as_str().into()],
        kwargs! {
            "cp_min" => 1, "cp_max" => 1,
            "cp_reactor" => Arg::reactor(reactor.clone()),
            "cp_openfun" => Arg::openfun(move |_conn| {
                if c.fetch_add(1, Ordering::SeqCst) >= 1 {
                    Err(Failure::msg("no second connection"))
                } else {
                    Ok(())
                }
            }),
        },
    )
    .expect("pool");
    let r = run_chain(&reactor, LIMIT, move || {
        p.run_with_connection(|conn| {
            let e = conn.reconnect().expect_err("the second connect fails");
            assert_eq!(e.error_message(), "no second connection");
            let _ = conn.raw(); // no panic: the old connection is still there
            Ok(())
        })
    });
    let f = r.expect_err("commit on the closed connection fails");
    assert!(!f.is_panic(), "a typed error, not a panic: {f:?}");
    assert!(f.error_message().contains("closed"), "{f}");
}

/// `delay` keeps a call's time finite: a sum that overflows is refused.
#[test]
fn delay_refuses_a_non_finite_time() {
    let clock = Clock::new();
    let call = clock.call_later(Duration::from_secs(1), || {});
    call.delay(-f64::MAX).unwrap();
    assert!(matches!(
        call.delay(-f64::MAX),
        Err(DelayedCallError::InvalidDelay(_))
    ));
    assert!(call.get_time().is_finite());
    let reactor = Reactor::new().expect("reactor");
    let call = reactor.call_later(Duration::from_secs(1), || {});
    call.delay(f64::MAX).unwrap();
    assert!(call.delay(f64::MAX).is_err());
    reactor.iterate(Duration::ZERO); // must not panic computing the timeout
    assert!(call.active());
}
