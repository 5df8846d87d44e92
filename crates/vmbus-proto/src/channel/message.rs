//! The typed channel-management message: parse from a SynIC payload, emit to bytes,
//! and the version/feature gate of each type.

use super::types::*;
use crate::error::{Error, Result, put, read_prefix};
use crate::guid::Guid;
use crate::version::{FeatureFlags, VmbusVersion};
use zerocopy::IntoBytes;

/// Page-number words a GpadlHeader message can carry: (240 - 20) / 8.
pub const GPADL_HEADER_MAX_WORDS: usize =
    (MAX_MESSAGE_SIZE - HEADER_SIZE - size_of::<GpadlHeader>()) / 8;
/// Page-number words a GpadlBody message can carry: (240 - 16) / 8.
pub const GPADL_BODY_MAX_WORDS: usize =
    (MAX_MESSAGE_SIZE - HEADER_SIZE - size_of::<GpadlBody>()) / 8;

/// A GpadlHeader message: the fixed part and the first words of the range array
/// (each range is one `byte_count | byte_offset << 32` word followed by its PFNs).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct GpadlHeaderMessage {
    /// The fixed part.
    pub header: GpadlHeader,
    words: [u64; GPADL_HEADER_MAX_WORDS],
    len: u8,
}

/// A GpadlBody message: the GPADL id and more words of the range array.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct GpadlBodyMessage {
    /// The fixed part.
    pub body: GpadlBody,
    words: [u64; GPADL_BODY_MAX_WORDS],
    len: u8,
}

macro_rules! word_carrier {
    ($t:ident, $fixed:ident, $field:ident, $max:expr) => {
        impl $t {
            /// Builds the message; `None` if `words` exceeds what one message can hold.
            pub fn new($field: $fixed, words: &[u64]) -> Option<Self> {
                let mut w = [0u64; $max];
                w.get_mut(..words.len())?.copy_from_slice(words);
                Some(Self {
                    $field,
                    words: w,
                    len: words.len() as u8,
                })
            }
            /// The range-array words this message carries.
            pub fn words(&self) -> &[u64] {
                self.words.get(..usize::from(self.len)).unwrap_or(&[])
            }
        }
    };
}
word_carrier!(
    GpadlHeaderMessage,
    GpadlHeader,
    header,
    GPADL_HEADER_MAX_WORDS
);
word_carrier!(GpadlBodyMessage, GpadlBody, body, GPADL_BODY_MAX_WORDS);

/// A VersionResponse in any of its forms.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct VersionResponseMessage {
    /// The base fields. From a pre-5.0 host only `version_supported` is present (the
    /// 9-byte form); the rest then reads as zero.
    pub response: VersionResponse,
    /// VersionResponse2 (6.0): the features the host accepts.
    pub supported_features: Option<u32>,
    /// VersionResponse3: server-specified monitor pages. Only emitted when
    /// `supported_features` is present too.
    pub monitor_pages: Option<VersionResponse3Ext>,
}

/// One channel-management message.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // Copy values of at most 240 wire bytes, no heap.
#[non_exhaustive]
pub enum Message {
    /// 1: host offers a channel.
    OfferChannel(OfferChannel),
    /// 2: host rescinds a channel.
    RescindChannelOffer(ChildRelid),
    /// 3: guest requests offers.
    RequestOffers,
    /// 4: every offer sent.
    AllOffersDelivered,
    /// 5: guest opens a channel; the extension is OpenChannel2 (6.0).
    OpenChannel(OpenChannel, Option<OpenChannel2Ext>),
    /// 6: open result.
    OpenResult(OpenResult),
    /// 7: guest closes a channel.
    CloseChannel(ChildRelid),
    /// 8: GPADL header.
    GpadlHeader(GpadlHeaderMessage),
    /// 9: GPADL body.
    GpadlBody(GpadlBodyMessage),
    /// 10: GPADL created.
    GpadlCreated(GpadlCreated),
    /// 11: GPADL teardown.
    GpadlTeardown(GpadlTeardown),
    /// 12: GPADL torn down.
    GpadlTorndown(GpadlTorndown),
    /// 13: relid released.
    RelIdReleased(ChildRelid),
    /// 14: InitiateContact; the GUID is InitiateContact2's client id (6.0).
    InitiateContact(InitiateContact, Option<Guid>),
    /// 15: VersionResponse.
    VersionResponse(VersionResponseMessage),
    /// 16: unload.
    Unload,
    /// 17: unload response.
    UnloadResponse,
    /// 18: open reserved channel.
    OpenReservedChannel(OpenReservedChannel),
    /// 19: close reserved channel.
    CloseReservedChannel(CloseReservedChannel),
    /// 20: close reserved response.
    CloseReservedResponse(ChildRelid),
    /// 21: TL connect request; the GUID is TlConnectRequest2's silo id (5.2).
    TlConnectRequest(TlConnectRequest, Option<Guid>),
    /// 22: modify channel.
    ModifyChannel(ModifyChannel),
    /// 23: TL connect result.
    TlConnectResult(TlConnectResult),
    /// 24: modify channel response.
    ModifyChannelResponse(ModifyChannelResponse),
    /// 25: modify connection.
    ModifyConnection(ModifyConnection),
    /// 26: modify connection response.
    ModifyConnectionResponse {
        /// [`connection_state`] value.
        connection_state: u8,
    },
    /// 27: pause.
    Pause,
    /// 28: pause response.
    PauseResponse,
    /// 29: resume.
    Resume,
}

