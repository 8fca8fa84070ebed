//! Reactor runs bounded in time: trial's `ReactorBuilder.runReactor`, which
//! crashes the reactor if a test has not stopped it after a timeout.
//!
//! The net *crashes* the reactor (`Reactor::crash`, Twisted's
//! `reactor.crash()`) rather than stopping it: a hung test may be hung in a
//! shutdown trigger or a pool's shutdown hold, which a `stop()` would wait
//! for.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ::deferred::{Deferred, Failure};
use ::reactor::prelude::*;
use ::reactor::testing::FakeReactor;
use ::reactor::{DelayedCall, Reactor, RunError};

use crate::bounded::TIMEOUT;

/// A timed call that crashes the reactor if the test has not finished in
/// time; [`SafetyNet::disarm`] then fails the test. Dropping it cancels the
/// call (which holds a reactor handle).
#[derive(Debug)]
pub struct SafetyNet {
    call: DelayedCall,
    fired: Rc<Cell<bool>>,
    after: Duration,
}

impl SafetyNet {
    /// A net that fires after [`TIMEOUT`].
    pub fn arm(reactor: &Reactor) -> SafetyNet {
        Self::arm_for(reactor, TIMEOUT)
    }

    /// A net that fires after `after`.
    pub fn arm_for(reactor: &Reactor, after: Duration) -> SafetyNet {
        let fired = Rc::new(Cell::new(false));
        let (f, r) = (Rc::clone(&fired), reactor.clone());
        let call = reactor.call_later(after, move || {
            f.set(true);
            r.crash();
        });
        SafetyNet { call, fired, after }
    }

    /// True if the net caught a hang.
    pub fn fired(&self) -> bool {
        self.fired.get()
    }

    /// Fails the test if the net fired; cancels it otherwise.
    ///
    /// # Panics
    /// If the net fired.
    pub fn disarm(self) {
        assert!(
            !self.fired.get(),
            "safety net fired: the reactor did not stop on its own within {:?}",
            self.after
        );
    }
}

impl Drop for SafetyNet {
    fn drop(&mut self) {
        if self.call.active() {
            let _ = self.call.cancel();
        }
    }
}

/// Runs `reactor` until it stops, under a [`SafetyNet`] of [`TIMEOUT`], and
/// returns what `run` returned.
///
/// # Panics
/// If the safety net had to crash the reactor (the test would have hung).
pub fn run_bounded(reactor: &Reactor) -> Result<(), RunError> {
    let net = SafetyNet::arm(reactor);
    let result = reactor.run();
    net.disarm();
    result
}

/// Runs `reactor` until the Deferred made by `start` (called once the
/// reactor runs) fires, then stops it and returns the result, under a
/// [`SafetyNet`] of `timeout`.
///
/// # Panics
/// If the reactor cannot run, or the net fired.
pub fn run_chain<T: 'static>(
    reactor: &Reactor,
    timeout: Duration,
    start: impl FnOnce() -> Deferred<T> + 'static,
) -> Result<T, Failure> {
    let out: Rc<RefCell<Option<Result<T, Failure>>>> = Rc::new(RefCell::new(None));
    let (o, r) = (Rc::clone(&out), reactor.clone());
    reactor.call_when_running(move || {
        let _ = start().add_both(move |res| {
            *o.borrow_mut() = Some(res);
            let _ = r.stop();
            Ok(())
        });
    });
    let net = SafetyNet::arm_for(reactor, timeout);
    reactor.run().expect("the reactor runs");
    net.disarm();
    let result = out.borrow_mut().take();
    result.expect("the test's Deferred fired before the reactor stopped")
}

/// [`run_chain`] for an `async` test body (Twisted's `inlineCallbacks`).
///
/// # Panics
/// As [`run_chain`].
pub fn run_async<T, F, Fut>(reactor: &Reactor, timeout: Duration, body: F) -> Result<T, Failure>
where
    T: 'static,
    F: FnOnce() -> Fut + 'static,
    Fut: Future<Output = Result<T, Failure>> + 'static,
{
    let r = reactor.clone();
    run_chain(reactor, timeout, move || r.ensure_deferred(body()))
}

/// Turns `reactor` until `d` has a result, and returns it; fails the test
/// after [`TIMEOUT`]. Work done by real threads (a stopper thread joining
/// workers) is polled for. It takes turns only: jobs of
/// [`PoolMode::Manual`](::reactor::testing::PoolMode::Manual) pools run when
/// the test calls `run_jobs` (and `run_jobs` must not be used with
/// real-thread pools: it would take their workers' quit messages).
///
/// # Panics
/// If `d` has no result after [`TIMEOUT`].
pub fn fake_wait<T: 'static>(reactor: &FakeReactor, d: Deferred<T>) -> Result<T, Failure> {
    let deadline = Instant::now() + TIMEOUT;
    let mut d = d;
    loop {
        reactor.pump();
        match d.into_result() {
            Ok(r) => return r,
            Err(back) => d = back,
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for a Deferred on the fake reactor"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}
