//! RNDIS / NDIS discriminants and flag words: message types, status codes, OIDs,
//! per-packet-info types, NDIS object types, media, device flags and packet filters.
//!
//! Values are from Linux `include/linux/rndis.h` (torvalds/linux 17c51b6ccc7d) and
//! `drivers/net/hyperv/hyperv_net.h`, OpenVMM `vm/devices/net/netvsp/src/rndisprot.rs`
//! and, where neither has them, the Windows SDK `ntddndis.h` constants (as published in
//! the Win32 metadata). Every discriminant is an open enum: a peer may send any value,
//! and an unknown one stays representable.

use bitflags::bitflags;

hv_hypercall::open_enum! {
    /// `ndis_msg_type`, the first word of every RNDIS message (`RNDIS_MSG_*` /
    /// `REMOTE_NDIS_*_MSG` in rndis.h). Completions are the request type with bit 31 set.
    pub struct RndisMessageType(u32) {
        /// `REMOTE_NDIS_PACKET_MSG`: one data frame (data channel).
        PACKET = 0x0000_0001,
        /// `REMOTE_NDIS_INITIALIZE_MSG`.
        INIT = 0x0000_0002,
        /// `REMOTE_NDIS_HALT_MSG` (no completion).
        HALT = 0x0000_0003,
        /// `REMOTE_NDIS_QUERY_MSG`.
        QUERY = 0x0000_0004,
        /// `REMOTE_NDIS_SET_MSG`.
        SET = 0x0000_0005,
        /// `REMOTE_NDIS_RESET_MSG`.
        RESET = 0x0000_0006,
        /// `REMOTE_NDIS_INDICATE_STATUS_MSG` (device to host-driver, no completion).
        INDICATE_STATUS = 0x0000_0007,
        /// `REMOTE_NDIS_KEEPALIVE_MSG`.
        KEEPALIVE = 0x0000_0008,
        /// SetEx request (OpenVMM `MESSAGE_TYPE_SET_EX_MSG`; not in Linux).
        SET_EX = 0x0000_0009,
        /// `REMOTE_NDIS_INITIALIZE_CMPLT`.
        INIT_CMPLT = 0x8000_0002,
        /// `REMOTE_NDIS_QUERY_CMPLT`.
        QUERY_CMPLT = 0x8000_0004,
        /// `REMOTE_NDIS_SET_CMPLT`.
        SET_CMPLT = 0x8000_0005,
        /// `REMOTE_NDIS_RESET_CMPLT`.
        RESET_CMPLT = 0x8000_0006,
        /// `REMOTE_NDIS_KEEPALIVE_CMPLT`.
        KEEPALIVE_CMPLT = 0x8000_0008,
        /// SetEx completion (OpenVMM `MESSAGE_TYPE_SET_EX_CMPLT`).
        SET_EX_CMPLT = 0x8000_0009,
        /// `REMOTE_CONDIS_MP_CREATE_VC_MSG`.
        CONDIS_MP_CREATE_VC = 0x0000_8001,
        /// `REMOTE_CONDIS_MP_DELETE_VC_MSG`.
        CONDIS_MP_DELETE_VC = 0x0000_8002,
        /// `REMOTE_CONDIS_MP_ACTIVATE_VC_MSG`.
        CONDIS_MP_ACTIVATE_VC = 0x0000_8005,
        /// `REMOTE_CONDIS_MP_DEACTIVATE_VC_MSG`.
        CONDIS_MP_DEACTIVATE_VC = 0x0000_8006,
        /// `REMOTE_CONDIS_INDICATE_STATUS_MSG`.
        CONDIS_INDICATE_STATUS = 0x0000_8007,
        /// `REMOTE_CONDIS_MP_CREATE_VC_CMPLT`.
        CONDIS_MP_CREATE_VC_CMPLT = 0x8000_8001,
        /// `REMOTE_CONDIS_MP_DELETE_VC_CMPLT`.
        CONDIS_MP_DELETE_VC_CMPLT = 0x8000_8002,
        /// `REMOTE_CONDIS_MP_ACTIVATE_VC_CMPLT`.
        CONDIS_MP_ACTIVATE_VC_CMPLT = 0x8000_8005,
        /// `REMOTE_CONDIS_MP_DEACTIVATE_VC_CMPLT`.
        CONDIS_MP_DEACTIVATE_VC_CMPLT = 0x8000_8006,
        /// `REMOTE_NDIS_BUS_MSG`: private host-driver/device traffic.
        BUS = 0xff00_0001,
    }
}

impl RndisMessageType {
    /// `RNDIS_MSG_COMPLETION`: bit 31, set in every completion type.
    pub const COMPLETION_BIT: u32 = 0x8000_0000;

    /// Whether bit 31 (completion) is set.
    pub const fn is_completion(self) -> bool {
        self.0 & Self::COMPLETION_BIT != 0
    }
}

