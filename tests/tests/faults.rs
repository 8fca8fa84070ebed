//! Fault-injection sweep of `adbapi::ConnectionPool` on the real reactor.
//!
//! Kept whole although over 600 lines: it is one table, every fault crossed
//! with every pool setting, and its checks.
//!
//! Every combination of
//!
//! - the step that goes wrong ([`Step`]: connect, `cp_openfun`, cursor,
//!   execute, fetch, commit, rollback, close),
//! - how it goes wrong (a `DbError` of a chosen kind, or a panic),
//! - `cp_reconnect` (false, true),
//! - the operation (`run_interaction` inserting and selecting,
//!   `run_with_connection` doing the same, `run_query`, `run_operation`),
//! - the pool size (one worker, two workers)
//!
//! is run (256 cases) against a [`FaultModule`] wrapping real SQLite files: a
//! table and a committed row are set up first, then the fault is armed for the
//! *first* occurrence of its step, the job under test runs, and the case
//! checks that
//!
//! 1. the job's Deferred fired exactly once, with the outcome [`TABLE`] gives
//!    (from the error precedence of Twisted's
//!    `ConnectionPool._runInteraction` and the documented differences of this
//!    port: a panic becomes a failure, a rollback that fails gives
//!    `ConnectionLost` around the original error and discards the connection
//!    with or without `cp_reconnect`, a connection whose `cp_openfun` failed
//!    is closed);
//! 2. the fault fired (or, if the operation never reaches that step, did not);
//! 3. the case's threads logged exactly the expected warnings and errors;
//! 4. the worker survived: a follow-up query succeeds;
//! 5. after `pool.close()` no worker thread, no outstanding job and no
//!    connection is left, every connection was closed exactly once on the
//!    thread that opened it, and (one worker) the number of connections made
//!    is the expected one, which shows whether the failed job's connection
//!    was kept or replaced;
//! 6. the row committed before the fault is still there, and the job's own
//!    insert is there exactly when the job succeeded.
//!
//! [`SEVERED`] covers a connection that dies for good (the server goes away):
//! a job whose statement or commit meets it fails with `ConnectionLost` (its
//! rollback fails, so the connection is discarded) and the next job
//! reconnects, with or without `cp_reconnect`. Only a failed cursor creation
//! without `cp_reconnect` keeps the dead connection (Twisted's known
//! weakness 4, still reproduced there: no follow-up succeeds until the pool
//! is closed); with it a failed cursor reconnects at once.
//!
//! [`COMPOUND`] covers two faults in one job and a panicking interaction.
//!
//! The sweep, [`SEVERED`] and [`COMPOUND`] also run with the fault module
//! wrapping the PostgreSQL driver (`ADBAPI_PG_URL`) and the MySQL/MariaDB
//! driver (`ADBAPI_MYSQL_URL`), with the same expectations: the faults are
//! injected above the driver, so what differs is only how each real driver
//! commits, rolls back and closes underneath. Without a server those tests
//! are reported as ignored (see `tests/build.rs`).
//!
//! The last tests cancel a job while it runs into a fault: the cancel must
//! reach the job's own statement and never a later job's.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use adbapi::dbapi::{self, DbError, ErrorKind};
use adbapi::{ConnectionLost, ConnectionPool, Row as DbRow};
use deferred::CancelledError;
use deferred::{Deferred, Failure};
use integration_tests::faults::{
    quiet_injected_panics, Fault, FaultEvent, FaultModule, Step, When,
};
use integration_tests::harness::{run_async, unique_name, TempDir};
use integration_tests::logs::LogCapture;
use reactor::prelude::*;
use reactor::Reactor;
use tracing::Level;

/// Bounds each case's `reactor.run()`; only a hung Deferred reaches it.
const SAFETY_NET: Duration = Duration::from_secs(20);
const INSERT: &str = "INSERT INTO t (id, v) VALUES (2, 'new')";
const SELECT_NEW: &str = "SELECT v FROM t WHERE id = 2";
const SELECT_KNOWN: &str = "SELECT v FROM t WHERE id = 1";
/// The panic message of [`Op::PanickingInteraction`].
const USER_PANIC: &str = "interaction panicked on purpose";

/// The job under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// `run_interaction`: insert row 2, then select it.
    Interaction,
    /// `run_with_connection`: the same through `conn.cursor()`.
    WithConnection,
    /// `run_query` of row 1.
    Query,
    /// `run_operation` inserting row 2.
    Operation,
    /// `run_interaction` that inserts row 2 and then panics (user code).
    PanickingInteraction,
}

const ALL_OPS: &[Op] = &[
    Op::Interaction,
    Op::WithConnection,
    Op::Query,
    Op::Operation,
];
/// The operations that go through a `Transaction` (and so `Transaction::reopen`).
const TXN_OPS: &[Op] = &[Op::Interaction, Op::Query, Op::Operation];

impl Op {
    /// What the job's Deferred fires with on success, as [`rows_text`] shows it.
    fn success_value(self) -> &'static str {
        match self {
            Op::Interaction | Op::WithConnection | Op::PanickingInteraction => "\"new\"",
            Op::Query => "\"known\"",
            Op::Operation => "()",
        }
    }

    /// True if a successful job leaves row 2 behind.
    fn inserts(self) -> bool {
        self != Op::Query
    }

    /// The step of the operation's first statement.
    fn first_statement(self) -> Step {
        if self == Op::Query {
            Step::Fetch
        } else {
            Step::Execute
        }
    }

    fn start(self, pool: &ConnectionPool) -> Deferred<String> {
        match self {
            Op::Interaction => pool.run_interaction(|txn| {
                txn.execute(INSERT, ())?;
                let rows = txn.execute(SELECT_NEW, ())?.fetchall()?;
                Ok(rows_text(&rows))
            }),
            Op::WithConnection => pool.run_with_connection(|conn| {
                let mut cur = conn.cursor()?;
                cur.execute(INSERT, ())?;
                let rows = cur.execute(SELECT_NEW, ())?.fetchall()?;
                Ok(rows_text(&rows))
            }),
            Op::Query => pool
                .run_query(SELECT_KNOWN, ())
                .add_callback(|rows| rows_text(&rows)),
            Op::Operation => pool
                .run_operation(INSERT, ())
                .add_callback(|()| "()".into()),
            Op::PanickingInteraction => pool.run_interaction(|txn| {
                txn.execute(INSERT, ())?;
                panic!(
                    "{}: {USER_PANIC}",
                    integration_tests::faults::INJECTED_PANIC
                );
            }),
        }
    }
}

/// How the armed step goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Fail,
    Panic,
}

/// The error kind injected at each step in `Fail` mode: a different kind per
/// step, so a case can tell which failure reached the caller.
fn kind_for(step: Step) -> ErrorKind {
    match step {
        Step::Connect | Step::Commit => ErrorKind::OperationalError,
        Step::OpenFun => ErrorKind::ProgrammingError,
        Step::Cursor => ErrorKind::InterfaceError,
        Step::Execute => ErrorKind::IntegrityError,
        Step::Fetch => ErrorKind::DataError,
        Step::Rollback => ErrorKind::InternalError,
        Step::Close => ErrorKind::DatabaseError,
    }
}

fn fault_for(mode: Mode, step: Step) -> Fault {
    match mode {
        Mode::Fail => Fault::Fail(kind_for(step)),
        Mode::Panic => Fault::Panic,
    }
}

/// What the job's Deferred fires with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The operation's value ([`Op::success_value`]).
    Success,
    /// The injected fault at the case's step: its `DbError` (Fail) or a panic
    /// failure naming it (Panic); never `ConnectionLost`.
    Raised,
    /// Rollback cases: `ConnectionLost` whose source is the *primary* failure
    /// (the `DbError` injected at the operation's first statement, or at
    /// commit), whatever made the rollback fail. A failed rollback never
    /// reports the primary failure bare: the connection is discarded.
    LostPrimary,
}

