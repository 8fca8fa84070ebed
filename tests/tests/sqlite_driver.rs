//! Regression tests for defects of the `sqlite3` driver found by hostile
//! testing, run through a `ConnectionPool` on the real reactor:
//!
//! - [`nul_in_sql_is_refused_and_changes_nothing`]: SQLite stops parsing at a
//!   NUL, so `UPDATE t SET v = 'GONE'\0 WHERE k = 1` used to update every row;
//!   it is a `ProgrammingError` (CPython's "the query contains a null
//!   character") on every path that takes SQL;
//! - [`writes_the_first_keyword_misses_are_rolled_back`]: `WITH ... INSERT`,
//!   statements behind comments, `REPLACE`, upserts and DDL used to be
//!   autocommitted inside an interaction that then failed;
//! - [`writers_of_one_pool_never_lock_each_other_out`]: with a short busy
//!   timeout, concurrent writers of one pool used to fail each other with
//!   "database is locked";
//! - [`hostile_timeouts_are_typed_errors`]: `timeout=1e20` used to panic;
//! - [`huge_sql_is_quoted_short_in_errors`]: an error quoted all of a
//!   multi-megabyte statement.

use std::time::Duration;

use adbapi::dbapi::{self, DbError, ErrorKind, Value};
use adbapi::{kwargs, Arg, ConnectionPool};
use deferred::{Deferred, Failure};
use integration_tests::harness::{run_async, unique_name, TempDir};
use reactor::Reactor;

const LIMIT: Duration = Duration::from_secs(120);

fn pool(reactor: &Reactor, path: &str, max: usize) -> ConnectionPool {
    ConnectionPool::new(
        "sqlite3",
        vec![path.into()],
        kwargs! {
            "cp_min" => 1, "cp_max" => i64::try_from(max).expect("small"),
            "cp_name" => unique_name("sqlite-driver"),
            "cp_reactor" => Arg::reactor(reactor.clone()),
        },
    )
    .expect("pool")
}

/// The database error inside `f`, which must be one.
fn db_error(f: &Failure) -> &DbError {
    f.check::<DbError>()
        .unwrap_or_else(|| panic!("not a database error: {f}"))
}

async fn rows_of(p: &ConnectionPool, sql: &str) -> Result<Vec<Vec<Value>>, Failure> {
    let rows = p.run_query(sql, ()).await?;
    Ok(rows
        .into_iter()
        .map(adbapi::dbapi::Row::into_values)
        .collect())
}

/// One way of running SQL through a pool.
type Attack = dyn Fn(&ConnectionPool) -> Deferred<()>;

#[test]
fn nul_in_sql_is_refused_and_changes_nothing() {
    let dir = TempDir::new("sqlite-nul");
    let reactor = Reactor::new().expect("reactor");
    let path = dir.file("db");
    let p = pool(&reactor, &path, 1);
    let opened = std::sync::Arc::new(std::sync::Mutex::new(None::<DbError>));
    let r = reactor.clone();
    run_async(&reactor, LIMIT, move || async move {
        p.run_operation("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)", ())
            .await?;
        p.run_operation("INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')", ())
            .await?;
        let attacks: [(&str, Box<Attack>); 4] = [
            (
                "execute",
                Box::new(|p| p.run_operation("UPDATE t SET v = 'GONE'\0 WHERE k = 1", ())),
            ),
            (
                "executemany",
                Box::new(|p| {
                    p.run_interaction(|txn| {
                        txn.executemany("UPDATE t SET v = ?\0 WHERE k = 1", [("GONE",)])?;
                        Ok(())
                    })
                }),
            ),
            (
                "executemany with no parameter sets",
                Box::new(|p| {
                    p.run_interaction(|txn| {
                        txn.executemany("DELETE FROM t\0 WHERE k = 1", Vec::<()>::new())?;
                        Ok(())
                    })
                }),
            ),
            (
                "second statement after NUL",
                Box::new(|p| p.run_operation("SELECT 1\0; DELETE FROM t", ())),
            ),
        ];
        for (what, attack) in &attacks {
            let f = attack(&p)
                .await
                .expect_err(&format!("{what}: NUL in SQL must fail"));
            let e = db_error(&f);
            assert_eq!(e.kind(), ErrorKind::ProgrammingError, "{what}: {e}");
            assert!(
                e.message().contains("the query contains a null character"),
                "{what}: {e}"
            );
            let rows = rows_of(&p, "SELECT k, v FROM t ORDER BY k").await?;
            assert_eq!(
                rows,
                [
                    vec![Value::Int(1), Value::from("a")],
                    vec![Value::Int(2), Value::from("b")],
                    vec![Value::Int(3), Value::from("c")],
                ],
                "{what}: nothing changed"
            );
        }
        // The good_sql probe after a rollback and cp_openfun use the same
        // cursor path: a pool whose good_sql holds a NUL loses the connection
        // (the probe failed) instead of running half of it.
        let p2 = ConnectionPool::new(
            "sqlite3",
            vec![path.as_str().into()],
            kwargs! {
                "cp_min" => 1, "cp_max" => 1, "cp_reconnect" => true,
                "cp_good_sql" => "DELETE FROM t\0 WHERE k = 1",
                "cp_reactor" => Arg::reactor(r.clone()),
            },
        )
        .expect("pool");
        let f = p2
            .run_interaction(|_txn| -> Result<(), Failure> { Err(Failure::msg("boom")) })
            .await
            .expect_err("the interaction fails");
        assert!(f.check::<adbapi::ConnectionLost>().is_some(), "{f}");
        let o = std::sync::Arc::clone(&opened);
        let p3 = ConnectionPool::new(
            "sqlite3",
            vec![path.as_str().into()],
            kwargs! {
                "cp_min" => 1, "cp_max" => 1,
                "cp_openfun" => Arg::openfun(move |c| {
                    if let Err(e) = c.execute("DELETE FROM t\0 WHERE k = 1", ()) {
                        *o.lock().unwrap() = Some(e);
                    }
                    Ok(())
                }),
                "cp_reactor" => Arg::reactor(r.clone()),
            },
        )
        .expect("pool");
        p3.run_query("SELECT 1", ()).await?;
        let e = opened.lock().unwrap().take().expect("openfun's SQL failed");
        assert_eq!(e.kind(), ErrorKind::ProgrammingError, "{e}");
        assert_eq!(
            rows_of(&p, "SELECT count(*) FROM t").await?,
            [[Value::Int(3)]]
        );
        p2.close().await?;
        p3.close().await?;
        p.close().await?;
        Ok(())
    })
    .expect("test body");
}

