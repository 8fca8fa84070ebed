//! `accept` failing with `EMFILE` logs and backs off (a timer) instead of
//! spinning, and accepting resumes once descriptors are free again.
//!
//! Ports the intent of `twisted.internet.test.test_tcp`
//! `ListeningTests`/`TCPPortTests.test_tooManyFilesFromAccept` (Twisted logs
//! "EMFILE" and goes on); unlike Twisted's level-triggered loop, which
//! would retry on every turn, the port pauses accepting for a growing
//! delay.
//!
//! The test runs in a child process (this same test binary) whose
//! descriptor limit is lowered with the shell's `ulimit -n`, so filling the
//! descriptor table cannot disturb other tests.

mod tcp_support;

use std::fs::File;
use std::process::Command;
use std::time::Duration;

use tcp_support::*;

const CHILD_ENV: &str = "REACTOR_TCP_EMFILE_CHILD";

#[test]
fn accept_out_of_descriptors_backs_off_then_recovers() {
    let exe = std::env::current_exe().unwrap();
    let status = Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 64 && exec \"$0\" --exact emfile_child --ignored --nocapture --test-threads 1")
        .arg(&exe)
        .env(CHILD_ENV, "1")
        .output()
        .expect("run the child test");
    let out = String::from_utf8_lossy(&status.stdout);
    let err = String::from_utf8_lossy(&status.stderr);
    assert!(status.status.success(), "child failed:\n{out}\n{err}");
    assert!(
        out.contains("1 passed"),
        "the child ran the test:\n{out}\n{err}"
    );
}

#[test]
#[ignore = "run by accept_out_of_descriptors_backs_off_then_recovers in a child process"]
fn emfile_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let logs = test_support::logs::LogCapture::start();
    let reactor = new_reactor();
    let server = Hooks::default().factory();
    let port = listen(&reactor, server.clone()).get_host().port();
    // The kernel completes the handshake; only our accept is pending.
    let _client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut hogs = Vec::new();
    loop {
        match File::open("/dev/null") {
            Ok(f) => hogs.push(f),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(24), "EMFILE: {e}");
                break;
            }
        }
    }
    for _ in 0..100 {
        reactor.iterate(Duration::from_millis(1));
    }
    let failures = logs
        .messages()
        .iter()
        .filter(|m| m.starts_with("accept failed"))
        .count();
    assert!(failures >= 1, "the failure is logged");
    // A spinning port would fail on every one of the 100 turns.
    assert!(
        failures < 50,
        "backed off, not spinning: {failures} failed accepts"
    );
    assert!(server.conns.borrow().is_empty());
    drop(hogs);
    turn_until(&reactor, || !server.conns.borrow().is_empty());
    assert_eq!(server.conn(0).borrow().made, 1);
}
