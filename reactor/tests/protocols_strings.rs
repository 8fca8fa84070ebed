//! Length-prefixed string protocols on a `StringTransport`: ports of
//! Twisted's `twisted.protocols.test.test_basic` `NetstringReceiverTests`,
//! `IntNTestCaseMixin` / `RecvdAttributeMixin` (as `Int32Tests`,
//! `Int16Tests`, `Int8Tests`), as `twisted.protocols.basic.NetstringReceiver`
//! and `IntNStringReceiver` implement them; then attacks (absurd, negative
//! and non-digit netstring lengths, a 0xFFFFFFFF int32 prefix).

use std::rc::Rc;

use reactor::prelude::*;
use reactor::protocols::basic::{
    Framing, Int16StringReceiverProtocol, Int32StringReceiverProtocol, Int8StringReceiverProtocol,
    IntN, NetstringReceiverProtocol, StringHandle, StringReceiver, StringReceiverProtocol,
    StringTooLongError,
};
use reactor::testing::{StringTransport, StringTransportWithDisconnection};

/// Twisted's `TestMixin` (+ `TestNetstring`'s echo): MAX_LENGTH 50.
#[derive(Default)]
struct Tester {
    received: Vec<Vec<u8>>,
    echo: bool,
    exceeded: Vec<u64>,
    record_exceeded: bool,
    recvd_seen: Vec<Vec<u8>>,
}

impl StringReceiver for Tester {
    const MAX_LENGTH: usize = 50;
    fn string_received(&mut self, s: &[u8], conn: &StringHandle) {
        self.received.push(s.to_vec());
        self.recvd_seen.push(conn.recvd());
        if self.echo {
            conn.transport().unwrap().write(s);
        }
    }
    fn length_limit_exceeded(&mut self, length: u64, conn: &StringHandle) {
        if self.record_exceeded {
            self.exceeded.push(length);
            self.recvd_seen.push(conn.recvd());
        } else {
            conn.lose_connection();
        }
    }
}

type Conn<F> = StringTransportWithDisconnection<StringReceiverProtocol<Tester, F>>;

fn connect<F: Framing>(t: Tester) -> Conn<F> {
    StringTransportWithDisconnection::connect_with(
        StringReceiverProtocol::new(t),
        StringTransport::new(),
    )
}

/// Feeds straight to the protocol, as Twisted's tests call `dataReceived`
/// (even after the protocol asked to disconnect).
fn feed<F: Framing>(c: &Conn<F>, data: &[u8]) {
    c.protocol_mut().data_received(data);
}

fn received<F: Framing>(c: &Conn<F>) -> Vec<Vec<u8>> {
    c.protocol().handler().received.clone()
}

fn netstring() -> Conn<reactor::protocols::basic::Netstring> {
    connect(Tester {
        echo: true,
        ..Default::default()
    })
}

// Ports LPTestCaseMixin.test_illegal for NetstringReceiverTests.
#[test]
fn test_netstring_illegal() {
    for s in [
        &b"9999999999999999999999"[..],
        b"abc",
        b"4:abcde",
        b"51:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab,",
    ] {
        let c = netstring();
        for b in s {
            feed(&c, std::slice::from_ref(b));
        }
        assert!(
            c.transport().disconnecting(),
            "{:?}",
            String::from_utf8_lossy(s)
        );
        assert!(c.protocol().handle().broken_peer());
    }
}

// Ports NetstringReceiverTests.test_buffer.
#[test]
fn test_netstring_buffer() {
    let strings: Vec<Vec<u8>> = [
        &b"hello"[..],
        b"world",
        b"how",
        b"are",
        b"you123",
        b":today",
        &[b'a'; 515],
    ]
    .iter()
    .map(|s| s.to_vec())
    .collect();
    for size in 1..10 {
        let c: Conn<reactor::protocols::basic::Netstring> =
            StringTransportWithDisconnection::connect(
                NetstringReceiverProtocol::new(Tester::default()).with_max_length(699),
            );
        let h = c.protocol().handle();
        for s in &strings {
            h.send_string(s).unwrap();
        }
        let out = c.transport().take_value();
        for chunk in out.chunks(size) {
            feed(&c, chunk);
        }
        assert_eq!(received(&c), strings);
    }
}

