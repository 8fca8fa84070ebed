//! [`StringTransport`] and [`StringTransportWithDisconnection`]: a transport
//! that records what a protocol writes, and a harness that feeds a protocol
//! bytes and delivers its `connection_lost`. Mirror
//! `twisted.internet.testing.StringTransport` and
//! `StringTransportWithDisconnection`.

use std::cell::{Cell, Ref, RefCell, RefMut};
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::rc::Rc;

use deferred::Failure;

use crate::address::Address;
use crate::errors::{ConnectionAborted, ConnectionDone, ProducerError};
use crate::protocol::Protocol;
use crate::transport::{Producer, Transport};

/// The state of a [`StringTransport`] in its role as the producer of the
/// bytes its protocol reads. Mirrors `StringTransport.producerState`
/// (`'producing'`, `'paused'`, `'stopped'`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProducerState {
    /// Reading (the initial state).
    Producing,
    /// `pause_producing` was called.
    Paused,
    /// `stop_producing` was called; it cannot be resumed.
    Stopped,
}

/// A transport that keeps what is written in memory and records every other
/// call, without doing anything. Mirrors
/// `twisted.internet.testing.StringTransport`.
///
/// Give it to a protocol as `Rc<dyn Transport>` and keep an `Rc` to inspect
/// it: [`value`](Self::value) is everything written since the last
/// [`clear`](Self::clear); `disconnecting` turns true on `lose_connection`
/// (and on `abort_connection`, which also sets
/// [`disconnected`](Self::disconnected)), as in Twisted. It never calls the
/// protocol back: to deliver `connection_lost` use
/// [`StringTransportWithDisconnection`].
///
/// As Twisted's, it fails the test (here: panics with Twisted's message)
/// when a protocol resumes reading after `lose_connection` or after
/// `stop_producing`, unless it was made [`lenient`](Self::lenient).
///
/// # Examples
///
/// ```
/// use reactor::prelude::*;
/// use reactor::testing::StringTransport;
/// use std::rc::Rc;
///
/// let transport = Rc::new(StringTransport::new());
/// let t: Rc<dyn Transport> = transport.clone();
/// t.write(b"hello ");
/// t.write_sequence(&[b"wor", b"ld"]);
/// assert_eq!(transport.value(), b"hello world");
/// t.lose_connection();
/// assert!(transport.disconnecting());
/// ```
pub struct StringTransport {
    io: RefCell<Vec<u8>>,
    disconnecting: Cell<bool>,
    disconnected: Cell<bool>,
    write_disconnected: Cell<bool>,
    lose_connection_calls: Cell<usize>,
    producer: RefCell<Option<Rc<dyn Producer>>>,
    streaming: Cell<Option<bool>>,
    producer_state: Cell<ProducerState>,
    host: Cell<Address>,
    peer: Cell<Address>,
    lenient: bool,
    nodelay: Cell<bool>,
    keepalive: Cell<bool>,
}

impl Default for StringTransport {
    fn default() -> Self {
        Self::new()
    }
}

/// Twisted's default `getHost()` of a `StringTransport`:
/// `IPv4Address('TCP', '10.0.0.1', 12345)`.
pub const DEFAULT_HOST: Address =
    Address::IPv4(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 12345));

/// Twisted's default `getPeer()` of a `StringTransport`:
/// `IPv4Address('TCP', '192.168.1.1', 54321)`.
pub const DEFAULT_PEER: Address =
    Address::IPv4(SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 1), 54321));

impl StringTransport {
    /// A connected transport with Twisted's default addresses
    /// ([`DEFAULT_HOST`], [`DEFAULT_PEER`]). Mirrors `StringTransport()`.
    pub fn new() -> StringTransport {
        Self::build(DEFAULT_HOST, DEFAULT_PEER, false)
    }

    /// A transport whose `get_host`/`get_peer` return the given addresses.
    /// Mirrors `StringTransport(hostAddress, peerAddress)`.
    pub fn with_addresses(host: Address, peer: Address) -> StringTransport {
        Self::build(host, peer, false)
    }

    /// A transport that lets `resume_producing`/`pause_producing` be called
    /// after `lose_connection`. Mirrors `StringTransport(lenient=True)`.
    pub fn lenient() -> StringTransport {
        Self::build(DEFAULT_HOST, DEFAULT_PEER, true)
    }

