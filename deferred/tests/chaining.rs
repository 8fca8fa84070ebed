//! Port of Twisted's test_defer.py `DeferredTests` chaining tests: a callback
//! or errback that returns another Deferred (implicit chaining), nested and
//! transitive chains, `chainDeferred`, the chaining records behind `repr`, and
//! `test_boundedStackDepth` (long chains must not grow the native stack, when
//! run or when dropped).
//!
//! Kept whole although over 600 lines: it ports one group of Twisted's
//! `DeferredTests` (test_defer.py) and reads beside it.
//!
//! In Rust the inner Deferred's handle is moved into the chain when a
//! callback returns it, so Twisted's steps that add callbacks to (or unpause)
//! the inner Deferred *after* it was returned cannot be written; those tests
//! keep every other observable of their Twisted counterpart.

mod common;

use std::cell::{Cell, RefCell};
use std::fmt::Debug;
use std::rc::Rc;

use common::{generic, new_log, GenericError, Log};
use deferred::{fail, gather_results, succeed, AlreadyCalledError, Deferred, Failure, Resolver};

/// The `0x...` address in a Deferred's `Debug` output.
fn addr(d: &impl Debug) -> String {
    let s = format!("{d:?}");
    let rest = s
        .strip_prefix("<Deferred at ")
        .unwrap_or_else(|| panic!("unexpected repr {s}"));
    rest.split([' ', '>']).next().unwrap().to_owned()
}

// Twisted: DeferredTests.test_callbackReturnsDeferred
#[test]
fn callback_returns_deferred() {
    let seen: Log<i32> = new_log();
    let (d1, r1) = Deferred::<i32>::new();
    let (d2, r2) = Deferred::<i32>::new();
    let s = seen.clone();
    let d1 = d1
        .add_callback_deferred(move |_| d2)
        .add_callback(move |x| s.borrow_mut().push(x));
    r1.callback(1).unwrap();
    assert!(seen.borrow().is_empty(), "should not have been called yet");
    assert_eq!(d1.paused(), 1, "waiting on d2 counts as one pause");
    r2.callback(2).unwrap();
    assert_eq!(
        *seen.borrow(),
        vec![2],
        "result should come from the second deferred"
    );
    assert_eq!(d1.paused(), 0);
}

// Twisted: DeferredTests.test_errbackReturnsDeferred
#[test]
fn errback_returns_deferred() {
    let seen: Log<String> = new_log();
    let (d, r) = Deferred::<String>::new();
    let (d2, r2) = Deferred::<String>::new();
    let s = seen.clone();
    let d = d
        .add_errback_deferred(move |_f| d2)
        .add_callback(move |v| s.borrow_mut().push(v));
    r.errback(generic("value error")).unwrap();
    assert!(!d.has_result());
    assert!(seen.borrow().is_empty());
    r2.callback("result".to_owned()).unwrap();
    assert_eq!(*seen.borrow(), vec!["result".to_owned()]);
}

// add_both_deferred waits on the returned Deferred for either outcome.
#[test]
fn both_returns_deferred() {
    let (d, r) = Deferred::<i32>::new();
    let (inner, ri) = Deferred::<String>::new();
    let d = d.add_both_deferred(move |res| {
        assert!(res.unwrap_err().check::<GenericError>().is_some());
        inner
    });
    r.errback(generic("e")).unwrap();
    assert!(!d.has_result());
    ri.callback("fine".to_owned()).unwrap();
    assert_eq!(d.into_result().unwrap().unwrap(), "fine");
}

// Twisted: DeferredTests.test_chainedPausedDeferredWithResult
// (the unpause step of the Twisted test needs the inner's handle, which the
// chain owns; what remains observable: a fired but paused inner is waited on,
// its result is not taken synchronously)
#[test]
fn chained_paused_deferred_with_result() {
    let (paused, rp) = Deferred::<u32>::new();
    rp.callback(7).unwrap();
    paused.pause();
    let paused_addr = addr(&paused);
    let (chained, rc) = Deferred::<()>::new();
    let seen: Log<u32> = new_log();
    let s = seen.clone();
    let chained = chained
        .add_callback_deferred(move |()| paused)
        .add_callback(move |x| s.borrow_mut().push(x));
    rc.callback(()).unwrap();
    assert!(seen.borrow().is_empty());
    assert_eq!(chained.paused(), 1);
    assert_eq!(
        format!("{chained:?}"),
        format!(
            "<Deferred at {} waiting on Deferred at {paused_addr}>",
            addr(&chained)
        )
    );
}

