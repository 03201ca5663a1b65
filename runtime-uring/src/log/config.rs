//! The knobs of one shard's log, their defaults and their limits.

use std::fmt;
use std::time::Duration;

use crate::disk::DiskRef;
use crate::recovery::ScanLimits;

/// What survives a crash, chosen per write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Durability {
    /// The write goes to the log's buffers and reaches disk when a buffer fills, at the next
    /// [`sync`](super::Log::sync) and at close. A crash (of the process or the machine) loses
    /// every such write after the last completed `sync`, except those in buffers that had
    /// already filled and been written. The cheapest mode: one memory copy per write.
    None,
    /// Like `None`, and the log also writes and flushes (fdatasync) what it holds at most
    /// [`LogConfig::flush_interval`] after the write. A crash loses at most the writes of the
    /// last interval (plus the time one write and flush takes).
    #[default]
    Buffered,
    /// The call returns only once its record is on stable storage (written and fdatasync'd).
    /// Concurrent `Sync` writers share one write and one flush (group commit). A crash loses
    /// nothing that was acknowledged.
    Sync,
}

/// Test-only failure injection: the Nth segment write or flush (counting from 1 when the log
/// opens) fails with an injected error instead of reaching the kernel, as if the device had
/// failed it.
pub use helio_core::log::writer::Faults;

/// Configuration of one shard's log. Every knob has a documented default and limits, checked
/// by [`LogConfig::validate`] (and so at open).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// Size of each segment file (default 4 GiB; 1 MiB ..= 1 TiB, a multiple of the buffer size).
    /// Only used when the log is created: an existing log keeps the size it was created with.
    pub segment_bytes: u64,
    /// Size of each write buffer (default 1 MiB; 64 KiB ..= 64 MiB, a power of two).
    pub buffer_bytes: usize,
    /// How many write buffers (default 4; 2 ..= 64): one fills while the others are written.
    /// Four rather than two: with two, each 1 MiB write waits for two thread wake-ups between
    /// fills, and sequential append reached 0.87 of the device's rate against 0.95 with four
    /// (`logbench --only append`, same run conditions).
    pub buffers: usize,
    /// Longest a [`Durability::Buffered`] write waits for its flush (default 10 ms; 100 µs ..= 60 s).
    pub flush_interval: Duration,
    /// Use O_DIRECT when the filesystem supports it (default true). Without it (or where it is
    /// refused) the log writes through the page cache and says so in its stats.
    pub direct_io: bool,
    /// Entries of the shard's io_uring submission queue (default 64; 8 ..= 4096, a power of two).
    pub ring_depth: u32,
    /// Kernel-side submission polling (IORING_SETUP_SQPOLL) for the ring (default off: it
    /// costs a CPU spinning in the kernel).
    pub sqpoll: bool,
    /// Pin the I/O thread to this CPU (default: not pinned).
    pub cpu: Option<usize>,
    /// Failure injection for tests (default: none).
    pub faults: Faults,
    /// Where the log's files are: the real file system (default), or a simulated disk in
    /// tests (whose log is then driven by the threads that wait on it instead of an io_uring
    /// I/O thread). A test hook.
    #[doc(hidden)]
    pub disk: DiskRef,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 4 << 30,
            buffer_bytes: 1 << 20,
            buffers: 4,
            flush_interval: Duration::from_millis(10),
            direct_io: true,
            ring_depth: 64,
            sqpoll: false,
            cpu: None,
            faults: Faults::default(),
            disk: DiskRef::real(),
        }
    }
}

/// A knob out of its limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfigError {
    /// The knob.
    pub knob: &'static str,
    /// The value given.
    pub value: u64,
    /// What it must be.
    pub rule: &'static str,
}

impl fmt::Display for LogConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "log setting {} = {}: must be {}", self.knob, self.value, self.rule)
    }
}

impl std::error::Error for LogConfigError {}

impl LogConfig {
    /// Bytes of memory the log's write buffers take.
    pub fn log_buffer_bytes(&self) -> u64 {
        (self.buffers * self.buffer_bytes) as u64
    }

    /// How far recovery scans past a damaged frame for proof of corruption, for a log written
    /// with this geometry: past every buffer that can be in flight, twice over.
    pub fn scan_limits(&self) -> ScanLimits {
        let in_flight = (self.buffers * self.buffer_bytes) as u64;
        ScanLimits {
            quiet_run: (2 * in_flight).max(ScanLimits::default().quiet_run),
            max_frame: self.buffer_bytes / 2,
        }
    }

    /// Checks every knob against its limits.
    pub fn validate(&self) -> Result<(), LogConfigError> {
        let check = |ok: bool, knob, value: u64, rule| {
            if ok {
                Ok(())
            } else {
                Err(LogConfigError { knob, value, rule })
            }
        };
        let buffer = self.buffer_bytes as u64;
        check(
            buffer.is_power_of_two() && (64 << 10..=64 << 20).contains(&buffer),
            "buffer_bytes",
            buffer,
            "a power of two from 64 KiB to 64 MiB",
        )?;
        check(
            (1 << 20..=1 << 40).contains(&self.segment_bytes) && self.segment_bytes % buffer == 0,
            "segment_bytes",
            self.segment_bytes,
            "from 1 MiB to 1 TiB and a multiple of buffer_bytes",
        )?;
        check((2..=64).contains(&self.buffers), "buffers", self.buffers as u64, "from 2 to 64")?;
        let interval = self.flush_interval.as_micros().min(u64::MAX as u128) as u64;
        check(
            (100..=60_000_000).contains(&interval),
            "flush_interval (µs)",
            interval,
            "from 100 µs to 60 s",
        )?;
        check(
            self.ring_depth.is_power_of_two() && (8..=4096).contains(&self.ring_depth),
            "ring_depth",
            self.ring_depth as u64,
            "a power of two from 8 to 4096",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_limits_are_named() {
        LogConfig::default().validate().unwrap();
        let bad = LogConfig { buffer_bytes: 3 << 20, ..LogConfig::default() };
        assert_eq!(bad.validate().unwrap_err().knob, "buffer_bytes");
        let bad = LogConfig { segment_bytes: (4 << 30) + 4096, ..LogConfig::default() };
        assert_eq!(bad.validate().unwrap_err().knob, "segment_bytes");
        let bad = LogConfig { buffers: 1, ..LogConfig::default() };
        assert_eq!(bad.validate().unwrap_err().knob, "buffers");
        let bad = LogConfig { ring_depth: 100, ..LogConfig::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("ring_depth = 100"));
    }
}
