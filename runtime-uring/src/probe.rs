//! What the kernel and the filesystem under a directory can do, asked once at start-up: which
//! io_uring operations exist, whether O_DIRECT works there, and the alignment it needs. The log
//! picks direct or buffered I/O from this, and says which it picked and why.

use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
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
    /// The filesystem refuses O_DIRECT (tmpfs did before Linux 6.6), or it could not be tried
    /// (no scratch file could be made there): the log falls back to buffered I/O.
    Refused {
        /// What failed, and the error the kernel gave.
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
/// nothing behind, and removes the scratch files of earlier probes that died before unlinking
/// theirs.
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

/// The name of the scratch file used where `O_TMPFILE` is refused starts with this, followed by
/// the process id, `-` and 16 hex digits (see [`is_scratch_name`]).
const SCRATCH_PREFIX: &str = ".helio-probe-";

/// How many taken names to step over before giving up on a named scratch file.
const SCRATCH_ATTEMPTS: u32 = 16;

/// Opens a scratch file in `dir`, asks statx for the alignment, and writes one aligned block with
/// O_DIRECT to be sure. What cannot be probed (no scratch file can be made, O_DIRECT cannot be
/// set, the write fails) is `Refused`, naming what failed, and the log then uses the page cache;
/// only a directory that cannot be used at all (missing, not a directory, not writable) is an
/// error.
fn probe_direct_io(dir: &Path) -> Result<DirectIo, ProbeError> {
    probe_direct_io_with(dir, true)
}

/// [`probe_direct_io`]; `use_tmpfile: false` skips `O_TMPFILE` as though the filesystem refused
/// it, as FUSE does, so that tests reach the named-file fallback anywhere.
fn probe_direct_io_with(dir: &Path, use_tmpfile: bool) -> Result<DirectIo, ProbeError> {
    let err = |op, source| ProbeError { op, path: dir.to_path_buf(), source };
    let c_dir = CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| err("name", io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    remove_stale_scratch(dir);
    let tmpfile = if use_tmpfile {
        // SAFETY: a valid NUL-terminated path.
        retry_eintr(|| unsafe {
            libc::open(c_dir.as_ptr(), libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC, 0o600)
        })
        .map(|fd| Scratch { fd, linked: None })
    } else {
        Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP))
    };
    // `O_TMPFILE` is refused with EOPNOTSUPP where the filesystem lacks it (FUSE, some network
    // filesystems), and with EISDIR or EINVAL by some kernels and filesystems. Whatever the
    // error, a named file is tried next: it either works, or says whether the directory is
    // usable at all.
    let scratch = match tmpfile {
        Ok(scratch) => scratch,
        Err(tmpfile_error) => match named_scratch(dir) {
            Ok(scratch) => scratch,
            Err(named_error) => return no_scratch_file(dir, tmpfile_error, named_error),
        },
    };
    Ok(direct_io_on(scratch.fd))
}

/// What to make of a directory where neither an `O_TMPFILE` nor a named scratch file could be
/// created: an error if the directory cannot be used (the named file's error says so), else
/// direct I/O counts as refused, since it could not be tried.
fn no_scratch_file(
    dir: &Path,
    tmpfile_error: io::Error,
    named_error: io::Error,
) -> Result<DirectIo, ProbeError> {
    let unusable = [
        libc::ENOENT,
        libc::ENOTDIR,
        libc::EACCES,
        libc::EPERM,
        libc::EROFS,
        libc::ELOOP,
        libc::ENAMETOOLONG,
    ];
    if named_error.raw_os_error().is_some_and(|code| unusable.contains(&code)) {
        return Err(ProbeError { op: "create probe file", path: dir.to_path_buf(), source: named_error });
    }
    Ok(DirectIo::Refused {
        reason: format!(
            "no scratch file to probe it with: O_TMPFILE: {tmpfile_error}; a named file: {named_error}"
        ),
    })
}

