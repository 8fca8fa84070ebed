//! `cp_statement_timeout` (an extension: Twisted's adbapi has none; Matrix
//! Synapse sets PostgreSQL's `statement_timeout` by hand) on SQLite,
//! PostgreSQL and MariaDB: a statement over the limit fails the job with the
//! driver's error, which `DbError::is_statement_timeout` recognises (and a
//! cancel's does not), the job's transaction is rolled back, and the next
//! job on the same connection works. Also the option checks shared by every
//! `cp_*` extension of this issue (bad values, `CP_ARGS`, the
//! `UnknownOption` message).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use adbapi::dbapi::{self, DbConnection, DbError, OperationalError};
use adbapi::{args, kwargs, Arg, ConnectionPool, PoolError, Value, CP_ARGS};
use deferred::Failure;
use integration_tests::harness::{fake_wait, run_chain, TempDir};
use integration_tests::pools::db_error;
use reactor::testing::FakeReactor;
use reactor::Reactor;

/// A statement no server finishes by itself.
const SQLITE_FOREVER: &str =
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";

const OPTIONS: [&str; 4] = [
    "cp_statement_timeout",
    "cp_max_lifetime",
    "cp_idle_timeout",
    "cp_check_idle",
];

fn build(key: &str, v: Arg) -> Result<ConnectionPool, PoolError> {
    ConnectionPool::new(
        "sqlite3",
        args![":memory:"],
        vec![
            (key.to_owned(), v),
            (
                "cp_reactor".to_owned(),
                Arg::reactor(FakeReactor::new(false)),
            ),
        ],
    )
}

#[test]
fn bad_values_of_every_option_are_typed_errors_naming_it() {
    for key in OPTIONS {
        assert!(CP_ARGS.contains(&key), "{key} in CP_ARGS");
        for bad in [
            Arg::from(-1),
            Arg::from(-0.5),
            Arg::from(f64::NAN),
            Arg::from(f64::INFINITY),
            Arg::from(1e300),
            Arg::from("10"),
            Arg::from(true),
        ] {
            let shown = format!("{bad:?}");
            match build(key, bad) {
                Err(PoolError::InvalidOption { option, .. }) => assert_eq!(option, key, "{shown}"),
                other => panic!("{key}={shown}: expected InvalidOption, got {other:?}"),
            }
        }
        // Seconds as an int or a float, 0 and None are taken.
        for good in [Arg::from(0), Arg::from(2), Arg::from(0.25), Arg::None] {
            build(key, good).unwrap_or_else(|e| panic!("{key}: {e}"));
        }
    }
    // Longer than PostgreSQL can take.
    assert!(build("cp_statement_timeout", Arg::from(3_000_000)).is_err());
    let e = build("cp_statement_timeoutt", Arg::from(1)).unwrap_err();
    for key in OPTIONS {
        assert!(e.to_string().contains(key), "{e}");
    }
    // The builder's setters check the same way.
    let e = ConnectionPool::builder("sqlite3")
        .arg(":memory:")
        .reactor(FakeReactor::new(false))
        .max_lifetime(Some(f64::NAN))
        .build()
        .unwrap_err();
    assert!(
        matches!(&e, PoolError::InvalidOption { option, .. } if option == "cp_max_lifetime"),
        "{e:?}"
    );
    ConnectionPool::builder("sqlite3")
        .arg(":memory:")
        .reactor(FakeReactor::new(false))
        .statement_timeout(Some(1.5))
        .max_lifetime(Some(1800.0))
        .idle_timeout(Some(600.0))
        .check_idle(Some(0.5))
        .build()
        .unwrap();
}

fn is_timeout(f: &Failure) -> bool {
    f.check::<DbError>()
        .is_some_and(DbError::is_statement_timeout)
}

