//! SIGKILL crash cycles. In each cycle a real child process works on a shard and reports every
//! write it knows to be durable; the parent kills it with SIGKILL at a random moment, reopens the
//! shard, and checks that every acknowledged write is there (or a later write of the same key).
//! All cycles of a test run on one directory, so recovery also runs over tails torn by earlier
//! kills and over cleanings cut short.
//!
//! - `sigkill_never_loses_an_acknowledged_sync_write`: 4 threads write with `Sync` durability,
//!   overwriting their keys so that the cleaner relocates entries and deletes segments all the
//!   time; every other child also cleans the whole log over and over.
//! - `sigkill_never_loses_writes_before_an_acknowledged_sync`: the same with `None` or
//!   `Buffered` writes, each thread calling `sync()` now and then and acknowledging every write
//!   it made before.
//! - `sigkill_during_cleaning_never_loses_a_synced_write`: a child writes keys, syncs, and then
//!   does nothing but clean the log over and over.
//!
//! In the two writer tests nine cycles in ten are short: half their kills land while the child
//! starts, opens and recovers the shard (1 ms to 1.5 times the time a child takes to its first
//! acknowledgement, as measured along the way: about 10 ms on an idle 2-core machine), half
//! within 60 ms after that; every tenth cycle lets the child write for 50 to 300 ms after its
//! first acknowledgement. In a quarter of the cycles a second child is killed early on the log
//! the first one left torn, before the parent recovers it. The cleaning test kills its child 1 to
//! 60 ms after the child's acknowledgement, 60 to 400 ms in every tenth cycle.
//!
//! Environment: `HELIO_CRASH_CYCLES` (cycles of the three tests together, default 500: half to
//! the `Sync` writers, 30% to the `sync()` writers, 20% to the cleaning test);
//! `HELIO_CRASH_SECONDS` (instead: each test runs cycles until that many seconds have passed);
//! `HELIO_CRASH_SEED` (the seed of the random kill times, printed at the start; a run with it
//! draws the same kill times, though the machine's timing cannot be replayed).

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use helio::core::log::page::PageTable;
use helio::log::{Durability, Log, LogConfig};
use helio::shard::{Shard, ShardConfig, ShardRecovery};

mod common;
use common::cycles::{child_number, mix, print_line, Plan, CHILD_NUMBER_ENV};
use common::{kill_child, KillAt, Rng};

/// The environment variable that sets the cycles of the three tests together.
const CYCLES_ENV: &str = "HELIO_CRASH_CYCLES";
/// Cycles of the three tests together when `HELIO_CRASH_CYCLES` is not set.
const DEFAULT_CYCLES: u64 = 500;
/// Below this many cycles a test does not judge its coverage (the data checks always run).
const JUDGED_CYCLES: u64 = 20;

fn config() -> ShardConfig {
    ShardConfig {
        log: LogConfig { segment_bytes: 1 << 20, buffer_bytes: 64 << 10, ..LogConfig::default() },
        clean_ratio: 0.2,
        unflushed_tail: 1 << 20,
        ..ShardConfig::default()
    }
}

/// Opens the shard in `dir` after a crash (`at` says which, for messages) and checks that the
/// open read the log only from where its page table file (or the head) says recovery starts,
/// in each of its three passes (the plan's, the page records' fold, the replay), however much
/// lies before that place.
fn open_reading_the_tail(dir: &Path, at: &str) -> (Shard, ShardRecovery) {
    let start = std::fs::read(dir.join("PAGES"))
        .map_or(0, |bytes| PageTable::decode(&bytes).expect("a whole table file").0.position)
        .max(Log::superblock_of(dir).unwrap().head);
    let (shard, recovery) =
        Shard::open(dir, &config()).unwrap_or_else(|e| panic!("{at}: recovery failed: {e}"));
    let read = shard.stats().device_bytes_read;
    let tail = shard.log_stats().durable_lsn.saturating_sub(start);
    assert!(
        read <= 3 * tail + (1 << 20),
        "{at}: the open read {read} bytes for a tail of {tail} from {start}"
    );
    (shard, recovery)
}

const THREADS: u64 = 4;
/// Keys per writer thread: each is overwritten many times.
const KEYS: u64 = 300;

fn key(thread: u64, k: u64) -> [u8; 16] {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&thread.to_be_bytes());
    key[8..].copy_from_slice(&k.to_be_bytes());
    key
}

/// Which key write `i` of `thread` in child `child` goes to: each child starts at another key,
/// so that children killed early still spread their writes over all keys.
fn key_index(child: u64, thread: u64, i: u64) -> u64 {
    (i + child * 97 + thread * 31) % KEYS
}

