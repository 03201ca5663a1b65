//! What the fuzz targets share: a reader that turns fuzz input into values, builders of valid
//! logs, reference decoders written from the byte tables in `helio-core` (and
//! `docs/log-format.md`), and the checks every decoded frame must pass.
//!
//! The reference decoders are deliberately plain (no shortcuts, no cheap filters): the targets
//! compare the real decoders against them, so a difference is either a bug in `helio-core` or a
//! format change the reference must follow.

use helio_core::log::batch;
use helio_core::log::crc32c_of;
use helio_core::log::cut::{write_sn, Commit};
use helio_core::log::fragment::FRAGMENT_HEADER_BYTES;
use helio_core::log::frame::{
    classify_failure, decode, encode, frame_bytes, Decoded, Failure, Frame, Invalid, Kind, Op, Stamp, ALIGN,
    EPOCH_MAX, HEADER_BYTES, PAYLOAD_BYTES_MAX,
};
use helio_core::log::page::{
    block_entries, FrontError, PageEntry, PageFront, PageRecord, PageWriter, NO_PREV,
};

/// Reads values from fuzz input, front to back. Past the end every read gives zeros (or fewer
/// bytes), so any input is a valid one.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Up to `n` bytes (fewer at the end).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.data.split_at(n.min(self.data.len()));
        self.data = tail;
        head
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        self.bytes(self.data.len())
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        let got = self.bytes(N);
        out[..got.len()].copy_from_slice(got);
        out
    }

    /// A byte (0 past the end).
    pub fn u8(&mut self) -> u8 {
        self.array::<1>()[0]
    }

    /// A little-endian u16.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }

    /// A little-endian u32.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }

    /// A little-endian u64.
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.array())
    }

    /// A length in `0..=max` (one byte when `max` < 256, else two).
    pub fn len(&mut self, max: usize) -> usize {
        let raw = if max < 256 { usize::from(self.u8()) } else { usize::from(self.u16()) };
        raw % (max + 1)
    }

    /// A write number: mostly small (so that numbers meet and compare), now and then near
    /// `u64::MAX` or anywhere.
    pub fn sn(&mut self) -> u64 {
        let byte = self.u8();
        match byte >> 6 {
            0 | 1 => u64::from(byte & 0x3F),
            2 => u64::MAX - u64::from(byte & 0x3F),
            _ => self.u64(),
        }
    }

    /// A byte string of at most `max` bytes: a length, then that many bytes (zero-filled past
    /// the end of the input).
    pub fn vec(&mut self, max: usize) -> Vec<u8> {
        let len = self.len(max);
        let mut out = self.bytes(len).to_vec();
        out.resize(len, 0);
        out
    }
}

fn le32(bytes: &[u8]) -> u32 {
    u32::from_le_bytes(bytes[..4].try_into().unwrap())
}

fn le64(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[..8].try_into().unwrap())
}

/// The checksum of a frame as the byte table defines it: the salt, then bytes 4 .. end.
pub fn frame_crc(salt: u64, after_crc: &[u8]) -> u32 {
    let mut bytes = salt.to_le_bytes().to_vec();
    bytes.extend_from_slice(after_crc);
    crc32c_of(&bytes)
}

/// What the byte table says the bytes at the start of `buf` are, written without reference to
/// `frame::decode`: the frame, or else what `decode` must answer.
pub fn reference_decode(buf: &[u8], lsn: u64, salt: u64, min_epoch: u32) -> Result<Frame<'_>, Decoded<'_>> {
    if buf.len() < HEADER_BYTES {
        return Err(Decoded::Invalid(Invalid::Truncated));
    }
    if buf[..HEADER_BYTES].iter().all(|&b| b == 0) {
        return Err(Decoded::Invalid(Invalid::Unwritten));
    }
    let stamped = le64(&buf[8..]);
    if stamped != lsn {
        return Err(Decoded::Invalid(Invalid::WrongAddress { stamped }));
    }
    let payload_len = le32(&buf[4..]) as usize;
    if payload_len > PAYLOAD_BYTES_MAX {
        return Err(Decoded::Invalid(Invalid::Checksum));
    }
    let bytes = (HEADER_BYTES + payload_len).div_ceil(ALIGN) * ALIGN;
    if lsn.checked_add(bytes as u64).is_none() {
        return Err(Decoded::Invalid(Invalid::Checksum));
    }
    if buf.len() < bytes {
        return Err(Decoded::NeedMore { bytes });
    }
    if frame_crc(salt, &buf[4..bytes]) != le32(buf) {
        return Err(Decoded::Invalid(Invalid::Checksum));
    }
    let kind = match buf[20] {
        1 => Kind::Pad,
        2 => Kind::Put,
        3 => Kind::Delete,
        4 => Kind::Fragment,
        5 => Kind::Relocated,
        6 => Kind::Batch,
        7 => Kind::Commit,
        8 => Kind::PageImage,
        9 => Kind::PageDelta,
        other => return Err(Decoded::Invalid(Invalid::UnknownKind(other))),
    };
    let epoch = u32::from(buf[21]) | u32::from(buf[22]) << 8 | u32::from(buf[23]) << 16;
    if epoch < min_epoch {
        return Err(Decoded::Invalid(Invalid::Stale { epoch }));
    }
    // The durable gap: u32::MAX claims nothing; anything else is subtracted, never below 0.
    let gap = le32(&buf[16..]);
    let durable_lsn = if gap == u32::MAX { 0 } else { lsn.saturating_sub(u64::from(gap)) };
    let payload = &buf[HEADER_BYTES..HEADER_BYTES + payload_len];
    Ok(Frame { lsn, durable_lsn, epoch, kind, payload, bytes })
}

