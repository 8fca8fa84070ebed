//! Bounds on tests that could hang (trial's per-test `timeout`): a test
//! that hangs fails (or, where nothing else can reach it, aborts the test
//! binary) instead of stalling the suite. Every bound is far above what a
//! slow, noisy machine needs: only a real hang reaches it, so none of these
//! is a timed assertion.

use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a test, or any single wait in it, may take before it is failed
/// as hung.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `test` on a fresh thread and fails (panics) if it panics, with its
/// panic, or if it has not finished after [`TIMEOUT`]. A hung test thread is
/// left behind; the test fails instead of hanging the suite.
///
/// # Panics
/// As described: with the test's panic, or on a hang.
pub fn bounded(test: impl FnOnce() + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    let t = std::thread::spawn(move || {
        test();
        let _ = tx.send(());
    });
    match rx.recv_timeout(TIMEOUT) {
        Ok(()) => t.join().expect("the test thread"),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(p) = t.join() {
                std::panic::resume_unwind(p);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("the test hung for {TIMEOUT:?}"),
    }
}

/// Aborts the process if it is still alive after its limit: the last resort
/// for a test that could hang where no other bound can reach it (a test that
/// must run on the test harness's own thread). Dropping the guard disarms
/// it.
#[derive(Debug)]
pub struct Watchdog {
    done: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    /// Arms a watchdog named `label` that aborts the process after `limit`.
    ///
    /// # Panics
    /// If the watchdog thread cannot be spawned.
    pub fn start(label: &'static str, limit: Duration) -> Watchdog {
        let (tx, rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("watchdog-{label}"))
            .spawn(move || {
                if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                    // The panic hook prints the message; unwinding this thread
                    // alone would not end the hung test, so abort.
                    let _ = std::panic::catch_unwind(|| {
                        panic!("watchdog: {label} still running after {limit:?}; aborting")
                    });
                    std::process::abort();
                }
            })
            .expect("spawn the watchdog");
        Watchdog {
            done: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.done.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Polls `cond` until it holds; panics naming `what` after [`TIMEOUT`]. For
/// states no event announces (a worker becoming idle), as Twisted's
/// `ThreadPoolTests.test_workerStateTransition` polls.
///
/// # Panics
/// If `cond` does not hold within [`TIMEOUT`].
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}