/// The number of write `i` of a thread of child `child`: larger for every later write of a key.
fn write_number(child: u64, i: u64) -> u64 {
    child << 32 | i
}

/// The value of write number `n`: starts with `n`, so a reader knows which write it is.
fn value(n: u64) -> Vec<u8> {
    let len = 8 + (n.wrapping_mul(7919) % 900) as usize;
    let mut v: Vec<u8> = (0..len).map(|i| (n as usize).wrapping_add(i) as u8).collect();
    v[..8].copy_from_slice(&n.to_be_bytes());
    v
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Writes {
    /// Every write `Sync`, acknowledged when it returns.
    Sync,
    /// Writes `None` (even children) or `Buffered` (odd ones); now and then a thread calls
    /// `sync()` and acknowledges every write it made before.
    Synced,
}

const WRITER_CHILD_ENV: &str = "HELIO_CRASH_CHILD_DIR";

/// A writer child: writes until killed, printing `ACK thread i` once write `i` of `thread` and
/// every earlier one of that thread are durable (a `Sync` write's return says so for the earlier
/// ones too: the log is made durable over a contiguous prefix). In the `Sync` test odd children,
/// in the other every third one, also clean the whole log over and over, so that kills land
/// inside cleanings (between a batch's append and the head's move, during segment deletion and
/// hole punching).
fn writer_child(dir: &Path, child: u64, writes: Writes) -> ! {
    // On a line of its own: the test harness's own line has no newline yet.
    print_line("\n");
    let (shard, _) = Shard::open(dir, &config()).unwrap();
    let cleans = match writes {
        Writes::Sync => child % 2 == 1,
        Writes::Synced => child % 3 == 0,
    };
    std::thread::scope(|s| {
        if cleans {
            s.spawn(|| loop {
                shard.checkpoint().unwrap();
            });
        }
        for t in 0..THREADS {
            let shard = &shard;
            s.spawn(move || {
                let mut rng = Rng(mix(child << 8 | t) | 1);
                let durability = match writes {
                    Writes::Sync => Durability::Sync,
                    Writes::Synced if child % 2 == 0 => Durability::None,
                    Writes::Synced => Durability::Buffered,
                };
                for i in 0.. {
                    let key = key(t, key_index(child, t, i));
                    shard.put(&key, &value(write_number(child, i)), durability).unwrap();
                    if writes == Writes::Synced {
                        // A sync every 32 writes on average.
                        if rng.next() % 32 != 0 {
                            continue;
                        }
                        shard.sync().unwrap();
                    }
                    print_line(&format!("ACK {t} {i}\n"));
                }
            });
        }
    });
    unreachable!()
}

/// Per key, the number of the last write known durable.
type Acked = HashMap<[u8; 16], u64>;

/// Records that child `child`'s thread `t` made writes `0..=last` durable: per key, the last of
/// them to that key. Returns how many keys that is.
fn acknowledge(acked: &mut Acked, child: u64, t: u64, last: u64) -> u64 {
    let mut keys = 0;
    for k in 0..KEYS {
        // The first write of this child's thread `t` to key `k`, then every `KEYS`th one.
        let first = (k + KEYS - key_index(child, t, 0)) % KEYS;
        if first > last {
            continue;
        }
        let i = first + (last - first) / KEYS * KEYS;
        let n = write_number(child, i);
        let entry = acked.entry(key(t, k)).or_insert(n);
        *entry = (*entry).max(n);
        keys += 1;
    }
    keys
}

/// The writer tests: cycles of killing writer children and checking every acknowledged write.
fn writer_cycles(test: &'static str, share: u64) {
    let mut plan = Plan::new(test, CYCLES_ENV, DEFAULT_CYCLES, share);
    let dir = tempfile::tempdir().unwrap();
    let mut acked = Acked::new();
    // An estimate of how long a child takes to its first acknowledgement.
    let mut first_ack = Duration::from_millis(30);
    let (mut children, mut relocated, mut long_keys, mut long_cycles) = (0u64, 0u64, 0u64, 0u64);
    let (mut early_kills, mut writing_kills, mut torn_reopens) = (0u64, 0u64, 0u64);
    let (mut in_children, mut in_reopens) = (Duration::ZERO, Duration::ZERO);
    let mut cycle = 0;
    while plan.more(cycle) {
        cycle += 1;
        let long = cycle % 10 == 1;
        let kills = if plan.one_in(4) { 2 } else { 1 };
        for k in 0..kills {
            children += 1;
            let env = [
                (WRITER_CHILD_ENV, dir.path().display().to_string()),
                (CHILD_NUMBER_ENV, children.to_string()),
            ];
            // Half the short kills while the child starts (up to 1.5 times the time it takes to
            // its first acknowledgement), half within 60 ms after that time.
            let at = plan.kill_at(long && k == 0, first_ack);
            let child_start = Instant::now();
            let killed = kill_child(test, &env, at).unwrap_or_else(|e| panic!("{}: {e}", plan.at(cycle)));
            in_children += child_start.elapsed();
            if let Some(t) = killed.first_ack {
                first_ack = (first_ack * 3 + t) / 4;
            }
            let mut last = [None; THREADS as usize];
            for ack in &killed.acks {
                let mut words = ack.split(' ').map(|w| w.parse::<u64>().unwrap());
                let (t, i) = (words.next().unwrap(), words.next().unwrap());
                last[t as usize] = last[t as usize].max(Some(i));
            }
            let mut keys = 0;
            for (t, last) in last.iter().enumerate() {
                if let Some(last) = *last {
                    keys += acknowledge(&mut acked, children, t as u64, last);
                }
            }
            if long && k == 0 {
                assert!(keys > 0, "{}: the child acknowledged nothing", plan.at(cycle));
                long_keys += keys;
                long_cycles += 1;
            } else if killed.first_ack.is_none() {
                early_kills += 1;
            } else {
                writing_kills += 1;
            }
            torn_reopens += u64::from(k == 1);
        }

        let reopen_start = Instant::now();
        let (shard, recovery) = open_reading_the_tail(dir.path(), &plan.at(cycle));
        relocated += u64::from(recovery.pages > 0);
        for (key, &n) in &acked {
            let at = || {
                let (t, k) = (&key[..8], &key[8..]);
                let (t, k) =
                    (u64::from_be_bytes(t.try_into().unwrap()), u64::from_be_bytes(k.try_into().unwrap()));
                format!("{}: key {k} of thread {t}", plan.at(cycle))
            };
            let got =
                shard.get(key).unwrap().unwrap_or_else(|| panic!("{}: acknowledged write {n:#x} lost", at()));
            let found = u64::from_be_bytes(got[..8].try_into().unwrap());
            assert!(found >= n, "{}: write {n:#x} acknowledged, {found:#x} found", at());
            assert_eq!(got, value(found), "{}: write {found:#x} damaged", at());
        }
        shard.close().unwrap_or_else(|e| panic!("{}: close failed: {e}", plan.at(cycle)));
        in_reopens += reopen_start.elapsed();
    }
    plan.done(
        cycle,
        &format!(
            "{children} children killed (the first acknowledgement came after {} ms, lately): \
             {early_kills} before their first acknowledgement, {writing_kills} early while \
             writing, {long_cycles} after writing for 50-300 ms ({long_keys} keys acknowledged), \
             {torn_reopens} while starting on a torn log; {relocated} recoveries started \
             from page records; {} keys acknowledged; {:.1} s in children, {:.1} s reopening and \
             checking",
            first_ack.as_millis(),
            acked.len(),
            in_children.as_secs_f64(),
            in_reopens.as_secs_f64()
        ),
    );
    if cycle < JUDGED_CYCLES {
        return;
    }
    let seed = plan.seed;
    // Once a flush round has written pages, recoveries start from page records until every key
    // is gone; cycle 1 cleans (its child is odd), and every clean close and cleaning writes a
    // round.
    assert!(
        relocated * 2 > cycle,
        "recovery started from page records in only {relocated} of {cycle} cycles (seed {seed:#x})"
    );
    // As many acknowledged keys per long cycle as the 3 × THREADS × KEYS in 25 cycles before.
    assert!(
        long_keys * 25 > 3 * THREADS * KEYS * long_cycles,
        "only {long_keys} keys acknowledged in {long_cycles} long cycles (seed {seed:#x})"
    );
    // The short kills land both before and after the first acknowledgement (half are aimed at
    // each side).
    let short = early_kills + writing_kills;
    assert!(
        early_kills * 5 >= short && writing_kills * 5 >= short,
        "of {short} short kills {early_kills} came before the first acknowledgement, {writing_kills} after \
         (seed {seed:#x})"
    );
}

#[test]
fn sigkill_never_loses_an_acknowledged_sync_write() {
    const TEST: &str = "sigkill_never_loses_an_acknowledged_sync_write";
    if let Ok(dir) = std::env::var(WRITER_CHILD_ENV) {
        writer_child(Path::new(&dir), child_number(), Writes::Sync);
    }
    writer_cycles(TEST, 50);
}

#[test]
fn sigkill_never_loses_writes_before_an_acknowledged_sync() {
    const TEST: &str = "sigkill_never_loses_writes_before_an_acknowledged_sync";
    if let Ok(dir) = std::env::var(WRITER_CHILD_ENV) {
        writer_child(Path::new(&dir), child_number(), Writes::Synced);
    }
    writer_cycles(TEST, 30);
}

const CLEAN_CHILD_ENV: &str = "HELIO_CRASH_CLEAN_CHILD_DIR";

/// Keys the cleaning child writes per cycle.
const CLEAN_KEYS: u64 = 2000;
/// Cycle `c` writes the keys of slot `c % CLEAN_SLOTS`, replacing those of cycle `c - CLEAN_SLOTS`
/// (so that the live data stays the same size however many cycles run).
const CLEAN_SLOTS: u64 = 2;

fn clean_key(slot: u64, n: u64) -> [u8; 16] {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&slot.to_be_bytes());
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
        shard
            .put(&clean_key(cycle % CLEAN_SLOTS, n), &value(cycle * CLEAN_KEYS + n), Durability::None)
            .unwrap();
    }
    shard.sync().unwrap();
    // On a line of its own: the test harness's own line has no newline yet.
    print_line(&format!("\nACK {cycle}\n"));
    loop {
        shard.checkpoint().unwrap();
    }
}

