//! Relocated entries: the payload of a [`Kind::Relocated`](super::frame::Kind::Relocated)
//! record, which the cleaner writes at the tail of the log for entries still live at its head.
//!
//! ```text
//! entries: u32 key_len, key, u32 value_len, value   (repeated, at least one)
//! ```
//!
//! Each entry sets its key where the record lies in the log, as a put would: the cleaner holds
//! the write stripes of every key in a batch from its liveness check until the record is
//! appended, so no write of those keys falls between the check and the record.

use alloc::vec::Vec;

/// Bytes an entry adds to a batch beyond its key and value.
pub const ENTRY_OVERHEAD: usize = 8;

/// Builds one batch payload, entry by entry.
#[derive(Debug, Default)]
pub struct BatchWriter {
    payload: Vec<u8>,
    entries: u64,
}

impl BatchWriter {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an entry.
    pub fn push(&mut self, key: &[u8], value: &[u8]) {
        let len = |n: usize| u32::try_from(n).expect("entries are at most 4 GiB").to_le_bytes();
        self.payload.extend_from_slice(&len(key.len()));
        self.payload.extend_from_slice(key);
        self.payload.extend_from_slice(&len(value.len()));
        self.payload.extend_from_slice(value);
        self.entries += 1;
    }

    /// Entries pushed so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Bytes of the payload so far.
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

    /// Empties the batch, keeping its buffer.
    pub fn clear(&mut self) {
        self.truncate(Mark::default());
    }

    /// Where the batch ends now, to cut it back to later.
    pub fn mark(&self) -> Mark {
        Mark { len: self.payload.len(), entries: self.entries }
    }

    /// Drops the entries pushed after `mark` was taken.
    pub fn truncate(&mut self, mark: Mark) {
        self.payload.truncate(mark.len);
        self.entries = mark.entries;
    }
}

/// A point in a [`BatchWriter`] to cut it back to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mark {
    len: usize,
    entries: u64,
}

/// The entries of a batch payload, in order; `None` as the last item if the payload is
/// malformed (a length past its end, or no entry at all).
pub fn entries(payload: &[u8]) -> impl Iterator<Item = Option<(&[u8], &[u8])>> {
    let mut rest = Some(payload).filter(|p| !p.is_empty());
    let mut bad = payload.is_empty();
    core::iter::from_fn(move || {
        if core::mem::take(&mut bad) {
            return Some(None);
        }
        let bytes = rest?;
        let parsed = take_field(bytes).and_then(|(key, after)| {
            let (value, after) = take_field(after)?;
            Some((key, value, after))
        });
        match parsed {
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
        assert_eq!(batch.entries(), 3);
        assert_eq!(batch.len(), 3 * ENTRY_OVERHEAD + 1 + 1 + 9 + 3);
        let back: Vec<_> = entries(batch.payload()).collect();
        assert_eq!(back, pairs.iter().map(|&p| Some(p)).collect::<Vec<_>>());
        // Cut between entries, a payload holds the entries before the cut; cut inside one, it
        // reports damage as its last item.
        let boundaries = [10, 27];
        for cut in 1..batch.len() {
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
        let before = batch.payload().to_vec();
        let mark = batch.mark();
        batch.push(b"later", b"dropped");
        batch.truncate(mark);
        assert_eq!(batch.payload(), &before[..]);
        assert_eq!(batch.entries(), 3);
        batch.clear();
        assert!(batch.is_empty() && batch.payload().is_empty());
    }
}
