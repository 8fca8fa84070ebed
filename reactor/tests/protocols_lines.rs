//! Line protocols on a `StringTransport`: ports of Twisted's
//! `twisted.protocols.test.test_basic` (the `LineReceiver` tests that
//! `twisted.test.test_protocols` used to hold): `LineReceiverTests`,
//! `LineReceiverLineLengthExceededTests`, `LineOnlyReceiverTests`,
//! `ProducerTests`, as `twisted.protocols.basic.LineReceiver`,
//! `LineOnlyReceiver` and `_PauseableMixin` implement them; then attacks on
//! the splitting (every chunk boundary, exact limits, NUL bytes, mode
//! switches mid-chunk, disconnecting mid-chunk).

use std::cell::RefCell;
use std::rc::Rc;

use deferred::Failure;
use reactor::prelude::*;
use reactor::protocols::basic::{
    LineHandle, LineOnlyHandle, LineOnlyReceiver, LineOnlyReceiverProtocol, LineReceiver,
    LineReceiverProtocol,
};
use reactor::testing::{Clock, ProducerState, StringTransport, StringTransportWithDisconnection};
use std::time::Duration;

/// Twisted's `LineTester`: delimiter `\n`, MAX_LENGTH 64, acting on tokens.
#[derive(Default)]
struct LineTester {
    clock: Option<Clock>,
    received: Vec<Vec<u8>>,
    length: usize,
}

impl LineReceiver for LineTester {
    const DELIMITER: &'static [u8] = b"\n";
    const MAX_LENGTH: usize = 64;

    fn connection_made(&mut self, _: &LineHandle) {
        self.received.clear();
    }

    fn line_received(&mut self, line: &[u8], conn: &LineHandle) {
        self.received.push(line.to_vec());
        if line.is_empty() {
            conn.set_raw_mode();
        } else if line == b"pause" {
            conn.pause_producing();
            let c = conn.clone();
            self.clock
                .as_ref()
                .unwrap()
                .call_later(Duration::ZERO, move || c.resume_producing());
        } else if line == b"rawpause" {
            conn.pause_producing();
            conn.set_raw_mode();
            self.received.push(Vec::new());
            let c = conn.clone();
            self.clock
                .as_ref()
                .unwrap()
                .call_later(Duration::ZERO, move || c.resume_producing());
        } else if line == b"stop" {
            conn.stop_producing();
        } else if let Some(n) = line.strip_prefix(b"len ") {
            self.length = std::str::from_utf8(n).unwrap().parse().unwrap();
        } else if line.starts_with(b"produce") {
            conn.transport()
                .unwrap()
                .register_producer(Rc::new(conn.clone()), false)
                .unwrap();
        } else if line.starts_with(b"unproduce") {
            conn.transport().unwrap().unregister_producer();
        }
    }

    fn raw_data_received(&mut self, data: &[u8], conn: &LineHandle) {
        let n = self.length.min(data.len());
        let (data, rest) = data.split_at(n);
        self.length -= data.len();
        self.received.last_mut().unwrap().extend_from_slice(data);
        if self.length == 0 {
            conn.set_line_mode(rest);
        }
    }

    fn line_length_exceeded(&mut self, line: &[u8], conn: &LineHandle) {
        if line.len() > conn.max_length() + 1 {
            conn.set_line_mode(&line[conn.max_length() + 1..]);
        }
    }
}

fn tester(
    clock: Option<Clock>,
) -> StringTransportWithDisconnection<LineReceiverProtocol<LineTester>> {
    StringTransportWithDisconnection::connect_with(
        LineReceiverProtocol::new(LineTester {
            clock,
            ..Default::default()
        }),
        StringTransport::lenient(),
    )
}

fn feed_in_packets<P: Protocol + 'static>(
    conn: &StringTransportWithDisconnection<P>,
    buf: &[u8],
    size: usize,
) {
    for chunk in buf.chunks(size) {
        conn.protocol_mut().data_received(chunk);
    }
}

fn received(
    conn: &StringTransportWithDisconnection<LineReceiverProtocol<LineTester>>,
) -> Vec<Vec<u8>> {
    conn.protocol().handler().received.clone()
}

fn v(items: &[&[u8]]) -> Vec<Vec<u8>> {
    items.iter().map(|s| s.to_vec()).collect()
}

const BUFFER: &[u8] = b"len 10\n\n0123456789len 5\n\n1234\nlen 20\nfoo 123\n\n0123456789\n012345678len 0\nfoo 5\n\n1234567890123456789012345678901234567890123456789012345678901234567890\nlen 1\n\na";

