//! [`Conn`]: a connected TCP socket, the [`Transport`] its protocol writes
//! to. Mirrors `twisted.internet.tcp.Connection` (with `Server` and
//! `Client`'s connected half) and `abstract.FileDescriptor`'s buffering and
//! producer handling.

use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::rc::{Rc, Weak};

use deferred::Failure;
use mio::net::TcpStream;

use super::{catch, interest, ConnectorImpl, Io, Ready, Source};
use crate::address::Address;
use crate::errors::{ConnectionAborted, ConnectionDone, ConnectionLost, ProducerError};
use crate::protocol::Protocol;
use crate::reactor::{Inner, Reactor};
use crate::transport::{Producer, Transport};

/// A streaming producer is paused once more than this much is buffered.
/// Twisted's `FileDescriptor.bufferSize` (2**16).
pub(crate) const BUFFER_SIZE: usize = 64 * 1024;

/// Reads per connection per turn before it is revisited on the next turn.
const READ_BUDGET: usize = 4;

/// A drained write buffer larger than this is freed rather than kept, so an
/// idle connection that once sent a lot holds no memory.
const KEEP_WRITE_CAPACITY: usize = 4096;

#[derive(Default)]
struct State {
    wbuf: Vec<u8>,
    wpos: usize,
    producer: Option<Rc<dyn Producer>>,
    streaming: bool,
    producer_paused: bool,
    /// `lose_connection` (or `abort_connection`) was called.
    disconnecting: bool,
    /// `lose_write_connection` was called.
    write_disconnecting: bool,
    /// Our write side is shut down.
    write_closed: bool,
    /// The peer's EOF was seen (half-close protocols).
    read_closed: bool,
    reading_paused: bool,
    /// Readable while reading was paused; read on resume.
    read_ready: bool,
    /// An event reported the peer's FIN (or an error). Kept, not just
    /// passed along with that event: no further edge comes for it, so a
    /// read that resumes later (after a pause, or on a backlog revisit)
    /// must read until `WouldBlock` or it never sees the end.
    peer_closing: bool,
    /// The last write hit `WouldBlock`: wait for a writable event.
    write_blocked: bool,
    /// On the reactor's flush list.
    queued: bool,
    /// Closed, with this reason owed to `connection_lost` on the next turn.
    pending_lost: Option<Failure>,
    /// `connection_lost` was delivered (or is being delivered).
    lost: bool,
}

impl State {
    fn buffered(&self) -> usize {
        self.wbuf.len() - self.wpos
    }
}

/// A TCP connection: the socket, its protocol, and the transport state.
pub(crate) struct Conn {
    me: Weak<Conn>,
    reactor: Weak<Inner>,
    key: Cell<usize>,
    sock: RefCell<Option<TcpStream>>,
    st: RefCell<State>,
    protocol: RefCell<Option<Box<dyn Protocol>>>,
    /// Set while a callback of the protocol is running.
    in_protocol: Cell<bool>,
    host: Address,
    peer: Address,
    /// The connector of a client connection, told when it is lost.
    connector: RefCell<Option<Rc<ConnectorImpl>>>,
}

impl Conn {
    /// Registers `sock` (or takes over the registration at `key`) and makes
    /// the connection; the caller then calls [`start`](Self::start).
    pub(crate) fn new(
        reactor: &Reactor,
        sock: TcpStream,
        peer: Address,
        existing_key: Option<usize>,
        connector: Option<Rc<ConnectorImpl>>,
    ) -> io::Result<Rc<Conn>> {
        let host: Address = sock.local_addr()?.into();
        let conn = Rc::new_cyclic(|me| Conn {
            me: me.clone(),
            reactor: reactor.weak(),
            key: Cell::new(usize::MAX),
            sock: RefCell::new(None),
            st: RefCell::new(State::default()),
            protocol: RefCell::new(None),
            in_protocol: Cell::new(false),
            host,
            peer,
            connector: RefCell::new(connector),
        });
        let io = reactor.io();
        let key = match existing_key {
            Some(key) => {
                io.replace(key, Rc::clone(&conn) as Rc<dyn Source>);
                key
            }
            None => {
                let mut sock = sock;
                let key = io.insert(Rc::clone(&conn) as Rc<dyn Source>, |reg, tok| {
                    reg.register(&mut sock, tok, interest())
                })?;
                conn.key.set(key);
                *conn.sock.borrow_mut() = Some(sock);
                return Ok(conn);
            }
        };
        conn.key.set(key);
        *conn.sock.borrow_mut() = Some(sock);
        Ok(conn)
    }

