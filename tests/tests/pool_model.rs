//! Model-based test of `adbapi::ConnectionPool`: random programs of steps on
//! a real reactor, over per-job fault plans, checked against what the README
//! promises.
//!
//! Kept whole although over 600 lines: it is one model (the program
//! generators, the driver that runs a program, the invariants checked after
//! it, and the minimal programs it shrank to), and each part is read against
//! the others.
//!
//! ```sh
//! # CI (a bounded number of cases):
//! cargo test -p integration-tests --test pool_model
//! # a long run:
//! ADBAPI_MODEL_CASES=20000 cargo test -p integration-tests --test pool_model --release -- --nocapture
//! # reproduce one case:
//! PROPTEST_RNG_SEED=<seed> ADBAPI_MODEL_CASES=1 ... (proptest prints the minimal program)
//! ```
//!
//! A program ([`Program`]) makes a pool (`cp_min`/`cp_max` 1-3,
//! `cp_reconnect` on or off; issue 13's options each in a third of the
//! programs: `cp_queue_timeout` 1-12 ms of the reactor's clock, and
//! `cp_max_lifetime`, `cp_idle_timeout`, `cp_check_idle` in seconds of a
//! `life_clock` only the program moves) over a [`PlanModule`] (per-job fault plans over
//! the step-counted [`FaultModule`], wrapping a real SQLite file, or a
//! MariaDB/MySQL server through `pymysql`: see [`Backend`]), arms a few
//! step-counted faults (connect, cursor, close), and runs its [`Step`]s from
//! the reactor: `run_query`, `run_operation`, `run_interaction` (ok, error,
//! panic, slow) and `run_interaction_with_retry` (its first K attempts fail
//! with a serialization failure, SQLSTATE 40001, under a policy of at most
//! 1-3 attempts), each writing a unique key and optionally with
//! `add_timeout`; cancelling an earlier Deferred; `close`, `final_close`,
//! dropping the pool handle, `reactor.stop()`, `adjust_pool_size`, pauses,
//! and moving the lifetime clock on. A step runs at once, from the callback
//! of an earlier job, or from a `call_later` timer. The program then stops
//! the reactor (after a final `run_query` if the program left the pool
//! open; half the programs also wait for every job to fire) and `run()`
//! must return; a watchdog timer and a watchdog thread turn a hang into a
//! failed case.
//!
//! Checked after `run()` returns:
//! - every Deferred the program got (jobs, `close`, `final_close`) fired
//!   exactly once, before `run()` returned, and none fires on later turns;
//! - a callback means the job's key is committed, with the value the job
//!   computed; a failure (a `CancelledError` and `TimeoutError` included)
//!   means it is not, except where the plan makes it ambiguous
//!   ([`JobPlan::ambiguous`]: the database committed and then the commit
//!   failed; or a failed rollback left the transaction open on a connection
//!   the pool keeps);
//! - a planned fault never ends in a callback; a clean job on an open pool
//!   succeeds; a job issued on a closed pool fails with `PoolClosed`;
//! - no connection and no worker thread is left once the pool is closed
//!   (and, for a dropped pool, soon after); no connection was closed twice;
//! - the `after`/`shutdown` triggers run only once the pool has closed;
//! - the pool still works at the end unless the program closed it;
//! - a job that failed with `PoolTimeout` never ran (no statement of it
//!   reached a connection), and only a pool with `cp_queue_timeout` says so;
//! - a retried job succeeds if and only if fewer attempts fail than the
//!   policy allows (when nothing else disturbs it), after exactly K + 1
//!   attempts, with its one write committed; it gives up after exactly the
//!   policy's maximum, with nothing committed (every failed attempt was
//!   rolled back, or the next one's insert would hit the primary key); a
//!   closing pool or a cancel may stop it between attempts, and only they;
//! - a job issued once a connection had outlived `cp_max_lifetime` never
//!   runs on that connection (its worker replaces it first; a replacement
//!   during a job would fail a clean job, which the invariants above catch);
//! - `status()`, after every step: totals never go back, no more
//!   connections closed than opened, no more job outcomes than jobs
//!   submitted, nothing queued once every job has fired; once every job has
//!   fired and the final query too (a quiescent pool): busy + idle ==
//!   workers, queued == 0, opened − closed == open connections, and
//!   completed + failed + cancelled + timed out == jobs submitted; at the
//!   end (closed): no worker, nothing queued or open, opened == closed, the
//!   same sum, `jobs_timed_out` == the jobs that failed with
//!   `PoolTimeout`, and each job counted in the category its Deferred
//!   shows (a callback completed; `CancelledError` or `add_timeout`'s
//!   `TimeoutError` cancelled; anything else failed).
//!
//! Not driven: `cp_statement_timeout`. SQLite's is a progress handler that
//! reads the real clock, so whether an ordinary statement of a loaded
//! machine times out is timing, not the program; and the fault-injecting
//! connections underneath (`FaultModule`'s) do not pass the setting down.
//! `production_timeouts.rs` tests it per driver.
//!
//! On MariaDB/MySQL (`pool_model_mysql`, needs `ADBAPI_MYSQL_URL`; 48 cases
//! unless `ADBAPI_MODEL_MYSQL_CASES` says otherwise) each case writes to an
//! InnoDB table of its own, dropped when the case ends. The invariants are
//! the same, with no extra ambiguity: a cancel's `KILL QUERY` is sent while
//! the job's cancel slot is locked and the job cannot begin to finish, and
//! the driver closes a session a kill was sent on at the job's rollback, so
//! a kill never reaches the next job on that worker
//! (`mysql_a_cancel_never_reaches_the_next_job` aims at that).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use adbapi::dbapi::{DbApiModule, DbError, ErrorKind};
use adbapi::drivers::mysql::MysqlModule;
use adbapi::drivers::postgres::PostgresModule;
use adbapi::{Clock, ConnectionPool, PoolClosed, PoolStatus, PoolTimeout, RetryPolicy};
use deferred::{CancelledError, Deferred, Failure, TimeoutError};
use integration_tests::faults::{quiet_injected_panics, Fault, Step as FaultStep, When};
use integration_tests::harness::{unique_name, TempDir};
use integration_tests::model::{
    committed_keys_in, tag, CommitFault, JobPlan, PlanModule, StepFault,
};
use integration_tests::mysql::MysqlBackend;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use reactor::prelude::*;
use reactor::{Phase, Reactor};

/// Stops the reactor of a case that has not finished by then.
const WATCHDOG: Duration = Duration::from_secs(5);
/// Fails a case whose `run()` has not returned by then (the watchdog's stop
/// could not end it): the case's thread is left behind.
const HANG: Duration = Duration::from_secs(15);
/// How many times a shrinking candidate runs before it counts as passing.
const SHRINK_TRIES: usize = 6;
/// How long a dropped pool's workers get to close their connections.
const DROPPED_POOL_GRACE: Duration = Duration::from_secs(10);
/// How long a quiescent pool's workers get to settle before its `status()`
/// is checked (only a defect reaches the limit).
const QUIESCENT_GRACE: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------- programs

/// What a `run_interaction` does after inserting its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// Reads its key back and returns it.
    Ok,
    /// Returns an error (the pool rolls back).
    Error,
    /// Panics (the pool rolls back and replaces the connection).
    Panic,
    /// Sleeps this many milliseconds on the worker, then reads its key back.
    Slow(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// `run_query("INSERT ... RETURNING k")`.
    Query,
    /// `run_operation("INSERT ...")`.
    Operation,
    /// `run_interaction`.
    Interaction(Body),
    /// `run_interaction_with_retry` with at most `max` attempts, whose body
    /// inserts its key, then fails with a serialization failure (SQLSTATE
    /// 40001, which `retry_reason` retries) on its first `fail_first`
    /// attempts, and reads its key back on the next.
    Retry { fail_first: u8, max: u8 },
}

