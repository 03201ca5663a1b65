//! [`WriteBatch`]: puts and deletes that [`Store::write`](super::Store::write) applies all or
//! nothing, across shards, in memory and after any crash.
//!
//! How: the batch's keys are grouped by shard; the write stripes of every key are taken (shard
//! by shard, each shard's in ascending order, the order the cleaner takes them in too); one
//! write number is taken for the whole batch; each shard's part is appended to its log as one
//! `Batch` record carrying that number, then applied to its tree under it. A snapshot seals
//! numbers only once every write carrying them is in the tree, so it sees the whole batch or
//! none of it; recovery keeps a number on every shard or on none (see
//! `helio_core::log::cut`). A part that fails to append after another was appended poisons the
//! store's committer: no later commit can make half a batch recoverable.

use std::ops::Range;

use helio_core::log::batch::BatchWriter;
use helio_core::WriteTicket;

use super::{shard_index, Error, Store};
use crate::log::{Durability, IoFailure};

/// Puts and deletes to apply together, atomically (see [`Store::write`](super::Store::write)).
///
/// Within a batch a later operation on a key wins over an earlier one. Limits, checked by
/// `write` before anything is written: at most [`WriteBatch::MAX_OPS`] operations and
/// [`WriteBatch::MAX_BYTES`] bytes of keys and values, and each key and value within the
/// store's limits. A batch larger than a write buffer is fine: each shard's part is one log
/// record, cut into fragments as large records are.
#[derive(Clone, Debug, Default)]
pub struct WriteBatch {
    ops: Vec<(Range<usize>, Option<Range<usize>>)>,
    bytes: Vec<u8>,
}

impl WriteBatch {
    /// Most operations a batch may hold.
    pub const MAX_OPS: usize = 1 << 20;

