//! System event triggers: ports of Twisted's `ThreePhaseEventTests` and
//! `SystemEventTests` (`src/twisted/test/test_internet.py`), plus the rules
//! of Twisted's `_ThreePhaseEvent` (`twisted.internet.base`) that those tests leave implicit (failing
//! before-Deferreds, re-firing while waiting, trigger ids).
//!
//! Kept whole although over 600 lines: it ports Twisted's
//! `ThreePhaseEventTests` and `SystemEventTests` and reads beside them.
//!
//! Twisted's `_ThreePhaseEvent` is internal; here the same behaviour is
//! reached through `Reactor::{add,remove}_system_event_trigger` and
//! `fire_system_event`, which work without running the reactor, and through
//! `testing::FakeReactor` and the `ReactorCore` trait where both reactors
//! must agree.

mod common;

use std::cell::RefCell;
use std::rc::Rc;

use common::Events;
use deferred::{fail, Deferred, Failure};
use reactor::prelude::*;
use reactor::testing::FakeReactor;
use reactor::{Phase, Reactor, TriggerError, TriggerId};
use test_support::logs::{capture_logs, errors_containing};

const EVENT: &str = "test";

fn reactor() -> Reactor {
    Reactor::new().expect("a reactor")
}

/// A slot for an id that a trigger registered earlier needs (Twisted's
/// closures see later assignments; Rust closures need a cell).
type IdSlot = Rc<RefCell<Option<TriggerId>>>;

fn id_slot() -> IdSlot {
    Rc::new(RefCell::new(None))
}

/// A trigger body that removes the trigger in `slot` and records the outcome.
fn remover(
    r: &Reactor,
    slot: &IdSlot,
    outcome: &Rc<RefCell<Option<Result<(), TriggerError>>>>,
) -> impl FnOnce() + 'static {
    let (r, slot, outcome) = (r.clone(), Rc::clone(slot), Rc::clone(outcome));
    move || {
        let id = slot.borrow().clone().expect("id stored before firing");
        *outcome.borrow_mut() = Some(r.remove_system_event_trigger(&id));
    }
}

type Outcome = Rc<RefCell<Option<Result<(), TriggerError>>>>;

fn outcome() -> Outcome {
    Rc::new(RefCell::new(None))
}

/// Both reactors, as `dyn AnyReactor`, for the tests that must hold for each.
fn both_reactors() -> Vec<(&'static str, Box<dyn AnyReactor>)> {
    vec![
        ("Reactor", Box::new(reactor())),
        ("FakeReactor", Box::new(FakeReactor::new(false))),
    ]
}

// ---------------------------------------------------------------------------
// ThreePhaseEventTests
// ---------------------------------------------------------------------------

// Ports ThreePhaseEventTests.test_addInvalidPhase.
#[test]
fn test_add_invalid_phase() {
    let err = "xxx".parse::<Phase>().unwrap_err();
    assert_eq!(err, TriggerError::InvalidPhase("xxx".to_owned()));
    assert_eq!(err.phase(), None);
    assert!(err.to_string().contains("invalid phase"), "{err}");
    // Only the three lower-case names are phases.
    assert!("Before".parse::<Phase>().is_err());
    assert!("".parse::<Phase>().is_err());
    for (name, phase) in [
        ("before", Phase::Before),
        ("during", Phase::During),
        ("after", Phase::After),
    ] {
        assert_eq!(name.parse::<Phase>(), Ok(phase));
        assert_eq!(phase.to_string(), name);
    }
}

fn check_add_trigger(phase: Phase) {
    let r = reactor();
    let id = r.add_system_event_trigger(phase, EVENT, || ());
    assert_eq!(id.phase(), phase);
    assert_eq!(id.event(), EVENT);
    for p in [Phase::Before, Phase::During, Phase::After] {
        let expected = if p == phase { vec![id.clone()] } else { vec![] };
        assert_eq!(r.system_event_triggers(EVENT, p), expected, "phase {p}");
    }
}

// Ports ThreePhaseEventTests.test_addBeforeTrigger.
#[test]
fn test_add_before_trigger() {
    check_add_trigger(Phase::Before);
}

// Ports ThreePhaseEventTests.test_addDuringTrigger.
#[test]
fn test_add_during_trigger() {
    check_add_trigger(Phase::During);
}

// Ports ThreePhaseEventTests.test_addAfterTrigger.
#[test]
fn test_add_after_trigger() {
    check_add_trigger(Phase::After);
}

