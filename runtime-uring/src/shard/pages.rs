//! Page records read back from the shard's log: the [`PageSource`] its tree reads swapped-out
//! pages through. A record is read where its frame starts (stamped with its own address, so a
//! read of space given back since fails rather than returning another record); readers of one
//! record at once share one read.

use std::collections::HashMap;
use std::io;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use helio_core::log::fragment::Assembler;
use helio_core::log::frame::{decode, peek, Decoded, Frame, Kind, HEADER_BYTES};
use helio_core::{PageReadError, PageSource};

use crate::disk::{read_full, DiskFile};
use crate::segments::Segments;

/// The first read of a record: a small page's image fits; a longer record is read on from
/// where it stopped.
const FIRST_READ: usize = 8 << 10;

/// The unit the device reads a file in (through the page cache): a read that ends inside one
/// reads all of it, so a record's front is read to the end of its page.
const FILE_PAGE: u64 = 4096;

/// Page records of one shard's log.
pub(crate) struct LogPages {
    segments: Segments,
    salt: u64,
    /// Segment files open for reading, by index.
    files: Mutex<HashMap<u64, Arc<dyn DiskFile>>>,
    /// Reads in progress, by address: later readers of the same record wait for the first.
    flights: Mutex<HashMap<u64, Arc<Flight>>>,
    /// Records read, and their bytes read from the files.
    pub(crate) reads: AtomicU64,
    pub(crate) read_bytes: AtomicU64,
    /// Reads that found a record in flight and waited for it.
    pub(crate) shared_reads: AtomicU64,
}

/// A record read: its kind, and the bytes read with where its payload lies in them; or why not.
type ReadResult = Result<(Kind, Arc<Vec<u8>>, Range<usize>), PageReadError>;

/// A frame read from a segment file.
struct ReadFrame {
    kind: Kind,
    /// The bytes read, from the frame's start.
    buf: Vec<u8>,
    /// Where its payload lies in `buf`.
    payload: Range<usize>,
    epoch: u32,
    /// Where the next frame starts.
    next: u64,
}

/// One read of a record, awaited by every reader of it.
#[derive(Default)]
struct Flight {
    done: Mutex<Option<ReadResult>>,
    landed: Condvar,
}

impl LogPages {
    pub(crate) fn new(segments: Segments, salt: u64) -> Self {
        Self {
            segments,
            salt,
            files: Mutex::new(HashMap::new()),
            flights: Mutex::new(HashMap::new()),
            reads: AtomicU64::new(0),
            read_bytes: AtomicU64::new(0),
            shared_reads: AtomicU64::new(0),
        }
    }

    /// Forgets the open files of segments below `index` (deleted or about to be).
    pub(crate) fn forget_below(&self, index: u64) {
        self.files.lock().unwrap().retain(|&i, _| i >= index);
    }

    fn file(&self, index: u64) -> io::Result<Arc<dyn DiskFile>> {
        if let Some(file) = self.files.lock().unwrap().get(&index) {
            return Ok(file.clone());
        }
        let file = self
            .segments
            .open(index)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "segment given back"))?;
        if let Some(fd) = file.raw_fd() {
            // Reads of records are random: without this the kernel reads ahead up to 128 KiB
            // past each (measured: 185 KB from the device per point read under a quota).
            // SAFETY: plain syscall on a descriptor the file holds open; advice only.
            unsafe { libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_RANDOM) };
        }
        self.files.lock().unwrap().insert(index, file.clone());
        Ok(file)
    }

    /// Asks the device for `records` (each a record's address and, where known, its payload's
    /// bytes) ahead of their reads, without waiting, so that the reads of a batch of records
    /// overlap instead of following one another. Advice only: a file without a descriptor (a
    /// simulated disk) takes none, and a read that comes before the bytes do simply waits.
    pub(crate) fn prefetch(&self, records: impl IntoIterator<Item = (u64, Option<u32>)>) {
        let segment_bytes = self.segments.segment_bytes();
        for (addr, bytes) in records {
            let (index, offset) = (addr / segment_bytes, addr % segment_bytes);
            let Some(fd) = self.file(index).ok().and_then(|file| file.raw_fd()) else { continue };
            let len = bytes.map_or(FIRST_READ as u64, |b| (HEADER_BYTES as u64) + u64::from(b));
            let len = len.min(segment_bytes - offset);
            // SAFETY: plain syscall on a descriptor the file holds open; advice only.
            unsafe { libc::posix_fadvise(fd, offset as i64, len as i64, libc::POSIX_FADV_WILLNEED) };
        }
    }

    /// Extends `buf` (the log's bytes from `lsn`) to `len` bytes, or to the end of the
    /// segment if that comes first.
    fn read_more(&self, lsn: u64, buf: &mut Vec<u8>, len: usize) -> io::Result<()> {
        let segment_bytes = self.segments.segment_bytes();
        let (index, offset) = (lsn / segment_bytes, lsn % segment_bytes);
        let len = len.min((segment_bytes - offset) as usize);
        let have = buf.len().min(len);
        buf.resize(len, 0);
        read_full(&*self.file(index)?, &mut buf[have..], offset + have as u64)?;
        self.read_bytes.fetch_add((len - have) as u64, Ordering::Relaxed);
        Ok(())
    }

    /// The frame at `lsn`. A frame longer than the first read is read on from where that one
    /// stopped.
    fn frame_at(&self, lsn: u64) -> Result<ReadFrame, PageReadError> {
        let fail = PageReadError { addr: lsn };
        let mut buf = Vec::new();
        let mut len = FIRST_READ;
        loop {
            self.read_more(lsn, &mut buf, len).map_err(|_| fail)?;
            match decode(&buf, lsn, self.salt, 0) {
                Decoded::Frame(frame) => {
                    let start = frame.payload.as_ptr() as usize - buf.as_ptr() as usize;
                    let payload = start..start + frame.payload.len();
                    let (kind, epoch, next) = (frame.kind, frame.epoch, lsn + frame.bytes as u64);
                    return Ok(ReadFrame { kind, buf, payload, epoch, next });
                }
                Decoded::NeedMore { bytes } if bytes > len => len = bytes,
                _ => return Err(fail),
            }
        }
    }

    /// Reads the record whose (first) frame is at `addr`: a fragmented one is assembled from
    /// the frames after it.
    fn read_record(&self, addr: u64) -> ReadResult {
        let fail = PageReadError { addr };
        let ReadFrame { kind, buf, payload: at, epoch, mut next } = self.frame_at(addr)?;
        self.reads.fetch_add(1, Ordering::Relaxed);
        if kind != Kind::Fragment {
            return Ok((kind, Arc::new(buf), at));
        }
        let payload = &buf[at];
        let mut assembler = Assembler::default();
        let frame = Frame { lsn: addr, durable_lsn: 0, epoch, kind, payload, bytes: (next - addr) as usize };
        if assembler.push(&frame).map_err(|_| fail)?.is_some() {
            return Err(fail); // a record in one fragment is not written as fragments
        }
        // The pieces of one record follow in order, other frames between them; a large record
        // is at most a few write buffers, so this walk is short.
        loop {
            let ReadFrame { kind, buf, payload: at, epoch, next: after } = self.frame_at(next)?;
            if kind == Kind::Fragment {
                let frame = Frame {
                    lsn: next,
                    durable_lsn: 0,
                    epoch,
                    kind,
                    payload: &buf[at],
                    bytes: (after - next) as usize,
                };
                if let Some((kind, whole)) = assembler.push(&frame).map_err(|_| fail)? {
                    let whole = whole.to_vec();
                    let len = whole.len();
                    return Ok((kind, Arc::new(whole), 0..len));
                }
            }
            next = after;
        }
    }
}

