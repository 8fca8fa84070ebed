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

mod common;

use adbapi::dbapi::IntegrityError;
use adbapi::{args, kwargs, Connection, ConnectionPool, Value};
use common::{say, with_temp_db};
use deferred::{Deferred, Failure};

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

fn main() {
    common::init_logging();
    let code = with_temp_db("log.db", |db| {
        reactor::react(|_reactor| {
            // No cp_reactor: react's reactor is this thread's default while it runs.
            let pool = match ConnectionPool::new(
                "sqlite3",
                args![db],
                kwargs! { "cp_min" => 1, "cp_max" => 1 },
            ) {
                Ok(pool) => pool,
                Err(e) => return deferred::fail(e),
            };
            program(&pool)
        })
    });
    std::process::exit(code);
}
