//! Page records and the page table: the payload of a [`Kind::PageImage`] or
//! [`Kind::PageDelta`] record, which holds one page of the tree as a snapshot saw it, and the
//! map from key ranges to the chains of such records that recovery folds them into, with the
//! file it is kept in.
//!
//! A page covers the keys `[low, high)` (no `high`: unbounded; the leftmost page's low key is
//! empty). An **image** holds every version of the page; a **delta** only the versions changed
//! since the page's previous record, whose log address (`prev`) it names. A page's chain on
//! disk runs from its newest record back through its deltas to an image. Each record carries
//! the snapshot number `sn` it was captured at: it holds the page as snapshot `sn` saw it.
//!
//! ```text
//! u64 sn | u64 prev (u64::MAX: none, an image) | u32 low_len | low
//!        | u32 high_len (u32::MAX: none, unbounded) | high | u32 count
//!        | u32 blocks | blocks × (u32 end | u32 crc32c | u32 first_len | first key)
//!        | u32 crc32c of every byte before it                       (the record's front)
//! count × (u64 sn | u32 key_len | u32 value_len (u32::MAX: a tombstone, no value) | key | value)
//! ```
//!
//! Entries come sorted by key, a key's versions newest first, every key within `[low, high)`.
//! They are cut into **blocks** of about [`BLOCK_BYTES`], each holding whole keys (all of a
//! key's versions); the front indexes them: where each ends (from the start of the entries),
//! its checksum, and its first key. So a point read of a swapped-out page reads the record's
//! front and the one block that can hold its key ([`PageFront`], [`block_entries`]), not the
//! whole record: each part it reads is checked by its own checksum, since the frame's covers
//! only the whole record.
//!
//! Recovery folds the page records it reads, in log order, into a [`PageTable`]: which stretch
//! of the key space the newest record of which chain holds. An image takes its range from
//! whatever held it before; a delta extends the chain holding its low key. The table is kept in
//! a file of its own, with the log address from which recovery must scan to bring it up to date:
//!
//! ```text
//! "HELIOPGT" | u32 version (1) | u64 position | u64 folded | u32 count
//! count × (u32 lo_len | lo | u32 hi_len (u32::MAX: none) | hi | u64 sn | u32 segments
//!          | u32 items | segments × (u64 addr | u32 bytes), newest first)
//! u64 commit sn | u32 shards | shards × u64 end      (a complete commit: see [`TableMark`])
//! u32 crc32c of everything before it
//! ```

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::ops::{Bound, Range};

use super::crc32c_of;
use super::cut::Commit;
use super::frame::Kind;

/// The `prev` of a record that has none (an image).
pub const NO_PREV: u64 = u64::MAX;

/// Bytes an entry adds to a record beyond its key and value.
pub const ENTRY_OVERHEAD: usize = 16;

/// A block of a record's entries closes before an entry that would take it past this many
/// bytes (a key's versions stay together, so a block can be longer): about what a point read
/// of a swapped-out page reads besides the record's front.
pub const BLOCK_BYTES: usize = 2048;

/// The length that marks a missing high key, or a tombstone's missing value.
const NONE_LEN: u32 = u32::MAX;

/// The first bytes of a page table file.
const TABLE_MAGIC: &[u8; 8] = b"HELIOPGT";

/// The version of the page table file this code writes and reads.
const TABLE_VERSION: u32 = 1;

/// A length field for `n` bytes.
fn len_field(n: usize) -> [u8; 4] {
    let n = u32::try_from(n).ok().filter(|&n| n != NONE_LEN).expect("keys and values are under 4 GiB");
    n.to_le_bytes()
}

/// Appends `bytes` with its length in front.
fn put_field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&len_field(bytes.len()));
    out.extend_from_slice(bytes);
}

/// Appends `bytes` with its length in front, or the length that marks none.
fn put_optional(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(bytes) => put_field(out, bytes),
        None => out.extend_from_slice(&NONE_LEN.to_le_bytes()),
    }
}

/// Whether `key` lies in `[low, high)`.
fn within(key: &[u8], low: &[u8], high: Option<&[u8]>) -> bool {
    low <= key && high.is_none_or(|high| key < high)
}

/// Builds one page record's payload.
#[derive(Debug, Default)]
pub struct PageWriter {
    /// `sn`, `prev`, low and high key: the front up to the count.
    head: Vec<u8>,
    /// The entries.
    body: Vec<u8>,
    /// Where each block starts in `body`, and where its first key lies there.
    blocks: Vec<(usize, Range<usize>)>,
    entries: u32,
    started: bool,
    /// Where the page's low key and its high key lie in `head`, and the last key pushed in
    /// `body`, to check the order of the entries.
    low: Range<usize>,
    high: Option<Range<usize>>,
    last: Option<Range<usize>>,
    /// The payload as [`PageWriter::payload`] last assembled it.
    payload: Vec<u8>,
    /// `payload` holds every version pushed (nothing was started or pushed since).
    assembled: bool,
}

impl PageWriter {
    /// A writer with no record started.
    pub fn new() -> Self {
        Self::default()
    }

    /// Clears and starts a record of the page `[low, high)` as snapshot `sn` saw it: an image
    /// for `prev` `None`, else a delta on the record at log address `prev`.
    pub fn start(&mut self, sn: u64, prev: Option<u64>, low: &[u8], high: Option<&[u8]>) {
        debug_assert!(high.is_none_or(|high| low < high), "a page of an empty range");
        debug_assert_ne!(prev, Some(NO_PREV), "a previous record at the last log address");
        self.head.clear();
        self.head.extend_from_slice(&sn.to_le_bytes());
        self.head.extend_from_slice(&prev.unwrap_or(NO_PREV).to_le_bytes());
        put_field(&mut self.head, low);
        self.low = self.head.len() - low.len()..self.head.len();
        put_optional(&mut self.head, high);
        self.high = high.map(|high| self.head.len() - high.len()..self.head.len());
        self.body.clear();
        self.blocks.clear();
        self.entries = 0;
        self.started = true;
        self.last = None;
        self.assembled = false;
    }

    /// Appends one version (entries must come sorted by key, a key's versions newest first):
    /// `key` set to `value` at snapshot number `sn`, or removed for `None`.
    pub fn push(&mut self, key: &[u8], value: Option<&[u8]>, sn: u64) {
        assert!(self.started, "a version pushed before the record was started");
        debug_assert!(self.in_order(key), "a version out of order or outside the page");
        let bytes = ENTRY_OVERHEAD + key.len() + value.map_or(0, <[u8]>::len);
        let new_key = self.last.as_ref().is_none_or(|last| &self.body[last.clone()] != key);
        let full = self.blocks.last().is_none_or(|(start, _)| self.body.len() - start + bytes > BLOCK_BYTES);
        let at = self.body.len() + ENTRY_OVERHEAD;
        if new_key && full {
            self.blocks.push((self.body.len(), at..at + key.len()));
        }
        self.body.extend_from_slice(&sn.to_le_bytes());
        self.body.extend_from_slice(&len_field(key.len()));
        self.body.extend_from_slice(&value.map_or(NONE_LEN.to_le_bytes(), |v| len_field(v.len())));
        self.body.extend_from_slice(key);
        self.body.extend_from_slice(value.unwrap_or_default());
        self.last = Some(at..at + key.len());
        self.assembled = false;
        self.entries = self.entries.checked_add(1).expect("a page of fewer than 4 G versions");
    }

