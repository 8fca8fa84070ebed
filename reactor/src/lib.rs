//! A mio event loop with Twisted's reactor semantics.
//!
//! | Twisted | here |
//! |---|---|
//! | `reactor.run()`, `stop()`, `crash()`, `iterate()`, `running` | [`Reactor`] |
//! | `addSystemEventTrigger`, `removeSystemEventTrigger`, `fireSystemEvent`, `callWhenRunning` | [`Reactor`], [`Phase`], [`TriggerId`] |
//! | `callLater`, `DelayedCall`, `seconds()` | [`Reactor::call_later`], [`DelayedCall`] |
//! | `callFromThread` | [`RemoteHandle`] (from [`Reactor::remote`]) |
//! | `twisted.python.threadpool.ThreadPool` | [`ThreadPool`] |
//! | `getThreadPool`, `callInThread`, `suggestThreadPoolSize` | [`Reactor`] |
//! | `threads.deferToThreadPool`, `deferToThread`, `blockingCallFromThread`, `callMultipleInThread` | [`defer_to_thread_pool`], [`defer_to_thread`], [`blocking_call_from_thread`], [`call_multiple_in_thread`] |
//! | `defer.ensureDeferred`, `Deferred.fromCoroutine` | [`Reactor::ensure_deferred`], [`ensure_deferred`] |
//! | `IReactorCore`, `IReactorTime`, `IReactorFromThreads`, `IReactorThreads` | [`ReactorCore`], [`deferred::ReactorTime`], [`ReactorFromThreads`], [`ReactorThreads`], all in [`AnyReactor`] |
//! | `task.Clock`, the tests' `EventReactor` | [`testing::Clock`], [`testing::FakeReactor`] |
//! | the global `reactor` | [`default_reactor`] (one per thread) |
//!
//! # Examples
//!
//! Work on a thread, result back on the loop thread as a Deferred, consumed
//! with `async`/`await`:
//!
//! ```
//! use reactor::{defer_to_thread, Reactor};
//! use std::{cell::Cell, rc::Rc};
//!
//! let reactor = Reactor::new().unwrap();
//! let out = Rc::new(Cell::new(0));
//! let (r, o) = (reactor.clone(), out.clone());
//! reactor.call_when_running(move || {
//!     let rr = r.clone();
//!     let _ = r
//!         .ensure_deferred(async move {
//!             let a: u64 = defer_to_thread(&rr, || Ok(20)).await?;
//!             let b: u64 = defer_to_thread(&rr, || Ok(22)).await?;
//!             Ok(a + b)
//!         })
//!         .add_callback(move |sum| {
//!             o.set(sum);
//!             r.stop().unwrap();
//!         });
//! });
//! reactor.run().unwrap();
//! assert_eq!(out.get(), 42);
//! ```
//!
//! # Threads
//!
//! The loop thread owns the reactor, every Deferred and every callback; the
//! compiler enforces it (`Reactor` and `Deferred` are `!Send`). Exactly two
//! queues cross threads: a pool's job queue (loop → workers) and the
//! reactor's [`RemoteHandle`] queue (workers → loop).

mod errors;
mod global;
mod interfaces;
mod job_queue;
mod reactor;
mod remote;
mod shutdown;
mod spin;
mod sync;
pub mod testing;
mod threadpool;
mod threads;
mod time;
mod triggers;

pub use crate::errors::{
    BlockingCallError, DelayedCallError, PoolStopped, ReactorAlreadyRunning, ReactorNotRestartable,
    ReactorNotRunning, RunError, TriggerError,
};
pub use crate::global::{default_reactor, install_reactor, try_default_reactor, AmbiguousReactor};
pub use crate::interfaces::{
    AnyReactor, ReactorCore, ReactorFromThreads, ReactorThreads, ShutdownHold,
};
pub use crate::reactor::Reactor;
pub use crate::remote::{BoxedOutcome, LoopQueue, RemoteHandle};
pub use crate::threadpool::{
    ExitHook, Job, PoolConfigError, PoolMode, PoolSizeError, ThreadPool, ThreadSpawnError,
};
pub use crate::threads::{
    blocking_call_from_thread, call_multiple_in_thread, defer_to_thread, defer_to_thread_pool,
    defer_to_thread_pool_with_interrupt, stop_thread_pool, Interrupt,
};
pub use crate::time::{monotonic_seconds, DelayedCall};
pub use crate::triggers::{trigger_fn, Phase, TriggerFn, TriggerId, TriggerOutput};
pub use deferred::ReactorTime;

/// Entry points for the loom models (`--cfg loom` builds only).
#[cfg(loom)]
#[doc(hidden)]
pub use crate::sync::loom_model;

/// Runs `future` on this thread's [`default_reactor`] and returns a Deferred
/// for its output. Mirrors `defer.ensureDeferred(coro)`.
pub fn ensure_deferred<T, F>(future: F) -> deferred::Deferred<T>
where
    T: 'static,
    F: std::future::Future<Output = Result<T, deferred::Failure>> + 'static,
{
    default_reactor().ensure_deferred(future)
}
