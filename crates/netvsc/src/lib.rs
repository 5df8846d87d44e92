//! # netvsc
//!
//! The guest side of the Hyper-V synthetic NIC over a `vmbus::GuestBus` channel, in the
//! order Linux's hv_netvsc runs it (reference/linux-guest.md section C): NVSP version
//! negotiation newest first, NDIS config and version, a receive buffer and a send buffer
//! described by GPADLs, RNDIS initialize and the queries and sets netvsc makes (MAC,
//! MTU, offload capabilities and parameters, link state, packet filter), then frames:
//! transmit through send-buffer sections (or, for packets larger than a section, as
//! GPA-direct page lists), receive from transfer pages (copied out and completed at
//! once), link-status indications followed. Transmit offloads the host offers
//! (checksums, LSOv2, VLAN tag insertion) are enabled as Linux enables them and used
//! per frame through [`Netvsc::send_with`].
//!
//! Bursts: [`Netvsc::send_deferred`] packs frames into one send section (one
//! SEND_RNDIS_PKT, one completion) as Linux does under `xmit_more`, up to the host's
//! `max_pkt_per_msg` and padded to its alignment; [`Netvsc::flush`] (or the next
//! send, poll or receive) sends them. [`Netvsc::recv_with`] hands a received frame to a
//! closure where it lies, without the copy [`Netvsc::recv`] makes.
//!
//! Everything the host sends is untrusted: transfer-page ranges are checked against the
//! receive buffer, RNDIS messages parsed totally, completions for unknown transaction
//! ids counted and ignored.
//!
//! With the `smoltcp` feature, [`phy::NetvscPhy`] is a smoltcp `phy::Device`.
//!
//! With [`NetvscConfig::queues`] above 1 the driver asks for subchannels as Linux does
//! (RSS capabilities, SUBCHANNEL, the offers, RSS parameters), receives on every queue
//! and transmits on the queue the host's send indirection table names for the flow.
//!
//! Receive: [`Netvsc::recv_with_info`] also gives what the host said about a frame
//! ([`RxInfo`]: checksums it verified, the RSS hash). Not implemented: receive segment
//! coalescing (RSC).

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
/// Largest frame handed to or taken from the driver at the standard 1500-byte MTU
/// (with a VLAN tag); [`Netvsc::max_frame`] gives the NIC's own.
pub const MAX_FRAME: usize = 1518;
/// Largest MTU the driver supports (jumbo frames).
pub const MAX_MTU: u32 = 9000;

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
    /// The driver's MTU (68 to [`MAX_MTU`]; default 1500): sent to the host in the
    /// NDIS config and lowered to the host's maximum frame size if that is smaller.
    /// Receive slots are sized from it; frames above it are refused both ways.
    pub mtu: u32,
    /// Frames held between receive calls before new ones are dropped.
    pub rx_queue: usize,
    /// How long control operations wait for the host.
    pub timeout: Duration,
    /// Queues wanted (1 to [`MAX_QUEUES`]): with more than one, and a host at NVSP 5
    /// or newer that reports RSS, the driver asks for subchannels, opens them and
    /// sets RSS so received flows spread over them; transmit follows the host's send
    /// indirection table.
    pub queues: u16,
}

/// Most queues the driver opens.
pub const MAX_QUEUES: u16 = 16;

/// The RSS key the driver sets (the key of Microsoft's RSS verification examples).
pub const RSS_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

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
            queues: 1,
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
    /// An offload the host did not offer, or a frame it cannot apply to.
    #[error("offload not possible: {0}")]
    Offload(&'static str),
}

/// The transmit offloads the host offered and the driver enabled (all off if the host
/// reported none).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct HostOffloads {
    /// TCP checksum over IPv4.
    pub tcp4: bool,
    /// UDP checksum over IPv4.
    pub udp4: bool,
    /// TCP checksum over IPv6.
    pub tcp6: bool,
    /// UDP checksum over IPv6.
    pub udp6: bool,
    /// Largest LSOv2 packet over IPv4 (0: no LSO).
    pub lso4_max: u32,
    /// Largest LSOv2 packet over IPv6 (0: no LSO).
    pub lso6_max: u32,
}

impl HostOffloads {
    /// What Linux's hv_netvsc enables from a capabilities reply
    /// (`rndis_netdev_set_hwcaps`): TCP checksum only with options support, UDP and
    /// LSO only on top of TCP checksum, IPv6 LSO only with extension headers and
    /// TCP options.
    pub fn from_capabilities(c: &NdisOffload) -> Self {
        use vmbus_proto::rndis::{encap, offload_caps as k};
        let mut o = Self::default();
        let all_tcp4 = k::TCP4 | k::TCP4OPT;
        if c.csum.ip4_txcsum & all_tcp4 == all_tcp4 {
            o.tcp4 = true;
            o.udp4 = c.csum.ip4_txcsum & k::UDP4 != 0;
            if c.lsov2.ip4_encap & encap::IEEE_802_3 != 0 {
                o.lso4_max = c.lsov2.ip4_maxsz;
            }
        }
        let all_tcp6 = k::TCP6 | k::TCP6OPT | k::IP6EXT;
        if c.csum.ip6_txcsum & all_tcp6 == all_tcp6 {
            o.tcp6 = true;
            o.udp6 = c.csum.ip6_txcsum & k::UDP6 != 0;
            let opts = k::IP6EXT | k::TCP6OPT;
            if c.lsov2.ip6_encap & encap::IEEE_802_3 != 0 && c.lsov2.ip6_opts & opts == opts {
                o.lso6_max = c.lsov2.ip6_maxsz;
            }
        }
        o
    }

