//! redb: one table of bytes, a cache holding the data set. Its documentation asks for writes
//! grouped into transactions: batches of up to 1000 writes per transaction, committed with
//! `Durability::None` (made durable by the next `Immediate` commit) unless `Sync`, where each
//! write is its own `Immediate` transaction.

use std::path::Path;

use redb::{Database, ReadableDatabase, TableDefinition};

use super::{copy_value, transaction_batch, Engine, Opened, Options, Write};
use crate::runner::spec::Durability;
use crate::runner::Result;

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("items");

struct Redb(Database);

pub(super) fn open(dir: &Path, options: &Options) -> Result<Opened> {
    let db = Database::builder().set_cache_size(options.cache_bytes as usize).create(dir.join("redb"))?;
    // Create the table, so that reads before the first write find it.
    let tx = db.begin_write()?;
    tx.open_table(TABLE)?;
    tx.commit()?;
    let config = format!(
        "redb 4: {} MiB cache; writes in transactions of up to 1000 (Buffered/None: \
         Durability::None, made durable by the next Immediate commit), Sync = one Immediate \
         transaction per write; compact = an Immediate commit (Database::compact needs exclusive access); \
         fillbatch = one write transaction per batch, durability as above",
        options.cache_bytes >> 20
    );
    Ok(Opened { engine: Box::new(Redb(db)), config })
}

impl Redb {
    fn commit(&self, batch: &[Write<'_>], durability: redb::Durability) -> Result<()> {
        let mut tx = self.0.begin_write()?;
        tx.set_durability(durability)?;
        {
            let mut table = tx.open_table(TABLE)?;
            for w in batch {
                match *w {
                    Write::Put(k, v) => {
                        table.insert(k, v)?;
                    }
                    Write::Delete(k) => {
                        table.remove(k)?;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(())
    }
}

impl Engine for Redb {
    fn write(&self, batch: &[Write<'_>], d: Durability) -> Result<()> {
        let durability =
            if d == Durability::Sync { redb::Durability::Immediate } else { redb::Durability::None };
        self.commit(batch, durability)
    }

    fn write_batch(&self, batch: &[Write<'_>], d: Durability) -> Result<()> {
        // `write` already commits its batch as one transaction.
        self.write(batch, d)
    }

    fn get(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        let tx = self.0.begin_read()?;
        let table = tx.open_table(TABLE)?;
        Ok(copy_value(table.get(key)?.as_ref().map(|v| v.value()), out))
    }

    fn scan(&self, from: &[u8], limit: usize, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<usize> {
        let tx = self.0.begin_read()?;
        let table = tx.open_table(TABLE)?;
        let mut seen = 0;
        for item in table.range(from..)?.take(limit) {
            let (k, v) = item?;
            visit(k.value(), v.value());
            seen += 1;
        }
        Ok(seen)
    }

    fn flush(&self) -> Result<()> {
        self.commit(&[], redb::Durability::Immediate)
    }

    fn compact(&self) -> Result<()> {
        // `Database::compact` needs the database exclusively (`&mut`), which a shared engine
        // cannot give; an Immediate commit frees pages pending release.
        self.flush()
    }

    fn batch_limit(&self, d: Durability) -> usize {
        transaction_batch(d)
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.flush()
    }
}
