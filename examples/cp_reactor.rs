//! `cp_reactor`: giving the pool a fake reactor, so a test controls startup,
//! shutdown, when jobs run and when results are delivered, with no threads
//! and no sleeps. This is how Twisted's own `test_adbapi` tests the pool
//! (its `EventReactor`, plus `task.Clock` for time).
//!
//! Ports these Twisted tests:
//!
//! ```python
//! class EventReactor:                 # records triggers instead of running
//!     def __init__(self, running):
//!         self._running = running
//!         self.triggers = []
//!     def callWhenRunning(self, function):
//!         if self._running:
//!             function()
//!         else:
//!             return self.addSystemEventTrigger("after", "startup", function)
//!     def addSystemEventTrigger(self, phase, event, trigger):
//!         handle = (phase, event, trigger)
//!         self.triggers.append(handle)
//!         return handle
//!     def removeSystemEventTrigger(self, handle):
//!         self.triggers.remove(handle)
//!
//! def test_unstartedClose(self):
//!     reactor = EventReactor(running=False)
//!     pool = ConnectionPool("sqlite3", ":memory:", cp_reactor=reactor)
//!     self.assertEqual(reactor.triggers, [("after", "startup", pool._start)])
//!     pool.close()
//!     self.assertFalse(reactor.triggers)
//!
//! def test_startedClose(self):
//!     reactor = EventReactor(running=True)
//!     pool = ConnectionPool("sqlite3", ":memory:", cp_reactor=reactor)
//!     self.assertEqual(reactor.triggers, [("during", "shutdown", pool.finalClose)])
//!     pool.close()
//!     self.assertFalse(reactor.triggers)
//! ```
//!
//! Here `reactor::testing::FakeReactor` is that `EventReactor` grown into a
//! full fake: [`fire_startup`](FakeReactor::fire_startup) and
//! [`stop`](FakeReactor::stop) fire the system events, pools run jobs inline
//! (Twisted's `NonThreadPool`) or when told ([`PoolMode::Manual`]), results
//! reach Deferreds on [`pump`](FakeReactor::pump), and time is a
//! `task.Clock` moved by [`advance`](FakeReactor::advance).
//!
//! Run it with `cargo run --example cp_reactor`; every step is checked with
//! `assert!`, so it exits 0 only if all hold.

mod common;

use std::time::Duration;

use adbapi::{args, kwargs, Arg, ConnectionPool, Row};
use common::say;
use deferred::{Deferred, Failure, TimeoutError};
use reactor::prelude::*;
use reactor::testing::FakeReactor;
use reactor::testing::PoolMode;
use reactor::Phase;

/// A pool on `reactor`, with one connection to a private in-memory database
/// (jobs run on the test's thread, so they all share it).
fn pool_on(reactor: &FakeReactor) -> ConnectionPool {
    ConnectionPool::new(
        "sqlite3",
        args![":memory:"],
        kwargs! { "cp_min" => 1, "cp_max" => 1, "cp_reactor" => Arg::reactor(reactor.clone()) },
    )
    .expect("valid options")
}

/// The result a Deferred holds now; panics if it has none yet.
fn result_of<T: 'static>(d: Deferred<T>) -> Result<T, Failure> {
    match d.into_result() {
        Ok(r) => r,
        Err(_) => panic!("the Deferred has no result yet"),
    }
}

