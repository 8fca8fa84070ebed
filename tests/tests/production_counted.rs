//! The counted job path (an unnamed job of a pool with `cp_stats` on and
//! neither `cp_slow_job_threshold` nor `cp_queue_timeout`): each job is
//! counted in the category its Deferred shows, whatever moment a cancel
//! arrives at, and the totals add up to the jobs submitted once every
//! Deferred has fired.
//!
//! The deterministic tests here aim at one moment each; the model
//! ([`counted_path_model`]) drives random programs of jobs, outcomes,
//! cancels at every moment a loop thread can see (queued, before the
//! connection is attached, mid-interaction, after the function returned and
//! before the Deferred fired, after it fired), closes and refusals, on a
//! fake reactor whose pool runs jobs by hand, so every interleaving is the
//! program's and a failing case replays exactly; half the programs run on a
//! pool whose jobs take the observed path, for contrast. After every step:
//! totals never go back, each category counts at least the Deferreds that
//! show it, `queued` is the jobs still waiting and the wait/run counts the
//! jobs that ran; at the end every Deferred fired once and each category
//! counts exactly the Deferreds that show it, and a job whose Deferred shows
//! `CancelledError` committed nothing.
//! [`counted_path_under_real_threads`] checks the same at the end of rounds
//! on real worker threads, cancelled by loop-thread timers.
//!
//! ```sh
//! ADBAPI_COUNTED_CASES=3000 cargo test -p integration-tests --test production_counted
//! ADBAPI_COUNTED_SEED=<seed> ADBAPI_COUNTED_CASES=1 ...  # replay a threaded round
//! ```

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use adbapi::dbapi::{DbError, ErrorKind};
use adbapi::{args, kwargs, Arg, Connection, ConnectionPool, PoolStatus, RetryPolicy};
use deferred::{CancelledError, Deferred, Failure};
use integration_tests::faults::{quiet_injected_panics, INJECTED_PANIC};
use integration_tests::harness::{fake_wait, run_chain, TempDir, TIMEOUT};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use reactor::prelude::*;
use reactor::testing::{FakeReactor, PoolMode, TestPool};
use reactor::Reactor;

fn manual_pool(reactor: &FakeReactor, extra: Vec<(String, Arg)>) -> ConnectionPool {
    let mut kw = kwargs! { "cp_max" => 1, "cp_reactor" => Arg::reactor(reactor.clone()) };
    kw.extend(extra);
    ConnectionPool::new("sqlite3", args![":memory:"], kw).expect("a pool")
}

fn totals(st: &PoolStatus) -> (u64, u64, u64, u64) {
    (
        st.jobs_completed,
        st.jobs_failed,
        st.jobs_cancelled,
        st.jobs_timed_out,
    )
}

/// A job its closing pool dropped unrun has its `PoolStopped` on the way to
/// the loop thread; a cancel arriving before it is delivered must not turn
/// the Deferred into a `CancelledError` while the job is counted as failed.
#[test]
fn a_dropped_job_cancelled_before_its_failure_arrives_is_counted_as_its_deferred_shows() {
    let reactor = FakeReactor::with_pool_mode(true, PoolMode::Manual);
    let pool = manual_pool(&reactor, vec![]);
    let d = pool.run_query("SELECT 1", ());
    let closed = pool.close();
    // The backlog was dropped by the close, its failure is queued: cancel now.
    d.cancel();
    let f = fake_wait(&reactor, d).expect_err("dropped");
    fake_wait(&reactor, closed).expect("closed");
    let st = pool.status();
    let want = if f.check::<CancelledError>().is_some() {
        (0, 0, 1, 0)
    } else {
        (0, 1, 0, 0)
    };
    assert_eq!(totals(&st), want, "the Deferred shows {f}: {st:?}");
    // The outcome was decided when the pool dropped it: the cancel is declined.
    assert!(f.check::<reactor::PoolStopped>().is_some(), "{f}");
    assert_eq!(st.queued, 0, "{st:?}");
}

/// A closed pool refuses a job with `PoolClosed` on a later turn and counts
/// it as failed at once; a cancel before that turn must not make the
/// Deferred show `CancelledError` instead.
#[test]
fn a_refused_job_cancelled_before_its_refusal_arrives_is_counted_as_its_deferred_shows() {
    let reactor = FakeReactor::with_pool_mode(true, PoolMode::Manual);
    let pool = manual_pool(&reactor, vec![]);
    fake_wait(&reactor, pool.close()).expect("closed");
    let d = pool.run_query("SELECT 1", ());
    d.cancel();
    let f = fake_wait(&reactor, d).expect_err("refused");
    let st = pool.status();
    let want = if f.check::<CancelledError>().is_some() {
        (0, 0, 1, 0)
    } else {
        (0, 1, 0, 0)
    };
    assert_eq!(totals(&st), want, "the Deferred shows {f}: {st:?}");
    assert!(f.check::<adbapi::PoolClosed>().is_some(), "{f}");
}

/// Panics when dropped: a value an interaction holds.
struct PanicOnDrop;

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("{INJECTED_PANIC}: a value the interaction held panics as it is dropped");
        }
    }
}

