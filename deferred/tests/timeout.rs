//! Port of Twisted's test_defer.py `DeferredAddTimeoutTests` (all 18 tests),
//! driven by the deterministic fake clock in `common` (Twisted's
//! `task.Clock`). `_overrideFunc` becomes an `on_timeout_cancel` closure that
//! returns `"OVERRIDDEN"`.

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use common::{generic, new_log, Clock, GenericError, Log};
use deferred::{CancelledError, Deferred, Failure, ReactorTime, Resolver, TimeoutError};

const TEN: Duration = Duration::from_secs(10);

/// Twisted's `_overrideFunc`.
fn override_func<T>(
    _result: Result<T, Failure>,
    _timeout: Duration,
) -> Result<&'static str, Failure> {
    Ok("OVERRIDDEN")
}

/// Returns an unfired inner Deferred from a callback/errback added after the
/// timeout, and the inner's resolver to check it was never cancelled.
fn inner() -> (Deferred<()>, Resolver<()>) {
    Deferred::new()
}

// The fake clock itself: due calls run in time order, FIFO for ties, and
// cancelled calls never run.
#[test]
fn fake_clock_orders_calls() {
    let clock = Clock::new();
    let order: Log<&str> = new_log();
    let push = |name: &'static str| {
        let o = order.clone();
        Box::new(move || o.borrow_mut().push(name)) as Box<dyn FnOnce()>
    };
    let _c = clock.call_later_boxed(Duration::from_secs(3), push("c@3"));
    let _a = clock.call_later_boxed(Duration::from_secs(1), push("a@1"));
    let _b1 = clock.call_later_boxed(Duration::from_secs(2), push("b1@2"));
    let _b2 = clock.call_later_boxed(Duration::from_secs(2), push("b2@2"));
    let cancelled = clock.call_later_boxed(Duration::from_secs(2), push("cancelled"));
    cancelled.cancel();
    assert!(!cancelled.active());
    assert_eq!(clock.active_calls(), 4);
    clock.advance(2.5);
    assert_eq!(*order.borrow(), vec!["a@1", "b1@2", "b2@2"]);
    assert_eq!(clock.seconds(), 2.5);
    clock.advance(1.0);
    assert_eq!(*order.borrow(), vec!["a@1", "b1@2", "b2@2", "c@3"]);
    assert_eq!(clock.active_calls(), 0);
}

// Twisted: DeferredAddTimeoutTests.test_timeoutChainable
#[test]
fn timeout_chainable() {
    let clock = Clock::new();
    let (d, r) = Deferred::<()>::new();
    let d = d
        .add_timeout(Duration::from_secs(5), &clock)
        .add_callback(|()| "done");
    r.callback(()).unwrap();
    assert_eq!(d.into_result().unwrap().unwrap(), "done");
}

// Twisted: DeferredAddTimeoutTests.test_successResultBeforeTimeout
#[test]
fn success_result_before_timeout() {
    let clock = Clock::new();
    let (d, r) = Deferred::<&str>::new();
    let d = d.add_timeout(TEN, &clock);
    assert_eq!(clock.active_calls(), 1);
    let (inner, inner_r) = inner();
    let seen: Log<&str> = new_log();
    let s = seen.clone();
    let _d = d.add_callback_deferred(move |v| {
        s.borrow_mut().push(v);
        inner
    });
    r.callback("results").unwrap();
    // Callbacked immediately, before the inner Deferred is returned.
    assert_eq!(*seen.borrow(), vec!["results"]);
    // The timer was cancelled when the result arrived.
    assert_eq!(clock.active_calls(), 0);
    // The timeout never happens: had it, the inner Deferred would be cancelled.
    clock.advance(15.0);
    assert!(!inner_r.called());
}

// Twisted: DeferredAddTimeoutTests.test_successResultBeforeTimeoutCustom
#[test]
fn success_result_before_timeout_custom() {
    let clock = Clock::new();
    let (d, r) = Deferred::<&str>::new();
    let d = d.add_timeout_with(TEN, &clock, override_func);
    let (inner, inner_r) = inner();
    let seen: Log<&str> = new_log();
    let s = seen.clone();
    let _d = d.add_callback_deferred(move |v| {
        s.borrow_mut().push(v);
        inner
    });
    r.callback("results").unwrap();
    assert_eq!(*seen.borrow(), vec!["results"]);
    assert_eq!(clock.active_calls(), 0);
    clock.advance(15.0);
    assert!(!inner_r.called());
}

