//! Benchmarks of the reactor's thread round trips (criterion).
//!
//! - `serial_round_trip`: one `defer_to_thread_pool(|| Ok(()))` at a time, the
//!   next issued from the previous one's callback on the loop thread; time per
//!   call.
//! - `outstanding_100k`: 100 000 no-op jobs issued at once, each callback
//!   counts; calls per second.
//! - `call_from_thread_100k`: one or two foreign threads send 100 000
//!   `call_from_thread` calls in all to a running reactor; calls per second.
//!
//! Each runs with the default spinning (`spin`) and with spinning disabled on
//! both the reactor and the pool (`nospin`).
//!
//! With `REACTOR_BENCH_PERCENTILES=1`, before criterion runs, the binary also
//! prints (to stdout) the p50/p90/p99/p99.9 latency of the serial round trip
//! over 100 000 calls, and the CPU used by a reactor with a started pool while
//! idle for about one second. With `REACTOR_BENCH_ONLY_PERCENTILES=1` it stops
//! there; `REACTOR_BENCH_CONFIG=nospin/1` (say) limits that section to one
//! configuration (handy under `perf stat`). The latency line also says which
//! CPU the loop and the workers were on at the end: on 2 vCPUs the serial
//! round trip differs several-fold between "same CPU" and "different CPUs",
//! and the scheduler picks, so run it more than once (or under `taskset`).
//!
//! ```text
//! REACTOR_BENCH_PERCENTILES=1 cargo bench -p reactor --bench reactor -- --warm-up-time 1 --measurement-time 5
//! ```

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::rc::Rc;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, BenchmarkId, Criterion, SamplingMode, Throughput};
use reactor::prelude::*;
use reactor::{defer_to_thread_pool, Reactor, ThreadPool};

/// Jobs (or calls) per batch in the throughput benchmarks.
const BATCH: u64 = 100_000;

/// A pool size and whether spinning is on (the defaults) or off (zero).
#[derive(Debug, Clone, Copy)]
struct Config {
    workers: usize,
    spin: bool,
}

impl Config {
    const ALL: [Config; 4] = [
        Config {
            workers: 1,
            spin: true,
        },
        Config {
            workers: 2,
            spin: true,
        },
        Config {
            workers: 1,
            spin: false,
        },
        Config {
            workers: 2,
            spin: false,
        },
    ];

    fn label(self) -> &'static str {
        if self.spin {
            "spin"
        } else {
            "nospin"
        }
    }

    /// A started pool of exactly `workers` threads.
    fn pool(self) -> ThreadPool {
        let pool = ThreadPool::new(self.workers, self.workers, format!("bench{}", self.workers))
            .expect("min <= max");
        if !self.spin {
            pool.set_spin(Duration::ZERO);
        }
        pool.start().expect("a fresh pool starts");
        pool
    }

    fn reactor(self) -> Reactor {
        let reactor = Reactor::new().expect("epoll and eventfd");
        if !self.spin {
            reactor.set_spin(Duration::ZERO);
        }
        reactor
    }
}

// ---------------------------------------------------------------------------
// Serial round trips.

struct Serial {
    reactor: Reactor,
    pool: ThreadPool,
    left: Cell<u64>,
    end: Cell<Option<Instant>>,
    stamps: RefCell<Option<Vec<Instant>>>,
    /// Where the threads ran at the end (recorded with `stamps`).
    cpus: RefCell<Option<ThreadCpus>>,
}

