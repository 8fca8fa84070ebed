//! [`LineReceiver`]: lines and raw data, switching between the two. Mirrors
//! `twisted.protocols.basic.LineReceiver` (with `_PauseableMixin`).

use std::cell::{Cell, Ref, RefCell, RefMut};
use std::fmt;
use std::rc::{Rc, Weak};

use deferred::Failure;

use crate::protocol::Protocol;
use crate::protocols::basic::find;
use crate::transport::{Producer, Transport};

/// What a line protocol does with what arrives; implement it and wrap the
/// value in a [`LineReceiverProtocol`], which is the [`Protocol`]. Mirrors
/// subclassing `twisted.protocols.basic.LineReceiver` and overriding
/// `lineReceived` (and `rawDataReceived`, `lineLengthExceeded`,
/// `connectionMade`, `connectionLost` as needed).
///
/// Every callback gets the connection's [`LineHandle`] (Twisted's `self`
/// for `sendLine`, `setRawMode`, `transport`...). Clone it into a
/// Deferred's callback to answer later, for example when a database query
/// finished.
///
/// # Examples
///
/// An echo server, tested on a [`StringTransport`](crate::testing::StringTransport):
///
/// ```
/// use reactor::protocols::basic::{LineHandle, LineReceiver, LineReceiverProtocol};
/// use reactor::testing::StringTransportWithDisconnection;
///
/// struct Echo;
/// impl LineReceiver for Echo {
///     fn line_received(&mut self, line: &[u8], conn: &LineHandle) {
///         if line == b"quit" {
///             conn.lose_connection();
///         } else {
///             conn.send_line(line);
///         }
///     }
/// }
///
/// let conn = StringTransportWithDisconnection::connect(LineReceiverProtocol::new(Echo));
/// conn.data_received(b"hello\r\nwor");
/// conn.data_received(b"ld\r\nquit\r\nignored\r\n");
/// assert_eq!(conn.transport().value(), b"hello\r\nworld\r\n");
/// assert!(!conn.connected());
/// ```
///
/// A handler that answers from a Deferred's callback (a `ConnectionPool`'s
/// `run_query` in a real server) clones the handle:
///
/// ```
/// use deferred::Deferred;
/// use reactor::protocols::basic::{LineHandle, LineReceiver, LineReceiverProtocol};
/// use reactor::testing::StringTransportWithDisconnection;
///
/// struct Later { pending: Vec<deferred::Resolver<String>> }
/// impl LineReceiver for Later {
///     fn line_received(&mut self, line: &[u8], conn: &LineHandle) {
///         let (d, resolver) = Deferred::<String>::new(); // stands for pool.run_query(...)
///         self.pending.push(resolver);
///         let conn = conn.clone();
///         let user = String::from_utf8_lossy(line).into_owned();
///         d.add_callback(move |name| conn.send_line(format!("{user}: {name}").as_bytes()));
///     }
/// }
///
/// let conn = StringTransportWithDisconnection::connect(
///     LineReceiverProtocol::new(Later { pending: vec![] }));
/// conn.data_received(b"user 1\r\n");
/// assert_eq!(conn.transport().value(), b"");
/// let r = conn.protocol().handler_mut().pending.pop().unwrap();
/// r.callback("alice".into()).unwrap();
/// assert_eq!(conn.transport().value(), b"user 1: alice\r\n");
/// ```
pub trait LineReceiver: 'static {
    /// The line delimiter. Mirrors the `delimiter` class attribute.
    const DELIMITER: &'static [u8] = b"\r\n";
    /// The longest line accepted, delimiter excluded; longer lines go to
    /// [`line_length_exceeded`](Self::line_length_exceeded). Mirrors
    /// `MAX_LENGTH`.
    const MAX_LENGTH: usize = 16_384;

    /// The connection is up. Mirrors `connectionMade`.
    fn connection_made(&mut self, conn: &LineHandle) {
        let _ = conn;
    }

    /// A line arrived, delimiter removed. Mirrors `lineReceived`.
    fn line_received(&mut self, line: &[u8], conn: &LineHandle);

    /// Bytes arrived in raw mode (after [`LineHandle::set_raw_mode`]).
    /// Mirrors `rawDataReceived`. Twisted's raises `NotImplementedError`;
    /// here the default logs an error and drops the connection, since a
    /// protocol that switches to raw mode without handling raw data cannot
    /// go on.
    fn raw_data_received(&mut self, data: &[u8], conn: &LineHandle) {
        tracing::error!(
            bytes = data.len(),
            "LineReceiver: raw data received but raw_data_received is not implemented; dropping the connection"
        );
        conn.lose_connection();
    }

    /// A line longer than `MAX_LENGTH` arrived; `line` holds the rest of the
    /// buffer, starting with (at least part of) that line, and the buffer is
    /// now empty. The default drops the connection, as Twisted's. Mirrors
    /// `lineLengthExceeded`.
    fn line_length_exceeded(&mut self, line: &[u8], conn: &LineHandle) {
        let _ = line;
        conn.lose_connection();
    }

    /// The connection is gone. Mirrors `connectionLost`.
    fn connection_lost(&mut self, reason: Failure, conn: &LineHandle) {
        let _ = (reason, conn);
    }
}

