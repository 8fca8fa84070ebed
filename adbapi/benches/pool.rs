//! Benchmarks of `ConnectionPool` on a real reactor against direct rusqlite on
//! one thread, on a SQLite file database in WAL mode (criterion).
//!
//! Kept whole although over 600 lines: one criterion target whose workloads
//! share one fixture and one printed comparison table.
//!
//! - `point_select_100k`: `SELECT v FROM t WHERE id = ?` on a 1 000-row table.
//!   `pool/2`: 100 000 `run_query` calls outstanding at once through a pool of
//!   exactly two workers (`cp_min = cp_max = 2`), each callback counts, the
//!   batch ends when the last one fired. `direct/1`: the same 100 000 queries
//!   one after another on one thread (`prepare_cached` + `query_row`).
//!   Queries per second; the target is pool >= direct.
//! - `insert_10_rows_txn`: transactions that insert 10 rows each. `pool/N`:
//!   [`TXNS`] `run_interaction` calls outstanding at once through a pool of N
//!   workers; `direct/1`: the same transactions one after another on one
//!   thread. Transactions per second (rows per second is ten times that).
//!   With two workers the writers contend for SQLite's single write lock, and
//!   the loser waits in SQLite's busy handler (which sleeps).
//! - `serial_point_select`: one `run_query` at a time, the next issued from
//!   the previous one's callback on the loop thread; time per round trip,
//!   with two workers (as above) and with one (no idle second worker
//!   spinning for jobs beside the loop on 2 vCPUs).
//!
//! - `stats_overhead`: `point_select_100k` pool/2 and `serial_point_select`
//!   pool/1 again, with `cp_stats` on (the default: every job timed and
//!   counted for `pool.status()`) and off (Twisted's plain job path), in the
//!   same run, so the per-job cost of the status can be read off.
//!
//! A reactor cannot be restarted, so every batch (every `iter_custom` call)
//! runs on a new `Reactor` with a new pool, which is closed by the reactor's
//! shutdown trigger after the batch. Before the clock starts, the pool runs a
//! few queries so that both workers have connected and prepared the statement.
//!
//! With `ADBAPI_BENCH_PERCENTILES=1` the binary first prints (to stdout) a
//! pool/direct throughput summary with ratios, the p50/p90/p99/p99.9 of the
//! serial round trip over 100 000 calls (and which CPUs the loop and the
//! workers were on: on 2 vCPUs that changes the latency several-fold), and the
//! CPU used by an idle running pool for about one second. With
//! `ADBAPI_BENCH_ONLY_PERCENTILES=1` it stops there;
//! `ADBAPI_BENCH_SECTIONS=reads,writes,serial,stats,idle` (any subset) limits that
//! section (`pool2`, `direct1`, `direct2` and `inline`, not in the default
//! set, run only pool/2, direct/1 or direct/2 point-select batches, or
//! inline round trips, for profiling), and `ADBAPI_BENCH_NOSPIN=1` turns off the loop's and the
//! workers' spinning everywhere (a diagnostic; `=loop` or `=workers` only
//! that side's; `ADBAPI_BENCH_LOOP_SPIN_US=N` fixes the loop's spin
//! instead of the adaptive default); `ADBAPI_BENCH_STATS_ROUNDS=N`
//! sets the `stats` section's rounds (9).
//!
//! ```text
//! cargo bench -p adbapi --bench pool -- --warm-up-time 1 --measurement-time 5
//! ADBAPI_BENCH_PERCENTILES=1 cargo bench -p adbapi --bench pool -- --warm-up-time 1 --measurement-time 5
//! ```

use std::cell::{Cell, RefCell};
use std::hint::black_box;
use std::io::Write;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use adbapi::{args, kwargs, Arg, ConnectionPool, Row, Value};
use criterion::{criterion_group, BenchmarkId, Criterion, SamplingMode, Throughput};
use deferred::{gather_results, Deferred, Failure};
use reactor::prelude::*;
use reactor::Reactor;

/// Point selects per batch.
const READS: u64 = 100_000;
/// Rows in `t`.
const TABLE_ROWS: u64 = 1_000;
/// Transactions per write batch.
const TXNS: u64 = 2_000;
/// Rows inserted by each transaction.
const ROWS_PER_TXN: u64 = 10;
/// Queries run before the clock starts, so every worker has its connection.
const WARMUP_QUERIES: u64 = 64;

const SELECT: &str = "SELECT v FROM t WHERE id = ?";
const INSERT: &str = "INSERT INTO ins (v) VALUES (?)";

/// The id of the `i`-th query: a fixed walk over the whole table.
fn id_for(i: u64) -> i64 {
    i64::try_from(i.wrapping_mul(7_919) % TABLE_ROWS + 1).expect("small")
}

// ---------------------------------------------------------------------------
// The database.

/// A SQLite file database in its own temporary directory, removed on drop.
struct Db {
    dir: PathBuf,
    path: String,
}

