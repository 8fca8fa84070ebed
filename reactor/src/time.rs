//! Timed calls: [`DelayedCall`] and the queue that runs them.
//!
//! One [`TimerQueue`] implementation serves both the real reactor (real
//! monotonic time) and the test [`Clock`](crate::testing::Clock) (fake time),
//! so `DelayedCall` behaves identically under both, as Twisted's
//! `base.DelayedCall` does.
//!
//! # Implementation notes
//! A binary min-heap ordered by `(time, sequence)`, so calls due at the same
//! time run in the order they were scheduled. Cancelling marks the call and
//! leaves its heap entry behind; the heap is compacted once more than 50
//! entries and more than half of it are cancelled (Twisted's rule). `reset` to
//! an earlier time pushes a fresh entry and bumps the call's epoch, which makes
//! the old entry stale; a postponement (`delay`, or `reset` to a later time) is
//! recorded and applied lazily when the call reaches the top, as in Twisted.

use std::cell::{Cell, RefCell};
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fmt;
use std::rc::{Rc, Weak};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::errors::DelayedCallError;

/// Seconds on the process-wide monotonic clock the reactor uses (its epoch is
/// the first time anything asked). Mirrors `reactor.seconds()`, except that it
/// is monotonic rather than wall-clock time, so timers are immune to clock
/// jumps.
pub fn monotonic_seconds() -> f64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_secs_f64()
}

struct CallState {
    time: f64,
    delayed_time: f64,
    cancelled: bool,
    called: bool,
    epoch: u64,
    func: Option<Box<dyn FnOnce()>>,
}

struct CallInner {
    state: RefCell<CallState>,
    queue: Weak<QueueInner>,
}

/// A call scheduled with `call_later`. Mirrors
/// `twisted.internet.base.DelayedCall`.
///
/// A cheap handle (clones refer to the same call). Cancelling or resetting it
/// after it ran or was cancelled is an error with Twisted's messages.
///
/// # Examples
///
/// ```
/// use reactor::testing::Clock;
/// use std::{cell::Cell, rc::Rc, time::Duration};
///
/// let clock = Clock::new();
/// let ran = Rc::new(Cell::new(false));
/// let r = ran.clone();
/// let call = clock.call_later(Duration::from_secs(5), move || r.set(true));
/// call.reset(Duration::from_secs(10)).unwrap(); // postpone
/// clock.advance(5.0);
/// assert!(!ran.get() && call.active());
/// clock.advance(5.0);
/// assert!(ran.get() && !call.active());
/// assert!(call.cancel().is_err()); // AlreadyCalled
/// ```
#[derive(Clone)]
pub struct DelayedCall {
    inner: Rc<CallInner>,
}

impl DelayedCall {
    /// When the call will run: its time plus any pending postponement.
    /// Mirrors `getTime()`.
    pub fn get_time(&self) -> f64 {
        let st = self.inner.state.borrow();
        st.time + st.delayed_time
    }

    /// True if the call has neither run nor been cancelled. Mirrors `active()`.
    pub fn active(&self) -> bool {
        let st = self.inner.state.borrow();
        !st.cancelled && !st.called
    }

    /// True once the call has run.
    pub fn called(&self) -> bool {
        self.inner.state.borrow().called
    }

    /// True once the call was cancelled.
    pub fn cancelled(&self) -> bool {
        self.inner.state.borrow().cancelled
    }

    fn check(&self) -> Result<(), DelayedCallError> {
        let st = self.inner.state.borrow();
        if st.cancelled {
            Err(DelayedCallError::AlreadyCancelled)
        } else if st.called {
            Err(DelayedCallError::AlreadyCalled)
        } else {
            Ok(())
        }
    }

    /// Cancels the call; its function is dropped without running. Mirrors
    /// `cancel()`.
    pub fn cancel(&self) -> Result<(), DelayedCallError> {
        self.check()?;
        let func = {
            let mut st = self.inner.state.borrow_mut();
            st.cancelled = true;
            st.func.take()
        };
        drop(func);
        if let Some(q) = self.inner.queue.upgrade() {
            q.note_cancelled();
        }
        Ok(())
    }