// Ports ThreePhaseEventTests.test_removeTrigger.
#[test]
fn test_remove_trigger() {
    let r = reactor();
    let events = Events::new();
    let id = r.add_system_event_trigger(Phase::Before, EVENT, events.pusher("before"));
    assert_eq!(r.remove_system_event_trigger(&id), Ok(()));
    assert!(r.system_event_triggers(EVENT, Phase::Before).is_empty());
    r.fire_system_event(EVENT);
    assert!(events.get().is_empty());
}

// Ports ThreePhaseEventTests.test_removeNonexistentTrigger: an id that was
// never added to this reactor (here: one from another reactor) is rejected.
#[test]
fn test_remove_nonexistent_trigger() {
    let a = reactor();
    let foreign = a.add_system_event_trigger(Phase::Before, EVENT, || ());
    let b = reactor();
    // Make sure `b`'s own trigger on the same event has a different serial.
    b.add_system_event_trigger(Phase::Before, "unrelated", || ());
    let own = b.add_system_event_trigger(Phase::Before, EVENT, || ());
    assert_eq!(
        b.remove_system_event_trigger(&foreign),
        Err(TriggerError::NotRegistered {
            id: foreign.clone()
        })
    );
    assert_eq!(b.system_event_triggers(EVENT, Phase::Before), vec![own]);
}

// Ports ThreePhaseEventTests.test_removeNonexistentTrigger, in the case where
// the foreign id happens to carry the same serial as a trigger registered
// here: it must still be "not registered" and must not remove that trigger
// (TriggerId's docs: "these are unique, so removing one never removes
// another").
#[test]
fn test_remove_nonexistent_trigger_same_serial() {
    let a = reactor();
    let foreign = a.add_system_event_trigger(Phase::Before, EVENT, || ());
    let b = reactor();
    let events = Events::new();
    let own = b.add_system_event_trigger(Phase::Before, EVENT, events.pusher("b's trigger"));
    assert_eq!(
        b.remove_system_event_trigger(&foreign),
        Err(TriggerError::NotRegistered {
            id: foreign.clone()
        })
    );
    assert_eq!(b.system_event_triggers(EVENT, Phase::Before), vec![own]);
    b.fire_system_event(EVENT);
    assert_eq!(events.get(), ["b's trigger"]);
}

// Ports ThreePhaseEventTests.test_removeRemovedTrigger.
#[test]
fn test_remove_removed_trigger() {
    let r = reactor();
    let id = r.add_system_event_trigger(Phase::During, EVENT, || ());
    r.remove_system_event_trigger(&id).unwrap();
    assert_eq!(
        r.remove_system_event_trigger(&id),
        Err(TriggerError::NotRegistered { id: id.clone() })
    );
    assert_eq!(
        r.remove_system_event_trigger(&id).unwrap_err().phase(),
        Some(Phase::During)
    );
}

// Ports ThreePhaseEventTests.test_fireEvent, against both reactors through
// the ReactorCore trait.
#[test]
fn test_fire_event() {
    for (name, r) in both_reactors() {
        let events = Events::new();
        r.add_system_event_trigger(Phase::After, EVENT, events.pusher(("first", "after")));
        r.add_system_event_trigger(Phase::During, EVENT, events.pusher(("first", "during")));
        r.add_system_event_trigger(Phase::Before, EVENT, events.pusher(("first", "before")));
        r.add_system_event_trigger(Phase::Before, EVENT, events.pusher(("second", "before")));
        r.add_system_event_trigger(Phase::During, EVENT, events.pusher(("second", "during")));
        r.add_system_event_trigger(Phase::After, EVENT, events.pusher(("second", "after")));
        assert!(events.get().is_empty(), "{name}");
        r.fire_system_event(EVENT);
        assert_eq!(
            events.get(),
            [
                ("first", "before"),
                ("second", "before"),
                ("first", "during"),
                ("second", "during"),
                ("first", "after"),
                ("second", "after"),
            ],
            "{name}"
        );
    }
}

// Ports ThreePhaseEventTests.test_asynchronousBefore, against both reactors.
#[test]
fn test_asynchronous_before() {
    for (name, r) in both_reactors() {
        let events = Events::new();
        let (before, fire_before) = Deferred::<()>::new();
        r.add_system_event_trigger(Phase::Before, EVENT, move || before);
        r.add_system_event_trigger(Phase::During, EVENT, events.pusher("during"));
        r.add_system_event_trigger(Phase::After, EVENT, events.pusher("after"));
        assert!(events.get().is_empty(), "{name}");
        r.fire_system_event(EVENT);
        assert!(
            events.get().is_empty(),
            "{name}: during ran before the Deferred fired"
        );
        fire_before.callback(()).unwrap();
        assert_eq!(events.get(), ["during", "after"], "{name}");
    }
}