/// Where a step runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum At {
    /// In the program's sequence.
    Now,
    /// From the callback of job `n % jobs issued so far` (at once if it has
    /// fired already, or if there is none).
    AfterJob(usize),
    /// From a `call_later` timer, this many milliseconds later.
    Timer(u8),
}

impl fmt::Debug for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::Now => write!(f, "now"),
            At::AfterJob(n) => write!(f, "after job {n}"),
            At::Timer(ms) => write!(f, "timer {ms}ms"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Act {
    /// Issues a job (its plan applies to its statements and its commit).
    Run {
        op: Op,
        plan: JobPlan,
        timeout_ms: Option<u8>,
    },
    /// Cancels Deferred `n % Deferreds so far` (jobs and closes).
    Cancel(usize),
    /// `pool.close()`.
    Close,
    /// `pool.final_close()`.
    FinalClose,
    /// Drops the program's pool handle.
    DropPool,
    /// `reactor.stop()`.
    Stop,
    /// `pool.threadpool().adjust_pool_size(min, max)`.
    Adjust { min: usize, max: usize },
    /// The program's sequence waits this many milliseconds (only `Now`).
    Pause(u8),
    /// Moves the pool's lifetime clock (`life_clock`) this many seconds on.
    Age(u8),
}

#[derive(Clone, PartialEq, Eq)]
struct Step {
    at: At,
    act: Act,
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {:?}", self.at, self.act)
    }
}

/// A step-counted fault of the [`FaultModule`] underneath.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct GlobalFault {
    step: FaultStep,
    nth: u64,
    fault: Fault,
}

/// The pool's `cp_max_lifetime`, `cp_idle_timeout` and `cp_check_idle`,
/// in seconds of the lifetime clock, which only [`Act::Age`] moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Life {
    max_lifetime: Option<u8>,
    idle_timeout: Option<u8>,
    check_idle: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Program {
    min: usize,
    max: usize,
    reconnect: bool,
    /// `cp_queue_timeout`, in milliseconds of the reactor's clock.
    queue_timeout_ms: Option<u8>,
    life: Life,
    /// The program ends once every job has fired (else once its final
    /// query has, with other jobs possibly in flight): a retried job then
    /// runs its retries instead of meeting a closing pool.
    settle: bool,
    global: Vec<GlobalFault>,
    steps: Vec<Step>,
}

impl Program {
    /// True if some fault kills a connection: then, without `cp_reconnect`,
    /// later jobs on that worker fail (Twisted's behaviour), so a clean job
    /// is not expected to succeed.
    fn severs(&self) -> bool {
        self.global.iter().any(|g| g.fault == Fault::Sever)
            || self.steps.iter().any(|s| match &s.act {
                Act::Run { plan, .. } => {
                    plan.exec == StepFault::Sever
                        || plan.rollback == StepFault::Sever
                        || matches!(plan.commit, CommitFault::Sever | CommitFault::LostAfter)
                }
                _ => false,
            })
    }
}

fn step_fault() -> impl Strategy<Value = StepFault> {
    prop_oneof![
        12 => Just(StepFault::None),
        1 => Just(StepFault::Fail),
        1 => Just(StepFault::Panic),
        1 => Just(StepFault::Sever),
    ]
}

fn commit_fault() -> impl Strategy<Value = CommitFault> {
    prop_oneof![
        10 => Just(CommitFault::None),
        1 => Just(CommitFault::Fail),
        1 => Just(CommitFault::Panic),
        1 => Just(CommitFault::Sever),
        1 => Just(CommitFault::LostAfter),
        2 => (1u8..=15).prop_map(CommitFault::Slow),
    ]
}

fn rollback_fault() -> impl Strategy<Value = StepFault> {
    // A rollback that fails without losing the connection used to leave the
    // job's transaction open on a connection the pool kept (found here as N2).
    step_fault()
}

fn plan() -> impl Strategy<Value = JobPlan> {
    (step_fault(), commit_fault(), rollback_fault()).prop_map(|(exec, commit, rollback)| JobPlan {
        exec,
        commit,
        rollback,
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => Just(Op::Query),
        2 => Just(Op::Operation),
        2 => Just(Op::Interaction(Body::Ok)),
        1 => Just(Op::Interaction(Body::Error)),
        1 => Just(Op::Interaction(Body::Panic)),
        2 => (1u8..=15).prop_map(|ms| Op::Interaction(Body::Slow(ms))),
        2 => (0u8..=4, 1u8..=3).prop_map(|(fail_first, max)| Op::Retry { fail_first, max }),
    ]
}

fn act() -> impl Strategy<Value = Act> {
    let run = (
        op(),
        plan(),
        prop_oneof![4 => Just(None), 1 => (1u8..=20).prop_map(Some)],
    )
        .prop_map(|(op, plan, timeout_ms)| Act::Run {
            op,
            plan,
            timeout_ms,
        });
    prop_oneof![
        10 => run,
        4 => (0usize..8).prop_map(Act::Cancel),
        1 => Just(Act::Close),
        1 => Just(Act::FinalClose),
        1 => Just(Act::DropPool),
        1 => Just(Act::Stop),
        1 => (0usize..=3, 1usize..=3)
            .prop_map(|(min, max)| Act::Adjust { min: min.min(max), max }),
        2 => (0u8..=20).prop_map(Act::Pause),
        1 => (1u8..=30).prop_map(Act::Age),
    ]
}

fn at() -> impl Strategy<Value = At> {
    prop_oneof![
        6 => Just(At::Now),
        2 => (0usize..8).prop_map(At::AfterJob),
        2 => (0u8..=20).prop_map(At::Timer),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    (at(), act()).prop_map(|(at, act)| {
        let at = if matches!(act, Act::Pause(_)) {
            At::Now
        } else {
            at
        };
        Step { at, act }
    })
}

fn global_fault() -> impl Strategy<Value = GlobalFault> {
    (
        prop_oneof![
            Just(FaultStep::Connect),
            Just(FaultStep::Cursor),
            Just(FaultStep::Close)
        ],
        1u64..=6,
        prop_oneof![
            Just(Fault::Fail(ErrorKind::OperationalError)),
            Just(Fault::Panic),
            Just(Fault::Sever)
        ],
    )
        .prop_map(|(step, nth, fault)| GlobalFault { step, nth, fault })
}

/// An option that is off in two programs of three.
fn sometimes(range: std::ops::RangeInclusive<u8>) -> impl Strategy<Value = Option<u8>> {
    prop_oneof![2 => Just(None), 1 => range.prop_map(Some)]
}

fn life() -> impl Strategy<Value = Life> {
    // cp_check_idle 0 probes before every job.
    (sometimes(1..=40), sometimes(1..=40), sometimes(0..=20)).prop_map(
        |(max_lifetime, idle_timeout, check_idle)| Life {
            max_lifetime,
            idle_timeout,
            check_idle,
        },
    )
}

fn program() -> impl Strategy<Value = Program> {
    (
        (1usize..=3, 1usize..=3, any::<bool>(), any::<bool>()),
        sometimes(1..=12),
        life(),
        proptest::collection::vec(global_fault(), 0..=2),
        proptest::collection::vec(step(), 1..=12),
    )
        .prop_map(
            |((min, max, reconnect, settle), queue_timeout_ms, life, global, steps)| Program {
                min,
                max,
                reconnect,
                queue_timeout_ms,
                life,
                settle,
                global,
                steps,
            },
        )
}

// ---------------------------------------------------------------- backends

/// The database the programs run against.
#[derive(Debug, Clone)]
enum Backend {
    /// A fresh SQLite file per case.
    Sqlite,
    /// The MariaDB/MySQL database at `url` (through `pymysql`), with a fresh
    /// InnoDB table per case.
    Mysql { url: String },
    /// The PostgreSQL database at `url` (through `psycopg2`, whose
    /// `run_query`/`run_operation` run as one-round-trip transactions of
    /// their own), with a fresh table per case.
    Postgres { url: String },
}

/// One case's table: made before the pool, read back after `run()`,
/// dropped at the end.
struct CaseDb {
    backend: Backend,
    /// The single connect argument (the SQLite file, the server's URL).
    target: String,
    table: String,
    /// The SQLite file's directory, removed on drop.
    _dir: Option<TempDir>,
}

impl CaseDb {
    fn create(backend: &Backend) -> Result<CaseDb, String> {
        let (target, table, dir, ddl) = match backend {
            Backend::Sqlite => {
                let dir = TempDir::new("pool-model");
                let db = dir.file("model.db");
                (
                    db,
                    "t".to_owned(),
                    Some(dir),
                    "CREATE TABLE t (k INTEGER PRIMARY KEY)".to_owned(),
                )
            }
            Backend::Mysql { url } => {
                let table = unique_name("pool_model").replace('-', "_");
                let ddl = format!("CREATE TABLE {table} (k BIGINT PRIMARY KEY) ENGINE=InnoDB");
                (url.clone(), table, None, ddl)
            }
            Backend::Postgres { url } => {
                let table = unique_name("pool_model").replace('-', "_").to_lowercase();
                let ddl = format!("CREATE TABLE {table} (k int8 PRIMARY KEY)");
                (url.clone(), table, None, ddl)
            }
        };
        let case = CaseDb {
            backend: backend.clone(),
            target,
            table,
            _dir: dir,
        };
        let c = adbapi::dbapi::connect(case.module(), &[case.target.as_str().into()], &[])
            .map_err(|e| e.to_string())?;
        c.execute(&ddl, ()).map_err(|e| e.to_string())?;
        c.commit().map_err(|e| e.to_string())?;
        c.close().map_err(|e| e.to_string())?;
        Ok(case)
    }

    /// The real driver's registered name.
    fn module(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "sqlite3",
            Backend::Mysql { .. } => "pymysql",
            Backend::Postgres { .. } => "psycopg2",
        }
    }

    /// The real driver, for the [`PlanModule`] to wrap.
    fn driver(&self) -> Arc<dyn DbApiModule> {
        match self.backend {
            Backend::Sqlite => Arc::new(adbapi::drivers::sqlite::SqliteModule),
            Backend::Mysql { .. } => Arc::new(MysqlModule::named("pymysql")),
            Backend::Postgres { .. } => Arc::new(PostgresModule::named("psycopg2")),
        }
    }

    fn committed(&self) -> BTreeSet<u64> {
        committed_keys_in(self.module(), &self.target, &self.table)
    }

    /// Drops a MySQL case's table. A lock wait here means some session
    /// still holds the table (a transaction the pool left open): bounded,
    /// and reported.
    fn drop_table(&self) -> Result<(), String> {
        if matches!(self.backend, Backend::Sqlite) {
            return Ok(());
        }
        let c = adbapi::dbapi::connect(self.module(), &[self.target.as_str().into()], &[])
            .map_err(|e| e.to_string())?;
        let bound = match self.backend {
            Backend::Postgres { .. } => "SET lock_timeout = '10s'",
            _ => "SET SESSION lock_wait_timeout = 10",
        };
        let r = c
            .execute(bound, ())
            .and_then(|_| c.execute(&format!("DROP TABLE IF EXISTS {}", self.table), ()));
        let _ = c.close();
        r.map(|_| ())
            .map_err(|e| format!("dropping the case's table {}: {e}", self.table))
    }
}

// ---------------------------------------------------------------- running

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Run {
        key: u64,
        op: Op,
        plan: JobPlan,
    },
    Close,
    FinalClose,
    /// The program's last `run_query`, on a pool it left open.
    Final {
        key: u64,
    },
}

