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

use adbapi::dbapi::ErrorKind;
use adbapi::{Params, Value};

use integration_tests::hostile::{case, err, rows, run_table};
use integration_tests::pg::{direct_to, exec, sharing_server, url};

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
            rows(vec![vec![Value::Bytes(vec![0, 1, 0, 255])]]),
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
            rows(vec![vec![Value::Bytes(big_bytes)]]),
        ),
        case(
            "huge statement",
            format!("SELECT length('{big_literal}')"),
            (),
            rows(vec![vec![Value::Int(8 * 1024 * 1024)]]),
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
            rows(vec![vec![Value::Int(1)]]),
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
    let check_sql =
        format!("SELECT count(*), string_agg(k::text || coalesce(t, ''), ',') FROM {table}");
    let seed = [Value::Int(1), Value::from("0seed")];
    let problems = run_table("psycopg2", &url(), &check_sql, &seed, cases);
    exec(&c, &format!("DROP TABLE {table}"), ());
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}
