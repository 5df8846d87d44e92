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
//! gcc's layout); types Linux does not define (OID_QUERY_EX) from OpenVMM
//! `vm/devices/net/netvsp/src/protocol.rs` and the Windows NVSP header it quotes. All
//! fields are little-endian; the structs are `#[repr(C, packed)]` exactly where Linux
//! marks them `__packed` (only the 6-byte buffer messages, `nvsp_2_alloc_rxbuf_comp` and
//! the PD-API structs actually change size because of it).
//!
//! The peer is untrusted: [`NvspMessage::parse`] checks every length, caps every count and
//! reports a typed [`Error`](crate::error::Error); an unknown message type is not an error
//! ([`NvspMessage::Unknown`]), because a newer peer may send types this code predates.

mod buffers;
mod enums;
mod init;
mod message;
mod rndis_packet;
mod subchannel;
mod table;
mod vf;

pub use buffers::*;
pub use enums::*;
pub use init::*;
pub use message::*;
pub use rndis_packet::*;
pub use subchannel::*;
pub use table::*;
pub use vf::*;

#[cfg(test)]
mod tests;

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
