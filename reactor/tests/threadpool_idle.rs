//! Idle workers above `min` retiring after `ThreadPool::set_idle_timeout`
//! (an extension: Twisted's `ThreadPool` keeps every thread it started until
//! `stop`; HikariCP's `idleTimeout` is the model): surplus workers leave and
//! run the exit hooks, the pool never drops below `min`, and a job submitted
//! while a worker retires is never stranded.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use crossbeam_channel::bounded;
use reactor::ThreadPool;
use test_support::bounded::wait_until;
use test_support::TIMEOUT;

#[test]
fn surplus_idle_workers_retire_down_to_min_and_run_the_exit_hooks() {
    let pool = ThreadPool::new(1, 3, "idle-retire").unwrap();
    let exits = Arc::new(AtomicUsize::new(0));
    let e = Arc::clone(&exits);
    pool.add_worker_exit_hook(Arc::new(move || {
        e.fetch_add(1, Ordering::SeqCst);
    }));
    pool.set_idle_timeout(Some(Duration::from_millis(20)));
    pool.start().unwrap();
    // Three jobs that wait for each other need three workers.
    let all = Arc::new(Barrier::new(3));
    let (tx, rx) = bounded(3);
    for _ in 0..3 {
        let (all, tx) = (Arc::clone(&all), tx.clone());
        pool.call_in_thread(move || {
            all.wait();
            tx.send(()).unwrap();
        })
        .unwrap();
    }
    for _ in 0..3 {
        rx.recv_timeout(TIMEOUT)
            .expect("the three jobs ran together");
    }
    wait_until("the surplus workers retired", || pool.workers() == 1);
    wait_until("their exit hooks ran", || exits.load(Ordering::SeqCst) == 2);
    // The one left stays (it times out again and again, but is the min).
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(pool.workers(), 1);
    let (tx, rx) = bounded(1);
    pool.call_in_thread(move || tx.send(7).unwrap()).unwrap();
    assert_eq!(rx.recv_timeout(TIMEOUT).unwrap(), 7);
    pool.stop();
    assert_eq!(exits.load(Ordering::SeqCst), 3);
}

#[test]
fn a_job_submitted_while_the_last_worker_retires_still_runs() {
    // min 0: every worker may retire, so a job racing the retirement of the
    // last one would be stranded if the race were lost.
    let pool = ThreadPool::new(0, 2, "idle-race").unwrap();
    pool.set_idle_timeout(Some(Duration::from_micros(50)));
    pool.start().unwrap();
    let (tx, rx) = bounded(1);
    for i in 0..2000u32 {
        let tx = tx.clone();
        pool.call_in_thread(move || tx.send(i).unwrap()).unwrap();
        assert_eq!(rx.recv_timeout(TIMEOUT).expect("the job ran"), i);
        if i % 8 == 0 {
            // Let the worker time out now and then.
            std::thread::sleep(Duration::from_micros(60 + u64::from(i % 50)));
        }
    }
    pool.stop();
}

#[test]
fn without_an_idle_timeout_workers_stay() {
    let pool = ThreadPool::new(0, 2, "idle-never").unwrap();
    pool.start().unwrap();
    let (tx, rx) = bounded(1);
    pool.call_in_thread(move || tx.send(()).unwrap()).unwrap();
    rx.recv_timeout(TIMEOUT).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(pool.workers(), 1);
    pool.stop();
}
