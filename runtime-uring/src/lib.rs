//! # helio
//!
//! The crate a database links to use the Helio storage engine.
//!
//! It re-exports the in-memory core, [`helio_core`] (a lock-free, multi-version ordered map with
//! snapshots and range iterators), and adds persistence: [`log`] (one shard's append-only log:
//! aligned write buffers, an io_uring I/O thread, [`log::Durability`] with group commit,
//! poisoning), [`recovery`] (reading a log back, cutting a torn tail, refusing corruption),
//! [`shard`] (a tree made durable by its log and cleaned by checkpoints), and the pieces under
//! them: [`probe`], [`dma`], [`superblock_file`], [`segments`]. The multi-shard `Store` facade is
//! not built yet.
//!
//! Requirements: Linux with io_uring (5.6 or later; 6.1 or later reports direct-I/O alignment).
#![deny(missing_docs)]

pub mod dma;
pub mod log;
pub mod probe;
pub mod recovery;
pub mod segments;
pub mod shard;
pub mod superblock_file;

pub use helio_core::*;
