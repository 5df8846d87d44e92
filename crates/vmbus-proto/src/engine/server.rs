//! The VMBus server (host side) state machine.

use super::{CHANNEL_CONNECTION_ID_BASE, MESSAGE_CONNECTION_ID, Rejection, VMBUS_MESSAGE_SINT};
use crate::channel::gpadl::{Gpadl, GpadlAccumulator, GpadlLimits};
use crate::channel::{
    ChildRelid, GpadlCreated, GpadlTorndown, InitiateContact, Message, ModifyChannelResponse,
    OfferChannel, OpenResult, STATUS_SUCCESS, STATUS_UNSUCCESSFUL, VersionResponse,
    VersionResponseMessage, connection_state,
};
use crate::guid::Guid;
use crate::version::{FeatureFlags, VmbusVersion};
use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

/// Server configuration.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Versions the host accepts (a guest asking for another is refused and tries its
    /// next one). Default: 2.4 through 5.3.
    pub versions: Vec<VmbusVersion>,
    /// Number of guest VPs; a target VP at or above it is refused.
    pub vp_count: u32,
    /// Maximum pages in one GPADL.
    pub max_gpadl_pages: usize,
    /// Maximum GPADLs alive at once (all channels).
    pub max_gpadls: usize,
    /// Maximum channels (relids 1..=max).
    pub max_channels: u32,
    /// The guest's RAM as page ranges (first page number, page count). A GPADL naming
    /// any other page (the MMIO hole, past a region's edge or the last region) is
    /// refused with a failed GpadlCreated and counted. Empty: pages are not checked
    /// here (the host must check every access itself; it does anyway).
    pub guest_ram: Vec<(u64, u64)>,
    /// Leave the guest's GPADL teardowns to the host
    /// ([`Action::GpadlTeardownRequested`]), for a host whose devices may still be
    /// using the pages (a NIC's receive buffer): the guest hears GpadlTorndown only
    /// after [`Server::complete_gpadl_teardown`]. Off: answered at once.
    pub defer_gpadl_teardown: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            versions: [
                VmbusVersion::V2_4,
                VmbusVersion::V3_0,
                VmbusVersion::V4_0,
                VmbusVersion::V4_1,
                VmbusVersion::V5_0,
                VmbusVersion::V5_1,
                VmbusVersion::V5_2,
                VmbusVersion::V5_3,
            ]
            .to_vec(),
            vp_count: 1,
            // 31 MiB, netvsc's largest receive buffer.
            max_gpadl_pages: 31 * 256,
            max_gpadls: 1024,
            max_channels: 2047,
            guest_ram: Vec::new(),
            defer_gpadl_teardown: false,
        }
    }
}

/// What a device offers.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct OfferParams {
    /// Device class.
    pub interface_type: Guid,
    /// Device instance (shared by a channel and its subchannels).
    pub interface_instance: Guid,
    /// 0 for a primary channel, N for subchannel N.
    pub subchannel_index: u16,
    /// Offer flags.
    pub flags: u16,
    /// MMIO space in MiB.
    pub mmio_megabytes: u16,
    /// Device-defined offer bytes.
    pub user_defined: [u8; 120],
}

impl OfferParams {
    /// A primary channel of `interface_type` / `interface_instance`.
    pub const fn new(interface_type: Guid, interface_instance: Guid) -> Self {
        Self {
            interface_type,
            interface_instance,
            subchannel_index: 0,
            flags: crate::channel::offer_flags::ENUMERATE_DEVICE_INTERFACE,
            mmio_megabytes: 0,
            user_defined: [0; 120],
        }
    }
}

