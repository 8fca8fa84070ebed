//! PostgreSQL: `run_query` and `run_operation` of one plain statement run as
//! the server's implicit single-statement transaction, in one round trip
//! (issue 14), and that is observably the same as `BEGIN`, the statement,
//! `COMMIT`: a failing statement leaves nothing behind, `FOR UPDATE` locks
//! last only for the statement, `INSERT ... RETURNING` commits, statement
//! timeouts, cancels and killed backends behave as before. Round trips are
//! counted by a proxy on 127.0.0.1 that reads the client's protocol
//! messages: every simple `Query` and every `Sync` waits for one
//! `ReadyForQuery`.
//!
//! They need `ADBAPI_PG_URL` (see `scripts/pg-test-server`); without it they
//! are reported as ignored with a `SKIPPED` reason.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use adbapi::dbapi::{DbError, IntegrityError};
use adbapi::{kwargs, ConnectionLost, ConnectionPool, Row, Value};
use deferred::{CancelledError, Deferred, Failure};
use reactor::prelude::*;
use reactor::Reactor;

use integration_tests::harness::{run_async, unique_name};
use integration_tests::pg::{direct, exec, pool_on, sharing_server, url};
use integration_tests::pg_test;

const BOUND: Duration = Duration::from_secs(120);

/// What a client sent through the [`Proxy`]: each message's type byte, and
/// the SQL of simple `Query` messages; and the cancel requests that came
/// through it.
#[derive(Default)]
struct Sent {
    messages: Vec<(u8, Option<String>)>,
    cancel_requests: usize,
    /// Cancel requests are counted and dropped instead of forwarded: to the
    /// server they are as a request that reached the backend after its
    /// statement ended.
    swallow_cancels: bool,
}