    /// Whether `key` may follow the versions pushed so far: not before the last, in the page.
    fn in_order(&self, key: &[u8]) -> bool {
        self.last.as_ref().is_none_or(|last| &self.body[last.clone()] <= key)
            && within(key, &self.head[self.low.clone()], self.high.as_ref().map(|h| &self.head[h.clone()]))
    }

    /// Versions pushed since the record was started.
    pub fn entries(&self) -> u32 {
        self.entries
    }

    /// The payload of the record so far, its front (count and block index) assembled; empty
    /// before the first [`PageWriter::start`]. Assembled once, however often it is asked for.
    pub fn payload(&mut self) -> &[u8] {
        if self.assembled {
            return &self.payload;
        }
        self.assembled = true;
        self.payload.clear();
        if !self.started {
            return &self.payload;
        }
        let out = &mut self.payload;
        out.extend_from_slice(&self.head);
        out.extend_from_slice(&self.entries.to_le_bytes());
        out.extend_from_slice(&len_field(self.blocks.len()));
        for (i, (start, first)) in self.blocks.iter().enumerate() {
            let end = self.blocks.get(i + 1).map_or(self.body.len(), |(next, _)| *next);
            out.extend_from_slice(&len_field(end));
            out.extend_from_slice(&crc32c_of(&self.body[*start..end]).to_le_bytes());
            put_field(out, &self.body[first.clone()]);
        }
        let crc = crc32c_of(out);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&self.body);
        &self.payload
    }
}

/// One version in a page record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageEntry<'a> {
    /// Its key.
    pub key: &'a [u8],
    /// Its value; `None` for a tombstone (the key removed).
    pub value: Option<&'a [u8]>,
    /// The snapshot number it was written at.
    pub sn: u64,
}

/// Reads little-endian fields from the front of a byte string; every read is `None` past the
/// end.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let field = self.bytes.get(..n)?;
        self.bytes = &self.bytes[n..];
        Some(field)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    /// A length that is not the one that marks none.
    fn length(&mut self) -> Option<usize> {
        Some(self.u32().filter(|&n| n != NONE_LEN)? as usize)
    }

    /// A byte string with its length in front.
    fn field(&mut self) -> Option<&'a [u8]> {
        let len = self.length()?;
        self.take(len)
    }

    /// A byte string with its length in front, or none.
    fn optional(&mut self) -> Option<Option<&'a [u8]>> {
        match self.u32()? {
            NONE_LEN => Some(None),
            len => self.take(len as usize).map(Some),
        }
    }

    /// One version of a page record.
    fn entry(&mut self) -> Option<PageEntry<'a>> {
        let sn = self.u64()?;
        let key_len = self.length()?;
        let value_len = self.u32()?;
        let key = self.take(key_len)?;
        let value = match value_len {
            NONE_LEN => None,
            len => Some(self.take(len as usize)?),
        };
        Some(PageEntry { key, value, sn })
    }
}

/// One block of a record's entries, as its front indexes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockRef<'a> {
    /// Where it lies in the record's payload.
    pub start: usize,
    /// Where it ends there.
    pub end: usize,
    /// The checksum of its bytes.
    pub crc: u32,
    /// Its first key.
    pub first: &'a [u8],
}

/// The front of a page record: its fields and its block index, decoded from the first bytes of
/// its payload and checked by the front's checksum. What a point read needs to find the one
/// block that can hold its key.
#[derive(Clone, Copy, Debug)]
pub struct PageFront<'a> {
    /// The snapshot number it was captured at.
    pub sn: u64,
    /// The log address of the page's previous record; `None` for an image.
    pub prev: Option<u64>,
    /// The page's low key (inclusive).
    pub low: &'a [u8],
    /// The page's high key (exclusive); `None`: unbounded.
    pub high: Option<&'a [u8]>,
    /// Versions the record holds.
    pub count: u32,
    /// Blocks the entries are cut into.
    blocks: u32,
    /// The block index (`blocks` entries).
    index: &'a [u8],
    /// Where the entries start in the payload (the front's length).
    entries_at: usize,
}

/// Why [`PageFront::decode`] could not decode a front.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrontError {
    /// The bytes end inside the front: read more of the payload.
    Short,
    /// Not the front of a page record (or damaged).
    Corrupt,
}

impl<'a> PageFront<'a> {
    /// Decodes the front from `prefix`, the first bytes of a payload (the whole payload will
    /// do). `Short` if the front runs past `prefix`; `Corrupt` if it does not parse, its
    /// checksum is wrong, or its index is out of order (ends not rising, first keys not rising
    /// or outside the page, blocks but no versions or the other way round).
    pub fn decode(prefix: &'a [u8]) -> Result<Self, FrontError> {
        let mut reader = Reader { bytes: prefix };
        let front = (|| {
            let sn = reader.u64()?;
            let prev = Some(reader.u64()?).filter(|&prev| prev != NO_PREV);
            let low = reader.field()?;
            let high = reader.optional()?;
            let count = reader.u32()?;
            let blocks = reader.u32()?;
            let index = reader.bytes;
            for _ in 0..blocks {
                reader.take(8)?;
                reader.field()?;
            }
            let index = &index[..index.len() - reader.bytes.len()];
            Some((sn, prev, low, high, count, blocks, index))
        })();
        let Some((sn, prev, low, high, count, blocks, index)) = front else {
            // A field cut by the end of the prefix: the front may go on past it (a length that
            // cannot be one is caught once the prefix is long enough to hold it).
            return Err(FrontError::Short);
        };
        let crc_at = prefix.len() - reader.bytes.len();
        let crc = reader.u32().ok_or(FrontError::Short)?;
        if crc != crc32c_of(&prefix[..crc_at]) {
            return Err(FrontError::Corrupt);
        }
        let front = Self { sn, prev, low, high, count, blocks, index, entries_at: crc_at + 4 };
        front.index_is_in_order().then_some(front).ok_or(FrontError::Corrupt)
    }

    /// Whether the page's range is not empty, blocks and versions come together, block ends
    /// rise, and first keys rise within the page's range.
    fn index_is_in_order(&self) -> bool {
        if self.high.is_some_and(|high| high <= self.low) || (self.blocks == 0) != (self.count == 0) {
            return false;
        }
        let mut last: Option<BlockRef<'_>> = None;
        for block in self.blocks() {
            let rises = last.is_none_or(|last| last.end < block.end && last.first < block.first);
            if !rises || block.start >= block.end || !within(block.first, self.low, self.high) {
                return false;
            }
            last = Some(block);
        }
        true
    }

    /// The blocks, in key order (as stored: [`PageFront::decode`] checked the order).
    pub fn blocks(&self) -> impl Iterator<Item = BlockRef<'a>> + 'a {
        let mut reader = Reader { bytes: self.index };
        let (mut start, entries_at) = (self.entries_at, self.entries_at);
        core::iter::from_fn(move || {
            let end = entries_at + reader.u32()? as usize;
            let crc = reader.u32()?;
            let first = reader.field()?;
            let block = BlockRef { start, end, crc, first };
            start = end;
            Some(block)
        })
    }