    /// Most bytes of keys and values a batch may hold (64 MiB).
    pub const MAX_BYTES: usize = 64 << 20;

    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value` when the batch is written.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> &mut Self {
        let key = self.keep(key);
        let value = self.keep(value);
        self.ops.push((key, Some(value)));
        self
    }

    /// Removes `key` when the batch is written (a no-op if it is absent then).
    pub fn delete(&mut self, key: &[u8]) -> &mut Self {
        let key = self.keep(key);
        self.ops.push((key, None));
        self
    }

    /// Operations in the batch.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the batch holds no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Bytes of keys and values in the batch.
    pub fn bytes(&self) -> usize {
        self.bytes.len()
    }

    /// Empties the batch, keeping its memory for reuse.
    pub fn clear(&mut self) {
        self.ops.clear();
        self.bytes.clear();
    }

    /// The operations in order: each key with its value, `None` for a delete.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> + '_ {
        self.ops.iter().map(|(key, value)| (&self.bytes[key.clone()], value.clone().map(|v| &self.bytes[v])))
    }

    fn keep(&mut self, bytes: &[u8]) -> Range<usize> {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(bytes);
        start..self.bytes.len()
    }
}

/// [`Store::write_with`]: checks, then logs and applies every part under one ticket with the
/// stripes of every key held, then gives the batch its durability.
pub(super) fn write(store: &Store, batch: &WriteBatch, durability: Durability) -> Result<(), Error> {
    if batch.len() > WriteBatch::MAX_OPS || batch.bytes() > WriteBatch::MAX_BYTES {
        return Err(Error::BatchTooLarge {
            ops: batch.len(),
            bytes: batch.bytes(),
            max_ops: WriteBatch::MAX_OPS,
            max_bytes: WriteBatch::MAX_BYTES,
        });
    }
    let parts = parts(batch, |key| shard_index(key, store.shards.len()));
    for part in &parts {
        for &(key, value) in &part.ops {
            store.shards[part.shard].check_write(key, value)?;
        }
    }
    let Some(first) = parts.first() else { return Ok(()) };
    let (ends, sn, deferred) = {
        let _stripes: Vec<_> = parts
            .iter()
            .map(|part| store.shards[part.shard].lock_stripes(part.ops.iter().map(|&(key, _)| key)))
            .collect();
        let ticket = store.mvcc.begin_write(0);
        let ends = log_parts(store, &parts, &ticket)?;
        let guard = store.shards[first.shard].tree().pin();
        let mut deferred = Vec::new();
        for part in &parts {
            for &(key, value) in &part.ops {
                if store.shards[part.shard].apply(&ticket, key, value, &guard) {
                    deferred.push((part.shard, key));
                }
            }
        }
        (ends, ticket.sn(), deferred)
    };
    for (shard, key) in deferred {
        store.shards[shard].consolidate(key);
    }
    match durability {
        // One commit covers every part.
        Durability::Sync => store.shards[first.shard].settle(ends[0], sn, durability)?,
        _ => parts
            .iter()
            .zip(&ends)
            .try_for_each(|(part, &end)| store.shards[part.shard].settle(end, sn, durability))?,
    }
    for (part, end) in parts.iter().zip(ends) {
        store.shards[part.shard].slow_down_writer(end);
    }
    Ok(())
}

/// Appends every part, numbered by `ticket`; returns each part's log end. A part that fails
/// after another was appended poisons the committer: half a batch is never made recoverable.
fn log_parts(store: &Store, parts: &[Part<'_>], ticket: &WriteTicket<'_>) -> Result<Vec<u64>, Error> {
    let mut ends = Vec::with_capacity(parts.len());
    for part in parts {
        match store.shards[part.shard].log_batch(part.payload(ticket.sn()).payload()) {
            Ok(end) => ends.push(end),
            Err(e) => {
                if !ends.is_empty() {
                    store.committer.poison(IoFailure {
                        op: "write every part of a batch to",
                        path: store.dir.clone(),
                        source: std::io::Error::other(format!("shard {} failed: {e}", part.shard)),
                    });
                }
                return Err(e.into());
            }
        }
    }
    Ok(ends)
}

/// An operation: a key and its value, `None` for a delete.
pub(super) type Op<'b> = (&'b [u8], Option<&'b [u8]>);

/// One shard's part of a batch: the last operation of each of its keys, in key order.
pub(super) struct Part<'b> {
    pub shard: usize,
    pub ops: Vec<Op<'b>>,
}

impl Part<'_> {
    /// The part as a `Batch` record's payload, numbered `sn`.
    pub fn payload(&self, sn: u64) -> BatchWriter {
        let mut record = BatchWriter::new();
        record.set_sn(sn);
        for &(key, value) in &self.ops {
            record.push_op(key, value);
        }
        record
    }
}

/// Splits `batch` into parts by shard (ascending), keeping each key's last operation.
pub(super) fn parts(batch: &WriteBatch, shard_of: impl Fn(&[u8]) -> usize) -> Vec<Part<'_>> {
    let mut ops: Vec<(usize, usize, Op<'_>)> =
        batch.iter().enumerate().map(|(i, op)| (shard_of(op.0), i, op)).collect();
    // By shard, then key, then position: the last of each key's run is the one that wins.
    ops.sort_unstable_by(|a, b| (a.0, a.2 .0, a.1).cmp(&(b.0, b.2 .0, b.1)));
    let mut parts: Vec<Part<'_>> = Vec::new();
    for (at, &(shard, _, (key, value))) in ops.iter().enumerate() {
        if ops.get(at + 1).is_some_and(|next| next.0 == shard && next.2 .0 == key) {
            continue; // a later operation on the key wins
        }
        match parts.last_mut() {
            Some(part) if part.shard == shard => part.ops.push((key, value)),
            _ => parts.push(Part { shard, ops: vec![(key, value)] }),
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_keep_each_keys_last_operation_grouped_by_shard() {
        let mut batch = WriteBatch::new();
        batch.put(b"a", b"1").put(b"b", b"2").delete(b"a").put(b"c", b"3").put(b"b", b"4");
        assert_eq!((batch.len(), batch.bytes()), (5, 9));
        let shard_of = |key: &[u8]| usize::from(key[0] == b'b');
        let parts = parts(&batch, shard_of);
        let got: Vec<(usize, Vec<Op<'_>>)> = parts.iter().map(|p| (p.shard, p.ops.clone())).collect();
        let want: Vec<(usize, Vec<Op<'_>>)> =
            vec![(0, vec![(b"a", None), (b"c", Some(b"3"))]), (1, vec![(b"b", Some(b"4"))])];
        assert_eq!(got, want);
        batch.clear();
        assert!(batch.is_empty() && batch.bytes() == 0);
    }
}
