//! The pool's per-thread connections (Twisted's `ConnectionPool.connect`,
//! `disconnect` and the `connections` dict keyed by thread id): the
//! `disconnect` rules, connections made lazily by the workers that run
//! jobs, each closed on the thread that owns it, and a failing
//! `cp_openfun`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::thread::ThreadId;

use adbapi::dbapi::DbConnection;
use adbapi::{args, kwargs, Arg, ConnectionPool, WrongConnectionForThread};
use crossbeam_channel::bounded;
use deferred::{gather_results, Failure};
use integration_tests::fakes::register_spy_module;
use integration_tests::harness::{fake_wait, run_async, unique_name, TempDir, TIMEOUT};
use integration_tests::pools::{file_pool, inline_sqlite_pool};
use reactor::testing::FakeReactor;
use reactor::Reactor;

// ---------------------------------------------------------------------------
// disconnect
// ---------------------------------------------------------------------------

/// `disconnect` with another thread's connection fails with "wrong
/// connection for thread" and leaves it alone; its own thread may
/// disconnect it.
#[test]
fn disconnect_of_another_threads_connection_is_wrong_connection_for_thread() {
    let (_reactor, pool) = inline_sqlite_pool(kwargs! {});
    let core = Arc::clone(pool.shared());
    let (to_main, from_thread) = bounded::<DbConnection>(1);
    let (to_thread, from_main) = bounded::<()>(1);
    std::thread::scope(|s| {
        let other = s.spawn(move || {
            let conn = core.connect().expect("connect on the other thread");
            to_main.send(conn.clone()).expect("send");
            from_main.recv_timeout(TIMEOUT).expect("go ahead");
            let r = core.disconnect(Some(&conn));
            (std::thread::current().id(), r, conn.is_closed())
        });
        let conn = from_thread
            .recv_timeout(TIMEOUT)
            .expect("the other thread connected");

        // This thread has no connection of its own...
        let err = pool.disconnect(Some(&conn)).expect_err("not this thread's");
        assert_eq!(err, WrongConnectionForThread);
        assert_eq!(err.to_string(), "wrong connection for thread");
        // ...nor once it has one.
        let mine = pool.connect().expect("connect here");
        let err = pool
            .disconnect(Some(&conn))
            .expect_err("still not this thread's");
        assert_eq!(err.to_string(), "wrong connection for thread");
        assert!(
            !conn.is_closed(),
            "the other thread's connection is untouched"
        );
        assert!(!mine.is_closed());
        assert_eq!(pool.connections().len(), 2);

        to_thread.send(()).expect("send");
        let (tid, r, closed) = other.join().expect("the other thread");
        assert_eq!(r, Ok(()), "its own thread disconnects it");
        assert!(closed);
        assert!(pool.connections().iter().all(|(t, _)| *t != tid));
        pool.disconnect(Some(&mine)).expect("disconnect mine");
    });
    assert!(pool.connections().is_empty());
}

/// `disconnect(None)` is a no-op on a thread without a connection and
/// "wrong connection for thread" on a thread that has one: Twisted's
/// `ConnectionPool.disconnect` compares the argument with the thread's own
/// connection.
#[test]
fn disconnect_none_depends_on_whether_the_thread_has_a_connection() {
    let (_reactor, pool) = inline_sqlite_pool(kwargs! {});
    assert_eq!(pool.disconnect(None), Ok(()));
    let conn = pool.connect().expect("connect");
    assert!(DbConnection::ptr_eq(&conn, &pool.connect().expect("again")));
    let err = pool.disconnect(None).expect_err("this thread has one");
    assert_eq!(err.to_string(), "wrong connection for thread");
    assert!(!conn.is_closed());
    assert_eq!(pool.disconnect(Some(&conn)), Ok(()));
    assert!(conn.is_closed());
    assert!(pool.connections().is_empty());
    assert_eq!(pool.disconnect(None), Ok(()));
}

// ---------------------------------------------------------------------------
// Who makes and closes connections
// ---------------------------------------------------------------------------

/// `cp_min` pre-starts threads, not connections: connections are made
/// lazily, one per worker that runs a job, keyed by its thread (Twisted's
/// `ConnectionPool.connect` fills `connections[threadID]` on first use).
#[test]
fn cp_min_prestarts_threads_not_connections() {
    let dir = TempDir::new("lazy");
    let reactor = Reactor::new().expect("a reactor");
    let pool = file_pool(&reactor, &dir, kwargs! { "cp_min" => 2, "cp_max" => 3 });
    pool.start().expect("start");
    assert_eq!(pool.threadpool().workers(), 2);
    assert!(pool.connections().is_empty(), "no connection yet");
    let p = pool.clone();
    let (worker, conns) = run_async(&reactor, TIMEOUT, move || async move {
        let worker = p
            .run_interaction(|txn| {
                txn.execute("select 1", ())?;
                Ok(std::thread::current().id())
            })
            .await?;
        let conns = p.connections();
        p.close().await?;
        Ok((worker, conns))
    })
    .unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(conns.len(), 1, "{conns:?}");
    assert_eq!(conns[0].0, worker, "keyed by the worker's thread");
    assert_ne!(worker, std::thread::current().id());
}

