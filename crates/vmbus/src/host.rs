//! The host side: [`HostBus`] runs the VMBus server engine over a partition.
//!
//! Guest hypercalls arrive through [`HypercallHandler`] on the guest's vCPU threads:
//! PostMessage is queued (bounded; a full queue answers `INSUFFICIENT_BUFFERS` and the
//! guest retries) for the bus's poll, which runs the engine and carries out its
//! actions; SignalEvent is routed straight to the channel by connection id. Devices
//! implement [`VmbusDevice`] and receive an open [`Channel`].
//!
//! Who runs the poll is the VMM's choice: [`HostBus::new`] starts a thread of the
//! library that sleeps until there is work; [`HostBus::polled`] starts none, and the
//! VMM calls [`HostBus::poll`] from its own thread or executor whenever the [`Wake`] it
//! gave fires (an [`vmbus_ring::EventFd`] in its epoll set, for example). Offers and
//! rescinds are carried out by the calling thread in both modes, so they never wait
//! behind the guest's messages.

use crate::PollStatus;
use crate::channel::{Channel, ChannelShared};
use hv_hypercall::input::{PostMessage, SignalEvent};
use hv_hypercall::{HvMessage, HvMessageType, HvStatus};
use hv_partition::GuestMemory;
use hv_partition::gpadl::{GpadlBuffer, GpadlLease, RingMapping, map_channel_rings};
use hv_partition::{HypercallHandler, Partition};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;
use vmbus_proto::channel::gpadl::Gpadl;
use vmbus_proto::engine::MESSAGE_CONNECTION_IDS;
use vmbus_proto::engine::server::{
    Action, OfferError, OfferParams, OpenRequest, Server, ServerConfig,
};
use vmbus_ring::{Doorbell, WaitPolicy, Wake};

/// The GPADLs the guest created, by id, with the relid they were created for.
pub type GpadlTable = Arc<RwLock<BTreeMap<u32, (u32, Arc<Gpadl>)>>>;

/// The host's leases on the guest's GPADLs (see [`GpadlLease`]): what its devices hold
/// (buffers, ring mappings), which of those the guest asked to tear down, and which
/// have been let go since. Shared by the bus and its devices' contexts.
pub(crate) struct Leases {
    state: Mutex<LeaseState>,
    /// The bus's wake-up: a released lease may complete a teardown.
    wake: Arc<dyn Wake>,
}

#[derive(Default)]
struct LeaseState {
    live: BTreeMap<u32, Weak<GpadlLease>>,
    /// Teardowns the guest asked for while a lease was live.
    closing: BTreeSet<u32>,
    /// Leases dropped since the bus last looked.
    released: Vec<u32>,
}

impl Leases {
    fn new(wake: Arc<dyn Wake>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(LeaseState::default()),
            wake,
        })
    }

    /// A lease on GPADL `id` (the live one, or a new one); `None` once the guest asked
    /// for its teardown.
    fn lease(self: &Arc<Self>, id: u32) -> Option<Arc<GpadlLease>> {
        let mut st = lock(&self.state);
        if st.closing.contains(&id) {
            return None;
        }
        if let Some(l) = st.live.get(&id).and_then(Weak::upgrade) {
            return Some(l);
        }
        let me = Arc::downgrade(self);
        let l = GpadlLease::new(
            id,
            Box::new(move |id| {
                if let Some(t) = me.upgrade() {
                    lock(&t.state).released.push(id);
                    t.wake.wake();
                }
            }),
        );
        st.live.insert(id, Arc::downgrade(&l));
        Some(l)
    }

    /// The guest asked to tear GPADL `id` down: true if nothing holds it (complete
    /// now); otherwise the holders are told to let go and the teardown waits.
    fn teardown(&self, id: u32) -> bool {
        let mut st = lock(&self.state);
        let live = st.live.get(&id).and_then(Weak::upgrade);
        match live {
            Some(l) => {
                st.closing.insert(id);
                drop(st);
                l.revoke();
                false
            }
            None => {
                st.live.remove(&id);
                true
            }
        }
    }

    /// Whether a lease on `id` is live.
    fn held(&self, id: u32) -> bool {
        lock(&self.state)
            .live
            .get(&id)
            .is_some_and(|w| w.strong_count() > 0)
    }

    /// Teardowns that may complete: the guest asked for them and every holder let go.
    fn completed(&self) -> Vec<u32> {
        let mut st = lock(&self.state);
        let released = std::mem::take(&mut st.released);
        let mut done = Vec::new();
        for id in released {
            // Counted, not upgraded: no lease may drop while the state is locked.
            let dead = st.live.get(&id).is_none_or(|w| w.strong_count() == 0);
            if !dead {
                continue;
            }
            st.live.remove(&id);
            if st.closing.remove(&id) {
                done.push(id);
            }
        }
        done
    }

    /// GPADL `id` is gone without a teardown (the guest unloaded or reset): holders
    /// are told to let go; nothing waits for them.
    fn forget(&self, id: u32) {
        let mut st = lock(&self.state);
        st.closing.remove(&id);
        let live = st.live.remove(&id).and_then(|w| w.upgrade());
        drop(st);
        if let Some(l) = live {
            l.revoke();
        }
    }
}

