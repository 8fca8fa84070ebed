//! `idle --port P --pid PID [--conns 10000] [--idle-secs 5] [--settle-secs 1]
//! [--max-idle-cpu 0.01]`: opens `--conns` idle connections to the server
//! on 127.0.0.1:P whose process is PID, and reports what they cost it:
//! resident memory per connection (`Rss` before and after, once the
//! server holds every socket) and its CPU over `--idle-secs` of silence,
//! which must stay below `--max-idle-cpu` cores (exit 1 otherwise, or if a
//! connection fails; 2 on a bad command line). Raises its own
//! `RLIMIT_NOFILE` to the hard limit and reports both.

use std::net::TcpStream;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use netbench::args::Args;
use netbench::{logging, loopback, procfs, rlimit};

type Error = Box<dyn std::error::Error>;

/// Connections opened before waiting for the server to accept them: well
/// under any listen backlog (Twisted's is 50), because loopback handshakes
/// complete in the kernel far faster than a descheduled server accepts, and
/// an overflowing accept queue drops SYNs that are only retried a second
/// later.
const ACCEPT_BATCH: usize = 32;

/// Waits until the server holds `base + accepted` descriptors: a
/// connection the kernel completed may still wait in the accept queue.
/// Counting descriptors is cheap; if the count stalls (the server closed
/// some file meanwhile), the sockets themselves are counted.
fn wait_for_accepts(pid: u32, base: Counts, accepted: usize) -> Result<(), Error> {
    let start = Instant::now();
    loop {
        if procfs::open_fds(pid)? >= base.fds + accepted {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(1) {
            let have = procfs::open_sockets(pid)?;
            if have >= base.sockets + accepted {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(30) {
                return Err(format!(
                    "server holds {} new sockets after 30 s, expected {accepted}",
                    have.saturating_sub(base.sockets)
                )
                .into());
            }
        }
        // Listing 10 000 socket links is not cheap: poll slowly once stalled.
        let pause = if start.elapsed() > Duration::from_secs(1) {
            100
        } else {
            1
        };
        std::thread::sleep(Duration::from_millis(pause));
    }
}

/// The server's descriptors and sockets before the test.
#[derive(Debug, Clone, Copy)]
struct Counts {
    fds: usize,
    sockets: usize,
}

fn run(args: &Args) -> Result<bool, Error> {
    let addr = loopback::target("127.0.0.1", args.require("port")?)?;
    let pid: u32 = args.require("pid")?;
    let conns: usize = args.get_or("conns", 10_000)?;
    let idle = Duration::try_from_secs_f64(args.get_or("idle-secs", 5.0)?)?;
    let settle = Duration::try_from_secs_f64(args.get_or("settle-secs", 1.0)?)?;
    let max_cpu: f64 = args.get_or("max-idle-cpu", 0.01)?;

    let limits = rlimit::raise_nofile()?;
    let fmt_limit = |l: Option<u64>| l.map_or("unlimited".to_owned(), |n| n.to_string());
    if limits.soft_after.is_some_and(|n| n < conns as u64 + 32) {
        return Err(format!(
            "RLIMIT_NOFILE {} (hard {}) is too low for {conns} connections",
            fmt_limit(limits.soft_after),
            fmt_limit(limits.hard)
        )
        .into());
    }

    // Let the server finish with any earlier connection (a readiness probe
    // such as scripts/bench-net's) so it is not counted in the baseline and
    // then missed when it closes.
    std::thread::sleep(settle);
    let rss_before = procfs::rss_bytes(Some(pid))?;
    let base = Counts {
        fds: procfs::open_fds(pid)?,
        sockets: procfs::open_sockets(pid)?,
    };
    let mut held = Vec::with_capacity(conns);
    let connect_start = Instant::now();
    while held.len() < conns {
        let batch = (conns - held.len()).min(ACCEPT_BATCH);
        for _ in 0..batch {
            let i = held.len();
            let s = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(10))
                .map_err(|e| format!("connection {i} of {conns} to {addr}: {e}"))?;
            held.push(s);
        }
        wait_for_accepts(pid, base, held.len())?;
    }
    let connect_time = connect_start.elapsed();
    std::thread::sleep(settle);
    let rss_after = procfs::rss_bytes(Some(pid))?;

    let cpu_from = procfs::cpu_time(Some(pid))?;
    std::thread::sleep(idle);
    let cpu_to = procfs::cpu_time(Some(pid))?;
    let idle_cpu = cpu_to.saturating_sub(cpu_from);
    let cores = idle_cpu.as_secs_f64() / idle.as_secs_f64().max(1e-9);
    let per_conn = rss_after.saturating_sub(rss_before) as f64 / conns.max(1) as f64;
    let ok = cores <= max_cpu;
    logging::emit(&format!(
        "conns={conns} nofile_soft_before={} nofile_soft={} nofile_hard={} connect_s={:.2} \
         rss_before_kib={} rss_after_kib={} bytes_per_conn={per_conn:.0} idle_s={:.1} \
         idle_cpu_s={:.3} idle_cpu_cores={cores:.4} idle_cpu_ok={}",
        fmt_limit(limits.soft_before),
        fmt_limit(limits.soft_after),
        fmt_limit(limits.hard),
        connect_time.as_secs_f64(),
        rss_before / 1024,
        rss_after / 1024,
        idle.as_secs_f64(),
        idle_cpu.as_secs_f64(),
        if ok { "yes" } else { "no" },
    ));
    drop(held);
    Ok(ok)
}

fn main() -> ExitCode {
    logging::init();
    let args = match Args::parse(
        std::env::args().skip(1),
        &[
            "port",
            "pid",
            "conns",
            "idle-secs",
            "settle-secs",
            "max-idle-cpu",
        ],
    ) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("idle: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            tracing::error!("idle: the server used CPU while every connection was idle");
            ExitCode::FAILURE
        }
        Err(e) => {
            tracing::error!("idle: {e}");
            ExitCode::FAILURE
        }
    }
}
