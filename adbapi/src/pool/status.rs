//! What a pool has done and is doing, for dashboards: the counters its
//! workers and its loop thread keep ([`PoolStats`]), the fixed log-bucket
//! histograms of the time jobs waited for a worker and ran ([`Histogram`]),
//! and the typed snapshot [`ConnectionPool::status`] returns
//! ([`PoolStatus`]). Twisted's adbapi has none of this; its users (Synapse)
//! bolt it on. Every figure is an atomic read, so a snapshot is cheap enough
//! to take every second, and recording one job costs a few uncontended
//! atomic adds.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use super::observe::Observe;
use super::ConnectionPool;

/// Buckets below [`EXACT`] microseconds hold one value each; above, each
/// power of two is split into [`SUB`] buckets, so a percentile read from the
/// histogram is at most 25 % above the true one.
const EXACT: u64 = 4;
const SUB: u64 = 4;
/// Octaves 2..=41 of microseconds: up to about 25 days, plenty for a job.
const OCTAVES: u64 = 40;
const BUCKETS: usize = (EXACT + OCTAVES * SUB) as usize;

/// A histogram of durations in fixed logarithmic buckets of atomics: one
/// `fetch_add` per bucket hit plus the sum, no lock, no allocation. Read
/// with [`summary`](Self::summary).
#[repr(align(128))]
pub(super) struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
    max_us: AtomicU64,
}

impl Histogram {
    pub(super) fn new() -> Histogram {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
            max_us: AtomicU64::new(0),
        }
    }

    fn bucket(us: u64) -> usize {
        if us < EXACT {
            return us as usize;
        }
        let octave = 63 - u64::from(us.leading_zeros()); // >= 2
        let sub = (us >> (octave - 2)) & (SUB - 1);
        let idx = EXACT + (octave - 2) * SUB + sub;
        idx.min(BUCKETS as u64 - 1) as usize
    }

    /// The largest value (in microseconds) bucket `idx` holds.
    fn upper(idx: usize) -> u64 {
        let idx = idx as u64;
        if idx < EXACT {
            return idx;
        }
        let octave = (idx - EXACT) / SUB + 2;
        let sub = (idx - EXACT) % SUB;
        ((SUB + sub + 1) << (octave - 2)) - 1
    }

    /// Records one duration.
    pub(super) fn record(&self, d: Duration) {
        // Whole microseconds without `as_micros`'s 128-bit arithmetic.
        let us = d
            .as_secs()
            .saturating_mul(1_000_000)
            .saturating_add(u64::from(d.subsec_micros()));
        self.buckets[Self::bucket(us)].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        // A load first: the maximum rarely changes, and a plain load does
        // not take the cache line away from the other workers.
        if us > self.max_us.load(Ordering::Relaxed) {
            self.max_us.fetch_max(us, Ordering::Relaxed);
        }
    }

    /// The count, sum and percentiles recorded so far.
    #[cfg(test)]
    fn summary(&self) -> DurationStats {
        Self::summary_of([self])
    }

    /// The count, sum and percentiles recorded so far in all of `parts`
    /// together.
    pub(super) fn summary_of<'a>(parts: impl IntoIterator<Item = &'a Histogram>) -> DurationStats {
        let mut counts = [0u64; BUCKETS];
        let (mut sum_us, mut max_us) = (0u64, 0u64);
        for h in parts {
            for (c, b) in counts.iter_mut().zip(&h.buckets) {
                *c += b.load(Ordering::Relaxed);
            }
            sum_us = sum_us.saturating_add(h.sum_us.load(Ordering::Relaxed));
            max_us = max_us.max(h.max_us.load(Ordering::Relaxed));
        }
        let count: u64 = counts.iter().sum();
        let pct = |p: f64| -> Duration {
            if count == 0 {
                return Duration::ZERO;
            }
            // The rank of the p-th percentile, 1-based, as in "nearest rank".
            let rank = ((p * count as f64).ceil() as u64).clamp(1, count);
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return Duration::from_micros(Self::upper(i).min(max_us));
                }
            }
            Duration::from_micros(max_us)
        };
        DurationStats {
            count,
            total: Duration::from_micros(sum_us),
            p50: pct(0.50),
            p90: pct(0.90),
            p99: pct(0.99),
            max: Duration::from_micros(max_us),
        }
    }
}

/// The counters the loop thread writes, on cache lines of their own so that
/// the workers' writes do not take them away from it.
#[repr(align(128))]
pub(super) struct LoopCounters {
    /// Jobs submitted on the observed path.
    pub(super) submitted: AtomicU64,
    /// Jobs that left the queue on the loop thread: timed out or withdrawn.
    pub(super) withdrawn: AtomicU64,
    pub(super) jobs_failed: AtomicU64,
    pub(super) jobs_cancelled: AtomicU64,
    pub(super) jobs_timed_out: AtomicU64,
}

