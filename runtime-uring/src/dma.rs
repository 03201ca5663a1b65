//! Buffers for direct I/O: the alignment rule as a type.
//!
//! O_DIRECT needs the memory, the file offset and the length aligned to the device's direct-I/O
//! alignment. A [`DmaBuf`] is allocated aligned and sized in whole alignment units, zeroed, once
//! (when a shard starts), so the hot path never allocates and never hands the kernel a buffer it
//! will refuse.

use std::alloc::{self, Layout};
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// A zeroed, aligned, fixed-size byte buffer for direct I/O.
pub struct DmaBuf {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: the buffer owns its memory exclusively, like a `Box<[u8]>`.
unsafe impl Send for DmaBuf {}
// SAFETY: shared access only reads.
unsafe impl Sync for DmaBuf {}

/// Why a [`DmaBuf`] could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaBufError {
    /// The alignment is not a power of two, or the length is zero or not a multiple of it.
    Shape {
        /// The length asked for.
        len: usize,
        /// The alignment asked for.
        align: usize,
    },
    /// The allocator had no memory for it.
    OutOfMemory {
        /// The length asked for.
        len: usize,
    },
}

impl fmt::Display for DmaBufError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DmaBufError::Shape { len, align } => write!(
                f,
                "a direct-I/O buffer of {len} bytes aligned to {align}: the alignment must be a power of \
                 two and the length a non-zero multiple of it"
            ),
            DmaBufError::OutOfMemory { len } => write!(f, "no memory for a {len}-byte direct-I/O buffer"),
        }
    }
}

impl std::error::Error for DmaBufError {}

impl DmaBuf {
    /// A zeroed buffer of `len` bytes aligned to `align`.
    pub fn new(len: usize, align: usize) -> Result<Self, DmaBufError> {
        let shape = DmaBufError::Shape { len, align };
        if len == 0 || !align.is_power_of_two() || len % align != 0 {
            return Err(shape);
        }
        let layout = Layout::from_size_align(len, align).map_err(|_| shape)?;
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).ok_or(DmaBufError::OutOfMemory { len })?;
        Ok(Self { ptr, layout })
    }

    /// The alignment the buffer was made with.
    pub fn align(&self) -> usize {
        self.layout.align()
    }
}

impl Deref for DmaBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` points at `layout.size()` initialised (zeroed) bytes that we own.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl DerefMut for DmaBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl Drop for DmaBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

impl fmt::Debug for DmaBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DmaBuf").field("len", &self.len()).field("align", &self.align()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_zeroed_and_refuses_bad_shapes() {
        let mut buf = DmaBuf::new(1 << 20, 4096).unwrap();
        assert_eq!(buf.as_ptr() as usize % 4096, 0);
        assert_eq!(buf.len(), 1 << 20);
        assert!(buf.iter().all(|&b| b == 0));
        buf[4095] = 7;
        assert_eq!(buf[4095], 7);
        assert_eq!(DmaBuf::new(4097, 4096).unwrap_err(), DmaBufError::Shape { len: 4097, align: 4096 });
        assert_eq!(DmaBuf::new(0, 4096).unwrap_err(), DmaBufError::Shape { len: 0, align: 4096 });
        assert!(DmaBuf::new(4096, 3000).is_err());
    }
}
