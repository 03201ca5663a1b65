//! The unflushed tail under writers faster than the flush rounds: they are slowed past four times
//! `unflushed_tail`. Its own binary: its four writers would take the cores from the timing of
//! the other shard tests.

use std::sync::atomic::{AtomicBool, Ordering};
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
        clean_ratio: 100.0,
        unflushed_tail: 1 << 20,
        memory_quota: None,
    }
}

/// Writers faster than the flush rounds (four threads of random puts over a key space whose
/// rounds write many pages) are slowed once the unflushed tail passes four times `unflushed_tail`,
/// so that the tail an open after a crash reads stays near that bound while they write.
#[test]
fn writers_faster_than_the_rounds_wait_for_them_past_four_times_the_unflushed_tail() {
    const TAIL: u64 = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    let config = config();
    assert_eq!(config.unflushed_tail, TAIL);
    let (shard, _) = Shard::open(dir.path(), &config).unwrap();
    let writing = AtomicBool::new(true);
    let longest = std::thread::scope(|s| {
        let writers: Vec<_> = (0..4u64)
            .map(|t| {
                let shard = &shard;
                s.spawn(move || {
                    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (t + 1));
                    let started = Instant::now();
                    for _ in 0..300_000 {
                        if started.elapsed() > Duration::from_secs(4) {
                            break;
                        }
                        let key = (rng.next() % 2_000_000) as u32;
                        shard.put(&key.to_be_bytes(), &[t as u8; 100], Durability::None).unwrap();
                    }
                })
            })
            .collect();
        let sampler = s.spawn(|| {
            let mut longest = 0;
            while writing.load(Ordering::Relaxed) {
                longest = longest.max(shard.stats().unflushed_bytes);
                std::thread::sleep(Duration::from_millis(1));
            }
            longest
        });
        writers.into_iter().for_each(|w| w.join().unwrap());
        writing.store(false, Ordering::Relaxed);
        sampler.join().unwrap()
    });
    let waits = shard.clean_stats().writer_waits;
    assert!(waits > 0, "the writers never outran the rounds: the test does not test the bound");
    // The tail also holds the page records of the round under way, and past the bound each
    // writer still adds a record per 2 ms wait: measured here, about 7 MiB with the bound and
    // the whole log (about 175 MiB, no round completing) without it.
    assert!(longest <= 16 * TAIL, "the tail reached {longest} bytes ({waits} waits)");
}
