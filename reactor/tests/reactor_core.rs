//! `run`, `stop`, `crash`, `iterate` and the startup/shutdown events of the
//! real reactor: ports of Twisted's `SystemEventTestsBuilder`
//! (`src/twisted/internet/test/test_core.py`), following Twisted's
//! `ReactorBase` (`twisted.internet.base`): `startRunning`, `stop`, `crash`,
//! `iterate`, and the `startup`/`shutdown` events run as `_ThreePhaseEvent`s.
//!
//! Every run is bounded: `run_bounded` schedules a timed call that crashes
//! the reactor (and fails the test) if it is still running after
//! `test_support::TIMEOUT`, as trial's `runReactor` does.

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::mpsc;
use std::time::Duration;

use common::Events;
use deferred::Deferred;
use reactor::prelude::*;
use reactor::{Phase, Reactor, ReactorNotRunning, RunError};
use test_support::logs::{capture_logs, containing};
use test_support::reactor::run_bounded;
use tracing::Level;

fn reactor() -> Reactor {
    Reactor::new().expect("a reactor")
}

/// A closure that stops `r`, which must be running.
fn stopper(r: &Reactor) -> impl FnOnce() + 'static {
    let r = r.clone();
    move || r.stop().expect("the reactor is running")
}

// Ports SystemEventTestsBuilder.test_stopWhenNotStarted.
#[test]
fn test_stop_when_not_started() {
    let r = reactor();
    assert_eq!(r.stop(), Err(ReactorNotRunning));
    assert_eq!(
        ReactorNotRunning.to_string(),
        "Can't stop reactor that isn't running."
    );
    assert!(!r.running());
}

// Ports SystemEventTestsBuilder.test_stopWhenAlreadyStopped.
#[test]
fn test_stop_when_already_stopped() {
    let r = reactor();
    r.call_when_running(stopper(&r));
    run_bounded(&r).unwrap();
    assert_eq!(r.stop(), Err(ReactorNotRunning));
}

// Ports SystemEventTestsBuilder.test_stopWhenAlreadyStopped for a second stop
// while the first has not taken effect yet.
#[test]
fn test_stop_when_already_stopped_same_turn() {
    let r = reactor();
    let second = Rc::new(Cell::new(None));
    let (r2, s) = (r.clone(), Rc::clone(&second));
    r.call_when_running(move || {
        r2.stop().unwrap();
        s.set(Some(r2.stop()));
    });
    run_bounded(&r).unwrap();
    assert_eq!(second.get(), Some(Err(ReactorNotRunning)));
}

// Ports SystemEventTestsBuilder.test_callWhenRunningOrder.
#[test]
fn test_call_when_running_order() {
    let r = reactor();
    let events = Events::new();
    r.call_when_running(events.pusher("first"));
    r.call_when_running(events.pusher("second"));
    r.call_when_running(stopper(&r));
    assert!(events.get().is_empty());
    run_bounded(&r).unwrap();
    assert_eq!(events.get(), ["first", "second"]);
}

// Ports SystemEventTestsBuilder.test_runningForStartupEvents.
#[test]
fn test_running_for_startup_events() {
    let r = reactor();
    let state = Events::new();
    for (phase, name) in [
        (Phase::Before, "before"),
        (Phase::During, "during"),
        (Phase::After, "after"),
    ] {
        let (r2, s) = (r.clone(), state.clone());
        r.add_system_event_trigger(phase, "startup", move || s.push((name, r2.running())));
    }
    r.call_when_running(stopper(&r));
    assert!(state.get().is_empty());
    run_bounded(&r).unwrap();
    assert_eq!(
        state.get(),
        [("before", false), ("during", true), ("after", true)]
    );
}

// Ports SystemEventTestsBuilder.test_stopShutDownEvents: all three shutdown
// phases run before run() returns.
#[test]
fn test_stop_shut_down_events() {
    let r = reactor();
    let events = Events::new();
    for (phase, name) in [
        (Phase::Before, "before"),
        (Phase::During, "during"),
        (Phase::After, "after"),
    ] {
        r.add_system_event_trigger(phase, "shutdown", events.pusher((name, "shutdown")));
    }
    r.call_when_running(stopper(&r));
    run_bounded(&r).unwrap();
    assert_eq!(
        events.get(),
        [
            ("before", "shutdown"),
            ("during", "shutdown"),
            ("after", "shutdown")
        ]
    );
    assert!(!r.running());
}

// Ports SystemEventTestsBuilder.test_stopShutDownEvents with a before-shutdown
// trigger that returns a Deferred: the loop keeps running while it waits (a
// timed call fires it), and during/after still run before run() returns.
#[test]
fn test_stop_shut_down_events_asynchronous_before() {
    let r = reactor();
    let events = Events::new();
    let (r2, e) = (r.clone(), events.clone());
    r.add_system_event_trigger(Phase::Before, "shutdown", move || {
        e.push("before");
        let (d, fire) = Deferred::<()>::new();
        let e2 = e.clone();
        r2.call_later(Duration::ZERO, move || {
            e2.push("timer while waiting");
            fire.callback(()).unwrap();
        });
        d
    });
    r.add_system_event_trigger(Phase::During, "shutdown", events.pusher("during"));
    r.add_system_event_trigger(Phase::After, "shutdown", events.pusher("after"));
    r.call_when_running(stopper(&r));
    run_bounded(&r).unwrap();
    assert_eq!(
        events.get(),
        ["before", "timer while waiting", "during", "after"]
    );
}

