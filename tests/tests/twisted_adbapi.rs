//! A port of Twisted's `src/twisted/test/test_adbapi.py` (Twisted 24.7 /
//! 26.10), module `twisted.test.test_adbapi`: every test class and method
//! that can run without an external database server.
//!
//! | Twisted | here |
//! |---|---|
//! | `SQLite3ADBAPITests.test_pool` | [`sqlite3_adbapi_tests_test_pool`], plus a 50-iteration variant |
//! | `SQLite3ReconnectTests.test_pool` | [`sqlite3_reconnect_tests_test_pool`] |
//! | `ConnectionTests.test_rollbackErrorLogged` | [`connection_tests_test_rollback_error_logged`] |
//! | `TransactionTests.test_reopenLogErrorIfReconnect` | [`transaction_tests_test_reopen_log_error_if_reconnect`] |
//! | `ConnectionPoolTests.*` | `connection_pool_tests_*` |
//!
//! The `ADBAPITestBase`/`ReconnectTestBase` bodies live in
//! `integration_tests::suite` and take a `&dyn Backend` (Twisted's
//! `DBTestConnector`), so other databases run the same code. The fakes of
//! `test_adbapi.py` (`FakePool`, `ConnectionRollbackRaise`,
//! `ConnectionCursorRaise`, `ConnectionCloseRaise`, the test module used as
//! a DB-API module) become a registered fake module
//! (`integration_tests::fakes`); `DummyConnectionPool` (whose
//! `NonThreadPool` runs jobs inline and delivers results on a later reactor
//! turn) becomes a pool on a `FakeReactor`, whose pools run jobs inline;
//! `EventReactor` becomes `FakeReactor`; `flushLoggedErrors(RuntimeError)`
//! becomes counting captured error events whose failure says `problem!`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use adbapi::dbapi::{connect, DbConnection};
use adbapi::{
    args, kwargs, Arg, Connection, ConnectionLost, ConnectionPool, SharedPool, Transaction,
};
use deferred::Failure;
use integration_tests::backend::Sqlite3Backend;
use integration_tests::fakes::{register_fake_module, ModuleState, RuntimeError, ValueError};
use integration_tests::harness::fake_wait;
use integration_tests::logs::{render, LogCapture};
use integration_tests::suite;
use reactor::testing::FakeReactor;
use reactor::testing::PoolMode;
use reactor::Phase;

// ---------------------------------------------------------------------------
// ADBAPITestBase / ReconnectTestBase, through SQLite3Connector
// ---------------------------------------------------------------------------

/// Twisted: `SQLite3ADBAPITests.test_pool` (`ADBAPITestBase` with
/// `SQLite3Connector`, `num_iterations = 1`).
#[test]
fn sqlite3_adbapi_tests_test_pool() {
    suite::adbapi_test_pool(&Sqlite3Backend::new());
}

/// Twisted: `SQLite3ADBAPITests.test_pool` with `num_iterations = 50`, the
/// `DBTestConnector` default. Twisted lowers it to 1 for SQLite ("slow");
/// this pool has no such limitation, so the full workout runs too.
#[test]
fn sqlite3_adbapi_tests_test_pool_50_iterations() {
    suite::adbapi_test_pool(&Sqlite3Backend::with_iterations(50));
}

/// Twisted: `SQLite3ReconnectTests.test_pool` (`ReconnectTestBase` with
/// `SQLite3Connector`).
#[test]
fn sqlite3_reconnect_tests_test_pool() {
    suite::reconnect_test_pool(&Sqlite3Backend::new());
}

// ---------------------------------------------------------------------------
// Helpers standing in for the fakes
// ---------------------------------------------------------------------------

/// A pool on a fake reactor for a fake module: `DummyConnectionPool` when
/// `running` (its pool starts at once and runs jobs inline), `FakePool`'s
/// `reconnect`/`noisy` when asked.
fn fake_pool(
    module: &str,
    running: bool,
    reconnect: bool,
    noisy: bool,
) -> (FakeReactor, ConnectionPool) {
    let reactor = FakeReactor::new(running);
    let pool = ConnectionPool::new(
        module,
        args![],
        kwargs! {
            "cp_reconnect" => reconnect,
            "cp_noisy" => noisy,
            "cp_reactor" => Arg::reactor(reactor.clone()),
        },
    )
    .expect("a pool for the fake module");
    (reactor, pool)
}

