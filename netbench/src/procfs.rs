//! What the benchmark reads about a process from Linux's `/proc`: resident
//! memory (`Rss` in `/proc/PID/smaps_rollup`), CPU time (`utime + stime` in
//! `/proc/PID/stat`) and open descriptors and sockets (`/proc/PID/fd`).

use std::io;
use std::time::Duration;

/// `/proc` did not say what we asked.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// The file could not be read (the process is gone, or not ours).
    #[error("reading {path}: {source}")]
    Read {
        /// The `/proc` path.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The file did not have the expected field.
    #[error("{path}: no {field} field in {text:?}")]
    Format {
        /// The `/proc` path.
        path: String,
        /// The field looked for.
        field: &'static str,
        /// The start of what was read.
        text: String,
    },
}

/// Which process: `"self"` or a pid.
fn proc_path(pid: Option<u32>, leaf: &str) -> String {
    match pid {
        Some(pid) => format!("/proc/{pid}/{leaf}"),
        None => format!("/proc/self/{leaf}"),
    }
}

fn read(path: &str) -> Result<String, ProcError> {
    std::fs::read_to_string(path).map_err(|source| ProcError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Resident set size in bytes of `pid` (`None`: this process), counted
/// page by page (`Rss` in `/proc/PID/smaps_rollup`): since Linux 6.2 the
/// `VmRSS` of `/proc/PID/status` comes from per-CPU counters that may lag by
/// hundreds of kilobytes, as much as a few hundred connections cost.
/// Falls back to `VmRSS` where `smaps_rollup` is missing (before 4.14).
pub fn rss_bytes(pid: Option<u32>) -> Result<u64, ProcError> {
    let rollup = proc_path(pid, "smaps_rollup");
    if let Ok(text) = std::fs::read_to_string(&rollup) {
        return parse_kib_field(&text, "Rss:").ok_or_else(|| ProcError::Format {
            path: rollup,
            field: "Rss",
            text: text.chars().take(200).collect(),
        });
    }
    let path = proc_path(pid, "status");
    let text = read(&path)?;
    parse_kib_field(&text, "VmRSS:").ok_or_else(|| ProcError::Format {
        path,
        field: "VmRSS",
        text: text.chars().take(200).collect(),
    })
}

/// The value of a `Name:   1234 kB` line, in bytes.
fn parse_kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let mut words = line[name.len()..].split_whitespace();
    let kib: u64 = words.next()?.parse().ok()?;
    (words.next()? == "kB").then_some(kib * 1024)
}

/// CPU time (user + system) used so far by `pid` (`None`: this process).
pub fn cpu_time(pid: Option<u32>) -> Result<Duration, ProcError> {
    let path = proc_path(pid, "stat");
    let text = read(&path)?;
    let ticks = parse_utime_stime(&text).ok_or_else(|| ProcError::Format {
        path,
        field: "utime/stime",
        text: text.chars().take(200).collect(),
    })?;
    let hz = rustix::param::clock_ticks_per_second().max(1);
    Ok(Duration::from_nanos(
        ticks.saturating_mul(1_000_000_000) / hz,
    ))
}

fn parse_utime_stime(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may itself hold
    // spaces or parentheses: count fields from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15.
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// How many descriptors `pid` has open.
pub fn open_fds(pid: u32) -> Result<usize, ProcError> {
    let path = proc_path(Some(pid), "fd");
    std::fs::read_dir(&path)
        .map(Iterator::count)
        .map_err(|source| ProcError::Read { path, source })
}

/// How many sockets `pid` has open (descriptors that are `socket:[…]`;
/// files such as a SQLite database opened and closed by worker threads
/// are not counted).
pub fn open_sockets(pid: u32) -> Result<usize, ProcError> {
    let path = proc_path(Some(pid), "fd");
    let entries = std::fs::read_dir(&path).map_err(|source| ProcError::Read {
        path: path.clone(),
        source,
    })?;
    // A descriptor closed between listing and reading its link is skipped.
    Ok(entries
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter(|target| {
            target
                .as_os_str()
                .as_encoded_bytes()
                .starts_with(b"socket:")
        })
        .count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_found_even_with_odd_command_names() {
        let status = "Name:\tx\nVmRSS:\t    1234 kB\n";
        assert_eq!(parse_kib_field(status, "VmRSS:"), Some(1234 * 1024));
        assert_eq!(parse_kib_field("Name:\tx\n", "VmRSS:"), None);
        let rollup = "55-66 ---p 0 00:00 0 [rollup]\nRss:   1500 kB\nPss:   1400 kB\n";
        assert_eq!(parse_kib_field(rollup, "Rss:"), Some(1500 * 1024));
        let stat = "77 (a) b (c)) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0";
        assert_eq!(parse_utime_stime(stat), Some(300));
    }

    #[test]
    fn this_process_can_be_read() {
        assert!(rss_bytes(None).unwrap() > 0);
        cpu_time(None).unwrap();
        assert!(open_fds(std::process::id()).unwrap() >= 3);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(open_sockets(std::process::id()).unwrap() >= 1);
        drop(listener);
    }
}