impl Db {
    /// Creates `t(id INTEGER PRIMARY KEY, v TEXT)` with [`TABLE_ROWS`] rows
    /// and an empty `ins` table for the writes, in WAL mode.
    fn create() -> Db {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "adbapi-bench-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the temp dir");
        let path = dir
            .join("bench.db")
            .to_str()
            .expect("utf-8 path")
            .to_owned();
        let conn = rusqlite::Connection::open(&path).expect("open");
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .expect("WAL");
        assert_eq!(mode.to_ascii_lowercase(), "wal");
        conn.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);
             CREATE TABLE ins (id INTEGER PRIMARY KEY, v TEXT);",
        )
        .expect("create tables");
        let tx = conn.unchecked_transaction().expect("begin");
        {
            let mut st = tx
                .prepare("INSERT INTO t (id, v) VALUES (?, ?)")
                .expect("prepare");
            for id in 1..=i64::try_from(TABLE_ROWS).expect("small") {
                st.execute(rusqlite::params![id, format!("value-{id}")])
                    .expect("insert");
            }
        }
        tx.commit().expect("commit");
        Db { dir, path }
    }

    /// A direct connection, set up as the pool's driver sets up its own
    /// (busy timeout 5 s; rusqlite opens without SQLite's mutex, as the
    /// driver does).
    fn direct(&self, sync: Durability) -> rusqlite::Connection {
        let conn = match vfs() {
            None => rusqlite::Connection::open(&self.path),
            Some(vfs) => rusqlite::Connection::open_with_flags(
                format!("file:{}?vfs={vfs}", self.path),
                rusqlite::OpenFlags::default() | rusqlite::OpenFlags::SQLITE_OPEN_URI,
            ),
        }
        .expect("open");
        conn.busy_timeout(Duration::from_secs(5))
            .expect("busy timeout");
        conn.pragma_update(None, "synchronous", sync.pragma())
            .expect("synchronous");
        conn
    }

    /// A pool of exactly `workers` threads on `reactor`.
    fn pool(&self, reactor: &Reactor, workers: i64, sync: Durability) -> ConnectionPool {
        let pragma = format!("PRAGMA synchronous={}", sync.pragma());
        let (database, uri) = match vfs() {
            None => (self.path.clone(), false),
            Some(vfs) => (format!("file:{}?vfs={vfs}", self.path), true),
        };
        let pool = ConnectionPool::new(
            "sqlite3",
            args![database.as_str()],
            kwargs! {
                "uri" => uri,
                "cp_min" => workers,
                "cp_max" => workers,
                "cp_reactor" => Arg::reactor(reactor.clone()),
                "cp_stats" => STATS.load(Ordering::Relaxed),
                "cp_openfun" => Arg::openfun(move |conn| {
                    conn.execute(&pragma, ())?;
                    Ok(())
                }),
            },
        )
        .expect("a valid pool");
        if no_spin() {
            pool.threadpool().set_spin(Duration::ZERO);
        }
        pool
    }
}

/// `cp_stats` of every pool the benches make (the `stats_overhead` group
/// turns it off and on).
static STATS: AtomicBool = AtomicBool::new(true);

/// `ADBAPI_BENCH_VFS=unix-excl` (say): every connection, direct and pooled,
/// opens the database through that SQLite VFS (a URI `file:...?vfs=...`).
fn vfs() -> Option<String> {
    std::env::var("ADBAPI_BENCH_VFS")
        .ok()
        .filter(|v| !v.is_empty())
}

/// `ADBAPI_BENCH_NOSPIN=1`: neither the loop nor the workers spin before
/// sleeping (a diagnostic: shows what the spinning costs and buys); this is
/// the workers' side of it.
fn no_spin() -> bool {
    no_spin_in("workers")
}

/// `ADBAPI_BENCH_NOSPIN=loop` or `=workers` turns off one side's spinning
/// only (what each side's spin buys); `1` both.
fn no_spin_in(side: &str) -> bool {
    match std::env::var("ADBAPI_BENCH_NOSPIN") {
        Ok(v) if v == "loop" || v == "workers" => v == side,
        _ => env_flag("ADBAPI_BENCH_NOSPIN"),
    }
}

/// A fresh reactor (spinning as [`no_spin`] says).
fn new_reactor() -> Reactor {
    let reactor = Reactor::new().expect("epoll and eventfd");
    if no_spin_in("loop") {
        reactor.set_spin(Duration::ZERO);
    } else if let Some(us) = std::env::var("ADBAPI_BENCH_LOOP_SPIN_US")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        // A fixed loop spin instead of the adaptive default (an experiment).
        reactor.set_spin(Duration::from_micros(us));
    }
    reactor
}

/// `PRAGMA synchronous` for a connection: SQLite's default in WAL mode
/// (`FULL`: the WAL is synced at every commit) or `NORMAL` (synced at
/// checkpoints only), which takes the disk out of the write benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    Full,
    Normal,
}

