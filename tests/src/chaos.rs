//! The chaos harness of `tests/postgres_chaos.rs` (issue 9) and
//! `tests/mysql_chaos.rs` (issue 11), written once: a few thousand inserts
//! with unique keys run through a `ConnectionPool` (4 workers,
//! `cp_reconnect`) while a side thread ends one of the pool's sessions
//! every 200 ms (the driver-specific part, a [`Chaos::killer`]) and a
//! cancel storm cancels in-flight Deferreds. Bounded: the chaos stops
//! after at most [`CHAOS_LIMIT`] even if inserts remain.
//!
//! [`ChaosRun::check`] asserts the invariants: every Deferred fires exactly
//! once; every insert that called back is in the table; no insert that
//! failed (cancelled, or an ordinary error) is. A failure during `COMMIT`
//! itself may or may not have committed (the one documented ambiguity):
//! such inserts are counted apart, not asserted on, and must be few. After
//! the chaos, once each worker has met its possibly killed connection,
//! every query succeeds.

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use adbapi::dbapi::DbError;
use adbapi::{Arg, ConnectionLost, ConnectionPool, Value};
use deferred::{gather_results, CancelledError, Deferred, Failure};
use reactor::prelude::*;
use reactor::Reactor;

/// Inserts in flight at once.
const IN_FLIGHT: usize = 16;
/// How long the chaos may last, whatever is left to insert.
pub const CHAOS_LIMIT: Duration = Duration::from_secs(15);
/// The killer's pause between two kills.
const KILL_EVERY: Duration = Duration::from_millis(200);

/// What the settling and follow-up queries gave: how many settling queries
/// met a killed connection, and whether each follow-up succeeded.
type AfterChaos = Result<(usize, Vec<bool>), Failure>;

/// How one insert's Deferred fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Not fired (or not submitted).
    Pending,
    /// Called back: the row must be in the table.
    Ok,
    /// Cancelled: the row must not be in the table.
    Cancelled,
    /// Failed while committing: may or may not be in the table.
    DuringCommit,
    /// Failed otherwise (the message): the row must not be in the table.
    Failed(String),
}

/// One chaos run to make: the pool, the table and the killer.
pub struct Chaos<K> {
    /// The DB-API module name (`psycopg2`, `pymysql`).
    pub module: &'static str,
    /// The connection arguments.
    pub args: Vec<Value>,
    /// Keyword arguments beyond `cp_reactor`, `cp_min`, `cp_max` and
    /// `cp_reconnect`, which the harness sets.
    pub kwargs: Vec<(String, Arg)>,
    /// The table, with a `k` 64-bit integer primary key, already created.
    pub table: String,
    /// How many inserts at most (the time bound still applies).
    pub inserts: usize,
    /// Run on the killer thread: opens the killer's side connection there
    /// and returns one kill attempt, which says whether it ended a session.
    pub killer: K,
}

impl<K> std::fmt::Debug for Chaos<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chaos")
            .field("module", &self.module)
            .field("table", &self.table)
            .field("inserts", &self.inserts)
            .finish_non_exhaustive()
    }
}

/// What a chaos run did, for [`ChaosRun::check`].
#[derive(Debug)]
pub struct ChaosRun {
    /// Each submitted insert's outcome, by key.
    pub outcomes: Vec<Outcome>,
    /// How many times each submitted insert's Deferred fired.
    pub fires: Vec<u32>,
    /// How many sessions the killer ended.
    pub kills: usize,
    /// How many settling queries met a killed connection.
    pub settle_lost: usize,
    /// Whether each follow-up query succeeded.
    pub follow_ups: Vec<bool>,
}

struct State {
    outcomes: Vec<Outcome>,
    fires: Vec<u32>,
    next: usize,
    seed: u64,
    started: Instant,
    done: Option<deferred::Resolver<()>>,
}

fn during_commit(f: &Failure) -> bool {
    // A statement sent as a transaction of its own (PostgreSQL's run_query
    // and run_operation in one round trip) is its own COMMIT: a connection
    // lost before its answer came leaves the same ambiguity, and the driver
    // says so in the error.
    f.check::<DbError>().is_some_and(|e| {
        e.sql() == Some("COMMIT")
            || (e.is_connection_lost() && e.message().contains("may have committed"))
    })
}

