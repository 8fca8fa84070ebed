//! Load tests of `adbapi::ConnectionPool` on the real reactor.
//!
//! - [`hundred_thousand_queries_outstanding`]: 100 000 `run_query` calls are
//!   issued at once on one pool (a SQLite file in WAL mode, two workers, a
//!   1000-row table, point selects by primary key); every Deferred fires
//!   exactly once with its own row, peak memory stays bounded (the growth of
//!   the peak resident set, `VmHWM` in `/proc/self/status`, is far below
//!   1 GiB: the assertion is "bounded", not a performance target), and no job
//!   is left outstanding on the reactor.
//! - [`cancel_every_other_queued_job`]: 10 000 interactions queue behind one
//!   that blocks the single worker; every other one is cancelled before it
//!   can start; once released, the cancelled ones never run and the others
//!   all fire with their own value.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use adbapi::dbapi;
use adbapi::ConnectionPool;
use deferred::{CancelledError, Deferred, Failure};
use integration_tests::harness::{unique_name, TempDir};
use reactor::prelude::*;
use reactor::{Reactor, ReactorFromThreads};

const QUERIES: usize = 100_000;
const TABLE_ROWS: i64 = 1000;
/// Only a hang reaches it; a slow debug build on a noisy machine needs a
/// fraction of it.
const LOAD_SAFETY_NET: Duration = Duration::from_secs(300);
const CANCEL_SAFETY_NET: Duration = Duration::from_secs(120);
const ONE_GIB_KB: u64 = 1024 * 1024;

/// A field of `/proc/self/status`, in kB (`VmRSS`, `VmHWM`).
fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// The value stored for primary key `id`.
fn value_for(id: i64) -> i64 {
    id * 7919 + 13
}

/// Creates the 1000-row table in a WAL-mode database file.
fn set_up_table(path: &str) {
    let conn = dbapi::connect("sqlite3", &[path.into()], &[]).expect("plain sqlite3 connect");
    let mode = conn
        .execute("PRAGMA journal_mode=WAL", ())
        .expect("PRAGMA journal_mode")
        .fetchall()
        .expect("journal mode row");
    assert_eq!(
        mode[0].get::<String>(0).expect("text"),
        "wal",
        "the database is in WAL mode"
    );
    conn.execute(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)",
        (),
    )
    .expect("create table");
    let mut cur = conn.cursor().expect("cursor");
    cur.executemany(
        "INSERT INTO t (id, v) VALUES (?, ?)",
        (1..=TABLE_ROWS).map(|id| (id, value_for(id))),
    )
    .expect("insert the rows");
    conn.commit().expect("commit the rows");
    conn.close().expect("close the set-up connection");
}

#[derive(Debug, Default)]
struct Tally {
    /// Fires per query (callback or errback).
    fires: Vec<u8>,
    correct: usize,
    /// The first few wrong results, for the assertion message.
    wrong: Vec<String>,
    done: usize,
    outstanding_after_issue: usize,
    closed: bool,
    workers_after_close: usize,
    outstanding_after_close: usize,
}

