//! Port of Twisted's test_defer.py `DeferredTests`: the core callback chain
//! (callback arguments, errors, errback recovery, `addCallbacks`, `addBoth`,
//! `succeed`/`fail`, `maybeDeferred`, callback ordering and re-entrancy, repr).

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use common::{generic, new_log, GenericError, Log};
use deferred::{
    fail, maybe_deferred, succeed, AlreadyCalledError, Deferred, Failure, MessageError, PanicError,
};

// Twisted: DeferredTests.testCallbackWithoutArgs
#[test]
fn callback_without_args() {
    let seen: Log<String> = new_log();
    let errors: Log<Failure> = new_log();
    let (d, r) = Deferred::<String>::new();
    let (s, e) = (seen.clone(), errors.clone());
    let _ = d.add_callbacks(
        move |v| {
            s.borrow_mut().push(v);
            Ok(())
        },
        move |f| {
            e.borrow_mut().push(f);
            Ok(())
        },
    );
    r.callback("hello".to_owned()).unwrap();
    assert!(errors.borrow().is_empty());
    assert_eq!(*seen.borrow(), vec!["hello".to_owned()]);
}

// Twisted: DeferredTests.testCallbackWithArgs (extra arguments are captured by the closure)
#[test]
fn callback_with_args() {
    let seen: Log<(String, String)> = new_log();
    let (d, r) = Deferred::<String>::new();
    let s = seen.clone();
    let world = "world".to_owned();
    let _ = d.add_callback(move |v| s.borrow_mut().push((v, world)));
    r.callback("hello".to_owned()).unwrap();
    assert_eq!(
        *seen.borrow(),
        vec![("hello".to_owned(), "world".to_owned())]
    );
}

// Twisted: DeferredTests.testTwoCallbacks
#[test]
fn two_callbacks() {
    let seen: Log<(u8, String)> = new_log();
    let (d, r) = Deferred::<String>::new();
    let (s1, s2) = (seen.clone(), seen.clone());
    let _ = d
        .add_callback(move |v: String| {
            s1.borrow_mut().push((1, v.clone()));
            v
        })
        .add_callback(move |v| s2.borrow_mut().push((2, v)));
    r.callback("hello".to_owned()).unwrap();
    assert_eq!(
        *seen.borrow(),
        vec![(1, "hello".to_owned()), (2, "hello".to_owned())]
    );
}

// Twisted: DeferredTests.test_addCallbacksNoneErrback (a callback-only step passes failures through)
#[test]
fn add_callbacks_none_errback() {
    let called = Rc::new(Cell::new(false));
    let errors: Log<Failure> = new_log();
    let (d, r) = Deferred::<()>::new();
    let c = called.clone();
    let e = errors.clone();
    let _ = d.add_callback(move |()| c.set(true)).add_errback(move |f| {
        e.borrow_mut().push(f);
        Ok(())
    });
    r.errback(generic("oopsie")).unwrap();
    assert!(!called.get());
    assert_eq!(errors.borrow().len(), 1);
    assert_eq!(
        errors.borrow()[0].check::<GenericError>(),
        Some(&generic("oopsie"))
    );
}

// Twisted: DeferredTests.testImmediateSuccess
#[test]
fn immediate_success() {
    let seen: Log<&str> = new_log();
    let s = seen.clone();
    let _ = succeed("success").add_callback(move |v| s.borrow_mut().push(v));
    assert_eq!(*seen.borrow(), vec!["success"]);
}

// Twisted: DeferredTests.test_succeedMatchesManualSuccess
#[test]
fn succeed_matches_manual_success() {
    let (manual, r) = Deferred::<i32>::new();
    r.callback(42).unwrap();
    let immediate = succeed(42);
    assert!(manual.called() && immediate.called());
    assert!(manual.has_result() && immediate.has_result());
    assert_eq!(
        manual.into_result().unwrap().unwrap(),
        immediate.into_result().unwrap().unwrap()
    );
}

