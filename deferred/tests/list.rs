//! Port of Twisted's test_defer.py tests of `DeferredList`, `gatherResults`
//! and `race`: the `DeferredTests` list tests (`testDeferredList*`,
//! `test_cancelDeferredList*`, `test_cancelFiredOn*`, `test_gatherResults*`,
//! `test_cancelGatherResults*`), `DeferredListEmptyTests`, `RaceTests` and
//! `FirstErrorTests`.
//!
//! Kept whole although over 600 lines: it ports Twisted's `DeferredList`,
//! `gatherResults` and `race` tests of test_defer.py and reads beside them.
//!
//! The inputs are moved into the list, so what Twisted observes by adding
//! callbacks to an input afterwards is observed here through a recording step
//! added before the input goes in, through its resolver, or through the
//! "Unhandled error in Deferred" log when the input is dropped.

mod common;

use std::cell::Cell;
use std::rc::Rc;

use common::{generic, new_log, unhandled, GenericError, Log};
use deferred::{
    fail, gather_results, race, succeed, CancelledError, Deferred, DeferredList, Failure,
    FailureGroup, FirstError, OneCallbackResult, Resolver,
};
use test_support::logs::{capture_logs, with_prefix};

/// What reached an input before the list's own step.
fn describe<T: std::fmt::Debug>(r: &Result<T, Failure>) -> String {
    match r {
        Ok(v) => format!("ok {v:?}"),
        Err(f) if f.check::<CancelledError>().is_some() => "cancelled".to_owned(),
        Err(f) => format!("err {}", f.error_message()),
    }
}

/// An input whose outcome is recorded (and passed on unchanged) before it
/// reaches the list.
fn watched<T: std::fmt::Debug + 'static>(d: Deferred<T>) -> (Deferred<T>, Log<String>) {
    let log: Log<String> = new_log();
    let l = log.clone();
    let d = d.add_both(move |r| {
        l.borrow_mut().push(describe(&r));
        r
    });
    (d, log)
}

/// A fresh unfired input, watched; the resolver must be kept alive by the test
/// (it is the producer's handle: see `bug_list_cancel_reaches_inputs_whose_resolver_was_dropped`).
fn watched_new<T: std::fmt::Debug + 'static>() -> (Deferred<T>, Resolver<T>, Log<String>) {
    let (d, r) = Deferred::new();
    let (d, log) = watched(d);
    (d, r, log)
}

/// Twisted's `fakeCallbackCanceller`.
fn fake_callback_canceller(r: &Resolver<&'static str>) {
    r.callback("Callback Result").unwrap();
}

fn messages<T: std::fmt::Debug>(results: &[Result<T, Failure>]) -> Vec<String> {
    results.iter().map(describe).collect()
}

// Twisted: DeferredTests.testDeferredList
#[test]
fn deferred_list() {
    let (d1, r1) = Deferred::<&str>::new();
    let (d2, r2) = Deferred::<&str>::new();
    let (d3, r3) = Deferred::<&str>::new();
    let list = DeferredList::new(vec![d1, d2, d3])
        .consume_errors(true)
        .build();
    r1.callback("1").unwrap();
    assert!(!list.called());
    r2.errback(generic("2")).unwrap();
    assert!(!list.called());
    r3.callback("3").unwrap();
    let results = list.into_result().unwrap().unwrap();
    assert_eq!(messages(&results), vec!["ok \"1\"", "err 2", "ok \"3\""]);
    assert!(results[1]
        .as_ref()
        .unwrap_err()
        .check::<GenericError>()
        .is_some());
}

// Results are in input order, not arrival order.
#[test]
fn deferred_list_results_in_input_order() {
    let (d1, r1) = Deferred::<u8>::new();
    let (d2, r2) = Deferred::<u8>::new();
    let (d3, r3) = Deferred::<u8>::new();
    let list = DeferredList::new(vec![d1, d2, d3]).build();
    r3.callback(3).unwrap();
    r1.callback(1).unwrap();
    r2.callback(2).unwrap();
    let results = list.into_result().unwrap().unwrap();
    let values: Vec<u8> = results.into_iter().map(Result::unwrap).collect();
    assert_eq!(values, vec![1, 2, 3]);
}

