//! Helpers shared by the integration tests: a deterministic fake clock
//! (Twisted's `twisted.internet.task.Clock`), the `unhandled` log query and
//! small recording helpers. Log capture (Twisted's log observers and
//! `flushLoggedErrors`) comes from the workspace's `test-support` crate.
//!
//! Each test file uses only some of these helpers.
#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use deferred::{ReactorTime, ScheduledCall};
use test_support::logs::Logged;

// ---------------------------------------------------------------------------
// Fake clock
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum CallState {
    Pending,
    Called,
    Cancelled,
}

struct Call {
    when: f64,
    seq: u64,
    state: Cell<CallState>,
    func: RefCell<Option<Box<dyn FnOnce()>>>,
}

#[derive(Default)]
struct ClockState {
    now: f64,
    next_seq: u64,
    calls: Vec<Rc<Call>>,
}

/// A deterministic clock: time only moves on [`Clock::advance`], which runs
/// the calls that became due in time order (FIFO among calls due at the same
/// time), like Twisted's `task.Clock`.
#[derive(Clone, Default)]
pub(crate) struct Clock {
    state: Rc<RefCell<ClockState>>,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Moves time forward by `secs` and runs every call that is now due.
    /// A call is marked as no longer active before it runs (Twisted sets
    /// `call.called` first).
    pub(crate) fn advance(&self, secs: f64) {
        self.state.borrow_mut().now += secs;
        loop {
            let next = {
                let mut st = self.state.borrow_mut();
                st.calls.retain(|c| c.state.get() == CallState::Pending);
                let now = st.now;
                let due = st
                    .calls
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.when <= now)
                    .min_by(|(_, a), (_, b)| a.when.total_cmp(&b.when).then(a.seq.cmp(&b.seq)))
                    .map(|(i, _)| i);
                due.map(|i| st.calls.remove(i))
            };
            let Some(call) = next else { break };
            call.state.set(CallState::Called);
            let f = call.func.borrow_mut().take();
            if let Some(f) = f {
                f();
            }
        }
    }

    /// How many scheduled calls are still active (neither run nor cancelled).
    pub(crate) fn active_calls(&self) -> usize {
        self.state
            .borrow()
            .calls
            .iter()
            .filter(|c| c.state.get() == CallState::Pending)
            .count()
    }
}

impl ReactorTime for Clock {
    fn seconds(&self) -> f64 {
        self.state.borrow().now
    }

    fn call_later_boxed(&self, delay: Duration, f: Box<dyn FnOnce()>) -> Box<dyn ScheduledCall> {
        let mut st = self.state.borrow_mut();
        let seq = st.next_seq;
        st.next_seq += 1;
        let call = Rc::new(Call {
            when: st.now + delay.as_secs_f64(),
            seq,
            state: Cell::new(CallState::Pending),
            func: RefCell::new(Some(f)),
        });
        st.calls.push(Rc::clone(&call));
        Box::new(CallHandle(call))
    }
}

struct CallHandle(Rc<Call>);

impl ScheduledCall for CallHandle {
    fn active(&self) -> bool {
        self.0.state.get() == CallState::Pending
    }

    fn cancel(&self) {
        if self.0.state.get() == CallState::Pending {
            self.0.state.set(CallState::Cancelled);
            let f = self.0.func.borrow_mut().take();
            drop(f);
        }
    }
}

// ---------------------------------------------------------------------------
// Log queries (the capture itself is `test_support::logs`)
// ---------------------------------------------------------------------------

/// The "Unhandled error in Deferred" events.
pub(crate) fn unhandled(logs: &[Logged]) -> Vec<&Logged> {
    test_support::logs::with_prefix(logs, "Unhandled error in Deferred")
}

// ---------------------------------------------------------------------------
// Small recording helpers
// ---------------------------------------------------------------------------

/// A shared, growable record of what callbacks saw, in call order.
pub(crate) type Log<T> = Rc<RefCell<Vec<T>>>;

pub(crate) fn new_log<T>() -> Log<T> {
    Rc::new(RefCell::new(Vec::new()))
}

/// A test error type, the counterpart of test_defer.py's `GenericError`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GenericError(pub(crate) String);

impl fmt::Display for GenericError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GenericError {}

pub(crate) fn generic(msg: &str) -> GenericError {
    GenericError(msg.to_owned())
}
