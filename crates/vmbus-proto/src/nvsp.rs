//! NVSP, the NetVSC/NetVSP protocol (versions 1 to 6.1): the control messages a synthetic
//! NIC's guest driver (NetVSC) and host service (NetVSP) exchange in VMBus in-band and
//! completion packets.
//!
//! Every NVSP message is a 4-byte [`NvspMessageHeader`] (`msg_type`) followed by a
//! type-specific body. Linux declares the whole thing as `struct nvsp_message`, a header
//! plus a union of every body, so its size is that of the largest body plus 4:
//! [`NVSP_MESSAGE_SIZE`] (40) in kernels that know the v6 PD-API structs and
//! [`NVSP_MESSAGE_SIZE_PRE_V6`] (28) before. A receiver must therefore accept any length
//! that covers the body of the message type it got, and a sender should send at least 32
//! bytes ([`NVSP_MIN_SEND_SIZE`]); [`NvspMessage::emit`] sends 40, like current Linux.
//!
//! Layouts and constants: Linux `drivers/net/hyperv/hyperv_net.h` (checked against
//! reference/abi-linux.md); types Linux does not define (OID_QUERY_EX) from OpenVMM
//! `vm/devices/net/netvsp/src/protocol.rs` and the Windows NVSP header it quotes. All
//! fields are little-endian; the structs are `#[repr(C, packed)]` exactly where Linux
//! marks them `__packed` (only the 6-byte buffer messages, `nvsp_2_alloc_rxbuf_comp` and
//! the PD-API structs actually change size because of it).
//!
//! The peer is untrusted: [`NvspMessage::parse`] checks every length, caps every count and
//! reports a typed [`Error`]; an unknown message type is not an error
//! ([`NvspMessage::Unknown`]), because a newer peer may send types this code predates.

use alloc::vec::Vec;
use bitflags::bitflags;
use core::mem::offset_of;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::error::{Error, Result, put, read_prefix};

// ---------------------------------------------------------------------------------------
// Sizes and constants
// ---------------------------------------------------------------------------------------

/// Size of `struct nvsp_message_header` (the `msg_type` word).
pub const NVSP_HEADER_SIZE: usize = 4;

/// Size of `struct nvsp_message` in current Linux (header + 36-byte union whose largest
/// member is `nvsp_6_pd_api_comp`); also Windows' `NVSP_61_MESSAGE_SIZE` (OpenVMM
/// `PACKET_SIZE_V61` = 0x28). [`NvspMessage::emit`] pads every message to this size.
pub const NVSP_MESSAGE_SIZE: usize = 40;

/// Size of `struct nvsp_message` in kernels before the v6 PD-API structs (largest member
/// `nvsp_1_message_send_receive_buffer_complete`, 24 bytes); Windows'
/// `NVSP_LEGACY_MESSAGE_SIZE` (OpenVMM `PACKET_SIZE_V1` = 0x1c). Such guests put 28 bytes
/// in a packet padded to 32, so a receiver must not require 40.
pub const NVSP_MESSAGE_SIZE_PRE_V6: usize = 28;

/// The smallest NVSP control message other implementations accept: FreeBSD's
/// `HN_NVS_REQSIZE_MIN` is 32 ("any smaller size will not work"), and DPDK pads its
/// requests to 40. Never send less.
pub const NVSP_MIN_SEND_SIZE: usize = 32;

/// `NETVSC_RECEIVE_BUFFER_ID`: the id netvsc gives its receive buffer in SEND_RECV_BUF,
/// and the `xfer_pageset_id` of every transfer-page packet the host sends into it.
pub const NETVSC_RECEIVE_BUFFER_ID: u16 = 0xCAFE;

/// `NETVSC_SEND_BUFFER_ID`: the id netvsc gives its send buffer in SEND_SEND_BUF.
pub const NETVSC_SEND_BUFFER_ID: u16 = 0;

/// `NETVSC_INVALID_INDEX`: `send_buf_section_index` meaning "the RNDIS message is not in
/// the send buffer" (then `send_buf_section_size` is 0 and the data travels by GPA
/// direct or in the packet).
pub const NETVSC_INVALID_INDEX: u32 = 0xFFFF_FFFF;

/// `VRSS_SEND_TAB_SIZE`: entries in the send indirection table (message 134). Linux
/// rejects any other count; this is also the protocol maximum (Windows
/// `VMS_SWITCH_RSS_MAX_SEND_INDIRECTION_TABLE_ENTRIES`, per OpenVMM protocol.rs).
pub const VRSS_SEND_TAB_SIZE: usize = 16;

/// `VRSS_CHANNEL_MAX`: the most channels (primary + subchannels) netvsc uses.
pub const VRSS_CHANNEL_MAX: usize = 64;

/// `NVSP_RSC_MAX`: the most ranges in one transfer-page packet when RSC is on
/// (`NETVSC_MAX_XFER_PAGE_RANGES`).
pub const NVSP_RSC_MAX: usize = 562;

/// The most ranges in one transfer-page packet without RSC (NDIS >= 6.0; hyperv_net.h
/// comment, OpenVMM `NVSP_MAX_PACKETS_PER_RECEIVE`).
pub const NVSP_MAX_PACKETS_PER_RECEIVE: usize = 375;

/// `NETVSC_SEND_SECTION_SIZE`: the send-buffer section size hosts announce in
/// SEND_SEND_BUF_COMPLETE.
pub const NETVSC_SEND_SECTION_SIZE: u32 = 6144;

/// `NETVSC_RECV_SECTION_SIZE`: netvsc's receive sub-allocation size.
pub const NETVSC_RECV_SECTION_SIZE: u32 = 1728;

/// `NETVSC_RECEIVE_BUFFER_SIZE`: the largest receive buffer a host accepts (31 MiB).
pub const NETVSC_RECEIVE_BUFFER_SIZE: u32 = 31 * 1024 * 1024;

/// `NETVSC_RECEIVE_BUFFER_SIZE_LEGACY`: the largest receive buffer for NVSP v1 hosts
/// (15 MiB).
pub const NETVSC_RECEIVE_BUFFER_SIZE_LEGACY: u32 = 15 * 1024 * 1024;

/// `NETVSC_RECEIVE_BUFFER_DEFAULT`: netvsc's default receive buffer (16 MiB).
pub const NETVSC_RECEIVE_BUFFER_DEFAULT: u32 = 16 * 1024 * 1024;

/// `NETVSC_SEND_BUFFER_SIZE`: the largest send buffer (15 MiB).
pub const NETVSC_SEND_BUFFER_SIZE: u32 = 15 * 1024 * 1024;

/// `NETVSC_SEND_BUFFER_DEFAULT`: netvsc's default send buffer (1 MiB).
pub const NETVSC_SEND_BUFFER_DEFAULT: u32 = 1024 * 1024;

/// The most receive-buffer sections [`NvspMessage::parse`] accepts in
/// SEND_RECV_BUF_COMPLETE. Linux requires exactly 1 and no host has sent more (OpenVMM
/// protocol.rs); the cap bounds the allocation a hostile host can cause.
pub const MAX_RECEIVE_BUFFER_SECTIONS: usize = 16;

/// Send-indirection-table offset when the entries directly follow the 8-byte
/// `nvsp_5_send_indirect_table` (header 4 + 8 = 12). This is what OpenVMM's netvsp sends
/// (`offset_of!(table) + size_of::<MessageHeader>()` in its lib.rs); Linux (since the
/// 2019 fixes in `netvsc_send_table`) reads it correctly at every NVSP version, because
/// such a message (76 bytes with 16 entries) is too short for its "host bug" fix-up.
/// The recommended value for a host.
pub const SEND_INDIRECTION_TABLE_OFFSET: u32 = 12;

/// Send-indirection-table offset when the entries follow a whole 40-byte
/// `nvsp_message`, as Windows lays out `NVSP_SEND_INDIRECTION_TABLE_MESSAGE` (per OpenVMM
/// protocol.rs). Linux forces this offset for NVSP <= 6.0 whenever the message is long
/// enough (see [`NvspSendIndirectionTable::parse_linux_compat`]).
pub const SEND_INDIRECTION_TABLE_OFFSET_AFTER_MESSAGE: u32 = NVSP_MESSAGE_SIZE as u32;

/// The largest table offset [`NvspSendIndirectionTable::emit`] accepts (a bound on what
/// the emitter writes; no host uses more than 40).
pub const MAX_SEND_INDIRECTION_TABLE_OFFSET: u32 = 256;

// ---------------------------------------------------------------------------------------
// Open enums
// ---------------------------------------------------------------------------------------

hv_hypercall::open_enum! {
    /// An NVSP message type: `msg_type` of `struct nvsp_message_header` (the anonymous
    /// `NVSP_MSG*_TYPE_*` enum in hyperv_net.h; names here drop the `NVSP_MSGn_TYPE_`
    /// prefix). Open: a peer may send anything, and [`NvspMessage::parse`] reports values
    /// it has no layout for as [`NvspMessage::Unknown`].
    pub struct NvspMessageType(u32) {
        /// `NVSP_MSG_TYPE_NONE`: never a valid message.
        NONE = 0,
        /// `NVSP_MSG_TYPE_INIT`: guest -> host, the protocol version range it wants.
        INIT = 1,
        /// `NVSP_MSG_TYPE_INIT_COMPLETE`: host -> guest answer to INIT.
        INIT_COMPLETE = 2,
        /// `NVSP_MSG1_TYPE_SEND_NDIS_VER` (100): guest -> host, its NDIS version.
        SEND_NDIS_VER = 100,
        /// `NVSP_MSG1_TYPE_SEND_RECV_BUF`: guest -> host, the receive-buffer GPADL.
        SEND_RECV_BUF = 101,
        /// `NVSP_MSG1_TYPE_SEND_RECV_BUF_COMPLETE`: host -> guest, how it carves the buffer.
        SEND_RECV_BUF_COMPLETE = 102,
        /// `NVSP_MSG1_TYPE_REVOKE_RECV_BUF`: guest -> host, stop using the receive buffer.
        REVOKE_RECV_BUF = 103,
        /// `NVSP_MSG1_TYPE_SEND_SEND_BUF`: guest -> host, the send-buffer GPADL.
        SEND_SEND_BUF = 104,
        /// `NVSP_MSG1_TYPE_SEND_SEND_BUF_COMPLETE`: host -> guest, the section size.
        SEND_SEND_BUF_COMPLETE = 105,
        /// `NVSP_MSG1_TYPE_REVOKE_SEND_BUF`: guest -> host, stop using the send buffer.
        REVOKE_SEND_BUF = 106,
        /// `NVSP_MSG1_TYPE_SEND_RNDIS_PKT`: either way, an RNDIS message is ready.
        SEND_RNDIS_PKT = 107,
        /// `NVSP_MSG1_TYPE_SEND_RNDIS_PKT_COMPLETE`: either way, RNDIS message consumed.
        SEND_RNDIS_PKT_COMPLETE = 108,
        /// `NVSP_MSG2_TYPE_SEND_CHIMNEY_DELEGATED_BUF` (TCP chimney; no layout known).
        SEND_CHIMNEY_DELEGATED_BUF = 109,
        /// `NVSP_MSG2_TYPE_SEND_CHIMNEY_DELEGATED_BUF_COMP`.
        SEND_CHIMNEY_DELEGATED_BUF_COMP = 110,
        /// `NVSP_MSG2_TYPE_REVOKE_CHIMNEY_DELEGATED_BUF`.
        REVOKE_CHIMNEY_DELEGATED_BUF = 111,
        /// `NVSP_MSG2_TYPE_RESUME_CHIMNEY_RX_INDICATION`.
        RESUME_CHIMNEY_RX_INDICATION = 112,
        /// `NVSP_MSG2_TYPE_TERMINATE_CHIMNEY`.
        TERMINATE_CHIMNEY = 113,
        /// `NVSP_MSG2_TYPE_TERMINATE_CHIMNEY_COMP`.
        TERMINATE_CHIMNEY_COMP = 114,
        /// `NVSP_MSG2_TYPE_INDICATE_CHIMNEY_EVENT`.
        INDICATE_CHIMNEY_EVENT = 115,
        /// `NVSP_MSG2_TYPE_SEND_CHIMNEY_PKT`.
        SEND_CHIMNEY_PKT = 116,
        /// `NVSP_MSG2_TYPE_SEND_CHIMNEY_PKT_COMP`.
        SEND_CHIMNEY_PKT_COMP = 117,
        /// `NVSP_MSG2_TYPE_POST_CHIMNEY_RECV_REQ`.
        POST_CHIMNEY_RECV_REQ = 118,
        /// `NVSP_MSG2_TYPE_POST_CHIMNEY_RECV_REQ_COMP`.
        POST_CHIMNEY_RECV_REQ_COMP = 119,
        /// `NVSP_MSG2_TYPE_ALLOC_RXBUF` (deprecated per OpenVMM).
        ALLOC_RXBUF = 120,
        /// `NVSP_MSG2_TYPE_ALLOC_RXBUF_COMP` (deprecated per OpenVMM).
        ALLOC_RXBUF_COMP = 121,
        /// `NVSP_MSG2_TYPE_FREE_RXBUF` (deprecated per OpenVMM).
        FREE_RXBUF = 122,
        /// `NVSP_MSG2_TYPE_SEND_VMQ_RNDIS_PKT` (deprecated; no layout known).
        SEND_VMQ_RNDIS_PKT = 123,
        /// `NVSP_MSG2_TYPE_SEND_VMQ_RNDIS_PKT_COMP` (deprecated; no layout known).
        SEND_VMQ_RNDIS_PKT_COMP = 124,
        /// `NVSP_MSG2_TYPE_SEND_NDIS_CONFIG`: guest -> host, MTU and capabilities.
        SEND_NDIS_CONFIG = 125,
        /// `NVSP_MSG2_TYPE_ALLOC_CHIMNEY_HANDLE` (no layout known).
        ALLOC_CHIMNEY_HANDLE = 126,
        /// `NVSP_MSG2_TYPE_ALLOC_CHIMNEY_HANDLE_COMP` (no layout known).
        ALLOC_CHIMNEY_HANDLE_COMP = 127,
        /// `NVSP_MSG4_TYPE_SEND_VF_ASSOCIATION`: host -> guest, an SR-IOV VF is (not) there.
        SEND_VF_ASSOCIATION = 128,
        /// `NVSP_MSG4_TYPE_SWITCH_DATA_PATH`: guest -> host (or host -> guest in OpenVMM),
        /// which data path is active.
        SWITCH_DATA_PATH = 129,
        /// `NVSP_MSG4_TYPE_UPLINK_CONNECT_STATE_DEPRECATED` (no layout known).
        UPLINK_CONNECT_STATE_DEPRECATED = 130,
        /// `NVSP_MSG5_TYPE_OID_QUERY_EX`: an OID query outside RNDIS (not used by Linux).
        OID_QUERY_EX = 131,
        /// `NVSP_MSG5_TYPE_OID_QUERY_EX_COMP`.
        OID_QUERY_EX_COMP = 132,
        /// `NVSP_MSG5_TYPE_SUBCHANNEL`: guest -> host subchannel request; the host's
        /// completion packet carries the same type with a different body.
        SUBCHANNEL = 133,
        /// `NVSP_MSG5_TYPE_SEND_INDIRECTION_TABLE`: host -> guest, the send (TX) table.
        SEND_INDIRECTION_TABLE = 134,
        /// `NVSP_MSG6_TYPE_PD_API`: PacketDirect API request (completion: same type).
        PD_API = 135,
        /// `NVSP_MSG6_TYPE_PD_POST_BATCH`: PacketDirect batch.
        PD_POST_BATCH = 136,
    }
}

