//! Twisted's `ADBAPITestBase.test_pool` and `ReconnectTestBase.test_pool`
//! (`src/twisted/test/test_adbapi.py`), against any [`Backend`].
//!
//! Both run on a real [`Reactor`]: the chain starts once the reactor runs
//! and stops it at the end; a safety-net timer fails the test if it
//! hangs. Each step is a function named after Twisted's, returning the
//! Deferred Twisted's returns.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use adbapi::dbapi::{DatabaseError, DbConnection};
use adbapi::{kwargs, Arg, Connection, ConnectionLost, ConnectionPool, Transaction};
use deferred::{gather_results, Deferred, DeferredList, Failure};
use reactor::Reactor;

use crate::backend::{Backend, Flags};
use crate::harness::{ensure, run_chain, unique_name, TIMEOUT};
use crate::logs::{render, LogCapture, Logged};

/// `simple_table_schema`.
pub const SIMPLE_TABLE_SCHEMA: &str = "\nCREATE TABLE simple (\n  x integer\n)\n";

struct Ctx {
    pool: ConnectionPool,
    flags: Flags,
    openfun_called: Arc<Mutex<Vec<DbConnection>>>,
    logs: LogCapture,
    snapshot: RefCell<Vec<Logged>>,
    killed: RefCell<Option<DbConnection>>,
    killer: Box<dyn Fn(&ConnectionPool)>,
}

type Step = fn(&Rc<Ctx>) -> Deferred<()>;

fn then(d: Deferred<()>, ctx: &Rc<Ctx>, step: Step) -> Deferred<()> {
    let c = Rc::clone(ctx);
    d.add_callback_deferred(move |()| step(&c))
}

/// `d.addCallbacks(lambda res: self.fail("no exception"), lambda f: None)`.
fn expect_failure<T: 'static>(d: Deferred<T>, what: &'static str) -> Deferred<()> {
    d.add_callbacks(
        move |_| Err(Failure::msg(format!("{what}: no exception"))),
        |_| Ok(()),
    )
}

fn count_of(rows: &[adbapi::Row]) -> Result<i64, Failure> {
    let row = rows
        .first()
        .ok_or_else(|| Failure::msg("count query returned no row"))?;
    Ok(row.get::<i64>(0)?)
}

/// `tearDown`: drop the table, then close the pool (even if the drop
/// failed, so no worker outlives the test); fails if either failed.
fn tear_down(pool: &ConnectionPool) -> Deferred<()> {
    let p = pool.clone();
    pool.run_operation("DROP TABLE simple", ())
        .add_both_deferred(move |dropped| {
            p.close()
                .add_callback_result(move |()| dropped.map_err(|f| f.context("DROP TABLE")))
        })
}

fn skip(backend: &dyn Backend, why: &str) {
    tracing::warn!(prefix = backend.prefix(), "skipped: {why}");
}

// -----------------------------------------------------------------
// ADBAPITestBase
// -----------------------------------------------------------------

