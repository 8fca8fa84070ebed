//! [`Address`]: where a connection's end is. Mirrors
//! `twisted.internet.address.IPv4Address` and `IPv6Address` (type `"TCP"`).

use std::fmt;
use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// One end of a TCP connection or a listening socket, as `get_host` and
/// `get_peer` return it. Mirrors Twisted's `IPv4Address("TCP", host, port)`
/// and `IPv6Address("TCP", host, port, flowInfo, scopeID)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Address {
    /// Mirrors `IPv4Address("TCP", host, port)`.
    IPv4(SocketAddrV4),
    /// Mirrors `IPv6Address("TCP", host, port, flowInfo, scopeID)`.
    IPv6(SocketAddrV6),
}

impl Address {
    /// The IP address (Twisted's `.host`).
    pub fn host(&self) -> IpAddr {
        self.socket_addr().ip()
    }

    /// The port (Twisted's `.port`).
    pub fn port(&self) -> u16 {
        self.socket_addr().port()
    }

    /// The address as the standard library's type.
    pub fn socket_addr(&self) -> SocketAddr {
        match *self {
            Address::IPv4(a) => SocketAddr::V4(a),
            Address::IPv6(a) => SocketAddr::V6(a),
        }
    }
}

impl From<SocketAddr> for Address {
    fn from(addr: SocketAddr) -> Self {
        match addr {
            SocketAddr::V4(a) => Address::IPv4(a),
            SocketAddr::V6(a) => Address::IPv6(a),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::IPv4(a) => write!(
                f,
                "IPv4Address(TCP, {:?}, {})",
                a.ip().to_string(),
                a.port()
            ),
            Address::IPv6(a) => write!(
                f,
                "IPv6Address(TCP, {:?}, {})",
                a.ip().to_string(),
                a.port()
            ),
        }
    }
}