impl NvspMessageType {
    /// The first NVSP version whose message set contains this type (the
    /// `NVSP_MSGn_MAX` ranges of hyperv_net.h): v1 for 1..=2 and 100..=108, v2 for
    /// 109..=127, v4 for 128..=130, v5 for 131..=134, v6 for 135..=136. `None` for NONE
    /// and values the protocol does not define. INIT and INIT_COMPLETE precede the
    /// negotiation and are allowed at every version.
    ///
    /// Note: Windows hosts accept 135/136 only from 6.1 (their v6 handler table has the
    /// v5 message count, kept for a KDNET dependency, as OpenVMM protocol.rs quotes);
    /// this function follows the Linux `NVSP_MSG6_*` naming.
    pub const fn min_version(self) -> Option<NvspVersion> {
        match self.0 {
            1..=2 | 100..=108 => Some(NvspVersion::V1),
            109..=127 => Some(NvspVersion::V2),
            128..=130 => Some(NvspVersion::V4),
            131..=134 => Some(NvspVersion::V5),
            135..=136 => Some(NvspVersion::V6),
            _ => None,
        }
    }

    /// Whether [`NvspMessage::parse`] decodes this type's body (types without a body
    /// layout here are reported as [`NvspMessage::Unknown`]).
    pub const fn has_body_layout(self) -> bool {
        matches!(self.0, 1 | 2 | 100..=108 | 120..=122 | 125 | 128 | 129 | 131..=136)
    }
}

hv_hypercall::open_enum! {
    /// An NVSP protocol version, `major << 16 | minor` (`NVSP_PROTOCOL_VERSION_*` in
    /// hyperv_net.h), as sent in INIT. Open: a guest may propose anything. Ordering is by
    /// raw value, which is the protocol's order.
    pub struct NvspVersion(u32) {
        /// `NVSP_PROTOCOL_VERSION_1` (0x2; "0.2").
        V1 = 0x0000_0002,
        /// `NVSP_PROTOCOL_VERSION_2` (3.2).
        V2 = 0x0003_0002,
        /// `NVSP_PROTOCOL_VERSION_4` (4.0): VF association, data-path switch.
        V4 = 0x0004_0000,
        /// `NVSP_PROTOCOL_VERSION_5` (5.0): subchannels, send indirection table.
        V5 = 0x0005_0000,
        /// `NVSP_PROTOCOL_VERSION_6` (6.0).
        V6 = 0x0006_0000,
        /// `NVSP_PROTOCOL_VERSION_61` (6.1): RSC over VMBus, 40-byte messages.
        V6_1 = 0x0006_0001,
    }
}

/// `NVSP_INVALID_PROTOCOL_VERSION`.
pub const NVSP_INVALID_PROTOCOL_VERSION: NvspVersion = NvspVersion(0xFFFF_FFFF);

impl NvspVersion {
    /// Every version the protocol defines, oldest first.
    pub const ALL: [Self; 6] = [Self::V1, Self::V2, Self::V4, Self::V5, Self::V6, Self::V6_1];

    /// The order netvsc tries versions in (`netvsc_connect_vsp`, newest first), sending
    /// INIT with `min = max = version` each time until INIT_COMPLETE says SUCCESS.
    pub const LINUX_GUEST_ORDER: [Self; 6] =
        [Self::V6_1, Self::V6, Self::V5, Self::V4, Self::V2, Self::V1];

    /// The major number (high 16 bits).
    pub const fn major(self) -> u16 {
        (self.0 >> 16) as u16
    }

    /// The minor number (low 16 bits).
    pub const fn minor(self) -> u16 {
        self.0 as u16
    }

    /// Whether a message of type `msg_type` may be sent once this version is negotiated
    /// (see [`NvspMessageType::min_version`]). Unknown types are never allowed.
    pub const fn allows(self, msg_type: NvspMessageType) -> bool {
        match msg_type.min_version() {
            Some(v) => self.0 >= v.0,
            None => false,
        }
    }

    /// The NDIS version netvsc announces in SEND_NDIS_VER at this NVSP version (hard-coded
    /// in `netvsc_connect_vsp`): 6.1 up to NVSP 4, 6.30 from NVSP 5.
    pub const fn linux_ndis_version(self) -> NdisVersion {
        if self.0 <= Self::V4.0 {
            NdisVersion::V6_1
        } else {
            NdisVersion::V6_30
        }
    }
}

hv_hypercall::open_enum! {
    /// NVSP completion status (`NVSP_STAT_*` in hyperv_net.h). Success is 1, not 0.
    pub struct NvspStatus(u32) {
        /// `NVSP_STAT_NONE`.
        NONE = 0,
        /// `NVSP_STAT_SUCCESS`.
        SUCCESS = 1,
        /// `NVSP_STAT_FAIL`.
        FAIL = 2,
        /// `NVSP_STAT_PROTOCOL_TOO_NEW`.
        PROTOCOL_TOO_NEW = 3,
        /// `NVSP_STAT_PROTOCOL_TOO_OLD`.
        PROTOCOL_TOO_OLD = 4,
        /// `NVSP_STAT_INVALID_RNDIS_PKT`.
        INVALID_RNDIS_PKT = 5,
        /// `NVSP_STAT_BUSY`.
        BUSY = 6,
        /// `NVSP_STAT_PROTOCOL_UNSUPPORTED` (OpenVMM: "not actually used").
        PROTOCOL_UNSUPPORTED = 7,
    }
}

hv_hypercall::open_enum! {
    /// An NDIS version, `major << 16 | minor`. Not a Linux macro (netvsc.c hard-codes the
    /// values); names from DPDK/FreeBSD `NDIS_VERSION_*`. On the wire SEND_NDIS_VER
    /// carries major and minor as two u32s, see [`NdisVersion::from_parts`].
    pub struct NdisVersion(u32) {
        /// NDIS 6.1 (`NDIS_VERSION_6_1`): what netvsc sends up to NVSP 4.
        V6_1 = 0x0006_0001,
        /// NDIS 6.20 (`NDIS_VERSION_6_20`).
        V6_20 = 0x0006_0014,
        /// NDIS 6.30 (`NDIS_VERSION_6_30`): what netvsc sends from NVSP 5.
        V6_30 = 0x0006_001E,
    }
}

impl NdisVersion {
    /// `major << 16 | minor`.
    pub const fn new(major: u16, minor: u16) -> Self {
        Self((major as u32) << 16 | minor as u32)
    }

    /// Combines SEND_NDIS_VER's two u32 words, or `None` if either exceeds 16 bits (the
    /// peer sent nonsense).
    pub const fn from_parts(major: u32, minor: u32) -> Option<Self> {
        if major > 0xFFFF || minor > 0xFFFF {
            None
        } else {
            Some(Self(major << 16 | minor))
        }
    }

    /// The major number.
    pub const fn major(self) -> u16 {
        (self.0 >> 16) as u16
    }

    /// The minor number.
    pub const fn minor(self) -> u16 {
        self.0 as u16
    }
}

hv_hypercall::open_enum! {
    /// `channel_type` of SEND_RNDIS_PKT: which RNDIS "channel" the message belongs to
    /// (RNDIS assumes two; NVSP carries the choice with each message).
    pub struct NvspChannelType(u32) {
        /// `RMC_DATA` (0): an RNDIS_MSG_PACKET data message.
        RMC_DATA = 0,
        /// `RMC_CONTROL` (1): any other RNDIS message (INIT, QUERY, SET, INDICATE...).
        RMC_CONTROL = 1,
    }
}

hv_hypercall::open_enum! {
    /// `active_datapath` of SWITCH_DATA_PATH (`enum nvsp_vm_datapath`).
    pub struct NvspDataPath(u32) {
        /// `NVSP_DATAPATH_SYNTHETIC`: traffic goes through VMBus.
        SYNTHETIC = 0,
        /// `NVSP_DATAPATH_VF`: traffic goes through the SR-IOV virtual function.
        VF = 1,
    }
}

hv_hypercall::open_enum! {
    /// `op` of a SUBCHANNEL request (`enum nvsp_subchannel_operation`).
    pub struct NvspSubchannelOp(u32) {
        /// `NVSP_SUBCHANNEL_NONE`.
        NONE = 0,
        /// `NVSP_SUBCHANNEL_ALLOCATE`: offer `num_subchannels` subchannels.
        ALLOCATE = 1,
    }
}

hv_hypercall::open_enum! {
    /// `op` of a v6 PacketDirect API message (`enum nvsp_6_pd_api_op`). Linux defines
    /// these but never sends them.
    pub struct NvspPdApiOp(u32) {
        /// `PD_API_OP_CONFIG`.
        CONFIG = 1,
        /// `PD_API_OP_SW_DATAPATH` (switch data path).
        SW_DATAPATH = 2,
        /// `PD_API_OP_OPEN_PROVIDER`.
        OPEN_PROVIDER = 3,
        /// `PD_API_OP_CLOSE_PROVIDER`.
        CLOSE_PROVIDER = 4,
        /// `PD_API_OP_CREATE_QUEUE`.
        CREATE_QUEUE = 5,
        /// `PD_API_OP_FLUSH_QUEUE`.
        FLUSH_QUEUE = 6,
        /// `PD_API_OP_FREE_QUEUE`.
        FREE_QUEUE = 7,
        /// `PD_API_OP_ALLOC_COM_BUF` (allocate common buffer).
        ALLOC_COM_BUF = 8,
        /// `PD_API_OP_FREE_COM_BUF` (free common buffer).
        FREE_COM_BUF = 9,
    }
}

bitflags! {
    /// The capability word of SEND_NDIS_CONFIG (`struct nvsp_2_vsc_capability`, a u64
    /// whose low bits are single-bit fields). netvsc sets IEEE8021Q always, SRIOV and
    /// TEAMING from NVSP 5 (SRIOV not on isolated VMs), RSC from 6.1. Unknown bits are
    /// kept ([`NdisConfigCapabilities::from_bits_retain`]).
    #[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
    pub struct NdisConfigCapabilities: u64 {
        /// `vmq` (bit 0).
        const VMQ = 1 << 0;
        /// `chimney` (bit 1): TCP chimney offload.
        const CHIMNEY = 1 << 1;
        /// `sriov` (bit 2): the guest can use an SR-IOV VF.
        const SRIOV = 1 << 2;
        /// `ieee8021q` (bit 3): VLAN tagging.
        const IEEE8021Q = 1 << 3;
        /// `correlation_id` (bit 4).
        const CORRELATION_ID = 1 << 4;
        /// `teaming` (bit 5): the guest teams the VF with the synthetic NIC.
        const TEAMING = 1 << 5;
        /// `vsubnetid` (bit 6).
        const VSUBNETID = 1 << 6;
        /// `rsc` (bit 7): receive segment coalescing over VMBus.
        const RSC = 1 << 7;
    }
}

// ---------------------------------------------------------------------------------------
// Wire structs (hyperv_net.h)
// ---------------------------------------------------------------------------------------

/// `struct nvsp_message_header` (4 bytes, not packed in Linux).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct NvspMessageHeader {
    /// The message type.
    pub msg_type: NvspMessageType,
}

/// `struct nvsp_message_init` (8 bytes): the body of INIT.
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct NvspMessageInit {
    /// Lowest version the guest accepts (netvsc: same as max).
    pub min_protocol_ver: NvspVersion,
    /// Highest version the guest accepts. A host should answer with SUCCESS only if it
    /// supports a version in `min..=max`; a peer may send `min > max`.
    pub max_protocol_ver: NvspVersion,
}

/// `struct nvsp_message_init_complete` (12 bytes): the body of INIT_COMPLETE.
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct NvspMessageInitComplete {
    /// Historically the negotiated version; Windows calls it deprecated and netvsc
    /// ignores it (it keeps the version it proposed).
    pub negotiated_protocol_ver: NvspVersion,
    /// Unused.
    pub max_mdl_chain_len: u32,
    /// SUCCESS if the proposed version is accepted.
    pub status: NvspStatus,
}

/// `struct nvsp_1_message_send_ndis_version` (8 bytes).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp1SendNdisVersion {
    /// NDIS major version (6).
    pub ndis_major_ver: u32,
    /// NDIS minor version (1 or 30 from netvsc).
    pub ndis_minor_ver: u32,
}

/// `struct nvsp_1_message_send_receive_buffer` (6 bytes, packed): the body of
/// SEND_RECV_BUF.
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp1SendReceiveBuffer {
    /// The GPADL the guest created for the buffer. The host must check it names a GPADL
    /// of this channel.
    pub gpadl_handle: u32,
    /// The buffer id ([`NETVSC_RECEIVE_BUFFER_ID`]), echoed as `xfer_pageset_id`.
    pub id: u16,
}

/// `struct nvsp_1_receive_buffer_section` (16 bytes).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp1ReceiveBufferSection {
    /// Byte offset of the section in the receive buffer.
    pub offset: u32,
    /// Size of each sub-allocation; every RNDIS message the host sends must fit in it.
    pub sub_alloc_size: u32,
    /// Number of sub-allocations.
    pub num_sub_allocs: u32,
    /// End of the section. A hostile host may send values outside the buffer or
    /// inconsistent with the other fields: check them.
    pub end_offset: u32,
}

/// `struct nvsp_1_message_send_receive_buffer_complete` (24 bytes, with the one section
/// Linux declares; more sections may follow in the packet).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp1SendReceiveBufferComplete {
    /// SUCCESS if the host accepted the buffer.
    pub status: NvspStatus,
    /// Number of sections (Linux requires 1).
    pub num_sections: u32,
    /// The first section (`sections[1]` in Linux).
    pub sections: [Nvsp1ReceiveBufferSection; 1],
}

/// `struct nvsp_1_message_revoke_receive_buffer` (2 bytes, not packed in Linux).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Nvsp1RevokeReceiveBuffer {
    /// The buffer id given in SEND_RECV_BUF.
    pub id: u16,
}

/// `struct nvsp_1_message_send_send_buffer` (6 bytes, packed).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp1SendSendBuffer {
    /// The GPADL of the send buffer.
    pub gpadl_handle: u32,
    /// The buffer id ([`NETVSC_SEND_BUFFER_ID`]).
    pub id: u16,
}

/// `struct nvsp_1_message_send_send_buffer_complete` (8 bytes).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp1SendSendBufferComplete {
    /// SUCCESS if the host accepted the buffer.
    pub status: NvspStatus,
    /// The section size the host chose ([`NETVSC_SEND_SECTION_SIZE`]); a hostile host
    /// may send 0 or more than the buffer.
    pub section_size: u32,
}

/// `struct nvsp_1_message_revoke_send_buffer` (2 bytes, not packed in Linux).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Nvsp1RevokeSendBuffer {
    /// The buffer id given in SEND_SEND_BUF.
    pub id: u16,
}

/// `struct nvsp_1_message_send_rndis_packet` (12 bytes).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp1SendRndisPacket {
    /// Data or control.
    pub channel_type: NvspChannelType,
    /// Send-buffer section holding the RNDIS message, or [`NETVSC_INVALID_INDEX`]. The
    /// guest may name a section past the buffer: check it.
    pub send_buf_section_index: u32,
    /// Bytes used in that section (0 when not using the send buffer); may exceed the
    /// section size when sent by a hostile guest.
    pub send_buf_section_size: u32,
}

