//! The clock a Deferred needs for [`Deferred::add_timeout`]: a minimal
//! rendering of Twisted's `IReactorTime`, implemented by the `reactor` crate's
//! real reactor and by its test `Clock`.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use crate::errors::{CancelledError, TimeoutError};
use crate::{Deferred, Failure};

/// Scheduling of calls in the future. Mirrors Twisted's `IReactorTime`.
pub trait ReactorTime {
    /// The current time in seconds, on this clock's own scale. Mirrors
    /// `seconds()`.
    fn seconds(&self) -> f64;

    /// Runs `f` once, `delay` from now, on the loop thread. Mirrors
    /// `callLater`. The closure is boxed so the trait works as
    /// `dyn ReactorTime`; the `reactor` crate's `ReactorExt::call_later`
    /// takes any closure and returns a full `DelayedCall`.
    fn call_later_boxed(&self, delay: Duration, f: Box<dyn FnOnce()>) -> Box<dyn ScheduledCall>;
}

/// A call scheduled by [`ReactorTime::call_later_boxed`]. Mirrors the parts of
/// Twisted's `IDelayedCall` that `addTimeout` uses.
pub trait ScheduledCall {
    /// True if the call has neither run nor been cancelled.
    fn active(&self) -> bool;
    /// Cancels the call if it is still active; does nothing otherwise.
    fn cancel(&self);
}

impl<T: 'static> Deferred<T> {
    /// Cancels this Deferred if it has not fired `timeout` from now on `clock`,
    /// and turns the resulting [`CancelledError`] into a [`TimeoutError`] that
    /// says how long it waited. Mirrors `Deferred.addTimeout(timeout, clock)`.
    ///
    /// The timeout covers the callbacks added before this call, not after. If
    /// the Deferred has a canceller that turns cancellation into a value, that
    /// value is the result. A manual `cancel()` before the timeout keeps the
    /// plain `CancelledError`.
    pub fn add_timeout<C: ReactorTime + ?Sized>(self, timeout: Duration, clock: &C) -> Deferred<T> {
        self.add_timeout_with(timeout, clock, |result, timeout| match result {
            Ok(v) => Ok(v),
            Err(f) => {
                f.trap::<CancelledError>()?;
                Err(Failure::new(TimeoutError { timeout }))
            }
        })
    }

    /// Like [`add_timeout`](Self::add_timeout), with Twisted's
    /// `onTimeoutCancel`: on timeout, `on_timeout_cancel(result, timeout)`
    /// decides the result instead of the default conversion.
    pub fn add_timeout_with<C, F>(
        self,
        timeout: Duration,
        clock: &C,
        on_timeout_cancel: F,
    ) -> Deferred<T>
    where
        C: ReactorTime + ?Sized,
        F: FnOnce(Result<T, Failure>, Duration) -> Result<T, Failure> + 'static,
    {
        let timed_out = Rc::new(Cell::new(false));
        let flag = Rc::clone(&timed_out);
        // Weak: the timer must not keep a Deferred alive that nobody can fire.
        let target = Rc::downgrade(&self.core);
        let call = clock.call_later_boxed(
            timeout,
            Box::new(move || {
                flag.set(true);
                if let Some(core) = target.upgrade() {
                    core.cancel();
                }
            }),
        );
        self.add_both(move |r| {
            if timed_out.get() {
                on_timeout_cancel(r, timeout)
            } else {
                r
            }
        })
        .add_both(move |r| {
            if call.active() {
                call.cancel();
            }
            r
        })
    }
}