fn buffer_output() -> Vec<Vec<u8>> {
    v(&[
        b"len 10",
        b"0123456789",
        b"len 5",
        b"1234\n",
        b"len 20",
        b"foo 123",
        b"0123456789\n012345678",
        b"len 0",
        b"foo 5",
        b"",
        b"67890",
        b"len 1",
        b"a",
    ])
}

// Ports LineReceiverTests.test_buffer.
#[test]
fn test_buffer() {
    for size in 1..10 {
        let conn = tester(None);
        feed_in_packets(&conn, BUFFER, size);
        assert_eq!(received(&conn), buffer_output(), "packet size {size}");
    }
}

// Ports LineReceiverTests.test_pausing.
#[test]
fn test_pausing() {
    let buf = b"twiddle1\ntwiddle2\npause\ntwiddle3\n";
    for size in 1..10 {
        let clock = Clock::new();
        let conn = tester(Some(clock.clone()));
        feed_in_packets(&conn, buf, size);
        assert_eq!(received(&conn), v(&[b"twiddle1", b"twiddle2", b"pause"]));
        clock.advance(0.0);
        assert_eq!(
            received(&conn),
            v(&[b"twiddle1", b"twiddle2", b"pause", b"twiddle3"])
        );
    }
}

// Ports LineReceiverTests.test_rawPausing.
#[test]
fn test_raw_pausing() {
    let buf = b"twiddle1\ntwiddle2\nlen 5\nrawpause\n12345twiddle3\n";
    for size in 1..10 {
        let clock = Clock::new();
        let conn = tester(Some(clock.clone()));
        feed_in_packets(&conn, buf, size);
        assert_eq!(
            received(&conn),
            v(&[b"twiddle1", b"twiddle2", b"len 5", b"rawpause", b""])
        );
        clock.advance(0.0);
        assert_eq!(
            received(&conn),
            v(&[
                b"twiddle1",
                b"twiddle2",
                b"len 5",
                b"rawpause",
                b"12345",
                b"twiddle3"
            ])
        );
    }
}

// Ports LineReceiverTests.test_stopProducing.
#[test]
fn test_stop_producing() {
    let buf = b"twiddle1\ntwiddle2\nstop\nmore\nstuff\n";
    for size in 1..10 {
        let conn = tester(None);
        feed_in_packets(&conn, buf, size);
        assert_eq!(received(&conn), v(&[b"twiddle1", b"twiddle2", b"stop"]));
        assert_eq!(conn.transport().producer_state(), ProducerState::Stopped);
    }
}

// Ports LineReceiverTests.test_lineReceiverAsProducer.
#[test]
fn test_line_receiver_as_producer() {
    let conn = tester(None);
    conn.data_received(b"produce\nhello world\nunproduce\ngoodbye\n");
    assert_eq!(
        received(&conn),
        v(&[b"produce", b"hello world", b"unproduce", b"goodbye"])
    );
    assert!(conn.transport().producer().is_none());
}

struct ClearingReceiver {
    line: Vec<u8>,
    rest: Vec<u8>,
}

impl LineReceiver for ClearingReceiver {
    fn line_received(&mut self, line: &[u8], conn: &LineHandle) {
        self.line = line.to_vec();
        self.rest = conn.clear_line_buffer();
    }
}

// Ports LineReceiverTests.test_clearLineBuffer.
#[test]
fn test_clear_line_buffer() {
    let mut p = LineReceiverProtocol::new(ClearingReceiver {
        line: vec![],
        rest: vec![],
    });
    p.data_received(b"foo\r\nbar\r\nbaz");
    assert_eq!(p.handler().line, b"foo");
    assert_eq!(p.handler().rest, b"bar\r\nbaz");
    p.data_received(b"quux\r\n");
    assert_eq!(p.handler().line, b"quux");
    assert_eq!(p.handler().rest, b"");
}

/// Twisted's `FlippingLineTester`.
#[derive(Default)]
struct Flipping {
    lines: Vec<Vec<u8>>,
}

impl LineReceiver for Flipping {
    const DELIMITER: &'static [u8] = b"\n";
    fn line_received(&mut self, line: &[u8], conn: &LineHandle) {
        self.lines.push(line.to_vec());
        conn.set_raw_mode();
    }
    fn raw_data_received(&mut self, data: &[u8], conn: &LineHandle) {
        conn.set_line_mode(&data[1..]);
    }
}

