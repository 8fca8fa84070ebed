//! The MySQL/MariaDB driver under attack: pymysql connect arguments,
//! `%s`/`%(name)s` with bound values, types both ways, error mapping, rows by
//! name, KILL QUERY cancels and timeouts (a cancel of an autocommit job is
//! declined: it reports what happened). Needs `ADBAPI_MYSQL_URL` (see
//! `scripts/mysql-test-server`); without it the tests are reported as
//! ignored with a `SKIPPED` reason. (One PostgreSQL case, rows by name,
//! sits here beside its MySQL twin; it needs `ADBAPI_PG_URL`.)

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use adbapi::dbapi::{self, DbConnection, ErrorKind};
use adbapi::{kwargs, Arg, ConnectionPool, Params, Row, Value};
use deferred::{Deferred, Failure};
use reactor::prelude::*;
use reactor::Reactor;

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

type Slot<T> = Rc<RefCell<Option<Result<T, Failure>>>>;

fn slot<T>() -> Slot<T> {
    Rc::new(RefCell::new(None))
}

// ---------------------------------------------------------------- react

/// The pool made inside `main` (no `cp_reactor`) is dropped when `main`
/// returns; the query's Deferred is what `main` returns. Dropping the last
/// handle closes the pool as `final_close` does, so the job still runs and
/// its Deferred fires: exit code 0 with the row.
fn my_url() -> String {
    integration_tests::mysql::url()
}

fn my_conn(extra: &[(&str, Value)]) -> DbConnection {
    dbapi::connect("pymysql", &[my_url().into()], extra).expect("connect")
}

fn q(
    conn: &DbConnection,
    sql: &str,
    params: impl Into<Params>,
) -> Result<Vec<Row>, dbapi::DbError> {
    let mut c = conn.cursor()?;
    c.execute(sql, params)?;
    c.fetchall()
}

fn err_of(r: Result<Vec<Row>, dbapi::DbError>) -> dbapi::DbError {
    match r {
        Ok(rows) => panic!("expected an error, got {rows:?}"),
        Err(e) => e,
    }
}

my_test! {
    /// Connect arguments: unknown ones and wrong types are an error naming
    /// the argument; a charset outside the utf8 family is refused.
    fn mysql_connect_arguments_are_checked() {
        let u = my_url();
        for (k, v, name) in [
            ("hots", Value::Text("x".into()), "hots"),
            ("port", Value::Float(3306.5), "port"),
            ("port", Value::Int(70000), "port"),
            ("user", Value::Int(5), "user"),
            ("connect_timeout", Value::Text("soon".into()), "connect_timeout"),
            ("read_timeout", Value::Int(-1), "read_timeout"),
            ("autocommit", Value::Int(2), "autocommit"),
            ("charset", Value::Text("latin1".into()), "charset"),
            ("charset", Value::Int(8), "charset"),
            ("cursorclass", Value::Text("pymysql.cursors.SSDictCursor".into()), "cursorclass"),
            ("sql_mode", Value::Text("ANSI'; DROP TABLE x; --".into()), "sql_mode"),
        ] {
            let e = dbapi::connect("pymysql", &[u.clone().into()], &[(k, v.clone())]).err()
                .unwrap_or_else(|| panic!("{k}={v:?} accepted"));
            assert!(e.to_string().contains(name), "{k}={v:?}: {e}");
        }
        // port 0 is not a port (the message itself says 1-65535).
        let e = dbapi::connect("pymysql", &[u.clone().into()], &[("port", Value::Int(0))]).err();
        assert!(e.is_some_and(|e| e.to_string().contains("port")), "port=0 must be refused naming the argument");
    }
}