// Ports NetstringReceiverTests.test_receiveEmptyNetstring,
// test_receiveOneCharacter, test_receiveTwoCharacters,
// test_receiveNestedNetstring.
#[test]
fn test_netstring_small_and_nested() {
    for (input, out) in [
        (&b"0:,"[..], &b""[..]),
        (b"1:a,", b"a"),
        (b"2:ab,", b"ab"),
        (b"4:1:a,,", b"1:a,"),
    ] {
        let c = netstring();
        feed(&c, input);
        assert_eq!(received(&c), vec![out.to_vec()]);
        assert!(!c.transport().disconnecting());
    }
}

// Ports test_moreDataThanSpecified, test_moreDataThanSpecifiedBorderCase,
// test_missingNumber, test_missingColon, test_missingNumberAndColon,
// test_onlyData, test_maxReceiveLimit.
#[test]
fn test_netstring_refused() {
    let too_long = [b"51:".to_vec(), vec![b'a'; 51]].concat();
    for input in [
        &b"2:aaa,"[..],
        b"0:a,",
        b":aaa,",
        b"3aaa,",
        b"aaa,",
        b"aaa",
        &too_long,
    ] {
        let c = netstring();
        feed(&c, input);
        assert!(
            c.transport().disconnecting(),
            "{:?}",
            String::from_utf8_lossy(input)
        );
        assert!(received(&c).is_empty());
    }
}

// Ports test_receiveNetstringPortions_1, _2, _3 and test_receiveTwoNetstrings.
#[test]
fn test_netstring_portions() {
    let cases: [&[&[u8]]; 3] = [
        &[b"4:aa", b"aa,"],
        &[b"1", b"0:01234", b"56789", b","],
        &[b"2", b":", b"a", b"b", b","],
    ];
    let expected: [&[u8]; 3] = [b"aaaa", b"0123456789", b"ab"];
    for (parts, out) in cases.iter().zip(expected) {
        let c = netstring();
        for p in *parts {
            feed(&c, p);
        }
        assert_eq!(received(&c), vec![out.to_vec()]);
    }
    let c = netstring();
    feed(&c, b"1:a,1");
    assert_eq!(received(&c), vec![b"a".to_vec()]);
    feed(&c, b":b,");
    assert_eq!(received(&c), vec![b"a".to_vec(), b"b".to_vec()]);
}

// Ports test_consumeLengthBorderCase1/2/3: a length equal to MAX_LENGTH is
// accepted, one above (or far above) is refused.
#[test]
fn test_netstring_length_border_cases() {
    let c: Conn<_> = StringTransportWithDisconnection::connect(
        NetstringReceiverProtocol::new(Tester::default()).with_max_length(12),
    );
    feed(&c, b"12:aaaaaaaaaaaa,");
    assert_eq!(received(&c), vec![b"a".repeat(12)]);
    for (max, input) in [(11, &b"12:"[..]), (11, b"1000:")] {
        let c: Conn<_> = StringTransportWithDisconnection::connect(
            NetstringReceiverProtocol::new(Tester::default()).with_max_length(max),
        );
        feed(&c, input);
        assert!(c.transport().disconnecting());
    }
}

// Attack: absurd, negative, leading-zero and non-digit lengths are refused
// at once, without waiting for (or allocating) the announced payload.
#[test]
fn netstring_hostile_lengths() {
    for input in [
        &b"99999999999999999999:"[..],
        b"99999999999999999999",
        b"18446744073709551616:",
        b"-5:hello,",
        b"007:",
        b"01:a,",
        b"x:",
        b"5x",
    ] {
        let c = netstring();
        feed(&c, input);
        assert!(
            c.transport().disconnecting(),
            "{:?}",
            String::from_utf8_lossy(input)
        );
        // Nothing more is parsed from a broken peer.
        feed(&c, b"1:a,");
        assert!(received(&c).is_empty());
    }
}

