//! What idle connections cost: memory per connection and CPU while idle.
//!
//! The client ends live in a child process. The measurement with 10 000
//! connections is netbench's `idle` tool against a real server
//! (`scripts/bench-net`); the run below checks the same properties with 200
//! connections, with bounds generous enough for a shared machine.

// A measurement: it prints its numbers.
#![allow(clippy::print_stderr)]

mod tcp_support;

use std::io::Read;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reactor::prelude::*;
use reactor::Reactor;
use tcp_support::*;

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// User + system CPU time of this thread (tests run in parallel), in clock
/// ticks (1/100 s).
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    // Fields 14 and 15 of stat; `after` starts at field 3.
    t(11) + t(12)
}

const CHILD_ENV: &str = "REACTOR_TCP_IDLE_CLIENTS";

/// Opens `n` idle connections to a reactor's port from a child process
/// (this test binary), so the client ends use neither this process's
/// memory nor its descriptors. Returns the RSS growth per connection and
/// the child, which exits when its stdin closes.
fn open_idle(reactor: &Reactor, n: usize) -> (f64, std::process::Child) {
    let server = Hooks::default().factory();
    let port = reactor
        .listen_tcp(0, server.clone(), 1024, "127.0.0.1")
        .unwrap()
        .get_host()
        .port();
    // Warm up: the shared read buffer, the slab, the first allocations.
    let warm = TcpStream::connect(("127.0.0.1", port)).unwrap();
    turn_until(reactor, || server.conns.borrow().len() == 1);
    let before = rss_bytes();
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "idle_clients_child", "--ignored", "--nocapture"])
        .env(CHILD_ENV, format!("{port}:{}", n - 1))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn the client process");
    turn_until(reactor, || server.conns.borrow().len() == n);
    let per = (rss_bytes().saturating_sub(before)) as f64 / (n - 1) as f64;
    drop(warm);
    (per, child)
}

#[test]
#[ignore = "the client side of the idle tests, run in a child process"]
fn idle_clients_child() {
    let Some(spec) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let spec = spec.into_string().unwrap();
    let (port, n) = spec.split_once(':').unwrap();
    let (port, n): (u16, usize) = (port.parse().unwrap(), n.parse().unwrap());
    let clients: Vec<TcpStream> = (0..n)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink); // until the parent is done
    drop(clients);
}

fn idle_cpu_ticks(reactor: &Reactor, for_: Duration) -> u64 {
    let start = cpu_ticks();
    let deadline = Instant::now() + for_;
    while Instant::now() < deadline {
        reactor.iterate(Duration::from_millis(100));
    }
    cpu_ticks() - start
}

#[test]
fn two_hundred_idle_connections_are_cheap() {
    let reactor = new_reactor();
    let (per, mut child) = open_idle(&reactor, 200);
    // Includes the test's own record and protocol per connection.
    assert!(
        per < 16.0 * 1024.0,
        "{per:.0} bytes of RSS per idle connection"
    );
    eprintln!("200 idle connections: {per:.0} bytes of RSS each");
    let ticks = idle_cpu_ticks(&reactor, Duration::from_millis(500));
    assert!(ticks <= 10, "idle for 0.5 s used {ticks} ticks of CPU");
    eprintln!("idle 0.5 s: {ticks} CPU ticks");
    drop(child.stdin.take());
    let _ = child.wait();
}
