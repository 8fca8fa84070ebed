//! [`react`]: run a program's main function on a reactor and turn its
//! outcome into an exit code. Mirrors `twisted.internet.task.react`.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

use deferred::{Deferred, Failure};

use crate::interfaces::{ReactorCore, ReactorExt};
use crate::reactor::Reactor;
use crate::triggers::Phase;

/// A request to end the program with this exit code: a `main` given to
/// [`react`] whose Deferred fails with an `Exit` (anywhere in the failure's
/// `source()` chain) makes `react` return that code without logging an
/// error. Mirrors raising `SystemExit(code)` in Twisted's `react`.
///
/// # Examples
///
/// ```
/// use reactor::{react, Exit};
/// let code = react(|_reactor| deferred::fail::<()>(Exit(23)));
/// assert_eq!(code, 23);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("exit with status {0}")]
pub struct Exit(pub i32);

/// Runs `main(&reactor)` on a new reactor, runs the reactor until the
/// Deferred `main` returned has fired, stops it, and returns the exit code
/// for the outcome. Mirrors `twisted.internet.task.react(main)`, which
/// calls `sys.exit` with that code; here the caller does, e.g.
/// `std::process::exit(reactor::react(main))`.
///
/// - success: 0;
/// - a failure carrying [`Exit`]`(code)`: `code` (Twisted's `SystemExit`);
/// - any other failure, or a panic in `main`: the failure is logged at error
///   level as `main function encountered error`, and 1;
/// - the reactor stopped (by `main`'s own code) before the Deferred fired:
///   the Deferred's outcome if it fires during shutdown, else 0; `react`
///   never stops the reactor twice.
///
/// The new reactor is this thread's default reactor while `react` runs (so
/// a `ConnectionPool` made without `cp_reactor` runs on it), and the previous
/// default is restored when it returns. If the OS refuses the reactor's
/// epoll instance or eventfd, the error is logged and the code is 1.
///
/// # Examples
///
/// ```
/// use reactor::prelude::*;
/// use reactor::react;
/// use std::time::Duration;
///
/// let code = react(|reactor| {
///     let (d, resolver) = deferred::Deferred::new();
///     reactor.call_later(Duration::from_millis(1), move || {
///         let _ = resolver.callback("done");
///     });
///     d
/// });
/// assert_eq!(code, 0);
/// ```
pub fn react<T, F>(main: F) -> i32
where
    T: 'static,
    F: FnOnce(&Reactor) -> Deferred<T>,
{
    let reactor = match Reactor::new() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "react: could not create a reactor");
            return 1;
        }
    };
    let _default = crate::global::install_for_scope(reactor.clone());
    let code = Rc::new(Cell::new(0));
    let finished = catch_unwind(AssertUnwindSafe(|| main(&reactor)))
        .unwrap_or_else(|payload| deferred::fail(Failure::from_panic(payload)));

    // As Twisted: once shutdown has begun, the outcome is only recorded; the
    // reactor is not stopped a second time.
    let stopping = Rc::new(Cell::new(false));
    let s = Rc::clone(&stopping);
    reactor.add_system_event_trigger(Phase::Before, "shutdown", move || s.set(true));

    // Weak: the reactor may hold the resolver of `finished` (in a trigger or
    // a timer), and `react` must not make the reactor keep itself alive.
    let weak = reactor.weak();
    let c = Rc::clone(&code);
    let stop = move |result: Result<T, Failure>, stop_reactor: bool| {
        if stop_reactor {
            if let Some(r) = Reactor::upgrade_weak(&weak) {
                // ReactorNotRunning: someone stopped it meanwhile; fine.
                let _ = r.stop();
            }
        }
        if let Err(failure) = result {
            match failure.check::<Exit>() {
                Some(exit) => c.set(exit.0),
                None => {
                    tracing::error!(
                        failure = %failure,
                        error_type = failure.type_name(),
                        location = %failure.location(),
                        "main function encountered error"
                    );
                    c.set(1);
                }
            }
        }
    };
    let weak = reactor.weak();
    let _ = finished.add_both(move |result| {
        if stopping.get() {
            stop(result, false);
        } else if let Some(r) = Reactor::upgrade_weak(&weak) {
            r.call_when_running(move || stop(result, true));
        }
        Ok(())
    });
    if let Err(e) = reactor.run() {
        // A new reactor always runs; kept typed rather than unwrapped.
        tracing::error!(error = %e, "react: the reactor did not run");
        return 1;
    }
    code.get()
}
