//! The check of a page table's chains against the page records a log holds (what
//! `helio check` verifies besides the checksums): every record a stretch names is in the log,
//! as long as the table says, the chain runs from its newest record back through deltas, each
//! naming the next as its `prev`, to one image, with snapshot numbers that never rise going
//! back, and every record of it covers the stretch's keys.
//!
//! The runtime reads the log and hands over what it found of each page record
//! ([`RecordSummary`]); nothing here does I/O.

use alloc::boxed::Box;

use super::frame::Kind;
use super::page::{PageRecord, PageTable, TableEntry};

/// What a chain check needs of one page record read from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordSummary {
    /// [`Kind::PageImage`] or [`Kind::PageDelta`].
    pub kind: Kind,
    /// The payload's length.
    pub bytes: u32,
    /// The snapshot number it was captured at.
    pub sn: u64,
    /// The previous record of its page (a delta's).
    pub prev: Option<u64>,
    /// Its page's low key.
    pub low: Box<[u8]>,
    /// Its page's high key (`None`: unbounded).
    pub high: Option<Box<[u8]>>,
}

impl RecordSummary {
    /// The summary of a decoded record of `kind`.
    pub fn of(kind: Kind, record: &PageRecord<'_>, bytes: u32) -> Self {
        Self {
            kind,
            bytes,
            sn: record.sn,
            prev: record.prev,
            low: record.low.into(),
            high: record.high.map(Into::into),
        }
    }

    /// Whether the record's page holds every key of `entry`'s stretch.
    fn covers(&self, entry: &TableEntry) -> bool {
        let low_ok = *self.low <= *entry.lo;
        let high_ok = match (&self.high, &entry.hi) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(high), Some(hi)) => hi <= high,
        };
        low_ok && high_ok
    }
}

/// Why a stretch's chain does not check out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChainFault {
    /// The table names a record the log does not hold (below its head, or never written).
    Missing {
        /// The stretch's low key.
        lo: Box<[u8]>,
        /// The record's address.
        addr: u64,
    },
    /// The chain's shape is wrong: its length is not `segments`, `addr` does not head it, a
    /// delta's `prev` is not the next record, it does not end in an image (or has an image
    /// before its end), a record is not as long as the table says, a snapshot number rises
    /// going back, or a record does not cover the stretch.
    Broken {
        /// The stretch's low key.
        lo: Box<[u8]>,
        /// The record at fault.
        addr: u64,
        /// What is wrong, in words.
        why: &'static str,
    },
}

impl core::fmt::Display for ChainFault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Missing { lo, addr } => {
                write!(
                    f,
                    "the stretch from \"{}\" names the record at {addr}, which the log does not hold",
                    lo.escape_ascii()
                )
            }
            Self::Broken { lo, addr, why } => {
                write!(
                    f,
                    "the chain of the stretch from \"{}\", at the record at {addr}: {why}",
                    lo.escape_ascii()
                )
            }
        }
    }
}

/// Checks every chain of `table` against the records `record` finds by address; returns the
/// records named (each counted once per stretch naming it) or the first fault.
pub fn check_chains<'a>(
    table: &PageTable,
    record: impl Fn(u64) -> Option<&'a RecordSummary>,
) -> Result<u64, ChainFault> {
    let mut named = 0;
    for entry in table.entries() {
        check_entry(entry, &record)?;
        named += entry.chain.len() as u64;
    }
    Ok(named)
}

