//! Running work on threads and getting the result back as a Deferred:
//! Twisted's `twisted.internet.threads`.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use deferred::{maybe_deferred, Deferred, Failure, IntoDeferred, Resolver};

use crate::errors::BlockingCallError;
use crate::interfaces::{ReactorFromThreads, ReactorThreads};
use crate::remote::RemoteHandle;
use crate::threadpool::ThreadPool;

const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
const CANCELLED: u8 = 2;
/// Its pool dropped it unrun: its failure is on the way to the loop thread.
const DROPPED: u8 = 3;

/// Runs `f` on `pool` and returns a Deferred that fires with its result on the
/// loop thread of `reactor`, always on a later turn. Mirrors
/// `threads.deferToThreadPool(reactor, threadpool, f)`.
///
/// A panic in `f` becomes a [`Failure`] and the worker lives on. Beyond
/// Twisted (whose Deferred here has no canceller), cancelling the Deferred
/// before `f` started means `f` never runs; once `f` runs it finishes, the
/// Deferred fails with `CancelledError` at once, and the late result is
/// dropped. On a stopped pool the Deferred fails with
/// [`PoolStopped`](crate::PoolStopped) (Twisted's never fires).
///
/// # Examples
///
/// ```
/// use reactor::prelude::*;
/// use reactor::{defer_to_thread_pool, Reactor, ThreadPool};
/// use std::{cell::Cell, rc::Rc};
///
/// let reactor = Reactor::new().unwrap();
/// let pool = ThreadPool::new(1, 2, "work").unwrap();
/// pool.start().unwrap();
/// let got = Rc::new(Cell::new(0));
/// let (g, r) = (got.clone(), reactor.clone());
/// defer_to_thread_pool(&reactor, &pool, || Ok(6 * 7)).add_callback(move |v: u64| {
///     g.set(v);
///     r.stop().unwrap();
/// });
/// reactor.run().unwrap();
/// assert_eq!(got.get(), 42);
/// pool.stop();
/// ```
pub fn defer_to_thread_pool<R, T, F>(reactor: &R, pool: &ThreadPool, f: F) -> Deferred<T>
where
    R: ReactorFromThreads + ?Sized,
    T: Send + 'static,
    F: FnOnce() -> Result<T, Failure> + Send + 'static,
{
    defer_to_thread_pool_with_interrupt(reactor, pool, f, || Interrupt::Cancelled)
}

/// What the interrupt hook of [`defer_to_thread_pool_with_interrupt`] made of
/// a cancel that arrived while the job was running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    /// The job's work will not take effect (it was stopped, or it will be
    /// undone): the Deferred fails with `CancelledError` now and the job's
    /// late result is dropped.
    Cancelled,
    /// Too late: the job has passed the point where it can be stopped (a
    /// database job already committing). The cancel is declined and the
    /// Deferred fires with the job's real outcome when it arrives.
    TooLate,
}

/// [`defer_to_thread_pool`], plus a hook for cancelling a job that is already
/// running: cancelling the Deferred then calls `interrupt` on the loop thread,
/// so the job's owner can stop the work, for example by sending the database
/// a cancel request for the running statement. If the hook returns
/// [`Interrupt::Cancelled`] the Deferred fails with `CancelledError` at once
/// and the job's late result is dropped; if it returns [`Interrupt::TooLate`]
/// the cancel is declined and the Deferred fires with the job's outcome.
pub fn defer_to_thread_pool_with_interrupt<R, T, F, I>(
    reactor: &R,
    pool: &ThreadPool,
    f: F,
    interrupt: I,
) -> Deferred<T>
where
    R: ReactorFromThreads + ?Sized,
    T: Send + 'static,
    F: FnOnce() -> Result<T, Failure> + Send + 'static,
    I: FnOnce() -> Interrupt + 'static,
{
    defer_to_thread_pool_with_hooks(reactor, pool, FnJob(f), interrupt, || {})
}

/// A job for [`defer_to_thread_pool_with_hooks`]: what runs on the worker,
/// and what happens to it if its pool drops it unrun. A closure is the
/// plain case ([`defer_to_thread_pool`]); a type of its own lets the job's
/// owner account for a job dropped unrun with what the job already holds.
/// Not in Twisted.
pub trait ThreadPoolJob: Send + 'static {
    /// What the job's Deferred fires with.
    type Output: Send + 'static;

    /// Runs the job on a worker thread (a panic becomes a [`Failure`]).
    fn run(self) -> Result<Self::Output, Failure>;

    /// Called instead of [`run`](Self::run), on whichever thread drops the
    /// job, when its pool dropped it unrun (stopped, or it could not start a
    /// thread for it); its Deferred then fails with
    /// [`PoolStopped`](crate::PoolStopped) or
    /// [`ThreadSpawnError`](crate::ThreadSpawnError). Not called for a job
    /// a cancel withdrew. By default the job is just dropped.
    ///
    /// A cancel that arrives after this, before that failure reaches the
    /// Deferred, is declined: the Deferred reports the pool's failure, as
    /// the owner counted it here.
    fn unrun(self)
    where
        Self: Sized,
    {
    }
}

