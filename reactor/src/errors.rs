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

/// The connection was closed cleanly (by either side). The `reason` a
/// [`Protocol`](crate::protocol::Protocol) gets in `connection_lost` after a
/// clean close. Mirrors `twisted.internet.error.ConnectionDone`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Connection was closed cleanly.")]
pub struct ConnectionDone;

/// The connection was lost in a non-clean fashion (reset by the peer, a
/// failed write, a read error). Mirrors
/// `twisted.internet.error.ConnectionLost`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Connection to the other side was lost in a non-clean fashion: {reason}.")]
pub struct ConnectionLost {
    /// What the OS said (for example `Connection reset by peer`).
    pub reason: String,
}

/// The connection was closed locally by
/// [`abort_connection`](crate::transport::Transport::abort_connection).
/// Mirrors `twisted.internet.error.ConnectionAborted`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Connection was aborted locally using ITCPTransport.abortConnection.")]
pub struct ConnectionAborted;

/// Why an outgoing connection attempt failed: the `reason` a
/// [`ClientFactory`](crate::protocol::ClientFactory) gets in
/// `client_connection_failed`. Each variant mirrors one of
/// `twisted.internet.error`'s `ConnectError` subclasses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// Mirrors `ConnectionRefusedError`.
    #[error("Connection was refused by other side: {reason}.")]
    Refused {
        /// What the OS said.
        reason: String,
    },
    /// The attempt outlasted `connect_tcp`'s timeout. Mirrors
    /// `twisted.internet.error.TimeoutError`.
    #[error("User timeout caused connection failure.")]
    Timeout,
    /// The host name did not resolve. Mirrors `DNSLookupError`.
    #[error("DNS lookup failed: {host}: {reason}.")]
    DnsLookup {
        /// The name that was looked up.
        host: String,
        /// What the resolver said.
        reason: String,
    },
    /// [`Connector::stop_connecting`](crate::Connector::stop_connecting)
    /// was called. Mirrors `UserError` ("User aborted connection.").
    #[error("User aborted connection.")]
    UserAborted,
    /// The reactor shut down before the connection was made.
    #[error("the reactor shut down before the connection was made")]
    ReactorStopped,
    /// Any other OS error (no route to host, bind failure, ...). Mirrors
    /// `ConnectError`.
    #[error("An error occurred while connecting: {reason}.")]
    Other {
        /// What the OS said.
        reason: String,
    },
}

/// `listen_tcp` could not bind or listen. Mirrors
/// `twisted.internet.error.CannotListenError` and keeps its message.
#[derive(Debug, thiserror::Error)]
#[error("Couldn't listen on {interface}:{port}: {source}.")]
pub struct CannotListenError {
    /// The interface asked for (`""` means every IPv4 interface).
    pub interface: String,
    /// The port asked for.
    pub port: u16,
    /// What the OS said.
    #[source]
    pub source: std::io::Error,
}

/// `stop_connecting` on a connector that is not connecting. Mirrors
/// `twisted.internet.error.NotConnectingError`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("The Connector was not connecting when it was asked to stop connecting.")]
pub struct NotConnectingError;

/// Misuse of a transport's producer slot. Mirrors the `RuntimeError` that
/// Twisted's `registerProducer` raises.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProducerError {
    /// A producer is already registered.
    #[error("Cannot register producer, because a producer is already registered.")]
    AlreadyRegistered,
    /// The transport is disconnected or disconnecting.
    #[error("Cannot register producer on a disconnected transport.")]
    Disconnected,
}
