//! Losing a connection and reconnecting (Twisted's `cp_reconnect` and
//! `cp_good_sql`, `Connection.rollback`, `Connection.reconnect`,
//! `Transaction.reopen` and `ConnectionLost`): the `good_sql` probe after a
//! failed job, a dead connection without `cp_reconnect`, a cursor that
//! cannot be opened even after reconnecting, a lost connection surfacing
//! with the driver's error (twisted/twisted#4404), and a reconnect whose
//! connect fails.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use adbapi::dbapi::{DbConnection, OperationalError, ProgrammingError};
use adbapi::{args, kwargs, Arg, ConnectionLost, ConnectionPool, Value};
use deferred::Failure;
use integration_tests::fakes::{register_fake_module, register_spy_module};
use integration_tests::harness::{fake_wait, run_chain, TempDir, TIMEOUT};
use integration_tests::logs::{render, LogCapture, Logged};
use integration_tests::pools::{db_error, inline_sqlite_pool, op};
use reactor::testing::FakeReactor;
use reactor::Reactor;

/// With `cp_reconnect`, a failed job's rollback is followed by the
/// `cp_good_sql` probe and a commit (Twisted's `Connection.rollback`); without it, only the
/// rollback; with `cp_good_sql=None` no probe query (documented difference:
/// Twisted would execute `None`); a successful job gets no probe.
#[test]
fn a_failed_job_with_reconnect_runs_the_good_sql_probe() {
    let run = |extra: Vec<(String, Arg)>| {
        let (module, state) = register_spy_module("probe");
        let reactor = FakeReactor::new(true);
        let mut kw = kwargs! { "cp_max" => 1, "cp_reactor" => Arg::reactor(reactor.clone()) };
        kw.extend(extra);
        let pool = ConnectionPool::new(&module, args![":memory:"], kw).expect("a pool");
        op(&reactor, &pool, "create table t (x integer)");
        state.clear_calls();
        fake_wait(&reactor, pool.run_query("select * from NOTABLE", ())).expect_err("bad SQL");
        let failed = state.ops();
        state.clear_calls();
        fake_wait(&reactor, pool.run_query("select x from t", ())).expect("good SQL");
        (failed, state.ops())
    };
    let bad = ["cursor", "execute select * from NOTABLE"];
    let good = ["cursor", "execute select x from t", "commit"];

    let (failed, ok) = run(kwargs! { "cp_reconnect" => true, "cp_good_sql" => "select 42" });
    assert_eq!(
        failed,
        [
            &bad[..],
            &["rollback", "cursor", "execute select 42", "commit"]
        ]
        .concat()
    );
    assert_eq!(ok, good);

    let (failed, ok) = run(kwargs! {});
    assert_eq!(failed, [&bad[..], &["rollback"]].concat());
    assert_eq!(ok, good);

    let (failed, ok) = run(kwargs! { "cp_reconnect" => true, "cp_good_sql" => Value::Null });
    assert_eq!(failed, [&bad[..], &["rollback", "commit"]].concat());
    assert_eq!(ok, good);
}

/// With `cp_reconnect=False`, a connection whose cursor cannot be opened
/// stays in the map: every later job on that thread fails the same way,
/// and no rollback is attempted: as in Twisted, whose `_runInteraction`
/// makes the transaction (and so the cursor) before the `try` that rolls
/// back, and drops a connection only when `cp_reconnect` is set.
#[test]
fn a_dead_connection_without_reconnect_fails_every_later_job() {
    let logs = LogCapture::start();
    let (reactor, pool) = inline_sqlite_pool(kwargs! {});
    op(&reactor, &pool, "create table t (x integer)");
    let conns = pool.connections();
    assert_eq!(conns.len(), 1);
    let dead = conns[0].1.clone();
    dead.close().expect("kill it");
    for _ in 0..2 {
        let f = fake_wait(&reactor, pool.run_query("select x from t", ())).expect_err("dead");
        assert!(f.check::<ProgrammingError>().is_some(), "{f}");
        assert_eq!(
            db_error(&f).message(),
            "Cannot operate on a closed database."
        );
        let conns = pool.connections();
        assert_eq!(conns.len(), 1);
        assert!(
            DbConnection::ptr_eq(&conns[0].1, &dead),
            "still the dead one"
        );
    }
    // A rollback on the closed connection would have logged "Rollback failed".
    assert!(logs.errors().is_empty(), "{}", render(&logs.errors()));
}

