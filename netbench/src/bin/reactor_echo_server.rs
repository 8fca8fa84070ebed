//! `reactor_echo_server --port P`: our echo server — a `Protocol` that
//! writes back what it receives (Twisted's `Echo` of its first example) —
//! on 127.0.0.1. Prints `listening 127.0.0.1:PORT` once bound and serves
//! until killed.

use std::process::ExitCode;
use std::rc::Rc;

use netbench::args::Args;
use netbench::{logging, loopback, rlimit};
use reactor::prelude::*;
use reactor::protocols::for_protocol;
use reactor::{Reactor, DEFAULT_BACKLOG};

/// Twisted's `Echo(Protocol)`: `self.transport.write(data)`.
#[derive(Default)]
struct Echo {
    transport: Option<Rc<dyn Transport>>,
}

impl Protocol for Echo {
    fn connection_made(&mut self, transport: Rc<dyn Transport>) {
        let _ = transport.set_tcp_nodelay(true);
        self.transport = Some(transport);
    }

    fn data_received(&mut self, data: &[u8]) {
        if let Some(t) = &self.transport {
            t.write(data);
        }
    }

    fn connection_lost(&mut self, _reason: deferred::Failure) {
        // Breaks the protocol ↔ transport cycle.
        self.transport = None;
    }
}

fn main() -> ExitCode {
    logging::init();
    if let Err(e) = rlimit::raise_nofile() {
        tracing::warn!("RLIMIT_NOFILE: {e}");
    }
    let run = || -> Result<(), Box<dyn std::error::Error>> {
        let args = Args::parse(std::env::args().skip(1), &["port"])?;
        let addr = loopback::target("127.0.0.1", args.require("port")?)?;
        let reactor = Reactor::new()?;
        let factory = for_protocol(|_peer| Echo::default());
        let port =
            reactor.listen_tcp(addr.port(), factory, DEFAULT_BACKLOG.max(1024), "127.0.0.1")?;
        logging::emit(&format!("listening {}", port.get_host().socket_addr()));
        reactor.run()?;
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("reactor_echo_server: {e}");
            ExitCode::FAILURE
        }
    }
}
