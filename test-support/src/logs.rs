//! Log capture: Twisted's log observers and trial's `flushLoggedErrors`.
//!
//! One global subscriber is installed once per test binary. Scoped
//! subscribers (`tracing::subscriber::with_default`) are unreliable for
//! this: `tracing` caches each call site's interest globally, computed from
//! whichever thread reaches it first, so a call site first hit by a test
//! running in parallel without a subscriber would be cached as disabled and
//! the capturing test would miss its events.
//!
//! A [`LogCapture`] records the events emitted on the thread that started it
//! and on every thread whose name contains one of its watched tokens: a
//! pool's worker threads are named `PoolThread-<name>-<n>` and a
//! `ConnectionPool`'s stopper thread `<cp_name>-stopper`, so watching a
//! unique name attributes a pool's events to the test that owns it while
//! other tests run in parallel. [`LogCapture::all_threads`] records events
//! from every thread, for tests that filter by a field unique to them.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::thread::ThreadId;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// One recorded event.
#[derive(Clone, Debug)]
pub struct Logged {
    /// Its level.
    pub level: Level,
    /// The message text.
    pub message: String,
    /// The other fields, rendered with `Debug` (a `%value` field renders as
    /// its `Display`).
    pub fields: Vec<(String, String)>,
    /// The name of the thread that emitted it.
    pub thread: Option<String>,
}

impl Logged {
    /// The rendered value of field `name`, if the event had one.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `failure` field: what `log.err(failure, why)` carries.
    pub fn failure(&self) -> Option<&str> {
        self.field("failure")
    }

    /// True at error level (Twisted's `log.err`).
    pub fn is_error(&self) -> bool {
        self.level == Level::ERROR
    }
}

impl fmt::Display for Logged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.level, self.message)?;
        for (k, v) in &self.fields {
            write!(f, " {k}={v}")?;
        }
        Ok(())
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

/// Which threads a capture listens to.
enum Threads {
    /// The starting thread, plus threads whose names contain a token.
    Own(ThreadId, Mutex<Vec<String>>),
    /// Every thread.
    All,
}

struct Capture {
    id: u64,
    threads: Threads,
    events: Mutex<Vec<Logged>>,
}

impl Capture {
    fn wants(&self, tid: ThreadId, name: Option<&str>) -> bool {
        match &self.threads {
            Threads::All => true,
            Threads::Own(own, tokens) => {
                *own == tid
                    || name.is_some_and(|n| lock(tokens).iter().any(|t| n.contains(t.as_str())))
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

static CAPTURES: Mutex<Vec<Arc<Capture>>> = Mutex::new(Vec::new());

/// The calling thread's id and name. Guarded: it may run in a thread-local
/// destructor (a worker closing its connection as it exits), where
/// `std::thread::current` can panic.
fn current_thread() -> Option<(ThreadId, Option<String>)> {
    std::panic::catch_unwind(|| {
        let t = std::thread::current();
        (t.id(), t.name().map(str::to_owned))
    })
    .ok()
}

/// Routes every event to the captures that want it.
struct CaptureLayer;

impl<S: Subscriber> Layer<S> for CaptureLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let captures: Vec<Arc<Capture>> = lock(&CAPTURES).clone();
        if captures.is_empty() {
            return;
        }
        let Some((tid, name)) = current_thread() else {
            return;
        };
        let matching: Vec<&Arc<Capture>> = captures
            .iter()
            .filter(|c| c.wants(tid, name.as_deref()))
            .collect();
        if matching.is_empty() {
            return;
        }
        let mut rec = Recorder::default();
        event.record(&mut rec);
        let logged = Logged {
            level: *event.metadata().level(),
            message: rec.message,
            fields: rec.fields,
            thread: name,
        };
        for c in matching {
            lock(&c.events).push(logged.clone());
        }
    }
}

/// Installs the capturing subscriber as the global default (once per
/// process) and re-evaluates call sites cached before it existed.
///
/// # Panics
/// If another global subscriber was installed first.
pub fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(CaptureLayer))
            .expect("no other global subscriber in a test binary that captures logs");
    });
    tracing::callsite::rebuild_interest_cache();
}

/// Records events for one test until dropped; see the module docs.
pub struct LogCapture {
    inner: Arc<Capture>,
}

impl fmt::Debug for LogCapture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("LogCapture");
        d.field("id", &self.inner.id);
        match &self.inner.threads {
            Threads::All => d.field("threads", &"all"),
            Threads::Own(_, tokens) => d.field("tokens", &*lock(tokens)),
        };
        d.field("events", &lock(&self.inner.events).len()).finish()
    }
}

