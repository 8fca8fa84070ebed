//! Twisted's protocol model: a [`Protocol`] per connection, made by a
//! [`Factory`] (servers) or a [`ClientFactory`] (clients). Mirrors
//! `twisted.internet.protocol`.
//!
//! A protocol is driven by its transport on the loop thread:
//! `make_connection` (which calls `connection_made`) once, then
//! `data_received` for each chunk read, then `connection_lost` exactly once,
//! whatever ends the connection (a clean close, a reset, an abort, a panic in
//! the protocol, the reactor shutting down).

mod factory;
mod reconnecting;

pub(crate) use factory::{do_start, do_stop};
pub use factory::{ClientFactory, Factory};
pub use reconnecting::{
    NormalVariate, ReconnectingClientFactory, FACTOR, INITIAL_DELAY, JITTER, MAX_DELAY,
};

use std::rc::Rc;

use deferred::Failure;

use crate::transport::Transport;

/// The per-connection handler of a byte stream. Mirrors
/// `twisted.internet.protocol.Protocol` (`IProtocol`, plus
/// `IHalfCloseableProtocol` for protocols that opt in to half-close).
///
/// Keep the `Rc<dyn Transport>` given to `connection_made` to write back,
/// also from the callbacks of Deferreds that fire later (a
/// `ConnectionPool`'s `run_query`, for example).
pub trait Protocol {
    /// Called once, when the connection is made, before any data. Mirrors
    /// `makeConnection`, which sets `self.transport` and calls
    /// `connectionMade`; override [`connection_made`](Self::connection_made)
    /// instead.
    fn make_connection(&mut self, transport: Rc<dyn Transport>) {
        self.connection_made(transport);
    }

    /// The connection is up. Mirrors `connectionMade`.
    fn connection_made(&mut self, transport: Rc<dyn Transport>) {
        let _ = transport;
    }

    /// Bytes arrived, in order; chunk boundaries mean nothing. Mirrors
    /// `dataReceived`.
    fn data_received(&mut self, data: &[u8]);

    /// The connection is gone: `reason` holds
    /// [`ConnectionDone`](crate::ConnectionDone) for a clean close,
    /// [`ConnectionLost`](crate::ConnectionLost) or
    /// [`ConnectionAborted`](crate::ConnectionAborted) otherwise. Called
    /// exactly once per connection. Mirrors `connectionLost`.
    fn connection_lost(&mut self, reason: Failure) {
        let _ = reason;
    }

    /// True for a protocol that wants half-close: when the peer shuts down
    /// its write side, the transport calls
    /// [`read_connection_lost`](Self::read_connection_lost) and keeps the
    /// connection open for writing instead of closing it. Mirrors providing
    /// `IHalfCloseableProtocol`.
    fn wants_half_close(&self) -> bool {
        false
    }

    /// The peer will send no more (half-close protocols only). Mirrors
    /// `IHalfCloseableProtocol.readConnectionLost`.
    fn read_connection_lost(&mut self) {}

    /// Our write side was shut down by `lose_write_connection` (half-close
    /// protocols only). Mirrors `IHalfCloseableProtocol.writeConnectionLost`.
    fn write_connection_lost(&mut self) {}
}
