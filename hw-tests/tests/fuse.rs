//! A store on a FUSE mount (bindfs over a temporary directory). FUSE filesystems refuse
//! `O_TMPFILE`, which the start-up probe must do without: the store must open there, take
//! durable writes, close, reopen and read them back, and leave no probe file behind.
//!
//! Skips, saying why, where FUSE cannot be used: no `/dev/fuse`, no `bindfs`, or bindfs cannot
//! mount (no right to, in a container).

use std::path::{Path, PathBuf};
use std::process::Command;

use helio::probe::probe;
use helio::{Config, Durability, Store};

/// A bindfs mount of `root/backing` on `root/mount`; unmounted, and `root` removed, when dropped.
struct Bindfs {
    root: PathBuf,
}

impl Bindfs {
    /// Mounts it, or says why it cannot be.
    fn mount(root: PathBuf) -> Result<Bindfs, String> {
        if !Path::new("/dev/fuse").exists() {
            return Err("no /dev/fuse".into());
        }
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("backing")).unwrap();
        std::fs::create_dir_all(root.join("mount")).unwrap();
        let output = match Command::new("bindfs").arg(root.join("backing")).arg(root.join("mount")).output() {
            Ok(output) => output,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&root);
                return Err(format!("cannot run bindfs: {e}"));
            }
        };
        if !output.status.success() {
            let _ = std::fs::remove_dir_all(&root);
            return Err(format!(
                "bindfs could not mount ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        let mounted = Bindfs { root };
        assert!(
            mounted.is_fuse(),
            "bindfs succeeded but {} is no FUSE mount",
            mounted.mount_point().display()
        );
        Ok(mounted)
    }

    fn mount_point(&self) -> PathBuf {
        self.root.join("mount")
    }

    /// Whether the mount point is a FUSE mount, from /proc/self/mountinfo (mount point is the
    /// fifth field, the filesystem type the first after the ` - ` separator).
    fn is_fuse(&self) -> bool {
        let point = self.mount_point();
        let point = point.to_str().unwrap();
        std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().any(|line| {
            let mut fields = line.split(' ');
            let at_point = fields.nth(4) == Some(point);
            let fs_type = line.split(" - ").nth(1).and_then(|rest| rest.split(' ').next());
            at_point && fs_type.is_some_and(|t| t.starts_with("fuse"))
        })
    }
}

impl Drop for Bindfs {
    fn drop(&mut self) {
        let point = self.mount_point();
        let unmounted = [("fusermount3", "-u"), ("fusermount", "-u"), ("umount", "-l")]
            .iter()
            .any(|(tool, flag)| Command::new(tool).arg(flag).arg(&point).status().is_ok_and(|s| s.success()));
        if unmounted && !self.is_fuse() {
            let _ = std::fs::remove_dir_all(&self.root);
        } else {
            eprintln!("could not unmount {}", point.display());
        }
    }
}

#[test]
fn a_store_opens_writes_and_reopens_on_fuse() {
    let root = std::env::temp_dir().join(format!("helio-hw-fuse-{}", std::process::id()));
    let fuse = match Bindfs::mount(root) {
        Ok(fuse) => fuse,
        Err(why) => {
            println!("skipped: {why}");
            return;
        }
    };
    let mount = fuse.mount_point();
    // SAFETY: a NUL-terminated path; the descriptor, if any, is closed at once.
    let tmpfile = unsafe {
        let c_mount = std::ffi::CString::new(mount.to_str().unwrap()).unwrap();
        let fd = libc::open(c_mount.as_ptr(), libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC, 0o600);
        if fd >= 0 {
            libc::close(fd);
            "works".to_string()
        } else {
            format!("is refused ({})", std::io::Error::last_os_error())
        }
    };
    println!("{}: O_TMPFILE {tmpfile}", mount.display());
    let caps = probe(&mount).unwrap_or_else(|e| panic!("probe failed: {e}"));
    println!("{}: {caps}", mount.display());

    let dir = mount.join("store");
    let config = || Config::new(&dir).shards(2).durability(Durability::Sync);
    let value = |i: u32| (i * 7).to_le_bytes().repeat(8);
    let store = Store::open(config()).unwrap_or_else(|e| panic!("open on FUSE: {e}"));
    for i in 0..500u32 {
        store.put(&i.to_be_bytes(), &value(i)).unwrap();
    }
    println!("direct I/O on {} of 2 shards", store.stats().total.direct_io_shards);
    store.close().unwrap();
    let store = Store::open(config()).unwrap_or_else(|e| panic!("reopen on FUSE: {e}"));
    for i in 0..500u32 {
        assert_eq!(store.get(&i.to_be_bytes()).unwrap(), Some(value(i)), "key {i}");
    }
    store.close().unwrap();

    let probe_files: Vec<String> = ["shard-0000", "shard-0001"]
        .iter()
        .flat_map(|shard| std::fs::read_dir(dir.join(shard)).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".helio-probe-"))
        .collect();
    assert!(probe_files.is_empty(), "probe files left behind: {probe_files:?}");
    println!("exercised: a store on bindfs, 500 durable puts, reopen and read back");
}
