//! The NetVSP device: the primary channel's worker speaks NVSP and RNDIS control and
//! pulls and classifies received frames from the backend; each subchannel has a worker
//! of its own for its guest-to-host traffic, its receive completions and the copies of
//! its received frames into the guest.
//!
//! Each worker runs on a thread of its own ([`Netvsp::new`]), or the VMM runs them all
//! from its own thread or executor through a [`NicPoller`] ([`Netvsp::polled`]), and
//! the NIC starts no thread.

use crate::backend::{FrameMeta, MAX_JUMBO_FRAME, MAX_MTU, NetEndpoint, frame_size};
pub use crate::config::{
    FRAMES_PER_TRANSFER, MAX_QUEUES, NetvspConfig, RECV_SECTION_SIZE, SEND_SECTION_SIZE,
    recv_section_size,
};
use crate::offload::OffloadConfig;
use crate::queue::{
    IDLE_GUARD, PENDING_LIMIT, QueueCore, QueueLink, QueueWorker, Round, Wakeup, end_of_round,
};
use crate::rndis::RndisControl;
use crate::rxpath::{Batch, RxFrame, RxWriter};
use crate::shared::{NO_SLOT, NicShared, Out, RecvBuffer};
use crate::stats::Counters;
pub use crate::stats::{EVENT_LOG_CAP, NicCounters, NicEvent, NicStats, OidRequestRecord};
use crate::sync::lock;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use vmbus::{
    Channel, ChannelError, DeviceContext, OpenRequest, PollStatus, Receiver, Sender, VmbusDevice,
};
use vmbus_proto::nvsp::{
    Nvsp1ReceiveBufferSection, NvspMessage, NvspSendIndirectionTable, NvspStatus, NvspSubchannelOp,
    NvspVersion, SEND_INDIRECTION_TABLE_OFFSET,
};
use vmbus_proto::packet::{Packet, PacketKind, PacketLimits};
use vmbus_proto::rndis::RndisMessage;
use vmbus_ring::{OutgoingPacket, Wake};

/// The NetVSP device: offer it on a HostBus with the network device class.
pub struct Netvsp {
    config: NetvspConfig,
    endpoint: Arc<Mutex<Option<Box<dyn NetEndpoint>>>>,
    stats: NicCounters,
    run: Run,
}

/// Who runs the NIC's workers.
enum Run {
    /// A thread per queue, started by the NIC (the primary's joined at close).
    Threads(Vec<JoinHandle<()>>),
    /// The VMM, through a [`NicPoller`].
    Polled(Arc<Mutex<PolledNic>>),
}

/// A polled NIC's primary worker while the guest has it open, and what to wake.
struct PolledNic {
    worker: Option<Worker>,
    wake: Arc<dyn Wake>,
}

impl Netvsp {
    /// A NIC attached to `endpoint`, whose workers run on threads of their own: one
    /// for the primary channel, started when the guest opens it, and one per
    /// subchannel.
    pub fn new(config: NetvspConfig, endpoint: Box<dyn NetEndpoint>) -> Self {
        Self {
            config,
            endpoint: Arc::new(Mutex::new(Some(endpoint))),
            stats: NicCounters::default(),
            run: Run::Threads(Vec::new()),
        }
    }

    /// A NIC attached to `endpoint` that starts no thread: the VMM runs every queue
    /// by calling [`NicPoller::poll`] when `wake` fires (the guest signalled one of
    /// the NIC's channels, the backend has frames, or one queue has work for another)
    /// and when the timeout the last poll returned expires. `wake` is typically an
    /// [`vmbus_ring::EventFd`] in the VMM's epoll set. (Backends with threads of their
    /// own, such as a multi-queue [`crate::tap::Tap`], keep them.)
    pub fn polled(
        config: NetvspConfig,
        endpoint: Box<dyn NetEndpoint>,
        wake: Arc<dyn Wake>,
    ) -> (Self, NicPoller) {
        let nic = Arc::new(Mutex::new(PolledNic { worker: None, wake }));
        let mut this = Self::new(config, endpoint);
        this.run = Run::Polled(nic.clone());
        let poller = NicPoller {
            nic,
            endpoint: this.endpoint.clone(),
        };
        (this, poller)
    }

    /// The offer of a NIC with `instance` as its instance GUID (the network device
    /// class; `HostBus::offer` it with this device).
    pub fn offer_params(instance: vmbus::Guid) -> vmbus::OfferParams {
        vmbus::OfferParams::new(vmbus::class::NETWORK, instance)
    }

    /// The counters (shared with the running workers): take a handle before offering
    /// the NIC, read it with [`NicCounters::snapshot`].
    pub fn stats(&self) -> NicCounters {
        self.stats.clone()
    }
}

