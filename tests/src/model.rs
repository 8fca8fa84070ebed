//! Per-job fault plans for the model-based test of the connection pool
//! (`tests/tests/pool_model.rs`).
//!
//! [`PlanModule`] is a DB-API module layered over a
//! [`crate::faults::FaultModule`] (which keeps the books on
//! connections opened and closed and applies its own step-counted rules).
//! Where `FaultModule`'s rules are counted per step across the whole module,
//! so with several workers nobody can tell which job an `Nth` fault hits,
//! a [`JobPlan`] belongs to one job: every statement a model job runs carries
//! a tag `/*job:N*/`, and from that statement until the connection's next
//! `commit` or `rollback` the connection applies job `N`'s plan. So a test
//! knows, for every job, whether its commit was made to fail before the
//! database saw it (nothing committed), to fail after the database committed
//! ([`CommitFault::LostAfter`], psycopg2's ambiguous "connection lost during
//! commit"), or to stall while committing ([`CommitFault::Slow`], so a cancel
//! can land while the job commits).
//!
//! What is committed is read back from the real database
//! ([`committed_keys`] for the SQLite file, [`committed_keys_in`] for any
//! module): the database itself is the record of committed writes.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use adbapi::dbapi::{
    register_module, ConnectArgs, DbApiModule, DbError, DbResult, DriverConnection, ErrorKind,
    ExecResult, Params, StatementCanceller, Value,
};
use adbapi::drivers::sqlite::SqliteModule;

use crate::faults::{FaultModule, INJECTED_PANIC};

/// What a planned step (a job's statement or its rollback) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StepFault {
    /// Runs normally.
    #[default]
    None,
    /// Fails with an `OperationalError` before the database sees it.
    Fail,
    /// Panics (the message contains [`INJECTED_PANIC`]) before the database
    /// sees it.
    Panic,
    /// The server goes away before the database sees it: it aborts the
    /// connection's open transaction, and this and every later operation on
    /// the connection fail with a connection-lost `OperationalError`.
    Sever,
}

/// What a job's `commit` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CommitFault {
    /// Commits normally.
    #[default]
    None,
    /// Fails before the database commits (nothing committed).
    Fail,
    /// Panics before the database commits (nothing committed).
    Panic,
    /// The server goes away before the database commits (nothing committed).
    Sever,
    /// The database commits, then the connection is lost before the reply:
    /// the caller sees a failure although the data is committed. The one
    /// outcome a client cannot classify (psycopg2's `OperationalError` on
    /// `commit()`).
    LostAfter,
    /// Sleeps this many milliseconds, then commits normally: a window for a
    /// cancel to land while the job commits.
    Slow(u8),
}

/// The faults planned for one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JobPlan {
    /// The job's first tagged statement.
    pub exec: StepFault,
    /// The job's commit.
    pub commit: CommitFault,
    /// The job's rollback.
    pub rollback: StepFault,
}

impl JobPlan {
    /// True if the plan makes the job fail whatever else happens (a faulted
    /// statement or commit); a rollback fault only matters on the error path.
    pub fn makes_job_fail(&self) -> bool {
        self.exec != StepFault::None
            || !matches!(self.commit, CommitFault::None | CommitFault::Slow(_))
    }

    /// True if whether the job's write is committed cannot be told from its
    /// Deferred: the commit reached the database and then failed
    /// ([`CommitFault::LostAfter`]), or the rollback failed without the
    /// connection being lost, which leaves the job's transaction open on a
    /// connection the pool keeps, so the next job's commit on it commits
    /// this job's write too (Twisted's `_runInteraction` logs "Rollback
    /// failed" and keeps the connection the same way).
    pub fn ambiguous(&self) -> bool {
        self.commit == CommitFault::LostAfter
            || matches!(self.rollback, StepFault::Fail | StepFault::Panic)
    }
}

/// The tag that ties a statement to job `key`.
pub fn tag(key: u64) -> String {
    format!("/*job:{key}*/")
}

