//! SIGKILL crash cycles of a multi-shard [`Store`]: one order of writes across shards. In each
//! cycle a real child process writes to a 4-shard store and reports what it knows to be
//! durable; the parent kills it with SIGKILL at a random moment, reopens the store, reads all of
//! it (`scan` or `iter`) and checks that it holds exactly the writes up to some point of one
//! order, that point at or past every acknowledged `Sync` write and `sync()`. All cycles of a
//! test run on one directory, so recovery also runs over logs torn by earlier kills, over the
//! writes earlier recoveries dropped (which must stay dropped) and over cleanings cut short.
//! The store runs under its smallest memory quota, so that as it grows its cleaners swap pages
//! out and the kills land while pages are flushed, swapped, read back and relocated.
//!
//! - `sigkill_store_recovers_a_prefix_of_one_writers_keys`: one thread puts the keys 0, 1, 2,
//!   ... (big-endian `u64`, spread over the shards by hash) with `Buffered` durability, in
//!   bursts of up to 32 with 1 ms pauses (so that the store, and each recovery, stays small),
//!   going on from where the recovered store ends; another makes `Sync` puts to keys of its
//!   own (`s/`) and, one time in four, calls `sync()`, acknowledging each with the count of
//!   consecutive keys written before it started. After each kill the consecutive keys are exactly `0..n`
//!   (no hole), `n` never shrinks, covers every acknowledged count and the count every
//!   surviving `Sync` write carries, every acknowledged `Sync` put is there (or a later one of
//!   its key), and every `Sync` put that returned before a surviving consecutive key was
//!   written is there.
//! - `sigkill_store_never_tears_a_batch`: 3 threads write `WriteBatch`es of 2 to 20 puts and
//!   deletes (a quarter deletes, a key may come twice) over 1000 keys of their own each, spread
//!   over the shards, plus a put of the thread's marker key naming the batch and how many
//!   batches of each thread had returned when it started; alternately `Sync` (acknowledged) and
//!   `Buffered`. The parent knows every batch's operations from its number, so it checks
//!   exactly: the store must equal the state it last saw with, per thread, the child's first
//!   `m` batches applied, `m` read from the marker (from the next child's view of the markers
//!   when two children run in a cycle); no torn batch, no lost or resurrected delete, every
//!   acknowledged batch among the `m`, and for each surviving batch every batch of another
//!   thread that returned before it started.
//!
//! Nine cycles in ten are short: half their kills land while the child starts, opens and
//! recovers the store (1 ms to 1.5 times the time a child takes to open it, as measured along
//! the way), half within 60 ms after that; every tenth cycle lets the child write for 50 to
//! 300 ms after it opened the store. In a quarter of the cycles a second child is killed early
//! on the logs the first one left torn, before the parent recovers them.
//!
//! Environment: `HELIO_CRASH_STORE_CYCLES` (cycles of the two tests together, default 300:
//! half to each; the two take 35 to 40 s together in release mode on an idle 2-core machine);
//! `HELIO_CRASH_SECONDS` (instead: each test runs cycles until that many seconds have passed);
//! `HELIO_CRASH_SEED` (the seed of the random kill times, printed at the start; a run with it
//! draws the same kill times, though the machine's timing cannot be replayed).

use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use helio::{Config, Durability, Store, WriteBatch};

mod common;
use common::cycles::{child_number, mix, print_line, Plan, CHILD_NUMBER_ENV};
use common::{kill_child, Rng};

/// The environment variable that sets the cycles of the two tests together.
const CYCLES_ENV: &str = "HELIO_CRASH_STORE_CYCLES";
/// Cycles of the two tests together when `HELIO_CRASH_STORE_CYCLES` is not set.
const DEFAULT_CYCLES: u64 = 300;
/// Below this many cycles a test does not judge its coverage (the data checks always run).
const JUDGED_CYCLES: u64 = 20;
const SHARDS: usize = 4;

/// Under the smallest memory quota (1 MiB a shard, of which the pages get 256 KiB): the
/// children's cleaners swap pages out as the store grows, so kills land while pages are
/// flushed, swapped out, read back and relocated.
fn config(dir: &Path) -> Config {
    Config::new(dir)
        .shards(SHARDS)
        .durability(Durability::Buffered)
        .segment_bytes(1 << 20)
        .write_buffer_bytes(64 << 10)
        .clean_ratio(0.2)
        .memory_quota(SHARDS as u64 * (1 << 20))
}

