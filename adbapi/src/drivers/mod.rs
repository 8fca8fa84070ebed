//! The built-in drivers: `sqlite3` always, `psycopg2`/`postgres` with the
//! `postgres` feature.

use std::sync::Arc;

use crate::dbapi::DbApiModule;

pub mod sqlite;

/// The modules registered before any user registration.
pub(crate) fn builtin_modules() -> Vec<(&'static str, Arc<dyn DbApiModule>)> {
    let modules: Vec<(&'static str, Arc<dyn DbApiModule>)> =
        vec![("sqlite3", Arc::new(sqlite::SqliteModule))];
    modules
}
