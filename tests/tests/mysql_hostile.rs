//! Hostile input for the MySQL/MariaDB driver, through a `ConnectionPool`
//! (issue 11, the MariaDB side of issue 9's tables): NUL characters, bytes
//! that are not UTF-8, huge values and statements (within and beyond the
//! server's `max_allowed_packet`), wrong `format`/`pyformat` parameters,
//! several statements, and SQL holding no statement. Each case is a typed
//! error naming the problem (or, where MariaDB can hold the value, a
//! faithful round trip); nothing is changed by a failing case, and the pool
//! serves a follow-up query after every case.
//!
//! They need `ADBAPI_MYSQL_URL` (see `scripts/mysql-test-server`); without it
//! they are reported as ignored with a `SKIPPED` reason.

use adbapi::dbapi::ErrorKind;
use adbapi::{Params, Value};

use integration_tests::hostile::{case, err, rows, run_table, Case};
use integration_tests::mysql::{direct, exec, url};

/// The server's `max_allowed_packet`, in bytes.
fn max_allowed_packet() -> usize {
    let r = exec(&direct(), "SELECT @@max_allowed_packet", ());
    usize::try_from(r[0].get::<i64>(0).expect("an integer")).expect("a size")
}

/// The pyformat/format parameter cases, shared by `pymysql` (pyformat) and
/// `MySQLdb` (format; MySQLdb takes `%(name)s` with a mapping too).
fn parameter_cases() -> Vec<Case> {
    let t = ErrorKind::ProgrammingError;
    let too_many = vec![Value::Int(1); 70_000];
    let too_many_sql = format!(
        "SELECT 1 FROM DUAL WHERE 1 IN ({})",
        vec!["%s"; 70_000].join(", ")
    );
    vec![
        case(
            "more parameters than MySQL's protocol carries",
            too_many_sql,
            too_many,
            err(t, "65535"),
        ),
        case(
            "too few %s parameters",
            "SELECT %s, %s",
            (1,),
            err(t, "not enough parameters"),
        ),
        case(
            "too many %s parameters",
            "SELECT %s",
            (1, 2),
            err(t, "not all parameters"),
        ),
        case(
            "parameters but no placeholder",
            "SELECT 1",
            (1,),
            err(t, "not all parameters"),
        ),
        case(
            "missing %(name)s parameter",
            "SELECT %(a)s, %(b)s",
            Params::named([("a", 1)]),
            err(t, "missing named parameter 'b'"),
        ),
        case(
            "%(name)s with positional parameters",
            "SELECT %(a)s",
            (1,),
            err(t, "named parameters"),
        ),
        case(
            "%s with named parameters",
            "SELECT %s",
            Params::named([("a", 1)]),
            err(t, "named parameters"),
        ),
        case(
            "%(name) without s",
            "SELECT %(a)d",
            Params::named([("a", 1)]),
            err(t, "must be followed by 's'"),
        ),
        case(
            "unsupported %d",
            "SELECT %d",
            (1,),
            err(t, "unsupported format character 'd'"),
        ),
        case(
            "lone % at the end",
            "SELECT %s %",
            (1,),
            err(t, "end of query"),
        ),
        case(
            "unterminated %(name",
            "SELECT %(a",
            Params::named([("a", 1)]),
            err(t, "unterminated"),
        ),
        case(
            "a bare ? with parameters",
            "SELECT ?, %s",
            (1,),
            err(t, "'?'"),
        ),
        case(
            "%% is a literal % with parameters",
            "SELECT 10 %% %s",
            (3,),
            rows(vec![vec![Value::Int(1)]]),
        ),
        case(
            "%s inside a string literal is not a placeholder",
            "SELECT '%s', %s",
            (7,),
            rows(vec![vec![Value::from("%s"), Value::Int(7)]]),
        ),
        case(
            "a named parameter used twice",
            "SELECT %(a)s + %(a)s",
            Params::named([("a", 20)]),
            rows(vec![vec![Value::Int(40)]]),
        ),
    ]
}

/// Runs `cases` on a pool of `module`; the table must keep its seed row.
fn run_on(module: &str, table: &str, cases: Vec<Case>) -> Vec<String> {
    let check_sql = format!(
        "SELECT count(*), group_concat(concat(k, coalesce(t, ''), hex(coalesce(b, ''))) ORDER BY k) FROM {table}"
    );
    let seed = [Value::Int(1), Value::from("0seed00FF")];
    run_table(module, &url(), &check_sql, &seed, cases)
}