fn issue_serial(s: Rc<Serial>) {
    let next = Rc::clone(&s);
    let _ = defer_to_thread_pool(&s.reactor, &s.pool, || Ok(())).add_callback(move |()| {
        fired_serial(next);
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

/// Runs `n` serial no-op round trips on a fresh reactor; the total is the time
/// from the first issue to the last callback.
fn serial_batch(cfg: Config, pool: &ThreadPool, n: u64, record: bool) -> SerialRun {
    if n == 0 {
        return SerialRun::default();
    }
    let reactor = cfg.reactor();
    let stamps = record.then(|| Vec::with_capacity(usize::try_from(n).unwrap_or(0) + 1));
    let s = Rc::new(Serial {
        reactor: reactor.clone(),
        pool: pool.clone(),
        left: Cell::new(n),
        end: Cell::new(None),
        stamps: RefCell::new(stamps),
        cpus: RefCell::new(None),
    });
    let start = Rc::new(Cell::new(None));
    let (s2, st) = (Rc::clone(&s), Rc::clone(&start));
    reactor.call_when_running(move || {
        let now = Instant::now();
        st.set(Some(now));
        if let Some(v) = s2.stamps.borrow_mut().as_mut() {
            v.push(now);
        }
        issue_serial(s2);
    });
    reactor.run().expect("a fresh reactor runs");
    let start = start.get().expect("started");
    let end = s.end.get().expect("finished");
    let stamps = s.stamps.borrow_mut().take().unwrap_or_default();
    let cpus = s.cpus.borrow_mut().take();
    SerialRun {
        total: end - start,
        stamps,
        cpus,
    }
}

fn bench_serial(c: &mut Criterion) {
    let mut group = c.benchmark_group("serial_round_trip");
    group.throughput(Throughput::Elements(1));
    for cfg in Config::ALL {
        let pool = cfg.pool();
        group.bench_with_input(
            BenchmarkId::new(cfg.label(), cfg.workers),
            &cfg,
            |b, &cfg| b.iter_custom(|iters| serial_batch(cfg, &pool, iters, false).total),
        );
        pool.stop();
    }
    group.finish();
}

// ---------------------------------------------------------------------------
// Many outstanding jobs.

struct Outstanding {
    reactor: Reactor,
    fired: Cell<u64>,
    target: u64,
    end: Cell<Option<Instant>>,
}

/// Issues `n` no-op jobs at once on a fresh reactor; returns the time from the
/// first issue until the last callback fired.
fn outstanding_batch(cfg: Config, pool: &ThreadPool, n: u64) -> Duration {
    let reactor = cfg.reactor();
    let state = Rc::new(Outstanding {
        reactor: reactor.clone(),
        fired: Cell::new(0),
        target: n,
        end: Cell::new(None),
    });
    let start = Rc::new(Cell::new(None));
    let (st, s, pool) = (Rc::clone(&start), Rc::clone(&state), pool.clone());
    reactor.call_when_running(move || {
        st.set(Some(Instant::now()));
        for _ in 0..s.target {
            let s2 = Rc::clone(&s);
            let _ = defer_to_thread_pool(&s.reactor, &pool, || Ok(())).add_callback(move |()| {
                let k = s2.fired.get() + 1;
                s2.fired.set(k);
                if k == s2.target {
                    s2.end.set(Some(Instant::now()));
                    s2.reactor.stop().expect("running");
                }
            });
        }
    });
    reactor.run().expect("a fresh reactor runs");
    state.end.get().expect("finished") - start.get().expect("started")
}

fn bench_outstanding(c: &mut Criterion) {
    let mut group = c.benchmark_group("outstanding_100k");
    group.throughput(Throughput::Elements(BATCH));
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    for cfg in Config::ALL {
        let pool = cfg.pool();
        group.bench_with_input(
            BenchmarkId::new(cfg.label(), cfg.workers),
            &cfg,
            |b, &cfg| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| outstanding_batch(cfg, &pool, BATCH))
                        .sum()
                })
            },
        );
        pool.stop();
    }
    group.finish();
}

// ---------------------------------------------------------------------------
// call_from_thread throughput.

struct CftState {
    reactor: Reactor,
    left: u64,
    end: Option<Instant>,
}

thread_local! {
    static CFT: RefCell<Option<CftState>> = const { RefCell::new(None) };
}

/// The call sent from the foreign threads; runs on the loop thread.
fn cft_tick() {
    CFT.with(|c| {
        let mut c = c.borrow_mut();
        let s = c.as_mut().expect("set by cft_batch");
        s.left -= 1;
        if s.left == 0 {
            s.end = Some(Instant::now());
            s.reactor.stop().expect("running");
        }
    });
}

