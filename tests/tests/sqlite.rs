//! The `sqlite3` driver seen through the pool, with the semantics of
//! Python's `sqlite3` module that Twisted's `SQLite3Connector` tests rely
//! on: no transaction for a read-only statement, `IntegrityError` for a
//! unique violation, named parameters, Python's messages for wrong bindings,
//! and an interrupt that never blocks.

use adbapi::dbapi::{connect, DatabaseError, IntegrityError, ProgrammingError};
use adbapi::{args, kwargs, Arg, ConnectionPool, Params, Row, Value};
use deferred::Failure;
use integration_tests::harness::{fake_wait, TempDir};
use integration_tests::pools::{db_error, inline_sqlite_pool, ints, op, query};
use reactor::testing::FakeReactor;

/// Whether another connection can take an EXCLUSIVE lock on `db` right now
/// (`timeout=0`: no waiting).
fn exclusive_lock_free(db: &str) -> Result<bool, Failure> {
    let probe = connect("sqlite3", &[db.into()], &[("timeout", Value::Int(0))])?;
    let free = match probe.execute("BEGIN EXCLUSIVE", ()) {
        Ok(_) => {
            probe.rollback()?;
            true
        }
        Err(e) if e.message().contains("locked") => false,
        Err(e) => return Err(e.into()),
    };
    probe.close()?;
    Ok(free)
}

/// A read-only statement opens no transaction (the sqlite3 driver issues
/// `BEGIN` only before INSERT/UPDATE/DELETE/REPLACE, as Python's does), so a
/// read-only `run_query` costs no `BEGIN`/`COMMIT`: right after a SELECT in
/// a job, another connection can lock the whole database; after an INSERT
/// it cannot until the pool commits.
#[test]
fn a_read_only_statement_opens_no_transaction() {
    let dir = TempDir::new("readonly");
    let db = dir.file("test.db");
    let reactor = FakeReactor::new(true);
    let pool = ConnectionPool::new(
        "sqlite3",
        args![],
        kwargs! { "database" => db.as_str(), "cp_max" => 1, "cp_reactor" => Arg::reactor(reactor.clone()) },
    )
    .expect("a pool");
    op(&reactor, &pool, "create table t (x integer)");
    op(&reactor, &pool, "insert into t values (1)");
    let probe_db = db.clone();
    let d = pool.run_interaction(move |txn| {
        let rows = txn.execute("select x from t", ())?.fetchall()?;
        let after_select = exclusive_lock_free(&probe_db)?;
        txn.execute("insert into t values (2)", ())?;
        let after_insert = exclusive_lock_free(&probe_db)?;
        Ok((rows.len(), after_select, after_insert))
    });
    let (n, after_select, after_insert) = fake_wait(&reactor, d).unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(n, 1);
    assert!(after_select, "a SELECT left a transaction open");
    assert!(
        !after_insert,
        "an INSERT opens a transaction (so the probe works)"
    );
    assert!(
        exclusive_lock_free(&db).expect("probe"),
        "committed and released"
    );
    assert_eq!(query(&reactor, &pool, "select x from t order by x"), [1, 2]);
}

/// A unique violation is an `IntegrityError`, which is a `DatabaseError`,
/// with SQLite's message; the failed insert leaves nothing behind.
#[test]
fn a_unique_violation_is_an_integrity_error() {
    let (reactor, pool) = inline_sqlite_pool(kwargs! {});
    op(&reactor, &pool, "create table t (x integer unique)");
    op(&reactor, &pool, "insert into t values (1)");
    let f = fake_wait(&reactor, pool.run_operation("insert into t values (1)", ()))
        .expect_err("duplicate");
    assert!(f.check::<IntegrityError>().is_some(), "{f}");
    assert!(f.check::<DatabaseError>().is_some(), "{f}");
    assert!(f.check::<ProgrammingError>().is_none(), "{f}");
    assert_eq!(db_error(&f).message(), "UNIQUE constraint failed: t.x");
    assert_eq!(query(&reactor, &pool, "select x from t"), [1]);
}

/// Named parameters bind by name; a missing one is a `ProgrammingError`
/// with Python's message.
#[test]
fn named_parameters() {
    let (reactor, pool) = inline_sqlite_pool(kwargs! {});
    op(&reactor, &pool, "create table t (x integer, y text)");
    fake_wait(
        &reactor,
        pool.run_operation(
            "insert into t values (:x, :y)",
            Params::named([("y", Value::from("why")), ("x", Value::from(5))]),
        ),
    )
    .expect("insert");
    let rows = fake_wait(
        &reactor,
        pool.run_query("select y from t where x = :x", Params::named([("x", 5)])),
    )
    .expect("select");
    assert_eq!(rows, [Row::new(vec![Value::Text("why".into())])]);
    let sum = fake_wait(
        &reactor,
        pool.run_query("select :a + :b", Params::named([("a", 1), ("b", 2)])),
    )
    .expect("select");
    assert_eq!(ints(&sum), [3]);

    let f = fake_wait(
        &reactor,
        pool.run_query("select :a + :b", Params::named([("a", 1)])),
    )
    .expect_err("b missing");
    assert!(f.check::<ProgrammingError>().is_some(), "{f}");
    assert_eq!(
        db_error(&f).message(),
        "You did not supply a value for binding parameter :b."
    );
}

/// A wrong number of bindings is a `ProgrammingError` with Python's message.
#[test]
fn a_wrong_binding_count_is_a_programming_error() {
    let (reactor, pool) = inline_sqlite_pool(kwargs! {});
    for (sql, params, message) in [
        (
            "select ?",
            Params::from((1, 2)),
            "Incorrect number of bindings supplied. The current statement uses 1, and there are 2 supplied.",
        ),
        (
            "select ?, ?",
            Params::None,
            "Incorrect number of bindings supplied. The current statement uses 2, and there are 0 supplied.",
        ),
    ] {
        let f = fake_wait(&reactor, pool.run_query(sql, params)).expect_err(sql);
        assert!(f.check::<ProgrammingError>().is_some(), "{f}");
        assert!(f.check::<DatabaseError>().is_some(), "{f}");
        assert_eq!(db_error(&f).message(), message);
    }
}

/// SQLite's interrupt only sets a flag: the pool calls it inline instead of
/// starting a thread for it.
#[test]
fn sqlite_cancel_does_not_block() {
    let conn = adbapi::dbapi::connect("sqlite3", &[":memory:".into()], &[]).unwrap();
    assert!(!conn.cancel_blocks());
}
