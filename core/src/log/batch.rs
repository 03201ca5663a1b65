//! Records of several entries under one write number: the payload of a
//! [`Kind::Relocated`](super::frame::Kind::Relocated) record, which the cleaner writes at the
//! tail of the log for entries still live at its head, and of a
//! [`Kind::Batch`](super::frame::Kind::Batch) record, one shard's part of a user's atomic batch.
//!
//! ```text
//! u64 sn                                   the write number every entry carries
//! entries: u32 key_len, key, u32 value_len, value   (repeated, at least one)
//!          value_len u32::MAX: the entry removes its key (batches only), no value follows
//! ```
//!
//! Each entry sets (or removes) its key where the record lies in the log, as a put or delete
//! would. A batch's parts in every shard carry the same number, so recovery keeps all of them
//! or none (see [`super::cut`]). The cleaner holds the write stripes of every key in a
//! relocated record from its liveness check until the record is appended, and takes a number
//! of its own for it: the record says "at this point every one of these keys had this value",
//! true wherever a cut falls.

use alloc::vec::Vec;

/// Bytes an entry adds to a record beyond its key and value.
pub const ENTRY_OVERHEAD: usize = 8;

/// Bytes of the header (the write number) in front of the entries.
pub const HEADER_BYTES: usize = 8;

/// The value length that marks a removal.
const TOMBSTONE: u32 = u32::MAX;

/// Builds one record's payload, entry by entry.
#[derive(Debug)]
pub struct BatchWriter {
    payload: Vec<u8>,
    entries: u64,
}

impl Default for BatchWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchWriter {
    /// An empty record with write number 0.
    pub fn new() -> Self {
        let mut payload = Vec::new();
        payload.extend_from_slice(&0u64.to_le_bytes());
        Self { payload, entries: 0 }
    }

    /// Sets the write number the record carries.
    pub fn set_sn(&mut self, sn: u64) {
        self.payload[..HEADER_BYTES].copy_from_slice(&sn.to_le_bytes());
    }

    /// Adds an entry that sets `key` to `value`.
    pub fn push(&mut self, key: &[u8], value: &[u8]) {
        self.push_op(key, Some(value));
    }

    /// Adds an entry that sets `key` to `value`, or removes it for `None` (batches only: a
    /// relocated record holds no removals).
    pub fn push_op(&mut self, key: &[u8], value: Option<&[u8]>) {
        let len = |n: usize| {
            let n = u32::try_from(n).ok().filter(|&n| n != TOMBSTONE).expect("entries are under 4 GiB");
            n.to_le_bytes()
        };
        self.payload.extend_from_slice(&len(key.len()));
        self.payload.extend_from_slice(key);
        match value {
            Some(value) => {
                self.payload.extend_from_slice(&len(value.len()));
                self.payload.extend_from_slice(value);
            }
            None => self.payload.extend_from_slice(&TOMBSTONE.to_le_bytes()),
        }
        self.entries += 1;
    }

    /// Entries pushed so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Bytes of the payload so far, the header included.
    pub fn len(&self) -> usize {
        self.payload.len()
    }

    /// Whether no entry was pushed.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Empties the record (its number stays), keeping its buffer.
    pub fn clear(&mut self) {
        self.truncate(Mark { len: HEADER_BYTES, entries: 0 });
    }

    /// Where the record ends now, to cut it back to later.
    pub fn mark(&self) -> Mark {
        Mark { len: self.payload.len(), entries: self.entries }
    }

    /// Drops the entries pushed after `mark` was taken.
    pub fn truncate(&mut self, mark: Mark) {
        self.payload.truncate(mark.len.max(HEADER_BYTES));
        self.entries = mark.entries;
    }
}

/// A point in a [`BatchWriter`] to cut it back to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    len: usize,
    entries: u64,
}

/// The write number of a record's payload; `None` if it is too short to hold one.
pub fn sn(payload: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(payload.get(..HEADER_BYTES)?.try_into().ok()?))
}

/// The entries of a relocated record's payload, in order; `None` as the last item if the
/// payload is malformed (no header, a length past its end, a removal, or no entry at all).
pub fn entries(payload: &[u8]) -> impl Iterator<Item = Option<(&[u8], &[u8])>> {
    let mut ops = ops(payload);
    let mut done = false;
    core::iter::from_fn(move || {
        if done {
            return None;
        }
        match ops.next()? {
            Some((key, Some(value))) => Some(Some((key, value))),
            _ => {
                done = true;
                Some(None)
            }
        }
    })
}

