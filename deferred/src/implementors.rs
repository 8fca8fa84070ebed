//! For implementors of an event loop, not for programs: the type-erased
//! resolver a reactor keeps for work whose result arrives from another
//! thread. Twisted needs no counterpart (a Python callable takes any value);
//! the `reactor` crate parks the resolvers of its thread-pool jobs and
//! `ensure_deferred` tasks in one table with these.

use std::any::{Any, TypeId};
use std::fmt;
use std::panic::Location;
use std::rc::Rc;

use crate::core::Core;
use crate::errors::AlreadyCalledError;
use crate::{Failure, Resolver};

/// A [`Resolver`] with its value type erased, for code that parks resolvers of
/// many types in one table (the reactor keeps the resolvers of thread-pool jobs
/// in a slab and fires them with boxed results from worker threads). Made
/// with `AnyResolver::from(resolver)`.
///
/// The value type is remembered: [`resolve`](Self::resolve) with a value of
/// another type fires the Deferred with a [`Failure`] naming both types, never
/// with a wrong value.
pub struct AnyResolver {
    core: Rc<Core>,
    type_id: TypeId,
    type_name: &'static str,
}

/// A boxed value handed to [`AnyResolver::resolve`] was not of the Deferred's
/// value type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("value of the wrong type for this Deferred: expected {expected}")]
pub struct ValueTypeMismatch {
    /// The type the Deferred carries.
    pub expected: &'static str,
}

impl<T: 'static> From<Resolver<T>> for AnyResolver {
    /// Erases the value type.
    fn from(resolver: Resolver<T>) -> Self {
        AnyResolver {
            core: resolver.core,
            type_id: TypeId::of::<T>(),
            type_name: std::any::type_name::<T>(),
        }
    }
}

impl AnyResolver {
    /// Fires the Deferred with a boxed value of its type, or a failure.
    #[track_caller]
    pub fn resolve(&self, result: Result<Box<dyn Any>, Failure>) -> Result<(), AlreadyCalledError> {
        let outcome = match result {
            Ok(v) if (*v).type_id() != self.type_id => Err(Failure::new(ValueTypeMismatch {
                expected: self.type_name,
            })),
            other => other,
        };
        self.core.fire(outcome, Location::caller())
    }

    /// True once the Deferred has fired.
    pub fn called(&self) -> bool {
        self.core.called()
    }
}

impl fmt::Debug for AnyResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AnyResolver<{}>({:?})", self.type_name, &*self.core)
    }
}
