//! Guest memory: RAM regions at guest-physical addresses, mapped in this process,
//! every access bounds-checked.
//!
//! The memory is the VMM's or ours. A VMM that already maps its guest RAM hands the
//! regions over through [`GuestRam`] (implemented for rust-vmm's `GuestMemoryMmap`
//! with the `vm-memory` feature): several regions, a hole below 4 GiB, RAM above it.
//! Without one, [`GuestMemory::new`] and [`GuestMemory::with_layout`] back each region
//! with a memfd of our own. Either way, a ring in a region that is a shared mapping of
//! a file is double-mapped (zero copy), and read page by page otherwise
//! ([`crate::gpadl`]).
//!
//! Every guest-physical address the guest names (GPADL pages, hypercall inputs, SynIC
//! pages) is looked up here and refused if any byte lies outside the regions: the hole,
//! a region's edge, past the last region.

use hv_hypercall::decode::{GpaReadError, GuestMemoryRead};
use hv_hypercall::pages::SharedPage;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use vmbus_ring::{RingPage, SharedMemory};

/// Page size of guest memory.
pub const PAGE_SIZE: u64 = 4096;

/// A GPA range outside guest memory.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("guest physical range {gpa:#x}+{len:#x} is outside guest memory")]
pub struct GpaError {
    /// Start.
    pub gpa: u64,
    /// Length.
    pub len: u64,
}

/// One region of guest RAM: `mapping` holds the bytes of GPAs `gpa..gpa +
/// mapping.len()`.
#[derive(Clone, Debug)]
pub struct RamRegion {
    /// The region's first guest-physical address (a multiple of [`PAGE_SIZE`]).
    pub gpa: u64,
    /// The region as mapped in this process (see
    /// [`SharedMemory::from_raw_parts`] for a VMM's own mappings).
    pub mapping: Arc<SharedMemory>,
}

/// Guest RAM a VMM already has: the regions the VMBus host, its GPADLs and rings, the
/// hypercall decoder and netvsp work over. Implemented for `vm_memory::GuestMemoryMmap`
/// (feature `vm-memory`); a VMM with its own memory type builds each region with
/// [`SharedMemory::from_raw_parts`] (the one `unsafe` promise: the mapping outlives the
/// object that keeps it).
pub trait GuestRam {
    /// The RAM regions, in any order; they must not overlap.
    fn ram_regions(&self) -> io::Result<Vec<RamRegion>>;
}

#[derive(Clone, Debug)]
struct Region {
    gpa: u64,
    len: u64,
    mem: Arc<SharedMemory>,
}

impl Region {
    /// The byte offset of `gpa` in this region, if it is inside.
    #[inline]
    fn offset(&self, gpa: u64) -> Option<u64> {
        let off = gpa.wrapping_sub(self.gpa);
        (off < self.len).then_some(off)
    }
}

/// Guest RAM: one or more regions at guest-physical addresses, each mapped in this
/// process. Cheap to clone (the regions are shared).
#[derive(Clone, Debug)]
pub struct GuestMemory {
    /// Sorted by GPA, not overlapping.
    regions: Arc<[Region]>,
}

impl GuestMemory {
    /// Zeroed guest memory of `size` bytes (rounded up to whole pages) at GPA 0, in a
    /// memfd of its own.
    pub fn new(size: u64) -> io::Result<Self> {
        Self::with_layout(&[(0, size)])
    }

    /// Zeroed guest memory with a region at each `(gpa, size)` (sizes rounded up to
    /// whole pages), each in a memfd of its own: e.g. RAM below a hole at 3 GiB and the
    /// rest above 4 GiB.
    pub fn with_layout(layout: &[(u64, u64)]) -> io::Result<Self> {
        let regions = layout
            .iter()
            .map(|&(gpa, size)| {
                let size = usize::try_from(size).map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidInput, "guest memory too large")
                })?;
                Ok(RamRegion {
                    gpa,
                    mapping: Arc::new(SharedMemory::new(size)?),
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        Self::from_regions(regions)
    }

    /// Guest memory over regions someone else mapped (see [`GuestRam`]). Refused:
    /// no region, a GPA that is not page-aligned, a region that ends past 2^64 or
    /// overlaps another.
    pub fn from_regions(regions: Vec<RamRegion>) -> io::Result<Self> {
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_string());
        if regions.is_empty() {
            return Err(bad("guest memory needs a region"));
        }
        let mut v: Vec<Region> = regions
            .into_iter()
            .map(|r| Region {
                gpa: r.gpa,
                len: r.mapping.len() as u64,
                mem: r.mapping,
            })
            .collect();
        v.sort_by_key(|r| r.gpa);
        let mut end = 0u64;
        for (i, r) in v.iter().enumerate() {
            if !r.gpa.is_multiple_of(PAGE_SIZE) {
                return Err(bad("guest memory region not page-aligned"));
            }
            if i > 0 && r.gpa < end {
                return Err(bad("guest memory regions overlap"));
            }
            end = r
                .gpa
                .checked_add(r.len)
                .ok_or_else(|| bad("guest memory region ends past 2^64"))?;
        }
        Ok(Self { regions: v.into() })
    }

