//! What a NIC counts ([`NicStats`], read through [`NicCounters`]) and the log of the
//! guest's control-path requests ([`NicEvent`]): how a user sees what a guest did,
//! including what it did wrong.

use crate::config::MAX_QUEUES;
use crate::sync::lock;
use std::sync::Arc;
use vmbus_proto::nvsp::NvspMessageType;

vmbus_ring::counters! {
    /// NIC counters as [`NicCounters::snapshot`] reads them. Every queue's worker
    /// updates them, so the data path counts per guest message or per transfer-page
    /// packet, not per frame: a sent frame once its message is done (before its
    /// completion goes to the guest), a received frame when its transfer-page packet is
    /// made (before the guest sees it).
    pub struct NicStats;
    /// The atomics behind [`NicStats`].
    pub(crate) struct Atomics;
    {
    /// Frames the guest sent that went to the backend.
    tx_frames: one,
    /// Guest frames the backend dropped (or link down).
    tx_dropped: one,
    /// Guest frames dropped because their source MAC was not the NIC's
    /// ([`NetvspConfig::allow_mac_spoofing`]).
    tx_spoofed: one,
    /// Frames delivered to the guest.
    rx_frames: one,
    /// Frames delivered with a receive checksum info saying their checksums were
    /// verified (receive checksum offload).
    rx_checksum_valid: one,
    /// Frames dropped because the guest's receive buffer had no free sub-allocation.
    rx_no_buffer: one,
    /// Frames dropped before the guest enabled reception (no buffer, filter 0).
    rx_not_ready: one,
    /// Malformed NVSP, RNDIS or ring packets from the guest.
    bad_packets: one,
    /// Completions for transaction ids we never sent.
    unknown_completions: one,
    /// Frames longer than the MTU allows, dropped: from the backend (above the guest's
    /// MTU) or from the guest (above the NIC's).
    oversize_frames: one,
    /// RNDIS control requests answered.
    control_requests: one,
    /// Control answers and link indications that found the guest's receive buffer
    /// full and waited for a free sub-allocation (they go out in order once one frees).
    control_deferred: one,
    /// Control answers dropped because more than [`CONTROL_PENDING_CAP`] were waiting
    /// (a guest that floods requests and never frees its receive buffer).
    control_dropped: one,
    /// Link-status indications sent.
    link_indications: one,
    /// Guest packets that asked for offload work (checksum, LSO, VLAN tag).
    tx_offloaded: one,
    /// Guest packets that asked for large send offload (LSO), done natively or in
    /// software.
    tx_lso_packets: one,
    /// Frames produced by segmenting LSO packets in software.
    tx_lso_segments: one,
    /// Offloaded packets handed to a backend that finishes them itself (TAP with
    /// virtio-net headers) instead of being done in software.
    tx_native_offloads: one,
    /// Guest packets dropped because their offload request was not negotiated or did
    /// not match the frame (see [`crate::offload::OffloadError`]).
    tx_offload_rejected: one,
    /// Frames delivered to the guest, per queue.
    rx_queue_frames: [MAX_QUEUES as usize],
    /// Frames a subchannel's thread pulled from its own queue of a multi-queue
    /// backend (steered there by the guest's RSS; see [`NetEndpoint::rx_queues`]).
    rx_steered: one,
    /// Guest packets a subchannel's thread sent through its own transmit queue of the
    /// backend ([`NetEndpoint::take_tx_queue`]) rather than the shared endpoint.
    tx_own_queue: one,
    /// Guest data packets (SEND_RNDIS_PKT with channel type data) received, per queue.
    tx_queue_packets: [MAX_QUEUES as usize],
    /// Subchannels granted to the guest.
    subchannels: one,
    /// Negotiated NVSP version (0 until negotiated).
    nvsp_version: one,
    /// Pages of the guest's receive buffer (0 until it is set up).
    recv_buffer_pages: one,
    /// Of those, pages at or above 4 GiB (guest-physical).
    recv_buffer_pages_above_4g: one,
    }
}