hv_hypercall::open_enum! {
    /// `RNDIS_STATUS_*` / `NDIS_STATUS_*`: completion status and indicated status codes
    /// (rndis.h; NETWORK_CHANGE and TASK_OFFLOAD_CURRENT_CONFIG from OpenVMM rndisprot.rs
    /// and FreeBSD/DPDK). A peer may complete with any value: treat unknown ones as
    /// failure.
    pub struct RndisStatus(u32) {
        /// Success.
        SUCCESS = 0x0000_0000,
        /// The request completes later.
        PENDING = 0x0000_0103,
        /// Not recognized.
        NOT_RECOGNIZED = 0x0001_0001,
        /// Not copied.
        NOT_COPIED = 0x0001_0002,
        /// Not accepted.
        NOT_ACCEPTED = 0x0001_0003,
        /// Call active.
        CALL_ACTIVE = 0x0001_0007,
        /// Online.
        ONLINE = 0x4001_0003,
        /// Reset start.
        RESET_START = 0x4001_0004,
        /// Reset end.
        RESET_END = 0x4001_0005,
        /// Ring status.
        RING_STATUS = 0x4001_0006,
        /// Closed.
        CLOSED = 0x4001_0007,
        /// WAN line up.
        WAN_LINE_UP = 0x4001_0008,
        /// WAN line down.
        WAN_LINE_DOWN = 0x4001_0009,
        /// WAN fragment.
        WAN_FRAGMENT = 0x4001_000A,
        /// Link up (indicated).
        MEDIA_CONNECT = 0x4001_000B,
        /// Link down (indicated).
        MEDIA_DISCONNECT = 0x4001_000C,
        /// Hardware line up.
        HARDWARE_LINE_UP = 0x4001_000D,
        /// Hardware line down.
        HARDWARE_LINE_DOWN = 0x4001_000E,
        /// Interface up.
        INTERFACE_UP = 0x4001_000F,
        /// Interface down.
        INTERFACE_DOWN = 0x4001_0010,
        /// Media busy.
        MEDIA_BUSY = 0x4001_0011,
        /// Media-specific indication.
        MEDIA_SPECIFIC_INDICATION = 0x4001_0012,
        /// Link speed change; the status buffer is a u32 speed in 100 bps units.
        LINK_SPEED_CHANGE = 0x4001_0013,
        /// Network change (the guest should renew its addresses). Value from NDIS /
        /// FreeBSD / DPDK; Linux netvsc uses the name.
        NETWORK_CHANGE = 0x4001_0018,
        /// Task-offload configuration changed (OpenVMM, BSD, DPDK; not in Linux).
        TASK_OFFLOAD_CURRENT_CONFIG = 0x4002_0006,
        /// Not resettable.
        NOT_RESETTABLE = 0x8001_0001,
        /// Soft errors.
        SOFT_ERRORS = 0x8001_0003,
        /// Hard errors.
        HARD_ERRORS = 0x8001_0004,
        /// The reply did not fit.
        BUFFER_OVERFLOW = 0x8000_0005,
        /// Generic failure.
        FAILURE = 0xC000_0001,
        /// Out of resources.
        RESOURCES = 0xC000_009A,
        /// Not supported.
        NOT_SUPPORTED = 0xC000_00BB,
        /// Closing.
        CLOSING = 0xC001_0002,
        /// Bad version.
        BAD_VERSION = 0xC001_0004,
        /// Bad characteristics.
        BAD_CHARACTERISTICS = 0xC001_0005,
        /// Adapter not found.
        ADAPTER_NOT_FOUND = 0xC001_0006,
        /// Open failed.
        OPEN_FAILED = 0xC001_0007,
        /// Device failed.
        DEVICE_FAILED = 0xC001_0008,
        /// Multicast list full.
        MULTICAST_FULL = 0xC001_0009,
        /// Multicast address already present.
        MULTICAST_EXISTS = 0xC001_000A,
        /// Multicast address not found.
        MULTICAST_NOT_FOUND = 0xC001_000B,
        /// Request aborted.
        REQUEST_ABORTED = 0xC001_000C,
        /// Reset in progress.
        RESET_IN_PROGRESS = 0xC001_000D,
        /// Closing while indicating.
        CLOSING_INDICATING = 0xC001_000E,
        /// Invalid packet.
        INVALID_PACKET = 0xC001_000F,
        /// Open list full.
        OPEN_LIST_FULL = 0xC001_0010,
        /// Adapter not ready.
        ADAPTER_NOT_READY = 0xC001_0011,
        /// Adapter not open.
        ADAPTER_NOT_OPEN = 0xC001_0012,
        /// Not indicating.
        NOT_INDICATING = 0xC001_0013,
        /// Invalid length.
        INVALID_LENGTH = 0xC001_0014,
        /// Invalid data.
        INVALID_DATA = 0xC001_0015,
        /// Buffer too short.
        BUFFER_TOO_SHORT = 0xC001_0016,
        /// Invalid (unsupported) OID.
        INVALID_OID = 0xC001_0017,
        /// Adapter removed.
        ADAPTER_REMOVED = 0xC001_0018,
        /// Unsupported media.
        UNSUPPORTED_MEDIA = 0xC001_0019,
        /// Group address in use.
        GROUP_ADDRESS_IN_USE = 0xC001_001A,
        /// File not found.
        FILE_NOT_FOUND = 0xC001_001B,
        /// Error reading file.
        ERROR_READING_FILE = 0xC001_001C,
        /// Already mapped.
        ALREADY_MAPPED = 0xC001_001D,
        /// Resource conflict.
        RESOURCE_CONFLICT = 0xC001_001E,
        /// No cable.
        NO_CABLE = 0xC001_001F,
        /// Invalid SAP.
        INVALID_SAP = 0xC001_0020,
        /// SAP in use.
        SAP_IN_USE = 0xC001_0021,
        /// Invalid address.
        INVALID_ADDRESS = 0xC001_0022,
        /// VC not activated.
        VC_NOT_ACTIVATED = 0xC001_0023,
        /// Destination out of order.
        DEST_OUT_OF_ORDER = 0xC001_0024,
        /// VC not available.
        VC_NOT_AVAILABLE = 0xC001_0025,
        /// Cell rate not available.
        CELLRATE_NOT_AVAILABLE = 0xC001_0026,
        /// Incompatible QoS (rndis.h spells it `INCOMPATABLE_QOS`).
        INCOMPATIBLE_QOS = 0xC001_0027,
        /// AAL parameters unsupported.
        AAL_PARAMS_UNSUPPORTED = 0xC001_0028,
        /// No route to destination.
        NO_ROUTE_TO_DESTINATION = 0xC001_0029,
        /// Token-ring open error.
        TOKEN_RING_OPEN_ERROR = 0xC001_1000,
    }
}