/// A scratch file, closed (and unlinked, if it still has a name) when dropped.
struct Scratch {
    fd: libc::c_int,
    /// The name, if unlinking it right after creating it failed.
    linked: Option<CString>,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // SAFETY: our descriptor, closed once; a NUL-terminated path.
        unsafe {
            libc::close(self.fd);
            if let Some(name) = &self.linked {
                // If this fails too, the name is recognisable and the next probe removes it.
                libc::unlink(name.as_ptr());
            }
        }
    }
}

/// Creates a scratch file with a name of its own in `dir` (`O_CREAT | O_EXCL`), and unlinks it at
/// once, before anything else is done with it.
///
/// A process that dies between the two calls leaves an empty file named
/// `.helio-probe-<pid>-<16 hex digits>` behind. Nothing reads it, and the name says what it is:
/// every probe starts by removing files with such names from its directory
/// ([`remove_stale_scratch`]), so the next open of the store there clears it. Removing one that a live probe of
/// another process has just made does no harm: that process already holds its descriptor, and
/// takes the `ENOENT` of its own unlink as done.
fn named_scratch(dir: &Path) -> io::Result<Scratch> {
    let mut last = None;
    for attempt in 0..SCRATCH_ATTEMPTS {
        let path = dir.join(scratch_name(attempt));
        let c_path = CString::new(path.into_os_string().into_vec())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let flags = libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_RDWR | libc::O_CLOEXEC;
        // SAFETY: a valid NUL-terminated path.
        match retry_eintr(|| unsafe { libc::open(c_path.as_ptr(), flags, 0o600) }) {
            Ok(fd) => {
                // SAFETY: as above.
                let unlinked = unsafe { libc::unlink(c_path.as_ptr()) } == 0
                    || io::Error::last_os_error().raw_os_error() == Some(libc::ENOENT);
                return Ok(Scratch { fd, linked: (!unlinked).then_some(c_path) });
            }
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EEXIST)))
}

/// A scratch file name no other probe uses: the process id and 64 random bits.
fn scratch_name(attempt: u32) -> String {
    use std::hash::BuildHasher;
    // `RandomState` is keyed from the OS's random source, and differently at every call.
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let random = std::collections::hash_map::RandomState::new().hash_one((nanos, attempt));
    format!("{SCRATCH_PREFIX}{}-{random:016x}", std::process::id())
}

