//! The traits a program or a connection pool uses to talk to a reactor, so a
//! test can inject [`FakeReactor`](crate::testing::FakeReactor) where the real
//! [`Reactor`](crate::Reactor) would run. `use reactor::prelude::*;` brings
//! them all in.
//!
//! Two layers, so each reactor implements every operation once:
//!
//! - object-safe traits, mirroring Twisted's interfaces:
//!   [`ReactorCore`] (`IReactorCore`), [`deferred::ReactorTime`] and
//!   [`ReactorDelayedCalls`] (`IReactorTime`), [`ReactorFromThreads`]
//!   (`IReactorFromThreads`) and [`ReactorThreads`] (`IReactorThreads`).
//!   Where Twisted takes a callable, they take a boxed closure (the methods
//!   named `*_boxed`), so `Rc<dyn AnyReactor>` works (`cp_reactor`);
//! - [`ReactorExt`], implemented for every [`AnyReactor`] (`dyn` included),
//!   with the generic methods a program calls: `call_when_running(f)`,
//!   `add_system_event_trigger(phase, event, f)`, `call_later(delay, f)`,
//!   `call_from_thread(f)`, `call_in_thread(f)`, `ensure_deferred(future)`.

use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use deferred::{Deferred, Failure, ReactorTime};

use crate::address::Address;
use crate::errors::{CannotListenError, NotConnectingError, PoolStopped, ReactorNotRunning};
use crate::protocol::{ClientFactory, Factory};
use crate::remote::{LoopQueue, RemoteHandle};
use crate::shutdown::ShutdownHold;
use crate::threadpool::{PoolConfigError, ThreadPool};
use crate::time::DelayedCall;
use crate::triggers::{trigger_fn, Phase, TriggerError, TriggerFn, TriggerId, TriggerOutput};

/// Startup, shutdown and system events. Mirrors `IReactorCore`.
pub trait ReactorCore {
    /// True between the `during` phase of startup and the `during` phase of
    /// shutdown. Mirrors `running`.
    fn running(&self) -> bool;
    /// Runs `f` now if running (returns `None`), else registers it as an
    /// `after`/`startup` trigger and returns its id. Mirrors
    /// `callWhenRunning`; programs call [`ReactorExt::call_when_running`].
    fn call_when_running_boxed(&self, f: TriggerFn) -> Option<TriggerId>;
    /// Registers a trigger. Mirrors `addSystemEventTrigger`; programs call
    /// [`ReactorExt::add_system_event_trigger`].
    fn add_system_event_trigger_boxed(&self, phase: Phase, event: &str, f: TriggerFn) -> TriggerId;
    /// Removes a trigger that has not run. Mirrors `removeSystemEventTrigger`.
    fn remove_system_event_trigger(&self, id: &TriggerId) -> Result<(), TriggerError>;
    /// Fires an event's three phases: `before`, (waiting for the Deferreds
    /// they returned) `during`, `after`. An unknown event does nothing.
    /// Mirrors `fireSystemEvent`.
    fn fire_system_event(&self, event: &str);
    /// Asks the reactor to shut down. Mirrors `stop`. (The real reactor
    /// fires `shutdown` at the end of the current turn; the fake fires it at
    /// once.)
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
    /// True once the `shutdown` event has begun its `during` phase (or the
    /// fake reactor was stopped): the reactor will not fire `startup` again,
    /// so work that waits for it (`call_when_running`) would wait for ever.
    /// Not in Twisted; a `ConnectionPool` checks it so that it is never made
    /// on a reactor that cannot start it. The default says no.
    fn has_shut_down(&self) -> bool {
        false
    }
}

/// The part of `IReactorTime` beyond [`ReactorTime`]: timed calls as
/// [`DelayedCall`]s (which can be reset, delayed and inspected) and the list
/// of them. Programs call [`ReactorExt::call_later`].
pub trait ReactorDelayedCalls: ReactorTime {
    /// Runs `f` once, `delay` from now, on the loop thread. Mirrors
    /// `callLater`.
    fn delayed_call_boxed(&self, delay: Duration, f: Box<dyn FnOnce()>) -> DelayedCall;
    /// Every pending timed call, earliest first. Mirrors `getDelayedCalls()`.
    fn get_delayed_calls(&self) -> Vec<DelayedCall>;
}