/// Decodes at the start of `buf` with `frame::decode`, checks the answer against
/// [`reference_decode`] and, for a frame, with [`check_frame`].
pub fn decode_checked(buf: &[u8], lsn: u64, salt: u64, min_epoch: u32) -> Decoded<'_> {
    let got = decode(buf, lsn, salt, min_epoch);
    match (reference_decode(buf, lsn, salt, min_epoch), got) {
        (Ok(want), Decoded::Frame(frame)) => {
            assert_eq!(frame, want, "decode disagrees with the byte table");
            assert!(
                core::ptr::eq(frame.payload.as_ptr(), buf[HEADER_BYTES..].as_ptr()),
                "payload not in place"
            );
            check_frame(buf, salt, min_epoch, &frame);
        }
        (Err(want), got) => {
            assert_eq!(got, want, "decode disagrees with the byte table at {lsn}");
            if let Decoded::NeedMore { bytes } = got {
                assert!(bytes > buf.len() && bytes >= HEADER_BYTES && bytes.is_multiple_of(ALIGN));
            }
        }
        (Ok(want), got) => panic!("decode gave {got:?}, the byte table says {want:?}"),
    }
    got
}

/// The self-consistency of a frame decoded from the start of `buf`: it fits in `buf`, its
/// addresses and epoch are in range, and encoding it again at the same address, salt and epoch
/// gives the same bytes (or, where the input was not in the form the writer produces — padding
/// that is not zero, a durable gap larger than the address — bytes that decode to the same
/// frame and differ only there).
pub fn check_frame(buf: &[u8], salt: u64, min_epoch: u32, frame: &Frame<'_>) {
    let Frame { lsn, durable_lsn, epoch, kind, payload, bytes } = *frame;
    assert!(bytes <= buf.len(), "a frame of {bytes} bytes decoded from {} bytes", buf.len());
    assert_eq!(bytes, frame_bytes(payload.len()));
    assert!(bytes >= HEADER_BYTES && bytes.is_multiple_of(ALIGN));
    assert!(durable_lsn <= lsn, "durable point {durable_lsn} beyond the frame at {lsn}");
    assert!(epoch >= min_epoch && epoch <= EPOCH_MAX, "epoch {epoch}, floor {min_epoch}");
    assert_eq!(le64(&buf[8..]), lsn);
    assert_eq!(le32(&buf[4..]) as usize, payload.len());
    assert_eq!(buf[20], kind as u8);

    let mut again = vec![0xA5; bytes];
    encode(&mut again, Stamp { salt, epoch }, lsn, durable_lsn, kind, payload);
    match decode(&again, lsn, salt, epoch) {
        Decoded::Frame(back) => assert_eq!(back, *frame, "a re-encoded frame decodes to another"),
        other => panic!("a re-encoded frame does not decode: {other:?}"),
    }
    assert_eq!(&again[HEADER_BYTES..HEADER_BYTES + payload.len()], payload);
    assert_eq!(again[4..16], buf[4..16]);
    assert_eq!(again[20..24], buf[20..24]);
    assert!(again[HEADER_BYTES + payload.len()..].iter().all(|&b| b == 0), "padding not zero");
    let gap = le32(&buf[16..]);
    let padding_zero = buf[HEADER_BYTES + payload.len()..bytes].iter().all(|&b| b == 0);
    if padding_zero && gap != u32::MAX && u64::from(gap) <= lsn {
        assert_eq!(&again[..], &buf[..bytes], "re-encoding the frame at {lsn} gives other bytes");
    }
}