// Twisted: DeferredTests.test_pausedDeferredChained
#[test]
fn paused_deferred_chained() {
    let order: Log<String> = new_log();
    let (first, rf) = Deferred::<()>::new();
    let (second, rs) = Deferred::<u32>::new();
    let o = order.clone();
    let second = second.add_callback(move |x| {
        o.borrow_mut().push(format!("second {x}"));
        x
    });
    let o = order.clone();
    let first = first
        .add_callback_deferred(move |()| second)
        .add_callback(move |x| o.borrow_mut().push(format!("first {x}")));
    rf.callback(()).unwrap();
    first.pause();
    assert_eq!(first.paused(), 2);
    // The paused outer does not stop the inner from running its own callbacks.
    rs.callback(5).unwrap();
    assert_eq!(*order.borrow(), vec!["second 5".to_owned()]);
    assert_eq!(first.paused(), 1);
    first.unpause();
    assert_eq!(
        *order.borrow(),
        vec!["second 5".to_owned(), "first 5".to_owned()]
    );
}

// Twisted: DeferredTests.test_synchronousImplicitChain
#[test]
fn synchronous_implicit_chain() {
    let first = succeed("result");
    let (second, r) = Deferred::<()>::new();
    let second = second.add_callback_deferred(move |()| first);
    r.callback(()).unwrap();
    // The fired inner's result was taken synchronously.
    assert!(second.has_result());
    assert_eq!(second.into_result().unwrap().unwrap(), "result");
}

// Twisted: DeferredTests.test_asynchronousImplicitChain
#[test]
fn asynchronous_implicit_chain() {
    let (first, rf) = Deferred::<&str>::new();
    let (second, rs) = Deferred::<()>::new();
    let first_seen: Log<&str> = new_log();
    let second_seen: Log<&str> = new_log();
    let f = first_seen.clone();
    let first = first.add_callback(move |v| {
        f.borrow_mut().push(v);
        v
    });
    let s = second_seen.clone();
    let _ = second
        .add_callback_deferred(move |()| first)
        .add_callback(move |v| s.borrow_mut().push(v));
    rs.callback(()).unwrap();
    assert!(first_seen.borrow().is_empty());
    assert!(second_seen.borrow().is_empty());
    rf.callback("result").unwrap();
    assert_eq!(*first_seen.borrow(), vec!["result"]);
    assert_eq!(*second_seen.borrow(), vec!["result"]);
}

// Twisted: DeferredTests.test_synchronousImplicitErrorChain
#[test]
fn synchronous_implicit_error_chain() {
    let first = fail::<()>(generic("First Deferred's Failure"));
    let (second, r) = Deferred::<()>::new();
    let second = second.add_callback_deferred(move |()| first);
    r.callback(()).unwrap();
    let f = second.into_result().unwrap().unwrap_err();
    assert_eq!(
        f.check::<GenericError>(),
        Some(&generic("First Deferred's Failure"))
    );
}

// Twisted: DeferredTests.test_asynchronousImplicitErrorChain
#[test]
fn asynchronous_implicit_error_chain() {
    let (first, rf) = Deferred::<()>::new();
    let (second, rs) = Deferred::<()>::new();
    let errors: Log<Failure> = new_log();
    let after: Log<()> = new_log();
    let (e, a) = (errors.clone(), after.clone());
    let _ = second
        .add_callback_deferred(move |()| first)
        .add_errback(move |f| {
            e.borrow_mut().push(f);
            Ok(())
        })
        .add_callback(move |()| a.borrow_mut().push(()));
    rs.callback(()).unwrap();
    assert!(errors.borrow().is_empty() && after.borrow().is_empty());
    rf.errback(generic("First Deferred's Failure")).unwrap();
    assert_eq!(errors.borrow().len(), 1);
    assert!(errors.borrow()[0].check::<GenericError>().is_some());
    assert_eq!(after.borrow().len(), 1);
}