/// One row of the expectation table; the first row matching a case applies.
#[derive(Debug)]
struct Row {
    step: Step,
    /// `None`: both modes.
    mode: Option<Mode>,
    /// `None`: both settings.
    reconnect: Option<bool>,
    ops: &'static [Op],
    outcome: Outcome,
    /// Whether the armed fault is reached (in the job, or at pool close).
    fires: bool,
    /// The warn/error messages logged on the case's threads, in any order.
    logs: &'static [&'static str],
    /// One worker: connections made over the whole case (warm-up, job,
    /// follow-up). One more than the minimum means the job's connection was
    /// replaced.
    connects: u64,
    why: &'static str,
}

#[allow(clippy::too_many_arguments)]
const fn row(
    step: Step,
    mode: Option<Mode>,
    reconnect: Option<bool>,
    ops: &'static [Op],
    outcome: Outcome,
    fires: bool,
    logs: &'static [&'static str],
    connects: u64,
    why: &'static str,
) -> Row {
    Row {
        step,
        mode,
        reconnect,
        ops,
        outcome,
        fires,
        logs,
        connects,
        why,
    }
}

const ANY_MODE: Option<Mode> = None;
const FAIL: Option<Mode> = Some(Mode::Fail);
const PANIC: Option<Mode> = Some(Mode::Panic);
const ANY_RECONNECT: Option<bool> = None;
const NO_RECONNECT: Option<bool> = Some(false);
const RECONNECT: Option<bool> = Some(true);
const NO_LOGS: &[&str] = &[];
const ROLLBACK_FAILED: &[&str] = &["Rollback failed"];
/// `Connection.rollback` logs the failed probe, then `_runInteraction` logs
/// the `ConnectionLost` it raised.
const ROLLBACK_FAILED_TWICE: &[&str] = &["Rollback failed", "Rollback failed"];
const CURSOR_FAILED: &[&str] = &["Cursor creation failed"];

/// The expected outcome of every sweep case. Steps other than connect and
/// openfun meet a connection already made by a warm-up query.
#[rustfmt::skip]
const TABLE: &[Row] = &[
    row(Step::Connect, ANY_MODE, ANY_RECONNECT, ALL_OPS, Outcome::Raised, true, NO_LOGS, 1,
        "1.8: connectionFactory fails outside the try: the error (or panic) as is, no rollback; the follow-up connects afresh"),
    row(Step::OpenFun, ANY_MODE, ANY_RECONNECT, ALL_OPS, Outcome::Raised, true, NO_LOGS, 2,
        "1.2: openfun's error propagates; difference: the new connection is closed, not leaked; the follow-up connects afresh"),
    row(Step::Cursor, ANY_MODE, NO_RECONNECT, TXN_OPS, Outcome::Raised, true, NO_LOGS, 1,
        "1.8: cursor creation fails in Transaction construction, outside the try: no rollback, and the connection is kept \
         (after a panic too: the Transaction is built before finish() runs, pool/job.rs run_interaction_job)"),
    row(Step::Cursor, ANY_MODE, RECONNECT, TXN_OPS, Outcome::Success, true, CURSOR_FAILED, 2,
        "1.4/1.8: reopen logs 'Cursor creation failed', reconnects once and the job proceeds on the new connection"),
    row(Step::Cursor, FAIL, ANY_RECONNECT, &[Op::WithConnection], Outcome::Raised, true, NO_LOGS, 1,
        "1.8: the function raised E, rollback (and probe) succeed: failure E, connection kept"),
    row(Step::Cursor, PANIC, ANY_RECONNECT, &[Op::WithConnection], Outcome::Raised, true, NO_LOGS, 2,
        "difference: a panic is a failure, and the connection that saw it is replaced"),
    row(Step::Execute, ANY_MODE, ANY_RECONNECT, &[Op::Query], Outcome::Success, false, NO_LOGS, 1,
        "run_query executes no row-less statement: the fault is never reached"),
    row(Step::Execute, FAIL, ANY_RECONNECT, ALL_OPS, Outcome::Raised, true, NO_LOGS, 1,
        "1.8: the function raised E, rollback succeeds: failure E"),
    row(Step::Execute, PANIC, ANY_RECONNECT, ALL_OPS, Outcome::Raised, true, NO_LOGS, 2,
        "difference: a panic is a failure, rolled back, and the connection is replaced"),
    row(Step::Fetch, ANY_MODE, ANY_RECONNECT, &[Op::Operation], Outcome::Success, false, NO_LOGS, 1,
        "run_operation runs no statement that returns rows: the fault is never reached"),
    row(Step::Fetch, FAIL, ANY_RECONNECT, ALL_OPS, Outcome::Raised, true, NO_LOGS, 1,
        "1.8: the function raised E (after its insert), rollback undoes the insert: failure E"),
    row(Step::Fetch, PANIC, ANY_RECONNECT, ALL_OPS, Outcome::Raised, true, NO_LOGS, 2,
        "difference: a panic is a failure, rolled back, and the connection is replaced"),
    row(Step::Commit, FAIL, ANY_RECONNECT, ALL_OPS, Outcome::Raised, true, NO_LOGS, 1,
        "1.8: commit raises C: failure C after a successful rollback"),
    row(Step::Commit, PANIC, ANY_RECONNECT, ALL_OPS, Outcome::Raised, true, NO_LOGS, 2,
        "difference: a panicking commit is a failure, rolled back, and the connection is replaced"),
    row(Step::Rollback, ANY_MODE, NO_RECONNECT, ALL_OPS, Outcome::LostPrimary, true, ROLLBACK_FAILED, 2,
        "difference (Twisted keeps the connection and fails with E): the function raised E, rollback raises R without \
         reconnect: 'Rollback failed' once, the connection (its transaction maybe still open) is closed and forgotten, \
         the caller gets ConnectionLost whose source is E; the follow-up connects afresh"),
    row(Step::Rollback, ANY_MODE, RECONNECT, ALL_OPS, Outcome::LostPrimary, true, ROLLBACK_FAILED_TWICE, 2,
        "1.8 + difference (#4404): rollback fails with reconnect: 'Rollback failed' twice, connection dropped, \
         and the caller gets ConnectionLost whose source is E; the next job reconnects"),
    row(Step::Close, ANY_MODE, ANY_RECONNECT, ALL_OPS, Outcome::Success, true, &["Connection close failed"], 1,
        "1.2: close only happens at pool close; its failure (or panic) is logged 'Connection close failed' and swallowed"),
];

fn lookup(step: Step, mode: Mode, reconnect: bool, op: Op) -> &'static Row {
    TABLE
        .iter()
        .find(|r| {
            r.step == step
                && r.mode.is_none_or(|m| m == mode)
                && r.reconnect.is_none_or(|x| x == reconnect)
                && r.ops.contains(&op)
        })
        .unwrap_or_else(|| {
            panic!("TABLE has no row for step={step} mode={mode:?} reconnect={reconnect} op={op:?}")
        })
}

/// A fault to arm for the job under test.
#[derive(Debug, Clone, Copy)]
struct Arm {
    step: Step,
    when: When,
    fault: Fault,
}

/// The first call of `step` after arming gets `fault`.
const fn first(step: Step, fault: Fault) -> Arm {
    Arm {
        step,
        when: When::Nth(1),
        fault,
    }
}