/// Sends a request to the bus that opened a device, without waiting (see
/// [`DeviceContext::offer_subchannel`]).
type RequestFn = dyn Fn(Request) + Send + Sync;

/// The answer to [`DeviceContext::offer_subchannel`], which arrives once the bus
/// thread has made the offer.
pub struct PendingOffer(mpsc::Receiver<Result<u32, OfferError>>);

impl PendingOffer {
    /// The subchannel's relid once the offer is made (`None`: not yet).
    pub fn try_relid(&self) -> Option<Result<u32, HostError>> {
        match self.0.try_recv() {
            Ok(r) => Some(r.map_err(HostError::Offer)),
            Err(mpsc::TryRecvError::Empty) => None,
            Err(mpsc::TryRecvError::Disconnected) => Some(Err(HostError::Stopped)),
        }
    }
}

/// What a device may use besides its channel: guest memory, the guest's GPADLs, and
/// (on a bus) a way to offer subchannels of its channel.
#[derive(Clone)]
pub struct DeviceContext {
    /// Guest memory.
    pub memory: GuestMemory,
    gpadls: GpadlTable,
    /// The bus's leases (none for a context built without a bus).
    leases: Option<Arc<Leases>>,
    /// The offer of the channel this context was opened for, and the bus to offer its
    /// subchannels on.
    subchannels: Option<(OfferParams, Arc<RequestFn>)>,
}

impl DeviceContext {
    /// A context over `memory` and a GPADL table (the host bus builds these; tests and
    /// fuzzers may build their own). Such a context cannot offer subchannels.
    pub fn new(memory: GuestMemory, gpadls: GpadlTable) -> Self {
        Self {
            memory,
            gpadls,
            leases: None,
            subchannels: None,
        }
    }

    /// A context for channel `relid` over `memory` whose GPADLs are the given runs of
    /// whole guest pages, as (GPADL handle, first page number, page count): what tests
    /// and fuzzers need to drive a device without a bus.
    pub fn with_page_runs(memory: GuestMemory, relid: u32, runs: &[(u32, u64, u64)]) -> Self {
        use vmbus_proto::channel::gpadl::GpaRange;
        let table = runs
            .iter()
            .map(|&(handle, first, pages)| {
                let gpadl = Gpadl {
                    child_relid: relid,
                    gpadl: handle,
                    ranges: vec![GpaRange::whole_pages(
                        (first..first.saturating_add(pages)).collect(),
                    )],
                };
                (handle, (relid, Arc::new(gpadl)))
            })
            .collect();
        let mut c = Self::new(memory, Arc::new(RwLock::new(table)));
        // Leases as on a bus, so tests and fuzzers can play a guest that tears a
        // buffer's GPADL down ([`DeviceContext::tear_down_gpadl`]).
        c.leases = Some(Leases::new(Arc::new(vmbus_ring::Doorbell::new())));
        c
    }

    /// For tests and fuzzers without a bus: what the bus does when the guest asks to
    /// tear GPADL `id` down. Its buffers held by devices are revoked; returns whether
    /// the teardown could complete at once (nothing held it).
    pub fn tear_down_gpadl(&self, id: u32) -> bool {
        self.leases.as_ref().is_none_or(|l| l.teardown(id))
    }

    /// Whether a device still holds a buffer of GPADL `id` (a teardown waits for it).
    pub fn gpadl_held(&self, id: u32) -> bool {
        self.leases.as_ref().is_some_and(|l| l.held(id))
    }

