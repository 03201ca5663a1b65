//! Helio's `Store`: one shard per thread, the write's durability passed per call.

use std::ops::ControlFlow;
use std::path::Path;

use helio::{Config, Store, WriteBatch};

use super::{Engine, Opened, Options, Write};
use crate::runner::spec::Durability;
use crate::runner::Result;

struct Helio(Option<Store>);

/// Log segments sized to each shard's share of the data: about an eighth of it, 4 MiB to 4 GiB,
/// so that whole segments behind the cleaned head are deleted within a benchmark's size (the
/// head's own segment is only punched up to the head).
fn segment_bytes(data_bytes: u64, shards: usize) -> u64 {
    (data_bytes / shards as u64 / 8).next_power_of_two().clamp(4 << 20, 4 << 30)
}

pub(super) fn open(dir: &Path, options: &Options) -> Result<Opened> {
    let segment = segment_bytes(options.data_bytes, options.threads);
    let mut config = Config::new(dir)
        .shards(options.threads)
        .durability(helio::Durability::Buffered)
        .segment_bytes(segment);
    if let Some(quota) = options.memory_quota {
        config = config.memory_quota(quota);
    }
    let store = Store::open(config)?;
    let config = format!(
        "{} shards (one per thread), defaults otherwise: 1 MiB write buffers x4, O_DIRECT log through \
         io_uring, {} MiB segments, page records, the cleaner moving live page records from the log's head past 1.5x live data{}; \
         compact = Store::checkpoint (a full cleaning); scans = Store::scan (entries visited in the pages, not copied); Buffered = fdatasync within 10 ms; \
         fillbatch = a WriteBatch per batch through Store::write_with (all or nothing across shards)",
        options.threads,
        segment >> 20,
        options.memory_quota.map_or(String::new(), |q| format!(", memory quota {} MiB", q >> 20)),
    );
    Ok(Opened { engine: Box::new(Helio(Some(store))), config })
}

impl Helio {
    fn store(&self) -> &Store {
        self.0.as_ref().expect("open until closed")
    }
}

fn durability(d: Durability) -> helio::Durability {
    match d {
        Durability::None => helio::Durability::None,
        Durability::Buffered => helio::Durability::Buffered,
        Durability::Sync => helio::Durability::Sync,
    }
}

impl Engine for Helio {
    fn write(&self, batch: &[Write<'_>], d: Durability) -> Result<()> {
        for w in batch {
            match *w {
                Write::Put(k, v) => self.store().put_with(k, v, durability(d))?,
                Write::Delete(k) => self.store().delete_with(k, durability(d))?,
            }
        }
        Ok(())
    }

    fn write_batch(&self, batch: &[Write<'_>], d: Durability) -> Result<()> {
        let mut b = WriteBatch::new();
        for w in batch {
            match *w {
                Write::Put(k, v) => b.put(k, v),
                Write::Delete(k) => b.delete(k),
            };
        }
        Ok(self.store().write_with(&b, durability(d))?)
    }

    fn get(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        Ok(match self.store().get(key)? {
            Some(v) => {
                *out = v;
                true
            }
            None => false,
        })
    }

    fn scan(&self, from: &[u8], limit: usize, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<usize> {
        if limit == 0 {
            return Ok(0);
        }
        let mut left = limit;
        Ok(self.store().scan(from.., |key, value| {
            visit(key, value);
            left -= 1;
            if left == 0 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })?)
    }

    fn flush(&self) -> Result<()> {
        Ok(self.store().sync()?)
    }

    fn compact(&self) -> Result<()> {
        Ok(self.store().checkpoint()?)
    }

    /// Where the page records' bytes come from, and what the writers waited for them.
    fn counters(&self) -> Vec<(&'static str, u64)> {
        let s = self.store().stats().total;
        vec![
            ("page_bytes_written", s.page_bytes_written),
            ("round_page_bytes", s.round_page_bytes),
            ("swap_page_bytes", s.swap_page_bytes),
            ("relocated_bytes", s.relocated_bytes),
            ("image_bytes", s.image_bytes),
            ("swap_flushes", s.swap_flushes),
            ("swap_misses", s.swap_misses),
            ("rounds_incomplete", s.rounds_incomplete),
            ("stretches_held", s.stretches_held),
            ("swap_outs", s.swap_outs),
            ("swap_ins", s.swap_ins),
            ("page_reads", s.page_reads),
            ("page_read_bytes", s.page_read_bytes),
            ("writer_waits", s.writer_waits),
            ("writer_wait_micros", s.writer_wait_micros),
        ]
    }

    fn close(mut self: Box<Self>) -> Result<()> {
        Ok(self.0.take().expect("closed once").close()?)
    }
}
