//! MySQL/MariaDB tests of the pool and the `pymysql` driver, against a real
//! server: Twisted's `test_adbapi` suite (`MySQLADBAPITests`,
//! `MySQLReconnectTests`), `wait_timeout` and killed connections with
//! `cp_reconnect`, `KILL QUERY` cancel and timeout, duplicate keys, value
//! mapping (utf8mb4 included), rows by name, and 10 000 concurrent queries.
//!
//! They need `ADBAPI_MYSQL_URL` (see `scripts/mysql-test-server`); without it
//! they are reported as ignored with a `SKIPPED` reason.

use reactor::prelude::*;
use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::time::{Duration, Instant};

use adbapi::dbapi::{self, DatabaseError, IntegrityError, OperationalError};
use adbapi::{Arg, ConnectionLost, ConnectionPool, Row, Value};
use deferred::{gather_results, CancelledError, Deferred, Failure, TimeoutError};
use reactor::Reactor;

use integration_tests::chaos::assert_cancel_storm;
use integration_tests::harness::run_chain;
use integration_tests::mysql::{direct, exec, url, MysqlBackend};
use integration_tests::suite;

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

fn pool_on(reactor: &Reactor, url: &str, extra: Vec<(String, Arg)>) -> ConnectionPool {
    let mut kw = vec![("cp_reactor".to_owned(), Arg::reactor(reactor.clone()))];
    kw.extend(extra);
    ConnectionPool::new("pymysql", vec![url.into()], kw).expect("pool")
}

fn id_of(p: &ConnectionPool) -> Deferred<i64> {
    p.run_query("SELECT CONNECTION_ID()", ())
        .add_callback(|rows| rows[0].get::<i64>(0).unwrap())
}

my_test! {
    /// Twisted: `MySQLADBAPITests.test_pool` (`ADBAPITestBase` with a MySQL
    /// connector), on MariaDB.
    fn mysql_adbapi_tests_test_pool() {
        suite::adbapi_test_pool(&MysqlBackend::new());
    }
}

my_test! {
    /// Twisted: `MySQLReconnectTests.test_pool`; the session is ended by the
    /// server (`KILL CONNECTION`) instead of a closed client connection.
    fn mysql_reconnect_tests_test_pool() {
        suite::reconnect_test_pool(&MysqlBackend::new());
    }
}

my_test! {
    /// A duplicate key (1062) is an IntegrityError carrying the MySQL error
    /// number; the failed job rolled back, the first stayed committed.
    fn duplicate_key_1062_is_integrity_error() {
        let b = MysqlBackend::new();
        let c = integration_tests::mysql::direct_to(b.url());
        exec(&c, "CREATE TABLE uniq (k VARCHAR(20) PRIMARY KEY) ENGINE=InnoDB", ());
        let reactor = Reactor::new().unwrap();
        let p = pool_on(&reactor, b.url(), adbapi::kwargs! { "cp_max" => 1 });
        let p2 = p.clone();
        let f = run_chain(&reactor, Duration::from_secs(60), move || {
            p.run_operation("INSERT INTO uniq VALUES (%s)", ("a",))
                .add_callback_deferred(move |()| p2.run_operation("INSERT INTO uniq VALUES (%s)", ("a",)))
        })
        .unwrap_err();
        assert!(f.check::<IntegrityError>().is_some(), "{f:?}");
        assert!(f.check::<DatabaseError>().is_some());
        let db = f.check::<dbapi::DbError>().unwrap();
        assert_eq!(db.code(), Some("1062"), "{db}");
        assert!(db.message().contains("Duplicate entry"), "{db}");
        assert_eq!(db.sql(), Some("INSERT INTO uniq VALUES (%s)"));
        assert_eq!(exec(&c, "SELECT count(*) FROM uniq", ())[0][0], Value::Int(1));
    }
}