fn submit(st: &Rc<RefCell<State>>, r: &Reactor, p: &ConnectionPool, table: &Rc<str>) {
    let (k, roll) = {
        let mut s = st.borrow_mut();
        if s.next >= s.outcomes.len() || s.started.elapsed() > CHAOS_LIMIT {
            return;
        }
        s.seed = s
            .seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        s.next += 1;
        (s.next - 1, (s.seed >> 33) % 100)
    };
    let (st2, r2, p2, t2) = (st.clone(), r.clone(), p.clone(), table.clone());
    let d = p
        .run_operation(
            &format!("INSERT INTO {table} (k) VALUES (%s)"),
            (i64::try_from(k).unwrap(),),
        )
        .add_both(move |res| {
            let finished = {
                let mut s = st2.borrow_mut();
                s.fires[k] += 1;
                s.outcomes[k] = match res {
                    Ok(()) => Outcome::Ok,
                    Err(f) if f.check::<CancelledError>().is_some() => Outcome::Cancelled,
                    Err(f) if during_commit(&f) => Outcome::DuringCommit,
                    Err(f) => Outcome::Failed(f.to_string()),
                };
                s.outcomes.iter().all(|o| *o != Outcome::Pending)
                    || (s.started.elapsed() > CHAOS_LIMIT
                        && s.outcomes[..s.next].iter().all(|o| *o != Outcome::Pending))
            };
            if finished {
                let done = st2.borrow_mut().done.take();
                if let Some(d) = done {
                    let _ = d.callback(());
                }
            } else {
                submit(&st2, &r2, &p2, &t2);
            }
            Ok(())
        });
    if roll < 15 {
        r.call_later(Duration::from_micros(roll * 150), move || d.cancel());
    }
}

/// The killer thread: one kill attempt every [`KILL_EVERY`] until `stop`.
/// The flag is checked again after the sleep: a kill started once the
/// chaos ended could land on the settling and follow-up queries.
fn spawn_killer<K, F>(killer: K, stop: Arc<AtomicBool>, kills: Arc<AtomicUsize>) -> JoinHandle<()>
where
    K: FnOnce() -> F + Send + 'static,
    F: FnMut() -> bool,
{
    std::thread::spawn(move || {
        let mut kill = killer();
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(KILL_EVERY);
            if stop.load(Ordering::SeqCst) {
                break;
            }
            if kill() {
                kills.fetch_add(1, Ordering::SeqCst);
            }
        }
    })
}

/// Stops the killer and waits for it: it may be between its check and its
/// kill, so this waits at most one sleep and one kill.
fn stop_killer(stop: &AtomicBool, killer: &RefCell<Option<JoinHandle<()>>>) {
    stop.store(true, Ordering::SeqCst);
    if let Some(k) = killer.borrow_mut().take() {
        k.join().expect("the killer thread panicked");
    }
}

