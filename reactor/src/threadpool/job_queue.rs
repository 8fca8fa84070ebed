//! The backlog of a [`ThreadPool`](crate::ThreadPool): a FIFO queue with one
//! producer side (any thread) and the pool's workers as consumers.
//!
//! # Implementation notes
//! A mutex-guarded `VecDeque` (its ring buffer is reused, so steady traffic
//! allocates nothing; a linked-block channel allocates blocks on the
//! submitting thread that the workers free) and a condvar for workers that
//! block. At most one idle worker spins at a time (the *spinner*); the others
//! block at once. A push wakes a blocked worker only when no spinner will take
//! the job, and a worker that takes a job while more are queued wakes the
//! next one: so a serial round trip costs no futex call at all, and a backlog
//! is still shared by every worker.
//!
//! No lost wakeups: the pusher stores `len` and then loads `spinning`; the
//! spinner clears `spinning` and then loads `len` (both `SeqCst`), so either
//! the spinner sees the job or the pusher sees no spinner and wakes a blocked
//! worker. A worker that blocks checks the queue under the lock first and
//! counts itself in `sleepers` under the same lock, so a push after that
//! check sees it.

use std::collections::VecDeque;
use std::time::Duration;

use crate::sync::{AtomicBool, AtomicUsize, Condvar, Mutex, MutexGuard, Ordering};

struct State<M> {
    msgs: VecDeque<M>,
    /// Workers blocked in [`JobQueue::pop_blocking`].
    sleepers: usize,
}

/// A FIFO of pool messages with spin-then-block consumers.
pub(crate) struct JobQueue<M> {
    state: Mutex<State<M>>,
    ready: Condvar,
    /// `state.msgs.len()`, readable without the lock.
    len: AtomicUsize,
    /// An idle worker is spinning for the next message.
    spinning: AtomicBool,
    /// No more pushes; workers drain what is left and stop. Set under the
    /// lock, so checks made under it are exact; read without it to end a
    /// spin at once.
    closed: AtomicBool,
}

/// What a worker gets when it waits for a message.
pub(crate) enum Next<M> {
    Msg(M),
    /// Closed and empty: the worker exits.
    Closed,
}

