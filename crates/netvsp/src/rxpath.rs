//! The receive path into the guest's receive buffer: a writer per thread that copies frames into free sub-allocations
//! and groups them into transfer-page packets ([`RxWriter`]), and the frames the
//! primary's worker hands to a subchannel's thread to write ([`RxFrame`]).

use crate::config::FRAMES_PER_TRANSFER;
use crate::shared::{NO_SLOT, NicShared, Out};
use crate::sync::lock;
use hv_partition::gpadl::GpadlBuffer;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use vmbus_proto::rndis::ppi::{NdisTcpIpChecksumInfo, Ppi};

/// Receive slots a writer takes from the shared table at a time.
const SLOT_BATCH: usize = 64;
/// RNDIS messages up to this size (header and frame) are joined before the copy into
/// the guest's buffer: one write instead of two.
const SMALL_MESSAGE: usize = 256;

/// One queue's transfer-page packet being filled.
#[derive(Copy, Clone)]
pub(crate) struct Batch {
    slots: [u32; FRAMES_PER_TRANSFER],
    ranges: [(u32, u32); FRAMES_PER_TRANSFER],
    n: usize,
    /// The queue the frames are for (counted per queue when the packet is made).
    q: u16,
}

impl Default for Batch {
    fn default() -> Self {
        Self {
            slots: [0; FRAMES_PER_TRANSFER],
            ranges: [(0, 0); FRAMES_PER_TRANSFER],
            n: 0,
            q: 0,
        }
    }
}

/// A received frame the primary's worker pulled and classified, for a subchannel's
/// thread to write into the guest's buffer (the buffer goes back to the pool after).
pub(crate) struct RxFrame {
    pub(crate) buf: Vec<u8>,
    pub(crate) len: usize,
    /// The RSS hash, sent as a per-packet info.
    pub(crate) hash: Option<u32>,
    /// The receive checksum result, sent as a per-packet info.
    pub(crate) csum: Option<NdisTcpIpChecksumInfo>,
}

/// Writes RNDIS messages into free receive sub-allocations and makes transfer-page
/// packets of them; one per thread that writes. Slots come from the shared table in
/// batches, so its lock (which the guest's completions also take) is held once per
/// batch and never during a copy.
pub(crate) struct RxWriter {
    shared: Arc<NicShared>,
    /// The receive buffer (`None` before the guest gave one or after it revoked it).
    pub(crate) buf: Option<GpadlBuffer>,
    /// Sub-allocation size.
    section: u32,
    /// Free slots taken from the shared table, used first.
    cache: Vec<u32>,
}

impl RxWriter {
    pub(crate) fn new(shared: Arc<NicShared>, section: u32) -> Self {
        Self {
            shared,
            buf: None,
            section,
            cache: Vec::with_capacity(SLOT_BATCH),
        }
    }

