//! The ring protocol: writing and reading packets, batching, and the signal decisions.
//!
//! Each side keeps a private copy of its own index (`next`) and of the last value it
//! published (`committed`), plus a cached copy of the peer's index, so the shared cache
//! line is touched once per batch rather than once per packet. Every index read from
//! the peer is checked (below the data size, 8-aligned) and every packet length against
//! the bytes available: a corrupt ring yields [`RingError`], never a panic or an
//! endless loop.

use crate::control::FEATURE_PENDING_SEND_SIZE;
use crate::error::{ReadError, RingError, WriteError};
use crate::mem::RingMem;
use alloc::vec::Vec;
use core::sync::atomic::{Ordering, fence};
use vmbus_proto::packet::{
    DESCRIPTOR_SIZE, PacketDescriptor, PacketType, TRAILER_SIZE, descriptor_for,
};
use zerocopy::{FromBytes, IntoBytes};

fn checked_size<M: RingMem>(mem: &M) -> Result<u32, RingError> {
    let len = mem.data_len();
    u32::try_from(len)
        .ok()
        .filter(|&s| s > 0 && s % 8 == 0 && s <= u32::MAX / 2)
        .ok_or(RingError::InvalidSize(len))
}

fn validate(which: &'static str, value: u32, size: u32) -> Result<u32, RingError> {
    if value >= size || !value.is_multiple_of(8) {
        return Err(RingError::InvalidIndex { which, value, size });
    }
    Ok(value)
}

/// Bytes from `from` to `to` going forward around a ring of `size`.
fn distance(from: u32, to: u32, size: u32) -> u32 {
    if to >= from {
        to - from
    } else {
        size - from + to
    }
}

/// The sender's half of a packet header: what [`OutgoingRing::try_write`] puts before
/// the payload.
#[derive(Copy, Clone, Debug)]
pub struct OutgoingPacket<'a> {
    /// Packet type.
    pub packet_type: PacketType,
    /// Descriptor flags (e.g. completion requested).
    pub flags: u16,
    /// Transaction id.
    pub transaction_id: u64,
    /// Type-specific header bytes between the descriptor and the data (transfer-page or
    /// GPA-direct ranges); must be a multiple of 8 bytes. Empty for in-band packets.
    pub header: &'a [u8],
}

impl OutgoingPacket<'static> {
    /// An in-band data packet.
    pub const fn inband(transaction_id: u64, flags: u16) -> Self {
        Self {
            packet_type: PacketType::DATA_INBAND,
            flags,
            transaction_id,
            header: &[],
        }
    }
    /// A completion packet.
    pub const fn completion(transaction_id: u64) -> Self {
        Self {
            packet_type: PacketType::COMPLETION,
            flags: 0,
            transaction_id,
            header: &[],
        }
    }
}

/// The writing side of one ring.
pub struct OutgoingRing<M> {
    mem: M,
    size: u32,
    committed: u32,
    next: u32,
    cached_read: u32,
    pending_send_set: bool,
    stats: WriterStats,
}

/// Counters of a writer.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Packets written.
    pub packets: u64,
    /// Commits that asked for a signal.
    pub signals: u64,
    /// Writes refused because the ring was full.
    pub full: u64,
}

impl<M: RingMem> OutgoingRing<M> {
    /// Takes the writing side of `mem`. Starts from the control page's current
    /// `write_index` (validated) and advertises `pending_send_sz` support in
    /// `feature_bits`.
    pub fn new(mem: M) -> Result<Self, RingError> {
        let size = checked_size(&mem)?;
        let ctl = mem.control();
        let w = validate("write_index", ctl.write_index(), size)?;
        let r = validate("read_index", ctl.read_index(), size)?;
        ctl.set_feature_bits(ctl.feature_bits() | FEATURE_PENDING_SEND_SIZE);
        Ok(Self {
            mem,
            size,
            committed: w,
            next: w,
            cached_read: r,
            pending_send_set: false,
            stats: WriterStats::default(),
        })
    }

    /// The ring memory.
    pub fn mem(&self) -> &M {
        &self.mem
    }

    /// Counters.
    pub fn stats(&self) -> WriterStats {
        self.stats
    }

    /// The largest packet (descriptor, header and payload, padded) this ring can hold.
    pub fn max_packet_len(&self) -> usize {
        self.size as usize - TRAILER_SIZE - 8
    }