/// `struct nvsp_1_message_send_rndis_packet_complete` (4 bytes, not packed in Linux).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Nvsp1SendRndisPacketComplete {
    /// SUCCESS, or FAIL/INVALID_RNDIS_PKT.
    pub status: NvspStatus,
}

/// `struct nvsp_2_send_ndis_config` (16 bytes).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp2SendNdisConfig {
    /// MTU including the 14-byte Ethernet header (netvsc: `ndev->mtu + ETH_HLEN`).
    pub mtu: u32,
    /// Reserved.
    pub reserved: u32,
    /// `nvsp_2_vsc_capability` bits, see [`NdisConfigCapabilities`].
    pub capability: u64,
}

/// `struct nvsp_2_alloc_rxbuf` (8 bytes).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp2AllocRxbuf {
    /// Matches request and response.
    pub alloc_id: u32,
    /// Length of the buffer to allocate.
    pub len: u32,
}

/// `struct nvsp_2_alloc_rxbuf_comp` (20 bytes, packed: the u64 sits at offset 12).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp2AllocRxbufComp {
    /// An NDIS_STATUS code.
    pub status: u32,
    /// The request's `alloc_id`.
    pub alloc_id: u32,
    /// GPADL of the allocated buffer.
    pub gpadl_handle: u32,
    /// Receive buffer id.
    pub recv_buf_id: u64,
}

/// `struct nvsp_2_free_rxbuf` (8 bytes).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp2FreeRxbuf {
    /// Receive buffer id.
    pub recv_buf_id: u64,
}

/// `struct nvsp_4_send_vf_association` (8 bytes).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp4SendVfAssociation {
    /// 1: a VF is allocated and `serial` is valid; 0: none. Other values are garbage.
    pub allocated: u32,
    /// Serial number of the VF to team with.
    pub serial: u32,
}

/// `struct nvsp_4_sw_datapath` (4 bytes).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp4SwDatapath {
    /// The data path now active in the VM.
    pub active_datapath: NvspDataPath,
}

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

/// `struct grp_affinity` (16 bytes): a Windows `GROUP_AFFINITY`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct GrpAffinity {
    /// Processor mask within the group.
    pub mask: u64,
    /// Processor group.
    pub grp: u16,
    /// Reserved.
    pub reserved: [u16; 3],
}

/// Size of the parameter union of `struct nvsp_6_pd_api_req`.
pub const PD_API_REQ_PARAMS_SIZE: usize = 30;
/// Size of the parameter union of `struct nvsp_6_pd_api_comp`.
pub const PD_API_COMP_PARAMS_SIZE: usize = 28;

/// `struct nvsp_6_pd_api_req` (34 bytes, packed): a PacketDirect API request. The
/// operation-specific union is kept as bytes; read it with the accessors.
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp6PdApiReq {
    /// The operation.
    pub op: NvspPdApiOp,
    /// The operation's parameters (a union in Linux).
    pub params: [u8; PD_API_REQ_PARAMS_SIZE],
}

/// `config` member of the `nvsp_6_pd_api_req` union (14 bytes).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp6PdApiReqConfig {
    /// MMIO physical address.
    pub mmio_pa: u64,
    /// MMIO length.
    pub mmio_len: u32,
    /// Number of PD queues the VM can support.
    pub num_subchn: u16,
}

/// `cr_q` (create queue) member of the `nvsp_6_pd_api_req` union (30 bytes).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp6PdApiReqCreateQueue {
    /// Provider id.
    pub prov_id: u32,
    /// Queue id.
    pub q_id: u16,
    /// Queue size.
    pub q_size: u16,
    /// Whether this is a receive queue.
    pub is_recv_q: u8,
    /// Whether this is an RSS queue.
    pub is_rss_q: u8,
    /// Receive data length.
    pub recv_data_len: u32,
    /// Processor affinity.
    pub affy: GrpAffinity,
}

/// `free_com_buf` member of the `nvsp_6_pd_api_req` union (19 bytes).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp6PdApiReqFreeComBuf {
    /// Length.
    pub len: u32,
    /// Physical address.
    pub pa: u64,
    /// Preferred NUMA node.
    pub pf_node: u32,
    /// Region id.
    pub region_id: u16,
    /// Cache type.
    pub cache_type: u8,
}

impl Nvsp6PdApiReq {
    /// The parameters read as the `config` member.
    pub fn config(&self) -> Nvsp6PdApiReqConfig {
        read_union(&self.params)
    }
    /// The parameters read as the `cr_q` member.
    pub fn create_queue(&self) -> Nvsp6PdApiReqCreateQueue {
        read_union(&self.params)
    }
    /// The parameters read as the `free_com_buf` member.
    pub fn free_com_buf(&self) -> Nvsp6PdApiReqFreeComBuf {
        read_union(&self.params)
    }
}

/// `struct nvsp_6_pd_api_comp` (36 bytes, packed; the largest NVSP body, which makes
/// `nvsp_message` 40 bytes): completion of a PacketDirect API request.
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp6PdApiComp {
    /// The operation.
    pub op: NvspPdApiOp,
    /// An NT status code.
    pub status: u32,
    /// Operation-specific results (a union in Linux).
    pub params: [u8; PD_API_COMP_PARAMS_SIZE],
}

/// `config` member of the `nvsp_6_pd_api_comp` union (5 bytes).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp6PdApiCompConfig {
    /// PD queues allocated to the VM.
    pub num_pd_q: u16,
    /// Receive RSS PD queues.
    pub num_rss_q: u8,
    /// Supported by the VSP.
    pub is_supported: u8,
    /// Enabled by the VSP.
    pub is_enabled: u8,
}

/// `cr_q` member of the `nvsp_6_pd_api_comp` union (28 bytes).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp6PdApiCompCreateQueue {
    /// Provider id.
    pub prov_id: u32,
    /// Queue id.
    pub q_id: u16,
    /// Queue size.
    pub q_size: u16,
    /// Receive data length.
    pub recv_data_len: u32,
    /// Processor affinity.
    pub affy: GrpAffinity,
}

/// `alloc_com_buf` member of the `nvsp_6_pd_api_comp` union (19 bytes).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp6PdApiCompAllocComBuf {
    /// Physical address.
    pub pa: u64,
    /// Length.
    pub len: u32,
    /// Preferred NUMA node.
    pub pf_node: u32,
    /// Region id.
    pub region_id: u16,
    /// Cache type.
    pub cache_type: u8,
}

impl Nvsp6PdApiComp {
    /// The results read as the `config` member.
    pub fn config(&self) -> Nvsp6PdApiCompConfig {
        read_union(&self.params)
    }
    /// The results read as the `cr_q` member.
    pub fn create_queue(&self) -> Nvsp6PdApiCompCreateQueue {
        read_union(&self.params)
    }
    /// The results read as the `alloc_com_buf` member.
    pub fn alloc_com_buf(&self) -> Nvsp6PdApiCompAllocComBuf {
        read_union(&self.params)
    }
}

/// Reads a union member from the front of a parameter array (always long enough; the
/// zero fallback only keeps the code free of `unwrap`).
fn read_union<T: FromBytes>(params: &[u8]) -> T {
    T::read_from_prefix(params).map_or_else(|_| T::new_zeroed(), |(v, _)| v)
}

/// `nvsp_6_pd_buf.is_partial` (bit 0 of `flags`).
pub const PD_BUF_IS_PARTIAL: u16 = 1 << 0;

/// `struct nvsp_6_pd_buf` (8 bytes): one PacketDirect buffer of a batch.
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp6PdBuf {
    /// Offset in the region.
    pub region_offset: u32,
    /// Region id.
    pub region_id: u16,
    /// Bit 0 `is_partial` ([`PD_BUF_IS_PARTIAL`]), 15 reserved bits.
    pub flags: u16,
}

/// `nvsp_6_pd_batch_msg.guest2host` (bit 0 of `flags`).
pub const PD_BATCH_GUEST_TO_HOST: u16 = 1 << 0;
/// `nvsp_6_pd_batch_msg.is_recv` (bit 1 of `flags`).
pub const PD_BATCH_IS_RECV: u16 = 1 << 1;

/// `struct nvsp_6_pd_batch_msg` (8 bytes, header included; `count`
/// [`Nvsp6PdBuf`] entries follow it).
#[derive(Copy, Clone, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct Nvsp6PdBatchMsg {
    /// The NVSP header (PD_POST_BATCH).
    pub hdr: NvspMessageHeader,
    /// Number of [`Nvsp6PdBuf`] entries that follow.
    pub count: u16,
    /// [`PD_BATCH_GUEST_TO_HOST`], [`PD_BATCH_IS_RECV`], 14 reserved bits.
    pub flags: u16,
}

// Sizes and offsets, against reference/abi-linux.md (gcc layout of hyperv_net.h).
const _: () = assert!(size_of::<NvspMessageHeader>() == 4);
const _: () = assert!(offset_of!(NvspMessageHeader, msg_type) == 0);
const _: () = assert!(size_of::<NvspMessageInit>() == 8);
const _: () = assert!(offset_of!(NvspMessageInit, min_protocol_ver) == 0);
const _: () = assert!(offset_of!(NvspMessageInit, max_protocol_ver) == 4);
const _: () = assert!(size_of::<NvspMessageInitComplete>() == 12);
const _: () = assert!(offset_of!(NvspMessageInitComplete, negotiated_protocol_ver) == 0);
const _: () = assert!(offset_of!(NvspMessageInitComplete, max_mdl_chain_len) == 4);
const _: () = assert!(offset_of!(NvspMessageInitComplete, status) == 8);
const _: () = assert!(size_of::<Nvsp1SendNdisVersion>() == 8);
const _: () = assert!(offset_of!(Nvsp1SendNdisVersion, ndis_minor_ver) == 4);
const _: () = assert!(size_of::<Nvsp1SendReceiveBuffer>() == 6);
const _: () = assert!(offset_of!(Nvsp1SendReceiveBuffer, id) == 4);
const _: () = assert!(size_of::<Nvsp1ReceiveBufferSection>() == 16);
const _: () = assert!(offset_of!(Nvsp1ReceiveBufferSection, sub_alloc_size) == 4);
const _: () = assert!(offset_of!(Nvsp1ReceiveBufferSection, num_sub_allocs) == 8);
const _: () = assert!(offset_of!(Nvsp1ReceiveBufferSection, end_offset) == 12);
const _: () = assert!(size_of::<Nvsp1SendReceiveBufferComplete>() == 24);
const _: () = assert!(offset_of!(Nvsp1SendReceiveBufferComplete, num_sections) == 4);
const _: () = assert!(offset_of!(Nvsp1SendReceiveBufferComplete, sections) == 8);
const _: () = assert!(size_of::<Nvsp1RevokeReceiveBuffer>() == 2);
const _: () = assert!(size_of::<Nvsp1SendSendBuffer>() == 6);
const _: () = assert!(offset_of!(Nvsp1SendSendBuffer, id) == 4);
const _: () = assert!(size_of::<Nvsp1SendSendBufferComplete>() == 8);
const _: () = assert!(offset_of!(Nvsp1SendSendBufferComplete, section_size) == 4);
const _: () = assert!(size_of::<Nvsp1RevokeSendBuffer>() == 2);
const _: () = assert!(size_of::<Nvsp1SendRndisPacket>() == 12);
const _: () = assert!(offset_of!(Nvsp1SendRndisPacket, send_buf_section_index) == 4);
const _: () = assert!(offset_of!(Nvsp1SendRndisPacket, send_buf_section_size) == 8);
const _: () = assert!(size_of::<Nvsp1SendRndisPacketComplete>() == 4);
const _: () = assert!(size_of::<Nvsp2SendNdisConfig>() == 16);
const _: () = assert!(offset_of!(Nvsp2SendNdisConfig, reserved) == 4);
const _: () = assert!(offset_of!(Nvsp2SendNdisConfig, capability) == 8);
const _: () = assert!(size_of::<Nvsp2AllocRxbuf>() == 8);
const _: () = assert!(offset_of!(Nvsp2AllocRxbuf, len) == 4);
const _: () = assert!(size_of::<Nvsp2AllocRxbufComp>() == 20);
const _: () = assert!(offset_of!(Nvsp2AllocRxbufComp, alloc_id) == 4);
const _: () = assert!(offset_of!(Nvsp2AllocRxbufComp, gpadl_handle) == 8);
const _: () = assert!(offset_of!(Nvsp2AllocRxbufComp, recv_buf_id) == 12);
const _: () = assert!(size_of::<Nvsp2FreeRxbuf>() == 8);
const _: () = assert!(size_of::<Nvsp4SendVfAssociation>() == 8);
const _: () = assert!(offset_of!(Nvsp4SendVfAssociation, serial) == 4);
const _: () = assert!(size_of::<Nvsp4SwDatapath>() == 4);
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
const _: () = assert!(size_of::<GrpAffinity>() == 16);
const _: () = assert!(offset_of!(GrpAffinity, grp) == 8);
const _: () = assert!(offset_of!(GrpAffinity, reserved) == 10);
const _: () = assert!(size_of::<Nvsp6PdApiReq>() == 34);
const _: () = assert!(offset_of!(Nvsp6PdApiReq, params) == 4);
// Union members: abi-linux.md gives offsets within nvsp_6_pd_api_req (params at +4).
const _: () = assert!(4 + offset_of!(Nvsp6PdApiReqConfig, mmio_pa) == 4);
const _: () = assert!(4 + offset_of!(Nvsp6PdApiReqConfig, mmio_len) == 12);
const _: () = assert!(4 + offset_of!(Nvsp6PdApiReqConfig, num_subchn) == 16);
const _: () = assert!(4 + offset_of!(Nvsp6PdApiReqCreateQueue, recv_data_len) == 14);
const _: () = assert!(4 + offset_of!(Nvsp6PdApiReqCreateQueue, affy) == 18);
const _: () = assert!(size_of::<Nvsp6PdApiReqCreateQueue>() == PD_API_REQ_PARAMS_SIZE);
const _: () = assert!(4 + offset_of!(Nvsp6PdApiReqFreeComBuf, pa) == 8);
const _: () = assert!(size_of::<Nvsp6PdApiReqConfig>() <= PD_API_REQ_PARAMS_SIZE);
const _: () = assert!(size_of::<Nvsp6PdApiReqFreeComBuf>() <= PD_API_REQ_PARAMS_SIZE);
const _: () = assert!(size_of::<Nvsp6PdApiComp>() == 36);
const _: () = assert!(offset_of!(Nvsp6PdApiComp, status) == 4);
const _: () = assert!(offset_of!(Nvsp6PdApiComp, params) == 8);
const _: () = assert!(8 + offset_of!(Nvsp6PdApiCompConfig, num_pd_q) == 8);
const _: () = assert!(8 + offset_of!(Nvsp6PdApiCompCreateQueue, affy) == 20);
const _: () = assert!(size_of::<Nvsp6PdApiCompCreateQueue>() == PD_API_COMP_PARAMS_SIZE);
const _: () = assert!(8 + offset_of!(Nvsp6PdApiCompAllocComBuf, pa) == 8);
const _: () = assert!(size_of::<Nvsp6PdApiCompConfig>() <= PD_API_COMP_PARAMS_SIZE);
const _: () = assert!(size_of::<Nvsp6PdApiCompAllocComBuf>() <= PD_API_COMP_PARAMS_SIZE);
const _: () = assert!(size_of::<Nvsp6PdBuf>() == 8);
const _: () = assert!(offset_of!(Nvsp6PdBuf, region_id) == 4);
const _: () = assert!(offset_of!(Nvsp6PdBuf, flags) == 6);
const _: () = assert!(size_of::<Nvsp6PdBatchMsg>() == 8);
const _: () = assert!(offset_of!(Nvsp6PdBatchMsg, count) == 4);
const _: () = assert!(offset_of!(Nvsp6PdBatchMsg, flags) == 6);
// nvsp_message = header + union of all bodies: 40 now (largest body nvsp_6_pd_api_comp),
// 28 before v6 (largest body send_receive_buffer_complete).
const _: () = assert!(NVSP_MESSAGE_SIZE == NVSP_HEADER_SIZE + size_of::<Nvsp6PdApiComp>());
const _: () = assert!(
    NVSP_MESSAGE_SIZE_PRE_V6 == NVSP_HEADER_SIZE + size_of::<Nvsp1SendReceiveBufferComplete>()
);
// Field offsets within nvsp_message that abi-linux.md lists (body at +4).
const _: () = assert!(NVSP_HEADER_SIZE + offset_of!(NvspMessageInit, max_protocol_ver) == 8);
const _: () =
    assert!(NVSP_HEADER_SIZE + offset_of!(Nvsp1SendRndisPacket, send_buf_section_index) == 8);
