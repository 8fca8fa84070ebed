//! Typed errors of the reactor, each mirroring a Twisted exception.

use crate::triggers::{Phase, TriggerId};

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
