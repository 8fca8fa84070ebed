//! `run_interaction_with_retry` (an extension: Twisted's adbapi has no
//! retry; Matrix Synapse retries serialization failures and deadlocks by
//! hand): which failures are retried, a retry that succeeds on the last
//! attempt, giving up (with the attempts in the failure), a panic, cancel
//! and close during the pause; and real races: two SERIALIZABLE
//! transactions on PostgreSQL (40001), a deadlock on MariaDB (1213), and
//! `SQLITE_BUSY` from a lock the writer gate does not cover (an `ATTACH`ed
//! file).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use adbapi::dbapi::{DbError, ErrorKind, OperationalError};
use adbapi::{
    args, kwargs, retry_reason, Arg, ConnectionLost, ConnectionPool, RetryPolicy, Transaction,
};
use deferred::{gather_results, CancelledError, Deferred, Failure};
use integration_tests::harness::{fake_wait, run_chain, TempDir, TIMEOUT};
use integration_tests::logs::LogCapture;
use integration_tests::pools::inline_sqlite_pool;
use reactor::prelude::*;
use reactor::Reactor;

fn db_failure(code: &str) -> Failure {
    Failure::new(DbError::new(ErrorKind::OperationalError, "raced").with_code(code))
}

fn no_pause(attempts: u32) -> RetryPolicy {
    RetryPolicy::attempts(attempts).with_backoff(Duration::ZERO, Duration::ZERO)
}

#[test]
fn only_serialization_failures_and_deadlocks_are_retried() {
    for (module, code) in [
        ("psycopg2", "40001"),
        ("psycopg2", "40P01"),
        ("pymysql", "1213"),
        ("pymysql", "1205"),
        ("sqlite3", "5"),
        ("sqlite3", "517"),
        ("sqlite3", "261"),
    ] {
        assert!(
            retry_reason(module, &db_failure(code)).is_some(),
            "{module} {code}"
        );
    }
    for (module, code) in [
        ("pymysql", "5"),
        ("pymysql", "1285"),
        ("psycopg2", "57014"),
        ("psycopg2", "23505"),
        ("sqlite3", "1"),
        ("sqlite3", "9"),
    ] {
        assert!(
            retry_reason(module, &db_failure(code)).is_none(),
            "{module} {code}"
        );
    }
    let lost = Failure::new(ConnectionLost::from_failure(&db_failure("40001")));
    assert!(retry_reason("psycopg2", &lost).is_none());
    let lost = Failure::new(
        DbError::new(ErrorKind::OperationalError, "gone")
            .with_code("1213")
            .with_connection_lost(true),
    );
    assert!(retry_reason("pymysql", &lost).is_none());
    assert!(retry_reason("sqlite3", &Failure::msg("no code")).is_none());
    let panic = std::panic::catch_unwind(|| panic!("boom")).unwrap_err();
    assert!(retry_reason("sqlite3", &Failure::from_panic(panic)).is_none());
}

#[test]
fn backoff_doubles_up_to_the_limit() {
    let p = RetryPolicy::attempts(10)
        .with_backoff(Duration::from_millis(10), Duration::from_millis(50));
    let got: Vec<u128> = (1..=5).map(|a| p.backoff(a).as_millis()).collect();
    assert_eq!(got, [10, 20, 40, 50, 50]);
    assert_eq!(RetryPolicy::attempts(0).max_attempts, 1);
    assert_eq!(
        RetryPolicy::attempts(u32::MAX).backoff(u32::MAX),
        RetryPolicy::default().max_backoff
    );
}

