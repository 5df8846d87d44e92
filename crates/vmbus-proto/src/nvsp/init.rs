//! The header every NVSP message starts with, and protocol and NDIS version
//! negotiation: INIT, INIT_COMPLETE, SEND_NDIS_VERSION, SEND_NDIS_CONFIG.

use super::*;
use core::mem::offset_of;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

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

// Sizes and offsets as gcc lays out Linux's hyperv_net.h.
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
const _: () = assert!(size_of::<Nvsp2SendNdisConfig>() == 16);
const _: () = assert!(offset_of!(Nvsp2SendNdisConfig, reserved) == 4);
const _: () = assert!(offset_of!(Nvsp2SendNdisConfig, capability) == 8);
