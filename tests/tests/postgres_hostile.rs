//! Hostile input for the PostgreSQL driver, through a `ConnectionPool`
//! (issue 9): NUL characters, bytes that are not UTF-8, huge values and
//! statements, wrong pyformat parameters, several statements with
//! parameters, and SQL holding no statement. Each case is a typed error
//! naming the problem (or, where PostgreSQL can hold the value, a faithful
//! round trip); nothing is changed by a failing case, and the pool serves a
//! follow-up query after every case.
//!
//! They need `ADBAPI_PG_URL` (see `scripts/pg-test-server`); without it they
//! are reported as ignored with a `SKIPPED` reason.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use adbapi::dbapi::{self, ErrorKind};
use adbapi::{Arg, ConnectionPool, Params, Row, Value};
use deferred::{Deferred, Failure};
use reactor::prelude::*;
use reactor::Reactor;

use integration_tests::pg::{direct_to, exec, sharing_server, url};

/// A case's name, result, follow-up query rows and the table's contents.
type CaseOutcome = (String, Result<Vec<Row>, Failure>, Vec<Row>, Vec<Row>);

/// What a case must give.
enum Expect {
    /// A `DbError` of this kind whose message contains the text.
    Error(ErrorKind, &'static str),
    /// Success, with these rows.
    Rows(Vec<Vec<Value>>),
}

struct Case {
    name: &'static str,
    sql: String,
    params: Params,
    expect: Expect,
}

fn case(
    name: &'static str,
    sql: impl Into<String>,
    params: impl Into<Params>,
    expect: Expect,
) -> Case {
    Case {
        name,
        sql: sql.into(),
        params: params.into(),
        expect,
    }
}

fn err(kind: ErrorKind, text: &'static str) -> Expect {
    Expect::Error(kind, text)
}

/// Runs `reactor` until `body`'s Deferred fires, failing after `limit`.
fn run<T: 'static>(
    reactor: &Reactor,
    limit: Duration,
    body: impl FnOnce() -> Deferred<T> + 'static,
) -> Result<T, Failure> {
    let out: Rc<RefCell<Option<Result<T, Failure>>>> = Rc::new(RefCell::new(None));
    let (o, r) = (out.clone(), reactor.clone());
    reactor.call_when_running(move || {
        let r2 = r.clone();
        let _ = body().add_both(move |res| {
            *o.borrow_mut() = Some(res);
            let _ = r2.stop();
            Ok(())
        });
    });
    let r = reactor.clone();
    let watchdog = reactor.call_later(limit, move || {
        let _ = r.stop();
    });
    reactor.run().unwrap();
    let _ = watchdog.cancel();
    let res = out.borrow_mut().take();
    res.unwrap_or_else(|| panic!("the Deferred did not fire within {limit:?}"))
}

