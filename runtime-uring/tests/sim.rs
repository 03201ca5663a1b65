//! Power loss on a simulated disk, after TigerBeetle's VOPR and RocksDB's FaultInjectionTestFS:
//! many seeded runs of a random workload on a shard whose files are on a [`SimDisk`] (a volatile
//! write cache that keeps, loses or tears at a power loss what was not flushed), with process
//! kills and power losses at random steps, and I/O faults in some runs. After every recovery the
//! shard must hold exactly the writes up to some point of their order at or after the last one
//! that was acknowledged durable (a returned `Sync` write or `sync()`): nothing acknowledged
//! lost, nothing deleted come back, no write without the ones before it. A recovery that fails
//! is a violation too: the disk only ever loses what was not flushed.
//!
//! Every run is decided by its seed (the shard has no cleaner thread on a simulated disk and the
//! log is driven in the test's thread). A failure prints the seed and the command that replays
//! it. `HELIO_SIM_SEEDS=N` runs N seeds (default 2000), `HELIO_SIM_SECONDS=S` runs seeds for S
//! seconds instead (the long mode), `HELIO_SIM_SEED=0x…` replays one.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use helio::disk::sim::{SimDisk, SimFaults};
use helio::disk::DiskRef;
use helio::log::{Durability, LogConfig};
use helio::shard::{check_pages, Shard, ShardConfig};
use helio::{Config, Store, WriteBatch};

const DIR: &str = "/sim/shard";

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