    fn rc(&self) -> Option<Rc<Conn>> {
        self.me.upgrade()
    }

    fn reactor(&self) -> Option<Reactor> {
        Reactor::upgrade_weak(&self.reactor)
    }

    /// Gives the connection its protocol (`None`: refused, close it) and
    /// calls `make_connection`, then reads what may already have arrived.
    pub(crate) fn start(self: &Rc<Self>, reactor: &Reactor, protocol: Option<Box<dyn Protocol>>) {
        let Some(protocol) = protocol else {
            // Twisted's Client gives a dummy protocol and loses the connection.
            self.lose_connection();
            return;
        };
        *self.protocol.borrow_mut() = Some(protocol);
        let transport: Rc<dyn Transport> = Rc::clone(self) as Rc<dyn Transport>;
        if let Err(f) = self.call_protocol(|p| p.make_connection(transport)) {
            self.protocol_failed(reactor, f);
            return;
        }
        if self.do_read(reactor) {
            reactor.io().push_backlog(Rc::clone(self) as Rc<dyn Source>);
        }
    }

    /// Runs `f` on the protocol, catching a panic. Skipped if there is no
    /// protocol or it is already running (a nested turn).
    fn call_protocol(&self, f: impl FnOnce(&mut dyn Protocol)) -> Result<(), Failure> {
        let Ok(mut guard) = self.protocol.try_borrow_mut() else {
            tracing::warn!("protocol callback skipped: the protocol is already running");
            return Ok(());
        };
        let Some(p) = guard.as_mut() else {
            return Ok(());
        };
        self.in_protocol.set(true);
        let r = catch(|| f(&mut **p));
        self.in_protocol.set(false);
        r
    }

    /// A protocol callback panicked: drop the connection, and give the
    /// Failure to `connection_lost`. Mirrors Twisted's handling of an
    /// exception from `dataReceived` (logged, then `connectionLost(failure)`).
    fn protocol_failed(self: &Rc<Self>, reactor: &Reactor, f: Failure) {
        tracing::error!(failure = %f, peer = %self.peer, "Unhandled Error in protocol; dropping the connection");
        self.close_socket(reactor.io());
        self.finish(reactor, f);
    }

    /// Deregisters and closes the socket.
    fn close_socket(&self, io: &Io) {
        let sock = self.sock.borrow_mut().take();
        if let Some(mut sock) = sock {
            let key = self.key.replace(usize::MAX);
            if key != usize::MAX {
                io.remove(key, &mut sock);
            }
        }
    }

    /// Closes now and delivers `connection_lost(reason)` now, once.
    pub(crate) fn finish(self: &Rc<Self>, reactor: &Reactor, reason: Failure) {
        if self.in_protocol.get() {
            // Inside the protocol (a nested turn): deliver on a later turn.
            let mut st = self.st.borrow_mut();
            if !st.lost && st.pending_lost.is_none() {
                st.pending_lost = Some(reason);
                drop(st);
                self.close_socket(reactor.io());
                reactor.io().schedule_later(Rc::clone(self));
            }
            return;
        }
        let producer = {
            let mut st = self.st.borrow_mut();
            if st.lost {
                return;
            }
            st.lost = true;
            st.disconnecting = true;
            st.pending_lost = None;
            st.wbuf = Vec::new();
            st.wpos = 0;
            st.producer.take()
        };
        self.close_socket(reactor.io());
        if let Some(p) = producer {
            if let Err(f) = catch(|| p.stop_producing()) {
                tracing::error!(failure = %f, "Unhandled Error in stop_producing");
            }
        }
        let protocol = self.protocol.borrow_mut().take();
        if let Some(mut p) = protocol {
            let r = reason.clone();
            if let Err(f) = catch(move || p.connection_lost(r)) {
                tracing::error!(failure = %f, "Unhandled Error in connection_lost");
            }
        }
        let connector = self.connector.borrow_mut().take();
        if let Some(c) = connector {
            c.connection_lost(reason);
        }
    }

