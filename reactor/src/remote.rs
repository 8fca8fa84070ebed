//! The thread-to-loop queue: [`RemoteHandle`] (any thread) and [`LoopQueue`]
//! (the loop thread).
//!
//! Everything that crosses from another thread to the loop thread goes
//! through one inbox: plain calls (`call_from_thread`), results of
//! thread-pool jobs (`(slab key, Result)`), and wakeups of futures run by
//! `ensure_deferred` (whose tasks live in `executor.rs`). Deferreds never
//! cross: the resolvers of pending jobs sit in a slab on the loop thread, and
//! results find them by key.
//!
//! # Implementation notes
//! Wakeups are the expensive part (a cross-core wake costs 20–25 µs on the
//! target machine), so the loop announces that it is about to sleep with an
//! atomic flag, and a sender wakes the loop only if it takes that flag:
//!
//! - loop: `sleeping = true`; SeqCst fence; re-check the channel; sleep in
//!   `poll` only if it is still empty; `sleeping = false` after waking;
//! - sender: push; SeqCst fence; if `sleeping` is set and this sender swaps it
//!   from true to false, call `Waker::wake`.
//!
//! The two fences order the flag store and the inbox check against the push
//! and the flag load, so either the loop sees the message or the sender sees
//! the flag: no lost wakeups, and at most one `wake()` per sleep however many
//! results arrive.
//!
//! The inbox is a mutex-guarded `Vec` that the loop swaps for an empty one
//! it kept from the previous turn, so a turn takes every queued message in
//! one short critical section and, once both buffers have grown to the
//! traffic, queueing allocates nothing. (A linked-block channel allocates a
//! block per 31 messages on the sending thread and frees it on the loop
//! thread; with a 32-byte message that block is larger than glibc's
//! per-thread cache takes, and the pool workers spent a quarter of their time
//! in `malloc_consolidate` because of it.)

use std::any::Any;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::{Rc, Weak};
use std::sync::{Arc, PoisonError};
use std::thread::{self, ThreadId};

use deferred::implementors::AnyResolver;
use deferred::{Deferred, Failure, Resolver};
use slab::Slab;

use crate::executor::Executor;
use crate::shutdown::ShutdownHold;
use crate::sync::{fence, AtomicBool, AtomicUsize, Mutex, MutexGuard, Ordering};

/// A boxed result of a thread-pool job, on its way to the loop thread.
pub(crate) type BoxedOutcome = Result<Box<dyn Any + Send>, Failure>;

pub(crate) enum Msg {
    Call(Box<dyn FnOnce() + Send>),
    Complete(usize, BoxedOutcome),
    Wake(usize),
}

/// Messages queued for the loop thread.
struct Inbox {
    msgs: Vec<Msg>,
    /// Set when the loop side is gone: later messages are dropped unqueued.
    closed: bool,
}

/// A buffer larger than this many messages (2 MiB) is not kept for reuse
/// after a burst, so memory stays bounded by the traffic of recent turns.
const KEEP_CAPACITY: usize = 1 << 16;
/// Each buffer starts with room for this many messages.
const INITIAL_CAPACITY: usize = 256;

struct Shared {
    inbox: Mutex<Inbox>,
    /// `inbox.msgs.len()`, readable without the lock (written under it).
    queued: AtomicUsize,
    /// Whether a job result is among the queued messages (written under the
    /// lock, read without it): the loop's spin budget follows its waits for
    /// results, not for other calls (see `loop_spin.rs`).
    result_queued: AtomicBool,
    waker: Option<mio::Waker>,
    /// Under loom, the model of `waker` (a mio waker is invisible to loom).
    #[cfg(loom)]
    model_waker: Option<Arc<crate::sync::loom_model::ModelWaker>>,
    sleeping: AtomicBool,
    loop_thread: ThreadId,
}

/// A handle for other threads to hand work to the loop thread. Mirrors
/// `reactor.callFromThread` (Twisted's `IReactorFromThreads`).
///
/// `Send + Sync + Clone`; calls run on the loop thread in the order they were
/// queued (FIFO per sending thread, and globally in queue order).
///
/// # Examples
///
/// ```
/// use reactor::prelude::*;
/// use reactor::Reactor;
/// let reactor = Reactor::new().unwrap();
/// let remote = reactor.remote();
/// let r = reactor.clone();
/// std::thread::spawn(move || {
///     remote.call_from_thread(|| tracing::info!("on the loop thread"));
/// });
/// reactor.call_from_thread(move || { /* also fine from the loop thread */ });
/// let stopper = reactor.clone();
/// reactor.call_later(std::time::Duration::from_millis(20), move || stopper.stop().unwrap());
/// r.run().unwrap();
/// ```
#[derive(Clone)]
pub struct RemoteHandle {
    shared: Arc<Shared>,
}

