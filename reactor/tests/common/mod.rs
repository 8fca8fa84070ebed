//! Helpers shared by the reactor's integration tests: a fresh reactor
//! installed as the thread's default, and an event recorder. Log capture
//! (Twisted's log observers and trial's `flushLoggedErrors`) and bounded
//! runs (trial's `ReactorBuilder.runReactor` safety net, watchdogs, bounded
//! waits) come from the workspace's `test-support` crate.
//!
//! Each test file uses only some of these helpers.
#![allow(dead_code)]

use std::cell::RefCell;
use std::rc::Rc;

use reactor::prelude::*;
use reactor::{default_reactor, install_reactor, Reactor};

/// A fresh reactor, installed as this thread's default so `Send` closures
/// queued with `call_from_thread` can reach it on the loop thread through
/// [`default_reactor`].
pub(crate) fn new_default_reactor() -> Reactor {
    let reactor = Reactor::new().expect("a reactor");
    install_reactor(reactor.clone());
    reactor
}

/// Stops this thread's default reactor; for `Send` closures that run on the
/// loop thread.
pub(crate) fn stop_default() {
    default_reactor()
        .stop()
        .expect("the default reactor is running");
}

/// A shared, append-only list of what happened, for closures to push onto.
#[derive(Clone)]
pub(crate) struct Events<T>(Rc<RefCell<Vec<T>>>);

impl<T: Clone> Events<T> {
    pub(crate) fn new() -> Self {
        Events(Rc::new(RefCell::new(Vec::new())))
    }

    pub(crate) fn push(&self, v: T) {
        self.0.borrow_mut().push(v);
    }

    /// A closure that pushes `v` when called (Twisted's `events.append, v`).
    pub(crate) fn pusher(&self, v: T) -> impl FnOnce() + 'static
    where
        T: 'static,
    {
        let me = self.clone();
        move || me.push(v)
    }

    pub(crate) fn get(&self) -> Vec<T> {
        self.0.borrow().clone()
    }

    pub(crate) fn len(&self) -> usize {
        self.0.borrow().len()
    }
}
