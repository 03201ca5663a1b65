//! Page records on their way to the log, on the shard's cleaner thread: pages captured into
//! records, appended a batch at a time, made recoverable, then named to the tree and folded
//! into the flusher's page table (the decisions of what a record holds are the core's, see
//! `helio_core::Tree::capture`).
//!
//! A batch is recoverable once its records are durable and a commit past their snapshot is
//! (so that no recovery's cut drops a write they hold). Waiting for that device flush is most
//! of what a small batch costs, so batches overlap: a batch's flush is asked for as soon as it
//! is appended, and waited for only once the next batch has been captured and appended (or
//! there is no next). The commit a batch waits for is usually one the batch before it began,
//! so that most batches cost one device flush, which runs while the next is captured.

use helio_core::log::frame::Kind;
use helio_core::log::page::PageRecord;
use helio_core::{Capture, Captured, Snapshot};

use super::flush::Flusher;
use super::{Inner, ShardError};

/// Pages whose records are asked for ahead of their captures at a time (a capture due an image
/// reads a swapped-out page's whole chain back).
const PREFETCH_PAGES: usize = 16;

/// A page captured, with the record to append for it (if any).
type Staged = (Capture, Option<(Kind, Vec<u8>)>);

/// What writing pages did: the pages captured whose records are now recoverable and named
/// (or that held nothing new), the batches appended, and the low keys of the pages found busy
/// (not captured: see [`Captured::Busy`]).
#[derive(Default)]
pub(super) struct Written {
    pub(super) captures: Vec<Capture>,
    pub(super) batches: u64,
    pub(super) busy: Vec<Box<[u8]>>,
}

/// Why pages are written: the counter of [`super::CleanStats`] their record bytes go to, as
/// each batch is named (so that a long swap pass or round is counted as it goes, not at its
/// end).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum Cause {
    /// A flush round (`round_page_bytes`).
    #[default]
    Round,
    /// The swapper (`swap_page_bytes`).
    Swap,
    /// The cleaner moving live records off the head (`relocated_bytes`).
    Relocation,
}

/// The batch being captured and the one appended before it, whose device flush runs
/// meanwhile. Both hold their records' payloads (the table folds them once they are
/// recoverable), so each batch is held to half the budget's batch.
#[derive(Default)]
pub(super) struct Pipeline {
    cause: Cause,
    held: Vec<Staged>,
    bytes: usize,
    held_sn: u64,
    appended: Option<Appended>,
}

/// A batch appended and asked to be made durable, not yet named to the tree.
struct Appended {
    staged: Vec<Staged>,
    addrs: Vec<Option<u64>>,
    /// Where its last record ends (0: it appended none).
    end: u64,
    /// The snapshot it was captured at.
    sn: u64,
}

impl Pipeline {
    /// An empty pipeline whose records are written for `cause`.
    pub(super) fn new(cause: Cause) -> Self {
        Self { cause, ..Self::default() }
    }

    /// Whether the page whose low key is `low` is in a batch not yet named to the tree (a page
    /// must not be captured again before its last record is named).
    pub(super) fn holds(&self, low: &[u8]) -> bool {
        let staged = self.held.iter().chain(self.appended.iter().flat_map(|a| &a.staged));
        staged.into_iter().any(|(c, _)| c.low() == low)
    }

    fn unfinished(&self) -> impl Iterator<Item = &Capture> {
        self.held.iter().chain(self.appended.iter().flat_map(|a| &a.staged)).map(|(c, _)| c)
    }
}

impl Inner {
    /// Captures the pages at `lows` (images if `image`) as `snapshot` sees them and makes
    /// every record recoverable before returning (see the module doc), counting their bytes
    /// for `cause`.
    pub(super) fn write_pages_of(
        &self,
        f: &mut Flusher,
        lows: impl IntoIterator<Item = Box<[u8]>>,
        snapshot: &Snapshot,
        image: bool,
        cause: Cause,
    ) -> Result<Written, ShardError> {
        let mut p = Pipeline::new(cause);
        let mut written = Written::default();
        self.pipe_pages(f, &mut p, lows, snapshot, image, &mut written)?;
        self.drain(f, &mut p, &mut written)?;
        Ok(written)
    }