/// Word `at` (big-endian `u64`) of a value, if it has one there.
fn word(value: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(value.get(at * 8..at * 8 + 8)?.try_into().ok()?))
}

/// `words` then `len` bytes of filler drawn from `seed`: a value whose damage a reader sees.
fn value_of(words: &[u64], seed: u64, len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
    v.extend((0..len).map(|i| (seed as usize).wrapping_add(i * 7) as u8));
    v
}

/// The kills of a test and what they landed on.
struct Kills {
    /// An estimate of how long a child takes to open the store (to its first acknowledgement).
    first_ack: Duration,
    children: u64,
    early: u64,
    writing: u64,
    long: u64,
    torn: u64,
    in_children: Duration,
}

impl Kills {
    fn new() -> Self {
        Kills {
            first_ack: Duration::from_millis(30),
            children: 0,
            early: 0,
            writing: 0,
            long: 0,
            torn: 0,
            in_children: Duration::ZERO,
        }
    }

    /// Runs cycle `cycle`'s children on `dir` (the test's child runs when `dir_env` is set) and
    /// kills them: one, or in a quarter of the cycles two, the second early on what the first
    /// left. Returns each one's number and its acknowledgements.
    fn cycle(&mut self, plan: &mut Plan, cycle: u64, dir_env: &str, dir: &Path) -> Vec<(u64, Vec<String>)> {
        let long = cycle % 10 == 1;
        let kills = if plan.one_in(4) { 2 } else { 1 };
        let mut out = Vec::new();
        for k in 0..kills {
            self.children += 1;
            let env = [(dir_env, dir.display().to_string()), (CHILD_NUMBER_ENV, self.children.to_string())];
            // Half the short kills while the child starts (up to 1.5 times the time it takes to
            // open the store), half within 60 ms after that time.
            let at = plan.kill_at(long && k == 0, self.first_ack);
            let child_start = Instant::now();
            let killed =
                kill_child(plan.test, &env, at).unwrap_or_else(|e| panic!("{}: {e}", plan.at(cycle)));
            self.in_children += child_start.elapsed();
            if let Some(t) = killed.first_ack {
                self.first_ack = (self.first_ack * 3 + t) / 4;
            }
            if long && k == 0 {
                assert!(
                    killed.acks.len() > 1,
                    "{}: child {} acknowledged nothing in a long cycle",
                    plan.at(cycle),
                    self.children
                );
                self.long += 1;
            } else if killed.first_ack.is_none() {
                self.early += 1;
            } else {
                self.writing += 1;
            }
            self.torn += u64::from(k == 1);
            out.push((self.children, killed.acks));
        }
        out
    }

    fn describe(&self) -> String {
        format!(
            "{} children killed (opening the store took {} ms, lately): {} before they had opened \
             it, {} early while writing, {} after writing for 50-300 ms, {} while starting on torn \
             logs; {:.1} s in children",
            self.children,
            self.first_ack.as_millis(),
            self.early,
            self.writing,
            self.long,
            self.torn,
            self.in_children.as_secs_f64()
        )
    }

    /// Asserts that the kills landed both before and after the children opened the store.
    fn judge(&self, cycles: u64, seed: u64) {
        if cycles < JUDGED_CYCLES {
            return;
        }
        let short = self.early + self.writing;
        assert!(
            self.early * 5 >= short && self.writing * 5 >= short,
            "of {short} short kills {} came before the store was open, {} after (seed {seed:#x})",
            self.early,
            self.writing
        );
    }
}

// ---- One writer's consecutive keys and the Sync writes of another ----

const PREFIX_CHILD_ENV: &str = "HELIO_CRASH_STORE_PREFIX_DIR";
/// The `Sync` thread's keys: its write `j` goes to `s/` + `j % SYNC_SLOTS`.
const SYNC_SLOTS: u64 = 64;
/// Puts the consecutive writer makes back to back (at most) before it sleeps 1 ms: bounds the
/// keys a cycle adds, and so the time each recovery and check takes.
const BURST: u64 = 32;

/// Consecutive key `i`.
fn seq_key(i: u64) -> [u8; 8] {
    i.to_be_bytes()
}

/// The value of consecutive key `i`, written by child `child` after `synced` of its `Sync`
/// thread's writes and calls had returned.
fn seq_value(i: u64, child: u64, synced: u64) -> Vec<u8> {
    value_of(&[i, child, synced], i, (mix(i) % 40) as usize)
}

