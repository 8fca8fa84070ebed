//! Property tests: random operation sequences on a `Deferred<i64>` chain, and
//! random `DeferredList` / `gather_results` inputs, checked against a plain
//! reference model of the semantics of Twisted's `twisted.internet.defer.Deferred`
//! (`_runCallbacks`, `pause`, `chainDeferred`) and `DeferredList`.
//!
//! Kept whole although over 600 lines: it is one reference model and the
//! properties checked against it, which would make no sense apart.
//!
//! # The reference model ([`Model`])
//!
//! The model is a direct interpreter of Twisted's rules; it knows nothing of
//! the implementation's `Core`, markers or stacks.
//!
//! * State: a FIFO of pending steps, `fired`, the current `result` (present
//!   once fired, absent while waiting on an inner Deferred), a user `paused`
//!   counter, and `waiting_on` (the inner Deferred the chain waits for).
//! * R1 Adding a step appends it, then runs the chain.
//! * R2 Firing sets `fired` and the result, then runs the chain. Firing
//!   again is rejected (`AlreadyCalledError`) and changes nothing.
//! * R3 Running the chain: while fired, not paused and not waiting, pop
//!   the first step and apply it to the result. A callback half runs only on a
//!   value, an errback half only on a failure; the other half passes the
//!   result through untouched (and is not traced). Only user code is traced,
//!   with the input it received.
//! * R4 A step (either half) returning an inner Deferred that already has a result
//!   takes that result at once. Otherwise the chain waits (`paused()` counts
//!   one more) until the inner fires; the inner first runs its own callbacks
//!   added before it was returned, then hands its result to the outer chain,
//!   which resumes unless the user still holds a pause.
//! * R5 `pause` adds one to the counter; `unpause` removes one and, at
//!   zero, runs the chain if fired. The generator only unpauses pauses it
//!   made, so the counter never goes below the chain's own pause.
//! * R6 `chain_deferred(d2)` is a step that fires `d2` with the current
//!   result (success or failure) and continues with `()`, or fails with
//!   `AlreadyCalledError` if `d2` had already fired. The test turns `()` into
//!   the value `CHAIN_BASE + id` so the chain stays `i64`.
//! * R7 `paused()` is the user count plus one while waiting; `has_result()` is
//!   fired, not paused, not waiting.
//!
//! The driver (shared by model and implementation, so they see the same
//! events): after each operation, every inner Deferred that exists, has not
//! fired and whose scheduled point has passed is fired, lowest id first. The
//! main Deferred fires at a generated position (possibly after the last
//! operation). At the end, outstanding user pauses are undone one by one, then
//! remaining inner Deferreds are fired, until nothing is left.
//!
//! The comparison covers the final result (value or failure message) and the
//! full trace: which steps ran, in which order, with which input, interleaved
//! with fire events and the `called`/`paused`/`has_result` observations the
//! driver makes after every operation and at the end.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;

use deferred::{
    fail, gather_results, succeed, AlreadyCalledError, Deferred, DeferredList, Failure, FirstError,
    Resolver,
};
use proptest::prelude::*;

/// The value a `chain_deferred` step continues with is `CHAIN_BASE + id`.
const CHAIN_BASE: i64 = 1_000_000;

/// A result as the test sees it: a value, or a failure's message.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Res {
    Ok(i64),
    Err(String),
}

impl Res {
    fn of(r: &Result<i64, Failure>) -> Res {
        match r {
            Ok(v) => Res::Ok(*v),
            Err(f) => Res::Err(f.error_message()),
        }
    }

    fn into_result(self) -> Result<i64, Failure> {
        match self {
            Res::Ok(v) => Ok(v),
            Res::Err(m) => Err(Failure::msg(m)),
        }
    }
}

/// Which half of the pair returns the inner Deferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Half {
    /// `add_callback_deferred`: runs on a value.
    Callback,
    /// `add_errback_deferred`: runs on a failure.
    Errback,
    /// `add_both_deferred`: runs on either.
    Both,
}