// Ports LineReceiverTests.test_stackRecursion: many mode switches on one
// chunk neither recurse nor lose data.
#[test]
fn test_stack_recursion() {
    let limit = 100_000;
    let conn =
        StringTransportWithDisconnection::connect(LineReceiverProtocol::new(Flipping::default()));
    conn.data_received(&b"x\nx".repeat(limit));
    assert_eq!(conn.protocol().handler().lines.concat(), b"x".repeat(limit));
}

struct Plain;
impl LineReceiver for Plain {
    fn line_received(&mut self, _: &[u8], _: &LineHandle) {}
}

// Ports LineReceiverTests.test_maximumLineLength.
#[test]
fn test_maximum_line_length() {
    let conn = StringTransportWithDisconnection::connect(LineReceiverProtocol::new(Plain));
    let mut data = vec![b'x'; 16_384 + 1];
    data.extend_from_slice(b"\r\nr");
    conn.data_received(&data);
    assert!(conn.transport().disconnecting());
    assert!(!conn.connected());
}

// Ports LineReceiverTests.test_maximumLineLengthPartialDelimiter.
#[test]
fn test_maximum_line_length_partial_delimiter() {
    let conn = StringTransportWithDisconnection::connect(
        LineReceiverProtocol::new(LineTester::default()).with_max_length(4),
    );
    let line = b"xxx";
    conn.data_received(line);
    conn.data_received(b"");
    let mut last = b"\n".to_vec();
    last.extend_from_slice(line);
    conn.data_received(&last);
    assert!(!conn.transport().disconnecting());
    assert_eq!(received(&conn), v(&[line]));
}

// Ports LineReceiverTests.test_notQuiteMaximumLineLengthUnfinished.
#[test]
fn test_not_quite_maximum_line_length_unfinished() {
    let conn = StringTransportWithDisconnection::connect(LineReceiverProtocol::new(Plain));
    let mut data = vec![b'x'; 16_384];
    data.push(b'\r');
    conn.data_received(&data);
    assert!(!conn.transport().disconnecting());
}

// Ports LineReceiverLineLengthExceededTests.test_maximumLineLengthRemaining.
#[test]
fn test_maximum_line_length_remaining() {
    let conn = StringTransportWithDisconnection::connect(LineReceiverProtocol::new(Plain));
    conn.data_received(&vec![b'x'; 16_384 + 2]);
    assert!(conn.transport().disconnecting());
}

/// Twisted's `ExcessivelyLargeLineCatcher`, MAX_LENGTH 6.
#[derive(Default)]
struct Catcher {
    long_lines: Vec<Vec<u8>>,
}
impl LineReceiver for Catcher {
    const MAX_LENGTH: usize = 6;
    fn line_received(&mut self, _: &[u8], _: &LineHandle) {}
    fn line_length_exceeded(&mut self, data: &[u8], _: &LineHandle) {
        self.long_lines.push(data.to_vec());
    }
}

fn catcher_run(data: &[u8]) -> Vec<Vec<u8>> {
    let conn =
        StringTransportWithDisconnection::connect(LineReceiverProtocol::new(Catcher::default()));
    conn.data_received(data);
    let r = conn.protocol().handler().long_lines.clone();
    r
}

// Ports LineReceiverLineLengthExceededTests.test_longUnendedLine,
// test_longLineAfterShortLine, test_longLineWithDelimiter,
// test_multipleLongLines.
#[test]
fn test_line_length_exceeded_gets_the_rest() {
    let excessive = vec![b'x'; 6 * 2 + 2];
    assert_eq!(catcher_run(&excessive), vec![excessive.clone()]);

    let mut after_short = b"x\r\n".to_vec();
    after_short.extend_from_slice(&excessive);
    assert_eq!(catcher_run(&after_short), vec![excessive.clone()]);

    let with_delim = [excessive.clone(), excessive.clone()].join(&b"\r\n"[..]);
    assert_eq!(catcher_run(&with_delim), vec![with_delim.clone()]);

    let mut multiple = excessive.clone();
    multiple.extend_from_slice(b"\r\n");
    let multiple = multiple.repeat(2);
    assert_eq!(catcher_run(&multiple), vec![multiple.clone()]);
}

/// Twisted's `LineOnlyTester`.
#[derive(Default)]
struct LineOnlyTester {
    received: Vec<Vec<u8>>,
}
impl LineOnlyReceiver for LineOnlyTester {
    const DELIMITER: &'static [u8] = b"\n";
    const MAX_LENGTH: usize = 64;
    fn line_received(&mut self, line: &[u8], _: &LineOnlyHandle) {
        self.received.push(line.to_vec());
    }
}