/// How many [`Shard`]s a pool's job figures are split into.
const SHARDS: usize = 8;

/// One worker's share of the job figures a worker writes for every job. A
/// shard per thread (threads are dealt shards in turn) keeps two workers
/// from writing the same cache lines for every job: on a small VM such a
/// line moving between cores costs more than the counting itself.
#[repr(align(128))]
pub(super) struct Shard {
    /// Jobs that left the queue on a worker: started, or dropped unrun.
    pub(super) left: AtomicU64,
    /// Jobs that succeeded.
    pub(super) completed: AtomicU64,
    /// Unnamed jobs that failed or were cancelled on their worker, or were
    /// dropped unrun by a stopped pool (named and timed jobs' failures are
    /// counted on the loop thread, where their Deferred fails).
    pub(super) failed: AtomicU64,
    pub(super) cancelled: AtomicU64,
    pub(super) wait: Histogram,
    pub(super) run: Histogram,
}

/// The counters the workers write rarely (per connection, not per job).
#[repr(align(128))]
pub(super) struct WorkerCounters {
    pub(super) connections_opened: AtomicU64,
    pub(super) connections_closed: AtomicU64,
    pub(super) connections_failed: AtomicU64,
}

/// The counters of one pool and how it is observed, shared by its loop
/// thread and its workers (it lives in the [`SharedPool`](super::SharedPool)
/// every job already holds, so observing a job adds no reference count
/// traffic on a shared cache line). Read by [`ConnectionPool::status`].
pub(super) struct PoolStats {
    pub(super) observe: Observe,
    pub(super) on_loop: LoopCounters,
    pub(super) on_workers: WorkerCounters,
    shards: Box<[Shard; SHARDS]>,
}

impl PoolStats {
    pub(super) fn new(observe: Observe) -> PoolStats {
        if !observe.plain() {
            // The job clock calibrates itself once per process (about half
            // a millisecond here): now, not in the first job's round trip.
            let _ = quanta::Instant::now();
        }
        let z = || AtomicU64::new(0);
        PoolStats {
            observe,
            on_loop: LoopCounters {
                submitted: z(),
                withdrawn: z(),
                jobs_failed: z(),
                jobs_cancelled: z(),
                jobs_timed_out: z(),
            },
            on_workers: WorkerCounters {
                connections_opened: z(),
                connections_closed: z(),
                connections_failed: z(),
            },
            shards: Box::new(std::array::from_fn(|_| Shard {
                left: z(),
                completed: z(),
                failed: z(),
                cancelled: z(),
                wait: Histogram::new(),
                run: Histogram::new(),
            })),
        }
    }

    /// The calling thread's shard.
    pub(super) fn shard(&self) -> &Shard {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
        }
        &self.shards[INDEX.with(|i| *i)]
    }

    pub(super) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Jobs submitted on the observed path and still waiting for a worker.
    pub(super) fn queued(&self) -> u64 {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        // Read the leavers first: a job counted as gone is then always
        // counted as submitted too, so the difference cannot underflow.
        let left: u64 = self.shards.iter().map(|s| load(&s.left)).sum();
        let gone = left + load(&self.on_loop.withdrawn);
        load(&self.on_loop.submitted).saturating_sub(gone)
    }
}

/// A distribution of durations: how many, their total, and percentiles
/// read from a log-bucket histogram (each at most 25 % above the true
/// value, and never above [`max`](Self::max), which is exact).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DurationStats {
    /// How many durations were recorded.
    pub count: u64,
    /// Their sum.
    pub total: Duration,
    /// The median.
    pub p50: Duration,
    /// The 90th percentile.
    pub p90: Duration,
    /// The 99th percentile.
    pub p99: Duration,
    /// The largest.
    pub max: Duration,
}

