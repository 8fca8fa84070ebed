//! The client side of the finger examples: connect, send one request line,
//! read the reply until the server closes the connection. Twisted's finger
//! tutorial uses the `finger` command for this; here it is a `Protocol`.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use deferred::{Deferred, Failure, Resolver};
use reactor::endpoints::{connect_protocol, TCP4ClientEndpoint};
use reactor::prelude::*;
use reactor::{ConnectionDone, Reactor};

type Reply = Rc<RefCell<Option<Resolver<Vec<u8>>>>>;

/// Sends `request` and a line delimiter once connected; collects the reply.
struct FingerClient {
    request: Vec<u8>,
    reply: Vec<u8>,
    done: Reply,
}

impl Protocol for FingerClient {
    fn connection_made(&mut self, transport: Rc<dyn Transport>) {
        transport.write_sequence(&[&self.request, b"\r\n"]);
    }

    fn data_received(&mut self, data: &[u8]) {
        self.reply.extend_from_slice(data);
    }

    fn connection_lost(&mut self, reason: Failure) {
        if let Some(done) = self.done.borrow_mut().take() {
            // The server closes the connection after its answer: a clean
            // close is the normal end; anything else is an error.
            let _ = if reason.check::<ConnectionDone>().is_some() {
                done.callback(std::mem::take(&mut self.reply))
            } else {
                done.errback(reason)
            };
        }
    }
}

/// Asks the finger server at `host:port` about `request` (a user name) and
/// fires with its reply, or fails if it cannot connect or the connection
/// breaks.
pub(crate) fn finger(
    reactor: &Reactor,
    host: &str,
    port: u16,
    request: &[u8],
) -> Deferred<Vec<u8>> {
    let (reply, resolver) = Deferred::new();
    let done: Reply = Rc::new(RefCell::new(Some(resolver)));
    let endpoint = TCP4ClientEndpoint::new(Rc::new(reactor.clone()), host, port)
        .with_timeout(Duration::from_secs(10));
    let client = FingerClient {
        request: request.to_vec(),
        reply: Vec::new(),
        done: Rc::clone(&done),
    };
    // The connection's Deferred fires once connected; only its failure
    // (refused, timed out) matters here: the reply comes at the close.
    let _connected = connect_protocol(&endpoint, client).add_errback(move |failure| {
        if let Some(done) = done.borrow_mut().take() {
            let _ = done.errback(failure.clone());
        }
        Err(failure)
    });
    reply
}
