//! Quickstart: a `ConnectionPool` on a running reactor, concurrent queries
//! gathered into one Deferred, one transaction, and a clean stop.
//!
//! Ports the canonical Twisted `adbapi` program:
//!
//! ```python
//! from twisted.enterprise import adbapi
//! from twisted.internet import defer, reactor
//!
//! dbpool = adbapi.ConnectionPool("sqlite3", "quickstart.db",
//!                                cp_min=1, cp_max=3, cp_noisy=True,
//!                                check_same_thread=False)
//!
//! def add_bonus(txn, name, bonus):
//!     txn.execute("UPDATE users SET karma = karma + ? WHERE name = ?", (bonus, name))
//!     txn.execute("SELECT karma FROM users WHERE name = ?", (name,))
//!     return txn.fetchone()[0]
//!
//! @defer.inlineCallbacks
//! def main():
//!     yield dbpool.runOperation("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, karma INTEGER)")
//!     yield defer.gatherResults([
//!         dbpool.runOperation("INSERT INTO users (name, karma) VALUES (?, ?)", ("user%02d" % i, i))
//!         for i in range(20)])
//!     rows = yield defer.gatherResults([
//!         dbpool.runQuery("SELECT name, karma FROM users WHERE id = ?", (i,))
//!         for i in range(1, 21)])
//!     for [(name, karma)] in rows:
//!         print(name, karma)
//!     karma = yield dbpool.runInteraction(add_bonus, "user07", 100)
//!     print("user07 now has", karma)
//!
//! main().addErrback(log.err).addBoth(lambda _: reactor.stop())
//! reactor.run()   # the pool is closed by its shutdown trigger
//! ```
//!
//! Run it with `cargo run --example quickstart` (`RUST_LOG=debug` for more
//! log lines; the logs go to stderr, the results to stdout).

use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;

use adbapi::{args, kwargs, Arg, ConnectionPool, Row};
use deferred::{gather_results, Deferred, Failure};
use reactor::prelude::*;
use reactor::Reactor;

/// How many users the example inserts (and then reads back).
const USERS: i64 = 20;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();

    // A fresh database in a temporary directory, removed at the end.
    let dir = std::env::temp_dir().join(format!("adbapi-quickstart-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("quickstart.db");
    let result = run(db.to_str().ok_or("temp dir path is not UTF-8")?);
    std::fs::remove_dir_all(&dir)?;
    result
}

fn run(db: &str) -> Result<(), Box<dyn std::error::Error>> {
    let reactor = Reactor::new()?;
    // dbpool = adbapi.ConnectionPool("sqlite3", db, cp_min=1, cp_max=3, cp_noisy=True,
    //                                check_same_thread=False)
    // cp_noisy logs each connect and close (at info level).
    let dbpool = ConnectionPool::new(
        "sqlite3",
        args![db],
        kwargs! {
            "cp_min" => 1,
            "cp_max" => 3,
            "cp_noisy" => true,
            "check_same_thread" => false,
            "cp_reactor" => Arg::reactor(reactor.clone()),
        },
    )?;
    tracing::info!(
        database = db,
        cp_min = dbpool.min(),
        cp_max = dbpool.max(),
        "connection pool created; it starts when the reactor runs"
    );

    // The outcome of the whole program, for the exit status.
    let failed: Rc<RefCell<Option<Failure>>> = Rc::new(RefCell::new(None));

    let (pool, r, f) = (dbpool.clone(), reactor.clone(), Rc::clone(&failed));
    reactor.call_when_running(move || {
        let _ = program(&pool)
            .add_errback(move |failure| {
                tracing::error!(%failure, "the quickstart failed");
                *f.borrow_mut() = Some(failure);
                Ok(())
            })
            .add_callback(move |()| {
                // The pool's `during shutdown` trigger closes it.
                r.stop().expect("the reactor is running");
            });
    });
    reactor.run()?;

    say(format_args!(
        "reactor stopped; pool running: {} (closed by its shutdown trigger)",
        dbpool.running()
    ));
    let outcome = failed.borrow_mut().take();
    match outcome {
        Some(f) => Err(f.to_string().into()),
        None => Ok(()),
    }
}

/// The program proper: every step is a Deferred chained to the previous one.
fn program(dbpool: &ConnectionPool) -> Deferred<()> {
    let (p1, p2, p3) = (dbpool.clone(), dbpool.clone(), dbpool.clone());
    dbpool
        .run_operation(
            "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, karma INTEGER NOT NULL)",
            (),
        )
        // 20 inserts at once: they run on the pool's workers concurrently.
        .add_callback_deferred(move |()| {
            gather_results(
                (0..USERS).map(|i| {
                    p1.run_operation(
                        "INSERT INTO users (name, karma) VALUES (?, ?)",
                        (format!("user{i:02}"), i),
                    )
                }),
                true,
            )
        })
        // 20 selects at once; gather_results keeps their order.
        .add_callback_deferred(move |inserted: Vec<()>| {
            say(format_args!(
                "inserted {} users concurrently (cp_max={})",
                inserted.len(),
                p2.max()
            ));
            gather_results(
                (1..=USERS).map(|id| {
                    p2.run_query("SELECT name, karma FROM users WHERE id = ?", (id,))
                }),
                true,
            )
        })
        .add_callback_result(|results: Vec<Vec<Row>>| {
            let mut line = String::new();
            for rows in &results {
                let name: String = rows[0].get(0)?;
                let karma: i64 = rows[0].get(1)?;
                line.push_str(&format!("{name}={karma} "));
            }
            say(format_args!(
                "read back {} users concurrently, by id (the concurrent inserts took ids in any order): {}",
                results.len(),
                line.trim_end()
            ));
            Ok(())
        })
        // One transaction: both statements commit together, or neither does.
        .add_callback_deferred(move |()| {
            p3.run_interaction(|txn| {
                txn.execute(
                    "UPDATE users SET karma = karma + ? WHERE name = ?",
                    (100, "user07"),
                )?;
                let row = txn
                    .execute("SELECT karma FROM users WHERE name = ?", ("user07",))?
                    .fetchone()?
                    .ok_or_else(|| Failure::msg("user07 is missing"))?;
                Ok(row.get::<i64>(0)?)
            })
        })
        .add_callback(|karma| {
            say(format_args!(
                "run_interaction committed: user07 now has karma {karma}"
            ));
        })
}

/// One line on stdout. A failed write (a closed pipe) is not worth failing
/// the example for.
fn say(line: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}