// Twisted: DeferredTests.testEmptyDeferredList
#[test]
fn empty_deferred_list() {
    let list = DeferredList::<()>::new(Vec::new()).build();
    assert!(list.called());
    assert!(list.into_result().unwrap().unwrap().is_empty());

    let one = DeferredList::<()>::new(Vec::new()).fire_on_one_callback();
    assert!(!one.called(), "an empty fireOnOneCallback list never fires");
}

// Twisted: DeferredListEmptyTests.testDeferredListEmpty
#[test]
fn deferred_list_empty() {
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    let _ = DeferredList::<u32>::new(Vec::new())
        .build()
        .add_callback(move |res| {
            assert!(res.is_empty());
            r.set(true);
        });
    assert!(ran.get(), "callback was never run");
}

// Twisted: DeferredTests.testDeferredListFireOnOneError
#[test]
fn deferred_list_fire_on_one_error() {
    let (d1, r1) = Deferred::<&str>::new();
    let (d2, r2) = Deferred::<&str>::new();
    let (d3, _r3) = Deferred::<&str>::new();
    let list = DeferredList::new(vec![d1, d2, d3])
        .fire_on_one_errback(true)
        .consume_errors(true)
        .build();
    r1.callback("1").unwrap();
    assert!(!list.called());
    r2.errback(generic("from def2")).unwrap();
    let f = list.into_result().unwrap().unwrap_err();
    let first = f
        .downcast_ref::<FirstError>()
        .expect("the failure is a FirstError");
    assert_eq!(first.index, 1);
    assert_eq!(
        first.sub_failure.check::<GenericError>(),
        Some(&generic("from def2"))
    );
}

// Twisted: DeferredTests.testDeferredListDontConsumeErrors
#[test]
fn deferred_list_dont_consume_errors() {
    let (results, logs) = capture_logs(|| {
        let (d1, r1) = Deferred::<()>::new();
        let list = DeferredList::new(vec![d1]).build();
        r1.errback(generic("Bang")).unwrap();
        let results = list.into_result().unwrap().unwrap();
        drop(r1);
        messages(&results)
    });
    assert_eq!(results, vec!["err Bang"]);
    // The failure kept going down the input's own chain: unhandled when dropped.
    let logged = unhandled(&logs);
    assert_eq!(logged.len(), 1, "{logs:?}");
    assert_eq!(logged[0].level, tracing::Level::ERROR);
    assert!(logged[0].message.contains("Bang"), "{logs:?}");
}

// Twisted: DeferredTests.testDeferredListConsumeErrors
#[test]
fn deferred_list_consume_errors() {
    let (results, logs) = capture_logs(|| {
        let (d1, r1) = Deferred::<()>::new();
        let list = DeferredList::new(vec![d1]).consume_errors(true).build();
        r1.errback(generic("Bang")).unwrap();
        let results = list.into_result().unwrap().unwrap();
        drop(r1);
        messages(&results)
    });
    assert_eq!(results, vec!["err Bang"]);
    assert!(unhandled(&logs).is_empty(), "{logs:?}");
}

// Twisted: DeferredTests.testDeferredListFireOnOneErrorWithAlreadyFiredDeferreds
#[test]
fn deferred_list_fire_on_one_error_with_already_fired_deferreds() {
    let (d1, r1) = Deferred::<()>::new();
    let (d2, _r2) = Deferred::<()>::new();
    r1.errback(generic("Bang")).unwrap();
    let list = DeferredList::new(vec![d1, d2])
        .fire_on_one_errback(true)
        .consume_errors(true)
        .build();
    // Processed synchronously during construction.
    assert!(list.called());
    let f = list.into_result().unwrap().unwrap_err();
    assert_eq!(f.downcast_ref::<FirstError>().unwrap().index, 0);
}

// Twisted: DeferredTests.testDeferredListWithAlreadyFiredDeferreds
#[test]
fn deferred_list_with_already_fired_deferreds() {
    let (d1, r1) = Deferred::<i32>::new();
    let (d2, r2) = Deferred::<i32>::new();
    r1.errback(generic("Bang")).unwrap();
    r2.callback(2).unwrap();
    let list = DeferredList::new(vec![d1, d2]).consume_errors(true).build();
    assert!(list.called());
    let results = list.into_result().unwrap().unwrap();
    assert_eq!(messages(&results), vec!["err Bang", "ok 2"]);
}

