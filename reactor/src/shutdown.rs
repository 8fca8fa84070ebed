//! Shutdown holds ([`ShutdownHold`]): how the loop keeps turning after
//! `stop()` until the work that must finish first (a connection pool's jobs) has finished, and how
//! the `after` phase of `shutdown` waits for it.
//!
//! Twisted's `ConnectionPool.finalClose` is a `during`/`shutdown` trigger
//! that blocks the reactor thread while it joins the pool's threads, so by
//! the time any `after`/`shutdown` trigger runs, the pool has closed. Here
//! nothing blocks the loop: a closing pool takes a [`ShutdownHold`]; while
//! any hold is held, the loop keeps turning (delivering thread results,
//! running timers) and the `after` phase waits; when the last hold is
//! dropped, the `after` phase runs on the next turn, and then `run` returns.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use deferred::{Deferred, Resolver};

/// A hold on a reactor's shutdown, from
/// [`ReactorCore::hold_shutdown`](crate::ReactorCore::hold_shutdown):
/// while any is held, a stopped reactor keeps turning and the `after` phase
/// of `shutdown` waits. Releasing it is dropping it. Not in Twisted, whose
/// `ConnectionPool.finalClose` blocks the reactor thread instead.
#[derive(Debug)]
pub struct ShutdownHold {
    count: Option<Rc<Cell<usize>>>,
}

impl ShutdownHold {
    /// A hold that holds nothing.
    pub fn detached() -> Self {
        ShutdownHold { count: None }
    }

    pub(crate) fn on(count: &Rc<Cell<usize>>) -> Self {
        count.set(count.get() + 1);
        ShutdownHold {
            count: Some(Rc::clone(count)),
        }
    }
}

impl Drop for ShutdownHold {
    fn drop(&mut self) {
        if let Some(c) = &self.count {
            c.set(c.get().saturating_sub(1));
        }
    }
}

/// The holds on one reactor's shutdown, and the `after` phase waiting for
/// them.
#[derive(Debug, Default)]
pub(crate) struct ShutdownGate {
    holds: Rc<Cell<usize>>,
    /// The parked `after` phases of `shutdown` (one per firing), while holds
    /// are held.
    waiters: RefCell<Vec<Resolver<()>>>,
}

impl ShutdownGate {
    /// Takes a hold.
    pub(crate) fn hold(&self) -> ShutdownHold {
        ShutdownHold::on(&self.holds)
    }

    /// True while a hold is held or the `after` phase is still parked: the
    /// loop of a stopped reactor must keep turning.
    pub(crate) fn pending(&self) -> bool {
        self.holds.get() > 0 || !self.waiters.borrow().is_empty()
    }

    /// The triggers' gate before an event's `after` phase: for `shutdown`
    /// with holds held, a Deferred that [`release`](Self::release) fires.
    pub(crate) fn gate(&self, event: &str) -> Option<Deferred<()>> {
        if event != "shutdown" || self.holds.get() == 0 {
            return None;
        }
        let (d, r) = Deferred::new();
        self.waiters.borrow_mut().push(r);
        Some(d)
    }

    /// Called once per turn: once no hold is left, runs the parked `after`
    /// phase (on the loop, never inside a hold's drop).
    pub(crate) fn release(&self) {
        if self.holds.get() > 0 {
            return;
        }
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for r in waiters {
            let _ = r.callback(());
        }
    }
}