#[test]
#[cfg_attr(
    not(pg_available),
    ignore = "SKIPPED: no PostgreSQL server; set ADBAPI_PG_URL (eval \"$(scripts/pg-test-server start)\")"
)]
fn hostile_input_table() {
    let _server = sharing_server();
    let table = format!("pg_hostile_{}", std::process::id());
    let c = direct_to(&url());
    exec(&c, &format!("DROP TABLE IF EXISTS {table}"), ());
    exec(
        &c,
        &format!("CREATE TABLE {table} (k int8 PRIMARY KEY, t text, b bytea)"),
        (),
    );
    exec(
        &c,
        &format!("INSERT INTO {table} VALUES (0, 'seed', '\\x00ff')"),
        (),
    );
    let ins = format!("INSERT INTO {table} (k, t, b) VALUES (%s, %s, %s)");
    let big_bytes: Vec<u8> = (0..16 * 1024 * 1024)
        .map(|i: u32| (i % 251) as u8)
        .collect();
    let big_literal = "x".repeat(8 * 1024 * 1024);
    let too_many = vec![Value::Int(1); 70_000];
    let too_many_sql = format!(
        "SELECT 1 WHERE 1 IN ({})",
        vec!["%s::int8"; 70_000].join(", ")
    );
    let (t, p) = (ErrorKind::ProgrammingError, ErrorKind::DataError);
    let cases = vec![
        case("NUL in SQL", "SELECT 'a\0b'", (), err(t, "NUL")),
        case(
            "NUL in a text parameter",
            ins.clone(),
            (1, "a\0b", Value::Null),
            err(p, "0x00"),
        ),
        case(
            "NUL in bytea round-trips",
            "SELECT %s::bytea",
            (Value::Bytes(vec![0, 1, 0, 255]),),
            Expect::Rows(vec![vec![Value::Bytes(vec![0, 1, 0, 255])]]),
        ),
        case(
            "bytes that are not UTF-8 bound to text",
            ins.clone(),
            (2, Value::Bytes(vec![0xc3, 0x28]), Value::Null),
            err(p, "bytea"),
        ),
        case(
            "invalid UTF-8 made on the server",
            "SELECT convert_from('\\xc328'::bytea, 'UTF8')",
            (),
            err(p, "invalid byte sequence"),
        ),
        case(
            "huge bytea round-trips",
            "SELECT %s::bytea",
            (Value::Bytes(big_bytes.clone()),),
            Expect::Rows(vec![vec![Value::Bytes(big_bytes)]]),
        ),
        case(
            "huge statement",
            format!("SELECT length('{big_literal}')"),
            (),
            Expect::Rows(vec![vec![Value::Int(8 * 1024 * 1024)]]),
        ),
        case(
            "more parameters than PostgreSQL takes",
            too_many_sql,
            too_many,
            err(t, "parameters"),
        ),
        case(
            "too few %s parameters",
            "SELECT %s::int8, %s::int8",
            (1,),
            err(t, "not enough parameters"),
        ),
        case(
            "too many %s parameters",
            "SELECT %s::int8",
            (1, 2),
            err(t, "not all parameters"),
        ),
        case(
            "missing %(name)s parameter",
            "SELECT %(a)s::int8, %(b)s::int8",
            Params::named([("a", 1)]),
            err(t, "missing named parameter 'b'"),
        ),
        case(
            "%(name)s with positional parameters",
            "SELECT %(a)s::int8",
            (1,),
            err(t, "named parameters"),
        ),
        case(
            "%s with named parameters",
            "SELECT %s::int8",
            Params::named([("a", 1)]),
            err(t, "named parameters"),
        ),
        case(
            "unsupported %d",
            "SELECT %d",
            (1,),
            err(t, "unsupported format character 'd'"),
        ),
        case(
            "lone % at the end",
            "SELECT %s::int8 %",
            (1,),
            err(t, "end of query"),
        ),
        case(
            "unterminated %(name",
            "SELECT %(a::int8",
            Params::named([("a", 1)]),
            err(t, "unterminated"),
        ),
        case(
            "%% is a literal % with parameters",
            "SELECT 10 %% %s::int8",
            (3,),
            Expect::Rows(vec![vec![Value::Int(1)]]),
        ),
        case(
            "multiple statements with parameters",
            format!("INSERT INTO {table} (k) VALUES (3); INSERT INTO {table} (k) VALUES (%s)"),
            (4,),
            err(t, "multiple statements"),
        ),
        case(
            "multiple statements, the second failing, change nothing",
            format!("INSERT INTO {table} (k) VALUES (5); INSERT INTO {table} (k) VALUES (0)"),
            (),
            err(ErrorKind::IntegrityError, "duplicate key"),
        ),
        case("empty SQL", "", (), err(t, "empty query")),
        case("whitespace only", " \n\t ", (), err(t, "empty query")),
        case(
            "comment only",
            "-- nothing here\n/* nor here */ ;",
            (),
            err(t, "empty query"),
        ),
        case("semicolons only", ";;", (), err(t, "empty query")),
    ];
    let reactor = Reactor::new().unwrap();
    let pool = ConnectionPool::new(
        "psycopg2",
        vec![url().into()],
        vec![
            ("cp_reactor".to_owned(), Arg::reactor(reactor.clone())),
            ("cp_min".to_owned(), Arg::Value(Value::Int(1))),
            ("cp_max".to_owned(), Arg::Value(Value::Int(2))),
        ],
    )
    .unwrap();
    let n = cases.len();
    let mut cases = cases;
    let expects: Vec<Expect> = cases
        .iter_mut()
        .map(|c| std::mem::replace(&mut c.expect, Expect::Rows(Vec::new())))
        .collect();
    let check_sql =
        format!("SELECT count(*), string_agg(k::text || coalesce(t, ''), ',') FROM {table}");
    let p = pool.clone();
    let outcomes = run(&reactor, Duration::from_secs(300), move || {
        // One case after the other, each followed by a follow-up query and
        // the table's contents.
        let mut chain: Deferred<Vec<CaseOutcome>> = deferred::succeed(Vec::new());
        for cs in cases {
            let (p2, check) = (p.clone(), check_sql.clone());
            chain = chain.add_callback_deferred(move |mut acc| {
                let (p3, p4) = (p2.clone(), p2.clone());
                p2.run_query(&cs.sql, cs.params)
                    .add_both(Ok)
                    .add_callback_deferred(move |r| {
                        p3.run_query("SELECT 1", ()).add_callback(move |f| (r, f))
                    })
                    .add_callback_deferred(move |(r, f)| {
                        p4.run_query(&check, ()).add_callback(move |rows| {
                            acc.push((cs.name.to_owned(), r, f, rows));
                            acc
                        })
                    })
            });
        }
        chain
    })
    .expect("every follow-up query succeeded");
    assert_eq!(outcomes.len(), n);
    for ((name, result, follow_up, contents), expect) in outcomes.into_iter().zip(expects) {
        assert_eq!(
            follow_up[0][0],
            Value::Int(1),
            "{name}: the follow-up query"
        );
        assert_eq!(
            contents[0].values(),
            &[Value::Int(1), Value::from("0seed")][..],
            "{name}: the table is unchanged"
        );
        match (expect, result) {
            (Expect::Rows(want), Ok(rows)) => {
                let got: Vec<Vec<Value>> = rows.iter().map(|r| r.values().to_vec()).collect();
                assert!(got == want, "{name}: wrong rows ({} of them)", got.len());
            }
            (Expect::Error(kind, text), Err(f)) => {
                let e = f
                    .check::<dbapi::DbError>()
                    .unwrap_or_else(|| panic!("{name}: not a DbError: {f:?}"));
                assert_eq!(e.kind(), kind, "{name}: {e}");
                assert!(e.message().contains(text), "{name}: {e:?} lacks {text:?}");
            }
            (Expect::Rows(_), Err(f)) => panic!("{name}: expected rows, got {f}"),
            (Expect::Error(kind, _), Ok(rows)) => {
                panic!("{name}: expected {kind:?}, got {} rows", rows.len())
            }
        }
    }
    exec(&c, &format!("DROP TABLE {table}"), ());
}
