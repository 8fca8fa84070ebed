//! Tests of `Failure` (Twisted's `twisted.python.failure.Failure`)
//! and a port of test_defer.py `UtilTests` (`logError`): `check`/`trap` walk
//! the error's `source()` chain (Rust's counterpart of matching a base
//! class), `trap` hands unmatched failures back, context keeps the original
//! error, locations point at the line that created the failure, caught panics
//! become failures, and `log_error` logs and returns its failure.

mod common;

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::panic::Location;

use common::{generic, GenericError};
use deferred::{fail, log_error, Deferred, Failure, MessageError, PanicError};
use test_support::logs::capture_logs;

/// An error with a cause, like a subclass relationship in Python.
#[derive(Debug)]
struct Outer {
    source: io::Error,
}

impl fmt::Display for Outer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("outer failed")
    }
}

impl StdError for Outer {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.source)
    }
}

fn outer() -> Outer {
    Outer {
        source: io::Error::new(io::ErrorKind::NotFound, "no such table"),
    }
}

// Failure must travel between threads (worker -> loop thread).
const _: () = {
    const fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Failure>();
};

// Failure.check: matches the error itself and its causes.
#[test]
fn check_walks_source_chain() {
    let f = Failure::new(outer());
    assert!(f.check::<Outer>().is_some());
    assert_eq!(
        f.check::<io::Error>().unwrap().kind(),
        io::ErrorKind::NotFound
    );
    assert!(f.check::<GenericError>().is_none());
    // downcast_ref looks at the error itself only.
    assert!(f.downcast_ref::<Outer>().is_some());
    assert!(f.downcast_ref::<io::Error>().is_none());
}

// Failure.trap: the match, or the same failure handed back.
#[test]
fn trap_returns_match_or_hands_failure_back() {
    let f = Failure::new(outer());
    assert_eq!(f.trap::<io::Error>().unwrap().to_string(), "no such table");
    let back = f.trap::<GenericError>().unwrap_err();
    assert!(Failure::ptr_eq(&back, &f));
}

// An errback using trap() passes unexpected failures on down the chain.
#[test]
fn trap_in_errback_passes_unexpected_failures_on() {
    let d = fail::<u8>(generic("unexpected")).add_errback(|f| {
        f.trap::<io::Error>()?;
        Ok(0)
    });
    let f = d.into_result().unwrap().unwrap_err();
    assert_eq!(f.check::<GenericError>(), Some(&generic("unexpected")));

    let d = fail::<u8>(outer()).add_errback(|f| {
        f.trap::<io::Error>()?;
        Ok(7)
    });
    assert_eq!(d.into_result().unwrap().unwrap(), 7);
}

// Failure.type: the original error's type name.
#[test]
fn type_name() {
    assert_eq!(
        Failure::new(io::Error::other("x")).type_name(),
        std::any::type_name::<io::Error>()
    );
    assert!(Failure::msg("m").type_name().ends_with("MessageError"));
    let boxed: deferred::BoxError = Box::new(generic("boxed"));
    let f = Failure::from_boxed(boxed);
    assert_eq!(f.type_name(), "dyn Error");
    // The dynamic type stays reachable.
    assert_eq!(f.check::<GenericError>(), Some(&generic("boxed")));
}

// Failure.getErrorMessage, with context outermost first.
#[test]
fn error_message_with_context() {
    let f = Failure::new(generic("disk full"));
    assert_eq!(f.error_message(), "disk full");
    let g = f.context("while saving").context("in request 7");
    assert_eq!(g.error_message(), "in request 7: while saving: disk full");
    // The original is unchanged.
    assert_eq!(f.error_message(), "disk full");
}

// Context keeps the original error, its type name and its location.
#[test]
fn context_keeps_the_original_error() {
    let f = Failure::new(outer());
    let g = f.context("loading users");
    assert!(g.check::<Outer>().is_some());
    assert!(g.check::<io::Error>().is_some());
    assert_eq!(g.type_name(), f.type_name());
    assert_eq!(g.location(), f.location());
    assert!(!Failure::ptr_eq(&f, &g));
    assert_eq!(g.error().to_string(), "outer failed");
}

// Display is the message (Failure.getErrorMessage), so it reads well in a log
// line or a program's output; `{:#}` and Debug name the type too.
#[test]
fn display_and_debug() {
    let f = Failure::new(generic("shown"));
    assert_eq!(f.to_string(), "shown");
    let alternate = format!("{f:#}");
    assert!(alternate.ends_with("GenericError: shown"), "{alternate}");
    assert!(alternate.starts_with(f.type_name()), "{alternate}");
    let debug = format!("{f:?}");
    assert!(
        debug.starts_with("<Failure ") && debug.contains("shown"),
        "{debug}"
    );
    assert!(debug.contains(&f.location().to_string()), "{debug}");
}

// Failure.getTraceback: type, message, location, causes.
#[test]
fn traceback_lists_causes() {
    let f = Failure::new(outer());
    let tb = f.traceback();
    assert!(tb.contains("outer failed"), "{tb}");
    assert!(tb.contains("caused by: no such table"), "{tb}");
    assert!(tb.contains(&f.location().to_string()), "{tb}");
}

