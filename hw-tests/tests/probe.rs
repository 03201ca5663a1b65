//! The start-up probe on the directory under test: the kernel must offer every io_uring operation
//! the log uses, and what it says about direct I/O must hold for a real aligned write.

use std::path::PathBuf;

use helio::dma::DmaBuf;
use helio::probe::{probe, DirectIo};

/// The directory to test, and whether we made it (and so remove it).
fn dir_under_test() -> (PathBuf, bool) {
    match std::env::var_os("HELIO_HW_DIR") {
        Some(dir) => (PathBuf::from(dir), false),
        None => {
            let dir = std::env::temp_dir().join(format!("helio-hw-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            (dir, true)
        }
    }
}

#[test]
fn kernel_and_device_support_the_log() {
    let (dir, made) = dir_under_test();
    let caps = probe(&dir).unwrap_or_else(|e| panic!("probe failed: {e}"));
    println!("{}: {caps}", dir.display());
    assert!(caps.missing_operations.is_empty(), "io_uring lacks {:?}", caps.missing_operations);
    if !made {
        // A device named for testing must take direct I/O; the default directory may not.
        assert!(matches!(caps.direct_io, DirectIo::Supported { .. }), "{}: {caps}", dir.display());
    }
    if let DirectIo::Supported { .. } = caps.direct_io {
        // The reported alignment must be enough for a real O_DIRECT write and read back.
        use std::io::{Read, Seek, SeekFrom, Write};
        use std::os::unix::fs::OpenOptionsExt;
        let align = caps.direct_io.align().unwrap();
        let path = dir.join(format!(".helio-hw-direct-{}", std::process::id()));
        let _remove = RemoveOnDrop(path.clone());
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_DIRECT)
            .open(&path)
            .unwrap();
        let mut block = DmaBuf::new(align, align).unwrap();
        block.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
        file.write_all(&block).unwrap();
        let mut back = DmaBuf::new(align, align).unwrap();
        file.seek(SeekFrom::Start(0)).unwrap();
        file.read_exact(&mut back).unwrap();
        assert_eq!(&back[..], &block[..]);
        println!("exercised: an aligned {align}-byte O_DIRECT write and read-back");
    } else {
        println!("exercised: the probe only (no direct I/O here)");
    }
    if made {
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// Removes a scratch file however the test ends.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