/// The entries of a batch record's payload, in order (`None` values remove their key); `None`
/// as the last item if the payload is malformed (no header, a length past its end, or no entry
/// at all).
pub fn ops(payload: &[u8]) -> impl Iterator<Item = Option<(&[u8], Option<&[u8]>)>> {
    let body = payload.get(HEADER_BYTES..).filter(|b| !b.is_empty());
    let mut bad = body.is_none();
    let mut rest = body;
    core::iter::from_fn(move || {
        if core::mem::take(&mut bad) {
            return Some(None);
        }
        let bytes = rest?;
        match take_entry(bytes) {
            Some((key, value, after)) => {
                rest = Some(after).filter(|a| !a.is_empty());
                Some(Some((key, value)))
            }
            None => {
                rest = None;
                Some(None)
            }
        }
    })
}

/// An entry: its key, its value (`None` for a removal), and the bytes after it.
type Taken<'a> = (&'a [u8], Option<&'a [u8]>, &'a [u8]);

fn take_entry(bytes: &[u8]) -> Option<Taken<'_>> {
    let (key, after) = take_field(bytes)?;
    let len = u32::from_le_bytes(after.get(..4)?.try_into().ok()?);
    if len == TOMBSTONE {
        return Some((key, None, &after[4..]));
    }
    let (value, after) = take_field(after)?;
    Some((key, Some(value), after))
}

fn take_field(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let field = bytes.get(4..4usize.checked_add(len)?)?;
    Some((field, &bytes[4 + len..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn entries_come_back_in_order_and_damage_is_reported() {
        let mut batch = BatchWriter::new();
        let pairs: [(&[u8], &[u8]); 3] = [(b"a", b"1"), (b"", b"empty key"), (b"key", b"")];
        for (k, v) in pairs {
            batch.push(k, v);
        }
        batch.set_sn(42);
        assert_eq!(batch.entries(), 3);
        assert_eq!(sn(batch.payload()), Some(42));
        assert_eq!(batch.len(), HEADER_BYTES + 3 * ENTRY_OVERHEAD + 1 + 1 + 9 + 3);
        let back: Vec<_> = entries(batch.payload()).collect();
        assert_eq!(back, pairs.iter().map(|&p| Some(p)).collect::<Vec<_>>());
        // Cut between entries, a payload holds the entries before the cut; cut inside one, it
        // reports damage as its last item.
        let boundaries = [HEADER_BYTES + 10, HEADER_BYTES + 27];
        for cut in HEADER_BYTES + 1..batch.len() {
            let items: Vec<_> = entries(&batch.payload()[..cut]).collect();
            match boundaries.iter().position(|&b| b == cut) {
                Some(i) => assert_eq!(items, back[..=i], "cut at {cut}"),
                None => {
                    assert_eq!(items.last(), Some(&None), "cut at {cut}");
                    assert!(items[..items.len() - 1].iter().all(Option::is_some));
                }
            }
        }
        assert_eq!(entries(&[]).collect::<Vec<_>>(), vec![None]);
        assert_eq!(entries(&[0; HEADER_BYTES]).collect::<Vec<_>>(), vec![None]);
        let before = batch.payload().to_vec();
        let mark = batch.mark();
        batch.push(b"later", b"dropped");
        batch.truncate(mark);
        assert_eq!(batch.payload(), &before[..]);
        assert_eq!(batch.entries(), 3);
        batch.clear();
        assert!(batch.is_empty() && batch.payload() == 42u64.to_le_bytes());
    }

    #[test]
    fn batch_entries_carry_removals_and_relocated_ones_may_not() {
        let mut batch = BatchWriter::new();
        batch.set_sn(7);
        batch.push(b"a", b"1");
        batch.push_op(b"b", None);
        batch.push_op(b"c", Some(b""));
        let back: Vec<_> = ops(batch.payload()).collect();
        assert_eq!(
            back,
            vec![
                Some((&b"a"[..], Some(&b"1"[..]))),
                Some((&b"b"[..], None)),
                Some((&b"c"[..], Some(&b""[..])))
            ]
        );
        let relocated: Vec<_> = entries(batch.payload()).collect();
        assert_eq!(relocated, vec![Some((&b"a"[..], &b"1"[..])), None]);
    }
}