/// Runs the chaos: inserts and cancels until all are done or
/// [`CHAOS_LIMIT`] passes, then stops the killer (and waits for it) before
/// 8 settling queries (each worker may meet one connection killed while
/// idle) and 40 follow-up queries.
pub fn run_chaos<K, F>(chaos: Chaos<K>) -> ChaosRun
where
    K: FnOnce() -> F + Send + 'static,
    F: FnMut() -> bool,
{
    let stop = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicUsize::new(0));
    let killer = Rc::new(RefCell::new(Some(spawn_killer(
        chaos.killer,
        stop.clone(),
        kills.clone(),
    ))));

    let reactor = Reactor::new().unwrap();
    let mut kwargs = vec![
        ("cp_reactor".to_owned(), Arg::reactor(reactor.clone())),
        ("cp_min".to_owned(), Arg::Value(Value::Int(4))),
        ("cp_max".to_owned(), Arg::Value(Value::Int(4))),
        ("cp_reconnect".to_owned(), Arg::Value(Value::Bool(true))),
    ];
    kwargs.extend(chaos.kwargs);
    let pool = ConnectionPool::new(chaos.module, chaos.args, kwargs).unwrap();
    let table: Rc<str> = chaos.table.into();
    let (all, resolver) = Deferred::<()>::new();
    let st = Rc::new(RefCell::new(State {
        outcomes: vec![Outcome::Pending; chaos.inserts],
        fires: vec![0; chaos.inserts],
        next: 0,
        seed: 0x2545_f491_4f6c_dd1d,
        started: Instant::now(),
        done: Some(resolver),
    }));
    let out: Rc<RefCell<Option<AfterChaos>>> = Rc::new(RefCell::new(None));
    {
        let (st, r, p, t, o, stop, killer) = (
            st.clone(),
            reactor.clone(),
            pool.clone(),
            table.clone(),
            out.clone(),
            stop.clone(),
            killer.clone(),
        );
        reactor.call_when_running(move || {
            for _ in 0..IN_FLIGHT {
                submit(&st, &r, &p, &t);
            }
            let (p2, r2) = (p.clone(), r.clone());
            let _ = all
                .add_callback_deferred(move |()| {
                    stop_killer(&stop, &killer);
                    let settle: Vec<Deferred<bool>> = (0..8)
                        .map(|_| {
                            p2.run_query("SELECT 1", ()).add_both(|r| {
                                Ok(match r {
                                    Ok(_) => false,
                                    Err(f) if f.check::<ConnectionLost>().is_some() => true,
                                    Err(f) => panic!("settling query failed oddly: {f}"),
                                })
                            })
                        })
                        .collect();
                    let p3 = p2.clone();
                    gather_results(settle, true).add_callback_deferred(move |lost| {
                        let n = lost.iter().filter(|l| **l).count();
                        let follow: Vec<Deferred<bool>> = (0..40)
                            .map(|_| p3.run_query("SELECT 1", ()).add_both(|r| Ok(r.is_ok())))
                            .collect();
                        gather_results(follow, true).add_callback(move |ok| (n, ok))
                    })
                })
                .add_both(move |res| {
                    *o.borrow_mut() = Some(res);
                    let _ = r2.stop();
                    Ok(())
                });
        });
    }
    let r = reactor.clone();
    let watchdog = reactor.call_later(Duration::from_secs(120), move || {
        let _ = r.stop();
    });
    reactor.run().unwrap();
    let _ = watchdog.cancel();
    stop_killer(&stop, &killer);
    drop(pool);
    let (settle_lost, follow_ups) = out
        .borrow_mut()
        .take()
        .expect("the chaos finished within its bound")
        .expect("settling and follow-up queries ran");
    let st = st.borrow();
    ChaosRun {
        outcomes: st.outcomes[..st.next].to_vec(),
        fires: st.fires[..st.next].to_vec(),
        kills: kills.load(Ordering::SeqCst),
        settle_lost,
        follow_ups,
    }
}

impl ChaosRun {
    /// Asserts the invariants against `present`, the keys in the table
    /// after the run; `killed` names what the killer ends ("backends",
    /// "sessions"); at most `max_ambiguous` inserts may fail during
    /// `COMMIT`. Returns a one-line summary.
    pub fn check(&self, present: &HashSet<i64>, killed: &str, max_ambiguous: usize) -> String {
        let submitted = self.outcomes.len();
        assert!(submitted >= 500, "too few inserts ran: {submitted}");
        for (k, fires) in self.fires.iter().enumerate() {
            assert_eq!(*fires, 1, "insert {k}'s Deferred fired {fires} times");
        }
        let count = |o: &Outcome| self.outcomes.iter().filter(|x| *x == o).count();
        let failed = self
            .outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Failed(_)))
            .count();
        let (ok, cancelled, ambiguous) = (
            count(&Outcome::Ok),
            count(&Outcome::Cancelled),
            count(&Outcome::DuringCommit),
        );
        let summary = format!(
            "{submitted} inserts, {ok} ok, {cancelled} cancelled, {failed} failed, {ambiguous} failed during COMMIT, \
             {} {killed} killed, {} settling queries met a killed connection",
            self.kills, self.settle_lost
        );
        let key = |k: usize| i64::try_from(k).unwrap();
        let cancelled_present = (0..submitted)
            .filter(|k| self.outcomes[*k] == Outcome::Cancelled && present.contains(&key(*k)))
            .count();
        for (k, outcome) in self.outcomes.iter().enumerate() {
            match outcome {
                Outcome::Ok => assert!(
                    present.contains(&key(k)),
                    "insert {k} called back but is missing"
                ),
                Outcome::Cancelled | Outcome::Failed(_) => assert!(
                    !present.contains(&key(k)),
                    "insert {k} failed ({outcome:?}) but is in the table ({cancelled_present} cancelled inserts \
                     are; {summary})"
                ),
                Outcome::DuringCommit | Outcome::Pending => {}
            }
        }
        assert!(present
            .iter()
            .all(|k| usize::try_from(*k).unwrap() < submitted));
        assert!(self.kills > 0, "the killer killed nothing");
        assert!(cancelled > 0, "the storm cancelled nothing");
        assert!(
            ambiguous <= max_ambiguous,
            "too many failed during COMMIT: {summary}"
        );
        assert!(
            self.settle_lost <= 4,
            "at most one lost connection per worker"
        );
        assert!(
            self.follow_ups.iter().all(|ok| *ok),
            "a worker kept failing: {:?}",
            self.follow_ups
        );
        summary
    }
}