/// Runs, on a pool with `cp_max=1`, a job that inserts a row and then runs
/// `forever`, then a job that counts the rows; returns the first job's
/// failure, the count, and whether both jobs ran on the same connection.
fn timeout_then_next_job(
    reactor: &Reactor,
    pool: ConnectionPool,
    forever: &'static str,
) -> (Failure, i64, bool) {
    let p = pool.clone();
    let first = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&first);
    let t = integration_tests::harness::unique_name("tmo").replace('-', "_");
    let (create, insert) = (
        format!("CREATE TABLE {t} (x INTEGER)"),
        format!("INSERT INTO {t} VALUES (1)"),
    );
    let (count, drop_it) = (
        format!("SELECT count(*) FROM {t}"),
        format!("DROP TABLE {t}"),
    );
    let (f, n, id2) = run_chain(reactor, Duration::from_secs(60), move || {
        let p2 = p.clone();
        p.run_operation(&create, ())
            .add_callback_deferred(move |()| {
                let p3 = p2.clone();
                p2.run_interaction(move |txn| {
                    txn.execute(&insert, ())?;
                    seen.store(txn.connection().raw().id(), Ordering::SeqCst);
                    txn.execute(forever, ())?;
                    Ok(())
                })
                .add_both(|r| Ok(r.expect_err("the statement timed out")))
                .add_callback_deferred(move |f| {
                    let p4 = p3.clone();
                    p3.run_interaction(move |txn| {
                        let n = txn.execute(&count, ())?.fetchall()?;
                        Ok((n[0].get::<i64>(0).unwrap(), txn.connection().raw().id()))
                    })
                    .add_callback_deferred(move |(n, id2)| {
                        p4.run_operation(&drop_it, ())
                            .add_callback(move |()| (f, n, id2))
                    })
                })
            })
    })
    .unwrap();
    (f, n, first.load(Ordering::SeqCst) == id2)
}

#[test]
fn sqlite_statement_over_the_limit_fails_and_the_connection_goes_on() {
    let dir = TempDir::new("tmo");
    let reactor = Reactor::new().unwrap();
    let pool = ConnectionPool::new(
        "sqlite3",
        args![dir.file("t.db")],
        kwargs! { "cp_max" => 1, "cp_statement_timeout" => 0.2,
        "cp_reactor" => Arg::reactor(reactor.clone()) },
    )
    .unwrap();
    let (f, rows, same) = timeout_then_next_job(&reactor, pool, SQLITE_FOREVER);
    assert!(is_timeout(&f), "{f}");
    assert!(f.check::<OperationalError>().is_some(), "{f}");
    assert!(f.to_string().contains("cp_statement_timeout"), "{f}");
    // The job's insert was rolled back.
    assert_eq!(rows, 0);
    assert!(same, "the connection was kept");
}

