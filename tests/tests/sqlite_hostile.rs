//! Hostile input for the `sqlite3` driver, table-driven, through a
//! `ConnectionPool` on the real reactor: NUL in SQL and in parameters,
//! invalid UTF-8 in results, huge blobs and statements, wrong parameter
//! counts and names, several statements in one `execute`, empty SQL, and bad
//! database paths.
//!
//! Every case is one row: what it runs inside an interaction, and either the
//! rows it must return or the error kind and a substring of the message.
//! After each case the table `t` must be exactly as before (an interaction
//! that fails changes nothing; the cases that succeed write only to
//! `scratch`), the error must quote its SQL briefly, and the pool must still
//! answer a query.

use std::time::Duration;

use adbapi::dbapi::{DbError, DbResult, ErrorKind, Params, Row, Value};
use adbapi::{kwargs, Arg, ConnectionPool, Transaction};
use deferred::Failure;
use integration_tests::harness::{run_async, unique_name, TempDir};
use reactor::Reactor;

const LIMIT: Duration = Duration::from_secs(300);
const BLOB_BYTES: usize = 50 * 1024 * 1024;
const HUGE_SQL_CHARS: usize = 10_000_000;

/// What a case must produce.
#[derive(Debug)]
enum Expect {
    /// These rows.
    Rows(Vec<Vec<Value>>),
    /// An error of this kind whose message contains this text.
    Error(ErrorKind, &'static str),
}

/// One hostile input.
struct Case {
    name: &'static str,
    run: fn(&mut Transaction<'_>) -> DbResult<Vec<Vec<Value>>>,
    expect: Expect,
}

fn rows(r: Vec<Row>) -> Vec<Vec<Value>> {
    r.into_iter().map(Row::into_values).collect()
}

fn query(txn: &mut Transaction<'_>, sql: &str, p: impl Into<Params>) -> DbResult<Vec<Vec<Value>>> {
    Ok(rows(txn.execute(sql, p)?.fetchall()?))
}

fn int(i: i64) -> Value {
    Value::Int(i)
}

fn cases() -> Vec<Case> {
    use ErrorKind::{IntegrityError, OperationalError, ProgrammingError};
    use Expect::{Error, Rows};
    vec![
        Case {
            name: "NUL in SQL",
            run: |t| query(t, "UPDATE t SET v = 'GONE'\0 WHERE k = 1", ()),
            expect: Error(ProgrammingError, "the query contains a null character"),
        },
        Case {
            name: "NUL in SQL after a write in the same interaction",
            run: |t| {
                t.execute("UPDATE t SET v = 'changed' WHERE k = 1", ())?;
                query(t, "DELETE FROM t\0 WHERE k = 2", ())
            },
            expect: Error(ProgrammingError, "the query contains a null character"),
        },
        Case {
            name: "NUL in SQL via executemany",
            run: |t| {
                t.executemany("DELETE FROM t\0 WHERE k = ?", [(1,)])?;
                Ok(vec![])
            },
            expect: Error(ProgrammingError, "the query contains a null character"),
        },
        Case {
            name: "NUL inside a text parameter round-trips",
            run: |t| {
                t.execute("INSERT INTO scratch (s) VALUES (?)", ("a\0b\0",))?;
                query(
                    t,
                    "SELECT s, length(CAST(s AS BLOB)), s = ? FROM scratch",
                    ("a\0b\0",),
                )
            },
            expect: Rows(vec![vec![Value::from("a\0b\0"), int(4), int(1)]]),
        },
        Case {
            name: "NUL inside a blob parameter round-trips",
            run: |t| query(t, "SELECT ?, length(?)", (b"\0x\0".to_vec(), b"\0x\0".to_vec())),
            expect: Rows(vec![vec![Value::Bytes(b"\0x\0".to_vec()), int(3)]]),
        },
        Case {
            name: "invalid UTF-8: a blob cast to TEXT",
            run: |t| query(t, "SELECT CAST(x'ff' AS TEXT) AS bad", ()),
            expect: Error(OperationalError, "Could not decode to UTF-8 column 0 ('bad')"),
        },
        Case {
            name: "invalid UTF-8 stored in a text column",
            run: |t| {
                t.execute("UPDATE t SET v = CAST(x'c328' AS TEXT) WHERE k = 1", ())?;
                query(t, "SELECT k, v FROM t ORDER BY k", ())
            },
            expect: Error(OperationalError, "Could not decode to UTF-8 column 1 ('v')"),
        },
        Case {
            name: "invalid UTF-8 read as a BLOB is lossless",
            run: |t| query(t, "SELECT CAST(CAST(x'ff00c3' AS TEXT) AS BLOB)", ()),
            expect: Rows(vec![vec![Value::Bytes(vec![0xff, 0x00, 0xc3])]]),
        },
        Case {
            name: "a 50 MB blob round-trips",
            run: |t| {
                let blob: Vec<u8> = (0..BLOB_BYTES).map(|i| (i % 251) as u8).collect();
                t.execute("INSERT INTO scratch (b) VALUES (?)", (blob.clone(),))?;
                let back = query(t, "SELECT b FROM scratch", ())?;
                let same = back.len() == 1 && back[0] == [Value::Bytes(blob)];
                Ok(vec![vec![Value::Bool(same)]])
            },
            expect: Rows(vec![vec![Value::Bool(true)]]),
        },
        Case {
            name: "a 10 MB statement runs",
            run: |t| {
                let sql = format!("SELECT length('{}')", "y".repeat(HUGE_SQL_CHARS));
                query(t, &sql, ())
            },
            expect: Rows(vec![vec![int(10_000_000)]]),
        },
        Case {
            name: "a 10 MB statement that fails is quoted short",
            run: |t| {
                let sql = format!("SELECT '{}' FROM nope", "y".repeat(HUGE_SQL_CHARS));
                query(t, &sql, ())
            },
            expect: Error(OperationalError, "no such table: nope"),
        },
        Case {
            name: "too few qmark parameters",
            run: |t| query(t, "UPDATE t SET v = ? WHERE k = ?", ("x",)),
            expect: Error(
                ProgrammingError,
                "Incorrect number of bindings supplied. The current statement uses 2, and there are 1 supplied.",
            ),
        },
        Case {
            name: "too many qmark parameters",
            run: |t| query(t, "UPDATE t SET v = ? WHERE k = 1", ("x", 2)),
            expect: Error(
                ProgrammingError,
                "The current statement uses 1, and there are 2 supplied.",
            ),
        },
        Case {
            name: "parameters for a statement without placeholders",
            run: |t| query(t, "DELETE FROM t", (1,)),
            expect: Error(
                ProgrammingError,
                "The current statement uses 0, and there are 1 supplied.",
            ),
        },
        Case {
            name: "named style: a name missing",
            run: |t| {
                query(
                    t,
                    "UPDATE t SET v = :v WHERE k = :k",
                    Params::named([("v", "x")]),
                )
            },
            expect: Error(
                ProgrammingError,
                "You did not supply a value for binding parameter :k.",
            ),
        },
        Case {
            name: "named style: a wrong name",
            run: |t| {
                query(
                    t,
                    "UPDATE t SET v = :v WHERE k = :k",
                    Params::named([("value", Value::from("x")), ("k", Value::Int(1))]),
                )
            },
            expect: Error(
                ProgrammingError,
                "You did not supply a value for binding parameter :v.",
            ),
        },
        Case {
            name: "named parameters for qmark placeholders",
            run: |t| query(t, "UPDATE t SET v = ? WHERE k = 1", Params::named([("v", "x")])),
            expect: Error(
                ProgrammingError,
                "Binding 1 has no name, but you supplied a dictionary",
            ),
        },
        Case {
            // CPython binds a sequence to named placeholders by position
            // (deprecated in 3.12, still done).
            name: "positional parameters for named placeholders bind by position",
            run: |t| query(t, "SELECT :a, :b", (1, 2)),
            expect: Rows(vec![vec![int(1), int(2)]]),
        },
        Case {
            name: "two statements in one execute",
            run: |t| query(t, "UPDATE t SET v = 'x'; DELETE FROM t", ()),
            expect: Error(
                ProgrammingError,
                "You can only execute one statement at a time.",
            ),
        },
        Case {
            name: "a second statement behind a comment",
            run: |t| query(t, "SELECT 1; /* c */ DELETE FROM t", ()),
            expect: Error(
                ProgrammingError,
                "You can only execute one statement at a time.",
            ),
        },
        Case {
            name: "a trailing semicolon and comment are one statement",
            run: |t| query(t, "SELECT 1; -- done", ()),
            expect: Rows(vec![vec![int(1)]]),
        },
        Case {
            // CPython's sqlite3 treats these as no-ops (no error, no rows).
            name: "empty SQL does nothing",
            run: |t| query(t, "", ()),
            expect: Rows(vec![]),
        },
        Case {
            name: "whitespace-only SQL does nothing",
            run: |t| query(t, " \n\t ", ()),
            expect: Rows(vec![]),
        },
        Case {
            name: "comment-only SQL does nothing",
            run: |t| query(t, "-- nothing\n/* here */", ()),
            expect: Rows(vec![]),
        },
        Case {
            name: "incomplete SQL",
            run: |t| query(t, "UPDATE t SET", ()),
            expect: Error(OperationalError, "incomplete input"),
        },
        Case {
            name: "executemany of a SELECT",
            run: |t| {
                t.executemany("SELECT ?", [(1,), (2,)])?;
                Ok(vec![])
            },
            expect: Error(
                ProgrammingError,
                "executemany() can only execute DML statements.",
            ),
        },
        Case {
            name: "a constraint violation after a CTE write",
            run: |t| {
                t.execute(
                    "WITH n(k) AS (VALUES (7)) INSERT INTO t SELECT k, 'cte' FROM n",
                    (),
                )?;
                query(t, "INSERT INTO t VALUES (1, 'dup')", ())
            },
            expect: Error(IntegrityError, "UNIQUE constraint failed: t.k"),
        },
    ]
}

#[test]
fn hostile_inputs_are_typed_errors_that_change_nothing() {
    let dir = TempDir::new("sqlite-hostile");
    let reactor = Reactor::new().expect("reactor");
    let p = ConnectionPool::new(
        "sqlite3",
        vec![dir.file("db").as_str().into()],
        kwargs! {
            "cp_min" => 1, "cp_max" => 2,
            "cp_name" => unique_name("sqlite-hostile"),
            "cp_reactor" => Arg::reactor(reactor.clone()),
        },
    )
    .expect("pool");
    run_async(&reactor, LIMIT, move || async move {
        p.run_interaction(|t| {
            t.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)", ())?;
            t.execute(
                "INSERT INTO t VALUES (1, 'one'), (2, 'two'), (3, 'three')",
                (),
            )?;
            Ok(())
        })
        .await?;
        let snapshot = || p.run_query("SELECT k, v FROM t ORDER BY k", ());
        let before = snapshot().await?;
        for case in cases() {
            let name = case.name;
            let run = case.run;
            let got = p
                .run_interaction(move |t| {
                    t.execute("DROP TABLE IF EXISTS scratch", ())?;
                    t.execute("CREATE TABLE scratch (s TEXT, b BLOB)", ())?;
                    run(t).map_err(Failure::new)
                })
                .await;
            match (&case.expect, got) {
                (Expect::Rows(want), Ok(got)) => assert_eq!(&got, want, "{name}"),
                (Expect::Error(kind, text), Err(f)) => {
                    let e = f
                        .check::<DbError>()
                        .unwrap_or_else(|| panic!("{name}: not a database error: {f}"));
                    assert_eq!(e.kind(), *kind, "{name}: {e}");
                    assert!(e.message().contains(text), "{name}: {e}");
                    let shown = e.to_string();
                    assert!(shown.len() < 2000, "{name}: quoted {} bytes", shown.len());
                }
                (want, got) => panic!("{name}: expected {want:?}, got {got:?}"),
            }
            assert_eq!(snapshot().await?, before, "{name}: t changed");
            let one = p.run_query("SELECT 1", ()).await?;
            assert_eq!(one[0].get::<i64>(0)?, 1, "{name}: the pool still answers");
        }
        p.close().await?;
        Ok(())
    })
    .expect("test body");
}

/// Bad database paths: a typed error naming the problem, nothing created,
/// and a pool on a good file is unaffected.
#[test]
fn bad_database_paths_are_typed_errors() {
    let dir = TempDir::new("sqlite-bad-paths");
    let reactor = Reactor::new().expect("reactor");
    let good = ConnectionPool::new(
        "sqlite3",
        vec![dir.file("good").as_str().into()],
        kwargs! { "cp_min" => 1, "cp_max" => 1,
        "cp_reactor" => Arg::reactor(reactor.clone()) },
    )
    .expect("pool");
    let bad_paths: Vec<(String, ErrorKind, &str)> = vec![
        (
            dir.path().to_string_lossy().into_owned(),
            ErrorKind::OperationalError,
            "unable to open database",
        ),
        (
            dir.file("no/such/dir/db"),
            ErrorKind::OperationalError,
            "unable to open database",
        ),
        (
            dir.file("a\0b"),
            ErrorKind::InterfaceError,
            "argument 'database' contains a null character",
        ),
    ];
    let r = reactor.clone();
    let dir_path = dir.path().to_owned();
    run_async(&reactor, LIMIT, move || async move {
        for (path, kind, text) in bad_paths {
            let bad = ConnectionPool::new(
                "sqlite3",
                vec![path.as_str().into()],
                kwargs! { "cp_min" => 1, "cp_max" => 1,
                "cp_reactor" => Arg::reactor(r.clone()) },
            )
            .expect("the pool is made; connecting fails");
            let f = bad
                .run_query("SELECT 1", ())
                .await
                .expect_err("a bad path cannot be opened");
            let e = f
                .check::<DbError>()
                .unwrap_or_else(|| panic!("{path:?}: not a database error: {f}"));
            assert_eq!(e.kind(), kind, "{path:?}: {e}");
            assert!(e.message().contains(text), "{path:?}: {e}");
            bad.close().await?;
            let one = good.run_query("SELECT 1", ()).await?;
            assert_eq!(one[0].get::<i64>(0)?, 1);
        }
        let mut made: Vec<String> = std::fs::read_dir(&dir_path)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        made.sort();
        assert_eq!(made, ["good"], "nothing but the good database was created");
        good.close().await?;
        Ok(())
    })
    .expect("test body");
}
