//! `cp_queue_timeout`: a job that waited longer than that for a worker fails
//! with a typed `PoolTimeout` (HikariCP's "request timed out after ..."),
//! whose message states the pool's size and load and how long the job
//! waited, and it is never run afterwards. The deadline is a timer on the
//! pool's reactor, so these tests drive it with a `FakeReactor`'s clock and
//! run the pool's jobs by hand (`PoolMode::Manual`): nothing here depends
//! on how fast the machine is.
//!
//! Attacks: the timer against a worker that took the job first, a worker
//! that finished at the deadline, a cancel before and after the timer,
//! `close()` with a job about to time out, and zero, negative, NaN,
//! infinite and huge timeouts.

use std::time::Duration;

use adbapi::{args, kwargs, Arg, ConnectionPool, PoolError, PoolTimeout};
use deferred::Failure;
use deferred::{CancelledError, Deferred};
use integration_tests::harness::{fake_wait, run_chain, TempDir, TIMEOUT};
use integration_tests::pools::Kwargs;
use reactor::testing::{FakeReactor, PoolMode};
use reactor::Reactor;

/// A one-worker in-memory SQLite pool whose jobs run when the test calls
/// `run_jobs`, with a table `t`, and `extra` options.
fn manual_pool(extra: Kwargs) -> (FakeReactor, ConnectionPool) {
    let reactor = FakeReactor::with_pool_mode(true, PoolMode::Manual);
    let mut kw = kwargs! {
        "cp_min" => 1, "cp_max" => 1, "cp_name" => "qt",
        "cp_reactor" => Arg::reactor(reactor.clone()),
    };
    kw.extend(extra);
    let pool = ConnectionPool::new("sqlite3", args![":memory:"], kw).expect("a pool");
    let d = pool.run_operation("CREATE TABLE t (x INTEGER)", ());
    reactor.run_jobs();
    fake_wait(&reactor, d).expect("create");
    (reactor, pool)
}

fn rows_in_t(reactor: &FakeReactor, pool: &ConnectionPool) -> i64 {
    let d = pool.run_query("SELECT count(*) FROM t", ());
    reactor.run_jobs();
    fake_wait(reactor, d).expect("count")[0]
        .get::<i64>(0)
        .expect("an int")
}

/// The result of `d`, which must have fired by this turn (no waiting).
fn fired<T: 'static>(
    reactor: &FakeReactor,
    d: Deferred<T>,
    what: &str,
) -> Result<T, deferred::Failure> {
    reactor.pump();
    match d.into_result() {
        Ok(r) => r,
        Err(_) => panic!("not fired: {what}"),
    }
}

/// `d` back, which must not have fired by this turn.
fn pending<T: 'static>(reactor: &FakeReactor, d: Deferred<T>, what: &str) -> Deferred<T> {
    reactor.pump();
    match d.into_result() {
        Ok(_) => panic!("fired too early: {what}"),
        Err(d) => d,
    }
}

#[test]
fn a_job_that_waited_past_the_deadline_fails_with_pool_timeout_and_never_runs() {
    let (reactor, pool) = manual_pool(kwargs! { "cp_queue_timeout" => 5 });
    let d = pool.run_operation("INSERT INTO t VALUES (1)", ());
    let other = pool.run_operation("INSERT INTO t VALUES (2)", ());
    reactor.advance(4.5);
    let d = pending(&reactor, d, "not yet: the deadline is 5 s away");
    reactor.advance(1.0); // 5.5 s after submission

    let f = fired(&reactor, d, "fired at the deadline, with no worker free").unwrap_err();
    let e = f
        .check::<PoolTimeout>()
        .unwrap_or_else(|| panic!("a PoolTimeout, got {f}"));
    assert_eq!(e.pool, "qt");
    assert_eq!(e.timeout, Duration::from_secs(5));
    assert_eq!(e.waited, Duration::from_millis(5500));
    assert_eq!((e.min, e.max), (1, 1));
    assert_eq!(
        e.queued, 1,
        "the other job is still waiting when the first one times out"
    );
    let msg = f.to_string();
    for part in [
        "\"qt\"",
        "timed out after 5500ms",
        "min=1",
        "max=1",
        "busy=",
        "idle=",
        "queued=",
    ] {
        assert!(msg.contains(part), "{part:?} missing from {msg}");
    }
    assert!(fired(&reactor, other, "fired too")
        .unwrap_err()
        .check::<PoolTimeout>()
        .is_some());

    // The worker frees up later: neither job runs.
    reactor.run_jobs();
    assert_eq!(rows_in_t(&reactor, &pool), 0, "a timed-out job was run");
    let st = pool.status();
    assert_eq!((st.jobs_timed_out, st.queued), (2, 0));
    assert!(
        reactor.clock().get_delayed_calls().is_empty(),
        "a timer left behind"
    );
}

