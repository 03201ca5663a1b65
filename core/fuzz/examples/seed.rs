//! Writes the seed corpus of every fuzz target: `cargo run --example seed -- DIR` (from
//! `core/fuzz`) fills `DIR/<target>/` with small inputs in each target's layout (valid logs,
//! damaged logs, valid superblocks, batches, recovery histories and commits, and a few inputs
//! the structured targets build from). Deterministic: the same files every run.

use std::fs;
use std::path::Path;

use helio_core::log::batch::BatchWriter;
use helio_core::log::cut::{Commit, History, Void};
use helio_core::log::fragment::{pieces, write_fragment, FRAGMENT_HEADER_BYTES};
use helio_core::log::frame::{encode, frame_bytes, Kind, Op, Stamp};
use helio_core::log::page::{Link, PageTable, PageWriter, TableEntry, TableMark};
use helio_core::log::superblock::{Superblock, BLOCK_BYTES};

const SALT: u64 = 0x05EE_D0F4_E110_C0DE;

/// Deterministic bytes.
struct Bytes(u64);

impl Bytes {
    fn next(&mut self) -> u8 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 24) as u8
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next()).collect()
    }
}

/// A log from `base`: a put, a delete, a pad, a relocated record, a batch's part, a commit and
/// a record in fragments; each frame written when the log was durable up to the frame before
/// it.
fn log_at(base: u64, epoch: u32) -> Vec<u8> {
    let stamp = Stamp { salt: SALT, epoch };
    let mut records: Vec<(Kind, Vec<u8>)> = Vec::new();
    let op = |sn: u64, key: &[u8], value: Option<&[u8]>| {
        let op = Op { sn, key, value };
        let mut out = vec![0; op.payload_len()];
        op.write_payload(&mut out);
        out
    };
    records.push((Kind::Put, op(1, b"apple", Some(b"red"))));
    records.push((Kind::Delete, op(2, b"pear", None)));
    records.push((Kind::Pad, vec![0; 13]));
    let mut batch = BatchWriter::new();
    batch.set_sn(3);
    batch.push(b"fig", b"purple");
    batch.push(b"", b"empty key");
    records.push((Kind::Relocated, batch.payload().to_vec()));
    let mut batch = BatchWriter::new();
    batch.set_sn(4);
    batch.push(b"kiwi", b"green");
    batch.push_op(b"apple", None);
    records.push((Kind::Batch, batch.payload().to_vec()));
    records.push((Kind::Commit, Commit { sn: 4, ends: vec![base + 256, 4096] }.encode()));
    let big = op(5, b"melon", Some(&[0x4D; 100]));
    for (offset, len) in pieces(big.len(), FRAGMENT_HEADER_BYTES + 48) {
        let mut piece = vec![0; FRAGMENT_HEADER_BYTES + len];
        write_fragment(&mut piece, Kind::Put, &big, offset, len);
        records.push((Kind::Fragment, piece));
    }
    let mut log = Vec::new();
    let mut durable = base;
    for (kind, payload) in records {
        let lsn = base + log.len() as u64;
        let start = log.len();
        log.resize(start + frame_bytes(payload.len()), 0);
        encode(&mut log[start..], stamp, lsn, durable, kind, &payload);
        durable = lsn;
    }
    log
}

/// The `frame` target's layout: lsn, salt, epoch floor, flags, from, then the bytes.
fn frame_input(lsn: u64, min_epoch: u32, flags: u8, log: &[u8]) -> Vec<u8> {
    let mut out = lsn.to_le_bytes().to_vec();
    out.extend_from_slice(&SALT.to_le_bytes());
    out.extend_from_slice(&min_epoch.to_le_bytes());
    out.extend_from_slice(&[flags, 16]);
    out.extend_from_slice(log);
    out
}

/// The `frame_mutated` target's input: six records of the generator's choice `kind`, with
/// small values, a sync and an epoch bump before the fourth, then some damage.
fn frame_mutated_input(rng: &mut Bytes, kind: u8) -> Vec<u8> {
    let mut input = SALT.to_le_bytes().to_vec();
    input.extend_from_slice(&[2, 0, 2, 0, 0, 5]);
    for i in 0..6 {
        input.push(kind + 0x40 * (i % 2) + if i == 3 { 0x18 } else { 0 });
        input.extend(rng.take(24).iter().map(|b| b % 32));
    }
    input.extend_from_slice(&[1 + kind % 3, kind, 40, 0, 3]);
    input
}

fn superblock(generation: u64) -> [u8; BLOCK_BYTES] {
    Superblock {
        generation,
        head: 4096 * generation,
        tail: 8192 * generation + 64,
        segment_bytes: 1 << 26,
        salt: SALT,
        epoch: generation as u32 / 2,
        clean: false,
    }
    .encode()
}

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let dir = dir.join(target);
    fs::create_dir_all(&dir).expect("corpus folder");
    fs::write(dir.join(name), bytes).expect("seed file");
}