/// [`frame::vouching_frame`] written plainly: every aligned offset from `from` on, decoded in
/// full.
pub fn reference_vouching(
    bytes: &[u8],
    base: u64,
    from: usize,
    failed_lsn: u64,
    salt: u64,
    min_epoch: u32,
) -> Option<u64> {
    let mut at = from.div_ceil(ALIGN) * ALIGN;
    while at + HEADER_BYTES <= bytes.len() {
        let candidate = base.wrapping_add(at as u64);
        if let Ok(frame) = reference_decode(&bytes[at..], candidate, salt, min_epoch) {
            if frame.durable_lsn > failed_lsn {
                return Some(candidate);
            }
        }
        at += ALIGN;
    }
    None
}

/// [`frame::holds_frames`] written plainly: any intact frame at its own address, from offset 0.
///
/// [`frame::holds_frames`]: helio_core::log::frame::holds_frames
pub fn reference_holds(bytes: &[u8], base: u64, salt: u64, min_epoch: u32) -> bool {
    (0..bytes.len().saturating_sub(HEADER_BYTES - 1))
        .step_by(ALIGN)
        .any(|at| reference_decode(&bytes[at..], base.wrapping_add(at as u64), salt, min_epoch).is_ok())
}

/// `classify_failure` at `lsn` over `rest`, checked against [`reference_vouching`]; a
/// corruption's proof must be an intact frame at its address that vouches for `lsn`.
pub fn classify_checked(rest: &[u8], lsn: u64, salt: u64, min_epoch: u32) -> Failure {
    let failure = classify_failure(rest, lsn, salt, min_epoch);
    let want = reference_vouching(rest, lsn, ALIGN, lsn, salt, min_epoch);
    match failure {
        Failure::Torn => assert_eq!(want, None, "torn, but a frame vouches for {lsn}"),
        Failure::Corrupt { proof_lsn } => {
            assert_eq!(Some(proof_lsn), want, "another proof than the first vouching frame");
            let at = proof_lsn.wrapping_sub(lsn) as usize;
            assert!(at >= ALIGN && at.is_multiple_of(ALIGN) && at + HEADER_BYTES <= rest.len());
            match decode(&rest[at..], proof_lsn, salt, min_epoch) {
                Decoded::Frame(proof) => assert!(proof.durable_lsn > lsn),
                other => panic!("the proof at {proof_lsn} does not decode: {other:?}"),
            }
        }
    }
    failure
}

/// `Op::decode_payload` written plainly from `u64 sn, u32 key_len, key, value`.
pub fn reference_op(kind: Kind, payload: &[u8]) -> Option<Op<'_>> {
    if payload.len() < 12 {
        return None;
    }
    let sn = le64(payload);
    let key_len = le32(&payload[8..]) as u64;
    if key_len > (payload.len() - 12) as u64 {
        return None;
    }
    let (key, value) = payload[12..].split_at(key_len as usize);
    match kind {
        Kind::Put => Some(Op { sn, key, value: Some(value) }),
        Kind::Delete if value.is_empty() => Some(Op { sn, key, value: None }),
        _ => None,
    }
}

/// `Op::decode_payload` for `kind`, checked against [`reference_op`]; an op that decodes must
/// write back the same payload.
pub fn op_checked(kind: Kind, payload: &[u8]) -> Option<Op<'_>> {
    let op = Op::decode_payload(kind, payload);
    assert_eq!(op, reference_op(kind, payload), "Op::decode_payload disagrees for {kind:?}");
    if let Some(op) = op {
        assert_eq!(op.kind(), kind);
        assert_eq!(op.payload_len(), payload.len());
        let mut back = vec![0; payload.len()];
        op.write_payload(&mut back);
        assert_eq!(back, payload, "an op re-encodes to other bytes");
    }
    op
}

/// Every kind of record, in the order of their kind bytes.
pub const KINDS: [Kind; 9] = [
    Kind::Pad,
    Kind::Put,
    Kind::Delete,
    Kind::Fragment,
    Kind::Relocated,
    Kind::Batch,
    Kind::Commit,
    Kind::PageImage,
    Kind::PageDelta,
];

/// The payload of a put (`value` given) or a delete.
pub fn op_payload(sn: u64, key: &[u8], value: Option<&[u8]>) -> Vec<u8> {
    let op = Op { sn, key, value };
    let mut out = vec![0; op.payload_len()];
    op.write_payload(&mut out);
    out
}

/// An entry of a batch or relocated record: a key and its value (`None`: the key is removed).
pub type Entry<'a> = (&'a [u8], Option<&'a [u8]>);

/// The write number in front of a batch or relocated record's payload (`u64 sn`), written
/// plainly.
pub fn reference_sn(payload: &[u8]) -> Option<u64> {
    (payload.len() >= 8).then(|| le64(payload))
}