/// Handing work from other threads to the loop thread. Mirrors
/// `IReactorFromThreads`.
pub trait ReactorFromThreads {
    /// The loop side of the thread-to-loop queue. For implementors and tests
    /// (queue lengths, outstanding jobs); see
    /// [`implementors`](crate::implementors).
    fn loop_queue(&self) -> &LoopQueue;
    /// A `Send + Sync` handle other threads use to run calls on the loop
    /// thread (`callFromThread` from a thread that has no reactor handle).
    fn remote(&self) -> RemoteHandle {
        self.loop_queue().handle()
    }
    /// True on the reactor's loop thread. Mirrors `isInIOThread`.
    fn is_in_io_thread(&self) -> bool {
        self.loop_queue().handle().is_loop_thread()
    }
}

/// Thread pools. Mirrors `IReactorThreads`.
pub trait ReactorThreads: ReactorFromThreads {
    /// The reactor's own pool (min 0, max 10), created on first use. Mirrors
    /// `getThreadPool`.
    fn get_thread_pool(&self) -> ThreadPool;
    /// Sets the reactor pool's maximum (lowering its minimum if needed).
    /// Mirrors `suggestThreadPoolSize`.
    fn suggest_thread_pool_size(&self, size: usize) {
        let pool = self.get_thread_pool();
        let min = pool.min().min(size);
        let _ = pool.adjust_pool_size(Some(min), Some(size));
    }
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
pub trait AnyReactor: ReactorCore + ReactorDelayedCalls + ReactorThreads {}

impl<T: ReactorCore + ReactorDelayedCalls + ReactorThreads + ?Sized> AnyReactor for T {}

/// The generic methods a program calls on any reactor (the real one, the
/// fake, or `dyn AnyReactor`), each written once on top of the object-safe
/// traits. Twisted's `callWhenRunning`, `addSystemEventTrigger`,
/// `callLater`, `callFromThread`, `callInThread` and `ensureDeferred`.
///
/// # Examples
///
/// ```
/// use reactor::prelude::*;
/// use reactor::testing::FakeReactor;
/// use reactor::{Phase, Reactor, TriggerId};
/// use std::rc::Rc;
///
/// fn schedule(reactor: &dyn AnyReactor) -> TriggerId {
///     reactor.add_system_event_trigger(Phase::Before, "shutdown", || ())
/// }
/// let real: Rc<dyn AnyReactor> = Rc::new(Reactor::new().unwrap());
/// let fake = FakeReactor::new(false);
/// schedule(&*real);
/// let id = schedule(&fake);
/// assert_eq!(fake.triggers(), vec![id]);
/// ```
pub trait ReactorExt: AnyReactor {
    /// Runs `f` now if the reactor is running (returning `None`); otherwise
    /// registers it as an `after`/`startup` trigger and returns its id.
    /// Mirrors `callWhenRunning`.
    fn call_when_running<F, R>(&self, f: F) -> Option<TriggerId>
    where
        F: FnOnce() -> R + 'static,
        R: TriggerOutput,
    {
        self.call_when_running_boxed(trigger_fn(f))
    }

    /// Registers `f` to run in `phase` of `event`; a `before` trigger may
    /// return a Deferred that the later phases wait for. Mirrors
    /// `addSystemEventTrigger`.
    fn add_system_event_trigger<F, R>(&self, phase: Phase, event: &str, f: F) -> TriggerId
    where
        F: FnOnce() -> R + 'static,
        R: TriggerOutput,
    {
        self.add_system_event_trigger_boxed(phase, event, trigger_fn(f))
    }

    /// Runs `f` once, `delay` from now, on the loop thread. A panic in `f` is
    /// logged and the loop goes on (the test `Clock` lets it propagate out
    /// of `advance`, as Twisted's does). Mirrors `callLater`.
    fn call_later<F>(&self, delay: Duration, f: F) -> DelayedCall
    where
        F: FnOnce() + 'static,
    {
        self.delayed_call_boxed(delay, Box::new(f))
    }

    /// Runs `f` on the loop thread on the next turn. Mirrors `callFromThread`
    /// (from another thread, use a [`remote`](ReactorFromThreads::remote)
    /// handle).
    fn call_from_thread<F>(&self, f: F)
    where
        F: FnOnce() + Send + 'static,
    {
        self.loop_queue().call_from_thread(f);
    }

