//! The statement timeout of a SQLite connection (`cp_statement_timeout`):
//! SQLite has no server-side limit, so a progress handler, called every
//! [`CHECK_EVERY`] virtual-machine instructions, interrupts a statement that
//! has run past its deadline. The statement then fails with
//! `SQLITE_INTERRUPT`, like a cancel ([`super::SqliteInterrupt`]); a flag
//! set by the handler tells the two apart, and the error is reworded so
//! [`DbError::is_statement_timeout`] recognises it. Python's `sqlite3` users
//! write the same with `connection.set_progress_handler`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::dbapi::{DbError, DbResult, ErrorKind};

/// How many SQLite VM instructions run between two looks at the clock: a
/// few microseconds of work, so the deadline is overshot by little and the
/// clock costs nothing measurable.
const CHECK_EVERY: i32 = 1000;

/// `SQLITE_INTERRUPT`.
const INTERRUPT: i32 = 9;

#[derive(Default)]
struct Deadline {
    at: Mutex<Option<Instant>>,
    fired: AtomicBool,
}

/// A connection's statement timer: off until [`set`](Self::set) is given
/// a limit.
#[derive(Default)]
pub(super) struct StatementTimer {
    limit: Option<Duration>,
    deadline: Arc<Deadline>,
}

impl StatementTimer {
    /// Installs (or, with `None`, removes) the progress handler.
    pub(super) fn set(
        &mut self,
        conn: &mut rusqlite::Connection,
        limit: Option<Duration>,
    ) -> DbResult<()> {
        let to_err = |e: rusqlite::Error| {
            DbError::new(ErrorKind::OperationalError, e.to_string())
                .context("could not set the statement timeout")
        };
        self.limit = limit.filter(|d| !d.is_zero());
        if self.limit.is_none() {
            return conn
                .progress_handler(0, None::<fn() -> bool>)
                .map_err(to_err);
        }
        let deadline = Arc::clone(&self.deadline);
        conn.progress_handler(
            CHECK_EVERY,
            Some(move || {
                let at = *deadline.at.lock().unwrap_or_else(|p| p.into_inner());
                let over = at.is_some_and(|at| Instant::now() >= at);
                if over {
                    deadline.fired.store(true, Ordering::SeqCst);
                }
                over
            }),
        )
        .map_err(to_err)
    }

    /// Starts the clock for one statement; `None` lifts the deadline for
    /// the statements the driver runs itself (`COMMIT`, `ROLLBACK`).
    pub(super) fn arm(&self) {
        let Some(limit) = self.limit else { return };
        self.deadline.fired.store(false, Ordering::SeqCst);
        *self.deadline.at.lock().unwrap_or_else(|p| p.into_inner()) =
            Instant::now().checked_add(limit);
    }

    /// Stops the clock and, if it was the timer that interrupted the
    /// statement, makes its error say so.
    pub(super) fn disarm<T>(&self, sql: &str, r: DbResult<T>) -> DbResult<T> {
        let Some(limit) = self.limit else { return r };
        *self.deadline.at.lock().unwrap_or_else(|p| p.into_inner()) = None;
        if !self.deadline.fired.swap(false, Ordering::SeqCst) {
            return r;
        }
        r.map_err(|e| {
            let interrupted = e
                .code()
                .and_then(|c| c.parse::<i32>().ok())
                .is_some_and(|c| c & 0xff == INTERRUPT);
            if !interrupted {
                return e;
            }
            DbError::new(
                ErrorKind::OperationalError,
                format!(
                    "interrupted: statement timeout ({} s, cp_statement_timeout) exceeded",
                    limit.as_secs_f64()
                ),
            )
            .with_code(INTERRUPT.to_string())
            .with_sql(sql)
            .with_source(e)
        })
    }
}
