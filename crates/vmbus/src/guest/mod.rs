//! The guest side of VMBus: [`GuestBus`] does what a guest kernel's VMBus driver does:
//! enables the SynIC on every VP, handles the VMBus SINT (SIMP slot, EOM, SIEFP scan),
//! drives the client engine, allocates ring pages in guest memory, creates GPADLs and
//! opens channels.
//!
//! It runs on a [`GuestPlatform`], what the guest's environment provides (MSRs,
//! hypercalls, memory, waiting for an interrupt): [`SimPlatform`] over the simulated
//! partition, or the guest's own. Two ways to run it:
//!
//! - threaded ([`GuestBus::new`], [`GuestBus::with_platform`]): one interrupt-handler
//!   thread per VP, as a guest kernel takes interrupts;
//! - polled ([`GuestBus::polled`]): no thread; the SINT is handled whenever someone
//!   waits (a control operation, a channel or a driver waiting for data) or calls
//!   [`GuestBus::poll`], for a single-threaded guest or one with interrupts off.

mod platform;
#[cfg(feature = "std")]
mod sim;

pub use platform::{GuestPlatform, PlatformError};
#[cfg(feature = "std")]
pub use sim::{RunHost, SimPlatform};

use crate::channel::{Channel, ChannelShared, Idle};
use crate::sync::{Lock, LockGuard, lock};
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;
use hv_hypercall::HvStatus;
use hv_hypercall::msr::{
    HV_X64_MSR_EOM, HV_X64_MSR_SCONTROL, HV_X64_MSR_SIEFP, HV_X64_MSR_SIMP, HV_X64_MSR_SINT0,
};
use hv_hypercall::pages::{SiefpPage, SimpPage, SintIndex};
#[cfg(feature = "std")]
use hv_partition::SimPartition;
#[cfg(feature = "std")]
use hv_partition::gpadl::RingMapping;
use vmbus_proto::VmbusVersion;
use vmbus_proto::channel::gpadl::GpaRange;
use vmbus_proto::channel::{Message, MessageType, OfferChannel};
use vmbus_proto::engine::client::{Client, ClientAction, ClientConfig, ClientError};
use vmbus_ring::WaitPolicy;

/// The interrupt vector the guest programs into its VMBus SINT (Linux's
/// `HYPERVISOR_CALLBACK_VECTOR`).
pub const VMBUS_VECTOR: u8 = 0xF3;

/// Guest bus configuration.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct GuestConfig {
    /// The client engine's configuration (versions to try, message VP and SINT).
    pub client: ClientConfig,
    /// First GPA the bus may allocate pages from (SynIC pages, hypercall input pages,
    /// rings); everything from there to the end of guest memory is the bus's.
    pub alloc_base: u64,
    /// How channel halves wait.
    pub wait_policy: WaitPolicy,
    /// How long control operations wait for the host.
    pub timeout: Duration,
    /// How [`GuestBus::new`]'s [`SimPlatform`] maps rings (a platform given to
    /// [`GuestBus::with_platform`] or [`GuestBus::polled`] maps them its own way).
    #[cfg(feature = "std")]
    pub ring_mapping: RingMapping,
}

impl Default for GuestConfig {
    fn default() -> Self {
        Self {
            client: ClientConfig::default(),
            alloc_base: 1 << 20,
            wait_policy: WaitPolicy::default(),
            timeout: Duration::from_secs(10),
            #[cfg(feature = "std")]
            ring_mapping: RingMapping::DoubleMapped,
        }
    }
}

