//! A shard (tree + log + checkpoints) against a `BTreeMap` model across close/reopen cycles,
//! and log cleaning under an overwrite workload.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use helio::log::{Durability, LogConfig};
use helio::shard::{Shard, ShardConfig};
use helio_core::TreeConfig;

mod common;
use common::Rng;

fn config() -> ShardConfig {
    ShardConfig {
        tree: TreeConfig::default().split_items(16).merge_items(4).consolidate_chain(8),
        log: LogConfig { segment_bytes: 1 << 20, buffer_bytes: 64 << 10, ..LogConfig::default() },
        clean_ratio: 0.5,
        page_bytes: 4096,
        memory_quota: None,
    }
}

fn contents(shard: &Shard) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let tree = shard.tree();
    let snapshot = tree.snapshot();
    let guard = tree.pin();
    tree.range::<[u8], _>(&snapshot, .., &guard).map(|(k, v)| (k.to_vec(), v.to_vec())).collect()
}

#[test]
fn random_writes_checkpoints_and_reopens_match_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = BTreeMap::new();
    let mut rng = Rng(0x1234_5678_9ABC_DEF1);
    for round in 0..8 {
        let (shard, recovery) = Shard::open(dir.path(), &config()).unwrap();
        assert_eq!(contents(&shard), model, "round {round} after reopen ({recovery:?})");
        for _ in 0..3000 {
            let key = format!("key-{:04}", rng.next() % 700).into_bytes();
            let durability =
                [Durability::None, Durability::Buffered, Durability::Sync][(rng.next() % 3) as usize];
            match rng.next() % 10 {
                0..=6 => {
                    let value = vec![(rng.next() % 251) as u8; (rng.next() % 600) as usize];
                    shard.put(&key, &value, durability).unwrap();
                    model.insert(key, value);
                }
                7 | 8 => {
                    shard.delete(&key, durability).unwrap();
                    model.remove(&key);
                }
                _ => {
                    if rng.next() % 20 == 0 {
                        shard.checkpoint().unwrap();
                    }
                }
            }
        }
        assert_eq!(contents(&shard), model, "round {round} before close");
        shard.close().unwrap();
    }
}

/// Bytes of every file in `dir` (a file the cleaner deletes meanwhile counts as gone).
fn disk_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).unwrap().filter_map(|e| e.unwrap().metadata().ok()).map(|m| m.len()).sum()
}

#[test]
fn cleaning_keeps_every_key_and_disk_use_under_twice_the_live_data() {
    let dir = tempfile::tempdir().unwrap();
    let (shard, _) = Shard::open(dir.path(), &config()).unwrap();
    let keys = 16_000u64;
    let value = |k: u64, round: u64| vec![(k + round) as u8; 300 + (k as usize * 7 + round as usize) % 400];
    let live: u64 = (0..keys).map(|k| 8 + value(k, 11).len() as u64).sum();
    for round in 0..12 {
        for k in 0..keys {
            shard.put(&k.to_be_bytes(), &value(k, round), Durability::None).unwrap();
        }
    }
    let written = shard.log_stats().log_bytes;
    assert!(written > 8 * live, "an overwrite workload: {written} log bytes for {live} live");
    // Let cleaning catch up (the cleaner runs on its own; this only waits for it).
    let started = Instant::now();
    while disk_bytes(dir.path()) > 2 * live {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "disk {} vs live {live}: {:?} {:?} files {:?}",
            disk_bytes(dir.path()),
            shard.clean_stats(),
            shard.log_stats(),
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = shard.clean_stats();
    assert!(stats.checkpoints >= 3 && stats.segments_deleted > 10, "{stats:?}");
    for k in 0..keys {
        assert_eq!(shard.get(&k.to_be_bytes()).unwrap(), Some(value(k, 11)));
    }
    shard.close().unwrap();
    let (shard, recovery) = Shard::open(dir.path(), &config()).unwrap();
    assert!(recovery.applied.entries > 0, "recovery loaded the checkpoint: {recovery:?}");
    assert_eq!(contents(&shard).len() as u64, keys);
    for k in 0..keys {
        assert_eq!(shard.get(&k.to_be_bytes()).unwrap(), Some(value(k, 11)));
    }
    assert!(disk_bytes(dir.path()) <= 2 * live);
}