    /// The block that holds `key`'s versions if the record has any: the last whose first key
    /// is at or below it. `None`: the record holds no version of it.
    pub fn block_of(&self, key: &[u8]) -> Option<BlockRef<'a>> {
        self.blocks().take_while(|b| b.first <= key).last()
    }

    /// Where the entries start in the payload: the front's length.
    pub fn len(&self) -> usize {
        self.entries_at
    }

    /// Whether the front is empty (never: it has at least its fixed fields).
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// The entries of a block read on its own (`block`: its bytes, `crc`: its checksum in the
/// front), checked: `None` unless the checksum matches and the bytes are whole entries, in key
/// order, starting with the block's `first` key.
pub fn block_entries<'a>(
    block: &'a [u8],
    crc: u32,
    first: &[u8],
) -> Option<impl Iterator<Item = PageEntry<'a>> + 'a> {
    if crc32c_of(block) != crc {
        return None;
    }
    let mut reader = Reader { bytes: block };
    let mut last = first;
    let mut count = 0usize;
    while !reader.bytes.is_empty() {
        let entry = reader.entry()?;
        if (count == 0 && entry.key != first) || entry.key < last {
            return None;
        }
        last = entry.key;
        count += 1;
    }
    let mut reader = Reader { bytes: block };
    Some(core::iter::from_fn(move || reader.entry()))
}

/// A decoded page record.
#[derive(Clone, Copy, Debug)]
pub struct PageRecord<'a> {
    /// The snapshot number it was captured at.
    pub sn: u64,
    /// The log address of the page's previous record; `None` for an image.
    pub prev: Option<u64>,
    /// The page's low key (inclusive).
    pub low: &'a [u8],
    /// The page's high key (exclusive); `None`: unbounded.
    pub high: Option<&'a [u8]>,
    /// Versions it holds.
    pub count: u32,
    /// The entries, checked by `decode`.
    body: &'a [u8],
    /// The whole payload's length.
    bytes: u32,
}

impl<'a> PageRecord<'a> {
    /// None unless the whole payload parses: the front (see [`PageFront::decode`]), then every
    /// entry complete, no trailing bytes, keys in non-decreasing order, every key within
    /// [low, high), `count` of them, cut into the blocks the front names (each starting with
    /// its first key, a key's versions in one block, its checksum right).
    pub fn decode(payload: &'a [u8]) -> Option<Self> {
        let front = PageFront::decode(payload).ok()?;
        let (low, high) = (front.low, front.high);
        let body = &payload[front.entries_at..];
        let mut blocks = front.blocks().peekable();
        let mut reader = Reader { bytes: body };
        let mut last: Option<&[u8]> = None;
        for _ in 0..front.count {
            let at = front.entries_at + body.len() - reader.bytes.len();
            let entry = reader.entry()?;
            if let Some(block) = blocks.next_if(|b| b.start == at) {
                let fits =
                    block.end <= payload.len() && crc32c_of(&payload[block.start..block.end]) == block.crc;
                if entry.key != block.first || last.is_some_and(|last| last >= entry.key) || !fits {
                    return None;
                }
            } else if at == front.entries_at || last.is_some_and(|last| last > entry.key) {
                return None;
            }
            if !within(entry.key, low, high) {
                return None;
            }
            last = Some(entry.key);
        }
        let bytes = u32::try_from(payload.len()).ok()?;
        let every_block =
            blocks.next().is_none() && front.blocks().last().is_none_or(|b| b.end == payload.len());
        (reader.bytes.is_empty() && every_block).then_some(Self {
            sn: front.sn,
            prev: front.prev,
            low,
            high,
            count: front.count,
            body,
            bytes,
        })
    }

    /// Its entries (decode validated them, so this cannot fail).
    pub fn entries(&self) -> impl Iterator<Item = PageEntry<'a>> + 'a {
        let mut reader = Reader { bytes: self.body };
        core::iter::from_fn(move || reader.entry())
    }
}

/// One page record of a chain: where it is in the log and how long its payload is (what it
/// keeps alive there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    /// The record's log address.
    pub addr: u64,
    /// Its payload's bytes.
    pub bytes: u32,
}

/// One stretch of the key space and the page records that hold it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableEntry {
    /// The stretch's low key (inclusive; empty: from the start of the key space).
    pub lo: Box<[u8]>,
    /// The stretch's high key (exclusive); `None`: to the end of the key space.
    pub hi: Option<Box<[u8]>>,
    /// LSN of the newest record of the chain.
    pub addr: u64,
    /// The newest record's snapshot number.
    pub sn: u64,
    /// Records in the chain (1 after an image).
    pub segments: u32,
    /// Entries, counted as the records' entry counts add up (an estimate after deltas).
    pub items: u32,
    /// The chain's records, newest first: `addr`, then the older ones down to the image
    /// (`segments` of them).
    pub chain: Vec<Link>,
}

impl TableEntry {
    /// Whether its stretch holds `key`.
    fn holds(&self, key: &[u8]) -> bool {
        within(key, &self.lo, self.hi.as_deref())
    }
}

/// Why a record cannot be folded into a page table, or a table file not read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableError {
    /// A delta whose prev is not the newest record of the stretch holding its low key.
    Orphan {
        /// The delta's log address.
        lsn: u64,
    },
    /// A record of another kind, or an image with a prev / a delta without one (or an image
    /// whose range is empty, which only a record changed after decoding can have).
    WrongKind {
        /// The record's log address.
        lsn: u64,
    },
    /// The table file does not parse or its checksum is wrong.
    Corrupt,
}

impl core::fmt::Display for TableError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Orphan { lsn } => {
                write!(f, "the page delta at log address {lsn} does not follow the newest record of its page")
            }
            Self::WrongKind { lsn } => {
                write!(f, "the record at log address {lsn} is not a well-formed page record")
            }
            Self::Corrupt => write!(f, "the page table file is damaged (checksum or layout)"),
        }
    }
}

/// The page table: which stretches of the key space which chains of page records hold (see the
/// module doc). Stretches never overlap; the key space between them is held by no record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageTable {
    /// The entries by their low key.
    map: BTreeMap<Box<[u8]>, TableEntry>,
    /// Past the address of every record folded: a record below it is in the table already
    /// (folding it again is a no-op), so a table read back from its file can be given the
    /// log from any earlier place.
    folded: u64,
}

/// What a table file says besides the table: where recovery starts reading the log, and what
/// it may take for granted about the log before that place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableMark {
    /// The log address from which recovery must scan (where the last complete flush round
    /// began: every op record before it is in a page record).
    pub position: u64,
    /// A commit that was complete (every shard durable to its ends) when the file was written,
    /// numbered at or above every write and every commit in the log before `position`:
    /// recovery's first pass takes it in place of the commits it does not read there.
    /// `sn` 0 and no ends: none.
    pub commit: Commit,
}

impl TableMark {
    /// A mark at `position` with no commit.
    pub fn at(position: u64) -> Self {
        Self { position, commit: Commit::default() }
    }
}

/// A tile of [`PageTable::tiles`]: a stretch's low and high key, and its entry (`None` for a
/// gap).
pub type Tile<'a> = (&'a [u8], Option<&'a [u8]>, Option<&'a TableEntry>);