/// A snapshot of a pool for dashboards, from [`ConnectionPool::status`].
/// Not in Twisted (its users read `pool.threadpool` and count jobs
/// themselves); the figures are HikariCP's `HikariPoolMXBean`'s and
/// Synapse's database metrics'.
///
/// Totals count since the pool was made. The job totals and the
/// distributions are kept only while `cp_stats` is on (the default); the
/// worker and connection figures always are.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStatus {
    /// The pool's name: `cp_name`, else `adbapi-<module>`.
    pub name: String,
    /// `cp_min`.
    pub min: usize,
    /// `cp_max`.
    pub max: usize,
    /// True between start and close (`pool.running`).
    pub running: bool,
    /// Live worker threads.
    pub workers: usize,
    /// Workers running a job.
    pub busy: usize,
    /// Workers waiting for a job.
    pub idle: usize,
    /// Jobs waiting for a worker.
    pub queued: usize,
    /// Connections open now (one per worker that has connected).
    pub open_connections: usize,
    /// Connections opened (the driver's `connect` and `cp_openfun` succeeded).
    pub connections_opened: u64,
    /// Connections closed.
    pub connections_closed: u64,
    /// Attempts to open a connection that failed.
    pub connections_failed: u64,
    /// Jobs whose Deferred succeeded.
    pub jobs_completed: u64,
    /// Jobs whose Deferred failed (other than cancelled or timed out).
    pub jobs_failed: u64,
    /// Jobs whose Deferred failed with `CancelledError`.
    pub jobs_cancelled: u64,
    /// Jobs that failed with [`PoolTimeout`](crate::PoolTimeout)
    /// (`cp_queue_timeout`).
    pub jobs_timed_out: u64,
    /// How long jobs waited for a worker.
    pub wait: DurationStats,
    /// How long jobs ran on their worker (connect, the function, commit or
    /// rollback).
    pub run: DurationStats,
}

impl ConnectionPool {
    /// A snapshot of the pool's counts and timings (see [`PoolStatus`]):
    /// atomic reads, no lock on the job path, cheap enough to call every
    /// second. Works at any time, during and after close too. Not in
    /// Twisted; HikariCP's `getHikariPoolMXBean()`. With the `metrics`
    /// feature it also sets the pool's gauges (workers, busy, idle, queued,
    /// open connections).
    pub fn status(&self) -> PoolStatus {
        let inner = &self.inner;
        let stats = inner.shared.stats();
        let tp = &inner.threadpool;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        // Only the observed path keeps the count of jobs still waiting (the
        // thread pool's also counts withdrawn jobs until a worker pops them).
        let queued = if !stats.observe.plain() {
            usize::try_from(stats.queued()).unwrap_or(usize::MAX)
        } else {
            tp.q_size()
        };
        let (l, w) = (&stats.on_loop, &stats.on_workers);
        let status = PoolStatus {
            name: stats.observe.label.to_string(),
            min: inner.min,
            max: inner.max,
            running: inner.running.get(),
            workers: tp.workers(),
            busy: tp.working(),
            idle: tp.waiters(),
            queued,
            open_connections: inner
                .shared
                .connections()
                .iter()
                .filter(|(_, c)| !c.is_closed())
                .count(),
            connections_opened: load(&w.connections_opened),
            connections_closed: load(&w.connections_closed),
            connections_failed: load(&w.connections_failed),
            jobs_completed: stats.shards.iter().map(|s| load(&s.completed)).sum(),
            jobs_failed: load(&l.jobs_failed)
                + stats.shards.iter().map(|s| load(&s.failed)).sum::<u64>(),
            jobs_cancelled: load(&l.jobs_cancelled)
                + stats.shards.iter().map(|s| load(&s.cancelled)).sum::<u64>(),
            jobs_timed_out: load(&l.jobs_timed_out),
            wait: Histogram::summary_of(stats.shards.iter().map(|s| &s.wait)),
            run: Histogram::summary_of(stats.shards.iter().map(|s| &s.run)),
        };
        super::metrics::publish_status(&stats.observe.label, &status);
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_bound_their_values() {
        let mut last = 0;
        for us in (0..5000u64).chain([1 << 20, (1 << 20) + 12345, u64::MAX / 2, u64::MAX]) {
            let b = Histogram::bucket(us);
            assert!(b >= last || us > 5000, "bucket order at {us}");
            if us < 5000 {
                last = b;
            }
            if b < BUCKETS - 1 {
                assert!(Histogram::upper(b) >= us, "{us} above its bucket's bound");
                // Within 25 % above.
                assert!(Histogram::upper(b) as f64 <= us as f64 * 1.25 + 1.0, "{us}");
            }
        }
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let h = Histogram::new();
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        let s = h.summary();
        assert_eq!(s.count, 100);
        assert_eq!(s.max, Duration::from_millis(100));
        assert_eq!(s.total, Duration::from_millis(5050));
        for (got, want) in [(s.p50, 50), (s.p90, 90), (s.p99, 99)] {
            let want = Duration::from_millis(want);
            assert!(
                got >= want && got.as_secs_f64() <= want.as_secs_f64() * 1.25,
                "{got:?}"
            );
        }
        assert_eq!(Histogram::new().summary(), DurationStats::default());
    }
}
