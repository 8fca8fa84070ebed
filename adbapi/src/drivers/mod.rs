//! The built-in drivers: `sqlite3` always, `psycopg2`/`postgres` with the
//! `postgres` feature.

use std::sync::Arc;

use crate::dbapi::DbApiModule;

#[cfg(feature = "postgres")]
pub mod postgres;
pub mod sqlite;

/// The modules registered before any user registration.
pub(crate) fn builtin_modules() -> Vec<(&'static str, Arc<dyn DbApiModule>)> {
    #[allow(unused_mut)]
    let mut modules: Vec<(&'static str, Arc<dyn DbApiModule>)> =
        vec![("sqlite3", Arc::new(sqlite::SqliteModule))];
    #[cfg(feature = "postgres")]
    for name in ["psycopg2", "postgres"] {
        modules.push((name, Arc::new(postgres::PostgresModule::named(name))));
    }
    modules
}
