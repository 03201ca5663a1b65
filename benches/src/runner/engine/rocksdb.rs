//! RocksDB, configured as its tuning guide suggests for a small in-memory working set: background
//! jobs sized to the cores, level compaction, a block cache holding the data set, bloom filters
//! for point reads; the WAL on, synced per write only for `Sync`.

use std::path::Path;

use rocksdb::{BlockBasedOptions, Cache, Options as DbOptions, WriteBatch, WriteOptions, DB};

use super::{copy_value, Engine, Opened, Options, Write};
use crate::runner::spec::Durability;
use crate::runner::Result;

struct Rocks {
    db: DB,
    plain: WriteOptions,
    synced: WriteOptions,
}

pub(super) fn open(dir: &Path, options: &Options) -> Result<Opened> {
    let mut db_options = DbOptions::default();
    db_options.create_if_missing(true);
    db_options.increase_parallelism(options.threads.max(2) as i32);
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(&Cache::new_lru_cache(options.cache_bytes as usize));
    table.set_bloom_filter(10.0, false);
    table.set_cache_index_and_filter_blocks(true);
    db_options.set_block_based_table_factory(&table);
    let db = DB::open(&db_options, dir)?;
    let mut synced = WriteOptions::default();
    synced.set_sync(true);
    let config = format!(
        "rocksdb {}: increase_parallelism({}), level compaction, 64 MiB memtables (default), \
         {} MiB LRU block cache with index and filter blocks, 10-bit bloom filters, snappy; WAL on; \
         Buffered/None = WAL written without sync (default WriteOptions), Sync = WriteOptions::set_sync(true); compact = compact_range over all keys; \
         fillbatch = a WriteBatch per batch through DB::write_opt",
        "0.24",
        options.threads.max(2),
        options.cache_bytes >> 20
    );
    Ok(Opened { engine: Box::new(Rocks { db, plain: WriteOptions::default(), synced }), config })
}

impl Engine for Rocks {
    fn write(&self, batch: &[Write<'_>], d: Durability) -> Result<()> {
        let options = if d == Durability::Sync { &self.synced } else { &self.plain };
        for w in batch {
            match *w {
                Write::Put(k, v) => self.db.put_opt(k, v, options)?,
                Write::Delete(k) => self.db.delete_opt(k, options)?,
            }
        }
        Ok(())
    }

    fn write_batch(&self, batch: &[Write<'_>], d: Durability) -> Result<()> {
        let options = if d == Durability::Sync { &self.synced } else { &self.plain };
        let mut b = WriteBatch::default();
        for w in batch {
            match *w {
                Write::Put(k, v) => b.put(k, v),
                Write::Delete(k) => b.delete(k),
            }
        }
        Ok(self.db.write_opt(b, options)?)
    }

    fn get(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        Ok(copy_value(self.db.get_pinned(key)?, out))
    }

    fn scan(&self, from: &[u8], limit: usize, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<usize> {
        let mut it = self.db.raw_iterator();
        it.seek(from);
        let mut seen = 0;
        while seen < limit && it.valid() {
            visit(it.key().expect("valid"), it.value().expect("valid"));
            seen += 1;
            it.next();
        }
        it.status()?;
        Ok(seen)
    }

    fn flush(&self) -> Result<()> {
        Ok(self.db.flush_wal(true)?)
    }

    fn compact(&self) -> Result<()> {
        self.db.compact_range(None::<&[u8]>, None::<&[u8]>);
        Ok(())
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.db.cancel_all_background_work(true);
        Ok(())
    }
}
