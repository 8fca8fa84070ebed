//! A fault-injection DB-API module for the fault and load tests.
//!
//! Kept whole although over 600 lines: it is one fault-injection module, its
//! table of steps and the wrappers that consult it.
//!
//! [`FaultModule`] wraps the real `sqlite3` driver
//! ([`adbapi::drivers::sqlite::SqliteModule`], through
//! [`DbApiModule::connect`]), so the data is real, and lets every step a
//! connection pool goes through be told to succeed, fail with a chosen
//! [`ErrorKind`], panic, or sever the connection, on a given call or always:
//!
//! | [`Step`] | where it happens |
//! |---|---|
//! | `Connect` | [`DbApiModule::connect`] (`ConnectionPool.connect`) |
//! | `OpenFun` | the pool's `cp_openfun`, if the pool was given [`FaultModule::openfun`] |
//! | `Cursor` | [`DriverConnection::check_cursor`] (`connection.cursor()`) |
//! | `Execute` | an `execute`/`executemany` whose statement returns no rows |
//! | `Fetch` | an `execute` whose statement returns rows (`SELECT`, `WITH`, `VALUES`, `PRAGMA`, `EXPLAIN`) |
//! | `Commit`, `Rollback`, `Close` | the connection's `commit`, `rollback`, `close` |
//!
//! Faults are injected *before* the real driver is called, so a faulted
//! statement has no effect on the database. Every injected error and panic
//! message names the module and the step, with the call number counted since
//! the module was made (`<name>: injected failure at execute #3`), so a test
//! can tell which fault reached the caller. The module also keeps the books a
//! leak check needs: connections opened, released (closed or dropped), the
//! thread that opened and the thread that closed each one.
//!
//! ```
//! use adbapi::dbapi::{connect, ErrorKind};
//! use integration_tests::faults::{Fault, FaultModule, Step, When};
//!
//! let module = FaultModule::register("faults-doc-example");
//! module.arm(Step::Execute, When::Nth(1), Fault::Fail(ErrorKind::OperationalError));
//! let conn = connect("faults-doc-example", &[":memory:".into()], &[]).unwrap();
//! let mut cur = conn.cursor().unwrap();
//! let err = cur.execute("CREATE TABLE t (x)", ()).unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::OperationalError);
//! assert!(err.message().contains("faults-doc-example"));
//! cur.execute("CREATE TABLE t (x)", ()).unwrap(); // once only
//! conn.close().unwrap();
//! assert_eq!((module.connects(), module.live()), (1, 0));
//! ```

use std::fmt;
use std::panic;
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::thread::{self, ThreadId};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use adbapi::dbapi::{
    register_module, ConnectArgs, DbApiModule, DbConnection, DbError, DbResult, DriverConnection,
    ErrorKind, ExecResult, Params, StatementCanceller,
};
use adbapi::drivers::sqlite::SqliteModule;
use deferred::Failure;

/// Every panic the module injects carries this text, so
/// [`quiet_injected_panics`] can keep them off stderr.
pub const INJECTED_PANIC: &str = "injected panic";

/// A step of a connection's life at which a fault can be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// The module's `connect`.
    Connect,
    /// The pool's `cp_openfun` (only with [`FaultModule::openfun`]).
    OpenFun,
    /// Opening a cursor.
    Cursor,
    /// A statement that returns no rows.
    Execute,
    /// A statement that returns rows.
    Fetch,
    /// `commit`.
    Commit,
    /// `rollback`.
    Rollback,
    /// `close`.
    Close,
}

impl Step {
    /// Every step, in the order a connection meets them.
    pub const ALL: [Step; 8] = [
        Step::Connect,
        Step::OpenFun,
        Step::Cursor,
        Step::Execute,
        Step::Fetch,
        Step::Commit,
        Step::Rollback,
        Step::Close,
    ];