impl Durability {
    fn pragma(self) -> &'static str {
        match self {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Durability::Full => "sync_full",
            Durability::Normal => "sync_normal",
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// True if `rows` is the one row `v` of a point select.
fn one_text_row(rows: &[Row]) -> bool {
    rows.len() == 1 && matches!(&rows[0][0], Value::Text(s) if s.starts_with("value-"))
}

/// Runs [`WARMUP_QUERIES`] queries at once, so both workers connect and
/// prepare the statement before the clock starts.
fn warm_up(pool: &ConnectionPool) -> Deferred<Vec<Vec<Row>>> {
    gather_results(
        (0..WARMUP_QUERIES).map(|i| pool.run_query(SELECT, (id_for(i),))),
        true,
    )
}

// ---------------------------------------------------------------------------
// Many outstanding queries or transactions.

/// One batch of outstanding work on a fresh reactor.
struct Batch {
    reactor: Reactor,
    pool: ConnectionPool,
    target: u64,
    fired: Cell<u64>,
    failed: Cell<u64>,
    start: Cell<Option<Instant>>,
    end: Cell<Option<Instant>>,
    /// CPU used by the loop thread and the workers, at start and at end.
    cpu: RefCell<Vec<ThreadCpuNs>>,
}

impl Batch {
    fn new(reactor: &Reactor, pool: ConnectionPool, target: u64) -> Rc<Batch> {
        Rc::new(Batch {
            reactor: reactor.clone(),
            pool,
            target,
            fired: Cell::new(0),
            failed: Cell::new(0),
            start: Cell::new(None),
            end: Cell::new(None),
            cpu: RefCell::new(Vec::new()),
        })
    }

    fn done(&self, ok: bool) {
        if !ok {
            self.failed.set(self.failed.get() + 1);
        }
        let k = self.fired.get() + 1;
        self.fired.set(k);
        if k == self.target {
            self.end.set(Some(Instant::now()));
            self.cpu.borrow_mut().push(thread_cpu_ns());
            self.reactor.stop().expect("running");
        }
    }

    /// Runs the reactor until the batch is done.
    fn run(self: &Rc<Batch>, issue: fn(&Rc<Batch>)) -> BatchRun {
        let b = Rc::clone(self);
        let _ = self.reactor.call_when_running(move || {
            let b2 = Rc::clone(&b);
            let _ = warm_up(&b.pool).add_callback(move |_| {
                b2.cpu.borrow_mut().push(thread_cpu_ns());
                b2.start.set(Some(Instant::now()));
                issue(&b2);
            });
        });
        self.reactor.run().expect("a fresh reactor runs");
        assert_eq!(
            self.failed.get(),
            0,
            "{} of {} calls failed",
            self.failed.get(),
            self.target
        );
        let cpu = self.cpu.borrow();
        let (a, b) = (cpu[0], cpu[1]);
        BatchRun {
            wall: self.end.get().expect("finished") - self.start.get().expect("started"),
            loop_cpu: Duration::from_nanos(b.loop_ns - a.loop_ns),
            worker_cpu: Duration::from_nanos(b.worker_ns.saturating_sub(a.worker_ns)),
        }
    }
}

/// What a batch took: wall time from the first issue to the last callback,
/// and the CPU time the loop thread and the pool's workers used meanwhile.
#[derive(Debug, Clone, Copy)]
struct BatchRun {
    wall: Duration,
    loop_cpu: Duration,
    worker_cpu: Duration,
}

/// CPU time so far of this (the loop) thread and of the live pool workers
/// (`/proc/.../schedstat`, nanoseconds). The previous batch's workers have
/// been joined by then, so only this batch's are counted.
#[derive(Debug, Clone, Copy, Default)]
struct ThreadCpuNs {
    loop_ns: u64,
    worker_ns: u64,
}

fn thread_cpu_ns() -> ThreadCpuNs {
    let run_ns = |p: PathBuf| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let mut t = ThreadCpuNs {
        loop_ns: run_ns("/proc/thread-self/schedstat".into()),
        worker_ns: 0,
    };
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if comm.starts_with("PoolThread-") {
                t.worker_ns += run_ns(task.path().join("schedstat"));
            }
        }
    }
    t
}

fn issue_reads(b: &Rc<Batch>) {
    for i in 0..b.target {
        let b2 = Rc::clone(b);
        let _ =
            b.pool
                .run_query(SELECT, (id_for(i),))
                .add_both(move |r: Result<Vec<Row>, Failure>| {
                    b2.done(r.is_ok_and(|rows| one_text_row(&rows)));
                    Ok(())
                });
    }
}

fn issue_txns(b: &Rc<Batch>) {
    for i in 0..b.target {
        let b2 = Rc::clone(b);
        let _ = b
            .pool
            .run_interaction(move |txn| {
                for j in 0..ROWS_PER_TXN {
                    txn.execute(INSERT, (format!("txn {i} row {j}"),))?;
                }
                Ok(())
            })
            .add_both(move |r: Result<(), Failure>| {
                b2.done(r.is_ok());
                Ok(())
            });
    }
}

/// `n` point selects outstanding at once through a pool of `workers`.
fn pool_reads(db: &Db, workers: i64, n: u64) -> BatchRun {
    let reactor = new_reactor();
    let pool = db.pool(&reactor, workers, Durability::Full);
    Batch::new(&reactor, pool, n).run(issue_reads)
}

