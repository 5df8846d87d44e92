//! # netvsc
//!
//! The guest side of the Hyper-V synthetic NIC over a `vmbus::GuestBus` channel, in the
//! order Linux's hv_netvsc runs it (reference/linux-guest.md section C): NVSP version
//! negotiation newest first, NDIS config and version, a receive buffer and a send buffer
//! described by GPADLs, RNDIS initialize and the queries and sets netvsc makes (MAC,
//! MTU, offload capabilities and parameters, link state, packet filter), then frames:
//! transmit through send-buffer sections, receive from transfer pages (copied out and
//! completed at once), link-status indications followed.
//!
//! Everything the host sends is untrusted: transfer-page ranges are checked against the
//! receive buffer, RNDIS messages parsed totally, completions for unknown transaction
//! ids counted and ignored.
//!
//! With the `smoltcp` feature, [`phy::NetvscPhy`] is a smoltcp `phy::Device`.
//!
//! Not implemented yet: GPA-direct transmit of frames larger than a send section,
//! multi-queue and offloads (see the issue tracker).

#![forbid(unsafe_code)]

#[cfg(feature = "smoltcp")]
pub mod phy;

use hv_partition::GuestMemory;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use vmbus::{Channel, ChannelError, GuestBus, GuestError, Receiver, Sender};
use vmbus_proto::channel::OfferChannel;
use vmbus_proto::nvsp::{
    NdisConfigCapabilities, NvspChannelType, NvspMessage, NvspStatus, NvspVersion,
};
use vmbus_proto::packet::{FLAG_COMPLETION_REQUESTED, Packet, PacketKind, PacketLimits};
use vmbus_proto::rndis::{
    InfoComplete, NdisOffload, NdisOffloadParams, Oid, OidRequest, RndisInitializeRequest,
    RndisMessage, RndisMessages, RndisStatus,
};
use vmbus_ring::{Doorbell, OutgoingPacket};

/// Receive-buffer id netvsc uses (`NETVSC_RECEIVE_BUFFER_ID`).
pub const RECEIVE_BUFFER_ID: u16 = 0xCAFE;
/// Largest frame handed to or taken from the driver.
pub const MAX_FRAME: usize = 1518;
/// RNDIS PACKET header (message header + `rndis_packet`).
const PACKET_HEADER: usize = 44;

/// Driver configuration.
#[derive(Clone, Debug)]
pub struct NetvscConfig {
    /// NVSP versions to try, newest first (default: Linux's order).
    pub versions: Vec<NvspVersion>,
    /// Receive buffer size in bytes (Linux defaults to 16 MiB).
    pub recv_buffer_bytes: u64,
    /// Send buffer size in bytes (Linux defaults to 1 MiB).
    pub send_buffer_bytes: u64,
    /// Data pages per ring (Linux uses 128 pages per ring).
    pub ring_pages: u32,
    /// MTU.
    pub mtu: u32,
    /// Frames held between receive calls before new ones are dropped.
    pub rx_queue: usize,
    /// How long control operations wait for the host.
    pub timeout: Duration,
}

impl Default for NetvscConfig {
    fn default() -> Self {
        Self {
            versions: NvspVersion::LINUX_GUEST_ORDER.to_vec(),
            recv_buffer_bytes: 2 << 20,
            send_buffer_bytes: 1 << 20,
            ring_pages: 128,
            mtu: 1500,
            rx_queue: 1024,
            timeout: Duration::from_secs(10),
        }
    }
}