    /// Guest memory over a VMM's RAM.
    pub fn from_ram(ram: &impl GuestRam) -> io::Result<Self> {
        Self::from_regions(ram.ram_regions()?)
    }

    /// The regions, by GPA: each region's first GPA and its mapping (for registering
    /// with a hypervisor: KVM `set_user_memory_region`, MSHV `map_user_memory`).
    pub fn regions(&self) -> impl Iterator<Item = (u64, &Arc<SharedMemory>)> {
        self.regions.iter().map(|r| (r.gpa, &r.mem))
    }

    /// Bytes of RAM (all regions).
    pub fn size(&self) -> u64 {
        self.regions.iter().map(|r| r.len).sum()
    }

    /// Pages of RAM (all regions).
    pub fn pages(&self) -> u64 {
        self.size() / PAGE_SIZE
    }

    /// The end of the highest region (one past its last GPA).
    pub fn end(&self) -> u64 {
        self.regions.last().map_or(0, |r| r.gpa + r.len)
    }

    /// The RAM as page ranges (first page number, page count), by address: what a
    /// guest may name in a GPADL.
    pub fn page_ranges(&self) -> Vec<(u64, u64)> {
        self.regions
            .iter()
            .map(|r| (r.gpa / PAGE_SIZE, r.len / PAGE_SIZE))
            .collect()
    }

    #[inline]
    fn region(&self, gpa: u64) -> Option<(&Region, u64)> {
        // Most accesses hit the first region (all of them with one region).
        let (first, rest) = self.regions.split_first()?;
        if let Some(off) = first.offset(gpa) {
            return Some((first, off));
        }
        rest.iter().find_map(|r| r.offset(gpa).map(|off| (r, off)))
    }

    /// The region and offset holding all of `gpa..gpa + len`, if one does.
    #[inline]
    fn within(&self, gpa: u64, len: usize) -> Option<(&SharedMemory, usize)> {
        let (r, off) = self.region(gpa)?;
        if len as u64 <= r.len - off {
            Some((&r.mem, off as usize))
        } else {
            None
        }
    }

    /// Whether every byte of `gpa..gpa + len` is RAM.
    pub fn contains(&self, gpa: u64, len: u64) -> bool {
        self.chunks(gpa, len, |_, _, _, _| true).is_ok()
    }

    /// Calls `f(region, offset in region, length, offset in the access)` for each
    /// piece of `gpa..gpa + len` (pieces split where regions meet); an error, and no
    /// call, if any byte is outside RAM. Bounded by the region count.
    #[inline]
    fn chunks(
        &self,
        gpa: u64,
        len: u64,
        mut f: impl FnMut(&SharedMemory, usize, usize, usize) -> bool,
    ) -> Result<(), GpaError> {
        let err = GpaError { gpa, len };
        let end = gpa.checked_add(len).ok_or(err)?;
        // The common case: one region holds it all.
        if let Some((r, off)) = self.region(gpa)
            && len <= r.len - off
        {
            let (o, n) = (usize::try_from(off), usize::try_from(len));
            return match (o, n) {
                (Ok(o), Ok(n)) if f(&r.mem, o, n, 0) => Ok(()),
                _ => Err(err),
            };
        }
        // Spanning adjacent regions: check all of it first, then copy, so a refused
        // access touches nothing. Each pass visits each region at most once.
        for pass in 0..2 {
            let mut at = gpa;
            while at < end {
                let Some((r, off)) = self.region(at) else {
                    return Err(err);
                };
                let n = (r.len - off).min(end - at);
                if pass == 1 {
                    let (o, n_, d) = (
                        usize::try_from(off).map_err(|_| err)?,
                        usize::try_from(n).map_err(|_| err)?,
                        usize::try_from(at - gpa).map_err(|_| err)?,
                    );
                    if !f(&r.mem, o, n_, d) {
                        return Err(err);
                    }
                }
                at += n;
            }
        }
        Ok(())
    }