fn check_entry<'a>(
    entry: &TableEntry,
    record: &impl Fn(u64) -> Option<&'a RecordSummary>,
) -> Result<(), ChainFault> {
    let broken = |addr, why| ChainFault::Broken { lo: entry.lo.clone(), addr, why };
    if entry.chain.len() != entry.segments as usize {
        return Err(broken(entry.addr, "the chain is not `segments` records long"));
    }
    if entry.chain.first().map(|link| link.addr) != Some(entry.addr) {
        return Err(broken(entry.addr, "the stretch's addr does not head its chain"));
    }
    let mut newer_sn = u64::MAX;
    for (i, link) in entry.chain.iter().enumerate() {
        let found = record(link.addr).ok_or(ChainFault::Missing { lo: entry.lo.clone(), addr: link.addr })?;
        let next = entry.chain.get(i + 1).map(|l| l.addr);
        match (found.kind, next) {
            (Kind::PageDelta, Some(next)) if found.prev == Some(next) => {}
            (Kind::PageDelta, Some(_)) => {
                return Err(broken(link.addr, "a delta whose prev is not the next record"))
            }
            (Kind::PageImage, None) => {}
            (Kind::PageImage, Some(_)) => return Err(broken(link.addr, "an image before the chain's end")),
            _ => return Err(broken(link.addr, "the chain does not end in an image")),
        }
        if found.bytes != link.bytes {
            return Err(broken(link.addr, "the record is not as long as the table says"));
        }
        if found.sn > newer_sn || (i == 0 && found.sn != entry.sn) {
            return Err(broken(link.addr, "snapshot numbers out of order"));
        }
        if !found.covers(entry) {
            return Err(broken(link.addr, "the record's page does not cover the stretch"));
        }
        newer_sn = found.sn;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::page::PageWriter;
    use alloc::collections::BTreeMap;
    use alloc::vec::Vec;

    /// A log of page records by address, folded into a table as recovery folds them.
    #[derive(Default)]
    struct Log {
        records: BTreeMap<u64, RecordSummary>,
        table: PageTable,
    }

    impl Log {
        fn write(&mut self, lsn: u64, sn: u64, prev: Option<u64>, low: &[u8], high: Option<&[u8]>) {
            let mut writer = PageWriter::new();
            writer.start(sn, prev, low, high);
            writer.push(low, Some(b"v"), sn);
            let payload = writer.payload().to_vec();
            let record = PageRecord::decode(&payload).unwrap();
            let kind = if prev.is_some() { Kind::PageDelta } else { Kind::PageImage };
            self.table.fold(lsn, kind, &record).unwrap();
            self.records.insert(lsn, RecordSummary::of(kind, &record, payload.len() as u32));
        }

        fn check(&self) -> Result<u64, ChainFault> {
            check_chains(&self.table, |addr| self.records.get(&addr))
        }
    }

    /// What a broken chain should be reported as, and how to break one.
    type Breakage = (&'static str, fn(&mut Log));

    fn sample() -> Log {
        let mut log = Log::default();
        log.write(8, 1, None, b"", None);
        log.write(16, 2, Some(8), b"", None);
        // A split: the right half's image carves [m, ∞) out; the left keeps the chain.
        log.write(24, 3, None, b"m", None);
        log.write(32, 4, Some(16), b"", Some(b"m"));
        log
    }

    #[test]
    fn chains_that_recovery_folds_check_out() {
        assert_eq!(sample().check(), Ok(4));
    }

    #[test]
    fn a_record_the_log_lost_is_missing() {
        let mut log = sample();
        log.records.remove(&8);
        assert_eq!(log.check(), Err(ChainFault::Missing { lo: Box::from(&b""[..]), addr: 8 }));
    }

    #[test]
    fn each_kind_of_broken_chain_is_found() {
        let faults: [Breakage; 6] = [
            ("a delta whose prev is not the next record", |l| l.records.get_mut(&32).unwrap().prev = Some(9)),
            ("the chain does not end in an image", |l| l.records.get_mut(&8).unwrap().kind = Kind::PageDelta),
            ("an image before the chain's end", |l| l.records.get_mut(&16).unwrap().kind = Kind::PageImage),
            ("the record is not as long as the table says", |l| l.records.get_mut(&16).unwrap().bytes += 1),
            ("snapshot numbers out of order", |l| l.records.get_mut(&8).unwrap().sn = 9),
            ("the record's page does not cover the stretch", |l| {
                l.records.get_mut(&16).unwrap().high = Some(Box::from(&b"c"[..]))
            }),
        ];
        for (want, break_it) in faults {
            let mut log = sample();
            break_it(&mut log);
            match log.check() {
                Err(ChainFault::Broken { why, .. }) => assert_eq!(why, want),
                other => panic!("{want}: {other:?}"),
            }
        }
        let mut short = sample();
        let entries: Vec<TableEntry> = short.table.entries().cloned().collect();
        let mut table = PageTable::new();
        for mut e in entries {
            e.segments += 1;
            table.insert(e);
        }
        short.table = table;
        assert!(matches!(
            short.check(),
            Err(ChainFault::Broken { why: "the chain is not `segments` records long", .. })
        ));
    }
}