// Twisted: DeferredTests.test_doubleAsynchronousImplicitChaining
#[test]
fn double_asynchronous_implicit_chaining() {
    let (first, r1) = Deferred::<&str>::new();
    let (second, r2) = Deferred::<()>::new();
    let second = second.add_callback_deferred(move |()| first);
    let (third, r3) = Deferred::<()>::new();
    let seen: Log<&str> = new_log();
    let s = seen.clone();
    let _ = third
        .add_callback_deferred(move |()| second)
        .add_callback(move |v| s.borrow_mut().push(v));
    // second now waits on first.
    r2.callback(()).unwrap();
    // third now waits on second.
    r3.callback(()).unwrap();
    assert!(seen.borrow().is_empty());
    // first tells second to continue, which tells third to continue.
    r1.callback("result").unwrap();
    assert_eq!(*seen.borrow(), vec!["result"]);
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    StartOfCb(&'static str),
    FirstCallback(&'static str),
    SecondCallback(String),
    Final(String),
}

// Twisted: DeferredTests.test_nestedAsynchronousChainedDeferreds
#[test]
fn nested_asynchronous_chained_deferreds() {
    let results: Log<Ev> = new_log();
    let failures: Log<Failure> = new_log();
    let (inner, ri) = Deferred::<String>::new();
    let inner = Rc::new(RefCell::new(Some(inner)));

    let (res, fails) = (results.clone(), failures.clone());
    let cb = move |result: &'static str| -> Deferred<String> {
        res.borrow_mut().push(Ev::StartOfCb(result));
        let (r1, r2, inner) = (res.clone(), res.clone(), inner.clone());
        let fails = fails.clone();
        succeed("inner")
            .add_callback_deferred(move |_| {
                r1.borrow_mut().push(Ev::FirstCallback("inner"));
                // A Deferred that definitely has not fired yet.
                inner.borrow_mut().take().unwrap()
            })
            .add_callback(move |result: String| {
                r2.borrow_mut().push(Ev::SecondCallback(result.clone()));
                result.repeat(2)
            })
            .add_errback(move |f| {
                fails.borrow_mut().push(f.clone());
                Err(f)
            })
    };
    let res = results.clone();
    let fails = failures.clone();
    let _outer = succeed("outer")
        .add_callback_deferred(cb)
        .add_callback(move |v| res.borrow_mut().push(Ev::Final(v)))
        .add_errback(move |f| {
            fails.borrow_mut().push(f);
            Ok(())
        });
    // cb has been entered and the first callback of its Deferred has run.
    assert_eq!(
        *results.borrow(),
        vec![Ev::StartOfCb("outer"), Ev::FirstCallback("inner")]
    );
    // Once the inner Deferred fires, the outer chain continues.
    ri.callback("orange".to_owned()).unwrap();
    assert!(
        failures.borrow().is_empty(),
        "got errbacks but wasn't expecting any"
    );
    assert_eq!(
        *results.borrow(),
        vec![
            Ev::StartOfCb("outer"),
            Ev::FirstCallback("inner"),
            Ev::SecondCallback("orange".to_owned()),
            Ev::Final("orangeorange".to_owned()),
        ]
    );
}

// Twisted: DeferredTests.test_nestedAsynchronousChainedDeferredsWithExtraCallbacks
#[test]
fn nested_asynchronous_chained_deferreds_with_extra_callbacks() {
    let results: Log<String> = new_log();
    let failures: Log<Failure> = new_log();
    let (inner, ri) = Deferred::<String>::new();
    let inner = Rc::new(RefCell::new(Some(inner)));

    let (res, fails) = (results.clone(), failures.clone());
    let cb = move |result: &'static str| -> Deferred<Vec<String>> {
        res.borrow_mut().push(format!("start-of-cb {result}"));
        let (r1, r2, inner) = (res.clone(), res.clone(), inner.clone());
        let fails = fails.clone();
        succeed("inner")
            .add_callback_deferred(move |result| {
                r1.borrow_mut().push(format!("firstCallback {result}"));
                // A result-transforming callback added to the inner before it is returned.
                inner
                    .borrow_mut()
                    .take()
                    .unwrap()
                    .add_callback(|r: String| vec![r])
            })
            .add_callback(move |result: Vec<String>| {
                r2.borrow_mut().push(format!("secondCallback {result:?}"));
                [result.clone(), result].concat()
            })
            .add_errback(move |f| {
                fails.borrow_mut().push(f.clone());
                Err(f)
            })
    };
    let res = results.clone();
    let _outer = succeed("outer")
        .add_callback_deferred(cb)
        .add_callback(move |v| res.borrow_mut().push(format!("final {v:?}")));
    assert_eq!(
        *results.borrow(),
        vec!["start-of-cb outer", "firstCallback inner"]
    );
    ri.callback("withers".to_owned()).unwrap();
    assert!(failures.borrow().is_empty());
    assert_eq!(
        *results.borrow(),
        vec![
            "start-of-cb outer",
            "firstCallback inner",
            "secondCallback [\"withers\"]",
            "final [\"withers\", \"withers\"]",
        ]
    );
}

