//! sled: a cache holding the data set, the default background flush every 500 ms; `Sync` calls
//! `flush()` after each write, as sled's documentation prescribes for durability.

use std::path::Path;

use super::{copy_value, Engine, Opened, Options, Write};
use crate::runner::spec::Durability;
use crate::runner::Result;

struct Sled(sled::Db);

pub(super) fn open(dir: &Path, options: &Options) -> Result<Opened> {
    let db = sled::Config::new().path(dir).cache_capacity(options.cache_bytes).open()?;
    let config = format!(
        "sled 0.34: {} MiB cache, defaults otherwise (flush every 500 ms); Buffered/None = the \
         background flush, Sync = flush() after each write; compact = flush (sled has no compaction call); \
         fillbatch = a sled::Batch per batch through apply_batch (Sync: then flush())",
        options.cache_bytes >> 20
    );
    Ok(Opened { engine: Box::new(Sled(db)), config })
}

impl Engine for Sled {
    fn write(&self, batch: &[Write<'_>], d: Durability) -> Result<()> {
        for w in batch {
            match *w {
                Write::Put(k, v) => {
                    self.0.insert(k, v)?;
                }
                Write::Delete(k) => {
                    self.0.remove(k)?;
                }
            }
        }
        if d == Durability::Sync {
            self.0.flush()?;
        }
        Ok(())
    }

    fn write_batch(&self, batch: &[Write<'_>], d: Durability) -> Result<()> {
        let mut b = sled::Batch::default();
        for w in batch {
            match *w {
                Write::Put(k, v) => b.insert(k, v),
                Write::Delete(k) => b.remove(k),
            }
        }
        self.0.apply_batch(b)?;
        if d == Durability::Sync {
            self.0.flush()?;
        }
        Ok(())
    }

    fn get(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        Ok(copy_value(self.0.get(key)?, out))
    }

    fn scan(&self, from: &[u8], limit: usize, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<usize> {
        let mut seen = 0;
        for item in self.0.range(from..).take(limit) {
            let (k, v) = item?;
            visit(&k, &v);
            seen += 1;
        }
        Ok(seen)
    }

    fn flush(&self) -> Result<()> {
        self.0.flush()?;
        Ok(())
    }

    fn compact(&self) -> Result<()> {
        // sled offers no compaction call; its page cache rewrites fragmented segments itself.
        self.flush()
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.0.flush()?;
        Ok(())
    }
}