/// A trigger body that panics, standing in for one that raises.
fn dummy_panic() {
    panic!("DummyException");
}

/// Checks that a trigger failing (`fail` is a trigger body that panics or
/// returns `Err`) in `phase` is logged once and the other triggers still run.
fn check_trigger_failure_logged(phase: Phase, failing: impl FnOnce(&Reactor) + 'static) {
    let r = reactor();
    let events = Events::new();
    failing(&r);
    r.add_system_event_trigger(Phase::Before, EVENT, events.pusher("before"));
    r.add_system_event_trigger(Phase::During, EVENT, events.pusher("during"));
    r.add_system_event_trigger(Phase::After, EVENT, events.pusher("after"));
    let ((), logs) = capture_logs(|| r.fire_system_event(EVENT));
    assert_eq!(events.get(), ["before", "during", "after"], "{phase}");
    let logged = errors_containing(&logs, "While calling system event trigger handler");
    assert_eq!(logged.len(), 1, "{phase}: {logs:?}");
    let failure = logged[0].field("failure").expect("a failure field");
    assert!(failure.contains("DummyException"), "{phase}: {failure}");
}

// Ports ThreePhaseEventTests.test_beforeTriggerException (a panic standing in
// for the raised exception).
#[test]
fn test_before_trigger_exception() {
    check_trigger_failure_logged(Phase::Before, |r| {
        r.add_system_event_trigger(Phase::Before, EVENT, dummy_panic);
    });
}

// Ports ThreePhaseEventTests.test_beforeTriggerException with the trigger
// returning `Err` instead of panicking.
#[test]
fn test_before_trigger_exception_err_result() {
    check_trigger_failure_logged(Phase::Before, |r| {
        r.add_system_event_trigger(Phase::Before, EVENT, || -> Result<(), Failure> {
            Err(Failure::msg("DummyException"))
        });
    });
}

// Ports ThreePhaseEventTests.test_duringTriggerException.
#[test]
fn test_during_trigger_exception() {
    check_trigger_failure_logged(Phase::During, |r| {
        r.add_system_event_trigger(Phase::During, EVENT, dummy_panic);
    });
}

// Ports ThreePhaseEventTests.test_duringTriggerException for the after phase,
// with an `Err` result.
#[test]
fn test_after_trigger_exception_err_result() {
    check_trigger_failure_logged(Phase::After, |r| {
        r.add_system_event_trigger(Phase::After, EVENT, || -> Result<(), Failure> {
            Err(Failure::msg("DummyException"))
        });
    });
}

// Ports ThreePhaseEventTests.test_synchronousRemoveAlreadyExecutedBefore:
// Twisted warns "Removing already-fired system event triggers will raise an
// exception in a future version of Twisted." and removes nothing; here the
// removal fails with AlreadyFired.
#[test]
fn test_synchronous_remove_already_executed_before() {
    let r = reactor();
    let events = Events::new();
    let slot = id_slot();
    let result = outcome();
    let first =
        r.add_system_event_trigger(Phase::Before, EVENT, events.pusher(("first", "before")));
    *slot.borrow_mut() = Some(first.clone());
    r.add_system_event_trigger(Phase::Before, EVENT, remover(&r, &slot, &result));
    r.add_system_event_trigger(Phase::Before, EVENT, events.pusher(("second", "before")));
    r.fire_system_event(EVENT);
    assert_eq!(
        *result.borrow(),
        Some(Err(TriggerError::AlreadyFired { id: first }))
    );
    assert_eq!(events.get(), [("first", "before"), ("second", "before")]);
}

// Ports ThreePhaseEventTests.test_synchronousRemovePendingBefore.
#[test]
fn test_synchronous_remove_pending_before() {
    let r = reactor();
    let events = Events::new();
    let slot = id_slot();
    let result = outcome();
    r.add_system_event_trigger(Phase::Before, EVENT, remover(&r, &slot, &result));
    let pending = r.add_system_event_trigger(Phase::Before, EVENT, events.pusher("first"));
    *slot.borrow_mut() = Some(pending);
    r.fire_system_event(EVENT);
    assert_eq!(*result.borrow(), Some(Ok(())));
    assert!(events.get().is_empty());
}

