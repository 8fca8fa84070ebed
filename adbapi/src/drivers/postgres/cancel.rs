//! Cancelling a running statement (psycopg2's `connection.cancel()`, a
//! `CancelRequest` on a side connection), and the rule that follows from
//! it: once a request was sent, the server may deliver it to any later
//! statement, so the connection starts no other transaction (see the
//! driver's module docs).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use postgres::{CancelToken, NoTls};

use super::errors::map_error;
use super::PgConnection;
use crate::dbapi::{DbError, DbResult, ErrorKind, StatementCanceller};

pub(super) struct PgCanceller {
    token: CancelToken,
    /// A cancel request was sent: the backend may still be signalled at any
    /// time, so the connection must not start another transaction (see the
    /// driver's module docs).
    sent: AtomicBool,
}

impl fmt::Debug for PgCanceller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PgCanceller")
    }
}

impl StatementCanceller for PgCanceller {
    fn cancel(&self) -> DbResult<()> {
        // Set before the request leaves; a request that fails may still have
        // reached the server, so it counts too.
        self.sent.store(true, Ordering::SeqCst);
        self.token
            .cancel_query(NoTls)
            .map_err(|e| map_error(e, None))
    }
}

impl PgCanceller {
    /// A canceller for the session `token` cancels; no request sent yet.
    pub(super) fn new(token: CancelToken) -> PgCanceller {
        PgCanceller {
            token,
            sent: AtomicBool::new(false),
        }
    }
}

impl PgConnection {
    pub(super) fn cancel_in_flight(&self) -> bool {
        self.canceller.sent.load(Ordering::SeqCst)
    }

    /// Discards the connection if a cancel request may still reach it.
    pub(super) fn check_no_cancel_in_flight(&mut self, sql: &str) -> DbResult<()> {
        if !self.cancel_in_flight() {
            return Ok(());
        }
        let why = "a cancel request was sent on this connection and the server may still deliver it to a \
                   later statement, so the connection was closed (the server rolled back what was open); \
                   reconnect";
        self.discard(why);
        Err(DbError::new(ErrorKind::OperationalError, why)
            .with_sql(sql)
            .with_connection_lost(true))
    }
}
