//! One queue's guest-to-host path ([`QueueCore`]) over the state all of a NIC's
//! queues share ([`NicShared`]). Each subchannel runs a [`QueueWorker`] thread
//! of its own, so guest transmit (gathering, software offloads, the backend's
//! transmit), receive completions and the copies of received frames into the guest
//! scale with the queues; the primary channel's worker keeps the control path and
//! pulls and classifies received frames, handing each queue its own.

use crate::backend::{NetRxQueue, NetTxQueue};
use crate::config::SEND_SECTION_SIZE;
use crate::offload::{OffloadConfig, TxEngine, parse_request};
use crate::rxpath::{Batch, RxFrame, RxWriter};
use crate::shared::{DataConfig, NicShared, Out};
use crate::sync::lock;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use vmbus::{ChannelError, Receiver, Sender};
use vmbus_proto::nvsp::{NETVSC_INVALID_INDEX, NvspChannelType, NvspMessage, NvspStatus};
use vmbus_proto::packet::{Packet, PacketKind, PacketLimits};
use vmbus_proto::rndis::{RndisMessage, RndisMessages};
use vmbus_ring::{Doorbell, Wake};

/// Largest RNDIS message accepted from the guest.
pub(crate) const MAX_RNDIS: usize = 64 * 1024;

/// The guest-to-host data path of one queue: gathers the RNDIS bytes of a
/// SEND_RNDIS_PKT (send-buffer section, page buffers, or both), transmits the packets
/// in them with the offload work their per-packet infos ask for, and frees receive
/// slots on completions. The guest may point sections and pages anywhere, claim any
/// size and put any bytes there: all of it is checked and refused with a status.
pub(crate) struct QueueCore {
    q: u16,
    shared: Arc<NicShared>,
    data: DataConfig,
    data_generation: u64,
    tx: TxEngine,
    rndis_buf: Vec<u8>,
    /// Set when a completion freed receive slots (the worker then wakes the primary).
    pub(crate) freed: bool,
    /// This queue's own transmit queue of the backend, if it gave one.
    pub(crate) own_tx: Option<Box<dyn NetTxQueue>>,
}

impl QueueCore {
    pub(crate) fn new(q: u16, shared: Arc<NicShared>) -> Self {
        let max_frame = shared.max_frame;
        let mut core = Self {
            q,
            shared,
            data: DataConfig::default(),
            data_generation: u64::MAX,
            tx: TxEngine::with_max_frame(max_frame),
            // Filled once: messages are read into a prefix of it, never zero-filled again.
            rndis_buf: vec![0u8; MAX_RNDIS],
            freed: false,
            own_tx: None,
        };
        let _ = core.refresh();
        core
    }

    /// Reloads the data-path settings if the control path changed them; whether it
    /// did.
    pub(crate) fn refresh(&mut self) -> bool {
        refresh(&self.shared, &mut self.data, &mut self.data_generation)
    }

    /// Handles one ring packet from the guest on a subchannel: receive completions
    /// and data packets. Anything else (NVSP setup, RNDIS control, which belong on the
    /// primary channel) is counted as bad and refused. Returns the completion owed.
    pub(crate) fn handle_subchannel_packet(&mut self, bytes: &[u8]) -> Option<Out> {
        let limits = PacketLimits {
            max_transfer_ranges: 0,
            max_gpa_ranges: 32,
        };
        let p = match Packet::parse(bytes, &limits) {
            Ok(p) => p,
            Err(_) => {
                self.shared.bad("ring packet");
                return None;
            }
        };
        let tid = p.descriptor.transaction_id;
        match p.kind {
            PacketKind::Completion => {
                self.freed |= self.shared.complete_transfer(tid);
                None
            }
            PacketKind::InBand | PacketKind::GpaDirect { .. } => {
                let reply = match NvspMessage::parse(p.payload) {
                    Ok(NvspMessage::SendRndisPacket {
                        channel_type,
                        send_buf_section_index,
                        send_buf_section_size,
                    }) => {
                        let status = self.rndis_packet(
                            channel_type,
                            send_buf_section_index,
                            send_buf_section_size,
                            &p,
                            &mut |_| None,
                        );
                        Some(NvspMessage::SendRndisPacketComplete { status })
                    }
                    Ok(_) => {
                        self.shared.bad("NVSP message on a subchannel");
                        None
                    }
                    Err(_) => {
                        self.shared.bad("NVSP message");
                        None
                    }
                };
                (p.completion_requested() || reply.is_some())
                    .then(|| Out::completion(tid, reply.as_ref()))
            }
            _ => {
                self.shared.bad("unexpected packet type");
                None
            }
        }
    }