// Twisted: DeferredTests.testImmediateFailure
#[test]
fn immediate_failure() {
    let errors: Log<Failure> = new_log();
    let e = errors.clone();
    let _ = fail::<()>(generic("fail")).add_errback(move |f| {
        e.borrow_mut().push(f);
        Ok(())
    });
    assert_eq!(errors.borrow().len(), 1);
    assert_eq!(errors.borrow()[0].error_message(), "fail");
}

// Twisted: DeferredTests.testCallbackErrors
#[test]
fn callback_errors() {
    // A callback that "raises" (returns Err) switches to the error path.
    let errors: Log<Failure> = new_log();
    let e = errors.clone();
    let (d, r) = Deferred::<i32>::new();
    let _ = d
        .add_callback_result(|x| {
            if x == 1 {
                Err(Failure::new(generic("div by zero")))
            } else {
                Ok(x)
            }
        })
        .add_errback(move |f| {
            e.borrow_mut().push(f);
            Ok(0)
        });
    r.callback(1).unwrap();
    assert_eq!(errors.borrow().len(), 1);
    assert!(errors.borrow()[0].check::<GenericError>().is_some());
}

// Twisted: DeferredTests.test_callbackMaybeReturnsFailure
#[test]
fn callback_maybe_returns_failure() {
    let maybe_fail = |should_fail: bool| {
        move |x: i32| -> Result<i32, Failure> {
            if should_fail {
                Err(Failure::msg("rte"))
            } else {
                Ok(x + 1)
            }
        }
    };
    let d = succeed(6).add_callback_result(maybe_fail(false));
    assert_eq!(d.into_result().unwrap().unwrap(), 7);

    let original = Failure::msg("rte");
    let o = original.clone();
    let d = succeed(6)
        .add_callback_result(move |_| -> Result<i32, Failure> { Err(o) })
        .add_callback_result(maybe_fail(false));
    let f = d.into_result().unwrap().unwrap_err();
    // The very failure the callback returned comes out, untouched.
    assert!(Failure::ptr_eq(&f, &original));
}

// Twisted: (errback recovery; DeferredTests.testDeferredListDontConsumeErrors relies on it)
#[test]
fn errback_recovers_to_success_path() {
    let seen: Log<String> = new_log();
    let s = seen.clone();
    let _ = fail::<i32>(generic("bad"))
        .add_callback(|x| x * 100)
        .add_errback(|f| {
            assert_eq!(f.error_message(), "bad");
            Ok(-1)
        })
        .add_callback(|x| x + 1)
        .add_callback(move |x| s.borrow_mut().push(format!("value {x}")));
    assert_eq!(*seen.borrow(), vec!["value 0".to_owned()]);
}

// An errback that returns Err passes a (possibly new) failure on.
#[test]
fn errback_returning_err_stays_on_error_path() {
    let d = fail::<i32>(generic("first"))
        .add_errback(|f| Err(f.context("while testing")))
        .add_callback(|x| x + 1);
    let f = d.into_result().unwrap().unwrap_err();
    assert_eq!(f.error_message(), "while testing: first");
    assert!(f.check::<GenericError>().is_some());
}

// Twisted: (addCallbacks: exactly one of the pair runs)
#[test]
fn add_callbacks_runs_exactly_one_half() {
    let seen: Log<&str> = new_log();
    let (s1, s2) = (seen.clone(), seen.clone());
    let d = succeed(1).add_callbacks(
        move |x| {
            s1.borrow_mut().push("callback");
            Ok(x * 10)
        },
        move |f| {
            s2.borrow_mut().push("errback");
            Err(f)
        },
    );
    assert_eq!(d.into_result().unwrap().unwrap(), 10);

    let (s1, s2) = (seen.clone(), seen.clone());
    let d = fail::<i32>(generic("x")).add_callbacks(
        move |x| {
            s1.borrow_mut().push("callback");
            Ok(x)
        },
        move |_| {
            s2.borrow_mut().push("errback");
            Ok(-5)
        },
    );
    assert_eq!(d.into_result().unwrap().unwrap(), -5);
    assert_eq!(*seen.borrow(), vec!["callback", "errback"]);
}