/// `ADBAPITestBase.test_pool` (with `extraSetUp` and `tearDown`).
///
/// # Panics
/// If any step fails, with the failure's traceback.
pub fn adbapi_test_pool(backend: &dyn Backend) {
    if !backend.can_connect() {
        skip(backend, &format!("{}: Cannot access db", backend.prefix()));
        return;
    }
    // extraSetUp
    backend.start_db();
    let logs = LogCapture::start();
    let name = unique_name(&format!("{}-adbapi", backend.prefix()));
    logs.watch_threads(&name);
    let reactor = Reactor::new().expect("a reactor");
    let openfun_called: Arc<Mutex<Vec<DbConnection>>> = Arc::default();
    let recorder = Arc::clone(&openfun_called);
    let pool = backend
        .make_pool(kwargs! {
            // openfun(conn): self.openfun_called[conn] = True
            "cp_openfun" => Arg::openfun(move |conn| {
                recorder.lock().unwrap_or_else(|p| p.into_inner()).push(conn.clone());
                Ok(())
            }),
            // Not in Twisted (which ignores cp_name): names the worker
            // threads so their log events reach this test's capture.
            "cp_name" => name.as_str(),
            "cp_reactor" => Arg::reactor(reactor.clone()),
        })
        .expect("makePool");
    pool.start().expect("dbpool.start()");

    let ctx = Rc::new(Ctx {
        pool: pool.clone(),
        flags: backend.flags(),
        openfun_called,
        logs,
        snapshot: RefCell::new(Vec::new()),
        killed: RefCell::new(None),
        killer: backend.connection_killer(),
    });
    let c = Rc::clone(&ctx);
    let result = run_chain(&reactor, TIMEOUT, move || {
        let d = c.pool.run_operation(SIMPLE_TABLE_SCHEMA, ());
        let mut d = d;
        if c.flags.test_failures {
            d = then(d, &c, test_pool_1_1);
            d = then(d, &c, test_pool_1_2);
            d = then(d, &c, test_pool_1_3);
            d = then(d, &c, test_pool_1_4);
            let c2 = Rc::clone(&c);
            d = d.add_callback(move |()| {
                c2.logs.flush_all_errors();
            });
        }
        for step in [
            test_pool_2 as Step,
            test_pool_3,
            test_pool_4,
            test_pool_5,
            test_pool_6,
            test_pool_7,
            test_pool_8,
            test_pool_9,
        ] {
            d = then(d, &c, step);
        }
        let p = c.pool.clone();
        d.add_both_deferred(move |test| {
            tear_down(&p).add_both(move |td| {
                test.map_err(|f| f.context("test_pool"))?;
                td.map_err(|f| f.context("tearDown"))
            })
        })
    });
    backend.stop_db();
    if let Err(f) = result {
        panic!(
            "{}ADBAPITests.test_pool failed: {}",
            backend.prefix(),
            f.traceback()
        );
    }
    // trial fails a test that logged errors it did not flush.
    let errors = ctx.logs.errors();
    assert!(
        errors.is_empty(),
        "unexpected logged errors:\n{}",
        render(&errors)
    );
    assert!(!pool.running(), "the pool was closed by tearDown");
}

fn check_openfun_called(ctx: &Ctx, conn: Option<&DbConnection>) -> Result<(), Failure> {
    let called = ctx.openfun_called.lock().unwrap_or_else(|p| p.into_inner());
    match conn {
        None => ensure(!called.is_empty(), "openfun was never called"),
        Some(c) => ensure(
            called.iter().any(|o| DbConnection::ptr_eq(o, c)),
            format!("openfun was not called with {c:?}"),
        ),
    }
}

fn test_pool_1_1(ctx: &Rc<Ctx>) -> Deferred<()> {
    expect_failure(
        ctx.pool.run_query("select * from NOTABLE", ()),
        "_testPool_1_1",
    )
}

fn test_pool_1_2(ctx: &Rc<Ctx>) -> Deferred<()> {
    expect_failure(
        ctx.pool.run_operation("deletexxx from NOTABLE", ()),
        "_testPool_1_2",
    )
}

fn test_pool_1_3(ctx: &Rc<Ctx>) -> Deferred<()> {
    let can_rollback = ctx.flags.can_rollback;
    expect_failure(
        ctx.pool
            .run_interaction(move |txn| bad_interaction(txn, can_rollback)),
        "_testPool_1_3",
    )
}

fn test_pool_1_4(ctx: &Rc<Ctx>) -> Deferred<()> {
    expect_failure(
        ctx.pool.run_with_connection(bad_with_connection),
        "_testPool_1_4",
    )
}

fn test_pool_2(ctx: &Rc<Ctx>) -> Deferred<()> {
    // verify simple table is empty
    let c = Rc::clone(ctx);
    ctx.pool
        .run_query("select count(1) from simple", ())
        .add_callback_result(move |rows| {
            ensure(count_of(&rows)? == 0, "Interaction not rolled back")?;
            check_openfun_called(&c, None)
        })
}

fn test_pool_3(ctx: &Rc<Ctx>) -> Deferred<()> {
    let n = ctx.flags.num_iterations;
    // add some rows to simple table (runOperation)
    let inserts: Vec<Deferred<()>> = (0..n)
        .map(|i| {
            ctx.pool
                .run_operation(&format!("insert into simple(x) values({i})"), ())
        })
        .collect();
    let pool = ctx.pool.clone();
    gather_results(inserts, false)
        // make sure they were added (runQuery)
        .add_callback_deferred(move |_| pool.run_query("select x from simple order by x", ()))
        .add_callback_result(move |rows| {
            ensure(rows.len() == n, "Wrong number of rows")?;
            for (i, row) in rows.iter().enumerate() {
                ensure(row.len() == 1, "Wrong size row")?;
                ensure(row.get::<usize>(0)? == i, "Values not returned.")?;
            }
            Ok(())
        })
}

