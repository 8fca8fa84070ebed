//! Connection lifetime and health (extensions; Twisted's adbapi has none):
//! `cp_max_lifetime` with HikariCP's jitter, `cp_idle_timeout`,
//! `cp_check_idle` (a probe only after an idle spell), all checked when a
//! worker takes a job and never during one; and SQLAlchemy's "invalidate
//! older connections": after one lost connection, every connection opened
//! before it is probed before its next job, so a server restart costs one
//! failed job, not one per worker (PostgreSQL and MariaDB restarts).
//! Time on the worker side is a hand-moved clock (`life_clock`).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use adbapi::{Arg, Clock, ConnectionPool};
use deferred::{gather_results, Deferred};
use integration_tests::fakes::register_spy_module;
use integration_tests::harness::{fake_wait, run_chain};
use reactor::prelude::*;
use reactor::testing::FakeReactor;
use reactor::Reactor;

/// A clock the test moves by hand.
#[derive(Clone)]
struct ManualClock(Arc<Mutex<Instant>>);

impl ManualClock {
    fn new() -> Self {
        ManualClock(Arc::new(Mutex::new(Instant::now())))
    }
    fn clock(&self) -> Clock {
        let c = Arc::clone(&self.0);
        Arc::new(move || *c.lock().unwrap())
    }
    fn advance(&self, secs: f64) {
        *self.0.lock().unwrap() += Duration::from_secs_f64(secs);
    }
}

fn inline_pool(
    module: &str,
    clock: &ManualClock,
    f: impl FnOnce(adbapi::ConnectionPoolBuilder) -> adbapi::ConnectionPoolBuilder,
) -> (FakeReactor, ConnectionPool) {
    let reactor = FakeReactor::new(true);
    let b = ConnectionPool::builder(module)
        .arg(":memory:")
        .max(1)
        .reactor(reactor.clone())
        .life_clock(clock.clock());
    (reactor, f(b).build().expect("a pool"))
}

/// The id of the connection a job runs on.
fn conn_id(reactor: &FakeReactor, pool: &ConnectionPool) -> u64 {
    fake_wait(
        reactor,
        pool.run_interaction(|t| {
            t.execute("select 1", ())?;
            Ok(t.connection().raw().id())
        }),
    )
    .expect("a job")
}

#[test]
fn max_lifetime_replaces_the_connection_before_a_job_with_up_to_2_5_percent_jitter() {
    let clock = ManualClock::new();
    let (reactor, pool) = inline_pool("sqlite3", &clock, |b| b.max_lifetime(Some(100.0)));
    let first = conn_id(&reactor, &pool);
    let raw = pool.connections()[0].1.clone();
    // Below 97.5 s no jitter can have expired it.
    clock.advance(97.4);
    assert_eq!(conn_id(&reactor, &pool), first);
    clock.advance(2.6);
    let second = conn_id(&reactor, &pool);
    assert_ne!(second, first, "replaced at 100 s");
    assert!(raw.is_closed(), "the old connection was closed");
    assert_eq!(pool.connections().len(), 1);
}

#[test]
fn a_lifetime_expiring_mid_interaction_does_not_touch_the_running_job() {
    let clock = ManualClock::new();
    let (reactor, pool) = inline_pool("sqlite3", &clock, |b| b.max_lifetime(Some(10.0)));
    let c = clock.clone();
    let (before, after) = fake_wait(
        &reactor,
        pool.run_interaction(move |t| {
            t.execute("create table t (x integer)", ())?;
            let before = t.connection().raw().id();
            c.advance(1000.0);
            t.execute("insert into t values (1)", ())?;
            Ok((before, t.connection().raw().id()))
        }),
    )
    .expect("the job is not disturbed");
    assert_eq!(before, after);
    assert_ne!(
        conn_id(&reactor, &pool),
        before,
        "the next job gets a new one"
    );
}

