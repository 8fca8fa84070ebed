//! Connection lifetime and health, checked on the worker when it takes a
//! job and never during one: `cp_max_lifetime` (with HikariCP's jitter),
//! `cp_idle_timeout`, `cp_check_idle` (a probe only after an idle spell,
//! HikariCP's `aliveBypassWindow`), and SQLAlchemy's "invalidate older
//! connections": once one lost connection is detected, every connection
//! opened before it is probed before its next use, so a server restart
//! costs one failed job in all, not one per worker. Also the
//! `cp_statement_timeout` setting, which the drivers apply at connect.
//!
//! Twisted's adbapi has none of these; all are off by default, and with all
//! off nothing here runs on the per-job path.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deferred::Failure;

use super::shared::SharedPool;
use crate::dbapi::{DbConnection, DbError};

/// The clock connection ages and idle times are read from (default
/// `Instant::now`); a test passes one it moves by hand. An extension.
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// PostgreSQL's limit for `statement_timeout` (`INT_MAX` milliseconds), the
/// smallest of the three servers'.
const MAX_STATEMENT_TIMEOUT_SECS: f64 = i32::MAX as f64 / 1000.0;

/// HikariCP's jitter: a connection's lifetime is shortened by up to 2.5 %,
/// so the connections opened together are not all replaced together.
const JITTER: f64 = 0.025;

/// The `cp_statement_timeout`, `cp_max_lifetime`, `cp_idle_timeout` and
/// `cp_check_idle` settings.
#[derive(Clone, Default)]
pub(super) struct LifeConfig {
    pub(super) statement_timeout: Option<Duration>,
    pub(super) max_lifetime: Option<Duration>,
    pub(super) idle_timeout: Option<Duration>,
    pub(super) check_idle: Option<Duration>,
    pub(super) clock: Option<Clock>,
}

impl fmt::Debug for LifeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LifeConfig")
            .field("statement_timeout", &self.statement_timeout)
            .field("max_lifetime", &self.max_lifetime)
            .field("idle_timeout", &self.idle_timeout)
            .field("check_idle", &self.check_idle)
            .finish_non_exhaustive()
    }
}

impl LifeConfig {
    /// Takes option `key` in seconds (`None`: off). Returns what the option
    /// takes if `secs` is not a usable value.
    pub(super) fn set(&mut self, key: &str, secs: Option<f64>) -> Result<(), &'static str> {
        const EXPECTED: &str = "a finite, non-negative number of seconds, or None";
        let d = match secs {
            None => None,
            Some(s) if !s.is_finite() || s < 0.0 => return Err(EXPECTED),
            // A positive value below a nanosecond is the strictest limit,
            // not 0 ("off").
            Some(s) => Some(Duration::try_from_secs_f64(s).map_err(|_| EXPECTED)?.max(
                if s > 0.0 {
                    Duration::from_nanos(1)
                } else {
                    Duration::ZERO
                },
            )),
        };
        match key {
            "cp_statement_timeout" => {
                if secs.is_some_and(|s| s > MAX_STATEMENT_TIMEOUT_SECS) {
                    return Err("at most 2147483 seconds (PostgreSQL's limit), or None");
                }
                // 0 means no limit, as for the servers' own settings.
                self.statement_timeout = d.filter(|d| !d.is_zero());
            }
            "cp_max_lifetime" => self.max_lifetime = d.filter(|d| !d.is_zero()),
            "cp_idle_timeout" => self.idle_timeout = d.filter(|d| !d.is_zero()),
            // 0 is meaningful here: probe before every job.
            "cp_check_idle" => self.check_idle = d,
            _ => unreachable!("only the four options above come here"),
        }
        Ok(())
    }

    /// Whether anything needs looking at when a worker takes a job.
    fn checks_jobs(&self) -> bool {
        self.max_lifetime.is_some() || self.idle_timeout.is_some() || self.check_idle.is_some()
    }
}

/// What is known of one open connection.
#[derive(Clone, Copy)]
struct Meta {
    /// Its place in the order connections were opened.
    seq: u64,
    /// When it must be replaced (`cp_max_lifetime`, jitter applied).
    expires: Option<Instant>,
    /// When its last job ended (or it was opened).
    last_used: Instant,
}