/// The entries of a batch record's payload (`u64 sn`, then `u32 key_len, key, u32 value_len,
/// value` repeated, at least one; a value_len of u32::MAX removes the key and no value
/// follows), written plainly: `Ok` with every entry, or `Err` with the entries before the
/// damage (a missing header, a length past the end, no entry at all).
#[allow(clippy::type_complexity)]
pub fn reference_ops(payload: &[u8]) -> Result<Vec<Entry<'_>>, Vec<Entry<'_>>> {
    fn field(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
        let len = le32(bytes.get(..4)?) as u64;
        if len > (bytes.len() - 4) as u64 {
            return None;
        }
        Some(bytes[4..].split_at(len as usize))
    }
    let mut out = Vec::new();
    if payload.len() <= 8 {
        return Err(out);
    }
    let mut rest = &payload[8..];
    while !rest.is_empty() {
        let Some((key, after)) = field(rest) else { return Err(out) };
        if after.len() >= 4 && le32(after) == u32::MAX {
            out.push((key, None));
            rest = &after[4..];
            continue;
        }
        let Some((value, after)) = field(after) else { return Err(out) };
        out.push((key, Some(value)));
        rest = after;
    }
    Ok(out)
}

/// The entries of a relocated record's payload: those of [`reference_ops`], where a removal
/// is damage too (the cleaner relocates only values).
#[allow(clippy::type_complexity)]
pub fn reference_entries(payload: &[u8]) -> Result<Vec<(&[u8], &[u8])>, Vec<(&[u8], &[u8])>> {
    let (ops, whole) = match reference_ops(payload) {
        Ok(ops) => (ops, true),
        Err(ops) => (ops, false),
    };
    let mut out = Vec::new();
    for (key, value) in ops {
        match value {
            Some(value) => out.push((key, value)),
            None => return Err(out),
        }
    }
    if whole {
        Ok(out)
    } else {
        Err(out)
    }
}

/// Drains an iterator of `batch::entries` or `batch::ops`: the entries before the first `None`,
/// and whether there was one; checks that nothing follows it and that the iterator stays ended.
fn drain<T>(mut iter: impl Iterator<Item = Option<T>>) -> Result<Vec<T>, Vec<T>> {
    let mut got = Vec::new();
    let mut bad = false;
    for item in iter.by_ref() {
        assert!(!bad, "an item after the damage");
        match item {
            Some(entry) => got.push(entry),
            None => bad = true,
        }
    }
    assert!(iter.next().is_none() && iter.next().is_none(), "the entries go on after their end");
    if bad {
        Err(got)
    } else {
        Ok(got)
    }
}

