//! Thread-spawn failures, through a hook that makes `spawn` fail as if the
//! OS refused a thread (tracker issue 9, defect 14).

use super::*;
use crate::testing::FakeReactor;
use crate::threads::defer_to_thread_pool;
use std::sync::mpsc;

fn failing_pool(min: usize, max: usize, name: &str) -> ThreadPool {
    let pool = ThreadPool::new(min, max, name).unwrap();
    pool.inner.fail_spawns.store(true, Ordering::Release);
    pool
}

fn spawn_error(d: deferred::Deferred<u32>) -> ThreadSpawnError {
    let f = d.into_result().expect("fired").unwrap_err();
    f.check::<ThreadSpawnError>()
        .unwrap_or_else(|| panic!("not a ThreadSpawnError: {f}"))
        .clone()
}

// The backlog queued before `start` is dropped, failing its Deferreds,
// when `start` cannot start any worker: it used to wait forever.
#[test]
fn start_that_cannot_spawn_fails_the_backlog() {
    let fake = FakeReactor::new(true);
    let pool = failing_pool(1, 1, "spawn-fails-at-start");
    let d = defer_to_thread_pool(&fake, &pool, || Ok(1u32));
    pool.start().unwrap();
    assert_eq!(pool.workers(), 0);
    assert_eq!(pool.q_size(), 0);
    fake.pump();
    let e = spawn_error(d);
    assert_eq!(e.name, "spawn-fails-at-start");
    assert!(e.to_string().contains("could not start a worker thread"));
    pool.stop();
}

// A job submitted to a running pool with no live worker is failed, not
// stranded, when no worker can be started; once threads can be started
// again, the pool works.
#[test]
fn submit_that_cannot_spawn_fails_the_job_and_the_pool_recovers() {
    let fake = FakeReactor::new(true);
    let pool = failing_pool(0, 1, "spawn-fails-at-submit");
    pool.start().unwrap();
    let d = defer_to_thread_pool(&fake, &pool, || Ok(1u32));
    fake.pump();
    spawn_error(d);

    pool.inner.fail_spawns.store(false, Ordering::Release);
    let (tx, rx) = mpsc::channel();
    pool.call_in_thread(move || tx.send(5).unwrap()).unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(30)), Ok(5));
    pool.stop();
}

// With a live worker, a failed spawn leaves the backlog to it.
#[test]
fn failed_spawn_with_a_live_worker_keeps_the_backlog() {
    // One worker: nothing else may take the job below.
    let pool = ThreadPool::new(1, 1, "spawn-fails-busy").unwrap();
    pool.start().unwrap();
    let (started_tx, started_rx) = mpsc::channel();
    let (open_tx, open_rx) = mpsc::channel::<()>();
    pool.call_in_thread(move || {
        started_tx.send(()).unwrap();
        let _ = open_rx.recv_timeout(Duration::from_secs(30));
    })
    .unwrap();
    started_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    pool.inner.fail_spawns.store(true, Ordering::Release);
    // Room for a second worker, which the next job will try to start.
    pool.adjust_pool_size(Some(1), Some(2)).unwrap();
    let (tx, rx) = mpsc::channel();
    pool.call_in_thread(move || tx.send(9).unwrap()).unwrap();
    assert_eq!(pool.q_size(), 1);
    open_tx.send(()).unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(30)), Ok(9));
    pool.stop();
}

// A resize that cannot start its first worker fails the backlog too.
#[test]
fn adjust_that_cannot_spawn_fails_the_backlog() {
    let fake = FakeReactor::new(true);
    let pool = failing_pool(0, 0, "spawn-fails-at-adjust");
    pool.start().unwrap();
    let d = defer_to_thread_pool(&fake, &pool, || Ok(1u32));
    fake.pump();
    assert!(!d.has_result(), "max 0: the job waits for a resize");
    pool.adjust_pool_size(Some(1), Some(1)).unwrap();
    fake.pump();
    spawn_error(d);
    pool.stop();
}

// A job submitted while the only worker of a pool at `max` retires (it has
// found the queue empty but is still counted live) must still run: the
// submitter saw the pool full and started no worker, and the worker used to
// leave anyway, stranding the job until the next submission (for ever on a
// pool that gets none, or in a closed queue at `stop`).
#[test]
fn a_job_submitted_while_the_only_worker_retires_still_runs() {
    use std::time::Instant;
    let pool = ThreadPool::new(0, 1, "retire-at-max").unwrap();
    pool.set_idle_timeout(Some(Duration::from_millis(1)));
    pool.start().unwrap();
    let (tx, rx) = mpsc::channel();
    let first = tx.clone();
    pool.call_in_thread(move || first.send(0).unwrap()).unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), 0);
    let submitter = pool.clone();
    *pool.inner.counters.before_retire.lock().unwrap() = Some(Box::new(move || {
        let h = std::thread::spawn(move || {
            submitter
                .call_in_thread(move || tx.send(1).unwrap())
                .unwrap();
        });
        // Let the submission finish before this worker leaves, if it can:
        // how long it is given decides only whether the race is exercised.
        let until = Instant::now() + Duration::from_millis(200);
        while !h.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
    }));
    let got = rx.recv_timeout(Duration::from_secs(5));
    assert_eq!(got, Ok(1), "the job submitted during the retirement ran");
    pool.stop();
}
