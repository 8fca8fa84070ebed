//! PostgreSQL-specific tests of what the `psycopg2` driver does with SQL and
//! values, against a real server: value mapping both ways (and `void`
//! columns), pyformat and native placeholders, and several statements in
//! one `execute` with and without parameters. The pool's behaviour under
//! failures is in `postgres.rs`.
//!
//! They need `ADBAPI_PG_URL` (see `scripts/pg-test-server`); without it they
//! are reported as ignored with a `SKIPPED` reason.

use std::time::Duration;

use adbapi::dbapi::{self, ProgrammingError};
use adbapi::{Params, Value};
use deferred::Failure;
use reactor::Reactor;

use integration_tests::harness::run_chain;
use integration_tests::pg::{direct, exec, pool_on, sharing_server};
use integration_tests::pg_test;

#[test]
#[cfg_attr(
    not(pg_available),
    ignore = "SKIPPED: no PostgreSQL server; set ADBAPI_PG_URL (eval \"$(scripts/pg-test-server start)\")"
)]
fn values_map_both_ways() {
    let _server = sharing_server();
    let c = direct();
    exec(&c, "DROP TABLE IF EXISTS pg_types", ());
    exec(
        &c,
        "CREATE TABLE pg_types (b bool, i2 int2, i4 int4, i8 int8, f4 float4, f8 float8, n numeric(12,3), \
         t text, v varchar(10), ch char(3), by bytea, d date, tm time, ts timestamp, tz timestamptz, j json, jb jsonb, u uuid)",
        (),
    );
    let mut cur = c.cursor().unwrap();
    cur.execute(
        "INSERT INTO pg_types VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %(v)s, 'ab', %(by)s, '2024-02-29', '13:14:15.5', \
         '2024-02-29 13:14:15', '2024-02-29 13:14:15+02', '{\"a\": [1, 2]}', '{\"b\": null}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11')",
        Params::named([
            ("v", Value::from("var")),
            ("by", Value::Bytes(vec![0, 1, 255])),
        ]),
    )
    .expect_err("mixing %s and %(name)s is an error");
    c.rollback().unwrap();
    cur.execute(
        "INSERT INTO pg_types VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        vec![
            Value::Bool(true),
            Value::Int(7),
            Value::Int(70_000),
            Value::Int(7_000_000_000),
            Value::Float(1.5),
            Value::Float(2.25),
            Value::from("12345.678"),
            Value::from("text"),
            Value::from("var"),
            Value::from("ab"),
            Value::Bytes(vec![0, 1, 255]),
            Value::from("2024-02-29"),
            Value::from("13:14:15.5"),
            Value::from("2024-02-29 13:14:15"),
            Value::from("2024-02-29 13:14:15+02"),
            Value::from("{\"a\": [1, 2]}"),
            Value::from("{\"b\": null}"),
            Value::from("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        ],
    )
    .unwrap();
    c.commit().unwrap();
    cur.execute("SELECT * FROM pg_types", ()).unwrap();
    let r = cur.fetchone().unwrap().unwrap();
    assert_eq!(
        r.values(),
        &[
            Value::Bool(true),
            Value::Int(7),
            Value::Int(70_000),
            Value::Int(7_000_000_000),
            Value::Float(1.5),
            Value::Float(2.25),
            Value::from("12345.678"),
            Value::from("text"),
            Value::from("var"),
            Value::from("ab "),
            Value::Bytes(vec![0, 1, 255]),
            Value::from("2024-02-29"),
            Value::from("13:14:15.5"),
            Value::from("2024-02-29 13:14:15"),
            Value::from("2024-02-29 11:14:15+00"),
            Value::from("{\"a\": [1, 2]}"),
            Value::from("{\"b\": null}"),
            Value::from("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        ][..]
    );
    let desc = cur.description().unwrap();
    assert_eq!(desc[6].type_code.as_deref(), Some("numeric"));
    // NULL binds to any type and comes back as Null.
    cur.execute("SELECT %s::date, %s::int4", vec![Value::Null, Value::Null])
        .unwrap();
    assert_eq!(
        cur.fetchone().unwrap().unwrap().values(),
        &[Value::Null, Value::Null][..]
    );
    // Out of range for the column's type is a DataError, not a panic.
    let e = cur.execute("SELECT %s::int2", (70_000,)).unwrap_err();
    assert_eq!(e.kind(), dbapi::ErrorKind::DataError, "{e}");
    c.rollback().unwrap();
    // Unsupported column types name the column and the type.
    let e = cur.execute("SELECT point(1, 2) AS pt", ()).unwrap_err();
    assert_eq!(e.kind(), dbapi::ErrorKind::NotSupportedError);
    assert!(
        e.message().contains("\"pt\"") && e.message().contains("point"),
        "{e}"
    );
}

#[test]
#[cfg_attr(
    not(pg_available),
    ignore = "SKIPPED: no PostgreSQL server; set ADBAPI_PG_URL (eval \"$(scripts/pg-test-server start)\")"
)]
fn pyformat_and_native_placeholders() {
    let _server = sharing_server();
    let c = direct();
    let mut cur = c.cursor().unwrap();
    cur.execute(
        "SELECT '%s', %s::text, 'a%%b', 10 %% 3, %(x)s::int8 + %(x)s::int8",
        Params::named([("x", 5)]),
    )
    .expect_err("%s with named parameters is refused");
    c.rollback().unwrap();
    cur.execute("SELECT '%s', %s::text, 'a%%b', 10 %% 3", ("v",))
        .unwrap();
    assert_eq!(
        cur.fetchone().unwrap().unwrap().values(),
        &[
            Value::from("%s"),
            Value::from("v"),
            Value::from("a%b"),
            Value::Int(1)
        ][..]
    );
    cur.execute(
        "SELECT %(x)s::int8 + %(x)s::int8, %(y)s::text",
        Params::named([("x", Value::Int(5)), ("y", Value::from("y"))]),
    )
    .unwrap();
    assert_eq!(
        cur.fetchone().unwrap().unwrap().values(),
        &[Value::Int(10), Value::from("y")][..]
    );
    cur.execute("SELECT $1::int8 + $2::int8", (1, 2)).unwrap();
    assert_eq!(cur.fetchone().unwrap().unwrap()[0], Value::Int(3));
    // Parameters are bound, never spliced.
    cur.execute("SELECT %s::text", ("'; DROP TABLE x; --",))
        .unwrap();
    assert_eq!(
        cur.fetchone().unwrap().unwrap()[0],
        Value::from("'; DROP TABLE x; --")
    );
    let e = cur.execute("SELECT nosuchcolumn", ()).unwrap_err();
    assert!(e.code() == Some("42703"));
    let f = Failure::new(e);
    assert!(f.check::<ProgrammingError>().is_some());
    c.rollback().unwrap();
}

pg_test! {
    /// Issue 9, defect 7: a `void` column (`pg_sleep`, `NULL::void`) is
    /// `Null`, as the driver's type table says, not a `NotSupportedError`.
    fn void_columns_are_null() {
        let _server = sharing_server();
        let c = direct();
        let mut cur = c.cursor().unwrap();
        cur.execute("SELECT pg_sleep(0.01)", ()).unwrap();
        assert_eq!(cur.fetchall().unwrap()[0].values(), &[Value::Null][..]);
        assert_eq!(cur.description().unwrap()[0].type_code.as_deref(), Some("void"));
        cur.execute("SELECT NULL::void, ''::void AS v, 1", ()).unwrap();
        assert_eq!(
            cur.fetchall().unwrap()[0].values(),
            &[Value::Null, Value::Null, Value::Int(1)][..]
        );
        c.rollback().unwrap();
        let reactor = Reactor::new().unwrap();
        let p = pool_on(&reactor, adbapi::kwargs! { "cp_max" => 1 });
        let rows = run_chain(&reactor, Duration::from_secs(60), move || {
            p.run_query("SELECT pg_sleep(0.01)", ())
        })
        .unwrap();
        assert_eq!(rows[0].values(), &[Value::Null][..]);
    }
}

pg_test! {
    /// Issue 9, defect 6: several statements without parameters run, as in
    /// psycopg2 (one simple Query message); the cursor reports the last one.
    fn multiple_statements_without_parameters_run() {
        let _server = sharing_server();
        let c = direct();
        let mut cur = c.cursor().unwrap();
        cur.execute(
            "CREATE TEMP TABLE m (k text, n int); INSERT INTO m VALUES ('a', 1); INSERT INTO m VALUES ('b', 2), ('c;', 3)",
            (),
        )
        .unwrap();
        assert_eq!(cur.rowcount(), 2, "the last INSERT's row count");
        assert!(cur.description().is_none());
        cur.execute("UPDATE m SET n = n + 1; SELECT k, n FROM m ORDER BY k -- trailing; comment", ())
            .unwrap();
        assert_eq!(cur.rowcount(), 3);
        let desc = cur.description().unwrap();
        assert_eq!(
            desc.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
            ["k", "n"]
        );
        let rows = cur.fetchall().unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].values(), &[Value::from("a"), Value::from("2")][..]);
        assert_eq!(rows[2].values(), &[Value::from("c;"), Value::from("4")][..]);
        // A `;` inside literals, comments and dollar quotes is not a separator:
        // these stay on the typed path.
        cur.execute("SELECT 'x;y', $$;$$, 2 /* ; */ ;", ()).unwrap();
        assert_eq!(
            cur.fetchall().unwrap()[0].values(),
            &[Value::from("x;y"), Value::from(";"), Value::Int(2)][..]
        );
        c.rollback().unwrap();

        let reactor = Reactor::new().unwrap();
        let p = pool_on(&reactor, adbapi::kwargs! { "cp_max" => 1 });
        let name = format!("pg_multi_{}", std::process::id());
        exec(&c, &format!("DROP TABLE IF EXISTS {name}"), ());
        let drop_table = format!("DROP TABLE {name}");
        let (p2, n2) = (p.clone(), name.clone());
        let rows = run_chain(&reactor, Duration::from_secs(60), move || {
            p.run_operation(
                &format!("CREATE TABLE {name} (k text); INSERT INTO {name} VALUES ('a')"),
                (),
            )
            .add_callback_deferred(move |()| p2.run_query(&format!("SELECT k FROM {n2}"), ()))
        })
        .unwrap();
        assert_eq!(rows[0].values(), &[Value::from("a")][..]);
        exec(&c, &drop_table, ());
    }
}

pg_test! {
    /// Issue 9, defect 6: with parameters, several statements are a clear
    /// `ProgrammingError` (the extended protocol runs one statement), and
    /// nothing runs.
    fn multiple_statements_with_parameters_are_a_clear_error() {
        let _server = sharing_server();
        let c = direct();
        let mut cur = c.cursor().unwrap();
        let e = cur
            .execute("CREATE TEMP TABLE mp (k text); INSERT INTO mp VALUES (%s)", ("a",))
            .unwrap_err();
        assert_eq!(e.kind(), dbapi::ErrorKind::ProgrammingError, "{e}");
        assert!(e.message().contains("multiple statements"), "{e}");
        assert!(e.sql().is_some_and(|s| s.contains("CREATE TEMP TABLE mp")));
        c.rollback().unwrap();
        assert_eq!(
            exec(&c, "SELECT to_regclass('pg_temp.mp') IS NULL", ())[0][0],
            Value::Bool(true)
        );
    }
}
