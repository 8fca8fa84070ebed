//! What every example does around its program: log to stderr, keep its
//! SQLite database in a temporary directory, and print its results on
//! stdout. The program itself runs under `reactor::react`, Twisted's
//! `task.react`, which owns the reactor's run/stop and the exit code.
// Each example uses only some of these.
#![allow(dead_code)]

use std::io::Write;

/// Logs to stderr at `info` (or as `RUST_LOG` says).
pub(crate) fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// Runs `program` with the path of the database file `file` in a fresh
/// temporary directory, removes the directory, and returns `program`'s exit
/// code (1 if the directory could not be made).
pub(crate) fn with_temp_db(file: &str, program: impl FnOnce(&str) -> i32) -> i32 {
    let stem = file.trim_end_matches(".db");
    let dir = std::env::temp_dir().join(format!("adbapi-{stem}-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        tracing::error!(dir = %dir.display(), error = %e, "could not create the temporary directory");
        return 1;
    }
    let path = dir.join(file);
    let code = match path.to_str() {
        Some(db) => program(db),
        None => {
            tracing::error!(path = %path.display(), "the temporary path is not UTF-8");
            1
        }
    };
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "could not remove the temporary directory");
    }
    code
}

/// One line on stdout. A failed write (a closed pipe) is not worth failing
/// the example for.
pub(crate) fn say(line: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}
