//! TCP on the real reactor: listening ports, connections (the transport) and
//! connectors, all on the reactor's `mio::Poll` and loop thread. Mirrors
//! `twisted.internet.tcp` (`Port`, `Server`, `Client`, `Connector`) with the
//! buffering and producer logic of `twisted.internet.abstract.FileDescriptor`
//! and the connector state machine of `twisted.internet.base.BaseConnector`.
//!
//! # Implementation notes
//! Sockets are registered edge-triggered for reading and writing once, so
//! there is no re-registration per write. Edge-triggered readiness is only
//! reported again after new activity, so every source reads (or accepts)
//! until `WouldBlock`, but within a budget per turn; a source that used up
//! its budget while still ready goes on the `backlog` and is revisited on the
//! next turn (which then polls without sleeping), so one busy peer cannot
//! starve the others.
//!
//! Writes are appended to the connection's buffer and the connection is put
//! on the `flush` list; the loop flushes every listed connection once per
//! turn, just before it polls, so the writes of a turn (a pipelined batch of
//! replies, say) leave in one `write` call.
//!
//! `connection_lost` that must not run inside the caller (after
//! `abort_connection`, or `lose_connection` with nothing to send) is queued
//! on `later` and delivered on the next turn.

mod connection;
mod connector;
mod port;

use std::cell::RefCell;
use std::io;
use std::rc::{Rc, Weak};

use mio::{Interest, Registry, Token};
use slab::Slab;

use crate::reactor::Reactor;

pub(crate) use connection::Conn;
pub(crate) use connector::ConnectorImpl;
pub(crate) use port::Port;

/// Size of the one read buffer every connection of a reactor reads into.
const READ_BUFFER: usize = 64 * 1024;

/// What one readiness event reported.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Ready {
    pub(crate) readable: bool,
    pub(crate) writable: bool,
    pub(crate) read_closed: bool,
    pub(crate) error: bool,
}

impl Ready {
    /// A revisit of a source that used up its budget while still readable.
    fn revisit() -> Ready {
        Ready {
            readable: true,
            ..Ready::default()
        }
    }
}

/// Something registered on the poller.
pub(crate) trait Source {
    /// Handles readiness; returns true if the source used up its budget
    /// while still ready (it is then revisited on the next turn).
    fn on_ready(self: Rc<Self>, reactor: &Reactor, ready: Ready) -> bool;
    /// The reactor is shutting down: close, delivering what is owed.
    fn shutdown(self: Rc<Self>, reactor: &Reactor);
    /// The reactor is gone: drop what holds cycles, no callbacks.
    fn forget(&self) {}
}

/// The reactor's I/O state.
pub(crate) struct Io {
    registry: Registry,
    sources: RefCell<Slab<Rc<dyn Source>>>,
    /// Sources that used up their budget while ready.
    backlog: RefCell<Vec<Rc<dyn Source>>>,
    /// Connections with writes (or a close) to flush before the next poll.
    flush: RefCell<Vec<Rc<Conn>>>,
    /// Connections whose `connection_lost` is delivered on the next turn.
    later: RefCell<Vec<Rc<Conn>>>,
    /// Shared by every connection: memory per idle connection stays small.
    read_buf: RefCell<Vec<u8>>,
    /// Every port ever listened on, to close at shutdown.
    ports: RefCell<Vec<Weak<Port>>>,
    /// Every connector, to abandon its attempt at shutdown.
    connectors: RefCell<Vec<Weak<ConnectorImpl>>>,
    /// The events of the last poll, copied out so no borrow is held while
    /// sources run (a protocol may iterate the reactor).
    scratch: RefCell<Vec<(usize, Ready)>>,
}

impl Io {
    pub(crate) fn new(registry: Registry) -> Io {
        Io {
            registry,
            sources: RefCell::new(Slab::new()),
            backlog: RefCell::new(Vec::new()),
            flush: RefCell::new(Vec::new()),
            later: RefCell::new(Vec::new()),
            read_buf: RefCell::new(Vec::new()),
            ports: RefCell::new(Vec::new()),
            connectors: RefCell::new(Vec::new()),
            scratch: RefCell::new(Vec::new()),
        }
    }

    /// True if any socket is registered.
    pub(crate) fn has_sources(&self) -> bool {
        !self.sources.borrow().is_empty()
    }

    /// True if the next turn has I/O work that must not wait for the poller.
    pub(crate) fn has_pending(&self) -> bool {
        !self.backlog.borrow().is_empty()
            || !self.flush.borrow().is_empty()
            || !self.later.borrow().is_empty()
    }

    /// Registers `source` (its socket given to `register`) and returns its
    /// key.
    fn insert(
        &self,
        source: Rc<dyn Source>,
        register: impl FnOnce(&Registry, Token) -> io::Result<()>,
    ) -> io::Result<usize> {
        let key = self.sources.borrow_mut().insert(source);
        if let Err(e) = register(&self.registry, token(key)) {
            self.sources.borrow_mut().remove(key);
            return Err(e);
        }
        Ok(key)
    }

    /// Puts `source` in `key`'s slot (a connecting socket becoming a
    /// connection keeps its registration).
    fn replace(&self, key: usize, source: Rc<dyn Source>) {
        if let Some(slot) = self.sources.borrow_mut().get_mut(key) {
            *slot = source;
        }
    }

