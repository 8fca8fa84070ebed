//! Cancelling pool jobs: what "cancelled" promises. Beyond Twisted, whose
//! `runInteraction` Deferreds have no canceller: a cancel before the job
//! began to finish withdraws or interrupts it and nothing commits; a cancel
//! that arrives once the job is committing is declined and the Deferred
//! reports the real outcome, so `CancelledError` always means "nothing
//! committed".

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use adbapi::dbapi::{
    register_module, ConnectArgs, DbApiModule, DbResult, DriverConnection, ExecResult, Params,
    StatementCanceller,
};
use adbapi::drivers::sqlite::SqliteModule;
use adbapi::{args, kwargs, Arg, ConnectionPool};
use crossbeam_channel::{bounded, Receiver, Sender};
use deferred::{CancelledError, Failure};
use integration_tests::harness::{run_chain, unique_name, TempDir, TIMEOUT};
use reactor::prelude::*;
use reactor::Reactor;

/// Wraps `sqlite3`: `commit` tells the test it began (`committing`) and
/// waits for `release`; the canceller records the thread it ran on.
struct GatedModule {
    name: String,
    committing: Sender<()>,
    release: Receiver<()>,
    cancel_threads: Arc<Mutex<Vec<Option<String>>>>,
    cancel_blocks: bool,
}

impl std::fmt::Debug for GatedModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GatedModule")
    }
}

struct GatedConnection {
    inner: Box<dyn DriverConnection>,
    committing: Sender<()>,
    release: Receiver<()>,
    canceller: Arc<RecordingCanceller>,
}

#[derive(Debug)]
struct RecordingCanceller {
    threads: Arc<Mutex<Vec<Option<String>>>>,
    blocks: bool,
}

impl StatementCanceller for RecordingCanceller {
    fn cancel(&self) -> DbResult<()> {
        let name = std::thread::current().name().map(str::to_owned);
        self.threads.lock().unwrap().push(name);
        Ok(())
    }
    fn blocks(&self) -> bool {
        self.blocks
    }
}

impl DbApiModule for GatedModule {
    fn name(&self) -> &str {
        &self.name
    }
    fn paramstyle(&self) -> &str {
        "qmark"
    }
    fn connect(&self, args: &ConnectArgs) -> DbResult<Box<dyn DriverConnection>> {
        Ok(Box::new(GatedConnection {
            inner: SqliteModule.connect(args)?,
            committing: self.committing.clone(),
            release: self.release.clone(),
            canceller: Arc::new(RecordingCanceller {
                threads: Arc::clone(&self.cancel_threads),
                blocks: self.cancel_blocks,
            }),
        }))
    }
}

impl DriverConnection for GatedConnection {
    fn execute(&mut self, sql: &str, params: &Params) -> DbResult<ExecResult> {
        self.inner.execute(sql, params)
    }
    fn commit(&mut self) -> DbResult<()> {
        let _ = self.committing.send(());
        let _ = self.release.recv_timeout(TIMEOUT);
        self.inner.commit()
    }
    fn rollback(&mut self) -> DbResult<()> {
        self.inner.rollback()
    }
    fn close(&mut self) -> DbResult<()> {
        self.inner.close()
    }
    fn canceller(&self) -> Option<Arc<dyn StatementCanceller>> {
        Some(Arc::clone(&self.canceller) as Arc<dyn StatementCanceller>)
    }
}

struct Gate {
    module: String,
    committing: Receiver<()>,
    release: Sender<()>,
    cancel_threads: Arc<Mutex<Vec<Option<String>>>>,
}

fn gated_module(cancel_blocks: bool) -> Gate {
    let (committing_tx, committing) = bounded(16);
    let (release, release_rx) = bounded(16);
    let cancel_threads = Arc::new(Mutex::new(Vec::new()));
    let name = unique_name("gated");
    register_module(
        &name,
        Arc::new(GatedModule {
            name: name.clone(),
            committing: committing_tx,
            release: release_rx,
            cancel_threads: Arc::clone(&cancel_threads),
            cancel_blocks,
        }),
    );
    Gate {
        module: name,
        committing,
        release,
        cancel_threads,
    }
}

fn pool_on(reactor: &Reactor, module: &str, dir: &TempDir) -> ConnectionPool {
    ConnectionPool::new(
        module,
        args![dir.file("t.db")],
        kwargs! { "cp_min" => 1, "cp_max" => 1, "cp_reactor" => Arg::reactor(reactor.clone()) },
    )
    .expect("a pool")
}

/// Runs `sql` on the plain `sqlite3` module, on a reactor of its own.
fn sqlite(dir: &TempDir, sql: &'static str) -> Vec<adbapi::Row> {
    let reactor = Reactor::new().unwrap();
    let pool = ConnectionPool::new(
        "sqlite3",
        args![dir.file("t.db")],
        kwargs! { "cp_max" => 1, "cp_reactor" => Arg::reactor(reactor.clone()) },
    )
    .unwrap();
    let p = pool.clone();
    run_chain(&reactor, TIMEOUT, move || p.run_query(sql, ())).expect(sql)
}

fn count(dir: &TempDir) -> i64 {
    sqlite(dir, "select count(*) from t")[0]
        .get::<i64>(0)
        .unwrap()
}

