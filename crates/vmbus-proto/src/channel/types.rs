//! Message types and the fixed-layout bodies of VMBus channel-management messages.
//!
//! Each body struct is what follows the 8-byte [`MessageHeader`]. Sizes and offsets are
//! asserted against Linux `include/linux/hyperv.h` (whose structs include the header,
//! hence the `8 +` in the assertions) and, for the messages Linux does not define
//! (18..=20, 23, 25..=29, the "2"/"3" variants), against OpenVMM
//! `vm/devices/vmbus/vmbus_core/src/protocol.rs`.

use crate::guid::Guid;
use core::mem::offset_of;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

hv_hypercall::open_enum! {
    /// `enum vmbus_channel_message_type` (u32 at offset 0 of every message).
    pub struct MessageType(u32) {
        /// `CHANNELMSG_INVALID`.
        INVALID = 0,
        /// Host offers a channel.
        OFFER_CHANNEL = 1,
        /// Host withdraws an offer.
        RESCIND_CHANNEL_OFFER = 2,
        /// Guest asks for all offers.
        REQUEST_OFFERS = 3,
        /// Host has sent every offer.
        ALL_OFFERS_DELIVERED = 4,
        /// Guest opens a channel.
        OPEN_CHANNEL = 5,
        /// Host answers an open.
        OPEN_CHANNEL_RESULT = 6,
        /// Guest closes a channel.
        CLOSE_CHANNEL = 7,
        /// Guest starts a GPADL (first page-number chunk).
        GPADL_HEADER = 8,
        /// Guest continues a GPADL.
        GPADL_BODY = 9,
        /// Host answers a GPADL.
        GPADL_CREATED = 10,
        /// Guest tears a GPADL down.
        GPADL_TEARDOWN = 11,
        /// Host confirms a teardown.
        GPADL_TORNDOWN = 12,
        /// Guest releases a rescinded relid.
        RELID_RELEASED = 13,
        /// Guest starts the connection, naming a version.
        INITIATE_CONTACT = 14,
        /// Host answers InitiateContact.
        VERSION_RESPONSE = 15,
        /// Guest disconnects.
        UNLOAD = 16,
        /// Host confirms the unload.
        UNLOAD_RESPONSE = 17,
        /// Open a reserved channel (KDNET etc.).
        OPEN_RESERVED_CHANNEL = 18,
        /// Close a reserved channel.
        CLOSE_RESERVED_CHANNEL = 19,
        /// Reserved-channel close confirmation.
        CLOSE_RESERVED_RESPONSE = 20,
        /// hv_sock connect request.
        TL_CONNECT_REQUEST = 21,
        /// Guest retargets a channel's interrupt VP.
        MODIFY_CHANNEL = 22,
        /// hv_sock connect result.
        TL_CONNECT_RESULT = 23,
        /// Host answers ModifyChannel.
        MODIFY_CHANNEL_RESPONSE = 24,
        /// Guest changes the monitor pages (6.0).
        MODIFY_CONNECTION = 25,
        /// Host answers ModifyConnection.
        MODIFY_CONNECTION_RESPONSE = 26,
        /// Host pauses the connection (6.0).
        PAUSE = 27,
        /// Guest confirms the pause.
        PAUSE_RESPONSE = 28,
        /// Host resumes the connection.
        RESUME = 29,
    }
}

/// `struct vmbus_channel_message_header`: the type and 4 bytes of padding.
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct MessageHeader {
    /// The message type.
    pub message_type: MessageType,
    /// Padding (zero when we send; ignored when we receive).
    pub padding: u32,
}

/// Size of [`MessageHeader`].
pub const HEADER_SIZE: usize = 8;