fn config(disk: &SimDisk, seed: u64) -> ShardConfig {
    ShardConfig {
        log: LogConfig {
            segment_bytes: 1 << 20,
            buffer_bytes: 64 << 10,
            buffers: 2 + (seed % 3) as usize,
            disk: DiskRef(Arc::new(disk.clone())),
            ..LogConfig::default()
        },
        clean_ratio: 0.2,
        unflushed_tail: 1 << 20,
        ..ShardConfig::default()
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64: every seed, 0 included, gives a good stream.
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One write as the model sees it: a put or delete, or a batch's operations (in order, a later
/// one on a key winning), which a recovery keeps all or none of.
type Write = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// The writes since the last recovery, and what any recovery must reach.
struct Model {
    /// The store as the last recovery (or the start) left it: durable.
    base: Map,
    /// Every write since, in order: `None` deletes.
    history: Vec<Write>,
    /// How many of `history` are acknowledged durable.
    durable: usize,
}

impl Model {
    /// The point of `history` that `found` is at: the state after the first `p` writes, for
    /// some `p` at or after `durable`.
    fn prefix_of(&self, found: &Map) -> Option<usize> {
        let mut state = self.base.clone();
        for write in &self.history[..self.durable] {
            apply(&mut state, write);
        }
        let mut keys: std::collections::BTreeSet<&Vec<u8>> = state.keys().collect();
        keys.extend(found.keys());
        let mut diff = keys.iter().filter(|k| state.get(**k) != found.get(**k)).count();
        if diff == 0 {
            return Some(self.durable);
        }
        for (i, write) in self.history.iter().enumerate().skip(self.durable) {
            for (key, value) in write {
                let before = state.get(key) != found.get(key);
                set(&mut state, key, value.as_deref());
                let after = state.get(key) != found.get(key);
                diff = diff + usize::from(after) - usize::from(before);
            }
            if diff == 0 {
                return Some(i + 1);
            }
        }
        None
    }

    /// The state after every write (what a clean close must keep).
    fn latest(&self) -> Map {
        let mut state = self.base.clone();
        for write in &self.history {
            apply(&mut state, write);
        }
        state
    }

    /// Why `found` is not a prefix, for the failure message.
    fn explain(&self, found: &Map) -> String {
        let mut must = self.base.clone();
        for write in &self.history[..self.durable] {
            apply(&mut must, write);
        }
        let missing = must.iter().filter(|(k, v)| found.get(*k) != Some(v)).count();
        let extra = found.keys().filter(|k| !must.contains_key(*k)).count();
        format!(
            "recovered {} keys; of the {} the last durable point holds, {missing} missing or different; \
             {extra} others; {} writes after that point",
            found.len(),
            must.len(),
            self.history.len() - self.durable
        )
    }
}

fn apply(map: &mut Map, write: &Write) {
    for (key, value) in write {
        set(map, key, value.as_deref());
    }
}

fn set(map: &mut Map, key: &[u8], value: Option<&[u8]>) {
    match value {
        Some(value) => map.insert(key.to_vec(), value.to_vec()),
        None => map.remove(key),
    };
}

/// Value number `n`: its length varies (some are larger than half a write buffer, so they are
/// written as fragments), its bytes name it.
fn value(n: u64, size: u64, rng: &mut Rng) -> Vec<u8> {
    let len = match rng.below(40) {
        0 => 33 << 10 | rng.below(20_000) as usize,
        1..=4 => 2000 + rng.below(6000) as usize,
        _ => 1 + rng.below(300 << (3 * size)) as usize,
    };
    let mut v: Vec<u8> = (0..len).map(|i| (n as usize).wrapping_mul(31).wrapping_add(i) as u8).collect();
    v[..len.min(8)].copy_from_slice(&n.to_be_bytes()[..len.min(8)]);
    v
}

fn contents(shard: &Shard) -> Map {
    let tree = shard.tree();
    let guard = tree.pin();
    let snapshot = tree.snapshot();
    tree.range::<[u8], _>(&snapshot, .., &guard).map(|(k, v)| (k.to_vec(), v.to_vec())).collect()
}

/// What a run found wrong.
#[derive(Debug)]
struct Violation {
    step: usize,
    what: String,
}

/// The store of a seeded run: 1 to 4 shards on the simulated disk.
fn store_config(disk: &SimDisk, seed: u64) -> Config {
    let shard = config(disk, seed);
    let config = Config::new(DIR)
        .disk(shard.log.disk.clone())
        .shards(store_shards(seed))
        .segment_bytes(shard.log.segment_bytes)
        .write_buffer_bytes(shard.log.buffer_bytes)
        .write_buffers(shard.log.buffers)
        .clean_ratio(shard.clean_ratio)
        .pin_threads(false);
    // A third of the runs under the smallest memory quota (1 MiB a shard, of which the pages
    // get 256-384 KiB): their cleanings swap pages out, so power goes while pages are
    // flushed, swapped out, read back and relocated.
    match seed % 3 {
        1 => config.memory_quota(store_shards(seed) as u64 * (1 << 20)),
        _ => config,
    }
}

/// Shards of a seed's store: 1 to 4.
fn store_shards(seed: u64) -> usize {
    1 + (seed / 3 % 4) as usize
}

/// One seeded run: a random workload of puts, deletes and batches on a store of 1 to 4 shards,
/// with kills and power losses; checks every recovery.
fn run(seed: u64, steps: usize, faults: SimFaults) -> Result<RunStats, Violation> {
    let mut rng = Rng(seed);
    let disk = SimDisk::new(seed);
    let config = store_config(&disk, seed);
    let shards = store_shards(seed);
    let keys = 16 + rng.below(300);
    let inject = faults != SimFaults::default() || rng.below(4) == 0;
    let faults = if faults == SimFaults::default() && inject {
        SimFaults { eio_per_million: 2000, enospc_per_million: 1000, short_per_million: 1000, ..faults }
    } else {
        faults
    };
    // Each run has its own mix: some sync often, some rarely (long stretches of unflushed
    // writes across segments, which is where a lost flush shows).
    let sync_calls = [20, 6, 1][rng.below(3) as usize];
    let sync_writes = [30, 5, 0][rng.below(3) as usize];
    let batches = [0, 10, 40][rng.below(3) as usize];
    let size = rng.below(3);
    let mut model = Model { base: Map::new(), history: Vec::new(), durable: 0 };
    let mut stats = RunStats::default();
    let violation = |step, what: String| Violation { step, what };
    let mut store = Some(Store::open(config.clone()).map_err(|e| violation(0, format!("create: {e}")))?);
    disk.set_faults(faults);
    let mut broken = false;
    for step in 0..steps {
        // A store that failed crashes next.
        let roll = if broken { rng.below(15) } else { rng.below(1000) };
        let live = store.as_ref().unwrap();
        if roll < 15 || roll < 20 && !broken {
            // The store's life may end here: keep what it swapped.
            stats.swap_outs += live.stats().total.swap_outs;
        }
        match roll {
            // A crash: the process is killed, or the power goes.
            0..=14 => {
                let power = roll < 8 || broken && rng.below(2) == 0;
                crash(&disk, &mut store, power);
                stats.crashes += 1;
                stats.power_losses += u64::from(power);
                store = Some(reopen(&disk, &config, shards, faults, &mut model, Must::BePrefix, step)?);
                broken = false;
            }
            // A clean close and reopen: everything is there.
            15..=19 if !broken => {
                let closing = store.take().unwrap();
                // A close that fails (an injected fault) leaves the process as after a kill.
                let must = match closing.close() {
                    Ok(()) => Must::HoldEverything,
                    Err(_) => Must::BePrefix,
                };
                disk.kill();
                store = Some(reopen(&disk, &config, shards, faults, &mut model, must, step)?);
                stats.closes += u64::from(must == Must::HoldEverything);
            }
            20..=39 if !broken && roll < 20 + sync_calls => {
                if live.sync().is_ok() {
                    model.durable = model.history.len();
                } else {
                    broken = true;
                }
            }
            40..=44 if !broken => broken |= live.clean_now().is_err(),
            45 if !broken => broken |= live.checkpoint().is_err(),
            _ if !broken => {
                let durability = match rng.below(100) {
                    d if d < sync_writes => Durability::Sync,
                    d if d < 60 => Durability::None,
                    _ => Durability::Buffered,
                };
                let n = model.history.len() as u64 + 1;
                let ops = if rng.below(100) < batches { 1 + rng.below(12) } else { 1 };
                let write: Write = (0..ops)
                    .map(|i| {
                        let key = format!("key-{:04}", rng.below(keys)).into_bytes();
                        let value = (rng.below(5) != 0).then(|| value(seed ^ n ^ (i << 48), size, &mut rng));
                        (key, value)
                    })
                    .collect();
                let result = match &write[..] {
                    [(key, Some(v))] if ops == 1 => live.put_with(key, v, durability),
                    [(key, None)] if ops == 1 => live.delete_with(key, durability),
                    _ => {
                        let mut batch = WriteBatch::new();
                        for (key, value) in &write {
                            match value {
                                Some(v) => batch.put(key, v),
                                None => batch.delete(key),
                            };
                        }
                        stats.batches += 1;
                        live.write_with(&batch, durability)
                    }
                };
                // A failed write may or may not be in the log: it stays in the history, and the
                // run crashes soon.
                model.history.push(write);
                match result {
                    Ok(()) if durability == Durability::Sync => model.durable = model.history.len(),
                    Ok(()) => {}
                    Err(_) => broken = true,
                }
                stats.writes += 1;
            }
            _ => {}
        }
    }
    stats.swap_outs += store.as_ref().map_or(0, |s| s.stats().total.swap_outs);
    drop(store);
    Ok(stats)
}

/// What a reopened shard must hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Must {
    /// A prefix of the writes at or after the durable point (after a crash).
    BePrefix,
    /// Every write (after a clean close).
    HoldEverything,
}

/// Reopens the store with no faults injected (but a broken sync stays broken), checks what it
/// holds, and makes that the model's new durable base; faults resume.
fn reopen(
    disk: &SimDisk,
    config: &Config,
    shards: usize,
    faults: SimFaults,
    model: &mut Model,
    must: Must,
    step: usize,
) -> Result<Store, Violation> {
    let violation = |what: String| Violation { step, what };
    disk.set_faults(SimFaults { sync_is_noop: faults.sync_is_noop, ..SimFaults::default() });
    // What the crash left: every chain the page tables name is whole.
    let log = LogConfig { disk: DiskRef(Arc::new(disk.clone())), ..LogConfig::default() };
    let dirs: Vec<_> = (0..shards).map(|i| Store::shard_dir(Path::new(DIR), i)).collect();
    let checked =
        check_pages(Path::new(DIR), &dirs, &log).map_err(|e| violation(format!("planning: {e}")))?;
    for (shard, checked) in checked.into_iter().enumerate() {
        checked.map_err(|e| violation(format!("shard {shard}'s page chains: {e}")))?;
    }
    let reopened = Store::open(config.clone()).map_err(|e| violation(format!("recovery failed: {e}")))?;
    let found: Map = reopened
        .iter()
        .map(|entry| entry.map(|(k, v)| (k.to_vec(), v.to_vec())))
        .collect::<Result<_, _>>()
        .map_err(|e| violation(format!("reading the recovered store failed: {e}")))?;
    match must {
        Must::BePrefix if model.prefix_of(&found).is_none() => {
            return Err(violation(format!(
                "not a prefix at or after the durable point: {}",
                model.explain(&found)
            )));
        }
        Must::HoldEverything if found != model.latest() => {
            return Err(violation(format!("a clean close lost writes: {}", model.explain(&found))));
        }
        _ => {}
    }
    *model = Model { base: found, history: Vec::new(), durable: 0 };
    disk.set_faults(faults);
    Ok(reopened)
}

fn open(dir: &Path, config: &ShardConfig) -> Result<Shard, helio::shard::ShardError> {
    Shard::open(dir, config).map(|(shard, _)| shard)
}

/// Kills the process (the disk's cache stays) or cuts the power (the cache is resolved), then
/// drops the store, whose every further I/O fails.
fn crash(disk: &SimDisk, store: &mut Option<Store>, power: bool) {
    if power {
        disk.power_loss();
    } else {
        disk.kill();
    }
    drop(store.take());
}

#[derive(Clone, Copy, Debug, Default)]
struct RunStats {
    writes: u64,
    batches: u64,
    crashes: u64,
    power_losses: u64,
    closes: u64,
    /// Pages swapped out (runs under a memory quota), summed over the store's lives.
    swap_outs: u64,
}

fn seeds() -> Box<dyn Iterator<Item = u64>> {
    if let Ok(seed) = std::env::var("HELIO_SIM_SEED") {
        let seed = seed.trim_start_matches("0x");
        return Box::new(std::iter::once(u64::from_str_radix(seed, 16).expect("HELIO_SIM_SEED in hex")));
    }
    if let Some(seconds) = std::env::var("HELIO_SIM_SECONDS").ok().and_then(|s| s.parse().ok()) {
        let until = Instant::now() + Duration::from_secs(seconds);
        let start = Rng(Instant::now().elapsed().as_nanos() as u64 ^ std::process::id() as u64).next();
        return Box::new(
            (0..).map(move |i| start.wrapping_add(i)).take_while(move |_| Instant::now() < until),
        );
    }
    let count = std::env::var("HELIO_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(2000);
    Box::new((0..count).map(|i| 0x5EED_0000 + i))
}

const STEPS: usize = 1000;

#[test]
fn sim_power_loss_never_loses_an_acknowledged_write_and_recovers_a_prefix() {
    let mut total = RunStats::default();
    let mut runs = 0;
    for seed in seeds() {
        match run(seed, STEPS, SimFaults::default()) {
            Ok(stats) => {
                total.writes += stats.writes;
                total.batches += stats.batches;
                total.crashes += stats.crashes;
                total.power_losses += stats.power_losses;
                total.closes += stats.closes;
                total.swap_outs += stats.swap_outs;
                runs += 1;
            }
            Err(v) => panic!(
                "sim seed {seed:#x} failed at step {}: {}\nreplay: HELIO_SIM_SEED={seed:#x} cargo test --release -p helio --test sim -- sim_power_loss",
                v.step, v.what
            ),
        }
    }
    eprintln!("sim: {runs} runs, {total:?}");
    assert!(runs == 1 || total.power_losses > runs as u64, "too few power losses: {total:?}");
    assert!(runs < 10 || total.batches > runs as u64, "too few batches: {total:?}");
    assert!(runs < 10 || total.swap_outs > runs as u64, "too few pages swapped out: {total:?}");
}

/// The simulation can fail: on a disk whose fdatasync does nothing, some seed must lose an
/// acknowledged write (or fail to recover).
#[test]
fn sim_a_disk_whose_fdatasync_does_nothing_is_caught() {
    let faults = SimFaults { sync_is_noop: true, ..SimFaults::default() };
    let caught = (0..100u64).filter_map(|i| run(0xBAD_5EED + i, STEPS, faults).err()).count();
    assert!(caught > 10, "only {caught} of 100 runs noticed a disk that never syncs");
}

/// A reopened log fdatasyncs what it replayed before it takes writes: the last process wrote a
/// whole segment of `Buffered` writes and their commits and died before any flush (its bytes
/// still in the device's volatile cache); after the reopen a `Sync` write goes to the next
/// segment, and only that segment is flushed for it. Then the power goes. The `Sync` write
/// vouches for everything before it, so the recovery must find all of it.
#[test]
fn sim_a_reopened_log_makes_what_it_replayed_durable() {
    for seed in 0..8u64 {
        let disk = SimDisk::new(seed);
        let mut config = config(&disk, 0);
        // No interval flush comes due: the buffered commits reach the cache, not the disk.
        config.log.flush_interval = Duration::from_secs(60);
        let dir = Path::new(DIR);
        let shard = open(dir, &config).unwrap();
        // A first durable write, so the log has a durable start.
        shard.put(b"first", b"1", Durability::Sync).unwrap();
        let mut n = 0u64;
        // More than a segment (1 MiB) and every buffer (2 × 64 KiB) after it, with no flush:
        // the first segment is written out (to free buffers) but never synced.
        while shard.log_stats().records < 1400 {
            n += 1;
            shard.put(&n.to_be_bytes(), &[n as u8; 1000], Durability::Buffered).unwrap();
        }
        disk.kill();
        drop(shard);
        let reopened = open(dir, &config).unwrap();
        let replayed = contents(&reopened);
        assert!(replayed.len() > 1000, "seed {seed}: only {} keys replayed", replayed.len());
        reopened.put(b"last", b"2", Durability::Sync).unwrap();
        disk.power_loss();
        drop(reopened);
        let recovered = open(dir, &config)
            .unwrap_or_else(|e| panic!("seed {seed}: recovery after the power loss failed: {e}"));
        let mut want = replayed.clone();
        want.insert(b"last".to_vec(), b"2".to_vec());
        let found = contents(&recovered);
        let lost = want.iter().filter(|(k, v)| found.get(*k) != Some(v)).count();
        assert_eq!(lost, 0, "seed {seed}: {lost} of {} acknowledged keys lost", want.len());
    }
}

/// A clean close followed by an open reads no more of the log than its live part (plus the
/// rest of the read window it ends in) and reports no torn tail, even when the log ends in a
/// recycled segment whose old frames follow the tail. Those frames carry other addresses, so
/// they once read as a tear, and recovery scanned past them for a vouching frame to the end of
/// the segment (a whole 4 GiB one by default).
#[test]
fn sim_a_clean_close_then_open_reads_only_the_live_log_in_a_recycled_segment() {
    const SEGMENT: u64 = 8 << 20;
    let disk = SimDisk::new(0xC1EA);
    let mut config = config(&disk, 0);
    config.log.segment_bytes = SEGMENT;
    let dir = Path::new(DIR);
    let spares = || disk.files().iter().filter(|(p, _)| p.to_string_lossy().contains("spare-")).count();
    let shard = open(dir, &config).unwrap();
    let mut rng = Rng(7);
    let (mut most_spares, mut n) = (0, 0u64);
    // Overwrite a few MiB of keys, cleaning as the background cleaner would, until a spare
    // has been taken for a new segment: the log then ends near the start of a recycled one.
    loop {
        n += 1;
        let key = (rng.below(2000)).to_be_bytes();
        shard.put(&key, &value(n, 1, &mut rng), Durability::None).unwrap();
        if n % 500 == 0 {
            shard.sync().unwrap();
            shard.clean_now().unwrap();
            let now = spares();
            if now < most_spares {
                break;
            }
            most_spares = most_spares.max(now);
            assert!(n < 2_000_000, "no spare segment was ever recycled");
        }
    }
    let want = contents(&shard);
    let log = shard.log_stats();
    let head = shard.clean_stats().head;
    shard.close().unwrap();
    let before = disk.stats().read_bytes;
    let (reopened, recovery) = Shard::open(dir, &config).unwrap();
    let read = disk.stats().read_bytes - before;
    assert_eq!(contents(&reopened), want);
    assert_eq!(recovery.log.replayed.torn_at, None, "a clean close is not a torn tail");
    let live = log.durable_lsn - head;
    let window = 4 << 20;
    // Twice: the first pass reads every log for its commits, the replay reads it again.
    assert!(read <= 2 * (live + window + 16384), "read {read} bytes to reopen a log of {live} live bytes");
}

/// Overwrites random keys of `keys` for `rounds` rounds of 500 puts, each round synced and
/// cleaned as the background cleaner would; `model` follows.
fn overwrite_rounds(shard: &Shard, model: &mut Map, rng: &mut Rng, keys: Range<u64>, rounds: usize) {
    for _ in 0..rounds {
        for _ in 0..500 {
            let n = rng.next();
            let key = (keys.start + rng.below(keys.end - keys.start)).to_be_bytes();
            let value = value(n, 0, rng);
            shard.put(&key, &value, Durability::None).unwrap();
            model.insert(key.to_vec(), value);
        }
        shard.sync().unwrap();
        shard.clean_now().unwrap();
    }
}

/// Cuts the power under `shard`, checks the page chains the disk holds, reopens it and checks
/// that it holds exactly `model` (every write was synced).
fn power_loss_then_reopen(
    disk: &SimDisk,
    shard: Shard,
    config: &ShardConfig,
    model: &Map,
    phase: &str,
) -> Shard {
    let dir = Path::new(DIR);
    assert_eq!(&contents(&shard), model, "{phase}: the shard itself differs from the model");
    disk.power_loss();
    drop(shard);
    let log = LogConfig { disk: DiskRef(Arc::new(disk.clone())), ..LogConfig::default() };
    for checked in check_pages(dir, &[dir.to_path_buf()], &log).unwrap() {
        checked.unwrap_or_else(|e| panic!("{phase}: page chains: {e}"));
    }
    let reopened = open(dir, config).unwrap_or_else(|e| panic!("{phase}: recovery failed: {e}"));
    let found = contents(&reopened);
    let lost = model.iter().filter(|(k, v)| found.get(*k) != Some(v)).count();
    assert_eq!(lost, 0, "{phase}: {lost} of {} synced keys lost or stale after a power loss", model.len());
    assert_eq!(&found, model, "{phase}: keys came back that were never written");
    reopened
}

/// A page that stays busy (one frozen by a merge, or written to all the while, cannot be
/// captured) loses no write to cleaning or to a power loss:
/// - written to while busy, it leaves every flush round incomplete: the rounds keep the log's
///   place, so the op records of its writes stay live and recovery replays them;
/// - not written to, the rounds complete without it, and once the head reaches its last
///   record, the relocation that would move it finds it busy: the table still names the
///   record, so the head stops before it;
/// - free again, the rounds complete and the head moves on.
///
/// The leftmost page (low key empty, keys from 0) is held busy; keys from 2000 are elsewhere.
#[test]
fn sim_a_page_kept_busy_loses_no_write_to_cleaning_or_power_loss() {
    let disk = SimDisk::new(0xB05);
    let config = config(&disk, 0);
    let (mut model, mut rng) = (Map::new(), Rng(11));
    let shard = open(Path::new(DIR), &config).unwrap();
    overwrite_rounds(&shard, &mut model, &mut rng, 0..4000, 20);

    let before = shard.clean_stats();
    shard.hold_busy(Some(b""));
    overwrite_rounds(&shard, &mut model, &mut rng, 0..4000, 20);
    let held = shard.clean_stats();
    assert!(held.rounds_incomplete > before.rounds_incomplete, "no round found the page busy");
    assert_eq!(held.flush_rounds, before.flush_rounds, "a round completed without the busy page");
    let shard = power_loss_then_reopen(&disk, shard, &config, &model, "written while busy");

    overwrite_rounds(&shard, &mut model, &mut rng, 0..4000, 2);
    let before = shard.clean_stats();
    shard.hold_busy(Some(b""));
    overwrite_rounds(&shard, &mut model, &mut rng, 2000..4000, 40);
    let held = shard.clean_stats();
    assert!(held.flush_rounds > before.flush_rounds, "no round completed without the busy page");
    assert!(held.stretches_held > before.stretches_held, "the head never reached the busy page's record");
    let shard = power_loss_then_reopen(&disk, shard, &config, &model, "relocated while busy");

    shard.hold_busy(Some(b""));
    overwrite_rounds(&shard, &mut model, &mut rng, 2000..4000, 40);
    let at_release = shard.clean_stats();
    shard.hold_busy(None);
    overwrite_rounds(&shard, &mut model, &mut rng, 0..4000, 10);
    let freed = shard.clean_stats();
    assert!(freed.flush_rounds > at_release.flush_rounds, "no round completed once the page was free");
    assert_eq!(freed.rounds_incomplete, at_release.rounds_incomplete, "a round found a free page busy");
    assert!(freed.head > at_release.head, "the head did not move once the page was free");
    power_loss_then_reopen(&disk, shard, &config, &model, "free again");
}