my_test! {
    /// `%s`, `%(name)s` and `%%` with bound parameters: values that look like
    /// SQL stay data; `%` inside literals; missing keys, extra parameters.
    fn mysql_placeholders_and_injection() {
        let c = my_conn(&[]);
        let evil = "x'); DROP TABLE t; -- \\' \" %s ?";
        let rows = q(&c, "SELECT %s, '100%%', %s", (evil, 5)).unwrap();
        assert_eq!(rows[0][0], Value::Text(evil.into()));
        assert_eq!(rows[0][1], Value::Text("100%".into()));
        assert_eq!(rows[0][2], Value::Int(5));
        // Without parameters nothing is formatted: '100%' stays.
        assert_eq!(q(&c, "SELECT '100%%'", ()).unwrap()[0][0], Value::Text("100%%".into()));
        // %(name)s twice, extra keys ignored (a dict % ignores them).
        let rows = q(&c, "SELECT %(a)s, %(a)s, %(b)s", Params::named([("a", Value::Int(1)), ("b", "b".into()), ("zz", Value::Null)])).unwrap();
        assert_eq!(rows[0].values(), &[Value::Int(1), Value::Int(1), Value::Text("b".into())]);
        // Missing key: a ProgrammingError naming it.
        let e = err_of(q(&c, "SELECT %(a)s, %(missing)s", Params::named([("a", Value::Int(1))])));
        assert_eq!(e.kind(), ErrorKind::ProgrammingError);
        assert!(e.message().contains("missing"), "{e}");
        // Extra positional parameters: refused (pymysql: not all arguments converted).
        let e = err_of(q(&c, "SELECT %s", (1, 2)));
        assert_eq!(e.kind(), ErrorKind::ProgrammingError, "{e}");
        // Too few.
        let e = err_of(q(&c, "SELECT %s, %s", (1,)));
        assert_eq!(e.kind(), ErrorKind::ProgrammingError, "{e}");
        // %s inside a comment and a backtick name is not a parameter.
        let rows = q(&c, "SELECT %s AS `a%sb` -- %s\n", (9,)).unwrap();
        assert_eq!(rows[0].get_by_name::<i64>("a%sb").unwrap(), 9);
        // An executable comment is SQL to the server: `%s` in it.
        let r = q(&c, "SELECT 1 /*!, %s */", (7,));
        match r {
            Ok(rows) => assert_eq!(rows[0].values(), &[Value::Int(1), Value::Int(7)]),
            Err(e) => assert_eq!(e.kind(), ErrorKind::ProgrammingError, "{e}"),
        }
    }
}

my_test! {
    /// Types both ways: the text protocol (no parameters) and the binary
    /// protocol (with a parameter) give the same values, as pymysql gives.
    fn mysql_types_both_protocols() {
        let c = my_conn(&[("sql_mode", Value::Text("".into()))]);
        let t = format!("ty_{}", std::process::id());
        q(&c, &format!("DROP TABLE IF EXISTS {t}"), ()).unwrap();
        q(&c, &format!(
            "CREATE TABLE {t} (u BIGINT UNSIGNED, d DECIMAL(65,30), dt DATETIME(6), tm TIME(1), tneg TIME, \
             zd DATE, zdt DATETIME, b BIT(64), j JSON, e ENUM('a','b'), s SET('x','y'), y YEAR, f FLOAT, ts TIMESTAMP(3) NULL)"
        ), ()).unwrap();
        q(&c, &format!(
            "INSERT INTO {t} VALUES (18446744073709551615, '12345678901234567890123456789012345.123456789012345678901234567891', \
             '2020-01-02 03:04:05.123456', '100:00:00.5', '-838:59:59', '0000-00-00', '0000-00-00 00:00:00', \
             b'1111111111111111111111111111111111111111111111111111111111111111', '{{\"k\": [1, 2]}}', 'b', 'x,y', 2155, 0.1, \
             '2021-05-06 07:08:09.5')"
        ), ()).unwrap();
        c.commit().unwrap();
        let text = q(&c, &format!("SELECT * FROM {t}"), ()).unwrap();
        let bin = q(&c, &format!("SELECT * FROM {t} WHERE 1 = %s"), (1,)).unwrap();
        let want = vec![
            Value::Text("18446744073709551615".into()),
            Value::Text("12345678901234567890123456789012345.123456789012345678901234567891".into()),
            Value::Text("2020-01-02 03:04:05.123456".into()),
            Value::Text("100:00:00.5".into()),
            Value::Text("-838:59:59".into()),
            Value::Text("0000-00-00".into()),
            Value::Text("0000-00-00 00:00:00".into()),
            Value::Bytes(vec![0xff; 8]),
            Value::Text("{\"k\": [1, 2]}".into()),
            Value::Text("b".into()),
            Value::Text("x,y".into()),
            Value::Int(2155),
            Value::Float(0.1),
            Value::Text("2021-05-06 07:08:09.500".into()),
        ];
        assert_eq!(text[0].values(), &want[..], "text protocol");
        assert_eq!(bin[0].values(), &want[..], "binary protocol");
        // Parameters the other way: the max unsigned as text, decimal text.
        let r = q(&c, &format!("SELECT count(*) FROM {t} WHERE u = %s AND d = %s"),
            ("18446744073709551615", "12345678901234567890123456789012345.123456789012345678901234567891")).unwrap();
        assert_eq!(r[0][0], Value::Int(1));
        // GEOMETRY is refused naming the column.
        let e = err_of(q(&c, "SELECT POINT(1, 2) AS pt", ()));
        assert_eq!(e.kind(), ErrorKind::NotSupportedError);
        assert!(e.message().contains("pt"), "{e}");
        q(&c, &format!("DROP TABLE {t}"), ()).unwrap();
    }
}