/// Offer flags (`chn_flags`, u16). Values from Linux `VMBUS_CHANNEL_*`.
pub mod offer_flags {
    /// `VMBUS_CHANNEL_ENUMERATE_DEVICE_INTERFACE`.
    pub const ENUMERATE_DEVICE_INTERFACE: u16 = 0x0001;
    /// Pre-6.0: server supports transfer pages; 6.0: confidential ring buffer.
    pub const CONFIDENTIAL_RING_BUFFER: u16 = 0x0002;
    /// Pre-6.0: server supports GPADLs; 6.0: confidential external memory.
    pub const CONFIDENTIAL_EXTERNAL_MEMORY: u16 = 0x0004;
    /// `VMBUS_CHANNEL_NAMED_PIPE_MODE` (hv_sock / pipe channels).
    pub const NAMED_PIPE_MODE: u16 = 0x0010;
    /// `VMBUS_CHANNEL_LOOPBACK_OFFER`.
    pub const LOOPBACK_OFFER: u16 = 0x0100;
    /// `VMBUS_CHANNEL_PARENT_OFFER`.
    pub const PARENT_OFFER: u16 = 0x0200;
    /// `VMBUS_CHANNEL_REQUEST_MONITORED_NOTIFICATION`.
    pub const REQUEST_MONITORED_NOTIFICATION: u16 = 0x0400;
    /// `VMBUS_CHANNEL_TLNPI_PROVIDER_OFFER` (hv_sock).
    pub const TLNPI_PROVIDER_OFFER: u16 = 0x2000;
}

/// Body of `CHANNELMSG_OFFERCHANNEL` (`vmbus_channel_offer_channel` less the header).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
// Linux declares it `__packed`: with natural alignment the 188-byte body would round
// up to 192.
#[repr(C, packed)]
pub struct OfferChannel {
    /// Device class (`if_type`), e.g. [`crate::guid::class::NETWORK`].
    pub interface_type: Guid,
    /// Device instance (`if_instance`).
    pub interface_instance: Guid,
    /// Linux `reserved1`; FreeBSD reads it as interrupt latency (100 ns units).
    pub interrupt_latency: u64,
    /// Linux `reserved2`; FreeBSD: channel revision (low 32) and server context size.
    pub reserved2: u64,
    /// [`offer_flags`].
    pub flags: u16,
    /// MMIO space in MiB.
    pub mmio_megabytes: u16,
    /// Device-defined bytes (pipe mode: `u32 pipe_mode` then 116 bytes).
    pub user_defined: [u8; 120],
    /// 0 for a primary channel, N for subchannel N.
    pub subchannel_index: u16,
    /// OpenVMM: optional MMIO MiB; Linux: reserved.
    pub mmio_megabytes_optional: u16,
    /// The channel's relid (Linux: 1..=2047 usable; 16384 maximum).
    pub child_relid: u32,
    /// Monitor id (unused when `monitor_allocated` is 0).
    pub monitor_id: u8,
    /// Bit 0: the channel uses MNF monitor pages. Keep 0 for Linux guests without MNF.
    pub monitor_allocated: u8,
    /// Bit 0: dedicated interrupt.
    pub is_dedicated_interrupt: u16,
    /// The connection id the guest signals (`sig_event`).
    pub connection_id: u32,
}

/// Body of `CHANNELMSG_RESCIND_CHANNELOFFER`, `CLOSECHANNEL` and `RELID_RELEASED`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct ChildRelid {
    /// The channel.
    pub child_relid: u32,
}

/// Body of `CHANNELMSG_OPENCHANNEL`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct OpenChannel {
    /// The channel.
    pub child_relid: u32,
    /// Guest-chosen id echoed in OpenResult.
    pub open_id: u32,
    /// The GPADL holding both rings. The guest may name one that does not exist, is
    /// too small, or belongs to another channel.
    pub ring_buffer_gpadl_handle: u32,
    /// VP to interrupt for this channel.
    pub target_vp: u32,
    /// Page offset of the host-to-guest ring inside the GPADL (the guest-to-host ring
    /// comes first). May be 0 or beyond the GPADL: validate.
    pub downstream_ring_buffer_page_offset: u32,
    /// Device-defined bytes.
    pub user_data: [u8; 120],
}

/// Extension of [`OpenChannel`] in `OpenChannel2` (6.0 with guest-specified signal
/// parameters or interrupt redirection).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct OpenChannel2Ext {
    /// Guest-chosen connection id for the channel's signals.
    pub connection_id: u32,
    /// Guest-chosen event flag.
    pub event_flag: u16,
    /// Bit 0: redirect interrupt.
    pub flags: u16,
}

