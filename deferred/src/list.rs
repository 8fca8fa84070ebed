//! [`DeferredList`], [`gather_results`] and [`race`]: waiting on several
//! Deferreds at once.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::core::Core;
use crate::errors::{FailureGroup, FirstError};
use crate::{Deferred, Failure, Resolver};

/// Waits for a list of Deferreds. Mirrors `twisted.internet.defer.DeferredList`.
///
/// Built with [`new`](Self::new), configured with
/// [`fire_on_one_errback`](Self::fire_on_one_errback) and
/// [`consume_errors`](Self::consume_errors), and turned into a Deferred with
/// [`build`](Self::build) (results of every input, in input order) or
/// [`fire_on_one_callback`](Self::fire_on_one_callback) (the first success).
/// Twisted's `(success, value)` pairs are `Result<T, Failure>` here.
///
/// The inputs are moved in. Inputs that already fired are processed at once.
/// Cancelling the returned Deferred before it fired cancels every input (and
/// does not itself fail with `CancelledError`: it fires with whatever the
/// cancelled inputs produce), as Twisted's `DeferredList.cancel` does.
///
/// # Examples
///
/// ```
/// use deferred::{succeed, fail, Deferred, DeferredList, Failure};
/// let list = DeferredList::new(vec![succeed(1), fail(Failure::msg("no")), succeed(3)])
///     .consume_errors(true)
///     .build();
/// let results = list.into_result().unwrap().unwrap();
/// assert_eq!(results[0].as_ref().unwrap(), &1);
/// assert_eq!(results[1].as_ref().unwrap_err().error_message(), "no");
/// ```
#[derive(Debug)]
pub struct DeferredList<T> {
    inputs: Vec<Deferred<T>>,
    fire_on_one_errback: bool,
    consume_errors: bool,
}

/// The result of [`DeferredList::fire_on_one_callback`].
#[derive(Debug)]
pub enum OneCallbackResult<T> {
    /// The first input that succeeded, with its position (Twisted's
    /// `(value, index)`).
    First {
        /// Its value.
        value: T,
        /// Its position in the input list.
        index: usize,
    },
    /// No input succeeded: every failure, in input order.
    AllFailed(Vec<Failure>),
}

enum Mode<T> {
    All(Resolver<Vec<Result<T, Failure>>>),
    OneCallback(Resolver<OneCallbackResult<T>>),
}

struct ListState<T> {
    results: Vec<Option<Result<T, Failure>>>,
    remaining: usize,
    fired: bool,
    fire_on_one_errback: bool,
    mode: Mode<T>,
}

/// What to fire once the state borrow is released: firing runs the list's
/// callbacks, which may feed more results into this same list.
enum Fire<T> {
    Nothing,
    First(Resolver<OneCallbackResult<T>>, OneCallbackResult<T>),
    FirstError(Mode<T>, FirstError),
    All(Mode<T>, Vec<Option<Result<T, Failure>>>),
}

impl<T: 'static> Fire<T> {
    fn run(self) {
        match self {
            Fire::Nothing => {}
            Fire::First(r, v) => {
                let _ = r.callback(v);
            }
            Fire::FirstError(Mode::All(r), e) => {
                let _ = r.errback(e);
            }
            Fire::FirstError(Mode::OneCallback(r), e) => {
                let _ = r.errback(e);
            }
            Fire::All(Mode::All(r), results) => {
                let all = results
                    .into_iter()
                    .map(|r| r.expect("every input arrived"))
                    .collect();
                let _ = r.callback(all);
            }
            Fire::All(Mode::OneCallback(r), results) => {
                let failures = results
                    .into_iter()
                    .filter_map(|r| r.and_then(Result::err))
                    .collect();
                let _ = r.callback(OneCallbackResult::AllFailed(failures));
            }
        }
    }
}

impl<T: 'static> Clone for Mode<T> {
    fn clone(&self) -> Self {
        match self {
            Mode::All(r) => Mode::All(r.clone()),
            Mode::OneCallback(r) => Mode::OneCallback(r.clone()),
        }
    }
}

