//! Ports the idea of Twisted's `EnsureDeferredTests` (`twisted/test/test_defer.py`,
//! `defer.ensureDeferred` and `Deferred.__await__`) to `Reactor::ensure_deferred` and the free function
//! `reactor::ensure_deferred`: a `!Send` future runs on the loop thread,
//! awaits Deferreds (including ones fired by worker results), and its output
//! becomes a Deferred. Its wakers work from any thread.
//!
//! Differences by design: the future is polled once at once (as
//! `ensureDeferred` starts the coroutine), and cancelling the returned
//! Deferred drops the future, which cancels the Deferred it awaits (Twisted
//! raises `CancelledError` inside the coroutine instead).

mod common;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::thread::{self, ThreadId};

use common::new_default_reactor;
use crossbeam_channel::{bounded, Sender};
use deferred::{fail, succeed, CancelledError, Deferred, Failure};
use reactor::prelude::*;
use reactor::testing::FakeReactor;
use reactor::{
    default_reactor, defer_to_thread, defer_to_thread_pool, ReactorFromThreads, ReactorThreads,
    ThreadPool,
};
use test_support::reactor::run_bounded;
use test_support::TIMEOUT;

#[derive(Debug, thiserror::Error)]
#[error("new error")]
struct NewError;

/// Sets a flag when dropped.
struct DropFlag(Rc<Cell<bool>>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

// Twisted: EnsureDeferredTests.test_ensureDeferredCoroutine
#[test]
fn test_ensure_deferred_coroutine() {
    let reactor = new_default_reactor();
    let out = Rc::new(RefCell::new(Vec::new()));
    let (o, r) = (out.clone(), reactor.clone());
    reactor.call_when_running(move || {
        let rr = r.clone();
        // `!Send` state lives across the awaits.
        let local = Rc::new(Cell::new(0u64));
        let d = r.ensure_deferred(async move {
            let a: u64 = defer_to_thread(&rr, || Ok(20)).await?;
            local.set(a);
            let b: u64 = defer_to_thread(&rr, || Ok(22)).await?;
            assert!(rr.is_in_io_thread());
            Ok(local.get() + b)
        });
        assert!(!d.called(), "the worker results arrive on later turns");
        let r2 = r.clone();
        let _ = d.add_callback(move |sum| {
            o.borrow_mut().push(sum);
            r2.stop().unwrap();
        });
    });
    run_bounded(&reactor).expect("the reactor runs");
    assert_eq!(*out.borrow(), vec![42]);
    assert_eq!(reactor.loop_queue().tasks(), 0);
}

// `defer.ensureDeferred` and `Deferred.__await__`: awaiting a Deferred that already fired does not suspend.
#[test]
fn test_ensure_deferred_awaits_already_fired_deferred() {
    let reactor = reactor::Reactor::new().unwrap();
    let d = reactor.ensure_deferred(async {
        let a = succeed(5).await?;
        let b = succeed(6).await?;
        Ok(a * b)
    });
    // Polled once at once, never suspended: fired without any turn.
    assert_eq!(reactor.loop_queue().tasks(), 0);
    assert_eq!(d.into_result().unwrap().unwrap(), 30);
}

// `defer.ensureDeferred` and `Deferred.__await__`: the Deferred fires with the coroutine's exception.
#[test]
fn test_ensure_deferred_error_propagates() {
    let reactor = reactor::Reactor::new().unwrap();
    let after = Rc::new(Cell::new(false));
    let a = after.clone();
    let d = reactor.ensure_deferred(async move {
        let v: u32 = fail(NewError).await?;
        a.set(true);
        Ok(v)
    });
    let f = d.into_result().unwrap().unwrap_err();
    assert!(f.check::<NewError>().is_some(), "{f:?}");
    assert!(!after.get(), "`?` returned early");

    // A failure from a worker, through `?`, inside a running reactor.
    let reactor = new_default_reactor();
    let got = Rc::new(RefCell::new(Vec::new()));
    let (g, r) = (got.clone(), reactor.clone());
    reactor.call_when_running(move || {
        let rr = r.clone();
        let r2 = r.clone();
        let _ = r
            .ensure_deferred(async move {
                defer_to_thread::<_, u32, _>(&rr, || Err(Failure::new(NewError))).await?;
                Ok(())
            })
            .add_errback(move |f| {
                g.borrow_mut().push(f.check::<NewError>().is_some());
                r2.stop().unwrap();
                Ok(())
            });
    });
    run_bounded(&reactor).expect("the reactor runs");
    assert_eq!(*got.borrow(), vec![true]);
}

// LoopQueue::ensure_deferred: "A panic while polling fails the Deferred."
#[test]
fn test_ensure_deferred_panic_fails_deferred() {
    let reactor = reactor::Reactor::new().unwrap();
    let d = reactor.ensure_deferred(async {
        let v: u32 = succeed(1).await?;
        if v == 1 {
            panic!("future exploded");
        }
        Ok(v)
    });
    let f = d.into_result().unwrap().unwrap_err();
    assert!(f.is_panic());
    assert!(f.error_message().contains("future exploded"));
    assert_eq!(reactor.loop_queue().tasks(), 0);

    // A panic after a suspension, polled from the loop.
    let reactor = new_default_reactor();
    let got = Rc::new(RefCell::new(Vec::new()));
    let (g, r) = (got.clone(), reactor.clone());
    reactor.call_when_running(move || {
        let rr = r.clone();
        let r2 = r.clone();
        let _ = r
            .ensure_deferred(async move {
                let v: u32 = defer_to_thread(&rr, || Ok(2)).await?;
                if v == 2 {
                    panic!("after await");
                }
                Ok(v)
            })
            .add_errback(move |f| {
                g.borrow_mut().push(f.is_panic());
                r2.stop().unwrap();
                Ok(0)
            });
    });
    run_bounded(&reactor).expect("the reactor runs");
    assert_eq!(*got.borrow(), vec![true]);
    assert_eq!(reactor.loop_queue().tasks(), 0);
}

// `defer.ensureDeferred` and `Deferred.__await__`: "cancelling it cancels the Deferred currently awaited".
#[test]
fn test_ensure_deferred_cancel_drops_future_and_cancels_awaited() {
    let reactor = reactor::Reactor::new().unwrap();
    let inner_cancelled = Rc::new(Cell::new(false));
    let dropped = Rc::new(Cell::new(false));
    let resumed = Rc::new(Cell::new(false));
    let ic = inner_cancelled.clone();
    let (inner, _resolver) = Deferred::<u32>::with_canceller(move |_| ic.set(true));
    let (guard, res) = (DropFlag(dropped.clone()), resumed.clone());
    let d = reactor.ensure_deferred(async move {
        let _guard = guard;
        let v = inner.await;
        res.set(true);
        v
    });
    assert_eq!(reactor.loop_queue().tasks(), 1);
    assert!(!d.called());
    d.cancel();
    assert!(dropped.get(), "the future was dropped");
    assert!(inner_cancelled.get(), "the awaited Deferred was cancelled");
    assert!(!resumed.get(), "the future never resumed");
    assert_eq!(reactor.loop_queue().tasks(), 0);
    let f = d.into_result().unwrap().unwrap_err();
    assert!(f.check::<CancelledError>().is_some(), "{f:?}");
}

// Cancellation reaches a thread-pool job the future awaits: a job that has
// not started never runs.
#[test]
fn test_ensure_deferred_cancel_withdraws_queued_job() {
    let reactor = new_default_reactor();
    let pool = ThreadPool::new(1, 1, "ensure-cancel").unwrap();
    pool.start().unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    let got = Rc::new(RefCell::new(Vec::new()));
    let (g, r, p, ran2) = (got.clone(), reactor.clone(), pool.clone(), ran.clone());
    reactor.call_when_running(move || {
        let (started_tx, started_rx) = bounded(1);
        let (open_tx, open_rx) = bounded::<()>(1);
        let blocker = defer_to_thread_pool(&r, &p, move || {
            started_tx.send(()).unwrap();
            open_rx.recv_timeout(TIMEOUT).map_err(Failure::new)?;
            Ok(1)
        });
        started_rx.recv_timeout(TIMEOUT).unwrap();
        let (rr, pp) = (r.clone(), p.clone());
        let d = r.ensure_deferred(async move {
            defer_to_thread_pool(&rr, &pp, move || {
                ran2.store(true, Ordering::SeqCst);
                Ok(2)
            })
            .await
        });
        d.cancel();
        let f = d.into_result().unwrap().unwrap_err();
        if f.check::<CancelledError>().is_some() {
            g.borrow_mut().push("cancelled");
        }
        open_tx.send(()).unwrap();
        let _ = blocker;
        // One worker, FIFO: once this job's result is in, the withdrawn job
        // had its turn.
        let (g2, r2) = (g.clone(), r.clone());
        let _ = defer_to_thread_pool(&r, &p, || Ok(())).add_callback(move |()| {
            g2.borrow_mut().push("later job done");
            r2.stop().unwrap();
        });
    });
    run_bounded(&reactor).expect("the reactor runs");
    assert_eq!(*got.borrow(), vec!["cancelled", "later job done"]);
    assert!(!ran.load(Ordering::SeqCst), "the withdrawn job never ran");
    pool.stop();
    assert!(!ran.load(Ordering::SeqCst));
}

/// A future that hands its waker to another thread on the first poll and
/// completes on the next.
struct ForeignWake {
    to_thread: Option<Sender<Waker>>,
    polled_on: Rc<RefCell<Vec<ThreadId>>>,
}

impl Future for ForeignWake {
    type Output = Result<usize, Failure>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.polled_on.borrow_mut().push(thread::current().id());
        match self.to_thread.take() {
            Some(tx) => {
                tx.send(cx.waker().clone()).unwrap();
                Poll::Pending
            }
            None => Poll::Ready(Ok(self.polled_on.borrow().len())),
        }
    }
}

