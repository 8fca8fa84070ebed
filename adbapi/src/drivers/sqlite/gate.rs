//! The writer gate: one write transaction at a time per database file among
//! the connections of this process, in arrival order.
//!
//! SQLite lets one connection write at a time and makes the others retry in
//! its busy handler, which sleeps and polls: it is not fair, and under a
//! steady stream of writers one of them can keep losing until its busy
//! timeout expires ("database is locked"), even though every writer
//! finishes quickly. Python programs rarely see this because the GIL
//! serialises their worker threads. Here, connections of the same file queue
//! on a [`Gate`] (a FIFO ticket lock) before they start writing, so the busy
//! handler only ever waits for other processes.
//!
//! What is guaranteed:
//! - a connection takes its gate before the first write of a transaction (or
//!   before a write in autocommit mode) and gives it back as soon as it is
//!   out of its transaction, on every path (commit, rollback, a failed
//!   statement that ended the transaction, close, drop, a panic unwinding
//!   through the owner, thread exit): a [`Writer`] releases on drop;
//! - waiters are served in arrival order, and a waiter whose statement is
//!   cancelled leaves the queue;
//! - a statement that meets `SQLITE_BUSY` before it has written, outside a
//!   transaction (preparing it reads the schema; a read needs a shared lock
//!   while another connection commits in rollback-journal mode), is run once
//!   more in the process's turn, when no connection of this process holds a
//!   lock;
//! - a connection never waits for a gate held by another connection on the
//!   same thread (it could never be released): it fails at once with
//!   `OperationalError: database is locked`, the error SQLite itself would
//!   give after the busy timeout.
//!
//! - a shared-cache in-memory database has a gate keyed on its URI's name
//!   (every connection naming it opens it), and a statement outside a
//!   transaction that meets another connection's shared-cache table lock
//!   (`SQLITE_LOCKED_SHAREDCACHE`, which SQLite reports at once, without the
//!   busy handler) is run once more in the process's turn, like a busy one.
//!
//! What is not: the gate covers the main database file only (not `ATTACH`ed
//! ones), and there is none for `:memory:`, private `mode=memory` and
//! temporary databases, which no other connection can open (nor for
//! `vfs=memdb` databases). In shared-cache mode a write that meets a
//! reader's table lock, or a statement inside a transaction that meets any
//! other connection's, fails at once: SQLite offers no wait there but
//! `sqlite3_unlock_notify`, which this build does not enable. A transaction begun explicitly with `BEGIN`
//! (deferred) that reads before it writes already holds a read lock while it
//! waits for the gate; if the gate holder then needs an exclusive lock
//! (committing in rollback-journal mode), it waits for that reader in
//! SQLite's busy handler and fails after the busy timeout, which ends its
//! transaction and so releases the gate (no deadlock, but a failure, as
//! without the gate). In WAL mode such a reader gets `SQLITE_BUSY_SNAPSHOT`
//! when it tries to write after another commit, gate or not. The driver's
//! own implicit `BEGIN` comes after the gate, so transactions the driver
//! begins never wait for it while holding a lock. A waiter waits as long as
//! the holder keeps its transaction open: a transaction that blocks on
//! another writer of the same file in this process (say, waits for the
//! result of a job on another thread that writes the same file) deadlocks,
//! where without the gate that other writer would fail after the busy
//! timeout; a warning is logged every [`WARN_EVERY`] of waiting.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use crate::dbapi::{DbError, ErrorKind};

/// How often a long wait for a gate is logged.
pub(super) const WARN_EVERY: Duration = Duration::from_secs(30);

/// The gates of the files open in this process, by canonical path.
static GATES: Mutex<BTreeMap<PathBuf, Weak<Gate>>> = Mutex::new(BTreeMap::new());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section below leaves the state consistent before it can
    // panic, so a poisoned lock is still safe to use.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One database file's gate.
#[derive(Debug)]
pub(super) struct Gate {
    path: PathBuf,
    state: Mutex<State>,
    turn: Condvar,
}

#[derive(Debug, Default)]
struct State {
    holder: Option<Holder>,
    /// Tickets of the waiters, oldest first.
    queue: VecDeque<u64>,
    next_ticket: u64,
}

#[derive(Debug, Clone, Copy)]
struct Holder {
    conn: u64,
    thread: ThreadId,
}