thread_local! {
    /// What is known of the connections this thread owns, by connection
    /// id. A connection is used by the thread that opened it (the pool's
    /// per-thread map), so the records live there: no lock and no cache
    /// line shared between workers on the per-job path.
    static METAS: RefCell<HashMap<u64, Meta>> = RefCell::new(HashMap::new());
}

fn with_meta<R>(conn: &DbConnection, f: impl FnOnce(&mut Meta) -> R) -> Option<R> {
    METAS
        .try_with(|m| m.borrow_mut().get_mut(&conn.id()).map(f))
        .ok()
        .flatten()
}

/// The per-pool state behind the options (the per-connection records are
/// in [`METAS`]).
pub(super) struct Life {
    cfg: LifeConfig,
    /// Connections opened so far.
    opened: AtomicU64,
    /// Connections with a `seq` below this were opened before a lost
    /// connection was detected: each is probed before its next job.
    suspect_below: AtomicU64,
}

impl Life {
    /// The runtime state, or `None` when no job-time check is configured
    /// (then the per-job path does nothing at all).
    pub(super) fn new(cfg: &LifeConfig) -> Option<Life> {
        cfg.checks_jobs().then(|| Life {
            cfg: cfg.clone(),
            opened: AtomicU64::new(0),
            suspect_below: AtomicU64::new(0),
        })
    }

    fn now(&self) -> Instant {
        match &self.cfg.clock {
            Some(c) => c(),
            None => Instant::now(),
        }
    }

    /// A new connection: records its age.
    pub(super) fn opened(&self, conn: &DbConnection) {
        let now = self.now();
        let seq = self.opened.fetch_add(1, Ordering::AcqRel);
        let expires = self
            .cfg
            .max_lifetime
            .and_then(|max| now.checked_add(max.mul_f64(1.0 - JITTER * jitter(conn.id()))));
        let meta = Meta {
            seq,
            expires,
            last_used: now,
        };
        let _ = METAS.try_with(|m| m.borrow_mut().insert(conn.id(), meta));
    }

    /// A connection was closed: forgets it.
    pub(super) fn closed(&self, conn: &DbConnection) {
        // Closed by another thread (the pool's final close), the record
        // stays on the owner's thread until it exits; it is a few bytes and
        // no id is reused.
        let _ = METAS.try_with(|m| m.borrow_mut().remove(&conn.id()));
    }

    /// A job on `conn` ended.
    fn used(&self, conn: &DbConnection) {
        let now = self.now();
        with_meta(conn, |m| m.last_used = now);
    }

    /// A lost connection was detected: every connection open now is
    /// suspect (only with `cp_check_idle`, which opts in to probing).
    fn lost(&self) {
        if self.cfg.check_idle.is_some() {
            let below = self.opened.load(Ordering::Acquire);
            self.suspect_below.fetch_max(below, Ordering::AcqRel);
        }
    }

    /// What to do with `conn` before a job.
    fn verdict(&self, conn: &DbConnection) -> Verdict {
        let now = self.now();
        let Some(m) = with_meta(conn, |m| *m) else {
            return Verdict::Use;
        };
        if m.expires.is_some_and(|e| now >= e) {
            return Verdict::Replace("cp_max_lifetime");
        }
        let idle = now.saturating_duration_since(m.last_used);
        if self.cfg.idle_timeout.is_some_and(|t| idle >= t) {
            return Verdict::Replace("cp_idle_timeout");
        }
        if m.seq < self.suspect_below.load(Ordering::Acquire) {
            return Verdict::Probe("opened before a lost connection was detected");
        }
        if self.cfg.check_idle.is_some_and(|t| idle >= t) {
            return Verdict::Probe("cp_check_idle");
        }
        Verdict::Use
    }

    /// `conn` passed its probe: it is no longer suspect.
    fn vouch(&self, conn: &DbConnection) {
        let seq = self.opened.fetch_add(1, Ordering::AcqRel);
        with_meta(conn, |m| m.seq = seq);
    }
}

