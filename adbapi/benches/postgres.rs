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
//!   a single plain statement runs as the server's implicit transaction, so
//!   each job is one round trip (issue 14; it was `BEGIN`, the query,
//!   `COMMIT`), plus the hand-off to a worker and back;
//! - `pool/outstanding`: N `run_query` outstanding at once on pools of 1 and 4
//!   connections.
//!
//! Before the criterion groups it prints a ratio report (issue 14's targets):
//! over [`ROUNDS`] rounds, each a side-by-side run of direct serial, pool
//! serial and pool outstanding on 1 and 4 connections, the median of
//! pool-serial time / direct-serial time (target <= 1.3) and of the
//! throughput of 4 connections outstanding / direct serial on one
//! connection (target >= 3), beside the same throughput for 4 threads on 4
//! connections of the `postgres` crate (what the machine itself gives 4
//! connections). `ADBAPI_BENCH_ONLY_RATIOS=1` stops after it.

use std::io::Write as _;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};

mod common;

use common::{key, point_select_group, pool_outstanding, pool_serial};

/// Rounds of the ratio report.
const ROUNDS: usize = 5;
/// Serial queries per round (direct and pool).
const SERIAL: u64 = 5_000;
/// Outstanding queries per round.
const OUTSTANDING: u64 = 20_000;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Issue 14's ratios, medians over [`ROUNDS`] side-by-side rounds.
fn ratio_report(url: &str) {
    let per = |d: Duration, n: u64| d.as_secs_f64() / n as f64;
    let (mut serial, mut out1, mut out4) = (Vec::new(), Vec::new(), Vec::new());
    let (mut direct4, mut pool4_of_direct4) = (Vec::new(), Vec::new());
    let mut out = std::io::stdout();
    for round in 0..ROUNDS {
        let direct = per(direct_serial(url, SERIAL), SERIAL);
        let pool = per(pool_serial("psycopg2", url, SERIAL), SERIAL);
        let o1 = per(
            pool_outstanding("psycopg2", url, OUTSTANDING, 1),
            OUTSTANDING,
        );
        let o4 = per(
            pool_outstanding("psycopg2", url, OUTSTANDING, 4),
            OUTSTANDING,
        );
        let d4 = per(direct_parallel(url, OUTSTANDING, 4), OUTSTANDING);
        let _ = writeln!(
            out,
            "round {round}: direct serial {:.1} us/query, pool serial {:.1} us, pool outstanding/1 {:.1} us, \
             outstanding/4 {:.1} us, direct on 4 threads {:.1} us",
            direct * 1e6,
            pool * 1e6,
            o1 * 1e6,
            o4 * 1e6,
            d4 * 1e6
        );
        serial.push(pool / direct);
        out1.push(direct / o1);
        out4.push(direct / o4);
        direct4.push(direct / d4);
        pool4_of_direct4.push(d4 / o4);
    }
    let _ = writeln!(
        out,
        "pg ratios (median of {ROUNDS}): pool serial / direct serial = {:.2}x time (target <= 1.3); \
         outstanding on 4 connections = {:.2}x direct serial throughput (target >= 3); \
         outstanding on 1 = {:.2}x; the machine's own: 4 threads on 4 connections of the `postgres` crate = \
         {:.2}x direct serial throughput, and the pool's 4 connections reach {:.2}x of that",
        median(serial),
        median(out4),
        median(out1),
        median(direct4),
        median(pool4_of_direct4)
    );
}

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

/// `n` point selects split over `conns` threads, each on its own
/// connection of the `postgres` crate, one query at a time: what this
/// machine and server give for that many connections without the pool (the
/// ceiling for a pool of `conns` connections).
fn direct_parallel(url: &str, n: u64, conns: u64) -> Duration {
    let go = std::sync::Arc::new(std::sync::Barrier::new(
        usize::try_from(conns).expect("small") + 1,
    ));
    let threads: Vec<_> = (0..conns)
        .map(|t| {
            let mut c = postgres::Client::connect(url, postgres::NoTls).expect("connect");
            let go = std::sync::Arc::clone(&go);
            std::thread::spawn(move || {
                let stmt = c
                    .prepare("SELECT v FROM adbapi_bench WHERE id = $1")
                    .expect("prepare");
                go.wait();
                for i in (t..n).step_by(usize::try_from(conns).expect("small")) {
                    let id = i32::try_from(key(i)).expect("small");
                    let row = c.query_one(&stmt, &[&id]).expect("query");
                    let v: &str = row.get(0);
                    std::hint::black_box(v);
                }
            })
        })
        .collect();
    go.wait();
    let start = Instant::now();
    for t in threads {
        t.join().expect("a direct thread");
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
    ratio_report(&url);
    if std::env::var_os("ADBAPI_BENCH_ONLY_RATIOS").is_some() {
        return;
    }
    point_select_group(c, "pg_point_select", "psycopg2", &url, direct_serial);
}

criterion_group!(benches, bench);
criterion_main!(benches);
