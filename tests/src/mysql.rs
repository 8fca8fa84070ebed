//! The MySQL/MariaDB side of the suite: the server from `ADBAPI_MYSQL_URL`
//! (see `scripts/mysql-test-server`), a fresh database per backend, and
//! Twisted's `MySQLConnector` (`test_adbapi.py`).

use std::time::{Duration, Instant};

use adbapi::dbapi::{self, DbConnection, Params, Row};
use adbapi::{Arg, ConnectionPool, Value};

use crate::backend::{Backend, Flags};
use crate::harness::unique_name;

/// The server's URL. Panics with a clear message if unset: the tests that
/// call it are only compiled in (not ignored) when it was set at build time.
pub fn url() -> String {
    std::env::var("ADBAPI_MYSQL_URL").expect(
        "ADBAPI_MYSQL_URL must be set when the MySQL tests are compiled in (eval \"$(scripts/mysql-test-server start)\")",
    )
}

/// A direct connection to `url` (outside any pool), through `pymysql`.
pub fn direct_to(url: &str) -> DbConnection {
    dbapi::connect("pymysql", &[url.into()], &[])
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// A direct connection to the server's test database.
pub fn direct() -> DbConnection {
    direct_to(&url())
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
pub fn with_database(url: &str, db: &str) -> String {
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

/// Ends every session on database `db` but the caller's own (`KILL
/// CONNECTION`), and waits (bounded) until they are gone.
pub fn kill_sessions(admin_url: &str, db: &str) {
    let admin = direct_to(admin_url);
    let ids = exec(
        &admin,
        "SELECT id FROM information_schema.processlist WHERE db = %s AND id <> CONNECTION_ID()",
        (db,),
    );
    for row in ids {
        let id = row.get::<i64>(0).expect("id");
        // The session may have ended by itself meanwhile (1094: unknown id).
        let mut c = admin.cursor().expect("cursor");
        let _ = c.execute(&format!("KILL CONNECTION {id}"), ());
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = exec(
            &admin,
            "SELECT count(*) FROM information_schema.processlist WHERE db = %s AND id <> CONNECTION_ID() \
             AND command <> 'Killed'",
            (db,),
        );
        if left[0][0] == Value::Int(0) {
            return;
        }
        assert!(Instant::now() < deadline, "sessions on {db} did not end");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Twisted's `MySQLConnector` (`cp_min=0`), on a database of its own so
/// tests running in parallel never share tables. Flags as Twisted's
/// connector: `trailing_spaces_ok = False` (MySQL strips them from CHAR),
/// `early_reconnect = False` (the driver learns that the server ended a
/// session only when its next statement fails).
#[derive(Debug)]
pub struct MysqlBackend {
    admin_url: String,
    db: String,
    url: String,
}

impl MysqlBackend {
    /// A backend with a fresh, empty database.
    pub fn new() -> Self {
        let admin_url = url();
        let db = unique_name("adbapi_t").replace('-', "_").to_lowercase();
        exec(&direct_to(&admin_url), &format!("CREATE DATABASE {db}"), ());
        let url = with_database(&admin_url, &db);
        MysqlBackend { admin_url, db, url }
    }

    /// The URL of this backend's database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Ends every session on this backend's database.
    pub fn kill_sessions(&self) {
        kill_sessions(&self.admin_url, &self.db);
    }
}

impl Default for MysqlBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for MysqlBackend {
    fn drop(&mut self) {
        kill_sessions(&self.admin_url, &self.db);
        let admin = direct_to(&self.admin_url);
        let mut c = admin.cursor().expect("cursor");
        if let Err(e) = c.execute(&format!("DROP DATABASE IF EXISTS {}", self.db), ()) {
            tracing::error!("could not drop test database {}: {e}", self.db);
        }
    }
}

impl Backend for MysqlBackend {
    fn prefix(&self) -> &str {
        "MySQL"
    }

    fn module(&self) -> &str {
        "pymysql"
    }

    fn flags(&self) -> Flags {
        Flags {
            trailing_spaces_ok: false,
            early_reconnect: false,
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