impl<T: 'static> ListState<T> {
    /// Records a result and says what, if anything, to fire.
    fn arrive(&mut self, index: usize, result: Result<T, Failure>) -> Fire<T> {
        self.remaining -= 1;
        if self.fired {
            // Recorded but ignored, as in Twisted.
            if let Some(slot) = self.results.get_mut(index) {
                *slot = Some(result);
            }
            return Fire::Nothing;
        }
        match (&self.mode, result) {
            (Mode::OneCallback(r), Ok(value)) => {
                self.fired = true;
                return Fire::First(r.clone(), OneCallbackResult::First { value, index });
            }
            (mode, Err(f)) if self.fire_on_one_errback => {
                self.fired = true;
                let err = FirstError {
                    sub_failure: f.clone(),
                    index,
                };
                self.results[index] = Some(Err(f));
                return Fire::FirstError(mode.clone(), err);
            }
            (_, result) => self.results[index] = Some(result),
        }
        if self.remaining == 0 {
            self.fire_all()
        } else {
            Fire::Nothing
        }
    }

    fn fire_all(&mut self) -> Fire<T> {
        self.fired = true;
        Fire::All(self.mode.clone(), std::mem::take(&mut self.results))
    }
}

impl<T: 'static> DeferredList<T> {
    /// A list over `inputs`, with every option off.
    pub fn new(inputs: impl IntoIterator<Item = Deferred<T>>) -> Self {
        DeferredList {
            inputs: inputs.into_iter().collect(),
            fire_on_one_errback: false,
            consume_errors: false,
        }
    }

    /// On the first failure, fail with [`FirstError`] instead of waiting for
    /// every input. Mirrors `fireOnOneErrback`.
    pub fn fire_on_one_errback(mut self, yes: bool) -> Self {
        self.fire_on_one_errback = yes;
        self
    }

    /// Stop a failed input's failure from going on down that input's chain
    /// (and being logged as unhandled when it is dropped). Mirrors
    /// `consumeErrors`.
    pub fn consume_errors(mut self, yes: bool) -> Self {
        self.consume_errors = yes;
        self
    }

    /// A Deferred firing with every input's result in input order; an empty
    /// list fires at once with `[]`.
    #[track_caller]
    pub fn build(self) -> Deferred<Vec<Result<T, Failure>>> {
        let (d, r) = self.cancellable_output();
        self.attach(Mode::All(r));
        d
    }

    /// A Deferred firing with the first success and its index, or with every
    /// failure if none succeeds. An empty list never fires, as in Twisted.
    /// Mirrors `fireOnOneCallback=True`.
    #[track_caller]
    pub fn fire_on_one_callback(self) -> Deferred<OneCallbackResult<T>> {
        let (d, r) = self.cancellable_output();
        self.attach(Mode::OneCallback(r));
        d
    }

    #[track_caller]
    fn cancellable_output<U: 'static>(&self) -> (Deferred<U>, Resolver<U>) {
        // Strong, as Twisted's `_deferredList`: cancelling must reach an input
        // even if nothing else holds it (say, one whose canceller fires it).
        // The canceller is dropped when the list fires, which breaks the cycle
        // input -> list state -> list -> canceller -> input.
        let inputs: Vec<Rc<Core>> = self.inputs.iter().map(|d| Rc::clone(&d.core)).collect();
        let (d, r) = Deferred::with_canceller(move |_: &Resolver<U>| {
            for core in &inputs {
                core.cancel();
            }
        });
        d.core.set_cancel_errbacks(false);
        (d, r)
    }

    fn attach(self, mode: Mode<T>) {
        let n = self.inputs.len();
        let state = Rc::new(RefCell::new(ListState {
            results: (0..n).map(|_| None).collect(),
            remaining: n,
            fired: false,
            fire_on_one_errback: self.fire_on_one_errback,
            mode,
        }));
        if n == 0 {
            let fire = {
                let mut st = state.borrow_mut();
                if matches!(st.mode, Mode::All(_)) {
                    st.fire_all()
                } else {
                    Fire::Nothing
                }
            };
            fire.run();
            return;
        }
        let consume = self.consume_errors;
        for (index, d) in self.inputs.into_iter().enumerate() {
            let state = Rc::clone(&state);
            let _ = d.add_both(move |r: Result<T, Failure>| {
                let keep = match &r {
                    Err(f) if !consume => Err(f.clone()),
                    _ => Ok(()),
                };
                let fire = state.borrow_mut().arrive(index, r);
                fire.run();
                keep
            });
        }
    }
}