// Ports SystemEventTestsBuilder.test_shutdownFiresTriggersAsynchronously.
#[test]
fn test_shutdown_fires_triggers_asynchronously() {
    let r = reactor();
    let events = Events::new();
    r.add_system_event_trigger(Phase::Before, "shutdown", events.pusher("before shutdown"));
    let (r2, e) = (r.clone(), events.clone());
    r.call_when_running(move || {
        r2.stop().unwrap();
        e.push("stopped");
    });
    assert!(events.get().is_empty());
    run_bounded(&r).unwrap();
    assert_eq!(events.get(), ["stopped", "before shutdown"]);
}

// Ports SystemEventTestsBuilder.test_shutdownFiresTriggersAsynchronously,
// turn by turn: after stop() the shutdown event fires at the end of the next
// turn, not inside stop().
#[test]
fn test_shutdown_fires_triggers_on_next_turn() {
    let r = reactor();
    let events = Events::new();
    r.add_system_event_trigger(Phase::Before, "shutdown", events.pusher("before shutdown"));
    r.start_running().unwrap();
    assert!(r.running());
    r.stop().unwrap();
    assert!(events.get().is_empty(), "shutdown fired inside stop()");
    r.iterate(Duration::ZERO);
    assert_eq!(events.get(), ["before shutdown"]);
    assert!(!r.running());
}

// Ports SystemEventTestsBuilder.test_multipleRun.
#[test]
fn test_multiple_run() {
    let r = reactor();
    let events = Events::new();
    let (r2, e) = (r.clone(), events.clone());
    r.call_when_running(move || {
        assert_eq!(
            r2.run(),
            Err(RunError::AlreadyRunning(reactor::ReactorAlreadyRunning))
        );
        e.push("tested");
    });
    r.call_when_running(stopper(&r));
    run_bounded(&r).unwrap();
    assert_eq!(events.get(), ["tested"]);
}

// Ports SystemEventTestsBuilder.test_runWithAsynchronousBeforeStartupTrigger:
// the loop runs while the before-startup Deferred is pending (a timed call
// fires it, seeing `running` false), and during/after happen when it fires.
#[test]
fn test_run_with_asynchronous_before_startup_trigger() {
    let r = reactor();
    let events = Events::new();
    let (r2, e) = (r.clone(), events.clone());
    r.add_system_event_trigger(Phase::Before, "startup", move || {
        e.push("trigger".to_owned());
        let (d, fire) = Deferred::<()>::new();
        let (r3, e2) = (r2.clone(), e.clone());
        let d = d.add_callback(move |()| {
            e2.push(format!("callback, running={}", r3.running()));
            // Not running yet, so this registers an after-startup trigger,
            // which runs in this same firing.
            assert!(r3.call_when_running(stopper(&r3)).is_some());
        });
        let (r3, e3) = (r2.clone(), e.clone());
        r2.call_later(Duration::ZERO, move || {
            e3.push(format!("timer, running={}", r3.running()));
            fire.callback(()).unwrap();
        });
        d
    });
    run_bounded(&r).unwrap();
    assert_eq!(
        events.get(),
        ["trigger", "timer, running=false", "callback, running=false"]
    );
}

// Ports SystemEventTestsBuilder.test_iterate: iterate(0) does not block, even
// with a far-away timed call pending, and runs what is due. A watchdog thread
// wakes the loop if it ever blocks, so the test cannot hang.
#[test]
fn test_iterate() {
    let r = reactor();
    let events = Events::new();
    let far = r.call_later(Duration::from_secs(3600), events.pusher("far"));
    r.call_later(Duration::ZERO, events.pusher("due"));
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let remote = r.remote();
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(test_support::TIMEOUT).is_err() {
            remote.call_from_thread(|| ());
            return true;
        }
        false
    });
    r.iterate(Duration::ZERO);
    done_tx.send(()).unwrap();
    let woke = watchdog.join().unwrap();
    assert!(!woke, "iterate(0) blocked until the watchdog woke it");
    assert_eq!(events.get(), ["due"]);
    assert!(far.active());
    far.cancel().unwrap();
}

// Ports SystemEventTestsBuilder.test_crash: crash() leaves the loop without
// firing shutdown triggers.
#[test]
fn test_crash() {
    let r = reactor();
    let events = Events::new();
    let before = r.add_system_event_trigger(
        Phase::Before,
        "shutdown",
        events.pusher(("before", "shutdown")),
    );
    let r2 = r.clone();
    r.call_when_running(move || {
        let r3 = r2.clone();
        r2.call_later(Duration::ZERO, move || r3.crash());
    });
    run_bounded(&r).unwrap();
    assert!(!r.running());
    assert!(
        events.get().is_empty(),
        "shutdown triggers invoked but they should not have been"
    );
    assert_eq!(
        r.system_event_triggers("shutdown", Phase::Before),
        vec![before]
    );
}

