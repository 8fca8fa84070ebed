//! Port of Twisted's test_defer.py `DeferredCancellerTests` (and the
//! `test_canceller_circular_reference_*` tests of `DeferredTests`): cancel
//! with and without a canceller, the one late fire swallowed after a cancel
//! without canceller, cancellers that do nothing, errback or callback, cancel
//! after firing, and cancelling a Deferred that waits on a chained one.

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use common::{generic, new_log, GenericError, Log};
use deferred::{AlreadyCalledError, CancelledError, Deferred, Failure, Resolver};
use test_support::logs::{capture_logs, with_prefix};

/// What the `_callback` / `_errback` pair of the Twisted tests recorded.
struct Seen<T> {
    callbacks: RefCell<Vec<T>>,
    errbacks: RefCell<Vec<Failure>>,
}

/// Adds Twisted's `addCallbacks(self._callback, self._errback)`.
fn record<T: 'static>(d: Deferred<T>) -> (Deferred<()>, Rc<Seen<T>>) {
    let seen = Rc::new(Seen {
        callbacks: RefCell::new(Vec::new()),
        errbacks: RefCell::new(Vec::new()),
    });
    let (s1, s2) = (seen.clone(), seen.clone());
    let d = d.add_callbacks(
        move |v: T| {
            s1.callbacks.borrow_mut().push(v);
            Ok(())
        },
        move |f| {
            s2.errbacks.borrow_mut().push(f);
            Ok(())
        },
    );
    (d, seen)
}

/// A canceller that counts its calls, for the "called at most once" checks.
fn counting() -> (Rc<Cell<u32>>, impl FnOnce(&Resolver<()>) + 'static) {
    let count = Rc::new(Cell::new(0));
    let c = count.clone();
    (count, move |_: &Resolver<()>| c.set(c.get() + 1))
}

// Twisted: DeferredCancellerTests.test_noCanceller
#[test]
fn no_canceller() {
    let (d, _r) = Deferred::<()>::new();
    let (d, seen) = record(d);
    d.cancel();
    assert_eq!(seen.errbacks.borrow().len(), 1);
    assert!(seen.errbacks.borrow()[0]
        .check::<CancelledError>()
        .is_some());
    assert!(seen.callbacks.borrow().is_empty());
}

// Twisted: DeferredCancellerTests.test_raisesAfterCancelAndCallback
#[test]
fn raises_after_cancel_and_callback() {
    let (d, r) = Deferred::<()>::new();
    let (d, seen) = record(d);
    d.cancel();
    // A single extra callback is swallowed.
    assert_eq!(r.callback(()), Ok(()));
    // But a second call to callback or errback is not.
    assert!(r.callback(()).is_err());
    assert!(r.errback(generic("late")).is_err());
    assert!(seen.callbacks.borrow().is_empty());
    assert_eq!(seen.errbacks.borrow().len(), 1);
}

// Twisted: DeferredCancellerTests.test_raisesAfterCancelAndErrback
#[test]
fn raises_after_cancel_and_errback() {
    let (d, r) = Deferred::<()>::new();
    let (d, seen) = record(d);
    d.cancel();
    assert_eq!(r.errback(generic("late")), Ok(()));
    assert!(r.callback(()).is_err());
    assert!(r.errback(generic("later")).is_err());
    assert_eq!(seen.errbacks.borrow().len(), 1);
    assert!(seen.errbacks.borrow()[0]
        .check::<CancelledError>()
        .is_some());
}

// Twisted: DeferredCancellerTests.test_noCancellerMultipleCancelsAfterCancelAndCallback
#[test]
fn no_canceller_multiple_cancels_after_cancel_and_callback() {
    let (d, r) = Deferred::<()>::new();
    let (d, seen) = record(d);
    d.cancel();
    let current = seen.errbacks.borrow()[0].clone();
    r.callback(()).unwrap();
    d.cancel();
    assert_eq!(seen.errbacks.borrow().len(), 1);
    assert!(Failure::ptr_eq(&current, &seen.errbacks.borrow()[0]));
    assert!(seen.callbacks.borrow().is_empty());
}