impl RndisStatus {
    /// Whether the value is [`RndisStatus::SUCCESS`].
    pub const fn is_success(self) -> bool {
        self.0 == 0
    }
}

hv_hypercall::open_enum! {
    /// NDIS object identifiers (`OID_*` / `RNDIS_OID_*`). Sources: rndis.h and
    /// hyperv_net.h (Linux netvsc), OpenVMM rndisprot.rs (what netvsp answers), and
    /// ntddndis.h for the Windows-guest ones neither defines (STATISTICS, PM_*,
    /// TCP_TASK_OFFLOAD, ...). A peer may query or set any value.
    pub struct Oid(u32) {
        /// Supported OIDs (u32 array).
        OID_GEN_SUPPORTED_LIST = 0x0001_0101,
        /// Hardware status.
        OID_GEN_HARDWARE_STATUS = 0x0001_0102,
        /// Media supported.
        OID_GEN_MEDIA_SUPPORTED = 0x0001_0103,
        /// Media in use.
        OID_GEN_MEDIA_IN_USE = 0x0001_0104,
        /// Maximum lookahead.
        OID_GEN_MAXIMUM_LOOKAHEAD = 0x0001_0105,
        /// Maximum frame size without the Ethernet header (netvsc: the MTU).
        OID_GEN_MAXIMUM_FRAME_SIZE = 0x0001_0106,
        /// Link speed, u32 in 100 bps units.
        OID_GEN_LINK_SPEED = 0x0001_0107,
        /// Transmit buffer space.
        OID_GEN_TRANSMIT_BUFFER_SPACE = 0x0001_0108,
        /// Receive buffer space.
        OID_GEN_RECEIVE_BUFFER_SPACE = 0x0001_0109,
        /// Transmit block size.
        OID_GEN_TRANSMIT_BLOCK_SIZE = 0x0001_010A,
        /// Receive block size.
        OID_GEN_RECEIVE_BLOCK_SIZE = 0x0001_010B,
        /// Vendor id.
        OID_GEN_VENDOR_ID = 0x0001_010C,
        /// Vendor description.
        OID_GEN_VENDOR_DESCRIPTION = 0x0001_010D,
        /// Receive filter, u32 of [`PacketFilter`] bits.
        OID_GEN_CURRENT_PACKET_FILTER = 0x0001_010E,
        /// Current lookahead.
        OID_GEN_CURRENT_LOOKAHEAD = 0x0001_010F,
        /// NDIS driver version.
        OID_GEN_DRIVER_VERSION = 0x0001_0110,
        /// Maximum total frame size.
        OID_GEN_MAXIMUM_TOTAL_SIZE = 0x0001_0111,
        /// Protocol options.
        OID_GEN_PROTOCOL_OPTIONS = 0x0001_0112,
        /// MAC options.
        OID_GEN_MAC_OPTIONS = 0x0001_0113,
        /// Media connect status, u32 [`MediaState`].
        OID_GEN_MEDIA_CONNECT_STATUS = 0x0001_0114,
        /// Maximum send packets.
        OID_GEN_MAXIMUM_SEND_PACKETS = 0x0001_0115,
        /// Vendor driver version.
        OID_GEN_VENDOR_DRIVER_VERSION = 0x0001_0116,
        /// Supported GUIDs.
        OID_GEN_SUPPORTED_GUIDS = 0x0001_0117,
        /// Network-layer addresses (set by Windows guests).
        OID_GEN_NETWORK_LAYER_ADDRESSES = 0x0001_0118,
        /// Transport header offset.
        OID_GEN_TRANSPORT_HEADER_OFFSET = 0x0001_0119,
        /// Media capabilities.
        OID_GEN_MEDIA_CAPABILITIES = 0x0001_0201,
        /// Physical medium.
        OID_GEN_PHYSICAL_MEDIUM = 0x0001_0202,
        /// RSS capabilities (query; `NDIS_RECEIVE_SCALE_CAPABILITIES`).
        OID_GEN_RECEIVE_SCALE_CAPABILITIES = 0x0001_0203,
        /// RSS parameters (set; `NDIS_RECEIVE_SCALE_PARAMETERS`).
        OID_GEN_RECEIVE_SCALE_PARAMETERS = 0x0001_0204,
        /// MAC address (ntddndis.h).
        OID_GEN_MAC_ADDRESS = 0x0001_0205,
        /// Maximum link speed.
        OID_GEN_MAX_LINK_SPEED = 0x0001_0206,
        /// Link state (`NDIS_LINK_STATE`).
        OID_GEN_LINK_STATE = 0x0001_0207,
        /// Link parameters.
        OID_GEN_LINK_PARAMETERS = 0x0001_0208,
        /// Interrupt moderation.
        OID_GEN_INTERRUPT_MODERATION = 0x0001_0209,
        /// Machine name.
        OID_GEN_MACHINE_NAME = 0x0001_021A,
        /// Configuration parameter (set; [`RndisConfigParameterInfo`](super::RndisConfigParameterInfo)).
        OID_GEN_RNDIS_CONFIG_PARAMETER = 0x0001_021B,
        /// VLAN id.
        OID_GEN_VLAN_ID = 0x0001_021C,
        /// Frames transmitted without error.
        OID_GEN_XMIT_OK = 0x0002_0101,
        /// Frames received without error.
        OID_GEN_RCV_OK = 0x0002_0102,
        /// Transmit errors.
        OID_GEN_XMIT_ERROR = 0x0002_0103,
        /// Receive errors.
        OID_GEN_RCV_ERROR = 0x0002_0104,
        /// Receives dropped for lack of buffers.
        OID_GEN_RCV_NO_BUFFER = 0x0002_0105,
        /// NDIS 6 statistics block (ntddndis.h).
        OID_GEN_STATISTICS = 0x0002_0106,
        /// Directed bytes transmitted.
        OID_GEN_DIRECTED_BYTES_XMIT = 0x0002_0201,
        /// Directed frames transmitted.
        OID_GEN_DIRECTED_FRAMES_XMIT = 0x0002_0202,
        /// Multicast bytes transmitted.
        OID_GEN_MULTICAST_BYTES_XMIT = 0x0002_0203,
        /// Multicast frames transmitted.
        OID_GEN_MULTICAST_FRAMES_XMIT = 0x0002_0204,
        /// Broadcast bytes transmitted.
        OID_GEN_BROADCAST_BYTES_XMIT = 0x0002_0205,
        /// Broadcast frames transmitted.
        OID_GEN_BROADCAST_FRAMES_XMIT = 0x0002_0206,
        /// Directed bytes received.
        OID_GEN_DIRECTED_BYTES_RCV = 0x0002_0207,
        /// Directed frames received.
        OID_GEN_DIRECTED_FRAMES_RCV = 0x0002_0208,
        /// Multicast bytes received.
        OID_GEN_MULTICAST_BYTES_RCV = 0x0002_0209,
        /// Multicast frames received.
        OID_GEN_MULTICAST_FRAMES_RCV = 0x0002_020A,
        /// Broadcast bytes received.
        OID_GEN_BROADCAST_BYTES_RCV = 0x0002_020B,
        /// Broadcast frames received.
        OID_GEN_BROADCAST_FRAMES_RCV = 0x0002_020C,
        /// Receive CRC errors.
        OID_GEN_RCV_CRC_ERROR = 0x0002_020D,
        /// Transmit queue length.
        OID_GEN_TRANSMIT_QUEUE_LENGTH = 0x0002_020E,
        /// Time capabilities.
        OID_GEN_GET_TIME_CAPS = 0x0002_020F,
        /// Netcard time.
        OID_GEN_GET_NETCARD_TIME = 0x0002_0210,
        /// Netcard load.
        OID_GEN_NETCARD_LOAD = 0x0002_0211,
        /// Device profile.
        OID_GEN_DEVICE_PROFILE = 0x0002_0212,
        /// Init time in ms.
        OID_GEN_INIT_TIME_MS = 0x0002_0213,
        /// Reset counts.
        OID_GEN_RESET_COUNTS = 0x0002_0214,
        /// Media sense counts.
        OID_GEN_MEDIA_SENSE_COUNTS = 0x0002_0215,
        /// Friendly name (UCS-2 string).
        OID_GEN_FRIENDLY_NAME = 0x0002_0216,
        /// Miniport info (rndis.h; `OID_GEN_NDIS_RESERVED_1` in ntddndis.h).
        OID_GEN_MINIPORT_INFO = 0x0002_0217,
        /// Reset verify parameters (rndis.h).
        OID_GEN_RESET_VERIFY_PARAMETERS = 0x0002_0218,
        /// Bytes received.
        OID_GEN_BYTES_RCV = 0x0002_0219,
        /// Bytes transmitted.
        OID_GEN_BYTES_XMIT = 0x0002_021A,
        /// Receive discards.
        OID_GEN_RCV_DISCARDS = 0x0002_021B,
        /// Transmit discards.
        OID_GEN_XMIT_DISCARDS = 0x0002_021C,
        /// RSC statistics.
        OID_TCP_RSC_STATISTICS = 0x0002_021D,
        /// Permanent MAC address (6 bytes; mandatory for netvsc).
        OID_802_3_PERMANENT_ADDRESS = 0x0101_0101,
        /// Current MAC address.
        OID_802_3_CURRENT_ADDRESS = 0x0101_0102,
        /// Multicast list.
        OID_802_3_MULTICAST_LIST = 0x0101_0103,
        /// Maximum multicast list size.
        OID_802_3_MAXIMUM_LIST_SIZE = 0x0101_0104,
        /// 802.3 MAC options.
        OID_802_3_MAC_OPTIONS = 0x0101_0105,
        /// Offload encapsulation (`NDIS_OFFLOAD_ENCAPSULATION`, set/query).
        OID_OFFLOAD_ENCAPSULATION = 0x0101_010A,
        /// Add a multicast address.
        OID_802_3_ADD_MULTICAST_ADDRESS = 0x0101_0208,
        /// Delete a multicast address.
        OID_802_3_DELETE_MULTICAST_ADDRESS = 0x0101_0209,
        /// Alignment errors.
        OID_802_3_RCV_ERROR_ALIGNMENT = 0x0102_0101,
        /// One collision.
        OID_802_3_XMIT_ONE_COLLISION = 0x0102_0102,
        /// More collisions.
        OID_802_3_XMIT_MORE_COLLISIONS = 0x0102_0103,
        /// Deferred transmits.
        OID_802_3_XMIT_DEFERRED = 0x0102_0201,
        /// Max collisions.
        OID_802_3_XMIT_MAX_COLLISIONS = 0x0102_0202,
        /// Receive overrun.
        OID_802_3_RCV_OVERRUN = 0x0102_0203,
        /// Transmit underrun.
        OID_802_3_XMIT_UNDERRUN = 0x0102_0204,
        /// Heartbeat failure.
        OID_802_3_XMIT_HEARTBEAT_FAILURE = 0x0102_0205,
        /// Carrier-sense lost.
        OID_802_3_XMIT_TIMES_CRS_LOST = 0x0102_0206,
        /// Late collisions.
        OID_802_3_XMIT_LATE_COLLISIONS = 0x0102_0207,
        /// NDIS 5 task offload (ntddndis.h).
        OID_TCP_TASK_OFFLOAD = 0xFC01_0201,
        /// Current offload configuration (query; `NDIS_OFFLOAD`).
        OID_TCP_OFFLOAD_CURRENT_CONFIG = 0xFC01_020B,
        /// Offload parameters (set; `NDIS_OFFLOAD_PARAMETERS`).
        OID_TCP_OFFLOAD_PARAMETERS = 0xFC01_020C,
        /// Offload hardware capabilities (query; `NDIS_OFFLOAD`; mandatory for netvsc).
        OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES = 0xFC01_020D,
        /// Connection offload current config.
        OID_TCP_CONNECTION_OFFLOAD_CURRENT_CONFIG = 0xFC01_020E,
        /// Connection offload hardware capabilities.
        OID_TCP_CONNECTION_OFFLOAD_HARDWARE_CAPABILITIES = 0xFC01_020F,
        /// Power-management capabilities.
        OID_PNP_CAPABILITIES = 0xFD01_0100,
        /// Set the device power state.
        OID_PNP_SET_POWER = 0xFD01_0101,
        /// Query whether a power state is allowed.
        OID_PNP_QUERY_POWER = 0xFD01_0102,
        /// Add a wake-up pattern.
        OID_PNP_ADD_WAKE_UP_PATTERN = 0xFD01_0103,
        /// Remove a wake-up pattern.
        OID_PNP_REMOVE_WAKE_UP_PATTERN = 0xFD01_0104,
        /// Wake-up pattern list (ntddndis.h).
        OID_PNP_WAKE_UP_PATTERN_LIST = 0xFD01_0105,
        /// Enable wake-up.
        OID_PNP_ENABLE_WAKE_UP = 0xFD01_0106,
        /// PM current capabilities (ntddndis.h).
        OID_PM_CURRENT_CAPABILITIES = 0xFD01_0107,
        /// PM hardware capabilities (ntddndis.h).
        OID_PM_HARDWARE_CAPABILITIES = 0xFD01_0108,
        /// PM parameters (ntddndis.h).
        OID_PM_PARAMETERS = 0xFD01_0109,
        /// Add a WoL pattern (ntddndis.h).
        OID_PM_ADD_WOL_PATTERN = 0xFD01_010A,
        /// Remove a WoL pattern (ntddndis.h).
        OID_PM_REMOVE_WOL_PATTERN = 0xFD01_010B,
    }
}

