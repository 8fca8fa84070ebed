//! The per-thread default reactor, standing in for Twisted's global
//! `from twisted.internet import reactor`.

use std::cell::RefCell;

use crate::reactor::Reactor;

thread_local! {
    static DEFAULT: RefCell<Option<Reactor>> = const { RefCell::new(None) };
}

/// This thread's default reactor, created on first use. Twisted has one
/// global reactor; since a loop is single-threaded, each thread gets its own.
///
/// # Panics
/// If the OS refuses the epoll instance or eventfd a reactor needs (file
/// descriptors exhausted). Use [`Reactor::new`] to handle that error.
pub fn default_reactor() -> Reactor {
    DEFAULT.with(|d| {
        d.borrow_mut()
            .get_or_insert_with(|| {
                Reactor::new()
                    .expect("could not create the default reactor: out of file descriptors?")
            })
            .clone()
    })
}

/// Makes `reactor` this thread's default. Returns the reactor it replaces, if
/// one had been created. Mirrors `installReactor` (which refuses a second
/// install; here the caller decides).
pub fn install_reactor(reactor: Reactor) -> Option<Reactor> {
    DEFAULT.with(|d| d.borrow_mut().replace(reactor))
}
