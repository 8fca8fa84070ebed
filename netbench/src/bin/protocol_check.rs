//! `protocol_check --port P [--users 10000] [--timeout 5]`: checks that the
//! line server on 127.0.0.1:P answers as the benchmark's protocol says
//! (see `netbench::conformance`) before it is measured. Prints `protocol=ok`
//! and exits 0, or names the first violation and exits 1 (2 on a bad
//! command line).

use std::process::ExitCode;
use std::time::Duration;

use netbench::args::Args;
use netbench::{conformance, logging, loopback, users};

fn main() -> ExitCode {
    logging::init();
    let parsed = Args::parse(std::env::args().skip(1), &["port", "users", "timeout"]);
    let config = parsed.map_err(|e| e.to_string()).and_then(|args| {
        let target = loopback::target(
            "127.0.0.1",
            args.require("port").map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?;
        let users: u32 = args
            .get_or("users", users::DEFAULT_USERS)
            .map_err(|e| e.to_string())?;
        let secs: f64 = args.get_or("timeout", 5.0).map_err(|e| e.to_string())?;
        let timeout =
            Duration::try_from_secs_f64(secs).map_err(|e| format!("--timeout {secs}: {e}"))?;
        Ok((target, users, timeout))
    });
    let (target, users, timeout) = match config {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("protocol_check: {e}");
            return ExitCode::from(2);
        }
    };
    match conformance::check_line_server(target, users.max(1), timeout) {
        Ok(()) => {
            logging::emit("protocol=ok");
            ExitCode::SUCCESS
        }
        Err(v) => {
            logging::emit(&format!("protocol=violation {v}"));
            tracing::error!("protocol_check: {v}");
            ExitCode::FAILURE
        }
    }
}
