//! Hostile tests of the production features (issue 13): status counts that
//! must not lie under any interleaving of submissions, cancels, queue
//! timeouts, failing and panicking jobs and workers taking jobs, and every
//! Deferred firing exactly once. Driven by a `FakeReactor` whose pool runs
//! jobs only when the test says (`PoolMode::Manual`), so the order of
//! events is the test's, not the machine's.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use adbapi::{args, kwargs, Arg, ConnectionPool, PoolTimeout, RetryPolicy};
use deferred::{CancelledError, Deferred, Failure};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use reactor::testing::{FakeReactor, PoolMode, TestPool};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Ok,
    Fail,
    Panic,
    Retried,
}

#[derive(Debug, Clone)]
enum Op {
    Submit { kind: Kind, named: bool },
    Cancel(usize),
    Advance(u8),
    RunOne,
    Pump,
    Status,
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    Completed,
    Failed,
    Cancelled,
    TimedOut,
}

struct Job {
    started: Arc<AtomicBool>,
    fired: Rc<RefCell<Vec<Outcome>>>,
    d: Deferred<()>,
}

fn op() -> impl Strategy<Value = Op> {
    let kind = prop_oneof![
        3 => Just(Kind::Ok),
        1 => Just(Kind::Fail),
        1 => Just(Kind::Panic),
        1 => Just(Kind::Retried),
    ];
    prop_oneof![
        4 => (kind, any::<bool>()).prop_map(|(kind, named)| Op::Submit { kind, named }),
        2 => (0usize..16).prop_map(Op::Cancel),
        2 => (0u8..3).prop_map(Op::Advance),
        3 => Just(Op::RunOne),
        1 => Just(Op::Pump),
        1 => Just(Op::Status),
        1 => Just(Op::Close),
    ]
}

/// The result of `d`, which must have fired.
fn fired<T: 'static>(d: Deferred<T>) -> Result<T, Failure> {
    match d.into_result() {
        Ok(r) => r,
        Err(_) => panic!("not fired"),
    }
}

fn classify(f: &Failure) -> Outcome {
    if f.check::<PoolTimeout>().is_some() {
        Outcome::TimedOut
    } else if f.check::<CancelledError>().is_some() {
        Outcome::Cancelled
    } else {
        Outcome::Failed
    }
}

fn submit(pool: &ConnectionPool, kind: Kind, named: bool) -> Job {
    let started = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&started);
    let body = move |txn: &mut adbapi::Transaction<'_>| -> Result<(), Failure> {
        s.store(true, Ordering::SeqCst);
        match kind {
            Kind::Ok | Kind::Retried => {
                txn.execute("INSERT INTO t VALUES (1)", ())?;
                Ok(())
            }
            Kind::Fail => {
                txn.execute("SELECT * FROM no_such_table", ())?;
                Ok(())
            }
            Kind::Panic => panic!("a job that panics"),
        }
    };
    let d: Deferred<()> = match (kind, named) {
        (Kind::Retried, _) => pool.run_interaction_with_retry(RetryPolicy::attempts(3), body),
        (_, true) => pool.named("model job").run_interaction(body),
        (_, false) => pool.run_interaction(body),
    };
    let fired = Rc::new(RefCell::new(Vec::new()));
    let f = Rc::clone(&fired);
    let d = d.add_both(move |r: Result<(), Failure>| {
        f.borrow_mut().push(match &r {
            Ok(()) => Outcome::Completed,
            Err(e) => classify(e),
        });
        Ok::<(), Failure>(())
    });
    Job { started, fired, d }
}