    /// Copies guest memory at `gpa` into `buf`.
    #[inline]
    pub fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), GpaError> {
        match self.within(gpa, buf.len()) {
            Some((m, off)) if m.read(off, buf) => Ok(()),
            _ => self.read_slow(gpa, buf),
        }
    }

    /// [`GuestMemory::read`] across regions, or the error.
    #[cold]
    #[inline(never)]
    fn read_slow(&self, gpa: u64, buf: &mut [u8]) -> Result<(), GpaError> {
        self.chunks(gpa, buf.len() as u64, |m, off, n, at| {
            buf.get_mut(at..at + n).is_some_and(|b| m.read(off, b))
        })
    }

    /// Copies `buf` into guest memory at `gpa`.
    #[inline]
    pub fn write(&self, gpa: u64, buf: &[u8]) -> Result<(), GpaError> {
        match self.within(gpa, buf.len()) {
            Some((m, off)) if m.write(off, buf) => Ok(()),
            _ => self.write_slow(gpa, buf),
        }
    }

    /// Copies `pieces` back to back into guest memory from `gpa`: one look-up and one
    /// range check when they fall in one region (the common case), piece by piece
    /// otherwise. On an error some pieces may have been written.
    #[inline]
    pub fn write_gather(&self, gpa: u64, pieces: &[&[u8]]) -> Result<(), GpaError> {
        let total: usize = pieces.iter().map(|p| p.len()).sum();
        if let Some((m, off)) = self.within(gpa, total) {
            let mut at = off;
            for p in pieces {
                if !m.write(at, p) {
                    return Err(GpaError {
                        gpa,
                        len: total as u64,
                    });
                }
                at += p.len();
            }
            return Ok(());
        }
        let mut at = gpa;
        for p in pieces {
            self.write(at, p)?;
            at += p.len() as u64;
        }
        Ok(())
    }

    /// [`GuestMemory::write`] across regions, or the error.
    #[cold]
    #[inline(never)]
    fn write_slow(&self, gpa: u64, buf: &[u8]) -> Result<(), GpaError> {
        self.chunks(gpa, buf.len() as u64, |m, off, n, at| {
            buf.get(at..at + n).is_some_and(|b| m.write(off, b))
        })
    }

    /// The page at `gpa` (4 KiB aligned) as a [`SharedPage`] for SynIC page access, or
    /// `None` if it is not a whole page of guest memory.
    pub fn page(&self, gpa: u64) -> Option<GuestPage<'_>> {
        if !gpa.is_multiple_of(PAGE_SIZE) {
            return None;
        }
        let (r, off) = self.region(gpa)?;
        Some(GuestPage {
            shared: &r.mem,
            base: usize::try_from(off).ok()?,
        })
    }

    /// Guest page `pfn` as a page of a ring ([`vmbus_ring::PagedRingMem`],
    /// [`vmbus_ring::DoubleMappedRingMem`]), or `None` if it is not RAM.
    pub fn ring_page(&self, pfn: u64) -> Option<RingPage<'_>> {
        let gpa = pfn.checked_mul(PAGE_SIZE)?;
        let (r, off) = self.region(gpa)?;
        Some(RingPage {
            region: &r.mem,
            page: off / PAGE_SIZE,
        })
    }
}

impl GuestMemoryRead for GuestMemory {
    fn read_gpa(&self, gpa: u64, buf: &mut [u8]) -> Result<(), GpaReadError> {
        self.read(gpa, buf).map_err(|_| GpaReadError {
            gpa,
            len: buf.len(),
        })
    }
}

/// One page of guest memory, accessed as 512 atomic words.
pub struct GuestPage<'a> {
    shared: &'a SharedMemory,
    base: usize,
}

