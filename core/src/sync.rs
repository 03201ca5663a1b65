//! The synchronisation primitives the CAS protocols use.
//!
//! Normally these are `core`'s atomics. Under `cfg(loom)` they are loom's, so that the model checker
//! sees every load, store and compare-and-swap of the page and snapshot protocols and explores their
//! interleavings. Nothing else in the crate names an atomic type directly.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU64, AtomicU8, Ordering};

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU64, AtomicU8, Ordering};

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};

/// One step of a busy wait: a CPU hint normally, a yield to the model checker under loom.
#[inline]
pub(crate) fn spin_wait() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    core::hint::spin_loop();
}

/// Waits for another thread that may be descheduled or waiting for I/O: spins a little, then
/// (with `std`) yields the CPU between tries.
pub(crate) struct Backoff {
    #[cfg(not(loom))]
    inner: crossbeam_utils::Backoff,
}

impl Backoff {
    pub(crate) fn new() -> Self {
        Self {
            #[cfg(not(loom))]
            inner: crossbeam_utils::Backoff::new(),
        }
    }

    pub(crate) fn snooze(&self) {
        #[cfg(loom)]
        loom::thread::yield_now();
        // Not a sleep once yielding is spent: a sealer blocks every round begun after it, and
        // with many writers on few cores the one it waits for is mostly just descheduled
        // (fillsync-t64 halved with a 20 µs sleep here).
        #[cfg(not(loom))]
        self.inner.snooze();
    }
}

/// A minimal test-and-test-and-set lock for short critical sections that never block.
///
/// `no_std` has no mutex; the sections this guards (editing the sorted list of live snapshots) are a
/// few instructions long and rare, so spinning is cheaper than any parking scheme.
pub(crate) struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the lock hands out `&mut T` to one holder at a time, so sharing it is as safe as sending `T`.
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: moving the lock moves the `T` it owns.
unsafe impl<T: Send> Send for SpinLock<T> {}

impl<T> SpinLock<T> {
    pub(crate) fn new(value: T) -> Self {
        Self { locked: AtomicBool::new(false), value: UnsafeCell::new(value) }
    }

    pub(crate) fn lock(&self) -> SpinGuard<'_, T> {
        loop {
            if self.locked.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                return SpinGuard { lock: self };
            }
            while self.locked.load(Ordering::Relaxed) {
                spin_wait();
            }
        }
    }
}

/// Holds a [`SpinLock`]; releases it when dropped.
pub(crate) struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: holding the guard means holding the lock.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: holding the guard means holding the lock exclusively.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
    }
}