/// How an inner Deferred returned by an `add_*_deferred` step behaves.
#[derive(Debug, Clone)]
struct InnerSpec {
    half: Half,
    /// Succeeds with `x ^ v` (`x` is the value, or the failure message's
    /// length), or fails.
    ok: bool,
    v: i64,
    /// Whether the inner Deferred gets its own traced `add_both` before being
    /// returned.
    pre: bool,
    /// `None`: already fired when returned. `Some(d)`: fired by the driver
    /// after operation `i + d` (or later, once it exists).
    delay: Option<usize>,
}

impl InnerSpec {
    /// Whether the step's user code runs on `input`.
    fn runs_on(&self, input: &Res) -> bool {
        match (self.half, input) {
            (Half::Both, _) | (Half::Callback, Res::Ok(_)) | (Half::Errback, Res::Err(_)) => true,
            (Half::Callback, Res::Err(_)) | (Half::Errback, Res::Ok(_)) => false,
        }
    }

    fn outcome(&self, id: usize, input: &Res) -> Res {
        let x = match input {
            Res::Ok(x) => *x,
            Res::Err(m) => m.len() as i64,
        };
        if self.ok {
            Res::Ok(x ^ self.v)
        } else {
            Res::Err(format!("inner {id} failed on {x}"))
        }
    }
}

