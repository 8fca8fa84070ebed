//! Ports Twisted's `twisted/test/test_threads.py` (`DeferredResultTests`,
//! `DeferToThreadPoolTests`, `ReactorThreadsTests`, `StartupBehaviorTests`)
//! and the thread-pool tests of `ThreadTestsBuilder`
//! (`twisted/internet/test/test_threads.py`), against `defer_to_thread_pool`,
//! `defer_to_thread`, `call_multiple_in_thread`, `blocking_call_from_thread`
//! and the reactor's own pool (`ReactorBase.getThreadPool` and `_stopThreadPool`, `twisted.internet.threads`).
//!
//! Kept whole although over 600 lines: it ports Twisted's test_threads.py
//! tests and reads beside them.
//!
//! Beyond Twisted (whose Deferred here has no canceller): cancelling a job
//! that has not started means it never runs; cancelling a running one fails
//! the Deferred at once and drops the late result silently; a stopped pool
//! fails the Deferred instead of never firing it; and
//! `blocking_call_from_thread` on the loop thread fails instead of
//! deadlocking.

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::{new_default_reactor, stop_default};
use crossbeam_channel::{bounded, unbounded, Sender};
use deferred::{fail, succeed, CancelledError, Deferred, Failure};
use reactor::prelude::*;
use reactor::testing::{FakeReactor, PoolMode, TestPool};
use reactor::{
    blocking_call_from_thread, call_multiple_in_thread, default_reactor, defer_to_thread,
    defer_to_thread_pool, stop_thread_pool, BlockingCallError, Phase, PoolStopped, Reactor,
    ReactorFromThreads, ReactorThreads, RemoteHandle, ThreadPool,
};
use test_support::bounded::wait_until;
use test_support::logs::{capture_logs, errors, LogCapture};
use test_support::reactor::run_bounded;
use test_support::TIMEOUT;