/// Why a guest bus operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GuestError {
    /// The host did not answer in time.
    #[error("timed out waiting for the host")]
    Timeout,
    /// Every version was refused.
    #[error("the host refused every version")]
    ConnectFailed,
    /// The engine refused the request.
    #[error("request refused: {0:?}")]
    Client(ClientError),
    /// The host refused (GPADL or open failed).
    #[error("the host refused: {0}")]
    Refused(&'static str),
    /// Guest memory for rings is exhausted.
    #[error("out of guest memory for rings")]
    OutOfMemory,
    /// Mapping or ring setup failed.
    #[error("ring setup failed: {0}")]
    Ring(String),
    /// The platform failed (an MSR write faulted, memory out of reach).
    #[error("platform: {0}")]
    Platform(#[from] PlatformError),
}

impl From<ClientError> for GuestError {
    fn from(e: ClientError) -> Self {
        Self::Client(e)
    }
}

vmbus_ring::counters! {
    /// Counters.
    pub struct GuestStats;
    /// The atomics behind [`GuestStats`].
    pub(crate) struct GuestCounters;
    {
        /// Messages received from the host.
        messages: one,
        /// Messages the client engine rejected.
        rejected: one,
        /// EOM writes.
        eoms: one,
        /// Events for relids with no open channel.
        stray_events: one,
        /// PostMessage retries on INSUFFICIENT_BUFFERS.
        post_retries: one,
    }
}

/// First-fit allocator of page runs.
#[derive(Debug)]
struct PageAllocator {
    free: Vec<(u64, u64)>,
}

impl PageAllocator {
    fn alloc(&mut self, n: u64) -> Option<u64> {
        let i = self.free.iter().position(|&(_, c)| c >= n)?;
        let (start, count) = *self.free.get(i)?;
        if count == n {
            self.free.remove(i);
        } else if let Some(slot) = self.free.get_mut(i) {
            *slot = (start + n, count - n);
        }
        Some(start)
    }

    fn release(&mut self, start: u64, n: u64) {
        self.free.push((start, n));
        self.free.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.free.len());
        for &(s, c) in &self.free {
            match merged.last_mut() {
                Some((ls, lc)) if *ls + *lc == s => *lc += c,
                _ => merged.push((s, c)),
            }
        }
        self.free = merged;
    }
}

struct Core {
    client: Client,
    events: Vec<ClientAction>,
    alloc: PageAllocator,
    /// relid -> (gpadl, first pfn, pages) of open channels.
    rings: BTreeMap<u32, (u32, u64, u64)>,
}

struct VpPages {
    simp: u64,
    siefp: u64,
    hypercall_input: u64,
    /// Held while the VP's SINT is handled: on a polled bus any thread that waits
    /// handles it, and two reading one SIMP slot would both take its message. Counts
    /// the handlings (for the periodic full SIEFP scan).
    handling: Lock<u32>,
}

/// Every this many handlings of a VP's SINT the whole SIEFP is scanned; in between,
/// only the words up to the highest open relid. A flag the host sets for a relid above
/// every open channel (a stray event) is so counted within this many handlings, while
/// a polled guest's frequent handlings read one word instead of 32 (measured: the scan
/// was most of a polled guest's idle cost).
const FULL_SIEFP_SCAN_EVERY: u32 = 64;

struct Inner {
    platform: Arc<dyn GuestPlatform>,
    /// Set when the bus was made by [`GuestBus::new`].
    #[cfg(feature = "std")]
    partition: Option<Arc<SimPartition>>,
    pages: Vec<VpPages>,
    config: GuestConfig,
    /// No interrupt threads: waits poll.
    polled: bool,
    core: Lock<Core>,
    /// Threaded buses: the interrupt threads wake control waiters.
    #[cfg(feature = "std")]
    cv: std::sync::Condvar,
    channels: Lock<BTreeMap<u32, Arc<ChannelShared>>>,
    stop: AtomicBool,
    stats: GuestCounters,
}

/// Longest a polled bus sleeps on one VP's interrupt when it has several: a channel
/// may interrupt another VP, which only the next poll sees.
const POLLED_SLICE: Duration = Duration::from_millis(1);