    /// Offers subchannel `index` (1 or more) of the channel this context was opened
    /// for, served by `device`. The guest sees an offer with the same class and
    /// instance and `sub_channel_index` = `index`. Does not wait for the bus thread
    /// (which may itself be waiting for the caller): the relid arrives through the
    /// returned [`PendingOffer`].
    pub fn offer_subchannel(
        &self,
        index: u16,
        device: Box<dyn VmbusDevice>,
    ) -> Result<PendingOffer, HostError> {
        let Some((primary, request)) = &self.subchannels else {
            return Err(HostError::Subchannel("this context has no bus to offer on"));
        };
        if index == 0 || primary.subchannel_index != 0 {
            return Err(HostError::Subchannel(
                "subchannel index 0, or a subchannel of a subchannel",
            ));
        }
        let (tx, rx) = mpsc::channel();
        request(Request::Offer(
            OfferParams {
                subchannel_index: index,
                ..*primary
            },
            device,
            tx,
        ));
        Ok(PendingOffer(rx))
    }

    /// Rescinds subchannel `index` of this context's channel, without waiting; the
    /// bus closes it first if it is open. Requests are handled in order, so this also
    /// withdraws an offer made just before whose answer has not arrived yet. Nothing
    /// happens if there is no such subchannel.
    pub fn rescind_subchannel(&self, index: u16) {
        if let Some((primary, request)) = &self.subchannels {
            request(Request::RescindSubchannel(*primary, index));
        }
    }

    /// The GPADL `id` as a byte buffer, if it exists and was created for `relid`
    /// (pass the primary channel's relid for buffers shared with subchannels).
    ///
    /// On a bus, the buffer holds a lease: if the guest tears the GPADL down while the
    /// buffer (or a clone) lives, the teardown waits, the buffer reports
    /// [`GpadlBuffer::is_revoked`] (and wakes what [`GpadlBuffer::on_revoke`] set),
    /// and the guest is answered once every clone is dropped. So stop using and drop
    /// a revoked buffer promptly. `None` also once its teardown was asked for.
    pub fn gpadl_buffer(&self, relid: u32, id: u32) -> Option<GpadlBuffer> {
        let table = self.gpadls.read().unwrap_or_else(|e| e.into_inner());
        let (owner, g) = table.get(&id)?;
        if *owner != relid {
            return None;
        }
        let buf = GpadlBuffer::new(&self.memory, g).ok()?;
        match &self.leases {
            Some(l) => Some(buf.with_lease(l.lease(id)?)),
            None => Some(buf),
        }
    }
}

/// A device behind a channel.
pub trait VmbusDevice: Send + 'static {
    /// The guest opened the channel: take it (typically move it to a thread). Return
    /// `false` to fail the open.
    fn open(&mut self, channel: Channel, request: &OpenRequest, context: &DeviceContext) -> bool;
    /// The channel closed (guest close, rescind or unload). The channel's halves already
    /// fail with `Closed`; stop using them.
    fn close(&mut self, relid: u32);
}

/// Host bus configuration.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HostConfig {
    /// The server engine's configuration (versions, caps). `vp_count` is taken from the
    /// partition.
    pub server: ServerConfig,
    /// Guest messages queued before PostMessage answers INSUFFICIENT_BUFFERS.
    pub queue_depth: usize,
    /// How rings are mapped.
    pub ring_mapping: RingMapping,
    /// How channel halves wait.
    pub wait_policy: WaitPolicy,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            server: ServerConfig::default(),
            queue_depth: 256,
            ring_mapping: RingMapping::DoubleMapped,
            wait_policy: WaitPolicy::default(),
        }
    }
}

/// Host bus counters, as [`HostBus::stats`] reads them.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HostStats {
    /// Guest messages accepted.
    pub messages: u64,
    /// PostMessage answered INSUFFICIENT_BUFFERS (the bus's queue was full).
    pub busy: u64,
    /// PostMessage or SignalEvent to an unknown connection id.
    pub bad_connection: u64,
    /// Messages the engine rejected (malformed, out of state, refused).
    pub rejected: u64,
    /// Messages the partition could not deliver to the guest.
    pub post_failures: u64,
    /// Opens that failed to map rings or start the device.
    pub open_failures: u64,
    /// Opens refused because the ring GPADL named a page twice (of those in
    /// `open_failures`).
    pub aliased_rings: u64,
    /// Polls run (the bus's work rounds; a stalled guest must not make them spin).
    pub polls: u64,
    /// GPADL teardowns the guest asked for while a device still used the buffer: the
    /// device was told to let go, and the teardown completed after it did.
    pub teardowns_deferred: u64,
    /// GPADLs created.
    pub gpadls_created: u64,
    /// GPADLs refused because they named pages outside guest RAM.
    pub gpadls_outside_ram: u64,
    /// Channels opened.
    pub opens: u64,
}