/// The most buffer capacity kept while nothing is buffered.
const IDLE_CAPACITY: usize = 8 * 1024;

struct LineState {
    buffer: RefCell<Vec<u8>>,
    /// Where the unread part of `buffer` starts: lines are consumed by
    /// moving this, and the buffer is compacted once per `data_received`, so
    /// a chunk holding many lines is parsed in linear time (Twisted's
    /// `split` copies the rest of the buffer for every line).
    pos: Cell<usize>,
    /// No delimiter starts in `pos..scanned`: feeding a long line a byte at
    /// a time does not rescan it from the start each time.
    scanned: Cell<usize>,
    line_mode: Cell<bool>,
    paused: Cell<bool>,
    busy: Cell<bool>,
    delimiter: RefCell<Rc<[u8]>>,
    max_length: Cell<usize>,
    transport: RefCell<Option<Rc<dyn Transport>>>,
    pump: RefCell<Option<Weak<dyn Pump>>>,
}

impl LineState {
    fn remaining(&self) -> usize {
        self.buffer.borrow().len() - self.pos.get()
    }

    fn take_all(&self) -> Vec<u8> {
        let mut buf = self.buffer.borrow_mut();
        let rest = buf.split_off(self.pos.get());
        buf.clear();
        self.pos.set(0);
        self.scanned.set(0);
        rest
    }

    fn compact(&self) {
        let pos = self.pos.get();
        let mut buf = self.buffer.borrow_mut();
        if pos > 0 {
            buf.drain(..pos);
            self.scanned.set(self.scanned.get().saturating_sub(pos));
            self.pos.set(0);
        }
        // An idle connection should not keep the memory of its largest
        // burst (thousands of idle connections add up).
        if buf.is_empty() && buf.capacity() > IDLE_CAPACITY {
            *buf = Vec::new();
        }
    }

    fn disconnecting(&self) -> bool {
        self.transport
            .borrow()
            .as_ref()
            .is_some_and(|t| t.disconnecting())
    }
}

trait Pump {
    fn pump(&self, data: &[u8]);
}

/// The connection as a [`LineReceiver`]'s callbacks see it: sending lines,
/// switching modes, pausing, the transport. Cheap to clone; clones may be
/// kept in Deferred callbacks. The parts of Twisted's `LineReceiver` that
/// are called on `self`.
#[derive(Clone)]
pub struct LineHandle {
    st: Rc<LineState>,
}

impl LineHandle {
    fn new(delimiter: &[u8], max_length: usize) -> LineHandle {
        LineHandle {
            st: Rc::new(LineState {
                buffer: RefCell::new(Vec::new()),
                pos: Cell::new(0),
                scanned: Cell::new(0),
                line_mode: Cell::new(true),
                paused: Cell::new(false),
                busy: Cell::new(false),
                delimiter: RefCell::new(Rc::from(delimiter)),
                max_length: Cell::new(max_length),
                transport: RefCell::new(None),
                pump: RefCell::new(None),
            }),
        }
    }

    /// The transport, once connected (Twisted's `self.transport`).
    pub fn transport(&self) -> Option<Rc<dyn Transport>> {
        self.st.transport.borrow().clone()
    }

    /// Writes `line` and the delimiter, in one write. Before the connection
    /// is made it logs a warning and sends nothing. Mirrors `sendLine`.
    pub fn send_line(&self, line: &[u8]) {
        let Some(t) = self.transport() else {
            tracing::warn!("LineReceiver: send_line before the connection was made; line dropped");
            return;
        };
        let delimiter = Rc::clone(&self.st.delimiter.borrow());
        let mut out = Vec::with_capacity(line.len() + delimiter.len());
        out.extend_from_slice(line);
        out.extend_from_slice(&delimiter);
        t.write(&out);
    }

    /// Closes the connection once what is buffered is sent
    /// (`self.transport.loseConnection()`); no further lines are delivered.
    /// Does nothing before the connection is made.
    pub fn lose_connection(&self) {
        if let Some(t) = self.transport() {
            t.lose_connection();
        }
    }

    /// Further data goes to `raw_data_received`, starting with the rest of
    /// the current chunk. Mirrors `setRawMode`.
    pub fn set_raw_mode(&self) {
        self.st.line_mode.set(false);
    }