    /// A lower-case name, as used in fault messages.
    pub fn name(self) -> &'static str {
        match self {
            Step::Connect => "connect",
            Step::OpenFun => "openfun",
            Step::Cursor => "cursor",
            Step::Execute => "execute",
            Step::Fetch => "fetch",
            Step::Commit => "commit",
            Step::Rollback => "rollback",
            Step::Close => "close",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What an armed step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Run normally (useful to override an `Always` rule for one call).
    Succeed,
    /// Return a [`DbError`] of this kind; the message names the module and
    /// the step.
    Fail(ErrorKind),
    /// Panic with a message containing [`INJECTED_PANIC`].
    Panic,
    /// The server "goes away": fail with an `OperationalError` marked
    /// connection-lost, and every later operation on that connection (except
    /// `close`) fails the same way. At `Connect`/`OpenFun` it is a plain
    /// connection-lost failure.
    Sever,
}

/// Which calls of a step a rule applies to, counted from when it was armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Only the n-th call (1-based) after arming.
    Nth(u64),
    /// Every call.
    Always,
}

/// What the module knows about one connection it opened.
#[derive(Debug, Clone)]
pub struct ConnRecord {
    /// A number local to the module, from 1.
    pub id: u64,
    /// The thread that opened it.
    pub opened_on: ThreadId,
    /// That thread's name, if it had one.
    pub opened_on_name: Option<String>,
    /// The thread that called `close`, and its name, once closed.
    pub closed_on: Option<(ThreadId, Option<String>)>,
    /// How many times `close` was called on it.
    pub close_calls: u32,
    /// True once the underlying SQLite connection is gone (closed, or dropped
    /// without `close`).
    pub released: bool,
    /// True if `Fault::Sever` killed it.
    pub severed: bool,
    /// How many times its statement canceller was called (a cancelled job
    /// interrupting it).
    pub cancels: u32,
}

/// Something that happened in a [`FaultModule`], for tests that synchronise
/// with the worker threads ([`FaultModule::subscribe`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultEvent {
    /// A fault other than `Succeed` was applied at the `n`-th call of `step`.
    Fired {
        /// The step.
        step: Step,
        /// The call number, counted since the module was made.
        n: u64,
    },
    /// A call of `step` is waiting at a [`Gate`].
    Stalled {
        /// The step.
        step: Step,
        /// The call number, counted since the module was made.
        n: u64,
    },
    /// The statement canceller of connection `conn` ([`ConnRecord::id`]) was
    /// called.
    Cancelled {
        /// The connection.
        conn: u64,
    },
}

/// Holds the calls a [`FaultModule::stall`] rule caught until
/// [`open`](Gate::open) (or until dropped, or after a minute, so a failing
/// test cannot hang a worker for ever).
#[derive(Debug)]
pub struct Gate {
    tx: Sender<()>,
}

impl Gate {
    /// Lets the waiting call (or the next one to arrive) go on.
    pub fn open(&self) {
        let _ = self.tx.send(());
    }
}

/// How long a stalled call waits for its gate at most.
const STALL_LIMIT: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Stall {
    step: Step,
    when: When,
    base: u64,
    rx: Receiver<()>,
}

#[derive(Debug)]
struct Rule {
    step: Step,
    when: When,
    fault: Fault,
    base: u64,
}

#[derive(Debug, Default)]
struct Books {
    rules: Vec<Rule>,
    stalls: Vec<Stall>,
    calls: [u64; 8],
    fired: [u64; 8],
    conns: Vec<ConnRecord>,
    events: Option<Sender<FaultEvent>>,
}

impl Books {
    fn emit(&self, e: FaultEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.send(e);
        }
    }
}

fn matches(when: When, base: u64, n: u64) -> bool {
    match when {
        When::Nth(k) => n - base == k,
        When::Always => true,
    }
}