    fn build(host: Address, peer: Address, lenient: bool) -> StringTransport {
        StringTransport {
            io: RefCell::new(Vec::new()),
            disconnecting: Cell::new(false),
            disconnected: Cell::new(false),
            write_disconnected: Cell::new(false),
            lose_connection_calls: Cell::new(0),
            producer: RefCell::new(None),
            streaming: Cell::new(None),
            producer_state: Cell::new(ProducerState::Producing),
            host: Cell::new(host),
            peer: Cell::new(peer),
            lenient,
            nodelay: Cell::new(false),
            keepalive: Cell::new(false),
        }
    }

    /// Everything written since the last [`clear`](Self::clear). Mirrors
    /// `value()`.
    pub fn value(&self) -> Vec<u8> {
        self.io.borrow().clone()
    }

    /// Forgets what was written so far. Mirrors `clear()`.
    pub fn clear(&self) {
        self.io.borrow_mut().clear();
    }

    /// Returns what was written so far and clears it (`value()` then
    /// `clear()` in one call).
    pub fn take_value(&self) -> Vec<u8> {
        std::mem::take(&mut *self.io.borrow_mut())
    }

    /// True once `lose_connection` or `abort_connection` was called.
    /// Mirrors the `disconnecting` attribute.
    pub fn disconnecting(&self) -> bool {
        self.disconnecting.get()
    }

    /// True once `abort_connection` was called. Mirrors the `disconnected`
    /// attribute.
    pub fn disconnected(&self) -> bool {
        self.disconnected.get()
    }

    /// True once `lose_write_connection` was called (not in Twisted's
    /// `StringTransport`, which has no half-close).
    pub fn write_disconnected(&self) -> bool {
        self.write_disconnected.get()
    }

    /// How many times `lose_connection` was called (directly, not through
    /// `abort_connection`).
    pub fn lose_connection_calls(&self) -> usize {
        self.lose_connection_calls.get()
    }

    /// The registered producer. Mirrors the `producer` attribute.
    pub fn producer(&self) -> Option<Rc<dyn Producer>> {
        self.producer.borrow().clone()
    }

    /// Whether the registered producer is streaming (`None` when none is
    /// registered). Mirrors the `streaming` attribute.
    pub fn streaming(&self) -> Option<bool> {
        self.streaming.get()
    }

    /// Whether the protocol asked to pause or stop reading. Mirrors
    /// `producerState`.
    pub fn producer_state(&self) -> ProducerState {
        self.producer_state.get()
    }

    /// Sets what `get_host` returns. Mirrors assigning `hostAddr`.
    pub fn set_host(&self, host: Address) {
        self.host.set(host);
    }

    /// Sets what `get_peer` returns. Mirrors assigning `peerAddr`.
    pub fn set_peer(&self, peer: Address) {
        self.peer.set(peer);
    }

    fn check_state(&self) {
        if self.disconnecting.get() && !self.lenient {
            panic!("Cannot resume producing after loseConnection");
        }
        if self.producer_state.get() == ProducerState::Stopped {
            panic!("Cannot resume a stopped producer");
        }
    }
}

impl fmt::Debug for StringTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StringTransport")
            .field("written", &self.io.borrow().len())
            .field("disconnecting", &self.disconnecting.get())
            .field("disconnected", &self.disconnected.get())
            .field("producer_state", &self.producer_state.get())
            .field("streaming", &self.streaming.get())
            .finish()
    }
}

impl Transport for StringTransport {
    fn write(&self, data: &[u8]) {
        self.io.borrow_mut().extend_from_slice(data);
    }

    fn write_sequence(&self, data: &[&[u8]]) {
        let mut io = self.io.borrow_mut();
        for d in data {
            io.extend_from_slice(d);
        }
    }

    fn lose_connection(&self) {
        self.lose_connection_calls
            .set(self.lose_connection_calls.get() + 1);
        self.disconnecting.set(true);
    }

    fn abort_connection(&self) {
        self.disconnected.set(true);
        self.disconnecting.set(true);
    }

    fn lose_write_connection(&self) {
        self.write_disconnected.set(true);
    }

    fn disconnecting(&self) -> bool {
        self.disconnecting.get()
    }

