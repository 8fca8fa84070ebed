//! Shutdown holds (`ReactorCore::hold_shutdown`) and the `after` phase of
//! `shutdown`. Twisted's `ConnectionPool.finalClose` blocks the `during`
//! phase until the pool has closed, so `after`/`shutdown` triggers see it
//! closed; here nothing blocks the loop, so a hold taken in `during` delays
//! the `after` phase (the loop keeps turning meanwhile) until it is dropped.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use reactor::prelude::*;
use reactor::testing::FakeReactor;
use reactor::{Phase, Reactor, ReactorCore, ShutdownHold};
use test_support::reactor::run_bounded;

type Log = Rc<RefCell<Vec<String>>>;

#[test]
fn a_hold_taken_during_shutdown_delays_the_after_phase() {
    let reactor = Reactor::new().unwrap();
    let log: Log = Rc::default();
    let (r, l) = (reactor.clone(), log.clone());
    reactor.add_system_event_trigger(Phase::During, "shutdown", move || {
        l.borrow_mut().push("during".into());
        let hold = r.hold_shutdown();
        let l2 = l.clone();
        // Released two timer turns later: the loop must keep turning.
        let r2 = r.clone();
        r.call_later(Duration::from_millis(1), move || {
            l2.borrow_mut().push("timer 1".into());
            let l3 = l2.clone();
            r2.call_later(Duration::from_millis(1), move || {
                l3.borrow_mut().push("release".into());
                drop(hold);
            });
        });
    });
    let l = log.clone();
    reactor.add_system_event_trigger(Phase::After, "shutdown", move || {
        l.borrow_mut().push("after".into());
    });
    let r = reactor.clone();
    reactor.call_when_running(move || r.stop().unwrap());
    run_bounded(&reactor).expect("the reactor runs");
    assert_eq!(*log.borrow(), ["during", "timer 1", "release", "after"]);
}

#[test]
fn without_holds_after_follows_during_at_once() {
    let reactor = Reactor::new().unwrap();
    let log: Log = Rc::default();
    for phase in [Phase::During, Phase::After] {
        let l = log.clone();
        reactor.add_system_event_trigger(phase, "shutdown", move || {
            l.borrow_mut().push(phase.to_string());
        });
    }
    let r = reactor.clone();
    reactor.call_when_running(move || r.stop().unwrap());
    run_bounded(&reactor).expect("the reactor runs");
    assert_eq!(*log.borrow(), ["during", "after"]);
}

#[test]
fn fake_reactor_after_phase_waits_for_holds_until_a_pump() {
    let reactor = FakeReactor::new(true);
    let log: Log = Rc::default();
    let hold: Rc<RefCell<Option<ShutdownHold>>> = Rc::default();
    let (r, h, l) = (reactor.clone(), hold.clone(), log.clone());
    reactor.add_system_event_trigger(Phase::During, "shutdown", move || {
        l.borrow_mut().push("during".into());
        *h.borrow_mut() = Some(ReactorCore::hold_shutdown(&r));
    });
    let l = log.clone();
    reactor.add_system_event_trigger(Phase::After, "shutdown", move || {
        l.borrow_mut().push("after".into());
    });
    reactor.stop().unwrap();
    assert_eq!(*log.borrow(), ["during"]);
    reactor.pump();
    assert_eq!(*log.borrow(), ["during"], "still held");
    hold.borrow_mut().take();
    assert_eq!(*log.borrow(), ["during"], "runs on a turn, not inside drop");
    reactor.pump();
    assert_eq!(*log.borrow(), ["during", "after"]);
}

/// The default reactor (Twisted's global `reactor`): the thread's one live
/// reactor, so code that does not name one uses the reactor the program
/// runs; ambiguous when several are alive and none was installed.
#[test]
fn default_reactor_is_the_threads_one_live_reactor() {
    std::thread::spawn(|| {
        let a = Reactor::new().unwrap();
        assert!(Reactor::ptr_eq(&reactor::default_reactor(), &a));
        let b = Reactor::new().unwrap();
        let e = reactor::try_default_reactor().expect_err("two live reactors");
        assert_eq!(e.count, 2);
        drop(a);
        assert!(Reactor::ptr_eq(
            &reactor::try_default_reactor().unwrap(),
            &b
        ));
        drop(b);
        // None left: one is made and kept as the default.
        let made = reactor::default_reactor();
        assert!(Reactor::ptr_eq(&made, &reactor::default_reactor()));
        // The one made on demand stays alive (something may be bound to it):
        // a reactor the program makes now makes the default ambiguous.
        let _c = Reactor::new().unwrap();
        assert_eq!(
            reactor::try_default_reactor().expect_err("ambiguous").count,
            2
        );
        // An installed reactor wins over everything.
        reactor::install_reactor(made.clone());
        assert!(Reactor::ptr_eq(
            &reactor::try_default_reactor().unwrap(),
            &made
        ));
    })
    .join()
    .unwrap();
}
