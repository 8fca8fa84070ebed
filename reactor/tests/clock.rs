//! The fake clock: ports of the behaviour Twisted's `task.Clock` tests
//! (`src/twisted/test/test_task.py`, `ClockTests`) check, as
//! `twisted.internet.task.Clock` implements it, and its use as the clock of `Deferred::add_timeout`
//! (`test_defer.py`'s `DeferredAddTimeoutTests` use a `Clock`).

mod common;

use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::time::Duration;

use common::Events;
use deferred::{CancelledError, Deferred, ReactorTime, TimeoutError};
use reactor::testing::Clock;
use reactor::{DelayedCall, DelayedCallError};

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

// Ports ClockTests.testSeconds: a new clock is at 0.
#[test]
fn test_seconds() {
    let clock = Clock::new();
    assert_eq!(clock.seconds(), 0.0);
    assert_eq!(ReactorTime::seconds(&clock), 0.0);
    assert_eq!(Clock::default().seconds(), 0.0);
}

// Ports ClockTests.testCallLater: the call is due at now + delay, active,
// and listed as pending.
#[test]
fn test_call_later() {
    let clock = Clock::new();
    let call = clock.call_later(secs(1.0), || ());
    assert_eq!(call.get_time(), 1.0);
    assert!(call.active());
    let listed = clock.get_delayed_calls();
    assert_eq!(listed.len(), 1);
    assert!(DelayedCall::ptr_eq(&listed[0], &call));
}

// Ports ClockTests.testCallLaterCancelled.
#[test]
fn test_call_later_cancelled() {
    let clock = Clock::new();
    let events = Events::new();
    let call = clock.call_later(secs(1.0), events.pusher("called"));
    call.cancel().unwrap();
    assert!(!call.active());
    clock.advance(1.0);
    assert!(events.get().is_empty());
}

// Ports ClockTests.test_callLaterOrdering (each call_later returns a new
// call), plus the time order in which due calls run.
#[test]
fn test_call_later_ordering() {
    let clock = Clock::new();
    let events = Events::new();
    let call1 = clock.call_later(secs(10.0), events.pusher(10));
    let call2 = clock.call_later(secs(1.0), events.pusher(1));
    assert!(!DelayedCall::ptr_eq(&call1, &call2));
    clock.call_later(secs(5.0), events.pusher(5));
    clock.advance(20.0);
    assert_eq!(events.get(), [1, 5, 10]);
}

// Ports ClockTests.testAdvance: advance moves time and runs what is due, and
// only that.
#[test]
fn test_advance() {
    let clock = Clock::new();
    let events = Events::new();
    let call = clock.call_later(secs(2.0), events.pusher("called"));
    clock.advance(1.0);
    assert_eq!(clock.seconds(), 1.0);
    assert!(events.get().is_empty());
    assert!(call.active());
    clock.advance(1.0);
    assert_eq!(clock.seconds(), 2.0);
    assert_eq!(events.get(), ["called"]);
    assert!(!call.active() && call.called());
    assert!(clock.get_delayed_calls().is_empty());
}

// Ports ClockTests.testAdvanceCancel: cancelling a call from inside its own
// function is AlreadyCalled (called is set before the function runs).
#[test]
fn test_advance_cancel() {
    let clock = Clock::new();
    let slot: Rc<RefCell<Option<DelayedCall>>> = Rc::new(RefCell::new(None));
    let result = Rc::new(Cell::new(None));
    let (s, r) = (Rc::clone(&slot), Rc::clone(&result));
    let call = clock.call_later(secs(1.0), move || {
        let me = s.borrow_mut().take().expect("stored before advance");
        r.set(Some(me.cancel()));
    });
    *slot.borrow_mut() = Some(call);
    clock.advance(1.0);
    assert_eq!(result.get(), Some(Err(DelayedCallError::AlreadyCalled)));
}

// Ports ClockTests.testCallLaterDelayed.
#[test]
fn test_call_later_delayed() {
    let clock = Clock::new();
    let events = Events::new();
    let call = clock.call_later(secs(1.0), events.pusher((1, 2)));
    call.delay(1.0).unwrap();
    assert_eq!(call.get_time(), 2.0);
    clock.advance(1.5);
    assert!(events.get().is_empty());
    clock.advance(1.0);
    assert_eq!(events.get(), [(1, 2)]);
}

// Ports ClockTests.testCallLaterResetLater.
#[test]
fn test_call_later_reset_later() {
    let clock = Clock::new();
    let events = Events::new();
    let call = clock.call_later(secs(2.0), events.pusher((1, 2)));
    clock.advance(1.0);
    call.reset(secs(3.0)).unwrap();
    assert_eq!(call.get_time(), 4.0);
    clock.advance(2.0);
    assert!(events.get().is_empty(), "ran at its old time");
    clock.advance(1.0);
    assert_eq!(events.get(), [(1, 2)]);
}

