//! The hostile-input table runner of `tests/postgres_hostile.rs` (issue 9)
//! and `tests/mysql_hostile.rs` (issue 11), written once: each [`Case`]
//! runs on a pool, then a follow-up query and a read of the table's
//! contents, and every difference from what was expected is reported, so
//! one run shows all the problems at once.

use std::time::Duration;

use adbapi::dbapi::{self, ErrorKind};
use adbapi::{Arg, ConnectionPool, Params, Row, Value};
use deferred::{Deferred, Failure};
use reactor::Reactor;

use crate::harness::run_chain;

/// A case's name, result, follow-up query result and the table's contents.
type CaseOutcome = (
    String,
    Result<Vec<Row>, Failure>,
    Result<Vec<Row>, Failure>,
    Result<Vec<Row>, Failure>,
);

/// What a case must give.
#[derive(Debug)]
pub enum Expect {
    /// A `DbError` of this kind whose message contains the text.
    Error(ErrorKind, &'static str),
    /// Success, with these rows.
    Rows(Vec<Vec<Value>>),
}

/// One statement of the table and what it must give.
#[derive(Debug)]
pub struct Case {
    name: &'static str,
    sql: String,
    params: Params,
    expect: Expect,
}

/// A case: `sql` with `params` must give `expect`.
pub fn case(
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

/// [`Expect::Error`]: a `DbError` of `kind` whose message contains `text`.
pub fn err(kind: ErrorKind, text: &'static str) -> Expect {
    Expect::Error(kind, text)
}

/// [`Expect::Rows`]: success with these rows.
pub fn rows(r: Vec<Vec<Value>>) -> Expect {
    Expect::Rows(r)
}

/// Runs `cases` one after the other on a pool of `module` (1 to 2
/// connections) at `url`, each followed by a `SELECT 1` and `check_sql`,
/// which must give the one row `contents` every time (nothing a case did
/// is left in the table). Returns the problems, each naming the module and
/// the case.
pub fn run_table(
    module: &str,
    url: &str,
    check_sql: &str,
    contents: &[Value],
    cases: Vec<Case>,
) -> Vec<String> {
    let reactor = Reactor::new().unwrap();
    let pool = ConnectionPool::new(
        module,
        vec![url.into()],
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
    let check_sql = check_sql.to_owned();
    let p = pool.clone();
    let outcomes = run_chain(&reactor, Duration::from_secs(300), move || {
        let mut chain: Deferred<Vec<CaseOutcome>> = deferred::succeed(Vec::new());
        for cs in cases {
            let (p2, check) = (p.clone(), check_sql.clone());
            chain = chain.add_callback_deferred(move |mut acc| {
                let (p3, p4) = (p2.clone(), p2.clone());
                p2.run_query(&cs.sql, cs.params)
                    .add_both(Ok)
                    .add_callback_deferred(move |r| {
                        p3.run_query("SELECT 1", ())
                            .add_both(Ok)
                            .add_callback(move |f| (r, f))
                    })
                    .add_callback_deferred(move |(r, f)| {
                        p4.run_query(&check, ()).add_both(move |rows| {
                            acc.push((cs.name.to_owned(), r, f, rows));
                            Ok(acc)
                        })
                    })
            });
        }
        chain.add_callback_deferred(move |acc| p.close().add_callback(move |()| acc))
    })
    .expect("every table check ran");
    assert_eq!(outcomes.len(), n);
    let mut problems = Vec::new();
    for ((name, result, follow_up, got_contents), expect) in outcomes.into_iter().zip(expects) {
        let mut fail = |what: String| problems.push(format!("{module}: {name}: {what}"));
        match &follow_up {
            Ok(r) if r.len() == 1 && r[0][0] == Value::Int(1) => {}
            other => fail(format!("the follow-up query gave {other:?}")),
        }
        match &got_contents {
            Ok(r) if r.len() == 1 && r[0].values() == contents => {}
            other => fail(format!(
                "the table changed, or could not be read: {other:?}"
            )),
        }
        match (expect, result) {
            (Expect::Rows(want), Ok(rows)) => {
                let got: Vec<Vec<Value>> = rows.iter().map(|r| r.values().to_vec()).collect();
                if got != want {
                    let show = |v: &Vec<Vec<Value>>| {
                        let s = format!("{v:?}");
                        if s.len() > 200 {
                            format!("{}... ({} bytes)", &s[..200], s.len())
                        } else {
                            s
                        }
                    };
                    fail(format!(
                        "wrong rows: {} instead of {}",
                        show(&got),
                        show(&want)
                    ));
                }
            }
            (Expect::Error(kind, text), Err(f)) => match f.check::<dbapi::DbError>() {
                None => fail(format!("not a DbError: {f:?}")),
                Some(e) => {
                    if e.kind() != kind || !e.message().contains(text) {
                        fail(format!(
                            "expected {kind:?} containing {text:?}, got {:?}: {}",
                            e.kind(),
                            e.message()
                        ));
                    }
                }
            },
            (Expect::Rows(_), Err(f)) => fail(format!("expected rows, got {f:?}")),
            (Expect::Error(kind, _), Ok(rows)) => {
                fail(format!("expected {kind:?}, got {} rows", rows.len()))
            }
        }
    }
    problems
}