// Twisted: DeferredTests.test_innerCallbacksPreserved
#[test]
fn inner_callbacks_preserved() {
    let results: Log<Ev> = new_log();
    let failures: Log<Failure> = new_log();
    let (inner, ri) = Deferred::<String>::new();
    let inner = Rc::new(RefCell::new(Some(inner)));
    let (res, fails) = (results.clone(), failures.clone());
    let cb = move |result: &'static str| -> Deferred<String> {
        res.borrow_mut().push(Ev::StartOfCb(result));
        let (r1, r2, inner, fails) = (res.clone(), res.clone(), inner.clone(), fails.clone());
        succeed("inner")
            .add_callback_deferred(move |_| {
                r1.borrow_mut().push(Ev::FirstCallback("inner"));
                inner.borrow_mut().take().unwrap()
            })
            .add_callback(move |result: String| {
                r2.borrow_mut().push(Ev::SecondCallback(result.clone()));
                result.repeat(2)
            })
            .add_errback(move |f| {
                fails.borrow_mut().push(f.clone());
                Err(f)
            })
    };
    let outer = succeed("outer").add_callback_deferred(cb);
    ri.callback("orange".to_owned()).unwrap();
    let res = results.clone();
    let fails = failures.clone();
    let _ = outer
        .add_callback(move |v| res.borrow_mut().push(Ev::Final(v)))
        .add_errback(move |f| {
            fails.borrow_mut().push(f);
            Ok(())
        });
    assert!(failures.borrow().is_empty());
    assert_eq!(
        *results.borrow(),
        vec![
            Ev::StartOfCb("outer"),
            Ev::FirstCallback("inner"),
            Ev::SecondCallback("orange".to_owned()),
            Ev::Final("orangeorange".to_owned()),
        ]
    );
}