/// Checks that `entries` lie in `payload` one right after another, from the header on, and
/// (for a payload that parsed whole) end where it ends.
fn check_in_place(payload: &[u8], entries: &[Entry<'_>], whole: bool) {
    let mut at = batch::HEADER_BYTES;
    for (key, value) in entries {
        assert!(core::ptr::eq(key.as_ptr(), payload[at + 4..].as_ptr()), "a key not in place");
        at += 4 + key.len();
        match value {
            Some(value) => {
                assert!(core::ptr::eq(value.as_ptr(), payload[at + 4..].as_ptr()), "a value not in place");
                at += 4 + value.len();
            }
            None => {
                assert_eq!(le32(&payload[at..]), u32::MAX);
                at += 4;
            }
        }
    }
    if whole {
        assert_eq!(at, payload.len());
    }
}

/// `batch::sn` of `payload`, checked against [`reference_sn`].
pub fn sn_checked(payload: &[u8]) -> Option<u64> {
    let sn = batch::sn(payload);
    assert_eq!(sn, reference_sn(payload), "batch::sn disagrees");
    sn
}

/// `batch::entries` of `payload` (a relocated record's), checked against [`reference_entries`]:
/// the entries in order, each in place in the payload, and `None` as the last item exactly when
/// the payload is malformed; the iterator stays ended.
#[allow(clippy::type_complexity)]
pub fn entries_checked(payload: &[u8]) -> Result<Vec<(&[u8], &[u8])>, Vec<(&[u8], &[u8])>> {
    sn_checked(payload);
    let result = drain(batch::entries(payload));
    assert_eq!(result, reference_entries(payload), "batch::entries disagrees");
    let (entries, whole) = match &result {
        Ok(v) => (v, true),
        Err(v) => (v, false),
    };
    let entries: Vec<Entry<'_>> = entries.iter().map(|&(k, v)| (k, Some(v))).collect();
    check_in_place(payload, &entries, whole);
    result
}

/// `batch::ops` of `payload` (a batch record's), checked against [`reference_ops`] as
/// [`entries_checked`] checks `batch::entries`.
#[allow(clippy::type_complexity)]
pub fn ops_checked(payload: &[u8]) -> Result<Vec<Entry<'_>>, Vec<Entry<'_>>> {
    sn_checked(payload);
    let result = drain(batch::ops(payload));
    assert_eq!(result, reference_ops(payload), "batch::ops disagrees");
    match &result {
        Ok(v) => check_in_place(payload, v, true),
        Err(v) => check_in_place(payload, v, false),
    }
    result
}

/// A commit's payload (`u64 sn, u32 shards, shards × u64 end`), written plainly.
pub fn reference_commit(payload: &[u8]) -> Option<Commit> {
    if payload.len() < 12 {
        return None;
    }
    let shards = u64::from(le32(&payload[8..]));
    if (payload.len() - 12) as u64 != shards * 8 {
        return None;
    }
    Some(Commit { sn: le64(payload), ends: payload[12..].chunks(8).map(le64).collect() })
}

/// `Commit::decode` of `payload`, checked against [`reference_commit`]; a commit that decodes
/// encodes back to the same bytes.
pub fn commit_checked(payload: &[u8]) -> Option<Commit> {
    let commit = Commit::decode(payload);
    assert_eq!(commit, reference_commit(payload), "Commit::decode disagrees");
    if let Some(commit) = &commit {
        assert_eq!(commit.encode(), payload, "a commit re-encodes to other bytes");
        assert_eq!(Commit::payload_len(commit.ends.len()), payload.len());
    }
    commit
}

/// The write number a record carries (see `cut::write_sn`), written plainly: `Some(Some(sn))`
/// for ops, batches and relocated records (a batch's or relocation's header is enough),
/// `Some(None)` for records that carry no write, `None` if the record does not parse as far as
/// its number.
pub fn reference_write_sn(kind: Kind, payload: &[u8]) -> Option<Option<u64>> {
    match kind {
        Kind::Put | Kind::Delete => reference_op(kind, payload).map(|op| Some(op.sn)),
        Kind::Batch | Kind::Relocated => reference_sn(payload).map(Some),
        Kind::Commit => reference_commit(payload).map(|_| None),
        Kind::PageImage | Kind::PageDelta => reference_page(payload).map(|_| None),
        Kind::Pad | Kind::Fragment => Some(None),
        other => panic!("a kind the fuzz targets do not know yet: {other:?}"),
    }
}

/// An entry the cleaner may be handed: the record's write number, a key and its value.
pub type Candidate = (u64, Vec<u8>, Vec<u8>);

/// The checks of a whole record's payload, by its kind: ops, batches, relocated records and
/// commits parse as the byte tables say, and the record's write number is the one its table
/// gives. Returns the entries it would hand the cleaner (`None` if it does not parse).
pub fn record_checked(kind: Kind, payload: &[u8]) -> Option<Vec<Candidate>> {
    for other in KINDS {
        op_checked(other, payload);
        assert_eq!(write_sn(other, payload), reference_write_sn(other, payload), "write_sn of a {other:?}");
    }
    let owned = |sn: u64, entries: Vec<(&[u8], &[u8])>| {
        entries.into_iter().map(|(k, v)| (sn, k.to_vec(), v.to_vec())).collect::<Vec<_>>()
    };
    let sn = sn_checked(payload);
    let entries = entries_checked(payload);
    let ops = ops_checked(payload);
    let commit = commit_checked(payload);
    let page = page_checked(payload);
    match kind {
        Kind::Put => {
            op_checked(kind, payload).map(|op| vec![(op.sn, op.key.to_vec(), op.value.unwrap().to_vec())])
        }
        Kind::Delete => op_checked(kind, payload).map(|_| Vec::new()),
        Kind::Relocated => entries.ok().map(|e| owned(sn.expect("a header"), e)),
        Kind::Batch => ops.ok().map(|ops| {
            let puts = ops.into_iter().filter_map(|(k, v)| Some((k, v?))).collect();
            owned(sn.expect("a header"), puts)
        }),
        Kind::Commit => commit.map(|_| Vec::new()),
        Kind::PageImage | Kind::PageDelta => page.map(|_| Vec::new()),
        Kind::Pad | Kind::Fragment => Some(Vec::new()),
        other => panic!("a kind the fuzz targets do not know yet: {other:?}"),
    }
}

/// A page record as its byte table says (see `helio_core::log::page`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReferencePage<'a> {
    /// The snapshot number it was captured at.
    pub sn: u64,
    /// The previous record's address (`None`: u64::MAX, an image).
    pub prev: Option<u64>,
    /// The page's low key.
    pub low: &'a [u8],
    /// The page's high key (`None`: a length of u32::MAX).
    pub high: Option<&'a [u8]>,
    /// Its versions, in order.
    pub entries: Vec<PageEntry<'a>>,
}

