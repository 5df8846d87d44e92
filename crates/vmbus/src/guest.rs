//! The guest side over the simulated partition: [`GuestBus`] does what a guest kernel's
//! VMBus driver does: enables the SynIC on every VP, runs an interrupt handler per VP
//! (SIMP slot, EOM, SIEFP scan), drives the client engine, allocates ring pages in guest
//! memory, creates GPADLs and opens channels.

use crate::channel::{Channel, ChannelShared};
use hv_hypercall::HvStatus;
use hv_hypercall::msr::{
    HV_X64_MSR_EOM, HV_X64_MSR_SCONTROL, HV_X64_MSR_SIEFP, HV_X64_MSR_SIMP, HV_X64_MSR_SINT0,
};
use hv_hypercall::pages::{SiefpPage, SimpPage, SintIndex};
use hv_partition::gpadl::{RingMapping, map_ring_pages};
use hv_partition::{SimPartition, SimVp};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
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
    /// How the guest maps its rings.
    pub ring_mapping: RingMapping,
}

impl Default for GuestConfig {
    fn default() -> Self {
        Self {
            client: ClientConfig::default(),
            alloc_base: 1 << 20,
            wait_policy: WaitPolicy::default(),
            timeout: Duration::from_secs(10),
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
}

struct Inner {
    partition: Arc<SimPartition>,
    vps: Vec<SimVp>,
    pages: Vec<VpPages>,
    config: GuestConfig,
    core: Mutex<Core>,
    cv: Condvar,
    channels: RwLock<BTreeMap<u32, Arc<ChannelShared>>>,
    stop: AtomicBool,
    stats: GuestCounters,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Carries out the client's actions: posts messages through hypercalls, reacts to
    /// rescinds, and records the rest for waiters.
    fn pump(&self, core: &mut Core) {
        let vp = self.config.client.target_vcpu as usize;
        let (Some(v), Some(p)) = (self.vps.get(vp), self.pages.get(vp)) else {
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
                    let mut status = v.post_message(p.hypercall_input, connection_id, payload);
                    let mut tries = 0;
                    while status == HvStatus::INSUFFICIENT_BUFFERS && tries < 10_000 {
                        self.stats.post_retries.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_micros(50));
                        status = v.post_message(p.hypercall_input, connection_id, payload);
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
                    if let Some(ch) = self
                        .channels
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&relid)
                    {
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
        self.cv.notify_all();
    }

    fn wait_for<T>(
        &self,
        mut pick: impl FnMut(&ClientAction) -> Option<T>,
    ) -> Result<T, GuestError> {
        let deadline = Instant::now() + self.config.timeout;
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
            let now = Instant::now();
            if now >= deadline {
                return Err(GuestError::Timeout);
            }
            core = self
                .cv
                .wait_timeout(core, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// The interrupt handler of one VP.
    fn isr(self: &Arc<Self>, index: usize) {
        let (Some(vp), Some(pages)) = (self.vps.get(index), self.pages.get(index)) else {
            return;
        };
        let sint = SintIndex::new(u32::from(self.config.client.sint)).unwrap_or(SintIndex::VMBUS);
        let memory = vp.memory();
        while !self.stop.load(Ordering::SeqCst) {
            vp.wait_interrupt(Duration::from_millis(50));
            // Messages: consume the slot, EOM if the host queued more behind it.
            for _ in 0..1024 {
                let Some(page) = memory.page(pages.simp) else {
                    break;
                };
                let simp = SimpPage(&page);
                let Some(msg) = simp.read(sint) else { break };
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
                if simp.complete(sint) {
                    self.stats.eoms.fetch_add(1, Ordering::Relaxed);
                    let _ = vp.write_msr(HV_X64_MSR_EOM, 0);
                }
            }
            // Channel events: one flag per relid.
            if let Some(page) = memory.page(pages.siefp) {
                let channels = self.channels.read().unwrap_or_else(|e| e.into_inner());
                SiefpPage(&page).drain(sint, |flag| match channels.get(&u32::from(flag.get())) {
                    Some(ch) => ch.notify(),
                    None => {
                        self.stats.stray_events.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        }
    }
}

/// The guest side of VMBus over a simulated partition.
pub struct GuestBus {
    inner: Arc<Inner>,
    threads: Vec<JoinHandle<()>>,
}

impl GuestBus {
    /// Enables the SynIC on every VP (SIMP, SIEFP, the VMBus SINT unmasked with vector
    /// 0xF3 and no auto-EOI, SCONTROL) and starts one interrupt handler thread per VP.
    pub fn new(partition: Arc<SimPartition>, config: GuestConfig) -> Result<Self, GuestError> {
        use hv_partition::Partition;
        let memory = partition.memory().clone();
        // Every page of RAM from `alloc_base` up, region by region.
        let first = config.alloc_base.div_ceil(4096);
        let free: Vec<(u64, u64)> = memory
            .page_ranges()
            .into_iter()
            .filter_map(|(start, count)| {
                let end = start + count;
                let start = start.max(first);
                (start < end).then(|| (start, end - start))
            })
            .collect();
        if free.is_empty() {
            return Err(GuestError::OutOfMemory);
        }
        let mut alloc = PageAllocator { free };
        let mut vps = Vec::new();
        let mut pages = Vec::new();
        for i in 0..partition.vp_count() {
            let vp = partition.vp(i).ok_or(GuestError::Refused("missing VP"))?;
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
            };
            let sint_msr = HV_X64_MSR_SINT0 + u32::from(config.client.sint);
            for (msr, value) in [
                (HV_X64_MSR_SIMP, p.simp | 1),
                (HV_X64_MSR_SIEFP, p.siefp | 1),
                (sint_msr, u64::from(VMBUS_VECTOR)),
                (HV_X64_MSR_SCONTROL, 1),
            ] {
                vp.write_msr(msr, value)
                    .map_err(|_| GuestError::Refused("SynIC MSR write failed"))?;
            }
            vps.push(vp);
            pages.push(p);
        }
        let inner = Arc::new(Inner {
            partition,
            vps,
            pages,
            core: Mutex::new(Core {
                client: Client::new(config.client.clone()),
                events: Vec::new(),
                alloc,
                rings: BTreeMap::new(),
            }),
            config,
            cv: Condvar::new(),
            channels: RwLock::new(BTreeMap::new()),
            stop: AtomicBool::new(false),
            stats: GuestCounters::default(),
        });
        let mut threads = Vec::new();
        for i in 0..inner.vps.len() {
            let me = inner.clone();
            let h = std::thread::Builder::new()
                .name(format!("vmbus-guest-vp{i}"))
                .spawn(move || me.isr(i))
                .map_err(|e| GuestError::Ring(e.to_string()))?;
            threads.push(h);
        }
        Ok(Self { inner, threads })
    }

    /// Counters.
    pub fn stats(&self) -> GuestStats {
        self.inner.stats.snapshot()
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
        let vp = self
            .inner
            .vps
            .get(target_vp as usize)
            .ok_or(GuestError::Refused("no such VP"))?
            .clone();
        let start = self
            .inner
            .lock()
            .alloc
            .alloc(total)
            .ok_or(GuestError::OutOfMemory)?;
        let memory = vp.memory().clone();
        let zero = [0u8; 4096];
        for p in start..start + total {
            let _ = memory.write(p * 4096, &zero);
        }
        let conn = offer.connection_id;
        let signaller = vp.clone();
        let shared = ChannelShared::new(Box::new(move || {
            // Guest to host: HvSignalEvent on the channel's connection id.
            let _ = signaller.signal_event(conn, 0);
        }));
        // Register before opening: the host may signal as soon as the channel is open.
        self.inner
            .channels
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(relid, shared.clone());
        let result = self.open_inner(relid, start, per_ring, target_vp);
        let gpadl = match result {
            Ok(g) => g,
            Err(e) => {
                self.inner
                    .channels
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&relid);
                self.inner.lock().alloc.release(start, total);
                return Err(e);
            }
        };
        self.inner.lock().rings.insert(relid, (gpadl, start, total));
        let pfns: Vec<u64> = (start..start + total).collect();
        let (up, down) = pfns.split_at(per_ring as usize);
        let how = self.inner.config.ring_mapping;
        let out = map_ring_pages(&memory, up, how).map_err(|e| GuestError::Ring(e.to_string()))?;
        let inc =
            map_ring_pages(&memory, down, how).map_err(|e| GuestError::Ring(e.to_string()))?;
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
        let gpadl = {
            let mut core = self.inner.lock();
            let g = core.client.create_gpadl(
                relid,
                &[GpaRange::whole_pages(
                    (start..start + 2 * per_ring).collect(),
                )],
            )?;
            self.inner.pump(&mut core);
            g
        };
        let ok = self.inner.wait_for(|e| match e {
            ClientAction::GpadlCreated { gpadl: g, ok, .. } if *g == gpadl => Some(*ok),
            _ => None,
        })?;
        if !ok {
            return Err(GuestError::Refused("GPADL"));
        }
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
        if let Some(ch) = self
            .inner
            .channels
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&relid)
        {
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
        for (_, ch) in std::mem::take(
            &mut *self
                .inner
                .channels
                .write()
                .unwrap_or_else(|e| e.into_inner()),
        ) {
            ch.close();
        }
        let mut core = self.inner.lock();
        for (_, (_, start, n)) in std::mem::take(&mut core.rings) {
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
            let _ = self.memory().write(p * 4096, &zero);
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

    /// Guest memory.
    pub fn memory(&self) -> &hv_partition::GuestMemory {
        hv_partition::Partition::memory(&*self.inner.partition)
    }

    /// Sends a raw channel-management message (for tests of a misbehaving guest).
    pub fn post_raw(&self, connection_id: u32, message: &Message) -> HvStatus {
        let (buf, n) = message.to_payload();
        match (self.inner.vps.first(), self.inner.pages.first()) {
            (Some(v), Some(p)) => v.post_message(
                p.hypercall_input,
                connection_id,
                buf.get(..n).unwrap_or(&[]),
            ),
            _ => HvStatus::INVALID_VP_INDEX,
        }
    }

    /// The partition.
    pub fn partition(&self) -> &Arc<SimPartition> {
        &self.inner.partition
    }
}

impl Drop for GuestBus {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        for v in &self.inner.vps {
            v.kick();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
