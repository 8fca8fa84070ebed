//! The built-in drivers: `sqlite3` always, `psycopg2`/`postgres` with the
//! `postgres` feature, `pymysql`/`MySQLdb`/`mysql.connector`/`mysql` with
//! the `mysql` feature.

use std::sync::Arc;

use crate::dbapi::DbApiModule;

#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) mod pyformat;
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
    #[cfg(feature = "mysql")]
    for name in mysql::MODULE_NAMES {
        modules.push((name, Arc::new(mysql::MysqlModule::named(name))));
    }
    modules
}