#[derive(Debug)]
struct Shared {
    name: String,
    books: Mutex<Books>,
    /// Whether connections let the real driver run a statement alone (one
    /// round trip, its own commit): see [`FaultModule::pass_alone`].
    alone: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn books(&self) -> MutexGuard<'_, Books> {
        // An injected panic never happens while this lock is held, but a
        // failing test thread might; the books stay usable either way.
        self.books.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a call of `step`, waits at its gate if a stall rule catches
    /// it, and returns the fault to apply.
    fn decide(&self, step: Step) -> (u64, Fault) {
        let (n, fault, gate) = {
            let mut b = self.books();
            b.calls[step.index()] += 1;
            let n = b.calls[step.index()];
            let fault = b
                .rules
                .iter()
                .find(|r| r.step == step && matches(r.when, r.base, n))
                .map_or(Fault::Succeed, |r| r.fault);
            if fault != Fault::Succeed {
                b.fired[step.index()] += 1;
                b.emit(FaultEvent::Fired { step, n });
            }
            let gate = b
                .stalls
                .iter()
                .find(|s| s.step == step && matches(s.when, s.base, n))
                .map(|s| s.rx.clone());
            if gate.is_some() {
                b.emit(FaultEvent::Stalled { step, n });
            }
            (n, fault, gate)
        };
        if let Some(rx) = gate {
            let _ = rx.recv_timeout(STALL_LIMIT);
        }
        (n, fault)
    }

    fn message(&self, step: Step, n: u64, what: &str) -> String {
        format!("{}: injected {what} at {step} #{n}", self.name)
    }

    /// Applies the fault for a call of `step`; `Ok(true)` means "sever".
    fn check(&self, step: Step) -> DbResult<bool> {
        let (n, fault) = self.decide(step);
        match fault {
            Fault::Succeed => Ok(false),
            Fault::Fail(kind) => Err(DbError::new(kind, self.message(step, n, "failure"))),
            Fault::Panic => panic!("{INJECTED_PANIC}: {}", self.message(step, n, "panic")),
            Fault::Sever => Ok(true),
        }
    }

    fn severed_error(&self, step: Step, conn: u64) -> DbError {
        DbError::new(
            ErrorKind::OperationalError,
            format!(
                "{}: connection #{conn} is severed (server has gone away) at {step}",
                self.name
            ),
        )
        .with_connection_lost(true)
    }

    fn with_conn(&self, id: u64, f: impl FnOnce(&mut ConnRecord)) {
        let mut b = self.books();
        if let Some(r) = b.conns.iter_mut().find(|r| r.id == id) {
            f(r);
        }
    }
}

/// A DB-API module that wraps a real driver (`sqlite3` unless told
/// otherwise) and injects faults. See the
/// [module docs](self).
pub struct FaultModule {
    shared: Arc<Shared>,
    inner: Arc<dyn DbApiModule>,
}

impl std::fmt::Debug for FaultModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultModule")
            .field("shared", &self.shared)
            .field("inner", &self.inner.name())
            .finish()
    }
}

impl FaultModule {
    /// A module named `name` wrapping `sqlite3`, not registered.
    pub fn new(name: &str) -> Arc<FaultModule> {
        Self::wrapping(name, Arc::new(SqliteModule))
    }

    /// A module named `name` wrapping `inner` (any real driver), not
    /// registered.
    pub fn wrapping(name: &str, inner: Arc<dyn DbApiModule>) -> Arc<FaultModule> {
        Arc::new(FaultModule {
            shared: Arc::new(Shared {
                name: name.to_owned(),
                books: Mutex::new(Books::default()),
                alone: std::sync::atomic::AtomicBool::new(false),
            }),
            inner,
        })
    }