/// One case to run.
#[derive(Debug, Clone)]
struct Case {
    workers: usize,
    reconnect: bool,
    op: Op,
    /// Faults armed after set-up (and warm-up).
    arms: Vec<Arm>,
    /// Run a query first, so the job meets an existing connection.
    warm: bool,
    /// Follow-up queries after the job.
    followups: usize,
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let arms: Vec<String> = self
            .arms
            .iter()
            .map(|a| format!("{}{:?}={:?}", a.step, a.when, a.fault))
            .collect();
        write!(
            f,
            "[workers={} reconnect={} op={:?} faults={}]",
            self.workers,
            self.reconnect,
            self.op,
            arms.join(",")
        )
    }
}

/// What a case must show.
#[derive(Debug)]
struct Expect {
    outcome: Outcome,
    /// For `Raised`: the step (and mode) whose fault the job reports. For
    /// `LostPrimary`: the step of the primary failure (a `Fail`).
    step: Step,
    mode: Mode,
    /// The reported error is the severed-connection error.
    severed: bool,
    /// `(step, n)`: the faults armed at `step` were applied `n` times.
    fires: Vec<(Step, u64)>,
    logs: &'static [&'static str],
    /// Connections made over the case (checked with one worker only).
    connects: Option<u64>,
    /// Whether each follow-up query succeeds.
    followups: Vec<bool>,
    /// Whether row 2 is in the database at the end.
    row2: bool,
    why: &'static str,
}

/// What a case observed.
#[derive(Debug, Default)]
struct Observed {
    setup_error: Option<String>,
    /// How many times the job's Deferred fired (callback or errback).
    job_fires: u32,
    job: Option<Result<String, Failure>>,
    followups: Vec<Result<String, Failure>>,
    closed: bool,
    workers_after_close: usize,
    outstanding_after_close: usize,
    live_after_close: usize,
    timed_out: bool,
}

/// What a case leaves behind to check.
struct Ran {
    obs: Observed,
    module: Arc<FaultModule>,
    /// Every row, read back after the pool closed.
    data: String,
    /// The messages of the warn and error events logged on the case's
    /// threads (the test thread and the pool's threads), sorted.
    logged: Vec<String>,
}

