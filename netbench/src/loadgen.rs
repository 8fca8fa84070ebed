//! The load generator: N clients on one thread, each sending a request and
//! waiting for its (checked) reply before the next (at once, or at its next
//! scheduled time when paced: see [`crate::pacer`]), for a warm-up and then
//! a measured window. A wrong reply, a reset or a reply
//! later than the reply timeout is an error, never a data point; that
//! client stops, since its stream can no longer be trusted.
//!
//! It runs on a current-thread tokio runtime so that on the 2-core bench
//! machine the server under test keeps the other core; the report says how
//! much CPU the generator itself used, to show it was not the bottleneck.

use std::cell::RefCell;
use std::net::SocketAddrV4;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::task::LocalSet;

use crate::histogram::Latencies;
use crate::pacer::Pacer;
use crate::procfs;
use crate::report::Report;
use crate::users;

/// What each client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `user <id>\r\n` with ids drawn uniformly from `1..=users`; the reply
    /// must be `<id> user<id>\r\n` (see [`users`]).
    Line {
        /// How many rows the server's table holds.
        users: u32,
    },
    /// Messages of `size` bytes that must come back unchanged.
    Echo {
        /// Bytes per message.
        size: usize,
    },
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Line { .. } => "line",
            Mode::Echo { .. } => "echo",
        }
    }
}

/// One run's parameters.
#[derive(Debug, Clone)]
pub struct Config {
    /// What to send.
    pub mode: Mode,
    /// The server (127.0.0.1 only: see [`crate::loopback`]).
    pub target: SocketAddrV4,
    /// Concurrent connections, each with one request in flight.
    pub clients: usize,
    /// Load before the window, not measured.
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
    /// Longest wait for one reply before it counts as an error.
    pub reply_timeout: Duration,
    /// Longest wait for one connection to be accepted.
    pub connect_timeout: Duration,
    /// Requests per second in all, shared by the clients on a fixed
    /// schedule; `None` for a closed loop (see [`crate::pacer`]).
    pub rate: Option<f64>,
    /// The server's process, to report its CPU use over the window (to tell
    /// a saturated server from an idle one waiting on the generator).
    pub server_pid: Option<u32>,
}

impl Config {
    /// The most a run can take: connecting, warm-up, window, the last
    /// replies, and a margin; past it the run is abandoned as an error.
    pub fn hard_timeout(&self) -> Duration {
        self.connect_timeout + self.warmup + self.duration + self.reply_timeout * 2
    }
}

/// Spare room in an echo client's read buffer (see `echo_client`).
const ECHO_SLACK: usize = 4096;

/// Connections opened at once while connecting, so that a server with a
/// small accept backlog (Twisted's is 50) is not flooded with SYNs that the
/// kernel drops and retries a second later.
const CONNECT_BATCH: usize = 64;

#[derive(Debug)]
struct Shared {
    measure_from: Instant,
    end: Instant,
    stats: RefCell<Stats>,
}

#[derive(Debug, Default)]
struct Stats {
    latencies: Latencies,
    echoed: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Shared {
    fn record(&self, sent: Instant, done: Instant, bytes: usize) {
        if sent >= self.measure_from && done <= self.end {
            let mut s = self.stats.borrow_mut();
            s.latencies.record(done - sent);
            s.echoed += bytes as u64;
        }
    }
}

fn fail(stats: &RefCell<Stats>, what: String) {
    let mut s = stats.borrow_mut();
    s.errors += 1;
    if s.first_error.is_none() {
        tracing::warn!("{what}");
        s.first_error = Some(what);
    }
}

/// xorshift64*: the ids only need to be spread over the table, and a
/// per-client generator keeps them independent of scheduling.
#[derive(Debug)]
struct Ids(u64);

impl Ids {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, n: u32) -> u32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) % u64::from(n.max(1))) as u32
    }
}