impl HostStats {
    /// The counters of guest messages refused, rejected or undeliverable and of
    /// refused opens and GPADLs that are not zero, by name: what a report should show.
    pub fn problems(&self) -> Vec<(&'static str, u64)> {
        [
            ("busy", self.busy),
            ("bad_connection", self.bad_connection),
            ("rejected", self.rejected),
            ("post_failures", self.post_failures),
            ("open_failures", self.open_failures),
            ("aliased_rings", self.aliased_rings),
            ("gpadls_outside_ram", self.gpadls_outside_ram),
            ("teardowns_deferred", self.teardowns_deferred),
        ]
        .into_iter()
        .filter(|(_, v)| *v != 0)
        .collect()
    }
}

/// The counters the vCPU threads and the poll update.
#[derive(Debug, Default)]
struct HostCounters {
    messages: AtomicU64,
    busy: AtomicU64,
    bad_connection: AtomicU64,
    rejected: AtomicU64,
    post_failures: AtomicU64,
    open_failures: AtomicU64,
    aliased_rings: AtomicU64,
    polls: AtomicU64,
    teardowns_deferred: AtomicU64,
}

/// First retry of held messages after the guest's queue refused one.
const RETRY_FIRST: Duration = Duration::from_millis(1);
/// Slowest retry of held messages (the partition's EOM wake-up comes first).
const RETRY_MAX: Duration = Duration::from_millis(200);

/// Host-to-guest messages held while the guest's SynIC queue is full.
const OUTBOX_CAP: usize = 4096;

/// A device's request to the bus (from [`DeviceContext`]), served at the bus's next
/// poll: the device may be running inside the bus's poll when it asks.
pub(crate) enum Request {
    Offer(
        OfferParams,
        Box<dyn VmbusDevice>,
        mpsc::Sender<Result<u32, OfferError>>,
    ),
    /// Rescind subchannel `index` of the primary channel offered with these params.
    RescindSubchannel(OfferParams, u16),
}

struct Inner<P> {
    partition: Arc<P>,
    config: HostConfig,
    /// Guest messages from the vCPU threads, bounded by `config.queue_depth`.
    messages: Mutex<VecDeque<([u8; 240], u8)>>,
    /// Device requests, served at the next poll.
    requests: Mutex<VecDeque<Request>>,
    /// Rung when there is work for the poll.
    wake: Arc<dyn Wake>,
    /// Set when the bus is dropped: the thread (if any) exits.
    stopped: AtomicBool,
    /// Open channels by the connection id the guest signals.
    by_connection: RwLock<BTreeMap<u32, Arc<ChannelShared>>>,
    /// Complete GPADLs.
    gpadls: GpadlTable,
    /// What the devices hold of them.
    leases: Arc<Leases>,
    stats: HostCounters,
}

/// The partition's hypercall handler: a weak link to the bus. The bus holds the
/// partition, so a strong one would keep a dropped bus (and its partition) alive for
/// ever; once the bus is gone every call fails with `INVALID_CONNECTION_ID`, as with
/// no handler.
struct HandlerLink<P: Partition + 'static>(Weak<Inner<P>>);

impl<P: Partition + 'static> HypercallHandler for HandlerLink<P> {
    fn post_message(&self, vp: u32, message: &PostMessage) -> HvStatus {
        self.0
            .upgrade()
            .map_or(HvStatus::INVALID_CONNECTION_ID, |i| {
                i.post_message(vp, message)
            })
    }

    fn signal_event(&self, vp: u32, event: &SignalEvent) -> HvStatus {
        self.0
            .upgrade()
            .map_or(HvStatus::INVALID_CONNECTION_ID, |i| {
                i.signal_event(vp, event)
            })
    }
}