/// `n` point selects one after another on `conn`.
fn direct_reads(conn: &rusqlite::Connection, n: u64) -> Duration {
    let start = Instant::now();
    for i in 0..n {
        let mut st = conn.prepare_cached(SELECT).expect("prepare");
        let v: String = st.query_row([id_for(i)], |r| r.get(0)).expect("one row");
        black_box(v);
    }
    start.elapsed()
}

/// `n` point selects split over `threads` plain threads, each with its own
/// connection, all started together: what SQLite itself gives in parallel
/// on this machine (the ceiling for a pool of that many workers). The CPU
/// of those threads is reported as worker CPU.
fn direct_parallel_reads(db: &Db, threads: u64, n: u64) -> BatchRun {
    let go = Arc::new(Barrier::new(usize::try_from(threads).expect("small") + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let conn = db.direct(Durability::Full);
            let go = Arc::clone(&go);
            std::thread::spawn(move || {
                let _ = direct_reads(&conn, 1_000); // warm the statement
                let before = thread_cpu_ns().loop_ns;
                go.wait();
                for i in (t..n).step_by(usize::try_from(threads).expect("small")) {
                    let mut st = conn.prepare_cached(SELECT).expect("prepare");
                    let v: String = st.query_row([id_for(i)], |r| r.get(0)).expect("one row");
                    black_box(v);
                }
                thread_cpu_ns().loop_ns - before
            })
        })
        .collect();
    go.wait();
    let start = Instant::now();
    let cpu: u64 = handles
        .into_iter()
        .map(|h| h.join().expect("reader thread"))
        .sum();
    BatchRun {
        wall: start.elapsed(),
        loop_cpu: Duration::ZERO,
        worker_cpu: Duration::from_nanos(cpu),
    }
}

/// `n` ten-row transactions outstanding at once through a pool of `workers`.
fn pool_txns(db: &Db, workers: i64, sync: Durability, n: u64) -> BatchRun {
    let reactor = new_reactor();
    let pool = db.pool(&reactor, workers, sync);
    Batch::new(&reactor, pool, n).run(issue_txns)
}

/// `n` ten-row transactions one after another on `conn`.
fn direct_txns(conn: &mut rusqlite::Connection, n: u64) -> Duration {
    let start = Instant::now();
    for i in 0..n {
        let tx = conn.transaction().expect("begin");
        {
            let mut st = tx.prepare_cached(INSERT).expect("prepare");
            for j in 0..ROWS_PER_TXN {
                st.execute([format!("txn {i} row {j}")]).expect("insert");
            }
        }
        tx.commit().expect("commit");
    }
    start.elapsed()
}

fn bench_point_select(c: &mut Criterion) {
    let db = Db::create();
    let mut group = c.benchmark_group("point_select_100k");
    group.throughput(Throughput::Elements(READS));
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.bench_function(BenchmarkId::new("pool", 2), |b| {
        b.iter_custom(|iters| (0..iters).map(|_| pool_reads(&db, 2, READS).wall).sum());
    });
    let conn = db.direct(Durability::Full);
    group.bench_function(BenchmarkId::new("direct", 1), |b| {
        b.iter_custom(|iters| (0..iters).map(|_| direct_reads(&conn, READS)).sum());
    });
    group.finish();
}

fn bench_insert_txn(c: &mut Criterion) {
    let db = Db::create();
    for sync in [Durability::Full, Durability::Normal] {
        let mut group = c.benchmark_group(format!("insert_10_rows_txn/{}", sync.label()));
        group.throughput(Throughput::Elements(TXNS));
        group.sample_size(10);
        group.sampling_mode(SamplingMode::Flat);
        for workers in [1, 2] {
            group.bench_function(BenchmarkId::new("pool", workers), |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| pool_txns(&db, workers, sync, TXNS).wall)
                        .sum()
                });
            });
        }
        let mut conn = db.direct(sync);
        group.bench_function(BenchmarkId::new("direct", 1), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| direct_txns(&mut conn, TXNS)).sum());
        });
        group.finish();
    }
}

// ---------------------------------------------------------------------------
// Serial round trips.

struct Serial {
    reactor: Reactor,
    pool: ConnectionPool,
    left: Cell<u64>,
    failed: Cell<u64>,
    start: Cell<Option<Instant>>,
    end: Cell<Option<Instant>>,
    stamps: RefCell<Option<Vec<Instant>>>,
    cpus: RefCell<Option<ThreadCpus>>,
}

fn issue_serial(s: Rc<Serial>) {
    let id = id_for(s.left.get());
    let next = Rc::clone(&s);
    let _ = s
        .pool
        .run_query(SELECT, (id,))
        .add_both(move |r: Result<Vec<Row>, Failure>| {
            if !r.is_ok_and(|rows| one_text_row(&rows)) {
                next.failed.set(next.failed.get() + 1);
            }
            fired_serial(next);
            Ok(())
        });
}

fn fired_serial(s: Rc<Serial>) {
    let now = Instant::now();
    if let Some(v) = s.stamps.borrow_mut().as_mut() {
        v.push(now);
    }
    let left = s.left.get() - 1;
    s.left.set(left);
    if left == 0 {
        s.end.set(Some(now));
        if s.stamps.borrow().is_some() {
            *s.cpus.borrow_mut() = Some(thread_cpus());
        }
        s.reactor.stop().expect("running");
    } else {
        issue_serial(s);
    }
}

