//! The log's figures against the device, each measured in the same run as its peer:
//!
//! - **append**: bytes of log per second with 1 MiB buffers (records from `--writers` threads, 1 by default,
//!   `Durability::None`, one `sync` at the end) against a plain sequential O_DIRECT io_uring
//!   writer of 1 MiB blocks (the fio-like limit; queue depth 1 and 4, the better one counts).
//!   Both write into files zero-filled before the clock starts.
//! - **sync**: `Durability::Sync` writes per second (100-byte values) with 1, 8 and 64 writer
//!   threads against one writer doing 4 KiB `pwrite` + `fdatasync` in a loop.
//! - **replay**: log bytes per second read back by `Log::read` after dropping the page cache.
//! - **recover**: reopening a shard, the log replayed into its tree (ops only, then after a
//!   full cleaning, which leaves relocated batches).
//!
//! Rounds alternate between helio and its peer; medians are reported.
//! Usage: `logbench [DIR] [--gib N] [--rounds N] [--seconds S]` (DIR defaults to a temporary
//! directory under the current one).

// mimalloc, as in Helio's binaries: see the crate docs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use helio::dma::DmaBuf;
use helio::log::{Durability, Log, LogConfig};
use helio::segments::Segments;
use helio::shard::{Shard, ShardConfig};
use helio_core::log::frame::Op;
use io_uring::{opcode, types, IoUring};

const MIB: u64 = 1 << 20;

struct Args {
    dir: PathBuf,
    gib: u64,
    rounds: usize,
    seconds: f64,
    only: Option<String>,
    buffers: usize,
    writers: u64,
}

fn args() -> Args {
    let mut args =
        Args { dir: PathBuf::from("."), gib: 2, rounds: 3, seconds: 3.0, only: None, buffers: 4, writers: 1 };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut num = || it.next().expect("a value").parse::<f64>().expect("a number");
        match a.as_str() {
            "--gib" => args.gib = num() as u64,
            "--rounds" => args.rounds = num() as usize,
            "--seconds" => args.seconds = num(),
            "--buffers" => args.buffers = num() as usize,
            "--writers" => args.writers = num() as u64,
            "--only" => args.only = it.next(),
            dir => args.dir = PathBuf::from(dir),
        }
    }
    args
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// A new, empty log in `dir` whose first `count` segments are zero-filled whole, as the
/// writer leaves them once it has passed, before timing starts (the plain writer's file is
/// zero-filled too).
fn prepared_log(dir: &Path, config: &LogConfig, count: u64) -> Log {
    Log::open(dir, config, |_, _| {}).unwrap().0.close().unwrap();
    let segments = Segments::new(dir, config.segment_bytes);
    for i in 0..count {
        segments.create(i, config.segment_bytes).unwrap();
    }
    Log::open(dir, config, |_, _| {}).unwrap().0
}

/// The fio-like limit: sequential 1 MiB O_DIRECT writes through io_uring at queue depth `qd`.
fn plain_writer(dir: &Path, bytes: u64, qd: usize) -> f64 {
    let path = dir.join("plain");
    let file = OpenOptions::new().write(true).create(true).truncate(true).open(&path).unwrap();
    zero_fill(&file, bytes);
    drop(file);
    let file = OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(&path).unwrap();
    let mut ring = IoUring::new(64).unwrap();
    let mut bufs: Vec<DmaBuf> = (0..qd).map(|_| DmaBuf::new(MIB as usize, 4096).unwrap()).collect();
    for b in &mut bufs {
        b.fill(0xA5);
    }
    let started = Instant::now();
    let (mut next, mut done, mut in_flight) = (0u64, 0u64, 0usize);
    let blocks = bytes / MIB;
    while done < blocks {
        while in_flight < qd && next < blocks {
            let buf = &bufs[(next % qd as u64) as usize];
            let entry = opcode::Write::new(types::Fd(file.as_raw_fd()), buf.as_ptr(), MIB as u32)
                .offset(next * MIB)
                .build()
                .user_data(next);
            // SAFETY: the buffer outlives the write (we wait for every completion below).
            unsafe { ring.submission().push(&entry).unwrap() };
            next += 1;
            in_flight += 1;
        }
        ring.submit_and_wait(1).unwrap();
        for c in ring.completion() {
            assert_eq!(c.result(), MIB as i32, "plain write failed");
            done += 1;
            in_flight -= 1;
        }
    }
    file.sync_data().unwrap();
    let rate = bytes as f64 / started.elapsed().as_secs_f64();
    std::fs::remove_file(path).unwrap();
    rate
}

