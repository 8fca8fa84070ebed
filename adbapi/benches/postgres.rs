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

use std::cell::Cell;
use std::io::Write as _;
use std::rc::Rc;
use std::time::{Duration, Instant};

use adbapi::{kwargs, Arg, ConnectionPool};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use reactor::prelude::*;
use reactor::Reactor;

const ROWS: i64 = 1_000;

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
        let id = (i as i64 * 7919) % ROWS;
        let id = i32::try_from(id).expect("small");
        let row = c.query_one(&stmt, &[&id]).expect("query");
        let v: &str = row.get(0);
        std::hint::black_box(v);
    }
    start.elapsed()
}

fn pool(reactor: &Reactor, url: &str, size: i64) -> ConnectionPool {
    ConnectionPool::new(
        "psycopg2",
        vec![url.into()],
        kwargs! { "cp_min" => size, "cp_max" => size, "cp_reactor" => Arg::reactor(reactor.clone()) },
    )
    .expect("pool")
}

fn pool_serial(url: &str, n: u64) -> Duration {
    let reactor = Reactor::new().expect("reactor");
    let p = pool(&reactor, url, 1);
    let started = Rc::new(Cell::new(None));
    let elapsed = Rc::new(Cell::new(Duration::ZERO));
    fn next(
        p: ConnectionPool,
        r: Reactor,
        i: u64,
        n: u64,
        started: Rc<Cell<Option<Instant>>>,
        elapsed: Rc<Cell<Duration>>,
    ) {
        if i == n {
            elapsed.set(started.get().expect("started").elapsed());
            let _ = r.stop();
            return;
        }
        let id = (i as i64 * 7919) % ROWS;
        let p2 = p.clone();
        let _ = p
            .run_query("SELECT v FROM adbapi_bench WHERE id = %s", (id,))
            .add_callback(move |rows| {
                std::hint::black_box(rows);
                next(p2, r, i + 1, n, started, elapsed);
            });
    }
    let (r, s, e) = (reactor.clone(), started.clone(), elapsed.clone());
    reactor.call_when_running(move || {
        // One warm-up query so the connection exists before timing.
        let p2 = p.clone();
        let _ = p.run_query("SELECT 1", ()).add_callback(move |_| {
            s.set(Some(Instant::now()));
            next(p2, r, 0, n, s, e);
        });
    });
    reactor.run().expect("run");
    elapsed.get()
}

fn pool_outstanding(url: &str, n: u64, size: i64) -> Duration {
    let reactor = Reactor::new().expect("reactor");
    let p = pool(&reactor, url, size);
    let elapsed = Rc::new(Cell::new(Duration::ZERO));
    let (r, e) = (reactor.clone(), elapsed.clone());
    reactor.call_when_running(move || {
        let warm: Vec<_> = (0..size).map(|_| p.run_query("SELECT 1", ())).collect();
        let p2 = p.clone();
        let _ = deferred::gather_results(warm, true).add_callback(move |_| {
            let start = Instant::now();
            let left = Rc::new(Cell::new(n));
            for i in 0..n {
                let id = (i as i64 * 7919) % ROWS;
                let (left, r, e) = (left.clone(), r.clone(), e.clone());
                let _ = p2
                    .run_query("SELECT v FROM adbapi_bench WHERE id = %s", (id,))
                    .add_callback(move |rows| {
                        std::hint::black_box(rows);
                        left.set(left.get() - 1);
                        if left.get() == 0 {
                            e.set(start.elapsed());
                            let _ = r.stop();
                        }
                    });
            }
        });
    });
    reactor.run().expect("run");
    elapsed.get()
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
    let mut g = c.benchmark_group("pg_point_select");
    g.sample_size(10);
    g.throughput(Throughput::Elements(1));
    g.bench_function("direct/serial", |b| {
        b.iter_custom(|n| direct_serial(&url, n))
    });
    g.bench_function("pool/serial", |b| b.iter_custom(|n| pool_serial(&url, n)));
    for size in [1, 4] {
        g.bench_function(format!("pool/outstanding/{size}"), |b| {
            b.iter_custom(|n| pool_outstanding(&url, n, size))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