    /// Handles a SEND_RNDIS_PKT: data packets go to the backend, other RNDIS messages
    /// to `control` (which returns `None` to refuse them: on a subchannel; the primary
    /// answers them). Returns the status for the completion.
    pub(crate) fn rndis_packet(
        &mut self,
        channel_type: NvspChannelType,
        section: u32,
        size: u32,
        packet: &Packet<'_>,
        control: &mut dyn FnMut(&RndisMessage<'_>) -> Option<()>,
    ) -> NvspStatus {
        let _ = self.refresh();
        let stats = &self.shared.stats;
        if channel_type == NvspChannelType::RMC_DATA
            && let Some(c) = stats.tx_queue_packets.get(usize::from(self.q))
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
        // Frames sent, counted once per message: the counters are shared by every
        // queue's thread.
        let (mut sent, mut on_own) = (0u64, 0u64);
        let mut buf = std::mem::take(&mut self.rndis_buf);
        let len = self.gather(section, size, packet, &mut buf);
        let mut ok = len.is_some_and(|l| l > 0);
        let mut refused = false;
        if let Some(len) = len {
            let shared = &self.shared;
            // The queue's own transmit queue if the backend gave it one; else the
            // backend, locked once per message for its data packets and let go before
            // a control message is answered.
            let mut endpoint: Option<MutexGuard<'_, Box<dyn crate::backend::NetEndpoint>>> = None;
            for m in RndisMessages::new(buf.get(..len).unwrap_or(&[])) {
                match m {
                    Ok(RndisMessage::Packet(p)) => {
                        let ep: &mut dyn NetTxQueue = match self.own_tx.as_deref_mut() {
                            Some(own) => {
                                on_own += 1;
                                own
                            }
                            None => &mut **endpoint.get_or_insert_with(|| lock(&shared.endpoint)),
                        };
                        // A refused offload is counted in tx_offload_rejected and
                        // reported in the completion status, not as malformed.
                        if p.ppi.is_empty() {
                            sent += transmit_plain(shared, ep, p.data);
                        } else {
                            match transmit(
                                shared,
                                &self.data.offload,
                                &mut self.tx,
                                ep,
                                p.data,
                                p.ppis(),
                            ) {
                                Some(n) => sent += n,
                                None => refused = true,
                            }
                        }
                    }
                    Ok(m) => {
                        drop(endpoint.take());
                        if control(&m).is_none() {
                            ok = false;
                            break;
                        }
                        // A SET may have changed the offloads the next packets use.
                        let _ = refresh(shared, &mut self.data, &mut self.data_generation);
                    }
                    Err(_) => {
                        ok = false;
                        break;
                    }
                }
            }
        }
        if sent > 0 {
            stats.tx_frames.fetch_add(sent, Ordering::Relaxed);
        }
        if on_own > 0 {
            stats.tx_own_queue.fetch_add(on_own, Ordering::Relaxed);
        }
        if !ok {
            self.shared.bad("RNDIS");
        }
        self.rndis_buf = buf;
        if ok && !refused {
            NvspStatus::SUCCESS
        } else {
            NvspStatus::INVALID_RNDIS_PKT
        }
    }

    /// Reads the section part (several packets, Linux's batching), then any GPA ranges
    /// (Linux sends the last packet's RNDIS header in the section and its data as page
    /// buffers when only the header still fits: "cp_partial") into `buf`; returns the
    /// length, or `None` if any part lies outside what the guest may name.
    fn gather(
        &self,
        section: u32,
        size: u32,
        packet: &Packet<'_>,
        buf: &mut [u8],
    ) -> Option<usize> {
        let mut len = 0usize;
        if section != NETVSC_INVALID_INDEX {
            let (Some(send), Some(dst)) = (&self.data.send, buf.get_mut(..size as usize)) else {
                return None;
            };
            if size > SEND_SECTION_SIZE {
                return None;
            }
            send.read_at(section as usize * SEND_SECTION_SIZE as usize, dst)
                .ok()?;
            len = dst.len();
        }
        for r in packet.gpa_ranges() {
            let r = r.ok()?;
            let mut remaining = r.byte_count as usize;
            let mut offset = r.byte_offset as u64;
            for pfn in r.pfns() {
                let n = 4096usize.saturating_sub(offset as usize).min(remaining);
                let start = len;
                if start + n > MAX_RNDIS {
                    return None;
                }
                len = start + n;
                let gpa = pfn.checked_mul(4096)?.checked_add(offset)?;
                self.shared
                    .memory
                    .read(gpa, buf.get_mut(start..len)?)
                    .ok()?;
                remaining -= n;
                offset = 0;
            }
        }
        Some(len)
    }
}

/// Reloads `data` from `shared` if the control path published a change since
/// `generation` (one atomic load when it did not).
#[inline]
fn refresh(shared: &NicShared, data: &mut DataConfig, generation: &mut u64) -> bool {
    let g = shared.data_generation.load(Ordering::Acquire);
    if g == *generation {
        return false;
    }
    *data = shared.data();
    *generation = g;
    true
}

/// Whether `frame` claims a source MAC the guest may not use (counted and dropped by
/// the caller).
#[inline]
fn spoofed(shared: &NicShared, frame: &[u8]) -> bool {
    match shared.source_mac {
        Some(mac) if frame.get(6..12) != Some(&mac[..]) => {
            shared.stats.tx_spoofed.fetch_add(1, Ordering::Relaxed);
            shared.stats.tx_dropped.fetch_add(1, Ordering::Relaxed);
            true
        }
        _ => false,
    }
}

/// Sends a frame that needs no offload work; returns the frames sent (0 or 1, for the
/// caller to count in `tx_frames`; a drop is counted here).
fn transmit_plain(shared: &NicShared, endpoint: &mut dyn NetTxQueue, frame: &[u8]) -> u64 {
    if spoofed(shared, frame) {
        return 0;
    }
    let stats = &shared.stats;
    if frame.len() > shared.max_frame {
        stats.oversize_frames.fetch_add(1, Ordering::Relaxed);
        stats.tx_dropped.fetch_add(1, Ordering::Relaxed);
        return 0;
    }
    if endpoint.transmit_meta(frame, crate::backend::FrameMeta::default()) {
        1
    } else {
        stats.tx_dropped.fetch_add(1, Ordering::Relaxed);
        0
    }
}

/// Sends one guest packet to the backend, doing the offload work its per-packet infos
/// ask for; returns the frames sent (segments of an LSO packet; for the caller to
/// count in `tx_frames`), or `None` if the request was refused (the packet is dropped
/// and counted).
fn transmit<'a>(
    shared: &NicShared,
    offload: &OffloadConfig,
    tx: &mut TxEngine,
    endpoint: &mut dyn NetTxQueue,
    frame: &[u8],
    ppis: impl Iterator<Item = Result<vmbus_proto::rndis::Ppi<'a>, vmbus_proto::Error>>,
) -> Option<u64> {
    if spoofed(shared, frame) {
        return Some(0);
    }
    let stats = &shared.stats;
    let refuse = |e: &dyn std::fmt::Display| {
        stats.tx_offload_rejected.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(relid = shared.relid, "netvsp: offload refused: {e}");
        None
    };
    let req = match parse_request(ppis, offload) {
        Ok(r) if r.is_empty() => return Some(transmit_plain(shared, endpoint, frame)),
        Ok(r) => r,
        Err(e) => return refuse(&e),
    };
    stats.tx_offloaded.fetch_add(1, Ordering::Relaxed);
    if req.lso.is_some() {
        stats.tx_lso_packets.fetch_add(1, Ordering::Relaxed);
    }
    let support = endpoint.tx_offload_support();
    if support != crate::backend::TxOffloadSupport::default() {
        match tx.prepare_native(frame, &req, support) {
            Ok(Some((f, native))) => {
                if endpoint.transmit_offload(f, &native) {
                    stats.tx_native_offloads.fetch_add(1, Ordering::Relaxed);
                    return Some(1);
                }
                stats.tx_dropped.fetch_add(1, Ordering::Relaxed);
                return Some(0);
            }
            Ok(None) => {}
            Err(e) => return refuse(&e),
        }
    }
    // The checksums computed here are known good: a receiving NIC may say so.
    let meta = req.meta();
    match tx.process(frame, &req, &mut |f| endpoint.transmit_meta(f, meta)) {
        Ok(out) => {
            if out.dropped > 0 {
                stats
                    .tx_dropped
                    .fetch_add(u64::from(out.dropped), Ordering::Relaxed);
            }
            if req.lso.is_some() {
                stats
                    .tx_lso_segments
                    .fetch_add(u64::from(out.sent + out.dropped), Ordering::Relaxed);
            }
            Some(u64::from(out.sent))
        }
        Err(e) => refuse(&e),
    }
}