hv_hypercall::open_enum! {
    /// Per-packet-info type (`enum ndis_per_pkt_info_type`, hyperv_net.h), the low 31
    /// bits of `rndis_per_packet_info.type` when the `internal` bit is clear.
    pub struct PpiType(u32) {
        /// `TCPIP_CHKSUM_PKTINFO`: [`NdisTcpIpChecksumInfo`](super::NdisTcpIpChecksumInfo).
        TCPIP_CHKSUM = 0,
        /// `IPSEC_PKTINFO`.
        IPSEC = 1,
        /// `TCP_LARGESEND_PKTINFO`: [`NdisTcpLsoInfo`](super::NdisTcpLsoInfo).
        TCP_LARGESEND = 2,
        /// `CLASSIFICATION_HANDLE_PKTINFO`.
        CLASSIFICATION_HANDLE = 3,
        /// `NDIS_RESERVED`.
        NDIS_RESERVED = 4,
        /// `SG_LIST_PKTINFO`.
        SG_LIST = 5,
        /// `IEEE_8021Q_INFO`: [`NdisPkt8021qInfo`](super::NdisPkt8021qInfo).
        IEEE_8021Q = 6,
        /// `ORIGINAL_PKTINFO`.
        ORIGINAL = 7,
        /// `NBL_HASH_VALUE` (= `PACKET_CANCEL_ID`): the u32 RSS hash.
        NBL_HASH_VALUE = 8,
        /// `ORIGINAL_NET_BUFLIST`.
        ORIGINAL_NET_BUFLIST = 9,
        /// `CACHED_NET_BUFLIST`.
        CACHED_NET_BUFLIST = 10,
        /// `SHORT_PKT_PADINFO`.
        SHORT_PKT_PADINFO = 11,
    }
}