my_test! {
    /// `wait_timeout`: the server closes a session idle for longer than it.
    /// With a session `wait_timeout` of 1 s and 2 s idle, the next job costs
    /// at most one failure (a lost connection), and the one after succeeds
    /// on a fresh connection.
    fn wait_timeout_costs_at_most_one_job_with_reconnect() {
        let reactor = Reactor::new().unwrap();
        let p = pool_on(
            &reactor,
            &url(),
            adbapi::kwargs! {
                "cp_min" => 1, "cp_max" => 1, "cp_reconnect" => true,
                "init_command" => "SET SESSION wait_timeout = 1",
            },
        );
        let first: Rc<RefCell<Option<Result<i64, Failure>>>> = Rc::new(RefCell::new(None));
        let (o, p2, r) = (first.clone(), p.clone(), reactor.clone());
        let (old, new) = run_chain(&reactor, Duration::from_secs(60), move || {
            let (d, resolver) = Deferred::<(i64, i64)>::new();
            let p3 = p2.clone();
            let _ = id_of(&p2).add_callback(move |old| {
                let r2 = r.clone();
                // Idle for twice the session's wait_timeout.
                r.call_later(Duration::from_secs(2), move || {
                    let p4 = p3.clone();
                    let _ = r2;
                    let _ = id_of(&p3)
                        .add_both(move |res| {
                            *o.borrow_mut() = Some(res);
                            Ok(())
                        })
                        .add_callback_deferred(move |()| id_of(&p4))
                        .add_callback(move |new| resolver.callback((old, new)));
                });
            });
            d
        })
        .unwrap();
        assert_ne!(old, new, "the job after the timeout runs on a fresh connection");
        let first = first.borrow_mut().take().expect("the first job fired");
        match first {
            Ok(id) => assert_ne!(id, old, "it can only succeed on a new connection"),
            Err(f) => {
                assert!(f.check::<ConnectionLost>().is_some() || f.check::<OperationalError>().is_some(), "{f:?}");
                let db = f.check::<dbapi::DbError>().expect("the driver's error");
                assert!(db.is_connection_lost(), "marked as a lost connection: {db}");
            }
        }
    }
}

my_test! {
    /// A connection killed by the server (`KILL CONNECTION`) costs one job
    /// with `cp_reconnect`; the next runs on a fresh connection.
    fn killed_connection_with_reconnect_costs_one_job() {
        let reactor = Reactor::new().unwrap();
        let p = pool_on(&reactor, &url(), adbapi::kwargs! { "cp_min" => 1, "cp_max" => 1, "cp_reconnect" => true });
        let first: Rc<RefCell<Option<Result<i64, Failure>>>> = Rc::new(RefCell::new(None));
        let (o, p2) = (first.clone(), p.clone());
        let (old, new) = run_chain(&reactor, Duration::from_secs(60), move || {
            let p3 = p2.clone();
            id_of(&p2).add_callback_deferred(move |id| {
                exec(&direct(), &format!("KILL CONNECTION {id}"), ());
                let p4 = p3.clone();
                id_of(&p3)
                    .add_both(move |r| {
                        *o.borrow_mut() = Some(r);
                        Ok(())
                    })
                    .add_callback_deferred(move |()| id_of(&p4))
                    .add_callback(move |new| (id, new))
            })
        })
        .unwrap();
        assert_ne!(old, new);
        let first = first.borrow_mut().take().expect("fired");
        if let Err(f) = first {
            let db = f.check::<dbapi::DbError>().expect("the driver's error");
            assert!(db.is_connection_lost(), "{db}");
        }
    }
}

