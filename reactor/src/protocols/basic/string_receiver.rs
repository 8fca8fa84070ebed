//! [`StringReceiver`]: the handler side shared by the length-prefixed
//! protocols ([`NetstringReceiverProtocol`](super::NetstringReceiverProtocol),
//! [`Int32StringReceiverProtocol`](super::Int32StringReceiverProtocol)...),
//! which Twisted says "publish the same interface": `stringReceived`,
//! `sendString`, `MAX_LENGTH`.

use std::cell::{Cell, Ref, RefCell, RefMut};
use std::fmt;
use std::marker::PhantomData;
use std::rc::{Rc, Weak};

use deferred::Failure;

use crate::protocol::Protocol;
use crate::protocols::basic::int_n::StringTooLongError;
use crate::protocols::basic::netstring::NetstringParseError;
use crate::transport::{Producer, Transport};

/// What a length-prefixed protocol does with each string; wrap it in a
/// [`NetstringReceiverProtocol`](super::NetstringReceiverProtocol) or an
/// [`Int32StringReceiverProtocol`](super::Int32StringReceiverProtocol)
/// (or the 16- and 8-bit ones). Mirrors subclassing Twisted's
/// `NetstringReceiver` / `IntNStringReceiver` and overriding
/// `stringReceived` (and `lengthLimitExceeded`).
///
/// # Examples
///
/// ```
/// use reactor::protocols::basic::{Int32StringReceiverProtocol, StringHandle, StringReceiver};
/// use reactor::testing::StringTransportWithDisconnection;
///
/// struct Echo;
/// impl StringReceiver for Echo {
///     fn string_received(&mut self, s: &[u8], conn: &StringHandle) {
///         conn.send_string(s).unwrap();
///     }
/// }
/// let conn = StringTransportWithDisconnection::connect(Int32StringReceiverProtocol::new(Echo));
/// conn.data_received(b"\x00\x00\x00\x03f");
/// conn.data_received(b"oo");
/// assert_eq!(conn.transport().value(), b"\x00\x00\x00\x03foo");
/// ```
pub trait StringReceiver: 'static {
    /// The longest string accepted. Mirrors `MAX_LENGTH` (99 999 in Twisted
    /// for both netstrings and int-prefixed strings).
    const MAX_LENGTH: usize = 99_999;

    /// The connection is up. Mirrors `connectionMade`.
    fn connection_made(&mut self, conn: &StringHandle) {
        let _ = conn;
    }

    /// A complete string arrived, framing removed. Mirrors `stringReceived`.
    fn string_received(&mut self, string: &[u8], conn: &StringHandle);

    /// An int-prefixed string announced `length` bytes, more than
    /// `MAX_LENGTH`; the string is not delivered and stays buffered. The
    /// default drops the connection. Mirrors
    /// `IntNStringReceiver.lengthLimitExceeded`. (A netstring that is too
    /// long is a parse error instead, as in Twisted.)
    fn length_limit_exceeded(&mut self, length: u64, conn: &StringHandle) {
        let _ = length;
        conn.lose_connection();
    }

    /// The connection is gone. Mirrors `connectionLost`.
    fn connection_lost(&mut self, reason: Failure, conn: &StringHandle) {
        let _ = (reason, conn);
    }
}

/// What the framing found at the start of the unread bytes.
#[derive(Debug)]
pub(crate) enum Next {
    /// Not enough bytes yet.
    Need,
    /// A string at `start..end`; `consumed` bytes (framing included) are
    /// used up.
    String {
        start: usize,
        end: usize,
        consumed: usize,
    },
    /// An int prefix announced more than `MAX_LENGTH`.
    LengthExceeded(u64),
    /// The bytes are not a netstring.
    ParseError(NetstringParseError),
}

mod sealed {
    pub trait Sealed {}
}

/// A wire format for [`StringReceiver`] strings: netstrings or big-endian
/// integer length prefixes. Implemented by this module's framings only.
pub trait Framing: sealed::Sealed + 'static {
    /// Frames `string` for sending. Mirrors `sendString`'s encoding.
    fn frame(string: &[u8]) -> Result<Vec<u8>, StringTooLongError>;
    #[doc(hidden)]
    #[allow(private_interfaces)]
    fn next(buf: &[u8], max_length: usize) -> Next;
}

pub(crate) use sealed::Sealed;

struct StringState {
    buffer: RefCell<Vec<u8>>,
    paused: Cell<bool>,
    busy: Cell<bool>,
    /// Bytes at the start of `buffer` already delivered in this pass;
    /// dropped when the pass ends, even if a callback panics (so nothing is
    /// delivered twice).
    consumed: Cell<usize>,
    broken_peer: Cell<bool>,
    max_length: Cell<usize>,
    frame: fn(&[u8]) -> Result<Vec<u8>, StringTooLongError>,
    transport: RefCell<Option<Rc<dyn Transport>>>,
    pump: RefCell<Option<Weak<dyn Pump>>>,
}

