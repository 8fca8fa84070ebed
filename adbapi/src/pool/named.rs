//! Named interactions: Synapse's `runInteraction(desc, func)`, whose `desc`
//! names the transaction in its logs, metrics and errors. Twisted's
//! `runInteraction(interaction, *args, **kw)` has no name, and its shape is
//! kept: a name is given through a handle, [`ConnectionPool::named`], whose
//! `run_*` methods are the pool's.

use std::sync::Arc;

use deferred::{Deferred, Failure};

use super::{Connection, ConnectionPool, RetryPolicy, Transaction};
use crate::dbapi::{Params, Row};

/// A pool handle whose jobs carry a name (Synapse's `desc`): in the job's
/// `adbapi_job` span, the slow-job log, the metrics' `interaction` label, a
/// [`PoolTimeout`](crate::PoolTimeout), and as context on any failure of the
/// job's Deferred ("in interaction "get_user" of pool ..."). Made by
/// [`ConnectionPool::named`]; cheap to clone.
///
/// ```
/// use adbapi::ConnectionPool;
/// use reactor::testing::FakeReactor;
/// let reactor = FakeReactor::new(true);
/// let pool = ConnectionPool::builder("sqlite3").arg(":memory:").max(1)
///     .reactor(reactor.clone()).build().unwrap();
/// let d = pool.named("broken_lookup").run_query("SELECT * FROM missing", ());
/// reactor.run_until_idle();
/// let failure = d.into_result().ok().unwrap().unwrap_err();
/// assert!(failure.to_string().contains("broken_lookup"), "{failure}");
/// ```
#[derive(Clone, Debug)]
pub struct NamedInteraction {
    pool: ConnectionPool,
    name: Arc<str>,
}

impl ConnectionPool {
    /// A handle whose `run_*` jobs are named `name` (see
    /// [`NamedInteraction`]). Not in Twisted; Synapse's
    /// `runInteraction(desc, func)`.
    pub fn named(&self, name: &str) -> NamedInteraction {
        NamedInteraction {
            pool: self.clone(),
            name: Arc::from(name),
        }
    }
}

impl NamedInteraction {
    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The pool.
    pub fn pool(&self) -> &ConnectionPool {
        &self.pool
    }

    /// [`ConnectionPool::run_interaction`], named.
    pub fn run_interaction<T, F>(&self, interaction: F) -> Deferred<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Transaction<'_>) -> Result<T, Failure> + Send + 'static,
    {
        self.pool
            .submit_interaction(Some(Arc::clone(&self.name)), interaction)
    }

    /// [`ConnectionPool::run_interaction_with_retry`], named: Synapse's
    /// `runInteraction(desc, func)`, which both names and retries its
    /// transactions.
    pub fn run_interaction_with_retry<T, F>(
        &self,
        policy: RetryPolicy,
        interaction: F,
    ) -> Deferred<T>
    where
        T: Send + 'static,
        F: FnMut(&mut Transaction<'_>) -> Result<T, Failure> + Send + 'static,
    {
        self.pool
            .submit_with_retry(Some(Arc::clone(&self.name)), policy, interaction)
    }

    /// [`ConnectionPool::run_with_connection`], named.
    pub fn run_with_connection<T, F>(&self, f: F) -> Deferred<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, Failure> + Send + 'static,
    {
        self.pool
            .submit_with_connection(Some(Arc::clone(&self.name)), f)
    }

    /// [`ConnectionPool::run_query`], named.
    pub fn run_query(&self, sql: &str, params: impl Into<Params>) -> Deferred<Vec<Row>> {
        self.run_interaction(super::query_job(sql, params.into()))
    }

    /// [`ConnectionPool::run_operation`], named.
    pub fn run_operation(&self, sql: &str, params: impl Into<Params>) -> Deferred<()> {
        self.run_interaction(super::operation_job(sql, params.into()))
    }
}
