//! The loop's spin for thread results (`loop_spin.rs`, `Reactor::set_spin`)
//! against the promises around it: a spin is part of the loop's wait, so a
//! timer is not made later by it and `iterate(delay)` does not wait longer
//! than `delay`; an idle loop does not spin at all.
//!
//! Not in Twisted (whose loop never spins). A job stays outstanding here by
//! being queued on a pool that is not started, so no thread is involved.
//!
//! The wall-clock bounds below are upper bounds with a wide margin: a loop
//! that spins through its timeout and then sleeps the whole timeout again
//! takes at least twice the delay, deterministically; a correct one takes
//! the delay, so the test fails only if the machine stalls this thread for
//! most of a second.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use reactor::prelude::*;
use reactor::{defer_to_thread_pool, Address, Reactor, ThreadPool};

/// The delay the tests wait for; long, so scheduling noise is small next
/// to it.
const DELAY: Duration = Duration::from_millis(600);

/// Less than twice [`DELAY`]: a loop that spins through its timeout and
/// then sleeps it again cannot come in under this.
fn at_most() -> Duration {
    DELAY * 17 / 10
}

/// A job that stays outstanding: its pool is not started (stopping the pool
/// at the end fails its Deferred with `PoolStopped`).
fn outstanding_job(reactor: &Reactor) -> ThreadPool {
    let pool = ThreadPool::new(0, 1, "never-started").unwrap();
    let d = defer_to_thread_pool(reactor, &pool, || Ok(()));
    d.add_errback(|_| Ok(()));
    pool
}

/// Refuses every connection: a listening port only makes the loop one with
/// I/O sources (the branch whose spin also polls the sockets).
struct Refuse;

impl Factory for Refuse {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        None
    }
}

fn iterate_once(with_io: bool) -> Duration {
    let reactor = Reactor::new().unwrap();
    let _port = with_io.then(|| {
        reactor
            .listen_tcp(0, Rc::new(Refuse), 16, "127.0.0.1")
            .unwrap()
    });
    // A fixed budget far beyond the delay: the spin is then bounded only
    // by the delay.
    reactor.set_spin(Duration::from_secs(60));
    let pool = outstanding_job(&reactor);
    let start = Instant::now();
    reactor.iterate(DELAY);
    let took = start.elapsed();
    pool.stop();
    took
}

// `iterate(delay)` waits at most `delay` (Twisted's `iterate` contract)
// even while a job is outstanding: the spin is part of the wait, and the
// sleep after it is for what is left.
#[test]
fn iterate_with_a_job_outstanding_waits_at_most_its_delay() {
    let took = iterate_once(false);
    assert!(took >= DELAY, "returned early: {took:?}");
    assert!(took < at_most(), "iterate({DELAY:?}) took {took:?}");
}

#[test]
fn iterate_with_a_job_outstanding_and_sockets_waits_at_most_its_delay() {
    let took = iterate_once(true);
    assert!(took < at_most(), "iterate({DELAY:?}) took {took:?}");
}

// A timer due while a job is outstanding fires when it is due, not after a
// spin up to its due time plus a sleep as long again.
#[test]
fn a_timer_due_while_a_job_is_outstanding_is_not_made_late_by_the_spin() {
    let reactor = Reactor::new().unwrap();
    reactor.set_spin(Duration::from_secs(60));
    let pool = outstanding_job(&reactor);
    let fired_after = Rc::new(Cell::new(None));
    let start = Instant::now();
    let (f, r) = (Rc::clone(&fired_after), reactor.clone());
    reactor.call_later(DELAY, move || {
        f.set(Some(start.elapsed()));
        r.stop().unwrap();
    });
    reactor.run().unwrap();
    pool.stop();
    let took = fired_after.get().expect("the timer fired");
    assert!(took >= DELAY, "fired early: {took:?}");
    assert!(
        took < at_most(),
        "a timer due in {DELAY:?} fired after {took:?}"
    );
}