/// Runs one load test to the end and reports it. Fails only if the
/// runtime cannot be built; everything the server does wrong is counted
/// in [`Report::errors`].
pub fn run(cfg: &Config) -> std::io::Result<Report> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    let local = LocalSet::new();
    let hard = cfg.hard_timeout();
    let report = local.block_on(&rt, async {
        match tokio::time::timeout(hard, drive(cfg)).await {
            Ok(report) => report,
            Err(_) => Report {
                mode: cfg.mode.name(),
                clients: cfg.clients,
                rate: cfg.rate,
                window: cfg.duration,
                latencies: Latencies::new(),
                echoed_bytes: 0,
                errors: 1,
                first_error: Some(format!(
                    "run still going after its hard timeout of {hard:?}"
                )),
                own_cpu: Duration::ZERO,
                server_cpu: None,
            },
        }
    });
    Ok(report)
}

async fn connect_all(cfg: &Config, stats: &RefCell<Stats>) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(cfg.clients);
    let mut left = cfg.clients;
    while left > 0 {
        let batch = left.min(CONNECT_BATCH);
        left -= batch;
        let pending: Vec<_> = (0..batch)
            .map(|_| {
                let (target, limit) = (cfg.target, cfg.connect_timeout);
                tokio::task::spawn_local(tokio::time::timeout(limit, TcpStream::connect(target)))
            })
            .collect();
        for p in pending {
            match p.await {
                Ok(Ok(Ok(s))) => {
                    // Requests are one small write each; no Nagle delay.
                    if let Err(e) = s.set_nodelay(true) {
                        fail(stats, format!("TCP_NODELAY: {e}"));
                    }
                    streams.push(s);
                }
                Ok(Ok(Err(e))) => fail(stats, format!("connect to {}: {e}", cfg.target)),
                Ok(Err(_)) => fail(stats, format!("connect to {}: timed out", cfg.target)),
                Err(e) => fail(stats, format!("connect task: {e}")),
            }
        }
    }
    streams
}

async fn drive(cfg: &Config) -> Report {
    let connect_stats = RefCell::new(Stats::default());
    let streams = connect_all(cfg, &connect_stats).await;
    let start = Instant::now();
    let shared = Rc::new(Shared {
        measure_from: start + cfg.warmup,
        end: start + cfg.warmup + cfg.duration,
        stats: RefCell::new(connect_stats.into_inner()),
    });
    let clients: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let sh = Rc::clone(&shared);
            let (mode, limit) = (cfg.mode, cfg.reply_timeout);
            let pacer = Pacer::new(start, i, cfg.clients, cfg.rate);
            tokio::task::spawn_local(async move {
                match mode {
                    Mode::Line { users } => {
                        line_client(s, users, i as u64 + 1, pacer, &sh, limit).await
                    }
                    Mode::Echo { size } => echo_client(s, size, i as u64, pacer, &sh, limit).await,
                }
            })
        })
        .collect();
    tokio::time::sleep_until(shared.measure_from.into()).await;
    let cpu_from = procfs::cpu_time(None);
    let server_from = cfg.server_pid.map(|pid| procfs::cpu_time(Some(pid)));
    tokio::time::sleep_until(shared.end.into()).await;
    let cpu_to = procfs::cpu_time(None);
    let server_to = cfg.server_pid.map(|pid| procfs::cpu_time(Some(pid)));
    for c in clients {
        if let Err(e) = c.await {
            fail(&shared.stats, format!("client task: {e}"));
        }
    }
    let own_cpu = cpu_between(cpu_from, cpu_to, "own").unwrap_or_default();
    let server_cpu = match (server_from, server_to) {
        (Some(a), Some(b)) => cpu_between(a, b, "server's"),
        _ => None,
    };
    let stats = shared.stats.take();
    Report {
        mode: cfg.mode.name(),
        clients: cfg.clients,
        rate: cfg.rate,
        window: cfg.duration,
        latencies: stats.latencies,
        echoed_bytes: stats.echoed,
        errors: stats.errors,
        first_error: stats.first_error,
        own_cpu,
        server_cpu,
    }
}

fn cpu_between(
    from: Result<Duration, procfs::ProcError>,
    to: Result<Duration, procfs::ProcError>,
    whose: &str,
) -> Option<Duration> {
    match (from, to) {
        (Ok(a), Ok(b)) => Some(b.saturating_sub(a)),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!("{whose} CPU time unknown: {e}");
            None
        }
    }
}

