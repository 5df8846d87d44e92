//! [`DoubleMappedRingMem`]: the data pages mapped twice back to back, so that every
//! packet is contiguous in virtual memory and can be read in place.

use super::{Contiguous, PAGE_SIZE, RingMem, RingPage, SharedMemory};
use crate::control::{CONTROL_PAGE_SIZE, ControlPage};
use core::ptr::NonNull;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;

/// A ring mapped as `[control page][data pages][data pages again]` from a memfd.
///
/// Reads of any packet (at most the data size) are zero-copy views, wrap or not; writes
/// are single copies. Building it costs one `mmap` per run of consecutive pages, twice.
pub struct DoubleMappedRingMem {
    _regions: Vec<Arc<SharedMemory>>,
    reservation: NonNull<u8>,
    reservation_len: usize,
    area: Contiguous,
}

// SAFETY: the mappings are owned by `self` and only accessed atomically (control page)
// or through bounded copies and views (data area).
unsafe impl Send for DoubleMappedRingMem {}
// SAFETY: as above.
unsafe impl Sync for DoubleMappedRingMem {}

impl DoubleMappedRingMem {
    /// A fresh ring with `data_len` bytes of data (a non-zero multiple of 4096) in its
    /// own memfd.
    pub fn new(data_len: usize) -> io::Result<Self> {
        if data_len == 0 || !data_len.is_multiple_of(PAGE_SIZE) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "ring data length must be a non-zero multiple of 4096",
            ));
        }
        let region = Arc::new(SharedMemory::new(CONTROL_PAGE_SIZE + data_len)?);
        let pages: Vec<u64> = (1..=(data_len / PAGE_SIZE) as u64).collect();
        Self::from_pages(region, 0, &pages)
    }

    /// Maps `control_page` and `data_pages` of `region` (page numbers from a peer's
    /// GPADL, each checked against the region).
    pub fn from_pages(
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
        Self::from_region_pages(
            RingPage {
                region: &region,
                page: control_page,
            },
            &data,
        )
    }

    /// Maps the ring's pages, which may come from several regions: each region must be
    /// a shared mapping of a file ([`SharedMemory::file`]), else the error is
    /// [`io::ErrorKind::Unsupported`] (use [`super::PagedRingMem`] then). The kernel
    /// may refuse a mapping too (e.g. 4 KiB pieces of a hugetlbfs file).
    pub fn from_region_pages(control: RingPage<'_>, data: &[RingPage<'_>]) -> io::Result<Self> {
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_string());
        let n = data.len();
        if n == 0 || n > (u32::MAX as usize / 2) / PAGE_SIZE {
            return Err(bad("ring data page count out of range"));
        }
        let in_region =
            |p: &RingPage<'_>| usize::try_from(p.page).is_ok_and(|n| n < p.region.pages());
        if !in_region(&control) || !data.iter().all(in_region) {
            return Err(bad("ring page outside the region"));
        }
        if control.region.file().is_none() || data.iter().any(|p| p.region.file().is_none()) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "ring page in memory that is not a shared mapping of a file",
            ));
        }
        let data_len = n * PAGE_SIZE;
        let reservation_len = CONTROL_PAGE_SIZE + 2 * data_len;
        // SAFETY: reserve address space with no access; the kernel picks the address.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                reservation_len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let reservation = NonNull::new(p.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        let this = Self {
            _regions: super::regions_of(core::iter::once(&control).chain(data)),
            reservation,
            reservation_len,
            area: Contiguous {
                // SAFETY: inside the reservation.
                base: unsafe { reservation.add(CONTROL_PAGE_SIZE) },
                len: data_len,
            },
        };
        // From here on, `this` unmaps the reservation on error.
        this.map_run(0, control, 1)?;
        for copy in 0..2 {
            let mut i = 0;
            while i < n {
                // Coalesce consecutive pages of one region into one mapping.
                let Some(start) = data.get(i).copied() else {
                    break;
                };
                let mut run = 1;
                while data.get(i + run).is_some_and(|q| {
                    Arc::ptr_eq(q.region, start.region) && q.page == start.page + run as u64
                }) {
                    run += 1;
                }
                let at = CONTROL_PAGE_SIZE + copy * data_len + i * PAGE_SIZE;
                this.map_run(at, start, run)?;
                i += run;
            }
        }
        Ok(this)
    }

    /// Maps `count` pages starting at `first` over the reservation at byte `at`.
    fn map_run(&self, at: usize, first: RingPage<'_>, count: usize) -> io::Result<()> {
        let len = count * PAGE_SIZE;
        if at + len > self.reservation_len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "mapping outside the reservation",
            ));
        }
        let Some((fd, base)) = first.region.file() else {
            return Err(io::Error::from(io::ErrorKind::Unsupported));
        };
        let offset = first
            .page
            .checked_mul(PAGE_SIZE as u64)
            .and_then(|o| o.checked_add(base))
            .and_then(|o| libc::off_t::try_from(o).ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "page offset too large"))?;
        // SAFETY: MAP_FIXED over our own PROT_NONE reservation (`at + len` is inside it,
        // checked above), so no other mapping is replaced; the fd is the live file the
        // region maps and the pages are inside the region (checked by the caller).
        let p = unsafe {
            libc::mmap(
                self.reservation.as_ptr().add(at).cast(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_FIXED,
                fd.as_raw_fd(),
                offset,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for DoubleMappedRingMem {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly our reservation (and the fixed mappings inside it);
        // views borrow `self`, so none outlives it.
        unsafe { libc::munmap(self.reservation.as_ptr().cast(), self.reservation_len) };
    }
}

impl RingMem for DoubleMappedRingMem {
    #[inline]
    fn control(&self) -> &ControlPage {
        // SAFETY: the first page of the reservation maps the control page read-write;
        // ControlPage is atomics only, valid for any bits, align 4 (page-aligned).
        unsafe { &*self.reservation.as_ptr().cast::<ControlPage>() }
    }
    fn data_len(&self) -> usize {
        self.area.len
    }
    #[inline]
    fn read_data(&self, off: usize, dst: &mut [u8]) {
        match self.area.view(off, dst.len(), 2 * self.area.len) {
            Some(v) => dst.copy_from_slice(v),
            None => self.area.read(off, dst),
        }
    }
    #[inline]
    fn write_data(&self, off: usize, src: &[u8]) {
        if off < self.area.len && src.len() <= self.area.len {
            // The second copy of the data makes any in-range write contiguous.
            let single = Contiguous {
                len: 2 * self.area.len,
                ..self.area
            };
            single.write(off, src);
        }
    }
    #[inline]
    fn data_view(&self, off: usize, len: usize) -> Option<&[u8]> {
        self.area.view(off, len, 2 * self.area.len)
    }
    #[inline]
    fn write_run(&self, off: usize, pieces: &[&[u8]]) {
        // Both copies of the data are mapped: a run may even cross the end.
        self.area.write_run(off, 2 * self.area.len, pieces)
    }
}
