//! Ports Twisted's `twisted/test/test_threadpool.py`: `ThreadPoolTests`,
//! `RaceConditionTests` and `MemoryBackedTests`, against [`ThreadPool`]
//! (`twisted.python.threadpool.ThreadPool`), plus the places where this pool is deliberately safer
//! than Twisted's: submitting to a stopped pool is an error, a second `stop`
//! is harmless, dropping the last handle lets the workers finish the backlog
//! and exit, and the `Inline` and `Manual` modes used by the test reactor.
//!
//! Kept whole although over 600 lines: it ports Twisted's test_threadpool.py
//! and reads beside it.
//!
//! Not ported: `test_persistence` (pickling) and `test_callbackContext`
//! (Twisted's logging context) have no counterpart here.
//!
//! Worker threads log on their own threads, so tests capture every thread
//! (`test_support::logs::LogCapture::all_threads`), give each pool a unique
//! name and look only at events whose `pool` field names it.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use deferred::Failure;
use reactor::testing::{PoolMode, TestPool};
use reactor::{PoolConfigError, PoolSizeError, PoolStopped, ThreadPool};
use test_support::bounded::wait_until;
use test_support::logs::{capture_logs, LogCapture};
use test_support::TIMEOUT;
use tracing::Level;

#[derive(Debug, thiserror::Error)]
#[error("new error")]
struct NewError;

fn recv<T>(rx: &Receiver<T>) -> T {
    rx.recv_timeout(TIMEOUT).expect("a pool job reported back")
}

fn thread_name() -> String {
    thread::current().name().unwrap_or("<unnamed>").to_owned()
}

/// Sends the thread's name on `tx` when the thread exits (thread-local
/// destructors run at thread exit).
struct ExitSignal(Sender<String>);

impl Drop for ExitSignal {
    fn drop(&mut self) {
        let _ = self.0.send(thread_name());
    }
}