fn check_counts(pool: &ConnectionPool, jobs: &[Job], when: &str) -> Result<(), TestCaseError> {
    let st = pool.status();
    for (i, j) in jobs.iter().enumerate() {
        prop_assert!(
            j.fired.borrow().len() <= 1,
            "job {i} fired {:?} {when}",
            j.fired.borrow()
        );
    }
    let waiting = jobs
        .iter()
        .filter(|j| !j.started.load(Ordering::SeqCst) && j.fired.borrow().is_empty())
        .count();
    prop_assert_eq!(st.queued, waiting, "queued {}: {:?}", when, st);
    prop_assert_eq!(
        st.open_connections as u64,
        st.connections_opened - st.connections_closed,
        "open connections {}: {:?}",
        when,
        st
    );
    let count = |o: Outcome| {
        jobs.iter()
            .filter(|j| j.fired.borrow().first() == Some(&o))
            .count() as u64
    };
    // A success is counted on its worker, before its Deferred fires; every
    // other outcome as the Deferred fires.
    prop_assert!(
        st.jobs_completed >= count(Outcome::Completed),
        "{when}: {st:?}"
    );
    prop_assert_eq!(
        st.jobs_failed,
        count(Outcome::Failed),
        "failed {}: {:?}",
        when,
        st
    );
    prop_assert_eq!(
        st.jobs_cancelled,
        count(Outcome::Cancelled),
        "cancelled {}",
        when
    );
    prop_assert_eq!(
        st.jobs_timed_out,
        count(Outcome::TimedOut),
        "timed out {}",
        when
    );
    Ok(())
}

fn run_program(ops: &[Op]) -> Result<(), TestCaseError> {
    let reactor = FakeReactor::with_pool_mode(true, PoolMode::Manual);
    let pool = ConnectionPool::new(
        "sqlite3",
        args![":memory:"],
        kwargs! {
            "cp_min" => 1, "cp_max" => 1, "cp_name" => "model",
            "cp_queue_timeout" => 1.5,
            "cp_reactor" => Arg::reactor(reactor.clone()),
        },
    )
    .expect("a pool");
    let d = pool.run_operation("CREATE TABLE t (x INTEGER)", ());
    reactor.run_until_idle();
    prop_assert!(d.into_result().ok().is_some_and(|r| r.is_ok()));
    // The CREATE is one completed job the model does not track.
    let mut jobs: Vec<Job> = Vec::new();
    let mut closes = Vec::new();
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Submit { kind, named } => jobs.push(submit(&pool, *kind, *named)),
            Op::Cancel(i) => {
                if !jobs.is_empty() {
                    jobs[i % jobs.len()].d.cancel();
                }
            }
            Op::Advance(s) => reactor.advance(f64::from(*s)),
            Op::RunOne => {
                pool.threadpool().run_one();
            }
            Op::Pump => {
                reactor.pump();
            }
            Op::Status => {
                pool.status();
            }
            Op::Close => closes.push(pool.close()),
        }
        reactor.pump();
        check_counts(&pool, &jobs, &format!("after step {step} {op:?}"))?;
    }
    // Drain: every job runs or has fired; then all have fired exactly once.
    reactor.run_until_idle();
    reactor.advance(10.0);
    reactor.run_until_idle();
    check_counts(&pool, &jobs, "at the end")?;
    for (i, j) in jobs.iter().enumerate() {
        prop_assert_eq!(j.fired.borrow().len(), 1, "job {} never fired", i);
    }
    let st = pool.status();
    let completed = jobs
        .iter()
        .filter(|j| j.fired.borrow()[0] == Outcome::Completed)
        .count() as u64;
    prop_assert_eq!(st.jobs_completed, completed + 1, "{:?}", st);
    prop_assert_eq!(
        st.jobs_completed + st.jobs_failed + st.jobs_cancelled + st.jobs_timed_out,
        jobs.len() as u64 + 1
    );
    closes.push(pool.close());
    reactor.run_until_idle();
    for closed in closes {
        prop_assert!(closed.into_result().ok().is_some_and(|r| r.is_ok()));
    }
    let st = pool.status();
    prop_assert_eq!(st.open_connections, 0);
    prop_assert_eq!(st.connections_opened, st.connections_closed, "{:?}", st);
    Ok(())
}

