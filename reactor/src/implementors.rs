//! For implementors of a reactor, and for tests that look inside one; a
//! program does not need anything here.
//!
//! - [`LoopQueue`]: the loop side of the thread-to-loop queue, which
//!   [`ReactorFromThreads::loop_queue`](crate::ReactorFromThreads::loop_queue)
//!   returns: its lengths (`len`, `outstanding` thread-pool jobs, `tasks`
//!   started by `ensure_deferred`) and `resolve_later`/`resolve_later_holding`
//!   for code that must fire a Deferred on a later turn, through the queue,
//!   as thread results are (a connection pool refusing work after `close`);
//! - [`TriggerFn`] and [`trigger_fn`]: the boxed trigger the object-safe
//!   [`ReactorCore`](crate::ReactorCore) methods take
//!   (`call_when_running_boxed`, `add_system_event_trigger_boxed`); programs
//!   call the generic [`ReactorExt`](crate::ReactorExt) methods instead.
//!
//! Twisted has no such split: its reactor's internals (`threadCallQueue`,
//! `_eventTriggers`) are simply private attributes.

pub use crate::remote::LoopQueue;
pub use crate::triggers::{trigger_fn, TriggerFn};
