//! Finger: the Deferred stage of Twisted's finger tutorial
//! (`docs/core/howto/tutorial/listings/finger/finger08.py`), with the users
//! in SQLite behind a `ConnectionPool`: each request line runs one
//! `run_query`, and the reply is written from the Deferred's callback.
//!
//! ```python
//! class FingerProtocol(basic.LineReceiver):
//!     def lineReceived(self, user):
//!         d = self.factory.getUser(user)
//!         def onError(err):
//!             return b"Internal error in server"
//!         d.addErrback(onError)
//!         def writeResponse(message):
//!             self.transport.write(message + b"\r\n")
//!             self.transport.loseConnection()
//!         d.addCallback(writeResponse)
//!
//! class FingerFactory(protocol.ServerFactory):
//!     protocol = FingerProtocol
//!     def __init__(self, dbpool):
//!         self.dbpool = dbpool
//!     def getUser(self, user):
//!         d = self.dbpool.runQuery("SELECT status FROM users WHERE name = ?", (user,))
//!         return d.addCallback(lambda rows: rows[0][0] if rows else b"No such user")
//!
//! fingerEndpoint = endpoints.serverFromString(reactor, "tcp:1079")
//! fingerEndpoint.listen(FingerFactory(dbpool))
//! reactor.run()
//! ```
//!
//! `cargo run --example finger` starts the server on a free port of
//! 127.0.0.1, fingers a few users through it with the client of
//! `finger_client`, prints the answers and stops. `cargo run --example
//! finger -- --serve 1079` only serves (until killed); then ask it with
//! `cargo run --example finger_client -- 127.0.0.1 1079 moshez`.

mod common;
mod finger_query;

use std::rc::Rc;

use adbapi::{args, kwargs, ConnectionPool, Row};
use common::{say, with_temp_db};
use deferred::{gather_results, Deferred, Failure};
use reactor::endpoints::{server_from_string, StreamServerEndpoint};
use reactor::protocols::basic::{LineHandle, LineReceiver, LineReceiverProtocol};
use reactor::protocols::for_protocol;
use reactor::Reactor;

/// The users the example's database starts with.
const USERS: &[(&str, &str)] = &[
    ("moshez", "Happy and well"),
    ("glyph", "Writing a reactor"),
    ("itamar", "On vacation"),
];

/// One connection: the first line names a user; the answer is one line,
/// then the server closes the connection, as a finger server does.
struct FingerProtocol {
    dbpool: ConnectionPool,
}

impl LineReceiver for FingerProtocol {
    /// Requests are user names; nothing longer is worth reading.
    const MAX_LENGTH: usize = 256;

    fn line_received(&mut self, user: &[u8], conn: &LineHandle) {
        let conn = conn.clone();
        let _reply = get_user(&self.dbpool, user)
            .add_errback(|failure| {
                tracing::warn!(%failure, "finger: the lookup failed");
                Ok(b"Internal error in server".to_vec())
            })
            .add_callback(move |message| {
                conn.send_line(&message);
                conn.lose_connection();
            });
    }

    /// Twisted drops the connection silently; a polite server says why.
    fn line_length_exceeded(&mut self, _line: &[u8], conn: &LineHandle) {
        conn.send_line(b"Request too long");
        conn.lose_connection();
    }
}

/// The user's status, `No such user`, or a failure if the query failed.
/// Mirrors `FingerFactory.getUser`.
fn get_user(dbpool: &ConnectionPool, user: &[u8]) -> Deferred<Vec<u8>> {
    // Names are text; bytes that are not UTF-8 name nobody.
    let Ok(name) = std::str::from_utf8(user) else {
        return deferred::succeed(b"No such user".to_vec());
    };
    dbpool
        .run_query("SELECT status FROM users WHERE name = ?", (name,))
        .add_callback_result(|rows: Vec<Row>| match rows.first() {
            Some(row) => Ok(row.get::<String>(0)?.into_bytes()),
            None => Ok(b"No such user".to_vec()),
        })
}

/// Listens on `description` (an endpoint string such as
/// `tcp:0:interface=127.0.0.1`) with a FingerProtocol per connection; fires
/// with the port it listens on.
fn serve(reactor: &Reactor, dbpool: &ConnectionPool, description: &str) -> Deferred<u16> {
    let endpoint = match server_from_string(Rc::new(reactor.clone()), description) {
        Ok(e) => e,
        Err(e) => return deferred::fail(e),
    };
    let dbpool = dbpool.clone();
    let factory = for_protocol(move |_peer| {
        LineReceiverProtocol::new(FingerProtocol {
            dbpool: dbpool.clone(),
        })
    });
    endpoint
        .listen(factory)
        .add_callback(|port| port.get_host().port())
}

/// A pool on `db` with the users table filled in.
fn open_pool(db: &str) -> Result<ConnectionPool, Failure> {
    Ok(ConnectionPool::new(
        "sqlite3",
        args![db],
        kwargs! { "cp_min" => 1, "cp_max" => 3, "check_same_thread" => false },
    )?)
}

fn fill(dbpool: &ConnectionPool) -> Deferred<()> {
    dbpool.run_interaction(|txn| {
        txn.execute(
            "CREATE TABLE users (name TEXT PRIMARY KEY, status TEXT NOT NULL)",
            (),
        )?;
        for (name, status) in USERS {
            txn.execute("INSERT INTO users VALUES (?, ?)", (*name, *status))?;
        }
        Ok(())
    })
}

