//! The tokio echo peer: every byte read is written back, one read buffer
//! per connection, allocated when its first byte arrives.

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::first_byte::first_byte;

/// Bytes read at most per `read` call.
const READ_BUFFER: usize = 16 * 1024;

/// Echoes one connection until the client closes it or the socket fails.
pub async fn serve_connection(mut stream: TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::warn!("TCP_NODELAY: {e}");
    }
    let first = match first_byte(&stream).await {
        Ok(Some(b)) => b,
        Ok(None) => return,
        Err(e) => {
            tracing::debug!("read: {e}");
            return;
        }
    };
    if let Err(e) = stream.write_all(&[first]).await {
        tracing::debug!("write: {e}");
        return;
    }
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) => {
                tracing::debug!("read: {e}");
                return;
            }
        };
        if let Err(e) = stream.write_all(&buf[..n]).await {
            tracing::debug!("write: {e}");
            return;
        }
    }
}

/// Accepts connections on `listener` for ever, one task per connection.
pub async fn serve(listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_connection(stream));
            }
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}
