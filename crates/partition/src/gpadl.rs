//! Mapping a channel's ring GPADL to ring memory.
//!
//! The GPADL itself is built and validated by the server engine
//! (`vmbus_proto::engine::server`, which also caps page counts and defers teardown
//! while a channel uses it); this module turns its page list into the two rings.

use crate::memory::GuestMemory;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use vmbus_proto::channel::gpadl::Gpadl;
use vmbus_ring::{DoubleMappedRingMem, PagedRingMem, RingMem, Wake};

/// How ring pages are mapped.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RingMapping {
    /// Data pages mapped twice back to back: every packet contiguous (zero-copy).
    /// Where a page's region is not a shared mapping of a file (anonymous or private
    /// VMM memory), or the kernel refuses the mapping, the ring is paged instead.
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

fn ring(memory: &GuestMemory, pfns: &[u64], how: RingMapping) -> io::Result<Arc<dyn RingMem>> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidInput, m.to_string());
    let pages = pfns
        .iter()
        .map(|&p| {
            memory
                .ring_page(p)
                .ok_or_else(|| bad("ring page outside guest memory"))
        })
        .collect::<io::Result<Vec<_>>>()?;
    let (&ctl, data) = pages.split_first().ok_or_else(|| bad("empty ring"))?;
    if how == RingMapping::DoubleMapped {
        match DoubleMappedRingMem::from_region_pages(ctl, data) {
            Ok(m) => return Ok(Arc::new(m)),
            Err(e) => {
                tracing::debug!(error = %e, "ring cannot be double-mapped; paged instead");
            }
        }
    }
    Ok(Arc::new(PagedRingMem::from_pages(ctl, data)?))
}

/// Whether a ring GPADL names any page twice (within one ring, or shared by the two
/// rings). Linux never does; a ring whose pages alias lets the guest change what the
/// host reads behind its checks, so such a GPADL is refused at open. Bounded: sorts a
/// copy of the (capped) page list.
pub fn ring_pages_alias(gpadl: &Gpadl) -> bool {
    let mut pfns: Vec<u64> = gpadl
        .ranges
        .iter()
        .flat_map(|r| r.pfns.iter().copied())
        .collect();
    pfns.sort_unstable();
    pfns.windows(2).any(|w| w.first() == w.get(1))
}

/// Maps a ring GPADL (one range of whole pages, split at `downstream_page_offset`)
/// into its two rings. Page numbers are the guest's: each is checked against guest
/// memory, and a page named twice is refused ([`ring_pages_alias`]).
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
    if ring_pages_alias(gpadl) {
        return Err(bad("ring GPADL names a page twice"));
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

/// A host's use of a GPADL: while any holder keeps it, the guest's teardown of the
/// GPADL is not answered (the host must not touch the pages after GpadlTorndown).
/// The guest asking for the teardown revokes the lease ([`GpadlLease::revoke`]): the
/// holders see it ([`GpadlBuffer::is_revoked`]), stop using the pages and drop their
/// handles; the last drop tells the bus, which then completes the teardown.
pub struct GpadlLease {
    id: u32,
    revoked: AtomicBool,
    waker: Mutex<Option<Arc<dyn Wake>>>,
    on_release: Box<dyn Fn(u32) + Send + Sync>,
}

impl GpadlLease {
    /// A lease on GPADL `id`; `on_release(id)` runs when the last handle goes.
    pub fn new(id: u32, on_release: Box<dyn Fn(u32) + Send + Sync>) -> Arc<Self> {
        Arc::new(Self {
            id,
            revoked: AtomicBool::new(false),
            waker: Mutex::new(None),
            on_release,
        })
    }

    /// The GPADL's id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The guest wants the GPADL back: marks the lease revoked and wakes the holder.
    pub fn revoke(&self) {
        self.revoked.store(true, Ordering::SeqCst);
        if let Some(w) = self
            .waker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            w.wake();
        }
    }

    /// Whether the guest asked for the GPADL back.
    pub fn is_revoked(&self) -> bool {
        self.revoked.load(Ordering::Acquire)
    }

    /// What to wake when the lease is revoked (the holder's worker).
    pub fn set_waker(&self, waker: Arc<dyn Wake>) {
        *self.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(waker);
    }
}

impl Drop for GpadlLease {
    fn drop(&mut self) {
        (self.on_release)(self.id);
    }
}