    /// Delivers a `connection_lost` queued for this turn.
    pub(crate) fn deliver_later(self: &Rc<Self>, reactor: &Reactor) {
        let reason = self.st.borrow_mut().pending_lost.take();
        if let Some(reason) = reason {
            self.finish(reactor, reason);
        }
    }

    /// Drops the protocol without callbacks (the reactor itself is gone).
    pub(crate) fn forget(&self) {
        self.sock.borrow_mut().take();
        if let Ok(mut p) = self.protocol.try_borrow_mut() {
            let p = p.take();
            drop(p);
        }
        self.connector.borrow_mut().take();
        self.st.borrow_mut().producer.take();
    }

    /// Reads until `WouldBlock`, the budget, or the end. True if the budget
    /// ran out while data may remain.
    fn do_read(self: &Rc<Self>, reactor: &Reactor) -> bool {
        let io = reactor.io();
        for _ in 0..READ_BUDGET {
            let peer_closing = {
                let mut st = self.st.borrow_mut();
                if st.lost || st.pending_lost.is_some() || st.disconnecting || st.read_closed {
                    return false;
                }
                if st.reading_paused {
                    st.read_ready = true;
                    return false;
                }
                st.peer_closing
            };
            let mut buf = io.take_read_buf();
            let res = match self.sock.borrow().as_ref() {
                Some(mut s) => s.read(&mut buf),
                None => {
                    io.put_read_buf(buf);
                    return false;
                }
            };
            match res {
                Ok(0) => {
                    io.put_read_buf(buf);
                    self.read_eof(reactor);
                    return false;
                }
                Ok(n) => {
                    let r = self.call_protocol(|p| p.data_received(&buf[..n]));
                    let full = n == buf.len();
                    io.put_read_buf(buf);
                    if let Err(f) = r {
                        self.protocol_failed(reactor, f);
                        return false;
                    }
                    // On Linux every arrival raises a new edge, so a short
                    // read means the socket is drained, unless the peer's
                    // FIN came with this event (no edge would follow it).
                    if !full && !peer_closing && cfg!(target_os = "linux") {
                        return false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    io.put_read_buf(buf);
                    return false;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    io.put_read_buf(buf);
                }
                Err(e) => {
                    io.put_read_buf(buf);
                    self.lost_with(reactor, &e);
                    return false;
                }
            }
        }
        true
    }

    fn lost_with(self: &Rc<Self>, reactor: &Reactor, e: &io::Error) {
        self.finish(
            reactor,
            Failure::new(ConnectionLost {
                reason: e.to_string(),
            }),
        );
    }

    /// The peer sent FIN. Mirrors `tcp.Connection.readConnectionLost`.
    fn read_eof(self: &Rc<Self>, reactor: &Reactor) {
        let half = self
            .protocol
            .try_borrow()
            .ok()
            .and_then(|p| p.as_ref().map(|p| p.wants_half_close()))
            .unwrap_or(false);
        if half {
            self.st.borrow_mut().read_closed = true;
            if let Err(f) = self.call_protocol(|p| p.read_connection_lost()) {
                self.protocol_failed(reactor, f);
            }
        } else {
            self.finish(reactor, Failure::new(ConnectionDone));
        }
    }

    /// Queues the connection for the flush before the next poll.
    fn queue_flush(&self) {
        let mut st = self.st.borrow_mut();
        if st.queued || st.write_blocked || st.lost || st.pending_lost.is_some() {
            return;
        }
        st.queued = true;
        drop(st);
        if let (Some(me), Some(r)) = (self.rc(), self.reactor()) {
            r.io().schedule_flush(me);
        }
    }

    /// Writes what is buffered; when the buffer empties, asks the producer
    /// for more, or completes `lose_connection` / `lose_write_connection`.
    /// Mirrors `FileDescriptor.doWrite`.
    pub(crate) fn flush_now(self: &Rc<Self>, reactor: &Reactor) {
        self.st.borrow_mut().queued = false;
        loop {
            let res = {
                let mut st = self.st.borrow_mut();
                if st.lost || st.pending_lost.is_some() {
                    return;
                }
                if st.buffered() == 0 {
                    break;
                }
                let sock = self.sock.borrow();
                let Some(mut s) = sock.as_ref() else { return };
                let res = s.write(&st.wbuf[st.wpos..]);
                if let Ok(n) = res {
                    st.wpos += n;
                }
                res
            };
            match res {
                Ok(0) => {
                    self.finish(
                        reactor,
                        Failure::new(ConnectionLost {
                            reason: "write returned 0".into(),
                        }),
                    );
                    return;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.st.borrow_mut().write_blocked = true;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.lost_with(reactor, &e);
                    return;
                }
            }
        }
        enum Next {
            Nothing,
            Resume(Rc<dyn Producer>),
            Close,
            ShutdownWrite,
        }
        let next = {
            let mut st = self.st.borrow_mut();
            st.wpos = 0;
            if st.wbuf.capacity() > KEEP_WRITE_CAPACITY {
                st.wbuf = Vec::new();
            } else {
                st.wbuf.clear();
            }
            match &st.producer {
                Some(p) if !st.streaming || st.producer_paused => {
                    let p = Rc::clone(p);
                    st.producer_paused = false;
                    Next::Resume(p)
                }
                Some(_) => Next::Nothing,
                None if st.disconnecting => Next::Close,
                None if st.write_disconnecting && !st.write_closed => {
                    st.write_closed = true;
                    Next::ShutdownWrite
                }
                None => Next::Nothing,
            }
        };
        match next {
            Next::Nothing => {}
            Next::Resume(p) => {
                if let Err(f) = catch(|| p.resume_producing()) {
                    self.protocol_failed(reactor, f);
                }
            }
            Next::Close => {
                self.close_socket(reactor.io());
                self.finish(reactor, Failure::new(ConnectionDone));
            }
            Next::ShutdownWrite => {
                if let Some(s) = self.sock.borrow().as_ref() {
                    let _ = s.shutdown(Shutdown::Write);
                }
                let half = self
                    .protocol
                    .try_borrow()
                    .ok()
                    .and_then(|p| p.as_ref().map(|p| p.wants_half_close()))
                    .unwrap_or(false);
                if half {
                    if let Err(f) = self.call_protocol(|p| p.write_connection_lost()) {
                        self.protocol_failed(reactor, f);
                    }
                }
            }
        }
    }

    /// Closes now; `connection_lost(reason)` on the next turn.
    fn close_later(&self, reason: Failure) {
        {
            let mut st = self.st.borrow_mut();
            if st.lost || st.pending_lost.is_some() {
                return;
            }
            st.disconnecting = true;
            st.pending_lost = Some(reason);
            st.wbuf = Vec::new();
            st.wpos = 0;
        }
        if let (Some(me), Some(r)) = (self.rc(), self.reactor()) {
            self.close_socket(r.io());
            r.io().schedule_later(me);
        }
    }

    fn closed(&self) -> bool {
        let st = self.st.borrow();
        st.lost || st.pending_lost.is_some()
    }

    fn with_sock<T>(&self, f: impl FnOnce(&TcpStream) -> io::Result<T>) -> io::Result<T> {
        match self.sock.borrow().as_ref() {
            Some(s) => f(s),
            None => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the connection is closed",
            )),
        }
    }

    /// Bytes buffered for sending, for tests of flow control.
    pub(crate) fn buffered(&self) -> usize {
        self.st.borrow().buffered()
    }
}