// Ports ClockTests.testCallLaterResetSooner.
#[test]
fn test_call_later_reset_sooner() {
    let clock = Clock::new();
    let events = Events::new();
    let call = clock.call_later(secs(4.0), events.pusher((1, 2)));
    call.reset(secs(3.0)).unwrap();
    assert_eq!(call.get_time(), 3.0);
    clock.advance(3.0);
    assert_eq!(events.get(), [(1, 2)]);
}

// Ports ClockTests.test_getDelayedCalls, plus `twisted.internet.task.Clock`: cancel removes
// a call from the list.
#[test]
fn test_get_delayed_calls() {
    let clock = Clock::new();
    let a = clock.call_later(secs(1.0), || ());
    let b = clock.call_later(secs(2.0), || ());
    let listed = clock.get_delayed_calls();
    assert_eq!(listed.len(), 2);
    assert!(DelayedCall::ptr_eq(&listed[0], &a));
    assert!(DelayedCall::ptr_eq(&listed[1], &b));
    a.cancel().unwrap();
    let listed = clock.get_delayed_calls();
    assert_eq!(listed.len(), 1);
    assert!(DelayedCall::ptr_eq(&listed[0], &b));
    assert_eq!(a.cancel(), Err(DelayedCallError::AlreadyCancelled));
}

// Ports ClockTests.test_getDelayedCallsEmpty.
#[test]
fn test_get_delayed_calls_empty() {
    assert!(Clock::new().get_delayed_calls().is_empty());
}

/// Records `(name, clock time)` when called: Twisted's `logtime`.
fn logtime(
    clock: &Clock,
    result: &Rc<RefCell<Vec<(&'static str, f64)>>>,
    name: &'static str,
) -> impl FnOnce() + 'static {
    let (c, r) = (clock.clone(), Rc::clone(result));
    move || r.borrow_mut().push((name, c.seconds()))
}

// Ports ClockTests.test_callLaterKeepsCallsOrdered.
#[test]
fn test_call_later_keeps_calls_ordered() {
    let clock = Clock::new();
    let result = Rc::new(RefCell::new(Vec::new()));
    let call_a = clock.call_later(secs(1.0), logtime(&clock, &result, "a"));
    call_a.reset(secs(3.0)).unwrap();
    clock.call_later(secs(2.0), logtime(&clock, &result, "b"));
    clock.pump(&[1.0; 3]);
    assert_eq!(*result.borrow(), [("b", 2.0), ("a", 3.0)]);
}

// Ports ClockTests.test_callLaterResetKeepsCallsOrdered.
#[test]
fn test_call_later_reset_keeps_calls_ordered() {
    let clock = Clock::new();
    let result = Rc::new(RefCell::new(Vec::new()));
    let call_a = clock.call_later(secs(1.0), logtime(&clock, &result, "a"));
    clock.call_later(secs(2.0), logtime(&clock, &result, "b"));
    call_a.reset(secs(3.0)).unwrap();
    clock.pump(&[1.0; 3]);
    assert_eq!(*result.borrow(), [("b", 2.0), ("a", 3.0)]);
}

// Ports ClockTests.test_callLaterResetInsideCallKeepsCallsOrdered.
#[test]
fn test_call_later_reset_inside_call_keeps_calls_ordered() {
    let clock = Clock::new();
    let result = Rc::new(RefCell::new(Vec::new()));
    let call_b = clock.call_later(secs(2.0), logtime(&clock, &result, "b"));
    clock.call_later(secs(1.0), move || call_b.reset(secs(3.0)).unwrap());
    clock.call_later(secs(3.0), logtime(&clock, &result, "c"));
    clock.pump(&[0.5; 10]);
    assert_eq!(*result.borrow(), [("c", 3.0), ("b", 4.0)]);
}

// Ports the tie rule of `twisted.internet.task.Clock` ("the sort is stable, so ties run
// FIFO"): calls due at the same time run in scheduling order, also when one
// got there through a reset.
#[test]
fn test_ties_run_fifo() {
    let clock = Clock::new();
    let events = Events::new();
    for i in 0..10 {
        clock.call_later(secs(1.0), events.pusher(i));
    }
    let moved = clock.call_later(secs(3.0), events.pusher(10));
    moved.reset(secs(1.0)).unwrap();
    clock.advance(1.0);
    assert_eq!(events.get(), (0..=10).collect::<Vec<_>>());
}

// Ports `twisted.internet.task.Clock` `pump`: advance by each amount in turn.
#[test]
fn test_pump() {
    let clock = Clock::new();
    let seen = Rc::new(Cell::new(None));
    let (s, c) = (Rc::clone(&seen), clock.clone());
    clock.call_later(secs(2.0), move || s.set(Some(c.seconds())));
    clock.pump(&[1.0, 1.0, 1.0]);
    assert_eq!(clock.seconds(), 3.0);
    // It ran at the end of the second step, seeing that step's time.
    assert_eq!(seen.get(), Some(2.0));
    clock.pump(&[]);
    assert_eq!(clock.seconds(), 3.0);
}

