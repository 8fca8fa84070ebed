//! [`Factory`] and [`ClientFactory`]: what makes a [`Protocol`] for each
//! connection. Mirrors `twisted.internet.protocol.Factory` and
//! `ClientFactory`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use deferred::Failure;

use crate::address::Address;
use crate::interfaces::Connector;
use crate::protocol::Protocol;

/// Makes a protocol per connection. Mirrors
/// `twisted.internet.protocol.Factory` (`IProtocolFactory`); a server
/// factory is a `Factory`. Shared by every connection and port that uses it,
/// so methods take `&self`.
pub trait Factory {
    /// A protocol for a new connection from (servers) or to (clients) `addr`,
    /// or `None` to refuse it (the connection is closed at once). Mirrors
    /// `buildProtocol`.
    fn build_protocol(&self, addr: &Address) -> Option<Box<dyn Protocol>>;

    /// Called before the first port or connector starts using this factory.
    /// Mirrors `startFactory` (reached through `doStart`, which counts the
    /// ports in `numPorts`).
    fn start_factory(&self) {}

    /// Called after the last port or connector stopped using this factory.
    /// Mirrors `stopFactory` (through `doStop`).
    fn stop_factory(&self) {}
}

/// A factory for outgoing connections, told how each attempt went. Mirrors
/// `twisted.internet.protocol.ClientFactory`.
pub trait ClientFactory: Factory {
    /// An attempt began. Mirrors `startedConnecting`.
    fn started_connecting(&self, connector: &Rc<dyn Connector>) {
        let _ = connector;
    }

    /// An attempt failed (`reason` holds a
    /// [`ConnectError`](crate::ConnectError)). Mirrors
    /// `clientConnectionFailed`.
    fn client_connection_failed(&self, connector: &Rc<dyn Connector>, reason: Failure) {
        let _ = (connector, reason);
    }

    /// An established connection was lost (after the protocol's
    /// `connection_lost`). Mirrors `clientConnectionLost`.
    fn client_connection_lost(&self, connector: &Rc<dyn Connector>, reason: Failure) {
        let _ = (connector, reason);
    }
}

thread_local! {
    /// `numPorts` of each factory in use on this thread, keyed by the
    /// factory's address (a factory in use is kept alive by its users, so
    /// the address is not reused while it has a count).
    static NUM_PORTS: RefCell<HashMap<usize, usize>> = RefCell::new(HashMap::new());
}

fn key(factory: &dyn Factory) -> usize {
    (factory as *const dyn Factory).cast::<()>() as usize
}

/// A port or connector starts using `factory`: the first one calls
/// `start_factory`. Mirrors `Factory.doStart`.
pub(crate) fn do_start(factory: &dyn Factory) {
    let first = NUM_PORTS.with(|m| {
        let mut m = m.borrow_mut();
        let n = m.entry(key(factory)).or_insert(0);
        *n += 1;
        *n == 1
    });
    if first {
        factory.start_factory();
    }
}

/// A port or connector stops using `factory`: the last one calls
/// `stop_factory`. Unbalanced calls do nothing. Mirrors `Factory.doStop`.
pub(crate) fn do_stop(factory: &dyn Factory) {
    let last = NUM_PORTS.with(|m| {
        let mut m = m.borrow_mut();
        let k = key(factory);
        match m.get_mut(&k) {
            None => false,
            Some(n) => {
                *n -= 1;
                if *n == 0 {
                    m.remove(&k);
                    true
                } else {
                    false
                }
            }
        }
    });
    if last {
        factory.stop_factory();
    }
}