impl VmbusDevice for Netvsp {
    fn open(&mut self, channel: Channel, req: &OpenRequest, context: &DeviceContext) -> bool {
        // A worker of an earlier open may still be finishing (its channel is closed,
        // so within one bounded round): it gives the endpoint back when done.
        if lock(&self.endpoint).is_none()
            && let Run::Threads(threads) = &mut self.run
        {
            for t in threads.drain(..) {
                let _ = t.join();
            }
        }
        let Some(mut endpoint) = lock(&self.endpoint).take() else {
            return false; // already open
        };
        self.stats.0.record(NicEvent::Channel {
            queue: 0,
            open: true,
        });
        let waker = match &self.run {
            Run::Threads(_) => Wakeup::thread(),
            Run::Polled(nic) => Wakeup::polled(lock(nic).wake.clone()),
        };
        endpoint.set_waker(waker.wake.clone());
        channel.shared().set_waker(waker.wake.clone());
        let Channel {
            sender, receiver, ..
        } = channel;
        let core = NicCore::new(
            self.config,
            req.relid,
            context.clone(),
            endpoint,
            self.stats.clone(),
        );
        let worker = Worker::new(core, sender, receiver, waker, context.clone());
        match &mut self.run {
            Run::Polled(nic) => {
                lock(nic).worker = Some(worker);
                true
            }
            Run::Threads(threads) => {
                let slot = self.endpoint.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("netvsp-{}", req.relid))
                    .spawn(move || {
                        let endpoint = worker.run();
                        *lock(&slot) = endpoint;
                    });
                match spawned {
                    Ok(h) => {
                        threads.push(h);
                        true
                    }
                    Err(e) => {
                        // The worker (and the endpoint in it) went with the closure.
                        tracing::error!(error = %e, "netvsp: worker thread not started; the NIC cannot reopen");
                        false
                    }
                }
            }
        }
    }

    fn close(&mut self, _relid: u32) {
        self.stats.0.record(NicEvent::Channel {
            queue: 0,
            open: false,
        });
        match &mut self.run {
            // The worker sees the closed channel, returns the endpoint and exits.
            // The channel is closed: the worker sees it at its next round (a bounded
            // one), returns the endpoint and exits. Not waited for here, so the bus's
            // thread goes on at once; a reopen or the NIC's drop waits for it.
            Run::Threads(threads) => {
                threads.retain(|t| !t.is_finished());
            }
            // The channel is closed: finish the worker here (its subchannels are
            // polled too, so nothing waits).
            Run::Polled(nic) => {
                let worker = lock(nic).worker.take();
                if let Some(w) = worker {
                    *lock(&self.endpoint) = w.finish();
                }
            }
        }
    }
}

impl Drop for Netvsp {
    fn drop(&mut self) {
        // Workers of closed channels finish within a round.
        if let Run::Threads(threads) = &mut self.run {
            for t in threads.drain(..) {
                let _ = t.join();
            }
        }
    }
}

/// Runs a [`Netvsp::polled`] NIC from the VMM's thread or executor: every queue (the
/// primary channel and each subchannel) in one call. Cheap to call when there is
/// nothing to do.
pub struct NicPoller {
    nic: Arc<Mutex<PolledNic>>,
    endpoint: Arc<Mutex<Option<Box<dyn NetEndpoint>>>>,
}

impl NicPoller {
    /// Rounds of every queue per [`NicPoller::poll`] at most, so one busy NIC cannot
    /// keep its caller from other work.
    pub const ROUNDS_PER_POLL: usize = 16;

    /// Runs the NIC's queues until none has anything left to do (or
    /// [`NicPoller::ROUNDS_PER_POLL`] rounds): guest packets, completions, received
    /// frames, control. [`PollStatus::Busy`]: call again soon. [`PollStatus::Idle`]:
    /// wait for the wake-up given to [`Netvsp::polled`], or the timeout it carries (a
    /// guard against a guest that fails to signal).
    pub fn poll(&self) -> PollStatus {
        let mut nic = lock(&self.nic);
        let Some(worker) = nic.worker.as_mut() else {
            return PollStatus::Idle(None); // not open
        };
        for _ in 0..Self::ROUNDS_PER_POLL {
            match worker.round() {
                Round::Again => {}
                Round::Idle => return PollStatus::Idle(Some(IDLE_GUARD)),
                Round::Closed => {
                    if let Some(w) = nic.worker.take() {
                        *lock(&self.endpoint) = w.finish();
                    }
                    return PollStatus::Idle(None);
                }
            }
        }
        PollStatus::Busy
    }

    /// Whether the guest has the NIC open (its primary channel).
    pub fn is_open(&self) -> bool {
        lock(&self.nic).worker.is_some()
    }
}

/// Control messages (RNDIS answers, link indications) held while the guest's receive
/// buffer is full; beyond it, answers are dropped and counted (link state is never
/// dropped: only the latest is kept).
pub const CONTROL_PENDING_CAP: usize = 64;

/// A control message owed to the guest, waiting for a receive sub-allocation.
enum PendingControl {
    /// An RNDIS message, as it will be written.
    Message(Vec<u8>),
    /// A link indication of the latest link state (at most one is pending).
    Link,
}

/// The protocol core of one NIC, without I/O: ring packets from the guest go in
/// ([`NicCore::handle_packet_on`]), backend frames are pulled
/// ([`NicCore::deliver_frames`]), and the packets owed to the guest queue up
/// ([`NicCore::pop_outgoing_on`]). The worker threads move them between the channels
/// and the core (a subchannel's guest-to-host traffic on a thread of its own); tests
/// and fuzzers drive it directly, every queue from one thread.
pub struct NicCore {
    relid: u32,
    context: DeviceContext,
    shared: Arc<NicShared>,
    stats: Arc<Counters>,
    version: Option<NvspVersion>,
    rndis: RndisControl,
    /// The data-path state last published to the queues: offloads, receiving, guest
    /// frame size.
    published: (OffloadConfig, bool, usize),
    /// Subchannels whose threads pull their own queue of a multi-queue backend (bit
    /// per queue).
    steered: u32,
    /// The RSS settings the backend's steering was built from.
    steer_rss: Option<crate::rss::Rss>,
    /// Each queue's guest-to-host path, made on first use (the primary's, and the
    /// subchannels' when driven through this core rather than their own threads).
    // Boxed: the primary's is taken out and put back per message.
    queues: Vec<Option<Box<QueueCore>>>,
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
    /// Writes received frames and control messages into the guest's buffer.
    rx: RxWriter,
    /// Per queue: the thread that writes the queue's received frames, if it runs on
    /// its own (set by the worker); frames for it are handed over, not written here.
    handoff: Vec<Option<Arc<QueueLink>>>,
    /// Frames pulled for each handed-over queue in this round (handed over at its end).
    handing: Vec<Vec<RxFrame>>,
    frame: Vec<u8>,
    /// Bytes of a frame buffer (the backend's largest frame).
    frame_len: usize,
    /// Frame buffers ready for pulls (handed-over frames take theirs along).
    spare: Vec<Vec<u8>>,
    msg: Vec<u8>,
    /// Receive-buffer sub-allocation size ([`recv_section_size`] of the MTU).
    recv_section: u32,
    /// Largest frame at the NIC's MTU (guest transmit above it is dropped).
    max_frame: usize,
    /// Largest frame at the guest's MTU (from its NDIS config; frames toward it above
    /// this are dropped).
    guest_frame: usize,
    /// Control messages waiting for a receive sub-allocation, in order.
    control_pending: VecDeque<PendingControl>,
    /// The send buffer (also in the shared data), to notice its revocation.
    send_buf: Option<hv_partition::gpadl::GpadlBuffer>,
    /// What wakes this NIC's primary worker when the guest tears down a buffer's
    /// GPADL.
    revoke_wake: Option<Arc<dyn Wake>>,
    /// The link state the pending link indication will report.
    link_state: bool,
}