impl PageSource for LogPages {
    /// Reads from the frame's start to the end of the file page holding the `want`th payload
    /// byte (the device reads whole pages), and checks the header names `addr` and a page
    /// record. Parts are read from the file as they are: readers of one block do not share
    /// reads (they mostly want different blocks).
    fn read_front(
        &self,
        addr: u64,
        want: usize,
        out: &mut Vec<u8>,
    ) -> Result<Option<(Kind, usize)>, PageReadError> {
        let fail = PageReadError { addr };
        let end = (addr + (HEADER_BYTES + want) as u64).next_multiple_of(FILE_PAGE);
        out.clear();
        self.read_more(addr, out, (end - addr) as usize).map_err(|_| fail)?;
        let (kind, len) = peek(out, addr).ok_or(fail)?;
        self.reads.fetch_add(1, Ordering::Relaxed);
        match kind {
            Kind::PageImage | Kind::PageDelta => {}
            Kind::Fragment => return Ok(None),
            _ => return Err(fail),
        }
        out.truncate(HEADER_BYTES + len);
        out.drain(..HEADER_BYTES);
        Ok(Some((kind, len)))
    }

    fn read_range(&self, addr: u64, range: Range<usize>, out: &mut Vec<u8>) -> Result<(), PageReadError> {
        let fail = PageReadError { addr };
        let start = addr + (HEADER_BYTES + range.start) as u64;
        let segment_bytes = self.segments.segment_bytes();
        if start / segment_bytes != (start + range.len() as u64).saturating_sub(1) / segment_bytes {
            return Err(fail); // a frame never crosses a segment's end
        }
        out.clear();
        self.read_more(start, out, range.len()).map_err(|_| fail)?;
        (out.len() == range.len()).then_some(()).ok_or(fail)
    }

    fn read(&self, addr: u64, out: &mut Vec<u8>) -> Result<Kind, PageReadError> {
        let (flight, first) = {
            let mut flights = self.flights.lock().unwrap();
            match flights.get(&addr) {
                Some(flight) => (flight.clone(), false),
                None => {
                    let flight = Arc::new(Flight::default());
                    flights.insert(addr, flight.clone());
                    (flight, true)
                }
            }
        };
        let result = if first {
            // A read that fails is tried once more from a freshly opened file: the record may
            // have been read while its block was being rewritten (the log resumes in its last
            // block after a reopen), or through a handle of a segment since recycled.
            let result = self.read_record(addr).or_else(|_| {
                self.files.lock().unwrap().clear();
                self.read_record(addr)
            });
            *flight.done.lock().unwrap() = Some(result.clone());
            flight.landed.notify_all();
            self.flights.lock().unwrap().remove(&addr);
            result
        } else {
            self.shared_reads.fetch_add(1, Ordering::Relaxed);
            let mut done = flight.done.lock().unwrap();
            while done.is_none() {
                done = flight.landed.wait(done).unwrap();
            }
            done.clone().expect("landed")
        };
        let (kind, bytes, payload) = result?;
        out.clear();
        out.extend_from_slice(&bytes[payload]);
        Ok(kind)
    }
}