impl SharedPage for GuestPage<'_> {
    fn load(&self, word: usize) -> u64 {
        self.shared
            .atomic_u64(self.base + word * 8)
            .map_or(0, |a| a.load(Ordering::Acquire))
    }
    fn store(&self, word: usize, value: u64) {
        if let Some(a) = self.shared.atomic_u64(self.base + word * 8) {
            a.store(value, Ordering::Release);
        }
    }
    fn fetch_or(&self, word: usize, value: u64) -> u64 {
        self.shared
            .atomic_u64(self.base + word * 8)
            .map_or(0, |a| a.fetch_or(value, Ordering::SeqCst))
    }
    fn fetch_and(&self, word: usize, value: u64) -> u64 {
        self.shared
            .atomic_u64(self.base + word * 8)
            .map_or(0, |a| a.fetch_and(value, Ordering::SeqCst))
    }
}

/// rust-vmm's guest memory as [`GuestRam`]: each region of a `GuestMemoryMmap` becomes
/// a region here, kept mapped by its `Arc<MmapRegion>`. A region that is a shared
/// mapping of a file (`MmapRegion::from_file`, e.g. a memfd) keeps the file, so rings
/// in it are double-mapped; anonymous and private regions are read page by page.
///
/// Writes through this view are not recorded in vm-memory's dirty bitmap (only the
/// bitmap-less `GuestMemoryMmap` is supported).
#[cfg(all(feature = "vm-memory", target_os = "linux", target_arch = "x86_64"))]
impl GuestRam for vm_memory::GuestMemoryMmap {
    fn ram_regions(&self) -> io::Result<Vec<RamRegion>> {
        use std::os::fd::OwnedFd;
        use vm_memory::{GuestMemoryBackend as _, GuestMemoryRegion as _};
        self.iter()
            .map(|r| {
                let mmap = r.get_mmap();
                if mmap.prot() & libc::PROT_WRITE == 0 || mmap.prot() & libc::PROT_READ == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "guest memory region is not mapped read-write",
                    ));
                }
                let file = match mmap.file_offset() {
                    Some(fo) if mmap.flags() & libc::MAP_SHARED != 0 => {
                        Some((OwnedFd::from(fo.file().try_clone()?), fo.start()))
                    }
                    _ => None,
                };
                let (base, len) = (mmap.as_ptr(), mmap.size());
                let owner: Arc<dyn std::any::Any + Send + Sync> = mmap;
                // SAFETY: a vm-memory `MmapRegion` maps `size()` bytes at `as_ptr()` for
                // as long as it lives and never remaps them; `owner` is an `Arc` of it,
                // kept by the new region. Read and write access was checked above. The
                // file is passed on only for a MAP_SHARED mapping made from it at
                // `start()` (`MmapRegion::from_file`), so other mappings alias it.
                #[allow(unsafe_code)]
                let mapping = unsafe { SharedMemory::from_raw_parts(base, len, file, owner) }?;
                Ok(RamRegion {
                    gpa: r.start_addr().0,
                    mapping: Arc::new(mapping),
                })
            })
            .collect()
    }
}

