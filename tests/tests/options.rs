//! `ConnectionPool`'s constructor options (Twisted's
//! `twisted.enterprise.adbapi.ConnectionPool.__init__` and its `cp_*`
//! keywords): `cp_min`/`cp_max` normalisation; typed refusals naming the
//! option where Twisted accepts a bad value and fails later (or never runs
//! anything); the DB-API compliance warnings; `cp_noisy`'s connect and
//! close messages; and which reactor a pool without `cp_reactor` binds to.
//!
//! Tests named `regression_*` are defects found in review (each failed
//! before its fix); `held_*` are attacks that held, kept so they keep
//! holding.

use std::rc::Rc;

use adbapi::{args, kwargs, Arg, ConnectionPool, PoolError, Value};
use integration_tests::fakes::register_fake_module;
use integration_tests::harness::{run_async, unique_name, TempDir, TIMEOUT};
use integration_tests::logs::{render, LogCapture, Logged};
use integration_tests::pools::{file_pool, Kwargs, Log};
use reactor::prelude::*;
use reactor::testing::FakeReactor;
use reactor::Reactor;
use test_support::bounded::bounded;

// ---------------------------------------------------------------------------
// Refused options
// ---------------------------------------------------------------------------

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

/// min/max normalisation as in Twisted's `ConnectionPool.__init__`
/// (`min = min(cp_min, cp_max)`): `min` is clamped down to `max`, `max` is
/// never raised; the thread pool gets the same bounds.
#[test]
fn min_max_normalisation() {
    let cases: Vec<(Kwargs, (usize, usize))> = vec![
        (kwargs! {}, (3, 5)),
        (kwargs! { "cp_min" => 10 }, (5, 5)),
        (kwargs! { "cp_max" => 1 }, (1, 1)),
        (kwargs! { "cp_min" => 10, "cp_max" => 2 }, (2, 2)),
        (kwargs! { "cp_min" => 0, "cp_max" => 4 }, (0, 4)),
    ];
    for (kw, expected) in cases {
        let what = format!("{kw:?}");
        let mut kw = kw;
        kw.push(("cp_reactor".into(), Arg::reactor(FakeReactor::new(false))));
        let pool = ConnectionPool::new("sqlite3", args![":memory:"], kw).expect(&what);
        assert_eq!((pool.min(), pool.max()), expected, "{what}");
        assert_eq!(
            (pool.threadpool().min(), pool.threadpool().max()),
            expected,
            "the thread pool, {what}"
        );
    }
}

/// Invalid options are typed errors naming the option (documented
/// difference: Twisted does not check them, passes unknown `cp_*` keys to
/// the driver, accepts `cp_max=0` and asserts on a negative `cp_min`).
#[test]
fn invalid_options_are_typed_pool_errors() {
    let make = |kw: Vec<(String, Arg)>| {
        let mut kw = kw;
        kw.push(("cp_reactor".into(), Arg::reactor(FakeReactor::new(false))));
        ConnectionPool::new("sqlite3", args![":memory:"], kw)
    };

    match make(kwargs! { "cp_foo" => 1 }).expect_err("cp_foo") {
        PoolError::UnknownOption { option } => assert_eq!(option, "cp_foo"),
        other => panic!("UnknownOption expected, got {other:?}"),
    }
    let e = make(kwargs! { "cp_foo" => 1 }).expect_err("cp_foo");
    assert!(e.to_string().contains("\"cp_foo\""), "{e}");

    for (kw, name, got) in [
        (kwargs! { "cp_min" => "x" }, "cp_min", "x"),
        (kwargs! { "cp_min" => -1 }, "cp_min", "-1"),
        (kwargs! { "cp_max" => 0 }, "cp_max", "0"),
        (kwargs! { "cp_noisy" => "yes" }, "cp_noisy", "yes"),
        (kwargs! { "cp_reconnect" => 2.5 }, "cp_reconnect", "2.5"),
    ] {
        match make(kw).expect_err(name) {
            PoolError::InvalidOption { option, got: g, .. } => {
                assert_eq!(option, name);
                assert!(g.contains(got), "{name}: got {g:?}");
            }
            other => panic!("{name}: InvalidOption expected, got {other:?}"),
        }
    }
    // The same through the builder.
    let e = ConnectionPool::builder("sqlite3")
        .arg(":memory:")
        .kwarg("cp_bogus", 1)
        .reactor(FakeReactor::new(false))
        .build()
        .expect_err("cp_bogus");
    assert!(matches!(e, PoolError::UnknownOption { ref option } if option == "cp_bogus"));
}