impl Source for Conn {
    fn on_ready(self: Rc<Self>, reactor: &Reactor, ready: Ready) -> bool {
        if ready.error {
            let err = self.with_sock(|s| s.take_error()).ok().flatten();
            if let Some(e) = err {
                self.lost_with(reactor, &e);
                return false;
            }
        }
        if ready.writable {
            let go = {
                let mut st = self.st.borrow_mut();
                let was = st.write_blocked;
                st.write_blocked = false;
                was && !st.queued
            };
            if go {
                self.flush_now(reactor);
            }
        }
        if ready.read_closed || ready.error {
            self.st.borrow_mut().peer_closing = true;
        }
        if ready.readable || ready.read_closed || ready.error {
            return self.do_read(reactor);
        }
        false
    }

    fn shutdown(self: Rc<Self>, reactor: &Reactor) {
        self.finish(
            reactor,
            Failure::new(ConnectionLost {
                reason: "the reactor shut down".into(),
            }),
        );
    }

    fn forget(&self) {
        Conn::forget(self);
    }
}

impl Transport for Conn {
    fn write(&self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let pause = {
            let mut st = self.st.borrow_mut();
            // As Twisted's, writes are taken until the write side is
            // actually shut (`_writeDisconnected`), not from the moment
            // `lose_write_connection` is called.
            if st.lost || st.pending_lost.is_some() || st.write_closed {
                return;
            }
            if st.wpos > 0 && st.wpos >= st.wbuf.len() / 2 {
                let wpos = st.wpos;
                st.wbuf.drain(..wpos);
                st.wpos = 0;
            }
            st.wbuf.extend_from_slice(data);
            if st.streaming && !st.producer_paused && st.buffered() > BUFFER_SIZE {
                let p = st.producer.clone();
                st.producer_paused = p.is_some();
                p
            } else {
                None
            }
        };
        self.queue_flush();
        if let Some(p) = pause {
            p.pause_producing();
        }
    }