#[test]
fn idle_timeout_counts_from_the_last_job() {
    let clock = ManualClock::new();
    let (reactor, pool) = inline_pool("sqlite3", &clock, |b| b.idle_timeout(Some(10.0)));
    let first = conn_id(&reactor, &pool);
    for _ in 0..3 {
        clock.advance(9.0);
        assert_eq!(conn_id(&reactor, &pool), first);
    }
    clock.advance(10.0);
    assert_ne!(conn_id(&reactor, &pool), first);
}

#[test]
fn check_idle_probes_only_after_an_idle_spell() {
    let clock = ManualClock::new();
    let (module, state) = register_spy_module("checkidle");
    let (reactor, pool) = inline_pool(&module, &clock, |b| {
        b.check_idle(Some(0.5)).good_sql(Some("select 42"))
    });
    conn_id(&reactor, &pool);
    state.clear_calls();
    clock.advance(0.1);
    conn_id(&reactor, &pool);
    assert!(
        !state.ops().iter().any(|o| o == "execute select 42"),
        "{:?}",
        state.ops()
    );
    state.clear_calls();
    clock.advance(1.0);
    conn_id(&reactor, &pool);
    let ops = state.ops();
    let probe = ops.iter().position(|o| o == "execute select 42");
    let job = ops.iter().position(|o| o == "execute select 1");
    assert!(probe.is_some() && probe < job, "{ops:?}");
}

#[test]
fn a_failed_probe_replaces_the_connection_before_the_job() {
    let clock = ManualClock::new();
    let (reactor, pool) = inline_pool("sqlite3", &clock, |b| b.check_idle(Some(0.5)));
    let first = conn_id(&reactor, &pool);
    pool.connections()[0].1.close().unwrap();
    clock.advance(1.0);
    // Without cp_check_idle this job would fail (the dead connection stays,
    // see reconnect.rs); here the probe finds it dead first.
    let second = conn_id(&reactor, &pool);
    assert_ne!(second, first);
}

#[test]
fn without_the_options_nothing_is_checked() {
    let (module, state) = register_spy_module("nolife");
    let reactor = FakeReactor::new(true);
    let pool = ConnectionPool::builder(&module)
        .arg(":memory:")
        .max(1)
        .reactor(reactor.clone())
        .build()
        .unwrap();
    let first = conn_id(&reactor, &pool);
    state.clear_calls();
    assert_eq!(conn_id(&reactor, &pool), first);
    assert_eq!(state.ops(), ["cursor", "execute select 1", "commit"]);
}

/// Warms three workers' connections, restarts the server with `script`,
/// then runs one job (which finds its connection dead) and then three at
/// once (one per worker). Returns each job's success.
fn restart_costs_one_job(
    reactor: &Reactor,
    pool: ConnectionPool,
    sleep: &'static str,
    script: &'static str,
) -> Vec<bool> {
    let p = pool.clone();
    run_chain(reactor, Duration::from_secs(180), move || {
        let batch = |p: &ConnectionPool| -> Deferred<Vec<bool>> {
            let jobs: Vec<Deferred<bool>> = (0..3)
                .map(|_| p.run_query(sleep, ()).add_both(|r| Ok(r.is_ok())))
                .collect();
            gather_results(jobs, true)
        };
        let (p2, p3) = (p.clone(), p.clone());
        batch(&p)
            .add_callback_deferred(move |warm| {
                assert_eq!(warm, [true; 3], "warming up");
                assert_eq!(p2.connections().len(), 3, "three connections");
                let st = std::process::Command::new(script)
                    .arg("restart")
                    .stdout(std::process::Stdio::null())
                    .status()
                    .expect("run the test server script");
                assert!(
                    st.success(),
                    "{script} restart failed (exported its *_TEST_DIR?)"
                );
                p2.run_query("SELECT 1", ()).add_both(|r| Ok(r.is_ok()))
            })
            .add_callback_deferred(move |first| {
                batch(&p3).add_callback(move |mut rest| {
                    rest.insert(0, first);
                    rest
                })
            })
    })
    .unwrap()
}