const _: () =
    assert!(NVSP_HEADER_SIZE + offset_of!(Nvsp1SendReceiveBufferComplete, sections) == 12);
const _: () = assert!(NVSP_HEADER_SIZE + offset_of!(Nvsp2SendNdisConfig, capability) == 12);
const _: () = assert!(
    SEND_INDIRECTION_TABLE_OFFSET as usize
        == NVSP_HEADER_SIZE + size_of::<Nvsp5SendIndirectTable>()
);

// ---------------------------------------------------------------------------------------
// The typed message
// ---------------------------------------------------------------------------------------

/// One NVSP message, decoded. Field names follow hyperv_net.h. Values are as the peer
/// sent them: open enums keep unknown values, and nothing here checks them against the
/// session state (a buffer id, a section index, a subchannel count) — the caller must.
///
/// Message types 133 (SUBCHANNEL) and 135 (PD_API) have one body in a request and
/// another in its completion packet: [`NvspMessage::parse`] decodes requests and
/// [`NvspMessage::parse_completion`] decodes completions.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NvspMessage {
    /// INIT (1): guest -> host.
    Init {
        /// Lowest acceptable version.
        min_protocol_ver: NvspVersion,
        /// Highest acceptable version.
        max_protocol_ver: NvspVersion,
    },
    /// INIT_COMPLETE (2): host -> guest.
    InitComplete {
        /// Historical; ignored by netvsc.
        negotiated_protocol_ver: NvspVersion,
        /// Unused.
        max_mdl_chain_len: u32,
        /// SUCCESS if accepted.
        status: NvspStatus,
    },
    /// SEND_NDIS_VER (100): guest -> host (no completion).
    SendNdisVersion {
        /// NDIS major version.
        ndis_major_ver: u32,
        /// NDIS minor version.
        ndis_minor_ver: u32,
    },
    /// SEND_RECV_BUF (101): guest -> host.
    SendReceiveBuffer {
        /// GPADL of the receive buffer.
        gpadl_handle: u32,
        /// Buffer id (0xCAFE).
        id: u16,
    },
    /// SEND_RECV_BUF_COMPLETE (102): host -> guest. `num_sections` is `sections.len()`,
    /// at most [`MAX_RECEIVE_BUFFER_SECTIONS`].
    SendReceiveBufferComplete {
        /// SUCCESS if accepted.
        status: NvspStatus,
        /// The sections (Linux requires exactly one).
        sections: Vec<Nvsp1ReceiveBufferSection>,
    },
    /// REVOKE_RECV_BUF (103): guest -> host.
    RevokeReceiveBuffer {
        /// Buffer id.
        id: u16,
    },
    /// SEND_SEND_BUF (104): guest -> host.
    SendSendBuffer {
        /// GPADL of the send buffer.
        gpadl_handle: u32,
        /// Buffer id (0).
        id: u16,
    },
    /// SEND_SEND_BUF_COMPLETE (105): host -> guest.
    SendSendBufferComplete {
        /// SUCCESS if accepted.
        status: NvspStatus,
        /// Section size the host chose.
        section_size: u32,
    },
    /// REVOKE_SEND_BUF (106): guest -> host.
    RevokeSendBuffer {
        /// Buffer id.
        id: u16,
    },
    /// SEND_RNDIS_PKT (107): either direction.
    SendRndisPacket {
        /// Data or control.
        channel_type: NvspChannelType,
        /// Send-buffer section, or [`NETVSC_INVALID_INDEX`].
        send_buf_section_index: u32,
        /// Bytes used in the section.
        send_buf_section_size: u32,
    },
    /// SEND_RNDIS_PKT_COMPLETE (108): either direction.
    SendRndisPacketComplete {
        /// SUCCESS or a failure.
        status: NvspStatus,
    },
    /// ALLOC_RXBUF (120, deprecated).
    AllocRxbuf {
        /// Request id.
        alloc_id: u32,
        /// Requested length.
        len: u32,
    },
    /// ALLOC_RXBUF_COMP (121, deprecated).
    AllocRxbufComplete {
        /// NDIS_STATUS.
        status: u32,
        /// Request id.
        alloc_id: u32,
        /// GPADL of the buffer.
        gpadl_handle: u32,
        /// Receive buffer id.
        recv_buf_id: u64,
    },
    /// FREE_RXBUF (122, deprecated).
    FreeRxbuf {
        /// Receive buffer id.
        recv_buf_id: u64,
    },
    /// SEND_NDIS_CONFIG (125): guest -> host (no completion). The reserved word is
    /// ignored on parse and sent as zero.
    SendNdisConfig {
        /// MTU plus the Ethernet header.
        mtu: u32,
        /// Capabilities (unknown bits kept).
        capability: NdisConfigCapabilities,
    },
    /// SEND_VF_ASSOCIATION (128): host -> guest.
    SendVfAssociation {
        /// 1 if a VF is allocated.
        allocated: u32,
        /// VF serial number.
        serial: u32,
    },
    /// SWITCH_DATA_PATH (129).
    SwitchDataPath {
        /// The data path now active.
        active_datapath: NvspDataPath,
    },
    /// OID_QUERY_EX (131).
    OidQueryEx(Nvsp5OidQueryEx),
    /// OID_QUERY_EX_COMP (132).
    OidQueryExComplete(Nvsp5OidQueryExComplete),
    /// SUBCHANNEL (133) request: guest -> host.
    Subchannel {
        /// ALLOCATE.
        op: NvspSubchannelOp,
        /// Subchannels wanted (uncapped: the host must cap it).
        num_subchannels: u32,
    },
    /// SUBCHANNEL (133) completion: host -> guest, from
    /// [`NvspMessage::parse_completion`].
    SubchannelComplete {
        /// SUCCESS or FAIL.
        status: NvspStatus,
        /// Subchannels allocated (the guest must cap it).
        num_subchannels: u32,
    },
    /// SEND_INDIRECTION_TABLE (134): host -> guest. Only the fixed part; read the
    /// entries with [`NvspSendIndirectionTable::parse`] and send them with
    /// [`NvspSendIndirectionTable::emit`] (emitting this variant writes no entries).
    SendIndirectionTable {
        /// Number of entries.
        count: u32,
        /// Offset of the entries from the start of the message.
        offset: u32,
    },
    /// PD_API (135) request.
    PdApi(Nvsp6PdApiReq),
    /// PD_API (135) completion, from [`NvspMessage::parse_completion`].
    PdApiComplete(Nvsp6PdApiComp),
    /// PD_POST_BATCH (136): the `count` [`Nvsp6PdBuf`] entries that follow are not
    /// decoded here (and not emitted).
    PdPostBatch {
        /// Number of buffers.
        count: u16,
        /// [`PD_BATCH_GUEST_TO_HOST`] / [`PD_BATCH_IS_RECV`].
        flags: u16,
    },
    /// A type without a body layout here: unknown to the protocol, NONE, or a known type
    /// nobody defines a layout for (chimney, VMQ, uplink state; see
    /// [`NvspMessageType::has_body_layout`]). Not an error: answer or ignore it.
    Unknown {
        /// The type the peer sent.
        msg_type: NvspMessageType,
    },
}

const WHAT: &str = "nvsp_message";

impl NvspMessage {
    /// INIT as netvsc sends it: `min = max = version`.
    pub const fn init(version: NvspVersion) -> Self {
        Self::Init {
            min_protocol_ver: version,
            max_protocol_ver: version,
        }
    }

    /// SEND_NDIS_VER carrying `version` split into its two words.
    pub const fn send_ndis_version(version: NdisVersion) -> Self {
        Self::SendNdisVersion {
            ndis_major_ver: version.major() as u32,
            ndis_minor_ver: version.minor() as u32,
        }
    }

    /// The message type this value is sent as.
    pub const fn msg_type(&self) -> NvspMessageType {
        match self {
            Self::Init { .. } => NvspMessageType::INIT,
            Self::InitComplete { .. } => NvspMessageType::INIT_COMPLETE,
            Self::SendNdisVersion { .. } => NvspMessageType::SEND_NDIS_VER,
            Self::SendReceiveBuffer { .. } => NvspMessageType::SEND_RECV_BUF,
            Self::SendReceiveBufferComplete { .. } => NvspMessageType::SEND_RECV_BUF_COMPLETE,
            Self::RevokeReceiveBuffer { .. } => NvspMessageType::REVOKE_RECV_BUF,
            Self::SendSendBuffer { .. } => NvspMessageType::SEND_SEND_BUF,
            Self::SendSendBufferComplete { .. } => NvspMessageType::SEND_SEND_BUF_COMPLETE,
            Self::RevokeSendBuffer { .. } => NvspMessageType::REVOKE_SEND_BUF,
            Self::SendRndisPacket { .. } => NvspMessageType::SEND_RNDIS_PKT,
            Self::SendRndisPacketComplete { .. } => NvspMessageType::SEND_RNDIS_PKT_COMPLETE,
            Self::AllocRxbuf { .. } => NvspMessageType::ALLOC_RXBUF,
            Self::AllocRxbufComplete { .. } => NvspMessageType::ALLOC_RXBUF_COMP,
            Self::FreeRxbuf { .. } => NvspMessageType::FREE_RXBUF,
            Self::SendNdisConfig { .. } => NvspMessageType::SEND_NDIS_CONFIG,
            Self::SendVfAssociation { .. } => NvspMessageType::SEND_VF_ASSOCIATION,
            Self::SwitchDataPath { .. } => NvspMessageType::SWITCH_DATA_PATH,
            Self::OidQueryEx(_) => NvspMessageType::OID_QUERY_EX,
            Self::OidQueryExComplete(_) => NvspMessageType::OID_QUERY_EX_COMP,
            Self::Subchannel { .. } | Self::SubchannelComplete { .. } => {
                NvspMessageType::SUBCHANNEL
            }
            Self::SendIndirectionTable { .. } => NvspMessageType::SEND_INDIRECTION_TABLE,
            Self::PdApi(_) | Self::PdApiComplete(_) => NvspMessageType::PD_API,
            Self::PdPostBatch { .. } => NvspMessageType::PD_POST_BATCH,
            Self::Unknown { msg_type } => *msg_type,
        }
    }

    /// Checks that this message may be exchanged once `negotiated` is in force
    /// ([`NvspVersion::allows`]); `Error::NotAllowed` otherwise (including for
    /// [`NvspMessage::Unknown`]).
    pub fn check_allowed(&self, negotiated: NvspVersion) -> Result<()> {
        let msg_type = self.msg_type();
        if negotiated.allows(msg_type) {
            Ok(())
        } else {
            Err(Error::NotAllowed {
                what: msg_type.name().unwrap_or("unknown NVSP message"),
                version: negotiated.0,
            })
        }
    }

    /// Parses the payload of an in-band packet (header + body) as a request or
    /// notification. The payload may be as short as the header plus the body of its
    /// type (old guests send 28 bytes in a 32-byte packet, new ones 40) and may be longer
    /// (bytes past the body are ignored, except the extra sections of
    /// SEND_RECV_BUF_COMPLETE).
    ///
    /// Errors: `Truncated` if the header or the type's body is short; `TooMany` /
    /// `Truncated` for a SEND_RECV_BUF_COMPLETE whose `num_sections` exceeds
    /// [`MAX_RECEIVE_BUFFER_SECTIONS`] or the payload. An unknown type is
    /// `Ok(NvspMessage::Unknown)`.
    pub fn parse(payload: &[u8]) -> Result<Self> {
        Self::parse_inner(payload, false)
    }

    /// Parses the payload of a completion packet: like [`NvspMessage::parse`], but type
    /// 133 is read as [`NvspMessage::SubchannelComplete`] and 135 as
    /// [`NvspMessage::PdApiComplete`].
    pub fn parse_completion(payload: &[u8]) -> Result<Self> {
        Self::parse_inner(payload, true)
    }