// Mixed: some inputs already fired, some later.
#[test]
fn deferred_list_mixed_fired_and_pending() {
    let (d2, r2) = Deferred::<i32>::new();
    let list = DeferredList::new(vec![succeed(1), d2, succeed(3)]).build();
    assert!(!list.called());
    r2.callback(2).unwrap();
    let values: Vec<i32> = list
        .into_result()
        .unwrap()
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(values, vec![1, 2, 3]);
}

// Twisted: DeferredTests.test_cancelDeferredList
#[test]
fn cancel_deferred_list() {
    let (d1, _d1_resolver, l1) = watched_new::<()>();
    let (d2, _d2_resolver, l2) = watched_new::<()>();
    let list = DeferredList::new(vec![d1, d2]).consume_errors(true).build();
    list.cancel();
    assert_eq!(*l1.borrow(), vec!["cancelled"]);
    assert_eq!(*l2.borrow(), vec!["cancelled"]);
    // The list fires with its inputs' results, not with a CancelledError of its own.
    let results = list
        .into_result()
        .unwrap()
        .expect("the list itself is not failed");
    assert_eq!(messages(&results), vec!["cancelled", "cancelled"]);
}

// Twisted: DeferredTests.test_cancelDeferredListCallback
#[test]
fn cancel_deferred_list_callback() {
    let (one, _r1) = Deferred::<&str>::with_canceller(fake_callback_canceller);
    let (two, _two_resolver, l2) = watched_new::<&str>();
    let list = DeferredList::new(vec![one, two])
        .consume_errors(true)
        .build();
    list.cancel();
    assert_eq!(*l2.borrow(), vec!["cancelled"]);
    let results = list.into_result().unwrap().unwrap();
    assert_eq!(
        messages(&results),
        vec!["ok \"Callback Result\"", "cancelled"]
    );
}

// Twisted: DeferredTests.test_cancelDeferredListWithFireOnOneCallback
#[test]
fn cancel_deferred_list_with_fire_on_one_callback() {
    let (d1, _d1_resolver, l1) = watched_new::<()>();
    let (d2, _d2_resolver, l2) = watched_new::<()>();
    let list = DeferredList::new(vec![d1, d2])
        .consume_errors(true)
        .fire_on_one_callback();
    list.cancel();
    assert_eq!(*l1.borrow(), vec!["cancelled"]);
    assert_eq!(*l2.borrow(), vec!["cancelled"]);
    match list.into_result().unwrap().unwrap() {
        OneCallbackResult::AllFailed(fs) => {
            assert_eq!(fs.len(), 2);
            assert!(fs.iter().all(|f| f.check::<CancelledError>().is_some()));
        }
        OneCallbackResult::First { index, .. } => panic!("unexpected success at {index}"),
    }
}

// Twisted: DeferredTests.test_cancelDeferredListWithFireOnOneCallbackAndDeferredCallback
#[test]
fn cancel_deferred_list_with_fire_on_one_callback_and_deferred_callback() {
    let (one, _r1) = Deferred::<&str>::with_canceller(fake_callback_canceller);
    let (two, _two_resolver, l2) = watched_new::<&str>();
    let list = DeferredList::new(vec![one, two])
        .consume_errors(true)
        .fire_on_one_callback();
    list.cancel();
    assert_eq!(*l2.borrow(), vec!["cancelled"]);
    match list.into_result().unwrap().unwrap() {
        OneCallbackResult::First { value, index } => {
            assert_eq!((value, index), ("Callback Result", 0));
        }
        OneCallbackResult::AllFailed(_) => panic!("expected a success"),
    }
}

