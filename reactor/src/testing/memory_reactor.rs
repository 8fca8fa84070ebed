//! [`MemoryReactor`]: a reactor that records `listen_tcp` and `connect_tcp`
//! calls instead of opening sockets, with a [`Clock`] for its time. Mirrors
//! `twisted.internet.testing.MemoryReactor` and `MemoryReactorClock`.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::rc::Rc;
use std::time::Duration;

use deferred::{succeed, Deferred, ReactorTime, ScheduledCall};

use crate::address::Address;
use crate::errors::{CannotListenError, NotConnectingError};
use crate::interfaces::{Connector, ListeningPort, ReactorDelayedCalls, ReactorTcp};
use crate::protocol::{ClientFactory, Factory};
use crate::testing::Clock;
use crate::time::DelayedCall;

/// One recorded `listen_tcp` call: `(port, factory, backlog, interface)`,
/// as an entry of Twisted's `MemoryReactor.tcpServers`.
#[derive(Clone)]
pub struct TcpServer {
    /// The port asked for.
    pub port: u16,
    /// The factory given.
    pub factory: Rc<dyn Factory>,
    /// The backlog given.
    pub backlog: u32,
    /// The interface given.
    pub interface: String,
    /// The fake port returned.
    pub listening_port: Rc<FakePort>,
}

impl fmt::Debug for TcpServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpServer")
            .field("port", &self.port)
            .field("backlog", &self.backlog)
            .field("interface", &self.interface)
            .finish()
    }
}

/// One recorded `connect_tcp` call: `(host, port, factory, timeout,
/// bindAddress)`, as an entry of Twisted's `MemoryReactor.tcpClients`.
#[derive(Clone)]
pub struct TcpClient {
    /// The host given.
    pub host: String,
    /// The port given.
    pub port: u16,
    /// The factory given.
    pub factory: Rc<dyn ClientFactory>,
    /// The timeout given.
    pub timeout: Duration,
    /// The local address to bind, if any.
    pub bind_address: Option<SocketAddr>,
    /// The fake connector returned.
    pub connector: Rc<FakeConnector>,
}

impl fmt::Debug for TcpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpClient")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("timeout", &self.timeout)
            .field("bind_address", &self.bind_address)
            .finish()
    }
}

/// The listening port a [`MemoryReactor`] returns: it listens on nothing.
/// Mirrors `twisted.internet.testing._FakePort`.
#[derive(Debug)]
pub struct FakePort {
    host: Address,
    listening: Cell<bool>,
}

impl FakePort {
    /// A fake port that says it listens on `host`.
    pub fn new(host: Address) -> FakePort {
        FakePort {
            host,
            listening: Cell::new(true),
        }
    }

    /// False after `stop_listening` (until `start_listening`).
    pub fn listening(&self) -> bool {
        self.listening.get()
    }
}

impl ListeningPort for FakePort {
    fn get_host(&self) -> Address {
        self.host
    }
    fn stop_listening(&self) -> Deferred<()> {
        self.listening.set(false);
        succeed(())
    }
    fn start_listening(&self) -> Result<(), CannotListenError> {
        self.listening.set(true);
        Ok(())
    }
}

/// The connector a [`MemoryReactor`] returns: it connects nowhere and
/// records what it is asked. Mirrors `twisted.internet.testing._FakeConnector`.
#[derive(Debug)]
pub struct FakeConnector {
    destination: (String, u16),
    stopped_connecting: Cell<bool>,
    disconnected: Cell<bool>,
    connect_calls: Cell<usize>,
}

impl FakeConnector {
    /// A fake connector to `host:port`.
    pub fn new(host: &str, port: u16) -> FakeConnector {
        FakeConnector {
            destination: (host.to_owned(), port),
            stopped_connecting: Cell::new(false),
            disconnected: Cell::new(false),
            connect_calls: Cell::new(0),
        }
    }

    /// True once `stop_connecting` was called. Mirrors `stoppedConnecting`.
    pub fn stopped_connecting(&self) -> bool {
        self.stopped_connecting.get()
    }

