//! [`FlatRingMem`]: a ring in one heap allocation.

use super::{Contiguous, RingMem};
use crate::control::{CONTROL_PAGE_SIZE, ControlPage};
use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::io;

/// A ring whose control page and data area live in one zeroed, page-aligned heap
/// allocation. Two threads (or a test playing both peers) share it by reference or
/// `Arc`. Packets that wrap are copied.
pub struct FlatRingMem {
    layout: Layout,
    area: Contiguous,
}

// SAFETY: the allocation is owned by `self`, and all access is through atomics (control
// page) or bounded copies and views (data area), which are sound from any thread.
unsafe impl Send for FlatRingMem {}
// SAFETY: as above.
unsafe impl Sync for FlatRingMem {}

impl FlatRingMem {
    /// A zeroed ring with `data_len` bytes of data area (a non-zero multiple of 4096).
    pub fn new(data_len: usize) -> io::Result<Self> {
        if data_len == 0
            || !data_len.is_multiple_of(super::PAGE_SIZE)
            || data_len > u32::MAX as usize / 2
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "ring data length must be a non-zero multiple of 4096 below 2 GiB",
            ));
        }
        let layout = Layout::from_size_align(CONTROL_PAGE_SIZE + data_len, super::PAGE_SIZE)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { alloc_zeroed(layout) };
        let ctl = core::ptr::NonNull::new(p)
            .ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
        // SAFETY: the allocation is CONTROL_PAGE_SIZE + data_len bytes.
        let base = unsafe { ctl.add(CONTROL_PAGE_SIZE) };
        Ok(Self {
            layout,
            area: Contiguous {
                base,
                len: data_len,
            },
        })
    }

    fn ctl_ptr(&self) -> *mut u8 {
        // SAFETY: the data area starts CONTROL_PAGE_SIZE after the allocation start.
        unsafe { self.area.base.as_ptr().sub(CONTROL_PAGE_SIZE) }
    }
}

impl Drop for FlatRingMem {
    fn drop(&mut self) {
        // SAFETY: freeing the allocation made in `new` with the same layout.
        unsafe { dealloc(self.ctl_ptr(), self.layout) }
    }
}

impl RingMem for FlatRingMem {
    #[inline]
    fn control(&self) -> &ControlPage {
        // SAFETY: the allocation starts with a zeroed, page-aligned 4 KiB control page;
        // ControlPage is 68 bytes of AtomicU32 (valid for any bits, align 4), and it is
        // only accessed atomically.
        unsafe { &*self.ctl_ptr().cast::<ControlPage>() }
    }
    fn data_len(&self) -> usize {
        self.area.len
    }
    #[inline]
    fn read_data(&self, off: usize, dst: &mut [u8]) {
        self.area.read(off, dst)
    }
    #[inline]
    fn write_data(&self, off: usize, src: &[u8]) {
        self.area.write(off, src)
    }
    #[inline]
    fn data_view(&self, off: usize, len: usize) -> Option<&[u8]> {
        self.area.view(off, len, self.area.len)
    }
    #[inline]
    fn write_run(&self, off: usize, pieces: &[&[u8]]) {
        self.area.write_run(off, self.area.len, pieces)
    }
}
