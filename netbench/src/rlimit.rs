//! Raising `RLIMIT_NOFILE` (`ulimit -n`) so one process can hold the
//! 10 000 idle connections (or 1 000 load-generator clients) it is asked to.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// The descriptor limits before and after [`raise_nofile`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileLimits {
    /// The soft limit found (`None`: unlimited).
    pub soft_before: Option<u64>,
    /// The soft limit now.
    pub soft_after: Option<u64>,
    /// The hard limit, which only root can raise (`None`: unlimited).
    pub hard: Option<u64>,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, as far as the
/// kernel lets an unprivileged process.
pub fn raise_nofile() -> std::io::Result<NofileLimits> {
    let before = getrlimit(Resource::Nofile);
    if before.current != before.maximum {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: before.maximum,
                maximum: before.maximum,
            },
        )?;
    }
    let after = getrlimit(Resource::Nofile);
    Ok(NofileLimits {
        soft_before: before.current,
        soft_after: after.current,
        hard: after.maximum,
    })
}
