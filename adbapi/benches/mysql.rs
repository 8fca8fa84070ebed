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

use std::io::Write as _;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use mysql::prelude::Queryable;

mod common;

use common::{key, point_select_group, pool_serial, ROWS};

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
        let id = key(i);
        let v: Option<String> = c.exec_first(&stmt, (id,)).expect("query");
        std::hint::black_box(v);
    }
    start.elapsed()
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
        p += pool_serial("pymysql", &url, 2_000);
    }
    let _ = writeln!(
        std::io::stdout(),
        "mysql point select, 6000 serial queries: direct {:?}/query, pool {:?}/query, ratio pool/direct {:.2}",
        d / 6_000,
        p / 6_000,
        p.as_secs_f64() / d.as_secs_f64()
    );
    point_select_group(c, "mysql_point_select", "pymysql", &url, direct_serial);
}

criterion_group!(benches, bench);
criterion_main!(benches);
