//! [`LineOnlyReceiver`]: lines only, no raw mode. Mirrors
//! `twisted.protocols.basic.LineOnlyReceiver`.

use std::cell::{Cell, Ref, RefCell, RefMut};
use std::fmt;
use std::rc::Rc;

use deferred::Failure;

use crate::protocol::Protocol;
use crate::protocols::basic::{find, rfind};
use crate::transport::Transport;

/// What a lines-only protocol does with each line; wrap it in a
/// [`LineOnlyReceiverProtocol`]. Mirrors subclassing
/// `twisted.protocols.basic.LineOnlyReceiver` (Twisted's faster
/// `LineReceiver` for protocols that never need raw mode).
///
/// # Examples
///
/// ```
/// use reactor::protocols::basic::{LineOnlyHandle, LineOnlyReceiver, LineOnlyReceiverProtocol};
/// use reactor::testing::StringTransportWithDisconnection;
///
/// struct Upper;
/// impl LineOnlyReceiver for Upper {
///     const DELIMITER: &'static [u8] = b"\n";
///     fn line_received(&mut self, line: &[u8], conn: &LineOnlyHandle) {
///         conn.send_line(&line.to_ascii_uppercase());
///     }
/// }
/// let conn = StringTransportWithDisconnection::connect(LineOnlyReceiverProtocol::new(Upper));
/// conn.data_received(b"abc\nd");
/// conn.data_received(b"ef\n");
/// assert_eq!(conn.transport().value(), b"ABC\nDEF\n");
/// ```
pub trait LineOnlyReceiver: 'static {
    /// The line delimiter. Mirrors `delimiter`.
    const DELIMITER: &'static [u8] = b"\r\n";
    /// The longest line accepted. Mirrors `MAX_LENGTH`.
    const MAX_LENGTH: usize = 16_384;

    /// The connection is up. Mirrors `connectionMade`.
    fn connection_made(&mut self, conn: &LineOnlyHandle) {
        let _ = conn;
    }

    /// A line arrived, delimiter removed. Mirrors `lineReceived`.
    fn line_received(&mut self, line: &[u8], conn: &LineOnlyHandle);

    /// A line (or an unterminated tail) longer than `MAX_LENGTH` arrived.
    /// The default drops the connection. Mirrors `lineLengthExceeded`.
    fn line_length_exceeded(&mut self, line: &[u8], conn: &LineOnlyHandle) {
        let _ = line;
        conn.lose_connection();
    }

    /// The connection is gone. Mirrors `connectionLost`.
    fn connection_lost(&mut self, reason: Failure, conn: &LineOnlyHandle) {
        let _ = (reason, conn);
    }
}

struct LineOnlyState {
    delimiter: RefCell<Rc<[u8]>>,
    max_length: Cell<usize>,
    transport: RefCell<Option<Rc<dyn Transport>>>,
}

/// The connection as a [`LineOnlyReceiver`]'s callbacks see it. Cheap to
/// clone, may be kept in Deferred callbacks.
#[derive(Clone)]
pub struct LineOnlyHandle {
    st: Rc<LineOnlyState>,
}

impl LineOnlyHandle {
    /// The transport, once connected.
    pub fn transport(&self) -> Option<Rc<dyn Transport>> {
        self.st.transport.borrow().clone()
    }

    /// Writes `line` then the delimiter (`writeSequence`). Logs a warning
    /// and sends nothing before the connection is made. Mirrors `sendLine`.
    pub fn send_line(&self, line: &[u8]) {
        let Some(t) = self.transport() else {
            tracing::warn!(
                "LineOnlyReceiver: send_line before the connection was made; line dropped"
            );
            return;
        };
        let delimiter = Rc::clone(&self.st.delimiter.borrow());
        t.write_sequence(&[line, &delimiter]);
    }

    /// `transport.lose_connection()`; no further lines are delivered.
    pub fn lose_connection(&self) {
        if let Some(t) = self.transport() {
            t.lose_connection();
        }
    }

    /// The delimiter in use.
    pub fn delimiter(&self) -> Rc<[u8]> {
        Rc::clone(&self.st.delimiter.borrow())
    }

    /// Changes the delimiter.
    ///
    /// # Panics
    /// If `delimiter` is empty.
    pub fn set_delimiter(&self, delimiter: &[u8]) {
        assert!(!delimiter.is_empty(), "a line delimiter cannot be empty");
        *self.st.delimiter.borrow_mut() = Rc::from(delimiter);
    }

    /// The longest line accepted.
    pub fn max_length(&self) -> usize {
        self.st.max_length.get()
    }

    /// Changes the longest line accepted.
    pub fn set_max_length(&self, max_length: usize) {
        self.st.max_length.set(max_length);
    }