/// When a message type may be used.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Gate {
    /// Minimum negotiated version; `None`: also before any version is negotiated.
    pub min_version: Option<VmbusVersion>,
    /// At least one of these features must be negotiated (empty: no requirement).
    pub features: FeatureFlags,
}

impl MessageType {
    /// The gate of this type, or `None` for types this crate does not know. Minimum
    /// versions follow OpenVMM's `vmbus_messages!` table; the gate of 27..=29 (Pause,
    /// PauseResponse, Resume) is taken as 6.0 with the pause/resume feature, as
    /// Microsoft's firmware headers describe them "since Copper".
    pub const fn gate(self) -> Option<Gate> {
        const fn g(v: Option<VmbusVersion>, f: FeatureFlags) -> Option<Gate> {
            Some(Gate {
                min_version: v,
                features: f,
            })
        }
        let none = FeatureFlags::empty();
        match self.0 {
            1..=13 | 16 => g(Some(VmbusVersion::V0_13), none),
            14 | 15 | 19 => g(None, none),
            17 => g(Some(VmbusVersion::V1_1), none),
            18 | 20 | 21 => g(Some(VmbusVersion::V4_0), none),
            22 | 23 => g(Some(VmbusVersion::V4_1), none),
            24 => g(Some(VmbusVersion::V5_3), none),
            25 | 26 => g(Some(VmbusVersion::V6_0), FeatureFlags::MODIFY_CONNECTION),
            27..=29 => g(Some(VmbusVersion::V6_0), FeatureFlags::PAUSE_RESUME),
            _ => None,
        }
    }

    /// Whether this type may be used at `version` (`None`: not yet connected) with
    /// `features` negotiated.
    pub const fn allowed(self, version: Option<VmbusVersion>, features: FeatureFlags) -> bool {
        let Some(gate) = self.gate() else {
            return false;
        };
        if let Some(min) = gate.min_version {
            match version {
                Some(v) if v.0 >= min.0 => {}
                _ => return false,
            }
        }
        gate.features.is_empty() || gate.features.intersects(features)
    }
}

fn body<'a, T: zerocopy::FromBytes>(what: &'static str, b: &'a [u8]) -> Result<(T, &'a [u8])> {
    read_prefix::<T>(what, b)
}

fn words<const N: usize>(what: &'static str, rest: &[u8]) -> Result<([u64; N], u8)> {
    if !rest.len().is_multiple_of(8) {
        return Err(Error::InvalidField {
            what,
            value: rest.len() as u64,
        });
    }
    let n = rest.len() / 8;
    if n > N {
        return Err(Error::TooMany {
            what,
            count: n as u64,
            limit: N as u64,
        });
    }
    let mut w = [0u64; N];
    for (dst, c) in w.iter_mut().zip(rest.chunks_exact(8)) {
        let mut b = [0u8; 8];
        b.copy_from_slice(c);
        *dst = u64::from_le_bytes(b);
    }
    Ok((w, n as u8))
}