/// Fails with `code` on every attempt before `succeed_on`, after inserting
/// a row (which the rollback must undo); counts the attempts.
fn flaky(
    attempts: &Arc<AtomicU32>,
    code: &'static str,
    succeed_on: u32,
) -> impl FnMut(&mut Transaction<'_>) -> Result<u32, Failure> + Send + 'static {
    let attempts = Arc::clone(attempts);
    move |txn| {
        let n = attempts.fetch_add(1, Ordering::SeqCst) + 1;
        txn.execute("insert into t values (?)", (n,))?;
        if n < succeed_on {
            return Err(db_failure(code));
        }
        Ok(n)
    }
}

fn rows(reactor: &reactor::testing::FakeReactor, pool: &ConnectionPool) -> Vec<i64> {
    let rows = fake_wait(reactor, pool.run_query("select x from t order by x", ())).unwrap();
    rows.iter().map(|r| r.get::<i64>(0).unwrap()).collect()
}

#[test]
fn a_retry_that_succeeds_on_the_last_attempt_fires_once_with_its_result() {
    let logs = LogCapture::start();
    let (reactor, pool) = inline_sqlite_pool(kwargs! {});
    fake_wait(
        &reactor,
        pool.run_operation("create table t (x integer)", ()),
    )
    .unwrap();
    let attempts = Arc::new(AtomicU32::new(0));
    let d = pool.run_interaction_with_retry(no_pause(4), flaky(&attempts, "5", 4));
    assert_eq!(fake_wait(&reactor, d).unwrap(), 4);
    assert_eq!(attempts.load(Ordering::SeqCst), 4);
    // Each failed attempt was rolled back: only the last one's row is left.
    assert_eq!(rows(&reactor, &pool), [4]);
    let retries: Vec<String> = logs
        .events()
        .iter()
        .filter(|e| e.message == "retrying the interaction")
        .map(|e| e.field("attempt").unwrap_or("?").to_owned())
        .collect();
    assert_eq!(retries, ["2", "3", "4"]);
}

#[test]
fn giving_up_reports_the_attempts_and_keeps_the_driver_error() {
    let (reactor, pool) = inline_sqlite_pool(kwargs! {});
    fake_wait(
        &reactor,
        pool.run_operation("create table t (x integer)", ()),
    )
    .unwrap();
    let attempts = Arc::new(AtomicU32::new(0));
    let d = pool.run_interaction_with_retry(no_pause(3), flaky(&attempts, "5", u32::MAX));
    let f = fake_wait(&reactor, d).unwrap_err();
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    assert!(f.to_string().contains("gave up after 3 attempts"), "{f}");
    assert!(f.check::<OperationalError>().is_some(), "{f}");
    assert!(rows(&reactor, &pool).is_empty());
}

#[test]
fn other_failures_and_panics_are_not_retried() {
    let (reactor, pool) = inline_sqlite_pool(kwargs! {});
    fake_wait(
        &reactor,
        pool.run_operation("create table t (x integer)", ()),
    )
    .unwrap();
    let attempts = Arc::new(AtomicU32::new(0));
    let d = pool.run_interaction_with_retry(no_pause(5), flaky(&attempts, "19", u32::MAX));
    fake_wait(&reactor, d).unwrap_err();
    assert_eq!(attempts.load(Ordering::SeqCst), 1);

    let a = Arc::clone(&attempts);
    let d = pool.run_interaction_with_retry(no_pause(5), move |_txn| -> Result<(), Failure> {
        a.fetch_add(1, Ordering::SeqCst);
        panic!("boom");
    });
    let f = fake_wait(&reactor, d).unwrap_err();
    assert!(f.is_panic(), "{f}");
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    // The pool goes on, on a new connection (a panic discards the old one,
    // and with it this in-memory database).
    fake_wait(&reactor, pool.run_query("select 1", ())).unwrap();
}

/// A file pool on a real reactor whose retried job fails once and then
/// pauses for ten minutes; `during_pause` runs on the loop thread once the
/// first attempt has failed. Returns the job's outcome and its attempts.
fn stop_during_pause(
    during_pause: impl FnOnce(&ConnectionPool, &Deferred<u32>) + 'static,
) -> (Result<u32, Failure>, u32) {
    let dir = TempDir::new("retry-stop");
    let reactor = Reactor::new().unwrap();
    let pool = ConnectionPool::new(
        "sqlite3",
        args![dir.file("t.db")],
        kwargs! { "cp_max" => 1, "cp_reactor" => Arg::reactor(reactor.clone()) },
    )
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let attempts = Arc::new(AtomicU32::new(0));
    let a = Arc::clone(&attempts);
    let outcome: Rc<RefCell<Option<Result<u32, Failure>>>> = Rc::default();
    let (o, r, p) = (outcome.clone(), reactor.clone(), pool.clone());
    reactor.call_when_running(move || {
        let policy = RetryPolicy::attempts(5)
            .with_backoff(Duration::from_secs(600), Duration::from_secs(600));
        let d = p.run_interaction_with_retry(policy, move |_txn| -> Result<u32, Failure> {
            a.fetch_add(1, Ordering::SeqCst);
            let _ = tx.send(());
            Err(db_failure("5"))
        });
        rx.recv_timeout(TIMEOUT).expect("the first attempt ran");
        during_pause(&p, &d);
        let closed = p.close();
        let job = d.add_both(move |res| {
            *o.borrow_mut() = Some(res);
            Ok(())
        });
        let _ = gather_results(vec![job, closed], true).add_both(move |_| {
            r.stop().unwrap();
            Ok(())
        });
    });
    // Bounded well below the ten-minute pause: the close must not wait
    // for it.
    let watchdog = {
        let r = reactor.clone();
        reactor.call_later(Duration::from_secs(60), move || {
            let _ = r.stop();
        })
    };
    reactor.run().unwrap();
    drop(watchdog);
    let got = outcome
        .borrow_mut()
        .take()
        .expect("the job's Deferred fired before the close finished");
    (got, attempts.load(Ordering::SeqCst))
}

#[test]
fn cancelling_during_the_pause_stops_the_attempts() {
    let (got, attempts) = stop_during_pause(|_, d| d.cancel());
    let f = got.unwrap_err();
    assert!(f.check::<CancelledError>().is_some(), "{f}");
    assert_eq!(attempts, 1);
}

#[test]
fn closing_the_pool_does_not_wait_for_the_retries() {
    let (got, attempts) = stop_during_pause(|_, _| {});
    let f = got.unwrap_err();
    assert!(f.to_string().contains("stopped after 1 attempts"), "{f}");
    assert!(f.check::<OperationalError>().is_some(), "{f}");
    assert_eq!(attempts, 1);
}

/// Two parties meet here once (bounded: a party that never comes fails
/// the test instead of hanging it).
#[derive(Clone, Default)]
struct Meet(Arc<(Mutex<u32>, Condvar)>);

impl Meet {
    fn meet(&self) {
        let (m, cv) = &*self.0;
        let mut n = m.lock().unwrap();
        *n += 1;
        cv.notify_all();
        let (n, timeout) = cv.wait_timeout_while(n, TIMEOUT, |n| *n < 2).unwrap();
        assert!(
            !timeout.timed_out(),
            "the other transaction never came ({})",
            *n
        );
    }
}

/// One of the two racing transactions: its index, its transaction, and the
/// meeting point (a no-op after its first attempt).
type RaceBody = fn(usize, &mut Transaction<'_>, &dyn Fn()) -> Result<(), Failure>;

/// Runs `body(i, txn, meet)` for `i` in 0 and 1 at once, plainly or with
/// retries; returns each job's outcome (the failure's code).
fn race(
    reactor: &Reactor,
    pool: &ConnectionPool,
    setup: &'static [&'static str],
    body: RaceBody,
) -> (Vec<Option<String>>, Vec<Option<String>>, u32) {
    let attempts = Arc::new(AtomicU32::new(0));
    let a = Arc::clone(&attempts);
    let p = pool.clone();
    run_chain(reactor, Duration::from_secs(120), move || {
        let code = |r: Result<(), Failure>| {
            Ok(r.err().map(|f| {
                f.check::<DbError>()
                    .and_then(|e| e.code().map(str::to_owned))
                    .unwrap_or_else(|| f.to_string())
            }))
        };
        let run = move |p: &ConnectionPool, retry: bool, a: &Arc<AtomicU32>| {
            let meet = Meet::default();
            let jobs: Vec<Deferred<Option<String>>> = (0..2)
                .map(|i| {
                    let meet = meet.clone();
                    let a = Arc::clone(a);
                    let mut first = true;
                    let f = move |txn: &mut Transaction<'_>| {
                        a.fetch_add(1, Ordering::SeqCst);
                        let m = meet.clone();
                        let once = std::mem::take(&mut first);
                        body(i, txn, &move || {
                            if once {
                                m.meet()
                            }
                        })
                    };
                    let d = if retry {
                        p.run_interaction_with_retry(RetryPolicy::default(), f)
                    } else {
                        let mut f = f;
                        p.run_interaction(move |t| f(t))
                    };
                    d.add_both(code)
                })
                .collect();
            gather_results(jobs, true)
        };
        let (p2, p3) = (p.clone(), p.clone());
        let setup_all = setup
            .iter()
            .fold(deferred::succeed(()), |d: Deferred<()>, sql| {
                let p = p.clone();
                d.add_callback_deferred(move |()| p.run_operation(sql, ()))
            });
        setup_all
            .add_callback_deferred(move |()| run(&p2, false, &Arc::new(AtomicU32::new(0))))
            .add_callback_deferred(move |plain| {
                run(&p3, true, &a).add_callback(move |retried| (plain, retried))
            })
    })
    .map(|(plain, retried)| (plain, retried, attempts.load(Ordering::SeqCst)))
    .unwrap()
}