/// Why the driver failed.
#[derive(Debug, thiserror::Error)]
pub enum NetvscError {
    /// The bus refused (open, GPADL).
    #[error("vmbus: {0}")]
    Bus(#[from] GuestError),
    /// The channel failed.
    #[error("channel: {0}")]
    Channel(#[from] ChannelError),
    /// The host did not answer in time.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The host refused or answered nonsense.
    #[error("host refused {0}")]
    Refused(&'static str),
    /// The frame does not fit a send section.
    #[error("frame of {0} bytes too large")]
    FrameTooLarge(usize),
}

/// Counters.
#[derive(Debug, Default)]
pub struct NetvscStats {
    /// Frames sent.
    pub tx_frames: AtomicU64,
    /// Frames received.
    pub rx_frames: AtomicU64,
    /// Frames dropped because the receive queue was full.
    pub rx_dropped: AtomicU64,
    /// Malformed or out-of-range messages from the host.
    pub bad_host_messages: AtomicU64,
    /// Completions for transaction ids we never used.
    pub unknown_completions: AtomicU64,
    /// Link-status indications received.
    pub link_changes: AtomicU64,
}

/// Bounded queue of received frames in preallocated slots.
struct RxQueue {
    slots: Vec<[u8; MAX_FRAME]>,
    lens: Vec<u16>,
    head: usize,
    len: usize,
}

impl RxQueue {
    fn new(n: usize) -> Self {
        Self {
            slots: vec![[0; MAX_FRAME]; n.max(1)],
            lens: vec![0; n.max(1)],
            head: 0,
            len: 0,
        }
    }
    fn push(&mut self, f: &[u8]) -> bool {
        let cap = self.slots.len();
        if self.len == cap || f.len() > MAX_FRAME {
            return false;
        }
        let i = (self.head + self.len) % cap;
        match (
            self.slots.get_mut(i).and_then(|s| s.get_mut(..f.len())),
            self.lens.get_mut(i),
        ) {
            (Some(d), Some(l)) => {
                d.copy_from_slice(f);
                *l = f.len() as u16;
                self.len += 1;
                true
            }
            _ => false,
        }
    }
    fn pop(&mut self, buf: &mut [u8]) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let i = self.head;
        self.head = (i + 1) % self.slots.len();
        self.len -= 1;
        let n = usize::from(*self.lens.get(i)?).min(buf.len());
        buf.get_mut(..n)?
            .copy_from_slice(self.slots.get(i)?.get(..n)?);
        Some(n)
    }
}

/// A synthetic NIC, brought up and ready for frames.
pub struct Netvsc {
    relid: u32,
    sender: Sender,
    receiver: Receiver,
    waker: Arc<Doorbell>,
    memory: GuestMemory,
    version: NvspVersion,
    recv: (u64, u64, u32),
    send: (u64, u64, u32),
    section_size: u32,
    free_sections: Vec<u32>,
    /// Per send section: the generation of the send in flight, if any (the tid carries
    /// section and generation, so completions are matched without a map).
    in_flight: Vec<Option<u32>>,
    generation: u32,
    /// NVSP responses by tid.
    responses: BTreeMap<u64, NvspMessage>,
    /// RNDIS control completions by request id (copied bytes).
    control: VecDeque<(u32, Vec<u8>)>,
    next_tid: u64,
    next_req: u32,
    mac: [u8; 6],
    mtu: u32,
    link_up: bool,
    rx: RxQueue,
    stats: Arc<NetvscStats>,
    staged: Vec<(usize, usize)>,
    stage: Vec<u8>,
    scratch: Vec<u8>,
    timeout: Duration,
}

const NVSP_TID: u64 = 1 << 62;
/// NVSP answers kept for requests not yet collected (the bring-up waits for one at a
/// time; anything beyond this is a misbehaving host).
const MAX_PENDING_RESPONSES: usize = 16;
const SECTION_TID: u64 = 1 << 61;

impl Netvsc {
    /// Opens `offer` on `bus` and runs the whole bring-up.
    pub fn open(
        bus: &GuestBus,
        offer: &OfferChannel,
        config: &NetvscConfig,
    ) -> Result<Self, NetvscError> {
        let channel = bus.open(offer, config.ring_pages, 0)?;
        let Channel {
            relid,
            sender,
            receiver,
            ..
        } = channel;
        let waker = Arc::new(Doorbell::new());
        // Peer signals also ring `waker`, so `poll` can wait with a timeout.
        sender.shared().set_waker(waker.clone());
        let mut nic = Self {
            relid,
            sender,
            receiver,
            waker,
            memory: bus.memory().clone(),
            version: NvspVersion::V1,
            recv: (0, 0, 0),
            send: (0, 0, 0),
            section_size: 0,
            free_sections: Vec::new(),
            in_flight: Vec::new(),
            generation: 0,
            responses: BTreeMap::new(),
            control: VecDeque::new(),
            next_tid: 1,
            next_req: 1,
            mac: [0; 6],
            mtu: config.mtu,
            link_up: false,
            rx: RxQueue::new(config.rx_queue),
            stats: Arc::new(NetvscStats::default()),
            staged: Vec::with_capacity(64),
            stage: Vec::with_capacity(64 * 1024),
            scratch: vec![0u8; 8192],
            timeout: config.timeout,
        };
        nic.negotiate(&config.versions)?;
        nic.setup_buffers(bus, config)?;
        nic.rndis_bring_up()?;
        Ok(nic)
    }

    /// The channel's relid.
    pub fn relid(&self) -> u32 {
        self.relid
    }
    /// The negotiated NVSP version.
    pub fn nvsp_version(&self) -> NvspVersion {
        self.version
    }
    /// The MAC address the host reported.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }
    /// The MTU.
    pub fn mtu(&self) -> u32 {
        self.mtu
    }
    /// Whether the link is up (as last indicated by the host).
    pub fn link_up(&self) -> bool {
        self.link_up
    }
    /// Counters.
    pub fn stats(&self) -> &Arc<NetvscStats> {
        &self.stats
    }

    fn nvsp_request(
        &mut self,
        msg: &NvspMessage,
        completion: bool,
    ) -> Result<Option<NvspMessage>, NetvscError> {
        let tid = NVSP_TID | self.next_tid;
        self.next_tid += 1;
        let mut buf = [0u8; 40];
        let n = msg
            .emit(&mut buf)
            .map_err(|_| NetvscError::Refused("NVSP encode"))?;
        let flags = if completion {
            FLAG_COMPLETION_REQUESTED
        } else {
            0
        };
        self.sender.send(
            &OutgoingPacket::inband(tid, flags),
            &[buf.get(..n).unwrap_or(&[])],
        )?;
        if !completion {
            return Ok(None);
        }
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some(r) = self.responses.remove(&tid) {
                return Ok(Some(r));
            }
            if Instant::now() >= deadline {
                return Err(NetvscError::Timeout("an NVSP completion"));
            }
            self.poll(Duration::from_millis(10))?;
        }
    }

    fn negotiate(&mut self, versions: &[NvspVersion]) -> Result<(), NetvscError> {
        for &v in versions {
            let r = self.nvsp_request(&NvspMessage::init(v), true)?;
            if let Some(NvspMessage::InitComplete {
                status: NvspStatus::SUCCESS,
                ..
            }) = r
            {
                self.version = v;
                if v.0 >= NvspVersion::V2.0 {
                    let mut caps = NdisConfigCapabilities::IEEE8021Q;
                    if v.0 >= NvspVersion::V5.0 {
                        caps |= NdisConfigCapabilities::SRIOV | NdisConfigCapabilities::TEAMING;
                    }
                    self.nvsp_request(
                        &NvspMessage::SendNdisConfig {
                            mtu: self.mtu + 14,
                            capability: caps,
                        },
                        false,
                    )?;
                }
                let ndis = v.linux_ndis_version();
                self.nvsp_request(&NvspMessage::send_ndis_version(ndis), false)?;
                return Ok(());
            }
        }
        Err(NetvscError::Refused("every NVSP version"))
    }

    fn setup_buffers(&mut self, bus: &GuestBus, config: &NetvscConfig) -> Result<(), NetvscError> {
        let pages = config.recv_buffer_bytes.div_ceil(4096).max(1);
        let start = bus.alloc_pages(pages)?;
        let gpadl = bus.create_gpadl(self.relid, start, pages)?;
        self.recv = (start * 4096, pages * 4096, gpadl);
        match self.nvsp_request(
            &NvspMessage::SendReceiveBuffer {
                gpadl_handle: gpadl,
                id: RECEIVE_BUFFER_ID,
            },
            true,
        )? {
            Some(NvspMessage::SendReceiveBufferComplete {
                status: NvspStatus::SUCCESS,
                sections,
            }) if !sections.is_empty() => {}
            _ => return Err(NetvscError::Refused("the receive buffer")),
        }
        let pages = config.send_buffer_bytes.div_ceil(4096).max(1);
        let start = bus.alloc_pages(pages)?;
        let gpadl = bus.create_gpadl(self.relid, start, pages)?;
        self.send = (start * 4096, pages * 4096, gpadl);
        match self.nvsp_request(
            &NvspMessage::SendSendBuffer {
                gpadl_handle: gpadl,
                id: 0,
            },
            true,
        )? {
            Some(NvspMessage::SendSendBufferComplete {
                status: NvspStatus::SUCCESS,
                section_size,
            }) if section_size >= 1024 && u64::from(section_size) <= self.send.1 => {
                self.section_size = section_size;
                let n = (self.send.1 / u64::from(section_size)) as u32;
                self.free_sections = (0..n).rev().collect();
                self.in_flight = vec![None; n as usize];
                Ok(())
            }
            _ => Err(NetvscError::Refused("the send buffer")),
        }
    }

    /// Sends an RNDIS control message and waits for the completion with its request id.
    fn control_request(
        &mut self,
        msg: &RndisMessage<'_>,
        req_id: u32,
    ) -> Result<Vec<u8>, NetvscError> {
        let mut buf = [0u8; 512];
        let n = msg
            .emit(&mut buf)
            .map_err(|_| NetvscError::Refused("RNDIS encode"))?;
        self.send_rndis(buf.get(..n).unwrap_or(&[]), NvspChannelType::RMC_CONTROL)?;
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some(i) = self.control.iter().position(|(r, _)| *r == req_id)
                && let Some((_, bytes)) = self.control.remove(i)
            {
                return Ok(bytes);
            }
            if Instant::now() >= deadline {
                return Err(NetvscError::Timeout("an RNDIS completion"));
            }
            self.poll(Duration::from_millis(10))?;
        }
    }

