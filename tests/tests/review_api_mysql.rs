//! Adversarial review of the public API (`reactor::react`, the prelude and
//! reactor traits, `Arg`/`IntoReactor`, `Value`/`Row`/error accessors) and of
//! the MySQL/MariaDB driver. Each test asserts what the README, the crate docs
//! or Twisted/pymysql promise.
//!
//! The MySQL cases need `ADBAPI_MYSQL_URL` (see `scripts/mysql-test-server`);
//! without it they are reported as ignored with a `SKIPPED` reason.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use adbapi::dbapi::{self, DbConnection, ErrorKind};
use adbapi::{args, kwargs, Arg, ConnectionPool, Params, Row, Value};
use deferred::{Deferred, Failure};
use reactor::prelude::*;
use reactor::testing::FakeReactor;
use reactor::{react, Exit, Reactor};

use integration_tests::harness::TempDir;

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
    let (code, logs) = test_support::logs::capture_logs(|| react(move |_r| {
        let pool = ConnectionPool::new("sqlite3", args![db.as_str()], kwargs! { "cp_max" => 1 })
            .expect("pool");
        let d = pool
            .run_query("SELECT 41 + 1", ())
            .add_callback(|rows| rows[0].get::<i64>(0).unwrap());
        tee(d, &g)
    }));
    assert_eq!(code, 0, "{}", test_support::logs::render(&logs));
    assert_eq!(got.borrow_mut().take().expect("fired").unwrap(), 42);
}

/// The same without `react`: a pool dropped before the reactor runs, with a
/// job queued. README difference 13 promises that queued jobs still run.
#[test]
fn pool_dropped_before_reactor_runs_loses_queued_job() {
    let dir = TempDir::new("review-drop-before-run");
    let db = dir.file("a.db");
    let reactor = Reactor::new().unwrap();
    let got = slot::<i64>();
    {
        let pool = ConnectionPool::new("sqlite3", args![db.as_str()], kwargs! { "cp_reactor" => Arg::reactor(reactor.clone()) })
            .expect("pool");
        let _ = tee(pool.run_query("SELECT 5", ()).add_callback(|rows| rows[0].get::<i64>(0).unwrap()), &got);
    }
    let r = reactor.clone();
    reactor.call_later(Duration::from_millis(200), move || { r.stop().ok(); });
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
        got.borrow_mut().take().expect("the job's Deferred fired before react returned").unwrap(),
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
        pool.run_query("SELECT 1", ()).add_callback(move |_| drop(keep))
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
    assert_eq!(react(|_| deferred::fail::<()>(std::io::Error::other("x"))), 1);
    assert_eq!(react(|_| deferred::fail::<()>(Exit(0))), 0);
}

/// `Exit` inside a `FirstError` (gather_results of a failing Deferred) is
/// found through `source()`; inside a `FailureGroup` (race: every input
/// failed) Twisted's `react` finds no `SystemExit` either and exits 1.
#[test]
fn react_exit_inside_first_error_and_failure_group() {
    let code = react(|_| {
        deferred::gather_results(vec![deferred::succeed(1), deferred::fail::<i32>(Exit(4))], true)
            .add_callback(|_| ())
    });
    assert_eq!(code, 4);
    let code = react(|_| {
        deferred::race(vec![deferred::fail::<i32>(Exit(5)), deferred::fail::<i32>(Exit(5))])
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
        let pool = ConnectionPool::new("sqlite3", args![db.as_str()], kwargs! {}).expect("pool after nested react");
        let keep = pool.clone();
        pool.run_query("SELECT 1", ()).add_callback(move |_| { drop(keep); inner })
            .add_callback_result(|c| if c == 3 { Err(Failure::new(Exit(11))) } else { Ok(()) })
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
            let pool = ConnectionPool::new("sqlite3", args![db.as_str()], kwargs! {}).expect("pool");
            let keep = pool.clone();
            pool.run_operation("CREATE TABLE IF NOT EXISTS t (x)", ()).add_callback(move |()| drop(keep))
        });
        assert_eq!(code, 0, "{logs}");
    }
}
