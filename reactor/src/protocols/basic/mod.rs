//! Basic protocols: lines, netstrings and int-prefixed strings. Mirrors
//! `twisted.protocols.basic`.
//!
//! Twisted's user subclasses `LineReceiver` and overrides `lineReceived`.
//! Here the user implements a handler trait ([`LineReceiver`],
//! [`LineOnlyReceiver`], [`StringReceiver`]) and wraps it in the matching
//! protocol ([`LineReceiverProtocol`], [`LineOnlyReceiverProtocol`],
//! [`NetstringReceiverProtocol`], [`Int32StringReceiverProtocol`]...),
//! which owns the buffer and is the [`Protocol`](crate::protocol::Protocol)
//! a factory returns. Each callback gets a handle ([`LineHandle`],
//! [`LineOnlyHandle`], [`StringHandle`]) with what Twisted's code calls on
//! `self`: `send_line`/`send_string`, `set_raw_mode`, `pause_producing`,
//! the transport. Twisted's class attributes `delimiter` and `MAX_LENGTH`
//! are the handler trait's associated constants, overridable per
//! connection.
//!
//! | Twisted | here |
//! |---|---|
//! | `LineReceiver` | [`LineReceiver`] + [`LineReceiverProtocol`] + [`LineHandle`] |
//! | `LineOnlyReceiver` | [`LineOnlyReceiver`] + [`LineOnlyReceiverProtocol`] + [`LineOnlyHandle`] |
//! | `NetstringReceiver`, `NetstringParseError` | [`StringReceiver`] + [`NetstringReceiverProtocol`], [`NetstringParseError`] |
//! | `Int32StringReceiver`, `Int16StringReceiver`, `Int8StringReceiver`, `StringTooLongError` | [`StringReceiver`] + [`Int32StringReceiverProtocol`], [`Int16StringReceiverProtocol`], [`Int8StringReceiverProtocol`], [`StringTooLongError`] |

mod int_n;
mod line_only;
mod line_receiver;
mod netstring;
mod string_receiver;

pub use int_n::{
    Int16StringReceiverProtocol, Int32StringReceiverProtocol, Int8StringReceiverProtocol, IntN,
    StringTooLongError,
};
pub use line_only::{LineOnlyHandle, LineOnlyReceiver, LineOnlyReceiverProtocol};
pub use line_receiver::{LineHandle, LineReceiver, LineReceiverProtocol};
pub use netstring::{Netstring, NetstringParseError, NetstringReceiverProtocol};
pub use string_receiver::{Framing, StringHandle, StringReceiver, StringReceiverProtocol};

/// The index of the first `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    let mut from = 0;
    while let Some(i) = haystack[from..].iter().position(|&b| b == first) {
        let at = from + i;
        if haystack.len() - at < needle.len() {
            return None;
        }
        if &haystack[at + 1..at + needle.len()] == rest {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// The index of the last `needle` in `haystack`.
fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    (0..=haystack.len() - needle.len())
        .rev()
        .find(|&i| &haystack[i..i + needle.len()] == needle)
}