#[test]
fn status_counts_stay_true_under_any_interleaving_of_jobs_cancels_and_timeouts() {
    let cases = std::env::var("ADBAPI_MODEL_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&proptest::collection::vec(op(), 1..24), |ops| {
        run_program(&ops)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn jobs_refused_by_a_closed_pool_are_counted_as_failed() {
    let reactor = FakeReactor::with_pool_mode(true, PoolMode::Manual);
    let pool = ConnectionPool::new(
        "sqlite3",
        args![":memory:"],
        kwargs! { "cp_min" => 1, "cp_max" => 1, "cp_reactor" => Arg::reactor(reactor.clone()) },
    )
    .expect("a pool");
    let closed = pool.close();
    reactor.run_until_idle();
    assert!(closed.into_result().ok().is_some_and(|r| r.is_ok()));
    let ds = vec![
        pool.run_operation("SELECT 1", ()),
        pool.named("refused").run_operation("SELECT 1", ()),
        pool.run_interaction_with_retry(RetryPolicy::default(), |_| Ok(())),
    ];
    reactor.run_until_idle();
    for d in ds {
        let r = fired(d);
        assert!(r.is_err(), "refused");
    }
    let st = pool.status();
    assert_eq!(
        st.jobs_failed, 3,
        "every refused job's Deferred failed: {st:?}"
    );
    assert_eq!(st.queued, 0);
}

// Synapse's runInteraction(desc, func) both names and retries its
// transactions: a retried job can carry a name, which its failure (after
// the attempts) and its PoolTimeout name, as any named job's do.
#[test]
fn a_retried_interaction_can_be_named_and_its_failures_say_so() {
    use adbapi::dbapi::{DbError, ErrorKind};
    use std::sync::atomic::AtomicU32;
    use std::time::Duration;
    let reactor = FakeReactor::with_pool_mode(true, PoolMode::Manual);
    let pool = ConnectionPool::new(
        "sqlite3",
        args![":memory:"],
        kwargs! {
            "cp_min" => 1, "cp_max" => 1, "cp_name" => "named-retry",
            "cp_queue_timeout" => 5,
            "cp_reactor" => Arg::reactor(reactor.clone()),
        },
    )
    .expect("a pool");
    let policy = RetryPolicy::attempts(3).with_backoff(Duration::ZERO, Duration::ZERO);
    let attempts = Arc::new(AtomicU32::new(0));
    let a = Arc::clone(&attempts);
    let d = pool.named("deadlocky").run_interaction_with_retry(
        policy,
        move |_txn| -> Result<(), Failure> {
            a.fetch_add(1, Ordering::SeqCst);
            Err(Failure::new(
                DbError::new(ErrorKind::OperationalError, "deadlock").with_code("40P01"),
            ))
        },
    );
    reactor.run_until_idle();
    let f = fired(d).unwrap_err();
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    let msg = f.to_string();
    assert!(msg.contains("gave up after 3 attempts"), "{msg}");
    assert!(msg.contains("\"deadlocky\""), "{msg}");
    // Queued past the deadline: a PoolTimeout naming the interaction.
    let d = pool
        .named("late")
        .run_interaction_with_retry(policy, |_txn| Ok(()));
    reactor.advance(6.0);
    let f = fired(d).unwrap_err();
    let e = f.check::<PoolTimeout>().expect("a PoolTimeout");
    assert_eq!(e.interaction.as_deref(), Some("late"));
}

// A Twisted program may close the raw connection itself inside
// runWithConnection (Twisted's Connection proxies close() to it). The pool
// then lets go of a connection it opened: the figures must still add up,
// open == opened - closed.
#[test]
fn a_connection_the_job_closed_itself_is_still_counted_as_closed() {
    let reactor = FakeReactor::with_pool_mode(true, PoolMode::Manual);
    let pool = ConnectionPool::new(
        "sqlite3",
        args![":memory:"],
        kwargs! { "cp_min" => 1, "cp_max" => 1, "cp_reactor" => Arg::reactor(reactor.clone()) },
    )
    .expect("a pool");
    let d = pool.run_with_connection(|conn| {
        conn.raw().close()?;
        Ok(())
    });
    reactor.run_until_idle();
    assert!(fired(d).is_err(), "its commit failed");
    let st = pool.status();
    assert_eq!(
        st.open_connections as u64,
        st.connections_opened - st.connections_closed,
        "{st:?}"
    );
    // The next job reconnects; then closing the pool closes that one.
    let d = pool.run_query("SELECT 1", ());
    reactor.run_until_idle();
    assert!(fired(d).is_ok());
    let closed = pool.close();
    reactor.run_until_idle();
    assert!(closed.into_result().ok().is_some_and(|r| r.is_ok()));
    let st = pool.status();
    assert_eq!(
        (st.connections_opened, st.connections_closed),
        (2, 2),
        "{st:?}"
    );
}

/// Runs `left` jobs one after another, each submitted `gap_us(i)` after the
/// previous one fired, and fires with how many succeeded.
fn chain_jobs(
    reactor: &reactor::Reactor,
    pool: &ConnectionPool,
    left: u32,
    ok: u32,
) -> Deferred<u32> {
    use reactor::prelude::*;
    use std::time::Duration;
    if left == 0 {
        return deferred::succeed(ok);
    }
    let (r, p) = (reactor.clone(), pool.clone());
    pool.run_query("SELECT 1", ())
        .add_both(move |res: Result<Vec<adbapi::Row>, Failure>| {
            Ok::<u32, Failure>(ok + u32::from(res.is_ok()))
        })
        .add_callback_deferred(move |ok| {
            let (d, resolver) = Deferred::new();
            // Around the idle timeout, so the worker is often retiring as
            // the next job arrives.
            let gap = Duration::from_micros(u64::from(left % 7) * 60);
            let (r2, p2) = (r.clone(), p.clone());
            r.call_later(gap, move || {
                let _ = chain_jobs(&r2, &p2, left - 1, ok).add_both(move |res| {
                    let _ = resolver.resolve(res);
                    Ok::<(), Failure>(())
                });
            });
            d
        })
}

// cp_min 0 and cp_max 1 with an idle timeout: the only worker retires again
// and again, and a job arriving as it retires must still run (the pool is
// at max while the retiring worker is counted). Every job fires, each
// retired worker's connection is closed and counted once, and close() works.
#[test]
fn with_cp_min_0_every_job_runs_while_the_only_worker_keeps_retiring() {
    use std::time::Duration;
    let reactor = reactor::Reactor::new().unwrap();
    let pool = ConnectionPool::new(
        "sqlite3",
        args![":memory:"],
        kwargs! {
            "cp_min" => 0, "cp_max" => 1, "cp_idle_timeout" => 0.0002,
            "cp_reactor" => Arg::reactor(reactor.clone()),
        },
    )
    .unwrap();
    let (r, p) = (reactor.clone(), pool.clone());
    let ok = integration_tests::harness::run_chain(&reactor, Duration::from_secs(60), move || {
        let p2 = p.clone();
        chain_jobs(&r, &p, 200, 0)
            .add_callback_deferred(move |ok| p2.close().add_callback(move |()| ok))
    })
    .expect("every job fired and the pool closed");
    assert_eq!(ok, 200);
    let st = pool.status();
    assert_eq!(st.jobs_completed, 200, "{st:?}");
    assert_eq!(st.connections_opened, st.connections_closed, "{st:?}");
    assert_eq!((st.open_connections, st.workers), (0, 0), "{st:?}");
}

// Real threads: a queue timeout of about a millisecond on a one-worker pool
// kept busy, so timers and the worker race for the same jobs. Every job's
// Deferred fires once; a job that timed out never ran, one that succeeded
// ran exactly once; the counts add up and nothing is left queued.
#[test]
fn queue_timeouts_racing_a_real_worker_give_one_outcome_per_job() {
    use std::sync::atomic::AtomicU32;
    use std::time::Duration;
    const JOBS: usize = 200;
    let reactor = reactor::Reactor::new().unwrap();
    let pool = ConnectionPool::new(
        "sqlite3",
        args![":memory:"],
        kwargs! {
            "cp_min" => 1, "cp_max" => 1, "cp_queue_timeout" => 0.001,
            "cp_reactor" => Arg::reactor(reactor.clone()),
        },
    )
    .unwrap();
    let runs: Arc<Vec<AtomicU32>> = Arc::new((0..JOBS).map(|_| AtomicU32::new(0)).collect());
    let outcomes: Rc<RefCell<Vec<Vec<Outcome>>>> = Rc::new(RefCell::new(vec![Vec::new(); JOBS]));
    let (p, rn, oc) = (pool.clone(), Arc::clone(&runs), Rc::clone(&outcomes));
    integration_tests::harness::run_chain(&reactor, Duration::from_secs(60), move || {
        let ds: Vec<Deferred<()>> = (0..JOBS)
            .map(|i| {
                let rn = Arc::clone(&rn);
                let oc = Rc::clone(&oc);
                p.run_interaction(move |txn| {
                    rn[i].fetch_add(1, Ordering::SeqCst);
                    // A little work, so the queue behind it builds up.
                    txn.execute(
                        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c \
                         WHERE x < 2000) SELECT count(*) FROM c",
                        (),
                    )?;
                    Ok(())
                })
                .add_both(move |r: Result<(), Failure>| {
                    oc.borrow_mut()[i].push(match &r {
                        Ok(()) => Outcome::Completed,
                        Err(f) => classify(f),
                    });
                    Ok::<(), Failure>(())
                })
            })
            .collect();
        let p2 = p.clone();
        deferred::gather_results(ds, false).add_callback_deferred(move |_| p2.close())
    })
    .expect("every job fired and the pool closed");
    let outcomes = outcomes.borrow();
    let (mut done, mut timed_out) = (0u64, 0u64);
    for (i, o) in outcomes.iter().enumerate() {
        let ran = runs[i].load(Ordering::SeqCst);
        match o.as_slice() {
            [Outcome::Completed] => {
                assert_eq!(ran, 1, "job {i} succeeded: ran once");
                done += 1;
            }
            [Outcome::TimedOut] => {
                assert_eq!(ran, 0, "job {i} timed out: never ran");
                timed_out += 1;
            }
            other => panic!("job {i}: {other:?}, ran {ran} times"),
        }
    }
    let st = pool.status();
    assert_eq!(
        (st.jobs_completed, st.jobs_timed_out),
        (done, timed_out),
        "{st:?}"
    );
    assert_eq!(
        (st.jobs_failed, st.jobs_cancelled, st.queued),
        (0, 0, 0),
        "{st:?}"
    );
}

integration_tests::pg_test! {
    // The statement timeout is a session setting: every connection the pool
    // opens must get it, not only the first. A reconnect in a job and a
    // reopen for cp_max_lifetime both open a new session.
    fn postgres_statement_timeout_survives_reconnect_and_lifetime_reopen() {
        use std::sync::Mutex;
        use std::time::{Duration, Instant};
        let _server = integration_tests::pg::sharing_server();
        let reactor = reactor::Reactor::new().unwrap();
        let now = Arc::new(Mutex::new(Instant::now()));
        let n = Arc::clone(&now);
        let pool = ConnectionPool::builder("psycopg2")
            .arg(integration_tests::pg::url())
            .max(1)
            .statement_timeout(Some(0.25))
            .max_lifetime(Some(60.0))
            .life_clock(Arc::new(move || *n.lock().unwrap()))
            .reactor(reactor.clone())
            .build()
            .unwrap();
        let show = "SELECT current_setting('statement_timeout'), pg_backend_pid()";
        let (p, later) = (pool.clone(), Arc::clone(&now));
        let seen = integration_tests::harness::run_chain(&reactor, Duration::from_secs(30), move || {
            let (p2, p3) = (p.clone(), p.clone());
            p.run_query(show, ())
                .add_callback_deferred(move |first| {
                    p2.run_with_connection(move |conn| {
                        conn.reconnect()?;
                        let rows = conn.cursor()?.execute(show, ())?.fetchall()?;
                        Ok(vec![first[0].clone(), rows[0].clone()])
                    })
                })
                .add_callback_deferred(move |mut seen| {
                    // Past the lifetime: the next job reopens first.
                    *later.lock().unwrap() += Duration::from_secs(120);
                    p3.run_query(show, ()).add_callback(move |rows| {
                        seen.push(rows[0].clone());
                        seen
                    })
                })
        })
        .unwrap();
        let pids: Vec<i64> = seen.iter().map(|r| r.get::<i64>(1).unwrap()).collect();
        assert!(pids[0] != pids[1] && pids[1] != pids[2], "three sessions: {pids:?}");
        for r in &seen {
            assert_eq!(r.get::<String>(0).unwrap(), "250ms");
        }
    }
}
