//! # helio-backends
//!
//! The remote stores Helio will evict cold data to (filesystem, S3-compatible, Redis) behind one
//! thin trait. None is implemented yet: this crate is empty.
#![deny(missing_docs)]