fn sync_key(slot: u64) -> [u8; 10] {
    let mut key = [0; 10];
    key[..2].copy_from_slice(b"s/");
    key[2..].copy_from_slice(&slot.to_be_bytes());
    key
}

/// The number of write `j` of child `child`'s `Sync` thread: larger for every later write.
fn sync_number(child: u64, j: u64) -> u64 {
    child << 32 | j
}

/// Whether the `Sync` thread's step `j` is a `sync()` call rather than a `Sync` put.
fn is_sync_call(j: u64) -> bool {
    j % 4 == 3
}

/// The value of `Sync` write `w`, made when `before` consecutive keys had been written.
fn sync_value(w: u64, before: u64) -> Vec<u8> {
    value_of(&[w, before], w, 16 + (mix(w) % 100) as usize)
}

/// The child: opens the store, prints `ACK start n` (the consecutive keys it found), then one
/// thread puts keys `n, n+1, ...` (`Buffered`), publishing after each how far it has come, and
/// another makes `Sync` puts and `sync()` calls, printing `ACK sync j p` for its returned put
/// `j` and `ACK synced p` for a returned `sync()`, `p` the keys written before it started.
fn prefix_child(dir: &Path, child: u64) -> ! {
    // On a line of its own: the test harness's own line has no newline yet.
    print_line("\n");
    let store = Store::open(config(dir)).unwrap();
    let start = match store.range(..&[1u8][..]).next_back() {
        Some(entry) => word(&entry.unwrap().0, 0).unwrap() + 1,
        None => 0,
    };
    print_line(&format!("ACK start {start}\n"));
    let written = AtomicU64::new(start);
    let synced = AtomicU64::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut rng = Rng(mix(child) | 1);
            let mut burst = 0;
            for i in start.. {
                let q = synced.load(Ordering::SeqCst);
                store.put_with(&seq_key(i), &seq_value(i, child, q), Durability::Buffered).unwrap();
                written.store(i + 1, Ordering::SeqCst);
                if burst == 0 {
                    burst = 1 + rng.next() % BURST;
                    std::thread::sleep(Duration::from_millis(1));
                }
                burst -= 1;
            }
        });
        s.spawn(|| {
            for j in 0.. {
                let p = written.load(Ordering::SeqCst);
                if is_sync_call(j) {
                    store.sync().unwrap();
                    print_line(&format!("ACK synced {p}\n"));
                } else {
                    let w = sync_number(child, j);
                    store.put_with(&sync_key(j % SYNC_SLOTS), &sync_value(w, p), Durability::Sync).unwrap();
                    print_line(&format!("ACK sync {j} {p}\n"));
                }
                synced.store(j + 1, Ordering::SeqCst);
            }
        });
    });
    unreachable!()
}

/// What the parent reads back: the consecutive keys and the `Sync` thread's keys.
#[derive(Default)]
struct PrefixState {
    /// Keys `0..n` are present (and no other consecutive key).
    n: u64,
    /// Per child, the most `Sync` steps any of its surviving keys was written after, and that
    /// key.
    synced_before: HashMap<u64, (u64, u64)>,
    /// Per slot, the `Sync` write found there and the keys written before it.
    slots: HashMap<u64, (u64, u64)>,
}

/// Reads the whole store with `scan`, checking each entry's form.
fn read_prefix_store(store: &Store, children: u64) -> Result<PrefixState, String> {
    let mut state = PrefixState::default();
    let mut failure = None;
    store
        .scan::<[u8], _>(.., |key, value| {
            let fail = |why: String| ControlFlow::Break(Some(why));
            let step = if key.len() == 8 && key[0] == 0 {
                let i = word(key, 0).unwrap();
                let (c, q) = (word(value, 1).unwrap_or(0), word(value, 2).unwrap_or(0));
                if i != state.n {
                    fail(format!(
                        "key {} missing while key {i} is present (a hole in the consecutive keys)",
                        state.n
                    ))
                } else if value != seq_value(i, c, q) || c == 0 || c > children {
                    fail(format!("key {i} damaged: {value:02x?}"))
                } else {
                    state.n += 1;
                    let entry = state.synced_before.entry(c).or_insert((q, i));
                    if q > entry.0 {
                        *entry = (q, i);
                    }
                    ControlFlow::Continue(())
                }
            } else if key.len() == 10 && key.starts_with(b"s/") {
                let slot = word(&key[2..], 0).unwrap();
                let (w, p) = (word(value, 0).unwrap_or(0), word(value, 1).unwrap_or(0));
                if value != sync_value(w, p) || slot >= SYNC_SLOTS || w % SYNC_SLOTS != slot {
                    fail(format!("key s/{slot} damaged: {value:02x?}"))
                } else {
                    state.slots.insert(slot, (w, p));
                    ControlFlow::Continue(())
                }
            } else {
                fail(format!("a key no child writes: {key:02x?}"))
            };
            match step {
                ControlFlow::Continue(()) => ControlFlow::Continue(()),
                ControlFlow::Break(why) => {
                    failure = why;
                    ControlFlow::Break(())
                }
            }
        })
        .map_err(|e| format!("scan failed: {e}"))?;
    match failure {
        Some(why) => Err(why),
        None => Ok(state),
    }
}

