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