/// An interaction that never runs (its connection cannot be opened) is
/// dropped by its job; a panic as what it holds is dropped fails its
/// Deferred (a panic in user code becomes a Failure), and the job must be
/// counted and timed all the same, on the counted path and on the observed
/// one (a named job).
#[test]
fn a_job_whose_unrun_interaction_panics_as_it_is_dropped_is_counted() {
    quiet_injected_panics();
    for named in [false, true] {
        let dir = TempDir::new("counted-drop-panic");
        let reactor = FakeReactor::new(true);
        let pool = ConnectionPool::new(
            "sqlite3",
            args![dir.file("no/such/dir/x.db")],
            kwargs! { "cp_max" => 1, "cp_reactor" => Arg::reactor(reactor.clone()) },
        )
        .expect("a pool");
        let held = PanicOnDrop;
        let interaction = move |_txn: &mut adbapi::Transaction<'_>| -> Result<(), Failure> {
            let _held = &held;
            Ok(())
        };
        let d = if named {
            pool.named("held").run_interaction(interaction)
        } else {
            pool.run_interaction(interaction)
        };
        let f = fake_wait(&reactor, d).expect_err("cannot connect");
        // (Its text would name the injected panic, which the quiet hook hides.)
        let panicked = f.is_panic();
        let st = pool.status();
        assert_eq!(
            totals(&st),
            (0, 1, 0, 0),
            "named {named}, panic {panicked}: {st:?}"
        );
        assert_eq!(
            (st.wait.count, st.run.count),
            (1, 1),
            "named {named}: the job ran: {st:?}"
        );
    }
}

/// A retried interaction is dropped once its last attempt has committed; a
/// panic as what it holds is dropped must not fail the Deferred of a job
/// whose work committed (an errback means nothing committed), and the job is
/// counted as it shows.
#[test]
fn a_committed_retried_job_whose_interaction_panics_as_it_is_dropped_succeeds() {
    quiet_injected_panics();
    let dir = TempDir::new("counted-retry-drop-panic");
    let db = dir.file("t.db");
    make_table(&db);
    let reactor = FakeReactor::new(true);
    let pool = ConnectionPool::new(
        "sqlite3",
        args![db.clone()],
        kwargs! { "cp_max" => 1, "cp_reactor" => Arg::reactor(reactor.clone()) },
    )
    .expect("a pool");
    let held = PanicOnDrop;
    let d = pool.run_interaction_with_retry(RetryPolicy::attempts(2), move |txn| {
        let _held = &held;
        txn.execute("INSERT INTO t VALUES (7)", ())?;
        Ok(())
    });
    let r = fake_wait(&reactor, d);
    let rows = fake_wait(&reactor, pool.run_query("SELECT x FROM t", ())).expect("rows");
    let st = pool.status();
    assert_eq!(rows.len(), 1, "the job committed");
    assert!(
        r.is_ok(),
        "the job committed, but its Deferred failed (panic: {}): {st:?}",
        r.as_ref().err().is_some_and(Failure::is_panic)
    );
    assert_eq!(totals(&st), (2, 0, 0, 0), "{st:?}");
}

/// A job its closing pool drops unrun is dropped with what its interaction
/// holds; a panic there must neither escape into the caller of `close` nor
/// keep the job's Deferred from failing with `PoolStopped` (it never fired),
/// on the counted path and on Twisted's plain one (`cp_stats` off).
#[test]
fn a_dropped_job_whose_interaction_panics_as_it_is_dropped_still_fires() {
    quiet_injected_panics();
    for stats in [true, false] {
        let reactor = FakeReactor::with_pool_mode(true, PoolMode::Manual);
        let pool = manual_pool(&reactor, kwargs! { "cp_stats" => stats });
        let held = PanicOnDrop;
        let d = pool.run_interaction(move |_txn| -> Result<(), Failure> {
            let _held = &held;
            Ok(())
        });
        let closed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pool.close()))
            .unwrap_or_else(|_| panic!("stats {stats}: close() panicked"));
        let f = fake_wait(&reactor, d).expect_err("dropped");
        assert!(f.check::<reactor::PoolStopped>().is_some(), "{f}");
        fake_wait(&reactor, closed).expect("closed");
        let st = pool.status();
        let want = if stats { (0, 1, 0, 0) } else { (0, 0, 0, 0) };
        assert_eq!(totals(&st), want, "{st:?}");
    }
}

/// A job a cancel withdrew stays in the thread pool's queue until a worker
/// pops it or the pool drops it; a panic as what its interaction holds is
/// dropped then must not escape into the caller of `close` (or a worker).
#[test]
fn a_withdrawn_job_whose_interaction_panics_as_it_is_dropped_is_dropped_quietly() {
    quiet_injected_panics();
    for run_it in [false, true] {
        let reactor = FakeReactor::with_pool_mode(true, PoolMode::Manual);
        let pool = manual_pool(&reactor, vec![]);
        let held = PanicOnDrop;
        let d = pool.run_interaction(move |_txn| -> Result<(), Failure> {
            let _held = &held;
            Ok(())
        });
        d.cancel();
        let f = fake_wait(&reactor, d).expect_err("withdrawn");
        assert!(f.check::<CancelledError>().is_some(), "{f}");
        if run_it {
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reactor.run_jobs()));
            assert!(ran.is_ok(), "popping the withdrawn job panicked");
        }
        let closed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pool.close()))
            .unwrap_or_else(|_| panic!("run_it {run_it}: close() panicked"));
        fake_wait(&reactor, closed).expect("closed");
        let st = pool.status();
        assert_eq!(totals(&st), (0, 0, 1, 0), "{st:?}");
    }
}

