//! A Scrapy item pipeline storing items through `adbapi`, ported one to one:
//! `open_spider` creates the pool, `process_item` runs an upsert interaction
//! whose errback logs the failure and still returns the item, and
//! `close_spider` closes the pool and waits for it.
//!
//! Ports this Scrapy pipeline:
//!
//! ```python
//! class MySQLStorePipeline:
//!     def open_spider(self, spider):
//!         self.dbpool = adbapi.ConnectionPool(
//!             "pymysql", host="127.0.0.1", db="scrapy", user="scrapy", passwd="...",
//!             charset="utf8mb4", cursorclass=pymysql.cursors.DictCursor, cp_reconnect=True)
//!
//!     def process_item(self, item, spider):
//!         d = self.dbpool.runInteraction(self._do_upsert, item, spider)
//!         d.addErrback(self._handle_error, item, spider)
//!         d.addBoth(lambda _: item)
//!         return d
//!
//!     def _do_upsert(self, conn, item, spider):
//!         conn.execute("SELECT EXISTS(SELECT 1 FROM website WHERE url = %s) AS present", (item["url"],))
//!         if conn.fetchone()["present"]:
//!             conn.execute("UPDATE website SET title = %s, updated = updated + 1 WHERE url = %s",
//!                          (item["title"], item["url"]))
//!         else:
//!             conn.execute("INSERT INTO website (url, title) VALUES (%s, %s)", (item["url"], item["title"]))
//!
//!     def _handle_error(self, failure, item, spider):
//!         logger.error("could not store %s: %s", item["url"], failure)
//!
//!     def close_spider(self, spider):
//!         return self.dbpool.close()
//! ```
//!
//! Runs on SQLite (a temporary file) by default; give a MySQL/MariaDB URL to
//! run it there, e.g. with the test server:
//!
//! ```sh
//! cargo run --example scrapy_pipeline
//! eval "$(scripts/mysql-test-server start)"
//! cargo run --example scrapy_pipeline -- "$ADBAPI_MYSQL_URL"
//! ```

use reactor::prelude::*;
use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;

use adbapi::{kwargs, Arg, ConnectionPool, Transaction, Value};
use deferred::{gather_results, Deferred, Failure};
use reactor::Reactor;

/// A scraped item: Scrapy's `Item` with the two fields this pipeline stores.
#[derive(Debug, Clone)]
struct Item {
    url: String,
    title: String,
}

/// Where the pipeline stores items.
#[derive(Debug, Clone)]
enum Store {
    Sqlite(String),
    Mysql(String),
}

impl Store {
    /// The SQL with the driver's placeholders: `?` for sqlite3, `%s` for
    /// pymysql (the only change a port from one to the other needs).
    fn sql(&self, sql: &str) -> String {
        match self {
            Store::Sqlite(_) => sql.replace("%s", "?"),
            Store::Mysql(_) => sql.to_owned(),
        }
    }
}

/// The pipeline: Scrapy calls `open_spider`, `process_item` per item, then
/// `close_spider`.
struct StorePipeline {
    store: Store,
    reactor: Reactor,
    dbpool: Option<ConnectionPool>,
}

impl StorePipeline {
    fn open_spider(&mut self) -> Result<(), adbapi::PoolError> {
        let r = Arg::reactor(self.reactor.clone());
        self.dbpool = Some(match &self.store {
            Store::Sqlite(path) => ConnectionPool::new(
                "sqlite3",
                vec![path.as_str().into()],
                kwargs! { "cp_max" => 1, "check_same_thread" => false, "cp_reactor" => r },
            )?,
            Store::Mysql(url) => ConnectionPool::new(
                "pymysql",
                vec![url.as_str().into()],
                kwargs! {
                    "charset" => "utf8mb4", "cursorclass" => "pymysql.cursors.DictCursor",
                    "cp_reconnect" => true, "cp_reactor" => r,
                },
            )?,
        });
        Ok(())
    }

    fn pool(&self) -> &ConnectionPool {
        self.dbpool.as_ref().expect("open_spider ran")
    }

    fn process_item(&self, item: Item) -> Deferred<Item> {
        let (store, it) = (self.store.clone(), item.clone());
        let d = self
            .pool()
            .run_interaction(move |txn| do_upsert(txn, &store, &it));
        let failed_item = item.clone();
        d.add_errback(move |failure| {
            handle_error(&failure, &failed_item);
            Ok(())
        })
        .add_both(move |_| Ok(item))
    }

    fn close_spider(&self) -> Deferred<()> {
        self.pool().close()
    }
}