integration_tests::pg_test! {
    fn postgres_serialization_failures_are_retried_until_both_commit() {
        let _server = integration_tests::pg::sharing_server();
        let reactor = Reactor::new().unwrap();
        let pool = integration_tests::pg::pool_on(
            &reactor,
            kwargs! { "cp_min" => 2, "cp_max" => 2 },
        );
        fn body(i: usize, txn: &mut Transaction<'_>, meet: &dyn Fn()) -> Result<(), Failure> {
            txn.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", ())?;
            let n = txn.execute("SELECT count(*) FROM life_ser", ())?.fetchall()?;
            let n = n[0].get::<i64>(0).unwrap();
            meet();
            txn.execute("INSERT INTO life_ser VALUES (%s, %s)", (n, i as i64))?;
            Ok(())
        }
        let (plain, retried, attempts) = race(
            &reactor,
            &pool,
            &["DROP TABLE IF EXISTS life_ser", "CREATE TABLE life_ser (n int, who int)"],
            body,
        );
        // Without retries one of the two loses (write skew caught by SSI).
        assert_eq!(
            plain.iter().filter(|c| c.as_deref() == Some("40001")).count(),
            1,
            "{plain:?}"
        );
        assert_eq!(retried, [None, None], "both commit with retries");
        assert!(attempts >= 3, "{attempts}");
    }
}