    fn get_peer(&self) -> Address {
        self.peer.get()
    }

    fn get_host(&self) -> Address {
        self.host.get()
    }

    /// Records the producer. Fails, as Twisted's `RuntimeError("Cannot
    /// register two producers")`, if one is registered already.
    fn register_producer(
        &self,
        producer: Rc<dyn Producer>,
        streaming: bool,
    ) -> Result<(), ProducerError> {
        let mut slot = self.producer.borrow_mut();
        if slot.is_some() {
            return Err(ProducerError::AlreadyRegistered);
        }
        *slot = Some(producer);
        self.streaming.set(Some(streaming));
        Ok(())
    }

    /// Forgets the producer. Twisted raises when none is registered; here it
    /// does nothing then, as the [`Transport`] contract says.
    fn unregister_producer(&self) {
        let old = self.producer.borrow_mut().take();
        if old.is_none() {
            tracing::debug!("StringTransport: unregister_producer with no producer registered");
        }
        self.streaming.set(None);
    }

    /// # Panics
    /// After `lose_connection` (unless lenient) or `stop_producing`, as
    /// Twisted's raises `RuntimeError`.
    fn pause_producing(&self) {
        self.check_state();
        self.producer_state.set(ProducerState::Paused);
    }

    /// # Panics
    /// After `lose_connection` (unless lenient) or `stop_producing`, as
    /// Twisted's raises `RuntimeError`.
    fn resume_producing(&self) {
        self.check_state();
        self.producer_state.set(ProducerState::Producing);
    }

    fn stop_producing(&self) {
        self.producer_state.set(ProducerState::Stopped);
    }

    fn set_tcp_nodelay(&self, enabled: bool) -> io::Result<()> {
        self.nodelay.set(enabled);
        Ok(())
    }

    fn get_tcp_nodelay(&self) -> io::Result<bool> {
        Ok(self.nodelay.get())
    }

    fn set_tcp_keepalive(&self, enabled: bool) -> io::Result<()> {
        self.keepalive.set(enabled);
        Ok(())
    }

    fn get_tcp_keepalive(&self) -> io::Result<bool> {
        Ok(self.keepalive.get())
    }
}

/// A protocol connected to a [`StringTransport`], with the loop's part
/// played by the test: [`data_received`](Self::data_received) feeds bytes,
/// and once the protocol (or the test) has called `lose_connection` or
/// `abort_connection`, the protocol gets `connection_lost` exactly once.
/// Mirrors `twisted.internet.testing.StringTransportWithDisconnection`, whose
/// `loseConnection` calls the protocol's `connectionLost`.
///
/// Twisted calls `connectionLost` from inside `loseConnection`; a
/// [`Transport`] here never calls its protocol back while the protocol runs,
/// so the loss is delivered when control is back with the harness: after the
/// `data_received` that asked for it, or when the test calls
/// [`deliver_disconnection`](Self::deliver_disconnection) (a loss asked for
/// from a Deferred's callback, for example). A clean `lose_connection` gives
/// [`ConnectionDone`], `abort_connection` gives [`ConnectionAborted`].
///
/// # Examples
///
/// ```
/// use deferred::Failure;
/// use reactor::prelude::*;
/// use reactor::testing::StringTransportWithDisconnection;
/// use std::rc::Rc;
///
/// #[derive(Default)]
/// struct Quitter { transport: Option<Rc<dyn Transport>>, lost: Option<String> }
/// impl Protocol for Quitter {
///     fn connection_made(&mut self, t: Rc<dyn Transport>) { self.transport = Some(t); }
///     fn data_received(&mut self, data: &[u8]) {
///         if data == b"quit" {
///             self.transport.as_ref().unwrap().lose_connection();
///         }
///     }
///     fn connection_lost(&mut self, reason: Failure) { self.lost = Some(reason.error_message()); }
/// }
///
/// let conn = StringTransportWithDisconnection::connect(Quitter::default());
/// conn.data_received(b"hello");
/// assert!(conn.connected());
/// conn.data_received(b"quit");
/// assert!(!conn.connected());
/// assert_eq!(conn.protocol().lost.as_deref(), Some("Connection was closed cleanly."));
/// ```
pub struct StringTransportWithDisconnection<P: ?Sized + Protocol> {
    transport: Rc<StringTransport>,
    protocol: Rc<RefCell<P>>,
    connected: Cell<bool>,
}