    /// Bytes free for new packets given the cached read index, keeping 8 bytes free.
    fn free(&self) -> u32 {
        // Free space is the distance from our write position forward to the reader's
        // position; equal indices mean empty (all free).
        let used = distance(self.cached_read, self.next, self.size);
        (self.size - used).saturating_sub(8)
    }

    fn refresh_read(&mut self) -> Result<(), RingError> {
        self.cached_read = validate("read_index", self.mem.control().read_index(), self.size)?;
        // The reader may not be between our committed and next positions (it cannot read
        // what is not published): if it claims so, the peer is lying.
        let published = distance(self.cached_read, self.committed, self.size);
        let pending = distance(self.committed, self.next, self.size);
        if published + pending >= self.size {
            return Err(RingError::InvalidIndex {
                which: "read_index",
                value: self.cached_read,
                size: self.size,
            });
        }
        Ok(())
    }

    /// Bytes `header` and `payload` occupy in the ring (packet padded to 8, plus the
    /// trailer), or `None` if they can never fit a packet.
    pub fn ring_len(packet: &OutgoingPacket<'_>, payload_len: usize) -> Option<usize> {
        if !packet.header.len().is_multiple_of(8) {
            return None;
        }
        let d = descriptor_for(
            packet.packet_type,
            packet.flags,
            packet.transaction_id,
            packet.header.len(),
            payload_len,
        )
        .ok()?;
        Some(usize::from(d.length8) * 8 + TRAILER_SIZE)
    }

    /// Writes one packet gathered from `payload` slices, without publishing it. No
    /// allocation. On [`WriteError::Full`] nothing is written: commit what is pending,
    /// then wait (see [`OutgoingRing::prepare_wait`]).
    #[inline]
    pub fn try_write(
        &mut self,
        packet: &OutgoingPacket<'_>,
        payload: &[&[u8]],
    ) -> Result<(), WriteError> {
        // One slice is the common case (and the sum's loop costs more than the slice).
        let payload_len: usize = match payload {
            [p] => p.len(),
            _ => payload.iter().map(|p| p.len()).sum(),
        };
        if !packet.header.len().is_multiple_of(8) {
            return Err(WriteError::TooLarge(packet.header.len()));
        }
        let d = descriptor_for(
            packet.packet_type,
            packet.flags,
            packet.transaction_id,
            packet.header.len(),
            payload_len,
        )
        .map_err(|_| WriteError::TooLarge(payload_len))?;
        let packet_len = usize::from(d.length8) * 8;
        let total = packet_len + TRAILER_SIZE;
        if total > self.free() as usize {
            self.make_room(total)?;
        }
        let start = self.next as usize;
        let size = self.size as usize;
        // The last 16 bytes: 8 that may be padding, then the trailer.
        let mut tail = [0u8; 16];
        if let Some(t) = tail.get_mut(8..) {
            t.copy_from_slice(&vmbus_proto::packet::trailer(start as u32).to_le_bytes());
        }
        let pad = packet_len - DESCRIPTOR_SIZE - packet.header.len() - payload_len;
        if start + total <= size {
            // Not wrapping (most packets): no wrap arithmetic. With one payload slice
            // the packet is one run (over `dyn RingMem`, as a guest's rings are, one
            // call instead of two). With several, the tail goes first as one 16-byte
            // write ending where the packet ends (a packet and its trailer take at least
            // 24 bytes, so it starts inside the packet, and what it covers before the
            // padding, if anything, is written over next), then the pieces.
            if let [p] = payload {
                // One call and one range check for the whole packet: descriptor, header,
                // payload, then the padding and the trailer (the end of `tail`).
                let end = tail.get(8 - pad..).unwrap_or(&[]);
                self.mem
                    .write_run(start, &[d.as_bytes(), packet.header, p, end]);
            } else {
                self.mem.write_data(start + total - 16, &tail);
                self.write_pieces(start, &d, packet.header, payload);
            }
        } else {
            self.write_wrapped(start, &d, packet.header, payload, &tail, pad);
        }
        let end = start + total;
        self.next = if end >= size { end - size } else { end } as u32;
        self.stats.packets += 1;
        if self.pending_send_set {
            self.clear_pending_send();
        }
        Ok(())
    }

    /// The slow half of [`OutgoingRing::try_write`]'s space test: a packet that can
    /// never fit is too large (`free` never exceeds the largest packet, so one that fits
    /// is never too large); otherwise re-reads the reader's index.
    #[cold]
    #[inline(never)]
    fn make_room(&mut self, total: usize) -> Result<(), WriteError> {
        if total > self.max_packet_len() + TRAILER_SIZE {
            return Err(WriteError::TooLarge(total));
        }
        self.refresh_read()?;
        if total > self.free() as usize {
            self.stats.full += 1;
            return Err(WriteError::Full { needed: total });
        }
        Ok(())
    }

