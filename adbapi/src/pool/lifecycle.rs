//! Starting and closing a pool: `start` (and the `call_when_running`
//! trigger that calls it), `close` and `final_close` (and the `during`
//! `shutdown` trigger that calls it), refusing work once closed, and
//! closing a pool whose last handle is dropped. Mirrors Twisted's
//! `ConnectionPool.start`, `_start`, `close` and `finalClose`.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::sync::Arc;

use deferred::{succeed, Deferred, Failure, Resolver};
use reactor::prelude::*;
use reactor::{stop_thread_pool, AnyReactor, Phase, ThreadPool, TriggerId};

use super::metrics::{self, Outcome};
use super::status::PoolStats;
use super::{ConnectionPool, PoolClosed, SharedPool};

pub(super) enum CloseState {
    Open,
    Closing(Vec<Resolver<()>>),
    Closed,
}

pub(super) struct PoolInner {
    pub(super) shared: Arc<SharedPool>,
    pub(super) reactor: Rc<dyn AnyReactor>,
    pub(super) threadpool: ThreadPool,
    pub(super) min: usize,
    pub(super) max: usize,
    pub(super) name: Option<String>,
    pub(super) running: Cell<bool>,
    pub(super) start_id: RefCell<Option<TriggerId>>,
    pub(super) shutdown_id: RefCell<Option<TriggerId>>,
    pub(super) close_state: RefCell<CloseState>,
}

impl PoolInner {
    /// Stops the workers without blocking: queued and running jobs finish
    /// and their Deferreds fire, each worker closes its connection as it
    /// exits, then the remaining connections are closed. Holds the reactor's
    /// shutdown (its loop keeps turning and its `after`/`shutdown` triggers
    /// wait) until then.
    pub(super) fn stop_workers(&self) -> Deferred<()> {
        let hold = self.reactor.hold_shutdown();
        let shared = Arc::clone(&self.shared);
        stop_thread_pool(&*self.reactor, &self.threadpool).add_both(
            move |r: Result<(), Failure>| {
                shared.close_all();
                drop(hold);
                r
            },
        )
    }
}

impl Drop for PoolInner {
    /// The last handle of a pool that was not closed: close it as
    /// `final_close` would, so its jobs still run, their Deferreds fire, its
    /// connections close, and a shutdown waits for all of that. (Twisted's
    /// shutdown trigger keeps the pool alive until shutdown; here the trigger
    /// holds the pool weakly, so dropping the last handle closes it.)
    fn drop(&mut self) {
        if !matches!(*self.close_state.get_mut(), CloseState::Open) {
            return;
        }
        for id in [
            self.shutdown_id.get_mut().take(),
            self.start_id.get_mut().take(),
        ]
        .into_iter()
        .flatten()
        {
            let _ = self.reactor.remove_system_event_trigger(&id);
        }
        // Not started yet (the reactor has not run): start the workers, so
        // the jobs already queued run before they stop, as they would have.
        if !self.threadpool.started() && self.threadpool.q_size() > 0 {
            let _ = self.threadpool.start();
        }
        drop(self.stop_workers());
    }
}

impl ConnectionPool {
    /// Mirrors `_start`: forget the startup trigger id, then `start`.
    pub(super) fn start_from_trigger(&self) {
        self.inner.start_id.borrow_mut().take();
        // Closed before the reactor got to start it (`final_close` keeps the
        // startup trigger, as Twisted's does): nothing to start, nothing wrong.
        if !matches!(*self.inner.close_state.borrow(), CloseState::Open) {
            tracing::debug!("connection pool closed before startup; not started");
            return;
        }
        if let Err(e) = self.start() {
            tracing::error!(error = %e, "could not start the connection pool");
        }
    }

    /// Starts the worker threads and registers the `during`/`shutdown`
    /// trigger that closes the pool. Does nothing if already running; fails on
    /// a closed pool. Mirrors `start()`.
    pub fn start(&self) -> Result<(), PoolClosed> {
        if !matches!(*self.inner.close_state.borrow(), CloseState::Open) {
            return Err(self.closed_error());
        }
        if self.inner.running.get() {
            return Ok(());
        }
        self.inner
            .threadpool
            .start()
            .map_err(|_| self.closed_error())?;
        let weak = Rc::downgrade(&self.inner);
        let id =
            self.inner
                .reactor
                .add_system_event_trigger(Phase::During, "shutdown", move || {
                    if let Some(p) = upgrade(&weak) {
                        drop(p.final_close());
                    }
                });
        *self.inner.shutdown_id.borrow_mut() = Some(id);
        self.inner.running.set(true);
        Ok(())
    }

