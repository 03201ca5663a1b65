//! # helio
//!
//! The crate a database links to use the Helio storage engine.
//!
//! ```no_run
//! use helio::{Config, Durability, Store, WriteBatch};
//! let dir = std::env::temp_dir().join("helio-doc");
//! let store = Store::open(Config::new(&dir).shards(2).durability(Durability::Sync))?;
//! store.put(b"k", b"v")?;
//! assert_eq!(store.get(b"k")?.as_deref(), Some(&b"v"[..]));
//! let mut batch = WriteBatch::new(); // all or nothing, across shards
//! batch.put(b"row/17", b"...").delete(b"idx/old/17").put(b"idx/new/17", b"");
//! store.write(&batch)?;
//! for item in store.iter() {
//!     let (key, value) = item?;
//! }
//! for item in store.range(&b"a"[..]..&b"z"[..]).rev() {
//!     let (key, value) = item?;
//! }
//! store.close()?;
//! # Ok::<(), helio::Error>(())
//! ```
//!
//! [`Store`] is the facade. Under it: the in-memory core, [`helio_core`] (as [`core`]; a lock-free, multi-version ordered map with
//! snapshots and range iterators), and adds persistence: [`log`] (one shard's append-only log:
//! aligned write buffers, an io_uring I/O thread, [`log::Durability`] with group commit,
//! poisoning), [`recovery`] (reading a log back, cutting a torn tail, refusing corruption),
//! [`shard`] (a tree made durable by its log, whose cleaner moves live entries from the head), and the pieces under
//! them: [`probe`], [`dma`], [`superblock_file`], [`segments`].
//!
//! Requirements: Linux with io_uring (5.6 or later; 6.1 or later reports direct-I/O alignment).
#![deny(missing_docs)]

mod commit;
mod cut;
pub mod disk;
pub mod dma;
mod fanout;
pub mod log;
pub mod probe;
pub mod recovery;
pub mod segments;
pub mod shard;
pub mod store;
mod striped;
pub mod superblock_file;

pub use helio_core as core;
pub use log::Durability;
pub use store::{Config, Entry, Error, Range, Snapshot, Store, StoreStats, WriteBatch};