// Twisted: DeferredTests.test_cancelDeferredListWithFireOnOneErrback
#[test]
fn cancel_deferred_list_with_fire_on_one_errback() {
    let (d1, _d1_resolver, l1) = watched_new::<()>();
    let (d2, _d2_resolver, l2) = watched_new::<()>();
    let list = DeferredList::new(vec![d1, d2])
        .fire_on_one_errback(true)
        .consume_errors(true)
        .build();
    list.cancel();
    assert_eq!(*l1.borrow(), vec!["cancelled"]);
    assert_eq!(*l2.borrow(), vec!["cancelled"]);
    let f = list.into_result().unwrap().unwrap_err();
    let first = f.downcast_ref::<FirstError>().unwrap();
    assert!(first.sub_failure.check::<CancelledError>().is_some());
    assert_eq!(first.index, 0);
}

// Twisted: DeferredTests.test_cancelDeferredListWithFireOnOneErrbackAllDeferredsCallback
#[test]
fn cancel_deferred_list_with_fire_on_one_errback_all_deferreds_callback() {
    let (one, _r1) = Deferred::<&str>::with_canceller(fake_callback_canceller);
    let (two, _r2) = Deferred::<&str>::with_canceller(fake_callback_canceller);
    let list = DeferredList::new(vec![one, two])
        .fire_on_one_errback(true)
        .build();
    list.cancel();
    let results = list.into_result().unwrap().unwrap();
    assert_eq!(
        messages(&results),
        vec!["ok \"Callback Result\"", "ok \"Callback Result\""]
    );
}

// Twisted: DeferredTests.test_cancelDeferredListWithException
#[test]
fn cancel_deferred_list_with_exception() {
    let (results, logs) = capture_logs(|| {
        let (one, _r1) = Deferred::<()>::with_canceller(|_| panic!("test"));
        let (one, l1) = watched(one);
        let (two, _two_resolver, l2) = watched_new::<()>();
        let list = DeferredList::new(vec![one, two])
            .consume_errors(true)
            .build();
        list.cancel();
        assert_eq!(*l1.borrow(), vec!["cancelled"]);
        assert_eq!(*l2.borrow(), vec!["cancelled"]);
        messages(&list.into_result().unwrap().unwrap())
    });
    assert_eq!(results, vec!["cancelled", "cancelled"]);
    let logged = with_prefix(&logs, "Exception raised from user supplied canceller");
    assert_eq!(logged.len(), 1, "{logs:?}");
    assert_eq!(logged[0].level, tracing::Level::ERROR);
}

// Twisted: DeferredTests.test_cancelFiredOnOneCallbackDeferredList
#[test]
fn cancel_fired_on_one_callback_deferred_list() {
    let (d1, r1) = Deferred::<()>::new();
    let (d2, r2) = Deferred::<()>::new();
    let list = DeferredList::new(vec![d1, d2]).fire_on_one_callback();
    r1.callback(()).unwrap();
    list.cancel();
    assert!(
        !r2.called(),
        "cancelling a fired list must not cancel the rest"
    );
    assert!(matches!(
        list.into_result().unwrap().unwrap(),
        OneCallbackResult::First { index: 0, .. }
    ));
}

// Twisted: DeferredTests.test_cancelFiredOnOneErrbackDeferredList
#[test]
fn cancel_fired_on_one_errback_deferred_list() {
    let (d1, r1) = Deferred::<()>::new();
    let (d2, r2) = Deferred::<()>::new();
    let list = DeferredList::new(vec![d1, d2])
        .fire_on_one_errback(true)
        .consume_errors(true)
        .build();
    r1.errback(generic("test")).unwrap();
    list.cancel();
    assert!(!r2.called());
    let f = list.into_result().unwrap().unwrap_err();
    assert!(f.check::<FirstError>().is_some());
    assert!(f.check::<GenericError>().is_some());
}

// fireOnOneCallback: the first success wins, with its index.
#[test]
fn fire_on_one_callback_first_success_with_index() {
    let (d1, r1) = Deferred::<&str>::new();
    let (d2, r2) = Deferred::<&str>::new();
    let (d3, r3) = Deferred::<&str>::new();
    let list = DeferredList::new(vec![d1, d2, d3])
        .consume_errors(true)
        .fire_on_one_callback();
    r1.errback(generic("no")).unwrap();
    assert!(
        !list.called(),
        "a failure does not fire a fireOnOneCallback list"
    );
    r3.callback("third").unwrap();
    // Results after the list fired are ignored.
    r2.callback("second").unwrap();
    match list.into_result().unwrap().unwrap() {
        OneCallbackResult::First { value, index } => assert_eq!((value, index), ("third", 2)),
        OneCallbackResult::AllFailed(_) => panic!("expected a success"),
    }
}

