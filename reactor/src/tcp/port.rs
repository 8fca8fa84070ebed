//! [`Port`]: a listening socket that makes a connection per accepted peer.
//! Mirrors `twisted.internet.tcp.Port`.

use std::cell::RefCell;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::{Rc, Weak};
use std::time::Duration;

use deferred::{Deferred, Resolver};
use mio::net::TcpListener;
use socket2::{Domain, Socket, Type};

use super::{catch, Conn, Ready, Source};
use crate::address::Address;
use crate::errors::CannotListenError;
use crate::interfaces::{ListeningPort, ReactorExt};
use crate::protocol::{do_start, do_stop, Factory};
use crate::reactor::{Inner, Reactor};
use crate::time::DelayedCall;

/// Accepts per port per turn before it is revisited on the next turn.
/// Twisted's `Port.numberAccepts` starts at 100.
const ACCEPT_BUDGET: usize = 64;
/// First pause after `accept` failed for want of resources (`EMFILE`...).
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
/// Longest pause between such attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

struct State {
    listener: Option<TcpListener>,
    key: usize,
    host: Address,
    /// The timer that retries `accept` after a resource error.
    backoff: Option<DelayedCall>,
    delay: Duration,
    /// `stop_listening`'s Deferred, fired on the next turn.
    stopping: Option<Resolver<()>>,
}

/// A listening TCP socket. Mirrors `twisted.internet.tcp.Port`.
pub(crate) struct Port {
    me: Weak<Port>,
    reactor: Weak<Inner>,
    factory: Rc<dyn Factory>,
    port: u16,
    backlog: u32,
    interface: String,
    st: RefCell<State>,
}

/// Parses `interface` (`""`: every IPv4 interface) and binds a non-blocking
/// listening socket with `SO_REUSEADDR`, as Twisted's `Port` does on POSIX.
fn bind(interface: &str, port: u16, backlog: u32) -> Result<TcpListener, CannotListenError> {
    let err = |source: io::Error| CannotListenError {
        interface: interface.to_owned(),
        port,
        source,
    };
    let ip: IpAddr = if interface.is_empty() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        interface.parse().map_err(|_| {
            err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{interface:?} is not an IP address literal (names are not resolved)"),
            ))
        })?
    };
    let addr = SocketAddr::new(ip, port);
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(err)?;
    sock.set_reuse_address(true).map_err(err)?;
    sock.bind(&addr.into()).map_err(err)?;
    let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
    sock.listen(backlog).map_err(err)?;
    sock.set_nonblocking(true).map_err(err)?;
    Ok(TcpListener::from_std(sock.into()))
}

