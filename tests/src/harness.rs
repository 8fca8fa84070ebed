//! What the integration tests share beyond `test_support`: unique names,
//! in-chain assertions and temporary directories. The bounded runs they use
//! (`run_chain`, `run_async`, `fake_wait`, [`TIMEOUT`]) are re-exported from
//! `test_support`, so every crate's tests bound their runs the same way.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use deferred::Failure;

pub use test_support::reactor::{fake_wait, run_async, run_chain};
pub use test_support::TIMEOUT;

/// A name unique in this process (and across concurrent test processes):
/// for pools (`cp_name`), registered modules and temporary directories.
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// `Ok(())` if `cond`, else a failure carrying `msg`: an assertion for
/// code that runs inside a Deferred chain or on a worker thread.
pub fn ensure(cond: bool, msg: impl std::fmt::Display) -> Result<(), Failure> {
    if cond {
        Ok(())
    } else {
        Err(Failure::msg(msg))
    }
}

/// A temporary directory, removed with its contents when dropped.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates a fresh directory under the system's temporary directory.
    pub fn new(prefix: &str) -> TempDir {
        let path = std::env::temp_dir().join(unique_name(prefix));
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        TempDir { path }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `name` inside it, as a string (for `database=`).
    pub fn file(&self, name: &str) -> String {
        self.path.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
