//! The type-erased chain engine behind [`Deferred`](crate::Deferred).
//!
//! `Deferred<T>` is a typed view of one `Core`. Values travel between steps
//! boxed as `dyn Any`; the typed wrappers are the only code that boxes and
//! unboxes them, and they always agree on the type, so the downcasts in the
//! wrappers cannot fail.
//!
//! # Implementation notes
//! - `run_callbacks` is iterative: when a callback's result is another Deferred
//!   that has not fired, the outer Deferred pauses and a `Continue` marker is
//!   appended to the inner one; when the inner one reaches that marker, the
//!   outer is pushed on an explicit stack instead of being run recursively. So a
//!   chain of 100 000 Deferreds each waiting on the next uses a bounded native
//!   stack (Twisted's `test_boundedStackDepth`).
//! - No `RefCell` borrow is held while user code runs, so callbacks may fire,
//!   cancel, pause or add callbacks to any Deferred, including their own.
//! - Ownership: a `Continue` marker holds the outer Deferred strongly (the inner
//!   keeps the outer alive, as in Twisted); the outer only holds the inner weakly
//!   (for cancel and `Debug`), so there is no `Rc` cycle.
//! - Drops of long chains are trampolined so dropping 100 000 pending chained
//!   Deferreds does not overflow the stack either.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::rc::{Rc, Weak};

use crate::errors::{AlreadyCalledError, CancelledError};
use crate::Failure;

pub(crate) type Value = Box<dyn Any>;
pub(crate) type Outcome = Result<Value, Failure>;

/// What a callback produced.
pub(crate) enum Step {
    /// A value or a failure: the chain continues with it.
    Done(Outcome),
    /// A Deferred: the chain waits for it (Twisted's implicit chaining).
    Chain(Rc<Core>),
}

pub(crate) type Callback = Box<dyn FnOnce(Outcome) -> Step>;
pub(crate) type Canceller = Box<dyn FnOnce(&Rc<Core>)>;

enum Entry {
    Pair(Callback),
    /// Hand the current result to this waiting Deferred (Twisted's `_CONTINUE`).
    Continue(Rc<Core>),
}

pub(crate) struct Core {
    state: RefCell<State>,
    created: &'static Location<'static>,
}

struct State {
    called: bool,
    /// Present once fired, except while a callback runs, while the chain waits on
    /// an inner Deferred, and after the result was handed on or taken.
    result: Option<Outcome>,
    paused: u32,
    callbacks: VecDeque<Entry>,
    canceller: Option<Canceller>,
    /// After `cancel` without canceller: the next fire is silently ignored.
    suppress_already_called: bool,
    /// Whether `cancel` errbacks with `CancelledError` when the canceller did not
    /// fire the Deferred (false for `DeferredList`, which Twisted cancels
    /// through its inputs only).
    cancel_errbacks: bool,
    /// Set by a canceller that found the work past the point where it can be
    /// stopped: this cancel and every later one leave the Deferred to fire
    /// with the work's outcome.
    cancel_declined: bool,
    running: bool,
    /// The inner Deferred this one waits on.
    chained_to: Option<Weak<Core>>,
    first_fired: Option<&'static Location<'static>>,
}

impl Core {
    pub(crate) fn new(
        created: &'static Location<'static>,
        canceller: Option<Canceller>,
    ) -> Rc<Core> {
        Rc::new(Core {
            state: RefCell::new(State {
                called: false,
                result: None,
                paused: 0,
                callbacks: VecDeque::new(),
                canceller,
                suppress_already_called: false,
                cancel_errbacks: true,
                cancel_declined: false,
                running: false,
                chained_to: None,
                first_fired: None,
            }),
            created,
        })
    }

    /// A Deferred that has already fired with `outcome`.
    pub(crate) fn fired(created: &'static Location<'static>, outcome: Outcome) -> Rc<Core> {
        let core = Core::new(created, None);
        {
            let mut st = core.state.borrow_mut();
            st.called = true;
            st.result = Some(outcome);
            st.first_fired = Some(created);
        }
        core
    }

    pub(crate) fn set_cancel_errbacks(&self, yes: bool) {
        self.state.borrow_mut().cancel_errbacks = yes;
    }

    pub(crate) fn decline_cancel(&self) {
        self.state.borrow_mut().cancel_declined = true;
    }

    pub(crate) fn created(&self) -> &'static Location<'static> {
        self.created
    }