my_test! {
    /// Cancelling the Deferred of a running statement sends `KILL QUERY`:
    /// the 60 s statement stops on the server, the job fails with
    /// CancelledError, and the worker runs the next job (on a fresh
    /// connection: one a kill was sent for is never reused).
    fn kill_query_cancel_frees_the_worker() {
        let reactor = Reactor::new().unwrap();
        let p = pool_on(&reactor, &url(), adbapi::kwargs! { "cp_min" => 1, "cp_max" => 1 });
        let (p2, r) = (p.clone(), reactor.clone());
        let started = Instant::now();
        let (cancelled, after) = run_chain(&reactor, Duration::from_secs(120), move || {
            let slow = p2.run_query("SELECT SLEEP(60) /* adbapi-cancel-test */", ());
            let slow = Rc::new(RefCell::new(Some(slow)));
            let (d, resolver) = Deferred::<(bool, i64)>::new();
            fn wait_running(r: Reactor, slow: Rc<RefCell<Option<Deferred<Vec<Row>>>>>, p: ConnectionPool, resolver: deferred::Resolver<(bool, i64)>) {
                let active = exec(
                    &direct(),
                    "SELECT count(*) FROM information_schema.processlist WHERE info LIKE %s AND info NOT LIKE %s",
                    ("%adbapi-cancel-test%", "%processlist%"),
                );
                if active[0][0] == Value::Int(0) {
                    let r2 = r.clone();
                    r.call_later(Duration::from_millis(10), move || wait_running(r2, slow, p, resolver));
                    return;
                }
                let d = slow.borrow_mut().take().unwrap();
                d.cancel();
                let was_cancelled = matches!(d.into_result(), Ok(Err(ref f)) if f.check::<CancelledError>().is_some());
                let _ = p
                    .run_query("SELECT 42", ())
                    .add_callback(move |rows| resolver.callback((was_cancelled, rows[0].get::<i64>(0).unwrap())));
            }
            wait_running(r, slow, p2, resolver);
            d
        })
        .unwrap();
        assert!(cancelled, "the Deferred fails with CancelledError at once");
        assert_eq!(after, 42, "the worker was freed and ran the next query");
        assert!(started.elapsed() < Duration::from_secs(50), "the statement was killed on the server");
    }
}

my_test! {
    /// `add_timeout` on a running statement kills it on the server.
    fn timing_out_a_running_query_kills_it() {
        let reactor = Reactor::new().unwrap();
        let p = pool_on(&reactor, &url(), adbapi::kwargs! { "cp_min" => 1, "cp_max" => 1 });
        let (p2, r) = (p.clone(), reactor.clone());
        let started = Instant::now();
        let (timed_out, after) = run_chain(&reactor, Duration::from_secs(120), move || {
            let p3 = p2.clone();
            p2.run_query("SELECT SLEEP(60)", ())
                .add_timeout(Duration::from_millis(300), &r)
                .add_both(|res| Ok(matches!(res, Err(ref f) if f.check::<TimeoutError>().is_some())))
                .add_callback_deferred(move |t| {
                    p3.run_query("SELECT 7", ()).add_callback(move |rows| (t, rows[0].get::<i64>(0).unwrap()))
                })
        })
        .unwrap();
        assert!(timed_out, "the Deferred fails with TimeoutError");
        assert_eq!(after, 7);
        assert!(started.elapsed() < Duration::from_secs(50), "the statement was killed, not waited for");
    }
}

my_test! {
    /// A kill affects only the job it was sent for: a storm of cancels over
    /// short jobs on four workers, and every job nobody cancelled succeeds
    /// (a `KILL QUERY` landing after its statement ended would fail the
    /// next job's statement or the pool's ROLLBACK).
    fn cancel_storm_hits_only_cancelled_jobs() {
        let reactor = Reactor::new().unwrap();
        let p = pool_on(&reactor, &url(), adbapi::kwargs! { "cp_min" => 4, "cp_max" => 4 });
        assert_cancel_storm(
            &reactor,
            &p,
            400,
            [
                "SELECT SLEEP(0.001)",
                "SELECT BENCHMARK(20000, MD5('x'))",
                "SELECT 1",
            ],
            21,
            Duration::from_secs(240),
        );
    }
}