/// The channel a guest opened: everything the runtime needs to map its rings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenRequest {
    /// The channel.
    pub relid: u32,
    /// The guest's open id.
    pub open_id: u32,
    /// The ring GPADL: one range, whole pages. The first `downstream_page_offset`
    /// pages are the guest-to-host ring (control page first), the rest the
    /// host-to-guest ring.
    pub gpadl: Gpadl,
    /// Page offset of the host-to-guest ring.
    pub downstream_page_offset: u32,
    /// VP to interrupt for this channel.
    pub target_vp: u32,
    /// Connection id the guest signals (HvSignalEvent) for this channel.
    pub connection_id: u32,
    /// The SINT channel events go to.
    pub sint: u8,
    /// Device-defined open data.
    pub user_data: [u8; 120],
}

/// What the runtime must do.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Post `message` to the guest's `vp` on `sint`.
    Send {
        /// Target VP.
        vp: u32,
        /// Target SINT.
        sint: u8,
        /// The message.
        message: Message,
    },
    /// The guest connected.
    Connected {
        /// Negotiated version.
        version: VmbusVersion,
    },
    /// The guest disconnected (unload, or a new InitiateContact); every channel was
    /// closed first with [`Action::Close`].
    Disconnected,
    /// Open a channel: map the rings, start the device, then call
    /// [`Server::open_complete`].
    Open(OpenRequest),
    /// Close the host side of a channel (guest close, rescind, unload). The ring GPADL
    /// must not be used after this.
    Close {
        /// The channel.
        relid: u32,
    },
    /// The guest moved the channel's interrupt to another VP.
    Retarget {
        /// The channel.
        relid: u32,
        /// The new VP.
        target_vp: u32,
    },
    /// A GPADL is complete and valid; devices may look it up by id (NetVSP's receive and
    /// send buffers are GPADLs named in NVSP messages).
    GpadlReady {
        /// The channel it was created for.
        relid: u32,
        /// The GPADL id.
        id: u32,
        /// Its ranges.
        gpadl: Gpadl,
    },
    /// The guest tore a GPADL down (and no channel uses it), with
    /// [`ServerConfig::defer_gpadl_teardown`]: once nothing of the host uses its pages
    /// any more, call [`Server::complete_gpadl_teardown`], which answers the guest. Until
    /// then the GPADL can be neither used for an open nor torn down again.
    GpadlTeardownRequested {
        /// The GPADL id.
        gpadl: u32,
    },
    /// A GPADL no longer exists; drop any mapping of it.
    GpadlReleased {
        /// The GPADL id.
        gpadl: u32,
    },
    /// A rescinded channel's relid was released by the guest; the device may go.
    Released {
        /// The channel.
        relid: u32,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum ChannelState {
    Offered,
    Opening {
        gpadl: u32,
    },
    Open {
        gpadl: u32,
    },
    /// Rescinded; waiting for RelIdReleased.
    Rescinded,
}

#[derive(Clone, Debug)]
struct Channel {
    params: OfferParams,
    state: ChannelState,
    target_vp: u32,
}

#[derive(Clone, Debug)]
enum GpadlState {
    Building(GpadlAccumulator),
    Ready(Gpadl),
}

#[derive(Clone, Debug)]
struct GpadlEntry {
    relid: u32,
    state: GpadlState,
    teardown_pending: bool,
    /// Teardown left to the host ([`Action::GpadlTeardownRequested`] sent).
    host_teardown: bool,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
struct Connection {
    version: VmbusVersion,
    features: FeatureFlags,
    vp: u32,
    sint: u8,
    offers_requested: bool,
}

/// Counters.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Messages handled.
    pub messages: u64,
    /// Messages rejected (malformed, out of state, unknown channel, refused).
    pub rejected: u64,
    /// GPADLs created.
    pub gpadls_created: u64,
    /// GPADLs refused because they named pages outside the guest's RAM
    /// ([`ServerConfig::guest_ram`]).
    pub gpadls_outside_ram: u64,
    /// Channels opened.
    pub opens: u64,
}

/// Whether every page `g` names lies in `ram` (page ranges; an empty list accepts
/// all). Bounded: pages (capped by the GPADL limits) times RAM ranges.
fn in_guest_ram(ram: &[(u64, u64)], g: &Gpadl) -> bool {
    ram.is_empty()
        || g.ranges.iter().flat_map(|r| r.pfns.iter()).all(|&pfn| {
            ram.iter()
                .any(|&(first, count)| pfn.wrapping_sub(first) < count)
        })
}

/// The VMBus server.
pub struct Server {
    config: ServerConfig,
    connection: Option<Connection>,
    channels: BTreeMap<u32, Channel>,
    gpadls: BTreeMap<u32, GpadlEntry>,
    actions: VecDeque<Action>,
    stats: ServerStats,
}

/// Host API errors.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OfferError {
    /// Every relid is in use.
    NoFreeRelid,
    /// No such channel.
    UnknownChannel,
}

