//! `.await` on a Deferred (Twisted's `Deferred.__await__`: a Deferred is awaitable) and a
//! port of the cancellation half of test_defer.py `DeferredFutureAdapterTests`
//! (`test_asFuture`, `test_asFutureCancelFuture`, `test_asFutureSuccessCancel`,
//! `test_asFutureFailure`), driven by a tiny single-threaded executor.

mod common;

use std::cell::Cell;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use common::{generic, new_log, GenericError, Log};
use deferred::{succeed, CancelledError, Deferred, Failure};

/// Counts wake-ups.
struct Flag(AtomicUsize);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A one-future executor: poll, and between polls let the test act as the
/// reactor.
struct Exec<F: Future> {
    fut: Pin<Box<F>>,
    flag: Arc<Flag>,
    waker: Waker,
}

impl<F: Future> Exec<F> {
    fn new(fut: F) -> Self {
        let flag = Arc::new(Flag(AtomicUsize::new(0)));
        let waker = Waker::from(flag.clone());
        Exec {
            fut: Box::pin(fut),
            flag,
            waker,
        }
    }

    fn poll(&mut self) -> Poll<F::Output> {
        let mut cx = Context::from_waker(&self.waker);
        self.fut.as_mut().poll(&mut cx)
    }

    fn wakes(&self) -> usize {
        self.flag.0.load(Ordering::SeqCst)
    }
}

/// Drives `fut` to completion; it must never be pending without a wake-up.
fn block_on<F: Future>(fut: F) -> F::Output {
    let mut exec = Exec::new(fut);
    loop {
        let before = exec.wakes();
        if let Poll::Ready(v) = exec.poll() {
            return v;
        }
        assert!(
            exec.wakes() > before,
            "pending with nothing that could wake it"
        );
    }
}

// Awaiting an already-fired Deferred completes at the first poll.
#[test]
fn await_already_fired() {
    assert_eq!(block_on(succeed(5).into_future()).unwrap(), 5);
    let mut exec = Exec::new(async { succeed("ready").await });
    assert!(matches!(exec.poll(), Poll::Ready(Ok("ready"))));
}

// Twisted: DeferredFutureAdapterTests.test_asFuture
#[test]
fn await_fired_later() {
    let (d, r) = Deferred::<i32>::new();
    let mut exec = Exec::new(d.into_future());
    assert!(exec.poll().is_pending());
    assert!(exec.poll().is_pending());
    assert_eq!(exec.wakes(), 0);
    r.callback(13).unwrap();
    assert_eq!(exec.wakes(), 1, "firing the Deferred wakes the task");
    match exec.poll() {
        Poll::Ready(v) => assert_eq!(v.unwrap(), 13),
        Poll::Pending => panic!("should be ready after the wake-up"),
    }
}

// Twisted: DeferredFutureAdapterTests.test_asFutureFailure
#[test]
fn await_failure_gives_err() {
    let (d, r) = Deferred::<()>::new();
    let mut exec = Exec::new(async move { d.await });
    assert!(exec.poll().is_pending());
    r.errback(generic("division by zero")).unwrap();
    match exec.poll() {
        Poll::Ready(Err(f)) => assert!(f.check::<GenericError>().is_some()),
        other => panic!("expected a failure, got {other:?}"),
    }
}

// An async fn awaiting several Deferreds in turn, with `?`.
#[test]
fn await_sequence_with_question_mark() {
    let (a, ra) = Deferred::<i32>::new();
    let (b, rb) = Deferred::<i32>::new();
    let mut exec = Exec::new(async move {
        let x = a.await?;
        let y = b.await?;
        Ok::<i32, Failure>(x + y)
    });
    assert!(exec.poll().is_pending());
    ra.callback(1).unwrap();
    assert!(exec.poll().is_pending(), "now waiting on b");
    rb.callback(2).unwrap();
    assert_eq!(exec.wakes(), 2);
    assert!(matches!(exec.poll(), Poll::Ready(Ok(3))));

    let (a, ra) = Deferred::<i32>::new();
    let b_polled = Rc::new(Cell::new(false));
    let bp = b_polled.clone();
    let mut exec = Exec::new(async move {
        let x = a.await?;
        bp.set(true);
        Ok::<i32, Failure>(x)
    });
    assert!(exec.poll().is_pending());
    ra.errback(generic("stop")).unwrap();
    assert!(matches!(exec.poll(), Poll::Ready(Err(_))));
    assert!(!b_polled.get(), "the `?` returned early");
}