/// Why a gate was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Connection `holder`, on the calling thread, holds it.
    SameThread { holder: u64 },
    /// The waiting connection's statement was cancelled.
    Cancelled,
}

/// Bumped by a cancel, so a connection waiting for its gate gives up.
#[derive(Debug, Default)]
pub(super) struct Cancel(AtomicU64);

impl Cancel {
    fn generation(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A ticket in the queue, withdrawn on drop unless it was served (so a
/// panic while waiting cannot leave a dead ticket that blocks the queue).
struct Queued<'a> {
    gate: &'a Gate,
    ticket: u64,
    served: bool,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        if !self.served {
            let mut st = lock(&self.gate.state);
            st.queue.retain(|t| *t != self.ticket);
            drop(st);
            self.gate.turn.notify_all();
        }
    }
}

impl Gate {
    /// The gate of the file at `path` (already canonical), shared by every
    /// connection of this process to that file.
    pub(super) fn for_file(path: &Path) -> Arc<Gate> {
        let mut gates = lock(&GATES);
        if let Some(g) = gates.get(path).and_then(Weak::upgrade) {
            return g;
        }
        gates.retain(|_, g| g.strong_count() > 0);
        let g = Arc::new(Gate {
            path: path.to_owned(),
            state: Mutex::new(State::default()),
            turn: Condvar::new(),
        });
        gates.insert(path.to_owned(), Arc::downgrade(&g));
        g
    }

    /// Waits for the gate in arrival order and takes it for connection
    /// `conn`; gives up if `cancel` has moved on from generation `asked`
    /// (read when the statement started, so a cancel that lands between
    /// the start and the wait is not lost).
    fn acquire(&self, conn: u64, cancel: &Cancel, asked: u64) -> Result<(), Refusal> {
        let me = thread::current().id();
        let mut st = lock(&self.state);
        if let Some(h) = st.holder {
            if h.thread == me && h.conn != conn {
                return Err(Refusal::SameThread { holder: h.conn });
            }
        }
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        st.queue.push_back(ticket);
        drop(st);
        let mut queued = Queued {
            gate: self,
            ticket,
            served: false,
        };
        let started = Instant::now();
        let mut warned = Duration::ZERO;
        let mut st = lock(&self.state);
        loop {
            if st.holder.is_none() && st.queue.front() == Some(&ticket) {
                st.queue.pop_front();
                st.holder = Some(Holder { conn, thread: me });
                queued.served = true;
                return Ok(());
            }
            if cancel.generation() != asked {
                drop(st);
                return Err(Refusal::Cancelled);
            }
            st = self
                .turn
                .wait_timeout(st, WARN_EVERY)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            let waited = started.elapsed();
            if waited >= warned + WARN_EVERY {
                warned = waited;
                let holder = st.holder.map(|h| h.conn);
                let ahead = st.queue.iter().take_while(|t| **t != ticket).count();
                drop(st);
                tracing::warn!(
                    database = %self.path.display(),
                    waited_secs = waited.as_secs(),
                    holder,
                    ahead,
                    "still waiting for this process's other write transaction on the database to end"
                );
                st = lock(&self.state);
            }
        }
    }

    /// Gives the gate back if connection `conn` holds it.
    fn release(&self, conn: u64) {
        let mut st = lock(&self.state);
        if st.holder.is_some_and(|h| h.conn == conn) {
            st.holder = None;
            drop(st);
            self.turn.notify_all();
        }
    }

    /// Wakes the waiters so a cancelled one can leave.
    pub(super) fn wake(&self) {
        // Taking the lock orders this after a waiter's check of its cancel
        // generation, so the wake-up cannot fall between check and wait.
        drop(lock(&self.state));
        self.turn.notify_all();
    }

    #[cfg(test)]
    fn waiting(&self) -> usize {
        lock(&self.state).queue.len()
    }
}

/// A connection's place at its file's gate: takes it before writing and
/// gives it back when told, or when dropped.
#[derive(Debug)]
pub(super) struct Writer {
    gate: Option<Arc<Gate>>,
    id: u64,
    held: bool,
    cancel: Arc<Cancel>,
}

impl Writer {
    /// A writer for a connection to the file guarded by `gate` (`None`: no
    /// gate, for databases no other connection can open).
    pub(super) fn new(gate: Option<Arc<Gate>>) -> Writer {
        static IDS: AtomicU64 = AtomicU64::new(1);
        Writer {
            gate,
            id: IDS.fetch_add(1, Ordering::Relaxed),
            held: false,
            cancel: Arc::new(Cancel::default()),
        }
    }

