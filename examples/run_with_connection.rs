//! `runWithConnection`: a function that gets the worker's `Connection`
//! itself, opens its own cursors and decides where transactions end with
//! `commit()`; the pool commits what is left when it returns `Ok` and rolls
//! back what is uncommitted when it fails.
//!
//! Ports this Twisted program:
//!
//! ```python
//! def load(conn, lines):
//!     cur = conn.cursor()
//!     cur.executemany("INSERT INTO log (line) VALUES (?)", [(l,) for l in lines])
//!     conn.commit()                  # this batch is now committed, whatever follows
//!     cur.execute("INSERT INTO log (line) VALUES (?)", ("summary",))
//!     cur.execute("SELECT count(*) FROM log")
//!     return cur.fetchone()[0]       # the pool commits the summary row
//!
//! def load_then_fail(conn):
//!     cur = conn.cursor()
//!     cur.execute("INSERT INTO log (line) VALUES (?)", ("committed",))
//!     conn.commit()
//!     cur.execute("INSERT INTO log (line) VALUES (?)", ("uncommitted",))
//!     cur.execute("INSERT INTO log (line) VALUES (?)", (None,))   # NOT NULL -> IntegrityError
//!
//! d = dbpool.runWithConnection(load, ["boot", "ready"])
//! d.addCallback(lambda n: dbpool.runWithConnection(load_then_fail))
//! d.addErrback(lambda f: f.trap(sqlite3.IntegrityError))  # "uncommitted" was rolled back
//! ```
//!
//! Run it with `cargo run --example run_with_connection`.

use std::cell::RefCell;
use std::fmt;
use std::io::Write;
use std::rc::Rc;

use adbapi::dbapi::IntegrityError;
use adbapi::{args, kwargs, Arg, Connection, ConnectionPool, Value};
use deferred::{Deferred, Failure};
use reactor::prelude::*;
use reactor::Reactor;

/// Inserts `lines` and commits them, then adds a summary row that the pool
/// commits when this returns; returns the row count it saw.
fn load(conn: &mut Connection, lines: &[&str]) -> Result<i64, Failure> {
    let mut cur = conn.cursor()?;
    cur.executemany(
        "INSERT INTO log (line) VALUES (?)",
        lines.iter().map(|l| (*l,)),
    )?;
    say(format_args!(
        "  load: inserted {} rows, committing them explicitly",
        cur.rowcount()
    ));
    conn.commit()?;
    cur.execute("INSERT INTO log (line) VALUES (?)", ("summary",))?;
    say(format_args!(
        "  load: summary row has id {:?}; the pool commits it",
        cur.lastrowid()
    ));
    let count = cur
        .execute("SELECT count(*) FROM log", ())?
        .fetchone()?
        .ok_or_else(|| Failure::msg("count(*) returned no row"))?
        .get::<i64>(0)?;
    cur.close();
    Ok(count)
}

/// Commits one row, then fails after inserting another: the pool rolls the
/// uncommitted row back.
fn load_then_fail(conn: &mut Connection) -> Result<(), Failure> {
    let mut cur = conn.cursor()?;
    cur.execute("INSERT INTO log (line) VALUES (?)", ("committed",))?;
    conn.commit()?;
    cur.execute("INSERT INTO log (line) VALUES (?)", ("uncommitted",))?;
    cur.execute("INSERT INTO log (line) VALUES (?)", (Value::Null,))?; // NOT NULL
    Ok(())
}

fn program(pool: &ConnectionPool) -> Deferred<()> {
    let (p1, p2, p3) = (pool.clone(), pool.clone(), pool.clone());
    pool.run_operation(
        "CREATE TABLE log (id INTEGER PRIMARY KEY, line TEXT NOT NULL)",
        (),
    )
    .add_callback_deferred(move |()| {
        say(format_args!("run_with_connection(load):"));
        p1.run_with_connection(|conn| load(conn, &["boot", "ready"]))
    })
    .add_callback_deferred(move |count| {
        say(format_args!("  -> {count} rows"));
        say(format_args!("run_with_connection(load_then_fail):"));
        p2.run_with_connection(load_then_fail)
    })
    .add_callbacks(
        |()| Err(Failure::msg("load_then_fail was expected to fail")),
        |failure| {
            // d.addErrback(lambda f: f.trap(IntegrityError))
            failure.trap::<IntegrityError>()?;
            say(format_args!(
                "  -> failed and rolled back: {}",
                failure.error_message()
            ));
            Ok(())
        },
    )
    .add_callback_deferred(move |()| p3.run_query("SELECT id, line FROM log ORDER BY id", ()))
    .add_callback_result(|rows| {
        let mut lines = Vec::new();
        for row in rows {
            lines.push(format!("{}:{}", row.get::<i64>(0)?, row.get::<String>(1)?));
        }
        say(format_args!(
            "table log now: {} (no \"uncommitted\")",
            lines.join(" ")
        ));
        Ok(())
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let dir =
        std::env::temp_dir().join(format!("adbapi-run-with-connection-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("log.db");
    let result = run(db.to_str().ok_or("temp dir path is not UTF-8")?);
    std::fs::remove_dir_all(&dir)?;
    result
}

fn run(db: &str) -> Result<(), Box<dyn std::error::Error>> {
    let reactor = Reactor::new()?;
    let pool = ConnectionPool::new(
        "sqlite3",
        args![db],
        kwargs! { "cp_min" => 1, "cp_max" => 1, "cp_reactor" => Arg::reactor(reactor.clone()) },
    )?;
    let failed = Rc::new(RefCell::new(None::<Failure>));
    let (p, r, f) = (pool.clone(), reactor.clone(), Rc::clone(&failed));
    reactor.call_when_running(move || {
        let _ = program(&p).add_both(move |result| {
            if let Err(failure) = result {
                tracing::error!(%failure, "the example failed");
                *f.borrow_mut() = Some(failure);
            }
            r.stop().map_err(Failure::new)
        });
    });
    reactor.run()?;
    let outcome = failed.borrow_mut().take();
    match outcome {
        Some(f) => Err(f.to_string().into()),
        None => Ok(()),
    }
}

/// One line on stdout; a closed pipe is not worth failing the example for.
fn say(line: fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}