impl PpiType {
    /// `PACKET_CANCEL_ID`, the same value as [`PpiType::NBL_HASH_VALUE`].
    pub const PACKET_CANCEL_ID: Self = Self(8);
}

hv_hypercall::open_enum! {
    /// Per-packet-info type when the `internal` bit is set
    /// (`enum rndis_per_pkt_info_interal_type`, hyperv_net.h).
    pub struct InternalPpiType(u32) {
        /// `RNDIS_PKTINFO_ID`: [`RndisPktinfoId`](super::RndisPktinfoId) (RSC fragments).
        RNDIS_PKTINFO_ID = 1,
    }
}

hv_hypercall::open_enum! {
    /// `ndis_object_header.type` (hyperv_net.h; OID_REQUEST and OFFLOAD_ENCAPSULATION
    /// from OpenVMM rndisprot.rs).
    pub struct NdisObjectType(u8) {
        /// `NDIS_OBJECT_TYPE_DEFAULT` (offload parameters).
        DEFAULT = 0x80,
        /// `NDIS_OBJECT_TYPE_RSS_CAPABILITIES`.
        RSS_CAPABILITIES = 0x88,
        /// `NDIS_OBJECT_TYPE_RSS_PARAMETERS`.
        RSS_PARAMETERS = 0x89,
        /// `NDIS_OBJECT_TYPE_OID_REQUEST`.
        OID_REQUEST = 0x96,
        /// `NDIS_OBJECT_TYPE_OFFLOAD` (`NDIS_OFFLOAD`).
        OFFLOAD = 0xA7,
        /// `NDIS_OBJECT_TYPE_OFFLOAD_ENCAPSULATION`.
        OFFLOAD_ENCAPSULATION = 0xA8,
    }
}