enum Verdict {
    Use,
    Replace(&'static str),
    Probe(&'static str),
}

/// A number in `[0, 1)` that differs from connection to connection
/// (splitmix64 of the id): the jitter needs spread, not secrecy.
fn jitter(id: u64) -> f64 {
    let mut z = id.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

impl SharedPool {
    /// Applies `cp_statement_timeout` to a new connection.
    pub(super) fn apply_statement_timeout(&self, conn: &DbConnection) -> Result<(), Failure> {
        let Some(limit) = self.life_config().statement_timeout else {
            return Ok(());
        };
        conn.set_statement_timeout(Some(limit)).map_err(|e| {
            Failure::new(e.context(format!(
                "could not apply cp_statement_timeout = {} s",
                limit.as_secs_f64()
            )))
        })
    }

    /// Before a job: replaces this thread's connection if it outlived
    /// `cp_max_lifetime` or `cp_idle_timeout`, or if the probe due after an
    /// idle spell (or after a lost connection elsewhere) fails. The job then
    /// connects afresh, as after any disconnect. Never called during a job.
    pub(super) fn before_job(self: &Arc<Self>) {
        let Some(life) = self.life() else { return };
        let Some(conn) = self.current_connection() else {
            return;
        };
        match life.verdict(&conn) {
            Verdict::Use => {}
            Verdict::Replace(why) => {
                tracing::debug!(
                    connection = conn.id(),
                    why,
                    "replacing an expired connection before the job"
                );
                let _ = self.disconnect(Some(&conn));
            }
            Verdict::Probe(why) => {
                let sql = self.good_sql().unwrap_or("select 1");
                let probe = super::job::catch(|| {
                    let r = conn
                        .execute(sql, ())
                        .map(drop)
                        .and_then(|()| conn.rollback());
                    r.map_err(Failure::new)
                });
                match probe {
                    Ok(()) => life.vouch(&conn),
                    Err(f) => {
                        tracing::info!(
                            connection = conn.id(),
                            why,
                            failure = %f,
                            "the pre-use check failed: replacing the connection before the job"
                        );
                        let _ = self.disconnect(Some(&conn));
                        life.lost();
                    }
                }
            }
        }
    }

    /// After a job on `conn`: it was used now; if the job's failure shows
    /// a lost connection, every older connection becomes suspect.
    pub(super) fn after_job<T>(&self, conn: &DbConnection, result: &Result<T, Failure>) {
        let Some(life) = self.life() else { return };
        life.used(conn);
        if let Err(f) = result {
            // Not "the connection is closed now": the pool also closes one
            // after a panic, which says nothing about the server.
            let lost = f.check::<super::ConnectionLost>().is_some()
                || f.check::<DbError>()
                    .is_some_and(DbError::is_connection_lost);
            if lost {
                life.lost();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_are_refused_and_zero_means_off() {
        let mut c = LifeConfig::default();
        for bad in [-1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e300] {
            assert!(c.set("cp_max_lifetime", Some(bad)).is_err(), "{bad}");
        }
        assert!(c.set("cp_statement_timeout", Some(3e6)).is_err());
        c.set("cp_statement_timeout", Some(0.0)).unwrap();
        assert_eq!(c.statement_timeout, None);
        c.set("cp_check_idle", Some(0.0)).unwrap();
        assert_eq!(c.check_idle, Some(Duration::ZERO));
        c.set("cp_idle_timeout", Some(0.5)).unwrap();
        assert_eq!(c.idle_timeout, Some(Duration::from_millis(500)));
    }

    #[test]
    fn a_positive_limit_too_small_for_a_duration_is_not_taken_for_off() {
        // Only 0 and None mean "off"; 1e-10 s is a (very strict) limit.
        let mut c = LifeConfig::default();
        for key in [
            "cp_statement_timeout",
            "cp_max_lifetime",
            "cp_idle_timeout",
            "cp_check_idle",
        ] {
            c.set(key, Some(1e-10)).unwrap();
        }
        let tiny = Some(Duration::from_nanos(1));
        assert_eq!(c.statement_timeout, tiny);
        assert_eq!(c.max_lifetime, tiny);
        assert_eq!(c.idle_timeout, tiny);
        assert_eq!(c.check_idle, tiny);
    }

    #[test]
    fn jitter_spreads_within_the_unit_interval() {
        let v: Vec<f64> = (0..1000).map(jitter).collect();
        assert!(v.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        assert!((0.4..0.6).contains(&mean), "{mean}");
    }
}