#[test]
fn sigkill_store_recovers_a_prefix_of_one_writers_keys() {
    const TEST: &str = "sigkill_store_recovers_a_prefix_of_one_writers_keys";
    if let Ok(dir) = std::env::var(PREFIX_CHILD_ENV) {
        prefix_child(Path::new(&dir), child_number());
    }
    let mut plan = Plan::new(TEST, CYCLES_ENV, DEFAULT_CYCLES, 50);
    let dir = tempfile::tempdir().unwrap();
    let mut kills = Kills::new();
    // The consecutive keys the store held when the parent last closed it.
    let mut n_prev = 0u64;
    // Per `Sync` slot, the last acknowledged write; the most keys an acknowledgement covers.
    let mut acked_slots: HashMap<u64, u64> = HashMap::new();
    let mut acked_keys = 0u64;
    let (mut acks, mut grew, mut past_acked) = (0u64, 0u64, 0u64);
    let mut in_reopens = Duration::ZERO;
    let mut cycle = 0;
    while plan.more(cycle) {
        cycle += 1;
        let children = kills.cycle(&mut plan, cycle, PREFIX_CHILD_ENV, dir.path());
        let at = plan.at(cycle);
        let mut cycle_acked = 0u64;
        for (k, (child, lines)) in children.iter().enumerate() {
            for line in lines {
                let words: Vec<&str> = line.split(' ').collect();
                let num = |i: usize| -> u64 { words[i].parse().unwrap() };
                match words[0] {
                    "start" => {
                        let s = num(1);
                        // The first child opens what the parent closed; a second one may find
                        // more (what the first wrote).
                        assert!(
                            if k == 0 { s == n_prev } else { s >= n_prev },
                            "{at}: child {child} opened the store with keys 0..{s}, the parent had \
                             closed it with keys 0..{n_prev}"
                        );
                    }
                    "sync" => {
                        let (j, p) = (num(1), num(2));
                        let e = acked_slots.entry(j % SYNC_SLOTS).or_insert(0);
                        *e = (*e).max(sync_number(*child, j));
                        cycle_acked = cycle_acked.max(p);
                        acks += 1;
                    }
                    "synced" => {
                        cycle_acked = cycle_acked.max(num(1));
                        acks += 1;
                    }
                    _ => panic!("{at}: child {child} printed ACK {line}"),
                }
            }
        }
        acked_keys = acked_keys.max(cycle_acked);

        let reopen_start = Instant::now();
        let store = Store::open(config(dir.path())).unwrap_or_else(|e| panic!("{at}: recovery failed: {e}"));
        let state = read_prefix_store(&store, kills.children).unwrap_or_else(|why| panic!("{at}: {why}"));
        store.close().unwrap_or_else(|e| panic!("{at}: close failed: {e}"));
        in_reopens += reopen_start.elapsed();
        let n = state.n;
        let slot_write = |slot: u64| state.slots.get(&slot).map_or(0, |&(w, _)| w);
        assert!(
            n >= n_prev,
            "{at}: key {n} lost: the store held keys 0..{n_prev} when it was closed, 0..{n} now"
        );
        assert!(
            n >= acked_keys,
            "{at}: key {n} lost: a returned Sync write or sync() was made after keys 0..{acked_keys} \
             were written, the store holds 0..{n}"
        );
        for (&slot, &w) in &acked_slots {
            let found = slot_write(slot);
            assert!(
                found >= w,
                "{at}: key s/{slot}: acknowledged Sync write {w:#x} lost, {found:#x} found (0 = none)"
            );
        }
        for (&slot, &(w, p)) in &state.slots {
            assert!(
                n >= p,
                "{at}: key {n} lost: Sync write {w:#x} (key s/{slot}), made after keys 0..{p} were \
                 written, survived; the store holds keys 0..{n}"
            );
        }
        // Every Sync put that returned before a surviving key was written survives (the last
        // one of each slot is enough).
        for (&c, &(q, i)) in &state.synced_before {
            for j in q.saturating_sub(SYNC_SLOTS)..q {
                if is_sync_call(j) {
                    continue;
                }
                let (w, slot) = (sync_number(c, j), j % SYNC_SLOTS);
                let found = slot_write(slot);
                assert!(
                    found >= w,
                    "{at}: key s/{slot}: Sync write {w:#x} lost ({found:#x} found, 0 = none), though key \
                     {i}, written after it returned, survived"
                );
            }
        }
        grew += u64::from(n > n_prev);
        past_acked += u64::from(n > cycle_acked && cycle_acked > 0);
        n_prev = n;
    }
    plan.done(
        cycle,
        &format!(
            "{}; {acks} Sync writes and sync() calls acknowledged; the store grew in {grew} cycles, \
             to {n_prev} consecutive keys; in {past_acked} it kept Buffered writes made after the last \
             acknowledgement; {:.1} s reopening and checking",
            kills.describe(),
            in_reopens.as_secs_f64()
        ),
    );
    kills.judge(cycle, plan.seed);
    if cycle >= JUDGED_CYCLES {
        assert!(grew * 4 > cycle, "the store grew in only {grew} of {cycle} cycles (seed {:#x})", plan.seed);
    }
}

