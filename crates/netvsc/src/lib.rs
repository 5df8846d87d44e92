#![doc = include_str!("../README.md")]
//!
//! ## Overview
//!
//! The guest side of the Hyper-V synthetic NIC over a `vmbus::GuestBus` channel, in the
//! order Linux's hv_netvsc runs it (`drivers/net/hyperv/netvsc.c`, `netvsc_connect_vsp`;
//! `rndis_filter.c`, `rndis_filter_device_add`): NVSP version
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
//! Each queue has its own send sections, large-send slots and receive queue, so
//! [`Netvsc::take_queue`] can move a subchannel to a [`NetvscQueue`] driven by a
//! thread of its own (the caller then picks which flows it sends there).
//!
//! Receive: [`Netvsc::recv_with_info`] also gives what the host said about a frame
//! ([`RxInfo`]: checksums it verified, the RSS hash). Not implemented: receive segment
//! coalescing (RSC).

//!
//! ## Without `std`
//!
//! With `default-features = false` the driver is `no_std + alloc`: it runs on a
//! polled `vmbus::GuestBus` over the guest's own `vmbus::GuestPlatform`, and every
//! wait (control replies, a free send section, a frame) runs that bus through the
//! platform's interrupt wait, with timeouts on the platform's clock.

#![forbid(unsafe_code)]
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

#[cfg(feature = "smoltcp")]
pub mod phy;
mod queue;
mod rx;

use alloc::vec;
use alloc::vec::Vec;
pub use queue::NetvscQueue;
use queue::{
    DataQueue, Events, HostEvent, LARGE_SLOT_BYTES, Layout, MAX_ALIGNMENT_SHIFT,
    MAX_PACKETS_PER_MESSAGE, NVSP_TID,
};