#[derive(Debug, Clone)]
enum Outcome {
    Value(String),
    Failed {
        cancelled: bool,
        timed_out: bool,
        pool_closed: bool,
        /// `cp_queue_timeout`'s `PoolTimeout`.
        pool_timeout: bool,
        text: String,
    },
}

struct Tracked {
    /// The program step that issued it (`None`: the final query).
    step: Option<usize>,
    kind: Kind,
    /// Kept to cancel it; `None` while a cancel runs.
    handle: Option<Deferred<()>>,
    fired: u32,
    fired_late: bool,
    outcome: Option<Outcome>,
    cancelled_by_program: bool,
    /// The pool was not running (closed or closing) when it was issued.
    refused_expected: bool,
    /// The program had dropped its pool handle when it fired (or never).
    pool_dropped_before: bool,
    /// The program had closed, dropped or stopped its pool when it fired: a
    /// closing pool begins no retry of `run_interaction_with_retry`.
    closing_before: bool,
    /// [`Model::aged`] when it was issued.
    issued_aged: u64,
}

impl fmt::Debug for Tracked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} (step {:?})", self.kind, self.step)
    }
}

type Hook = Box<dyn FnOnce()>;

struct Model {
    reactor: Reactor,
    module: Arc<PlanModule>,
    /// The table the jobs write to.
    table: String,
    pool: RefCell<Option<ConnectionPool>>,
    tracked: RefCell<Vec<Tracked>>,
    /// Steps waiting for a Deferred (by index in `tracked`) to fire.
    hooks: RefCell<HashMap<usize, Vec<Hook>>>,
    next_key: Cell<u64>,
    stopped: Cell<bool>,
    closed_by_program: Cell<bool>,
    dropped: Cell<bool>,
    run_returned: Cell<bool>,
    timed_out: Cell<bool>,
    /// What the `after`/`shutdown` trigger found wrong, if anything.
    after_shutdown: RefCell<Option<String>>,
    /// What happened, in order, for the failure message.
    trace: RefCell<Vec<String>>,
    /// The pool's lifetime clock.
    clock: ManualClock,
    /// [`Program::settle`].
    settle: bool,
    /// Seconds the program has moved the lifetime clock on.
    aged: Cell<u64>,
    /// How many times each `Op::Retry` job's body ran, by key.
    attempts: RefCell<HashMap<u64, Arc<AtomicU32>>>,
    /// The last `status()` the program took, to check that its totals
    /// never go back.
    last_status: RefCell<Option<PoolStatus>>,
    /// What the `status()` taken after the steps found wrong.
    status_problems: RefCell<Vec<String>>,
}

/// A clock the program moves by hand ([`Act::Age`]).
#[derive(Clone)]
struct ManualClock(Arc<Mutex<Instant>>);

impl ManualClock {
    fn new() -> Self {
        ManualClock(Arc::new(Mutex::new(Instant::now())))
    }

    fn clock(&self) -> Clock {
        let c = Arc::clone(&self.0);
        Arc::new(move || *c.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn advance(&self, secs: u8) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) += Duration::from_secs(u64::from(secs));
    }
}

impl Model {
    fn note(&self, s: impl Into<String>) {
        self.trace.borrow_mut().push(s.into());
    }

    fn pool(&self) -> Option<ConnectionPool> {
        self.pool.borrow().clone()
    }

    fn new_key(&self) -> u64 {
        let k = self.next_key.get();
        self.next_key.set(k + 1);
        k
    }
}

fn describe_failure(f: &Failure) -> Outcome {
    Outcome::Failed {
        cancelled: f.check::<CancelledError>().is_some(),
        timed_out: f.check::<TimeoutError>().is_some(),
        pool_closed: f.check::<PoolClosed>().is_some(),
        pool_timeout: f.check::<PoolTimeout>().is_some(),
        text: format!("{} ({})", f.error_message(), f.type_name()),
    }
}

