//! Loom models of the cross-thread protocols (tracker issue 9). Built only
//! with `--cfg loom`, which swaps the crate's primitives for loom's (see
//! `src/sync.rs`):
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test -p reactor --test loom --release
//! ```
//!
//! (`LOOM_MAX_PREEMPTIONS` defaults to 2 below when unset; the whole file
//! then takes about 10 s here; CI also runs the loop-queue model with 3.)
//! With a bound of 3 the pool and job-queue models pass in about 3.5
//! minutes. The loop queue's flag was once set with a plain store; at 3
//! preemptions loom then reported a lost wakeup that the C11 model forbids
//! (loom does not fully model SeqCst fences), so the loop now sets it with
//! a `swap`, whose place in the flag's modification order loom does see.
//! What is
//! abstracted: a spin's time budget becomes two checks separated by
//! `yield_now` (`src/spin.rs`); the mio waker of the loop queue becomes
//! [`ModelWaker`], a flag and a condvar with an eventfd's semantics; the
//! pool model runs with a zero spin budget (the spin is model (b)'s).
#![cfg(loom)]

use std::sync::atomic::{AtomicUsize as StdAtomicUsize, Ordering as StdOrdering};
use std::sync::Arc;
use std::time::Duration;

use loom::sync::{Condvar, Mutex};
use reactor::loom_model::{ModelJobQueue, ModelLoop};
use reactor::ThreadPool;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(2);
    }
    builder.check(f);
}

/// Counts events and lets a thread wait for a count, visibly to loom (a
/// wait that can never end is reported as a deadlock).
#[derive(Default)]
struct Counter {
    n: Mutex<usize>,
    cv: Condvar,
}

impl Counter {
    fn add(&self) {
        *self.n.lock().unwrap() += 1;
        self.cv.notify_all();
    }
    fn wait_for(&self, want: usize) {
        let mut n = self.n.lock().unwrap();
        while *n < want {
            n = self.cv.wait(n).unwrap();
        }
    }
}

/// (a) `remote.rs`: the loop announces its sleep (flag, fence, re-check)
/// while senders push, fence and wake only if they swap the flag off. No
/// interleaving leaves the loop asleep with a message queued.
#[test]
fn loop_queue_never_loses_a_wakeup() {
    model(|| {
        let lp = ModelLoop::new();
        let ran = Arc::new(StdAtomicUsize::new(0));
        let senders: Vec<_> = (0..2)
            .map(|_| {
                let (h, ran) = (lp.handle(), ran.clone());
                loom::thread::spawn(move || {
                    h.call_from_thread(move || {
                        ran.fetch_add(1, StdOrdering::SeqCst);
                    })
                })
            })
            .collect();
        loop {
            lp.drain();
            if ran.load(StdOrdering::SeqCst) == 2 {
                break;
            }
            lp.idle(); // a lost wakeup blocks here forever: loom reports it
        }
        for s in senders {
            s.join().unwrap();
        }
    });
}

fn job_queue_model(jobs: usize) {
    model(move || {
        let q = Arc::new(ModelJobQueue::default());
        let taken = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(Counter::default());
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let (q, taken, count) = (q.clone(), taken.clone(), count.clone());
                loom::thread::spawn(move || {
                    while let Some(job) = q.pop_blocking(true) {
                        taken.lock().unwrap().push(job);
                        count.add();
                        if job == 0 {
                            // Job 0 holds its worker until every job is
                            // taken: the others must reach the other worker.
                            count.wait_for(jobs);
                        }
                    }
                })
            })
            .collect();
        for job in 0..jobs {
            assert!(q.push(job));
        }
        // Every job is taken without a close: a worker asleep while a job
        // is queued (and the other held by job 0) deadlocks the model.
        count.wait_for(jobs);
        q.close();
        for w in workers {
            w.join().unwrap();
        }
        let mut all = taken.lock().unwrap().clone();
        all.sort_unstable();
        assert_eq!(all, (0..jobs).collect::<Vec<_>>(), "each job exactly once");
    });
}

/// (b) `job_queue.rs`: at most one idle worker spins, the others block; a
/// push wakes a sleeper only if no spinner will take the job; a worker
/// that takes a job with more queued wakes the next; close wakes everyone.
#[test]
fn job_queue_two_workers_two_jobs() {
    job_queue_model(2);
}

/// (b) with a backlog longer than the workers.
#[test]
fn job_queue_two_workers_three_jobs() {
    job_queue_model(3);
}

/// (c) `threadpool.rs`, defect 12: a shrink races the leaving worker's
/// Quit and exit hooks, and a second resize follows; the job submitted
/// after them still runs (a stranded job deadlocks the model), and stop
/// joins every thread.
#[test]
fn pool_resize_while_a_worker_leaves_strands_no_job() {
    model(|| {
        let pool = ThreadPool::new(2, 2, "loom").unwrap();
        pool.set_spin(Duration::ZERO);
        pool.add_worker_exit_hook(Arc::new(loom::thread::yield_now));
        pool.start().unwrap();
        pool.adjust_pool_size(Some(0), Some(1)).unwrap();
        pool.adjust_pool_size(Some(0), Some(1)).unwrap();
        let ran = Arc::new(Counter::default());
        let r = ran.clone();
        pool.call_in_thread(move || r.add()).unwrap();
        ran.wait_for(1);
        pool.stop();
        assert_eq!(pool.workers(), 0);
    });
}

/// (c) shrinking to nothing and growing back: the job queued meanwhile runs.
#[test]
fn pool_shrink_to_zero_and_back_runs_the_backlog() {
    model(|| {
        let pool = ThreadPool::new(0, 1, "loom-regrow").unwrap();
        pool.set_spin(Duration::ZERO);
        pool.start().unwrap();
        pool.call_in_thread(|| ()).unwrap();
        pool.adjust_pool_size(Some(0), Some(0)).unwrap();
        let ran = Arc::new(Counter::default());
        let r = ran.clone();
        pool.call_in_thread(move || r.add()).unwrap();
        pool.adjust_pool_size(Some(0), Some(1)).unwrap();
        ran.wait_for(1);
        pool.stop();
    });
}

/// (c) `threadpool.rs`, defect 13: a submit racing stop on another thread
/// is either refused or run, never accepted and lost.
#[test]
fn pool_submit_racing_stop_is_run_or_refused() {
    model(|| {
        let pool = ThreadPool::new(1, 1, "loom-stop").unwrap();
        pool.set_spin(Duration::ZERO);
        pool.start().unwrap();
        let ran = Arc::new(StdAtomicUsize::new(0));
        let submitter = {
            let (pool, ran) = (pool.clone(), ran.clone());
            loom::thread::spawn(move || {
                pool.call_in_thread(move || {
                    ran.fetch_add(1, StdOrdering::SeqCst);
                })
                .is_ok()
            })
        };
        pool.stop();
        let accepted = submitter.join().unwrap();
        // `stop` joined the worker; a job accepted before it has run, and
        // none is accepted after.
        assert_eq!(ran.load(StdOrdering::SeqCst), usize::from(accepted));
    });
}