fn rows_text(rows: &[DbRow]) -> String {
    rows.iter()
        .map(|r| {
            r.values()
                .iter()
                // Text quoted, so the expected strings tell "1" from 1.
                .map(|v| match v {
                    adbapi::Value::Text(s) => format!("{s:?}"),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect::<Vec<_>>()
        .join(";")
}

fn plain_connect(path: &Path) -> dbapi::DbConnection {
    dbapi::connect("sqlite3", &[path.to_str().expect("utf-8 path").into()], &[])
        .expect("plain sqlite3 connect")
}

/// Creates the table with the known row through a plain `sqlite3`
/// connection, committed before the pool exists.
fn set_up_db(path: &Path) {
    let conn = plain_connect(path);
    conn.execute(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)",
        (),
    )
    .expect("create table");
    conn.execute("INSERT INTO t (id, v) VALUES (1, 'known')", ())
        .expect("insert the known row");
    conn.commit().expect("commit the known row");
    conn.close().expect("close the set-up connection");
}

/// Every row, through a separate plain `sqlite3` connection.
fn read_back(path: &Path) -> String {
    let conn = plain_connect(path);
    let rows = conn
        .execute("SELECT id, v FROM t ORDER BY id", ())
        .expect("select everything")
        .fetchall()
        .expect("fetch everything");
    conn.close().expect("close the read-back connection");
    rows_text(&rows)
}

async fn scenario(
    pool: ConnectionPool,
    module: Arc<FaultModule>,
    case: Case,
    obs: Rc<RefCell<Observed>>,
) -> Result<(), Failure> {
    if case.warm {
        pool.run_query("SELECT count(*) FROM t", ())
            .await
            .map_err(|f| f.context("warm-up query"))?;
    }
    for a in &case.arms {
        module.arm(a.step, a.when, a.fault);
    }
    let o = Rc::clone(&obs);
    case.op
        .start(&pool)
        .add_both(move |r| {
            let mut o = o.borrow_mut();
            o.job_fires += 1;
            o.job = Some(r);
            Ok(())
        })
        .await?;
    // The rest is disarmed so the follow-ups meet a healthy driver (a severed
    // connection stays severed); a close fault the job did not reach is kept
    // for pool close.
    let close_fired = module.fired(Step::Close) > 0;
    module.disarm();
    if !close_fired {
        for a in case.arms.iter().filter(|a| a.step == Step::Close) {
            module.arm(a.step, a.when, a.fault);
        }
    }
    for _ in 0..case.followups {
        let r = pool
            .run_query(SELECT_KNOWN, ())
            .await
            .map(|rows| rows_text(&rows));
        obs.borrow_mut().followups.push(r);
    }
    pool.close().await?;
    let mut o = obs.borrow_mut();
    o.closed = true;
    o.workers_after_close = pool.threadpool().workers();
    o.outstanding_after_close = pool.reactor().loop_queue().outstanding();
    o.live_after_close = module.live();
    Ok(())
}

/// Which real driver the fault module wraps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DbKind {
    Sqlite,
    Postgres,
    /// MariaDB through `pymysql` (InnoDB tables, `autocommit=0`).
    Mysql,
}

/// A case's own database: a file for SQLite; a fresh schema (selected with
/// psycopg2's `options="-c search_path=..."`) for PostgreSQL, a fresh
/// database (named in the URL) for MariaDB, dropped afterwards.
struct CaseDb {
    kind: DbKind,
    _dir: Option<TempDir>,
    path: std::path::PathBuf,
    /// The PostgreSQL schema or the MariaDB database.
    schema: String,
}

impl CaseDb {
    fn new(kind: DbKind, tag: &str) -> CaseDb {
        match kind {
            DbKind::Sqlite => {
                let dir = TempDir::new(tag);
                let path = dir.path().join("faults.db");
                set_up_db(&path);
                CaseDb {
                    kind,
                    _dir: Some(dir),
                    path,
                    schema: String::new(),
                }
            }
            DbKind::Postgres => {
                let schema = format!(
                    "f_{}",
                    unique_name("c").replace(['-', '.'], "_").to_lowercase()
                );
                let admin = integration_tests::pg::direct_to(&integration_tests::pg::url());
                admin.set_autocommit(true).expect("autocommit");
                for sql in [
                    format!("CREATE SCHEMA {schema}"),
                    format!("CREATE TABLE {schema}.t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)"),
                    format!("INSERT INTO {schema}.t (id, v) VALUES (1, 'known')"),
                ] {
                    admin
                        .execute(&sql, ())
                        .unwrap_or_else(|e| panic!("{sql}: {e}"));
                }
                CaseDb {
                    kind,
                    _dir: None,
                    path: std::path::PathBuf::new(),
                    schema,
                }
            }
            DbKind::Mysql => {
                let db = format!(
                    "f_{}",
                    unique_name("c").replace(['-', '.'], "_").to_lowercase()
                );
                let admin = integration_tests::mysql::direct();
                // The known row is committed before the pool exists; the
                // table is InnoDB (MariaDB's default engine), so the pool's
                // rollbacks undo what the job did, as on the other backends.
                for sql in [
                    format!("CREATE DATABASE {db}"),
                    format!(
                        "CREATE TABLE {db}.t (id INTEGER PRIMARY KEY, v TEXT NOT NULL) ENGINE=InnoDB"
                    ),
                    format!("INSERT INTO {db}.t (id, v) VALUES (1, 'known')"),
                ] {
                    integration_tests::mysql::exec(&admin, &sql, ());
                }
                CaseDb {
                    kind,
                    _dir: None,
                    path: std::path::PathBuf::new(),
                    schema: db,
                }
            }
        }
    }

    /// MariaDB: the URL of the case's database.
    fn mysql_url(&self) -> String {
        integration_tests::mysql::with_database(&integration_tests::mysql::url(), &self.schema)
    }

    /// The real module the fault module wraps.
    fn inner(&self) -> Arc<dyn dbapi::DbApiModule> {
        let name = match self.kind {
            DbKind::Sqlite => "sqlite3",
            DbKind::Postgres => "psycopg2",
            DbKind::Mysql => "pymysql",
        };
        dbapi::lookup_module(name).expect("built-in module")
    }

    fn pool(&self, module: &str) -> adbapi::ConnectionPoolBuilder {
        match self.kind {
            DbKind::Sqlite => {
                ConnectionPool::builder(module).arg(self.path.to_str().expect("utf-8 path"))
            }
            DbKind::Postgres => ConnectionPool::builder(module)
                .arg(integration_tests::pg::url())
                .kwarg("options", format!("-c search_path={}", self.schema)),
            DbKind::Mysql => ConnectionPool::builder(module).arg(self.mysql_url()),
        }
    }

    /// Every row, through a separate plain connection.
    fn read_back(&self) -> String {
        match self.kind {
            DbKind::Sqlite => read_back(&self.path),
            DbKind::Postgres => {
                let admin = integration_tests::pg::direct_to(&integration_tests::pg::url());
                let rows = integration_tests::pg::exec(
                    &admin,
                    &format!("SELECT id, v FROM {}.t ORDER BY id", self.schema),
                    (),
                );
                rows_text(&rows)
            }
            DbKind::Mysql => {
                let conn = integration_tests::mysql::direct_to(&self.mysql_url());
                let rows =
                    integration_tests::mysql::exec(&conn, "SELECT id, v FROM t ORDER BY id", ());
                drop(conn.close());
                rows_text(&rows)
            }
        }
    }
}

impl Drop for CaseDb {
    fn drop(&mut self) {
        if self.kind == DbKind::Postgres {
            let admin = integration_tests::pg::direct_to(&integration_tests::pg::url());
            let _ = admin.set_autocommit(true);
            let _ = admin.execute(
                &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema),
                (),
            );
        }
        if self.kind == DbKind::Mysql {
            // The pool is closed by now, so no session holds a lock on it.
            let admin = integration_tests::mysql::direct();
            let _ = admin.execute(&format!("DROP DATABASE IF EXISTS {}", self.schema), ());
            drop(admin.close());
        }
    }
}

/// Runs one case on its own reactor, pool (named `tag`, and so are its
/// threads) and database.
fn run_case(case: &Case, tag: &str, kind: DbKind) -> Ran {
    let db = CaseDb::new(kind, tag);
    let module = FaultModule::register_wrapping(tag, db.inner());
    let logs = LogCapture::start();
    logs.watch_threads(tag);

    let reactor = Reactor::new().expect("a reactor");
    let pool = db
        .pool(tag)
        .min(case.workers)
        .max(case.workers)
        .name(tag)
        .reconnect(case.reconnect)
        .openfun(module.openfun())
        .reactor(reactor.clone())
        .build()
        .expect("build the pool");

    let obs = Rc::new(RefCell::new(Observed::default()));
    let timed_out = Rc::new(Cell::new(false));
    let (r, t) = (reactor.clone(), Rc::clone(&timed_out));
    let net = reactor.call_later(SAFETY_NET, move || {
        t.set(true);
        let _ = r.stop();
    });
    let (r, o, m, c, p) = (
        reactor.clone(),
        Rc::clone(&obs),
        Arc::clone(&module),
        case.clone(),
        pool.clone(),
    );
    reactor.call_when_running(move || {
        let stopper = r.clone();
        let o2 = Rc::clone(&o);
        let _ = r
            .ensure_deferred(scenario(p, m, c, o))
            .add_both(move |res| {
                if let Err(f) = res {
                    o2.borrow_mut().setup_error = Some(f.to_string());
                }
                let _ = net.cancel();
                let _ = stopper.stop();
                Ok(())
            });
    });
    reactor.run().expect("reactor.run");
    if !obs.borrow().closed {
        // The safety net fired: close anyway so no thread outlives the case.
        drop(pool.close());
    }
    drop(pool);
    let data = db.read_back();
    let mut logged: Vec<String> = logs
        .events()
        .into_iter()
        .filter(|e| e.level <= Level::WARN)
        .map(|e| e.message)
        .collect();
    logged.sort();
    let mut obs = obs.take();
    obs.timed_out = timed_out.get();
    Ran {
        obs,
        module,
        data,
        logged,
    }
}

/// Checks a failure against the expected injected error or panic.
fn check_injected(
    f: &Failure,
    tag: &str,
    step: Step,
    mode: Mode,
    severed: bool,
) -> Result<(), String> {
    let msg = f.error_message();
    if mode == Mode::Panic {
        if !f.is_panic() || !msg.contains(tag) || !msg.contains(&format!("at {step} #")) {
            return Err(format!("expected the panic injected at {step}, got {f:?}"));
        }
        return Ok(());
    }
    let Some(e) = f.check::<DbError>() else {
        return Err(format!("expected a DbError from {step}, got {f:?}"));
    };
    let (kind, what) = if severed {
        (ErrorKind::OperationalError, "severed")
    } else {
        (kind_for(step), "injected failure")
    };
    if e.kind() != kind
        || !e.message().contains(tag)
        || !e.message().contains(what)
        || !e.message().contains(&format!("at {step}"))
    {
        return Err(format!(
            "expected the {kind} {what} at {step}, got {} ({f:?})",
            e.kind()
        ));
    }
    Ok(())
}

fn check_outcome(case: &Case, tag: &str, o: &Observed, x: &Expect) -> Result<(), String> {
    let lost = |f: &Failure| f.check::<ConnectionLost>().is_some();
    if case.op == Op::PanickingInteraction {
        // The panic is the interaction's own, not an injected one.
        return match &o.job {
            Some(Err(f)) if f.is_panic() && f.error_message().contains(USER_PANIC) => Ok(()),
            other => Err(format!("expected the interaction's panic, got {other:?}")),
        };
    }
    match (&o.job, x.outcome) {
        (None, _) => Err("the job's Deferred never fired".to_owned()),
        (Some(Ok(v)), Outcome::Success) if v == case.op.success_value() => Ok(()),
        (Some(Ok(v)), want) => Err(format!(
            "succeeded with {v:?}, expected {want:?} ({:?} on success)",
            case.op.success_value()
        )),
        (Some(Err(f)), Outcome::Success) => Err(format!("failed with {f:?}, expected success")),
        (Some(Err(f)), Outcome::Raised) if lost(f) => Err(format!(
            "expected the error itself, got ConnectionLost {f:?}"
        )),
        (Some(Err(f)), Outcome::LostPrimary) if !lost(f) => {
            Err(format!("expected ConnectionLost, got {f:?}"))
        }
        (Some(Err(f)), _) => check_injected(f, tag, x.step, x.mode, x.severed),
    }
}

/// Checks everything a case must satisfy, adding the problems found.
fn check_case(case: &Case, tag: &str, ran: &Ran, x: &Expect, problems: &mut Vec<String>) {
    let before = problems.len();
    let (o, module) = (&ran.obs, &ran.module);
    let mut fail = |what: String| problems.push(format!("{case} {what}"));
    if o.timed_out {
        fail(format!(
            "did not finish within {SAFETY_NET:?} (a Deferred never fired?)"
        ));
    }
    if let Some(e) = &o.setup_error {
        fail(format!("scenario failed outside the job under test: {e}"));
    }
    // 1. exactly once, with the expected outcome
    if o.job_fires != 1 {
        fail(format!(
            "job Deferred fired {} times, expected exactly once",
            o.job_fires
        ));
    }
    if let Err(e) = check_outcome(case, tag, o, x) {
        fail(format!("outcome: {e}"));
    }
    // 2. the faults fired as planned
    for &(step, n) in &x.fires {
        if module.fired(step) != n {
            fail(format!(
                "the {step} fault was applied {} times, expected {n}",
                module.fired(step)
            ));
        }
    }
    // 3. the log
    let mut want: Vec<String> = x.logs.iter().map(|s| (*s).to_owned()).collect();
    want.sort();
    if ran.logged != want {
        fail(format!(
            "logged {:?} (warn/error), expected {want:?}",
            ran.logged
        ));
    }
    // 4. the worker survived (or, for a dead connection, keeps failing)
    let got: Vec<bool> = o.followups.iter().map(Result::is_ok).collect();
    if got != x.followups {
        fail(format!(
            "follow-ups succeeded {got:?}, expected {:?}: {:?}",
            x.followups, o.followups
        ));
    }
    for r in &o.followups {
        match r {
            Ok(v) if v != "\"known\"" => fail(format!("follow-up returned {v:?}")),
            Ok(_) => {}
            // A dead connection fails at cursor creation with the driver's
            // connection-lost error, never silently.
            Err(f) => {
                if let Err(e) = check_injected(f, tag, Step::Cursor, Mode::Fail, true) {
                    fail(format!("follow-up: {e}"));
                }
            }
        }
    }
    // 5. nothing leaked; connections closed where they were made
    if !o.closed {
        fail("pool.close() never completed".into());
    }
    if o.workers_after_close != 0 {
        fail(format!(
            "{} worker thread(s) alive after pool.close()",
            o.workers_after_close
        ));
    }
    if o.outstanding_after_close != 0 {
        fail(format!(
            "{} thread-pool job(s) still outstanding on the reactor after pool.close()",
            o.outstanding_after_close
        ));
    }
    if o.live_after_close != 0 || module.live() != 0 {
        fail(format!(
            "{} connection(s) leaked after pool.close()",
            module.live()
        ));
    }
    if case.workers == 1 {
        if let Some(n) = x.connects {
            if module.connects() != n {
                fail(format!(
                    "made {} connection(s), expected {n}",
                    module.connects()
                ));
            }
        }
    }
    for c in module.connections() {
        let opened = c.opened_on_name.clone().unwrap_or_default();
        if !opened.starts_with("PoolThread-") {
            fail(format!(
                "connection #{} opened on {opened:?}, not a pool worker",
                c.id
            ));
        }
        if c.close_calls != 1 {
            fail(format!(
                "connection #{} closed {} times, expected once",
                c.id, c.close_calls
            ));
        }
        match &c.closed_on {
            Some((tid, _)) if *tid == c.opened_on => {}
            other => fail(format!(
                "connection #{} opened on {opened:?} but closed on {other:?}",
                c.id
            )),
        }
    }
    // 6. the data
    let mut expected_data = String::from("1,\"known\"");
    if x.row2 {
        expected_data.push_str(";2,\"new\"");
    }
    if ran.data != expected_data {
        fail(format!(
            "database holds {:?}, expected {expected_data:?}",
            ran.data
        ));
    }
    if problems.len() > before {
        problems.push(format!("    (expected: {})", x.why));
    }
}

/// Runs the sweep for one pool size and one `cp_reconnect` setting.
fn sweep(workers: usize, reconnect: bool, kind: DbKind) {
    quiet_injected_panics();
    let mut problems = Vec::new();
    let mut cases = 0;
    for step in Step::ALL {
        for mode in [Mode::Fail, Mode::Panic] {
            for &op in ALL_OPS {
                let row = lookup(step, mode, reconnect, op);
                let primary = op.first_statement();
                let mut arms = Vec::new();
                let mut fires = vec![(step, u64::from(row.fires))];
                if step == Step::Rollback {
                    // A rollback only happens after a failure: the
                    // operation's first statement fails too.
                    arms.push(first(primary, Fault::Fail(kind_for(primary))));
                    fires.push((primary, 1));
                }
                arms.push(first(step, fault_for(mode, step)));
                let case = Case {
                    workers,
                    reconnect,
                    op,
                    arms,
                    warm: !matches!(step, Step::Connect | Step::OpenFun),
                    followups: 1,
                };
                let expect = Expect {
                    outcome: row.outcome,
                    step: if row.outcome == Outcome::Raised {
                        step
                    } else {
                        primary
                    },
                    mode: if row.outcome == Outcome::Raised {
                        mode
                    } else {
                        Mode::Fail
                    },
                    severed: false,
                    fires,
                    logs: row.logs,
                    connects: Some(row.connects),
                    followups: vec![true],
                    row2: row.outcome == Outcome::Success && op.inserts(),
                    why: row.why,
                };
                let tag = format!(
                    "{}-{kind:?}-w{workers}-r{}-{step}-{mode:?}-{op:?}",
                    unique_name("faults"),
                    u8::from(reconnect)
                );
                let ran = run_case(&case, &tag, kind);
                check_case(&case, &tag, &ran, &expect, &mut problems);
                cases += 1;
            }
        }
    }
    assert_eq!(cases, 64, "cases per sweep");
    assert!(
        problems.is_empty(),
        "{} problem(s) in the fault sweep ({kind:?}, workers={workers}, reconnect={reconnect}):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn sweep_one_worker_no_reconnect() {
    sweep(1, false, DbKind::Sqlite);
}

#[test]
fn sweep_one_worker_reconnect() {
    sweep(1, true, DbKind::Sqlite);
}

#[test]
fn sweep_two_workers_no_reconnect() {
    sweep(2, false, DbKind::Sqlite);
}

#[test]
fn sweep_two_workers_reconnect() {
    sweep(2, true, DbKind::Sqlite);
}

/// The same sweep with the fault module wrapping the PostgreSQL driver.
#[test]
#[cfg_attr(
    not(pg_available),
    ignore = "SKIPPED: no PostgreSQL server; set ADBAPI_PG_URL (eval \"$(scripts/pg-test-server start)\")"
)]
fn sweep_one_worker_no_reconnect_postgres() {
    let _server = integration_tests::pg::sharing_server();
    sweep(1, false, DbKind::Postgres);
}