/// Records the firing of `d` as tracked Deferred `idx`, then runs the steps
/// waiting for it.
fn track<T: 'static>(
    model: &Rc<Model>,
    idx: usize,
    d: Deferred<T>,
    show: impl FnOnce(T) -> String + 'static,
) {
    let m = Rc::clone(model);
    let handle = d.add_both(move |r: Result<T, Failure>| {
        let outcome = match r {
            Ok(v) => Outcome::Value(show(v)),
            Err(f) => describe_failure(&f),
        };
        {
            let mut tracked = m.tracked.borrow_mut();
            let t = &mut tracked[idx];
            t.fired += 1;
            t.fired_late |= m.run_returned.get();
            t.pool_dropped_before = m.dropped.get();
            t.closing_before = m.dropped.get() || m.stopped.get() || m.closed_by_program.get();
            t.outcome = Some(outcome.clone());
        }
        m.note(format!("fired #{idx}: {outcome:?}"));
        let hooks = m.hooks.borrow_mut().remove(&idx).unwrap_or_default();
        for h in hooks {
            h();
        }
        Ok(())
    });
    let mut tracked = model.tracked.borrow_mut();
    if tracked[idx].fired == 0 {
        tracked[idx].handle = Some(handle);
    }
}

fn push_tracked(model: &Model, step: Option<usize>, kind: Kind, refused_expected: bool) -> usize {
    let mut tracked = model.tracked.borrow_mut();
    tracked.push(Tracked {
        step,
        kind,
        handle: None,
        fired: 0,
        fired_late: false,
        outcome: None,
        cancelled_by_program: false,
        refused_expected,
        pool_dropped_before: false,
        closing_before: false,
        issued_aged: model.aged.get(),
    });
    tracked.len() - 1
}

fn insert_sql(table: &str, key: u64) -> String {
    format!("INSERT INTO {table} (k) VALUES ({key}) {}", tag(key))
}

fn issue_job(
    model: &Rc<Model>,
    step: Option<usize>,
    op: Op,
    plan: JobPlan,
    timeout_ms: Option<u8>,
) {
    let Some(pool) = model.pool() else {
        model.note(format!(
            "step {step:?}: no pool handle (dropped), job not issued"
        ));
        return;
    };
    let key = model.new_key();
    model.module.plan(key, plan);
    let kind = if step.is_some() {
        Kind::Run { key, op, plan }
    } else {
        Kind::Final { key }
    };
    let idx = push_tracked(model, step, kind, !pool.running());
    model.note(format!(
        "issue #{idx} key {key}: {op:?} {plan:?} timeout {timeout_ms:?}"
    ));
    let timeout = |d: Deferred<String>| match timeout_ms {
        Some(ms) => d.add_timeout(Duration::from_millis(u64::from(ms)), &model.reactor),
        None => d,
    };
    let table = model.table.clone();
    let d: Deferred<String> = match op {
        Op::Query => pool
            .run_query(&format!("{} RETURNING k", insert_sql(&table, key)), ())
            .add_callback(|rows| {
                format!(
                    "{:?}",
                    rows.iter().map(|r| r.values().to_vec()).collect::<Vec<_>>()
                )
            }),
        Op::Operation => pool
            .run_operation(&insert_sql(&table, key), ())
            .add_callback(|()| "()".to_owned()),
        Op::Interaction(body) => pool.run_interaction(move |txn| {
            txn.execute(&insert_sql(&table, key), ())?;
            match body {
                Body::Ok => {}
                Body::Error => return Err(Failure::msg(format!("job {key}: planned error"))),
                Body::Panic => panic!(
                    "{}: job {key}: planned panic",
                    integration_tests::faults::INJECTED_PANIC
                ),
                Body::Slow(ms) => std::thread::sleep(Duration::from_millis(u64::from(ms))),
            }
            let rows = txn
                .execute(&format!("SELECT k FROM {table} WHERE k = {key}"), ())?
                .fetchall()?;
            Ok(format!(
                "{:?}",
                rows.iter().map(|r| r.values().to_vec()).collect::<Vec<_>>()
            ))
        }),
        Op::Retry { fail_first, max } => {
            let attempts = Arc::new(AtomicU32::new(0));
            model
                .attempts
                .borrow_mut()
                .insert(key, Arc::clone(&attempts));
            let policy = RetryPolicy::attempts(u32::from(max))
                .with_backoff(Duration::from_millis(1), Duration::from_millis(2));
            pool.run_interaction_with_retry(policy, move |txn| {
                let attempt = attempts.fetch_add(1, Ordering::SeqCst) + 1;
                // The insert again: a retry after a rollback that left the
                // write in place would fail on the primary key.
                txn.execute(&insert_sql(&table, key), ())?;
                if attempt <= u32::from(fail_first) {
                    return Err(Failure::new(
                        DbError::new(
                            ErrorKind::OperationalError,
                            format!("job {key}: planned serialization failure, attempt {attempt}"),
                        )
                        .with_code("40001"),
                    ));
                }
                let rows = txn
                    .execute(&format!("SELECT k FROM {table} WHERE k = {key}"), ())?
                    .fetchall()?;
                Ok(format!(
                    "{:?}",
                    rows.iter().map(|r| r.values().to_vec()).collect::<Vec<_>>()
                ))
            })
        }
    };
    track(model, idx, timeout(d), |s| s);
}

/// The value a successful job with key `key` fires with.
fn expected_value(op: Op, key: u64) -> String {
    match op {
        Op::Operation => "()".to_owned(),
        Op::Query | Op::Interaction(_) | Op::Retry { .. } => format!("[[Int({key})]]"),
    }
}

fn exec_act(model: &Rc<Model>, idx: usize, act: &Act) {
    if model.run_returned.get() {
        model.note(format!("step {idx}: not run, run() had returned"));
        return;
    }
    model.note(format!("step {idx}: {act:?}"));
    match act {
        Act::Run {
            op,
            plan,
            timeout_ms,
        } => issue_job(model, Some(idx), *op, *plan, *timeout_ms),
        Act::Cancel(n) => {
            let len = model.tracked.borrow().len();
            if len == 0 {
                return;
            }
            let target = n % len;
            let handle = {
                let mut tracked = model.tracked.borrow_mut();
                tracked[target].cancelled_by_program = true;
                tracked[target].handle.take()
            };
            model.note(format!("cancel #{target}"));
            if let Some(h) = handle {
                h.cancel();
                model.tracked.borrow_mut()[target].handle = Some(h);
            }
        }
        Act::Close | Act::FinalClose => {
            let Some(pool) = model.pool() else { return };
            model.closed_by_program.set(true);
            let (kind, d) = if *act == Act::Close {
                (Kind::Close, pool.close())
            } else {
                (Kind::FinalClose, pool.final_close())
            };
            let i = push_tracked(model, Some(idx), kind, false);
            track(model, i, d, |()| "()".to_owned());
        }
        Act::DropPool => {
            model.dropped.set(true);
            drop(model.pool.borrow_mut().take());
        }
        Act::Stop => {
            model.stopped.set(true);
            let _ = model.reactor.stop();
        }
        Act::Adjust { min, max } => {
            if let Some(pool) = model.pool() {
                let r = pool.threadpool().adjust_pool_size(Some(*min), Some(*max));
                model.note(format!("adjust -> {r:?}"));
            }
        }
        Act::Pause(_) => {}
        Act::Age(secs) => {
            model.aged.set(model.aged.get() + u64::from(*secs));
            // The module first: it must not note a connection's first use
            // earlier than the pool saw the connection opened.
            model.module.set_time(model.aged.get());
            model.clock.advance(*secs);
        }
    }
    check_status_now(model, idx);
}

/// Jobs issued to the pool, refused ones included (a job refused by a
/// closed pool counts as failed): what the pool's job totals count.
fn jobs_submitted(model: &Model) -> u64 {
    model
        .tracked
        .borrow()
        .iter()
        .filter(|t| matches!(t.kind, Kind::Run { .. } | Kind::Final { .. }))
        .count() as u64
}

/// True once every job the program issued has fired.
fn all_jobs_fired(model: &Model) -> bool {
    model
        .tracked
        .borrow()
        .iter()
        .all(|t| t.fired > 0 || !matches!(t.kind, Kind::Run { .. } | Kind::Final { .. }))
}

fn job_totals(st: &PoolStatus) -> u64 {
    st.jobs_completed + st.jobs_failed + st.jobs_cancelled + st.jobs_timed_out
}