// Ports ThreePhaseEventTests.test_synchronousBeforeRemovesDuring.
#[test]
fn test_synchronous_before_removes_during() {
    let r = reactor();
    let events = Events::new();
    let slot = id_slot();
    let result = outcome();
    r.add_system_event_trigger(Phase::Before, EVENT, remover(&r, &slot, &result));
    let during = r.add_system_event_trigger(Phase::During, EVENT, events.pusher("during"));
    *slot.borrow_mut() = Some(during);
    r.add_system_event_trigger(Phase::After, EVENT, events.pusher("after"));
    r.fire_system_event(EVENT);
    assert_eq!(*result.borrow(), Some(Ok(())));
    assert_eq!(events.get(), ["after"]);
}

// Ports ThreePhaseEventTests.test_asynchronousBeforeRemovesDuring.
#[test]
fn test_asynchronous_before_removes_during() {
    let r = reactor();
    let events = Events::new();
    let (before, fire_before) = Deferred::<()>::new();
    r.add_system_event_trigger(Phase::Before, EVENT, move || before);
    let during = r.add_system_event_trigger(Phase::During, EVENT, events.pusher("during"));
    r.add_system_event_trigger(Phase::After, EVENT, events.pusher("after"));
    r.fire_system_event(EVENT);
    assert_eq!(r.remove_system_event_trigger(&during), Ok(()));
    fire_before.callback(()).unwrap();
    assert_eq!(events.get(), ["after"]);
}

// Ports ThreePhaseEventTests.test_synchronousBeforeRemovesConspicuouslySimilarDuring:
// the during trigger has the same body as an already-run before trigger; it
// is removed, and without an AlreadyFired error.
#[test]
fn test_synchronous_before_removes_conspicuously_similar_during() {
    let r = reactor();
    let events = Events::new();
    let slot = id_slot();
    let result = outcome();
    let trigger = {
        let events = events.clone();
        move || events.push("trigger")
    };
    r.add_system_event_trigger(Phase::Before, EVENT, trigger.clone());
    r.add_system_event_trigger(Phase::Before, EVENT, remover(&r, &slot, &result));
    let during = r.add_system_event_trigger(Phase::During, EVENT, trigger);
    *slot.borrow_mut() = Some(during);
    r.fire_system_event(EVENT);
    assert_eq!(*result.borrow(), Some(Ok(())));
    assert_eq!(
        events.get(),
        ["trigger"],
        "the during trigger should have been removed"
    );
}

// Ports ThreePhaseEventTests.test_synchronousRemovePendingDuring.
#[test]
fn test_synchronous_remove_pending_during() {
    let r = reactor();
    let events = Events::new();
    let slot = id_slot();
    let result = outcome();
    r.add_system_event_trigger(Phase::During, EVENT, remover(&r, &slot, &result));
    let pending = r.add_system_event_trigger(Phase::During, EVENT, events.pusher("first"));
    *slot.borrow_mut() = Some(pending);
    r.fire_system_event(EVENT);
    assert_eq!(*result.borrow(), Some(Ok(())));
    assert!(events.get().is_empty());
}

// Ports ThreePhaseEventTests.test_triggersRunOnce, against both reactors; a
// second firing runs only the triggers added since the first.
#[test]
fn test_triggers_run_once() {
    for (name, r) in both_reactors() {
        let events = Events::new();
        for (phase, tag) in [
            (Phase::Before, "before"),
            (Phase::During, "during"),
            (Phase::After, "after"),
        ] {
            r.add_system_event_trigger(phase, EVENT, events.pusher(tag));
        }
        r.fire_system_event(EVENT);
        r.fire_system_event(EVENT);
        assert_eq!(events.get(), ["before", "during", "after"], "{name}");
        r.add_system_event_trigger(Phase::During, EVENT, events.pusher("new"));
        r.fire_system_event(EVENT);
        assert_eq!(events.get(), ["before", "during", "after", "new"], "{name}");
    }
}

// Ports ThreePhaseEventTests.test_finishedBeforeTriggersCleared: when the
// during phase starts, the event is no longer in its before state and the
// finished-before list is empty, so removing an already-run before trigger
// is plain "not registered" rather than "already fired".
#[test]
fn test_finished_before_triggers_cleared() {
    let r = reactor();
    let events = Events::new();
    let slot = id_slot();
    let result = outcome();
    let before = r.add_system_event_trigger(Phase::Before, EVENT, events.pusher("before"));
    *slot.borrow_mut() = Some(before.clone());
    let remove = remover(&r, &slot, &result);
    let during_events = events.clone();
    r.add_system_event_trigger(Phase::During, EVENT, move || {
        during_events.push("during");
        remove();
    });
    r.fire_system_event(EVENT);
    assert_eq!(events.get(), ["before", "during"]);
    assert_eq!(
        *result.borrow(),
        Some(Err(TriggerError::NotRegistered { id: before }))
    );
}

