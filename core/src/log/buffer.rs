//! The write buffer's state word: how concurrent writers claim space in a log buffer with one
//! atomic operation each, and who hands the buffer to the I/O thread (after Plasma's `lss.go`).
//!
//! One 64-bit word holds the bytes claimed (low 40 bits), the writers still copying (next 16
//! bits) and a sealed bit (the top bit). A writer claims space by CAS (offset up, writers up), copies
//! its record in, and releases (writers down). A writer whose record does not fit seals the
//! buffer and claims what is left of it, to pad; a writer that wants its record durable now
//! (group commit) may seal it where it is. Whoever leaves a
//! sealed buffer with no writer inside — the sealer, or the last writer to release — is the one
//! that hands it to I/O: exactly one party, exactly once per seal. Only memory is involved here;
//! the runtime owns the bytes and the I/O.
//!
//! A claim never leaves a gap smaller than a frame header before the end of the buffer: whatever
//! is left when the buffer is sealed can always be filled with a pad frame. The word has no
//! cycle count: a writer delayed before its CAS may land in the buffer's next fill, so the runtime
//! maps an offset to a log address with the buffer's base address read after the claim, and
//! reopens a buffer only when it becomes the current one.
//!
//! Each fill may have its own capacity (at most the buffer's size): the runtime ends a fill at a
//! segment boundary so that no frame straddles two segment files.

use super::frame::HEADER_BYTES;
use crate::sync::{AtomicU64, Ordering};

const OFFSET_BITS: u32 = 40;
const OFFSET_MASK: u64 = (1 << OFFSET_BITS) - 1;
const WRITER: u64 = 1 << OFFSET_BITS;
const WRITERS_MASK: u64 = 0xFFFF << OFFSET_BITS;
const SEALED: u64 = 1 << 63;

/// Largest buffer the state word can describe.
pub const CAPACITY_MAX: u64 = OFFSET_MASK;

/// Most writers that can be copying into one buffer at once.
pub const WRITERS_MAX: u64 = 0xFFFF;

/// What [`BufferState::reserve`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reserve {
    /// The bytes at this offset of the buffer are the caller's to fill; call
    /// [`BufferState::release`] when done.
    At(u64),
    /// The record does not fit; the caller sealed the buffer at `filled` bytes. If `flush` is
    /// true, no writer is inside and the caller hands the buffer to I/O now; otherwise the last
    /// writer to release will. Either way the caller goes on to the next buffer.
    Sealed {
        /// Bytes claimed before the seal: what I/O must write.
        filled: u64,
        /// Whether the caller must hand the buffer to I/O.
        flush: bool,
    },
    /// The record does not fit; the caller sealed the buffer and claimed what was left of it
    /// (`len` bytes at offset `at`, at least a frame header's worth): it fills them with a pad
    /// frame and releases them like any claim (the last writer out hands the buffer to I/O),
    /// then goes on to the next buffer. Padding keeps the next fill starting where this one's
    /// capacity ends (a block boundary, when the runtime sizes fills that way).
    Tail {
        /// Offset of the claimed remainder.
        at: u64,
        /// Its length.
        len: u64,
    },
    /// Someone else sealed the buffer: go on to the next one.
    Closed,
}

/// The state word of one write buffer.
pub struct BufferState {
    word: AtomicU64,
    /// Capacity of the current fill; written only while the buffer is sealed and empty of
    /// writers, published by the swap in [`BufferState::reset`].
    capacity: AtomicU64,
}

impl BufferState {
    /// An empty, open buffer whose first fill holds `capacity` bytes (at most [`CAPACITY_MAX`]).
    pub fn new(capacity: u64) -> Self {
        assert!(capacity > 0 && capacity <= CAPACITY_MAX, "buffer capacity {capacity}");
        Self { word: AtomicU64::new(0), capacity: AtomicU64::new(capacity) }
    }

    /// An empty buffer, sealed: it takes no claims until [`BufferState::reset`] opens it.
    pub fn new_sealed(capacity: u64) -> Self {
        let state = Self::new(capacity);
        state.word.store(SEALED, Ordering::Relaxed);
        state
    }

    /// The capacity of the current fill in bytes.
    pub fn capacity(&self) -> u64 {
        self.capacity.load(Ordering::Acquire)
    }

