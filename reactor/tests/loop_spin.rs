//! The loop's spin for thread results (`loop_spin.rs`, `Reactor::set_spin`)
//! against the promises around it: a spin is part of the loop's wait, so a
//! timer is not made later by it and `iterate(delay)` does not wait longer
//! than `delay`; an idle loop does not spin at all.
//!
//! Not in Twisted (whose loop never spins). A job stays outstanding here by
//! being queued on a pool that is not started, so no thread is involved.
//!
//! The wall-clock bounds below are upper bounds with a wide margin: a loop
//! that spins through its timeout and then sleeps the whole timeout again
//! takes at least twice the delay, deterministically; a correct one takes
//! the delay, so the test fails only if the machine stalls this thread for
//! most of a second.
//!
//! The `measure_*` tests (ignored; run with `--ignored --nocapture`) print
//! the loop's CPU share and how often it slept, adaptive budget against a
//! fixed 20 µs, for calls from a thread, sequential jobs of a few to a few
//! hundred µs, and a long job outstanding while a timer ticks.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use reactor::prelude::*;
use reactor::{defer_to_thread_pool, Address, Reactor, ThreadPool};

/// The delay the tests wait for; long, so scheduling noise is small next
/// to it.
const DELAY: Duration = Duration::from_millis(1000);

/// Less than twice [`DELAY`]: a loop that spins through its timeout and
/// then sleeps it again cannot come in under this.
fn at_most() -> Duration {
    DELAY * 16 / 10
}

/// A job that stays outstanding: its pool is not started (stopping the pool
/// at the end fails its Deferred with `PoolStopped`).
fn outstanding_job(reactor: &Reactor) -> ThreadPool {
    let pool = ThreadPool::new(0, 1, "never-started").unwrap();
    let d = defer_to_thread_pool(reactor, &pool, || Ok(()));
    let _ = d.add_errback(|_| Ok(()));
    pool
}

/// Refuses every connection: a listening port only makes the loop one with
/// I/O sources (the branch whose spin also polls the sockets).
struct Refuse;

impl Factory for Refuse {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        None
    }
}

fn iterate_once(with_io: bool) -> Duration {
    let reactor = Reactor::new().unwrap();
    let _port = with_io.then(|| {
        reactor
            .listen_tcp(0, Rc::new(Refuse), 16, "127.0.0.1")
            .unwrap()
    });
    // A fixed budget far beyond the delay: the spin is then bounded only
    // by the delay.
    reactor.set_spin(Duration::from_secs(60));
    let pool = outstanding_job(&reactor);
    let start = Instant::now();
    reactor.iterate(DELAY);
    let took = start.elapsed();
    pool.stop();
    took
}

// `iterate(delay)` waits at most `delay` (Twisted's `iterate` contract)
// even while a job is outstanding: the spin is part of the wait, and the
// sleep after it is for what is left.
#[test]
fn iterate_with_a_job_outstanding_waits_at_most_its_delay() {
    let took = iterate_once(false);
    assert!(took >= DELAY, "returned early: {took:?}");
    assert!(took < at_most(), "iterate({DELAY:?}) took {took:?}");
}

#[test]
fn iterate_with_a_job_outstanding_and_sockets_waits_at_most_its_delay() {
    let took = iterate_once(true);
    assert!(took < at_most(), "iterate({DELAY:?}) took {took:?}");
}

// A timer due while a job is outstanding fires when it is due, not after a
// spin up to its due time plus a sleep as long again.
#[test]
fn a_timer_due_while_a_job_is_outstanding_is_not_made_late_by_the_spin() {
    let reactor = Reactor::new().unwrap();
    reactor.set_spin(Duration::from_secs(60));
    let pool = outstanding_job(&reactor);
    let fired_after = Rc::new(Cell::new(None));
    let start = Instant::now();
    let (f, r) = (Rc::clone(&fired_after), reactor.clone());
    reactor.call_later(DELAY, move || {
        f.set(Some(start.elapsed()));
        r.stop().unwrap();
    });
    reactor.run().unwrap();
    pool.stop();
    let took = fired_after.get().expect("the timer fired");
    assert!(took >= DELAY, "fired early: {took:?}");
    assert!(
        took < at_most(),
        "a timer due in {DELAY:?} fired after {took:?}"
    );
}

