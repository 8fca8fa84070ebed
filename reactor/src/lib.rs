//! A mio event loop with Twisted's reactor semantics.
//!
//! Start with `use reactor::prelude::*;`: the operations every reactor has
//! are trait methods, so a program, a connection pool and a test see the
//! real [`Reactor`], the [`testing::FakeReactor`] and `dyn AnyReactor`
//! alike.
//!
//! | Twisted | here |
//! |---|---|
//! | `task.react(main)` | [`react`], [`Exit`] (`SystemExit(code)`) |
//! | `reactor.run()`, `crash()`, `iterate()` | [`Reactor`] |
//! | `running`, `stop()`, `addSystemEventTrigger`, `removeSystemEventTrigger`, `fireSystemEvent`, `callWhenRunning` | [`ReactorCore`], [`ReactorExt`], [`Phase`], [`TriggerId`] |
//! | `callLater`, `DelayedCall`, `getDelayedCalls`, `seconds()` | [`ReactorExt::call_later`], [`DelayedCall`], [`ReactorDelayedCalls`], [`ReactorTime`] |
//! | `callFromThread`, `isInIOThread` | [`ReactorExt::call_from_thread`], [`RemoteHandle`] (from [`ReactorFromThreads::remote`]) |
//! | `twisted.python.threadpool.ThreadPool` | [`ThreadPool`] |
//! | `getThreadPool`, `callInThread`, `suggestThreadPoolSize` | [`ReactorThreads`], [`ReactorExt::call_in_thread`] |
//! | `threads.deferToThreadPool`, `deferToThread`, `blockingCallFromThread`, `callMultipleInThread` | [`defer_to_thread_pool`], [`defer_to_thread`], [`blocking_call_from_thread`], [`call_multiple_in_thread`] |
//! | `defer.ensureDeferred`, `Deferred.fromCoroutine` | [`ReactorExt::ensure_deferred`], [`ensure_deferred`] |
//! | `IReactorCore`, `IReactorTime`, `IReactorFromThreads`, `IReactorThreads` | [`ReactorCore`], [`ReactorTime`] + [`ReactorDelayedCalls`], [`ReactorFromThreads`], [`ReactorThreads`], all in [`AnyReactor`] |
//! | `task.Clock`, the tests' `EventReactor`, `NonThreadPool` | [`testing::Clock`], [`testing::FakeReactor`], [`testing::PoolMode`] |
//! | the global `reactor` | [`default_reactor`] (one per thread) |
//! | `IReactorTCP`, `IListeningPort`, `IConnector` | [`ReactorTcp`], [`ListeningPort`], [`Connector`] |
//! | `twisted.internet.protocol`: `Protocol`, `Factory`, `ClientFactory`, `ReconnectingClientFactory` | [`protocol`], [`protocols::for_protocol`] |
//! | `ITransport`, `ITCPTransport`, `IConsumer`, `IPushProducer`, `IPullProducer` | [`Transport`], [`Producer`] |
//! | `twisted.internet.address`, the connection errors of `twisted.internet.error` | [`Address`], [`ConnectionDone`], [`ConnectionLost`], [`ConnectionAborted`], [`ConnectError`], [`CannotListenError`] |
//! | `twisted.protocols.basic` | [`protocols::basic`] |
//! | `twisted.internet.endpoints` | [`endpoints`] |
//! | `twisted.internet.testing.StringTransport`, `MemoryReactor` | [`testing::StringTransport`], [`testing::MemoryReactor`] |
//!
//! [`implementors`] holds what only an event loop's own code needs.
//!
//! # Examples
//!
//! A program's main, as Twisted's `task.react(main)`: work on a thread,
//! result back on the loop thread as a Deferred, consumed with
//! `async`/`await`; the reactor stops when `main`'s Deferred fires.
//!
//! ```
//! use reactor::prelude::*;
//! use reactor::{defer_to_thread, react};
//!
//! let code = react(|reactor| {
//!     let r = reactor.clone();
//!     reactor.ensure_deferred(async move {
//!         let a: u64 = defer_to_thread(&r, || Ok(20)).await?;
//!         let b: u64 = defer_to_thread(&r, || Ok(22)).await?;
//!         assert_eq!(a + b, 42);
//!         Ok(())
//!     })
//! });
//! assert_eq!(code, 0);
//! ```
//!
//! # Threads
//!
//! The loop thread owns the reactor, every Deferred and every callback; the
//! compiler enforces it (`Reactor` and `Deferred` are `!Send`). Exactly two
//! queues cross threads: a pool's job queue (loop → workers) and the
//! reactor's [`RemoteHandle`] queue (workers → loop).

mod address;
pub mod endpoints;
mod errors;
mod executor;
mod global;
pub mod implementors;
mod interfaces;
mod loop_spin;
pub mod protocol;
pub mod protocols;
mod react;
mod reactor;
mod remote;
mod shutdown;
mod spin;
mod sync;
mod tcp;
pub mod testing;
mod threadpool;
mod threads;
mod time;
mod transport;
mod triggers;

pub use crate::address::Address;
pub use crate::errors::{
    BlockingCallError, CannotListenError, ConnectError, ConnectionAborted, ConnectionDone,
    ConnectionLost, DelayedCallError, NotConnectingError, PoolStopped, ProducerError,
    ReactorAlreadyRunning, ReactorNotRestartable, ReactorNotRunning, RunError,
};
pub use crate::global::{default_reactor, install_reactor, try_default_reactor, AmbiguousReactor};
pub use crate::interfaces::{
    AnyReactor, Connector, ListeningPort, ReactorCore, ReactorDelayedCalls, ReactorExt,
    ReactorFromThreads, ReactorTcp, ReactorThreads, DEFAULT_BACKLOG, DEFAULT_CONNECT_TIMEOUT,
};
pub use crate::react::{react, Exit};
pub use crate::reactor::Reactor;
pub use crate::remote::RemoteHandle;
pub use crate::shutdown::ShutdownHold;
pub use crate::threadpool::{
    ExitHook, PoolConfigError, PoolSizeError, ThreadPool, ThreadSpawnError,
};
pub use crate::threads::{
    blocking_call_from_thread, call_multiple_in_thread, defer_to_thread, defer_to_thread_pool,
    defer_to_thread_pool_with_hooks, defer_to_thread_pool_with_interrupt, stop_thread_pool,
    Interrupt, ThreadPoolJob,
};
pub use crate::time::{monotonic_seconds, DelayedCall};
pub use crate::transport::{Producer, Transport};
pub use crate::triggers::{Phase, TriggerError, TriggerId, TriggerOutput};
pub use deferred::ReactorTime;

/// The reactor traits in one import: `use reactor::prelude::*;` brings the
/// methods every reactor has (`call_when_running`, `call_later`, `stop`,
/// `call_from_thread`, `get_thread_pool`, `ensure_deferred`...) into scope,
/// for [`Reactor`], [`testing::FakeReactor`] and `dyn AnyReactor` alike.
pub mod prelude {
    pub use crate::interfaces::{
        AnyReactor, Connector, ListeningPort, ReactorCore, ReactorDelayedCalls, ReactorExt,
        ReactorFromThreads, ReactorTcp, ReactorThreads,
    };
    pub use crate::protocol::{ClientFactory, Factory, Protocol};
    pub use crate::transport::{Producer, Transport};
    pub use deferred::ReactorTime;
}

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
