//! Page records and the page table (`log::page`): `PageRecord::decode` of arbitrary payloads,
//! `PageTable::decode` of arbitrary table files (and of arbitrary bodies sealed with the right
//! checksum, so that the fuzzer gets past it), and `PageTable::fold` of images and deltas built
//! from the input over a small key space.
//!
//! Checks:
//! - `PageRecord::decode` agrees with a reference decoder written from the byte table (see
//!   `page_checked`); a record that decodes writes back to the same bytes, and folds into an
//!   empty table as its kind allows.
//! - `PageTable::decode` agrees with a reference decoder written from the byte table in
//!   `page.rs` (magic, version, checksum, exact length, entries in key order, none overlapping
//!   or empty); whatever decodes encodes back to the same bytes and tiles the key space.
//! - Folding: after every record, each key of the space is held by the entry of the latest
//!   image holding it (its addr moved on by the deltas since whose range holds the key, its
//!   segments and items counted up), or by none; a delta whose prev is not the addr of the entry holding its
//!   low key is `Orphan`, a record of the wrong kind `WrongKind`, and either leaves the table
//!   as it was; the tiles cover the key space in order; the table round-trips through its file.
//!
//! Input: `u8 mode`; mode 0 takes the rest as a page record's payload, mode 1 as a table file,
//! mode 2 as a table file's body (sealed here), mode 3 as records to fold, each a `u8` choice
//! and its values.
#![no_main]

use helio_core::log::crc32c_of;
use helio_core::log::cut::Commit;
use helio_core::log::frame::Kind;
use helio_core::log::page::{Link, PageRecord, PageTable, PageWriter, TableEntry, TableError, TableMark};
use helio_core_fuzz::{page_checked, Input};
use libfuzzer_sys::fuzz_target;

fn le32(bytes: &[u8]) -> u32 {
    u32::from_le_bytes(bytes[..4].try_into().unwrap())
}

fn le64(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[..8].try_into().unwrap())
}