/// CPU time this thread has run, from the scheduler's statistics.
fn thread_cpu() -> Duration {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    Duration::from_nanos(
        s.split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
    )
}

fn voluntary_switches() -> u64 {
    let s = std::fs::read_to_string("/proc/thread-self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Runs the loop with one job outstanding for `window` while another thread
/// calls it every ~`gap`; returns (loop CPU, wall, calls, sleeps).
fn chatty(
    spin: Option<Duration>,
    gap: Duration,
    window: Duration,
) -> (Duration, Duration, u64, u64) {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    let reactor = Reactor::new().unwrap();
    if let Some(s) = spin {
        reactor.set_spin(s);
    }
    let pool = outstanding_job(&reactor);
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let remote = reactor.remote();
    let (s2, c2) = (Arc::clone(&stop), Arc::clone(&calls));
    let sender = std::thread::spawn(move || {
        while !s2.load(Ordering::Relaxed) {
            let c = Arc::clone(&c2);
            remote.call_from_thread(move || {
                c.fetch_add(1, Ordering::Relaxed);
            });
            std::thread::sleep(gap);
        }
    });
    let r = reactor.clone();
    reactor.call_later(window, move || r.stop().unwrap());
    let (cpu0, vol0, t0) = (thread_cpu(), voluntary_switches(), Instant::now());
    reactor.run().unwrap();
    let out = (
        thread_cpu() - cpu0,
        t0.elapsed(),
        calls.load(Ordering::Relaxed),
        voluntary_switches() - vol0,
    );
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    pool.stop();
    out
}

// The spin budget follows the loop's waits for job results only: calls
// from another thread every ~80 µs while one job sits outstanding (a pool
// not started, a long query) must not teach the loop to spin from one call
// to the next. With the 20 µs base budget the loop sleeps between the calls
// and runs about a quarter of the time (measured: 29%); fed by the calls,
// the budget rose to ~120 µs and the loop ran 88% of the time. The bound is
// generous (the defect measured 88–99 %): load on the machine only lowers
// this thread's share.
#[test]
fn calls_from_threads_do_not_raise_the_spin_budget() {
    let (cpu, wall, calls, _) = chatty(None, Duration::from_micros(10), Duration::from_millis(500));
    let share = cpu.as_secs_f64() / wall.as_secs_f64();
    assert!(calls > 100, "only {calls} calls arrived");
    assert!(
        share < 0.75,
        "the loop ran {:.0}% of the time for {calls} calls",
        share * 100.0
    );
}

#[test]
#[ignore = "a measurement: prints the loop's CPU share and sleeps"]
#[allow(clippy::print_stderr)]
fn measure_chatty() {
    for gap in [10u64, 30, 60, 90] {
        for spin in [None, Some(Duration::from_micros(20))] {
            let (cpu, wall, calls, sleeps) =
                chatty(spin, Duration::from_micros(gap), Duration::from_millis(500));
            eprintln!(
                "gap {gap}us spin {spin:?}: cpu {:.0}% calls {calls} sleeps {sleeps}",
                cpu.as_secs_f64() * 100.0 / wall.as_secs_f64()
            );
        }
    }
}

/// Runs `jobs` jobs of ~`work` each, one after the other, on a started
/// pool; returns how many times the loop slept meanwhile.
fn sequential_jobs(spin: Option<Duration>, work: Duration, jobs: u32) -> u64 {
    fn next(reactor: Reactor, pool: ThreadPool, work: Duration, left: u32) {
        if left == 0 {
            reactor.stop().unwrap();
            return;
        }
        let d = defer_to_thread_pool(&reactor, &pool, move || {
            let t = Instant::now();
            while t.elapsed() < work {
                std::hint::spin_loop();
            }
            Ok(())
        });
        let _ = d.add_callback(move |()| -> Result<(), deferred::Failure> {
            next(reactor, pool, work, left - 1);
            Ok(())
        });
    }
    let reactor = Reactor::new().unwrap();
    if let Some(s) = spin {
        reactor.set_spin(s);
    }
    let pool = ThreadPool::new(1, 1, "sequential").unwrap();
    pool.start().unwrap();
    let (r, p) = (reactor.clone(), pool.clone());
    reactor.call_when_running(move || next(r, p, work, jobs));
    let vol0 = voluntary_switches();
    reactor.run().unwrap();
    let sleeps = voluntary_switches() - vol0;
    pool.stop();
    sleeps
}

#[test]
#[ignore = "a measurement: prints how often the loop slept for job results"]
#[allow(clippy::print_stderr)]
fn measure_sequential_jobs() {
    for work in [5u64, 40, 80, 300] {
        for spin in [None, Some(Duration::from_micros(20))] {
            let sleeps = sequential_jobs(spin, Duration::from_micros(work), 2000);
            eprintln!("job {work}us spin {spin:?}: {sleeps} sleeps for 2000 jobs");
        }
    }
}

/// Trains the spin budget on `train` ~80 µs jobs, then keeps one job
/// outstanding for `window` while a timer fires every `tick`; returns the
/// loop's CPU share during the window.
fn long_job_with_ticks(
    spin: Option<Duration>,
    train: u32,
    tick: Duration,
    window: Duration,
) -> f64 {
    let reactor = Reactor::new().unwrap();
    if let Some(s) = spin {
        reactor.set_spin(s);
    }
    let pool = ThreadPool::new(2, 2, "ticks").unwrap();
    pool.start().unwrap();
    let share = Rc::new(Cell::new(0.0));
    let (r, p, sh) = (reactor.clone(), pool.clone(), Rc::clone(&share));
    reactor.call_when_running(move || {
        let r2 = r.clone();
        let mut d = deferred::succeed(());
        for _ in 0..train {
            let (r3, p3) = (r.clone(), p.clone());
            d = d.add_callback_deferred(move |()| {
                defer_to_thread_pool(&r3, &p3, || {
                    let t = Instant::now();
                    while t.elapsed() < Duration::from_micros(80) {
                        std::hint::spin_loop();
                    }
                    Ok(())
                })
            });
        }
        let _ = d.add_callback(move |()| -> Result<(), deferred::Failure> {
            let long = defer_to_thread_pool(&r2, &p, move || {
                std::thread::sleep(window);
                Ok(())
            });
            let (cpu0, t0) = (thread_cpu(), Instant::now());
            fn tick_on(r: Reactor, tick: Duration) {
                let r2 = r.clone();
                r.call_later(tick, move || tick_on(r2, tick));
            }
            tick_on(r2.clone(), tick);
            let r4 = r2.clone();
            let _ = long.add_callback(move |()| -> Result<(), deferred::Failure> {
                sh.set((thread_cpu() - cpu0).as_secs_f64() / t0.elapsed().as_secs_f64());
                r4.stop().unwrap();
                Ok(())
            });
            Ok(())
        });
    });
    reactor.run().unwrap();
    pool.stop();
    share.get()
}

#[test]
#[ignore = "a measurement: prints the loop's CPU share with a long job outstanding"]
#[allow(clippy::print_stderr)]
fn measure_long_job_with_ticks() {
    for tick in [1000u64, 300] {
        for spin in [None, Some(Duration::from_micros(20))] {
            let share = long_job_with_ticks(
                spin,
                300,
                Duration::from_micros(tick),
                Duration::from_millis(400),
            );
            eprintln!(
                "tick {tick}us spin {spin:?}: loop cpu {:.1}%",
                share * 100.0
            );
        }
    }
}
