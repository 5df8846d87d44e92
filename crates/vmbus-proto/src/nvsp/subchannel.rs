//! Version 5's multi-queue messages: SUBCHANNEL requests and completions, the send
//! indirection table message, and OID_QUERY_EX.

use super::*;
use core::mem::offset_of;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `struct nvsp_5_subchannel_request` (8 bytes).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp5SubchannelRequest {
    /// The operation (ALLOCATE).
    pub op: NvspSubchannelOp,
    /// Subchannels wanted; a hostile guest may ask for any number, so a host caps it
    /// (e.g. at [`VRSS_CHANNEL_MAX`] - 1).
    pub num_subchannels: u32,
}

/// `struct nvsp_5_subchannel_complete` (8 bytes): the body of the host's completion of
/// a SUBCHANNEL request (same message type 133).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp5SubchannelComplete {
    /// SUCCESS or FAIL.
    pub status: NvspStatus,
    /// Subchannels actually allocated; may exceed what was asked if the host is hostile.
    pub num_subchannels: u32,
}

/// `struct nvsp_5_send_indirect_table` (8 bytes): the fixed part of
/// SEND_INDIRECTION_TABLE; the table itself is elsewhere in the packet.
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp5SendIndirectTable {
    /// Number of u32 entries (Linux accepts only [`VRSS_SEND_TAB_SIZE`]).
    pub count: u32,
    /// Byte offset of the entries from the start of the NVSP message (its header).
    /// Old kernels read it from the start of this struct instead; a hostile host may
    /// point anywhere.
    pub offset: u32,
}

/// `NVSP_5_MESSAGE_OID_QUERY_EX` (8 bytes). Not in Linux; layout from the Windows header
/// quoted by OpenVMM (protocol.rs `Message5OidQueryEx`): an `NDIS_OBJECT_HEADER`
/// {type u8, revision u8, size u16} and the OID.
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Nvsp5OidQueryEx {
    /// `NDIS_OBJECT_HEADER.Type`.
    pub header_type: u8,
    /// `NDIS_OBJECT_HEADER.Revision`.
    pub header_revision: u8,
    /// `NDIS_OBJECT_HEADER.Size`.
    pub header_size: u16,
    /// The OID queried.
    pub oid: u32,
}

/// `NVSP_5_MESSAGE_OID_QUERY_EX_COMPLETE` (8 bytes; Windows header via OpenVMM).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Nvsp5OidQueryExComplete {
    /// An NDIS_STATUS code.
    pub status: u32,
    /// Bytes written on success, or bytes needed on NDIS_STATUS_BUFFER_TOO_SHORT.
    pub bytes: u32,
}

const _: () = assert!(size_of::<Nvsp5SubchannelRequest>() == 8);
const _: () = assert!(offset_of!(Nvsp5SubchannelRequest, num_subchannels) == 4);
const _: () = assert!(size_of::<Nvsp5SubchannelComplete>() == 8);
const _: () = assert!(offset_of!(Nvsp5SubchannelComplete, num_subchannels) == 4);
const _: () = assert!(size_of::<Nvsp5SendIndirectTable>() == 8);
const _: () = assert!(offset_of!(Nvsp5SendIndirectTable, offset) == 4);
// OID_QUERY_EX: OpenVMM protocol.rs / Windows header (not in Linux).
const _: () = assert!(size_of::<Nvsp5OidQueryEx>() == 8);
const _: () = assert!(offset_of!(Nvsp5OidQueryEx, oid) == 4);
const _: () = assert!(size_of::<Nvsp5OidQueryExComplete>() == 8);
const _: () = assert!(offset_of!(Nvsp5OidQueryExComplete, bytes) == 4);