    fn req(&mut self) -> u32 {
        let r = self.next_req;
        self.next_req = self.next_req.wrapping_add(1).max(1);
        r
    }

    fn query(&mut self, oid: Oid, input: &[u8]) -> Result<(RndisStatus, Vec<u8>), NetvscError> {
        let req_id = self.req();
        let bytes = self.control_request(
            &RndisMessage::Query(OidRequest {
                req_id,
                oid,
                dev_vc_handle: 0,
                info: input,
            }),
            req_id,
        )?;
        match RndisMessage::parse(&bytes) {
            Ok(RndisMessage::QueryComplete(InfoComplete { status, info, .. })) => {
                Ok((status, info.to_vec()))
            }
            _ => Err(NetvscError::Refused("a query answer")),
        }
    }

    fn set(&mut self, oid: Oid, value: &[u8]) -> Result<RndisStatus, NetvscError> {
        let req_id = self.req();
        let bytes = self.control_request(
            &RndisMessage::Set(OidRequest {
                req_id,
                oid,
                dev_vc_handle: 0,
                info: value,
            }),
            req_id,
        )?;
        match RndisMessage::parse(&bytes) {
            Ok(RndisMessage::SetComplete(c)) => Ok(c.status),
            _ => Err(NetvscError::Refused("a set answer")),
        }
    }