// Twisted: (addBoth sees either outcome)
#[test]
fn add_both_sees_either_outcome() {
    let seen: Log<String> = new_log();
    let s = seen.clone();
    let _ = succeed(3).add_both(move |r| {
        s.borrow_mut().push(format!("{r:?}"));
        r
    });
    let s = seen.clone();
    let d = fail::<i32>(generic("boom")).add_both(move |r| {
        s.borrow_mut().push(
            r.as_ref()
                .map_err(|f| f.error_message())
                .err()
                .unwrap_or_default(),
        );
        Ok(r.is_err())
    });
    assert!(d.into_result().unwrap().unwrap());
    assert_eq!(*seen.borrow(), vec!["Ok(3)".to_owned(), "boom".to_owned()]);
}

// A panic in a callback becomes a Failure carrying a PanicError.
#[test]
fn panic_in_callback_becomes_failure() {
    let (d, r) = Deferred::<i32>::new();
    let after = Rc::new(Cell::new(false));
    let a = after.clone();
    let d = d
        .add_callback(|x: i32| -> i32 { panic!("callback exploded with {x}") })
        .add_callback(move |x| {
            a.set(true);
            x
        });
    r.callback(7).unwrap();
    assert!(
        !after.get(),
        "the callback after the panicking one must be skipped"
    );
    let f = d.into_result().unwrap().unwrap_err();
    assert!(f.is_panic());
    assert_eq!(
        f.check::<PanicError>().unwrap().message,
        "callback exploded with 7"
    );
}

// Twisted: DeferredTests.test_maybeDeferredSync
#[test]
fn maybe_deferred_sync() {
    let d = maybe_deferred(|| -> Result<&str, Failure> { Ok("result") });
    assert_eq!(d.into_result().unwrap().unwrap(), "result");
}

// Twisted: DeferredTests.test_maybeDeferredSyncWithArgs
#[test]
fn maybe_deferred_sync_with_args() {
    let plus_five = |x: i32| -> Result<i32, Failure> { Ok(x + 5) };
    let d = maybe_deferred(|| plus_five(10));
    assert_eq!(d.into_result().unwrap().unwrap(), 15);
}

// Twisted: DeferredTests.test_maybeDeferredSyncException (a panic is the Rust "raise")
#[test]
fn maybe_deferred_sync_exception() {
    let d = maybe_deferred(|| -> Result<i32, Failure> { panic!("that value is unacceptable") });
    let f = d.into_result().unwrap().unwrap_err();
    assert!(f.is_panic());
    assert_eq!(f.error_message(), "panicked: that value is unacceptable");
}

// Twisted: DeferredTests.test_maybeDeferredSyncFailure
#[test]
fn maybe_deferred_sync_failure() {
    let expected = Failure::new(generic("type error"));
    let e = expected.clone();
    let d = maybe_deferred(move || -> Result<i32, Failure> { Err(e) });
    let f = d.into_result().unwrap().unwrap_err();
    assert!(Failure::ptr_eq(&f, &expected));
}

// maybe_deferred converts any error type through Into<Failure>.
#[test]
fn maybe_deferred_sync_error_type() {
    let d = maybe_deferred(|| "x1".parse::<i32>());
    let f = d.into_result().unwrap().unwrap_err();
    assert!(f.check::<std::num::ParseIntError>().is_some());
}

// Twisted: DeferredTests.test_maybeDeferredAsync
#[test]
fn maybe_deferred_async() {
    let (d1, r1) = Deferred::<&str>::new();
    let d2 = maybe_deferred(move || d1);
    assert!(!d2.called());
    r1.callback("Success").unwrap();
    assert_eq!(d2.into_result().unwrap().unwrap(), "Success");
}

// Twisted: DeferredTests.test_maybeDeferredAsyncError
#[test]
fn maybe_deferred_async_error() {
    let (d1, r1) = Deferred::<()>::new();
    let d2 = maybe_deferred(move || d1);
    r1.errback(generic("runtime")).unwrap();
    let f = d2.into_result().unwrap().unwrap_err();
    assert!(f.check::<GenericError>().is_some());
}

// Twisted: DeferredTests.test_maybeDeferredAsync (the Deferred is returned as is, not wrapped)
#[test]
fn maybe_deferred_returns_the_same_deferred() {
    let (d1, _r1) = Deferred::<u8>::new();
    let before = format!("{d1:?}");
    let d2 = maybe_deferred(move || d1);
    assert_eq!(format!("{d2:?}"), before);
}

