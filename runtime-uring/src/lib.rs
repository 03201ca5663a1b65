//! # helio
//!
//! The crate a database links to use the Helio storage engine.
//!
//! At this stage it only re-exports the in-memory core, [`helio_core`]: a lock-free,
//! multi-version ordered map with snapshots and range iterators. It has no persistence, no
//! `Store` facade, no shards and no I/O yet: nothing written to it survives the process.
#![deny(missing_docs)]

pub use helio_core::*;