impl<P: Partition + 'static> HypercallHandler for Inner<P> {
    fn post_message(&self, _vp: u32, message: &PostMessage) -> HvStatus {
        if !MESSAGE_CONNECTION_IDS.contains(&message.connection_id)
            || message.message_type != HvMessageType::VMBUS
        {
            self.stats.bad_connection.fetch_add(1, Ordering::Relaxed);
            return HvStatus::INVALID_CONNECTION_ID;
        }
        let mut q = lock(&self.messages);
        if q.len() >= self.config.queue_depth {
            self.stats.busy.fetch_add(1, Ordering::Relaxed);
            return HvStatus::INSUFFICIENT_BUFFERS;
        }
        q.push_back((message.payload, message.payload_size));
        drop(q);
        self.stats.messages.fetch_add(1, Ordering::Relaxed);
        self.wake.wake();
        HvStatus::SUCCESS
    }

    fn signal_event(&self, _vp: u32, event: &SignalEvent) -> HvStatus {
        match self
            .by_connection
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&event.connection_id)
        {
            Some(ch) => {
                ch.notify();
                HvStatus::SUCCESS
            }
            None => {
                self.stats.bad_connection.fetch_add(1, Ordering::Relaxed);
                HvStatus::INVALID_CONNECTION_ID
            }
        }
    }
}

struct OpenChannelState {
    shared: Arc<ChannelShared>,
    connection_id: u32,
    target_vp: Arc<AtomicU32>,
}

/// The worker's state: the engine, the devices and the open channels.
struct Worker<P> {
    inner: Arc<Inner<P>>,
    server: Server,
    /// Messages the guest's SynIC queue could not take yet (it is full because the guest
    /// has not consumed its slot); retried in order. Bounded by [`OUTBOX_CAP`]: when
    /// full, guest messages wait in the request queue (so PostMessage eventually
    /// answers INSUFFICIENT_BUFFERS) until the guest catches up.
    outbox: VecDeque<(u32, u8, HvMessage)>,
    devices: BTreeMap<u32, Box<dyn VmbusDevice>>,
    params: BTreeMap<u32, OfferParams>,
    open: BTreeMap<u32, OpenChannelState>,
    subchannel_index: BTreeMap<u32, u16>,
    /// The next retry of held messages (see [`RETRY_MAX`]).
    retry: Duration,
}