/// test_unstartedClose, then what a started pool does.
fn startup_and_shutdown() -> Result<(), Failure> {
    let reactor = FakeReactor::new(false);
    let pool = pool_on(&reactor);
    // [("after", "startup", pool._start)]
    let start = pool.start_id().expect("not running: a startup trigger");
    assert_eq!(reactor.triggers(), vec![start.clone()]);
    assert_eq!(start.phase(), Phase::After);
    assert!(!pool.running());
    say(format_args!("not running: the pool registered {start}"));

    reactor.fire_startup();
    let shutdown = pool.shutdown_id().expect("started: a shutdown trigger");
    assert!(pool.running());
    assert_eq!(reactor.triggers(), vec![shutdown.clone()]);
    say(format_args!(
        "fire_startup(): running, now registered {shutdown}"
    ));

    // Inline mode: the job ran during run_query, but the result waits for a
    // reactor turn, as it would wait for the loop thread.
    let d = pool
        .run_operation("CREATE TABLE t (x INTEGER)", ())
        .add_callback_deferred({
            let p = pool.clone();
            move |()| p.run_operation("INSERT INTO t VALUES (?)", (42,))
        });
    assert!(!d.has_result());
    reactor.pump(); // CREATE's result: the callback issues the INSERT
    reactor.pump(); // the INSERT's result
    result_of(d)?;
    let rows: Vec<Row> = {
        let d = pool.run_query("SELECT x FROM t", ());
        reactor.pump();
        result_of(d)?
    };
    assert_eq!(rows[0].get::<i64>(0)?, 42);
    say(format_args!(
        "run_operation/run_query: results delivered by pump(), x = 42"
    ));

    // Stopping fires `shutdown`; the pool's trigger closes it.
    reactor.stop().map_err(Failure::new)?;
    assert!(!pool.running());
    assert!(reactor.triggers().is_empty());
    reactor.pump();
    let refused = pool.run_query("SELECT 1", ());
    reactor.pump();
    let f = result_of(refused).expect_err("a closed pool refuses work");
    assert!(f.check::<adbapi::PoolClosed>().is_some());
    say(format_args!(
        "stop(): pool closed, triggers gone, new work fails with PoolClosed"
    ));
    Ok(())
}

/// test_unstartedClose and test_startedClose: close() removes the trigger.
fn close_removes_triggers() {
    for running in [false, true] {
        let reactor = FakeReactor::new(running);
        let pool = pool_on(&reactor);
        assert_eq!(reactor.triggers().len(), 1);
        drop(pool.close());
        assert!(reactor.triggers().is_empty());
        say(format_args!(
            "running={running}: close() removed the pool's trigger"
        ));
    }
}

/// Manual mode: jobs wait for run_jobs(); a queued job can be cancelled; a
/// timeout fires when the fake clock is advanced.
fn manual_jobs_and_time() -> Result<(), Failure> {
    let reactor = FakeReactor::with_pool_mode(true, PoolMode::Manual);
    let pool = pool_on(&reactor);
    let created = pool.run_operation("CREATE TABLE t (x INTEGER)", ());
    reactor.run_until_idle();
    result_of(created)?;

    let kept = pool.run_operation("INSERT INTO t VALUES (1)", ());
    let cancelled = pool.run_operation("INSERT INTO t VALUES (2)", ());
    let timed_out = pool
        .run_operation("INSERT INTO t VALUES (3)", ())
        .add_timeout(Duration::from_secs(30), &reactor);
    assert_eq!(pool.threadpool().q_size(), 3);
    cancelled.cancel(); // withdrawn: it never runs
    reactor.advance(30.0); // the timeout cancels the third one
    let f = result_of(timed_out).expect_err("timed out");
    assert!(f.check::<TimeoutError>().is_some());
    say(format_args!(
        "advance(30.0): the queued INSERT 3 failed with {}",
        f.error_message()
    ));

    reactor.run_until_idle(); // runs what is still queued: INSERT 1
    result_of(kept)?;
    assert!(result_of(cancelled).is_err());
    let d = pool.run_query("SELECT x FROM t ORDER BY x", ());
    reactor.run_until_idle();
    let xs = result_of(d)?
        .iter()
        .map(|r| r.get::<i64>(0))
        .collect::<Result<Vec<_>, _>>()?;
    assert_eq!(xs, [1]);
    say(format_args!(
        "run_until_idle(): only INSERT 1 ran; the cancelled and timed-out jobs never did: {xs:?}"
    ));
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    common::init_logging();
    say(format_args!(
        "== startup and shutdown (PoolMode::Inline) =="
    ));
    startup_and_shutdown().map_err(|f| f.to_string())?;
    say(format_args!("== close() before and after startup =="));
    close_removes_triggers();
    say(format_args!(
        "== queued jobs and fake time (PoolMode::Manual) =="
    ));
    manual_jobs_and_time().map_err(|f| f.to_string())?;
    say(format_args!("all checks passed"));
    Ok(())
}