// Twisted: DeferredAddTimeoutTests.test_failureBeforeTimeout
#[test]
fn failure_before_timeout() {
    let clock = Clock::new();
    let (d, r) = Deferred::<()>::new();
    let d = d.add_timeout(TEN, &clock);
    let (inner, inner_r) = inner();
    let errors: Log<Failure> = new_log();
    let e = errors.clone();
    let _d = d.add_errback_deferred(move |f| {
        e.borrow_mut().push(f);
        inner
    });
    let error = Failure::new(generic("fail"));
    r.errback(error.clone()).unwrap();
    assert_eq!(errors.borrow().len(), 1);
    assert!(Failure::ptr_eq(&errors.borrow()[0], &error));
    assert_eq!(clock.active_calls(), 0);
    clock.advance(15.0);
    assert!(!inner_r.called());
}

// Twisted: DeferredAddTimeoutTests.test_failureBeforeTimeoutCustom
#[test]
fn failure_before_timeout_custom() {
    let clock = Clock::new();
    let (d, r) = Deferred::<&str>::new();
    let d = d.add_timeout_with(TEN, &clock, override_func);
    let (inner, inner_r) = Deferred::<&str>::new();
    let errors: Log<Failure> = new_log();
    let e = errors.clone();
    let _d = d.add_errback_deferred(move |f| {
        e.borrow_mut().push(f);
        inner
    });
    let error = Failure::new(generic("fail"));
    r.errback(error.clone()).unwrap();
    assert_eq!(errors.borrow().len(), 1);
    assert!(Failure::ptr_eq(&errors.borrow()[0], &error));
    clock.advance(15.0);
    assert!(!inner_r.called());
}

// Twisted: DeferredAddTimeoutTests.test_timedOut
#[test]
fn timed_out() {
    let clock = Clock::new();
    let (d, _r) = Deferred::<()>::new();
    let d = d.add_timeout(TEN, &clock);
    assert!(!d.called());
    clock.advance(9.0);
    assert!(!d.called(), "not yet due");
    clock.advance(6.0);
    let f = d.into_result().unwrap().unwrap_err();
    let err = f.check::<TimeoutError>().expect("a TimeoutError");
    assert_eq!(err.timeout, TEN);
    assert!(f.error_message().contains("10s"), "{}", f.error_message());
    assert!(f.check::<CancelledError>().is_none());
}

// Twisted: DeferredAddTimeoutTests.test_timedOutCustom
#[test]
fn timed_out_custom() {
    let clock = Clock::new();
    let (d, _r) = Deferred::<&str>::new();
    let d = d.add_timeout_with(TEN, &clock, override_func);
    assert!(!d.called());
    clock.advance(15.0);
    assert_eq!(d.into_result().unwrap().unwrap(), "OVERRIDDEN");
}

// The custom handler gets the cancellation result and the timeout.
#[test]
fn timed_out_custom_receives_result_and_timeout() {
    let clock = Clock::new();
    let got: Rc<RefCell<Option<(bool, Duration)>>> = Rc::new(RefCell::new(None));
    let g = got.clone();
    let (d, _r) = Deferred::<u32>::new();
    let d = d.add_timeout_with(Duration::from_millis(1500), &clock, move |res, t| {
        let cancelled = res
            .as_ref()
            .err()
            .and_then(|f| f.check::<CancelledError>())
            .is_some();
        *g.borrow_mut() = Some((cancelled, t));
        Ok(0)
    });
    clock.advance(1.5);
    assert_eq!(*got.borrow(), Some((true, Duration::from_millis(1500))));
    assert_eq!(d.into_result().unwrap().unwrap(), 0);
}

// Twisted: DeferredAddTimeoutTests.test_timedOutProvidedCancelSuccess
#[test]
fn timed_out_provided_cancel_success() {
    let clock = Clock::new();
    let (d, _r) = Deferred::<&str>::with_canceller(|c| c.callback("I was cancelled!").unwrap());
    let d = d.add_timeout(TEN, &clock);
    assert!(!d.called());
    clock.advance(15.0);
    assert_eq!(d.into_result().unwrap().unwrap(), "I was cancelled!");
}

// Twisted: DeferredAddTimeoutTests.test_timedOutProvidedCancelFailure
#[test]
fn timed_out_provided_cancel_failure() {
    let clock = Clock::new();
    let error = Failure::new(generic("what!"));
    let e = error.clone();
    let (d, _r) = Deferred::<()>::with_canceller(move |c| c.errback(e).unwrap());
    let d = d.add_timeout(TEN, &clock);
    clock.advance(15.0);
    let f = d.into_result().unwrap().unwrap_err();
    assert!(f.check::<GenericError>().is_some());
    assert!(
        Failure::ptr_eq(&f, &error),
        "the canceller's own failure passes through"
    );
}

