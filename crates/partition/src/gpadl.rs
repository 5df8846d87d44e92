//! Mapping a channel's ring GPADL to ring memory.
//!
//! The GPADL itself is built and validated by the server engine
//! (`vmbus_proto::engine::server`, which also caps page counts and defers teardown
//! while a channel uses it); this module turns its page list into the two rings.

use crate::memory::GuestMemory;
use std::io;
use std::sync::Arc;
use vmbus_proto::channel::gpadl::Gpadl;
use vmbus_ring::{DoubleMappedRingMem, PagedRingMem, RingMem};

/// How ring pages are mapped.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum RingMapping {
    /// Data pages mapped twice back to back: every packet contiguous (zero-copy).
    #[default]
    DoubleMapped,
    /// Pages accessed one by one through the guest-memory mapping: no new mappings.
    Paged,
}

/// The two rings of a channel.
pub struct ChannelRings {
    /// The guest-to-host ring: the first `downstream_page_offset` pages.
    pub guest_to_host: Arc<dyn RingMem>,
    /// The host-to-guest ring: the remaining pages.
    pub host_to_guest: Arc<dyn RingMem>,
}

fn ring(memory: &GuestMemory, pages: &[u64], how: RingMapping) -> io::Result<Arc<dyn RingMem>> {
    let (&ctl, data) = pages
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty ring"))?;
    Ok(match how {
        RingMapping::DoubleMapped => Arc::new(DoubleMappedRingMem::from_pages(
            memory.shared().clone(),
            ctl,
            data,
        )?),
        RingMapping::Paged => Arc::new(PagedRingMem::new(memory.shared().clone(), ctl, data)?),
    })
}

/// Maps a ring GPADL (one range of whole pages, split at `downstream_page_offset`)
/// into its two rings. Page numbers are the guest's: each is checked against guest
/// memory.
pub fn map_channel_rings(
    memory: &GuestMemory,
    gpadl: &Gpadl,
    downstream_page_offset: u32,
    how: RingMapping,
) -> io::Result<ChannelRings> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidInput, m.to_string());
    let [range] = gpadl.ranges.as_slice() else {
        return Err(bad("ring GPADL must have one range"));
    };
    let split = downstream_page_offset as usize;
    let (up, down) = range
        .pfns
        .split_at_checked(split)
        .ok_or_else(|| bad("ring split beyond the GPADL"))?;
    if up.len() < 2 || down.len() < 2 {
        return Err(bad("each ring needs a control page and a data page"));
    }
    Ok(ChannelRings {
        guest_to_host: ring(memory, up, how)?,
        host_to_guest: ring(memory, down, how)?,
    })
}

/// Maps the pages `pfns` of guest memory as one ring (control page first), the way a
/// guest maps the rings it allocated.
pub fn map_ring_pages(
    memory: &GuestMemory,
    pfns: &[u64],
    how: RingMapping,
) -> io::Result<Arc<dyn RingMem>> {
    ring(memory, pfns, how)
}

/// Why a GPADL buffer access failed.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "access {offset:#x}+{len:#x} outside a {size:#x}-byte GPADL buffer, or its pages outside guest memory"
)]
pub struct BufferError {
    /// Offset requested.
    pub offset: usize,
    /// Length requested.
    pub len: usize,
    /// Buffer size.
    pub size: usize,
}

/// A GPADL seen as one byte buffer (NetVSP's receive and send buffers): offsets are
/// translated page by page into guest memory, every access bounds-checked against the
/// GPADL and against guest memory. The guest may reuse the pages at any time, so the
/// contents are always untrusted.
#[derive(Clone, Debug)]
pub struct GpadlBuffer {
    memory: GuestMemory,
    pfns: Arc<[u64]>,
    first_offset: usize,
    size: usize,
}

impl GpadlBuffer {
    /// The buffer of a one-range GPADL. Multi-range GPADLs are refused.
    pub fn new(memory: &GuestMemory, gpadl: &Gpadl) -> Result<Self, BufferError> {
        let err = BufferError {
            offset: 0,
            len: 0,
            size: 0,
        };
        let [range] = gpadl.ranges.as_slice() else {
            return Err(err);
        };
        Ok(Self {
            memory: memory.clone(),
            pfns: range.pfns.clone().into(),
            first_offset: range.byte_offset as usize,
            size: range.byte_count as usize,
        })
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.size
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    fn chunks(
        &self,
        offset: usize,
        len: usize,
        mut f: impl FnMut(u64, usize, usize) -> bool,
    ) -> Result<(), BufferError> {
        let err = BufferError {
            offset,
            len,
            size: self.size,
        };
        if offset.checked_add(len).is_none_or(|end| end > self.size) {
            return Err(err);
        }
        let mut done = 0;
        let mut pos = self.first_offset + offset;
        while done < len {
            let page = pos / 4096;
            let in_page = pos % 4096;
            let n = (4096 - in_page).min(len - done);
            let pfn = *self.pfns.get(page).ok_or(err)?;
            let gpa = pfn.checked_mul(4096).ok_or(err)? + in_page as u64;
            if !f(gpa, n, done) {
                return Err(err);
            }
            done += n;
            pos += n;
        }
        Ok(())
    }

    /// Copies `buf.len()` bytes at `offset` out of the buffer.
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<(), BufferError> {
        let memory = &self.memory;
        self.chunks(offset, buf.len(), |gpa, n, at| {
            buf.get_mut(at..at + n)
                .is_some_and(|b| memory.read(gpa, b).is_ok())
        })
    }

    /// Copies `buf` into the buffer at `offset`.
    pub fn write_at(&self, offset: usize, buf: &[u8]) -> Result<(), BufferError> {
        let memory = &self.memory;
        self.chunks(offset, buf.len(), |gpa, n, at| {
            buf.get(at..at + n)
                .is_some_and(|b| memory.write(gpa, b).is_ok())
        })
    }
}