    /// Further data is parsed into lines again. `extra` (the unused tail of
    /// the data given to `raw_data_received`) is parsed first: from inside a
    /// callback it is buffered and parsed once the callback returns (as in
    /// Twisted, where `dataReceived` is busy then); from elsewhere it is
    /// parsed now. Mirrors `setLineMode(extra)`.
    pub fn set_line_mode(&self, extra: &[u8]) {
        self.st.line_mode.set(true);
        if !extra.is_empty() {
            self.pump(extra);
        }
    }

    /// True in line mode. Mirrors the `line_mode` attribute.
    pub fn line_mode(&self) -> bool {
        self.st.line_mode.get()
    }

    /// Removes and returns everything buffered and not yet delivered. May
    /// be called from inside `line_received`. Mirrors `clearLineBuffer`.
    pub fn clear_line_buffer(&self) -> Vec<u8> {
        self.st.take_all()
    }

    /// Stops delivering lines (they stay buffered) and pauses the
    /// transport's reading. Mirrors `_PauseableMixin.pauseProducing`.
    pub fn pause_producing(&self) {
        self.st.paused.set(true);
        if let Some(t) = self.transport() {
            t.pause_producing();
        }
    }

    /// Resumes the transport's reading and delivers the buffered lines.
    /// Mirrors `_PauseableMixin.resumeProducing` (which calls
    /// `dataReceived(b"")`).
    pub fn resume_producing(&self) {
        self.st.paused.set(false);
        if let Some(t) = self.transport() {
            t.resume_producing();
        }
        self.pump(b"");
    }

    /// Stops delivering and stops the transport for good. Mirrors
    /// `_PauseableMixin.stopProducing`.
    pub fn stop_producing(&self) {
        self.st.paused.set(true);
        if let Some(t) = self.transport() {
            t.stop_producing();
        }
    }

    /// True between `pause_producing` (or `stop_producing`) and
    /// `resume_producing`. Mirrors the `paused` attribute.
    pub fn paused(&self) -> bool {
        self.st.paused.get()
    }

    /// The delimiter in use.
    pub fn delimiter(&self) -> Rc<[u8]> {
        Rc::clone(&self.st.delimiter.borrow())
    }

    /// Changes the delimiter (Twisted: assigning `self.delimiter`).
    ///
    /// # Panics
    /// If `delimiter` is empty: no line could ever end.
    pub fn set_delimiter(&self, delimiter: &[u8]) {
        assert!(!delimiter.is_empty(), "a line delimiter cannot be empty");
        *self.st.delimiter.borrow_mut() = Rc::from(delimiter);
        self.st.scanned.set(0);
    }

    /// The longest line accepted.
    pub fn max_length(&self) -> usize {
        self.st.max_length.get()
    }

    /// Changes the longest line accepted (Twisted: assigning
    /// `self.MAX_LENGTH`).
    pub fn set_max_length(&self, max_length: usize) {
        self.st.max_length.set(max_length);
    }

    /// Parses `data` as if it had arrived from the transport (Twisted's
    /// `self.dataReceived(data)` from protocol code).
    pub fn data_received(&self, data: &[u8]) {
        self.pump(data);
    }

    fn pump(&self, data: &[u8]) {
        let target = self.st.pump.borrow().as_ref().and_then(Weak::upgrade);
        match target {
            Some(p) => p.pump(data),
            None => self.st.buffer.borrow_mut().extend_from_slice(data),
        }
    }
}

impl fmt::Debug for LineHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LineHandle")
            .field("line_mode", &self.st.line_mode.get())
            .field("paused", &self.st.paused.get())
            .field("buffered", &self.st.remaining())
            .field("delimiter", &self.st.delimiter.borrow())
            .field("max_length", &self.st.max_length.get())
            .finish()
    }
}

/// A line receiver is a push producer of lines: registering its handle with
/// a transport (`register_producer(Rc::new(handle), ..)`) lets the
/// transport pause it. Mirrors `LineReceiver` providing `IPushProducer`
/// through `_PauseableMixin`.
impl Producer for LineHandle {
    fn pause_producing(&self) {
        LineHandle::pause_producing(self);
    }
    fn resume_producing(&self) {
        LineHandle::resume_producing(self);
    }
    fn stop_producing(&self) {
        LineHandle::stop_producing(self);
    }
}

struct LineInner<H> {
    handle: LineHandle,
    handler: RefCell<H>,
    /// The line being delivered, copied out of the buffer (which the
    /// callback may clear or extend) into storage reused for every line.
    line: RefCell<Vec<u8>>,
}

/// Resets `busy` even if a callback panics, so the protocol is not stuck
/// buffering for ever (the transport drops the connection on a panic, but
/// a test may go on using the protocol).
struct Busy<'a>(&'a LineState);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.busy.set(false);
        self.0.compact();
    }
}