fn zero_fill(file: &File, bytes: u64) {
    let zeros = vec![0u8; 8 << 20];
    let mut at = 0;
    while at < bytes {
        let n = zeros.len().min((bytes - at) as usize);
        file.write_all_at(&zeros[..n], at).unwrap();
        at += n as u64;
    }
    file.sync_all().unwrap();
}

fn fresh(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path).unwrap();
    path
}

/// Log bytes per second appended by `writers` threads (4 KiB records, no durability), one
/// `sync` at the end included.
fn helio_append(dir: &Path, bytes: u64, buffers: usize, writers: u64) -> f64 {
    let dir = fresh(dir, "append");
    let segment = 1 << 30;
    let config = LogConfig { segment_bytes: segment, buffers, ..LogConfig::default() };
    let log = prepared_log(&dir, &config, bytes.div_ceil(segment) + 1);
    let value = vec![0x5Au8; 4096 - 64];
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..writers {
            let (log, value) = (&log, &value);
            s.spawn(move || {
                let mut n = 0u64;
                while log.stats().log_bytes < bytes {
                    for _ in 0..64 {
                        let key = (t << 48 | n).to_be_bytes();
                        log.append_op(&Op { sn: 0, key: &key, value: Some(value) }, Durability::None)
                            .unwrap();
                        n += 1;
                    }
                }
            });
        }
    });
    log.sync().unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    let rate = log.stats().log_bytes as f64 / elapsed;
    log.close().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
    rate
}

/// One writer: 4 KiB pwrite + fdatasync, the device's single-writer durable-write rate.
fn fdatasync_rate(dir: &Path, seconds: f64) -> f64 {
    let path = dir.join("fdatasync");
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
    zero_fill(&file, 256 * MIB);
    let block = vec![0x33u8; 4096];
    let started = Instant::now();
    let mut ops = 0u64;
    while started.elapsed().as_secs_f64() < seconds {
        file.write_all_at(&block, (ops % 65536) * 4096).unwrap();
        file.sync_data().unwrap();
        ops += 1;
    }
    let rate = ops as f64 / started.elapsed().as_secs_f64();
    std::fs::remove_file(path).unwrap();
    rate
}

/// `Sync` writes per second from `threads` writers with 100-byte values.
fn helio_sync(dir: &Path, threads: u64, seconds: f64, buffers: usize) -> (f64, f64) {
    let dir = fresh(dir, "sync");
    let segment = 256 * MIB;
    let config = LogConfig { segment_bytes: segment, buffers, ..LogConfig::default() };
    let log = prepared_log(&dir, &config, 2);
    let stop = AtomicBool::new(false);
    let ops = AtomicU64::new(0);
    let value = [0x42u8; 100];
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (log, stop, ops, value) = (&log, &stop, &ops, &value);
            s.spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = (t << 48 | n).to_be_bytes();
                    log.append_op(&Op { sn: 0, key: &key, value: Some(value) }, Durability::Sync).unwrap();
                    n += 1;
                }
                ops.fetch_add(n, Ordering::Relaxed);
            });
        }
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
    });
    let rate = ops.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    let stats = log.stats();
    let per_flush = stats.records as f64 / stats.flushes.max(1) as f64;
    log.close().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
    (rate, per_flush)
}

