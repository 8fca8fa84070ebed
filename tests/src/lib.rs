//! Shared code for the cross-crate integration tests.
//!
//! - [`logs`]: a `tracing` capture (Twisted's log observers and trial's
//!   `flushLoggedErrors`) that also sees events from a pool's worker threads;
//! - [`harness`]: bounded reactor runs (a safety-net timer fails a test that
//!   would hang), waiting on a [`FakeReactor`](reactor::testing::FakeReactor),
//!   temporary directories and unique names;
//! - [`backend`]: the [`Backend`](backend::Backend) trait, Twisted's
//!   `DBTestConnector` (flags, pool arguments, `startDB`/`stopDB`), and its
//!   SQLite3 implementation;
//! - [`fakes`]: DB-API modules for tests: a fake that fails on demand (the
//!   fakes of `test_adbapi.py`) and a spy that wraps `sqlite3` and records
//!   every call with the calling thread;
//! - [`suite`]: Twisted's `ADBAPITestBase.test_pool` and
//!   `ReconnectTestBase.test_pool`, written once against `&dyn Backend` so
//!   any database backend can run them;
//! - [`faults`]: a fault-injection DB-API module for the fault and load
//!   tests;
//! - [`model`]: per-job fault plans over [`faults`] for the model-based
//!   test of the pool (`tests/pool_model.rs`).

pub mod faults;
pub mod model;
pub mod mysql;

/// The project's README.md: every Rust code block in it is compiled and run
/// as a doctest of this crate, so the README cannot rot.
#[doc = include_str!("../../README.md")]
pub mod readme {}

pub mod logs {
    //! Log capture: Twisted's log observers and trial's `flushLoggedErrors`.
    //!
    //! One global subscriber is installed once per test binary (scoped
    //! subscribers are unreliable because `tracing` caches each call site's
    //! interest globally). A [`LogCapture`] records the events emitted on the
    //! thread that started it and on every thread whose name contains one of
    //! its watched tokens: a pool's worker threads are named
    //! `PoolThread-<cp_name>-<n>` and its stopper thread `<cp_name>-stopper`,
    //! so watching a unique `cp_name` attributes a pool's events to the test
    //! that owns it while other tests run in parallel.

