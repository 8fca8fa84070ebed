//! The traits a program or a connection pool uses to talk to a reactor, so a
//! test can inject [`FakeReactor`](crate::testing::FakeReactor) where the real
//! [`Reactor`](crate::Reactor) would run. They mirror Twisted's
//! `IReactorCore`, `IReactorFromThreads` and `IReactorThreads`;
//! `IReactorTime` is [`deferred::ReactorTime`].
//!
//! The trait methods take boxed closures so the traits can be used as
//! `dyn AnyReactor`; both reactors also have inherent generic methods of the
//! same names, which is what a direct call picks.

use deferred::ReactorTime;

use crate::errors::{PoolStopped, ReactorNotRunning, TriggerError};
use crate::remote::{LoopQueue, RemoteHandle};
use crate::threadpool::{Job, PoolConfigError, ThreadPool};
use crate::triggers::{Phase, TriggerFn, TriggerId};

/// Startup, shutdown and system events. Mirrors `IReactorCore`.
pub trait ReactorCore {
    /// True between the `during` phase of startup and the `during` phase of
    /// shutdown. Mirrors `running`.
    fn running(&self) -> bool;
    /// Runs `f` now if running (returns `None`), else registers it as an
    /// `after`/`startup` trigger and returns its id. Mirrors `callWhenRunning`.
    fn call_when_running(&self, f: Box<dyn FnOnce()>) -> Option<TriggerId>;
    /// Registers a trigger. Mirrors `addSystemEventTrigger`.
    fn add_system_event_trigger(&self, phase: Phase, event: &str, f: TriggerFn) -> TriggerId;
    /// Removes a trigger that has not run. Mirrors `removeSystemEventTrigger`.
    fn remove_system_event_trigger(&self, id: &TriggerId) -> Result<(), TriggerError>;
    /// Fires an event's three phases. Mirrors `fireSystemEvent`.
    fn fire_system_event(&self, event: &str);
    /// Asks the reactor to shut down. Mirrors `stop`.
    fn stop(&self) -> Result<(), ReactorNotRunning>;
    /// Keeps a shutting-down reactor turning (delivering thread results and
    /// running timers) after its `shutdown` event, until the returned hold is
    /// dropped; `run` returns only then. Not in Twisted: it is how a
    /// `ConnectionPool` closed by the `during`/`shutdown` trigger still fires
    /// every Deferred it handed out without blocking the loop. The default
    /// does nothing (the hold keeps nothing alive).
    fn hold_shutdown(&self) -> ShutdownHold {
        ShutdownHold::detached()
    }
}

/// A hold on a reactor's shutdown; see [`ReactorCore::hold_shutdown`].
/// Releasing it is dropping it.
#[derive(Debug)]
pub struct ShutdownHold {
    count: Option<std::rc::Rc<std::cell::Cell<usize>>>,
}

impl ShutdownHold {
    /// A hold that holds nothing.
    pub fn detached() -> Self {
        ShutdownHold { count: None }
    }

    pub(crate) fn on(count: &std::rc::Rc<std::cell::Cell<usize>>) -> Self {
        count.set(count.get() + 1);
        ShutdownHold {
            count: Some(std::rc::Rc::clone(count)),
        }
    }
}

impl Drop for ShutdownHold {
    fn drop(&mut self) {
        if let Some(c) = &self.count {
            c.set(c.get().saturating_sub(1));
        }
    }
}

/// Handing work from other threads to the loop thread. Mirrors
/// `IReactorFromThreads`.
pub trait ReactorFromThreads {
    /// The loop side of the thread-to-loop queue.
    fn loop_queue(&self) -> &LoopQueue;
    /// A `Send + Sync` handle with `call_from_thread`.
    fn remote(&self) -> RemoteHandle {
        self.loop_queue().handle()
    }
}

/// Thread pools. Mirrors `IReactorThreads`.
pub trait ReactorThreads: ReactorFromThreads {
    /// The reactor's own pool (min 0, max 10), created on first use. Mirrors
    /// `getThreadPool`.
    fn get_thread_pool(&self) -> ThreadPool;
    /// Runs `f` on the reactor's pool. Mirrors `callInThread`.
    fn call_in_thread(&self, f: Job) -> Result<(), PoolStopped> {
        self.get_thread_pool().submit(f)
    }
    /// Sets the reactor pool's maximum. Mirrors `suggestThreadPoolSize`.
    fn suggest_thread_pool_size(&self, size: usize);
    /// A new pool of the kind this reactor runs work on (real threads for the
    /// real reactor, inline or manual pools for the test reactor). Used by
    /// pools that own their threads, such as `adbapi::ConnectionPool`.
    fn new_thread_pool(
        &self,
        min: usize,
        max: usize,
        name: &str,
    ) -> Result<ThreadPool, PoolConfigError>;
}

/// Everything above in one trait, for `Rc<dyn AnyReactor>` injection
/// (`cp_reactor`). Implemented for every type that implements the parts.
pub trait AnyReactor: ReactorCore + ReactorTime + ReactorThreads {}

impl<T: ReactorCore + ReactorTime + ReactorThreads + ?Sized> AnyReactor for T {}