// ---------------------------------------------------------------------------
// SystemEventTests
// ---------------------------------------------------------------------------

fn check_phase(phase: Phase) {
    let r = reactor();
    let events = Events::new();
    r.add_system_event_trigger(phase, EVENT, events.pusher("ran"));
    assert!(events.get().is_empty());
    r.fire_system_event(EVENT);
    assert_eq!(events.get(), ["ran"]);
}

// Ports SystemEventTests.test_beforePhase.
#[test]
fn test_before_phase() {
    check_phase(Phase::Before);
}

// Ports SystemEventTests.test_duringPhase.
#[test]
fn test_during_phase() {
    check_phase(Phase::During);
}

// Ports SystemEventTests.test_afterPhase.
#[test]
fn test_after_phase() {
    check_phase(Phase::After);
}

// Ports SystemEventTests.test_unknownPhase: a phase name that does not parse
// is an InvalidPhase error, so nothing gets registered.
#[test]
fn test_unknown_phase() {
    let r = reactor();
    let register = |name: &str| -> Result<TriggerId, TriggerError> {
        let phase: Phase = name.parse()?;
        Ok(r.add_system_event_trigger(phase, EVENT, || ()))
    };
    assert_eq!(
        register("xxx").unwrap_err(),
        TriggerError::InvalidPhase("xxx".into())
    );
    for p in [Phase::Before, Phase::During, Phase::After] {
        assert!(r.system_event_triggers(EVENT, p).is_empty());
    }
    let ok = register("after").unwrap();
    assert_eq!(r.system_event_triggers(EVENT, Phase::After), vec![ok]);
}

// Ports SystemEventTests.test_beforePreceedsDuring.
#[test]
fn test_before_preceeds_during() {
    let r = reactor();
    let events = Events::new();
    r.add_system_event_trigger(Phase::During, EVENT, events.pusher("during"));
    r.add_system_event_trigger(Phase::Before, EVENT, events.pusher("before"));
    r.fire_system_event(EVENT);
    assert_eq!(events.get(), ["before", "during"]);
}

// Ports SystemEventTests.test_duringPreceedsAfter.
#[test]
fn test_during_preceeds_after() {
    let r = reactor();
    let events = Events::new();
    r.add_system_event_trigger(Phase::After, EVENT, events.pusher("after"));
    r.add_system_event_trigger(Phase::During, EVENT, events.pusher("during"));
    r.fire_system_event(EVENT);
    assert_eq!(events.get(), ["during", "after"]);
}

// Ports SystemEventTests.test_beforeReturnsDeferred.
#[test]
fn test_before_returns_deferred() {
    let r = reactor();
    let events = Events::new();
    let (d, fire) = Deferred::<()>::new();
    r.add_system_event_trigger(Phase::Before, EVENT, move || d);
    r.add_system_event_trigger(Phase::During, EVENT, events.pusher("during"));
    r.fire_system_event(EVENT);
    assert!(events.get().is_empty());
    fire.callback(()).unwrap();
    assert_eq!(events.get(), ["during"]);
}

// Ports SystemEventTests.test_multipleBeforeReturnDeferred.
#[test]
fn test_multiple_before_return_deferred() {
    let r = reactor();
    let events = Events::new();
    let (first, fire_first) = Deferred::<()>::new();
    let (second, fire_second) = Deferred::<u32>::new();
    r.add_system_event_trigger(Phase::Before, EVENT, move || first);
    // A before-Deferred of any value type is waited for.
    r.add_system_event_trigger(Phase::Before, EVENT, move || second);
    r.add_system_event_trigger(Phase::During, EVENT, events.pusher("during"));
    r.fire_system_event(EVENT);
    assert!(events.get().is_empty());
    fire_first.callback(()).unwrap();
    assert!(
        events.get().is_empty(),
        "during ran with one Deferred pending"
    );
    fire_second.callback(7).unwrap();
    assert_eq!(events.get(), ["during"]);
}

// Ports SystemEventTests.test_subsequentBeforeTriggerFiresPriorBeforeDeferred.
#[test]
fn test_subsequent_before_trigger_fires_prior_before_deferred() {
    let r = reactor();
    let events = Events::new();
    let (first, fire_first) = Deferred::<()>::new();
    let (second, fire_second) = Deferred::<()>::new();
    r.add_system_event_trigger(Phase::Before, EVENT, move || first);
    r.add_system_event_trigger(Phase::Before, EVENT, move || {
        fire_first.callback(()).unwrap();
    });
    let e = events.clone();
    r.add_system_event_trigger(Phase::Before, EVENT, move || {
        e.push("before");
        second
    });
    r.add_system_event_trigger(Phase::During, EVENT, events.pusher("during"));
    r.fire_system_event(EVENT);
    assert_eq!(events.get(), ["before"]);
    fire_second.callback(()).unwrap();
    assert_eq!(events.get(), ["before", "during"]);
}

