//! The quickstart on PostgreSQL: the same pool, pointed at a server.
//!
//! Twisted programs that used psycopg2 port as they are:
//!
//! ```python
//! dbpool = adbapi.ConnectionPool("psycopg2", dsn, cp_min=1, cp_max=4, cp_reconnect=True)
//! d = dbpool.runOperation("INSERT INTO notes (body) VALUES (%s)", ("hello",))
//! d.addCallback(lambda _: dbpool.runQuery("SELECT id, body FROM notes WHERE body LIKE %s", ("h%",)))
//! ```
//!
//! Needs a server: `eval "$(scripts/pg-test-server start)"` exports
//! `ADBAPI_PG_URL`, then `cargo run --example postgres_quickstart`. Without
//! `ADBAPI_PG_URL` it says so and exits with status 2.

mod common;

use std::io::Write as _;
use std::time::Duration;

use adbapi::dbapi::IntegrityError;
use adbapi::{args, kwargs, ConnectionPool, Row};
use common::say;
use deferred::{gather_results, Deferred};

fn main() {
    common::init_logging();
    let Ok(url) = std::env::var("ADBAPI_PG_URL") else {
        let _ = writeln!(
            std::io::stderr().lock(),
            "postgres_quickstart needs a server: eval \"$(scripts/pg-test-server start)\" sets ADBAPI_PG_URL"
        );
        std::process::exit(2);
    };
    let code = reactor::react(|reactor| {
        // No cp_reactor: react's reactor is this thread's default while it runs.
        let pool = match ConnectionPool::new(
            "psycopg2",
            args![url.as_str()],
            kwargs! {
                "cp_min" => 1,
                "cp_max" => 4,
                "cp_reconnect" => true,
                "cp_noisy" => true,
                "application_name" => "adbapi-postgres-quickstart",
            },
        ) {
            Ok(pool) => pool,
            Err(e) => return deferred::fail(e),
        };
        let p = pool.clone();
        // A server that stops answering fails the program (TimeoutError, exit
        // status 1) instead of hanging it.
        program(&pool)
            .add_timeout(Duration::from_secs(60), reactor)
            .add_callback(move |()| say(format_args!("done; pool running: {}", p.running())))
    });
    std::process::exit(code);
}

fn program(pool: &ConnectionPool) -> Deferred<()> {
    let (p1, p2, p3, p4) = (pool.clone(), pool.clone(), pool.clone(), pool.clone());
    pool.run_operation(
        "CREATE TABLE IF NOT EXISTS quickstart_notes (id serial PRIMARY KEY, body text UNIQUE NOT NULL, \
         price numeric(8,2), created timestamptz DEFAULT now())",
        (),
    )
    .add_callback_deferred(move |()| p1.run_operation("TRUNCATE quickstart_notes", ()))
    .add_callback_deferred(move |()| {
        // Concurrent inserts: %s placeholders, values bound by the server.
        let inserts = (0..8)
            .map(|i| {
                p2.run_operation(
                    "INSERT INTO quickstart_notes (body, price) VALUES (%s, %s)",
                    (format!("note {i}"), format!("{}.{:02}", 10 + i, i * 7)),
                )
            })
            .collect::<Vec<_>>();
        gather_results(inserts, true)
    })
    .add_callback_deferred(move |_| {
        // A duplicate: IntegrityError, trapped as `except IntegrityError`.
        p3.run_operation(
            "INSERT INTO quickstart_notes (body) VALUES (%(b)s)",
            adbapi::Params::named([("b", "note 3")]),
        )
        .add_errback(|f| {
            let e = f.trap::<IntegrityError>()?;
            say(format_args!("duplicate refused: {e}"));
            Ok(())
        })
    })
    .add_callback_deferred(move |()| {
        p4.run_interaction(|txn| {
            // One transaction: both statements commit together.
            txn.execute(
                "UPDATE quickstart_notes SET price = price * 2 WHERE body = %s",
                ("note 1",),
            )?;
            let changed = txn.rowcount()?;
            txn.execute(
                "SELECT body, price, created FROM quickstart_notes WHERE body LIKE %s ORDER BY id LIMIT 3",
                ("note %",),
            )?;
            Ok((changed, txn.fetchall()?))
        })
    })
    .add_callback(|(changed, rows): (i64, Vec<Row>)| {
        say(format_args!("doubled the price of {changed} note"));
        for row in rows {
            say(format_args!(
                "{:>8} price={} created={}",
                row.get::<String>(0).unwrap_or_default(),
                row.get::<String>(1).unwrap_or_default(),
                row.get::<String>(2).unwrap_or_default()
            ));
        }
    })
}