    /// Claims `len` bytes, or seals the buffer if they do not fit in what is left of the fill.
    /// A claim larger than the fill's capacity seals it too: the caller must go to a fill that
    /// is large enough.
    pub fn reserve(&self, len: u64) -> Reserve {
        assert!(len > 0, "empty reservation");
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            if word & SEALED != 0 {
                return Reserve::Closed;
            }
            // Read after the word: a fill's capacity is published by the swap that opens it.
            let capacity = self.capacity.load(Ordering::Relaxed);
            let offset = word & OFFSET_MASK;
            let left = capacity - offset;
            // Fits, and leaves either nothing or room for a pad frame.
            let fits = len == left || len + HEADER_BYTES as u64 <= left;
            assert!((word & WRITERS_MASK) >> OFFSET_BITS < WRITERS_MAX, "too many writers in one buffer");
            let next = if fits {
                word + WRITER + len
            } else if left > 0 {
                (word + WRITER + left) | SEALED
            } else {
                word | SEALED
            };
            match self.word.compare_exchange_weak(word, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) if fits => return Reserve::At(offset),
                Ok(_) if left > 0 => return Reserve::Tail { at: offset, len: left },
                Ok(_) => return Reserve::Sealed { filled: offset, flush: word & WRITERS_MASK == 0 },
                Err(actual) => word = actual,
            }
        }
    }

    /// Ends a writer's copy. True if the caller is the last writer out of a sealed buffer: it
    /// hands the buffer (its [`BufferState::filled`] bytes) to I/O.
    #[must_use = "the last writer out of a sealed buffer must hand it to I/O"]
    pub fn release(&self) -> bool {
        let before = self.word.fetch_sub(WRITER, Ordering::AcqRel);
        assert!(before & WRITERS_MASK != 0, "release without a reservation");
        before & SEALED != 0 && before & WRITERS_MASK == WRITER
    }

    /// Seals the buffer where it is, for a writer that wants what is in it durable now. `None`
    /// if it was already sealed; otherwise the bytes to write and whether the caller hands the
    /// buffer to I/O (no writer inside) or the last writer to release will.
    pub fn seal(&self) -> Option<(u64, bool)> {
        let before = self.word.fetch_or(SEALED, Ordering::AcqRel);
        (before & SEALED == 0).then_some((before & OFFSET_MASK, before & WRITERS_MASK == 0))
    }

    /// Bytes claimed so far (all of them written once the buffer is sealed and empty of writers).
    pub fn filled(&self) -> u64 {
        self.word.load(Ordering::Acquire) & OFFSET_MASK
    }

    /// Reopens the buffer, empty, for a fill of `capacity` bytes, once I/O has written it. Only
    /// the party that makes it the current buffer may.
    pub fn reset(&self, capacity: u64) {
        assert!(capacity > 0 && capacity <= CAPACITY_MAX, "buffer capacity {capacity}");
        self.capacity.store(capacity, Ordering::Relaxed);
        let before = self.word.swap(0, Ordering::AcqRel);
        debug_assert!(before & SEALED != 0 && before & WRITERS_MASK == 0, "reset of a buffer in use");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_release_seal_hand_off() {
        let buf = BufferState::new(100);
        assert_eq!(buf.reserve(40), Reserve::At(0));
        // 40 more would fit but leave 20 bytes, too few for a pad frame.
        assert_eq!(buf.reserve(36), Reserve::At(40));
        // 10 would leave 14, too few for a pad frame: sealed, and the 24 left are the sealer's
        // to pad; three writers inside, so the last of them flushes.
        assert_eq!(buf.reserve(10), Reserve::Tail { at: 76, len: 24 });
        assert_eq!(buf.reserve(1), Reserve::Closed);
        assert!(!buf.release());
        assert!(!buf.release());
        assert!(buf.release(), "the last writer out of a sealed buffer flushes");
        assert_eq!(buf.filled(), 100);
        buf.reset(100);
        assert_eq!(buf.reserve(100), Reserve::At(0));
        assert!(!buf.release());
        // Sealed by the one who wants durability, with nobody inside: the sealer flushes.
        assert_eq!(buf.seal(), Some((100, true)));
        assert_eq!(buf.seal(), None);
        buf.reset(100);
        assert_eq!(buf.reserve(10), Reserve::At(0));
        assert_eq!(buf.seal(), Some((10, false)));
        assert!(buf.release());
        buf.reset(100);
        // Exactly filling the buffer, or leaving room for a pad frame, is fine.
        assert_eq!(buf.reserve(100 - HEADER_BYTES as u64), Reserve::At(0));
        assert_eq!(buf.reserve(HEADER_BYTES as u64), Reserve::At(100 - HEADER_BYTES as u64));
        assert!(!buf.release() && !buf.release());
        // A full buffer seals with nothing to pad.
        assert_eq!(buf.reserve(8), Reserve::Sealed { filled: 100, flush: true });
        // A fill of its own capacity; a claim larger than it pads the whole fill.
        buf.reset(48);
        assert_eq!(buf.reserve(49), Reserve::Tail { at: 0, len: 48 });
        assert!(buf.release());
        buf.reset(48);
        assert_eq!(buf.reserve(48), Reserve::At(0));
        assert!(!buf.release());
        let sealed = BufferState::new_sealed(64);
        assert_eq!(sealed.reserve(8), Reserve::Closed);
        sealed.reset(64);
        assert_eq!(sealed.reserve(8), Reserve::At(0));
        assert!(!sealed.release());
    }
}