// The awaited value is what the chain produced, after callbacks added before the await.
#[test]
fn await_sees_result_of_earlier_callbacks() {
    let (d, r) = Deferred::<i32>::new();
    let d = d.add_callback(|x| x * 10).add_errback(|_| Ok(-1));
    let mut exec = Exec::new(d.into_future());
    r.callback(4).unwrap();
    assert!(matches!(exec.poll(), Poll::Ready(Ok(40))));
}

// Twisted: DeferredFutureAdapterTests.test_asFutureCancelFuture
#[test]
fn dropping_future_cancels_deferred() {
    let cancelled = Rc::new(Cell::new(0));
    let c = cancelled.clone();
    let (d, r) = Deferred::<()>::with_canceller(move |_| c.set(c.get() + 1));
    let seen: Log<bool> = new_log();
    let s = seen.clone();
    let d = d.add_both(move |res| {
        s.borrow_mut().push(
            res.as_ref()
                .err()
                .and_then(|f| f.check::<CancelledError>())
                .is_some(),
        );
        res
    });
    let mut exec = Exec::new(d.into_future());
    assert!(exec.poll().is_pending());
    drop(exec);
    assert_eq!(cancelled.get(), 1, "the producer's canceller ran");
    assert_eq!(
        *seen.borrow(),
        vec![true],
        "the Deferred failed with CancelledError"
    );
    assert!(r.callback(()).is_err(), "the Deferred is already fired");
}

// Dropping an un-polled future cancels too.
#[test]
fn dropping_unpolled_future_cancels_deferred() {
    let (d, r) = Deferred::<()>::new();
    drop(d.into_future());
    assert!(r.called());
}

// Twisted: DeferredFutureAdapterTests.test_asFutureSuccessCancel (a canceller that
// turns the cancellation into a success is harmless)
#[test]
fn dropping_future_with_callbacking_canceller() {
    let seen: Log<i32> = new_log();
    let s = seen.clone();
    let (d, _r) = Deferred::<i32>::with_canceller(|r| r.callback(9).unwrap());
    let d = d.add_callback(move |v| {
        s.borrow_mut().push(v);
        v
    });
    let mut exec = Exec::new(d.into_future());
    assert!(exec.poll().is_pending());
    drop(exec);
    assert_eq!(*seen.borrow(), vec![9]);
}

// A completed future does not cancel anything when dropped.
#[test]
fn dropping_completed_future_does_not_cancel() {
    let cancelled = Rc::new(Cell::new(false));
    let c = cancelled.clone();
    let (d, r) = Deferred::<u8>::with_canceller(move |_| c.set(true));
    let mut exec = Exec::new(d.into_future());
    assert!(exec.poll().is_pending());
    r.callback(1).unwrap();
    assert!(exec.poll().is_ready());
    drop(exec);
    assert!(!cancelled.get());

    // Fired but never polled: the result is there, nothing to cancel.
    let cancelled = Rc::new(Cell::new(false));
    let c = cancelled.clone();
    let (d, r) = Deferred::<u8>::with_canceller(move |_| c.set(true));
    let fut = d.into_future();
    r.callback(1).unwrap();
    drop(fut);
    assert!(!cancelled.get());
}

// Dropping a future awaiting a Deferred that waits on a chained one cancels the inner one.
#[test]
fn dropping_future_cancels_through_chain() {
    let inner_cancelled = Rc::new(Cell::new(false));
    let c = inner_cancelled.clone();
    let (inner, _ri) = Deferred::<u8>::with_canceller(move |_| c.set(true));
    let (outer, ro) = Deferred::<()>::new();
    let outer = outer.add_callback_deferred(move |()| inner);
    ro.callback(()).unwrap();
    let mut exec = Exec::new(outer.into_future());
    assert!(exec.poll().is_pending());
    drop(exec);
    assert!(inner_cancelled.get());
}

// The latest waker is the one woken.
#[test]
fn latest_waker_is_woken() {
    let (d, r) = Deferred::<()>::new();
    let mut fut = Box::pin(d.into_future());
    let first = Arc::new(Flag(AtomicUsize::new(0)));
    let second = Arc::new(Flag(AtomicUsize::new(0)));
    let w1 = Waker::from(first.clone());
    let w2 = Waker::from(second.clone());
    assert!(fut
        .as_mut()
        .poll(&mut Context::from_waker(&w1))
        .is_pending());
    assert!(fut
        .as_mut()
        .poll(&mut Context::from_waker(&w2))
        .is_pending());
    r.callback(()).unwrap();
    assert_eq!(first.0.load(Ordering::SeqCst), 0);
    assert_eq!(second.0.load(Ordering::SeqCst), 1);
    assert!(fut.as_mut().poll(&mut Context::from_waker(&w2)).is_ready());
}