#[test]
fn writes_the_first_keyword_misses_are_rolled_back() {
    let dir = TempDir::new("sqlite-cte");
    let reactor = Reactor::new().expect("reactor");
    let p = pool(&reactor, &dir.file("db"), 1);
    run_async(&reactor, LIMIT, move || async move {
        p.run_operation("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)", ())
            .await?;
        p.run_operation("INSERT INTO t VALUES (1, 'a')", ()).await?;
        let writes = [
            "WITH x(k) AS (VALUES (2)) INSERT INTO t SELECT k, 'cte' FROM x",
            "WITH x AS (SELECT 1 AS k) DELETE FROM t WHERE k IN (SELECT k FROM x)",
            "WITH x AS (SELECT 1 AS k) UPDATE t SET v = 'cte' WHERE k IN (SELECT k FROM x)",
            "-- a comment first\nINSERT INTO t VALUES (3, 'commented')",
            "/* block */ DELETE FROM t",
            "  replace INTO t VALUES (1, 'replaced')",
            "INSERT INTO t VALUES (1, 'upsert') ON CONFLICT (k) DO UPDATE SET v = 'upsert'",
            "INSERT INTO t VALUES (4, 'returning') RETURNING k",
            "CREATE TABLE ddl (x)",
            "DROP TABLE t",
            "ALTER TABLE t ADD COLUMN w",
        ];
        for sql in writes {
            let s = sql.to_owned();
            let f = p
                .run_interaction(move |txn| -> Result<(), Failure> {
                    txn.execute(&s, ())?;
                    Err(Failure::msg("the interaction fails after writing"))
                })
                .await
                .expect_err("the interaction fails");
            assert!(f.error_message().contains("after writing"), "{sql}: {f}");
            assert_eq!(
                rows_of(&p, "SELECT k, v FROM t ORDER BY k").await?,
                [[Value::Int(1), Value::from("a")]],
                "{sql}: rolled back"
            );
            assert_eq!(
                rows_of(&p, "SELECT name FROM sqlite_master ORDER BY name").await?,
                [[Value::from("t")]],
                "{sql}: schema rolled back"
            );
        }
        p.close().await?;
        Ok(())
    })
    .expect("test body");
}

/// Statements SQLite refuses inside a transaction, and transaction control
/// issued as SQL, keep their own semantics on a raw connection.
#[test]
fn transaction_control_and_autocommit_only_statements_keep_their_semantics() {
    let dir = TempDir::new("sqlite-txn-control");
    let path = dir.file("db");
    let conn = dbapi::connect("sqlite3", &[path.as_str().into()], &[]).expect("connect");
    let exec = |sql: &str| conn.execute(sql, ()).map(|mut c| c.fetchall().unwrap());
    exec("CREATE TABLE t (x)").unwrap();
    conn.commit().unwrap();
    assert_eq!(
        exec("PRAGMA journal_mode=WAL").unwrap()[0][0],
        Value::from("wal")
    );
    exec("VACUUM").unwrap();
    exec("PRAGMA journal_mode=DELETE").unwrap();
    // User-issued transaction control.
    exec("BEGIN IMMEDIATE").unwrap();
    exec("INSERT INTO t VALUES (1)").unwrap();
    exec("COMMIT").unwrap();
    exec("BEGIN").unwrap();
    exec("INSERT INTO t VALUES (2)").unwrap();
    exec("ROLLBACK").unwrap();
    exec("SAVEPOINT sp").unwrap();
    exec("INSERT INTO t VALUES (3)").unwrap();
    exec("RELEASE sp").unwrap();
    // An implicit transaction, committed by SQL.
    exec("INSERT INTO t VALUES (4)").unwrap();
    exec("COMMIT").unwrap();
    let other = dbapi::connect("sqlite3", &[path.as_str().into()], &[]).expect("connect");
    let rows = other
        .execute("SELECT x FROM t ORDER BY x", ())
        .unwrap()
        .fetchall()
        .unwrap();
    let xs: Vec<i64> = rows.iter().map(|r| r.get(0).unwrap()).collect();
    assert_eq!(xs, [1, 3, 4]);
    // Reads open no transaction: the other connection can write at once.
    exec("SELECT * FROM t").unwrap();
    other.execute("INSERT INTO t VALUES (5)", ()).unwrap();
    other.commit().unwrap();
    conn.close().unwrap();
    other.close().unwrap();
}

