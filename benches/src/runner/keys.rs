//! The key space of a run: how key `i` and its values are encoded and checked, which keys are
//! present, random orders over the keys, and YCSB's request distributions.
//!
//! Key `i` starts with `i` as 8 big-endian bytes, so key order is index order (`fillseq` inserts
//! in key order) and a key read back names its index; the rest of a longer key is a pattern of
//! `i`. A value carries its key's index and a generation (which write made it) and a pattern of
//! both, so any value read back can be checked against the key it was read under without
//! knowing which write, of several racing ones, landed last.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::splitmix64;

/// Key and value encoding of one run.
#[derive(Clone, Copy, Debug)]
pub struct KeySpace {
    /// Bytes per key (at least 8).
    pub key_size: usize,
    /// Bytes per value (at least 16).
    pub value_size: usize,
}

impl KeySpace {
    /// Writes key `i` into `out` (resized to `key_size`).
    pub fn key(&self, i: u64, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&i.to_be_bytes());
        fill_pattern(out, splitmix64(i), self.key_size);
    }

    /// The index a key read back names, if it is a well-formed key of this space.
    pub fn index_of(&self, key: &[u8]) -> Option<u64> {
        let i = u64::from_be_bytes(key.get(..8)?.try_into().ok()?);
        (key.len() == self.key_size && pattern_matches(&key[8..], splitmix64(i))).then_some(i)
    }

    /// Writes the value that generation `generation` stores under key `i` into `out`.
    pub fn value(&self, i: u64, generation: u32, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&i.to_le_bytes());
        out.extend_from_slice(&generation.to_le_bytes());
        fill_pattern(out, value_seed(i, generation), self.value_size);
    }

    /// Checks that `value` is a whole, intact value of key `i` (of any generation). Compares in
    /// place, without allocating: the check runs on every value read and is counted in every
    /// engine's time alike, so it must stay small next to a read.
    pub fn check_value(&self, i: u64, value: &[u8]) -> Result<(), String> {
        if value.len() != self.value_size {
            return Err(format!("key {i}: value of {} bytes, expected {}", value.len(), self.value_size));
        }
        let owner = u64::from_le_bytes(value[..8].try_into().expect("8 bytes"));
        if owner != i {
            return Err(format!("key {i}: holds the value of key {owner}"));
        }
        let generation = u32::from_le_bytes(value[8..12].try_into().expect("4 bytes"));
        if !pattern_matches(&value[12..], value_seed(i, generation)) {
            return Err(format!("key {i}: value of generation {generation} is damaged"));
        }
        Ok(())
    }
}

fn value_seed(i: u64, generation: u32) -> u64 {
    splitmix64(i ^ (u64::from(generation) << 40))
}

/// The pattern's next 8 bytes: a 64-bit LCG step (one multiply per 8 bytes; the pattern only
/// has to make every byte depend on the seed).
#[inline]
fn step(x: &mut u64) -> [u8; 8] {
    *x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
    x.to_le_bytes()
}

/// Appends bytes of `seed`'s pattern to `out` until it holds `len` bytes.
fn fill_pattern(out: &mut Vec<u8>, seed: u64, len: usize) {
    let mut x = seed;
    while out.len() < len {
        let take = (len - out.len()).min(8);
        out.extend_from_slice(&step(&mut x)[..take]);
    }
}