/// `senders` threads send `n` calls in all to a fresh running reactor; returns
/// the time from releasing the senders until the last call ran.
fn cft_batch(spin: bool, senders: u64, n: u64) -> Duration {
    let reactor = Config { workers: 0, spin }.reactor();
    CFT.with(|c| {
        *c.borrow_mut() = Some(CftState {
            reactor: reactor.clone(),
            left: n,
            end: None,
        });
    });
    let go = Arc::new(Barrier::new(usize::try_from(senders).expect("small") + 1));
    let threads: Vec<_> = (0..senders)
        .map(|i| {
            let remote = reactor.remote();
            let go = Arc::clone(&go);
            let mine = n / senders + u64::from(i < n % senders);
            std::thread::spawn(move || {
                go.wait();
                for _ in 0..mine {
                    remote.call_from_thread(cft_tick);
                }
            })
        })
        .collect();
    let start = Rc::new(Cell::new(None));
    let st = Rc::clone(&start);
    reactor.call_when_running(move || {
        go.wait();
        st.set(Some(Instant::now()));
    });
    reactor.run().expect("a fresh reactor runs");
    for t in threads {
        t.join().expect("sender thread");
    }
    let s = CFT.with(|c| c.borrow_mut().take()).expect("state");
    s.end.expect("finished") - start.get().expect("started")
}

fn bench_call_from_thread(c: &mut Criterion) {
    let mut group = c.benchmark_group("call_from_thread_100k");
    group.throughput(Throughput::Elements(BATCH));
    group.sample_size(20);
    group.sampling_mode(SamplingMode::Flat);
    // The loop spins only while thread-pool jobs are outstanding, never here,
    // so spin and nospin are the same code path; run the default only.
    for senders in [1_u64, 2] {
        group.bench_with_input(
            BenchmarkId::new("senders", senders),
            &senders,
            |b, &senders| {
                b.iter_custom(|iters| (0..iters).map(|_| cft_batch(true, senders, BATCH)).sum())
            },
        );
    }
    group.finish();
}

// ---------------------------------------------------------------------------
// Percentiles and idle CPU (REACTOR_BENCH_PERCENTILES=1).

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    // Nearest-rank percentile.
    let n = sorted.len();
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn report_serial_percentiles(out: &mut impl Write, cfg: Config) -> std::io::Result<()> {
    const WARMUP: u64 = 5_000;
    const CALLS: u64 = 100_000;
    let pool = cfg.pool();
    let _ = serial_batch(cfg, &pool, WARMUP, false);
    let run = serial_batch(cfg, &pool, CALLS, true);
    pool.stop();
    let total = run.total;
    let mut deltas: Vec<Duration> = run.stamps.windows(2).map(|w| w[1] - w[0]).collect();
    deltas.sort_unstable();
    writeln!(
        out,
        "serial_round_trip/{}/{}: n={} mean={:.2}us p50={:.2}us p90={:.2}us p99={:.2}us p99.9={:.2}us max={:.1}us (cpus at end: {})",
        cfg.label(),
        cfg.workers,
        deltas.len(),
        micros(total) / CALLS as f64,
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
    let read = |p: std::path::PathBuf| std::fs::read_to_string(p).unwrap_or_default();
    let mut cpus = ThreadCpus {
        loop_cpu: stat_cpu(&read("/proc/thread-self/stat".into())),
        workers: Vec::new(),
    };
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            if read(task.path().join("comm")).starts_with("PoolThread-") {
                if let Some(c) = stat_cpu(&read(task.path().join("stat"))) {
                    cpus.workers.push(c);
                }
            }
        }
    }
    cpus
}

/// CPU counters of this process: clock ticks (utime + stime from
/// `/proc/self/stat`), and the sum over its threads of run time (ns) and of
/// timeslices (`/proc/self/task/*/schedstat`).
#[derive(Debug, Clone, Copy, Default)]
struct CpuSample {
    ticks: u64,
    run_ns: u64,
    slices: u64,
}

