//! [`Failure`]: an error travelling down a Deferred's errback chain.
//!
//! Mirrors `twisted.python.failure.Failure`. A `Failure` holds any
//! `Error + Send + Sync + 'static` (so it can be produced on a worker thread and
//! delivered on the loop thread), or a caught panic, together with where it was
//! raised. It is cheap to clone (one `Arc`).

use std::any::Any;
use std::backtrace::{Backtrace, BacktraceStatus};
use std::error::Error as StdError;
use std::fmt;
use std::panic::Location;
use std::sync::Arc;

/// The error type a [`Failure`] can carry.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// An error in flight down an errback chain.
///
/// Mirrors Twisted's `Failure`: [`check`](Failure::check) and
/// [`trap`](Failure::trap) select on the error's type (walking the error's
/// `source()` chain, the Rust counterpart of matching a base class),
/// [`error_message`](Failure::error_message) is `getErrorMessage()`,
/// [`type_name`](Failure::type_name) names the original error type, and
/// [`location`](Failure::location) says where the failure was created
/// (`#[track_caller]`, so a `?` in a callback points at that `?`).
///
/// `Failure` deliberately does not implement [`std::error::Error`]: that is what
/// lets any error convert into it with `?` (like `anyhow::Error`).
///
/// # Examples
///
/// ```
/// use deferred::Failure;
/// use std::io;
///
/// let f = Failure::new(io::Error::new(io::ErrorKind::NotFound, "no such table"));
/// assert!(f.check::<io::Error>().is_some());
/// assert_eq!(f.error_message(), "no such table");
/// // Context keeps the original error reachable.
/// let f = f.context("while loading users");
/// assert_eq!(f.error_message(), "while loading users: no such table");
/// assert_eq!(f.trap::<io::Error>().unwrap().kind(), io::ErrorKind::NotFound);
/// // Display is the message; `{:#}` puts the error's type in front.
/// assert_eq!(f.to_string(), "while loading users: no such table");
/// assert_eq!(format!("{f:#}"), "std::io::error::Error: while loading users: no such table");
/// ```
#[derive(Clone)]
pub struct Failure {
    inner: Arc<Inner>,
}

struct Inner {
    error: Arc<dyn StdError + Send + Sync + 'static>,
    type_name: &'static str,
    location: &'static Location<'static>,
    backtrace: Option<Arc<Backtrace>>,
    /// Context added by later steps, innermost first.
    context: Vec<String>,
}

/// The error a caught panic becomes.
///
/// A panic inside a callback, an errback, an interaction or a thread-pool job
/// is caught and turned into a [`Failure`] carrying this error, so a panic never
/// kills a worker or leaves a Deferred unfired.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("panicked: {message}")]
pub struct PanicError {
    /// The panic payload, if it was a string; otherwise a placeholder.
    pub message: String,
}

impl PanicError {
    /// Builds a `PanicError` from a payload caught by `std::panic::catch_unwind`.
    pub fn from_payload(payload: &(dyn Any + Send)) -> Self {
        let message = if let Some(s) = payload.downcast_ref::<&'static str>() {
            (*s).to_owned()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "<non-string panic payload>".to_owned()
        };
        PanicError { message }
    }
}

/// A plain message used as an error, for [`Failure::msg`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MessageError(pub String);

impl Failure {
    /// Wraps an error. Mirrors `Failure(exc)`.
    #[track_caller]
    pub fn new<E>(error: E) -> Self
    where
        E: StdError + Send + Sync + 'static,
    {
        Self::build(
            Arc::new(error),
            std::any::type_name::<E>(),
            Location::caller(),
        )
    }

    /// Wraps an already boxed error, keeping its dynamic type reachable by
    /// [`check`](Failure::check).
    #[track_caller]
    pub fn from_boxed(error: BoxError) -> Self {
        Self::build(Arc::from(error), "dyn Error", Location::caller())
    }

    /// A failure carrying only a message ([`MessageError`]).
    #[track_caller]
    pub fn msg(message: impl fmt::Display) -> Self {
        Self::new(MessageError(message.to_string()))
    }

    /// Turns a payload caught by `std::panic::catch_unwind` into a failure
    /// carrying a [`PanicError`].
    #[track_caller]
    pub fn from_panic(payload: Box<dyn Any + Send>) -> Self {
        Self::new(PanicError::from_payload(&*payload))
    }

    fn build(
        error: Arc<dyn StdError + Send + Sync + 'static>,
        type_name: &'static str,
        location: &'static Location<'static>,
    ) -> Self {
        // `Backtrace::capture` is cheap unless RUST_BACKTRACE/RUST_LIB_BACKTRACE
        // asks for it; keep only real ones.
        let bt = Backtrace::capture();
        let backtrace = (bt.status() == BacktraceStatus::Captured).then(|| Arc::new(bt));
        Failure {
            inner: Arc::new(Inner {
                error,
                type_name,
                location,
                backtrace,
                context: Vec::new(),
            }),
        }
    }