impl LogCapture {
    fn begin(threads: Threads) -> LogCapture {
        static IDS: AtomicU64 = AtomicU64::new(1);
        install();
        let inner = Arc::new(Capture {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            threads,
            events: Mutex::new(Vec::new()),
        });
        lock(&CAPTURES).push(Arc::clone(&inner));
        LogCapture { inner }
    }

    /// Starts recording the events of the calling thread.
    pub fn start() -> LogCapture {
        Self::begin(Threads::Own(
            std::thread::current().id(),
            Mutex::new(Vec::new()),
        ))
    }

    /// Starts recording the events of every thread. Tests running in
    /// parallel log into it too, so a test looks only at events carrying
    /// something unique to it (a pool's name, see
    /// [`with_field`](Self::with_field)).
    pub fn all_threads() -> LogCapture {
        Self::begin(Threads::All)
    }

    /// Also records events of threads whose name contains `token` followed
    /// by `-` (a unique pool name: `PoolThread-<token>-<n>`,
    /// `<token>-stopper`). The `-` keeps `x-1` from matching the threads of
    /// `x-12`. No effect on an [`all_threads`](Self::all_threads) capture.
    pub fn watch_threads(&self, token: &str) {
        if let Threads::Own(_, tokens) = &self.inner.threads {
            lock(tokens).push(format!("{token}-"));
        }
    }

    /// Every event recorded so far, in order.
    pub fn events(&self) -> Vec<Logged> {
        lock(&self.inner.events).clone()
    }

    /// The messages recorded so far, in order.
    pub fn messages(&self) -> Vec<String> {
        self.events().into_iter().map(|e| e.message).collect()
    }

    /// The error-level events recorded so far (and not flushed).
    pub fn errors(&self) -> Vec<Logged> {
        self.events().into_iter().filter(Logged::is_error).collect()
    }

    /// How many events have exactly this message.
    pub fn count(&self, message: &str) -> usize {
        self.events()
            .iter()
            .filter(|e| e.message == message)
            .count()
    }

    /// The events whose field `name` renders as `value` (a thread pool's
    /// events carry `pool = <its name>`).
    pub fn with_field(&self, name: &str, value: &str) -> Vec<Logged> {
        self.events()
            .into_iter()
            .filter(|e| e.field(name) == Some(value))
            .collect()
    }

    /// Removes and returns the error events whose `failure` mentions
    /// `failure_contains`. Twisted's `flushLoggedErrors(SomeError)`: the log
    /// keeps only the failure's text, so a test names a marker of the error
    /// (its type or message) instead of a class.
    pub fn flush_logged_errors(&self, failure_contains: &str) -> Vec<Logged> {
        let mut events = lock(&self.inner.events);
        let (flushed, kept): (Vec<Logged>, Vec<Logged>) =
            std::mem::take(&mut *events).into_iter().partition(|e| {
                e.is_error() && e.failure().is_some_and(|f| f.contains(failure_contains))
            });
        *events = kept;
        flushed
    }

    /// Removes and returns every error event. Twisted's
    /// `flushLoggedErrors()` without arguments.
    pub fn flush_all_errors(&self) -> Vec<Logged> {
        let mut events = lock(&self.inner.events);
        let (flushed, kept): (Vec<Logged>, Vec<Logged>) = std::mem::take(&mut *events)
            .into_iter()
            .partition(Logged::is_error);
        *events = kept;
        flushed
    }
}

impl Drop for LogCapture {
    fn drop(&mut self) {
        lock(&CAPTURES).retain(|c| c.id != self.inner.id);
    }
}

/// Runs `f`, recording every event emitted on this thread meanwhile, and
/// returns `f`'s result with the events, in order.
pub fn capture_logs<R>(f: impl FnOnce() -> R) -> (R, Vec<Logged>) {
    let capture = LogCapture::start();
    let r = f();
    (r, capture.events())
}

/// Renders events one per line, for assertion messages.
pub fn render(events: &[Logged]) -> String {
    events
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The events whose message contains `text`.
pub fn containing<'a>(logs: &'a [Logged], text: &str) -> Vec<&'a Logged> {
    logs.iter().filter(|l| l.message.contains(text)).collect()
}

/// The events whose message starts with `prefix`.
pub fn with_prefix<'a>(logs: &'a [Logged], prefix: &str) -> Vec<&'a Logged> {
    logs.iter()
        .filter(|l| l.message.starts_with(prefix))
        .collect()
}

/// The events at error level.
pub fn errors(logs: &[Logged]) -> Vec<&Logged> {
    logs.iter().filter(|l| l.is_error()).collect()
}

/// The error-level events whose message contains `text`.
pub fn errors_containing<'a>(logs: &'a [Logged], text: &str) -> Vec<&'a Logged> {
    logs.iter()
        .filter(|l| l.is_error() && l.message.contains(text))
        .collect()
}