    pub(crate) fn called(&self) -> bool {
        self.state.borrow().called
    }

    pub(crate) fn paused(&self) -> u32 {
        self.state.borrow().paused
    }

    /// True when fired, not paused, not waiting: the result is there to take.
    pub(crate) fn has_result(&self) -> bool {
        let st = self.state.borrow();
        st.called && st.paused == 0 && !st.running && st.result.is_some()
    }

    pub(crate) fn take_result(&self) -> Option<Outcome> {
        let mut st = self.state.borrow_mut();
        if st.called && st.paused == 0 && !st.running {
            st.result.take()
        } else {
            None
        }
    }

    pub(crate) fn add(self: &Rc<Core>, cb: Callback) {
        let run = {
            let mut st = self.state.borrow_mut();
            st.callbacks.push_back(Entry::Pair(cb));
            st.called
        };
        if run {
            self.run_callbacks();
        }
    }

    pub(crate) fn fire(
        self: &Rc<Core>,
        outcome: Outcome,
        at: &'static Location<'static>,
    ) -> Result<(), AlreadyCalledError> {
        {
            let mut st = self.state.borrow_mut();
            if st.called {
                if st.suppress_already_called {
                    st.suppress_already_called = false;
                    return Ok(());
                }
                return Err(AlreadyCalledError {
                    created: self.created,
                    first_fired: st.first_fired.unwrap_or(self.created),
                    fired_again: at,
                });
            }
            st.called = true;
            st.first_fired = Some(at);
            st.canceller = None;
            st.result = Some(outcome);
        }
        self.run_callbacks();
        Ok(())
    }

    pub(crate) fn pause(&self) {
        self.state.borrow_mut().paused += 1;
    }

    pub(crate) fn unpause(self: &Rc<Core>) {
        let run = {
            let mut st = self.state.borrow_mut();
            st.paused = st.paused.saturating_sub(1);
            st.paused == 0 && st.called
        };
        if run {
            self.run_callbacks();
        }
    }

    /// Mirrors `Deferred.cancel`.
    #[track_caller]
    pub(crate) fn cancel(self: &Rc<Core>) {
        let at = Location::caller();
        enum Action {
            Canceller(Canceller, bool),
            NoCanceller,
            Inner(Rc<Core>),
            Nothing,
        }
        let action = {
            let mut st = self.state.borrow_mut();
            if !st.called && st.cancel_declined {
                Action::Nothing
            } else if !st.called {
                match st.canceller.take() {
                    Some(c) => Action::Canceller(c, st.cancel_errbacks),
                    None => {
                        st.suppress_already_called = true;
                        Action::NoCanceller
                    }
                }
            } else if let Some(inner) = st.chained_to.as_ref().and_then(Weak::upgrade) {
                Action::Inner(inner)
            } else {
                Action::Nothing
            }
        };
        match action {
            Action::Canceller(c, errbacks) => {
                if let Err(payload) = catch_unwind(AssertUnwindSafe(|| c(self))) {
                    let f = Failure::from_panic(payload);
                    tracing::error!(failure = %f, "Exception raised from user supplied canceller");
                }
                let declined = self.state.borrow().cancel_declined;
                if errbacks && !declined && !self.called() {
                    let _ = self.fire(Err(Failure::new(CancelledError)), at);
                }
            }
            Action::NoCanceller => {
                let _ = self.fire(Err(Failure::new(CancelledError)), at);
                // `fire` does not consume the suppression: it was not yet called.
            }
            Action::Inner(inner) => inner.cancel(),
            Action::Nothing => {}
        }
    }

    /// The Deferred this one is waiting on, if any.
    pub(crate) fn chained_to(&self) -> Option<Rc<Core>> {
        self.state
            .borrow()
            .chained_to
            .as_ref()
            .and_then(Weak::upgrade)
    }

    pub(crate) fn set_chained_to(&self, other: &Rc<Core>) {
        self.state.borrow_mut().chained_to = Some(Rc::downgrade(other));
    }

