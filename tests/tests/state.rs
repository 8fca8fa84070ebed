//! Saving and restoring a pool: `ConnectionPool::get_state` and
//! `from_state` mirror Twisted's `ConnectionPool.__getstate__` and
//! `__setstate__` (pickling): exactly Twisted's fields, a JSON round trip,
//! and a restored pool that works on the default reactor and re-runs the
//! constructor's checks.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use adbapi::dbapi::connect;
use adbapi::{args, kwargs, Arg, ConnectionPool, PoolState, Value};
use integration_tests::fakes::register_fake_module;
use integration_tests::harness::{run_async, TempDir, TIMEOUT};
use integration_tests::logs::LogCapture;
use integration_tests::pools::ints;
use reactor::default_reactor;
use reactor::testing::FakeReactor;

fn saved_pool(
    dir: &TempDir,
    reactor: FakeReactor,
    openfun_calls: &Arc<AtomicUsize>,
) -> ConnectionPool {
    let calls = Arc::clone(openfun_calls);
    ConnectionPool::new(
        "sqlite3",
        args![],
        kwargs! {
            "database" => dir.file("state.db"),
            "check_same_thread" => false,
            "cp_min" => 1,
            "cp_max" => 2,
            "cp_noisy" => true,
            "cp_reconnect" => true,
            "cp_good_sql" => "select 2",
            "cp_name" => "saved-pool",
            "cp_openfun" => Arg::openfun(move |_| {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }),
            "cp_reactor" => Arg::reactor(reactor),
        },
    )
    .expect("a pool")
}

/// `get_state` holds exactly Twisted's `__getstate__` keys (`dbapiName`,
/// `min`, `max`, `noisy`, `reconnect`, `good_sql`, `connargs`, `connkw`
/// without `cp_*`), and survives a JSON round trip.
#[test]
fn state_has_exactly_twisteds_fields_and_round_trips_through_json() {
    let dir = TempDir::new("state");
    let calls = Arc::new(AtomicUsize::new(0));
    let pool = saved_pool(&dir, FakeReactor::new(false), &calls);
    let state = pool.get_state();
    let expected = PoolState {
        dbapi_name: "sqlite3".into(),
        min: 1,
        max: 2,
        noisy: true,
        reconnect: true,
        good_sql: Some("select 2".into()),
        connargs: vec![],
        connkw: [
            ("check_same_thread".to_owned(), Value::Bool(false)),
            ("database".to_owned(), Value::Text(dir.file("state.db"))),
        ]
        .into_iter()
        .collect(),
    };
    assert_eq!(state, expected);

    let json = serde_json::to_value(&state).expect("serialise");
    let keys: BTreeSet<&str> = json
        .as_object()
        .expect("a JSON object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "dbapi_name",
            "min",
            "max",
            "noisy",
            "reconnect",
            "good_sql",
            "connargs",
            "connkw"
        ])
    );
    let text = serde_json::to_string(&state).expect("serialise");
    let back: PoolState = serde_json::from_str(&text).expect("deserialise");
    assert_eq!(back, state);
}

/// `from_state` (`__setstate__`) builds a working pool on the default
/// (global) reactor, keeping `min`, `max`, `noisy`, `reconnect`, `good_sql`
/// and the connect arguments, but not `cp_openfun` or `cp_name`.
#[test]
fn from_state_builds_a_working_pool_on_the_default_reactor() {
    let dir = TempDir::new("restore");
    let calls = Arc::new(AtomicUsize::new(0));
    let original = saved_pool(&dir, FakeReactor::new(false), &calls);
    assert_eq!(original.name(), Some("saved-pool"));
    let setup = connect("sqlite3", &[dir.file("state.db").into()], &[]).expect("connect");
    setup
        .execute("create table t (x integer)", ())
        .expect("create");
    setup
        .execute("insert into t values (7)", ())
        .expect("insert");
    setup.commit().expect("commit");
    setup.close().expect("close");

    let json = serde_json::to_string(&original.get_state()).expect("serialise");
    let restored = ConnectionPool::from_state(serde_json::from_str(&json).expect("deserialise"))
        .expect("from_state");
    assert_eq!(
        (
            restored.min(),
            restored.max(),
            restored.noisy(),
            restored.reconnect()
        ),
        (1, 2, true, true)
    );
    assert_eq!(restored.good_sql(), Some("select 2"));
    assert_eq!(restored.name(), None, "cp_name is not restored");
    assert_eq!(restored.get_state(), original.get_state());

    // The default reactor starts it: the query runs only if it does.
    let reactor = default_reactor();
    let p = restored.clone();
    let rows = run_async(&reactor, TIMEOUT, move || async move {
        let rows = p.run_query("select x from t", ()).await?;
        p.close().await?;
        Ok(rows)
    })
    .unwrap_or_else(|f| panic!("{}", f.traceback()));
    assert_eq!(ints(&rows), [7]);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "cp_openfun is not restored"
    );
}

/// `__setstate__` re-runs the constructor, so a non-compliant module's
/// warnings are logged again.
#[test]
fn from_state_logs_the_compliance_warnings_again() {
    let logs = LogCapture::start();
    let (module, _) = register_fake_module("restore-warn", false);
    let pool = ConnectionPool::new(
        &module,
        args![],
        kwargs! { "cp_reactor" => Arg::reactor(FakeReactor::new(false)) },
    )
    .expect("a pool");
    let restored =
        ConnectionPool::from_state_with_reactor(pool.get_state(), FakeReactor::new(false))
            .expect("from_state");
    assert_eq!(restored.dbapi_name(), module);
    assert_eq!(logs.count("DB API module not DB API 2.0 compliant."), 2);
    assert_eq!(logs.count("DB API module not sufficiently thread-safe."), 2);
}