impl GuestMemory {
    /// A vm-memory view of these regions (for rust-vmm's loaders), not owning the
    /// mappings: it must not outlive `self`, so it stays inside the crate and is
    /// dropped before the call that made it returns.
    #[cfg(all(feature = "vm-memory", target_os = "linux", target_arch = "x86_64"))]
    pub(crate) fn vm_memory_view(&self) -> io::Result<vm_memory::GuestMemoryMmap> {
        use vm_memory::{GuestAddress, GuestRegionMmap, MmapRegion};
        let err = |e: &dyn std::fmt::Display| io::Error::other(e.to_string());
        let regions = self
            .regions
            .iter()
            .map(|r| {
                let len = usize::try_from(r.len).map_err(|e| err(&e))?;
                // SAFETY: `r.mem` maps `len` bytes read-write at its base for as long as
                // it lives; the view is used only while `self` (which holds it) is
                // borrowed, and `build_raw` never unmaps what it did not map.
                #[allow(unsafe_code)]
                let mmap = unsafe {
                    MmapRegion::build_raw(
                        r.mem.host_address() as *mut u8,
                        len,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_SHARED,
                    )
                }
                .map_err(|e| err(&e))?;
                GuestRegionMmap::new(mmap, GuestAddress(r.gpa))
                    .ok_or_else(|| err(&"region past 2^64"))
            })
            .collect::<io::Result<Vec<_>>>()?;
        vm_memory::GuestMemoryMmap::from_regions(regions).map_err(|e| err(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked() {
        let m = GuestMemory::new(3 * 4096).unwrap();
        assert_eq!(m.pages(), 3);
        m.write(4096 * 3 - 4, &[1, 2, 3, 4]).unwrap();
        let mut b = [0u8; 4];
        m.read(4096 * 3 - 4, &mut b).unwrap();
        assert_eq!(b, [1, 2, 3, 4]);
        assert!(m.write(4096 * 3 - 3, &[0; 4]).is_err());
        assert!(m.read(u64::MAX - 1, &mut b).is_err());
        assert!(m.page(4096 * 3).is_none());
        assert!(m.page(100).is_none());
        let p = m.page(4096).unwrap();
        p.store(511, 7);
        assert_eq!(p.fetch_or(511, 8), 7);
        let mut w = [0u8; 8];
        m.read(8192 - 8, &mut w).unwrap();
        assert_eq!(u64::from_le_bytes(w), 15);
    }

    /// Two regions around a hole, a third adjacent to the second: accesses inside a
    /// region, across the seam of adjacent regions, and into the hole or past the end.
    #[test]
    fn regions_holes_and_seams() {
        let m =
            GuestMemory::with_layout(&[(0, 4 * 4096), (0x10_0000, 2 * 4096), (0x10_2000, 4096)])
                .unwrap();
        assert_eq!(m.size(), 7 * 4096);
        assert_eq!(m.end(), 0x10_3000);
        assert_eq!(m.page_ranges(), vec![(0, 4), (0x100, 2), (0x102, 1)]);
        // Across the seam of the adjacent regions: written and read back whole.
        let pattern: Vec<u8> = (0..600).map(|i| i as u8).collect();
        m.write(0x10_2000 - 300, &pattern).unwrap();
        let mut back = vec![0u8; 600];
        m.read(0x10_2000 - 300, &mut back).unwrap();
        assert_eq!(back, pattern);
        // Each region holds its own part.
        let mut last = [0u8; 300];
        m.read(0x10_2000, &mut last).unwrap();
        assert_eq!(&last[..], &pattern[300..]);
        // The hole, a region's edge into the hole, past the end: refused, nothing
        // written.
        assert!(m.write(4 * 4096 - 8, &[0xff; 16]).is_err());
        let mut z = [0u8; 8];
        m.read(4 * 4096 - 8, &mut z).unwrap();
        assert_eq!(z, [0; 8], "a refused write changed nothing");
        assert!(m.read(0x8_0000, &mut z).is_err());
        assert!(m.read(0x10_3000 - 4, &mut z).is_err());
        assert!(!m.contains(0x10_3000, 1));
        assert!(m.contains(0x10_0000, 3 * 4096));
        assert!(m.page(0x8_0000).is_none());
        assert!(m.ring_page(0x80).is_none());
        let rp = m.ring_page(0x102).unwrap();
        assert_eq!(rp.page, 0);
        // Gathered pieces: within a region, across the seam, into the hole.
        m.write_gather(0x10, &[b"head", b"", b"payload", &[0; 3]])
            .unwrap();
        let mut g = [0u8; 14];
        m.read(0x10, &mut g).unwrap();
        assert_eq!(&g, b"headpayload\0\0\0");
        m.write_gather(0x10_2000 - 2, &[b"ab", b"cd"]).unwrap();
        let mut seam = [0u8; 4];
        m.read(0x10_2000 - 2, &mut seam).unwrap();
        assert_eq!(&seam, b"abcd");
        assert!(m.write_gather(4 * 4096 - 4, &[b"ab", b"cdef"]).is_err());
        // Overlapping regions are refused.
        let r = |gpa, pages: usize| RamRegion {
            gpa,
            mapping: Arc::new(SharedMemory::new(pages * 4096).unwrap()),
        };
        assert!(GuestMemory::from_regions(vec![r(0, 4), r(0x2000, 1)]).is_err());
        assert!(GuestMemory::from_regions(vec![r(0x100, 1)]).is_err());
        assert!(GuestMemory::from_regions(vec![]).is_err());
    }
}