/// A raw connection of the fake module, like the tests' fake connection
/// objects.
fn raw_fake_connection(module: &str) -> DbConnection {
    connect(module, &[], &[]).expect("the fake module connects")
}

/// `flushLoggedErrors(RuntimeError)` then the two assertions Twisted makes:
/// exactly one, and its message is `problem!`.
fn assert_one_problem_logged(logs: &LogCapture, why: &str) {
    let errors = logs.flush_logged_errors("problem!");
    assert_eq!(
        errors.len(),
        1,
        "one logged RuntimeError(\"problem!\"); log:\n{}",
        render(&logs.events())
    );
    assert_eq!(errors[0].message, why);
    assert!(
        errors[0]
            .failure()
            .is_some_and(|f| f.contains("RuntimeError: problem!")),
        "{}",
        errors[0]
    );
    let rest = logs.errors();
    assert!(rest.is_empty(), "other logged errors:\n{}", render(&rest));
}

/// `DummyTransaction`: a transaction factory that opens no cursor.
fn dummy_transaction<'c>(
    pool: &'c Arc<SharedPool>,
    connection: &'c mut Connection,
) -> Result<Transaction<'c>, Failure> {
    Ok(Transaction::without_cursor(pool, connection))
}

/// A connection factory for `ConnectionRollbackRaise`: a wrapper around a
/// new fake raw connection (whose `rollback` fails when the module says so).
fn rollback_raise_factory(module: &str) -> adbapi::ConnectionFactory {
    let module = module.to_owned();
    Arc::new(move |core: &Arc<SharedPool>| {
        Ok(Connection::with_raw(core, raw_fake_connection(&module)))
    })
}

fn fail_rollback(state: &ModuleState) {
    state.fail_rollback.store(true, Ordering::SeqCst);
}

// ---------------------------------------------------------------------------
// ConnectionTests
// ---------------------------------------------------------------------------

/// Twisted: `ConnectionTests.test_rollbackErrorLogged`. If an error happens
/// during rollback, `ConnectionLost` is raised but the original error is
/// logged.
#[test]
fn connection_tests_test_rollback_error_logged() {
    let logs = LogCapture::start();
    let (module, state) = register_fake_module("rollback-raise", true);
    fail_rollback(&state);
    // FakePool: reconnect = True, noisy = True.
    let (_reactor, pool) = fake_pool(&module, false, true, true);
    let mut connection = Connection::new(pool.shared()).expect("Connection(pool)");

    let err = connection
        .rollback()
        .expect_err("assertRaises(ConnectionLost, connection.rollback)");
    assert!(
        err.check::<ConnectionLost>().is_some(),
        "ConnectionLost expected, got {err}"
    );
    // Beyond Twisted: the original error stays reachable.
    assert_eq!(
        err.check::<RuntimeError>(),
        Some(&RuntimeError("problem!".to_owned()))
    );
    assert_one_problem_logged(&logs, "Rollback failed");
    // Beyond Twisted (whose FakePool.disconnect does nothing): the real pool
    // dropped and closed the connection, logging as noisy pools do.
    assert!(pool.connections().is_empty());
    assert!(connection.raw().is_closed());
    assert_eq!(state.open_connections(), 0);
    let messages = logs.messages();
    let closing = format!("adbapi closing: {module}");
    let at_closing = messages.iter().position(|m| *m == closing);
    let at_lost = messages.iter().position(|m| m == "Connection lost.");
    assert!(
        at_closing.is_some() && at_closing < at_lost,
        "noisy: closing, then `Connection lost.`; log:\n{}",
        render(&logs.events())
    );
}

// ---------------------------------------------------------------------------
// TransactionTests
// ---------------------------------------------------------------------------