// Ports SystemEventTests.test_removeSystemEventTrigger.
#[test]
fn test_remove_system_event_trigger() {
    let r = reactor();
    let events = Events::new();
    r.add_system_event_trigger(Phase::Before, EVENT, events.pusher("first"));
    let second = r.add_system_event_trigger(Phase::Before, EVENT, events.pusher("second"));
    r.remove_system_event_trigger(&second).unwrap();
    assert!(events.get().is_empty());
    r.fire_system_event(EVENT);
    assert_eq!(events.get(), ["first"]);
}

// Ports SystemEventTests.test_removeNonExistentSystemEventTrigger: a removed
// id is NotRegistered (ValueError), an id for an event this reactor has never
// seen is UnknownEvent (KeyError), a bad phase does not parse (KeyError). The
// TypeError case (`None`) cannot be expressed with a typed id.
#[test]
fn test_remove_non_existent_system_event_trigger() {
    let r = reactor();
    let id = r.add_system_event_trigger(Phase::During, EVENT, || ());
    r.remove_system_event_trigger(&id).unwrap();
    assert_eq!(
        r.remove_system_event_trigger(&id),
        Err(TriggerError::NotRegistered { id: id.clone() })
    );

    let other = reactor();
    let foreign = other.add_system_event_trigger(Phase::Before, "never-seen-here", || ());
    assert_eq!(
        r.remove_system_event_trigger(&foreign),
        Err(TriggerError::UnknownEvent {
            event: "never-seen-here".into(),
            id: foreign.clone()
        })
    );
    assert!(matches!(
        "bogus".parse::<Phase>(),
        Err(TriggerError::InvalidPhase(p)) if p == "bogus"
    ));
}

// Ports SystemEventTests.test_interactionBetweenDifferentEvents.
#[test]
fn test_interaction_between_different_events() {
    let r = reactor();
    let events = Events::new();
    let (first, fire_first) = Deferred::<()>::new();
    let (second, fire_second) = Deferred::<()>::new();
    let e = events.clone();
    r.add_system_event_trigger(Phase::Before, "first-event", move || {
        e.push(("before", "first"));
        first
    });
    r.add_system_event_trigger(
        Phase::After,
        "first-event",
        events.pusher(("after", "first")),
    );
    let e = events.clone();
    r.add_system_event_trigger(Phase::Before, "second-event", move || {
        e.push(("before", "second"));
        second
    });
    r.add_system_event_trigger(
        Phase::After,
        "second-event",
        events.pusher(("after", "second")),
    );
    assert!(events.get().is_empty());

    r.fire_system_event("first-event");
    assert_eq!(events.get(), [("before", "first")]);
    r.fire_system_event("second-event");
    assert_eq!(events.get(), [("before", "first"), ("before", "second")]);
    fire_first.callback(()).unwrap();
    assert_eq!(
        events.get(),
        [
            ("before", "first"),
            ("before", "second"),
            ("after", "first")
        ]
    );
    fire_second.callback(()).unwrap();
    assert_eq!(
        events.get(),
        [
            ("before", "first"),
            ("before", "second"),
            ("after", "first"),
            ("after", "second")
        ]
    );
}

// ---------------------------------------------------------------------------
// Twisted's `_ThreePhaseEvent` (`twisted.internet.base`) rules without a Twisted test of their own
// ---------------------------------------------------------------------------

// No direct Twisted test; Twisted's `_ThreePhaseEvent` (`twisted.internet.base`): a before-Deferred that fails
// does not stop the event, and its failure stays on it, logged as "Unhandled
// error in Deferred" once the Deferred goes away.
#[test]
fn before_deferred_failure_does_not_stop_event() {
    let r = reactor();
    let events = Events::new();
    let (d, fire) = Deferred::<()>::new();
    r.add_system_event_trigger(Phase::Before, EVENT, move || d);
    r.add_system_event_trigger(Phase::During, EVENT, events.pusher("during"));
    r.add_system_event_trigger(Phase::After, EVENT, events.pusher("after"));
    let ((), logs) = capture_logs(|| {
        r.fire_system_event(EVENT);
        assert!(events.get().is_empty());
        fire.errback(Failure::msg("before failed")).unwrap();
        assert_eq!(events.get(), ["during", "after"]);
    });
    assert!(
        errors_containing(&logs, "Unhandled error in Deferred").is_empty(),
        "logged while the Deferred is still alive: {logs:?}"
    );
    let ((), logs) = capture_logs(move || drop(fire));
    let unhandled = errors_containing(&logs, "Unhandled error in Deferred");
    assert_eq!(unhandled.len(), 1, "{logs:?}");
    assert!(
        unhandled[0]
            .field("failure")
            .unwrap_or_default()
            .contains("before failed"),
        "{logs:?}"
    );
}

