//! The VMBus client (guest side) state machine, the mirror of [`super::server`].
//!
//! Everything the host sends is untrusted (confidential-VM style): replies that match no
//! request, offers with duplicate relids, or messages out of state are rejected and
//! counted, never acted upon.

use super::{MESSAGE_CONNECTION_ID, MESSAGE_CONNECTION_ID_4, Rejection, VMBUS_MESSAGE_SINT};
use crate::channel::gpadl::{GpaRange, split};
use crate::channel::{
    ChildRelid, GpadlTeardown, InitiateContact, Message, ModifyChannel, OfferChannel, OpenChannel,
    STATUS_SUCCESS,
};
use crate::version::{FeatureFlags, VmbusVersion};
use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

/// Client configuration.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Versions to try, newest first. Default: what Linux tries (5.3 down to 2.4).
    pub versions: Vec<VmbusVersion>,
    /// VP that receives channel-management messages.
    pub target_vcpu: u32,
    /// SINT for messages (5.0 and later; older versions always use 2).
    pub sint: u8,
    /// Maximum offers accepted (the host could send unboundedly many).
    pub max_offers: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            versions: VmbusVersion::LINUX_GUEST_ORDER.to_vec(),
            target_vcpu: 0,
            sint: VMBUS_MESSAGE_SINT,
            max_offers: 4096,
        }
    }
}

/// What the runtime must do, or learns.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientAction {
    /// Post `message` with HvPostMessage on `connection_id`.
    Send {
        /// The message connection id.
        connection_id: u32,
        /// The message.
        message: Message,
    },
    /// Connected at `version`.
    Connected {
        /// The version.
        version: VmbusVersion,
    },
    /// Every version was refused.
    ConnectFailed,
    /// A channel offer.
    Offer(OfferChannel),
    /// The host has sent every offer.
    AllOffersDelivered,
    /// A GPADL was created (or refused).
    GpadlCreated {
        /// The channel.
        relid: u32,
        /// The GPADL id.
        gpadl: u32,
        /// Whether the host accepted it.
        ok: bool,
    },
    /// A GPADL was torn down.
    GpadlTorndown {
        /// The GPADL id.
        gpadl: u32,
    },
    /// An open completed.
    Opened {
        /// The channel.
        relid: u32,
        /// Whether the host opened it.
        ok: bool,
    },
    /// The host rescinded a channel: stop using it, close it if open, then call
    /// [`Client::release_relid`].
    Rescinded {
        /// The channel.
        relid: u32,
    },
    /// A ModifyChannel was answered (5.3 and later).
    Modified {
        /// The channel.
        relid: u32,
        /// Whether the host accepted it.
        ok: bool,
    },
    /// The host confirmed the unload; the connection is gone.
    Unloaded,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum ChanState {
    Offered,
    Opening,
    Open,
    Rescinded,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum ConnState {
    Idle,
    /// Waiting for a VersionResponse to `versions[index]`.
    Contacting(usize),
    Connected(VmbusVersion, u32),
    Unloading(VmbusVersion, u32),
}

/// Client-side request errors (the caller asked for something impossible).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientError {
    /// Not connected.
    NotConnected,
    /// No such channel, or it is in the wrong state.
    BadChannel(u32),
    /// The GPADL page list cannot be described.
    BadGpadl,
}

/// Counters.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Messages handled.
    pub messages: u64,
    /// Messages rejected.
    pub rejected: u64,
}

/// The VMBus client.
pub struct Client {
    config: ClientConfig,
    state: ConnState,
    offers: BTreeMap<u32, (OfferChannel, ChanState)>,
    /// GPADL id -> (relid, created).
    gpadls: BTreeMap<u32, (u32, bool)>,
    next_gpadl: u32,
    actions: VecDeque<ClientAction>,
    stats: ClientStats,
}