/// How a worker is woken, and whether it sleeps.
#[derive(Clone)]
pub(crate) struct Wakeup {
    /// What the guest's signals, the backend and the other queues ring.
    pub(crate) wake: Arc<dyn Wake>,
    /// The doorbell the worker's own thread sleeps on (the same object as `wake`);
    /// `None` when the VMM polls the worker (it waits on `wake` itself).
    pub(crate) bell: Option<Arc<Doorbell>>,
}

impl Wakeup {
    /// For a worker on a thread of its own.
    pub(crate) fn thread() -> Self {
        let bell = Arc::new(Doorbell::new());
        Self {
            wake: bell.clone(),
            bell: Some(bell),
        }
    }

    /// For a worker the VMM polls when `wake` fires.
    pub(crate) fn polled(wake: Arc<dyn Wake>) -> Self {
        Self { wake, bell: None }
    }

    /// Sleeps until woken or `timeout` passes (a polled worker returns at once).
    pub(crate) fn sleep(&self, timeout: Duration) {
        if let Some(b) = &self.bell {
            b.wait(timeout);
        }
    }
}

/// How a worker's round ended.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Round {
    /// It did something: run another round.
    Again,
    /// Nothing to do: sleep until woken (or [`IDLE_GUARD`] passes).
    Idle,
    /// The channel closed (or the NIC stops): the worker is done.
    Closed,
}