/// Whether `name` is one [`scratch_name`] makes.
fn is_scratch_name(name: &str) -> bool {
    let Some((pid, random)) = name.strip_prefix(SCRATCH_PREFIX).and_then(|rest| rest.split_once('-')) else {
        return false;
    };
    !pid.is_empty()
        && pid.bytes().all(|b| b.is_ascii_digit())
        && random.len() == 16
        && random.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Removes the scratch files of probes that died before unlinking theirs (see [`named_scratch`]);
/// best effort, as nothing depends on it.
fn remove_stale_scratch(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let stale = entry.file_name().to_str().is_some_and(is_scratch_name)
            && entry.file_type().is_ok_and(|t| t.is_file());
        if stale {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Runs a libc call returning a descriptor (or -1 and `errno`) until a signal does not interrupt it.
fn retry_eintr(mut call: impl FnMut() -> libc::c_int) -> io::Result<libc::c_int> {
    loop {
        let fd = call();
        if fd >= 0 {
            return Ok(fd);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Whether O_DIRECT works on the scratch file `fd`; anything that fails means it is refused,
/// with the reason naming the step.
fn direct_io_on(fd: libc::c_int) -> DirectIo {
    let refused = |step: &str, e: io::Error| DirectIo::Refused { reason: format!("{step}: {e}") };
    // SAFETY: plain fcntl calls on our descriptor.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return refused("read the scratch file's flags", io::Error::last_os_error());
    }
    // Setting O_DIRECT on an open file is where filesystems without it refuse.
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_DIRECT) } < 0 {
        return refused("set O_DIRECT", io::Error::last_os_error());
    }
    let (memory_align, offset_align) = dio_align(fd).unwrap_or((FALLBACK_ALIGN, FALLBACK_ALIGN));
    let align = memory_align.max(offset_align).max(FALLBACK_ALIGN) as usize;
    let block = match DmaBuf::new(align, align) {
        Ok(block) => block,
        Err(e) => return refused(&format!("allocate a {align}-byte aligned block"), io::Error::other(e)),
    };
    let wrote = loop {
        // SAFETY: `block` is `align` bytes of aligned memory.
        let wrote = unsafe { libc::pwrite(fd, block.as_ptr().cast(), align, 0) };
        if wrote >= 0 {
            break wrote as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            // EINVAL is how most filesystems without direct I/O refuse the write.
            return refused(&format!("a {align}-byte O_DIRECT write"), e);
        }
    };
    if wrote != align {
        return DirectIo::Refused { reason: format!("a {align}-byte O_DIRECT write wrote {wrote} bytes") };
    }
    DirectIo::Supported { memory_align, offset_align }
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

    /// As on FUSE: `O_TMPFILE` is refused, and the probe goes on with a named file, which it
    /// leaves no trace of.
    #[test]
    fn probes_with_a_named_file_where_o_tmpfile_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let direct_io = probe_direct_io_with(dir.path(), false).unwrap_or_else(|e| panic!("{e}"));
        match &direct_io {
            DirectIo::Supported { .. } => assert!(direct_io.align().unwrap().is_power_of_two()),
            DirectIo::Refused { reason } => assert!(!reason.is_empty()),
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "the probe left a file");
        // The named file works wherever O_TMPFILE does: the same answer.
        assert_eq!(direct_io, probe_direct_io_with(dir.path(), true).unwrap());
    }

    #[test]
    fn a_missing_directory_is_an_error_without_o_tmpfile_too() {
        let dir = tempfile::tempdir().unwrap();
        let err = probe_direct_io_with(&dir.path().join("nope"), false).unwrap_err();
        assert_eq!(err.op, "create probe file");
        assert_eq!(err.source.raw_os_error(), Some(libc::ENOENT), "{err}");
    }

    #[test]
    fn no_scratch_file_is_an_error_only_where_the_directory_is_unusable() {
        let dir = Path::new("/some/dir");
        let os = io::Error::from_raw_os_error;
        for unusable in [libc::ENOENT, libc::EACCES, libc::EROFS, libc::ENOTDIR] {
            let err = no_scratch_file(dir, os(libc::EOPNOTSUPP), os(unusable)).unwrap_err();
            assert_eq!((err.op, err.source.raw_os_error()), ("create probe file", Some(unusable)));
        }
        let refused = no_scratch_file(dir, os(libc::EOPNOTSUPP), os(libc::ENOSPC)).unwrap();
        let DirectIo::Refused { reason } = refused else { panic!("{refused:?}") };
        assert!(reason.contains("O_TMPFILE") && reason.contains(&os(libc::ENOSPC).to_string()), "{reason}");
    }

    #[test]
    fn stale_scratch_files_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let stale = ".helio-probe-4242-0123456789abcdef";
        assert!(is_scratch_name(stale) && is_scratch_name(&scratch_name(0)));
        let others = [".helio-probe-", ".helio-probe-4242", ".helio-probe-x-0123456789abcdef", "segment-01"];
        for name in others.iter().chain([&stale]) {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        probe(dir.path()).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let mut expected = others.map(String::from).to_vec();
        expected.sort();
        assert_eq!(left, expected);
    }

    #[test]
    fn scratch_names_differ() {
        let names: std::collections::HashSet<String> = (0..1000).map(|i| scratch_name(i % 2)).collect();
        assert_eq!(names.len(), 1000);
    }
}
