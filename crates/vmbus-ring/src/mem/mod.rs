//! Ring memory: the control page and the data area, behind [`RingMem`].
//!
//! This is the only module of the crate with `unsafe` code: it turns mappings of
//! shared memory into a `&ControlPage` and into byte copies or views of the data area.
//! Without feature `std` only the [`RingMem`] trait is here (a bare-metal guest
//! implements it over its own pages). With it, three implementations (the
//! last two Linux-only: memfd and mmap):
//!
//! - [`FlatRingMem`]: one heap allocation, for tests and in-process rings; packets that
//!   wrap are copied;
//! - [`PagedRingMem`]: pages of a [`SharedMemory`] region taken from a page list (a
//!   GPADL), accessed page by page; packets that cross a page are copied;
//! - [`DoubleMappedRingMem`]: the data pages mapped twice back to back from a memfd, so
//!   every packet is contiguous in virtual memory: the zero-copy path.
//!
//! **Views and a hostile peer.** [`RingMem::data_view`] hands out `&[u8]` into shared
//! memory. The ring only does so for bytes the protocol gives to the reader (between
//! `read_index` and `write_index`, published with release/acquire). A conforming peer
//! does not write them until the reader publishes a new `read_index`; a hostile one can,
//! and the reader then sees arbitrary (but always initialized) bytes. Consumers must
//! therefore parse a view once, with a total parser, and copy what they keep.

#![allow(unsafe_code)]

#[cfg(all(feature = "std", target_os = "linux"))]
mod double;
#[cfg(feature = "std")]
mod flat;
#[cfg(all(feature = "std", target_os = "linux"))]
mod paged;
#[cfg(all(feature = "std", target_os = "linux"))]
mod shared;

#[cfg(all(feature = "std", target_os = "linux"))]
pub use double::DoubleMappedRingMem;
#[cfg(feature = "std")]
pub use flat::FlatRingMem;
#[cfg(all(feature = "std", target_os = "linux"))]
pub use paged::PagedRingMem;
#[cfg(all(feature = "std", target_os = "linux"))]
pub use shared::{PAGE_SIZE, SharedMemory};

use crate::control::ControlPage;
#[cfg(all(feature = "std", target_os = "linux"))]
use std::sync::Arc;

#[cfg(all(feature = "std", target_os = "linux"))]
/// One page of a ring: page `page` (counted from 0) of `region`. A ring's pages may
/// come from several regions (a GPADL may name pages on both sides of a hole in guest
/// memory).
#[derive(Copy, Clone, Debug)]
pub struct RingPage<'a> {
    /// The region holding the page.
    pub region: &'a Arc<SharedMemory>,
    /// The page's number within the region.
    pub page: u64,
}

#[cfg(all(feature = "std", target_os = "linux"))]
/// The regions of `pages`, each once (compared by address), to keep them alive.
fn regions_of<'a>(pages: impl Iterator<Item = &'a RingPage<'a>>) -> Vec<Arc<SharedMemory>> {
    let mut v: Vec<Arc<SharedMemory>> = Vec::new();
    for p in pages {
        if !v.iter().any(|r| Arc::ptr_eq(r, p.region)) {
            v.push(p.region.clone());
        }
    }
    v
}

/// Memory holding one ring: a control page and a data area of
/// [`RingMem::data_len`] bytes (a non-zero multiple of 4096).
///
/// Offsets passed to the data methods are below `data_len` and lengths at most
/// `data_len`; the ring guarantees this after validating the peer's indices. An
/// implementation must not panic or touch memory outside the ring if they are not.
pub trait RingMem: Send + Sync {
    /// The control page.
    fn control(&self) -> &ControlPage;
    /// Size of the data area in bytes.
    fn data_len(&self) -> usize;
    /// Copies `dst.len()` bytes starting at data offset `off`, wrapping at the end.
    fn read_data(&self, off: usize, dst: &mut [u8]);
    /// Copies `src` to data offset `off`, wrapping at the end.
    fn write_data(&self, off: usize, src: &[u8]);
    /// A view of `len` bytes at `off` if they are contiguous in this mapping (always,
    /// for a double mapping); `None` means: copy with [`RingMem::read_data`].
    fn data_view(&self, off: usize, len: usize) -> Option<&[u8]>;
    /// Copies `pieces` back to back from data offset `off`, which the caller has
    /// checked does not wrap (`off` plus their total is at most `data_len`): the
    /// packet writer's common path. An implementation over contiguous memory checks
    /// the run once instead of per piece. Default: [`RingMem::write_data`] per piece.
    #[inline]
    fn write_run(&self, off: usize, pieces: &[&[u8]]) {
        let mut pos = off;
        for p in pieces {
            if !p.is_empty() {
                self.write_data(pos, p);
                pos += p.len();
            }
        }
    }
}

