//! Memory per item: loads `HELIO_BENCH_KEYS` (default 1,000,000) keys of 16 bytes with 100-byte
//! values into a `helio_core::Tree` (then consolidates it with `Tree::compact`), a crossbeam
//! `SkipMap` and a `RwLock<BTreeMap>`, and prints the live heap bytes each holds per item, and
//! their ratio to the raw 116 bytes of key and value.
//!
//! Run with `cargo run --release -p helio-bench --bin memory`.
//!
//! Heap bytes are counted by a global allocator wrapping the system one: "requested" is the sum
//! of live allocation sizes as asked for; "malloc est." adds glibc's per-chunk overhead (an
//! 8-byte header, 16-byte rounding, 32-byte minimum), closer to what the process really uses.
//! Epoch garbage is flushed (pin + flush until the count stops moving) before every reading.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::RwLock;

use crossbeam_skiplist::SkipMap;
use helio_bench::{key, key_count, value, verify, Store, KEY_LEN, RAW_ITEM_BYTES, VALUE_LEN};
use helio_core::Tree;

/// Live bytes as requested.
static REQUESTED: AtomicIsize = AtomicIsize::new(0);
/// Live bytes with glibc's estimated chunk overhead.
static CHUNKED: AtomicIsize = AtomicIsize::new(0);

/// glibc malloc's chunk size for a request of `size` bytes (approximate for mmapped chunks).
fn chunk(size: usize) -> isize {
    ((size + 8 + 15) & !15).max(32) as isize
}

/// The system allocator, counting live bytes.
struct Counting;

// SAFETY: forwards every call to `System` unchanged; only adds counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            REQUESTED.fetch_add(layout.size() as isize, Ordering::Relaxed);
            CHUNKED.fetch_add(chunk(layout.size()), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            REQUESTED.fetch_add(layout.size() as isize, Ordering::Relaxed);
            CHUNKED.fetch_add(chunk(layout.size()), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on.
        unsafe { System.dealloc(ptr, layout) };
        REQUESTED.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        CHUNKED.fetch_sub(chunk(layout.size()), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract is passed on.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            REQUESTED.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
            CHUNKED.fetch_add(chunk(new_size) - chunk(layout.size()), Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Live heap bytes now: (requested, with malloc overhead).
fn live() -> (isize, isize) {
    (REQUESTED.load(Ordering::Relaxed), CHUNKED.load(Ordering::Relaxed))
}

/// Lets deferred epoch frees run: pins and flushes until the live count has not moved for 100
/// rounds in a row (at most 100,000 rounds).
fn settle() {
    let mut last = live();
    let mut still = 0;
    for _ in 0..100_000 {
        crossbeam_epoch::pin().flush();
        let now = live();
        if now == last {
            still += 1;
            if still >= 100 {
                return;
            }
        } else {
            still = 0;
            last = now;
        }
    }
}

/// Live bytes now, after settling, relative to `base`.
fn since(base: (isize, isize)) -> (isize, isize) {
    settle();
    let now = live();
    (now.0 - base.0, now.1 - base.1)
}

/// One line of the table.
struct Row {
    name: String,
    bytes: (isize, isize),
}

/// A step to run on a loaded structure, with the label of the table row that measures after it.
type Step<'a, S> = (&'a str, &'a dyn Fn(&S));

/// Loads `n` keys into a fresh `S`, runs `then` on it, and reports the bytes held after loading
/// and after `then` (when given a label for it), checks its contents, and checks that dropping it
/// frees everything.
fn measure<S: Store>(n: usize, rows: &mut Vec<Row>, then: Option<Step<'_, S>>) {
    // Names and table slots are made first, so that they are not counted.
    let loaded_name = format!("{} (loaded)", S::NAME);
    let then_name = then.map(|(label, _)| format!("{} ({label})", S::NAME));
    rows.reserve(2);
    settle();
    let base = live();
    // Loaded on this thread: a loader thread's epoch bookkeeping would outlive it and be counted.
    let store = S::create();
    for i in 0..n as u64 {
        store.insert(&key(i), &value(i));
    }
    let loaded = since(base);
    let after = then.map(|(_, then)| {
        then(&store);
        since(base)
    });
    if let Err(e) = verify(&store, n) {
        eprintln!("CONTENT CHECK FAILED: {e}");
        std::process::exit(1);
    }
    drop(store);
    let left = since(base);
    if left.0 != 0 {
        // crossbeam-epoch may keep one node of its global garbage queue (about 2 KiB): not a leak.
        eprintln!("note: {} left {} bytes live after being dropped", S::NAME, left.0);
    }
    rows.push(Row { name: loaded_name, bytes: loaded });
    if let (Some(name), Some(bytes)) = (then_name, after) {
        rows.push(Row { name, bytes });
    }
}

fn main() {
    let n = key_count();
    println!(
        "{n} items of {KEY_LEN}-byte keys and {VALUE_LEN}-byte values ({RAW_ITEM_BYTES} raw bytes each)\n"
    );
    let mut rows = Vec::new();
    let compact: &dyn Fn(&Tree) = &|tree| {
        let guard = tree.pin();
        tree.compact(&guard);
        drop(guard);
        let stats = tree.stats();
        println!(
            "helio after compact: {} pages ({:.1} items/page), {} consolidations, {} splits, {} merges",
            stats.pages,
            n as f64 / stats.pages as f64,
            stats.consolidations,
            stats.splits,
            stats.merges
        );
    };
    measure::<Tree>(n, &mut rows, Some(("compacted", compact)));
    measure::<SkipMap<Vec<u8>, Vec<u8>>>(n, &mut rows, None);
    measure::<RwLock<BTreeMap<Vec<u8>, Vec<u8>>>>(n, &mut rows, None);

    println!();
    println!(
        "| {:<20} | {:>14} | {:>10} | {:>8} | {:>18} | {:>12} |",
        "structure", "requested B", "B/item", "x raw", "malloc est. B/item", "x raw (est.)"
    );
    println!("|{:-<22}|{:->16}|{:->12}|{:->10}|{:->20}|{:->14}|", "", "", "", "", "", "");
    for row in &rows {
        let per = row.bytes.0 as f64 / n as f64;
        let per_est = row.bytes.1 as f64 / n as f64;
        println!(
            "| {:<20} | {:>14} | {:>10.1} | {:>8.3} | {:>18.1} | {:>12.3} |",
            row.name,
            row.bytes.0,
            per,
            per / RAW_ITEM_BYTES as f64,
            per_est,
            per_est / RAW_ITEM_BYTES as f64
        );
    }
}