// Ports SystemEventTestsBuilder.test_runAfterCrash: run() works again after
// crash(), startup fires again, and `running` is true again.
#[test]
fn test_run_after_crash() {
    let r = reactor();
    let events = Events::new();
    let (r2, e) = (r.clone(), events.clone());
    r.call_when_running(move || {
        e.push("crash".to_owned());
        r2.crash();
    });
    run_bounded(&r).unwrap();
    assert!(!r.running());
    let (r2, e) = (r.clone(), events.clone());
    r.call_when_running(move || {
        e.push(format!("stop, running={}", r2.running()));
        r2.stop().unwrap();
    });
    let e = events.clone();
    r.add_system_event_trigger(Phase::Before, "startup", move || {
        e.push("before startup again".to_owned());
    });
    run_bounded(&r).unwrap();
    assert_eq!(
        events.get(),
        ["crash", "before startup again", "stop, running=true"]
    );
}

// Ports SystemEventTestsBuilder.test_runAfterStop: run() after stop() is
// NotRestartable, both from an after-shutdown trigger and after run returned.
#[test]
fn test_run_after_stop() {
    let r = reactor();
    let events = Events::new();
    r.call_when_running(stopper(&r));
    let (r2, e) = (r.clone(), events.clone());
    r.add_system_event_trigger(Phase::After, "shutdown", move || {
        assert_eq!(
            r2.run(),
            Err(RunError::NotRestartable(reactor::ReactorNotRestartable))
        );
        e.push("tested");
    });
    run_bounded(&r).unwrap();
    assert_eq!(events.get(), ["tested"]);
    assert_eq!(
        r.run(),
        Err(RunError::NotRestartable(reactor::ReactorNotRestartable))
    );
}

// No direct Twisted test; Twisted's `ReactorBase` (`twisted.internet.base`): call_when_running on a running
// reactor runs the function synchronously and returns None.
#[test]
fn call_when_running_when_running_runs_synchronously() {
    let r = reactor();
    let events = Events::new();
    let (r2, e) = (r.clone(), events.clone());
    r.call_when_running(move || {
        e.push("outer start");
        let id = r2.call_when_running(e.pusher("inner"));
        assert!(id.is_none());
        e.push("outer end");
        r2.stop().unwrap();
    });
    run_bounded(&r).unwrap();
    assert_eq!(events.get(), ["outer start", "inner", "outer end"]);
}

// No direct Twisted test; Twisted's `ReactorBase` (`twisted.internet.base`): before running, call_when_running
// registers an after/startup trigger and returns its id, which can remove it.
#[test]
fn call_when_running_before_running_registers_trigger() {
    let r = reactor();
    let events = Events::new();
    let id = r
        .call_when_running(events.pusher("removed"))
        .expect("not running: registered");
    assert_eq!(id.phase(), Phase::After);
    assert_eq!(id.event(), "startup");
    assert_eq!(
        r.system_event_triggers("startup", Phase::After),
        vec![id.clone()]
    );
    r.remove_system_event_trigger(&id).unwrap();
    r.call_when_running(stopper(&r));
    run_bounded(&r).unwrap();
    assert!(events.get().is_empty());
}

// No direct Twisted test; `ReactorBase.startRunning`, `stop` and `mainLoop`: run() logs "Main loop
// terminated." on the way out.
#[test]
fn run_logs_main_loop_terminated() {
    let r = reactor();
    r.call_when_running(stopper(&r));
    let (result, logs) = capture_logs(|| run_bounded(&r));
    result.unwrap();
    let terminated = containing(&logs, "Main loop terminated.");
    assert_eq!(terminated.len(), 1, "{logs:?}");
    assert_eq!(terminated[0].level, Level::INFO);
}

// No direct Twisted test; `ReactorBase.startRunning`, `stop` and `mainLoop`: `running` is false before run, true
// while running, false after stop.
#[test]
fn running_flag_follows_the_lifecycle() {
    let r = reactor();
    let seen = Rc::new(RefCell::new(Vec::new()));
    assert!(!r.running());
    let (r2, s) = (r.clone(), Rc::clone(&seen));
    r.call_when_running(move || {
        s.borrow_mut().push(r2.running());
        r2.stop().unwrap();
        // stop() only asks; the reactor is still running until shutdown.
        s.borrow_mut().push(r2.running());
    });
    let (r2, s) = (r.clone(), Rc::clone(&seen));
    r.add_system_event_trigger(Phase::After, "shutdown", move || {
        s.borrow_mut().push(r2.running());
    });
    run_bounded(&r).unwrap();
    assert_eq!(*seen.borrow(), [true, true, false]);
    assert!(!r.running());
}
