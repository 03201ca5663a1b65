//! sled: a cache holding the data set, the default background flush every 500 ms; `Sync` calls
//! `flush()` after each write, as sled's documentation prescribes for durability.

use std::io::ErrorKind;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use super::{copy_value, Engine, Opened, Options, Write};
use crate::runner::spec::Durability;
use crate::runner::Result;

struct Sled(sled::Db);

pub(super) fn open(dir: &Path, options: &Options) -> Result<Opened> {
    let config = sled::Config::new().path(dir).cache_capacity(options.cache_bytes);
    let db = open_waiting_for_lock(|| config.open())?;
    let config = format!(
        "sled 0.34: {} MiB cache, defaults otherwise (flush every 500 ms); Buffered/None = the \
         background flush, Sync = flush() after each write; compact = flush (sled has no compaction call); \
         fillbatch = a sled::Batch per batch through apply_batch (Sync: then flush())",
        options.cache_bytes >> 20
    );
    Ok(Opened { engine: Box::new(Sled(db)), config })
}

/// How long an open waits for the lock a closed sled instance still holds.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Opens, retrying while the directory's lock is held. sled 0.34's `Db::drop` signals its flusher
/// thread but does not join it, and that thread holds the directory's `flock` until it exits, so an
/// open right after a close (the `reopen` workload) can fail with `WouldBlock` for a few
/// milliseconds (the same wait GlueSQL's sled storage added). Any other error, or a lock still held after `LOCK_WAIT`, is returned.
fn open_waiting_for_lock(open: impl Fn() -> sled::Result<sled::Db>) -> sled::Result<sled::Db> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match open() {
            Err(e) if is_lock_held(&e) && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// Whether sled failed to take the directory's lock. sled 0.34 reports it as an `Other` I/O error
/// whose message carries the `WouldBlock` it got (the lock attempt does not block).
fn is_lock_held(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.kind() == ErrorKind::Other && io.to_string().starts_with("could not acquire lock"))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> sled::Config {
        sled::Config::new().path(dir).flush_every_ms(None)
    }

    #[test]
    fn an_open_waits_for_a_lock_released_within_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let held = config(dir.path()).open().unwrap();
        assert!(config(dir.path()).open().is_err(), "the directory lock must be held by the first instance");
        let release = thread::spawn(move || {
            thread::sleep(Duration::from_millis(200));
            drop(held);
        });
        let started = Instant::now();
        let db = open_waiting_for_lock(|| config(dir.path()).open())
            .expect("the lock is released within the wait");
        assert!(
            started.elapsed() >= Duration::from_millis(150),
            "the open cannot succeed before the release"
        );
        release.join().unwrap();
        drop(db);
    }

    #[test]
    fn an_open_gives_up_on_a_lock_held_past_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let _held = config(dir.path()).open().unwrap();
        let started = Instant::now();
        match open_waiting_for_lock(|| config(dir.path()).open()) {
            Err(e) => assert!(is_lock_held(&e), "expected the lock error, got {e}"),
            Ok(_) => panic!("the open succeeded while the lock was held"),
        }
        assert!(started.elapsed() >= LOCK_WAIT);
    }
}