// Ports LineOnlyReceiverTests.test_buffer.
#[test]
fn test_line_only_buffer() {
    let buf = b"foo\n    bleakness\n    desolation\n    plastic forks\n";
    let conn = StringTransportWithDisconnection::connect(LineOnlyReceiverProtocol::new(
        LineOnlyTester::default(),
    ));
    conn.data_received_bytewise(buf);
    let expected: Vec<Vec<u8>> = buf.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    assert_eq!(
        conn.protocol().handler().received,
        expected[..expected.len() - 1]
    );
}

// Ports LineOnlyReceiverTests.test_greaterThanMaximumLineLength.
#[test]
fn test_line_only_greater_than_maximum_line_length() {
    let conn = StringTransportWithDisconnection::connect(LineOnlyReceiverProtocol::new(
        LineOnlyTester::default(),
    ));
    let mut data = vec![b'x'; 64 + 1 + 1];
    data.extend_from_slice(b"\r\nr");
    conn.data_received(&data);
    assert!(conn.transport().disconnecting());
}

/// Twisted's `ConsumingProtocol`: echoes a line, then pauses.
struct Consuming;
impl LineReceiver for Consuming {
    fn line_received(&mut self, line: &[u8], conn: &LineHandle) {
        conn.transport().unwrap().write(line);
        conn.pause_producing();
    }
}

// Ports ProducerTests.test_pauseResume.
#[test]
fn test_pause_resume() {
    let conn = StringTransportWithDisconnection::connect(LineReceiverProtocol::new(Consuming));
    let h = conn.protocol().handle();
    let t = conn.transport().clone();
    let paused = || t.producer_state() == ProducerState::Paused;

    conn.data_received(b"hello, ");
    assert_eq!(t.value(), b"");
    assert!(!paused() && !h.paused());

    conn.data_received(b"world\r\n");
    assert_eq!(t.value(), b"hello, world");
    assert!(paused() && h.paused());

    h.resume_producing();
    assert_eq!(t.value(), b"hello, world");
    assert!(!paused() && !h.paused());

    conn.data_received(b"hello\r\nworld\r\n");
    assert_eq!(t.value(), b"hello, worldhello");
    assert!(paused() && h.paused());

    h.resume_producing();
    assert_eq!(t.value(), b"hello, worldhelloworld");
    assert!(paused() && h.paused());

    conn.data_received(b"goodbye\r\n");
    assert_eq!(t.value(), b"hello, worldhelloworld");

    h.resume_producing();
    assert_eq!(t.value(), b"hello, worldhelloworldgoodbye");
    assert!(paused() && h.paused());

    h.resume_producing();
    assert_eq!(t.value(), b"hello, worldhelloworldgoodbye");
    assert!(!paused() && !h.paused());
}

// --- Attacks -------------------------------------------------------------

/// Records lines; `quit` drops the connection.
#[derive(Default)]
struct Recorder {
    lines: Vec<Vec<u8>>,
    lost: Option<String>,
}
impl LineReceiver for Recorder {
    fn line_received(&mut self, line: &[u8], conn: &LineHandle) {
        self.lines.push(line.to_vec());
        if line == b"quit" {
            conn.lose_connection();
        }
    }
    fn connection_lost(&mut self, reason: Failure, _: &LineHandle) {
        self.lost = Some(reason.error_message());
    }
}

fn record(chunks: &[&[u8]]) -> (Vec<Vec<u8>>, bool) {
    let conn =
        StringTransportWithDisconnection::connect(LineReceiverProtocol::new(Recorder::default()));
    for c in chunks {
        conn.data_received(c);
    }
    let lines = conn.protocol().handler().lines.clone();
    (lines, conn.transport().disconnecting())
}

// Every split point of a stream (and a byte at a time) gives the lines that
// one chunk gives: the delimiter may be split across chunks anywhere.
#[test]
fn lines_are_the_same_whatever_the_chunking() {
    let stream: &[u8] = b"a\r\n\r\nbc\rd\r\n\0nul\0\r\n\r\r\n\n\r\nlast";
    let (whole, _) = record(&[stream]);
    assert_eq!(whole, v(&[b"a", b"", b"bc\rd", b"\0nul\0", b"\r", b"\n"]));
    for i in 0..=stream.len() {
        for j in i..=stream.len() {
            let (split, _) = record(&[&stream[..i], &stream[i..j], &stream[j..]]);
            assert_eq!(split, whole, "split at {i}, {j}");
        }
    }
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(record(&bytes).0, whole);
}