    /// The OID_TCP_OFFLOAD_PARAMETERS request enabling these (IPv4 header checksum
    /// off, as Linux asks).
    pub fn params(&self) -> NdisOffloadParams {
        use vmbus_proto::rndis::{OffloadParamChecksum as C, OffloadParamSimple as S};
        let csum = |on: bool| {
            if on {
                C::TX_RX_ENABLED
            } else {
                C::TX_RX_DISABLED
            }
        };
        let lso = |max: u32| if max > 0 { S::ENABLED } else { S::DISABLED };
        let mut p = NdisOffloadParams::new();
        p.ip_v4_csum = C::TX_RX_DISABLED;
        p.tcp_ip_v4_csum = csum(self.tcp4);
        p.udp_ip_v4_csum = csum(self.udp4);
        p.tcp_ip_v6_csum = csum(self.tcp6);
        p.udp_ip_v6_csum = csum(self.udp6);
        p.lso_v2_ipv4 = lso(self.lso4_max);
        p.lso_v2_ipv6 = lso(self.lso6_max);
        p
    }
}

/// What the host said about a received frame (its per-packet infos).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct RxInfo {
    /// The host verified the frame's TCP or UDP checksum (receive checksum offload,
    /// as Linux uses it to skip its own check).
    pub l4_checksum_valid: bool,
    /// The host verified the IPv4 header checksum.
    pub ip_checksum_valid: bool,
    /// The RSS hash the host computed for the frame's flow.
    pub hash: Option<u32>,
}

impl RxInfo {
    /// The infos in one received RNDIS packet's per-packet-info region; malformed
    /// entries are ignored (the frame is still good, the host just told nothing usable).
    fn of(ppi: &[u8]) -> Self {
        use vmbus_proto::rndis::ppi::{Ppi, PpiIter};
        let mut info = Self::default();
        for p in PpiIter::new(ppi).flatten() {
            match p {
                Ppi::Checksum(c) => {
                    info.l4_checksum_valid =
                        c.rx_tcp_checksum_succeeded() || c.rx_udp_checksum_succeeded();
                    info.ip_checksum_valid = c.rx_ip_checksum_succeeded();
                }
                Ppi::HashValue(h) => info.hash = Some(h),
                _ => {}
            }
        }
        info
    }
}

/// Offload work for one frame sent with [`Netvsc::send_with`].
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct TxOffload {
    /// Ask the host to compute the TCP or UDP checksum (the IPv4 header checksum must
    /// be valid already, as with Linux).
    pub checksum: bool,
    /// Ask the host to cut this TCP packet into segments of this MSS (LSOv2); the
    /// frame may then be up to the host's LSO maximum.
    pub lso_mss: Option<u32>,
    /// Ask the host to insert this 802.1Q tag control word (priority, DEI, VLAN id).
    pub vlan_tci: Option<u16>,
}

fn push_ppi<'a>(
    ppis: &mut [vmbus_proto::rndis::ppi::Ppi<'a>; 2],
    n: &mut usize,
    p: vmbus_proto::rndis::ppi::Ppi<'a>,
) {
    if let Some(slot) = ppis.get_mut(*n) {
        *slot = p;
        *n += 1;
    }
}

/// IP version, L4 protocol and L4 offset of an Ethernet frame (untagged or with one
/// 802.1Q tag), for filling per-packet infos.
fn l4_of(frame: &[u8]) -> Option<(bool, u8, usize)> {
    let be16 = |o: usize| {
        frame
            .get(o..)
            .and_then(|b| b.first_chunk::<2>())
            .map(|b| u16::from_be_bytes(*b))
    };
    let (ethertype, l3) = match be16(12)? {
        0x8100 => (be16(16)?, 18),
        t => (t, 14),
    };
    match ethertype {
        0x0800 => {
            let ihl = usize::from(frame.get(l3)? & 0xf) * 4;
            (ihl >= 20).then_some((false, *frame.get(l3 + 9)?, l3 + ihl))
        }
        0x86dd => Some((true, *frame.get(l3 + 6)?, l3 + 40)),
        _ => None,
    }
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
    /// Frames received, per queue.
    pub rx_queue_frames: [AtomicU64; MAX_QUEUES as usize],
    /// Frames sent, per queue.
    pub tx_queue_frames: [AtomicU64; MAX_QUEUES as usize],
    /// Frames handed out by [`Netvsc::recv_with_info`] whose checksums the host
    /// verified ([`RxInfo`]).
    pub rx_checksum_valid: AtomicU64,
    /// Data messages (SEND_RNDIS_PKT) sent to the host: with batching
    /// ([`Netvsc::send_deferred`]) several frames share one, so `tx_frames /
    /// tx_messages` is the batching factor.
    pub tx_messages: AtomicU64,
}

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

/// Most RNDIS packets the driver puts in one send section, whatever the host allows.
const MAX_PACKETS_PER_MESSAGE: u32 = 64;
/// Largest packet alignment (as a shift) the driver pads to; a host asking for more
/// gets one packet per message, which never needs padding.
const MAX_ALIGNMENT_SHIFT: u32 = 6;

