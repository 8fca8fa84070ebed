//! Named interactions (Synapse's `runInteraction(desc, func)`) and the
//! slow-job log (`cp_slow_job_threshold`): the name reaches the failure of
//! the job's Deferred (with the driver's error kept, on SQLite, PostgreSQL
//! and MariaDB), the WARN of a slow job, and a refused job on a closed pool;
//! the Twisted-shaped `run_interaction(f)` is unchanged. The slow-job tests
//! use thresholds a job cannot miss (0, a job that sleeps past it) or
//! cannot reach (an hour), so they do not depend on the machine's speed.

use std::time::Duration;

use adbapi::dbapi::DbError;
use adbapi::{args, kwargs, Arg, ConnectionPool, PoolClosed, PoolError};
use deferred::Failure;
use integration_tests::harness::{fake_wait, run_chain, TIMEOUT};
use integration_tests::logs::LogCapture;
use integration_tests::pools::{inline_sqlite_pool, op};
use reactor::testing::FakeReactor;
use reactor::Reactor;

#[test]
fn a_named_jobs_failure_says_which_interaction_failed_and_keeps_the_error() {
    let (reactor, pool) = inline_sqlite_pool(kwargs! { "cp_name" => "app" });
    let f = fake_wait(
        &reactor,
        pool.named("get_user").run_query("SELECT * FROM users", ()),
    )
    .expect_err("no table");
    let msg = f.to_string();
    assert!(
        msg.contains("\"get_user\"") && msg.contains("\"app\""),
        "{msg}"
    );
    assert!(
        f.check::<DbError>().is_some(),
        "the driver's error is kept: {f:?}"
    );
    // Each entry point carries the name.
    let n = pool.named("writer");
    assert_eq!(n.name(), "writer");
    let f = fake_wait(&reactor, n.run_operation("INSERT INTO nope VALUES (1)", ())).unwrap_err();
    assert!(f.to_string().contains("\"writer\""), "{f}");
    let f = fake_wait(
        &reactor,
        n.run_with_connection(|_c| -> Result<(), Failure> { Err(Failure::msg("mine")) }),
    )
    .unwrap_err();
    assert!(
        f.to_string().contains("\"writer\"") && f.to_string().contains("mine"),
        "{f}"
    );
    let v = fake_wait(
        &reactor,
        n.run_interaction(|t| Ok(t.execute("SELECT 41 + 1", ())?.fetchall()?)),
    )
    .expect("ok");
    assert_eq!(v[0].get::<i64>(0).unwrap(), 42);
    // The unnamed path is unchanged: no context added.
    let f = fake_wait(&reactor, pool.run_query("SELECT * FROM users", ())).unwrap_err();
    assert!(!f.to_string().contains("interaction"), "{f}");
}

#[test]
fn a_named_job_on_a_closed_pool_is_refused_with_its_name() {
    let (reactor, pool) = inline_sqlite_pool(kwargs! {});
    fake_wait(&reactor, pool.close()).expect("closed");
    let f = fake_wait(&reactor, pool.named("late").run_query("SELECT 1", ())).unwrap_err();
    assert!(f.check::<PoolClosed>().is_some(), "{f}");
    assert!(f.to_string().contains("\"late\""), "{f}");
}

#[test]
fn a_slow_job_is_logged_at_warn_with_its_name_and_times() {
    let logs = LogCapture::start();
    let (reactor, pool) = inline_sqlite_pool(kwargs! {
        "cp_name" => "slowpool", "cp_slow_job_threshold" => 0.02,
    });
    op(&reactor, &pool, "CREATE TABLE t (x INTEGER)");
    fake_wait(
        &reactor,
        pool.named("sleepy").run_interaction(|_t| {
            std::thread::sleep(Duration::from_millis(40));
            Ok(())
        }),
    )
    .expect("ran");
    let warns: Vec<_> = logs
        .events()
        .into_iter()
        .filter(|e| e.level == tracing::Level::WARN && e.message.contains("slow database job"))
        .collect();
    assert_eq!(warns.len(), 1, "only the sleeping job: {warns:?}");
    let w = &warns[0];
    assert_eq!(w.field("interaction"), Some("\"sleepy\""), "{w:?}");
    assert_eq!(w.field("pool"), Some("\"slowpool\""), "{w:?}");
    let run_ms: f64 = w
        .field("run_ms")
        .expect("run_ms")
        .parse()
        .expect("a number");
    assert!(run_ms >= 40.0, "{w:?}");
    assert!(w.field("wait_ms").is_some());
}