async fn line_client(
    stream: TcpStream,
    users: u32,
    seed: u64,
    mut pacer: Pacer,
    sh: &Shared,
    limit: Duration,
) {
    let mut stream = BufReader::new(stream);
    let mut ids = Ids::new(seed);
    let (mut request, mut want, mut got) = (Vec::new(), Vec::new(), Vec::new());
    while Instant::now() < sh.end {
        let id = ids.below(users) + 1;
        request.clear();
        users::write_request(&mut request, id);
        want.clear();
        users::write_reply(&mut want, id, &users::name_of(id));
        got.clear();
        let sent = pacer.next_send().await;
        if sent >= sh.end {
            return;
        }
        // A reply longer than the expected one plus slack is wrong anyway;
        // the cap keeps a server that never sends '\n' from growing `got`.
        let cap = (want.len() + 256) as u64;
        let exchange = async {
            stream.get_mut().write_all(&request).await?;
            (&mut stream).take(cap).read_until(b'\n', &mut got).await
        };
        match tokio::time::timeout(limit, exchange).await {
            Ok(Ok(_)) if got == want => sh.record(sent, Instant::now(), 0),
            Ok(Ok(0)) => {
                return fail(
                    &sh.stats,
                    format!("user {id}: server closed the connection"),
                )
            }
            Ok(Ok(_)) => {
                return fail(
                    &sh.stats,
                    format!(
                        "user {id}: wrong reply {:?}, expected {:?}",
                        String::from_utf8_lossy(&got),
                        String::from_utf8_lossy(&want)
                    ),
                )
            }
            Ok(Err(e)) => return fail(&sh.stats, format!("user {id}: {e}")),
            Err(_) => return fail(&sh.stats, format!("user {id}: no reply within {limit:?}")),
        }
    }
}

async fn echo_client(
    mut stream: TcpStream,
    size: usize,
    seed: u64,
    mut pacer: Pacer,
    sh: &Shared,
    limit: Duration,
) {
    let mut message: Vec<u8> = (0..size).map(|i| (i as u64 ^ seed) as u8).collect();
    // Room for more than one message: a read that fills less than its
    // buffer lets tokio drop the socket's readiness, which saves the read
    // that would only return WouldBlock before each reply (an exact-size
    // read_exact costs that extra syscall per message and made the
    // generator, not the server, the limit in echo runs).
    let mut got = vec![0u8; size + ECHO_SLACK];
    let mut n: u64 = 0;
    while Instant::now() < sh.end {
        n += 1;
        // Each message differs from the last, so a server that replays an
        // old buffer is caught.
        let stamp = n.to_le_bytes();
        let k = stamp.len().min(size);
        message[..k].copy_from_slice(&stamp[..k]);
        let sent = pacer.next_send().await;
        if sent >= sh.end {
            return;
        }
        let exchange = async {
            stream.write_all(&message).await?;
            let mut have = 0;
            while have < size {
                match stream.read(&mut got[have..]).await? {
                    0 => return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
                    k => have += k,
                }
            }
            Ok(have)
        };
        match tokio::time::timeout(limit, exchange).await {
            Ok(Ok(have)) if have == size && got[..size] == message[..] => {
                sh.record(sent, Instant::now(), size)
            }
            Ok(Ok(have)) if have > size => {
                return fail(
                    &sh.stats,
                    format!("echo message {n}: {have} bytes back for {size} sent"),
                )
            }
            Ok(Ok(_)) => return fail(&sh.stats, format!("echo message {n}: bytes differ")),
            Ok(Err(e)) => return fail(&sh.stats, format!("echo message {n}: {e}")),
            Err(_) => {
                return fail(
                    &sh.stats,
                    format!("echo message {n}: no echo within {limit:?}"),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_cover_the_table_and_stay_in_it() {
        let mut ids = Ids::new(7);
        let mut seen = [false; 10];
        for _ in 0..1000 {
            seen[ids.below(10) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
        assert_eq!(Ids::new(3).below(1), 0);
    }
}