/// A page record's payload (`u64 sn, u64 prev, u32 low_len, low, u32 high_len, high, u32 count`,
/// `u32 blocks`, `blocks` times `u32 end, u32 crc, u32 first_len, first`, `u32 crc` of all of
/// that, then `count` times `u64 sn, u32 key_len, u32 value_len, key, value`; u32::MAX lengths
/// mark no high key and a tombstone), written plainly: the front, every version up to the end
/// of the payload, then the rules (the front's checksum; as many versions as the count says,
/// low below high, keys in order and in the page; the blocks cut the entries at entry starts,
/// the first at the first entry and the last ending at the payload's end, each with its checksum
/// and starting with its first key, no key in two blocks; blocks if and only if versions).
pub fn reference_page(payload: &[u8]) -> Option<ReferencePage<'_>> {
    /// `len` bytes at `at`, if there are that many.
    fn bytes_at(payload: &[u8], at: usize, len: u32) -> Option<&[u8]> {
        (payload.len() >= at && (payload.len() - at) as u64 >= u64::from(len))
            .then(|| &payload[at..at + len as usize])
    }
    if payload.len() < 20 || le32(&payload[16..]) == u32::MAX {
        return None;
    }
    let (sn, prev) = (le64(payload), le64(&payload[8..]));
    let low = bytes_at(payload, 20, le32(&payload[16..]))?;
    let mut at = 20 + low.len();
    let high_len = le32(bytes_at(payload, at, 4)?);
    at += 4;
    let high = match high_len {
        u32::MAX => None,
        len => Some(bytes_at(payload, at, len)?),
    };
    at += high.map_or(0, <[u8]>::len);
    let count = le32(bytes_at(payload, at, 4)?);
    let block_count = le32(bytes_at(payload, at + 4, 4)?);
    at += 8;
    let mut blocks = Vec::new(); // (end from the entries' start, crc, first key)
    for _ in 0..block_count {
        let fixed = bytes_at(payload, at, 12)?;
        let (end, crc, first_len) = (le32(fixed), le32(&fixed[4..]), le32(&fixed[8..]));
        if first_len == u32::MAX {
            return None;
        }
        let first = bytes_at(payload, at + 12, first_len)?;
        at += 12 + first.len();
        blocks.push((end as usize, crc, first));
    }
    if le32(bytes_at(payload, at, 4)?) != crc32c_of(&payload[..at]) {
        return None;
    }
    at += 4;
    let entries_at = at;
    let mut entries = Vec::new();
    let mut starts = Vec::new();
    while at < payload.len() {
        let fixed = bytes_at(payload, at, 16)?;
        let (sn, key_len, value_len) = (le64(fixed), le32(&fixed[8..]), le32(&fixed[12..]));
        if key_len == u32::MAX {
            return None;
        }
        starts.push(at - entries_at);
        let key = bytes_at(payload, at + 16, key_len)?;
        at += 16 + key.len();
        let value = match value_len {
            u32::MAX => None,
            len => Some(bytes_at(payload, at, len)?),
        };
        at += value.map_or(0, <[u8]>::len);
        entries.push(PageEntry { key, value, sn });
    }
    if entries.len() as u64 != u64::from(count) || blocks.is_empty() != entries.is_empty() {
        return None;
    }
    if let Some(high) = high {
        if high <= low || entries.iter().any(|e| e.key >= high) {
            return None;
        }
    }
    if entries.iter().any(|e| e.key < low) || entries.windows(2).any(|w| w[1].key < w[0].key) {
        return None;
    }
    let body = &payload[entries_at..];
    let mut start = 0;
    for (i, &(end, crc, first)) in blocks.iter().enumerate() {
        let last = i + 1 == blocks.len();
        let Some(entry) = starts.iter().position(|&s| s == start) else {
            return None;
        };
        let ends_right = if last { end == body.len() } else { starts.contains(&end) };
        if end <= start || !ends_right || entries[entry].key != first || crc32c_of(&body[start..end]) != crc {
            return None;
        }
        if entry > 0 && entries[entry - 1].key == first {
            return None; // the key's versions would be in two blocks
        }
        start = end;
    }
    let prev = (prev != u64::MAX).then_some(prev);
    Some(ReferencePage { sn, prev, low, high, entries })
}

