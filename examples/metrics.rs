//! Running a pool in production: named interactions, the slow-job log, a
//! queue timeout, `pool.status()`, and the pool's metrics (adbapi's
//! `metrics` feature) rendered as Prometheus text. What Synapse bolts onto
//! Twisted's adbapi by hand:
//!
//! ```python
//! # synapse/storage/database.py, in short
//! sql_query_timer = Histogram("synapse_storage_query_time", "sec", ["verb"])
//! sql_txn_duration = Counter("synapse_storage_transaction_time_sum", "sec", ["desc"])
//! sql_scheduling_timer = Histogram("synapse_storage_schedule_time", "sec")
//!
//! def runInteraction(self, desc, func, *args, **kwargs):
//!     start = monotonic_time()
//!     def inner_func(conn, *args, **kwargs):
//!         sql_scheduling_timer.observe(monotonic_time() - start)
//!         ...  # run func, log it if slow, count its time under `desc`
//!     return self._db_pool.runWithConnection(inner_func, *args, **kwargs)
//! ```
//!
//! Here the pool does it: `pool.named("desc")` names the job; the wait for a
//! worker and the run are timed into histograms, counted by outcome, and
//! published through the `metrics` facade (any recorder: this example
//! installs `metrics-exporter-prometheus`'s, without its HTTP server). The
//! text is served at `http://127.0.0.1:PORT/metrics` by a `Protocol` on the
//! reactor's own TCP layer, scraped once by a client on the same reactor and
//! printed. Stops by itself.
//!
//! Run it with `cargo run --example metrics`.

mod common;
// The one-request client of the finger examples: sends a request, reads
// the answer until the server closes.
mod finger_query;

use std::rc::Rc;
use std::time::Duration;

use adbapi::{ConnectionPool, PoolTimeout};
use common::{say, with_temp_db};
use deferred::{gather_results, Deferred, Failure};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use reactor::prelude::*;
use reactor::protocols::for_protocol;
use reactor::{Reactor, DEFAULT_BACKLOG};

/// A scrape endpoint: answers any HTTP request with the metrics as
/// Prometheus text, then closes (HTTP/1.0).
struct Scrape {
    metrics: PrometheusHandle,
    transport: Option<Rc<dyn Transport>>,
    request: Vec<u8>,
}

impl Protocol for Scrape {
    fn connection_made(&mut self, transport: Rc<dyn Transport>) {
        self.transport = Some(transport);
    }

    fn data_received(&mut self, data: &[u8]) {
        let Some(t) = self.transport.clone() else {
            return;
        };
        self.request.extend_from_slice(data);
        if self.request.len() > 8192 {
            // Not a scrape; don't buffer it.
            t.abort_connection();
        } else if self.request.windows(4).any(|w| w == b"\r\n\r\n") {
            let body = self.metrics.render();
            let head = format!(
                "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            t.write_sequence(&[head.as_bytes(), body.as_bytes()]);
            t.lose_connection();
        }
    }

    fn connection_lost(&mut self, _reason: Failure) {
        self.transport = None;
    }
}

/// Serves the metrics on a free port of 127.0.0.1, scrapes them once and
/// returns the body.
fn scrape(reactor: &Reactor, metrics: PrometheusHandle) -> Deferred<String> {
    let factory = for_protocol(move |_peer| Scrape {
        metrics: metrics.clone(),
        transport: None,
        request: Vec::new(),
    });
    let port = match reactor.listen_tcp(0, factory, DEFAULT_BACKLOG, "127.0.0.1") {
        Ok(p) => p,
        Err(e) => return deferred::fail(e),
    };
    let address = port.get_host();
    say(format_args!(
        "metrics served at http://{}/metrics",
        address.socket_addr()
    ));
    finger_query::finger(
        reactor,
        "127.0.0.1",
        address.port(),
        b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n",
    )
    .add_callback_deferred(move |response| {
        let text = String::from_utf8_lossy(&response).into_owned();
        port.stop_listening().add_callback(move |()| text)
    })
    .add_callback_result(|response: String| match response.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.0 200") => Ok(body.to_owned()),
        _ => Err(Failure::msg(format!("bad scrape response: {response:?}"))),
    })
}

fn main() {
    common::init_logging();
    let prometheus = match PrometheusBuilder::new().install_recorder() {
        Ok(handle) => handle,
        Err(e) => {
            tracing::error!(error = %e, "could not install the Prometheus recorder");
            std::process::exit(1);
        }
    };
    let code = with_temp_db("metrics.db", |db| {
        let metrics = prometheus.clone();
        reactor::react(move |reactor| {
            let pool = match ConnectionPool::builder("sqlite3")
                .arg(db)
                .name("app-db")
                .min(1)
                .max(1)
                // A job that waits longer than this for the one worker fails
                // with PoolTimeout instead of queueing for ever.
                .queue_timeout(Some(Duration::from_millis(100)))
                // Jobs slower than this are logged at WARN with their name.
                .slow_job_threshold(Some(Duration::from_millis(150)))
                .build()
            {
                Ok(pool) => pool,
                Err(e) => return deferred::fail(e),
            };
            let r = reactor.clone();
            program(pool)
                .add_callback_deferred(move |()| scrape(&r, metrics))
                .add_callback(|body| {
                    say(format_args!("--- Prometheus text, as scraped ---"));
                    say(format_args!("{}", body.trim_end()));
                })
        })
    });
    std::process::exit(code);
}

fn program(pool: ConnectionPool) -> Deferred<()> {
    let (p1, p2, p3) = (pool.clone(), pool.clone(), pool.clone());
    pool.named("create_schema")
        .run_operation("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)", ())
        .add_callback_deferred(move |()| {
            let store = p1.named("store_user");
            gather_results(
                (0..10).map(|i| store.run_operation("INSERT INTO users (name) VALUES (?)", (format!("u{i}"),))),
                true,
            )
        })
        .add_callback_deferred(move |_| {
            // One slow job holds the only worker; the job queued behind it
            // times out (and never runs), and the slow one is logged.
            let slow = p2.named("slow_report").run_interaction(|txn| {
                std::thread::sleep(Duration::from_millis(300));
                Ok(txn.execute("SELECT count(*) FROM users", ())?.fetchall()?.len())
            });
            let starved = p2
                .named("get_user")
                .run_query("SELECT name FROM users WHERE id = ?", (1,))
                .add_both(|r| {
                    match r {
                        Err(f) if f.check::<PoolTimeout>().is_some() => {
                            say(format_args!("get_user: {}", f.error_message()));
                        }
                        other => say(format_args!("get_user: unexpected {:?}", other.map(|_| ()))),
                    }
                    Ok(())
                });
            slow.add_callback_deferred(move |_| starved)
        })
        .add_callback_deferred(move |()| {
            // A failure names its interaction.
            p3.named("load_profile")
                .run_query("SELECT * FROM profiles", ())
                .add_both(move |r: Result<_, Failure>| {
                    if let Err(f) = r {
                        say(format_args!("load_profile failed: {f}"));
                    }
                    let st = p3.status();
                    say(format_args!(
                        "status: workers={} busy={} idle={} queued={} open_connections={} \
                         completed={} failed={} timed_out={} wait p50={:?} p99={:?} run p50={:?} max={:?}",
                        st.workers, st.busy, st.idle, st.queued, st.open_connections,
                        st.jobs_completed, st.jobs_failed, st.jobs_timed_out,
                        st.wait.p50, st.wait.p99, st.run.p50, st.run.max,
                    ));
                    Ok(())
                })
        })
}