// ---------------------------------------------------------------------------
// The model.
// ---------------------------------------------------------------------------

/// Where a job cancels itself from inside the pool (in this model the pool's
/// jobs run on the loop thread, so that is a cancel from the loop thread at
/// that moment of the job).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SelfCancel {
    Never,
    /// In the connection factory of attempt `n` (before the job's connection
    /// is attached; for a retried job, between attempts).
    AtConnect(u8),
    /// After getting its connection, before its statement.
    BeforeStatement,
    /// After its statement (and its own commit, for `WithConn`), before
    /// returning.
    AfterStatement,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Ok,
    Err,
    Panic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Query,
    QueryErr,
    /// `run_operation` inserting the job's key.
    Op,
    /// `run_interaction` inserting the job's key.
    Insert(End),
    /// `run_interaction_with_retry`: its first `fails` attempts fail with a
    /// serialization failure, at most `max` attempts.
    Retry {
        fails: u8,
        max: u8,
    },
    /// `run_with_connection` inserting the key, committing itself first if
    /// asked, then inserting again.
    WithConn {
        commit_first: bool,
    },
    /// A named `run_interaction` (the observed path), for contrast.
    Named(End),
}

#[derive(Debug, Clone)]
enum Act {
    /// A job; with `true`, its interaction holds a value that panics as it
    /// is dropped.
    Submit(Kind, SelfCancel, bool),
    RunOne,
    Pump,
    Cancel(usize),
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Cat {
    Completed,
    Failed,
    Cancelled,
}

fn cat_of(r: &Result<(), Failure>) -> Cat {
    match r {
        Ok(()) => Cat::Completed,
        Err(f) if f.check::<CancelledError>().is_some() => Cat::Cancelled,
        Err(_) => Cat::Failed,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JobState {
    Queued,
    Withdrawn,
    Started,
    Dropped,
    Refused,
}

/// What the pool's hooks and interactions, running on this thread, share
/// with the driver of the program.
#[derive(Default)]
struct World {
    handles: HashMap<usize, Deferred<()>>,
    plans: HashMap<usize, SelfCancel>,
    connects: HashMap<usize, u8>,
    current: Option<usize>,
    fired: HashMap<usize, Vec<(Cat, String)>>,
}

thread_local! {
    static WORLD: RefCell<World> = RefCell::new(World::default());
}

fn cancel_job(id: usize) {
    let d = WORLD.with(|w| w.borrow_mut().handles.remove(&id));
    if let Some(d) = d {
        d.cancel();
        WORLD.with(|w| w.borrow_mut().handles.insert(id, d));
    }
}

fn plan_of(id: usize) -> SelfCancel {
    WORLD.with(|w| {
        w.borrow()
            .plans
            .get(&id)
            .copied()
            .unwrap_or(SelfCancel::Never)
    })
}

fn maybe_cancel_self(id: usize, at: SelfCancel) {
    if plan_of(id) == at {
        cancel_job(id);
    }
}

/// The connection factory: counts the current job's attempts and cancels it
/// at the planned one.
fn counting_factory(shared: &Arc<adbapi::SharedPool>) -> Result<Connection, Failure> {
    let id = WORLD.with(|w| w.borrow().current);
    if let Some(id) = id {
        let n = WORLD.with(|w| {
            let mut w = w.borrow_mut();
            let n = w.connects.entry(id).or_insert(0);
            *n += 1;
            *n
        });
        maybe_cancel_self(id, SelfCancel::AtConnect(n));
    }
    Connection::new(shared)
}

fn injected_panic() -> ! {
    panic!("{INJECTED_PANIC}: the model's interaction panics")
}

fn end(e: End) -> Result<(), Failure> {
    match e {
        End::Ok => Ok(()),
        End::Err => Err(Failure::msg("the interaction's own failure")),
        End::Panic => injected_panic(),
    }
}

fn kind() -> impl Strategy<Value = Kind> {
    let end = prop_oneof![Just(End::Ok), Just(End::Err), Just(End::Panic)];
    prop_oneof![
        1 => Just(Kind::Query),
        1 => Just(Kind::QueryErr),
        1 => Just(Kind::Op),
        4 => end.clone().prop_map(Kind::Insert),
        2 => (0u8..3, 1u8..4).prop_map(|(fails, max)| Kind::Retry { fails, max }),
        2 => any::<bool>().prop_map(|commit_first| Kind::WithConn { commit_first }),
        1 => end.prop_map(Kind::Named),
    ]
}

fn self_cancel() -> impl Strategy<Value = SelfCancel> {
    prop_oneof![
        3 => Just(SelfCancel::Never),
        1 => (1u8..4).prop_map(SelfCancel::AtConnect),
        1 => Just(SelfCancel::BeforeStatement),
        1 => Just(SelfCancel::AfterStatement),
    ]
}

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        6 => (kind(), self_cancel(), prop::bool::weighted(0.2))
            .prop_map(|(k, c, h)| Act::Submit(k, c, h)),
        4 => Just(Act::RunOne),
        3 => Just(Act::Pump),
        3 => any::<usize>().prop_map(Act::Cancel),
        1 => Just(Act::Close),
    ]
}

fn program() -> impl Strategy<Value = (bool, Vec<Act>)> {
    (any::<bool>(), prop::collection::vec(act(), 1..40))
}

struct Model {
    reactor: FakeReactor,
    pool: ConnectionPool,
    jobs: Vec<(Kind, JobState)>,
    queue: std::collections::VecDeque<usize>,
    closed: bool,
    last: PoolStatus,
    closing: Vec<Deferred<()>>,
}

fn key(id: usize) -> i64 {
    id as i64 + 1
}

impl Model {
    fn submit(&mut self, kind: Kind, plan: SelfCancel, hold: bool) {
        let id = self.jobs.len();
        // Made only for a job whose closure takes it and whose pool will
        // not refuse it: dropped here (with the closure, by a refusing
        // pool, before `run_*` returns), it panics on the caller's stack.
        let takes = !matches!(kind, Kind::Query | Kind::QueryErr | Kind::Op) && !self.closed;
        let held = if hold && takes {
            Some(PanicOnDrop)
        } else {
            None
        };
        WORLD.with(|w| w.borrow_mut().plans.insert(id, plan));
        let k = key(id);
        let d: Deferred<()> = match kind {
            Kind::Query => self.pool.run_query("SELECT 1", ()).add_callback(drop),
            Kind::QueryErr => self
                .pool
                .run_query("SELECT * FROM missing", ())
                .add_callback(drop),
            Kind::Op => self
                .pool
                .run_operation(&format!("INSERT INTO t VALUES ({k})"), ()),
            Kind::Insert(e) => self.pool.run_interaction(move |txn| {
                let _h = &held;
                maybe_cancel_self(id, SelfCancel::BeforeStatement);
                txn.execute("INSERT INTO t VALUES (?)", (k,))?;
                maybe_cancel_self(id, SelfCancel::AfterStatement);
                end(e)
            }),
            Kind::Named(e) => self.pool.named("model").run_interaction(move |txn| {
                let _h = &held;
                maybe_cancel_self(id, SelfCancel::BeforeStatement);
                txn.execute("INSERT INTO t VALUES (?)", (k,))?;
                maybe_cancel_self(id, SelfCancel::AfterStatement);
                end(e)
            }),
            Kind::Retry { fails, max } => {
                let mut attempt = 0u8;
                let policy = RetryPolicy::attempts(u32::from(max))
                    .with_backoff(std::time::Duration::ZERO, std::time::Duration::ZERO);
                self.pool.run_interaction_with_retry(policy, move |txn| {
                    let _h = &held;
                    attempt += 1;
                    if attempt == 1 {
                        maybe_cancel_self(id, SelfCancel::BeforeStatement);
                    }
                    txn.execute("INSERT INTO t VALUES (?)", (k,))?;
                    if attempt <= fails {
                        return Err(Failure::new(
                            DbError::new(ErrorKind::OperationalError, "conflict")
                                .with_code("40001"),
                        ));
                    }
                    maybe_cancel_self(id, SelfCancel::AfterStatement);
                    Ok(())
                })
            }
            Kind::WithConn { commit_first } => self.pool.run_with_connection(move |conn| {
                let _h = &held;
                maybe_cancel_self(id, SelfCancel::BeforeStatement);
                conn.cursor()?.execute("INSERT INTO t VALUES (?)", (k,))?;
                if commit_first {
                    conn.commit()?;
                }
                maybe_cancel_self(id, SelfCancel::AfterStatement);
                conn.cursor()?.execute("INSERT INTO t VALUES (?)", (-k,))?;
                Ok(())
            }),
        };
        let d = d.add_both(move |r| {
            let c = cat_of(&r);
            let text = match &r {
                Ok(()) => "ok".to_owned(),
                Err(f) => f.to_string(),
            };
            WORLD.with(|w| w.borrow_mut().fired.entry(id).or_default().push((c, text)));
            Ok(())
        });
        WORLD.with(|w| w.borrow_mut().handles.insert(id, d));
        let state = if self.closed {
            JobState::Refused
        } else {
            self.queue.push_back(id);
            JobState::Queued
        };
        self.jobs.push((kind, state));
    }

