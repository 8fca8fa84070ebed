//! Smoke tests of the benchmark tools against the tokio peers, short
//! enough for `cargo test` (about 2 s in all): the load generator gets
//! checked replies from the tokio line server with zero errors, counts a
//! wrong reply as an error, and refuses any host but 127.0.0.1. Every
//! server is started on port 0 and killed when its guard drops.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A server process, killed and reaped on drop so a failing test leaves
/// nothing running.
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `bin` with `args` and waits (10 s at most) for its
/// `listening 127.0.0.1:PORT` line.
fn start(bin: &str, args: &[&str]) -> Server {
    let mut child = Command::new(bin)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{bin}: {e}"));
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let mut server = Server { child, port: 0 };
    let line = rx
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("{bin} did not say where it listens within 10 s"));
    server.port = line
        .trim()
        .strip_prefix("listening 127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{bin}: unexpected first line {line:?}"));
    server
}

fn temp_db(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("netbench-smoke-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("users.db");
    let out = Command::new(env!("CARGO_BIN_EXE_setup_db"))
        .args(["--db", db.to_str().unwrap(), "--users", "100"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "setup_db: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    db
}

fn loadgen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .output()
        .unwrap()
}

fn field<'a>(report: &'a str, key: &str) -> &'a str {
    report
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key} in {report:?}"))
}

#[test]
fn the_tokio_line_server_answers_every_request_correctly() {
    let db = temp_db("line");
    let server = start(
        env!("CARGO_BIN_EXE_tokio_line_server"),
        &["--port", "0", "--db", db.to_str().unwrap(), "--pool", "2"],
    );
    let (port, pid) = (server.port.to_string(), server.child.id().to_string());
    let out = loadgen(&[
        "--server-pid",
        &pid,
        "--mode",
        "line",
        "--port",
        &port,
        "--clients",
        "4",
        "--users",
        "100",
        "--duration",
        "1",
        "--warmup",
        "0.2",
    ]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(field(&report, "errors"), "0", "{report}");
    assert_ne!(field(&report, "requests"), "0", "{report}");
    // A number, not "-": the server's /proc entry was read (its value
    // depends on the machine's load, so it is not compared).
    let server_cpu: Result<f64, _> = field(&report, "server_cpu").parse();
    assert!(server_cpu.is_ok(), "{report}");
    drop(server);
    let _ = std::fs::remove_dir_all(db.parent().unwrap());
}

#[test]
fn a_wrong_reply_is_an_error_not_a_data_point() {
    // The echo server answers `user 7` with `user 7`, not `7 user7`.
    let server = start(env!("CARGO_BIN_EXE_tokio_echo_server"), &["--port", "0"]);
    let port = server.port.to_string();
    let out = loadgen(&[
        "--mode",
        "line",
        "--port",
        &port,
        "--clients",
        "2",
        "--duration",
        "0.3",
        "--warmup",
        "0",
    ]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert_eq!(field(&report, "errors"), "2", "{report}");
    assert_eq!(field(&report, "requests"), "0", "{report}");
}

#[test]
fn echo_mode_checks_every_byte_and_counts_throughput() {
    let server = start(env!("CARGO_BIN_EXE_tokio_echo_server"), &["--port", "0"]);
    let port = server.port.to_string();
    let out = loadgen(&[
        "--mode",
        "echo",
        "--port",
        &port,
        "--clients",
        "2",
        "--size",
        "1000",
        "--duration",
        "0.5",
        "--warmup",
        "0",
    ]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}");
    assert_eq!(field(&report, "errors"), "0", "{report}");
    assert_ne!(field(&report, "mbps"), "0.00", "{report}");
}

#[test]
fn only_127_0_0_1_is_a_target() {
    for host in ["10.0.0.1", "192.168.1.1", "example.com", "127.0.0.2"] {
        let out = loadgen(&[
            "--mode",
            "line",
            "--port",
            "9",
            "--host",
            host,
            "--duration",
            "0.1",
        ]);
        assert_eq!(out.status.code(), Some(2), "{host}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("only talk to 127.0.0.1"),
            "{host}"
        );
    }
}

fn protocol_check(port: u16, users: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_protocol_check"))
        .args([
            "--port",
            &port.to_string(),
            "--users",
            users,
            "--timeout",
            "5",
        ])
        .output()
        .unwrap()
}

#[test]
fn the_tokio_line_server_passes_the_protocol_check_and_an_echo_server_does_not() {
    let db = temp_db("check");
    let server = start(
        env!("CARGO_BIN_EXE_tokio_line_server"),
        &["--port", "0", "--db", db.to_str().unwrap()],
    );
    let out = protocol_check(server.port, "100");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert_eq!(said.trim(), "protocol=ok");
    // Told the table is bigger than it is, the check must see the server
    // answer "unknown" for an id it expects to exist.
    let out = protocol_check(server.port, "150");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("error unknown user 150"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    drop(server);
    let _ = std::fs::remove_dir_all(db.parent().unwrap());

    let echo = start(env!("CARGO_BIN_EXE_tokio_echo_server"), &["--port", "0"]);
    let out = protocol_check(echo.port, "100");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("protocol=violation known id 1"));
}
