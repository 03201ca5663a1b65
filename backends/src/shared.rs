//! [`SharedReads`]: concurrent reads of the same remote block share one fetch and one buffer, and
//! fetched blocks stay in a bounded LRU pool that serves later reads.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::args::{check_get, cut_usize};
use crate::{ExternalStore, ExternalStoreHandle, RemoteError};

/// How long a reader waits for a buffer when every one is in use, unless
/// [`SharedReads::with_busy_deadline`] says otherwise.
pub const BUSY_DEADLINE_DEFAULT: Duration = Duration::from_secs(1);

/// The most buffers, and the largest block, [`SharedReads::new`] accepts.
const BUFFERS_MAX: usize = 1 << 20;
const BLOCK_BYTES_MAX: u64 = 1 << 30;
const _: () = assert!(BLOCK_BYTES_MAX <= usize::MAX as u64, "a block is indexed by usize");

/// Reads of remote objects through a pool of `buffers` block buffers.
///
/// An object is read in blocks of `block_bytes`, fetched by block-aligned ranges. A reader that
/// needs a block another reader is fetching waits for that fetch and shares its buffer; if the
/// fetch fails (or finds no object), every one of its waiters gets the error and nothing of it is
/// kept, so the next reader fetches again. Fetched blocks stay in the pool, least recently used
/// first out, and serve later reads. A buffer is in use while its block is being fetched; when
/// every buffer is, a reader of another block waits up to the busy deadline (default
/// [`BUSY_DEADLINE_DEFAULT`]) and then gets [`RemoteError::Busy`].
///
/// Objects are taken to be immutable once written, as Helio's segments are: a block in the pool is
/// not fetched again while it stays there. Bytes returned from a read within one block share that
/// block's memory, which lives as long as either does.
pub struct SharedReads {
    store: Arc<dyn ExternalStore>,
    block_bytes: u64,
    busy_deadline: Duration,
    pool: Mutex<Pool>,
    /// Signalled when a fetch ends and when a buffer stops being in use.
    changed: Condvar,
    /// Idle handles for fetches, at most one per buffer.
    handles: Mutex<Vec<Box<dyn ExternalStoreHandle>>>,
}

/// What the pool has done so far (counts are per block a read touched) and holds now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SharedReadStats {
    /// Blocks fetched from the store.
    pub fetches: u64,
    /// Block reads that waited for another reader's fetch instead of fetching.
    pub shared: u64,
    /// Block reads served by a block already in the pool.
    pub pool_hits: u64,
    /// Reads refused with [`RemoteError::Busy`].
    pub busy: u64,
    /// Fetches that failed or found no object; every waiter got the error.
    pub fetch_failures: u64,
    /// Buffers holding a fetched block now.
    pub resident: usize,
}

/// One block of one object.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct BlockId {
    key: String,
    block: u64,
}

/// What a buffer holds.
enum State {
    Empty,
    Fetching,
    Ready(Bytes),
    /// The failed fetch's error, kept only until its last waiter has taken it.
    Failed(RemoteError),
}

struct Slot {
    state: State,
    /// The block, while the index points here (fetching or ready).
    block: Option<BlockId>,
    /// Readers waiting for this buffer's fetch, the fetcher included.
    pins: usize,
    last_used: u64,
}

struct Pool {
    slots: Vec<Slot>,
    index: HashMap<BlockId, usize>,
    clock: u64,
    stats: SharedReadStats,
}

/// What a reader found for its block.
enum Found {
    Ready(Bytes),
    Wait(usize),
    Fetch(usize),
}

impl SharedReads {
    /// `buffers` buffers of `block_bytes` each, fetched from `store` by block-aligned ranges.
    ///
    /// # Panics
    /// If `buffers` is not in 1..=2^20 or `block_bytes` not in 1..=2^30.
    pub fn new(store: Arc<dyn ExternalStore>, buffers: usize, block_bytes: u64) -> Self {
        assert!((1..=BUFFERS_MAX).contains(&buffers), "SharedReads: buffers = {buffers} is out of 1..=2^20");
        assert!(
            (1..=BLOCK_BYTES_MAX).contains(&block_bytes),
            "SharedReads: block_bytes = {block_bytes} is out of 1..=2^30"
        );
        let slots = (0..buffers).map(|_| Slot { state: State::Empty, block: None, pins: 0, last_used: 0 });
        let pool =
            Pool { slots: slots.collect(), index: HashMap::new(), clock: 0, stats: Default::default() };
        Self {
            store,
            block_bytes,
            busy_deadline: BUSY_DEADLINE_DEFAULT,
            pool: Mutex::new(pool),
            changed: Condvar::new(),
            handles: Mutex::new(Vec::new()),
        }
    }

