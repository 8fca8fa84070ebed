//! [`ConnectorImpl`]: an outgoing connection, its attempts and its factory's
//! notifications. Mirrors `twisted.internet.base.BaseConnector` with
//! `tcp.Connector` and the connecting half of `tcp.Client`
//! (`resolveAddress`, `doConnect`, `failIfNotConnected`).

use std::cell::{Cell, RefCell};
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::rc::{Rc, Weak};
use std::time::Duration;

use deferred::Failure;
use mio::net::TcpStream;
use socket2::{Domain, Socket, Type};

use super::{catch, interest, Conn, Ready, Source};
use crate::errors::{ConnectError, NotConnectingError};
use crate::interfaces::{Connector, ReactorCore, ReactorExt};
use crate::protocol::{do_start, do_stop, ClientFactory, Factory};
use crate::reactor::{Inner, Reactor};
use crate::time::DelayedCall;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Disconnected,
    Connecting,
    Connected,
}

struct State {
    phase: Phase,
    factory_started: bool,
    /// Incremented by each attempt; late results of older attempts (a
    /// resolution, a timer) are ignored.
    attempt: u64,
    timeout_call: Option<DelayedCall>,
    /// The socket of the attempt, once it is connecting.
    pending: Option<Rc<Pending>>,
    conn: Option<Rc<Conn>>,
}

/// An outgoing connection. Mirrors `tcp.Connector`.
pub(crate) struct ConnectorImpl {
    me: Weak<ConnectorImpl>,
    reactor: Weak<Inner>,
    host: String,
    port: u16,
    timeout: Duration,
    bind_address: Option<SocketAddr>,
    factory: Rc<dyn ClientFactory>,
    st: RefCell<State>,
    /// Set while `client_connection_failed` / `client_connection_lost` run.
    notifying: Cell<bool>,
}

/// A socket whose `connect` is in progress.
struct Pending {
    /// Strong: the reactor keeps a connecting connector alive, as Twisted's
    /// reactor keeps its `Client` (which holds the connector).
    connector: Rc<ConnectorImpl>,
    attempt: u64,
    key: Cell<usize>,
    sock: RefCell<Option<TcpStream>>,
}

impl ConnectorImpl {
    /// Makes the connector and starts its first attempt. Mirrors
    /// `connectTCP`.
    pub(crate) fn start(
        reactor: &Reactor,
        host: &str,
        port: u16,
        factory: Rc<dyn ClientFactory>,
        timeout: Duration,
        bind_address: Option<SocketAddr>,
    ) -> Rc<ConnectorImpl> {
        let c = Rc::new_cyclic(|me| ConnectorImpl {
            me: me.clone(),
            reactor: reactor.weak(),
            host: host.to_owned(),
            port,
            timeout,
            bind_address,
            factory,
            st: RefCell::new(State {
                phase: Phase::Disconnected,
                factory_started: false,
                attempt: 0,
                timeout_call: None,
                pending: None,
                conn: None,
            }),
            notifying: Cell::new(false),
        });
        reactor.io().add_connector(&c);
        c.connect();
        c
    }

    fn dyn_rc(&self) -> Option<Rc<dyn Connector>> {
        self.me.upgrade().map(|c| c as Rc<dyn Connector>)
    }

    fn reactor(&self) -> Option<Reactor> {
        Reactor::upgrade_weak(&self.reactor)
    }

    fn current(&self, attempt: u64) -> bool {
        let st = self.st.borrow();
        st.phase == Phase::Connecting && st.attempt == attempt
    }