/// Whether `bytes` are the start of `seed`'s pattern (word compares: a slice compare per chunk
/// would call `memcmp` for every 8 bytes).
fn pattern_matches(bytes: &[u8], seed: u64) -> bool {
    let mut x = seed;
    let mut chunks = bytes.chunks_exact(8);
    let whole = chunks
        .by_ref()
        .all(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")) == u64::from_le_bytes(step(&mut x)));
    let tail = chunks.remainder();
    whole && tail.iter().zip(step(&mut x)).all(|(a, b)| *a == b)
}

/// Which keys are present, for checking reads: every get of a key marked present must find a
/// valid value, every get of one marked absent must find nothing. Writers touch only their
/// keys' flags (no shared counter: one on every write was a cache line both cores fought over,
/// a cost the fastest engine and the scaling figures felt most); [`Presence::live`] counts.
pub struct Presence {
    flags: Vec<AtomicBool>,
    /// Keys from `inserted_base` on are handed out to inserts, in order.
    next_insert: AtomicU64,
    inserted_base: u64,
}

impl Presence {
    /// Room for `keys` loaded keys and `inserts` more; none present.
    pub fn new(keys: u64, inserts: u64) -> Self {
        Self {
            flags: (0..keys + inserts).map(|_| AtomicBool::new(false)).collect(),
            next_insert: AtomicU64::new(keys),
            inserted_base: keys,
        }
    }

    /// Whether key `i` is present.
    pub fn is_present(&self, i: u64) -> bool {
        self.flags.get(i as usize).is_some_and(|f| f.load(Ordering::Acquire))
    }

    /// Marks key `i` present or absent (after the write returned).
    pub fn set(&self, i: u64, present: bool) {
        self.flags[i as usize].store(present, Ordering::Release);
    }

    /// Keys present now, counted (between phases: one pass over the flags).
    pub fn live(&self) -> u64 {
        self.flags.iter().filter(|f| f.load(Ordering::Acquire)).count() as u64
    }

    /// The index for the next insert, or `None` when the room is used up.
    pub fn claim_insert(&self) -> Option<u64> {
        let i = self.next_insert.fetch_add(1, Ordering::Relaxed);
        (i < self.flags.len() as u64).then_some(i)
    }

    /// One past the highest index handed to an insert (or the loaded key count).
    pub fn insert_end(&self) -> u64 {
        self.next_insert.load(Ordering::Relaxed).min(self.flags.len() as u64)
    }

    /// The first index handed to inserts.
    pub fn inserted_base(&self) -> u64 {
        self.inserted_base
    }

    /// Whether key `i` was handed to an insert (which may not have returned yet).
    pub fn is_claimed_insert(&self, i: u64) -> bool {
        i >= self.inserted_base && i < self.insert_end()
    }
}

/// A random order of `0..n`: `i ↦ (i × step + offset) mod n` with `step` coprime to `n`.
#[derive(Clone, Copy, Debug)]
pub struct Permutation {
    n: u64,
    step: u64,
    offset: u64,
}

impl Permutation {
    /// A permutation of `0..n` picked by `seed`.
    pub fn new(n: u64, seed: u64) -> Self {
        let n = n.max(1);
        let mut step = (splitmix64(seed) % n).max(1);
        while gcd(step, n) != 1 {
            step = step % n + 1;
        }
        Self { n, step, offset: splitmix64(seed ^ 0x5555) % n }
    }

    /// The `i`-th element of the order.
    pub fn at(&self, i: u64) -> u64 {
        ((u128::from(i) * u128::from(self.step) + u128::from(self.offset)) % u128::from(self.n)) as u64
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// YCSB's Zipfian generator over `0..n` (Gray et al., constant 0.99), ranks scrambled by a hash
/// so the popular keys are spread over the key space.
#[derive(Clone, Debug)]
pub struct Zipfian {
    n: u64,
    theta: f64,
    alpha: f64,
    zeta_n: f64,
    eta: f64,
}

impl Zipfian {
    /// YCSB's constant.
    pub const THETA: f64 = 0.99;

    /// A generator over `0..n`.
    pub fn new(n: u64) -> Self {
        let n = n.max(2);
        let theta = Self::THETA;
        let zeta = |k: u64| (1..=k).map(|i| 1.0 / (i as f64).powf(theta)).sum::<f64>();
        let (zeta_n, zeta_2) = (zeta(n), zeta(2));
        let eta = (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta_2 / zeta_n);
        Self { n, theta, alpha: 1.0 / (1.0 - theta), zeta_n, eta }
    }

    /// The rank (0 = most popular) for a uniform draw `u` in `[0, 1)`.
    pub fn rank(&self, u: f64) -> u64 {
        let uz = u * self.zeta_n;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1;
        }
        ((self.n as f64) * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64 % self.n
    }

    /// A scrambled key index for a uniform draw `u`.
    pub fn index(&self, u: f64) -> u64 {
        splitmix64(self.rank(u)) % self.n
    }
}

/// A uniform draw in `[0, 1)` from a random `u64`.
pub fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_order_like_indices_and_values_check() {
        let space = KeySpace { key_size: 24, value_size: 100 };
        let (mut a, mut b, mut v) = (Vec::new(), Vec::new(), Vec::new());
        for i in [0u64, 1, 255, 256, 1 << 40] {
            space.key(i, &mut a);
            space.key(i + 1, &mut b);
            assert!(a < b && a.len() == 24);
            assert_eq!(space.index_of(&a), Some(i));
            space.value(i, 7, &mut v);
            assert_eq!(space.check_value(i, &v), Ok(()));
            assert!(space.check_value(i + 1, &v).is_err(), "another key's value must not pass");
            let mut damaged = v.clone();
            damaged[50] ^= 1;
            assert!(space.check_value(i, &damaged).is_err(), "a flipped bit must not pass");
            assert!(space.check_value(i, &v[..99]).is_err(), "a short value must not pass");
        }
    }

    #[test]
    fn permutations_cover_every_index_once() {
        for n in [1u64, 2, 10, 97, 1000, 1024] {
            let p = Permutation::new(n, n * 3);
            let mut seen: Vec<u64> = (0..n).map(|i| p.at(i)).collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..n).collect::<Vec<_>>());
        }
    }

    #[test]
    fn zipfian_is_skewed_and_in_range() {
        let z = Zipfian::new(10_000);
        let mut rng = crate::Rng::new(1);
        let mut hits = std::collections::HashMap::new();
        for _ in 0..100_000 {
            let i = z.index(unit(rng.next_u64()));
            assert!(i < 10_000);
            *hits.entry(i).or_insert(0u32) += 1;
        }
        let top = hits.values().max().copied().unwrap_or(0);
        // Uniform would give ~10 hits per key; the most popular Zipfian key takes ~10%.
        assert!(top > 2_000, "most popular key got {top} of 100000");
    }
}
