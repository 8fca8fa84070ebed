//! The public API under attack (`reactor::react`, the prelude and reactor
//! traits, `Arg`/`IntoReactor`, `Value`/`Row`/error accessors), as a new user
//! porting a Twisted program would try it. Those an adversarial review found
//! failing were fixed (a pool dropped before the reactor ran) or the docs
//! corrected (row names, how a failure prints).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use adbapi::dbapi::{self, ErrorKind};
use adbapi::{args, kwargs, Arg, ConnectionPool, Row, Value};
use deferred::{Deferred, Failure};
use reactor::prelude::*;
use reactor::testing::FakeReactor;
use reactor::{react, Exit, Reactor};

use integration_tests::harness::TempDir;

type Slot<T> = Rc<RefCell<Option<Result<T, Failure>>>>;

fn slot<T>() -> Slot<T> {
    Rc::new(RefCell::new(None))
}

/// Records a copy of the outcome in `s` and passes it on.
fn tee<T: Clone + 'static>(d: Deferred<T>, s: &Slot<T>) -> Deferred<T> {
    let s = s.clone();
    d.add_both(move |r| {
        *s.borrow_mut() = Some(r.clone());
        r
    })
}

// ---------------------------------------------------------------- react

/// `react(main)` with the logs it produced, rendered for assertion messages.
fn react_logged<T: 'static>(main: impl FnOnce(&Reactor) -> Deferred<T>) -> (i32, String) {
    let (code, logs) = test_support::logs::capture_logs(|| react(main));
    (code, test_support::logs::render(&logs))
}

/// The pool made inside `main` (no `cp_reactor`) is dropped when `main`
/// returns; the query's Deferred is what `main` returns. Dropping the last
/// handle closes the pool as `final_close` does, so the job still runs and
/// its Deferred fires: exit code 0 with the row.
#[test]
fn react_pool_dropped_at_end_of_main_still_answers() {
    let dir = TempDir::new("review-react-drop");
    let db = dir.file("a.db");
    let got = slot::<i64>();
    let g = got.clone();
    let (code, logs) = test_support::logs::capture_logs(|| {
        react(move |_r| {
            let pool =
                ConnectionPool::new("sqlite3", args![db.as_str()], kwargs! { "cp_max" => 1 })
                    .expect("pool");
            let d = pool
                .run_query("SELECT 41 + 1", ())
                .add_callback(|rows| rows[0].get::<i64>(0).unwrap());
            tee(d, &g)
        })
    });
    assert_eq!(code, 0, "{}", test_support::logs::render(&logs));
    assert_eq!(got.borrow_mut().take().expect("fired").unwrap(), 42);
}

/// The same without `react`: a pool dropped before the reactor runs, with a
/// job queued. README difference 13 promises that queued jobs still run.
#[test]
fn pool_dropped_before_the_reactor_runs_still_runs_its_queued_job() {
    let dir = TempDir::new("review-drop-before-run");
    let db = dir.file("a.db");
    let reactor = Reactor::new().unwrap();
    let got = slot::<i64>();
    {
        let pool = ConnectionPool::new(
            "sqlite3",
            args![db.as_str()],
            kwargs! { "cp_reactor" => Arg::reactor(reactor.clone()) },
        )
        .expect("pool");
        let _ = tee(
            pool.run_query("SELECT 5", ())
                .add_callback(|rows| rows[0].get::<i64>(0).unwrap()),
            &got,
        );
    }
    let r = reactor.clone();
    reactor.call_later(Duration::from_millis(200), move || {
        r.stop().ok();
    });
    reactor.run().unwrap();
    let res = got.borrow_mut().take().expect("fired");
    assert_eq!(res.map_err(|f| f.to_string()), Ok(5));
}

/// A pool left open when `main`'s Deferred fires: its job in flight (a slow
/// interaction) still fires before `react` returns (README difference 2).
#[test]
fn react_pool_left_open_job_fires_before_react_returns() {
    let dir = TempDir::new("review-react-open");
    let db = dir.file("a.db");
    let got = slot::<i64>();
    let g = got.clone();
    let keep: Rc<RefCell<Option<ConnectionPool>>> = Rc::new(RefCell::new(None));
    let k = keep.clone();
    let code = react(move |_r| {
        let pool = ConnectionPool::new("sqlite3", args![db.as_str()], kwargs! { "cp_max" => 1 })
            .expect("pool");
        let d = pool.run_interaction(|txn| {
            std::thread::sleep(Duration::from_millis(300));
            txn.execute("SELECT 7", ())?;
            Ok(txn.fetchone()?.unwrap().get::<i64>(0)?)
        });
        let _ = tee(d, &g);
        *k.borrow_mut() = Some(pool);
        // main is done at once; the job is still running.
        deferred::succeed(())
    });
    assert_eq!(code, 0);
    assert_eq!(
        got.borrow_mut()
            .take()
            .expect("the job's Deferred fired before react returned")
            .unwrap(),
        7
    );
}