    /// Returns a failure with `message` added as context; the original error
    /// (and so [`check`](Failure::check), [`type_name`](Failure::type_name),
    /// [`location`](Failure::location)) is kept.
    pub fn context(&self, message: impl fmt::Display) -> Self {
        let mut context = self.inner.context.clone();
        context.push(message.to_string());
        Failure {
            inner: Arc::new(Inner {
                error: Arc::clone(&self.inner.error),
                type_name: self.inner.type_name,
                location: self.inner.location,
                backtrace: self.inner.backtrace.clone(),
                context,
            }),
        }
    }

    /// The original error. Mirrors `Failure.value`.
    pub fn error(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.inner.error
    }

    /// A shared handle to the original error, for callers that need to keep it
    /// beyond the failure.
    pub fn error_arc(&self) -> Arc<dyn StdError + Send + Sync + 'static> {
        Arc::clone(&self.inner.error)
    }

    /// The original error if it is an `E` (no walk of the source chain).
    pub fn downcast_ref<E: StdError + 'static>(&self) -> Option<&E> {
        let e: &(dyn StdError + 'static) = &*self.inner.error;
        e.downcast_ref::<E>()
    }

    /// Returns the first error of type `E` in the failure's error and its
    /// `source()` chain, or `None`. Mirrors `Failure.check(*types)`, where
    /// matching a base class becomes walking the chain of causes.
    pub fn check<E: StdError + 'static>(&self) -> Option<&E> {
        let mut cur: Option<&(dyn StdError + 'static)> = Some(&*self.inner.error);
        while let Some(e) = cur {
            if let Some(found) = e.downcast_ref::<E>() {
                return Some(found);
            }
            cur = e.source();
        }
        None
    }

    /// Like [`check`](Failure::check), but hands the failure back when it does
    /// not match, so an errback can write `let e = failure.trap::<E>()?;` and
    /// let any other failure continue down the chain. Mirrors `Failure.trap`.
    pub fn trap<E: StdError + 'static>(&self) -> Result<&E, Failure> {
        self.check::<E>().ok_or_else(|| self.clone())
    }

    /// True if the failure came from a caught panic.
    pub fn is_panic(&self) -> bool {
        self.downcast_ref::<PanicError>().is_some()
    }

    /// The type name of the original error, e.g. `std::io::error::Error`.
    /// Mirrors `Failure.type`.
    pub fn type_name(&self) -> &'static str {
        self.inner.type_name
    }

    /// The message: any context, outermost first, then the error's `Display`.
    /// Mirrors `Failure.getErrorMessage()`.
    pub fn error_message(&self) -> String {
        let mut s = String::new();
        for c in self.inner.context.iter().rev() {
            s.push_str(c);
            s.push_str(": ");
        }
        s.push_str(&self.inner.error.to_string());
        s
    }

    /// Where the failure was created.
    pub fn location(&self) -> &'static Location<'static> {
        self.inner.location
    }

    /// The backtrace captured at creation, when `RUST_BACKTRACE` or
    /// `RUST_LIB_BACKTRACE` enabled capturing.
    pub fn backtrace(&self) -> Option<&Backtrace> {
        self.inner.backtrace.as_deref()
    }

    /// A multi-line report: type, message, location, the chain of causes and the
    /// backtrace if any. Mirrors `Failure.getTraceback()`.
    pub fn traceback(&self) -> String {
        use fmt::Write;
        let mut s = format!(
            "Failure {}: {}\n  at {}",
            self.type_name(),
            self.error_message(),
            self.location()
        );
        let mut cur = self.inner.error.source();
        while let Some(e) = cur {
            let _ = write!(s, "\n  caused by: {e}");
            cur = e.source();
        }
        if let Some(bt) = self.backtrace() {
            let _ = write!(s, "\n{bt}");
        }
        s
    }

    /// True if both handles share the same failure object.
    pub fn ptr_eq(a: &Failure, b: &Failure) -> bool {
        Arc::ptr_eq(&a.inner, &b.inner)
    }
}

impl<E> From<E> for Failure
where
    E: StdError + Send + Sync + 'static,
{
    #[track_caller]
    fn from(error: E) -> Self {
        Failure::new(error)
    }
}

impl fmt::Display for Failure {
    /// The error message, as [`error_message`](Failure::error_message)
    /// (Twisted's `getErrorMessage()`), which is what a reader of a log line
    /// or a program's output wants first. The alternate form (`{:#}`) puts
    /// the original error's type in front, as Python prints an exception:
    /// `std::io::error::Error: no such table`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            write!(f, "{}: {}", self.type_name(), self.error_message())
        } else {
            f.write_str(&self.error_message())
        }
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "<Failure {}: {} at {}>",
            self.type_name(),
            self.error_message(),
            self.location()
        )
    }
}

/// Logs `failure` at error level and returns it, for use as an errback that
/// passes the failure on. Mirrors `twisted.internet.defer.logError`.
pub fn log_error(failure: Failure) -> Failure {
    tracing::error!(failure = %failure, location = %failure.location(), "{}", failure.traceback());
    failure
}
