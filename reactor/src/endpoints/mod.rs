//! Endpoints: where to listen or connect, as a value, made from code or
//! from a string such as `"tcp:1079:interface=127.0.0.1"`. Mirrors
//! `twisted.internet.endpoints` (TCP only).
//!
//! | Twisted | here |
//! |---|---|
//! | `IStreamServerEndpoint.listen(factory)` | [`StreamServerEndpoint::listen`] → `Deferred<Rc<dyn ListeningPort>>` |
//! | `IStreamClientEndpoint.connect(factory)` | [`StreamClientEndpoint::connect`] → `Deferred<Rc<dyn Transport>>` (fires once the protocol is connected) |
//! | `connectProtocol(endpoint, protocol)` | [`connect_protocol`] → `Deferred<Rc<RefCell<P>>>` (the protocol itself, shared) |
//! | `TCP4ServerEndpoint`, `TCP6ServerEndpoint`, `TCP4ClientEndpoint`, `TCP6ClientEndpoint` | [`TCP4ServerEndpoint`], [`TCP6ServerEndpoint`], [`TCP4ClientEndpoint`], [`TCP6ClientEndpoint`] |
//! | `serverFromString`, `clientFromString`, `quoteStringArgument` | [`server_from_string`], [`client_from_string`], [`quote_string_argument`] |
//! | `ValueError`/`TypeError` from the parsers | [`EndpointParseError`] |
//! | `error.ConnectingCancelledError`, `error.NoProtocol` | [`ConnectingCancelledError`], [`NoProtocol`] |
//!
//! Twisted's `connect` fires with the protocol instance. A factory here
//! hands its `Box<dyn Protocol>` to the transport, so `connect` fires with
//! the connection's transport instead, and [`connect_protocol`] (which
//! takes the protocol value) fires with the protocol shared as
//! `Rc<RefCell<P>>`.
//!
//! # Examples
//!
//! ```
//! use reactor::endpoints::{client_from_string, connect_protocol, server_from_string};
//! use reactor::prelude::*;
//! use reactor::testing::{MemoryReactor, StringTransport};
//! use std::rc::Rc;
//!
//! struct Greeter { greeted: bool }
//! impl Protocol for Greeter {
//!     fn connection_made(&mut self, t: Rc<dyn Transport>) { t.write(b"hi\r\n"); self.greeted = true; }
//!     fn data_received(&mut self, _: &[u8]) {}
//! }
//!
//! let reactor = MemoryReactor::new();
//! let endpoint = client_from_string(Rc::new(reactor.clone()), "tcp:host=127.0.0.1:port=1079").unwrap();
//! let d = connect_protocol(&endpoint, Greeter { greeted: false });
//! // The memory reactor recorded the attempt; play the connection's part.
//! let client = &reactor.tcp_clients()[0];
//! assert_eq!((client.host.as_str(), client.port), ("127.0.0.1", 1079));
//! let mut proto = client.factory.build_protocol(&reactor::testing::DEFAULT_PEER).unwrap();
//! let transport = Rc::new(StringTransport::new());
//! proto.make_connection(transport.clone());
//! let greeter = d.into_result().unwrap().unwrap();
//! assert!(greeter.borrow().greeted);
//! assert_eq!(transport.value(), b"hi\r\n");
//!
//! assert!(server_from_string(Rc::new(reactor.clone()), "tcp:port=http").is_err());
//! ```

mod parse;
mod tcp;
mod wrapping;

use std::cell::RefCell;
use std::rc::Rc;

use deferred::Deferred;

use crate::interfaces::ListeningPort;
use crate::protocol::Factory;
use crate::transport::Transport;

pub use parse::{
    client_from_string, quote_string_argument, server_from_string, ClientEndpoint,
    EndpointParseError, ServerEndpoint,
};
pub use tcp::{TCP4ClientEndpoint, TCP4ServerEndpoint, TCP6ClientEndpoint, TCP6ServerEndpoint};
pub use wrapping::{ConnectingCancelledError, NoProtocol, SharedProtocol};

/// Somewhere to listen. Mirrors `IStreamServerEndpoint`.
pub trait StreamServerEndpoint {
    /// Starts listening with `factory`; the Deferred fires with the
    /// listening port, or fails with the
    /// [`CannotListenError`](crate::CannotListenError). Mirrors `listen`.
    fn listen(&self, factory: Rc<dyn Factory>) -> Deferred<Rc<dyn ListeningPort>>;
}

/// Somewhere to connect to. Mirrors `IStreamClientEndpoint`.
pub trait StreamClientEndpoint {
    /// Connects, building the protocol with `factory`; the Deferred fires
    /// with the connection's transport once the protocol's
    /// `connection_made` has run, or fails with the
    /// [`ConnectError`](crate::ConnectError) (or [`NoProtocol`] when the
    /// factory refuses). Cancelling it before then abandons the attempt and
    /// fails it with [`ConnectingCancelledError`]. Mirrors `connect`.
    fn connect(&self, factory: Rc<dyn Factory>) -> Deferred<Rc<dyn Transport>>;
}

/// Connects `protocol` through `endpoint` without writing a factory; the
/// Deferred fires with the protocol (shared, so the caller can use it while
/// the connection drives it) once it is connected. Mirrors
/// `twisted.internet.endpoints.connectProtocol`.
///
/// Borrow the protocol only outside its own callbacks (from a Deferred's
/// callback, say), never while the connection is delivering to it.
pub fn connect_protocol<P: crate::protocol::Protocol + 'static>(
    endpoint: &dyn StreamClientEndpoint,
    protocol: P,
) -> Deferred<Rc<RefCell<P>>> {
    let shared = Rc::new(RefCell::new(protocol));
    let factory = wrapping::OneShotFactory::new(Rc::clone(&shared));
    endpoint
        .connect(Rc::new(factory))
        .add_callback(move |_transport| shared)
}