// Twisted: DeferredAddTimeoutTests.test_cancelBeforeTimeout
#[test]
fn cancel_before_timeout() {
    let clock = Clock::new();
    let (d, _r) = Deferred::<()>::new();
    let d = d.add_timeout(TEN, &clock);
    let (inner, inner_r) = inner();
    let errors: Log<Failure> = new_log();
    let e = errors.clone();
    let d = d.add_errback_deferred(move |f| {
        e.borrow_mut().push(f);
        inner
    });
    d.cancel();
    // Cancelled at once, with the plain CancelledError.
    assert_eq!(errors.borrow().len(), 1);
    assert!(errors.borrow()[0].check::<CancelledError>().is_some());
    assert!(errors.borrow()[0].check::<TimeoutError>().is_none());
    assert_eq!(clock.active_calls(), 0);
    // The timeout never happens: had it, d would be cancelled again, cancelling inner.
    clock.advance(15.0);
    assert!(!inner_r.called());
}

// Twisted: DeferredAddTimeoutTests.test_cancelBeforeTimeoutCustom
#[test]
fn cancel_before_timeout_custom() {
    let clock = Clock::new();
    let (d, _r) = Deferred::<&str>::new();
    let d = d.add_timeout_with(TEN, &clock, override_func);
    let (inner, inner_r) = Deferred::<&str>::new();
    let errors: Log<Failure> = new_log();
    let e = errors.clone();
    let d = d.add_errback_deferred(move |f| {
        e.borrow_mut().push(f);
        inner
    });
    d.cancel();
    assert_eq!(errors.borrow().len(), 1);
    assert!(errors.borrow()[0].check::<CancelledError>().is_some());
    clock.advance(15.0);
    assert!(!inner_r.called());
}

// Twisted: DeferredAddTimeoutTests.test_providedCancelCalledBeforeTimeoutCustom
#[test]
fn provided_cancel_called_before_timeout_custom() {
    let clock = Clock::new();
    let (d, _r) = Deferred::<&str>::with_canceller(|c| c.errback(generic("what!")).unwrap());
    let d = d.add_timeout_with(TEN, &clock, override_func);
    assert!(!d.called());
    clock.advance(15.0);
    assert_eq!(d.into_result().unwrap().unwrap(), "OVERRIDDEN");
}

// Twisted: DeferredAddTimeoutTests.test_errbackAddedBeforeTimeout
#[test]
fn errback_added_before_timeout() {
    let clock = Clock::new();
    let (d, _r) = Deferred::<()>::new();
    let errors: Log<Failure> = new_log();
    let e = errors.clone();
    let d = d
        .add_errback(move |f| {
            e.borrow_mut().push(f.clone());
            Err(f)
        })
        .add_timeout(TEN, &clock);
    clock.advance(15.0);
    assert_eq!(errors.borrow().len(), 1);
    assert!(errors.borrow()[0].check::<CancelledError>().is_some());
    let f = d.into_result().unwrap().unwrap_err();
    assert!(f.check::<TimeoutError>().is_some());
}

// Twisted: DeferredAddTimeoutTests.test_errbackAddedBeforeTimeoutSuppressesCancellation
#[test]
fn errback_added_before_timeout_suppresses_cancellation() {
    let clock = Clock::new();
    let (d, _r) = Deferred::<()>::new();
    let errors: Log<Failure> = new_log();
    let e = errors.clone();
    let d = d
        .add_errback(move |f| {
            e.borrow_mut().push(f.clone());
            f.trap::<CancelledError>()?;
            Ok(())
        })
        .add_timeout(TEN, &clock);
    clock.advance(15.0);
    assert_eq!(errors.borrow().len(), 1);
    assert!(errors.borrow()[0].check::<CancelledError>().is_some());
    assert!(d.into_result().unwrap().is_ok());
}

// Twisted: DeferredAddTimeoutTests.test_errbackAddedBeforeTimeoutCustom
#[test]
fn errback_added_before_timeout_custom() {
    let clock = Clock::new();
    let (d, _r) = Deferred::<&str>::new();
    let errors: Log<Failure> = new_log();
    let e = errors.clone();
    let d = d
        .add_errback(move |f| {
            e.borrow_mut().push(f.clone());
            Err(f)
        })
        .add_timeout_with(TEN, &clock, override_func);
    clock.advance(15.0);
    assert_eq!(errors.borrow().len(), 1);
    assert!(errors.borrow()[0].check::<CancelledError>().is_some());
    assert_eq!(d.into_result().unwrap().unwrap(), "OVERRIDDEN");
}