fn do_upsert(txn: &mut Transaction<'_>, store: &Store, item: &Item) -> Result<(), Failure> {
    txn.execute(
        &store.sql("SELECT EXISTS(SELECT 1 FROM website WHERE url = %s) AS present"),
        (item.url.as_str(),),
    )?;
    let row = txn
        .fetchone()?
        .ok_or_else(|| Failure::msg("SELECT EXISTS returned no row"))?;
    // DictCursor style: the column by name.
    if row.get_by_name::<i64>("present")? == 1 {
        txn.execute(
            &store.sql("UPDATE website SET title = %s, updated = updated + 1 WHERE url = %s"),
            (item.title.as_str(), item.url.as_str()),
        )?;
    } else {
        txn.execute(
            &store.sql("INSERT INTO website (url, title) VALUES (%s, %s)"),
            (item.url.as_str(), item.title.as_str()),
        )?;
    }
    Ok(())
}

fn handle_error(failure: &Failure, item: &Item) {
    tracing::error!(url = %item.url, %failure, "could not store the item");
}

fn schema(pool: &ConnectionPool, store: &Store) -> Deferred<()> {
    let create = match store {
        Store::Sqlite(_) => {
            "CREATE TABLE IF NOT EXISTS website (url TEXT PRIMARY KEY, title TEXT NOT NULL, updated INTEGER NOT NULL DEFAULT 0)"
        }
        Store::Mysql(_) => {
            "CREATE TABLE IF NOT EXISTS website (url VARCHAR(255) PRIMARY KEY, title VARCHAR(100) NOT NULL, \
             updated INT NOT NULL DEFAULT 0) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        }
    };
    let p = pool.clone();
    pool.run_operation("DROP TABLE IF EXISTS website", ())
        .add_callback_deferred(move |()| p.run_operation(create, ()))
}

fn items() -> Vec<Item> {
    let mut v: Vec<Item> = (0..20)
        .map(|i| Item {
            url: format!("https://example.invalid/page/{}", i % 12),
            title: format!("Page {i} 🕷️"),
        })
        .collect();
    // A title too long for MariaDB's VARCHAR(100) (DataError 1406 in strict
    // mode): the errback logs it and the item still goes on. SQLite stores it.
    v.push(Item {
        url: "https://example.invalid/bad".into(),
        title: "x".repeat(5000),
    });
    v
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let dir = std::env::temp_dir().join(format!("adbapi-scrapy-{}", std::process::id()));
    let store = match std::env::args().nth(1) {
        Some(url) => Store::Mysql(url),
        None => {
            std::fs::create_dir_all(&dir)?;
            Store::Sqlite(
                dir.join("items.db")
                    .to_str()
                    .ok_or("temp dir path is not UTF-8")?
                    .to_owned(),
            )
        }
    };
    let result = run(store);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// How many items came back out of the pipeline, and the rows stored.
type Outcome = Result<(usize, Vec<Vec<Value>>), Failure>;

fn run(store: Store) -> Result<(), Box<dyn std::error::Error>> {
    let reactor = Reactor::new()?;
    let mut pipeline = StorePipeline {
        store: store.clone(),
        reactor: reactor.clone(),
        dbpool: None,
    };
    pipeline.open_spider()?;
    let pipeline = Rc::new(pipeline);
    let outcome: Rc<RefCell<Option<Outcome>>> = Rc::new(RefCell::new(None));
    let (pl, r, out) = (Rc::clone(&pipeline), reactor.clone(), Rc::clone(&outcome));
    reactor.call_when_running(move || {
        let pl2 = Rc::clone(&pl);
        let pl3 = Rc::clone(&pl);
        let pl4 = Rc::clone(&pl);
        let _ = schema(pl.pool(), &store)
            .add_callback_deferred(move |()| {
                // Scrapy hands items over as they are scraped; they overlap.
                let ds: Vec<Deferred<Item>> =
                    items().into_iter().map(|i| pl2.process_item(i)).collect();
                gather_results(ds, true)
            })
            .add_callback_deferred(move |returned| {
                pl3.pool()
                    .run_query("SELECT url, title, updated FROM website ORDER BY url", ())
                    .add_callback(move |rows| {
                        (
                            returned.len(),
                            rows.into_iter().map(|r| r.into_values()).collect(),
                        )
                    })
            })
            .add_both_deferred(move |res| {
                *out.borrow_mut() = Some(res);
                // close_spider: close the pool and wait for it.
                pl4.close_spider()
            })
            .add_both(move |_| r.stop().map_err(Failure::new));
    });
    reactor.run()?;
    let (returned, rows) = outcome
        .borrow_mut()
        .take()
        .ok_or("the pipeline did not finish")?
        .map_err(|f| f.to_string())?;
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "{returned} items passed through the pipeline; {} rows stored:",
        rows.len()
    )?;
    for row in rows {
        writeln!(
            stdout,
            "  {}",
            row.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" | ")
        )?;
    }
    Ok(())
}