    fn parse_inner(payload: &[u8], completion: bool) -> Result<Self> {
        let (hdr, body) = read_prefix::<NvspMessageHeader>("nvsp_message_header", payload)?;
        let msg = match hdr.msg_type {
            NvspMessageType::INIT => {
                let (m, _) = read_prefix::<NvspMessageInit>("nvsp_message_init", body)?;
                Self::Init {
                    min_protocol_ver: m.min_protocol_ver,
                    max_protocol_ver: m.max_protocol_ver,
                }
            }
            NvspMessageType::INIT_COMPLETE => {
                let (m, _) =
                    read_prefix::<NvspMessageInitComplete>("nvsp_message_init_complete", body)?;
                Self::InitComplete {
                    negotiated_protocol_ver: m.negotiated_protocol_ver,
                    max_mdl_chain_len: m.max_mdl_chain_len,
                    status: m.status,
                }
            }
            NvspMessageType::SEND_NDIS_VER => {
                let (m, _) =
                    read_prefix::<Nvsp1SendNdisVersion>("nvsp_1_message_send_ndis_version", body)?;
                Self::SendNdisVersion {
                    ndis_major_ver: m.ndis_major_ver,
                    ndis_minor_ver: m.ndis_minor_ver,
                }
            }
            NvspMessageType::SEND_RECV_BUF => {
                let (m, _) = read_prefix::<Nvsp1SendReceiveBuffer>(
                    "nvsp_1_message_send_receive_buffer",
                    body,
                )?;
                Self::SendReceiveBuffer {
                    gpadl_handle: m.gpadl_handle,
                    id: m.id,
                }
            }
            NvspMessageType::SEND_RECV_BUF_COMPLETE => Self::parse_recv_buf_complete(body)?,
            NvspMessageType::REVOKE_RECV_BUF => {
                let (m, _) = read_prefix::<Nvsp1RevokeReceiveBuffer>(
                    "nvsp_1_message_revoke_receive_buffer",
                    body,
                )?;
                Self::RevokeReceiveBuffer { id: m.id }
            }
            NvspMessageType::SEND_SEND_BUF => {
                let (m, _) =
                    read_prefix::<Nvsp1SendSendBuffer>("nvsp_1_message_send_send_buffer", body)?;
                Self::SendSendBuffer {
                    gpadl_handle: m.gpadl_handle,
                    id: m.id,
                }
            }
            NvspMessageType::SEND_SEND_BUF_COMPLETE => {
                let (m, _) = read_prefix::<Nvsp1SendSendBufferComplete>(
                    "nvsp_1_message_send_send_buffer_complete",
                    body,
                )?;
                Self::SendSendBufferComplete {
                    status: m.status,
                    section_size: m.section_size,
                }
            }
            NvspMessageType::REVOKE_SEND_BUF => {
                let (m, _) = read_prefix::<Nvsp1RevokeSendBuffer>(
                    "nvsp_1_message_revoke_send_buffer",
                    body,
                )?;
                Self::RevokeSendBuffer { id: m.id }
            }
            NvspMessageType::SEND_RNDIS_PKT => {
                let (m, _) =
                    read_prefix::<Nvsp1SendRndisPacket>("nvsp_1_message_send_rndis_packet", body)?;
                Self::SendRndisPacket {
                    channel_type: m.channel_type,
                    send_buf_section_index: m.send_buf_section_index,
                    send_buf_section_size: m.send_buf_section_size,
                }
            }
            NvspMessageType::SEND_RNDIS_PKT_COMPLETE => {
                let (m, _) = read_prefix::<Nvsp1SendRndisPacketComplete>(
                    "nvsp_1_message_send_rndis_packet_complete",
                    body,
                )?;
                Self::SendRndisPacketComplete { status: m.status }
            }
            NvspMessageType::ALLOC_RXBUF => {
                let (m, _) = read_prefix::<Nvsp2AllocRxbuf>("nvsp_2_alloc_rxbuf", body)?;
                Self::AllocRxbuf {
                    alloc_id: m.alloc_id,
                    len: m.len,
                }
            }
            NvspMessageType::ALLOC_RXBUF_COMP => {
                let (m, _) = read_prefix::<Nvsp2AllocRxbufComp>("nvsp_2_alloc_rxbuf_comp", body)?;
                Self::AllocRxbufComplete {
                    status: m.status,
                    alloc_id: m.alloc_id,
                    gpadl_handle: m.gpadl_handle,
                    recv_buf_id: m.recv_buf_id,
                }
            }
            NvspMessageType::FREE_RXBUF => {
                let (m, _) = read_prefix::<Nvsp2FreeRxbuf>("nvsp_2_free_rxbuf", body)?;
                Self::FreeRxbuf {
                    recv_buf_id: m.recv_buf_id,
                }
            }
            NvspMessageType::SEND_NDIS_CONFIG => {
                let (m, _) = read_prefix::<Nvsp2SendNdisConfig>("nvsp_2_send_ndis_config", body)?;
                Self::SendNdisConfig {
                    mtu: m.mtu,
                    capability: NdisConfigCapabilities::from_bits_retain(m.capability),
                }
            }
            NvspMessageType::SEND_VF_ASSOCIATION => {
                let (m, _) =
                    read_prefix::<Nvsp4SendVfAssociation>("nvsp_4_send_vf_association", body)?;
                Self::SendVfAssociation {
                    allocated: m.allocated,
                    serial: m.serial,
                }
            }
            NvspMessageType::SWITCH_DATA_PATH => {
                let (m, _) = read_prefix::<Nvsp4SwDatapath>("nvsp_4_sw_datapath", body)?;
                Self::SwitchDataPath {
                    active_datapath: m.active_datapath,
                }
            }
            NvspMessageType::OID_QUERY_EX => {
                let (m, _) = read_prefix::<Nvsp5OidQueryEx>("nvsp_5_oid_query_ex", body)?;
                Self::OidQueryEx(m)
            }
            NvspMessageType::OID_QUERY_EX_COMP => {
                let (m, _) =
                    read_prefix::<Nvsp5OidQueryExComplete>("nvsp_5_oid_query_ex_complete", body)?;
                Self::OidQueryExComplete(m)
            }
            NvspMessageType::SUBCHANNEL if completion => {
                let (m, _) =
                    read_prefix::<Nvsp5SubchannelComplete>("nvsp_5_subchannel_complete", body)?;
                Self::SubchannelComplete {
                    status: m.status,
                    num_subchannels: m.num_subchannels,
                }
            }
            NvspMessageType::SUBCHANNEL => {
                let (m, _) =
                    read_prefix::<Nvsp5SubchannelRequest>("nvsp_5_subchannel_request", body)?;
                Self::Subchannel {
                    op: m.op,
                    num_subchannels: m.num_subchannels,
                }
            }
            NvspMessageType::SEND_INDIRECTION_TABLE => {
                let (m, _) =
                    read_prefix::<Nvsp5SendIndirectTable>("nvsp_5_send_indirect_table", body)?;
                Self::SendIndirectionTable {
                    count: m.count,
                    offset: m.offset,
                }
            }
            NvspMessageType::PD_API if completion => {
                let (m, _) = read_prefix::<Nvsp6PdApiComp>("nvsp_6_pd_api_comp", body)?;
                Self::PdApiComplete(m)
            }
            NvspMessageType::PD_API => {
                let (m, _) = read_prefix::<Nvsp6PdApiReq>("nvsp_6_pd_api_req", body)?;
                Self::PdApi(m)
            }
            NvspMessageType::PD_POST_BATCH => {
                // The batch struct includes the header.
                let (m, _) = read_prefix::<Nvsp6PdBatchMsg>("nvsp_6_pd_batch_msg", payload)?;
                Self::PdPostBatch {
                    count: m.count,
                    flags: m.flags,
                }
            }
            msg_type => Self::Unknown { msg_type },
        };
        Ok(msg)
    }

    fn parse_recv_buf_complete(body: &[u8]) -> Result<Self> {
        const SECTION: usize = size_of::<Nvsp1ReceiveBufferSection>();
        let (m, _) = read_prefix::<Nvsp1SendReceiveBufferComplete>(
            "nvsp_1_message_send_receive_buffer_complete",
            body,
        )?;
        let num_sections = m.num_sections;
        if num_sections as usize > MAX_RECEIVE_BUFFER_SECTIONS {
            return Err(Error::TooMany {
                what: "receive buffer sections",
                count: num_sections.into(),
                limit: MAX_RECEIVE_BUFFER_SECTIONS as u64,
            });
        }
        let n = num_sections as usize;
        // status + num_sections, then n sections; n <= 16, so no overflow.
        let fixed = offset_of!(Nvsp1SendReceiveBufferComplete, sections);
        let need = fixed + n * SECTION;
        let mut rest = body.get(fixed..need).ok_or(Error::Truncated {
            what: "nvsp_1_message_send_receive_buffer_complete sections",
            need,
            have: body.len(),
        })?;
        let mut sections = Vec::with_capacity(n);
        while !rest.is_empty() {
            let (s, tail) =
                read_prefix::<Nvsp1ReceiveBufferSection>("nvsp_1_receive_buffer_section", rest)?;
            sections.push(s);
            rest = tail;
        }
        Ok(Self::SendReceiveBufferComplete {
            status: m.status,
            sections,
        })
    }

    /// Bytes [`NvspMessage::emit`] writes: header + body, padded to
    /// [`NVSP_MESSAGE_SIZE`] (more only for a SEND_RECV_BUF_COMPLETE with several
    /// sections).
    pub fn emitted_len(&self) -> usize {
        let body = match self {
            Self::Init { .. } => size_of::<NvspMessageInit>(),
            Self::InitComplete { .. } => size_of::<NvspMessageInitComplete>(),
            Self::SendNdisVersion { .. } => size_of::<Nvsp1SendNdisVersion>(),
            Self::SendReceiveBuffer { .. } => size_of::<Nvsp1SendReceiveBuffer>(),
            Self::SendReceiveBufferComplete { sections, .. } => sections
                .len()
                .max(1)
                .saturating_mul(size_of::<Nvsp1ReceiveBufferSection>())
                .saturating_add(offset_of!(Nvsp1SendReceiveBufferComplete, sections)),
            Self::RevokeReceiveBuffer { .. } => size_of::<Nvsp1RevokeReceiveBuffer>(),
            Self::SendSendBuffer { .. } => size_of::<Nvsp1SendSendBuffer>(),
            Self::SendSendBufferComplete { .. } => size_of::<Nvsp1SendSendBufferComplete>(),
            Self::RevokeSendBuffer { .. } => size_of::<Nvsp1RevokeSendBuffer>(),
            Self::SendRndisPacket { .. } => size_of::<Nvsp1SendRndisPacket>(),
            Self::SendRndisPacketComplete { .. } => size_of::<Nvsp1SendRndisPacketComplete>(),
            Self::AllocRxbuf { .. } => size_of::<Nvsp2AllocRxbuf>(),
            Self::AllocRxbufComplete { .. } => size_of::<Nvsp2AllocRxbufComp>(),
            Self::FreeRxbuf { .. } => size_of::<Nvsp2FreeRxbuf>(),
            Self::SendNdisConfig { .. } => size_of::<Nvsp2SendNdisConfig>(),
            Self::SendVfAssociation { .. } => size_of::<Nvsp4SendVfAssociation>(),
            Self::SwitchDataPath { .. } => size_of::<Nvsp4SwDatapath>(),
            Self::OidQueryEx(_) => size_of::<Nvsp5OidQueryEx>(),
            Self::OidQueryExComplete(_) => size_of::<Nvsp5OidQueryExComplete>(),
            Self::Subchannel { .. } => size_of::<Nvsp5SubchannelRequest>(),
            Self::SubchannelComplete { .. } => size_of::<Nvsp5SubchannelComplete>(),
            Self::SendIndirectionTable { .. } => size_of::<Nvsp5SendIndirectTable>(),
            Self::PdApi(_) => size_of::<Nvsp6PdApiReq>(),
            Self::PdApiComplete(_) => size_of::<Nvsp6PdApiComp>(),
            Self::PdPostBatch { .. } => size_of::<Nvsp6PdBatchMsg>() - NVSP_HEADER_SIZE,
            Self::Unknown { .. } => 0,
        };
        body.saturating_add(NVSP_HEADER_SIZE).max(NVSP_MESSAGE_SIZE)
    }

    /// Writes the message at the start of `buf`: header, body, then zeros up to
    /// [`NVSP_MESSAGE_SIZE`] (40 bytes, what current Linux sends; never less than 32,
    /// because FreeBSD and DPDK peers reject shorter NVSP messages). Returns the length
    /// written ([`NvspMessage::emitted_len`]).
    ///
    /// Errors: `BufferTooSmall`; `TooMany` for a SEND_RECV_BUF_COMPLETE with more than
    /// [`MAX_RECEIVE_BUFFER_SECTIONS`] sections (which [`NvspMessage::parse`] would
    /// refuse).
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        if let Self::SendReceiveBufferComplete { sections, .. } = self
            && sections.len() > MAX_RECEIVE_BUFFER_SECTIONS
        {
            return Err(Error::TooMany {
                what: "receive buffer sections",
                count: sections.len() as u64,
                limit: MAX_RECEIVE_BUFFER_SECTIONS as u64,
            });
        }
        let len = self.emitted_len();
        let have = buf.len();
        let out = buf.get_mut(..len).ok_or(Error::BufferTooSmall {
            what: WHAT,
            need: len,
            have,
        })?;
        out.fill(0);
        let at = put(
            WHAT,
            out,
            0,
            NvspMessageHeader {
                msg_type: self.msg_type(),
            }
            .as_bytes(),
        )?;
        match *self {
            Self::Init {
                min_protocol_ver,
                max_protocol_ver,
            } => {
                let m = NvspMessageInit {
                    min_protocol_ver,
                    max_protocol_ver,
                };
                put(WHAT, out, at, m.as_bytes())?;
            }
            Self::InitComplete {
                negotiated_protocol_ver,
                max_mdl_chain_len,
                status,
            } => {
                let m = NvspMessageInitComplete {
                    negotiated_protocol_ver,
                    max_mdl_chain_len,
                    status,
                };
                put(WHAT, out, at, m.as_bytes())?;
            }
            Self::SendNdisVersion {
                ndis_major_ver,
                ndis_minor_ver,
            } => {
                let m = Nvsp1SendNdisVersion {
                    ndis_major_ver,
                    ndis_minor_ver,
                };
                put(WHAT, out, at, m.as_bytes())?;
            }
            Self::SendReceiveBuffer { gpadl_handle, id } => {
                put(
                    WHAT,
                    out,
                    at,
                    Nvsp1SendReceiveBuffer { gpadl_handle, id }.as_bytes(),
                )?;
            }
            Self::SendReceiveBufferComplete {
                status,
                ref sections,
            } => {
                // status and num_sections, then the sections (the zero padding already
                // stands in for the declared first section when there is none).
                let end = put(WHAT, out, at, status.as_bytes())?;
                let num_sections = sections.len() as u32;
                let mut end = put(WHAT, out, end, num_sections.as_bytes())?;
                for s in sections {
                    end = put(WHAT, out, end, s.as_bytes())?;
                }
            }
            Self::RevokeReceiveBuffer { id } => {
                put(WHAT, out, at, Nvsp1RevokeReceiveBuffer { id }.as_bytes())?;
            }
            Self::SendSendBuffer { gpadl_handle, id } => {
                put(
                    WHAT,
                    out,
                    at,
                    Nvsp1SendSendBuffer { gpadl_handle, id }.as_bytes(),
                )?;
            }
            Self::SendSendBufferComplete {
                status,
                section_size,
            } => {
                let m = Nvsp1SendSendBufferComplete {
                    status,
                    section_size,
                };
                put(WHAT, out, at, m.as_bytes())?;
            }
            Self::RevokeSendBuffer { id } => {
                put(WHAT, out, at, Nvsp1RevokeSendBuffer { id }.as_bytes())?;
            }
            Self::SendRndisPacket {
                channel_type,
                send_buf_section_index,
                send_buf_section_size,
            } => {
                let m = Nvsp1SendRndisPacket {
                    channel_type,
                    send_buf_section_index,
                    send_buf_section_size,
                };
                put(WHAT, out, at, m.as_bytes())?;
            }
            Self::SendRndisPacketComplete { status } => {
                put(
                    WHAT,
                    out,
                    at,
                    Nvsp1SendRndisPacketComplete { status }.as_bytes(),
                )?;
            }
            Self::AllocRxbuf { alloc_id, len } => {
                put(WHAT, out, at, Nvsp2AllocRxbuf { alloc_id, len }.as_bytes())?;
            }
            Self::AllocRxbufComplete {
                status,
                alloc_id,
                gpadl_handle,
                recv_buf_id,
            } => {
                let m = Nvsp2AllocRxbufComp {
                    status,
                    alloc_id,
                    gpadl_handle,
                    recv_buf_id,
                };
                put(WHAT, out, at, m.as_bytes())?;
            }
            Self::FreeRxbuf { recv_buf_id } => {
                put(WHAT, out, at, Nvsp2FreeRxbuf { recv_buf_id }.as_bytes())?;
            }
            Self::SendNdisConfig { mtu, capability } => {
                let m = Nvsp2SendNdisConfig {
                    mtu,
                    reserved: 0,
                    capability: capability.bits(),
                };
                put(WHAT, out, at, m.as_bytes())?;
            }
            Self::SendVfAssociation { allocated, serial } => {
                put(
                    WHAT,
                    out,
                    at,
                    Nvsp4SendVfAssociation { allocated, serial }.as_bytes(),
                )?;
            }
            Self::SwitchDataPath { active_datapath } => {
                put(
                    WHAT,
                    out,
                    at,
                    Nvsp4SwDatapath { active_datapath }.as_bytes(),
                )?;
            }
            Self::OidQueryEx(m) => {
                put(WHAT, out, at, m.as_bytes())?;
            }
            Self::OidQueryExComplete(m) => {
                put(WHAT, out, at, m.as_bytes())?;
            }
            Self::Subchannel {
                op,
                num_subchannels,
            } => {
                put(
                    WHAT,
                    out,
                    at,
                    Nvsp5SubchannelRequest {
                        op,
                        num_subchannels,
                    }
                    .as_bytes(),
                )?;
            }
            Self::SubchannelComplete {
                status,
                num_subchannels,
            } => {
                let m = Nvsp5SubchannelComplete {
                    status,
                    num_subchannels,
                };
                put(WHAT, out, at, m.as_bytes())?;
            }
            Self::SendIndirectionTable { count, offset } => {
                put(
                    WHAT,
                    out,
                    at,
                    Nvsp5SendIndirectTable { count, offset }.as_bytes(),
                )?;
            }
            Self::PdApi(m) => {
                put(WHAT, out, at, m.as_bytes())?;
            }
            Self::PdApiComplete(m) => {
                put(WHAT, out, at, m.as_bytes())?;
            }
            Self::PdPostBatch { count, flags } => {
                let m = Nvsp6PdBatchMsg {
                    hdr: NvspMessageHeader {
                        msg_type: NvspMessageType::PD_POST_BATCH,
                    },
                    count,
                    flags,
                };
                put(WHAT, out, 0, m.as_bytes())?;
            }
            Self::Unknown { .. } => {}
        }
        Ok(len)
    }

    /// [`NvspMessage::emit`] into a new vector.
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        let mut v = alloc::vec![0u8; self.emitted_len()];
        let n = self.emit(&mut v)?;
        v.truncate(n);
        Ok(v)
    }
}