// Twisted: DeferredAddTimeoutTests.test_errbackAddedBeforeTimeoutSuppressesCancellationCustom
#[test]
fn errback_added_before_timeout_suppresses_cancellation_custom() {
    let clock = Clock::new();
    let (d, _r) = Deferred::<&str>::new();
    let errors: Log<Failure> = new_log();
    let e = errors.clone();
    let d = d
        .add_errback(move |f| {
            e.borrow_mut().push(f);
            Ok("suppressed")
        })
        .add_timeout_with(TEN, &clock, override_func);
    clock.advance(15.0);
    assert_eq!(errors.borrow().len(), 1);
    assert!(errors.borrow()[0].check::<CancelledError>().is_some());
    assert_eq!(d.into_result().unwrap().unwrap(), "OVERRIDDEN");
}

// Twisted: DeferredAddTimeoutTests.test_callbackAddedToCancelerBeforeTimeout
#[test]
fn callback_added_to_canceler_before_timeout() {
    let clock = Clock::new();
    let (d, _r) = Deferred::<&str>::with_canceller(|d| d.callback("success").unwrap());
    let seen: Log<&str> = new_log();
    let s = seen.clone();
    let d = d
        .add_callback(move |v| {
            s.borrow_mut().push(v);
            v
        })
        .add_timeout(TEN, &clock);
    clock.advance(15.0);
    assert_eq!(*seen.borrow(), vec!["success"]);
    assert_eq!(d.into_result().unwrap().unwrap(), "success");
}

// Twisted: DeferredAddTimeoutTests.test_callbackAddedToCancelerBeforeTimeoutCustom
#[test]
fn callback_added_to_canceler_before_timeout_custom() {
    let clock = Clock::new();
    let (d, _r) = Deferred::<&str>::with_canceller(|d| d.callback("success").unwrap());
    let seen: Log<&str> = new_log();
    let s = seen.clone();
    let d = d
        .add_callback(move |v| {
            s.borrow_mut().push(v);
            v
        })
        .add_timeout_with(TEN, &clock, override_func);
    clock.advance(15.0);
    assert_eq!(*seen.borrow(), vec!["success"]);
    assert_eq!(d.into_result().unwrap().unwrap(), "OVERRIDDEN");
}

// Callbacks added after add_timeout are not covered by it: they see the TimeoutError.
#[test]
fn callbacks_added_after_timeout_see_timeout_error() {
    let clock = Clock::new();
    let (d, _r) = Deferred::<u8>::new();
    let order: Log<String> = new_log();
    let (o1, o2) = (order.clone(), order.clone());
    let _d = d
        .add_errback(move |f| {
            o1.borrow_mut().push(format!(
                "before: cancelled={}",
                f.check::<CancelledError>().is_some()
            ));
            Err(f)
        })
        .add_timeout(TEN, &clock)
        .add_errback(move |f| {
            o2.borrow_mut().push(format!(
                "after: timeout={}",
                f.check::<TimeoutError>().is_some()
            ));
            Ok(0)
        });
    clock.advance(10.0);
    assert_eq!(
        *order.borrow(),
        vec![
            "before: cancelled=true".to_owned(),
            "after: timeout=true".to_owned()
        ]
    );
}

// A late fire after the timeout is swallowed once (cancel without canceller).
#[test]
fn late_fire_after_timeout_is_swallowed_once() {
    let clock = Clock::new();
    let (d, r) = Deferred::<u8>::new();
    let d = d.add_timeout(TEN, &clock);
    clock.advance(10.0);
    assert_eq!(r.callback(1), Ok(()));
    assert!(r.callback(2).is_err());
    assert!(d
        .into_result()
        .unwrap()
        .unwrap_err()
        .check::<TimeoutError>()
        .is_some());
}

// The timer holds the Deferred weakly: dropping every handle before the
// timeout leaves a harmless timer behind.
#[test]
fn timer_does_not_keep_deferred_alive() {
    let clock = Clock::new();
    let seen: Log<()> = new_log();
    {
        let (d, r) = Deferred::<()>::new();
        let s = seen.clone();
        let _d = d.add_timeout(TEN, &clock).add_both(move |_| {
            s.borrow_mut().push(());
            Ok(())
        });
        drop(r);
    }
    clock.advance(15.0);
    assert!(seen.borrow().is_empty());
    assert_eq!(clock.active_calls(), 0);
}

// add_timeout on a Deferred that already fired: the timer is scheduled and
// cancelled at once, and the result passes through.
#[test]
fn timeout_on_fired_deferred_is_cancelled_at_once() {
    let clock = Clock::new();
    let d = deferred::succeed(3).add_timeout(TEN, &clock);
    assert_eq!(clock.active_calls(), 0);
    clock.advance(15.0);
    assert_eq!(d.into_result().unwrap().unwrap(), 3);
}
