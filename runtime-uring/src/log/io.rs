//! The log's writer on the real file system: the [`Engine`] (the core's writer, which decides
//! what to write, when to flush and how far the log is durable, and the segment files it
//! writes), which two drivers share under a lock:
//!
//! - the shard's **I/O thread**, on its own io_uring: writes and fdatasyncs go to the ring,
//!   completions back to the writer. It sleeps in `io_uring_enter` with a read always posted on
//!   the writers' doorbell (an eventfd), so a hand-off, a durability request or a completion
//!   wakes it, whichever comes first, or the end of a `Buffered` interval (the writer's deadline);
//! - a **leader**: a `Sync` writer (or `sync()`) that finds nothing in flight takes the engine
//!   and does the group commit itself, with blocking `pwrite` and `fdatasync` in its own thread,
//!   sparing the two thread hand-offs (to the I/O thread and back) a commit through the ring
//!   costs. Writers that arrive meanwhile gather in the next fill, as they do behind the ring.
//!
//! Either way the writer's invariants hold: every step it hands out is done and reported once,
//! by whoever holds the engine.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use helio_core::log::writer::Io;
use io_uring::{opcode, squeue, types, IoUring};

use super::config::LogConfig;
use super::engine::Engine;
use super::shared::Shared;

const DOORBELL: u64 = 1 << 62;
const WRITE: u64 = 2 << 62;
const FLUSH: u64 = 3 << 62;
const TAG: u64 = 3 << 62;

/// Leads a group commit for a writer waiting for `end` (see [`Engine::lead`]) unless another
/// thread holds the engine. True if it did anything.
pub(crate) fn lead(engine: &Mutex<Engine>, shared: &Shared, end: u64) -> bool {
    match engine.try_lock() {
        Ok(mut engine) => engine.lead(shared, end),
        Err(_) => false,
    }
}

/// The I/O thread's own state.
pub(crate) struct IoThread {
    shared: Arc<Shared>,
    cpu: Option<usize>,
    ring: IoUring,
    doorbell_buf: Box<[u8; 8]>,
}

impl IoThread {
    /// The thread's state.
    pub fn new(shared: Arc<Shared>, config: &LogConfig) -> io::Result<Self> {
        let mut builder = IoUring::builder();
        if config.sqpoll {
            builder.setup_sqpoll(50);
        }
        Ok(Self {
            ring: builder.build(config.ring_depth)?,
            cpu: config.cpu,
            shared,
            doorbell_buf: Box::new([0; 8]),
        })
    }

    /// Most writes in flight for a ring of `depth` entries: room is left for a flush and the
    /// doorbell's read.
    pub fn max_in_flight(depth: u32) -> usize {
        depth as usize - 2
    }

    /// Runs until the log closes (after its final sync) with no I/O left in flight.
    pub fn run(mut self) {
        if let Some(cpu) = self.cpu {
            pin_to(cpu);
        }
        self.post_doorbell_read();
        loop {
            let deadline = {
                let shared = self.shared.clone();
                let mut engine = lock(&shared);
                while let Some(io) = engine.next(&shared) {
                    let entry = Self::entry(&engine, &shared, io);
                    self.push(&entry);
                }
                if engine.writer().idle() && shared.closing.load(Ordering::Acquire) {
                    break;
                }
                engine.writer().deadline(&*shared).map(|at| at.saturating_sub(engine.now()))
            };
            self.wait(deadline);
            self.reap();
        }
    }

    /// The ring entry for a write or a flush.
    fn entry(engine: &Engine, shared: &Shared, io: Io) -> squeue::Entry {
        match io {
            Io::Write { seq, slot, segment, offset, len, linked } => {
                let fd = engine.file(segment).raw_fd().expect("a real file");
                let flags = if linked { squeue::Flags::IO_LINK } else { squeue::Flags::empty() };
                opcode::Write::new(types::Fd(fd), shared.slots[slot].as_ptr(), len as u32)
                    .offset(offset)
                    .build()
                    .flags(flags)
                    .user_data(WRITE | seq)
            }
            Io::Flush { segment } => {
                let fd = engine.file(segment).raw_fd().expect("a real file");
                opcode::Fsync::new(types::Fd(fd))
                    .flags(types::FsyncFlags::DATASYNC)
                    .build()
                    .user_data(FLUSH | segment)
            }
            _ => unreachable!("synchronous steps are done by the engine"),
        }
    }

    /// Sleeps until a completion (or the doorbell) arrives, or `deadline` nanoseconds pass.
    fn wait(&mut self, deadline: Option<u64>) {
        let result = match deadline {
            Some(left) => {
                let ts = types::Timespec::new().sec(left / 1_000_000_000).nsec((left % 1_000_000_000) as u32);
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
            None => self.ring.submit_and_wait(1),
        };
        match result {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR | libc::EBUSY)) => {}
            Err(e) => panic!("io_uring_enter failed: {e}"),
        }
    }

    fn reap(&mut self) {
        let completions: Vec<(u64, i32)> =
            self.ring.completion().map(|c| (c.user_data(), c.result())).collect();
        if completions.iter().all(|&(data, _)| data & TAG == DOORBELL) {
            if !completions.is_empty() {
                self.post_doorbell_read();
            }
            return;
        }
        let shared = self.shared.clone();
        let mut engine = lock(&shared);
        let mut doorbell = false;
        for (data, result) in completions {
            match data & TAG {
                DOORBELL => doorbell = true,
                WRITE => {
                    let result = if result < 0 { Err(-result) } else { Ok(result as usize) };
                    engine.writer_mut().written(data & !TAG, result, &*shared);
                }
                FLUSH => {
                    let result = if result < 0 { Err(-result) } else { Ok(()) };
                    engine.writer_mut().flushed(data & !TAG, result, &*shared);
                }
                _ => unreachable!("unknown completion {data:#x}"),
            }
        }
        drop(engine);
        if doorbell {
            self.post_doorbell_read();
        }
    }

    fn post_doorbell_read(&mut self) {
        let fd = self.shared.doorbell.as_ref().expect("a real log has a doorbell").fd();
        let entry =
            opcode::Read::new(types::Fd(fd), self.doorbell_buf.as_mut_ptr(), 8).build().user_data(DOORBELL);
        self.push(&entry);
    }

    fn push(&mut self, entry: &io_uring::squeue::Entry) {
        loop {
            // SAFETY: every buffer an entry points to (a fill's buffer, the doorbell's 8 bytes)
            // outlives its completion: fills are not reopened before their write completes and
            // the doorbell buffer lives as long as the thread.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return;
            }
            self.ring.submit().expect("io_uring submit");
        }
    }
}

/// The engine of a log on the real disk.
fn lock(shared: &Shared) -> MutexGuard<'_, Engine> {
    shared.engine().expect("a real log has an engine").lock().unwrap()
}

/// Pins the calling thread to `cpu` (best effort: a cpuset that excludes it leaves the thread
/// where the scheduler puts it).
fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET and sched_setaffinity only touch it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}