    /// Runs `f` on the reactor's pool. Mirrors `callInThread`.
    fn call_in_thread<F>(&self, f: F) -> Result<(), PoolStopped>
    where
        F: FnOnce() + Send + 'static,
    {
        self.get_thread_pool().call_in_thread(f)
    }

    /// Runs a `!Send` future on the loop thread and returns a Deferred for its
    /// output. Mirrors `defer.ensureDeferred` / `Deferred.fromCoroutine`: the
    /// future is polled once right away, then whenever its waker is woken
    /// (from any thread); cancelling the Deferred drops the future, which
    /// cancels the Deferred it is awaiting; a panic while polling fails the
    /// Deferred.
    fn ensure_deferred<T, F>(&self, future: F) -> Deferred<T>
    where
        T: 'static,
        F: Future<Output = Result<T, Failure>> + 'static,
    {
        self.loop_queue().ensure_deferred(future)
    }
}

impl<T: AnyReactor + ?Sized> ReactorExt for T {}

/// Twisted's default `backlog` for `listenTCP`.
pub const DEFAULT_BACKLOG: u32 = 50;

/// Twisted's default `timeout` for `connectTCP` (30 s).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// TCP servers and clients. Mirrors `IReactorTCP`. Implemented by the real
/// [`Reactor`](crate::Reactor) (sockets on its `mio::Poll`, on the loop
/// thread) and by [`testing::MemoryReactor`](crate::testing) (records the
/// calls), so code that listens or connects can be given either.
pub trait ReactorTcp {
    /// Listens on `interface:port` (`port` 0 picks a free port, which
    /// [`ListeningPort::get_host`] tells; `interface` `""` means every IPv4
    /// interface, `"::"` every IPv6 one) and builds a protocol from
    /// `factory` for each accepted connection. Mirrors
    /// `listenTCP(port, factory, backlog=50, interface='')`; see
    /// [`DEFAULT_BACKLOG`].
    fn listen_tcp(
        &self,
        port: u16,
        factory: Rc<dyn Factory>,
        backlog: u32,
        interface: &str,
    ) -> Result<Rc<dyn ListeningPort>, CannotListenError>;

    /// Connects to `host:port` (a name is resolved off the loop thread),
    /// giving up after `timeout`, optionally binding the local end to
    /// `bind_address` first; `factory` is told how it went. Mirrors
    /// `connectTCP(host, port, factory, timeout=30, bindAddress=None)`; see
    /// [`DEFAULT_CONNECT_TIMEOUT`].
    fn connect_tcp(
        &self,
        host: &str,
        port: u16,
        factory: Rc<dyn ClientFactory>,
        timeout: Duration,
        bind_address: Option<SocketAddr>,
    ) -> Rc<dyn Connector>;
}

/// A listening socket. Mirrors `IListeningPort`.
pub trait ListeningPort {
    /// The address it listens on (the real port when 0 was asked for).
    /// Mirrors `getHost`.
    fn get_host(&self) -> Address;

    /// Stops accepting (connections already accepted go on) and closes the
    /// socket; the Deferred fires once it is closed and the factory's
    /// `stop_factory` has run. Calling it again returns a Deferred that
    /// fires at once. Mirrors `stopListening` / `loseConnection`.
    fn stop_listening(&self) -> Deferred<()>;

    /// Listens again after `stop_listening`. Mirrors `startListening`.
    fn start_listening(&self) -> Result<(), CannotListenError>;
}

/// An outgoing connection, attempted or made. Mirrors `IConnector`.
pub trait Connector {
    /// Abandons the attempt in progress; the factory gets
    /// `client_connection_failed` with
    /// [`ConnectError::UserAborted`](crate::ConnectError::UserAborted).
    /// Mirrors `stopConnecting`.
    fn stop_connecting(&self) -> Result<(), NotConnectingError>;

    /// Drops the connection if connected, abandons the attempt if
    /// connecting. Mirrors `disconnect`.
    fn disconnect(&self);

    /// Starts a new attempt (after a failure or a lost connection; a
    /// connector that is connecting or connected does nothing). Mirrors
    /// `connect`, which `ReconnectingClientFactory` calls.
    fn connect(&self);

    /// Where it connects to, as given (the host may be a name). Mirrors
    /// `getDestination`.
    fn get_destination(&self) -> (String, u16);
}
