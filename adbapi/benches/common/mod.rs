//! What the PostgreSQL and MySQL point-select benches share: the pool side
//! of the comparison (serial and outstanding `run_query` on a pool of the
//! driver under test) and the criterion group around it. Each bench brings
//! its own direct-client side.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use adbapi::{kwargs, Arg, ConnectionPool};
use criterion::{Criterion, Throughput};
use reactor::prelude::*;
use reactor::Reactor;

/// Rows in the bench table (`adbapi_bench`, ids `0..ROWS`).
pub(crate) const ROWS: i64 = 1_000;

/// The id the `i`-th query selects: spread over the table.
pub(crate) fn key(i: u64) -> i64 {
    (i as i64 * 7919) % ROWS
}

/// A reactor whose loop spins as `ADBAPI_BENCH_LOOP_SPIN_US` says (the
/// default 20 µs when unset): how long the loop waits for a thread's result
/// before sleeping, against the server's round trip (an experiment).
fn new_reactor() -> Reactor {
    let reactor = Reactor::new().expect("reactor");
    if let Some(us) = spin_env("ADBAPI_BENCH_LOOP_SPIN_US") {
        reactor.set_spin(Duration::from_micros(us));
    }
    reactor
}

fn spin_env(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

fn pool(reactor: &Reactor, module: &str, url: &str, size: i64) -> ConnectionPool {
    let p = pool_unspun(reactor, module, url, size);
    // `ADBAPI_BENCH_WORKER_SPIN_US`: how long an idle worker waits for the
    // next job before sleeping (default 20 µs).
    if let Some(us) = spin_env("ADBAPI_BENCH_WORKER_SPIN_US") {
        p.threadpool().set_spin(Duration::from_micros(us));
    }
    p
}

fn pool_unspun(reactor: &Reactor, module: &str, url: &str, size: i64) -> ConnectionPool {
    ConnectionPool::new(
        module,
        vec![url.into()],
        kwargs! { "cp_min" => size, "cp_max" => size, "cp_reactor" => Arg::reactor(reactor.clone()) },
    )
    .expect("pool")
}

/// `n` point selects, one at a time, on a pool of one `module` connection;
/// the time from the first to the last result.
pub(crate) fn pool_serial(module: &str, url: &str, n: u64) -> Duration {
    let reactor = new_reactor();
    let p = pool(&reactor, module, url, 1);
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
        let p2 = p.clone();
        let _ = p
            .run_query("SELECT v FROM adbapi_bench WHERE id = %s", (key(i),))
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

/// `n` point selects outstanding at once on a pool of `size` `module`
/// connections; the time until the last result.
pub(crate) fn pool_outstanding(module: &str, url: &str, n: u64, size: i64) -> Duration {
    let reactor = new_reactor();
    let p = pool(&reactor, module, url, size);
    let elapsed = Rc::new(Cell::new(Duration::ZERO));
    let (r, e) = (reactor.clone(), elapsed.clone());
    reactor.call_when_running(move || {
        let warm: Vec<_> = (0..size).map(|_| p.run_query("SELECT 1", ())).collect();
        let p2 = p.clone();
        let _ = deferred::gather_results(warm, true).add_callback(move |_| {
            let start = Instant::now();
            let left = Rc::new(Cell::new(n));
            for i in 0..n {
                let (left, r, e) = (left.clone(), r.clone(), e.clone());
                let _ = p2
                    .run_query("SELECT v FROM adbapi_bench WHERE id = %s", (key(i),))
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

/// The criterion group `group`: `direct/serial` (the bench's own client),
/// `pool/serial`, and `pool/outstanding` on pools of 1 and 4 `module`
/// connections.
pub(crate) fn point_select_group(
    c: &mut Criterion,
    group: &str,
    module: &str,
    url: &str,
    direct_serial: impl Fn(&str, u64) -> Duration,
) {
    let mut g = c.benchmark_group(group);
    g.sample_size(10);
    g.throughput(Throughput::Elements(1));
    g.bench_function("direct/serial", |b| {
        b.iter_custom(|n| direct_serial(url, n))
    });
    g.bench_function("pool/serial", |b| {
        b.iter_custom(|n| pool_serial(module, url, n))
    });
    for size in [1, 4] {
        g.bench_function(format!("pool/outstanding/{size}"), |b| {
            b.iter_custom(|n| pool_outstanding(module, url, n, size))
        });
    }
    g.finish();
}