my_test! {
    /// 10 000 concurrent inserts and queries on a pool of 5: every row
    /// written once, every result delivered once to its own query.
    fn ten_thousand_concurrent_queries_on_five_connections() {
        const N: i64 = 10_000;
        let b = MysqlBackend::new();
        exec(&integration_tests::mysql::direct_to(b.url()), "CREATE TABLE many (i BIGINT NOT NULL) ENGINE=InnoDB", ());
        let reactor = Reactor::new().unwrap();
        let p = pool_on(&reactor, b.url(), adbapi::kwargs! { "cp_min" => 5, "cp_max" => 5 });
        let p2 = p.clone();
        let results = run_chain(&reactor, Duration::from_secs(600), move || {
            let jobs: Vec<Deferred<(i64, i64)>> = (0..N)
                .map(|i| {
                    let p3 = p2.clone();
                    p2.run_operation("INSERT INTO many (i) VALUES (%s)", (i,)).add_callback_deferred(move |()| {
                        p3.run_query("SELECT %s * 2", (i,)).add_callback(move |rows| {
                            assert_eq!(rows.len(), 1);
                            (i, rows[0].get::<i64>(0).unwrap())
                        })
                    })
                })
                .collect();
            gather_results(jobs, false)
        })
        .unwrap();
        assert_eq!(results.len() as i64, N);
        let mut seen = HashSet::new();
        for (i, doubled) in results {
            assert_eq!(doubled, 2 * i, "query {i} got another query's result");
            assert!(seen.insert(i), "result {i} delivered twice");
        }
        let c = integration_tests::mysql::direct_to(b.url());
        let rows = exec(&c, "SELECT count(*), count(DISTINCT i), min(i), max(i) FROM many", ());
        assert_eq!(rows[0].values(), &[Value::Int(N), Value::Int(N), Value::Int(0), Value::Int(N - 1)]);
    }
}