    /// Reschedules the call to run `delay` from now. Mirrors
    /// `reset(secondsFromNow)`.
    pub fn reset(&self, delay: Duration) -> Result<(), DelayedCallError> {
        self.check()?;
        let Some(q) = self.inner.queue.upgrade() else {
            return Ok(());
        };
        let new_time = (q.now)() + delay.as_secs_f64();
        let mut st = self.inner.state.borrow_mut();
        if new_time < st.time {
            st.time = new_time;
            st.delayed_time = 0.0;
            st.epoch += 1;
            let epoch = st.epoch;
            drop(st);
            q.push(new_time, epoch, Rc::clone(&self.inner));
        } else {
            st.delayed_time = new_time - st.time;
        }
        Ok(())
    }

    /// Postpones the call by `seconds` (negative brings it forward). Mirrors
    /// `delay(secondsLater)`.
    pub fn delay(&self, seconds: f64) -> Result<(), DelayedCallError> {
        if !seconds.is_finite() {
            return Err(DelayedCallError::InvalidDelay(seconds));
        }
        self.check()?;
        let mut st = self.inner.state.borrow_mut();
        let delayed = st.delayed_time + seconds;
        if !delayed.is_finite() || !(st.time + delayed).is_finite() {
            return Err(DelayedCallError::InvalidDelay(seconds));
        }
        st.delayed_time = delayed;
        if st.delayed_time < 0.0 {
            st.time += st.delayed_time;
            st.delayed_time = 0.0;
            st.epoch += 1;
            let (time, epoch) = (st.time, st.epoch);
            drop(st);
            if let Some(q) = self.inner.queue.upgrade() {
                q.push(time, epoch, Rc::clone(&self.inner));
            }
        }
        Ok(())
    }

    fn time_of(call: &CallInner) -> f64 {
        let st = call.state.borrow();
        st.time + st.delayed_time
    }

    /// True if both handles refer to the same call.
    pub fn ptr_eq(a: &DelayedCall, b: &DelayedCall) -> bool {
        Rc::ptr_eq(&a.inner, &b.inner)
    }
}

impl fmt::Debug for DelayedCall {
    /// Twisted's `str()`: `<DelayedCall 0x.. [<time-now>s] called=0 cancelled=0>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.inner.state.borrow();
        let now = self.inner.queue.upgrade().map_or(0.0, |q| (q.now)());
        write!(
            f,
            "<DelayedCall {:p} [{}s] called={} cancelled={}>",
            Rc::as_ptr(&self.inner),
            st.time + st.delayed_time - now,
            u8::from(st.called),
            u8::from(st.cancelled)
        )
    }
}

impl deferred::ScheduledCall for DelayedCall {
    fn active(&self) -> bool {
        DelayedCall::active(self)
    }
    fn cancel(&self) {
        let _ = DelayedCall::cancel(self);
    }
}

struct Entry {
    time: f64,
    seq: u64,
    epoch: u64,
    call: Rc<CallInner>,
}