/// Twisted: `TransactionTests.test_reopenLogErrorIfReconnect`. If the cursor
/// creation raises an error in `Transaction.reopen`, it reconnects but logs
/// the error that occurred.
#[test]
fn transaction_tests_test_reopen_log_error_if_reconnect() {
    let logs = LogCapture::start();
    let (module, state) = register_fake_module("cursor-raise", true);
    // ConnectionCursorRaise: cursor() raises on the first call only.
    state.cursor_failures.store(1, Ordering::SeqCst);
    let (_reactor, pool) = fake_pool(&module, false, true, true);
    let mut conn = Connection::new(pool.shared()).expect("a connection");
    let first_raw = conn.raw().clone();

    {
        let mut transaction =
            Transaction::new(pool.shared(), &mut conn).expect("Transaction(pool, conn)");
        transaction
            .reopen()
            .expect("transaction.reopen() raises nothing");
        assert!(transaction.cursor().is_ok(), "a cursor is open");
    }
    assert_one_problem_logged(&logs, "Cursor creation failed");
    // Twisted's fake reconnect() does nothing; the real one replaced the raw
    // connection (closing the old one), as noisy pools log.
    assert!(!DbConnection::ptr_eq(&first_raw, conn.raw()));
    assert!(first_raw.is_closed());
    assert_eq!(state.count("connect"), 2);
    assert_eq!(
        logs.count("Connection lost, reconnecting"),
        1,
        "{}",
        render(&logs.events())
    );
}

// ---------------------------------------------------------------------------
// ConnectionPoolTests
// ---------------------------------------------------------------------------

/// Twisted: `ConnectionPoolTests.test_runWithConnectionRaiseOriginalError`.
/// If rollback fails, `runWithConnection` raises the original exception and
/// logs the error of the rollback.
#[test]
fn connection_pool_tests_test_run_with_connection_raise_original_error() {
    let logs = LogCapture::start();
    let (module, state) = register_fake_module("rwc-rollback-raise", true);
    fail_rollback(&state);
    let (reactor, pool) = fake_pool(&module, true, false, false);
    pool.set_connection_factory(rollback_raise_factory(&module));

    let d = pool.run_with_connection(|_connection| -> Result<(), Failure> {
        Err(Failure::new(ValueError("foo".to_owned())))
    });
    assert!(!d.has_result(), "results arrive on a later reactor turn");
    let failure = fake_wait(&reactor, d).expect_err("assertFailure(d, ValueError)");
    assert_eq!(
        failure.check::<ValueError>(),
        Some(&ValueError("foo".to_owned())),
        "the original error, got {failure}"
    );
    assert_one_problem_logged(&logs, "Rollback failed");
    assert_eq!(state.count("rollback"), 1);
}

/// Twisted: `ConnectionPoolTests.test_closeLogError`. `_close` logs
/// exceptions.
#[test]
fn connection_pool_tests_test_close_log_error() {
    let logs = LogCapture::start();
    let (module, state) = register_fake_module("close-raise", true);
    let (_reactor, pool) = fake_pool(&module, true, false, false);
    let conn = raw_fake_connection(&module);
    state.fail_close.store(true, Ordering::SeqCst);

    pool.shared().close_connection(&conn); // no panic, no error escapes

    assert_one_problem_logged(&logs, "Connection close failed");
    assert_eq!(state.count("close"), 1);
}

/// Twisted: `ConnectionPoolTests.test_runWithInteractionRaiseOriginalError`.
/// If rollback fails, `runInteraction` raises the original exception and
/// logs the error of the rollback.
#[test]
fn connection_pool_tests_test_run_with_interaction_raise_original_error() {
    let logs = LogCapture::start();
    let (module, state) = register_fake_module("rwi-rollback-raise", true);
    fail_rollback(&state);
    let (reactor, pool) = fake_pool(&module, true, false, false);
    pool.set_connection_factory(rollback_raise_factory(&module));
    pool.set_transaction_factory(Arc::new(dummy_transaction));

    let d = pool.run_interaction(|_transaction| -> Result<(), Failure> {
        Err(Failure::new(ValueError("foo".to_owned())))
    });
    assert!(!d.has_result(), "results arrive on a later reactor turn");
    let failure = fake_wait(&reactor, d).expect_err("assertFailure(d, ValueError)");
    assert_eq!(
        failure.check::<ValueError>(),
        Some(&ValueError("foo".to_owned())),
        "the original error, got {failure}"
    );
    assert_one_problem_logged(&logs, "Rollback failed");
    // DummyTransaction opened no cursor.
    assert_eq!(state.count("cursor"), 0);
}

/// The two messages a module without `apilevel`/`threadsafety` causes.
fn assert_compliance_warnings(logs: &LogCapture) {
    for msg in [
        "DB API module not DB API 2.0 compliant.",
        "DB API module not sufficiently thread-safe.",
    ] {
        assert_eq!(
            logs.count(msg),
            1,
            "{msg:?}; log:\n{}",
            render(&logs.events())
        );
    }
}