fn parse_tag(sql: &str) -> Option<u64> {
    let start = sql.find("/*job:")? + "/*job:".len();
    let end = sql[start..].find("*/")? + start;
    sql[start..end].parse().ok()
}

#[derive(Debug, Default)]
struct Plans {
    plans: HashMap<u64, JobPlan>,
    /// Jobs whose commit reached the database (before any fault after it).
    committed: BTreeSet<u64>,
    /// Jobs a tagged statement of which reached the connection (whether it
    /// then failed or not): a job that was never run is not here.
    executed: BTreeSet<u64>,
    /// The connection (this module's numbering) each job's first tagged
    /// statement ran on.
    ran_on: HashMap<u64, u64>,
    /// The time ([`PlanModule::set_time`]) each connection ran its first
    /// statement at, by connection.
    first_used: HashMap<u64, u64>,
    /// The number the next connection gets.
    next_connection: u64,
}

#[derive(Debug)]
struct Shared {
    name: String,
    plans: Mutex<Plans>,
    /// A test's clock reading, in its own units ([`PlanModule::set_time`]).
    time: AtomicU64,
}

impl Shared {
    fn plans(&self) -> MutexGuard<'_, Plans> {
        self.plans.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn plan(&self, key: u64) -> JobPlan {
        self.plans().plans.get(&key).copied().unwrap_or_default()
    }

    fn error(&self, what: &str, key: u64) -> DbError {
        DbError::new(
            ErrorKind::OperationalError,
            format!("{}: planned {what} of job {key}", self.name),
        )
    }

    fn lost(&self, what: &str) -> DbError {
        DbError::new(
            ErrorKind::OperationalError,
            format!(
                "{}: connection severed (server has gone away) at {what}",
                self.name
            ),
        )
        .with_connection_lost(true)
    }
}

/// A DB-API module applying per-job [`JobPlan`]s over a
/// [`FaultModule`]. See the [module docs](self).
#[derive(Debug)]
pub struct PlanModule {
    shared: Arc<Shared>,
    faults: Arc<FaultModule>,
}

impl PlanModule {
    /// A module named `name` over a fresh [`FaultModule`] wrapping `sqlite3`
    /// (reachable with [`faults`](Self::faults)), registered under `name`.
    pub fn register(name: &str) -> Arc<PlanModule> {
        Self::register_over(name, Arc::new(SqliteModule))
    }

    /// As [`register`](Self::register), over a [`FaultModule`] wrapping
    /// `inner` (any real driver, for example `pymysql`'s
    /// `adbapi::drivers::mysql::MysqlModule`).
    pub fn register_over(name: &str, inner: Arc<dyn DbApiModule>) -> Arc<PlanModule> {
        let m = Arc::new(PlanModule {
            shared: Arc::new(Shared {
                name: name.to_owned(),
                plans: Mutex::new(Plans::default()),
                time: AtomicU64::new(0),
            }),
            faults: FaultModule::wrapping(&format!("{name}-faults"), inner),
        });
        // The plans put a job's commit faults on its statement when the
        // statement is its own commit.
        m.faults.pass_alone();
        register_module(name, Arc::clone(&m) as Arc<dyn DbApiModule>);
        m
    }

    /// The module underneath: its rules, and its books on connections.
    pub fn faults(&self) -> &Arc<FaultModule> {
        &self.faults
    }

    /// Sets job `key`'s plan (before the job is issued).
    pub fn plan(&self, key: u64, plan: JobPlan) {
        self.shared.plans().plans.insert(key, plan);
    }

    /// Jobs whose commit reached the database, by this module's own
    /// account (the database file is the authority: see [`committed_keys`]).
    pub fn commits_reached(&self) -> BTreeSet<u64> {
        self.shared.plans().committed.clone()
    }

    /// Jobs that ran a tagged statement on some connection: a job the pool
    /// says it never ran (a `PoolTimeout`) must not be here.
    pub fn executed(&self) -> BTreeSet<u64> {
        self.shared.plans().executed.clone()
    }