/// Sends on its channel when dropped.
struct DropSignal(Sender<()>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

thread_local! {
    static EXIT_SIGNAL: RefCell<Option<ExitSignal>> = const { RefCell::new(None) };
}

fn signal_on_thread_exit(tx: Sender<String>) {
    EXIT_SIGNAL.with(|e| *e.borrow_mut() = Some(ExitSignal(tx)));
}

/// A job that blocks its worker until the returned sender is used (or
/// dropped), after telling `started` it runs.
fn gate_job(started: Sender<()>) -> (impl FnOnce() + Send + 'static, Sender<()>) {
    let (open_tx, open_rx) = bounded::<()>(1);
    let job = move || {
        started.send(()).unwrap();
        let _ = open_rx.recv_timeout(TIMEOUT);
    };
    (job, open_tx)
}

// Twisted: ThreadPoolTests.test_attributes
#[test]
fn test_attributes() {
    let pool = ThreadPool::new(12, 22, "attributes").unwrap();
    assert_eq!(pool.min(), 12);
    assert_eq!(pool.max(), 22);
    assert_eq!(pool.name(), "attributes");
    assert_eq!(pool.mode(), PoolMode::Threads);
    assert!(!pool.started());
    assert!(!pool.joined());
    assert_eq!(pool.workers(), 0);
    assert!(pool.thread_names().is_empty());
}

// Twisted: ThreadPoolTests.test_start
#[test]
fn test_start() {
    let pool = ThreadPool::new(3, 10, "start-3-10").unwrap();
    pool.start().unwrap();
    assert!(pool.started());
    assert_eq!(pool.workers(), 3);
    assert_eq!(pool.thread_names().len(), 3);
    pool.stop();
    assert_eq!(pool.workers(), 0);

    let pool = ThreadPool::new(0, 5, "start-0-5").unwrap();
    pool.start().unwrap();
    assert!(pool.started());
    assert_eq!(pool.workers(), 0);
    assert!(pool.thread_names().is_empty());
    pool.stop();
}

// Twisted: ThreadPoolTests.test_adjustingWhenPoolStopped
#[test]
fn test_adjusting_when_pool_stopped() {
    // Not started yet: the sizes change, no thread starts.
    let pool = ThreadPool::new(0, 5, "adjust-unstarted").unwrap();
    pool.adjust_pool_size(Some(2), Some(4)).unwrap();
    assert_eq!((pool.min(), pool.max()), (2, 4));
    assert_eq!(pool.workers(), 0);
    assert!(pool.thread_names().is_empty());

    // Started and stopped: likewise.
    let pool = ThreadPool::new(0, 5, "adjust-stopped").unwrap();
    pool.start().unwrap();
    pool.stop();
    assert!(!pool.started());
    assert!(pool.thread_names().is_empty());
    pool.adjust_pool_size(Some(2), Some(5)).unwrap();
    assert!(!pool.started());
    assert_eq!(pool.workers(), 0);
    assert!(pool.thread_names().is_empty());
}

// `twisted.python.threadpool.ThreadPool` adjustPoolsize on a running pool: grows to min, shrinks
// idle workers above max.
#[test]
fn test_adjust_pool_size_while_running() {
    let pool = ThreadPool::new(0, 5, "adjust-running").unwrap();
    pool.start().unwrap();
    pool.adjust_pool_size(Some(3), None).unwrap();
    assert_eq!(pool.workers(), 3);
    pool.adjust_pool_size(Some(0), Some(1)).unwrap();
    wait_until("surplus idle workers exit", || pool.workers() == 1);
    // The remaining worker still runs jobs.
    let (tx, rx) = bounded(1);
    pool.call_in_thread(move || tx.send(thread_name()).unwrap())
        .unwrap();
    assert!(recv(&rx).starts_with("PoolThread-adjust-running-"));
    pool.stop();
    assert_eq!(pool.workers(), 0);
}

// Twisted: ThreadPoolTests.test_threadCreationArguments
#[test]
fn test_thread_creation_arguments() {
    // The pool lets go of a job's captures once the job ran.
    let pool = ThreadPool::new(1, 1, "creation-args").unwrap();
    pool.start().unwrap();
    let object = Arc::new("application object");
    let weak = Arc::downgrade(&object);
    let held = object.clone();
    pool.call_in_thread(move || {
        let _ = &held;
    })
    .unwrap();
    // One worker, FIFO: this job starts after the previous one was dropped.
    let (tx, rx) = bounded(1);
    pool.call_in_thread(move || tx.send(weak.strong_count()).unwrap())
        .unwrap();
    assert_eq!(recv(&rx), 1, "only the test still holds the object");
    pool.stop();
    assert_eq!(Arc::strong_count(&object), 1);
}

// Twisted: ThreadPoolTests.test_threadCreationArgumentsCallInThreadWithCallback
#[test]
fn test_thread_creation_arguments_call_in_thread_with_callback() {
    let pool = ThreadPool::new(0, 1, "creation-args-callback").unwrap();
    pool.start().unwrap();
    let object = Arc::new(42u32);
    let weak = Arc::downgrade(&object);
    let held = object.clone();
    let (tx, rx) = bounded(1);
    pool.call_in_thread_with_callback(
        move |r: Result<u32, Failure>| {
            // `f` and its captures are gone before the callback runs.
            tx.send((r.unwrap(), weak.strong_count())).unwrap();
        },
        move || Ok(*held),
    )
    .unwrap();
    assert_eq!(recv(&rx), (42, 1));
    pool.stop();
}

// Twisted: ThreadPoolTests.test_callInThread
#[test]
fn test_call_in_thread() {
    let pool = ThreadPool::new(0, 1, "call-in-thread").unwrap();
    pool.start().unwrap();
    let (tx, rx) = bounded(1);
    pool.call_in_thread(move || tx.send((thread_name(), thread::current().id())).unwrap())
        .unwrap();
    let (name, id) = recv(&rx);
    assert_eq!(name, "PoolThread-call-in-thread-0");
    assert_ne!(id, thread::current().id());
    pool.stop();
}

// Twisted: ThreadPoolTests.test_callInThreadException
#[test]
fn test_call_in_thread_exception() {
    let capture = LogCapture::all_threads();
    let pool = ThreadPool::new(0, 1, "call-in-thread-exception").unwrap();
    pool.call_in_thread(|| panic!("{}", NewError)).unwrap();
    pool.start().unwrap();
    // The worker survives the panic and runs the next job.
    let (tx, rx) = bounded(1);
    pool.call_in_thread(move || tx.send(thread_name()).unwrap())
        .unwrap();
    assert_eq!(recv(&rx), "PoolThread-call-in-thread-exception-0");
    assert_eq!(pool.workers(), 1);
    assert_eq!(pool.thread_names().len(), 1);
    pool.stop();
    let logs = capture.with_field("pool", "call-in-thread-exception");
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(logs[0].level, Level::ERROR);
    assert!(logs[0]
        .message
        .contains("Unhandled error in thread pool job"));
    assert!(logs[0].field("failure").unwrap().contains("new error"));
}

// Twisted: ThreadPoolTests.test_callInThreadWithCallback
#[test]
fn test_call_in_thread_with_callback() {
    let pool = ThreadPool::new(0, 1, "with-callback").unwrap();
    let (tx, rx) = bounded(1);
    pool.call_in_thread_with_callback(move |r| tx.send(r).unwrap(), || Ok("test"))
        .unwrap();
    pool.start().unwrap();
    assert_eq!(recv(&rx).unwrap(), "test");
    pool.stop();
}

// Twisted: ThreadPoolTests.test_callInThreadWithCallbackExceptionInCallback
#[test]
fn test_call_in_thread_with_callback_exception_in_callback() {
    // "Callback" is the function run in the thread: its error and its panic
    // reach `on_result` as failures.
    let pool = ThreadPool::new(0, 1, "callback-exception").unwrap();
    pool.start().unwrap();
    let (tx, rx) = unbounded();
    let tx2 = tx.clone();
    pool.call_in_thread_with_callback(
        move |r: Result<(), Failure>| tx.send(r).unwrap(),
        || Err(Failure::new(NewError)),
    )
    .unwrap();
    pool.call_in_thread_with_callback(
        move |r: Result<(), Failure>| tx2.send(r).unwrap(),
        || panic!("panicked in the thread"),
    )
    .unwrap();
    let failure = recv(&rx).unwrap_err();
    assert!(failure.check::<NewError>().is_some());
    assert!(!failure.is_panic());
    let failure = recv(&rx).unwrap_err();
    assert!(failure.is_panic());
    assert!(failure.error_message().contains("panicked in the thread"));
    pool.stop();
}

// Twisted: ThreadPoolTests.test_callInThreadWithCallbackExceptionInOnResult
#[test]
fn test_call_in_thread_with_callback_exception_in_on_result() {
    let capture = LogCapture::all_threads();
    let pool = ThreadPool::new(0, 1, "on-result-exception").unwrap();
    pool.start().unwrap();
    let (tx, rx) = bounded(1);
    pool.call_in_thread_with_callback(
        move |r: Result<u32, Failure>| {
            tx.send(r.unwrap()).unwrap();
            panic!("on_result exploded");
        },
        || Ok(7),
    )
    .unwrap();
    assert_eq!(recv(&rx), 7);
    // The worker lives on.
    let (tx, rx) = bounded(1);
    pool.call_in_thread(move || tx.send(thread_name()).unwrap())
        .unwrap();
    assert_eq!(recv(&rx), "PoolThread-on-result-exception-0");
    pool.stop();
    let logs = capture.with_field("pool", "on-result-exception");
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(logs[0].level, Level::ERROR);
    assert!(logs[0]
        .field("failure")
        .unwrap()
        .contains("on_result exploded"));
}

// Twisted: ThreadPoolTests.test_callbackThread
#[test]
fn test_callback_thread() {
    let pool = ThreadPool::new(0, 1, "callback-thread").unwrap();
    let ids = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = bounded(1);
    let (i1, i2) = (ids.clone(), ids.clone());
    pool.call_in_thread_with_callback(
        move |_: Result<(), Failure>| {
            i1.lock()
                .unwrap()
                .push((thread::current().id(), thread_name()));
            tx.send(()).unwrap();
        },
        move || {
            i2.lock()
                .unwrap()
                .push((thread::current().id(), thread_name()));
            Ok(())
        },
    )
    .unwrap();
    pool.start().unwrap();
    recv(&rx);
    let ids = ids.lock().unwrap().clone();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], ids[1], "f and on_result run on the same worker");
    assert_ne!(ids[0].0, thread::current().id());
    assert!(ids[0].1.starts_with("PoolThread-callback-thread-"));
    pool.stop();
}

