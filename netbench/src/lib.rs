//! The network benchmark of issue 12 ("Performance"): a closed-loop load
//! generator, an idle-connection probe, and the peers our TCP servers are
//! measured against (a tokio line server doing the same rusqlite point
//! select through `spawn_blocking`, a tokio echo server; the Twisted peers
//! live in `netbench/twisted/`).
//!
//! Nothing here mirrors a Twisted API: this crate only measures. Every tool
//! talks to 127.0.0.1 and nothing else ([`loopback`]), and every run stops by
//! itself (a duration plus a hard timeout). `scripts/bench-net` drives it;
//! no test runs a server for long.
//!
//! The wire protocol shared by every line server (ours, tokio's, Twisted's)
//! and the table they read is in [`users`].

pub mod args;
pub mod conformance;
pub mod echo_service;
pub mod first_byte;
pub mod histogram;
pub mod line_service;
pub mod loadgen;
pub mod logging;
pub mod loopback;
pub mod pacer;
pub mod procfs;
pub mod report;
pub mod rlimit;
pub mod users;