my_test! {
    /// Error mapping as pymysql's: 1064 ProgrammingError, 1146 ProgrammingError,
    /// 1062 IntegrityError, 1048 IntegrityError, 1406 DataError; code() is the
    /// errno; sql() the statement.
    fn mysql_error_mapping() {
        let c = my_conn(&[]);
        let e = err_of(q(&c, "SELEC 1", ()));
        assert_eq!((e.kind(), e.code()), (ErrorKind::ProgrammingError, Some("1064")), "{e}");
        assert_eq!(e.sql(), Some("SELEC 1"));
        let e = err_of(q(&c, "SELECT * FROM no_such_table_review3", ()));
        assert_eq!((e.kind(), e.code()), (ErrorKind::ProgrammingError, Some("1146")), "{e}");
        let f = Failure::new(e.clone());
        assert!(format!("{f}").contains("no_such_table_review3"), "{f}");
        let t = format!("em_{}", std::process::id());
        q(&c, &format!("CREATE TABLE {t} (k INT PRIMARY KEY, v VARCHAR(2) NOT NULL)"), ()).unwrap();
        q(&c, &format!("INSERT INTO {t} VALUES (1, 'a')"), ()).unwrap();
        let e = err_of(q(&c, &format!("INSERT INTO {t} VALUES (%s, %s)"), (1, "b")));
        assert_eq!((e.kind(), e.code()), (ErrorKind::IntegrityError, Some("1062")), "{e}");
        let e = err_of(q(&c, &format!("INSERT INTO {t} VALUES (%s, %s)"), (2, Value::Null)));
        assert_eq!((e.kind(), e.code()), (ErrorKind::IntegrityError, Some("1048")), "{e}");
        let e = err_of(q(&c, &format!("INSERT INTO {t} VALUES (%s, %s)"), (3, "toolong")));
        assert_eq!((e.kind(), e.code()), (ErrorKind::DataError, Some("1406")), "{e}");
        c.rollback().unwrap();
        q(&c, &format!("DROP TABLE {t}"), ()).unwrap();
    }
}

my_test! {
    /// Rows by name on MariaDB: exact names (pymysql DictCursor keys are
    /// exact), duplicates: pymysql's DictCursor keys the second `id` of a join
    /// as `b.id` (table-qualified) so both stay reachable.
    fn mysql_rows_by_name() {
        let c = my_conn(&[]);
        let t = format!("rn_{}", std::process::id());
        q(&c, &format!("CREATE TABLE {t}a (id INT)"), ()).unwrap();
        q(&c, &format!("CREATE TABLE {t}b (id INT)"), ()).unwrap();
        q(&c, &format!("INSERT INTO {t}a VALUES (1)"), ()).unwrap();
        q(&c, &format!("INSERT INTO {t}b VALUES (2)"), ()).unwrap();
        let rows = q(&c, &format!("SELECT a.id, b.id, 3 AS Mixed FROM {t}a a, {t}b b"), ()).unwrap();
        assert_eq!(rows[0].get_by_name::<i64>("id").unwrap(), 1);
        assert_eq!(rows[0].get_by_name::<i64>("Mixed").unwrap(), 3);
        assert!(rows[0].get_by_name::<i64>("mixed").is_err(), "exact, as a dict");
        // Documented: the first of duplicate names wins; alias the second.
        let aliased = q(&c, &format!("SELECT a.id, b.id AS b_id FROM {t}a a, {t}b b"), ()).unwrap();
        q(&c, &format!("DROP TABLE {t}a"), ()).unwrap();
        q(&c, &format!("DROP TABLE {t}b"), ()).unwrap();
        assert_eq!(aliased[0].get_by_name::<i64>("b_id").unwrap(), 2);
    }
}

