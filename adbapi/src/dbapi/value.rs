//! Dynamic values, rows and query parameters.

use std::fmt;
use std::ops::Index;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::error::{DbError, ErrorKind};

/// A value going to or coming from a database: the Rust rendering of the
/// Python objects a DB-API driver passes around.
///
/// | Python | `Value` |
/// |---|---|
/// | `None` | `Null` |
/// | `bool` | `Bool` |
/// | `int` | `Int` |
/// | `float` | `Float` |
/// | `str` | `Text` |
/// | `bytes` | `Bytes` |
///
/// `Display` prints a value as Python's `print(value)` does for text (the
/// text itself, no quotes) and numbers; `Debug` keeps the quotes:
///
/// ```
/// use adbapi::Value;
/// let v = Value::from("bob");
/// assert_eq!(v.to_string(), "bob");
/// assert_eq!(format!("{v:?}"), r#"Text("bob")"#);
/// assert_eq!(Value::from(42).to_string(), "42");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating point number.
    Float(f64),
    /// Text.
    Text(String),
    /// Binary data.
    Bytes(Vec<u8>),
}

impl Value {
    /// The name of the variant, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Text(_) => "text",
            Value::Bytes(_) => "bytes",
        }
    }

    /// True for `Null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            // As Python's print(row[0]): the text, unquoted.
            Value::Text(s) => f.write_str(s),
            Value::Bytes(b) => write!(f, "<{} bytes>", b.len()),
        }
    }
}

/// A value as error messages show it: text in double quotes (so `""` and
/// `" "` are visible), everything else as `Display` shows it.
pub(crate) struct Quoted<'a>(pub(crate) &'a Value);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Value::Text(s) => write!(f, "{s:?}"),
            other => fmt::Display::fmt(other, f),
        }
    }
}