/// `react` after another reactor was made on this thread (and is still
/// alive): a pool made without `cp_reactor` inside `main` binds to react's
/// reactor, not the other one, and not an ambiguity error.
#[test]
fn react_after_another_reactor_binds_pool_to_reacts_reactor() {
    let other = Reactor::new().unwrap();
    let dir = TempDir::new("review-react-other");
    let db = dir.file("a.db");
    let (code, logs) = react_logged(move |r| {
        let pool = ConnectionPool::new("sqlite3", args![db.as_str()], kwargs! {}).expect("pool");
        // Bound to `other` (which never runs) the query would never fire.
        let _ = r;
        let keep = pool.clone();
        pool.run_query("SELECT 1", ())
            .add_callback(move |_| drop(keep))
    });
    assert_eq!(code, 0, "{logs}");
    drop(other);
}

/// `main` that schedules pool work and then panics: exit code 1 (logged),
/// and the job it scheduled still fires before `react` returns.
#[test]
fn react_main_panics_after_scheduling_work() {
    let dir = TempDir::new("review-react-panic");
    let db = dir.file("a.db");
    let got = slot::<i64>();
    let g = got.clone();
    let keep: Rc<RefCell<Option<ConnectionPool>>> = Rc::new(RefCell::new(None));
    let k = keep.clone();
    let code = react(move |_r| -> Deferred<()> {
        let pool = ConnectionPool::new("sqlite3", args![db.as_str()], kwargs! {}).expect("pool");
        let _ = tee(
            pool.run_query("SELECT 3", ())
                .add_callback(|rows| rows[0].get::<i64>(0).unwrap()),
            &g,
        );
        *k.borrow_mut() = Some(pool);
        panic!("main blew up after scheduling work");
    });
    assert_eq!(code, 1);
    assert_eq!(got.borrow_mut().take().expect("job fired").unwrap(), 3);
}

/// `main` that stops the reactor itself (before its Deferred fires) and
/// returns a Deferred that never fires: react returns (0), it does not hang.
#[test]
fn react_main_stops_reactor_itself() {
    let code = react(|r| {
        let r2 = r.clone();
        r.call_later(Duration::from_millis(5), move || {
            r2.stop().unwrap();
        });
        let (d, resolver) = Deferred::<()>::new();
        std::mem::forget(resolver);
        d
    });
    assert_eq!(code, 0);
}

/// An already-fired Deferred, success and failure.
#[test]
fn react_already_fired_deferreds() {
    assert_eq!(react(|_| deferred::succeed(5)), 0);
    assert_eq!(react(|_| deferred::fail::<()>(Exit(9))), 9);
    assert_eq!(
        react(|_| deferred::fail::<()>(std::io::Error::other("x"))),
        1
    );
    assert_eq!(react(|_| deferred::fail::<()>(Exit(0))), 0);
}

/// `Exit` inside a `FirstError` (gather_results of a failing Deferred) is
/// found through `source()`; inside a `FailureGroup` (race: every input
/// failed) Twisted's `react` finds no `SystemExit` either and exits 1.
#[test]
fn react_exit_inside_first_error_and_failure_group() {
    let code = react(|_| {
        deferred::gather_results(
            vec![deferred::succeed(1), deferred::fail::<i32>(Exit(4))],
            true,
        )
        .add_callback(|_| ())
    });
    assert_eq!(code, 4);
    let code = react(|_| {
        deferred::race(vec![
            deferred::fail::<i32>(Exit(5)),
            deferred::fail::<i32>(Exit(5)),
        ])
        .add_callback(|_| ())
    });
    assert_eq!(code, 1, "as Twisted: a FailureGroup is not a SystemExit");
}

/// Nested `react` inside `main`: the inner one runs its own reactor to the
/// end and returns its code; the outer one then finishes too; the default
/// reactor is restored to the outer one for a pool made after the inner
/// react returned.
#[test]
fn react_nested_inside_main() {
    let dir = TempDir::new("review-react-nested");
    let db = dir.file("a.db");
    let (code, logs) = react_logged(move |_outer| {
        let inner = react(|_| deferred::fail::<()>(Exit(3)));
        assert_eq!(inner, 3);
        let pool = ConnectionPool::new("sqlite3", args![db.as_str()], kwargs! {})
            .expect("pool after nested react");
        let keep = pool.clone();
        pool.run_query("SELECT 1", ())
            .add_callback(move |_| {
                drop(keep);
                inner
            })
            .add_callback_result(|c| {
                if c == 3 {
                    Err(Failure::new(Exit(11)))
                } else {
                    Ok(())
                }
            })
    });
    assert_eq!(code, 11, "{logs}");
}

