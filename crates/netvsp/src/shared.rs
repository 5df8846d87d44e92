//! The state all of a NIC's queues share ([`NicShared`]): the backend, the guest's
//! memory, the receive buffer's slot table ([`RecvBuffer`]) and the data-path settings
//! the control path publishes; and the packets owed to the guest ([`Out`]). Below the
//! queues ([`crate::queue`]), the receive path ([`crate::rxpath`]) and the device.

use crate::config::FRAMES_PER_TRANSFER;
use crate::offload::OffloadConfig;
use crate::stats::Counters;
use crate::sync::lock;
use hv_partition::GuestMemory;
use hv_partition::gpadl::GpadlBuffer;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use vmbus_proto::nvsp::{NETVSC_INVALID_INDEX, NvspChannelType, NvspMessage};
use vmbus_ring::OutgoingPacket;

/// No next slot (end of a transfer's chain).
pub(crate) const NO_SLOT: u32 = u32::MAX;

/// A value on cache lines of its own (128 bytes: two lines, for the adjacent-line
/// prefetcher), so a lock one queue's thread takes does not slow down what the others
/// read beside it.
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Data-path settings the primary channel's control path changes and every queue
/// reads: the send and receive buffers, the offloads the guest enabled, and whether
/// (and up to what size) it takes frames.
#[derive(Clone, Default)]
pub(crate) struct DataConfig {
    pub(crate) send: Option<GpadlBuffer>,
    /// The receive buffer, for the queues that write received frames.
    pub(crate) recv: Option<GpadlBuffer>,
    pub(crate) offload: OffloadConfig,
    /// Whether the guest takes frames (RNDIS initialized, packet filter set).
    pub(crate) receiving: bool,
    /// Largest frame at the guest's MTU.
    pub(crate) guest_frame: usize,
}

/// What all of a NIC's queues share.
pub(crate) struct NicShared {
    pub(crate) relid: u32,
    pub(crate) memory: GuestMemory,
    pub(crate) stats: Arc<Counters>,
    /// Each lock taken on the data path sits apart from the others and from what
    /// every queue reads per message (`data_generation`).
    pub(crate) endpoint: Padded<Mutex<Box<dyn crate::backend::NetEndpoint>>>,
    pub(crate) recv: Padded<Mutex<Option<RecvBuffer>>>,
    /// Frame buffers the queue threads wrote into the guest and gave back.
    pub(crate) frame_pool: Padded<Mutex<Vec<Vec<u8>>>>,
    /// Largest frame the guest may send (the NIC's MTU).
    pub(crate) max_frame: usize,
    /// The only source MAC the guest may send from (`None`: any).
    pub(crate) source_mac: Option<[u8; 6]>,
    data: Mutex<DataConfig>,
    /// Bumped by every [`NicShared::publish`]: queues reload their copy when it moves.
    pub(crate) data_generation: AtomicU64,
}

impl NicShared {
    pub(crate) fn new(
        relid: u32,
        memory: GuestMemory,
        stats: Arc<Counters>,
        endpoint: Box<dyn crate::backend::NetEndpoint>,
        max_frame: usize,
    ) -> Self {
        Self {
            relid,
            memory,
            stats,
            endpoint: Padded(Mutex::new(endpoint)),
            recv: Padded(Mutex::new(None)),
            frame_pool: Padded(Mutex::new(Vec::new())),
            max_frame,
            source_mac: None,
            data: Mutex::new(DataConfig::default()),
            data_generation: AtomicU64::new(0),
        }
    }

    /// Changes the data-path settings; every queue sees the change before it handles
    /// its next guest packet.
    pub(crate) fn publish(&self, change: impl FnOnce(&mut DataConfig)) {
        let mut d = lock(&self.data);
        change(&mut d);
        self.data_generation.fetch_add(1, Ordering::Release);
    }

    /// The current settings.
    pub(crate) fn data(&self) -> DataConfig {
        lock(&self.data).clone()
    }

