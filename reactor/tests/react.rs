//! `reactor::react`: ports Twisted's `ReactTests` and `ReactCoroFnTests`
//! (`src/twisted/test/test_task.py`) for `twisted.internet.task.react`.
//!
//! Twisted runs them on a `_FakeReactor` whose clock jumps to the next
//! timer; here each runs a real reactor with millisecond timers, and asserts
//! order and outcome, never durations. A safety net stops a reactor that
//! would otherwise run forever, and is cancelled once `react` returns.
//! `test_arguments` has no counterpart: a Rust `main` closure captures its
//! arguments.

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use common::Events;
use deferred::{Deferred, Failure};
use reactor::prelude::*;
use reactor::{default_reactor, react, DelayedCall, Exit, Phase, Reactor};
use test_support::logs::{capture_logs, errors_containing};
use test_support::TIMEOUT as SAFETY_NET;

/// The error the failing tests use (Twisted's `ExpectedException`).
#[derive(Debug, thiserror::Error)]
#[error("expected")]
struct ExpectedError;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// What a test keeps from inside `main`: the reactor (to check it stopped)
/// and the safety net to cancel.
#[derive(Default, Clone)]
struct Seen {
    reactor: Rc<RefCell<Option<Reactor>>>,
    net: Rc<RefCell<Option<DelayedCall>>>,
}

impl Seen {
    /// Records `reactor` and arms the safety net on it.
    fn enter(&self, reactor: &Reactor) {
        *self.reactor.borrow_mut() = Some(reactor.clone());
        let r = reactor.clone();
        let net = reactor.call_later(SAFETY_NET, move || {
            tracing::error!("safety net: the reactor was still running");
            let _ = r.stop();
        });
        *self.net.borrow_mut() = Some(net);
    }

    /// After `react`: the reactor was stopped (not crashed, not left
    /// running), and the safety net did not fire.
    fn assert_stopped(&self) {
        let net = self.net.borrow_mut().take().expect("main ran");
        assert!(net.cancel().is_ok(), "the safety net stopped the reactor");
        let reactor = self.reactor.borrow_mut().take().expect("main ran");
        assert!(!reactor.running());
        assert!(reactor.run().is_err(), "stopped, so not restartable");
    }
}

/// The errors logged as `main function encountered error`.
fn main_errors(logs: &[test_support::logs::Logged]) -> usize {
    errors_containing(logs, "main function encountered error").len()
}

// Twisted: ReactTests.test_runsUntilAsyncCallback
#[test]
fn test_runs_until_async_callback() {
    let seen = Seen::default();
    let events = Events::new();
    let (s, e) = (seen.clone(), events.clone());
    let code = react(move |reactor| {
        s.enter(reactor);
        let (d, resolver) = Deferred::<()>::new();
        reactor.call_later(ms(1), e.pusher("time passed"));
        let e = e.clone();
        reactor.call_later(ms(2), move || {
            e.push("finished");
            let _ = resolver.callback(());
        });
        d
    });
    assert_eq!(code, 0);
    assert_eq!(events.get(), ["time passed", "finished"]);
    seen.assert_stopped();
}

// Twisted: ReactTests.test_runsUntilSyncCallback
#[test]
fn test_runs_until_sync_callback() {
    let seen = Seen::default();
    let s = seen.clone();
    let code = react(move |reactor| {
        s.enter(reactor);
        deferred::succeed(())
    });
    assert_eq!(code, 0);
    seen.assert_stopped();
}

// Twisted: ReactTests.test_runsUntilAsyncErrback
#[test]
fn test_runs_until_async_errback() {
    let seen = Seen::default();
    let s = seen.clone();
    let (code, logs) = capture_logs(|| {
        react(move |reactor| {
            s.enter(reactor);
            let (d, resolver) = Deferred::<()>::new();
            reactor.call_later(ms(1), move || {
                let _ = resolver.errback(ExpectedError);
            });
            d
        })
    });
    assert_eq!(code, 1);
    let errors = errors_containing(&logs, "main function encountered error");
    assert_eq!(errors.len(), 1, "{logs:?}");
    assert_eq!(errors[0].field("failure"), Some("expected"));
    seen.assert_stopped();
}