#[test]
fn a_job_a_worker_took_before_the_deadline_runs_to_completion() {
    let (reactor, pool) = manual_pool(kwargs! { "cp_queue_timeout" => 5 });
    let d = pool.run_operation("INSERT INTO t VALUES (1)", ());
    // The worker runs the job; its result reaches the loop in the same turn
    // as the (later) timer: the worker won, the timer does nothing.
    reactor.run_jobs();
    reactor.clock().advance(60.0);
    fake_wait(&reactor, d).expect("the job a worker took runs normally");
    assert_eq!(rows_in_t(&reactor, &pool), 1);
    let st = pool.status();
    assert_eq!((st.jobs_timed_out, st.jobs_completed), (0, 3));
    assert!(
        reactor.clock().get_delayed_calls().is_empty(),
        "a timer left behind"
    );
}

#[test]
fn a_worker_finishing_at_the_deadline_and_the_timer_give_one_outcome_each() {
    use reactor::testing::TestPool;
    let (reactor, pool) = manual_pool(kwargs! { "cp_queue_timeout" => 1 });
    let fired = std::rc::Rc::new(std::cell::Cell::new(0));
    let counted = |d: Deferred<()>| {
        let f = fired.clone();
        d.add_both(move |r| {
            f.set(f.get() + 1);
            r
        })
    };
    let first = counted(pool.run_operation("INSERT INTO t VALUES (1)", ()));
    let second = counted(pool.run_operation("INSERT INTO t VALUES (2)", ()));
    // The worker takes the first job and finishes it; its result reaches the
    // loop in the same turn as both deadlines.
    assert!(pool.threadpool().run_one());
    reactor.advance(1.0);
    reactor.run_jobs(); // the worker frees up and pops the second job
    reactor.pump();
    fake_wait(&reactor, first).expect("the job a worker took completes normally");
    let f = fake_wait(&reactor, second).expect_err("the queued one timed out");
    assert!(f.check::<PoolTimeout>().is_some(), "{f}");
    assert_eq!(fired.get(), 2, "each Deferred fired exactly once");
    assert_eq!(
        rows_in_t(&reactor, &pool),
        1,
        "only the job that started ran"
    );
    let st = pool.status();
    assert_eq!((st.jobs_timed_out, st.queued), (1, 0));
}

#[test]
fn cancel_before_the_deadline_withdraws_the_job_and_disarms_the_timer() {
    let (reactor, pool) = manual_pool(kwargs! { "cp_queue_timeout" => 5 });
    let d = pool.run_operation("INSERT INTO t VALUES (1)", ());
    d.cancel();
    let f = fired(&reactor, d, "cancelled at once").unwrap_err();
    assert!(f.check::<CancelledError>().is_some(), "{f}");
    assert!(
        reactor.clock().get_delayed_calls().is_empty(),
        "the timer survived the cancel"
    );
    reactor.advance(10.0);
    reactor.run_jobs();
    assert_eq!(rows_in_t(&reactor, &pool), 0);
    let st = pool.status();
    assert_eq!((st.jobs_cancelled, st.jobs_timed_out, st.queued), (1, 0, 0));
}

#[test]
fn cancel_after_the_timeout_changes_nothing() {
    let (reactor, pool) = manual_pool(kwargs! { "cp_queue_timeout" => 0.25 });
    let fired = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let f = fired.clone();
    let d = pool
        .run_operation("INSERT INTO t VALUES (1)", ())
        .add_both(move |r| {
            f.borrow_mut().push(r.is_err());
            r
        });
    reactor.advance(0.25);
    d.cancel();
    d.cancel();
    reactor.run_jobs();
    reactor.pump();
    assert_eq!(*fired.borrow(), [true], "fired once");
    assert!(d
        .into_result()
        .ok()
        .unwrap()
        .unwrap_err()
        .check::<PoolTimeout>()
        .is_some());
    assert_eq!(pool.status().jobs_cancelled, 0);
}

#[test]
fn a_job_dropped_by_a_stopping_pool_fails_once_and_disarms_its_timer() {
    // A Manual pool's close drops its queued jobs (PoolStopped), as it does
    // without a queue timeout: that outcome wins, the timer is disarmed, and
    // status during and after the close is sound.
    let (reactor, pool) = manual_pool(kwargs! { "cp_queue_timeout" => 2 });
    let d = pool.run_operation("INSERT INTO t VALUES (1)", ());
    let closed = pool.close();
    assert!(!pool.status().running);
    reactor.run_jobs();
    let f = fake_wait(&reactor, d).expect_err("dropped by the stopping pool");
    assert!(f.check::<reactor::PoolStopped>().is_some(), "{f}");
    assert!(
        reactor.clock().get_delayed_calls().is_empty(),
        "a timer left behind"
    );
    reactor.advance(5.0);
    fake_wait(&reactor, closed).expect("close completes");
    let st = pool.status();
    assert_eq!((st.jobs_timed_out, st.jobs_failed, st.queued), (0, 1, 0));
}