/// A table file as its byte table says, written plainly: its mark and entries, or `None`.
fn reference_table(bytes: &[u8]) -> Option<(TableMark, Vec<TableEntry>)> {
    if bytes.len() < 48 {
        return None;
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32c_of(body) != le32(crc) || &body[..8] != b"HELIOPGT" || le32(&body[8..]) != 1 {
        return None;
    }
    let (position, count) = (le64(&body[12..]), le32(&body[28..]));
    let field = |at: usize| -> Option<(Option<&[u8]>, usize)> {
        if body.len() < at + 4 {
            return None;
        }
        let len = le32(&body[at..]);
        if len == u32::MAX {
            return Some((None, at + 4));
        }
        let end = (at + 4).checked_add(len as usize)?;
        (end <= body.len()).then(|| (Some(&body[at + 4..end]), end))
    };
    let mut at = 32;
    let mut entries: Vec<TableEntry> = Vec::new();
    for _ in 0..count {
        let (lo, after) = field(at)?;
        let (hi, after) = field(after)?;
        if body.len() < after + 16 {
            return None;
        }
        let fixed = &body[after..after + 16];
        let segments = le32(&fixed[8..]);
        // The chain: `segments` links (address, payload bytes), newest first; at least one.
        let chain_end = (after + 16).checked_add((segments as usize).checked_mul(12)?)?;
        if segments == 0 || body.len() < chain_end {
            return None;
        }
        let chain: Vec<Link> = body[after + 16..chain_end]
            .chunks(12)
            .map(|link| Link { addr: le64(link), bytes: le32(&link[8..]) })
            .collect();
        entries.push(TableEntry {
            lo: lo?.into(),
            hi: hi.map(Into::into),
            addr: chain[0].addr,
            sn: le64(fixed),
            segments,
            items: le32(&fixed[12..]),
            chain,
        });
        at = chain_end;
    }
    // The complete commit: u64 sn, u32 shards, that many u64 ends, and nothing after.
    let commit = body.get(at..)?;
    let (sn, shards) = (le64(commit.get(..8)?), le32(commit.get(8..12)?) as usize);
    if commit.len() != 12 + shards.checked_mul(8)? {
        return None;
    }
    let ends = commit[12..].chunks(8).map(le64).collect();
    for (i, entry) in entries.iter().enumerate() {
        if entry.hi.as_ref().is_some_and(|hi| *hi <= entry.lo) {
            return None;
        }
        if i > 0 && entries[i - 1].hi.as_ref().is_none_or(|hi| *hi > entry.lo) {
            return None;
        }
    }
    Some((TableMark { position, commit: Commit { sn, ends } }, entries))
}

/// The tiles of `table` cover the key space in order, its entries among them as they are.
fn check_tiles(table: &PageTable) {
    let tiles: Vec<_> = table.tiles().collect();
    assert_eq!(tiles[0].0, b"", "the first tile starts at the empty key");
    assert_eq!(tiles.last().unwrap().1, None, "the last tile is unbounded");
    for pair in tiles.windows(2) {
        assert_eq!(pair[0].1, Some(pair[1].0), "tiles meet");
        assert!(pair[0].2.is_some() || pair[1].2.is_some(), "two gaps in a row");
    }
    for (lo, hi, entry) in &tiles {
        assert!(hi.is_none_or(|hi| *lo < hi), "an empty tile");
        if let Some(entry) = entry {
            assert_eq!((&entry.lo[..], entry.hi.as_deref()), (*lo, *hi));
        }
    }
    let entries: Vec<_> = tiles.iter().filter_map(|t| t.2).collect();
    assert_eq!(entries, table.entries().collect::<Vec<_>>());
    assert_eq!(entries.len(), table.len());
}

/// `PageTable::decode` of `bytes`, checked against [`reference_table`].
fn table_checked(bytes: &[u8]) {
    let got = PageTable::decode(bytes);
    let want = reference_table(bytes);
    match (&got, want) {
        (Ok((mark, table)), Some((want_mark, want_entries))) => {
            assert_eq!(*mark, want_mark);
            assert_eq!(table.entries().cloned().collect::<Vec<_>>(), want_entries);
            assert_eq!(table.encode(mark), bytes, "a table file re-encodes to other bytes");
            check_tiles(table);
        }
        (Err(TableError::Corrupt), None) => {}
        (got, want) => panic!("PageTable::decode gave {got:?}, the byte table says {want:?}"),
    }
}

/// Keys of the fold's key space: the empty key, then single bytes 0..16.
fn universe() -> Vec<Vec<u8>> {
    std::iter::once(Vec::new()).chain((0u8..16).map(|k| vec![k])).collect()
}

/// A key of the space from the input (`None`: the empty key).
fn key(input: &mut Input<'_>) -> Vec<u8> {
    match input.u8() % 17 {
        16 => Vec::new(),
        k => vec![k],
    }
}

fn fold_from(mut input: Input<'_>) {
    let keys = universe();
    let mut table = PageTable::new();
    // Per key: the addr, sn, segments and items of the entry that must hold it.
    let mut model: Vec<Option<(u64, u64, u32, u32)>> = vec![None; keys.len()];
    let mut lsn = 0u64;
    for _ in 0..48 {
        if input.is_empty() {
            break;
        }
        let choice = input.u8();
        lsn += 8 * (1 + u64::from(choice >> 6));
        let sn = input.sn();
        let before = table.clone();
        let mut writer = PageWriter::new();
        match choice % 4 {
            0 | 1 => {
                let (low, high) = (key(&mut input), (choice & 0x10 == 0).then(|| key(&mut input)));
                if high.as_ref().is_some_and(|high| *high <= low) {
                    continue;
                }
                writer.start(sn, None, &low, high.as_deref());
                for k in keys.iter().filter(|k| *k >= &low && high.as_ref().is_none_or(|h| *k < h)) {
                    if input.u8() & 1 != 0 {
                        writer.push(k, (choice & 0x20 == 0).then_some(b"v"), sn);
                    }
                }
                let record = PageRecord::decode(writer.payload()).expect("a record as written");
                let kind = if choice & 0x08 == 0 { Kind::PageImage } else { Kind::PageDelta };
                let got = table.fold(lsn, kind, &record);
                if kind == Kind::PageDelta {
                    assert_eq!(got, Err(TableError::WrongKind { lsn }), "an image folded as a delta");
                    assert_eq!(table, before);
                    continue;
                }
                assert_eq!(got, Ok(()));
                for (k, m) in keys.iter().zip(model.iter_mut()) {
                    if *k >= low && high.as_ref().is_none_or(|h| k < h) {
                        *m = Some((lsn, sn, 1, record.count));
                    }
                }
            }
            _ => {
                let at = key(&mut input);
                let covering = table.covering(&at).cloned();
                let right = choice & 0x10 == 0;
                let prev = match &covering {
                    Some(entry) if right => entry.addr,
                    Some(entry) => entry.addr ^ (8 << (choice & 7)),
                    None => lsn - 8,
                };
                let (low, high) =
                    covering.as_ref().map_or((at.clone(), None), |e| (e.lo.to_vec(), e.hi.clone()));
                // The delta's range starts at the key (inside the entry) or at the entry's low key.
                let low = if choice & 0x20 != 0 { at } else { low };
                writer.start(sn, Some(prev), &low, high.as_deref());
                for _ in 0..input.u8() % 3 {
                    writer.push(&low, None, sn);
                }
                let record = PageRecord::decode(writer.payload()).expect("a record as written");
                let kind = if choice & 0x08 == 0 { Kind::PageDelta } else { Kind::PageImage };
                let got = table.fold(lsn, kind, &record);
                match covering {
                    _ if kind == Kind::PageImage => {
                        assert_eq!(got, Err(TableError::WrongKind { lsn }), "a delta folded as an image");
                        assert_eq!(table, before);
                    }
                    Some(entry) if right => {
                        assert_eq!(got, Ok(()));
                        for (k, m) in keys.iter().zip(model.iter_mut()) {
                            if k[..] >= *entry.lo && entry.hi.as_deref().is_none_or(|h| &k[..] < h) {
                                assert_eq!(*m, Some((entry.addr, entry.sn, entry.segments, entry.items)));
                            }
                            // The delta speaks for its own keys: below its low key the stretch
                            // keeps what it had.
                            if k[..] >= low[..] && entry.hi.as_deref().is_none_or(|h| &k[..] < h) {
                                *m = Some((
                                    lsn,
                                    sn,
                                    entry.segments + 1,
                                    entry.items.saturating_add(record.count),
                                ));
                            }
                        }
                    }
                    _ => {
                        assert_eq!(got, Err(TableError::Orphan { lsn }), "a delta on the wrong record");
                        assert_eq!(table, before);
                    }
                }
            }
        }
        for (k, want) in keys.iter().zip(&model) {
            let got = table.covering(k).map(|e| (e.addr, e.sn, e.segments, e.items));
            assert_eq!(got, *want, "the entry holding {k:?}");
        }
        check_tiles(&table);
    }
    let mark = TableMark { position: lsn, commit: Commit { sn: lsn, ends: vec![lsn, 7] } };
    let bytes = table.encode(&mark);
    assert_eq!(PageTable::decode(&bytes), Ok((mark, table)));
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    match input.u8() % 4 {
        0 => {
            let payload = input.rest();
            if let Some(record) = page_checked(payload) {
                let (kind, other) = match record.prev {
                    None => (Kind::PageImage, Kind::PageDelta),
                    Some(_) => (Kind::PageDelta, Kind::PageImage),
                };
                let mut table = PageTable::new();
                assert_eq!(table.fold(8, other, &record), Err(TableError::WrongKind { lsn: 8 }));
                match table.fold(8, kind, &record) {
                    Ok(()) => {
                        assert_eq!(kind, Kind::PageImage);
                        let entry = table.covering(record.low).expect("the image's stretch");
                        assert_eq!((entry.addr, entry.sn, entry.items), (8, record.sn, record.count));
                        assert_eq!(table.len(), 1);
                    }
                    Err(e) => assert_eq!((kind, e), (Kind::PageDelta, TableError::Orphan { lsn: 8 })),
                }
                check_tiles(&table);
            }
        }
        1 => table_checked(input.rest()),
        2 => {
            let mut bytes = input.rest().to_vec();
            let crc = crc32c_of(&bytes);
            bytes.extend_from_slice(&crc.to_le_bytes());
            table_checked(&bytes);
        }
        _ => fold_from(input),
    }
});