integration_tests::pg_test! {
    fn a_postgres_restart_costs_one_failed_job_not_one_per_worker() {
        let _server = integration_tests::pg::disrupting_server();
        let reactor = Reactor::new().unwrap();
        let pool = integration_tests::pg::pool_on(
            &reactor,
            adbapi::kwargs! { "cp_min" => 3, "cp_max" => 3, "cp_check_idle" => 3600 },
        );
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/pg-test-server");
        let ok = restart_costs_one_job(&reactor, pool, "SELECT pg_sleep(0.3)", script);
        let failed = ok.iter().filter(|ok| !**ok).count();
        assert!(failed <= 1, "{ok:?}");
        assert!(ok[1..].iter().all(|ok| *ok), "{ok:?}");
    }
}

#[test]
#[cfg_attr(
    not(mysql_available),
    ignore = "SKIPPED: no MySQL/MariaDB server; set ADBAPI_MYSQL_URL (eval \"$(scripts/mysql-test-server start)\")"
)]
fn a_mariadb_restart_costs_one_failed_job_not_one_per_worker() {
    let reactor = Reactor::new().unwrap();
    let pool = ConnectionPool::new(
        "pymysql",
        vec![integration_tests::mysql::url().into()],
        adbapi::kwargs! { "cp_min" => 3, "cp_max" => 3, "cp_check_idle" => 3600,
        "cp_reactor" => Arg::reactor(reactor.clone()) },
    )
    .unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/mysql-test-server");
    let ok = restart_costs_one_job(&reactor, pool, "SELECT SLEEP(0.3)", script);
    let failed = ok.iter().filter(|ok| !**ok).count();
    assert!(failed <= 1, "{ok:?}");
    assert!(ok[1..].iter().all(|ok| *ok), "{ok:?}");
}

/// Fires once `cond` holds, looking every 10 ms on the loop.
fn poll_until(reactor: &Reactor, cond: impl Fn() -> bool + 'static) -> Deferred<()> {
    type Tick = Rc<dyn Fn()>;
    let (d, resolver) = Deferred::new();
    let resolver = Rc::new(RefCell::new(Some(resolver)));
    let me: Rc<RefCell<Option<Tick>>> = Rc::default();
    let (r, m) = (reactor.clone(), Rc::clone(&me));
    let tick: Tick = Rc::new(move || {
        if cond() {
            if let Some(res) = resolver.borrow_mut().take() {
                let _ = res.resolve(Ok(()));
            }
            m.borrow_mut().take();
            return;
        }
        let again = m.borrow().clone();
        if let Some(again) = again {
            r.call_later(Duration::from_millis(10), move || again());
        }
    });
    *me.borrow_mut() = Some(Rc::clone(&tick));
    tick();
    d
}

#[test]
fn idle_workers_above_min_retire_and_close_their_connections() {
    let dir = integration_tests::harness::TempDir::new("idle-workers");
    let reactor = Reactor::new().unwrap();
    let pool = ConnectionPool::new(
        "sqlite3",
        adbapi::args![dir.file("t.db")],
        adbapi::kwargs! { "cp_min" => 1, "cp_max" => 3, "cp_idle_timeout" => 0.05,
        "cp_reactor" => Arg::reactor(reactor.clone()) },
    )
    .unwrap();
    let all = Arc::new(std::sync::Barrier::new(3));
    let (p, r) = (pool.clone(), reactor.clone());
    let conns = run_chain(&reactor, Duration::from_secs(60), move || {
        let jobs: Vec<Deferred<()>> = (0..3)
            .map(|_| {
                let all = Arc::clone(&all);
                p.run_interaction(move |t| {
                    t.execute("select 1", ())?;
                    // Three jobs that wait for each other: three workers.
                    all.wait();
                    Ok(())
                })
            })
            .collect();
        let (p2, p3) = (p.clone(), p.clone());
        gather_results(jobs, true)
            .add_callback(move |_| p2.connections().len())
            .add_callback_deferred(move |n| {
                let p4 = p3.clone();
                poll_until(&r, move || {
                    p4.threadpool().workers() == 1 && p4.connections().len() == 1
                })
                .add_callback(move |()| n)
            })
    })
    .unwrap();
    assert_eq!(conns, 3);
}