    /// Lets the real driver run `run_query`/`run_operation` statements as
    /// transactions of their own (PostgreSQL's one round trip). Off by
    /// default: the fault tables inject failures into the pool's `COMMIT`,
    /// which such a statement has already done.
    pub fn pass_alone(&self) {
        self.shared
            .alone
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// As [`register`](Self::register), wrapping `inner`.
    pub fn register_wrapping(name: &str, inner: Arc<dyn DbApiModule>) -> Arc<FaultModule> {
        let m = Self::wrapping(name, inner);
        register_module(name, Arc::clone(&m) as Arc<dyn DbApiModule>);
        m
    }

    /// A module named `name`, registered under that name with
    /// [`register_module`] (replacing any module of that name), so
    /// `ConnectionPool::new(name, ...)` uses it. Use a unique name per test.
    pub fn register(name: &str) -> Arc<FaultModule> {
        let m = Self::new(name);
        register_module(name, Arc::clone(&m) as Arc<dyn DbApiModule>);
        m
    }

    /// Adds a rule: calls of `step` selected by `when` (counted from now)
    /// get `fault`. The first rule that matches a call wins.
    pub fn arm(&self, step: Step, when: When, fault: Fault) {
        let mut b = self.shared.books();
        let base = b.calls[step.index()];
        b.rules.push(Rule {
            step,
            when,
            fault,
            base,
        });
    }

    /// Adds a stall rule: calls of `step` selected by `when` (counted from
    /// now) wait, after any fault rule was chosen and before it is applied,
    /// until the returned [`Gate`] opens. With [`subscribe`](Self::subscribe)
    /// a test learns when a call is waiting.
    pub fn stall(&self, step: Step, when: When) -> Gate {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut b = self.shared.books();
        let base = b.calls[step.index()];
        b.stalls.push(Stall {
            step,
            when,
            base,
            rx,
        });
        Gate { tx }
    }

    /// Reports [`FaultEvent`]s from now on (replacing an earlier
    /// subscriber).
    pub fn subscribe(&self) -> Receiver<FaultEvent> {
        let (tx, rx) = crossbeam_channel::unbounded();
        self.shared.books().events = Some(tx);
        rx
    }

    /// Removes every rule, stall rules included. Severed connections stay
    /// severed.
    pub fn disarm(&self) {
        let mut b = self.shared.books();
        b.rules.clear();
        b.stalls.clear();
    }

    /// How many times `step` was reached (faulted or not).
    pub fn calls(&self, step: Step) -> u64 {
        self.shared.books().calls[step.index()]
    }

    /// How many times a fault other than `Succeed` was applied at `step`.
    pub fn fired(&self, step: Step) -> u64 {
        self.shared.books().fired[step.index()]
    }

    /// Connections successfully opened.
    pub fn connects(&self) -> u64 {
        self.shared.books().conns.len() as u64
    }

    /// Connections opened and not yet released (closed or dropped).
    pub fn live(&self) -> usize {
        self.shared
            .books()
            .conns
            .iter()
            .filter(|c| !c.released)
            .count()
    }

    /// What is known about every connection opened, in opening order.
    pub fn connections(&self) -> Vec<ConnRecord> {
        self.shared.books().conns.clone()
    }

    /// A `cp_openfun` for the pool that reaches the [`Step::OpenFun`] step,
    /// then runs `then` (for example a `PRAGMA`).
    pub fn openfun_then<F>(
        self: &Arc<Self>,
        then: F,
    ) -> impl Fn(&DbConnection) -> Result<(), Failure> + Send + Sync + 'static
    where
        F: Fn(&DbConnection) -> Result<(), Failure> + Send + Sync + 'static,
    {
        let shared = Arc::clone(&self.shared);
        move |conn| {
            if shared.check(Step::OpenFun)? {
                return Err(Failure::new(
                    shared.severed_error(Step::OpenFun, 0).context("openfun"),
                ));
            }
            then(conn)
        }
    }

    /// A `cp_openfun` for the pool that only reaches the [`Step::OpenFun`]
    /// step.
    pub fn openfun(
        self: &Arc<Self>,
    ) -> impl Fn(&DbConnection) -> Result<(), Failure> + Send + Sync + 'static {
        self.openfun_then(|_| Ok(()))
    }
}