// ---------------------------------------------------------------------------------------
// The send indirection table (message 134)
// ---------------------------------------------------------------------------------------

/// The entries of a SEND_INDIRECTION_TABLE message: for each of up to
/// [`VRSS_SEND_TAB_SIZE`] hash buckets, the channel (0 = primary, n = subchannel n)
/// the guest should send on. Entries are as the host sent them: a guest must check each
/// against the channels it has open.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct NvspSendIndirectionTable {
    len: u8,
    entries: [u32; VRSS_SEND_TAB_SIZE],
}

impl NvspSendIndirectionTable {
    /// A table of `entries` (at most [`VRSS_SEND_TAB_SIZE`], else `TooMany`). Linux
    /// accepts only exactly 16 entries.
    pub fn new(entries: &[u32]) -> Result<Self> {
        let mut table = Self {
            len: 0,
            entries: [0; VRSS_SEND_TAB_SIZE],
        };
        if entries.len() > VRSS_SEND_TAB_SIZE {
            return Err(Error::TooMany {
                what: "send indirection table entries",
                count: entries.len() as u64,
                limit: VRSS_SEND_TAB_SIZE as u64,
            });
        }
        for (dst, src) in table.entries.iter_mut().zip(entries) {
            *dst = *src;
        }
        table.len = entries.len() as u8;
        Ok(table)
    }

    /// The round-robin table a host sends for `num_channels` open channels
    /// (entry i = i % num_channels, 16 entries); `num_channels` 0 is treated as 1.
    pub fn round_robin(num_channels: u32) -> Self {
        let n = num_channels.max(1);
        let mut table = Self {
            len: VRSS_SEND_TAB_SIZE as u8,
            entries: [0; VRSS_SEND_TAB_SIZE],
        };
        for (i, e) in table.entries.iter_mut().enumerate() {
            *e = i as u32 % n;
        }
        table
    }

