//! Attacks on `twisted.protocols.basic`'s ports: framing lengths at the
//! limits of the integer types (Twisted's `NetstringReceiver` /
//! `IntNStringReceiver` `_checkStringSize` and `MAX_LENGTH` handling).

use reactor::prelude::*;
use reactor::protocols::basic::{
    Int32StringReceiverProtocol, NetstringReceiverProtocol, StringHandle, StringReceiver,
};
use reactor::testing::{StringTransport, StringTransportWithDisconnection};

#[derive(Default)]
struct Unlimited {
    received: Vec<Vec<u8>>,
}

impl StringReceiver for Unlimited {
    fn connection_made(&mut self, conn: &StringHandle) {
        conn.set_max_length(usize::MAX);
    }
    fn string_received(&mut self, s: &[u8], _: &StringHandle) {
        self.received.push(s.to_vec());
    }
}

/// With `MAX_LENGTH` raised to `usize::MAX`, a netstring announcing the
/// largest length is a protocol error that drops the connection, not an
/// arithmetic overflow (a panic) in the parser.
#[test]
fn a_netstring_length_near_usize_max_is_refused_without_overflow() {
    let c = StringTransportWithDisconnection::connect_with(
        NetstringReceiverProtocol::new(Unlimited::default()),
        StringTransport::new(),
    );
    let len = usize::MAX.to_string();
    let data = format!("{len}:abc");
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        c.protocol_mut().data_received(data.as_bytes());
    }));
    assert!(r.is_ok(), "the parser panicked");
    assert!(c.protocol().handler().received.is_empty());
    assert!(
        c.transport().disconnecting(),
        "a parse error drops the peer"
    );
}

/// An Int32 prefix of 0x7FFFFFFF with a few bytes after it: nothing is
/// delivered and the connection waits for the rest (the buffer grows only
/// with what arrives: no reservation from the prefix).
#[test]
fn a_huge_int32_prefix_with_little_data_waits_for_the_rest() {
    let c = StringTransportWithDisconnection::connect_with(
        Int32StringReceiverProtocol::new(Unlimited::default()),
        StringTransport::new(),
    );
    c.protocol_mut()
        .data_received(&0x7FFF_FFFFu32.to_be_bytes());
    for _ in 0..100 {
        c.protocol_mut().data_received(b"tiny");
    }
    assert!(c.protocol().handler().received.is_empty());
    assert!(!c.transport().disconnecting());
}
