//! RNDIS messages: the wire structs, the typed [`RndisMessage`] (total parser and exact
//! emitter), the iterator over several messages in one buffer, and packet-message
//! builders.
//!
//! Layouts from Linux `drivers/net/hyperv/hyperv_net.h` (sizes and offsets in
//! gcc's layout, also matching OpenVMM `rndisprot.rs`). Every message is an
//! 8-byte header `{ndis_msg_type, msg_len}` (`msg_len` includes the header) followed by
//! a body; all offsets inside a body (`data_offset`, `per_pkt_info_offset`,
//! `info_buf_offset`, `status_buf_offset`) count from the body start, message offset 8.

use super::enums::{
    Oid, RNDIS_MAJOR_VERSION, RNDIS_MINOR_VERSION, RndisMedium, RndisMessageType, RndisStatus,
};
use super::ppi::{Ppi, PpiIter, emit_ppis, ppis_encoded_len};
use crate::error::{Error, Result, put, read_prefix};
use alloc::vec::Vec;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `struct rndis_message` header: type and total length (header included).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct RndisMessageHeader {
    /// `ndis_msg_type`.
    pub ndis_msg_type: RndisMessageType,
    /// `msg_len`: bytes of the whole message. A peer may claim more than it sent, or
    /// less than the header: [`RndisMessage::parse`] rejects both.
    pub msg_len: u32,
}

/// `RNDIS_HEADER_SIZE`: bytes before the body.
pub const RNDIS_HEADER_SIZE: usize = size_of::<RndisMessageHeader>();

/// `struct rndis_packet` (36 bytes): the body of a PACKET message. Offsets count from
/// the start of this struct (message offset 8).
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct RndisPacket {
    /// Offset of the frame.
    pub data_offset: u32,
    /// Frame length.
    pub data_len: u32,
    /// Out-of-band data offset (unused by Hyper-V; ignored by the parser).
    pub oob_data_offset: u32,
    /// Out-of-band data length (ignored).
    pub oob_data_len: u32,
    /// Out-of-band element count (ignored).
    pub num_oob_data_elements: u32,
    /// Offset of the per-packet-info region.
    pub per_pkt_info_offset: u32,
    /// Length of the per-packet-info region.
    pub per_pkt_info_len: u32,
    /// VC handle (0 for connectionless).
    pub vc_handle: u32,
    /// Reserved.
    pub reserved: u32,
}

/// `struct rndis_initialize_request` (16 bytes).
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct RndisInitializeRequest {
    /// Request id, echoed in the completion.
    pub req_id: u32,
    /// RNDIS major version (1).
    pub major_ver: u32,
    /// RNDIS minor version (0).
    pub minor_ver: u32,
    /// Largest message the sender accepts (netvsc: 0x4000).
    pub max_xfer_size: u32,
}

impl RndisInitializeRequest {
    /// A version 1.0 request, as netvsc sends it.
    pub const fn new(req_id: u32, max_xfer_size: u32) -> Self {
        Self {
            req_id,
            major_ver: RNDIS_MAJOR_VERSION,
            minor_ver: RNDIS_MINOR_VERSION,
            max_xfer_size,
        }
    }
}

/// `struct rndis_initialize_complete` (44 bytes). The address-family list
/// (`af_list_*`, connection-oriented devices only) is not interpreted.
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct RndisInitializeComplete {
    /// Echoed request id.
    pub req_id: u32,
    /// Status.
    pub status: RndisStatus,
    /// Major version.
    pub major_ver: u32,
    /// Minor version.
    pub minor_ver: u32,
    /// [`DeviceFlags`](super::DeviceFlags) bits.
    pub dev_flags: u32,
    /// Medium (netvsc requires 802.3).
    pub medium: RndisMedium,
    /// Packets the device accepts per message; a host may send 0 or a huge value, so
    /// clamp before use.
    pub max_pkt_per_msg: u32,
    /// Largest message the device accepts.
    pub max_xfer_size: u32,
    /// Packet alignment as a shift (`1 << factor`); clamp before shifting.
    pub pkt_alignment_factor: u32,
    /// Address-family list offset.
    pub af_list_offset: u32,
    /// Address-family list size.
    pub af_list_size: u32,
}

/// `struct rndis_halt_request` (4 bytes).
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct RndisHaltRequest {
    /// Request id.
    pub req_id: u32,
}

/// `struct rndis_query_request` (20 bytes); also the layout of `rndis_set_request`
/// (whose `info_buf[]` flexible array adds no size).
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct RndisQueryRequest {
    /// Request id.
    pub req_id: u32,
    /// The OID.
    pub oid: Oid,
    /// Information buffer length.
    pub info_buflen: u32,
    /// Information buffer offset from the body start (netvsc: 20).
    pub info_buf_offset: u32,
    /// Device VC handle (0).
    pub dev_vc_handle: u32,
}

/// `struct rndis_set_request`: the same layout as [`RndisQueryRequest`].
pub type RndisSetRequest = RndisQueryRequest;

/// `struct rndis_query_complete` (16 bytes); OpenVMM's SetEx completion has the same
/// layout.
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct RndisQueryComplete {
    /// Echoed request id.
    pub req_id: u32,
    /// Status.
    pub status: RndisStatus,
    /// Information buffer length.
    pub info_buflen: u32,
    /// Information buffer offset from the body start (16 when emitted here).
    pub info_buf_offset: u32,
}

/// `struct rndis_set_complete` (8 bytes).
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct RndisSetComplete {
    /// Echoed request id.
    pub req_id: u32,
    /// Status.
    pub status: RndisStatus,
}

/// `struct rndis_reset_request` (4 bytes; no request id).
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct RndisResetRequest {
    /// Reserved.
    pub reserved: u32,
}

/// `struct rndis_reset_complete` (8 bytes; no request id).
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct RndisResetComplete {
    /// Status.
    pub status: RndisStatus,
    /// Non-zero if the multicast list / filter must be re-sent.
    pub addressing_reset: u32,
}

/// `struct rndis_keepalive_request` (4 bytes).
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct RndisKeepaliveRequest {
    /// Request id.
    pub req_id: u32,
}

/// `struct rndis_keepalive_complete` (8 bytes).
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct RndisKeepaliveComplete {
    /// Echoed request id.
    pub req_id: u32,
    /// Status.
    pub status: RndisStatus,
}

/// `struct rndis_indicate_status` (12 bytes).
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct RndisIndicateStatus {
    /// The indicated status (e.g. MEDIA_CONNECT).
    pub status: RndisStatus,
    /// Status buffer length.
    pub status_buflen: u32,
    /// Status buffer offset from the body start.
    pub status_buf_offset: u32,
}

/// `struct rndis_diagnostic_info` (8 bytes): a status buffer for error indications.
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct RndisDiagnosticInfo {
    /// Diagnostic status.
    pub diag_status: RndisStatus,
    /// Offset of the offending byte in the message.
    pub error_offset: u32,
}

/// `struct rndis_oobd` (12 bytes): an out-of-band data element (unused by Hyper-V).
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct RndisOobd {
    /// Size.
    pub size: u32,
    /// Class.
    pub r#type: u32,
    /// Class information offset.
    pub class_info_offset: u32,
}

