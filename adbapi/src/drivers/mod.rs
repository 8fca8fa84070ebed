//! The built-in drivers, one folder each: `sqlite` (`sqlite3`, always) and
//! `postgres` (`psycopg2`/`postgres`, with the `postgres` feature) and `mysql`
//! (`pymysql`/`MySQLdb`/`mysql.connector`/`mysql`, with the `mysql` feature). Each
//! driver implements [`DbApiModule`](crate::dbapi::DbApiModule) and lists
//! the names it registers under in a `modules()` function, which the crate
//! root installs in the registry. A new driver adds its folder here and one
//! line in `builtin_modules` in `lib.rs`.

#[cfg(feature = "mysql")]
#[cfg_attr(docsrs, doc(cfg(feature = "mysql")))]
pub mod mysql;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) mod pyformat;
pub mod sqlite;