    fn run_one(&mut self) {
        let Some(id) = self.queue.pop_front() else {
            return;
        };
        if self.jobs[id].1 == JobState::Queued {
            self.jobs[id].1 = JobState::Started;
        }
        WORLD.with(|w| w.borrow_mut().current = Some(id));
        assert!(self.pool.threadpool().run_one(), "job #{id} was queued");
        WORLD.with(|w| w.borrow_mut().current = None);
    }

    fn cancel(&mut self, n: usize) {
        if self.jobs.is_empty() {
            return;
        }
        let id = n % self.jobs.len();
        if self.jobs[id].1 == JobState::Queued {
            self.jobs[id].1 = JobState::Withdrawn;
        }
        cancel_job(id);
    }

    fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.closing.push(self.pool.close());
        // A pool that runs jobs by hand has no worker to run its backlog.
        for id in self.queue.drain(..) {
            if self.jobs[id].1 == JobState::Queued {
                self.jobs[id].1 = JobState::Dropped;
            }
        }
    }

    fn count(&self, s: JobState) -> u64 {
        self.jobs.iter().filter(|j| j.1 == s).count() as u64
    }

    fn fired_by_cat(&self) -> HashMap<Cat, u64> {
        let mut m = HashMap::new();
        WORLD.with(|w| {
            for v in w.borrow().fired.values() {
                for (c, _) in v {
                    *m.entry(*c).or_insert(0) += 1;
                }
            }
        });
        m
    }