hv_hypercall::open_enum! {
    /// Medium in the initialize completion (`RNDIS_MEDIUM_*`, Linux
    /// `include/linux/rndis.h`; 5 is unassigned there).
    pub struct RndisMedium(u32) {
        /// Ethernet (`RNDIS_MEDIUM_802_3`), the only one netvsc accepts.
        MEDIUM_802_3 = 0x0000_0000,
        /// Token ring.
        MEDIUM_802_5 = 0x0000_0001,
        /// FDDI.
        FDDI = 0x0000_0002,
        /// WAN.
        WAN = 0x0000_0003,
        /// LocalTalk.
        LOCAL_TALK = 0x0000_0004,
        /// ARCNET raw.
        ARCNET_RAW = 0x0000_0006,
        /// ARCNET 878.2.
        ARCNET_878_2 = 0x0000_0007,
        /// ATM.
        ATM = 0x0000_0008,
        /// Wireless LAN (`RNDIS_MEDIUM_WIRELESS_LAN`).
        WIRELESS_LAN = 0x0000_0009,
        /// IrDA.
        IRDA = 0x0000_000A,
        /// BPC (`RNDIS_MEDIUM_BPC`).
        BPC = 0x0000_000B,
        /// Connection-oriented WAN (`RNDIS_MEDIUM_CO_WAN`).
        CO_WAN = 0x0000_000C,
        /// IEEE 1394 (`RNDIS_MEDIUM_1394`).
        MEDIUM_1394 = 0x0000_000D,
    }
}

hv_hypercall::open_enum! {
    /// Media connect state (`RNDIS_MEDIA_STATE_*`), the u32 answer to
    /// `OID_GEN_MEDIA_CONNECT_STATUS`.
    pub struct MediaState(u32) {
        /// Connected (0: netvsc brings the carrier up).
        CONNECTED = 0,
        /// Disconnected.
        DISCONNECTED = 1,
    }
}

hv_hypercall::open_enum! {
    /// `rndis_config_parameter_info.parameter_type` (hyperv_net.h INTEGER/STRING;
    /// the rest from OpenVMM `NdisParameterType`).
    pub struct ConfigParamType(u32) {
        /// Integer.
        INTEGER = 0,
        /// Hexadecimal integer.
        HEX_INTEGER = 1,
        /// UTF-16LE string (netvsc's "NetworkAddress").
        STRING = 2,
        /// Multi-string.
        MULTI_STRING = 3,
        /// Binary.
        BINARY = 4,
    }
}

