//! How long the loop spins for thread results before it sleeps.
//!
//! Sleeping costs a wake-up when the result arrives: on the 2-vCPU machine
//! this project measures on, 20–25 µs across cores, and more once the
//! loop's CPU has gone idle (a PostgreSQL point select's client round trip
//! is ≈ 25 µs while a CPU stays busy and ≈ 55 µs when the caller's thread
//! sleeps in between). So by default the budget follows the workload: the
//! loop keeps a running estimate of how long it waits for the next result
//! while jobs are outstanding, and spins for one and a half times that, at
//! least [`BASE`] and at most [`CAP`]; waits longer than the cap are not
//! worth spinning for, and get [`BASE`]. An SQLite job (a few µs) keeps the
//! base budget; a database round trip of tens of µs is caught without
//! sleeping. Spinning yields on every pass after a few pause hints (see
//! `spin.rs`), so a thread that shares the loop's CPU still runs, and the
//! loop never spins with nothing outstanding: an idle loop uses no CPU.
//!
//! [`Reactor::set_spin`](crate::Reactor::set_spin) fixes the budget instead
//! (zero: never spin).

use std::cell::Cell;
use std::time::Duration;

/// The least the loop spins while jobs are outstanding.
pub(crate) const BASE: Duration = Duration::from_micros(20);
/// The most the loop spins; a result expected later than this is slept for.
pub(crate) const CAP: Duration = Duration::from_micros(200);

/// The loop's spin budget: fixed, or following the waits it sees.
pub(crate) struct LoopSpin {
    fixed: Cell<Option<Duration>>,
    /// Running estimate of a wait for a thread result, in nanoseconds (an
    /// exponentially weighted mean, weight 1/8); zero before the first.
    estimate_ns: Cell<u64>,
}

impl LoopSpin {
    pub(crate) fn new() -> LoopSpin {
        LoopSpin {
            fixed: Cell::new(None),
            estimate_ns: Cell::new(0),
        }
    }

    /// Fixes the budget (no more adapting).
    pub(crate) fn set_fixed(&self, budget: Duration) {
        self.fixed.set(Some(budget));
    }

    /// How long to spin now.
    pub(crate) fn budget(&self) -> Duration {
        if let Some(fixed) = self.fixed.get() {
            return fixed;
        }
        let wanted = Duration::from_nanos(self.estimate_ns.get().saturating_mul(3) / 2);
        if wanted > CAP {
            BASE
        } else {
            wanted.max(BASE)
        }
    }

    /// The loop waited `waited` for a thread result (spinning, or asleep
    /// until a result woke it).
    pub(crate) fn observed(&self, waited: Duration) {
        if self.fixed.get().is_some() {
            return;
        }
        let w = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        let e = self.estimate_ns.get();
        let next = if e == 0 {
            w
        } else if w >= e {
            e + (w - e) / 8
        } else {
            e - (e - w) / 8
        };
        self.estimate_ns.set(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn short_waits_keep_the_base_budget() {
        let s = LoopSpin::new();
        assert_eq!(s.budget(), BASE);
        for _ in 0..50 {
            s.observed(us(4));
        }
        assert_eq!(s.budget(), BASE);
    }

    #[test]
    fn round_trips_of_tens_of_micros_are_spun_for() {
        let s = LoopSpin::new();
        // The first wait includes a sleep's wake-up; the spins that follow
        // catch the result sooner, and the budget settles above the wait.
        s.observed(us(75));
        assert!(s.budget() >= us(100), "{:?}", s.budget());
        for _ in 0..100 {
            s.observed(us(25));
        }
        let b = s.budget();
        assert!(b > us(25) && b <= us(40), "{b:?}");
    }

    #[test]
    fn waits_beyond_the_cap_get_the_base_budget_and_short_ones_bring_it_back() {
        let s = LoopSpin::new();
        for _ in 0..20 {
            s.observed(Duration::from_millis(10));
        }
        assert_eq!(s.budget(), BASE);
        for _ in 0..200 {
            s.observed(us(60));
        }
        let b = s.budget();
        assert!(b > us(60) && b <= CAP, "{b:?}");
    }

    #[test]
    fn a_fixed_budget_does_not_adapt() {
        let s = LoopSpin::new();
        s.set_fixed(Duration::ZERO);
        s.observed(us(30));
        assert_eq!(s.budget(), Duration::ZERO);
        s.set_fixed(us(5));
        assert_eq!(s.budget(), us(5));
    }
}