/// With `cp_reconnect`, a cursor that cannot be opened even on a new
/// connection fails the job with the driver's error, without a rollback
/// (Twisted's `Transaction.reopen` logs `Cursor creation failed`,
/// reconnects and tries once more; the second failure escapes before
/// `_runInteraction`'s `try`): one `Cursor creation failed` logged, the
/// first connection replaced.
#[test]
fn a_cursor_failing_twice_with_reconnect_fails_the_job_without_rollback() {
    let logs = LogCapture::start();
    let (module, state) = register_fake_module("cursor-twice", true);
    let reactor = FakeReactor::new(true);
    let pool = ConnectionPool::new(
        &module,
        args![],
        kwargs! { "cp_reconnect" => true, "cp_reactor" => Arg::reactor(reactor.clone()) },
    )
    .expect("a pool");
    state.cursor_failures.store(2, Ordering::SeqCst);
    let f = fake_wait(&reactor, pool.run_query("select 1", ())).expect_err("no cursor");
    assert_eq!(
        f.check::<integration_tests::fakes::RuntimeError>(),
        Some(&integration_tests::fakes::RuntimeError("problem!".into())),
        "{f}"
    );
    assert_eq!(
        state.ops(),
        ["connect", "cursor", "close", "connect", "cursor"],
        "reconnected once, no rollback, no query"
    );
    assert_eq!(
        logs.count("Cursor creation failed"),
        1,
        "{}",
        render(&logs.events())
    );
    assert_eq!(logs.errors().len(), 1, "{}", render(&logs.errors()));
    assert_eq!(pool.connections().len(), 1, "the new connection stays");
    // The next job uses it.
    fake_wait(&reactor, pool.run_query("select 1", ())).expect("works now");
    assert_eq!(state.count("connect"), 2);
}

/// With `cp_reconnect`, a job whose rollback finds the connection lost
/// fails with `ConnectionLost`, the driver's original error reachable
/// through it (documented difference: Twisted hands the caller the original
/// error and only logs `ConnectionLost`, twisted/twisted#4404). The log has
/// Twisted's order, and the next job reconnects.
#[test]
fn connection_lost_surfaces_with_the_original_error() {
    let logs = LogCapture::start();
    let (module, state) = register_fake_module("lost", true);
    let reactor = FakeReactor::new(true);
    let pool = ConnectionPool::new(
        &module,
        args![],
        kwargs! {
            "cp_reconnect" => true,
            "cp_noisy" => true,
            "cp_reactor" => Arg::reactor(reactor.clone()),
        },
    )
    .expect("a pool");
    state.fail_execute.store(true, Ordering::SeqCst);
    state.fail_rollback.store(true, Ordering::SeqCst);

    let f = fake_wait(&reactor, pool.run_query("select 1", ())).expect_err("lost");
    assert!(f.check::<ConnectionLost>().is_some(), "{f}");
    let original = f
        .check::<OperationalError>()
        .unwrap_or_else(|| panic!("the original error is reachable: {f}"));
    assert!(
        original
            .to_string()
            .contains("server closed the connection unexpectedly"),
        "{original}"
    );
    assert!(db_error(&f).is_connection_lost());
    assert!(pool.connections().is_empty(), "dropped");
    assert_eq!(state.open_connections(), 0, "closed");

    let relevant: Vec<Logged> = logs
        .events()
        .into_iter()
        .filter(|e| {
            e.message == "Rollback failed"
                || e.message == "Connection lost."
                || e.message.starts_with("adbapi closing")
        })
        .collect();
    let shape: Vec<(&str, bool)> = relevant
        .iter()
        .map(|e| (e.message.as_str(), e.is_error()))
        .collect();
    let closing = format!("adbapi closing: {module}");
    assert_eq!(
        shape,
        [
            ("Rollback failed", true),
            (closing.as_str(), false),
            ("Connection lost.", false),
            ("Rollback failed", true),
        ],
        "{}",
        render(&logs.events())
    );
    assert!(relevant[0]
        .failure()
        .is_some_and(|f| f.contains("problem!")));
    assert!(relevant[3]
        .failure()
        .is_some_and(|f| f.contains("database connection lost")));

    // A rollback that works but a probe that fails: lost too.
    state.fail_rollback.store(false, Ordering::SeqCst);
    let f = fake_wait(&reactor, pool.run_query("select 1", ())).expect_err("lost");
    assert!(f.check::<ConnectionLost>().is_some(), "{f}");
    assert_eq!(state.count("connect"), 2, "a new connection for this job");
    assert!(state.ops().contains(&"execute select 1".to_owned()));

    // The next job reconnects and works.
    state.fail_execute.store(false, Ordering::SeqCst);
    fake_wait(&reactor, pool.run_query("select 1", ())).expect("reconnected");
    assert_eq!(state.count("connect"), 3);
    assert_eq!(state.open_connections(), 1);
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
    let r = run_chain(&reactor, TIMEOUT, move || {
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