#[test]
#[cfg_attr(
    not(mysql_available),
    ignore = "SKIPPED: no MySQL/MariaDB server; set ADBAPI_MYSQL_URL (eval \"$(scripts/mysql-test-server start)\")"
)]
fn hostile_input_table() {
    let table = format!("my_hostile_{}", std::process::id());
    let c = direct();
    exec(&c, &format!("DROP TABLE IF EXISTS {table}"), ());
    exec(
        &c,
        &format!("CREATE TABLE {table} (k BIGINT PRIMARY KEY, t TEXT, b LONGBLOB) ENGINE=InnoDB"),
        (),
    );
    exec(
        &c,
        &format!("INSERT INTO {table} VALUES (0, 'seed', X'00FF')"),
        (),
    );
    let packet = max_allowed_packet();
    let ins = format!("INSERT INTO {table} (k, t, b) VALUES (%s, %s, %s)");
    let big_bytes: Vec<u8> = (0..8 * 1024 * 1024).map(|i: u32| (i % 251) as u8).collect();
    let too_big_bytes = vec![7u8; packet + 1024];
    let big_literal = "x".repeat(8 * 1024 * 1024);
    let too_big_literal = "x".repeat(packet + 1024);
    let (t, d) = (ErrorKind::ProgrammingError, ErrorKind::DataError);
    let mut cases = vec![
        case("NUL in SQL", "SELECT 'a\0b'", (), err(t, "NUL")),
        case(
            "NUL in SQL with parameters",
            "SELECT %s, 'a\0b'",
            (1,),
            err(t, "NUL"),
        ),
        case(
            "NUL in a text parameter round-trips",
            "SELECT %s",
            ("a\0b",),
            rows(vec![vec![Value::from("a\0b")]]),
        ),
        case(
            "NUL in a blob parameter round-trips",
            "SELECT %s",
            (Value::Bytes(vec![0, 1, 0, 255]),),
            rows(vec![vec![Value::Bytes(vec![0, 1, 0, 255])]]),
        ),
        case(
            "bytes that are not UTF-8 bound to a TEXT column",
            ins.clone(),
            (2, Value::Bytes(vec![0xc3, 0x28]), Value::Null),
            err(d, "Incorrect string value"),
        ),
        case(
            "invalid UTF-8 made on the server",
            "SELECT _utf8mb4 X'C328'",
            (),
            err(
                ErrorKind::OperationalError,
                "Invalid utf8mb4 character string",
            ),
        ),
        // MariaDB (unlike PostgreSQL) converts an invalid sequence to '?'
        // with warning 1300 rather than failing: pymysql reads the same text.
        case(
            "invalid UTF-8 cast on the server",
            "SELECT CAST(X'C328' AS CHAR CHARACTER SET utf8mb4)",
            (),
            rows(vec![vec![Value::from("?(")]]),
        ),
        case(
            "bytes that are not UTF-8 round-trip as bytes",
            "SELECT %s",
            (Value::Bytes(vec![0xc3, 0x28]),),
            rows(vec![vec![Value::Bytes(vec![0xc3, 0x28])]]),
        ),
        case(
            "huge blob round-trips",
            "SELECT %s",
            (Value::Bytes(big_bytes.clone()),),
            rows(vec![vec![Value::Bytes(big_bytes)]]),
        ),
        case(
            "blob beyond max_allowed_packet",
            ins.clone(),
            (3, Value::Null, Value::Bytes(too_big_bytes)),
            err(ErrorKind::OperationalError, "max_allowed_packet"),
        ),
        case(
            "huge statement",
            format!("SELECT length('{big_literal}')"),
            (),
            rows(vec![vec![Value::Int(8 * 1024 * 1024)]]),
        ),
        case(
            "statement beyond max_allowed_packet",
            format!("SELECT length('{too_big_literal}')"),
            (),
            err(ErrorKind::OperationalError, "max_allowed_packet"),
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
            err(t, "multiple statements"),
        ),
        case(
            "a duplicate key changes nothing",
            format!("INSERT INTO {table} (k) VALUES (%s)"),
            (0,),
            err(ErrorKind::IntegrityError, "Duplicate entry"),
        ),
        case(
            "empty SQL",
            "",
            (),
            err(ErrorKind::OperationalError, "Query was empty"),
        ),
        case(
            "whitespace only",
            " \n\t ",
            (),
            err(ErrorKind::OperationalError, "Query was empty"),
        ),
        case(
            "comment only",
            "-- nothing here\n/* nor here */ ;",
            (),
            err(ErrorKind::OperationalError, "Query was empty"),
        ),
        case(
            "semicolons only",
            ";;",
            (),
            err(ErrorKind::OperationalError, "Query was empty"),
        ),
        case(
            "empty SQL with parameters",
            "",
            (1,),
            err(t, "not all parameters"),
        ),
        case(
            "an executable comment is a statement",
            "/*! SELECT 2 */",
            (),
            rows(vec![vec![Value::Int(2)]]),
        ),
    ];
    cases.extend(parameter_cases());
    let mut problems = run_on("pymysql", &table, cases);
    problems.extend(run_on("MySQLdb", &table, parameter_cases()));
    exec(&c, &format!("DROP TABLE {table}"), ());
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}
