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
//! # runs until main()'s Deferred fires, logs a failure, exits with its status;
//! # the pool is closed by its shutdown trigger
//! task.react(lambda reactor: main())
//! ```
//!
//! Run it with `cargo run --example quickstart` (`RUST_LOG=debug` for more
//! log lines; the logs go to stderr, the results to stdout).

mod common;

use adbapi::{args, kwargs, ConnectionPool, Row};
use common::{say, with_temp_db};
use deferred::{gather_results, Deferred, Failure};
use reactor::prelude::*;
use reactor::Phase;

/// How many users the example inserts (and then reads back).
const USERS: i64 = 20;

fn main() {
    common::init_logging();
    let code = with_temp_db("quickstart.db", |db| {
        // task.react(lambda reactor: main())
        reactor::react(|reactor| {
            // dbpool = adbapi.ConnectionPool("sqlite3", db, cp_min=1, cp_max=3, cp_noisy=True,
            //                                check_same_thread=False)
            // cp_noisy logs each connect and close (at info level). No cp_reactor:
            // react's reactor is this thread's default while it runs.
            let dbpool = match ConnectionPool::new(
                "sqlite3",
                args![db],
                kwargs! {
                    "cp_min" => 1,
                    "cp_max" => 3,
                    "cp_noisy" => true,
                    "check_same_thread" => false,
                },
            ) {
                Ok(pool) => pool,
                Err(e) => return deferred::fail(e),
            };
            tracing::info!(
                database = db,
                cp_min = dbpool.min(),
                cp_max = dbpool.max(),
                "connection pool created; it starts when the reactor runs"
            );
            // The pool's `during shutdown` trigger closes it; by the `after`
            // phase it has closed.
            let pool = dbpool.clone();
            reactor.add_system_event_trigger(Phase::After, "shutdown", move || {
                say(format_args!(
                    "reactor stopped; pool running: {} (closed by its shutdown trigger)",
                    pool.running()
                ));
            });
            program(&dbpool)
        })
    });
    std::process::exit(code);
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