    /// True once `disconnect` was called. Mirrors `_disconnected`.
    pub fn disconnected(&self) -> bool {
        self.disconnected.get()
    }

    /// How many times `connect` was called (a `ReconnectingClientFactory`'s
    /// retries, for example).
    pub fn connect_calls(&self) -> usize {
        self.connect_calls.get()
    }
}

impl Connector for FakeConnector {
    /// Records the call; never fails (Twisted's fake does not raise
    /// `NotConnectingError` either).
    fn stop_connecting(&self) -> Result<(), NotConnectingError> {
        self.stopped_connecting.set(true);
        Ok(())
    }
    fn disconnect(&self) {
        self.disconnected.set(true);
    }
    fn connect(&self) {
        self.connect_calls.set(self.connect_calls.get() + 1);
    }
    fn get_destination(&self) -> (String, u16) {
        self.destination.clone()
    }
}

struct Inner {
    clock: Clock,
    tcp_servers: RefCell<Vec<TcpServer>>,
    tcp_clients: RefCell<Vec<TcpClient>>,
    listen_error: RefCell<Option<(io::ErrorKind, String)>>,
}

/// A reactor for tests that records `listen_tcp` and `connect_tcp` calls and
/// returns [`FakePort`]s and [`FakeConnector`]s, and whose time is a
/// [`Clock`] (`seconds`, `call_later`, `advance`). Mirrors
/// `twisted.internet.testing.MemoryReactorClock` (`MemoryReactor` +
/// `task.Clock`).
///
/// Clones share the same records; pass `Rc::new(reactor.clone())` where an
/// `Rc<dyn ReactorTcp>` or `Rc<dyn ReactorTime>` is wanted and keep the
/// original to inspect. As Twisted's, `connect_tcp` calls the factory's
/// `started_connecting` and nothing else: a test completes the connection
/// itself (build a protocol from [`TcpClient::factory`] and connect it to
/// a [`StringTransport`](crate::testing::StringTransport)).
///
/// # Examples
///
/// ```
/// use reactor::prelude::*;
/// use reactor::testing::MemoryReactor;
/// use reactor::{Address, DEFAULT_BACKLOG};
/// use std::rc::Rc;
///
/// struct Nothing;
/// impl Factory for Nothing {
///     fn build_protocol(&self, _: &Address) -> Option<Box<dyn Protocol>> { None }
/// }
/// let reactor = MemoryReactor::new();
/// let port = reactor.listen_tcp(1079, Rc::new(Nothing), DEFAULT_BACKLOG, "127.0.0.1").unwrap();
/// assert_eq!(port.get_host().port(), 1079);
/// let servers = reactor.tcp_servers();
/// assert_eq!((servers[0].port, servers[0].backlog, servers[0].interface.as_str()), (1079, 50, "127.0.0.1"));
/// ```
#[derive(Clone)]
pub struct MemoryReactor {
    inner: Rc<Inner>,
}

impl Default for MemoryReactor {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryReactor {
    /// A memory reactor at fake time 0.0 with nothing recorded.
    pub fn new() -> MemoryReactor {
        MemoryReactor {
            inner: Rc::new(Inner {
                clock: Clock::new(),
                tcp_servers: RefCell::new(Vec::new()),
                tcp_clients: RefCell::new(Vec::new()),
                listen_error: RefCell::new(None),
            }),
        }
    }

    /// Every `listen_tcp` call so far. Mirrors `tcpServers`.
    pub fn tcp_servers(&self) -> Vec<TcpServer> {
        self.inner.tcp_servers.borrow().clone()
    }

    /// Every `connect_tcp` call so far. Mirrors `tcpClients`.
    pub fn tcp_clients(&self) -> Vec<TcpClient> {
        self.inner.tcp_clients.borrow().clone()
    }

    /// The connectors returned so far. Mirrors `connectors`.
    pub fn connectors(&self) -> Vec<Rc<FakeConnector>> {
        self.inner
            .tcp_clients
            .borrow()
            .iter()
            .map(|c| Rc::clone(&c.connector))
            .collect()
    }