#[test]
fn hundred_thousand_queries_outstanding() {
    let dir = TempDir::new("adbapi-load");
    let path = dir.file("load.db");
    set_up_table(&path);

    let rss_before = status_kb("VmRSS");
    let reactor = Reactor::new().expect("a reactor");
    let opened = Arc::new(AtomicUsize::new(0));
    let o = Arc::clone(&opened);
    let pool = ConnectionPool::builder("sqlite3")
        .arg(path.as_str())
        .min(2)
        .max(2)
        .name(&unique_name("load"))
        .openfun(move |conn| {
            // Each worker's connection checks the file is (still) in WAL
            // mode, so the two readers never block each other.
            let rows = conn.execute("PRAGMA journal_mode=WAL", ())?.fetchall()?;
            let mode: String = rows[0].get(0)?;
            if mode != "wal" {
                return Err(Failure::msg(format!("journal_mode is {mode}, not wal")));
            }
            o.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .reactor(reactor.clone())
        .build()
        .expect("build the pool");

    let tally = Rc::new(RefCell::new(Tally {
        fires: vec![0; QUERIES],
        ..Tally::default()
    }));
    let timed_out = Rc::new(Cell::new(false));
    let (r, t) = (reactor.clone(), Rc::clone(&timed_out));
    let net = reactor.call_later(LOAD_SAFETY_NET, move || {
        t.set(true);
        let _ = r.stop();
    });
    let net = Rc::new(net);
    let (r, p, tl) = (reactor.clone(), pool.clone(), Rc::clone(&tally));
    reactor.call_when_running(move || {
        for i in 0..QUERIES {
            let id = i64::try_from(i).expect("small") % TABLE_ROWS + 1;
            let (r, p, tl, net) = (r.clone(), p.clone(), Rc::clone(&tl), Rc::clone(&net));
            let _ = p
                .clone()
                .run_query("SELECT id, v FROM t WHERE id = ?", (id,))
                .add_both(move |res| {
                    let all_done = {
                        let mut t = tl.borrow_mut();
                        t.fires[i] += 1;
                        let ok = match &res {
                            Ok(rows) => {
                                rows.len() == 1
                                    && rows[0].get::<i64>(0).ok() == Some(id)
                                    && rows[0].get::<i64>(1).ok() == Some(value_for(id))
                            }
                            Err(_) => false,
                        };
                        if ok {
                            t.correct += 1;
                        } else if t.wrong.len() < 5 {
                            t.wrong.push(format!("query {i} (id {id}): {res:?}"));
                        }
                        t.done += 1;
                        t.done == QUERIES
                    };
                    if all_done {
                        let (tl2, r2, p2) = (Rc::clone(&tl), r.clone(), p.clone());
                        let _ = p.close().add_both(move |closed| {
                            let mut t = tl2.borrow_mut();
                            t.closed = closed.is_ok();
                            t.workers_after_close = p2.threadpool().workers();
                            t.outstanding_after_close = p2.reactor().loop_queue().outstanding();
                            let _ = net.cancel();
                            let _ = r2.stop();
                            Ok(())
                        });
                    }
                    Ok(())
                });
        }
        let mut t = tl.borrow_mut();
        t.outstanding_after_issue = r.loop_queue().outstanding();
    });
    reactor.run().expect("reactor.run");
    let hwm_after = status_kb("VmHWM");

    let t = tally.borrow();
    assert!(
        !timed_out.get(),
        "safety net: {} of {QUERIES} queries fired within {LOAD_SAFETY_NET:?}",
        t.done
    );
    assert!(
        t.outstanding_after_issue >= QUERIES - 2,
        "the queries were outstanding at once: {} outstanding right after issuing {QUERIES}",
        t.outstanding_after_issue
    );
    assert_eq!(t.done, QUERIES, "every query's Deferred fired");
    let not_once: Vec<usize> = (0..QUERIES).filter(|&i| t.fires[i] != 1).collect();
    assert!(
        not_once.is_empty(),
        "{} Deferreds did not fire exactly once, e.g. query {:?}",
        not_once.len(),
        not_once.first()
    );
    assert_eq!(
        t.correct, QUERIES,
        "every query fired with its own row; wrong: {:?}",
        t.wrong
    );
    assert!(t.closed, "pool.close() succeeded");
    assert_eq!(t.workers_after_close, 0, "no worker left after close");
    assert_eq!(
        t.outstanding_after_close, 0,
        "no job outstanding after close"
    );
    assert_eq!(
        reactor.loop_queue().outstanding(),
        0,
        "no job outstanding on the reactor"
    );
    assert_eq!(
        opened.load(Ordering::Relaxed),
        2,
        "one connection per worker, each checked by cp_openfun"
    );
    let growth = hwm_after.saturating_sub(rss_before);
    assert!(
        growth < ONE_GIB_KB,
        "peak RSS grew by {growth} kB (VmRSS before {rss_before} kB, VmHWM after {hwm_after} kB) \
         for {QUERIES} outstanding queries: memory is not bounded"
    );
}

#[derive(Debug, Default)]
struct CancelTally {
    /// Per job: `Some(Ok(value))`, `Some(Err(cancelled?))`, or `None`.
    results: Vec<Option<Result<usize, bool>>>,
    fires: Vec<u8>,
    /// Errbacks seen by the time the cancelling loop ended.
    fired_while_blocked: usize,
    blocker: Option<Result<(), String>>,
    done: usize,
    closed: bool,
    workers_after_close: usize,
    outstanding_after_cancel: usize,
    outstanding_after_close: usize,
}

#[test]
fn cancel_every_other_queued_job() {
    const JOBS: usize = 10_000;
    let dir = TempDir::new("adbapi-cancel");
    let path = dir.file("cancel.db");
    let reactor = Reactor::new().expect("a reactor");
    let pool = ConnectionPool::builder("sqlite3")
        .arg(path.as_str())
        .min(1)
        .max(1)
        .name(&unique_name("cancel"))
        .reactor(reactor.clone())
        .build()
        .expect("build the pool");

    let executed = Arc::new(AtomicUsize::new(0));
    let ran: Arc<Vec<AtomicBool>> = Arc::new((0..JOBS).map(|_| AtomicBool::new(false)).collect());
    let (release, released) = crossbeam_channel::bounded::<()>(1);
    let tally = Rc::new(RefCell::new(CancelTally {
        results: vec![None; JOBS],
        fires: vec![0; JOBS],
        ..CancelTally::default()
    }));
    let timed_out = Rc::new(Cell::new(false));
    let (r, t) = (reactor.clone(), Rc::clone(&timed_out));
    let net = Rc::new(reactor.call_later(CANCEL_SAFETY_NET, move || {
        t.set(true);
        let _ = r.stop();
    }));

    // Closes the pool and stops the reactor once every Deferred fired.
    let finish: Rc<dyn Fn()> = {
        let (tl, r, p, net) = (
            Rc::clone(&tally),
            reactor.clone(),
            pool.clone(),
            Rc::clone(&net),
        );
        Rc::new(move || {
            let all = {
                let mut t = tl.borrow_mut();
                t.done += 1;
                t.done == JOBS + 1
            };
            if all {
                let (tl, r, p2, net) = (Rc::clone(&tl), r.clone(), p.clone(), Rc::clone(&net));
                let _ = p.close().add_both(move |closed| {
                    let mut t = tl.borrow_mut();
                    t.closed = closed.is_ok();
                    t.workers_after_close = p2.threadpool().workers();
                    t.outstanding_after_close = p2.reactor().loop_queue().outstanding();
                    let _ = net.cancel();
                    let _ = r.stop();
                    Ok(())
                });
            }
        })
    };

    let (r, p, tl, ex, rn) = (
        reactor.clone(),
        pool.clone(),
        Rc::clone(&tally),
        Arc::clone(&executed),
        Arc::clone(&ran),
    );
    reactor.call_when_running(move || {
        // The single worker is held by this job until `release` is sent.
        let (tl2, fin) = (Rc::clone(&tl), Rc::clone(&finish));
        let _ = p
            .run_interaction(move |_txn| {
                released
                    .recv_timeout(CANCEL_SAFETY_NET)
                    .map_err(|e| Failure::msg(format!("blocker never released: {e}")))
            })
            .add_both(move |res| {
                tl2.borrow_mut().blocker = Some(res.map_err(|f| f.to_string()));
                fin();
                Ok(())
            });
        let mut to_cancel: Vec<Deferred<()>> = Vec::with_capacity(JOBS / 2);
        for i in 0..JOBS {
            let (ex, rn, tl, fin) = (
                Arc::clone(&ex),
                Arc::clone(&rn),
                Rc::clone(&tl),
                Rc::clone(&finish),
            );
            let d = p
                .run_interaction(move |_txn| {
                    ex.fetch_add(1, Ordering::SeqCst);
                    rn[i].store(true, Ordering::SeqCst);
                    Ok(i)
                })
                .add_both(move |res| {
                    {
                        let mut t = tl.borrow_mut();
                        t.fires[i] += 1;
                        t.results[i] = Some(res.map_err(|f| f.check::<CancelledError>().is_some()));
                    }
                    fin();
                    Ok(())
                });
            if i % 2 == 1 {
                to_cancel.push(d);
            }
        }
        for d in &to_cancel {
            d.cancel();
        }
        {
            let mut t = tl.borrow_mut();
            t.fired_while_blocked = t.fires.iter().filter(|&&n| n > 0).count();
            t.outstanding_after_cancel = r.loop_queue().outstanding();
        }
        release.send(()).expect("the blocker is waiting");
    });
    reactor.run().expect("reactor.run");

    let t = tally.borrow();
    assert!(
        !timed_out.get(),
        "safety net: {} of {} Deferreds fired within {CANCEL_SAFETY_NET:?}",
        t.done,
        JOBS + 1
    );
    assert_eq!(t.blocker, Some(Ok(())), "the blocking interaction finished");
    assert_eq!(
        t.fired_while_blocked,
        JOBS / 2,
        "cancelling fails exactly the cancelled Deferreds at once, while the worker is blocked"
    );
    assert_eq!(
        t.outstanding_after_cancel,
        JOBS / 2 + 1,
        "cancelled jobs are withdrawn from the reactor's pending table"
    );
    let not_once: Vec<usize> = (0..JOBS).filter(|&i| t.fires[i] != 1).collect();
    assert!(
        not_once.is_empty(),
        "{} Deferreds did not fire exactly once, e.g. job {:?}",
        not_once.len(),
        not_once.first()
    );
    for i in 0..JOBS {
        let did_run = ran[i].load(Ordering::SeqCst);
        if i % 2 == 1 {
            assert!(!did_run, "cancelled job {i} ran");
            assert_eq!(
                t.results[i],
                Some(Err(true)),
                "cancelled job {i} failed with CancelledError"
            );
        } else {
            assert!(did_run, "job {i} ran");
            assert_eq!(t.results[i], Some(Ok(i)), "job {i} fired with its value");
        }
    }
    assert_eq!(
        executed.load(Ordering::SeqCst),
        JOBS / 2,
        "exactly the jobs not cancelled executed"
    );
    assert!(t.closed, "pool.close() succeeded");
    assert_eq!(t.workers_after_close, 0, "no worker left after close");
    assert_eq!(
        t.outstanding_after_close, 0,
        "no job outstanding after close"
    );
    assert_eq!(reactor.loop_queue().outstanding(), 0);
}
