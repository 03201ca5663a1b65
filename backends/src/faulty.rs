//! [`FaultyStore`]: wraps any store and, on demand, delays calls, fails them with any
//! [`RemoteError`], makes them time out, or fails only the n-th one; and counts every call.

use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;

use crate::{ExternalStore, ExternalStoreHandle, RemoteError};

/// The calls a [`Fault`] can apply to, and that [`FaultyStore::calls`] counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// [`ExternalStore::connect`].
    Connect,
    /// [`ExternalStoreHandle::put`].
    Put,
    /// [`ExternalStoreHandle::get`].
    Get,
    /// [`ExternalStoreHandle::delete`].
    Delete,
    /// [`ExternalStoreHandle::put_if_absent`].
    PutIfAbsent,
}

const OPS: usize = 5;

impl Op {
    fn index(self) -> usize {
        match self {
            Self::Connect => 0,
            Self::Put => 1,
            Self::Get => 2,
            Self::Delete => 3,
            Self::PutIfAbsent => 4,
        }
    }
}

/// What a fault does to a call it applies to.
#[derive(Clone, Debug)]
enum Effect {
    /// Waits, then makes the call.
    Latency(Duration),
    /// Fails at once with the error; the wrapped store never sees the call.
    Fail(RemoteError),
    /// Waits, then fails with [`RemoteError::Unavailable`], as a request timeout would.
    Timeout(Duration),
}

/// Which of the calls it matches a fault applies to, counted from its injection.
#[derive(Clone, Copy, Debug)]
enum Trigger {
    Always,
    Nth(u64),
    Times(u64),
}

/// One fault to [`inject`](FaultyStore::inject): an effect, the operations it matches (all,
/// unless narrowed by [`on`](Fault::on)) and which matching calls it hits (every one, unless
/// [`nth`](Fault::nth) or [`times`](Fault::times)).
#[derive(Clone, Debug)]
pub struct Fault {
    effect: Effect,
    ops: Vec<Op>,
    trigger: Trigger,
}

impl Fault {
    /// Delays each call it hits by `delay`, then makes it.
    #[must_use]
    pub fn latency(delay: Duration) -> Self {
        Self::with(Effect::Latency(delay))
    }

    /// Fails each call it hits with `error`, without making it.
    #[must_use]
    pub fn error(error: RemoteError) -> Self {
        Self::with(Effect::Fail(error))
    }

    /// Makes each call it hits hang for `after`, then fail with [`RemoteError::Unavailable`]
    /// without having been made.
    #[must_use]
    pub fn timeout(after: Duration) -> Self {
        Self::with(Effect::Timeout(after))
    }

    fn with(effect: Effect) -> Self {
        Self { effect, ops: Vec::new(), trigger: Trigger::Always }
    }

    /// Applies to `op` (call again to add more); without any, to every operation.
    #[must_use]
    pub fn on(mut self, op: Op) -> Self {
        self.ops.push(op);
        self
    }

    /// Hits only the `n`-th matching call after injection (1 is the next one), then is gone.
    #[must_use]
    pub fn nth(mut self, n: u64) -> Self {
        self.trigger = Trigger::Nth(n);
        self
    }

    /// Hits the next `n` matching calls, then is gone.
    #[must_use]
    pub fn times(mut self, n: u64) -> Self {
        self.trigger = Trigger::Times(n);
        self
    }

    fn matches(&self, op: Op) -> bool {
        self.ops.is_empty() || self.ops.contains(&op)
    }
}

/// An injected fault and how many matching calls it has seen.
struct Armed {
    fault: Fault,
    seen: u64,
}

impl Armed {
    /// Counts a matching call; whether the fault hits it.
    fn hits(&mut self) -> bool {
        self.seen += 1;
        match self.fault.trigger {
            Trigger::Always => true,
            Trigger::Nth(n) => self.seen == n,
            Trigger::Times(n) => self.seen <= n,
        }
    }