/// The inner Deferred's own step (when `pre`).
fn inner_pre(id: usize, r: Res) -> Res {
    match r {
        Res::Ok(y) => Res::Ok(y.wrapping_add(1000)),
        Res::Err(m) => Res::Err(format!("inner{id}: {m}")),
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// `add_callback(x * k + c)`, wrapping.
    Callback {
        k: i64,
        c: i64,
    },
    /// `add_callback_result`: fails when `x mod m == r`, else passes `x`.
    Raise {
        m: i64,
        r: i64,
    },
    /// `add_errback` recovering to `v`.
    ErrRecover {
        v: i64,
    },
    /// `add_errback` passing the failure on, maybe with context.
    ErrPass {
        ctx: bool,
    },
    /// `add_both`: value `x + k`; failure recovers to `k` when `k` is even.
    Both {
        k: i64,
    },
    Pause,
    /// Only acts when the driver holds a pause.
    Unpause,
    /// `add_callback_deferred`, `add_errback_deferred` or `add_both_deferred`
    /// returning an inner Deferred.
    ReturnDeferred(InnerSpec),
    /// `chain_deferred` into a new Deferred, maybe already fired.
    Chain {
        prefired: Option<Res>,
    },
    /// Fire the main Deferred again once fired (must be rejected).
    FireAgain,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Trace {
    /// Main-chain step `id` ran with this input.
    Ran(usize, Res),
    /// Inner Deferred `id`'s own step ran with this input.
    Inner(usize, Res),
    /// The Deferred chained by step `id` saw this result.
    Chained(usize, Res),
    /// The driver fired the main Deferred.
    Fired,
    /// The driver fired inner Deferred `id`.
    FiredInner(usize),
    /// called, paused, has_result.
    Observe(bool, u32, bool),
    /// A second fire: whether it was rejected.
    FireAgain(bool),
}

#[derive(Debug, Clone)]
struct Case {
    ops: Vec<Op>,
    /// The main Deferred fires before `ops[fire_at]` (or at the end).
    fire_at: usize,
    fire_with: Res,
}

// ---------------------------------------------------------------------------
// The reference model.

#[derive(Debug, Default)]
struct Model {
    steps: VecDeque<(usize, Op)>,
    fired: bool,
    result: Option<Res>,
    paused: u32,
    waiting_on: Option<usize>,
    /// Inner Deferreds that exist and have not fired: outcome and `pre`.
    inners: BTreeMap<usize, (Res, bool)>,
    /// Chained Deferreds that have fired.
    chained_fired: BTreeSet<usize>,
    trace: Vec<Trace>,
}

impl Model {
    fn add(&mut self, id: usize, op: Op) {
        self.steps.push_back((id, op));
        self.run();
    }

    fn fire(&mut self, r: Res) {
        self.trace.push(Trace::Fired);
        self.fired = true;
        self.result = Some(r);
        self.run();
    }

    fn run(&mut self) {
        while self.fired && self.paused == 0 && self.waiting_on.is_none() {
            let Some((id, op)) = self.steps.pop_front() else {
                return;
            };
            let input = self.result.take().expect("fired and not waiting");
            self.result = self.apply(id, op, input);
        }
    }

    /// Applies one step; `None` means the chain now waits on inner `id`.
    fn apply(&mut self, id: usize, op: Op, input: Res) -> Option<Res> {
        let out = match (op, input) {
            (Op::Callback { k, c }, Res::Ok(x)) => {
                self.trace.push(Trace::Ran(id, Res::Ok(x)));
                Res::Ok(x.wrapping_mul(k).wrapping_add(c))
            }
            (Op::Raise { m, r }, Res::Ok(x)) => {
                self.trace.push(Trace::Ran(id, Res::Ok(x)));
                if x.rem_euclid(m) == r {
                    Res::Err(format!("raised by {id} on {x}"))
                } else {
                    Res::Ok(x)
                }
            }
            (Op::ErrRecover { v }, Res::Err(msg)) => {
                self.trace.push(Trace::Ran(id, Res::Err(msg)));
                Res::Ok(v)
            }
            (Op::ErrPass { ctx }, Res::Err(msg)) => {
                self.trace.push(Trace::Ran(id, Res::Err(msg.clone())));
                Res::Err(if ctx { format!("ctx{id}: {msg}") } else { msg })
            }
            (Op::Both { k }, input) => {
                self.trace.push(Trace::Ran(id, input.clone()));
                match input {
                    Res::Ok(x) => Res::Ok(x.wrapping_add(k)),
                    Res::Err(_) if k % 2 == 0 => Res::Ok(k),
                    err => err,
                }
            }
            (Op::ReturnDeferred(spec), input) if spec.runs_on(&input) => {
                let outcome = spec.outcome(id, &input);
                self.trace.push(Trace::Ran(id, input));
                if spec.delay.is_some() {
                    self.inners.insert(id, (outcome, spec.pre));
                    self.waiting_on = Some(id);
                    return None;
                }
                if spec.pre {
                    self.trace.push(Trace::Inner(id, outcome.clone()));
                    inner_pre(id, outcome)
                } else {
                    outcome
                }
            }
            (Op::Chain { .. }, input) => {
                if self.chained_fired.insert(id) {
                    self.trace.push(Trace::Chained(id, input));
                    Res::Ok(CHAIN_BASE + id as i64)
                } else {
                    Res::Err("AlreadyCalled".to_owned())
                }
            }
            // The other half of the pair: pass through.
            (_, input) => input,
        };
        Some(out)
    }

    fn inner_exists(&self, id: usize) -> bool {
        self.inners.contains_key(&id)
    }

    fn fire_inner(&mut self, id: usize) {
        let (outcome, pre) = self.inners.remove(&id).expect("inner exists");
        self.trace.push(Trace::FiredInner(id));
        let r = if pre {
            self.trace.push(Trace::Inner(id, outcome.clone()));
            inner_pre(id, outcome)
        } else {
            outcome
        };
        assert_eq!(
            self.waiting_on,
            Some(id),
            "an unfired inner is always waited on"
        );
        self.waiting_on = None;
        self.result = Some(r);
        self.run();
    }

    fn observe(&mut self) {
        let waiting = u32::from(self.waiting_on.is_some());
        let has_result = self.fired && self.paused == 0 && waiting == 0 && self.result.is_some();
        self.trace.push(Trace::Observe(
            self.fired,
            self.paused + waiting,
            has_result,
        ));
    }
}

// ---------------------------------------------------------------------------
// The driver, generic over model and implementation.

trait Subject {
    fn fire(&mut self, r: Res);
    fn fire_again(&mut self);
    fn add(&mut self, id: usize, op: &Op);
    fn pause(&mut self);
    fn unpause(&mut self);
    fn observe(&mut self);
    /// Whether inner `id` exists (its callback ran) and has not fired.
    fn inner_pending(&self, id: usize) -> bool;
    fn fire_inner(&mut self, id: usize);
    /// Final result and trace.
    fn finish(self) -> (Option<Res>, Vec<Trace>);
}

impl Subject for Model {
    fn fire(&mut self, r: Res) {
        Model::fire(self, r)
    }
    fn fire_again(&mut self) {
        self.trace.push(Trace::FireAgain(true));
    }
    fn add(&mut self, id: usize, op: &Op) {
        if let Op::Chain { prefired: Some(r) } = op {
            // The chained Deferred fired (and ran its traced step) at once.
            self.chained_fired.insert(id);
            self.trace.push(Trace::Chained(id, r.clone()));
        }
        Model::add(self, id, op.clone())
    }
    fn pause(&mut self) {
        self.paused += 1;
    }
    fn unpause(&mut self) {
        self.paused -= 1;
        self.run();
    }
    fn observe(&mut self) {
        Model::observe(self)
    }
    fn inner_pending(&self, id: usize) -> bool {
        self.inner_exists(id)
    }
    fn fire_inner(&mut self, id: usize) {
        Model::fire_inner(self, id)
    }
    fn finish(mut self) -> (Option<Res>, Vec<Trace>) {
        let result = if self.fired && self.paused == 0 && self.waiting_on.is_none() {
            self.result.take()
        } else {
            None
        };
        (result, self.trace)
    }
}

fn drive<S: Subject>(case: &Case, mut s: S) -> (Option<Res>, Vec<Trace>) {
    // Inner ids with their scheduled points.
    let schedule: Vec<(usize, usize)> = case
        .ops
        .iter()
        .enumerate()
        .filter_map(|(i, op)| match op {
            Op::ReturnDeferred(InnerSpec { delay: Some(d), .. }) => Some((i, i + d)),
            _ => None,
        })
        .collect();
    let mut fired = false;
    let mut pauses = 0u32;
    for (i, op) in case.ops.iter().enumerate() {
        if i == case.fire_at {
            s.fire(case.fire_with.clone());
            fired = true;
        }
        match op {
            Op::Pause => {
                pauses += 1;
                s.pause();
            }
            Op::Unpause => {
                if pauses > 0 {
                    pauses -= 1;
                    s.unpause();
                }
            }
            Op::FireAgain => {
                if fired {
                    s.fire_again();
                }
            }
            op => s.add(i, op),
        }
        // Fire due inner Deferreds, lowest id first, until none is due.
        while let Some(&(id, _)) = schedule
            .iter()
            .find(|&&(id, t)| t <= i && s.inner_pending(id))
        {
            s.fire_inner(id);
        }
        s.observe();
    }
    if !fired {
        s.fire(case.fire_with.clone());
    }
    loop {
        if pauses > 0 {
            pauses -= 1;
            s.unpause();
        } else if let Some(&(id, _)) = schedule.iter().find(|&&(id, _)| s.inner_pending(id)) {
            s.fire_inner(id);
        } else {
            break;
        }
    }
    s.observe();
    s.finish()
}

// ---------------------------------------------------------------------------
// The implementation under test.

type Log = Rc<RefCell<Vec<Trace>>>;
/// Resolvers of inner Deferreds that exist and have not fired, with the
/// outcome each will fire with.
type PendingInners = Rc<RefCell<BTreeMap<usize, (Resolver<i64>, Res)>>>;

struct Real {
    d: Option<Deferred<i64>>,
    resolver: Resolver<i64>,
    trace: Log,
    inners: PendingInners,
}

impl Real {
    fn new() -> Self {
        let (d, resolver) = Deferred::<i64>::new();
        Real {
            d: Some(d),
            resolver,
            trace: Rc::default(),
            inners: Rc::default(),
        }
    }

    fn d(&self) -> &Deferred<i64> {
        self.d.as_ref().expect("handle present")
    }
}

impl Subject for Real {
    fn fire(&mut self, r: Res) {
        self.trace.borrow_mut().push(Trace::Fired);
        self.resolver
            .resolve(r.into_result())
            .expect("first fire succeeds");
    }

    fn fire_again(&mut self) {
        let rejected = self.resolver.callback(0).is_err();
        self.trace.borrow_mut().push(Trace::FireAgain(rejected));
    }

    fn add(&mut self, id: usize, op: &Op) {
        let d = self.d.take().expect("handle present");
        let log = Rc::clone(&self.trace);
        let d = match op.clone() {
            Op::Callback { k, c } => d.add_callback(move |x: i64| {
                log.borrow_mut().push(Trace::Ran(id, Res::Ok(x)));
                x.wrapping_mul(k).wrapping_add(c)
            }),
            Op::Raise { m, r } => d.add_callback_result(move |x: i64| {
                log.borrow_mut().push(Trace::Ran(id, Res::Ok(x)));
                if x.rem_euclid(m) == r {
                    Err(Failure::msg(format!("raised by {id} on {x}")))
                } else {
                    Ok(x)
                }
            }),
            Op::ErrRecover { v } => d.add_errback(move |f| {
                log.borrow_mut()
                    .push(Trace::Ran(id, Res::Err(f.error_message())));
                Ok(v)
            }),
            Op::ErrPass { ctx } => d.add_errback(move |f| {
                log.borrow_mut()
                    .push(Trace::Ran(id, Res::Err(f.error_message())));
                Err(if ctx {
                    f.context(format!("ctx{id}"))
                } else {
                    f
                })
            }),
            Op::Both { k } => d.add_both(move |r| {
                log.borrow_mut().push(Trace::Ran(id, Res::of(&r)));
                match r {
                    Ok(x) => Ok(x.wrapping_add(k)),
                    Err(_) if k % 2 == 0 => Ok(k),
                    Err(f) => Err(f),
                }
            }),
            Op::ReturnDeferred(spec) => {
                let inners = Rc::clone(&self.inners);
                let half = spec.half;
                // The user code of every half: trace, build the inner Deferred.
                let make = move |input: Res| {
                    let outcome = spec.outcome(id, &input);
                    log.borrow_mut().push(Trace::Ran(id, input));
                    let inner = match spec.delay {
                        None => match outcome {
                            Res::Ok(v) => succeed(v),
                            Res::Err(m) => fail(Failure::msg(m)),
                        },
                        Some(_) => {
                            let (inner, r) = Deferred::new();
                            inners.borrow_mut().insert(id, (r, outcome));
                            inner
                        }
                    };
                    if spec.pre {
                        inner.add_both(move |r| {
                            log.borrow_mut().push(Trace::Inner(id, Res::of(&r)));
                            inner_pre(id, Res::of(&r)).into_result()
                        })
                    } else {
                        inner
                    }
                };
                match half {
                    Half::Callback => d.add_callback_deferred(move |x| make(Res::Ok(x))),
                    Half::Errback => {
                        d.add_errback_deferred(move |f| make(Res::Err(f.error_message())))
                    }
                    Half::Both => d.add_both_deferred(move |r| make(Res::of(&r))),
                }
            }
            Op::Chain { prefired } => {
                let (d2, r2) = Deferred::<i64>::new();
                if let Some(r) = prefired {
                    r2.resolve(r.into_result()).expect("fresh Deferred");
                }
                let _handled = d2.add_both(move |r| {
                    log.borrow_mut().push(Trace::Chained(id, Res::of(&r)));
                    Ok::<i64, Failure>(0)
                });
                d.chain_deferred(&r2)
                    .add_both(move |r: Result<(), Failure>| match r {
                        Ok(()) => Ok(CHAIN_BASE + id as i64),
                        Err(f) if f.check::<AlreadyCalledError>().is_some() => {
                            Err(Failure::msg("AlreadyCalled"))
                        }
                        Err(f) => Err(f),
                    })
            }
            Op::Pause | Op::Unpause | Op::FireAgain => unreachable!("not a step"),
        };
        self.d = Some(d);
    }

    fn pause(&mut self) {
        self.d().pause();
    }

    fn unpause(&mut self) {
        self.d().unpause();
    }

    fn observe(&mut self) {
        let d = self.d();
        let o = Trace::Observe(d.called(), d.paused(), d.has_result());
        self.trace.borrow_mut().push(o);
    }

    fn inner_pending(&self, id: usize) -> bool {
        self.inners.borrow().contains_key(&id)
    }

    fn fire_inner(&mut self, id: usize) {
        // Release the borrow before firing: firing runs callbacks that may
        // create further inner Deferreds.
        let (r, outcome) = self.inners.borrow_mut().remove(&id).expect("inner pending");
        self.trace.borrow_mut().push(Trace::FiredInner(id));
        r.resolve(outcome.into_result()).expect("inner fires once");
    }

    fn finish(mut self) -> (Option<Res>, Vec<Trace>) {
        let d = self.d.take().expect("handle present");
        let result = d.into_result().ok().map(|r| Res::of(&r));
        let trace = self.trace.borrow().clone();
        (result, trace)
    }
}

// ---------------------------------------------------------------------------
// Strategies.

fn value() -> impl Strategy<Value = i64> {
    prop_oneof![4 => -50i64..50, 1 => any::<i64>()]
}

fn res() -> impl Strategy<Value = Res> {
    prop_oneof![
        3 => value().prop_map(Res::Ok),
        2 => (0u8..4).prop_map(|n| Res::Err(format!("boom{n}"))),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let half =
        prop_oneof![2 => Just(Half::Callback), 1 => Just(Half::Errback), 1 => Just(Half::Both)];
    let inner = (
        half,
        any::<bool>(),
        value(),
        any::<bool>(),
        prop::option::weighted(0.6, 0usize..6),
    )
        .prop_map(|(half, ok, v, pre, delay)| {
            Op::ReturnDeferred(InnerSpec {
                half,
                ok,
                v,
                pre,
                delay,
            })
        });
    prop_oneof![
        4 => (-3i64..=3, -100i64..=100).prop_map(|(k, c)| Op::Callback { k, c }),
        2 => (1i64..=4, 0i64..4).prop_map(|(m, r)| Op::Raise { m, r: r % m }),
        2 => value().prop_map(|v| Op::ErrRecover { v }),
        2 => any::<bool>().prop_map(|ctx| Op::ErrPass { ctx }),
        2 => (-5i64..=5).prop_map(|k| Op::Both { k }),
        2 => Just(Op::Pause),
        3 => Just(Op::Unpause),
        4 => inner,
        2 => prop::option::weighted(0.3, res()).prop_map(|prefired| Op::Chain { prefired }),
        1 => Just(Op::FireAgain),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    prop::collection::vec(op(), 0..24).prop_flat_map(|ops| {
        let n = ops.len();
        (Just(ops), 0..=n, res()).prop_map(|(ops, fire_at, fire_with)| Case {
            ops,
            fire_at,
            fire_with,
        })
    })
}

fn check(case: &Case) -> Result<(), TestCaseError> {
    let (m_result, m_trace) = drive(case, Model::default());
    let (r_result, r_trace) = drive(case, Real::new());
    prop_assert_eq!(&r_trace, &m_trace, "trace differs");
    prop_assert_eq!(&r_result, &m_result, "final result differs");
    prop_assert!(m_result.is_some(), "the model always ends with a result");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn chain_matches_model(case in case()) {
        check(&case)?;
    }
}

// ---------------------------------------------------------------------------
// DeferredList and gather_results.

#[derive(Debug, Clone)]
struct ListCase {
    /// Each input's outcome and whether it is already fired when the list is
    /// built.
    inputs: Vec<(Res, bool)>,
    /// The order in which the pending inputs fire (a permutation of indices
    /// into the pending ones).
    order: Vec<usize>,
}

fn list_case() -> impl Strategy<Value = ListCase> {
    prop::collection::vec((res(), prop::bool::weighted(0.3)), 0..8).prop_flat_map(|inputs| {
        let pending: Vec<usize> = (0..inputs.len()).filter(|&i| !inputs[i].1).collect();
        (Just(inputs), Just(pending).prop_shuffle())
            .prop_map(|(inputs, order)| ListCase { inputs, order })
    })
}

fn make_input(r: &Res, prefired: bool) -> (Deferred<i64>, Option<Resolver<i64>>) {
    if prefired {
        let d = match r.clone() {
            Res::Ok(v) => succeed(v),
            Res::Err(m) => fail(Failure::msg(m)),
        };
        (d, None)
    } else {
        let (d, r) = Deferred::new();
        (d, Some(r))
    }
}

fn check_list(case: &ListCase) -> Result<(), TestCaseError> {
    let n = case.inputs.len();
    // Model: inputs in firing order are the already fired ones in input order
    // (processed while the list is built), then the pending ones in `order`.
    let firing_order: Vec<usize> = (0..n)
        .filter(|&i| case.inputs[i].1)
        .chain(case.order.iter().copied())
        .collect();
    let first_failure = firing_order
        .iter()
        .position(|&i| matches!(case.inputs[i].0, Res::Err(_)));
    let prefired_count = n - case.order.len();

    let mut list_inputs = Vec::new();
    let mut gather_inputs = Vec::new();
    let mut resolvers = vec![None; n];
    for (i, (r, prefired)) in case.inputs.iter().enumerate() {
        let (a, ra) = make_input(r, *prefired);
        let (b, rb) = make_input(r, *prefired);
        list_inputs.push(a);
        gather_inputs.push(b);
        resolvers[i] = ra.zip(rb);
    }
    let list = DeferredList::new(list_inputs).consume_errors(true).build();
    let gather = gather_results(gather_inputs, true);

    // Fired-ness after each event (event 0: construction), against the model:
    // the list fires when every input has arrived, gather at the first failure
    // or when every input has arrived.
    for step in 0..=case.order.len() {
        if step > 0 {
            let i = case.order[step - 1];
            let (ra, rb) = resolvers[i].take().expect("pending input fires once");
            let r = case.inputs[i].0.clone();
            ra.resolve(r.clone().into_result()).expect("fresh");
            rb.resolve(r.into_result()).expect("fresh");
        }
        let arrived = prefired_count + step;
        prop_assert_eq!(
            list.has_result(),
            arrived == n,
            "list fired at event {}",
            step
        );
        let gather_fired = arrived == n || first_failure.is_some_and(|k| k < arrived);
        prop_assert_eq!(
            gather.has_result(),
            gather_fired,
            "gather fired at event {}",
            step
        );
    }

    let results = list
        .into_result()
        .expect("fired")
        .expect("a DeferredList never fails");
    let got: Vec<Res> = results.iter().map(Res::of).collect();
    let want: Vec<Res> = case.inputs.iter().map(|(r, _)| r.clone()).collect();
    prop_assert_eq!(got, want);

    match (gather.into_result().expect("fired"), first_failure) {
        (Ok(values), None) => {
            let want: Vec<i64> = case
                .inputs
                .iter()
                .map(|(r, _)| match r {
                    Res::Ok(v) => *v,
                    Res::Err(_) => unreachable!("no failure"),
                })
                .collect();
            prop_assert_eq!(values, want);
        }
        (Err(f), Some(k)) => {
            let index = firing_order[k];
            let first = f
                .check::<FirstError>()
                .expect("gather fails with FirstError");
            prop_assert_eq!(first.index, index);
            prop_assert_eq!(
                Res::Err(first.sub_failure.error_message()),
                case.inputs[index].0.clone()
            );
        }
        (got, want) => prop_assert!(
            false,
            "gather gave {:?}, model wants first failure {:?}",
            got,
            want
        ),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn deferred_list_and_gather_match_model(case in list_case()) {
        check_list(&case)?;
    }
}

// ---------------------------------------------------------------------------
// Fixed cases: the model's rules one at a time, so a failure of the property
// has a readable neighbour.

#[test]
fn fixed_pause_while_waiting_keeps_user_pause() {
    let case = Case {
        ops: vec![
            Op::ReturnDeferred(InnerSpec {
                half: Half::Callback,
                ok: true,
                v: 1,
                pre: true,
                delay: Some(2),
            }),
            Op::Pause,
            Op::Callback { k: 2, c: 0 },
            Op::Unpause,
        ],
        fire_at: 0,
        fire_with: Res::Ok(4),
    };
    check(&case).unwrap();
    let (result, _) = drive(&case, Model::default());
    // 4 ^ 1 = 5, + 1000 by the inner's own step, * 2.
    assert_eq!(result, Some(Res::Ok(2010)));
}

#[test]
fn fixed_chain_into_fired_deferred_fails_with_already_called() {
    let case = Case {
        ops: vec![
            Op::Chain {
                prefired: Some(Res::Ok(1)),
            },
            Op::ErrPass { ctx: true },
        ],
        fire_at: 2,
        fire_with: Res::Err("boom0".into()),
    };
    check(&case).unwrap();
    let (result, _) = drive(&case, Model::default());
    assert_eq!(result, Some(Res::Err("ctx1: AlreadyCalled".into())));
}

/// Guards the generator: over a fixed sample, the states the property is
/// about (waiting on a late inner Deferred while paused, failures through
/// inner and chained Deferreds, rejected re-fires, both final outcomes) are
/// all reached often enough to matter.
#[test]
fn generator_reaches_interesting_states() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let strategy = case();
    let mut counts = BTreeMap::<&str, usize>::new();
    for _ in 0..512 {
        let case = strategy.new_tree(&mut runner).expect("generates").current();
        let (result, trace) = drive(&case, Model::default());
        let mut seen = BTreeSet::new();
        for (i, t) in trace.iter().enumerate() {
            match t {
                Trace::FiredInner(_) if i + 2 < trace.len() => {
                    seen.insert("late inner fired mid-sequence")
                }
                Trace::Inner(_, Res::Err(_)) => seen.insert("inner step saw a failure"),
                Trace::Chained(_, Res::Err(_)) => seen.insert("chained Deferred got a failure"),
                Trace::Observe(_, p, _) if *p >= 2 => seen.insert("paused while waiting"),
                Trace::FireAgain(_) => seen.insert("fired twice"),
                _ => false,
            };
        }
        seen.insert(match result {
            Some(Res::Ok(_)) => "ends with a value",
            Some(Res::Err(_)) => "ends with a failure",
            None => "ends without a result",
        });
        for s in seen {
            *counts.entry(s).or_default() += 1;
        }
    }
    assert_eq!(counts.get("ends without a result"), None);
    for want in [
        "late inner fired mid-sequence",
        "inner step saw a failure",
        "chained Deferred got a failure",
        "paused while waiting",
        "fired twice",
        "ends with a value",
        "ends with a failure",
    ] {
        let n = counts.get(want).copied().unwrap_or(0);
        assert!(n >= 10, "only {n} of 512 cases: {want} ({counts:?})");
    }
}
