//! The deterministic test reactor, `testing::FakeReactor`: the
//! `EventReactor` shapes of Twisted's `test_adbapi.py`
//! (`ConnectionPoolTests.test_unstartedClose` and `test_startedClose`, with
//! a closure standing in for the pool), the startup/shutdown rules of
//! Twisted's `ReactorBase` (`startRunning`, `stop`, `callWhenRunning`) as
//! the fake implements them, and its pools and turns (results only through
//! the reactor's queue, on a later turn, as Twisted's tests that use
//! `NonThreadPool` rely on).

mod common;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::Events;
use deferred::{Deferred, Failure};
use reactor::prelude::*;
use reactor::testing::{FakeReactor, PoolMode, TestPool};
use reactor::{
    defer_to_thread, defer_to_thread_pool, Phase, ReactorCore, ReactorNotRunning, ReactorThreads,
};

// Ports ConnectionPoolTests.test_unstartedClose: on a reactor that is not
// running, call_when_running registers an after/startup trigger visible in
// triggers(); removing it (the pool's close) leaves none, and startup then
// does not run it.
#[test]
fn test_unstarted_close() {
    let fake = FakeReactor::new(false);
    let events = Events::new();
    let id = fake
        .call_when_running(events.pusher("pool._start"))
        .expect("not running: a trigger is registered");
    assert_eq!((id.phase(), id.event()), (Phase::After, "startup"));
    assert_eq!(fake.triggers(), vec![id.clone()]);
    assert!(events.get().is_empty());
    fake.remove_system_event_trigger(&id).unwrap();
    assert!(fake.triggers().is_empty());
    fake.fire_startup();
    assert!(events.get().is_empty());
}

// Ports ConnectionPoolTests.test_startedClose: on a running reactor,
// call_when_running runs at once and returns None; the pool's during/shutdown
// trigger is the only one recorded, and removing it leaves none, so stopping
// does not run it.
#[test]
fn test_started_close() {
    let fake = FakeReactor::new(true);
    let events = Events::new();
    assert!(fake
        .call_when_running(events.pusher("pool._start"))
        .is_none());
    assert_eq!(events.get(), ["pool._start"]);
    assert!(fake.triggers().is_empty());
    let id =
        fake.add_system_event_trigger(Phase::During, "shutdown", events.pusher("pool.finalClose"));
    assert_eq!(fake.triggers(), vec![id.clone()]);
    fake.remove_system_event_trigger(&id).unwrap();
    assert!(fake.triggers().is_empty());
    fake.stop().unwrap();
    assert_eq!(events.get(), ["pool._start"]);
}

// No direct Twisted test; the EventReactor's `triggers` list: every trigger
// registered and not yet run, in registration order, across events and
// phases; running an event removes its triggers from the list.
#[test]
fn triggers_lists_pending_triggers_in_registration_order() {
    let fake = FakeReactor::new(false);
    let a = fake.add_system_event_trigger(Phase::After, "shutdown", || ());
    let b = fake.call_when_running(|| ()).unwrap();
    let c = fake.add_system_event_trigger(Phase::Before, "custom", || ());
    assert_eq!(fake.triggers(), vec![a.clone(), b, c.clone()]);
    fake.fire_startup();
    assert_eq!(fake.triggers(), vec![a, c]);
}

// No direct Twisted test; `ReactorBase.startRunning`, `stop` and `mainLoop` startup rules on the fake:
// fire_startup runs before-startup with `running` false and flips it to true
// when the during phase starts; afterwards call_when_running is synchronous.
#[test]
fn fire_startup_flips_running_in_during() {
    let fake = FakeReactor::new(false);
    let seen = Events::new();
    for (phase, name) in [
        (Phase::Before, "before"),
        (Phase::During, "during"),
        (Phase::After, "after"),
    ] {
        let (f, s) = (fake.clone(), seen.clone());
        fake.add_system_event_trigger(phase, "startup", move || s.push((name, f.running())));
    }
    let (f, s) = (fake.clone(), seen.clone());
    fake.call_when_running(move || s.push(("call_when_running", f.running())));
    assert!(!fake.running());
    fake.fire_startup();
    assert!(fake.running());
    assert_eq!(
        seen.get(),
        [
            ("before", false),
            ("during", true),
            ("after", true),
            ("call_when_running", true)
        ]
    );
    let events = Events::new();
    assert!(fake.call_when_running(events.pusher("now")).is_none());
    assert_eq!(events.get(), ["now"]);
}

