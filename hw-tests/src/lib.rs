//! # helio-hw-tests
//!
//! Tests that need real hardware (NVMe, pmem/DAX, O_DIRECT alignment, io_uring features). Helio
//! does no I/O yet, so there is nothing here to test: this crate is empty.
#![deny(missing_docs)]
