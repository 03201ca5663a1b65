//! LMDB through `heed`: one unnamed database of bytes in a 64 GiB map, opened `NO_SYNC`
//! (commits reach the OS, `force_sync` makes them durable); writes grouped into transactions of
//! up to 1000, as LMDB's single writer wants, except `Sync`, where each write is a transaction
//! followed by `force_sync`.

use std::ops::Bound;
use std::path::Path;

use heed::types::Bytes;
use heed::{Database, Env, EnvFlags, EnvOpenOptions, WithoutTls};

use super::{copy_value, transaction_batch, Engine, Opened, Options, Write};
use crate::runner::spec::Durability;
use crate::runner::Result;

struct Lmdb {
    env: Env<WithoutTls>,
    db: Database<Bytes, Bytes>,
}

pub(super) fn open(dir: &Path, options: &Options) -> Result<Opened> {
    let mut builder = EnvOpenOptions::new().read_txn_without_tls();
    builder.map_size(64 << 30).max_readers(options.threads.max(126) as u32 + 2);
    // SAFETY: NO_SYNC only delays durability to `force_sync`, which every durable path calls.
    unsafe { builder.flags(EnvFlags::NO_SYNC) };
    // SAFETY: the directory is fresh and opened once, by this process.
    let env = unsafe { builder.open(dir)? };
    let mut tx = env.write_txn()?;
    let db = env.create_database(&mut tx, None)?;
    tx.commit()?;
    let config = "LMDB (heed 0.22): 64 GiB map, NO_SYNC (Buffered/None: commits reach the OS, made \
                  durable by force_sync at the end of each phase), writes in transactions of up to \
                  1000; Sync = one transaction per write, then force_sync; compact = force_sync (LMDB has no in-place compaction); \
                  fillbatch = one write transaction per batch, durability as above"
        .to_string();
    Ok(Opened { engine: Box::new(Lmdb { env, db }), config })
}

impl Engine for Lmdb {
    fn write(&self, batch: &[Write<'_>], d: Durability) -> Result<()> {
        let mut tx = self.env.write_txn()?;
        for w in batch {
            match *w {
                Write::Put(k, v) => self.db.put(&mut tx, k, v)?,
                Write::Delete(k) => {
                    self.db.delete(&mut tx, k)?;
                }
            }
        }
        tx.commit()?;
        if d == Durability::Sync {
            self.env.force_sync()?;
        }
        Ok(())
    }

    fn write_batch(&self, batch: &[Write<'_>], d: Durability) -> Result<()> {
        // `write` already commits its batch as one transaction.
        self.write(batch, d)
    }

    fn get(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        let tx = self.env.read_txn()?;
        Ok(copy_value(self.db.get(&tx, key)?, out))
    }

    fn scan(&self, from: &[u8], limit: usize, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<usize> {
        let tx = self.env.read_txn()?;
        let range = (Bound::Included(from), Bound::Unbounded);
        let mut seen = 0;
        for item in self.db.range(&tx, &range)?.take(limit) {
            let (k, v) = item?;
            visit(k, v);
            seen += 1;
        }
        Ok(seen)
    }

    fn flush(&self) -> Result<()> {
        Ok(self.env.force_sync()?)
    }

    fn compact(&self) -> Result<()> {
        // LMDB reuses freed pages in place and has no compaction short of copying the file.
        self.flush()
    }

    fn batch_limit(&self, d: Durability) -> usize {
        transaction_batch(d)
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.flush()
    }
}
