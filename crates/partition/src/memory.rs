//! Guest memory: a memfd region addressed by GPA from 0, every access bounds-checked.

use hv_hypercall::decode::{GpaReadError, GuestMemoryRead};
use hv_hypercall::pages::SharedPage;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use vmbus_ring::SharedMemory;

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

/// Guest RAM: `size` bytes at GPA 0, backed by a memfd so that rings can be mapped a
/// second time (double mapping) and a hypervisor can map it into the guest.
#[derive(Clone, Debug)]
pub struct GuestMemory {
    shared: Arc<SharedMemory>,
}

impl GuestMemory {
    /// Zeroed guest memory of `size` bytes (rounded up to whole pages).
    pub fn new(size: u64) -> io::Result<Self> {
        let size = usize::try_from(size)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "guest memory too large"))?;
        Ok(Self {
            shared: Arc::new(SharedMemory::new(size)?),
        })
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.shared.len() as u64
    }

    /// Number of pages.
    pub fn pages(&self) -> u64 {
        self.size() / PAGE_SIZE
    }

    /// The backing shared memory (for ring mappings and hypervisor registration).
    pub fn shared(&self) -> &Arc<SharedMemory> {
        &self.shared
    }

    fn offset(&self, gpa: u64, len: usize) -> Result<usize, GpaError> {
        let err = GpaError {
            gpa,
            len: len as u64,
        };
        let end = gpa.checked_add(len as u64).ok_or(err)?;
        if end > self.size() {
            return Err(err);
        }
        usize::try_from(gpa).map_err(|_| err)
    }

    /// Copies guest memory at `gpa` into `buf`.
    pub fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), GpaError> {
        let off = self.offset(gpa, buf.len())?;
        if self.shared.read(off, buf) {
            Ok(())
        } else {
            Err(GpaError {
                gpa,
                len: buf.len() as u64,
            })
        }
    }

    /// Copies `buf` into guest memory at `gpa`.
    pub fn write(&self, gpa: u64, buf: &[u8]) -> Result<(), GpaError> {
        let off = self.offset(gpa, buf.len())?;
        if self.shared.write(off, buf) {
            Ok(())
        } else {
            Err(GpaError {
                gpa,
                len: buf.len() as u64,
            })
        }
    }

    /// The page at `gpa` (4 KiB aligned) as a [`SharedPage`] for SynIC page access, or
    /// `None` if it is not a whole page of guest memory.
    pub fn page(&self, gpa: u64) -> Option<GuestPage<'_>> {
        if !gpa.is_multiple_of(PAGE_SIZE) {
            return None;
        }
        let base = self.offset(gpa, PAGE_SIZE as usize).ok()?;
        Some(GuestPage {
            shared: &self.shared,
            base,
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
}