fn int_n_suite<const N: usize>(illegal: &[u8], partial: &[&[u8]], data_out: &[u8]) {
    let pack = |n: usize| (n as u64).to_be_bytes()[8 - N..].to_vec();
    let strings: Vec<Vec<u8>> = vec![b"a".to_vec(), vec![b'b'; 16]];

    // test_receive: byte at a time.
    let c: Conn<IntN<N>> = connect(Tester::default());
    for s in &strings {
        for b in [pack(s.len()), s.clone()].concat() {
            feed(&c, &[b]);
        }
    }
    assert_eq!(received(&c), strings);

    // test_partial.
    for p in partial {
        let c: Conn<IntN<N>> = connect(Tester::default());
        for b in *p {
            feed(&c, &[*b]);
        }
        assert!(received(&c).is_empty());
    }

    // test_illegal.
    let c: Conn<IntN<N>> = connect(Tester::default());
    for b in illegal {
        feed(&c, &[*b]);
    }
    assert!(c.transport().disconnecting());

    // test_send.
    let c: Conn<IntN<N>> = connect(Tester::default());
    c.protocol().handle().send_string(&[b'b'; 16]).unwrap();
    assert_eq!(c.transport().value(), [pack(16), vec![b'b'; 16]].concat());

    // test_lengthLimitExceeded.
    let c: Conn<IntN<N>> = connect(Tester {
        record_exceeded: true,
        ..Default::default()
    });
    c.protocol().handle().set_max_length(10);
    feed(&c, &pack(11));
    assert_eq!(c.protocol().handler().exceeded, vec![11]);

    // test_longStringNotDelivered.
    let c: Conn<IntN<N>> = connect(Tester::default());
    c.protocol().handle().set_max_length(10);
    feed(&c, &[pack(11), vec![b'x'; 11]].concat());
    assert!(received(&c).is_empty());
    assert!(c.transport().disconnecting());

    // test_data.
    let c: Conn<IntN<N>> = connect(Tester::default());
    c.protocol().handle().send_string(b"foo").unwrap();
    assert_eq!(c.transport().value(), [pack(3), b"foo".to_vec()].concat());
    feed(&c, data_out);
    assert_eq!(received(&c), vec![b"ubar".to_vec()]);

    // RecvdAttributeMixin.test_recvdContainsRemainingData.
    let c: Conn<IntN<N>> = connect(Tester::default());
    let complete = [pack(5), vec![b'a'; 5]].concat();
    let incomplete = [pack(5), vec![b'b'; 4]].concat();
    feed(&c, &[complete, incomplete.clone()].concat());
    assert_eq!(c.protocol().handler().recvd_seen, vec![incomplete]);

    // RecvdAttributeMixin.test_recvdInLengthLimitExceeded.
    let c: Conn<IntN<N>> = connect(Tester {
        record_exceeded: true,
        ..Default::default()
    });
    let data = b"too long";
    c.protocol().handle().set_max_length(data.len() - 1);
    let message = [pack(data.len()), data.to_vec()].concat();
    feed(&c, &message);
    assert_eq!(c.protocol().handler().exceeded, vec![data.len() as u64]);
    assert_eq!(c.protocol().handler().recvd_seen, vec![message]);

    // Int16Tests/Int8Tests.test_tooLongSend (and Int32's limit, by
    // construction): a string that does not fit the prefix is refused.
    if N < 4 {
        let c: Conn<IntN<N>> = connect(Tester::default());
        let too = vec![b'b'; (1usize << (8 * N)) + 1];
        assert_eq!(
            c.protocol().handle().send_string(&too),
            Err(StringTooLongError {
                length: too.len(),
                maximum: 1u64 << (8 * N)
            })
        );
        assert_eq!(c.transport().value(), b"");
    }
}