// Twisted: DeferredTests.test_reentrantRunCallbacks
#[test]
fn reentrant_run_callbacks() {
    let called: Log<u8> = new_log();
    let (d, r) = Deferred::<()>::new();
    let handle: Rc<RefCell<Option<Deferred<()>>>> = Rc::new(RefCell::new(None));
    let (c1, c2, h) = (called.clone(), called.clone(), handle.clone());
    let d = d
        .add_callback(move |()| {
            c1.borrow_mut().push(1);
            let d = h.borrow_mut().take().expect("handle stored");
            let c3 = c1.clone();
            let _ = d.add_callback(move |()| c3.borrow_mut().push(3));
        })
        .add_callback(move |()| c2.borrow_mut().push(2));
    *handle.borrow_mut() = Some(d);
    r.callback(()).unwrap();
    assert_eq!(*called.borrow(), vec![1, 2, 3]);
}

// Twisted: DeferredTests.test_nonReentrantCallbacks
#[test]
fn non_reentrant_callbacks() {
    let called: Log<u8> = new_log();
    let (d, r) = Deferred::<()>::new();
    let handle: Rc<RefCell<Option<Deferred<()>>>> = Rc::new(RefCell::new(None));
    let (c1, h) = (called.clone(), handle.clone());
    let d = d.add_callback(move |()| {
        c1.borrow_mut().push(1);
        let d = h.borrow_mut().take().expect("handle stored");
        let c2 = c1.clone();
        let _ = d.add_callback(move |()| c2.borrow_mut().push(2));
        // Not run yet: the running callback has not returned.
        assert_eq!(*c1.borrow(), vec![1]);
    });
    *handle.borrow_mut() = Some(d);
    r.callback(()).unwrap();
    assert_eq!(*called.borrow(), vec![1, 2]);
}

// Twisted: DeferredTests.test_reentrantRunCallbacksWithFailure
#[test]
fn reentrant_run_callbacks_with_failure() {
    let (d, r) = Deferred::<()>::new();
    let handle: Rc<RefCell<Option<Deferred<()>>>> = Rc::new(RefCell::new(None));
    let errors: Log<Failure> = new_log();
    let (h, e) = (handle.clone(), errors.clone());
    let d = d.add_callback(move |()| {
        let d = h.borrow_mut().take().expect("handle stored");
        let e = e.clone();
        let _ = d
            .add_callback_result(|()| -> Result<(), Failure> {
                Err(Failure::msg("callback raised exception"))
            })
            .add_errback(move |f| {
                e.borrow_mut().push(f);
                Ok(())
            });
    });
    *handle.borrow_mut() = Some(d);
    r.callback(()).unwrap();
    assert_eq!(errors.borrow().len(), 1);
    assert_eq!(
        errors.borrow()[0].check::<MessageError>(),
        Some(&MessageError("callback raised exception".to_owned()))
    );
}

// A callback that fires another Deferred whose callbacks fire a third one: the
// nested chains run synchronously, inside the firing call.
#[test]
fn callback_firing_other_deferreds_runs_them_synchronously() {
    let order: Log<&str> = new_log();
    let (d1, r1) = Deferred::<u32>::new();
    let (d2, r2) = Deferred::<u32>::new();
    let (d3, r3) = Deferred::<u32>::new();

    let o = order.clone();
    let _ = d3.add_callback(move |x| {
        o.borrow_mut()
            .push(if x == 3 { "d3 got 3" } else { "d3 wrong" })
    });
    let o = order.clone();
    let _ = d2.add_callback(move |x| {
        o.borrow_mut().push("d2 start");
        r3.callback(x + 1).unwrap();
        o.borrow_mut().push("d2 end");
    });
    let o = order.clone();
    let _ = d1.add_callback(move |x| {
        o.borrow_mut().push("d1 start");
        r2.callback(x + 1).unwrap();
        o.borrow_mut().push("d1 end");
    });
    r1.callback(1).unwrap();
    assert_eq!(
        *order.borrow(),
        vec!["d1 start", "d2 start", "d3 got 3", "d2 end", "d1 end"]
    );
}