// Ports `twisted.internet.task.Clock`: a call scheduled with delay 0 during advance runs in
// the same advance (unlike the real reactor, which waits for the next turn).
#[test]
fn test_call_later_zero_during_advance_runs_in_same_advance() {
    let clock = Clock::new();
    let events = Events::new();
    let (c, e) = (clock.clone(), events.clone());
    clock.call_later(secs(1.0), move || {
        e.push("outer");
        let c2 = c.clone();
        let e2 = e.clone();
        c.call_later(Duration::ZERO, move || {
            e2.push("inner");
            // And a call made now that is due only later waits.
            c2.call_later(secs(1.0), e2.pusher("later"));
        });
    });
    clock.advance(1.0);
    assert_eq!(events.get(), ["outer", "inner"]);
    assert_eq!(clock.get_delayed_calls().len(), 1);
    clock.advance(1.0);
    assert_eq!(events.get(), ["outer", "inner", "later"]);
}

// Ports `twisted.internet.task.Clock` ("exceptions propagate out of advance; they are not
// logged"): a panic escapes advance, and the calls still due run on the next
// advance.
#[test]
fn test_panics_propagate_out_of_advance() {
    let clock = Clock::new();
    let events = Events::new();
    clock.call_later(secs(1.0), events.pusher("first"));
    let boom = clock.call_later(secs(1.0), || panic!("call exploded"));
    clock.call_later(secs(1.0), events.pusher("third"));
    let err = catch_unwind(AssertUnwindSafe(|| clock.advance(1.0))).unwrap_err();
    let msg = err
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| err.downcast_ref::<String>().map(String::as_str))
        .unwrap_or_default();
    assert_eq!(msg, "call exploded");
    assert_eq!(events.get(), ["first"]);
    assert!(boom.called());
    assert_eq!(clock.get_delayed_calls().len(), 1);
    clock.advance(0.0);
    assert_eq!(events.get(), ["first", "third"]);
}

// Ports DeferredAddTimeoutTests.test_timedOut (`twisted.internet.task.Clock`, `Deferred.addTimeout`): a Clock
// serves as Deferred::add_timeout's clock; the Deferred times out after
// exactly the timeout.
#[test]
fn test_timed_out() {
    let clock = Clock::new();
    let (d, _fire) = Deferred::<u32>::new();
    let d = d.add_timeout(secs(5.0), &clock);
    assert_eq!(clock.get_delayed_calls().len(), 1);
    clock.advance(4.9);
    assert!(!d.has_result());
    clock.advance(0.1);
    let failure = d.into_result().expect("fired").unwrap_err();
    assert_eq!(
        failure.check::<TimeoutError>(),
        Some(&TimeoutError { timeout: secs(5.0) })
    );
    assert!(clock.get_delayed_calls().is_empty());
}

// Ports DeferredAddTimeoutTests.test_successResultBeforeTimeout: a Deferred
// that fires before its timeout keeps its result and cancels the timeout
// call, so nothing is left on the clock.
#[test]
fn test_success_result_before_timeout() {
    let clock = Clock::new();
    let (d, fire) = Deferred::<u32>::new();
    let d = d.add_timeout(secs(5.0), &clock);
    let call = clock.get_delayed_calls().pop().expect("the timeout call");
    clock.advance(1.0);
    fire.callback(7).unwrap();
    assert!(call.cancelled());
    assert!(clock.get_delayed_calls().is_empty());
    clock.advance(10.0);
    assert_eq!(d.into_result().expect("fired").unwrap(), 7);
}

// Ports DeferredAddTimeoutTests.test_cancelBeforeTimeout: a manual cancel
// before the timeout keeps the plain CancelledError and removes the timeout
// call.
#[test]
fn test_cancel_before_timeout() {
    let clock = Clock::new();
    let (d, _fire) = Deferred::<u32>::new();
    let d = d.add_timeout(secs(5.0), &clock);
    d.cancel();
    let failure = d.into_result().expect("fired").unwrap_err();
    assert!(failure.check::<CancelledError>().is_some());
    assert!(failure.check::<TimeoutError>().is_none());
    assert!(clock.get_delayed_calls().is_empty());
}

// Ports ClockTests.test_providesIReactorTime: the Clock is a ReactorTime; call_later through the
// trait object schedules on the same clock, and its handle cancels.
#[test]
fn test_provides_ireactor_time() {
    let clock = Clock::new();
    let events = Events::new();
    let time: &dyn ReactorTime = &clock;
    let kept = time.call_later_boxed(secs(1.0), Box::new(events.pusher("kept")));
    let dropped = time.call_later_boxed(secs(1.0), Box::new(events.pusher("cancelled")));
    assert!(kept.active() && dropped.active());
    dropped.cancel();
    assert!(!dropped.active());
    assert_eq!(clock.get_delayed_calls().len(), 1);
    clock.advance(1.0);
    assert_eq!(events.get(), ["kept"]);
    assert!(!kept.active());
    // The trait's cancel is a no-op on a call that already ran.
    kept.cancel();
}
