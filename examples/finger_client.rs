//! A finger client: `cargo run --example finger_client -- HOST PORT USER`
//! asks a finger server (`cargo run --example finger -- --serve 1079`) about
//! USER and prints the answer. Twisted's tutorial uses the `finger` command.

mod common;
mod finger_query;

use common::say;

fn main() {
    common::init_logging();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let [host, port, user] = argv.as_slice() else {
        tracing::error!("usage: finger_client HOST PORT USER");
        std::process::exit(2);
    };
    let port: u16 = match port.parse() {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(port = %port, error = %e, "PORT must be a port number");
            std::process::exit(2);
        }
    };
    let (host, user) = (host.clone(), user.clone());
    let code = reactor::react(move |reactor| {
        finger_query::finger(reactor, &host, port, user.as_bytes()).add_callback(|reply| {
            say(format_args!(
                "{}",
                String::from_utf8_lossy(&reply).trim_end()
            ));
        })
    });
    std::process::exit(code);
}