/// Body of `CHANNELMSG_OPENCHANNEL_RESULT`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct OpenResult {
    /// The channel.
    pub child_relid: u32,
    /// Echo of the open id.
    pub open_id: u32,
    /// 0 on success, an NTSTATUS otherwise ([`STATUS_UNSUCCESSFUL`]).
    pub status: u32,
}

/// Body of `CHANNELMSG_GPADL_HEADER` before the range words.
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct GpadlHeader {
    /// The channel.
    pub child_relid: u32,
    /// Guest-chosen GPADL id.
    pub gpadl: u32,
    /// Bytes of the whole range array across header and bodies (8 per range header
    /// plus 8 per page number). Peer-controlled: capped by the reassembler.
    pub range_buflen: u16,
    /// Number of ranges in the array.
    pub range_count: u16,
}

/// Body of `CHANNELMSG_GPADL_BODY` before the page-number words.
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct GpadlBody {
    /// Sequence number (informational; reassembly relies on order).
    pub msg_number: u32,
    /// The GPADL being continued.
    pub gpadl: u32,
}

/// Body of `CHANNELMSG_GPADL_CREATED`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct GpadlCreated {
    /// The channel.
    pub child_relid: u32,
    /// The GPADL.
    pub gpadl: u32,
    /// 0 on success, an NTSTATUS otherwise.
    pub status: u32,
}

/// Body of `CHANNELMSG_GPADL_TEARDOWN`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct GpadlTeardown {
    /// The channel.
    pub child_relid: u32,
    /// The GPADL.
    pub gpadl: u32,
}

/// Body of `CHANNELMSG_GPADL_TORNDOWN`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct GpadlTorndown {
    /// The GPADL.
    pub gpadl: u32,
}

/// Body of `CHANNELMSG_INITIATE_CONTACT`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct InitiateContact {
    /// The version the guest asks for.
    pub version_requested: u32,
    /// VP index that receives channel-management messages.
    pub target_vcpu: u32,
    /// Below 5.0: the interrupt page GPA. From 5.0: byte 0 `msg_sint`, byte 1
    /// `msg_vtl`, bytes 4..8 feature flags (6.0). See [`InitiateContact::msg_sint`].
    pub interrupt_page_or_target_info: u64,
    /// Parent-to-child monitor page GPA.
    pub monitor_page1: u64,
    /// Child-to-parent monitor page GPA.
    pub monitor_page2: u64,
}

impl InitiateContact {
    /// The SINT the guest wants messages on (5.0 and later).
    pub const fn msg_sint(&self) -> u8 {
        self.interrupt_page_or_target_info as u8
    }
    /// The VTL the guest wants messages on (5.0 and later).
    pub const fn msg_vtl(&self) -> u8 {
        (self.interrupt_page_or_target_info >> 8) as u8
    }
    /// The feature flags the guest asks for (6.0 and later).
    pub const fn feature_flags(&self) -> u32 {
        (self.interrupt_page_or_target_info >> 32) as u32
    }
    /// Packs `msg_sint`, `msg_vtl` and feature flags into the target-info word.
    pub const fn target_info(sint: u8, vtl: u8, features: u32) -> u64 {
        sint as u64 | (vtl as u64) << 8 | (features as u64) << 32
    }
}

/// Body of `CHANNELMSG_VERSION_RESPONSE` (16-byte message form, 5.0 era).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct VersionResponse {
    /// Non-zero if the requested version is accepted.
    pub version_supported: u8,
    /// [`connection_state`] value.
    pub connection_state: u8,
    /// Padding.
    pub padding: u16,
    /// 5.0+: the connection id for later guest messages; pre-5.0 hosts: the highest
    /// version they support (or zero).
    pub msg_conn_id: u32,
}

/// `VersionResponse.connection_state` values (OpenVMM `ConnectionState`).
pub mod connection_state {
    /// Connected.
    pub const SUCCESSFUL: u8 = 0;
    /// Out of resources.
    pub const FAILED_LOW_RESOURCES: u8 = 1;
    /// Unknown failure.
    pub const FAILED_UNKNOWN_FAILURE: u8 = 2;
}