// Issue: "wakers that work from any thread".
#[test]
fn test_waker_woken_from_foreign_thread() {
    let reactor = new_default_reactor();
    let (waker_tx, waker_rx) = bounded::<Waker>(1);
    let (go_tx, go_rx) = bounded::<()>(1);
    let waking = thread::spawn(move || {
        let waker = waker_rx.recv_timeout(TIMEOUT).unwrap();
        go_rx.recv_timeout(TIMEOUT).unwrap();
        waker.wake();
        thread::current().id()
    });
    let polled_on = Rc::new(RefCell::new(Vec::new()));
    let d = reactor.ensure_deferred(ForeignWake {
        to_thread: Some(waker_tx),
        polled_on: polled_on.clone(),
    });
    assert_eq!(polled_on.borrow().len(), 1, "polled once at once");
    let got = Rc::new(Cell::new(0));
    let (g, r) = (got.clone(), reactor.clone());
    let _ = d.add_callback(move |polls| {
        g.set(polls);
        r.stop().unwrap();
    });
    // The loop has nothing to do but wait: only the foreign wake can end it.
    reactor.call_when_running(move || go_tx.send(()).unwrap());
    run_bounded(&reactor).expect("the reactor runs");
    let waker_thread = waking.join().unwrap();
    assert_eq!(got.get(), 2);
    let me = thread::current().id();
    assert_ne!(waker_thread, me);
    assert_eq!(
        *polled_on.borrow(),
        vec![me, me],
        "polled on the loop thread"
    );
}