impl RemoteHandle {
    /// Runs `f` on the loop thread at its next turn. A panic in `f` is logged
    /// (`while calling from thread`) and the loop goes on. If the reactor is
    /// gone, `f` is dropped unrun.
    pub fn call_from_thread<F>(&self, f: F)
    where
        F: FnOnce() + Send + 'static,
    {
        self.send(Msg::Call(Box::new(f)));
    }

    /// Delivers the result of the pending job `key` (from
    /// `LoopQueue::register`) to the loop thread, which fires its Deferred.
    /// A result for a job that was cancelled meanwhile is dropped.
    pub(crate) fn complete(&self, key: usize, outcome: BoxedOutcome) {
        self.send(Msg::Complete(key, outcome));
    }

    pub(crate) fn wake_task(&self, key: usize) {
        self.send(Msg::Wake(key));
    }

    fn send(&self, msg: Msg) {
        Self::send_on(&self.shared, msg);
    }

    fn send_on(shared: &Shared, msg: Msg) {
        let mut inbox = shared.lock();
        if inbox.closed {
            drop(inbox);
            drop(msg); // the loop side is gone; dropped outside the lock
            return;
        }
        if matches!(msg, Msg::Complete(..)) {
            shared.result_queued.store(true, Ordering::Relaxed);
        }
        inbox.msgs.push(msg);
        shared.queued.store(inbox.msgs.len(), Ordering::Relaxed);
        drop(inbox);
        Self::notify(shared);
    }

    fn notify(shared: &Shared) {
        fence(Ordering::SeqCst);
        // A relaxed load first keeps the common "loop is awake" case free of
        // read-modify-write traffic on the shared line.
        if shared.sleeping.load(Ordering::Relaxed) && shared.sleeping.swap(false, Ordering::SeqCst)
        {
            if let Some(w) = &shared.waker {
                if let Err(e) = w.wake() {
                    tracing::error!(error = %e, "failed to wake the reactor");
                }
            }
            #[cfg(loom)]
            if let Some(w) = &shared.model_waker {
                w.wake();
            }
        }
    }

    /// True when called on the loop thread this handle belongs to. Mirrors
    /// `twisted.python.threadable.isInIOThread`.
    pub fn is_loop_thread(&self) -> bool {
        thread::current().id() == self.shared.loop_thread
    }
}

impl Shared {
    /// The inbox; a panic while it was held cannot leave it inconsistent
    /// (pushes and swaps only), so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for RemoteHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteHandle")
            .field("queued", &self.shared.queued.load(Ordering::Relaxed))
            .field("loop_thread", &self.shared.loop_thread)
            .finish()
    }
}

/// The loop-thread side of the thread-to-loop queue, owned by a reactor (the
/// real one or the test one), which drains it once per turn. For
/// implementors and tests (see [`implementors`](crate::implementors)): a
/// program talks to it through the reactor's `call_from_thread`,
/// `ensure_deferred` and `defer_to_thread_pool`.
///
/// It also holds the resolvers of pending thread-pool jobs (a slab keyed by
/// the key that travels with the job) and the futures run by
/// `ensure_deferred`.
pub struct LoopQueue {
    shared: Arc<Shared>,
    /// The buffer swapped into the inbox at the next drain (empty).
    spare: RefCell<Vec<Msg>>,
    /// Drained messages not yet dispatched.
    current: RefCell<VecDeque<Msg>>,
    pending: Rc<RefCell<Slab<AnyResolver>>>,
    /// Shutdown holds kept until the pending entry of that key is fired.
    holds: RefCell<std::collections::HashMap<usize, ShutdownHold>>,
    executor: Executor,
}

impl LoopQueue {
    /// A queue for the current thread. With a `mio::Waker`, senders wake a
    /// sleeping loop; without one (the test reactor), the loop is expected to
    /// drain when told to.
    pub(crate) fn new(waker: Option<mio::Waker>) -> Self {
        Self::with_wakers(
            waker,
            #[cfg(loom)]
            None,
        )
    }

    /// A queue whose sleeping loop is woken through a loom model of the mio
    /// waker (`--cfg loom` only).
    #[cfg(loom)]
    pub(crate) fn with_model_waker(waker: Arc<crate::sync::loom_model::ModelWaker>) -> Self {
        Self::with_wakers(None, Some(waker))
    }