// A line of exactly MAX_LENGTH is delivered, one byte more drops the
// connection, whether it arrives whole or a byte at a time.
#[test]
fn exactly_max_length_and_one_more() {
    for bytewise in [false, true] {
        let ok = [vec![b'y'; 16_384], b"\r\n".to_vec()].concat();
        let conn = StringTransportWithDisconnection::connect(LineReceiverProtocol::new(
            Recorder::default(),
        ));
        if bytewise {
            conn.data_received_bytewise(&ok);
        } else {
            conn.data_received(&ok);
        }
        assert_eq!(conn.protocol().handler().lines, vec![vec![b'y'; 16_384]]);
        assert!(conn.connected());

        let bad = [vec![b'y'; 16_385], b"\r\n".to_vec()].concat();
        let conn = StringTransportWithDisconnection::connect(LineReceiverProtocol::new(
            Recorder::default(),
        ));
        if bytewise {
            conn.data_received_bytewise(&bad);
        } else {
            conn.data_received(&bad);
        }
        assert!(conn.protocol().handler().lines.is_empty());
        assert!(!conn.connected());
    }
}

// A huge chunk with many lines is parsed whole (and in linear time: 200 000
// lines in one chunk would take minutes if each line copied the rest).
#[test]
fn huge_chunk_with_many_lines() {
    let n = 200_000;
    let mut data = Vec::new();
    for i in 0..n {
        data.extend_from_slice(format!("line {i}\r\n").as_bytes());
    }
    let conn =
        StringTransportWithDisconnection::connect(LineReceiverProtocol::new(Recorder::default()));
    conn.data_received(&data);
    let p = conn.protocol();
    let lines = &p.handler().lines;
    assert_eq!(lines.len(), n);
    assert_eq!(lines[n - 1], format!("line {}", n - 1).into_bytes());
}

// lose_connection from inside line_received: no further line is delivered,
// neither from the same chunk nor from later ones; connection_lost once.
#[test]
fn no_lines_after_lose_connection() {
    let (lines, disconnecting) = record(&[b"one\r\nquit\r\ntwo\r\n", b"three\r\n"]);
    assert_eq!(lines, v(&[b"one", b"quit"]));
    assert!(disconnecting);

    let mut p = LineReceiverProtocol::new(Recorder::default());
    let t = Rc::new(StringTransport::new());
    p.make_connection(t.clone());
    p.data_received(b"quit\r\nafter\r\n");
    p.data_received(b"later\r\n");
    assert_eq!(p.handler().lines, v(&[b"quit"]));
}

/// Switches to raw mode on `raw`, back to lines when raw data contains `!`.
#[derive(Default)]
struct Switcher {
    events: Vec<(bool, Vec<u8>)>,
}
impl LineReceiver for Switcher {
    fn line_received(&mut self, line: &[u8], conn: &LineHandle) {
        self.events.push((true, line.to_vec()));
        if line == b"raw" {
            conn.set_raw_mode();
        }
    }
    fn raw_data_received(&mut self, data: &[u8], conn: &LineHandle) {
        match data.iter().position(|&b| b == b'!') {
            Some(i) => {
                self.events.push((false, data[..i].to_vec()));
                conn.set_line_mode(&data[i + 1..]);
            }
            None => self.events.push((false, data.to_vec())),
        }
    }
}

// Raw mode switched on mid-chunk gets the rest of that chunk; back in line
// mode, the rest of the raw chunk is parsed into lines.
#[test]
fn raw_mode_switch_mid_chunk() {
    let conn =
        StringTransportWithDisconnection::connect(LineReceiverProtocol::new(Switcher::default()));
    conn.data_received(b"a\r\nraw\r\nbinary\r\n\0!b\r\nc");
    conn.data_received(b"\r\n");
    let ev = conn.protocol().handler().events.clone();
    assert_eq!(
        ev,
        vec![
            (true, b"a".to_vec()),
            (true, b"raw".to_vec()),
            (false, b"binary\r\n\0".to_vec()),
            (true, b"b".to_vec()),
            (true, b"c".to_vec()),
        ]
    );
}