    /// The entries.
    pub fn entries(&self) -> &[u32] {
        self.entries.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// Extracts the table from the payload of a SEND_INDIRECTION_TABLE packet: `count`
    /// u32 entries at `offset` bytes from the start of the message (the header).
    ///
    /// Errors: `InvalidField` if the type is not 134 or `offset` points into the header
    /// or the fixed part (< 12); `Truncated` if the fixed part is short; `TooMany` if
    /// `count` exceeds [`VRSS_SEND_TAB_SIZE`]; `OutOfBounds` if the entries do not lie
    /// inside the payload. Count 0 (an empty table) is accepted here; Linux accepts only 16.
    pub fn parse(payload: &[u8]) -> Result<Self> {
        Self::parse_inner(payload, None)
    }

    /// [`NvspSendIndirectionTable::parse`] with Linux's work-around for a Windows host
    /// bug (`netvsc_send_table`, 2019): when the negotiated version is at most 6.0 and the
    /// payload holds at least 40 + 4 * count bytes, the entries are read at offset 40 (right
    /// after a whole `nvsp_message`) whatever `offset` says, because such hosts sent a
    /// too-small offset.
    pub fn parse_linux_compat(payload: &[u8], negotiated: NvspVersion) -> Result<Self> {
        Self::parse_inner(payload, Some(negotiated))
    }

    fn parse_inner(payload: &[u8], linux_fixup: Option<NvspVersion>) -> Result<Self> {
        const WHAT_TABLE: &str = "send indirection table";
        let (hdr, body) = read_prefix::<NvspMessageHeader>("nvsp_message_header", payload)?;
        if hdr.msg_type != NvspMessageType::SEND_INDIRECTION_TABLE {
            return Err(Error::InvalidField {
                what: "send indirection table msg_type",
                value: hdr.msg_type.0.into(),
            });
        }
        let (fixed, _) = read_prefix::<Nvsp5SendIndirectTable>("nvsp_5_send_indirect_table", body)?;
        let count = fixed.count;
        let claimed = fixed.offset;
        if count as usize > VRSS_SEND_TAB_SIZE {
            return Err(Error::TooMany {
                what: "send indirection table entries",
                count: count.into(),
                limit: VRSS_SEND_TAB_SIZE as u64,
            });
        }
        let bytes = count as usize * size_of::<u32>();
        let mut offset = claimed as usize;
        if let Some(v) = linux_fixup {
            let after_message = SEND_INDIRECTION_TABLE_OFFSET_AFTER_MESSAGE as usize;
            if v <= NvspVersion::V6 && payload.len() >= after_message + bytes {
                offset = after_message;
            }
        }
        if offset < SEND_INDIRECTION_TABLE_OFFSET as usize {
            return Err(Error::InvalidField {
                what: "send indirection table offset",
                value: claimed.into(),
            });
        }
        let region =
            payload
                .get(offset..)
                .and_then(|r| r.get(..bytes))
                .ok_or(Error::OutOfBounds {
                    what: WHAT_TABLE,
                    offset: offset as u64,
                    len: bytes as u64,
                    bound: payload.len(),
                })?;
        let mut table = Self {
            len: count as u8,
            entries: [0; VRSS_SEND_TAB_SIZE],
        };
        for (dst, chunk) in table
            .entries
            .iter_mut()
            .zip(region.chunks_exact(size_of::<u32>()))
        {
            if let Ok(b) = <[u8; 4]>::try_from(chunk) {
                *dst = u32::from_le_bytes(b);
            }
        }
        Ok(table)
    }

    /// Bytes [`NvspSendIndirectionTable::emit`] writes with this `offset`:
    /// `offset + 4 * len`, at least [`NVSP_MESSAGE_SIZE`].
    pub fn emitted_len(&self, offset: u32) -> usize {
        (offset as usize)
            .saturating_add(size_of_val(self.entries()))
            .max(NVSP_MESSAGE_SIZE)
    }

    /// Writes a whole SEND_INDIRECTION_TABLE message: header (134), `{count, offset}`,
    /// zeros up to `offset`, the entries, and zeros up to 40 bytes if the message is
    /// shorter. Use [`SEND_INDIRECTION_TABLE_OFFSET`] (12, what OpenVMM sends) or
    /// [`SEND_INDIRECTION_TABLE_OFFSET_AFTER_MESSAGE`] (40, the Windows layout); both are
    /// read correctly by current Linux at every NVSP version. Pre-2019 kernels read the
    /// offset from byte 4 instead and see neither correctly.
    ///
    /// Errors: `InvalidField` if `offset` is below 12 or above
    /// [`MAX_SEND_INDIRECTION_TABLE_OFFSET`]; `BufferTooSmall`.
    pub fn emit(&self, offset: u32, buf: &mut [u8]) -> Result<usize> {
        const WHAT_EMIT: &str = "send indirection table message";
        if !(SEND_INDIRECTION_TABLE_OFFSET..=MAX_SEND_INDIRECTION_TABLE_OFFSET).contains(&offset) {
            return Err(Error::InvalidField {
                what: "send indirection table offset",
                value: offset.into(),
            });
        }
        let len = self.emitted_len(offset);
        let have = buf.len();
        let out = buf.get_mut(..len).ok_or(Error::BufferTooSmall {
            what: WHAT_EMIT,
            need: len,
            have,
        })?;
        out.fill(0);
        let hdr = NvspMessageHeader {
            msg_type: NvspMessageType::SEND_INDIRECTION_TABLE,
        };
        let at = put(WHAT_EMIT, out, 0, hdr.as_bytes())?;
        let fixed = Nvsp5SendIndirectTable {
            count: u32::from(self.len),
            offset,
        };
        put(WHAT_EMIT, out, at, fixed.as_bytes())?;
        let mut at = offset as usize;
        for e in self.entries() {
            at = put(WHAT_EMIT, out, at, &e.to_le_bytes())?;
        }
        Ok(len)
    }

    /// [`NvspSendIndirectionTable::emit`] into a new vector.
    pub fn to_vec(&self, offset: u32) -> Result<Vec<u8>> {
        let mut v = alloc::vec![0u8; self.emitted_len(offset)];
        let n = self.emit(offset, &mut v)?;
        v.truncate(n);
        Ok(v)
    }
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use proptest::prelude::*;
    use zerocopy::FromZeros;

    /// Pads a hand-written prefix with zeros to the 40 bytes Linux sends.
    fn padded(prefix: &[u8]) -> Vec<u8> {
        let mut v = prefix.to_vec();
        assert!(v.len() <= NVSP_MESSAGE_SIZE);
        v.resize(NVSP_MESSAGE_SIZE, 0);
        v
    }

    /// Parses `bytes`, compares with `msg`, and re-emits byte for byte.
    fn golden(bytes: &[u8], msg: &NvspMessage) {
        assert_eq!(&NvspMessage::parse(bytes).unwrap(), msg);
        assert_eq!(msg.to_vec().unwrap(), bytes);
        let mut buf = [0xAAu8; 64];
        let n = msg.emit(&mut buf).unwrap();
        assert_eq!(&buf[..n], bytes);
    }

    #[test]
    fn enum_values_match_linux() {
        assert_eq!(NvspMessageType::SEND_NDIS_VER.0, 100);
        assert_eq!(NvspMessageType::SEND_RNDIS_PKT_COMPLETE.0, 108);
        assert_eq!(NvspMessageType::SEND_NDIS_CONFIG.0, 125);
        assert_eq!(NvspMessageType::ALLOC_CHIMNEY_HANDLE_COMP.0, 127);
        assert_eq!(NvspMessageType::UPLINK_CONNECT_STATE_DEPRECATED.0, 130);
        assert_eq!(NvspMessageType::SEND_INDIRECTION_TABLE.0, 134);
        assert_eq!(NvspMessageType::PD_POST_BATCH.0, 136);
        // Every value 100..=136 is named, consecutively (the C enum has no gaps).
        for v in 100..=136u32 {
            assert!(NvspMessageType(v).is_known(), "{v}");
        }
        assert_eq!(NvspMessageType::KNOWN.len(), 3 + 37);
        assert_eq!(NvspStatus::PROTOCOL_UNSUPPORTED.0, 7);
        assert_eq!(NvspVersion::V2.major(), 3);
        assert_eq!(NvspVersion::V2.minor(), 2);
        assert_eq!(NdisVersion::new(6, 30), NdisVersion::V6_30);
        assert_eq!(NdisVersion::from_parts(6, 20), Some(NdisVersion::V6_20));
        assert_eq!(NdisVersion::from_parts(0x1_0000, 0), None);
        assert_eq!(NvspPdApiOp::FREE_COM_BUF.0, 9);
        assert_eq!(NdisConfigCapabilities::RSC.bits(), 0x80);
        assert_eq!(NETVSC_DEFAULT_RX_SECTIONS, 9709);
    }

    /// netvsc's default receive-buffer section count (16 MiB / 1728), used in a golden
    /// vector below.
    const NETVSC_DEFAULT_RX_SECTIONS: u32 =
        NETVSC_RECEIVE_BUFFER_DEFAULT / NETVSC_RECV_SECTION_SIZE;

    #[test]
    fn versions_and_gating() {
        assert!(NvspVersion::ALL.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(
            NvspVersion::LINUX_GUEST_ORDER,
            [
                NvspVersion(0x60001),
                NvspVersion(0x60000),
                NvspVersion(0x50000),
                NvspVersion(0x40000),
                NvspVersion(0x30002),
                NvspVersion(0x2)
            ]
        );
        assert!(
            NvspVersion::LINUX_GUEST_ORDER
                .windows(2)
                .all(|w| w[0] > w[1])
        );
        assert_eq!(NvspMessageType::INIT.min_version(), Some(NvspVersion::V1));
        assert_eq!(
            NvspMessageType::SEND_RNDIS_PKT.min_version(),
            Some(NvspVersion::V1)
        );
        assert_eq!(
            NvspMessageType::SEND_NDIS_CONFIG.min_version(),
            Some(NvspVersion::V2)
        );
        assert_eq!(
            NvspMessageType::SWITCH_DATA_PATH.min_version(),
            Some(NvspVersion::V4)
        );
        assert_eq!(
            NvspMessageType::SUBCHANNEL.min_version(),
            Some(NvspVersion::V5)
        );
        assert_eq!(NvspMessageType::PD_API.min_version(), Some(NvspVersion::V6));
        assert_eq!(NvspMessageType::NONE.min_version(), None);
        assert_eq!(NvspMessageType(3).min_version(), None);
        assert_eq!(NvspMessageType(137).min_version(), None);
        assert!(!NvspVersion::V4.allows(NvspMessageType::SUBCHANNEL));
        assert!(NvspVersion::V5.allows(NvspMessageType::SUBCHANNEL));
        assert!(NvspVersion::V1.allows(NvspMessageType::INIT));
        let sub = NvspMessage::Subchannel {
            op: NvspSubchannelOp::ALLOCATE,
            num_subchannels: 3,
        };
        assert_eq!(
            sub.check_allowed(NvspVersion::V4),
            Err(Error::NotAllowed {
                what: "SUBCHANNEL",
                version: 0x40000
            })
        );
        assert_eq!(sub.check_allowed(NvspVersion::V6_1), Ok(()));
        assert_eq!(NvspVersion::V4.linux_ndis_version(), NdisVersion::V6_1);
        assert_eq!(NvspVersion::V5.linux_ndis_version(), NdisVersion::V6_30);
    }

    #[test]
    fn golden_init() {
        let bytes = padded(&[
            0x01, 0x00, 0x00, 0x00, // msg_type INIT
            0x01, 0x00, 0x06, 0x00, // min 0x60001
            0x01, 0x00, 0x06, 0x00, // max 0x60001
        ]);
        golden(&bytes, &NvspMessage::init(NvspVersion::V6_1));
    }

    #[test]
    fn golden_init_complete() {
        let bytes = padded(&[
            0x02, 0x00, 0x00, 0x00, // INIT_COMPLETE
            0x01, 0x00, 0x06, 0x00, // negotiated 0x60001
            0x00, 0x00, 0x00, 0x00, // max_mdl_chain_len
            0x01, 0x00, 0x00, 0x00, // status SUCCESS
        ]);
        golden(
            &bytes,
            &NvspMessage::InitComplete {
                negotiated_protocol_ver: NvspVersion::V6_1,
                max_mdl_chain_len: 0,
                status: NvspStatus::SUCCESS,
            },
        );
    }

    #[test]
    fn golden_send_ndis_version() {
        let bytes = padded(&[
            0x64, 0x00, 0x00, 0x00, // SEND_NDIS_VER (100)
            0x06, 0x00, 0x00, 0x00, // major 6
            0x1E, 0x00, 0x00, 0x00, // minor 30
        ]);
        golden(&bytes, &NvspMessage::send_ndis_version(NdisVersion::V6_30));
    }

    #[test]
    fn golden_send_ndis_config() {
        let bytes = padded(&[
            0x7D, 0x00, 0x00, 0x00, // SEND_NDIS_CONFIG (125)
            0xEA, 0x05, 0x00, 0x00, // mtu 1514
            0x00, 0x00, 0x00, 0x00, // reserved
            0x2C, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // sriov|ieee8021q|teaming
        ]);
        golden(
            &bytes,
            &NvspMessage::SendNdisConfig {
                mtu: 1514,
                capability: NdisConfigCapabilities::IEEE8021Q
                    | NdisConfigCapabilities::SRIOV
                    | NdisConfigCapabilities::TEAMING,
            },
        );
    }

    #[test]
    fn golden_send_recv_buf() {
        let bytes = padded(&[
            0x65, 0x00, 0x00, 0x00, // SEND_RECV_BUF (101)
            0x78, 0x56, 0x34, 0x12, // gpadl 0x12345678
            0xFE, 0xCA, // id 0xCAFE (6-byte packed body)
        ]);
        golden(
            &bytes,
            &NvspMessage::SendReceiveBuffer {
                gpadl_handle: 0x1234_5678,
                id: NETVSC_RECEIVE_BUFFER_ID,
            },
        );
    }

    #[test]
    fn golden_send_recv_buf_complete() {
        let bytes = padded(&[
            0x66, 0x00, 0x00, 0x00, // SEND_RECV_BUF_COMPLETE (102)
            0x01, 0x00, 0x00, 0x00, // status SUCCESS
            0x01, 0x00, 0x00, 0x00, // num_sections 1
            0x00, 0x00, 0x00, 0x00, // offset 0
            0xC0, 0x06, 0x00, 0x00, // sub_alloc_size 1728
            0xED, 0x25, 0x00, 0x00, // num_sub_allocs 9709
            0xC0, 0xFF, 0xFF, 0x00, // end_offset 9709 * 1728 = 0xFFFFC0
        ]);
        golden(
            &bytes,
            &NvspMessage::SendReceiveBufferComplete {
                status: NvspStatus::SUCCESS,
                sections: vec![Nvsp1ReceiveBufferSection {
                    offset: 0,
                    sub_alloc_size: NETVSC_RECV_SECTION_SIZE,
                    num_sub_allocs: NETVSC_DEFAULT_RX_SECTIONS,
                    end_offset: NETVSC_DEFAULT_RX_SECTIONS * NETVSC_RECV_SECTION_SIZE,
                }],
            },
        );
    }

    #[test]
    fn golden_send_send_buf_and_complete() {
        let bytes = padded(&[
            0x68, 0x00, 0x00, 0x00, // SEND_SEND_BUF (104)
            0x02, 0x00, 0x00, 0x00, // gpadl 2
            0x00, 0x00, // id 0
        ]);
        golden(
            &bytes,
            &NvspMessage::SendSendBuffer {
                gpadl_handle: 2,
                id: 0,
            },
        );
        let bytes = padded(&[
            0x69, 0x00, 0x00, 0x00, // SEND_SEND_BUF_COMPLETE (105)
            0x01, 0x00, 0x00, 0x00, // SUCCESS
            0x00, 0x18, 0x00, 0x00, // section_size 6144
        ]);
        golden(
            &bytes,
            &NvspMessage::SendSendBufferComplete {
                status: NvspStatus::SUCCESS,
                section_size: NETVSC_SEND_SECTION_SIZE,
            },
        );
    }

    #[test]
    fn golden_send_rndis_pkt() {
        let bytes = padded(&[
            0x6B, 0x00, 0x00, 0x00, // SEND_RNDIS_PKT (107)
            0x01, 0x00, 0x00, 0x00, // RMC_CONTROL
            0xFF, 0xFF, 0xFF, 0xFF, // no send-buffer section
            0x00, 0x00, 0x00, 0x00, // size 0
        ]);
        golden(
            &bytes,
            &NvspMessage::SendRndisPacket {
                channel_type: NvspChannelType::RMC_CONTROL,
                send_buf_section_index: NETVSC_INVALID_INDEX,
                send_buf_section_size: 0,
            },
        );
        let bytes = padded(&[
            0x6C, 0x00, 0x00, 0x00, // SEND_RNDIS_PKT_COMPLETE (108)
            0x01, 0x00, 0x00, 0x00, // SUCCESS
        ]);
        golden(
            &bytes,
            &NvspMessage::SendRndisPacketComplete {
                status: NvspStatus::SUCCESS,
            },
        );
    }

    #[test]
    fn golden_subchannel() {
        let bytes = padded(&[
            0x85, 0x00, 0x00, 0x00, // SUBCHANNEL (133)
            0x01, 0x00, 0x00, 0x00, // ALLOCATE
            0x03, 0x00, 0x00, 0x00, // 3 subchannels
        ]);
        golden(
            &bytes,
            &NvspMessage::Subchannel {
                op: NvspSubchannelOp::ALLOCATE,
                num_subchannels: 3,
            },
        );
        // The same bytes in a completion packet: status SUCCESS, 3 allocated.
        assert_eq!(
            NvspMessage::parse_completion(&bytes).unwrap(),
            NvspMessage::SubchannelComplete {
                status: NvspStatus::SUCCESS,
                num_subchannels: 3
            }
        );
    }

    #[test]
    fn golden_v4_messages() {
        let bytes = padded(&[
            0x80, 0x00, 0x00, 0x00, // SEND_VF_ASSOCIATION (128)
            0x01, 0x00, 0x00, 0x00, // allocated
            0x2A, 0x00, 0x00, 0x00, // serial 42
        ]);
        golden(
            &bytes,
            &NvspMessage::SendVfAssociation {
                allocated: 1,
                serial: 42,
            },
        );
        let bytes = padded(&[
            0x81, 0x00, 0x00, 0x00, // SWITCH_DATA_PATH (129)
            0x01, 0x00, 0x00, 0x00, // VF
        ]);
        golden(
            &bytes,
            &NvspMessage::SwitchDataPath {
                active_datapath: NvspDataPath::VF,
            },
        );
    }

    #[test]
    fn golden_alloc_rxbuf_comp_is_packed() {
        let bytes = padded(&[
            0x79, 0x00, 0x00, 0x00, // ALLOC_RXBUF_COMP (121)
            0x00, 0x00, 0x00, 0x00, // status
            0x07, 0x00, 0x00, 0x00, // alloc_id
            0x09, 0x00, 0x00, 0x00, // gpadl
            0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // recv_buf_id at body offset 12
        ]);
        golden(
            &bytes,
            &NvspMessage::AllocRxbufComplete {
                status: 0,
                alloc_id: 7,
                gpadl_handle: 9,
                recv_buf_id: 0x0807_0605_0403_0201,
            },
        );
    }

    #[test]
    fn golden_oid_query_ex() {
        let bytes = padded(&[
            0x83, 0x00, 0x00, 0x00, // OID_QUERY_EX (131)
            0x80, 0x01, 0x08, 0x00, // NDIS_OBJECT_HEADER {0x80, rev 1, size 8}
            0x06, 0x01, 0x01, 0x00, // OID 0x00010106
        ]);
        golden(
            &bytes,
            &NvspMessage::OidQueryEx(Nvsp5OidQueryEx {
                header_type: 0x80,
                header_revision: 1,
                header_size: 8,
                oid: 0x0001_0106,
            }),
        );
    }

    #[test]
    fn golden_pd_api_completion_fills_40_bytes() {
        let mut bytes = vec![0x87, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00]; // PD_API, CONFIG
        bytes.extend_from_slice(&[0x00, 0x00, 0x00, 0x00]); // status
        bytes.extend_from_slice(&[0x04, 0x00, 0x02, 0x01, 0x01]); // config {4, 2, 1, 1}
        bytes.resize(NVSP_MESSAGE_SIZE, 0);
        let msg = NvspMessage::parse_completion(&bytes).unwrap();
        let NvspMessage::PdApiComplete(comp) = msg.clone() else {
            panic!("{msg:?}")
        };
        assert_eq!({ comp.op }, NvspPdApiOp::CONFIG);
        assert_eq!(
            comp.config(),
            Nvsp6PdApiCompConfig {
                num_pd_q: 4,
                num_rss_q: 2,
                is_supported: 1,
                is_enabled: 1
            }
        );
        assert_eq!(msg.to_vec().unwrap(), bytes);
        // The 36-byte body needs all 40 bytes: a 32-byte message is too short.
        assert!(matches!(
            NvspMessage::parse_completion(&bytes[..32]),
            Err(Error::Truncated {
                need: 36,
                have: 28,
                ..
            })
        ));
    }

    #[test]
    fn pd_api_request_accessors() {
        let mut req = Nvsp6PdApiReq {
            op: NvspPdApiOp::CONFIG,
            params: [0; PD_API_REQ_PARAMS_SIZE],
        };
        req.params[..8].copy_from_slice(&0xFEE0_0000u64.to_le_bytes());
        req.params[8..12].copy_from_slice(&0x1000u32.to_le_bytes());
        req.params[12..14].copy_from_slice(&8u16.to_le_bytes());
        assert_eq!(
            req.config(),
            Nvsp6PdApiReqConfig {
                mmio_pa: 0xFEE0_0000,
                mmio_len: 0x1000,
                num_subchn: 8
            }
        );
        let msg = NvspMessage::PdApi(req);
        assert_eq!(NvspMessage::parse(&msg.to_vec().unwrap()).unwrap(), msg);
    }

    #[test]
    fn pre_v6_28_byte_messages_parse() {
        let bytes = padded(&[
            0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x03, 0x00, 0x02, 0x00, 0x03, 0x00,
        ]);
        let expected = NvspMessage::init(NvspVersion::V2);
        assert_eq!(
            NvspMessage::parse(&bytes[..NVSP_MESSAGE_SIZE_PRE_V6]).unwrap(),
            expected
        );
        assert_eq!(NvspMessage::parse(&bytes[..32]).unwrap(), expected);
        // The largest pre-v6 body (SEND_RECV_BUF_COMPLETE with one section) fits 28 bytes.
        let complete = NvspMessage::SendReceiveBufferComplete {
            status: NvspStatus::SUCCESS,
            sections: vec![Nvsp1ReceiveBufferSection {
                offset: 0,
                sub_alloc_size: 1728,
                num_sub_allocs: 10,
                end_offset: 17280,
            }],
        };
        let v = complete.to_vec().unwrap();
        assert_eq!(
            NvspMessage::parse(&v[..NVSP_MESSAGE_SIZE_PRE_V6]).unwrap(),
            complete
        );
        // A body as short as its own struct is enough.
        assert_eq!(
            NvspMessage::parse(&[0x67, 0, 0, 0, 0xFE, 0xCA]).unwrap(),
            NvspMessage::RevokeReceiveBuffer { id: 0xCAFE }
        );
    }

    #[test]
    fn emit_is_at_least_32_bytes() {
        let msg = NvspMessage::RevokeSendBuffer { id: 0 };
        assert_eq!(msg.emitted_len(), NVSP_MESSAGE_SIZE);
        assert!(msg.emitted_len() >= NVSP_MIN_SEND_SIZE);
        let mut small = [0u8; 39];
        assert_eq!(
            msg.emit(&mut small),
            Err(Error::BufferTooSmall {
                what: "nvsp_message",
                need: 40,
                have: 39
            })
        );
    }

    #[test]
    fn unknown_types_are_not_errors() {
        for t in [0u32, 3, 99, 109, 123, 130, 137, 0xFFFF_FFFF] {
            let bytes = padded(&t.to_le_bytes());
            let msg = NvspMessage::parse(&bytes).unwrap();
            assert_eq!(
                msg,
                NvspMessage::Unknown {
                    msg_type: NvspMessageType(t)
                }
            );
            assert_eq!(msg.to_vec().unwrap(), bytes);
        }
        // Even a header alone.
        assert_eq!(
            NvspMessage::parse(&[0x99, 0, 0, 0]).unwrap(),
            NvspMessage::Unknown {
                msg_type: NvspMessageType(0x99)
            }
        );
    }

    #[test]
    fn truncated_bodies_are_rejected() {
        assert_eq!(
            NvspMessage::parse(&[1, 0, 0]),
            Err(Error::Truncated {
                what: "nvsp_message_header",
                need: 4,
                have: 3
            })
        );
        assert_eq!(
            NvspMessage::parse(&[1, 0, 0, 0, 1, 0, 6, 0]),
            Err(Error::Truncated {
                what: "nvsp_message_init",
                need: 8,
                have: 4
            })
        );
        assert!(matches!(
            NvspMessage::parse(&[0x65, 0, 0, 0, 1, 2, 3, 4, 0xFE]),
            Err(Error::Truncated {
                need: 6,
                have: 5,
                ..
            })
        ));
        assert!(matches!(
            NvspMessage::parse(&[0x7D, 0, 0, 0, 0xEA, 5, 0, 0, 0, 0, 0, 0]),
            Err(Error::Truncated {
                need: 16,
                have: 8,
                ..
            })
        ));
        // SEND_RECV_BUF_COMPLETE needs its 24-byte struct even with zero sections.
        assert!(matches!(
            NvspMessage::parse(&[0x66, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]),
            Err(Error::Truncated {
                need: 24,
                have: 8,
                ..
            })
        ));
    }

    #[test]
    fn receive_buffer_sections_are_bounded() {
        // Two sections claimed, only one present in a 40-byte message.
        let mut bytes = padded(&[0x66, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(
            NvspMessage::parse(&bytes),
            Err(Error::Truncated {
                what: "nvsp_1_message_send_receive_buffer_complete sections",
                need: 40,
                have: 36,
            })
        );
        // Two sections present in a longer packet are fine.
        bytes.resize(4 + 8 + 32, 0);
        bytes[28..32].copy_from_slice(&0x40u32.to_le_bytes());
        let msg = NvspMessage::parse(&bytes).unwrap();
        let NvspMessage::SendReceiveBufferComplete { sections, .. } = &msg else {
            panic!()
        };
        assert_eq!(sections.len(), 2);
        assert_eq!({ sections[1].offset }, 0x40);
        assert_eq!(msg.to_vec().unwrap(), bytes);
        // More than the cap.
        let mut huge = vec![0u8; 4 + 8 + 16 * 17];
        huge[0] = 0x66;
        huge[8..12].copy_from_slice(&17u32.to_le_bytes());
        assert_eq!(
            NvspMessage::parse(&huge),
            Err(Error::TooMany {
                what: "receive buffer sections",
                count: 17,
                limit: 16
            })
        );
        huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            NvspMessage::parse(&huge),
            Err(Error::TooMany { .. })
        ));
        // Zero sections parse to an empty list.
        let zero = padded(&[0x66, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            NvspMessage::parse(&zero).unwrap(),
            NvspMessage::SendReceiveBufferComplete {
                status: NvspStatus::FAIL,
                sections: vec![]
            }
        );
        // Emitting more than the cap is refused.
        let too_many = NvspMessage::SendReceiveBufferComplete {
            status: NvspStatus::SUCCESS,
            sections: vec![Nvsp1ReceiveBufferSection::new_zeroed(); 17],
        };
        assert!(matches!(
            too_many.to_vec(),
            Err(Error::TooMany { count: 17, .. })
        ));
    }

    /// Hand-written SEND_INDIRECTION_TABLE as OpenVMM sends it: 16 entries at offset 12.
    fn table_bytes_offset_12() -> Vec<u8> {
        let mut v = vec![
            0x86, 0x00, 0x00, 0x00, // SEND_INDIRECTION_TABLE (134)
            0x10, 0x00, 0x00, 0x00, // count 16
            0x0C, 0x00, 0x00, 0x00, // offset 12
        ];
        for i in 0..16u8 {
            v.extend_from_slice(&[i % 4, 0, 0, 0]); // round robin over 4 channels
        }
        v
    }

    #[test]
    fn golden_send_indirection_table() {
        let bytes = table_bytes_offset_12();
        assert_eq!(bytes.len(), 76);
        let table = NvspSendIndirectionTable::parse(&bytes).unwrap();
        assert_eq!(table, NvspSendIndirectionTable::round_robin(4));
        assert_eq!(table.entries().len(), VRSS_SEND_TAB_SIZE);
        assert_eq!(table.entries()[5], 1);
        assert_eq!(table.to_vec(SEND_INDIRECTION_TABLE_OFFSET).unwrap(), bytes);
        // The fixed part through the generic parser.
        assert_eq!(
            NvspMessage::parse(&bytes).unwrap(),
            NvspMessage::SendIndirectionTable {
                count: 16,
                offset: 12
            }
        );
        // Linux's fix-up does not apply to a 76-byte message: same result at 6.0.
        assert_eq!(
            NvspSendIndirectionTable::parse_linux_compat(&bytes, NvspVersion::V6).unwrap(),
            table
        );
    }

    #[test]
    fn send_indirection_table_after_message() {
        let table = NvspSendIndirectionTable::round_robin(3);
        let bytes = table
            .to_vec(SEND_INDIRECTION_TABLE_OFFSET_AFTER_MESSAGE)
            .unwrap();
        assert_eq!(bytes.len(), 40 + 64);
        assert_eq!(&bytes[..12], &[0x86, 0, 0, 0, 16, 0, 0, 0, 40, 0, 0, 0]);
        assert!(bytes[12..40].iter().all(|&b| b == 0));
        assert_eq!(&bytes[40..48], &[0, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(NvspSendIndirectionTable::parse(&bytes).unwrap(), table);
        // A buggy host that claims offset 12 but put the table at 40: the strict parser
        // believes the offset, Linux's compat rule (version <= 6.0) reads at 40.
        let mut buggy = bytes.clone();
        buggy[8] = 12;
        assert_ne!(NvspSendIndirectionTable::parse(&buggy).unwrap(), table);
        assert_eq!(
            NvspSendIndirectionTable::parse_linux_compat(&buggy, NvspVersion::V6).unwrap(),
            table
        );
        assert_ne!(
            NvspSendIndirectionTable::parse_linux_compat(&buggy, NvspVersion::V6_1).unwrap(),
            table
        );
    }

    #[test]
    fn send_indirection_table_rejections() {
        let good = table_bytes_offset_12();
        // Entries past the end of the payload.
        assert_eq!(
            NvspSendIndirectionTable::parse(&good[..75]),
            Err(Error::OutOfBounds {
                what: "send indirection table",
                offset: 12,
                len: 64,
                bound: 75,
            })
        );
        // Offset past the payload, and an offset that would overflow.
        for offset in [64u32, 77, 0xFFFF_FFF0, u32::MAX] {
            let mut bad = good.clone();
            bad[8..12].copy_from_slice(&offset.to_le_bytes());
            assert!(
                matches!(
                    NvspSendIndirectionTable::parse(&bad),
                    Err(Error::OutOfBounds { .. })
                ),
                "{offset}"
            );
        }
        // Offset into the header / fixed part.
        let mut bad = good.clone();
        bad[8] = 4;
        assert_eq!(
            NvspSendIndirectionTable::parse(&bad),
            Err(Error::InvalidField {
                what: "send indirection table offset",
                value: 4
            })
        );
        // Too many entries.
        let mut bad = good.clone();
        bad[4] = 17;
        assert_eq!(
            NvspSendIndirectionTable::parse(&bad),
            Err(Error::TooMany {
                what: "send indirection table entries",
                count: 17,
                limit: 16
            })
        );
        // Wrong type, short fixed part.
        let mut bad = good.clone();
        bad[0] = 0x85;
        assert!(matches!(
            NvspSendIndirectionTable::parse(&bad),
            Err(Error::InvalidField { value: 0x85, .. })
        ));
        assert!(matches!(
            NvspSendIndirectionTable::parse(&good[..10]),
            Err(Error::Truncated {
                need: 8,
                have: 6,
                ..
            })
        ));
        // Fewer entries is accepted by the parser (Linux would refuse count != 16).
        let short = NvspSendIndirectionTable::new(&[1, 2]).unwrap();
        let v = short.to_vec(SEND_INDIRECTION_TABLE_OFFSET).unwrap();
        assert_eq!(v.len(), NVSP_MESSAGE_SIZE);
        assert_eq!(
            NvspSendIndirectionTable::parse(&v).unwrap().entries(),
            &[1, 2]
        );
        // Emitter limits.
        assert!(NvspSendIndirectionTable::new(&[0; 17]).is_err());
        assert!(short.to_vec(11).is_err());
        assert!(short.to_vec(MAX_SEND_INDIRECTION_TABLE_OFFSET + 1).is_err());
        let mut buf = [0u8; 75];
        assert!(matches!(
            NvspSendIndirectionTable::round_robin(2).emit(12, &mut buf),
            Err(Error::BufferTooSmall {
                need: 76,
                have: 75,
                ..
            })
        ));
    }

    fn arb_section() -> impl Strategy<Value = Nvsp1ReceiveBufferSection> {
        any::<[u32; 4]>().prop_map(|[offset, sub_alloc_size, num_sub_allocs, end_offset]| {
            Nvsp1ReceiveBufferSection {
                offset,
                sub_alloc_size,
                num_sub_allocs,
                end_offset,
            }
        })
    }

    fn arb_message() -> impl Strategy<Value = NvspMessage> {
        let v = || any::<u32>().prop_map(NvspVersion);
        let st = || any::<u32>().prop_map(NvspStatus);
        prop::strategy::Union::new(vec![
            (v(), v())
                .prop_map(|(a, b)| NvspMessage::Init {
                    min_protocol_ver: a,
                    max_protocol_ver: b,
                })
                .boxed(),
            (v(), any::<u32>(), st())
                .prop_map(|(a, b, c)| NvspMessage::InitComplete {
                    negotiated_protocol_ver: a,
                    max_mdl_chain_len: b,
                    status: c,
                })
                .boxed(),
            any::<(u32, u32)>()
                .prop_map(|(a, b)| NvspMessage::SendNdisVersion {
                    ndis_major_ver: a,
                    ndis_minor_ver: b,
                })
                .boxed(),
            any::<(u32, u16)>()
                .prop_map(|(a, b)| NvspMessage::SendReceiveBuffer {
                    gpadl_handle: a,
                    id: b,
                })
                .boxed(),
            (
                st(),
                prop::collection::vec(arb_section(), 0..=MAX_RECEIVE_BUFFER_SECTIONS),
            )
                .prop_map(
                    |(status, sections)| NvspMessage::SendReceiveBufferComplete {
                        status,
                        sections,
                    },
                )
                .boxed(),
            any::<u16>()
                .prop_map(|id| NvspMessage::RevokeReceiveBuffer { id })
                .boxed(),
            any::<(u32, u16)>()
                .prop_map(|(a, b)| NvspMessage::SendSendBuffer {
                    gpadl_handle: a,
                    id: b,
                })
                .boxed(),
            (st(), any::<u32>())
                .prop_map(
                    |(status, section_size)| NvspMessage::SendSendBufferComplete {
                        status,
                        section_size,
                    },
                )
                .boxed(),
            any::<u16>()
                .prop_map(|id| NvspMessage::RevokeSendBuffer { id })
                .boxed(),
            any::<(u32, u32, u32)>()
                .prop_map(|(a, b, c)| NvspMessage::SendRndisPacket {
                    channel_type: NvspChannelType(a),
                    send_buf_section_index: b,
                    send_buf_section_size: c,
                })
                .boxed(),
            st().prop_map(|status| NvspMessage::SendRndisPacketComplete { status })
                .boxed(),
            any::<(u32, u32)>()
                .prop_map(|(alloc_id, len)| NvspMessage::AllocRxbuf { alloc_id, len })
                .boxed(),
            any::<(u32, u32, u32, u64)>()
                .prop_map(|(a, b, c, d)| NvspMessage::AllocRxbufComplete {
                    status: a,
                    alloc_id: b,
                    gpadl_handle: c,
                    recv_buf_id: d,
                })
                .boxed(),
            any::<u64>()
                .prop_map(|recv_buf_id| NvspMessage::FreeRxbuf { recv_buf_id })
                .boxed(),
            any::<(u32, u64)>()
                .prop_map(|(mtu, c)| NvspMessage::SendNdisConfig {
                    mtu,
                    capability: NdisConfigCapabilities::from_bits_retain(c),
                })
                .boxed(),
            any::<(u32, u32)>()
                .prop_map(|(allocated, serial)| NvspMessage::SendVfAssociation {
                    allocated,
                    serial,
                })
                .boxed(),
            any::<u32>()
                .prop_map(|d| NvspMessage::SwitchDataPath {
                    active_datapath: NvspDataPath(d),
                })
                .boxed(),
            any::<(u8, u8, u16, u32)>()
                .prop_map(|(a, b, c, d)| {
                    NvspMessage::OidQueryEx(Nvsp5OidQueryEx {
                        header_type: a,
                        header_revision: b,
                        header_size: c,
                        oid: d,
                    })
                })
                .boxed(),
            any::<(u32, u32)>()
                .prop_map(|(status, bytes)| {
                    NvspMessage::OidQueryExComplete(Nvsp5OidQueryExComplete { status, bytes })
                })
                .boxed(),
            any::<(u32, u32)>()
                .prop_map(|(op, n)| NvspMessage::Subchannel {
                    op: NvspSubchannelOp(op),
                    num_subchannels: n,
                })
                .boxed(),
            (st(), any::<u32>())
                .prop_map(|(status, n)| NvspMessage::SubchannelComplete {
                    status,
                    num_subchannels: n,
                })
                .boxed(),
            any::<(u32, u32)>()
                .prop_map(|(count, offset)| NvspMessage::SendIndirectionTable { count, offset })
                .boxed(),
            (any::<u32>(), any::<[u8; PD_API_REQ_PARAMS_SIZE]>())
                .prop_map(|(op, params)| {
                    NvspMessage::PdApi(Nvsp6PdApiReq {
                        op: NvspPdApiOp(op),
                        params,
                    })
                })
                .boxed(),
            (any::<(u32, u32)>(), any::<[u8; PD_API_COMP_PARAMS_SIZE]>())
                .prop_map(|((op, status), params)| {
                    NvspMessage::PdApiComplete(Nvsp6PdApiComp {
                        op: NvspPdApiOp(op),
                        status,
                        params,
                    })
                })
                .boxed(),
            any::<(u16, u16)>()
                .prop_map(|(count, flags)| NvspMessage::PdPostBatch { count, flags })
                .boxed(),
            any::<u32>()
                .prop_filter("types with a body layout", |t| {
                    !NvspMessageType(*t).has_body_layout()
                })
                .prop_map(|t| NvspMessage::Unknown {
                    msg_type: NvspMessageType(t),
                })
                .boxed(),
        ])
    }

    /// A payload that starts with a type this module decodes, then arbitrary bytes.
    fn arb_typed_payload() -> impl Strategy<Value = Vec<u8>> {
        (
            prop::sample::select(
                NvspMessageType::KNOWN
                    .iter()
                    .map(|t| t.0)
                    .collect::<Vec<_>>(),
            ),
            prop::collection::vec(any::<u8>(), 0..320),
        )
            .prop_map(|(t, body)| {
                let mut v = t.to_le_bytes().to_vec();
                v.extend(body);
                v
            })
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..320)) {
            let _ = NvspMessage::parse(&bytes);
            let _ = NvspMessage::parse_completion(&bytes);
            let _ = NvspSendIndirectionTable::parse(&bytes);
            let _ = NvspSendIndirectionTable::parse_linux_compat(&bytes, NvspVersion::V6);
        }

        #[test]
        fn parse_typed_never_panics(bytes in arb_typed_payload()) {
            let parsed = [NvspMessage::parse(&bytes), NvspMessage::parse_completion(&bytes)];
            for m in parsed.into_iter().flatten() {
                // Whatever parsed can be emitted again.
                prop_assert!(m.to_vec().is_ok());
            }
            let mut table = bytes.clone();
            if table.len() >= 4 {
                table[..4].copy_from_slice(&134u32.to_le_bytes());
            }
            if let Ok(t) = NvspSendIndirectionTable::parse(&table) {
                prop_assert!(t.entries().len() <= VRSS_SEND_TAB_SIZE);
            }
        }

        #[test]
        fn roundtrip(msg in arb_message()) {
            let bytes = msg.to_vec().unwrap();
            prop_assert!(bytes.len() >= NVSP_MESSAGE_SIZE);
            prop_assert_eq!(bytes.len(), msg.emitted_len());
            let completion = matches!(
                msg,
                NvspMessage::SubchannelComplete { .. } | NvspMessage::PdApiComplete(_)
            );
            let parsed = if completion {
                NvspMessage::parse_completion(&bytes)
            } else {
                NvspMessage::parse(&bytes)
            };
            prop_assert_eq!(parsed.unwrap(), msg);
        }

        #[test]
        fn table_roundtrip(
            entries in prop::collection::vec(any::<u32>(), 0..=VRSS_SEND_TAB_SIZE),
            offset in SEND_INDIRECTION_TABLE_OFFSET..=MAX_SEND_INDIRECTION_TABLE_OFFSET,
        ) {
            let table = NvspSendIndirectionTable::new(&entries).unwrap();
            let bytes = table.to_vec(offset).unwrap();
            let parsed = NvspSendIndirectionTable::parse(&bytes).unwrap();
            prop_assert_eq!(parsed.entries(), &entries[..]);
        }
    }
}
