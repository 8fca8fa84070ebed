//! [`Deferred`] (the consumer side) and [`Resolver`] (the producer side).

use std::fmt;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::rc::Rc;

use crate::core::{Core, Outcome, Step, Value};
use crate::errors::AlreadyCalledError;
use crate::Failure;

/// A result that is not there yet: Twisted's `Deferred`, typed.
///
/// A `Deferred<T>` will fire once with a `T` or a [`Failure`]. Callbacks and
/// errbacks added to it run in order, each one's result feeding the next, exactly
/// as in Twisted: a callback's value goes on down the success path, an errback
/// that returns `Ok` recovers, anything that returns `Err` (or panics) switches
/// to the error path, and a callback that returns another Deferred pauses the
/// chain until that one fires.
///
/// Adding a callback consumes the handle and returns a handle typed with the
/// callback's output, so the compiler checks that every step accepts what the
/// previous one produces. Each `add_*` method returns the *same* underlying
/// Deferred, as Twisted's do.
///
/// `Deferred` is `!Send`: like Twisted's, it lives on the loop thread. Values
/// produced elsewhere reach it through the reactor's `call_from_thread`.
///
/// | Twisted | Rust |
/// |---|---|
/// | `d = Deferred()` ... `d.callback(v)` | `let (d, r) = Deferred::new();` ... `r.callback(v)` |
/// | `d.addCallback(f)` | [`add_callback`](Self::add_callback) (`T -> U`), [`add_callback_result`](Self::add_callback_result) (`T -> Result<U, Failure>`), [`add_callback_deferred`](Self::add_callback_deferred) (`T -> Deferred<U>`) |
/// | `d.addErrback(f)` | [`add_errback`](Self::add_errback), [`add_errback_deferred`](Self::add_errback_deferred) |
/// | `d.addCallbacks(f, g)` | [`add_callbacks`](Self::add_callbacks) |
/// | `d.addBoth(f)` | [`add_both`](Self::add_both), [`add_both_deferred`](Self::add_both_deferred) |
/// | `d.chainDeferred(d2)` | [`chain_deferred`](Self::chain_deferred) |
/// | `d.pause()` / `d.unpause()` / `d.cancel()` | same names |
/// | `d.addTimeout(t, clock)` | [`add_timeout`](Self::add_timeout) |
/// | `await d` | `d.await` (output `Result<T, Failure>`) |
///
/// # Examples
///
/// The Twisted idiom `d = Deferred(); ...later... d.callback(v); return d` keeps
/// two handles in Rust, like a oneshot channel: the `Deferred` goes to whoever
/// adds callbacks, the [`Resolver`] to whoever will fire it.
///
/// ```
/// use deferred::{Deferred, Failure};
/// use std::{cell::RefCell, rc::Rc};
///
/// let (d, resolver) = Deferred::<i32>::new();
/// let seen = Rc::new(RefCell::new(Vec::new()));
/// let log = seen.clone();
/// d.add_callback(|x| x * 2)
///     .add_callback_result(|x| if x > 10 { Ok(x) } else { Err(Failure::msg("too small")) })
///     .add_errback(|f| { assert_eq!(f.error_message(), "too small"); Ok(-1) })
///     .add_callback(move |x| log.borrow_mut().push(x));
/// resolver.callback(3).unwrap();          // 3 * 2 = 6 is too small: recovered as -1
/// assert_eq!(*seen.borrow(), vec![-1]);
/// assert!(resolver.callback(4).is_err()); // AlreadyCalledError
/// ```
#[must_use = "a Deferred does nothing unless callbacks are added or it is returned"]
pub struct Deferred<T> {
    pub(crate) core: Rc<Core>,
    _t: PhantomData<fn() -> T>,
}

/// The firing side of a [`Deferred`]: `callback` and `errback`.
///
/// Obtained from [`Deferred::new`] or [`Deferred::with_canceller`]. Cheap to
/// clone; every clone fires the same Deferred, and the first fire wins (later
/// ones return [`AlreadyCalledError`], except the one fire Twisted swallows after
/// a cancel without canceller). Holding a `Resolver` keeps the Deferred and its
/// callbacks alive, so code that adds callbacks may drop its `Deferred` handle.
pub struct Resolver<T> {
    pub(crate) core: Rc<Core>,
    _t: PhantomData<fn(T)>,
}