    /// After every step.
    fn check_now(&mut self, what: &str) -> Result<(), String> {
        let st = self.pool.status();
        let prev = &self.last;
        for (name, now, before) in [
            ("completed", st.jobs_completed, prev.jobs_completed),
            ("failed", st.jobs_failed, prev.jobs_failed),
            ("cancelled", st.jobs_cancelled, prev.jobs_cancelled),
            ("timed_out", st.jobs_timed_out, prev.jobs_timed_out),
            ("wait.count", st.wait.count, prev.wait.count),
            ("run.count", st.run.count, prev.run.count),
        ] {
            if now < before {
                return Err(format!("after {what}: {name} went back: {before} -> {now}"));
            }
        }
        let fired = self.fired_by_cat();
        for (c, counted) in [
            (Cat::Completed, st.jobs_completed),
            (Cat::Failed, st.jobs_failed),
            (Cat::Cancelled, st.jobs_cancelled),
        ] {
            let f = fired.get(&c).copied().unwrap_or(0);
            if counted < f {
                return Err(format!(
                    "after {what}: {f} Deferreds show {c:?}, only {counted} counted: {st:?}"
                ));
            }
        }
        let sum = st.jobs_completed + st.jobs_failed + st.jobs_cancelled + st.jobs_timed_out;
        if sum > self.jobs.len() as u64 {
            return Err(format!(
                "after {what}: {sum} outcomes for {} jobs: {st:?}",
                self.jobs.len()
            ));
        }
        if st.queued as u64 != self.count(JobState::Queued) {
            return Err(format!(
                "after {what}: queued {} but {} jobs wait: {st:?}",
                st.queued,
                self.count(JobState::Queued)
            ));
        }
        let started = self.count(JobState::Started);
        if (st.wait.count, st.run.count) != (started, started) {
            return Err(format!(
                "after {what}: {started} jobs ran, timed {:?}",
                (st.wait.count, st.run.count)
            ));
        }
        self.last = st;
        Ok(())
    }
}

/// Creates the table the jobs write their keys into.
fn make_table(db: &str) {
    let r = FakeReactor::new(true);
    let p = ConnectionPool::new(
        "sqlite3",
        args![db.to_owned()],
        kwargs! { "cp_max" => 1, "cp_reactor" => Arg::reactor(r.clone()) },
    )
    .expect("a setup pool");
    fake_wait(
        &r,
        p.run_operation("CREATE TABLE t (x INTEGER PRIMARY KEY)", ()),
    )
    .expect("the table");
    fake_wait(&r, p.close()).expect("closed");
}

/// Empties the [`World`] as a case ends, however it ends: its Deferreds
/// must not outlive the case (nor be dropped as the thread exits).
struct ClearWorld;

impl Drop for ClearWorld {
    fn drop(&mut self) {
        let w = WORLD.with(|w| std::mem::take(&mut *w.borrow_mut()));
        drop(w);
    }
}

fn run_program(observed: bool, acts: &[Act]) -> Result<(), String> {
    WORLD.with(|w| *w.borrow_mut() = World::default());
    let _clear = ClearWorld;
    let dir = TempDir::new("counted-model");
    let reactor = FakeReactor::with_pool_mode(true, PoolMode::Manual);
    let db = dir.file("m.db");
    make_table(&db);
    let mut kw = kwargs! { "cp_max" => 1, "cp_reactor" => Arg::reactor(reactor.clone()) };
    if observed {
        // Every job then takes the observed path, for contrast.
        kw.extend(kwargs! { "cp_slow_job_threshold" => 3600.0 });
    }
    let pool = ConnectionPool::new("sqlite3", args![db.clone()], kw).expect("a pool");
    pool.set_connection_factory(Arc::new(counting_factory));
    let last = pool.status();
    let mut m = Model {
        reactor,
        pool,
        jobs: Vec::new(),
        queue: Default::default(),
        closed: false,
        last,
        closing: Vec::new(),
    };
    for (i, a) in acts.iter().enumerate() {
        match a {
            Act::Submit(k, c, h) => m.submit(*k, *c, *h),
            Act::RunOne => m.run_one(),
            Act::Pump => {
                m.reactor.pump();
            }
            Act::Cancel(n) => m.cancel(*n),
            Act::Close => m.close(),
        }
        m.check_now(&format!("step {i} ({a:?})"))?;
    }
    // Settle: run what is left, then close, and let every Deferred fire.
    while !m.queue.is_empty() {
        m.run_one();
        m.check_now("settling")?;
    }
    m.close();
    for _ in 0..5 {
        m.reactor.pump();
    }
    for d in std::mem::take(&mut m.closing) {
        fake_wait(&m.reactor, d).map_err(|f| format!("close failed: {f}"))?;
    }
    m.check_now("the end")?;
    let st = m.pool.status();
    let (fired, counts) = WORLD.with(|w| {
        let w = w.borrow();
        let counts: Vec<usize> = (0..m.jobs.len())
            .map(|id| w.fired.get(&id).map_or(0, Vec::len))
            .collect();
        (w.fired.clone(), counts)
    });
    for (id, n) in counts.iter().enumerate() {
        if *n != 1 {
            return Err(format!("job #{id} fired {n} times"));
        }
    }
    let by_cat = m.fired_by_cat();
    let got = (st.jobs_completed, st.jobs_failed, st.jobs_cancelled);
    let want = (
        by_cat.get(&Cat::Completed).copied().unwrap_or(0),
        by_cat.get(&Cat::Failed).copied().unwrap_or(0),
        by_cat.get(&Cat::Cancelled).copied().unwrap_or(0),
    );
    if got != want || st.jobs_timed_out != 0 {
        return Err(format!(
            "counted (completed, failed, cancelled) {got:?}, Deferreds show {want:?}: {st:?}\n{fired:#?}"
        ));
    }
    if st.queued != 0 {
        return Err(format!("queued {} at the end", st.queued));
    }
    // What committed: a cancel that took means nothing did.
    let (r2, check) = {
        let r = FakeReactor::new(true);
        let p = ConnectionPool::new(
            "sqlite3",
            args![db.clone()],
            kwargs! { "cp_max" => 1, "cp_reactor" => Arg::reactor(r.clone()) },
        )
        .expect("a check pool");
        (r, p)
    };
    let rows = fake_wait(&r2, check.run_query("SELECT x FROM t", ())).expect("rows");
    let present: HashSet<i64> = rows
        .iter()
        .map(|r| r.get::<i64>(0).expect("an integer"))
        .collect();
    fake_wait(&r2, check.close()).expect("closed");
    for (id, v) in &fired {
        let (c, text) = &v[0];
        let k = key(*id);
        let kind = m.jobs[*id].0;
        let wrote = present.contains(&k) || present.contains(&-k);
        if *c == Cat::Cancelled && wrote {
            return Err(format!(
                "job #{id} ({kind:?}) shows CancelledError but committed"
            ));
        }
        let writes = !matches!(kind, Kind::Query | Kind::QueryErr);
        if *c == Cat::Completed && writes && !present.contains(&k) {
            return Err(format!(
                "job #{id} ({kind:?}) succeeded but its key is missing ({text})"
            ));
        }
    }
    Ok(())
}