    use std::fmt;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex, MutexGuard, Once};
    use std::thread::ThreadId;

    use tracing::field::{Field, Visit};
    use tracing::{Event, Level, Subscriber};
    use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

    /// One recorded event.
    #[derive(Clone, Debug)]
    pub struct Logged {
        /// Its level.
        pub level: Level,
        /// The message text.
        pub message: String,
        /// The other fields, rendered with `Debug` (a `%value` field renders
        /// as its `Display`).
        pub fields: Vec<(String, String)>,
        /// The name of the thread that emitted it.
        pub thread: Option<String>,
    }

    impl Logged {
        /// The value of field `name`.
        pub fn field(&self, name: &str) -> Option<&str> {
            self.fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }

        /// The `failure` field: what `log.err(failure, why)` carries.
        pub fn failure(&self) -> Option<&str> {
            self.field("failure")
        }

        /// True at error level (Twisted's `log.err`).
        pub fn is_error(&self) -> bool {
            self.level == Level::ERROR
        }
    }

    impl fmt::Display for Logged {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "[{}] {}", self.level, self.message)?;
            for (k, v) in &self.fields {
                write!(f, " {k}={v}")?;
            }
            Ok(())
        }
    }

    #[derive(Default)]
    struct Recorder {
        message: String,
        fields: Vec<(String, String)>,
    }

    impl Visit for Recorder {
        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            if field.name() == "message" {
                self.message = format!("{value:?}");
            } else {
                self.fields
                    .push((field.name().to_owned(), format!("{value:?}")));
            }
        }
    }

    struct Capture {
        id: u64,
        thread: ThreadId,
        tokens: Mutex<Vec<String>>,
        events: Mutex<Vec<Logged>>,
    }

    fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    static CAPTURES: Mutex<Vec<Arc<Capture>>> = Mutex::new(Vec::new());

    /// The calling thread's id and name. Guarded: it may run in a thread-local
    /// destructor (a worker closing its connection as it exits).
    fn current_thread() -> Option<(ThreadId, Option<String>)> {
        std::panic::catch_unwind(|| {
            let t = std::thread::current();
            (t.id(), t.name().map(str::to_owned))
        })
        .ok()
    }

    struct CaptureLayer;

    impl<S: Subscriber> Layer<S> for CaptureLayer {
        fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
            let captures: Vec<Arc<Capture>> = lock(&CAPTURES).clone();
            if captures.is_empty() {
                return;
            }
            let Some((tid, name)) = current_thread() else {
                return;
            };
            let matching: Vec<&Arc<Capture>> = captures
                .iter()
                .filter(|c| {
                    c.thread == tid
                        || name
                            .as_deref()
                            .is_some_and(|n| lock(&c.tokens).iter().any(|t| n.contains(t)))
                })
                .collect();
            if matching.is_empty() {
                return;
            }
            let mut rec = Recorder::default();
            event.record(&mut rec);
            let logged = Logged {
                level: *event.metadata().level(),
                message: rec.message,
                fields: rec.fields,
                thread: name,
            };
            for c in matching {
                lock(&c.events).push(logged.clone());
            }
        }
    }

    /// Installs the capturing subscriber as the global default (once per
    /// process) and re-evaluates call sites cached before it existed.
    pub fn install() {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| {
            tracing::subscriber::set_global_default(
                tracing_subscriber::registry().with(CaptureLayer),
            )
            .expect("no other global subscriber in the integration tests");
        });
        tracing::callsite::rebuild_interest_cache();
    }

    /// Records events for one test until dropped; see the module docs.
    pub struct LogCapture {
        inner: Arc<Capture>,
    }

    impl fmt::Debug for LogCapture {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("LogCapture")
                .field("id", &self.inner.id)
                .field("tokens", &*lock(&self.inner.tokens))
                .field("events", &lock(&self.inner.events).len())
                .finish()
        }
    }

    impl LogCapture {
        /// Starts recording the events of the calling thread.
        pub fn start() -> LogCapture {
            static IDS: AtomicU64 = AtomicU64::new(1);
            install();
            let inner = Arc::new(Capture {
                id: IDS.fetch_add(1, Ordering::Relaxed),
                thread: std::thread::current().id(),
                tokens: Mutex::new(Vec::new()),
                events: Mutex::new(Vec::new()),
            });
            lock(&CAPTURES).push(Arc::clone(&inner));
            LogCapture { inner }
        }

        /// Also records events of threads whose name contains `token`
        /// followed by `-` (a unique `cp_name`, or a unique module name for
        /// pools without one: `PoolThread-<token>-<n>`, `<token>-stopper`).
        /// The `-` keeps `x-1` from matching the threads of `x-12`.
        pub fn watch_threads(&self, token: &str) {
            lock(&self.inner.tokens).push(format!("{token}-"));
        }

        /// Every event recorded so far, in order.
        pub fn events(&self) -> Vec<Logged> {
            lock(&self.inner.events).clone()
        }

        /// The messages recorded so far, in order.
        pub fn messages(&self) -> Vec<String> {
            self.events().into_iter().map(|e| e.message).collect()
        }

        /// The error-level events recorded so far (and not flushed).
        pub fn errors(&self) -> Vec<Logged> {
            self.events().into_iter().filter(Logged::is_error).collect()
        }

        /// How many events have exactly this message.
        pub fn count(&self, message: &str) -> usize {
            self.events()
                .iter()
                .filter(|e| e.message == message)
                .count()
        }

        /// Removes and returns the error events whose `failure` mentions
        /// `failure_contains`. Twisted's `flushLoggedErrors(SomeError)`: the
        /// log keeps only the failure's text, so a test names a marker of the
        /// error (its type or message) instead of a class.
        pub fn flush_logged_errors(&self, failure_contains: &str) -> Vec<Logged> {
            let mut events = lock(&self.inner.events);
            let (flushed, kept): (Vec<Logged>, Vec<Logged>) =
                std::mem::take(&mut *events).into_iter().partition(|e| {
                    e.is_error() && e.failure().is_some_and(|f| f.contains(failure_contains))
                });
            *events = kept;
            flushed
        }

        /// Removes and returns every error event. Twisted's
        /// `flushLoggedErrors()` without arguments.
        pub fn flush_all_errors(&self) -> Vec<Logged> {
            let mut events = lock(&self.inner.events);
            let (flushed, kept): (Vec<Logged>, Vec<Logged>) = std::mem::take(&mut *events)
                .into_iter()
                .partition(Logged::is_error);
            *events = kept;
            flushed
        }
    }

    impl Drop for LogCapture {
        fn drop(&mut self) {
            lock(&CAPTURES).retain(|c| c.id != self.inner.id);
        }
    }

    /// Renders events one per line, for assertion messages.
    pub fn render(events: &[Logged]) -> String {
        events
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

pub mod harness {
    //! Bounded reactor runs, waiting on fake reactors, temporary directories.

    use std::cell::{Cell, RefCell};
    use std::future::Future;
    use std::path::{Path, PathBuf};
    use std::rc::Rc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    use deferred::{Deferred, Failure};
    use reactor::prelude::*;
    use reactor::testing::FakeReactor;
    use reactor::Reactor;

    /// How long a test may take before its safety net fails it. Far above
    /// what a slow, noisy machine needs; only a hang reaches it.
    pub const TIMEOUT: Duration = Duration::from_secs(60);

    /// A name unique in this process (and across concurrent test processes):
    /// for pools (`cp_name`), registered modules and temporary directories.
    pub fn unique_name(prefix: &str) -> String {
        static N: AtomicU64 = AtomicU64::new(0);
        format!(
            "{prefix}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// `Ok(())` if `cond`, else a failure carrying `msg`: an assertion for
    /// code that runs inside a Deferred chain or on a worker thread.
    pub fn ensure(cond: bool, msg: impl std::fmt::Display) -> Result<(), Failure> {
        if cond {
            Ok(())
        } else {
            Err(Failure::msg(msg))
        }
    }

    /// Runs `reactor` until the Deferred made by `start` (called once the
    /// reactor runs) fires, then stops it and returns the result. A
    /// safety-net timer stops the reactor and fails the test after `timeout`.
    pub fn run_chain<T: 'static>(
        reactor: &Reactor,
        timeout: Duration,
        start: impl FnOnce() -> Deferred<T> + 'static,
    ) -> Result<T, Failure> {
        let out: Rc<RefCell<Option<Result<T, Failure>>>> = Rc::new(RefCell::new(None));
        let timed_out = Rc::new(Cell::new(false));
        let (o, r) = (Rc::clone(&out), reactor.clone());
        reactor.call_when_running(move || {
            let _ = start().add_both(move |res| {
                *o.borrow_mut() = Some(res);
                let _ = r.stop();
                Ok(())
            });
        });
        let (t, r) = (Rc::clone(&timed_out), reactor.clone());
        let net = reactor.call_later(timeout, move || {
            t.set(true);
            let _ = r.stop();
        });
        reactor.run().expect("the reactor runs");
        if net.active() {
            let _ = net.cancel();
        }
        assert!(
            !timed_out.get(),
            "safety net: the test did not finish within {timeout:?}"
        );
        let result = out.borrow_mut().take();
        result.expect("the test's Deferred fired before the reactor stopped")
    }

    /// [`run_chain`] for an `async` test body (Twisted's `inlineCallbacks`).
    pub fn run_async<T, F, Fut>(reactor: &Reactor, timeout: Duration, body: F) -> Result<T, Failure>
    where
        T: 'static,
        F: FnOnce() -> Fut + 'static,
        Fut: Future<Output = Result<T, Failure>> + 'static,
    {
        let r = reactor.clone();
        run_chain(reactor, timeout, move || r.ensure_deferred(body()))
    }

    /// Turns `reactor` until `d` has a result, and returns it; fails the
    /// test after [`TIMEOUT`]. Work done by real threads (a stopper thread
    /// joining workers) is polled for. It takes turns only: jobs of
    /// [`PoolMode::Manual`](reactor::testing::PoolMode::Manual) pools run when the
    /// test calls `run_jobs` (and `run_jobs` must not be used with
    /// real-thread pools: it would take their workers' quit messages).
    pub fn fake_wait<T: 'static>(reactor: &FakeReactor, d: Deferred<T>) -> Result<T, Failure> {
        let deadline = Instant::now() + TIMEOUT;
        let mut d = d;
        loop {
            reactor.pump();
            match d.into_result() {
                Ok(r) => return r,
                Err(back) => d = back,
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for a Deferred on the fake reactor"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// A temporary directory, removed with its contents when dropped.
    #[derive(Debug)]
    pub struct TempDir {
        path: PathBuf,
    }

    impl TempDir {
        /// Creates a fresh directory under the system's temporary directory.
        pub fn new(prefix: &str) -> TempDir {
            let path = std::env::temp_dir().join(unique_name(prefix));
            std::fs::create_dir_all(&path).expect("create a temporary directory");
            TempDir { path }
        }

        /// Its path.
        pub fn path(&self) -> &Path {
            &self.path
        }

        /// The path of `name` inside it, as a string (for `database=`).
        pub fn file(&self, name: &str) -> String {
            self.path.join(name).to_string_lossy().into_owned()
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

pub mod backend {
    //! Twisted's `DBTestConnector`: how the shared suite reaches a database.

    use adbapi::{Arg, ConnectionPool, PoolError, Value};

    use crate::harness::TempDir;

    /// The capability flags of `DBTestConnector`, with its defaults.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Flags {
        /// NULLs supported.
        pub nulls_ok: bool,
        /// Trailing spaces in strings preserved.
        pub trailing_spaces_ok: bool,
        /// Rollback supported.
        pub can_rollback: bool,
        /// Test bad SQL.
        pub test_failures: bool,
        /// Escape `\` in SQL.
        pub escape_slashes: bool,
        /// The probe query for the reconnect test (`None` skips that test).
        pub good_sql: Option<String>,
        /// `cursor()` fails on a closed connection, so the pool reconnects
        /// within the next job.
        pub early_reconnect: bool,
        /// Tables may be cleared when starting.
        pub can_clear: bool,
        /// Iterations of the test loops (lower for slow databases).
        pub num_iterations: usize,
    }

    impl Default for Flags {
        /// `DBTestConnector`'s class attributes.
        fn default() -> Self {
            Flags {
                nulls_ok: true,
                trailing_spaces_ok: true,
                can_rollback: true,
                test_failures: true,
                escape_slashes: true,
                good_sql: Some("select 1".to_owned()),
                early_reconnect: true,
                can_clear: true,
                num_iterations: 50,
            }
        }
    }

    /// A database the shared suite runs against. Mirrors `DBTestConnector`
    /// (`TEST_PREFIX`, `getPoolArgs`, `makePool`, `startDB`, `stopDB`,
    /// `can_connect`).
    pub trait Backend {
        /// `TEST_PREFIX`, e.g. `"SQLite3"`.
        fn prefix(&self) -> &str;
        /// The DB-API module name, e.g. `"sqlite3"`.
        fn module(&self) -> &str;
        /// The capability flags.
        fn flags(&self) -> Flags;
        /// Whether the database can be reached; the suite skips otherwise
        /// (Twisted: `SkipTest("<prefix>: Cannot access db")`).
        fn can_connect(&self) -> bool {
            true
        }
        /// Brings the database up (`startDB`).
        fn start_db(&self) {}
        /// Brings the database down (`stopDB`).
        fn stop_db(&self) {}
        /// `getPoolArgs()`: positional and keyword arguments for
        /// `ConnectionPool` (after the module name).
        fn pool_args(&self) -> (Vec<Value>, Vec<(String, Arg)>);
        /// `makePool(**newkw)`: a pool from [`pool_args`](Self::pool_args)
        /// with `extra` keyword arguments added or overriding.
        fn make_pool(&self, extra: Vec<(String, Arg)>) -> Result<ConnectionPool, PoolError> {
            let (args, mut kwargs) = self.pool_args();
            for (k, v) in extra {
                match kwargs.iter_mut().find(|(name, _)| *name == k) {
                    Some(slot) => slot.1 = v,
                    None => kwargs.push((k, v)),
                }
            }
            ConnectionPool::new(self.module(), args, kwargs)
        }
        /// What simulates a dead link on the pool's (only) connection; the
        /// suite calls it on the reactor thread in the middle of a chain, so
        /// it is `'static`. Twisted's `ReconnectTestBase._testPool_2` calls
        /// `close()` on the first raw connection in `pool.connections`; so
        /// does the default. A server database may rather have the server
        /// end the session.
        fn connection_killer(&self) -> Box<dyn Fn(&ConnectionPool)> {
            Box::new(|pool: &ConnectionPool| {
                let conns = pool.connections();
                let (_, conn) = conns.first().expect("the pool has a connection to kill");
                conn.close().expect("closing the raw connection");
            })
        }
    }

    /// Twisted's `SQLite3Connector`: a database file in a fresh temporary
    /// directory, `cp_max=1`, `check_same_thread=False`;
    /// `escape_slashes=False`, `num_iterations=1`.
    #[derive(Debug)]
    pub struct Sqlite3Backend {
        dir: TempDir,
        database: String,
        num_iterations: usize,
    }

    impl Default for Sqlite3Backend {
        fn default() -> Self {
            Self::new()
        }
    }

    impl Sqlite3Backend {
        /// As Twisted's connector (`num_iterations = 1`).
        pub fn new() -> Self {
            Self::with_iterations(1)
        }

        /// As Twisted's connector, with another `num_iterations`. Twisted
        /// uses 1 for SQLite because it is "slow" under a global lock; this
        /// pool has no such limit, so the suite also runs with 50.
        pub fn with_iterations(num_iterations: usize) -> Self {
            let dir = TempDir::new("adbapi-sqlite3");
            let database = dir.file("twisted_test");
            Sqlite3Backend {
                dir,
                database,
                num_iterations,
            }
        }

        /// The database file.
        pub fn database(&self) -> &str {
            &self.database
        }

        /// The temporary directory (`DB_DIR`).
        pub fn dir(&self) -> &TempDir {
            &self.dir
        }
    }

    impl Backend for Sqlite3Backend {
        fn prefix(&self) -> &str {
            "SQLite3"
        }

        fn module(&self) -> &str {
            "sqlite3"
        }

        fn flags(&self) -> Flags {
            Flags {
                escape_slashes: false,
                num_iterations: self.num_iterations,
                ..Flags::default()
            }
        }

        fn start_db(&self) {
            if std::path::Path::new(&self.database).exists() {
                std::fs::remove_file(&self.database).expect("remove the old database");
            }
        }

        fn pool_args(&self) -> (Vec<Value>, Vec<(String, Arg)>) {
            (
                Vec::new(),
                adbapi::kwargs! {
                    "database" => self.database.as_str(),
                    "cp_max" => 1,
                    "check_same_thread" => false,
                },
            )
        }
    }
}

pub mod pg {
    //! The PostgreSQL side of the suite: the server from `ADBAPI_PG_URL`
    //! (see `scripts/pg-test-server`), a fresh database per backend, and
    //! Twisted's `PsycopgConnector`.

    use std::time::{Duration, Instant};

    use adbapi::dbapi::{self, DbConnection, Params, Row};
    use adbapi::{Arg, ConnectionPool, Value};

    use crate::backend::{Backend, Flags};
    use crate::harness::unique_name;

    /// The server's URL. Panics with a clear message if unset: the tests that
    /// call it are only compiled in (not ignored) when it was set at build
    /// time.
    pub fn url() -> String {
        std::env::var("ADBAPI_PG_URL").expect(
            "ADBAPI_PG_URL must be set when the PostgreSQL tests are compiled in (eval \"$(scripts/pg-test-server start)\")",
        )
    }

    static SERVER: std::sync::RwLock<()> = std::sync::RwLock::new(());

    /// Held by every test that uses the server: tests share it, but never
    /// with a test that restarts it (cargo runs test binaries one at a time,
    /// so a process-wide lock is enough).
    pub fn sharing_server() -> std::sync::RwLockReadGuard<'static, ()> {
        SERVER.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Held by a test that restarts the server: it runs alone.
    pub fn disrupting_server() -> std::sync::RwLockWriteGuard<'static, ()> {
        SERVER.write().unwrap_or_else(|p| p.into_inner())
    }

    /// A direct connection to `url` (outside any pool).
    pub fn direct_to(url: &str) -> DbConnection {
        dbapi::connect("psycopg2", &[url.into()], &[])
            .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
    }

    /// Executes one statement on `conn`, commits, and returns the rows.
    pub fn exec(conn: &DbConnection, sql: &str, params: impl Into<Params>) -> Vec<Row> {
        let mut c = conn.cursor().expect("cursor");
        c.execute(sql, params)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let rows = c.fetchall().expect("fetchall");
        conn.commit().expect("commit");
        rows
    }

    /// `url` with its database replaced by `db`.
    fn with_database(url: &str, db: &str) -> String {
        let (base, query) = match url.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (url, None),
        };
        let root = base.rsplit_once('/').map_or(base, |(r, _)| r);
        match query {
            Some(q) => format!("{root}/{db}?{q}"),
            None => format!("{root}/{db}"),
        }
    }

    /// Twisted's `PsycopgConnector` (`cp_min=0`), on a database of its own
    /// so tests running in parallel never share tables. Flags as Twisted's
    /// defaults, except `early_reconnect = false`: the driver learns that the
    /// server ended a session only when its next statement fails, as
    /// Twisted's MySQL connector does.
    #[derive(Debug)]
    pub struct PsycopgBackend {
        admin_url: String,
        db: String,
        url: String,
        num_iterations: usize,
    }

    impl PsycopgBackend {
        /// A backend with a fresh, empty database.
        pub fn new() -> Self {
            let admin_url = url();
            let db = unique_name("adbapi_t").replace('-', "_").to_lowercase();
            let admin = direct_to(&admin_url);
            // CREATE DATABASE cannot run in a transaction block.
            admin.set_autocommit(true).expect("autocommit");
            exec(&admin, &format!("CREATE DATABASE {db}"), ());
            let url = with_database(&admin_url, &db);
            PsycopgBackend {
                admin_url,
                db,
                url,
                num_iterations: 50,
            }
        }

        /// The URL of this backend's database.
        pub fn url(&self) -> &str {
            &self.url
        }

        /// Ends every session on this backend's database, and waits (bounded)
        /// until they are gone.
        pub fn kill_sessions(&self) {
            kill_sessions(&self.admin_url, &self.db);
        }
    }

    impl Default for PsycopgBackend {
        fn default() -> Self {
            Self::new()
        }
    }

    /// Ends every session on database `db` but the caller's own.
    pub fn kill_sessions(admin_url: &str, db: &str) {
        let admin = direct_to(admin_url);
        exec(
            &admin,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (db,),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = exec(
                &admin,
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (db,),
            );
            if left[0][0] == Value::Int(0) {
                return;
            }
            assert!(Instant::now() < deadline, "sessions on {db} did not end");
            std::thread::yield_now();
        }
    }

    impl Drop for PsycopgBackend {
        fn drop(&mut self) {
            kill_sessions(&self.admin_url, &self.db);
            let admin = direct_to(&self.admin_url);
            if admin.set_autocommit(true).is_ok() {
                let mut c = admin.cursor().expect("cursor");
                if let Err(e) = c.execute(&format!("DROP DATABASE IF EXISTS {}", self.db), ()) {
                    tracing::error!("could not drop test database {}: {e}", self.db);
                }
            }
        }
    }

    impl Backend for PsycopgBackend {
        fn prefix(&self) -> &str {
            "Psycopg"
        }

        fn module(&self) -> &str {
            "psycopg2"
        }

        fn flags(&self) -> Flags {
            Flags {
                early_reconnect: false,
                num_iterations: self.num_iterations,
                ..Flags::default()
            }
        }

        fn pool_args(&self) -> (Vec<Value>, Vec<(String, Arg)>) {
            (
                vec![self.url.as_str().into()],
                adbapi::kwargs! { "cp_min" => 0 },
            )
        }

        fn connection_killer(&self) -> Box<dyn Fn(&ConnectionPool)> {
            let (admin, db) = (self.admin_url.clone(), self.db.clone());
            Box::new(move |_pool: &ConnectionPool| kill_sessions(&admin, &db))
        }
    }
}

pub mod fakes {
    //! DB-API modules for tests, registered under unique names.
    //!
    //! A [`TestModule`] either fakes every connection (each operation
    //! succeeds and returns no rows unless told to fail, like the fake
    //! connection classes of `test_adbapi.py`) or wraps the real `sqlite3`
    //! module (a spy). Either way it records every call with its connection
    //! number and thread in a shared [`ModuleState`].

    use std::error::Error as StdError;
    use std::fmt;
    use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::thread::ThreadId;

    use adbapi::dbapi::{
        register_module, ConnectArgs, DbApiModule, DbError, DbResult, DriverConnection, ErrorKind,
        ExecResult, Params,
    };
    use adbapi::drivers::sqlite::SqliteModule;

    /// Python's `RuntimeError`, as raised by the fakes of `test_adbapi.py`.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct RuntimeError(pub String);

    impl fmt::Display for RuntimeError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "RuntimeError: {}", self.0)
        }
    }

    impl StdError for RuntimeError {}

    /// Python's `ValueError`, as raised by the tests' functions.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ValueError(pub String);

    impl fmt::Display for ValueError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "ValueError: {}", self.0)
        }
    }

    impl StdError for ValueError {}

    /// `RuntimeError("problem!")` as a driver error: a [`DbError`] whose
    /// source is the [`RuntimeError`], so `failure.check::<RuntimeError>()`
    /// finds it and its text (in logs too) says `problem!`.
    pub fn problem() -> DbError {
        DbError::new(ErrorKind::DatabaseError, "RuntimeError: problem!")
            .with_source(RuntimeError("problem!".to_owned()))
    }

    /// The error a faked `execute` fails with: the server went away.
    pub fn server_gone() -> DbError {
        DbError::new(
            ErrorKind::OperationalError,
            "server closed the connection unexpectedly",
        )
        .with_connection_lost(true)
    }

    /// One recorded call.
    #[derive(Debug, Clone)]
    pub struct Call {
        /// The connection's number (1, 2, ... in connect order).
        pub conn: u64,
        /// `connect`, `cursor`, `execute <sql>`, `commit`, `rollback`,
        /// `close`.
        pub op: String,
        /// The calling thread.
        pub thread: ThreadId,
        /// Its name.
        pub thread_name: Option<String>,
    }

    /// What a [`TestModule`] records, and the failures it injects (set them
    /// at any time; they apply to every connection of the module).
    #[derive(Debug, Default)]
    pub struct ModuleState {
        /// `rollback()` fails with [`problem`].
        pub fail_rollback: AtomicBool,
        /// `close()` fails with [`problem`] (the connection is closed anyway).
        pub fail_close: AtomicBool,
        /// `commit()` fails with `commit problem!`.
        pub fail_commit: AtomicBool,
        /// `execute()` fails with [`server_gone`].
        pub fail_execute: AtomicBool,
        /// How many of the next `cursor()` calls fail with [`problem`].
        pub cursor_failures: AtomicUsize,
        calls: Mutex<Vec<Call>>,
        serial: AtomicU64,
        open: AtomicI64,
    }

    impl ModuleState {
        fn record(&self, conn: u64, op: impl Into<String>) {
            let t = std::thread::current();
            self.calls
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Call {
                    conn,
                    op: op.into(),
                    thread: t.id(),
                    thread_name: t.name().map(str::to_owned),
                });
        }

        /// Every call so far, in order.
        pub fn calls(&self) -> Vec<Call> {
            self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
        }

        /// The operations so far, in order.
        pub fn ops(&self) -> Vec<String> {
            self.calls().into_iter().map(|c| c.op).collect()
        }

        /// The operations on connection `conn`, in order.
        pub fn ops_of(&self, conn: u64) -> Vec<String> {
            self.calls()
                .into_iter()
                .filter(|c| c.conn == conn)
                .map(|c| c.op)
                .collect()
        }

        /// How many calls had exactly this operation.
        pub fn count(&self, op: &str) -> usize {
            self.calls().iter().filter(|c| c.op == op).count()
        }

        /// Connections opened and not closed yet.
        pub fn open_connections(&self) -> i64 {
            self.open.load(Ordering::SeqCst)
        }

        /// Forgets the calls recorded so far.
        pub fn clear_calls(&self) {
            self.calls.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
    }

    /// A registered test module; see the module docs.
    pub struct TestModule {
        name: String,
        compliant: bool,
        wraps_sqlite: bool,
        state: Arc<ModuleState>,
    }

    impl fmt::Debug for TestModule {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("TestModule")
                .field("name", &self.name)
                .field("compliant", &self.compliant)
                .field("wraps_sqlite", &self.wraps_sqlite)
                .finish()
        }
    }

    /// Registers a fake module (no database behind it) under a unique name
    /// starting with `prefix`. Not `compliant`: `apilevel` and
    /// `threadsafety` are absent, as for the module `test_adbapi.py` uses
    /// as its own fake DB-API module.
    pub fn register_fake_module(prefix: &str, compliant: bool) -> (String, Arc<ModuleState>) {
        register(prefix, compliant, false)
    }

    /// Registers a spy around `sqlite3` under a unique name starting with
    /// `prefix`; it takes `sqlite3`'s connect arguments.
    pub fn register_spy_module(prefix: &str) -> (String, Arc<ModuleState>) {
        register(prefix, true, true)
    }

    fn register(prefix: &str, compliant: bool, wraps_sqlite: bool) -> (String, Arc<ModuleState>) {
        let name = crate::harness::unique_name(prefix);
        let state = Arc::new(ModuleState::default());
        let module = TestModule {
            name: name.clone(),
            compliant,
            wraps_sqlite,
            state: Arc::clone(&state),
        };
        register_module(&name, Arc::new(module));
        (name, state)
    }

    impl DbApiModule for TestModule {
        fn name(&self) -> &str {
            &self.name
        }

        fn apilevel(&self) -> Option<&str> {
            self.compliant.then_some("2.0")
        }

        fn threadsafety(&self) -> Option<i64> {
            self.compliant.then_some(1)
        }

        fn paramstyle(&self) -> &str {
            "qmark"
        }

        fn connect(&self, args: &ConnectArgs) -> DbResult<Box<dyn DriverConnection>> {
            let inner = if self.wraps_sqlite {
                Some(SqliteModule.connect(args)?)
            } else {
                None
            };
            let serial = self.state.serial.fetch_add(1, Ordering::SeqCst) + 1;
            self.state.open.fetch_add(1, Ordering::SeqCst);
            self.state.record(serial, "connect");
            Ok(Box::new(TestConnection {
                serial,
                inner,
                closed: false,
                state: Arc::clone(&self.state),
            }))
        }
    }

    struct TestConnection {
        serial: u64,
        inner: Option<Box<dyn DriverConnection>>,
        closed: bool,
        state: Arc<ModuleState>,
    }

    impl DriverConnection for TestConnection {
        fn execute(&mut self, sql: &str, params: &Params) -> DbResult<ExecResult> {
            self.state.record(self.serial, format!("execute {sql}"));
            if self.state.fail_execute.load(Ordering::SeqCst) {
                return Err(server_gone().with_sql(sql));
            }
            match &mut self.inner {
                Some(c) => c.execute(sql, params),
                None => Ok(ExecResult {
                    rowcount: -1,
                    ..ExecResult::default()
                }),
            }
        }

        fn commit(&mut self) -> DbResult<()> {
            self.state.record(self.serial, "commit");
            if self.state.fail_commit.load(Ordering::SeqCst) {
                return Err(DbError::new(ErrorKind::OperationalError, "commit problem!"));
            }
            self.inner.as_mut().map_or(Ok(()), |c| c.commit())
        }

        fn rollback(&mut self) -> DbResult<()> {
            self.state.record(self.serial, "rollback");
            if self.state.fail_rollback.load(Ordering::SeqCst) {
                return Err(problem());
            }
            self.inner.as_mut().map_or(Ok(()), |c| c.rollback())
        }

        fn close(&mut self) -> DbResult<()> {
            self.state.record(self.serial, "close");
            if !self.closed {
                self.closed = true;
                self.state.open.fetch_sub(1, Ordering::SeqCst);
            }
            let r = self.inner.take().map_or(Ok(()), |mut c| c.close());
            if self.state.fail_close.load(Ordering::SeqCst) {
                return Err(problem());
            }
            r
        }

        fn check_cursor(&mut self) -> DbResult<()> {
            self.state.record(self.serial, "cursor");
            let failed = self
                .state
                .cursor_failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if failed {
                return Err(problem());
            }
            self.inner.as_mut().map_or(Ok(()), |c| c.check_cursor())
        }
    }
}

