//! System event triggers: Twisted's `_ThreePhaseEvent`, one per event name.
//!
//! Each event (`"startup"`, `"shutdown"`, or any name a program fires) has
//! three phases. Firing runs every `before` trigger, waits for the Deferreds
//! they returned, then runs every `during` and then every `after` trigger.
//! Each trigger runs at most once. See Twisted's `_ThreePhaseEvent` (`twisted.internet.base`) for the exact rules;
//! the implementation follows them step by step.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::str::FromStr;

use deferred::{Deferred, DeferredList, Failure};

/// A phase of a system event. Mirrors Twisted's `"before"`, `"during"` and
/// `"after"` strings; [`Phase::from_str`] parses them, with a typed error
/// for anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Runs first; a Deferred returned by a `before` trigger delays the
    /// later phases until it fires.
    Before,
    /// Runs once every `before` Deferred has fired.
    During,
    /// Runs right after `during`.
    After,
}

impl FromStr for Phase {
    type Err = TriggerError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "before" => Ok(Phase::Before),
            "during" => Ok(Phase::During),
            "after" => Ok(Phase::After),
            other => Err(TriggerError::InvalidPhase(other.to_owned())),
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Before => "before",
            Phase::During => "during",
            Phase::After => "after",
        })
    }
}

/// The handle of a registered system event trigger, for
/// `remove_system_event_trigger`.
///
/// Twisted's ids are value-equal tuples (two equal registrations give equal
/// ids); these are unique, so removing one never removes another.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TriggerId {
    event: Rc<str>,
    phase: Phase,
    serial: u64,
}

impl TriggerId {
    /// The event type this trigger is registered for.
    pub fn event(&self) -> &str {
        &self.event
    }
    /// The phase it runs in.
    pub fn phase(&self) -> Phase {
        self.phase
    }
}

impl fmt::Display for TriggerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} ({} {:?})", self.serial, self.phase, &*self.event)
    }
}

/// Why a system event trigger could not be removed. Twisted raises
/// `KeyError`, `ValueError` or `TypeError` for these cases.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TriggerError {
    /// No trigger was ever added for this event type (Twisted's `KeyError(eventType)`).
    #[error("no system event triggers for event {event:?} (trigger {id})")]
    UnknownEvent {
        /// The event type named by the id.
        event: String,
        /// The id that was passed.
        id: TriggerId,
    },
    /// The id is not registered: never added here, already removed, or
    /// already fired (Twisted's `ValueError`).
    #[error("system event trigger {id} is not registered (never added, already removed, or already fired)")]
    NotRegistered {
        /// The id that was passed.
        id: TriggerId,
    },
    /// The trigger is a `before` trigger that already ran during the firing in
    /// progress. Twisted warns "Removing already-fired system event triggers
    /// will raise an exception in a future version of Twisted." and removes
    /// nothing; this is that future version.
    #[error("system event trigger {id} already fired")]
    AlreadyFired {
        /// The id that was passed.
        id: TriggerId,
    },
    /// A phase name other than `before`, `during` or `after` (Twisted's
    /// `KeyError("invalid phase")`).
    #[error("invalid phase {0:?}: expected \"before\", \"during\" or \"after\"")]
    InvalidPhase(String),
}

impl TriggerError {
    /// The phase an id refers to, for messages.
    pub fn phase(&self) -> Option<Phase> {
        match self {
            TriggerError::UnknownEvent { id, .. }
            | TriggerError::NotRegistered { id }
            | TriggerError::AlreadyFired { id } => Some(id.phase()),
            TriggerError::InvalidPhase(_) => None,
        }
    }
}

/// A trigger's body, boxed: it may return a Deferred (only `before` triggers'
/// Deferreds are waited for).
pub type TriggerFn = Box<dyn FnOnce() -> Option<Deferred<()>>>;

/// What a system event trigger may return: nothing, a `Result` (an `Err` is
/// logged like a raised exception), or a Deferred to wait for (in the
/// `before` phase).
pub trait TriggerOutput {
    /// Converts into the Deferred to wait for, if any.
    fn into_wait(self) -> Option<Deferred<()>>;
}

impl TriggerOutput for () {
    fn into_wait(self) -> Option<Deferred<()>> {
        None
    }
}

impl<T: 'static> TriggerOutput for Deferred<T> {
    fn into_wait(self) -> Option<Deferred<()>> {
        Some(self.add_callback(|_| ()))
    }
}