// fireOnOneCallback: all failing gives every failure, in input order.
#[test]
fn fire_on_one_callback_all_failed() {
    let (d1, r1) = Deferred::<()>::new();
    let (d2, r2) = Deferred::<()>::new();
    let list = DeferredList::new(vec![d1, d2])
        .consume_errors(true)
        .fire_on_one_callback();
    r2.errback(generic("second")).unwrap();
    r1.errback(generic("first")).unwrap();
    match list.into_result().unwrap().unwrap() {
        OneCallbackResult::AllFailed(fs) => {
            let msgs: Vec<String> = fs.iter().map(Failure::error_message).collect();
            assert_eq!(msgs, vec!["first", "second"]);
        }
        OneCallbackResult::First { .. } => panic!("nothing succeeded"),
    }
}

// fireOnOneCallback and fireOnOneErrback together: whichever comes first decides.
#[test]
fn fire_on_one_callback_and_errback() {
    let (d1, r1) = Deferred::<u8>::new();
    let (d2, r2) = Deferred::<u8>::new();
    let list = DeferredList::new(vec![d1, d2])
        .fire_on_one_errback(true)
        .consume_errors(true)
        .fire_on_one_callback();
    r2.errback(generic("first to arrive")).unwrap();
    r1.callback(1).unwrap();
    let f = list.into_result().unwrap().unwrap_err();
    assert_eq!(f.downcast_ref::<FirstError>().unwrap().index, 1);

    let (d1, r1) = Deferred::<u8>::new();
    let (d2, r2) = Deferred::<u8>::new();
    let list = DeferredList::new(vec![d1, d2])
        .fire_on_one_errback(true)
        .consume_errors(true)
        .fire_on_one_callback();
    r1.callback(1).unwrap();
    r2.errback(generic("too late")).unwrap();
    assert!(matches!(
        list.into_result().unwrap().unwrap(),
        OneCallbackResult::First { value: 1, index: 0 }
    ));
}

// gatherResults of nothing fires at once with nothing.
#[test]
fn gather_results_empty() {
    let d = gather_results(Vec::<Deferred<u8>>::new(), false);
    assert!(d.into_result().unwrap().unwrap().is_empty());
}

// Results that arrive after a fireOnOneErrback list fired are ignored.
#[test]
fn results_after_list_fired_are_ignored() {
    let (d1, r1) = Deferred::<u8>::new();
    let (d2, r2) = Deferred::<u8>::new();
    let seen: Log<String> = new_log();
    let s = seen.clone();
    let _list = DeferredList::new(vec![d1, d2])
        .fire_on_one_errback(true)
        .consume_errors(true)
        .build()
        .add_both(move |r| {
            s.borrow_mut().push(match r {
                Ok(v) => format!("ok {}", v.len()),
                Err(f) => format!("err #{}", f.downcast_ref::<FirstError>().unwrap().index),
            });
            Ok(())
        });
    r2.errback(generic("boom")).unwrap();
    r1.callback(1).unwrap();
    assert_eq!(*seen.borrow(), vec!["err #1".to_owned()]);
}

// Cancel after the list fired is a no-op.
#[test]
fn cancel_after_list_fired_is_no_op() {
    let (d1, r1) = Deferred::<u8>::new();
    let list = DeferredList::new(vec![d1]).build();
    r1.callback(1).unwrap();
    list.cancel();
    assert_eq!(
        messages(&list.into_result().unwrap().unwrap()),
        vec!["ok 1"]
    );
}

// Twisted: DeferredTests.test_gatherResults
#[test]
fn gather_results_success_and_failure() {
    let d = gather_results(vec![succeed(1), succeed(2)], false);
    assert_eq!(d.into_result().unwrap().unwrap(), vec![1, 2]);

    let d = gather_results(vec![succeed(1), fail(generic("value error"))], true);
    let f = d.into_result().unwrap().unwrap_err();
    let first = f.downcast_ref::<FirstError>().expect("a FirstError");
    assert_eq!(first.index, 1);
    // check() walks through the FirstError to the original error.
    assert_eq!(f.check::<GenericError>(), Some(&generic("value error")));
}

