//! Twisted's `Deferred` and `Failure` for Rust.
//!
//! A [`Deferred<T>`] is a result that is not there yet. Callbacks and errbacks
//! added to it form a chain that runs, in order, once it fires, with exactly the
//! semantics of `twisted.internet.defer.Deferred`: a callback's value goes on
//! down the success path, an errback that returns `Ok` recovers, an `Err` (or a
//! panic) switches to the error path, and a callback that returns another
//! Deferred pauses the chain until that one fires. The chain is typed: each
//! step's output type is checked against the next step's input.
//!
//! | module | what it holds | Twisted |
//! |---|---|---|
//! | [`deferred`](crate::Deferred) | [`Deferred`], [`Resolver`], [`succeed`], [`fail`], [`maybe_deferred`] | `Deferred`, `succeed`, `fail`, `maybeDeferred` |
//! | [`Failure`] | errors in flight, caught panics, `check`/`trap` | `twisted.python.failure.Failure` |
//! | [`DeferredList`], [`gather_results`], [`race`] | waiting on many | same names |
//! | [`ReactorTime`], [`Deferred::add_timeout`] | timeouts against a clock | `IReactorTime`, `addTimeout` |
//! | [`DeferredFuture`] | `deferred.await` | `await d` |
//! | [`implementors`] | the type-erased resolver an event loop parks (not for programs) | |
//!
//! # Examples
//!
//! Twisted's `d = Deferred(); ...; d.callback(v); return d` becomes a pair of
//! handles, like a oneshot channel. Chaining works as in Twisted:
//!
//! ```
//! use deferred::{Deferred, Failure};
//! use std::{cell::RefCell, rc::Rc};
//!
//! // A producer hands out a Deferred and keeps the Resolver to fire it later.
//! let (inner, fire_inner) = Deferred::<String>::new();
//! let (outer, fire_outer) = Deferred::<u32>::new();
//!
//! let out = Rc::new(RefCell::new(None));
//! let sink = out.clone();
//! outer
//!     .add_callback_deferred(move |id| {
//!         assert_eq!(id, 7);
//!         inner // the chain waits for this one
//!     })
//!     .add_callback(|name| name.to_uppercase())
//!     .add_errback(|f: Failure| Ok(format!("recovered from {}", f.error_message())))
//!     .add_callback(move |s| *sink.borrow_mut() = Some(s));
//!
//! fire_outer.callback(7).unwrap();
//! assert!(out.borrow().is_none()); // paused, waiting on `inner`
//! fire_inner.callback("alice".to_string()).unwrap();
//! assert_eq!(out.borrow().as_deref(), Some("ALICE"));
//! ```
//!
//! # Threads
//!
//! `Deferred` is `!Send`: Deferreds live on the reactor's loop thread, which is
//! Twisted's rule made a compile-time check. [`Failure`] is `Send + Sync`, so
//! failures produced on worker threads travel to the loop thread and fire
//! Deferreds there.
//!
//! # Unhandled errors
//!
//! A Deferred whose last result is a failure that nobody handled logs
//! `Unhandled error in Deferred` at error level through `tracing` when its last
//! handle is dropped (Twisted logs it when the Deferred is garbage-collected).

mod core;
mod deferred;
mod errors;
mod failure;
mod future;
pub mod implementors;
mod list;
mod time;

pub use crate::deferred::{fail, maybe_deferred, succeed, Deferred, IntoDeferred, Resolver};
pub use crate::errors::{
    AlreadyCalledError, CancelledError, FailureGroup, FirstError, TimeoutError,
};
pub use crate::failure::{log_error, BoxError, Failure, MessageError, PanicError};
pub use crate::future::DeferredFuture;
pub use crate::list::{gather_results, race, DeferredList, OneCallbackResult};
pub use crate::time::{ReactorTime, ScheduledCall};