#[test]
fn a_zero_threshold_logs_every_job_and_none_logs_none() {
    let logs = LogCapture::start();
    let (reactor, pool) = inline_sqlite_pool(kwargs! { "cp_slow_job_threshold" => 0 });
    op(&reactor, &pool, "CREATE TABLE t (x INTEGER)");
    op(&reactor, &pool, "INSERT INTO t VALUES (1)");
    let slow = |logs: &LogCapture| {
        logs.events()
            .iter()
            .filter(|e| e.message.contains("slow database job"))
            .count()
    };
    assert_eq!(slow(&logs), 2);
    let (reactor, pool) = inline_sqlite_pool(kwargs! { "cp_slow_job_threshold" => 3600 });
    op(&reactor, &pool, "CREATE TABLE t (x INTEGER)");
    let (reactor2, pool2) = inline_sqlite_pool(kwargs! {});
    op(&reactor2, &pool2, "CREATE TABLE t (x INTEGER)");
    assert_eq!(slow(&logs), 2, "no new slow-job log");
}

#[test]
fn invalid_slow_job_thresholds_are_refused_naming_the_option() {
    let reactor = FakeReactor::new(false);
    for bad in [
        Arg::from(-1),
        Arg::from(f64::NAN),
        Arg::from(f64::NEG_INFINITY),
        Arg::from(true),
    ] {
        let shown = format!("{bad:?}");
        match ConnectionPool::new(
            "sqlite3",
            args![":memory:"],
            kwargs! { "cp_slow_job_threshold" => bad, "cp_reactor" => Arg::reactor(reactor.clone()) },
        ) {
            Err(PoolError::InvalidOption { option, .. }) => {
                assert_eq!(option, "cp_slow_job_threshold", "{shown}")
            }
            other => panic!("{shown}: {other:?}"),
        }
    }
    let e = ConnectionPool::new(
        "sqlite3",
        args![":memory:"],
        kwargs! { "cp_slow_jobs" => 1, "cp_reactor" => Arg::reactor(reactor) },
    )
    .unwrap_err();
    let msg = e.to_string();
    for name in ["cp_stats", "cp_slow_job_threshold", "cp_queue_timeout"] {
        assert!(msg.contains(name), "{msg}");
        assert!(adbapi::CP_ARGS.contains(&name));
    }
}

/// A named failing query on a real server: the driver's error type and the
/// name both reach the caller.
fn named_failure_on(reactor: &Reactor, pool: ConnectionPool) {
    let f = run_chain(reactor, TIMEOUT, move || {
        pool.named("load_profile")
            .run_query("SELECT * FROM obs_no_such_table", ())
    })
    .unwrap_err();
    assert!(
        f.check::<adbapi::dbapi::ProgrammingError>().is_some(),
        "{f:?}"
    );
    assert!(f.to_string().contains("\"load_profile\""), "{f}");
}

#[test]
#[cfg_attr(
    not(pg_available),
    ignore = "SKIPPED: no PostgreSQL server; set ADBAPI_PG_URL (eval \"$(scripts/pg-test-server start)\")"
)]
fn a_named_failure_on_postgresql() {
    let _server = integration_tests::pg::sharing_server();
    let reactor = Reactor::new().unwrap();
    let pool = integration_tests::pg::pool_on(&reactor, kwargs! { "cp_max" => 1 });
    named_failure_on(&reactor, pool);
}

#[test]
#[cfg_attr(
    not(mysql_available),
    ignore = "SKIPPED: no MySQL/MariaDB server; set ADBAPI_MYSQL_URL (eval \"$(scripts/mysql-test-server start)\")"
)]
fn a_named_failure_on_mariadb() {
    let backend = integration_tests::mysql::MysqlBackend::new();
    let reactor = Reactor::new().unwrap();
    let pool = ConnectionPool::new(
        "pymysql",
        args![backend.url()],
        kwargs! { "cp_max" => 1, "cp_reactor" => Arg::reactor(reactor.clone()) },
    )
    .expect("a pool");
    named_failure_on(&reactor, pool);
}