/// Runs `reactor` until `d` fires (bounded by `limit`).
fn run_until<T: 'static>(reactor: &Reactor, limit: Duration, d: Deferred<T>) -> Result<T, Failure> {
    let out = slot::<T>();
    let (o, r) = (out.clone(), reactor.clone());
    let _ = d.add_both(move |res| {
        *o.borrow_mut() = Some(res);
        let _ = r.stop();
        Ok(())
    });
    let r = reactor.clone();
    let dog = reactor.call_later(limit, move || {
        let _ = r.stop();
    });
    if out.borrow().is_none() {
        reactor.run().unwrap();
    }
    let _ = dog.cancel();
    let res = out.borrow_mut().take();
    res.unwrap_or_else(|| panic!("did not fire within {limit:?}"))
}

type Outcome = (u32, Option<(bool, String)>);

/// Four jobs at a time (one per worker), 40 waves: job `i` sleeps
/// `(i % 5) * 5` ms on the server, then inserts row `i`; its timeout is
/// `i % 37` ms, so cancels land before, during and after the INSERT and
/// around the commit.
fn wave(
    pool: ConnectionPool,
    reactor: Reactor,
    w: u32,
    mut acc: Vec<Outcome>,
) -> Deferred<Vec<Outcome>> {
    if w == 40 {
        return deferred::succeed(acc);
    }
    let mut ds = Vec::new();
    for k in 0..4 {
        let i = w * 4 + k;
        let d = pool
            .run_interaction(move |txn| {
                txn.execute("DO SLEEP(%s)", (0.005 * f64::from(i % 5),))?;
                txn.execute("INSERT INTO inv VALUES (%s)", (i,))?;
                Ok(())
            })
            .add_timeout(Duration::from_millis(u64::from(i % 37)), &reactor);
        ds.push(d.add_both(move |r| {
            Ok((
                i,
                r.err().map(|f| {
                    (
                        f.check::<deferred::TimeoutError>().is_some()
                            || f.check::<deferred::CancelledError>().is_some(),
                        f.to_string(),
                    )
                }),
            ))
        }));
    }
    deferred::gather_results(ds, false).add_callback_deferred(move |got| {
        acc.extend(got);
        wave(pool, reactor, w + 1, acc)
    })
}

/// "Cancelled means nothing committed": jobs that insert a row (after a
/// short server-side sleep) with `add_timeout` at many offsets. Every job
/// whose Deferred failed with TimeoutError/CancelledError left no row;
/// every job that succeeded left its row; no other failure.
fn timeout_invariant(extra: Vec<(String, Arg)>) -> (usize, usize, Vec<String>) {
    let b = integration_tests::mysql::MysqlBackend::new();
    let c = integration_tests::mysql::direct_to(b.url());
    integration_tests::mysql::exec(
        &c,
        "CREATE TABLE inv (id INT PRIMARY KEY) ENGINE=InnoDB",
        (),
    );
    let reactor = Reactor::new().unwrap();
    let mut kw = vec![("cp_reactor".to_owned(), Arg::reactor(reactor.clone()))];
    kw.extend(kwargs! { "cp_max" => 4, "cp_reconnect" => true });
    kw.extend(extra);
    let pool = ConnectionPool::new("pymysql", vec![b.url().into()], kw).expect("pool");
    // Warm up: every worker holds a connection before the measured jobs.
    let warm: Vec<_> = (0..8)
        .map(|_| pool.run_operation("DO SLEEP(0.05)", ()))
        .collect();
    let (p2, r2) = (pool.clone(), reactor.clone());
    let jobs = deferred::gather_results(warm, false)
        .add_callback_deferred(move |_| wave(p2, r2, 0, Vec::new()));
    let all = run_until(&reactor, Duration::from_secs(120), jobs).unwrap();
    let rows = integration_tests::mysql::exec(&c, "SELECT id FROM inv", ());
    let present: std::collections::HashSet<i64> =
        rows.iter().map(|r| r.get::<i64>(0).unwrap()).collect();
    let (mut ok, mut cancelled, mut bad) = (0, 0, Vec::new());
    for (i, err) in all {
        let there = present.contains(&i64::from(i));
        match err {
            None if there => ok += 1,
            None => bad.push(format!("job {i} succeeded but its row is missing")),
            Some((true, _)) if !there => cancelled += 1,
            Some((true, m)) => bad.push(format!("job {i} reported {m} but its row was committed")),
            Some((false, m)) => bad.push(format!("job {i} failed: {m}")),
        }
    }
    drop(pool);
    (ok, cancelled, bad)
}

my_test! {
    /// The invariant under `add_timeout` at 25 offsets (the default
    /// autocommit=False session).
    fn mysql_timeouts_never_report_cancelled_for_committed_rows() {
        let (ok, cancelled, bad) = timeout_invariant(vec![]);
        assert!(bad.is_empty(), "ok={ok} cancelled={cancelled}: {bad:#?}");
        assert!(ok > 0 && cancelled > 0, "ok={ok} cancelled={cancelled}");
    }
}

