//! What connection lifetime and health checks cost per query: batches of
//! point selects outstanding at once through a pool of two workers on a
//! SQLite file, with the options off, with `cp_max_lifetime` and
//! `cp_idle_timeout` (bookkeeping only), with `cp_check_idle = 0.5`
//! (HikariCP's window: no probe while the pool is busy) and with
//! `cp_check_idle = 0` (a probe before every job). Rounds alternate between
//! the settings; the medians are printed (stdout; not a criterion target).
//!
//! ```text
//! cargo bench -p adbapi --bench lifetime
//! ```

#![allow(clippy::print_stdout)]

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use adbapi::{args, kwargs, Arg, ConnectionPool};
use reactor::prelude::*;
use reactor::Reactor;

const N: u64 = 20_000;
const ROUNDS: usize = 7;

fn batch(path: &str, extra: &[(&str, f64)]) -> Duration {
    let reactor = Reactor::new().expect("a reactor");
    let mut kw = kwargs! { "cp_min" => 2, "cp_max" => 2,
    "cp_reactor" => Arg::reactor(reactor.clone()) };
    for (k, v) in extra {
        kw.push(((*k).to_owned(), Arg::from(*v)));
    }
    let pool = ConnectionPool::new("sqlite3", args![path], kw).expect("a pool");
    let left = Rc::new(Cell::new(N));
    let start = Rc::new(Cell::new(None));
    let (p, r, l, s) = (pool.clone(), reactor.clone(), left.clone(), start.clone());
    reactor.call_when_running(move || {
        // Both workers connected before the clock starts.
        let warm = (0..4).map(|_| p.run_query("SELECT v FROM t WHERE id = 1", ()));
        let warm: Vec<_> = warm.collect();
        let _ = deferred::gather_results(warm, true).add_callback(move |_| {
            s.set(Some(Instant::now()));
            for i in 0..N {
                let (l, r) = (l.clone(), r.clone());
                let _ = p
                    .run_query("SELECT v FROM t WHERE id = ?", (1 + (i % 1000) as i64,))
                    .add_callback(move |_| {
                        l.set(l.get() - 1);
                        if l.get() == 0 {
                            r.stop().expect("stop");
                        }
                    });
            }
        });
    });
    reactor.run().expect("run");
    start.get().expect("started").elapsed()
}

fn main() {
    let dir = std::env::temp_dir().join(format!("adbapi-bench-life-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let path = dir.join("t.db");
    let path = path.to_str().expect("utf-8").to_owned();
    {
        let c = adbapi::dbapi::connect("sqlite3", &[path.as_str().into()], &[]).expect("db");
        c.execute("PRAGMA journal_mode=WAL", ()).expect("wal");
        c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)", ())
            .expect("table");
        let rows: Vec<(i64, String)> = (1..=1000i64).map(|i| (i, format!("value {i}"))).collect();
        c.cursor()
            .expect("cursor")
            .executemany("INSERT INTO t VALUES (?, ?)", rows)
            .expect("rows");
        c.commit().expect("commit");
    }
    let settings: [(&str, &[(&str, f64)]); 4] = [
        ("off", &[]),
        (
            "lifetime",
            &[("cp_max_lifetime", 1800.0), ("cp_idle_timeout", 600.0)],
        ),
        ("check 0.5s", &[("cp_check_idle", 0.5)]),
        ("check 0", &[("cp_check_idle", 0.0)]),
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); settings.len()];
    for _ in 0..ROUNDS {
        for (i, (_, extra)) in settings.iter().enumerate() {
            let d = batch(&path, extra);
            times[i].push(d.as_secs_f64() * 1e6 / N as f64);
        }
    }
    println!("== {N} point selects outstanding, 2 workers, {ROUNDS} rounds (us/query) ==");
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let base = median(&mut times[0].clone());
    for (i, (label, _)) in settings.iter().enumerate() {
        let m = median(&mut times[i]);
        let all: Vec<String> = times[i].iter().map(|t| format!("{t:.2}")).collect();
        println!(
            "{label:<11} median {m:6.2} us  ({:+5.1} %)  [{}]",
            (m / base - 1.0) * 100.0,
            all.join(" ")
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
