//! # helio
//!
//! The crate a database links to use the Helio storage engine.
//!
//! At this stage it re-exports the in-memory core, [`helio_core`] (a lock-free, multi-version
//! ordered map with snapshots and range iterators), and holds the first pieces of the I/O
//! runtime: [`probe`] (what the kernel and filesystem support), [`dma`] (aligned buffers for
//! direct I/O), [`superblock_file`] and [`segments`] (a shard log's files) and [`recovery`]
//! (reading a log back, cutting a torn tail, refusing corruption). It has no log writer, no `Store` facade and no shards yet: nothing written to it
//! survives the process.
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