/// As above, with `cp_reconnect`.
#[test]
#[cfg_attr(
    not(pg_available),
    ignore = "SKIPPED: no PostgreSQL server; set ADBAPI_PG_URL (eval \"$(scripts/pg-test-server start)\")"
)]
fn sweep_one_worker_reconnect_postgres() {
    let _server = integration_tests::pg::sharing_server();
    sweep(1, true, DbKind::Postgres);
}

/// Two workers, without `cp_reconnect`, on PostgreSQL.
#[test]
#[cfg_attr(
    not(pg_available),
    ignore = "SKIPPED: no PostgreSQL server; set ADBAPI_PG_URL (eval \"$(scripts/pg-test-server start)\")"
)]
fn sweep_two_workers_no_reconnect_postgres() {
    let _server = integration_tests::pg::sharing_server();
    sweep(2, false, DbKind::Postgres);
}

/// Two workers, with `cp_reconnect`, on PostgreSQL.
#[test]
#[cfg_attr(
    not(pg_available),
    ignore = "SKIPPED: no PostgreSQL server; set ADBAPI_PG_URL (eval \"$(scripts/pg-test-server start)\")"
)]
fn sweep_two_workers_reconnect_postgres() {
    let _server = integration_tests::pg::sharing_server();
    sweep(2, true, DbKind::Postgres);
}

/// The same sweep with the fault module wrapping the MySQL/MariaDB driver.
#[test]
#[cfg_attr(
    not(mysql_available),
    ignore = "SKIPPED: no MySQL/MariaDB server; set ADBAPI_MYSQL_URL (eval \"$(scripts/mysql-test-server start)\")"
)]
fn sweep_one_worker_no_reconnect_mysql() {
    sweep(1, false, DbKind::Mysql);
}

