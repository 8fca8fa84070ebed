//! Timed calls: ports of Twisted's `TimeTests` and `DelayedTests`
//! (`src/twisted/test/test_internet.py`) and the `DelayedCallMixin` tests
//! (`src/twisted/internet/test/test_base.py`), following Twisted's `DelayedCall` and `ReactorBase.callLater`.
//!
//! Kept whole although over 600 lines: it ports Twisted's `TimeTests`,
//! `DelayedTests` and `DelayedCallMixin` tests and reads beside them.
//!
//! Real-reactor tests drive the loop with `iterate` or a bounded `run`;
//! tests that need exact times use `testing::Clock`, which shares the
//! `DelayedCall` implementation with the real reactor.

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use common::Events;
use deferred::Deferred;
use reactor::prelude::*;
use reactor::testing::Clock;
use reactor::{monotonic_seconds, DelayedCall, DelayedCallError, Reactor};
use test_support::logs::{capture_logs, containing};
use test_support::reactor::run_bounded;
use test_support::TIMEOUT as SAFETY_NET;
use tracing::Level;

fn reactor() -> Reactor {
    Reactor::new().expect("a reactor")
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Splits `<DelayedCall 0x.. [Ns] called=C cancelled=X>` into the address,
/// `N` and the rest (`called=C cancelled=X`), checking the fixed parts.
fn parse_delayed_call_str(s: &str) -> (String, f64, String) {
    let body = s
        .strip_prefix("<DelayedCall 0x")
        .and_then(|b| b.strip_suffix('>'))
        .unwrap_or_else(|| panic!("unexpected DelayedCall format: {s}"));
    let (addr, rest) = body.split_once(" [").expect("' [' after the address");
    assert!(
        !addr.is_empty() && addr.chars().all(|c| c.is_ascii_hexdigit()),
        "address in {s}"
    );
    let (n, flags) = rest.split_once("s] ").expect("'s] ' after the time");
    (
        addr.to_owned(),
        n.parse().expect("a number of seconds"),
        flags.to_owned(),
    )
}

// ---------------------------------------------------------------------------
// TimeTests
// ---------------------------------------------------------------------------

// Ports TimeTests.test_seconds: seconds() is a number; here, also monotonic
// and on the process-wide monotonic clock.
#[test]
fn test_seconds() {
    let r = reactor();
    let before = monotonic_seconds();
    let a = r.seconds();
    let b = r.seconds();
    let after = monotonic_seconds();
    assert!(a.is_finite() && a >= 0.0);
    assert!(
        before <= a && a <= b && b <= after,
        "{before} {a} {b} {after}"
    );
}

// Ports TimeTests.test_callLaterUsesReactorSecondsInDelayedCall.
#[test]
fn test_call_later_uses_reactor_seconds_in_delayed_call() {
    let clock = Clock::new();
    clock.advance(100.0);
    let call = clock.call_later(secs(5.0), || ());
    assert_eq!(call.get_time(), 105.0);

    let r = reactor();
    let before = r.seconds();
    let call = r.call_later(secs(5.0), || ());
    let after = r.seconds();
    assert!(
        before + 5.0 <= call.get_time() && call.get_time() <= after + 5.0,
        "{before} {} {after}",
        call.get_time()
    );
    call.cancel().unwrap();
}

// Ports TimeTests.test_callLaterUsesReactorSecondsAsDelayedCallSecondsFactory:
// the call measures "now" with its scheduler's clock (visible in its string).
#[test]
fn test_call_later_uses_reactor_seconds_as_delayed_call_seconds_factory() {
    let clock = Clock::new();
    clock.advance(100.0);
    let call = clock.call_later(secs(5.0), || ());
    assert_eq!(parse_delayed_call_str(&format!("{call:?}")).1, 5.0);
    clock.advance(2.0);
    assert_eq!(parse_delayed_call_str(&format!("{call:?}")).1, 3.0);
}

// Ports TimeTests.test_callLater: a timed call really calls its function.
#[test]
fn test_call_later() {
    let r = reactor();
    let (d, fire) = Deferred::<&'static str>::new();
    let got = Rc::new(RefCell::new(None));
    let (g, r2) = (Rc::clone(&got), r.clone());
    let _ = d.add_callback(move |v| {
        *g.borrow_mut() = Some(v);
        r2.stop().unwrap();
    });
    r.call_later(Duration::ZERO, move || fire.callback("hello").unwrap());
    run_bounded(&r).unwrap();
    assert_eq!(*got.borrow(), Some("hello"));
}

// Ports TimeTests.test_callLaterReset.
#[test]
fn test_call_later_reset() {
    let r = reactor();
    let call = r.call_later(secs(2.0), || ());
    let orig = call.get_time();
    call.reset(secs(1.0)).unwrap();
    assert_ne!(call.get_time(), orig);
    assert!(call.get_time() < orig);
    call.cancel().unwrap();
}

// Ports TimeTests.test_cancelDelayedCall: a cancelled call never runs (checked
// two turns later).
#[test]
fn test_cancel_delayed_call() {
    let r = reactor();
    let called = Rc::new(Cell::new(false));
    let c = Rc::clone(&called);
    let call = r.call_later(Duration::ZERO, move || c.set(true));
    call.cancel().unwrap();
    assert!(!call.active() && call.cancelled() && !call.called());
    let checked = Rc::new(Cell::new(None));
    let (r2, c, ch) = (r.clone(), Rc::clone(&called), Rc::clone(&checked));
    r.call_later(Duration::ZERO, move || {
        let r3 = r2.clone();
        r2.call_later(Duration::ZERO, move || {
            ch.set(Some(c.get()));
            r3.stop().unwrap();
        });
    });
    run_bounded(&r).unwrap();
    assert_eq!(checked.get(), Some(false));
}

// Ports TimeTests.test_cancelCancelledDelayedCall.
#[test]
fn test_cancel_cancelled_delayed_call() {
    let r = reactor();
    let call = r.call_later(Duration::ZERO, || ());
    call.cancel().unwrap();
    let err = call.cancel().unwrap_err();
    assert_eq!(err, DelayedCallError::AlreadyCancelled);
    assert_eq!(
        err.to_string(),
        "Tried to cancel an already-cancelled event."
    );
}

// Ports TimeTests.test_cancelCalledDelayedCallSynchronous: cancelling a call
// from inside its own function is AlreadyCalled.
#[test]
fn test_cancel_called_delayed_call_synchronous() {
    let r = reactor();
    let slot: Rc<RefCell<Option<DelayedCall>>> = Rc::new(RefCell::new(None));
    let result = Rc::new(Cell::new(None));
    let (s, res) = (Rc::clone(&slot), Rc::clone(&result));
    let call = r.call_later(Duration::ZERO, move || {
        let me = s.borrow_mut().take().expect("stored before it ran");
        res.set(Some(me.cancel()));
    });
    *slot.borrow_mut() = Some(call.clone());
    r.iterate(Duration::ZERO);
    let err = result.get().expect("the call ran").unwrap_err();
    assert_eq!(err, DelayedCallError::AlreadyCalled);
    assert_eq!(err.to_string(), "Tried to cancel an already-called event.");
    assert!(call.called() && !call.active());
}

// Ports TimeTests.test_cancelCalledDelayedCallAsynchronous: cancelling a call
// after it ran is AlreadyCalled.
#[test]
fn test_cancel_called_delayed_call_asynchronous() {
    let r = reactor();
    let slot: Rc<RefCell<Option<DelayedCall>>> = Rc::new(RefCell::new(None));
    let result = Rc::new(Cell::new(None));
    let (r2, s, res) = (r.clone(), Rc::clone(&slot), Rc::clone(&result));
    let call = r.call_later(Duration::ZERO, move || {
        let r3 = r2.clone();
        r2.call_later(Duration::ZERO, move || {
            let me = s.borrow_mut().take().expect("stored before it ran");
            res.set(Some(me.cancel()));
            r3.stop().unwrap();
        });
    });
    *slot.borrow_mut() = Some(call);
    run_bounded(&r).unwrap();
    assert_eq!(result.get(), Some(Err(DelayedCallError::AlreadyCalled)));
}

// Ports TimeTests.testCallLaterTime: getTime() is seconds() plus the delay.
#[test]
fn test_call_later_time() {
    let r = reactor();
    let before = r.seconds();
    let call = r.call_later(secs(10.0), || ());
    let after = r.seconds();
    assert!(before + 10.0 <= call.get_time() && call.get_time() <= after + 10.0);
    call.cancel().unwrap();
}

// Ports TimeTests.testDelayedCallStringification: the string works in every
// state and says which state it is.
#[test]
fn test_delayed_call_stringification() {
    let r = reactor();
    let call = r.call_later(Duration::ZERO, || ());
    let (_, n, flags) = parse_delayed_call_str(&format!("{call:?}"));
    assert!(n <= 0.0, "{n}");
    assert_eq!(flags, "called=0 cancelled=0");
    call.reset(secs(5.0)).unwrap();
    let (_, n, flags) = parse_delayed_call_str(&format!("{call:?}"));
    assert!(n > 4.0 && n <= 5.0, "{n}");
    assert_eq!(flags, "called=0 cancelled=0");
    call.cancel().unwrap();
    let (_, _, flags) = parse_delayed_call_str(&format!("{call:?}"));
    assert_eq!(flags, "called=0 cancelled=1");

    let ran = r.call_later(Duration::ZERO, || ());
    let inside = Rc::new(RefCell::new(String::new()));
    let slot: Rc<RefCell<Option<DelayedCall>>> = Rc::new(RefCell::new(None));
    let (s, i) = (Rc::clone(&slot), Rc::clone(&inside));
    let own = r.call_later(Duration::ZERO, move || {
        let me = s.borrow_mut().take().unwrap();
        *i.borrow_mut() = format!("{me:?}");
    });
    *slot.borrow_mut() = Some(own);
    r.iterate(Duration::ZERO);
    let (_, _, flags) = parse_delayed_call_str(&format!("{ran:?}"));
    assert_eq!(flags, "called=1 cancelled=0");
    // Inside its own function a call already counts as called.
    let (_, _, flags) = parse_delayed_call_str(&inside.borrow());
    assert_eq!(flags, "called=1 cancelled=0");
}

// Ports TimeTests.testDelayedCallSecondsOverride: the call uses its clock's
// time: made at 0 for 20 s, reset at 10 to 3 s from then, it is due at 13.
#[test]
fn test_delayed_call_seconds_override() {
    let clock = Clock::new();
    let call = clock.call_later(secs(20.0), || ());
    assert_eq!(call.get_time(), 20.0);
    clock.advance(10.0);
    call.reset(secs(3.0)).unwrap();
    assert_eq!(call.get_time(), 13.0);
}

// ---------------------------------------------------------------------------
// DelayedTests
// ---------------------------------------------------------------------------

/// Twisted's `DelayedTests` fixture: a table of live timers, each checked to be
/// listed by `get_delayed_calls` whenever one of them runs.
struct DelayedFixture {
    reactor: Reactor,
    timers: RefCell<Vec<(usize, DelayedCall)>>,
    counter: Cell<usize>,
    missing: RefCell<Vec<String>>,
    finished: Cell<bool>,
}

#[derive(Clone, Copy)]
enum TimerKind {
    Callback,
    AddCallback,
    Done,
}

impl DelayedFixture {
    fn check_timers(&self) {
        let listed = self.reactor.get_delayed_calls();
        for (tag, dc) in self.timers.borrow().iter() {
            if !listed.iter().any(|l| DelayedCall::ptr_eq(l, dc)) {
                self.missing
                    .borrow_mut()
                    .push(format!("timer {tag}: {dc:?}"));
            }
        }
        // Every listed call is pending and not cancelled.
        for l in &listed {
            if !l.active() {
                self.missing
                    .borrow_mut()
                    .push(format!("inactive listed: {l:?}"));
            }
        }
    }

    fn fired(self: &Rc<Self>, tag: usize, kind: TimerKind) {
        self.timers.borrow_mut().retain(|(t, _)| *t != tag);
        self.check_timers();
        match kind {
            TimerKind::Callback => {}
            TimerKind::AddCallback => {
                self.add_timer(15, TimerKind::Callback);
            }
            TimerKind::Done => {
                self.finished.set(true);
                self.reactor.stop().unwrap();
            }
        }
    }

    fn add_timer(self: &Rc<Self>, when: u64, kind: TimerKind) -> usize {
        let tag = self.counter.get();
        self.counter.set(tag + 1);
        let me = Rc::clone(self);
        let dc = self
            .reactor
            .call_later(Duration::from_millis(when * 10), move || {
                me.fired(tag, kind)
            });
        self.timers.borrow_mut().push((tag, dc));
        self.check_timers();
        tag
    }
}

// Ports DelayedTests.testGetDelayedCalls.
#[test]
fn test_get_delayed_calls() {
    let f = Rc::new(DelayedFixture {
        reactor: reactor(),
        timers: RefCell::new(Vec::new()),
        counter: Cell::new(0),
        missing: RefCell::new(Vec::new()),
        finished: Cell::new(false),
    });
    f.check_timers();
    f.add_timer(35, TimerKind::Done);
    f.add_timer(20, TimerKind::Callback);
    f.add_timer(30, TimerKind::Callback);
    let which = f.add_timer(29, TimerKind::Callback);
    f.add_timer(25, TimerKind::AddCallback);
    f.add_timer(26, TimerKind::Callback);

    let cancelled = {
        let mut timers = f.timers.borrow_mut();
        let pos = timers.iter().position(|(t, _)| *t == which).unwrap();
        timers.remove(pos).1
    };
    cancelled.cancel().unwrap();
    f.check_timers();
    assert!(!f
        .reactor
        .get_delayed_calls()
        .iter()
        .any(|l| DelayedCall::ptr_eq(l, &cancelled)));
    assert_eq!(f.reactor.get_delayed_calls().len(), 5);

    run_bounded(&f.reactor).unwrap();
    assert!(f.finished.get());
    assert!(f.missing.borrow().is_empty(), "{:?}", f.missing.borrow());
    // Only the timer added by the AddCallback timer may still be pending.
    for (_, dc) in f.timers.borrow().iter() {
        dc.cancel().unwrap();
    }
    assert!(f.reactor.get_delayed_calls().is_empty());
}

// Ports DelayedTests.test_active.
#[test]
fn test_active() {
    let r = reactor();
    let (d, fire) = Deferred::<bool>::new();
    let call = r.call_later(Duration::from_millis(10), move || {
        fire.callback(true).unwrap()
    });
    assert!(call.active());
    let seen = Rc::new(Cell::new(None));
    let (c, s, r2) = (call.clone(), Rc::clone(&seen), r.clone());
    let _ = d.add_callback(move |v| {
        s.set(Some((v, c.active())));
        r2.stop().unwrap();
    });
    run_bounded(&r).unwrap();
    assert_eq!(seen.get(), Some((true, false)));
}

// ---------------------------------------------------------------------------
// DelayedCallMixin (test_base.py)
// ---------------------------------------------------------------------------

// Ports DelayedCallMixin.test_str (and test_repr: Rust has one format): a call
// due at 12 seen at 1.5 renders as `[10.5s]`. The function and its arguments
// are not rendered (a closure has no printable name).
#[test]
fn test_str() {
    let clock = Clock::new();
    clock.advance(1.5);
    let call = clock.call_later(secs(10.5), || ());
    let s = format!("{call:?}");
    let (addr, n, flags) = parse_delayed_call_str(&s);
    assert_eq!(n, 10.5);
    assert_eq!(flags, "called=0 cancelled=0");
    assert_eq!(
        s,
        format!("<DelayedCall 0x{addr} [10.5s] called=0 cancelled=0>")
    );
    // Clones are the same call: same address.
    assert_eq!(format!("{:?}", call.clone()), s);
}

// Ports DelayedCallMixin.test_eq and test_ne: identity, through ptr_eq (the
// comparison operators test_lt/le/gt/ge have no Rust counterpart).
#[test]
fn test_eq_ne() {
    let clock = Clock::new();
    let zero = clock.call_later(Duration::ZERO, || ());
    let one = clock.call_later(secs(1.0), || ());
    assert!(DelayedCall::ptr_eq(&zero, &zero.clone()));
    assert!(!DelayedCall::ptr_eq(&zero, &one));
}

// ---------------------------------------------------------------------------
// Twisted's `DelayedCall` and `ReactorBase.callLater` rules without a Twisted test of their own
// ---------------------------------------------------------------------------

// No direct Twisted test; Twisted's `DelayedCall` and `ReactorBase.callLater`: due calls run in time order, ties
// in scheduling order.
#[test]
fn call_later_ordering() {
    let r = reactor();
    let events = Events::new();
    r.call_later(Duration::from_millis(30), events.pusher("30ms"));
    r.call_later(Duration::from_millis(10), events.pusher("10ms"));
    for tag in ["0 a", "0 b", "0 c"] {
        r.call_later(Duration::ZERO, events.pusher(tag));
    }
    r.call_later(Duration::from_millis(20), events.pusher("20ms"));
    let r2 = r.clone();
    r.call_later(Duration::from_millis(40), move || r2.stop().unwrap());
    run_bounded(&r).unwrap();
    assert_eq!(events.get(), ["0 a", "0 b", "0 c", "10ms", "20ms", "30ms"]);
}

// No direct Twisted test; Twisted's `DelayedCall` and `ReactorBase.callLater`: reset to an earlier time re-positions
// the call at once; reset to a later time postpones it.
#[test]
fn reset_earlier_and_later() {
    let r = reactor();
    let events = Events::new();
    let early = r.call_later(Duration::ZERO, events.pusher("postponed"));
    let late = r.call_later(SAFETY_NET * 2, events.pusher("brought forward"));
    let r2 = r.clone();
    let stop = r.call_later(Duration::from_millis(20), move || r2.stop().unwrap());
    let before = r.seconds();
    late.reset(Duration::ZERO).unwrap();
    early.reset(SAFETY_NET * 2).unwrap();
    assert!(late.get_time() <= r.seconds());
    assert!(early.get_time() >= before + (SAFETY_NET * 2).as_secs_f64());
    run_bounded(&r).unwrap();
    assert_eq!(events.get(), ["brought forward"]);
    assert!(!late.active() && !stop.active());
    assert!(early.active());
    early.cancel().unwrap();
}

// No direct Twisted test; Twisted's `DelayedCall` and `ReactorBase.callLater`: delay() postpones (positive) or
// brings forward (negative) a call.
#[test]
fn delay_positive_and_negative() {
    let clock = Clock::new();
    let events = Events::new();
    let a = clock.call_later(secs(10.0), events.pusher("a"));
    a.delay(5.0).unwrap();
    assert_eq!(a.get_time(), 15.0);
    let b = clock.call_later(secs(10.0), events.pusher("b"));
    b.delay(-5.0).unwrap();
    assert_eq!(b.get_time(), 5.0);
    // A postponement and a larger bring-forward fold into an earlier time.
    let c = clock.call_later(secs(10.0), events.pusher("c"));
    c.delay(5.0).unwrap();
    c.delay(-7.0).unwrap();
    assert_eq!(c.get_time(), 8.0);
    clock.advance(5.0);
    assert_eq!(events.get(), ["b"]);
    clock.advance(3.0);
    assert_eq!(events.get(), ["b", "c"]);
    clock.advance(6.9);
    assert_eq!(events.get(), ["b", "c"]);
    clock.advance(0.1);
    assert_eq!(events.get(), ["b", "c", "a"]);
    // A non-finite delay is refused (Python would raise on it too).
    let d = clock.call_later(secs(1.0), || ());
    assert!(matches!(
        d.delay(f64::NAN),
        Err(DelayedCallError::InvalidDelay(x)) if x.is_nan()
    ));
    assert_eq!(
        d.delay(f64::INFINITY),
        Err(DelayedCallError::InvalidDelay(f64::INFINITY))
    );
    assert_eq!(d.get_time(), 16.0);
}

// No direct Twisted test; Twisted's `DelayedCall` and `ReactorBase.callLater`: delay() on the real reactor moves
// get_time by the amount, and a negative delay makes a far call due now.
#[test]
fn delay_on_real_reactor() {
    let r = reactor();
    let events = Events::new();
    let call = r.call_later(SAFETY_NET * 2, events.pusher("ran"));
    let t = call.get_time();
    call.delay(1.0).unwrap();
    assert_eq!(call.get_time(), t + 1.0);
    call.delay(-(SAFETY_NET * 2).as_secs_f64() - 1.0).unwrap();
    assert!(call.get_time() <= r.seconds());
    r.iterate(Duration::ZERO);
    assert_eq!(events.get(), ["ran"]);
}

// Beyond Twisted (a Python float overflows to infinity): delay() keeps a
// call's time finite, so a sum that overflows is refused; the real reactor
// then still computes its next timeout. Found in review.
#[test]
fn delay_refuses_a_non_finite_time() {
    let clock = Clock::new();
    let call = clock.call_later(Duration::from_secs(1), || {});
    call.delay(-f64::MAX).unwrap();
    assert!(matches!(
        call.delay(-f64::MAX),
        Err(DelayedCallError::InvalidDelay(_))
    ));
    assert!(call.get_time().is_finite());
    let reactor = Reactor::new().expect("reactor");
    let call = reactor.call_later(Duration::from_secs(1), || {});
    call.delay(f64::MAX).unwrap();
    assert!(call.delay(f64::MAX).is_err());
    reactor.iterate(Duration::ZERO); // must not panic computing the timeout
    assert!(call.active());
}

// No direct Twisted test; Twisted's `DelayedCall` and `ReactorBase.callLater`: reset and delay check the same
// states as cancel, cancelled first, with the same errors.
#[test]
fn reset_and_delay_after_cancel_or_call() {
    let clock = Clock::new();
    let cancelled = clock.call_later(secs(1.0), || ());
    cancelled.cancel().unwrap();
    assert_eq!(
        cancelled.reset(secs(1.0)),
        Err(DelayedCallError::AlreadyCancelled)
    );
    assert_eq!(
        cancelled.delay(1.0),
        Err(DelayedCallError::AlreadyCancelled)
    );
    let called = clock.call_later(secs(1.0), || ());
    clock.advance(1.0);
    assert!(called.called());
    assert_eq!(
        called.reset(secs(1.0)),
        Err(DelayedCallError::AlreadyCalled)
    );
    assert_eq!(called.delay(1.0), Err(DelayedCallError::AlreadyCalled));
    assert_eq!(called.cancel(), Err(DelayedCallError::AlreadyCalled));
    // Neither came back to life.
    assert!(clock.get_delayed_calls().is_empty());
}

// No direct Twisted test; Twisted's `DelayedCall` and `ReactorBase.callLater`: active() is true until the call is
// cancelled or has run.
#[test]
fn active_cancelled_and_called_flags() {
    let clock = Clock::new();
    let a = clock.call_later(secs(1.0), || ());
    let b = clock.call_later(secs(1.0), || ());
    assert!(a.active() && b.active());
    a.cancel().unwrap();
    assert!(!a.active() && a.cancelled() && !a.called());
    clock.advance(1.0);
    assert!(!b.active() && b.called() && !b.cancelled());
}

// No direct Twisted test; Twisted's `DelayedCall` and `ReactorBase.callLater`: get_delayed_calls lists the pending
// calls that are not cancelled (and no longer the ones that ran).
#[test]
fn get_delayed_calls_lists_pending_calls() {
    let r = reactor();
    let a = r.call_later(Duration::ZERO, || ());
    let b = r.call_later(SAFETY_NET * 2, || ());
    let c = r.call_later(SAFETY_NET * 2, || ());
    let listed = r.get_delayed_calls();
    assert_eq!(listed.len(), 3);
    for dc in [&a, &b, &c] {
        assert!(listed.iter().any(|l| DelayedCall::ptr_eq(l, dc)));
    }
    b.cancel().unwrap();
    r.iterate(Duration::ZERO);
    let listed = r.get_delayed_calls();
    assert_eq!(listed.len(), 1);
    assert!(DelayedCall::ptr_eq(&listed[0], &c));
    c.cancel().unwrap();
    assert!(r.get_delayed_calls().is_empty());
}

// No direct Twisted test; checks the `get_delayed_calls` doc ("every pending
// timed call, earliest first") once a call has been postponed with reset.
#[test]
fn get_delayed_calls_earliest_first_after_postponement() {
    let clock = Clock::new();
    let a = clock.call_later(secs(1.0), || ());
    let b = clock.call_later(secs(2.0), || ());
    a.reset(secs(3.0)).unwrap();
    let listed = clock.get_delayed_calls();
    let times: Vec<f64> = listed.iter().map(DelayedCall::get_time).collect();
    assert_eq!(times, [2.0, 3.0]);
    assert!(DelayedCall::ptr_eq(&listed[0], &b));
    assert!(DelayedCall::ptr_eq(&listed[1], &a));
}

// No direct Twisted test; Twisted's `DelayedCall` and `ReactorBase.callLater`: a panic in a timed call is logged as
// "while handling timed call" and the other due calls still run, in the same
// turn.
#[test]
fn panic_in_timed_call_is_logged_and_loop_goes_on() {
    let r = reactor();
    let events = Events::new();
    r.call_later(Duration::ZERO, || panic!("timed call exploded"));
    r.call_later(Duration::ZERO, events.pusher("after the panic"));
    let ((), logs) = capture_logs(|| r.iterate(Duration::ZERO));
    assert_eq!(events.get(), ["after the panic"]);
    let logged = containing(&logs, "while handling timed call");
    assert_eq!(logged.len(), 1, "{logs:?}");
    assert_eq!(logged[0].level, Level::ERROR);
    assert!(
        logged[0]
            .field("failure")
            .unwrap_or_default()
            .contains("timed call exploded"),
        "{logs:?}"
    );

    // And inside run(): the loop survives the panic and stops normally.
    let r = reactor();
    r.call_later(Duration::ZERO, || panic!("timed call exploded"));
    let r2 = r.clone();
    r.call_later(Duration::from_millis(1), move || r2.stop().unwrap());
    let (result, logs) = capture_logs(|| run_bounded(&r));
    result.unwrap();
    assert_eq!(containing(&logs, "while handling timed call").len(), 1);
}

// No direct Twisted test; `ReactorBase.runUntilCurrent` and `callLater`: a call_later(0) made inside a
// timed call runs on the next turn of the real reactor, not in the same one.
#[test]
fn call_later_zero_from_timed_call_runs_next_turn() {
    let r = reactor();
    let events = Events::new();
    let (r2, e) = (r.clone(), events.clone());
    r.call_later(Duration::ZERO, move || {
        e.push("outer");
        r2.call_later(Duration::ZERO, e.pusher("inner"));
    });
    r.iterate(Duration::ZERO);
    assert_eq!(events.get(), ["outer"]);
    r.iterate(Duration::ZERO);
    assert_eq!(events.get(), ["outer", "inner"]);
}

// No direct Twisted test; Twisted's `DelayedCall` and `ReactorBase.callLater` ("a call with a positive pending
// delay is pushed back at its later time", inside runUntilCurrent's loop over
// due calls): a postponed call whose new time has already passed runs in the
// same turn, as every other due call does.
#[test]
fn postponed_call_already_due_runs_in_same_turn() {
    let r = reactor();
    let events = Events::new();
    let call = r.call_later(Duration::from_millis(5), events.pusher("postponed"));
    call.reset(Duration::from_millis(10)).unwrap();
    // Wait (on the reactor's own clock, not a fixed sleep) until the new
    // time has passed.
    let deadline = r.seconds() + SAFETY_NET.as_secs_f64();
    while r.seconds() <= call.get_time() {
        assert!(r.seconds() < deadline, "the clock did not advance");
        std::thread::sleep(Duration::from_millis(1));
    }
    r.iterate(Duration::ZERO);
    assert_eq!(events.get(), ["postponed"]);
}

// No direct Twisted test; Twisted's `DelayedCall` and `ReactorBase.callLater` (heap compaction once more than 50
// calls and more than half the heap are cancelled): 1000 calls, 900
// cancelled, the other 100 still run, in order.
#[test]
fn heap_compaction_keeps_live_calls_in_order() {
    let clock = Clock::new();
    let events = Events::new();
    let calls: Vec<DelayedCall> = (0..1000u64)
        .map(|i| clock.call_later(Duration::from_millis(i), events.pusher(i)))
        .collect();
    for (i, c) in calls.iter().enumerate() {
        if i % 10 != 0 {
            c.cancel().unwrap();
        }
    }
    let listed = clock.get_delayed_calls();
    assert_eq!(listed.len(), 100);
    clock.advance(1.0);
    let expected: Vec<u64> = (0..1000).step_by(10).collect();
    assert_eq!(events.get(), expected);
    assert!(clock.get_delayed_calls().is_empty());

    // The same on the real reactor, in one turn.
    let r = reactor();
    let events = Events::new();
    let calls: Vec<DelayedCall> = (0..1000u64)
        .map(|i| r.call_later(Duration::ZERO, events.pusher(i)))
        .collect();
    for (i, c) in calls.iter().enumerate() {
        if i % 10 != 0 {
            c.cancel().unwrap();
        }
    }
    assert_eq!(r.get_delayed_calls().len(), 100);
    r.iterate(Duration::ZERO);
    assert_eq!(events.get(), expected);
    assert!(calls.iter().all(|c| !c.active()));
}
