//! The built-in drivers, one folder each: `sqlite` (`sqlite3`, always) and
//! `postgres` (`psycopg2`/`postgres`, with the `postgres` feature). Each
//! driver implements [`DbApiModule`](crate::dbapi::DbApiModule) and lists
//! the names it registers under in a `modules()` function, which the crate
//! root installs in the registry. A new driver (MySQL is next, behind a
//! `mysql` feature) adds its folder here and one line in `builtin_modules`
//! in `lib.rs`.

#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
pub mod sqlite;