macro_rules! value_from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Value::Int(i64::from(v))
            }
        }
    )*};
}
value_from_int!(i8, i16, i32, i64, u8, u16, u32);

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}
impl From<f32> for Value {
    fn from(v: f32) -> Self {
        Value::Float(f64::from(v))
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Bytes(v)
    }
}
impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Self {
        Value::Bytes(v.to_vec())
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// Conversion out of a [`Value`], for [`Row::get`].
pub trait FromValue: Sized {
    /// Converts, or says why not.
    fn from_value(v: &Value) -> Result<Self, DbError>;
}

fn mismatch<T>(v: &Value, want: &str) -> Result<T, DbError> {
    Err(DbError::new(
        ErrorKind::DataError,
        format!("cannot convert {} value {v} to {want}", v.type_name()),
    ))
}

impl FromValue for Value {
    fn from_value(v: &Value) -> Result<Self, DbError> {
        Ok(v.clone())
    }
}

impl FromValue for i64 {
    fn from_value(v: &Value) -> Result<Self, DbError> {
        match v {
            Value::Int(i) => Ok(*i),
            Value::Bool(b) => Ok(i64::from(*b)),
            _ => mismatch(v, "i64"),
        }
    }
}

macro_rules! from_value_int {
    ($($t:ty),*) => {$(
        impl FromValue for $t {
            fn from_value(v: &Value) -> Result<Self, DbError> {
                let i = i64::from_value(v)?;
                <$t>::try_from(i).or_else(|_| mismatch(v, stringify!($t)))
            }
        }
    )*};
}
from_value_int!(i8, i16, i32, u8, u16, u32, u64, usize);

impl FromValue for f64 {
    fn from_value(v: &Value) -> Result<Self, DbError> {
        match v {
            Value::Float(x) => Ok(*x),
            // Integers convert exactly up to 2^53; beyond that as f64 does.
            #[allow(clippy::cast_precision_loss)]
            Value::Int(i) => Ok(*i as f64),
            _ => mismatch(v, "f64"),
        }
    }
}

impl FromValue for bool {
    fn from_value(v: &Value) -> Result<Self, DbError> {
        match v {
            Value::Bool(b) => Ok(*b),
            Value::Int(0) => Ok(false),
            Value::Int(1) => Ok(true),
            _ => mismatch(v, "bool"),
        }
    }
}

impl FromValue for String {
    fn from_value(v: &Value) -> Result<Self, DbError> {
        match v {
            Value::Text(s) => Ok(s.clone()),
            _ => mismatch(v, "String"),
        }
    }
}

impl FromValue for Vec<u8> {
    fn from_value(v: &Value) -> Result<Self, DbError> {
        match v {
            Value::Bytes(b) => Ok(b.clone()),
            Value::Text(s) => Ok(s.as_bytes().to_vec()),
            _ => mismatch(v, "Vec<u8>"),
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Result<Self, DbError> {
        match v {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// One column of a result, as in `cursor.description`: PEP 249's 7-item
/// sequence, of which drivers here fill `name` and, where known, `type_code`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// The column's name.
    pub name: String,
    /// The driver's type name, if it reports one (PostgreSQL does; SQLite does
    /// not, as in Python).
    pub type_code: Option<String>,
}

/// One row of a result: Python's tuple. Index it (`row[0]`) for the
/// [`Value`], or convert with [`get`](Row::get).
///
/// ```
/// use adbapi::{Row, Value};
/// let row = Row::new(vec![Value::Int(7), Value::Text("x".into()), Value::Null]);
/// assert_eq!(row.get::<i64>(0).unwrap(), 7);
/// assert_eq!(row.get::<String>(1).unwrap(), "x");
/// assert_eq!(row.get::<Option<i64>>(2).unwrap(), None);
/// assert!(row.get::<i64>(1).is_err()); // DataError naming both types
/// assert!(row.get::<i64>(9).is_err()); // column index out of range
/// ```
///
/// A row fetched through a [`Cursor`](super::Cursor) also knows its
/// columns' names, so [`get_by_name`](Row::get_by_name) reads it as a
/// pymysql `DictCursor` row (`row["title"]`) or a `sqlite3.Row` is read, with
/// every driver. Rows compare by their values only.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    values: Vec<Value>,
    /// The result's description, shared by its rows; not serialised.
    #[serde(skip)]
    columns: Option<Arc<[Column]>>,
}

impl PartialEq for Row {
    fn eq(&self, other: &Self) -> bool {
        self.values == other.values
    }
}

impl Row {
    /// A row of these values.
    pub fn new(values: Vec<Value>) -> Self {
        Row {
            values,
            columns: None,
        }
    }

    /// The row with its columns' description attached (done by the cursor),
    /// so it can be read by name.
    pub fn with_columns(mut self, columns: Arc<[Column]>) -> Self {
        self.columns = Some(columns);
        self
    }

    /// The columns' description, if the row came through a cursor.
    pub fn columns(&self) -> Option<&[Column]> {
        self.columns.as_deref()
    }

    /// The value in the column named `name` converted to `T`: pymysql's
    /// `DictCursor` row `row[name]`, psycopg2's `DictRow`, `sqlite3.Row`'s
    /// `row[name]`. Names match exactly, for every driver (`sqlite3.Row` also
    /// matches ignoring ASCII case; here write the name as the query spells
    /// it). The first column of a name wins; pymysql's `DictCursor` keys a
    /// later duplicate `table.column` instead: alias it in the SQL
    /// (`b.id AS b_id`). A typed `InterfaceError` says when no column has
    /// that name (listing those there are) or the row has no description.
    ///
    /// ```
    /// use adbapi::dbapi::connect;
    /// let conn = connect("sqlite3", &[":memory:".into()], &[]).unwrap();
    /// let mut cur = conn.execute("SELECT 7 AS id, 'x' AS title", ()).unwrap();
    /// let row = cur.fetchone().unwrap().unwrap();
    /// assert_eq!(row.get_by_name::<String>("title").unwrap(), "x");
    /// assert!(row.get_by_name::<i64>("nope").is_err());
    /// ```
    pub fn get_by_name<T: FromValue>(&self, name: &str) -> Result<T, DbError> {
        let Some(columns) = self.columns.as_deref() else {
            return Err(DbError::new(
                ErrorKind::InterfaceError,
                format!("column {name:?}: this row carries no column names (it was not fetched through a cursor)"),
            ));
        };
        let index = columns.iter().position(|c| c.name == name).ok_or_else(|| {
            DbError::new(
                ErrorKind::InterfaceError,
                format!(
                    "no column named {name:?} (columns: {})",
                    columns
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
        let v = self.values.get(index).ok_or_else(|| {
            DbError::new(
                ErrorKind::InterfaceError,
                format!("column {name:?} missing from the row"),
            )
        })?;
        T::from_value(v).map_err(|e| e.context(format!("column {name:?}")))
    }

    /// The value in column `index` converted to `T`; a typed error names the
    /// column and both types when it cannot.
    pub fn get<T: FromValue>(&self, index: usize) -> Result<T, DbError> {
        let v = self.values.get(index).ok_or_else(|| {
            DbError::new(
                ErrorKind::InterfaceError,
                format!(
                    "column index {index} out of range for a row of {} columns",
                    self.values.len()
                ),
            )
        })?;
        T::from_value(v).map_err(|e| e.context(format!("column {index}")))
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True for a row of no columns.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The values.
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// The values, owned.
    pub fn into_values(self) -> Vec<Value> {
        self.values
    }
}

impl Index<usize> for Row {
    type Output = Value;
    fn index(&self, index: usize) -> &Value {
        &self.values[index]
    }
}

impl From<Vec<Value>> for Row {
    fn from(values: Vec<Value>) -> Self {
        Row::new(values)
    }
}

/// Query parameters: Python's sequence (positional, for `?`/`%s`/`$1`
/// placeholders) or mapping (named, for `:name`/`%(name)s`). They are always
/// bound by the driver, never spliced into the SQL text.
///
/// Converts from `()`, tuples of up to 8 values, `Vec`s and arrays of values,
/// and [`Params::named`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub enum Params {
    /// No parameters.
    #[default]
    None,
    /// Positional parameters.
    Positional(Vec<Value>),
    /// Named parameters, names without their sigil (`"x"` for `:x`).
    Named(Vec<(String, Value)>),
}

impl Params {
    /// Named parameters from `(name, value)` pairs.
    pub fn named<K: Into<String>, V: Into<Value>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Params::Named(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }

    /// How many values.
    pub fn len(&self) -> usize {
        match self {
            Params::None => 0,
            Params::Positional(v) => v.len(),
            Params::Named(v) => v.len(),
        }
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<()> for Params {
    fn from((): ()) -> Self {
        Params::None
    }
}

impl<T: Into<Value>> From<Vec<T>> for Params {
    fn from(v: Vec<T>) -> Self {
        Params::Positional(v.into_iter().map(Into::into).collect())
    }
}

impl<T: Into<Value>, const N: usize> From<[T; N]> for Params {
    fn from(v: [T; N]) -> Self {
        Params::Positional(v.into_iter().map(Into::into).collect())
    }
}

macro_rules! params_from_tuple {
    ($($name:ident),+) => {
        impl<$($name: Into<Value>),+> From<($($name,)+)> for Params {
            #[allow(non_snake_case)]
            fn from(($($name,)+): ($($name,)+)) -> Self {
                Params::Positional(vec![$($name.into()),+])
            }
        }
    };
}
params_from_tuple!(A);
params_from_tuple!(A, B);
params_from_tuple!(A, B, C);
params_from_tuple!(A, B, C, D);
params_from_tuple!(A, B, C, D, E);
params_from_tuple!(A, B, C, D, E, F);
params_from_tuple!(A, B, C, D, E, F, G);
params_from_tuple!(A, B, C, D, E, F, G, H);

/// The result of one `execute` in a driver.
#[derive(Debug, Clone, Default)]
pub struct ExecResult {
    /// Column descriptions, `None` for statements that return no rows.
    pub description: Option<Arc<[Column]>>,
    /// Every row the statement returned (fetched eagerly, as psycopg2's
    /// client-side cursors do).
    pub rows: Vec<Row>,
    /// Rows changed, or -1 when not applicable (PEP 249).
    pub rowcount: i64,
    /// The row id of the last inserted row, where the driver has one.
    pub lastrowid: Option<i64>,
}
