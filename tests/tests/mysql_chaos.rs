//! MySQL/MariaDB chaos (issue 11, as `postgres_chaos.rs` for issue 9): a
//! few thousand inserts with unique keys run through a `ConnectionPool` (4
//! workers, `cp_reconnect`, `pymysql`) while a side connection ends one of
//! the pool's sessions (`KILL CONNECTION <id>`) every 200 ms and a cancel
//! storm cancels in-flight Deferreds (each cancel is a `KILL QUERY` from a
//! side connection of the driver's own). The harness and its invariants
//! are `integration_tests::chaos`; this file gives it the MySQL killer.
//!
//! They need `ADBAPI_MYSQL_URL` (see `scripts/mysql-test-server`); without
//! it they are reported as ignored with a `SKIPPED` reason.

use std::collections::HashSet;

use integration_tests::chaos::{run_chaos, Chaos};
use integration_tests::mysql::{direct, direct_to, exec, MysqlBackend};

/// MariaDB takes an insert in well under a millisecond: enough for several
/// seconds of chaos (the time bound still applies).
const INSERTS: usize = 60_000;

#[test]
#[cfg_attr(
    not(mysql_available),
    ignore = "SKIPPED: no MySQL/MariaDB server; set ADBAPI_MYSQL_URL (eval \"$(scripts/mysql-test-server start)\")"
)]
fn inserts_survive_killed_sessions_and_a_cancel_storm() {
    // A database of its own: the pool's sessions are the ones on it.
    let backend = MysqlBackend::new();
    let db = backend
        .url()
        .rsplit_once('/')
        .map(|(_, d)| d.to_owned())
        .expect("a database in the URL");
    let table = "chaos";
    exec(
        &direct_to(backend.url()),
        &format!("CREATE TABLE {table} (k BIGINT PRIMARY KEY) ENGINE=InnoDB"),
        (),
    );

    let run = run_chaos(Chaos {
        module: "pymysql",
        args: vec![backend.url().into()],
        kwargs: Vec::new(),
        table: table.to_owned(),
        inserts: INSERTS,
        killer: move || {
            // On the server's own database, so it is never a victim.
            let side = direct();
            move || {
                // The pool's sessions; the driver's short-lived KILL QUERY
                // connections (same database) are spared.
                let rows = exec(
                    &side,
                    "SELECT id FROM information_schema.processlist WHERE db = %s \
                     AND id <> CONNECTION_ID() AND command <> 'Killed' \
                     AND (info IS NULL OR info NOT LIKE 'KILL %%') ORDER BY RAND() LIMIT 1",
                    (db.as_str(),),
                );
                let Some(id) = rows.first().map(|r| r.get::<i64>(0).expect("an id")) else {
                    return false;
                };
                // The session may have ended meanwhile (1094: unknown id).
                let mut cur = side.cursor().expect("cursor");
                cur.execute(&format!("KILL CONNECTION {id}"), ()).is_ok()
            }
        },
    });

    // A connection made after the killer stopped.
    let c = direct_to(backend.url());
    let present: HashSet<i64> = exec(&c, &format!("SELECT k FROM {table}"), ())
        .iter()
        .map(|r| r.get::<i64>(0).unwrap())
        .collect();
    // A kill (or a cancel's KILL QUERY) landing on a COMMIT makes one; with
    // many more inserts per second than on PostgreSQL there are more kills.
    let summary = run.check(&present, "sessions", 20.max(run.kills));
    drop(c.close());
    tracing::info!("mysql chaos: {summary}");
}