// Twisted: ReactTests.test_runsUntilSyncErrback
#[test]
fn test_runs_until_sync_errback() {
    let seen = Seen::default();
    let s = seen.clone();
    let (code, logs) = capture_logs(|| {
        react(move |reactor| {
            s.enter(reactor);
            deferred::fail::<()>(ExpectedError)
        })
    });
    assert_eq!(code, 1);
    assert_eq!(main_errors(&logs), 1, "{logs:?}");
    seen.assert_stopped();
}

// Twisted: ReactTests.test_singleStopCallback: the Deferred fires during
// shutdown, after `main`'s own code stopped the reactor; react does not stop
// it again.
#[test]
fn test_single_stop_callback() {
    let seen = Seen::default();
    let s = seen.clone();
    let (code, logs) = capture_logs(|| {
        react(move |reactor| {
            s.enter(reactor);
            let r = reactor.clone();
            reactor.call_later(ms(1), move || r.stop().unwrap());
            let (d, resolver) = Deferred::<()>::new();
            reactor.add_system_event_trigger(Phase::During, "shutdown", move || {
                resolver.callback(()).unwrap();
            });
            d
        })
    });
    assert_eq!(code, 0);
    assert!(
        logs.iter().all(|l| l.level > tracing::Level::WARN),
        "{logs:?}"
    );
    seen.assert_stopped();
}

// Twisted: ReactTests.test_singleStopErrback
#[test]
fn test_single_stop_errback() {
    let seen = Seen::default();
    let s = seen.clone();
    let (code, logs) = capture_logs(|| {
        react(move |reactor| {
            s.enter(reactor);
            let r = reactor.clone();
            reactor.call_later(ms(1), move || r.stop().unwrap());
            let (d, resolver) = Deferred::<()>::new();
            reactor.add_system_event_trigger(Phase::During, "shutdown", move || {
                resolver.errback(ExpectedError).unwrap();
            });
            d
        })
    });
    assert_eq!(code, 1);
    assert_eq!(main_errors(&logs), 1, "{logs:?}");
    seen.assert_stopped();
}

// Twisted: ReactTests.test_defaultReactor, turned around: Twisted's react
// runs the global reactor; this one makes a reactor and installs it as the
// thread's default while `main` runs, then puts the previous default back.
#[test]
fn test_default_reactor_is_the_reacting_one_and_is_restored() {
    let before = default_reactor();
    let seen = Seen::default();
    let s = seen.clone();
    let (b, same) = (before.clone(), Rc::new(RefCell::new(None)));
    let sm = Rc::clone(&same);
    let code = react(move |reactor| {
        s.enter(reactor);
        *sm.borrow_mut() = Some((
            Reactor::ptr_eq(&default_reactor(), reactor),
            Reactor::ptr_eq(&b, reactor),
        ));
        deferred::succeed(())
    });
    assert_eq!(code, 0);
    assert_eq!(*same.borrow(), Some((true, false)));
    assert!(Reactor::ptr_eq(&default_reactor(), &before));
    seen.assert_stopped();
}

// Twisted: ReactTests.test_exitWithDefinedCode
#[test]
fn test_exit_with_defined_code() {
    let (code, logs) = capture_logs(|| react(|_| deferred::fail::<()>(Exit(23))));
    assert_eq!(code, 23);
    assert_eq!(main_errors(&logs), 0, "an Exit is not an error: {logs:?}");
}

