//! `.await` on a [`Deferred`]: the Deferred side of the async bridge.
//!
//! The executor that drives `!Send` futures on the loop thread and hands back
//! a Deferred (Twisted's `ensureDeferred`) lives in the `reactor` crate.

use std::cell::RefCell;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::core::Core;
use crate::{Deferred, Failure};

struct Slot<T> {
    result: Option<Result<T, Failure>>,
    waker: Option<Waker>,
    finished: bool,
}

/// The future of a [`Deferred`], from `deferred.await` or
/// `deferred.into_future()`. Output: `Result<T, Failure>`.
///
/// Dropping it before it completes cancels the Deferred (Twisted's
/// `Deferred.asFuture` links cancellation the same way), so an abandoned
/// `.await` on a pool query removes the query if it has not started.
#[must_use = "futures do nothing unless polled"]
pub struct DeferredFuture<T> {
    slot: Rc<RefCell<Slot<T>>>,
    core: Rc<Core>,
}

impl<T: 'static> IntoFuture for Deferred<T> {
    type Output = Result<T, Failure>;
    type IntoFuture = DeferredFuture<T>;

    fn into_future(self) -> DeferredFuture<T> {
        let slot = Rc::new(RefCell::new(Slot {
            result: None,
            waker: None,
            finished: false,
        }));
        let core = Rc::clone(&self.core);
        let s = Rc::clone(&slot);
        let _ = self.add_both(move |r| {
            let waker = {
                let mut slot = s.borrow_mut();
                slot.result = Some(r);
                slot.waker.take()
            };
            if let Some(w) = waker {
                w.wake();
            }
            Ok(())
        });
        DeferredFuture { slot, core }
    }
}

impl<T> Future for DeferredFuture<T> {
    type Output = Result<T, Failure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut slot = self.slot.borrow_mut();
        if let Some(r) = slot.result.take() {
            slot.finished = true;
            return Poll::Ready(r);
        }
        match &slot.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => slot.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<T> Drop for DeferredFuture<T> {
    fn drop(&mut self) {
        let pending = {
            let slot = self.slot.borrow();
            !slot.finished && slot.result.is_none()
        };
        if pending {
            self.core.cancel();
        }
    }
}

impl<T> std::fmt::Debug for DeferredFuture<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeferredFuture({:?})", &*self.core)
    }
}