impl Message {
    /// The message type.
    pub const fn message_type(&self) -> MessageType {
        match self {
            Self::OfferChannel(_) => MessageType::OFFER_CHANNEL,
            Self::RescindChannelOffer(_) => MessageType::RESCIND_CHANNEL_OFFER,
            Self::RequestOffers => MessageType::REQUEST_OFFERS,
            Self::AllOffersDelivered => MessageType::ALL_OFFERS_DELIVERED,
            Self::OpenChannel(..) => MessageType::OPEN_CHANNEL,
            Self::OpenResult(_) => MessageType::OPEN_CHANNEL_RESULT,
            Self::CloseChannel(_) => MessageType::CLOSE_CHANNEL,
            Self::GpadlHeader(_) => MessageType::GPADL_HEADER,
            Self::GpadlBody(_) => MessageType::GPADL_BODY,
            Self::GpadlCreated(_) => MessageType::GPADL_CREATED,
            Self::GpadlTeardown(_) => MessageType::GPADL_TEARDOWN,
            Self::GpadlTorndown(_) => MessageType::GPADL_TORNDOWN,
            Self::RelIdReleased(_) => MessageType::RELID_RELEASED,
            Self::InitiateContact(..) => MessageType::INITIATE_CONTACT,
            Self::VersionResponse(_) => MessageType::VERSION_RESPONSE,
            Self::Unload => MessageType::UNLOAD,
            Self::UnloadResponse => MessageType::UNLOAD_RESPONSE,
            Self::OpenReservedChannel(_) => MessageType::OPEN_RESERVED_CHANNEL,
            Self::CloseReservedChannel(_) => MessageType::CLOSE_RESERVED_CHANNEL,
            Self::CloseReservedResponse(_) => MessageType::CLOSE_RESERVED_RESPONSE,
            Self::TlConnectRequest(..) => MessageType::TL_CONNECT_REQUEST,
            Self::ModifyChannel(_) => MessageType::MODIFY_CHANNEL,
            Self::TlConnectResult(_) => MessageType::TL_CONNECT_RESULT,
            Self::ModifyChannelResponse(_) => MessageType::MODIFY_CHANNEL_RESPONSE,
            Self::ModifyConnection(_) => MessageType::MODIFY_CONNECTION,
            Self::ModifyConnectionResponse { .. } => MessageType::MODIFY_CONNECTION_RESPONSE,
            Self::Pause => MessageType::PAUSE,
            Self::PauseResponse => MessageType::PAUSE_RESPONSE,
            Self::Resume => MessageType::RESUME,
        }
    }