impl Port {
    /// Binds and starts listening. Mirrors `listenTCP` (`Port(...)` then
    /// `startListening()`).
    pub(crate) fn listen(
        reactor: &Reactor,
        port: u16,
        factory: Rc<dyn Factory>,
        backlog: u32,
        interface: &str,
    ) -> Result<Rc<Port>, CannotListenError> {
        let p = Rc::new_cyclic(|me| Port {
            me: me.clone(),
            reactor: reactor.weak(),
            factory,
            port,
            backlog,
            interface: interface.to_owned(),
            st: RefCell::new(State {
                listener: None,
                key: usize::MAX,
                host: Address::from(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port)),
                backoff: None,
                delay: FIRST_BACKOFF,
                stopping: None,
            }),
        });
        p.start(reactor)?;
        reactor.io().add_port(&p);
        Ok(p)
    }

    fn reactor(&self) -> Option<Reactor> {
        Reactor::upgrade_weak(&self.reactor)
    }

    fn start(self: &Rc<Self>, reactor: &Reactor) -> Result<(), CannotListenError> {
        if self.st.borrow().listener.is_some() {
            return Ok(());
        }
        self.complete_stop();
        let mut listener = bind(&self.interface, self.port, self.backlog)?;
        let host = listener.local_addr().map_err(|source| CannotListenError {
            interface: self.interface.clone(),
            port: self.port,
            source,
        })?;
        let key = reactor
            .io()
            .insert(Rc::clone(self) as Rc<dyn Source>, |reg, tok| {
                reg.register(&mut listener, tok, mio::Interest::READABLE)
            })
            .map_err(|source| CannotListenError {
                interface: self.interface.clone(),
                port: self.port,
                source,
            })?;
        {
            let mut st = self.st.borrow_mut();
            st.listener = Some(listener);
            st.key = key;
            st.host = host.into();
            st.delay = FIRST_BACKOFF;
        }
        // Twisted logs "<factory class> starting on <port>".
        tracing::info!(port = host.port(), "Factory starting on {}", host.port());
        do_start(&*self.factory);
        Ok(())
    }

    /// Deregisters and closes the socket; true if it was open.
    fn close_listener(&self, reactor: &Reactor) -> bool {
        let (listener, key, backoff) = {
            let mut st = self.st.borrow_mut();
            (st.listener.take(), st.key, st.backoff.take())
        };
        if let Some(call) = backoff {
            if call.active() {
                let _ = call.cancel();
            }
        }
        match listener {
            Some(mut l) => {
                reactor.io().remove(key, &mut l);
                true
            }
            None => false,
        }
    }

    /// The end of `stop_listening`: `stop_factory` (through `do_stop`),
    /// then the Deferred. Mirrors `Port.connectionLost`.
    fn complete_stop(&self) {
        let stopping = self.st.borrow_mut().stopping.take();
        if let Some(r) = stopping {
            tracing::info!(
                port = self.st.borrow().host.port(),
                "(TCP Port {} Closed)",
                self.st.borrow().host.port()
            );
            do_stop(&*self.factory);
            let _ = r.callback(());
        }
    }

    /// Accepts until `WouldBlock` or the budget. Mirrors `Port.doRead`.
    fn do_accept(self: &Rc<Self>, reactor: &Reactor) -> bool {
        for _ in 0..ACCEPT_BUDGET {
            let res = {
                let st = self.st.borrow();
                if st.backoff.is_some() {
                    return false;
                }
                match &st.listener {
                    Some(l) => l.accept(),
                    None => return false,
                }
            };
            match res {
                Ok((stream, peer)) => {
                    self.st.borrow_mut().delay = FIRST_BACKOFF;
                    self.accepted(reactor, stream, peer.into());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                // The peer gave up before we accepted: next one.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::PermissionDenied
                    ) => {}
                Err(e) => {
                    // EMFILE, ENFILE, ENOBUFS, ENOMEM: the pending peers stay
                    // queued; retrying at once would spin, so wait a while.
                    self.back_off(reactor, &e);
                    return false;
                }
            }
        }
        true
    }

    fn back_off(self: &Rc<Self>, reactor: &Reactor, e: &io::Error) {
        let delay = {
            let mut st = self.st.borrow_mut();
            let d = st.delay;
            st.delay = (d * 2).min(MAX_BACKOFF);
            d
        };
        tracing::error!(
            error = %e,
            port = self.st.borrow().host.port(),
            retry_in_ms = delay.as_millis() as u64,
            "accept failed (out of file descriptors?); retrying later"
        );
        let weak = self.me.clone();
        let call = reactor.call_later(delay, move || {
            let Some(port) = weak.upgrade() else { return };
            port.st.borrow_mut().backoff = None;
            if let Some(r) = port.reactor() {
                if port.do_accept(&r) {
                    r.io().push_backlog(port as Rc<dyn Source>);
                }
            }
        });
        self.st.borrow_mut().backoff = Some(call);
    }

    fn accepted(&self, reactor: &Reactor, stream: mio::net::TcpStream, peer: Address) {
        match catch(|| self.factory.build_protocol(&peer)) {
            Err(f) => {
                tracing::error!(failure = %f, %peer, "Unhandled Error in build_protocol; closing the accepted connection");
            }
            Ok(None) => {}
            Ok(Some(p)) => match Conn::new(reactor, stream, peer, None, None) {
                Ok(conn) => conn.start(reactor, Some(p)),
                Err(e) => {
                    tracing::error!(error = %e, %peer, "could not register an accepted connection")
                }
            },
        }
    }
}

impl Source for Port {
    fn on_ready(self: Rc<Self>, reactor: &Reactor, _ready: Ready) -> bool {
        self.do_accept(reactor)
    }

    fn shutdown(self: Rc<Self>, reactor: &Reactor) {
        if self.close_listener(reactor) {
            tracing::info!(
                port = self.st.borrow().host.port(),
                "(TCP Port {} Closed)",
                self.st.borrow().host.port()
            );
            do_stop(&*self.factory);
        }
        self.complete_stop();
    }

    /// The reactor is gone: close the socket even if the factory holds
    /// this port (a cycle that would otherwise keep it listening).
    fn forget(&self) {
        let (listener, backoff) = {
            let mut st = self.st.borrow_mut();
            (st.listener.take(), st.backoff.take())
        };
        drop(backoff);
        drop(listener);
    }
}

impl ListeningPort for Port {
    fn get_host(&self) -> Address {
        self.st.borrow().host
    }

    fn stop_listening(&self) -> Deferred<()> {
        let (Some(me), Some(reactor)) = (self.me.upgrade(), self.reactor()) else {
            return deferred::succeed(());
        };
        if !self.close_listener(&reactor) {
            return deferred::succeed(());
        }
        let (d, r) = Deferred::new();
        self.st.borrow_mut().stopping = Some(r);
        reactor.call_later(Duration::ZERO, move || me.complete_stop());
        d
    }

    fn start_listening(&self) -> Result<(), CannotListenError> {
        let (Some(me), Some(reactor)) = (self.me.upgrade(), self.reactor()) else {
            return Err(CannotListenError {
                interface: self.interface.clone(),
                port: self.port,
                source: io::Error::other("the reactor is gone"),
            });
        };
        me.start(&reactor)
    }
}

impl std::fmt::Debug for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Port")
            .field("host", &self.st.borrow().host)
            .finish()
    }
}
