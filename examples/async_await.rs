//! `async`/`await` over the pool: `defer.ensureDeferred(coroutine)` with
//! `await dbpool.runQuery(...)`, `try`/`except` around an `await`, and
//! `await defer.gatherResults(...)` for concurrent queries.
//!
//! Ports this Twisted program:
//!
//! ```python
//! from sqlite3 import IntegrityError
//! from twisted.internet import defer
//!
//! async def main():
//!     await dbpool.runOperation(
//!         "CREATE TABLE books (id INTEGER PRIMARY KEY, title TEXT UNIQUE, year INTEGER)")
//!     for title, year in BOOKS:
//!         await dbpool.runOperation("INSERT INTO books (title, year) VALUES (?, ?)", (title, year))
//!     try:
//!         await dbpool.runOperation("INSERT INTO books (title, year) VALUES (?, ?)", BOOKS[0])
//!     except IntegrityError as e:
//!         print("duplicate refused:", e)
//!     rows = await dbpool.runQuery("SELECT title FROM books WHERE year < ? ORDER BY year", (1900,))
//!     counts = await defer.gatherResults([
//!         dbpool.runQuery("SELECT count(*) FROM books WHERE year >= ? AND year < ?", (c, c + 100))
//!         for c in (1800, 1900)])
//!     oldest = await dbpool.runInteraction(rename_oldest, "(classic)")
//!     return len(rows)
//!
//! task.react(lambda reactor: defer.ensureDeferred(main()))
//! ```
//!
//! Run it with `cargo run --example async_await`.

mod common;

use std::time::Duration;

use adbapi::dbapi::IntegrityError;
use adbapi::{args, kwargs, ConnectionPool};
use common::{say, with_temp_db};
use deferred::{gather_results, Failure};
use reactor::prelude::*;
use reactor::Reactor;

const BOOKS: [(&str, i64); 5] = [
    ("Frankenstein", 1818),
    ("Moby-Dick", 1851),
    ("Middlemarch", 1871),
    ("Ulysses", 1922),
    ("Beloved", 1987),
];

/// The coroutine. It runs on the loop thread; every `.await` on a pool
/// Deferred lets the loop run other work until the worker's result arrives.
async fn books(pool: ConnectionPool, reactor: Reactor) -> Result<usize, Failure> {
    pool.run_operation(
        "CREATE TABLE books (id INTEGER PRIMARY KEY, title TEXT UNIQUE NOT NULL, year INTEGER NOT NULL)",
        (),
    )
    .await?;
    for (title, year) in BOOKS {
        pool.run_operation(
            "INSERT INTO books (title, year) VALUES (?, ?)",
            (title, year),
        )
        .await?;
    }
    say(format_args!(
        "inserted {} books, one await at a time",
        BOOKS.len()
    ));

    // try: ... except IntegrityError: ...
    match pool
        .run_operation("INSERT INTO books (title, year) VALUES (?, ?)", BOOKS[0])
        .await
    {
        Ok(()) => return Err(Failure::msg("a duplicate title was accepted")),
        Err(f) => {
            let e = f.trap::<IntegrityError>()?; // anything else propagates
            say(format_args!("duplicate refused: {e}"));
        }
    }

    // A timeout, as `d.addTimeout(5, reactor)`: it fails with TimeoutError
    // if the query has not answered in time (it has, long before).
    let rows = pool
        .run_query(
            "SELECT title FROM books WHERE year < ? ORDER BY year",
            (1900,),
        )
        .add_timeout(Duration::from_secs(5), &reactor)
        .await?;
    let titles = rows
        .iter()
        .map(|r| r.get::<String>(0))
        .collect::<Result<Vec<_>, _>>()?;
    say(format_args!("before 1900: {}", titles.join(", ")));

    // Concurrent queries: both are issued before either is awaited.
    let counts = gather_results(
        [1800_i64, 1900].map(|century| {
            pool.run_query(
                "SELECT count(*) FROM books WHERE year >= ? AND year < ?",
                (century, century + 100),
            )
        }),
        true,
    )
    .await?;
    for (century, rows) in [1800, 1900].iter().zip(&counts) {
        say(format_args!(
            "books from the {century}s: {}",
            rows[0].get::<i64>(0)?
        ));
    }

    // A transaction, awaited like any other Deferred.
    let renamed = pool
        .run_interaction(|txn| {
            let row = txn
                .execute("SELECT id, title FROM books ORDER BY year LIMIT 1", ())?
                .fetchone()?
                .ok_or_else(|| Failure::msg("no books"))?;
            let (id, title) = (row.get::<i64>(0)?, row.get::<String>(1)?);
            let new_title = format!("{title} (classic)");
            txn.execute(
                "UPDATE books SET title = ? WHERE id = ?",
                (new_title.as_str(), id),
            )?;
            Ok(new_title)
        })
        .await?;
    say(format_args!(
        "run_interaction renamed the oldest: {renamed}"
    ));
    Ok(titles.len())
}

fn main() {
    common::init_logging();
    let code = with_temp_db("books.db", |db| {
        reactor::react(|reactor| {
            // No cp_reactor: react's reactor is this thread's default while it runs.
            let pool = match ConnectionPool::new(
                "sqlite3",
                args![db],
                kwargs! { "cp_min" => 1, "cp_max" => 2 },
            ) {
                Ok(pool) => pool,
                Err(e) => return deferred::fail(e),
            };
            // d = defer.ensureDeferred(main())
            reactor
                .ensure_deferred(books(pool, reactor.clone()))
                .add_callback(|n| say(format_args!("the coroutine returned {n}")))
        })
    });
    std::process::exit(code);
}