    /// Captures the pages at `lows` into `p`, appending a batch (and finishing the one before
    /// it) whenever the next record would take the held batch past half the budget's batch (a
    /// record larger than that is held alone). What is held at the end stays held: call
    /// [`Self::seal`] or [`Self::drain`]. On an error, every page of `p` not yet named is
    /// marked dirty again (their captures cleared the mark).
    pub(super) fn pipe_pages(
        &self,
        f: &mut Flusher,
        p: &mut Pipeline,
        lows: impl IntoIterator<Item = Box<[u8]>>,
        snapshot: &Snapshot,
        image: bool,
        written: &mut Written,
    ) -> Result<(), ShardError> {
        let lows: Vec<Box<[u8]>> = lows.into_iter().collect();
        let piped = (|| {
            for chunk in lows.chunks(PREFETCH_PAGES) {
                self.prefetch_captures(f, chunk, image);
                for low in chunk {
                    match self.capture_page(f, low, snapshot, image)? {
                        Took::Page(staged) => {
                            let len = staged.1.as_ref().map_or(0, |(_, payload)| payload.len());
                            let full = p.bytes + len > self.budget.batch / 2;
                            if !p.held.is_empty() && (full || p.held_sn != snapshot.sn()) {
                                self.seal(f, p, written)?;
                            }
                            p.bytes += len;
                            p.held_sn = snapshot.sn();
                            p.held.push(staged);
                        }
                        Took::Gone => {}
                        Took::Busy => written.busy.push(low.clone()),
                    }
                }
            }
            Ok(())
        })();
        piped.inspect_err(|_| self.abandon(p.unfinished()))
    }

