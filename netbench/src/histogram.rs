//! Latency recording for the load generator: an HdrHistogram in
//! nanoseconds, 3 significant digits, 1 ns to 60 s.

use std::time::Duration;

use hdrhistogram::Histogram;

/// Longest latency recorded as itself; longer ones are clamped to it (the
/// load generator's reply timeout is far below it).
const MAX_NANOS: u64 = 60_000_000_000;

/// A latency histogram.
#[derive(Debug, Clone)]
pub struct Latencies {
    hist: Histogram<u64>,
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

impl Latencies {
    /// An empty histogram.
    pub fn new() -> Self {
        Self {
            // Bounds and precision are constants that the crate accepts.
            hist: Histogram::new_with_bounds(1, MAX_NANOS, 3).expect("valid histogram bounds"),
        }
    }

    /// Records one latency.
    pub fn record(&mut self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(MAX_NANOS);
        self.hist.saturating_record(nanos.clamp(1, MAX_NANOS));
    }

    /// How many latencies were recorded.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// The latency at quantile `q` (0.5 for the median), zero when empty.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.hist.is_empty() {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.hist.value_at_quantile(q))
    }

    /// The largest latency recorded, zero when empty.
    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.hist.max())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_what_was_recorded() {
        let mut l = Latencies::new();
        assert_eq!(l.quantile(0.5), Duration::ZERO);
        for us in 1..=1000u64 {
            l.record(Duration::from_micros(us));
        }
        assert_eq!(l.count(), 1000);
        let p50 = l.quantile(0.5).as_micros();
        let p99 = l.quantile(0.99).as_micros();
        assert!((499..=501).contains(&p50), "{p50}");
        assert!((989..=991).contains(&p99), "{p99}");
        l.record(Duration::from_secs(3600));
        assert!(l.max() <= Duration::from_secs(61));
    }
}