trait Pump {
    fn pump(&self, data: &[u8]);
}

/// The connection as a [`StringReceiver`]'s callbacks see it: sending
/// strings, pausing, the transport. Cheap to clone; clones may be kept in
/// Deferred callbacks.
#[derive(Clone)]
pub struct StringHandle {
    st: Rc<StringState>,
}

impl StringHandle {
    /// The transport, once connected.
    pub fn transport(&self) -> Option<Rc<dyn Transport>> {
        self.st.transport.borrow().clone()
    }

    /// Frames `string` and writes it in one write. Fails, sending nothing,
    /// if the string does not fit the length prefix (int-prefixed
    /// framings only). Logs a warning and sends nothing before the
    /// connection is made. Mirrors `sendString` (whose failure is
    /// `StringTooLongError`).
    pub fn send_string(&self, string: &[u8]) -> Result<(), StringTooLongError> {
        let framed = (self.st.frame)(string)?;
        match self.transport() {
            Some(t) => t.write(&framed),
            None => tracing::warn!(
                "StringReceiver: send_string before the connection was made; string dropped"
            ),
        }
        Ok(())
    }

    /// `transport.lose_connection()`.
    pub fn lose_connection(&self) {
        if let Some(t) = self.transport() {
            t.lose_connection();
        }
    }

    /// True once a malformed netstring was received (the connection is
    /// being dropped and nothing more is parsed). Mirrors `brokenPeer`.
    pub fn broken_peer(&self) -> bool {
        self.st.broken_peer.get()
    }

    /// The longest string accepted.
    pub fn max_length(&self) -> usize {
        self.st.max_length.get()
    }

    /// Changes the longest string accepted (Twisted: assigning
    /// `MAX_LENGTH`).
    pub fn set_max_length(&self, max_length: usize) {
        self.st.max_length.set(max_length);
    }

    /// Stops delivering strings (they stay buffered) and pauses the
    /// transport. Mirrors `_PauseableMixin.pauseProducing`.
    pub fn pause_producing(&self) {
        self.st.paused.set(true);
        if let Some(t) = self.transport() {
            t.pause_producing();
        }
    }

    /// Resumes the transport and delivers what is buffered. Mirrors
    /// `_PauseableMixin.resumeProducing`.
    pub fn resume_producing(&self) {
        self.st.paused.set(false);
        if let Some(t) = self.transport() {
            t.resume_producing();
        }
        let target = self.st.pump.borrow().as_ref().and_then(Weak::upgrade);
        if let Some(p) = target {
            p.pump(b"");
        }
    }

    /// Stops delivering and stops the transport for good. Mirrors
    /// `_PauseableMixin.stopProducing`.
    pub fn stop_producing(&self) {
        self.st.paused.set(true);
        if let Some(t) = self.transport() {
            t.stop_producing();
        }
    }

    /// True between `pause_producing` and `resume_producing`.
    pub fn paused(&self) -> bool {
        self.st.paused.get()
    }

    /// The bytes received and not yet delivered. Mirrors the `recvd`
    /// attribute (read-only here).
    pub fn recvd(&self) -> Vec<u8> {
        self.st.buffer.borrow()[self.st.consumed.get()..].to_vec()
    }
}

impl fmt::Debug for StringHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StringHandle")
            .field("buffered", &self.st.buffer.borrow().len())
            .field("paused", &self.st.paused.get())
            .field("broken_peer", &self.st.broken_peer.get())
            .field("max_length", &self.st.max_length.get())
            .finish()
    }
}

/// Int-prefixed receivers are push producers (Twisted's `_PauseableMixin`).
impl Producer for StringHandle {
    fn pause_producing(&self) {
        StringHandle::pause_producing(self);
    }
    fn resume_producing(&self) {
        StringHandle::resume_producing(self);
    }
    fn stop_producing(&self) {
        StringHandle::stop_producing(self);
    }
}

struct Inner<H, F> {
    handle: StringHandle,
    handler: RefCell<H>,
    _framing: PhantomData<F>,
}

struct Busy<'a>(&'a StringState);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.busy.set(false);
        let n = self.0.consumed.replace(0);
        let mut buf = self.0.buffer.borrow_mut();
        buf.drain(..n);
        // An idle connection should not keep the memory of its largest
        // string.
        if buf.is_empty() && buf.capacity() > 8 * 1024 {
            *buf = Vec::new();
        }
    }
}

