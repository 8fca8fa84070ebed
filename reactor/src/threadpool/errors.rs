//! Why a [`ThreadPool`](crate::ThreadPool) could not be made, resized, or
//! could not run a job. (Submitting to a stopped pool is
//! [`PoolStopped`](crate::PoolStopped), with the reactor's other errors.)

/// `min > max` given to [`ThreadPool::new`](crate::ThreadPool::new) or
/// [`ThreadPool::adjust_pool_size`](crate::ThreadPool::adjust_pool_size). Twisted asserts "minimum is greater than
/// maximum".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("thread pool minimum {min} is greater than maximum {max}")]
pub struct PoolSizeError {
    /// The minimum given.
    pub min: usize,
    /// The maximum given.
    pub max: usize,
}

/// Why a pool could not be made: [`ThreadPool::new`](crate::ThreadPool::new),
/// `TestPool::with_mode` and `ReactorThreads::new_thread_pool`.
/// Twisted's `ThreadPool.__init__` asserts the sizes and takes any name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolConfigError {
    /// `min > max` (Twisted asserts "minimum is greater than maximum").
    #[error(transparent)]
    Size(#[from] PoolSizeError),
    /// The name cannot be part of a thread name: the OS (and
    /// `std::thread::Builder`) refuse a NUL byte in one. Twisted accepts any
    /// name, as Python threads are not named at the OS level.
    #[error("thread pool name {name:?} has a NUL byte at byte {position}; thread names cannot contain NUL")]
    InvalidName {
        /// The name given.
        name: String,
        /// The byte offset of the first NUL.
        position: usize,
    },
}

/// A pool could not start a worker thread, so it dropped a job no thread
/// would run: the job's Deferred fails with this (inside its `Failure`)
/// instead of waiting forever. Twisted's `ThreadPool.startAWorker` lets the
/// `thread.start()` error propagate and leaves the work queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("thread pool {name:?} could not start a worker thread ({reason}); the job was not run")]
pub struct ThreadSpawnError {
    /// The pool's name.
    pub name: String,
    /// What the OS (or `std::thread::Builder`) said.
    pub reason: String,
}