/// The longest a worker sleeps without a wake-up: a guard against a peer that fails
/// to signal, nothing more.
pub(crate) const IDLE_GUARD: Duration = Duration::from_millis(20);

/// Ends a worker's round: another round after `progress`; otherwise idle until the
/// guest signals. With a `backlog` (the guest leaves what it is owed unread) the ring
/// is not read, so the worker idles until the guest makes room. Before idling, the
/// ring's interrupt mask is cleared and the ring re-checked, so the guest's next
/// packet signals.
///
/// A worker does not spin before it sleeps: with 64 empty rounds first, seven
/// alternating runs of the nic bench probes on 2 cores gave 2 queues 3.98 -> 4.90
/// (guest to host) and 3.88 -> 4.12 (host to guest) Mframes/s on average without
/// them, 1 queue 3.57 -> 4.35 and 3.33 -> 3.47; spinning threads took the CPU the
/// other side's threads needed.
pub(crate) fn end_of_round(progress: bool, backlog: bool, receiver: &mut Receiver) -> Round {
    if progress {
        return Round::Again;
    }
    if backlog {
        return if receiver.shared().is_closed() {
            Round::Closed
        } else {
            Round::Idle
        };
    }
    match receiver.prepare_sleep() {
        Ok(true) => Round::Again,
        Ok(false) => Round::Idle,
        Err(_) => Round::Closed,
    }
}

/// Packets a queue may owe the guest before its worker stops reading the guest's
/// ring (and the primary stops pulling frames for it).
pub(crate) const PENDING_LIMIT: usize = 512;

/// A subchannel's outgoing side, written under one lock by its worker (completions and
/// received frames) and by the primary's worker (anything the primary queued for the
/// channel itself).
pub(crate) struct QueueOut {
    pub(crate) sender: Sender,
    /// Packets that did not fit the ring yet, in order.
    pub(crate) pending: VecDeque<Out>,
}

impl QueueOut {
    /// Writes what is pending, then `more`, in order, keeping what does not fit, and
    /// publishes; returns whether anything was written.
    pub(crate) fn write(&mut self, more: impl IntoIterator<Item = Out>) -> bool {
        self.pending.extend(more);
        let mut wrote = false;
        // A full ring arms the space signal: the guest's signal when it makes room
        // wakes the queue's thread, which writes the rest.
        while let Some(o) = self.pending.front() {
            if !o.write(|p, payload| self.sender.try_write_or_arm(p, &[payload]).unwrap_or(false)) {
                break;
            }
            self.pending.pop_front();
            wrote = true;
        }
        self.sender.flush();
        wrote
    }
}

