//! # helio-core
//!
//! The sans-I/O core of the Helio storage engine: everything that can be decided without touching
//! a file, a thread or a clock. Today that is the memory-resident, lock-free, multi-version ordered
//! map at the heart of the engine (after Couchbase Plasma):
//!
//! - an **index**: a lock-free skiplist (`crossbeam-skiplist`) from each page's low key to the
//!   page, which lives on the skiplist node;
//! - **pages**: a base of sorted entries under a chain of immutable delta records (insert, delete,
//!   split, merge, remove), changed only by compare-and-swap of the page's head, consolidated when
//!   the chain grows past a threshold, split when too big, merged into the left sibling when too
//!   small;
//! - **MVCC**: every write carries an 8-byte snapshot number; [`Snapshot`]s give stable
//!   point-in-time views; consolidation keeps only versions some live snapshot can see;
//! - **iterators** forward and backward over any range, at a snapshot.
//!
//! Memory is reclaimed with epochs (`crossbeam-epoch`). The crate is `#![no_std]` with `alloc`; the
//! default `std` feature only adds conveniences ([`Tree::new`], [`Tree::pin`]) that use crossbeam's
//! global collector. Without it, build a tree with [`Tree::with_parts`] and a `Collector` you own,
//! and pin a `LocalHandle` registered on it in each thread.
//!
//! ```
//! use helio_core::{Tree, TreeConfig};
//! let tree = Tree::new(TreeConfig::default()).unwrap();
//! let guard = tree.pin();
//! tree.put(b"apple", b"red", &guard).unwrap();
//! let before = tree.snapshot();
//! tree.put(b"apple", b"green", &guard).unwrap();
//! assert_eq!(tree.get(b"apple", &guard).unwrap(), Some(&b"green"[..]));
//! assert_eq!(tree.get_at(&before, b"apple", &guard).unwrap(), Some(&b"red"[..]));
//! let all: Vec<_> = tree.range::<[u8], _>(&before, .., &guard).collect();
//! assert_eq!(all, [(&b"apple"[..], &b"red"[..])]);
//! ```
#![no_std]
#![deny(missing_docs)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod config;
mod error;
mod index;
mod iter;
pub mod log;
mod mvcc;
mod page;
mod paging;
mod stats;
mod sync;
mod tree;

pub use config::{ConfigError, TreeConfig};
pub use crossbeam_epoch::{Collector, Guard, LocalHandle};
pub use error::Error;
pub use iter::{Iter, SwappedOut};
pub use mvcc::{Mvcc, Snapshot, WriteTicket, LATEST};
pub use paging::{Capture, Captured, PageChain, PageReadError, PageSource, PageTile, MAX_SEGMENTS};
pub use stats::TreeStats;
pub use tree::Tree;