    /// Deregisters `socket` and frees `key`.
    fn remove(&self, key: usize, socket: &mut impl mio::event::Source) {
        if let Err(e) = self.registry.deregister(socket) {
            tracing::debug!(error = %e, "deregistering a socket failed");
        }
        let mut sources = self.sources.borrow_mut();
        if sources.contains(key) {
            // Dropped after the borrow ends: dropping a source may run user code.
            let old = sources.remove(key);
            drop(sources);
            drop(old);
        }
    }

    /// Takes the shared read buffer (a fresh one if a nested turn holds it).
    fn take_read_buf(&self) -> Vec<u8> {
        let mut buf = std::mem::take(&mut *self.read_buf.borrow_mut());
        if buf.len() < READ_BUFFER {
            buf.resize(READ_BUFFER, 0);
        }
        buf
    }

    fn put_read_buf(&self, buf: Vec<u8>) {
        let mut slot = self.read_buf.borrow_mut();
        if slot.is_empty() {
            *slot = buf;
        }
    }

    fn schedule_flush(&self, conn: Rc<Conn>) {
        self.flush.borrow_mut().push(conn);
    }

    fn schedule_later(&self, conn: Rc<Conn>) {
        self.later.borrow_mut().push(conn);
    }

    fn push_backlog(&self, source: Rc<dyn Source>) {
        self.backlog.borrow_mut().push(source);
    }

    fn add_port(&self, port: &Rc<Port>) {
        let mut ports = self.ports.borrow_mut();
        ports.retain(|p| p.strong_count() > 0);
        ports.push(Rc::downgrade(port));
    }

    fn add_connector(&self, c: &Rc<ConnectorImpl>) {
        let mut cs = self.connectors.borrow_mut();
        cs.retain(|p| p.strong_count() > 0);
        cs.push(Rc::downgrade(c));
    }

    /// The work owed before polling: deferred `connection_lost`s, then the
    /// writes of the turn.
    pub(crate) fn before_poll(&self, reactor: &Reactor) {
        let later = std::mem::take(&mut *self.later.borrow_mut());
        for conn in later {
            conn.deliver_later(reactor);
        }
        let flush = std::mem::take(&mut *self.flush.borrow_mut());
        for conn in flush {
            conn.flush_now(reactor);
        }
    }

    /// Copies the polled events out (into a reused buffer).
    pub(crate) fn collect(&self, events: &mio::Events) -> Vec<(usize, Ready)> {
        let mut scratch = std::mem::take(&mut *self.scratch.borrow_mut());
        scratch.clear();
        for ev in events.iter() {
            let Some(key) = ev.token().0.checked_sub(1) else {
                continue; // the waker
            };
            scratch.push((
                key,
                Ready {
                    readable: ev.is_readable(),
                    writable: ev.is_writable(),
                    read_closed: ev.is_read_closed(),
                    error: ev.is_error(),
                },
            ));
        }
        scratch
    }

    /// Runs each source that was `collect`ed, then the backlog of the last
    /// turn.
    pub(crate) fn dispatch(&self, reactor: &Reactor, ready: Vec<(usize, Ready)>) {
        let backlog = std::mem::take(&mut *self.backlog.borrow_mut());
        for &(key, r) in &ready {
            let source = self.sources.borrow().get(key).cloned();
            if let Some(source) = source {
                if Rc::clone(&source).on_ready(reactor, r) {
                    self.push_backlog(source);
                }
            }
        }
        for source in backlog {
            if Rc::clone(&source).on_ready(reactor, Ready::revisit()) {
                self.push_backlog(source);
            }
        }
        let mut slot = self.scratch.borrow_mut();
        if slot.capacity() < ready.capacity() {
            *slot = ready;
        }
    }

    /// Closes every port, abandons every connection attempt and closes every
    /// connection, delivering each `connection_lost` now. Mirrors
    /// `ReactorBase.disconnectAll`, a `during`/`shutdown` trigger.
    pub(crate) fn disconnect_all(&self, reactor: &Reactor) {
        let ports: Vec<_> = std::mem::take(&mut *self.ports.borrow_mut());
        for p in ports.iter().filter_map(Weak::upgrade) {
            p.shutdown(reactor);
        }
        let connectors: Vec<_> = self.connectors.borrow().clone();
        for c in connectors.iter().filter_map(Weak::upgrade) {
            c.shutdown(reactor);
        }
        let sources: Vec<Rc<dyn Source>> = self
            .sources
            .borrow()
            .iter()
            .map(|(_, s)| Rc::clone(s))
            .collect();
        for s in sources {
            s.shutdown(reactor);
        }
        let later = std::mem::take(&mut *self.later.borrow_mut());
        for conn in later {
            conn.deliver_later(reactor);
        }
        self.backlog.borrow_mut().clear();
        self.flush.borrow_mut().clear();
    }
}

impl Drop for Io {
    fn drop(&mut self) {
        // A reactor dropped with connections open: break the cycles between
        // connections and their protocols (which hold their transports) so
        // the sockets close. No callbacks run.
        let sources = std::mem::take(&mut *self.sources.borrow_mut());
        for (_, s) in sources {
            s.forget();
        }
        for c in std::mem::take(&mut *self.later.borrow_mut()) {
            c.forget();
        }
        for c in std::mem::take(&mut *self.flush.borrow_mut()) {
            c.forget();
        }
    }
}

fn token(key: usize) -> Token {
    Token(key + 1)
}

fn interest() -> Interest {
    Interest::READABLE | Interest::WRITABLE
}

/// Runs a user callback, turning a panic into a Failure.
fn catch<R>(f: impl FnOnce() -> R) -> Result<R, deferred::Failure> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(deferred::Failure::from_panic)
}