my_test! {
    /// With pymysql's `autocommit=True` each statement commits on its own.
    /// The review found an interaction cancelled after its INSERT (while its
    /// next statement ran) failing with CancelledError although its row was
    /// durable. Now the cancel still stops the job (KILL QUERY) but is
    /// declined, so the Deferred reports what happened: README difference 8,
    /// "a Deferred that fails with CancelledError committed nothing".
    fn mysql_autocommit_cancel_stops_the_job_and_reports_what_happened() {
        let b = integration_tests::mysql::MysqlBackend::new();
        let c = integration_tests::mysql::direct_to(b.url());
        integration_tests::mysql::exec(&c, "CREATE TABLE ac (id INT PRIMARY KEY) ENGINE=InnoDB", ());
        let reactor = Reactor::new().unwrap();
        let mut kw = vec![("cp_reactor".to_owned(), Arg::reactor(reactor.clone()))];
        kw.extend(kwargs! { "cp_max" => 1, "autocommit" => true });
        let pool = ConnectionPool::new("pymysql", vec![b.url().into()], kw).expect("pool");
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let d = pool.run_interaction(move |txn| {
            txn.execute("INSERT INTO ac VALUES (%s)", (1,))?;
            let _ = tx.send(());
            txn.execute("DO SLEEP(30)", ())?;
            Ok(())
        });
        // Cancel once the INSERT has run (the job then sits in SLEEP).
        fn poll(r: Reactor, rx: Rc<std::sync::mpsc::Receiver<()>>, d: Deferred<()>, out: Slot<()>) {
            if rx.try_recv().is_ok() {
                d.cancel();
                let r2 = r.clone();
                let _ = d.add_both(move |res| {
                    *out.borrow_mut() = Some(res);
                    let _ = r2.stop();
                    Ok(())
                });
                return;
            }
            let r2 = r.clone();
            r.call_later(Duration::from_millis(5), move || poll(r2, rx, d, out));
        }
        let out = slot::<()>();
        poll(reactor.clone(), Rc::new(rx), d, out.clone());
        let r = reactor.clone();
        let dog = reactor.call_later(Duration::from_secs(60), move || {
            let _ = r.stop();
        });
        reactor.run().unwrap();
        let _ = dog.cancel();
        let res = out.borrow_mut().take().expect("fired");
        let rows = integration_tests::mysql::exec(&c, "SELECT count(*) FROM ac", ());
        drop(pool);
        // The INSERT committed by itself (autocommit), so the cancel cannot
        // mean "nothing committed": it still stops the job (the SLEEP is
        // killed) but the Deferred reports what happened, not CancelledError.
        // (A killed SLEEP() returns 1 rather than failing, so the job may
        // well succeed; it did not wait 30 s either way.)
        if let Err(f) = &res {
            assert!(f.check::<deferred::CancelledError>().is_none(), "{f}");
        }
        assert_eq!(rows[0][0], Value::Int(1), "the INSERT committed before the cancel");
    }
}

/// Rows by name on PostgreSQL (psycopg2's `DictCursor`/`RealDictCursor`
/// keys are exact): duplicates, the first wins; missing names are typed.
#[test]
#[cfg_attr(
    not(pg_available),
    ignore = "SKIPPED: no PostgreSQL server; set ADBAPI_PG_URL (eval \"$(scripts/pg-test-server start)\")"
)]
fn postgres_rows_by_name() {
    let url = std::env::var("ADBAPI_PG_URL").expect("ADBAPI_PG_URL");
    let conn = dbapi::connect("psycopg2", &[url.into()], &[]).expect("connect");
    let rows = q(
        &conn,
        "SELECT 1 AS id, 2 AS id, 3 AS \"Mixed\", %s::text AS t",
        ("x",),
    )
    .unwrap();
    assert_eq!(rows[0].get_by_name::<i64>("id").unwrap(), 1);
    assert_eq!(rows[0].get_by_name::<i64>("Mixed").unwrap(), 3);
    assert_eq!(rows[0].get_by_name::<String>("t").unwrap(), "x");
    let e = rows[0].get_by_name::<i64>("mixed").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InterfaceError);
    let e = rows[0].get_by_name::<i64>("t").unwrap_err();
    assert!(e.message().contains("\"t\""), "names the column: {e}");
}
