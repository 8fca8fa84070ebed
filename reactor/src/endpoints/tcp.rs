//! TCP endpoints. Mirror `twisted.internet.endpoints.TCP4ServerEndpoint`,
//! `TCP6ServerEndpoint`, `TCP4ClientEndpoint` and `TCP6ClientEndpoint`.

use std::fmt;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use deferred::{fail, succeed, Deferred, Failure};

use crate::endpoints::wrapping::WrappingFactory;
use crate::endpoints::{StreamClientEndpoint, StreamServerEndpoint};
use crate::interfaces::{ListeningPort, ReactorTcp, DEFAULT_BACKLOG, DEFAULT_CONNECT_TIMEOUT};
use crate::protocol::{ClientFactory, Factory};
use crate::transport::Transport;

fn listen(
    reactor: &dyn ReactorTcp,
    port: u16,
    factory: Rc<dyn Factory>,
    backlog: u32,
    interface: &str,
) -> Deferred<Rc<dyn ListeningPort>> {
    match reactor.listen_tcp(port, factory, backlog, interface) {
        Ok(p) => succeed(p),
        Err(e) => fail(Failure::new(e)),
    }
}

macro_rules! server_endpoint {
    ($name:ident, $default_interface:expr, $twisted:literal, $what:literal) => {
        #[doc = concat!("Listens on TCP ", $what, ". Mirrors `twisted.internet.endpoints.", $twisted, "(reactor, port, backlog=50, interface=", stringify!($default_interface), ")`.")]
        #[derive(Clone)]
        pub struct $name {
            reactor: Rc<dyn ReactorTcp>,
            port: u16,
            backlog: u32,
            interface: String,
        }

        impl $name {
            #[doc = concat!("Listens on `port` (0: any free port) with backlog 50 on interface ", stringify!($default_interface), ".")]
            pub fn new(reactor: Rc<dyn ReactorTcp>, port: u16) -> Self {
                $name {
                    reactor,
                    port,
                    backlog: DEFAULT_BACKLOG,
                    interface: $default_interface.to_owned(),
                }
            }

            /// With this listen backlog.
            pub fn with_backlog(mut self, backlog: u32) -> Self {
                self.backlog = backlog;
                self
            }

            /// On this interface (an address to bind).
            pub fn with_interface(mut self, interface: &str) -> Self {
                self.interface = interface.to_owned();
                self
            }

            /// The port.
            pub fn port(&self) -> u16 {
                self.port
            }

            /// The backlog.
            pub fn backlog(&self) -> u32 {
                self.backlog
            }

            /// The interface.
            pub fn interface(&self) -> &str {
                &self.interface
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("port", &self.port)
                    .field("backlog", &self.backlog)
                    .field("interface", &self.interface)
                    .finish()
            }
        }

        impl StreamServerEndpoint for $name {
            fn listen(&self, factory: Rc<dyn Factory>) -> Deferred<Rc<dyn ListeningPort>> {
                listen(&*self.reactor, self.port, factory, self.backlog, &self.interface)
            }
        }
    };
}

server_endpoint!(
    TCP4ServerEndpoint,
    "",
    "TCP4ServerEndpoint",
    "over IPv4 (interface `\"\"`: every IPv4 interface)"
);
server_endpoint!(
    TCP6ServerEndpoint,
    "::",
    "TCP6ServerEndpoint",
    "over IPv6 (interface `\"::\"`: every IPv6 interface)"
);

macro_rules! client_endpoint {
    ($name:ident, $twisted:literal, $what:literal) => {
        #[doc = concat!("Connects over TCP ", $what, ". Mirrors `twisted.internet.endpoints.", $twisted, "(reactor, host, port, timeout=30, bindAddress=None)`; the host may be a name, which the reactor's `connect_tcp` resolves.")]
        #[derive(Clone)]
        pub struct $name {
            reactor: Rc<dyn ReactorTcp>,
            host: String,
            port: u16,
            timeout: Duration,
            bind_address: Option<SocketAddr>,
        }

        impl $name {
            /// To `host:port`, timeout 30 s, no bind address.
            pub fn new(reactor: Rc<dyn ReactorTcp>, host: &str, port: u16) -> Self {
                $name {
                    reactor,
                    host: host.to_owned(),
                    port,
                    timeout: DEFAULT_CONNECT_TIMEOUT,
                    bind_address: None,
                }
            }

            /// Gives up after `timeout`.
            pub fn with_timeout(mut self, timeout: Duration) -> Self {
                self.timeout = timeout;
                self
            }

            /// Binds the local end to `addr` first.
            pub fn with_bind_address(mut self, addr: SocketAddr) -> Self {
                self.bind_address = Some(addr);
                self
            }

            /// The host.
            pub fn host(&self) -> &str {
                &self.host
            }

            /// The port.
            pub fn port(&self) -> u16 {
                self.port
            }

            /// The timeout.
            pub fn timeout(&self) -> Duration {
                self.timeout
            }

            /// The local address to bind, if any.
            pub fn bind_address(&self) -> Option<SocketAddr> {
                self.bind_address
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("host", &self.host)
                    .field("port", &self.port)
                    .field("timeout", &self.timeout)
                    .field("bind_address", &self.bind_address)
                    .finish()
            }
        }

        impl StreamClientEndpoint for $name {
            fn connect(&self, factory: Rc<dyn Factory>) -> Deferred<Rc<dyn Transport>> {
                let (wrapping, d) = WrappingFactory::new(factory);
                let wrapping: Rc<dyn ClientFactory> = wrapping;
                self.reactor.connect_tcp(
                    &self.host,
                    self.port,
                    wrapping,
                    self.timeout,
                    self.bind_address,
                );
                d
            }
        }
    };
}

client_endpoint!(TCP4ClientEndpoint, "TCP4ClientEndpoint", "over IPv4");
client_endpoint!(TCP6ClientEndpoint, "TCP6ClientEndpoint", "over IPv6");