fn test_pool_4(ctx: &Rc<Ctx>) -> Deferred<()> {
    // runInteraction
    let n = ctx.flags.num_iterations;
    ctx.pool
        .run_interaction(move |txn| interaction(txn, n))
        .add_callback_result(|res| ensure(res == "done", format!("{res:?} != \"done\"")))
}

fn test_pool_5(ctx: &Rc<Ctx>) -> Deferred<()> {
    // withConnection
    let n = ctx.flags.num_iterations;
    ctx.pool
        .run_with_connection(move |conn| with_connection(conn, n))
        .add_callback_result(|res| ensure(res == "done", format!("{res:?} != \"done\"")))
}

fn test_pool_6(ctx: &Rc<Ctx>) -> Deferred<()> {
    // Test a withConnection cannot be closed
    ctx.pool.run_with_connection(close_with_connection)
}

fn test_pool_7(ctx: &Rc<Ctx>) -> Deferred<()> {
    // give the pool a workout
    let n = ctx.flags.num_iterations;
    let ds: Vec<Deferred<Vec<adbapi::Row>>> = (0..n)
        .map(|i| {
            ctx.pool
                .run_query(&format!("select x from simple where x = {i}"), ())
        })
        .collect();
    DeferredList::new(ds)
        .fire_on_one_errback(true)
        .build()
        .add_callback_result(move |result| {
            ensure(result.len() == n, "DeferredList lost results")?;
            for (i, r) in result.into_iter().enumerate() {
                let rows = r?;
                let row = rows
                    .first()
                    .ok_or_else(|| Failure::msg("Value not returned"))?;
                ensure(row.get::<usize>(0)? == i, "Value not returned")?;
            }
            Ok(())
        })
}

fn test_pool_8(ctx: &Rc<Ctx>) -> Deferred<()> {
    // now delete everything
    let n = ctx.flags.num_iterations;
    let ds: Vec<Deferred<()>> = (0..n)
        .map(|i| {
            ctx.pool
                .run_operation(&format!("delete from simple where x = {i}"), ())
        })
        .collect();
    DeferredList::new(ds)
        .fire_on_one_errback(true)
        .build()
        .add_callback_result(|results| {
            for r in results {
                r?;
            }
            Ok(())
        })
}

fn test_pool_9(ctx: &Rc<Ctx>) -> Deferred<()> {
    // verify simple table is empty
    let c = Rc::clone(ctx);
    ctx.pool
        .run_query("select count(1) from simple", ())
        .add_callback_result(move |rows| {
            ensure(
                count_of(&rows)? == 0,
                "Didn't successfully delete table contents",
            )?;
            check_connect(&c)
        })
}

/// Check the connect/disconnect synchronous calls.
fn check_connect(ctx: &Ctx) -> Result<(), Failure> {
    let conn = ctx.pool.connect()?;
    check_openfun_called(ctx, Some(&conn))?;
    let mut curs = conn.cursor()?;
    curs.execute("insert into simple(x) values(1)", ())?;
    curs.execute("select x from simple", ())?;
    let res = curs.fetchall()?;
    ensure(res.len() == 1, format!("{} rows, expected 1", res.len()))?;
    ensure(res[0].len() == 1, "row of 1 column expected")?;
    ensure(res[0].get::<i64>(0)? == 1, "value 1 expected")?;
    curs.execute("delete from simple", ())?;
    curs.execute("select x from simple", ())?;
    ensure(curs.fetchall()?.is_empty(), "rows left after delete")?;
    curs.close();
    ctx.pool.disconnect(Some(&conn))?;
    Ok(())
}