    /// The fake clock behind `seconds` and `call_later`.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// Moves fake time forward, running the calls that become due. Mirrors
    /// `MemoryReactorClock.advance`.
    pub fn advance(&self, amount: f64) {
        self.inner.clock.advance(amount);
    }

    /// Schedules `f` at `seconds() + delay` on the fake clock. Mirrors
    /// `MemoryReactorClock.callLater`.
    pub fn call_later<F: FnOnce() + 'static>(&self, delay: Duration, f: F) -> DelayedCall {
        self.inner.clock.call_later(delay, f)
    }

    /// Makes every later `listen_tcp` fail with an error of this kind and
    /// message (`None` to succeed again). Mirrors
    /// `RaisingMemoryReactor(listenException=...)`.
    pub fn fail_listen(&self, error: Option<(io::ErrorKind, &str)>) {
        *self.inner.listen_error.borrow_mut() = error.map(|(k, m)| (k, m.to_owned()));
    }
}

impl fmt::Debug for MemoryReactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryReactor")
            .field("tcp_servers", &self.inner.tcp_servers.borrow())
            .field("tcp_clients", &self.inner.tcp_clients.borrow())
            .field("clock", &self.inner.clock)
            .finish()
    }
}

impl ReactorTcp for MemoryReactor {
    /// Records the call and returns a [`FakePort`] on `interface:port` (an
    /// IPv6 interface gives an IPv6 address; anything else
    /// `0.0.0.0:port`, as Twisted's fake).
    fn listen_tcp(
        &self,
        port: u16,
        factory: Rc<dyn Factory>,
        backlog: u32,
        interface: &str,
    ) -> Result<Rc<dyn ListeningPort>, CannotListenError> {
        if let Some((kind, msg)) = self.inner.listen_error.borrow().clone() {
            return Err(CannotListenError {
                interface: interface.to_owned(),
                port,
                source: io::Error::new(kind, msg),
            });
        }
        let host = match interface.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => Address::IPv6(SocketAddrV6::new(ip, port, 0, 0)),
            _ => Address::IPv4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)),
        };
        let fake = Rc::new(FakePort::new(host));
        self.inner.tcp_servers.borrow_mut().push(TcpServer {
            port,
            factory,
            backlog,
            interface: interface.to_owned(),
            listening_port: Rc::clone(&fake),
        });
        Ok(fake)
    }

    /// Records the call, returns a [`FakeConnector`] and calls the
    /// factory's `started_connecting` with it, as Twisted's fake.
    fn connect_tcp(
        &self,
        host: &str,
        port: u16,
        factory: Rc<dyn ClientFactory>,
        timeout: Duration,
        bind_address: Option<SocketAddr>,
    ) -> Rc<dyn Connector> {
        let fake = Rc::new(FakeConnector::new(host, port));
        self.inner.tcp_clients.borrow_mut().push(TcpClient {
            host: host.to_owned(),
            port,
            factory: Rc::clone(&factory),
            timeout,
            bind_address,
            connector: Rc::clone(&fake),
        });
        let connector: Rc<dyn Connector> = fake;
        factory.started_connecting(&connector);
        connector
    }
}

impl ReactorTime for MemoryReactor {
    fn seconds(&self) -> f64 {
        self.inner.clock.seconds()
    }
    fn call_later_boxed(&self, delay: Duration, f: Box<dyn FnOnce()>) -> Box<dyn ScheduledCall> {
        self.inner.clock.call_later_boxed(delay, f)
    }
}

impl ReactorDelayedCalls for MemoryReactor {
    fn delayed_call_boxed(&self, delay: Duration, f: Box<dyn FnOnce()>) -> DelayedCall {
        self.inner.clock.call_later(delay, f)
    }
    fn get_delayed_calls(&self) -> Vec<DelayedCall> {
        self.inner.clock.get_delayed_calls()
    }
}