/// The `status()` invariants that hold at any moment, taken from the loop
/// thread after a step while workers may be running: totals never go
/// back, no more connections closed than opened, no more job outcomes
/// than jobs, and nothing queued once every job has fired.
fn check_status_now(model: &Model, idx: usize) {
    let Some(pool) = model.pool() else { return };
    let st = pool.status();
    let mut wrong = Vec::new();
    if let Some(last) = model.last_status.borrow().as_ref() {
        let totals = |s: &PoolStatus| {
            [
                ("connections_opened", s.connections_opened),
                ("connections_closed", s.connections_closed),
                ("connections_failed", s.connections_failed),
                ("jobs_completed", s.jobs_completed),
                ("jobs_failed", s.jobs_failed),
                ("jobs_cancelled", s.jobs_cancelled),
                ("jobs_timed_out", s.jobs_timed_out),
            ]
        };
        for ((name, before), (_, now)) in totals(last).into_iter().zip(totals(&st)) {
            if now < before {
                wrong.push(format!("{name} went back from {before} to {now}"));
            }
        }
    }
    if st.connections_closed > st.connections_opened {
        wrong.push("more connections closed than opened".to_owned());
    }
    let submitted = jobs_submitted(model);
    if job_totals(&st) > submitted {
        wrong.push(format!(
            "more job outcomes than the {submitted} jobs submitted"
        ));
    }
    if all_jobs_fired(model) && st.queued != 0 {
        wrong.push("jobs queued although every job has fired".to_owned());
    }
    if !wrong.is_empty() {
        model.status_problems.borrow_mut().push(format!(
            "status() after step {idx}: {}: {st:?}",
            wrong.join("; ")
        ));
    }
    *model.last_status.borrow_mut() = Some(st);
}