// Twisted: DeferredCancellerTests.test_noCancellerMultipleCancelsAfterCancelAndErrback
#[test]
fn no_canceller_multiple_cancels_after_cancel_and_errback() {
    let (d, r) = Deferred::<()>::new();
    let (d, seen) = record(d);
    d.cancel();
    assert!(seen.errbacks.borrow()[0]
        .check::<CancelledError>()
        .is_some());
    r.errback(generic("ignored")).unwrap();
    // We still have the CancelledError only.
    assert_eq!(seen.errbacks.borrow().len(), 1);
    assert!(seen.errbacks.borrow()[0]
        .check::<CancelledError>()
        .is_some());
    d.cancel();
    assert_eq!(seen.errbacks.borrow().len(), 1);
}

// Twisted: DeferredCancellerTests.test_noCancellerMultipleCancel
#[test]
fn no_canceller_multiple_cancel() {
    let (d, r) = Deferred::<()>::new();
    let (d, seen) = record(d);
    d.cancel();
    d.cancel();
    d.cancel();
    assert_eq!(seen.errbacks.borrow().len(), 1);
    assert!(seen.errbacks.borrow()[0]
        .check::<CancelledError>()
        .is_some());
    // Repeated cancels did not use up the one swallowed fire.
    assert_eq!(r.callback(()), Ok(()));
    assert!(r.callback(()).is_err());
}

// Twisted: DeferredCancellerTests.test_cancellerMultipleCancel
#[test]
fn canceller_multiple_cancel() {
    let (count, canceller) = counting();
    let (d, _r) = Deferred::with_canceller(canceller);
    let (d, seen) = record(d);
    d.cancel();
    assert!(seen.errbacks.borrow()[0]
        .check::<CancelledError>()
        .is_some());
    let current = seen.errbacks.borrow()[0].clone();
    d.cancel();
    assert!(Failure::ptr_eq(&current, &seen.errbacks.borrow()[0]));
    assert_eq!(seen.errbacks.borrow().len(), 1);
    assert_eq!(count.get(), 1);
}

// Twisted: DeferredCancellerTests.test_simpleCanceller
#[test]
fn simple_canceller() {
    let (count, canceller) = counting();
    let (d, r) = Deferred::with_canceller(canceller);
    let (d, seen) = record(d);
    d.cancel();
    assert_eq!(count.get(), 1);
    assert!(seen.errbacks.borrow()[0]
        .check::<CancelledError>()
        .is_some());
    // Further callbacks/errbacks are *not* swallowed.
    assert!(r.callback(()).is_err());
    assert!(r.errback(generic("x")).is_err());
}

// Twisted: DeferredCancellerTests.test_cancellerArg
#[test]
fn canceller_arg() {
    let given: Rc<RefCell<Option<String>>> = Rc::new(RefCell::new(None));
    let g = given.clone();
    let (d, _r) = Deferred::<()>::with_canceller(move |r| *g.borrow_mut() = Some(format!("{r:?}")));
    let expected = format!("Resolver({d:?})");
    d.cancel();
    assert_eq!(given.borrow().as_deref(), Some(expected.as_str()));
}

// Twisted: DeferredCancellerTests.test_cancelAfterCallback
#[test]
fn cancel_after_callback() {
    let count = Rc::new(Cell::new(0));
    let c = count.clone();
    let (d, r) = Deferred::<&str>::with_canceller(move |r| {
        c.set(c.get() + 1);
        let _ = r.errback(generic("from canceller"));
    });
    let (d, seen) = record(d);
    r.callback("biff!").unwrap();
    d.cancel();
    assert_eq!(count.get(), 0);
    assert!(seen.errbacks.borrow().is_empty());
    assert_eq!(*seen.callbacks.borrow(), vec!["biff!"]);
}