// gatherResults keeps input order for values that arrive out of order.
#[test]
fn gather_results_in_input_order() {
    let (a, ra) = Deferred::<&str>::new();
    let (b, rb) = Deferred::<&str>::new();
    let d = gather_results(vec![a, b], false);
    rb.callback("b").unwrap();
    assert!(!d.called());
    ra.callback("a").unwrap();
    assert_eq!(d.into_result().unwrap().unwrap(), vec!["a", "b"]);
}

// Twisted: DeferredTests.test_gatherResultsWithConsumeErrors
#[test]
fn gather_results_with_consume_errors() {
    let (msg, logs) = capture_logs(|| {
        let dgood = succeed(1);
        let (dbad, rbad) = Deferred::<i32>::new();
        rbad.errback(generic("oh noes")).unwrap();
        let d = gather_results(vec![dgood, dbad], true);
        let f = d.into_result().unwrap().unwrap_err();
        drop(rbad);
        let first = f.downcast_ref::<FirstError>().unwrap();
        first
            .sub_failure
            .check::<GenericError>()
            .map(|e| e.0.clone())
    });
    assert_eq!(msg.as_deref(), Some("oh noes"));
    assert!(unhandled(&logs).is_empty(), "{logs:?}");
}

// Without consume_errors the failed input's own failure is left unhandled.
#[test]
fn gather_results_without_consume_errors_leaves_input_failure() {
    let ((), logs) = capture_logs(|| {
        let (dbad, rbad) = Deferred::<i32>::new();
        let d = gather_results(vec![succeed(1), dbad], false);
        rbad.errback(generic("oh noes")).unwrap();
        assert!(d.into_result().unwrap().is_err());
        drop(rbad);
    });
    assert_eq!(unhandled(&logs).len(), 1, "{logs:?}");
}

// Twisted: DeferredTests.test_cancelGatherResults
#[test]
fn cancel_gather_results() {
    let (d1, _d1_resolver, l1) = watched_new::<()>();
    let (d2, _d2_resolver, l2) = watched_new::<()>();
    let result = gather_results(vec![d1, d2], true);
    result.cancel();
    assert_eq!(*l1.borrow(), vec!["cancelled"]);
    assert_eq!(*l2.borrow(), vec!["cancelled"]);
    let f = result.into_result().unwrap().unwrap_err();
    let first = f.downcast_ref::<FirstError>().unwrap();
    assert!(first.sub_failure.check::<CancelledError>().is_some());
}

// Twisted: DeferredTests.test_cancelGatherResultsWithAllDeferredsCallback
#[test]
fn cancel_gather_results_with_all_deferreds_callback() {
    let (one, _r1) = Deferred::<&str>::with_canceller(fake_callback_canceller);
    let (two, _r2) = Deferred::<&str>::with_canceller(fake_callback_canceller);
    let result = gather_results(vec![one, two], false);
    result.cancel();
    assert_eq!(
        result.into_result().unwrap().unwrap(),
        vec!["Callback Result", "Callback Result"]
    );
}

/// How many times each raced Deferred's canceller ran.
type CancelCounts = Rc<Vec<Cell<u32>>>;

/// Twisted's `_setupRaceState`: Deferreds whose cancellers count their calls.
fn setup_race_state(n: usize) -> (CancelCounts, Vec<Deferred<u32>>, Vec<Resolver<u32>>) {
    let state: CancelCounts = Rc::new((0..n).map(|_| Cell::new(0)).collect());
    let mut ds = Vec::new();
    let mut rs = Vec::new();
    for i in 0..n {
        let s = state.clone();
        let (d, r) = Deferred::with_canceller(move |_| s[i].set(s[i].get() + 1));
        ds.push(d);
        rs.push(r);
    }
    (state, ds, rs)
}

fn counts(state: &[Cell<u32>]) -> Vec<u32> {
    state.iter().map(Cell::get).collect()
}

