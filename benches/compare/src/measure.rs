//! Process measurements: memory, CPU, disk, and timed phases.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// (VmRSS, VmHWM) in bytes.
pub(crate) fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// (RssAnon, RssFile) in bytes: heap versus mapped file pages.
pub(crate) fn rss_split() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or(0)
    };
    (field("RssAnon:"), field("RssFile:"))
}

/// Reset VmHWM to the current RSS (Linux >= 4.0); false if refused.
pub(crate) fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// (user, system) CPU seconds of the whole process (all threads), from
/// `/proc/self/stat` (fields 14 and 15, in USER_HZ = 100 ticks a second on
/// Linux: 10 ms resolution); zeros if unreadable.
pub(crate) fn cpu_split() -> (f64, f64) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return (0.0, 0.0);
    };
    // The command name (field 2) may hold spaces: count from after it.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let field = |n: usize| -> f64 {
        rest.split_whitespace()
            .nth(n - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 100.0
    };
    (field(14), field(15))
}

/// Flush every dirty page of the system (`sync`), so that no system starts
/// with the previous one's writeback.
pub(crate) fn sync_everything() {
    let _ = Command::new("sync").status();
}

/// User + system CPU seconds of the whole process (all threads).
pub(crate) fn cpu_secs() -> f64 {
    let (u, s) = cpu_split();
    u + s
}

/// (allocated bytes, apparent bytes) of every file under `dir`.
pub(crate) fn disk_usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut alloc = 0;
    let mut apparent = 0;
    let Ok(rd) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    for e in rd.flatten() {
        let Ok(m) = e.metadata() else { continue };
        if m.is_dir() {
            let (a, b) = disk_usage(&e.path());
            alloc += a;
            apparent += b;
        } else {
            alloc += m.blocks() * 512;
            apparent += m.len();
        }
    }
    (alloc, apparent)
}

/// Phase bookkeeping: wall time, CPU time and peak RSS above the start.
pub(crate) struct Phase {
    pub(crate) t: Instant,
    pub(crate) cpu: f64,
    pub(crate) split: (f64, f64),
    pub(crate) rss0: u64,
    pub(crate) peak_reset: bool,
}

impl Phase {
    pub(crate) fn start() -> Phase {
        let peak_reset = reset_peak();
        Phase {
            t: Instant::now(),
            cpu: cpu_secs(),
            split: cpu_split(),
            rss0: rss().0,
            peak_reset,
        }
    }
    /// (user, system) CPU seconds since the start.
    pub(crate) fn user_sys(&self) -> (f64, f64) {
        let (u, s) = cpu_split();
        (u - self.split.0, s - self.split.1)
    }
    /// (wall secs, cpu secs, rss at start, peak rss)
    pub(crate) fn end(&self) -> (f64, f64, u64, u64) {
        (
            self.t.elapsed().as_secs_f64(),
            cpu_secs() - self.cpu,
            self.rss0,
            rss().1,
        )
    }
}