// Sizes and offsets as gcc lays out Linux's hyperv_net.h; the same numbers appear
// in OpenVMM rndisprot.rs and DPDK (rndis_packet_msg 44, rndis_init_comp 52,
// rndis_query_req 28 with the header).
const _: () = {
    use core::mem::offset_of;
    assert!(size_of::<RndisMessageHeader>() == 8);
    assert!(offset_of!(RndisMessageHeader, msg_len) == 4);
    assert!(size_of::<RndisPacket>() == 36);
    assert!(offset_of!(RndisPacket, data_offset) == 0);
    assert!(offset_of!(RndisPacket, data_len) == 4);
    assert!(offset_of!(RndisPacket, oob_data_offset) == 8);
    assert!(offset_of!(RndisPacket, oob_data_len) == 12);
    assert!(offset_of!(RndisPacket, num_oob_data_elements) == 16);
    assert!(offset_of!(RndisPacket, per_pkt_info_offset) == 20);
    assert!(offset_of!(RndisPacket, per_pkt_info_len) == 24);
    assert!(offset_of!(RndisPacket, vc_handle) == 28);
    assert!(offset_of!(RndisPacket, reserved) == 32);
    assert!(size_of::<RndisInitializeRequest>() == 16);
    assert!(offset_of!(RndisInitializeRequest, major_ver) == 4);
    assert!(offset_of!(RndisInitializeRequest, minor_ver) == 8);
    assert!(offset_of!(RndisInitializeRequest, max_xfer_size) == 12);
    assert!(size_of::<RndisInitializeComplete>() == 44);
    assert!(offset_of!(RndisInitializeComplete, status) == 4);
    assert!(offset_of!(RndisInitializeComplete, major_ver) == 8);
    assert!(offset_of!(RndisInitializeComplete, minor_ver) == 12);
    assert!(offset_of!(RndisInitializeComplete, dev_flags) == 16);
    assert!(offset_of!(RndisInitializeComplete, medium) == 20);
    assert!(offset_of!(RndisInitializeComplete, max_pkt_per_msg) == 24);
    assert!(offset_of!(RndisInitializeComplete, max_xfer_size) == 28);
    assert!(offset_of!(RndisInitializeComplete, pkt_alignment_factor) == 32);
    assert!(offset_of!(RndisInitializeComplete, af_list_offset) == 36);
    assert!(offset_of!(RndisInitializeComplete, af_list_size) == 40);
    assert!(size_of::<RndisHaltRequest>() == 4);
    assert!(size_of::<RndisQueryRequest>() == 20);
    assert!(offset_of!(RndisQueryRequest, oid) == 4);
    assert!(offset_of!(RndisQueryRequest, info_buflen) == 8);
    assert!(offset_of!(RndisQueryRequest, info_buf_offset) == 12);
    assert!(offset_of!(RndisQueryRequest, dev_vc_handle) == 16);
    assert!(size_of::<RndisQueryComplete>() == 16);
    assert!(offset_of!(RndisQueryComplete, status) == 4);
    assert!(offset_of!(RndisQueryComplete, info_buflen) == 8);
    assert!(offset_of!(RndisQueryComplete, info_buf_offset) == 12);
    assert!(size_of::<RndisSetComplete>() == 8);
    assert!(offset_of!(RndisSetComplete, status) == 4);
    assert!(size_of::<RndisResetRequest>() == 4);
    assert!(size_of::<RndisResetComplete>() == 8);
    assert!(offset_of!(RndisResetComplete, addressing_reset) == 4);
    assert!(size_of::<RndisKeepaliveRequest>() == 4);
    assert!(size_of::<RndisKeepaliveComplete>() == 8);
    assert!(offset_of!(RndisKeepaliveComplete, status) == 4);
    assert!(size_of::<RndisIndicateStatus>() == 12);
    assert!(offset_of!(RndisIndicateStatus, status_buflen) == 4);
    assert!(offset_of!(RndisIndicateStatus, status_buf_offset) == 8);
    assert!(size_of::<RndisDiagnosticInfo>() == 8);
    assert!(offset_of!(RndisDiagnosticInfo, error_offset) == 4);
    assert!(size_of::<RndisOobd>() == 12);
    assert!(offset_of!(RndisOobd, class_info_offset) == 8);
    // RNDIS_MESSAGE_SIZE(x) = 8 + sizeof(x): packet 44, init 24, query/set 28.
    assert!(RNDIS_HEADER_SIZE + size_of::<RndisPacket>() == 44);
};

const PACKET_BODY: usize = size_of::<RndisPacket>();
const QUERY_BODY: usize = size_of::<RndisQueryRequest>();
const QUERY_C_BODY: usize = size_of::<RndisQueryComplete>();
const INDICATE_BODY: usize = size_of::<RndisIndicateStatus>();

/// A PACKET message: the frame and the raw per-packet-info region, both validated to
/// lie inside the message.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PacketMessage<'a> {
    /// The Ethernet frame (`data_len` bytes at `data_offset`). Any trailing padding the
    /// sender put after it is not included.
    pub data: &'a [u8],
    /// The per-packet-info region (`per_pkt_info_len` bytes at `per_pkt_info_offset`);
    /// its entries are only checked when iterated with [`Self::ppis`].
    pub ppi: &'a [u8],
    /// `vc_handle` (0 for connectionless).
    pub vc_handle: u32,
}

impl<'a> PacketMessage<'a> {
    /// Iterates over the per-packet-info entries (total; see [`PpiIter`]).
    pub fn ppis(&self) -> PpiIter<'a> {
        PpiIter::new(self.ppi)
    }
}

/// A QUERY, SET or SET_EX request.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct OidRequest<'a> {
    /// Request id.
    pub req_id: u32,
    /// The OID.
    pub oid: Oid,
    /// `dev_vc_handle`.
    pub dev_vc_handle: u32,
    /// The information buffer (input for a query, the value for a set). When
    /// `info_buflen` is 0 the offset is not checked and this is empty.
    pub info: &'a [u8],
}

/// A QUERY or SET_EX completion.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct InfoComplete<'a> {
    /// Echoed request id.
    pub req_id: u32,
    /// Status.
    pub status: RndisStatus,
    /// The information buffer (empty when `info_buflen` is 0, whatever the offset).
    pub info: &'a [u8],
}

/// An INDICATE_STATUS message.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct IndicateStatus<'a> {
    /// The indicated status.
    pub status: RndisStatus,
    /// The status buffer (e.g. a u32 speed for LINK_SPEED_CHANGE); empty when
    /// `status_buflen` is 0.
    pub buffer: &'a [u8],
}