/// Connections are closed on the thread that owns them: workers close
/// theirs as they exit, and a connection made on the reactor thread is
/// closed there (documented difference: Twisted closes every connection on
/// the reactor thread, twisted/twisted#3629).
#[test]
fn connections_are_closed_on_the_thread_that_owns_them() {
    let (module, state) = register_spy_module("owner");
    let dir = TempDir::new("owner");
    let name = unique_name("owner-pool");
    let reactor = Reactor::new().expect("a reactor");
    let pool = ConnectionPool::new(
        &module,
        args![],
        kwargs! {
            "database" => dir.file("test.db"),
            "cp_min" => 2,
            "cp_max" => 2,
            "cp_name" => name.as_str(),
            "cp_reactor" => Arg::reactor(reactor.clone()),
        },
    )
    .expect("a pool");
    let p = pool.clone();
    let workers: Vec<ThreadId> = run_async(&reactor, TIMEOUT, move || async move {
        p.run_operation("create table t (x integer)", ()).await?;
        // Two jobs that wait for each other: two workers, two connections.
        let (a_tx, a_rx) = bounded::<()>(1);
        let (b_tx, b_rx) = bounded::<()>(1);
        let meet = |tx: crossbeam_channel::Sender<()>, rx: crossbeam_channel::Receiver<()>| {
            move |txn: &mut adbapi::Transaction<'_>| {
                let _ = tx.send(());
                rx.recv_timeout(TIMEOUT)
                    .map_err(|_| Failure::msg("the two jobs did not run at the same time"))?;
                txn.execute("select count(*) from t", ())?;
                Ok(std::thread::current().id())
            }
        };
        let j1 = p.run_interaction(meet(a_tx, b_rx));
        let j2 = p.run_interaction(meet(b_tx, a_rx));
        let workers = gather_results(vec![j1, j2], false).await?;
        // One more, on the reactor thread, left for close() to close.
        let _own = p.connect()?;
        p.close().await?;
        Ok(workers)
    })
    .unwrap_or_else(|f| panic!("{}", f.traceback()));

    let me = std::thread::current().id();
    assert_ne!(workers[0], workers[1], "two workers");
    let calls = state.calls();
    let connects: Vec<_> = calls.iter().filter(|c| c.op == "connect").collect();
    assert_eq!(connects.len(), 3, "{calls:?}");
    for c in &connects {
        let closes: Vec<_> = calls
            .iter()
            .filter(|x| x.conn == c.conn && x.op == "close")
            .collect();
        assert_eq!(
            closes.len(),
            1,
            "connection {} closed once: {calls:?}",
            c.conn
        );
        assert_eq!(
            closes[0].thread, c.thread,
            "connection {} closed on {:?}, made on {:?}",
            c.conn, closes[0].thread_name, c.thread_name
        );
    }
    let threads: BTreeSet<String> = connects.iter().map(|c| format!("{:?}", c.thread)).collect();
    assert_eq!(threads.len(), 3, "three owners");
    assert!(
        connects.iter().any(|c| c.thread == me),
        "one on the reactor thread"
    );
    for w in &workers {
        let c = connects
            .iter()
            .find(|c| c.thread == *w)
            .expect("each worker connected");
        assert!(
            c.thread_name
                .as_deref()
                .is_some_and(|n| n.starts_with(&format!("PoolThread-{name}-"))),
            "{:?}",
            c.thread_name
        );
    }
    assert_eq!(state.open_connections(), 0);
    assert!(pool.connections().is_empty());
}

/// A failing `cp_openfun` fails the job and closes the new raw connection
/// (documented difference: Twisted leaves it open and unreferenced).
#[test]
fn a_failing_openfun_closes_the_raw_connection() {
    let (module, state) = register_spy_module("openfun");
    let reactor = FakeReactor::new(true);
    let pool = ConnectionPool::new(
        &module,
        args![":memory:"],
        kwargs! {
            "cp_openfun" => Arg::openfun(|_| Err(Failure::msg("openfun refused"))),
            "cp_reactor" => Arg::reactor(reactor.clone()),
        },
    )
    .expect("a pool");
    for attempt in 1..=2 {
        let f = fake_wait(&reactor, pool.run_query("select 1", ())).expect_err("openfun failed");
        assert_eq!(f.error_message(), "openfun refused");
        assert_eq!(state.count("connect"), attempt);
        assert_eq!(state.count("close"), attempt);
        assert_eq!(state.open_connections(), 0);
        assert!(pool.connections().is_empty());
    }
}
