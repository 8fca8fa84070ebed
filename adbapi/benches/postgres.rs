//! Point selects by primary key on PostgreSQL: through the pool
//! (`psycopg2` driver, real reactor) beside the `postgres` crate used directly
//! on one connection, in the same run, so the ratio is meaningful.
//!
//! Needs `ADBAPI_PG_URL` (see `scripts/pg-test-server`); without it the bench
//! says so and measures nothing. Run:
//!
//! ```sh
//! eval "$(scripts/pg-test-server start)"
//! cargo bench -p adbapi --features postgres --bench postgres
//! ```
//!
//! What is compared:
//! - `direct/serial`: one connection, a prepared `SELECT v FROM t WHERE id =
//!   $1` at a time (one round trip each);
//! - `pool/serial`: `run_query` one at a time on a pool of one connection;
//!   as psycopg2 does, each job is `BEGIN`, the query, `COMMIT` (three round
//!   trips), plus the hand-off to a worker and back;
//! - `pool/outstanding`: N `run_query` outstanding at once on pools of 1 and 4
//!   connections.

use std::io::Write as _;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};

mod common;

use common::{key, point_select_group};

fn url() -> Option<String> {
    std::env::var("ADBAPI_PG_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

fn setup(url: &str) {
    let mut c = postgres::Client::connect(url, postgres::NoTls).expect("connect");
    c.batch_execute(
        "DROP TABLE IF EXISTS adbapi_bench; \
         CREATE TABLE adbapi_bench (id int PRIMARY KEY, v text NOT NULL); \
         INSERT INTO adbapi_bench SELECT g, 'value ' || g FROM generate_series(0, 999) g;",
    )
    .expect("setup");
}

fn direct_serial(url: &str, n: u64) -> Duration {
    let mut c = postgres::Client::connect(url, postgres::NoTls).expect("connect");
    let stmt = c
        .prepare("SELECT v FROM adbapi_bench WHERE id = $1")
        .expect("prepare");
    let start = Instant::now();
    for i in 0..n {
        let id = key(i);
        let id = i32::try_from(id).expect("small");
        let row = c.query_one(&stmt, &[&id]).expect("query");
        let v: &str = row.get(0);
        std::hint::black_box(v);
    }
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let Some(url) = url() else {
        let _ = writeln!(
            std::io::stdout(),
            "postgres bench SKIPPED: set ADBAPI_PG_URL (eval \"$(scripts/pg-test-server start)\")"
        );
        return;
    };
    setup(&url);
    point_select_group(c, "pg_point_select", "psycopg2", &url, direct_serial);
}

criterion_group!(benches, bench);
criterion_main!(benches);