    fn rndis_bring_up(&mut self) -> Result<(), NetvscError> {
        let req_id = self.req();
        let bytes = self.control_request(
            &RndisMessage::Initialize(RndisInitializeRequest::new(req_id, 0x4000)),
            req_id,
        )?;
        match RndisMessage::parse(&bytes) {
            Ok(RndisMessage::InitializeComplete(c)) if c.status == RndisStatus::SUCCESS => {}
            _ => return Err(NetvscError::Refused("RNDIS initialize")),
        }
        if let (RndisStatus::SUCCESS, v) = self.query(Oid::OID_GEN_MAXIMUM_FRAME_SIZE, &[])?
            && let Some(b) = v.first_chunk::<4>()
        {
            self.mtu = u32::from_le_bytes(*b).clamp(68, 9000);
        }
        match self.query(Oid::OID_802_3_PERMANENT_ADDRESS, &[])? {
            (RndisStatus::SUCCESS, v) if v.len() >= 6 => {
                self.mac.copy_from_slice(v.get(..6).unwrap_or(&[0; 6]))
            }
            _ => return Err(NetvscError::Refused("the MAC address query")),
        }
        // Offload capabilities (mandatory for Linux), then parameters (nothing enabled).
        let (rev, size) = if self.version.0 >= NvspVersion::V5.0 {
            (3, 156)
        } else if self.version.0 >= NvspVersion::V4.0 {
            (2, 144)
        } else {
            (1, 112)
        };
        let mut hdr = [0u8; 156];
        let n = NdisOffload::new(rev, size).emit(&mut hdr).unwrap_or(0);
        let (status, caps) = self.query(
            Oid::OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES,
            hdr.get(..4.min(n)).unwrap_or(&[]),
        )?;
        if status != RndisStatus::SUCCESS || NdisOffload::parse(&caps).is_err() {
            return Err(NetvscError::Refused("the offload capabilities query"));
        }
        let mut params = [0u8; 32];
        let n = NdisOffloadParams::new().emit(&mut params).unwrap_or(0);
        if self.set(
            Oid::OID_TCP_OFFLOAD_PARAMETERS,
            params.get(..n).unwrap_or(&[]),
        )? != RndisStatus::SUCCESS
        {
            return Err(NetvscError::Refused("the offload parameters"));
        }
        if let (RndisStatus::SUCCESS, v) = self.query(Oid::OID_GEN_MEDIA_CONNECT_STATUS, &[])? {
            self.link_up = v
                .first_chunk::<4>()
                .is_some_and(|b| u32::from_le_bytes(*b) == 0);
        }
        if self.version.0 >= NvspVersion::V5.0 {
            let _ = self.query(Oid::OID_GEN_LINK_SPEED, &[])?;
        }
        // Directed | all-multicast | broadcast, as netvsc sets at ifup.
        if self.set(Oid::OID_GEN_CURRENT_PACKET_FILTER, &0xDu32.to_le_bytes())?
            != RndisStatus::SUCCESS
        {
            return Err(NetvscError::Refused("the packet filter"));
        }
        Ok(())
    }