impl<P: Partition + 'static> Worker<P> {
    /// Posts held messages in order until the guest's queue refuses one.
    fn flush_outbox(&mut self) {
        while let Some((vp, sint, m)) = self.outbox.front() {
            match self.inner.partition.post_message(*vp, *sint, m) {
                Ok(()) => {
                    self.outbox.pop_front();
                }
                Err(hv_partition::PartitionError::Synic(
                    hv_partition::synic::SynicError::QueueFull(_),
                )) => return,
                Err(e) => {
                    self.inner
                        .stats
                        .post_failures
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "vmbus: could not post a message to the guest");
                    self.outbox.pop_front();
                }
            }
        }
    }

    /// Guest messages handled per poll before it returns (so a flooding guest cannot
    /// keep the poll's caller from other work).
    const MESSAGES_PER_POLL: usize = 64;

    /// One pass: retries held messages, serves the devices' requests, then the guest's
    /// messages (a bounded number), carrying out the engine's actions.
    fn poll(&mut self) -> PollStatus {
        self.inner.stats.polls.fetch_add(1, Ordering::Relaxed);
        for id in self.inner.leases.completed() {
            self.server.complete_gpadl_teardown(id);
            self.actions();
        }
        let held = self.outbox.len();
        self.flush_outbox();
        if self.outbox.len() < held {
            self.retry = RETRY_FIRST;
        }
        loop {
            let r = lock(&self.inner.requests).pop_front();
            let Some(r) = r else { break };
            self.request(r);
        }
        let mut handled = 0;
        while handled < Self::MESSAGES_PER_POLL && self.outbox.len() < OUTBOX_CAP {
            let m = lock(&self.inner.messages).pop_front();
            let Some((buf, len)) = m else { break };
            handled += 1;
            let bytes = buf.get(..usize::from(len)).unwrap_or(&[]);
            if let Err(r) = self.server.handle_message(bytes) {
                self.inner.stats.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(rejection = %r, "vmbus: guest message rejected");
            }
            self.actions();
        }
        let more = !lock(&self.inner.messages).is_empty() || !lock(&self.inner.requests).is_empty();
        if more && self.outbox.len() < OUTBOX_CAP {
            PollStatus::Busy
        } else if !self.outbox.is_empty() {
            // The guest has not taken its messages yet. The partition wakes the bus
            // when the guest frees a slot (EOM); the timer is only a guard, backing off
            // to RETRY_MAX while nothing moves, so a guest that never reads costs no
            // busy polling. Guest messages wait (PostMessage answers
            // INSUFFICIENT_BUFFERS once the queue fills) while the outbox is full.
            let t = self.retry;
            self.retry = (self.retry * 2).min(RETRY_MAX);
            PollStatus::Idle(Some(t))
        } else {
            PollStatus::Idle(None)
        }
    }

    fn actions(&mut self) {
        while let Some(a) = self.server.poll_action() {
            self.act(a);
        }
    }

    /// A device's request.
    fn request(&mut self, req: Request) {
        match req {
            Request::Offer(params, device, reply) => {
                let _ = reply.send(self.offer(params, device));
            }
            Request::RescindSubchannel(primary, index) => {
                let relid = self.params.iter().find_map(|(relid, p)| {
                    (p.interface_type == primary.interface_type
                        && p.interface_instance == primary.interface_instance
                        && p.subchannel_index == index)
                        .then_some(*relid)
                });
                if let Some(relid) = relid {
                    let _ = self.server.rescind(relid);
                }
            }
        }
        self.actions();
    }

    fn offer(
        &mut self,
        params: OfferParams,
        device: Box<dyn VmbusDevice>,
    ) -> Result<u32, OfferError> {
        let r = self.server.offer(params);
        if let Ok(relid) = r {
            self.devices.insert(relid, device);
            self.params.insert(relid, params);
            self.subchannel_index.insert(relid, params.subchannel_index);
        }
        self.actions();
        r
    }

    fn rescind(&mut self, relid: u32) -> Result<(), OfferError> {
        let r = self.server.rescind(relid);
        self.actions();
        r
    }

    /// The bus goes away: every open channel is closed and its device told.
    fn stop(&mut self) {
        for (relid, st) in std::mem::take(&mut self.open) {
            self.close(relid, st);
        }
    }

    fn close(&mut self, relid: u32, st: OpenChannelState) {
        st.shared.close();
        self.inner
            .by_connection
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&st.connection_id);
        if let Some(d) = self.devices.get_mut(&relid) {
            d.close(relid);
        }
    }

    fn act(&mut self, action: Action) {
        match action {
            Action::Send { vp, sint, message } => {
                let (buf, n) = message.to_payload();
                match HvMessage::new(HvMessageType::VMBUS, buf.get(..n).unwrap_or(&[])) {
                    Ok(m) => {
                        self.outbox.push_back((vp, sint, m));
                        self.flush_outbox();
                    }
                    Err(_) => {
                        self.inner
                            .stats
                            .post_failures
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Action::Open(req) => {
                let ok = self.open_channel(&req);
                if !ok {
                    self.inner
                        .stats
                        .open_failures
                        .fetch_add(1, Ordering::Relaxed);
                }
                self.server.open_complete(req.relid, req.open_id, ok);
            }
            Action::Close { relid } => {
                if let Some(st) = self.open.remove(&relid) {
                    self.close(relid, st);
                }
            }
            Action::Retarget { relid, target_vp } => {
                if let Some(st) = self.open.get(&relid) {
                    st.target_vp.store(target_vp, Ordering::SeqCst);
                }
            }
            Action::Released { relid } => {
                self.devices.remove(&relid);
                self.params.remove(&relid);
                self.subchannel_index.remove(&relid);
            }
            Action::Connected { version } => tracing::info!(?version, "vmbus: guest connected"),
            Action::Disconnected => tracing::info!("vmbus: guest disconnected"),
            Action::GpadlReady { relid, id, gpadl } => {
                self.inner
                    .gpadls
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id, (relid, Arc::new(gpadl)));
            }
            Action::GpadlReleased { gpadl } => {
                self.inner
                    .gpadls
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&gpadl);
                self.inner.leases.forget(gpadl);
            }
            Action::GpadlTeardownRequested { gpadl } => {
                if self.inner.leases.teardown(gpadl) {
                    self.server.complete_gpadl_teardown(gpadl);
                } else {
                    self.inner
                        .stats
                        .teardowns_deferred
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(gpadl, "vmbus: GPADL teardown waits for its device");
                }
            }
            other => tracing::debug!(?other, "vmbus: engine action not handled"),
        }
    }

    fn open_channel(&mut self, req: &OpenRequest) -> bool {
        if hv_partition::gpadl::ring_pages_alias(&req.gpadl) {
            self.inner
                .stats
                .aliased_rings
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                relid = req.relid,
                "vmbus: ring GPADL names a page twice; open refused"
            );
            return false;
        }
        let memory = self.inner.partition.memory();
        let rings = match map_channel_rings(
            memory,
            &req.gpadl,
            req.downstream_page_offset,
            self.inner.config.ring_mapping,
        ) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(relid = req.relid, error = %e, "vmbus: cannot map channel rings");
                return false;
            }
        };
        // The rings hold a lease on their GPADL: after the channel closes, its teardown
        // waits until the device has dropped both halves.
        let Some(ring_lease) = self.inner.leases.lease(req.gpadl.gpadl) else {
            return false;
        };
        let target_vp = Arc::new(AtomicU32::new(req.target_vp));
        let partition = self.inner.partition.clone();
        let (tv, sint, flag) = (target_vp.clone(), req.sint, req.relid as u16);
        let shared = ChannelShared::new(Box::new(move || {
            // Host to guest: the relid's event flag in the target VP's SIEFP, then the SINT.
            let _ = partition.signal_event(tv.load(Ordering::SeqCst), sint, flag);
        }));
        shared.keep_alive(ring_lease);
        let sub = self.subchannel_index.get(&req.relid).copied().unwrap_or(0);
        let channel = match Channel::new(
            req.relid,
            sub,
            rings.host_to_guest,
            rings.guest_to_host,
            shared.clone(),
            self.inner.config.wait_policy,
        ) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(relid = req.relid, error = %e, "vmbus: guest ring indices invalid at open");
                return false;
            }
        };
        let Some(device) = self.devices.get_mut(&req.relid) else {
            return false;
        };
        self.inner
            .by_connection
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(req.connection_id, shared.clone());
        let inner = self.inner.clone();
        let request: Arc<RequestFn> = Arc::new(move |r| {
            lock(&inner.requests).push_back(r);
            inner.wake.wake();
        });
        let context = DeviceContext {
            memory: memory.clone(),
            gpadls: self.inner.gpadls.clone(),
            leases: Some(self.inner.leases.clone()),
            subchannels: self.params.get(&req.relid).map(|p| (*p, request)),
        };
        if !device.open(channel, req, &context) {
            self.inner
                .by_connection
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&req.connection_id);
            return false;
        }
        self.open.insert(
            req.relid,
            OpenChannelState {
                shared,
                connection_id: req.connection_id,
                target_vp,
            },
        );
        true
    }
}

