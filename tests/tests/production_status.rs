//! `pool.status()`: the counts and timings a dashboard needs (workers, busy,
//! idle, queued, open connections; connections opened, closed and failed;
//! jobs completed, failed, cancelled and timed out; wait and run
//! distributions), on SQLite, PostgreSQL and MariaDB (where the driver opens
//! and closes the connections counted), during shutdown, and with
//! `cp_stats` off. Counts only: no assertion depends on how long anything
//! took.

use adbapi::{args, kwargs, Arg, ConnectionPool, PoolStatus};
use deferred::Failure;
use integration_tests::harness::{fake_wait, run_chain, TempDir, TIMEOUT};
use integration_tests::pools::{inline_sqlite_pool, op};
use reactor::testing::{FakeReactor, PoolMode};
use reactor::Reactor;

#[test]
fn a_new_pool_reports_its_size_and_nothing_done() {
    let (_reactor, pool) = inline_sqlite_pool(kwargs! {});
    let st = pool.status();
    assert_eq!(st.name, "adbapi-sqlite3");
    assert_eq!((st.min, st.max), (1, 1));
    assert_eq!(
        (
            st.jobs_completed,
            st.jobs_failed,
            st.jobs_cancelled,
            st.jobs_timed_out
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(
        (st.connections_opened, st.open_connections, st.queued),
        (0, 0, 0)
    );
    assert_eq!((st.wait.count, st.run.count), (0, 0));
}

#[test]
fn jobs_are_counted_by_outcome_and_timed() {
    let (reactor, pool) = inline_sqlite_pool(kwargs! { "cp_name" => "dash" });
    op(&reactor, &pool, "CREATE TABLE t (x INTEGER)");
    for i in 0..5 {
        op(&reactor, &pool, &format!("INSERT INTO t VALUES ({i})"));
    }
    fake_wait(&reactor, pool.run_query("SELECT * FROM missing", ())).expect_err("no table");
    fake_wait(
        &reactor,
        pool.run_interaction(|_txn| -> Result<(), Failure> { panic!("boom") }),
    )
    .expect_err("a panic fails the job");
    let st = pool.status();
    assert_eq!(st.name, "dash");
    assert_eq!((st.jobs_completed, st.jobs_failed), (6, 2));
    assert_eq!(
        (st.wait.count, st.run.count),
        (8, 8),
        "every job that ran is timed"
    );
    assert!(st.run.max >= st.run.p99 && st.run.p99 >= st.run.p90 && st.run.p90 >= st.run.p50);
    assert!(st.run.total >= st.run.max);
    // The panic discarded the connection; the next job would open another.
    assert_eq!(
        (
            st.connections_opened,
            st.connections_closed,
            st.open_connections
        ),
        (1, 1, 0)
    );
}

#[test]
fn a_cancelled_queued_job_is_counted_and_leaves_the_queue() {
    let (reactor, pool) = manual_one_worker_pool();
    let a = pool.run_query("SELECT 1", ());
    let b = pool.run_query("SELECT 2", ());
    assert_eq!(pool.status().queued, 2);
    b.cancel();
    let st = pool.status();
    assert_eq!((st.queued, st.jobs_cancelled), (1, 1));
    reactor.run_jobs();
    fake_wait(&reactor, a).expect("the other job");
    let st = pool.status();
    assert_eq!((st.queued, st.jobs_completed, st.wait.count), (0, 1, 1));
}

#[test]
fn a_failed_connect_is_counted() {
    let dir = TempDir::new("obs-status");
    let (reactor, pool) =
        inline_sqlite_pool(kwargs! { "database" => dir.file("no/such/dir/x.db") });
    fake_wait(&reactor, pool.run_query("SELECT 1", ())).expect_err("cannot open");
    let st = pool.status();
    assert_eq!(
        (st.connections_failed, st.connections_opened, st.jobs_failed),
        (1, 0, 1)
    );
}

#[test]
fn an_openfun_failure_counts_as_a_failed_open_and_a_close() {
    let (reactor, pool) = inline_sqlite_pool(kwargs! {
        "cp_openfun" => Arg::openfun(|_| Err(Failure::msg("no")))
    });
    fake_wait(&reactor, pool.run_query("SELECT 1", ())).expect_err("openfun fails");
    let st = pool.status();
    assert_eq!(
        (
            st.connections_opened,
            st.connections_failed,
            st.connections_closed,
            st.open_connections
        ),
        (1, 1, 1, 0)
    );
}

#[test]
fn with_cp_stats_off_jobs_are_not_counted_but_connections_are() {
    let (reactor, pool) = inline_sqlite_pool(kwargs! { "cp_stats" => false });
    op(&reactor, &pool, "CREATE TABLE t (x INTEGER)");
    let st = pool.status();
    assert_eq!((st.jobs_completed, st.wait.count, st.run.count), (0, 0, 0));
    assert_eq!((st.connections_opened, st.open_connections), (1, 1));
    let built = ConnectionPool::builder("sqlite3")
        .arg(":memory:")
        .stats(false)
        .reactor(reactor.clone())
        .build()
        .expect("a pool");
    assert_eq!(built.status().jobs_completed, 0);
}

/// Runs a few jobs on `pool` (one fails), closes it, and checks the
/// status before, during and after the close, on a real reactor.
fn status_through_close(reactor: &Reactor, pool: ConnectionPool, bad_sql: &'static str) {
    let p = pool.clone();
    let (before, during, after) = run_chain(reactor, TIMEOUT, move || {
        let p2 = p.clone();
        let jobs: Vec<_> = (0..6).map(|_| p.run_query("SELECT 1", ())).collect();
        deferred::gather_results(jobs, true)
            .add_callback_deferred(move |_| {
                let p3 = p2.clone();
                p2.named("bad").run_query(bad_sql, ()).add_both(move |r| {
                    assert!(r.is_err());
                    let before = p3.status();
                    let closing = p3.close();
                    let during = p3.status();
                    Ok((before, during, closing, p3))
                })
            })
            .add_callback_deferred(|(before, during, closing, p)| {
                closing.add_callback(move |()| (before, during, p.status()))
            })
    })
    .expect("the chain");
    let check_counts = |st: &PoolStatus| {
        assert_eq!((st.jobs_completed, st.jobs_failed), (6, 1), "{st:?}");
        assert_eq!(st.run.count, 7, "{st:?}");
    };
    check_counts(&before);
    check_counts(&during);
    check_counts(&after);
    assert!(before.running && !during.running && !after.running);
    assert!(before.open_connections >= 1 && before.connections_opened >= 1);
    assert_eq!(after.open_connections, 0, "{after:?}");
    assert_eq!(
        after.connections_opened, after.connections_closed,
        "{after:?}"
    );
    assert_eq!((after.queued, after.busy), (0, 0));
    assert_eq!(after.connections_failed, 0);
}

#[test]
fn status_before_during_and_after_close_on_sqlite() {
    let reactor = Reactor::new().unwrap();
    let dir = TempDir::new("obs-status-close");
    let pool = ConnectionPool::new(
        "sqlite3",
        args![dir.file("s.db")],
        kwargs! { "cp_min" => 1, "cp_max" => 2, "cp_reactor" => Arg::reactor(reactor.clone()) },
    )
    .expect("a pool");
    status_through_close(&reactor, pool, "SELECT * FROM missing");
}

#[test]
#[cfg_attr(
    not(pg_available),
    ignore = "SKIPPED: no PostgreSQL server; set ADBAPI_PG_URL (eval \"$(scripts/pg-test-server start)\")"
)]
fn status_before_during_and_after_close_on_postgresql() {
    let _server = integration_tests::pg::sharing_server();
    let reactor = Reactor::new().unwrap();
    let pool = integration_tests::pg::pool_on(&reactor, kwargs! { "cp_min" => 1, "cp_max" => 2 });
    status_through_close(&reactor, pool, "SELECT * FROM obs_missing_table");
}