impl NicStats {
    /// The counters of frames or messages dropped, refused or held back that are not
    /// zero, by name: what a report should show.
    pub fn drops(&self) -> Vec<(&'static str, u64)> {
        [
            ("tx_dropped", self.tx_dropped),
            ("tx_spoofed", self.tx_spoofed),
            ("tx_offload_rejected", self.tx_offload_rejected),
            ("rx_no_buffer", self.rx_no_buffer),
            ("rx_not_ready", self.rx_not_ready),
            ("oversize_frames", self.oversize_frames),
            ("bad_packets", self.bad_packets),
            ("unknown_completions", self.unknown_completions),
            ("control_deferred", self.control_deferred),
            ("control_dropped", self.control_dropped),
        ]
        .into_iter()
        .filter(|(_, v)| *v != 0)
        .collect()
    }
}

/// The atomics and the control-path event log.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) c: Atomics,
    events: std::sync::Mutex<EventLog>,
}

/// The last [`EVENT_LOG_CAP`] control-path events and how many there were in all.
#[derive(Debug, Default)]
struct EventLog {
    ring: std::collections::VecDeque<NicEvent>,
    total: u64,
}

impl std::ops::Deref for Counters {
    type Target = Atomics;
    fn deref(&self) -> &Atomics {
        &self.c
    }
}

/// A NIC's counters, readable while it runs (cheap to clone; [`Netvsp::stats`](crate::Netvsp::stats)).
#[derive(Clone, Debug, Default)]
pub struct NicCounters(pub(crate) Arc<Counters>);

impl NicCounters {
    /// A snapshot of every counter.
    pub fn snapshot(&self) -> NicStats {
        self.0.c.snapshot()
    }

    /// The OID requests among the events still held ([`NicCounters::events_since`]),
    /// oldest first.
    pub fn oids(&self) -> Vec<OidRequestRecord> {
        self.events_since(0)
            .0
            .into_iter()
            .filter_map(|e| match e {
                NicEvent::Oid(o) => Some(o),
                _ => None,
            })
            .collect()
    }

    /// The control-path events numbered `from` and later that are still held (the log
    /// keeps the last [`EVENT_LOG_CAP`]), oldest first, and the number the next event
    /// will get: pass it back to see only what happened since (e.g. what one step of
    /// a test made the guest do).
    pub fn events_since(&self, from: u64) -> (Vec<NicEvent>, u64) {
        let log = lock(&self.0.events);
        let first = log.total - log.ring.len() as u64;
        let skip = from.saturating_sub(first).min(log.ring.len() as u64) as usize;
        (log.ring.iter().skip(skip).copied().collect(), log.total)
    }
}

/// Control-path events kept for [`NicCounters::events_since`].
pub const EVENT_LOG_CAP: usize = 256;

/// What the guest did on a NIC's control path: every NVSP message but data packets,
/// and every RNDIS OID request. A guest can cause any number of these; the log keeps
/// the last [`EVENT_LOG_CAP`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NicEvent {
    /// An NVSP message from the guest (not SEND_RNDIS_PKT: those are counted).
    Nvsp(NvspMessageType),
    /// An RNDIS query or set.
    Oid(OidRequestRecord),
    /// The channel (primary or a subchannel) was opened or closed by the guest.
    Channel {
        /// Queue index (0 is the primary channel).
        queue: u16,
        /// Opened (true) or closed.
        open: bool,
    },
}
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

impl Counters {
    pub(crate) fn record_oid(&self, set: bool, oid: u32, status: u32) {
        self.record(NicEvent::Oid(OidRequestRecord { set, oid, status }));
    }

    pub(crate) fn record(&self, event: NicEvent) {
        let mut log = lock(&self.events);
        if log.ring.len() == EVENT_LOG_CAP {
            log.ring.pop_front();
        }
        log.ring.push_back(event);
        log.total += 1;
    }
}
