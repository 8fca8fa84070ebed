//! The counted job path (an unnamed job of a pool with `cp_stats` on and
//! neither `cp_slow_job_threshold` nor `cp_queue_timeout`): each job is
//! counted in the category its Deferred shows, whatever moment a cancel
//! arrives at, and the totals add up to the jobs submitted once every
//! Deferred has fired.
//!
//! The deterministic tests here aim at one moment each; the model
//! ([`counted_path_model`]) drives random programs of jobs, outcomes,
//! cancels at every moment a loop thread can see (queued, before the
//! connection is attached, mid-interaction, after the function returned and
//! before the Deferred fired, after it fired), closes and refusals, on a
//! fake reactor whose pool runs jobs by hand, so every interleaving is the
//! program's and a failing case replays exactly.

use adbapi::{args, kwargs, Arg, ConnectionPool, PoolStatus};
use deferred::CancelledError;
use integration_tests::harness::fake_wait;
use reactor::testing::{FakeReactor, PoolMode};

fn manual_pool(reactor: &FakeReactor, extra: Vec<(String, Arg)>) -> ConnectionPool {
    let mut kw = kwargs! { "cp_max" => 1, "cp_reactor" => Arg::reactor(reactor.clone()) };
    kw.extend(extra);
    ConnectionPool::new("sqlite3", args![":memory:"], kw).expect("a pool")
}

fn totals(st: &PoolStatus) -> (u64, u64, u64, u64) {
    (
        st.jobs_completed,
        st.jobs_failed,
        st.jobs_cancelled,
        st.jobs_timed_out,
    )
}

/// A job its closing pool dropped unrun has its `PoolStopped` on the way to
/// the loop thread; a cancel arriving before it is delivered must not turn
/// the Deferred into a `CancelledError` while the job is counted as failed.
#[test]
fn a_dropped_job_cancelled_before_its_failure_arrives_is_counted_as_its_deferred_shows() {
    let reactor = FakeReactor::with_pool_mode(true, PoolMode::Manual);
    let pool = manual_pool(&reactor, vec![]);
    let d = pool.run_query("SELECT 1", ());
    let closed = pool.close();
    // The backlog was dropped by the close, its failure is queued: cancel now.
    d.cancel();
    let f = fake_wait(&reactor, d).expect_err("dropped");
    fake_wait(&reactor, closed).expect("closed");
    let st = pool.status();
    let want = if f.check::<CancelledError>().is_some() {
        (0, 0, 1, 0)
    } else {
        (0, 1, 0, 0)
    };
    assert_eq!(totals(&st), want, "the Deferred shows {f}: {st:?}");
    // The outcome was decided when the pool dropped it: the cancel is declined.
    assert!(f.check::<reactor::PoolStopped>().is_some(), "{f}");
    assert_eq!(st.queued, 0, "{st:?}");
}

/// A closed pool refuses a job with `PoolClosed` on a later turn and counts
/// it as failed at once; a cancel before that turn must not make the
/// Deferred show `CancelledError` instead.
#[test]
fn a_refused_job_cancelled_before_its_refusal_arrives_is_counted_as_its_deferred_shows() {
    let reactor = FakeReactor::with_pool_mode(true, PoolMode::Manual);
    let pool = manual_pool(&reactor, vec![]);
    fake_wait(&reactor, pool.close()).expect("closed");
    let d = pool.run_query("SELECT 1", ());
    d.cancel();
    let f = fake_wait(&reactor, d).expect_err("refused");
    let st = pool.status();
    let want = if f.check::<CancelledError>().is_some() {
        (0, 0, 1, 0)
    } else {
        (0, 1, 0, 0)
    };
    assert_eq!(totals(&st), want, "the Deferred shows {f}: {st:?}");
    assert!(f.check::<adbapi::PoolClosed>().is_some(), "{f}");
}