    fn with_wakers(
        waker: Option<mio::Waker>,
        #[cfg(loom)] model_waker: Option<Arc<crate::sync::loom_model::ModelWaker>>,
    ) -> Self {
        LoopQueue {
            shared: Arc::new(Shared {
                inbox: Mutex::new(Inbox {
                    msgs: Vec::with_capacity(INITIAL_CAPACITY),
                    closed: false,
                }),
                queued: AtomicUsize::new(0),
                result_queued: AtomicBool::new(false),
                waker,
                #[cfg(loom)]
                model_waker,
                sleeping: AtomicBool::new(false),
                loop_thread: thread::current().id(),
            }),
            spare: RefCell::new(Vec::with_capacity(INITIAL_CAPACITY)),
            current: RefCell::new(VecDeque::with_capacity(INITIAL_CAPACITY)),
            pending: Rc::new(RefCell::new(Slab::new())),
            holds: RefCell::new(std::collections::HashMap::new()),
            executor: Executor::default(),
        }
    }

    /// The `Send + Sync` handle other threads use.
    pub(crate) fn handle(&self) -> RemoteHandle {
        RemoteHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// True if nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many messages are queued (including any a running drain has
    /// taken but not reached).
    pub fn len(&self) -> usize {
        self.shared.queued.load(Ordering::Relaxed) + self.current.borrow().len()
    }

    /// True if a thread-pool job's result is queued (not only calls or
    /// wakeups). Read without the lock, so it may lag a message that
    /// [`is_empty`](Self::is_empty) already sees; it only steers the
    /// loop's spin budget.
    pub(crate) fn result_queued(&self) -> bool {
        self.shared.result_queued.load(Ordering::Relaxed)
    }

    /// How many thread-pool jobs are waiting for their results.
    pub fn outstanding(&self) -> usize {
        self.pending.borrow().len()
    }

    /// Parks `resolver` until a result with the returned key arrives.
    /// `make` receives the key before the resolver is stored.
    pub(crate) fn register<T: 'static>(
        &self,
        make: impl FnOnce(usize) -> (Deferred<T>, Resolver<T>),
    ) -> (Deferred<T>, usize) {
        let mut pending = self.pending.borrow_mut();
        let entry = pending.vacant_entry();
        let key = entry.key();
        let (d, r) = make(key);
        entry.insert(AnyResolver::from(r));
        (d, key)
    }

    /// The slab of pending resolvers, for cancellers that forget a job.
    pub(crate) fn pending_weak(&self) -> Weak<RefCell<Slab<AnyResolver>>> {
        Rc::downgrade(&self.pending)
    }