#[test]
fn sigkill_during_cleaning_never_loses_a_synced_write() {
    const TEST: &str = "sigkill_during_cleaning_never_loses_a_synced_write";
    if let Ok(dir) = std::env::var(CLEAN_CHILD_ENV) {
        cleaning_child(Path::new(&dir), child_number());
    }
    let mut plan = Plan::new(TEST, CYCLES_ENV, DEFAULT_CYCLES, 20);
    let dir = tempfile::tempdir().unwrap();
    // Per slot, the cycle that last wrote it.
    let mut written = [None; CLEAN_SLOTS as usize];
    let (mut relocated, mut head_moved, mut head) = (0u64, 0u64, 0u64);
    let (mut in_children, mut in_reopens) = (Duration::ZERO, Duration::ZERO);
    let mut cycle = 0;
    while plan.more(cycle) {
        cycle += 1;
        let env =
            [(CLEAN_CHILD_ENV, dir.path().display().to_string()), (CHILD_NUMBER_ENV, cycle.to_string())];
        let run = if cycle % 10 == 1 { plan.ms(60, 400) } else { plan.ms(1, 60) };
        let child_start = Instant::now();
        let killed = kill_child(TEST, &env, KillAt::AfterFirstAck(run))
            .unwrap_or_else(|e| panic!("{}: {e}", plan.at(cycle)));
        in_children += child_start.elapsed();
        assert_eq!(killed.acks, [cycle.to_string()], "{}: the child did not sync its writes", plan.at(cycle));
        written[(cycle % CLEAN_SLOTS) as usize] = Some(cycle);
        let reopen_start = Instant::now();
        let (shard, recovery) = open_reading_the_tail(dir.path(), &plan.at(cycle));
        relocated += u64::from(recovery.pages > 0);
        let opened_at = shard.clean_stats().head;
        head_moved += u64::from(opened_at > head);
        for (slot, c) in written.iter().enumerate() {
            let Some(c) = *c else { continue };
            for n in 0..CLEAN_KEYS {
                let got = shard.get(&clean_key(slot as u64, n)).unwrap();
                assert!(
                    got == Some(value(c * CLEAN_KEYS + n)),
                    "{}: key {n} of cycle {c}: {}",
                    plan.at(cycle),
                    match got {
                        None => "lost".to_string(),
                        Some(v) => format!("write {} found", u64::from_be_bytes(v[..8].try_into().unwrap())),
                    }
                );
            }
        }
        head = shard.clean_stats().head;
        shard.close().unwrap_or_else(|e| panic!("{}: close failed: {e}", plan.at(cycle)));
        in_reopens += reopen_start.elapsed();
    }
    plan.done(
        cycle,
        &format!(
            "{relocated} recoveries started from page records, the head had moved in {head_moved}; \
             {:.1} s in children, {:.1} s reopening and checking",
            in_children.as_secs_f64(),
            in_reopens.as_secs_f64()
        ),
    );
    if cycle < JUDGED_CYCLES {
        return;
    }
    let seed = plan.seed;
    // As many, in proportion, as the 7 of 12 required before (every cycle's child cleans).
    assert!(
        relocated * 2 > cycle,
        "recovery started from page records in only {relocated} of {cycle} cycles (seed {seed:#x})"
    );
    // A kill 1 ms after the acknowledgement may come before the first cleaning moves the head;
    // most come after one.
    assert!(
        head_moved * 2 > cycle,
        "a cleaning moved the head in only {head_moved} of {cycle} cycles (seed {seed:#x})"
    );
}
