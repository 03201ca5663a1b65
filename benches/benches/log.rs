//! The CPU side of log recovery: decoding (and checksumming) frames from memory, in bytes per
//! second, for op records of 16-byte keys and 100-byte values. Recovery's target is 1 GB/s of log;
//! reading the files adds I/O on top of this.
//!
//! `cargo bench -p helio-bench --bench log`

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use helio_core::log::frame::{decode, encode_with, frame_bytes, Decoded, Op, Stamp};

const LOG_BYTES: usize = 64 << 20;
const STAMP: Stamp = Stamp { salt: 0x1234_5678_9ABC_DEF0, epoch: 1 };

fn log_of_ops() -> Vec<u8> {
    let value = [0xA5u8; 100];
    let mut log = Vec::with_capacity(LOG_BYTES + 4096);
    let mut sn = 0u64;
    while log.len() < LOG_BYTES {
        let key = helio_bench::key(sn);
        let op = Op { sn, key: &key, value: Some(&value) };
        let start = log.len();
        log.resize(start + frame_bytes(op.payload_len()), 0);
        let lsn = start as u64;
        encode_with(&mut log[start..], STAMP, lsn, lsn, op.kind(), op.payload_len(), |p| op.write_payload(p));
        sn += 1;
    }
    log
}

fn replay_decode(c: &mut Criterion) {
    let log = log_of_ops();
    let mut group = c.benchmark_group("log");
    group
        .throughput(Throughput::Bytes(log.len() as u64))
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    group.bench_function("decode_ops_64MiB", |b| {
        b.iter(|| {
            let (mut at, mut frames) = (0usize, 0u64);
            while at < log.len() {
                match decode(&log[at..], at as u64, STAMP.salt, 0) {
                    Decoded::Frame(frame) => {
                        black_box(Op::decode(&frame));
                        at += frame.bytes;
                        frames += 1;
                    }
                    other => panic!("at {at}: {other:?}"),
                }
            }
            frames
        })
    });
    group.finish();
}

criterion_group!(benches, replay_decode);
criterion_main!(benches);