/// Waits for every Deferred and fires with their values in order, or fails
/// with [`FirstError`] on the first failure. Cancelling it cancels every input.
/// Mirrors `defer.gatherResults`.
///
/// ```
/// use deferred::{gather_results, succeed};
/// let d = gather_results(vec![succeed(1), succeed(2)], false);
/// assert_eq!(d.into_result().unwrap().unwrap(), vec![1, 2]);
/// ```
#[track_caller]
pub fn gather_results<T: 'static>(
    inputs: impl IntoIterator<Item = Deferred<T>>,
    consume_errors: bool,
) -> Deferred<Vec<T>> {
    DeferredList::new(inputs)
        .fire_on_one_errback(true)
        .consume_errors(consume_errors)
        .build()
        .add_callback_result(|results| results.into_iter().collect())
}

/// Fires with `(index, value)` of the first input to succeed and cancels all
/// the others; if every input fails, fails with [`FailureGroup`]. Cancelling it
/// cancels every input. Mirrors `defer.race`.
///
/// ```
/// use deferred::{race, Deferred};
/// let (a, _ra) = Deferred::<&str>::new();
/// let (b, rb) = Deferred::<&str>::new();
/// let winner = race(vec![a, b]);
/// rb.callback("b").unwrap();
/// assert_eq!(winner.into_result().unwrap().unwrap(), (1, "b"));
/// ```
#[track_caller]
pub fn race<T: 'static>(inputs: impl IntoIterator<Item = Deferred<T>>) -> Deferred<(usize, T)> {
    let inputs: Vec<Deferred<T>> = inputs.into_iter().collect();
    let n = inputs.len();
    // Strong, as Twisted's `to_cancel`; see DeferredList::cancellable_output.
    let cores: Rc<Vec<Rc<Core>>> = Rc::new(inputs.iter().map(|d| Rc::clone(&d.core)).collect());
    let all = Rc::clone(&cores);
    let (out, resolver) = Deferred::with_canceller(move |_: &Resolver<(usize, T)>| {
        for core in all.iter() {
            core.cancel();
        }
    });
    let winner: Rc<Cell<Option<usize>>> = Rc::new(Cell::new(None));
    let failures: Rc<RefCell<Vec<(usize, Failure)>>> = Rc::new(RefCell::new(Vec::new()));
    for (index, d) in inputs.into_iter().enumerate() {
        let (ok_r, err_r) = (resolver.clone(), resolver.clone());
        let (cores, winner, failures) =
            (Rc::clone(&cores), Rc::clone(&winner), Rc::clone(&failures));
        let _ = d.add_callbacks(
            move |value: T| {
                if winner.get().is_none() {
                    winner.set(Some(index));
                    // Twisted cancels the losers first, then fires.
                    for (i, core) in cores.iter().enumerate() {
                        if i != index {
                            core.cancel();
                        }
                    }
                    let _ = ok_r.callback((index, value));
                }
                Ok(())
            },
            move |f: Failure| {
                let done = {
                    let mut fs = failures.borrow_mut();
                    fs.push((index, f));
                    fs.len() == n
                };
                if done {
                    let mut fs = std::mem::take(&mut *failures.borrow_mut());
                    fs.sort_by_key(|(i, _)| *i);
                    let failures = fs.into_iter().map(|(_, f)| f).collect();
                    let _ = err_r.errback(FailureGroup { failures });
                }
                Ok(())
            },
        );
    }
    out
}