#[test]
#[cfg_attr(
    not(mysql_available),
    ignore = "SKIPPED: no MySQL/MariaDB server; set ADBAPI_MYSQL_URL (eval \"$(scripts/mysql-test-server start)\")"
)]
fn status_before_during_and_after_close_on_mariadb() {
    let backend = integration_tests::mysql::MysqlBackend::new();
    let reactor = Reactor::new().unwrap();
    let pool = ConnectionPool::new(
        "pymysql",
        args![backend.url()],
        kwargs! { "cp_min" => 1, "cp_max" => 2, "cp_reactor" => Arg::reactor(reactor.clone()) },
    )
    .expect("a pool");
    status_through_close(&reactor, pool, "SELECT * FROM obs_missing_table");
}

/// Observing a job must not keep its pool alive: dropping the last handle
/// with an observed job (stats, a name, a queue timeout) still queued closes
/// the pool at once, as it does on Twisted's plain path (its shutdown
/// trigger goes), and the job's Deferred still fires once (a Manual pool's
/// close drops its queued jobs: `PoolStopped`). An early version held a
/// pool handle in every job's Deferred, so the pool stayed open until its
/// jobs had fired.
#[test]
fn an_observed_job_in_flight_does_not_keep_a_dropped_pool_open() {
    let reactor = FakeReactor::with_pool_mode(false, PoolMode::Manual);
    let pool = ConnectionPool::new(
        "sqlite3",
        args![":memory:"],
        kwargs! {
            "cp_max" => 1, "cp_queue_timeout" => 60,
            "cp_reactor" => Arg::reactor(reactor.clone()),
        },
    )
    .expect("a pool");
    reactor.fire_startup();
    let triggers = reactor.triggers().len();
    assert!(pool.shutdown_id().is_some(), "started");
    let d = pool.named("in_flight").run_query("SELECT 7", ());
    drop(pool); // the last handle
    assert_eq!(
        reactor.triggers().len(),
        triggers - 1,
        "the dropped pool's shutdown trigger is still registered: it did not close"
    );
    reactor.run_jobs();
    let f = fake_wait(&reactor, d).expect_err("dropped by the closing Manual pool");
    assert!(f.check::<reactor::PoolStopped>().is_some(), "{f}");
    assert!(f.to_string().contains("\"in_flight\""), "{f}");
}