    /// Appends the held batch (if any), then finishes the batch appended before it: waits for
    /// its records to be recoverable and names them (their captures go to `written`).
    pub(super) fn seal(
        &self,
        f: &mut Flusher,
        p: &mut Pipeline,
        written: &mut Written,
    ) -> Result<(), ShardError> {
        let next = if p.held.is_empty() {
            None
        } else {
            let (addrs, end) = self.append_records(&p.held).inspect_err(|_| self.abandon(p.unfinished()))?;
            // A batch of pages that held nothing new appends nothing and costs no flush.
            written.batches += u64::from(end > 0);
            p.bytes = 0;
            Some(Appended { staged: std::mem::take(&mut p.held), addrs, end, sn: p.held_sn })
        };
        let previous = std::mem::replace(&mut p.appended, next);
        match previous {
            Some(batch) => {
                let finished =
                    self.finish_batch(f, batch, p.cause).inspect_err(|_| self.abandon(p.unfinished()))?;
                written.captures.extend(finished);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Appends and finishes everything `p` holds.
    pub(super) fn drain(
        &self,
        f: &mut Flusher,
        p: &mut Pipeline,
        written: &mut Written,
    ) -> Result<(), ShardError> {
        self.seal(f, p, written)?;
        self.seal(f, p, written)
    }

    /// Asks the device for the records the captures of the pages at `lows` will read back
    /// (see [`helio_core::Tree::capture_reads`]), their lengths as the table knows them.
    fn prefetch_captures(&self, f: &Flusher, lows: &[Box<[u8]>], image: bool) {
        let guard = self.tree.pin();
        let mut records = Vec::new();
        for low in lows {
            let addrs = self.tree.capture_reads(low, image, &guard);
            if addrs.is_empty() {
                continue;
            }
            let links = f.table.covering(low).map_or(&[][..], |entry| &entry.chain[..]);
            records.extend(
                addrs
                    .into_iter()
                    .map(|addr| (addr, links.iter().find(|link| link.addr == addr).map(|link| link.bytes))),
            );
        }
        drop(guard);
        self.pages.prefetch(records);
    }

    /// Captures the page at `low` into a record (an image if `image`).
    fn capture_page(
        &self,
        f: &mut Flusher,
        low: &[u8],
        snapshot: &Snapshot,
        image: bool,
    ) -> Result<Took, ShardError> {
        if f.held_busy.as_deref() == Some(low) {
            return Ok(Took::Busy);
        }
        let mut guard = self.tree.pin();
        let captured =
            self.tree.capture(low, snapshot, image, &mut f.writer, &mut guard).map_err(ShardError::Page)?;
        Ok(match captured {
            Captured::Page(c) => {
                let record = c.kind().map(|kind| (kind, f.writer.payload().to_vec()));
                Took::Page((c, record))
            }
            Captured::Gone => Took::Gone,
            Captured::Busy => Took::Busy,
        })
    }

    /// Appends the records of `staged`, returning each one's address and where the last ends,
    /// and asks for them to be made durable without waiting.
    fn append_records(&self, staged: &[Staged]) -> Result<(Vec<Option<u64>>, u64), ShardError> {
        let mut addrs = Vec::with_capacity(staged.len());
        let mut end = 0;
        for (_, record) in staged {
            addrs.push(match record {
                Some((kind, payload)) => {
                    let (addr, past) = self.log.append_located(*kind, payload)?;
                    end = past;
                    Some(addr)
                }
                None => None,
            });
        }
        if end > 0 {
            self.log.request_durable(end);
        }
        Ok((addrs, end))
    }

    /// Makes the records of `batch` recoverable: durable, then a commit past their snapshot
    /// durable (a commit covers write numbers, not these records: one begun before they were
    /// appended, the batch before's usually, does not wait for them, hence the first wait). Then
    /// tells the tree where they are and folds them into the table. If the waits fail, the
    /// pages are marked dirty again, so that no later round takes them for written.
    fn finish_batch(
        &self,
        f: &mut Flusher,
        batch: Appended,
        cause: Cause,
    ) -> Result<Vec<Capture>, ShardError> {
        // Without records there is nothing to make recoverable: the pages' newest records were
        // made so by the batches that appended them.
        let recoverable = (|| {
            if batch.end == 0 {
                return Ok(());
            }
            self.log.wait_durable_for_upkeep(batch.end)?;
            self.committer().commit(self.index, batch.sn, false)
        })();
        if let Err(e) = recoverable {
            self.abandon(batch.staged.iter().map(|(c, _)| c));
            return Err(e.into());
        }
        let guard = self.tree.pin();
        let mut out = Vec::with_capacity(batch.staged.len());
        for ((capture, record), addr) in batch.staged.into_iter().zip(batch.addrs) {
            if let (Some((kind, payload)), Some(addr)) = (record, addr) {
                self.tree.flushed(&capture, addr, &guard);
                let decoded = PageRecord::decode(&payload).expect("the core encodes what it decodes");
                f.table.fold(addr, kind, &decoded).map_err(|reason| self.table_error(reason))?;
                let mut stats = self.stats.lock().unwrap();
                stats.page_records += 1;
                stats.page_bytes_written += payload.len() as u64;
                *match cause {
                    Cause::Round => &mut stats.round_page_bytes,
                    Cause::Swap => &mut stats.swap_page_bytes,
                    Cause::Relocation => &mut stats.relocated_bytes,
                } += payload.len() as u64;
                if kind == Kind::PageImage {
                    stats.image_bytes += payload.len() as u64;
                }
            }
            out.push(capture);
        }
        Ok(out)
    }

    /// Marks the pages of `captures` dirty again: their records will not be named.
    pub(super) fn abandon<'c>(&self, captures: impl Iterator<Item = &'c Capture>) {
        let guard = self.tree.pin();
        for capture in captures {
            self.tree.abandon(capture, &guard);
        }
    }
}

/// What capturing one page gave (see [`Captured`]).
enum Took {
    Page(Staged),
    Gone,
    Busy,
}
