//! PEP 249 (DB-API 2.0) rendered in Rust.
//!
//! | PEP 249 | here |
//! |---|---|
//! | a driver module (`sqlite3`, `psycopg2`) | a [`DbApiModule`], found by name in the [`registry`](register_module) |
//! | `module.connect(*args, **kwargs)` | [`DbApiModule::connect`] with [`ConnectArgs`], or [`connect`] |
//! | `apilevel`, `threadsafety`, `paramstyle` | methods of [`DbApiModule`] |
//! | `Connection` (`cursor`, `commit`, `rollback`, `close`) | [`DbConnection`] |
//! | `Cursor` (`execute`, `executemany`, `fetchone`, `fetchmany`, `fetchall`, `rowcount`, `description`, `lastrowid`, `arraysize`, `close`) | [`Cursor`] |
//! | the exceptions | [`DbError`] with [`ErrorKind`], and one type per kind ([`IntegrityError`], ...) |
//! | rows (tuples) and values | [`Row`], [`Value`] |
//!
//! A driver implements two traits: [`DbApiModule`] (the module) and
//! [`DriverConnection`] (one open connection, executing one statement at a
//! time and returning every row at once). [`DbConnection`] and [`Cursor`]
//! add the PEP 249 surface on top, the same for every driver.
//!
//! Files: `module` (the driver traits, [`ConnectArgs`], [`connect`]),
//! `connection` ([`DbConnection`]), `cursor` ([`Cursor`]), `value`
//! ([`Value`], [`Row`], [`Params`]), `error` (the PEP 249 exceptions) and
//! `registry` (modules by name). The drivers themselves live in
//! [`crate::drivers`] and are registered from there.

mod connection;
mod cursor;
mod error;
mod module;
mod registry;
mod value;

pub use connection::DbConnection;
pub use cursor::Cursor;
pub use error::{
    DataError, DatabaseError, DbError, DbResult, ErrorDetails, ErrorKind, IntegrityError,
    InterfaceError, InternalError, NotSupportedError, OperationalError, ProgrammingError, Warning,
};
pub use module::{
    connect, ConnectArgs, ConnectError, DbApiModule, DriverConnection, StatementCanceller,
};
pub use registry::{lookup_module, register_module, registered_modules, UnknownModule};
pub(crate) use value::Quoted;
pub use value::{Column, ExecResult, FromValue, Params, Row, Value};