/// Pending once, after waking itself during the poll.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

// A wake during the poll itself is not lost: the task is polled again.
#[test]
fn test_wake_during_poll_polls_again() {
    let reactor = new_default_reactor();
    let got = Rc::new(Cell::new(0));
    let (g, r) = (got.clone(), reactor.clone());
    let d = reactor.ensure_deferred(async {
        for _ in 0..3 {
            YieldOnce(false).await;
        }
        Ok(3)
    });
    assert!(!d.called());
    let _ = d.add_callback(move |v| {
        g.set(v);
        r.stop().unwrap();
    });
    run_bounded(&reactor).expect("the reactor runs");
    assert_eq!(got.get(), 3);
}

// The test reactor drives futures through its turns too.
#[test]
fn test_ensure_deferred_with_fake_reactor() {
    let fake = FakeReactor::new(true);
    let pool = fake.new_thread_pool(0, 1, "fake-ensure").unwrap();
    let f2 = fake.clone();
    let d = fake.ensure_deferred(async move {
        let v: u32 = defer_to_thread_pool(&f2, &pool, || Ok(41)).await?;
        Ok(v + 1)
    });
    assert!(
        !d.has_result(),
        "the job ran inline; its result waits for a turn"
    );
    fake.run_until_idle();
    assert_eq!(d.into_result().unwrap().unwrap(), 42);
    assert_eq!(fake.loop_queue().tasks(), 0);
}

// reactor::ensure_deferred: Twisted's `defer.ensureDeferred`, on the default
// (per-thread) reactor.
#[test]
fn test_free_ensure_deferred_uses_default_reactor() {
    let reactor = new_default_reactor();
    let d = reactor::ensure_deferred(async {
        let v: u32 = defer_to_thread(&default_reactor(), || Ok(6)).await?;
        Ok(v * 7)
    });
    // Registered on the default reactor, whose turns will poll it.
    assert_eq!(reactor.loop_queue().tasks(), 1);
    let got = Rc::new(Cell::new(0));
    let g = got.clone();
    let _ = d.add_callback(move |v| {
        g.set(v);
        default_reactor().stop().unwrap();
    });
    run_bounded(&reactor).expect("the reactor runs");
    assert_eq!(got.get(), 42);
    assert_eq!(reactor.loop_queue().tasks(), 0);
}
