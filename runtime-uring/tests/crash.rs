//! A real child process writes to a shard with `Sync` durability from several threads, over-
//! writing its keys so that the cleaner relocates entries and deletes segments all the time, and
//! reports every acknowledged write; the parent kills it with SIGKILL at a random moment,
//! reopens the shard, and checks that every acknowledged write is there (or a later write of
//! the same key). Many cycles on one directory, so recovery also runs over tails torn by
//! earlier kills and over cleanings cut short. A second test kills a child that does nothing but
//! clean a synced log over and over.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use helio::log::{Durability, LogConfig};
use helio::shard::{Shard, ShardConfig};

mod common;
use common::{kill_child_after, Rng};

const CHILD_ENV: &str = "HELIO_CRASH_CHILD_DIR";
const THREADS: u64 = 4;
/// Keys per thread and cycle: each is overwritten many times.
const KEYS: u64 = 300;

fn config() -> ShardConfig {
    ShardConfig {
        log: LogConfig { segment_bytes: 1 << 20, buffer_bytes: 64 << 10, ..LogConfig::default() },
        clean_ratio: 0.2,
        batch_bytes: 4096,
        ..ShardConfig::default()
    }
}

fn key(cycle: u64, thread: u64, n: u64) -> [u8; 16] {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&(cycle << 32 | thread).to_be_bytes());
    key[8..].copy_from_slice(&(n % KEYS).to_be_bytes());
    key
}

/// The value of write `n`: starts with `n`, so a reader knows which write it is.
fn value(n: u64) -> Vec<u8> {
    let len = 8 + (n as usize * 7919) % 900;
    let mut v: Vec<u8> = (0..len).map(|i| (n as usize + i) as u8).collect();
    v[..8].copy_from_slice(&n.to_be_bytes());
    v
}

/// The child: writes until killed, printing `ACK thread n` after each acknowledged write. On odd
/// cycles a thread also cleans the whole log over and over, so that kills land inside cleanings
/// (between a batch's append and the head's move, during segment deletion and hole punching).
fn child(dir: &Path, cycle: u64) -> ! {
    let (shard, _) = Shard::open(dir, &config()).unwrap();
    std::thread::scope(|s| {
        if cycle % 2 == 1 {
            s.spawn(|| loop {
                shard.checkpoint().unwrap();
            });
        }
        for t in 0..THREADS {
            let shard = &shard;
            s.spawn(move || {
                for n in 0.. {
                    shard.put(&key(cycle, t, n), &value(n), Durability::Sync).unwrap();
                    println!("ACK {t} {n}");
                }
            });
        }
    });
    unreachable!()
}

#[test]
fn sigkill_never_loses_an_acknowledged_sync_write() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        let cycle = std::env::var("HELIO_CRASH_CYCLE").unwrap().parse().unwrap();
        child(Path::new(&dir), cycle);
    }
    let dir = tempfile::tempdir().unwrap();
    // Per key: the last acknowledged write number.
    let mut acked: HashMap<[u8; 16], u64> = HashMap::new();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut relocated = 0;
    for cycle in 1..=25u64 {
        let env = [(CHILD_ENV, dir.path().display().to_string()), ("HELIO_CRASH_CYCLE", cycle.to_string())];
        let run = Duration::from_millis(50 + rng.next() % 250);
        let this_cycle: Vec<(u64, u64)> =
            kill_child_after("sigkill_never_loses_an_acknowledged_sync_write", &env, run)
                .iter()
                .map(|ack| {
                    let mut words = ack.split(' ').map(|w| w.parse::<u64>().unwrap());
                    (words.next().unwrap(), words.next().unwrap())
                })
                .collect();
        assert!(!this_cycle.is_empty(), "cycle {cycle}: the child acknowledged nothing");
        for (t, n) in this_cycle {
            acked.insert(key(cycle, t, n), n);
        }

        let (shard, recovery) = Shard::open(dir.path(), &config())
            .unwrap_or_else(|e| panic!("cycle {cycle}: recovery failed: {e}"));
        relocated += u64::from(recovery.applied.relocated > 0);
        for (key, &n) in &acked {
            let got = shard
                .get(key)
                .unwrap()
                .unwrap_or_else(|| panic!("cycle {cycle}: acknowledged write {n} lost"));
            let found = u64::from_be_bytes(got[..8].try_into().unwrap());
            assert!(found >= n, "cycle {cycle}: write {n} acknowledged, {found} found");
            assert_eq!(got, value(found), "cycle {cycle}: write {found} damaged");
        }
        shard.close().unwrap();
    }
    assert!(acked.len() as u64 > 3 * THREADS * KEYS, "only {} keys acknowledged", acked.len());
    assert!(relocated > 5, "recovery replayed relocated entries in only {relocated} cycles");
}

const CLEAN_CHILD_ENV: &str = "HELIO_CRASH_CLEAN_CHILD_DIR";

/// Keys the cleaning child writes per cycle.
const CLEAN_KEYS: u64 = 2000;

fn clean_key(cycle: u64, n: u64) -> [u8; 16] {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&cycle.to_be_bytes());
    key[8..].copy_from_slice(&n.to_be_bytes());
    key
}

/// The cleaning child: writes this cycle's keys with no durability of their own, makes them
/// durable with `sync`, acknowledges them, then cleans the whole log over and over until killed.
/// Nothing else flushes the log then: every entry a cleaning moves is durable only because the
/// cleaner waits for it before moving the head past the original.
fn cleaning_child(dir: &Path, cycle: u64) -> ! {
    let (shard, _) = Shard::open(dir, &config()).unwrap();
    for n in 0..CLEAN_KEYS {
        shard.put(&clean_key(cycle, n), &value(cycle * CLEAN_KEYS + n), Durability::None).unwrap();
    }
    shard.sync().unwrap();
    // On a line of its own: the test harness's own line has no newline yet.
    println!("\nACK {cycle}");
    loop {
        shard.checkpoint().unwrap();
    }
}

#[test]
fn sigkill_during_cleaning_never_loses_a_synced_write() {
    if let Ok(dir) = std::env::var(CLEAN_CHILD_ENV) {
        let cycle = std::env::var("HELIO_CRASH_CYCLE").unwrap().parse().unwrap();
        cleaning_child(Path::new(&dir), cycle);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut relocated = 0;
    for cycle in 1..=12u64 {
        let env =
            [(CLEAN_CHILD_ENV, dir.path().display().to_string()), ("HELIO_CRASH_CYCLE", cycle.to_string())];
        let run = Duration::from_millis(5 + rng.next() % 100);
        let acked = kill_child_after("sigkill_during_cleaning_never_loses_a_synced_write", &env, run);
        assert_eq!(acked, [cycle.to_string()], "cycle {cycle}: the child did not sync its writes");
        let (shard, recovery) = Shard::open(dir.path(), &config())
            .unwrap_or_else(|e| panic!("cycle {cycle}: recovery failed: {e}"));
        relocated += u64::from(recovery.applied.relocated > 0);
        for c in 1..=cycle {
            for n in 0..CLEAN_KEYS {
                let got = shard.get(&clean_key(c, n)).unwrap();
                assert_eq!(got, Some(value(c * CLEAN_KEYS + n)), "cycle {cycle}: key {n} of cycle {c}");
            }
        }
        shard.close().unwrap();
    }
    assert!(relocated > 6, "recovery replayed relocated entries in only {relocated} cycles");
}