impl<P: Protocol + 'static> StringTransportWithDisconnection<P> {
    /// Connects `protocol` to a new [`StringTransport`] (its
    /// `make_connection` runs now).
    pub fn connect(protocol: P) -> Self {
        Self::connect_shared(Rc::new(RefCell::new(protocol)), StringTransport::new())
    }

    /// Connects `protocol` to `transport` (its `make_connection` runs now).
    pub fn connect_with(protocol: P, transport: StringTransport) -> Self {
        Self::connect_shared(Rc::new(RefCell::new(protocol)), transport)
    }
}

impl<P: ?Sized + Protocol + 'static> StringTransportWithDisconnection<P> {
    /// Connects a shared protocol (for example a `Box<dyn Protocol>` built
    /// by a factory, put in an `Rc<RefCell<_>>`) to `transport`.
    pub fn connect_shared(protocol: Rc<RefCell<P>>, transport: StringTransport) -> Self {
        let transport = Rc::new(transport);
        let t: Rc<dyn Transport> = transport.clone();
        protocol.borrow_mut().make_connection(t);
        let this = StringTransportWithDisconnection {
            transport,
            protocol,
            connected: Cell::new(true),
        };
        this.deliver_disconnection();
        this
    }

    /// The transport, to inspect what the protocol wrote.
    pub fn transport(&self) -> &Rc<StringTransport> {
        &self.transport
    }

    /// The protocol, borrowed (do not hold it across a call that delivers
    /// data).
    pub fn protocol(&self) -> Ref<'_, P> {
        self.protocol.borrow()
    }

    /// The protocol, mutably borrowed.
    pub fn protocol_mut(&self) -> RefMut<'_, P> {
        self.protocol.borrow_mut()
    }

    /// The shared protocol.
    pub fn protocol_rc(&self) -> &Rc<RefCell<P>> {
        &self.protocol
    }

    /// True until `connection_lost` was delivered. Mirrors the `connected`
    /// attribute.
    pub fn connected(&self) -> bool {
        self.connected.get()
    }

    /// Feeds `data` to the protocol, as the loop does when bytes arrive,
    /// then delivers `connection_lost` if the protocol asked to disconnect.
    /// Does nothing once the transport is disconnecting (a real transport
    /// stops reading then). Returns whether the data was delivered.
    pub fn data_received(&self, data: &[u8]) -> bool {
        if !self.connected.get() || self.transport.disconnecting() {
            self.deliver_disconnection();
            return false;
        }
        self.protocol.borrow_mut().data_received(data);
        self.deliver_disconnection();
        true
    }

    /// Feeds `data` one byte per `data_received` call (the harshest split),
    /// stopping once the protocol disconnects. Returns how many bytes were
    /// delivered.
    pub fn data_received_bytewise(&self, data: &[u8]) -> usize {
        let mut n = 0;
        for b in data {
            if !self.data_received(std::slice::from_ref(b)) {
                break;
            }
            n += 1;
        }
        n
    }

    /// If `lose_connection` or `abort_connection` was called and the loss
    /// was not delivered yet, delivers `connection_lost`
    /// ([`ConnectionDone`] or [`ConnectionAborted`]) now and returns true.
    pub fn deliver_disconnection(&self) -> bool {
        if !self.connected.get() || !self.transport.disconnecting() {
            return false;
        }
        let reason = if self.transport.disconnected() {
            Failure::new(ConnectionAborted)
        } else {
            Failure::new(ConnectionDone)
        };
        self.connection_lost(reason)
    }

    /// Ends the connection with `reason` (a peer reset, say:
    /// [`ConnectionLost`](crate::ConnectionLost)), as the loop would:
    /// `connection_lost` runs once; later calls return false.
    pub fn connection_lost(&self, reason: Failure) -> bool {
        if !self.connected.replace(false) {
            return false;
        }
        self.transport.disconnecting.set(true);
        self.protocol.borrow_mut().connection_lost(reason);
        true
    }
}

impl<P: ?Sized + Protocol> fmt::Debug for StringTransportWithDisconnection<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StringTransportWithDisconnection")
            .field("transport", &self.transport)
            .field("connected", &self.connected.get())
            .finish()
    }
}