    /// The connection each job's first tagged statement ran on, by job.
    pub fn ran_on(&self) -> HashMap<u64, u64> {
        self.shared.plans().ran_on.clone()
    }

    /// Sets the time the module notes when a connection runs its first
    /// statement ([`first_used`](Self::first_used)): a test's own clock
    /// (the pool's lifetime clock, in seconds moved). Set it before the
    /// pool's clock moves, so a first use the pool saw at the new time is
    /// noted at the new time too.
    pub fn set_time(&self, t: u64) {
        self.shared.time.store(t, Ordering::SeqCst);
    }

    /// The time each connection ran its first statement at, by connection:
    /// the pool had opened it by then, so it was no younger.
    pub fn first_used(&self) -> HashMap<u64, u64> {
        self.shared.plans().first_used.clone()
    }
}

impl DbApiModule for PlanModule {
    fn name(&self) -> &str {
        &self.shared.name
    }

    fn paramstyle(&self) -> &str {
        self.faults.paramstyle()
    }

    fn connect(&self, args: &ConnectArgs) -> DbResult<Box<dyn DriverConnection>> {
        let inner = self.faults.connect(args)?;
        let id = {
            let mut plans = self.shared.plans();
            let id = plans.next_connection;
            plans.next_connection += 1;
            id
        };
        Ok(Box::new(PlanConnection {
            shared: Arc::clone(&self.shared),
            id,
            inner,
            job: None,
            severed: false,
        }))
    }
}

struct PlanConnection {
    shared: Arc<Shared>,
    /// This module's number for the connection.
    id: u64,
    inner: Box<dyn DriverConnection>,
    /// The job whose transaction is open on this connection.
    job: Option<u64>,
    severed: bool,
}

impl PlanConnection {
    fn apply(&mut self, fault: StepFault, what: &str, key: u64) -> DbResult<()> {
        match fault {
            StepFault::None => Ok(()),
            StepFault::Fail => Err(self.shared.error(what, key)),
            StepFault::Panic => panic!(
                "{INJECTED_PANIC}: {}: planned {what} of job {key}",
                self.shared.name
            ),
            StepFault::Sever => {
                self.sever();
                Err(self.shared.lost(what))
            }
        }
    }

    /// The server goes away: it aborts the open transaction (and so
    /// releases its locks, which SQLite would otherwise keep until the
    /// connection closes); every later operation fails.
    fn sever(&mut self) {
        self.severed = true;
        self.job = None;
        let _ = self.inner.rollback();
    }

    fn check_severed(&self, what: &str) -> DbResult<()> {
        if self.severed {
            Err(self.shared.lost(what))
        } else {
            Ok(())
        }
    }
}

impl DriverConnection for PlanConnection {
    fn execute(&mut self, sql: &str, params: &Params) -> DbResult<ExecResult> {
        let tagged = parse_tag(sql);
        {
            let now = self.shared.time.load(Ordering::SeqCst);
            let mut plans = self.shared.plans();
            plans.first_used.entry(self.id).or_insert(now);
            if let Some(key) = tagged {
                // Before the severed check: the job did reach a connection.
                plans.executed.insert(key);
                plans.ran_on.entry(key).or_insert(self.id);
            }
        }
        self.check_severed("execute")?;
        if let Some(key) = tagged {
            self.job = Some(key);
            let plan = self.shared.plan(key);
            self.apply(plan.exec, "execute", key)?;
        }
        self.inner.execute(sql, params)
    }

    fn commits_alone(&mut self, sql: &str) -> bool {
        !self.severed && self.inner.commits_alone(sql)
    }

