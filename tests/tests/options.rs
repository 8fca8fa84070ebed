//! `cp_*` options refused with a typed `PoolError` naming the option, where
//! Twisted accepts them and fails later (or never runs anything).

use adbapi::{args, kwargs, Arg, ConnectionPool, PoolError, Value};
use reactor::prelude::*;
use reactor::testing::FakeReactor;
use reactor::Reactor;

fn refused(kw: Vec<(String, Arg)>) -> PoolError {
    let mut kw = kw;
    kw.push((
        "cp_reactor".to_owned(),
        Arg::reactor(FakeReactor::new(false)),
    ));
    ConnectionPool::new("sqlite3", args![":memory:"], kw).expect_err("refused")
}

fn option_of(e: &PoolError) -> &str {
    match e {
        PoolError::InvalidOption { option, .. } => option,
        other => panic!("not an InvalidOption: {other}"),
    }
}

/// Defect: a NUL in `cp_name` was accepted; the worker thread's spawn then
/// panicked (the OS takes no NUL in a thread name), the pool never started
/// and its Deferreds never fired.
#[test]
fn cp_name_with_nul_is_refused() {
    let e = refused(kwargs! { "cp_name" => "pool\0name" });
    assert_eq!(option_of(&e), "cp_name", "{e}");
    assert!(e.to_string().contains("NUL"), "{e}");
    let e = ConnectionPool::builder("sqlite3")
        .arg(":memory:")
        .name("a\0b")
        .reactor(FakeReactor::new(false))
        .build()
        .expect_err("refused");
    assert_eq!(option_of(&e), "cp_name");
}

/// Defect: `cp_good_sql` with no statement in it was accepted, and then
/// every ordinary error became `ConnectionLost` (the probe "failed").
#[test]
fn cp_good_sql_without_a_statement_is_refused() {
    for sql in [
        "",
        "   ",
        "\n\t",
        "-- a comment",
        "/* c */",
        " ; ; ",
        "/* a */ -- b\n ;",
    ] {
        let e = refused(kwargs! { "cp_good_sql" => sql });
        assert_eq!(option_of(&e), "cp_good_sql", "{sql:?}: {e}");
    }
    for sql in ["select 1", "-- probe\nselect 1", "/* x */ select 1"] {
        let r = ConnectionPool::new(
            "sqlite3",
            args![":memory:"],
            kwargs! { "cp_good_sql" => sql, "cp_reactor" => Arg::reactor(FakeReactor::new(false)) },
        );
        assert!(r.is_ok(), "{sql:?} is a statement");
    }
    // None (Python's None) turns the probe off and stays allowed.
    let r = ConnectionPool::new(
        "sqlite3",
        args![":memory:"],
        kwargs! { "cp_good_sql" => Value::Null, "cp_reactor" => Arg::reactor(FakeReactor::new(false)) },
    );
    assert!(r.is_ok());
    let e = ConnectionPool::builder("sqlite3")
        .good_sql(Some("  "))
        .reactor(FakeReactor::new(false))
        .build()
        .expect_err("refused");
    assert_eq!(option_of(&e), "cp_good_sql");
}

/// Defect (README's own snippet hung): a pool made without `cp_reactor`
/// after `Reactor::new()` bound to a different, never-running default
/// reactor. Now the one live reactor of the thread is the default.
#[test]
fn pool_without_cp_reactor_binds_to_the_threads_one_reactor() {
    std::thread::spawn(|| {
        let reactor = Reactor::new().unwrap();
        let pool = ConnectionPool::new("sqlite3", args![":memory:"], kwargs! {}).unwrap();
        let r = reactor.clone();
        let got = std::rc::Rc::new(std::cell::Cell::new(0));
        let g = got.clone();
        let _ = pool.run_query("select 7", ()).add_both(move |res| {
            g.set(res.expect("query")[0].get::<i64>(0).unwrap());
            r.stop().unwrap();
            Ok(())
        });
        reactor.run().unwrap();
        assert_eq!(got.get(), 7);
    })
    .join()
    .unwrap();
}

/// With several live reactors and none installed, the default is ambiguous:
/// a pool without `cp_reactor` is refused instead of hanging.
#[test]
fn pool_without_cp_reactor_is_refused_when_the_default_is_ambiguous() {
    std::thread::spawn(|| {
        let _a = Reactor::new().unwrap();
        let b = Reactor::new().unwrap();
        let e =
            ConnectionPool::new("sqlite3", args![":memory:"], kwargs! {}).expect_err("ambiguous");
        assert_eq!(option_of(&e), "cp_reactor", "{e}");
        assert!(e.to_string().contains("2 live reactors"), "{e}");
        // Installing one settles it.
        reactor::install_reactor(b);
        assert!(ConnectionPool::new("sqlite3", args![":memory:"], kwargs! {}).is_ok());
    })
    .join()
    .unwrap();
}