/// A serial run: total time, the start instant followed by the instant each
/// callback fired (if recorded), and where the threads ran at the end.
#[derive(Debug, Default)]
struct SerialRun {
    total: Duration,
    stamps: Vec<Instant>,
    cpus: Option<ThreadCpus>,
}

/// `n` serial point selects on a fresh reactor and pool of `workers`, after
/// `warmup` untimed ones.
fn serial_batch(db: &Db, workers: i64, warmup: u64, n: u64, record: bool) -> SerialRun {
    if n == 0 {
        return SerialRun::default();
    }
    let reactor = new_reactor();
    let pool = db.pool(&reactor, workers, Durability::Full);
    let s = Rc::new(Serial {
        reactor: reactor.clone(),
        pool,
        left: Cell::new(n),
        failed: Cell::new(0),
        start: Cell::new(None),
        end: Cell::new(None),
        stamps: RefCell::new(None),
        cpus: RefCell::new(None),
    });
    let s2 = Rc::clone(&s);
    let _ = reactor.call_when_running(move || {
        let s3 = Rc::clone(&s2);
        let warm = gather_results(
            (0..warmup).map(|i| s2.pool.run_query(SELECT, (id_for(i),))),
            true,
        );
        let _ = warm.add_callback(move |_| {
            let now = Instant::now();
            s3.start.set(Some(now));
            if record {
                let mut v = Vec::with_capacity(usize::try_from(n).unwrap_or(0) + 1);
                v.push(now);
                *s3.stamps.borrow_mut() = Some(v);
            }
            issue_serial(s3);
        });
    });
    reactor.run().expect("a fresh reactor runs");
    assert_eq!(s.failed.get(), 0, "serial queries failed");
    let total = s.end.get().expect("finished") - s.start.get().expect("started");
    let stamps = s.stamps.borrow_mut().take().unwrap_or_default();
    let cpus = s.cpus.borrow_mut().take();
    SerialRun {
        total,
        stamps,
        cpus,
    }
}

fn bench_serial(c: &mut Criterion) {
    let db = Db::create();
    let mut group = c.benchmark_group("serial_point_select");
    group.throughput(Throughput::Elements(1));
    for workers in [2, 1] {
        group.bench_function(BenchmarkId::new("pool", workers), |b| {
            b.iter_custom(|iters| serial_batch(&db, workers, WARMUP_QUERIES, iters, false).total);
        });
    }
    group.finish();
}

fn bench_stats_overhead(c: &mut Criterion) {
    let db = Db::create();
    let mut group = c.benchmark_group("stats_overhead");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    for on in [true, false] {
        let label = if on { "stats_on" } else { "stats_off" };
        group.throughput(Throughput::Elements(READS));
        group.bench_function(BenchmarkId::new("point_select_100k_pool2", label), |b| {
            b.iter_custom(|iters| {
                STATS.store(on, Ordering::Relaxed);
                let t = (0..iters).map(|_| pool_reads(&db, 2, READS).wall).sum();
                STATS.store(true, Ordering::Relaxed);
                t
            });
        });
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::new("serial_point_select_pool1", label), |b| {
            b.iter_custom(|iters| {
                STATS.store(on, Ordering::Relaxed);
                let t = serial_batch(&db, 1, WARMUP_QUERIES, iters, false).total;
                STATS.store(true, Ordering::Relaxed);
                t
            });
        });
    }
    group.finish();
}