impl PageTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds the record at `lsn`. Image [low, high): carves its range out of every entry it
    /// overlaps (an entry partly outside keeps the parts outside, each part keeping the
    /// entry's addr/sn/segments/items — so one entry may become two, left and right of the
    /// image), then inserts {lo: low, hi: high, addr: lsn, sn, segments: 1, items: count}.
    /// Delta: the entry whose range contains the delta's low key must have addr == prev, else
    /// Err(Orphan); the part of it within the delta's `[low, high)` then gets addr = lsn,
    /// sn = rec.sn, segments += 1, items saturating += count, and the parts outside keep what
    /// they had (a page split off since holds its keys in the same records, as of the older
    /// snapshot, until its own image).
    ///
    /// On an error the table is left as it was.
    pub fn fold(&mut self, lsn: u64, kind: Kind, record: &PageRecord<'_>) -> Result<(), TableError> {
        if lsn < self.folded {
            return Ok(());
        }
        let wrong = TableError::WrongKind { lsn };
        match (kind, record.prev) {
            (Kind::PageImage, None) if record.high.is_none_or(|high| record.low < high) => {
                self.fold_image(lsn, record);
            }
            (Kind::PageDelta, Some(prev)) => self.fold_delta(lsn, prev, record)?,
            _ => return Err(wrong),
        }
        self.folded = lsn + 1;
        Ok(())
    }

    /// Past the address of the last record folded (0 for none).
    pub fn folded(&self) -> u64 {
        self.folded
    }

    fn fold_image(&mut self, lsn: u64, record: &PageRecord<'_>) {
        self.carve(record.low, record.high);
        let entry = TableEntry {
            lo: record.low.into(),
            hi: record.high.map(Into::into),
            addr: lsn,
            sn: record.sn,
            segments: 1,
            items: record.count,
            chain: alloc::vec![Link { addr: lsn, bytes: record.bytes }],
        };
        self.map.insert(entry.lo.clone(), entry);
    }

    fn fold_delta(&mut self, lsn: u64, prev: u64, record: &PageRecord<'_>) -> Result<(), TableError> {
        let lo = self
            .map
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(record.low)))
            .next_back()
            .map(|(_, entry)| entry)
            .filter(|entry| entry.holds(record.low) && entry.addr == prev)
            .map(|entry| entry.lo.clone())
            .ok_or(TableError::Orphan { lsn })?;
        let mut entry = self.map.remove(&lo).expect("found above");
        // The delta speaks for its page's keys only: the parts of the stretch outside them (a
        // page split off since, whose own image is still to come) keep what they had.
        if *entry.lo < *record.low {
            let left = TableEntry { hi: Some(record.low.into()), ..entry.clone() };
            self.map.insert(left.lo.clone(), left);
            entry.lo = record.low.into();
        }
        if let Some(high) = record.high.filter(|&h| entry.hi.as_deref().is_none_or(|hi| h < hi)) {
            let right = TableEntry { lo: high.into(), ..entry.clone() };
            self.map.insert(right.lo.clone(), right);
            entry.hi = Some(high.into());
        }
        entry.addr = lsn;
        entry.chain.insert(0, Link { addr: lsn, bytes: record.bytes });
        entry.sn = record.sn;
        entry.segments = entry.segments.saturating_add(1);
        entry.items = entry.items.saturating_add(record.count);
        self.map.insert(entry.lo.clone(), entry);
        Ok(())
    }

    /// Takes `[low, high)` (not empty) out of every entry: the parts of an entry outside it
    /// stay, as entries of their own.
    fn carve(&mut self, low: &[u8], high: Option<&[u8]>) {
        let before = self
            .map
            .range::<[u8], _>((Bound::Unbounded, Bound::Excluded(low)))
            .next_back()
            .filter(|(_, entry)| entry.hi.as_deref().is_none_or(|hi| low < hi))
            .map(|(lo, _)| lo.clone());
        let inside = self
            .map
            .range::<[u8], _>((Bound::Included(low), Bound::Unbounded))
            .take_while(|(lo, _)| high.is_none_or(|high| &lo[..] < high))
            .map(|(lo, _)| lo.clone());
        let hit: Vec<Box<[u8]>> = before.into_iter().chain(inside).collect();
        for lo in hit {
            let Some(entry) = self.map.remove(&lo) else { continue };
            if *entry.lo < *low {
                let left = TableEntry { hi: Some(low.into()), ..entry.clone() };
                self.map.insert(left.lo.clone(), left);
            }
            if let Some(high) = high.filter(|&high| entry.hi.as_deref().is_none_or(|hi| high < hi)) {
                self.map.insert(high.into(), TableEntry { lo: high.into(), ..entry });
            }
        }
    }

    /// Entries in key order.
    pub fn entries(&self) -> impl Iterator<Item = &TableEntry> + '_ {
        self.map.values()
    }

    /// The entry whose range holds `key`.
    pub fn covering(&self, key: &[u8]) -> Option<&TableEntry> {
        self.map
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()
            .map(|(_, entry)| entry)
            .filter(|entry| entry.holds(key))
    }

    /// Payload bytes of the records the table names, each counted once (one record may hold
    /// keys of several stretches): what the log must keep of them. A walk over the entries.
    pub fn live_bytes(&self) -> u64 {
        let mut seen = hashbrown::HashSet::with_capacity(self.map.len());
        let links = self.map.values().flat_map(|e| e.chain.iter());
        links.filter(|link| seen.insert(link.addr)).map(|link| u64::from(link.bytes)).sum()
    }

    /// The addresses of the records the table names, in no order (a record may be named by
    /// several stretches).
    pub fn addrs(&self) -> impl Iterator<Item = u64> + '_ {
        self.map.values().flat_map(|e| e.chain.iter().map(|link| link.addr))
    }

    /// Entries in the table.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the table has no entry.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The whole key space in order as (lo, hi, Option<&TableEntry>): entries, and the gaps
    /// between them (None) — the first tile starts at the empty key, the last has hi None. An
    /// empty table is one gap tile.
    pub fn tiles(&self) -> impl Iterator<Item = Tile<'_>> + '_ {
        let mut next: Option<&[u8]> = Some(&[]);
        let mut entries = self.map.values().peekable();
        core::iter::from_fn(move || {
            let start = next?;
            if let Some(entry) = entries.next_if(|entry| *entry.lo == *start) {
                next = entry.hi.as_deref();
                return Some((&entry.lo[..], entry.hi.as_deref(), Some(entry)));
            }
            next = entries.peek().map(|entry| &entry.lo[..]);
            Some((start, next, None))
        })
    }

    /// Inserts an entry as-is (used when the runtime writes its own in-memory table): entries
    /// must not overlap; panics in debug if they do.
    pub fn insert(&mut self, entry: TableEntry) {
        debug_assert!(entry.hi.as_deref().is_none_or(|hi| *entry.lo < *hi), "an entry of an empty range");
        debug_assert!(!self.overlaps(&entry.lo, entry.hi.as_deref()), "an entry overlapping another");
        self.map.insert(entry.lo.clone(), entry);
    }

    /// Whether some entry holds a key of `[lo, hi)`.
    fn overlaps(&self, lo: &[u8], hi: Option<&[u8]>) -> bool {
        let before = self.covering(lo).is_some();
        let after = self
            .map
            .range::<[u8], _>((Bound::Excluded(lo), Bound::Unbounded))
            .next()
            .is_some_and(|(next, _)| hi.is_none_or(|hi| &next[..] < hi));
        before || after
    }

    /// The table file (laid out in the module doc): the entries, `folded` (see
    /// [`PageTable::folded`]) and `mark`.
    pub fn encode(&self, mark: &TableMark) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(TABLE_MAGIC);
        out.extend_from_slice(&TABLE_VERSION.to_le_bytes());
        out.extend_from_slice(&mark.position.to_le_bytes());
        out.extend_from_slice(&self.folded.to_le_bytes());
        let count = u32::try_from(self.map.len()).expect("a table of fewer than 4 G entries");
        out.extend_from_slice(&count.to_le_bytes());
        for entry in self.map.values() {
            put_field(&mut out, &entry.lo);
            put_optional(&mut out, entry.hi.as_deref());
            out.extend_from_slice(&entry.sn.to_le_bytes());
            out.extend_from_slice(&entry.segments.to_le_bytes());
            out.extend_from_slice(&entry.items.to_le_bytes());
            debug_assert_eq!(entry.chain.len(), entry.segments as usize, "a chain of `segments` records");
            debug_assert_eq!(
                entry.chain.first().map(|link| link.addr),
                Some(entry.addr),
                "addr heads the chain"
            );
            for link in &entry.chain {
                out.extend_from_slice(&link.addr.to_le_bytes());
                out.extend_from_slice(&link.bytes.to_le_bytes());
            }
        }
        out.extend_from_slice(&mark.commit.encode());
        let crc = crc32c_of(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads a table file back: its mark and the table. `Corrupt` unless the checksum
    /// matches and the whole file parses, entries in key order, none overlapping another or of
    /// an empty range.
    pub fn decode(bytes: &[u8]) -> Result<(TableMark, PageTable), TableError> {
        Self::parse(bytes).ok_or(TableError::Corrupt)
    }

    fn parse(bytes: &[u8]) -> Option<(TableMark, PageTable)> {
        let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
        if crc32c_of(body).to_le_bytes() != crc {
            return None;
        }
        let mut reader = Reader { bytes: body };
        if reader.take(TABLE_MAGIC.len())? != TABLE_MAGIC || reader.u32()? != TABLE_VERSION {
            return None;
        }
        let position = reader.u64()?;
        let folded = reader.u64()?;
        let count = reader.u32()?;
        let mut table = PageTable { folded, ..PageTable::new() };
        for _ in 0..count {
            let (lo, hi) = (reader.field()?, reader.optional()?);
            let sn = reader.u64()?;
            let (segments, items) = (reader.u32()?, reader.u32()?);
            let mut chain = Vec::new();
            for _ in 0..segments {
                chain.push(Link { addr: reader.u64()?, bytes: reader.u32()? });
            }
            let addr = chain.first()?.addr;
            let after_last = table
                .map
                .values()
                .next_back()
                .is_none_or(|last| last.hi.as_deref().is_some_and(|last_hi| last_hi <= lo));
            if !after_last || hi.is_some_and(|hi| hi <= lo) {
                return None;
            }
            let entry =
                TableEntry { lo: lo.into(), hi: hi.map(Into::into), addr, sn, segments, items, chain };
            table.map.insert(entry.lo.clone(), entry);
        }
        let commit = Commit::decode(reader.bytes)?;
        Some((TableMark { position, commit }, table))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    type Version = (&'static [u8], Option<&'static [u8]>, u64);

    /// A payload laid out by hand from the byte table, with no checks: the versions in one
    /// block (none if there are no versions).
    fn raw(sn: u64, prev: u64, low: &[u8], high: Option<&[u8]>, count: u32, versions: &[Version]) -> Vec<u8> {
        let mut body = Vec::new();
        for &(key, value, sn) in versions {
            body.extend_from_slice(&sn.to_le_bytes());
            body.extend_from_slice(&(key.len() as u32).to_le_bytes());
            body.extend_from_slice(&value.map_or(u32::MAX, |v| v.len() as u32).to_le_bytes());
            body.extend_from_slice(key);
            body.extend_from_slice(value.unwrap_or_default());
        }
        let mut out = Vec::new();
        out.extend_from_slice(&sn.to_le_bytes());
        out.extend_from_slice(&prev.to_le_bytes());
        out.extend_from_slice(&(low.len() as u32).to_le_bytes());
        out.extend_from_slice(low);
        match high {
            Some(high) => {
                out.extend_from_slice(&(high.len() as u32).to_le_bytes());
                out.extend_from_slice(high);
            }
            None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
        }
        out.extend_from_slice(&count.to_le_bytes());
        match versions.first() {
            Some(&(first, _, _)) => {
                out.extend_from_slice(&1u32.to_le_bytes());
                out.extend_from_slice(&(body.len() as u32).to_le_bytes());
                out.extend_from_slice(&crc32c_of(&body).to_le_bytes());
                out.extend_from_slice(&(first.len() as u32).to_le_bytes());
                out.extend_from_slice(first);
            }
            None => out.extend_from_slice(&0u32.to_le_bytes()),
        }
        let crc = crc32c_of(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    const VERSIONS: [Version; 5] = [
        (b"", Some(b"empty key"), 9),
        (b"a", Some(b""), 8),
        (b"b", None, 7),
        (b"b", Some(b"older"), 3),
        (b"zz", Some(b"last"), 1),
    ];

    fn written(sn: u64, prev: Option<u64>, low: &[u8], high: Option<&[u8]>, versions: &[Version]) -> Vec<u8> {
        let mut writer = PageWriter::new();
        writer.start(sn, prev, low, high);
        for &(key, value, sn) in versions {
            writer.push(key, value, sn);
        }
        assert_eq!(writer.entries(), versions.len() as u32);
        writer.payload().to_vec()
    }

    #[test]
    fn records_round_trip() {
        let mut writer = PageWriter::new();
        assert!(writer.payload().is_empty());
        // Left over from an earlier record: start clears it.
        writer.start(1, Some(8), b"q", None);
        writer.push(b"r", Some(b"stale"), 1);
        writer.start(42, None, b"", None);
        for &(key, value, sn) in &VERSIONS {
            writer.push(key, value, sn);
        }
        assert_eq!(writer.payload(), &raw(42, NO_PREV, b"", None, 5, &VERSIONS)[..], "the byte table");
        let record = PageRecord::decode(writer.payload()).expect("a record as written");
        assert_eq!(
            (record.sn, record.prev, record.low, record.high, record.count),
            (42, None, &b""[..], None, 5)
        );
        let back: Vec<Version> = VERSIONS.to_vec();
        let got: Vec<_> = record.entries().map(|e| (e.key, e.value, e.sn)).collect();
        assert_eq!(got.len(), back.len());
        for (got, want) in got.iter().zip(&back) {
            assert_eq!(got, want);
        }

        // A delta of a bounded page, and a record with no entries.
        let delta = written(7, Some(4096), b"a", Some(b"c"), &VERSIONS[1..4]);
        let record = PageRecord::decode(&delta).unwrap();
        assert_eq!(
            (record.prev, record.low, record.high, record.count),
            (Some(4096), &b"a"[..], Some(&b"c"[..]), 3)
        );
        assert_eq!(record.entries().count(), 3);
        let empty = written(0, None, b"m", Some(b"n"), &[]);
        let record = PageRecord::decode(&empty).unwrap();
        assert_eq!((record.count, record.entries().next()), (0, None));
        // The smallest page there is: the empty key alone.
        let smallest = raw(0, NO_PREV, b"", Some(b"\0"), 1, &[(b"", None, 5)]);
        let record = PageRecord::decode(&smallest).unwrap();
        assert_eq!(
            (record.high, record.entries().next()),
            (Some(&b"\0"[..]), Some(PageEntry { key: b"", value: None, sn: 5 }))
        );
    }

    #[test]
    fn malformed_records_are_refused() {
        let payload = written(42, None, b"", None, &VERSIONS);
        for len in 0..payload.len() {
            assert!(PageRecord::decode(&payload[..len]).is_none(), "cut at {len}");
        }
        for extra in 1..=ENTRY_OVERHEAD + 1 {
            let mut long = payload.clone();
            long.resize(payload.len() + extra, 0);
            assert!(PageRecord::decode(&long).is_none(), "{extra} bytes after the entries");
        }
        let bad: [(&str, Vec<u8>); 12] = [
            ("keys out of order", raw(1, NO_PREV, b"", None, 2, &[(b"b", None, 1), (b"a", None, 1)])),
            ("key below low", raw(1, NO_PREV, b"b", None, 1, &[(b"a", None, 1)])),
            ("key at high", raw(1, NO_PREV, b"a", Some(b"c"), 1, &[(b"c", None, 1)])),
            ("key above high", raw(1, NO_PREV, b"a", Some(b"c"), 1, &[(b"d", None, 1)])),
            ("empty key below low", raw(1, NO_PREV, b"a", None, 1, &[(b"", None, 1)])),
            ("low equal to high", raw(1, NO_PREV, b"a", Some(b"a"), 0, &[])),
            ("low above high", raw(1, NO_PREV, b"b", Some(b"a"), 0, &[])),
            ("empty high", raw(1, NO_PREV, b"", Some(b""), 0, &[])),
            ("count above the entries", raw(1, NO_PREV, b"", None, 3, &VERSIONS[..2])),
            ("count below the entries", raw(1, NO_PREV, b"", None, 1, &VERSIONS[..2])),
            ("a huge count", raw(1, NO_PREV, b"", None, u32::MAX, &VERSIONS[..2])),
            ("nothing", Vec::new()),
        ];
        for (what, payload) in bad {
            assert!(PageRecord::decode(&payload).is_none(), "{what}");
        }
        // A low key whose length is the mark of none.
        let mut none_low = raw(1, NO_PREV, b"", None, 0, &[]);
        none_low[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(PageRecord::decode(&none_low).is_none());
        // Equal keys (a key's versions) are in order.
        assert!(
            PageRecord::decode(&raw(1, NO_PREV, b"", None, 2, &[(b"k", None, 2), (b"k", None, 1)])).is_some()
        );
    }

    /// A version owned: key, value (`None`: a tombstone), snapshot number.
    type Owned = (Vec<u8>, Option<Vec<u8>>, u64);

    /// A page of `keys` keys, every third with an older version under it, values of
    /// `value_len` bytes.
    fn many(keys: u32, value_len: usize) -> (Vec<u8>, Vec<Owned>) {
        let mut versions = Vec::new();
        for k in 0..keys {
            let key = alloc::format!("key{k:06}").into_bytes();
            let value = (k % 7 != 3).then(|| vec![k as u8; value_len]);
            versions.push((key.clone(), value, 100 + u64::from(k)));
            if k % 3 == 0 {
                versions.push((key, Some(vec![1; value_len]), 50));
            }
        }
        let mut writer = PageWriter::new();
        writer.start(200, None, b"key", Some(b"kez"));
        for (key, value, sn) in &versions {
            writer.push(key, value.as_deref(), *sn);
        }
        (writer.payload().to_vec(), versions)
    }

    #[test]
    fn blocks_hold_whole_keys_and_find_each_key() {
        let (payload, versions) = many(600, 100);
        let record = PageRecord::decode(&payload).expect("a record as written");
        assert_eq!(record.count as usize, versions.len());
        let front = PageFront::decode(&payload).unwrap();
        let blocks: Vec<_> = front.blocks().collect();
        assert!(blocks.len() > 30, "{} blocks", blocks.len());
        assert_eq!((blocks[0].start, blocks.last().unwrap().end), (front.len(), payload.len()));
        for block in &blocks {
            assert!(block.end - block.start <= BLOCK_BYTES + 2 * (ENTRY_OVERHEAD + 109), "a block too long");
        }
        // Every key's versions, read from its block alone, are the record's.
        for (key, _, _) in &versions {
            let block = front.block_of(key).expect("a block for every key");
            let entries = block_entries(&payload[block.start..block.end], block.crc, block.first).unwrap();
            let got: Vec<_> = entries.filter(|e| e.key == &key[..]).collect();
            let want: Vec<_> = record.entries().filter(|e| e.key == &key[..]).collect();
            assert_eq!(got, want);
        }
        assert_eq!(front.block_of(b"key"), None, "below the first key");
        // A damaged block is refused on its own and in the whole record.
        let block = blocks[5];
        let mut damaged = payload.clone();
        damaged[block.start + 30] ^= 1;
        assert!(block_entries(&damaged[block.start..block.end], block.crc, block.first).is_none());
        assert!(PageRecord::decode(&damaged).is_none());
        // A block read from the wrong place is refused.
        let other = blocks[6];
        assert!(block_entries(&payload[other.start..other.end], block.crc, block.first).is_none());
    }

    #[test]
    fn a_front_decodes_from_any_prefix_that_holds_it() {
        let (payload, _) = many(300, 20);
        let len = PageFront::decode(&payload).unwrap().len();
        for cut in 0..len {
            assert_eq!(PageFront::decode(&payload[..cut]).err(), Some(FrontError::Short), "cut at {cut}");
        }
        for cut in [len, len + 1, payload.len()] {
            assert_eq!(PageFront::decode(&payload[..cut]).unwrap().len(), len);
        }
        // Any byte of the front changed: refused (or, for a length, read as a longer front).
        for at in 0..len {
            let mut damaged = payload.clone();
            damaged[at] ^= 0x40;
            assert!(PageFront::decode(&damaged).is_err(), "byte {at} changed");
            assert!(PageRecord::decode(&damaged).is_none(), "byte {at} changed");
        }
        // A record with no versions has no blocks.
        let empty = written(3, None, b"a", Some(b"b"), &[]);
        let front = PageFront::decode(&empty).unwrap();
        assert_eq!((front.blocks().count(), front.block_of(b"a"), front.len()), (0, None, empty.len()));
    }

    #[test]
    fn a_key_with_many_versions_stays_in_one_block() {
        let mut writer = PageWriter::new();
        writer.start(9, None, b"", None);
        writer.push(b"a", Some(&[0; 100]), 1);
        for sn in (0..100).rev() {
            writer.push(b"b", Some(&[1; 100]), sn);
        }
        writer.push(b"c", Some(&[2; 100]), 1);
        let payload = writer.payload().to_vec();
        let front = PageFront::decode(&payload).unwrap();
        let firsts: Vec<_> = front.blocks().map(|b| b.first).collect();
        assert_eq!(firsts, [&b"a"[..], b"c"]);
        assert!(PageRecord::decode(&payload).is_some());
    }

    fn entry(lo: &[u8], hi: Option<&[u8]>, addr: u64) -> TableEntry {
        TableEntry {
            lo: lo.into(),
            hi: hi.map(Into::into),
            addr,
            sn: addr,
            segments: 1,
            items: 0,
            chain: vec![link(addr)],
        }
    }

    fn link(addr: u64) -> Link {
        Link { addr, bytes: 40 }
    }

    /// Folds an image of `[low, high)` at `lsn`.
    fn image(table: &mut PageTable, lsn: u64, low: &[u8], high: Option<&[u8]>) {
        let payload = written(lsn, None, low, high, &[]);
        table.fold(lsn, Kind::PageImage, &PageRecord::decode(&payload).unwrap()).unwrap();
    }

    fn ranges(table: &PageTable) -> Vec<(Vec<u8>, Option<Vec<u8>>, u64)> {
        table.entries().map(|e| (e.lo.to_vec(), e.hi.as_ref().map(|h| h.to_vec()), e.addr)).collect()
    }

    fn r(lo: &[u8], hi: Option<&[u8]>, addr: u64) -> (Vec<u8>, Option<Vec<u8>>, u64) {
        (lo.to_vec(), hi.map(<[u8]>::to_vec), addr)
    }

    #[test]
    fn images_carve_what_they_cover() {
        let mut table = PageTable::new();
        assert_eq!(table.tiles().collect::<Vec<_>>(), vec![(&b""[..], None, None)]);
        image(&mut table, 8, b"", None);
        image(&mut table, 16, b"c", Some(b"f"));
        assert_eq!(ranges(&table), vec![r(b"", Some(b"c"), 8), r(b"c", Some(b"f"), 16), r(b"f", None, 8)]);
        // Exactly replacing one entry; falling inside a gap left by nothing; spanning several.
        image(&mut table, 24, b"c", Some(b"f"));
        assert_eq!(ranges(&table)[1], r(b"c", Some(b"f"), 24));
        image(&mut table, 32, b"b", Some(b"g"));
        assert_eq!(ranges(&table), vec![r(b"", Some(b"b"), 8), r(b"b", Some(b"g"), 32), r(b"g", None, 8)]);
        image(&mut table, 40, b"", None);
        assert_eq!(ranges(&table), vec![r(b"", None, 40)]);

        let mut gaps = PageTable::new();
        image(&mut gaps, 8, b"m", Some(b"p"));
        image(&mut gaps, 16, b"x", None);
        let tiles: Vec<_> = gaps.tiles().map(|(lo, hi, e)| (lo, hi, e.map(|e| e.addr))).collect();
        assert_eq!(
            tiles,
            vec![
                (&b""[..], Some(&b"m"[..]), None),
                (b"m", Some(b"p"), Some(8)),
                (b"p", Some(b"x"), None),
                (b"x", None, Some(16)),
            ]
        );
        image(&mut gaps, 24, b"q", Some(b"s"));
        image(&mut gaps, 32, b"n", Some(b"o"));
        assert_eq!(
            ranges(&gaps),
            vec![
                r(b"m", Some(b"n"), 8),
                r(b"n", Some(b"o"), 32),
                r(b"o", Some(b"p"), 8),
                r(b"q", Some(b"s"), 24),
                r(b"x", None, 16)
            ]
        );
        assert_eq!(gaps.covering(b"p"), None);
        assert_eq!(gaps.covering(b"o").map(|e| e.addr), Some(8));
        assert_eq!(gaps.covering(b"zzz").map(|e| e.addr), Some(16));
        assert_eq!(gaps.len(), 5);
        assert!(!gaps.is_empty() && PageTable::new().is_empty());
    }

    /// A delta speaks for its page's keys only: a stretch wider than its page (a page split off
    /// it since, not yet imaged) keeps its older chain and snapshot outside the delta's range,
    /// or replay would skip that page's writes as held by records that do not hold them.
    #[test]
    fn a_delta_raises_only_its_own_keys() {
        let mut table = PageTable::new();
        image(&mut table, 8, b"", None);
        let payload = written(20, Some(8), b"", Some(b"m"), &[]);
        table.fold(16, Kind::PageDelta, &PageRecord::decode(&payload).unwrap()).unwrap();
        let (left, right) = (table.covering(b"a").unwrap(), table.covering(b"p").unwrap());
        let addrs = |e: &TableEntry| e.chain.iter().map(|link| link.addr).collect::<Vec<_>>();
        assert_eq!((left.sn, addrs(left)), (20, vec![16, 8]));
        assert_eq!((right.sn, addrs(right), right.lo.to_vec()), (8, vec![8], b"m".to_vec()));
        // The image both stretches name counts once.
        let image_bytes = written(8, None, b"", None, &[]).len();
        assert_eq!(table.live_bytes(), (image_bytes + payload.len()) as u64);
        assert_eq!(left.chain[0].bytes as usize, payload.len());
    }

    #[test]
    fn records_of_the_wrong_kind_and_orphans_are_refused() {
        let mut table = PageTable::new();
        image(&mut table, 8, b"", Some(b"m"));
        let before = table.clone();
        let image_payload = written(1, None, b"", None, &[]);
        let delta_payload = written(1, Some(8), b"a", Some(b"c"), &VERSIONS[1..3]);
        let (img, delta) =
            (PageRecord::decode(&image_payload).unwrap(), PageRecord::decode(&delta_payload).unwrap());
        assert_eq!(table.fold(64, Kind::PageDelta, &img), Err(TableError::WrongKind { lsn: 64 }));
        assert_eq!(table.fold(64, Kind::PageImage, &delta), Err(TableError::WrongKind { lsn: 64 }));
        assert_eq!(table.fold(64, Kind::Put, &img), Err(TableError::WrongKind { lsn: 64 }));
        let wrong_prev = written(1, Some(16), b"a", None, &[]);
        let wrong_prev = PageRecord::decode(&wrong_prev).unwrap();
        assert_eq!(table.fold(64, Kind::PageDelta, &wrong_prev), Err(TableError::Orphan { lsn: 64 }));
        let uncovered = written(1, Some(8), b"n", None, &[]);
        let uncovered = PageRecord::decode(&uncovered).unwrap();
        assert_eq!(table.fold(64, Kind::PageDelta, &uncovered), Err(TableError::Orphan { lsn: 64 }));
        let mut emptied = img;
        emptied.high = Some(b"");
        assert_eq!(table.fold(64, Kind::PageImage, &emptied), Err(TableError::WrongKind { lsn: 64 }));
        assert_eq!(table, before);
        table.fold(64, Kind::PageDelta, &delta).unwrap();
        let e = table.covering(b"a").unwrap();
        assert_eq!((e.addr, e.sn, e.segments, e.items), (64, 1, 2, 2));
    }

    #[test]
    fn inserted_entries_are_kept_as_given() {
        let mut table = PageTable::new();
        table.insert(TableEntry {
            segments: 3,
            items: 7,
            chain: vec![link(80), link(72), link(64)],
            ..entry(b"k", None, 80)
        });
        table.insert(entry(b"a", Some(b"c"), 40));
        table.insert(entry(b"c", Some(b"k"), 48));
        assert_eq!(ranges(&table), vec![r(b"a", Some(b"c"), 40), r(b"c", Some(b"k"), 48), r(b"k", None, 80)]);
        assert_eq!(table.covering(b"zz").map(|e| (e.segments, e.items)), Some((3, 7)));
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "overlapping")]
    fn inserting_an_overlapping_entry_panics_in_debug() {
        let mut table = PageTable::new();
        table.insert(entry(b"c", Some(b"k"), 48));
        table.insert(entry(b"a", Some(b"d"), 40));
    }

    fn sample() -> PageTable {
        let mut table = PageTable::new();
        table.insert(TableEntry {
            segments: 4,
            items: 1000,
            chain: [8, 6, 4, 2].map(link).to_vec(),
            ..entry(b"", Some(b"apple"), 8)
        });
        table.insert(entry(b"apple", Some(b"melon"), 4096));
        table.insert(TableEntry { sn: u64::MAX, items: u32::MAX, ..entry(b"pear", None, u64::MAX - 7) });
        table
    }

    #[test]
    fn table_files_round_trip_and_damage_is_refused() {
        let committed = TableMark { position: 1 << 40, commit: Commit { sn: 77, ends: vec![1 << 40, 9] } };
        for (table, mark) in [(sample(), committed), (PageTable::new(), TableMark::at(0))] {
            let bytes = table.encode(&mark);
            assert_eq!(&bytes[..8], b"HELIOPGT");
            assert_eq!(PageTable::decode(&bytes), Ok((mark, table.clone())));
            for at in 0..bytes.len() {
                for bit in 0..8 {
                    let mut damaged = bytes.clone();
                    damaged[at] ^= 1 << bit;
                    assert_eq!(
                        PageTable::decode(&damaged),
                        Err(TableError::Corrupt),
                        "bit {bit} of byte {at}"
                    );
                }
            }
            for len in 0..bytes.len() {
                assert_eq!(PageTable::decode(&bytes[..len]), Err(TableError::Corrupt), "cut at {len}");
            }
        }
    }

    #[test]
    fn table_files_that_check_out_but_do_not_parse_are_refused() {
        let sealed = |mut body: Vec<u8>| {
            let crc = crc32c_of(&body);
            body.extend_from_slice(&crc.to_le_bytes());
            body
        };
        let good = sample().encode(&TableMark::at(9));
        let body = good[..good.len() - 4].to_vec();
        assert!(PageTable::decode(&sealed(body.clone())).is_ok());
        let mut version = body.clone();
        version[8] = 2;
        let mut magic = body.clone();
        magic[0] = b'X';
        let mut trailing = body.clone();
        trailing.push(0);
        let mut fewer = body.clone();
        fewer[28] = 2;
        let overlapping = {
            let mut table = PageTable::new();
            table.insert(entry(b"a", Some(b"d"), 8));
            table.insert(entry(b"d", None, 16));
            let mut bytes = table.encode(&TableMark::at(0));
            bytes.truncate(bytes.len() - 4);
            // The second entry's low key "d" becomes "c".
            let at = bytes.iter().rposition(|&b| b == b'd').unwrap();
            bytes[at] = b'c';
            bytes
        };
        for (what, body) in [
            ("version", version),
            ("magic", magic),
            ("trailing", trailing),
            ("count", fewer),
            ("overlap", overlapping),
        ] {
            assert_eq!(PageTable::decode(&sealed(body)), Err(TableError::Corrupt), "{what}");
        }
    }

    #[cfg(feature = "std")]
    mod fold {
        use super::*;
        use proptest::prelude::*;

        /// Keys of the universe: the empty key, then single bytes 0..32.
        fn universe() -> Vec<Vec<u8>> {
            core::iter::once(Vec::new()).chain((0u8..32).map(|k| vec![k])).collect()
        }

        #[derive(Clone, Debug)]
        enum Step {
            Image(Vec<u8>, Option<Vec<u8>>),
            /// A delta on the entry holding the key, with the right prev or a wrong one.
            Delta(u8, bool),
        }

        fn step() -> impl Strategy<Value = Step> {
            let low = prop_oneof![1 => Just(Vec::new()), 6 => (0u8..32).prop_map(|k| vec![k])];
            let high = prop_oneof![1 => Just(None), 6 => (0u8..=32).prop_map(|k| Some(vec![k]))];
            let image = (low, high)
                .prop_filter("a range not empty", |(lo, hi)| hi.as_ref().is_none_or(|hi| lo < hi))
                .prop_map(|(lo, hi)| Step::Image(lo, hi));
            prop_oneof![3 => image, 2 => (0u8..32, any::<bool>()).prop_map(|(k, right)| Step::Delta(k, right))]
        }

        /// Per key: the addr, segments and items of the entry that must hold it.
        type Model = Vec<Option<(u64, u32, u32)>>;

        fn check(table: &PageTable, model: &Model) {
            for (k, want) in universe().iter().zip(model) {
                let got = table.covering(k).map(|e| (e.addr, e.segments, e.items));
                assert_eq!(got, *want, "key {k:?}");
            }
            let tiles: Vec<_> = table.tiles().collect();
            assert_eq!(tiles[0].0, b"");
            assert_eq!(tiles.last().unwrap().1, None);
            for pair in tiles.windows(2) {
                assert_eq!(pair[0].1, Some(pair[1].0), "tiles meet");
                assert!(pair[0].2.is_some() || pair[1].2.is_some(), "two gaps in a row");
            }
            for &(lo, hi, entry) in &tiles {
                assert!(hi.is_none_or(|hi| lo < hi), "an empty tile");
                if let Some(entry) = entry {
                    assert_eq!((&entry.lo[..], entry.hi.as_deref()), (lo, hi));
                }
            }
            assert_eq!(tiles.iter().filter(|t| t.2.is_some()).count(), table.len());
            for k in universe() {
                let tile = tiles.iter().find(|(lo, hi, _)| within(&k, lo, *hi)).unwrap();
                assert_eq!(tile.2, table.covering(&k));
            }
        }

        proptest! {
            #[test]
            fn folding_keeps_the_latest_image_of_every_key(steps in proptest::collection::vec(step(), 1..40)) {
                let keys = universe();
                let mut table = PageTable::new();
                let mut model: Model = vec![None; keys.len()];
                for (i, step) in steps.into_iter().enumerate() {
                    let lsn = 8 * (i as u64 + 1);
                    match step {
                        Step::Image(lo, hi) => {
                            let mut writer = PageWriter::new();
                            writer.start(lsn, None, &lo, hi.as_deref());
                            for k in keys.iter().filter(|k| within(k, &lo, hi.as_deref())) {
                                writer.push(k, Some(b"v"), lsn);
                            }
                            let record = PageRecord::decode(writer.payload()).unwrap();
                            table.fold(lsn, Kind::PageImage, &record).unwrap();
                            for (k, m) in keys.iter().zip(model.iter_mut()) {
                                if within(k, &lo, hi.as_deref()) {
                                    *m = Some((lsn, 1, record.count));
                                }
                            }
                        }
                        Step::Delta(k, right) => {
                            let covering = table.covering(&[k]).cloned();
                            let prev = match (&covering, right) {
                                (Some(e), true) => e.addr,
                                (Some(e), false) => e.addr ^ 8,
                                (None, _) => lsn - 8,
                            };
                            let (lo, hi) = covering.as_ref().map_or((vec![k], None), |e| (e.lo.to_vec(), e.hi.as_ref().map(|h| h.to_vec())));
                            let mut writer = PageWriter::new();
                            writer.start(lsn, Some(prev), &lo, hi.as_deref());
                            writer.push(&lo, None, lsn);
                            let record = PageRecord::decode(writer.payload()).unwrap();
                            let before = table.clone();
                            let got = table.fold(lsn, Kind::PageDelta, &record);
                            match covering {
                                Some(e) if right => {
                                    prop_assert_eq!(got, Ok(()));
                                    for (k, m) in keys.iter().zip(model.iter_mut()) {
                                        if e.holds(k) {
                                            prop_assert_eq!(*m, Some((e.addr, e.segments, e.items)));
                                            *m = Some((lsn, e.segments + 1, e.items + 1));
                                        }
                                    }
                                }
                                _ => {
                                    prop_assert_eq!(got, Err(TableError::Orphan { lsn }));
                                    prop_assert_eq!(&table, &before);
                                }
                            }
                        }
                    }
                    check(&table, &model);
                }
                let bytes = table.encode(&TableMark::at(7));
                prop_assert_eq!(PageTable::decode(&bytes), Ok((TableMark::at(7), table)));
            }
        }
    }
}
