//! [`SharedMemory`]: a memfd mapped once, the backing of paged and double-mapped rings
//! (and of simulated guest memory).

use core::ptr::NonNull;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Page size of ring memory.
pub const PAGE_SIZE: usize = 4096;

/// A region of shared memory backed by a memfd and mapped read-write once.
///
/// Other mappings of the same pages (the double mapping of a ring) are made from
/// [`SharedMemory::fd`].
pub struct SharedMemory {
    fd: OwnedFd,
    base: NonNull<u8>,
    len: usize,
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
        Ok(Self { fd, base, len })
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

    /// The memfd, for further mappings of the same pages.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Copies `dst.len()` bytes at `off`; `false` (nothing copied) if out of range.
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
        // SAFETY: unmapping exactly the mapping made in `new`; no reference into it can
        // outlive `self` (views borrow from owners that hold an `Arc<SharedMemory>`).
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

impl core::fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SharedMemory")
            .field("len", &self.len)
            .finish()
    }
}