// Twisted: RaceTests.test_success (hypothesis over 0..=3 before and after the winner)
#[test]
fn race_success() {
    for before in 0..=3 {
        for after in 0..=3 {
            let (state, ds, rs) = setup_race_state(before + 1 + after);
            let result = race(ds);
            rs[before].callback(42).unwrap();
            assert_eq!(result.into_result().unwrap().unwrap(), (before, 42));
            let mut expected = vec![1; before];
            expected.push(0);
            expected.extend(vec![1; after]);
            assert_eq!(counts(&state), expected, "before={before} after={after}");
        }
    }
}

// Twisted: RaceTests.test_failure
#[test]
fn race_failure() {
    for before in 0..=3 {
        for after in 0..=3 {
            let n = before + 1 + after;
            let (state, ds, rs) = setup_race_state(n);
            let failure = Failure::msg("The test demands failures.");
            let result = race(ds);
            for r in &rs {
                r.errback(failure.clone()).unwrap();
            }
            let f = result.into_result().unwrap().unwrap_err();
            let group = f.downcast_ref::<FailureGroup>().expect("a FailureGroup");
            assert_eq!(group.failures.len(), n);
            assert!(group.failures.iter().all(|g| Failure::ptr_eq(g, &failure)));
            assert_eq!(counts(&state), vec![0; n]);
        }
    }
}

// Twisted: RaceTests.test_resultAfterCancel
#[test]
fn race_result_after_cancel() {
    for before in 0..=3 {
        for after in 0..=3 {
            let (winner, logs) = capture_logs(|| {
                let (ds, rs): (Vec<_>, Vec<_>) = (0..before + 2 + after)
                    .map(|_| Deferred::<()>::new())
                    .unzip();
                let result = race(ds);
                rs[before].callback(()).unwrap();
                // The next one was cancelled (no canceller): its late fire is swallowed.
                assert_eq!(rs[before + 1].callback(()), Ok(()));
                let winner = result.into_result().unwrap().unwrap().0;
                drop(rs);
                winner
            });
            assert_eq!(winner, before);
            assert!(
                logs.iter().all(|l| l.level != tracing::Level::ERROR),
                "nothing may be logged: {logs:?}"
            );
        }
    }
}

// Twisted: RaceTests.test_resultFromCancel
#[test]
fn race_result_from_cancel() {
    let (winner, rw) = Deferred::<&str>::new();
    let (other, _ro) = Deferred::<&str>::with_canceller(|r| r.callback("from cancel").unwrap());
    let result = race(vec![winner, other]);
    rw.callback("expected").unwrap();
    assert_eq!(result.into_result().unwrap().unwrap(), (0, "expected"));
}

// Twisted: RaceTests.test_cancel
#[test]
fn race_cancel() {
    for n in 1..=3 {
        let (state, ds, _rs) = setup_race_state(n);
        let result = race(ds);
        result.cancel();
        assert_eq!(counts(&state), vec![1; n]);
        let f = result.into_result().unwrap().unwrap_err();
        let group = f.downcast_ref::<FailureGroup>().expect("a FailureGroup");
        assert_eq!(group.failures.len(), n);
        assert!(group
            .failures
            .iter()
            .all(|g| g.check::<CancelledError>().is_some()));
    }
}

// Twisted: FirstErrorTests.test_str
#[test]
fn first_error_str() {
    let f = Failure::new(generic("some text"));
    let error = FirstError {
        sub_failure: f.clone(),
        index: 5,
    };
    assert_eq!(error.to_string(), format!("FirstError[#5, {f}]"));
    assert!(error.to_string().contains("some text"));
}

// Twisted: FirstErrorTests.test_comparison
#[test]
fn first_error_comparison() {
    let first_failure = Failure::new(generic("division by zero"));
    let one = FirstError {
        sub_failure: first_failure.clone(),
        index: 13,
    };
    let another_one = FirstError {
        sub_failure: first_failure.clone(),
        index: 13,
    };
    let second_failure = Failure::new(generic("bar"));
    let another = FirstError {
        sub_failure: second_failure,
        index: 9,
    };
    assert!(one == another_one);
    assert!(one != another);
    // Same index, different failure object: not equal.
    let lookalike = FirstError {
        sub_failure: Failure::new(generic("division by zero")),
        index: 13,
    };
    assert!(one != lookalike);
    // Same failure, different index: not equal.
    let moved = FirstError {
        sub_failure: first_failure,
        index: 12,
    };
    assert!(one != moved);
}