// Twisted: DeferredCancellerTests.test_cancelAfterErrback
#[test]
fn cancel_after_errback() {
    let count = Rc::new(Cell::new(0));
    let c = count.clone();
    let (d, r) = Deferred::<()>::with_canceller(move |r| {
        c.set(c.get() + 1);
        let _ = r.errback(generic("from canceller"));
    });
    let (d, seen) = record(d);
    r.errback(generic("first")).unwrap();
    d.cancel();
    assert_eq!(count.get(), 0);
    assert_eq!(seen.errbacks.borrow().len(), 1);
    assert_eq!(
        seen.errbacks.borrow()[0].check::<GenericError>(),
        Some(&generic("first"))
    );
    assert!(seen.callbacks.borrow().is_empty());
}

// Twisted: DeferredCancellerTests.test_cancellerThatErrbacks
#[test]
fn canceller_that_errbacks() {
    let count = Rc::new(Cell::new(0));
    let c = count.clone();
    let (d, _r) = Deferred::<()>::with_canceller(move |r| {
        c.set(c.get() + 1);
        r.errback(generic("canceller error")).unwrap();
    });
    let (d, seen) = record(d);
    d.cancel();
    assert_eq!(count.get(), 1);
    assert_eq!(seen.errbacks.borrow().len(), 1);
    assert!(seen.errbacks.borrow()[0].check::<GenericError>().is_some());
    assert!(seen.errbacks.borrow()[0]
        .check::<CancelledError>()
        .is_none());
}

// Twisted: DeferredCancellerTests.test_cancellerThatCallbacks
#[test]
fn canceller_that_callbacks() {
    let count = Rc::new(Cell::new(0));
    let c = count.clone();
    let (d, _r) = Deferred::<&str>::with_canceller(move |r| {
        c.set(c.get() + 1);
        r.callback("hello!").unwrap();
    });
    let (d, seen) = record(d);
    d.cancel();
    assert_eq!(count.get(), 1);
    assert_eq!(*seen.callbacks.borrow(), vec!["hello!"]);
    assert!(seen.errbacks.borrow().is_empty());
}

// Twisted: DeferredCancellerTests.test_cancelNestedDeferred
#[test]
fn cancel_nested_deferred() {
    let (inner_count, inner_cancel) = counting();
    let outer_cancelled = Rc::new(Cell::new(false));
    let oc = outer_cancelled.clone();
    let (b, _rb) = Deferred::<()>::with_canceller(inner_cancel);
    let (a, ra) = Deferred::<()>::with_canceller(move |_| oc.set(true));
    ra.callback(()).unwrap();
    let a = a.add_callback_deferred(move |()| b);
    a.cancel();
    let (_a, seen) = record(a);
    assert!(
        !outer_cancelled.get(),
        "the outer canceller must not run: it already fired"
    );
    // The cancel count is one: the cancellation done by b.
    assert_eq!(inner_count.get(), 1);
    // b's canceller did not errback, so b (and with it a) got CancelledError.
    assert_eq!(seen.errbacks.borrow().len(), 1);
    assert!(seen.errbacks.borrow()[0]
        .check::<CancelledError>()
        .is_some());
}

// Cancelling through two levels of chaining reaches the innermost Deferred.
#[test]
fn cancel_propagates_through_nested_chains() {
    let (c_count, c_cancel) = counting();
    let (c, _rc) = Deferred::<()>::with_canceller(c_cancel);
    let (b, rb) = Deferred::<()>::new();
    let b = b.add_callback_deferred(move |()| c);
    let (a, ra) = Deferred::<()>::new();
    let a = a.add_callback_deferred(move |()| b);
    rb.callback(()).unwrap();
    ra.callback(()).unwrap();
    a.cancel();
    assert_eq!(c_count.get(), 1);
    let f = a.into_result().unwrap().unwrap_err();
    assert!(f.check::<CancelledError>().is_some());
}