// Twisted: ThreadPoolTests.test_existingWork
#[test]
fn test_existing_work() {
    let pool = ThreadPool::new(0, 1, "existing-work").unwrap();
    let (tx, rx) = bounded(1);
    pool.call_in_thread(move || tx.send(()).unwrap()).unwrap();
    // Before start no thread exists, so nothing can have run it.
    assert_eq!(pool.workers(), 0);
    assert!(pool.thread_names().is_empty());
    assert_eq!(pool.q_size(), 1);
    assert!(rx.is_empty());
    pool.start().unwrap();
    recv(&rx);
    pool.stop();
    assert_eq!(pool.q_size(), 0);
}

// Twisted: ThreadPoolTests.test_workerStateTransition
#[test]
fn test_worker_state_transition() {
    let pool = ThreadPool::new(0, 1, "state-transition").unwrap();
    pool.start().unwrap();
    assert_eq!(pool.workers(), 0);
    assert_eq!(pool.waiters(), 0);
    assert_eq!(pool.working(), 0);
    let (started_tx, started_rx) = bounded(1);
    let (job, finish) = gate_job(started_tx);
    pool.call_in_thread(job).unwrap();
    recv(&started_rx);
    assert_eq!(pool.workers(), 1);
    assert_eq!(pool.waiters(), 0);
    assert_eq!(pool.working(), 1);
    finish.send(()).unwrap();
    wait_until("the worker waits", || pool.waiters() == 1);
    assert_eq!(pool.waiters(), 1);
    assert_eq!(pool.working(), 0);
    assert_eq!(pool.workers(), 1);
    pool.stop();
}