#[test]
#[cfg_attr(
    not(mysql_available),
    ignore = "SKIPPED: no MySQL/MariaDB server; set ADBAPI_MYSQL_URL (eval \"$(scripts/mysql-test-server start)\")"
)]
fn mariadb_deadlocks_are_retried_until_both_commit() {
    let reactor = Reactor::new().unwrap();
    let pool = ConnectionPool::new(
        "pymysql",
        vec![integration_tests::mysql::url().into()],
        kwargs! { "cp_min" => 2, "cp_max" => 2, "cp_reactor" => Arg::reactor(reactor.clone()) },
    )
    .unwrap();
    fn body(i: usize, txn: &mut Transaction<'_>, meet: &dyn Fn()) -> Result<(), Failure> {
        let (mine, theirs) = if i == 0 { (1, 2) } else { (2, 1) };
        txn.execute("UPDATE life_dl SET v = v + 1 WHERE k = %s", (mine,))?;
        meet();
        txn.execute("UPDATE life_dl SET v = v + 1 WHERE k = %s", (theirs,))?;
        Ok(())
    }
    let (plain, retried, attempts) = race(
        &reactor,
        &pool,
        &[
            "DROP TABLE IF EXISTS life_dl",
            "CREATE TABLE life_dl (k INT PRIMARY KEY, v INT) ENGINE=InnoDB",
            "INSERT INTO life_dl VALUES (1, 0), (2, 0)",
        ],
        body,
    );
    assert_eq!(
        plain
            .iter()
            .filter(|c| c.as_deref() == Some("1213"))
            .count(),
        1,
        "{plain:?}"
    );
    assert_eq!(retried, [None, None], "both commit with retries");
    assert!(attempts >= 3, "{attempts}");
}

#[test]
fn sqlite_busy_from_a_lock_the_gate_does_not_cover_is_retried() {
    let dir = TempDir::new("retry-busy");
    let shared = dir.file("shared.db");
    let reactor = Reactor::new().unwrap();
    let attach = format!("ATTACH DATABASE '{shared}' AS aux");
    let pool_for = |max: i64| {
        let attach = attach.clone();
        ConnectionPool::new(
            "sqlite3",
            args![":memory:"],
            kwargs! {
                "timeout" => 0,
                "cp_max" => max,
                "cp_openfun" => Arg::openfun(move |c| {
                    c.execute(&attach, ()).map(drop).map_err(Failure::new)
                }),
                "cp_reactor" => Arg::reactor(reactor.clone()),
            },
        )
        .unwrap()
    };
    let (holder, retrier) = (pool_for(1), pool_for(1));
    let (held_tx, held_rx) = std::sync::mpsc::channel::<()>();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_tx = Mutex::new(Some(release_tx));
    let attempts = Arc::new(AtomicU32::new(0));
    let a = Arc::clone(&attempts);
    let got = run_chain(&reactor, Duration::from_secs(60), move || {
        let (h, r) = (holder.clone(), retrier.clone());
        holder
            .run_operation("CREATE TABLE aux.t (x INTEGER)", ())
            .add_callback_deferred(move |()| {
                // Holds aux's write lock until the retrier has failed once.
                let held = h.run_interaction(move |txn| {
                    txn.execute("INSERT INTO aux.t VALUES (1)", ())?;
                    held_tx.send(()).unwrap();
                    release_rx.recv_timeout(TIMEOUT).expect("released");
                    Ok(())
                });
                let policy = RetryPolicy::attempts(10)
                    .with_backoff(Duration::from_millis(20), Duration::from_secs(1));
                let retried = r.run_interaction_with_retry(policy, move |txn| {
                    if a.fetch_add(1, Ordering::SeqCst) == 0 {
                        held_rx.recv_timeout(TIMEOUT).expect("the lock is held");
                    }
                    let res = txn.execute("INSERT INTO aux.t VALUES (2)", ());
                    if res.is_err() {
                        if let Some(tx) = release_tx.lock().unwrap().take() {
                            tx.send(()).unwrap();
                        }
                    }
                    res?;
                    Ok(())
                });
                gather_results(vec![held, retried], true)
            })
    });
    got.expect("both commit");
    assert!(attempts.load(Ordering::SeqCst) >= 2);
}