/// Twisted: `ConnectionPoolTests.test_unstartedClose`. If `close` is called
/// without `start` having been called, the pool's startup event is
/// cancelled.
#[test]
fn connection_pool_tests_test_unstarted_close() {
    let logs = LogCapture::start();
    // The test module itself as the DB-API module: no apilevel, no
    // threadsafety.
    let (module, _state) = register_fake_module("twisted.test.test_adbapi", false);
    let reactor = FakeReactor::new(false);
    let pool = ConnectionPool::new(
        &module,
        args![],
        kwargs! { "cp_reactor" => Arg::reactor(reactor.clone()) },
    )
    .expect("ConnectionPool(module, cp_reactor=reactor)");
    assert_compliance_warnings(&logs);

    // There should be a startup trigger waiting.
    let start_id = pool.start_id().expect("a pending startup trigger");
    assert_eq!(reactor.triggers(), vec![start_id.clone()]);
    assert_eq!(
        (start_id.phase(), start_id.event()),
        (Phase::After, "startup")
    );
    assert!(!pool.running());

    let closed = pool.close();
    // But not anymore.
    assert!(reactor.triggers().is_empty(), "{:?}", reactor.triggers());
    assert_eq!(pool.start_id(), None);
    fake_wait(&reactor, closed).expect("close() fires");
    // The removed trigger does not start the pool later.
    reactor.fire_startup();
    assert!(!pool.running());
    assert_eq!(pool.threadpool().workers(), 0);
}

/// Twisted: `ConnectionPoolTests.test_startedClose`. If `close` is called
/// after the pool has been started, but not by its shutdown trigger, the
/// shutdown trigger is cancelled.
#[test]
fn connection_pool_tests_test_started_close() {
    let logs = LogCapture::start();
    let (module, _state) = register_fake_module("twisted.test.test_adbapi", false);
    // EventReactor(True): the pool starts inside the constructor and its
    // thread pool really starts 3 threads, so this fake's pools use real
    // threads.
    let reactor = FakeReactor::with_pool_mode(true, PoolMode::Threads);
    let pool = ConnectionPool::new(
        &module,
        args![],
        kwargs! { "cp_reactor" => Arg::reactor(reactor.clone()) },
    )
    .expect("ConnectionPool(module, cp_reactor=reactor)");
    assert_compliance_warnings(&logs);
    assert!(pool.running());
    assert_eq!(pool.start_id(), None, "_start ran at once");
    assert_eq!(pool.threadpool().workers(), 3);

    // There should be a shutdown trigger waiting.
    let shutdown_id = pool.shutdown_id().expect("a shutdown trigger");
    assert_eq!(reactor.triggers(), vec![shutdown_id.clone()]);
    assert_eq!(
        (shutdown_id.phase(), shutdown_id.event()),
        (Phase::During, "shutdown")
    );

    let closed = pool.close();
    // But not anymore.
    assert!(reactor.triggers().is_empty(), "{:?}", reactor.triggers());
    assert_eq!(pool.shutdown_id(), None);
    assert!(!pool.running());
    fake_wait(&reactor, closed).expect("close() fires once the workers are gone");
    assert_eq!(pool.threadpool().workers(), 0);
}

// `PsycopgADBAPITests.test_pool`, against a real PostgreSQL server.
#[test]
#[cfg_attr(
    not(pg_available),
    ignore = "SKIPPED: no PostgreSQL server; set ADBAPI_PG_URL (eval \"$(scripts/pg-test-server start)\")"
)]
fn psycopg_adbapi_tests_test_pool() {
    suite::adbapi_test_pool(&integration_tests::pg::PsycopgBackend::new());
}

// `PsycopgReconnectTests.test_pool`: the session is ended by the server
// (`pg_terminate_backend`) instead of a closed client connection.
#[test]
#[cfg_attr(
    not(pg_available),
    ignore = "SKIPPED: no PostgreSQL server; set ADBAPI_PG_URL (eval \"$(scripts/pg-test-server start)\")"
)]
fn psycopg_reconnect_tests_test_pool() {
    suite::reconnect_test_pool(&integration_tests::pg::PsycopgBackend::new());
}