// ---------------------------------------------------------------------------
// Summary, percentiles and idle CPU (ADBAPI_BENCH_PERCENTILES=1).

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    // Nearest-rank percentile.
    let n = sorted.len();
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn per_second(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// CPU per item, in microseconds.
fn cpu_us(cpu: Duration, n: u64) -> f64 {
    micros(cpu) / n as f64
}

/// Runs a direct batch and returns its wall time and the CPU this thread used.
fn direct_run(batch: impl FnOnce() -> Duration) -> BatchRun {
    let a = thread_cpu_ns();
    let wall = batch();
    let b = thread_cpu_ns();
    BatchRun {
        wall,
        loop_cpu: Duration::from_nanos(b.loop_ns - a.loop_ns),
        worker_cpu: Duration::ZERO,
    }
}

/// One line: each round's rate, then the medians of rate and of CPU per item.
fn summary_line(
    out: &mut impl Write,
    label: &str,
    n: u64,
    runs: &[BatchRun],
) -> std::io::Result<f64> {
    let rates: Vec<f64> = runs.iter().map(|r| per_second(n, r.wall)).collect();
    let loop_us = median(runs.iter().map(|r| cpu_us(r.loop_cpu, n)).collect());
    let worker_us = median(runs.iter().map(|r| cpu_us(r.worker_cpu, n)).collect());
    let rate = median(rates.clone());
    let cpu = if worker_us > 0.0 {
        format!(
            "cpu/item: loop {loop_us:.2}us + workers {worker_us:.2}us = {:.2}us",
            loop_us + worker_us
        )
    } else {
        format!("cpu/item: {loop_us:.2}us")
    };
    writeln!(
        out,
        "{label:<10} median {rate:>8.0}/s  [{}]  {cpu}",
        rates
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(" ")
    )?;
    Ok(rate)
}

/// `n` point selects, one after another, through a pool whose jobs run
/// inline on the loop thread (the fake reactor's inline thread pool): the
/// job path's own CPU cost, without hand-off, wake-ups or spinning, so the
/// machine's load moves it least.
fn inline_round_trips(db: &Db, n: u64) -> Duration {
    use reactor::testing::{FakeReactor, PoolMode};
    let reactor = FakeReactor::with_pool_mode(true, PoolMode::Inline);
    let pool = ConnectionPool::new(
        "sqlite3",
        args![db.path.as_str()],
        kwargs! {
            "cp_min" => 1,
            "cp_max" => 1,
            "cp_reactor" => Arg::reactor(reactor.clone()),
            "cp_stats" => STATS.load(Ordering::Relaxed),
        },
    )
    .expect("a valid pool");
    let one = |i: u64| {
        let d = pool.run_query(SELECT, (id_for(i),));
        reactor.pump();
        let rows = d.into_result().expect("fired").expect("a row");
        black_box(rows);
    };
    for i in 0..WARMUP_QUERIES {
        one(i);
    }
    let start = Instant::now();
    for i in 0..n {
        one(i);
    }
    start.elapsed()
}

/// Alternates pool and direct point-select batches `rounds` times and prints
/// each rate, the medians, the CPU per query by thread, and the ratio.
/// `cp_stats` on against off, in alternating rounds so that the machine's
/// noise falls on both alike: pool/2 point-select batches and serial round
/// trips on one worker; medians and their ratio.
fn report_stats_overhead(out: &mut impl Write, db: &Db, rounds: usize) -> std::io::Result<()> {
    const SERIAL: u64 = 20_000;
    writeln!(
        out,
        "== cp_stats on vs off, {rounds} alternating rounds (pool/2 {READS} point selects; serial pool/1 {SERIAL} round trips) =="
    )?;
    const INLINE: u64 = 50_000;
    let (mut reads_on, mut reads_off, mut serial_on, mut serial_off) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut inline_on, mut inline_off) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // Which goes first alternates too.
        for on in if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        } {
            STATS.store(on, Ordering::Relaxed);
            let inline = micros(inline_round_trips(db, INLINE)) / INLINE as f64;
            let qps = per_second(READS, pool_reads(db, 2, READS).wall);
            let rt =
                micros(serial_batch(db, 1, WARMUP_QUERIES, SERIAL, false).total) / SERIAL as f64;
            if on {
                reads_on.push(qps);
                serial_on.push(rt);
                inline_on.push(inline);
            } else {
                reads_off.push(qps);
                serial_off.push(rt);
                inline_off.push(inline);
            }
        }
    }
    STATS.store(
        !std::env::var("ADBAPI_BENCH_STATS").is_ok_and(|v| v == "0"),
        Ordering::Relaxed,
    );
    // Each round's own on/off ratio too: its median is less exposed to the
    // machine's load drifting between rounds than the ratio of the medians.
    let paired = |on: &[f64], off: &[f64]| {
        let mut r: Vec<f64> = on.iter().zip(off).map(|(a, b)| a / b).collect();
        r.sort_by(f64::total_cmp);
        (median(r.clone()), r[0], r[r.len() - 1])
    };
    let (ip, ilo, ihi) = paired(&inline_on, &inline_off);
    let (ion, ioff) = (median(inline_on), median(inline_off));
    writeln!(
        out,
        "inline (one thread, no hand-off: the path's own CPU) round trip: stats on {ion:.3} us, off {ioff:.3} us, on/off {:.3}; per round: median {ip:.3} (range {ilo:.3}-{ihi:.3})",
        ion / ioff
    )?;
    let (rp, rlo, rhi) = paired(&reads_on, &reads_off);
    let (sp, slo, shi) = paired(&serial_on, &serial_off);
    let (ron, roff) = (median(reads_on), median(reads_off));
    let (son, soff) = (median(serial_on), median(serial_off));
    writeln!(
        out,
        "pool/2 point select: stats on {ron:.0} q/s, off {roff:.0} q/s, on/off {:.3}; per round: median {rp:.3} (range {rlo:.3}-{rhi:.3})",
        ron / roff
    )?;
    writeln!(
        out,
        "serial pool/1 round trip: stats on {son:.2} us, off {soff:.2} us, on/off {:.3}; per round: median {sp:.3} (range {slo:.3}-{shi:.3})",
        son / soff
    )
}