    /// How long a reader waits for a buffer when every one is in use before it gets
    /// [`RemoteError::Busy`]. Default [`BUSY_DEADLINE_DEFAULT`] (1 s); any duration, zero refuses
    /// at once.
    #[must_use]
    pub fn with_busy_deadline(mut self, deadline: Duration) -> Self {
        self.busy_deadline = deadline;
        self
    }

    /// The bytes of `range` of object `key`, through the shared buffers.
    ///
    /// Cut at the object's end, like a handle's `get`; [`RemoteError::NotFound`] if there is no
    /// such object.
    pub fn read(&self, key: &str, range: Range<u64>) -> Result<Bytes, RemoteError> {
        check_get(key, &range)?;
        let first = range.start / self.block_bytes;
        if range.is_empty() {
            self.block(key, first)?;
            return Ok(Bytes::new());
        }
        let last = (range.end - 1) / self.block_bytes;
        if first == last {
            let block = self.block(key, first)?;
            return Ok(block.slice(self.within(&range, first, block.len())));
        }
        self.read_blocks(key, &range, first..=last)
    }

    /// What the pool has done so far and holds now.
    pub fn stats(&self) -> SharedReadStats {
        let pool = self.lock_pool();
        let resident = pool.slots.iter().filter(|slot| matches!(slot.state, State::Ready(_))).count();
        SharedReadStats { resident, ..pool.stats }
    }

    /// A read over several blocks, copied together; it stops at the object's end.
    fn read_blocks(
        &self,
        key: &str,
        range: &Range<u64>,
        blocks: std::ops::RangeInclusive<u64>,
    ) -> Result<Bytes, RemoteError> {
        let mut out = BytesMut::new();
        for number in blocks {
            let block = self.block(key, number)?;
            out.extend_from_slice(&block[self.within(range, number, block.len())]);
            if (block.len() as u64) < self.block_bytes {
                break;
            }
        }
        Ok(out.freeze())
    }

    /// The part of `range` inside block `number`, as indices into its `len` bytes.
    fn within(&self, range: &Range<u64>, number: u64, len: usize) -> Range<usize> {
        let base = number * self.block_bytes;
        let start = range.start.saturating_sub(base);
        cut_usize(&(start..range.end - base), len)
    }