    /// A packet that does not wrap but whose payload is gathered from several slices:
    /// the descriptor and header as one run at `start`, then each non-empty slice.
    #[inline(never)]
    fn write_pieces(
        &mut self,
        start: usize,
        d: &PacketDescriptor,
        header: &[u8],
        payload: &[&[u8]],
    ) {
        self.mem.write_run(start, &[d.as_bytes(), header]);
        let mut pos = start + DESCRIPTOR_SIZE + header.len();
        for p in payload {
            if !p.is_empty() {
                self.mem.write_data(pos, p);
                pos += p.len();
            }
        }
    }

    /// A packet that wraps past the end of the ring: each piece goes straight into the
    /// ring (a copy per piece, none when empty), the `pad` bytes of padding riding in
    /// front of the trailer at the end of `tail`.
    #[cold]
    #[inline(never)]
    fn write_wrapped(
        &mut self,
        start: usize,
        d: &PacketDescriptor,
        header: &[u8],
        payload: &[&[u8]],
        tail: &[u8; 16],
        pad: usize,
    ) {
        let size = self.size as usize;
        let mut pos = start;
        // `bytes` is never longer than the ring: one subtraction wraps.
        let mut put = |bytes: &[u8]| {
            if !bytes.is_empty() {
                self.mem.write_data(pos, bytes);
                pos += bytes.len();
                if pos >= size {
                    pos -= size;
                }
            }
        };
        put(d.as_bytes());
        put(header);
        for p in payload {
            put(p);
        }
        put(tail.get(8 - pad..).unwrap_or(&[]));
    }

    /// The first packet written after [`OutgoingRing::prepare_wait`] clears
    /// `pending_send_sz`: the writer is no longer waiting.
    #[cold]
    #[inline(never)]
    fn clear_pending_send(&mut self) {
        self.mem.control().set_pending_send_size(0);
        self.pending_send_set = false;
    }

    /// Publishes every packet written since the last commit. Returns whether the reader
    /// must be signalled: only when the ring went from empty to non-empty while the
    /// reader's `interrupt_mask` is clear (Linux `hv_signal_on_write`).
    pub fn commit(&mut self) -> bool {
        if self.next == self.committed {
            return false;
        }
        let old = self.committed;
        let ctl = self.mem.control();
        ctl.set_write_index(self.next);
        self.committed = self.next;
        fence(Ordering::SeqCst);
        if ctl.interrupt_mask() != 0 {
            return false;
        }
        let signal = ctl.read_index() == old;
        if signal {
            self.stats.signals += 1;
        }
        signal
    }

    /// Before waiting for space: sets `pending_send_sz` to `needed` (what
    /// [`WriteError::Full`] reported), then re-checks. Returns `Ok(true)` if the space
    /// is already there (retry now, do not wait); `Ok(false)` means wait for the
    /// reader's signal, which it sends when its free space crosses `needed`.
    pub fn prepare_wait(&mut self, needed: usize) -> Result<bool, RingError> {
        let ctl = self.mem.control();
        ctl.set_pending_send_size(u32::try_from(needed).unwrap_or(u32::MAX));
        self.pending_send_set = true;
        fence(Ordering::SeqCst);
        self.refresh_read()?;
        Ok(needed <= self.free() as usize)
    }

    /// Whether every committed packet has been consumed by the reader (re-reads the
    /// reader's index).
    pub fn is_drained(&mut self) -> Result<bool, RingError> {
        self.refresh_read()?;
        Ok(self.cached_read == self.committed)
    }
}

/// The reading side of one ring.
pub struct IncomingRing<M> {
    mem: M,
    size: u32,
    committed: u32,
    next: u32,
    cached_write: u32,
    stats: ReaderStats,
}

/// Counters of a reader.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct ReaderStats {
    /// Packets read.
    pub packets: u64,
    /// Commits that asked for a signal.
    pub signals: u64,
    /// Reads that found the ring corrupt.
    pub corrupt: u64,
}

/// A packet in the ring, valid until the next read from the same ring.
pub struct IncomingPacket<'a, M> {
    mem: &'a M,
    offset: u32,
    /// The descriptor (copied out of shared memory; validated against the ring).
    pub descriptor: PacketDescriptor,
}