/// `cp_max=0` is refused by every constructor, `from_state` included.
#[test]
fn every_constructor_refuses_a_pool_of_no_threads() {
    let reactor = reactor::testing::FakeReactor::new(false);
    let p = ConnectionPool::builder("sqlite3")
        .arg(":memory:")
        .reactor(reactor.clone())
        .build()
        .expect("pool");
    let mut state = p.get_state();
    state.max = 0;
    state.min = 0;
    let err = ConnectionPool::from_state_with_reactor(state, reactor).expect_err("refused");
    assert!(
        matches!(err, PoolError::InvalidOption { ref option, .. } if option == "cp_max"),
        "{err}"
    );
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

/// An unknown module name (Twisted: `ImportError` from the constructor).
#[test]
fn unknown_module_is_a_pool_error_naming_it() {
    let e = ConnectionPool::new(
        "no.such.dbapi",
        args![],
        kwargs! { "cp_reactor" => Arg::reactor(FakeReactor::new(false)) },
    )
    .expect_err("no such module");
    match &e {
        PoolError::UnknownModule(u) => {
            assert_eq!(u.name, "no.such.dbapi");
            assert!(u.known.contains("sqlite3"), "{}", u.known);
        }
        other => panic!("UnknownModule expected, got {other:?}"),
    }
    assert!(e.to_string().contains("no.such.dbapi"), "{e}");
}

// ---------------------------------------------------------------------------
// DB-API compliance warnings
// ---------------------------------------------------------------------------

/// Only a module without `apilevel == "2.0"` / `threadsafety >= 1` logs the
/// compliance warnings (Twisted's `ConnectionPool.__init__` checks both as
/// it imports the module).
#[test]
fn compliant_modules_log_no_compliance_warnings() {
    let logs = LogCapture::start();
    let (compliant, _) = register_fake_module("compliant", true);
    for module in ["sqlite3", compliant.as_str()] {
        ConnectionPool::new(
            module,
            args![":memory:"],
            kwargs! { "cp_reactor" => Arg::reactor(FakeReactor::new(false)) },
        )
        .expect("a pool");
    }
    let messages = logs.messages();
    assert!(
        !messages.iter().any(|m| m.starts_with("DB API module")),
        "{messages:?}"
    );
    // ...and a non-compliant one does (so this test can fail).
    let (bare, _) = register_fake_module("bare", false);
    ConnectionPool::new(
        &bare,
        args![],
        kwargs! { "cp_reactor" => Arg::reactor(FakeReactor::new(false)) },
    )
    .expect("a pool");
    assert_eq!(logs.count("DB API module not DB API 2.0 compliant."), 1);
    assert_eq!(logs.count("DB API module not sufficiently thread-safe."), 1);
}

// ---------------------------------------------------------------------------
// cp_noisy
// ---------------------------------------------------------------------------

fn connect_close_log(noisy: bool) -> Vec<Logged> {
    let logs = LogCapture::start();
    let name = unique_name("noisy");
    logs.watch_threads(&name);
    let dir = TempDir::new("noisy");
    let reactor = Reactor::new().expect("a reactor");
    let pool = file_pool(
        &reactor,
        &dir,
        kwargs! { "cp_noisy" => noisy, "cp_name" => name.as_str(), "cp_max" => 1 },
    );
    let p = pool.clone();
    run_async(&reactor, TIMEOUT, move || async move {
        p.run_query("select 1", ()).await?;
        p.close().await
    })
    .unwrap_or_else(|f| panic!("{f}"));
    logs.events()
        .into_iter()
        .filter(|e| e.message.starts_with("adbapi "))
        .collect()
}

/// A noisy pool logs `adbapi connecting: <module>` for a new connection and
/// `adbapi closing: <module>` when it is closed.
#[test]
fn noisy_pool_logs_connecting_and_closing() {
    let events = connect_close_log(true);
    let messages: Vec<&str> = events.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(
        messages,
        ["adbapi connecting: sqlite3", "adbapi closing: sqlite3"],
        "{}",
        render(&events)
    );
    assert!(events.iter().all(|e| e.level == tracing::Level::INFO));
}

/// A quiet pool (the default) logs neither.
#[test]
fn quiet_pool_logs_no_connecting_or_closing() {
    let events = connect_close_log(false);
    assert!(events.is_empty(), "{}", render(&events));
}

// ---------------------------------------------------------------------------
// Without cp_reactor: the default reactor
// ---------------------------------------------------------------------------

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

/// Two live reactors, none installed: a pool without `cp_reactor` is a
/// `PoolError` naming `cp_reactor`; once one is dropped, the other is used.
#[test]
fn held_default_reactor_ambiguity_and_a_reactor_dropped_midway() {
    bounded(|| {
        let a = Reactor::new().unwrap();
        let b = Reactor::new().unwrap();
        let Err(err) = ConnectionPool::new("sqlite3", args![":memory:"], kwargs! { "cp_max" => 1 })
        else {
            panic!("two live reactors and none installed: expected a PoolError");
        };
        assert!(err.to_string().contains("cp_reactor"), "{err}");
        drop(a);
        let pool = ConnectionPool::new("sqlite3", args![":memory:"], kwargs! { "cp_max" => 1 })
            .expect("one live reactor");
        let (p, r) = (pool.clone(), b.clone());
        b.call_when_running(move || {
            assert!(p.reactor().running());
            r.stop().unwrap();
        });
        b.run().unwrap();
        drop(pool);
    });
}

/// Defect (design): a pool made before the program makes its reactor binds
/// to a reactor made on demand, and a second pool made after `Reactor::new`
/// silently binds to the program's reactor (`try_default_reactor`'s
/// `(2, Some((made, false)))` arm). Two live reactors and none installed is
/// the ambiguous case the README says a pool refuses; here the first pool
/// is stranded on a reactor nobody runs, and its jobs never fire.
#[test]
fn regression_pools_made_around_reactor_new_never_split_across_reactors() {
    bounded(|| {
        let dir = TempDir::new("review-default");
        let first = ConnectionPool::new(
            "sqlite3",
            args![dir.file("t.db")],
            kwargs! { "cp_max" => 1 },
        )
        .expect("the first pool");
        let reactor = Reactor::new().unwrap();
        let second = ConnectionPool::new(
            "sqlite3",
            args![dir.file("t.db")],
            kwargs! { "cp_max" => 1 },
        );
        let Ok(second) = second else {
            return; // refused as ambiguous: what the README promises
        };
        let seen: Log = Rc::default();
        let (s, r) = (seen.clone(), reactor.clone());
        let (f, g) = (first.clone(), second.clone());
        reactor.call_when_running(move || {
            s.borrow_mut().push(format!(
                "first running: {}, second running: {}",
                f.reactor().running(),
                g.reactor().running()
            ));
            r.stop().unwrap();
        });
        reactor.run().unwrap();
        assert_eq!(
            *seen.borrow(),
            ["first running: true, second running: true"],
            "two pools without cp_reactor on one thread were bound to different reactors, \
             and the program runs only one of them"
        );
        drop((first, second));
        drop(reactor);
    });
}

/// A pool made on a reactor whose shutdown has begun (in a shutdown
/// trigger, or after `run()` returned) would never start: startup never
/// fires again, so its jobs' Deferreds would never fire (Twisted's hang
/// silently). It is refused, naming `cp_reactor`; a pool made before
/// shutdown is unaffected.
#[test]
fn a_pool_on_a_reactor_that_has_shut_down_is_refused() {
    let reactor = Reactor::new().unwrap();
    let made_during: Rc<std::cell::RefCell<Option<Result<(), String>>>> = Rc::default();
    let (r, m) = (reactor.clone(), made_during.clone());
    reactor.add_system_event_trigger(reactor::Phase::During, "shutdown", move || {
        let res = ConnectionPool::new(
            "sqlite3",
            args![":memory:"],
            kwargs! { "cp_reactor" => Arg::reactor(r.clone()) },
        )
        .map(|_| ())
        .map_err(|e| e.to_string());
        *m.borrow_mut() = Some(res);
    });
    let r = reactor.clone();
    reactor.call_when_running(move || r.stop().unwrap());
    reactor.run().unwrap();
    let during = made_during.borrow_mut().take().expect("the trigger ran");
    assert!(
        during.as_ref().is_err_and(|e| e.contains("cp_reactor")),
        "{during:?}"
    );
    let after = ConnectionPool::new(
        "sqlite3",
        args![":memory:"],
        kwargs! { "cp_reactor" => Arg::reactor(reactor.clone()) },
    )
    .map(|_| ());
    assert!(after.is_err(), "after run() returned");
    // The fake reactor: refused once stopped.
    let fake = FakeReactor::new(true);
    fake.stop().unwrap();
    let e = ConnectionPool::new(
        "sqlite3",
        args![":memory:"],
        kwargs! { "cp_reactor" => Arg::reactor(fake) },
    )
    .map(|_| ())
    .expect_err("refused");
    assert!(e.to_string().contains("cp_reactor"), "{e}");
}