/// As above, with `cp_reconnect`.
#[test]
#[cfg_attr(
    not(mysql_available),
    ignore = "SKIPPED: no MySQL/MariaDB server; set ADBAPI_MYSQL_URL (eval \"$(scripts/mysql-test-server start)\")"
)]
fn sweep_one_worker_reconnect_mysql() {
    sweep(1, true, DbKind::Mysql);
}

/// Two workers, without `cp_reconnect`, on MariaDB.
#[test]
#[cfg_attr(
    not(mysql_available),
    ignore = "SKIPPED: no MySQL/MariaDB server; set ADBAPI_MYSQL_URL (eval \"$(scripts/mysql-test-server start)\")"
)]
fn sweep_two_workers_no_reconnect_mysql() {
    sweep(2, false, DbKind::Mysql);
}

/// Two workers, with `cp_reconnect`, on MariaDB.
#[test]
#[cfg_attr(
    not(mysql_available),
    ignore = "SKIPPED: no MySQL/MariaDB server; set ADBAPI_MYSQL_URL (eval \"$(scripts/mysql-test-server start)\")"
)]
fn sweep_two_workers_reconnect_mysql() {
    sweep(2, true, DbKind::Mysql);
}

/// The table covers every combination the sweep asks for, and no row is
/// dead.
#[test]
fn table_is_complete_and_every_row_is_used() {
    let mut used = vec![false; TABLE.len()];
    for step in Step::ALL {
        for mode in [Mode::Fail, Mode::Panic] {
            for reconnect in [false, true] {
                for &op in ALL_OPS {
                    let r = lookup(step, mode, reconnect, op);
                    if let Some(i) = TABLE.iter().position(|x| std::ptr::eq(x, r)) {
                        used[i] = true;
                    }
                }
            }
        }
    }
    let unused: Vec<&Row> = TABLE
        .iter()
        .zip(&used)
        .filter(|(_, u)| !**u)
        .map(|(r, _)| r)
        .collect();
    assert!(unused.is_empty(), "rows never used: {unused:?}");
}

/// A case of the severed-connection table: the connection dies for good at
/// `step` during `run_interaction` (one worker), then three follow-up
/// queries run.
#[derive(Debug)]
struct SeverRow {
    step: Step,
    reconnect: bool,
    outcome: Outcome,
    followups_succeed: bool,
    logs: &'static [&'static str],
    connects: u64,
    why: &'static str,
}

/// Outcomes for a connection that dies (`Fault::Sever`). `Raised` and
/// `LostPrimary` refer to the severed-connection `OperationalError`.
#[rustfmt::skip]
const SEVERED: &[SeverRow] = &[
    SeverRow { step: Step::Cursor, reconnect: false, outcome: Outcome::Raised, followups_succeed: false,
        logs: NO_LOGS, connects: 1,
        why: "weakness 4: cursor creation keeps failing on the dead connection, no rollback, no reconnect: \
              every later job on this worker fails until the pool is closed" },
    SeverRow { step: Step::Cursor, reconnect: true, outcome: Outcome::Success, followups_succeed: true,
        logs: CURSOR_FAILED, connects: 2,
        why: "1.9 (1): reopen reconnects and the job itself succeeds" },
    SeverRow { step: Step::Execute, reconnect: false, outcome: Outcome::LostPrimary, followups_succeed: true,
        logs: ROLLBACK_FAILED, connects: 2,
        why: "difference (Twisted's weakness 4 kept the dead connection): the rollback fails and is logged once, the \
              connection is discarded without reconnect too, the job gets ConnectionLost around the error, the next job reconnects" },
    SeverRow { step: Step::Execute, reconnect: true, outcome: Outcome::LostPrimary, followups_succeed: true,
        logs: ROLLBACK_FAILED_TWICE, connects: 2,
        why: "1.9 (2): the job that meets the dead connection fails (ConnectionLost around the error here), the next reconnects" },
    SeverRow { step: Step::Fetch, reconnect: false, outcome: Outcome::LostPrimary, followups_succeed: true,
        logs: ROLLBACK_FAILED, connects: 2,
        why: "difference, after the insert ran: the connection is discarded with the insert uncommitted, the next job reconnects" },
    SeverRow { step: Step::Fetch, reconnect: true, outcome: Outcome::LostPrimary, followups_succeed: true,
        logs: ROLLBACK_FAILED_TWICE, connects: 2,
        why: "1.9 (2), after the insert ran: the connection is dropped with the insert uncommitted" },
    SeverRow { step: Step::Commit, reconnect: false, outcome: Outcome::LostPrimary, followups_succeed: true,
        logs: ROLLBACK_FAILED, connects: 2,
        why: "difference at commit: the failed rollback discards the connection, the next job reconnects" },
    SeverRow { step: Step::Commit, reconnect: true, outcome: Outcome::LostPrimary, followups_succeed: true,
        logs: ROLLBACK_FAILED_TWICE, connects: 2,
        why: "1.9 (2) at commit" },
];

#[test]
fn severed_connection() {
    severed_connection_on(DbKind::Sqlite);
}

/// The severed-connection table with the PostgreSQL driver underneath.
#[test]
#[cfg_attr(
    not(pg_available),
    ignore = "SKIPPED: no PostgreSQL server; set ADBAPI_PG_URL (eval \"$(scripts/pg-test-server start)\")"
)]
fn severed_connection_postgres() {
    let _server = integration_tests::pg::sharing_server();
    severed_connection_on(DbKind::Postgres);
}

/// The severed-connection table with the MySQL/MariaDB driver underneath.
#[test]
#[cfg_attr(
    not(mysql_available),
    ignore = "SKIPPED: no MySQL/MariaDB server; set ADBAPI_MYSQL_URL (eval \"$(scripts/mysql-test-server start)\")"
)]
fn severed_connection_mysql() {
    severed_connection_on(DbKind::Mysql);
}