/// One RNDIS message, borrowing its variable parts from the input.
///
/// Parsing is total: the header, the body length for the type and every offset/length
/// pair are checked; an unknown (or CONDIS / BUS) type is kept as [`Self::Other`].
/// Bytes after the fixed body that no offset points at are ignored. Emitting writes the
/// canonical layout (variable parts right after the fixed body, offsets as netvsc writes
/// them), so a canonical message re-emits byte for byte.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RndisMessage<'a> {
    /// `PACKET` (1).
    Packet(PacketMessage<'a>),
    /// `INIT` (2).
    Initialize(RndisInitializeRequest),
    /// `INIT_CMPLT` (0x80000002).
    InitializeComplete(RndisInitializeComplete),
    /// `HALT` (3).
    Halt(RndisHaltRequest),
    /// `QUERY` (4).
    Query(OidRequest<'a>),
    /// `QUERY_CMPLT` (0x80000004).
    QueryComplete(InfoComplete<'a>),
    /// `SET` (5).
    Set(OidRequest<'a>),
    /// `SET_CMPLT` (0x80000005).
    SetComplete(RndisSetComplete),
    /// `SET_EX` (9, OpenVMM).
    SetEx(OidRequest<'a>),
    /// `SET_EX_CMPLT` (0x80000009, OpenVMM).
    SetExComplete(InfoComplete<'a>),
    /// `RESET` (6).
    Reset(RndisResetRequest),
    /// `RESET_CMPLT` (0x80000006).
    ResetComplete(RndisResetComplete),
    /// `INDICATE_STATUS` (7).
    IndicateStatus(IndicateStatus<'a>),
    /// `KEEPALIVE` (8).
    Keepalive(RndisKeepaliveRequest),
    /// `KEEPALIVE_CMPLT` (0x80000008).
    KeepaliveComplete(RndisKeepaliveComplete),
    /// Any other type: the raw body (`msg_len - 8` bytes).
    Other {
        /// The type.
        msg_type: RndisMessageType,
        /// The body.
        body: &'a [u8],
    },
}

/// The `len` bytes at `offset` of `body`; empty if `len` is 0.
fn sub<'a>(body: &'a [u8], what: &'static str, offset: u32, len: u32) -> Result<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    let start = offset as usize;
    start
        .checked_add(len as usize)
        .and_then(|end| body.get(start..end))
        .ok_or(Error::OutOfBounds {
            what,
            offset: u64::from(offset),
            len: u64::from(len),
            bound: body.len(),
        })
}

fn fixed<T: FromBytes>(what: &'static str, body: &[u8]) -> Result<T> {
    read_prefix::<T>(what, body).map(|(t, _)| t)
}

impl<'a> RndisMessage<'a> {
    /// Parses the message at the front of `bytes`; bytes after `msg_len` are ignored.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        Self::parse_prefix(bytes).map(|(m, _)| m)
    }

    /// Parses the message at the front of `bytes` and returns the bytes after it.
    ///
    /// Errors: fewer than 8 bytes; `msg_len` < 8 or beyond `bytes`; a body shorter than
    /// its type's fixed part; an offset/length pair outside the message.
    #[inline]
    pub fn parse_prefix(bytes: &'a [u8]) -> Result<(Self, &'a [u8])> {
        let (hdr, _) = read_prefix::<RndisMessageHeader>("rndis message header", bytes)?;
        let len = hdr.msg_len as usize;
        if len < RNDIS_HEADER_SIZE {
            return Err(Error::InvalidField {
                what: "rndis msg_len",
                value: u64::from(hdr.msg_len),
            });
        }
        let (msg, rest) = bytes.split_at_checked(len).ok_or(Error::Truncated {
            what: "rndis message",
            need: len,
            have: bytes.len(),
        })?;
        let body = msg.get(RNDIS_HEADER_SIZE..).unwrap_or_default();
        Ok((Self::parse_body(hdr.ndis_msg_type, body)?, rest))
    }

    /// Parses a body (the `msg_len - 8` bytes after the header) of type `msg_type`.
    pub fn parse_body(msg_type: RndisMessageType, body: &'a [u8]) -> Result<Self> {
        let oid_request = |what: &'static str| -> Result<OidRequest<'a>> {
            let r: RndisQueryRequest = fixed(what, body)?;
            Ok(OidRequest {
                req_id: r.req_id,
                oid: r.oid,
                dev_vc_handle: r.dev_vc_handle,
                info: sub(
                    body,
                    "rndis info_buf_offset/info_buflen",
                    r.info_buf_offset,
                    r.info_buflen,
                )?,
            })
        };
        let info_complete = |what: &'static str| -> Result<InfoComplete<'a>> {
            let c: RndisQueryComplete = fixed(what, body)?;
            Ok(InfoComplete {
                req_id: c.req_id,
                status: c.status,
                info: sub(
                    body,
                    "rndis info_buf_offset/info_buflen",
                    c.info_buf_offset,
                    c.info_buflen,
                )?,
            })
        };
        Ok(match msg_type {
            RndisMessageType::PACKET => {
                let p: RndisPacket = fixed("rndis_packet", body)?;
                Self::Packet(PacketMessage {
                    data: sub(
                        body,
                        "rndis data_offset/data_len",
                        p.data_offset,
                        p.data_len,
                    )?,
                    ppi: sub(
                        body,
                        "rndis per_pkt_info_offset/per_pkt_info_len",
                        p.per_pkt_info_offset,
                        p.per_pkt_info_len,
                    )?,
                    vc_handle: p.vc_handle,
                })
            }
            RndisMessageType::INIT => Self::Initialize(fixed("rndis_initialize_request", body)?),
            RndisMessageType::INIT_CMPLT => {
                Self::InitializeComplete(fixed("rndis_initialize_complete", body)?)
            }
            RndisMessageType::HALT => Self::Halt(fixed("rndis_halt_request", body)?),
            RndisMessageType::QUERY => Self::Query(oid_request("rndis_query_request")?),
            RndisMessageType::QUERY_CMPLT => {
                Self::QueryComplete(info_complete("rndis_query_complete")?)
            }
            RndisMessageType::SET => Self::Set(oid_request("rndis_set_request")?),
            RndisMessageType::SET_CMPLT => Self::SetComplete(fixed("rndis_set_complete", body)?),
            RndisMessageType::SET_EX => Self::SetEx(oid_request("rndis set_ex request")?),
            RndisMessageType::SET_EX_CMPLT => {
                Self::SetExComplete(info_complete("rndis set_ex complete")?)
            }
            RndisMessageType::RESET => Self::Reset(fixed("rndis_reset_request", body)?),
            RndisMessageType::RESET_CMPLT => {
                Self::ResetComplete(fixed("rndis_reset_complete", body)?)
            }
            RndisMessageType::INDICATE_STATUS => {
                let s: RndisIndicateStatus = fixed("rndis_indicate_status", body)?;
                Self::IndicateStatus(IndicateStatus {
                    status: s.status,
                    buffer: sub(
                        body,
                        "rndis status_buf_offset/status_buflen",
                        s.status_buf_offset,
                        s.status_buflen,
                    )?,
                })
            }
            RndisMessageType::KEEPALIVE => Self::Keepalive(fixed("rndis_keepalive_request", body)?),
            RndisMessageType::KEEPALIVE_CMPLT => {
                Self::KeepaliveComplete(fixed("rndis_keepalive_complete", body)?)
            }
            msg_type => Self::Other { msg_type, body },
        })
    }

    /// The message type.
    pub fn msg_type(&self) -> RndisMessageType {
        match self {
            Self::Packet(_) => RndisMessageType::PACKET,
            Self::Initialize(_) => RndisMessageType::INIT,
            Self::InitializeComplete(_) => RndisMessageType::INIT_CMPLT,
            Self::Halt(_) => RndisMessageType::HALT,
            Self::Query(_) => RndisMessageType::QUERY,
            Self::QueryComplete(_) => RndisMessageType::QUERY_CMPLT,
            Self::Set(_) => RndisMessageType::SET,
            Self::SetComplete(_) => RndisMessageType::SET_CMPLT,
            Self::SetEx(_) => RndisMessageType::SET_EX,
            Self::SetExComplete(_) => RndisMessageType::SET_EX_CMPLT,
            Self::Reset(_) => RndisMessageType::RESET,
            Self::ResetComplete(_) => RndisMessageType::RESET_CMPLT,
            Self::IndicateStatus(_) => RndisMessageType::INDICATE_STATUS,
            Self::Keepalive(_) => RndisMessageType::KEEPALIVE,
            Self::KeepaliveComplete(_) => RndisMessageType::KEEPALIVE_CMPLT,
            Self::Other { msg_type, .. } => *msg_type,
        }
    }

    /// The request id of a request or completion that has one (not PACKET, RESET,
    /// RESET_CMPLT, INDICATE_STATUS or Other). A completion's id is the peer's echo:
    /// match it against outstanding requests, never index with it.
    pub fn request_id(&self) -> Option<u32> {
        match self {
            Self::Initialize(m) => Some(m.req_id),
            Self::InitializeComplete(m) => Some(m.req_id),
            Self::Halt(m) => Some(m.req_id),
            Self::Query(m) | Self::Set(m) | Self::SetEx(m) => Some(m.req_id),
            Self::QueryComplete(m) | Self::SetExComplete(m) => Some(m.req_id),
            Self::SetComplete(m) => Some(m.req_id),
            Self::Keepalive(m) => Some(m.req_id),
            Self::KeepaliveComplete(m) => Some(m.req_id),
            Self::Packet(_)
            | Self::Reset(_)
            | Self::ResetComplete(_)
            | Self::IndicateStatus(_)
            | Self::Other { .. } => None,
        }
    }

    fn body_len(&self) -> usize {
        match self {
            Self::Packet(p) => PACKET_BODY
                .saturating_add(p.ppi.len())
                .saturating_add(p.data.len()),
            Self::Initialize(_) => size_of::<RndisInitializeRequest>(),
            Self::InitializeComplete(_) => size_of::<RndisInitializeComplete>(),
            Self::Halt(_) => size_of::<RndisHaltRequest>(),
            Self::Query(r) | Self::Set(r) | Self::SetEx(r) => {
                QUERY_BODY.saturating_add(r.info.len())
            }
            Self::QueryComplete(c) | Self::SetExComplete(c) => {
                QUERY_C_BODY.saturating_add(c.info.len())
            }
            Self::SetComplete(_) => size_of::<RndisSetComplete>(),
            Self::Reset(_) => size_of::<RndisResetRequest>(),
            Self::ResetComplete(_) => size_of::<RndisResetComplete>(),
            Self::IndicateStatus(s) => INDICATE_BODY.saturating_add(s.buffer.len()),
            Self::Keepalive(_) => size_of::<RndisKeepaliveRequest>(),
            Self::KeepaliveComplete(_) => size_of::<RndisKeepaliveComplete>(),
            Self::Other { body, .. } => body.len(),
        }
    }

    /// Bytes [`Self::emit`] writes (the `msg_len` it puts in the header).
    pub fn encoded_len(&self) -> usize {
        RNDIS_HEADER_SIZE.saturating_add(self.body_len())
    }

    /// Writes the message at the front of `buf` and returns its length.
    ///
    /// Layout: variable data right after the fixed body; `info_buf_offset` 20 in
    /// requests and 16 in completions, `status_buf_offset` 12, and in packets
    /// `per_pkt_info_offset` 36 with the frame after the PPI region (the netvsc layout;
    /// 0 when there are no PPIs, as Linux requires on receive), even when the variable
    /// part is empty. Fails if `buf` is too small or the message
    /// exceeds `u32::MAX` bytes; nothing is written then.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        const WHAT: &str = "rndis message";
        let total = self.encoded_len();
        let msg_len = u32::try_from(total).map_err(|_| Error::TooMany {
            what: "rndis msg_len",
            count: total as u64,
            limit: u64::from(u32::MAX),
        })?;
        if buf.len() < total {
            return Err(Error::BufferTooSmall {
                what: WHAT,
                need: total,
                have: buf.len(),
            });
        }
        // Every length below is part of `total`, which fits in a u32.
        let hdr = RndisMessageHeader {
            ndis_msg_type: self.msg_type(),
            msg_len,
        };
        let at = put(WHAT, buf, 0, hdr.as_bytes())?;
        let oid_request = |buf: &mut [u8], r: &OidRequest<'_>| -> Result<usize> {
            let fixed = RndisQueryRequest {
                req_id: r.req_id,
                oid: r.oid,
                info_buflen: r.info.len() as u32,
                info_buf_offset: QUERY_BODY as u32,
                dev_vc_handle: r.dev_vc_handle,
            };
            let at = put(WHAT, buf, at, fixed.as_bytes())?;
            put(WHAT, buf, at, r.info)
        };
        let info_complete = |buf: &mut [u8], c: &InfoComplete<'_>| -> Result<usize> {
            let fixed = RndisQueryComplete {
                req_id: c.req_id,
                status: c.status,
                info_buflen: c.info.len() as u32,
                info_buf_offset: QUERY_C_BODY as u32,
            };
            let at = put(WHAT, buf, at, fixed.as_bytes())?;
            put(WHAT, buf, at, c.info)
        };
        match self {
            Self::Packet(p) => {
                let fixed = RndisPacket {
                    data_offset: (PACKET_BODY + p.ppi.len()) as u32,
                    data_len: p.data.len() as u32,
                    per_pkt_info_offset: ppi_offset(p.ppi.len()),
                    per_pkt_info_len: p.ppi.len() as u32,
                    vc_handle: p.vc_handle,
                    ..RndisPacket::default()
                };
                let at = put(WHAT, buf, at, fixed.as_bytes())?;
                let at = put(WHAT, buf, at, p.ppi)?;
                put(WHAT, buf, at, p.data)
            }
            Self::Initialize(m) => put(WHAT, buf, at, m.as_bytes()),
            Self::InitializeComplete(m) => put(WHAT, buf, at, m.as_bytes()),
            Self::Halt(m) => put(WHAT, buf, at, m.as_bytes()),
            Self::Query(r) | Self::Set(r) | Self::SetEx(r) => oid_request(buf, r),
            Self::QueryComplete(c) | Self::SetExComplete(c) => info_complete(buf, c),
            Self::SetComplete(m) => put(WHAT, buf, at, m.as_bytes()),
            Self::Reset(m) => put(WHAT, buf, at, m.as_bytes()),
            Self::ResetComplete(m) => put(WHAT, buf, at, m.as_bytes()),
            Self::IndicateStatus(s) => {
                let fixed = RndisIndicateStatus {
                    status: s.status,
                    status_buflen: s.buffer.len() as u32,
                    status_buf_offset: INDICATE_BODY as u32,
                };
                let at = put(WHAT, buf, at, fixed.as_bytes())?;
                put(WHAT, buf, at, s.buffer)
            }
            Self::Keepalive(m) => put(WHAT, buf, at, m.as_bytes()),
            Self::KeepaliveComplete(m) => put(WHAT, buf, at, m.as_bytes()),
            Self::Other { body, .. } => put(WHAT, buf, at, body),
        }
    }

    /// The emitted bytes in a new vector.
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        let mut v = alloc::vec![0u8; self.encoded_len()];
        let n = self.emit(&mut v)?;
        v.truncate(n);
        Ok(v)
    }
}