impl<'a, M: RingMem> IncomingPacket<'a, M> {
    /// Packet length (`length8 * 8`, descriptor included, trailer excluded).
    pub fn len(&self) -> usize {
        usize::from(self.descriptor.length8) * 8
    }

    /// Always false: a packet has at least its descriptor.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The packet's bytes in place, if they are contiguous in the mapping (always with
    /// [`crate::DoubleMappedRingMem`]; otherwise unless the packet wraps or crosses a
    /// page of a paged ring). Peer-writable memory: parse once, copy what you keep.
    pub fn view(&self) -> Option<&'a [u8]> {
        self.mem.data_view(self.offset as usize, self.len())
    }

    /// Copies the packet into `dst` (which must be at least [`Self::len`] bytes;
    /// otherwise copies the first `dst.len()` bytes). Returns the bytes copied.
    pub fn copy_to(&self, dst: &mut [u8]) -> usize {
        let n = dst.len().min(self.len());
        if let Some(d) = dst.get_mut(..n) {
            self.mem.read_data(self.offset as usize, d);
        }
        n
    }

    /// Copies the packet's bytes from byte `from` on (the payload at
    /// `descriptor.data_offset8 * 8`, say) into `dst`, up to its length or the packet's
    /// end; one copy whether or not the packet is contiguous. Returns the bytes copied
    /// (0 if `from` is past the end).
    pub fn copy_from(&self, from: usize, dst: &mut [u8]) -> usize {
        let n = dst.len().min(self.len().saturating_sub(from));
        if n > 0
            && let Some(d) = dst.get_mut(..n)
        {
            // `from < len <= data size`: the offset wraps once at most.
            let off = self.offset as usize + from;
            let size = self.mem.data_len();
            self.mem
                .read_data(if off >= size { off - size } else { off }, d);
        }
        n
    }

    /// Calls `f` with the packet's bytes: in place when contiguous, otherwise copied
    /// into `scratch` (which grows to the largest wrapped packet once and is reused).
    pub fn with_bytes<R>(&self, scratch: &mut Vec<u8>, f: impl FnOnce(&[u8]) -> R) -> R {
        match self.view() {
            Some(v) => f(v),
            None => {
                scratch.resize(self.len(), 0);
                self.copy_to(scratch);
                f(scratch)
            }
        }
    }
}

impl<M: RingMem> IncomingRing<M> {
    /// Takes the reading side of `mem`, starting at the control page's `read_index`
    /// (validated).
    pub fn new(mem: M) -> Result<Self, RingError> {
        let size = checked_size(&mem)?;
        let ctl = mem.control();
        let r = validate("read_index", ctl.read_index(), size)?;
        let w = validate("write_index", ctl.write_index(), size)?;
        Ok(Self {
            mem,
            size,
            committed: r,
            next: r,
            cached_write: w,
            stats: ReaderStats::default(),
        })
    }

    /// The ring memory.
    pub fn mem(&self) -> &M {
        &self.mem
    }

    /// Counters.
    pub fn stats(&self) -> ReaderStats {
        self.stats
    }

    fn refresh_write(&mut self) -> Result<(), RingError> {
        let w = validate("write_index", self.mem.control().write_index(), self.size)?;
        self.cached_write = w;
        Ok(())
    }

    /// Bytes readable given the cached write index.
    fn available(&self) -> u32 {
        distance(self.next, self.cached_write, self.size)
    }

    /// Whether a packet is available (re-reads the writer's index).
    pub fn has_data(&mut self) -> Result<bool, RingError> {
        if self.available() == 0 {
            self.refresh_write()?;
        }
        Ok(self.available() != 0)
    }