/// Extension in VersionResponse2 (6.0).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct VersionResponse2Ext {
    /// Feature flags the host accepts.
    pub supported_features: u32,
}

/// Extension in VersionResponse3 (6.0 with server-specified monitor pages).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct VersionResponse3Ext {
    /// Padding.
    pub padding: u32,
    /// Parent-to-child monitor page GPA.
    pub parent_to_child_monitor_page_gpa: u64,
    /// Child-to-parent monitor page GPA.
    pub child_to_parent_monitor_page_gpa: u64,
}

/// Body of `OPEN_RESERVED_CHANNEL` (18).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct OpenReservedChannel {
    /// The channel.
    pub child_relid: u32,
    /// Target VP.
    pub target_vp: u32,
    /// Target SINT.
    pub target_sint: u32,
    /// Ring GPADL.
    pub ring_buffer_gpadl: u32,
    /// Page offset of the downstream ring.
    pub downstream_page_offset: u32,
}

/// Body of `CLOSE_RESERVED_CHANNEL` (19).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct CloseReservedChannel {
    /// The channel.
    pub child_relid: u32,
    /// Target VP.
    pub target_vp: u32,
    /// Target SINT.
    pub target_sint: u32,
}

/// Body of `TL_CONNECT_REQUEST` (21).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct TlConnectRequest {
    /// Guest endpoint id.
    pub endpoint_id: Guid,
    /// Host service id.
    pub service_id: Guid,
}

/// Body of `TL_CONNECT_RESULT` (23).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct TlConnectResult {
    /// Guest endpoint id.
    pub endpoint_id: Guid,
    /// Host service id.
    pub service_id: Guid,
    /// NTSTATUS.
    pub status: u32,
}

/// Body of `MODIFY_CHANNEL` (22).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct ModifyChannel {
    /// The channel.
    pub child_relid: u32,
    /// New target VP.
    pub target_vp: u32,
}

/// Body of `MODIFY_CHANNEL_RESPONSE` (24).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct ModifyChannelResponse {
    /// The channel.
    pub child_relid: u32,
    /// NTSTATUS.
    pub status: u32,
}

/// Body of `MODIFY_CONNECTION` (25).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct ModifyConnection {
    /// Parent-to-child monitor page GPA.
    pub parent_to_child_monitor_page_gpa: u64,
    /// Child-to-parent monitor page GPA.
    pub child_to_parent_monitor_page_gpa: u64,
}

/// NTSTATUS success.
pub const STATUS_SUCCESS: u32 = 0;
/// NTSTATUS `STATUS_UNSUCCESSFUL`, what hosts return for a failed open or GPADL.
pub const STATUS_UNSUCCESSFUL: u32 = 0xC000_0001;
/// Largest message payload (`HV_MESSAGE_PAYLOAD_BYTE_COUNT`).
pub const MAX_MESSAGE_SIZE: usize = 240;
/// The relid value Linux treats as invalid.
pub const INVALID_RELID: u32 = 0xFFFF_FFFF;

// Sizes against Linux include/linux/hyperv.h (message sizes include the 8-byte header).
const _: () = assert!(size_of::<MessageHeader>() == 8);
const _: () = assert!(HEADER_SIZE + size_of::<OfferChannel>() == 196);
const _: () = assert!(HEADER_SIZE + offset_of!(OfferChannel, interface_instance) == 24);
const _: () = assert!(HEADER_SIZE + offset_of!(OfferChannel, flags) == 56);
const _: () = assert!(HEADER_SIZE + offset_of!(OfferChannel, user_defined) == 60);
const _: () = assert!(HEADER_SIZE + offset_of!(OfferChannel, subchannel_index) == 180);
const _: () = assert!(HEADER_SIZE + offset_of!(OfferChannel, child_relid) == 184);
const _: () = assert!(HEADER_SIZE + offset_of!(OfferChannel, monitor_id) == 188);
const _: () = assert!(HEADER_SIZE + offset_of!(OfferChannel, monitor_allocated) == 189);
const _: () = assert!(HEADER_SIZE + offset_of!(OfferChannel, is_dedicated_interrupt) == 190);
const _: () = assert!(HEADER_SIZE + offset_of!(OfferChannel, connection_id) == 192);
const _: () = assert!(HEADER_SIZE + size_of::<ChildRelid>() == 12);
const _: () = assert!(HEADER_SIZE + size_of::<OpenChannel>() == 148);
const _: () = assert!(HEADER_SIZE + offset_of!(OpenChannel, ring_buffer_gpadl_handle) == 16);
const _: () = assert!(HEADER_SIZE + offset_of!(OpenChannel, target_vp) == 20);
const _: () =
    assert!(HEADER_SIZE + offset_of!(OpenChannel, downstream_ring_buffer_page_offset) == 24);