hv_hypercall::open_enum! {
    /// One byte of `ndis_offload_params` for checksum offloads
    /// (`NDIS_OFFLOAD_PARAMETERS_*`, hyperv_net.h).
    pub struct OffloadParamChecksum(u8) {
        /// Leave as is.
        NO_CHANGE = 0,
        /// Both directions off.
        TX_RX_DISABLED = 1,
        /// Transmit only.
        TX_ENABLED_RX_DISABLED = 2,
        /// Receive only.
        RX_ENABLED_TX_DISABLED = 3,
        /// Both directions on.
        TX_RX_ENABLED = 4,
    }
}

impl OffloadParamChecksum {
    /// `(tx, rx)` enablement, or `None` for NO_CHANGE or an unknown value.
    pub const fn tx_rx(self) -> Option<(bool, bool)> {
        match self.0 {
            1 => Some((false, false)),
            2 => Some((true, false)),
            3 => Some((false, true)),
            4 => Some((true, true)),
            _ => None,
        }
    }
}

hv_hypercall::open_enum! {
    /// One byte of `ndis_offload_params` for LSO and RSC (`NDIS_OFFLOAD_PARAMETERS_*`).
    pub struct OffloadParamSimple(u8) {
        /// Leave as is.
        NO_CHANGE = 0,
        /// Off (`LSOV2_DISABLED`, `RSC_DISABLED`).
        DISABLED = 1,
        /// On (`LSOV1_ENABLED`, `LSOV2_ENABLED`, `RSC_ENABLED`).
        ENABLED = 2,
    }
}

impl OffloadParamSimple {
    /// `Some(enabled)`, or `None` for NO_CHANGE or an unknown value.
    pub const fn enable(self) -> Option<bool> {
        match self.0 {
            1 => Some(false),
            2 => Some(true),
            _ => None,
        }
    }
}

/// `RNDIS_MAJOR_VERSION` (rndis.h).
pub const RNDIS_MAJOR_VERSION: u32 = 1;
/// `RNDIS_MINOR_VERSION` (rndis.h).
pub const RNDIS_MINOR_VERSION: u32 = 0;

bitflags! {
    /// `dev_flags` of the initialize completion (`RNDIS_DF_*`, rndis.h).
    #[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
    pub struct DeviceFlags: u32 {
        /// Connectionless (Ethernet) device.
        const CONNECTIONLESS = 0x0000_0001;
        /// Connection-oriented device.
        const CONNECTION_ORIENTED = 0x0000_0002;
        /// Raw data.
        const RAW_DATA = 0x0000_0004;
    }
}

bitflags! {
    /// `OID_GEN_CURRENT_PACKET_FILTER` bits. The low byte is common to all sources; for
    /// the high bits this follows `RNDIS_PACKET_TYPE_*` (rndis.h), which matches NDIS and
    /// the BSDs. Linux also defines `NDIS_PACKET_TYPE_GROUP..MAC_FRAME` as
    /// 0x100..0x800, which netvsc never sends.
    #[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
    pub struct PacketFilter: u32 {
        /// Unicast to our address.
        const DIRECTED = 0x0000_0001;
        /// Listed multicast addresses.
        const MULTICAST = 0x0000_0002;
        /// All multicast.
        const ALL_MULTICAST = 0x0000_0004;
        /// Broadcast.
        const BROADCAST = 0x0000_0008;
        /// Source routing.
        const SOURCE_ROUTING = 0x0000_0010;
        /// Promiscuous.
        const PROMISCUOUS = 0x0000_0020;
        /// SMT.
        const SMT = 0x0000_0040;
        /// All local.
        const ALL_LOCAL = 0x0000_0080;
        /// Group.
        const GROUP = 0x0000_1000;
        /// All functional.
        const ALL_FUNCTIONAL = 0x0000_2000;
        /// Functional.
        const FUNCTIONAL = 0x0000_4000;
        /// MAC frame.
        const MAC_FRAME = 0x0000_8000;
    }
}

impl PacketFilter {
    /// What netvsc sets at ifup: DIRECTED | ALL_MULTICAST | BROADCAST (0xD).
    pub const NETVSC_DEFAULT: Self = Self::DIRECTED
        .union(Self::ALL_MULTICAST)
        .union(Self::BROADCAST);
}

bitflags! {
    /// `ndis_recv_scale_param.hashinfo`: hash function (low byte) and hashed header
    /// types (hyperv_net.h; UDP types from OpenVMM rndisprot.rs).
    #[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
    pub struct RssHashInfo: u32 {
        /// `NDIS_HASH_FUNC_TOEPLITZ`.
        const FUNC_TOEPLITZ = 0x0000_0001;
        /// IPv4 addresses.
        const IPV4 = 0x0000_0100;
        /// TCP over IPv4.
        const TCP_IPV4 = 0x0000_0200;
        /// IPv6 addresses.
        const IPV6 = 0x0000_0400;
        /// IPv6 with extension headers.
        const IPV6_EX = 0x0000_0800;
        /// TCP over IPv6.
        const TCP_IPV6 = 0x0000_1000;
        /// TCP over IPv6 with extension headers.
        const TCP_IPV6_EX = 0x0000_2000;
        /// UDP over IPv4.
        const UDP_IPV4 = 0x0000_4000;
        /// UDP over IPv6.
        const UDP_IPV6 = 0x0000_8000;
        /// UDP over IPv6 with extension headers.
        const UDP_IPV6_EX = 0x0001_0000;
    }
}