/// A closure as a [`ThreadPoolJob`].
struct FnJob<F>(F);

impl<T, F> ThreadPoolJob for FnJob<F>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, Failure> + Send + 'static,
{
    type Output = T;

    fn run(self) -> Result<T, Failure> {
        (self.0)()
    }
}

/// [`defer_to_thread_pool_with_interrupt`] for a [`ThreadPoolJob`], plus a
/// hook that tells the job's owner that a cancel withdrew the job before a
/// worker started it: `withdrawn` is called on the loop thread as the
/// Deferred fails with `CancelledError`, and the job is dropped unrun. So
/// exactly one of [`run`](ThreadPoolJob::run),
/// [`unrun`](ThreadPoolJob::unrun) and `withdrawn` happens for each job, and
/// its owner can count every outcome without adding a step to the Deferred's
/// chain. A cancel that arrives after the pool dropped the job, before its
/// failure reaches the Deferred, is declined: the Deferred reports the
/// pool's failure (on every path: [`defer_to_thread_pool`] too).
/// Not in Twisted (whose `deferToThreadPool` cannot be cancelled).
pub fn defer_to_thread_pool_with_hooks<R, J, I, W>(
    reactor: &R,
    pool: &ThreadPool,
    job: J,
    interrupt: I,
    withdrawn: W,
) -> Deferred<J::Output>
where
    R: ReactorFromThreads + ?Sized,
    J: ThreadPoolJob,
    I: FnOnce() -> Interrupt + 'static,
    W: FnOnce() + 'static,
{
    let queue = reactor.loop_queue();
    let state = Arc::new(AtomicU8::new(QUEUED));
    let pending = queue.pending_weak();
    let cancel_state = Arc::clone(&state);
    let (d, key) = queue.register(move |key| {
        Deferred::with_canceller(move |resolver: &Resolver<J::Output>| {
            // Only a job that has not started can be withdrawn; a running one
            // finishes and its result is dropped when it arrives.
            match cancel_state.compare_exchange(
                QUEUED,
                CANCELLED,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    if let Some(p) = pending.upgrade() {
                        let removed = p.borrow_mut().try_remove(key);
                        drop(removed);
                    }
                    withdrawn();
                }
                Err(RUNNING) => {
                    if interrupt() == Interrupt::TooLate {
                        resolver.decline_cancel();
                    }
                }
                // Dropped unrun by its pool: that outcome is decided (its
                // failure is on the way, and the job's owner may have
                // counted it in `unrun`), so the cancel is declined and the
                // Deferred reports the pool's failure, as for a Deferred
                // that has fired.
                Err(DROPPED) => resolver.decline_cancel(),
                Err(_) => {}
            }
        })
    });
    let mut guard = JobGuard {
        handle: queue.handle(),
        key,
        state,
        pool: pool.name_arc(),
        job: Some(job),
    };
    let job = move || {
        if guard
            .state
            .compare_exchange(QUEUED, RUNNING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return; // cancelled before it started
        }
        let Some(job) = guard.job.take() else {
            return;
        };
        let r = catch_unwind(AssertUnwindSafe(|| job.run()))
            .unwrap_or_else(|p| Err(Failure::from_panic(p)));
        guard
            .handle
            .complete(guard.key, r.map(|v| Box::new(v) as Box<dyn Any + Send>));
    };
    // On a stopped pool `submit` drops the job unrun, and its guard fails the
    // Deferred with PoolStopped through the queue, so it fires on a later turn.
    let _ = pool.submit(Box::new(job));
    d
}

/// Travels with a job. If the job is dropped without having run (its pool was
/// stopped before starting, or dropped), it fails the job's Deferred with
/// [`PoolStopped`](crate::PoolStopped), or with
/// [`ThreadSpawnError`](crate::ThreadSpawnError) if the pool dropped it
/// because it could not start a thread to run it, so no Deferred is left
/// hanging; the job's [`unrun`](ThreadPoolJob::unrun) is called first.
struct JobGuard<J: ThreadPoolJob> {
    handle: RemoteHandle,
    key: usize,
    state: Arc<AtomicU8>,
    pool: std::sync::Arc<str>,
    /// The job, until it runs.
    job: Option<J>,
}

