//! The tokio peer of our database-backed line server: per request line,
//! the point select runs on tokio's blocking pool (`spawn_blocking`), each
//! blocking thread with a SQLite connection of its own made the first time
//! it needs one (as adbapi's pool threads do), and the reply is written
//! when the query is done. Requests on one connection are answered in
//! order, one at a time, like Twisted's `LineReceiver` under a closed-loop
//! client.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::Connection;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::first_byte::first_byte;
use crate::users;

thread_local! {
    /// This blocking thread's connection; `None` until its first query.
    static CONN: RefCell<Option<Connection>> = const { RefCell::new(None) };
}

fn query_on_this_thread(db: &Path, id: u32) -> rusqlite::Result<Option<String>> {
    CONN.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(Connection::open(db)?);
        }
        let conn = slot.as_ref().expect("opened above");
        users::lookup(conn, id)
    })
}

/// The reply to one request line (without its `\r\n`), appended to `out`.
async fn answer(db: &Arc<PathBuf>, line: &[u8], out: &mut Vec<u8>) {
    let Some(id) = users::parse_request(line) else {
        out.extend_from_slice(users::BAD_REQUEST);
        return;
    };
    let db = Arc::clone(db);
    match tokio::task::spawn_blocking(move || query_on_this_thread(&db, id)).await {
        Ok(Ok(Some(name))) => users::write_reply(out, id, &name),
        Ok(Ok(None)) => users::write_unknown(out, id),
        Ok(Err(e)) => {
            tracing::error!("user {id}: {e}");
            out.extend_from_slice(users::INTERNAL_ERROR);
        }
        Err(e) => {
            tracing::error!("user {id}: query task: {e}");
            out.extend_from_slice(users::INTERNAL_ERROR);
        }
    }
}

/// Serves one connection until the client closes it, sends a line longer
/// than [`users::MAX_LINE`], or the socket fails.
pub async fn serve_connection(stream: TcpStream, db: Arc<PathBuf>) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::warn!("TCP_NODELAY: {e}");
    }
    let mut pending = match first_byte(&stream).await {
        Ok(Some(b)) => Some(b),
        Ok(None) => return,
        Err(e) => {
            tracing::debug!("read: {e}");
            return;
        }
    };
    let mut stream = BufReader::with_capacity(4096, stream);
    let (mut line, mut reply) = (Vec::new(), Vec::new());
    let limit = users::MAX_LINE + 2;
    loop {
        line.clear();
        line.extend(pending.take());
        if line.last() != Some(&b'\n') {
            let room = (limit - line.len()) as u64;
            match (&mut stream).take(room).read_until(b'\n', &mut line).await {
                Ok(0) if line.is_empty() => return,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!("read: {e}");
                    return;
                }
            }
        }
        if line.last() != Some(&b'\n') {
            if line.len() >= limit {
                tracing::warn!(
                    "line longer than {} bytes: dropping the connection",
                    users::MAX_LINE
                );
            }
            // Too long, or the peer closed in the middle of a line.
            return;
        }
        let body = line.strip_suffix(b"\r\n").unwrap_or(&line);
        reply.clear();
        answer(&db, body, &mut reply).await;
        if let Err(e) = stream.get_mut().write_all(&reply).await {
            tracing::debug!("write: {e}");
            return;
        }
    }
}

/// Accepts connections on `listener` for ever, one task per connection.
pub async fn serve(listener: TcpListener, db: PathBuf) {
    let db = Arc::new(db);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_connection(stream, Arc::clone(&db)));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}