// A callback that fires its own (already fired) Deferred again gets AlreadyCalledError,
// and the chain is not disturbed.
#[test]
fn callback_refiring_its_own_deferred_is_already_called() {
    let (d, r) = Deferred::<u32>::new();
    let r2 = r.clone();
    let errors: Log<AlreadyCalledError> = new_log();
    let e = errors.clone();
    let d = d.add_callback(move |x| {
        if let Err(err) = r2.callback(99) {
            e.borrow_mut().push(err);
        }
        x + 1
    });
    r.callback(1).unwrap();
    assert_eq!(errors.borrow().len(), 1);
    assert_eq!(d.into_result().unwrap().unwrap(), 2);
}

// Adding callbacks after the Deferred fired runs them at once, in order.
#[test]
fn callbacks_added_after_firing_run_immediately_in_order() {
    let order: Log<u32> = new_log();
    let (d, r) = Deferred::<u32>::new();
    r.callback(10).unwrap();
    let o = order.clone();
    let d = d.add_callback(move |x| {
        o.borrow_mut().push(x);
        x + 1
    });
    assert_eq!(*order.borrow(), vec![10]);
    let o = order.clone();
    let _ = d.add_callback(move |x| o.borrow_mut().push(x));
    assert_eq!(*order.borrow(), vec![10, 11]);
}

// Twisted: DeferredTests.test_circularChainException
#[test]
fn circular_chain_exception() {
    let (d, r) = Deferred::<&str>::new();
    let handle: Rc<RefCell<Option<Deferred<&str>>>> = Rc::new(RefCell::new(None));
    let errors: Log<Failure> = new_log();
    let (h, e) = (handle.clone(), errors.clone());
    let d = d
        .add_callback_deferred(move |_| h.borrow_mut().take().expect("handle stored"))
        .add_errback(move |f| {
            e.borrow_mut().push(f);
            Ok("recovered")
        });
    *handle.borrow_mut() = Some(d);
    r.callback("foo").unwrap();
    assert_eq!(errors.borrow().len(), 1);
    assert!(errors.borrow()[0]
        .error_message()
        .contains("Callback returned the Deferred it was attached to"));
}

// Twisted: DeferredTests.test_repr
#[test]
fn repr() {
    let (d, _r) = Deferred::<()>::new();
    let s = format!("{d:?}");
    assert!(s.starts_with("<Deferred at 0x"), "{s}");
    assert!(s.ends_with('>') && !s.contains("current result"), "{s}");
}

// Twisted: DeferredTests.test_reprWithResult
#[test]
fn repr_with_result() {
    let (d, r) = Deferred::<&str>::new();
    let before = format!("{d:?}");
    r.callback("orange").unwrap();
    let after = format!("{d:?}");
    let addr = before.trim_end_matches('>');
    assert!(
        after.starts_with(&format!("{addr} current result: ")),
        "{after}"
    );

    let (d, r) = Deferred::<&str>::new();
    r.errback(generic("sour")).unwrap();
    let s = format!("{d:?}");
    assert!(s.contains("current result: ") && s.contains("sour"), "{s}");
    let _ = d.into_result();
}

// called() and has_result() track firing.
#[test]
fn called_and_has_result() {
    let (d, r) = Deferred::<i32>::new();
    assert!(!d.called() && !r.called() && !d.has_result());
    r.callback(1).unwrap();
    assert!(d.called() && r.called() && d.has_result());
    let (d, _r) = Deferred::<i32>::new();
    // into_result on an unfired Deferred hands the Deferred back.
    let d = d.into_result().unwrap_err();
    assert!(!d.called());
}

// created_at points at the line that created the Deferred.
#[test]
fn created_at_points_at_creation_line() {
    let line = line!() + 1;
    let (d, _r) = Deferred::<()>::new();
    assert_eq!(d.created_at().line(), line);
    assert!(d.created_at().file().ends_with("chain.rs"));
    let line = line!() + 1;
    let s = succeed(1);
    assert_eq!(s.created_at().line(), line);
}