impl NicCore {
    /// A core for channel `relid`, attached to `endpoint`.
    pub fn new(
        mut config: NetvspConfig,
        relid: u32,
        context: DeviceContext,
        endpoint: Box<dyn NetEndpoint>,
        stats: NicCounters,
    ) -> Self {
        let stats = stats.0;
        config.max_queues = config.max_queues.clamp(1, MAX_QUEUES);
        // The backend's frames are read whole (never cut), whatever the MTU.
        let backend_frame = endpoint.max_frame().clamp(frame_size(68), MAX_JUMBO_FRAME);
        config.mtu = config.mtu.clamp(68, MAX_MTU).min(backend_frame as u32 - 18);
        let recv_section = recv_section_size(config.mtu);
        let max_frame = frame_size(config.mtu);
        let mut nic_shared = NicShared::new(
            relid,
            context.memory.clone(),
            stats.clone(),
            endpoint,
            max_frame,
        );
        nic_shared.source_mac = (!config.allow_mac_spoofing).then_some(config.mac);
        let shared = Arc::new(nic_shared);
        let rx_shared = shared.clone();
        Self {
            rndis: RndisControl::new(config),
            published: (OffloadConfig::default(), false, 0),
            steered: 0,
            steer_rss: None,
            recv_section,
            max_frame,
            guest_frame: max_frame,
            relid,
            context,
            shared,
            stats,
            version: None,
            queues: (0..config.max_queues).map(|_| None).collect(),
            out: (0..config.max_queues)
                .map(|q| VecDeque::with_capacity(if q == 0 { 1024 } else { 256 }))
                .collect(),
            open_queues: 1,
            granted: 0,
            offer_request: 0,
            max_queues: config.max_queues,
            batches: vec![Batch::default(); usize::from(config.max_queues)],
            rx: RxWriter::new(Arc::clone(&rx_shared), recv_section),
            handoff: (0..config.max_queues).map(|_| None).collect(),
            handing: (0..config.max_queues).map(|_| Vec::new()).collect(),
            frame: vec![0u8; backend_frame],
            frame_len: backend_frame,
            spare: Vec::new(),
            msg: vec![0u8; recv_section as usize],
            control_pending: VecDeque::new(),
            link_state: true,
            send_buf: None,
            revoke_wake: None,
        }
    }

    /// What to wake when the guest tears down the GPADL of a buffer in use (the worker
    /// that runs this core).
    pub fn set_revoke_wake(&mut self, wake: Arc<dyn Wake>) {
        self.revoke_wake = Some(wake);
    }

    /// The backend, once every queue's thread is gone (`None` if one still holds it).
    fn into_endpoint(self) -> Option<Box<dyn NetEndpoint>> {
        // Everything else holding the shared state goes first.
        let Self {
            shared, queues, rx, ..
        } = self;
        drop((queues, rx));
        Arc::into_inner(shared)
            .map(|s| s.endpoint.0.into_inner().unwrap_or_else(|e| e.into_inner()))
    }