// No direct Twisted test; Twisted's `_ThreePhaseEvent` (`twisted.internet.base`) with a before trigger that
// returns an already-failed Deferred: the event completes synchronously and
// the failure is logged as unhandled.
#[test]
fn before_already_failed_deferred_does_not_stop_event() {
    let r = reactor();
    let events = Events::new();
    r.add_system_event_trigger(Phase::Before, EVENT, || {
        fail::<()>(Failure::msg("failed at once"))
    });
    r.add_system_event_trigger(Phase::During, EVENT, events.pusher("during"));
    r.add_system_event_trigger(Phase::After, EVENT, events.pusher("after"));
    let ((), logs) = capture_logs(|| r.fire_system_event(EVENT));
    assert_eq!(events.get(), ["during", "after"]);
    let unhandled = errors_containing(&logs, "Unhandled error in Deferred");
    assert_eq!(unhandled.len(), 1, "{logs:?}");
    assert!(
        unhandled[0]
            .field("failure")
            .unwrap_or_default()
            .contains("failed at once"),
        "{logs:?}"
    );
}

// No direct Twisted test; Twisted's `_ThreePhaseEvent` (`twisted.internet.base`): while the event waits on its
// before-Deferreds, removing a before trigger that already ran is
// AlreadyFired (Twisted's DeprecationWarning), and removes nothing else.
#[test]
fn remove_already_run_before_while_waiting_is_already_fired() {
    let r = reactor();
    let events = Events::new();
    let (d, fire) = Deferred::<()>::new();
    let first = r.add_system_event_trigger(Phase::Before, EVENT, events.pusher("first"));
    r.add_system_event_trigger(Phase::Before, EVENT, move || d);
    let during = r.add_system_event_trigger(Phase::During, EVENT, events.pusher("during"));
    r.fire_system_event(EVENT);
    assert_eq!(
        r.remove_system_event_trigger(&first),
        Err(TriggerError::AlreadyFired { id: first.clone() })
    );
    assert_eq!(
        r.remove_system_event_trigger(&first).unwrap_err().phase(),
        Some(Phase::Before)
    );
    assert_eq!(r.system_event_triggers(EVENT, Phase::During), vec![during]);
    fire.callback(()).unwrap();
    assert_eq!(events.get(), ["first", "during"]);
    // Once the event is done, the same id is simply no longer registered.
    assert_eq!(
        r.remove_system_event_trigger(&first),
        Err(TriggerError::NotRegistered { id: first })
    );
}

// No direct Twisted test; Twisted's `_ThreePhaseEvent` (`twisted.internet.base`): removing a trigger that has fired is
// NotRegistered (ValueError), for every phase.
#[test]
fn remove_fired_trigger_is_not_registered() {
    let r = reactor();
    let ids: Vec<TriggerId> = [Phase::Before, Phase::During, Phase::After]
        .into_iter()
        .map(|p| r.add_system_event_trigger(p, EVENT, || ()))
        .collect();
    r.fire_system_event(EVENT);
    for id in ids {
        assert_eq!(
            r.remove_system_event_trigger(&id),
            Err(TriggerError::NotRegistered { id: id.clone() })
        );
    }
}

// No direct Twisted test; Twisted's `_ThreePhaseEvent` (`twisted.internet.base`): a trigger appended to
// the phase being drained runs in the same pass.
#[test]
fn triggers_added_to_current_phase_run_in_same_pass() {
    let r = reactor();
    let events = Events::new();
    for (phase, tag, added) in [
        (Phase::Before, "before", "before (added)"),
        (Phase::During, "during", "during (added)"),
        (Phase::After, "after", "after (added)"),
    ] {
        let (r2, e) = (r.clone(), events.clone());
        r.add_system_event_trigger(phase, EVENT, move || {
            e.push(tag);
            r2.add_system_event_trigger(phase, EVENT, e.pusher(added));
        });
    }
    r.fire_system_event(EVENT);
    assert_eq!(
        events.get(),
        [
            "before",
            "before (added)",
            "during",
            "during (added)",
            "after",
            "after (added)"
        ]
    );
}

