//! PostgreSQL chaos (issue 9): a few thousand inserts with unique keys run
//! through a `ConnectionPool` (4 workers, `cp_reconnect`) while a side
//! thread terminates one of the pool's backends every 200 ms and a cancel
//! storm cancels in-flight Deferreds. The harness and its invariants are
//! `integration_tests::chaos`; this file gives it the PostgreSQL killer.
//!
//! They need `ADBAPI_PG_URL` (see `scripts/pg-test-server`); without it they
//! are reported as ignored with a `SKIPPED` reason.

use std::collections::HashSet;

use adbapi::{Arg, Value};

use integration_tests::chaos::{run_chaos, Chaos};
use integration_tests::pg::{direct_to, exec, sharing_server, url};

const INSERTS: usize = 8000;

#[test]
#[cfg_attr(
    not(pg_available),
    ignore = "SKIPPED: no PostgreSQL server; set ADBAPI_PG_URL (eval \"$(scripts/pg-test-server start)\")"
)]
fn inserts_survive_killed_backends_and_a_cancel_storm() {
    let _server = sharing_server();
    let app = format!("adbapi-chaos-{}", std::process::id());
    let table = format!("pg_chaos_{}", std::process::id());
    let c = direct_to(&url());
    exec(&c, &format!("DROP TABLE IF EXISTS {table}"), ());
    exec(
        &c,
        &format!("CREATE TABLE {table} (k int8 PRIMARY KEY)"),
        (),
    );

    let killer_app = app.clone();
    let run = run_chaos(Chaos {
        module: "psycopg2",
        args: vec![url().into()],
        kwargs: vec![(
            "application_name".to_owned(),
            Arg::Value(Value::from(app.as_str())),
        )],
        table: table.clone(),
        inserts: INSERTS,
        // The killer: a connection of its own, outside the pool.
        killer: move || {
            let side = direct_to(&url());
            move || {
                let rows = exec(
                    &side,
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE application_name = %s AND pid <> pg_backend_pid() ORDER BY random() LIMIT 1",
                    (killer_app.as_str(),),
                );
                rows.first().is_some_and(|r| r[0] == Value::Bool(true))
            }
        },
    });

    let present: HashSet<i64> = exec(&c, &format!("SELECT k FROM {table}"), ())
        .iter()
        .map(|r| r.get::<i64>(0).unwrap())
        .collect();
    run.check(&present, "backends", 20);
    exec(&c, &format!("DROP TABLE {table}"), ());
}