    /// Writes an RNDIS message into a free send section and sends SEND_RNDIS_PKT.
    fn send_rndis(&mut self, msg: &[u8], channel_type: NvspChannelType) -> Result<(), NetvscError> {
        if msg.len() > self.section_size as usize {
            return Err(NetvscError::FrameTooLarge(msg.len()));
        }
        let section = self.take_section()?;
        let gpa = self.send.0 + u64::from(section) * u64::from(self.section_size);
        self.memory
            .write(gpa, msg)
            .map_err(|_| NetvscError::Refused("send buffer write"))?;
        self.submit(section, msg.len() as u32, channel_type)
    }

    fn take_section(&mut self) -> Result<u32, NetvscError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some(s) = self.free_sections.pop() {
                return Ok(s);
            }
            if Instant::now() >= deadline {
                return Err(NetvscError::Timeout("a free send section"));
            }
            self.poll(Duration::from_millis(10))?;
        }
    }

    fn submit(
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

    /// Sends one Ethernet frame (without FCS).
    pub fn send(&mut self, frame: &[u8]) -> Result<(), NetvscError> {
        let total = PACKET_HEADER + frame.len();
        if frame.len() > MAX_FRAME || total > self.section_size as usize {
            return Err(NetvscError::FrameTooLarge(frame.len()));
        }
        let section = self.take_section()?;
        let gpa = self.send.0 + u64::from(section) * u64::from(self.section_size);
        let mut hdr = [0u8; PACKET_HEADER];
        vmbus_proto::rndis::emit_packet_header(&mut hdr, &[], frame.len())
            .map_err(|_| NetvscError::Refused("RNDIS encode"))?;
        self.memory
            .write(gpa, &hdr)
            .map_err(|_| NetvscError::Refused("send buffer write"))?;
        self.memory
            .write(gpa + PACKET_HEADER as u64, frame)
            .map_err(|_| NetvscError::Refused("send buffer write"))?;
        self.submit(section, total as u32, NvspChannelType::RMC_DATA)?;
        self.stats.tx_frames.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Receives one frame into `buf`, waiting up to `timeout`; `Ok(None)` on timeout.
    pub fn recv(
        &mut self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<Option<usize>, NetvscError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(n) = self.rx.pop(buf) {
                return Ok(Some(n));
            }
            let now = Instant::now();
            if now >= deadline {
                // Look once even with a zero timeout.
                self.poll_once()?;
                return Ok(self.rx.pop(buf));
            }
            self.poll(deadline - now)?;
        }
    }

    /// Processes what the host sent, waiting up to `timeout` for something to arrive.
    pub fn poll(&mut self, timeout: Duration) -> Result<usize, NetvscError> {
        let n = self.poll_once()?;
        if n > 0 {
            return Ok(n);
        }
        if !self.receiver.prepare_sleep()? {
            self.waker.wait(timeout);
        }
        self.poll_once()
    }

    fn poll_once(&mut self) -> Result<usize, NetvscError> {
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
        let stage = std::mem::take(&mut self.stage);
        for i in 0..self.staged.len() {
            if let Some(p) = self.staged.get(i).and_then(|&(s, e)| stage.get(s..e)) {
                self.handle(p);
            }
        }
        self.stage = stage;
        self.sender.flush();
        Ok(n)
    }

    fn bad(&self) {
        self.stats.bad_host_messages.fetch_add(1, Ordering::Relaxed);
    }

    fn handle(&mut self, bytes: &[u8]) {
        let limits = PacketLimits {
            max_transfer_ranges: 375,
            max_gpa_ranges: 0,
        };
        let Ok(p) = Packet::parse(bytes, &limits) else {
            return self.bad();
        };
        let tid = p.descriptor.transaction_id;
        match p.kind {
            PacketKind::Completion => {
                let section = tid as u32;
                let generation = ((tid >> 32) & 0x0FFF_FFFF) as u32;
                let slot = self.in_flight.get_mut(section as usize);
                if tid & SECTION_TID != 0 && slot.as_ref().is_some_and(|g| **g == Some(generation))
                {
                    if let Some(g) = slot {
                        *g = None;
                    }
                    self.free_sections.push(section);
                } else if tid & NVSP_TID != 0 {
                    match NvspMessage::parse_completion(p.payload)
                        .or_else(|_| NvspMessage::parse(p.payload))
                    {
                        // Only tids we issued and have not seen answered: a host that
                        // completes made-up tids must not grow the map.
                        Ok(m)
                            if tid & !NVSP_TID < self.next_tid
                                && self.responses.len() < MAX_PENDING_RESPONSES =>
                        {
                            self.responses.insert(tid, m);
                        }
                        Ok(_) => {
                            self.stats
                                .unknown_completions
                                .fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => self.bad(),
                    }
                } else {
                    self.stats
                        .unknown_completions
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            PacketKind::TransferPages { header, .. } => {
                if header.transfer_pageset_id != RECEIVE_BUFFER_ID {
                    self.bad();
                }
                for r in p.kind.transfer_ranges() {
                    self.receive_range(r.byte_offset, r.byte_count);
                }
                // Complete the transfer so the host can reuse the sub-allocations.
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
                    self.bad();
                }
            }
            _ => self.bad(),
        }
    }

    /// Fuzzing hook: writes `receive_buffer` at the start of the receive buffer (as a
    /// hostile host may) and handles `packet` as if it came from the ring. Then checks
    /// the driver's invariants and panics if one is broken. Not for production use.
    #[doc(hidden)]
    pub fn fuzz_host_input(&mut self, receive_buffer: &[u8], packet: &[u8]) {
        let (base, size, _) = self.recv;
        let n = receive_buffer.len().min(size as usize);
        if let Some(b) = receive_buffer.get(..n) {
            let _ = self.memory.write(base, b);
        }
        self.handle(packet);
        let sections = self.in_flight.len();
        assert!(self.free_sections.len() <= sections, "section freed twice");
        let mut seen = vec![false; sections];
        for &s in &self.free_sections {
            let slot = seen.get_mut(s as usize);
            assert!(
                slot.as_ref().is_some_and(|v| !**v),
                "bad or duplicate free section {s}"
            );
            if let Some(v) = slot {
                *v = true;
            }
        }
        assert!(self.responses.len() <= MAX_PENDING_RESPONSES);
        assert!(self.control.len() <= 64);
        assert!(self.rx.len <= self.rx.slots.len());
    }

    fn receive_range(&mut self, offset: u32, len: u32) {
        let (base, size, _) = self.recv;
        let (offset, len) = (u64::from(offset), u64::from(len));
        if len == 0
            || len as usize > self.scratch.len()
            || offset.checked_add(len).is_none_or(|e| e > size)
        {
            return self.bad();
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        let ok = scratch
            .get_mut(..len as usize)
            .is_some_and(|d| self.memory.read(base + offset, d).is_ok());
        if ok {
            for m in RndisMessages::new(scratch.get(..len as usize).unwrap_or(&[])) {
                match m {
                    Ok(RndisMessage::Packet(pkt)) => {
                        if self.rx.push(pkt.data) {
                            self.stats.rx_frames.fetch_add(1, Ordering::Relaxed);
                        } else {
                            self.stats.rx_dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(RndisMessage::IndicateStatus(s)) => {
                        if s.status == RndisStatus::MEDIA_CONNECT {
                            self.link_up = true;
                            self.stats.link_changes.fetch_add(1, Ordering::Relaxed);
                        } else if s.status == RndisStatus::MEDIA_DISCONNECT {
                            self.link_up = false;
                            self.stats.link_changes.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(m) => {
                        if let (Some(req), Ok(bytes)) = (m.request_id(), m.to_vec())
                            && self.control.len() < 64
                        {
                            self.control.push_back((req, bytes));
                        }
                    }
                    Err(_) => {
                        self.bad();
                        break;
                    }
                }
            }
        } else {
            self.bad();
        }
        self.scratch = scratch;
    }

    /// Closes the NIC: revokes the buffers, closes the channel, frees guest memory.
    pub fn close(mut self, bus: &GuestBus) -> Result<(), NetvscError> {
        let _ = self.nvsp_request(
            &NvspMessage::RevokeReceiveBuffer {
                id: RECEIVE_BUFFER_ID,
            },
            false,
        );
        let _ = self.nvsp_request(&NvspMessage::RevokeSendBuffer { id: 0 }, false);
        bus.close(self.relid)?;
        for (gpa, len, gpadl) in [self.recv, self.send] {
            if len > 0 {
                bus.teardown_gpadl(gpadl)?;
                bus.free_pages(gpa / 4096, len / 4096);
            }
        }
        Ok(())
    }
}
