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

/// A direct connection to the server's database, for setup and
/// inspection outside any pool.
pub fn direct() -> DbConnection {
    direct_to(&url())
}

/// A `psycopg2` pool on the server's database, on `reactor`, with `extra`
/// keyword arguments.
pub fn pool_on(reactor: &reactor::Reactor, extra: Vec<(String, Arg)>) -> ConnectionPool {
    let mut kw = vec![("cp_reactor".to_owned(), Arg::reactor(reactor.clone()))];
    kw.extend(extra);
    ConnectionPool::new("psycopg2", vec![url().into()], kw).expect("pool")
}

/// A test against the PostgreSQL server: compiled in with
/// `cfg(pg_available)` (`ADBAPI_PG_URL` set at build time), else reported
/// as ignored with the `SKIPPED` reason.
#[macro_export]
macro_rules! pg_test {
    ($(#[$m:meta])* fn $name:ident() $body:block) => {
        $(#[$m])*
        #[test]
        #[cfg_attr(
            not(pg_available),
            ignore = "SKIPPED: no PostgreSQL server; set ADBAPI_PG_URL (eval \"$(scripts/pg-test-server start)\")"
        )]
        fn $name() $body
    };
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