impl<M> JobQueue<M> {
    pub(crate) fn new() -> Self {
        JobQueue {
            state: Mutex::new(State {
                msgs: VecDeque::new(),
                sleepers: 0,
            }),
            ready: Condvar::new(),
            len: AtomicUsize::new(0),
            spinning: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<M>> {
        // Only pushes and pops happen under the lock: a poisoned lock still
        // holds a consistent queue.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Messages queued.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::SeqCst)
    }

    /// Queues `msg`; gives it back if the queue is closed.
    pub(crate) fn push(&self, msg: M) -> Result<(), M> {
        let mut st = self.lock();
        if self.closed.load(Ordering::SeqCst) {
            return Err(msg);
        }
        st.msgs.push_back(msg);
        self.len.store(st.msgs.len(), Ordering::SeqCst);
        let wake = st.sleepers > 0 && !self.spinning.load(Ordering::SeqCst);
        drop(st);
        if wake {
            self.ready.notify_one();
        }
        Ok(())
    }

    /// Takes the oldest message under the lock, waking another worker if
    /// more are left and nobody else will take them.
    fn pop_locked(&self, st: &mut State<M>) -> Option<M> {
        let msg = st.msgs.pop_front()?;
        self.len.store(st.msgs.len(), Ordering::SeqCst);
        if !st.msgs.is_empty() && st.sleepers > 0 && !self.spinning.load(Ordering::SeqCst) {
            self.ready.notify_one();
        }
        Some(msg)
    }

    /// The oldest message, if any, without blocking.
    pub(crate) fn try_pop(&self) -> Option<M> {
        if self.len.load(Ordering::SeqCst) == 0 {
            return None;
        }
        self.pop_locked(&mut self.lock())
    }

    /// Removes and returns, oldest first, every queued message for which
    /// `take` is true; the others stay queued in their order.
    pub(crate) fn take_matching(&self, mut take: impl FnMut(&M) -> bool) -> Vec<M> {
        let mut st = self.lock();
        let mut taken = Vec::new();
        let mut kept = VecDeque::with_capacity(st.msgs.len());
        for m in st.msgs.drain(..) {
            if take(&m) {
                taken.push(m);
            } else {
                kept.push_back(m);
            }
        }
        st.msgs = kept;
        self.len.store(st.msgs.len(), Ordering::SeqCst);
        taken
    }

    /// Waits for a message: spins for at most `spin` if no other worker is
    /// spinning, then blocks. Returns [`Next::Closed`] once the queue is
    /// closed and empty.
    #[cfg_attr(not(any(test, loom)), allow(dead_code))]
    pub(crate) fn pop_blocking(&self, spin: Duration) -> Next<M> {
        match self.pop_blocking_for(spin, None) {
            Some(next) => next,
            None => unreachable!("no idle limit, so no idle timeout"),
        }
    }

    /// [`pop_blocking`](Self::pop_blocking), giving up with `None` once
    /// nothing has come for `idle` (the caller may then retire).
    pub(crate) fn pop_blocking_for(
        &self,
        spin: Duration,
        idle: Option<Duration>,
    ) -> Option<Next<M>> {
        let deadline = idle.and_then(|d| std::time::Instant::now().checked_add(d));
        if let Some(m) = self.try_pop() {
            return Some(Next::Msg(m));
        }
        if !spin.is_zero()
            && self
                .spinning
                .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            crate::spin::spin_until(spin, || {
                self.len.load(Ordering::SeqCst) > 0 || self.closed.load(Ordering::SeqCst)
            });
            self.spinning.store(false, Ordering::SeqCst);
            if let Some(m) = self.try_pop() {
                return Some(Next::Msg(m));
            }
        }
        let mut st = self.lock();
        loop {
            if let Some(m) = self.pop_locked(&mut st) {
                return Some(Next::Msg(m));
            }
            if self.closed.load(Ordering::SeqCst) {
                return Some(Next::Closed);
            }
            st.sleepers += 1;
            st = match deadline {
                None => self.ready.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some(at) => {
                    let left = at.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        st.sleepers -= 1;
                        return None;
                    }
                    self.ready
                        .wait_timeout(st, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
            st.sleepers -= 1;
        }
    }

    /// Refuses further pushes and wakes every blocked worker; they drain
    /// what is queued and then get [`Next::Closed`].
    pub(crate) fn close(&self) {
        let st = self.lock();
        self.closed.store(true, Ordering::SeqCst);
        drop(st);
        self.ready.notify_all();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn take_matching_keeps_the_rest_in_order() {
        let q = JobQueue::new();
        for i in 0..6 {
            q.push(i).unwrap();
        }
        assert_eq!(q.take_matching(|m| m % 2 == 0), vec![0, 2, 4]);
        assert_eq!(q.len(), 3);
        q.close();
        let rest: Vec<i32> = std::iter::from_fn(|| match q.pop_blocking(Duration::ZERO) {
            Next::Msg(m) => Some(m),
            Next::Closed => None,
        })
        .collect();
        assert_eq!(rest, vec![1, 3, 5]);
    }

    #[test]
    fn fifo_and_close() {
        let q = JobQueue::new();
        for i in 0..5 {
            q.push(i).unwrap();
        }
        assert_eq!(q.len(), 5);
        assert_eq!(q.try_pop(), Some(0));
        q.close();
        assert_eq!(q.push(9), Err(9));
        let rest: Vec<i32> = std::iter::from_fn(|| match q.pop_blocking(Duration::ZERO) {
            Next::Msg(m) => Some(m),
            Next::Closed => None,
        })
        .collect();
        assert_eq!(rest, vec![1, 2, 3, 4]);
        assert_eq!(q.len(), 0);
    }

    /// Many producers and consumers, some spinning, some blocking: every
    /// message is taken exactly once and nobody is left asleep with work
    /// queued (a lost wakeup would hang the test at `join`).
    #[test]
    fn hammer_no_lost_or_duplicated_message() {
        const PRODUCERS: usize = 4;
        const CONSUMERS: usize = 4;
        const PER: usize = 20_000;
        for spin_us in [0u64, 2, 50] {
            let q = Arc::new(JobQueue::new());
            let consumers: Vec<_> = (0..CONSUMERS)
                .map(|_| {
                    let q = Arc::clone(&q);
                    thread::spawn(move || {
                        let mut got = Vec::new();
                        while let Next::Msg(m) = q.pop_blocking(Duration::from_micros(spin_us)) {
                            got.push(m);
                        }
                        got
                    })
                })
                .collect();
            let producers: Vec<_> = (0..PRODUCERS)
                .map(|p| {
                    let q = Arc::clone(&q);
                    thread::spawn(move || {
                        for i in 0..PER {
                            q.push(p * PER + i).unwrap();
                            if i % 1000 == 0 {
                                // Let the consumers drain and fall asleep now
                                // and then, so wakeups are exercised.
                                thread::sleep(Duration::from_micros(200));
                            }
                        }
                    })
                })
                .collect();
            for p in producers {
                p.join().unwrap();
            }
            q.close();
            let mut all: Vec<usize> = consumers
                .into_iter()
                .flat_map(|c| c.join().unwrap())
                .collect();
            all.sort_unstable();
            assert_eq!(
                all,
                (0..PRODUCERS * PER).collect::<Vec<_>>(),
                "spin {spin_us} µs"
            );
        }
    }

    /// Closing ends a spin at once, however long the spin budget.
    #[test]
    fn close_ends_a_long_spin() {
        let q = Arc::new(JobQueue::<u32>::new());
        let spinner = {
            let q = Arc::clone(&q);
            thread::spawn(move || matches!(q.pop_blocking(Duration::from_secs(60)), Next::Closed))
        };
        while !q.spinning.load(Ordering::SeqCst) {
            thread::yield_now();
        }
        let closed_at = std::time::Instant::now();
        q.close();
        assert!(spinner.join().unwrap());
        // Far below the 60 s budget: the spin saw the close.
        assert!(closed_at.elapsed() < Duration::from_secs(30));
    }

    /// A message pushed while every worker sleeps is taken without a close:
    /// the push itself must wake one.
    #[test]
    fn push_wakes_a_sleeper() {
        let q = Arc::new(JobQueue::new());
        let (tx, rx) = std::sync::mpsc::channel();
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let (q, tx) = (Arc::clone(&q), tx.clone());
                thread::spawn(move || {
                    while let Next::Msg(m) = q.pop_blocking(Duration::from_micros(5)) {
                        tx.send(m).unwrap();
                    }
                })
            })
            .collect();
        for i in 0..200 {
            // Long enough for the spinner to give up and block.
            thread::sleep(Duration::from_micros(300));
            q.push(i).unwrap();
            assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(i));
        }
        q.close();
        for w in workers {
            w.join().unwrap();
        }
    }
}