/// The `cb` of test_continueCallbackNotFirst / test_callbackOrderPreserved:
/// returns a Deferred that has fired but waits on `gatherResults([a])`.
fn cb_waiting_on_gather(
    results: &Log<String>,
    failures: &Log<Failure>,
    a: &Rc<RefCell<Option<Deferred<&'static str>>>>,
) -> impl FnOnce(&'static str) -> Deferred<()> + 'static {
    let (res, fails, a) = (results.clone(), failures.clone(), a.clone());
    move |result| {
        res.borrow_mut().push(format!("cb {result}"));
        let (d, r) = Deferred::<()>::new();
        let (r1, r2) = (res.clone(), res.clone());
        let returner = d
            .add_callback_deferred(move |()| {
                r1.borrow_mut().push("firstCallback ()".to_owned());
                gather_results(vec![a.borrow_mut().take().unwrap()], false)
            })
            .add_callback(move |result: Vec<&str>| {
                r2.borrow_mut().push(format!("secondCallback {result:?}"))
            })
            .add_errback(move |f| {
                fails.borrow_mut().push(f);
                Ok(())
            });
        r.callback(()).unwrap();
        returner
    }
}

// Twisted: DeferredTests.test_continueCallbackNotFirst
#[test]
fn continue_callback_not_first() {
    let results: Log<String> = new_log();
    let failures: Log<Failure> = new_log();
    let (a, ra) = Deferred::<&'static str>::new();
    let a = Rc::new(RefCell::new(Some(a)));
    let fails = failures.clone();
    let _ = succeed("outer")
        .add_callback_deferred(cb_waiting_on_gather(&results, &failures, &a))
        .add_errback(move |f| {
            fails.borrow_mut().push(f);
            Ok(())
        });
    assert_eq!(*results.borrow(), vec!["cb outer", "firstCallback ()"]);
    ra.callback("withers").unwrap();
    assert!(failures.borrow().is_empty());
    assert_eq!(
        *results.borrow(),
        vec![
            "cb outer",
            "firstCallback ()",
            "secondCallback [\"withers\"]"
        ]
    );
}

// Twisted: DeferredTests.test_callbackOrderPreserved
#[test]
fn callback_order_preserved() {
    let results: Log<String> = new_log();
    let failures: Log<Failure> = new_log();
    let (a, ra) = Deferred::<&'static str>::new();
    let a = Rc::new(RefCell::new(Some(a)));
    let (outer, ro) = Deferred::<&'static str>::new();
    let (res, fails) = (results.clone(), failures.clone());
    let _ = outer
        .add_callback_deferred(cb_waiting_on_gather(&results, &failures, &a))
        .add_callback(move |()| res.borrow_mut().push("final".to_owned()))
        .add_errback(move |f| {
            fails.borrow_mut().push(f);
            Ok(())
        });
    ro.callback("outer").unwrap();
    assert_eq!(*results.borrow(), vec!["cb outer", "firstCallback ()"]);
    ra.callback("withers").unwrap();
    assert!(failures.borrow().is_empty());
    assert_eq!(
        *results.borrow(),
        vec![
            "cb outer",
            "firstCallback ()",
            "secondCallback [\"withers\"]",
            "final"
        ]
    );
}

// Twisted: DeferredTests.test_resultOfDeferredResultOfDeferredOfFiredDeferredCalled
#[test]
fn result_of_deferred_result_of_deferred_of_fired_deferred_called() {
    let (first, r1) = Deferred::<()>::new();
    let (second, r2) = Deferred::<()>::new();
    let (third, r3) = Deferred::<u8>::new();
    let second = second.add_callback_deferred(move |()| third);
    let first = first.add_callback_deferred(move |()| second);
    r2.callback(()).unwrap();
    r1.callback(()).unwrap();
    r3.callback(3).unwrap();
    let seen: Log<u8> = new_log();
    let s = seen.clone();
    let _ = first.add_callback(move |v| s.borrow_mut().push(v));
    assert_eq!(*seen.borrow(), vec![3]);
}

// Twisted: DeferredTests.test_chainDeferredRecordsExplicitChain and test_reprWithChaining
#[test]
fn chain_deferred_records_explicit_chain() {
    let (a, ra) = Deferred::<()>::new();
    let (b, _rb) = Deferred::<()>::new();
    let b = b.chain_deferred(&ra);
    assert_eq!(
        format!("{a:?}"),
        format!(
            "<Deferred at {} waiting on Deferred at {}>",
            addr(&a),
            addr(&b)
        )
    );
}

// Twisted: DeferredTests.test_explicitChainClearedWhenResolved
#[test]
fn explicit_chain_cleared_when_resolved() {
    let (a, ra) = Deferred::<()>::new();
    let (b, rb) = Deferred::<()>::new();
    let _b = b.chain_deferred(&ra);
    assert!(format!("{a:?}").contains("waiting on"));
    rb.callback(()).unwrap();
    let s = format!("{a:?}");
    assert!(!s.contains("waiting on"), "{s}");
    assert!(s.contains("current result"), "{s}");
}

// Twisted: DeferredTests.test_chainDeferredRecordsImplicitChain
#[test]
fn chain_deferred_records_implicit_chain() {
    let (a, ra) = Deferred::<()>::new();
    let (b, _rb) = Deferred::<()>::new();
    let b_addr = addr(&b);
    let a = a.add_callback_deferred(move |()| b);
    ra.callback(()).unwrap();
    assert_eq!(
        format!("{a:?}"),
        format!("<Deferred at {} waiting on Deferred at {b_addr}>", addr(&a))
    );
}

// chainDeferred hands the result (value or failure) to the target; the source continues with ().
#[test]
fn chain_deferred_passes_value_and_failure() {
    let (a, ra) = Deferred::<i32>::new();
    let (b, rb) = Deferred::<i32>::new();
    let b = b.chain_deferred(&ra);
    rb.callback(4).unwrap();
    assert_eq!(a.into_result().unwrap().unwrap(), 4);
    assert!(b.into_result().unwrap().is_ok());

    let (a, ra) = Deferred::<i32>::new();
    let (b, rb) = Deferred::<i32>::new();
    let b = b.chain_deferred(&ra);
    rb.errback(generic("oops")).unwrap();
    assert!(a
        .into_result()
        .unwrap()
        .unwrap_err()
        .check::<GenericError>()
        .is_some());
    assert!(
        b.into_result().unwrap().is_ok(),
        "the failure was handed on, not kept"
    );
}

// chainDeferred into a target that already fired: the source gets the AlreadyCalledError.
#[test]
fn chain_deferred_into_fired_target_fails_with_already_called() {
    let (a, ra) = Deferred::<i32>::new();
    ra.callback(1).unwrap();
    let b = succeed(2).chain_deferred(&ra);
    let f = b.into_result().unwrap().unwrap_err();
    assert!(f.check::<AlreadyCalledError>().is_some());
    assert_eq!(a.into_result().unwrap().unwrap(), 1);
}

/// Builds Twisted's `chainDeferreds(howMany)` and returns the address of a
/// local in the final callback, a stand-in for the stack depth.
fn chain_deferreds(how_many: usize) -> usize {
    let stack = Rc::new(Cell::new(0usize));
    let (top, rtop) = Deferred::<()>::new();
    let (last, rlast) = Deferred::<()>::new();
    let mut resolvers: Vec<Resolver<()>> = Vec::new();
    // inner_0 returns inner_1 ... inner_{n-1} returns last.
    let mut next: Deferred<()> = last;
    for _ in 0..how_many {
        let (d, r) = Deferred::<()>::new();
        let n = next;
        next = d.add_callback_deferred(move |()| n);
        resolvers.push(r);
    }
    resolvers.reverse();
    let first_inner = next;
    let s = stack.clone();
    let _top = top
        .add_callback_deferred(move |()| first_inner)
        .add_callback(move |()| {
            let marker = 0u8;
            s.set(std::hint::black_box(&marker) as *const u8 as usize);
        });
    rtop.callback(()).unwrap();
    for r in &resolvers {
        r.callback(()).unwrap();
    }
    assert_eq!(stack.get(), 0, "the record callback must not have run yet");
    rlast.callback(()).unwrap();
    assert_ne!(stack.get(), 0);
    stack.get()
}

// Twisted: DeferredTests.test_boundedStackDepth
#[test]
fn bounded_stack_depth() {
    let one = chain_deferreds(1);
    assert_eq!(one, chain_deferreds(2));
    assert_eq!(one, chain_deferreds(1000));
}

const DEEP: usize = 100_000;

/// Runs `f` on a thread with a 1 MiB stack: a chain that recursed once per
/// level would overflow it many times over.
fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

/// `d_0 .. d_{n-1}`: d_i's callback returns d_{i+1} and then adds one; d_n is
/// plain. Returns the top Deferred and the resolvers of d_0 ..= d_n.
fn nested_chain(n: usize) -> (Deferred<usize>, Vec<Resolver<usize>>) {
    let (last, rlast) = Deferred::<usize>::new();
    let mut resolvers = vec![rlast];
    let mut next = last;
    for _ in 0..n {
        let (d, r) = Deferred::<usize>::new();
        let inner = next;
        next = d
            .add_callback_deferred(move |_| inner)
            .add_callback(|x| x + 1);
        resolvers.push(r);
    }
    resolvers.reverse();
    (next, resolvers)
}

// Twisted: DeferredTests.test_boundedStackDepth (100 000 levels, fired first to last)
#[test]
fn bounded_stack_depth_deep_forward() {
    on_small_stack(|| {
        let (top, resolvers) = nested_chain(DEEP);
        let (last, firsts) = resolvers.split_last().unwrap();
        for r in firsts {
            r.callback(0).unwrap();
        }
        assert!(!top.has_result());
        last.callback(1).unwrap();
        assert_eq!(top.into_result().unwrap().unwrap(), 1 + DEEP);
    });
}

// Twisted: DeferredTests.test_boundedStackDepth (100 000 levels, fired last to first)
#[test]
fn bounded_stack_depth_deep_reverse() {
    on_small_stack(|| {
        let (top, resolvers) = nested_chain(DEEP);
        for r in resolvers.iter().rev() {
            r.callback(1).unwrap();
        }
        assert_eq!(top.into_result().unwrap().unwrap(), 1 + DEEP);
    });
}

// Dropping 100 000 chained Deferreds that wait on each other, never fired at the end.
#[test]
fn dropping_deep_pending_chain_does_not_overflow() {
    on_small_stack(|| {
        let (top, resolvers) = nested_chain(DEEP);
        let (_last, firsts) = resolvers.split_last().unwrap();
        for r in firsts {
            r.callback(0).unwrap();
        }
        assert!(!top.has_result());
        drop(top);
        drop(resolvers);
    });
}

// Dropping 100 000 unfired Deferreds nested inside each other's callbacks.
#[test]
fn dropping_deep_unfired_nesting_does_not_overflow() {
    on_small_stack(|| {
        let (top, resolvers) = nested_chain(DEEP);
        drop(resolvers);
        drop(top);
    });
}
