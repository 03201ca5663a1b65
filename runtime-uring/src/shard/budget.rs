//! How a shard spends its share of the memory quota. The quota counts the shard's buffers as
//! well as its pages: the log's write buffers, the window its cleaner reads the head of the
//! log through, and the batch of page records a flush holds between capturing and appending
//! them. The buffers are set aside first (the last two sized from the share); the pages get
//! the rest, which the swapper keeps them under.

use helio_core::log::recover::CHUNK;

/// Bytes of pages a share leaves at least.
const PAGES_MIN: u64 = 256 << 10;

/// The cleaner's window and the flush batch are each an eighth of what the share leaves after
/// the log's buffers, within these bounds (the upper: what they are without a quota).
const WORK_MIN: usize = 256 << 10;
const WORK_MAX: usize = CHUNK;

/// What a shard's share of the memory quota pays for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Budget {
    /// Bytes the pages may hold (`None`: no quota).
    pub(crate) pages: Option<u64>,
    /// Bytes the cleaner reads the log through at a time.
    pub(crate) window: usize,
    /// Bytes of captured page records a flush holds at most before it appends them (a record
    /// larger than this is held alone), besides its writer's copy of the last one.
    pub(crate) batch: usize,
    /// Bytes of the share the buffers take: the log's, the window and the batch.
    pub(crate) buffers: u64,
}

impl Budget {
    /// The budget of a shard whose log has `log_buffers` bytes of write buffers, under a share
    /// of `share` bytes (at least [`Budget::share_min`]; less leaves the pages
    /// `PAGES_MIN`), or under no quota.
    pub(crate) fn of(share: Option<u64>, log_buffers: u64) -> Self {
        let Some(share) = share else {
            return Self {
                pages: None,
                window: WORK_MAX,
                batch: WORK_MAX,
                buffers: log_buffers + 2 * WORK_MAX as u64,
            };
        };
        let left = share.saturating_sub(log_buffers);
        let work = usize::try_from(left / 8).unwrap_or(usize::MAX).clamp(WORK_MIN, WORK_MAX);
        let buffers = log_buffers + 2 * work as u64;
        Self { pages: Some(share.saturating_sub(buffers).max(PAGES_MIN)), window: work, batch: work, buffers }
    }

    /// The smallest share that leaves the pages `PAGES_MIN` beside the buffers.
    pub(crate) fn share_min(log_buffers: u64) -> u64 {
        log_buffers + 2 * WORK_MIN as u64 + PAGES_MIN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffers_come_out_of_the_share_and_the_pages_get_the_rest() {
        let log = 4 << 20;
        let b = Budget::of(Some(32 << 20), log);
        assert_eq!((b.window, b.batch), (3584 << 10, 3584 << 10));
        assert_eq!(b.buffers, log + (7 << 20));
        assert_eq!(b.pages, Some((32 << 20) - b.buffers));
        // Large shares: the window and batch stop growing.
        let b = Budget::of(Some(1 << 30), log);
        assert_eq!((b.window, b.batch), (WORK_MAX, WORK_MAX));
        // The smallest share leaves the least pages.
        let min = Budget::share_min(log);
        assert_eq!(Budget::of(Some(min), log).pages, Some(PAGES_MIN));
        assert_eq!(Budget::of(None, log).pages, None);
    }
}