fn cases(default: u32) -> u32 {
    std::env::var("ADBAPI_COUNTED_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Random programs against the counted path (and, in half of them, the
/// observed path, for contrast): see the module notes.
#[test]
fn counted_path_model() {
    quiet_injected_panics();
    let mut runner = TestRunner::new(Config {
        cases: cases(300),
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&program(), |(observed, acts)| {
        run_program(observed, &acts).map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        // The quiet panic hook hides any panic whose text names an injected
        // panic, as a job's failure text may.
        panic!("{}", e.to_string().replace(INJECTED_PANIC, "(injected)"));
    }
}

// ---------------------------------------------------------------------------
// The same promises with real worker threads: cancels from the loop thread
// race the workers at whatever moment a timer gives them.
// ---------------------------------------------------------------------------

/// A small xorshift, so a round's program is its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

type Fired = Rc<RefCell<HashMap<usize, Vec<(Cat, String)>>>>;

/// Where a threaded round keeps its keys: a SQLite file, or a table of its
/// own on the PostgreSQL server (where a cancel meets statements in flight,
/// and `run_query`/`run_operation` are one round trip, their own commit).
enum Db {
    Sqlite { _dir: TempDir, file: String },
    Pg { table: String },
}

impl Db {
    fn sqlite() -> Db {
        let dir = TempDir::new("counted-threads");
        let file = dir.file("t.db");
        make_table(&file);
        Db::Sqlite { _dir: dir, file }
    }

    fn pg() -> Db {
        let table = integration_tests::harness::unique_name("counted").replace('-', "_");
        let c = integration_tests::pg::direct();
        integration_tests::pg::exec(
            &c,
            &format!("CREATE TABLE {table} (x BIGINT PRIMARY KEY)"),
            (),
        );
        c.close().expect("closed");
        Db::Pg { table }
    }

    fn table(&self) -> &str {
        match self {
            Db::Sqlite { .. } => "t",
            Db::Pg { table } => table,
        }
    }

    fn pool(&self, extra: Vec<(String, Arg)>) -> ConnectionPool {
        match self {
            Db::Sqlite { file, .. } => {
                ConnectionPool::new("sqlite3", args![file.clone()], extra).expect("a pool")
            }
            Db::Pg { .. } => {
                ConnectionPool::new("psycopg2", vec![integration_tests::pg::url().into()], extra)
                    .expect("a pool")
            }
        }
    }

    /// A statement that takes about `us` microseconds on the server, for a
    /// cancel to meet in flight (SQLite's jobs sleep on their worker).
    fn pause_sql(&self, us: u64) -> Option<String> {
        match self {
            Db::Sqlite { .. } => None,
            Db::Pg { .. } => Some(format!("SELECT pg_sleep({})", us as f64 / 1e6)),
        }
    }

    fn committed(&self) -> Result<HashSet<i64>, String> {
        let sql = format!("SELECT x FROM {}", self.table());
        let rows = match self {
            Db::Sqlite { file, .. } => {
                let r = FakeReactor::new(true);
                let p = ConnectionPool::new(
                    "sqlite3",
                    args![file.clone()],
                    kwargs! { "cp_max" => 1, "cp_reactor" => Arg::reactor(r.clone()) },
                )
                .expect("a check pool");
                let rows = fake_wait(&r, p.run_query(&sql, ())).map_err(|f| f.to_string())?;
                fake_wait(&r, p.close()).expect("closed");
                rows
            }
            Db::Pg { .. } => {
                let c = integration_tests::pg::direct();
                let rows = integration_tests::pg::exec(&c, &sql, ());
                c.close().expect("closed");
                rows
            }
        };
        Ok(rows
            .iter()
            .map(|r| r.get::<i64>(0).expect("an integer"))
            .collect())
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Db::Pg { table } = self {
            let c = integration_tests::pg::direct();
            let _ = c
                .cursor()
                .and_then(|mut cur| cur.execute(&format!("DROP TABLE {table}"), ()).map(drop));
            let _ = c.commit();
            let _ = c.close();
        }
    }
}

fn threaded_round(seed: u64, db: Db) -> Result<(), String> {
    let mut rng = Rng(seed | 1);
    let db = Rc::new(db);
    let reactor = Reactor::new().expect("a reactor");
    let observed = rng.below(4) == 0;
    let mut kw = kwargs! {
        "cp_min" => 1,
        "cp_max" => 1 + rng.below(3) as i64,
        "cp_reactor" => Arg::reactor(reactor.clone()),
    };
    if observed {
        kw.extend(kwargs! { "cp_slow_job_threshold" => 3600.0 });
    }
    let pool = db.pool(kw);
    let jobs = 20 + rng.below(20) as usize;
    let mut plan = Vec::new();
    for _ in 0..jobs {
        let kind = match rng.below(11) {
            0 => Kind::Query,
            1 => Kind::QueryErr,
            2 => Kind::Op,
            3..=5 => Kind::Insert(match rng.below(4) {
                0 => End::Err,
                1 => End::Panic,
                _ => End::Ok,
            }),
            6 | 7 => Kind::Retry {
                fails: rng.below(3) as u8,
                max: 1 + rng.below(3) as u8,
            },
            8 | 9 => Kind::WithConn {
                commit_first: rng.below(2) == 0,
            },
            _ => Kind::Named(End::Ok),
        };
        // Submitted at once or later; cancelled (or not) a little later.
        let submit_at = rng.below(3) * rng.below(2000);
        let cancel_after = (rng.below(2) == 0).then(|| rng.below(3000));
        let sleep_us = rng.below(1500);
        plan.push((kind, submit_at, cancel_after, sleep_us));
    }
    let close_at = (rng.below(3) == 0).then(|| rng.below(4000));
    let shrink_at = (rng.below(3) == 0).then(|| rng.below(3000));

    let fired: Fired = Rc::default();
    let submitted = Rc::new(Cell::new(0u64));
    let kinds: Rc<RefCell<HashMap<usize, Kind>>> = Rc::default();
    let (p, r, f, s, k, dbr) = (
        pool.clone(),
        reactor.clone(),
        Rc::clone(&fired),
        Rc::clone(&submitted),
        Rc::clone(&kinds),
        Rc::clone(&db),
    );
    let outcome = run_chain(&reactor, TIMEOUT, move || {
        let (all, all_r) = Deferred::<()>::new();
        let all_r = Rc::new(all_r);
        let remaining = Rc::new(Cell::new(plan.len()));
        for (id, (kind, submit_at, cancel_after, sleep_us)) in plan.into_iter().enumerate() {
            let (p2, r2, f2, s2, k2, db2, all_r, remaining) = (
                p.clone(),
                r.clone(),
                Rc::clone(&f),
                Rc::clone(&s),
                Rc::clone(&k),
                Rc::clone(&dbr),
                Rc::clone(&all_r),
                Rc::clone(&remaining),
            );
            let submit = move || {
                s2.set(s2.get() + 1);
                k2.borrow_mut().insert(id, kind);
                let d = submit_threaded(&p2, &db2, id, kind, sleep_us);
                let d = d.add_both(move |res| {
                    let c = cat_of(&res);
                    let text = match &res {
                        Ok(()) => "ok".to_owned(),
                        Err(f) => f.to_string(),
                    };
                    f2.borrow_mut().entry(id).or_default().push((c, text));
                    remaining.set(remaining.get() - 1);
                    if remaining.get() == 0 {
                        let _ = all_r.callback(());
                    }
                    Ok(())
                });
                let d = Rc::new(d);
                if let Some(after) = cancel_after {
                    let d = Rc::clone(&d);
                    r2.call_later(Duration::from_micros(after), move || d.cancel());
                }
            };
            if submit_at == 0 {
                submit();
            } else {
                r.call_later(Duration::from_micros(submit_at), submit);
            }
        }
        if let Some(at) = close_at {
            let p = p.clone();
            r.call_later(Duration::from_micros(at), move || {
                drop(p.close());
            });
        }
        if let Some(at) = shrink_at {
            let p = p.clone();
            r.call_later(Duration::from_micros(at), move || {
                let _ = p.threadpool().adjust_pool_size(Some(0), Some(1));
            });
        }
        let p = p.clone();
        all.add_callback_deferred(move |()| p.close())
    });
    outcome.map_err(|f| format!("seed {seed}: the round failed: {f}"))?;
    let st = pool.status();
    let fired = fired.borrow();
    let mut by_cat: HashMap<Cat, u64> = HashMap::new();
    for (id, v) in fired.iter() {
        if v.len() != 1 {
            return Err(format!("seed {seed}: job #{id} fired {} times", v.len()));
        }
        *by_cat.entry(v[0].0).or_insert(0) += 1;
    }
    let got = (st.jobs_completed, st.jobs_failed, st.jobs_cancelled);
    let want = (
        by_cat.get(&Cat::Completed).copied().unwrap_or(0),
        by_cat.get(&Cat::Failed).copied().unwrap_or(0),
        by_cat.get(&Cat::Cancelled).copied().unwrap_or(0),
    );
    if got != want || st.jobs_timed_out != 0 || st.queued != 0 || st.busy != 0 {
        return Err(format!(
            "seed {seed}: counted {got:?}, Deferreds show {want:?} (submitted {}): {st:?}",
            submitted.get()
        ));
    }
    if got.0 + got.1 + got.2 != submitted.get() {
        return Err(format!("seed {seed}: {got:?} for {} jobs", submitted.get()));
    }
    if st.wait.count != st.run.count {
        return Err(format!("seed {seed}: wait/run counts differ: {st:?}"));
    }
    // What committed.
    let present = db.committed().map_err(|e| format!("seed {seed}: {e}"))?;
    let kinds = kinds.borrow();
    for (id, v) in fired.iter() {
        let (c, text) = &v[0];
        let k = key(*id);
        let kind = kinds[id];
        if *c == Cat::Cancelled && (present.contains(&k) || present.contains(&-k)) {
            return Err(format!(
                "seed {seed}: job #{id} ({kind:?}) shows CancelledError but committed"
            ));
        }
        let writes = !matches!(kind, Kind::Query | Kind::QueryErr);
        if *c == Cat::Completed && writes && !present.contains(&k) {
            return Err(format!(
                "seed {seed}: job #{id} ({kind:?}) succeeded but its key is missing ({text})"
            ));
        }
    }
    Ok(())
}

/// A job for the threaded rounds: as the model's, with a pause in the middle
/// (a statement on the server, or a sleep on its worker) to give a cancel
/// something to hit, and no self-cancel.
fn submit_threaded(
    pool: &ConnectionPool,
    db: &Db,
    id: usize,
    kind: Kind,
    sleep_us: u64,
) -> Deferred<()> {
    let k = key(id);
    let table = db.table().to_owned();
    let insert = move |k: i64| format!("INSERT INTO {table} VALUES ({k})");
    let pause_sql = db.pause_sql(sleep_us);
    let pause = move |txn: &mut adbapi::Transaction<'_>| -> Result<(), Failure> {
        match &pause_sql {
            Some(sql) => {
                txn.execute(sql, ())?;
            }
            None => std::thread::sleep(Duration::from_micros(sleep_us)),
        }
        Ok(())
    };
    match kind {
        Kind::Query => pool.run_query("SELECT 1", ()).add_callback(drop),
        Kind::QueryErr => pool
            .run_query("SELECT * FROM missing", ())
            .add_callback(drop),
        Kind::Op => pool.run_operation(&insert(k), ()),
        Kind::Insert(e) => pool.run_interaction(move |txn| {
            txn.execute(&insert(k), ())?;
            pause(txn)?;
            txn.execute("SELECT 1", ())?;
            end(e)
        }),
        Kind::Named(e) => pool.named("threaded").run_interaction(move |txn| {
            txn.execute(&insert(k), ())?;
            pause(txn)?;
            end(e)
        }),
        Kind::Retry { fails, max } => {
            let mut attempt = 0u8;
            let policy = RetryPolicy::attempts(u32::from(max))
                .with_backoff(Duration::from_micros(200), Duration::from_micros(200));
            pool.run_interaction_with_retry(policy, move |txn| {
                attempt += 1;
                txn.execute(&insert(k), ())?;
                pause(txn)?;
                if attempt <= fails {
                    return Err(Failure::new(
                        DbError::new(ErrorKind::OperationalError, "conflict").with_code("40001"),
                    ));
                }
                Ok(())
            })
        }
        Kind::WithConn { commit_first } => pool.run_with_connection(move |conn| {
            conn.cursor()?.execute(&insert(k), ())?;
            if commit_first {
                conn.commit()?;
            }
            std::thread::sleep(Duration::from_micros(sleep_us));
            conn.cursor()?.execute(&insert(-k), ())?;
            Ok(())
        }),
    }
}

/// Rounds of jobs on real worker threads, cancelled at random moments by
/// loop-thread timers, some rounds closing the pool or shrinking its thread
/// pool meanwhile. Counts only: no assertion depends on the timing, which
/// only decides which moments are hit.
#[test]
fn counted_path_under_real_threads() {
    quiet_injected_panics();
    for seed in seeds(12) {
        if let Err(e) = threaded_round(seed, Db::sqlite()) {
            panic!("{}", e.replace(INJECTED_PANIC, "(injected)"));
        }
    }
}

integration_tests::pg_test! {
    /// The threaded rounds on PostgreSQL: cancels meet statements in flight
    /// (a cancel request to the server), and one-round-trip statements whose
    /// cancel is declined and settled by what the server says.
    fn counted_path_under_real_threads_on_postgres() {
        let _server = integration_tests::pg::sharing_server();
        quiet_injected_panics();
        for seed in seeds(6) {
            if let Err(e) = threaded_round(seed, Db::pg()) {
                panic!("{}", e.replace(INJECTED_PANIC, "(injected)"));
            }
        }
    }
}

/// The seeds of the threaded rounds: `ADBAPI_COUNTED_CASES` of them from
/// `ADBAPI_COUNTED_SEED`.
fn seeds(default: u32) -> impl Iterator<Item = u64> {
    let base = std::env::var("ADBAPI_COUNTED_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_1300_u64);
    (0..u64::from(cases(default)))
        .map(move |i| base.wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
}