/// The demo: serve on a free port, finger some users, print the answers.
fn demo(reactor: &Reactor, dbpool: ConnectionPool) -> Deferred<()> {
    let r = reactor.clone();
    let served = fill(&dbpool).add_callback_deferred({
        let (r, dbpool) = (r.clone(), dbpool.clone());
        move |()| serve(&r, &dbpool, "tcp:0:interface=127.0.0.1")
    });
    served.add_callback_deferred(move |port| {
        say(format_args!("finger server listening on 127.0.0.1:{port}"));
        let requests: Vec<&[u8]> = vec![b"moshez", b"glyph", b"nobody", b"\xff\xfe"];
        gather_results(
            requests.into_iter().map(|user| {
                let user = user.to_vec();
                finger_query::finger(&r, "127.0.0.1", port, &user).add_callback(move |reply| {
                    say(format_args!(
                        "finger {:?} -> {:?}",
                        String::from_utf8_lossy(&user),
                        String::from_utf8_lossy(&reply).trim_end()
                    ));
                })
            }),
            true,
        )
        .add_callback(|_| ())
    })
}

fn main() {
    common::init_logging();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let serve_port = match argv.as_slice() {
        [] => None,
        [flag, port] if flag == "--serve" => match port.parse::<u16>() {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::error!(port = %port, error = %e, "--serve takes a port number");
                std::process::exit(2);
            }
        },
        _ => {
            tracing::error!("usage: finger [--serve PORT]");
            std::process::exit(2);
        }
    };
    let code = with_temp_db("finger.db", |db| {
        reactor::react(|reactor| {
            let dbpool = match open_pool(db) {
                Ok(p) => p,
                Err(e) => return deferred::fail(e),
            };
            match serve_port {
                None => demo(reactor, dbpool),
                Some(port) => {
                    let r = reactor.clone();
                    fill(&dbpool)
                        .add_callback_deferred(move |()| {
                            serve(&r, &dbpool, &format!("tcp:{port}:interface=127.0.0.1"))
                        })
                        // Serve until killed: a Deferred that never fires.
                        .add_callback_deferred(|port| {
                            say(format_args!("finger server listening on 127.0.0.1:{port}"));
                            Deferred::<()>::new().0
                        })
                }
            }
        })
    });
    std::process::exit(code);
}

#[cfg(test)]
mod tests {
    //! The example run for real: a server on 127.0.0.1 and clients of it,
    //! under a reactor that the test stops.

    use super::*;
    use reactor::prelude::*;
    use std::cell::RefCell;
    use std::time::Duration;

    /// Runs `program` on a fresh reactor with a pool on a fresh database
    /// (filled in when `fill_db`), stopping after at most 20 s.
    fn run<T: 'static>(
        fill_db: bool,
        program: impl FnOnce(&Reactor, ConnectionPool, u16) -> Deferred<T> + 'static,
    ) -> Result<T, Failure> {
        let out: Rc<RefCell<Option<Result<T, Failure>>>> = Rc::new(RefCell::new(None));
        let o = Rc::clone(&out);
        // Tests run in parallel in one process: a directory each.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let code = with_temp_db(&format!("finger-test-{n}.db"), move |db| {
            // The reactor first: a pool without cp_reactor uses the thread's
            // one live reactor.
            let reactor = Reactor::new().expect("reactor");
            let dbpool = open_pool(db).expect("pool");
            let r = reactor.clone();
            let ready = if fill_db {
                fill(&dbpool)
            } else {
                deferred::succeed(())
            };
            let pool = dbpool.clone();
            reactor.call_when_running(move || {
                let r2 = r.clone();
                let _done = ready
                    .add_callback_deferred({
                        let (r, pool) = (r.clone(), pool.clone());
                        move |()| serve(&r, &pool, "tcp:0:interface=127.0.0.1")
                    })
                    .add_callback_deferred(move |port| program(&r2, pool, port))
                    .add_both(move |res| {
                        *o.borrow_mut() = Some(res);
                        let _ = r.stop();
                        Ok(())
                    });
            });
            let guard = reactor.clone();
            reactor.call_later(Duration::from_secs(20), move || {
                let _ = guard.stop();
            });
            reactor.run().expect("run");
            drop(dbpool);
            0
        });
        assert_eq!(code, 0);
        let res = out.borrow_mut().take();
        res.expect("the program did not finish within 20 s")
    }

    fn ask(r: &Reactor, port: u16, user: &[u8]) -> Deferred<String> {
        finger_query::finger(r, "127.0.0.1", port, user)
            .add_callback(|b| String::from_utf8_lossy(&b).into_owned())
    }

    #[test]
    fn known_and_unknown_users_are_answered_from_the_database() {
        let replies = run(true, |r, _pool, port| {
            gather_results(
                [&b"moshez"[..], b"itamar", b"nobody", b"\xff"]
                    .into_iter()
                    .map(|u| ask(r, port, u)),
                true,
            )
        })
        .unwrap();
        assert_eq!(
            replies,
            [
                "Happy and well\r\n",
                "On vacation\r\n",
                "No such user\r\n",
                "No such user\r\n"
            ]
        );
    }

    #[test]
    fn a_failing_query_is_answered_politely() {
        // No users table: the query fails, the errback answers.
        let reply = run(false, |r, _pool, port| ask(r, port, b"moshez")).unwrap();
        assert_eq!(reply, "Internal error in server\r\n");
    }

    #[test]
    fn an_overlong_request_is_refused_politely() {
        let reply = run(true, |r, _pool, port| ask(r, port, &[b'a'; 1000])).unwrap();
        assert_eq!(reply, "Request too long\r\n");
    }

    #[test]
    fn many_clients_at_once_each_get_their_own_answer() {
        let replies = run(true, |r, _pool, port| {
            gather_results(
                (0..60).map(|i| ask(r, port, USERS[i % USERS.len()].0.as_bytes())),
                true,
            )
        })
        .unwrap();
        for (i, reply) in replies.iter().enumerate() {
            assert_eq!(reply, &format!("{}\r\n", USERS[i % USERS.len()].1));
        }
    }
}
