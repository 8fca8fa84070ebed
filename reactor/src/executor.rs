//! The executor behind `ensure_deferred`: Twisted's
//! `defer.ensureDeferred(coro)` / `Deferred.fromCoroutine`, for Rust futures.
//!
//! A future runs on the loop thread (it may hold `!Send` things such as
//! Deferreds). It is polled once right away, as Twisted starts a coroutine at
//! once, then whenever its waker is woken. A waker may be woken from any
//! thread: it queues a `Wake(key)` message on the reactor's thread-to-loop
//! queue (see `remote.rs`), and the loop polls the task when it drains that
//! message. Each task's Deferred has a canceller that drops the future, which
//! cancels the Deferred it is awaiting.

use std::any::Any;
use std::cell::RefCell;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use deferred::implementors::AnyResolver;
use deferred::{Deferred, Failure, Resolver};
use slab::Slab;

use crate::remote::RemoteHandle;
use crate::sync::{AtomicBool, Ordering};

enum TaskSlot {
    Idle(Task),
    /// Taken out for polling; `cancelled` says the canceller ran meanwhile.
    Polling {
        cancelled: bool,
    },
}

type TaskFuture = Pin<Box<dyn Future<Output = Result<Box<dyn Any>, Failure>>>>;

struct Task {
    future: TaskFuture,
    resolver: AnyResolver,
    wake_state: Arc<TaskWaker>,
    waker: Waker,
}

struct TaskWaker {
    key: usize,
    remote: RemoteHandle,
    scheduled: AtomicBool,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if !self.scheduled.swap(true, Ordering::AcqRel) {
            self.remote.wake_task(self.key);
        }
    }
}

/// The futures started by `ensure_deferred` on one loop and not finished,
/// keyed by the number their wakers send back.
#[derive(Default)]
pub(crate) struct Executor {
    tasks: Rc<RefCell<Slab<TaskSlot>>>,
}

impl Executor {
    /// Starts `future`; its wakers reach the loop through `remote`. See the
    /// module notes.
    pub(crate) fn spawn<T, F>(&self, remote: RemoteHandle, future: F) -> Deferred<T>
    where
        T: 'static,
        F: Future<Output = Result<T, Failure>> + 'static,
    {
        let mut tasks = self.tasks.borrow_mut();
        let entry = tasks.vacant_entry();
        let key = entry.key();
        let weak = Rc::downgrade(&self.tasks);
        let (d, resolver) = Deferred::with_canceller(move |_: &Resolver<T>| {
            let Some(tasks) = weak.upgrade() else { return };
            let removed = {
                let mut tasks = tasks.borrow_mut();
                match tasks.get_mut(key) {
                    Some(TaskSlot::Polling { cancelled }) => {
                        *cancelled = true;
                        None
                    }
                    Some(TaskSlot::Idle(_)) => tasks.try_remove(key),
                    None => None,
                }
            };
            drop(removed); // outside the borrow: dropping the future may re-enter
        });
        let wake_state = Arc::new(TaskWaker {
            key,
            remote,
            scheduled: AtomicBool::new(false),
        });
        entry.insert(TaskSlot::Idle(Task {
            future: Box::pin(async move { future.await.map(|v| Box::new(v) as Box<dyn Any>) }),
            resolver: AnyResolver::from(resolver),
            waker: Waker::from(Arc::clone(&wake_state)),
            wake_state,
        }));
        drop(tasks);
        self.poll(key);
        d
    }

    /// Polls task `key` (a wake arrived); a stale wake does nothing.
    pub(crate) fn poll(&self, key: usize) {
        let mut task = {
            let mut tasks = self.tasks.borrow_mut();
            match tasks.get_mut(key) {
                Some(slot @ TaskSlot::Idle(_)) => {
                    match std::mem::replace(slot, TaskSlot::Polling { cancelled: false }) {
                        TaskSlot::Idle(t) => t,
                        TaskSlot::Polling { .. } => unreachable!(),
                    }
                }
                // Already finished, cancelled, or being polled: a stale wake.
                _ => return,
            }
        };
        let waker = task.waker.clone();
        // Clear `scheduled` before polling so a wake during the poll queues
        // another poll.
        task.wake_state.scheduled.store(false, Ordering::Release);
        let mut cx = Context::from_waker(&waker);
        let polled = catch_unwind(AssertUnwindSafe(|| task.future.as_mut().poll(&mut cx)));
        let cancelled = {
            let mut tasks = self.tasks.borrow_mut();
            let cancelled = matches!(tasks.get(key), Some(TaskSlot::Polling { cancelled: true }));
            match (&polled, cancelled) {
                (Ok(Poll::Pending), false) => {
                    tasks[key] = TaskSlot::Idle(task);
                    return;
                }
                _ => {
                    tasks.remove(key);
                }
            }
            cancelled
        };
        match polled {
            _ if cancelled => drop(task),
            Ok(Poll::Ready(outcome)) => {
                let _ = task.resolver.resolve(outcome);
            }
            Err(payload) => {
                let _ = task.resolver.resolve(Err(Failure::from_panic(payload)));
            }
            Ok(Poll::Pending) => unreachable!("handled above"),
        }
    }

    /// How many tasks have not finished.
    pub(crate) fn len(&self) -> usize {
        self.tasks.borrow().len()
    }
}