// Twisted's `DeferredList`: "cancel(): if not yet fired, cancel every input." Twisted's
// DeferredList keeps its inputs (`_deferredList`), so an input nobody else
// references is still cancelled and the list fires. Here the list holds its
// inputs weakly: an input whose resolver was dropped is freed when the list is
// built, cancel() cannot reach it, and the list never fires.
#[test]
fn list_cancel_reaches_inputs_whose_resolver_was_dropped() {
    let (abandoned, r) = Deferred::<&str>::new();
    drop(r);
    let (cancellable, r) = Deferred::<&str>::with_canceller(fake_callback_canceller);
    drop(r);
    let list = DeferredList::new(vec![abandoned, cancellable])
        .consume_errors(true)
        .build();
    list.cancel();
    assert!(
        list.called(),
        "cancelling the list must cancel every input and fire it"
    );
    let results = list.into_result().unwrap().unwrap();
    assert_eq!(
        messages(&results),
        vec!["cancelled", "ok \"Callback Result\""]
    );
}

// Same for race(): Twisted's race keeps `ds` and cancels all of them.
#[test]
fn race_cancel_reaches_inputs_whose_resolver_was_dropped() {
    let (d, r) = Deferred::<&str>::with_canceller(fake_callback_canceller);
    drop(r);
    let result = race(vec![d]);
    result.cancel();
    assert_eq!(
        result.into_result().unwrap().unwrap(),
        (0, "Callback Result")
    );
}

// Twisted's `DeferredList`: "Results arriving after the list has fired are recorded but
// ignored." That must hold when the late result arrives from inside the
// list's own callback (re-entrantly): the list's callbacks run while its
// bookkeeping is still borrowed, and the late input's arrival then panics
// inside that input's chain, leaving a PanicError failure on it (logged as
// an unhandled error when it is dropped).
#[test]
fn late_result_fired_from_list_callback_is_ignored() {
    let (late, logs) = capture_logs(|| {
        let (d1, r1) = Deferred::<u8>::new();
        let (d2, r2) = Deferred::<u8>::new();
        let d2_outcome: Log<String> = new_log();
        let o = d2_outcome.clone();
        let d2 = d2.add_both(move |r| {
            o.borrow_mut().push(describe(&r));
            r
        });
        let seen: Log<String> = new_log();
        let s = seen.clone();
        let _list = DeferredList::new(vec![d1, d2])
            .fire_on_one_callback()
            .add_callback(move |res| {
                if let OneCallbackResult::First { index, .. } = res {
                    s.borrow_mut().push(format!("first #{index}"));
                }
                // Fire the other input from inside the list's callback.
                r2.callback(2).unwrap();
            });
        r1.callback(1).unwrap();
        assert_eq!(*seen.borrow(), vec!["first #0".to_owned()]);
        drop(r1);
        let late = d2_outcome.borrow().clone();
        late
    });
    assert_eq!(late, vec!["ok 2"]);
    assert!(unhandled(&logs).is_empty(), "{logs:?}");
}

// The same re-entrancy through gather_results (fireOnOneErrback): an errback
// on the gathered Deferred that fires another input.
#[test]
fn late_result_fired_from_gather_errback_is_ignored() {
    let (gathered, logs) = capture_logs(|| {
        let (d1, r1) = Deferred::<u8>::new();
        let (d2, r2) = Deferred::<u8>::new();
        let seen: Log<String> = new_log();
        let s = seen.clone();
        let _g = gather_results(vec![d1, d2], true).add_errback(move |f| {
            s.borrow_mut().push(f.error_message());
            r2.callback(2).unwrap();
            Ok(Vec::new())
        });
        r1.errback(generic("first")).unwrap();
        drop(r1);
        let gathered = seen.borrow().clone();
        gathered
    });
    assert_eq!(gathered.len(), 1);
    assert!(unhandled(&logs).is_empty(), "{logs:?}");
}