impl<H: StringReceiver, F: Framing> Pump for Inner<H, F> {
    fn pump(&self, data: &[u8]) {
        let st = &*self.handle.st;
        if st.broken_peer.get() {
            return;
        }
        st.buffer.borrow_mut().extend_from_slice(data);
        if st.busy.get() {
            return;
        }
        st.busy.set(true);
        let _busy = Busy(st);
        let mut handler = self.handler.borrow_mut();
        let outcome = loop {
            let pos = st.consumed.get();
            if st.paused.get() {
                break None;
            }
            let next = F::next(&st.buffer.borrow()[pos..], st.max_length.get());
            match next {
                Next::Need => break None,
                Next::String {
                    start,
                    end,
                    consumed,
                } => {
                    let string = st.buffer.borrow()[pos + start..pos + end].to_vec();
                    st.consumed.set(pos + consumed);
                    handler.string_received(&string, &self.handle);
                }
                Next::LengthExceeded(n) => break Some(Err(n)),
                Next::ParseError(e) => break Some(Ok(e)),
            }
        };
        let n = st.consumed.replace(0);
        st.buffer.borrow_mut().drain(..n);
        match outcome {
            None => {}
            Some(Err(length)) => {
                // The rest stays buffered, as Twisted's `recvd` shows it.
                handler.length_limit_exceeded(length, &self.handle);
            }
            Some(Ok(error)) => {
                tracing::debug!(%error, "NetstringReceiver: malformed netstring; dropping the connection");
                st.buffer.borrow_mut().clear();
                st.broken_peer.set(true);
                self.handle.lose_connection();
            }
        }
    }
}

/// The [`Protocol`] that frames and unframes strings for a
/// [`StringReceiver`], in the wire format `F`. Use its aliases:
/// [`NetstringReceiverProtocol`](super::NetstringReceiverProtocol),
/// [`Int32StringReceiverProtocol`](super::Int32StringReceiverProtocol),
/// [`Int16StringReceiverProtocol`](super::Int16StringReceiverProtocol),
/// [`Int8StringReceiverProtocol`](super::Int8StringReceiverProtocol).
pub struct StringReceiverProtocol<H: StringReceiver, F: Framing> {
    inner: Rc<Inner<H, F>>,
}

impl<H: StringReceiver, F: Framing> StringReceiverProtocol<H, F> {
    /// A protocol delivering strings to `handler`.
    pub fn new(handler: H) -> Self {
        let inner = Rc::new(Inner {
            handle: StringHandle {
                st: Rc::new(StringState {
                    buffer: RefCell::new(Vec::new()),
                    paused: Cell::new(false),
                    busy: Cell::new(false),
                    consumed: Cell::new(0),
                    broken_peer: Cell::new(false),
                    max_length: Cell::new(H::MAX_LENGTH),
                    frame: F::frame,
                    transport: RefCell::new(None),
                    pump: RefCell::new(None),
                }),
            },
            handler: RefCell::new(handler),
            _framing: PhantomData::<F>,
        });
        let weak: Weak<Inner<H, F>> = Rc::downgrade(&inner);
        let weak: Weak<dyn Pump> = weak;
        *inner.handle.st.pump.borrow_mut() = Some(weak);
        StringReceiverProtocol { inner }
    }

    /// Uses `max_length` instead of `H::MAX_LENGTH`.
    pub fn with_max_length(self, max_length: usize) -> Self {
        self.inner.handle.set_max_length(max_length);
        self
    }

    /// The connection's handle.
    pub fn handle(&self) -> StringHandle {
        self.inner.handle.clone()
    }

    /// The handler.
    pub fn handler(&self) -> Ref<'_, H> {
        self.inner.handler.borrow()
    }

    /// The handler, mutably.
    pub fn handler_mut(&self) -> RefMut<'_, H> {
        self.inner.handler.borrow_mut()
    }
}

impl<H: StringReceiver + fmt::Debug, F: Framing> fmt::Debug for StringReceiverProtocol<H, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StringReceiverProtocol")
            .field("handle", &self.inner.handle)
            .field("handler", &self.inner.handler)
            .finish()
    }
}

impl<H: StringReceiver, F: Framing> Protocol for StringReceiverProtocol<H, F> {
    fn connection_made(&mut self, transport: Rc<dyn Transport>) {
        *self.inner.handle.st.transport.borrow_mut() = Some(transport);
        self.inner
            .handler
            .borrow_mut()
            .connection_made(&self.inner.handle);
    }

    fn data_received(&mut self, data: &[u8]) {
        self.inner.pump(data);
    }

    fn connection_lost(&mut self, reason: Failure) {
        self.inner
            .handler
            .borrow_mut()
            .connection_lost(reason, &self.inner.handle);
    }
}
