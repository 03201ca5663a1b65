//! A memory cgroup (cgroup v1's memory controller) for one engine's run: it caps what the
//! process may hold, the page cache its files bring in included, so that an engine reading
//! through the page cache gets no more memory than one reading with O_DIRECT.
//!
//! [`MemoryCgroup::enter`] makes a fresh group under the process's own, sets its limit and
//! moves the whole process (every thread) into it; dropping it moves the process back and
//! removes the group (pages still charged to it go to the parent). Needs root and a mounted v1
//! memory hierarchy.

use std::fs;
use std::path::{Path, PathBuf};

use crate::runner::Result;

/// A memory cgroup the process is in until it is dropped.
pub struct MemoryCgroup {
    path: PathBuf,
    parent: PathBuf,
}

impl MemoryCgroup {
    /// Makes the group `name` under the process's memory cgroup with a limit of `limit` bytes
    /// and moves the process into it.
    pub fn enter(name: &str, limit: u64) -> Result<Self> {
        let parent = own_group()?;
        let path = parent.join(name);
        if path.exists() {
            fs::remove_dir(&path).map_err(|e| format!("remove the stale cgroup {}: {e}", path.display()))?;
        }
        fs::create_dir(&path).map_err(|e| format!("create the cgroup {} (root?): {e}", path.display()))?;
        let group = Self { path, parent };
        group.write("memory.limit_in_bytes", &limit.to_string())?;
        group.write("cgroup.procs", &std::process::id().to_string())?;
        Ok(group)
    }

    /// The most memory the group held at once (`memory.max_usage_in_bytes`), page cache
    /// included.
    pub fn max_usage(&self) -> u64 {
        fs::read_to_string(self.path.join("memory.max_usage_in_bytes"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Times the group hit its limit (`memory.failcnt`): reclaim ran, or allocations waited.
    pub fn limit_hits(&self) -> u64 {
        fs::read_to_string(self.path.join("memory.failcnt"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    fn write(&self, file: &str, value: &str) -> Result<()> {
        let path = self.path.join(file);
        fs::write(&path, value).map_err(|e| format!("write {value} to {}: {e}", path.display()).into())
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        let _ = fs::write(self.parent.join("cgroup.procs"), std::process::id().to_string());
        let _ = fs::remove_dir(&self.path);
    }
}

/// The directory of the process's own memory cgroup: the v1 memory hierarchy's mount point
/// joined with the path `/proc/self/cgroup` gives for it.
fn own_group() -> Result<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mounts")?;
    let mount = mounts
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[2] == "cgroup" && f[3].split(',').any(|o| o == "memory"))
        .map(|f| PathBuf::from(f[1]))
        .ok_or("no cgroup v1 memory hierarchy is mounted (--cgroup-memory needs one)")?;
    let own = fs::read_to_string("/proc/self/cgroup")?;
    let relative = own
        .lines()
        .filter_map(|l| l.splitn(3, ':').nth(2).map(|p| (l, p)))
        .find(|(l, _)| l.split(':').nth(1).is_some_and(|c| c.split(',').any(|c| c == "memory")))
        .map_or("/", |(_, p)| p);
    Ok(mount.join(Path::new(relative.trim_start_matches('/'))))
}
