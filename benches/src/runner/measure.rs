//! Process counters read around each phase: bytes the process sent to storage
//! (`/proc/self/io`), CPU time (`getrusage`), peak resident memory (`VmHWM`, reset through
//! `/proc/self/clear_refs`), and the disk space of a directory.
//!
//! All counters are per process, so they include the engines' background threads (flushes,
//! compactions, Helio's I/O and cleaner threads); engines run one at a time.

use std::fs;
use std::path::Path;
use std::time::Duration;

/// Counters at one instant.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    /// Bytes this process caused to be sent to the storage layer (`write_bytes`).
    pub device_write_bytes: u64,
    /// Bytes this process caused to be fetched from storage (`read_bytes`).
    pub device_read_bytes: u64,
    /// User plus system CPU time of every thread.
    pub cpu: Duration,
}

impl Sample {
    /// Reads the counters now (zeros where the kernel does not offer them).
    pub fn now() -> Self {
        let io = fs::read_to_string("/proc/self/io").unwrap_or_default();
        let field = |name: &str| {
            io.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok())).unwrap_or(0)
        };
        Self {
            device_write_bytes: field("write_bytes:"),
            device_read_bytes: field("read_bytes:"),
            cpu: cpu_time(),
        }
    }

    /// Counters accrued since `earlier`.
    pub fn since(&self, earlier: &Sample) -> Sample {
        Sample {
            device_write_bytes: self.device_write_bytes.saturating_sub(earlier.device_write_bytes),
            device_read_bytes: self.device_read_bytes.saturating_sub(earlier.device_read_bytes),
            cpu: self.cpu.saturating_sub(earlier.cpu),
        }
    }
}

fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Resets the peak resident set size to the current one, so [`peak_rss`] reports the peak of
/// what follows (Linux ≥ 4.0). Returns false where the kernel refuses.
pub fn reset_peak_rss() -> bool {
    fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Peak resident set size in bytes since start or the last [`reset_peak_rss`].
pub fn peak_rss() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Bytes of disk a directory tree occupies (allocated blocks, so sparse and preallocated files
/// count as the file system counts them).
pub fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_bytes(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_move_with_work() {
        let dir = tempfile::tempdir().unwrap();
        let before = Sample::now();
        let data = vec![7u8; 4 << 20];
        let path = dir.path().join("f");
        fs::write(&path, &data).unwrap();
        fs::File::open(&path).unwrap().sync_all().unwrap();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_add(crate::splitmix64(i));
        }
        std::hint::black_box(x);
        let d = Sample::now().since(&before);
        assert!(d.device_write_bytes >= 4 << 20, "wrote {} bytes", d.device_write_bytes);
        assert!(d.cpu > Duration::ZERO);
        assert!(disk_bytes(dir.path()) >= 4 << 20);
        assert!(peak_rss() > 4 << 20);
    }
}