// No direct Twisted test; Twisted's `_ThreePhaseEvent` (`twisted.internet.base`): a trigger added to an earlier
// phase than the one running waits for the next firing.
#[test]
fn triggers_added_to_earlier_phase_wait_for_next_firing() {
    let r = reactor();
    let events = Events::new();
    let (r2, e) = (r.clone(), events.clone());
    r.add_system_event_trigger(Phase::During, EVENT, move || {
        e.push("during");
        r2.add_system_event_trigger(Phase::Before, EVENT, e.pusher("before (from during)"));
    });
    let (r2, e) = (r.clone(), events.clone());
    r.add_system_event_trigger(Phase::After, EVENT, move || {
        e.push("after");
        r2.add_system_event_trigger(Phase::Before, EVENT, e.pusher("before (from after)"));
        r2.add_system_event_trigger(Phase::During, EVENT, e.pusher("during (from after)"));
    });
    r.fire_system_event(EVENT);
    assert_eq!(events.get(), ["during", "after"]);
    assert_eq!(r.system_event_triggers(EVENT, Phase::Before).len(), 2);
    assert_eq!(r.system_event_triggers(EVENT, Phase::During).len(), 1);
    r.fire_system_event(EVENT);
    assert_eq!(
        events.get(),
        [
            "during",
            "after",
            "before (from during)",
            "before (from after)",
            "during (from after)"
        ]
    );
}

// No direct Twisted test; Twisted's `_ThreePhaseEvent` (`twisted.internet.base`) edge case: firing the same
// event again while it waits on before-Deferreds runs the pending during and
// after triggers at once; when the original Deferred fires, nothing runs twice.
#[test]
fn refire_while_waiting_runs_pending_phases_once() {
    let r = reactor();
    let events = Events::new();
    let (d, fire) = Deferred::<()>::new();
    let e = events.clone();
    r.add_system_event_trigger(Phase::Before, EVENT, move || {
        e.push("before");
        d
    });
    r.add_system_event_trigger(Phase::During, EVENT, events.pusher("during"));
    r.add_system_event_trigger(Phase::After, EVENT, events.pusher("after"));
    r.fire_system_event(EVENT);
    assert_eq!(events.get(), ["before"]);
    r.fire_system_event(EVENT);
    assert_eq!(events.get(), ["before", "during", "after"]);
    fire.callback(()).unwrap();
    assert_eq!(events.get(), ["before", "during", "after"]);
}

// No direct Twisted test; Twisted's `_ThreePhaseEvent` (`twisted.internet.base`): firing an event nobody registered
// for does nothing, and does not create it (an id for it is still for an
// unknown event).
#[test]
fn fire_unknown_event_does_nothing() {
    let r = reactor();
    let events = Events::new();
    r.add_system_event_trigger(Phase::During, EVENT, events.pusher("other event"));
    r.fire_system_event("nobody-registered");
    assert!(events.get().is_empty());
    let other = reactor();
    let foreign = other.add_system_event_trigger(Phase::During, "nobody-registered", || ());
    assert!(matches!(
        r.remove_system_event_trigger(&foreign),
        Err(TriggerError::UnknownEvent { event, .. }) if event == "nobody-registered"
    ));
    let fake = FakeReactor::new(false);
    fake.fire_system_event("nobody-registered");
    assert!(fake.triggers().is_empty());
}

// No direct Twisted test; a deliberate difference (README, "Reactor and
// Deferred differences"): ids are unique handles,
// not values. Twisted gives equal ids for equal registrations; here two
// registrations of the same function differ, and removing one leaves the
// other.
#[test]
fn trigger_ids_are_unique() {
    fn noop() {}
    let r = reactor();
    let a = r.add_system_event_trigger(Phase::During, EVENT, noop);
    let b = r.add_system_event_trigger(Phase::During, EVENT, noop);
    assert_ne!(a, b);
    assert_eq!(a.clone(), a);
    r.remove_system_event_trigger(&b).unwrap();
    assert_eq!(
        r.system_event_triggers(EVENT, Phase::During),
        vec![a.clone()]
    );
    // The same holds on the fake reactor.
    let fake = FakeReactor::new(false);
    let c = fake.add_system_event_trigger(Phase::During, EVENT, noop);
    let d = fake.add_system_event_trigger(Phase::During, EVENT, noop);
    assert_ne!(c, d);
    fake.remove_system_event_trigger(&c).unwrap();
    assert_eq!(fake.triggers(), vec![d]);
}
