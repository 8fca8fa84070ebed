//! The benchmark's table and wire protocol, shared by every line server
//! (ours, the tokio peer, the Twisted peer in `netbench/twisted/`) and by
//! the load generator that checks their answers.
//!
//! Request: `user <id>\r\n`. Reply: `<id> <name>\r\n` for a known id,
//! `error unknown user <id>\r\n` for an unknown one, `error bad request\r\n`
//! for anything else. The table is `users(id INTEGER PRIMARY KEY, name TEXT
//! NOT NULL)` with ids `1..=count` and `name = user<id>`, in WAL mode.

use std::io::Write as _;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension as _};

/// The point select every line server runs per request.
pub const QUERY: &str = "SELECT name FROM users WHERE id = ?";

/// Longest request line a server accepts, without its `\r\n` (Twisted's
/// `LineReceiver.MAX_LENGTH`); a longer one drops the connection.
pub const MAX_LINE: usize = 16_384;

/// Default number of rows.
pub const DEFAULT_USERS: u32 = 10_000;

/// The name stored for `id`: every reply carries its id, so a row from the
/// wrong id cannot pass for the right one.
pub fn name_of(id: u32) -> String {
    format!("user{id}")
}

/// Appends the request line for `id` to `out`.
pub fn write_request(out: &mut Vec<u8>, id: u32) {
    // Writing to a Vec cannot fail.
    let _ = write!(out, "user {id}\r\n");
}

/// Appends the reply a correct server gives for a known `id` to `out`.
pub fn write_reply(out: &mut Vec<u8>, id: u32, name: &str) {
    let _ = write!(out, "{id} {name}\r\n");
}

/// Appends the reply for an id the table does not hold.
pub fn write_unknown(out: &mut Vec<u8>, id: u32) {
    let _ = write!(out, "error unknown user {id}\r\n");
}

/// The reply to a line that is not `user <id>`.
pub const BAD_REQUEST: &[u8] = b"error bad request\r\n";

/// The reply when the query itself failed (logged by the server).
pub const INTERNAL_ERROR: &[u8] = b"error internal\r\n";

/// The id asked for by a request line (without its `\r\n`), or `None`
/// when the line is not `user <decimal id>`.
pub fn parse_request(line: &[u8]) -> Option<u32> {
    let digits = line.strip_prefix(b"user ")?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Why the benchmark database could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// SQLite refused a statement.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The file system or SQLite build does not allow WAL mode.
    #[error("PRAGMA journal_mode=WAL left the database in mode {0:?}")]
    NotWal(String),
}

/// Makes the benchmark database at `path` from scratch: removes any old
/// file (and its `-wal`/`-shm`), creates the table in WAL mode and fills
/// ids `1..=count` in one transaction.
pub fn create_db(path: &Path, count: u32) -> Result<(), SetupError> {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        // A missing file is what we want; any other failure shows up when
        // the database is opened below.
        let _ = std::fs::remove_file(p);
    }
    let mut conn = Connection::open(path)?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(SetupError::NotWal(mode));
    }
    conn.execute_batch("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")?;
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare("INSERT INTO users (id, name) VALUES (?, ?)")?;
        for id in 1..=count {
            insert.execute((id, name_of(id)))?;
        }
    }
    tx.commit()?;
    // Leave the rows in the main file so every server starts from the same
    // state, whatever order they open it in.
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
    Ok(())
}

/// The name for `id`, `None` if the table does not hold it (the servers'
/// [`QUERY`], through the connection's statement cache).
pub fn lookup(conn: &Connection, id: u32) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached(QUERY)?
        .query_row([id], |r| r.get(0))
        .optional()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_only_in_the_documented_form() {
        let mut line = Vec::new();
        write_request(&mut line, 42);
        assert_eq!(line, b"user 42\r\n");
        assert_eq!(parse_request(&line[..line.len() - 2]), Some(42));
        for bad in [
            &b"user"[..],
            b"user ",
            b"user -1",
            b"user 1 2",
            b"USER 1",
            b"user 99999999999",
        ] {
            assert_eq!(
                parse_request(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn the_database_holds_every_id_and_only_those() {
        let dir = std::env::temp_dir().join(format!("netbench-users-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("users.db");
        create_db(&path, 100).unwrap();
        // A second run starts over rather than failing on the existing table.
        create_db(&path, 100).unwrap();
        let conn = Connection::open(&path).unwrap();
        assert_eq!(lookup(&conn, 1).unwrap().as_deref(), Some("user1"));
        assert_eq!(lookup(&conn, 100).unwrap().as_deref(), Some("user100"));
        assert_eq!(lookup(&conn, 101).unwrap(), None);
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        drop(conn);
        let _ = std::fs::remove_dir_all(dir);
    }
}