/// Ring memory behind a reference or an `Arc` is ring memory.
macro_rules! forward_ring_mem {
    ($($ptr:ty),*) => {$(
        impl<T: RingMem + ?Sized> RingMem for $ptr {
            #[inline]
            fn control(&self) -> &ControlPage {
                (**self).control()
            }
            #[inline]
            fn data_len(&self) -> usize {
                (**self).data_len()
            }
            #[inline]
            fn read_data(&self, off: usize, dst: &mut [u8]) {
                (**self).read_data(off, dst)
            }
            #[inline]
            fn write_data(&self, off: usize, src: &[u8]) {
                (**self).write_data(off, src)
            }
            #[inline]
            fn data_view(&self, off: usize, len: usize) -> Option<&[u8]> {
                (**self).data_view(off, len)
            }
            #[inline]
            fn write_run(&self, off: usize, pieces: &[&[u8]]) {
                (**self).write_run(off, pieces)
            }
        }
    )*};
}
forward_ring_mem!(&T, alloc::sync::Arc<T>);

/// A contiguous data area at `base` of `len` bytes, which the owner may map twice (so
/// that `base..base + 2 * len` is valid and the second half aliases the first: it then
/// passes that larger limit to [`Contiguous::view`] and [`Contiguous::write_run`]).
///
/// Shared by the flat and double-mapped implementations.
#[cfg(feature = "std")]
#[derive(Copy, Clone)]
struct Contiguous {
    base: core::ptr::NonNull<u8>,
    len: usize,
}

#[cfg(feature = "std")]
impl Contiguous {
    /// Copies with wrap. Out-of-range requests copy nothing.
    #[inline]
    fn read(&self, off: usize, dst: &mut [u8]) {
        if off >= self.len || dst.len() > self.len {
            return;
        }
        let first = dst.len().min(self.len - off);
        if first == dst.len() {
            // SAFETY: `off + dst.len() <= len`: inside the mapping (see below).
            unsafe {
                core::ptr::copy_nonoverlapping(
                    self.base.as_ptr().add(off),
                    dst.as_mut_ptr(),
                    dst.len(),
                );
            }
            return;
        }
        let (a, b) = dst.split_at_mut(first);
        // SAFETY: `off + first <= len` and `b.len() = dst.len() - first <= off`, so both
        // source ranges lie inside the mapping of `len` bytes at `base`, which the owner
        // keeps alive while `self` exists. The destination is a distinct Rust buffer.
        // The source is shared memory the peer may write concurrently: bytes copied are
        // plain `u8`, every value is valid.
        unsafe {
            core::ptr::copy_nonoverlapping(self.base.as_ptr().add(off), a.as_mut_ptr(), a.len());
            core::ptr::copy_nonoverlapping(self.base.as_ptr(), b.as_mut_ptr(), b.len());
        }
    }

    /// Copies with wrap. Out-of-range requests copy nothing.
    #[inline]
    fn write(&self, off: usize, src: &[u8]) {
        if off >= self.len || src.len() > self.len {
            return;
        }
        let first = src.len().min(self.len - off);
        if first == src.len() {
            // SAFETY: `off + src.len() <= len`: inside the mapping (see below).
            unsafe {
                core::ptr::copy_nonoverlapping(
                    src.as_ptr(),
                    self.base.as_ptr().add(off),
                    src.len(),
                );
            }
            return;
        }
        let (a, b) = src.split_at(first);
        // SAFETY: as in `read`: both destination ranges lie inside the mapping, and the
        // source is a distinct Rust buffer. The ring only writes bytes the protocol gives
        // to the writer; a peer reading them concurrently is not our memory-safety concern.
        unsafe {
            core::ptr::copy_nonoverlapping(a.as_ptr(), self.base.as_ptr().add(off), a.len());
            core::ptr::copy_nonoverlapping(b.as_ptr(), self.base.as_ptr(), b.len());
        }
    }

    /// Copies `pieces` back to back from `off` with one range check for the run; a
    /// run that would pass `limit` (the end of the mapping) copies nothing.
    #[inline]
    fn write_run(&self, off: usize, limit: usize, pieces: &[&[u8]]) {
        let total: usize = pieces.iter().map(|p| p.len()).sum();
        if off.checked_add(total).is_none_or(|end| end > limit) {
            return;
        }
        let mut pos = off;
        for p in pieces {
            // SAFETY: `pos + p.len() <= off + total <= limit`, and `limit` bytes are
            // mapped at `base` (see `read`); the source is a distinct Rust buffer.
            unsafe {
                core::ptr::copy_nonoverlapping(p.as_ptr(), self.base.as_ptr().add(pos), p.len());
            }
            pos += p.len();
        }
    }

    /// A view of `len` bytes at `off` if they lie below `limit` (`len`, or twice it
    /// for a double mapping).
    #[inline]
    fn view(&self, off: usize, len: usize, limit: usize) -> Option<&[u8]> {
        if off >= self.len || len > self.len || off + len > limit {
            return None;
        }
        // SAFETY: `off + len <= limit` bytes are mapped at `base` (the owner passes
        // twice `len` only for a double mapping) for as long as `self` is borrowed,
        // since the owner keeps the mapping. See the module documentation for why a
        // shared-memory view is acceptable.
        Some(unsafe { core::slice::from_raw_parts(self.base.as_ptr().add(off), len) })
    }
}