    /// The statement is the job's commit too (the driver runs it as a
    /// transaction of its own): the plan's statement fault, then its commit
    /// fault as the database would meet them, before and after it commits.
    fn execute_alone(&mut self, sql: &str, params: &Params) -> DbResult<ExecResult> {
        self.check_severed("execute")?;
        let Some(key) = parse_tag(sql) else {
            return self.inner.execute_alone(sql, params);
        };
        self.job = Some(key);
        let plan = self.shared.plan(key);
        self.apply(plan.exec, "execute", key)?;
        let pre = match plan.commit {
            CommitFault::Fail => StepFault::Fail,
            CommitFault::Panic => StepFault::Panic,
            CommitFault::Sever => StepFault::Sever,
            CommitFault::Slow(ms) => {
                std::thread::sleep(Duration::from_millis(u64::from(ms)));
                StepFault::None
            }
            CommitFault::None | CommitFault::LostAfter => StepFault::None,
        };
        self.apply(pre, "commit", key)?;
        let r = self.inner.execute_alone(sql, params)?;
        // Committed by the database: the pool's commit that follows has
        // nothing of this job's left to do.
        self.job = None;
        self.shared.plans().committed.insert(key);
        if plan.commit == CommitFault::LostAfter {
            self.sever();
            return Err(self.shared.lost("execute (after the database committed)"));
        }
        Ok(r)
    }

    fn executemany(&mut self, sql: &str, seq: &[Params]) -> DbResult<ExecResult> {
        self.check_severed("executemany")?;
        self.inner.executemany(sql, seq)
    }

    fn commit(&mut self) -> DbResult<()> {
        self.check_severed("commit")?;
        let Some(key) = self.job.take() else {
            return self.inner.commit();
        };
        let fault = self.shared.plan(key).commit;
        let pre = match fault {
            CommitFault::Fail => StepFault::Fail,
            CommitFault::Panic => StepFault::Panic,
            CommitFault::Sever => StepFault::Sever,
            CommitFault::Slow(ms) => {
                std::thread::sleep(Duration::from_millis(u64::from(ms)));
                StepFault::None
            }
            CommitFault::None | CommitFault::LostAfter => StepFault::None,
        };
        if let Err(e) = self.apply(pre, "commit", key) {
            // Still this job's transaction: its rollback follows.
            self.job = Some(key);
            return Err(e);
        }
        self.inner.commit()?;
        self.shared.plans().committed.insert(key);
        if fault == CommitFault::LostAfter {
            self.sever();
            return Err(self.shared.lost("commit (after the database committed)"));
        }
        Ok(())
    }

    fn rollback(&mut self) -> DbResult<()> {
        self.check_severed("rollback")?;
        let Some(key) = self.job.take() else {
            return self.inner.rollback();
        };
        let fault = self.shared.plan(key).rollback;
        self.apply(fault, "rollback", key)?;
        self.inner.rollback()
    }

    fn close(&mut self) -> DbResult<()> {
        self.inner.close()
    }

    fn check_cursor(&mut self) -> DbResult<()> {
        self.check_severed("cursor")?;
        self.inner.check_cursor()
    }

    fn canceller(&self) -> Option<Arc<dyn StatementCanceller>> {
        self.inner.canceller()
    }
}

/// The keys in table `t` (column `k`) of the SQLite file `path`, read on a
/// connection of its own: what the pool's jobs committed.
pub fn committed_keys(path: &str) -> BTreeSet<u64> {
    committed_keys_in("sqlite3", path, "t")
}

/// The keys in table `table` (column `k`) of the database that module
/// `module` reaches with the single connect argument `target` (a file, a
/// URL), read on a connection of its own in a fresh transaction: what the
/// pool's jobs committed.
pub fn committed_keys_in(module: &str, target: &str, table: &str) -> BTreeSet<u64> {
    let conn = adbapi::dbapi::connect(module, &[target.into()], &[])
        .unwrap_or_else(|e| panic!("open {target} to read the committed keys: {e}"));
    let rows = conn
        .execute(&format!("SELECT k FROM {table}"), ())
        .and_then(|mut c| c.fetchall())
        .unwrap_or_else(|e| panic!("read the committed keys of {target} ({table}): {e}"));
    let _ = conn.close();
    rows.iter()
        .map(|r| match r.values().first() {
            Some(Value::Int(k)) => u64::try_from(*k).expect("keys are non-negative"),
            other => panic!("unexpected key {other:?} in {target} ({table})"),
        })
        .collect()
}
