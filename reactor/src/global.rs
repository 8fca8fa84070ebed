//! The per-thread default reactor, standing in for Twisted's global
//! `from twisted.internet import reactor`.
//!
//! A Twisted program has one reactor, and code that does not name one (a
//! `ConnectionPool` without `cp_reactor`, `ensureDeferred`) uses it. A Rust
//! thread can make several, so the default is chosen so that the obvious
//! program works and an ambiguous one fails loudly instead of hanging:
//!
//! 1. a reactor installed with [`install_reactor`];
//! 2. else the one reactor this thread made with [`Reactor::new`] that is
//!    still alive (so `let r = Reactor::new()?; ConnectionPool::new(..)`
//!    binds the pool to `r`, which the program then runs);
//! 3. else, when the thread has made none, a new one, kept as the default
//!    (and so alive: a reactor the program makes after it makes the default
//!    ambiguous, since something may already be bound to the first);
//! 4. with several alive and none installed, the choice is ambiguous:
//!    [`try_default_reactor`] says so ([`AmbiguousReactor`]), and
//!    [`default_reactor`] logs an error and takes the oldest.

use std::cell::RefCell;

use crate::reactor::{Reactor, ReactorWeak};

struct DefaultSlot {
    reactor: Reactor,
    /// Installed by the program, not made here on demand.
    explicit: bool,
}

thread_local! {
    static DEFAULT: RefCell<Option<DefaultSlot>> = const { RefCell::new(None) };
    /// Every reactor made on this thread, oldest first, held weakly.
    static LIVE: RefCell<Vec<ReactorWeak>> = const { RefCell::new(Vec::new()) };
}

/// Records a reactor made on this thread (called by `Reactor::new`).
pub(crate) fn register(weak: ReactorWeak) {
    // During thread teardown the list may be gone: nothing to record then.
    let _ = LIVE.try_with(|l| {
        let mut l = l.borrow_mut();
        l.retain(|w| w.strong_count() > 0);
        l.push(weak);
    });
}

fn live() -> Vec<Reactor> {
    LIVE.with(|l| {
        let mut l = l.borrow_mut();
        l.retain(|w| w.strong_count() > 0);
        l.iter().filter_map(Reactor::upgrade_weak).collect()
    })
}

/// Several reactors are alive on this thread and none was installed, so
/// code that uses the default reactor cannot tell which one the program will
/// run. Pass the reactor explicitly (`cp_reactor`, a method on the reactor),
/// or [`install_reactor`] the one to use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this thread has {count} live reactors and none was installed with install_reactor(), so the default reactor is ambiguous: pass the reactor explicitly (for a ConnectionPool, cp_reactor)")]
pub struct AmbiguousReactor {
    /// How many reactors are alive on this thread.
    pub count: usize,
}

/// This thread's default reactor, by the rules in the module docs, or
/// [`AmbiguousReactor`] if several are alive and none was installed.
pub fn try_default_reactor() -> Result<Reactor, AmbiguousReactor> {
    let current = DEFAULT.with(|d| d.borrow().as_ref().map(|d| (d.reactor.clone(), d.explicit)));
    if let Some((r, true)) = current {
        return Ok(r);
    }
    let live = live();
    // A reactor made on demand counts like any other: something may already
    // be bound to it (a pool made before the program made its own), so a
    // second live reactor makes the choice ambiguous.
    match live.len() {
        0 => Ok(make_default()),
        1 => Ok(live[0].clone()),
        count => Err(AmbiguousReactor { count }),
    }
}

fn make_default() -> Reactor {
    let r = Reactor::new().expect("could not create the default reactor: out of file descriptors?");
    DEFAULT.with(|d| {
        *d.borrow_mut() = Some(DefaultSlot {
            reactor: r.clone(),
            explicit: false,
        })
    });
    r
}

/// This thread's default reactor: the installed one, else the one reactor
/// this thread made that is alive, else a new one (see the module docs).
/// Twisted has one global reactor; since a loop is single-threaded, each
/// thread gets its own.
///
/// With several reactors alive and none installed it logs an error and
/// returns the oldest; [`try_default_reactor`] reports that case instead.
///
/// # Panics
/// If the OS refuses the epoll instance or eventfd a reactor needs (file
/// descriptors exhausted). Use [`Reactor::new`] to handle that error.
pub fn default_reactor() -> Reactor {
    try_default_reactor().unwrap_or_else(|e| {
        tracing::error!(error = %e, "using the oldest live reactor as the default");
        live().into_iter().next().expect("several live reactors")
    })
}

/// Makes `reactor` this thread's default. Returns the reactor it replaces, if
/// one had been installed or made. Mirrors `installReactor` (which refuses a
/// second install; here the caller decides).
pub fn install_reactor(reactor: Reactor) -> Option<Reactor> {
    DEFAULT
        .with(|d| {
            d.borrow_mut().replace(DefaultSlot {
                reactor,
                explicit: true,
            })
        })
        .map(|d| d.reactor)
}

/// Puts back the default reactor that [`install_for_scope`] replaced.
pub(crate) struct ScopedDefault {
    previous: Option<DefaultSlot>,
}

/// Makes `reactor` this thread's default until the returned guard is
/// dropped, then restores what was there before (nothing, a reactor made on
/// demand, or an installed one), so a reactor that has stopped is not left
/// as the default.
pub(crate) fn install_for_scope(reactor: Reactor) -> ScopedDefault {
    let previous = DEFAULT.with(|d| {
        d.borrow_mut().replace(DefaultSlot {
            reactor,
            explicit: true,
        })
    });
    ScopedDefault { previous }
}

impl Drop for ScopedDefault {
    fn drop(&mut self) {
        let previous = self.previous.take();
        // During thread teardown the slot may be gone: nothing to restore.
        // The scoped reactor is dropped outside the borrow: its drop runs
        // user closures, which may ask for the default reactor.
        let scoped = DEFAULT.try_with(|d| std::mem::replace(&mut *d.borrow_mut(), previous));
        drop(scoped);
    }
}