    /// Parses a SynIC payload structurally, without the version gate. Trailing bytes
    /// after a fixed-size body are ignored (some hosts pad); a body shorter than its
    /// struct, a GPADL word array with a partial word, or a payload over 240 bytes is
    /// an error. Variants with an optional extension ("2"/"3" forms) are chosen by size.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_MESSAGE_SIZE {
            return Err(Error::TooMany {
                what: "channel message size",
                count: bytes.len() as u64,
                limit: MAX_MESSAGE_SIZE as u64,
            });
        }
        let (header, b) = read_prefix::<MessageHeader>("channel message header", bytes)?;
        Ok(match header.message_type {
            MessageType::OFFER_CHANNEL => Self::OfferChannel(body("OfferChannel", b)?.0),
            MessageType::RESCIND_CHANNEL_OFFER => {
                Self::RescindChannelOffer(body("RescindChannelOffer", b)?.0)
            }
            MessageType::REQUEST_OFFERS => Self::RequestOffers,
            MessageType::ALL_OFFERS_DELIVERED => Self::AllOffersDelivered,
            MessageType::OPEN_CHANNEL => {
                let (open, rest) = body::<OpenChannel>("OpenChannel", b)?;
                let ext = read_prefix::<OpenChannel2Ext>("OpenChannel2", rest)
                    .ok()
                    .map(|e| e.0);
                Self::OpenChannel(open, ext)
            }
            MessageType::OPEN_CHANNEL_RESULT => Self::OpenResult(body("OpenResult", b)?.0),
            MessageType::CLOSE_CHANNEL => Self::CloseChannel(body("CloseChannel", b)?.0),
            MessageType::GPADL_HEADER => {
                let (header, rest) = body::<GpadlHeader>("GpadlHeader", b)?;
                let (words, len) = words::<GPADL_HEADER_MAX_WORDS>("GpadlHeader words", rest)?;
                Self::GpadlHeader(GpadlHeaderMessage { header, words, len })
            }
            MessageType::GPADL_BODY => {
                let (body_, rest) = body::<GpadlBody>("GpadlBody", b)?;
                let (words, len) = words::<GPADL_BODY_MAX_WORDS>("GpadlBody words", rest)?;
                Self::GpadlBody(GpadlBodyMessage {
                    body: body_,
                    words,
                    len,
                })
            }
            MessageType::GPADL_CREATED => Self::GpadlCreated(body("GpadlCreated", b)?.0),
            MessageType::GPADL_TEARDOWN => Self::GpadlTeardown(body("GpadlTeardown", b)?.0),
            MessageType::GPADL_TORNDOWN => Self::GpadlTorndown(body("GpadlTorndown", b)?.0),
            MessageType::RELID_RELEASED => Self::RelIdReleased(body("RelIdReleased", b)?.0),
            MessageType::INITIATE_CONTACT => {
                let (ic, rest) = body::<InitiateContact>("InitiateContact", b)?;
                let client = read_prefix::<Guid>("InitiateContact2", rest)
                    .ok()
                    .map(|g| g.0);
                Self::InitiateContact(ic, client)
            }
            MessageType::VERSION_RESPONSE => {
                // Pre-5.0 hosts send only `version_supported` (9-byte message).
                let first = *b.first().ok_or(Error::Truncated {
                    what: "VersionResponse",
                    need: 1,
                    have: 0,
                })?;
                let (response, rest) = match read_prefix::<VersionResponse>("VersionResponse", b) {
                    Ok(r) => r,
                    Err(_) => (
                        VersionResponse {
                            version_supported: first,
                            connection_state: 0,
                            padding: 0,
                            msg_conn_id: 0,
                        },
                        &[][..],
                    ),
                };
                let (supported_features, rest) =
                    match read_prefix::<VersionResponse2Ext>("VersionResponse2", rest) {
                        Ok((e, r)) => (Some(e.supported_features), r),
                        Err(_) => (None, rest),
                    };
                let monitor_pages = if supported_features.is_some() {
                    read_prefix::<VersionResponse3Ext>("VersionResponse3", rest)
                        .ok()
                        .map(|e| e.0)
                } else {
                    None
                };
                Self::VersionResponse(VersionResponseMessage {
                    response,
                    supported_features,
                    monitor_pages,
                })
            }
            MessageType::UNLOAD => Self::Unload,
            MessageType::UNLOAD_RESPONSE => Self::UnloadResponse,
            MessageType::OPEN_RESERVED_CHANNEL => {
                Self::OpenReservedChannel(body("OpenReservedChannel", b)?.0)
            }
            MessageType::CLOSE_RESERVED_CHANNEL => {
                Self::CloseReservedChannel(body("CloseReservedChannel", b)?.0)
            }
            MessageType::CLOSE_RESERVED_RESPONSE => {
                Self::CloseReservedResponse(body("CloseReservedResponse", b)?.0)
            }
            MessageType::TL_CONNECT_REQUEST => {
                let (req, rest) = body::<TlConnectRequest>("TlConnectRequest", b)?;
                let silo = read_prefix::<Guid>("TlConnectRequest2", rest)
                    .ok()
                    .map(|g| g.0);
                Self::TlConnectRequest(req, silo)
            }
            MessageType::MODIFY_CHANNEL => Self::ModifyChannel(body("ModifyChannel", b)?.0),
            MessageType::TL_CONNECT_RESULT => Self::TlConnectResult(body("TlConnectResult", b)?.0),
            MessageType::MODIFY_CHANNEL_RESPONSE => {
                Self::ModifyChannelResponse(body("ModifyChannelResponse", b)?.0)
            }
            MessageType::MODIFY_CONNECTION => {
                Self::ModifyConnection(body("ModifyConnection", b)?.0)
            }
            MessageType::MODIFY_CONNECTION_RESPONSE => Self::ModifyConnectionResponse {
                connection_state: body::<u8>("ModifyConnectionResponse", b)?.0,
            },
            MessageType::PAUSE => Self::Pause,
            MessageType::PAUSE_RESPONSE => Self::PauseResponse,
            MessageType::RESUME => Self::Resume,
            other => {
                return Err(Error::UnknownType {
                    what: "channel message",
                    value: other.0,
                });
            }
        })
    }

    /// Parses and applies the gate for `version` (`None`: nothing negotiated yet) and
    /// the negotiated `features`. The 6.0 extensions (OpenChannel2, InitiateContact2's
    /// client id) are dropped when their feature is not negotiated, as a 6.0 host would
    /// read only the base struct.
    pub fn parse_for(
        bytes: &[u8],
        version: Option<VmbusVersion>,
        features: FeatureFlags,
    ) -> Result<Self> {
        let mut m = Self::parse(bytes)?;
        let t = m.message_type();
        if !t.allowed(version, features) {
            return Err(Error::NotAllowed {
                what: t.name().unwrap_or("channel message"),
                version: version.map_or(0, |v| v.0),
            });
        }
        let v6 = version.is_some_and(|v| v.has_feature_flags());
        match &mut m {
            Self::OpenChannel(_, ext) => {
                let needs = FeatureFlags::GUEST_SPECIFIED_SIGNAL_PARAMETERS
                    | FeatureFlags::CHANNEL_INTERRUPT_REDIRECTION;
                if !(v6 && features.intersects(needs)) {
                    *ext = None;
                }
            }
            Self::TlConnectRequest(_, silo)
                if version.is_none_or(|v| v.0 < VmbusVersion::V5_2.0) =>
            {
                *silo = None;
            }
            Self::VersionResponse(r) if !v6 => {
                r.supported_features = None;
                r.monitor_pages = None;
            }
            _ => {}
        }
        Ok(m)
    }

    /// Bytes [`Message::emit`] writes.
    pub fn encoded_len(&self) -> usize {
        let mut buf = [0u8; MAX_MESSAGE_SIZE];
        self.emit(&mut buf).unwrap_or(0)
    }

    /// Writes the message (header included) into `buf`; returns its length (at most
    /// 240). Fails only if `buf` is too small.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let what = "channel message";
        let header = MessageHeader {
            message_type: self.message_type(),
            padding: 0,
        };
        let mut at = put(what, buf, 0, header.as_bytes())?;
        let mut add = |src: &[u8], at: &mut usize| -> Result<()> {
            *at = put(what, buf, *at, src)?;
            Ok(())
        };
        match self {
            Self::OfferChannel(b) => add(b.as_bytes(), &mut at)?,
            Self::RescindChannelOffer(b)
            | Self::CloseChannel(b)
            | Self::RelIdReleased(b)
            | Self::CloseReservedResponse(b) => add(b.as_bytes(), &mut at)?,
            Self::RequestOffers
            | Self::AllOffersDelivered
            | Self::Unload
            | Self::UnloadResponse
            | Self::Pause
            | Self::PauseResponse
            | Self::Resume => {}
            Self::OpenChannel(b, ext) => {
                add(b.as_bytes(), &mut at)?;
                if let Some(e) = ext {
                    add(e.as_bytes(), &mut at)?;
                }
            }
            Self::OpenResult(b) => add(b.as_bytes(), &mut at)?,
            Self::GpadlHeader(m) => {
                add(m.header.as_bytes(), &mut at)?;
                for w in m.words() {
                    add(&w.to_le_bytes(), &mut at)?;
                }
            }
            Self::GpadlBody(m) => {
                add(m.body.as_bytes(), &mut at)?;
                for w in m.words() {
                    add(&w.to_le_bytes(), &mut at)?;
                }
            }
            Self::GpadlCreated(b) => add(b.as_bytes(), &mut at)?,
            Self::GpadlTeardown(b) => add(b.as_bytes(), &mut at)?,
            Self::GpadlTorndown(b) => add(b.as_bytes(), &mut at)?,
            Self::InitiateContact(b, client) => {
                add(b.as_bytes(), &mut at)?;
                if let Some(g) = client {
                    add(g.as_bytes(), &mut at)?;
                }
            }
            Self::VersionResponse(r) => {
                add(r.response.as_bytes(), &mut at)?;
                if let Some(f) = r.supported_features {
                    add(&f.to_le_bytes(), &mut at)?;
                    if let Some(m) = &r.monitor_pages {
                        add(m.as_bytes(), &mut at)?;
                    }
                }
            }
            Self::OpenReservedChannel(b) => add(b.as_bytes(), &mut at)?,
            Self::CloseReservedChannel(b) => add(b.as_bytes(), &mut at)?,
            Self::TlConnectRequest(b, silo) => {
                add(b.as_bytes(), &mut at)?;
                if let Some(g) = silo {
                    add(g.as_bytes(), &mut at)?;
                }
            }
            Self::ModifyChannel(b) => add(b.as_bytes(), &mut at)?,
            Self::TlConnectResult(b) => add(b.as_bytes(), &mut at)?,
            Self::ModifyChannelResponse(b) => add(b.as_bytes(), &mut at)?,
            Self::ModifyConnection(b) => add(b.as_bytes(), &mut at)?,
            Self::ModifyConnectionResponse { connection_state } => {
                add(&[*connection_state], &mut at)?
            }
        }
        Ok(at)
    }

    /// The message as a 240-byte buffer and its length, ready for an HvMessage payload.
    pub fn to_payload(&self) -> ([u8; MAX_MESSAGE_SIZE], usize) {
        let mut buf = [0u8; MAX_MESSAGE_SIZE];
        let n = self.emit(&mut buf).unwrap_or(0);
        (buf, n)
    }
}
