//! [`PagedRingMem`]: a ring whose pages come from a page list (a GPADL) into a
//! [`SharedMemory`] region, accessed page by page.

use super::{PAGE_SIZE, RingMem, RingPage, SharedMemory};
use crate::control::ControlPage;
use core::ptr::NonNull;
use std::io;
use std::sync::Arc;

/// A ring built from individual pages of a [`SharedMemory`] region, in list order: the
/// first page is the control page, the rest the data area. No remapping is done, so a
/// packet that crosses a page boundary is copied rather than viewed.
pub struct PagedRingMem {
    _regions: Vec<Arc<SharedMemory>>,
    ctl: NonNull<u8>,
    pages: Vec<NonNull<u8>>,
}

// SAFETY: pointers into a region kept alive by the Arc; access is atomic (control page)
// or bounded copies/views (data), sound from any thread.
unsafe impl Send for PagedRingMem {}
// SAFETY: as above.
unsafe impl Sync for PagedRingMem {}

impl PagedRingMem {
    /// Builds the ring from page numbers of `region`: `control_page` for the control
    /// page and `data_pages` (at least one, at most 512 Ki) for the data area. Page
    /// numbers come from a peer's GPADL: each is checked against the region.
    pub fn new(
        region: Arc<SharedMemory>,
        control_page: u64,
        data_pages: &[u64],
    ) -> io::Result<Self> {
        let data: Vec<RingPage<'_>> = data_pages
            .iter()
            .map(|&page| RingPage {
                region: &region,
                page,
            })
            .collect();
        Self::from_pages(
            RingPage {
                region: &region,
                page: control_page,
            },
            &data,
        )
    }

    /// Builds the ring from pages of any regions: `control` for the control page and
    /// `data` (at least one, at most 512 Ki) for the data area, each checked against
    /// its region.
    pub fn from_pages(control: RingPage<'_>, data: &[RingPage<'_>]) -> io::Result<Self> {
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_string());
        if data.is_empty() || data.len() > (u32::MAX as usize / 2) / PAGE_SIZE {
            return Err(bad("ring data page count out of range"));
        }
        let page = |p: &RingPage<'_>| {
            usize::try_from(p.page)
                .ok()
                .and_then(|n| p.region.page_ptr(n))
                .ok_or_else(|| bad("ring page outside the region"))
        };
        let ctl = page(&control)?;
        let pages = data.iter().map(page).collect::<io::Result<Vec<_>>>()?;
        Ok(Self {
            _regions: super::regions_of(core::iter::once(&control).chain(data)),
            ctl,
            pages,
        })
    }

    /// Calls `f(page pointer, offset in page, chunk length, offset in caller buffer)`
    /// for each page-contiguous chunk of `len` bytes at data offset `off`, wrapping.
    /// Bounded: at most `pages + 1` chunks.
    #[inline]
    fn chunks(&self, off: usize, len: usize, mut f: impl FnMut(NonNull<u8>, usize, usize, usize)) {
        let total = self.data_len();
        if off >= total || len > total {
            return;
        }
        // Most copies stay within one page.
        let in_page = off % PAGE_SIZE;
        if in_page + len <= PAGE_SIZE {
            if let Some(p) = self.pages.get(off / PAGE_SIZE) {
                f(*p, in_page, len, 0);
            }
            return;
        }
        let mut done = 0;
        let mut pos = off;
        while done < len {
            let page = pos / PAGE_SIZE;
            let in_page = pos % PAGE_SIZE;
            let n = (PAGE_SIZE - in_page).min(len - done);
            if let Some(p) = self.pages.get(page) {
                f(*p, in_page, n, done);
            }
            done += n;
            pos += n;
            if pos >= total {
                pos -= total;
            }
        }
    }
}

impl RingMem for PagedRingMem {
    #[inline]
    fn control(&self) -> &ControlPage {
        // SAFETY: `ctl` points at a whole page of the region (checked in `new`), kept
        // alive by the Arc; ControlPage is atomics only, valid for any bits, align 4.
        unsafe { &*self.ctl.as_ptr().cast::<ControlPage>() }
    }
    #[inline]
    fn data_len(&self) -> usize {
        self.pages.len() * PAGE_SIZE
    }
    #[inline]
    fn read_data(&self, off: usize, dst: &mut [u8]) {
        let len = dst.len();
        self.chunks(off, len, |p, in_page, n, at| {
            if let Some(d) = dst.get_mut(at..at + n) {
                // SAFETY: `in_page + n <= PAGE_SIZE` within a live page; `d` is distinct.
                unsafe {
                    core::ptr::copy_nonoverlapping(p.as_ptr().add(in_page), d.as_mut_ptr(), n)
                }
            }
        });
    }
    #[inline]
    fn write_data(&self, off: usize, src: &[u8]) {
        self.chunks(off, src.len(), |p, in_page, n, at| {
            if let Some(s) = src.get(at..at + n) {
                // SAFETY: as in `read_data`.
                unsafe { core::ptr::copy_nonoverlapping(s.as_ptr(), p.as_ptr().add(in_page), n) }
            }
        });
    }
    /// A run within one page (most packets) is copied with one range check; one that
    /// crosses a page goes piece by piece.
    #[inline]
    fn write_run(&self, off: usize, pieces: &[&[u8]]) {
        let total: usize = pieces.iter().map(|p| p.len()).sum();
        let mut pos = off % PAGE_SIZE;
        if pos + total <= PAGE_SIZE
            && off < self.data_len()
            && let Some(page) = self.pages.get(off / PAGE_SIZE)
        {
            for p in pieces {
                // SAFETY: `pos + p.len() <= off % PAGE_SIZE + total <= PAGE_SIZE`: inside
                // a live page; the source is a distinct Rust buffer.
                unsafe {
                    core::ptr::copy_nonoverlapping(p.as_ptr(), page.as_ptr().add(pos), p.len())
                };
                pos += p.len();
            }
            return;
        }
        let mut pos = off;
        for p in pieces {
            self.write_data(pos, p);
            pos += p.len();
        }
    }
    #[inline]
    fn data_view(&self, off: usize, len: usize) -> Option<&[u8]> {
        let in_page = off % PAGE_SIZE;
        if off >= self.data_len() || in_page + len > PAGE_SIZE {
            return None;
        }
        let p = self.pages.get(off / PAGE_SIZE)?;
        // SAFETY: `in_page + len <= PAGE_SIZE` bytes of a live page.
        Some(unsafe { core::slice::from_raw_parts(p.as_ptr().add(in_page), len) })
    }
}