impl<J: ThreadPoolJob> Drop for JobGuard<J> {
    fn drop(&mut self) {
        let unrun = self
            .state
            .compare_exchange(QUEUED, DROPPED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if let Some(job) = self.job.take() {
            // Dropping a job that did not run (dropped by its pool, or
            // withdrawn by a cancel) drops what its closure holds: a panic
            // there must not keep the Deferred from firing, nor escape into
            // whoever stopped the pool or popped the withdrawn job.
            let dropped = catch_unwind(AssertUnwindSafe(|| {
                if unrun {
                    job.unrun();
                } else {
                    drop(job);
                }
            }));
            if let Err(p) = dropped {
                let f = Failure::from_panic(p);
                tracing::error!(pool = %self.pool, failure = %f, "a job that did not run panicked as it was dropped");
            }
        }
        if unrun {
            let failure = match crate::threadpool::unrun_reason() {
                Some(spawn_error) => Failure::new(spawn_error),
                None => Failure::new(crate::PoolStopped {
                    name: self.pool.to_string(),
                }),
            };
            self.handle.complete(self.key, Err(failure));
        }
    }
}

/// [`defer_to_thread_pool`] on `reactor`'s own thread pool. Mirrors
/// `threads.deferToThread` (with the reactor explicit; see
/// [`default_reactor`](crate::default_reactor) for Twisted's global one).
pub fn defer_to_thread<R, T, F>(reactor: &R, f: F) -> Deferred<T>
where
    R: ReactorThreads + ?Sized,
    T: Send + 'static,
    F: FnOnce() -> Result<T, Failure> + Send + 'static,
{
    defer_to_thread_pool(reactor, &reactor.get_thread_pool(), f)
}

/// Runs every function, in order, on one thread of `reactor`'s pool.
/// Mirrors `threads.callMultipleInThread`.
pub fn call_multiple_in_thread<R>(
    reactor: &R,
    calls: Vec<Box<dyn FnOnce() + Send>>,
) -> Result<(), crate::PoolStopped>
where
    R: ReactorThreads + ?Sized,
{
    reactor.get_thread_pool().call_in_thread(move || {
        for f in calls {
            if let Err(p) = catch_unwind(AssertUnwindSafe(f)) {
                let f = Failure::from_panic(p);
                tracing::error!(failure = %f, "Unhandled error in callMultipleInThread");
            }
        }
    })
}

/// From a non-loop thread: runs `f` on the loop thread, waits for its result
/// (waiting for the Deferred if it returns one) and returns it. Mirrors
/// `threads.blockingCallFromThread`.
///
/// Unlike Twisted, which deadlocks, calling it on the loop thread fails with
/// [`BlockingCallError::OnLoopThread`], and a reactor that is dropped before
/// running the call gives [`BlockingCallError::ReactorGone`] (both inside the
/// returned `Failure`). It still blocks for as long as the call takes.
pub fn blocking_call_from_thread<T, R, F>(remote: &RemoteHandle, f: F) -> Result<T, Failure>
where
    T: Send + 'static,
    R: IntoDeferred<T>,
    F: FnOnce() -> R + Send + 'static,
{
    if remote.is_loop_thread() {
        return Err(Failure::new(BlockingCallError::OnLoopThread));
    }
    let (tx, rx) = crossbeam_channel::bounded::<Result<T, Failure>>(1);
    remote.call_from_thread(move || {
        let _ = maybe_deferred(f).add_both(move |r| {
            let _ = tx.send(r);
            Ok(())
        });
    });
    rx.recv()
        .unwrap_or_else(|_| Err(Failure::new(BlockingCallError::ReactorGone)))
}

/// Stops `pool` without blocking the loop thread: no new jobs are accepted,
/// the backlog and running jobs finish, the workers exit, and then the
/// returned Deferred fires on `reactor`'s loop (after the results of those
/// jobs, which travel the same queue). Twisted's `ThreadPool.stop()` blocks
/// the caller instead. With no worker to wait for and no job result in
/// flight (a pool never started, or a second call) it has fired already.
/// Cancelling it does nothing: stopping cannot be undone or cut short.
pub fn stop_thread_pool<R>(reactor: &R, pool: &ThreadPool) -> Deferred<()>
where
    R: ReactorFromThreads + ?Sized,
{
    let queue = reactor.loop_queue();
    let threads = pool.begin_stop();
    if threads.is_empty() && queue.outstanding() == 0 && queue.is_empty() {
        // No worker to wait for and no job result on its way: done now, so a
        // shutdown fired without a running loop completes in the call.
        return deferred::succeed(());
    }
    // Cancelling it cannot stop workers that are finishing their jobs: the
    // cancel is declined, so the Deferred still means "the pool has stopped"
    // (a close() continuation must not run while workers still work).
    let (d, key) = queue.register(|_| Deferred::with_canceller(|r| r.decline_cancel()));
    let handle = queue.handle();
    if threads.is_empty() {
        // After the results already queued (FIFO).
        handle.complete(key, Ok(Box::new(())));
        return d;
    }
    let name = pool.name().to_owned();
    let joiner = handle.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("{name}-stopper"))
        .spawn(move || {
            for t in threads {
                if t.join().is_err() {
                    tracing::error!(pool = %name, "a pool thread panicked outside a job");
                }
            }
            joiner.complete(key, Ok(Box::new(())));
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start a pool stopper thread");
        handle.complete(key, Err(Failure::new(e)));
    }
    d
}