impl<H: LineReceiver> Pump for LineInner<H> {
    fn pump(&self, data: &[u8]) {
        let st = &*self.handle.st;
        st.buffer.borrow_mut().extend_from_slice(data);
        // A callback that resumes or feeds data while we are parsing:
        // Twisted's `_busyReceiving` buffers it for the loop below.
        if st.busy.get() {
            return;
        }
        st.busy.set(true);
        let _busy = Busy(st);
        let mut handler = self.handler.borrow_mut();
        let conn = &self.handle;
        while st.remaining() > 0 && !st.paused.get() {
            if st.line_mode.get() {
                // Twisted checks after each line; checking before also
                // covers data that arrives after the protocol asked to
                // disconnect.
                if st.disconnecting() {
                    return;
                }
                let delimiter = Rc::clone(&st.delimiter.borrow());
                let max = st.max_length.get();
                let pos = st.pos.get();
                let found = {
                    let buf = st.buffer.borrow();
                    let from = st
                        .scanned
                        .get()
                        .saturating_sub(delimiter.len() - 1)
                        .max(pos);
                    find(&buf[from..], &delimiter).map(|i| from + i)
                };
                match found {
                    None => {
                        let len = st.buffer.borrow().len();
                        st.scanned.set(len);
                        if len - pos >= max + delimiter.len() {
                            let line = st.take_all();
                            handler.line_length_exceeded(&line, conn);
                        }
                        return;
                    }
                    Some(end) => {
                        if end - pos > max {
                            let exceeded = st.take_all();
                            handler.line_length_exceeded(&exceeded, conn);
                            return;
                        }
                        let mut line = self.line.borrow_mut();
                        line.clear();
                        line.extend_from_slice(&st.buffer.borrow()[pos..end]);
                        st.pos.set(end + delimiter.len());
                        handler.line_received(&line, conn);
                        if line.capacity() > IDLE_CAPACITY {
                            *line = Vec::new();
                        }
                        drop(line);
                        if st.disconnecting() {
                            return;
                        }
                    }
                }
            } else {
                let data = st.take_all();
                handler.raw_data_received(&data, conn);
            }
        }
    }
}

/// The [`Protocol`] that parses a connection's bytes into lines (or raw
/// data) for a [`LineReceiver`]. Together they are Twisted's
/// `twisted.protocols.basic.LineReceiver`: this part owns the buffer and
/// the mode, the handler decides what lines mean.
///
/// The delimiter and maximum line length start as the handler's
/// [`DELIMITER`](LineReceiver::DELIMITER) and
/// [`MAX_LENGTH`](LineReceiver::MAX_LENGTH); [`with_delimiter`](Self::with_delimiter)
/// and [`with_max_length`](Self::with_max_length) (or the handle's setters)
/// change them per connection.
pub struct LineReceiverProtocol<H: LineReceiver> {
    inner: Rc<LineInner<H>>,
}

impl<H: LineReceiver> LineReceiverProtocol<H> {
    /// A protocol delivering lines to `handler`.
    ///
    /// # Panics
    /// If `H::DELIMITER` is empty.
    pub fn new(handler: H) -> Self {
        assert!(!H::DELIMITER.is_empty(), "a line delimiter cannot be empty");
        let inner = Rc::new(LineInner {
            handle: LineHandle::new(H::DELIMITER, H::MAX_LENGTH),
            handler: RefCell::new(handler),
            line: RefCell::new(Vec::new()),
        });
        let weak: Weak<LineInner<H>> = Rc::downgrade(&inner);
        let weak: Weak<dyn Pump> = weak;
        *inner.handle.st.pump.borrow_mut() = Some(weak);
        LineReceiverProtocol { inner }
    }

    /// Uses `delimiter` instead of `H::DELIMITER`.
    ///
    /// # Panics
    /// If `delimiter` is empty.
    pub fn with_delimiter(self, delimiter: &[u8]) -> Self {
        self.inner.handle.set_delimiter(delimiter);
        self
    }

    /// Uses `max_length` instead of `H::MAX_LENGTH`.
    pub fn with_max_length(self, max_length: usize) -> Self {
        self.inner.handle.set_max_length(max_length);
        self
    }

    /// The connection's handle (the one the callbacks get).
    pub fn handle(&self) -> LineHandle {
        self.inner.handle.clone()
    }

    /// The handler. Do not hold the borrow while data is delivered.
    pub fn handler(&self) -> Ref<'_, H> {
        self.inner.handler.borrow()
    }

    /// The handler, mutably.
    pub fn handler_mut(&self) -> RefMut<'_, H> {
        self.inner.handler.borrow_mut()
    }
}

impl<H: LineReceiver + fmt::Debug> fmt::Debug for LineReceiverProtocol<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LineReceiverProtocol")
            .field("handle", &self.inner.handle)
            .field("handler", &self.inner.handler)
            .finish()
    }
}

impl<H: LineReceiver> Protocol for LineReceiverProtocol<H> {
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