fn interaction(txn: &mut Transaction<'_>, n: usize) -> Result<&'static str, Failure> {
    txn.execute("select x from simple order by x", ())?;
    for i in 0..n {
        let row = txn
            .fetchone()?
            .ok_or_else(|| Failure::msg("Value not returned."))?;
        ensure(row.len() == 1, "Wrong size row")?;
        ensure(row.get::<usize>(0)? == i, "Value not returned.")?;
    }
    ensure(txn.fetchone()?.is_none(), "Too many rows")?;
    Ok("done")
}

fn bad_interaction(txn: &mut Transaction<'_>, can_rollback: bool) -> Result<(), Failure> {
    if can_rollback {
        txn.execute("insert into simple(x) values(0)", ())?;
    }
    txn.execute("select * from NOTABLE", ())?;
    Ok(())
}

fn with_connection(conn: &mut Connection, n: usize) -> Result<&'static str, Failure> {
    let mut curs = conn.cursor()?;
    let body = (|| {
        curs.execute("select x from simple order by x", ())?;
        for i in 0..n {
            let row = curs
                .fetchone()?
                .ok_or_else(|| Failure::msg("Value not returned."))?;
            ensure(row.len() == 1, "Wrong size row")?;
            ensure(row.get::<usize>(0)? == i, "Value not returned.")?;
        }
        Ok(())
    })();
    // finally:
    curs.close();
    body.map(|()| "done")
}

fn close_with_connection(conn: &mut Connection) -> Result<(), Failure> {
    conn.close();
    Ok(())
}

fn bad_with_connection(conn: &mut Connection) -> Result<(), Failure> {
    let mut curs = conn.cursor()?;
    let r = curs.execute("select * from NOTABLE", ()).map(|_| ());
    // finally:
    curs.close();
    Ok(r?)
}

// -----------------------------------------------------------------
// ReconnectTestBase
// -----------------------------------------------------------------

/// `ReconnectTestBase.test_pool` (with `extraSetUp` and `tearDown`).
///
/// Beyond Twisted, the pool is also `cp_noisy` and the test checks the
/// log: with `early_reconnect`, `Cursor creation failed` is logged
/// exactly once (it is what `_testPool_5` flushes), followed by
/// `Connection lost, reconnecting`, `adbapi closing: <module>` and
/// `adbapi connecting: <module>`, and the reconnected pool holds a new
/// raw connection.
///
/// # Panics
/// If any step fails, with the failure's traceback.
pub fn reconnect_test_pool(backend: &dyn Backend) {
    if !backend.can_connect() {
        skip(backend, &format!("{}: Cannot access db", backend.prefix()));
        return;
    }
    let flags = backend.flags();
    let Some(good_sql) = flags.good_sql.clone() else {
        skip(backend, "no good sql for reconnect test");
        return;
    };
    // extraSetUp
    backend.start_db();
    let logs = LogCapture::start();
    let name = unique_name(&format!("{}-reconnect", backend.prefix()));
    logs.watch_threads(&name);
    let reactor = Reactor::new().expect("a reactor");
    let pool = backend
        .make_pool(kwargs! {
            "cp_max" => 1,
            "cp_reconnect" => true,
            "cp_good_sql" => good_sql.as_str(),
            // Not in Twisted: informational logs to check, and thread
            // names for the capture.
            "cp_noisy" => true,
            "cp_name" => name.as_str(),
            "cp_reactor" => Arg::reactor(reactor.clone()),
        })
        .expect("makePool");
    pool.start().expect("dbpool.start()");

    let ctx = Rc::new(Ctx {
        pool: pool.clone(),
        flags: flags.clone(),
        openfun_called: Arc::default(),
        logs,
        snapshot: RefCell::new(Vec::new()),
        killed: RefCell::new(None),
        killer: backend.connection_killer(),
    });
    let c = Rc::clone(&ctx);
    let result = run_chain(&reactor, TIMEOUT, move || {
        // extraSetUp returns runOperation(simple_table_schema)
        let mut d = c.pool.run_operation(SIMPLE_TABLE_SCHEMA, ());
        d = then(d, &c, reconnect_pool_1);
        d = then(d, &c, reconnect_pool_2);
        if !c.flags.early_reconnect {
            d = then(d, &c, reconnect_pool_3);
        }
        d = then(d, &c, reconnect_pool_4);
        d = then(d, &c, reconnect_pool_5);
        let p = c.pool.clone();
        d.add_both_deferred(move |test| {
            tear_down(&p).add_both(move |td| {
                test.map_err(|f| f.context("test_pool"))?;
                td.map_err(|f| f.context("tearDown"))
            })
        })
    });
    backend.stop_db();
    if let Err(f) = result {
        panic!(
            "{}ReconnectTests.test_pool failed: {}\nlog:\n{}",
            backend.prefix(),
            f.traceback(),
            render(&ctx.logs.events())
        );
    }
    let errors = ctx.logs.errors();
    assert!(
        errors.is_empty(),
        "unexpected logged errors after _testPool_5's flush:\n{}",
        render(&errors)
    );
    if flags.early_reconnect {
        check_reconnect_log(&ctx.snapshot.borrow(), backend.module());
    }
}

