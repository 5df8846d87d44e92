//! [`SharedMemory`]: a region of memory shared with a peer, mapped in this process:
//! a memfd this crate maps (simulated guest memory, rings of tests), or a region a VMM
//! mapped itself (its guest RAM). The backing of paged and double-mapped rings.

use core::ptr::NonNull;
use std::any::Any;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::Arc;

/// Page size of ring memory.
pub const PAGE_SIZE: usize = 4096;

/// A region of shared memory mapped read-write in this process.
///
/// When the region is a shared mapping of a file (a memfd, a tmpfs or hugetlbfs file),
/// [`SharedMemory::file`] gives the file and the region's offset in it, from which
/// other mappings of the same pages are made (the double mapping of a ring).
pub struct SharedMemory {
    base: NonNull<u8>,
    len: usize,
    /// The file the region is a shared mapping of, and the region's offset in it.
    file: Option<(OwnedFd, u64)>,
    /// Who keeps the mapping alive: this value (it unmaps on drop), or the VMM's
    /// object that owns it.
    owner: Owner,
}

enum Owner {
    /// Mapped by [`SharedMemory::new`]; unmapped on drop.
    This,
    /// Mapped by someone else, kept mapped while this lives.
    External(#[allow(dead_code)] Arc<dyn Any + Send + Sync>),
}

// SAFETY: the mapping is plain shared memory with no thread affinity; all access goes
// through copies with explicit bounds or through atomics.
unsafe impl Send for SharedMemory {}
// SAFETY: as above; `&SharedMemory` only allows bounded copies, which are sound from
// several threads (bytes are plain `u8`).
unsafe impl Sync for SharedMemory {}

impl SharedMemory {
    /// Creates a zeroed region of `len` bytes (rounded up to whole pages; 0 is refused).
    pub fn new(len: usize) -> io::Result<Self> {
        let len = len
            .checked_next_multiple_of(PAGE_SIZE)
            .filter(|&l| l > 0)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "shared memory length must be non-zero",
                )
            })?;
        // SAFETY: memfd_create takes a NUL-terminated name and flags; it returns a new
        // fd or -1.
        let raw = unsafe { libc::memfd_create(c"vmbus-ring".as_ptr(), libc::MFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let size = libc::off_t::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "length too large"))?;
        // SAFETY: plain syscall on our fd.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new shared mapping of the whole memfd; the kernel chooses the address.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(p.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        Ok(Self {
            base,
            len,
            file: Some((fd, 0)),
            owner: Owner::This,
        })
    }

    /// A region someone else mapped: `len` bytes at `base`, kept mapped by `owner`
    /// (e.g. a VMM's guest-memory region object). `file`: the file the region is a
    /// `MAP_SHARED` mapping of and the region's offset in it, if any (rings in the
    /// region are then double-mapped from it; without it they are accessed page by
    /// page). `base`, `len` and the offset must be multiples of [`PAGE_SIZE`].
    ///
    /// # Safety
    ///
    /// `base..base + len` must be mapped readable and writable for as long as `owner`
    /// (which this value keeps) lives, and never be unmapped or remapped while it
    /// does. If `file` is given, that range must be a `MAP_SHARED` mapping of the file
    /// at the given offset (so that another shared mapping of the file aliases it: not
    /// `MAP_PRIVATE`). The peer may write the memory at any time; this type only
    /// copies bytes in and out of it and accesses whole words atomically.
    pub unsafe fn from_raw_parts(
        base: *mut u8,
        len: usize,
        file: Option<(OwnedFd, u64)>,
        owner: Arc<dyn Any + Send + Sync>,
    ) -> io::Result<Self> {
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_string());
        let base = NonNull::new(base).ok_or_else(|| bad("null region base"))?;
        if len == 0
            || !len.is_multiple_of(PAGE_SIZE)
            || !(base.as_ptr() as usize).is_multiple_of(PAGE_SIZE)
        {
            return Err(bad("region base and length must be whole pages"));
        }
        if (base.as_ptr() as usize).checked_add(len).is_none() {
            return Err(bad("region wraps the address space"));
        }
        if let Some((_, off)) = &file
            && (!off.is_multiple_of(PAGE_SIZE as u64) || off.checked_add(len as u64).is_none())
        {
            return Err(bad("file offset must be a whole page"));
        }
        Ok(Self {
            base,
            len,
            file,
            owner: Owner::External(owner),
        })
    }

    /// Length in bytes (a multiple of [`PAGE_SIZE`]).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region is empty (never, by construction).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of pages.
    pub fn pages(&self) -> usize {
        self.len / PAGE_SIZE
    }

    /// The file the region is a shared mapping of and the region's offset in it, for
    /// further mappings of the same pages (`None`: anonymous or private memory, which
    /// cannot be mapped again).
    pub fn file(&self) -> Option<(BorrowedFd<'_>, u64)> {
        self.file.as_ref().map(|(fd, off)| (fd.as_fd(), *off))
    }

    /// Copies `dst.len()` bytes at `off`; `false` (nothing copied) if out of range.
    #[inline]
    pub fn read(&self, off: usize, dst: &mut [u8]) -> bool {
        if off.checked_add(dst.len()).is_none_or(|end| end > self.len) {
            return false;
        }
        // SAFETY: `off + dst.len() <= len` is inside our mapping; `dst` is distinct.
        unsafe {
            core::ptr::copy_nonoverlapping(self.base.as_ptr().add(off), dst.as_mut_ptr(), dst.len())
        };
        true
    }

    /// Copies `src` to `off`; `false` (nothing copied) if out of range.
    #[inline]
    pub fn write(&self, off: usize, src: &[u8]) -> bool {
        if off.checked_add(src.len()).is_none_or(|end| end > self.len) {
            return false;
        }
        // SAFETY: as in `read`.
        unsafe {
            core::ptr::copy_nonoverlapping(src.as_ptr(), self.base.as_ptr().add(off), src.len())
        };
        true
    }

    /// The 8-byte word at `off` as an atomic, or `None` if `off` is not 8-aligned or out
    /// of range. This is how SynIC pages and other shared structures in guest memory are
    /// accessed without references the peer could alias.
    pub fn atomic_u64(&self, off: usize) -> Option<&core::sync::atomic::AtomicU64> {
        if !off.is_multiple_of(8) || off.checked_add(8).is_none_or(|end| end > self.len) {
            return None;
        }
        // SAFETY: `off` is 8-aligned (the mapping is page-aligned) and `off + 8 <= len`,
        // inside our mapping, which lives as long as `&self`. AtomicU64 is valid for any
        // bit pattern and all access through it is atomic.
        Some(unsafe {
            &*self
                .base
                .as_ptr()
                .add(off)
                .cast::<core::sync::atomic::AtomicU64>()
        })
    }

    /// The base address of the mapping, for registering it with a hypervisor (KVM
    /// `set_user_memory_region`, MSHV `map_user_memory`). Dereferencing it is the
    /// caller's responsibility.
    pub fn host_address(&self) -> u64 {
        self.base.as_ptr() as u64
    }

    /// Pointer to page `page`, or `None` if out of range.
    pub(super) fn page_ptr(&self, page: usize) -> Option<NonNull<u8>> {
        if page >= self.pages() {
            return None;
        }
        // SAFETY: `page * PAGE_SIZE < len`, inside the mapping.
        NonNull::new(unsafe { self.base.as_ptr().add(page * PAGE_SIZE) })
    }
}

impl Drop for SharedMemory {
    fn drop(&mut self) {
        if let Owner::This = self.owner {
            // SAFETY: unmapping exactly the mapping made in `new`; no reference into it
            // can outlive `self` (views borrow from owners that hold an
            // `Arc<SharedMemory>`).
            unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
        }
    }
}

impl core::fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SharedMemory")
            .field("len", &self.len)
            .field("file", &self.file.as_ref().map(|(_, off)| off))
            .finish()
    }
}
