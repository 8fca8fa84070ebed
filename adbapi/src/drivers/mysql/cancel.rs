//! Cancelling a running statement: `KILL QUERY <connection id>` sent on a
//! side connection (MySQL has no protocol-level cancel request).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use mysql::prelude::Queryable;
use mysql::{Conn, Opts, OptsBuilder};

use super::errors::map_error;
use crate::dbapi::{DbResult, StatementCanceller};

/// Kills the statement running on one connection, from any thread. Mirrors
/// what MySQL clients do for a cancel (the `mysql` command line's Ctrl-C,
/// Connector/J's `Statement.cancel`): `KILL QUERY <id>` from a second
/// connection.
pub(crate) struct KillCanceller {
    opts: Opts,
    id: u32,
    /// A kill was sent: the connection must not start another transaction
    /// (see the module docs).
    pub(crate) sent: AtomicBool,
}

impl KillCanceller {
    /// A canceller for the session `id`, reaching the server with `opts`.
    pub(crate) fn new(opts: &Opts, id: u32) -> Self {
        // The side connection needs no session set-up of its own.
        let opts = Opts::from(OptsBuilder::from_opts(opts.clone()).init(Vec::<String>::new()));
        KillCanceller {
            opts,
            id,
            sent: AtomicBool::new(false),
        }
    }

    pub(crate) fn was_sent(&self) -> bool {
        self.sent.load(Ordering::SeqCst)
    }
}

impl fmt::Debug for KillCanceller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KillCanceller(connection {})", self.id)
    }
}

impl StatementCanceller for KillCanceller {
    fn cancel(&self) -> DbResult<()> {
        // Set before the kill leaves; one that fails may still have reached
        // the server, so it counts too.
        self.sent.store(true, Ordering::SeqCst);
        let sql = format!("KILL QUERY {}", self.id);
        let mut side = Conn::new(self.opts.clone()).map_err(|e| map_error(e, None))?;
        let res = side.query_drop(&sql);
        res.map_err(|e| map_error(e, Some(&sql)))
    }
}
