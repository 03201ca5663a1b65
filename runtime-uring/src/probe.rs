//! What the kernel and the filesystem under a directory can do, asked once at start-up: which
//! io_uring operations exist, whether O_DIRECT works there, and the alignment it needs. The log
//! picks direct or buffered I/O from this, and says which it picked and why.

use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use io_uring::{opcode, IoUring, Probe};

use crate::dma::DmaBuf;

/// Alignment assumed when the kernel cannot report one (no `STATX_DIOALIGN` before Linux 6.1):
/// the page size, which every device accepts.
const FALLBACK_ALIGN: u32 = 4096;

/// The io_uring operations the log relies on, by name.
const OPERATIONS: [(&str, u8); 5] = [
    ("Write", opcode::Write::CODE),
    ("Read", opcode::Read::CODE),
    ("Fsync", opcode::Fsync::CODE),
    ("WriteFixed", opcode::WriteFixed::CODE),
    ("ReadFixed", opcode::ReadFixed::CODE),
];

/// What [`probe`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// The running kernel's release string.
    pub kernel: String,
    /// The io_uring operations the log uses that this kernel lacks (empty when all are there).
    pub missing_operations: Vec<&'static str>,
    /// How direct I/O works in the directory probed.
    pub direct_io: DirectIo,
}

/// Whether O_DIRECT works in a directory, and with what alignment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirectIo {
    /// It works: buffers and offsets aligned to these.
    Supported {
        /// Alignment of buffer memory, in bytes.
        memory_align: u32,
        /// Alignment of file offsets and lengths, in bytes.
        offset_align: u32,
    },
    /// The filesystem refuses O_DIRECT (tmpfs did before Linux 6.6): the log falls back to
    /// buffered I/O.
    Refused {
        /// The error the kernel gave.
        reason: String,
    },
}

impl DirectIo {
    /// The alignment to give buffers, offsets and lengths: the larger of the two, and at least
    /// 4096. Devices often accept 512-byte writes but have 4 KiB physical blocks; a smaller
    /// write makes them read, modify and rewrite the block, and a crash then can tear data that
    /// was already durable next to it.
    pub fn align(&self) -> Option<usize> {
        match self {
            DirectIo::Supported { memory_align, offset_align } => {
                Some((*memory_align).max(*offset_align).max(FALLBACK_ALIGN) as usize)
            }
            DirectIo::Refused { .. } => None,
        }
    }
}

/// A probe step failed for a reason other than "not supported".
#[derive(Debug)]
pub struct ProbeError {
    /// What was being done.
    pub op: &'static str,
    /// Where.
    pub path: PathBuf,
    /// The error.
    pub source: io::Error,
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.op, self.path.display(), self.source)?;
        if self.op == "io_uring setup" {
            write!(
                f,
                " (io_uring is required: Linux 5.6 or later, and not disabled by \
                 kernel.io_uring_disabled or a seccomp profile)"
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for ProbeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl fmt::Display for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kernel {}; io_uring ", self.kernel)?;
        if self.missing_operations.is_empty() {
            write!(f, "has every operation the log uses")?;
        } else {
            write!(f, "lacks {}", self.missing_operations.join(", "))?;
        }
        match &self.direct_io {
            DirectIo::Supported { memory_align, offset_align } => write!(
                f,
                "; O_DIRECT works (memory aligned to {memory_align} B, offsets to {offset_align} B)"
            ),
            DirectIo::Refused { reason } => write!(f, "; O_DIRECT refused ({reason}): buffered I/O"),
        }
    }
}

/// Probes the kernel and the filesystem under `dir` (which must exist and be writable); leaves
/// nothing behind.
pub fn probe(dir: &Path) -> Result<Capabilities, ProbeError> {
    let err = |op, source| ProbeError { op, path: dir.to_path_buf(), source };
    let ring = IoUring::new(2).map_err(|e| err("io_uring setup", e))?;
    let mut ops = Probe::new();
    ring.submitter().register_probe(&mut ops).map_err(|e| err("io_uring probe", e))?;
    let missing_operations =
        OPERATIONS.iter().filter(|(_, code)| !ops.is_supported(*code)).map(|(name, _)| *name).collect();
    let direct_io = probe_direct_io(dir)?;
    Ok(Capabilities { kernel: kernel_release(), missing_operations, direct_io })
}

