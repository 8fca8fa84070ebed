//! [`Transport`] and [`Producer`]: what a [`Protocol`](crate::protocol::Protocol)
//! writes to, and what feeds a transport at the pace its peer reads. Mirror
//! `twisted.internet.interfaces.ITransport`, `ITCPTransport`, `IConsumer`,
//! `IPushProducer` and `IPullProducer`.

use std::io;
use std::rc::Rc;

use crate::address::Address;
use crate::errors::ProducerError;

/// A connection as its protocol sees it: TCP's transport on the real
/// reactor, [`StringTransport`](crate::testing) in tests. Mirrors
/// `ITransport` + `ITCPTransport` + `IConsumer` + (for pausing reads)
/// `IPushProducer`.
///
/// Transports live on the loop thread (`!Send`). Work done on a pool thread
/// writes back from the callback of the Deferred that fires on the loop.
///
/// No method here calls back into the protocol while it runs: a protocol may
/// call `write`, `lose_connection` or `abort_connection` from inside its own
/// `data_received`, and `connection_lost` is delivered later, from the loop.
/// Methods on a transport that is already closed do nothing (as Twisted's).
pub trait Transport {
    /// Buffers `data` for sending, in order; never blocks. Empty data does
    /// nothing. Mirrors `write`.
    fn write(&self, data: &[u8]);

    /// Writes each buffer in turn, as one write would. Mirrors
    /// `writeSequence`.
    fn write_sequence(&self, data: &[&[u8]]) {
        for d in data {
            self.write(d);
        }
    }

    /// Closes the connection once everything buffered (and a registered
    /// producer's output, once it unregisters) has been sent; the protocol
    /// then gets `connection_lost(ConnectionDone)`. Mirrors
    /// `loseConnection`.
    fn lose_connection(&self);

    /// Closes the connection now, dropping what is buffered; the protocol then
    /// gets `connection_lost(ConnectionAborted)` on a later turn. Mirrors
    /// `ITCPTransport.abortConnection`.
    fn abort_connection(&self);

    /// Half-close: sends what is buffered, then shuts down the write side;
    /// reading goes on. Mirrors `ITCPTransport.loseWriteConnection`.
    fn lose_write_connection(&self);

    /// True once `lose_connection` (or `abort_connection`) was called or the
    /// connection is gone. Mirrors the `disconnecting` attribute, which
    /// `LineReceiver` checks to stop delivering lines.
    fn disconnecting(&self) -> bool;

    /// The remote end. Mirrors `getPeer`.
    fn get_peer(&self) -> Address;

    /// The local end. Mirrors `getHost`.
    fn get_host(&self) -> Address;

    /// Registers the producer that feeds this transport. A streaming (push)
    /// producer is paused when the write buffer passes the high-water mark
    /// (64 KiB, as Twisted's `bufferSize`) and resumed when it drains; a
    /// non-streaming (pull) producer is asked for more
    /// (`resume_producing`) each time the buffer empties. Mirrors
    /// `registerProducer(producer, streaming)`.
    fn register_producer(
        &self,
        producer: Rc<dyn Producer>,
        streaming: bool,
    ) -> Result<(), ProducerError>;

    /// Removes the registered producer (if any). Mirrors
    /// `unregisterProducer`.
    fn unregister_producer(&self);

    /// Stops reading from the peer until `resume_producing`. Mirrors the
    /// transport's own `IPushProducer.pauseProducing`.
    fn pause_producing(&self);

    /// Reads from the peer again. Mirrors `resumeProducing`.
    fn resume_producing(&self);

    /// Stops reading for good and closes the connection. Mirrors
    /// `stopProducing`.
    fn stop_producing(&self);

    /// Sets `TCP_NODELAY`. Mirrors `ITCPTransport.setTcpNoDelay`.
    fn set_tcp_nodelay(&self, enabled: bool) -> io::Result<()>;

    /// Reads `TCP_NODELAY`. Mirrors `getTcpNoDelay`.
    fn get_tcp_nodelay(&self) -> io::Result<bool>;

    /// Sets `SO_KEEPALIVE`. Mirrors `ITCPTransport.setTcpKeepAlive`.
    fn set_tcp_keepalive(&self, enabled: bool) -> io::Result<()>;

    /// Reads `SO_KEEPALIVE`. Mirrors `getTcpKeepAlive`.
    fn get_tcp_keepalive(&self) -> io::Result<bool>;
}

/// Something that writes to a transport at the pace the transport asks for.
/// Mirrors `IPushProducer` (streaming: `pause_producing` /
/// `resume_producing` / `stop_producing`) and `IPullProducer`
/// (non-streaming: `resume_producing` means "produce one more chunk").
///
/// Methods take `&self` (use `Cell`/`RefCell` inside): the transport may call
/// `pause_producing` from inside a `write` the producer itself made, as
/// Twisted's does.
pub trait Producer {
    /// Stop producing until `resume_producing` (push producers only).
    /// Mirrors `pauseProducing`.
    fn pause_producing(&self) {}
    /// Push producers: produce again. Pull producers: produce one chunk now.
    /// Mirrors `resumeProducing`.
    fn resume_producing(&self);
    /// The consumer went away: stop for good. Mirrors `stopProducing`.
    fn stop_producing(&self);
}
