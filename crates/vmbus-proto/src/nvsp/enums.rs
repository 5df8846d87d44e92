//! The open enums of NVSP (message types, versions, status, channel types, data
//! paths, subchannel and PD-API operations) and the NDIS configuration capabilities.

use bitflags::bitflags;

hv_hypercall::open_enum! {
    /// An NVSP message type: `msg_type` of `struct nvsp_message_header` (the anonymous
    /// `NVSP_MSG*_TYPE_*` enum in hyperv_net.h; names here drop the `NVSP_MSGn_TYPE_`
    /// prefix). Open: a peer may send anything, and [`NvspMessage::parse`](super::NvspMessage::parse) reports values
    /// it has no layout for as [`NvspMessage::Unknown`](super::NvspMessage::Unknown).
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

    /// Whether [`NvspMessage::parse`](super::NvspMessage::parse) decodes this type's body (types without a body
    /// layout here are reported as [`NvspMessage::Unknown`](super::NvspMessage::Unknown)).
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