/// `PageRecord::decode` of `payload`, checked against [`reference_page`]; a record that decodes
/// has its versions in place in the payload, and `PageWriter` writes it back to the same bytes.
pub fn page_checked(payload: &[u8]) -> Option<PageRecord<'_>> {
    let record = PageRecord::decode(payload);
    let got = record.map(|r| ReferencePage {
        sn: r.sn,
        prev: r.prev,
        low: r.low,
        high: r.high,
        entries: r.entries().collect(),
    });
    assert_eq!(got, reference_page(payload), "PageRecord::decode disagrees");
    if let Some(record) = &record {
        assert_eq!(record.count as usize, record.entries().count());
        let mut writer = PageWriter::new();
        writer.start(record.sn, record.prev, record.low, record.high);
        let payload_range = payload.as_ptr_range();
        for entry in record.entries() {
            assert!(
                payload_range.contains(&entry.key.as_ptr()) || entry.key.is_empty(),
                "a key not in place"
            );
            writer.push(entry.key, entry.value, entry.sn);
        }
        assert_eq!(writer.entries(), record.count);
        // The writer cuts blocks its own way: the bytes match where they are its cut.
        if writer.payload() != payload {
            let rewritten = writer.payload().to_vec();
            let back: Option<Vec<_>> = PageRecord::decode(&rewritten).map(|r| r.entries().collect());
            assert_eq!(
                back,
                Some(record.entries().collect()),
                "a page record rewritten holds other versions"
            );
        }
        // A point read of one block finds every version of its key the record holds.
        let front = PageFront::decode(payload).expect("the front of a record that decodes");
        for entry in record.entries() {
            let block = front.block_of(entry.key).expect("a block for every key");
            let part = &payload[block.start..block.end];
            let found =
                block_entries(part, block.crc, block.first).expect("a block of a record that decodes");
            let found: Vec<_> = found.filter(|e| e.key == entry.key).collect();
            let all: Vec<_> = record.entries().filter(|e| e.key == entry.key).collect();
            assert_eq!(found, all, "a block misses versions of its key");
        }
        for cut in 0..front.len() {
            assert_eq!(PageFront::decode(&payload[..cut]).err(), Some(FrontError::Short));
        }
        assert_ne!(record.prev, Some(NO_PREV));
    }
    record
}

/// A page record's payload from the input, as `PageWriter` writes it: an image, or a delta on a
/// record at an address from the input; up to 5 versions with keys of up to 8 bytes, the page
/// from the empty key or the first key, to the end of the key space or just past the last key.
pub fn page_payload(input: &mut Input<'_>, delta: bool) -> Vec<u8> {
    let sn = input.sn();
    let prev = delta.then(|| u64::from(input.u32()) * 8);
    let flags = input.u8();
    let mut versions: Vec<(Vec<u8>, Option<Vec<u8>>, u64)> = (0..flags % 6)
        .map(|_| {
            let key = input.vec(8);
            let value = (!input.u8().is_multiple_of(4)).then(|| input.vec(24));
            (key, value, input.sn())
        })
        .collect();
    versions.sort_by(|a, b| a.0.cmp(&b.0));
    let low = match versions.first() {
        Some((key, _, _)) if flags & 0x40 != 0 => key.clone(),
        _ => Vec::new(),
    };
    let high = (flags & 0x80 == 0).then(|| {
        let mut high = versions.last().map_or_else(Vec::new, |(key, _, _)| key.clone());
        high.push(0);
        high
    });
    let mut writer = PageWriter::new();
    writer.start(sn, prev, &low, high.as_deref());
    for (key, value, sn) in &versions {
        writer.push(key, value.as_deref(), *sn);
    }
    writer.payload().to_vec()
}

/// The assembler's rule, written from `fragment.rs`'s description: a piece at offset 0 starts a
/// record (dropping an unfinished one); a later piece must continue it exactly (same kind and
/// total, the next offset, not past the total); the record is whole at `total` bytes. Anything
/// else is refused and drops the record being assembled.
#[derive(Default)]
pub struct ModelAssembler {
    kind: Option<Kind>,
    total: u64,
    bytes: Vec<u8>,
}

impl ModelAssembler {
    /// What `Assembler::push` must answer for a fragment with this payload (`Err` for a refusal).
    #[allow(clippy::result_unit_err)]
    pub fn push(&mut self, payload: &[u8]) -> Result<Option<(Kind, Vec<u8>)>, ()> {
        if payload.len() < FRAGMENT_HEADER_BYTES || payload[1..8].iter().any(|&b| b != 0) {
            return Err(());
        }
        let kind = match Kind::from_byte(payload[0]) {
            Some(Kind::Pad | Kind::Fragment) | None => return Err(()),
            Some(kind) => kind,
        };
        let total = le64(&payload[8..]);
        let offset = le64(&payload[16..]);
        let piece = &payload[FRAGMENT_HEADER_BYTES..];
        if offset == 0 {
            self.bytes.clear();
            self.kind = Some(kind);
            self.total = total;
        }
        let continues = self.kind == Some(kind)
            && self.total == total
            && self.bytes.len() as u64 == offset
            && u128::from(offset) + piece.len() as u128 <= u128::from(total);
        if !continues {
            self.kind = None;
            return Err(());
        }
        self.bytes.extend_from_slice(piece);
        if (self.bytes.len() as u64) < self.total {
            return Ok(None);
        }
        self.kind = None;
        Ok(Some((kind, self.bytes.clone())))
    }
}