/// An error caused by an `Exit`, as a subclass of `SystemExit` would be in
/// Python: `check` finds the `Exit` through `source()`.
#[derive(Debug, thiserror::Error)]
#[error("shutting down on request")]
struct Shutdown(#[source] Exit);

// No direct Twisted test; Twisted's `result.check(SystemExit)` matches
// subclasses, and Failure::check walks the source chain.
#[test]
fn test_exit_found_through_the_source_chain() {
    let code = react(|_| deferred::fail::<()>(Shutdown(Exit(4))));
    assert_eq!(code, 4);
}

// Twisted: ReactTests.test_synchronousStop
#[test]
fn test_synchronous_stop() {
    let seen = Seen::default();
    let s = seen.clone();
    let code = react(move |reactor| {
        s.enter(reactor);
        let (d, resolver) = Deferred::<()>::new();
        let r = reactor.clone();
        reactor.call_when_running(move || {
            r.stop().unwrap();
            resolver.callback(()).unwrap();
        });
        d
    });
    assert_eq!(code, 0);
    seen.assert_stopped();
}

// Twisted: ReactTests.test_asynchronousStop: the reactor stops and the
// Deferred never fires.
#[test]
fn test_asynchronous_stop() {
    let seen = Seen::default();
    let s = seen.clone();
    let never = Rc::new(RefCell::new(None));
    let n = Rc::clone(&never);
    let code = react(move |reactor| {
        s.enter(reactor);
        let r = reactor.clone();
        reactor.call_later(ms(1), move || r.stop().unwrap());
        let (d, resolver) = Deferred::<()>::new();
        *n.borrow_mut() = Some(resolver);
        d
    });
    assert_eq!(code, 0);
    assert!(!never.borrow().as_ref().expect("main ran").called());
    seen.assert_stopped();
}

// No direct Twisted test (a Python `main` that raises fails the Deferred
// through ensureDeferred): a panic in `main` is a failure, logged, code 1.
#[test]
fn test_panic_in_main_is_a_failure() {
    let (code, logs) = capture_logs(|| react(|_| -> Deferred<()> { panic!("main blew up") }));
    assert_eq!(code, 1);
    let errors = errors_containing(&logs, "main function encountered error");
    assert_eq!(errors.len(), 1, "{logs:?}");
    assert_eq!(errors[0].field("failure"), Some("panicked: main blew up"));
}

// Twisted: ReactCoroFnTests.test_runsUntilAsyncCallback
#[test]
fn test_coroutine_runs_until_async_callback() {
    let seen = Seen::default();
    let events = Events::new();
    let (s, e) = (seen.clone(), events.clone());
    let code = react(move |reactor| {
        s.enter(reactor);
        let (d, resolver) = Deferred::<()>::new();
        reactor.call_later(ms(1), e.pusher("time passed"));
        reactor.call_later(ms(2), move || resolver.callback(()).unwrap());
        let e = e.clone();
        reactor.ensure_deferred(async move {
            d.await?;
            e.push("awaited");
            Ok(())
        })
    });
    assert_eq!(code, 0);
    assert_eq!(events.get(), ["time passed", "awaited"]);
    seen.assert_stopped();
}

// Twisted: ReactCoroFnTests.test_runsUntilAsyncErrback
#[test]
fn test_coroutine_runs_until_async_errback() {
    let seen = Seen::default();
    let s = seen.clone();
    let (code, logs) = capture_logs(|| {
        react(move |reactor| {
            s.enter(reactor);
            let (d, resolver) = Deferred::<()>::new();
            reactor.call_later(ms(1), move || resolver.errback(ExpectedError).unwrap());
            reactor.ensure_deferred(async move { d.await })
        })
    });
    assert_eq!(code, 1);
    assert_eq!(main_errors(&logs), 1, "{logs:?}");
    seen.assert_stopped();
}

// Twisted: ReactCoroFnTests.test_exitWithDefinedCode
#[test]
fn test_coroutine_exit_with_defined_code() {
    let code = react(|reactor| {
        reactor.ensure_deferred(async {
            deferred::fail::<()>(Exit(23)).await?;
            Err::<(), Failure>(Failure::msg("not reached"))
        })
    });
    assert_eq!(code, 23);
}