pub mod suite {
    //! Twisted's `ADBAPITestBase.test_pool` and `ReconnectTestBase.test_pool`
    //! (`src/twisted/test/test_adbapi.py`), against any [`Backend`].
    //!
    //! Both run on a real [`Reactor`]: the chain starts once the reactor runs
    //! and stops it at the end; a safety-net timer fails the test if it
    //! hangs. Each step is a function named after Twisted's, returning the
    //! Deferred Twisted's returns.

    use std::cell::RefCell;
    use std::rc::Rc;
    use std::sync::{Arc, Mutex};

    use adbapi::dbapi::{DatabaseError, DbConnection};
    use adbapi::{kwargs, Arg, Connection, ConnectionLost, ConnectionPool, Transaction};
    use deferred::{gather_results, Deferred, DeferredList, Failure};
    use reactor::Reactor;

    use crate::backend::{Backend, Flags};
    use crate::harness::{ensure, run_chain, unique_name, TIMEOUT};
    use crate::logs::{render, LogCapture, Logged};

    /// `simple_table_schema`.
    pub const SIMPLE_TABLE_SCHEMA: &str = "\nCREATE TABLE simple (\n  x integer\n)\n";

    struct Ctx {
        pool: ConnectionPool,
        flags: Flags,
        openfun_called: Arc<Mutex<Vec<DbConnection>>>,
        logs: LogCapture,
        snapshot: RefCell<Vec<Logged>>,
        killed: RefCell<Option<DbConnection>>,
        killer: Box<dyn Fn(&ConnectionPool)>,
    }