// No direct Twisted test; `ReactorBase.startRunning`, `stop` and `mainLoop` with a before-startup Deferred on the
// fake: `running` flips only when it fires.
#[test]
fn fire_startup_waits_for_before_deferred() {
    let fake = FakeReactor::new(false);
    let (d, fire) = Deferred::<()>::new();
    fake.add_system_event_trigger(Phase::Before, "startup", move || d);
    fake.fire_startup();
    assert!(!fake.running());
    fire.callback(()).unwrap();
    assert!(fake.running());
}

// No direct Twisted test; `ReactorBase.startRunning`, `stop` and `mainLoop` shutdown rules on the fake: stop()
// fires shutdown (here at once), `running` turns false when its during phase
// starts, and stop() when not running, or a second time, is ReactorNotRunning.
#[test]
fn stop_fires_shutdown_and_flips_running() {
    assert_eq!(FakeReactor::new(false).stop(), Err(ReactorNotRunning));

    let fake = FakeReactor::new(true);
    let seen = Events::new();
    for (phase, name) in [
        (Phase::Before, "before"),
        (Phase::During, "during"),
        (Phase::After, "after"),
    ] {
        let (f, s) = (fake.clone(), seen.clone());
        fake.add_system_event_trigger(phase, "shutdown", move || s.push((name, f.running())));
    }
    fake.stop().unwrap();
    assert_eq!(
        seen.get(),
        [("before", true), ("during", false), ("after", false)]
    );
    assert!(!fake.running());
    assert_eq!(fake.stop(), Err(ReactorNotRunning));
    // Through the ReactorCore trait too.
    assert_eq!(ReactorCore::stop(&fake), Err(ReactorNotRunning));
}

// No direct Twisted test; the fake's `running` can be set directly, and the
// constructor's flag is what running() reports.
#[test]
fn set_running() {
    let fake = FakeReactor::new(true);
    assert!(fake.running());
    fake.set_running(false);
    assert!(!fake.running());
    assert!(fake.call_when_running(|| ()).is_some());
}

// No direct Twisted test; Twisted's test `NonThreadPool`: an inline pool runs
// the job synchronously, but its result reaches the Deferred only on a later
// turn (pump), for successes and failures alike.
#[test]
fn pump_delivers_inline_pool_results_on_later_turn() {
    let fake = FakeReactor::new(true);
    let pool = fake.new_thread_pool(1, 1, "inline").unwrap();
    assert_eq!(pool.mode(), PoolMode::Inline);
    let ran = Arc::new(AtomicUsize::new(0));
    let r = Arc::clone(&ran);
    let ok = defer_to_thread_pool(&fake, &pool, move || {
        r.fetch_add(1, Ordering::SeqCst);
        Ok(5)
    });
    let err: Deferred<u32> = defer_to_thread_pool(&fake, &pool, || Err(Failure::msg("job failed")));
    assert_eq!(ran.load(Ordering::SeqCst), 1, "the inline job ran at once");
    assert!(!ok.has_result(), "delivered synchronously");
    assert!(!err.has_result(), "delivered synchronously");
    assert_eq!(fake.pump(), 2);
    assert_eq!(ok.into_result().expect("delivered").unwrap(), 5);
    let failure = err.into_result().expect("delivered").unwrap_err();
    assert_eq!(failure.error_message(), "job failed");
    assert_eq!(fake.pump(), 0);
}

// No direct Twisted test; the fake's default pool (getThreadPool) is inline
// too, so defer_to_thread behaves the same way.
#[test]
fn defer_to_thread_on_fake_reactor() {
    let fake = FakeReactor::new(true);
    let d = defer_to_thread(&fake, || Ok("done"));
    assert!(!d.has_result());
    fake.pump();
    assert_eq!(d.into_result().expect("delivered").unwrap(), "done");
    assert_eq!(fake.get_thread_pool().max(), 10);
}

// No direct Twisted test; PoolMode::Manual: a job waits until run_jobs(), and
// its result still waits for a turn.
#[test]
fn manual_pool_runs_jobs_on_run_jobs() {
    let fake = FakeReactor::with_pool_mode(true, PoolMode::Manual);
    let pool = fake.new_thread_pool(1, 1, "manual").unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = Arc::clone(&ran);
    let d = defer_to_thread_pool(&fake, &pool, move || {
        r.fetch_add(1, Ordering::SeqCst);
        Ok(7)
    });
    assert_eq!(fake.pump(), 0);
    assert_eq!(ran.load(Ordering::SeqCst), 0, "ran before run_jobs");
    assert_eq!(pool.q_size(), 1);
    assert_eq!(fake.run_jobs(), 1);
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    assert!(!d.has_result(), "delivered before a turn");
    assert_eq!(fake.pump(), 1);
    assert_eq!(d.into_result().expect("delivered").unwrap(), 7);
    assert_eq!(fake.run_jobs(), 0);
}