    pub(super) fn closed_error(&self) -> PoolClosed {
        PoolClosed {
            dbapi_name: self.inner.shared.dbapi_name().to_owned(),
        }
    }

    /// Closes the pool: removes its startup and shutdown triggers, then
    /// [`final_close`](Self::final_close). Closing twice is harmless (Twisted
    /// raises `AlreadyQuit`). Mirrors `close()`.
    pub fn close(&self) -> Deferred<()> {
        let reactor = &self.inner.reactor;
        if let Some(id) = self.inner.shutdown_id.borrow_mut().take() {
            let _ = reactor.remove_system_event_trigger(&id);
        }
        if let Some(id) = self.inner.start_id.borrow_mut().take() {
            let _ = reactor.remove_system_event_trigger(&id);
        }
        self.final_close()
    }

    /// Stops the pool: no new work is accepted; queued and running jobs finish
    /// and their Deferreds fire; each worker closes its connection on its own
    /// thread as it exits; then the remaining connections are closed and the
    /// returned Deferred fires. Mirrors `finalClose()`, which the shutdown
    /// trigger calls.
    ///
    /// Unlike Twisted's, it does not block the loop thread while jobs drain,
    /// and during reactor shutdown it holds the reactor
    /// ([`ReactorCore::hold_shutdown`](reactor::ReactorCore::hold_shutdown))
    /// until the jobs' Deferreds have fired.
    pub fn final_close(&self) -> Deferred<()> {
        {
            let mut st = self.inner.close_state.borrow_mut();
            match &mut *st {
                CloseState::Closed => return succeed(()),
                CloseState::Closing(waiters) => {
                    // Cancelling it cannot cut the close short either.
                    let (d, r) = Deferred::with_canceller(|r| r.decline_cancel());
                    waiters.push(r);
                    return d;
                }
                CloseState::Open => *st = CloseState::Closing(Vec::new()),
            }
        }
        // A retried job begins no other attempt (and its pause ends now).
        self.inner.shared.retry_wake().close();
        // A later close() must not remove a trigger that already ran.
        self.inner.shutdown_id.borrow_mut().take();
        self.inner.running.set(false);
        // Strong, not weak: the continuation runs once, and the Deferreds of
        // later close() calls (parked in `close_state`) must fire even if the
        // last pool handle is dropped meanwhile.
        let inner = Rc::clone(&self.inner);
        self.inner
            .stop_workers()
            .add_both(move |r: Result<(), Failure>| {
                let waiters = match std::mem::replace(
                    &mut *inner.close_state.borrow_mut(),
                    CloseState::Closed,
                ) {
                    CloseState::Closing(w) => w,
                    _ => Vec::new(),
                };
                for w in waiters {
                    let _ = w.resolve(r.clone());
                }
                r
            })
    }

    /// A failed Deferred for a job (named `name`) submitted to a closed
    /// pool, or `None` if the pool is open. The refusal counts as a failed
    /// job in [`status`](Self::status) and the metrics: its Deferred failed.
    pub(super) fn refuse<T: Send + 'static>(&self, name: Option<&Arc<str>>) -> Option<Deferred<T>> {
        if matches!(*self.inner.close_state.borrow(), CloseState::Open) {
            return None;
        }
        let stats = self.inner.shared.stats();
        if stats.observe.stats {
            PoolStats::bump(&stats.on_loop.jobs_failed);
            metrics::job_outcome(&stats.observe.label, name, Outcome::Failed);
        }
        // Held until it fires: a shutdown in progress (its `after` phase, and
        // `run()`) waits for the refusal too.
        let reactor = &self.inner.reactor;
        Some(reactor.loop_queue().resolve_later_holding(
            Err(Failure::new(self.closed_error())),
            reactor.hold_shutdown(),
        ))
    }
}

pub(super) fn upgrade(weak: &Weak<PoolInner>) -> Option<ConnectionPool> {
    weak.upgrade().map(|inner| ConnectionPool { inner })
}
