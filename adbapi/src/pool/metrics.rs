//! Publishing a pool's figures through the `metrics` facade crate (cargo
//! feature `metrics`), as Synapse publishes its database pool's to
//! Prometheus: counters and histograms recorded as jobs and connections
//! come and go, gauges set by each [`ConnectionPool::status`] call. Every
//! series is labelled `pool` (the `cp_name`, else `adbapi-<module>`), and a
//! named job's ([`ConnectionPool::named`]) also `interaction`.
//!
//! | name | kind | labels |
//! | --- | --- | --- |
//! | `adbapi_jobs_total` | counter | `pool`, `interaction`, `outcome` (`completed`, `failed`, `cancelled`, `timed_out`) |
//! | `adbapi_job_wait_seconds` | histogram | `pool`, `interaction` |
//! | `adbapi_job_run_seconds` | histogram | `pool`, `interaction` |
//! | `adbapi_connections_total` | counter | `pool`, `event` (`opened`, `closed`, `failed`) |
//! | `adbapi_pool_workers`, `_busy`, `_idle`, `_queued`, `_open_connections` | gauge | `pool` |
//!
//! Without the feature every function here is empty and inlined away.
//!
//! [`ConnectionPool::status`]: super::ConnectionPool::status
//! [`ConnectionPool::named`]: super::ConnectionPool::named

use std::sync::Arc;
use std::time::Duration;

use super::status::PoolStatus;

/// The outcome label of a finished job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    Completed,
    Failed,
    Cancelled,
    TimedOut,
}

impl Outcome {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    fn label(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
            Outcome::TimedOut => "timed_out",
        }
    }
}

#[cfg(feature = "metrics")]
mod imp {
    use super::*;
    use metrics::{counter, gauge, histogram, SharedString};

    fn s(v: &Arc<str>) -> SharedString {
        SharedString::from(v.to_string())
    }

    pub(in crate::pool) fn job_timed(
        pool: &Arc<str>,
        interaction: Option<&Arc<str>>,
        wait: Duration,
        run: Duration,
    ) {
        match interaction {
            Some(i) => {
                histogram!("adbapi_job_wait_seconds", "pool" => s(pool), "interaction" => s(i))
                    .record(wait.as_secs_f64());
                histogram!("adbapi_job_run_seconds", "pool" => s(pool), "interaction" => s(i))
                    .record(run.as_secs_f64());
            }
            None => {
                histogram!("adbapi_job_wait_seconds", "pool" => s(pool)).record(wait.as_secs_f64());
                histogram!("adbapi_job_run_seconds", "pool" => s(pool)).record(run.as_secs_f64());
            }
        }
    }

    pub(in crate::pool) fn job_outcome(
        pool: &Arc<str>,
        interaction: Option<&Arc<str>>,
        outcome: Outcome,
    ) {
        match interaction {
            Some(i) => counter!("adbapi_jobs_total", "pool" => s(pool), "interaction" => s(i),
                                "outcome" => outcome.label())
            .increment(1),
            None => counter!("adbapi_jobs_total", "pool" => s(pool), "outcome" => outcome.label())
                .increment(1),
        }
    }

    pub(in crate::pool) fn connection_event(pool: &Arc<str>, event: &'static str) {
        counter!("adbapi_connections_total", "pool" => s(pool), "event" => event).increment(1);
    }

    pub(in crate::pool) fn publish_status(pool: &Arc<str>, st: &PoolStatus) {
        let f = |n: usize| n as f64;
        gauge!("adbapi_pool_workers", "pool" => s(pool)).set(f(st.workers));
        gauge!("adbapi_pool_busy", "pool" => s(pool)).set(f(st.busy));
        gauge!("adbapi_pool_idle", "pool" => s(pool)).set(f(st.idle));
        gauge!("adbapi_pool_queued", "pool" => s(pool)).set(f(st.queued));
        gauge!("adbapi_pool_open_connections", "pool" => s(pool)).set(f(st.open_connections));
    }
}

#[cfg(not(feature = "metrics"))]
mod imp {
    use super::*;

    #[inline(always)]
    pub(in crate::pool) fn job_timed(_: &Arc<str>, _: Option<&Arc<str>>, _: Duration, _: Duration) {
    }

    #[inline(always)]
    pub(in crate::pool) fn job_outcome(_: &Arc<str>, _: Option<&Arc<str>>, _: Outcome) {}

    #[inline(always)]
    pub(in crate::pool) fn connection_event(_: &Arc<str>, _: &'static str) {}

    #[inline(always)]
    pub(in crate::pool) fn publish_status(_: &Arc<str>, _: &PoolStatus) {}
}

pub(super) use imp::{connection_event, job_outcome, job_timed, publish_status};