    /// Block `number` of `key`: from the pool, from another reader's fetch, or fetched now.
    fn block(&self, key: &str, number: u64) -> Result<Bytes, RemoteError> {
        let id = BlockId { key: key.to_owned(), block: number };
        let deadline = Instant::now() + self.busy_deadline;
        let mut pool = self.lock_pool();
        loop {
            match pool.find(&id) {
                Some(Found::Ready(bytes)) => return Ok(bytes),
                Some(Found::Wait(slot)) => return self.wait_for(pool, slot),
                Some(Found::Fetch(slot)) => {
                    drop(pool);
                    return self.fetch_into(slot, &id);
                }
                None => {}
            }
            let now = Instant::now();
            if now >= deadline {
                pool.stats.busy += 1;
                return Err(RemoteError::Busy);
            }
            pool = self.changed.wait_timeout(pool, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// Waits for the fetch into `slot`, which this reader has pinned, and takes its outcome.
    fn wait_for(&self, mut pool: MutexGuard<'_, Pool>, slot: usize) -> Result<Bytes, RemoteError> {
        loop {
            let outcome = match &pool.slots[slot].state {
                State::Fetching => None,
                State::Ready(bytes) => Some(Ok(bytes.clone())),
                State::Failed(error) => Some(Err(error.clone())),
                State::Empty => unreachable!("a pinned buffer is never emptied"),
            };
            if let Some(outcome) = outcome {
                self.unpin(&mut pool, slot);
                return outcome;
            }
            pool = self.changed.wait(pool).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Fetches `id` into `slot`, which this reader has claimed, and hands the outcome to its waiters.
    fn fetch_into(&self, slot: usize, id: &BlockId) -> Result<Bytes, RemoteError> {
        let mut guard = FetchGuard { reads: self, slot, done: false };
        let outcome = self.fetch(id);
        guard.done = true;
        self.finish(slot, outcome.clone());
        outcome
    }

    /// One block-aligned get, through an idle handle or a new one.
    fn fetch(&self, id: &BlockId) -> Result<Bytes, RemoteError> {
        let idle = self.handles.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut handle = match idle {
            Some(handle) => handle,
            None => self.store.connect()?,
        };
        let start = id.block * self.block_bytes;
        let fetched = handle.get(&id.key, start..start.saturating_add(self.block_bytes));
        self.handles.lock().unwrap_or_else(|p| p.into_inner()).push(handle);
        fetched?.ok_or(RemoteError::NotFound)
    }

    /// Publishes a fetch's outcome in `slot`: a ready block, or an error for its waiters only.
    fn finish(&self, slot: usize, outcome: Result<Bytes, RemoteError>) {
        let mut pool = self.lock_pool();
        match outcome {
            Ok(bytes) => pool.slots[slot].state = State::Ready(bytes),
            Err(error) => {
                pool.stats.fetch_failures += 1;
                if let Some(block) = pool.slots[slot].block.take() {
                    pool.index.remove(&block);
                }
                pool.slots[slot].state = State::Failed(error);
            }
        }
        self.unpin(&mut pool, slot);
        self.changed.notify_all();
    }

    /// One reader stops using `slot`; the last one out of a failed fetch empties it.
    fn unpin(&self, pool: &mut Pool, slot: usize) {
        let buffer = &mut pool.slots[slot];
        buffer.pins -= 1;
        if buffer.pins == 0 {
            if matches!(buffer.state, State::Failed(_)) {
                buffer.state = State::Empty;
            }
            self.changed.notify_all();
        }
    }

    fn lock_pool(&self) -> MutexGuard<'_, Pool> {
        // Every change under the lock is complete before anything that could panic.
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Pool {
    /// The block in the pool, pinned if its fetch is on; or a claimed, pinned buffer to fetch it
    /// into; or None if every buffer is in use.
    fn find(&mut self, id: &BlockId) -> Option<Found> {
        self.clock += 1;
        if let Some(&slot) = self.index.get(id) {
            let buffer = &mut self.slots[slot];
            buffer.last_used = self.clock;
            if let State::Ready(bytes) = &buffer.state {
                self.stats.pool_hits += 1;
                return Some(Found::Ready(bytes.clone()));
            }
            buffer.pins += 1;
            self.stats.shared += 1;
            return Some(Found::Wait(slot));
        }
        let slot = self.victim()?;
        if let Some(old) = self.slots[slot].block.take() {
            self.index.remove(&old);
        }
        self.index.insert(id.clone(), slot);
        self.slots[slot] =
            Slot { state: State::Fetching, block: Some(id.clone()), pins: 1, last_used: self.clock };
        self.stats.fetches += 1;
        Some(Found::Fetch(slot))
    }

    /// A buffer no reader uses: an empty one, else the least recently used ready one.
    fn victim(&self) -> Option<usize> {
        let free = |slot: &Slot| slot.pins == 0 && matches!(slot.state, State::Empty | State::Ready(_));
        let candidates = self.slots.iter().enumerate().filter(|(_, slot)| free(slot));
        // Empty buffers sort first (false < true), then ready ones by age.
        let order = |slot: &Slot| (matches!(slot.state, State::Ready(_)), slot.last_used);
        candidates.min_by_key(|(_, slot)| order(slot)).map(|(i, _)| i)
    }
}

/// Fails a fetch whose fetcher unwound, so that its waiters do not wait forever.
struct FetchGuard<'a> {
    reads: &'a SharedReads,
    slot: usize,
    done: bool,
}

impl Drop for FetchGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.reads.finish(self.slot, Err(RemoteError::Other("the fetching reader panicked".into())));
        }
    }
}