    /// A Deferred that fires with `result` on a later turn, through the queue,
    /// as thread results do (for errors detected before any job was queued).
    pub fn resolve_later<T: Send + 'static>(&self, result: Result<T, Failure>) -> Deferred<T> {
        let (d, key) = self.register(|_| Deferred::new());
        self.handle()
            .complete(key, result.map(|v| Box::new(v) as Box<dyn Any + Send>));
        d
    }

    /// [`resolve_later`](Self::resolve_later), keeping `hold` until the
    /// Deferred has been fired (whatever its callbacks do, paused or not),
    /// so a shutdown in progress waits for it. Its outcome is decided
    /// already, as that of Twisted's `defer.fail()`, which a cancel cannot
    /// change: a cancel before it fires is declined (a pool that counted a
    /// refusal as failed must not see its Deferred show `CancelledError`).
    pub fn resolve_later_holding<T: Send + 'static>(
        &self,
        result: Result<T, Failure>,
        hold: ShutdownHold,
    ) -> Deferred<T> {
        let (d, key) =
            self.register(|_| Deferred::with_canceller(|r: &Resolver<T>| r.decline_cancel()));
        self.holds.borrow_mut().insert(key, hold);
        self.handle()
            .complete(key, result.map(|v| Box::new(v) as Box<dyn Any + Send>));
        d
    }

    /// Runs the messages that were queued when it was called, in FIFO order,
    /// and returns how many it ran. Messages queued meanwhile (also by the
    /// calls it runs) wait for the next turn. Mirrors the thread-call part of
    /// `runUntilCurrent`.
    ///
    /// A call that drains again (by iterating the reactor) first runs the
    /// older messages the outer drain has not reached, so FIFO order holds
    /// and a call waiting in a nested loop for a later message gets it.
    pub(crate) fn drain(&self) -> usize {
        if self.shared.queued.load(Ordering::Relaxed) != 0 {
            let mut batch = std::mem::take(&mut *self.spare.borrow_mut());
            {
                let mut inbox = self.shared.lock();
                std::mem::swap(&mut inbox.msgs, &mut batch);
                self.shared.queued.store(0, Ordering::Relaxed);
                self.shared.result_queued.store(false, Ordering::Relaxed);
            }
            self.current.borrow_mut().extend(batch.drain(..));
            if batch.capacity() <= KEEP_CAPACITY {
                let mut spare = self.spare.borrow_mut();
                if spare.capacity() < batch.capacity() {
                    *spare = batch;
                }
            }
        }
        let n = self.current.borrow().len();
        let mut ran = 0;
        // `dispatch` does not unwind: calls, callbacks and futures each catch
        // their own panics.
        while ran < n {
            let Some(msg) = self.current.borrow_mut().pop_front() else {
                break; // a nested drain ran the rest
            };
            self.dispatch(msg);
            ran += 1;
        }
        let mut current = self.current.borrow_mut();
        if current.is_empty() && current.capacity() > KEEP_CAPACITY {
            *current = VecDeque::new();
        }
        ran
    }

    fn dispatch(&self, msg: Msg) {
        match msg {
            Msg::Call(f) => {
                if let Err(payload) = catch_unwind(AssertUnwindSafe(f)) {
                    let f = Failure::from_panic(payload);
                    tracing::error!(failure = %f, "Unhandled error while calling from thread");
                }
            }
            Msg::Complete(key, outcome) => {
                let resolver = self.pending.borrow_mut().try_remove(key);
                // Taken out before the callbacks run: they may register a new
                // entry, which can reuse this key.
                let hold = if self.holds.borrow().is_empty() {
                    None
                } else {
                    self.holds.borrow_mut().remove(&key)
                };
                if let Some(r) = resolver {
                    // Already called means it was cancelled while running: the
                    // late result is dropped without error.
                    let _ = r.resolve(outcome.map(|v| v as Box<dyn Any>));
                }
                drop(hold);
            }
            Msg::Wake(key) => self.executor.poll(key),
        }
    }

    /// Runs a `!Send` future on this loop thread and returns a Deferred for
    /// its output; see `executor.rs`.
    pub(crate) fn ensure_deferred<T, F>(&self, future: F) -> Deferred<T>
    where
        T: 'static,
        F: Future<Output = Result<T, Failure>> + 'static,
    {
        self.executor.spawn(self.handle(), future)
    }

    /// Queues `f` to run on this loop at its next drain, as
    /// [`RemoteHandle::call_from_thread`] does, without cloning the handle.
    pub(crate) fn call_from_thread<F>(&self, f: F)
    where
        F: FnOnce() + Send + 'static,
    {
        RemoteHandle::send_on(&self.shared, Msg::Call(Box::new(f)));
    }

    /// Announces that the loop is about to sleep; returns false (and takes the
    /// announcement back) if something arrived meanwhile.
    pub(crate) fn prepare_sleep(&self) -> bool {
        // A read-modify-write rather than a store: it is ordered after any
        // sender's `swap(false)` in the flag's modification order without
        // relying on the fence rules (which loom does not model fully, so a
        // plain store made it report a lost wakeup the C11 model forbids).
        // It runs once per sleep, so the cost does not matter.
        self.shared.sleeping.swap(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if self.shared.queued.load(Ordering::Relaxed) == 0 {
            true
        } else {
            self.shared.sleeping.store(false, Ordering::Relaxed);
            false
        }
    }

    /// The loop is awake again.
    pub(crate) fn woke(&self) {
        self.shared.sleeping.store(false, Ordering::Relaxed);
    }

    /// How many futures started by `ensure_deferred` have not finished.
    pub fn tasks(&self) -> usize {
        self.executor.len()
    }
}

impl Drop for LoopQueue {
    fn drop(&mut self) {
        // Drop what is queued so blocked `blocking_call_from_thread` callers see
        // the reactor is gone; later sends are dropped at once. The messages
        // are dropped outside the lock (their drops may send).
        let queued = {
            let mut inbox = self.shared.lock();
            inbox.closed = true;
            self.shared.queued.store(0, Ordering::Relaxed);
            std::mem::take(&mut inbox.msgs)
        };
        drop(queued);
    }
}

impl fmt::Debug for LoopQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoopQueue")
            .field("queued", &self.len())
            .field("outstanding", &self.outstanding())
            .field("tasks", &self.tasks())
            .finish()
    }
}
