//! Port of Twisted's test_defer.py `LogTests` (and the logging halves of
//! `DeferredTests.test_synchronousImplicitErrorChain` /
//! `test_asynchronousImplicitErrorChain`): a Deferred whose last result is a
//! failure nobody handled logs "Unhandled error in Deferred" at error level
//! when its last handle is dropped (Twisted: when it is garbage-collected),
//! exactly once, and not at all once the failure was handled, taken, or
//! handed to another Deferred.

mod common;

use common::{generic, unhandled, GenericError};
use deferred::{fail, succeed, Deferred, Failure, Resolver};
use test_support::logs::{capture_logs, Logged};
use tracing::Level;

/// Asserts exactly one unhandled-error event carrying `text`.
fn assert_logged_once(logs: &[Logged], text: &str) {
    let events = unhandled(logs);
    assert_eq!(events.len(), 1, "{logs:?}");
    assert_eq!(events[0].level, Level::ERROR);
    assert!(
        events[0].field("failure").unwrap_or("").contains(text),
        "the failure field names the error: {logs:?}"
    );
    assert!(events[0].message.contains(text), "{logs:?}");
}

fn assert_not_logged(logs: &[Logged]) {
    assert!(unhandled(logs).is_empty(), "{logs:?}");
}

// Twisted: LogTests.test_errorLog
#[test]
fn error_log() {
    // Firing alone logs nothing; dropping the last handle does.
    let (r, logs) = capture_logs(|| {
        let (d, r) = Deferred::<i32>::new();
        let _ = d.add_callback_result(|x| -> Result<i32, Failure> {
            if x == 1 {
                Err(Failure::new(generic("integer division by zero")))
            } else {
                Ok(x)
            }
        });
        r.callback(1).unwrap();
        r
    });
    assert_not_logged(&logs);
    let ((), logs) = capture_logs(move || drop(r));
    assert_logged_once(&logs, "integer division by zero");
}

fn sub_error_log_with_inner_frame_ref() {
    let (d, r) = Deferred::<i32>::new();
    let _ = d.add_callback_result(|_| -> Result<i32, Failure> {
        Err(Failure::new(generic("inner frame")))
    });
    r.callback(1).unwrap();
}

// Twisted: LogTests.test_errorLogWithInnerFrameRef
#[test]
fn error_log_with_inner_frame_ref() {
    let ((), logs) = capture_logs(sub_error_log_with_inner_frame_ref);
    assert_logged_once(&logs, "inner frame");
}

fn sub_error_log_with_inner_frame_cycle() {
    let (d, r) = Deferred::<i32>::new();
    // The callback holds a resolver of its own Deferred: a reference cycle,
    // broken once the callback has run.
    let me: Resolver<i32> = r.clone();
    let _ = d.add_callback_result(move |_| -> Result<i32, Failure> {
        let _cycle = &me;
        Err(Failure::new(generic("cycle")))
    });
    r.callback(1).unwrap();
}

// Twisted: LogTests.test_errorLogWithInnerFrameCycle
#[test]
fn error_log_with_inner_frame_cycle() {
    let ((), logs) = capture_logs(sub_error_log_with_inner_frame_cycle);
    assert_logged_once(&logs, "cycle");
}

// Twisted: LogTests.test_errorLogNoRepr (the message is the traceback text)
#[test]
fn error_log_no_repr() {
    let (line, logs) = capture_logs(|| {
        let (d, r) = Deferred::<()>::new();
        let line = line!() + 1;
        let failure = Failure::new(generic("no repr"));
        let _ = d.add_callback_result(move |()| -> Result<(), Failure> { Err(failure) });
        r.callback(()).unwrap();
        line
    });
    assert_logged_once(&logs, "no repr");
    let msg = &unhandled(&logs)[0].message;
    assert!(msg.starts_with("Unhandled error in Deferred"), "{msg}");
    // The traceback names the error type and where the failure was created.
    assert!(msg.contains("GenericError"), "{msg}");
    assert!(msg.contains(&format!("{}:{line}:", file!())), "{msg}");
}

// Many handles, one Deferred: logged once, when the last one goes.
#[test]
fn error_logged_exactly_once_with_many_handles() {
    let (handles, logs) = capture_logs(|| {
        let (d, r) = Deferred::<()>::new();
        let r2 = r.clone();
        r.errback(generic("only once")).unwrap();
        (d, r, r2)
    });
    assert_not_logged(&logs);
    let (d, r, r2) = handles;
    let ((), logs) = capture_logs(move || {
        drop(r);
        drop(d);
        drop(r2);
    });
    assert_logged_once(&logs, "only once");
}

