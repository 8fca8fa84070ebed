//! Waiting for a connection's first byte without holding a read buffer, so
//! that an idle connection costs the peers only their task and socket (the
//! idle test measures exactly that).
//!
//! `TcpStream::readable()` alone is not enough: on a freshly accepted
//! socket it resolves at once (tokio reports readiness it has not seen
//! refuted yet), so a buffer allocated after it would be allocated for
//! every idle connection. A one-byte `try_read` tells real data from that.

use std::io;

use tokio::net::TcpStream;

/// The first byte the peer sends; `None` when it closes first.
pub async fn first_byte(stream: &TcpStream) -> io::Result<Option<u8>> {
    let mut one = [0u8; 1];
    loop {
        stream.readable().await?;
        match stream.try_read(&mut one) {
            Ok(0) => return Ok(None),
            Ok(_) => return Ok(Some(one[0])),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}
