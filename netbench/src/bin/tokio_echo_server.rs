//! `tokio_echo_server --port P`: the tokio echo peer on a current-thread
//! runtime, on 127.0.0.1 (see `netbench::echo_service`). Prints
//! `listening 127.0.0.1:PORT` once bound (`--port 0` picks a free port) and
//! serves until killed.

use std::process::ExitCode;

use netbench::args::Args;
use netbench::{echo_service, logging, loopback, rlimit};

fn main() -> ExitCode {
    logging::init();
    // The idle test holds 10 000 connections open.
    if let Err(e) = rlimit::raise_nofile() {
        tracing::warn!("RLIMIT_NOFILE: {e}");
    }
    let run = || -> Result<(), Box<dyn std::error::Error>> {
        let args = Args::parse(std::env::args().skip(1), &["port"])?;
        let addr = loopback::target("127.0.0.1", args.require("port")?)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            logging::emit(&format!("listening {}", listener.local_addr()?));
            echo_service::serve(listener).await;
            Ok(())
        })
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("tokio_echo_server: {e}");
            ExitCode::FAILURE
        }
    }
}
