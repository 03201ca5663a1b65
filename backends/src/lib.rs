//! # helio-backends
//!
//! The remote stores Helio evicts cold data to, behind one thin interface: an [`ExternalStore`]
//! makes handles, and an [`ExternalStoreHandle`] (one per thread; many may write at once) puts,
//! gets byte ranges of, and deletes whole objects. Puts are idempotent and atomic.
//!
//! Backends, one module each:
//! - [`FsStore`]: a directory (a second disk, a network mount); puts written aside, fsynced, renamed.
//! - [`MemoryStore`]: a map in this process, for tests.
//! - [`S3Store`]: any S3-compatible service, through `object_store` ([`S3Config`]).
//! - [`RedisStore`]: a Redis server; large objects chunked behind a manifest ([`RedisConfig`]).
//! - [`FaultyStore`]: wraps any store and injects latency, errors, timeouts, n-th call failures.
//!
//! The network and file-system handles retry [`RemoteError::Unavailable`] with bounded, jittered
//! backoff ([`RetryPolicy`]: by default 6 attempts within 5 s); [`Retrying`] adds the same to any
//! store. [`SharedReads`] reads objects by blocks through a bounded pool where concurrent reads of
//! one block share one fetch. [`conformance::run`] is the suite every backend passes.
//!
//! See `backends/README.md` for the limits, the defaults and what is not built yet.
#![deny(missing_docs)]

mod args;
mod error;
mod faulty;
mod fs;
mod memory;
mod redis;
mod retry;
mod s3;
mod shared;
mod store;

pub mod conformance;

pub use args::KEY_BYTES_MAX;
pub use error::RemoteError;
pub use faulty::{Fault, FaultyStore, Op};
pub use fs::FsStore;
pub use memory::MemoryStore;
pub use redis::{RedisConfig, RedisStore};
pub use retry::{RetryPolicy, Retrying};
pub use s3::{S3Config, S3Store};
pub use shared::{SharedReadStats, SharedReads, BUSY_DEADLINE_DEFAULT};
pub use store::{ExternalStore, ExternalStoreHandle, ExternalStoreHandleExt};