const _: () = assert!(HEADER_SIZE + offset_of!(OpenChannel, user_data) == 28);
const _: () = assert!(size_of::<OpenChannel>() + size_of::<OpenChannel2Ext>() == 148); // OpenVMM
const _: () = assert!(HEADER_SIZE + size_of::<OpenResult>() == 20);
const _: () = assert!(HEADER_SIZE + offset_of!(OpenResult, status) == 16);
const _: () = assert!(HEADER_SIZE + size_of::<GpadlHeader>() == 20);
const _: () = assert!(HEADER_SIZE + offset_of!(GpadlHeader, range_buflen) == 16);
const _: () = assert!(HEADER_SIZE + offset_of!(GpadlHeader, range_count) == 18);
const _: () = assert!(HEADER_SIZE + size_of::<GpadlBody>() == 16);
const _: () = assert!(HEADER_SIZE + offset_of!(GpadlBody, gpadl) == 12);
const _: () = assert!(HEADER_SIZE + size_of::<GpadlCreated>() == 20);
const _: () = assert!(HEADER_SIZE + offset_of!(GpadlCreated, status) == 16);
const _: () = assert!(HEADER_SIZE + size_of::<GpadlTeardown>() == 16);
const _: () = assert!(HEADER_SIZE + size_of::<GpadlTorndown>() == 12);
const _: () = assert!(HEADER_SIZE + size_of::<InitiateContact>() == 40);
const _: () = assert!(HEADER_SIZE + offset_of!(InitiateContact, target_vcpu) == 12);
const _: () =
    assert!(HEADER_SIZE + offset_of!(InitiateContact, interrupt_page_or_target_info) == 16);
const _: () = assert!(HEADER_SIZE + offset_of!(InitiateContact, monitor_page1) == 24);
const _: () = assert!(HEADER_SIZE + offset_of!(InitiateContact, monitor_page2) == 32);
const _: () = assert!(HEADER_SIZE + size_of::<VersionResponse>() == 16);
const _: () = assert!(HEADER_SIZE + offset_of!(VersionResponse, connection_state) == 9);
const _: () = assert!(HEADER_SIZE + offset_of!(VersionResponse, msg_conn_id) == 12);
const _: () = assert!(size_of::<VersionResponse>() + size_of::<VersionResponse2Ext>() == 12); // OpenVMM
const _: () = assert!(
    size_of::<VersionResponse>()
        + size_of::<VersionResponse2Ext>()
        + size_of::<VersionResponse3Ext>()
        == 32
); // OpenVMM
const _: () = assert!(size_of::<OpenReservedChannel>() == 20); // OpenVMM
const _: () = assert!(size_of::<CloseReservedChannel>() == 12); // OpenVMM
const _: () = assert!(HEADER_SIZE + size_of::<TlConnectRequest>() == 40);
const _: () = assert!(HEADER_SIZE + offset_of!(TlConnectRequest, service_id) == 24);
const _: () = assert!(size_of::<TlConnectResult>() == 36); // OpenVMM
const _: () = assert!(HEADER_SIZE + size_of::<ModifyChannel>() == 16);
const _: () = assert!(HEADER_SIZE + offset_of!(ModifyChannel, target_vp) == 12);
const _: () = assert!(HEADER_SIZE + size_of::<ModifyChannelResponse>() == 16);
const _: () = assert!(HEADER_SIZE + offset_of!(ModifyChannelResponse, status) == 12);
const _: () = assert!(size_of::<ModifyConnection>() == 16); // OpenVMM