/// Iterator over several RNDIS messages packed back to back in one buffer (a send
/// section or receive-buffer range), each advancing by its `msg_len`.
///
/// A message that does not parse (including a `msg_len` of 0 or below 8, or a partial
/// trailing header) yields one `Err` and ends the iteration. Each step consumes at least
/// 8 bytes, so a buffer of `n` bytes yields at most `n / 8 + 1` items.
#[derive(Clone, Debug)]
pub struct RndisMessages<'a> {
    rest: &'a [u8],
    done: bool,
}

impl<'a> RndisMessages<'a> {
    /// Iterates over the messages in `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self {
            rest: bytes,
            done: false,
        }
    }
}

impl<'a> Iterator for RndisMessages<'a> {
    type Item = Result<RndisMessage<'a>>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.rest.is_empty() {
            return None;
        }
        Some(match RndisMessage::parse_prefix(self.rest) {
            Ok((m, rest)) => {
                self.rest = rest;
                Ok(m)
            }
            Err(e) => {
                self.done = true;
                Err(e)
            }
        })
    }
}

impl core::iter::FusedIterator for RndisMessages<'_> {}

/// `per_pkt_info_offset` for a PPI region of `len` bytes right after the fixed body:
/// 0 when there is none. Linux's receive path (`rndis_get_ppi`) refuses a non-zero
/// offset with an empty region and logs "Invalid per_pkt_info_len: 0" for every PPI it
/// looks up (seen with Linux 6.1's hv_netvsc against this NetVSP).
fn ppi_offset(len: usize) -> u32 {
    if len == 0 { 0 } else { PACKET_BODY as u32 }
}

