//! The store on the device under test (`HELIO_HW_DIR`, else the temp dir): durable writes reach
//! it through O_DIRECT (required on a device named for testing), survive a reopen, and a
//! full cleaning cleans the log there.

use std::path::PathBuf;

use helio::{Config, Durability, Store};

fn store_dir() -> (PathBuf, bool) {
    let name = format!("helio-hw-store-{}", std::process::id());
    match std::env::var_os("HELIO_HW_DIR") {
        Some(dir) => (PathBuf::from(dir).join(name), true),
        None => (std::env::temp_dir().join(name), false),
    }
}

#[test]
fn durable_writes_reopen_and_clean_on_the_device() {
    let (dir, named) = store_dir();
    let _ = std::fs::remove_dir_all(&dir);
    let config = || Config::new(&dir).shards(2).segment_bytes(8 << 20).durability(Durability::Sync);
    let store = Store::open(config()).unwrap();
    for round in 0..3u32 {
        for i in 0..2000u32 {
            store.put(&i.to_be_bytes(), &(i + round).to_le_bytes().repeat(16)).unwrap();
        }
    }
    let stats = store.stats().total;
    if named {
        assert_eq!(stats.direct_io_shards, 2, "{}: the log fell back to the page cache", dir.display());
    }
    store.checkpoint().unwrap();
    let cleaned = store.stats().total;
    assert!(cleaned.cleanings >= 2 && cleaned.log_bytes < stats.log_bytes / 2, "{cleaned:?}");
    store.close().unwrap();
    let store = Store::open(config()).unwrap();
    for i in 0..2000u32 {
        assert_eq!(store.get(&i.to_be_bytes()).unwrap(), Some((i + 2).to_le_bytes().repeat(16)));
    }
    store.close().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