impl<T: 'static> TriggerOutput for Option<Deferred<T>> {
    fn into_wait(self) -> Option<Deferred<()>> {
        self.and_then(TriggerOutput::into_wait)
    }
}

impl<E: Into<Failure>> TriggerOutput for Result<(), E> {
    fn into_wait(self) -> Option<Deferred<()>> {
        if let Err(e) = self {
            let f: Failure = e.into();
            tracing::error!(failure = %f, "While calling system event trigger handler");
        }
        None
    }
}

/// Boxes a trigger closure into a [`TriggerFn`].
pub fn trigger_fn<F, R>(f: F) -> TriggerFn
where
    F: FnOnce() -> R + 'static,
    R: TriggerOutput,
{
    Box::new(move || f().into_wait())
}

struct Trigger {
    serial: u64,
    f: TriggerFn,
}

#[derive(Default)]
struct Event {
    /// True while `before` triggers run or their Deferreds are awaited.
    in_before: bool,
    before: VecDeque<Trigger>,
    during: VecDeque<Trigger>,
    after: VecDeque<Trigger>,
    finished_before: Vec<u64>,
}

impl Event {
    fn list(&mut self, phase: Phase) -> &mut VecDeque<Trigger> {
        match phase {
            Phase::Before => &mut self.before,
            Phase::During => &mut self.during,
            Phase::After => &mut self.after,
        }
    }
}

/// Decides, when an event's `during` phase is over, whether its `after`
/// phase must wait for a Deferred (see `shutdown.rs`).
pub(crate) type AfterGate = Box<dyn Fn(&str) -> Option<Deferred<()>>>;

/// The map of event name to three-phase event.
#[derive(Default)]
pub(crate) struct SystemEvents {
    events: RefCell<HashMap<Rc<str>, Event>>,
    after_gate: RefCell<Option<AfterGate>>,
}

/// Trigger serials are unique in the process, so an id from one reactor can
/// never match (and remove) another reactor's trigger.
static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl fmt::Debug for SystemEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let events = self.events.borrow();
        f.debug_map()
            .entries(
                events
                    .iter()
                    .map(|(k, e)| (k.clone(), (e.before.len(), e.during.len(), e.after.len()))),
            )
            .finish()
    }
}

fn run_trigger(f: TriggerFn) -> Option<Deferred<()>> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(d) => d,
        Err(payload) => {
            let f = Failure::from_panic(payload);
            tracing::error!(failure = %f, "While calling system event trigger handler");
            None
        }
    }
}

impl SystemEvents {
    /// Installs the gate consulted between the `during` and `after` phases.
    pub(crate) fn set_after_gate(&self, gate: AfterGate) {
        *self.after_gate.borrow_mut() = Some(gate);
    }

    pub(crate) fn add(&self, phase: Phase, event: &str, f: TriggerFn) -> TriggerId {
        let serial = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut events = self.events.borrow_mut();
        let key: Rc<str> = match events.get_key_value(event) {
            Some((k, _)) => Rc::clone(k),
            None => Rc::from(event),
        };
        events
            .entry(Rc::clone(&key))
            .or_default()
            .list(phase)
            .push_back(Trigger { serial, f });
        TriggerId {
            event: key,
            phase,
            serial,
        }
    }

    /// Twisted's `callWhenRunning`: runs `f` now if `running` (returning
    /// `None`), else registers it as an `after`/`startup` trigger.
    pub(crate) fn call_when_running(&self, running: bool, f: TriggerFn) -> Option<TriggerId> {
        if running {
            drop(f());
            None
        } else {
            Some(self.add(Phase::After, "startup", f))
        }
    }

    pub(crate) fn remove(&self, id: &TriggerId) -> Result<(), TriggerError> {
        let removed = {
            let mut events = self.events.borrow_mut();
            let Some(ev) = events.get_mut(&*id.event) else {
                return Err(TriggerError::UnknownEvent {
                    event: id.event.to_string(),
                    id: id.clone(),
                });
            };
            let list = ev.list(id.phase);
            match list.iter().position(|t| t.serial == id.serial) {
                Some(pos) => list.remove(pos),
                None => {
                    if id.phase == Phase::Before
                        && ev.in_before
                        && ev.finished_before.contains(&id.serial)
                    {
                        return Err(TriggerError::AlreadyFired { id: id.clone() });
                    }
                    return Err(TriggerError::NotRegistered { id: id.clone() });
                }
            }
        };
        // Drop the closure outside the borrow: its captures may touch us.
        drop(removed);
        Ok(())
    }

