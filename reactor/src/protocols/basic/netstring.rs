//! [`NetstringReceiverProtocol`]: `<length>:<bytes>,` strings. Mirrors
//! `twisted.protocols.basic.NetstringReceiver`
//! (<http://cr.yp.to/proto/netstrings.txt>).

use crate::protocols::basic::int_n::StringTooLongError;
use crate::protocols::basic::string_receiver::{Framing, Next, Sealed, StringReceiverProtocol};

/// Why received bytes are not a netstring; the connection is dropped (as
/// Twisted's `_handleParseError`) and the handle's
/// [`broken_peer`](super::StringHandle::broken_peer) turns true. Mirrors
/// `twisted.protocols.basic.NetstringParseError`, with its messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetstringParseError {
    /// No digits (or a leading zero followed by more digits) where the
    /// length should be. Mirrors `_MISSING_LENGTH`.
    #[error("The received netstring does not start with a length specification.")]
    MissingLength,
    /// The announced length is above `MAX_LENGTH` (or has more digits than
    /// `MAX_LENGTH` could need). Mirrors `_TOO_LONG`.
    #[error(
        "The received netstring is longer than the maximum {max} specified by self.MAX_LENGTH"
    )]
    TooLong {
        /// The `MAX_LENGTH` in force.
        max: usize,
    },
    /// The payload is not followed by a comma. Mirrors `_MISSING_COMMA`.
    #[error("The received netstring is not terminated by a comma.")]
    MissingComma,
}

/// The netstring wire format, `b"5:hello,"`. See
/// [`NetstringReceiverProtocol`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Netstring;

impl Sealed for Netstring {}

fn decimal_digits(mut n: usize) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

impl Framing for Netstring {
    fn frame(string: &[u8]) -> Result<Vec<u8>, StringTooLongError> {
        let len = string.len().to_string();
        let mut out = Vec::with_capacity(len.len() + string.len() + 2);
        out.extend_from_slice(len.as_bytes());
        out.push(b':');
        out.extend_from_slice(string);
        out.push(b',');
        Ok(out)
    }

    #[allow(private_interfaces)]
    fn next(buf: &[u8], max_length: usize) -> Next {
        let Some(&first) = buf.first() else {
            return Next::Need;
        };
        if !first.is_ascii_digit() {
            return Next::ParseError(NetstringParseError::MissingLength);
        }
        let digits = if first == b'0' {
            1
        } else {
            buf.iter().take_while(|b| b.is_ascii_digit()).count()
        };
        // "01:" or "3a": Twisted's length patterns match neither.
        if buf.get(digits).is_some_and(|&b| b != b':') {
            return Next::ParseError(NetstringParseError::MissingLength);
        }
        // Twisted's `_checkStringSize`: refuse an absurd number of digits
        // before converting them (a 20-digit length is refused here, not
        // overflowed).
        let too_long = Next::ParseError(NetstringParseError::TooLong { max: max_length });
        if digits > decimal_digits(max_length) + 1 {
            return too_long;
        }
        let mut length: u64 = 0;
        for &b in &buf[..digits] {
            length = match length
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(b - b'0')))
            {
                Some(n) => n,
                None => return too_long,
            };
        }
        if length > max_length as u64 {
            return too_long;
        }
        if buf.len() == digits {
            return Next::Need;
        }
        let start = digits + 1;
        // With `MAX_LENGTH` raised to `usize::MAX` the end can overflow; no
        // buffer could hold such a string anyway.
        let Some(end) = usize::try_from(length)
            .ok()
            .and_then(|l| start.checked_add(l))
            .filter(|&e| e < usize::MAX)
        else {
            return too_long;
        };
        match buf.get(end) {
            None => Next::Need,
            Some(b',') => Next::String {
                start,
                end,
                consumed: end + 1,
            },
            Some(_) => Next::ParseError(NetstringParseError::MissingComma),
        }
    }
}

/// A protocol that receives and sends netstrings for a
/// [`StringReceiver`](super::StringReceiver) handler. Mirrors
/// `twisted.protocols.basic.NetstringReceiver`: a malformed netstring
/// (no length, a length above `MAX_LENGTH`, a missing comma) drops the
/// connection.
///
/// # Examples
///
/// ```
/// use reactor::protocols::basic::{NetstringReceiverProtocol, StringHandle, StringReceiver};
/// use reactor::testing::StringTransportWithDisconnection;
///
/// #[derive(Default)]
/// struct Collect(Vec<Vec<u8>>);
/// impl StringReceiver for Collect {
///     fn string_received(&mut self, s: &[u8], _: &StringHandle) { self.0.push(s.to_vec()); }
/// }
/// let conn = StringTransportWithDisconnection::connect(
///     NetstringReceiverProtocol::new(Collect::default()));
/// conn.data_received(b"5:hello,0:,");
/// assert_eq!(conn.protocol().handler().0, vec![b"hello".to_vec(), vec![]]);
/// conn.data_received(b"2:abc,"); // one byte too many: no comma where expected
/// assert!(!conn.connected());
/// ```
pub type NetstringReceiverProtocol<H> = StringReceiverProtocol<H, Netstring>;