    /// What a canceller needs to stop a wait for the gate.
    pub(super) fn canceller(&self) -> (Arc<Cancel>, Option<Arc<Gate>>) {
        (Arc::clone(&self.cancel), self.gate.clone())
    }

    /// The cancel generation now: taken when a statement starts and given
    /// to [`acquire`](Self::acquire), so that a cancel of that statement
    /// landing before its wait for the gate still stops the wait.
    pub(super) fn generation(&self) -> u64 {
        self.cancel.generation()
    }

    /// Takes the gate unless held already (or there is none); gives up if
    /// the statement was cancelled since generation `asked` (see
    /// [`generation`](Self::generation)).
    pub(super) fn acquire(&mut self, asked: u64) -> Result<(), DbError> {
        let Some(gate) = &self.gate else {
            return Ok(());
        };
        if self.held {
            return Ok(());
        }
        match gate.acquire(self.id, &self.cancel, asked) {
            Ok(()) => {
                self.held = true;
                Ok(())
            }
            Err(Refusal::SameThread { holder }) => Err(DbError::new(
                ErrorKind::OperationalError,
                format!(
                    "database is locked: another connection on this thread (writer #{holder}) has an open write transaction on {}; it must commit or roll back before this one can write",
                    gate.path.display()
                ),
            )
            .with_code("5")),
            Err(Refusal::Cancelled) => Err(DbError::new(
                ErrorKind::OperationalError,
                "interrupted (cancelled while waiting for another write transaction on the database to end)",
            )
            .with_code("9")),
        }
    }

    /// Gives the gate back if held.
    pub(super) fn release(&mut self) {
        if self.held {
            self.held = false;
            if let Some(g) = &self.gate {
                g.release(self.id);
            }
        }
    }

    /// True while it holds the gate.
    pub(super) fn held(&self) -> bool {
        self.held
    }

    /// True if its database has a gate.
    pub(super) fn has_gate(&self) -> bool {
        self.gate.is_some()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.release();
    }
}

/// Cancels a wait for the gate (the other half of a statement cancel).
pub(super) fn cancel_wait(cancel: &Cancel, gate: Option<&Gate>) {
    cancel.0.fetch_add(1, Ordering::SeqCst);
    if let Some(g) = gate {
        g.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Writer {
        /// Takes the gate for a statement starting now.
        fn acquire_now(&mut self) -> Result<(), DbError> {
            let asked = self.generation();
            self.acquire(asked)
        }
    }

    fn test_gate(name: &str) -> Arc<Gate> {
        Gate::for_file(
            &std::env::temp_dir().join(format!("gate-unit-{}-{name}", std::process::id())),
        )
    }

    fn wait_until(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn one_gate_per_file() {
        let a = test_gate("same");
        let b = test_gate("same");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &test_gate("other")));
    }

    /// Waiters are served in the order they arrived, whatever order the
    /// threads happen to wake in.
    #[test]
    fn waiters_are_served_first_come_first_served() {
        let gate = test_gate("fifo");
        let mut first = Writer::new(Some(Arc::clone(&gate)));
        first.acquire_now().unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for i in 0..6 {
            let (g, o) = (Arc::clone(&gate), Arc::clone(&order));
            threads.push(thread::spawn(move || {
                let mut w = Writer::new(Some(g));
                w.acquire_now().unwrap();
                lock(&o).push(i);
                w.release();
            }));
            wait_until("the waiter queued", || gate.waiting() == i + 1);
        }
        first.release();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*lock(&order), [0, 1, 2, 3, 4, 5]);
    }

