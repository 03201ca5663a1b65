//! fjall: one database, one keyspace, a block cache holding the data set; each write goes to
//! the journal's OS buffers (fjall's default), `Sync` persists the journal with `SyncData`.

use std::path::Path;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::{copy_value, Engine, Opened, Options, Write};
use crate::runner::spec::Durability;
use crate::runner::Result;

struct Fjall {
    db: Database,
    items: Keyspace,
}

pub(super) fn open(dir: &Path, options: &Options) -> Result<Opened> {
    let db = Database::builder(dir)
        .cache_size(options.cache_bytes)
        .worker_threads(options.threads.clamp(1, 4))
        .open()?;
    let items = db.keyspace("items", KeyspaceCreateOptions::default)?;
    let config = format!(
        "fjall 3: one keyspace, defaults (LZ4, leveled compaction), {} MiB cache, {} worker threads; \
         Buffered/None = journal written to OS buffers per write (fjall's default), Sync = \
         persist(SyncData) after each write; compact = major_compact; fillbatch = Database::batch \
         committed (journal to OS buffers; Sync: SyncData in the commit)",
        options.cache_bytes >> 20,
        options.threads.clamp(1, 4)
    );
    Ok(Opened { engine: Box::new(Fjall { db, items }), config })
}

impl Engine for Fjall {
    fn write(&self, batch: &[Write<'_>], d: Durability) -> Result<()> {
        for w in batch {
            match *w {
                Write::Put(k, v) => self.items.insert(k, v)?,
                Write::Delete(k) => self.items.remove(k)?,
            }
        }
        if d == Durability::Sync {
            self.db.persist(PersistMode::SyncData)?;
        }
        Ok(())
    }

    fn write_batch(&self, batch: &[Write<'_>], d: Durability) -> Result<()> {
        // `Database::batch` commits with `PersistMode::Buffer` (the journal to OS buffers, as a
        // plain insert does); Sync persists it with `SyncData` in the same commit.
        let mut b = self.db.batch();
        if d == Durability::Sync {
            b = b.durability(Some(PersistMode::SyncData));
        }
        for w in batch {
            match *w {
                Write::Put(k, v) => b.insert(&self.items, k, v),
                Write::Delete(k) => b.remove(&self.items, k),
            }
        }
        Ok(b.commit()?)
    }

    fn get(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        Ok(copy_value(self.items.get(key)?, out))
    }

    fn scan(&self, from: &[u8], limit: usize, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<usize> {
        let mut seen = 0;
        for guard in self.items.range(from..).take(limit) {
            let (k, v) = guard.into_inner()?;
            visit(&k, &v);
            seen += 1;
        }
        Ok(seen)
    }

    fn flush(&self) -> Result<()> {
        Ok(self.db.persist(PersistMode::SyncAll)?)
    }

    fn compact(&self) -> Result<()> {
        Ok(self.items.major_compact()?)
    }

    fn close(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}
