//! Point selects by primary key on MySQL/MariaDB: through the pool (`pymysql`
//! driver, real reactor) beside the `mysql` crate used directly on one
//! connection, in the same run, so the ratio is meaningful.
//!
//! Needs `ADBAPI_MYSQL_URL` (see `scripts/mysql-test-server`); without it the
//! bench says so and measures nothing. Run:
//!
//! ```sh
//! eval "$(scripts/mysql-test-server start)"
//! cargo bench -p adbapi --features mysql --bench mysql
//! ```
//!
//! What is compared:
//! - `direct/serial`: one connection, a prepared `SELECT v FROM t WHERE id =
//!   ?` at a time (one round trip each);
//! - `pool/serial`: `run_query` one at a time on a pool of one connection;
//!   as pymysql under Twisted does, each job is the query and `COMMIT` (two
//!   round trips), plus the hand-off to a worker and back;
//! - `pool/outstanding`: N `run_query` outstanding at once on pools of 1 and 4.
//!
//! Before criterion runs, both serial variants are timed once more over the
//! same number of queries and the ratio printed (`ratio pool/direct`).

use reactor::prelude::*;
use std::cell::Cell;
use std::io::Write as _;
use std::rc::Rc;
use std::time::{Duration, Instant};

use adbapi::{kwargs, Arg, ConnectionPool};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mysql::prelude::Queryable;
use reactor::Reactor;

const ROWS: i64 = 1_000;

fn url() -> Option<String> {
    std::env::var("ADBAPI_MYSQL_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

fn direct(url: &str) -> mysql::Conn {
    let opts = mysql::OptsBuilder::from_opts(mysql::Opts::from_url(url).expect("url"))
        .prefer_socket(false);
    mysql::Conn::new(opts).expect("connect")
}

fn setup(url: &str) {
    let mut c = direct(url);
    c.query_drop("DROP TABLE IF EXISTS adbapi_bench")
        .expect("drop");
    c.query_drop(
        "CREATE TABLE adbapi_bench (id INT PRIMARY KEY, v VARCHAR(50) NOT NULL) ENGINE=InnoDB",
    )
    .expect("create");
    let values: Vec<String> = (0..ROWS).map(|i| format!("({i}, 'value {i}')")).collect();
    c.query_drop(format!(
        "INSERT INTO adbapi_bench VALUES {}",
        values.join(",")
    ))
    .expect("insert");
}

fn direct_serial(url: &str, n: u64) -> Duration {
    let mut c = direct(url);
    let stmt = c
        .prep("SELECT v FROM adbapi_bench WHERE id = ?")
        .expect("prepare");
    let start = Instant::now();
    for i in 0..n {
        let id = (i as i64 * 7919) % ROWS;
        let v: Option<String> = c.exec_first(&stmt, (id,)).expect("query");
        std::hint::black_box(v);
    }
    start.elapsed()
}

fn pool(reactor: &Reactor, url: &str, size: i64) -> ConnectionPool {
    ConnectionPool::new(
        "pymysql",
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
            "mysql bench SKIPPED: set ADBAPI_MYSQL_URL (eval \"$(scripts/mysql-test-server start)\")"
        );
        return;
    };
    setup(&url);
    // The same-run ratio, interleaved so drift hits both alike.
    let (mut d, mut p) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..3 {
        d += direct_serial(&url, 2_000);
        p += pool_serial(&url, 2_000);
    }
    let _ = writeln!(
        std::io::stdout(),
        "mysql point select, 6000 serial queries: direct {:?}/query, pool {:?}/query, ratio pool/direct {:.2}",
        d / 6_000,
        p / 6_000,
        p.as_secs_f64() / d.as_secs_f64()
    );
    let mut g = c.benchmark_group("mysql_point_select");
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
