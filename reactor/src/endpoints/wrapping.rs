//! The factory and protocol a client endpoint wraps around the user's, to
//! fire `connect`'s Deferred when the protocol is connected. Mirrors
//! `twisted.internet.endpoints._WrappingFactory` and `_WrappingProtocol`.

use std::cell::RefCell;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

use deferred::{Deferred, Failure, Resolver};

use crate::address::Address;
use crate::interfaces::Connector;
use crate::protocol::{do_start, do_stop, ClientFactory, Factory, Protocol};
use crate::transport::Transport;

/// A client endpoint's `connect` was cancelled before the connection was
/// made. Mirrors `twisted.internet.error.ConnectingCancelledError`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("connecting to {host}:{port} was cancelled")]
pub struct ConnectingCancelledError {
    /// The destination host, as given.
    pub host: String,
    /// The destination port.
    pub port: u16,
}

/// The factory given to a client endpoint built no protocol. Mirrors
/// `twisted.internet.error.NoProtocol`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the factory built no protocol for the connection")]
pub struct NoProtocol;

/// A [`Protocol`] that forwards to a protocol shared as `Rc<RefCell<P>>`,
/// so the caller keeps a handle on the protocol the connection drives
/// (what [`connect_protocol`](super::connect_protocol) returns).
pub struct SharedProtocol<P: ?Sized> {
    inner: Rc<RefCell<P>>,
}

impl<P: Protocol + ?Sized> SharedProtocol<P> {
    /// Forwards to `inner`.
    pub fn new(inner: Rc<RefCell<P>>) -> Self {
        SharedProtocol { inner }
    }

    /// The shared protocol.
    pub fn shared(&self) -> &Rc<RefCell<P>> {
        &self.inner
    }
}

impl<P: ?Sized> fmt::Debug for SharedProtocol<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedProtocol")
    }
}

impl<P: Protocol + ?Sized> Protocol for SharedProtocol<P> {
    fn make_connection(&mut self, transport: Rc<dyn Transport>) {
        self.inner.borrow_mut().make_connection(transport);
    }
    fn connection_made(&mut self, transport: Rc<dyn Transport>) {
        self.inner.borrow_mut().connection_made(transport);
    }
    fn data_received(&mut self, data: &[u8]) {
        self.inner.borrow_mut().data_received(data);
    }
    fn connection_lost(&mut self, reason: Failure) {
        self.inner.borrow_mut().connection_lost(reason);
    }
    fn wants_half_close(&self) -> bool {
        self.inner.borrow().wants_half_close()
    }
    fn read_connection_lost(&mut self) {
        self.inner.borrow_mut().read_connection_lost();
    }
    fn write_connection_lost(&mut self) {
        self.inner.borrow_mut().write_connection_lost();
    }
}

/// Builds (a forwarder to) the one protocol it was given, every time, as
/// the `OneShotFactory` of Twisted's `connectProtocol` returns the same
/// instance.
pub(crate) struct OneShotFactory<P: ?Sized> {
    protocol: Rc<RefCell<P>>,
}

impl<P: Protocol + ?Sized + 'static> OneShotFactory<P> {
    pub(crate) fn new(protocol: Rc<RefCell<P>>) -> Self {
        OneShotFactory { protocol }
    }
}

impl<P: Protocol + ?Sized + 'static> Factory for OneShotFactory<P> {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        Some(Box::new(SharedProtocol::new(Rc::clone(&self.protocol))))
    }
}

type ConnectorSlot = Rc<RefCell<Option<Rc<dyn Connector>>>>;

/// Wraps the user's factory for `connect`. Mirrors `_WrappingFactory`.
pub(crate) struct WrappingFactory {
    wrapped: Rc<dyn Factory>,
    on_connection: Resolver<Rc<dyn Transport>>,
    connector: ConnectorSlot,
}