/// What a [`cancel_storm`] saw.
#[derive(Debug, Default)]
pub struct StormStats {
    /// How many job Deferreds fired.
    pub fired: usize,
    /// How many failed with `CancelledError`.
    pub cancelled: usize,
    /// The failures of jobs nobody cancelled.
    pub uncancelled_failures: Vec<String>,
}

/// Runs `n` short jobs (the three `statements` in turn), at most eight at a
/// time on the pool, and cancels about a third of them after a short,
/// varying delay (so most cancels reach a running statement); fires with
/// what happened once every job's Deferred fired.
pub fn cancel_storm(
    r: &Reactor,
    p: &ConnectionPool,
    n: usize,
    statements: [&'static str; 3],
) -> Deferred<StormStats> {
    struct St {
        stats: StormStats,
        n: usize,
        next: usize,
        seed: u64,
        statements: [&'static str; 3],
        done: Option<deferred::Resolver<()>>,
    }
    fn submit(st: &Rc<RefCell<St>>, r: &Reactor, p: &ConnectionPool) {
        let (sql, roll) = {
            let mut s = st.borrow_mut();
            s.seed = s
                .seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            s.next += 1;
            (s.statements[(s.next - 1) % 3], (s.seed >> 33) % 300)
        };
        let cancel = roll < 100;
        let (st2, r2, p2) = (st.clone(), r.clone(), p.clone());
        let d = p.run_query(sql, ()).add_both(move |out| {
            let (more, finished) = {
                let mut s = st2.borrow_mut();
                s.stats.fired += 1;
                match out {
                    Err(f) if f.check::<CancelledError>().is_some() => s.stats.cancelled += 1,
                    Err(f) if !cancel => s.stats.uncancelled_failures.push(f.to_string()),
                    _ => {}
                }
                (s.next < s.n, s.stats.fired == s.n)
            };
            if more {
                submit(&st2, &r2, &p2);
            }
            if finished {
                let done = st2.borrow_mut().done.take();
                if let Some(d) = done {
                    let _ = d.callback(());
                }
            }
            Ok(())
        });
        if cancel {
            r.call_later(Duration::from_micros(roll * 20), move || d.cancel());
        }
    }
    let (all, resolver) = Deferred::<()>::new();
    let st = Rc::new(RefCell::new(St {
        stats: StormStats::default(),
        n,
        next: 0,
        seed: 0x9e37_79b9_7f4a_7c15,
        statements,
        done: Some(resolver),
    }));
    for _ in 0..8.min(n) {
        submit(&st, r, p);
    }
    all.add_callback(move |()| std::mem::take(&mut st.borrow_mut().stats))
}

/// A [`cancel_storm`] of `n` jobs on `pool` (which should have four
/// workers), then 20 follow-up `SELECT 1`s, on `reactor` (run here, bounded
/// by `limit`); asserts that every Deferred fired once, that at least
/// `min_cancelled` were cancelled, that no job nobody cancelled failed, and
/// that no worker is left failing.
pub fn assert_cancel_storm(
    reactor: &Reactor,
    pool: &ConnectionPool,
    n: usize,
    statements: [&'static str; 3],
    min_cancelled: usize,
    limit: Duration,
) {
    let (p, r) = (pool.clone(), reactor.clone());
    let (stats, ok) = crate::harness::run_chain(reactor, limit, move || {
        cancel_storm(&r, &p, n, statements).add_callback_deferred(move |stats| {
            let jobs: Vec<Deferred<i64>> = (0..20)
                .map(|_| {
                    p.run_query("SELECT 1", ())
                        .add_callback(|r| r[0].get::<i64>(0).unwrap())
                })
                .collect();
            gather_results(jobs, true).add_callback(move |ok| (stats, ok))
        })
    })
    .expect("the storm and its follow-ups ran");
    assert_eq!(stats.fired, n, "every Deferred fired exactly once");
    assert!(
        stats.cancelled >= min_cancelled,
        "the storm cancelled jobs: {stats:?}"
    );
    assert!(
        stats.uncancelled_failures.is_empty(),
        "{} jobs nobody cancelled failed: {:?}",
        stats.uncancelled_failures.len(),
        &stats.uncancelled_failures[..stats.uncancelled_failures.len().min(5)]
    );
    assert_eq!(ok, vec![1; 20], "no worker is left failing");
}
