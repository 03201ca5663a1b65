//! Helpers shared by the runtime's integration tests.
#![allow(dead_code)]

use helio_core::log::frame::Op;

/// The payload of a put of `value` under key `i` (big-endian), with snapshot number `i`: what
/// replay hands back for it.
pub fn op_payload(i: u64, value: &[u8]) -> Vec<u8> {
    let key = i.to_be_bytes();
    let op = Op { sn: i, key: &key, value: Some(value) };
    let mut out = vec![0; op.payload_len()];
    op.write_payload(&mut out);
    out
}

/// xorshift64: a fixed, reproducible random sequence.
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