/// How the primary channel's worker and a subchannel's [`QueueWorker`] talk.
pub(crate) struct QueueLink {
    pub(crate) out: Mutex<QueueOut>,
    /// The channel's wake-up: rung by the guest's signals, when the primary left
    /// packets pending or handed over frames, and when the NIC closes.
    pub(crate) waker: Wakeup,
    /// Set by the primary when the NIC closes.
    pub(crate) stop: AtomicBool,
    /// Set by the queue's worker when its channel closed or failed.
    pub(crate) exited: AtomicBool,
    /// Received frames the primary pulled for this queue, for its thread to write.
    pub(crate) rx: Mutex<VecDeque<RxFrame>>,
    /// How many frames `rx` holds (read without its lock to bound it).
    pub(crate) rx_queued: AtomicUsize,
}

impl QueueLink {
    pub(crate) fn new(sender: Sender, waker: Wakeup) -> Self {
        Self {
            out: Mutex::new(QueueOut {
                sender,
                pending: VecDeque::with_capacity(512),
            }),
            waker,
            stop: AtomicBool::new(false),
            exited: AtomicBool::new(false),
            rx: Mutex::new(VecDeque::with_capacity(PENDING_LIMIT)),
            rx_queued: AtomicUsize::new(0),
        }
    }
}

/// The thread of one subchannel: reads the guest's packets from the channel, runs
/// them through the queue's [`QueueCore`], writes the completions, and writes what the
/// primary left pending when the ring was full.
pub(crate) struct QueueWorker {
    pub(crate) core: QueueCore,
    /// Writes the received frames the primary hands over or `source` gives.
    pub(crate) rx: RxWriter,
    /// This queue's own receive queue of a multi-queue backend, pulled here.
    pub(crate) source: Option<Box<dyn NetRxQueue>>,
    pub(crate) receiver: Receiver,
    pub(crate) link: Arc<QueueLink>,
    /// The primary's waker: rung when completions free receive slots.
    pub(crate) primary: Arc<dyn Wake>,
    /// A frame buffer for `source` (the backend's largest frame).
    pub(crate) frame: Vec<u8>,
    /// Scratch of a round, kept to allocate nothing once warm (taken out during a
    /// round).
    pub(crate) scratch: Option<QueueScratch>,
}

/// A queue worker's per-round buffers.
pub(crate) struct QueueScratch {
    out: Vec<Out>,
    staged: Vec<(usize, usize)>,
    stage: Vec<u8>,
    frames: VecDeque<RxFrame>,
    used: Vec<Vec<u8>>,
    batch: Batch,
    started: bool,
}

impl Default for QueueScratch {
    fn default() -> Self {
        Self {
            out: Vec::with_capacity(256),
            staged: Vec::with_capacity(256),
            stage: Vec::with_capacity(64 * 1024),
            frames: VecDeque::with_capacity(PENDING_LIMIT),
            used: Vec::with_capacity(PENDING_LIMIT),
            batch: Batch::default(),
            started: false,
        }
    }
}

impl QueueWorker {
    /// Pulls up to 256 frames from this queue's backend queue into the guest's buffer
    /// (transfer packets into `out`); whether any came.
    fn pull(&mut self, batch: &mut Batch, out: &mut Vec<Out>) -> bool {
        let Some(source) = self.source.as_mut() else {
            return false;
        };
        let stats = &self.core.shared.stats;
        let data = &self.core.data;
        // Counted once per pull: the counters are shared by every queue's thread.
        let (mut pulled, mut csum_valid) = (0u64, 0u64);
        let (rx, q) = (&mut self.rx, self.core.q);
        for _ in 0..256 {
            // Lent where it lies in the backend's queue: one copy, into the guest's
            // buffer.
            let received = source.receive_with(&mut self.frame, &mut |f, meta| {
                if !data.receiving {
                    stats.rx_not_ready.fetch_add(1, Ordering::Relaxed);
                } else if f.len() > data.guest_frame {
                    stats.oversize_frames.fetch_add(1, Ordering::Relaxed);
                } else {
                    let csum = data.offload.rx_checksum_info(f, meta);
                    csum_valid += u64::from(csum.is_some());
                    if let Some(o) = rx.frame(batch, q, f, meta.rss_hash, csum) {
                        out.push(o);
                    }
                }
            });
            if !received {
                break;
            }
            pulled += 1;
        }
        if let Some(o) = self.rx.finish(batch) {
            out.push(o);
        }
        if pulled > 0 {
            stats.rx_steered.fetch_add(pulled, Ordering::Relaxed);
        }
        if csum_valid > 0 {
            stats
                .rx_checksum_valid
                .fetch_add(csum_valid, Ordering::Relaxed);
        }
        let any = pulled > 0;
        self.rx.return_slots();
        any
    }

