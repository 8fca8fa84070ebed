//! `loadgen --port P --mode line|echo [--clients 64] [--duration 5]
//! [--warmup 1] [--users 10000] [--size 4096] [--reply-timeout 5]
//! [--connect-timeout 10] [--host 127.0.0.1] [--server-pid PID] [--rate R]`:
//! the load generator (see `netbench::loadgen`): a closed loop, or with
//! `--rate` R requests/s in all on a fixed schedule (`netbench::pacer`).
//! Talks to 127.0.0.1 only, stops by itself, prints one `key=value` report
//! line (with the server's CPU use when `--server-pid` is given), and exits
//! 1 if any request failed (2 on a bad command line).

use std::process::ExitCode;
use std::time::Duration;

use netbench::args::Args;
use netbench::loadgen::{self, Config, Mode};
use netbench::{logging, loopback, rlimit, users};

fn seconds(args: &Args, name: &str, default: f64) -> Result<Duration, Box<dyn std::error::Error>> {
    let s: f64 = args.get_or(name, default)?;
    Duration::try_from_secs_f64(s).map_err(|e| format!("--{name} {s}: {e}").into())
}

fn config() -> Result<Config, Box<dyn std::error::Error>> {
    let args = Args::parse(
        std::env::args().skip(1),
        &[
            "host",
            "port",
            "mode",
            "clients",
            "duration",
            "warmup",
            "users",
            "size",
            "reply-timeout",
            "connect-timeout",
            "server-pid",
            "rate",
        ],
    )?;
    let host: String = args.get_or("host", "127.0.0.1".to_owned())?;
    let target = loopback::target(&host, args.require("port")?)?;
    let mode = match args.require::<String>("mode")?.as_str() {
        "line" => {
            let users: u32 = args.get_or("users", users::DEFAULT_USERS)?;
            if users == 0 {
                return Err("--users must be at least 1".into());
            }
            Mode::Line { users }
        }
        "echo" => {
            let size: usize = args.get_or("size", 4096)?;
            // Bigger messages could fill both socket buffers before the
            // client starts reading the echo.
            if !(1..=1 << 20).contains(&size) {
                return Err(format!("--size {size}: expected 1..=1048576").into());
            }
            Mode::Echo { size }
        }
        other => return Err(format!("--mode {other:?}: expected line or echo").into()),
    };
    let clients: usize = args.get_or("clients", 64)?;
    if clients == 0 {
        return Err("--clients must be at least 1".into());
    }
    Ok(Config {
        mode,
        target,
        clients,
        warmup: seconds(&args, "warmup", 1.0)?,
        duration: seconds(&args, "duration", 5.0)?,
        reply_timeout: seconds(&args, "reply-timeout", 5.0)?,
        connect_timeout: seconds(&args, "connect-timeout", 10.0)?,
        rate: match args.get::<f64>("rate")? {
            Some(r) if !(r.is_finite() && r > 0.0) => {
                return Err(format!("--rate {r}: expected requests per second > 0").into())
            }
            r => r,
        },
        server_pid: args.get("server-pid")?,
    })
}

fn main() -> ExitCode {
    logging::init();
    let cfg = match config() {
        Ok(cfg) => cfg,
        Err(e) => {
            tracing::error!("loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    match rlimit::raise_nofile() {
        Ok(l) if l.soft_after.is_some_and(|n| n < cfg.clients as u64 + 64) => {
            tracing::warn!(
                "RLIMIT_NOFILE is {l:?}: too low for {} clients",
                cfg.clients
            )
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("RLIMIT_NOFILE: {e}"),
    }
    // The runtime's own timeout should end the run; this one ends the
    // process if the runtime itself is wedged.
    let hard = cfg.hard_timeout() + Duration::from_secs(5);
    std::thread::spawn(move || {
        std::thread::sleep(hard);
        tracing::error!("loadgen: still running after {hard:?}; exiting");
        std::process::exit(3);
    });
    match loadgen::run(&cfg) {
        Ok(report) => {
            logging::emit(&report.to_string());
            if report.errors > 0 {
                tracing::error!(
                    "{} errors; first: {}",
                    report.errors,
                    report.first_error.as_deref().unwrap_or("?")
                );
                ExitCode::FAILURE
            } else if report.latencies.count() == 0 {
                tracing::error!("no reply inside the measured window");
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            tracing::error!("loadgen: runtime: {e}");
            ExitCode::FAILURE
        }
    }
}