/// Jobs a closing pool drops before any worker took them fail with
/// `PoolStopped` and are counted as failed, leaving the queue: the
/// counting path must see jobs that never reach a worker.
#[test]
fn queued_jobs_a_closing_pool_drops_are_counted_as_failed() {
    let (reactor, pool) = manual_one_worker_pool();
    let a = pool.run_query("SELECT 1", ());
    let b = pool.run_operation("SELECT 2", ());
    assert_eq!(pool.status().queued, 2);
    let closed = pool.close();
    for f in [
        fake_wait(&reactor, a).expect_err("dropped"),
        fake_wait(&reactor, b).expect_err("dropped"),
    ] {
        assert!(f.check::<reactor::PoolStopped>().is_some(), "{f}");
    }
    fake_wait(&reactor, closed).expect("closed");
    let st = pool.status();
    assert_eq!(
        (
            st.queued,
            st.jobs_completed,
            st.jobs_failed,
            st.jobs_cancelled,
            st.wait.count
        ),
        (0, 0, 2, 0, 0),
        "{st:?}"
    );
}

/// A cancel that takes while the job runs fails its Deferred with
/// `CancelledError` at once; whatever the job then returns (here a failure
/// of its own) is dropped, so the job is counted as cancelled, not failed —
/// as its Deferred shows.
#[test]
fn a_job_cancelled_while_running_is_counted_as_cancelled_whatever_it_returns() {
    use std::sync::mpsc;
    let reactor = Reactor::new().unwrap();
    let pool = ConnectionPool::new(
        "sqlite3",
        args![":memory:"],
        kwargs! { "cp_min" => 1, "cp_max" => 1, "cp_reactor" => Arg::reactor(reactor.clone()) },
    )
    .expect("a pool");
    let p = pool.clone();
    let after = run_chain(&reactor, TIMEOUT, move || {
        let (started_tx, started_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let d = p.run_interaction(move |_txn| -> Result<(), Failure> {
            started_tx.send(()).expect("the test waits");
            go_rx
                .recv_timeout(TIMEOUT)
                .expect("the test lets the job go");
            Err(Failure::msg("the job's own failure"))
        });
        started_rx.recv_timeout(TIMEOUT).expect("the job runs");
        d.cancel();
        let cancelled = d.into_result().expect("fired at once by the cancel");
        let f = cancelled.expect_err("cancelled");
        assert!(f.check::<deferred::CancelledError>().is_some(), "{f}");
        go_tx.send(()).expect("the job waits");
        // One worker: this job runs once the cancelled one has finished.
        p.run_query("SELECT 1", ())
    });
    after.expect("the next job");
    let st = pool.status();
    assert_eq!(
        (st.jobs_completed, st.jobs_failed, st.jobs_cancelled),
        (1, 0, 1),
        "{st:?}"
    );
    assert_eq!(st.run.count, 2, "both jobs ran: {st:?}");
}

/// The recorded times are real durations: a job that sleeps 30 ms on its
/// worker is recorded as running at least that long, and one that waited
/// behind it as waiting at least that long (lower bounds only, so a slow
/// machine cannot fail it; a clock read wrongly scaled would).
#[test]
fn recorded_wait_and_run_times_are_at_least_what_happened() {
    use std::time::Duration;
    let reactor = Reactor::new().unwrap();
    let pool = ConnectionPool::new(
        "sqlite3",
        args![":memory:"],
        kwargs! { "cp_min" => 1, "cp_max" => 1, "cp_reactor" => Arg::reactor(reactor.clone()) },
    )
    .expect("a pool");
    let p = pool.clone();
    run_chain(&reactor, TIMEOUT, move || {
        let slow = p.run_interaction(|_txn| -> Result<(), Failure> {
            std::thread::sleep(Duration::from_millis(30));
            Ok(())
        });
        let behind = p.run_query("SELECT 1", ());
        deferred::gather_results(vec![slow.add_callback(|()| Vec::new()), behind], true)
    })
    .expect("both jobs");
    let st = pool.status();
    assert_eq!((st.run.count, st.wait.count), (2, 2), "{st:?}");
    assert!(st.run.max >= Duration::from_millis(30), "{st:?}");
    assert!(st.wait.max >= Duration::from_millis(25), "{st:?}");
    assert!(st.run.total >= Duration::from_millis(30), "{st:?}");
}

/// A one-worker in-memory SQLite pool on a fake reactor whose jobs run only
/// when the test runs them, so they stay queued until then.
fn manual_one_worker_pool() -> (FakeReactor, ConnectionPool) {
    let reactor = FakeReactor::with_pool_mode(true, PoolMode::Manual);
    let pool = ConnectionPool::new(
        "sqlite3",
        args![":memory:"],
        kwargs! { "cp_max" => 1, "cp_reactor" => Arg::reactor(reactor.clone()) },
    )
    .expect("a pool");
    (reactor, pool)
}