impl<T> Clone for Resolver<T> {
    fn clone(&self) -> Self {
        Resolver {
            core: Rc::clone(&self.core),
            _t: PhantomData,
        }
    }
}

fn unbox<T: 'static>(v: Value) -> T {
    match v.downcast::<T>() {
        Ok(b) => *b,
        // The typed wrappers always box and unbox the same type.
        Err(_) => unreachable!("deferred: value type mismatch inside a typed chain"),
    }
}

fn boxed<T: 'static>(r: Result<T, Failure>) -> Outcome {
    r.map(|v| Box::new(v) as Value)
}

impl<T: 'static> Deferred<T> {
    pub(crate) fn from_core(core: Rc<Core>) -> Self {
        Deferred {
            core,
            _t: PhantomData,
        }
    }

    /// Creates an unfired Deferred and the [`Resolver`] that fires it. Mirrors
    /// `Deferred()`.
    #[track_caller]
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> (Deferred<T>, Resolver<T>) {
        let core = Core::new(Location::caller(), None);
        (
            Deferred::from_core(Rc::clone(&core)),
            Resolver::from_core(core),
        )
    }

    /// Creates an unfired Deferred with a canceller. Mirrors
    /// `Deferred(canceller)`.
    ///
    /// On [`cancel`](Self::cancel) before the Deferred fired, `canceller` runs
    /// once with a resolver for it. If it fires the Deferred, that result wins;
    /// otherwise the Deferred fails with [`CancelledError`](crate::CancelledError).
    /// A panic in the canceller is logged as `Exception raised from user
    /// supplied canceller`.
    #[track_caller]
    pub fn with_canceller<F>(canceller: F) -> (Deferred<T>, Resolver<T>)
    where
        F: FnOnce(&Resolver<T>) + 'static,
    {
        let core = Core::new(
            Location::caller(),
            Some(Box::new(move |core: &Rc<Core>| {
                canceller(&Resolver::from_core(Rc::clone(core)))
            })),
        );
        (
            Deferred::from_core(Rc::clone(&core)),
            Resolver::from_core(core),
        )
    }

    /// True once `callback` or `errback` was called. Mirrors `Deferred.called`.
    pub fn called(&self) -> bool {
        self.core.called()
    }

    /// How many [`pause`](Self::pause) calls are outstanding (Twisted's
    /// `paused` counter), including the one a chained Deferred holds.
    pub fn paused(&self) -> u32 {
        self.core.paused()
    }

    /// Stops the chain from running until [`unpause`](Self::unpause). Callbacks
    /// still accumulate. Mirrors `Deferred.pause`.
    pub fn pause(&self) {
        self.core.pause()
    }

    /// Undoes one [`pause`](Self::pause); at zero, a fired Deferred runs its
    /// pending callbacks. Unpausing a Deferred that is not paused does nothing
    /// (Twisted lets the counter go negative). Mirrors `Deferred.unpause`.
    pub fn unpause(&self) {
        self.core.unpause()
    }

    /// Cancels the Deferred. Mirrors `Deferred.cancel`.
    ///
    /// - Not fired yet: runs the canceller if there is one; if the Deferred is
    ///   still unfired, fails it with [`CancelledError`](crate::CancelledError).
    ///   Without a canceller, exactly one later fire is silently ignored.
    /// - Fired and waiting on a chained Deferred: cancels that one instead.
    /// - Otherwise: does nothing.
    #[track_caller]
    pub fn cancel(&self) {
        self.core.cancel()
    }

    /// Adds a callback `T -> U`; failures pass by it unchanged. Mirrors
    /// `addCallback`.
    pub fn add_callback<U: 'static, F>(self, f: F) -> Deferred<U>
    where
        F: FnOnce(T) -> U + 'static,
    {
        self.push(move |o| Step::Done(o.map(|v| Box::new(f(unbox::<T>(v))) as Value)))
    }

    /// Adds a callback `T -> Result<U, Failure>`: `Err` switches the chain to
    /// the error path (Twisted's "a callback that raises or returns a Failure").
    /// Use `?` inside: any error converts into a [`Failure`].
    pub fn add_callback_result<U: 'static, F>(self, f: F) -> Deferred<U>
    where
        F: FnOnce(T) -> Result<U, Failure> + 'static,
    {
        self.push(move |o| match o {
            Ok(v) => Step::Done(boxed(f(unbox::<T>(v)))),
            Err(e) => Step::Done(Err(e)),
        })
    }

    /// Adds a callback that returns another Deferred: the chain pauses until
    /// that one fires and then continues with its result (Twisted's implicit
    /// chaining). Arbitrarily long chains of chains run in bounded stack space.
    pub fn add_callback_deferred<U: 'static, F>(self, f: F) -> Deferred<U>
    where
        F: FnOnce(T) -> Deferred<U> + 'static,
    {
        self.push(move |o| match o {
            Ok(v) => Step::Chain(f(unbox::<T>(v)).core),
            Err(e) => Step::Done(Err(e)),
        })
    }

    /// Adds an errback: it receives the [`Failure`]; `Ok(v)` recovers onto the
    /// success path, `Err(f)` passes a failure on. Values pass by it unchanged.
    /// Mirrors `addErrback`.
    pub fn add_errback<F>(self, f: F) -> Deferred<T>
    where
        F: FnOnce(Failure) -> Result<T, Failure> + 'static,
    {
        self.push(move |o| match o {
            Ok(v) => Step::Done(Ok(v)),
            Err(e) => Step::Done(boxed(f(e))),
        })
    }

    /// Adds an errback that returns a Deferred; the chain waits for it.
    pub fn add_errback_deferred<F>(self, f: F) -> Deferred<T>
    where
        F: FnOnce(Failure) -> Deferred<T> + 'static,
    {
        self.push(move |o| match o {
            Ok(v) => Step::Done(Ok(v)),
            Err(e) => Step::Chain(f(e).core),
        })
    }

    /// Adds a callback and an errback as one step: exactly one of them runs.
    /// Mirrors `addCallbacks`.
    pub fn add_callbacks<U: 'static, F, G>(self, callback: F, errback: G) -> Deferred<U>
    where
        F: FnOnce(T) -> Result<U, Failure> + 'static,
        G: FnOnce(Failure) -> Result<U, Failure> + 'static,
    {
        self.push(move |o| match o {
            Ok(v) => Step::Done(boxed(callback(unbox::<T>(v)))),
            Err(e) => Step::Done(boxed(errback(e))),
        })
    }

    /// Adds a step that sees either outcome. Mirrors `addBoth`.
    pub fn add_both<U: 'static, F>(self, f: F) -> Deferred<U>
    where
        F: FnOnce(Result<T, Failure>) -> Result<U, Failure> + 'static,
    {
        self.push(move |o| Step::Done(boxed(f(o.map(unbox::<T>)))))
    }

    /// Adds a step that sees either outcome and returns a Deferred to wait for.
    pub fn add_both_deferred<U: 'static, F>(self, f: F) -> Deferred<U>
    where
        F: FnOnce(Result<T, Failure>) -> Deferred<U> + 'static,
    {
        self.push(move |o| Step::Chain(f(o.map(unbox::<T>)).core))
    }

    /// Fires `target` with this Deferred's result. This Deferred continues with
    /// `()` (or with the [`AlreadyCalledError`] if `target` had already fired).
    /// Mirrors `chainDeferred`.
    pub fn chain_deferred(self, target: &Resolver<T>) -> Deferred<()> {
        target.core.set_chained_to(&self.core);
        let target = target.clone();
        self.add_both(move |r| target.resolve(r).map_err(Failure::new))
    }

    fn push<U: 'static>(self, cb: impl FnOnce(Outcome) -> Step + 'static) -> Deferred<U> {
        self.core.add(Box::new(cb));
        Deferred::from_core(self.core)
    }

    /// True if the Deferred has fired, is not paused or waiting, and its result
    /// can be taken with [`into_result`](Self::into_result).
    pub fn has_result(&self) -> bool {
        self.core.has_result()
    }

    /// Takes the result if it is there now (Twisted's `d.result`; trial's
    /// `successResultOf`/`failureResultOf`), or hands the Deferred back.
    /// Taking a failure marks it handled.
    pub fn into_result(self) -> Result<Result<T, Failure>, Deferred<T>> {
        match self.core.take_result() {
            Some(o) => Ok(o.map(unbox::<T>)),
            None => Err(self),
        }
    }

    /// Where this Deferred was created.
    pub fn created_at(&self) -> &'static Location<'static> {
        self.core.created()
    }
}

