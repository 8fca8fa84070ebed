//! Errbacks: trapping the one database error you expect
//! (`d.addErrback(lambda f: f.trap(IntegrityError))`), letting every other
//! failure go on down the chain, matching a base class (`DatabaseError`), and
//! logging failures (`log.err`, `defer.logError`).
//!
//! Ports this Twisted program:
//!
//! ```python
//! from sqlite3 import DatabaseError, IntegrityError
//! from twisted.internet import defer
//! from twisted.python import log
//!
//! def add_user(name):
//!     d = dbpool.runOperation("INSERT INTO users (name) VALUES (?)", (name,))
//!     d.addCallback(lambda _: "added")
//!     # A duplicate is fine; any other failure goes on down the chain.
//!     d.addErrback(lambda f: f.trap(IntegrityError) and "already there")
//!     return d
//!
//! d = add_user("alice")
//! d.addCallback(lambda _: add_user("alice"))
//!
//! d = dbpool.runQuery("SELECT * FROM no_such_table")
//! d.addErrback(lambda f: f.trap(IntegrityError))  # does not match: passes on
//! d.addErrback(defer.logError)                     # logs it, passes it on
//! d.addErrback(lambda f: f.check(DatabaseError) and [])  # recovers: no rows
//! ```
//!
//! Run it with `cargo run --example errbacks`. The failure logged on purpose
//! appears on stderr as an `ERROR` line.

mod common;

use adbapi::dbapi::{DatabaseError, DbError, IntegrityError, OperationalError};
use adbapi::{args, kwargs, ConnectionPool, Row};
use common::{say, with_temp_db};
use deferred::{log_error, Deferred, Failure};

/// Inserts a user; a duplicate name is not an error for the caller.
fn add_user(pool: &ConnectionPool, name: &'static str) -> Deferred<&'static str> {
    pool.run_operation("INSERT INTO users (name) VALUES (?)", (name,))
        .add_callback(|()| "added")
        // f.trap(IntegrityError): `?` hands any other failure back unchanged.
        .add_errback(|failure| {
            failure.trap::<IntegrityError>()?;
            Ok("already there")
        })
        .add_callback(move |outcome| {
            say(format_args!("add_user({name:?}): {outcome}"));
            outcome
        })
}

/// A query against a missing table: trapping `IntegrityError` does not catch
/// it, `log_error` logs it, and a `DatabaseError` errback recovers.
fn query_missing_table(pool: &ConnectionPool) -> Deferred<Vec<Row>> {
    pool.run_query("SELECT * FROM no_such_table", ())
        .add_errback(|failure| {
            failure.trap::<IntegrityError>()?;
            unreachable!("a missing table is not an IntegrityError");
        })
        .add_errback(|failure| Err(log_error(failure)))
        .add_errback(|failure| {
            // check() walks the error's source() chain, as `except
            // DatabaseError` matches subclasses: OperationalError is one.
            if failure.check::<DatabaseError>().is_none() {
                return Err(failure);
            }
            let e = failure.check::<DbError>().expect("database errors are DbErrors");
            say(format_args!(
                "query_missing_table: a DatabaseError errback recovered from {} (is OperationalError: {}): {}",
                e.kind(),
                failure.check::<OperationalError>().is_some(),
                e.message()
            ));
            Ok(Vec::new())
        })
}

/// A failure nobody traps reaches the end of the chain: here the last
/// errback sees a `ProgrammingError` (wrong number of parameters).
fn unexpected(pool: &ConnectionPool) -> Deferred<()> {
    pool.run_operation("INSERT INTO users (name) VALUES (?)", ("one", "two"))
        .add_errback(|failure| {
            failure.trap::<IntegrityError>()?;
            Ok(())
        })
        .add_callbacks(
            |()| Err(Failure::msg("the bad INSERT was expected to fail")),
            |failure| {
                say(format_args!(
                    "unexpected: not trapped, reached the end of the chain as {}",
                    failure.check::<DbError>().map_or("?", |e| e.kind().name())
                ));
                say(format_args!("  message: {}", failure.error_message()));
                Ok(())
            },
        )
}

fn program(pool: &ConnectionPool) -> Deferred<()> {
    let (p1, p2, p3, p4) = (pool.clone(), pool.clone(), pool.clone(), pool.clone());
    pool.run_operation(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL)",
        (),
    )
    .add_callback_deferred(move |()| add_user(&p1, "alice"))
    .add_callback_deferred(move |_| add_user(&p2, "alice"))
    .add_callback_deferred(move |_| query_missing_table(&p3))
    .add_callback_deferred(move |rows| {
        say(format_args!("  ... and went on with {} rows", rows.len()));
        unexpected(&p4)
    })
}

fn main() {
    common::init_logging();
    let code = with_temp_db("users.db", |db| {
        reactor::react(|_reactor| {
            // No cp_reactor: react's reactor is this thread's default while it runs.
            let pool = match ConnectionPool::new(
                "sqlite3",
                args![db],
                kwargs! { "cp_min" => 1, "cp_max" => 2 },
            ) {
                Ok(pool) => pool,
                Err(e) => return deferred::fail(e),
            };
            program(&pool)
        })
    });
    std::process::exit(code);
}
