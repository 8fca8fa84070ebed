//! Port of Twisted's test_defer.py `DeferredTests` pause tests
//! (`testPausedFailure`, `testUnpauseBeforeCallback`) plus the pause counter
//! rules of `Deferred.pause`/`unpause`: while paused, callbacks accumulate but do not run;
//! at zero a fired Deferred runs them.

mod common;

use common::{generic, new_log, GenericError, Log};
use deferred::{fail, succeed, Deferred, Failure};

// Twisted: DeferredTests.testPausedFailure
#[test]
fn paused_failure() {
    let errors: Log<Failure> = new_log();
    let d = fail::<()>(generic("fail"));
    d.pause();
    let e = errors.clone();
    let d = d.add_errback(move |f| {
        e.borrow_mut().push(f);
        Ok(())
    });
    assert!(errors.borrow().is_empty());
    d.unpause();
    assert_eq!(errors.borrow().len(), 1);
    assert_eq!(
        errors.borrow()[0].check::<GenericError>(),
        Some(&generic("fail"))
    );
}

// Twisted: DeferredTests.testUnpauseBeforeCallback
#[test]
fn unpause_before_callback() {
    let seen: Log<i32> = new_log();
    let (d, r) = Deferred::<i32>::new();
    d.pause();
    let s = seen.clone();
    let d = d.add_callback(move |x| s.borrow_mut().push(x));
    d.unpause();
    // Unpausing an unfired Deferred runs nothing.
    assert!(seen.borrow().is_empty());
    assert_eq!(d.paused(), 0);
    r.callback(5).unwrap();
    assert_eq!(*seen.borrow(), vec![5]);
}

// Callbacks added to a paused, fired Deferred wait for unpause, then run in order.
#[test]
fn paused_success_accumulates_callbacks() {
    let seen: Log<String> = new_log();
    let d = succeed(1);
    d.pause();
    let (s1, s2) = (seen.clone(), seen.clone());
    let d = d
        .add_callback(move |x| {
            s1.borrow_mut().push(format!("a{x}"));
            x + 1
        })
        .add_callback(move |x| s2.borrow_mut().push(format!("b{x}")));
    assert!(seen.borrow().is_empty());
    assert!(
        !d.has_result(),
        "a paused Deferred's result cannot be taken"
    );
    d.unpause();
    assert_eq!(*seen.borrow(), vec!["a1".to_owned(), "b2".to_owned()]);
}

// Pausing before firing: the fire stores the result, the chain waits.
#[test]
fn pause_before_fire() {
    let seen: Log<i32> = new_log();
    let (d, r) = Deferred::<i32>::new();
    let s = seen.clone();
    let d = d.add_callback(move |x| s.borrow_mut().push(x));
    d.pause();
    r.callback(3).unwrap();
    assert!(d.called());
    assert!(seen.borrow().is_empty());
    d.unpause();
    assert_eq!(*seen.borrow(), vec![3]);
}

// Pauses nest: the chain runs only when every pause has been undone.
#[test]
fn nested_pause_counts() {
    let seen: Log<i32> = new_log();
    let (d, r) = Deferred::<i32>::new();
    let s = seen.clone();
    let d = d.add_callback(move |x| s.borrow_mut().push(x));
    d.pause();
    d.pause();
    assert_eq!(d.paused(), 2);
    r.callback(9).unwrap();
    d.unpause();
    assert_eq!(d.paused(), 1);
    assert!(seen.borrow().is_empty(), "still paused once");
    d.unpause();
    assert_eq!(d.paused(), 0);
    assert_eq!(*seen.borrow(), vec![9]);
}

// Unpausing a Deferred that is not paused does nothing (documented divergence
// from Twisted, whose counter goes negative): a later pause still holds.
#[test]
fn extra_unpause_is_a_no_op() {
    let seen: Log<i32> = new_log();
    let (d, r) = Deferred::<i32>::new();
    d.unpause();
    assert_eq!(d.paused(), 0);
    d.pause();
    assert_eq!(d.paused(), 1);
    let s = seen.clone();
    let d = d.add_callback(move |x| s.borrow_mut().push(x));
    r.callback(1).unwrap();
    assert!(seen.borrow().is_empty());
    d.unpause();
    assert_eq!(*seen.borrow(), vec![1]);
}

// A Deferred waiting on a chained Deferred counts that as a pause; an extra
// manual unpause must not run its callbacks before the inner Deferred fires.
#[test]
fn unpause_while_waiting_on_chained_deferred_does_not_run_early() {
    let seen: Log<&str> = new_log();
    let (outer, ro) = Deferred::<()>::new();
    let (inner, ri) = Deferred::<&str>::new();
    let s = seen.clone();
    let outer = outer
        .add_callback_deferred(move |()| inner)
        .add_callback(move |v| s.borrow_mut().push(v));
    ro.callback(()).unwrap();
    assert_eq!(outer.paused(), 1);
    outer.unpause();
    assert!(seen.borrow().is_empty());
    ri.callback("inner value").unwrap();
    assert_eq!(*seen.borrow(), vec!["inner value"]);
}

// A manual pause on top of a chain-pause: the inner firing alone is not enough.
#[test]
fn manual_pause_plus_chain_pause() {
    let seen: Log<u8> = new_log();
    let (outer, ro) = Deferred::<()>::new();
    let (inner, ri) = Deferred::<u8>::new();
    let s = seen.clone();
    let outer = outer
        .add_callback_deferred(move |()| inner)
        .add_callback(move |v| s.borrow_mut().push(v));
    ro.callback(()).unwrap();
    outer.pause();
    assert_eq!(outer.paused(), 2);
    ri.callback(4).unwrap();
    assert_eq!(outer.paused(), 1);
    assert!(seen.borrow().is_empty());
    outer.unpause();
    assert_eq!(*seen.borrow(), vec![4]);
}
