//! The synchronisation primitives of the thread pool, its job queue and the
//! thread-to-loop queue, in one place, so `--cfg loom` swaps them all for
//! loom's model-checked versions (as crossbeam-epoch's `primitive.rs` does).
//! Nothing else in the crate changes under loom; see `tests/loom.rs`.
//!
//! `Arc` is not swapped: loom's only adds leak checks, and the pool's public
//! API hands out `std::sync::Arc` (exit hooks, the pool name).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};

/// Threads: `std::thread` or `loom::thread`.
pub(crate) mod thread {
    #[cfg(loom)]
    pub(crate) use loom::thread::{yield_now, Builder, JoinHandle};
    #[cfg(not(loom))]
    pub(crate) use std::thread::{yield_now, Builder, JoinHandle};
}

/// Entry points for the loom models in `tests/loom.rs` (`--cfg loom` only):
/// thin wrappers over the crate-private queues they check.
#[cfg(loom)]
pub mod loom_model {
    use std::sync::Arc;
    use std::time::Duration;

    use super::{Condvar, Mutex};
    use crate::remote::{LoopQueue, RemoteHandle};
    use crate::threadpool::{JobQueue, Next};

    /// A model of `mio::Waker` (an eventfd): `wake` makes the next (or the
    /// current) `wait` return; wakes do not accumulate.
    #[derive(Debug, Default)]
    pub struct ModelWaker {
        woken: Mutex<bool>,
        cv: Condvar,
    }

    impl ModelWaker {
        /// Mirrors `mio::Waker::wake`.
        pub fn wake(&self) {
            *self.woken.lock().unwrap() = true;
            self.cv.notify_one();
        }

        /// Blocks as `mio::Poll::poll` with no timeout and only the waker
        /// registered: until a wake, which it consumes.
        pub fn wait(&self) {
            let mut woken = self.woken.lock().unwrap();
            while !*woken {
                woken = self.cv.wait(woken).unwrap();
            }
            *woken = false;
        }
    }

    /// The loop side of the thread-to-loop queue with a modelled waker.
    #[derive(Debug)]
    pub struct ModelLoop {
        queue: LoopQueue,
        waker: Arc<ModelWaker>,
    }

    impl Default for ModelLoop {
        fn default() -> Self {
            Self::new()
        }
    }

    impl ModelLoop {
        /// A `LoopQueue` whose sleeping loop is woken through a [`ModelWaker`].
        pub fn new() -> Self {
            let waker = Arc::new(ModelWaker::default());
            ModelLoop {
                queue: LoopQueue::with_model_waker(Arc::clone(&waker)),
                waker,
            }
        }

        /// The sending side, as the reactor's `remote()`.
        pub fn handle(&self) -> RemoteHandle {
            self.queue.handle()
        }

        /// One loop turn's `LoopQueue::drain`.
        pub fn drain(&self) -> usize {
            self.queue.drain()
        }

        /// What the reactor does when it has nothing to do: announce the
        /// sleep, and if nothing arrived meanwhile, sleep until woken; then
        /// mark itself awake. The real loop does the same around `poll`.
        pub fn idle(&self) {
            if self.queue.prepare_sleep() {
                self.waker.wait();
                self.queue.woke();
            }
        }
    }

    /// A pool job queue of numbered jobs.
    pub struct ModelJobQueue(JobQueue<usize>);

    impl std::fmt::Debug for ModelJobQueue {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("ModelJobQueue").finish_non_exhaustive()
        }
    }

    impl Default for ModelJobQueue {
        fn default() -> Self {
            ModelJobQueue(JobQueue::new())
        }
    }

    impl ModelJobQueue {
        /// `JobQueue::push`; false if closed.
        pub fn push(&self, job: usize) -> bool {
            self.0.push(job).is_ok()
        }

        /// `JobQueue::pop_blocking` as an idle worker calls it, spinning
        /// (a bounded number of yields under loom) or not; `None` once closed
        /// and empty.
        pub fn pop_blocking(&self, spin: bool) -> Option<usize> {
            let budget = if spin {
                Duration::from_micros(20)
            } else {
                Duration::ZERO
            };
            match self.0.pop_blocking(budget) {
                Next::Msg(m) => Some(m),
                Next::Closed => None,
            }
        }

        /// `JobQueue::close`.
        pub fn close(&self) {
            self.0.close();
        }
    }
}