    /// The gate comes back on every way out: release, drop, a panic
    /// unwinding through the owner, and thread exit.
    #[test]
    fn released_on_every_path() {
        let gate = test_gate("paths");
        let take = || {
            let mut w = Writer::new(Some(Arc::clone(&gate)));
            w.acquire_now().unwrap();
            assert!(w.held());
            w
        };
        let mut w = take();
        w.release();
        assert!(!w.held());
        drop(take());
        let g = Arc::clone(&gate);
        let panicked = thread::spawn(move || {
            let mut w = Writer::new(Some(g));
            w.acquire_now().unwrap();
            panic!("user code panics while its transaction is open");
        })
        .join();
        assert!(panicked.is_err());
        let g = Arc::clone(&gate);
        thread::spawn(move || {
            thread_local! {
                static KEPT: std::cell::RefCell<Option<Writer>> = const { std::cell::RefCell::new(None) };
            }
            let mut w = Writer::new(Some(g));
            w.acquire_now().unwrap();
            KEPT.with(|k| *k.borrow_mut() = Some(w));
        })
        .join()
        .unwrap();
        // Everything was given back: taking it again does not wait.
        let mut last = take();
        last.release();
        assert_eq!(gate.waiting(), 0);
    }

    /// A second connection on the holder's thread is refused at once rather
    /// than waiting for ever; another thread waits.
    #[test]
    fn same_thread_is_refused_not_deadlocked() {
        let gate = test_gate("same-thread");
        let mut a = Writer::new(Some(Arc::clone(&gate)));
        a.acquire_now().unwrap();
        a.acquire_now().unwrap(); // held already: no-op
        let mut b = Writer::new(Some(Arc::clone(&gate)));
        let e = b.acquire_now().expect_err("would deadlock");
        assert_eq!(e.kind(), ErrorKind::OperationalError);
        assert!(e.message().starts_with("database is locked"), "{e}");
        assert_eq!(e.code(), Some("5"));
        assert_eq!(gate.waiting(), 0);
        a.release();
        b.acquire_now().unwrap();
        b.release();
    }

    /// A cancelled waiter leaves the queue, and the one behind it is served.
    #[test]
    fn cancelled_waiter_leaves_the_queue() {
        let gate = test_gate("cancel");
        let mut holder = Writer::new(Some(Arc::clone(&gate)));
        holder.acquire_now().unwrap();
        let mut cancelled = Writer::new(Some(Arc::clone(&gate)));
        let (cancel, g) = cancelled.canceller();
        let t1 = thread::spawn(move || cancelled.acquire_now());
        wait_until("the first waiter queued", || gate.waiting() == 1);
        let g2 = Arc::clone(&gate);
        let t2 = thread::spawn(move || {
            let mut w = Writer::new(Some(g2));
            w.acquire_now().map(|()| w.held())
        });
        wait_until("the second waiter queued", || gate.waiting() == 2);
        cancel_wait(&cancel, g.as_deref());
        let e = t1.join().unwrap().expect_err("cancelled");
        assert_eq!(e.code(), Some("9"));
        wait_until("the cancelled waiter left", || gate.waiting() == 1);
        holder.release();
        assert!(t2.join().unwrap().unwrap());
        assert_eq!(gate.waiting(), 0);
    }

    /// A cancel that lands after the statement started but before it waits
    /// for the gate (between preparing and waiting) still stops the wait.
    #[test]
    fn cancel_before_the_wait_is_not_lost() {
        let gate = test_gate("early-cancel");
        let mut holder = Writer::new(Some(Arc::clone(&gate)));
        holder.acquire_now().unwrap();
        let mut w = Writer::new(Some(Arc::clone(&gate)));
        let (cancel, g) = w.canceller();
        let (tx, rx) = std::sync::mpsc::channel();
        let t = thread::spawn(move || {
            let asked = w.generation(); // the statement starts
            cancel_wait(&cancel, g.as_deref()); // the cancel lands
            tx.send(w.acquire(asked)).unwrap();
        });
        // Fixed: refused at once. Unfixed, the wait would last until the
        // holder ends its turn: the generous bound only keeps that failure
        // from hanging the suite.
        let r = rx
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| "the cancelled statement is still waiting for the gate");
        holder.release();
        t.join().unwrap();
        let e = r.unwrap().expect_err("cancelled");
        assert_eq!(e.code(), Some("9"), "{e}");
        assert_eq!(gate.waiting(), 0);
    }

    #[test]
    fn no_gate_no_wait() {
        let mut a = Writer::new(None);
        let mut b = Writer::new(None);
        a.acquire_now().unwrap();
        b.acquire_now().unwrap();
        assert!(!a.held() && !b.held());
    }
}
