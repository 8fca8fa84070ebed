//! What one load-generator run measured, printed as one `key=value` line
//! that `scripts/bench-net` reads, so the script never parses prose.

use std::fmt;
use std::time::Duration;

use crate::histogram::Latencies;

/// The result of one closed-loop run.
#[derive(Debug, Clone)]
pub struct Report {
    /// `line` or `echo`.
    pub mode: &'static str,
    /// Clients that were asked for.
    pub clients: usize,
    /// The paced total rate asked for; `None` for a closed loop.
    pub rate: Option<f64>,
    /// The measured window (after the warm-up).
    pub window: Duration,
    /// Replies received and checked inside the window.
    pub latencies: Latencies,
    /// Payload bytes echoed back inside the window (echo mode).
    pub echoed_bytes: u64,
    /// Failures of any kind: connect, I/O, timeout, wrong or missing reply.
    pub errors: u64,
    /// The first failure, for the log.
    pub first_error: Option<String>,
    /// CPU time the load generator itself used during the window.
    pub own_cpu: Duration,
    /// CPU time the server used during the window, when its pid was given.
    pub server_cpu: Option<Duration>,
}

impl Report {
    /// Checked replies per second over the window.
    pub fn requests_per_sec(&self) -> f64 {
        self.latencies.count() as f64 / self.window.as_secs_f64().max(1e-9)
    }

    /// Echoed payload in MB/s (10^6 bytes, one direction).
    pub fn megabytes_per_sec(&self) -> f64 {
        self.echoed_bytes as f64 / 1e6 / self.window.as_secs_f64().max(1e-9)
    }

    /// The load generator's CPU use over the window, in cores (1.0 = one
    /// core busy all the time).
    pub fn own_cpu_cores(&self) -> f64 {
        self.own_cpu.as_secs_f64() / self.window.as_secs_f64().max(1e-9)
    }

    /// The server's CPU use over the window, in cores, when known.
    pub fn server_cpu_cores(&self) -> Option<f64> {
        self.server_cpu
            .map(|c| c.as_secs_f64() / self.window.as_secs_f64().max(1e-9))
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "mode={} clients={} rate={} window_s={:.3} requests={} rps={:.0} p50_us={:.1} p99_us={:.1} \
             p999_us={:.1} max_us={:.1} mbps={:.2} errors={} loadgen_cpu={:.2} server_cpu={}",
            self.mode,
            self.clients,
            self.rate.map_or("closed".to_owned(), |r| format!("{r:.0}")),
            self.window.as_secs_f64(),
            self.latencies.count(),
            self.requests_per_sec(),
            micros(self.latencies.quantile(0.5)),
            micros(self.latencies.quantile(0.99)),
            micros(self.latencies.quantile(0.999)),
            micros(self.latencies.max()),
            self.megabytes_per_sec(),
            self.errors,
            self.own_cpu_cores(),
            self.server_cpu_cores()
                .map_or("-".to_owned(), |c| format!("{c:.2}")),
        )
    }
}
