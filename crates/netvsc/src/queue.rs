//! One queue's data path ([`DataQueue`]): its channel, the send sections and
//! large-send slots it owns, its open (batching) section and its received frames. A
//! [`crate::Netvsc`] drives all of its queues from one thread; [`NetvscQueue`] is one
//! queue taken out of it to run on a thread of its own.

use crate::rx::{RxQueue, SlotInfo, rx_slot_size};
use crate::{
    Counters, HostOffloads, NetvscError, NetvscStats, RECEIVE_BUFFER_ID, RxInfo, TxOffload,
    frame_size, l4_of, push_ppi,
};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use core::time::Duration;
use vmbus::GuestPlatform;
use vmbus::{Receiver, Sender};
use vmbus_proto::nvsp::{NvspChannelType, NvspMessage, NvspStatus};
use vmbus_proto::packet::{FLAG_COMPLETION_REQUESTED, Packet, PacketKind, PacketLimits};
use vmbus_proto::rndis::{RndisMessage, RndisMessages};
use vmbus_ring::{Doorbell, OutgoingPacket};

/// Transaction ids of NVSP requests (control path).
pub(crate) const NVSP_TID: u64 = 1 << 62;
/// Transaction ids of send-section sends: section and generation.
pub(crate) const SECTION_TID: u64 = 1 << 61;
/// Transaction ids of large (GPA-direct) sends: slot and generation.
pub(crate) const LARGE_TID: u64 = 1 << 60;
/// Bytes per large-send slot: the largest LSO packet plus its RNDIS header and PPIs.
pub(crate) const LARGE_SLOT_BYTES: u64 = 64 * 1024 + 4096;
/// Most RNDIS packets the driver puts in one send section, whatever the host allows.
pub(crate) const MAX_PACKETS_PER_MESSAGE: u32 = 64;
/// Largest packet alignment (as a shift) the driver pads to; a host asking for more
/// gets one packet per message, which never needs padding.
pub(crate) const MAX_ALIGNMENT_SHIFT: u32 = 6;
/// The padding after a packet in a batched section (zeros, as Linux writes them).
static PAD_ZEROS: [u8; 1 << MAX_ALIGNMENT_SHIFT] = [0; 1 << MAX_ALIGNMENT_SHIFT];

/// What the NIC's bring-up settled and every queue uses unchanged afterwards.
#[derive(Clone)]
pub(crate) struct Layout {
    /// Guest memory (the buffers shared with the host), through the bus's platform.
    pub(crate) platform: Arc<dyn GuestPlatform>,
    /// Receive buffer: first GPA, bytes.
    pub(crate) recv: (u64, u64),
    /// First GPA of the send buffer.
    pub(crate) send: u64,
    pub(crate) section_size: u32,
    /// First GPA of the large-send slots.
    pub(crate) large: u64,
    pub(crate) offloads: HostOffloads,
    /// RNDIS packets the host accepts per message (INITIALIZE_COMPLETE
    /// `max_pkt_per_msg`, clamped to 1..=[`MAX_PACKETS_PER_MESSAGE`]).
    pub(crate) max_pkt: u32,
    /// Alignment of packets sharing a message (`1 << pkt_alignment_factor`).
    pub(crate) pkt_align: u32,
    pub(crate) mtu: u32,
    pub(crate) stats: Arc<Counters>,
    pub(crate) timeout: Duration,
}

impl Layout {
    fn bad(&self) {
        self.stats.bad_host_messages.fetch_add(1, Ordering::Relaxed);
    }

    fn unknown_completion(&self) {
        self.stats
            .unknown_completions
            .fetch_add(1, Ordering::Relaxed);
    }
}

