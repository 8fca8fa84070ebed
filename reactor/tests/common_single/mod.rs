//! Helpers shared by the single-threaded reactor tests (`system_events.rs`,
//! `reactor_core.rs`, `delayed_call.rs`, `clock.rs`, `fake_reactor.rs`):
//! a `tracing` capture layer standing in for Twisted's log observers and
//! `flushLoggedErrors`, and a bounded `run` standing in for trial's
//! `ReactorBuilder.runReactor` (which crashes the reactor after a timeout).
//!
//! Each test file uses only some of these helpers.
#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reactor::prelude::*;
use reactor::{Reactor, RunError};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

// ---------------------------------------------------------------------------
// Log capture
// ---------------------------------------------------------------------------

/// One event recorded by [`capture_logs`].
#[derive(Clone, Debug)]
pub(crate) struct Logged {
    pub(crate) level: Level,
    pub(crate) message: String,
    /// The other fields, rendered with `Debug` (a `%value` field renders as
    /// its `Display`).
    pub(crate) fields: Vec<(String, String)>,
}

impl Logged {
    /// The rendered value of the field `name`, if the event had one.
    pub(crate) fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Recorder {
    message: String,
    fields: Vec<(String, String)>,
}

impl Visit for Recorder {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.fields
                .push((field.name().to_owned(), format!("{value:?}")));
        }
    }
}

struct CaptureLayer {
    events: Arc<Mutex<Vec<Logged>>>,
}

impl<S: Subscriber> Layer<S> for CaptureLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut rec = Recorder::default();
        event.record(&mut rec);
        self.events.lock().unwrap().push(Logged {
            level: *event.metadata().level(),
            message: rec.message,
            fields: rec.fields,
        });
    }
}

/// Runs `f` with a subscriber that records every event emitted on this
/// thread, and returns `f`'s result with the events, in order.
pub(crate) fn capture_logs<R>(f: impl FnOnce() -> R) -> (R, Vec<Logged>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let subscriber = tracing_subscriber::registry().with(CaptureLayer {
        events: Arc::clone(&events),
    });
    let r = tracing::subscriber::with_default(subscriber, f);
    let logged = events.lock().unwrap().clone();
    (r, logged)
}

/// The events whose message contains `text`.
pub(crate) fn containing<'a>(logs: &'a [Logged], text: &str) -> Vec<&'a Logged> {
    logs.iter().filter(|l| l.message.contains(text)).collect()
}

/// The error-level events whose message contains `text`.
pub(crate) fn errors_containing<'a>(logs: &'a [Logged], text: &str) -> Vec<&'a Logged> {
    logs.iter()
        .filter(|l| l.level == Level::ERROR && l.message.contains(text))
        .collect()
}

// ---------------------------------------------------------------------------
// Event recording
// ---------------------------------------------------------------------------

/// A shared, append-only list of what happened, for closures to push onto.
#[derive(Clone)]
pub(crate) struct Events<T>(Rc<RefCell<Vec<T>>>);

impl<T: Clone> Events<T> {
    pub(crate) fn new() -> Self {
        Events(Rc::new(RefCell::new(Vec::new())))
    }

    pub(crate) fn push(&self, v: T) {
        self.0.borrow_mut().push(v);
    }

    /// A closure that pushes `v` when called (Twisted's `events.append, v`).
    pub(crate) fn pusher(&self, v: T) -> impl FnOnce() + 'static
    where
        T: 'static,
    {
        let me = self.clone();
        move || me.push(v)
    }

    pub(crate) fn get(&self) -> Vec<T> {
        self.0.borrow().clone()
    }

    pub(crate) fn len(&self) -> usize {
        self.0.borrow().len()
    }
}

// ---------------------------------------------------------------------------
// Running the real reactor, bounded in time
// ---------------------------------------------------------------------------

/// How long a test lets the real reactor run before the safety net crashes it.
/// Generous, because the machine may be slow; a passing test never gets close.
pub(crate) const SAFETY_NET: Duration = Duration::from_secs(30);

/// Runs `reactor` with a safety net: a timed call that crashes it after
/// [`SAFETY_NET`]. Panics if the safety net had to fire (the test would
/// otherwise hang); otherwise cancels it and returns what `run` returned.
/// Mirrors trial's `ReactorBuilder.runReactor`.
pub(crate) fn run_bounded(reactor: &Reactor) -> Result<(), RunError> {
    let timed_out = Rc::new(Cell::new(false));
    let (flag, r) = (Rc::clone(&timed_out), reactor.clone());
    let net = reactor.call_later(SAFETY_NET, move || {
        flag.set(true);
        r.crash();
    });
    let result = reactor.run();
    if net.active() {
        net.cancel().expect("the safety net is active");
    }
    assert!(
        !timed_out.get(),
        "the reactor did not stop within {SAFETY_NET:?}; the safety net crashed it"
    );
    result
}
