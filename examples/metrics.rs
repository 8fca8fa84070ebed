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
//! installs `metrics-exporter-prometheus`'s, without its HTTP server, and
//! prints what a scrape would return). Stops by itself.
//!
//! Run it with `cargo run --example metrics`.

mod common;

use std::time::Duration;

use adbapi::{ConnectionPool, PoolTimeout};
use common::{say, with_temp_db};
use deferred::{gather_results, Deferred, Failure};
use metrics_exporter_prometheus::PrometheusBuilder;

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
        reactor::react(|_reactor| {
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
            program(pool)
        })
    });
    say(format_args!(
        "--- Prometheus text (what a scrape returns) ---"
    ));
    say(format_args!("{}", prometheus.render().trim_end()));
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