impl std::fmt::Debug for GpadlLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpadlLease")
            .field("id", &self.id)
            .field("revoked", &self.is_revoked())
            .finish()
    }
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
    /// The GPA of byte 0 when the pages are consecutive guest pages: an access is then
    /// one copy instead of one per page.
    contiguous: Option<u64>,
    /// The bus's lease, when the buffer came from one: every clone holds it.
    lease: Option<Arc<GpadlLease>>,
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
        let consecutive = range.pfns.windows(2).all(|w| match w {
            [a, b] => a.checked_add(1) == Some(*b),
            _ => true,
        });
        // Only when the pages cover every byte the GPADL claims (otherwise the
        // page-by-page path refuses the uncovered part).
        let covered = (range.pfns.len() as u64)
            .checked_mul(4096)
            .is_some_and(|b| u64::from(range.byte_offset) + u64::from(range.byte_count) <= b);
        let contiguous = range
            .pfns
            .first()
            .filter(|_| consecutive && covered)
            .and_then(|p| p.checked_mul(4096))
            .and_then(|gpa| gpa.checked_add(u64::from(range.byte_offset)));
        Ok(Self {
            memory: memory.clone(),
            pfns: range.pfns.clone().into(),
            first_offset: range.byte_offset as usize,
            size: range.byte_count as usize,
            contiguous,
            lease: None,
        })
    }

    /// The buffer holding `lease` (the bus completes the GPADL's teardown only once
    /// every clone of the buffer is gone).
    pub fn with_lease(mut self, lease: Arc<GpadlLease>) -> Self {
        self.lease = Some(lease);
        self
    }

    /// Whether the guest tore the GPADL down: stop using the buffer and drop it.
    #[inline]
    pub fn is_revoked(&self) -> bool {
        self.lease.as_ref().is_some_and(|l| l.is_revoked())
    }

    /// What to wake when the guest tears the GPADL down.
    pub fn on_revoke(&self, waker: Arc<dyn Wake>) {
        if let Some(l) = &self.lease {
            l.set_waker(waker);
        }
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.size
    }

    /// The guest page numbers the buffer lies in, in order.
    pub fn pfns(&self) -> &[u64] {
        &self.pfns
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
        if let Some(base) = self.contiguous {
            // Guest memory bounds are checked by the access itself.
            let gpa = base.checked_add(offset as u64).ok_or(err)?;
            return if len == 0 || f(gpa, len, 0) {
                Ok(())
            } else {
                Err(err)
            };
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

#[cfg(test)]
mod tests {
    use super::*;
    use vmbus_proto::channel::gpadl::GpaRange;

    fn buffer(
        memory: &GuestMemory,
        pfns: Vec<u64>,
        byte_offset: u32,
        byte_count: u32,
    ) -> GpadlBuffer {
        let gpadl = Gpadl {
            child_relid: 1,
            gpadl: 1,
            ranges: vec![GpaRange {
                byte_count,
                byte_offset,
                pfns,
            }],
        };
        GpadlBuffer::new(memory, &gpadl).unwrap()
    }

    /// Consecutive and scattered pages give the same bytes, and both refuse what lies
    /// outside the buffer or outside guest memory.
    #[test]
    fn contiguous_and_scattered_buffers_agree() {
        let memory = GuestMemory::new(64 * 4096).unwrap();
        let pattern: Vec<u8> = (0..64 * 4096).map(|i| (i * 7 % 251) as u8).collect();
        memory.write(0, &pattern).unwrap();
        let contiguous = buffer(&memory, vec![4, 5, 6, 7], 100, 3 * 4096);
        assert!(contiguous.contiguous.is_some());
        let scattered = buffer(&memory, vec![4, 9, 6, 20], 100, 3 * 4096);
        assert!(scattered.contiguous.is_none());
        let gpa_of = |pfns: &[u64], off: usize| {
            pfns[(100 + off) / 4096] as usize * 4096 + (100 + off) % 4096
        };
        for (buf, pfns) in [(&contiguous, [4u64, 5, 6, 7]), (&scattered, [4, 9, 6, 20])] {
            for (off, len) in [
                (0usize, 10usize),
                (3990, 200),
                (4096 * 2 + 5, 4000),
                (0, 3 * 4096),
            ] {
                let mut got = vec![0u8; len];
                buf.read_at(off, &mut got).unwrap();
                let want: Vec<u8> = (0..len).map(|i| pattern[gpa_of(&pfns, off + i)]).collect();
                assert_eq!(got, want, "read {off}+{len}");
            }
            assert!(
                buf.read_at(3 * 4096 - 4, &mut [0u8; 8]).is_err(),
                "past the end"
            );
            assert!(
                buf.write_at(usize::MAX, &[0u8; 2]).is_err(),
                "overflowing offset"
            );
            assert!(
                buf.read_at(3 * 4096, &mut []).is_ok(),
                "empty read at the end"
            );
        }
        // Writes land on the same guest bytes either way.
        contiguous.write_at(4000, &[0xAA; 200]).unwrap();
        let mut back = [0u8; 200];
        memory.read(4 * 4096 + 4100, &mut back).unwrap();
        assert_eq!(back, [0xAA; 200]);
        scattered.write_at(4000, &[0xBB; 200]).unwrap();
        memory.read(9 * 4096 + 4, &mut back).unwrap();
        assert_eq!(back, [0xBB; 200]);

        // Pages outside guest memory: refused on both paths.
        let outside = buffer(&memory, vec![1000, 1001], 0, 8192);
        assert!(outside.contiguous.is_some());
        assert!(outside.read_at(0, &mut [0u8; 16]).is_err());
        assert!(
            buffer(&memory, vec![1000, 3], 0, 8192)
                .read_at(0, &mut [0u8; 16])
                .is_err()
        );
        // A byte count beyond its pages: never the one-copy path, and the uncovered
        // part is refused.
        let short = buffer(&memory, vec![4, 5], 0, 3 * 4096);
        assert!(short.contiguous.is_none());
        assert!(short.read_at(2 * 4096, &mut [0u8; 16]).is_err());
        assert!(short.read_at(4096, &mut [0u8; 16]).is_ok());
    }
}