impl Entry {
    fn stale(&self) -> bool {
        let st = self.call.state.borrow();
        st.cancelled || st.called || st.epoch != self.epoch
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    /// Reversed, so `BinaryHeap` (a max-heap) pops the earliest first.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .time
            .total_cmp(&self.time)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

struct QueueInner {
    heap: RefCell<BinaryHeap<Entry>>,
    seq: Cell<u64>,
    cancelled: Cell<usize>,
    now: Box<dyn Fn() -> f64>,
}

impl QueueInner {
    fn push(&self, time: f64, epoch: u64, call: Rc<CallInner>) {
        let seq = self.seq.get();
        self.seq.set(seq + 1);
        self.push_with_seq(time, seq, epoch, call);
    }

    /// Re-queues with a given sequence number: a postponed call keeps its
    /// place among the calls that existed before this run.
    fn push_with_seq(&self, time: f64, seq: u64, epoch: u64, call: Rc<CallInner>) {
        self.heap.borrow_mut().push(Entry {
            time,
            seq,
            epoch,
            call,
        });
    }

    fn note_cancelled(&self) {
        let n = self.cancelled.get() + 1;
        self.cancelled.set(n);
        let mut heap = self.heap.borrow_mut();
        if n > 50 && n > heap.len() / 2 {
            heap.retain(|e| !e.stale());
            self.cancelled.set(0);
        }
    }
}

/// How [`TimerQueue::run_due`] runs each call.
pub(crate) enum Runner {
    /// Catch panics and log them ("while handling timed call"), as the reactor does.
    CatchAndLog,
    /// Let panics propagate, as `task.Clock.advance` lets exceptions propagate.
    Propagate,
}

/// The queue of timed calls behind a reactor or a [`Clock`](crate::testing::Clock).
pub(crate) struct TimerQueue {
    inner: Rc<QueueInner>,
}

impl TimerQueue {
    pub(crate) fn new(now: Box<dyn Fn() -> f64>) -> Self {
        TimerQueue {
            inner: Rc::new(QueueInner {
                heap: RefCell::new(BinaryHeap::new()),
                seq: Cell::new(0),
                cancelled: Cell::new(0),
                now,
            }),
        }
    }

    pub(crate) fn now(&self) -> f64 {
        (self.inner.now)()
    }

    pub(crate) fn call_later(&self, delay: Duration, f: Box<dyn FnOnce()>) -> DelayedCall {
        let time = self.now() + delay.as_secs_f64();
        let call = Rc::new(CallInner {
            state: RefCell::new(CallState {
                time,
                delayed_time: 0.0,
                cancelled: false,
                called: false,
                epoch: 0,
                func: Some(f),
            }),
            queue: Rc::downgrade(&self.inner),
        });
        self.inner.push(time, 0, Rc::clone(&call));
        DelayedCall { inner: call }
    }

    /// The time of the next live call, dropping stale entries from the top.
    pub(crate) fn next_time(&self) -> Option<f64> {
        let mut heap = self.inner.heap.borrow_mut();
        while let Some(top) = heap.peek() {
            if top.stale() {
                heap.pop();
                continue;
            }
            let st = top.call.state.borrow();
            return Some(st.time + st.delayed_time);
        }
        None
    }

    /// Runs every call due at `now`, in time order. With `only_before` set,
    /// calls scheduled after this run started wait for the next run (the
    /// reactor's rule: a `call_later(0)` from a timed call runs on the next
    /// turn); without it they run in this one (the `Clock.advance` rule).
    pub(crate) fn run_due(&self, now: f64, only_existing: bool, runner: Runner) -> usize {
        let limit = if only_existing {
            self.inner.seq.get()
        } else {
            u64::MAX
        };
        let mut deferred_new = Vec::new();
        let mut ran = 0;
        loop {
            let entry = {
                let mut heap = self.inner.heap.borrow_mut();
                match heap.peek() {
                    Some(top) if top.time <= now => heap.pop().expect("peeked"),
                    _ => break,
                }
            };
            if entry.stale() {
                continue;
            }
            if entry.seq >= limit {
                deferred_new.push(entry);
                continue;
            }
            let func = {
                let mut st = entry.call.state.borrow_mut();
                if st.delayed_time > 0.0 {
                    st.time += st.delayed_time;
                    st.delayed_time = 0.0;
                    st.epoch += 1;
                    let (time, epoch) = (st.time, st.epoch);
                    drop(st);
                    // Not a new call: it stays eligible in this run if due
                    // (Twisted pushes it back and may run it in the same pass).
                    self.inner
                        .push_with_seq(time, entry.seq, epoch, Rc::clone(&entry.call));
                    continue;
                }
                st.called = true;
                st.func.take()
            };
            let Some(func) = func else { continue };
            ran += 1;
            match runner {
                Runner::Propagate => func(),
                Runner::CatchAndLog => {
                    if let Err(payload) =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(func))
                    {
                        let f = deferred::Failure::from_panic(payload);
                        tracing::error!(failure = %f, "Unhandled error while handling timed call");
                    }
                }
            }
        }
        let mut heap = self.inner.heap.borrow_mut();
        for e in deferred_new {
            heap.push(e);
        }
        ran
    }

    /// Every live call, earliest first. Mirrors `getDelayedCalls()`.
    pub(crate) fn delayed_calls(&self) -> Vec<DelayedCall> {
        let heap = self.inner.heap.borrow();
        let mut live: Vec<&Entry> = heap.iter().filter(|e| !e.stale()).collect();
        // By when each will run, postponements included; FIFO for ties.
        live.sort_by(|a, b| {
            let (ta, tb) = (DelayedCall::time_of(&a.call), DelayedCall::time_of(&b.call));
            ta.total_cmp(&tb).then(a.seq.cmp(&b.seq))
        });
        live.into_iter()
            .map(|e| DelayedCall {
                inner: Rc::clone(&e.call),
            })
            .collect()
    }
}

impl fmt::Debug for TimerQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TimerQueue({} entries)", self.inner.heap.borrow().len())
    }
}