/// Bytes per receive slot at the 1500-byte MTU: a whole RNDIS message carrying a full
/// frame (header, PPIs, frame) fits, so a message is read from guest memory straight
/// into its slot. Larger MTUs get [`rx_slot_size`].
const RX_SLOT: usize = 2048;
/// Room in a slot for the RNDIS header and per-packet infos before the frame.
const RX_HEADER_ROOM: usize = 256;

/// Receive slot size for frames of up to `max_frame` bytes.
fn rx_slot_size(max_frame: usize) -> usize {
    (max_frame + RX_HEADER_ROOM)
        .next_multiple_of(64)
        .max(RX_SLOT)
}

/// The largest frame at `mtu` (Ethernet header and a VLAN tag added).
fn frame_size(mtu: u32) -> usize {
    mtu as usize + 18
}

/// A queued frame's infos: decoded, or where its per-packet infos lie in its slot
/// (decoded only if asked for).
#[derive(Copy, Clone, Debug)]
enum SlotInfo {
    Known(RxInfo),
    Ppi { off: u16, len: u16 },
}

/// Bounded queue of received frames in preallocated slots; each slot remembers where
/// in it the frame is.
#[derive(Default)]
struct RxQueue {
    slots: Vec<u8>,
    slot_size: usize,
    /// Longest frame accepted (frames above the MTU are refused).
    max_frame: usize,
    spans: Vec<(u16, u16)>,
    infos: Vec<SlotInfo>,
    head: usize,
    len: usize,
}

impl RxQueue {
    fn new(n: usize, max_frame: usize) -> Self {
        let slot_size = rx_slot_size(max_frame);
        Self {
            slots: vec![0; n.max(1) * slot_size],
            slot_size,
            max_frame,
            spans: vec![(0, 0); n.max(1)],
            infos: vec![SlotInfo::Known(RxInfo::default()); n.max(1)],
            head: 0,
            len: 0,
        }
    }

    fn capacity(&self) -> usize {
        self.spans.len()
    }

    /// The slot the next frame goes into, or `None` when the queue is full.
    fn next_slot(&mut self) -> Option<&mut [u8]> {
        let cap = self.capacity();
        if self.len == cap {
            return None;
        }
        let at = (self.head + self.len) % cap * self.slot_size;
        self.slots.get_mut(at..at + self.slot_size)
    }

    /// Queues the frame at `off..off + len` of the slot [`RxQueue::next_slot`] gave.
    fn commit(&mut self, off: usize, len: usize, info: SlotInfo) -> bool {
        let cap = self.capacity();
        if self.len == cap || len > self.max_frame || off + len > self.slot_size {
            return false;
        }
        let i = (self.head + self.len) % cap;
        match (self.spans.get_mut(i), self.infos.get_mut(i)) {
            (Some(span), Some(slot_info)) => {
                *span = (off as u16, len as u16);
                *slot_info = info;
                self.len += 1;
                true
            }
            _ => false,
        }
    }

    fn push(&mut self, f: &[u8], info: SlotInfo) -> bool {
        let max = self.max_frame;
        match self.next_slot().and_then(|s| s.get_mut(..f.len())) {
            Some(d) if f.len() <= max => {
                d.copy_from_slice(f);
                self.commit(0, f.len(), info)
            }
            _ => false,
        }
    }