#[test]
fn writers_of_one_pool_never_lock_each_other_out() {
    const INSERTS: i64 = 3000;
    let dir = TempDir::new("sqlite-gate");
    let reactor = Reactor::new().expect("reactor");
    let p = ConnectionPool::new(
        "sqlite3",
        vec![dir.file("db").as_str().into()],
        kwargs! {
            "timeout" => 0.05,
            "cp_min" => 3, "cp_max" => 3,
            "cp_name" => unique_name("sqlite-gate"),
            "cp_reactor" => Arg::reactor(reactor.clone()),
        },
    )
    .expect("pool");
    let (failures, count) = run_async(&reactor, Duration::from_secs(600), move || async move {
        p.run_operation("CREATE TABLE t (x INTEGER)", ()).await?;
        // Readers in between: a read that meets a committing writer must
        // not fail either.
        let jobs: Vec<Deferred<()>> = (0..INSERTS)
            .flat_map(|i| {
                let write = p.run_interaction(move |txn| {
                    txn.execute("INSERT INTO t VALUES (?)", (i,))?;
                    txn.execute("SELECT count(*) FROM t", ())?;
                    Ok(())
                });
                let read = (i % 3 == 0).then(|| {
                    p.run_query("SELECT count(*) FROM t WHERE x < ?", (i,))
                        .add_callback(|_| ())
                });
                std::iter::once(write).chain(read)
            })
            .collect();
        let mut failures = Vec::new();
        for j in jobs {
            if let Err(f) = j.await {
                failures.push(f.error_message());
            }
        }
        let count: i64 = p.run_query("SELECT count(*) FROM t", ()).await?[0].get(0)?;
        p.close().await?;
        Ok((failures, count))
    })
    .expect("test body");
    assert!(
        failures.is_empty(),
        "{} of {INSERTS} inserts failed, first: {:?}",
        failures.len(),
        failures.first()
    );
    assert_eq!(count, INSERTS);
}

#[test]
fn hostile_timeouts_are_typed_errors() {
    let dir = TempDir::new("sqlite-timeout");
    let path = dir.file("db");
    for timeout in [
        Value::Float(1e20),
        Value::Float(f64::NAN),
        Value::Float(f64::INFINITY),
        Value::Float(-1.0),
        Value::Int(-5),
        Value::Int(i64::MAX),
        Value::from("5"),
    ] {
        let r = dbapi::connect(
            "sqlite3",
            &[path.as_str().into()],
            &[("timeout", timeout.clone())],
        );
        let Err(dbapi::ConnectError::Db(e)) = r else {
            panic!("timeout={timeout}: must be refused, got {r:?}");
        };
        assert_eq!(
            e.kind(),
            ErrorKind::InterfaceError,
            "timeout={timeout}: {e}"
        );
        assert!(e.message().contains("'timeout'"), "timeout={timeout}: {e}");
    }
    for ok in [Value::Float(0.0), Value::Int(0), Value::Float(2e6)] {
        dbapi::connect("sqlite3", &[path.as_str().into()], &[("timeout", ok)])
            .expect("a sane timeout is accepted");
    }
}

#[test]
fn huge_sql_is_quoted_short_in_errors() {
    let conn = dbapi::connect("sqlite3", &[":memory:".into()], &[]).expect("connect");
    let sql = format!("SELECT '{}' FROM no_such_table", "x".repeat(1_000_000));
    let e = conn.execute(&sql, ()).expect_err("no such table");
    assert_eq!(e.kind(), ErrorKind::OperationalError);
    let shown = e.to_string();
    assert!(shown.len() < 2000, "quoted {} bytes", shown.len());
    assert!(shown.contains("no such table"), "{shown}");
    assert!(shown.contains("SELECT 'xxx"), "{shown}");
    let more = sql.chars().count() - 300;
    assert!(
        shown.contains(&format!("... ({more} more characters)")),
        "{shown}"
    );
    assert!(e.sql().is_some_and(|s| s.len() < 2000));
    // Short SQL is quoted whole.
    let e = conn
        .execute("SELECT * FROM nope", ())
        .expect_err("no such table");
    assert!(e.to_string().ends_with("[SQL: SELECT * FROM nope]"), "{e}");
}