#[derive(Debug, thiserror::Error)]
#[error("new error: {0}")]
struct NewError(&'static str);

type Log<T> = Rc<RefCell<Vec<T>>>;

fn new_log<T>() -> Log<T> {
    Rc::new(RefCell::new(Vec::new()))
}

/// Runs a fresh default reactor with `scenario` called once it is running.
fn run_scenario(scenario: impl FnOnce(&Reactor) + 'static) -> Reactor {
    let reactor = new_default_reactor();
    let r = reactor.clone();
    reactor.call_when_running(move || scenario(&r));
    run_bounded(&reactor).expect("the reactor runs");
    reactor
}

/// Sends on `tx` when dropped.
struct DropSignal(Sender<()>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

/// A late result: records that it was dropped.
#[derive(Debug)]
struct Late(Arc<AtomicBool>);

impl Drop for Late {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------
// DeferredResultTests
// ---------------------------------------------------------------------------

// Twisted: DeferredResultTests.test_callMultiple
#[test]
fn test_call_multiple() {
    const N: usize = 10;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    run_scenario(move |r| {
        let mut calls: Vec<Box<dyn FnOnce() + Send>> = (0..N)
            .map(|i| {
                let s = s.clone();
                Box::new(move || s.lock().unwrap().push((i, thread::current().id())))
                    as Box<dyn FnOnce() + Send>
            })
            .collect();
        let remote = r.remote();
        calls.push(Box::new(move || remote.call_from_thread(stop_default)));
        call_multiple_in_thread(r, calls).unwrap();
    });
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        (0..N).collect::<Vec<_>>()
    );
    let worker = seen[0].1;
    assert_ne!(worker, thread::current().id());
    assert!(seen.iter().all(|(_, t)| *t == worker), "all on one thread");
}

// reactor::call_multiple_in_thread: a panicking call is logged and the
// later ones still run (each call is guarded, as Twisted's worker logs).
#[test]
fn test_call_multiple_with_panic() {
    let capture = LogCapture::all_threads();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    run_scenario(move |r| {
        let (s0, s2) = (s.clone(), s.clone());
        let remote = r.remote();
        let calls: Vec<Box<dyn FnOnce() + Send>> = vec![
            Box::new(move || s0.lock().unwrap().push(0)),
            Box::new(|| panic!("call-multiple-unique-panic")),
            Box::new(move || s2.lock().unwrap().push(2)),
            Box::new(move || remote.call_from_thread(stop_default)),
        ];
        call_multiple_in_thread(r, calls).unwrap();
    });
    assert_eq!(*seen.lock().unwrap(), vec![0, 2]);
    let logs = capture.events();
    let logged: Vec<_> = logs
        .iter()
        .filter(|l| {
            l.field("failure")
                .is_some_and(|f| f.contains("call-multiple-unique-panic"))
        })
        .collect();
    assert_eq!(logged.len(), 1, "{logs:?}");
    assert!(logged[0].message.contains("callMultipleInThread"));
}

// Twisted: DeferredResultTests.test_deferredResult
#[test]
fn test_deferred_result() {
    let got = new_log();
    let g = got.clone();
    run_scenario(move |r| {
        let r2 = r.clone();
        let d = defer_to_thread(r, || Ok(3 + 4));
        assert!(!d.called(), "fires on a later turn");
        let _ = d.add_callback(move |v: u32| {
            g.borrow_mut().push((v, r2.is_in_io_thread()));
            r2.stop().unwrap();
        });
    });
    assert_eq!(*got.borrow(), vec![(7, true)]);
}

// Twisted: DeferredResultTests.test_deferredFailure
#[test]
fn test_deferred_failure() {
    let got = new_log();
    let g = got.clone();
    run_scenario(move |r| {
        let r2 = r.clone();
        let _ = defer_to_thread::<_, u32, _>(r, || Err(Failure::new(NewError("in thread"))))
            .add_errback(move |f| {
                g.borrow_mut().push(f.check::<NewError>().map(|e| e.0));
                r2.stop().unwrap();
                Ok(0)
            });
    });
    assert_eq!(*got.borrow(), vec![Some("in thread")]);
}

// Twisted: DeferredResultTests.test_deferredFailureAfterSuccess
#[test]
fn test_deferred_failure_after_success() {
    let got = new_log();
    let g = got.clone();
    run_scenario(move |r| {
        let (r2, r3) = (r.clone(), r.clone());
        let _ = defer_to_thread(r, || Ok(()))
            .add_callback_deferred(move |()| {
                defer_to_thread::<_, u32, _>(&r2, || panic!("division by zero"))
            })
            .add_both(move |res| {
                let f = res.unwrap_err();
                g.borrow_mut()
                    .push((f.is_panic(), f.error_message().contains("division by zero")));
                r3.stop().unwrap();
                Ok(())
            });
    });
    assert_eq!(*got.borrow(), vec![(true, true)]);
}

// ---------------------------------------------------------------------------
// DeferToThreadPoolTests
// ---------------------------------------------------------------------------

// Twisted: DeferToThreadPoolTests.test_deferredResult
#[test]
fn test_defer_to_thread_pool_deferred_result() {
    let pool = ThreadPool::new(0, 1, "dttp-result").unwrap();
    pool.start().unwrap();
    let got = new_log();
    let (g, p) = (got.clone(), pool.clone());
    run_scenario(move |r| {
        let r2 = r.clone();
        let d = defer_to_thread_pool(r, &p, || Ok(3 + 4));
        assert!(!d.called(), "fires on a later turn");
        let _ = d.add_callback(move |v: u32| {
            g.borrow_mut().push((v, r2.is_in_io_thread()));
            r2.stop().unwrap();
        });
    });
    assert_eq!(*got.borrow(), vec![(7, true)]);
    pool.stop();
}

// Twisted: DeferToThreadPoolTests.test_deferredFailure
#[test]
fn test_defer_to_thread_pool_deferred_failure() {
    let pool = ThreadPool::new(0, 1, "dttp-failure").unwrap();
    pool.start().unwrap();
    let got = new_log();
    let (g, p) = (got.clone(), pool.clone());
    run_scenario(move |r| {
        let r2 = r.clone();
        let _ = defer_to_thread_pool::<_, u32, _>(r, &p, || Err(Failure::new(NewError("pool"))))
            .add_errback(move |f| {
                g.borrow_mut().push(f.check::<NewError>().map(|e| e.0));
                r2.stop().unwrap();
                Ok(0)
            });
    });
    assert_eq!(*got.borrow(), vec![Some("pool")]);
    pool.stop();
}

// `twisted.internet.threads`: "The Deferred always fires later, in the reactor thread,
// even if the 'thread pool' runs the function synchronously (NonThreadPool)."
#[test]
fn test_defer_to_thread_pool_inline_fires_on_a_later_turn() {
    let pool = ThreadPool::with_mode(0, 1, "dttp-inline", PoolMode::Inline).unwrap();
    let events = new_log();
    let (e, p) = (events.clone(), pool.clone());
    run_scenario(move |r| {
        let ran = Arc::new(AtomicBool::new(false));
        let ran2 = ran.clone();
        let d = defer_to_thread_pool(r, &p, move || {
            ran2.store(true, Ordering::SeqCst);
            Ok("result")
        });
        assert!(
            ran.load(Ordering::SeqCst),
            "the inline pool ran the job at once"
        );
        assert!(!d.called(), "but the Deferred waits for a turn");
        e.borrow_mut().push("submitted");
        let (e2, r2) = (e.clone(), r.clone());
        let _ = d.add_callback(move |v| {
            e2.borrow_mut().push(v);
            r2.stop().unwrap();
        });
    });
    assert_eq!(*events.borrow(), vec!["submitted", "result"]);
}

// `twisted.internet.threads`, with the test reactor: inline and manual pools deliver
// results only when the test takes a turn.
#[test]
fn test_defer_to_thread_pool_with_fake_reactor() {
    let fake = FakeReactor::new(true);
    let pool = fake.new_thread_pool(0, 1, "fake-inline").unwrap();
    let d = defer_to_thread_pool(&fake, &pool, || Ok(5));
    assert!(!d.has_result());
    assert_eq!(fake.pump(), 1);
    assert_eq!(d.into_result().unwrap().unwrap(), 5);

    let fake = FakeReactor::with_pool_mode(true, PoolMode::Manual);
    let pool = fake.new_thread_pool(0, 1, "fake-manual").unwrap();
    let d = defer_to_thread_pool(&fake, &pool, || Ok(6));
    assert_eq!(fake.pump(), 0, "the job has not run");
    assert!(!d.has_result());
    assert_eq!(fake.run_jobs(), 1);
    assert!(!d.has_result(), "the result waits for a turn");
    assert_eq!(fake.pump(), 1);
    assert_eq!(d.into_result().unwrap().unwrap(), 6);

    // defer_to_thread uses the fake's own pool.
    let d = defer_to_thread(&fake, || Ok(7));
    assert_eq!(fake.run_until_idle(), 2);
    assert_eq!(d.into_result().unwrap().unwrap(), 7);
}

// Issue: "A panic in f becomes a Failure, and the worker thread survives."
#[test]
fn test_defer_to_thread_pool_panic_becomes_failure() {
    let capture = LogCapture::all_threads();
    let pool = ThreadPool::new(1, 1, "dttp-panic").unwrap();
    pool.start().unwrap();
    let got = new_log();
    let (g, p) = (got.clone(), pool.clone());
    run_scenario(move |r| {
        let (r2, p2, g2) = (r.clone(), p.clone(), g.clone());
        let _ = defer_to_thread_pool::<_, u32, _>(r, &p, || panic!("job exploded")).add_both(
            move |res| {
                let f = res.unwrap_err();
                g.borrow_mut()
                    .push(format!("panic={} {}", f.is_panic(), f.error_message()));
                // The same worker runs the next job.
                let r3 = r2.clone();
                let _ = defer_to_thread_pool(&r2, &p2, || {
                    Ok(thread::current().name().unwrap_or("").to_owned())
                })
                .add_callback(move |name| {
                    g2.borrow_mut().push(name);
                    r3.stop().unwrap();
                });
                Ok(())
            },
        );
    });
    assert_eq!(
        *got.borrow(),
        vec![
            "panic=true panicked: job exploded".to_owned(),
            "PoolThread-dttp-panic-0".to_owned()
        ]
    );
    assert_eq!(pool.thread_names().len(), 1);
    pool.stop();
    // The panic became the Deferred's failure; the pool logged nothing.
    assert!(capture.with_field("pool", "dttp-panic").is_empty());
}

// Beyond Twisted: work given to a stopped pool fails (on a later turn)
// instead of never firing.
#[test]
fn test_defer_to_stopped_pool_fails_later() {
    let pool = ThreadPool::new(0, 1, "dttp-stopped").unwrap();
    pool.start().unwrap();
    pool.stop();

    let fake = FakeReactor::new(true);
    let d = defer_to_thread_pool(&fake, &pool, || Ok(1));
    assert!(!d.has_result());
    fake.pump();
    let f = d.into_result().unwrap().unwrap_err();
    assert_eq!(
        f.check::<PoolStopped>(),
        Some(&PoolStopped {
            name: "dttp-stopped".into()
        })
    );

    let got = new_log();
    let (g, p) = (got.clone(), pool.clone());
    run_scenario(move |r| {
        let r2 = r.clone();
        let d = defer_to_thread_pool(r, &p, || Ok(1));
        assert!(!d.called());
        let _ = d.add_errback(move |f| {
            g.borrow_mut().push(f.check::<PoolStopped>().is_some());
            r2.stop().unwrap();
            Ok(0)
        });
    });
    assert_eq!(*got.borrow(), vec![true]);
}

// Beyond Twisted: a job dropped unrun (its never-started pool was stopped
// and dropped) fails its Deferred instead of leaving it hanging.
#[test]
fn test_job_dropped_unrun_fails_its_deferred() {
    let fake = FakeReactor::new(true);
    let pool = ThreadPool::new(0, 1, "dropped-unrun").unwrap();
    let d = defer_to_thread_pool(&fake, &pool, || Ok(1));
    pool.stop();
    drop(pool);
    assert!(!d.has_result());
    assert_eq!(fake.pump(), 1);
    let f = d.into_result().unwrap().unwrap_err();
    assert_eq!(
        f.check::<PoolStopped>(),
        Some(&PoolStopped {
            name: "dropped-unrun".into()
        })
    );
    assert_eq!(fake.loop_queue().outstanding(), 0);
}

// reactor::stop_thread_pool: ThreadPool.stop() without blocking the loop;
// the jobs' results arrive first, then the Deferred, once every worker
// exited.
#[test]
fn test_stop_thread_pool_does_not_block_the_loop() {
    let pool = ThreadPool::new(1, 1, "stop-nonblocking").unwrap();
    pool.start().unwrap();
    let events = new_log();
    let (e, p) = (events.clone(), pool.clone());
    run_scenario(move |r| {
        let (open_tx, open_rx) = bounded::<()>(1);
        let (started_tx, started_rx) = bounded(1);
        let e1 = e.clone();
        let _ = defer_to_thread_pool(r, &p, move || {
            started_tx.send(()).unwrap();
            let _ = open_rx.recv_timeout(TIMEOUT);
            Ok("running job")
        })
        .add_callback(move |v| e1.borrow_mut().push(v.to_owned()));
        started_rx.recv_timeout(TIMEOUT).unwrap();
        let e2 = e.clone();
        let _ = defer_to_thread_pool(r, &p, || Ok("queued job"))
            .add_callback(move |v| e2.borrow_mut().push(v.to_owned()));
        let stopped = stop_thread_pool(r, &p);
        assert!(p.joined());
        assert!(!stopped.called(), "waits for the jobs");
        // The loop still runs timers: this one lets the running job finish.
        let e3 = e.clone();
        r.call_later(Duration::from_millis(1), move || {
            e3.borrow_mut().push("timer".to_owned());
            drop(open_tx);
        });
        let (e4, r4, p4) = (e.clone(), r.clone(), p.clone());
        let _ = stopped.add_callback(move |()| {
            e4.borrow_mut()
                .push(format!("stopped, workers={}", p4.workers()));
            r4.stop().unwrap();
        });
    });
    assert_eq!(
        *events.borrow(),
        vec!["timer", "running job", "queued job", "stopped, workers=0"]
    );
}

// reactor::stop_thread_pool: a second call (nothing left to wait for) has fired already.
#[test]
fn test_stop_thread_pool_second_call_fires_at_once() {
    let fake = FakeReactor::new(true);
    let pool = ThreadPool::new(0, 1, "stop-twice").unwrap();
    pool.start().unwrap();
    let first = stop_thread_pool(&fake, &pool);
    fake.run_until_idle();
    assert!(first.called());
    let second = stop_thread_pool(&fake, &pool);
    assert!(second.called(), "documented to fire at once");
}

// Twisted's `_ThreePhaseEvent` and `ReactorBase._stopThreadPool`: firing "shutdown" on a never-run reactor
// stops its pool, and with no Deferred left to wait for, the during and
// after phases run inside fire_system_event.
#[test]
fn test_fire_shutdown_before_run_completes_synchronously() {
    let reactor = Reactor::new().unwrap();
    let pool = reactor.get_thread_pool();
    let phases = new_log();
    for phase in [Phase::During, Phase::After] {
        let p = phases.clone();
        reactor.add_system_event_trigger(phase, "shutdown", move || p.borrow_mut().push(phase));
    }
    reactor.fire_system_event("shutdown");
    assert!(pool.joined());
    assert_eq!(*phases.borrow(), vec![Phase::During, Phase::After]);
}

// ---------------------------------------------------------------------------
// Cancellation (beyond Twisted)
// ---------------------------------------------------------------------------

// Issue: cancelling a Deferred whose job has not started removes the job.
#[test]
fn test_cancel_queued_job_never_runs() {
    let pool = ThreadPool::new(1, 1, "cancel-queued").unwrap();
    pool.start().unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    let captured = Arc::new(());
    let weak = Arc::downgrade(&captured);
    let events = new_log();
    let (e, p, ran2) = (events.clone(), pool.clone(), ran.clone());
    let (_reactor, logs) = capture_logs(|| {
        run_scenario(move |r| {
            let (started_tx, started_rx) = bounded(1);
            let (open_tx, open_rx) = bounded::<()>(1);
            let d1 = defer_to_thread_pool(r, &p, move || {
                started_tx.send(()).unwrap();
                open_rx.recv_timeout(TIMEOUT).map_err(Failure::new)?;
                Ok(1)
            });
            // The only worker is busy: the next job waits in the backlog.
            started_rx.recv_timeout(TIMEOUT).unwrap();
            let held = captured;
            let d2 = defer_to_thread_pool(r, &p, move || {
                let _ = &held;
                ran2.store(true, Ordering::SeqCst);
                Ok(2)
            });
            assert_eq!(r.loop_queue().outstanding(), 2);
            d2.cancel();
            // Failed at once, and forgotten by the reactor.
            let f = d2.into_result().unwrap().unwrap_err();
            assert!(f.check::<CancelledError>().is_some(), "{f:?}");
            assert_eq!(r.loop_queue().outstanding(), 1);
            let d3 = defer_to_thread_pool(r, &p, || Ok(3));
            open_tx.send(()).unwrap();
            let e1 = e.clone();
            let _ = d1.add_callback(move |v| e1.borrow_mut().push(format!("d1={v}")));
            let (e3, r3) = (e.clone(), r.clone());
            let _ = d3.add_callback(move |v| {
                // One worker, FIFO: the cancelled job was dequeued before job 3.
                e3.borrow_mut()
                    .push(format!("d3={v} captures_alive={}", weak.strong_count() > 0));
                r3.stop().unwrap();
            });
        })
    });
    assert_eq!(
        *events.borrow(),
        vec!["d1=1".to_owned(), "d3=3 captures_alive=false".to_owned()]
    );
    assert!(!ran.load(Ordering::SeqCst), "the cancelled job never ran");
    pool.stop();
    assert!(
        !ran.load(Ordering::SeqCst),
        "not even while draining at stop"
    );
    assert!(errors(&logs).is_empty(), "{logs:?}");
}

// Issue: a job already running finishes, and its late result is dropped
// without error.
#[test]
fn test_cancel_running_job_drops_late_result() {
    let pool = ThreadPool::new(1, 1, "cancel-running").unwrap();
    pool.start().unwrap();
    let finished = Arc::new(AtomicBool::new(false));
    let late_dropped = Arc::new(AtomicBool::new(false));
    let events = new_log();
    let (e, p, fin, dropped) = (
        events.clone(),
        pool.clone(),
        finished.clone(),
        late_dropped.clone(),
    );
    let (_reactor, logs) = capture_logs(|| {
        run_scenario(move |r| {
            let (started_tx, started_rx) = bounded(1);
            let (open_tx, open_rx) = bounded::<()>(1);
            let (fin2, dropped2) = (fin.clone(), dropped.clone());
            let d1 = defer_to_thread_pool(r, &p, move || {
                started_tx.send(()).unwrap();
                open_rx.recv_timeout(TIMEOUT).map_err(Failure::new)?;
                fin2.store(true, Ordering::SeqCst);
                Ok(Late(dropped2))
            });
            // A second running job whose late result is a failure.
            let (started2_tx, started2_rx) = bounded(1);
            let (open2_tx, open2_rx) = bounded::<()>(1);
            let d2 = defer_to_thread_pool::<_, u32, _>(r, &p, move || {
                started2_tx.send(()).unwrap();
                let _ = open2_rx.recv_timeout(TIMEOUT);
                Err(Failure::new(NewError("late failure")))
            });
            started_rx.recv_timeout(TIMEOUT).unwrap();
            d1.cancel();
            let f = d1.into_result().unwrap().unwrap_err();
            assert!(f.check::<CancelledError>().is_some(), "{f:?}");
            assert!(
                !fin.load(Ordering::SeqCst),
                "cancel does not wait for the job"
            );
            // The running job keeps its slot until its result arrives.
            assert_eq!(r.loop_queue().outstanding(), 2);
            open_tx.send(()).unwrap();
            started2_rx.recv_timeout(TIMEOUT).unwrap();
            d2.cancel();
            let f = d2.into_result().unwrap().unwrap_err();
            assert!(f.check::<CancelledError>().is_some(), "{f:?}");
            open2_tx.send(()).unwrap();
            // One worker, FIFO: when job 3's result arrives, the late ones
            // have been delivered (and dropped) before it.
            let (e3, r3) = (e.clone(), r.clone());
            let _ = defer_to_thread_pool(r, &p, || Ok(3)).add_callback(move |v| {
                e3.borrow_mut().push(format!(
                    "d3={v} finished={} late_dropped={} outstanding={}",
                    fin.load(Ordering::SeqCst),
                    dropped.load(Ordering::SeqCst),
                    r3.loop_queue().outstanding()
                ));
                r3.stop().unwrap();
            });
        })
    });
    assert_eq!(
        *events.borrow(),
        vec!["d3=3 finished=true late_dropped=true outstanding=0".to_owned()]
    );
    assert!(late_dropped.load(Ordering::SeqCst));
    assert!(errors(&logs).is_empty(), "{logs:?}");
    pool.stop();
}

// ---------------------------------------------------------------------------
// ReactorThreadsTests
// ---------------------------------------------------------------------------

// Twisted: ReactorThreadsTests.test_suggestThreadPoolSize
#[test]
fn test_suggest_thread_pool_size() {
    let reactor = Reactor::new().unwrap();
    reactor.suggest_thread_pool_size(34);
    assert_eq!(reactor.get_thread_pool().max(), 34);
    reactor.suggest_thread_pool_size(4);
    let pool = reactor.get_thread_pool();
    assert_eq!((pool.min(), pool.max()), (0, 4));
}

// Twisted: ReactorThreadsTests.test_callInThread
#[test]
fn test_call_in_thread() {
    let reactor = new_default_reactor();
    let (tx, rx) = bounded(1);
    let remote = reactor.remote();
    // Queued before the reactor runs; its pool starts with the reactor.
    reactor
        .call_in_thread(move || {
            tx.send(thread::current().name().map(str::to_owned))
                .unwrap();
            remote.call_from_thread(stop_default);
        })
        .unwrap();
    assert!(rx.is_empty());
    run_bounded(&reactor).expect("the reactor runs");
    let name = rx.try_recv().unwrap().unwrap();
    assert!(
        name.starts_with("PoolThread-twisted.internet.reactor-"),
        "{name}"
    );
}

/// Runs `f` in a reactor-pool thread that calls `blocking_call_from_thread`,
/// as Twisted's `_testBlockingCallFromThread`, and returns what it got.
fn blocking_call_in_thread<T, F>(f: F) -> Result<T, Failure>
where
    T: Send + 'static,
    F: FnOnce() -> Deferred<T> + Send + 'static,
{
    let out = Rc::new(RefCell::new(None));
    let o = out.clone();
    run_scenario(move |r| {
        let remote = r.remote();
        let r2 = r.clone();
        let _ = defer_to_thread(r, move || {
            // The worker hands its outcome back as a value so the test sees
            // both branches.
            Ok(blocking_call_from_thread(&remote, f))
        })
        .add_callback(move |res| {
            *o.borrow_mut() = Some(res);
            r2.stop().unwrap();
        });
    });
    let got = out.borrow_mut().take();
    got.expect("the worker came back")
}

// Twisted: ReactorThreadsTests.test_blockingCallFromThread
#[test]
fn test_blocking_call_from_thread() {
    let v = blocking_call_in_thread(|| {
        assert!(default_reactor().is_in_io_thread());
        succeed("foo".to_owned())
    });
    assert_eq!(v.unwrap(), "foo");
    // A plain Result works too.
    let out = Rc::new(Cell::new(0));
    let o = out.clone();
    run_scenario(move |r| {
        let remote = r.remote();
        let r2 = r.clone();
        let _ = defer_to_thread(r, move || {
            blocking_call_from_thread(&remote, || Ok::<_, Failure>(41))
        })
        .add_callback(move |v: u32| {
            o.set(v + 1);
            r2.stop().unwrap();
        });
    });
    assert_eq!(out.get(), 42);
}

// Twisted: ReactorThreadsTests.test_asyncBlockingCallFromThread
#[test]
fn test_async_blocking_call_from_thread() {
    let v = blocking_call_in_thread(|| {
        let (d, resolver) = Deferred::new();
        default_reactor().call_later(Duration::from_millis(10), move || {
            resolver.callback("egg".to_owned()).unwrap();
        });
        d.add_callback(|s: String| format!("{s}bar"))
    });
    assert_eq!(v.unwrap(), "eggbar");
}

// Twisted: ReactorThreadsTests.test_errorBlockingCallFromThread
#[test]
fn test_error_blocking_call_from_thread() {
    let v = blocking_call_in_thread(|| fail::<u32>(Failure::new(NewError("bar"))));
    let f = v.unwrap_err();
    assert_eq!(f.check::<NewError>().map(|e| e.0), Some("bar"));
}

// Twisted: ReactorThreadsTests.test_asyncErrorBlockingCallFromThread
#[test]
fn test_async_error_blocking_call_from_thread() {
    let v = blocking_call_in_thread(|| {
        let (d, resolver) = Deferred::<u32>::new();
        default_reactor().call_later(Duration::from_millis(10), move || {
            resolver.errback(NewError("spam")).unwrap();
        });
        d
    });
    let f = v.unwrap_err();
    assert_eq!(f.check::<NewError>().map(|e| e.0), Some("spam"));
}

// `twisted.internet.threads`: blockingCallFromThread runs `maybeDeferred(f)`, so a
// panic on the loop thread comes back as a failure.
#[test]
fn test_panic_blocking_call_from_thread() {
    let v = blocking_call_in_thread(|| -> Deferred<u32> { panic!("reactor func exploded") });
    let f = v.unwrap_err();
    assert!(f.is_panic());
    assert!(f.error_message().contains("reactor func exploded"));
}

// `twisted.internet.threads`: Twisted deadlocks here; this fails at once.
#[test]
fn test_blocking_call_from_thread_on_loop_thread() {
    let got = new_log();
    let g = got.clone();
    run_scenario(move |r| {
        let ran = Arc::new(AtomicBool::new(false));
        let ran2 = ran.clone();
        let res = blocking_call_from_thread(&r.remote(), move || {
            ran2.store(true, Ordering::SeqCst);
            Ok::<_, Failure>(1)
        });
        let f = res.unwrap_err();
        g.borrow_mut().push((
            f.check::<BlockingCallError>().cloned(),
            ran.load(Ordering::SeqCst),
        ));
        r.stop().unwrap();
    });
    assert_eq!(
        *got.borrow(),
        vec![(Some(BlockingCallError::OnLoopThread), false)]
    );
}

// Beyond Twisted (which blocks forever): the reactor goes away while a
// blocking call waits, or before it is made.
#[test]
fn test_blocking_call_from_thread_reactor_gone() {
    // Runs a blocking call on another thread; the answer comes back through
    // a channel so a hang fails the test instead of blocking it forever.
    fn blocking_call_elsewhere(remote: RemoteHandle) -> crossbeam_channel::Receiver<Failure> {
        let (tx, rx) = bounded(1);
        thread::spawn(move || {
            let r = blocking_call_from_thread(&remote, || Ok::<u32, Failure>(1));
            tx.send(r.unwrap_err()).unwrap();
        });
        rx
    }
    let reactor = Reactor::new().unwrap();
    let remote = reactor.remote();
    let waiting = blocking_call_elsewhere(remote.clone());
    wait_until("the call is queued", || reactor.loop_queue().len() == 1);
    drop(reactor);
    let f = waiting
        .recv_timeout(TIMEOUT)
        .expect("the blocked caller returned");
    assert_eq!(
        f.check::<BlockingCallError>(),
        Some(&BlockingCallError::ReactorGone)
    );
    let late = blocking_call_elsewhere(remote);
    let f = late.recv_timeout(TIMEOUT).expect("the caller returned");
    assert_eq!(
        f.check::<BlockingCallError>(),
        Some(&BlockingCallError::ReactorGone)
    );
}

// ---------------------------------------------------------------------------
// ThreadTestsBuilder and StartupBehaviorTests
// ---------------------------------------------------------------------------

// Twisted: ThreadTestsBuilder.test_getThreadPool
#[test]
fn test_get_thread_pool() {
    let reactor = new_default_reactor();
    let pool = reactor.get_thread_pool();
    assert_eq!(pool.name(), "twisted.internet.reactor");
    assert_eq!((pool.min(), pool.max()), (0, 10));
    assert!(!pool.started(), "not started before run");
    let state = new_log();
    let (s, p, r) = (state.clone(), pool.clone(), reactor.clone());
    reactor.call_when_running(move || {
        s.borrow_mut().push((p.started(), p.joined()));
        r.stop().unwrap();
    });
    run_bounded(&reactor).expect("the reactor runs");
    assert_eq!(*state.borrow(), vec![(true, false)]);
    assert!(pool.joined(), "stopped before run returns");
    assert_eq!(pool.workers(), 0);
}

// Twisted: ThreadTestsBuilder.test_suggestThreadPoolSize
#[test]
fn test_suggest_thread_pool_size_sets_max() {
    let reactor = Reactor::new().unwrap();
    reactor.suggest_thread_pool_size(17);
    assert_eq!(reactor.get_thread_pool().max(), 17);
}

// Twisted: ThreadTestsBuilder.test_stopThreadPool
#[test]
fn test_stop_thread_pool() {
    let reactor = new_default_reactor();
    let pool = reactor.get_thread_pool();
    let r = reactor.clone();
    reactor.call_when_running(move || r.stop().unwrap());
    run_bounded(&reactor).expect("the reactor runs");
    assert!(pool.joined());
    assert_eq!(pool.workers(), 0);
    // The reactor let go of it: asking again gives a new pool.
    assert!(!reactor.get_thread_pool().joined());
}

// Twisted: ThreadTestsBuilder.test_stopThreadPoolWhenStartedAfterReactorRan
#[test]
fn test_stop_thread_pool_when_started_after_reactor_ran() {
    let pools = new_log();
    let ran = Arc::new(AtomicBool::new(false));
    let (p, ran2) = (pools.clone(), ran.clone());
    let reactor = run_scenario(move |r| {
        let pool = r.get_thread_pool();
        assert!(pool.started(), "started at once on a running reactor");
        pool.call_in_thread(move || ran2.store(true, Ordering::SeqCst))
            .unwrap();
        p.borrow_mut().push(pool);
        r.stop().unwrap();
    });
    let pool = pools.borrow_mut().pop().unwrap();
    assert!(pool.joined());
    assert_eq!(pool.workers(), 0);
    assert!(
        ran.load(Ordering::SeqCst),
        "its job ran before run returned"
    );
    assert!(!reactor.get_thread_pool().joined());
}

// Twisted: ThreadTestsBuilder.test_cleanUpThreadPoolEvenBeforeReactorIsRun
#[test]
fn test_clean_up_thread_pool_even_before_reactor_is_run() {
    let reactor = Reactor::new().unwrap();
    let pool = reactor.get_thread_pool();
    let during = Rc::new(Cell::new(0));
    let d = during.clone();
    reactor.add_system_event_trigger(reactor::Phase::During, "shutdown", move || {
        d.set(d.get() + 1)
    });
    reactor.fire_system_event("shutdown");
    assert!(pool.joined(), "stopped");
    // The stopper reports through the loop queue, so the rest of the event
    // follows on the next turn (Twisted's runs synchronously).
    reactor.iterate(Duration::ZERO);
    assert_eq!(during.get(), 1);
    assert!(!reactor.get_thread_pool().joined(), "released");
}

// Twisted: StartupBehaviorTests.testCallBeforeStartupUnexecuted
#[test]
fn test_call_before_startup_unexecuted() {
    let reactor = Reactor::new().unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    let (dropped_tx, dropped_rx) = unbounded();
    let guard = DropSignal(dropped_tx);
    let ran2 = ran.clone();
    reactor
        .call_in_thread(move || {
            let _guard = guard;
            ran2.store(true, Ordering::SeqCst);
        })
        .unwrap();
    let pool = reactor.get_thread_pool();
    assert!(!pool.started());
    assert_eq!(pool.workers(), 0, "no thread could run it");
    assert_eq!(pool.q_size(), 1);
    drop(pool);
    // The reactor never runs: the job is dropped with it, unrun.
    drop(reactor);
    dropped_rx
        .recv_timeout(TIMEOUT)
        .expect("the job was dropped");
    assert!(!ran.load(Ordering::SeqCst));
}

/// A job that logs which of its ends it met.
struct LoggedJob(Arc<Mutex<Vec<String>>>, &'static str);

impl reactor::ThreadPoolJob for LoggedJob {
    type Output = &'static str;

    fn run(self) -> Result<&'static str, Failure> {
        self.0.lock().unwrap().push(format!("{} ran", self.1));
        Ok(self.1)
    }

    fn unrun(self) {
        self.0.lock().unwrap().push(format!("{} unrun", self.1));
    }
}

// Beyond Twisted: `defer_to_thread_pool_with_hooks` tells the job's owner
// which one thing became of each job: it ran, a cancel withdrew it (on the
// loop thread, as its Deferred fails), or its stopped pool dropped it unrun.
#[test]
fn test_hooks_tell_which_end_each_job_met() {
    use reactor::{defer_to_thread_pool_with_hooks, Interrupt};
    let fake = FakeReactor::with_pool_mode(true, PoolMode::Manual);
    let pool = fake.new_thread_pool(0, 1, "hooks").unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let withdrawn = Rc::new(RefCell::new(Vec::new()));
    let submit = |name: &'static str| {
        let w = Rc::clone(&withdrawn);
        defer_to_thread_pool_with_hooks(
            &fake,
            &pool,
            LoggedJob(Arc::clone(&log), name),
            || Interrupt::Cancelled,
            move || w.borrow_mut().push(name),
        )
    };
    let ran = submit("a");
    let cancelled = submit("b");
    cancelled.cancel();
    assert_eq!(*withdrawn.borrow(), vec!["b"], "told at once, on the loop");
    let f = cancelled.into_result().unwrap().unwrap_err();
    assert!(f.check::<CancelledError>().is_some(), "{f}");
    fake.run_jobs();
    assert_eq!(fake.pump(), 1);
    assert_eq!(ran.into_result().unwrap().unwrap(), "a");
    let dropped = submit("c");
    pool.stop();
    fake.pump();
    let f = dropped.into_result().unwrap().unwrap_err();
    assert!(f.check::<PoolStopped>().is_some(), "{f}");
    assert_eq!(*log.lock().unwrap(), vec!["a ran", "c unrun"]);
    assert_eq!(*withdrawn.borrow(), vec!["b"]);
}

// A cancel that reaches a job its stopped pool dropped, before the pool's
// failure reaches the Deferred, is declined on every path: the outcome is
// decided (the job's owner may have counted it in `unrun`), so the Deferred
// shows PoolStopped, and the interrupt hook is not asked.
#[test]
fn test_cancel_after_a_job_was_dropped_unrun_is_declined() {
    use reactor::{defer_to_thread_pool, defer_to_thread_pool_with_hooks, Interrupt};
    let fake = FakeReactor::with_pool_mode(true, PoolMode::Manual);
    let pool = fake.new_thread_pool(0, 1, "dropped").unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let asked = Rc::new(RefCell::new(0));
    let a = Rc::clone(&asked);
    let settled = defer_to_thread_pool_with_hooks(
        &fake,
        &pool,
        LoggedJob(Arc::clone(&log), "settled"),
        move || {
            *a.borrow_mut() += 1;
            Interrupt::Cancelled
        },
        || panic!("not withdrawn"),
    );
    let plain = defer_to_thread_pool(&fake, &pool, || Ok("plain"));
    pool.stop();
    settled.cancel();
    plain.cancel();
    assert_eq!(*asked.borrow(), 0, "a dropped job is not interrupted");
    assert!(
        !settled.called() && !plain.called(),
        "declined: waits for the pool's failure"
    );
    fake.pump();
    for d in [settled, plain] {
        let f = d.into_result().unwrap().unwrap_err();
        assert!(f.check::<PoolStopped>().is_some(), "{f}");
    }
    assert_eq!(*log.lock().unwrap(), vec!["settled unrun"]);
}

/// Panics as it is dropped unrun.
struct PanicsUnrun;

impl reactor::ThreadPoolJob for PanicsUnrun {
    type Output = ();

    fn run(self) -> Result<(), Failure> {
        Ok(())
    }

    fn unrun(self) {
        panic!("unrun panics");
    }
}

// A job that panics as it is dropped unrun still has its Deferred failed,
// and the panic does not escape into whoever stopped the pool.
#[test]
fn test_a_job_that_panics_as_it_is_dropped_unrun_still_fires() {
    use reactor::{defer_to_thread_pool_with_hooks, Interrupt};
    let fake = FakeReactor::with_pool_mode(true, PoolMode::Manual);
    let pool = fake.new_thread_pool(0, 1, "panics-unrun").unwrap();
    let d =
        defer_to_thread_pool_with_hooks(&fake, &pool, PanicsUnrun, || Interrupt::Cancelled, || ());
    let stopped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pool.stop()));
    assert!(stopped.is_ok(), "the panic escaped stop()");
    fake.pump();
    let f = d.into_result().expect("fired").unwrap_err();
    assert!(f.check::<PoolStopped>().is_some(), "{f}");
}
