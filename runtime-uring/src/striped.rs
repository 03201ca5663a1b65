//! Counters that many threads bump: one cache line per stripe, a stripe per thread, summed when
//! read. Keeps statistics off the cache lines the hot paths share.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

/// Per-thread striped counters: threads bump different cache lines, readers sum them.
pub(crate) struct Striped([CachePadded<AtomicU64>; 16]);

impl Striped {
    pub(crate) fn new() -> Self {
        Self(std::array::from_fn(|_| CachePadded::new(AtomicU64::new(0))))
    }

    pub(crate) fn add(&self, n: u64) {
        thread_local! {
            static STRIPE: usize = {
                static NEXT: AtomicU64 = AtomicU64::new(0);
                NEXT.fetch_add(1, Ordering::Relaxed) as usize % 16
            };
        }
        STRIPE.with(|&i| self.0[i].fetch_add(n, Ordering::Relaxed));
    }

    pub(crate) fn sum(&self) -> u64 {
        self.0.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}
