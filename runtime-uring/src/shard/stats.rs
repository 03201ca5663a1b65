//! A shard's counters.

/// A shard's counters (see [`Shard::stats`](super::Shard::stats)); sums over shards with [`ShardStats::plus`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ShardStats {
    /// `put` calls.
    pub puts: u64,
    /// `delete` calls.
    pub deletes: u64,
    /// `get` calls.
    pub gets: u64,
    /// Key and value bytes written by users.
    pub user_bytes: u64,
    /// Bytes written to segment files: log blocks (entries the cleaner moved included) and the
    /// zeros written ahead of them.
    pub device_bytes_written: u64,
    /// Bytes of log read at open (replay).
    pub device_bytes_read: u64,
    /// Log bytes from the head to the end: what the log holds on disk.
    pub log_bytes: u64,
    /// The live data of the log as its page table last written counts it: payload bytes of
    /// the page records it names (the op records after the last flush are not counted).
    pub live_bytes: u64,
    /// Stretches of the log the cleaner cleaned (each one moves the head).
    pub cleanings: u64,
    /// Log bytes the cleaner read at the head and moved the head past.
    pub cleaned_bytes: u64,
    /// Log bytes the cleaner appended at the tail for the entries still live there.
    pub relocated_bytes: u64,
    /// Segment files deleted by cleaning.
    pub segments_deleted: u64,
    /// Page consolidations in the tree.
    pub consolidations: u64,
    /// Page splits.
    pub splits: u64,
    /// Page merges.
    pub merges: u64,
    /// Pages in the index.
    pub pages: u64,
    /// Bytes of memory the pages hold: records, bases and index nodes, as the tree counts
    /// them (`Tree::resident_bytes`; allocator overhead not included).
    pub memory_bytes: u64,
    /// Pages replaced by stubs (their entries left memory for the log).
    pub swap_outs: u64,
    /// Swapped-out pages brought back into memory (scans, consolidations).
    pub swap_ins: u64,
    /// Page records read back from the log.
    pub page_reads: u64,
    /// Bytes read from segment files for them.
    pub page_read_bytes: u64,
    /// Payload bytes of page records written (flushes, swap-outs, relocations).
    pub page_bytes_written: u64,
    /// Of those, the bytes flush rounds wrote.
    pub round_page_bytes: u64,
    /// Of those, the bytes the swapper wrote for the pages it swapped out.
    pub swap_page_bytes: u64,
    /// Of those, the bytes of full images (the rest are deltas).
    pub image_bytes: u64,
    /// Batches of pages the swapper flushed, each made durable and committed on its own.
    pub swap_flushes: u64,
    /// Pages the swapper wrote but could not swap out: written to (or split, merged) between
    /// their capture and the records' commit, so they stay in memory, dirty.
    pub swap_misses: u64,
    /// Flush rounds that could not capture a page (it stayed busy: being merged, or changed by
    /// writers while it was read back) and so left the place recovery starts from where it was.
    pub rounds_incomplete: u64,
    /// Stretches of the log the cleaner read but could not move the head past: a page holding
    /// a record there stayed busy, so the page table still names the record.
    pub stretches_held: u64,
    /// Writes (and reads that brought pages back) that waited for the cleaner: the shard was
    /// over its quota, or its unflushed tail past its bound.
    pub writer_waits: u64,
    /// Microseconds they waited, summed.
    pub writer_wait_micros: u64,
    /// The memory quota (0: none).
    pub memory_quota: u64,
    /// Bytes of it the buffers take: the log's write buffers, the cleaner's read window and
    /// a flush's batch of page records (`memory_bytes` counts the pages, which get the rest;
    /// without a quota, what the buffers take at most).
    pub buffer_bytes: u64,
    /// Log bytes past the place recovery would start reading from (the last complete flush
    /// round's): what an open after a crash reads beyond the page table (see
    /// [`super::ShardConfig::unflushed_tail`]).
    pub unflushed_bytes: u64,
    /// I/O operations submitted to the ring (writes and flushes).
    pub io_submitted: u64,
    /// I/O operations completed.
    pub io_completed: u64,
    /// Shards whose log writes with O_DIRECT.
    pub direct_io_shards: u64,
}

impl ShardStats {
    /// Device bytes written per byte users wrote.
    pub fn write_amplification(&self) -> f64 {
        self.device_bytes_written as f64 / self.user_bytes.max(1) as f64
    }