    fn spent(&self) -> bool {
        match self.fault.trigger {
            Trigger::Always => false,
            Trigger::Nth(n) | Trigger::Times(n) => self.seen >= n,
        }
    }
}

/// The faults and counters every handle of one [`FaultyStore`] shares.
#[derive(Default)]
struct Faults {
    armed: Vec<Armed>,
    calls: [u64; OPS],
}

impl Faults {
    /// Counts a call of `op` and returns what the faults that hit it do, in injection order.
    fn strike(&mut self, op: Op) -> Vec<Effect> {
        self.calls[op.index()] += 1;
        let mut effects = Vec::new();
        for armed in self.armed.iter_mut().filter(|armed| armed.fault.matches(op)) {
            if armed.hits() {
                effects.push(armed.fault.effect.clone());
            }
        }
        self.armed.retain(|armed| !armed.spent());
        effects
    }
}

/// An [`ExternalStore`] that passes every call to the store it wraps, except where an injected
/// [`Fault`] says otherwise. Faults injected on the store apply to every handle, also those
/// connected before. It does not retry: wrap it in [`Retrying`](crate::Retrying) for that.
pub struct FaultyStore {
    inner: Arc<dyn ExternalStore>,
    faults: Arc<Mutex<Faults>>,
}

impl FaultyStore {
    /// `inner` with no faults yet.
    #[must_use]
    pub fn new(inner: Arc<dyn ExternalStore>) -> Self {
        Self { inner, faults: Arc::default() }
    }

    /// Adds `fault`; it applies from the next call on.
    pub fn inject(&self, fault: Fault) {
        lock(&self.faults).armed.push(Armed { fault, seen: 0 });
    }

    /// Removes every fault.
    pub fn clear(&self) {
        lock(&self.faults).armed.clear();
    }

    /// Calls of `op` so far, on every handle, faulted or not.
    #[must_use]
    pub fn calls(&self, op: Op) -> u64 {
        lock(&self.faults).calls[op.index()]
    }
}

fn lock(faults: &Mutex<Faults>) -> MutexGuard<'_, Faults> {
    // Every change under the lock is complete before anything that could panic.
    faults.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Applies the faults that hit a call of `op`; `Err` if the call must not be made.
fn strike(faults: &Mutex<Faults>, op: Op) -> Result<(), RemoteError> {
    let effects = lock(faults).strike(op);
    for effect in effects {
        match effect {
            Effect::Latency(delay) => std::thread::sleep(delay),
            Effect::Fail(error) => return Err(error),
            Effect::Timeout(after) => {
                std::thread::sleep(after);
                return Err(RemoteError::Unavailable(format!("injected timeout after {after:?}")));
            }
        }
    }
    Ok(())
}

impl ExternalStore for FaultyStore {
    fn connect(&self) -> Result<Box<dyn ExternalStoreHandle>, RemoteError> {
        strike(&self.faults, Op::Connect)?;
        let inner = self.inner.connect()?;
        Ok(Box::new(FaultyHandle { inner, faults: Arc::clone(&self.faults) }))
    }
}

/// A handle of the wrapped store, behind the shared faults.
struct FaultyHandle {
    inner: Box<dyn ExternalStoreHandle>,
    faults: Arc<Mutex<Faults>>,
}

impl ExternalStoreHandle for FaultyHandle {
    fn put(&mut self, key: &str, bytes: Bytes) -> Result<(), RemoteError> {
        strike(&self.faults, Op::Put)?;
        self.inner.put(key, bytes)
    }

    fn get(&mut self, key: &str, range: Range<u64>) -> Result<Option<Bytes>, RemoteError> {
        strike(&self.faults, Op::Get)?;
        self.inner.get(key, range)
    }

    fn delete(&mut self, key: &str) -> Result<(), RemoteError> {
        strike(&self.faults, Op::Delete)?;
        self.inner.delete(key)
    }

    fn put_if_absent(&mut self, key: &str, bytes: Bytes) -> Result<(), RemoteError> {
        strike(&self.faults, Op::PutIfAbsent)?;
        self.inner.put_if_absent(key, bytes)
    }
}