/// A second `react` on the same thread after the first returned works.
#[test]
fn react_twice_in_a_row() {
    let dir = TempDir::new("review-react-twice");
    let db = dir.file("a.db");
    for _ in 0..2 {
        let db = db.clone();
        let (code, logs) = react_logged(move |_| {
            let pool =
                ConnectionPool::new("sqlite3", args![db.as_str()], kwargs! {}).expect("pool");
            let keep = pool.clone();
            pool.run_operation("CREATE TABLE IF NOT EXISTS t (x)", ())
                .add_callback(move |()| drop(keep))
        });
        assert_eq!(code, 0, "{logs}");
    }
}

// ---------------------------------------------------------------- API

/// `Rc<dyn AnyReactor>`, `FakeReactor` and `Reactor` are all accepted as
/// `cp_reactor`, by `Arg::reactor` and the builder; `Arg::None` is Python's
/// None for every `cp_*` that takes it.
#[test]
fn reactors_interchangeable_and_arg_none_everywhere() {
    let fake = FakeReactor::new(false);
    let dynr: Rc<dyn AnyReactor> = Rc::new(fake.clone());
    for r in [
        Arg::reactor(fake.clone()),
        Arg::reactor(dynr.clone()),
        Arg::reactor(Rc::new(fake.clone())),
    ] {
        let p = ConnectionPool::new(
            "sqlite3",
            args![":memory:"],
            vec![("cp_reactor".to_owned(), r)],
        )
        .expect("pool");
        assert_eq!(p.max(), 5);
    }
    let _real = Reactor::new().unwrap();
    let p = ConnectionPool::new(
        "sqlite3",
        args![":memory:"],
        kwargs! {
            "cp_good_sql" => Arg::None, "cp_name" => Arg::None, "cp_openfun" => Arg::None,
            "cp_reactor" => Arg::reactor(dynr.clone()),
        },
    )
    .expect("pool with None options");
    assert_eq!(p.good_sql(), None);
    // Everything a user needs through the trait object.
    let called = Rc::new(RefCell::new(false));
    let c = called.clone();
    let _ = dynr.call_later(
        Duration::from_secs(1),
        Box::new(move || *c.borrow_mut() = true),
    );
    fake.advance(2.0);
    assert!(*called.borrow());
}

/// `row.get_by_name` on SQLite rows: exact names, first duplicate wins,
/// typed errors for missing names and for rows without a description.
/// (`sqlite3.Row` also matches ignoring case; the method's doc says so.)
#[test]
fn sqlite_row_get_by_name_matches_exact_names() {
    let conn = dbapi::connect("sqlite3", &[":memory:".into()], &[]).unwrap();
    let mut cur = conn
        .execute("SELECT 7 AS id, 8 AS id, 'x' AS Title", ())
        .unwrap();
    let row = cur.fetchone().unwrap().unwrap();
    // Duplicate names: the first wins (sqlite3.Row and a dict agree).
    assert_eq!(row.get_by_name::<i64>("id").unwrap(), 7);
    // Missing name: a typed InterfaceError listing the columns.
    let e = row.get_by_name::<i64>("nope").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InterfaceError);
    assert!(e.message().contains("Title"), "{e}");
    // Rows built by the user carry no names: typed error, no panic.
    let e = Row::new(vec![Value::Int(1)])
        .get_by_name::<i64>("id")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InterfaceError);
    // Exact names for every driver (documented: sqlite3.Row would also
    // match ignoring case).
    assert_eq!(row.get_by_name::<String>("Title").unwrap(), "x");
    assert!(row.get_by_name::<String>("title").is_err());
}

/// Display of a text value is the bare text, Debug quotes it; error
/// accessors and Failure's Display lead with the message.
#[test]
fn value_display_and_error_accessors() {
    let v = Value::Text("it's".into());
    assert_eq!(format!("{v}"), "it's");
    assert!(format!("{v:?}").contains("\"it's\""));
    let conn = dbapi::connect("sqlite3", &[":memory:".into()], &[]).unwrap();
    // CPython's sqlite3 reports a syntax error as OperationalError.
    let Err(e) = conn.execute("SELEC 1", ()) else {
        panic!("syntax error expected")
    };
    let f = Failure::new(e.clone());
    let pe = f
        .check::<dbapi::OperationalError>()
        .expect("OperationalError");
    assert!(pe.message().contains("syntax error"), "{}", pe.message());
    assert_eq!(pe.sql(), Some("SELEC 1"));
    let de = f.check::<dbapi::DatabaseError>().expect("DatabaseError");
    assert_eq!(de.sql(), Some("SELEC 1"));
    assert_eq!(de.code(), Some("1"));
    // README: `format!("{failure}")` is the error's message
    // (getErrorMessage): for a DbError, its kind, message, code and SQL.
    assert_eq!(
        format!("{f}"),
        "OperationalError: near \"SELEC\": syntax error [code 1] [SQL: SELEC 1]"
    );
    assert!(format!("{f:#}").contains(pe.message()), "{f:#}");
}

// ---------------------------------------------------------------- MySQL