impl RssHashInfo {
    /// `NDIS_HASH_FUNCTION_MASK`: the low byte selects the hash function.
    pub const FUNCTION_MASK: u32 = 0x0000_00FF;
}

bitflags! {
    /// `ndis_recv_scale_param.flag` (`NDIS_RSS_PARAM_FLAG_*`, hyperv_net.h;
    /// DEFAULT_PROCESSOR_UNCHANGED from OpenVMM).
    #[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
    pub struct RssParamFlags: u16 {
        /// Base CPU unchanged.
        const BASE_CPU_UNCHANGED = 0x0001;
        /// Hash info unchanged.
        const HASH_INFO_UNCHANGED = 0x0002;
        /// Indirection table unchanged.
        const ITABLE_UNCHANGED = 0x0004;
        /// Hash key unchanged.
        const HASH_KEY_UNCHANGED = 0x0008;
        /// Disable RSS.
        const DISABLE_RSS = 0x0010;
        /// Default processor unchanged.
        const DEFAULT_PROCESSOR_UNCHANGED = 0x0020;
    }
}

bitflags! {
    /// `ndis_recv_scale_cap.cap_flag` (`NDIS_RSS_CAPS_*`, hyperv_net.h; UDP and
    /// INDEPENDENT_ENTRY_MOVE from OpenVMM).
    #[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
    pub struct RssCapsFlags: u32 {
        /// TCP/IPv4 hashing.
        const HASH_TYPE_TCP_IPV4 = 0x0000_0100;
        /// TCP/IPv6 hashing.
        const HASH_TYPE_TCP_IPV6 = 0x0000_0200;
        /// TCP/IPv6 with extension headers.
        const HASH_TYPE_TCP_IPV6_EX = 0x0000_0400;
        /// UDP/IPv4 hashing.
        const HASH_TYPE_UDP_IPV4 = 0x0000_0800;
        /// UDP/IPv6 hashing.
        const HASH_TYPE_UDP_IPV6 = 0x0000_1000;
        /// UDP/IPv6 with extension headers.
        const HASH_TYPE_UDP_IPV6_EX = 0x0000_2000;
        /// Message-signalled interrupts.
        const MESSAGE_SIGNALED_INTERRUPTS = 0x0100_0000;
        /// Classification at ISR.
        const CLASSIFICATION_AT_ISR = 0x0200_0000;
        /// Classification at DPC.
        const CLASSIFICATION_AT_DPC = 0x0400_0000;
        /// Using MSI-X.
        const USING_MSI_X = 0x0800_0000;
        /// RSS available on ports.
        const RSS_AVAILABLE_ON_PORTS = 0x1000_0000;
        /// Supports MSI-X.
        const SUPPORTS_MSI_X = 0x2000_0000;
        /// Supports independent entry move.
        const SUPPORTS_INDEPENDENT_ENTRY_MOVE = 0x4000_0000;
    }
}

/// `NDIS_OFFLOAD_ENCAP_*`: encapsulation words of `NDIS_OFFLOAD` (hyperv_net.h).
pub mod encap {
    /// Not supported.
    pub const NONE: u32 = 0x0000;
    /// Null encapsulation.
    pub const NULL: u32 = 0x0001;
    /// 802.3 (Ethernet II / 802.3).
    pub const IEEE_802_3: u32 = 0x0002;
    /// 802.3 with priority/VLAN tag.
    pub const IEEE_802_3_PQ: u32 = 0x0004;
    /// 802.3 with out-of-band priority/VLAN.
    pub const IEEE_802_3_PQ_OOB: u32 = 0x0008;
    /// RFC 1483.
    pub const RFC1483: u32 = 0x0010;
}

/// Capability bits of `ndis_csum_offload` and `ndis_lsov2_offload` (hyperv_net.h
/// `NDIS_TXCSUM_CAP_*`, `NDIS_RXCSUM_CAP_*`, `NDIS_LSOV2_CAP_*`; the same values for
/// transmit and receive). Each is the value 1 (`NDIS_OFFLOAD_SUPPORTED`) in a 2-bit field.
pub mod offload_caps {
    /// IPv4 options (ip4_*csum).
    pub const IP4OPT: u32 = 0x001;
    /// TCP options over IPv4.
    pub const TCP4OPT: u32 = 0x004;
    /// TCP over IPv4.
    pub const TCP4: u32 = 0x010;
    /// UDP over IPv4.
    pub const UDP4: u32 = 0x040;
    /// IPv4 header checksum.
    pub const IP4: u32 = 0x100;
    /// IPv6 extension headers (ip6_*csum, lsov2 ip6_opts).
    pub const IP6EXT: u32 = 0x001;
    /// TCP options over IPv6.
    pub const TCP6OPT: u32 = 0x004;
    /// TCP over IPv6.
    pub const TCP6: u32 = 0x010;
    /// UDP over IPv6.
    pub const UDP6: u32 = 0x040;
}