/// The log up to `_testPool_5`: one `Cursor creation failed`, then the
/// noisy reconnect messages in Twisted's order.
fn check_reconnect_log(events: &[Logged], module: &str) {
    let failed: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.message == "Cursor creation failed")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        failed.len(),
        1,
        "`Cursor creation failed` logged once; log:\n{}",
        render(events)
    );
    let at = failed[0];
    assert!(
        events[at].is_error(),
        "`Cursor creation failed` is an error"
    );
    assert!(
        events[at].failure().is_some(),
        "`Cursor creation failed` carries the failure"
    );
    let closing = format!("adbapi closing: {module}");
    let connecting = format!("adbapi connecting: {module}");
    let after: Vec<&str> = events[at + 1..]
        .iter()
        .map(|e| e.message.as_str())
        .filter(|m| m.starts_with("adbapi ") || m.starts_with("Connection lost"))
        .take(3)
        .collect();
    assert_eq!(
        after,
        [
            "Connection lost, reconnecting",
            closing.as_str(),
            connecting.as_str()
        ],
        "log:\n{}",
        render(events)
    );
}

fn reconnect_pool_1(ctx: &Rc<Ctx>) -> Deferred<()> {
    ctx.pool
        .run_query("select count(1) from simple", ())
        .add_callback_result(|rows| ensure(count_of(&rows)? == 0, "Table not empty"))
}

fn reconnect_pool_2(ctx: &Rc<Ctx>) -> Deferred<()> {
    // reach in and close the connection manually
    let conns = ctx.pool.connections();
    if conns.len() != 1 {
        return deferred::fail(Failure::msg(format!(
            "cp_max=1: expected one connection, found {}",
            conns.len()
        )));
    }
    *ctx.killed.borrow_mut() = Some(conns[0].1.clone());
    (ctx.killer)(&ctx.pool);
    deferred::succeed(())
}

fn reconnect_pool_3(ctx: &Rc<Ctx>) -> Deferred<()> {
    expect_failure(
        ctx.pool.run_query("select count(1) from simple", ()),
        "_testPool_3",
    )
}

fn reconnect_pool_4(ctx: &Rc<Ctx>) -> Deferred<()> {
    let c = Rc::clone(ctx);
    ctx.pool
        .run_query("select count(1) from simple", ())
        .add_callback_result(move |rows| {
            ensure(count_of(&rows)? == 0, "Table not empty")?;
            // Beyond Twisted: the pool holds a new, open raw connection.
            let conns = c.pool.connections();
            ensure(conns.len() == 1, "one connection after reconnecting")?;
            let killed = c.killed.borrow().clone();
            ensure(
                killed.is_some_and(|k| !DbConnection::ptr_eq(&k, &conns[0].1)),
                "the dead connection was replaced",
            )?;
            ensure(!conns[0].1.is_closed(), "the new connection is open")
        })
}

fn reconnect_pool_5(ctx: &Rc<Ctx>) -> Deferred<()> {
    *ctx.snapshot.borrow_mut() = ctx.logs.events();
    ctx.logs.flush_all_errors();
    // bad sql
    ctx.pool
        .run_query("select * from NOTABLE", ())
        .add_callbacks(
            |_| Err(Failure::msg("_testPool_5: no exception")),
            |f| {
                ensure(
                    f.check::<ConnectionLost>().is_none(),
                    format!("an SQL error became ConnectionLost: {f}"),
                )?;
                // Beyond Twisted: it is the driver's error.
                ensure(
                    f.check::<DatabaseError>().is_some(),
                    format!("expected a DatabaseError, got {f}"),
                )
            },
        )
}
