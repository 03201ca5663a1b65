//! The open after a crash that follows a fast fill: a child process fills a fresh store of two
//! shards with `KEYS` random keys (16 bytes, 100-byte values, `Durability::None`), syncs,
//! prints each shard's unflushed tail and kills itself with SIGKILL; then, with the page cache
//! dropped when run as root, this process opens the store, times the open, counts the bytes it
//! read (`/proc/self/io`) and checks a sample of 10,000 keys.
//!
//! `cargo run --release -p helio --example crash_reopen --features mimalloc -- DIR [KEYS]`
//! (default 10,000,000 keys; `DIR` is removed first).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use helio::{Config, Durability, Store};

fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

fn value(i: u64) -> [u8; 100] {
    [(i % 251) as u8; 100]
}

fn config(dir: &Path) -> Config {
    Config::new(dir).shards(2)
}

/// Bytes this process has read from the device so far.
fn read_bytes() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").expect("/proc/self/io");
    io.lines()
        .find_map(|l| l.strip_prefix("read_bytes: "))
        .and_then(|n| n.trim().parse().ok())
        .expect("read_bytes")
}

fn fill_and_die(dir: &Path, keys: u64) -> ! {
    let store = Store::open(config(dir)).expect("open");
    let started = Instant::now();
    for i in 0..keys {
        store.put_with(&key(i), &value(i), Durability::None).expect("put");
    }
    store.sync().expect("sync");
    let secs = started.elapsed().as_secs_f64();
    let tails: Vec<u64> = store.stats().shards.iter().map(|s| s.unflushed_bytes >> 20).collect();
    println!(
        "fill: {keys} keys in {secs:.1} s ({:.0}k puts/s); unflushed tail per shard (MiB): {tails:?}",
        keys as f64 / secs / 1e3
    );
    // SAFETY: a signal to this process; nothing runs after it.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    unreachable!("SIGKILL")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = Path::new(args.get(1).expect("usage: crash_reopen DIR [KEYS]"));
    let keys = args.get(2).map_or(10_000_000, |k| k.parse().expect("KEYS"));
    if std::env::var_os("CRASH_REOPEN_CHILD").is_some() {
        fill_and_die(dir, keys);
    }
    let _ = std::fs::remove_dir_all(dir);
    let status = Command::new(std::env::current_exe().expect("own path"))
        .args(&args[1..])
        .env("CRASH_REOPEN_CHILD", "1")
        .status()
        .expect("spawn the filler");
    assert!(!status.success(), "the filler must die by SIGKILL: {status}");
    if std::fs::write("/proc/sys/vm/drop_caches", "3").is_err() {
        println!("(page cache not dropped: not root)");
    }
    let before = read_bytes();
    let started = Instant::now();
    let store = Store::open(config(dir)).expect("reopen");
    let secs = started.elapsed().as_secs_f64();
    println!("open after SIGKILL: {secs:.2} s, {} MiB read", (read_bytes() - before) >> 20);
    let mut rng = fastrand::Rng::with_seed(3);
    for _ in 0..10_000 {
        let i = rng.u64(0..keys);
        assert_eq!(store.get(&key(i)).expect("get").as_deref(), Some(&value(i)[..]), "key {i}");
    }
    println!("10,000 sampled keys present");
}