#[test]
fn sqlite_cancel_is_not_a_statement_timeout() {
    let conn = dbapi::connect("sqlite3", &[":memory:".into()], &[]).unwrap();
    conn.set_statement_timeout(Some(Duration::from_secs(600)))
        .unwrap();
    let c = conn.clone();
    let t = std::thread::spawn(move || c.execute(SQLITE_FOREVER, ()).map(drop));
    // Interrupt until the statement has stopped (an interrupt that lands
    // before it starts is lost, as sqlite3_interrupt documents).
    while !t.is_finished() {
        conn.cancel_statement().unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let e = t.join().unwrap().unwrap_err();
    assert!(!e.is_statement_timeout(), "{e}");
    // And the timer is still armed for the next statement.
    conn.set_statement_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let e = conn.execute(SQLITE_FOREVER, ()).map(drop).unwrap_err();
    assert!(e.is_statement_timeout(), "{e}");
    assert_eq!(
        conn.execute("SELECT 7", ()).unwrap().fetchall().unwrap()[0]
            .get::<i64>(0)
            .unwrap(),
        7
    );
}

#[test]
fn statement_timeout_on_a_driver_without_one_fails_the_connect_naming_the_option() {
    let (module, _state) = integration_tests::fakes::register_spy_module("notimeout");
    let reactor = FakeReactor::new(true);
    let pool = ConnectionPool::new(
        &module,
        args![":memory:"],
        kwargs! { "cp_max" => 1, "cp_statement_timeout" => 1,
        "cp_reactor" => Arg::reactor(reactor.clone()) },
    )
    .unwrap();
    let f = fake_wait(&reactor, pool.run_query("select 1", ())).unwrap_err();
    let e = db_error(&f);
    assert_eq!(e.kind(), dbapi::ErrorKind::NotSupportedError, "{f}");
    assert!(f.to_string().contains("cp_statement_timeout"), "{f}");
    assert!(pool.connections().is_empty(), "the connection was closed");
}

#[test]
fn a_zero_or_none_statement_timeout_is_no_limit_and_asks_nothing_of_the_driver() {
    for off in [Arg::from(0), Arg::from(0.0), Arg::None] {
        // The spy driver has no statement timeout: asking would fail.
        let (module, _state) = integration_tests::fakes::register_spy_module("tmo-off");
        let reactor = FakeReactor::new(true);
        let pool = ConnectionPool::new(
            &module,
            args![":memory:"],
            vec![
                ("cp_statement_timeout".to_owned(), off),
                ("cp_reactor".to_owned(), Arg::reactor(reactor.clone())),
            ],
        )
        .unwrap();
        fake_wait(&reactor, pool.run_query("select 1", ())).expect("no limit, no call");
    }
}

/// The driver's own cancel and the statement timeout both end in SQLSTATE
/// 57014 on PostgreSQL; only the timeout counts as one.
fn pg_cancel_and_timeout(conn: DbConnection, sleep: &'static str) {
    conn.set_statement_timeout(Some(Duration::from_secs(600)))
        .unwrap();
    let c = conn.clone();
    let t = std::thread::spawn(move || c.execute(sleep, ()).map(drop));
    while !t.is_finished() {
        let _ = conn.cancel_statement();
        std::thread::sleep(Duration::from_millis(50));
    }
    let e = t.join().unwrap().unwrap_err();
    assert!(!e.is_statement_timeout(), "{e}");
    let _ = conn.rollback();
}

integration_tests::pg_test! {
    fn postgres_statement_over_the_limit_fails_and_the_connection_goes_on() {
        let _server = integration_tests::pg::sharing_server();
        let reactor = Reactor::new().unwrap();
        let pool = integration_tests::pg::pool_on(
            &reactor,
            kwargs! { "cp_max" => 1, "cp_statement_timeout" => 0.3 },
        );
        let (f, rows, same) = timeout_then_next_job(&reactor, pool.clone(), "SELECT pg_sleep(60)");
        assert!(is_timeout(&f), "{f}");
        assert_eq!(db_error(&f).code(), Some("57014"), "{f}");
        assert_eq!(rows, 0);
        assert!(same, "the connection was kept");
        pg_cancel_and_timeout(integration_tests::pg::direct(), "SELECT pg_sleep(60)");
    }
}

integration_tests::pg_test! {
    fn postgres_takes_the_longest_statement_timeout_the_option_allows() {
        let _server = integration_tests::pg::sharing_server();
        let reactor = Reactor::new().unwrap();
        let pool = integration_tests::pg::pool_on(
            &reactor,
            kwargs! { "cp_max" => 1, "cp_statement_timeout" => 2_147_483 },
        );
        let p = pool.clone();
        let rows = run_chain(&reactor, Duration::from_secs(30), move || {
            p.run_query("SHOW statement_timeout", ())
        })
        .unwrap();
        assert_eq!(rows[0].get::<String>(0).unwrap(), "2147483s");
    }
}

macro_rules! my_test {
    ($(#[$doc:meta])* fn $name:ident() $body:block) => {
        $(#[$doc])*
        #[test]
        #[cfg_attr(
            not(mysql_available),
            ignore = "SKIPPED: no MySQL/MariaDB server; set ADBAPI_MYSQL_URL (eval \"$(scripts/mysql-test-server start)\")"
        )]
        fn $name() $body
    };
}

my_test! {
    fn mariadb_statement_over_the_limit_fails_and_the_connection_goes_on() {
        let reactor = Reactor::new().unwrap();
        let url = integration_tests::mysql::url();
        let pool = ConnectionPool::new(
            "pymysql",
            vec![Value::from(url.as_str())],
            kwargs! { "cp_max" => 1, "cp_statement_timeout" => 0.3,
                      "cp_reactor" => Arg::reactor(reactor.clone()) },
        )
        .unwrap();
        let (f, rows, same) = timeout_then_next_job(
            &reactor,
            pool.clone(),
            // Errors with 1969 when interrupted (BENCHMARK() just returns 0,
            // and recursive CTEs stop at max_recursive_iterations).
            "SELECT SLEEP(60)",
        );
        assert!(is_timeout(&f), "{f}");
        assert_eq!(db_error(&f).code(), Some("1969"), "{f}");
        assert_eq!(rows, 0);
        assert!(same, "the connection was kept");
    }
}
