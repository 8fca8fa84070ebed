//! When each client of the load generator sends: at once after the last
//! reply (closed loop, the default), or on a fixed schedule (paced), so
//! that latency can be measured at a load every server sustains instead of
//! at saturation, where a closed loop of N clients makes the mean latency
//! N / throughput by Little's law whatever the server does.
//!
//! A paced request that is behind schedule (the previous reply came after
//! its scheduled time) counts its latency from the scheduled time, not from
//! the late send: measuring from the send would hide the wait the slow
//! reply caused (the "coordinated omission" HdrHistogram's documentation
//! warns about). A request on schedule counts from its actual send, since
//! the timer wakes up to a millisecond late and that delay is the load
//! generator's, not the server's.

use std::time::{Duration, Instant};

/// One client's send schedule.
#[derive(Debug)]
pub struct Pacer {
    /// The next scheduled send; unused in a closed loop.
    next: Instant,
    /// Time between this client's requests; `None` for a closed loop.
    interval: Option<Duration>,
}

impl Pacer {
    /// The schedule of client `index` of `clients` from `start`: a closed
    /// loop when `total_rate` is `None`, else `total_rate` requests per
    /// second shared evenly by the clients, their first sends spread over
    /// one interval so they do not arrive in bursts.
    pub fn new(start: Instant, index: usize, clients: usize, total_rate: Option<f64>) -> Self {
        let interval = total_rate
            .filter(|r| *r > 0.0)
            .map(|r| Duration::from_secs_f64(clients as f64 / r));
        let offset = interval.map_or(Duration::ZERO, |iv| {
            iv.mul_f64(index as f64 / clients.max(1) as f64)
        });
        Self {
            next: start + offset,
            interval,
        }
    }

    /// Waits for the next send and returns the instant its latency counts
    /// from: now in a closed loop; when paced, now if the client had to wait
    /// for its slot, the missed slot if it is behind schedule.
    pub async fn next_send(&mut self) -> Instant {
        let Some(interval) = self.interval else {
            return Instant::now();
        };
        let at = self.next;
        self.next += interval;
        if Instant::now() < at {
            tokio::time::sleep_until(at.into()).await;
            Instant::now()
        } else {
            at
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_share_the_rate_and_start_staggered() {
        let start = Instant::now();
        let a = Pacer::new(start, 0, 4, Some(400.0));
        let b = Pacer::new(start, 2, 4, Some(400.0));
        // 4 clients at 400 req/s in all: each sends every 10 ms.
        assert_eq!(a.interval, Some(Duration::from_millis(10)));
        assert_eq!(b.next - a.next, Duration::from_millis(5));
        assert_eq!(Pacer::new(start, 1, 4, None).interval, None);
    }

    #[test]
    fn a_send_behind_schedule_counts_from_its_slot() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let start = Instant::now();
        let mut p = Pacer::new(start, 0, 1, Some(1000.0));
        rt.block_on(async {
            // The first slot is `start`, already past: the send counts from
            // it. The second is 1 ms later: from it, or from the actual send
            // after sleeping until it.
            assert_eq!(p.next_send().await, start);
            assert!(p.next_send().await >= start + Duration::from_millis(1));
        });
    }
}
