//! Typed errors of the reactor, each mirroring a Twisted exception.
//! ([`TriggerError`](crate::TriggerError) lives beside the triggers, and the
//! thread pool's configuration errors beside the pool.)

/// `run()` while the reactor is already running. Mirrors
/// `twisted.internet.error.ReactorAlreadyRunning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("reactor already running")]
pub struct ReactorAlreadyRunning;

/// `run()` after the reactor was stopped. Mirrors
/// `twisted.internet.error.ReactorNotRestartable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("reactor cannot be restarted after stop()")]
pub struct ReactorNotRestartable;

/// `stop()` on a reactor that is not running. Mirrors
/// `twisted.internet.error.ReactorNotRunning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Can't stop reactor that isn't running.")]
pub struct ReactorNotRunning;

/// Why [`Reactor::run`](crate::Reactor::run) refused to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    /// See [`ReactorAlreadyRunning`].
    #[error(transparent)]
    AlreadyRunning(#[from] ReactorAlreadyRunning),
    /// See [`ReactorNotRestartable`].
    #[error(transparent)]
    NotRestartable(#[from] ReactorNotRestartable),
}

/// Errors of [`DelayedCall`](crate::DelayedCall) operations. Twisted's
/// `AlreadyCalled` and `AlreadyCancelled` (both `ValueError`s), with their
/// exact messages.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum DelayedCallError {
    /// Mirrors `twisted.internet.error.AlreadyCalled`.
    #[error("Tried to cancel an already-called event.")]
    AlreadyCalled,
    /// Mirrors `twisted.internet.error.AlreadyCancelled`.
    #[error("Tried to cancel an already-cancelled event.")]
    AlreadyCancelled,
    /// `delay()` with a non-finite number of seconds.
    #[error("delay must be a finite number of seconds, got {0}")]
    InvalidDelay(f64),
}

/// Work was submitted to a [`ThreadPool`](crate::ThreadPool) that has been
/// stopped. Twisted drops such work silently and its Deferred never fires;
/// here the Deferred fails with this error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("thread pool {name:?} is stopped; the job was not run")]
pub struct PoolStopped {
    /// The pool's name.
    pub name: String,
}

/// Why [`blocking_call_from_thread`](crate::blocking_call_from_thread) could
/// not deliver a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockingCallError {
    /// Called on the loop thread itself, where it would deadlock (Twisted
    /// deadlocks here).
    #[error("blocking_call_from_thread called on the reactor's own thread; it would deadlock")]
    OnLoopThread,
    /// The reactor went away before running the call.
    #[error("the reactor was dropped before the call ran")]
    ReactorGone,
}