/// Defect: a cancel that landed while the job was committing failed the
/// Deferred with `CancelledError` although the row was committed. Now the
/// cancel is declined and the Deferred reports the commit.
#[test]
fn cancel_during_commit_reports_the_commit() {
    let dir = TempDir::new("cancel-commit");
    let gate = gated_module(false);
    sqlite(&dir, "create table t (x integer)");
    let reactor = Reactor::new().unwrap();
    let pool = pool_on(&reactor, &gate.module, &dir);
    let committing = gate.committing.clone();
    let release = gate.release.clone();
    let outcome: Rc<RefCell<Option<Result<(), Failure>>>> = Rc::default();
    let (o, r, p) = (outcome.clone(), reactor.clone(), pool.clone());
    reactor.call_when_running(move || {
        let d = p.run_operation("insert into t values (1)", ());
        // Block the loop until the worker is inside commit, then cancel.
        committing
            .recv_timeout(TIMEOUT)
            .expect("the job reached its commit");
        d.cancel();
        assert!(!d.called(), "the cancel came too late: declined");
        release.send(()).unwrap();
        let _ = d.add_both(move |res| {
            *o.borrow_mut() = Some(res);
            r.stop().unwrap();
            Ok(())
        });
    });
    reactor.run().unwrap();
    let got = outcome
        .borrow_mut()
        .take()
        .expect("fired before run() returned");
    got.expect("the Deferred reports the committed job");
    drop(pool);
    assert_eq!(count(&dir), 1, "committed");
}

/// A cancel while the job runs its interaction (before it finishes) fails
/// the Deferred with `CancelledError` at once and nothing commits; the
/// driver's cancel runs inline on the loop thread when it does not block
/// (SQLite's interrupt), on a helper thread when it does (PostgreSQL's).
#[test]
fn cancel_while_running_rolls_back_and_runs_the_driver_cancel_where_it_should() {
    for blocks in [false, true] {
        let dir = TempDir::new("cancel-running");
        let gate = gated_module(blocks);
        // Pre-release every commit: this test does not stop in commit.
        for _ in 0..8 {
            gate.release.send(()).unwrap();
        }
        sqlite(&dir, "create table t (x integer)");

        let reactor = Reactor::new().unwrap();
        let pool = pool_on(&reactor, &gate.module, &dir);
        let (in_job_tx, in_job) = bounded::<()>(1);
        let (go_tx, go) = bounded::<()>(1);
        let outcome: Rc<RefCell<Option<Result<(), Failure>>>> = Rc::default();
        let loop_thread = std::thread::current().name().map(str::to_owned);
        let (o, r, p) = (outcome.clone(), reactor.clone(), pool.clone());
        let ran_after_cancel = Arc::new(AtomicUsize::new(0));
        let rac = Arc::clone(&ran_after_cancel);
        let cancels = Arc::clone(&gate.cancel_threads);
        reactor.call_when_running(move || {
            let d = p.run_interaction(move |txn| {
                txn.execute("insert into t values (1)", ())?;
                in_job_tx.send(()).unwrap();
                go.recv_timeout(TIMEOUT).unwrap();
                // The job was cancelled meanwhile: its next statement fails.
                let next = txn.execute("insert into t values (2)", ());
                if next.is_ok() {
                    rac.fetch_add(1, Ordering::SeqCst);
                }
                next?;
                Ok(())
            });
            in_job.recv_timeout(TIMEOUT).unwrap();
            d.cancel();
            assert!(d.called(), "a cancel before the job finishes fires at once");
            // A blocking driver cancel runs on its own thread; it only acts
            // while the job still runs, so let it land before the job goes on.
            let deadline = std::time::Instant::now() + TIMEOUT;
            while cancels.lock().unwrap().is_empty() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the driver cancel never ran"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            go_tx.send(()).unwrap();
            let _ = d.add_both(move |res| {
                *o.borrow_mut() = Some(res);
                // Let the worker finish its rollback before stopping.
                r.call_later(Duration::from_millis(1), {
                    let r = r.clone();
                    move || r.stop().unwrap()
                });
                Ok(())
            });
        });
        reactor.run().unwrap();
        let got = outcome.borrow_mut().take().expect("fired");
        let f = got.expect_err("cancelled");
        assert!(f.check::<CancelledError>().is_some(), "{f}");
        assert_eq!(ran_after_cancel.load(Ordering::SeqCst), 0);
        drop(pool);
        assert_eq!(count(&dir), 0, "nothing committed");
        let threads = gate.cancel_threads.lock().unwrap().clone();
        assert_eq!(
            threads.len(),
            1,
            "the driver's cancel ran once: {threads:?}"
        );
        if blocks {
            assert_eq!(threads[0].as_deref(), Some("adbapi-cancel"));
        } else {
            assert_eq!(threads[0], loop_thread, "inline, on the loop thread");
        }
    }
}

/// SQLite's interrupt only sets a flag: the pool calls it inline instead of
/// starting a thread for it.
#[test]
fn sqlite_cancel_does_not_block() {
    let conn = adbapi::dbapi::connect("sqlite3", &[":memory:".into()], &[]).unwrap();
    assert!(!conn.cancel_blocks());
}