fn severed_connection_on(kind: DbKind) {
    quiet_injected_panics();
    let mut problems = Vec::new();
    for row in SEVERED {
        let case = Case {
            workers: 1,
            reconnect: row.reconnect,
            op: Op::Interaction,
            arms: vec![first(row.step, Fault::Sever)],
            warm: true,
            followups: 3,
        };
        let expect = Expect {
            outcome: row.outcome,
            step: row.step,
            mode: Mode::Fail,
            severed: true,
            fires: vec![(row.step, 1)],
            logs: row.logs,
            connects: Some(row.connects),
            followups: vec![row.followups_succeed; 3],
            row2: row.outcome == Outcome::Success,
            why: row.why,
        };
        let tag = format!(
            "{}-{kind:?}-severed-r{}-{}",
            unique_name("faults"),
            u8::from(row.reconnect),
            row.step
        );
        let ran = run_case(&case, &tag, kind);
        check_case(&case, &tag, &ran, &expect, &mut problems);
    }
    assert!(
        problems.is_empty(),
        "{} problem(s) with severed connections:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Two faults in one job, and a panicking interaction (one worker).
#[derive(Debug)]
struct Compound {
    reconnect: bool,
    op: Op,
    arms: &'static [Arm],
    outcome: Outcome,
    step: Step,
    mode: Mode,
    logs: &'static [&'static str],
    connects: u64,
    row2: bool,
    why: &'static str,
}

const FAIL_CURSOR: Arm = first(Step::Cursor, Fault::Fail(ErrorKind::InterfaceError));
const FAIL_EXECUTE: Arm = first(Step::Execute, Fault::Fail(ErrorKind::IntegrityError));
const FAIL_COMMIT: Arm = first(Step::Commit, Fault::Fail(ErrorKind::OperationalError));
const FAIL_ROLLBACK: Arm = first(Step::Rollback, Fault::Fail(ErrorKind::InternalError));

#[rustfmt::skip]
const COMPOUND: &[Compound] = &[
    Compound { reconnect: true, op: Op::Interaction,
        arms: &[FAIL_CURSOR, first(Step::Connect, Fault::Fail(ErrorKind::OperationalError))],
        outcome: Outcome::Raised, step: Step::Connect, mode: Mode::Fail, logs: CURSOR_FAILED, connects: 2, row2: false,
        why: "1.4: the reconnect after a failed cursor fails to connect: that error propagates, no rollback; the follow-up connects" },
    Compound { reconnect: true, op: Op::Interaction,
        arms: &[FAIL_CURSOR, first(Step::OpenFun, Fault::Panic)],
        outcome: Outcome::Raised, step: Step::OpenFun, mode: Mode::Panic, logs: CURSOR_FAILED, connects: 3, row2: false,
        why: "1.4: the reconnect's openfun panics: a panic failure; that new connection is closed; the follow-up connects" },
    Compound { reconnect: true, op: Op::Interaction,
        arms: &[FAIL_CURSOR, Arm { step: Step::Cursor, when: When::Nth(2), fault: Fault::Fail(ErrorKind::InterfaceError) }],
        outcome: Outcome::Raised, step: Step::Cursor, mode: Mode::Fail, logs: CURSOR_FAILED, connects: 2, row2: false,
        why: "1.4: a second cursor failure after reconnecting propagates; the new connection serves the follow-up" },
    Compound { reconnect: true, op: Op::Interaction,
        arms: &[FAIL_EXECUTE, first(Step::Fetch, Fault::Fail(ErrorKind::DataError))],
        outcome: Outcome::LostPrimary, step: Step::Execute, mode: Mode::Fail, logs: ROLLBACK_FAILED_TWICE, connects: 2, row2: false,
        why: "1.3: the rollback succeeds but the good_sql probe fails: ConnectionLost around E, connection dropped" },
    Compound { reconnect: true, op: Op::Interaction,
        arms: &[FAIL_EXECUTE, first(Step::Commit, Fault::Panic)],
        outcome: Outcome::LostPrimary, step: Step::Execute, mode: Mode::Fail, logs: ROLLBACK_FAILED_TWICE, connects: 2, row2: false,
        why: "1.3: the probe's commit panics: treated as a failed probe" },
    Compound { reconnect: true, op: Op::Interaction,
        arms: &[FAIL_COMMIT, FAIL_ROLLBACK],
        outcome: Outcome::LostPrimary, step: Step::Commit, mode: Mode::Fail, logs: ROLLBACK_FAILED_TWICE, connects: 2, row2: false,
        why: "1.8: commit fails, then rollback fails with reconnect: the connection and its open transaction are dropped" },
    Compound { reconnect: false, op: Op::Interaction,
        arms: &[FAIL_COMMIT, FAIL_ROLLBACK],
        outcome: Outcome::LostPrimary, step: Step::Commit, mode: Mode::Fail, logs: ROLLBACK_FAILED, connects: 2, row2: false,
        why: "difference, fixes twisted#4664: commit and rollback both fail without reconnect; the connection and the failed \
              job's open transaction are discarded (ConnectionLost around C), so the follow-up query's commit on a fresh \
              connection does not make the failed job's insert durable" },
    Compound { reconnect: true, op: Op::Interaction,
        arms: &[FAIL_CURSOR, first(Step::Close, Fault::Panic)],
        outcome: Outcome::Success, step: Step::Cursor, mode: Mode::Fail,
        logs: &["Connection close failed", "Cursor creation failed"], connects: 2, row2: true,
        why: "1.2/1.4: closing the broken connection while reconnecting panics: logged and swallowed, the job proceeds" },
    Compound { reconnect: false, op: Op::Interaction,
        arms: &[first(Step::Execute, Fault::Panic), first(Step::Close, Fault::Fail(ErrorKind::DatabaseError))],
        outcome: Outcome::Raised, step: Step::Execute, mode: Mode::Panic, logs: &["Connection close failed"], connects: 2, row2: false,
        why: "difference: the connection that saw a panic is replaced; its close fails: logged and swallowed" },
    Compound { reconnect: false, op: Op::PanickingInteraction, arms: &[],
        outcome: Outcome::Raised, step: Step::Execute, mode: Mode::Panic, logs: NO_LOGS, connects: 2, row2: false,
        why: "difference: a panicking interaction is a failure, rolled back, and the connection is replaced" },
    Compound { reconnect: true, op: Op::PanickingInteraction, arms: &[],
        outcome: Outcome::Raised, step: Step::Execute, mode: Mode::Panic, logs: NO_LOGS, connects: 2, row2: false,
        why: "difference: a panicking interaction is a failure, rolled back (and probed), and the connection is replaced" },
];

#[test]
fn compound_faults() {
    compound_faults_on(DbKind::Sqlite);
}

/// The compound-fault table with the PostgreSQL driver underneath.
#[test]
#[cfg_attr(
    not(pg_available),
    ignore = "SKIPPED: no PostgreSQL server; set ADBAPI_PG_URL (eval \"$(scripts/pg-test-server start)\")"
)]
fn compound_faults_postgres() {
    let _server = integration_tests::pg::sharing_server();
    compound_faults_on(DbKind::Postgres);
}

/// The compound-fault table with the MySQL/MariaDB driver underneath.
#[test]
#[cfg_attr(
    not(mysql_available),
    ignore = "SKIPPED: no MySQL/MariaDB server; set ADBAPI_MYSQL_URL (eval \"$(scripts/mysql-test-server start)\")"
)]
fn compound_faults_mysql() {
    compound_faults_on(DbKind::Mysql);
}

fn compound_faults_on(kind: DbKind) {
    quiet_injected_panics();
    let mut problems = Vec::new();
    for row in COMPOUND {
        let case = Case {
            workers: 1,
            reconnect: row.reconnect,
            op: row.op,
            arms: row.arms.to_vec(),
            warm: true,
            followups: 1,
        };
        let expect = Expect {
            outcome: row.outcome,
            step: row.step,
            mode: row.mode,
            severed: false,
            fires: Step::ALL
                .iter()
                .map(|&s| (s, row.arms.iter().filter(|a| a.step == s).count() as u64))
                .collect(),
            logs: row.logs,
            connects: Some(row.connects),
            followups: vec![true],
            row2: row.row2,
            why: row.why,
        };
        let tag = format!("{}-{kind:?}-compound", unique_name("faults"));
        let ran = run_case(&case, &tag, kind);
        check_case(&case, &tag, &ran, &expect, &mut problems);
    }
    assert!(
        problems.is_empty(),
        "{} problem(s) with compound faults:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

// ---------------------------------------------------------------------
// Cancelling a running job that meets a fault
// ---------------------------------------------------------------------

/// How long the loop thread waits for a worker to reach a point; only a
/// broken test reaches it.
const WAIT: Duration = Duration::from_secs(30);

/// Blocks (bounded) until the module reports an event `want` accepts.
fn wait_event(
    events: &crossbeam_channel::Receiver<FaultEvent>,
    want: impl Fn(&FaultEvent) -> bool,
    what: &str,
) -> Result<FaultEvent, Failure> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match events.recv_deadline(deadline) {
            Ok(e) if want(&e) => return Ok(e),
            Ok(_) => {}
            Err(_) => return Err(Failure::msg(format!("never saw {what}"))),
        }
    }
}

/// A pool of one worker on `module` with the known row set up.
fn one_worker_pool(
    tag: &str,
    path: &Path,
    reactor: &Reactor,
    reconnect: bool,
    module: &Arc<FaultModule>,
) -> ConnectionPool {
    set_up_db(path);
    ConnectionPool::builder(tag)
        .arg(path.to_str().expect("utf-8 path"))
        .min(1)
        .max(1)
        .name(tag)
        .reconnect(reconnect)
        .openfun(module.openfun())
        .reactor(reactor.clone())
        .build()
        .expect("build the pool")
}