/// The `status()` invariants of a quiescent pool (every job fired, no
/// worker busy): busy + idle == workers, nothing queued, opened − closed
/// == open connections, and one job outcome per job submitted. A worker
/// still finishing the job whose Deferred just fired (returning to the
/// idle list, closing a connection it replaced) is waited for, bounded.
fn check_status_quiescent(model: &Model, when: &str) {
    let Some(pool) = model.pool() else { return };
    if !all_jobs_fired(model) {
        return;
    }
    let submitted = jobs_submitted(model);
    let wrong = |st: &PoolStatus| {
        let mut wrong = Vec::new();
        if st.busy != 0 || st.busy + st.idle != st.workers {
            wrong.push("busy + idle != workers, or a worker busy".to_owned());
        }
        if st.queued != 0 {
            wrong.push("jobs queued".to_owned());
        }
        if st.connections_opened - st.connections_closed.min(st.connections_opened)
            != st.open_connections as u64
        {
            wrong.push("connections opened - closed != open".to_owned());
        }
        if job_totals(st) != submitted {
            wrong.push(format!(
                "completed + failed + cancelled + timed out != {submitted} jobs submitted"
            ));
        }
        wrong
    };
    let deadline = Instant::now() + QUIESCENT_GRACE;
    loop {
        let st = pool.status();
        let w = wrong(&st);
        if w.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            model
                .status_problems
                .borrow_mut()
                .push(format!("status() {when}: {}: {st:?}", w.join("; ")));
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Runs the program's steps from `from` on; pauses continue from a timer.
fn drive(model: &Rc<Model>, steps: &Rc<Vec<Step>>, from: usize) {
    for i in from..steps.len() {
        let step = &steps[i];
        if let Act::Pause(ms) = step.act {
            let (m, s) = (Rc::clone(model), Rc::clone(steps));
            model
                .reactor
                .call_later(Duration::from_millis(u64::from(ms)), move || {
                    drive(&m, &s, i + 1)
                });
            return;
        }
        match step.at {
            At::Now => exec_act(model, i, &step.act),
            At::AfterJob(n) => {
                let len = model.tracked.borrow().len();
                let target = (len > 0).then(|| n % len);
                let fired = target.is_none_or(|t| model.tracked.borrow()[t].fired > 0);
                if fired {
                    exec_act(model, i, &step.act);
                } else {
                    let (m, a) = (Rc::clone(model), step.act.clone());
                    model
                        .hooks
                        .borrow_mut()
                        .entry(target.expect("some"))
                        .or_default()
                        .push(Box::new(move || exec_act(&m, i, &a)));
                }
            }
            At::Timer(ms) => {
                let (m, a) = (Rc::clone(model), step.act.clone());
                model
                    .reactor
                    .call_later(Duration::from_millis(u64::from(ms)), move || {
                        exec_act(&m, i, &a)
                    });
            }
        }
    }
    finish(model);
}

/// The program's end: a last query on a pool it left open, then stop.
fn finish(model: &Rc<Model>) {
    if model.stopped.get() {
        return;
    }
    let open = !model.closed_by_program.get() && !model.dropped.get();
    if open {
        model.module.faults().disarm();
        let len = model.tracked.borrow().len();
        issue_job(model, None, Op::Query, JobPlan::default(), None);
        let m = Rc::clone(model);
        model
            .hooks
            .borrow_mut()
            .entry(len)
            .or_default()
            .push(Box::new(move || stop_when_settled(&m)));
    } else {
        model.stopped.set(true);
        let _ = model.reactor.stop();
    }
}

/// Once the final query has fired: stops the reactor, at once or (a
/// settling program) once every job has fired, checking the quiescent
/// pool's `status()` first if every job has.
fn stop_when_settled(model: &Rc<Model>) {
    if model.stopped.get() {
        return;
    }
    if model.settle {
        let unfired = model.tracked.borrow().iter().position(|t| t.fired == 0);
        if let Some(idx) = unfired {
            let m = Rc::clone(model);
            model
                .hooks
                .borrow_mut()
                .entry(idx)
                .or_default()
                .push(Box::new(move || stop_when_settled(&m)));
            return;
        }
    }
    check_status_quiescent(model, "when the final query fired");
    model.stopped.set(true);
    let _ = model.reactor.stop();
}

/// Runs one program to completion and checks it; `Err` says what is wrong.
fn run_program(prog: &Program, backend: &Backend) -> Result<(), String> {
    quiet_injected_panics();
    let db = CaseDb::create(backend)?;
    let name = unique_name("pool-model");
    let module = PlanModule::register_over(&name, db.driver());
    for g in &prog.global {
        module.faults().arm(g.step, When::Nth(g.nth), g.fault);
    }
    let reactor = Reactor::new().map_err(|e| e.to_string())?;
    let clock = ManualClock::new();
    let secs = |s: Option<u8>| s.map(f64::from);
    let pool = ConnectionPool::builder(&name)
        .arg(db.target.as_str())
        .min(prog.min)
        .max(prog.max)
        .reconnect(prog.reconnect)
        .name(&name)
        .reactor(reactor.clone())
        .queue_timeout(
            prog.queue_timeout_ms
                .map(|ms| Duration::from_millis(u64::from(ms))),
        )
        .max_lifetime(secs(prog.life.max_lifetime))
        .idle_timeout(secs(prog.life.idle_timeout))
        .check_idle(secs(prog.life.check_idle))
        .life_clock(clock.clock())
        .build()
        .map_err(|e| e.to_string())?;
    let model = Rc::new(Model {
        reactor: reactor.clone(),
        module: Arc::clone(&module),
        table: db.table.clone(),
        pool: RefCell::new(Some(pool)),
        tracked: RefCell::new(Vec::new()),
        hooks: RefCell::new(HashMap::new()),
        next_key: Cell::new(1),
        stopped: Cell::new(false),
        closed_by_program: Cell::new(false),
        dropped: Cell::new(false),
        run_returned: Cell::new(false),
        timed_out: Cell::new(false),
        after_shutdown: RefCell::new(None),
        trace: RefCell::new(Vec::new()),
        clock,
        settle: prog.settle,
        aged: Cell::new(0),
        attempts: RefCell::new(HashMap::new()),
        last_status: RefCell::new(None),
        status_problems: RefCell::new(Vec::new()),
    });
    // Known defect 10: the pool must have closed before the after phase.
    let m = Rc::clone(&model);
    reactor.add_system_event_trigger(Phase::After, "shutdown", move || {
        let mut wrong = Vec::new();
        let unfired: Vec<usize> = m
            .tracked
            .borrow()
            .iter()
            .enumerate()
            .filter(|(_, t)| t.fired == 0)
            .map(|(i, _)| i)
            .collect();
        if !unfired.is_empty() {
            wrong.push(format!("Deferreds {unfired:?} had not fired"));
        }
        if let Some(p) = m.pool() {
            if p.threadpool().workers() != 0 {
                wrong.push(format!("{} workers were alive", p.threadpool().workers()));
            }
            if m.module.faults().live() != 0 {
                wrong.push(format!(
                    "{} connections were open",
                    m.module.faults().live()
                ));
            }
        }
        if !wrong.is_empty() {
            *m.after_shutdown.borrow_mut() = Some(wrong.join("; "));
        }
    });
    let steps = Rc::new(prog.steps.clone());
    let (m, s) = (Rc::clone(&model), Rc::clone(&steps));
    reactor.call_when_running(move || drive(&m, &s, 0));
    let (m, r) = (Rc::clone(&model), reactor.clone());
    let watchdog = reactor.call_later(WATCHDOG, move || {
        m.timed_out.set(true);
        let _ = r.stop();
    });
    reactor.run().map_err(|e| e.to_string())?;
    model.run_returned.set(true);
    if watchdog.active() {
        let _ = watchdog.cancel();
    }
    // Nothing may fire after run() returned.
    for _ in 0..5 {
        reactor.iterate(Duration::from_millis(2));
    }
    let mut result = check(prog, &model, &db);
    // The hooks and the handles hold the model: break the cycles.
    model.hooks.borrow_mut().clear();
    for t in model.tracked.borrow_mut().iter_mut() {
        t.handle = None;
    }
    drop(model.pool.borrow_mut().take());
    if let Err(e) = db.drop_table() {
        result = match result {
            Ok(()) => Err(vec![e]),
            Err(mut problems) => {
                problems.push(e);
                Err(problems)
            }
        };
    }
    result.map_err(|problems| {
        format!(
            "{}\ntrace:\n  {}",
            problems.join("\n"),
            model.trace.borrow().join("\n  ")
        )
    })
}

fn check(prog: &Program, model: &Rc<Model>, db: &CaseDb) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    if model.timed_out.get() {
        problems.push(format!(
            "watchdog: the program had not ended after {WATCHDOG:?}"
        ));
    }
    let committed = db.committed();
    let executed = model.module.executed();
    let severs = prog.severs();
    let has_global = !prog.global.is_empty();
    let mut pool_timeouts = 0u64;
    for (i, t) in model.tracked.borrow().iter().enumerate() {
        let what = format!("#{i} {t:?}");
        if t.fired == 0 || t.fired_late {
            let when = if t.fired_late {
                "fired only after run() returned"
            } else {
                "never fired"
            };
            problems.push(format!("{what}: {when}"));
            continue;
        }
        if t.fired != 1 {
            problems.push(format!("{what}: fired {} times", t.fired));
        }
        let outcome = t.outcome.clone().expect("fired");
        match &t.kind {
            Kind::Close | Kind::FinalClose => {
                if let Outcome::Failed {
                    text, cancelled, ..
                } = &outcome
                {
                    if !(t.cancelled_by_program && *cancelled) {
                        problems.push(format!("{what}: closing failed: {text}"));
                    }
                }
            }
            Kind::Run { key, .. } | Kind::Final { key } => {
                let (op, plan) = match &t.kind {
                    Kind::Run { op, plan, .. } => (*op, *plan),
                    _ => (Op::Query, JobPlan::default()),
                };
                let is_committed = committed.contains(key);
                let attempts = model
                    .attempts
                    .borrow()
                    .get(key)
                    .map(|a| a.load(Ordering::SeqCst));
                // A retried job: how its attempts must end (see `Op::Retry`).
                let retry = match op {
                    Op::Retry { fail_first, max } => Some((u32::from(fail_first), u32::from(max))),
                    _ => None,
                };
                if let (Some((_, max)), Some(n)) = (retry, attempts) {
                    if n > max {
                        problems.push(format!("{what}: {n} attempts, at most {max} allowed"));
                    }
                }
                match &outcome {
                    Outcome::Value(v) => {
                        if !is_committed {
                            problems.push(format!(
                                "{what}: succeeded ({v}) but key {key} is not committed"
                            ));
                        }
                        if *v != expected_value(op, *key) {
                            problems.push(format!(
                                "{what}: succeeded with {v}, expected {}",
                                expected_value(op, *key)
                            ));
                        }
                        if let (Some((fail_first, _)), Some(n)) = (retry, attempts) {
                            if n != fail_first + 1 {
                                problems.push(format!(
                                    "{what}: succeeded after {n} attempts, planned {}",
                                    fail_first + 1
                                ));
                            }
                        }
                        if plan.makes_job_fail()
                            || matches!(op, Op::Interaction(Body::Error | Body::Panic))
                            || retry.is_some_and(|(fail_first, max)| fail_first >= max)
                        {
                            problems
                                .push(format!("{what}: succeeded although its plan makes it fail"));
                        }
                        if t.refused_expected {
                            problems.push(format!(
                                "{what}: succeeded although issued on a closed pool"
                            ));
                        }
                    }
                    Outcome::Failed {
                        cancelled,
                        timed_out,
                        pool_closed,
                        pool_timeout,
                        text,
                    } => {
                        if *pool_timeout {
                            pool_timeouts += 1;
                            if prog.queue_timeout_ms.is_none() {
                                problems.push(format!(
                                    "{what}: PoolTimeout without cp_queue_timeout: {text}"
                                ));
                            }
                            // Never run: no statement of it reached a
                            // connection, its body never ran.
                            if executed.contains(key) || attempts.is_some_and(|n| n != 0) {
                                problems.push(format!(
                                    "{what}: failed with PoolTimeout but it ran ({attempts:?} attempts)"
                                ));
                            }
                        }
                        if is_committed && !plan.ambiguous() {
                            problems.push(format!(
                                "{what}: failed ({text}) but key {key} is committed"
                            ));
                        }
                        if t.refused_expected && !pool_closed && !cancelled && !timed_out {
                            problems.push(format!(
                                "{what}: issued on a closed pool, failed with {text} instead of PoolClosed"
                            ));
                        }
                        // Nothing but its own retries makes it fail; a retried
                        // job's rollback is planned to succeed when it has any.
                        let clean_but_retries = !plan.makes_job_fail()
                            && match op {
                                Op::Query
                                | Op::Operation
                                | Op::Interaction(Body::Ok | Body::Slow(_)) => true,
                                Op::Interaction(Body::Error | Body::Panic) => false,
                                Op::Retry { fail_first, .. } => {
                                    fail_first == 0 || plan.rollback == StepFault::None
                                }
                            };
                        let clean = clean_but_retries
                            && retry.is_none_or(|(fail_first, max)| fail_first < max);
                        // A closing pool begins no retry.
                        let retries_cut =
                            retry.is_some_and(|(fail_first, _)| fail_first > 0) && t.closing_before;
                        let undisturbed = !retries_cut
                            && !t.refused_expected
                            && !t.cancelled_by_program
                            && !*cancelled
                            && !*timed_out
                            && !*pool_timeout
                            && !has_global
                            && (prog.reconnect || !severs);
                        if clean && undisturbed {
                            problems.push(format!(
                                "{what}: a clean job on an open pool failed: {text}"
                            ));
                        }
                        if let Some((fail_first, max)) = retry {
                            let gave_up = format!("gave up after {max} attempts");
                            if text.contains("gave up after") {
                                if !text.contains(&gave_up) || attempts != Some(max) {
                                    problems.push(format!(
                                        "{what}: {text}, after {attempts:?} attempts (max {max})"
                                    ));
                                }
                                if fail_first < max {
                                    problems.push(format!(
                                        "{what}: gave up although only {fail_first} attempts were to fail"
                                    ));
                                }
                            } else if text.contains("stopped after") {
                                if !(retries_cut
                                    || t.cancelled_by_program
                                    || *cancelled
                                    || *timed_out)
                                {
                                    problems.push(format!(
                                        "{what}: retries stopped although neither cancelled nor closing: {text}"
                                    ));
                                }
                            } else if clean_but_retries && undisturbed && fail_first >= max {
                                problems.push(format!(
                                    "{what}: expected to give up after {max} attempts, failed with {text}"
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    problems.extend(model.status_problems.borrow().iter().cloned());
    // cp_max_lifetime: a job issued once a connection had outlived it never
    // ran on that connection (its worker replaced it first). The pool opened
    // the connection no later than its first statement.
    if let Some(lifetime) = prog.life.max_lifetime {
        let first_used = model.module.first_used();
        for (key, conn) in model.module.ran_on() {
            let Some(&opened_by) = first_used.get(&conn) else {
                continue;
            };
            let tracked = model.tracked.borrow();
            let issued = tracked.iter().find(
                |t| matches!(t.kind, Kind::Run { key: k, .. } | Kind::Final { key: k } if k == key),
            );
            if let Some(t) = issued {
                if t.issued_aged >= opened_by + u64::from(lifetime) {
                    problems.push(format!(
                        "{t:?}: issued at {} s ran on connection {conn}, open since {opened_by} s or \
                         earlier: past cp_max_lifetime {lifetime} s",
                        t.issued_aged
                    ));
                }
            }
        }
    }
    if let Some(pool) = model.pool() {
        // The pool is closed and every Deferred has fired (checked above).
        let st = pool.status();
        let mut wrong = Vec::new();
        if st.workers != 0 || st.busy != 0 || st.idle != 0 {
            wrong.push("workers left");
        }
        if st.queued != 0 {
            wrong.push("jobs queued");
        }
        if st.open_connections != 0 || st.connections_opened != st.connections_closed {
            wrong.push("connections opened != closed, or some open");
        }
        if job_totals(&st) != jobs_submitted(model) {
            wrong.push("completed + failed + cancelled + timed out != jobs submitted");
        }
        if st.jobs_timed_out != pool_timeouts {
            wrong.push("jobs_timed_out != the jobs that failed with PoolTimeout");
        }
        // Each job in the category its Deferred shows: a callback is
        // completed, `CancelledError` (or `add_timeout`'s `TimeoutError`,
        // its cancel) cancelled, anything else but `PoolTimeout` failed.
        let (mut n_completed, mut n_failed, mut n_cancelled) = (0u64, 0u64, 0u64);
        for t in model.tracked.borrow().iter() {
            if !matches!(t.kind, Kind::Run { .. } | Kind::Final { .. }) {
                continue;
            }
            match &t.outcome {
                Some(Outcome::Value(_)) => n_completed += 1,
                Some(Outcome::Failed {
                    pool_timeout: true, ..
                }) => {}
                Some(Outcome::Failed {
                    cancelled,
                    timed_out,
                    ..
                }) if *cancelled || *timed_out => n_cancelled += 1,
                Some(Outcome::Failed { .. }) => n_failed += 1,
                None => {}
            }
        }
        let shown = (n_completed, n_failed, n_cancelled);
        if (st.jobs_completed, st.jobs_failed, st.jobs_cancelled) != shown {
            problems.push(format!(
                "status() at the end counts (completed, failed, cancelled) {:?}, the Deferreds show \
                 {:?}",
                (st.jobs_completed, st.jobs_failed, st.jobs_cancelled),
                shown
            ));
        }
        if !wrong.is_empty() {
            problems.push(format!(
                "status() at the end: {} ({} jobs submitted, {pool_timeouts} PoolTimeouts): {st:?}",
                wrong.join("; "),
                jobs_submitted(model)
            ));
        }
    }
    if let Some(w) = model.after_shutdown.borrow().as_ref() {
        problems.push(format!(
            "the after/shutdown triggers ran before the pool had closed: {w}"
        ));
    }
    // Leaks.
    let faults = model.module.faults();
    if let Some(pool) = model.pool() {
        if pool.threadpool().workers() != 0 {
            problems.push(format!(
                "{} worker threads alive after run() returned",
                pool.threadpool().workers()
            ));
        }
        if faults.live() != 0 {
            problems.push(format!(
                "{} connections open after run() returned",
                faults.live()
            ));
        }
    } else {
        // A dropped pool's workers finish and close their connections on
        // their own: wait for that (bounded; only a leak reaches the limit).
        let deadline = Instant::now() + DROPPED_POOL_GRACE;
        while faults.live() != 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if faults.live() != 0 {
            problems.push(format!(
                "{} connections of the dropped pool never closed",
                faults.live()
            ));
        }
    }
    for c in faults.connections() {
        if c.close_calls > 1 {
            problems.push(format!(
                "connection #{} closed {} times",
                c.id, c.close_calls
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Runs `prog` on a thread of its own, so a hang fails the case.
fn run_guarded(prog: &Program, backend: &Backend) -> Result<(), String> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let (p, b) = (prog.clone(), backend.clone());
    std::thread::Builder::new()
        .name("pool-model-case".to_owned())
        .spawn(move || {
            let r = std::panic::catch_unwind(|| run_program(&p, &b))
                .unwrap_or_else(|_| Err("the case panicked (see stderr)".to_owned()));
            let _ = tx.send(r);
        })
        .map_err(|e| e.to_string())?;
    rx.recv_timeout(HANG).unwrap_or_else(|_| {
        Err(format!(
            "hang: run() had not returned after {HANG:?} (the watchdog's stop did not end it)"
        ))
    })
}

fn cases(var: &str, default: u32) -> u32 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn pool_model() {
    search(&Backend::Sqlite, cases("ADBAPI_MODEL_CASES", 256));
}

/// The same search on MariaDB/MySQL, with fewer cases (each makes and drops
/// a table on the server).
#[test]
#[cfg_attr(
    not(mysql_available),
    ignore = "SKIPPED: no MySQL/MariaDB server; set ADBAPI_MYSQL_URL (eval \"$(scripts/mysql-test-server start)\")"
)]
fn pool_model_mysql() {
    let server = MysqlBackend::new();
    search(
        &Backend::Mysql {
            url: server.url().to_owned(),
        },
        cases("ADBAPI_MODEL_MYSQL_CASES", 48),
    );
}

/// The same search on PostgreSQL, where `run_query`/`run_operation` are
/// one-round-trip transactions of their own (issue 14): the statement is
/// the job's commit, cancels meet it in flight.
#[test]
#[cfg_attr(
    not(pg_available),
    ignore = "SKIPPED: no PostgreSQL server; set ADBAPI_PG_URL (eval \"$(scripts/pg-test-server start)\")"
)]
fn pool_model_postgres() {
    let _server = integration_tests::pg::sharing_server();
    search(
        &Backend::Postgres {
            url: integration_tests::pg::url(),
        },
        cases("ADBAPI_MODEL_PG_CASES", 48),
    );
}

/// Runs `cases` random programs on `backend`, shrinking the first failure.
fn search(backend: &Backend, cases: u32) {
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        max_shrink_time: 180_000,
        ..Config::default()
    });
    // Timing decides whether a program fails: once one has failed, each
    // shrinking candidate runs several times, so the search keeps shrinking
    // instead of stopping at the first candidate that happened to pass.
    let shrinking = Cell::new(false);
    let result = runner.run(&program(), |prog| {
        let tries = if shrinking.get() { SHRINK_TRIES } else { 1 };
        for _ in 0..tries {
            if let Err(why) = run_guarded(&prog, backend) {
                shrinking.set(true);
                return Err(TestCaseError::fail(why));
            }
        }
        Ok(())
    });
    match result {
        Ok(()) => {}
        Err(TestError::Fail(why, prog)) => {
            panic!("minimal failing program:\n{prog:#?}\n{why}")
        }
        Err(e) => panic!("{e}"),
    }
}

// ------------------------------------------------- minimal failing programs
//
// The minimal programs the search shrank to, pinned as regression tests of
// the defects they found (8-11 of the trust issue, and N1, N2 found here).

fn q() -> Act {
    Act::Run {
        op: Op::Query,
        plan: JobPlan::default(),
        timeout_ms: None,
    }
}

fn now(act: Act) -> Step {
    Step { at: At::Now, act }
}

fn assert_program(prog: Program) {
    assert_program_on(prog, &Backend::Sqlite);
}

fn assert_program_on(prog: Program, backend: &Backend) {
    if let Err(why) = run_guarded(&prog, backend) {
        panic!("program:\n{prog:#?}\n{why}");
    }
}

/// NEW defect N1: cancelling the Deferred of `close()` (or `final_close()`)
/// runs the pool's close continuation at once: it closes every connection
/// while a job still runs on it, marks the pool closed and drops its
/// shutdown hold, so `run()` returns before the job's Deferred fires.
#[test]
fn cancelling_close_keeps_the_shutdown_hold() {
    assert_program(cancelling_close_keeps_the_shutdown_hold_program());
}

fn cancelling_close_keeps_the_shutdown_hold_program() -> Program {
    Program {
        min: 1,
        max: 1,
        reconnect: false,
        queue_timeout_ms: None,
        life: Life::default(),
        settle: false,
        global: vec![],
        steps: vec![now(q()), now(Act::Close), now(Act::Cancel(1))],
    }
}

/// NEW defect N2 (Twisted does the same): a rollback that fails without the
/// connection being lost leaves the job's transaction open on a connection
/// the pool keeps. Its write is committed by the next job's commit on that
/// connection although its Deferred failed, and under SQLite its write lock
/// blocks every other worker's writes for the busy timeout (here the final
/// query waits until the watchdog stops the reactor and the pool closes
/// the connection).
#[test]
fn a_failed_rollback_does_not_keep_the_transaction_open() {
    assert_program(a_failed_rollback_does_not_keep_the_transaction_open_program());
}

fn a_failed_rollback_does_not_keep_the_transaction_open_program() -> Program {
    Program {
        min: 1,
        max: 2,
        reconnect: false,
        queue_timeout_ms: None,
        life: Life::default(),
        settle: false,
        global: vec![],
        steps: vec![now(Act::Run {
            op: Op::Interaction(Body::Slow(6)),
            plan: JobPlan {
                rollback: StepFault::Fail,
                ..JobPlan::default()
            },
            timeout_ms: Some(1),
        })],
    }
}

fn one_worker(steps: Vec<Step>) -> Program {
    Program {
        min: 1,
        max: 1,
        reconnect: false,
        queue_timeout_ms: None,
        life: Life::default(),
        settle: false,
        global: vec![],
        steps,
    }
}

/// Known defect 8: a `run_*` refused from `close()`'s callback, in the turn
/// the program stops the reactor, fires only after `run()` returned.
#[test]
fn a_refused_job_fires_before_run_returns() {
    assert_program(a_refused_job_fires_before_run_returns_program());
}

fn a_refused_job_fires_before_run_returns_program() -> Program {
    one_worker(vec![
        now(Act::Close),
        Step {
            at: At::AfterJob(0),
            act: q(),
        },
    ])
}

/// Known defect 9: a job in flight when the last pool handle is dropped
/// fires only after `run()` returned (the dropped pool does not hold
/// shutdown).
#[test]
fn a_dropped_pool_holds_shutdown() {
    assert_program(a_dropped_pool_holds_shutdown_program());
}

fn a_dropped_pool_holds_shutdown_program() -> Program {
    one_worker(vec![now(q()), now(Act::DropPool)])
}

/// Known defect 10: the `after`/`shutdown` triggers run while the pool's
/// worker is still alive.
#[test]
fn after_shutdown_triggers_wait_for_the_pool() {
    assert_program(after_shutdown_triggers_wait_for_the_pool_program());
}

fn after_shutdown_triggers_wait_for_the_pool_program() -> Program {
    one_worker(vec![now(q())])
}

/// Known defect 11: a timeout (a cancel) landing while the job commits is
/// reported as `TimeoutError` although the job committed.
#[test]
fn a_cancel_during_commit_reports_the_real_outcome() {
    assert_program(a_cancel_during_commit_reports_the_real_outcome_program());
}

fn a_cancel_during_commit_reports_the_real_outcome_program() -> Program {
    // The commit stalls 200 ms; the timeout fires 20 ms after issue,
    // while the job commits (or, on a very slow machine, before it
    // started, which passes).
    one_worker(vec![now(Act::Run {
        op: Op::Interaction(Body::Ok),
        plan: JobPlan {
            commit: CommitFault::Slow(200),
            ..JobPlan::default()
        },
        timeout_ms: Some(20),
    })])
}

/// MariaDB/MySQL: a cancel of a running job sends `KILL QUERY`, which is
/// asynchronous to the job and could land on whatever the session runs
/// next. The job's cancel slot holds the kill and the job's finish apart,
/// and the driver closes a session a kill was sent on at its rollback; so
/// the clean jobs queued behind a cancelled (or timed-out) job on the same
/// worker must succeed, whenever the cancel lands: while the job sleeps
/// between statements, runs a statement, commits, or after it finished.
#[test]
#[cfg_attr(
    not(mysql_available),
    ignore = "SKIPPED: no MySQL/MariaDB server; set ADBAPI_MYSQL_URL (eval \"$(scripts/mysql-test-server start)\")"
)]
fn mysql_a_cancel_never_reaches_the_next_job() {
    let server = MysqlBackend::new();
    let backend = Backend::Mysql {
        url: server.url().to_owned(),
    };
    let run = |op, plan, timeout_ms| Act::Run {
        op,
        plan,
        timeout_ms,
    };
    for reconnect in [false, true] {
        for delay in 0u8..=10 {
            let slow_commit = JobPlan {
                commit: CommitFault::Slow(4),
                ..JobPlan::default()
            };
            assert_program_on(
                Program {
                    min: 1,
                    max: 1,
                    reconnect,
                    queue_timeout_ms: None,
                    life: Life::default(),
                    settle: false,
                    global: vec![],
                    steps: vec![
                        now(run(Op::Interaction(Body::Slow(6)), slow_commit, None)),
                        Step {
                            at: At::Timer(delay),
                            act: Act::Cancel(0),
                        },
                        now(q()),
                        now(run(Op::Query, JobPlan::default(), Some(delay / 2 + 1))),
                        now(q()),
                        now(run(Op::Operation, slow_commit, Some(delay + 1))),
                        now(q()),
                    ],
                },
                &backend,
            );
        }
    }
}

/// The minimal programs above, on MariaDB/MySQL.
#[test]
#[cfg_attr(
    not(mysql_available),
    ignore = "SKIPPED: no MySQL/MariaDB server; set ADBAPI_MYSQL_URL (eval \"$(scripts/mysql-test-server start)\")"
)]
fn mysql_minimal_programs() {
    let server = MysqlBackend::new();
    let backend = Backend::Mysql {
        url: server.url().to_owned(),
    };
    for prog in [
        cancelling_close_keeps_the_shutdown_hold_program(),
        a_failed_rollback_does_not_keep_the_transaction_open_program(),
        a_refused_job_fires_before_run_returns_program(),
        a_dropped_pool_holds_shutdown_program(),
        after_shutdown_triggers_wait_for_the_pool_program(),
        a_cancel_during_commit_reports_the_real_outcome_program(),
    ] {
        assert_program_on(prog, &backend);
    }
}