    /// Share of the log that is not live data (about 0 right after a full cleaning).
    pub fn fragmentation(&self) -> f64 {
        1.0 - (self.live_bytes.min(self.log_bytes) as f64 / self.log_bytes.max(1) as f64)
    }

    /// The field-by-field sum of two shards' counters.
    pub fn plus(&self, other: &ShardStats) -> ShardStats {
        ShardStats {
            puts: self.puts + other.puts,
            deletes: self.deletes + other.deletes,
            gets: self.gets + other.gets,
            user_bytes: self.user_bytes + other.user_bytes,
            device_bytes_written: self.device_bytes_written + other.device_bytes_written,
            device_bytes_read: self.device_bytes_read + other.device_bytes_read,
            log_bytes: self.log_bytes + other.log_bytes,
            live_bytes: self.live_bytes + other.live_bytes,
            cleanings: self.cleanings + other.cleanings,
            cleaned_bytes: self.cleaned_bytes + other.cleaned_bytes,
            relocated_bytes: self.relocated_bytes + other.relocated_bytes,
            segments_deleted: self.segments_deleted + other.segments_deleted,
            consolidations: self.consolidations + other.consolidations,
            splits: self.splits + other.splits,
            merges: self.merges + other.merges,
            swap_outs: self.swap_outs + other.swap_outs,
            swap_ins: self.swap_ins + other.swap_ins,
            page_reads: self.page_reads + other.page_reads,
            page_read_bytes: self.page_read_bytes + other.page_read_bytes,
            page_bytes_written: self.page_bytes_written + other.page_bytes_written,
            round_page_bytes: self.round_page_bytes + other.round_page_bytes,
            swap_page_bytes: self.swap_page_bytes + other.swap_page_bytes,
            image_bytes: self.image_bytes + other.image_bytes,
            swap_flushes: self.swap_flushes + other.swap_flushes,
            swap_misses: self.swap_misses + other.swap_misses,
            rounds_incomplete: self.rounds_incomplete + other.rounds_incomplete,
            stretches_held: self.stretches_held + other.stretches_held,
            writer_waits: self.writer_waits + other.writer_waits,
            writer_wait_micros: self.writer_wait_micros + other.writer_wait_micros,
            pages: self.pages + other.pages,
            memory_bytes: self.memory_bytes + other.memory_bytes,
            memory_quota: self.memory_quota + other.memory_quota,
            buffer_bytes: self.buffer_bytes + other.buffer_bytes,
            unflushed_bytes: self.unflushed_bytes + other.unflushed_bytes,
            io_submitted: self.io_submitted + other.io_submitted,
            io_completed: self.io_completed + other.io_completed,
            direct_io_shards: self.direct_io_shards + other.direct_io_shards,
        }
    }
}

/// Cleaning counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleanStats {
    /// Stretches cleaned.
    pub stretches: u64,
    /// Log bytes read at the head and moved past.
    pub cleaned_bytes: u64,
    /// Log bytes appended for entries still live.
    pub relocated_bytes: u64,
    /// Entries appended again.
    pub relocated_entries: u64,
    /// Segment files deleted.
    pub segments_deleted: u64,
    /// The log's head.
    pub head: u64,
    /// Page records written (flushes, swap-outs and relocations).
    pub page_records: u64,
    /// Payload bytes of the page records written.
    pub page_bytes_written: u64,
    /// Of those, the bytes flush rounds wrote.
    pub round_page_bytes: u64,
    /// Of those, the bytes the swapper wrote for the pages it swapped out.
    pub swap_page_bytes: u64,
    /// Of those, the bytes of full images.
    pub image_bytes: u64,
    /// Batches of pages the swapper flushed (each made durable and committed on its own).
    pub swap_flushes: u64,
    /// Pages the swapper wrote but could not swap out.
    pub swap_misses: u64,
    /// Complete flush rounds (every dirty page written as one snapshot saw it).
    pub flush_rounds: u64,
    /// Flush rounds that left a busy page uncaptured (see `ShardStats::rounds_incomplete`).
    pub rounds_incomplete: u64,
    /// Stretches the head could not pass (see `ShardStats::stretches_held`).
    pub stretches_held: u64,
    /// Writes that waited for the cleaner: the shard was over its quota, or its unflushed tail
    /// past four times `unflushed_tail`.
    pub writer_waits: u64,
    /// Microseconds they waited, summed.
    pub writer_wait_micros: u64,
}