my_test! {
    /// The common types both ways, utf8mb4 (emoji) included, through
    /// prepared statements (with parameters) and plain text (without).
    fn values_map_both_ways() {
        let b = MysqlBackend::new();
        let c = integration_tests::mysql::direct_to(b.url());
        exec(
            &c,
            "CREATE TABLE v (ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, mi MEDIUMINT, i INT, bi BIGINT, \
             bu BIGINT UNSIGNED, f FLOAT, d DOUBLE, dec_ DECIMAL(30,10), ch CHAR(5), vc VARCHAR(50), t TEXT, \
             bin VARBINARY(10), bl BLOB, dt DATE, tm TIME(3), dtt DATETIME(6), ts TIMESTAMP NULL, j JSON, bt BIT(8), \
             e ENUM('a','b'), y YEAR, n INT NULL) ENGINE=InnoDB",
            (),
        );
        let emoji = "🦀 naïve 漢字 😀";
        exec(
            &c,
            "INSERT INTO v VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
            vec![
                Value::Int(-128), Value::Int(255), Value::Int(-32768), Value::Int(8_388_607), Value::Int(i64::from(i32::MIN)),
                Value::Int(i64::MIN), Value::Text("18446744073709551615".into()), Value::Float(0.5), Value::Float(0.1),
                Value::Text("12345678901234567890.0123456789".into()), Value::Text("ab".into()), Value::Text(emoji.into()),
                Value::Text("x".repeat(1000)), Value::Bytes(vec![0, 1, 255]), Value::Bytes(vec![0; 300]),
                Value::Text("2024-02-29".into()), Value::Text("-838:59:58.5".into()),
                Value::Text("2024-02-29 23:59:58.123456".into()), Value::Text("2024-01-01 00:00:00".into()),
                Value::Text(r#"{"a": [1, "é"]}"#.into()), Value::Int(5), Value::Text("b".into()), Value::Int(2024), Value::Null,
            ],
        );
        let expect = vec![
            Value::Int(-128), Value::Int(255), Value::Int(-32768), Value::Int(8_388_607), Value::Int(i64::from(i32::MIN)),
            Value::Int(i64::MIN), Value::Text("18446744073709551615".into()), Value::Float(0.5), Value::Float(0.1),
            Value::Text("12345678901234567890.0123456789".into()), Value::Text("ab".into()), Value::Text(emoji.into()),
            Value::Text("x".repeat(1000)), Value::Bytes(vec![0, 1, 255]), Value::Bytes(vec![0; 300]),
            Value::Text("2024-02-29".into()), Value::Text("-838:59:58.500".into()),
            Value::Text("2024-02-29 23:59:58.123456".into()), Value::Text("2024-01-01 00:00:00".into()),
            Value::Text(r#"{"a": [1, "é"]}"#.into()), Value::Bytes(vec![5]), Value::Text("b".into()), Value::Int(2024), Value::Null,
        ];
        // Without parameters: the text protocol.
        let text = exec(&c, "SELECT * FROM v", ());
        assert_eq!(text[0].values(), &expect[..]);
        // With parameters: a prepared statement, the binary protocol.
        let bin = exec(&c, "SELECT * FROM v WHERE vc = %s", (emoji,));
        assert_eq!(bin[0].values(), &expect[..]);
        // Rows read by name, as pymysql's DictCursor rows.
        assert_eq!(bin[0].get_by_name::<String>("vc").unwrap(), emoji);
        assert_eq!(bin[0].get_by_name::<Option<i64>>("n").unwrap(), None);
        let e = bin[0].get_by_name::<i64>("nope").unwrap_err();
        assert!(e.message().contains("\"nope\""), "{e}");
        // An unsupported type names the column.
        let mut cur = c.cursor().unwrap();
        let e = cur.execute("SELECT POINT(1, 2) AS pt", ()).unwrap_err();
        assert_eq!(e.kind(), dbapi::ErrorKind::NotSupportedError, "{e}");
        assert!(e.message().contains("\"pt\""), "{e}");
        // Out of range (1264) is a DataError in strict mode.
        let e = cur.execute("INSERT INTO v (ti) VALUES (%s)", (1000,)).unwrap_err();
        assert_eq!(e.kind(), dbapi::ErrorKind::DataError, "{e}");
        assert_eq!(e.code(), Some("1264"));
        c.rollback().unwrap();
        // Syntax (1064) and missing table (1146) are ProgrammingErrors.
        let e = cur.execute("SELEC 1", ()).unwrap_err();
        assert_eq!((e.kind(), e.code()), (dbapi::ErrorKind::ProgrammingError, Some("1064")));
        let e = cur.execute("SELECT * FROM no_such_table", ()).unwrap_err();
        assert_eq!((e.kind(), e.code()), (dbapi::ErrorKind::ProgrammingError, Some("1146")));
    }
}

my_test! {
    /// The pyformat placeholders, `%%`, named parameters, and the refusals.
    fn pyformat_placeholders_and_refusals() {
        let c = direct();
        let rows = exec(&c, "SELECT %(a)s + %(b)s, %(a)s, '50%%'", adbapi::Params::named([("a", 1), ("b", 2)]));
        assert_eq!(rows[0].values(), &[Value::Int(3), Value::Int(1), Value::Text("50%".into())]);
        let rows = exec(&c, "SELECT %s, '%s', \"it''s\" -- %s\n", ("x",));
        assert_eq!(rows[0].values(), &[Value::Text("x".into()), Value::Text("%s".into()), Value::Text("it''s".into())]);
        let mut cur = c.cursor().unwrap();
        for (sql, why) in [
            ("SELECT 1; SELECT 2", "multiple statements"),
            ("SELECT ?", "'?'"),
            ("SELECT 1\0", "NUL"),
        ] {
            let e = cur.execute(sql, (1,)).unwrap_err();
            assert_eq!(e.kind(), dbapi::ErrorKind::ProgrammingError, "{sql}: {e}");
            assert!(e.message().contains(why), "{sql}: {e}");
        }
        // A hostile value is bound, never spliced.
        let evil = "'); DROP TABLE x; -- \\' \" `";
        assert_eq!(exec(&c, "SELECT %s", (evil,))[0][0], Value::Text(evil.into()));
    }
}

my_test! {
    /// Connect arguments as pymysql takes them; unknown ones are named.
    fn connect_arguments() {
        let u = url();
        let e = dbapi::connect("pymysql", &[u.as_str().into()], &[("hots", "x".into())]).unwrap_err();
        assert!(e.to_string().contains("'hots'"), "{e}");
        let c = dbapi::connect(
            "MySQLdb",
            &[u.as_str().into()],
            &[
                ("charset", "utf8mb4".into()),
                ("sql_mode", "ANSI_QUOTES".into()),
                ("init_command", "SET @adbapi = 5".into()),
                ("autocommit", true.into()),
                ("cursorclass", "MySQLdb.cursors.DictCursor".into()),
                ("read_timeout", 30.into()),
            ],
        )
        .unwrap();
        let rows = exec(&c, "SELECT @adbapi AS x, @@sql_mode AS m, @@autocommit AS a, @@character_set_client AS cs", ());
        assert_eq!(rows[0].get_by_name::<i64>("x").unwrap(), 5);
        assert_eq!(rows[0].get_by_name::<String>("m").unwrap(), "ANSI_QUOTES");
        assert_eq!(rows[0].get_by_name::<i64>("a").unwrap(), 1);
        assert_eq!(rows[0].get_by_name::<String>("cs").unwrap(), "utf8mb4");
        let e = dbapi::connect("pymysql", &[u.as_str().into()], &[("password", "wrong".into())]).unwrap_err();
        let dbapi::ConnectError::Db(e) = e else { panic!("{e}") };
        assert_eq!((e.kind(), e.code()), (dbapi::ErrorKind::OperationalError, Some("1045")), "{e}");
        for name in ["pymysql", "MySQLdb", "mysql.connector", "mysql"] {
            assert!(dbapi::lookup_module(name).is_ok(), "{name} registered");
        }
        assert_eq!(dbapi::lookup_module("MySQLdb").unwrap().paramstyle(), "format");
        assert_eq!(dbapi::lookup_module("pymysql").unwrap().paramstyle(), "pyformat");
    }
}

my_test! {
    /// A lost connection without cp_reconnect keeps failing, as in Twisted
    /// (weakness kept on purpose), and recognisably as lost.
    fn killed_connection_without_reconnect_keeps_failing() {
        let reactor = Reactor::new().unwrap();
        let p = pool_on(&reactor, &url(), adbapi::kwargs! { "cp_min" => 1, "cp_max" => 1 });
        let p2 = p.clone();
        let failures = run_chain(&reactor, Duration::from_secs(60), move || {
            let p3 = p2.clone();
            id_of(&p2).add_callback_deferred(move |id| {
                exec(&direct(), &format!("KILL CONNECTION {id}"), ());
                let jobs: Vec<Deferred<Result<Vec<Row>, String>>> = (0..3)
                    .map(|_| p3.run_query("SELECT 1", ()).add_both(|r| Ok(r.map_err(|f| f.to_string()))))
                    .collect();
                gather_results(jobs, true)
            })
        })
        .unwrap();
        assert!(failures.iter().all(Result::is_err), "{failures:?}");
    }
}

my_test! {
    /// A connection a `KILL QUERY` was sent for never starts another
    /// transaction: the kill is asynchronous and could land on a later
    /// statement, so the rollback after it closes the session (marked lost,
    /// for the pool to replace) instead of letting the next job run there.
    fn a_connection_a_kill_was_sent_for_is_not_reused() {
        let c = direct();
        exec(&c, "SELECT 1", ());
        let before = exec(&direct(), "SELECT count(*) FROM information_schema.processlist", ())[0].get::<i64>(0).unwrap();
        c.canceller().expect("the mysql driver can cancel").cancel().expect("KILL QUERY sent");
        let e = c.rollback().expect_err("no transaction starts after a kill");
        assert!(e.is_connection_lost(), "{e}");
        let e = c.cursor().and_then(|mut cur| cur.execute("SELECT 1", ()).map(|_| ())).unwrap_err();
        assert!(e.is_connection_lost(), "{e}");
        let after = exec(&direct(), "SELECT count(*) FROM information_schema.processlist", ())[0].get::<i64>(0).unwrap();
        assert!(after < before + 1, "the session was closed ({before} -> {after})");
    }
}