/// The VMBus host.
pub struct HostBus<P: Partition + 'static> {
    inner: Arc<Inner<P>>,
    worker: Arc<Mutex<Worker<P>>>,
    /// The library's thread in [`HostBus::new`]'s mode.
    thread: Option<JoinHandle<()>>,
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The worker thread is gone.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// An offer or rescind was refused by the engine.
    #[error("offer refused: {0:?}")]
    Offer(OfferError),
    /// The bus stopped.
    #[error("host bus stopped")]
    Stopped,
    /// A subchannel cannot be offered from this context.
    #[error("cannot offer a subchannel: {0}")]
    Subchannel(&'static str),
}

impl<P: Partition + 'static> HostBus<P> {
    /// Starts a host bus on `partition`, installs it as the partition's hypercall
    /// handler, and runs its poll on a thread of its own that sleeps until there is
    /// work.
    pub fn new(partition: Arc<P>, config: HostConfig) -> std::io::Result<Self> {
        let bell = Arc::new(Doorbell::new());
        let mut bus = Self::build(partition, config, bell.clone());
        let (inner, worker) = (bus.inner.clone(), bus.worker.clone());
        bus.thread = Some(
            std::thread::Builder::new()
                .name("vmbus-host".into())
                .spawn(move || {
                    while !inner.stopped.load(Ordering::Acquire) {
                        let status = lock(&worker).poll();
                        match status {
                            PollStatus::Busy => {}
                            // A guard against a lost wake-up; nothing needs it.
                            PollStatus::Idle(t) => {
                                bell.wait(t.unwrap_or(Duration::from_secs(1)));
                            }
                        }
                    }
                })?,
        );
        Ok(bus)
    }

    /// A host bus on `partition` that starts no thread: the VMM calls
    /// [`HostBus::poll`] from a thread or executor of its own whenever `wake` fires
    /// (a guest message arrived, a device asked for something) and when a timeout
    /// [`HostBus::poll`] returned expires. Installs the bus as the partition's
    /// hypercall handler, whose calls (on the vCPU threads) only queue messages and
    /// wake `wake`.
    pub fn polled(partition: Arc<P>, config: HostConfig, wake: Arc<dyn Wake>) -> Self {
        Self::build(partition, config, wake)
    }

    fn build(partition: Arc<P>, mut config: HostConfig, wake: Arc<dyn Wake>) -> Self {
        config.server.vp_count = partition.vp_count();
        // GPADLs may name guest RAM only; their teardown waits for the devices.
        config.server.guest_ram = partition.memory().page_ranges();
        config.server.defer_gpadl_teardown = true;
        let inner = Arc::new(Inner {
            partition: partition.clone(),
            config,
            messages: Mutex::new(VecDeque::new()),
            requests: Mutex::new(VecDeque::new()),
            wake: wake.clone(),
            stopped: AtomicBool::new(false),
            by_connection: RwLock::new(BTreeMap::new()),
            gpadls: Arc::new(RwLock::new(BTreeMap::new())),
            leases: Leases::new(wake.clone()),
            stats: HostCounters::default(),
        });
        partition.set_hypercall_handler(Arc::new(HandlerLink(Arc::downgrade(&inner))));
        partition.set_message_wake(inner.wake.clone());
        let worker = Worker {
            inner: inner.clone(),
            server: Server::new(inner.config.server.clone()),
            outbox: VecDeque::new(),
            devices: BTreeMap::new(),
            params: BTreeMap::new(),
            open: BTreeMap::new(),
            subchannel_index: BTreeMap::new(),
            retry: RETRY_FIRST,
        };
        Self {
            inner,
            worker: Arc::new(Mutex::new(worker)),
            thread: None,
        }
    }

    /// Runs the bus: serves the devices' requests and a bounded batch of the guest's
    /// messages (opening and closing channels, calling the devices), and retries
    /// messages the guest has not taken yet. For [`HostBus::polled`] buses; on a bus
    /// with its own thread it does the same work from the caller's thread.
    ///
    /// [`PollStatus::Busy`]: more is waiting, call again. [`PollStatus::Idle`]: wait
    /// for the wake-up, and at most the duration it carries (messages held for a guest
    /// that has not read its SynIC slot are retried on a timer).
    pub fn poll(&self) -> PollStatus {
        if self.inner.stopped.load(Ordering::Acquire) {
            return PollStatus::Idle(None);
        }
        lock(&self.worker).poll()
    }

    /// Offers `device` as a channel; returns its relid. Carried out on the calling
    /// thread (the guest sees the offer if it has asked for offers).
    pub fn offer(
        &self,
        params: OfferParams,
        device: Box<dyn VmbusDevice>,
    ) -> Result<u32, HostError> {
        if self.inner.stopped.load(Ordering::Acquire) {
            return Err(HostError::Stopped);
        }
        lock(&self.worker)
            .offer(params, device)
            .map_err(HostError::Offer)
    }

    /// Rescinds a channel (closing it first if open).
    pub fn rescind(&self, relid: u32) -> Result<(), HostError> {
        if self.inner.stopped.load(Ordering::Acquire) {
            return Err(HostError::Stopped);
        }
        lock(&self.worker).rescind(relid).map_err(HostError::Offer)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> HostStats {
        let c = &self.inner.stats;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let engine = lock(&self.worker).server.stats();
        HostStats {
            messages: load(&c.messages),
            busy: load(&c.busy),
            bad_connection: load(&c.bad_connection),
            rejected: load(&c.rejected),
            post_failures: load(&c.post_failures),
            open_failures: load(&c.open_failures),
            aliased_rings: load(&c.aliased_rings),
            polls: load(&c.polls),
            teardowns_deferred: load(&c.teardowns_deferred),
            gpadls_created: engine.gpadls_created,
            gpadls_outside_ram: engine.gpadls_outside_ram,
            opens: engine.opens,
        }
    }
}

impl<P: Partition + 'static> Drop for HostBus<P> {
    fn drop(&mut self) {
        self.inner.stopped.store(true, Ordering::Release);
        self.inner.wake.wake();
        if let Some(h) = self.thread.take() {
            let _ = h.join();
        }
        lock(&self.worker).stop();
    }
}
