//! Transactions and reads: a [`Tx`] is a Helio snapshot plus the transaction's own pending
//! writes (an ordered overlay), committed as one `WriteBatch`; a [`View`] reads either a
//! transaction or, outside one, a fresh snapshot of the store.

use std::collections::btree_map;
use std::collections::BTreeMap;
use std::iter::Peekable;
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use gluesql_core::error::Result;
use helio::{Snapshot, Store, WriteBatch};

use crate::error::helio;

use crate::keys::prefix_end;

/// Pending writes of a transaction: `None` deletes the key.
pub(crate) type Overlay = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// A range of keys: its lower and upper bounds.
pub(crate) type KeyRange = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// The overlay of a read outside any transaction.
static NO_WRITES: Overlay = BTreeMap::new();

self_cell::self_cell!(
    /// A snapshot that owns (a reference count of) the store it reads.
    struct OwnedSnapshot {
        owner: Arc<Store>,
        #[covariant]
        dependent: Snapshot,
    }
);

/// An open transaction: what it reads (the snapshot taken at `BEGIN`) and what it wrote.
pub(crate) struct Tx {
    snapshot: OwnedSnapshot,
    writes: Overlay,
    /// Begun by GlueSQL around one statement (`true`) or by `BEGIN` (`false`).
    pub(crate) autocommit: bool,
}

impl Tx {
    /// Begins a transaction reading `store` as of now.
    pub(crate) fn begin(store: &Arc<Store>, autocommit: bool) -> Self {
        let snapshot = OwnedSnapshot::new(store.clone(), |store| store.snapshot());
        Self { snapshot, writes: Overlay::new(), autocommit }
    }

    /// Reads of this transaction: its snapshot under its own writes.
    pub(crate) fn view(&self) -> View<'_> {
        View { snapshot: Snap::Borrowed(self.snapshot.borrow_dependent()), writes: &self.writes }
    }

    /// Sets `key` to `value` when the transaction commits.
    pub(crate) fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes.insert(key, Some(value));
    }

    /// Removes `key` when the transaction commits.
    pub(crate) fn delete(&mut self, key: Vec<u8>) {
        self.writes.insert(key, None);
    }

    /// Applies every pending write as one atomic batch, with the store's durability.
    pub(crate) fn commit(self) -> Result<()> {
        if self.writes.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::new();
        for (key, value) in &self.writes {
            match value {
                Some(value) => batch.put(key, value),
                None => batch.delete(key),
            };
        }
        self.snapshot.borrow_owner().write(&batch).map_err(helio)
    }
}

/// The snapshot a view reads: a transaction's, or one of its own.
enum Snap<'a> {
    Borrowed(&'a Snapshot<'a>),
    Owned(Snapshot<'a>),
}

impl<'a> Snap<'a> {
    fn get(&self) -> &Snapshot<'a> {
        match self {
            Snap::Borrowed(snapshot) => snapshot,
            Snap::Owned(snapshot) => snapshot,
        }
    }
}

/// A consistent read of the store: a snapshot, under a transaction's pending writes if any.
pub(crate) struct View<'a> {
    snapshot: Snap<'a>,
    writes: &'a Overlay,
}

impl<'a> View<'a> {
    /// A read of `store` as of now, outside any transaction.
    pub(crate) fn of_store(store: &'a Store) -> Self {
        Self { snapshot: Snap::Owned(store.snapshot()), writes: &NO_WRITES }
    }

    /// The value of `key`.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        match self.writes.get(key) {
            Some(pending) => Ok(pending.as_deref().map(Bytes::copy_from_slice)),
            None => match self.snapshot.get().get(key) {
                Ok(found) => Ok(found.map(Bytes::from)),
                // No key over the limit can have been written: it is absent.
                Err(helio::Error::KeyTooLarge { .. }) => Ok(None),
                Err(e) => Err(helio(e)),
            },
        }
    }

    /// Every entry whose key starts with `prefix`, in key order.
    pub(crate) fn prefix(&self, prefix: &[u8]) -> Merged<'a> {
        let (lo, hi) = prefix_range(prefix);
        self.range(lo, hi)
    }

    /// Every entry with a key between `lo` and `hi`, in key order.
    pub(crate) fn range(&self, lo: Bound<Vec<u8>>, hi: Bound<Vec<u8>>) -> Merged<'a> {
        let empty = is_empty(&lo, &hi);
        let base = self.snapshot.get().range((lo.clone(), hi.clone()));
        let writes = if empty { NO_WRITES.range::<Vec<u8>, _>(..) } else { self.writes.range((lo, hi)) };
        Merged { base: base.peekable(), writes: writes.peekable(), empty }
    }
}

/// The keys that start with `prefix`.
pub(crate) fn prefix_range(prefix: &[u8]) -> KeyRange {
    (Bound::Included(prefix.to_vec()), prefix_end(prefix).map_or(Bound::Unbounded, Bound::Excluded))
}

/// Whether no key lies between `lo` and `hi` (`BTreeMap::range` panics on such bounds).
fn is_empty(lo: &Bound<Vec<u8>>, hi: &Bound<Vec<u8>>) -> bool {
    match (lo, hi) {
        (Bound::Included(l), Bound::Included(h)) => l > h,
        (Bound::Included(l), Bound::Excluded(h))
        | (Bound::Excluded(l), Bound::Included(h))
        | (Bound::Excluded(l), Bound::Excluded(h)) => l >= h,
        _ => false,
    }
}

/// A snapshot's entries merged with a transaction's pending writes, in key order: a pending
/// write replaces the snapshot's entry, a pending delete hides it.
pub(crate) struct Merged<'a> {
    base: Peekable<helio::Range<'a>>,
    writes: Peekable<btree_map::Range<'a, Vec<u8>, Option<Vec<u8>>>>,
    empty: bool,
}

impl Iterator for Merged<'_> {
    type Item = Result<(Bytes, Bytes)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.empty {
            return None;
        }
        loop {
            let base_first = match (self.base.peek(), self.writes.peek()) {
                (None, None) => return None,
                (Some(Err(_)), _) => return self.base.next().map(|e| e.map_err(helio)),
                (Some(Ok((key, _))), Some((pending, _))) => {
                    let order = key.as_ref().cmp(pending.as_slice());
                    if order.is_eq() {
                        self.base.next();
                    }
                    order.is_lt()
                }
                (Some(_), None) => true,
                (None, Some(_)) => false,
            };
            if base_first {
                return self.base.next().map(|e| e.map_err(helio));
            }
            if let Some((key, Some(value))) = self.writes.next() {
                return Some(Ok((Bytes::copy_from_slice(key), Bytes::copy_from_slice(value))));
            }
        }
    }
}
