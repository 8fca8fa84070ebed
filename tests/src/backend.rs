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