impl<T> fmt::Debug for Deferred<T> {
    /// `<Deferred at 0x..>`, `<Deferred at 0x.. current result: ..>` or
    /// `<Deferred at 0x.. waiting on Deferred at 0x..>`, as Twisted's `repr`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.core, f)
    }
}

impl<T: 'static> Resolver<T> {
    pub(crate) fn from_core(core: Rc<Core>) -> Self {
        Resolver {
            core,
            _t: PhantomData,
        }
    }

    /// Fires the Deferred with a value. Mirrors `Deferred.callback`.
    #[track_caller]
    pub fn callback(&self, value: T) -> Result<(), AlreadyCalledError> {
        self.core.fire(Ok(Box::new(value)), Location::caller())
    }

    /// Fires the Deferred with a failure (any error converts). Mirrors
    /// `Deferred.errback`.
    #[track_caller]
    pub fn errback(&self, failure: impl Into<Failure>) -> Result<(), AlreadyCalledError> {
        self.core.fire(Err(failure.into()), Location::caller())
    }

    /// Fires with `Ok` as [`callback`](Self::callback) or `Err` as
    /// [`errback`](Self::errback).
    #[track_caller]
    pub fn resolve(&self, result: Result<T, Failure>) -> Result<(), AlreadyCalledError> {
        self.core.fire(boxed(result), Location::caller())
    }

    /// True once the Deferred has fired.
    pub fn called(&self) -> bool {
        self.core.called()
    }

    /// Called from inside a canceller (see [`Deferred::with_canceller`]):
    /// the work can no longer be stopped (a database job already
    /// committing, say), so this cancel, and every later one, does not fail
    /// the Deferred with [`CancelledError`](crate::CancelledError); it fires
    /// later with the work's real outcome. Not in Twisted, whose `cancel`
    /// always fires the Deferred: there a cancel that comes too late reports
    /// "cancelled" for work that was done.
    ///
    /// ```
    /// use deferred::Deferred;
    /// let (d, r) = Deferred::<u32>::with_canceller(|r| r.decline_cancel());
    /// d.cancel();
    /// assert!(!d.called()); // still waiting for the real outcome
    /// r.callback(7).unwrap();
    /// assert_eq!(d.into_result().unwrap().unwrap(), 7);
    /// ```
    pub fn decline_cancel(&self) {
        self.core.decline_cancel();
    }
}

