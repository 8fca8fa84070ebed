//! The only address the netbench tools talk to: 127.0.0.1. A benchmark that
//! could be pointed at another host would be a load generator for someone
//! else's machine, so every tool resolves its target through here.

use std::net::{Ipv4Addr, SocketAddrV4};

/// A `--host` other than the IPv4 loopback address.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("refusing host {0:?}: the netbench tools only talk to 127.0.0.1")]
pub struct NotLoopback(pub String);

/// `127.0.0.1:port` if `host` names 127.0.0.1 (`127.0.0.1` or
/// `localhost`); any other host is refused.
pub fn target(host: &str, port: u16) -> Result<SocketAddrV4, NotLoopback> {
    let ip = match host {
        "localhost" => Ipv4Addr::LOCALHOST,
        other => other
            .parse::<Ipv4Addr>()
            .map_err(|_| NotLoopback(host.to_owned()))?,
    };
    if ip != Ipv4Addr::LOCALHOST {
        return Err(NotLoopback(host.to_owned()));
    }
    Ok(SocketAddrV4::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_127_0_0_1_is_accepted() {
        assert_eq!(target("127.0.0.1", 9).unwrap().to_string(), "127.0.0.1:9");
        assert_eq!(target("localhost", 9).unwrap().to_string(), "127.0.0.1:9");
        for host in ["10.0.0.1", "127.0.0.2", "0.0.0.0", "example.com", "::1", ""] {
            assert_eq!(target(host, 9), Err(NotLoopback(host.to_owned())), "{host}");
        }
    }
}