// The default raw_data_received drops the connection instead of losing
// data silently (Twisted's raises NotImplementedError).
#[test]
fn raw_mode_without_handler_drops_the_connection() {
    struct RawNoHandler;
    impl LineReceiver for RawNoHandler {
        fn line_received(&mut self, _: &[u8], conn: &LineHandle) {
            conn.set_raw_mode();
        }
    }
    let conn = StringTransportWithDisconnection::connect(LineReceiverProtocol::new(RawNoHandler));
    conn.data_received(b"x\r\nraw bytes");
    assert!(!conn.connected());
}

// connection_lost reaches the handler with ConnectionDone after a clean
// close.
#[test]
fn connection_lost_reaches_the_handler() {
    let conn =
        StringTransportWithDisconnection::connect(LineReceiverProtocol::new(Recorder::default()));
    conn.data_received(b"quit\r\n");
    assert_eq!(
        conn.protocol().handler().lost.as_deref(),
        Some("Connection was closed cleanly.")
    );
}

// A line server whose reply is written from a later callback (as from a
// ConnectionPool's Deferred) through a cloned handle.
#[test]
fn reply_from_a_later_callback() {
    type Later = Rc<RefCell<Vec<Box<dyn FnOnce()>>>>;
    struct Deferring {
        later: Later,
    }
    impl LineReceiver for Deferring {
        fn line_received(&mut self, line: &[u8], conn: &LineHandle) {
            let conn = conn.clone();
            let line = line.to_vec();
            self.later.borrow_mut().push(Box::new(move || {
                conn.send_line(&[b"re: ", &line[..]].concat())
            }));
        }
    }
    let later = Rc::new(RefCell::new(Vec::new()));
    let conn = StringTransportWithDisconnection::connect(LineReceiverProtocol::new(Deferring {
        later: later.clone(),
    }));
    conn.data_received(b"q1\r\nq2\r\n");
    assert_eq!(conn.transport().value(), b"");
    for f in later.borrow_mut().drain(..) {
        f();
    }
    assert_eq!(conn.transport().value(), b"re: q1\r\nre: q2\r\n");
}

/// LineOnly: `quit` drops the connection.
#[derive(Default)]
struct LineOnlyQuitter {
    lines: Vec<Vec<u8>>,
}
impl LineOnlyReceiver for LineOnlyQuitter {
    fn line_received(&mut self, line: &[u8], conn: &LineOnlyHandle) {
        self.lines.push(line.to_vec());
        if line == b"quit" {
            conn.lose_connection();
        }
    }
}

// LineOnlyReceiver drops the lines after the one that disconnected, as
// Twisted's does, and a tail longer than MAX_LENGTH drops the connection
// whatever the chunking.
#[test]
fn line_only_disconnect_mid_chunk_and_long_tail() {
    let conn = StringTransportWithDisconnection::connect(LineOnlyReceiverProtocol::new(
        LineOnlyQuitter::default(),
    ));
    conn.protocol_mut().data_received(b"a\r\nquit\r\nb\r\nc");
    conn.protocol_mut().data_received(b"\r\n");
    assert_eq!(conn.protocol().handler().lines, v(&[b"a", b"quit"]));

    for bytewise in [false, true] {
        let conn = StringTransportWithDisconnection::connect(LineOnlyReceiverProtocol::new(
            LineOnlyQuitter::default(),
        ));
        let data = vec![b'z'; 16_385];
        if bytewise {
            conn.data_received_bytewise(&data);
        } else {
            conn.data_received(&data);
        }
        assert!(!conn.connected());
        assert!(conn.protocol().handler().lines.is_empty());
    }
}

/// Panics on `boom`.
#[derive(Default)]
struct Boom {
    lines: Vec<Vec<u8>>,
}
impl LineReceiver for Boom {
    fn line_received(&mut self, line: &[u8], _: &LineHandle) {
        if line == b"boom" {
            panic!("handler bug");
        }
        self.lines.push(line.to_vec());
    }
}

// A panicking handler leaves the protocol usable (the transport drops the
// connection; a test may go on): the lines after it are delivered once, not
// lost to a stuck "busy" flag and not delivered twice.
#[test]
fn panic_in_line_received_leaves_parser_consistent() {
    let mut p = LineReceiverProtocol::new(Boom::default());
    p.make_connection(Rc::new(StringTransport::new()));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        p.data_received(b"one\r\nboom\r\ntwo\r\n")
    }));
    assert!(r.is_err());
    p.data_received(b"three\r\n");
    assert_eq!(p.handler().lines, v(&[b"one", b"two", b"three"]));
}