impl Inner {
    fn lock(&self) -> LockGuard<'_, Core> {
        lock(&self.core)
    }

    fn message_vp(&self) -> u32 {
        self.config.client.target_vcpu
    }

    /// Carries out the client's actions: posts messages through hypercalls, reacts to
    /// rescinds, and records the rest for waiters.
    fn pump(&self, core: &mut Core) {
        let vp = self.message_vp();
        let Some(p) = self.pages.get(vp as usize) else {
            return;
        };
        let mut guard = 0;
        while let Some(a) = core.client.poll_action() {
            guard += 1;
            if guard > 100_000 {
                break;
            }
            match a {
                ClientAction::Send {
                    connection_id,
                    message,
                } => {
                    let (buf, n) = message.to_payload();
                    let payload = buf.get(..n).unwrap_or(&[]);
                    let post = || {
                        self.platform
                            .post_message(vp, p.hypercall_input, connection_id, payload)
                    };
                    let mut status = post();
                    let mut tries = 0;
                    while status == HvStatus::INSUFFICIENT_BUFFERS && tries < 10_000 {
                        self.stats.post_retries.fetch_add(1, Ordering::Relaxed);
                        if self.polled {
                            // The host's queue drains when it runs: let it.
                            self.platform.wait_interrupt(vp, Duration::from_micros(50));
                        } else {
                            #[cfg(feature = "std")]
                            std::thread::sleep(Duration::from_micros(50));
                        }
                        status = post();
                        tries += 1;
                    }
                    if status == HvStatus::INVALID_CONNECTION_ID
                        && message.message_type() == MessageType::INITIATE_CONTACT
                    {
                        core.client.contact_refused();
                    } else if !status.is_success() {
                        tracing::warn!(?status, "vmbus guest: PostMessage failed");
                    }
                }
                ClientAction::Rescinded { relid } => {
                    if let Some(ch) = lock(&self.channels).remove(&relid) {
                        ch.close();
                    }
                    // As Linux does: close if open, then release the relid.
                    let _ = core.client.close(relid);
                    if let Some((_, start, n)) = core.rings.remove(&relid) {
                        core.alloc.release(start, n);
                    }
                    let _ = core.client.release_relid(relid);
                    core.events.push(ClientAction::Rescinded { relid });
                }
                other => core.events.push(other),
            }
        }
        #[cfg(feature = "std")]
        self.cv.notify_all();
    }

    fn wait_for<T>(
        &self,
        mut pick: impl FnMut(&ClientAction) -> Option<T>,
    ) -> Result<T, GuestError> {
        let deadline = self.platform.now() + self.config.timeout;
        let mut core = self.lock();
        loop {
            if let Some((i, t)) = core
                .events
                .iter()
                .enumerate()
                .find_map(|(i, e)| pick(e).map(|t| (i, t)))
            {
                core.events.remove(i);
                return Ok(t);
            }
            let now = self.platform.now();
            if now >= deadline {
                return Err(GuestError::Timeout);
            }
            #[cfg(feature = "std")]
            if !self.polled {
                core = self
                    .cv
                    .wait_timeout(core, deadline - now)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
                continue;
            }
            drop(core);
            self.idle(self.message_vp(), deadline - now);
            core = self.lock();
        }
    }

    /// A polled bus's wait: handles what is pending on every VP; if there was nothing,
    /// waits for `vp`'s interrupt (at most [`POLLED_SLICE`] when there are other VPs)
    /// and handles what it brought.
    fn idle(&self, vp: u32, timeout: Duration) {
        if self.poll_all() > 0 {
            return;
        }
        let slice = if self.pages.len() > 1 {
            timeout.min(POLLED_SLICE)
        } else {
            timeout
        };
        self.platform.wait_interrupt(vp, slice);
        self.poll_all();
    }

    /// Handles pending messages and events on every VP; returns how many.
    fn poll_all(&self) -> usize {
        (0..self.pages.len()).map(|i| self.handle_sint(i)).sum()
    }

    /// What the VMBus SINT's handler does on VP `index`: consume message slots (EOM if
    /// the host queued more behind one), then scan the event flags and wake the
    /// channels they name. Bounded: at most 1,024 messages a call. Returns the messages
    /// and events handled.
    fn handle_sint(&self, index: usize) -> usize {
        let Some(pages) = self.pages.get(index) else {
            return 0;
        };
        let sint = SintIndex::new(u32::from(self.config.client.sint)).unwrap_or(SintIndex::VMBUS);
        let mut handlings = lock(&pages.handling);
        *handlings = handlings.wrapping_add(1);
        let full_scan = (*handlings).is_multiple_of(FULL_SIEFP_SCAN_EVERY);
        let mut handled = 0;
        for _ in 0..1024 {
            let mut msg = None;
            let mut eom = false;
            let _ = self.platform.with_page(pages.simp, &mut |page| {
                let simp = SimpPage(page);
                msg = simp.read(sint);
                if msg.is_some() {
                    eom = simp.complete(sint);
                }
            });
            let Some(msg) = msg else { break };
            handled += 1;
            self.stats.messages.fetch_add(1, Ordering::Relaxed);
            let payload = msg.payload().unwrap_or(&[]);
            {
                let mut core = self.lock();
                if let Err(r) = core.client.handle_message(payload) {
                    self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(rejection = %r, "vmbus guest: host message rejected");
                }
                self.pump(&mut core);
            }
            if eom {
                self.stats.eoms.fetch_add(1, Ordering::Relaxed);
                let _ = self.platform.write_msr(index as u32, HV_X64_MSR_EOM, 0);
            }
        }
        // Channel events: one flag per relid.
        let channels = lock(&self.channels);
        let limit = if full_scan {
            u16::MAX
        } else {
            channels.keys().next_back().map_or(0, |&r| {
                u16::try_from(r.saturating_add(1)).unwrap_or(u16::MAX)
            })
        };
        let _ = self.platform.with_page(pages.siefp, &mut |page| {
            SiefpPage(page).drain_below(sint, limit, |flag| {
                handled += 1;
                match channels.get(&u32::from(flag.get())) {
                    Some(ch) => ch.notify(),
                    None => {
                        self.stats.stray_events.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        });
        handled
    }

    /// The interrupt handler thread of one VP.
    #[cfg(feature = "std")]
    fn isr(self: &Arc<Self>, index: usize) {
        while !self.stop.load(Ordering::SeqCst) {
            self.platform
                .wait_interrupt(index as u32, Duration::from_millis(50));
            self.handle_sint(index);
        }
    }
}

/// The guest side of VMBus over a [`GuestPlatform`].
pub struct GuestBus {
    inner: Arc<Inner>,
    #[cfg(feature = "std")]
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl GuestBus {
    /// A threaded bus over the simulated partition ([`SimPlatform`], rings mapped as
    /// [`GuestConfig::ring_mapping`] says): see [`GuestBus::with_platform`].
    #[cfg(feature = "std")]
    pub fn new(partition: Arc<SimPartition>, config: GuestConfig) -> Result<Self, GuestError> {
        let platform = Arc::new(SimPlatform::new(partition.clone(), config.ring_mapping));
        let mut bus = Self::build(platform, config, false)?;
        if let Some(inner) = Arc::get_mut(&mut bus.inner) {
            inner.partition = Some(partition);
        }
        bus.start_threads()?;
        Ok(bus)
    }

    /// Enables the SynIC on every VP (SIMP, SIEFP, the VMBus SINT unmasked with vector
    /// 0xF3 and no auto-EOI, SCONTROL) and starts one interrupt handler thread per VP.
    #[cfg(feature = "std")]
    pub fn with_platform(
        platform: Arc<dyn GuestPlatform>,
        config: GuestConfig,
    ) -> Result<Self, GuestError> {
        let mut bus = Self::build(platform, config, false)?;
        bus.start_threads()?;
        Ok(bus)
    }

    /// Enables the SynIC as [`GuestBus::with_platform`] does but starts no thread: the
    /// VMBus SINT is handled on the caller's thread whenever the bus, a channel or a
    /// driver waits (through [`GuestPlatform::wait_interrupt`]), and by
    /// [`GuestBus::poll`]. Channels it opens wait the same way, so a single-threaded
    /// guest can run a driver on it. With several VPs a wait sleeps at most 1 ms on one
    /// VP's interrupt before looking at the others.
    pub fn polled(
        platform: Arc<dyn GuestPlatform>,
        config: GuestConfig,
    ) -> Result<Self, GuestError> {
        Self::build(platform, config, true)
    }

    fn build(
        platform: Arc<dyn GuestPlatform>,
        config: GuestConfig,
        polled: bool,
    ) -> Result<Self, GuestError> {
        // Every page of RAM from `alloc_base` up, region by region.
        let first = config.alloc_base.div_ceil(4096);
        let free: Vec<(u64, u64)> = platform
            .ram()
            .into_iter()
            .filter_map(|(start, count)| {
                let end = start.saturating_add(count);
                let start = start.max(first);
                (start < end).then(|| (start, end - start))
            })
            .collect();
        if free.is_empty() {
            return Err(GuestError::OutOfMemory);
        }
        let mut alloc = PageAllocator { free };
        let mut pages = Vec::new();
        for vp in 0..platform.vp_count() {
            let mut page = || {
                alloc
                    .alloc(1)
                    .map(|p| p * 4096)
                    .ok_or(GuestError::OutOfMemory)
            };
            let p = VpPages {
                simp: page()?,
                siefp: page()?,
                hypercall_input: page()?,
                handling: Lock::new(0),
            };
            let zero = [0u8; 4096];
            for gpa in [p.simp, p.siefp] {
                platform.write(gpa, &zero)?;
            }
            let sint_msr = HV_X64_MSR_SINT0 + u32::from(config.client.sint);
            for (msr, value) in [
                (HV_X64_MSR_SIMP, p.simp | 1),
                (HV_X64_MSR_SIEFP, p.siefp | 1),
                (sint_msr, u64::from(VMBUS_VECTOR)),
                (HV_X64_MSR_SCONTROL, 1),
            ] {
                platform.write_msr(vp, msr, value)?;
            }
            pages.push(p);
        }
        let inner = Arc::new(Inner {
            platform,
            #[cfg(feature = "std")]
            partition: None,
            pages,
            core: Lock::new(Core {
                client: Client::new(config.client.clone()),
                events: Vec::new(),
                alloc,
                rings: BTreeMap::new(),
            }),
            config,
            polled,
            #[cfg(feature = "std")]
            cv: std::sync::Condvar::new(),
            channels: Lock::new(BTreeMap::new()),
            stop: AtomicBool::new(false),
            stats: GuestCounters::default(),
        });
        Ok(Self {
            inner,
            #[cfg(feature = "std")]
            threads: Vec::new(),
        })
    }

    #[cfg(feature = "std")]
    fn start_threads(&mut self) -> Result<(), GuestError> {
        for i in 0..self.inner.pages.len() {
            let me = self.inner.clone();
            let h = std::thread::Builder::new()
                .name(format!("vmbus-guest-vp{i}"))
                .spawn(move || me.isr(i))
                .map_err(|e| GuestError::Ring(e.to_string()))?;
            self.threads.push(h);
        }
        Ok(())
    }

    /// Whether the bus runs without threads ([`GuestBus::polled`]).
    pub fn is_polled(&self) -> bool {
        self.inner.polled
    }

    /// Handles what the host sent (messages and channel events on every VP) without
    /// waiting; returns how many messages and events there were. A polled bus's
    /// owner calls it from its loop (or waits in a driver, which calls it); on a
    /// threaded bus it is harmless.
    pub fn poll(&self) -> usize {
        self.inner.poll_all()
    }

    /// Counters.
    pub fn stats(&self) -> GuestStats {
        self.inner.stats.snapshot()
    }

    /// How many VPs the guest has.
    pub fn vp_count(&self) -> u32 {
        self.inner.pages.len() as u32
    }
    /// Connects, trying the configured versions newest first; returns the version.
    pub fn connect(&self) -> Result<VmbusVersion, GuestError> {
        {
            let mut core = self.inner.lock();
            core.events.clear();
            core.client.connect();
            self.inner.pump(&mut core);
        }
        self.inner.wait_for(|e| match e {
            ClientAction::Connected { version } => Some(Ok(*version)),
            ClientAction::ConnectFailed => Some(Err(GuestError::ConnectFailed)),
            _ => None,
        })?
    }

    /// Requests the offers and returns them once the host says all were delivered.
    pub fn request_offers(&self) -> Result<Vec<OfferChannel>, GuestError> {
        {
            let mut core = self.inner.lock();
            core.client.request_offers()?;
            self.inner.pump(&mut core);
        }
        self.inner
            .wait_for(|e| matches!(e, ClientAction::AllOffersDelivered).then_some(()))?;
        let mut core = self.inner.lock();
        let mut offers = Vec::new();
        core.events.retain(|e| match e {
            ClientAction::Offer(o) => {
                offers.push(*o);
                false
            }
            _ => true,
        });
        Ok(offers)
    }

    /// Waits for an offer that arrives after [`GuestBus::request_offers`] (hot add, a
    /// subchannel) and matches `pred`.
    pub fn wait_offer(
        &self,
        mut pred: impl FnMut(&OfferChannel) -> bool,
    ) -> Result<OfferChannel, GuestError> {
        self.inner.wait_for(|e| match e {
            ClientAction::Offer(o) if pred(o) => Some(*o),
            _ => None,
        })
    }

    /// Waits until the host rescinds `relid` (the bus closes and releases it).
    pub fn wait_rescind(&self, relid: u32) -> Result<(), GuestError> {
        self.inner
            .wait_for(|e| (*e == ClientAction::Rescinded { relid }).then_some(()))
    }

    /// Opens `offer` with rings of `ring_data_pages` data pages each (plus a control
    /// page), interrupting `target_vp`.
    pub fn open(
        &self,
        offer: &OfferChannel,
        ring_data_pages: u32,
        target_vp: u32,
    ) -> Result<Channel, GuestError> {
        let relid = offer.child_relid;
        let per_ring = 1 + u64::from(ring_data_pages.max(1));
        let total = 2 * per_ring;
        if target_vp >= self.vp_count() {
            return Err(GuestError::Refused("no such VP"));
        }
        let start = self.alloc_pages(total)?;
        let conn = offer.connection_id;
        let platform = self.inner.platform.clone();
        let signal = Box::new(move || {
            // Guest to host: HvSignalEvent on the channel's connection id.
            let _ = platform.signal_event(target_vp, conn, 0);
        });
        let shared = if self.inner.polled {
            let me = Arc::downgrade(&self.inner);
            let idle: Idle = Arc::new(move |timeout| {
                if let Some(inner) = me.upgrade() {
                    inner.idle(target_vp, timeout);
                }
            });
            ChannelShared::with_idle(signal, idle)
        } else {
            ChannelShared::new(signal)
        };
        // Register before opening: the host may signal as soon as the channel is open.
        lock(&self.inner.channels).insert(relid, shared.clone());
        let result = self.open_inner(relid, start, per_ring, target_vp);
        let gpadl = match result {
            Ok(g) => g,
            Err(e) => {
                lock(&self.inner.channels).remove(&relid);
                self.inner.lock().alloc.release(start, total);
                return Err(e);
            }
        };
        self.inner.lock().rings.insert(relid, (gpadl, start, total));
        let pfns: Vec<u64> = (start..start + total).collect();
        let (up, down) = pfns.split_at(per_ring as usize);
        let out = self.inner.platform.map_ring(up)?;
        let inc = self.inner.platform.map_ring(down)?;
        Channel::new(
            relid,
            offer.subchannel_index,
            out,
            inc,
            shared,
            self.inner.config.wait_policy,
        )
        .map_err(|e| GuestError::Ring(e.to_string()))
    }

    fn open_inner(
        &self,
        relid: u32,
        start: u64,
        per_ring: u64,
        target_vp: u32,
    ) -> Result<u32, GuestError> {
        let gpadl = self.create_gpadl(relid, start, 2 * per_ring)?;
        {
            let mut core = self.inner.lock();
            core.client
                .open(relid, gpadl, per_ring as u32, target_vp, [0; 120])?;
            self.inner.pump(&mut core);
        }
        let ok = self.inner.wait_for(|e| match e {
            ClientAction::Opened { relid: r, ok } if *r == relid => Some(*ok),
            _ => None,
        })?;
        if !ok {
            let mut core = self.inner.lock();
            let _ = core.client.teardown_gpadl(gpadl);
            self.inner.pump(&mut core);
            return Err(GuestError::Refused("open"));
        }
        Ok(gpadl)
    }

    /// Closes `relid`: CloseChannel, then tears down its ring GPADL and frees the pages.
    pub fn close(&self, relid: u32) -> Result<(), GuestError> {
        if let Some(ch) = lock(&self.inner.channels).remove(&relid) {
            ch.close();
        }
        let gpadl = {
            let mut core = self.inner.lock();
            core.client.close(relid)?;
            let rings = core.rings.get(&relid).copied();
            if let Some((g, _, _)) = rings {
                core.client.teardown_gpadl(g)?;
            }
            self.inner.pump(&mut core);
            rings
        };
        if let Some((g, start, n)) = gpadl {
            self.inner
                .wait_for(|e| (*e == ClientAction::GpadlTorndown { gpadl: g }).then_some(()))?;
            let mut core = self.inner.lock();
            core.rings.remove(&relid);
            core.alloc.release(start, n);
        }
        Ok(())
    }

    /// Moves `relid`'s interrupts to `target_vp`.
    pub fn modify_channel(&self, relid: u32, target_vp: u32) -> Result<(), GuestError> {
        let mut core = self.inner.lock();
        core.client.modify_channel(relid, target_vp)?;
        self.inner.pump(&mut core);
        Ok(())
    }

    /// Disconnects (every channel is closed by the host); returns once the host answers.
    pub fn unload(&self) -> Result<(), GuestError> {
        {
            let mut core = self.inner.lock();
            core.client.unload()?;
            self.inner.pump(&mut core);
        }
        self.inner
            .wait_for(|e| (*e == ClientAction::Unloaded).then_some(()))?;
        for (_, ch) in core::mem::take(&mut *lock(&self.inner.channels)) {
            ch.close();
        }
        let mut core = self.inner.lock();
        for (_, (_, start, n)) in core::mem::take(&mut core.rings) {
            core.alloc.release(start, n);
        }
        Ok(())
    }

    /// Allocates `pages` zeroed, contiguous pages of guest memory for the caller (e.g. a
    /// NIC's receive and send buffers); returns the first page number.
    pub fn alloc_pages(&self, pages: u64) -> Result<u64, GuestError> {
        let start = self
            .inner
            .lock()
            .alloc
            .alloc(pages)
            .ok_or(GuestError::OutOfMemory)?;
        let zero = [0u8; 4096];
        for p in start..start + pages {
            if let Err(e) = self.inner.platform.write(p * 4096, &zero) {
                self.free_pages(start, pages);
                return Err(e.into());
            }
        }
        Ok(start)
    }

    /// Returns pages from [`GuestBus::alloc_pages`].
    pub fn free_pages(&self, start: u64, pages: u64) {
        self.inner.lock().alloc.release(start, pages);
    }

    /// Describes `pages` pages from `start` to the host as a GPADL of `relid` and waits
    /// for the host's answer; returns the GPADL id.
    pub fn create_gpadl(&self, relid: u32, start: u64, pages: u64) -> Result<u32, GuestError> {
        let gpadl = {
            let mut core = self.inner.lock();
            let g = core.client.create_gpadl(
                relid,
                &[GpaRange::whole_pages((start..start + pages).collect())],
            )?;
            self.inner.pump(&mut core);
            g
        };
        let ok = self.inner.wait_for(|e| match e {
            ClientAction::GpadlCreated { gpadl: g, ok, .. } if *g == gpadl => Some(*ok),
            _ => None,
        })?;
        if ok {
            Ok(gpadl)
        } else {
            Err(GuestError::Refused("GPADL"))
        }
    }

    /// Tears down a GPADL made with [`GuestBus::create_gpadl`] and waits for the host.
    pub fn teardown_gpadl(&self, gpadl: u32) -> Result<(), GuestError> {
        {
            let mut core = self.inner.lock();
            core.client.teardown_gpadl(gpadl)?;
            self.inner.pump(&mut core);
        }
        self.inner
            .wait_for(|e| (*e == ClientAction::GpadlTorndown { gpadl }).then_some(()))
    }

    /// The platform the bus runs on: guest memory access (the buffers a driver shares
    /// with the host), hypercalls.
    pub fn platform(&self) -> &Arc<dyn GuestPlatform> {
        &self.inner.platform
    }

    /// Sends a raw channel-management message (for tests of a misbehaving guest).
    pub fn post_raw(&self, connection_id: u32, message: &Message) -> HvStatus {
        let (buf, n) = message.to_payload();
        match self.inner.pages.first() {
            Some(p) => self.inner.platform.post_message(
                0,
                p.hypercall_input,
                connection_id,
                buf.get(..n).unwrap_or(&[]),
            ),
            None => HvStatus::INVALID_VP_INDEX,
        }
    }

    /// The simulated partition, for a bus made by [`GuestBus::new`].
    #[cfg(feature = "std")]
    pub fn partition(&self) -> Option<&Arc<SimPartition>> {
        self.inner.partition.as_ref()
    }
}

impl Drop for GuestBus {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        for vp in 0..self.vp_count() {
            self.inner.platform.kick(vp);
        }
        #[cfg(feature = "std")]
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
