//! The NetVSP device: one worker thread per open channel speaking NVSP and RNDIS.

use crate::backend::{MAX_JUMBO_FRAME, MAX_MTU, NetEndpoint, frame_size};
use crate::offload::{TxEngine, parse_request};
use crate::rndis::RndisControl;
use hv_partition::gpadl::GpadlBuffer;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;
use vmbus::{Channel, ChannelError, DeviceContext, OpenRequest, Receiver, Sender, VmbusDevice};
use vmbus_proto::nvsp::{
    NETVSC_INVALID_INDEX, Nvsp1ReceiveBufferSection, NvspChannelType, NvspMessage,
    NvspSendIndirectionTable, NvspStatus, NvspSubchannelOp, NvspVersion,
    SEND_INDIRECTION_TABLE_OFFSET,
};
use vmbus_proto::packet::{
    FLAG_COMPLETION_REQUESTED, Packet, PacketKind, PacketLimits, PacketType, TransferPageHeader,
    TransferPageRange,
};
use vmbus_proto::rndis::{RndisMessage, RndisMessages};
use vmbus_ring::{Doorbell, OutgoingPacket};
use zerocopy::IntoBytes;

/// Receive-buffer sub-allocation size at the 1500-byte MTU (Linux
/// `NETVSC_RECV_SECTION_SIZE`); larger MTUs get [`recv_section_size`]. One frame of
/// up to 1514 bytes plus its RNDIS header fits.
pub const RECV_SECTION_SIZE: u32 = 1728;

/// Receive-buffer sub-allocation size for `mtu`: the largest frame plus room for the
/// RNDIS header and per-packet infos (the 210 bytes [`RECV_SECTION_SIZE`] leaves at
/// 1500), in 64-byte steps.
pub const fn recv_section_size(mtu: u32) -> u32 {
    let need = (frame_size(mtu) as u32 + (RECV_SECTION_SIZE - frame_size(1500) as u32))
        .next_multiple_of(64);
    if need > RECV_SECTION_SIZE {
        need
    } else {
        RECV_SECTION_SIZE
    }
}
/// Send-buffer section size offered to the guest (Linux `NETVSC_SEND_SECTION_SIZE`).
pub const SEND_SECTION_SIZE: u32 = 6144;
/// Largest RNDIS message accepted from the guest.
const MAX_RNDIS: usize = 64 * 1024;

/// NIC configuration.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct NetvspConfig {
    /// Permanent MAC address.
    pub mac: [u8; 6],
    /// Largest MTU offered to the guest (payload bytes per frame, 68 to
    /// [`crate::backend::MAX_MTU`], and never above what the backend carries,
    /// [`NetEndpoint::max_frame`]); receive-buffer sub-allocations are sized from it.
    /// The guest's own MTU (its NDIS config) may be smaller: longer frames toward it are
    /// dropped and counted.
    pub mtu: u32,
    /// Link speed reported to the guest, in bits per second.
    pub link_speed_bps: u64,
    /// Queues offered to the guest (1 to [`MAX_QUEUES`]): with more than one, RSS
    /// capabilities are reported and the guest may ask for `max_queues - 1`
    /// subchannels.
    pub max_queues: u16,
    /// RNDIS packets a guest may put in one message (INITIALIZE_COMPLETE
    /// `max_pkt_per_msg`): above 1, Linux packs the frames its stack hands over in a
    /// burst into one send section with one completion. Any count is accepted on
    /// receipt (a message is bounded by its section); this only invites batching.
    pub max_packets_per_message: u32,
}

/// Most queues (primary channel plus subchannels) a NIC supports.
pub const MAX_QUEUES: u16 = 16;

impl Default for NetvspConfig {
    fn default() -> Self {
        Self {
            mac: [0x00, 0x15, 0x5D, 0x00, 0x00, 0x01],
            mtu: 1500,
            link_speed_bps: 10_000_000_000,
            max_queues: 8,
            max_packets_per_message: 16,
        }
    }
}

/// NIC counters, readable while it runs.
#[derive(Debug, Default)]
pub struct NicStats {
    /// Frames the guest sent that went to the backend.
    pub tx_frames: AtomicU64,
    /// Guest frames the backend dropped (or link down).
    pub tx_dropped: AtomicU64,
    /// Frames delivered to the guest.
    pub rx_frames: AtomicU64,
    /// Frames delivered with a receive checksum info saying their checksums were
    /// verified (receive checksum offload).
    pub rx_checksum_valid: AtomicU64,
    /// Frames dropped because the guest's receive buffer had no free sub-allocation.
    pub rx_no_buffer: AtomicU64,
    /// Frames dropped before the guest enabled reception (no buffer, filter 0).
    pub rx_not_ready: AtomicU64,
    /// Malformed NVSP, RNDIS or ring packets from the guest.
    pub bad_packets: AtomicU64,
    /// Completions for transaction ids we never sent.
    pub unknown_completions: AtomicU64,
    /// Frames longer than the MTU allows, dropped: from the backend (above the guest's
    /// MTU) or from the guest (above the NIC's).
    pub oversize_frames: AtomicU64,
    /// RNDIS control requests answered.
    pub control_requests: AtomicU64,
    /// Link-status indications sent.
    pub link_indications: AtomicU64,
    /// Guest packets that asked for offload work (checksum, LSO, VLAN tag).
    pub tx_offloaded: AtomicU64,
    /// Frames produced by segmenting LSO packets.
    pub tx_lso_segments: AtomicU64,
    /// Offloaded packets handed to a backend that finishes them itself (TAP with
    /// virtio-net headers) instead of being done in software.
    pub tx_native_offloads: AtomicU64,
    /// Guest packets dropped because their offload request was not negotiated or did
    /// not match the frame (see [`crate::offload::OffloadError`]).
    pub tx_offload_rejected: AtomicU64,
    /// Frames delivered to the guest, per queue.
    pub rx_queue_frames: [AtomicU64; MAX_QUEUES as usize],
    /// Guest data packets (SEND_RNDIS_PKT with channel type data) received, per queue.
    pub tx_queue_packets: [AtomicU64; MAX_QUEUES as usize],
    /// Subchannels granted to the guest.
    pub subchannels: AtomicU64,
    /// Negotiated NVSP version (0 until negotiated).
    pub nvsp_version: AtomicU64,
    /// The RNDIS QUERY and SET requests the guest made, in order (the first
    /// [`OID_LOG_CAP`]; a bring-up needs about a dozen).
    pub oid_log: std::sync::Mutex<Vec<OidRequestRecord>>,
}