// ---- Batches across shards ----

const BATCH_CHILD_ENV: &str = "HELIO_CRASH_STORE_BATCH_DIR";
const BATCH_THREADS: usize = 3;
/// Keys per thread: each thread's batches write only its own.
const BATCH_KEYS: u64 = 1000;

/// Key `k` of thread `t`.
fn data_key(t: usize, k: u64) -> Vec<u8> {
    let mut key = b"b/".to_vec();
    key.push(t as u8);
    key.extend_from_slice(&(k as u32).to_be_bytes());
    key
}

/// Thread `t`'s marker key: every batch of the thread puts it last.
fn marker_key(t: usize) -> Vec<u8> {
    vec![b'm', b'/', t as u8]
}

/// The number of batch `i` of a thread of child `child`: larger for every later batch.
fn batch_id(child: u64, i: u64) -> u64 {
    child << 32 | i
}

/// Whether batch `i` of thread `t` is written `Sync` (else `Buffered`).
fn is_sync_batch(t: usize, i: u64) -> bool {
    (i + t as u64) % 2 == 0
}

/// The value operation `j` of batch `id` puts.
fn batch_value(id: u64, j: u64) -> Vec<u8> {
    value_of(&[id, j], id ^ j, (mix(id ^ j << 48) % 1200) as usize)
}

/// The data operations of batch `id` of thread `t`: 2 to 20 over the thread's keys, a quarter
/// of them deletes; a key may come twice (the later operation wins).
fn batch_ops(t: usize, id: u64) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let mut rng = Rng(mix(id ^ (t as u64) << 56) | 1);
    let ops = 2 + rng.next() % 19;
    (0..ops)
        .map(|j| {
            let key = data_key(t, rng.next() % BATCH_KEYS);
            let delete = rng.next() % 4 == 0;
            (key, (!delete).then(|| batch_value(id, j)))
        })
        .collect()
}

/// The marker batch `id` puts: its number, then how many batches each thread of its child had
/// returned when it started.
fn marker_value(id: u64, returned: &[u64; BATCH_THREADS]) -> Vec<u8> {
    value_of(&[&[id][..], returned].concat(), 0, 0)
}