    /// Copies an RNDIS message, given as consecutive `parts` (a header and a frame,
    /// written in place without joining them first), into a free sub-allocation;
    /// returns its (slot, offset), or `None` (counted) when there is no buffer or no
    /// free sub-allocation.
    pub(crate) fn write_slot(&mut self, parts: &[&[u8]]) -> Option<(u32, u32)> {
        let stats = &self.shared.stats;
        let Some(buf) = self.buf.as_ref() else {
            stats.rx_not_ready.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        if parts.iter().map(|p| p.len()).sum::<usize>() > self.section as usize {
            stats.oversize_frames.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if self.cache.is_empty() {
            let mut recv = lock(&self.shared.recv);
            if let Some(r) = recv.as_mut() {
                let at = r.free.len().saturating_sub(SLOT_BATCH);
                self.cache.extend(r.free.drain(at..));
            }
        }
        let Some(slot) = self.cache.pop() else {
            stats.rx_no_buffer.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let offset = slot * self.section;
        let mut at = offset as usize;
        for part in parts {
            if buf.write_at(at, part).is_err() {
                self.cache.push(slot);
                stats.rx_not_ready.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            at += part.len();
        }
        Some((slot, offset))
    }

    /// Gives the slots taken but not used back to the shared table.
    pub(crate) fn return_slots(&mut self) {
        if self.cache.is_empty() {
            return;
        }
        let mut recv = lock(&self.shared.recv);
        match recv.as_mut() {
            Some(r) => r.free.append(&mut self.cache),
            None => self.cache.clear(),
        }
    }

    /// Drops the cached slots (the receive buffer they belonged to is gone).
    pub(crate) fn forget_slots(&mut self) {
        self.cache.clear();
    }

    /// The transfer-page packet for the written sub-allocations `slots` (`ranges` are
    /// their offsets and lengths), marked in flight until the guest completes it.
    pub(crate) fn transfer(
        &self,
        slots: &[u32],
        ranges: &[(u32, u32)],
        control: bool,
    ) -> Option<Out> {
        let mut recv = lock(&self.shared.recv);
        let recv = recv.as_mut()?;
        let (Some(&first), n) = (slots.first(), slots.len().min(FRAMES_PER_TRANSFER)) else {
            return None;
        };
        recv.generation = recv.generation.wrapping_add(1);
        let generation = recv.generation;
        for (i, &slot) in slots.iter().take(n).enumerate() {
            if let Some(g) = recv.in_flight.get_mut(slot as usize) {
                *g = Some(generation);
            }
            let next = slots
                .get(i + 1)
                .copied()
                .filter(|_| i + 1 < n)
                .unwrap_or(NO_SLOT);
            if let Some(l) = recv.batch_next.get_mut(slot as usize) {
                *l = next;
            }
        }
        let mut r = [(0u32, 0u32); FRAMES_PER_TRANSFER];
        for (d, s) in r.iter_mut().zip(ranges.iter().take(n)) {
            *d = *s;
        }
        Some(Out::Transfer {
            tid: u64::from(first) | u64::from(generation) << 32,
            id: recv.id,
            ranges: r,
            n: n as u8,
            control,
        })
    }

    /// Writes one received frame for queue `q` (an RNDIS PACKET: header with the hash
    /// and checksum infos, then the frame, one copy) and adds it to `batch`; returns
    /// the transfer-page packet when the batch is full. A frame that finds no free
    /// sub-allocation is dropped and counted.
    pub(crate) fn frame(
        &mut self,
        batch: &mut Batch,
        q: u16,
        frame: &[u8],
        hash: Option<u32>,
        csum: Option<NdisTcpIpChecksumInfo>,
    ) -> Option<Out> {
        // The hash PPI (RSS), then the checksum PPI, each if present.
        let mut ppis = [Ppi::HashValue(0); 2];
        let mut n_ppis = 0;
        for p in [hash.map(Ppi::HashValue), csum.map(Ppi::Checksum)]
            .into_iter()
            .flatten()
        {
            if let Some(slot) = ppis.get_mut(n_ppis) {
                *slot = p;
                n_ppis += 1;
            }
        }
        // A small frame joins its header on the stack and goes in one write; a large
        // one is written after its header in place (no copy to join them).
        let mut message = [0u8; SMALL_MESSAGE];
        let hlen = vmbus_proto::rndis::emit_packet_header(
            &mut message,
            ppis.get(..n_ppis).unwrap_or(&[]),
            frame.len(),
        )
        .ok()?;
        let total = hlen + frame.len();
        let (slot, offset) = match message.get_mut(hlen..total) {
            Some(room) => {
                room.copy_from_slice(frame);
                self.write_slot(&[message.get(..total)?])?
            }
            None => self.write_slot(&[message.get(..hlen)?, frame])?,
        };
        let (Some(s), Some(r)) = (batch.slots.get_mut(batch.n), batch.ranges.get_mut(batch.n))
        else {
            return None;
        };
        *s = slot;
        *r = (offset, total as u32);
        batch.n += 1;
        batch.q = q;
        // Several frames share one transfer-page packet and one completion.
        (batch.n == FRAMES_PER_TRANSFER)
            .then(|| self.finish(batch))
            .flatten()
    }

    /// The transfer-page packet for what `batch` holds (emptying it). Its frames are
    /// counted here, once per packet and before the guest can see it (the counters are
    /// shared by every queue's thread: one update per frame made them bounce between
    /// CPUs). Frames whose buffer went away meanwhile are counted as not delivered.
    pub(crate) fn finish(&self, batch: &mut Batch) -> Option<Out> {
        let n = std::mem::take(&mut batch.n);
        if n == 0 {
            return None;
        }
        let out = self.transfer(
            batch.slots.get(..n).unwrap_or(&[]),
            batch.ranges.get(..n).unwrap_or(&[]),
            false,
        );
        let stats = &self.shared.stats;
        if out.is_some() {
            stats.rx_frames.fetch_add(n as u64, Ordering::Relaxed);
            if let Some(c) = stats.rx_queue_frames.get(usize::from(batch.q)) {
                c.fetch_add(n as u64, Ordering::Relaxed);
            }
        } else {
            stats.rx_not_ready.fetch_add(n as u64, Ordering::Relaxed);
        }
        out
    }
}
