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

use std::cell::RefCell;
use std::io::Write as _;
use std::rc::Rc;
use std::time::Duration;

use adbapi::dbapi::IntegrityError;
use adbapi::{args, kwargs, Arg, ConnectionPool, Row};
use deferred::{gather_results, Failure};
use reactor::prelude::*;
use reactor::Reactor;

fn out(line: impl std::fmt::Display) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let Ok(url) = std::env::var("ADBAPI_PG_URL") else {
        let _ = writeln!(
            std::io::stderr().lock(),
            "postgres_quickstart needs a server: eval \"$(scripts/pg-test-server start)\" sets ADBAPI_PG_URL"
        );
        std::process::exit(2);
    };

    let reactor = Reactor::new().expect("reactor");
    let pool = ConnectionPool::new(
        "psycopg2",
        args![url.as_str()],
        kwargs! {
            "cp_min" => 1,
            "cp_max" => 4,
            "cp_reconnect" => true,
            "cp_noisy" => true,
            "application_name" => "adbapi-postgres-quickstart",
            "cp_reactor" => Arg::reactor(reactor.clone()),
        },
    )
    .expect("pool");

    let failed = Rc::new(RefCell::new(None::<Failure>));
    let (p, r, f) = (pool.clone(), reactor.clone(), failed.clone());
    reactor.call_when_running(move || {
        let (p1, p2, p3, p4) = (p.clone(), p.clone(), p.clone(), p.clone());
        let r2 = r.clone();
        let _ = p
            .run_operation(
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
                p3.run_operation("INSERT INTO quickstart_notes (body) VALUES (%(b)s)", adbapi::Params::named([("b", "note 3")]))
                    .add_errback(|f| {
                        let e = f.trap::<IntegrityError>()?;
                        out(format!("duplicate refused: {e}"));
                        Ok(())
                    })
            })
            .add_callback_deferred(move |()| {
                p4.run_interaction(|txn| {
                    // One transaction: both statements commit together.
                    txn.execute("UPDATE quickstart_notes SET price = price * 2 WHERE body = %s", ("note 1",))?;
                    let changed = txn.rowcount()?;
                    txn.execute(
                        "SELECT body, price, created FROM quickstart_notes WHERE body LIKE %s ORDER BY id LIMIT 3",
                        ("note %",),
                    )?;
                    Ok((changed, txn.fetchall()?))
                })
            })
            .add_callback(|(changed, rows): (i64, Vec<Row>)| {
                out(format!("doubled the price of {changed} note"));
                for row in rows {
                    out(format!(
                        "{:>8} price={} created={}",
                        row.get::<String>(0).unwrap_or_default(),
                        row.get::<String>(1).unwrap_or_default(),
                        row.get::<String>(2).unwrap_or_default()
                    ));
                }
            })
            .add_errback(move |failure| {
                *f.borrow_mut() = Some(failure);
                Ok(())
            })
            .add_both(move |r| {
                let _ = r2.stop();
                r
            });
    });
    let r = reactor.clone();
    reactor.call_later(Duration::from_secs(60), move || {
        let _ = r.stop();
    });
    reactor.run().expect("run");
    if let Some(f) = failed.borrow_mut().take() {
        let _ = writeln!(std::io::stderr().lock(), "failed: {}", f.traceback());
        std::process::exit(1);
    }
    out(format!("done; pool running: {}", pool.running()));
}