/// A marker's batch number and the batches of each thread returned before that batch started.
fn decode_marker(value: &[u8]) -> Option<(u64, [u64; BATCH_THREADS])> {
    if value.len() != 8 * (1 + BATCH_THREADS) {
        return None;
    }
    Some((word(value, 0)?, std::array::from_fn(|u| word(value, 1 + u).unwrap())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

type Markers = [Option<Vec<u8>>; BATCH_THREADS];

/// The markers as an `ACK start` line names them (`-` for none).
fn parse_markers(words: &[&str]) -> Markers {
    std::array::from_fn(|t| (words[t] != "-").then(|| unhex(words[t])))
}

/// The child: opens the store, prints `ACK start` with the markers it found (hex, `-` for
/// none), then each thread writes its batches `0, 1, ...` until killed, printing `ACK sync t i`
/// for each returned `Sync` batch and `ACK buffered t i` for each returned `Buffered` one.
fn batch_child(dir: &Path, child: u64) -> ! {
    // On a line of its own: the test harness's own line has no newline yet.
    print_line("\n");
    let store = Store::open(config(dir)).unwrap();
    let found: Vec<String> = (0..BATCH_THREADS)
        .map(|t| store.get(&marker_key(t)).unwrap().map_or_else(|| "-".to_string(), |v| hex(&v)))
        .collect();
    print_line(&format!("ACK start {}\n", found.join(" ")));
    let returned: [AtomicU64; BATCH_THREADS] = std::array::from_fn(|_| AtomicU64::new(0));
    std::thread::scope(|s| {
        for t in 0..BATCH_THREADS {
            let (store, returned) = (&store, &returned);
            s.spawn(move || {
                let mut batch = WriteBatch::new();
                for i in 0.. {
                    let id = batch_id(child, i);
                    let before: [u64; BATCH_THREADS] =
                        std::array::from_fn(|u| returned[u].load(Ordering::SeqCst));
                    batch.clear();
                    for (key, value) in batch_ops(t, id) {
                        match value {
                            Some(value) => batch.put(&key, &value),
                            None => batch.delete(&key),
                        };
                    }
                    batch.put(&marker_key(t), &marker_value(id, &before));
                    let sync = is_sync_batch(t, i);
                    let durability = if sync { Durability::Sync } else { Durability::Buffered };
                    store.write_with(&batch, durability).unwrap();
                    returned[t].store(i + 1, Ordering::SeqCst);
                    let what = if sync { "sync" } else { "buffered" };
                    print_line(&format!("ACK {what} {t} {i}\n"));
                }
            });
        }
    });
    unreachable!()
}

/// Names a value of the batch test in a failure message.
fn describe_value(value: Option<&Vec<u8>>) -> String {
    match value {
        None => "absent".to_string(),
        Some(v) => match (word(v, 0), word(v, 1)) {
            (Some(id), Some(j)) => {
                format!("the put of batch {} of child {} (operation {j})", id & 0xffff_ffff, id >> 32)
            }
            _ => format!("{v:02x?}"),
        },
    }
}

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// Reads the whole store with `iter`, checks that `scan` reads the same, and splits it into
/// the data keys and the markers.
fn read_batch_store(store: &Store) -> Result<(Model, Markers), String> {
    let mut all = Vec::new();
    for entry in store.iter() {
        let (key, value) = entry.map_err(|e| format!("iter failed: {e}"))?;
        all.push((key.to_vec(), value.to_vec()));
    }
    let mut scanned = Vec::with_capacity(all.len());
    store
        .scan::<[u8], _>(.., |key, value| {
            scanned.push((key.to_vec(), value.to_vec()));
            ControlFlow::Continue(())
        })
        .map_err(|e| format!("scan failed: {e}"))?;
    if scanned != all {
        let at = all.iter().zip(&scanned).position(|(a, b)| a != b).unwrap_or(all.len().min(scanned.len()));
        return Err(format!(
            "iter and scan disagree: {} and {} entries, first difference at entry {at}: {:02x?} / {:02x?}",
            all.len(),
            scanned.len(),
            all.get(at).map(|e| &e.0),
            scanned.get(at).map(|e| &e.0)
        ));
    }
    let mut data = Model::new();
    let mut markers: Markers = Default::default();
    for (key, value) in all {
        match key.as_slice() {
            [b'b', b'/', t, ..] if key.len() == 7 && usize::from(*t) < BATCH_THREADS => {
                data.insert(key, value);
            }
            [b'm', b'/', t] if usize::from(*t) < BATCH_THREADS => {
                if decode_marker(&value).is_none() {
                    return Err(format!("marker of thread {t} damaged: {value:02x?}"));
                }
                markers[usize::from(*t)] = Some(value);
            }
            _ => return Err(format!("a key no child writes: {key:02x?}")),
        }
    }
    Ok((data, markers))
}

#[test]
fn sigkill_store_never_tears_a_batch() {
    const TEST: &str = "sigkill_store_never_tears_a_batch";
    if let Ok(dir) = std::env::var(BATCH_CHILD_ENV) {
        batch_child(Path::new(&dir), child_number());
    }
    let mut plan = Plan::new(TEST, CYCLES_ENV, DEFAULT_CYCLES, 50);
    let dir = tempfile::tempdir().unwrap();
    let mut kills = Kills::new();
    let shard_of = key_shards();
    // The data keys and the markers as the parent last read (and closed) the store.
    let mut model = Model::new();
    let mut markers: Markers = Default::default();
    // Per child, how many batches of each thread survived.
    let mut survived: HashMap<u64, [u64; BATCH_THREADS]> = HashMap::new();
    let (mut batches, mut synced, mut multi_shard, mut some_lost) = (0u64, 0u64, 0u64, 0u64);
    let mut in_reopens = Duration::ZERO;
    let mut swap_outs = 0;
    let mut cycle = 0;
    while plan.more(cycle) {
        cycle += 1;
        let children = kills.cycle(&mut plan, cycle, BATCH_CHILD_ENV, dir.path());
        let at = plan.at(cycle);
        let reopen_start = Instant::now();
        let store = Store::open(config(dir.path())).unwrap_or_else(|e| panic!("{at}: recovery failed: {e}"));
        let (data, found) = read_batch_store(&store).unwrap_or_else(|why| panic!("{at}: {why}"));
        swap_outs += store.stats().total.swap_outs;
        store.close().unwrap_or_else(|e| panic!("{at}: close failed: {e}"));

        // Each child's view of the markers when it opened the store, if it printed it.
        let starts: Vec<Option<Markers>> = children
            .iter()
            .map(|(_, lines)| {
                lines.iter().find_map(|l| l.strip_prefix("start ")).map(|rest| {
                    let words: Vec<&str> = rest.split(' ').collect();
                    assert_eq!(words.len(), BATCH_THREADS, "{at}: ACK start {rest}");
                    parse_markers(&words)
                })
            })
            .collect();
        if let Some(seen) = &starts[0] {
            assert!(
                *seen == markers,
                "{at}: child {} found the markers {seen:02x?} when it opened the store, the parent \
                 had closed it with {markers:02x?}",
                children[0].0
            );
        }
        // Replay: per child and thread, the batches that survived, in order.
        let mut expected = model.clone();
        let mut before = markers.clone();
        for (k, (child, lines)) in children.iter().enumerate() {
            // What this child left: what the next one found, or (if there is none, or it was
            // killed before it said, and so before it wrote) what the parent finds.
            let after = match starts.get(k + 1) {
                Some(Some(next)) => next.clone(),
                _ => found.clone(),
            };
            let mut counts = [0; BATCH_THREADS];
            for t in 0..BATCH_THREADS {
                let marker = after[t].as_deref().map(|v| {
                    decode_marker(v).unwrap_or_else(|| {
                        panic!("{at}: key m/{t}: a child found the marker damaged: {v:02x?}")
                    })
                });
                match marker {
                    Some((id, returned)) if id >> 32 == *child => {
                        let i = id & 0xffff_ffff;
                        assert_eq!(
                            returned[t], i,
                            "{at}: key m/{t}: the marker of thread {t} (batch {i} of child {child}) is \
                             damaged"
                        );
                        counts[t] = i + 1;
                    }
                    _ => assert!(
                        after[t] == before[t],
                        "{at}: key m/{t}: the marker of thread {t} went from {} to {} while child \
                         {child} ran",
                        describe_marker(before[t].as_deref()),
                        describe_marker(after[t].as_deref())
                    ),
                }
                for i in 0..counts[t] {
                    let ops = batch_ops(t, batch_id(*child, i));
                    let mut shards: Vec<usize> = ops.iter().map(|(key, _)| shard_of[key]).collect();
                    shards.push(shard_of[&marker_key(t)]);
                    multi_shard += u64::from(shards.iter().any(|&s| s != shards[0]));
                    for (key, value) in ops {
                        match value {
                            Some(value) => expected.insert(key, value),
                            None => expected.remove(&key),
                        };
                    }
                }
                batches += counts[t];
            }
            survived.insert(*child, counts);
            // The batches each thread returned (acknowledged `Sync` or not): the `Sync` ones
            // survive, `Buffered` ones may be dropped.
            let mut returned = [0; BATCH_THREADS];
            for line in lines {
                let words: Vec<&str> = line.split(' ').collect();
                let sync = match words[0] {
                    "start" => continue,
                    "sync" => true,
                    "buffered" => false,
                    _ => panic!("{at}: child {child} printed ACK {line}"),
                };
                let (t, i): (usize, u64) = (words[1].parse().unwrap(), words[2].parse().unwrap());
                returned[t] = returned[t].max(i + 1);
                if !sync {
                    continue;
                }
                synced += 1;
                assert!(
                    counts[t] > i,
                    "{at}: key m/{t}: acknowledged Sync batch {i} of thread {t} of child {child} lost: \
                     only its batches 0..{} survived",
                    counts[t]
                );
            }
            some_lost += u64::from((0..BATCH_THREADS).any(|t| returned[t] > counts[t]));
            // Every batch of another thread that returned before a surviving batch started
            // survived too (checked for the last survivor of each thread: the one its marker
            // names).
            for (t, marker) in after.iter().enumerate() {
                let Some((id, returned)) = marker.as_deref().and_then(decode_marker) else { continue };
                let Some(kept) = survived.get(&(id >> 32)) else {
                    panic!("{at}: the marker of thread {t} names batch {id:#x} of an unknown child")
                };
                for u in 0..BATCH_THREADS {
                    assert!(
                        kept[u] >= returned[u],
                        "{at}: key m/{u}: batch {} of thread {u} of child {} lost, though batch {} of \
                         thread {t}, which started after it returned, survived (only batches 0..{} of \
                         thread {u} did)",
                        returned[u] - 1,
                        id >> 32,
                        id & 0xffff_ffff,
                        kept[u]
                    );
                }
            }
            before = after;
        }
        // The store holds exactly those batches: nothing torn, no delete lost or undone.
        let mut keys: Vec<&Vec<u8>> = expected.keys().chain(data.keys()).collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            let (want, got) = (expected.get(key), data.get(key));
            if want != got {
                let t = usize::from(key[2]);
                let k = u32::from_be_bytes(key[3..7].try_into().unwrap());
                panic!(
                    "{at}: key {k} of thread {t}: {} found, {} expected: the batches of thread {t} that \
                     survived (by its marker: {}) leave that",
                    describe_value(got),
                    describe_value(want),
                    describe_marker(found[t].as_deref())
                );
            }
        }
        in_reopens += reopen_start.elapsed();
        model = data;
        markers = found;
    }
    plan.done(
        cycle,
        &format!(
            "{}; {batches} batches survived ({multi_shard} of them over several shards), {synced} \
             Sync batches acknowledged; in {some_lost} cycles batches that had returned were dropped; \
             {swap_outs} pages swapped out by the checks; {:.1} s reopening and checking",
            kills.describe(),
            in_reopens.as_secs_f64()
        ),
    );
    kills.judge(cycle, plan.seed);
    if cycle >= JUDGED_CYCLES {
        assert!(
            multi_shard > 0 && synced > 0,
            "no batch over several shards survived (seed {:#x})",
            plan.seed
        );
        assert!(swap_outs > 0, "the store never outgrew its quota (seed {:#x})", plan.seed);
    }
}

/// Names a marker in a failure message.
fn describe_marker(marker: Option<&[u8]>) -> String {
    match marker.map(|v| (v, decode_marker(v))) {
        None => "none".to_string(),
        Some((_, Some((id, _)))) => format!("batch {} of child {} last", id & 0xffff_ffff, id >> 32),
        Some((v, None)) => format!("{v:02x?}"),
    }
}

/// Which of the store's shards owns each key the batch test writes (for the statistics only),
/// as the store itself routes it: a `get` of the key on an empty store of the same
/// configuration counts in its shard's `gets`.
fn key_shards() -> HashMap<Vec<u8>, usize> {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    let gets = |store: &Store| -> Vec<u64> { store.stats().shards.iter().map(|s| s.gets).collect() };
    let mut before = gets(&store);
    let mut owners = HashMap::new();
    for t in 0..BATCH_THREADS {
        for key in (0..BATCH_KEYS).map(|k| data_key(t, k)).chain([marker_key(t)]) {
            store.get(&key).unwrap();
            let after = gets(&store);
            let shard = (0..SHARDS).find(|&i| after[i] > before[i]).expect("a get counted in no shard");
            owners.insert(key, shard);
            before = after;
        }
    }
    store.close().unwrap();
    owners
}