fn kernel_release() -> String {
    // SAFETY: `uname` fills the zeroed struct; `release` is NUL-terminated.
    unsafe {
        let mut names: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut names) != 0 {
            return "unknown".into();
        }
        std::ffi::CStr::from_ptr(names.release.as_ptr()).to_string_lossy().into_owned()
    }
}

/// Opens an unnamed scratch file (`O_TMPFILE`: nothing to leave behind, whatever happens),
/// asks statx for the alignment, and writes one aligned block with O_DIRECT to be sure.
fn probe_direct_io(dir: &Path) -> Result<DirectIo, ProbeError> {
    let err = |op, source| ProbeError { op, path: dir.to_path_buf(), source };
    let c_dir = CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| err("name", io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    // SAFETY: a valid NUL-terminated path.
    let fd = unsafe { libc::open(c_dir.as_ptr(), libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC, 0o600) };
    if fd < 0 {
        return Err(err("create probe file", io::Error::last_os_error()));
    }
    let result = direct_io_on(fd).map_err(|e| err("probe O_DIRECT", e));
    // SAFETY: our descriptor.
    unsafe { libc::close(fd) };
    result
}

fn direct_io_on(fd: libc::c_int) -> io::Result<DirectIo> {
    // SAFETY: plain fcntl calls on our descriptor.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // Setting O_DIRECT on an open file is where filesystems without it refuse.
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_DIRECT) } < 0 {
        return Ok(DirectIo::Refused { reason: io::Error::last_os_error().to_string() });
    }
    let (memory_align, offset_align) = dio_align(fd).unwrap_or((FALLBACK_ALIGN, FALLBACK_ALIGN));
    let align = memory_align.max(offset_align).max(FALLBACK_ALIGN) as usize;
    let block = DmaBuf::new(align, align).map_err(|e| io::Error::new(io::ErrorKind::OutOfMemory, e))?;
    // SAFETY: `block` is `align` bytes of aligned memory.
    let wrote = unsafe { libc::pwrite(fd, block.as_ptr().cast(), align, 0) };
    if wrote < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EINVAL) {
            return Ok(DirectIo::Refused { reason: e.to_string() });
        }
        return Err(e);
    }
    if wrote as usize != align {
        return Ok(DirectIo::Refused { reason: format!("a {align}-byte direct write wrote {wrote} bytes") });
    }
    Ok(DirectIo::Supported { memory_align, offset_align })
}

/// The direct-I/O alignments statx reports for an open file, if the kernel knows
/// `STATX_DIOALIGN` (Linux 6.1).
fn dio_align(fd: libc::c_int) -> Option<(u32, u32)> {
    // SAFETY: statx on a descriptor (empty path) fills the zeroed struct.
    let stx = unsafe {
        let mut stx: libc::statx = std::mem::zeroed();
        let empty = c"";
        if libc::statx(fd, empty.as_ptr(), libc::AT_EMPTY_PATH, libc::STATX_DIOALIGN, &mut stx) != 0 {
            return None;
        }
        stx
    };
    (stx.stx_mask & libc::STATX_DIOALIGN != 0 && stx.stx_dio_offset_align != 0)
        .then_some((stx.stx_dio_mem_align, stx.stx_dio_offset_align))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let caps = probe(dir.path()).unwrap();
        assert!(!caps.kernel.is_empty());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "the probe left a file");
        if let Some(align) = caps.direct_io.align() {
            assert!(align.is_power_of_two() && align >= 512);
        }
        assert!(caps.to_string().starts_with("kernel "));
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = probe(&missing).unwrap_err();
        assert_eq!(err.op, "create probe file");
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