// No direct Twisted test; run_until_idle alternates jobs and turns until
// nothing is left, here a job whose result callback submits a second job.
#[test]
fn run_until_idle_runs_chained_jobs() {
    let fake = FakeReactor::with_pool_mode(true, PoolMode::Manual);
    let pool = fake.new_thread_pool(1, 1, "manual").unwrap();
    let out = Rc::new(Cell::new(None));
    let (f, p, o) = (fake.clone(), pool.clone(), Rc::clone(&out));
    let _ = defer_to_thread_pool(&fake, &pool, || Ok(20)).add_callback(move |a: u32| {
        let _ =
            defer_to_thread_pool(&f, &p, move || Ok(a + 22)).add_callback(move |b| o.set(Some(b)));
    });
    assert_eq!(out.get(), None);
    // Two jobs and two deliveries.
    assert_eq!(fake.run_until_idle(), 4);
    assert_eq!(out.get(), Some(42));
    assert_eq!(fake.run_until_idle(), 0);
}

// No direct Twisted test; `defer.ensureDeferred` and `Deferred.__await__` (ensureDeferred starts the
// coroutine at once) on the fake: a future awaiting a Deferred that fires
// later completes once the fake takes a turn.
#[test]
fn ensure_deferred_awaits_deferred_fired_later() {
    let fake = FakeReactor::new(true);
    let (d, fire) = Deferred::<u32>::new();
    let started = Rc::new(Cell::new(false));
    let s = Rc::clone(&started);
    let out = fake.ensure_deferred(async move {
        s.set(true);
        let v = d.await?;
        Ok(v + 1)
    });
    assert!(started.get(), "the future is polled at once");
    assert!(!out.has_result());
    fire.callback(41).unwrap();
    // The wakeup goes through the reactor's queue: one turn delivers it.
    fake.run_until_idle();
    assert_eq!(out.into_result().expect("finished").unwrap(), 42);
}

// No direct Twisted test; a future that finishes on its first poll gives an
// already-fired Deferred, and a failing one a failed Deferred.
#[test]
fn ensure_deferred_ready_future_fires_at_once() {
    let fake = FakeReactor::new(true);
    let ok = fake.ensure_deferred(async { Ok("ready") });
    assert_eq!(ok.into_result().expect("fired at once").unwrap(), "ready");
    let err = fake.ensure_deferred(async { Err::<(), _>(Failure::msg("nope")) });
    let failure = err.into_result().expect("fired at once").unwrap_err();
    assert_eq!(failure.error_message(), "nope");
}

// No direct Twisted test; call_from_thread on the fake waits for a turn, and a
// call queued during a turn waits for the next one (`ReactorBase.callFromThread` and `runUntilCurrent`).
#[test]
fn call_from_thread_waits_for_pump() {
    let fake = FakeReactor::new(true);
    let remote = fake.remote();
    let (outer, nested) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (o, n, again) = (Arc::clone(&outer), Arc::clone(&nested), remote.clone());
    std::thread::spawn(move || {
        remote.call_from_thread(move || {
            o.fetch_add(1, Ordering::SeqCst);
            again.call_from_thread(move || {
                n.fetch_add(1, Ordering::SeqCst);
            });
        });
    })
    .join()
    .unwrap();
    assert_eq!(outer.load(Ordering::SeqCst), 0);
    assert_eq!(fake.pump(), 1);
    assert_eq!(outer.load(Ordering::SeqCst), 1);
    assert_eq!(
        nested.load(Ordering::SeqCst),
        0,
        "nested call ran in the same turn"
    );
    assert_eq!(fake.pump(), 1);
    assert_eq!(nested.load(Ordering::SeqCst), 1);
    assert_eq!(fake.pump(), 0);
}

// No direct Twisted test; the fake's timers run on its Clock: advance() moves
// the clock, runs due calls, then takes a turn.
#[test]
fn advance_runs_timers_on_fake_clock() {
    let fake = FakeReactor::new(true);
    let events = Events::new();
    let call = fake.call_later(Duration::from_secs(5), events.pusher("timer"));
    assert_eq!(call.get_time(), 5.0);
    fake.advance(4.0);
    assert!(events.get().is_empty());
    assert_eq!(fake.clock().seconds(), 4.0);
    fake.advance(1.0);
    assert_eq!(events.get(), ["timer"]);
    assert!(fake.clock().get_delayed_calls().is_empty());
}