fn drop_caches() -> bool {
    // SAFETY: plain syscall.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

/// Log bytes per second replayed by `Log::read` (cold cache when the process may drop it).
fn helio_replay(dir: &Path, bytes: u64) -> (f64, f64, bool) {
    let dir = fresh(dir, "replay");
    let segment = 1 << 30;
    let config = LogConfig { segment_bytes: segment, ..LogConfig::default() };
    let (log, _) = Log::open(&dir, &config, |_, _| {}).unwrap();
    let value = [7u8; 100];
    let mut n = 0u64;
    while log.stats().log_bytes < bytes {
        let key = n.to_be_bytes();
        log.append_op(&Op { sn: n, key: &key, value: Some(&value) }, Durability::None).unwrap();
        n += 1;
    }
    log.close().unwrap();
    let cold = drop_caches();
    let started = Instant::now();
    let mut records = 0u64;
    let replayed = Log::read(&dir, &config, |_, _| records += 1).unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(records, n);
    std::fs::remove_dir_all(dir).unwrap();
    (replayed.bytes as f64 / elapsed, records as f64 / elapsed, cold)
}

fn main() {
    let args = args();
    let root = tempfile::Builder::new().prefix("helio-logbench").tempdir_in(&args.dir).unwrap();
    let wants = |part: &str| args.only.as_deref().is_none_or(|only| only == part);
    if wants("append") {
        append(&args, root.path());
    }
    if wants("sync") {
        sync(&args, root.path());
    }
    if wants("replay") {
        replay(&args, root.path());
    }
    if wants("recover") {
        recover(&args, root.path());
    }
}

/// Reopening a shard: the log replayed into the tree (pages and index rebuilt), after dropping
/// the page cache; once from ops only, once after a full cleaning (relocated batches).
fn recover(args: &Args, dir: &Path) {
    let dir = fresh(dir, "recover");
    let config = ShardConfig {
        log: LogConfig { segment_bytes: 1 << 30, ..LogConfig::default() },
        clean_ratio: 100.0,
        ..ShardConfig::default()
    };
    let (shard, _) = Shard::open(&dir, &config).unwrap();
    let value = [7u8; 100];
    let mut n = 0u64;
    while shard.log_stats().log_bytes < args.gib << 30 {
        let key = (n.wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_be_bytes();
        shard.put(&key, &value, Durability::None).unwrap();
        n += 1;
    }
    shard.close().unwrap();
    for label in ["ops", "relocated"] {
        let cold = drop_caches();
        let (shard, recovery) = Shard::open(&dir, &config).unwrap();
        let secs = recovery.log.elapsed.as_secs_f64();
        let bytes = recovery.log.replayed.bytes as f64;
        let items = recovery.applied.ops + recovery.applied.relocated;
        println!(
            "recover  from {label:<10}: {:.2} GB/s of log, {:.2} M entries/s ({items} entries, {:.2} s{})",
            gb(bytes / secs),
            items as f64 / secs / 1e6,
            secs,
            if cold { ", page cache dropped" } else { "" }
        );
        if label == "ops" {
            shard.checkpoint().unwrap();
        }
        shard.close().unwrap();
    }
    std::fs::remove_dir_all(dir).unwrap();
}

fn gb(bytes_per_second: f64) -> f64 {
    bytes_per_second / 1e9
}

fn append(args: &Args, dir: &Path) {
    let bytes = args.gib << 30;
    let (mut plain, mut helio) = (Vec::new(), Vec::new());
    for _ in 0..args.rounds {
        let qd1 = plain_writer(dir, bytes, 1);
        let qd4 = plain_writer(dir, bytes, 4);
        plain.push(qd1.max(qd4));
        helio.push(helio_append(dir, bytes, args.buffers, args.writers));
    }
    let (p, h) = (median(plain), median(helio));
    println!(
        "append   helio {:.2} GB/s   plain O_DIRECT io_uring {:.2} GB/s   ratio {:.2}",
        gb(h),
        gb(p),
        h / p
    );
}

fn sync(args: &Args, dir: &Path) {
    let mut base = Vec::new();
    let mut rows: Vec<(u64, Vec<f64>, Vec<f64>)> =
        [1, 8, 64].iter().map(|&t| (t, Vec::new(), Vec::new())).collect();
    for _ in 0..args.rounds {
        base.push(fdatasync_rate(dir, args.seconds));
        for (threads, rates, batch) in &mut rows {
            let (rate, per_flush) = helio_sync(dir, *threads, args.seconds, args.buffers);
            rates.push(rate);
            batch.push(per_flush);
        }
    }
    let base = median(base);
    println!("sync     one writer 4 KiB pwrite+fdatasync: {base:.0}/s");
    for (threads, rates, batch) in rows {
        let r = median(rates);
        println!(
            "sync     helio {threads:>2} writers: {r:>8.0}/s   ratio {:.2}   records per flush {:.1}",
            r / base,
            median(batch)
        );
    }
}

fn replay(args: &Args, dir: &Path) {
    let mut replays = Vec::new();
    let mut cold = true;
    for _ in 0..args.rounds {
        let (rate, _, c) = helio_replay(dir, args.gib << 30);
        cold &= c;
        replays.push(rate);
    }
    let cache = if cold { "page cache dropped" } else { "page cache NOT dropped (not root)" };
    println!("replay   helio {:.2} GB/s of log ({cache})", gb(median(replays)));
}
