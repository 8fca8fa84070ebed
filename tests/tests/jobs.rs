//! Running work through the pool: what `run_query`, `run_operation`,
//! `run_interaction` and `run_with_connection` (Twisted's `runQuery`,
//! `runOperation`, `runInteraction` and `runWithConnection`, over
//! `_runInteraction` and `_runWithConnection`) fire with, when they commit
//! or roll back, and what a panic in user code becomes.

use std::sync::atomic::Ordering;

use adbapi::dbapi::OperationalError;
use adbapi::{args, kwargs, Arg, ConnectionPool, Row, Value};
use deferred::Failure;
use integration_tests::fakes::{register_fake_module, ValueError};
use integration_tests::harness::{ensure, fake_wait, run_async, TempDir, TIMEOUT};
use integration_tests::pools::{db_error, file_pool, inline_sqlite_pool, ints, op, query};
use reactor::testing::FakeReactor;
use reactor::Reactor;

/// `run_operation` fires with `()`, and its statement took effect;
/// `run_query` fires with every row.
#[test]
fn run_operation_fires_with_unit_and_run_query_returns_rows() {
    let (reactor, pool) = inline_sqlite_pool(kwargs! {});
    op(&reactor, &pool, "create table t (x integer, y text)");
    let unit: () = fake_wait(
        &reactor,
        pool.run_operation("insert into t values (?, ?)", (1, "a")),
    )
    .expect("run_operation");
    assert_eq!(unit, ());
    fake_wait(
        &reactor,
        pool.run_operation("insert into t values (?, ?)", (2, "b")),
    )
    .expect("run_operation");
    let rows = fake_wait(
        &reactor,
        pool.run_query("select x, y from t order by x", ()),
    )
    .expect("run_query");
    assert_eq!(
        rows,
        [
            Row::new(vec![Value::Int(1), Value::Text("a".into())]),
            Row::new(vec![Value::Int(2), Value::Text("b".into())]),
        ]
    );
    // A statement without rows gives no rows.
    let none =
        fake_wait(&reactor, pool.run_query("delete from t where x = 1", ())).expect("run_query");
    assert!(none.is_empty());
    assert_eq!(query(&reactor, &pool, "select x from t"), [2]);
}

/// `run_with_connection` commits when the function succeeds and rolls back
/// (keeping the original error) when it fails.
#[test]
fn run_with_connection_commits_or_rolls_back() {
    let (reactor, pool) = inline_sqlite_pool(kwargs! {});
    op(&reactor, &pool, "create table t (x integer)");
    let done = pool.run_with_connection(|conn| {
        conn.cursor()?.execute("insert into t values (1)", ())?;
        Ok("kept")
    });
    assert_eq!(fake_wait(&reactor, done).expect("committed"), "kept");
    let failed = pool.run_with_connection(|conn| -> Result<(), Failure> {
        conn.cursor()?.execute("insert into t values (2)", ())?;
        Err(Failure::new(ValueError("foo".into())))
    });
    let f = fake_wait(&reactor, failed).expect_err("the function failed");
    assert_eq!(f.check::<ValueError>(), Some(&ValueError("foo".into())));
    assert_eq!(query(&reactor, &pool, "select x from t"), [1]);
}

/// A function that closes its own transaction still succeeds (documented
/// difference: Twisted's second `Transaction.close()` raises
/// `AttributeError`, failing and rolling back the job).
#[test]
fn an_interaction_closing_its_transaction_still_succeeds() {
    let (reactor, pool) = inline_sqlite_pool(kwargs! {});
    op(&reactor, &pool, "create table t (x integer)");
    let d = pool.run_interaction(|txn| {
        txn.execute("insert into t values (1)", ())?;
        txn.close();
        ensure(txn.cursor().is_err(), "no cursor after close")?;
        Ok("kept")
    });
    assert_eq!(fake_wait(&reactor, d).expect("succeeds"), "kept");
    assert_eq!(query(&reactor, &pool, "select x from t"), [1], "committed");
}