    /// Runs as much of the chain as can run now. Mirrors `Deferred._runCallbacks`.
    fn run_callbacks(self: &Rc<Core>) {
        if self.state.borrow().running {
            // A callback of ours is on the stack; its loop picks up new entries.
            return;
        }
        // The Deferred being run is `top`; `below` holds the ones whose run
        // continues once it finishes (a chained Deferred's outer ones). Kept
        // apart so the common run, with no chaining, allocates nothing.
        let mut top = Rc::clone(self);
        let mut below: Vec<Rc<Core>> = Vec::new();
        loop {
            let current = Rc::clone(&top);
            {
                let mut st = current.state.borrow_mut();
                if st.paused > 0 {
                    // Twisted returns from the whole run here; whoever unpauses
                    // this Deferred resumes it.
                    return;
                }
                st.chained_to = None;
            }
            let mut finished = true;
            loop {
                let mut st = current.state.borrow_mut();
                let Some(entry) = st.callbacks.pop_front() else {
                    break;
                };
                match entry {
                    Entry::Continue(outer) => {
                        let result = st.result.take();
                        drop(st);
                        {
                            let mut o = outer.state.borrow_mut();
                            o.result = result;
                            o.paused = o.paused.saturating_sub(1);
                        }
                        below.push(std::mem::replace(&mut top, outer));
                        finished = false;
                        break;
                    }
                    Entry::Pair(cb) => {
                        let Some(input) = st.result.take() else {
                            // Only reachable if a result was taken while
                            // callbacks were still queued; keep the entry.
                            st.callbacks.push_front(Entry::Pair(cb));
                            break;
                        };
                        st.running = true;
                        drop(st);
                        let step = catch_unwind(AssertUnwindSafe(move || cb(input)))
                            .unwrap_or_else(|payload| {
                                Step::Done(Err(Failure::from_panic(payload)))
                            });
                        let mut st = current.state.borrow_mut();
                        st.running = false;
                        match step {
                            Step::Done(outcome) => st.result = Some(outcome),
                            Step::Chain(inner) => {
                                if Rc::ptr_eq(&inner, &current) {
                                    st.result = Some(Err(Failure::msg(
                                        "Callback returned the Deferred it was attached to; this breaks the callback chain",
                                    )));
                                    continue;
                                }
                                let mut ist = inner.state.borrow_mut();
                                if ist.called
                                    && ist.paused == 0
                                    && !ist.running
                                    && ist.result.is_some()
                                {
                                    // Already fired: steal its result and go on.
                                    st.result = ist.result.take();
                                } else {
                                    st.paused += 1;
                                    st.chained_to = Some(Rc::downgrade(&inner));
                                    ist.callbacks
                                        .push_back(Entry::Continue(Rc::clone(&current)));
                                    break;
                                }
                            }
                        }
                    }
                }
            }
            if finished {
                match below.pop() {
                    Some(outer) => top = outer,
                    None => return,
                }
            }
        }
    }
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addr = self as *const Core;
        if let Some(inner) = self.chained_to() {
            return write!(
                f,
                "<Deferred at {addr:p} waiting on Deferred at {:p}>",
                Rc::as_ptr(&inner)
            );
        }
        let st = self.state.borrow();
        match &st.result {
            Some(Ok(_)) => write!(f, "<Deferred at {addr:p} current result: <value>>"),
            Some(Err(e)) => write!(f, "<Deferred at {addr:p} current result: {e:?}>"),
            None => write!(f, "<Deferred at {addr:p}>"),
        }
    }
}

thread_local! {
    static DROPPING: Cell<bool> = const { Cell::new(false) };
    static DROP_QUEUE: RefCell<Vec<VecDeque<Entry>>> = const { RefCell::new(Vec::new()) };
}

impl Drop for Core {
    fn drop(&mut self) {
        let st = self.state.get_mut();
        if let Some(Err(failure)) = st.result.take() {
            tracing::error!(
                failure = %failure,
                created = %self.created,
                "Unhandled error in Deferred: {}",
                failure.traceback()
            );
        }
        let callbacks = std::mem::take(&mut st.callbacks);
        let canceller = st.canceller.take();
        drop(canceller);
        if callbacks.is_empty() {
            return;
        }
        // Trampoline: callbacks may own other Cores (markers, captured handles)
        // whose drop would otherwise recurse once per level.
        if DROPPING.with(Cell::get) {
            DROP_QUEUE.with(|q| q.borrow_mut().push(callbacks));
            return;
        }
        DROPPING.with(|d| d.set(true));
        drop(callbacks);
        while let Some(next) = DROP_QUEUE.with(|q| q.borrow_mut().pop()) {
            drop(next);
        }
        DROPPING.with(|d| d.set(false));
    }
}
