//! Helpers shared by the reactor's integration tests: log capture (Twisted's
//! log observers / `flushLoggedErrors`), a safety net that bounds every
//! reactor run, a watchdog for tests that could hang outside a reactor, and
//! bounded waits.
//!
//! Each test file uses only some of these helpers.
#![allow(dead_code)]

use std::cell::Cell;
use std::fmt;
use std::rc::Rc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use reactor::prelude::*;
use reactor::{default_reactor, install_reactor, DelayedCall, Reactor};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// How long any single wait in a test may take before the test fails. Far
/// above what a slow, noisy machine needs; only a real hang reaches it.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Log capture
// ---------------------------------------------------------------------------

/// One event recorded by a capture layer.
#[derive(Clone, Debug)]
pub(crate) struct Logged {
    pub(crate) level: Level,
    pub(crate) message: String,
    /// The other fields, rendered with `Debug` (a `%value` field renders as
    /// its `Display`).
    pub(crate) fields: Vec<(String, String)>,
    /// The name of the thread that emitted the event.
    pub(crate) thread: Option<String>,
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

struct CaptureLayer {
    events: Arc<Mutex<Vec<Logged>>>,
}

impl<S: Subscriber> Layer<S> for CaptureLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut rec = Recorder::default();
        event.record(&mut rec);
        let logged = Logged {
            level: *event.metadata().level(),
            message: rec.message,
            fields: rec.fields,
            thread: std::thread::current().name().map(str::to_owned),
        };
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(logged);
    }
}

/// Runs `f` with a subscriber that records every event emitted **on this
/// thread**, and returns `f`'s result with the events.
pub(crate) fn capture_logs<R>(f: impl FnOnce() -> R) -> (R, Vec<Logged>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let subscriber = tracing_subscriber::registry().with(CaptureLayer {
        events: Arc::clone(&events),
    });
    let r = tracing::subscriber::with_default(subscriber, f);
    let logged = events.lock().unwrap_or_else(|p| p.into_inner()).clone();
    (r, logged)
}

/// Installs (once per test binary) a global subscriber that records events
/// from every thread without a scoped subscriber, such as pool workers, and
/// returns a snapshot of everything it recorded so far. Tests running in
/// parallel share it, so a test filters by something unique to it (a pool
/// name).
pub(crate) fn global_logs() -> Vec<Logged> {
    static EVENTS: OnceLock<Arc<Mutex<Vec<Logged>>>> = OnceLock::new();
    let events = EVENTS.get_or_init(|| {
        let events = Arc::new(Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::registry().with(CaptureLayer {
            events: Arc::clone(&events),
        });
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in the reactor tests");
        events
    });
    events.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// The events whose `pool` field is `pool`.
pub(crate) fn pool_logs(logs: &[Logged], pool: &str) -> Vec<Logged> {
    logs.iter()
        .filter(|l| l.field("pool") == Some(pool))
        .cloned()
        .collect()
}

/// The events whose message contains `needle`.
pub(crate) fn containing<'a>(logs: &'a [Logged], needle: &str) -> Vec<&'a Logged> {
    logs.iter().filter(|l| l.message.contains(needle)).collect()
}

/// The events at error level.
pub(crate) fn errors(logs: &[Logged]) -> Vec<&Logged> {
    logs.iter().filter(|l| l.level == Level::ERROR).collect()
}

// ---------------------------------------------------------------------------
// Bounding reactor runs
// ---------------------------------------------------------------------------

/// A `call_later` that stops the reactor if the test has not finished in
/// time; [`SafetyNet::disarm`] then fails the test.
pub(crate) struct SafetyNet {
    call: DelayedCall,
    fired: Rc<Cell<bool>>,
}

impl SafetyNet {
    pub(crate) fn arm(reactor: &Reactor) -> SafetyNet {
        Self::arm_for(reactor, TIMEOUT)
    }

    pub(crate) fn arm_for(reactor: &Reactor, after: Duration) -> SafetyNet {
        let fired = Rc::new(Cell::new(false));
        let (f, r) = (fired.clone(), reactor.clone());
        let call = reactor.call_later(after, move || {
            f.set(true);
            let _ = r.stop();
        });
        SafetyNet { call, fired }
    }

    /// True if the net caught a hang.
    pub(crate) fn fired(&self) -> bool {
        self.fired.get()
    }

    /// Fails the test if the net fired; cancels it otherwise.
    pub(crate) fn disarm(self) {
        assert!(
            !self.fired.get(),
            "safety net fired: the reactor did not stop on its own within {TIMEOUT:?}"
        );
    }
}

impl Drop for SafetyNet {
    fn drop(&mut self) {
        // Cancelling drops the closure, which holds a reactor clone.
        if self.call.active() {
            let _ = self.call.cancel();
        }
    }
}

/// Runs `reactor` until it stops, failing the test if the safety net had to
/// stop it.
pub(crate) fn run_bounded(reactor: &Reactor) {
    let net = SafetyNet::arm(reactor);
    reactor.run().expect("the reactor runs");
    net.disarm();
}

/// A fresh reactor, installed as this thread's default so `Send` closures
/// queued with `call_from_thread` can reach it on the loop thread through
/// [`default_reactor`].
pub(crate) fn new_default_reactor() -> Reactor {
    let reactor = Reactor::new().expect("a reactor");
    install_reactor(reactor.clone());
    reactor
}

/// Stops this thread's default reactor; for `Send` closures that run on the
/// loop thread.
pub(crate) fn stop_default() {
    default_reactor()
        .stop()
        .expect("the default reactor is running");
}

// ---------------------------------------------------------------------------
// Waiting without sleeping as synchronisation
// ---------------------------------------------------------------------------

/// Polls `cond` until it holds; panics naming `what` after [`TIMEOUT`]. For
/// states no event announces (a worker becoming idle), as Twisted's
/// `test_workerStateTransition` polls.
pub(crate) fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Aborts the process if it is still alive after `limit`: the last resort for
/// a test that could hang where no reactor safety net can reach. Dropping the
/// guard disarms it.
pub(crate) struct Watchdog {
    done: Option<crossbeam_channel::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    pub(crate) fn start(label: &'static str, limit: Duration) -> Watchdog {
        let (tx, rx) = crossbeam_channel::bounded::<()>(1);
        let thread = std::thread::Builder::new()
            .name(format!("watchdog-{label}"))
            .spawn(move || {
                if let Err(crossbeam_channel::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                    // The panic hook prints the message; unwinding this thread
                    // alone would not end the hung test, so abort.
                    let _ = std::panic::catch_unwind(|| {
                        panic!("watchdog: {label} still running after {limit:?}; aborting")
                    });
                    std::process::abort();
                }
            })
            .expect("spawn the watchdog");
        Watchdog {
            done: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.done.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