/// `reopen()` inside an interaction is allowed and stays in the same
/// transaction (Twisted's `Transaction.reopen` only replaces the cursor).
#[test]
fn reopen_inside_an_interaction_is_allowed() {
    let (reactor, pool) = inline_sqlite_pool(kwargs! {});
    op(&reactor, &pool, "create table t (x integer)");
    let d = pool.run_interaction(|txn| {
        txn.execute("insert into t values (1)", ())?;
        txn.reopen()?;
        let rows = txn.execute("select count(*) from t", ())?.fetchall()?;
        Ok(rows[0].get::<i64>(0)?)
    });
    assert_eq!(fake_wait(&reactor, d).expect("succeeds"), 1);
    assert_eq!(query(&reactor, &pool, "select x from t"), [1]);
}

/// A failing `commit` fails the job with the commit's error, after a
/// rollback attempt (Twisted's `_runInteraction` commits inside the `try`
/// whose `except` rolls back and re-raises).
#[test]
fn a_commit_failure_fails_the_job_after_a_rollback() {
    let (module, state) = register_fake_module("commit-fails", true);
    let reactor = FakeReactor::new(true);
    let pool = ConnectionPool::new(
        &module,
        args![],
        kwargs! { "cp_reactor" => Arg::reactor(reactor.clone()) },
    )
    .expect("a pool");
    state.fail_commit.store(true, Ordering::SeqCst);
    let f = fake_wait(&reactor, pool.run_operation("insert into t values (1)", ()))
        .expect_err("commit failed");
    assert!(f.check::<OperationalError>().is_some(), "{f}");
    assert_eq!(db_error(&f).message(), "commit problem!");
    assert_eq!(
        state.ops(),
        [
            "connect",
            "cursor",
            "execute insert into t values (1)",
            "commit",
            "rollback"
        ]
    );
}

/// A panic inside an interaction rolls it back, fails the Deferred with the
/// panic message, replaces the connection, and the worker lives on.
#[test]
fn a_panic_in_an_interaction_rolls_back_and_replaces_the_connection() {
    let dir = TempDir::new("panic");
    let reactor = Reactor::new().expect("a reactor");
    let pool = file_pool(&reactor, &dir, kwargs! { "cp_max" => 1 });
    let p = pool.clone();
    let out = run_async(&reactor, TIMEOUT, move || async move {
        p.run_operation("create table t (x integer)", ()).await?;
        p.run_operation("insert into t values (1)", ()).await?;
        let before = p.connections();
        ensure(before.len() == 1, "one connection")?;
        let where_before = p
            .run_interaction(|_txn| Ok(std::thread::current().id()))
            .await?;
        let panicked = p
            .run_interaction(|txn| -> Result<(), Failure> {
                txn.execute("insert into t values (2)", ())?;
                panic!("boom in interaction");
            })
            .await;
        let rows = p.run_query("select x from t order by x", ()).await?;
        let where_after = p
            .run_interaction(|_txn| Ok(std::thread::current().id()))
            .await?;
        let after = p.connections();
        let workers = p.threadpool().workers();
        p.close().await?;
        Ok((
            before,
            panicked,
            rows,
            where_before,
            where_after,
            after,
            workers,
        ))
    });
    let (before, panicked, rows, where_before, where_after, after, workers) =
        out.unwrap_or_else(|f| panic!("{}", f.traceback()));
    let f = panicked.expect_err("the interaction panicked");
    assert!(f.is_panic(), "{f}");
    assert!(f.error_message().contains("boom in interaction"), "{f}");
    assert_eq!(ints(&rows), [1], "rolled back");
    assert_eq!(after.len(), 1);
    assert_ne!(after[0].1.id(), before[0].1.id(), "a new connection");
    assert!(before[0].1.is_closed(), "the old one was closed");
    assert_eq!(where_before, where_after, "the same worker lives on");
    assert_eq!(after[0].0, where_after);
    assert_eq!(workers, 1);
}