fn main() {
    let dir = std::env::args().nth(1).expect("usage: seed DIR");
    let dir = Path::new(&dir);
    let mut rng = Bytes(0x9E37_79B9_7F4A_7C15);

    // frame: whole logs, cut, damaged, unwritten, stale, at a high address.
    let log = log_at(4096, 3);
    write(dir, "frame", "valid-log", &frame_input(4096, 0, 0, &log));
    write(dir, "frame", "valid-log-own-address", &frame_input(0, 0, 1, &log));
    write(dir, "frame", "torn-tail", &frame_input(4096, 0, 0, &log[..log.len() - 21]));
    let mut flipped = log.clone();
    flipped[30] ^= 4;
    write(dir, "frame", "corrupt-first-frame", &frame_input(4096, 0, 0, &flipped));
    let mut zeros = log.clone();
    zeros[..64].fill(0);
    write(dir, "frame", "unwritten-head", &frame_input(4096, 0, 0, &zeros));
    write(dir, "frame", "stale-epoch", &frame_input(4096, 4, 0, &log));
    let high = (1u64 << 40) + 8;
    write(dir, "frame", "high-address", &frame_input(high, 0, 0, &log_at(high, 0)));

    // frame_mutated: the builder's input (salt, epoch, base, frames, then frame choices and
    // values, then damage); one per kind of record (6 and 7 at the end), plus mixed ones.
    for kind in 0..6u8 {
        write(dir, "frame_mutated", &format!("kind-{kind}"), &frame_mutated_input(&mut rng, kind));
    }
    for i in 0..4 {
        write(dir, "frame_mutated", &format!("mixed-{i}"), &rng.take(160 + 80 * i));
    }

    // fragment: valid pieces of records, wrong headers, huge totals.
    let mut pieces_input = vec![0, 100, 0];
    pieces_input.extend(rng.take(100));
    pieces_input.extend_from_slice(&[30, 0, 0, 30, 0, 0, 30, 0, 0, 30, 0]);
    write(dir, "fragment", "valid-pieces", &pieces_input);
    for i in 0..5 {
        write(dir, "fragment", &format!("mixed-{i}"), &rng.take(120 + 60 * i));
    }

    // superblock: both slots intact, the newer torn, the wrong way round, another version
    // newer, one block alone.
    let two = |a: &[u8], b: &[u8]| [&[0u8][..], a, b].concat();
    let (even, odd) = (superblock(4), superblock(5));
    write(dir, "superblock", "both-intact", &two(&even, &odd));
    let mut torn = odd;
    torn[2000..].fill(0);
    write(dir, "superblock", "newer-torn", &two(&even, &torn));
    write(dir, "superblock", "wrong-slots", &two(&odd, &even));
    let mut newer_version = odd;
    newer_version[8] = 4;
    let crc = helio_core::log::crc32c_of(&newer_version[..BLOCK_BYTES - 4]);
    newer_version[BLOCK_BYTES - 4..].copy_from_slice(&crc.to_le_bytes());
    write(dir, "superblock", "newer-other-version", &two(&even, &newer_version));
    write(dir, "superblock", "one-block", &[&[2u8, 0, 16][..], &even].concat());
    for i in 0..3 {
        let mut input = vec![1];
        input.extend(rng.take(80));
        write(dir, "superblock", &format!("structured-{i}"), &input);
    }

    // batch: a payload the writer wrote (a number, puts and a removal), whole and cut; entries
    // to write.
    let mut batch = BatchWriter::new();
    batch.set_sn(17);
    for (key, value) in [(&b"k1"[..], &b"v1"[..]), (b"", b""), (b"key", &[7; 40])] {
        batch.push(key, value);
    }
    batch.push_op(b"gone", None);
    write(dir, "batch", "payload", &[&[0u8][..], batch.payload()].concat());
    write(dir, "batch", "payload-cut", &[&[0u8][..], &batch.payload()[..28]].concat());
    for i in 0..3 {
        let mut input = vec![1];
        input.extend(rng.take(100 + 50 * i));
        write(dir, "batch", &format!("entries-{i}"), &input);
    }

    // recover: logs the writer mode builds (then damages) from the input; a valid log in the
    // raw mode's layout (flags, head, tail, its shift, segment bytes, salt, limits, segments).
    for i in 0..6 {
        let mut input = vec![0];
        input.extend(rng.take(120 + 60 * i));
        write(dir, "recover", &format!("writer-{i}"), &input);
    }
    let log = log_at(0, 0);
    let mut raw = vec![1, 1];
    raw.extend_from_slice(&0u64.to_le_bytes());
    raw.extend_from_slice(&(log.len() as u64).to_le_bytes());
    raw.push(0);
    raw.extend_from_slice(&4096u64.to_le_bytes());
    raw.extend_from_slice(&SALT.to_le_bytes());
    raw.extend_from_slice(&[0, 16, 0, 2, 1, 0]);
    raw.extend_from_slice(&(log.len() as u16).to_le_bytes());
    raw.extend_from_slice(&log);
    write(dir, "recover", "raw-valid-log", &raw);

    // clean and replay: records they build from the input.
    for i in 0..5 {
        write(dir, "clean", &format!("mixed-{i}"), &rng.take(150 + 50 * i));
        write(dir, "replay", &format!("mixed-{i}"), &rng.take(150 + 50 * i));
    }

    // frame_mutated, continued: the kinds added since (batch records, commits).
    for kind in 6..8u8 {
        write(dir, "frame_mutated", &format!("kind-{kind}"), &frame_mutated_input(&mut rng, kind));
    }

    // cut: history files and commits as they are written (raw mode), a history's fields, two
    // recoveries in a row (two shards: commits 3 and 5 reached, 6 not; then 7 in the range the
    // first dropped, and 10), and random inputs for each mode.
    let history = History {
        cut: 7,
        next_sn: 12,
        voids: vec![
            Void { after: 2, before: 5, ends: vec![1, 2] },
            Void { after: 7, before: 12, ends: vec![3, 4] },
        ],
    };
    write(dir, "cut", "history-2", &[&[0u8, 2][..], &history.encode(2)].concat());
    write(dir, "cut", "history-empty", &[&[0u8, 1][..], &History::default().encode(1)].concat());
    let commit = Commit { sn: 9, ends: vec![1, 2, 3] }.encode();
    write(dir, "cut", "commit", &[&[0u8, 3][..], &commit].concat());
    write(dir, "cut", "history-body", &[&[0u8, 0x82][..], &history.encode(2)[16..]].concat());
    let recoveries = [
        &[2u8, 2, 0, 1][..],
        &[0, 10, 0, 8],
        &[2, 0x40, 3, 0, 2, 1, 0x40, 6, 3, 1, 0, 8],
        &[1, 0x40, 5, 0, 0, 6],
        &[2, 20, 0, 16],
        &[1, 0x40, 7, 0, 0, 10],
        &[1, 0x40, 10, 0, 0, 12],
    ];
    write(dir, "cut", "plan-two-recoveries", &recoveries.concat());
    for (mode, name) in [(1u8, "history-fields"), (2, "plan"), (3, "shard-scan")] {
        for i in 0..3 {
            let mut input = vec![mode];
            input.extend(rng.take(60 + 40 * i).iter().map(|b| if i == 0 { b % 64 } else { *b }));
            write(dir, "cut", &format!("{name}-{i}"), &input);
        }
    }

    // page: page records as written (an image, a delta, one cut short), table files (whole,
    // and a body for the target to seal), and records to fold.
    let mut page = PageWriter::new();
    page.start(9, None, b"", Some(b"m"));
    page.push(b"apple", Some(b"red"), 9);
    page.push(b"apple", None, 4);
    page.push(b"fig", Some(b""), 2);
    write(dir, "page", "record-image", &[&[0u8][..], page.payload()].concat());
    write(dir, "page", "record-cut", &[&[0u8][..], &page.payload()[..40]].concat());
    page.start(12, Some(4096), b"m", None);
    page.push(b"pear", Some(b"green"), 12);
    write(dir, "page", "record-delta", &[&[0u8][..], page.payload()].concat());
    let mut table = PageTable::new();
    let entry = |lo: &[u8], hi: Option<&[u8]>, addr: u64| TableEntry {
        lo: lo.into(),
        hi: hi.map(Into::into),
        addr,
        sn: addr / 8,
        segments: 2,
        items: 40,
        chain: vec![Link { addr, bytes: 96 }, Link { addr: addr - 8, bytes: 40 }],
    };
    table.insert(entry(b"", Some(b"m"), 4096));
    table.insert(entry(b"p", None, 8192));
    let file =
        table.encode(&TableMark { position: 1 << 20, commit: Commit { sn: 600, ends: vec![1 << 20, 4096] } });
    write(dir, "page", "table", &[&[1u8][..], &file].concat());
    write(dir, "page", "table-body", &[&[2u8][..], &file[..file.len() - 4]].concat());
    for i in 0..4 {
        let mut input = vec![3];
        input.extend(rng.take(60 + 40 * i));
        write(dir, "page", &format!("fold-{i}"), &input);
    }
}