impl Client {
    /// A disconnected client.
    pub fn new(config: ClientConfig) -> Self {
        Self {
            config,
            state: ConnState::Idle,
            offers: BTreeMap::new(),
            gpadls: BTreeMap::new(),
            // Linux starts GPADL handles at 0xE1E10.
            next_gpadl: 0xE1E10,
            actions: VecDeque::new(),
            stats: ClientStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> ClientStats {
        self.stats
    }

    /// The next action.
    pub fn poll_action(&mut self) -> Option<ClientAction> {
        self.actions.pop_front()
    }

    /// The negotiated version.
    pub fn version(&self) -> Option<VmbusVersion> {
        match self.state {
            ConnState::Connected(v, _) | ConnState::Unloading(v, _) => Some(v),
            _ => None,
        }
    }

    /// The offer of `relid`, if known.
    pub fn offer(&self, relid: u32) -> Option<&OfferChannel> {
        self.offers.get(&relid).map(|(o, _)| o)
    }

    fn contact(&mut self, index: usize) {
        let Some(&v) = self.config.versions.get(index) else {
            self.state = ConnState::Idle;
            self.actions.push_back(ClientAction::ConnectFailed);
            return;
        };
        self.state = ConnState::Contacting(index);
        let (conn, target) = if v.uses_message_sint() {
            (
                MESSAGE_CONNECTION_ID_4,
                InitiateContact::target_info(self.config.sint, 0, 0),
            )
        } else {
            (MESSAGE_CONNECTION_ID, 0)
        };
        let ic = InitiateContact {
            version_requested: v.0,
            target_vcpu: self.config.target_vcpu,
            interrupt_page_or_target_info: target,
            monitor_page1: 0,
            monitor_page2: 0,
        };
        self.actions.push_back(ClientAction::Send {
            connection_id: conn,
            message: Message::InitiateContact(ic, None),
        });
    }

    /// Starts the connection with the newest configured version.
    pub fn connect(&mut self) {
        self.offers.clear();
        self.gpadls.clear();
        self.contact(0);
    }

    /// The host refused the InitiateContact post itself (hypercall status
    /// INVALID_CONNECTION_ID: a host older than 5.0 has no connection 4): try the next
    /// version, as Linux does.
    pub fn contact_refused(&mut self) {
        if let ConnState::Contacting(i) = self.state {
            self.contact(i + 1);
        }
    }

    fn msg_conn(&self) -> Result<u32, ClientError> {
        match self.state {
            ConnState::Connected(_, c) => Ok(c),
            _ => Err(ClientError::NotConnected),
        }
    }

    fn send(&mut self, message: Message) -> Result<(), ClientError> {
        let connection_id = self.msg_conn()?;
        self.actions.push_back(ClientAction::Send {
            connection_id,
            message,
        });
        Ok(())
    }

    /// Asks for the offers.
    pub fn request_offers(&mut self) -> Result<(), ClientError> {
        self.send(Message::RequestOffers)
    }

    /// Describes `ranges` to the host as a GPADL for `relid`; returns its id. The host
    /// answers with [`ClientAction::GpadlCreated`].
    pub fn create_gpadl(&mut self, relid: u32, ranges: &[GpaRange]) -> Result<u32, ClientError> {
        self.msg_conn()?;
        if !matches!(self.offers.get(&relid), Some((_, s)) if *s != ChanState::Rescinded) {
            return Err(ClientError::BadChannel(relid));
        }
        let id = self.next_gpadl;
        let (header, bodies) = split(relid, id, ranges).map_err(|_| ClientError::BadGpadl)?;
        self.next_gpadl = self.next_gpadl.wrapping_add(1);
        self.gpadls.insert(id, (relid, false));
        self.send(Message::GpadlHeader(header))?;
        for b in bodies {
            self.send(Message::GpadlBody(b))?;
        }
        Ok(id)
    }

    /// Opens `relid` on ring GPADL `gpadl`, the host-to-guest ring starting at page
    /// `downstream_page_offset`.
    pub fn open(
        &mut self,
        relid: u32,
        gpadl: u32,
        downstream_page_offset: u32,
        target_vp: u32,
        user_data: [u8; 120],
    ) -> Result<(), ClientError> {
        match self.offers.get_mut(&relid) {
            Some((_, s)) if *s == ChanState::Offered => *s = ChanState::Opening,
            _ => return Err(ClientError::BadChannel(relid)),
        }
        self.send(Message::OpenChannel(
            OpenChannel {
                child_relid: relid,
                open_id: relid,
                ring_buffer_gpadl_handle: gpadl,
                target_vp,
                downstream_ring_buffer_page_offset: downstream_page_offset,
                user_data,
            },
            None,
        ))
    }

    /// Closes `relid`.
    pub fn close(&mut self, relid: u32) -> Result<(), ClientError> {
        match self.offers.get_mut(&relid) {
            Some((_, s)) if matches!(*s, ChanState::Open | ChanState::Opening) => {
                *s = ChanState::Offered
            }
            Some((_, ChanState::Rescinded)) => return Ok(()),
            _ => return Err(ClientError::BadChannel(relid)),
        }
        self.send(Message::CloseChannel(ChildRelid { child_relid: relid }))
    }

    /// Tears down a GPADL (the host answers with [`ClientAction::GpadlTorndown`]).
    pub fn teardown_gpadl(&mut self, gpadl: u32) -> Result<(), ClientError> {
        let (relid, _) = *self.gpadls.get(&gpadl).ok_or(ClientError::BadGpadl)?;
        self.send(Message::GpadlTeardown(GpadlTeardown {
            child_relid: relid,
            gpadl,
        }))
    }

    /// Releases a rescinded relid.
    pub fn release_relid(&mut self, relid: u32) -> Result<(), ClientError> {
        if !matches!(self.offers.get(&relid), Some((_, ChanState::Rescinded))) {
            return Err(ClientError::BadChannel(relid));
        }
        self.offers.remove(&relid);
        self.gpadls.retain(|_, (r, _)| *r != relid);
        self.send(Message::RelIdReleased(ChildRelid { child_relid: relid }))
    }

    /// Moves a channel's interrupt to `target_vp` (4.1 and later).
    pub fn modify_channel(&mut self, relid: u32, target_vp: u32) -> Result<(), ClientError> {
        if !matches!(self.offers.get(&relid), Some((_, ChanState::Open))) {
            return Err(ClientError::BadChannel(relid));
        }
        self.send(Message::ModifyChannel(ModifyChannel {
            child_relid: relid,
            target_vp,
        }))
    }

    /// Disconnects; the host answers with UnloadResponse ([`ClientAction::Unloaded`]).
    pub fn unload(&mut self) -> Result<(), ClientError> {
        let conn = self.msg_conn()?;
        self.send(Message::Unload)?;
        if let Some(v) = self.version() {
            self.state = ConnState::Unloading(v, conn);
        }
        Ok(())
    }

    fn reject(&mut self, r: Rejection) -> Result<(), Rejection> {
        self.stats.rejected += 1;
        Err(r)
    }

    /// Handles one message the host posted to our SINT.
    pub fn handle_message(&mut self, bytes: &[u8]) -> Result<(), Rejection> {
        self.stats.messages += 1;
        let msg = match Message::parse_for(bytes, self.version(), FeatureFlags::empty()) {
            Ok(m) => m,
            Err(e) => return self.reject(Rejection::Malformed(e)),
        };
        match msg {
            Message::VersionResponse(r) => {
                let ConnState::Contacting(i) = self.state else {
                    return self.reject(Rejection::OutOfState(
                        "VersionResponse without InitiateContact",
                    ));
                };
                let Some(&v) = self.config.versions.get(i) else {
                    return self.reject(Rejection::OutOfState(
                        "VersionResponse without InitiateContact",
                    ));
                };
                if r.response.version_supported == 0 {
                    self.contact(i + 1);
                    return Ok(());
                }
                let conn = if v.has_msg_conn_id() {
                    r.response.msg_conn_id
                } else {
                    MESSAGE_CONNECTION_ID
                };
                // The host must name a message connection; anything else is refused.
                if !super::MESSAGE_CONNECTION_IDS.contains(&conn) {
                    self.state = ConnState::Idle;
                    self.actions.push_back(ClientAction::ConnectFailed);
                    return self.reject(Rejection::OutOfState(
                        "VersionResponse names an invalid connection id",
                    ));
                }
                self.state = ConnState::Connected(v, conn);
                self.actions
                    .push_back(ClientAction::Connected { version: v });
                Ok(())
            }
            Message::OfferChannel(o) => {
                let relid = o.child_relid;
                if relid == 0
                    || self.offers.contains_key(&relid)
                    || self.offers.len() >= self.config.max_offers
                {
                    return self.reject(Rejection::UnknownChannel(relid));
                }
                self.offers.insert(relid, (o, ChanState::Offered));
                self.actions.push_back(ClientAction::Offer(o));
                Ok(())
            }
            Message::AllOffersDelivered => {
                self.actions.push_back(ClientAction::AllOffersDelivered);
                Ok(())
            }
            Message::GpadlCreated(c) => match self.gpadls.get_mut(&c.gpadl) {
                Some((relid, created)) if *relid == c.child_relid && !*created => {
                    let ok = c.status == STATUS_SUCCESS;
                    if ok {
                        *created = true;
                    } else {
                        self.gpadls.remove(&c.gpadl);
                    }
                    self.actions.push_back(ClientAction::GpadlCreated {
                        relid: c.child_relid,
                        gpadl: c.gpadl,
                        ok,
                    });
                    Ok(())
                }
                _ => self.reject(Rejection::OutOfState("GpadlCreated for no pending GPADL")),
            },
            Message::GpadlTorndown(t) => {
                if self.gpadls.remove(&t.gpadl).is_none() {
                    return self
                        .reject(Rejection::OutOfState("GpadlTorndown for an unknown GPADL"));
                }
                self.actions
                    .push_back(ClientAction::GpadlTorndown { gpadl: t.gpadl });
                Ok(())
            }
            Message::OpenResult(r) => match self.offers.get_mut(&r.child_relid) {
                Some((_, s)) if *s == ChanState::Opening => {
                    let ok = r.status == STATUS_SUCCESS;
                    *s = if ok {
                        ChanState::Open
                    } else {
                        ChanState::Offered
                    };
                    self.actions.push_back(ClientAction::Opened {
                        relid: r.child_relid,
                        ok,
                    });
                    Ok(())
                }
                _ => self.reject(Rejection::OutOfState("OpenResult for no pending open")),
            },
            Message::RescindChannelOffer(r) => match self.offers.get_mut(&r.child_relid) {
                Some((_, s)) if *s != ChanState::Rescinded => {
                    *s = ChanState::Rescinded;
                    self.actions.push_back(ClientAction::Rescinded {
                        relid: r.child_relid,
                    });
                    Ok(())
                }
                _ => self.reject(Rejection::UnknownChannel(r.child_relid)),
            },
            Message::ModifyChannelResponse(r) => {
                self.actions.push_back(ClientAction::Modified {
                    relid: r.child_relid,
                    ok: r.status == STATUS_SUCCESS,
                });
                Ok(())
            }
            Message::UnloadResponse => {
                if !matches!(self.state, ConnState::Unloading(..)) {
                    return self.reject(Rejection::OutOfState("UnloadResponse without Unload"));
                }
                self.state = ConnState::Idle;
                self.offers.clear();
                self.gpadls.clear();
                self.actions.push_back(ClientAction::Unloaded);
                Ok(())
            }
            other => self.reject(Rejection::Unsupported(other.message_type())),
        }
    }
}