impl DbApiModule for FaultModule {
    fn name(&self) -> &str {
        &self.shared.name
    }

    fn paramstyle(&self) -> &str {
        self.inner.paramstyle()
    }

    fn connect(&self, args: &ConnectArgs) -> DbResult<Box<dyn DriverConnection>> {
        if self.shared.check(Step::Connect)? {
            return Err(self.shared.severed_error(Step::Connect, 0));
        }
        let inner = self.inner.connect(args)?;
        let (opened_on, opened_on_name) = current_thread();
        let id = {
            let mut b = self.shared.books();
            let id = b.conns.len() as u64 + 1;
            b.conns.push(ConnRecord {
                id,
                opened_on,
                opened_on_name,
                closed_on: None,
                close_calls: 0,
                released: false,
                severed: false,
                cancels: 0,
            });
            id
        };
        Ok(Box::new(FaultConnection {
            shared: Arc::clone(&self.shared),
            id,
            inner: Some(inner),
            severed: false,
        }))
    }
}

/// One connection of a [`FaultModule`]: the real SQLite connection plus the
/// fault checks.
struct FaultConnection {
    shared: Arc<Shared>,
    id: u64,
    inner: Option<Box<dyn DriverConnection>>,
    severed: bool,
}

/// The calling thread's id and name. A pool worker closes its connection in
/// a thread-local destructor as it exits, where `thread::current()` is only
/// documented to work on recent toolchains: fall back to an anonymous record.
fn current_thread() -> (ThreadId, Option<String>) {
    panic::catch_unwind(|| {
        let t = thread::current();
        (t.id(), t.name().map(str::to_owned))
    })
    .unwrap_or_else(|_| (unknown_thread(), None))
}

/// A `ThreadId` no live thread has, for [`current_thread`]'s fallback.
fn unknown_thread() -> ThreadId {
    static UNKNOWN: std::sync::OnceLock<ThreadId> = std::sync::OnceLock::new();
    *UNKNOWN.get_or_init(|| {
        thread::spawn(|| thread::current().id())
            .join()
            .expect("a thread that only reports its id")
    })
}

/// True if `sql` is a statement that returns rows (the [`Step::Fetch`] step).
fn returns_rows(sql: &str) -> bool {
    let kw: String = sql
        .trim_start()
        .chars()
        .take_while(char::is_ascii_alphabetic)
        .collect();
    ["SELECT", "WITH", "VALUES", "PRAGMA", "EXPLAIN"]
        .iter()
        .any(|k| kw.eq_ignore_ascii_case(k))
}

impl FaultConnection {
    /// Runs the fault check for `step` and then `f` on the real connection.
    fn step<R>(
        &mut self,
        step: Step,
        f: impl FnOnce(&mut dyn DriverConnection) -> DbResult<R>,
    ) -> DbResult<R> {
        if self.severed {
            // Counted as a call, so `Nth` stays "the n-th time the pool
            // tried", but no rule applies to a dead connection.
            self.shared.books().calls[step.index()] += 1;
            return Err(self.shared.severed_error(step, self.id));
        }
        if self.shared.check(step)? {
            self.severed = true;
            let id = self.id;
            self.shared.with_conn(id, |r| r.severed = true);
            return Err(self.shared.severed_error(step, id));
        }
        match self.inner.as_deref_mut() {
            Some(d) => f(d),
            None => Err(DbError::new(
                ErrorKind::ProgrammingError,
                "Cannot operate on a closed database.",
            )),
        }
    }

    fn release(&mut self) -> Option<Box<dyn DriverConnection>> {
        let inner = self.inner.take();
        if inner.is_some() {
            self.shared.with_conn(self.id, |r| r.released = true);
        }
        inner
    }
}