fn report_reads(out: &mut impl Write, db: &Db, rounds: usize) -> std::io::Result<()> {
    writeln!(
        out,
        "== point select, {READS} per batch, {rounds} rounds (queries/s) =="
    )?;
    let conn = db.direct(Durability::Full);
    let _ = direct_reads(&conn, READS); // warm the page cache and the statement
    let (mut pool, mut pool1, mut direct, mut direct2) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        pool.push(pool_reads(db, 2, READS));
        direct.push(direct_run(|| direct_reads(&conn, READS)));
        pool1.push(pool_reads(db, 1, READS));
        direct2.push(direct_parallel_reads(db, 2, READS));
    }
    let p = summary_line(out, "pool/2", READS, &pool)?;
    let d = summary_line(out, "direct/1", READS, &direct)?;
    let p1 = summary_line(out, "pool/1", READS, &pool1)?;
    let d2 = summary_line(out, "direct/2", READS, &direct2)?;
    writeln!(
        out,
        "ratio pool/2 / direct/1 {:.3} (target >= 1); pool/1 / direct/1 {:.3}; direct/2 / direct/1 {:.3} (SQLite's own 2-thread scaling here)",
        p / d,
        p1 / d,
        d2 / d
    )
}

/// As [`report_reads`], for the ten-row transactions.
fn report_writes(out: &mut impl Write, db: &Db, rounds: usize) -> std::io::Result<()> {
    for sync in [Durability::Full, Durability::Normal] {
        writeln!(
            out,
            "== insert {ROWS_PER_TXN} rows per transaction, {TXNS} transactions per batch, {}, {rounds} rounds (transactions/s; rows/s = x{ROWS_PER_TXN}) ==",
            sync.label()
        )?;
        let mut conn = db.direct(sync);
        let (mut pool1, mut pool2, mut direct) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            pool1.push(pool_txns(db, 1, sync, TXNS));
            pool2.push(pool_txns(db, 2, sync, TXNS));
            direct.push(direct_run(|| direct_txns(&mut conn, TXNS)));
        }
        let p1 = summary_line(out, "pool/1", TXNS, &pool1)?;
        let p2 = summary_line(out, "pool/2", TXNS, &pool2)?;
        let d = summary_line(out, "direct/1", TXNS, &direct)?;
        let rows = ROWS_PER_TXN as f64;
        writeln!(
            out,
            "rows/s: pool/1 {:.0}, pool/2 {:.0}, direct/1 {:.0}; ratio pool/1 / direct {:.3}, pool/2 / direct {:.3}",
            p1 * rows,
            p2 * rows,
            d * rows,
            p1 / d,
            p2 / d
        )?;
    }
    Ok(())
}

fn report_serial_percentiles(out: &mut impl Write, db: &Db, workers: i64) -> std::io::Result<()> {
    const WARMUP: u64 = 5_000;
    const CALLS: u64 = 100_000;
    let run = serial_batch(db, workers, WARMUP, CALLS, true);
    let mut deltas: Vec<Duration> = run.stamps.windows(2).map(|w| w[1] - w[0]).collect();
    deltas.sort_unstable();
    writeln!(
        out,
        "serial_point_select/pool/{workers}: n={} mean={:.2}us p50={:.2}us p90={:.2}us p99={:.2}us p99.9={:.2}us max={:.1}us (cpus at end: {})",
        deltas.len(),
        micros(run.total) / CALLS as f64,
        micros(percentile(&deltas, 50.0)),
        micros(percentile(&deltas, 90.0)),
        micros(percentile(&deltas, 99.0)),
        micros(percentile(&deltas, 99.9)),
        micros(*deltas.last().expect("non-empty")),
        run.cpus.map_or_else(|| "?".to_owned(), |c| c.to_string()),
    )
}

/// The CPU the loop thread is on and the CPU each pool worker last ran on
/// (field 39 of `/proc/<tid>/stat`): tells whether they shared a CPU.
#[derive(Debug, Clone, Default)]
struct ThreadCpus {
    loop_cpu: Option<u32>,
    workers: Vec<u32>,
}

impl std::fmt::Display for ThreadCpus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.loop_cpu {
            Some(c) => write!(f, "loop={c} workers={:?}", self.workers),
            None => write!(f, "loop=? workers={:?}", self.workers),
        }
    }
}

fn stat_cpu(stat: &str) -> Option<u32> {
    // Field 39 (processor), counted after the command name ends at ')'.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(36)?.parse().ok()
}

fn thread_cpus() -> ThreadCpus {
    let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
    let mut cpus = ThreadCpus {
        loop_cpu: stat_cpu(&read("/proc/thread-self/stat".into())),
        workers: Vec::new(),
    };
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            // Thread names are cut to 15 bytes: "PoolThread-adba".
            if read(task.path().join("comm")).starts_with("PoolThread-") {
                if let Some(c) = stat_cpu(&read(task.path().join("stat"))) {
                    cpus.workers.push(c);
                }
            }
        }
    }
    cpus
}

/// utime + stime of the whole process, in clock ticks (`/proc/self/stat`).
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which ends at the last ')'): state is
    // field 3, utime field 14, stime field 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// A running reactor with a started pool of two workers (after some queries,