use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::Arc;
use core::sync::atomic::Ordering;
use core::time::Duration;
use vmbus::{Channel, ChannelError, GuestBus, GuestError};
use vmbus_proto::channel::OfferChannel;
use vmbus_proto::nvsp::{
    NdisConfigCapabilities, NvspChannelType, NvspMessage, NvspStatus, NvspVersion,
};
use vmbus_proto::packet::FLAG_COMPLETION_REQUESTED;
use vmbus_proto::rndis::{
    InfoComplete, NdisOffload, NdisOffloadParams, Oid, OidRequest, RndisInitializeRequest,
    RndisMessage, RndisStatus,
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
#[non_exhaustive]
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
    /// Frames held between receive calls, per queue, before new ones are dropped.
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
#[non_exhaustive]
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
    pub(crate) fn of(ppi: &[u8]) -> Self {
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

vmbus_ring::counters! {
    /// Counters. The data path counts once per message, not per frame (every queue's
    /// thread updates them): a frame is counted as sent when its message goes to the host
    /// (a deferred one once flushed), and as received when the transfer that carried it
    /// has been read, before it can be taken.
    pub struct NetvscStats;
    /// The atomics behind [`NetvscStats`].
    pub(crate) struct Counters;
    {
        /// Frames sent.
        tx_frames: one,
        /// Frames received.
        rx_frames: one,
        /// Frames dropped because the receive queue was full.
        rx_dropped: one,
        /// Malformed or out-of-range messages from the host.
        bad_host_messages: one,
        /// Completions for transaction ids we never used.
        unknown_completions: one,
        /// Link-status indications received.
        link_changes: one,
        /// Frames received, per queue.
        rx_queue_frames: [MAX_QUEUES as usize],
        /// Frames sent, per queue.
        tx_queue_frames: [MAX_QUEUES as usize],
        /// Frames handed out by [`Netvsc::recv_with_info`] whose checksums the host
        /// verified ([`RxInfo`]).
        rx_checksum_valid: one,
        /// Data messages (SEND_RNDIS_PKT, from a send section or GPA-direct) sent to the
        /// host: with batching
        /// ([`Netvsc::send_deferred`]) several frames share one, so `tx_frames /
        /// tx_messages` is the batching factor.
        tx_messages: one,
    }
}

/// The largest frame at `mtu` (Ethernet header and a VLAN tag added).
pub(crate) fn frame_size(mtu: u32) -> usize {
    mtu as usize + 18
}

/// Copies `frame` into `buf`, cut to its length; the bytes copied.
pub(crate) fn copy_cut(frame: &[u8], buf: &mut [u8]) -> usize {
    let n = frame.len().min(buf.len());
    if let (Some(d), Some(s)) = (buf.get_mut(..n), frame.get(..n)) {
        d.copy_from_slice(s);
    }
    n
}

/// NVSP answers kept for requests not yet collected (the bring-up waits for one at a
/// time; anything beyond this is a misbehaving host).
const MAX_PENDING_RESPONSES: usize = 16;
/// RNDIS control answers kept for requests not yet collected.
const MAX_PENDING_CONTROL: usize = 64;
/// Packets larger than a send section that may be in flight at once (at least; two
/// per queue with more queues).
const LARGE_SLOTS: u32 = 8;

/// The NIC's control state: what the primary channel's non-data traffic updates.
struct Control {
    version: NvspVersion,
    /// NVSP responses by tid.
    responses: BTreeMap<u64, NvspMessage>,
    /// RNDIS control completions by request id (copied bytes).
    control: VecDeque<(u32, Vec<u8>)>,
    next_tid: u64,
    link_up: bool,
    /// The host's send indirection table (queue per transmit hash bucket).
    send_table: [u32; 16],
}

impl Control {
    /// Acts on one control-path event from the host.
    fn event(&mut self, layout: &Layout, event: HostEvent<'_>) {
        let stats = &layout.stats;
        let bad = || {
            stats.bad_host_messages.fetch_add(1, Ordering::Relaxed);
        };
        match event {
            HostEvent::NvspCompletion { tid, payload } => {
                match NvspMessage::parse_completion(payload)
                    .or_else(|_| NvspMessage::parse(payload))
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
                        stats.unknown_completions.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => bad(),
                }
            }
            HostEvent::Rndis(RndisMessage::IndicateStatus(s)) => {
                if s.status == RndisStatus::MEDIA_CONNECT {
                    self.link_up = true;
                    stats.link_changes.fetch_add(1, Ordering::Relaxed);
                } else if s.status == RndisStatus::MEDIA_DISCONNECT {
                    self.link_up = false;
                    stats.link_changes.fetch_add(1, Ordering::Relaxed);
                }
            }
            HostEvent::Rndis(m) => {
                if let (Some(req), Ok(bytes)) = (m.request_id(), m.to_vec())
                    && self.control.len() < MAX_PENDING_CONTROL
                {
                    self.control.push_back((req, bytes));
                }
            }
            HostEvent::Inband(payload) => {
                // The only message a host sends unasked: the send indirection table.
                match vmbus_proto::nvsp::NvspSendIndirectionTable::parse_linux_compat(
                    payload,
                    self.version,
                ) {
                    Ok(t) if t.entries().len() == self.send_table.len() => {
                        for (d, s) in self.send_table.iter_mut().zip(t.entries()) {
                            *d = *s;
                        }
                    }
                    _ => bad(),
                }
            }
        }
    }
}

/// A synthetic NIC, brought up and ready for frames. One thread drives all of its
/// queues; [`Netvsc::take_queue`] moves a subchannel's queue to a thread of its own.
pub struct Netvsc {
    relid: u32,
    layout: Layout,
    /// Queue 0 (the primary channel) and the subchannels; `None` once taken.
    queues: Vec<Option<DataQueue>>,
    /// The subchannels' relids (closed with the NIC, taken or not).
    sub_relids: Vec<u32>,
    /// Rung by the host's signals on every queue this NIC still drives.
    waker: Arc<Doorbell>,
    /// The primary channel's shared state: how to wait for `waker` (asleep, or
    /// running a polled bus).
    primary: Arc<vmbus::ChannelShared>,
    ctl: Control,
    /// Receive and send buffers: (first GPA, bytes, GPADL).
    recv_buffer: (u64, u64, u32),
    send_buffer: (u64, u64, u32),
    /// Large-send slots: slots allocated.
    large_slots: u32,
    next_req: u32,
    mac: [u8; 6],
    /// Whether a queue may hold deferred frames.
    any_open: bool,
    /// The queue the next receive looks at first (round robin).
    next_rx: usize,
}

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
        // Peer signals also ring `waker`, so `poll` can wait with a timeout.
        let waker = Arc::new(Doorbell::new());
        let primary_shared = sender.shared().clone();
        let primary = DataQueue::new(
            0,
            relid,
            sender,
            receiver,
            waker.clone(),
            config.rx_queue,
            mtu,
        );
        let mut nic = Self {
            relid,
            layout: Layout {
                platform: bus.platform().clone(),
                recv: (0, 0),
                send: 0,
                section_size: 0,
                large: 0,
                offloads: HostOffloads::default(),
                max_pkt: 1,
                pkt_align: 1,
                mtu,
                stats: Arc::new(Counters::default()),
                timeout: config.timeout,
            },
            queues: vec![Some(primary)],
            sub_relids: Vec::new(),
            waker,
            primary: primary_shared,
            ctl: Control {
                version: NvspVersion::V1,
                responses: BTreeMap::new(),
                control: VecDeque::new(),
                next_tid: 1,
                link_up: false,
                send_table: [0; 16],
            },
            recv_buffer: (0, 0, 0),
            send_buffer: (0, 0, 0),
            large_slots: 0,
            next_req: 1,
            mac: [0; 6],
            any_open: false,
            next_rx: 0,
        };
        nic.negotiate(&config.versions)?;
        nic.setup_buffers(bus, config)?;
        nic.rndis_bring_up()?;
        if config.queues > 1 && nic.ctl.version.0 >= NvspVersion::V5.0 {
            nic.open_subchannels(bus, offer, config)?;
        }
        Ok(nic)
    }

    /// Runs `f` on queue `q` with the layout and the control path's event handler.
    fn on_queue<R>(
        &mut self,
        q: usize,
        f: impl FnOnce(&mut DataQueue, &Layout, &mut Events<'_>) -> Result<R, NetvscError>,
    ) -> Result<R, NetvscError> {
        let Self {
            queues,
            layout,
            ctl,
            ..
        } = self;
        let dq = queues
            .get_mut(q)
            .and_then(Option::as_mut)
            .ok_or(NetvscError::Refused("a queue that was taken"))?;
        f(dq, layout, &mut |l, e| ctl.event(l, e))
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
            let vp = u32::from(index) % bus.vp_count().max(1);
            let Channel {
                relid,
                sender,
                receiver,
                ..
            } = bus.open(&offer, config.ring_pages, vp)?;
            self.sub_relids.push(relid);
            self.queues.push(Some(DataQueue::new(
                usize::from(index),
                relid,
                sender,
                receiver,
                self.waker.clone(),
                config.rx_queue,
                self.layout.mtu,
            )));
        }
        if self.sub_relids.is_empty() {
            return Ok(());
        }
        self.share_send_slots();
        // RSS over every queue: 128 entries round robin, Toeplitz over TCP and IP.
        let queues = self.queues.len() as u32;
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

    /// Splits the primary's free send sections and large-send slots evenly over the
    /// queues (each queue's sends complete on that queue, and a queue taken to another
    /// thread must not share them).
    fn share_send_slots(&mut self) {
        let n = self.queues.len();
        let n_sections = (self.send_buffer.1 / u64::from(self.layout.section_size.max(1))) as u32;
        let n_large = self.large_slots;
        let Some(Some(primary)) = self.queues.first_mut() else {
            return;
        };
        let share = primary.free_sections.len() / n;
        let large_share = primary.free_large.len() / n;
        let mut parts = Vec::with_capacity(n);
        for _ in 1..n {
            let s = primary.free_sections.len() - share;
            let l = primary.free_large.len() - large_share;
            parts.push((
                primary.free_sections.split_off(s),
                primary.free_large.split_off(l),
            ));
        }
        for (dq, (sections, large)) in self.queues.iter_mut().skip(1).flatten().zip(parts) {
            dq.own(sections, n_sections, large, n_large);
        }
    }

    /// Moves subchannel queue `q` (1 to `queues() - 1`) to a [`NetvscQueue`] the
    /// caller may run on another thread, with the sections, large-send slots and
    /// receive queue it already had. Frames this NIC sends whose flow the host's table
    /// puts on `q` go on the primary queue from now on; frames the host puts on `q`
    /// arrive at the returned queue. `None` if `q` is not a subchannel or was taken.
    /// The subchannel closes with the NIC ([`Netvsc::close`]): the queue's calls then
    /// fail.
    pub fn take_queue(&mut self, q: usize) -> Option<NetvscQueue> {
        if q == 0 {
            return None;
        }
        let _ = self.on_queue(q, |dq, layout, _| dq.flush(layout));
        let mut dq = self.queues.get_mut(q).and_then(Option::take)?;
        dq.set_waker(Arc::new(Doorbell::new()));
        Some(NetvscQueue::new(self.layout.clone(), dq))
    }

    /// Signals (sent to the host, received from it) on the primary channel: with
    /// frames counted, how often each side had to interrupt the other.
    pub fn signals(&self) -> (u64, u64) {
        let Some(Some(q)) = self.queues.first() else {
            return (0, 0);
        };
        let s = q.sender.shared().stats();
        (s.signals_sent, s.signals_received)
    }

    /// Queues open (1 plus the subchannels, taken or not).
    pub fn queues(&self) -> usize {
        self.queues.len()
    }

    /// The transmit queue of a frame: a hash of its addresses and ports into the
    /// host's send indirection table (as Linux picks it), queue 0 without subchannels
    /// or when the table names a queue that was taken.
    fn tx_queue(&self, frame: &[u8]) -> usize {
        if self.queues.len() < 2 {
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
        let table = &self.ctl.send_table;
        let bucket = (h ^ (h >> 16)) as usize % table.len();
        let q = table.get(bucket).copied().unwrap_or(0) as usize;
        if self.queues.get(q).is_some_and(Option::is_some) {
            q
        } else {
            0
        }
    }

    /// The channel's relid.
    pub fn relid(&self) -> u32 {
        self.relid
    }
    /// The negotiated NVSP version.
    pub fn nvsp_version(&self) -> NvspVersion {
        self.ctl.version
    }
    /// The MAC address the host reported.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }
    /// The MTU.
    pub fn mtu(&self) -> u32 {
        self.layout.mtu
    }
    /// The largest frame the NIC sends or receives: the MTU plus the Ethernet header
    /// and a VLAN tag.
    pub fn max_frame(&self) -> usize {
        frame_size(self.layout.mtu)
    }
    /// The receive and send buffers as (first GPA, bytes, GPADL id): for diagnostics
    /// and for tests that play a misbehaving guest (tearing a GPADL down behind the
    /// driver's back).
    pub fn buffers(&self) -> [(u64, u64, u32); 2] {
        [self.recv_buffer, self.send_buffer]
    }

    /// Whether the link is up (as last indicated by the host).
    pub fn link_up(&self) -> bool {
        self.ctl.link_up
    }
    /// A snapshot of the NIC's counters (every queue's).
    pub fn stats(&self) -> NetvscStats {
        self.layout.stats.snapshot()
    }

    fn nvsp_request(
        &mut self,
        msg: &NvspMessage,
        completion: bool,
    ) -> Result<Option<NvspMessage>, NetvscError> {
        let tid = NVSP_TID | self.ctl.next_tid;
        self.ctl.next_tid += 1;
        let mut buf = [0u8; 40];
        let n = msg
            .emit(&mut buf)
            .map_err(|_| NetvscError::Refused("NVSP encode"))?;
        let flags = if completion {
            FLAG_COMPLETION_REQUESTED
        } else {
            0
        };
        self.on_queue(0, |dq, _, _| {
            Ok(dq.sender.send(
                &OutgoingPacket::inband(tid, flags),
                &[buf.get(..n).unwrap_or(&[])],
            )?)
        })?;
        if !completion {
            return Ok(None);
        }
        let deadline = self.layout.platform.now() + self.layout.timeout;
        loop {
            if let Some(r) = self.ctl.responses.remove(&tid) {
                return Ok(Some(r));
            }
            if self.layout.platform.now() >= deadline {
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
                self.ctl.version = v;
                if v.0 >= NvspVersion::V2.0 {
                    let mut caps = NdisConfigCapabilities::IEEE8021Q;
                    if v.0 >= NvspVersion::V5.0 {
                        caps |= NdisConfigCapabilities::SRIOV | NdisConfigCapabilities::TEAMING;
                    }
                    self.nvsp_request(
                        &NvspMessage::SendNdisConfig {
                            mtu: self.layout.mtu + 14,
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
        self.recv_buffer = (start * 4096, pages * 4096, gpadl);
        self.layout.recv = (start * 4096, pages * 4096);
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
        self.send_buffer = (start * 4096, pages * 4096, gpadl);
        self.layout.send = start * 4096;
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
            }) if section_size >= 1024 && u64::from(section_size) <= self.send_buffer.1 => {
                self.layout.section_size = section_size;
                let n = (self.send_buffer.1 / u64::from(section_size)) as u32;
                let slots = LARGE_SLOTS.max(2 * u32::from(config.queues.min(MAX_QUEUES)));
                let start = bus.alloc_pages(LARGE_SLOT_BYTES / 4096 * u64::from(slots))?;
                self.layout.large = start * 4096;
                self.large_slots = slots;
                self.on_queue(0, |dq, _, _| {
                    dq.own((0..n).rev().collect(), n, (0..slots).rev().collect(), slots);
                    Ok(())
                })
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
        let deadline = self.layout.platform.now() + self.layout.timeout;
        loop {
            if let Some(i) = self.ctl.control.iter().position(|(r, _)| *r == req_id)
                && let Some((_, bytes)) = self.ctl.control.remove(i)
            {
                return Ok(bytes);
            }
            if self.layout.platform.now() >= deadline {
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
                    self.layout.max_pkt = max_pkt.clamp(1, MAX_PACKETS_PER_MESSAGE);
                    self.layout.pkt_align = 1 << factor;
                }
            }
            _ => return Err(NetvscError::Refused("RNDIS initialize")),
        }
        if let (RndisStatus::SUCCESS, v) = self.query(Oid::OID_GEN_MAXIMUM_FRAME_SIZE, &[])?
            && let Some(b) = v.first_chunk::<4>()
        {
            // The host's largest; the driver keeps its own MTU when that is smaller.
            self.layout.mtu = u32::from_le_bytes(*b)
                .clamp(68, MAX_MTU)
                .min(self.layout.mtu);
        }
        match self.query(Oid::OID_802_3_PERMANENT_ADDRESS, &[])? {
            (RndisStatus::SUCCESS, v) if v.len() >= 6 => {
                self.mac.copy_from_slice(v.get(..6).unwrap_or(&[0; 6]))
            }
            _ => return Err(NetvscError::Refused("the MAC address query")),
        }
        // Offload capabilities (mandatory for Linux), then parameters (nothing enabled).
        let (rev, size) = if self.ctl.version.0 >= NvspVersion::V5.0 {
            (3, 156)
        } else if self.ctl.version.0 >= NvspVersion::V4.0 {
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
        self.layout.offloads = HostOffloads::from_capabilities(&caps);
        let mut params = [0u8; 32];
        let n = self.layout.offloads.params().emit(&mut params).unwrap_or(0);
        if self.set(
            Oid::OID_TCP_OFFLOAD_PARAMETERS,
            params.get(..n).unwrap_or(&[]),
        )? != RndisStatus::SUCCESS
        {
            return Err(NetvscError::Refused("the offload parameters"));
        }
        if let (RndisStatus::SUCCESS, v) = self.query(Oid::OID_GEN_MEDIA_CONNECT_STATUS, &[])? {
            self.ctl.link_up = v
                .first_chunk::<4>()
                .is_some_and(|b| u32::from_le_bytes(*b) == 0);
        }
        if self.ctl.version.0 >= NvspVersion::V5.0 {
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
        if msg.len() > self.layout.section_size as usize {
            return Err(NetvscError::FrameTooLarge(msg.len()));
        }
        self.on_queue(0, |dq, layout, events| {
            let section = dq.take_section(layout, events)?;
            let gpa = layout.send + u64::from(section) * u64::from(layout.section_size);
            if layout.platform.write(gpa, msg).is_err() {
                dq.free_sections.push(section);
                return Err(NetvscError::Refused("send buffer write"));
            }
            dq.submit(section, msg.len() as u32, channel_type)
        })
    }

    /// The transmit offloads the host offered and the driver enabled.
    pub fn offloads(&self) -> HostOffloads {
        self.layout.offloads
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
        let q = self.tx_queue(frame);
        self.on_queue(q, |dq, layout, events| {
            dq.enqueue(layout, frame, offload, events)?;
            dq.flush(layout)
        })
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
        let q = self.tx_queue(frame);
        let open = self.on_queue(q, |dq, layout, events| {
            dq.enqueue(layout, frame, offload, events)?;
            Ok(dq.has_open())
        })?;
        self.any_open |= open;
        Ok(())
    }

    /// Sends every deferred frame now.
    #[inline]
    pub fn flush(&mut self) -> Result<(), NetvscError> {
        if core::mem::take(&mut self.any_open) {
            let layout = &self.layout;
            for dq in self.queues.iter_mut().flatten() {
                if let Err(e) = dq.flush(layout) {
                    self.any_open = true;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Receives one frame into `buf` (a frame longer than `buf` is cut), waiting up
    /// to `timeout`; the bytes written, or `Ok(None)` on timeout.
    pub fn recv(
        &mut self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<Option<usize>, NetvscError> {
        self.recv_inner(timeout, false, |frame, _| copy_cut(frame, buf))
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

    /// The next queue (round robin) holding a received frame.
    fn ready_queue(&self) -> Option<usize> {
        let n = self.queues.len();
        let start = if self.next_rx < n { self.next_rx } else { 0 };
        (start..n).chain(0..start).find(|&q| {
            self.queues
                .get(q)
                .and_then(Option::as_ref)
                .is_some_and(|d| d.rx.len > 0)
        })
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
        let mut ready = self.ready_queue();
        if ready.is_none() {
            let deadline = self.layout.platform.now() + timeout;
            while ready.is_none() {
                let now = self.layout.platform.now();
                if now >= deadline {
                    // Look once even with a zero timeout.
                    self.poll_once()?;
                    ready = self.ready_queue();
                    break;
                }
                self.poll(deadline - now)?;
                ready = self.ready_queue();
            }
        }
        let Some(q) = ready else {
            return Ok(None);
        };
        self.next_rx = q + 1;
        self.on_queue(q, |dq, layout, _| Ok(dq.pop(layout, want_info, f)))
    }

    /// Processes what the host sent, waiting up to `timeout` for something to arrive.
    pub fn poll(&mut self, timeout: Duration) -> Result<usize, NetvscError> {
        self.flush()?;
        let n = self.poll_once()?;
        if n > 0 {
            return Ok(n);
        }
        // prepare_sleep says whether something arrived in between.
        let mut arrived = false;
        for dq in self.queues.iter_mut().flatten() {
            arrived |= dq.receiver.prepare_sleep()?;
        }
        if !arrived {
            self.primary.wait_bell(&self.waker, timeout);
        }
        self.poll_once()
    }

    fn poll_once(&mut self) -> Result<usize, NetvscError> {
        let mut total = 0;
        for q in 0..self.queues.len() {
            if self.queues.get(q).is_some_and(Option::is_some) {
                total += self.on_queue(q, |dq, layout, events| dq.poll_once(layout, events))?;
            }
        }
        Ok(total)
    }

    /// Fuzzing hook: writes `receive_buffer` at the start of the receive buffer (as a
    /// hostile host may) and handles `packet` as if it came from the ring. Then checks
    /// the driver's invariants and panics if one is broken. Not for production use.
    #[doc(hidden)]
    pub fn fuzz_host_input(&mut self, receive_buffer: &[u8], packet: &[u8]) {
        let (base, size) = self.layout.recv;
        let n = receive_buffer.len().min(size as usize);
        if let Some(b) = receive_buffer.get(..n) {
            let _ = self.layout.platform.write(base, b);
        }
        let _ = self.on_queue(0, |dq, layout, events| {
            dq.handle(layout, packet, events);
            dq.check_invariants();
            Ok(())
        });
        assert!(self.ctl.responses.len() <= MAX_PENDING_RESPONSES);
        assert!(self.ctl.control.len() <= MAX_PENDING_CONTROL);
    }

    /// Closes the NIC: revokes the buffers, closes the channels (those of taken queues
    /// too), frees guest memory.
    pub fn close(mut self, bus: &GuestBus) -> Result<(), NetvscError> {
        let _ = self.flush();
        let _ = self.nvsp_request(
            &NvspMessage::RevokeReceiveBuffer {
                id: RECEIVE_BUFFER_ID,
            },
            false,
        );
        let _ = self.nvsp_request(&NvspMessage::RevokeSendBuffer { id: 0 }, false);
        for relid in core::mem::take(&mut self.sub_relids) {
            bus.close(relid)?;
        }
        bus.close(self.relid)?;
        for (gpa, len, gpadl) in [self.recv_buffer, self.send_buffer] {
            if len > 0 {
                bus.teardown_gpadl(gpadl)?;
                bus.free_pages(gpa / 4096, len / 4096);
            }
        }
        if self.large_slots > 0 {
            bus.free_pages(
                self.layout.large / 4096,
                LARGE_SLOT_BYTES / 4096 * u64::from(self.large_slots),
            );
        }
        Ok(())
    }
}