impl DriverConnection for FaultConnection {
    fn execute(&mut self, sql: &str, params: &Params) -> DbResult<ExecResult> {
        let step = if returns_rows(sql) {
            Step::Fetch
        } else {
            Step::Execute
        };
        self.step(step, |d| d.execute(sql, params))
    }

    fn executemany(&mut self, sql: &str, seq: &[Params]) -> DbResult<ExecResult> {
        self.step(Step::Execute, |d| d.executemany(sql, seq))
    }

    fn commits_alone(&mut self, sql: &str) -> bool {
        self.shared.alone.load(std::sync::atomic::Ordering::SeqCst)
            && self.inner.as_mut().is_some_and(|d| d.commits_alone(sql))
    }

    fn execute_alone(&mut self, sql: &str, params: &Params) -> DbResult<ExecResult> {
        let step = if returns_rows(sql) {
            Step::Fetch
        } else {
            Step::Execute
        };
        self.step(step, |d| d.execute_alone(sql, params))
    }

    fn commit(&mut self) -> DbResult<()> {
        self.step(Step::Commit, |d| d.commit())
    }

    fn rollback(&mut self) -> DbResult<()> {
        self.step(Step::Rollback, |d| d.rollback())
    }

    fn check_cursor(&mut self) -> DbResult<()> {
        self.step(Step::Cursor, |d| d.check_cursor())
    }

    fn close(&mut self) -> DbResult<()> {
        let closed_on = current_thread();
        self.shared.with_conn(self.id, |r| {
            r.close_calls += 1;
            r.closed_on = Some(closed_on);
        });
        // The real connection goes whatever the fault: a failing close still
        // releases the resource (as Python's sqlite3 does), so a leak check
        // sees only what the pool itself forgot.
        let inner = self.release();
        let (n, fault) = self.shared.decide(Step::Close);
        let closed = match inner {
            Some(mut d) => d.close(),
            None => Ok(()),
        };
        match fault {
            Fault::Succeed => closed,
            Fault::Fail(kind) => Err(DbError::new(
                kind,
                self.shared.message(Step::Close, n, "failure"),
            )),
            Fault::Panic => panic!(
                "{INJECTED_PANIC}: {}",
                self.shared.message(Step::Close, n, "panic")
            ),
            Fault::Sever => Err(self.shared.severed_error(Step::Close, self.id)),
        }
    }

    fn canceller(&self) -> Option<Arc<dyn StatementCanceller>> {
        let inner = self.inner.as_ref().and_then(|d| d.canceller());
        Some(Arc::new(FaultCanceller {
            shared: Arc::clone(&self.shared),
            conn: self.id,
            inner,
        }))
    }
}

/// The real driver's statement canceller, with the call recorded.
struct FaultCanceller {
    shared: Arc<Shared>,
    conn: u64,
    inner: Option<Arc<dyn StatementCanceller>>,
}

impl fmt::Debug for FaultCanceller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultCanceller({}, #{})", self.shared.name, self.conn)
    }
}

impl StatementCanceller for FaultCanceller {
    fn cancel(&self) -> DbResult<()> {
        {
            let mut b = self.shared.books();
            if let Some(r) = b.conns.iter_mut().find(|r| r.id == self.conn) {
                r.cancels += 1;
            }
            b.emit(FaultEvent::Cancelled { conn: self.conn });
        }
        match &self.inner {
            Some(c) => c.cancel(),
            None => Ok(()),
        }
    }
}

impl Drop for FaultConnection {
    fn drop(&mut self) {
        // Dropped without `close` (or during a panic in `close`): the real
        // connection closes on drop; record it as released.
        drop(self.release());
    }
}

/// Installs (once per process) a panic hook that keeps the panics this module
/// injects off stderr and passes every other panic to the previous hook.
pub fn quiet_injected_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let text = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("");
            if !text.contains(INJECTED_PANIC) {
                previous(info);
            }
        }));
    });
}