impl Server {
    /// A server with no offers and no connection.
    pub fn new(config: ServerConfig) -> Self {
        Self {
            config,
            connection: None,
            channels: BTreeMap::new(),
            gpadls: BTreeMap::new(),
            actions: VecDeque::new(),
            stats: ServerStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> ServerStats {
        self.stats
    }

    /// The negotiated version, if connected.
    pub fn version(&self) -> Option<VmbusVersion> {
        self.connection.map(|c| c.version)
    }

    /// The next action to carry out.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Number of live GPADLs (for tests and diagnostics).
    pub fn gpadl_count(&self) -> usize {
        self.gpadls.len()
    }

    /// Number of channels (offered, open or rescinded).
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Whether `relid` is open.
    pub fn is_open(&self, relid: u32) -> bool {
        matches!(
            self.channels.get(&relid).map(|c| &c.state),
            Some(ChannelState::Open { .. })
        )
    }

    fn offer_message(&self, relid: u32, c: &Channel) -> Message {
        let p = &c.params;
        Message::OfferChannel(OfferChannel {
            interface_type: p.interface_type,
            interface_instance: p.interface_instance,
            interrupt_latency: 0,
            reserved2: 0,
            flags: p.flags,
            mmio_megabytes: p.mmio_megabytes,
            user_defined: p.user_defined,
            subchannel_index: p.subchannel_index,
            mmio_megabytes_optional: 0,
            child_relid: relid,
            monitor_id: 0,
            // No MNF: the guest signals with HvSignalEvent (linux-guest.md B.3).
            monitor_allocated: 0,
            is_dedicated_interrupt: 1,
            connection_id: CHANNEL_CONNECTION_ID_BASE + relid,
        })
    }

    fn send(&mut self, message: Message) {
        if let Some(c) = self.connection {
            self.actions.push_back(Action::Send {
                vp: c.vp,
                sint: c.sint,
                message,
            });
        }
    }

    /// Offers a channel; returns its relid. If the guest has requested offers it is
    /// sent now, otherwise with the next RequestOffers.
    pub fn offer(&mut self, params: OfferParams) -> Result<u32, OfferError> {
        let relid = (1..=self.config.max_channels)
            .find(|r| !self.channels.contains_key(r))
            .ok_or(OfferError::NoFreeRelid)?;
        let c = Channel {
            params,
            state: ChannelState::Offered,
            target_vp: 0,
        };
        if self.connection.is_some_and(|c| c.offers_requested) {
            let m = self.offer_message(relid, &c);
            self.send(m);
        }
        self.channels.insert(relid, c);
        Ok(relid)
    }

    /// Rescinds a channel. An open channel is closed first ([`Action::Close`]); the
    /// relid stays reserved until the guest releases it.
    pub fn rescind(&mut self, relid: u32) -> Result<(), OfferError> {
        let state = self
            .channels
            .get(&relid)
            .map(|c| c.state.clone())
            .ok_or(OfferError::UnknownChannel)?;
        match state {
            ChannelState::Rescinded => return Ok(()),
            ChannelState::Open { gpadl } | ChannelState::Opening { gpadl } => {
                self.actions.push_back(Action::Close { relid });
                self.release_gpadl_use(gpadl);
            }
            ChannelState::Offered => {}
        }
        if self.connection.is_some_and(|c| c.offers_requested) {
            if let Some(c) = self.channels.get_mut(&relid) {
                c.state = ChannelState::Rescinded;
            }
            self.send(Message::RescindChannelOffer(ChildRelid {
                child_relid: relid,
            }));
        } else {
            self.remove_channel(relid);
        }
        Ok(())
    }

    /// Forgets a channel and every GPADL created for it.
    fn remove_channel(&mut self, relid: u32) {
        self.channels.remove(&relid);
        let ids: Vec<u32> = self
            .gpadls
            .iter()
            .filter(|(_, e)| e.relid == relid)
            .map(|(i, _)| *i)
            .collect();
        for id in ids {
            self.gpadls.remove(&id);
            self.actions.push_back(Action::GpadlReleased { gpadl: id });
        }
        self.actions.push_back(Action::Released { relid });
    }

    /// Completes an [`Action::Open`]: `ok` tells whether the rings were mapped and the
    /// device started. Sends the OpenResult.
    pub fn open_complete(&mut self, relid: u32, open_id: u32, ok: bool) {
        let Some(c) = self.channels.get_mut(&relid) else {
            return;
        };
        let ChannelState::Opening { gpadl } = c.state else {
            return;
        };
        if ok {
            c.state = ChannelState::Open { gpadl };
            self.stats.opens += 1;
        } else {
            c.state = ChannelState::Offered;
            self.release_gpadl_use(gpadl);
        }
        let status = if ok {
            STATUS_SUCCESS
        } else {
            STATUS_UNSUCCESSFUL
        };
        self.send(Message::OpenResult(OpenResult {
            child_relid: relid,
            open_id,
            status,
        }));
    }

    fn reject(&mut self, r: Rejection) -> Result<(), Rejection> {
        self.stats.rejected += 1;
        Err(r)
    }

    /// Handles one message payload the guest posted (already accepted on a message
    /// connection id). Returns the reason if the message was dropped or refused.
    pub fn handle_message(&mut self, bytes: &[u8]) -> Result<(), Rejection> {
        self.stats.messages += 1;
        let (version, features) = match self.connection {
            Some(c) => (Some(c.version), c.features),
            None => (None, FeatureFlags::empty()),
        };
        let msg = match Message::parse_for(bytes, version, features) {
            Ok(m) => m,
            Err(e) => return self.reject(Rejection::Malformed(e)),
        };
        match msg {
            Message::InitiateContact(ic, _) => self.initiate_contact(&ic),
            Message::RequestOffers => self.request_offers(),
            Message::GpadlHeader(h) => self.gpadl_header(&h),
            Message::GpadlBody(b) => self.gpadl_body(&b),
            Message::GpadlTeardown(t) => self.gpadl_teardown(t.child_relid, t.gpadl),
            Message::OpenChannel(o, _) => self.open_channel(&o),
            Message::CloseChannel(c) => self.close_channel(c.child_relid),
            Message::RelIdReleased(r) => self.relid_released(r.child_relid),
            Message::Unload => self.unload(),
            Message::ModifyChannel(m) => self.modify_channel(m.child_relid, m.target_vp),
            other => self.reject(Rejection::Unsupported(other.message_type())),
        }
    }

    fn initiate_contact(&mut self, ic: &InitiateContact) -> Result<(), Rejection> {
        let version = VmbusVersion(ic.version_requested);
        // A new InitiateContact while connected (a guest that restarted without
        // unloading): reset the connection first.
        if self.connection.is_some() {
            self.disconnect();
        }
        let sint = if version.uses_message_sint() {
            ic.msg_sint()
        } else {
            VMBUS_MESSAGE_SINT
        };
        let accept = self.config.versions.contains(&version)
            && sint < 16
            && ic.target_vcpu < self.config.vp_count;
        let reply = |supported: bool, conn: u32| {
            Message::VersionResponse(VersionResponseMessage {
                response: VersionResponse {
                    version_supported: supported as u8,
                    connection_state: connection_state::SUCCESSFUL,
                    padding: 0,
                    msg_conn_id: conn,
                },
                supported_features: None,
                monitor_pages: None,
            })
        };
        if !accept {
            // Answer on the VP/SINT the guest named when they are valid, else VP 0 SINT 2,
            // so the guest can try its next version.
            let vp = if ic.target_vcpu < self.config.vp_count {
                ic.target_vcpu
            } else {
                0
            };
            let sint = if sint < 16 { sint } else { VMBUS_MESSAGE_SINT };
            self.actions.push_back(Action::Send {
                vp,
                sint,
                message: reply(false, 0),
            });
            return self.reject(Rejection::VersionRefused(version));
        }
        self.connection = Some(Connection {
            version,
            features: FeatureFlags::empty(),
            vp: ic.target_vcpu,
            sint,
            offers_requested: false,
        });
        let conn = if version.has_msg_conn_id() {
            MESSAGE_CONNECTION_ID
        } else {
            0
        };
        self.send(reply(true, conn));
        self.actions.push_back(Action::Connected { version });
        Ok(())
    }

    fn request_offers(&mut self) -> Result<(), Rejection> {
        let Some(conn) = self.connection.as_mut() else {
            return self.reject(Rejection::OutOfState(
                "RequestOffers before InitiateContact",
            ));
        };
        if conn.offers_requested {
            return self.reject(Rejection::OutOfState("RequestOffers twice"));
        }
        conn.offers_requested = true;
        let offers: Vec<Message> = self
            .channels
            .iter()
            .filter(|(_, c)| c.state != ChannelState::Rescinded)
            .map(|(r, c)| self.offer_message(*r, c))
            .collect();
        for m in offers {
            self.send(m);
        }
        self.send(Message::AllOffersDelivered);
        Ok(())
    }

    fn connected(&self) -> bool {
        self.connection.is_some()
    }

    fn gpadl_reply(&mut self, relid: u32, gpadl: u32, ok: bool) {
        let status = if ok {
            STATUS_SUCCESS
        } else {
            STATUS_UNSUCCESSFUL
        };
        self.send(Message::GpadlCreated(GpadlCreated {
            child_relid: relid,
            gpadl,
            status,
        }));
    }

    fn gpadl_header(&mut self, h: &crate::channel::GpadlHeaderMessage) -> Result<(), Rejection> {
        if !self.connected() {
            return self.reject(Rejection::OutOfState("GpadlHeader before InitiateContact"));
        }
        let (relid, id) = (h.header.child_relid, h.header.gpadl);
        let why = if !matches!(self.channels.get(&relid).map(|c| &c.state), Some(s) if *s != ChannelState::Rescinded)
        {
            Some("unknown channel")
        } else if self.gpadls.contains_key(&id) {
            Some("duplicate GPADL id")
        } else if self.gpadls.len() >= self.config.max_gpadls {
            Some("too many GPADLs")
        } else {
            None
        };
        if let Some(why) = why {
            self.gpadl_reply(relid, id, false);
            return self.reject(Rejection::GpadlRefused(id, why));
        }
        // A range header per range plus the pages: allow the page cap plus headers.
        let limits = GpadlLimits {
            max_words: self.config.max_gpadl_pages + 64,
            max_ranges: 64,
        };
        match GpadlAccumulator::new(h, &limits) {
            Ok(acc) => {
                self.gpadls.insert(
                    id,
                    GpadlEntry {
                        relid,
                        state: GpadlState::Building(acc),
                        teardown_pending: false,
                        host_teardown: false,
                    },
                );
                self.try_finish_gpadl(id)
            }
            Err(_) => {
                self.gpadl_reply(relid, id, false);
                self.reject(Rejection::GpadlRefused(id, "invalid header"))
            }
        }
    }

    fn gpadl_body(&mut self, b: &crate::channel::GpadlBodyMessage) -> Result<(), Rejection> {
        let id = b.body.gpadl;
        let Some(GpadlEntry {
            state: GpadlState::Building(acc),
            relid,
            ..
        }) = self.gpadls.get_mut(&id)
        else {
            return self.reject(Rejection::OutOfState(
                "GpadlBody for no GPADL under construction",
            ));
        };
        let relid = *relid;
        if acc.push_body(b).is_err() {
            self.gpadls.remove(&id);
            self.gpadl_reply(relid, id, false);
            return self.reject(Rejection::GpadlRefused(
                id,
                "body overflows the announced length",
            ));
        }
        self.try_finish_gpadl(id)
    }

    fn try_finish_gpadl(&mut self, id: u32) -> Result<(), Rejection> {
        let Some(entry) = self.gpadls.get_mut(&id) else {
            return Ok(());
        };
        let GpadlState::Building(acc) = &entry.state else {
            return Ok(());
        };
        if !acc.is_complete() {
            return Ok(());
        }
        let relid = entry.relid;
        let result = acc.clone().finish();
        if let Ok(g) = &result
            && !in_guest_ram(&self.config.guest_ram, g)
        {
            self.gpadls.remove(&id);
            self.stats.gpadls_outside_ram += 1;
            self.gpadl_reply(relid, id, false);
            return self.reject(Rejection::GpadlRefused(id, "page outside guest RAM"));
        }
        match result {
            Ok(g) if g.page_count() <= self.config.max_gpadl_pages => {
                self.actions.push_back(Action::GpadlReady {
                    relid,
                    id,
                    gpadl: g.clone(),
                });
                entry.state = GpadlState::Ready(g);
                self.stats.gpadls_created += 1;
                self.gpadl_reply(relid, id, true);
                Ok(())
            }
            _ => {
                self.gpadls.remove(&id);
                self.gpadl_reply(relid, id, false);
                self.reject(Rejection::GpadlRefused(
                    id,
                    "invalid page list or too many pages",
                ))
            }
        }
    }

    fn gpadl_in_use(&self, id: u32) -> bool {
        self.channels.values().any(|c| {
            matches!(c.state, ChannelState::Open { gpadl } | ChannelState::Opening { gpadl } if gpadl == id)
        })
    }

    fn gpadl_teardown(&mut self, relid: u32, id: u32) -> Result<(), Rejection> {
        let Some(entry) = self.gpadls.get_mut(&id) else {
            return self.reject(Rejection::OutOfState("GpadlTeardown of an unknown GPADL"));
        };
        if entry.host_teardown {
            return self.reject(Rejection::OutOfState("GpadlTeardown already under way"));
        }
        if entry.relid != relid {
            return self.reject(Rejection::OutOfState("GpadlTeardown with the wrong relid"));
        }
        if self.gpadl_in_use(id) {
            // Torn down once the channel using it closes.
            if let Some(e) = self.gpadls.get_mut(&id) {
                e.teardown_pending = true;
            }
            return Ok(());
        }
        self.remove_gpadl(id);
        Ok(())
    }

    fn remove_gpadl(&mut self, id: u32) {
        if self.config.defer_gpadl_teardown {
            if let Some(e) = self.gpadls.get_mut(&id)
                && !e.host_teardown
            {
                e.host_teardown = true;
                e.teardown_pending = true;
                self.actions
                    .push_back(Action::GpadlTeardownRequested { gpadl: id });
            }
            return;
        }
        if self.gpadls.remove(&id).is_some() {
            self.actions.push_back(Action::GpadlReleased { gpadl: id });
            self.send(Message::GpadlTorndown(GpadlTorndown { gpadl: id }));
        }
    }

    /// Completes the teardown of GPADL `id` that [`Action::GpadlTeardownRequested`]
    /// asked for: the GPADL is released and the guest told. Nothing happens for a GPADL
    /// whose teardown was not requested (or that is already gone: the guest unloaded).
    pub fn complete_gpadl_teardown(&mut self, id: u32) {
        if self.gpadls.get(&id).is_some_and(|e| e.host_teardown) {
            self.gpadls.remove(&id);
            self.actions.push_back(Action::GpadlReleased { gpadl: id });
            self.send(Message::GpadlTorndown(GpadlTorndown { gpadl: id }));
        }
    }

    fn release_gpadl_use(&mut self, id: u32) {
        if self.gpadls.get(&id).is_some_and(|e| e.teardown_pending) && !self.gpadl_in_use(id) {
            self.remove_gpadl(id);
        }
    }

    fn open_channel(&mut self, o: &crate::channel::OpenChannel) -> Result<(), Rejection> {
        let Some(conn) = self.connection else {
            return self.reject(Rejection::OutOfState("OpenChannel before InitiateContact"));
        };
        let relid = o.child_relid;
        let refuse = |s: &mut Self, why: &'static str| {
            if s.channels.contains_key(&relid) {
                s.send(Message::OpenResult(OpenResult {
                    child_relid: relid,
                    open_id: o.open_id,
                    status: STATUS_UNSUCCESSFUL,
                }));
            }
            s.reject(Rejection::OpenRefused(relid, why))
        };
        match self.channels.get(&relid).map(|c| &c.state) {
            None => return refuse(self, "unknown channel"),
            Some(ChannelState::Offered) => {}
            Some(_) => return refuse(self, "channel not closed"),
        }
        if o.target_vp >= self.config.vp_count {
            return refuse(self, "target VP out of range");
        }
        let gpadl = match self.gpadls.get(&o.ring_buffer_gpadl_handle) {
            Some(GpadlEntry {
                relid: r,
                state: GpadlState::Ready(g),
                teardown_pending: false,
                host_teardown: false,
            }) if *r == relid => g.clone(),
            _ => {
                return refuse(
                    self,
                    "ring GPADL unknown, incomplete, or of another channel",
                );
            }
        };
        if self.gpadl_in_use(o.ring_buffer_gpadl_handle) {
            return refuse(self, "ring GPADL already in use");
        }
        let [range] = gpadl.ranges.as_slice() else {
            return refuse(self, "ring GPADL must be one range");
        };
        let pages = range.pfns.len();
        let down = o.downstream_ring_buffer_page_offset as usize;
        if range.byte_offset != 0 || range.byte_count as usize != pages * 4096 {
            return refuse(self, "ring GPADL must be whole pages");
        }
        // Each ring needs its control page and at least one data page.
        if down < 2 || pages < down + 2 {
            return refuse(self, "ring split leaves a ring without data pages");
        }
        let id = o.ring_buffer_gpadl_handle;
        if let Some(c) = self.channels.get_mut(&relid) {
            c.state = ChannelState::Opening { gpadl: id };
            c.target_vp = o.target_vp;
        }
        self.actions.push_back(Action::Open(OpenRequest {
            relid,
            open_id: o.open_id,
            gpadl,
            downstream_page_offset: o.downstream_ring_buffer_page_offset,
            target_vp: o.target_vp,
            connection_id: CHANNEL_CONNECTION_ID_BASE + relid,
            sint: conn.sint,
            user_data: o.user_data,
        }));
        Ok(())
    }

    fn close_channel(&mut self, relid: u32) -> Result<(), Rejection> {
        let state = self.channels.get(&relid).map(|c| c.state.clone());
        match state {
            Some(ChannelState::Open { gpadl }) | Some(ChannelState::Opening { gpadl }) => {
                if let Some(c) = self.channels.get_mut(&relid) {
                    c.state = ChannelState::Offered;
                }
                self.actions.push_back(Action::Close { relid });
                self.release_gpadl_use(gpadl);
                Ok(())
            }
            _ => self.reject(Rejection::UnknownChannel(relid)),
        }
    }

    fn relid_released(&mut self, relid: u32) -> Result<(), Rejection> {
        if self
            .channels
            .get(&relid)
            .is_some_and(|c| c.state == ChannelState::Rescinded)
        {
            // GPADLs of a released channel go with it.
            self.remove_channel(relid);
            Ok(())
        } else {
            self.reject(Rejection::UnknownChannel(relid))
        }
    }

    fn modify_channel(&mut self, relid: u32, target_vp: u32) -> Result<(), Rejection> {
        let ok = target_vp < self.config.vp_count
            && self
                .channels
                .get(&relid)
                .is_some_and(|c| matches!(c.state, ChannelState::Open { .. }));
        if ok {
            if let Some(c) = self.channels.get_mut(&relid) {
                c.target_vp = target_vp;
            }
            self.actions
                .push_back(Action::Retarget { relid, target_vp });
        }
        if self.version().is_some_and(|v| v.0 >= VmbusVersion::V5_3.0) {
            let status = if ok {
                STATUS_SUCCESS
            } else {
                STATUS_UNSUCCESSFUL
            };
            self.send(Message::ModifyChannelResponse(ModifyChannelResponse {
                child_relid: relid,
                status,
            }));
        }
        if ok {
            Ok(())
        } else {
            self.reject(Rejection::UnknownChannel(relid))
        }
    }

    /// Closes every channel, forgets every GPADL and rescinded relid, and drops the
    /// connection. Offers stay (sent again after the next RequestOffers).
    fn disconnect(&mut self) {
        let relids: Vec<u32> = self.channels.keys().copied().collect();
        for relid in relids {
            let Some(c) = self.channels.get_mut(&relid) else {
                continue;
            };
            match c.state {
                ChannelState::Open { .. } | ChannelState::Opening { .. } => {
                    c.state = ChannelState::Offered;
                    self.actions.push_back(Action::Close { relid });
                }
                ChannelState::Rescinded => self.remove_channel(relid),
                ChannelState::Offered => {}
            }
        }
        let ids: Vec<u32> = self.gpadls.keys().copied().collect();
        for id in ids {
            self.actions.push_back(Action::GpadlReleased { gpadl: id });
        }
        self.gpadls.clear();
        self.connection = None;
        self.actions.push_back(Action::Disconnected);
    }

    fn unload(&mut self) -> Result<(), Rejection> {
        let Some(conn) = self.connection else {
            return self.reject(Rejection::OutOfState("Unload while disconnected"));
        };
        self.disconnect();
        self.actions.push_back(Action::Send {
            vp: conn.vp,
            sint: conn.sint,
            message: Message::UnloadResponse,
        });
        Ok(())
    }

    /// Invariants, for tests and fuzzing: every GPADL belongs to an existing channel,
    /// every opening/open channel's GPADL exists, counts are within the configured caps.
    pub fn check_invariants(&self) -> Result<(), &'static str> {
        if self.gpadls.len() > self.config.max_gpadls {
            return Err("GPADL count above cap");
        }
        if self.channels.len() > self.config.max_channels as usize {
            return Err("channel count above cap");
        }
        for e in self.gpadls.values() {
            if !self.channels.contains_key(&e.relid) {
                return Err("GPADL of a missing channel");
            }
            if let GpadlState::Ready(g) = &e.state
                && g.page_count() > self.config.max_gpadl_pages
            {
                return Err("GPADL above page cap");
            }
        }
        for c in self.channels.values() {
            if let ChannelState::Open { gpadl } | ChannelState::Opening { gpadl } = c.state
                && !matches!(
                    self.gpadls.get(&gpadl).map(|e| &e.state),
                    Some(GpadlState::Ready(_))
                )
            {
                return Err("open channel without its GPADL");
            }
        }
        if self.connection.is_none() && !self.gpadls.is_empty() {
            return Err("GPADLs without a connection");
        }
        Ok(())
    }
}