/// so the workers went through their spin and blocked) doing nothing for
/// about `idle`: the CPU the whole process used meanwhile.
fn report_idle_cpu(out: &mut impl Write, db: &Db, idle: Duration) -> std::io::Result<()> {
    const CLK_TCK: f64 = 100.0; // USER_HZ on Linux
    let reactor = new_reactor();
    let pool = db.pool(&reactor, 2, Durability::Full);
    let samples = Rc::new(RefCell::new(Vec::new()));
    let (r, sm) = (reactor.clone(), Rc::clone(&samples));
    let _ = reactor.call_when_running(move || {
        let _ = warm_up(&pool).add_callback(move |_| {
            // Let the workers and the loop finish spinning first.
            let r2 = r.clone();
            let _ = r.call_later(Duration::from_millis(50), move || {
                sm.borrow_mut().push((Instant::now(), cpu_ticks()));
                let r3 = r2.clone();
                let _ = r2.call_later(idle, move || {
                    sm.borrow_mut().push((Instant::now(), cpu_ticks()));
                    r3.stop().expect("running");
                });
            });
        });
    });
    reactor.run().expect("a fresh reactor runs");
    let s = samples.borrow();
    let ((t0, a), (t1, b)) = (s[0], s[1]);
    let wall = (t1 - t0).as_secs_f64();
    let cpu = (b - a) as f64 / CLK_TCK;
    writeln!(
        out,
        "idle_cpu/pool/2: wall={wall:.3}s cpu(utime+stime)={cpu:.3}s ({:.4} cpu-s per wall-s, whole process)",
        cpu / wall
    )
}

fn report_percentiles() -> std::io::Result<()> {
    // ADBAPI_BENCH_SECTIONS=reads,serial (say) runs only those parts.
    let sections = std::env::var("ADBAPI_BENCH_SECTIONS").unwrap_or_default();
    let want = |s: &str| {
        (sections.is_empty() && !["pool2", "direct1", "direct2", "inline"].contains(&s))
            || sections.split(',').any(|x| x.trim() == s)
    };
    let db = Db::create();
    let mut out = std::io::stdout().lock();
    if want("reads") {
        report_reads(&mut out, &db, 5)?;
    }
    if want("pool2") {
        // Only pool/2 point-select batches: for profiling the pool alone.
        writeln!(out, "== pool/2 point select only, {READS} per batch ==")?;
        let runs: Vec<BatchRun> = (0..10).map(|_| pool_reads(&db, 2, READS)).collect();
        summary_line(&mut out, "pool/2", READS, &runs)?;
    }
    if want("direct1") {
        // Only direct/1 batches: the physical limit, for profiling beside
        // pool2.
        writeln!(out, "== direct/1 point select only, {READS} per batch ==")?;
        let conn = db.direct(Durability::Full);
        let _ = direct_reads(&conn, READS);
        let runs: Vec<BatchRun> = (0..10)
            .map(|_| {
                let before = thread_cpu_ns().loop_ns;
                let wall = direct_reads(&conn, READS);
                BatchRun {
                    wall,
                    loop_cpu: Duration::ZERO,
                    worker_cpu: Duration::from_nanos(thread_cpu_ns().loop_ns - before),
                }
            })
            .collect();
        summary_line(&mut out, "direct/1", READS, &runs)?;
    }
    if want("direct2") {
        // Only direct/2 batches: SQLite's own two-thread behaviour, for
        // profiling beside pool2.
        writeln!(out, "== direct/2 point select only, {READS} per batch ==")?;
        let runs: Vec<BatchRun> = (0..10)
            .map(|_| direct_parallel_reads(&db, 2, READS))
            .collect();
        summary_line(&mut out, "direct/2", READS, &runs)?;
    }
    if want("inline") {
        // Only inline round trips (cp_stats as ADBAPI_BENCH_STATS says): the
        // job path's own CPU, for profiling.
        let n = 500_000;
        let t = inline_round_trips(&db, n);
        writeln!(
            out,
            "== inline round trip only: {:.3} us ==",
            micros(t) / n as f64
        )?;
    }
    if want("writes") {
        report_writes(&mut out, &db, 5)?;
    }
    if want("serial") {
        writeln!(out, "== serial round trip latency (100 000 calls) ==")?;
        for workers in [2, 1] {
            report_serial_percentiles(&mut out, &db, workers)?;
        }
    }
    if want("stats") {
        let rounds = std::env::var("ADBAPI_BENCH_STATS_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&n| n > 0)
            .unwrap_or(9);
        report_stats_overhead(&mut out, &db, rounds)?;
    }
    if want("idle") {
        writeln!(out, "== CPU while idle (reactor + started pool, ~1 s) ==")?;
        report_idle_cpu(&mut out, &db, Duration::from_secs(1))?;
    }
    out.flush()
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

criterion_group!(
    benches,
    bench_point_select,
    bench_insert_txn,
    bench_serial,
    bench_stats_overhead
);

fn main() {
    // ADBAPI_BENCH_STATS=0: every pool without cp_stats (one mode per
    // process, for counting instructions with `perf stat`).
    if std::env::var("ADBAPI_BENCH_STATS").is_ok_and(|v| v == "0") {
        STATS.store(false, Ordering::Relaxed);
    }
    if env_flag("ADBAPI_BENCH_PERCENTILES") || env_flag("ADBAPI_BENCH_ONLY_PERCENTILES") {
        report_percentiles().expect("write to stdout");
        if env_flag("ADBAPI_BENCH_ONLY_PERCENTILES") {
            return;
        }
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
