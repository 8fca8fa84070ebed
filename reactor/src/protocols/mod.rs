//! Protocol implementations on top of [`Protocol`]. Mirrors
//! `twisted.protocols`; also holds [`for_protocol`], Twisted's
//! `Factory.forProtocol`.

pub mod basic;

use std::fmt;
use std::rc::Rc;

use crate::address::Address;
use crate::protocol::{ClientFactory, Factory, Protocol};

/// A factory (server or client) that builds each connection's protocol by
/// calling a closure with the peer's address. Made by [`for_protocol`].
pub struct ForProtocol<F> {
    build: F,
}

impl<F> fmt::Debug for ForProtocol<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ForProtocol")
    }
}

/// A factory whose `build_protocol(addr)` returns `build(addr)`, usable as
/// a server [`Factory`] and as a [`ClientFactory`] (with the default
/// client callbacks). Mirrors `twisted.internet.protocol.Factory.forProtocol`.
///
/// # Examples
///
/// ```
/// use reactor::prelude::*;
/// use reactor::protocols::basic::{LineHandle, LineReceiver, LineReceiverProtocol};
/// use reactor::protocols::for_protocol;
/// use reactor::testing::{MemoryReactor, DEFAULT_PEER};
/// use reactor::DEFAULT_BACKLOG;
///
/// struct Echo;
/// impl LineReceiver for Echo {
///     fn line_received(&mut self, line: &[u8], conn: &LineHandle) { conn.send_line(line); }
/// }
/// let factory = for_protocol(|_addr| LineReceiverProtocol::new(Echo));
/// let reactor = MemoryReactor::new();
/// reactor.listen_tcp(1079, factory.clone(), DEFAULT_BACKLOG, "127.0.0.1").unwrap();
/// assert!(factory.build_protocol(&DEFAULT_PEER).is_some());
/// ```
pub fn for_protocol<P, F>(build: F) -> Rc<ForProtocol<F>>
where
    P: Protocol + 'static,
    F: Fn(&Address) -> P + 'static,
{
    Rc::new(ForProtocol { build })
}

impl<P, F> Factory for ForProtocol<F>
where
    P: Protocol + 'static,
    F: Fn(&Address) -> P + 'static,
{
    fn build_protocol(&self, addr: &Address) -> Option<Box<dyn Protocol>> {
        Some(Box::new((self.build)(addr)))
    }
}

impl<P, F> ClientFactory for ForProtocol<F>
where
    P: Protocol + 'static,
    F: Fn(&Address) -> P + 'static,
{
}