fn cpu_sample() -> CpuSample {
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
    let mut sample = CpuSample {
        ticks: field(11) + field(12),
        ..CpuSample::default()
    };
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            let path = task.path().join("schedstat");
            let Ok(s) = std::fs::read_to_string(path) else {
                continue;
            };
            let mut it = s.split_whitespace().map(|f| f.parse::<u64>().unwrap_or(0));
            sample.run_ns += it.next().unwrap_or(0);
            let _wait = it.next();
            sample.slices += it.next().unwrap_or(0);
        }
    }
    sample
}

/// Runs a reactor with a started pool (after one job, so the workers went
/// through their spin and blocked) doing nothing for about `idle`; reports the
/// CPU used by the whole process meanwhile.
fn report_idle_cpu(out: &mut impl Write, cfg: Config, idle: Duration) -> std::io::Result<()> {
    const CLK_TCK: f64 = 100.0; // USER_HZ on Linux
    let pool = cfg.pool();
    let reactor = cfg.reactor();
    let samples = Rc::new(RefCell::new(Vec::new()));
    let (r, p, sm) = (reactor.clone(), pool.clone(), Rc::clone(&samples));
    reactor.call_when_running(move || {
        let r2 = r.clone();
        let _ = defer_to_thread_pool(&r, &p, || Ok(())).add_callback(move |()| {
            // Let the workers and the loop finish spinning first.
            let r3 = r2.clone();
            r2.call_later(Duration::from_millis(50), move || {
                sm.borrow_mut().push((Instant::now(), cpu_sample()));
                let r4 = r3.clone();
                r3.call_later(idle, move || {
                    sm.borrow_mut().push((Instant::now(), cpu_sample()));
                    r4.stop().expect("running");
                });
            });
        });
    });
    reactor.run().expect("a fresh reactor runs");
    pool.stop();
    let s = samples.borrow();
    let ((t0, a), (t1, b)) = (s[0], s[1]);
    let wall = (t1 - t0).as_secs_f64();
    writeln!(
        out,
        "idle_cpu/{}/{}: wall={:.3}s cpu(utime+stime)={:.3}s ({:.4} cpu-s per s) cpu(schedstat)={:.6}s ({:.6} cpu-s per s) timeslices={} (all threads)",
        cfg.label(),
        cfg.workers,
        wall,
        (b.ticks - a.ticks) as f64 / CLK_TCK,
        (b.ticks - a.ticks) as f64 / CLK_TCK / wall,
        (b.run_ns - a.run_ns) as f64 / 1e9,
        (b.run_ns - a.run_ns) as f64 / 1e9 / wall,
        b.slices - a.slices,
    )
}

fn report_percentiles() -> std::io::Result<()> {
    // REACTOR_BENCH_CONFIG=nospin/1 (say) limits the section to one config.
    let only = std::env::var("REACTOR_BENCH_CONFIG").unwrap_or_default();
    let configs: Vec<Config> = Config::ALL
        .into_iter()
        .filter(|c| only.is_empty() || format!("{}/{}", c.label(), c.workers) == only)
        .collect();
    let mut out = std::io::stdout().lock();
    writeln!(out, "== serial round trip latency (100 000 calls) ==")?;
    for &cfg in &configs {
        report_serial_percentiles(&mut out, cfg)?;
    }
    writeln!(out, "== CPU while idle (reactor + started pool, ~1 s) ==")?;
    for &cfg in &configs {
        report_idle_cpu(&mut out, cfg, Duration::from_secs(1))?;
    }
    out.flush()
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

criterion_group!(
    benches,
    bench_serial,
    bench_outstanding,
    bench_call_from_thread
);

fn main() {
    if env_flag("REACTOR_BENCH_PERCENTILES") || env_flag("REACTOR_BENCH_ONLY_PERCENTILES") {
        report_percentiles().expect("write to stdout");
        if env_flag("REACTOR_BENCH_ONLY_PERCENTILES") {
            return;
        }
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
