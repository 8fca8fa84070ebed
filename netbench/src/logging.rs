//! Logging and output for the netbench binaries: diagnostics go through
//! `tracing` to stderr (level from `RUST_LOG`, default `warn`); results are
//! plain lines on stdout for `scripts/bench-net` to read.

use std::io::Write as _;

/// Installs the stderr `tracing` subscriber.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Writes one result line to stdout and flushes it, so a reader waiting for
/// it (the script, the smoke test) sees it at once.
pub fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    // stdout closed under us: nothing useful left to tell anyone.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