    type Step = fn(&Rc<Ctx>) -> Deferred<()>;

    fn then(d: Deferred<()>, ctx: &Rc<Ctx>, step: Step) -> Deferred<()> {
        let c = Rc::clone(ctx);
        d.add_callback_deferred(move |()| step(&c))
    }

    /// `d.addCallbacks(lambda res: self.fail("no exception"), lambda f: None)`.
    fn expect_failure<T: 'static>(d: Deferred<T>, what: &'static str) -> Deferred<()> {
        d.add_callbacks(
            move |_| Err(Failure::msg(format!("{what}: no exception"))),
            |_| Ok(()),
        )
    }

    fn count_of(rows: &[adbapi::Row]) -> Result<i64, Failure> {
        let row = rows
            .first()
            .ok_or_else(|| Failure::msg("count query returned no row"))?;
        Ok(row.get::<i64>(0)?)
    }

    /// `tearDown`: drop the table, then close the pool (even if the drop
    /// failed, so no worker outlives the test); fails if either failed.
    fn tear_down(pool: &ConnectionPool) -> Deferred<()> {
        let p = pool.clone();
        pool.run_operation("DROP TABLE simple", ())
            .add_both_deferred(move |dropped| {
                p.close()
                    .add_callback_result(move |()| dropped.map_err(|f| f.context("DROP TABLE")))
            })
    }

    fn skip(backend: &dyn Backend, why: &str) {
        tracing::warn!(prefix = backend.prefix(), "skipped: {why}");
    }

    // -----------------------------------------------------------------
    // ADBAPITestBase
    // -----------------------------------------------------------------

    /// `ADBAPITestBase.test_pool` (with `extraSetUp` and `tearDown`).
    ///
    /// # Panics
    /// If any step fails, with the failure's traceback.
    pub fn adbapi_test_pool(backend: &dyn Backend) {
        if !backend.can_connect() {
            skip(backend, &format!("{}: Cannot access db", backend.prefix()));
            return;
        }
        // extraSetUp
        backend.start_db();
        let logs = LogCapture::start();
        let name = unique_name(&format!("{}-adbapi", backend.prefix()));
        logs.watch_threads(&name);
        let reactor = Reactor::new().expect("a reactor");
        let openfun_called: Arc<Mutex<Vec<DbConnection>>> = Arc::default();
        let recorder = Arc::clone(&openfun_called);
        let pool = backend
            .make_pool(kwargs! {
                // openfun(conn): self.openfun_called[conn] = True
                "cp_openfun" => Arg::openfun(move |conn| {
                    recorder.lock().unwrap_or_else(|p| p.into_inner()).push(conn.clone());
                    Ok(())
                }),
                // Not in Twisted (which ignores cp_name): names the worker
                // threads so their log events reach this test's capture.
                "cp_name" => name.as_str(),
                "cp_reactor" => Arg::reactor(reactor.clone()),
            })
            .expect("makePool");
        pool.start().expect("dbpool.start()");

        let ctx = Rc::new(Ctx {
            pool: pool.clone(),
            flags: backend.flags(),
            openfun_called,
            logs,
            snapshot: RefCell::new(Vec::new()),
            killed: RefCell::new(None),
            killer: backend.connection_killer(),
        });
        let c = Rc::clone(&ctx);
        let result = run_chain(&reactor, TIMEOUT, move || {
            let d = c.pool.run_operation(SIMPLE_TABLE_SCHEMA, ());
            let mut d = d;
            if c.flags.test_failures {
                d = then(d, &c, test_pool_1_1);
                d = then(d, &c, test_pool_1_2);
                d = then(d, &c, test_pool_1_3);
                d = then(d, &c, test_pool_1_4);
                let c2 = Rc::clone(&c);
                d = d.add_callback(move |()| {
                    c2.logs.flush_all_errors();
                });
            }
            for step in [
                test_pool_2 as Step,
                test_pool_3,
                test_pool_4,
                test_pool_5,
                test_pool_6,
                test_pool_7,
                test_pool_8,
                test_pool_9,
            ] {
                d = then(d, &c, step);
            }
            let p = c.pool.clone();
            d.add_both_deferred(move |test| {
                tear_down(&p).add_both(move |td| {
                    test.map_err(|f| f.context("test_pool"))?;
                    td.map_err(|f| f.context("tearDown"))
                })
            })
        });
        backend.stop_db();
        if let Err(f) = result {
            panic!(
                "{}ADBAPITests.test_pool failed: {}",
                backend.prefix(),
                f.traceback()
            );
        }
        // trial fails a test that logged errors it did not flush.
        let errors = ctx.logs.errors();
        assert!(
            errors.is_empty(),
            "unexpected logged errors:\n{}",
            render(&errors)
        );
        assert!(!pool.running(), "the pool was closed by tearDown");
    }

    fn check_openfun_called(ctx: &Ctx, conn: Option<&DbConnection>) -> Result<(), Failure> {
        let called = ctx.openfun_called.lock().unwrap_or_else(|p| p.into_inner());
        match conn {
            None => ensure(!called.is_empty(), "openfun was never called"),
            Some(c) => ensure(
                called.iter().any(|o| DbConnection::ptr_eq(o, c)),
                format!("openfun was not called with {c:?}"),
            ),
        }
    }

    fn test_pool_1_1(ctx: &Rc<Ctx>) -> Deferred<()> {
        expect_failure(
            ctx.pool.run_query("select * from NOTABLE", ()),
            "_testPool_1_1",
        )
    }

    fn test_pool_1_2(ctx: &Rc<Ctx>) -> Deferred<()> {
        expect_failure(
            ctx.pool.run_operation("deletexxx from NOTABLE", ()),
            "_testPool_1_2",
        )
    }

    fn test_pool_1_3(ctx: &Rc<Ctx>) -> Deferred<()> {
        let can_rollback = ctx.flags.can_rollback;
        expect_failure(
            ctx.pool
                .run_interaction(move |txn| bad_interaction(txn, can_rollback)),
            "_testPool_1_3",
        )
    }

    fn test_pool_1_4(ctx: &Rc<Ctx>) -> Deferred<()> {
        expect_failure(
            ctx.pool.run_with_connection(bad_with_connection),
            "_testPool_1_4",
        )
    }

    fn test_pool_2(ctx: &Rc<Ctx>) -> Deferred<()> {
        // verify simple table is empty
        let c = Rc::clone(ctx);
        ctx.pool
            .run_query("select count(1) from simple", ())
            .add_callback_result(move |rows| {
                ensure(count_of(&rows)? == 0, "Interaction not rolled back")?;
                check_openfun_called(&c, None)
            })
    }

    fn test_pool_3(ctx: &Rc<Ctx>) -> Deferred<()> {
        let n = ctx.flags.num_iterations;
        // add some rows to simple table (runOperation)
        let inserts: Vec<Deferred<()>> = (0..n)
            .map(|i| {
                ctx.pool
                    .run_operation(&format!("insert into simple(x) values({i})"), ())
            })
            .collect();
        let pool = ctx.pool.clone();
        gather_results(inserts, false)
            // make sure they were added (runQuery)
            .add_callback_deferred(move |_| pool.run_query("select x from simple order by x", ()))
            .add_callback_result(move |rows| {
                ensure(rows.len() == n, "Wrong number of rows")?;
                for (i, row) in rows.iter().enumerate() {
                    ensure(row.len() == 1, "Wrong size row")?;
                    ensure(row.get::<usize>(0)? == i, "Values not returned.")?;
                }
                Ok(())
            })
    }

    fn test_pool_4(ctx: &Rc<Ctx>) -> Deferred<()> {
        // runInteraction
        let n = ctx.flags.num_iterations;
        ctx.pool
            .run_interaction(move |txn| interaction(txn, n))
            .add_callback_result(|res| ensure(res == "done", format!("{res:?} != \"done\"")))
    }

    fn test_pool_5(ctx: &Rc<Ctx>) -> Deferred<()> {
        // withConnection
        let n = ctx.flags.num_iterations;
        ctx.pool
            .run_with_connection(move |conn| with_connection(conn, n))
            .add_callback_result(|res| ensure(res == "done", format!("{res:?} != \"done\"")))
    }

    fn test_pool_6(ctx: &Rc<Ctx>) -> Deferred<()> {
        // Test a withConnection cannot be closed
        ctx.pool.run_with_connection(close_with_connection)
    }

    fn test_pool_7(ctx: &Rc<Ctx>) -> Deferred<()> {
        // give the pool a workout
        let n = ctx.flags.num_iterations;
        let ds: Vec<Deferred<Vec<adbapi::Row>>> = (0..n)
            .map(|i| {
                ctx.pool
                    .run_query(&format!("select x from simple where x = {i}"), ())
            })
            .collect();
        DeferredList::new(ds)
            .fire_on_one_errback(true)
            .build()
            .add_callback_result(move |result| {
                ensure(result.len() == n, "DeferredList lost results")?;
                for (i, r) in result.into_iter().enumerate() {
                    let rows = r?;
                    let row = rows
                        .first()
                        .ok_or_else(|| Failure::msg("Value not returned"))?;
                    ensure(row.get::<usize>(0)? == i, "Value not returned")?;
                }
                Ok(())
            })
    }

    fn test_pool_8(ctx: &Rc<Ctx>) -> Deferred<()> {
        // now delete everything
        let n = ctx.flags.num_iterations;
        let ds: Vec<Deferred<()>> = (0..n)
            .map(|i| {
                ctx.pool
                    .run_operation(&format!("delete from simple where x = {i}"), ())
            })
            .collect();
        DeferredList::new(ds)
            .fire_on_one_errback(true)
            .build()
            .add_callback_result(|results| {
                for r in results {
                    r?;
                }
                Ok(())
            })
    }

    fn test_pool_9(ctx: &Rc<Ctx>) -> Deferred<()> {
        // verify simple table is empty
        let c = Rc::clone(ctx);
        ctx.pool
            .run_query("select count(1) from simple", ())
            .add_callback_result(move |rows| {
                ensure(
                    count_of(&rows)? == 0,
                    "Didn't successfully delete table contents",
                )?;
                check_connect(&c)
            })
    }

    /// Check the connect/disconnect synchronous calls.
    fn check_connect(ctx: &Ctx) -> Result<(), Failure> {
        let conn = ctx.pool.connect()?;
        check_openfun_called(ctx, Some(&conn))?;
        let mut curs = conn.cursor()?;
        curs.execute("insert into simple(x) values(1)", ())?;
        curs.execute("select x from simple", ())?;
        let res = curs.fetchall()?;
        ensure(res.len() == 1, format!("{} rows, expected 1", res.len()))?;
        ensure(res[0].len() == 1, "row of 1 column expected")?;
        ensure(res[0].get::<i64>(0)? == 1, "value 1 expected")?;
        curs.execute("delete from simple", ())?;
        curs.execute("select x from simple", ())?;
        ensure(curs.fetchall()?.is_empty(), "rows left after delete")?;
        curs.close();
        ctx.pool.disconnect(Some(&conn))?;
        Ok(())
    }

    fn interaction(txn: &mut Transaction<'_>, n: usize) -> Result<&'static str, Failure> {
        txn.execute("select x from simple order by x", ())?;
        for i in 0..n {
            let row = txn
                .fetchone()?
                .ok_or_else(|| Failure::msg("Value not returned."))?;
            ensure(row.len() == 1, "Wrong size row")?;
            ensure(row.get::<usize>(0)? == i, "Value not returned.")?;
        }
        ensure(txn.fetchone()?.is_none(), "Too many rows")?;
        Ok("done")
    }

    fn bad_interaction(txn: &mut Transaction<'_>, can_rollback: bool) -> Result<(), Failure> {
        if can_rollback {
            txn.execute("insert into simple(x) values(0)", ())?;
        }
        txn.execute("select * from NOTABLE", ())?;
        Ok(())
    }

    fn with_connection(conn: &mut Connection, n: usize) -> Result<&'static str, Failure> {
        let mut curs = conn.cursor()?;
        let body = (|| {
            curs.execute("select x from simple order by x", ())?;
            for i in 0..n {
                let row = curs
                    .fetchone()?
                    .ok_or_else(|| Failure::msg("Value not returned."))?;
                ensure(row.len() == 1, "Wrong size row")?;
                ensure(row.get::<usize>(0)? == i, "Value not returned.")?;
            }
            Ok(())
        })();
        // finally:
        curs.close();
        body.map(|()| "done")
    }

    fn close_with_connection(conn: &mut Connection) -> Result<(), Failure> {
        conn.close();
        Ok(())
    }

    fn bad_with_connection(conn: &mut Connection) -> Result<(), Failure> {
        let mut curs = conn.cursor()?;
        let r = curs.execute("select * from NOTABLE", ()).map(|_| ());
        // finally:
        curs.close();
        Ok(r?)
    }

    // -----------------------------------------------------------------
    // ReconnectTestBase
    // -----------------------------------------------------------------

    /// `ReconnectTestBase.test_pool` (with `extraSetUp` and `tearDown`).
    ///
    /// Beyond Twisted, the pool is also `cp_noisy` and the test checks the
    /// log: with `early_reconnect`, `Cursor creation failed` is logged
    /// exactly once (it is what `_testPool_5` flushes), followed by
    /// `Connection lost, reconnecting`, `adbapi closing: <module>` and
    /// `adbapi connecting: <module>`, and the reconnected pool holds a new
    /// raw connection.
    ///
    /// # Panics
    /// If any step fails, with the failure's traceback.
    pub fn reconnect_test_pool(backend: &dyn Backend) {
        if !backend.can_connect() {
            skip(backend, &format!("{}: Cannot access db", backend.prefix()));
            return;
        }
        let flags = backend.flags();
        let Some(good_sql) = flags.good_sql.clone() else {
            skip(backend, "no good sql for reconnect test");
            return;
        };
        // extraSetUp
        backend.start_db();
        let logs = LogCapture::start();
        let name = unique_name(&format!("{}-reconnect", backend.prefix()));
        logs.watch_threads(&name);
        let reactor = Reactor::new().expect("a reactor");
        let pool = backend
            .make_pool(kwargs! {
                "cp_max" => 1,
                "cp_reconnect" => true,
                "cp_good_sql" => good_sql.as_str(),
                // Not in Twisted: informational logs to check, and thread
                // names for the capture.
                "cp_noisy" => true,
                "cp_name" => name.as_str(),
                "cp_reactor" => Arg::reactor(reactor.clone()),
            })
            .expect("makePool");
        pool.start().expect("dbpool.start()");

        let ctx = Rc::new(Ctx {
            pool: pool.clone(),
            flags: flags.clone(),
            openfun_called: Arc::default(),
            logs,
            snapshot: RefCell::new(Vec::new()),
            killed: RefCell::new(None),
            killer: backend.connection_killer(),
        });
        let c = Rc::clone(&ctx);
        let result = run_chain(&reactor, TIMEOUT, move || {
            // extraSetUp returns runOperation(simple_table_schema)
            let mut d = c.pool.run_operation(SIMPLE_TABLE_SCHEMA, ());
            d = then(d, &c, reconnect_pool_1);
            d = then(d, &c, reconnect_pool_2);
            if !c.flags.early_reconnect {
                d = then(d, &c, reconnect_pool_3);
            }
            d = then(d, &c, reconnect_pool_4);
            d = then(d, &c, reconnect_pool_5);
            let p = c.pool.clone();
            d.add_both_deferred(move |test| {
                tear_down(&p).add_both(move |td| {
                    test.map_err(|f| f.context("test_pool"))?;
                    td.map_err(|f| f.context("tearDown"))
                })
            })
        });
        backend.stop_db();
        if let Err(f) = result {
            panic!(
                "{}ReconnectTests.test_pool failed: {}\nlog:\n{}",
                backend.prefix(),
                f.traceback(),
                render(&ctx.logs.events())
            );
        }
        let errors = ctx.logs.errors();
        assert!(
            errors.is_empty(),
            "unexpected logged errors after _testPool_5's flush:\n{}",
            render(&errors)
        );
        if flags.early_reconnect {
            check_reconnect_log(&ctx.snapshot.borrow(), backend.module());
        }
    }

    /// The log up to `_testPool_5`: one `Cursor creation failed`, then the
    /// noisy reconnect messages in Twisted's order.
    fn check_reconnect_log(events: &[Logged], module: &str) {
        let failed: Vec<usize> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| e.message == "Cursor creation failed")
            .map(|(i, _)| i)
            .collect();
        assert_eq!(
            failed.len(),
            1,
            "`Cursor creation failed` logged once; log:\n{}",
            render(events)
        );
        let at = failed[0];
        assert!(
            events[at].is_error(),
            "`Cursor creation failed` is an error"
        );
        assert!(
            events[at].failure().is_some(),
            "`Cursor creation failed` carries the failure"
        );
        let closing = format!("adbapi closing: {module}");
        let connecting = format!("adbapi connecting: {module}");
        let after: Vec<&str> = events[at + 1..]
            .iter()
            .map(|e| e.message.as_str())
            .filter(|m| m.starts_with("adbapi ") || m.starts_with("Connection lost"))
            .take(3)
            .collect();
        assert_eq!(
            after,
            [
                "Connection lost, reconnecting",
                closing.as_str(),
                connecting.as_str()
            ],
            "log:\n{}",
            render(events)
        );
    }

    fn reconnect_pool_1(ctx: &Rc<Ctx>) -> Deferred<()> {
        ctx.pool
            .run_query("select count(1) from simple", ())
            .add_callback_result(|rows| ensure(count_of(&rows)? == 0, "Table not empty"))
    }

    fn reconnect_pool_2(ctx: &Rc<Ctx>) -> Deferred<()> {
        // reach in and close the connection manually
        let conns = ctx.pool.connections();
        if conns.len() != 1 {
            return deferred::fail(Failure::msg(format!(
                "cp_max=1: expected one connection, found {}",
                conns.len()
            )));
        }
        *ctx.killed.borrow_mut() = Some(conns[0].1.clone());
        (ctx.killer)(&ctx.pool);
        deferred::succeed(())
    }

    fn reconnect_pool_3(ctx: &Rc<Ctx>) -> Deferred<()> {
        expect_failure(
            ctx.pool.run_query("select count(1) from simple", ()),
            "_testPool_3",
        )
    }

    fn reconnect_pool_4(ctx: &Rc<Ctx>) -> Deferred<()> {
        let c = Rc::clone(ctx);
        ctx.pool
            .run_query("select count(1) from simple", ())
            .add_callback_result(move |rows| {
                ensure(count_of(&rows)? == 0, "Table not empty")?;
                // Beyond Twisted: the pool holds a new, open raw connection.
                let conns = c.pool.connections();
                ensure(conns.len() == 1, "one connection after reconnecting")?;
                let killed = c.killed.borrow().clone();
                ensure(
                    killed.is_some_and(|k| !DbConnection::ptr_eq(&k, &conns[0].1)),
                    "the dead connection was replaced",
                )?;
                ensure(!conns[0].1.is_closed(), "the new connection is open")
            })
    }

    fn reconnect_pool_5(ctx: &Rc<Ctx>) -> Deferred<()> {
        *ctx.snapshot.borrow_mut() = ctx.logs.events();
        ctx.logs.flush_all_errors();
        // bad sql
        ctx.pool
            .run_query("select * from NOTABLE", ())
            .add_callbacks(
                |_| Err(Failure::msg("_testPool_5: no exception")),
                |f| {
                    ensure(
                        f.check::<ConnectionLost>().is_none(),
                        format!("an SQL error became ConnectionLost: {f}"),
                    )?;
                    // Beyond Twisted: it is the driver's error.
                    ensure(
                        f.check::<DatabaseError>().is_some(),
                        format!("expected a DatabaseError, got {f}"),
                    )
                },
            )
    }
}