/// What a queue's host traffic carries besides its own data path, for the control
/// path (the primary channel) to act on.
pub(crate) enum HostEvent<'a> {
    /// A completion for an NVSP request (its tid has [`NVSP_TID`]).
    NvspCompletion { tid: u64, payload: &'a [u8] },
    /// An RNDIS message other than a data packet (a control answer, a status
    /// indication) from the receive buffer.
    Rndis(RndisMessage<'a>),
    /// An in-band NVSP message (the send indirection table).
    Inband(&'a [u8]),
}

/// Where a queue's control-path events go: the NIC's control state, or (for a queue
/// on its own) a counter of bad host messages.
pub(crate) type Events<'e> = dyn FnMut(&Layout, HostEvent<'_>) + 'e;

/// A send section being filled with several RNDIS packets (Linux's "multi-send data"):
/// sent as one SEND_RNDIS_PKT when full or flushed.
#[derive(Copy, Clone, Debug)]
struct OpenSection {
    section: u32,
    /// Bytes written so far (each message padded to the host's alignment).
    used: u32,
    /// RNDIS packets in it.
    count: u32,
}

/// One queue's data path.
pub(crate) struct DataQueue {
    /// Queue index (0: the primary channel).
    pub(crate) q: usize,
    pub(crate) relid: u32,
    pub(crate) sender: Sender,
    pub(crate) receiver: Receiver,
    /// Rung by the host's signals on this channel.
    pub(crate) waker: Arc<Doorbell>,
    /// Send sections this queue owns that are free.
    pub(crate) free_sections: Vec<u32>,
    /// Per send section: the generation of this queue's send in flight, if any (the
    /// tid carries section and generation, so completions are matched without a map).
    in_flight: Vec<Option<u32>>,
    /// Large-send slots this queue owns that are free.
    pub(crate) free_large: Vec<u32>,
    /// Per large slot: the generation of this queue's send in flight.
    large_in_flight: Vec<Option<u32>>,
    generation: u32,
    /// The send section being filled by deferred sends.
    open: Option<OpenSection>,
    pub(crate) rx: RxQueue,
    staged: Vec<(usize, usize)>,
    stage: Vec<u8>,
    scratch: Vec<u8>,
}

impl DataQueue {
    pub(crate) fn new(
        q: usize,
        relid: u32,
        sender: Sender,
        receiver: Receiver,
        waker: Arc<Doorbell>,
        rx_queue: usize,
        mtu: u32,
    ) -> Self {
        sender.shared().set_waker(waker.clone());
        Self {
            q,
            relid,
            sender,
            receiver,
            waker,
            free_sections: Vec::new(),
            in_flight: Vec::new(),
            free_large: Vec::new(),
            large_in_flight: Vec::new(),
            generation: 0,
            open: None,
            rx: RxQueue::new(rx_queue, frame_size(mtu)),
            staged: Vec::with_capacity(64),
            stage: Vec::with_capacity(64 * 1024),
            scratch: vec![0u8; rx_slot_size(frame_size(mtu)).max(8192)],
        }
    }

    /// Gives the queue sections `sections` and large slots `large` (of `n_sections`
    /// and `n_large` in all).
    pub(crate) fn own(
        &mut self,
        sections: Vec<u32>,
        n_sections: u32,
        large: Vec<u32>,
        n_large: u32,
    ) {
        self.free_sections = sections;
        self.in_flight = vec![None; n_sections as usize];
        self.free_large = large;
        self.large_in_flight = vec![None; n_large as usize];
    }

    /// Whether a deferred frame waits in the open section.
    pub(crate) fn has_open(&self) -> bool {
        self.open.is_some()
    }

    /// Moves the host's waker for this channel to `waker`.
    pub(crate) fn set_waker(&mut self, waker: Arc<Doorbell>) {
        self.sender.shared().set_waker(waker.clone());
        self.waker = waker;
    }

    pub(crate) fn take_section(
        &mut self,
        layout: &Layout,
        events: &mut Events<'_>,
    ) -> Result<u32, NetvscError> {
        if let Some(s) = self.free_sections.pop() {
            return Ok(s);
        }
        let deadline = layout.platform.now() + layout.timeout;
        loop {
            if let Some(s) = self.free_sections.pop() {
                return Ok(s);
            }
            if layout.platform.now() >= deadline {
                return Err(NetvscError::Timeout("a free send section"));
            }
            self.poll(layout, Duration::from_millis(10), events)?;
        }
    }

    /// Sends SEND_RNDIS_PKT for `size` bytes in `section`.
    pub(crate) fn submit(
        &mut self,
        section: u32,
        size: u32,
        channel_type: NvspChannelType,
    ) -> Result<(), NetvscError> {
        self.generation = self.generation.wrapping_add(1) & 0x0FFF_FFFF;
        let tid = SECTION_TID | u64::from(self.generation) << 32 | u64::from(section);
        if let Some(g) = self.in_flight.get_mut(section as usize) {
            *g = Some(self.generation);
        }
        let m = NvspMessage::SendRndisPacket {
            channel_type,
            send_buf_section_index: section,
            send_buf_section_size: size,
        };
        let mut buf = [0u8; 40];
        let n = m
            .emit(&mut buf)
            .map_err(|_| NetvscError::Refused("NVSP encode"))?;
        self.sender.send(
            &OutgoingPacket::inband(tid, FLAG_COMPLETION_REQUESTED),
            &[buf.get(..n).unwrap_or(&[])],
        )?;
        Ok(())
    }

    /// Sends the open section, if any.
    pub(crate) fn flush(&mut self, layout: &Layout) -> Result<(), NetvscError> {
        if let Some(o) = self.open.take() {
            self.submit(o.section, o.used, NvspChannelType::RMC_DATA)?;
            self.count_sent(layout, o.count);
        }
        Ok(())
    }

    /// Counts a data message of `frames` frames sent to the host: once per message,
    /// not per frame (the counters are shared by every queue's thread).
    fn count_sent(&self, layout: &Layout, frames: u32) {
        let stats = &layout.stats;
        stats.tx_messages.fetch_add(1, Ordering::Relaxed);
        stats
            .tx_frames
            .fetch_add(u64::from(frames), Ordering::Relaxed);
        if let Some(c) = stats.tx_queue_frames.get(self.q) {
            c.fetch_add(u64::from(frames), Ordering::Relaxed);
        }
    }

    /// Writes one RNDIS packet (`hdr` then `frame`, `hdr` being the RNDIS header whose
    /// `msg_len` may be raised to cover the padding) into the open send section,
    /// opening one (and sending the full one) as needed.
    fn append(
        &mut self,
        layout: &Layout,
        hdr: &mut [u8],
        frame: &[u8],
        events: &mut Events<'_>,
    ) -> Result<(), NetvscError> {
        let total = (hdr.len() + frame.len()) as u32;
        // Padded so the next packet starts aligned; a packet that only fits unpadded
        // goes alone.
        let padded = Some(total.next_multiple_of(layout.pkt_align))
            .filter(|&p| p <= layout.section_size)
            .unwrap_or(total);
        let fits = matches!(self.open,
            Some(o) if o.count < layout.max_pkt && o.used + padded <= layout.section_size);
        let mut o = match self.open {
            Some(o) if fits => o,
            _ => {
                self.flush(layout)?;
                OpenSection {
                    section: self.take_section(layout, events)?,
                    used: 0,
                    count: 0,
                }
            }
        };
        if padded != total
            && let Some(len) = hdr.get_mut(4..8)
        {
            len.copy_from_slice(&padded.to_le_bytes());
        }
        let gpa =
            layout.send + u64::from(o.section) * u64::from(layout.section_size) + u64::from(o.used);
        let pad = PAD_ZEROS.get(..(padded - total) as usize).unwrap_or(&[]);
        let written = layout.platform.write_gather(gpa, &[hdr, frame, pad]);
        if written.is_err() {
            // The section goes back unused (the open one, if this was it, too).
            self.open = (o.used > 0).then_some(o);
            if o.used == 0 {
                self.free_sections.push(o.section);
            }
            return Err(NetvscError::Refused("send buffer write"));
        }
        o.used += padded;
        o.count += 1;
        self.open = Some(o);
        if o.count >= layout.max_pkt {
            self.flush(layout)?;
        }
        Ok(())
    }

    /// Builds the RNDIS packet for `frame` and puts it in the open section (or sends it
    /// GPA-direct when it is larger than a section).
    pub(crate) fn enqueue(
        &mut self,
        layout: &Layout,
        frame: &[u8],
        offload: &TxOffload,
        events: &mut Events<'_>,
    ) -> Result<(), NetvscError> {
        use vmbus_proto::rndis::ppi::{
            NDIS_TCP_LARGE_SEND_OFFLOAD_V2_TYPE, NdisPkt8021qInfo, NdisTcpIpChecksumInfo,
            NdisTcpLsoInfo, Ppi,
        };
        let mut ppis = [Ppi::HashValue(0); 2];
        let mut n_ppis = 0;
        let mut max = frame_size(layout.mtu);
        if offload.checksum || offload.lso_mss.is_some() {
            let (v6, proto, l4) = l4_of(frame).ok_or(NetvscError::Offload("not IPv4 or IPv6"))?;
            let tcp = proto == 6;
            if !tcp && proto != 17 {
                return Err(NetvscError::Offload("not TCP or UDP"));
            }
            let o = layout.offloads;
            if let Some(mss) = offload.lso_mss {
                let lso_max = if v6 { o.lso6_max } else { o.lso4_max };
                if !tcp || lso_max == 0 {
                    return Err(NetvscError::Offload("LSO needs TCP and the host's LSOv2"));
                }
                max = lso_max as usize + l4 + 60;
                let mut l = NdisTcpLsoInfo(0);
                l.set_lso_type(NDIS_TCP_LARGE_SEND_OFFLOAD_V2_TYPE);
                l.set_ip_version(u32::from(v6));
                l.set_mss(mss);
                l.set_tcp_header_offset(l4 as u32);
                push_ppi(&mut ppis, &mut n_ppis, Ppi::Lso(l));
            } else {
                let allowed = match (v6, tcp) {
                    (false, true) => o.tcp4,
                    (false, false) => o.udp4,
                    (true, true) => o.tcp6,
                    (true, false) => o.udp6,
                };
                if !allowed {
                    return Err(NetvscError::Offload("the host did not offer this checksum"));
                }
                let mut c = NdisTcpIpChecksumInfo(0);
                c.set_tx_is_ipv4(!v6);
                c.set_tx_is_ipv6(v6);
                c.set_tx_tcp_checksum(tcp);
                c.set_tx_udp_checksum(!tcp);
                c.set_tx_tcp_header_offset(l4 as u32);
                push_ppi(&mut ppis, &mut n_ppis, Ppi::Checksum(c));
            }
        }
        if let Some(tci) = offload.vlan_tci {
            let v = NdisPkt8021qInfo(0)
                .with_pri(u32::from(tci >> 13))
                .with_cfi(tci & 0x1000 != 0)
                .with_vlan_id(u32::from(tci & 0xfff));
            push_ppi(&mut ppis, &mut n_ppis, Ppi::Vlan(v));
        }
        if frame.len() > max {
            return Err(NetvscError::FrameTooLarge(frame.len()));
        }
        let ppis = ppis.get(..n_ppis).unwrap_or(&[]);
        let header_len = vmbus_proto::rndis::packet_header_len(ppis);
        let total = header_len + frame.len();
        let mut hdr = [0u8; 128];
        let hdr = hdr
            .get_mut(..header_len)
            .ok_or(NetvscError::Refused("RNDIS encode"))?;
        vmbus_proto::rndis::emit_packet_header(hdr, ppis, frame.len())
            .map_err(|_| NetvscError::Refused("RNDIS encode"))?;
        if total <= layout.section_size as usize {
            self.append(layout, hdr, frame, events)?;
        } else {
            // Whatever was deferred goes first: frames stay in order.
            self.flush(layout)?;
            self.send_large(layout, hdr, frame, events)?;
        }
        Ok(())
    }

    /// Sends an RNDIS packet (`hdr` then `frame`) from a large-send slot as a
    /// GPA-direct packet.
    fn send_large(
        &mut self,
        layout: &Layout,
        hdr: &[u8],
        frame: &[u8],
        events: &mut Events<'_>,
    ) -> Result<(), NetvscError> {
        let total = (hdr.len() + frame.len()) as u64;
        if total > LARGE_SLOT_BYTES {
            return Err(NetvscError::FrameTooLarge(frame.len()));
        }
        if self.large_in_flight.is_empty() {
            return Err(NetvscError::Refused("large sends (this queue has no slot)"));
        }
        let deadline = layout.platform.now() + layout.timeout;
        let slot = loop {
            if let Some(s) = self.free_large.pop() {
                break s;
            }
            if layout.platform.now() >= deadline {
                return Err(NetvscError::Timeout("a free large-send slot"));
            }
            self.poll(layout, Duration::from_millis(10), events)?;
        };
        let gpa = layout.large + u64::from(slot) * LARGE_SLOT_BYTES;
        let written = layout.platform.write_gather(gpa, &[hdr, frame]);
        if written.is_err() {
            self.free_large.push(slot);
            return Err(NetvscError::Refused("large-send write"));
        }
        // vmdata_gpa_direct: reserved, range count 1; one gpa_range: byte count,
        // offset 0, then the page numbers.
        let pages = total.div_ceil(4096);
        let mut header = [0u8; 16 + 8 * (LARGE_SLOT_BYTES as usize / 4096)];
        for (i, chunk) in header.chunks_exact_mut(8).enumerate() {
            let word = match i {
                // range count 1 (high half of the first word)
                0 => 1u64 << 32,
                // byte count, offset 0
                1 => total,
                n if n - 2 < pages as usize => gpa / 4096 + (n - 2) as u64,
                _ => 0,
            };
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        let header = header.get(..16 + 8 * pages as usize).unwrap_or(&[]);
        self.generation = self.generation.wrapping_add(1) & 0x0FFF_FFFF;
        let tid = LARGE_TID | u64::from(self.generation) << 32 | u64::from(slot);
        if let Some(g) = self.large_in_flight.get_mut(slot as usize) {
            *g = Some(self.generation);
        }
        let m = NvspMessage::SendRndisPacket {
            channel_type: NvspChannelType::RMC_DATA,
            send_buf_section_index: vmbus_proto::nvsp::NETVSC_INVALID_INDEX,
            send_buf_section_size: 0,
        };
        let mut buf = [0u8; 40];
        let n = m
            .emit(&mut buf)
            .map_err(|_| NetvscError::Refused("NVSP encode"))?;
        self.sender.send(
            &OutgoingPacket {
                packet_type: vmbus_proto::packet::PacketType::DATA_USING_GPA_DIRECT,
                flags: FLAG_COMPLETION_REQUESTED,
                transaction_id: tid,
                header,
            },
            &[buf.get(..n).unwrap_or(&[])],
        )?;
        self.count_sent(layout, 1);
        Ok(())
    }

    /// Handles what arrived, waiting up to `timeout` if nothing has.
    pub(crate) fn poll(
        &mut self,
        layout: &Layout,
        timeout: Duration,
        events: &mut Events<'_>,
    ) -> Result<usize, NetvscError> {
        let n = self.poll_once(layout, events)?;
        if n > 0 {
            return Ok(n);
        }
        // prepare_sleep says whether something arrived in between.
        if !self.receiver.prepare_sleep()? {
            self.receiver.shared().wait_bell(&self.waker, timeout);
        }
        self.poll_once(layout, events)
    }

    /// Handles the packets in the ring now.
    pub(crate) fn poll_once(
        &mut self,
        layout: &Layout,
        events: &mut Events<'_>,
    ) -> Result<usize, NetvscError> {
        self.staged.clear();
        self.stage.clear();
        let (staged, stage) = (&mut self.staged, &mut self.stage);
        let n = self.receiver.try_recv_batch(256, |p| {
            let start = stage.len();
            stage.resize(start + p.len(), 0);
            if let Some(d) = stage.get_mut(start..) {
                p.copy_to(d);
            }
            staged.push((start, stage.len()));
        })?;
        let stage = core::mem::take(&mut self.stage);
        for i in 0..self.staged.len() {
            if let Some(p) = self.staged.get(i).and_then(|&(s, e)| stage.get(s..e)) {
                self.handle(layout, p, events);
            }
        }
        self.stage = stage;
        self.sender.flush();
        Ok(n)
    }

    /// Handles one packet from the host.
    pub(crate) fn handle(&mut self, layout: &Layout, bytes: &[u8], events: &mut Events<'_>) {
        let limits = PacketLimits {
            max_transfer_ranges: 375,
            max_gpa_ranges: 0,
        };
        let Ok(p) = Packet::parse(bytes, &limits) else {
            return layout.bad();
        };
        let tid = p.descriptor.transaction_id;
        let generation = ((tid >> 32) & 0x0FFF_FFFF) as u32;
        match p.kind {
            PacketKind::Completion if tid & LARGE_TID != 0 => {
                let slot = tid as u32;
                match self.large_in_flight.get_mut(slot as usize) {
                    Some(g) if *g == Some(generation) => {
                        *g = None;
                        self.free_large.push(slot);
                    }
                    _ => layout.unknown_completion(),
                }
            }
            PacketKind::Completion if tid & SECTION_TID != 0 => {
                let section = tid as u32;
                match self.in_flight.get_mut(section as usize) {
                    Some(g) if *g == Some(generation) => {
                        *g = None;
                        self.free_sections.push(section);
                    }
                    _ => layout.unknown_completion(),
                }
            }
            PacketKind::Completion if tid & NVSP_TID != 0 => {
                events(
                    layout,
                    HostEvent::NvspCompletion {
                        tid,
                        payload: p.payload,
                    },
                );
            }
            PacketKind::Completion => layout.unknown_completion(),
            PacketKind::TransferPages { header, .. } => {
                if header.transfer_pageset_id != RECEIVE_BUFFER_ID {
                    layout.bad();
                }
                // Counted once per packet (the counters are shared by every
                // queue's thread), before the frames can be taken.
                let mut frames = 0u64;
                for r in p.kind.transfer_ranges() {
                    frames += self.receive_range(layout, r.byte_offset, r.byte_count, events);
                }
                if frames > 0 {
                    layout.stats.rx_frames.fetch_add(frames, Ordering::Relaxed);
                    if let Some(c) = layout.stats.rx_queue_frames.get(self.q) {
                        c.fetch_add(frames, Ordering::Relaxed);
                    }
                }
                // Complete the transfer so the host can reuse the sub-allocations, on
                // this queue: the host frees the ranges per channel.
                let done = NvspMessage::SendRndisPacketComplete {
                    status: NvspStatus::SUCCESS,
                };
                let mut buf = [0u8; 40];
                let n = done.emit(&mut buf).unwrap_or(0);
                if self
                    .sender
                    .write(
                        &OutgoingPacket::completion(tid),
                        &[buf.get(..n).unwrap_or(&[])],
                    )
                    .is_err()
                {
                    layout.bad();
                }
            }
            PacketKind::InBand => events(layout, HostEvent::Inband(p.payload)),
            _ => layout.bad(),
        }
    }

    /// Reads the RNDIS messages of one transfer-page range; returns how many frames
    /// it held that were queued.
    fn receive_range(
        &mut self,
        layout: &Layout,
        offset: u32,
        len: u32,
        events: &mut Events<'_>,
    ) -> u64 {
        let (base, size) = layout.recv;
        let (offset, len) = (u64::from(offset), u64::from(len));
        if len == 0
            || len as usize > self.scratch.len()
            || offset.checked_add(len).is_none_or(|e| e > size)
        {
            layout.bad();
            return 0;
        }
        if let Some(got) = self.receive_in_place(layout, base + offset, len as usize) {
            return u64::from(got);
        }
        let mut got = 0;
        let mut scratch = core::mem::take(&mut self.scratch);
        let ok = scratch
            .get_mut(..len as usize)
            .is_some_and(|d| layout.platform.read(base + offset, d).is_ok());
        if ok {
            for m in RndisMessages::new(scratch.get(..len as usize).unwrap_or(&[])) {
                match m {
                    Ok(RndisMessage::Packet(pkt)) => {
                        let info = SlotInfo::Known(RxInfo::of(pkt.ppi));
                        if self.rx.push(pkt.data, info) {
                            got += 1;
                        } else {
                            layout.stats.rx_dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(m) => events(layout, HostEvent::Rndis(m)),
                    Err(_) => {
                        layout.bad();
                        break;
                    }
                }
            }
        } else {
            layout.bad();
        }
        self.scratch = scratch;
        got
    }

    /// The common case of [`DataQueue::receive_range`]: a range holding exactly one
    /// RNDIS PACKET is read straight into the next receive slot and queued where its
    /// frame sits, without a copy through `scratch`. `None`: anything else (several or
    /// other messages, a full queue, a long range); the caller takes the general path.
    fn receive_in_place(&mut self, layout: &Layout, gpa: u64, len: usize) -> Option<bool> {
        let rx = &mut self.rx;
        let max_frame = rx.max_frame;
        let slot = rx.next_slot()?;
        let dst = slot.get_mut(..len)?;
        layout.platform.read(gpa, dst).ok()?;
        let start = slot.as_ptr() as usize;
        let mut messages = RndisMessages::new(slot.get(..len)?);
        let Some(Ok(RndisMessage::Packet(pkt))) = messages.next() else {
            return None;
        };
        if messages.next().is_some() || pkt.data.len() > max_frame {
            return None;
        }
        // Where the frame sits in the slot (a subslice of it).
        let off = (pkt.data.as_ptr() as usize).checked_sub(start)?;
        let n = pkt.data.len();
        // The infos stay in the slot, decoded only for recv_with_info.
        let info = match (pkt.ppi.as_ptr() as usize).checked_sub(start) {
            Some(ppi_off) if !pkt.ppi.is_empty() => SlotInfo::Ppi {
                off: u16::try_from(ppi_off).ok()?,
                len: u16::try_from(pkt.ppi.len()).ok()?,
            },
            _ => SlotInfo::Known(RxInfo::default()),
        };
        Some(rx.commit(off, n, info))
    }

    /// Hands the oldest received frame to `f`, counting verified checksums.
    pub(crate) fn pop<R>(
        &mut self,
        layout: &Layout,
        want_info: bool,
        f: impl FnOnce(&[u8], RxInfo) -> R,
    ) -> Option<R> {
        let stats = &layout.stats;
        self.rx.pop_with(want_info, |frame, info| {
            if info.l4_checksum_valid {
                stats.rx_checksum_valid.fetch_add(1, Ordering::Relaxed);
            }
            f(frame, info)
        })
    }

    /// Panics if the queue's bookkeeping is broken (fuzzing).
    pub(crate) fn check_invariants(&mut self) {
        for (free, in_flight, what) in [
            (&self.free_sections, &self.in_flight, "section"),
            (&self.free_large, &self.large_in_flight, "large slot"),
        ] {
            let mut seen = vec![false; in_flight.len()];
            for &s in free {
                let slot = seen.get_mut(s as usize);
                assert!(
                    slot.as_ref().is_some_and(|v| !**v),
                    "bad or duplicate free {what} {s}"
                );
                if let Some(v) = slot {
                    *v = true;
                }
                assert!(
                    in_flight.get(s as usize).is_some_and(Option::is_none),
                    "free {what} {s} still in flight"
                );
            }
        }
        assert!(self.rx.len <= self.rx.capacity());
        // One queued frame (not all: the queue must still be able to fill up) comes
        // out within the MTU, its infos decoded from the host's bytes.
        let max = self.rx.max_frame;
        if let Some(len) = self.rx.pop_with(true, |f, _| f.len()) {
            assert!(len <= max, "frame of {len} bytes queued");
        }
    }
}

/// Events on a queue that runs on its own: the host has no control traffic for a
/// subchannel, so any is counted as a bad host message.
fn not_for_a_subchannel(layout: &Layout, _event: HostEvent<'_>) {
    layout.bad();
}

/// One queue of a NIC on a thread of its own ([`crate::Netvsc::take_queue`]): sends
/// on its subchannel (a flow the caller keeps on one queue stays in order), receives
/// the frames the host's RSS puts on it, with its own share of the send sections and
/// large-send slots and its own receive queue. The NIC's control path (link state,
/// the host's send indirection table) stays with the [`crate::Netvsc`]. Everything the
/// host sends on the subchannel is checked as on the primary; control traffic there is
/// counted as bad.
pub struct NetvscQueue {
    layout: Layout,
    data: DataQueue,
}

impl NetvscQueue {
    pub(crate) fn new(layout: Layout, data: DataQueue) -> Self {
        Self { layout, data }
    }

    /// The queue's index (its subchannel index).
    pub fn index(&self) -> usize {
        self.data.q
    }

    /// The subchannel's relid.
    pub fn relid(&self) -> u32 {
        self.data.relid
    }

    /// A snapshot of the NIC's counters (shared with the [`crate::Netvsc`] and its
    /// other queues).
    pub fn stats(&self) -> NetvscStats {
        self.layout.stats.snapshot()
    }

    /// The largest frame the NIC sends or receives.
    pub fn max_frame(&self) -> usize {
        frame_size(self.layout.mtu)
    }

    /// Sends one frame, as [`crate::Netvsc::send`], on this queue.
    pub fn send(&mut self, frame: &[u8]) -> Result<(), NetvscError> {
        self.send_with(frame, &TxOffload::default())
    }

    /// Sends one frame with offload work, as [`crate::Netvsc::send_with`].
    pub fn send_with(&mut self, frame: &[u8], offload: &TxOffload) -> Result<(), NetvscError> {
        self.send_deferred_with(frame, offload)?;
        self.flush()
    }

    /// Defers one frame, as [`crate::Netvsc::send_deferred`].
    pub fn send_deferred(&mut self, frame: &[u8]) -> Result<(), NetvscError> {
        self.send_deferred_with(frame, &TxOffload::default())
    }

    /// Defers one frame with offload work.
    pub fn send_deferred_with(
        &mut self,
        frame: &[u8],
        offload: &TxOffload,
    ) -> Result<(), NetvscError> {
        self.data
            .enqueue(&self.layout, frame, offload, &mut not_for_a_subchannel)
    }

    /// Sends the deferred frames now.
    pub fn flush(&mut self) -> Result<(), NetvscError> {
        self.data.flush(&self.layout)
    }

    /// Handles what the host sent on this queue, waiting up to `timeout` for
    /// something to arrive.
    pub fn poll(&mut self, timeout: Duration) -> Result<usize, NetvscError> {
        self.flush()?;
        self.data
            .poll(&self.layout, timeout, &mut not_for_a_subchannel)
    }

    /// Receives one frame into `buf`, as [`crate::Netvsc::recv`].
    pub fn recv(
        &mut self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<Option<usize>, NetvscError> {
        self.recv_with_info(timeout, |frame, _| crate::copy_cut(frame, buf))
    }

    /// Hands one received frame to `f` in place, as [`crate::Netvsc::recv_with`].
    pub fn recv_with<R>(
        &mut self,
        timeout: Duration,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, NetvscError> {
        self.recv_inner(timeout, false, |frame, _| f(frame))
    }

    /// [`NetvscQueue::recv_with`] with the host's infos about the frame.
    pub fn recv_with_info<R>(
        &mut self,
        timeout: Duration,
        f: impl FnOnce(&[u8], RxInfo) -> R,
    ) -> Result<Option<R>, NetvscError> {
        self.recv_inner(timeout, true, f)
    }

    fn recv_inner<R>(
        &mut self,
        timeout: Duration,
        want_info: bool,
        f: impl FnOnce(&[u8], RxInfo) -> R,
    ) -> Result<Option<R>, NetvscError> {
        self.flush()?;
        if self.data.rx.len == 0 {
            let deadline = self.layout.platform.now() + timeout;
            while self.data.rx.len == 0 {
                let now = self.layout.platform.now();
                if now >= deadline {
                    self.data
                        .poll_once(&self.layout, &mut not_for_a_subchannel)?;
                    break;
                }
                self.poll(deadline - now)?;
            }
        }
        Ok(self.data.pop(&self.layout, want_info, f))
    }
}