impl WrappingFactory {
    /// The factory and the Deferred it fires. Cancelling the Deferred
    /// fails it with [`ConnectingCancelledError`] and stops the attempt,
    /// as Twisted's `_canceller`.
    pub(crate) fn new(
        wrapped: Rc<dyn Factory>,
    ) -> (Rc<WrappingFactory>, Deferred<Rc<dyn Transport>>) {
        let connector: ConnectorSlot = Rc::new(RefCell::new(None));
        let slot = Rc::clone(&connector);
        let (d, resolver) = Deferred::with_canceller(move |r: &Resolver<Rc<dyn Transport>>| {
            let connector = slot.borrow().clone();
            let (host, port) = connector
                .as_ref()
                .map(|c| c.get_destination())
                .unwrap_or_default();
            let _ = r.errback(Failure::new(ConnectingCancelledError { host, port }));
            if let Some(c) = connector {
                let _ = c.stop_connecting();
            }
        });
        (
            Rc::new(WrappingFactory {
                wrapped,
                on_connection: resolver,
                connector,
            }),
            d,
        )
    }
}

impl Factory for WrappingFactory {
    /// The wrapped factory's protocol, wrapped; a refusal (or a panic)
    /// fails `connect`'s Deferred instead, as Twisted's errbacks.
    fn build_protocol(&self, addr: &Address) -> Option<Box<dyn Protocol>> {
        match catch_unwind(AssertUnwindSafe(|| self.wrapped.build_protocol(addr))) {
            Ok(Some(p)) => Some(Box::new(WrappingProtocol {
                on_connection: self.on_connection.clone(),
                wrapped: p,
            })),
            Ok(None) => {
                let _ = self.on_connection.errback(Failure::new(NoProtocol));
                None
            }
            Err(panic) => {
                let _ = self.on_connection.errback(Failure::from_panic(panic));
                None
            }
        }
    }

    /// Passed to the wrapped factory's own count (`doStart`).
    fn start_factory(&self) {
        do_start(&*self.wrapped);
    }

    /// Passed to the wrapped factory's own count (`doStop`).
    fn stop_factory(&self) {
        do_stop(&*self.wrapped);
    }
}

impl ClientFactory for WrappingFactory {
    fn started_connecting(&self, connector: &Rc<dyn Connector>) {
        *self.connector.borrow_mut() = Some(Rc::clone(connector));
    }

    fn client_connection_failed(&self, _connector: &Rc<dyn Connector>, reason: Failure) {
        if !self.on_connection.called() {
            let _ = self.on_connection.errback(reason);
        }
    }
}

/// Fires `connect`'s Deferred once the wrapped protocol is connected, then
/// forwards everything. Mirrors `_WrappingProtocol`.
struct WrappingProtocol {
    on_connection: Resolver<Rc<dyn Transport>>,
    wrapped: Box<dyn Protocol>,
}

impl Protocol for WrappingProtocol {
    fn connection_made(&mut self, transport: Rc<dyn Transport>) {
        let made = catch_unwind(AssertUnwindSafe(|| {
            self.wrapped.make_connection(Rc::clone(&transport));
        }));
        if let Err(payload) = made {
            // `connect`'s Deferred must still fire: with the panic. The
            // panic then goes on to the transport, which drops the
            // connection and logs it.
            let failure = Failure::new(deferred::PanicError::from_payload(&*payload));
            let _ = self.on_connection.errback(failure);
            std::panic::resume_unwind(payload);
        }
        // Already fired only if the caller cancelled meanwhile.
        let _ = self.on_connection.callback(transport);
    }
    fn data_received(&mut self, data: &[u8]) {
        self.wrapped.data_received(data);
    }
    fn connection_lost(&mut self, reason: Failure) {
        self.wrapped.connection_lost(reason);
    }
    fn wants_half_close(&self) -> bool {
        self.wrapped.wants_half_close()
    }
    fn read_connection_lost(&mut self) {
        self.wrapped.read_connection_lost();
    }
    fn write_connection_lost(&mut self) {
        self.wrapped.write_connection_lost();
    }
}