// fail() with nobody to handle it.
#[test]
fn immediate_failure_dropped_is_logged() {
    let ((), logs) = capture_logs(|| drop(fail::<()>(generic("dropped"))));
    assert_logged_once(&logs, "dropped");
}

// Not logged once an errback recovered.
#[test]
fn not_logged_after_errback_recovery() {
    let ((), logs) = capture_logs(|| {
        let _ = fail::<i32>(generic("handled")).add_errback(|_| Ok(0));
    });
    assert_not_logged(&logs);
}

// Still logged when the last errback passed the failure on.
#[test]
fn logged_when_errback_passes_failure_on() {
    let ((), logs) = capture_logs(|| {
        let _ = fail::<i32>(generic("passed on")).add_errback(Err);
    });
    assert_logged_once(&logs, "passed on");
}

// Not logged once into_result() took the failure.
#[test]
fn not_logged_after_into_result() {
    let ((), logs) = capture_logs(|| {
        let f = fail::<()>(generic("taken"))
            .into_result()
            .unwrap()
            .unwrap_err();
        assert!(f.check::<GenericError>().is_some());
    });
    assert_not_logged(&logs);
}

// Success and never-fired Deferreds log nothing.
#[test]
fn not_logged_for_success_or_unfired() {
    let ((), logs) = capture_logs(|| {
        drop(succeed(1));
        drop(Deferred::<()>::new());
        let (d, r) = Deferred::<()>::with_canceller(|_| {});
        drop((d, r));
    });
    assert_not_logged(&logs);
}

// Twisted: LogTests.test_chainedErrorCleanup
#[test]
fn chained_error_cleanup() {
    let ((), logs) = capture_logs(|| {
        let (d, r) = Deferred::<()>::new();
        let errors = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let e = errors.clone();
        let _ = d
            .add_callback_deferred(|()| fail::<()>(generic("zoop")))
            .add_errback(move |f| {
                e.borrow_mut().push(f);
                Ok(())
            });
        r.callback(()).unwrap();
        assert_eq!(errors.borrow().len(), 1);
        assert!(errors.borrow()[0].check::<GenericError>().is_some());
    });
    assert_not_logged(&logs);
}

// Twisted: DeferredTests.test_synchronousImplicitErrorChain (logging half): the
// inner Deferred whose failure was taken does not log it; the outer, which
// did not handle it, logs it once.
#[test]
fn synchronous_implicit_error_chain_logs_once_from_outer() {
    let ((), logs) = capture_logs(|| {
        let first = fail::<()>(generic("First Deferred's Failure"));
        let (second, r) = Deferred::<()>::new();
        let _ = second.add_callback_deferred(move |()| first);
        r.callback(()).unwrap();
    });
    assert_logged_once(&logs, "First Deferred's Failure");
}

// Twisted: DeferredTests.test_asynchronousImplicitErrorChain (logging half)
#[test]
fn asynchronous_implicit_error_chain_not_logged() {
    let ((), logs) = capture_logs(|| {
        let (first, rf) = Deferred::<()>::new();
        let (second, rs) = Deferred::<()>::new();
        let _ = second
            .add_callback_deferred(move |()| first)
            .add_errback(|f| {
                f.trap::<GenericError>()?;
                Ok(())
            });
        rs.callback(()).unwrap();
        rf.errback(generic("First Deferred's Failure")).unwrap();
    });
    assert_not_logged(&logs);
}

// Twisted: LogTests.test_errorClearedByChaining
#[test]
fn error_cleared_by_chaining() {
    let ((), logs) = capture_logs(|| {
        let bad = fail::<()>(generic("oh no"));
        let (good, good_r) = Deferred::<()>::new();
        let _ = bad.add_errback_deferred(move |_| good);
        drop(good_r);
    });
    assert_not_logged(&logs);
}

// A failure handed on through chain_deferred is logged by the target only.
#[test]
fn chain_deferred_hands_failure_to_target() {
    let ((), logs) = capture_logs(|| {
        let (target, tr) = Deferred::<()>::new();
        let _source = fail::<()>(generic("handed over")).chain_deferred(&tr);
        drop((target, tr));
    });
    assert_logged_once(&logs, "handed over");
}

// A Deferred dropped while it still waits on an inner one logs nothing.
#[test]
fn waiting_deferred_dropped_is_not_logged() {
    let ((), logs) = capture_logs(|| {
        let (inner, ri) = Deferred::<()>::new();
        let outer = fail::<()>(generic("ignored")).add_errback_deferred(move |_| inner);
        drop(outer);
        drop(ri);
    });
    assert_not_logged(&logs);
}
