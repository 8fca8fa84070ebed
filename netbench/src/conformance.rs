//! A conformance check of a line server against the protocol in
//! [`crate::users`], run before it is measured, so that every server in a
//! comparison (ours, tokio's, Twisted's) is known to give the same answers:
//! known ids, unknown ids, malformed lines, a request split across two
//! writes, and an overlong line (the connection is dropped, as Twisted's
//! `LineReceiver.lineLengthExceeded` does). One request in flight per
//! connection, as the load generator sends them.

use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddrV4, TcpStream};
use std::time::Duration;

use crate::users;

/// What a server got wrong.
#[derive(Debug, thiserror::Error)]
pub enum Violation {
    /// The socket failed (connect, write, read, or a timeout).
    #[error("{case}: {source}")]
    Io {
        /// The case being checked.
        case: String,
        /// The error.
        source: io::Error,
    },
    /// A reply other than the one the protocol prescribes.
    #[error("{case}: replied {got:?}, expected {want:?}")]
    WrongReply {
        /// The case being checked.
        case: String,
        /// What the server sent.
        got: String,
        /// What it should have sent.
        want: String,
    },
    /// The server kept a connection whose line exceeded the limit.
    #[error("a {len}-byte line did not drop the connection (limit {max})", max = users::MAX_LINE)]
    KeptOverlong {
        /// The length sent.
        len: usize,
    },
}

fn io_err(case: &str) -> impl FnOnce(io::Error) -> Violation + '_ {
    move |source| Violation::Io {
        case: case.to_owned(),
        source,
    }
}

fn connect(target: SocketAddrV4, timeout: Duration) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&target.into(), timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Reads one `\n`-terminated reply (at most 1 KiB).
fn read_reply(s: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    while reply.last() != Some(&b'\n') && reply.len() < 1024 {
        if s.read(&mut byte)? == 0 {
            break;
        }
        reply.push(byte[0]);
    }
    Ok(reply)
}

fn exchange(s: &mut TcpStream, case: &str, writes: &[&[u8]], want: &[u8]) -> Result<(), Violation> {
    for w in writes {
        s.write_all(w).map_err(io_err(case))?;
        // Separate segments, so the server sees the line in pieces.
        std::thread::sleep(Duration::from_millis(5));
    }
    let got = read_reply(s).map_err(io_err(case))?;
    if got != want {
        return Err(Violation::WrongReply {
            case: case.to_owned(),
            got: String::from_utf8_lossy(&got).into_owned(),
            want: String::from_utf8_lossy(want).into_owned(),
        });
    }
    Ok(())
}

/// Checks the line server at `target`, whose table holds ids
/// `1..=users`; every read waits at most `timeout`.
pub fn check_line_server(
    target: SocketAddrV4,
    users: u32,
    timeout: Duration,
) -> Result<(), Violation> {
    let mut s = connect(target, timeout).map_err(io_err("connect"))?;
    for id in [1, users] {
        let (mut req, mut want) = (Vec::new(), Vec::new());
        users::write_request(&mut req, id);
        users::write_reply(&mut want, id, &users::name_of(id));
        exchange(&mut s, &format!("known id {id}"), &[&req], &want)?;
    }
    let unknown = users.saturating_add(1);
    let (mut req, mut want) = (Vec::new(), Vec::new());
    users::write_request(&mut req, unknown);
    users::write_unknown(&mut want, unknown);
    exchange(&mut s, &format!("unknown id {unknown}"), &[&req], &want)?;
    for bad in [
        &b"hello\r\n"[..],
        b"user\r\n",
        b"user x\r\n",
        b"user -1\r\n",
    ] {
        let case = format!("malformed {:?}", String::from_utf8_lossy(bad));
        exchange(&mut s, &case, &[bad], users::BAD_REQUEST)?;
    }
    let id = 1.max(users / 2);
    let (mut req, mut want) = (Vec::new(), Vec::new());
    users::write_request(&mut req, id);
    users::write_reply(&mut want, id, &users::name_of(id));
    let (head, tail) = req.split_at(3);
    exchange(
        &mut s,
        "a request split across two writes",
        &[head, tail],
        &want,
    )?;
    drop(s);
    check_overlong(target, timeout)
}

fn check_overlong(target: SocketAddrV4, timeout: Duration) -> Result<(), Violation> {
    let case = "overlong line";
    let mut s = connect(target, timeout).map_err(io_err(case))?;
    let len = users::MAX_LINE + 1024;
    let mut line = vec![b'x'; len];
    line.extend_from_slice(b"\r\n");
    // The server may close before reading it all: a failed write is a pass.
    if s.write_all(&line).is_err() {
        return Ok(());
    }
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(()),
            // An error reply before closing is allowed; keep reading.
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(Violation::KeptOverlong { len })
            }
            // Closed with unread data: the kernel resets the connection.
            Err(_) => return Ok(()),
        }
    }
}