    /// Runs rounds on this thread until the channel closes or the NIC stops.
    pub(crate) fn run(mut self) {
        loop {
            match self.round() {
                Round::Again => {}
                Round::Idle => self.link.waker.sleep(IDLE_GUARD),
                Round::Closed => break,
            }
        }
        self.finish();
    }

    /// One round: pulls this queue's received frames (its own backend queue, or what
    /// the primary handed over) into the guest's buffer, reads the guest's packets,
    /// and writes what is owed.
    pub(crate) fn round(&mut self) -> Round {
        // Stopped by the primary or closed by the guest: done, however busy the guest
        // keeps the ring.
        if self.link.stop.load(Ordering::Acquire) || self.receiver.shared().is_closed() {
            return Round::Closed;
        }
        let mut sc = self.scratch.take().unwrap_or_default();
        if !sc.started {
            sc.started = true;
            self.rx.buf = self.core.data.recv.clone();
        }
        let r = self.round_with(&mut sc);
        self.scratch = Some(sc);
        r
    }

    fn round_with(&mut self, sc: &mut QueueScratch) -> Round {
        let mut progress = false;
        if self.core.refresh() {
            self.rx.buf = self.core.data.recv.clone();
            if self.rx.buf.is_none() {
                self.rx.forget_slots();
            }
        }
        // Frames from this queue's own backend queue, while the guest keeps up.
        let backlog = lock(&self.link.out).pending.len() >= PENDING_LIMIT;
        if !backlog && self.pull(&mut sc.batch, &mut sc.out) {
            progress = true;
        }
        // Received frames the primary pulled for this queue: copied into the
        // guest's buffer here, in parallel with the other queues.
        std::mem::swap(&mut *lock(&self.link.rx), &mut sc.frames);
        if !sc.frames.is_empty() {
            self.link
                .rx_queued
                .fetch_sub(sc.frames.len(), Ordering::Release);
            for f in sc.frames.drain(..) {
                let data = f.buf.get(..f.len).unwrap_or(&[]);
                if let Some(o) = self
                    .rx
                    .frame(&mut sc.batch, self.core.q, data, f.hash, f.csum)
                {
                    sc.out.push(o);
                }
                sc.used.push(f.buf);
            }
            if let Some(o) = self.rx.finish(&mut sc.batch) {
                sc.out.push(o);
            }
            self.rx.return_slots();
            lock(&self.core.shared.frame_pool).append(&mut sc.used);
            progress = true;
        }
        sc.staged.clear();
        sc.stage.clear();
        // A guest that does not read its ring gets no more of its packets read
        // (each may owe it a completion): what is owed stays bounded.
        let max = if backlog { 0 } else { 256 };
        let (staged, stage) = (&mut sc.staged, &mut sc.stage);
        let read = self.receiver.try_recv_batch(max, |p| {
            let start = stage.len();
            stage.resize(start + p.len(), 0);
            if let Some(dst) = stage.get_mut(start..) {
                p.copy_to(dst);
            }
            staged.push((start, stage.len()));
        });
        match read {
            Ok(n) => progress |= n > 0,
            Err(e) => {
                if e != ChannelError::Closed {
                    tracing::warn!(relid = self.core.shared.relid, q = self.core.q, error = %e, "netvsp: subchannel failed");
                }
                return Round::Closed;
            }
        }
        for &(s, e) in &sc.staged {
            if let Some(p) = sc.stage.get(s..e)
                && let Some(o) = self.core.handle_subchannel_packet(p)
            {
                sc.out.push(o);
            }
        }
        if std::mem::take(&mut self.core.freed) {
            // Receive slots came back: the primary may have frames waiting.
            self.primary.wake();
        }
        let mut link_out = lock(&self.link.out);
        if !sc.out.is_empty() || !link_out.pending.is_empty() {
            progress |= link_out.write(sc.out.drain(..));
        }
        drop(link_out);
        end_of_round(progress, backlog, &mut self.receiver)
    }

    /// The worker is done (its channel closed or the NIC stops): what was never
    /// written stays pending, and the primary frees the transfers' receive slots when
    /// it drops the queue.
    pub(crate) fn finish(mut self) {
        if let Some(sc) = self.scratch.as_mut() {
            lock(&self.link.out).pending.extend(sc.out.drain(..));
        }
        self.link.exited.store(true, Ordering::Release);
        self.primary.wake();
    }
}