    /// Frees the receive-buffer slots of the guest's completion `tid`; an unknown one
    /// is counted.
    pub(crate) fn complete_transfer(&self, tid: u64) -> bool {
        let freed = lock(&self.recv)
            .as_mut()
            .map_or(0, |r| r.free_transfer(tid));
        if freed == 0 {
            self.stats
                .unknown_completions
                .fetch_add(1, Ordering::Relaxed);
        }
        freed > 0
    }

    pub(crate) fn bad(&self, what: &str) {
        self.stats.bad_packets.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            relid = self.relid,
            what,
            "netvsp: bad packet from the guest"
        );
    }
}

/// A packet this side owes the guest, held while the outgoing ring is full.
// Kept inline in a preallocated queue: boxing the ranges would allocate per packet.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Out {
    /// A completion carrying an NVSP message (or nothing).
    Completion { tid: u64, msg: [u8; 40], len: u8 },
    /// An in-band NVSP message the host sends on its own (send indirection table).
    Inband { msg: [u8; 128], len: u8 },
    /// Receive-buffer sub-allocations holding RNDIS messages, one transfer-page packet.
    Transfer {
        tid: u64,
        /// The receive buffer's id (transfer page set).
        id: u16,
        ranges: [(u32, u32); FRAMES_PER_TRANSFER],
        n: u8,
        control: bool,
    },
}

impl Out {
    /// A completion for `tid` carrying `reply`.
    pub(crate) fn completion(tid: u64, reply: Option<&NvspMessage>) -> Self {
        let mut msg = [0u8; 40];
        let len = match reply {
            Some(r) => r.emit(&mut msg).unwrap_or(0) as u8,
            None => 0,
        };
        Out::Completion { tid, msg, len }
    }

    /// Hands the packet to `write`; returns what `write` returned (whether it went
    /// into the ring).
    pub(crate) fn write(&self, write: impl FnOnce(&OutgoingPacket<'_>, &[u8]) -> bool) -> bool {
        use vmbus_proto::packet::{
            FLAG_COMPLETION_REQUESTED, PacketType, TransferPageHeader, TransferPageRange,
        };
        use zerocopy::IntoBytes;
        match self {
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
                id,
                ranges,
                n,
                control,
            } => {
                let count = usize::from(*n).min(FRAMES_PER_TRANSFER);
                let mut header = [0u8; 8 + 8 * FRAMES_PER_TRANSFER];
                let h = TransferPageHeader {
                    transfer_pageset_id: *id,
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
        }
    }
}

/// The guest's receive buffer's slot table: its sub-allocations and which transfer
/// each is in. Shared by every thread that writes received frames ([`RxWriter`]) or
/// handles the guest's completions.
pub(crate) struct RecvBuffer {
    pub(crate) id: u16,
    pub(crate) free: Vec<u32>,
    /// Per sub-allocation: the generation of the transfer in flight, if any.
    pub(crate) in_flight: Vec<Option<u32>>,
    /// Per sub-allocation: the next one in the same transfer-page packet.
    pub(crate) batch_next: Vec<u32>,
    pub(crate) generation: u32,
}

impl RecvBuffer {
    /// Frees the sub-allocations of the transfer `tid` (its first slot and generation);
    /// returns how many. A guest may complete a transfer twice, complete one it never
    /// got, or invent ids: those free nothing.
    pub(crate) fn free_transfer(&mut self, tid: u64) -> usize {
        let mut slot = tid as u32;
        let generation = (tid >> 32) as u32;
        // Linked from the first slot, all with the same generation; bounded by the
        // batch size.
        let mut freed = 0;
        for _ in 0..FRAMES_PER_TRANSFER {
            match self.in_flight.get_mut(slot as usize) {
                Some(g) if *g == Some(generation) => {
                    *g = None;
                    self.free.push(slot);
                    freed += 1;
                }
                _ => break,
            }
            let next = self
                .batch_next
                .get(slot as usize)
                .copied()
                .unwrap_or(NO_SLOT);
            if let Some(l) = self.batch_next.get_mut(slot as usize) {
                *l = NO_SLOT;
            }
            if next == NO_SLOT {
                break;
            }
            slot = next;
        }
        freed
    }
}
