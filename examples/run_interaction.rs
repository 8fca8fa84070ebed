//! `runInteraction`: several statements in one transaction, committed when
//! the function returns `Ok` and rolled back when it fails, so a failing
//! interaction leaves the data exactly as it was.
//!
//! Ports this Twisted program:
//!
//! ```python
//! class InsufficientFunds(Exception):
//!     pass
//!
//! def transfer(txn, src, dst, amount):
//!     txn.execute("UPDATE accounts SET balance = balance - ? WHERE name = ?", (amount, src))
//!     txn.execute("SELECT balance FROM accounts WHERE name = ?", (src,))
//!     (balance,) = txn.fetchone()
//!     if balance < 0:
//!         raise InsufficientFunds(src, balance)   # rolls back the UPDATE above
//!     txn.execute("UPDATE accounts SET balance = balance + ? WHERE name = ?", (amount, dst))
//!     if txn.rowcount != 1:
//!         raise LookupError(dst)                  # rolls back both UPDATEs
//!     return balance
//!
//! d = dbpool.runInteraction(transfer, "alice", "bob", 30)      # commits
//! d.addCallback(lambda _: dbpool.runInteraction(transfer, "alice", "bob", 500))
//! d.addErrback(lambda f: f.trap(InsufficientFunds))           # rolled back
//! ```
//!
//! Run it with `cargo run --example run_interaction`.

mod common;

use std::fmt;

use adbapi::{args, kwargs, ConnectionPool, Transaction};
use common::{say, with_temp_db};
use deferred::{Deferred, Failure};

/// The interaction's own error: the transfer would overdraw `account`.
#[derive(Debug)]
struct InsufficientFunds {
    account: String,
    balance: i64,
}

impl fmt::Display for InsufficientFunds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} would be left with {}", self.account, self.balance)
    }
}

impl std::error::Error for InsufficientFunds {}

/// Moves `amount` from `src` to `dst` and returns what `src` has left. Runs on
/// a worker thread, inside one transaction. Every `?` that fails makes the
/// pool roll the whole transaction back.
fn transfer(txn: &mut Transaction<'_>, src: &str, dst: &str, amount: i64) -> Result<i64, Failure> {
    txn.execute(
        "UPDATE accounts SET balance = balance - ? WHERE name = ?",
        (amount, src),
    )?;
    let row = txn
        .execute("SELECT balance FROM accounts WHERE name = ?", (src,))?
        .fetchone()?
        .ok_or_else(|| Failure::msg(format!("no account {src:?}")))?;
    let balance: i64 = row.get(0)?;
    if balance < 0 {
        return Err(Failure::new(InsufficientFunds {
            account: src.to_owned(),
            balance,
        }));
    }
    txn.execute(
        "UPDATE accounts SET balance = balance + ? WHERE name = ?",
        (amount, dst),
    )?;
    if txn.rowcount()? != 1 {
        return Err(Failure::msg(format!("no account {dst:?}")));
    }
    Ok(balance)
}

/// Every balance, as `name=balance` pairs.
fn balances(pool: &ConnectionPool) -> Deferred<String> {
    pool.run_query("SELECT name, balance FROM accounts ORDER BY name", ())
        .add_callback_result(|rows| {
            let mut s = Vec::new();
            for row in rows {
                s.push(format!("{}={}", row.get::<String>(0)?, row.get::<i64>(1)?));
            }
            Ok(s.join(" "))
        })
}

/// Runs `transfer` and reports how it went; a failure is reported and
/// recovered from, so the chain goes on.
fn try_transfer(
    pool: &ConnectionPool,
    src: &'static str,
    dst: &'static str,
    amount: i64,
) -> Deferred<()> {
    pool.run_interaction(move |txn| transfer(txn, src, dst, amount))
        .add_callbacks(
            move |left| {
                say(format_args!(
                    "transfer {amount} {src} -> {dst}: committed, {src} has {left} left"
                ));
                Ok(())
            },
            move |failure| {
                let why = match failure.check::<InsufficientFunds>() {
                    Some(e) => format!("InsufficientFunds: {e}"),
                    None => failure.error_message(),
                };
                say(format_args!(
                    "transfer {amount} {src} -> {dst}: rolled back ({why})"
                ));
                Ok(())
            },
        )
}

/// Prints the balances after a step.
fn show(pool: &ConnectionPool, when: &'static str) -> Deferred<()> {
    balances(pool).add_callback(move |b| say(format_args!("  balances {when}: {b}")))
}

fn program(pool: &ConnectionPool) -> Deferred<()> {
    let p = pool.clone();
    // The schema and the first rows, in one transaction too.
    pool.run_interaction(|txn| {
        txn.execute(
            "CREATE TABLE accounts (name TEXT PRIMARY KEY, balance INTEGER NOT NULL)",
            (),
        )?;
        txn.executemany(
            "INSERT INTO accounts (name, balance) VALUES (?, ?)",
            [("alice", 100), ("bob", 50)],
        )?;
        Ok(())
    })
    .add_callback_deferred({
        let p = p.clone();
        move |()| show(&p, "at the start")
    })
    .add_callback_deferred({
        let p = p.clone();
        move |()| try_transfer(&p, "alice", "bob", 30)
    })
    .add_callback_deferred({
        let p = p.clone();
        move |()| show(&p, "after the committed transfer")
    })
    // Fails after the first UPDATE: InsufficientFunds.
    .add_callback_deferred({
        let p = p.clone();
        move |()| try_transfer(&p, "alice", "bob", 500)
    })
    .add_callback_deferred({
        let p = p.clone();
        move |()| show(&p, "after InsufficientFunds (unchanged)")
    })
    // Fails after both UPDATEs: there is no carol.
    .add_callback_deferred({
        let p = p.clone();
        move |()| try_transfer(&p, "alice", "carol", 10)
    })
    .add_callback_deferred(move |()| show(&p, "after the unknown account (unchanged)"))
}

fn main() {
    common::init_logging();
    let code = with_temp_db("bank.db", |db| {
        reactor::react(|_reactor| {
            // No cp_reactor: react's reactor is this thread's default while it runs.
            let pool = match ConnectionPool::new(
                "sqlite3",
                args![db],
                kwargs! { "cp_min" => 1, "cp_max" => 2 },
            ) {
                Ok(pool) => pool,
                Err(e) => return deferred::fail(e),
            };
            program(&pool)
        })
    });
    std::process::exit(code);
}