/// Most OID requests kept in [`NicStats::oid_log`].
pub const OID_LOG_CAP: usize = 64;

/// One RNDIS OID request the guest made and how it was answered.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct OidRequestRecord {
    /// SET (true) or QUERY (false).
    pub set: bool,
    /// The OID.
    pub oid: u32,
    /// The RNDIS status answered.
    pub status: u32,
}

impl NicStats {
    pub(crate) fn record_oid(&self, set: bool, oid: u32, status: u32) {
        let mut log = self.oid_log.lock().unwrap_or_else(|e| e.into_inner());
        if log.len() < OID_LOG_CAP {
            log.push(OidRequestRecord { set, oid, status });
        }
    }

    /// A copy of the OID requests seen so far.
    pub fn oids(&self) -> Vec<OidRequestRecord> {
        self.oid_log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The NetVSP device: offer it on a HostBus with the network device class.
pub struct Netvsp {
    config: NetvspConfig,
    endpoint: Arc<Mutex<Option<Box<dyn NetEndpoint>>>>,
    stats: Arc<NicStats>,
    threads: Vec<JoinHandle<()>>,
}

impl Netvsp {
    /// A NIC attached to `endpoint`.
    pub fn new(config: NetvspConfig, endpoint: Box<dyn NetEndpoint>) -> Self {
        Self {
            config,
            endpoint: Arc::new(Mutex::new(Some(endpoint))),
            stats: Arc::new(NicStats::default()),
            threads: Vec::new(),
        }
    }

    /// The counters (shared with the running worker).
    pub fn stats(&self) -> Arc<NicStats> {
        self.stats.clone()
    }
}

impl VmbusDevice for Netvsp {
    fn open(&mut self, channel: Channel, req: &OpenRequest, context: &DeviceContext) -> bool {
        let Some(mut endpoint) = self
            .endpoint
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return false; // already open
        };
        let waker = Arc::new(Doorbell::new());
        endpoint.set_waker(waker.clone());
        channel.shared().set_waker(waker.clone());
        let Channel {
            sender, receiver, ..
        } = channel;
        let slot = self.endpoint.clone();
        let core = NicCore::new(
            self.config,
            req.relid,
            context.clone(),
            endpoint,
            self.stats.clone(),
        );
        let worker = Worker::new(core, sender, receiver, waker, context.clone());
        match std::thread::Builder::new()
            .name(format!("netvsp-{}", req.relid))
            .spawn(move || {
                let endpoint = worker.run();
                *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(endpoint);
            }) {
            Ok(h) => {
                self.threads.push(h);
                true
            }
            Err(_) => false,
        }
    }

    fn close(&mut self, _relid: u32) {
        // The worker sees the closed channel, returns the endpoint and exits.
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A packet this side owes the guest, held while the outgoing ring is full.
// Kept inline in a preallocated queue: boxing the ranges would allocate per packet.
#[allow(clippy::large_enum_variant)]
enum Out {
    /// A completion carrying an NVSP message (or nothing).
    Completion { tid: u64, msg: [u8; 40], len: u8 },
    /// An in-band NVSP message the host sends on its own (send indirection table).
    Inband { msg: [u8; 128], len: u8 },
    /// Receive-buffer sub-allocations holding RNDIS messages, one transfer-page packet.
    Transfer {
        tid: u64,
        ranges: [(u32, u32); FRAMES_PER_TRANSFER],
        n: u8,
        control: bool,
    },
}

struct RecvBuffer {
    buf: GpadlBuffer,
    id: u16,
    free: Vec<u32>,
    /// Per sub-allocation: the generation of the transfer in flight, if any.
    in_flight: Vec<Option<u32>>,
    /// Per sub-allocation: the next one in the same transfer-page packet.
    batch_next: Vec<u32>,
    generation: u32,
}

/// One queue's transfer-page packet being filled by [`NicCore::deliver_frames`].
#[derive(Copy, Clone)]
struct Batch {
    slots: [u32; FRAMES_PER_TRANSFER],
    ranges: [(u32, u32); FRAMES_PER_TRANSFER],
    n: usize,
}

/// Frames per transfer-page packet (Linux accepts up to 375 ranges).
pub const FRAMES_PER_TRANSFER: usize = 32;
const NO_SLOT: u32 = u32::MAX;

/// The protocol core of one NIC channel, without I/O: ring packets from the guest go in
/// ([`NicCore::handle_packet`]), backend frames are pulled ([`NicCore::deliver_frames`]),
/// and the packets owed to the guest queue up ([`NicCore::pop_outgoing`]). The worker
/// thread moves them between the channel and the core; tests and fuzzers drive it
/// directly.
pub struct NicCore {
    relid: u32,
    context: DeviceContext,
    endpoint: Box<dyn NetEndpoint>,
    stats: Arc<NicStats>,
    version: Option<NvspVersion>,
    recv: Option<RecvBuffer>,
    send: Option<GpadlBuffer>,
    rndis: RndisControl,
    tx: TxEngine,
    /// Packets owed to the guest, per queue (0 is the primary channel).
    out: Vec<VecDeque<Out>>,
    /// Which queues have an open channel (bit per queue).
    open_queues: u32,
    /// Subchannels granted to the guest.
    granted: u16,
    /// Subchannels the worker still has to offer.
    offer_request: u16,
    max_queues: u16,
    batches: Vec<Batch>,
    rndis_buf: Vec<u8>,
    frame: Vec<u8>,
    msg: Vec<u8>,
    /// Receive-buffer sub-allocation size ([`recv_section_size`] of the MTU).
    recv_section: u32,
    /// Largest frame at the NIC's MTU (guest transmit above it is dropped).
    max_frame: usize,
    /// Largest frame at the guest's MTU (from its NDIS config; frames toward it above
    /// this are dropped).
    guest_frame: usize,
}

impl NicCore {
    /// A core for channel `relid`, attached to `endpoint`.
    pub fn new(
        mut config: NetvspConfig,
        relid: u32,
        context: DeviceContext,
        endpoint: Box<dyn NetEndpoint>,
        stats: Arc<NicStats>,
    ) -> Self {
        config.max_queues = config.max_queues.clamp(1, MAX_QUEUES);
        // The backend's frames are read whole (never cut), whatever the MTU.
        let backend_frame = endpoint.max_frame().clamp(frame_size(68), MAX_JUMBO_FRAME);
        config.mtu = config.mtu.clamp(68, MAX_MTU).min(backend_frame as u32 - 18);
        let recv_section = recv_section_size(config.mtu);
        Self {
            rndis: RndisControl::new(config),
            tx: TxEngine::with_max_frame(frame_size(config.mtu)),
            recv_section,
            max_frame: frame_size(config.mtu),
            guest_frame: frame_size(config.mtu),
            relid,
            context,
            endpoint,
            stats,
            version: None,
            recv: None,
            send: None,
            out: (0..config.max_queues.clamp(1, MAX_QUEUES))
                .map(|q| VecDeque::with_capacity(if q == 0 { 1024 } else { 256 }))
                .collect(),
            open_queues: 1,
            granted: 0,
            offer_request: 0,
            max_queues: config.max_queues,
            batches: vec![
                Batch {
                    slots: [0; FRAMES_PER_TRANSFER],
                    ranges: [(0, 0); FRAMES_PER_TRANSFER],
                    n: 0,
                };
                usize::from(config.max_queues)
            ],
            // Filled once: messages are read into a prefix of it, never zero-filled again.
            rndis_buf: vec![0u8; MAX_RNDIS],
            frame: vec![0u8; backend_frame],
            msg: vec![0u8; recv_section as usize],
        }
    }

    /// Packets owed to the guest, not yet written (all queues).
    pub fn outgoing(&self) -> usize {
        self.out.iter().map(VecDeque::len).sum()
    }

    /// Marks queue `q` as having an open channel (or not): RSS sends frames only to
    /// open queues, the rest go to queue 0.
    pub fn set_queue_open(&mut self, q: u16, open: bool) {
        if q > 0 && q < self.max_queues {
            if open {
                self.open_queues |= 1 << q;
            } else {
                self.open_queues &= !(1 << q);
                // Nothing will be written to that channel any more: give back the
                // receive-buffer slots of the transfers still queued for it. (Ones
                // already in its ring stay in flight: the guest closed the channel
                // without completing them.)
                let dropped = self
                    .out
                    .get_mut(usize::from(q))
                    .map(std::mem::take)
                    .unwrap_or_default();
                for o in dropped {
                    if let Out::Transfer { tid, .. } = o {
                        self.completion(tid, &[]);
                    }
                }
            }
        }
    }

    /// Subchannels the guest was granted that the caller must now offer on the bus
    /// (indices `from..=to`); taking them clears the request.
    pub fn take_offer_request(&mut self) -> Option<(u16, u16)> {
        let n = std::mem::take(&mut self.offer_request);
        (n > 0).then_some((1, n))
    }

    /// Receive-buffer sub-allocations: (free, in flight, total), once the buffer is set up.
    pub fn recv_slots(&self) -> Option<(usize, usize, usize)> {
        self.recv.as_ref().map(|r| {
            (
                r.free.len(),
                r.in_flight.iter().filter(|g| g.is_some()).count(),
                r.in_flight.len(),
            )
        })
    }

    /// Link changes become RNDIS status indications; returns whether one was queued.
    pub fn poll_link(&mut self) -> bool {
        match self.rndis.link_change(self.endpoint.link_up()) {
            Some(up) => {
                self.indicate_link(up);
                true
            }
            None => false,
        }
    }

    /// Removes the next packet owed to the guest on the primary channel and hands it
    /// to `write` (which returns false if it could not be written; the packet then
    /// stays queued).
    pub fn pop_outgoing(&mut self, write: impl FnOnce(&OutgoingPacket<'_>, &[u8]) -> bool) -> bool {
        self.pop_outgoing_on(0, write)
    }

    /// [`NicCore::pop_outgoing`] for queue `q`.
    pub fn pop_outgoing_on(
        &mut self,
        q: u16,
        write: impl FnOnce(&OutgoingPacket<'_>, &[u8]) -> bool,
    ) -> bool {
        let id = self.recv.as_ref().map_or(0, |r| r.id);
        let Some(out) = self.out.get_mut(usize::from(q)) else {
            return false;
        };
        let Some(o) = out.front() else {
            return false;
        };
        let ok = match o {
            Out::Inband { msg, len } => write(
                &OutgoingPacket::inband(0, 0),
                msg.get(..usize::from(*len)).unwrap_or(&[]),
            ),
            Out::Completion { tid, msg, len } => write(
                &OutgoingPacket::completion(*tid),
                msg.get(..usize::from(*len)).unwrap_or(&[]),
            ),
            Out::Transfer {
                tid,
                ranges,
                n,
                control,
            } => {
                let count = usize::from(*n).min(FRAMES_PER_TRANSFER);
                let mut header = [0u8; 8 + 8 * FRAMES_PER_TRANSFER];
                let h = TransferPageHeader {
                    transfer_pageset_id: id,
                    sender_owns_set: 0,
                    reserved: 0,
                    range_count: count as u32,
                };
                header[..8].copy_from_slice(h.as_bytes());
                for (i, &(offset, len)) in ranges.iter().take(count).enumerate() {
                    let range = TransferPageRange {
                        byte_count: len,
                        byte_offset: offset,
                    };
                    if let Some(d) = header.get_mut(8 + 8 * i..16 + 8 * i) {
                        d.copy_from_slice(range.as_bytes());
                    }
                }
                let header = header.get(..8 + 8 * count).unwrap_or(&[]);
                let nvsp = NvspMessage::SendRndisPacket {
                    channel_type: if *control {
                        NvspChannelType::RMC_CONTROL
                    } else {
                        NvspChannelType::RMC_DATA
                    },
                    send_buf_section_index: NETVSC_INVALID_INDEX,
                    send_buf_section_size: 0,
                };
                let mut msg = [0u8; 40];
                let n = nvsp.emit(&mut msg).unwrap_or(0);
                let packet = OutgoingPacket {
                    packet_type: PacketType::DATA_USING_TRANSFER_PAGES,
                    flags: FLAG_COMPLETION_REQUESTED,
                    transaction_id: *tid,
                    header,
                };
                write(&packet, msg.get(..n).unwrap_or(&[]))
            }
        };
        if ok {
            out.pop_front();
        }
        ok
    }

    fn bad(&self, what: &str) {
        self.stats.bad_packets.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            relid = self.relid,
            what,
            "netvsp: bad packet from the guest"
        );
    }

    /// Handles one ring packet from the guest (its `len8 * 8` bytes) on the primary
    /// channel.
    pub fn handle_packet(&mut self, bytes: &[u8]) {
        self.handle_packet_on(0, bytes);
    }

    /// [`NicCore::handle_packet`] for queue `q` (replies go back on that queue).
    pub fn handle_packet_on(&mut self, q: u16, bytes: &[u8]) {
        let limits = PacketLimits {
            max_transfer_ranges: 0,
            max_gpa_ranges: 32,
        };
        let p = match Packet::parse(bytes, &limits) {
            Ok(p) => p,
            Err(_) => return self.bad("ring packet"),
        };
        let tid = p.descriptor.transaction_id;
        match p.kind {
            PacketKind::Completion => self.completion(tid, p.payload),
            PacketKind::InBand | PacketKind::GpaDirect { .. } => {
                let msg = match NvspMessage::parse(p.payload) {
                    Ok(m) => m,
                    Err(_) => return self.bad("NVSP message"),
                };
                if let Some(v) = self.version
                    && msg.check_allowed(v).is_err()
                {
                    return self.bad("NVSP message not allowed at the negotiated version");
                }
                let reply = self.nvsp(q, &msg, &p);
                if p.completion_requested() || reply.is_some() {
                    self.complete(q, tid, reply.as_ref());
                }
                if matches!(msg, NvspMessage::Subchannel { .. }) && self.granted > 0 {
                    self.queue_send_table();
                }
            }
            _ => self.bad("unexpected packet type"),
        }
    }

    /// Handles one NVSP request; returns the NVSP message to put in its completion.
    fn nvsp(&mut self, q: u16, msg: &NvspMessage, packet: &Packet<'_>) -> Option<NvspMessage> {
        match *msg {
            NvspMessage::Init {
                min_protocol_ver,
                max_protocol_ver,
            } => {
                let chosen = NvspVersion::ALL
                    .iter()
                    .rev()
                    .copied()
                    .find(|v| v.0 >= min_protocol_ver.0 && v.0 <= max_protocol_ver.0);
                let status = match chosen {
                    Some(v) => {
                        self.version = Some(v);
                        self.stats
                            .nvsp_version
                            .store(u64::from(v.0), Ordering::Relaxed);
                        self.rndis.set_nvsp_version(v);
                        NvspStatus::SUCCESS
                    }
                    None => NvspStatus::FAIL,
                };
                Some(NvspMessage::InitComplete {
                    negotiated_protocol_ver: chosen.unwrap_or(max_protocol_ver),
                    max_mdl_chain_len: 0,
                    status,
                })
            }
            NvspMessage::SendNdisVersion { .. } => None,
            NvspMessage::SendNdisConfig { mtu, .. } => {
                // The guest's MTU plus the Ethernet header (Linux sends mtu + 14); a
                // value outside 68..=the NIC's MTU is ignored.
                let guest = mtu.saturating_sub(14);
                if (68..=self.max_frame as u32 - 18).contains(&guest) {
                    self.guest_frame = frame_size(guest);
                } else {
                    self.bad("NDIS config MTU");
                }
                None
            }
            NvspMessage::SendReceiveBuffer { gpadl_handle, id } => {
                let buf = self.context.gpadl_buffer(self.relid, gpadl_handle);
                let count = buf
                    .as_ref()
                    .map_or(0, |b| b.len() as u32 / self.recv_section);
                match buf {
                    Some(buf) if self.version.is_some() && self.recv.is_none() && count > 0 => {
                        self.recv = Some(RecvBuffer {
                            buf,
                            id,
                            free: (0..count).rev().collect(),
                            in_flight: vec![None; count as usize],
                            batch_next: vec![NO_SLOT; count as usize],
                            generation: 0,
                        });
                        Some(NvspMessage::SendReceiveBufferComplete {
                            status: NvspStatus::SUCCESS,
                            sections: vec![Nvsp1ReceiveBufferSection {
                                offset: 0,
                                sub_alloc_size: self.recv_section,
                                num_sub_allocs: count,
                                end_offset: count * self.recv_section,
                            }],
                        })
                    }
                    _ => {
                        self.bad("receive buffer");
                        Some(NvspMessage::SendReceiveBufferComplete {
                            status: NvspStatus::FAIL,
                            sections: Vec::new(),
                        })
                    }
                }
            }
            NvspMessage::SendSendBuffer { gpadl_handle, .. } => {
                match self.context.gpadl_buffer(self.relid, gpadl_handle) {
                    Some(buf)
                        if self.version.is_some()
                            && self.send.is_none()
                            && buf.len() >= SEND_SECTION_SIZE as usize =>
                    {
                        self.send = Some(buf);
                        Some(NvspMessage::SendSendBufferComplete {
                            status: NvspStatus::SUCCESS,
                            section_size: SEND_SECTION_SIZE,
                        })
                    }
                    _ => {
                        self.bad("send buffer");
                        Some(NvspMessage::SendSendBufferComplete {
                            status: NvspStatus::FAIL,
                            section_size: 0,
                        })
                    }
                }
            }
            NvspMessage::RevokeReceiveBuffer { .. } => {
                self.recv = None;
                None
            }
            NvspMessage::RevokeSendBuffer { .. } => {
                self.send = None;
                None
            }
            NvspMessage::SendRndisPacket {
                channel_type,
                send_buf_section_index,
                send_buf_section_size,
            } => {
                if channel_type == NvspChannelType::RMC_DATA
                    && let Some(c) = self.stats.tx_queue_packets.get(usize::from(q))
                {
                    c.fetch_add(1, Ordering::Relaxed);
                }
                let ok = self.guest_rndis(
                    channel_type,
                    send_buf_section_index,
                    send_buf_section_size,
                    packet,
                );
                let status = if ok {
                    NvspStatus::SUCCESS
                } else {
                    NvspStatus::INVALID_RNDIS_PKT
                };
                Some(NvspMessage::SendRndisPacketComplete { status })
            }
            NvspMessage::Subchannel {
                op,
                num_subchannels,
            } => {
                // Granted once per open, on the primary channel, after the buffers: up
                // to max_queues - 1 (the guest may ask for any number).
                if op != NvspSubchannelOp::ALLOCATE
                    || q != 0
                    || self.granted > 0
                    || self.recv.is_none()
                    || self.send.is_none()
                {
                    self.bad("subchannel request");
                    return Some(NvspMessage::SubchannelComplete {
                        status: NvspStatus::FAIL,
                        num_subchannels: 0,
                    });
                }
                let granted = num_subchannels.min(u32::from(self.max_queues - 1)) as u16;
                self.granted = granted;
                self.offer_request = granted;
                self.stats
                    .subchannels
                    .store(u64::from(granted), Ordering::Relaxed);
                Some(NvspMessage::SubchannelComplete {
                    status: NvspStatus::SUCCESS,
                    num_subchannels: u32::from(granted),
                })
            }
            _ => {
                self.bad("unsupported NVSP message");
                None
            }
        }
    }

    /// Gathers the RNDIS bytes of a SEND_RNDIS_PKT (send-buffer section or GPA direct)
    /// into `rndis_buf` and processes every message in them.
    fn guest_rndis(
        &mut self,
        channel_type: NvspChannelType,
        section: u32,
        size: u32,
        packet: &Packet<'_>,
    ) -> bool {
        let mut buf = std::mem::take(&mut self.rndis_buf);
        let mut len = 0usize;
        // The section part (several packets, Linux's batching), then any GPA ranges:
        // Linux sends the last packet's RNDIS header in the section and its data as
        // page buffers when only the header still fits ("cp_partial").
        let mut gathered = true;
        if section != NETVSC_INVALID_INDEX {
            gathered = match (&self.send, buf.get_mut(..size as usize)) {
                (Some(send), Some(dst)) if (size as usize) <= SEND_SECTION_SIZE as usize => {
                    len = dst.len();
                    send.read_at(section as usize * SEND_SECTION_SIZE as usize, dst)
                        .is_ok()
                }
                _ => false,
            };
        }
        if gathered {
            for r in packet.gpa_ranges() {
                let Ok(r) = r else {
                    gathered = false;
                    break;
                };
                let mut remaining = r.byte_count as usize;
                let mut offset = r.byte_offset as u64;
                for pfn in r.pfns() {
                    let n = 4096usize.saturating_sub(offset as usize).min(remaining);
                    let start = len;
                    if start + n > MAX_RNDIS {
                        gathered = false;
                        break;
                    }
                    len = start + n;
                    let gpa = pfn.checked_mul(4096).and_then(|g| g.checked_add(offset));
                    let read = match (gpa, buf.get_mut(start..len)) {
                        (Some(gpa), Some(dst)) => self.context.memory.read(gpa, dst).is_ok(),
                        _ => false,
                    };
                    if !read {
                        gathered = false;
                        break;
                    }
                    remaining -= n;
                    offset = 0;
                }
                if !gathered {
                    break;
                }
            }
        }
        let gathered = gathered && len > 0;
        let mut ok = gathered;
        let mut refused = false;
        if gathered {
            for m in RndisMessages::new(buf.get(..len).unwrap_or(&[])) {
                match m {
                    Ok(RndisMessage::Packet(p)) => {
                        // A refused offload is counted in tx_offload_rejected and
                        // reported in the completion status, not as malformed.
                        if p.ppi.is_empty() {
                            self.transmit_plain(p.data);
                        } else {
                            refused |= !self.transmit(p.data, p.ppis());
                        }
                    }
                    Ok(m) => {
                        self.stats.control_requests.fetch_add(1, Ordering::Relaxed);
                        let link = self.endpoint.link_up();
                        let mut reply = std::mem::take(&mut self.msg);
                        let n = self.rndis.handle(&m, link, &self.stats, &mut reply);
                        if let Some(n) = n
                            && let Some(r) = reply.get(..n)
                        {
                            self.send_to_guest(r, true);
                        }
                        self.msg = reply;
                    }
                    Err(_) => {
                        ok = false;
                        break;
                    }
                }
            }
        }
        if !ok {
            self.bad("RNDIS");
        }
        let _ = channel_type;
        self.rndis_buf = buf;
        ok && !refused
    }

    /// Sends one guest packet to the backend, doing the offload work its PPIs ask for;
    /// false if the request was refused (the packet is dropped and counted).
    /// Sends a frame that needs no offload work.
    fn transmit_plain(&mut self, frame: &[u8]) {
        if frame.len() > self.max_frame {
            self.stats.oversize_frames.fetch_add(1, Ordering::Relaxed);
            self.stats.tx_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.endpoint.transmit(frame) {
            self.stats.tx_frames.fetch_add(1, Ordering::Relaxed);
        } else {
            self.stats.tx_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn transmit<'a>(
        &mut self,
        frame: &[u8],
        ppis: impl Iterator<Item = Result<vmbus_proto::rndis::Ppi<'a>, vmbus_proto::Error>>,
    ) -> bool {
        let req = match parse_request(ppis, &self.rndis.offload) {
            Ok(r) if r.is_empty() => {
                self.transmit_plain(frame);
                return true;
            }
            Ok(r) => r,
            Err(e) => {
                self.stats
                    .tx_offload_rejected
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(relid = self.relid, "netvsp: offload refused: {e}");
                return false;
            }
        };
        let stats = &self.stats;
        stats.tx_offloaded.fetch_add(1, Ordering::Relaxed);
        let support = self.endpoint.tx_offload_support();
        if support != crate::backend::TxOffloadSupport::default() {
            match self.tx.prepare_native(frame, &req, support) {
                Ok(Some((f, offload))) => {
                    if self.endpoint.transmit_offload(f, &offload) {
                        stats.tx_frames.fetch_add(1, Ordering::Relaxed);
                        stats.tx_native_offloads.fetch_add(1, Ordering::Relaxed);
                    } else {
                        stats.tx_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    return true;
                }
                Ok(None) => {}
                Err(e) => {
                    stats.tx_offload_rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(relid = self.relid, "netvsp: offload refused: {e}");
                    return false;
                }
            }
        }
        let endpoint = &mut self.endpoint;
        // The checksums computed here are known good: a receiving NIC may say so.
        let meta = req.meta();
        match self
            .tx
            .process(frame, &req, &mut |f| endpoint.transmit_meta(f, meta))
        {
            Ok(out) => {
                stats
                    .tx_frames
                    .fetch_add(u64::from(out.sent), Ordering::Relaxed);
                stats
                    .tx_dropped
                    .fetch_add(u64::from(out.dropped), Ordering::Relaxed);
                if req.lso.is_some() {
                    stats
                        .tx_lso_segments
                        .fetch_add(u64::from(out.sent + out.dropped), Ordering::Relaxed);
                }
                true
            }
            Err(e) => {
                stats.tx_offload_rejected.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(relid = self.relid, "netvsp: offload refused: {e}");
                false
            }
        }
    }

    /// A completion from the guest for one of our transfer-page packets.
    fn completion(&mut self, tid: u64, _payload: &[u8]) {
        let slot = tid as u32;
        let generation = (tid >> 32) as u32;
        let Some(recv) = self.recv.as_mut() else {
            self.stats
                .unknown_completions
                .fetch_add(1, Ordering::Relaxed);
            return;
        };
        // Free every sub-allocation of the packet: they share the generation and are
        // linked from the first one. Bounded by the batch size.
        let mut slot = slot;
        let mut freed = 0;
        for _ in 0..FRAMES_PER_TRANSFER {
            match recv.in_flight.get_mut(slot as usize) {
                Some(g) if *g == Some(generation) => {
                    *g = None;
                    recv.free.push(slot);
                    freed += 1;
                }
                _ => break,
            }
            let next = recv
                .batch_next
                .get(slot as usize)
                .copied()
                .unwrap_or(NO_SLOT);
            if let Some(l) = recv.batch_next.get_mut(slot as usize) {
                *l = NO_SLOT;
            }
            if next == NO_SLOT {
                break;
            }
            slot = next;
        }
        if freed == 0 {
            self.stats
                .unknown_completions
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    fn complete(&mut self, q: u16, tid: u64, reply: Option<&NvspMessage>) {
        let mut msg = [0u8; 40];
        let len = match reply {
            Some(r) => r.emit(&mut msg).unwrap_or(0) as u8,
            None => 0,
        };
        if let Some(out) = self.out.get_mut(usize::from(q)) {
            out.push_back(Out::Completion { tid, msg, len });
        }
    }

    /// Queues the send indirection table on the primary channel: its 16 entries spread
    /// the guest's transmit hashes round-robin over the granted queues.
    fn queue_send_table(&mut self) {
        let table = NvspSendIndirectionTable::round_robin(u32::from(self.granted) + 1);
        let mut msg = [0u8; 128];
        if let Ok(n) = table.emit(SEND_INDIRECTION_TABLE_OFFSET, &mut msg)
            && let Some(out) = self.out.first_mut()
        {
            out.push_back(Out::Inband { msg, len: n as u8 });
        }
    }

    /// Copies an RNDIS message, given as consecutive `parts` (a header and a frame,
    /// written in place without joining them first), into a free receive-buffer
    /// sub-allocation; returns its (slot, offset), or `None` (counted) when no
    /// sub-allocation is free.
    fn write_slot(&mut self, parts: &[&[u8]]) -> Option<(u32, u32)> {
        let Some(recv) = self.recv.as_mut() else {
            self.stats.rx_not_ready.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        if parts.iter().map(|p| p.len()).sum::<usize>() > self.recv_section as usize {
            self.stats.oversize_frames.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let Some(slot) = recv.free.pop() else {
            self.stats.rx_no_buffer.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let offset = slot * self.recv_section;
        let mut at = offset as usize;
        for part in parts {
            if recv.buf.write_at(at, part).is_err() {
                recv.free.push(slot);
                self.stats.rx_not_ready.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            at += part.len();
        }
        Some((slot, offset))
    }

    /// Queues one transfer-page packet for the written sub-allocations `slots`
    /// (`ranges` are their offsets and lengths).
    fn queue_transfer(&mut self, q: u16, slots: &[u32], ranges: &[(u32, u32)], control: bool) {
        let Some(recv) = self.recv.as_mut() else {
            return;
        };
        let (Some(&first), n) = (slots.first(), slots.len().min(FRAMES_PER_TRANSFER)) else {
            return;
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
        let tid = u64::from(first) | u64::from(generation) << 32;
        let Some(out) = self.out.get_mut(usize::from(q)) else {
            return;
        };
        out.push_back(Out::Transfer {
            tid,
            ranges: r,
            n: n as u8,
            control,
        });
    }

    /// Copies one RNDIS message into a sub-allocation and queues it alone.
    fn send_to_guest(&mut self, message: &[u8], control: bool) -> bool {
        match self.write_slot(&[message]) {
            Some((slot, offset)) => {
                self.queue_transfer(0, &[slot], &[(offset, message.len() as u32)], control);
                true
            }
            None => false,
        }
    }

    fn indicate_link(&mut self, up: bool) {
        let mut buf = std::mem::take(&mut self.msg);
        if let Some(n) = RndisControl::link_indication(up, &mut buf)
            && let Some(m) = buf.get(..n)
            && self.send_to_guest(m, true)
        {
            self.stats.link_indications.fetch_add(1, Ordering::Relaxed);
        }
        self.msg = buf;
    }

    /// Moves backend frames into the guest's receive buffer while sub-allocations are
    /// free, each on the queue RSS picks (with its hash as a per-packet info); frames
    /// arriving while the buffer is exhausted or reception is off are dropped and
    /// counted.
    pub fn deliver_frames(&mut self) -> bool {
        // Allocated once per NIC; only the counts are reset.
        let mut batches = std::mem::take(&mut self.batches);
        for b in &mut batches {
            b.n = 0;
        }
        let mut any = false;
        for _ in 0..256 {
            if self.outgoing() >= 512 {
                break; // the outgoing rings are backed up: let the guest catch up
            }
            let mut frame = std::mem::take(&mut self.frame);
            let Some((len, meta)) = self.endpoint.receive_meta(&mut frame) else {
                self.frame = frame;
                break;
            };
            any = true;
            if !self.rndis.receiving() {
                self.stats.rx_not_ready.fetch_add(1, Ordering::Relaxed);
            } else if len > self.guest_frame {
                self.stats.oversize_frames.fetch_add(1, Ordering::Relaxed);
            } else {
                let f = frame.get(..len).unwrap_or(&[]);
                let (hash, q) = match self.rndis.rss.as_ref().and_then(|r| r.classify(f)) {
                    Some((h, q)) if self.open_queues & (1 << q) != 0 => (Some(h), q),
                    Some((h, _)) => (Some(h), 0),
                    None => (None, 0),
                };
                use vmbus_proto::rndis::Ppi;
                let csum = self.rndis.offload.rx_checksum_info(f, meta);
                if csum.is_some() {
                    self.stats.rx_checksum_valid.fetch_add(1, Ordering::Relaxed);
                }
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
                // RNDIS header (and PPIs) here, the frame straight from the backend's
                // buffer: one copy of the frame into guest memory.
                let mut header = [0u8; 128];
                let h = vmbus_proto::rndis::emit_packet_header(
                    &mut header,
                    ppis.get(..n_ppis).unwrap_or(&[]),
                    len,
                )
                .ok()
                .and_then(|l| header.get(..l));
                if let Some(h) = h
                    && let Some((slot, offset)) = self.write_slot(&[h, f])
                    && let Some(b) = batches.get_mut(usize::from(q))
                    && let (Some(s), Some(r)) = (b.slots.get_mut(b.n), b.ranges.get_mut(b.n))
                {
                    *s = slot;
                    *r = (offset, (h.len() + f.len()) as u32);
                    b.n += 1;
                    self.stats.rx_frames.fetch_add(1, Ordering::Relaxed);
                    if let Some(c) = self.stats.rx_queue_frames.get(usize::from(q)) {
                        c.fetch_add(1, Ordering::Relaxed);
                    }
                    // Several frames share one transfer-page packet and one completion.
                    if b.n == FRAMES_PER_TRANSFER {
                        let full = *b;
                        b.n = 0;
                        self.queue_transfer(q, &full.slots, &full.ranges, false);
                    }
                }
            }
            self.frame = frame;
        }
        for (q, b) in batches.iter().enumerate() {
            if b.n > 0 {
                self.queue_transfer(
                    q as u16,
                    b.slots.get(..b.n).unwrap_or(&[]),
                    b.ranges.get(..b.n).unwrap_or(&[]),
                    false,
                );
            }
        }
        self.batches = batches;
        any
    }
}

/// A subchannel of a NIC: its open hands the channel to the NIC's worker thread.
struct NetvspSubchannel {
    index: u16,
    to_worker: mpsc::Sender<(u16, Channel)>,
    waker: Arc<Doorbell>,
}

impl VmbusDevice for NetvspSubchannel {
    fn open(&mut self, channel: Channel, _req: &OpenRequest, _context: &DeviceContext) -> bool {
        channel.shared().set_waker(self.waker.clone());
        let ok = self.to_worker.send((self.index, channel)).is_ok();
        self.waker.ring();
        ok
    }

    fn close(&mut self, _relid: u32) {
        // The worker sees the closed channel and drops the queue.
    }
}

/// One queue's channel halves.
struct QueueIo {
    sender: Sender,
    receiver: Receiver,
}

/// The worker thread of one NIC: moves packets between its channels (the primary and
/// any subchannels, one queue each) and a [`NicCore`], and offers the subchannels the
/// guest was granted.
struct Worker {
    core: NicCore,
    queues: Vec<Option<QueueIo>>,
    context: DeviceContext,
    new_queues: mpsc::Receiver<(u16, Channel)>,
    to_worker: mpsc::Sender<(u16, Channel)>,
    pending: Vec<vmbus::PendingOffer>,
    /// Subchannel indices offered (1..=offered), withdrawn when the NIC closes.
    offered: u16,
    waker: Arc<Doorbell>,
    staged: Vec<(usize, usize)>,
    stage: Vec<u8>,
}

impl Worker {
    fn new(
        core: NicCore,
        sender: Sender,
        receiver: Receiver,
        waker: Arc<Doorbell>,
        context: DeviceContext,
    ) -> Self {
        let (to_worker, new_queues) = mpsc::channel();
        let mut queues: Vec<Option<QueueIo>> = (0..core.max_queues).map(|_| None).collect();
        if let Some(q) = queues.first_mut() {
            *q = Some(QueueIo { sender, receiver });
        }
        Self {
            core,
            queues,
            context,
            new_queues,
            to_worker,
            pending: Vec::new(),
            offered: 0,
            waker,
            staged: Vec::with_capacity(64),
            stage: Vec::with_capacity(64 * 1024),
        }
    }

    /// Offers granted subchannels, adopts opened ones, and collects offer answers.
    fn manage_subchannels(&mut self) -> bool {
        let mut progress = false;
        if let Some((from, to)) = self.core.take_offer_request() {
            for index in from..=to {
                let device = NetvspSubchannel {
                    index,
                    to_worker: self.to_worker.clone(),
                    waker: self.waker.clone(),
                };
                match self.context.offer_subchannel(index, Box::new(device)) {
                    Ok(p) => {
                        self.pending.push(p);
                        self.offered = self.offered.max(index);
                    }
                    Err(e) => tracing::warn!(index, error = %e, "netvsp: subchannel not offered"),
                }
            }
            progress = true;
        }
        self.pending.retain(|p| match p.try_relid() {
            None => true,
            Some(Ok(_)) => false,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "netvsp: subchannel offer failed");
                false
            }
        });
        while let Ok((q, channel)) = self.new_queues.try_recv() {
            let Channel {
                sender, receiver, ..
            } = channel;
            if let Some(slot) = self.queues.get_mut(usize::from(q)) {
                *slot = Some(QueueIo { sender, receiver });
                self.core.set_queue_open(q, true);
                progress = true;
            }
        }
        progress
    }

    /// Runs until the primary channel closes; returns the endpoint for the next open.
    fn run(mut self) -> Box<dyn NetEndpoint> {
        'run: loop {
            let mut progress = self.manage_subchannels();
            for q in 0..self.queues.len() {
                let Some(io) = self.queues.get_mut(q).and_then(Option::as_mut) else {
                    continue;
                };
                // Guest to host: copy the batch out of the ring (reads are committed at
                // once), then act on it.
                self.staged.clear();
                self.stage.clear();
                let (staged, stage) = (&mut self.staged, &mut self.stage);
                // Up to 256 packets: completions must be read faster than frames are
                // delivered, or the receive buffer runs dry while they wait in the ring.
                match io.receiver.try_recv_batch(256, |p| {
                    let start = stage.len();
                    let n = p.len();
                    stage.resize(start + n, 0);
                    if let Some(dst) = stage.get_mut(start..) {
                        p.copy_to(dst);
                    }
                    staged.push((start, start + n));
                }) {
                    Ok(n) => progress |= n > 0,
                    Err(e) => {
                        if q == 0 {
                            if e != ChannelError::Closed {
                                tracing::warn!(relid = self.core.relid, error = %e, "netvsp: channel failed");
                            }
                            break 'run;
                        }
                        // A subchannel closed: its frames go to the primary from now on.
                        if let Some(slot) = self.queues.get_mut(q) {
                            *slot = None;
                        }
                        self.core.set_queue_open(q as u16, false);
                        continue;
                    }
                }
                for &(s, e) in &self.staged {
                    if let Some(p) = self.stage.get(s..e) {
                        self.core.handle_packet_on(q as u16, p);
                    }
                }
            }
            progress |= self.core.poll_link();
            progress |= self.core.deliver_frames();
            for (q, io) in self.queues.iter_mut().enumerate() {
                let Some(io) = io.as_mut() else {
                    continue;
                };
                while self.core.pop_outgoing_on(q as u16, |packet, payload| {
                    io.sender.try_write(packet, &[payload]).is_ok()
                }) {
                    progress = true;
                }
                io.sender.flush();
            }
            if !progress {
                let mut again = false;
                for q in 0..self.queues.len() {
                    let Some(io) = self.queues.get_mut(q).and_then(Option::as_mut) else {
                        continue;
                    };
                    match io.receiver.prepare_sleep() {
                        Ok(true) => again = true,
                        Ok(false) => {}
                        // The primary closed: the NIC is done. A subchannel closed: its
                        // queue goes.
                        Err(_) if q == 0 => break 'run,
                        Err(_) => {
                            if let Some(slot) = self.queues.get_mut(q) {
                                *slot = None;
                            }
                            self.core.set_queue_open(q as u16, false);
                        }
                    }
                }
                if !again {
                    self.waker.wait(Duration::from_millis(20));
                }
            }
        }
        // The guest closed the NIC: withdraw its subchannels so a reopen starts clean
        // (by index, so offers the bus has not made yet go too).
        for index in 1..=self.offered {
            self.context.rescind_subchannel(index);
        }
        self.core.endpoint
    }
}