    /// A guest-to-host path for subchannel `q`, to run on its own thread.
    fn queue_core(&self, q: u16) -> QueueCore {
        QueueCore::new(q, self.shared.clone())
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
                self.drop_transfers(dropped);
            }
        }
    }

    /// Frees the receive slots of transfers that will never be written.
    fn drop_transfers(&mut self, dropped: impl IntoIterator<Item = Out>) {
        let mut recv = lock(&self.shared.recv);
        for o in dropped {
            if let (Out::Transfer { tid, .. }, Some(r)) = (o, recv.as_mut()) {
                r.free_transfer(tid);
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
        lock(&self.shared.recv).as_ref().map(|r| {
            (
                r.free.len(),
                r.in_flight.iter().filter(|g| g.is_some()).count(),
                r.in_flight.len(),
            )
        })
    }

    /// Link changes become RNDIS status indications; returns whether one was queued.
    pub fn poll_link(&mut self) -> bool {
        let up = lock(&self.shared.endpoint).link_up();
        match self.rndis.link_change(up) {
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
        let Some(out) = self.out.get_mut(usize::from(q)) else {
            return false;
        };
        let ok = out.front().is_some_and(|o| o.write(write));
        if ok {
            out.pop_front();
        }
        ok
    }

    fn bad(&self, what: &str) {
        self.shared.bad(what);
    }

    /// Handles one ring packet from the guest (its `len8 * 8` bytes) on the primary
    /// channel.
    pub fn handle_packet(&mut self, bytes: &[u8]) {
        self.handle_packet_on(0, bytes);
    }

    /// [`NicCore::handle_packet`] for queue `q` (replies go back on that queue). A
    /// subchannel carries data packets and completions only.
    pub fn handle_packet_on(&mut self, q: u16, bytes: &[u8]) {
        if q != 0 {
            let Some(slot) = self.queues.get_mut(usize::from(q)) else {
                return self.bad("packet on a queue that does not exist");
            };
            let core = slot.get_or_insert_with(|| Box::new(QueueCore::new(q, self.shared.clone())));
            let reply = core.handle_subchannel_packet(bytes);
            if let (Some(o), Some(out)) = (reply, self.out.get_mut(usize::from(q))) {
                out.push_back(o);
            }
            return;
        }
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
            PacketKind::Completion => {
                self.shared.complete_transfer(tid);
            }
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
                if !matches!(msg, NvspMessage::SendRndisPacket { .. }) {
                    self.stats.record(NicEvent::Nvsp(msg.msg_type()));
                }
                let reply = self.nvsp(&msg, &p);
                if p.completion_requested() || reply.is_some() {
                    self.complete(0, tid, reply.as_ref());
                }
                if matches!(msg, NvspMessage::Subchannel { .. }) && self.granted > 0 {
                    self.queue_send_table();
                }
            }
            _ => self.bad("unexpected packet type"),
        }
    }

    /// Handles one NVSP request on the primary channel; returns the NVSP message to put
    /// in its completion.
    fn nvsp(&mut self, msg: &NvspMessage, packet: &Packet<'_>) -> Option<NvspMessage> {
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
                    self.publish_data_state();
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
                let mut recv = lock(&self.shared.recv);
                match buf {
                    Some(buf) if self.version.is_some() && recv.is_none() && count > 0 => {
                        let high = buf.pfns().iter().filter(|&&p| p >= 0x10_0000).count();
                        self.stats
                            .recv_buffer_pages
                            .store(buf.pfns().len() as u64, Ordering::Relaxed);
                        self.stats
                            .recv_buffer_pages_above_4g
                            .store(high as u64, Ordering::Relaxed);
                        if let Some(w) = &self.revoke_wake {
                            buf.on_revoke(w.clone());
                        }
                        self.rx.buf = Some(buf.clone());
                        let handle = buf.clone();
                        self.shared.publish(|d| d.recv = Some(handle));
                        *recv = Some(RecvBuffer {
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
                        drop(recv);
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
                            && self.shared.data().send.is_none()
                            && buf.len() >= SEND_SECTION_SIZE as usize =>
                    {
                        if let Some(w) = &self.revoke_wake {
                            buf.on_revoke(w.clone());
                        }
                        self.send_buf = Some(buf.clone());
                        self.shared.publish(|d| d.send = Some(buf));
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
                self.drop_receive_buffer();
                None
            }
            NvspMessage::RevokeSendBuffer { .. } => {
                self.drop_send_buffer();
                None
            }
            NvspMessage::SendRndisPacket {
                channel_type,
                send_buf_section_index,
                send_buf_section_size,
            } => {
                let mut core = self
                    .queues
                    .first_mut()
                    .and_then(Option::take)
                    .unwrap_or_else(|| Box::new(QueueCore::new(0, self.shared.clone())));
                let status = core.rndis_packet(
                    channel_type,
                    send_buf_section_index,
                    send_buf_section_size,
                    packet,
                    &mut |m| {
                        self.control_message(m);
                        Some(())
                    },
                );
                if let Some(slot) = self.queues.first_mut() {
                    *slot = Some(core);
                }
                Some(NvspMessage::SendRndisPacketComplete { status })
            }
            NvspMessage::Subchannel {
                op,
                num_subchannels,
            } => {
                // Granted once per open, after the buffers: up to max_queues - 1 (the
                // guest may ask for any number).
                if op != NvspSubchannelOp::ALLOCATE
                    || self.granted > 0
                    || lock(&self.shared.recv).is_none()
                    || self.shared.data().send.is_none()
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

    /// Answers one RNDIS control message (on the primary channel) and publishes the
    /// offloads if a SET changed them.
    fn control_message(&mut self, m: &RndisMessage<'_>) {
        self.stats.control_requests.fetch_add(1, Ordering::Relaxed);
        let link = lock(&self.shared.endpoint).link_up();
        let mut reply = std::mem::take(&mut self.msg);
        let n = self.rndis.handle(m, link, &self.stats, &mut reply);
        if let Some(n) = n
            && let Some(r) = reply.get(..n)
        {
            self.send_control(r);
        }
        self.msg = reply;
        self.publish_data_state();
        if self.rndis.rss != self.steer_rss {
            self.install_steering();
        }
    }

    /// Publishes to the queue threads what a SET or the NDIS config changed: the
    /// offloads, whether the guest takes frames, its largest frame.
    fn publish_data_state(&mut self) {
        let state = (self.rndis.offload, self.rndis.receiving(), self.guest_frame);
        if state != self.published {
            self.published = state;
            let (offload, receiving, guest_frame) = state;
            self.shared.publish(|d| {
                d.offload = offload;
                d.receiving = receiving;
                d.guest_frame = guest_frame;
            });
        }
    }

    /// Tells a multi-queue backend how to spread received frames: by the guest's RSS,
    /// to the queues whose threads pull their own backend queue (`steered`), the rest
    /// to queue 0 (whose thread classifies them again by the hash).
    fn install_steering(&mut self) {
        self.steer_rss = self.rndis.rss.clone();
        let steer: Option<crate::backend::Steer> = match (self.rndis.rss.clone(), self.steered) {
            (Some(rss), mask) if mask != 0 => Some(Arc::new(move |f: &[u8]| {
                // (Table entries were checked against the queue count; a shift past
                // the mask still means "not steered".)
                let steered = |q: u16| mask.checked_shr(u32::from(q)).is_some_and(|m| m & 1 != 0);
                rss.classify(f)
                    .map(|(h, q)| (if steered(q) { q } else { 0 }, h))
            })),
            _ => None,
        };
        lock(&self.shared.endpoint).set_steering(steer);
    }

    /// Marks subchannel `q` as pulling its own backend queue (or no longer) and
    /// re-steers.
    fn set_steered(&mut self, q: u16, on: bool) {
        if q == 0 || q >= self.max_queues {
            return;
        }
        if on {
            self.steered |= 1 << q;
        } else {
            self.steered &= !(1 << q);
        }
        self.install_steering();
    }

    fn complete(&mut self, q: u16, tid: u64, reply: Option<&NvspMessage>) {
        if let Some(out) = self.out.get_mut(usize::from(q)) {
            out.push_back(Out::completion(tid, reply));
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

    /// Queues one transfer-page packet for the written sub-allocations `slots`
    /// (`ranges` are their offsets and lengths).
    fn queue_transfer(&mut self, q: u16, slots: &[u32], ranges: &[(u32, u32)], control: bool) {
        if let Some(o) = self.rx.transfer(slots, ranges, control)
            && let Some(out) = self.out.get_mut(usize::from(q))
        {
            out.push_back(o);
        }
    }

    /// Copies one RNDIS message into a sub-allocation and queues it alone.
    fn send_to_guest(&mut self, message: &[u8], control: bool) -> bool {
        let written = self.rx.write_slot(&[message]);
        self.rx.return_slots();
        match written {
            Some((slot, offset)) => {
                self.queue_transfer(0, &[slot], &[(offset, message.len() as u32)], control);
                true
            }
            None => false,
        }
    }

    /// Stops using the receive buffer (revoked, or its GPADL torn down): every queue
    /// lets go of it, and transfers in flight are forgotten.
    fn drop_receive_buffer(&mut self) {
        *lock(&self.shared.recv) = None;
        self.rx.buf = None;
        self.rx.forget_slots();
        self.shared.publish(|d| d.recv = None);
        self.refresh_queues();
    }

    /// Stops using the send buffer.
    fn drop_send_buffer(&mut self) {
        self.send_buf = None;
        self.shared.publish(|d| d.send = None);
        self.refresh_queues();
    }

    /// The queue cores this core drives reload the data-path settings now (dropping
    /// buffers taken away), not at their next guest packet.
    fn refresh_queues(&mut self) {
        for q in self.queues.iter_mut().flatten() {
            q.refresh();
        }
    }

    /// The guest tore down the GPADL of a buffer without revoking it first: the buffer
    /// is dropped as if revoked, so the bus can answer the teardown (the host never
    /// touches those pages afterwards). Whether one was.
    fn check_revoked(&mut self) -> bool {
        let recv = self.rx.buf.as_ref().is_some_and(|b| b.is_revoked());
        let send = self.send_buf.as_ref().is_some_and(|b| b.is_revoked());
        if recv {
            self.bad("receive buffer GPADL torn down while in use");
            self.drop_receive_buffer();
        }
        if send {
            self.bad("send buffer GPADL torn down while in use");
            self.drop_send_buffer();
        }
        recv || send
    }

    /// Sends an RNDIS control answer, or holds it (in order) until a receive
    /// sub-allocation frees.
    fn send_control(&mut self, message: &[u8]) {
        if self.control_pending.is_empty() && self.send_to_guest(message, true) {
            return;
        }
        if self.control_pending.len() >= CONTROL_PENDING_CAP {
            self.stats.control_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.stats.control_deferred.fetch_add(1, Ordering::Relaxed);
        self.control_pending
            .push_back(PendingControl::Message(message.to_vec()));
    }

    /// Tells the guest the link is `up` now, or once a sub-allocation frees (a later
    /// change before then updates the pending indication: only the latest state goes).
    fn indicate_link(&mut self, up: bool) {
        self.link_state = up;
        if self
            .control_pending
            .iter()
            .any(|p| matches!(p, PendingControl::Link))
        {
            return;
        }
        if !(self.control_pending.is_empty() && self.send_link()) {
            self.stats.control_deferred.fetch_add(1, Ordering::Relaxed);
            self.control_pending.push_back(PendingControl::Link);
        }
    }

    /// Writes a link indication of the latest state; whether it went.
    fn send_link(&mut self) -> bool {
        let mut buf = std::mem::take(&mut self.msg);
        let sent = RndisControl::link_indication(self.link_state, &mut buf)
            .and_then(|n| buf.get(..n))
            .is_some_and(|m| {
                let m = m.to_owned();
                self.send_to_guest(&m, true)
            });
        self.msg = buf;
        if sent {
            self.stats.link_indications.fetch_add(1, Ordering::Relaxed);
        }
        sent
    }

    /// Sends held control messages, in order, while sub-allocations are free; whether
    /// any went.
    fn flush_control(&mut self) -> bool {
        let mut any = false;
        while let Some(p) = self.control_pending.pop_front() {
            let sent = match &p {
                PendingControl::Message(m) => self.send_to_guest(m, true),
                PendingControl::Link => self.send_link(),
            };
            if !sent {
                self.control_pending.push_front(p);
                break;
            }
            any = true;
        }
        any
    }

    /// Moves backend frames into the guest's receive buffer while sub-allocations are
    /// free, each on the queue RSS picks (with its hash as a per-packet info); frames
    /// arriving while the buffer is exhausted or reception is off are dropped and
    /// counted.
    pub fn deliver_frames(&mut self) -> bool {
        let revoked = self.check_revoked();
        // Control first: it takes the sub-allocations that freed before frames do.
        let control = revoked | (!self.control_pending.is_empty() && self.flush_control());
        if !self.control_pending.is_empty() {
            return control;
        }
        // Allocated once per NIC; emptied by every round.
        let mut batches = std::mem::take(&mut self.batches);
        let mut any = false;
        // Only this loop adds to the queues while it runs: counted, not re-summed.
        let mut outgoing = self.outgoing();
        // Frames handed to queue threads wait there: each queue's backlog is bounded.
        let mut budget = 256usize;
        // Counted once per round (the counters are shared with the queue threads).
        let mut csum_valid = 0u64;
        for link in self.handoff.iter().flatten() {
            let queued = link.rx_queued.load(Ordering::Acquire);
            budget = budget.min(PENDING_LIMIT.saturating_sub(queued));
        }
        // The backend lends each frame where it lies (its queue held meanwhile): one
        // copy, into the guest's buffer, or into a buffer handed to a queue thread.
        let shared = self.shared.clone();
        let mut scratch = std::mem::take(&mut self.frame);
        for _ in 0..budget {
            if outgoing >= 512 {
                break; // the outgoing rings are backed up: let the guest catch up
            }
            let received = lock(&shared.endpoint).receive_with(&mut scratch, &mut |f, meta| {
                self.take_frame(f, meta, &mut batches, &mut outgoing, &mut csum_valid);
            });
            if !received {
                break;
            }
            any = true;
        }
        self.frame = scratch;
        for (q, b) in batches.iter_mut().enumerate() {
            if let Some(o) = self.rx.finish(b)
                && let Some(out) = self.out.get_mut(q)
            {
                out.push_back(o);
            }
        }
        self.batches = batches;
        self.rx.return_slots();
        if csum_valid > 0 {
            self.stats
                .rx_checksum_valid
                .fetch_add(csum_valid, Ordering::Relaxed);
        }
        for (link, frames) in self.handoff.iter().zip(self.handing.iter_mut()) {
            if let Some(link) = link
                && !frames.is_empty()
            {
                link.rx_queued.fetch_add(frames.len(), Ordering::Release);
                lock(&link.rx).extend(frames.drain(..));
                link.waker.wake.wake();
            }
        }
        any || control
    }

    /// One frame from the backend: counted and dropped if the guest takes none or it
    /// is too long; otherwise steered by the guest's RSS and written into its buffer
    /// (`batches`, transfer packets into the outgoing queues, counted in `outgoing`)
    /// or copied for the queue thread that writes it.
    fn take_frame(
        &mut self,
        f: &[u8],
        meta: FrameMeta,
        batches: &mut [Batch],
        outgoing: &mut usize,
        csum_valid: &mut u64,
    ) {
        if !self.rndis.receiving() {
            self.stats.rx_not_ready.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if f.len() > self.guest_frame {
            self.stats.oversize_frames.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // A multi-queue backend's steering already hashed it.
        let rss = self.rndis.rss.as_ref();
        let classified = match (meta.rss_hash, rss) {
            (Some(h), Some(rss)) => Some((h, rss.queue_of(h))),
            _ => rss.and_then(|r| r.classify(f)),
        };
        let (hash, q) = match classified {
            Some((h, q)) if self.open_queues & (1 << q) != 0 => (Some(h), q),
            Some((h, _)) => (Some(h), 0),
            None => (None, 0),
        };
        let csum = self.rndis.offload.rx_checksum_info(f, meta);
        *csum_valid += u64::from(csum.is_some());
        if self
            .handoff
            .get(usize::from(q))
            .is_some_and(Option::is_some)
        {
            // The queue's thread copies it into the guest's buffer: it gets its own
            // copy, in a buffer from the pool.
            let mut buf = self.fresh_frame();
            match (buf.get_mut(..f.len()), self.handing.get_mut(usize::from(q))) {
                (Some(dst), Some(h)) => {
                    dst.copy_from_slice(f);
                    h.push(RxFrame {
                        buf,
                        len: f.len(),
                        hash,
                        csum,
                    });
                }
                // (Pool buffers hold the largest frame the guest takes: not reached.)
                _ => {
                    self.stats.oversize_frames.fetch_add(1, Ordering::Relaxed);
                    self.spare.push(buf);
                }
            }
        } else if let Some(b) = batches.get_mut(usize::from(q))
            && let Some(o) = self.rx.frame(b, q, f, hash, csum)
            && let Some(out) = self.out.get_mut(usize::from(q))
        {
            out.push_back(o);
            *outgoing += 1;
        }
    }

    /// A frame buffer for the next pull: one the queue threads gave back, else a new
    /// one (their number is bounded by the queues' backlogs).
    fn fresh_frame(&mut self) -> Vec<u8> {
        if self.spare.is_empty() {
            self.spare.append(&mut lock(&self.shared.frame_pool));
        }
        self.spare
            .pop()
            .unwrap_or_else(|| vec![0u8; self.frame_len])
    }

    /// Hands queue `q`'s received frames to `link`'s thread (or takes them back with
    /// `None`: frames the thread did not write yet are dropped and counted).
    fn set_handoff(&mut self, q: u16, link: Option<Arc<QueueLink>>) {
        if let Some(old) = self
            .handoff
            .get_mut(usize::from(q))
            .map(|h| std::mem::replace(h, link))
            && let Some(old) = old
        {
            let left = std::mem::take(&mut *lock(&old.rx));
            self.stats
                .rx_not_ready
                .fetch_add(left.len() as u64, Ordering::Relaxed);
            self.spare.extend(left.into_iter().map(|f| f.buf));
        }
    }

    /// A writer of received frames for subchannel `q`'s own thread.
    fn rx_writer(&self) -> RxWriter {
        RxWriter::new(self.shared.clone(), self.recv_section)
    }
}

/// A subchannel of a NIC: its open hands the channel to the NIC's primary worker,
/// which starts the queue's own thread.
struct NetvspSubchannel {
    index: u16,
    stats: Arc<Counters>,
    to_worker: mpsc::Sender<(u16, Channel, Wakeup)>,
    /// The primary's wake-up: for a polled NIC, also the subchannel's.
    primary: Wakeup,
}

impl VmbusDevice for NetvspSubchannel {
    fn open(&mut self, channel: Channel, _req: &OpenRequest, _context: &DeviceContext) -> bool {
        let waker = if self.primary.bell.is_some() {
            Wakeup::thread()
        } else {
            self.primary.clone()
        };
        channel.shared().set_waker(waker.wake.clone());
        self.stats.record(NicEvent::Channel {
            queue: self.index,
            open: true,
        });
        let ok = self.to_worker.send((self.index, channel, waker)).is_ok();
        self.primary.wake.wake();
        ok
    }

    fn close(&mut self, _relid: u32) {
        // The queue's thread sees the closed channel and exits; the primary drops the
        // queue.
        self.stats.record(NicEvent::Channel {
            queue: self.index,
            open: false,
        });
    }
}

/// A subchannel's worker, as the primary worker knows it.
struct Subqueue {
    link: Arc<QueueLink>,
    runner: SubRunner,
}

/// Where a subchannel's worker runs.
enum SubRunner {
    /// On a thread of its own.
    Thread(JoinHandle<()>),
    /// In the primary's rounds (a polled NIC); `None` once it finished.
    Polled(Option<Box<QueueWorker>>),
}

/// The worker thread of a NIC's primary channel: moves packets between the channel
/// and a [`NicCore`], pulls received frames from the backend for every queue (handing
/// a subchannel's to its thread), and offers and starts the subchannels the guest was
/// granted.
struct Worker {
    core: NicCore,
    sender: Sender,
    receiver: Receiver,
    subqueues: Vec<Option<Subqueue>>,
    context: DeviceContext,
    new_queues: mpsc::Receiver<(u16, Channel, Wakeup)>,
    to_worker: mpsc::Sender<(u16, Channel, Wakeup)>,
    pending: Vec<vmbus::PendingOffer>,
    /// Subchannel indices offered (1..=offered), withdrawn when the NIC closes.
    offered: u16,
    waker: Wakeup,
    staged: Vec<(usize, usize)>,
    stage: Vec<u8>,
}

impl Worker {
    fn new(
        core: NicCore,
        sender: Sender,
        receiver: Receiver,
        waker: Wakeup,
        context: DeviceContext,
    ) -> Self {
        let (to_worker, new_queues) = mpsc::channel();
        let subqueues = (0..core.max_queues).map(|_| None).collect();
        let mut core = core;
        core.set_revoke_wake(waker.wake.clone());
        Self {
            core,
            sender,
            receiver,
            subqueues,
            context,
            new_queues,
            to_worker,
            pending: Vec::new(),
            offered: 0,
            waker,
            staged: Vec::with_capacity(256),
            stage: Vec::with_capacity(64 * 1024),
        }
    }

    /// Offers granted subchannels, starts the threads of opened ones, drops closed
    /// ones, and collects offer answers.
    fn manage_subchannels(&mut self) -> bool {
        let mut progress = false;
        if let Some((from, to)) = self.core.take_offer_request() {
            for index in from..=to {
                let device = NetvspSubchannel {
                    index,
                    stats: self.core.stats.clone(),
                    to_worker: self.to_worker.clone(),
                    primary: self.waker.clone(),
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
        while let Ok((q, channel, waker)) = self.new_queues.try_recv() {
            progress = true;
            if self
                .subqueues
                .get(usize::from(q))
                .is_none_or(Option::is_some)
                || q == 0
            {
                continue; // not ours to start (the guest reopened a running queue)
            }
            let Channel {
                sender, receiver, ..
            } = channel;
            let link = Arc::new(QueueLink::new(sender, waker.clone()));
            // A multi-queue backend gives the queue its own receive queue.
            let source = lock(&self.core.shared.endpoint).take_rx_queue(q, waker.wake);
            let steered = source.is_some();
            let mut core = self.core.queue_core(q);
            core.own_tx = lock(&self.core.shared.endpoint).take_tx_queue(q);
            let worker = QueueWorker {
                core,
                rx: self.core.rx_writer(),
                source,
                receiver,
                link: link.clone(),
                primary: self.waker.wake.clone(),
                frame: vec![0u8; self.core.frame_len],
                scratch: Some(Default::default()),
            };
            let runner = if self.waker.bell.is_none() {
                Ok(SubRunner::Polled(Some(Box::new(worker))))
            } else {
                std::thread::Builder::new()
                    .name(format!("netvsp-{}-q{q}", self.core.relid))
                    .spawn(move || worker.run())
                    .map(SubRunner::Thread)
            };
            match runner {
                Ok(runner) => {
                    self.core.set_handoff(q, Some(link.clone()));
                    if let Some(slot) = self.subqueues.get_mut(usize::from(q)) {
                        *slot = Some(Subqueue { link, runner });
                    }
                    self.core.set_queue_open(q, true);
                    if steered {
                        self.core.set_steered(q, true);
                    }
                }
                Err(e) => tracing::warn!(q, error = %e, "netvsp: queue thread not started"),
            }
        }
        for q in 1..self.subqueues.len() {
            let exited = self
                .subqueues
                .get(q)
                .and_then(Option::as_ref)
                .is_some_and(|s| s.link.exited.load(Ordering::Acquire));
            if exited {
                // Its frames go to the primary from now on.
                self.stop_queue(q);
                progress = true;
            }
        }
        progress
    }

    /// Stops subchannel `q`'s thread and gives back the receive slots of what it never
    /// wrote.
    fn stop_queue(&mut self, q: usize) {
        let Some(sub) = self.subqueues.get_mut(q).and_then(Option::take) else {
            return;
        };
        // New frames go to queue 0 first; the thread then gives its backend queue
        // back (what was still queued there moves to queue 0).
        self.core.set_steered(q as u16, false);
        sub.link.stop.store(true, Ordering::Release);
        match sub.runner {
            SubRunner::Thread(thread) => {
                sub.link.waker.wake.wake();
                let _ = thread.join();
            }
            SubRunner::Polled(worker) => {
                if let Some(w) = worker {
                    w.finish();
                }
            }
        }
        self.core.set_handoff(q as u16, None);
        self.core.set_queue_open(q as u16, false);
        let left = std::mem::take(&mut lock(&sub.link.out).pending);
        self.core.drop_transfers(left);
    }

    /// Writes what the core queued for a running subchannel itself into its ring (what
    /// does not fit stays pending there, for the queue's thread to write when the guest
    /// makes room). Received frames go to the queue's thread instead (see
    /// [`NicCore::deliver_frames`]), so this is normally empty; it keeps anything
    /// queued from being stranded.
    fn hand_over(&mut self) -> bool {
        let mut progress = false;
        for (q, sub) in self.subqueues.iter().enumerate() {
            let (Some(sub), Some(out)) = (sub, self.core.out.get_mut(q)) else {
                continue;
            };
            if out.is_empty() {
                continue;
            }
            let mut link_out = lock(&sub.link.out);
            let room = PENDING_LIMIT
                .saturating_sub(link_out.pending.len())
                .min(out.len());
            if room > 0 {
                progress |= link_out.write(out.drain(..room));
                if !link_out.pending.is_empty() {
                    sub.link.waker.wake.wake();
                }
            }
        }
        progress
    }

    /// Runs rounds on this thread until the primary channel closes; returns the
    /// endpoint for the next open.
    fn run(mut self) -> Option<Box<dyn NetEndpoint>> {
        loop {
            match self.round() {
                Round::Again => {}
                Round::Idle => self.waker.sleep(IDLE_GUARD),
                Round::Closed => break,
            }
        }
        self.finish()
    }

    /// One round of the primary channel (and, for a polled NIC, of every subchannel).
    /// Bounded work whatever the guest does (at most 256 of its packets, 256 frames),
    /// and a closed channel ends it first: a guest that keeps the worker busy cannot
    /// delay its close.
    fn round(&mut self) -> Round {
        if self.receiver.shared().is_closed() {
            return Round::Closed;
        }
        let mut progress = self.manage_subchannels();
        // Guest to host: copy the batch out of the ring (reads are committed at
        // once), then act on it.
        self.staged.clear();
        self.stage.clear();
        let (staged, stage) = (&mut self.staged, &mut self.stage);
        // Up to 256 packets: completions must be read faster than frames are
        // delivered, or the receive buffer runs dry while they wait in the ring.
        // None while the guest leaves what it is owed unread (bounded backlog).
        let backlog = self.core.out.first().map_or(0, VecDeque::len) >= 2 * PENDING_LIMIT;
        let max = if backlog { 0 } else { 256 };
        match self.receiver.try_recv_batch(max, |p| {
            let start = stage.len();
            stage.resize(start + p.len(), 0);
            if let Some(dst) = stage.get_mut(start..) {
                p.copy_to(dst);
            }
            staged.push((start, stage.len()));
        }) {
            Ok(n) => progress |= n > 0,
            Err(e) => {
                if e != ChannelError::Closed {
                    tracing::warn!(relid = self.core.relid, error = %e, "netvsp: channel failed");
                }
                return Round::Closed;
            }
        }
        for &(s, e) in &self.staged {
            if let Some(p) = self.stage.get(s..e) {
                self.core.handle_packet_on(0, p);
            }
        }
        progress |= self.core.poll_link();
        progress |= self.core.deliver_frames();
        while self.core.pop_outgoing_on(0, |packet, payload| {
            self.sender
                .try_write_or_arm(packet, &[payload])
                .unwrap_or(false)
        }) {
            progress = true;
        }
        self.sender.flush();
        progress |= self.hand_over();
        progress |= self.poll_subqueues();
        // The primary closing ends the NIC.
        end_of_round(progress, backlog, &mut self.receiver)
    }

    /// A polled NIC's subchannels: one round each; whether any did something.
    fn poll_subqueues(&mut self) -> bool {
        let mut progress = false;
        for sub in self.subqueues.iter_mut().flatten() {
            if let SubRunner::Polled(slot) = &mut sub.runner
                && let Some(w) = slot.as_mut()
            {
                match w.round() {
                    Round::Again => progress = true,
                    Round::Idle => {}
                    Round::Closed => {
                        // Its channel closed: the primary drops the queue next round.
                        if let Some(w) = slot.take() {
                            w.finish();
                        }
                        progress = true;
                    }
                }
            }
        }
        progress
    }

    /// The primary channel closed (or the bus closes the NIC): stops the subchannels
    /// and returns the endpoint for the next open.
    fn finish(mut self) -> Option<Box<dyn NetEndpoint>> {
        for q in 1..self.subqueues.len() {
            self.stop_queue(q);
        }
        lock(&self.core.shared.endpoint).set_steering(None);
        // The guest closed the NIC: withdraw its subchannels so a reopen starts clean
        // (by index, so offers the bus has not made yet go too).
        for index in 1..=self.offered {
            self.context.rescind_subchannel(index);
        }
        let endpoint = self.core.into_endpoint();
        if endpoint.is_none() {
            tracing::error!("netvsp: the backend is still in use; the NIC cannot reopen");
        }
        endpoint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_log_keeps_the_latest_and_numbers_them() {
        let c = NicCounters::default();
        let n = EVENT_LOG_CAP as u64 + 10;
        for i in 0..n {
            c.0.record_oid(i % 2 == 0, i as u32, 0);
        }
        let (all, next) = c.events_since(0);
        assert_eq!(next, n);
        assert_eq!(all.len(), EVENT_LOG_CAP);
        // The oldest ten were dropped: the first kept is event 10.
        assert!(matches!(all[0], NicEvent::Oid(o) if o.oid == 10));
        let (tail, _) = c.events_since(n - 3);
        let oids: Vec<u32> = tail
            .iter()
            .map(|e| match e {
                NicEvent::Oid(o) => o.oid,
                _ => u32::MAX,
            })
            .collect();
        assert_eq!(oids, [n as u32 - 3, n as u32 - 2, n as u32 - 1]);
        assert!(c.events_since(n).0.is_empty());
        assert!(c.events_since(n + 100).0.is_empty());
        assert_eq!(c.oids().len(), EVENT_LOG_CAP);
    }
}