    fn disconnecting(&self) -> bool {
        self.st
            .transport
            .borrow()
            .as_ref()
            .is_some_and(|t| t.disconnecting())
    }
}

impl fmt::Debug for LineOnlyHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LineOnlyHandle")
            .field("delimiter", &self.st.delimiter.borrow())
            .field("max_length", &self.st.max_length.get())
            .finish()
    }
}

/// The [`Protocol`] that splits a connection's bytes into lines for a
/// [`LineOnlyReceiver`]. Together: Twisted's `LineOnlyReceiver`.
pub struct LineOnlyReceiverProtocol<H: LineOnlyReceiver> {
    handle: LineOnlyHandle,
    buffer: Vec<u8>,
    handler: RefCell<H>,
}

impl<H: LineOnlyReceiver> LineOnlyReceiverProtocol<H> {
    /// A protocol delivering lines to `handler`.
    ///
    /// # Panics
    /// If `H::DELIMITER` is empty.
    pub fn new(handler: H) -> Self {
        assert!(!H::DELIMITER.is_empty(), "a line delimiter cannot be empty");
        LineOnlyReceiverProtocol {
            handle: LineOnlyHandle {
                st: Rc::new(LineOnlyState {
                    delimiter: RefCell::new(Rc::from(H::DELIMITER)),
                    max_length: Cell::new(H::MAX_LENGTH),
                    transport: RefCell::new(None),
                }),
            },
            buffer: Vec::new(),
            handler: RefCell::new(handler),
        }
    }

    /// Uses `delimiter` instead of `H::DELIMITER`.
    ///
    /// # Panics
    /// If `delimiter` is empty.
    pub fn with_delimiter(self, delimiter: &[u8]) -> Self {
        self.handle.set_delimiter(delimiter);
        self
    }

    /// Uses `max_length` instead of `H::MAX_LENGTH`.
    pub fn with_max_length(self, max_length: usize) -> Self {
        self.handle.set_max_length(max_length);
        self
    }

    /// The connection's handle.
    pub fn handle(&self) -> LineOnlyHandle {
        self.handle.clone()
    }

    /// The handler.
    pub fn handler(&self) -> Ref<'_, H> {
        self.handler.borrow()
    }

    /// The handler, mutably.
    pub fn handler_mut(&self) -> RefMut<'_, H> {
        self.handler.borrow_mut()
    }
}

impl<H: LineOnlyReceiver + fmt::Debug> fmt::Debug for LineOnlyReceiverProtocol<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LineOnlyReceiverProtocol")
            .field("handle", &self.handle)
            .field("buffered", &self.buffer.len())
            .field("handler", &self.handler)
            .finish()
    }
}

impl<H: LineOnlyReceiver> Protocol for LineOnlyReceiverProtocol<H> {
    fn connection_made(&mut self, transport: Rc<dyn Transport>) {
        *self.handle.st.transport.borrow_mut() = Some(transport);
        self.handler.get_mut().connection_made(&self.handle);
    }

    /// As Twisted's: the complete lines of `buffer + data` are delivered in
    /// turn, and the unterminated tail stays buffered; a line longer than
    /// `MAX_LENGTH`, or the connection disconnecting, drops the lines that
    /// follow it in this chunk.
    fn data_received(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
        let delimiter = self.handle.delimiter();
        let max = self.handle.max_length();
        // Twisted splits everything first and keeps the last piece, so the
        // tail is known before any line is delivered.
        let last_end = rfind(&self.buffer, &delimiter).map_or(0, |i| i + delimiter.len());
        let handler = self.handler.get_mut();
        let mut pos = 0;
        let mut completed = true;
        while pos < last_end {
            let i =
                find(&self.buffer[pos..last_end], &delimiter).expect("a delimiter ends last_end");
            let line = &self.buffer[pos..pos + i];
            pos += i + delimiter.len();
            if self.handle.disconnecting() {
                completed = false;
                break;
            }
            if line.len() > max {
                handler.line_length_exceeded(line, &self.handle);
                completed = false;
                break;
            }
            handler.line_received(line, &self.handle);
        }
        self.buffer.drain(..last_end);
        if completed && self.buffer.len() > max {
            // Twisted keeps the tail; dropping it bounds the memory a peer
            // that never sends a delimiter can hold.
            let tail = std::mem::take(&mut self.buffer);
            handler.line_length_exceeded(&tail, &self.handle);
        }
        if self.buffer.is_empty() && self.buffer.capacity() > 8 * 1024 {
            self.buffer = Vec::new();
        }
    }

    fn connection_lost(&mut self, reason: Failure) {
        self.handler.get_mut().connection_lost(reason, &self.handle);
    }
}