    /// Starts the attempt: an IP literal is connected to at once, a name is
    /// resolved on the reactor's thread pool first. Runs on the turn after
    /// `connect`, as Twisted's `Client` starts from `callLater(0, ...)`.
    fn begin(self: &Rc<Self>, reactor: &Reactor, attempt: u64) {
        if !self.current(attempt) {
            return;
        }
        if reactor.has_shut_down() {
            self.fail(attempt, ConnectError::ReactorStopped);
            return;
        }
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            self.connect_to(reactor, attempt, SocketAddr::new(ip, self.port));
            return;
        }
        let (host, port) = (self.host.clone(), self.port);
        let d = crate::threads::defer_to_thread(reactor, move || {
            let addrs: Vec<SocketAddr> = (host.as_str(), port)
                .to_socket_addrs()
                .map_err(|e| {
                    Failure::new(ConnectError::DnsLookup {
                        host: host.clone(),
                        reason: e.to_string(),
                    })
                })?
                .collect();
            // As Twisted's `connectTCP` (`gethostbyname`): IPv4 first.
            addrs
                .iter()
                .find(|a| a.is_ipv4())
                .or_else(|| addrs.first())
                .copied()
                .ok_or_else(|| {
                    Failure::new(ConnectError::DnsLookup {
                        host: host.clone(),
                        reason: "no address".into(),
                    })
                })
        });
        // Strong, as the pending socket's: a resolving connector is alive.
        let c = Rc::clone(self);
        let _ = d.add_both(move |res| {
            let Some(r) = c.reactor() else { return Ok(()) };
            match res {
                Ok(addr) => c.connect_to(&r, attempt, addr),
                Err(f) => {
                    let err = match f.downcast_ref::<ConnectError>() {
                        Some(e) => e.clone(),
                        None => ConnectError::DnsLookup {
                            host: c.host.clone(),
                            reason: f.to_string(),
                        },
                    };
                    c.fail(attempt, err);
                }
            }
            Ok(())
        });
    }

    fn connect_to(self: &Rc<Self>, reactor: &Reactor, attempt: u64, addr: SocketAddr) {
        if !self.current(attempt) {
            return;
        }
        match self.open_socket(addr) {
            Ok(stream) => {
                let pending = Rc::new(Pending {
                    connector: Rc::clone(self),
                    attempt,
                    key: Cell::new(usize::MAX),
                    sock: RefCell::new(None),
                });
                let mut stream = stream;
                match reactor
                    .io()
                    .insert(Rc::clone(&pending) as Rc<dyn Source>, |reg, tok| {
                        reg.register(&mut stream, tok, interest())
                    }) {
                    Ok(key) => {
                        pending.key.set(key);
                        *pending.sock.borrow_mut() = Some(stream);
                        self.st.borrow_mut().pending = Some(pending);
                    }
                    Err(e) => self.fail(attempt, other(&e)),
                }
            }
            Err(err) => self.fail(attempt, err),
        }
    }

    fn open_socket(&self, addr: SocketAddr) -> Result<TcpStream, ConnectError> {
        let sock =
            Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(|e| other(&e))?;
        sock.set_nonblocking(true).map_err(|e| other(&e))?;
        if let Some(b) = self.bind_address {
            sock.bind(&b.into()).map_err(|e| ConnectError::Other {
                reason: format!("could not bind to {b}: {e}"),
            })?;
        }
        match sock.connect(&addr.into()) {
            Ok(()) => {}
            Err(e)
                if e.raw_os_error() == Some(EINPROGRESS)
                    || e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(connect_error(&e)),
        }
        Ok(TcpStream::from_std(sock.into()))
    }

    /// Abandons attempt `attempt` with `err`. Mirrors `failIfNotConnected`.
    fn fail(self: &Rc<Self>, attempt: u64, err: ConnectError) {
        if !self.current(attempt) {
            return;
        }
        let pending = self.st.borrow_mut().pending.take();
        if let (Some(p), Some(r)) = (pending, self.reactor()) {
            p.close(&r);
        }
        self.connection_failed(Failure::new(err));
    }

    /// Mirrors `BaseConnector.connectionFailed`.
    fn connection_failed(self: &Rc<Self>, reason: Failure) {
        self.cancel_timeout();
        let attempt = {
            let mut st = self.st.borrow_mut();
            st.pending = None;
            st.phase = Phase::Disconnected;
            st.attempt
        };
        if let Some(me) = self.dyn_rc() {
            let was = self.notifying.replace(true);
            let r = catch(|| self.factory.client_connection_failed(&me, reason));
            self.notifying.set(was);
            if let Err(f) = r {
                tracing::error!(failure = %f, "Unhandled Error in client_connection_failed");
            }
        }
        self.stop_factory_if_idle(attempt);
    }

    /// Mirrors `BaseConnector.connectionLost`.
    pub(crate) fn connection_lost(self: &Rc<Self>, reason: Failure) {
        let attempt = {
            let mut st = self.st.borrow_mut();
            st.phase = Phase::Disconnected;
            st.conn = None;
            st.attempt
        };
        if let Some(me) = self.dyn_rc() {
            let was = self.notifying.replace(true);
            let r = catch(|| self.factory.client_connection_lost(&me, reason));
            self.notifying.set(was);
            if let Err(f) = r {
                tracing::error!(failure = %f, "Unhandled Error in client_connection_lost");
            }
        }
        self.stop_factory_if_idle(attempt);
    }

    /// Unless the factory called `connect` again: `do_stop`.
    fn stop_factory_if_idle(&self, attempt: u64) {
        let stop = {
            let mut st = self.st.borrow_mut();
            if st.phase == Phase::Disconnected && st.attempt == attempt && st.factory_started {
                st.factory_started = false;
                true
            } else {
                false
            }
        };
        if stop {
            do_stop(&*self.factory as &dyn Factory);
        }
    }

    fn cancel_timeout(&self) {
        let call = self.st.borrow_mut().timeout_call.take();
        if let Some(call) = call {
            if call.active() {
                let _ = call.cancel();
            }
        }
    }

    /// The connect finished: build the protocol and make the connection.
    /// Mirrors `BaseConnector.buildProtocol` and `Client._connectDone`.
    fn connected(
        self: &Rc<Self>,
        reactor: &Reactor,
        pending: &Pending,
        stream: TcpStream,
        peer: SocketAddr,
    ) {
        self.cancel_timeout();
        {
            let mut st = self.st.borrow_mut();
            st.phase = Phase::Connected;
            st.pending = None;
        }
        let peer = peer.into();
        let protocol = match catch(|| self.factory.build_protocol(&peer)) {
            Ok(p) => p,
            Err(f) => {
                tracing::error!(failure = %f, "Unhandled Error in build_protocol");
                let mut stream = stream;
                reactor.io().remove(pending.key.get(), &mut stream);
                drop(stream);
                self.connection_failed(Failure::new(ConnectError::Other {
                    reason: f.to_string(),
                }));
                return;
            }
        };
        match Conn::new(
            reactor,
            stream,
            peer,
            Some(pending.key.get()),
            Some(Rc::clone(self)),
        ) {
            Ok(conn) => {
                self.st.borrow_mut().conn = Some(Rc::clone(&conn));
                conn.start(reactor, protocol);
            }
            Err(e) => {
                // `local_addr` failed: the socket is unusable.
                let removed = reactor
                    .io()
                    .sources
                    .borrow_mut()
                    .try_remove(pending.key.get());
                drop(removed); // outside the borrow: it may hold user code
                self.connection_failed(Failure::new(other(&e)));
            }
        }
    }

    /// The reactor is shutting down: an attempt in progress fails with
    /// [`ConnectError::ReactorStopped`].
    pub(crate) fn shutdown(self: &Rc<Self>, _reactor: &Reactor) {
        let attempt = {
            let st = self.st.borrow();
            (st.phase == Phase::Connecting).then_some(st.attempt)
        };
        if let Some(a) = attempt {
            self.fail(a, ConnectError::ReactorStopped);
        }
    }
}