/// With a real reactor and its one worker held busy, a job queued behind it
/// times out while the pool is closing; the close still completes, and the
/// job never runs. The worker is released only once the timeout fired, so
/// the order is fixed whatever the machine's speed.
#[test]
fn a_timeout_while_closing_fails_the_job_and_the_close_still_completes() {
    let reactor = Reactor::new().unwrap();
    let dir = TempDir::new("obs-qt-close");
    let pool = ConnectionPool::new(
        "sqlite3",
        args![dir.file("q.db")],
        kwargs! {
            "cp_min" => 1, "cp_max" => 1, "cp_queue_timeout" => 0.05,
            "cp_reactor" => Arg::reactor(reactor.clone()),
        },
    )
    .expect("a pool");
    let (release, held) = crossbeam_channel::bounded::<()>(1);
    let p = pool.clone();
    let (blocker, queued, statuses) = run_chain(&reactor, TIMEOUT, move || {
        let p2 = p.clone();
        p.run_operation("CREATE TABLE t (x INTEGER)", ())
            .add_callback_deferred(move |()| {
                let blocker = p2.run_interaction(move |_t| {
                    held.recv().map_err(Failure::new)?;
                    Ok(())
                });
                let queued = p2.run_operation("INSERT INTO t VALUES (1)", ());
                let closing = p2.close();
                let during = p2.status();
                let p3 = p2.clone();
                let queued = queued.add_both(move |r| {
                    let at_timeout = p3.status();
                    release.send(()).expect("the worker waits");
                    Ok((r, at_timeout))
                });
                deferred::gather_results(vec![blocker.add_both(|r| Ok(r.is_ok()))], true)
                    .add_callback_deferred(move |b| queued.add_callback(move |q| (b, q)))
                    .add_callback_deferred(move |(b, (q, at_timeout))| {
                        closing.add_callback(move |()| (b[0], q, (during, at_timeout, p2.status())))
                    })
            })
    })
    .expect("the chain");
    assert!(blocker, "the job that held the worker completed");
    let f = queued.expect_err("timed out");
    let e = f.check::<PoolTimeout>().unwrap_or_else(|| panic!("{f}"));
    assert_eq!((e.busy, e.max, e.queued), (1, 1, 0), "{f}");
    let (during, at_timeout, after) = statuses;
    assert!(!during.running);
    assert!(during.queued >= 1, "status works while closing: {during:?}");
    assert_eq!(at_timeout.jobs_timed_out, 1);
    assert_eq!(
        (after.jobs_timed_out, after.jobs_completed, after.queued),
        (1, 2, 0)
    );
    assert_eq!(after.open_connections, 0);
    // The timed-out INSERT never ran.
    let check = integration_tests::direct::sqlite(&dir.file("q.db"), &[]);
    assert_eq!(
        integration_tests::direct::count(&check, "SELECT count(*) FROM t"),
        0
    );
}

#[test]
fn a_huge_timeout_never_fires_in_practice() {
    let (reactor, pool) = manual_pool(kwargs! { "cp_queue_timeout" => 1e9 });
    let d = pool.run_operation("INSERT INTO t VALUES (1)", ());
    reactor.advance(1e6);
    let d = pending(&reactor, d, "still waiting");
    reactor.run_jobs();
    fake_wait(&reactor, d).expect("ran");
}

#[test]
fn invalid_queue_timeouts_are_refused_naming_the_option() {
    let reactor = FakeReactor::new(false);
    for bad in [
        Arg::from(0),
        Arg::from(0.0),
        Arg::from(-1),
        Arg::from(-0.5),
        Arg::from(f64::NAN),
        Arg::from(f64::INFINITY),
        Arg::from(1e300),
        Arg::from("5"),
    ] {
        let shown = format!("{bad:?}");
        let e = ConnectionPool::new(
            "sqlite3",
            args![":memory:"],
            kwargs! { "cp_queue_timeout" => bad, "cp_reactor" => Arg::reactor(reactor.clone()) },
        )
        .expect_err(&shown);
        match &e {
            PoolError::InvalidOption {
                option, expected, ..
            } => {
                assert_eq!(option, "cp_queue_timeout", "{shown}");
                assert!(expected.contains("> 0"), "{expected}");
            }
            other => panic!("{shown}: {other}"),
        }
    }
    let e = ConnectionPool::builder("sqlite3")
        .arg(":memory:")
        .queue_timeout(Some(Duration::ZERO))
        .reactor(reactor.clone())
        .build()
        .expect_err("a zero timeout");
    assert!(e.to_string().contains("cp_queue_timeout"), "{e}");
    // None is off, as by default.
    ConnectionPool::new(
        "sqlite3",
        args![":memory:"],
        kwargs! { "cp_queue_timeout" => Arg::None, "cp_reactor" => Arg::reactor(reactor) },
    )
    .expect("None turns it off");
}

#[test]
fn named_jobs_carry_their_name_into_the_timeout() {
    let (reactor, pool) = manual_pool(kwargs! { "cp_queue_timeout" => 3 });
    let d = pool.named("get_user").run_query("SELECT 1", ());
    reactor.advance(3.0);
    let f = fired(&reactor, d, "timed out").unwrap_err();
    let e = f.check::<PoolTimeout>().expect("a PoolTimeout");
    assert_eq!(e.interaction.as_deref(), Some("get_user"));
    assert!(f.to_string().contains("interaction \"get_user\""), "{f}");
}