/// A fragment payload: `u8 kind, 7 zero bytes, u64 total, u64 offset, piece`.
pub fn fragment_payload(kind: u8, pad: [u8; 7], total: u64, offset: u64, piece: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&pad);
    out.extend_from_slice(&total.to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(piece);
    out
}

/// A frame as the writer encoded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// Its address.
    pub lsn: u64,
    /// The durable point it was encoded with.
    pub durable_lsn: u64,
    /// Its epoch.
    pub epoch: u32,
    /// Its kind.
    pub kind: Kind,
    /// Its payload.
    pub payload: Vec<u8>,
    /// Log bytes it takes.
    pub bytes: usize,
}

/// A valid log as the writer leaves it: frames one after another from `base`, epochs and
/// durable points never decreasing, each durable point a frame boundary at or below the frame.
pub struct LogBuilder {
    /// The log's salt.
    pub salt: u64,
    /// Address of the first byte.
    pub base: u64,
    /// The bytes.
    pub log: Vec<u8>,
    /// The frames, in order.
    pub frames: Vec<Written>,
    /// The current epoch.
    pub epoch: u32,
    /// The current durable point.
    pub durable_lsn: u64,
}

impl LogBuilder {
    /// An empty log at `base` (a multiple of [`ALIGN`]).
    pub fn new(salt: u64, base: u64, epoch: u32) -> Self {
        assert_eq!(base % ALIGN as u64, 0);
        Self {
            salt,
            base,
            log: Vec::new(),
            frames: Vec::new(),
            epoch: epoch.min(EPOCH_MAX),
            durable_lsn: base,
        }
    }

    /// Where the next frame goes.
    pub fn next_lsn(&self) -> u64 {
        self.base + self.log.len() as u64
    }

    /// Frame boundaries so far (the base, then each frame's end).
    pub fn boundaries(&self) -> impl Iterator<Item = u64> + '_ {
        core::iter::once(self.base).chain(self.frames.iter().map(|f| f.lsn + f.bytes as u64))
    }

    /// Moves the durable point to the `n`th boundary counted back from the end (never back).
    pub fn sync_to(&mut self, back: usize) {
        let boundaries: Vec<u64> = self.boundaries().collect();
        let at = boundaries[boundaries.len() - 1 - back.min(boundaries.len() - 1)];
        self.durable_lsn = self.durable_lsn.max(at);
    }

    /// A later epoch (as after a recovery).
    pub fn bump_epoch(&mut self, by: u32) {
        self.epoch = self.epoch.saturating_add(by).min(EPOCH_MAX);
    }

    /// Appends a frame.
    pub fn push(&mut self, kind: Kind, payload: &[u8]) {
        let lsn = self.next_lsn();
        let bytes = frame_bytes(payload.len());
        let start = self.log.len();
        self.log.resize(start + bytes, 0xEE);
        let stamp = Stamp { salt: self.salt, epoch: self.epoch };
        encode(&mut self.log[start..], stamp, lsn, self.durable_lsn, kind, payload);
        self.frames.push(Written {
            lsn,
            durable_lsn: self.durable_lsn,
            epoch: self.epoch,
            kind,
            payload: payload.to_vec(),
            bytes,
        });
    }

    /// Appends an op record.
    pub fn push_op(&mut self, op: &Op<'_>) {
        let mut payload = vec![0; op.payload_len()];
        op.write_payload(&mut payload);
        self.push(op.kind(), &payload);
    }

    /// Appends a record of `kind` as fragments, pieces of at most `piece` bytes.
    pub fn push_fragmented(&mut self, kind: Kind, payload: &[u8], piece: usize) {
        let max = FRAGMENT_HEADER_BYTES + piece.max(1);
        for (offset, len) in helio_core::log::fragment::pieces(payload.len(), max) {
            let mut out = vec![0; FRAGMENT_HEADER_BYTES + len];
            helio_core::log::fragment::write_fragment(&mut out, kind, payload, offset, len);
            self.push(Kind::Fragment, &out);
        }
    }
}

/// Decodes a log from its start as recovery does: frame after frame, each at the address where
/// the previous one ended, the epoch floor rising with the frames read, until one does not
/// decode. Returns the frames and the offset where decoding stopped.
pub fn scan(log: &[u8], base: u64, salt: u64) -> (Vec<Frame<'_>>, usize, u32) {
    let (mut frames, mut at, mut min_epoch) = (Vec::new(), 0usize, 0u32);
    while at < log.len() {
        match decode_checked(&log[at..], base.wrapping_add(at as u64), salt, min_epoch) {
            Decoded::Frame(frame) => {
                min_epoch = frame.epoch;
                at += frame.bytes;
                frames.push(frame);
            }
            _ => break,
        }
    }
    (frames, at, min_epoch)
}
