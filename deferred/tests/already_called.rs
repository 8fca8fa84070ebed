//! Port of Twisted's test_defer.py `AlreadyCalledTests`: firing a Deferred
//! twice, in all four callback/errback combinations, is rejected with
//! `AlreadyCalledError`, and the first result stands. The Rust error always
//! carries what Twisted's debug mode adds (`testAlreadyCalledDebug_*`): where
//! the Deferred was created, first fired, and fired again.

mod common;

use common::{generic, new_log, Log};
use deferred::{AlreadyCalledError, CancelledError, Deferred, Failure};

/// Adds Twisted's `addCallbacks(self._callback, self._errback)` recording
/// what arrived.
fn record(d: Deferred<&'static str>) -> Log<Result<&'static str, String>> {
    let seen: Log<Result<&'static str, String>> = new_log();
    let (s1, s2) = (seen.clone(), seen.clone());
    let _ = d.add_callbacks(
        move |v| {
            s1.borrow_mut().push(Ok(v));
            Ok(())
        },
        move |f: Failure| {
            s2.borrow_mut().push(Err(f.error_message()));
            Ok(())
        },
    );
    seen
}

fn this_file() -> &'static str {
    file!()
}

fn check_locations(e: &AlreadyCalledError, created: u32, first: u32, again: u32) {
    assert_eq!(e.created.line(), created, "created");
    assert_eq!(e.first_fired.line(), first, "first fired");
    assert_eq!(e.fired_again.line(), again, "fired again");
    for loc in [e.created, e.first_fired, e.fired_again] {
        assert_eq!(loc.file(), this_file());
    }
    // The message names all three places (Twisted's debug-mode message).
    let msg = e.to_string();
    for line in [created, first, again] {
        assert!(msg.contains(&format!("{}:{line}:", this_file())), "{msg}");
    }
}

// Twisted: AlreadyCalledTests.testAlreadyCalled_CC and testAlreadyCalledDebug_CC
#[test]
fn already_called_cc() {
    let created = line!() + 1;
    let (d, r) = Deferred::<&str>::new();
    let seen = record(d);
    let first = line!() + 1;
    r.callback("hello").unwrap();
    let again = line!() + 1;
    let e = r.callback("twice").unwrap_err();
    check_locations(&e, created, first, again);
    assert_eq!(*seen.borrow(), vec![Ok("hello")]);
}

// Twisted: AlreadyCalledTests.testAlreadyCalled_CE and testAlreadyCalledDebug_CE
#[test]
fn already_called_ce() {
    let created = line!() + 1;
    let (d, r) = Deferred::<&str>::new();
    let seen = record(d);
    let first = line!() + 1;
    r.callback("hello").unwrap();
    let again = line!() + 1;
    let e = r.errback(generic("runtime")).unwrap_err();
    check_locations(&e, created, first, again);
    assert_eq!(*seen.borrow(), vec![Ok("hello")]);
}

// Twisted: AlreadyCalledTests.testAlreadyCalled_EC and testAlreadyCalledDebug_EC
#[test]
fn already_called_ec() {
    let created = line!() + 1;
    let (d, r) = Deferred::<&str>::new();
    let seen = record(d);
    let first = line!() + 1;
    r.errback(generic("runtime")).unwrap();
    let again = line!() + 1;
    let e = r.callback("twice").unwrap_err();
    check_locations(&e, created, first, again);
    assert_eq!(*seen.borrow(), vec![Err("runtime".to_owned())]);
}

// Twisted: AlreadyCalledTests.testAlreadyCalled_EE and testAlreadyCalledDebug_EE
#[test]
fn already_called_ee() {
    let created = line!() + 1;
    let (d, r) = Deferred::<&str>::new();
    let seen = record(d);
    let first = line!() + 1;
    r.errback(generic("runtime")).unwrap();
    let again = line!() + 1;
    let e = r.errback(generic("runtime 2")).unwrap_err();
    check_locations(&e, created, first, again);
    assert_eq!(*seen.borrow(), vec![Err("runtime".to_owned())]);
}

// resolve() is callback or errback: the same rule holds.
#[test]
fn already_called_through_resolve_and_clones() {
    let created = line!() + 1;
    let (d, r) = Deferred::<&str>::new();
    let seen = record(d);
    let other = r.clone();
    let first = line!() + 1;
    other.resolve(Ok("first")).unwrap();
    let again = line!() + 1;
    let e = r.resolve(Err(Failure::new(generic("second")))).unwrap_err();
    check_locations(&e, created, first, again);
    assert_eq!(*seen.borrow(), vec![Ok("first")]);
}

// After a cancel without canceller, the first fire is the cancel itself.
#[test]
fn already_called_after_cancel_points_at_cancel() {
    let created = line!() + 1;
    let (d, r) = Deferred::<&str>::new();
    let first = line!() + 1;
    d.cancel();
    r.callback("swallowed").unwrap();
    let again = line!() + 1;
    let e = r.callback("rejected").unwrap_err();
    check_locations(&e, created, first, again);
    let f = d.into_result().unwrap().unwrap_err();
    assert!(f.check::<CancelledError>().is_some());
}

// Twisted: AlreadyCalledTests.testSwitchDebugging (debug info is always on: firing
// after or before adding callbacks works either way)
#[test]
fn switch_debugging() {
    let seen: Log<()> = new_log();
    let (d, r) = Deferred::<()>::new();
    let s = seen.clone();
    let _ = d.add_both(move |_| {
        s.borrow_mut().push(());
        Ok(())
    });
    r.callback(()).unwrap();

    let (d, r) = Deferred::<()>::new();
    r.callback(()).unwrap();
    let s = seen.clone();
    let _ = d.add_both(move |_| {
        s.borrow_mut().push(());
        Ok(())
    });
    assert_eq!(seen.borrow().len(), 2);
}