// A panicking canceller is logged, and the Deferred still fails with CancelledError.
#[test]
fn panicking_canceller_is_logged_and_still_cancels() {
    let ((), logs) = capture_logs(|| {
        let (d, _r) = Deferred::<()>::with_canceller(|_| panic!("canceller blew up"));
        let (d, seen) = record(d);
        d.cancel();
        assert_eq!(seen.errbacks.borrow().len(), 1);
        assert!(seen.errbacks.borrow()[0]
            .check::<CancelledError>()
            .is_some());
    });
    let logged = with_prefix(&logs, "Exception raised from user supplied canceller");
    assert_eq!(logged.len(), 1, "{logs:?}");
    assert_eq!(logged[0].level, tracing::Level::ERROR);
    assert!(
        logged[0]
            .field("failure")
            .unwrap_or("")
            .contains("canceller blew up"),
        "{logs:?}"
    );
}

// A canceller's result wins even if it fires the Deferred and then panics.
#[test]
fn canceller_that_callbacks_then_panics_keeps_its_result() {
    let (d, _r) = Deferred::<&str>::with_canceller(|r| {
        r.callback("fired first").unwrap();
        panic!("then panicked");
    });
    let (d, seen) = record(d);
    d.cancel();
    assert_eq!(*seen.callbacks.borrow(), vec!["fired first"]);
    assert!(seen.errbacks.borrow().is_empty());
    drop(d);
}

/// The canceller holds a resolver of its own Deferred (a reference cycle) and
/// a sentinel whose weak count tells whether the canceller was freed.
fn cyclic_canceller() -> (Deferred<()>, Resolver<()>, std::rc::Weak<()>) {
    let sentinel = Rc::new(());
    let weak = Rc::downgrade(&sentinel);
    let slot: Rc<RefCell<Option<Resolver<()>>>> = Rc::new(RefCell::new(None));
    let s = slot.clone();
    let (d, r) = Deferred::<()>::with_canceller(move |_| {
        let _keep = (&sentinel, &s);
    });
    *slot.borrow_mut() = Some(r.clone());
    (d, r, weak)
}

// Twisted: DeferredTests.test_canceller_circular_reference_callback
#[test]
fn canceller_circular_reference_callback() {
    let (d, r, weak) = cyclic_canceller();
    assert!(weak.upgrade().is_some());
    r.callback(()).unwrap();
    drop((d, r));
    assert!(
        weak.upgrade().is_none(),
        "the canceller must be freed once the Deferred fired"
    );
}

// Twisted: DeferredTests.test_canceller_circular_reference_errback
#[test]
fn canceller_circular_reference_errback() {
    let (d, r, weak) = cyclic_canceller();
    r.errback(generic("The test demands failures.")).unwrap();
    let f = d.into_result().unwrap().unwrap_err();
    assert!(f.check::<GenericError>().is_some());
    drop(r);
    assert!(weak.upgrade().is_none());
}

// Twisted: DeferredTests.test_canceller_circular_reference_non_final
#[test]
fn canceller_circular_reference_non_final() {
    let (d, r, weak) = cyclic_canceller();
    let (pending, _keep) = Deferred::<()>::new();
    let d = d.add_callback_deferred(move |()| pending);
    r.callback(()).unwrap();
    drop((d, r));
    assert!(weak.upgrade().is_none());
}

// The late fire that a cancel without canceller swallows does not reach callbacks.
#[test]
fn swallowed_fire_does_not_reach_callbacks() {
    let calls: Log<String> = new_log();
    let (d, r) = Deferred::<u8>::new();
    let c = calls.clone();
    let d = d.add_both(move |res| {
        c.borrow_mut().push(match &res {
            Ok(v) => format!("ok {v}"),
            Err(f) if f.check::<CancelledError>().is_some() => "cancelled".to_owned(),
            Err(f) => format!("err {f}"),
        });
        Ok(())
    });
    d.cancel();
    r.callback(1).unwrap();
    assert_eq!(*calls.borrow(), vec!["cancelled".to_owned()]);
    let err: AlreadyCalledError = r.callback(2).unwrap_err();
    assert_eq!(err.fired_again.line(), line!() - 1);
}