fn here() -> &'static Location<'static> {
    Location::caller()
}

// The location is the line that created the failure, whichever way it was made.
#[test]
fn location_is_line_of_creation() {
    let line = line!() + 1;
    let f = Failure::new(generic("new"));
    assert_eq!(f.location().line(), line);
    assert_eq!(f.location().file(), here().file());

    let line = line!() + 1;
    let f = Failure::msg("msg");
    assert_eq!(f.location().line(), line);

    let line = line!() + 1;
    let f: Failure = generic("into").into();
    assert_eq!(f.location().line(), line);

    let line = line!() + 1;
    let d = fail::<()>(generic("fail()"));
    assert_eq!(
        d.into_result().unwrap().unwrap_err().location().line(),
        line
    );

    let (d, r) = Deferred::<()>::new();
    let line = line!() + 1;
    r.errback(generic("errback")).unwrap();
    assert_eq!(
        d.into_result().unwrap().unwrap_err().location().line(),
        line
    );
}

// `?` in a callback returning Result<_, Failure>: the location is that `?`.
#[test]
fn location_through_question_mark_in_closure() {
    let (d, r) = Deferred::<&str>::new();
    let line = line!() + 2;
    let d = d.add_callback_result(|s| -> Result<i32, Failure> {
        let n: i32 = s.parse()?;
        Ok(n)
    });
    r.callback("not a number").unwrap();
    let f = d.into_result().unwrap().unwrap_err();
    assert!(f.check::<std::num::ParseIntError>().is_some());
    assert_eq!(f.location().line(), line);
    assert_eq!(f.location().file(), here().file());
}

// Panic payloads: &str, String, anything else.
#[test]
fn from_panic_payloads() {
    let f = Failure::from_panic(Box::new("static str"));
    assert!(f.is_panic());
    assert_eq!(f.check::<PanicError>().unwrap().message, "static str");
    assert_eq!(f.error_message(), "panicked: static str");

    let f = Failure::from_panic(Box::new(String::from("owned string")));
    assert!(f.is_panic());
    assert_eq!(f.check::<PanicError>().unwrap().message, "owned string");

    let f = Failure::from_panic(Box::new(42_u32));
    assert!(f.is_panic());
    assert_eq!(
        f.check::<PanicError>().unwrap().message,
        "<non-string panic payload>"
    );

    assert!(!Failure::new(generic("plain")).is_panic());
}

// A real caught panic converts the same way.
#[test]
fn from_caught_panic() {
    let payload = std::panic::catch_unwind(|| panic!("formatted {}", 5)).unwrap_err();
    let f = Failure::from_panic(payload);
    assert_eq!(f.check::<PanicError>().unwrap().message, "formatted 5");
}

// Clone is cheap: the same failure object.
#[test]
fn clone_is_cheap() {
    let f = Failure::msg("shared");
    let g = f.clone();
    assert!(Failure::ptr_eq(&f, &g));
    assert!(!Failure::ptr_eq(&f, &Failure::msg("shared")));
    // error_arc shares the error itself.
    assert!(std::sync::Arc::ptr_eq(&f.error_arc(), &g.error_arc()));
}

// MessageError carries the message.
#[test]
fn msg_carries_message_error() {
    let f = Failure::msg(format_args!("{} items", 3));
    assert_eq!(
        f.check::<MessageError>(),
        Some(&MessageError("3 items".to_owned()))
    );
}

// Failures cross threads.
#[test]
fn failure_crosses_threads() {
    let f = std::thread::spawn(|| Failure::new(generic("from a worker")))
        .join()
        .unwrap();
    assert_eq!(f.check::<GenericError>(), Some(&generic("from a worker")));
}

// Twisted: UtilTests.test_logErrorReturnsError
#[test]
fn log_error_returns_error() {
    let error = Failure::new(generic("runtime"));
    let (result, _logs) = capture_logs(|| log_error(error.clone()));
    assert!(Failure::ptr_eq(&result, &error));
}

// Twisted: UtilTests.test_logErrorLogsError
#[test]
fn log_error_logs_error() {
    let error = Failure::new(generic("runtime"));
    let (_, logs) = capture_logs(|| log_error(error.clone()));
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(logs[0].level, tracing::Level::ERROR);
    assert_eq!(logs[0].field("failure"), Some(error.to_string().as_str()));
}

// Twisted: UtilTests.test_logErrorLogsErrorNoRepr (the message is the traceback text)
#[test]
fn log_error_logs_error_no_repr() {
    let error = Failure::new(generic("runtime"));
    let (_, logs) = capture_logs(|| log_error(error.clone()));
    assert_eq!(logs[0].message, error.traceback());
    assert!(
        logs[0].message.starts_with("Failure "),
        "{}",
        logs[0].message
    );
}

// log_error as an errback: logs and passes the failure on.
#[test]
fn log_error_as_errback() {
    let (f, logs) = capture_logs(|| {
        let d = fail::<()>(generic("via errback")).add_errback(|f| Err(log_error(f)));
        d.into_result().unwrap().unwrap_err()
    });
    assert_eq!(f.check::<GenericError>(), Some(&generic("via errback")));
    assert_eq!(logs.len(), 1, "{logs:?}");
}