impl Connector for ConnectorImpl {
    fn stop_connecting(&self) -> Result<(), NotConnectingError> {
        let (attempt, me) = {
            let st = self.st.borrow();
            if st.phase != Phase::Connecting {
                return Err(NotConnectingError);
            }
            (st.attempt, self.me.upgrade())
        };
        if let Some(me) = me {
            me.fail(attempt, ConnectError::UserAborted);
        }
        Ok(())
    }

    fn disconnect(&self) {
        let (phase, conn) = {
            let st = self.st.borrow();
            (st.phase, st.conn.clone())
        };
        match phase {
            Phase::Connecting => {
                let _ = self.stop_connecting();
            }
            Phase::Connected => {
                if let Some(c) = conn {
                    crate::transport::Transport::lose_connection(&*c);
                }
            }
            Phase::Disconnected => {}
        }
    }

    /// Mirrors `BaseConnector.connect`: `do_start` on the first attempt,
    /// the timeout, then `started_connecting`.
    fn connect(&self) {
        let (Some(me), Some(reactor)) = (self.me.upgrade(), self.reactor()) else {
            return;
        };
        if self.notifying.get() && reactor.has_shut_down() && !reactor.running() {
            // Such an attempt would fail at once, inside this call, and a
            // factory that reconnects on failure would recurse without end.
            // As in Twisted, where the attempt is scheduled on a loop that
            // never turns again, nothing happens; the factory is stopped.
            tracing::warn!(
                "connect() from a connector's own callback after the reactor shut down: ignored"
            );
            return;
        }
        let (attempt, first) = {
            let mut st = self.st.borrow_mut();
            if st.phase != Phase::Disconnected {
                tracing::debug!(
                    "connect() on a connector that is connecting or connected: ignored"
                );
                return;
            }
            st.phase = Phase::Connecting;
            st.attempt += 1;
            let first = !st.factory_started;
            st.factory_started = true;
            (st.attempt, first)
        };
        if first {
            do_start(&*self.factory as &dyn Factory);
        }
        let c_for_fail = Rc::clone(&me);
        let (c, r) = (Rc::clone(&me), reactor.clone());
        reactor.call_later(Duration::ZERO, move || c.begin(&r, attempt));
        let weak = self.me.clone();
        let call = reactor.call_later(self.timeout, move || {
            if let Some(c) = weak.upgrade() {
                c.fail(attempt, ConnectError::Timeout);
            }
        });
        self.st.borrow_mut().timeout_call = Some(call);
        let dyn_me: Rc<dyn Connector> = me;
        if let Err(f) = catch(|| self.factory.started_connecting(&dyn_me)) {
            tracing::error!(failure = %f, "Unhandled Error in started_connecting");
        }
        if reactor.has_shut_down() && !reactor.running() {
            // The loop will not turn again to make the attempt.
            c_for_fail.fail(attempt, ConnectError::ReactorStopped);
        }
    }