/// A TCP proxy in front of the test server that records the client's
/// messages. Its threads end when both sides of a session close and, for
/// the acceptor, when the proxy is dropped.
struct Proxy {
    port: u16,
    sent: Arc<Mutex<Sent>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

/// The test server's port, from `ADBAPI_PG_URL` as the script writes it
/// (`postgresql://user:pw@127.0.0.1:PORT/db`).
fn server_port() -> u16 {
    let u = url();
    let after_at = u.rsplit_once('@').map_or(u.as_str(), |(_, r)| r);
    let host_port = after_at.split('/').next().unwrap_or_default();
    host_port
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in ADBAPI_PG_URL {u}"))
}

fn read_exact_or_eof(s: &mut TcpStream, buf: &mut [u8]) -> bool {
    s.read_exact(buf).is_ok()
}

/// Copies the client's bytes to the server, recording each message.
fn pump_client(mut from: TcpStream, mut to: TcpStream, sent: Arc<Mutex<Sent>>) {
    // Untyped packets first: SSL/GSS requests, then the startup packet.
    loop {
        let mut len = [0u8; 4];
        if !read_exact_or_eof(&mut from, &mut len) {
            return;
        }
        let n = u32::from_be_bytes(len) as usize;
        let mut body = vec![0u8; n.saturating_sub(4)];
        if !read_exact_or_eof(&mut from, &mut body) {
            return;
        }
        let code = body
            .get(..4)
            .map(|c| u32::from_be_bytes(c.try_into().unwrap()));
        if code == Some(80_877_102) {
            // A CancelRequest, alone on its connection.
            let mut s = sent.lock().unwrap();
            s.cancel_requests += 1;
            if s.swallow_cancels {
                return;
            }
        }
        if to.write_all(&len).is_err() || to.write_all(&body).is_err() {
            return;
        }
        if !matches!(code, Some(80_877_103 | 80_877_104)) {
            break;
        }
    }
    loop {
        let mut head = [0u8; 5];
        if !read_exact_or_eof(&mut from, &mut head) {
            break;
        }
        let n = u32::from_be_bytes(head[1..].try_into().unwrap()) as usize;
        let mut body = vec![0u8; n.saturating_sub(4)];
        if !read_exact_or_eof(&mut from, &mut body) {
            break;
        }
        let text = (head[0] == b'Q').then(|| {
            String::from_utf8_lossy(body.strip_suffix(&[0]).unwrap_or(&body)).into_owned()
        });
        sent.lock().unwrap().messages.push((head[0], text));
        if to.write_all(&head).is_err() || to.write_all(&body).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

fn pump_server(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Both);
}

impl Proxy {
    fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().unwrap().port();
        let sent = Arc::new(Mutex::new(Sent::default()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s, st) = (Arc::clone(&sent), Arc::clone(&stop));
        let target = server_port();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if st.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let rec = Arc::clone(&s);
                std::thread::spawn(move || pump_client(client, server, rec));
                std::thread::spawn(move || pump_server(s2, c2));
            }
        });
        Proxy { port, sent, stop }
    }

    /// From now on cancel requests are counted and not forwarded.
    fn swallow_cancels(&self) {
        self.sent.lock().unwrap().swallow_cancels = true;
    }

    /// The cancel requests that came through so far.
    fn cancel_requests(&self) -> usize {
        self.sent.lock().unwrap().cancel_requests
    }

    /// The server's URL with this proxy's port.
    fn url(&self) -> String {
        let through = url().replace(&format!(":{}/", server_port()), &format!(":{}/", self.port));
        assert_ne!(through, url());
        through
    }

    /// Forgets what was sent so far.
    fn reset(&self) {
        self.sent.lock().unwrap().messages.clear();
    }

    /// Round trips since the last reset: simple queries plus Syncs.
    fn round_trips(&self) -> usize {
        self.sent
            .lock()
            .unwrap()
            .messages
            .iter()
            .filter(|(t, _)| matches!(t, b'Q' | b'S'))
            .count()
    }

    /// The simple queries sent since the last reset (BEGIN, COMMIT...).
    fn simple_queries(&self) -> Vec<String> {
        self.sent
            .lock()
            .unwrap()
            .messages
            .iter()
            .filter_map(|(_, q)| q.clone())
            .collect()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wakes the acceptor so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn table(c: &adbapi::dbapi::DbConnection, prefix: &str) -> String {
    let t = unique_name(prefix).replace('-', "_").to_lowercase();
    exec(
        c,
        &format!("CREATE TABLE {t} (k int8 PRIMARY KEY, x int8)"),
        (),
    );
    t
}

fn keys(c: &adbapi::dbapi::DbConnection, t: &str) -> Vec<i64> {
    exec(c, &format!("SELECT k FROM {t} ORDER BY k"), ())
        .iter()
        .map(|r| r.get::<i64>(0).unwrap())
        .collect()
}

fn first_int(rows: &[Row]) -> i64 {
    rows[0].get::<i64>(0).unwrap()
}

pg_test! {
    fn a_single_statement_is_one_round_trip_without_begin_or_commit() {
        let _server = sharing_server();
        let c = direct();
        let t = table(&c, "alone_rt");
        let proxy = Proxy::start();
        let reactor = Reactor::new().unwrap();
        // The URL with the proxy's port.
        let through_proxy = url().replace(
            &format!(":{}/", server_port()),
            &format!(":{}/", proxy.port),
        );
        assert_ne!(through_proxy, url());
        let pool = ConnectionPool::new(
            "psycopg2",
            vec![through_proxy.into()],
            kwargs! { "cp_min" => 1, "cp_max" => 1, "cp_reactor" => adbapi::Arg::reactor(reactor.clone()) },
        )
        .unwrap();
        let (select, insert) = (
            format!("SELECT x FROM {t} WHERE k = %s"),
            format!("INSERT INTO {t} (k, x) VALUES (%s, %s)"),
        );
        let lock = format!("LOCK TABLE {t} IN SHARE MODE");
        let several = format!("SELECT 1; SELECT count(*) FROM {t}");
        let (p, px) = (pool.clone(), Arc::new(proxy));
        let px2 = Arc::clone(&px);
        let counts = run_async(&reactor, BOUND, move || async move {
            // Warm up: each statement is prepared once per connection.
            p.run_operation(&insert, (1, 10)).await?;
            p.run_query(&select, (1,)).await?;
            let mut out = Vec::new();
            px2.reset();
            let rows = p.run_query(&select, (1,)).await?;
            out.push(("run_query", px2.round_trips(), px2.simple_queries(), first_int(&rows)));
            px2.reset();
            p.run_operation(&insert, (2, 20)).await?;
            out.push(("run_operation", px2.round_trips(), px2.simple_queries(), 0));
            // A named job takes the same path.
            px2.reset();
            let rows = p.named("get_x").run_query(&select, (1,)).await?;
            out.push(("named run_query", px2.round_trips(), px2.simple_queries(), first_int(&rows)));
            // Not alone: an interaction, LOCK (needs a transaction block),
            // several statements in one query.
            px2.reset();
            let s = select.clone();
            let rows = p.run_interaction(move |txn| Ok(txn.execute(&s, (2,))?.fetchall()?)).await?;
            out.push(("run_interaction", px2.round_trips(), px2.simple_queries(), first_int(&rows)));
            px2.reset();
            p.run_operation(&lock, ()).await?;
            out.push(("LOCK", px2.round_trips(), px2.simple_queries(), 0));
            px2.reset();
            let rows = p.run_query(&several, ()).await?;
            out.push(("several", px2.round_trips(), px2.simple_queries(), rows.len() as i64));
            Ok::<_, Failure>(out)
        })
        .unwrap();
        let _ = pool.close();
        let none: Vec<String> = Vec::new();
        assert_eq!(counts[0], ("run_query", 1, none.clone(), 10), "{counts:?}");
        assert_eq!(counts[1], ("run_operation", 1, none.clone(), 0), "{counts:?}");
        assert_eq!(counts[2], ("named run_query", 1, none, 10), "{counts:?}");
        for (what, _, queries, _) in &counts[3..] {
            assert_eq!(queries.first().map(String::as_str), Some("BEGIN"), "{what}: {counts:?}");
            assert_eq!(queries.last().map(String::as_str), Some("COMMIT"), "{what}: {counts:?}");
        }
        assert_eq!(counts[3].3, 20);
        assert_eq!(keys(&c, &t), vec![1, 2], "both inserts committed");
        exec(&c, &format!("DROP TABLE {t}"), ());
    }
}

pg_test! {
    fn a_failing_statement_leaves_nothing_and_the_connection_usable() {
        let _server = sharing_server();
        let c = direct();
        let t = table(&c, "alone_fail");
        let reactor = Reactor::new().unwrap();
        let pool = pool_on(&reactor, kwargs! { "cp_min" => 1, "cp_max" => 1 });
        let p = pool.clone();
        let (dup, div, count, insert) = (
            // Rows 1 and 2 go in before the duplicate 2 fails.
            format!("INSERT INTO {t} (k) SELECT g FROM generate_series(1, 3) g UNION ALL SELECT 2"),
            format!("UPDATE {t} SET x = 1 / (k - 2)"),
            format!("SELECT count(*) FROM {t}"),
            format!("INSERT INTO {t} (k, x) VALUES (%s, %s) RETURNING k, x"),
        );
        let (dup_err, returned, div_err, after) = run_async(&reactor, BOUND, move || async move {
            let dup_err = p.run_operation(&dup, ()).await.expect_err("duplicate key");
            // INSERT ... RETURNING fires with its rows and commits.
            let returned = p.run_query(&insert, (1, 5)).await?;
            p.run_query(&insert, (2, 6)).await?;
            p.run_query(&insert, (3, 7)).await?;
            // The update writes row 1 before it divides by zero at row 2.
            let div_err = p.run_operation(&div, ()).await.expect_err("division by zero");
            let after = p.run_query(&count, ()).await?;
            Ok::<_, Failure>((dup_err, returned, div_err, first_int(&after)))
        })
        .unwrap();
        let _ = pool.close();
        assert!(dup_err.check::<IntegrityError>().is_some(), "{dup_err}");
        assert_eq!(returned[0].values(), &[Value::Int(1), Value::Int(5)]);
        assert_eq!(div_err.check::<DbError>().and_then(|e| e.code()), Some("22012"), "{div_err}");
        // Nothing of the duplicate insert, and the three rows as inserted:
        // the update's write to row 1 was rolled back with it.
        assert_eq!(after, 3);
        let rows = exec(&c, &format!("SELECT k, x FROM {t} ORDER BY k"), ());
        let got: Vec<(i64, i64)> = rows.iter().map(|r| (r.get(0).unwrap(), r.get(1).unwrap())).collect();
        assert_eq!(got, vec![(1, 5), (2, 6), (3, 7)]);
        exec(&c, &format!("DROP TABLE {t}"), ());
    }
}

pg_test! {
    fn select_for_update_holds_its_locks_only_for_the_statement() {
        let _server = sharing_server();
        let c = direct();
        let t = table(&c, "alone_lock");
        exec(&c, &format!("INSERT INTO {t} (k, x) VALUES (1, 1), (2, 2)"), ());
        let reactor = Reactor::new().unwrap();
        let pool = pool_on(
            &reactor,
            kwargs! { "cp_min" => 1, "cp_max" => 1, "application_name" => "adbapi-alone-lock" },
        );
        let p = pool.clone();
        let sql = format!("SELECT k FROM {t} ORDER BY k FOR UPDATE");
        let c2 = c.clone();
        // Inspected on the loop while the pool is open (the reactor's stop
        // closes it).
        let (rows, held, state) = run_async(&reactor, BOUND, move || async move {
            let rows = p.run_query(&sql, ()).await?;
            let c = c2;
        // The pool's session holds no lock and no transaction once the
        // Deferred fired: another session takes the rows without waiting.
        let held = exec(
            &c,
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE a.application_name = %s AND l.locktype IN ('relation', 'tuple', 'transactionid')",
            ("adbapi-alone-lock",),
        );
        let state = exec(
            &c,
            "SELECT state FROM pg_stat_activity WHERE application_name = %s",
            ("adbapi-alone-lock",),
        );
            Ok::<_, Failure>((rows, held, state))
        })
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(first_int(&held), 0, "locks held after the statement");
        assert_eq!(state[0][0], Value::from("idle"), "not idle in transaction");
        let mut cur = c.cursor().unwrap();
        cur.execute(&format!("SELECT k FROM {t} FOR UPDATE NOWAIT"), ())
            .expect("the rows are free: NOWAIT does not fail");
        assert_eq!(cur.fetchall().unwrap().len(), 2);
        c.rollback().unwrap();
        let _ = pool.close();
        exec(&c, &format!("DROP TABLE {t}"), ());
    }
}

pg_test! {
    fn a_statement_timeout_still_stops_a_statement_alone() {
        let _server = sharing_server();
        let reactor = Reactor::new().unwrap();
        let pool = pool_on(
            &reactor,
            kwargs! { "cp_min" => 1, "cp_max" => 1, "cp_statement_timeout" => 0.3 },
        );
        let p = pool.clone();
        let (err, next) = run_async(&reactor, BOUND, move || async move {
            let err = p.run_query("SELECT pg_sleep(60)", ()).await.expect_err("timed out");
            let next = p.run_query("SELECT 5", ()).await?;
            Ok::<_, Failure>((err, first_int(&next)))
        })
        .unwrap();
        let _ = pool.close();
        let e = err.check::<DbError>().expect("a database error");
        assert!(e.is_statement_timeout(), "{err}");
        assert_eq!(next, 5, "the connection goes on");
    }
}

/// Polls (bounded, on the loop) until the pool's session named `app` runs a
/// statement containing `needle`, then fires.
fn when_running(r: &Reactor, app: &'static str, needle: &'static str) -> Deferred<()> {
    let (d, resolver) = Deferred::<()>::new();
    fn poll(
        r: Reactor,
        app: &'static str,
        needle: &'static str,
        resolver: deferred::Resolver<()>,
        left: u32,
    ) {
        let active = exec(
            &direct(),
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND state = 'active' \
             AND query LIKE %s",
            (app, format!("%{needle}%")),
        );
        if first_int(&active) > 0 || left == 0 {
            let _ = resolver.callback(());
            return;
        }
        let r2 = r.clone();
        r.call_later(Duration::from_millis(10), move || {
            poll(r2, app, needle, resolver, left - 1)
        });
    }
    poll(r.clone(), app, needle, resolver, 5000);
    d
}

pg_test! {
    fn cancelling_a_write_alone_commits_nothing_and_hits_only_that_job() {
        let _server = sharing_server();
        let c = direct();
        let t = table(&c, "alone_cancel");
        let reactor = Reactor::new().unwrap();
        let pool = pool_on(
            &reactor,
            kwargs! { "cp_min" => 1, "cp_max" => 1, "application_name" => "adbapi-alone-cancel" },
        );
        let (p, r) = (pool.clone(), reactor.clone());
        let slow = format!("INSERT INTO {t} (k) SELECT 1 FROM pg_sleep(60)");
        let insert = format!("INSERT INTO {t} (k) VALUES (2)");
        let (cancelled, next) = run_async(&reactor, BOUND, move || async move {
            let d = p.run_operation(&slow, ());
            let d = std::rc::Rc::new(std::cell::RefCell::new(Some(d)));
            when_running(&r, "adbapi-alone-cancel", "pg_sleep").await?;
            let d = d.borrow_mut().take().unwrap();
            d.cancel();
            let res = d.await;
            let cancelled = matches!(&res, Err(f) if f.check::<CancelledError>().is_some());
            p.run_operation(&insert, ()).await?;
            let next = p.run_query("SELECT 9", ()).await?;
            Ok::<_, Failure>((cancelled, first_int(&next)))
        })
        .unwrap();
        let _ = pool.close();
        assert!(cancelled, "the cancelled statement reports CancelledError");
        assert_eq!(next, 9);
        assert_eq!(keys(&c, &t), vec![2], "nothing of the cancelled insert; the next job's row");
        exec(&c, &format!("DROP TABLE {t}"), ());
    }
}

pg_test! {
    fn a_killed_backend_is_replaced_with_cp_reconnect() {
        let _server = sharing_server();
        let c = direct();
        let t = table(&c, "alone_kill");
        let reactor = Reactor::new().unwrap();
        let pool = pool_on(
            &reactor,
            kwargs! { "cp_min" => 1, "cp_max" => 1, "cp_reconnect" => true,
                      "application_name" => "adbapi-alone-kill" },
        );
        let p = pool.clone();
        let insert = format!("INSERT INTO {t} (k) VALUES (%s)");
        let (lost, next) = run_async(&reactor, BOUND, move || async move {
            p.run_operation(&insert, (1,)).await?;
            let killed = exec(
                &direct(),
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                ("adbapi-alone-kill",),
            );
            assert_eq!(killed.len(), 1);
            // The backend may still be exiting; its session is gone either
            // way once the next statement is sent.
            let lost = p.run_operation(&insert, (2,)).await.expect_err("the session was killed");
            p.run_operation(&insert, (3,)).await?;
            let next = p.run_query("SELECT 3", ()).await?;
            Ok::<_, Failure>((lost, first_int(&next)))
        })
        .unwrap();
        let _ = pool.close();
        assert!(lost.check::<ConnectionLost>().is_some(), "{lost}");
        assert_eq!(next, 3);
        assert_eq!(keys(&c, &t), vec![1, 3], "the statement sent to the dead session did not run");
        exec(&c, &format!("DROP TABLE {t}"), ());
    }
}

pg_test! {
    fn a_session_left_in_a_transaction_keeps_begin_and_commit() {
        // A connection put in autocommit mode where SQL opened a block:
        // once back out of autocommit, the driver no longer knows the
        // session is idle and keeps BEGIN/COMMIT, which commits the block,
        // until its own COMMIT succeeded.
        let _server = sharing_server();
        let c = direct();
        let t = table(&c, "alone_block");
        let reactor = Reactor::new().unwrap();
        let pool = pool_on(&reactor, kwargs! { "cp_min" => 1, "cp_max" => 1 });
        let p = pool.clone();
        let insert = format!("INSERT INTO {t} (k) VALUES (%s)");
        run_async(&reactor, BOUND, move || async move {
            let ins = insert.clone();
            p.run_with_connection(move |conn| {
                let raw = conn.raw().clone();
                raw.set_autocommit(true)?;
                raw.execute("BEGIN", ())?;
                raw.execute(&ins, (1,))?;
                raw.set_autocommit(false)?;
                Ok(())
            })
            .await?;
            p.run_operation(&insert, (2,)).await?;
            Ok::<_, Failure>(())
        })
        .unwrap();
        let _ = pool.close();
        assert_eq!(keys(&c, &t), vec![1, 2], "both committed");
        exec(&c, &format!("DROP TABLE {t}"), ());
    }
}

#[test]
fn pools_other_than_postgres_are_unchanged() {
    // SQLite keeps its path: run_query still commits through the pool.
    let reactor = Reactor::new().unwrap();
    let pool = ConnectionPool::new(
        "sqlite3",
        vec![":memory:".into()],
        kwargs! { "cp_min" => 1, "cp_max" => 1, "cp_reactor" => adbapi::Arg::reactor(reactor.clone()) },
    )
    .unwrap();
    let p = pool.clone();
    let n = run_async(&reactor, BOUND, move || async move {
        p.run_operation("CREATE TABLE t (x INTEGER)", ()).await?;
        p.run_operation("INSERT INTO t VALUES (1)", ()).await?;
        let rows = p.run_query("SELECT count(*) FROM t", ()).await?;
        Ok::<_, Failure>(first_int(&rows))
    })
    .unwrap();
    let _ = pool.close();
    assert_eq!(n, 1);
}

pg_test! {
    fn a_result_that_cannot_decode_after_a_client_encoding_change_commits_nothing() {
        // A session whose client_encoding was changed (here by a job; a
        // cp_openfun does the same) gets text in that encoding, which does not
        // decode as UTF-8. Between BEGIN and COMMIT the decoding error rolls
        // the insert back; run as its own transaction the insert would already
        // be committed when the error is reported.
        let _server = sharing_server();
        let c = direct();
        let t = unique_name("alone_enc").replace('-', "_").to_lowercase();
        exec(&c, &format!("CREATE TABLE {t} (k int8 PRIMARY KEY, v text)"), ());
        let reactor = Reactor::new().unwrap();
        let pool = pool_on(&reactor, kwargs! { "cp_min" => 1, "cp_max" => 1 });
        let p = pool.clone();
        // chr(233) is 'é': LATIN1 sends it as the single byte 0xE9.
        let insert = format!("INSERT INTO {t} (k, v) VALUES (1, chr(233)) RETURNING v");
        let res = run_async(&reactor, BOUND, move || async move {
            p.run_operation("SET client_encoding TO 'LATIN1'", ()).await?;
            Ok::<_, Failure>(p.run_query(&insert, ()).await.map(|rows| rows.len()))
        })
        .unwrap();
        let _ = pool.close();
        let committed = keys(&c, &t);
        exec(&c, &format!("DROP TABLE {t}"), ());
        match res {
            Err(f) => assert!(
                committed.is_empty(),
                "the job failed ({f}) but its insert committed: {committed:?}"
            ),
            Ok(n) => assert_eq!((n, committed), (1, vec![1])),
        }
    }
}

pg_test! {
    fn tricky_statements_leave_the_session_idle_and_their_work_committed() {
        // Whatever the lexer makes of comments, literals and dollar quotes,
        // and whatever a whitelisted statement does to the transaction
        // (transaction-scoped locks and settings, SELECT INTO, a writing CTE),
        // each job leaves the session idle with its work committed, as
        // BEGIN/COMMIT would.
        let _server = sharing_server();
        let c = direct();
        let t = table(&c, "alone_tricky");
        let made = format!("{t}_into");
        let reactor = Reactor::new().unwrap();
        let pool = pool_on(
            &reactor,
            kwargs! { "cp_min" => 1, "cp_max" => 1, "application_name" => "adbapi-alone-tricky" },
        );
        let p = pool.clone();
        let big = format!("SELECT {} 1", "/* padding */ ".repeat(8_000));
        let jobs: Vec<String> = vec![
            "/* /* */ SELECT 1 */ BEGIN".into(),
            "-- SELECT 1\nBEGIN".into(),
            "/* a */ -- b\n SELECT 1".into(),
            "SELECT E'\\'; BEGIN; --'".into(),
            "SELECT $$;BEGIN$$".into(),
            "SELECT $t$;BEGIN$t$ ;  \n\t".into(),
            "SELECT pg_advisory_xact_lock(4242)".into(),
            "SELECT set_config('adbapi.probe', 'local', true)".into(),
            "SELECT txid_current()".into(),
            format!("WITH n AS (SELECT 1 AS k) INSERT INTO {t} (k, x) SELECT k, 1 FROM n"),
            format!("SELECT 2 AS k INTO {made}"),
            big,
        ];
        let app = "adbapi-alone-tricky";
        let c2 = c.clone();
        let states = run_async(&reactor, BOUND, move || async move {
            let mut out = Vec::new();
            for sql in jobs {
                let r = p.run_query(&sql, ()).await;
                let state = exec(
                    &c2,
                    "SELECT state, backend_xid IS NULL FROM pg_stat_activity WHERE application_name = %s",
                    (app,),
                );
                let locks = exec(
                    &c2,
                    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                     WHERE a.application_name = %s AND l.locktype = 'advisory'",
                    (app,),
                );
                out.push((sql.chars().take(60).collect::<String>(), r.is_ok(), state[0][0].clone(), first_int(&locks)));
            }
            let setting = p
                .run_query("SELECT coalesce(current_setting('adbapi.probe', true), '')", ())
                .await?;
            Ok::<_, Failure>((out, setting[0][0].clone()))
        })
        .unwrap();
        let _ = pool.close();
        let (out, setting) = states;
        for (sql, _ok, state, locks) in &out {
            assert_eq!(state, &Value::from("idle"), "{sql}: {out:?}");
            assert_eq!(*locks, 0, "{sql}: {out:?}");
        }
        assert!(out.iter().all(|(_, ok, _, _)| *ok), "{out:?}");
        assert_eq!(setting, Value::from(""), "a transaction-local setting did not outlive its job");
        assert_eq!(keys(&c, &t), vec![1], "the CTE's insert committed");
        assert_eq!(first_int(&exec(&c, &format!("SELECT count(*) FROM {made}"), ())), 1);
        exec(&c, &format!("DROP TABLE {t}, {made}"), ());
    }
}

pg_test! {
    fn a_deferred_constraint_that_fails_at_the_implicit_commit_fails_the_job() {
        // A DEFERRABLE INITIALLY DEFERRED constraint is checked at commit:
        // alone, that is the Sync after the statement's rows and
        // CommandComplete, and its error must still fail the job, with
        // nothing committed, as COMMIT's error would.
        let _server = sharing_server();
        let c = direct();
        let t = unique_name("alone_deferred").replace('-', "_").to_lowercase();
        exec(
            &c,
            &format!("CREATE TABLE {t} (k int8, UNIQUE (k) DEFERRABLE INITIALLY DEFERRED)"),
            (),
        );
        let reactor = Reactor::new().unwrap();
        let pool = pool_on(&reactor, kwargs! { "cp_min" => 1, "cp_max" => 1 });
        let p = pool.clone();
        let (op, query) = (
            format!("INSERT INTO {t} (k) VALUES (1), (1)"),
            format!("INSERT INTO {t} (k) VALUES (2), (2) RETURNING k"),
        );
        let (op_err, query_res) = run_async(&reactor, BOUND, move || async move {
            let op_err = p.run_operation(&op, ()).await.err();
            let query_res = p.run_query(&query, ()).await.map(|r| r.len());
            Ok::<_, Failure>((op_err, query_res))
        })
        .unwrap();
        let _ = pool.close();
        let n = first_int(&exec(&c, &format!("SELECT count(*) FROM {t}"), ()));
        exec(&c, &format!("DROP TABLE {t}"), ());
        let op_err = op_err.expect("the deferred check fails run_operation");
        assert!(op_err.check::<IntegrityError>().is_some(), "{op_err}");
        let q = query_res.expect_err("the deferred check fails run_query");
        assert!(q.check::<IntegrityError>().is_some(), "{q}");
        assert_eq!(n, 0, "nothing committed");
    }
}

pg_test! {
    fn what_cp_openfun_leaves_on_the_session_is_honoured() {
        // cp_openfun runs on every new connection before its first job: a
        // block it opened by hand is committed by that job (BEGIN/COMMIT, as
        // psycopg2), and a client_encoding it changed keeps every later job
        // off the one-round-trip path, so a result that does not decode
        // never reports a failure for committed work.
        let _server = sharing_server();
        let c = direct();
        let t = unique_name("alone_openfun").replace('-', "_").to_lowercase();
        exec(&c, &format!("CREATE TABLE {t} (k int8 PRIMARY KEY, v text)"), ());
        let reactor = Reactor::new().unwrap();
        let t1 = t.clone();
        let in_block = pool_on(
            &reactor,
            kwargs! { "cp_min" => 1, "cp_max" => 1, "cp_openfun" => adbapi::Arg::openfun(move |conn| {
                conn.execute("BEGIN", ())?;
                conn.execute(&format!("INSERT INTO {t1} (k, v) VALUES (10, 'a')"), ())?;
                Ok(())
            }) },
        );
        let latin1 = pool_on(
            &reactor,
            kwargs! { "cp_min" => 1, "cp_max" => 1, "cp_openfun" => adbapi::Arg::openfun(|conn| {
                conn.execute("SET client_encoding TO 'LATIN1'", ())?;
                // Committed, or the first failing job's rollback undoes it.
                conn.commit()?;
                Ok(())
            }) },
        );
        let (p, q) = (in_block.clone(), latin1.clone());
        let insert = format!("INSERT INTO {t} (k, v) VALUES (%s, chr(233)) RETURNING v");
        let results = run_async(&reactor, BOUND, move || async move {
            p.run_operation(&insert.replace("chr(233)", "'b'"), (11,)).await?;
            let mut out = Vec::new();
            for k in [1, 2] {
                out.push((k, q.run_query(&insert, (k,)).await.is_ok()));
            }
            Ok::<_, Failure>(out)
        })
        .unwrap();
        let _ = in_block.close();
        let _ = latin1.close();
        let committed = keys(&c, &t);
        exec(&c, &format!("DROP TABLE {t}"), ());
        let mut expected = vec![10, 11];
        expected.extend(results.iter().filter(|(_, ok)| *ok).map(|(k, _)| *k));
        expected.sort_unstable();
        assert_eq!(committed, expected, "jobs that failed left nothing: {results:?}");
    }
}

/// Polls (bounded, on the loop) until `done` says yes, then fires.
fn when(r: &Reactor, done: impl Fn() -> bool + 'static) -> Deferred<()> {
    let (d, resolver) = Deferred::<()>::new();
    fn poll(
        r: Reactor,
        done: std::rc::Rc<dyn Fn() -> bool>,
        resolver: deferred::Resolver<()>,
        left: u32,
    ) {
        if done() || left == 0 {
            let _ = resolver.callback(());
            return;
        }
        let r2 = r.clone();
        r.call_later(Duration::from_millis(10), move || {
            poll(r2, done, resolver, left - 1)
        });
    }
    poll(r.clone(), std::rc::Rc::new(done), resolver, 5000);
    d
}

/// What a stopped one-round-trip job reports when its statement finishes
/// anyway: `insert` (with `%s` for an advisory lock key) waits on a lock the
/// caller holds, the job is cancelled, and the lock is released once the
/// cancel request was made. The pool goes through a proxy that counts the
/// request and drops it, as one that reaches the backend after its
/// statement ended. Returns the job's outcome, the cancel requests made and
/// what a next job on the pool returned.
fn stopped_on_a_lock(
    insert: String,
    lock_key: i64,
    app: &'static str,
) -> (Result<Vec<Row>, Failure>, usize, i64) {
    let holder = direct();
    exec(&holder, "SELECT pg_advisory_lock(%s)", (lock_key,));
    let proxy = Arc::new(Proxy::start());
    proxy.swallow_cancels();
    let reactor = Reactor::new().unwrap();
    let pool = ConnectionPool::new(
        "psycopg2",
        vec![proxy.url().into()],
        kwargs! { "cp_min" => 1, "cp_max" => 1, "application_name" => app,
        "cp_reactor" => adbapi::Arg::reactor(reactor.clone()) },
    )
    .unwrap();
    let (p, r, px) = (pool.clone(), reactor.clone(), Arc::clone(&proxy));
    let out = run_async(&reactor, BOUND, move || async move {
        let d = p.run_query(&insert, (lock_key,));
        // Blocked on the lock: its Execute was sent, so the job counted the
        // statement as a commit begun and the cancel is declined.
        when(&r, move || {
            let waiting = exec(
                &direct(),
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s \
                 AND wait_event_type = 'Lock' AND query LIKE '%%pg_advisory_xact_lock%%'",
                (app,),
            );
            first_int(&waiting) > 0
        })
        .await?;
        d.cancel();
        let px2 = Arc::clone(&px);
        when(&r, move || px2.cancel_requests() > 0).await?;
        let cancels = px.cancel_requests();
        exec(&holder, "SELECT pg_advisory_unlock(%s)", (lock_key,));
        let res = d.await;
        let next = p.run_query("SELECT 7", ()).await?;
        Ok::<_, Failure>((res, cancels, first_int(&next)))
    })
    .unwrap();
    let _ = pool.close();
    out
}

pg_test! {
    fn a_stopped_statement_that_committed_but_does_not_decode_reports_the_decode_error() {
        // A cancel for a one-round-trip job is declined (the statement is its
        // commit) and only the cancel request goes out. Here the statement
        // finishes anyway, commits, and then its result does not decode: the
        // job must report that decoding error, never CancelledError, which
        // would say that nothing of it committed. A function switches the
        // session to LATIN1 mid-statement (the SQL never names
        // client_encoding, so the driver cannot see it coming) and returns
        // 'é', which then arrives as the single byte 0xE9.
        let _server = sharing_server();
        let c = direct();
        let t = unique_name("alone_undecoded").replace('-', "_").to_lowercase();
        exec(&c, &format!("CREATE TABLE {t} (k int8 PRIMARY KEY, v text)"), ());
        exec(
            &c,
            &format!(
                "CREATE FUNCTION {t}_latin1() RETURNS text LANGUAGE plpgsql AS $$ BEGIN \
                 PERFORM set_config('client_' || 'encoding', 'LATIN1', false); RETURN chr(233); END $$"
            ),
            (),
        );
        let insert = format!(
            "INSERT INTO {t} (k, v) SELECT 1, {t}_latin1() FROM (SELECT pg_advisory_xact_lock(%s)) l RETURNING v"
        );
        let (res, cancels, next) = stopped_on_a_lock(insert, 7_140_014, "adbapi-alone-undecoded");
        let committed = keys(&c, &t);
        exec(&c, &format!("DROP TABLE {t}"), ());
        exec(&c, &format!("DROP FUNCTION {t}_latin1()"), ());
        assert_eq!(cancels, 1, "the cancel request went out (and was dropped)");
        assert_eq!(committed, vec![1], "the statement committed");
        let err = res.expect_err("the result does not decode");
        assert!(err.check::<CancelledError>().is_none(), "CancelledError for committed work: {err}");
        assert!(err.check::<ConnectionLost>().is_none(), "{err}");
        let e = err.check::<DbError>().expect("a database error");
        assert!(
            e.message().contains("committed before its result failed to decode"),
            "{err}"
        );
        assert_eq!(next, 7, "the pool goes on with a new connection");
    }
}

pg_test! {
    fn a_stopped_statement_the_server_refuses_reports_the_cancel() {
        // The same stop, but the statement fails at the server (a duplicate
        // key, not 57014): its implicit transaction was rolled back, so the
        // job reports its cancel, whatever the server's error says.
        let _server = sharing_server();
        let c = direct();
        let t = table(&c, "alone_refused");
        exec(&c, &format!("INSERT INTO {t} (k, x) VALUES (1, 0)"), ());
        let insert = format!(
            "INSERT INTO {t} (k, x) SELECT 1, 1 FROM (SELECT pg_advisory_xact_lock(%s)) l RETURNING x"
        );
        let (res, cancels, next) = stopped_on_a_lock(insert, 7_140_015, "adbapi-alone-refused");
        let rows = exec(&c, &format!("SELECT x FROM {t}"), ());
        exec(&c, &format!("DROP TABLE {t}"), ());
        assert_eq!(cancels, 1, "the cancel request went out (and was dropped)");
        assert_eq!(first_int(&rows), 0, "nothing of the stopped job");
        let err = res.expect_err("a duplicate key");
        assert!(err.check::<CancelledError>().is_some(), "{err}");
        assert_eq!(next, 7, "the pool goes on with a new connection");
    }
}
