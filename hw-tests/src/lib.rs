//! # helio-hw-tests
//!
//! Tests that depend on the machine: the kernel's io_uring, and the device and filesystem under a
//! directory (O_DIRECT, its alignment). They run on the directory named by `HELIO_HW_DIR` (a
//! mount of the device to test: NVMe, pmem/DAX…) or, without it, on the system's temporary
//! directory, and print what they found. Today they cover the start-up probe; the log's device
//! tests come with the log.
#![deny(missing_docs)]