    /// Hands the oldest frame and, if `want_info`, its infos (decoded now) to `f` in
    /// its slot and frees the slot.
    fn pop_with<R>(&mut self, want_info: bool, f: impl FnOnce(&[u8], RxInfo) -> R) -> Option<R> {
        if self.len == 0 {
            return None;
        }
        let i = self.head;
        self.head = (i + 1) % self.capacity();
        self.len -= 1;
        let (off, len) = *self.spans.get(i)?;
        let base = i * self.slot_size;
        let info = match self.infos.get(i) {
            Some(SlotInfo::Known(info)) => *info,
            Some(&SlotInfo::Ppi { off, len }) if want_info => {
                let at = base + usize::from(off);
                RxInfo::of(self.slots.get(at..at + usize::from(len)).unwrap_or(&[]))
            }
            _ => RxInfo::default(),
        };
        let at = base + usize::from(off);
        Some(f(self.slots.get(at..at + usize::from(len))?, info))
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
    /// Guest pages for packets larger than a section, sent GPA-direct: (first GPA,
    /// bytes per slot, slots).
    large: (u64, u64, u32),
    free_large: Vec<u32>,
    /// Per large slot: the generation of the send in flight.
    large_in_flight: Vec<Option<u32>>,
    offloads: HostOffloads,
    /// RNDIS packets the host accepts per message (INITIALIZE_COMPLETE
    /// `max_pkt_per_msg`, clamped to 1..=[`MAX_PACKETS_PER_MESSAGE`]).
    max_pkt: u32,
    /// Alignment of packets sharing a message (`1 << pkt_alignment_factor`).
    pkt_align: u32,
    /// Per queue: the send section being filled by deferred sends.
    open: [Option<OpenSection>; MAX_QUEUES as usize],
    /// Whether any of `open` may be set.
    any_open: bool,
    /// Queues 1..: the subchannels (relid, halves).
    subqueues: Vec<(u32, Sender, Receiver)>,
    /// The host's send indirection table (queue per transmit hash bucket).
    send_table: [u32; 16],
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
const LARGE_TID: u64 = 1 << 60;
/// Packets larger than a send section that may be in flight at once.
const LARGE_SLOTS: u32 = 8;
/// Bytes per large-send slot: the largest LSO packet plus its RNDIS header and PPIs.
const LARGE_SLOT_BYTES: u64 = 64 * 1024 + 4096;

impl Netvsc {
    /// Opens `offer` on `bus` and runs the whole bring-up.
    pub fn open(
        bus: &GuestBus,
        offer: &OfferChannel,
        config: &NetvscConfig,
    ) -> Result<Self, NetvscError> {
        let mtu = config.mtu.clamp(68, MAX_MTU);
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
            large: (0, 0, 0),
            free_large: Vec::new(),
            large_in_flight: Vec::new(),
            offloads: HostOffloads::default(),
            max_pkt: 1,
            pkt_align: 1,
            open: [None; MAX_QUEUES as usize],
            any_open: false,
            subqueues: Vec::new(),
            send_table: [0; 16],
            generation: 0,
            responses: BTreeMap::new(),
            control: VecDeque::new(),
            next_tid: 1,
            next_req: 1,
            mac: [0; 6],
            mtu,
            link_up: false,
            rx: RxQueue::new(config.rx_queue, frame_size(mtu)),
            stats: Arc::new(NetvscStats::default()),
            staged: Vec::with_capacity(64),
            stage: Vec::with_capacity(64 * 1024),
            scratch: vec![0u8; rx_slot_size(frame_size(mtu)).max(8192)],
            timeout: config.timeout,
        };
        nic.negotiate(&config.versions)?;
        nic.setup_buffers(bus, config)?;
        nic.rndis_bring_up()?;
        if config.queues > 1 && nic.version.0 >= NvspVersion::V5.0 {
            nic.open_subchannels(bus, offer, config)?;
        }
        Ok(nic)
    }

    /// Asks for subchannels as Linux does (RSS capabilities, SUBCHANNEL, the offers,
    /// then RSS parameters over all queues). A host that reports no RSS or grants
    /// none leaves the NIC with one queue.
    fn open_subchannels(
        &mut self,
        bus: &GuestBus,
        primary: &OfferChannel,
        config: &NetvscConfig,
    ) -> Result<(), NetvscError> {
        use vmbus_proto::nvsp::NvspSubchannelOp;
        use vmbus_proto::rndis::{
            NdisReceiveScaleCapabilities, NdisReceiveScaleParameters, RssHashInfo, RssParams,
        };
        let (status, caps) = self.query(Oid::OID_GEN_RECEIVE_SCALE_CAPABILITIES, &[])?;
        let Ok(caps) = NdisReceiveScaleCapabilities::parse(&caps) else {
            return Ok(());
        };
        let host_queues = { caps.num_recv_que };
        if status != RndisStatus::SUCCESS || host_queues < 2 {
            return Ok(());
        }
        let want = u32::from(config.queues.min(MAX_QUEUES)).min(host_queues) - 1;
        let granted = match self.nvsp_request(
            &NvspMessage::Subchannel {
                op: NvspSubchannelOp::ALLOCATE,
                num_subchannels: want,
            },
            true,
        )? {
            Some(NvspMessage::SubchannelComplete {
                status: NvspStatus::SUCCESS,
                num_subchannels,
            }) => num_subchannels.min(want),
            _ => return Err(NetvscError::Refused("the subchannel request")),
        };
        for index in 1..=granted as u16 {
            let (class, instance) = ({ primary.interface_type }, { primary.interface_instance });
            let offer = bus.wait_offer(|o| {
                let (c, i, sub) = (o.interface_type, o.interface_instance, o.subchannel_index);
                i == instance && c == class && sub == index
            })?;
            let vp = u32::from(index)
                % hv_partition::Partition::vp_count(bus.partition().as_ref()).max(1);
            let Channel {
                relid,
                sender,
                receiver,
                ..
            } = bus.open(&offer, config.ring_pages, vp)?;
            sender.shared().set_waker(self.waker.clone());
            self.subqueues.push((relid, sender, receiver));
        }
        if self.subqueues.is_empty() {
            return Ok(());
        }
        // RSS over every queue: 128 entries round robin, Toeplitz over TCP and IP.
        let queues = 1 + self.subqueues.len() as u32;
        let table: Vec<u8> = (0..128u32)
            .flat_map(|i| (i % queues).to_le_bytes())
            .collect();
        let params = NdisReceiveScaleParameters {
            hashinfo: (RssHashInfo::FUNC_TOEPLITZ
                | RssHashInfo::IPV4
                | RssHashInfo::TCP_IPV4
                | RssHashInfo::IPV6
                | RssHashInfo::TCP_IPV6)
                .bits(),
            ..Default::default()
        };
        let rss = RssParams {
            params,
            indirection_table: &table,
            hash_key: &RSS_KEY,
        };
        let mut buf = vec![0u8; rss.encoded_len()];
        let n = rss
            .emit(&mut buf)
            .map_err(|_| NetvscError::Refused("RSS encode"))?;
        if self.set(
            Oid::OID_GEN_RECEIVE_SCALE_PARAMETERS,
            buf.get(..n).unwrap_or(&[]),
        )? != RndisStatus::SUCCESS
        {
            return Err(NetvscError::Refused("the RSS parameters"));
        }
        Ok(())
    }

    /// Signals (sent to the host, received from it) on the primary channel: with
    /// frames counted, how often each side had to interrupt the other.
    pub fn signals(&self) -> (u64, u64) {
        let s = &self.sender.shared().stats;
        (
            s.signals_sent.load(Ordering::Relaxed),
            s.signals_received.load(Ordering::Relaxed),
        )
    }

    /// Queues open (1 plus the subchannels).
    pub fn queues(&self) -> usize {
        1 + self.subqueues.len()
    }

    /// The sender of queue `q` (the primary for 0 or an unknown queue).
    fn sender_of(&mut self, q: usize) -> &mut Sender {
        match q.checked_sub(1).and_then(|i| self.subqueues.get_mut(i)) {
            Some((_, s, _)) => s,
            None => &mut self.sender,
        }
    }

    /// The transmit queue of a frame: a hash of its addresses and ports into the
    /// host's send indirection table (as Linux picks it), queue 0 without subchannels.
    fn tx_queue(&self, frame: &[u8]) -> usize {
        if self.subqueues.is_empty() {
            return 0;
        }
        let flow = l4_of(frame).and_then(|(v6, _, l4)| {
            let addrs = if v6 {
                frame.get(22..54)?
            } else {
                frame.get(l4 - 8..l4)?
            };
            Some((addrs, frame.get(l4..l4 + 4).unwrap_or(&[])))
        });
        let Some((addrs, ports)) = flow else {
            return 0;
        };
        // FNV-1a: any stable spread will do; the host's table maps buckets to queues.
        let h = addrs.iter().chain(ports).fold(0x811c_9dc5u32, |h, b| {
            (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
        });
        let bucket = (h ^ (h >> 16)) as usize % self.send_table.len();
        let q = self.send_table.get(bucket).copied().unwrap_or(0) as usize;
        if q < self.queues() { q } else { 0 }
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
    /// The largest frame the NIC sends or receives: the MTU plus the Ethernet header
    /// and a VLAN tag.
    pub fn max_frame(&self) -> usize {
        frame_size(self.mtu)
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
                let pages = LARGE_SLOT_BYTES / 4096 * u64::from(LARGE_SLOTS);
                let start = bus.alloc_pages(pages)?;
                self.large = (start * 4096, LARGE_SLOT_BYTES, LARGE_SLOTS);
                self.free_large = (0..LARGE_SLOTS).rev().collect();
                self.large_in_flight = vec![None; LARGE_SLOTS as usize];
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
        let mut buf = [0u8; 1024];
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
            Ok(RndisMessage::InitializeComplete(c)) if c.status == RndisStatus::SUCCESS => {
                // Linux takes both as given (rndis_filter_init_device); a host value
                // out of range here means one packet per message, never an error.
                let (max_pkt, factor) = (c.max_pkt_per_msg, c.pkt_alignment_factor);
                if factor <= MAX_ALIGNMENT_SHIFT {
                    self.max_pkt = max_pkt.clamp(1, MAX_PACKETS_PER_MESSAGE);
                    self.pkt_align = 1 << factor;
                }
            }
            _ => return Err(NetvscError::Refused("RNDIS initialize")),
        }
        if let (RndisStatus::SUCCESS, v) = self.query(Oid::OID_GEN_MAXIMUM_FRAME_SIZE, &[])?
            && let Some(b) = v.first_chunk::<4>()
        {
            // The host's largest; the driver keeps its own MTU when that is smaller.
            self.mtu = u32::from_le_bytes(*b).clamp(68, MAX_MTU).min(self.mtu);
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
        let caps = match NdisOffload::parse(&caps) {
            Ok(c) if status == RndisStatus::SUCCESS => c,
            _ => return Err(NetvscError::Refused("the offload capabilities query")),
        };
        self.offloads = HostOffloads::from_capabilities(&caps);
        let mut params = [0u8; 32];
        let n = self.offloads.params().emit(&mut params).unwrap_or(0);
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
        self.submit(0, section, msg.len() as u32, channel_type)
    }

    fn take_section(&mut self) -> Result<u32, NetvscError> {
        if let Some(s) = self.free_sections.pop() {
            return Ok(s);
        }
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
        q: usize,
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
        self.sender_of(q).send(
            &OutgoingPacket::inband(tid, FLAG_COMPLETION_REQUESTED),
            &[buf.get(..n).unwrap_or(&[])],
        )?;
        Ok(())
    }

    /// The transmit offloads the host offered and the driver enabled.
    pub fn offloads(&self) -> HostOffloads {
        self.offloads
    }

    /// Sends one Ethernet frame (without FCS).
    pub fn send(&mut self, frame: &[u8]) -> Result<(), NetvscError> {
        self.send_with(frame, &TxOffload::default())
    }

    /// Sends one Ethernet frame with offload work for the host: checksum, LSO (the
    /// frame may then be up to the host's LSO maximum) and VLAN tag. A packet that
    /// does not fit a send section goes GPA-direct from the driver's large-send pages.
    /// Frames deferred before it on the same queue go in the same message.
    pub fn send_with(&mut self, frame: &[u8], offload: &TxOffload) -> Result<(), NetvscError> {
        let q = self.enqueue(frame, offload)?;
        self.flush_queue(q)
    }

    /// Queues one frame for the host without sending it yet: frames deferred on the
    /// same queue share a send section, one SEND_RNDIS_PKT and one completion, up to
    /// the host's packets-per-message limit (Linux's `xmit_more` batching; a host
    /// that reports one packet per message gets each frame at once). Deferred frames
    /// go when their section fills, at [`Netvsc::flush`], and at the next
    /// [`Netvsc::send_with`], [`Netvsc::poll`] or [`Netvsc::recv`].
    pub fn send_deferred(&mut self, frame: &[u8]) -> Result<(), NetvscError> {
        self.send_deferred_with(frame, &TxOffload::default())
    }

    /// [`Netvsc::send_deferred`] with offload work, as in [`Netvsc::send_with`].
    pub fn send_deferred_with(
        &mut self,
        frame: &[u8],
        offload: &TxOffload,
    ) -> Result<(), NetvscError> {
        self.enqueue(frame, offload).map(drop)
    }

    /// Sends every deferred frame now.
    pub fn flush(&mut self) -> Result<(), NetvscError> {
        if std::mem::take(&mut self.any_open) {
            for q in 0..self.open.len() {
                if let Err(e) = self.flush_queue(q) {
                    self.any_open = true;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Sends queue `q`'s open section, if any.
    fn flush_queue(&mut self, q: usize) -> Result<(), NetvscError> {
        if let Some(o) = self.open.get_mut(q).and_then(Option::take) {
            self.submit(q, o.section, o.used, NvspChannelType::RMC_DATA)?;
            self.stats.tx_messages.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Writes one RNDIS packet (`hdr` then `frame`, `hdr` being the RNDIS header whose
    /// `msg_len` may be raised to cover the padding) into queue `q`'s open send
    /// section, opening one (and sending the full one) as needed.
    fn append(&mut self, q: usize, hdr: &mut [u8], frame: &[u8]) -> Result<(), NetvscError> {
        let total = (hdr.len() + frame.len()) as u32;
        // Padded so the next packet starts aligned; a packet that only fits unpadded
        // goes alone.
        let padded = Some(total.next_multiple_of(self.pkt_align))
            .filter(|&p| p <= self.section_size)
            .unwrap_or(total);
        let fits = matches!(self.open.get(q), Some(Some(o))
            if o.count < self.max_pkt && o.used + padded <= self.section_size);
        if !fits {
            self.flush_queue(q)?;
            let section = self.take_section()?;
            let slot = self.open.get_mut(q).ok_or(NetvscError::Refused("queue"))?;
            *slot = Some(OpenSection {
                section,
                used: 0,
                count: 0,
            });
        }
        let Some(Some(mut o)) = self.open.get(q).copied() else {
            return Err(NetvscError::Refused("queue"));
        };
        if padded != total
            && let Some(len) = hdr.get_mut(4..8)
        {
            len.copy_from_slice(&padded.to_le_bytes());
        }
        let gpa =
            self.send.0 + u64::from(o.section) * u64::from(self.section_size) + u64::from(o.used);
        let zeros = [0u8; 1 << MAX_ALIGNMENT_SHIFT];
        let pad = zeros.get(..(padded - total) as usize).unwrap_or(&[]);
        self.memory
            .write(gpa, hdr)
            .and_then(|()| self.memory.write(gpa + hdr.len() as u64, frame))
            .and_then(|()| self.memory.write(gpa + u64::from(total), pad))
            .map_err(|_| NetvscError::Refused("send buffer write"))?;
        o.used += padded;
        o.count += 1;
        if let Some(slot) = self.open.get_mut(q) {
            *slot = Some(o);
        }
        self.any_open = true;
        if o.count >= self.max_pkt {
            self.flush_queue(q)?;
        }
        Ok(())
    }

    /// Builds the RNDIS packet for `frame` and puts it in its queue's open section (or
    /// sends it GPA-direct when it is larger than a section); returns the queue.
    fn enqueue(&mut self, frame: &[u8], offload: &TxOffload) -> Result<usize, NetvscError> {
        use vmbus_proto::rndis::ppi::{
            NDIS_TCP_LARGE_SEND_OFFLOAD_V2_TYPE, NdisPkt8021qInfo, NdisTcpIpChecksumInfo,
            NdisTcpLsoInfo, Ppi,
        };
        let mut ppis = [Ppi::HashValue(0); 2];
        let mut n_ppis = 0;
        let mut max = frame_size(self.mtu);
        if offload.checksum || offload.lso_mss.is_some() {
            let (v6, proto, l4) = l4_of(frame).ok_or(NetvscError::Offload("not IPv4 or IPv6"))?;
            let tcp = proto == 6;
            if !tcp && proto != 17 {
                return Err(NetvscError::Offload("not TCP or UDP"));
            }
            let o = self.offloads;
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
        let q = self.tx_queue(frame);
        if total <= self.section_size as usize {
            self.append(q, hdr, frame)?;
        } else {
            // Whatever was deferred on this queue goes first: frames stay in order.
            self.flush_queue(q)?;
            self.send_large(q, hdr, frame)?;
        }
        self.stats.tx_frames.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = self.stats.tx_queue_frames.get(q) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        Ok(q)
    }

    /// Sends an RNDIS packet (`hdr` then `frame`) from a large-send slot as a
    /// GPA-direct packet.
    fn send_large(&mut self, q: usize, hdr: &[u8], frame: &[u8]) -> Result<(), NetvscError> {
        let total = (hdr.len() + frame.len()) as u64;
        if total > self.large.1 {
            return Err(NetvscError::FrameTooLarge(frame.len()));
        }
        let deadline = Instant::now() + self.timeout;
        let slot = loop {
            if let Some(s) = self.free_large.pop() {
                break s;
            }
            if Instant::now() >= deadline {
                return Err(NetvscError::Timeout("a free large-send slot"));
            }
            self.poll(Duration::from_millis(10))?;
        };
        let gpa = self.large.0 + u64::from(slot) * self.large.1;
        self.memory
            .write(gpa, hdr)
            .and_then(|()| self.memory.write(gpa + hdr.len() as u64, frame))
            .map_err(|_| NetvscError::Refused("large-send write"))?;
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
        self.sender_of(q).send(
            &OutgoingPacket {
                packet_type: vmbus_proto::packet::PacketType::DATA_USING_GPA_DIRECT,
                flags: FLAG_COMPLETION_REQUESTED,
                transaction_id: tid,
                header,
            },
            &[buf.get(..n).unwrap_or(&[])],
        )?;
        Ok(())
    }

    /// Receives one frame into `buf` (a frame longer than `buf` is cut), waiting up
    /// to `timeout`; the bytes written, or `Ok(None)` on timeout.
    pub fn recv(
        &mut self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<Option<usize>, NetvscError> {
        self.recv_with(timeout, |frame| {
            let n = frame.len().min(buf.len());
            if let (Some(d), Some(s)) = (buf.get_mut(..n), frame.get(..n)) {
                d.copy_from_slice(s);
            }
            n
        })
    }

    /// Receives one frame and hands it to `f` where it lies in the driver's receive
    /// queue (no copy), waiting up to `timeout`; `f`'s result, or `Ok(None)` on
    /// timeout. The frame was copied out of the host-shared buffer before it was
    /// parsed, so the host cannot change it under `f`.
    pub fn recv_with<R>(
        &mut self,
        timeout: Duration,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, NetvscError> {
        self.recv_inner(timeout, false, |frame, _| f(frame))
    }

    /// [`Netvsc::recv_with`] with what the host said about the frame: verified
    /// checksums (receive checksum offload) and its RSS hash.
    pub fn recv_with_info<R>(
        &mut self,
        timeout: Duration,
        f: impl FnOnce(&[u8], RxInfo) -> R,
    ) -> Result<Option<R>, NetvscError> {
        self.recv_inner(timeout, true, f)
    }

    /// Waits up to `timeout` for a frame and hands it to `f` (with its infos decoded
    /// only if `want_info`).
    fn recv_inner<R>(
        &mut self,
        timeout: Duration,
        want_info: bool,
        f: impl FnOnce(&[u8], RxInfo) -> R,
    ) -> Result<Option<R>, NetvscError> {
        self.flush()?;
        // The common case reads no clock.
        if self.rx.len == 0 {
            let deadline = Instant::now() + timeout;
            while self.rx.len == 0 {
                let now = Instant::now();
                if now >= deadline {
                    // Look once even with a zero timeout.
                    self.poll_once()?;
                    break;
                }
                self.poll(deadline - now)?;
            }
        }
        let stats = &self.stats;
        Ok(self.rx.pop_with(want_info, |frame, info| {
            if info.l4_checksum_valid {
                stats.rx_checksum_valid.fetch_add(1, Ordering::Relaxed);
            }
            f(frame, info)
        }))
    }

    /// Processes what the host sent, waiting up to `timeout` for something to arrive.
    pub fn poll(&mut self, timeout: Duration) -> Result<usize, NetvscError> {
        self.flush()?;
        let n = self.poll_once()?;
        if n > 0 {
            return Ok(n);
        }
        // prepare_sleep says whether something arrived in between.
        let mut arrived = self.receiver.prepare_sleep()?;
        for (_, _, r) in &mut self.subqueues {
            arrived |= r.prepare_sleep()?;
        }
        if !arrived {
            self.waker.wait(timeout);
        }
        self.poll_once()
    }

    fn poll_once(&mut self) -> Result<usize, NetvscError> {
        let mut total = 0;
        for q in 0..self.queues() {
            self.staged.clear();
            self.stage.clear();
            let (staged, stage) = (&mut self.staged, &mut self.stage);
            let receiver = match q.checked_sub(1) {
                None => &mut self.receiver,
                Some(i) => match self.subqueues.get_mut(i) {
                    Some((_, _, r)) => r,
                    None => continue,
                },
            };
            total += receiver.try_recv_batch(256, |p| {
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
                    self.handle(q, p);
                }
            }
            self.stage = stage;
            self.sender_of(q).flush();
        }
        Ok(total)
    }

    fn bad(&self) {
        self.stats.bad_host_messages.fetch_add(1, Ordering::Relaxed);
    }

    fn handle(&mut self, q: usize, bytes: &[u8]) {
        let limits = PacketLimits {
            max_transfer_ranges: 375,
            max_gpa_ranges: 0,
        };
        let Ok(p) = Packet::parse(bytes, &limits) else {
            return self.bad();
        };
        let tid = p.descriptor.transaction_id;
        match p.kind {
            PacketKind::Completion if tid & LARGE_TID != 0 => {
                let slot = tid as u32;
                let generation = ((tid >> 32) & 0x0FFF_FFFF) as u32;
                match self.large_in_flight.get_mut(slot as usize) {
                    Some(g) if *g == Some(generation) => {
                        *g = None;
                        self.free_large.push(slot);
                    }
                    _ => {
                        self.stats
                            .unknown_completions
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
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
                    if self.receive_range(r.byte_offset, r.byte_count)
                        && let Some(c) = self.stats.rx_queue_frames.get(q)
                    {
                        c.fetch_add(1, Ordering::Relaxed);
                    }
                }
                // Complete the transfer so the host can reuse the sub-allocations.
                let done = NvspMessage::SendRndisPacketComplete {
                    status: NvspStatus::SUCCESS,
                };
                let mut buf = [0u8; 40];
                let n = done.emit(&mut buf).unwrap_or(0);
                // On the queue it came from: the host frees the ranges per channel.
                if self
                    .sender_of(q)
                    .write(
                        &OutgoingPacket::completion(tid),
                        &[buf.get(..n).unwrap_or(&[])],
                    )
                    .is_err()
                {
                    self.bad();
                }
            }
            PacketKind::InBand => {
                // The only message a host sends unasked: the send indirection table.
                match vmbus_proto::nvsp::NvspSendIndirectionTable::parse_linux_compat(
                    p.payload,
                    self.version,
                ) {
                    Ok(t) if t.entries().len() == self.send_table.len() => {
                        for (d, s) in self.send_table.iter_mut().zip(t.entries()) {
                            *d = *s;
                        }
                    }
                    _ => self.bad(),
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
        self.handle(0, packet);
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
        let mut large = vec![false; self.large_in_flight.len()];
        for &s in &self.free_large {
            let slot = large.get_mut(s as usize);
            assert!(
                slot.as_ref().is_some_and(|v| !**v),
                "bad or duplicate free large slot {s}"
            );
            if let Some(v) = slot {
                *v = true;
            }
        }
        assert!(self.responses.len() <= MAX_PENDING_RESPONSES);
        assert!(self.control.len() <= 64);
        assert!(self.rx.len <= self.rx.capacity());
        // One queued frame (not all: the queue must still be able to fill up) comes
        // out within the MTU, its infos decoded from the host's bytes.
        let max = self.rx.max_frame;
        if let Some(len) = self.rx.pop_with(true, |f, _| f.len()) {
            assert!(len <= max, "frame of {len} bytes queued");
        }
    }

    /// Reads the RNDIS messages of one transfer-page range; returns whether it held
    /// a frame that was queued.
    fn receive_range(&mut self, offset: u32, len: u32) -> bool {
        let (base, size, _) = self.recv;
        let (offset, len) = (u64::from(offset), u64::from(len));
        if len == 0
            || len as usize > self.scratch.len()
            || offset.checked_add(len).is_none_or(|e| e > size)
        {
            self.bad();
            return false;
        }
        if let Some(got) = self.receive_in_place(base + offset, len as usize) {
            return got;
        }
        let mut got = false;
        let mut scratch = std::mem::take(&mut self.scratch);
        let ok = scratch
            .get_mut(..len as usize)
            .is_some_and(|d| self.memory.read(base + offset, d).is_ok());
        if ok {
            for m in RndisMessages::new(scratch.get(..len as usize).unwrap_or(&[])) {
                match m {
                    Ok(RndisMessage::Packet(pkt)) => {
                        let info = SlotInfo::Known(RxInfo::of(pkt.ppi));
                        if self.rx.push(pkt.data, info) {
                            self.stats.rx_frames.fetch_add(1, Ordering::Relaxed);
                            got = true;
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
        got
    }

    /// The common case of [`Netvsc::receive_range`]: a range holding exactly one RNDIS
    /// PACKET is read straight into the next receive slot and queued where its frame
    /// sits, without a copy through `scratch`. `None`: anything else (several or other
    /// messages, a full queue, a long range); the caller takes the general path.
    fn receive_in_place(&mut self, gpa: u64, len: usize) -> Option<bool> {
        let mut rx = std::mem::take(&mut self.rx);
        let result = (|| {
            let max_frame = rx.max_frame;
            let slot = rx.next_slot()?;
            let dst = slot.get_mut(..len)?;
            self.memory.read(gpa, dst).ok()?;
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
        })();
        self.rx = rx;
        if result == Some(true) {
            self.stats.rx_frames.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Closes the NIC: revokes the buffers, closes the channel, frees guest memory.
    pub fn close(mut self, bus: &GuestBus) -> Result<(), NetvscError> {
        let _ = self.flush();
        let _ = self.nvsp_request(
            &NvspMessage::RevokeReceiveBuffer {
                id: RECEIVE_BUFFER_ID,
            },
            false,
        );
        let _ = self.nvsp_request(&NvspMessage::RevokeSendBuffer { id: 0 }, false);
        for (relid, _, _) in std::mem::take(&mut self.subqueues) {
            bus.close(relid)?;
        }
        bus.close(self.relid)?;
        for (gpa, len, gpadl) in [self.recv, self.send] {
            if len > 0 {
                bus.teardown_gpadl(gpadl)?;
                bus.free_pages(gpa / 4096, len / 4096);
            }
        }
        let (gpa, bytes, slots) = self.large;
        if slots > 0 {
            bus.free_pages(gpa / 4096, bytes / 4096 * u64::from(slots));
        }
        Ok(())
    }
}