    fn get_destination(&self) -> (String, u16) {
        (self.host.clone(), self.port)
    }
}

impl Pending {
    fn close(&self, reactor: &Reactor) {
        if let Some(mut s) = self.sock.borrow_mut().take() {
            reactor.io().remove(self.key.get(), &mut s);
        }
    }
}

impl Source for Pending {
    fn on_ready(self: Rc<Self>, reactor: &Reactor, ready: Ready) -> bool {
        let c = Rc::clone(&self.connector);
        if !c.current(self.attempt) {
            self.close(reactor);
            return false;
        }
        if !(ready.writable || ready.error || ready.read_closed) {
            return false;
        }
        let outcome = match self.sock.borrow().as_ref() {
            None => return false,
            Some(s) => match s.take_error() {
                Ok(Some(e)) | Err(e) => Err(e),
                Ok(None) => match s.peer_addr() {
                    Ok(peer) => Ok(peer),
                    // Spurious wakeup: still connecting.
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => return false,
                    Err(e) => Err(e),
                },
            },
        };
        match outcome {
            Ok(peer) => {
                let stream = self.sock.borrow_mut().take();
                if let Some(stream) = stream {
                    c.connected(reactor, &self, stream, peer);
                }
            }
            Err(e) => c.fail(self.attempt, connect_error(&e)),
        }
        false
    }

    fn shutdown(self: Rc<Self>, reactor: &Reactor) {
        self.connector
            .fail(self.attempt, ConnectError::ReactorStopped);
        self.close(reactor);
    }

    fn forget(&self) {
        self.sock.borrow_mut().take();
        if let Ok(mut st) = self.connector.st.try_borrow_mut() {
            st.pending = None;
        }
    }
}

#[cfg(target_os = "linux")]
const EINPROGRESS: i32 = 115;
#[cfg(not(target_os = "linux"))]
const EINPROGRESS: i32 = 36;

fn other(e: &io::Error) -> ConnectError {
    ConnectError::Other {
        reason: e.to_string(),
    }
}

fn connect_error(e: &io::Error) -> ConnectError {
    if e.kind() == io::ErrorKind::ConnectionRefused {
        ConnectError::Refused {
            reason: e.to_string(),
        }
    } else {
        other(e)
    }
}

impl std::fmt::Debug for ConnectorImpl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("phase", &self.st.borrow().phase)
            .finish()
    }
}