    /// Ids of the triggers registered and not yet run, in order.
    pub(crate) fn ids(&self, event: &str, phase: Phase) -> Vec<TriggerId> {
        let mut events = self.events.borrow_mut();
        let Some((key, _)) = events.get_key_value(event) else {
            return Vec::new();
        };
        let key = Rc::clone(key);
        let ev = events.get_mut(event).expect("present");
        ev.list(phase)
            .iter()
            .map(|t| TriggerId {
                event: Rc::clone(&key),
                phase,
                serial: t.serial,
            })
            .collect()
    }

    /// Ids of every registered trigger not yet run, in registration order.
    pub(crate) fn all_ids(&self) -> Vec<TriggerId> {
        let events = self.events.borrow();
        let mut ids: Vec<TriggerId> = events
            .iter()
            .flat_map(|(key, ev)| {
                [
                    (Phase::Before, &ev.before),
                    (Phase::During, &ev.during),
                    (Phase::After, &ev.after),
                ]
                .into_iter()
                .flat_map(move |(phase, list)| {
                    list.iter().map(move |t| TriggerId {
                        event: Rc::clone(key),
                        phase,
                        serial: t.serial,
                    })
                })
            })
            .collect();
        ids.sort_by_key(|id| id.serial);
        ids
    }

    /// Mirrors `fireSystemEvent(eventType)`.
    pub(crate) fn fire(self: &Rc<Self>, event: &str) {
        self.fire_with(event, None);
    }

    /// Fires `event`; `on_during` runs first when the `during` phase starts
    /// (the test reactor flips `running` there, as the real reactor's own
    /// `during`/`startup` trigger does).
    pub(crate) fn fire_with(self: &Rc<Self>, event: &str, on_during: Option<Box<dyn FnOnce()>>) {
        {
            let mut events = self.events.borrow_mut();
            match events.get_mut(event) {
                Some(ev) => ev.in_before = true,
                None if on_during.is_some() => {
                    events.insert(Rc::from(event), Event::default());
                    events.get_mut(event).expect("just inserted").in_before = true;
                }
                None => return,
            }
        }
        let mut waits = Vec::new();
        while let Some(t) = self.pop(event, Phase::Before, true) {
            if let Some(d) = run_trigger(t) {
                waits.push(d);
            }
        }
        let this = Rc::clone(self);
        let event: Rc<str> = Rc::from(event);
        // No consume_errors: a failing before-Deferred keeps its failure and is
        // logged as unhandled, and the later phases run anyway (Twisted 2.1 #5).
        let _ = DeferredList::new(waits).build().add_callback(move |_| {
            if let Some(hook) = on_during {
                hook();
            }
            this.continue_event(&event)
        });
    }

    fn pop(&self, event: &str, phase: Phase, record: bool) -> Option<TriggerFn> {
        let mut events = self.events.borrow_mut();
        let ev = events.get_mut(event)?;
        let t = ev.list(phase).pop_front()?;
        if record {
            ev.finished_before.push(t.serial);
        }
        Some(t.f)
    }

    fn continue_event(self: &Rc<Self>, event: &Rc<str>) {
        if let Some(ev) = self.events.borrow_mut().get_mut(&**event) {
            ev.in_before = false;
            ev.finished_before.clear();
        }
        self.run_phase(event, Phase::During);
        // Not in Twisted, whose `during` triggers may block until their work
        // is done: here shutdown holds taken in `during` delay `after`.
        let wait = match &*self.after_gate.borrow() {
            Some(gate) => gate(event),
            None => None,
        };
        match wait {
            Some(d) => {
                // Weak: the parked phase must not keep the events (and the
                // triggers' captures) alive if the reactor is dropped first.
                let (this, event) = (Rc::downgrade(self), Rc::clone(event));
                let _ = d.add_callback(move |()| {
                    if let Some(this) = this.upgrade() {
                        this.run_phase(&event, Phase::After);
                    }
                });
            }
            None => self.run_phase(event, Phase::After),
        }
    }

    fn run_phase(&self, event: &str, phase: Phase) {
        while let Some(f) = self.pop(event, phase, false) {
            // Return values of during/after triggers are ignored.
            drop(run_trigger(f));
        }
    }
}