/// Bytes of a PACKET message's header part: RNDIS header, `rndis_packet` and the PPIs.
pub fn packet_header_len(ppis: &[Ppi<'_>]) -> usize {
    (RNDIS_HEADER_SIZE + PACKET_BODY).saturating_add(ppis_encoded_len(ppis))
}

/// Writes a PACKET message's header part (RNDIS header, `rndis_packet`, then `ppis`)
/// for a frame of `frame_len` bytes that the caller places right after it (for example
/// in separate page buffers, as netvsc does). `msg_len` covers the frame. Returns the
/// header part's length.
pub fn emit_packet_header(buf: &mut [u8], ppis: &[Ppi<'_>], frame_len: usize) -> Result<usize> {
    const WHAT: &str = "rndis packet";
    let head = packet_header_len(ppis);
    let total = head.saturating_add(frame_len);
    let msg_len = u32::try_from(total).map_err(|_| Error::TooMany {
        what: "rndis msg_len",
        count: total as u64,
        limit: u64::from(u32::MAX),
    })?;
    if buf.len() < head {
        return Err(Error::BufferTooSmall {
            what: WHAT,
            need: head,
            have: buf.len(),
        });
    }
    let ppi_len = head - RNDIS_HEADER_SIZE - PACKET_BODY;
    let hdr = RndisMessageHeader {
        ndis_msg_type: RndisMessageType::PACKET,
        msg_len,
    };
    let fixed = RndisPacket {
        data_offset: (PACKET_BODY + ppi_len) as u32,
        data_len: frame_len as u32,
        per_pkt_info_offset: ppi_offset(ppi_len),
        per_pkt_info_len: ppi_len as u32,
        ..RndisPacket::default()
    };
    let at = put(WHAT, buf, 0, hdr.as_bytes())?;
    let at = put(WHAT, buf, at, fixed.as_bytes())?;
    let rest = buf.get_mut(at..).unwrap_or_default();
    Ok(at.saturating_add(emit_ppis(rest, ppis)?))
}

/// Writes a whole PACKET message (header, `ppis`, `frame`) as netvsc lays it out;
/// returns its length.
pub fn emit_packet(buf: &mut [u8], ppis: &[Ppi<'_>], frame: &[u8]) -> Result<usize> {
    let total = packet_header_len(ppis).saturating_add(frame.len());
    if buf.len() < total {
        return Err(Error::BufferTooSmall {
            what: "rndis packet",
            need: total,
            have: buf.len(),
        });
    }
    let at = emit_packet_header(buf, ppis, frame.len())?;
    put("rndis packet", buf, at, frame)
}

/// [`emit_packet`] into a new vector.
pub fn packet_to_vec(ppis: &[Ppi<'_>], frame: &[u8]) -> Result<Vec<u8>> {
    let mut v = alloc::vec![0u8; packet_header_len(ppis).saturating_add(frame.len())];
    let n = emit_packet(&mut v, ppis, frame)?;
    v.truncate(n);
    Ok(v)
}

/// Pads the message of `len` bytes at the front of `buf` with zeros to a multiple of
/// `align` and raises its `msg_len` to match (as required between messages aggregated
/// in one section, `pkt_align = 1 << pkt_alignment_factor`). Returns the padded length.
pub fn pad_message(buf: &mut [u8], len: usize, align: usize) -> Result<usize> {
    const WHAT: &str = "rndis padding";
    if align == 0 {
        return Err(Error::InvalidField {
            what: "rndis alignment",
            value: 0,
        });
    }
    let padded = len.div_ceil(align).saturating_mul(align);
    let msg_len = u32::try_from(padded).map_err(|_| Error::TooMany {
        what: "rndis msg_len",
        count: padded as u64,
        limit: u64::from(u32::MAX),
    })?;
    if len < RNDIS_HEADER_SIZE {
        return Err(Error::InvalidField {
            what: "rndis msg_len",
            value: len as u64,
        });
    }
    let have = buf.len();
    buf.get_mut(len..padded)
        .ok_or(Error::BufferTooSmall {
            what: WHAT,
            need: padded,
            have,
        })?
        .fill(0);
    put(WHAT, buf, 4, &msg_len.to_le_bytes())?;
    Ok(padded)
}

#[cfg(test)]
mod tests {
    use super::super::enums::{DeviceFlags, PpiType};
    use super::super::ppi::{
        NdisPkt8021qInfo, NdisTcpIpChecksumInfo, NdisTcpLsoInfo, RndisPktinfoId,
    };
    use super::*;
    use proptest::prelude::*;

    fn le(words: &[u32]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    /// Parses `bytes`, checks the expected value, and re-emits byte for byte.
    fn golden(bytes: &[u8], expect: RndisMessage<'_>) {
        let m = RndisMessage::parse(bytes).unwrap();
        assert_eq!(m, expect);
        assert_eq!(m.encoded_len(), bytes.len());
        assert_eq!(m.to_vec().unwrap(), bytes);
        let mut small = vec![0u8; bytes.len() - 1];
        assert!(matches!(
            m.emit(&mut small),
            Err(Error::BufferTooSmall { .. })
        ));
    }

    /// A packet without PPIs says so with offset 0 (Linux refuses offset 36 with an
    /// empty region on receive); with PPIs the region starts right after the body.
    /// Both encoders agree and both forms parse back.
    #[test]
    fn packets_without_ppis_have_no_ppi_offset() {
        let frame = [0xABu8; 60];
        let mut a = [0u8; 128];
        let n = emit_packet(&mut a, &[], &frame).unwrap();
        let mut b = [0u8; 128];
        let m = RndisMessage::Packet(PacketMessage {
            data: &frame,
            ppi: &[],
            vc_handle: 0,
        })
        .emit(&mut b)
        .unwrap();
        assert_eq!(a[..n], b[..m]);
        let field =
            |buf: &[u8], off: usize| u32::from_le_bytes(buf[off..off + 4].try_into().unwrap());
        // Header (8) + rndis_packet: data_offset @0, per_pkt_info_offset @20, len @24.
        assert_eq!(field(&a, 8 + 20), 0, "per_pkt_info_offset");
        assert_eq!(field(&a, 8 + 24), 0, "per_pkt_info_len");
        assert_eq!(field(&a, 8), PACKET_BODY as u32, "data_offset");
        match RndisMessage::parse(&a[..n]).unwrap() {
            RndisMessage::Packet(p) => assert!(p.data == frame && p.ppi.is_empty()),
            other => panic!("{other:?}"),
        }
        let ppis = [Ppi::HashValue(7)];
        let n = emit_packet(&mut a, &ppis, &frame).unwrap();
        assert_eq!(field(&a, 8 + 20), PACKET_BODY as u32);
        match RndisMessage::parse(&a[..n]).unwrap() {
            RndisMessage::Packet(p) => {
                assert!(p.data == frame);
                assert_eq!(p.ppis().collect::<Vec<_>>(), vec![Ok(Ppi::HashValue(7))]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn golden_initialize() {
        // netvsc rndis_filter_init_device: type 2, len 24, req_id, 1.0, max_xfer 0x4000.
        let bytes = le(&[2, 24, 7, 1, 0, 0x4000]);
        golden(
            &bytes,
            RndisMessage::Initialize(RndisInitializeRequest::new(7, 0x4000)),
        );

        // INIT_CMPLT: len 52; success, 1.0, connectionless, 802.3, 1 pkt/msg, 0x4000,
        // alignment factor 3.
        let bytes = le(&[0x8000_0002, 52, 7, 0, 1, 0, 1, 0, 1, 0x4000, 3, 0, 0]);
        golden(
            &bytes,
            RndisMessage::InitializeComplete(RndisInitializeComplete {
                req_id: 7,
                status: RndisStatus::SUCCESS,
                major_ver: 1,
                minor_ver: 0,
                dev_flags: DeviceFlags::CONNECTIONLESS.bits(),
                medium: RndisMedium::MEDIUM_802_3,
                max_pkt_per_msg: 1,
                max_xfer_size: 0x4000,
                pkt_alignment_factor: 3,
                af_list_offset: 0,
                af_list_size: 0,
            }),
        );
    }

    #[test]
    fn golden_query_mac() {
        // QUERY OID_802_3_PERMANENT_ADDRESS, no input buffer, info_buf_offset 20: len 28.
        let bytes = le(&[4, 28, 0x11, 0x0101_0101, 0, 20, 0]);
        golden(
            &bytes,
            RndisMessage::Query(OidRequest {
                req_id: 0x11,
                oid: Oid::OID_802_3_PERMANENT_ADDRESS,
                dev_vc_handle: 0,
                info: &[],
            }),
        );
        // QUERY_CMPLT with a 6-byte MAC at offset 16: len 8 + 16 + 6 = 30.
        let mut bytes = le(&[0x8000_0004, 30, 0x11, 0, 6, 16]);
        bytes.extend_from_slice(&[0x00, 0x15, 0x5d, 0x01, 0x02, 0x03]);
        golden(
            &bytes,
            RndisMessage::QueryComplete(InfoComplete {
                req_id: 0x11,
                status: RndisStatus::SUCCESS,
                info: &[0x00, 0x15, 0x5d, 0x01, 0x02, 0x03],
            }),
        );
    }

    #[test]
    fn golden_set_filter_and_complete() {
        // SET OID_GEN_CURRENT_PACKET_FILTER = 0xD: len 28 + 4.
        let bytes = le(&[5, 32, 0x22, 0x0001_010E, 4, 20, 0, 0xD]);
        golden(
            &bytes,
            RndisMessage::Set(OidRequest {
                req_id: 0x22,
                oid: Oid::OID_GEN_CURRENT_PACKET_FILTER,
                dev_vc_handle: 0,
                info: &[0xD, 0, 0, 0],
            }),
        );
        let bytes = le(&[0x8000_0005, 16, 0x22, 0]);
        golden(
            &bytes,
            RndisMessage::SetComplete(RndisSetComplete {
                req_id: 0x22,
                status: RndisStatus::SUCCESS,
            }),
        );
    }

    #[test]
    fn golden_small_messages() {
        golden(
            &le(&[3, 12, 9]),
            RndisMessage::Halt(RndisHaltRequest { req_id: 9 }),
        );
        golden(
            &le(&[6, 12, 0]),
            RndisMessage::Reset(RndisResetRequest { reserved: 0 }),
        );
        golden(
            &le(&[0x8000_0006, 16, 0, 1]),
            RndisMessage::ResetComplete(RndisResetComplete {
                status: RndisStatus::SUCCESS,
                addressing_reset: 1,
            }),
        );
        golden(
            &le(&[8, 12, 5]),
            RndisMessage::Keepalive(RndisKeepaliveRequest { req_id: 5 }),
        );
        golden(
            &le(&[0x8000_0008, 16, 5, 0]),
            RndisMessage::KeepaliveComplete(RndisKeepaliveComplete {
                req_id: 5,
                status: RndisStatus::SUCCESS,
            }),
        );
    }

    #[test]
    fn golden_indicate_status() {
        // MEDIA_CONNECT, no status buffer.
        let bytes = le(&[7, 20, 0x4001_000B, 0, 12]);
        golden(
            &bytes,
            RndisMessage::IndicateStatus(IndicateStatus {
                status: RndisStatus::MEDIA_CONNECT,
                buffer: &[],
            }),
        );
        // LINK_SPEED_CHANGE with a u32 speed (100 Gbps in 100 bps units).
        let bytes = le(&[7, 24, 0x4001_0013, 4, 12, 1_000_000_000]);
        let speed = 1_000_000_000u32.to_le_bytes();
        golden(
            &bytes,
            RndisMessage::IndicateStatus(IndicateStatus {
                status: RndisStatus::LINK_SPEED_CHANGE,
                buffer: &speed,
            }),
        );
        // A host that writes offset 0 for an empty buffer still parses.
        let bytes = le(&[7, 20, 0x4001_000C, 0, 0]);
        let m = RndisMessage::parse(&bytes).unwrap();
        assert_eq!(
            m,
            RndisMessage::IndicateStatus(IndicateStatus {
                status: RndisStatus::MEDIA_DISCONNECT,
                buffer: &[]
            })
        );
    }

    #[test]
    fn golden_data_packet_netvsc_tx() {
        // netvsc_xmit: VLAN PPI then checksum PPI, each size 16 / ppi_offset 12;
        // per_pkt_info_offset 36, data_offset 36 + 32 = 68; msg_len 44 + 32 + frame.
        let frame: Vec<u8> = (0u8..60).collect();
        let vlan = NdisPkt8021qInfo::default().with_vlan_id(10).with_pri(2);
        let csum = NdisTcpIpChecksumInfo::default()
            .with_tx_is_ipv4(true)
            .with_tx_tcp_checksum(true)
            .with_tx_tcp_header_offset(34);
        let mut bytes = le(&[1, 44 + 32 + 60, 68, 60, 0, 0, 0, 36, 32, 0, 0]);
        bytes.extend(le(&[16, PpiType::IEEE_8021Q.0, 12, 2 | 10 << 4]));
        bytes.extend(le(&[16, PpiType::TCPIP_CHKSUM.0, 12, 0b101 | 34 << 16]));
        bytes.extend_from_slice(&frame);

        let ppis = [Ppi::Vlan(vlan), Ppi::Checksum(csum)];
        assert_eq!(packet_to_vec(&ppis, &frame).unwrap(), bytes);
        let mut head = [0u8; 76];
        assert_eq!(
            emit_packet_header(&mut head, &ppis, frame.len()).unwrap(),
            76
        );
        assert_eq!(&head[..], &bytes[..76]);

        let m = RndisMessage::parse(&bytes).unwrap();
        let RndisMessage::Packet(p) = m else {
            panic!("not a packet: {m:?}")
        };
        assert_eq!(p.data, &frame[..]);
        assert_eq!(p.ppis().collect::<Result<Vec<_>>>().unwrap(), ppis.to_vec());
        assert_eq!(m.to_vec().unwrap(), bytes);
    }

    #[test]
    fn golden_rx_packet_with_lso_hash_and_pktinfo() {
        let frame = [0xAAu8; 14];
        let ppis = [
            Ppi::Lso(
                NdisTcpLsoInfo::default()
                    .with_mss(1448)
                    .with_tcp_header_offset(34)
                    .with_lso_type(1),
            ),
            Ppi::HashValue(0xDEAD_BEEF),
            Ppi::PktinfoId(RndisPktinfoId {
                ver: 1,
                flag: 0x3,
                pkt_id: 77,
            }),
        ];
        let v = packet_to_vec(&ppis, &frame).unwrap();
        let RndisMessage::Packet(p) = RndisMessage::parse(&v).unwrap() else {
            panic!()
        };
        assert_eq!(p.ppis().collect::<Result<Vec<_>>>().unwrap(), ppis.to_vec());
        assert_eq!(p.data, &frame);
    }

    #[test]
    fn trailing_padding_and_other() {
        // A packet whose msg_len includes 4 bytes of trailer padding after the frame.
        let mut bytes = le(&[1, 44 + 2 + 4, 36, 2, 0, 0, 0, 0, 0, 0, 0]);
        bytes.extend_from_slice(&[0x55, 0x66, 0, 0, 0, 0]);
        let RndisMessage::Packet(p) = RndisMessage::parse(&bytes).unwrap() else {
            panic!()
        };
        assert_eq!((p.data, p.ppi), (&[0x55u8, 0x66][..], &[][..]));
        // CONDIS and unknown types are kept raw.
        let bytes = le(&[0x8001, 16, 1, 2]);
        assert_eq!(
            RndisMessage::parse(&bytes).unwrap(),
            RndisMessage::Other {
                msg_type: RndisMessageType::CONDIS_MP_CREATE_VC,
                body: &bytes[8..]
            }
        );
    }

    #[test]
    fn rejections() {
        let e = |b: &[u8]| RndisMessage::parse(b).unwrap_err();
        // Short header, msg_len 0, msg_len < 8, msg_len > buffer.
        assert!(matches!(e(&[1, 0, 0]), Error::Truncated { .. }));
        assert!(matches!(e(&le(&[2, 0])), Error::InvalidField { .. }));
        assert!(matches!(e(&le(&[2, 7])), Error::InvalidField { .. }));
        assert!(matches!(
            e(&le(&[2, 28, 1, 1, 0, 0x4000])),
            Error::Truncated { .. }
        ));
        // Body too short for the type.
        assert!(matches!(e(&le(&[2, 20, 1, 1, 0])), Error::Truncated { .. }));
        assert!(matches!(
            e(&le(&[0x8000_0002, 48, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])),
            Error::Truncated { .. }
        ));
        // Query info buffer beyond the message, and an offset that overflows.
        assert!(matches!(
            e(&le(&[4, 32, 1, 0x0001_0106, 8, 20, 0, 0])),
            Error::OutOfBounds { .. }
        ));
        assert!(matches!(
            e(&le(&[4, 32, 1, 0x0001_0106, 4, u32::MAX, 0, 0])),
            Error::OutOfBounds { .. }
        ));
        // Query complete offset past the message.
        assert!(matches!(
            e(&le(&[0x8000_0004, 28, 1, 0, 4, 17, 0])),
            Error::OutOfBounds { .. }
        ));
        // Indicate status buffer beyond the message.
        assert!(matches!(
            e(&le(&[7, 24, 0x4001_0013, 8, 12, 0])),
            Error::OutOfBounds { .. }
        ));
        // Packet data beyond the message; PPI region beyond the message.
        assert!(matches!(
            e(&le(&[1, 48, 36, 8, 0, 0, 0, 0, 0, 0, 0, 0])),
            Error::OutOfBounds { .. }
        ));
        assert!(matches!(
            e(&le(&[1, 48, 36, 0, 0, 0, 0, 36, 16, 0, 0, 0])),
            Error::OutOfBounds { .. }
        ));
        assert!(matches!(
            e(&le(&[1, 48, u32::MAX, 2, 0, 0, 0, 0, 0, 0, 0, 0])),
            Error::OutOfBounds { .. }
        ));
    }

    #[test]
    fn overlapping_and_short_ppis_in_packet() {
        // A PPI entry whose size (8) is below the header: the packet parses, the PPI
        // iterator reports the error once and stops.
        let mut bytes = le(&[1, 44 + 16, 52, 0, 0, 0, 0, 36, 16, 0, 0]);
        bytes.extend(le(&[8, 6, 12, 0]));
        let RndisMessage::Packet(p) = RndisMessage::parse(&bytes).unwrap() else {
            panic!()
        };
        let items: Vec<_> = p.ppis().collect();
        assert_eq!(items.len(), 1);
        assert!(items[0].is_err());
        // Two entries where the first claims more than the region (overlapping the
        // second): rejected.
        let mut bytes = le(&[1, 44 + 32, 68, 0, 0, 0, 0, 36, 32, 0, 0]);
        bytes.extend(le(&[36, 6, 12, 0, 16, 0, 12, 0]));
        let RndisMessage::Packet(p) = RndisMessage::parse(&bytes).unwrap() else {
            panic!()
        };
        assert!(matches!(
            p.ppis().next(),
            Some(Err(Error::OutOfBounds { .. }))
        ));
    }

    #[test]
    fn iterator_over_batched_messages() {
        let mut buf = packet_to_vec(&[], &[1, 2, 3]).unwrap();
        let n = buf.len();
        buf.resize(64, 0xFF);
        assert_eq!(pad_message(&mut buf, n, 8).unwrap(), 48);
        buf.truncate(48);
        buf.extend(le(&[8, 12, 3]));
        let items: Vec<_> = RndisMessages::new(&buf).collect::<Result<_>>().unwrap();
        assert_eq!(items.len(), 2);
        let RndisMessage::Packet(p) = items[0] else {
            panic!()
        };
        assert_eq!(p.data, &[1, 2, 3]);
        assert_eq!(
            items[1],
            RndisMessage::Keepalive(RndisKeepaliveRequest { req_id: 3 })
        );

        // A zero msg_len after a good message: one Ok, one Err, then the end.
        let mut bad = le(&[8, 12, 3]);
        bad.extend(le(&[8, 0, 3]));
        let items: Vec<_> = RndisMessages::new(&bad).collect();
        assert_eq!(items.len(), 2);
        assert!(items[0].is_ok() && matches!(items[1], Err(Error::InvalidField { .. })));
        // A partial trailing header.
        let mut bad = le(&[8, 12, 3]);
        bad.extend_from_slice(&[8, 0]);
        let items: Vec<_> = RndisMessages::new(&bad).collect();
        assert!(matches!(
            items.as_slice(),
            [Ok(_), Err(Error::Truncated { .. })]
        ));
        assert_eq!(RndisMessages::new(&[]).count(), 0);
    }

    #[test]
    fn request_ids() {
        assert_eq!(
            RndisMessage::Keepalive(RndisKeepaliveRequest { req_id: 4 }).request_id(),
            Some(4)
        );
        assert_eq!(
            RndisMessage::Reset(RndisResetRequest::default()).request_id(),
            None
        );
    }

    fn arb_status() -> impl Strategy<Value = RndisStatus> {
        prop_oneof![
            Just(RndisStatus::SUCCESS),
            Just(RndisStatus::FAILURE),
            any::<u32>().prop_map(RndisStatus)
        ]
    }

    /// Owned parts from which an [`RndisMessage`] is built.
    #[derive(Clone, Debug)]
    enum Gen {
        Packet(Vec<u8>, Vec<(u32, bool, Vec<u8>)>, u32),
        Init(u32, u32, u32, u32),
        InitC([u32; 11]),
        Halt(u32),
        Oid(u8, u32, u32, u32, Vec<u8>),
        InfoC(bool, u32, RndisStatus, Vec<u8>),
        SetC(u32, RndisStatus),
        Reset(u32),
        ResetC(RndisStatus, u32),
        Indicate(RndisStatus, Vec<u8>),
        Keepalive(u32),
        KeepaliveC(u32, RndisStatus),
        Other(u32, Vec<u8>),
    }

    fn arb_gen() -> impl Strategy<Value = Gen> {
        let bytes = || proptest::collection::vec(any::<u8>(), 0..64);
        prop_oneof![
            (
                bytes(),
                proptest::collection::vec((0u32..16, any::<bool>(), bytes()), 0..4),
                any::<u32>()
            )
                .prop_map(|(d, p, v)| Gen::Packet(d, p, v)),
            (any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>())
                .prop_map(|(a, b, c, d)| Gen::Init(a, b, c, d)),
            any::<[u32; 11]>().prop_map(Gen::InitC),
            any::<u32>().prop_map(Gen::Halt),
            (0u8..3, any::<u32>(), any::<u32>(), any::<u32>(), bytes())
                .prop_map(|(k, r, o, h, i)| Gen::Oid(k, r, o, h, i)),
            (any::<bool>(), any::<u32>(), arb_status(), bytes())
                .prop_map(|(k, r, s, i)| Gen::InfoC(k, r, s, i)),
            (any::<u32>(), arb_status()).prop_map(|(r, s)| Gen::SetC(r, s)),
            any::<u32>().prop_map(Gen::Reset),
            (arb_status(), any::<u32>()).prop_map(|(s, a)| Gen::ResetC(s, a)),
            (arb_status(), bytes()).prop_map(|(s, b)| Gen::Indicate(s, b)),
            any::<u32>().prop_map(Gen::Keepalive),
            (any::<u32>(), arb_status()).prop_map(|(r, s)| Gen::KeepaliveC(r, s)),
            (0x10u32..0x7fff_0000, bytes()).prop_map(|(t, b)| Gen::Other(t, b)),
        ]
    }

    fn build<'a>(g: &'a Gen, ppi_region: &'a [u8]) -> RndisMessage<'a> {
        match g {
            Gen::Packet(d, _, v) => RndisMessage::Packet(PacketMessage {
                data: d,
                ppi: ppi_region,
                vc_handle: *v,
            }),
            Gen::Init(a, b, c, d) => RndisMessage::Initialize(RndisInitializeRequest {
                req_id: *a,
                major_ver: *b,
                minor_ver: *c,
                max_xfer_size: *d,
            }),
            Gen::InitC(w) => RndisMessage::InitializeComplete(
                RndisInitializeComplete::read_from_bytes(w.as_bytes()).unwrap(),
            ),
            Gen::Halt(r) => RndisMessage::Halt(RndisHaltRequest { req_id: *r }),
            Gen::Oid(k, r, o, h, i) => {
                let req = OidRequest {
                    req_id: *r,
                    oid: Oid(*o),
                    dev_vc_handle: *h,
                    info: i,
                };
                match k {
                    0 => RndisMessage::Query(req),
                    1 => RndisMessage::Set(req),
                    _ => RndisMessage::SetEx(req),
                }
            }
            Gen::InfoC(k, r, s, i) => {
                let c = InfoComplete {
                    req_id: *r,
                    status: *s,
                    info: i,
                };
                if *k {
                    RndisMessage::QueryComplete(c)
                } else {
                    RndisMessage::SetExComplete(c)
                }
            }
            Gen::SetC(r, s) => RndisMessage::SetComplete(RndisSetComplete {
                req_id: *r,
                status: *s,
            }),
            Gen::Reset(r) => RndisMessage::Reset(RndisResetRequest { reserved: *r }),
            Gen::ResetC(s, a) => RndisMessage::ResetComplete(RndisResetComplete {
                status: *s,
                addressing_reset: *a,
            }),
            Gen::Indicate(s, b) => RndisMessage::IndicateStatus(IndicateStatus {
                status: *s,
                buffer: b,
            }),
            Gen::Keepalive(r) => RndisMessage::Keepalive(RndisKeepaliveRequest { req_id: *r }),
            Gen::KeepaliveC(r, s) => RndisMessage::KeepaliveComplete(RndisKeepaliveComplete {
                req_id: *r,
                status: *s,
            }),
            Gen::Other(t, b) => RndisMessage::Other {
                msg_type: RndisMessageType(*t),
                body: b,
            },
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = RndisMessage::parse(&bytes);
            for m in RndisMessages::new(&bytes).take(100) {
                if let Ok(RndisMessage::Packet(p)) = m {
                    for ppi in p.ppis().take(100) {
                        let _ = ppi;
                    }
                }
            }
            let _ = PpiIter::new(&bytes).count();
        }

        #[test]
        fn parse_never_panics_structured(
            ty in prop_oneof![Just(1u32), Just(4), Just(5), Just(7), Just(0x8000_0004), any::<u32>()],
            len in 0u32..200,
            words in proptest::collection::vec(prop_oneof![0u32..64, any::<u32>()], 0..40),
        ) {
            let mut bytes = le(&[ty, len]);
            bytes.extend(le(&words));
            if let Ok(RndisMessage::Packet(p)) = RndisMessage::parse(&bytes) {
                let _ = p.ppis().count();
            }
            let _ = RndisMessages::new(&bytes).count();
        }

        #[test]
        fn roundtrip(g in arb_gen()) {
            let ppi_list: Vec<Ppi<'_>> = match &g {
                Gen::Packet(_, p, _) => p
                    .iter()
                    .map(|(t, internal, data)| {
                        let hdr = super::super::ppi::RndisPerPacketInfo {
                            size: 12 + data.len() as u32,
                            type_word: super::super::ppi::RndisPerPacketInfo::type_word_of(*t, *internal),
                            ppi_offset: 12,
                        };
                        Ppi::decode(&hdr, data).unwrap_or(Ppi::Unknown { ppi_type: 11, internal: false, data })
                    })
                    .collect(),
                _ => Vec::new(),
            };
            let mut region = vec![0u8; super::super::ppi::ppis_encoded_len(&ppi_list)];
            emit_ppis(&mut region, &ppi_list).unwrap();
            let m = build(&g, &region);
            let bytes = m.to_vec().unwrap();
            prop_assert_eq!(bytes.len(), m.encoded_len());
            let back = RndisMessage::parse(&bytes).unwrap();
            prop_assert_eq!(back, m);
            prop_assert_eq!(back.to_vec().unwrap(), bytes.clone());
            if let RndisMessage::Packet(p) = back {
                let got: Vec<Ppi<'_>> = p.ppis().collect::<Result<_>>().unwrap();
                prop_assert_eq!(got, ppi_list.clone());
                if let Gen::Packet(d, _, _) = &g {
                    // packet_to_vec writes vc_handle 0 (message offset 8 + 28).
                    let mut expect = bytes.clone();
                    expect[36..40].fill(0);
                    prop_assert_eq!(packet_to_vec(&ppi_list, d).unwrap(), expect);
                }
            }
        }
    }
}
