//! `adbapi_line_server --port P --db PATH [--pool 4]`: our database-backed
//! line server, the one the tokio and Twisted peers are measured against.
//! Twisted's shape, one to one: a `LineReceiver` per connection, each
//! request one `ConnectionPool.run_query` point select, the reply written
//! from the Deferred's callback. `--pool` is `cp_min` = `cp_max`. Prints
//! `listening 127.0.0.1:PORT` once bound and serves until killed.

use std::path::PathBuf;
use std::process::ExitCode;

use adbapi::{args, kwargs, ConnectionPool, Row};
use netbench::args::Args;
use netbench::users::{self, BAD_REQUEST, INTERNAL_ERROR};
use netbench::{logging, loopback, rlimit};
use reactor::prelude::*;
use reactor::protocols::basic::{LineHandle, LineReceiver, LineReceiverProtocol};
use reactor::protocols::for_protocol;
use reactor::{Reactor, DEFAULT_BACKLOG};

/// One connection: `user <id>` → `<id> <name>`.
struct UserLines {
    dbpool: ConnectionPool,
}

impl LineReceiver for UserLines {
    const MAX_LENGTH: usize = users::MAX_LINE;

    fn connection_made(&mut self, conn: &LineHandle) {
        // As the peers do: a reply must not wait for Nagle's timer.
        if let Some(t) = conn.transport() {
            let _ = t.set_tcp_nodelay(true);
        }
    }

    fn line_received(&mut self, line: &[u8], conn: &LineHandle) {
        let Some(id) = users::parse_request(line) else {
            if let Some(t) = conn.transport() {
                t.write(BAD_REQUEST);
            }
            return;
        };
        let conn = conn.clone();
        let _reply = self
            .dbpool
            .run_query(users::QUERY, (i64::from(id),))
            .add_both(move |rows: Result<Vec<Row>, deferred::Failure>| {
                let mut out = Vec::with_capacity(32);
                match rows.and_then(|rows| match rows.first() {
                    Some(row) => Ok(Some(row.get::<String>(0)?)),
                    None => Ok(None),
                }) {
                    Ok(Some(name)) => users::write_reply(&mut out, id, &name),
                    Ok(None) => users::write_unknown(&mut out, id),
                    Err(failure) => {
                        tracing::error!(%failure, id, "query failed");
                        out.extend_from_slice(INTERNAL_ERROR);
                    }
                }
                if let Some(t) = conn.transport() {
                    t.write(&out);
                }
                Ok(())
            });
    }
}

fn main() -> ExitCode {
    logging::init();
    // The idle test holds 10 000 connections open.
    if let Err(e) = rlimit::raise_nofile() {
        tracing::warn!("RLIMIT_NOFILE: {e}");
    }
    let run = || -> Result<(), Box<dyn std::error::Error>> {
        let args = Args::parse(std::env::args().skip(1), &["port", "db", "pool"])?;
        let addr = loopback::target("127.0.0.1", args.require("port")?)?;
        let db: PathBuf = args.require("db")?;
        if !db.is_file() {
            return Err(format!("--db {}: no such file (run setup_db first)", db.display()).into());
        }
        let pool: i64 = args.get_or("pool", 4)?;
        let db = db.to_str().ok_or("--db must be UTF-8")?.to_owned();
        let reactor = Reactor::new()?;
        let dbpool = ConnectionPool::new(
            "sqlite3",
            args![db.as_str()],
            kwargs! { "cp_min" => pool, "cp_max" => pool, "check_same_thread" => false },
        )?;
        let factory = for_protocol(move |_peer| {
            LineReceiverProtocol::new(UserLines {
                dbpool: dbpool.clone(),
            })
        });
        // Deep enough for 1 000 clients connecting in bursts.
        let port =
            reactor.listen_tcp(addr.port(), factory, DEFAULT_BACKLOG.max(1024), "127.0.0.1")?;
        logging::emit(&format!("listening {}", port.get_host().socket_addr()));
        reactor.run()?;
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("adbapi_line_server: {e}");
            ExitCode::FAILURE
        }
    }
}
