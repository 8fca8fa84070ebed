//! The error types the Deferred machinery itself raises.

use std::panic::Location;
use std::time::Duration;

use crate::Failure;

/// A Deferred was fired twice. Mirrors `twisted.internet.defer.AlreadyCalledError`.
///
/// Unlike Twisted (which needs debug mode for it), the message always says where
/// the Deferred was created, first fired and fired again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Deferred created at {created} was already called (first at {first_fired}); fired again at {fired_again}")]
pub struct AlreadyCalledError {
    /// Where the Deferred was created.
    pub created: &'static Location<'static>,
    /// Where it was first fired.
    pub first_fired: &'static Location<'static>,
    /// Where the rejected second fire came from.
    pub fired_again: &'static Location<'static>,
}

/// The failure a cancelled Deferred fires with. Mirrors
/// `twisted.internet.defer.CancelledError`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, thiserror::Error)]
#[error("Deferred was cancelled")]
pub struct CancelledError;

/// A Deferred given a timeout with [`Deferred::add_timeout`](crate::Deferred::add_timeout)
/// did not fire in time. Mirrors `twisted.internet.defer.TimeoutError`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Deferred timed out after {:?}", self.timeout)]
pub struct TimeoutError {
    /// How long it waited.
    pub timeout: Duration,
}

/// The first failure of a [`DeferredList`](crate::DeferredList) built with
/// `fire_on_one_errback`, or of [`gather_results`](crate::gather_results).
/// Mirrors `twisted.internet.defer.FirstError`.
///
/// Its `source()` is the sub-failure's error, so
/// `failure.check::<OriginalError>()` finds the original error through it.
#[derive(Debug, Clone)]
pub struct FirstError {
    /// The failure of the input that failed first. Mirrors `subFailure`.
    pub sub_failure: Failure,
    /// The position of that input in the list.
    pub index: usize,
}

impl std::fmt::Display for FirstError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FirstError[#{}, {}]", self.index, self.sub_failure)
    }
}

impl std::error::Error for FirstError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.sub_failure.error())
    }
}

impl PartialEq for FirstError {
    /// Compares by index and by the identity of the sub-failure, as Twisted
    /// compares `(index, subFailure)`.
    fn eq(&self, other: &Self) -> bool {
        self.index == other.index && Failure::ptr_eq(&self.sub_failure, &other.sub_failure)
    }
}

/// Every input of [`race`](crate::race) failed. Mirrors
/// `twisted.internet.defer.FailureGroup`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("all {} raced Deferreds failed", failures.len())]
pub struct FailureGroup {
    /// The failures, in the order they arrived.
    pub failures: Vec<Failure>,
}
