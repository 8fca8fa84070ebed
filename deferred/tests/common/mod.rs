//! Helpers shared by the integration tests: a deterministic fake clock
//! (Twisted's `twisted.internet.task.Clock`) and a `tracing` capture layer
//! (Twisted's log observers / `flushLoggedErrors`).
//!
//! Each test file uses only some of these helpers.
#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;
use std::sync::Once;
use std::time::Duration;

use deferred::{ReactorTime, ScheduledCall};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

// ---------------------------------------------------------------------------
// Fake clock
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum CallState {
    Pending,
    Called,
    Cancelled,
}

struct Call {
    when: f64,
    seq: u64,
    state: Cell<CallState>,
    func: RefCell<Option<Box<dyn FnOnce()>>>,
}

#[derive(Default)]
struct ClockState {
    now: f64,
    next_seq: u64,
    calls: Vec<Rc<Call>>,
}

/// A deterministic clock: time only moves on [`Clock::advance`], which runs
/// the calls that became due in time order (FIFO among calls due at the same
/// time), like Twisted's `task.Clock`.
#[derive(Clone, Default)]
pub(crate) struct Clock {
    state: Rc<RefCell<ClockState>>,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Moves time forward by `secs` and runs every call that is now due.
    /// A call is marked as no longer active before it runs (Twisted sets
    /// `call.called` first).
    pub(crate) fn advance(&self, secs: f64) {
        self.state.borrow_mut().now += secs;
        loop {
            let next = {
                let mut st = self.state.borrow_mut();
                st.calls.retain(|c| c.state.get() == CallState::Pending);
                let now = st.now;
                let due = st
                    .calls
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.when <= now)
                    .min_by(|(_, a), (_, b)| a.when.total_cmp(&b.when).then(a.seq.cmp(&b.seq)))
                    .map(|(i, _)| i);
                due.map(|i| st.calls.remove(i))
            };
            let Some(call) = next else { break };
            call.state.set(CallState::Called);
            let f = call.func.borrow_mut().take();
            if let Some(f) = f {
                f();
            }
        }
    }

    /// How many scheduled calls are still active (neither run nor cancelled).
    pub(crate) fn active_calls(&self) -> usize {
        self.state
            .borrow()
            .calls
            .iter()
            .filter(|c| c.state.get() == CallState::Pending)
            .count()
    }
}

impl ReactorTime for Clock {
    fn seconds(&self) -> f64 {
        self.state.borrow().now
    }

    fn call_later_boxed(&self, delay: Duration, f: Box<dyn FnOnce()>) -> Box<dyn ScheduledCall> {
        let mut st = self.state.borrow_mut();
        let seq = st.next_seq;
        st.next_seq += 1;
        let call = Rc::new(Call {
            when: st.now + delay.as_secs_f64(),
            seq,
            state: Cell::new(CallState::Pending),
            func: RefCell::new(Some(f)),
        });
        st.calls.push(Rc::clone(&call));
        Box::new(CallHandle(call))
    }
}

struct CallHandle(Rc<Call>);

impl ScheduledCall for CallHandle {
    fn active(&self) -> bool {
        self.0.state.get() == CallState::Pending
    }

    fn cancel(&self) {
        if self.0.state.get() == CallState::Pending {
            self.0.state.set(CallState::Cancelled);
            let f = self.0.func.borrow_mut().take();
            drop(f);
        }
    }
}

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

thread_local! {
    /// The events recorded on this thread while [`capture_logs`] runs.
    static SINK: RefCell<Option<Vec<Logged>>> = const { RefCell::new(None) };
}

/// Routes every event to the emitting thread's [`SINK`], if one is active.
struct CaptureLayer;

impl<S: Subscriber> Layer<S> for CaptureLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut rec = Recorder::default();
        event.record(&mut rec);
        let logged = Logged {
            level: *event.metadata().level(),
            message: rec.message,
            fields: rec.fields,
        };
        SINK.with(|sink| {
            if let Some(events) = sink.borrow_mut().as_mut() {
                events.push(logged);
            }
        });
    }
}

/// Installs the capturing subscriber as the global default, once.
///
/// A global default rather than `tracing::subscriber::with_default`: with a
/// single scoped dispatcher, tracing computes a callsite's interest from the
/// default of whichever thread hits it first, so a callsite first reached by a
/// test running in parallel without a subscriber would be cached as disabled
/// and the capturing test would miss its events.
fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(CaptureLayer))
            .expect("no other global subscriber in the test binaries");
    });
    // Re-evaluate callsites cached before the subscriber existed.
    tracing::callsite::rebuild_interest_cache();
}

/// Runs `f`, recording every event emitted on this thread meanwhile, and
/// returns `f`'s result with the events.
pub(crate) fn capture_logs<R>(f: impl FnOnce() -> R) -> (R, Vec<Logged>) {
    install();
    SINK.with(|sink| *sink.borrow_mut() = Some(Vec::new()));
    let r = f();
    let logged = SINK
        .with(|sink| sink.borrow_mut().take())
        .unwrap_or_default();
    (r, logged)
}

/// The events whose message starts with `prefix`.
pub(crate) fn with_prefix<'a>(logs: &'a [Logged], prefix: &str) -> Vec<&'a Logged> {
    logs.iter()
        .filter(|l| l.message.starts_with(prefix))
        .collect()
}

/// The "Unhandled error in Deferred" events.
pub(crate) fn unhandled(logs: &[Logged]) -> Vec<&Logged> {
    with_prefix(logs, "Unhandled error in Deferred")
}

// ---------------------------------------------------------------------------
// Small recording helpers
// ---------------------------------------------------------------------------

/// A shared, growable record of what callbacks saw, in call order.
pub(crate) type Log<T> = Rc<RefCell<Vec<T>>>;

pub(crate) fn new_log<T>() -> Log<T> {
    Rc::new(RefCell::new(Vec::new()))
}

/// A test error type, the counterpart of test_defer.py's `GenericError`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GenericError(pub(crate) String);

impl fmt::Display for GenericError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GenericError {}

pub(crate) fn generic(msg: &str) -> GenericError {
    GenericError(msg.to_owned())
}