impl<T> fmt::Debug for Resolver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Resolver({:?})", &*self.core)
    }
}

/// An already-fired Deferred with a value. Mirrors `defer.succeed`.
#[track_caller]
pub fn succeed<T: 'static>(value: T) -> Deferred<T> {
    Deferred::from_core(Core::fired(Location::caller(), Ok(Box::new(value))))
}

/// An already-failed Deferred. Mirrors `defer.fail`.
#[track_caller]
pub fn fail<T: 'static>(failure: impl Into<Failure>) -> Deferred<T> {
    Deferred::from_core(Core::fired(Location::caller(), Err(failure.into())))
}

/// What [`maybe_deferred`] accepts from its function: a Deferred (returned as
/// is) or a `Result` (turned into a fired Deferred).
pub trait IntoDeferred<T> {
    /// Converts into a Deferred.
    fn into_deferred(self) -> Deferred<T>;
}

impl<T: 'static> IntoDeferred<T> for Deferred<T> {
    fn into_deferred(self) -> Deferred<T> {
        self
    }
}

impl<T: 'static, E: Into<Failure>> IntoDeferred<T> for Result<T, E> {
    #[track_caller]
    fn into_deferred(self) -> Deferred<T> {
        match self {
            Ok(v) => succeed(v),
            Err(e) => fail(e),
        }
    }
}

/// Calls `f` and always returns a Deferred: its Deferred as is, its `Result`
/// as a fired Deferred, and a panic as a failed one. Mirrors
/// `defer.maybeDeferred`.
///
/// ```
/// use deferred::{maybe_deferred, Failure};
/// let d = maybe_deferred(|| -> Result<i32, Failure> { Ok(1) });
/// assert_eq!(d.into_result().unwrap().unwrap(), 1);
/// let d = maybe_deferred(|| -> Result<i32, Failure> { panic!("boom") });
/// assert!(d.into_result().unwrap().unwrap_err().is_panic());
/// ```
#[track_caller]
pub fn maybe_deferred<T: 'static, R, F>(f: F) -> Deferred<T>
where
    F: FnOnce() -> R,
    R: IntoDeferred<T>,
{
    let at = Location::caller();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r.into_deferred(),
        Err(payload) => Deferred::from_core(Core::fired(at, Err(Failure::from_panic(payload)))),
    }
}