// Twisted: ThreadPoolTests.test_q
#[test]
fn test_q() {
    let pool = ThreadPool::new(0, 1, "q").unwrap();
    assert_eq!(pool.q_size(), 0);
    let ran = Arc::new(AtomicUsize::new(0));
    for _ in 0..3 {
        let ran = ran.clone();
        pool.call_in_thread(move || {
            ran.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    }
    assert_eq!(pool.q_size(), 3);
    pool.start().unwrap();
    // With the only worker blocked, the backlog stays counted.
    let (started_tx, started_rx) = bounded(1);
    let (job, finish) = gate_job(started_tx);
    pool.call_in_thread(job).unwrap();
    recv(&started_rx);
    for _ in 0..2 {
        pool.call_in_thread(|| ()).unwrap();
    }
    assert_eq!(ran.load(Ordering::SeqCst), 3);
    assert_eq!(pool.q_size(), 2);
    assert_eq!(pool.working(), 1);
    finish.send(()).unwrap();
    pool.stop();
    assert_eq!(pool.q_size(), 0);
    assert_eq!(pool.working(), 0);
    assert_eq!(pool.waiters(), 0);
    assert_eq!(pool.workers(), 0);
}

// `twisted.python.threadpool.ThreadPool`: dumpStats() logs three lines.
#[test]
fn test_dump_stats() {
    let pool = ThreadPool::new(0, 1, "dump-stats").unwrap();
    pool.call_in_thread(|| ()).unwrap();
    let ((), logs) = capture_logs(|| pool.dump_stats());
    let messages: Vec<_> = logs.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(messages, vec!["queue: 1", "waiters: 0", "workers: 0"]);
    assert!(logs.iter().all(|l| l.level == Level::INFO));
}

// Twisted: RaceConditionTests.test_synchronization
#[test]
fn test_synchronization() {
    // A job blocked waiting for an event, and the job that sets it: with
    // spare capacity the second job gets its own worker, cold or warm.
    let pool = ThreadPool::new(0, 10, "synchronization").unwrap();
    pool.start().unwrap();
    for round in 0..2 {
        if round == 1 {
            wait_until("a worker is idle", || pool.waiters() >= 1);
        }
        let (event_tx, event_rx) = bounded::<()>(1);
        let (done_tx, done_rx) = bounded(1);
        pool.call_in_thread(move || {
            done_tx
                .send(event_rx.recv_timeout(TIMEOUT).is_ok())
                .unwrap();
        })
        .unwrap();
        pool.call_in_thread(move || event_tx.send(()).unwrap())
            .unwrap();
        assert!(recv(&done_rx), "'set' did not run while 'wait' blocked");
    }
    pool.stop();
}

// Twisted: MemoryBackedTests.test_workBeforeStarting
#[test]
fn test_work_before_starting() {
    let pool = ThreadPool::new(0, 10, "work-before-starting").unwrap();
    let (tx, rx) = unbounded();
    for i in 0..3 {
        let tx = tx.clone();
        pool.call_in_thread(move || tx.send(i).unwrap()).unwrap();
    }
    assert_eq!(pool.workers(), 0);
    pool.start().unwrap();
    // One worker per backlogged job.
    assert_eq!(pool.workers(), 3);
    let mut got: Vec<_> = (0..3).map(|_| recv(&rx)).collect();
    got.sort_unstable();
    assert_eq!(got, vec![0, 1, 2]);
    pool.stop();
}

// Twisted: MemoryBackedTests.test_tooMuchWorkBeforeStarting
#[test]
fn test_too_much_work_before_starting() {
    let pool = ThreadPool::new(0, 3, "too-much-work").unwrap();
    let (tx, rx) = unbounded();
    for i in 0..10 {
        let tx = tx.clone();
        pool.call_in_thread(move || tx.send(i).unwrap()).unwrap();
    }
    pool.start().unwrap();
    // Growth stops at max.
    assert_eq!(pool.workers(), 3);
    let mut got: Vec<_> = (0..10).map(|_| recv(&rx)).collect();
    got.sort_unstable();
    assert_eq!(got, (0..10).collect::<Vec<_>>());
    assert_eq!(pool.thread_names().len(), 3);
    pool.stop();
}

// `twisted.python.threadpool.ThreadPool`: new workers only while `idle + busy < max`.
#[test]
fn test_workers_never_exceed_max() {
    const JOBS: usize = 10_000;
    const MAX: usize = 4;
    let pool = ThreadPool::new(0, MAX, "burst").unwrap();
    pool.start().unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = bounded(1);
    for _ in 0..JOBS {
        let (running, peak, done, tx) = (running.clone(), peak.clone(), done.clone(), tx.clone());
        pool.call_in_thread(move || {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            thread::yield_now();
            running.fetch_sub(1, Ordering::SeqCst);
            if done.fetch_add(1, Ordering::SeqCst) + 1 == JOBS {
                tx.send(()).unwrap();
            }
        })
        .unwrap();
        assert!(pool.workers() <= MAX);
    }
    recv(&rx);
    assert_eq!(done.load(Ordering::SeqCst), JOBS);
    let peak = peak.load(Ordering::SeqCst);
    assert!((1..=MAX).contains(&peak), "peak concurrency {peak}");
    assert!(pool.workers() <= MAX);
    assert!(pool.thread_names().len() <= MAX);
    pool.stop();
}

// `twisted.python.threadpool.ThreadPool` stop(): running and backlogged jobs finish, then every
// worker is joined.
#[test]
fn test_stop_drains_backlog_and_joins() {
    let pool = ThreadPool::new(1, 1, "stop-drains").unwrap();
    pool.start().unwrap();
    let (exit_tx, exit_rx) = unbounded();
    let (started_tx, started_rx) = bounded(1);
    let p = pool.clone();
    // Holds the only worker until `stop` has begun, so the backlog is
    // still queued when it does.
    pool.call_in_thread(move || {
        signal_on_thread_exit(exit_tx);
        started_tx.send(()).unwrap();
        wait_until("stop begins", || p.joined());
    })
    .unwrap();
    recv(&started_rx);
    let ran = Arc::new(Mutex::new(Vec::new()));
    for i in 0..20 {
        let ran = ran.clone();
        pool.call_in_thread(move || ran.lock().unwrap().push(i))
            .unwrap();
    }
    assert_eq!(pool.q_size(), 20);
    pool.stop();
    assert_eq!(*ran.lock().unwrap(), (0..20).collect::<Vec<_>>());
    assert!(pool.joined());
    assert!(!pool.started());
    assert_eq!(pool.workers(), 0);
    assert_eq!(pool.q_size(), 0);
    // Joined: the worker thread has exited.
    assert_eq!(
        exit_rx.try_recv().as_deref(),
        Ok("PoolThread-stop-drains-0")
    );
}

// `twisted.python.threadpool.ThreadPool`: "If the pool was never started, backlogged jobs are never
// run and stop() returns at once."
#[test]
fn test_stop_never_started_pool() {
    let pool = ThreadPool::new(0, 1, "never-started").unwrap();
    let (dropped_tx, dropped_rx) = unbounded();
    let guard = DropSignal(dropped_tx);
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    pool.call_in_thread(move || {
        let _guard = guard;
        r.fetch_add(1, Ordering::SeqCst);
    })
    .unwrap();
    pool.stop();
    assert!(pool.joined());
    assert!(pool.thread_names().is_empty());
    assert!(pool.start().is_err());
    // Dropping the pool drops the job, unrun.
    drop(pool);
    recv(&dropped_rx);
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

// `twisted.python.threadpool.ThreadPool`: a second stop() raises AlreadyQuit in Twisted; here it
// does nothing.
#[test]
fn test_second_stop_is_harmless() {
    let pool = ThreadPool::new(2, 2, "second-stop").unwrap();
    pool.start().unwrap();
    pool.stop();
    pool.stop();
    assert!(pool.joined());
    assert_eq!(pool.workers(), 0);
    // Nothing left to wait for: a non-blocking stop has fired already.
    let fake = reactor::testing::FakeReactor::new(true);
    assert!(reactor::stop_thread_pool(&fake, &pool).has_result());
}

// `twisted.python.threadpool.ThreadPool`: Twisted drops work given to a stopped pool silently.
#[test]
fn test_submit_after_stop_is_an_error() {
    let pool = ThreadPool::new(0, 1, "submit-after-stop").unwrap();
    pool.start().unwrap();
    pool.stop();
    let err = pool.call_in_thread(|| ()).unwrap_err();
    assert_eq!(
        err,
        PoolStopped {
            name: "submit-after-stop".into()
        }
    );
    let called = Arc::new(AtomicUsize::new(0));
    let c = called.clone();
    let r = pool.call_in_thread_with_callback(
        move |_: Result<(), Failure>| {
            c.fetch_add(1, Ordering::SeqCst);
        },
        || Ok(()),
    );
    assert!(r.is_err());
    assert_eq!(called.load(Ordering::SeqCst), 0);
    assert_eq!(pool.q_size(), 0);
    assert!(pool.thread_names().is_empty());
}

// `twisted.python.threadpool.ThreadPool`: "The pool is single-use."
#[test]
fn test_start_after_stop_is_an_error() {
    let pool = ThreadPool::new(1, 1, "start-after-stop").unwrap();
    pool.start().unwrap();
    pool.stop();
    let names = pool.thread_names();
    assert!(pool.start().is_err());
    assert!(!pool.started());
    assert_eq!(pool.workers(), 0);
    assert_eq!(pool.thread_names(), names);
}

// Twisted asserts "minimum is greater than maximum".
#[test]
fn test_min_greater_than_max() {
    assert_eq!(
        ThreadPool::new(5, 2, "bad").unwrap_err(),
        PoolConfigError::Size(PoolSizeError { min: 5, max: 2 })
    );
    assert_eq!(
        ThreadPool::new(5, 2, "bad").unwrap_err().to_string(),
        "thread pool minimum 5 is greater than maximum 2"
    );
    let pool = ThreadPool::new(1, 3, "bad-adjust").unwrap();
    assert_eq!(
        pool.adjust_pool_size(Some(6), Some(4)).unwrap_err(),
        PoolSizeError { min: 6, max: 4 }
    );
    assert_eq!(
        pool.adjust_pool_size(None, Some(0)).unwrap_err(),
        PoolSizeError { min: 1, max: 0 }
    );
    assert_eq!((pool.min(), pool.max()), (1, 3));
}

// `twisted.python.threadpool.ThreadPool`: thread names are `PoolThread-<name>-<n>`; `threads` only
// grows.
#[test]
fn test_thread_names() {
    let pool = ThreadPool::new(3, 3, "names").unwrap();
    pool.start().unwrap();
    let expected = vec![
        "PoolThread-names-0".to_owned(),
        "PoolThread-names-1".to_owned(),
        "PoolThread-names-2".to_owned(),
    ];
    assert_eq!(pool.thread_names(), expected);
    // Each worker runs under its name.
    let (started_tx, started_rx) = unbounded();
    let mut gates = Vec::new();
    for _ in 0..3 {
        let (tx, gate_rx) = bounded::<()>(1);
        let started = started_tx.clone();
        pool.call_in_thread(move || {
            started.send(thread_name()).unwrap();
            let _ = gate_rx.recv_timeout(TIMEOUT);
        })
        .unwrap();
        gates.push(tx);
    }
    let mut seen: Vec<_> = (0..3).map(|_| recv(&started_rx)).collect();
    seen.sort();
    assert_eq!(seen, expected);
    drop(gates);
    pool.stop();
    assert_eq!(pool.thread_names(), expected);
}

// Beyond Twisted (whose workers leak, #4284): dropping the last handle lets
// the workers finish the backlog and exit.
#[test]
fn test_dropping_last_handle_lets_workers_exit() {
    let pool = ThreadPool::new(1, 1, "dropped").unwrap();
    pool.start().unwrap();
    let (exit_tx, exit_rx) = unbounded();
    let (started_tx, started_rx) = bounded(1);
    let (open_tx, open_rx) = bounded::<()>(1);
    pool.call_in_thread(move || {
        signal_on_thread_exit(exit_tx);
        started_tx.send(()).unwrap();
        let _ = open_rx.recv_timeout(TIMEOUT);
    })
    .unwrap();
    recv(&started_rx);
    let (ran_tx, ran_rx) = unbounded();
    for i in 0..5 {
        let tx = ran_tx.clone();
        pool.call_in_thread(move || tx.send(i).unwrap()).unwrap();
    }
    drop(ran_tx);
    drop(pool);
    open_tx.send(()).unwrap();
    let ran: Vec<_> = (0..5).map(|_| recv(&ran_rx)).collect();
    assert_eq!(ran, vec![0, 1, 2, 3, 4]);
    assert_eq!(recv(&exit_rx), "PoolThread-dropped-0");
}

// reactor::PoolMode::Inline: Twisted's test `NonThreadPool`.
#[test]
fn test_inline_mode_runs_jobs_on_the_calling_thread() {
    let pool = ThreadPool::with_mode(0, 1, "inline", PoolMode::Inline).unwrap();
    assert_eq!(pool.mode(), PoolMode::Inline);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    pool.call_in_thread(move || s.lock().unwrap().push(thread::current().id()))
        .unwrap();
    // Ran before call_in_thread returned, on this thread, no start needed.
    assert_eq!(*seen.lock().unwrap(), vec![thread::current().id()]);
    let got = Arc::new(Mutex::new(None));
    let g = got.clone();
    pool.call_in_thread_with_callback(move |r| *g.lock().unwrap() = Some(r), || Ok(5))
        .unwrap();
    assert_eq!(got.lock().unwrap().take().unwrap().unwrap(), 5);
    // A panic is logged (here, on this thread) and the call still succeeds.
    let (r, logs) = capture_logs(|| pool.call_in_thread(|| panic!("inline job exploded")));
    assert!(r.is_ok());
    let logs: Vec<_> = logs
        .iter()
        .filter(|l| l.field("pool") == Some("inline"))
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert!(logs[0]
        .field("failure")
        .unwrap()
        .contains("inline job exploded"));
    pool.start().unwrap();
    assert_eq!(pool.workers(), 0);
    assert!(pool.thread_names().is_empty());
    pool.stop();
    assert!(pool.call_in_thread(|| ()).is_err());
}

// reactor::PoolMode::Manual: jobs wait for the test to run them.
#[test]
fn test_manual_mode_runs_jobs_when_told() {
    let pool = ThreadPool::with_mode(0, 1, "manual", PoolMode::Manual).unwrap();
    pool.start().unwrap();
    assert_eq!(pool.workers(), 0);
    let seen = Arc::new(Mutex::new(Vec::new()));
    for i in 0..3 {
        let s = seen.clone();
        pool.call_in_thread(move || s.lock().unwrap().push((i, thread::current().id())))
            .unwrap();
    }
    assert!(seen.lock().unwrap().is_empty());
    assert_eq!(pool.q_size(), 3);
    assert!(pool.run_one());
    assert_eq!(pool.q_size(), 2);
    assert_eq!(pool.run_pending(), 2);
    assert!(!pool.run_one());
    assert_eq!(pool.run_pending(), 0);
    let me = thread::current().id();
    assert_eq!(*seen.lock().unwrap(), vec![(0, me), (1, me), (2, me)]);
    assert!(pool.thread_names().is_empty());
    pool.stop();
    assert!(pool.call_in_thread(|| ()).is_err());
}

// Tracker issue 9, defect 12: a second resize while a worker is still
// running its exit hooks counted that leaving worker as live, queued a second
// Quit that took the last real worker, and left the next job queued with no
// worker to run it (a ConnectionPool under random resizing hung).
#[test]
fn test_resize_while_a_worker_runs_its_exit_hooks_strands_no_job() {
    let pool = ThreadPool::new(2, 2, "resize-exiting").unwrap();
    let (in_hook_tx, in_hook_rx) = bounded::<()>(1);
    let (release_tx, release_rx) = bounded::<()>(1);
    let first = Arc::new(std::sync::atomic::AtomicBool::new(true));
    pool.add_worker_exit_hook(Arc::new(move || {
        // Only the first worker to leave blocks in its hook.
        if first.swap(false, Ordering::SeqCst) {
            in_hook_tx.send(()).unwrap();
            let _ = release_rx.recv_timeout(TIMEOUT);
        }
    }));
    pool.start().unwrap();
    assert_eq!(pool.workers(), 2);
    pool.adjust_pool_size(Some(0), Some(1)).unwrap();
    recv(&in_hook_rx); // one worker took its Quit and is still leaving
                       // A second resize to the same size must not ask another worker to leave.
    pool.adjust_pool_size(Some(0), Some(1)).unwrap();
    let (tx, rx) = bounded::<u32>(1);
    pool.call_in_thread(move || tx.send(7).unwrap()).unwrap();
    assert_eq!(recv(&rx), 7);
    release_tx.send(()).unwrap();
    pool.stop();
    assert_eq!(pool.workers(), 0);
}

// Defect 12, the other half: shrinking to no thread at all and growing again
// must start a worker for the jobs that queued meanwhile, even with min 0.
#[test]
fn test_growing_back_from_max_zero_runs_the_backlog() {
    let pool = ThreadPool::new(0, 1, "regrow").unwrap();
    pool.start().unwrap();
    pool.adjust_pool_size(Some(0), Some(0)).unwrap();
    let (tx, rx) = bounded::<u32>(1);
    pool.call_in_thread(move || tx.send(1).unwrap()).unwrap();
    assert!(rx.try_recv().is_err());
    pool.adjust_pool_size(Some(0), Some(1)).unwrap();
    assert_eq!(recv(&rx), 1);
    pool.stop();
}

// Defect 12 under load: random resizes between jobs never strand one.
#[test]
fn test_random_resizing_never_strands_jobs() {
    let pool = ThreadPool::new(1, 3, "random-resize").unwrap();
    pool.add_worker_exit_hook(Arc::new(thread::yield_now));
    pool.start().unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    const JOBS: usize = 2_000;
    for _ in 0..JOBS {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let max = 1 + (seed % 3) as usize;
        let min = (seed >> 8) as usize % (max + 1);
        pool.adjust_pool_size(Some(min), Some(max)).unwrap();
        let r = ran.clone();
        pool.call_in_thread(move || {
            r.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    }
    wait_until("every job ran", || ran.load(Ordering::SeqCst) == JOBS);
    pool.stop();
}

// Tracker issue 9, defect 13: `submit` racing `stop` on another thread could
// return Ok for a job queued behind the workers' Quit messages, which never
// ran. Every accepted job must run.
#[test]
fn test_submit_racing_stop_runs_every_accepted_job() {
    for round in 0..300 {
        let pool = ThreadPool::new(1, 1, format!("submit-vs-stop-{round}")).unwrap();
        pool.start().unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let (go_tx, go_rx) = bounded::<()>(1);
        let submitter = {
            let (pool, ran) = (pool.clone(), ran.clone());
            thread::spawn(move || {
                let mut accepted = 0usize;
                go_tx.send(()).unwrap();
                loop {
                    let r = ran.clone();
                    let job = move || {
                        r.fetch_add(1, Ordering::SeqCst);
                    };
                    match pool.call_in_thread(job) {
                        Ok(()) => accepted += 1,
                        Err(_) => return accepted,
                    }
                }
            })
        };
        recv(&go_rx);
        pool.stop();
        let accepted = submitter.join().unwrap();
        // `stop` joined the worker: whatever it will ever run has run.
        assert_eq!(
            ran.load(Ordering::SeqCst),
            accepted,
            "round {round}: accepted jobs that never ran"
        );
    }
}

// Tracker issue 9, defect 14: `std::thread::Builder::spawn` panics on a name
// with a NUL byte, and it did so inside the pool's lock at `start`: the pool
// never ran its jobs. The name is refused up front, with a typed error.
#[test]
fn test_name_with_nul_is_refused() {
    let err = ThreadPool::new(1, 1, "db\0pool").unwrap_err();
    assert_eq!(
        err,
        PoolConfigError::InvalidName {
            name: "db\0pool".into(),
            position: 2
        }
    );
    assert!(err.to_string().contains("NUL"), "{err}");
    assert!(ThreadPool::with_mode(0, 1, "\0", PoolMode::Manual).is_err());
}