    /// Reads the next packet without publishing the new read position (see
    /// [`IncomingRing::commit`]). No allocation.
    #[inline]
    pub fn try_read(&mut self) -> Result<IncomingPacket<'_, M>, ReadError> {
        let mut avail = self.available();
        if avail == 0 {
            avail = self.refresh_available()?;
        }
        let offset = self.next;
        let descriptor = match self.mem.data_view(offset as usize, DESCRIPTOR_SIZE) {
            Some(v) => PacketDescriptor::read_from_bytes(v).ok(),
            None => self.read_split_descriptor(offset),
        };
        let Some(descriptor) = descriptor else {
            return Err(self.corrupt(offset, "descriptor"));
        };
        let len = usize::from(descriptor.length8) * 8;
        let data_off = usize::from(descriptor.data_offset8) * 8;
        // `DESCRIPTOR_SIZE <= data_off <= len` makes the packet at least a descriptor,
        // and `len + TRAILER_SIZE <= avail` keeps it inside what was written (and
        // `avail` at least a descriptor and a trailer). One test on the fast path; the
        // reason is worked out only for a corrupt packet.
        if data_off < DESCRIPTOR_SIZE || data_off > len || len + TRAILER_SIZE > avail as usize {
            let reason = if (avail as usize) < DESCRIPTOR_SIZE + TRAILER_SIZE {
                "fewer bytes than a descriptor and trailer"
            } else if len < DESCRIPTOR_SIZE {
                "length8 below the descriptor size"
            } else if data_off < DESCRIPTOR_SIZE || data_off > len {
                "data_offset8 outside the packet"
            } else {
                "packet longer than the bytes written"
            };
            return Err(self.corrupt(offset, reason));
        }
        // `len + TRAILER_SIZE <= avail < size`: one subtraction wraps.
        let end = offset as usize + len + TRAILER_SIZE;
        let size = self.size as usize;
        self.next = if end >= size { end - size } else { end } as u32;
        self.stats.packets += 1;
        Ok(IncomingPacket {
            mem: &self.mem,
            offset,
            descriptor,
        })
    }

    /// The second half of [`IncomingRing::try_read`]'s emptiness test: re-reads the
    /// writer's index; `Empty` if there is still nothing. (Not cold: a reader that
    /// keeps up takes it once per batch.)
    #[inline]
    fn refresh_available(&mut self) -> Result<u32, ReadError> {
        self.refresh_write()
            .inspect_err(|_| self.stats.corrupt += 1)?;
        match self.available() {
            0 => Err(ReadError::Empty),
            n => Ok(n),
        }
    }

    /// A descriptor that wraps (or crosses a page), copied out.
    #[cold]
    #[inline(never)]
    fn read_split_descriptor(&self, offset: u32) -> Option<PacketDescriptor> {
        let mut raw = [0u8; DESCRIPTOR_SIZE];
        self.mem.read_data(offset as usize, &mut raw);
        PacketDescriptor::read_from_bytes(&raw).ok()
    }

    /// Counts a corrupt packet at `offset` and names why.
    #[cold]
    #[inline(never)]
    fn corrupt(&mut self, offset: u32, reason: &'static str) -> ReadError {
        self.stats.corrupt += 1;
        RingError::InvalidPacket { offset, reason }.into()
    }

    /// Publishes the read position. Returns whether the writer must be signalled:
    /// only if the writer advertises `pending_send_sz` support, has set it, and this
    /// commit moved the free space from at most `pending_send_sz` (low 3 bits masked)
    /// to above it (Linux `hv_pkt_iter_close`).
    pub fn commit(&mut self) -> bool {
        if self.next == self.committed {
            return false;
        }
        let old = self.committed;
        let ctl = self.mem.control();
        ctl.set_read_index(self.next);
        self.committed = self.next;
        if ctl.feature_bits() & FEATURE_PENDING_SEND_SIZE == 0 {
            return false;
        }
        fence(Ordering::SeqCst);
        // Low 3 bits masked, as OpenVMM does: some writers set the size minus one. Sizes
        // are multiples of 8, so this only makes the threshold exact for them.
        let pending = ctl.pending_send_size() & !7;
        if pending == 0 {
            return false;
        }
        // An invalid write index from a hostile writer only affects whom we wake.
        let w = ctl.write_index() % self.size;
        let free_after = self.size - distance(self.next, w, self.size);
        let free_before = self.size - distance(old, w, self.size);
        let signal = free_before <= pending && free_after > pending;
        if signal {
            self.stats.signals += 1;
        }
        signal
    }

    /// Sets `interrupt_mask`: while set, the writer does not signal. Set it before
    /// draining, then call [`IncomingRing::unmask_and_recheck`].
    pub fn mask_interrupts(&self) {
        self.mem.control().set_interrupt_mask(1);
    }

    /// Clears `interrupt_mask`, then re-checks for data that arrived while masked (the
    /// writer did not signal for it). `Ok(true)`: drain again before sleeping.
    pub fn unmask_and_recheck(&mut self) -> Result<bool, RingError> {
        self.mem.control().set_interrupt_mask(0);
        fence(Ordering::SeqCst);
        self.refresh_write()?;
        Ok(self.available() != 0)
    }
}