// Ports Int32Tests (IntNTestCaseMixin + RecvdAttributeMixin + test_data).
#[test]
fn test_int32() {
    int_n_suite::<4>(
        b"\x10\x00\x00\x00aaaaaa",
        &[b"\x00\x00\x00", b"hello there", b""],
        b"\x00\x00\x00\x04ubar",
    );
}

// Ports Int16Tests.
#[test]
fn test_int16() {
    int_n_suite::<2>(
        b"\x10\x00aaaaaa",
        &[b"\x00", b"hello there", b""],
        b"\x00\x04ubar",
    );
}

// Ports Int8Tests (the illegal string: two empty strings, then a prefix
// `a` = 97 above MAX_LENGTH 50).
#[test]
fn test_int8() {
    int_n_suite::<1>(b"\x00\x00aaaaaa", &[b"\x08", b"dzadz", b""], b"\x04ubar");
}

// Attack: an int32 prefix of 0xFFFFFFFF is refused at once (nothing is
// allocated for it), even with MAX_LENGTH raised to usize::MAX it is only
// buffered as it arrives.
#[test]
fn int32_length_ffffffff() {
    let c: Conn<IntN<4>> = connect(Tester::default());
    feed(&c, b"\xff\xff\xff\xffsome");
    assert!(c.transport().disconnecting());
    assert!(received(&c).is_empty());

    let c: StringTransportWithDisconnection<Int32StringReceiverProtocol<Tester>> =
        StringTransportWithDisconnection::connect(
            Int32StringReceiverProtocol::new(Tester::default()).with_max_length(usize::MAX),
        );
    c.protocol_mut().data_received(b"\xff\xff\xff\xffsome");
    assert!(!c.transport().disconnecting());
    assert_eq!(c.protocol().handle().recvd().len(), 8);
}

// Pausing an int-prefixed receiver holds strings until it resumes (Twisted's
// `_PauseableMixin` on `IntNStringReceiver`).
#[test]
fn int16_pause_resume() {
    struct PauseEach(Vec<Vec<u8>>);
    impl StringReceiver for PauseEach {
        fn string_received(&mut self, s: &[u8], conn: &StringHandle) {
            self.0.push(s.to_vec());
            conn.pause_producing();
        }
    }
    let c = StringTransportWithDisconnection::connect(Int16StringReceiverProtocol::new(PauseEach(
        vec![],
    )));
    c.data_received(b"\x00\x01a\x00\x01b\x00\x01c");
    assert_eq!(c.protocol().handler().0, vec![b"a".to_vec()]);
    let h = c.protocol().handle();
    h.resume_producing();
    assert_eq!(c.protocol().handler().0.len(), 2);
    h.resume_producing();
    h.resume_producing();
    assert_eq!(c.protocol().handler().0.len(), 3);
    let _ = Rc::new(Int8StringReceiverProtocol::new(PauseEach(vec![])));
}

// A panicking handler leaves the parser consistent: strings already
// delivered are not delivered again.
#[test]
fn panic_in_string_received_leaves_parser_consistent() {
    #[derive(Default)]
    struct Boom(Vec<Vec<u8>>);
    impl StringReceiver for Boom {
        fn string_received(&mut self, s: &[u8], _: &StringHandle) {
            if s == b"boom" {
                panic!("handler bug");
            }
            self.0.push(s.to_vec());
        }
    }
    let mut p = NetstringReceiverProtocol::new(Boom::default());
    p.make_connection(Rc::new(StringTransport::new()));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        p.data_received(b"3:one,4:boom,3:two,")
    }));
    assert!(r.is_err());
    p.data_received(b"5:three,");
    assert_eq!(
        p.handler().0,
        vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
    );
}
