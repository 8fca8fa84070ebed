//! Int-prefixed strings: [`Int32StringReceiverProtocol`],
//! [`Int16StringReceiverProtocol`], [`Int8StringReceiverProtocol`]. Mirror
//! `twisted.protocols.basic.IntNStringReceiver` and its subclasses.

use crate::protocols::basic::string_receiver::{Framing, Next, Sealed, StringReceiverProtocol};

/// A string too long for the length prefix was given to `send_string`;
/// nothing was sent. Mirrors `twisted.protocols.basic.StringTooLongError`,
/// with its message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Try to send {length} bytes whereas maximum is {maximum}")]
pub struct StringTooLongError {
    /// The length of the string.
    pub length: usize,
    /// `2 ** (8 * prefix length)`, as Twisted's message gives it.
    pub maximum: u64,
}

/// A big-endian unsigned length prefix of `N` bytes (1, 2 or 4). Mirrors
/// `IntNStringReceiver.structFormat` (`"!B"`, `"!H"`, `"!I"`).
#[derive(Debug, Clone, Copy, Default)]
pub struct IntN<const N: usize>;

impl<const N: usize> Sealed for IntN<N> {}

impl<const N: usize> Framing for IntN<N> {
    fn frame(string: &[u8]) -> Result<Vec<u8>, StringTooLongError> {
        let maximum = 1u64 << (8 * N);
        let length = string.len();
        if length as u64 >= maximum {
            return Err(StringTooLongError { length, maximum });
        }
        let mut out = Vec::with_capacity(N + length);
        out.extend_from_slice(&(length as u64).to_be_bytes()[8 - N..]);
        out.extend_from_slice(string);
        Ok(out)
    }

    #[allow(private_interfaces)]
    fn next(buf: &[u8], max_length: usize) -> Next {
        if buf.len() < N {
            return Next::Need;
        }
        let length = buf[..N]
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        if length > max_length as u64 {
            return Next::LengthExceeded(length);
        }
        // `length <= max_length`, a usize.
        let end = N + length as usize;
        if buf.len() < end {
            return Next::Need;
        }
        Next::String {
            start: N,
            end,
            consumed: end,
        }
    }
}

/// A protocol for strings prefixed by their length as a 32-bit big-endian
/// integer. Mirrors `twisted.protocols.basic.Int32StringReceiver`. A prefix
/// above `MAX_LENGTH` calls `length_limit_exceeded` (default: drop the
/// connection) without buffering the announced amount.
pub type Int32StringReceiverProtocol<H> = StringReceiverProtocol<H, IntN<4>>;

/// The same with a 16-bit prefix. Mirrors `Int16StringReceiver`.
pub type Int16StringReceiverProtocol<H> = StringReceiverProtocol<H, IntN<2>>;

/// The same with an 8-bit prefix. Mirrors `Int8StringReceiver`.
pub type Int8StringReceiverProtocol<H> = StringReceiverProtocol<H, IntN<1>>;