    fn write_sequence(&self, data: &[&[u8]]) {
        for d in data {
            self.write(d);
        }
    }

    fn lose_connection(&self) {
        let close_now = {
            let mut st = self.st.borrow_mut();
            if st.lost || st.pending_lost.is_some() || st.disconnecting {
                return;
            }
            st.disconnecting = true;
            st.write_closed
        };
        if close_now {
            self.close_later(Failure::new(ConnectionDone));
        } else {
            // Not while blocked: the writable event finishes the close.
            self.queue_flush();
        }
    }

    fn abort_connection(&self) {
        self.close_later(Failure::new(ConnectionAborted));
    }

    fn lose_write_connection(&self) {
        {
            let mut st = self.st.borrow_mut();
            if st.lost || st.pending_lost.is_some() || st.write_disconnecting {
                return;
            }
            st.write_disconnecting = true;
        }
        self.queue_flush();
    }

    fn disconnecting(&self) -> bool {
        let st = self.st.borrow();
        st.disconnecting || st.lost || st.pending_lost.is_some()
    }

    fn get_peer(&self) -> Address {
        self.peer
    }

    fn get_host(&self) -> Address {
        self.host
    }

    /// As Twisted's, a producer given to a transport that is disconnected
    /// (or disconnecting) is told `stop_producing`.
    fn register_producer(
        &self,
        producer: Rc<dyn Producer>,
        streaming: bool,
    ) -> Result<(), ProducerError> {
        {
            let mut st = self.st.borrow_mut();
            if st.producer.is_some() {
                return Err(ProducerError::AlreadyRegistered);
            }
            if !(st.lost || st.pending_lost.is_some() || st.disconnecting) {
                st.producer = Some(Rc::clone(&producer));
                st.streaming = streaming;
                st.producer_paused = false;
                drop(st);
                if !streaming {
                    producer.resume_producing();
                }
                return Ok(());
            }
        }
        producer.stop_producing();
        Err(ProducerError::Disconnected)
    }

    fn unregister_producer(&self) {
        let disconnecting = {
            let mut st = self.st.borrow_mut();
            st.producer = None;
            st.producer_paused = false;
            st.disconnecting || st.write_disconnecting
        };
        if disconnecting {
            self.queue_flush();
        }
    }

    fn pause_producing(&self) {
        self.st.borrow_mut().reading_paused = true;
    }

    fn resume_producing(&self) {
        let revisit = {
            let mut st = self.st.borrow_mut();
            st.reading_paused = false;
            std::mem::take(&mut st.read_ready) && !st.lost
        };
        if revisit {
            if let (Some(me), Some(r)) = (self.rc(), self.reactor()) {
                r.io().push_backlog(me as Rc<dyn Source>);
            }
        }
    }

    fn stop_producing(&self) {
        self.lose_connection();
    }

    fn set_tcp_nodelay(&self, enabled: bool) -> io::Result<()> {
        self.with_sock(|s| s.set_nodelay(enabled))
    }

    fn get_tcp_nodelay(&self) -> io::Result<bool> {
        self.with_sock(|s| s.nodelay())
    }

    fn set_tcp_keepalive(&self, enabled: bool) -> io::Result<()> {
        self.with_sock(|s| socket2::SockRef::from(s).set_keepalive(enabled))
    }

    fn get_tcp_keepalive(&self) -> io::Result<bool> {
        self.with_sock(|s| socket2::SockRef::from(s).keepalive())
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if !self.closed() && self.sock.borrow().is_some() {
            tracing::debug!(peer = %self.peer, "connection dropped while open");
        }
    }
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("host", &self.host)
            .field("peer", &self.peer)
            .field("buffered", &self.buffered())
            .finish()
    }
}