fn is_cancelled<T: fmt::Debug>(r: &Result<T, Failure>) -> bool {
    matches!(r, Err(f) if f.check::<CancelledError>().is_some())
}

/// Control: a job cancelled while it runs fails with `CancelledError`, its
/// later statements fail (it is rolled back), and the next job is
/// untouched.
#[test]
fn cancel_while_a_statement_runs_spares_the_next_job() {
    quiet_injected_panics();
    let tag = format!("{}-cancel-fetch", unique_name("faults"));
    let module = FaultModule::register(&tag);
    let events = module.subscribe();
    let dir = TempDir::new(&tag);
    let path = dir.path().join("faults.db");
    let reactor = Reactor::new().expect("a reactor");
    let pool = one_worker_pool(&tag, &path, &reactor, false, &module);
    let m = Arc::clone(&module);
    let (a, b) = run_async(&reactor, SAFETY_NET, move || async move {
        pool.run_query(SELECT_KNOWN, ()).await?;
        // Job A stops inside its insert; the cancel arrives while it waits.
        let gate = m.stall(Step::Execute, When::Nth(1));
        let a = Op::Interaction.start(&pool);
        wait_event(
            &events,
            |e| {
                matches!(
                    e,
                    FaultEvent::Stalled {
                        step: Step::Execute,
                        ..
                    }
                )
            },
            "job A at its insert",
        )?;
        a.cancel();
        let a = a.await;
        wait_event(
            &events,
            |e| matches!(e, FaultEvent::Cancelled { .. }),
            "the interrupt of job A",
        )?;
        gate.open();
        let b = pool
            .run_query(SELECT_KNOWN, ())
            .await
            .map(|r| rows_text(&r));
        pool.close().await?;
        Ok((a, b))
    })
    .expect("the scenario runs");
    assert!(
        is_cancelled(&a),
        "job A: expected CancelledError, got {a:?}"
    );
    assert_eq!(
        b.ok().as_deref(),
        Some("\"known\""),
        "job B, never cancelled, succeeds"
    );
    assert_eq!(read_back(&path), "1,\"known\"", "job A was rolled back");
    assert_eq!(module.live(), 0, "no connection leaked");
}

/// A job whose cursor creation fails (`cp_reconnect` false) is cancelled
/// while it runs: the next job on that worker must not be interrupted.
///
/// Regression: an early return (cursor creation failed) used to skip the
/// detach that clears the connection's `interrupted` flag, so the next,
/// uncancelled job on that worker failed with `57014`.
#[test]
fn cancel_while_cursor_creation_fails_spares_the_next_job() {
    quiet_injected_panics();
    let tag = format!("{}-cancel-cursor", unique_name("faults"));
    let module = FaultModule::register(&tag);
    let events = module.subscribe();
    let dir = TempDir::new(&tag);
    let path = dir.path().join("faults.db");
    let reactor = Reactor::new().expect("a reactor");
    let pool = one_worker_pool(&tag, &path, &reactor, false, &module);
    let m = Arc::clone(&module);
    let (a, b) = run_async(&reactor, SAFETY_NET, move || async move {
        pool.run_query(SELECT_KNOWN, ()).await?;
        m.arm(
            Step::Cursor,
            When::Nth(1),
            Fault::Fail(ErrorKind::InterfaceError),
        );
        let gate = m.stall(Step::Cursor, When::Nth(1));
        let a = pool.run_query(SELECT_KNOWN, ());
        wait_event(
            &events,
            |e| {
                matches!(
                    e,
                    FaultEvent::Stalled {
                        step: Step::Cursor,
                        ..
                    }
                )
            },
            "job A opening its cursor",
        )?;
        a.cancel();
        let a = a.await;
        wait_event(
            &events,
            |e| matches!(e, FaultEvent::Cancelled { .. }),
            "the interrupt of job A",
        )?;
        gate.open();
        let b = pool
            .run_query(SELECT_KNOWN, ())
            .await
            .map(|r| rows_text(&r));
        pool.close().await?;
        Ok((a, b))
    })
    .expect("the scenario runs");
    assert!(
        is_cancelled(&a),
        "job A: expected CancelledError, got {a:?}"
    );
    assert_eq!(
        b.as_ref().ok().map(String::as_str),
        Some("\"known\""),
        "job B was never cancelled, yet got {b:?}"
    );
    assert_eq!(module.live(), 0, "no connection leaked");
}

/// A job whose cursor creation failed and reconnected (`cp_reconnect`) is
/// cancelled while it runs: the cancel must reach the connection the job now
/// runs on, its later statements must fail and nothing it did may be
/// committed.
///
/// Regression: the job's cancel target used to stay on the old connection
/// after `Transaction::reopen` reconnected, so the cancelled job committed.
#[test]
fn cancel_after_reconnect_interrupts_the_new_connection() {
    quiet_injected_panics();
    let tag = format!("{}-cancel-reconnect", unique_name("faults"));
    let module = FaultModule::register(&tag);
    let events = module.subscribe();
    let dir = TempDir::new(&tag);
    let path = dir.path().join("faults.db");
    let reactor = Reactor::new().expect("a reactor");
    let pool = one_worker_pool(&tag, &path, &reactor, true, &module);
    let m = Arc::clone(&module);
    let (inserted_tx, inserted_rx) = crossbeam_channel::bounded::<()>(1);
    let (go_tx, go_rx) = crossbeam_channel::bounded::<()>(1);
    let (a, cancelled_conn, b) = run_async(&reactor, SAFETY_NET, move || async move {
        pool.run_query(SELECT_KNOWN, ()).await?;
        // Connection #1 fails to open a cursor; the job reconnects (#2).
        m.arm(
            Step::Cursor,
            When::Nth(1),
            Fault::Fail(ErrorKind::InterfaceError),
        );
        let a = pool.run_interaction(move |txn| {
            txn.execute(INSERT, ())?;
            let _ = inserted_tx.send(());
            go_rx
                .recv_timeout(WAIT)
                .map_err(|e| Failure::msg(format!("never told to go on: {e}")))?;
            let rows = txn.execute(SELECT_NEW, ())?.fetchall()?;
            Ok(rows_text(&rows))
        });
        inserted_rx
            .recv_timeout(WAIT)
            .map_err(|e| Failure::msg(format!("job A never inserted: {e}")))?;
        a.cancel();
        let a = a.await;
        let cancelled = wait_event(
            &events,
            |e| matches!(e, FaultEvent::Cancelled { .. }),
            "the interrupt of job A",
        )?;
        let _ = go_tx.send(());
        let b = pool
            .run_query(SELECT_KNOWN, ())
            .await
            .map(|r| rows_text(&r));
        pool.close().await?;
        Ok((a, cancelled, b))
    })
    .expect("the scenario runs");
    let data = read_back(&path);
    let mut problems = Vec::new();
    if !is_cancelled(&a) {
        problems.push(format!("job A: expected CancelledError, got {a:?}"));
    }
    if b.as_ref().ok().map(String::as_str) != Some("\"known\"") {
        problems.push(format!("job B: expected Ok(\"known\"), got {b:?}"));
    }
    if cancelled_conn != (FaultEvent::Cancelled { conn: 2 }) {
        problems.push(format!(
            "the cancel reached {cancelled_conn:?}, not connection #2, which job A runs on after reconnecting"
        ));
    }
    if data != "1,\"known\"" {
        problems.push(format!(
            "the cancelled job's insert was committed: the database holds {data:?}"
        ));
    }
    if module.live() != 0 {
        problems.push(format!("{} connection(s) leaked", module.live()));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
